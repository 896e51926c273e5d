#!/usr/bin/env bash
# Repositories round-trip exactly (issue 8, points 2, 3 and 6): a tree with files from 0
# bytes to 100 MB, a sparse file, symlinks, hard links, permissions, owners, mtimes, empty
# directories, a fifo and unicode names is pushed through a host and pulled into another
# repository, then compared entry by entry. Also: encrypted and plain storages, incremental
# pushes that read only what changed, deduplication across snapshots and across
# repositories, tags as restore points, pulls refused while a repository runs.
. "$(dirname "$0")/../lib.sh"

write_config 'lease = { poll_ms = 100; };'
install_plugins
DS=$T_DIR/ds
ferry create region r >/dev/null && ferry create bridge r local >/dev/null && ferry create team Ops >/dev/null
ferry create machine Ops local box --vault "{\"connection\":\"local\",\"datastore\":\"$DS\"}" >/dev/null
ferry create storage Ops plain --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/plain\"}" >/dev/null
ferry create storage Ops sealed --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/sealed\",\"passphrase\":\"s3cret pass\"}" >/dev/null
start_host

# job VAULT: runs one item to its end; prints its response vault (JSON)
job() {
    local task
    task=$(ferry create queue-item Ops box local --vault "$1" --output json | jq -r '.data[0].taskId')
    ferry queue wait "$task" --timeout 300 >/dev/null 2>&1
    ferry list queue --task-id "$task" --output json | jq -c '.data[0].responseVault'
}
ok() { jq -r .status <<<"$1"; }
res() { jq -r ".result$2" <<<"$1"; }


# --- the tree ----------------------------------------------------------------------------------
out=$(job '{"function":"repo_new","repository":"web"}')
eq "repo_new creates a repository" "$(ok "$out")" COMPLETED
SRC=$DS/repositories/web
mkdir -p "$SRC/empty/dir" "$SRC/data" "$SRC/ünïcødé 名前" "$SRC/perm"
: >"$SRC/data/zero-bytes"
printf 'x' >"$SRC/data/one-byte"
head -c 100000000 /dev/urandom >"$SRC/data/hundred-mb.bin"
python3 -c "
import os
with open('$SRC/data/text.log', 'w') as f:
    for i in range(200000): f.write(f'line {i} of a compressible log file\n')"
truncate -s 64M "$SRC/data/sparse.img"
printf 'in the middle' | dd of="$SRC/data/sparse.img" bs=1 seek=$((32 << 20)) conv=notrunc status=none
echo "ünïcødé content" >"$SRC/ünïcødé 名前/файл с пробелами.txt"
printf 'tab\tand newline\n' >"$SRC/data/$(printf 'name\twith\ttabs')"
ln -s ../data/one-byte "$SRC/perm/relative-link"
ln -s /nonexistent/target "$SRC/perm/dangling-link"
ln "$SRC/data/one-byte" "$SRC/perm/hard-link"
ln "$SRC/data/one-byte" "$SRC/empty/another-hard-link"
mkfifo "$SRC/perm/fifo"
echo secret >"$SRC/perm/private" && chmod 600 "$SRC/perm/private"
echo setuid >"$SRC/perm/setuid" && chmod 4755 "$SRC/perm/setuid"
echo none >"$SRC/perm/no-access" && chmod 000 "$SRC/perm/no-access"
chmod 1777 "$SRC/empty/dir"
chown 1234:5678 "$SRC/perm/private" "$SRC/empty/dir"
chown -h 4321:8765 "$SRC/perm/relative-link"
touch -h -d '1999-12-31 23:59:59.123456789' "$SRC/perm/relative-link"
touch -d '1970-01-02 00:00:00.5' "$SRC/data/one-byte"
touch -d '2038-02-01 12:00:00' "$SRC/data/text.log"
touch -d '2001-01-01' "$SRC/empty/dir" "$SRC/ünïcødé 名前"

# --- push and pull, encrypted and plain --------------------------------------------------------
for st in sealed plain; do
    out=$(job "{\"function\":\"repo_push\",\"repository\":\"web\",\"storage\":\"$st\",\"verify\":true,\"snapshot_id\":\"first\"}")
    eq "push to the $st storage completes" "$(ok "$out")" COMPLETED
    eq "push to $st: every file was read" "$(res "$out" .stats.reused_files)" 0
    out=$(job "{\"function\":\"repo_pull\",\"repository\":\"copy-$st\",\"from_repository\":\"web\",\"storage\":\"$st\"}")
    eq "pull from the $st storage completes" "$(ok "$out")" COMPLETED
    eq "pull from $st: the snapshot asked for" "$(res "$out" .snapshot_id)" first
    cmp=$(tree_compare "$SRC" "$DS/repositories/copy-$st")
    [[ $? -eq 0 ]] && pass "the $st round trip is exact (${cmp##*$'\n'})" || fail "the $st round trip is exact" "$cmp"
done
sealed_size=$(du -sb "$T_DIR/sealed" | cut -f1)
[[ $sealed_size -lt 180000000 ]] && pass "compression: 100 MB random + 64 MB sparse + 7 MB text store in $sealed_size bytes" ||
    fail "compression keeps the storage small" "$sealed_size bytes"
! grep -rqa "compressible log file" "$T_DIR/sealed" && pass "the encrypted storage holds no plaintext" ||
    fail "the encrypted storage holds no plaintext"
grep -rqa "compressible log file" "$T_DIR/plain/data" 2>/dev/null && fail "plain storage is compressed" "plaintext found in packs" ||
    pass "the plain storage's packs are compressed"

# --- incremental: only what changed is read; deduplication --------------------------------------
echo "a new line" >>"$SRC/data/text.log"
echo "new file" >"$SRC/new.txt"
out=$(job '{"function":"repo_push","repository":"web","storage":"sealed","snapshot_id":"second","tags":{"type":"pre-deployment","ticket":"OPS-7"}}')
eq "incremental push completes" "$(ok "$out")" COMPLETED
eq "its parent is the first snapshot" "$(res "$out" .parent)" first
read_bytes=$(res "$out" .stats.bytes_read)
[[ $read_bytes -lt 10000000 ]] && pass "incremental push reads only changed files ($read_bytes bytes)" ||
    fail "incremental push reads only changed files" "$read_bytes"
new_bytes=$(res "$out" .stats.bytes_new)
# An append re-stores the file's last chunk (at most 4 MiB, the largest chunk) plus the new
# file and the changed tree: far below the 170 MB the tree holds.
[[ $new_bytes -lt 4700000 ]] && pass "and stores only new chunks ($new_bytes bytes)" || fail "stores only new chunks" "$new_bytes"
out=$(job '{"function":"repo_new","repository":"twin"}')
cp -a "$SRC/data" "$DS/repositories/twin/"
out=$(job '{"function":"repo_push","repository":"twin","storage":"sealed"}')
eq "a second repository with the same data pushes" "$(ok "$out")" COMPLETED
new_bytes=$(res "$out" .stats.bytes_new)
[[ $new_bytes -lt 1000000 ]] && pass "data deduplicates across repositories ($new_bytes new bytes of $(res "$out" .stats.bytes))" ||
    fail "data deduplicates across repositories" "$new_bytes"

# --- restore points: a tag, an id, latest --------------------------------------------------------
out=$(job '{"function":"repo_list","storage":"sealed","repository":"web"}')
eq "repo_list shows the storage's snapshots" "$(res "$out" '.snapshots | map(.id) | join(",")')" first,second
out=$(job '{"function":"repo_pull","repository":"by-tag","from_repository":"web","storage":"sealed","restore_point":"pre-deployment"}')
eq "a tag value is a restore point" "$(res "$out" .snapshot_id)" second
out=$(job '{"function":"repo_pull","repository":"by-pair","from_repository":"web","storage":"sealed","restore_point":"ticket=OPS-7"}')
eq "key=value is a restore point" "$(res "$out" .snapshot_id)" second
check "the tagged snapshot restores the new file" test -f "$DS/repositories/by-tag/new.txt"
out=$(job '{"function":"repo_pull","repository":"by-id","from_repository":"web","storage":"sealed","restore_point":"first"}')
eq "an id is a restore point" "$(res "$out" .snapshot_id)" first
check "the first snapshot has no new file" test ! -e "$DS/repositories/by-id/new.txt"
out=$(job '{"function":"repo_pull","repository":"nope","from_repository":"web","storage":"sealed","restore_point":"no-such-point"}')
eq "an unknown restore point fails" "$(ok "$out")" FAILED
contains "and says so" "$(jq -r .error.message <<<"$out")" 'matches "no-such-point"'
check "and leaves nothing behind" test ! -e "$DS/repositories/nope"

# --- pull over an existing repository, refused while running -------------------------------------
out=$(job '{"function":"repo_up","repository":"web"}')
eq "repo_up without a Ferryfile marks it running" "$(res "$out" .running)" true
out=$(job '{"function":"repo_pull","repository":"web","storage":"sealed","restore_point":"first"}')
eq "pull refuses a running repository" "$(jq -r .error.code <<<"$out")" running
check "and leaves it alone" test -f "$SRC/new.txt"
out=$(job '{"function":"repo_pull","repository":"web","storage":"sealed","restore_point":"first","force":true}')
eq "force replaces it anyway" "$(ok "$out")" COMPLETED
check "with the snapshot's content" test ! -e "$SRC/new.txt"
eq "no temporary directories are left" "$(ls -A "$DS/repositories" | grep -c '^\.')" 0
out=$(job '{"function":"repo_push","repository":"web","storage":"sealed","snapshot_id":"first"}')
eq "a snapshot id is not reused" "$(jq -r .error.code <<<"$out")" bad_parameter

# --- wrong passphrase, unknown storage -----------------------------------------------------------
ferry create storage Ops wrongpw --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/sealed\",\"passphrase\":\"guess\"}" >/dev/null
out=$(job '{"function":"repo_pull","repository":"x","storage":"wrongpw"}')
contains "a wrong passphrase is named" "$(jq -r .error.message <<<"$out")" "wrong passphrase"
out=$(job '{"function":"repo_push","repository":"web","storage":"no-such-storage"}')
eq "an unknown storage fails" "$(ok "$out")" FAILED
stop_host
t_done
