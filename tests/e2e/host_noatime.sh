#!/usr/bin/env bash
# The store's files are opened with O_NOATIME (sqlite_vfs_open), by a command and by the
# host: reading the WAL after another process wrote it no longer updates its access time, so
# the host's fdatasync of a claim finds the WAL's inode clean and writes no inode block before
# its flush (one disk round trip less between a create and the item's start). A process that
# does not own a store file, and may not ask for O_NOATIME, opens it as before.
#  - a create opens the database, its WAL and shm with O_NOATIME;
#  - the host opens them and its sync marker with O_NOATIME, and runs the item;
#  - a store owned by another user: a create without the right to O_NOATIME still works.
. "$(dirname "$0")/../lib.sh"

only_sqlite "the WAL and its files are SQLite's"
need_strace
DB=$T_DIR/ferry.db
write_config
install_plugins
setup_local_machine Ops box1

# The flags of the last openat of file $2 in trace $1.
open_flags() { grep -F "\"$2\"" "$1" | grep -v ENOENT | tail -1 | sed 's/.*", \([A-Z_|]*\).*/\1/'; }
has_noatime() { [[ $(open_flags "$1" "$2") == *O_NOATIME* ]]; }

# (LeakSanitizer cannot run under ptrace: a SAN=1 build checks leaks in the other tests.)
ASAN_OPTIONS=${ASAN_OPTIONS//detect_leaks=1/detect_leaks=0} strace -f -e trace=openat -o "$T_DIR/create.trace" \
    "$FERRY_BIN" create queue-item Ops box1 local --vault '{"function":"hello"}' --output json \
    >"$T_DIR/out" 2>"$T_DIR/err" || fail "create" "$(cat "$T_DIR/err")"
for f in "$DB" "$DB-wal" "$DB-shm"; do
    has_noatime "$T_DIR/create.trace" "$f" && pass "the create opens ${f##*/} with O_NOATIME" ||
        fail "the create opens ${f##*/} with O_NOATIME" "$(open_flags "$T_DIR/create.trace" "$f")"
done
id=$(jq -r '.data[0].taskId' "$T_DIR/out")

ASAN_OPTIONS=${ASAN_OPTIONS//detect_leaks=1/detect_leaks=0} timeout 60 strace -f -e trace=openat -o "$T_DIR/host.trace" \
    "$FERRY_BIN" serve --drain >"$T_DIR/host.log" 2>&1 || fail "the host drains" "$(tail -5 "$T_DIR/host.log")"
for f in "$DB" "$DB-wal" "$DB-shm" "$DB.wake/durable"; do
    has_noatime "$T_DIR/host.trace" "$f" && pass "the host opens ${f#"$T_DIR"/} with O_NOATIME" ||
        fail "the host opens ${f#"$T_DIR"/} with O_NOATIME" "$(open_flags "$T_DIR/host.trace" "$f")"
done
eq "the item ran" "$(task_status "$id")" COMPLETED

# Another owner: root without CAP_FOWNER may open the files (CAP_DAC_OVERRIDE) but not ask
# for O_NOATIME (EPERM), and opens them without it.
if [[ $EUID -eq 0 ]] && command -v setpriv >/dev/null; then
    chown 65534 "$DB" "$DB-wal" "$DB-shm"
    ASAN_OPTIONS=${ASAN_OPTIONS//detect_leaks=1/detect_leaks=0} setpriv --inh-caps=-fowner --bounding-set=-fowner \
        strace -f -e trace=openat -o "$T_DIR/other.trace" "$FERRY_BIN" create queue-item Ops box1 local \
        --vault '{"function":"hello"}' --output json >"$T_DIR/out2" 2>"$T_DIR/err2" &&
        pass "a create on a store owned by another user works" ||
        fail "a create on a store owned by another user works" "$(cat "$T_DIR/err2")"
    grep -F "\"$DB-wal\"" "$T_DIR/other.trace" | grep -q 'O_NOATIME.*EPERM' &&
        pass "... after O_NOATIME was refused" ||
        fail "... after O_NOATIME was refused" "$(grep -F "\"$DB-wal\"" "$T_DIR/other.trace")"
    chown 0 "$DB" "$DB-wal" "$DB-shm"
    eq "... and its item is stored" "$(task_status "$(jq -r '.data[0].taskId' "$T_DIR/out2")")" PENDING
else
    pass "# SKIP another owner needs root and setpriv"
fi

t_done
