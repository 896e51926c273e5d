#!/usr/bin/env bash
# A command is usually the first to open the store since the last one closed it: SQLite
# then invalidates the WAL index so that the command rebuilds it from the log. It zeroes the
# -shm file for that (sqlite_vfs.c, vfs_ftruncate) instead of cutting it to 3 bytes and
# growing it again a page at a time, and, run as root, makes no chown of the WAL or -shm
# file that already has the store's owner (vfs_fchown: the chown made the fdatasync write
# the WAL's inode too). The command still rebuilds the index and finds every item.
. "$(dirname "$0")/../lib.sh"
only_sqlite "the WAL index is SQLite's"
need_strace
DB=$T_DIR/ferry.db
write_config
install_plugins
setup_local_machine Ops box1
for i in 1 2 3; do
    ferry create queue-item Ops box1 local --vault '{"function":"hello"}' >/dev/null 2>&1 || fail "a create failed"
done
eq "the -shm file is 32 KiB" "$(stat -c %s "$DB-shm")" 32768
ASAN_OPTIONS=${ASAN_OPTIONS//detect_leaks=1/detect_leaks=0} strace -o "$T_DIR/trace" \
    -e trace=openat,ftruncate,pwrite64,pwritev,fchown,pread64 \
    "$FERRY_BIN" create queue-item Ops box1 local --vault '{"function":"hello"}' >/dev/null 2>&1 ||
    fail "the traced create failed"
shm_fd=$(awk '/openat\(.*ferry\.db-shm"/ { print $NF; exit }' "$T_DIR/trace")
wal_fd=$(awk '/openat\(.*ferry\.db-wal"/ { print $NF; exit }' "$T_DIR/trace")
[[ -n $shm_fd && -n $wal_fd ]] && pass "the create opened the WAL and the -shm file" ||
    fail "the create opened the WAL and the -shm file" "$(head -60 "$T_DIR/trace")"
count() { awk -v re="$1" '$0 ~ re { n++ } END { print n + 0 }' "$T_DIR/trace"; }
eq "no cut of the -shm file" "$(count "^ftruncate\\($shm_fd, ")" 0
eq "no one-byte growth of it" "$(count "^pwrite64\\($shm_fd, .*, 1, ")" 0
eq "one zeroing write of it from byte 3" "$(count "^pwritev\\($shm_fd, .*, 3\\) = 32765")" 1
if [[ $(id -u) -eq 0 ]]; then
    eq "no chown of the WAL or the -shm file (root, owners already right)" "$(count "^fchown\\(")" 0
fi
[[ $(count "^pread64\\($wal_fd, ") -ge 1 ]] && pass "the create read the log to rebuild the index" ||
    fail "the create read the log to rebuild the index" "$(grep pread64 "$T_DIR/trace" | head)"
eq "the -shm file is still 32 KiB" "$(stat -c %s "$DB-shm")" 32768
eq "every item is there" "$(sqlite3 -cmd '.timeout 5000' "$DB" "SELECT count(*) FROM queue_items")" 4
eq "the store is intact" "$(sqlite3 -cmd '.timeout 5000' "$DB" 'PRAGMA integrity_check')" ok
t_done
