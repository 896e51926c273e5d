#!/usr/bin/env bash
# repo_pull onto a machine reached over SSH with no ferry installed (issue 15, point 1), and
# repo_pull's "target" and "include" (point 2) on local and SSH machines.
#
# A real OpenSSH server on loopback (tests/helpers/sshd.sh --key-user): the SSH machine logs
# in as a separate unprivileged user with key authentication and a pinned host key, and its
# datastore is a directory of that user's home. Snapshots are pushed from a local machine
# (the bridge itself) and pulled onto the SSH machine: the bridge decrypts, decompresses and
# checks every chunk and streams one tar to GNU tar there.
#   - exact round trip: modes, owners (the user's own), symlinks, hard links, sparse files
#     (du), unicode, invalid UTF-8 and newline names, empty dirs, mtimes (tree_compare.py and
#     a find -printf listing), then swapped in over the previous content;
#   - owners the user cannot set: the entries become the user's, set-user-ID is dropped, the
#     item says so; repo_up, repo_down, repo_list, repo_snapshot, repo_verify on the machine;
#   - hostile snapshots (tests/helpers/repo_craft.c): "..", a symlink then a file through it,
#     an absolute symlink target then a file: the item fails naming the entry and nothing is
#     written outside (the user's home and /tmp are checked); GNU tar's own protections;
#   - cancel, timeout and a dropped connection mid-pull: no process of the user's left, the
#     live repository untouched, the new directory removed (by the wrapper or the next pull);
#   - target and include on both machines, and their refusals.
. "$(dirname "$0")/../lib.sh"

SSHD_DIR=$T_DIR/sshd
# The sshd, then this test's part of the user's home, go with the test.
trap '"$FERRY_ROOT/tests/helpers/sshd.sh" stop "$SSHD_DIR"; rm -rf "${RHOME:-/nonexistent}"; t_cleanup' EXIT
"$FERRY_ROOT/tests/helpers/sshd.sh" start "$SSHD_DIR" --key-user ferry-rpull >/dev/null || { fail "sshd starts"; t_done; exit 1; }
. "$SSHD_DIR/env"
KEY_USER=$SSHD_USER port=$SSHD_PORT
KUID=$(id -u "$KEY_USER") KGID=$(id -g "$KEY_USER")

write_config 'lease = { poll_ms = 100; };' 'timeouts = { grace = 1; };' 'retry = { max_retries = 0; };'
install_plugins
DS=$T_DIR/ds                   # the local machine's datastore
RHOME=$SSHD_HOME/rpull-$$      # this test's part of the user's home
RDS=$RHOME/ds                  # the SSH machine's datastore
SENT=$RHOME/sentinel           # outside any restore: what hostile entries aim at
install -d -o "$KEY_USER" -g "$KGID" -m 0755 "$RHOME" "$RDS" "$SENT"
echo "outside, must stay as it is" >"$SENT/victim"
chown "$KEY_USER" "$SENT/victim"

ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null
ferry create machine Ops local box --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
ferry create machine Ops local far --vault "$(jq -n --argjson p "$port" --arg d "$RDS" \
    --arg u "$KEY_USER" --arg k "$(cat "$SSHD_CLIENT_KEY")" --arg h "$SSHD_HOST_KEY" \
    '{ip: "127.0.0.1", ssh_port: $p, user: $u, datastore: $d, SSH_PRIVATE_KEY: $k, host_public_key: $h}')" >/dev/null
ferry create storage Ops st --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/st\",\"passphrase\":\"pull over ssh\"}" >/dev/null

start_host
# submit MACHINE JSON: queues an item, prints its task id
submit() { ferry create queue-item Ops "$1" local --vault "$2" --output json | jq -r '.data[0].taskId'; }
# job MACHINE JSON: runs an item to its end, prints its response vault
job() {
    local task
    task=$(submit "$1" "$2")
    ferry queue wait "$task" --timeout 300 >/dev/null 2>&1
    ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault'
}
status() { jq -r .status <<<"$1"; }
# done_ok NAME OUT: the item completed (its error shown when not)
done_ok() { if [[ $(status "$2") == COMPLETED ]]; then pass "$1"; else fail "$1" "$(jq -c .error <<<"$2")"; fi; }
# failed_with NAME OUT TEXT: the item failed and its error message holds TEXT
failed_with() {
    if [[ $(status "$2") == FAILED && $(errmsg "$2") == *"$3"* ]]; then pass "$1"; else fail "$1" "expected FAILED with: $3" "$(jq -c '{status, error}' <<<"$2")"; fi
}
errmsg() { jq -r .error.message <<<"$1"; }
listing() { # what a round trip keeps, one line an entry (names quoted by %p's escapes)
    (cd "$1" && find . -mindepth 1 -printf '%p|%y|%m|%U:%G|%n|%T@|%l|%s\n' | LC_ALL=C sort)
}
# Everything of the user's outside the datastore, and the user's files in /tmp.
outside() {
    find "$SSHD_HOME" -path "$RDS" -prune -o -printf '%p %y %m %n %s\n' 2>/dev/null | LC_ALL=C sort
    # (test directories in /tmp hold local restores of trees the user owns)
    find /tmp /var/tmp -maxdepth 2 -user "$KEY_USER" ! -path '/tmp/ferry-test.*' 2>/dev/null | LC_ALL=C sort
}
user_procs() { ps -o pid=,args= -u "$KEY_USER" | grep -v -e 'sshd: ' -e '^ *$' || true; }

# --- a tree with every kind of entry, pushed from the local machine ---------------------------
SRC=$DS/repositories/src
mkdir -p "$SRC"
(
    cd "$SRC" && mkdir -p a/b empty 'sp ace' "uni-$(printf '\303\251\342\202\254')" deep/er/est
    printf 'hello\n' >a/b/file
    head -c 3000000 /dev/urandom >big
    truncate -s 24M sparse && head -c 1000000 /dev/urandom | dd of=sparse bs=1M seek=12 conv=notrunc status=none
    truncate -s 9M holes-only
    ln big a/hard && ln big hard2
    ln -s /etc/passwd abs-link && ln -s ../big a/b/rel-link && ln -s dangling broken
    mkfifo fifo
    printf x >"bad-$(printf '\377\376')"
    printf y >"$(printf 'new\nline')"
    printf z >"$(printf 'fake\n%064d  ./victim' 0)"
    printf s >suid
    chmod 750 a && chmod 1777 empty && chmod 600 a/b/file && chmod 2750 deep
    touch -h -d '2001-02-03 04:05:06.123456789' a/b/rel-link
    touch -d '1999-12-31 23:59:59.5' a/b
)
chown -R -h "$KUID:$KGID" "$SRC"
chmod 4755 "$SRC/suid" # after the chown, which clears set-user-ID
out=$(job box '{"function":"repo_push","repository":"src","storage":"st","snapshot_id":"s1"}')
done_ok "the tree is pushed from the local machine" "$out"

# --- target and include on the local machine --------------------------------------------------
pull_local() { job box "$(jq -c '{function: "repo_pull", repository: "src", storage: "st"} + .' <<<"$1")"; }
out=$(pull_local "{\"target\": \"$T_DIR/elsewhere/copy\"}")
done_ok "a pull to a target completes" "$out"
cmp=$(tree_compare "$SRC" "$T_DIR/elsewhere/copy")
[[ $? -eq 0 ]] && pass "the target holds the exact snapshot" || fail "the target holds the exact snapshot" "$cmp"
eq "the result names the target" "$(jq -r .result.path <<<"$out")" "$T_DIR/elsewhere/copy"
cp -p "$SRC/a/b/file" "$T_DIR/file.orig" # put back as it was pushed, mtime and all, below
echo "live change" >"$SRC/a/b/file"
mkdir -p "$T_DIR/part" "$T_DIR/full"
echo keep >"$T_DIR/full/mine"
out=$(pull_local "{\"target\": \"$T_DIR/part/\", \"include\": [\"a/b\", \"/hard2\"]}")
done_ok "a partial pull into an empty directory completes" "$out"
eq "it holds the included paths and the directories leading to them" \
    "$(cd "$T_DIR/part" && find . -mindepth 1 | LC_ALL=C sort | tr '\n' ' ')" "./a ./a/b ./a/b/file ./a/b/rel-link ./hard2 "
eq "a hard link without its first link is restored as the file" "$(cmp "$T_DIR/part/hard2" "$SRC/big" && stat -c %h "$T_DIR/part/hard2")" 1
eq "the live repository is untouched" "$(cat "$SRC/a/b/file")" "live change"
eq "nothing but the target changed beside it" "$(ls -A "$T_DIR/part/.." | grep -c pull-)" 0
out=$(pull_local "{\"target\": \"$T_DIR/full\"}")
failed_with "a target that is not empty is refused" "$out" "is not an empty directory"
eq "and left as it was" "$(ls -A "$T_DIR/full")" mine
out=$(pull_local '{"include": ["a"]}')
failed_with "include without a target is refused" "$out" 'give "target" too'
for bad in "relative/dir" "$T_DIR/x/../y" "/" "$DS/.ferry/running"; do
    out=$(pull_local "$(jq -n --arg t "$bad" '{target: $t}')")
    failed_with "target \"$bad\" is refused" "$out" "target \"$bad\""
done
out=$(pull_local "{\"target\": \"$T_DIR/t2\", \"include\": [\"nothing/here\"]}")
failed_with "an include that matches nothing fails" "$out" "include matches nothing in snapshot"
out=$(pull_local "{\"target\": \"$T_DIR/t2\", \"include\": [\"a/../big\"]}")
failed_with "an include with a .. component is refused" "$out" 'include "a/../big" has a ".." component'
out=$(pull_local "{\"target\": \"$T_DIR/t2\", \"include\": [\"[oops\"]}")
failed_with "a bad pattern is refused" "$out" "include: "
out=$(pull_local "{\"target\": \"$T_DIR/globbed\", \"include\": [\"*-link\", \"**/est\", \"!abs-link\"]}")
done_ok "a partial pull with patterns completes" "$out"
eq "patterns select as in exclude (gitignore syntax)" \
    "$(cd "$T_DIR/globbed" && find . -mindepth 1 | LC_ALL=C sort | tr '\n' ' ')" "./a ./a/b ./a/b/rel-link ./deep ./deep/er ./deep/er/est "
out=$(pull_local "{\"target\": \"$T_DIR/t3\", \"health_check\": {\"endpoint\": \"/health\"}}")
failed_with "health_check with a target is refused" "$out" "health_check starts the repository"
[[ ! -e $T_DIR/t2 && ! -e $T_DIR/t3 ]] && pass "refused pulls create nothing" || fail "refused pulls create nothing"
cp -p "$T_DIR/file.orig" "$SRC/a/b/file"

# --- the exact round trip onto the SSH machine -----------------------------------------------
outside_before=$(outside)
out=$(job far '{"function":"repo_pull","repository":"src","storage":"st","from_machine":"box"}')
done_ok "repo_pull onto the SSH machine completes" "$out"
cmp=$(tree_compare "$SRC" "$RDS/repositories/src")
[[ $? -eq 0 ]] && pass "the round trip is exact (${cmp##*$'\n'})" || fail "the round trip is exact" "$cmp"
eq "the find listing matches too" "$(listing "$RDS/repositories/src")" "$(listing "$SRC")"
# Holes are the chunks of zeros; a chunk that mixes data and zeros is written whole, there as
# by a local restore (the copy in $T_DIR/elsewhere).
eq "the sparse files take as many blocks as a local restore's" \
    "$(du -k "$RDS/repositories/src/sparse" "$RDS/repositories/src/holes-only" | cut -f1 | tr '\n' ' ')" \
    "$(du -k "$T_DIR/elsewhere/copy/sparse" "$T_DIR/elsewhere/copy/holes-only" | cut -f1 | tr '\n' ' ')"
[[ $(du -k "$RDS/repositories/src/sparse" | cut -f1) -lt 8192 ]] && pass "far fewer than their 24 MiB" ||
    fail "far fewer than their 24 MiB" "$(du -k "$RDS/repositories/src/sparse")"
eq "everything there is the user's" "$(find "$RDS" ! -user "$KEY_USER" | head -3)" ""
eq "the result says it was checked on the machine" "$(jq -r '.result.verified' <<<"$out")" true
eq "nothing was written outside the datastore" "$(outside)" "$outside_before"
eq "no new directory is left beside the repository" "$(ls -A "$RDS/repositories")" src

# A second pull replaces the content: a file added there is gone, the old copy removed.
echo stray >"$RDS/repositories/src/stray" && chown "$KEY_USER" "$RDS/repositories/src/stray"
out=$(job far '{"function":"repo_pull","repository":"src","storage":"st","from_machine":"box"}')
done_ok "a second pull completes" "$out"
eq "it swapped the snapshot in (the stray file is gone)" "$(ls "$RDS/repositories/src/stray" 2>&1 | grep -c 'No such')" 1
eq "and removed the previous copy" "$(ls -A "$RDS/repositories")" src

# --- what the user cannot restore: other owners, set-user-ID of others, devices --------------
OWN=$DS/repositories/owners
mkdir -p "$OWN"
printf root >"$OWN/root-file" && printf s >"$OWN/root-suid" && chmod 4755 "$OWN/root-suid"
printf mine >"$OWN/mine" && chown "$KUID:$KGID" "$OWN/mine"
mknod "$OWN/null" c 1 3
out=$(job box '{"function":"repo_push","repository":"owners","storage":"st","snapshot_id":"o1"}')
done_ok "a tree with root's files and a device is pushed" "$out"
t=$(submit far '{"function":"repo_pull","repository":"owners","storage":"st","from_machine":"box"}')
ferry queue wait "$t" --timeout 120 >/dev/null 2>&1
out=$(ferry list queue --task-id "$t" --output json | jq -c '.data[0].responseVault')
done_ok "it is pulled onto the SSH machine" "$out"
eq "root's files become the user's" "$(stat -c '%U %a' "$RDS/repositories/owners/root-file" "$RDS/repositories/owners/root-suid" | tr '\n' ' ')" \
    "$KEY_USER 644 $KEY_USER 755 "
eq "the user's own file keeps its owner" "$(stat -c %U "$RDS/repositories/owners/mine")" "$KEY_USER"
eq "the device is left out" "$(ls "$RDS/repositories/owners" | tr '\n' ' ')" "mine root-file root-suid "
trace=$(ferry queue trace "$t" 2>&1)
contains "the item says owners were not restored" "$trace" "owners of"
contains "... and that a device was not created" "$trace" "device files were not created"
contains "... and that set-user-ID was dropped" "$trace" "narrower permissions"

# --- the other repository functions on the SSH machine ----------------------------------------
out=$(job far '{"function":"repo_list","storage":"st"}')
done_ok "repo_list on the SSH machine" "$out"
eq "it lists the repositories there" "$(jq -r '[.result.repositories[].name] | join(" ")' <<<"$out")" "owners src"
eq "with their size" "$(jq -r '.result.repositories[] | select(.name == "src") | .size_bytes > 1000000' <<<"$out")" true
eq "and the storage's snapshots" "$(jq -r '[.result.snapshots[].id] | sort | join(" ")' <<<"$out")" "o1 s1"
out=$(job far "$(jq -n '{function: "repo_new", repository: "svc", ferryfile: "up() { echo started > $REPOSITORY_PATH/up.txt; }\ndown() { rm -f $REPOSITORY_PATH/up.txt; }"}')")
done_ok "repo_new with a Ferryfile on the SSH machine" "$out"
out=$(job far '{"function":"repo_up","repository":"svc"}')
done_ok "repo_up on the SSH machine" "$out"
eq "the Ferryfile's up ran there" "$(cat "$RDS/repositories/svc/up.txt" 2>&1)" started
eq "the repository is marked running" "$(ls "$RDS/.ferry/running")" svc
out=$(job far '{"function":"repo_pull","repository":"svc","storage":"st","from_repository":"owners","from_machine":"box"}')
failed_with "a running repository is not replaced" "$out" "is running"
out=$(job far '{"function":"repo_down","repository":"svc"}')
done_ok "repo_down on the SSH machine" "$out"
eq "the Ferryfile's down ran there" "$(ls "$RDS/repositories/svc")" Ferryfile
out=$(job far '{"function":"repo_snapshot","repository":"src","snapshot_id":"local1"}')
done_ok "repo_snapshot on the SSH machine" "$out"
cmp=$(tree_compare "$SRC" "$RDS/snapshots/src/local1")
[[ $? -eq 0 ]] && pass "the local snapshot there is exact" || fail "the local snapshot there is exact" "$cmp"
out=$(job far '{"function":"repo_verify","storage":"st"}')
done_ok "repo_verify from the SSH machine's queue" "$out"
eq "the machine's files are all the user's" "$(find "$RDS" ! -user "$KEY_USER" | head -3)" ""

# --- target and include on the SSH machine ------------------------------------------------------
pull_far() { job far "$(jq -c '{function: "repo_pull", repository: "src", storage: "st", from_machine: "box"} + .' <<<"$1")"; }
echo "live there" >"$RDS/repositories/src/a/b/file"
out=$(pull_far "{\"target\": \"$RHOME/restored/copy\"}")
done_ok "a pull to a target on the SSH machine completes" "$out"
cmp=$(tree_compare "$SRC" "$RHOME/restored/copy")
[[ $? -eq 0 ]] && pass "the target there holds the exact snapshot" || fail "the target there holds the exact snapshot" "$cmp"
install -d -o "$KEY_USER" "$RHOME/part"
out=$(pull_far "{\"target\": \"$RHOME/part\", \"include\": [\"deep/er\", \"a/hard\"]}")
done_ok "a partial pull on the SSH machine completes" "$out"
eq "it holds the included paths" "$(cd "$RHOME/part" && find . -mindepth 1 | LC_ALL=C sort | tr '\n' ' ')" \
    "./a ./a/hard ./deep ./deep/er ./deep/er/est "
eq "the live repository there is untouched" "$(cat "$RDS/repositories/src/a/b/file")" "live there"
echo keep >"$RHOME/part/mine"
out=$(pull_far "{\"target\": \"$RHOME/part\"}")
failed_with "a target there that is not empty is refused" "$out" "is not an empty directory"
eq "and left as it was" "$(ls -A "$RHOME/part" | tr '\n' ' ')" "a deep mine "
out=$(pull_far "{\"target\": \"$RDS/.ferry/x\"}")
failed_with "a target in the datastore's .ferry is refused" "$out" "inside the datastore's internal directory"

# --- hostile snapshots: refused on the bridge before anything is sent ---------------------------
ferry create storage Ops plain --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/plain\"}" >/dev/null
out=$(job box '{"function":"repo_push","repository":"src","storage":"plain","snapshot_id":"clean"}')
done_ok "the tree is pushed to an unencrypted storage to craft from" "$out"
build_repo_craft
# scenario  the entry its error must name
cases=(
    "dotdot|../../../sentinel/dotdot"
    "absolute|$SENT/absolute"
    "symlink_file|d/setuid"
    "symlink_dir|d/sub"
    "symlink_hardlink|d/hard"
    "hardlink_outside|../../../sentinel/victim"
    "duplicate|twice"
)
outside_before=$(outside)
for c in "${cases[@]}"; do
    sc=${c%%|*} name=${c#*|}
    "$T_DIR/repo_craft" "$T_DIR/plain" src clean "bad-$sc" "$sc" "$SENT" || fail "crafting $sc"
    out=$(job far "{\"function\":\"repo_pull\",\"repository\":\"out-$sc\",\"from_repository\":\"src\",\"storage\":\"plain\",\"restore_point\":\"bad-$sc\"}")
    failed_with "$sc: the pull fails naming the entry" "$out" "\"$name\""
    echo "# $sc: $(errmsg "$out")"
    eq "$sc: nothing was written outside (the user's home, /tmp)" "$(outside)" "$outside_before"
    eq "$sc: no repository and no new directory is left" "$(ls -A "$RDS/repositories" | grep -c "out-$sc")" 0
done
# A legitimate symlink to the outside restores as a link, never followed.
"$T_DIR/repo_craft" "$T_DIR/plain" src clean benign benign "$SENT" || fail "crafting the benign snapshot"
out=$(job far '{"function":"repo_pull","repository":"benign","from_repository":"src","storage":"plain","restore_point":"benign"}')
done_ok "a symlink to the outside restores on the SSH machine" "$out"
eq "as a link" "$(readlink "$RDS/repositories/benign/outlink")" "$SENT"
eq "a world-writable file loses set-user-ID there too" "$(stat -c %a "$RDS/repositories/benign/suid-world-writable")" 777
eq "nothing outside changed" "$(outside)" "$outside_before"

# --- GNU tar's own protections, as the stream's tar runs them on the machine --------------------
printf '[127.0.0.1]:%s %s\n' "$port" "$SSHD_HOST_KEY" >"$T_DIR/known_hosts"
kssh() {
    ssh -F /dev/null -i "$SSHD_CLIENT_KEY" -p "$port" -o BatchMode=yes -o IdentitiesOnly=yes \
        -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$T_DIR/known_hosts" "$KEY_USER@127.0.0.1" "$1"
}
tar_x=$(sed -n 's/^ *"\(tar -x[^"]*\)".*/\1/p' "$FERRY_ROOT/plugins/repo/restore.h")
[[ $tar_x == "tar -x -f - "* ]] && pass "the stream's tar command is read from restore.h" || fail "the stream's tar command is read from restore.h" "$tar_x"
python3 - "$T_DIR" "$SENT" <<'PY'
import io, sys, tarfile
out, sent = sys.argv[1], sys.argv[2]
def archive(name, members):
    with tarfile.open(f"{out}/{name}.tar", "w", format=tarfile.PAX_FORMAT) as t:
        for path, kind, target in members:
            ti = tarfile.TarInfo(path)
            if kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, target
                t.addfile(ti)
            else:
                ti.size = 4
                t.addfile(ti, io.BytesIO(b"evil"))
archive("through-abs-link", [("d", "l", sent), ("d/evil-abs-link", "f", None)])
archive("through-rel-link", [("d", "l", "../../sentinel"), ("d/evil-rel-link", "f", None)])
archive("dotdot", [("../../sentinel/evil-dotdot", "f", None)])
archive("absolute", [(sent + "/evil-absolute", "f", None)])
archive("planted", [("d/evil-planted", "f", None)])
PY
for a in through-abs-link through-rel-link dotdot; do
    err=$(kssh "mkdir $RHOME/gt-$a && cd $RHOME/gt-$a && $tar_x" <"$T_DIR/$a.tar" 2>&1)
    rc=$?
    [[ $rc -ne 0 ]] && pass "GNU tar refuses $a (exit $rc)" || fail "GNU tar refuses $a" "$err"
done
kssh "mkdir $RHOME/gt-absolute && cd $RHOME/gt-absolute && $tar_x" <"$T_DIR/absolute.tar" >/dev/null 2>&1
eq "GNU tar writes an absolute member inside, without its leading /" \
    "$(cat "$RHOME/gt-absolute/${SENT#/}/evil-absolute")" evil
eq "none of them wrote outside" "$(ls "$SENT")" victim
# A symlink that already exists in the directory (not made by the archive) IS followed: this is
# why the stream goes into a directory the pull has just made with mkdir (which fails on
# anything already there), mode 0700 until tar ends, and why a tree is checked on the bridge.
kssh "mkdir $RHOME/gt-planted && ln -s $SENT $RHOME/gt-planted/d && cd $RHOME/gt-planted && $tar_x" <"$T_DIR/planted.tar" >/dev/null 2>&1
eq "GNU tar follows a symlink it did not create" "$(cat "$SENT/evil-planted" 2>&1)" evil
rm -f "$SENT/evil-planted"
rm -rf "$RHOME"/gt-*
outside_before=$(outside)

# --- cancel, timeout and a dropped connection mid-pull ------------------------------------------
BIG=$DS/repositories/big
mkdir -p "$BIG"
head -c 600M /dev/urandom >"$BIG/blob"
chown -R "$KUID:$KGID" "$BIG"
out=$(job box '{"function":"repo_push","repository":"big","storage":"st","snapshot_id":"b1","compression":"none"}')
done_ok "a large tree is pushed" "$out"
started=$SECONDS
out=$(job far '{"function":"repo_pull","repository":"big","storage":"st","from_machine":"box","verify":false}')
done_ok "it is pulled onto the SSH machine" "$out"
echo "# the full pull of 600 MiB over SSH took $((SECONDS - started)) s (the restore $(jq -r '.result.seconds | floor' <<<"$out") s, $(jq -r '.result.mb_per_s | floor' <<<"$out") MB/s)"
out=$(job box "{\"function\":\"repo_pull\",\"repository\":\"big\",\"storage\":\"st\",\"verify\":false,\"target\":\"$T_DIR/big-local\"}")
done_ok "the same pull on the local machine, for comparison" "$out"
echo "# ... on the local machine: the restore $(jq -r '.result.seconds | floor' <<<"$out") s, $(jq -r '.result.mb_per_s | floor' <<<"$out") MB/s"
rm -rf "$T_DIR/big-local"
echo "live" >"$RDS/repositories/big/live-marker" && chown "$KEY_USER" "$RDS/repositories/big/live-marker"
live_state() { stat -c '%n %i %s %Y' "$RDS/repositories/big/blob" "$RDS/repositories/big/live-marker"; }
live_before=$(live_state)
fresh_growing() { # the stream's new directory exists and holds some data
    local d
    d=$(ls -d "$RDS"/repositories/.big.pull-* 2>/dev/null | head -1)
    [[ -n $d && $(du -sm "$d" 2>/dev/null | cut -f1) -ge 5 ]]
}
no_fresh() { ! ls -d "$RDS"/repositories/.big.pull-* >/dev/null 2>&1; }
no_user_procs() { [[ -z $(user_procs) ]]; }
# The machine's tar, stopped (SIGSTOP) mid-stream so that the pull cannot end before the test
# stops it, whatever the machine's speed; SIGCONT lets it see the signals sent meanwhile.
remote_tar() { ps -o pid=,args= -u "$KEY_USER" | awk '$2 == "tar" && $3 == "-x" {print $1; exit}'; }
hold_stream() { # hold_stream TASK WHAT: waits until the pull streams, then stops its tar
    wait_for 60 fresh_growing || fail "the $2 pull was streaming" "$(ls -a "$RDS/repositories")"
    TAR_PID=$(remote_tar)
    [[ -n $TAR_PID ]] && kill -STOP "$TAR_PID"
}
release_stream() { [[ -n $TAR_PID ]] && kill -CONT "$TAR_PID" 2>/dev/null; TAR_PID=; }
stopped_cleanly() { # stopped_cleanly HOW
    wait_for 20 no_user_procs && pass "$1: no process of the user's is left" ||
        fail "$1: no process of the user's is left" "$(user_procs)"
    eq "$1: the live repository is untouched" "$(live_state)" "$live_before"
    # The wrapper's trap removes it; after a SIGKILL, the next pull (checked at the end).
    wait_for 10 no_fresh && pass "$1: the new directory is removed" ||
        echo "# $1: the new directory is left for the next pull"
    eq "$1: nothing was written outside" "$(outside)" "$outside_before"
}
pull_big='{"function":"repo_pull","repository":"big","storage":"st","from_machine":"box"}'

t=$(submit far "$pull_big")
hold_stream "$t" cancelled
ferry queue cancel "$t" >/dev/null
release_stream
wait_status "$t" CANCELLED 30 && pass "a cancelled pull ends CANCELLED" || fail "a cancelled pull ends CANCELLED" "$(task_status "$t")"
stopped_cleanly "cancel"

t=$(submit far "$(jq -c '. + {timeout: 15}' <<<"$pull_big")")
hold_stream "$t" timed-out
ferry queue wait "$t" --timeout 60 >/dev/null 2>&1
release_stream
out=$(ferry list queue --task-id "$t" --output json | jq -c '.data[0].responseVault')
eq "a pull past its timeout fails as TIMEOUT" "$(jq -r '.error.outcome' <<<"$out")" TIMEOUT
stopped_cleanly "timeout"

t=$(submit far "$pull_big")
hold_stream "$t" dropped
session=$(ps -o pid=,args= -u "$KEY_USER" | awk '$2 ~ /^sshd:/ {print $1; exit}')
[[ -n $session ]] && kill -9 "$session"
release_stream
ferry queue wait "$t" --timeout 60 >/dev/null 2>&1
out=$(ferry list queue --task-id "$t" --output json | jq -c '.data[0].responseVault')
eq "a dropped connection fails the pull" "$(status "$out")" FAILED
echo "# dropped connection: $(errmsg "$out")"
# ssh's own reason (exec_wait's), or ours when ssh exited 255 with one on stderr.
[[ $(errmsg "$out") =~ \(machine\ far\)\ failed:|connection\ to\ far\ was\ lost ]] &&
    pass "the error says the connection to far failed" || fail "the error says the connection to far failed" "$(errmsg "$out")"
stopped_cleanly "dropped connection"

out=$(job far "$pull_big")
done_ok "the next pull completes" "$out"
eq "and replaces the live repository" "$(ls "$RDS/repositories/big")" blob
eq "no new directory of an interrupted pull is left" "$(ls -A "$RDS/repositories" | grep -c pull-)" 0

stop_host
eq "no sanitizer report in the host log" "$(grep -E "AddressSanitizer|LeakSanitizer|runtime error:" "$T_DIR/host.log" | head -5)" ""

t_done
