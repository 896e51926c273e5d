#!/usr/bin/env bash
# What opening an SQLite store costs one command (issue 14, point 7). The migrations' check
# of a store already up to date asks SQLite's parsed schema whether their table exists (no
# query of sqlite_master) and takes no write lock, so a command that only reads does not wait
# for another process's write transaction; a store without that table is migrated. The
# store's directory is made only when the store's file cannot be opened, and a directory that
# cannot be made is still named.
. "$(dirname "$0")/../lib.sh"

if [[ ${FERRY_TEST_DRIVER:-sqlite} != sqlite ]]; then
    echo "ok 1 - # SKIP the open of an SQLite store"
    exit 0
fi
write_config
DB=$T_DIR/ferry.db
ferry create team Ops >/dev/null
versions() { sqlite3 "$1" "SELECT group_concat(version) FROM schema_migrations"; }

# Another process holds the write lock (BEGIN IMMEDIATE) until the command has ended: a
# command that waited for it would never end, and timeout ends it (exit 124).
mkfifo "$T_DIR/hold"
sqlite3 "$DB" <"$T_DIR/hold" >"$T_DIR/hold.out" 2>&1 &
holder=$!
T_EXTRA_PIDS=$holder
exec 7>"$T_DIR/hold"
printf "BEGIN IMMEDIATE;\nINSERT INTO teams (name, vault, vault_version, created_at, updated_at) VALUES ('Held', '{}', 1, 0, 0);\nSELECT 'held';\n" >&7
wait_for 10 grep -q held "$T_DIR/hold.out" || fail "the other process took the write lock" "$(cat "$T_DIR/hold.out")"
out=$(timeout 30 "$FERRY_BIN" list teams --output json 2>&1)
rc=$?
eq "a store up to date opens and reads while another process holds the write lock" "$rc" 0
eq "... and reads what was committed, not the other's open transaction" \
    "$(jq -r '[.data[].teamName] | join(",")' <<<"$out" 2>/dev/null)" Ops
printf "ROLLBACK;\n" >&7
exec 7>&-
wait "$holder"
T_EXTRA_PIDS=

# A store whose migrations' table is gone (a store made by hand, or an old one): the check
# finds no table and the migrations run, creating it.
rm -f "$T_DIR"/bare.db*
sed "s#$DB#$T_DIR/bare.db#" "$FERRY_CONFIG" >"$T_DIR/bare.conf"
sqlite3 "$T_DIR/bare.db" "CREATE TABLE notes (x)"
out=$("$FERRY_BIN" --config "$T_DIR/bare.conf" list teams 2>&1)
eq "a store without the migrations' table opens" "$?" 0
eq "... and is migrated like a new store" "$(versions "$T_DIR/bare.db")" "$(versions "$DB")"

# The syncs of a create: a WAL that holds frames already has its directory entry on disk
# (host/store/sqlite_vfs.c, wal_has_frames), so the commit's is the one sync; a WAL the
# command creates gets its directory synced too, before the task id is printed.
if command -v strace >/dev/null && strace -f -o /dev/null true 2>/dev/null; then
    install_plugins
    setup_local_machine Ops box1
    syncs() { # TRACE: the synced paths, one a line
        local fd
        for fd in $(sed -n 's/.*f\(data\)\{0,1\}sync(\([0-9]*\)).*/\2/p' "$1"); do
            grep -E "openat\(.*\) = $fd\$" "$1" | tail -1 | sed 's/[^"]*"\([^"]*\)".*/\1/'
        done
    }
    traced_create() {
        strace -f -e trace=openat,fdatasync,fsync,write -o "$T_DIR/trace" "$FERRY_BIN" \
            create queue-item Ops box1 local --vault '{"function":"hello"}' >/dev/null 2>&1
    }
    ferry create queue-item Ops box1 local --vault '{"function":"hello"}' >/dev/null 2>&1
    [[ $(stat -c %s "$DB-wal") -gt 32 ]] || fail "the WAL holds frames" "$(ls -la "$T_DIR")"
    traced_create
    eq "a create on a WAL that holds frames syncs the WAL alone" "$(syncs "$T_DIR/trace")" "$DB-wal"
    sqlite3 "$DB" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
    rm -f "$DB-wal" "$DB-shm"
    traced_create
    eq "a create that makes the WAL syncs it (header, commit) and its directory" \
        "$(syncs "$T_DIR/trace" | sort -u | tr '\n' ' ')" "$T_DIR $DB-wal "
    : >"$DB-wal" # as a command that only read leaves it
    traced_create
    eq "... and so does one that finds it empty" \
        "$(syncs "$T_DIR/trace" | sort -u | tr '\n' ' ')" "$T_DIR $DB-wal "
else
    echo "ok $((T_N += 1)) - # SKIP strace cannot trace here"
fi

# The store's directory: made (0700) when missing; named when it cannot be made.
sed "s#$DB#$T_DIR/new/sub/ferry.db#" "$FERRY_CONFIG" >"$T_DIR/new.conf"
check "a store in a directory that does not exist yet opens" \
    "$FERRY_BIN" --config "$T_DIR/new.conf" list teams
eq "... the directory is made, private" "$(stat -c %a "$T_DIR/new/sub")" 700
touch "$T_DIR/file"
sed "s#$DB#$T_DIR/file/sub/ferry.db#" "$FERRY_CONFIG" >"$T_DIR/bad.conf"
out=$("$FERRY_BIN" --config "$T_DIR/bad.conf" list teams 2>&1)
rc=$?
eq "a store under a file: exit 1" "$rc" 1
contains "... naming the directory that cannot be made" "$out" \
    "cannot create the store's directory $T_DIR/file/sub: Not a directory"

t_done
