#!/usr/bin/env bash
# The command that checkpoints a WAL grown past 128 frames (no host: every create is the
# store's only connection) keeps the WAL file and empties it by zeroing its header
# (store_sqlite.c, sqlite_vfs.c wal_truncate): no file removed and made again, no sync of its
# directory, and the next commits write over the blocks the file has. What was committed
# stays: in the database after the checkpoint, in the WAL after it.
. "$(dirname "$0")/../lib.sh"
only_sqlite "the WAL is SQLite's"
need_strace
write_config
install_plugins
setup_local_machine Ops box1
DB=$T_DIR/ferry.db
create() { ferry create queue-item Ops box1 local --vault '{"function":"hello"}'; }
items() { sqlite3 -cmd '.timeout 5000' "$1" "SELECT count(*) FROM queue_items"; }
create >/dev/null 2>&1 # probes the plugins once, writes the descriptor cache
# 40 creates of about 12 frames each pass 128 frames three times or more. (LeakSanitizer
# cannot run under ptrace: a SAN=1 build checks leaks in the other tests.)
ASAN_OPTIONS=${ASAN_OPTIONS//detect_leaks=1/detect_leaks=0} strace -f -o "$T_DIR/trace" -e trace=unlink,unlinkat,fdatasync,fsync,openat,ftruncate \
    bash -c 'for _ in $(seq 40); do "$0" create queue-item Ops box1 local --vault "{\"function\":\"hello\"}" >/dev/null 2>&1 || echo failed; done' \
    "$FERRY_BIN" >"$T_DIR/out" 2>&1
eq "40 creates, none failed" "$(cat "$T_DIR/out")" ""
# A checkpoint syncs the database file (the descriptor each process opened ferry.db as).
db_syncs=$(awk '/openat\(.*ferry\.db", / { fd[$1] = $NF }
                /(fdatasync|fsync)\(/ { f = $2; sub(/^[a-z]*sync\(/, "", f); sub(/\).*/, "", f); if (fd[$1] == f) n++ }
                END { print n + 0 }' "$T_DIR/trace")
[[ $db_syncs -ge 2 ]] && pass "the creates checkpointed the WAL ($db_syncs syncs of the database)" ||
    fail "the creates checkpointed the WAL" "syncs of the database: $db_syncs" "$(grep -E 'sync|ferry.db"' "$T_DIR/trace" | head -40)"
eq "... and no create removed the WAL or the wal-index" "$(grep -cE 'unlink(at)?\(.*ferry\.db-(wal|shm)' "$T_DIR/trace")" 0
eq "... nor cut a WAL to nothing" "$(grep -cE 'ftruncate\([0-9]+, 0\)' "$T_DIR/trace")" 0
[[ -f $DB-wal ]] && pass "... the WAL file is still there" || fail "... the WAL file is still there" "$(ls -la "$T_DIR")"
# Read from copies: sqlite3 on the store itself, its last connection at close, would
# checkpoint and remove the WAL. The files as a crash would leave them (no wal-index): the
# WAL's valid frames are recovered, the frames behind an emptied header are not.
mkdir "$T_DIR/copy"
cp "$DB" "$DB-wal" "$T_DIR/copy/"
eq "a copy of the database and its WAL holds every item" "$(items "$T_DIR/copy/ferry.db")" 41
eq "... and is intact" "$(sqlite3 "$T_DIR/copy/ferry.db" 'PRAGMA integrity_check')" ok
# Run until a checkpoint has just emptied the WAL: its header is zeros, and the database
# file alone holds every item.
n=41 zeroed=0
for _ in $(seq 20); do
    create >/dev/null 2>&1 || fail "a create failed"
    n=$((n + 1))
    if [[ $(head -c 32 "$DB-wal" | od -An -v -tx1 | tr -d ' \n') == "$(printf '0%.0s' $(seq 64))" ]]; then
        zeroed=1
        break
    fi
done
eq "a checkpointing create leaves the WAL's header zeroed" "$zeroed" 1
cp "$DB" "$T_DIR/main.db"
eq "... with every item in the database file itself" "$(items "$T_DIR/main.db")" "$n"
size=$(stat -c %s "$DB-wal")
create >/dev/null 2>&1
eq "the next create writes over the kept WAL (its size stays $size)" "$(stat -c %s "$DB-wal")" "$size"
rm -f "$T_DIR/copy/"*
cp "$DB" "$DB-wal" "$T_DIR/copy/"
eq "... and its item is in the WAL" "$(items "$T_DIR/copy/ferry.db")" $((n + 1))
eq "the store is intact" "$(sqlite3 -cmd '.timeout 5000' "$DB" 'PRAGMA integrity_check')" ok
t_done
