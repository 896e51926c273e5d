#!/usr/bin/env bash
# A restore never writes outside its target (issue 13, point 1). Hostile snapshots are
# written into a local storage through the storage format's own encoders
# (tests/helpers/repo_craft.c): entries named "../x", "data/../../x" and "/abs/x", a symlink
# "d" to the outside followed by d/fifo, d/setuid, d/sub and a hard link d/hard, hard links
# whose target is outside, through a symlink or a symlink itself, and a name that repeats.
# Each is pulled by a real repo_pull through a real host: the item FAILS naming the entry,
# a sentinel directory outside (listed with modes, link counts and owners) is unchanged, and
# no repository or half-restored directory is left. (The tree is refused when it is decoded;
# the second line of defence, the restore's confined path walk, has its own tests in
# tests/unit/test_repo_restore.c, with openat2() and with the O_NOFOLLOW walk.) A legitimate
# snapshot with a symlink to the outside still restores (the link kept as a link) and a
# world-writable set-user-ID file comes back without the bit; real restores through the
# O_NOFOLLOW walk (FERRY_TEST_BENEATH_WALK=1) are exact too.
. "$(dirname "$0")/../lib.sh"

write_config 'lease = { poll_ms = 100; };'
install_plugins
DS=$T_DIR/ds
SENT=$T_DIR/sentinel
ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null
ferry create machine Ops local box --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
ferry create storage Ops st --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/st\"}" >/dev/null

build_repo_craft

job() {
    local task
    task=$(ferry create queue-item Ops box local --vault "$1" --output json | jq -r '.data[0].taskId')
    ferry queue wait "$task" --timeout 120 >/dev/null 2>&1
    ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault'
}
status() { jq -r .status <<<"$1"; }
err() { jq -r ".error$2" <<<"$1"; }
# Everything outside the restore that a hostile entry aims at, with what could change.
sentinel() { find "$SENT" -printf '%P %y %m %n %U:%G %s\n' | sort; }
listing() {
    sentinel
    ls -A "$DS/repositories"
}

mkdir -p "$SENT/inner" "$DS/repositories/src/data"
echo "outside, must stay as it is" >"$SENT/victim"
chmod 600 "$SENT/victim"
echo "payload of the snapshot" >"$DS/repositories/src/data/file"
start_host
out=$(job '{"function":"repo_push","repository":"src","storage":"st","snapshot_id":"clean"}')
eq "the clean snapshot is pushed" "$(status "$out")" COMPLETED

# scenario  the entry its error must name
cases=(
    "dotdot|../../../sentinel/dotdot"
    "middle_dotdot|data/../../../../sentinel/middle"
    "absolute|$SENT/absolute"
    "symlink_fifo|d/fifo"
    "symlink_file|d/setuid"
    "symlink_dir|d/sub"
    "symlink_hardlink|d/hard"
    "hardlink_outside|../../../sentinel/victim"
    "hardlink_via_symlink|d/victim"
    "hardlink_to_symlink|stolen"
    "duplicate|twice"
)
for c in "${cases[@]}"; do
    sc=${c%%|*}
    if ! err_out=$("$T_DIR/repo_craft" "$T_DIR/st" src clean "bad-$sc" "$sc" "$SENT" 2>&1); then
        fail "crafting snapshot $sc" "$err_out"
    fi
done

sentinel_before=$(sentinel)
before=$(listing)
for c in "${cases[@]}"; do
    sc=${c%%|*} name=${c#*|}
    out=$(job "{\"function\":\"repo_pull\",\"repository\":\"out-$sc\",\"from_repository\":\"src\",\"storage\":\"st\",\"restore_point\":\"bad-$sc\"}")
    eq "the $sc snapshot fails the pull" "$(status "$out")" FAILED
    contains "$sc: the error names the entry" "$(err "$out" .message)" "\"$name\""
    echo "# $sc: $(err "$out" .message)"
    after=$(listing)
    eq "$sc: nothing appeared or changed outside the target" "$after" "$before"
    [[ $after == "$before" ]] || before=$after # report each escape once
done

# A decoded tree is checked wherever it is read: repo_verify names the bad snapshot too.
out=$(job '{"function":"repo_verify","storage":"st"}')
eq "repo_verify fails on the hostile snapshots" "$(status "$out")" FAILED

# Legitimate edge cases still restore.
"$T_DIR/repo_craft" "$T_DIR/st" src clean benign benign "$SENT" || fail "crafting the benign snapshot"
out=$(job '{"function":"repo_pull","repository":"benign","from_repository":"src","storage":"st","restore_point":"benign"}')
eq "a symlink to the outside and a set-user-ID file restore" "$(status "$out")" COMPLETED
eq "the symlink is restored as a link" "$(readlink "$DS/repositories/benign/outlink")" "$SENT"
eq "a world-writable file loses set-user-ID" "$(stat -c %a "$DS/repositories/benign/suid-world-writable")" 777
eq "the file's content is the snapshot's" "$(cat "$DS/repositories/benign/suid-world-writable")" "payload of the snapshot"
eq "nothing outside changed" "$(sentinel)" "$sentinel_before"

eq "with openat2 on this kernel" "$(jq -r .result.path_walk <<<"$out")" openat2

# The O_NOFOLLOW walk restores as exactly, and narrows the same way.
mkdir -p "$DS/repositories/src/data/deep/er"
echo deep >"$DS/repositories/src/data/deep/er/file"
ln -s ../file "$DS/repositories/src/data/deep/er/up"
ln "$DS/repositories/src/data/file" "$DS/repositories/src/data/deep/hard"
out=$(job '{"function":"repo_push","repository":"src","storage":"st","snapshot_id":"deep"}')
eq "a deeper snapshot is pushed" "$(status "$out")" COMPLETED
stop_host
export FERRY_TEST_BENEATH_WALK=1
start_host
for p in deep benign; do
    out=$(job "{\"function\":\"repo_pull\",\"repository\":\"walk-$p\",\"from_repository\":\"src\",\"storage\":\"st\",\"restore_point\":\"$p\"}")
    eq "through the walk: the $p snapshot restores" "$(status "$out")" COMPLETED
    eq "through the walk: the result says so" "$(jq -r .result.path_walk <<<"$out")" nofollow
done
cmp=$(tree_compare "$DS/repositories/src" "$DS/repositories/walk-deep")
[[ $? -eq 0 ]] && pass "through the walk the round trip is exact (${cmp##*$'\n'})" || fail "through the walk the round trip is exact" "$cmp"
eq "through the walk: set-user-ID is narrowed too" "$(stat -c %a "$DS/repositories/walk-benign/suid-world-writable")" 777
out=$(job '{"function":"repo_pull","repository":"walk-bad","from_repository":"src","storage":"st","restore_point":"bad-symlink_fifo"}')
eq "through the walk: a hostile snapshot fails" "$(status "$out")" FAILED
eq "nothing outside changed at all" "$(sentinel)" "$sentinel_before"

stop_host
sanitizer=$(grep -E "AddressSanitizer|LeakSanitizer|runtime error:" "$T_DIR/host.log" | head -5)
eq "no sanitizer report in the host log" "$sanitizer" ""
t_done
