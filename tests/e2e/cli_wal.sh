#!/usr/bin/env bash
# A CLI command on an SQLite store (issue 14, point 7): each command is a process that opens
# the store, commits once and exits. Its close no longer checkpoints the WAL into the database
# and removes it (three more fsyncs, a file created and removed per command) while the WAL is
# short: the next process recovers it. Durability is unchanged: the commit is synced to the
# WAL before the task id is printed. A WAL grown past 128 frames is checkpointed by the
# command that finds it so, so it stays short without a host.
. "$(dirname "$0")/../lib.sh"

if [[ ${FERRY_TEST_DRIVER:-sqlite} != sqlite ]]; then
    echo "ok 1 - # SKIP the WAL is SQLite's"
    exit 0
fi
write_config
install_plugins
setup_local_machine Ops box1
DB=$T_DIR/ferry.db
create() { ferry create queue-item Ops box1 local --vault '{"function":"hello"}'; }
wal_size() { stat -c %s "$DB-wal" 2>/dev/null || echo 0; }
items() { sqlite3 -cmd '.timeout 5000' "$DB" "SELECT count(*) FROM queue_items"; }

create >/dev/null 2>&1 # probes the plugins once, writes the descriptor cache
# A checkpoint on close would leave no WAL behind.
sqlite3 "$DB" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
out=$(create 2>&1)
id=$(sed -n 's/^Task ID: //p' <<<"$out")
[[ $(wal_size) -gt 0 ]] && pass "a create leaves its commit in the WAL (no checkpoint on close)" ||
    fail "a create leaves its commit in the WAL (no checkpoint on close)" "$(ls -la "$T_DIR")"
eq "... the next command finds the item" "$(ferry list queue --task-id "$id" --output json | jq -r '.data[0].status')" PENDING

# The syncs of one create: the commit's, and the WAL's directory entry (SQLite syncs the
# directory of a WAL it opened with O_CREAT): before, five (the WAL header and its directory,
# the commit, and the checkpoint's WAL and database syncs).
if command -v strace >/dev/null && strace -f -o /dev/null true 2>/dev/null; then
    strace -f -s 200 -e trace=fdatasync,fsync,pwrite64,write,openat -o "$T_DIR/trace" \
        "$FERRY_BIN" create queue-item Ops box1 local --vault '{"function":"hello"}' >/dev/null 2>&1
    syncs=$(grep -cE '(fdatasync|fsync)\(' "$T_DIR/trace")
    [[ $syncs -ge 1 && $syncs -le 2 ]] && pass "a create syncs once for its commit (and once the WAL's directory): $syncs" ||
        fail "a create syncs once for its commit (and once the WAL's directory)" "$(grep -E 'sync\(' "$T_DIR/trace")"
    walfd=$(sed -n 's/.*openat(.*ferry\.db-wal".* = \([0-9]*\)$/\1/p' "$T_DIR/trace" | head -1)
    # Line numbers: the last write to the WAL < the WAL's sync < the task id on stdout.
    last_write=$(grep -n "pwrite64($walfd," "$T_DIR/trace" | tail -1 | cut -d: -f1)
    wal_sync=$(grep -n "fdatasync($walfd)" "$T_DIR/trace" | tail -1 | cut -d: -f1)
    printed=$(grep -n 'write(1, .*Task ID' "$T_DIR/trace" | tail -1 | cut -d: -f1)
    [[ -n $walfd && -n $last_write && -n $wal_sync && -n $printed && $last_write -lt $wal_sync && $wal_sync -lt $printed ]] &&
        pass "... the commit is synced to the WAL before the task id is printed" ||
        fail "... the commit is synced to the WAL before the task id is printed" "wal fd $walfd: write $last_write sync $wal_sync printed $printed" "$(cat "$T_DIR/trace")"
else
    echo "ok $((T_N += 1)) - # SKIP strace cannot trace here"
fi

n_created=$(items)
# Bounded: 60 creates (about 12 frames each) would make a WAL of about 3 MiB; the command
# that finds more than 128 frames checkpoints and removes it.
max=0
for _ in $(seq 60); do
    create >/dev/null 2>&1 || fail "a create failed"
    n_created=$((n_created + 1))
    s=$(wal_size)
    ((s > max)) && max=$s
done
[[ $max -le $((1024 * 1024)) ]] && pass "60 creates keep the WAL under 1 MiB (largest $max bytes)" ||
    fail "60 creates keep the WAL under 1 MiB" "largest $max bytes"
eq "... every item is there" "$(items)" "$n_created"
eq "... and the database is intact" "$(sqlite3 -cmd '.timeout 5000' "$DB" 'PRAGMA integrity_check')" ok

# Reading commands leave the WAL as it is; a host on the same store sees the items.
before=$(wal_size)
ferry list queue >/dev/null
eq "a read (list queue) neither checkpoints nor grows the WAL" "$(wal_size)" "$before"

# 20 creates at once, four processes: each commit counted once, the store intact.
for p in 1 2 3 4; do
    (for _ in $(seq 5); do create >/dev/null 2>&1 || echo fail; done) >"$T_DIR/par$p" &
done
wait
eq "20 creates from 4 processes at once: none failed" "$(cat "$T_DIR"/par*)" ""
eq "... 20 more items" "$(items)" $((n_created + 20))
eq "... and the database is intact" "$(sqlite3 -cmd '.timeout 5000' "$DB" 'PRAGMA integrity_check')" ok

# A host runs them (its commits: about 12 frames an item) and, once idle, checkpoints its WAL
# into the database (not only at 8000 frames), so the next commits overwrite the WAL from its
# start. The database file alone (copied without its WAL) then holds the items' ends.
start_host
ended() { sqlite3 -cmd '.timeout 5000' "$1" "SELECT count(*) FROM queue_items WHERE status = 'COMPLETED'"; }
in_db() { cp "$DB" "$T_DIR/main.db" && [[ $(ended "$T_DIR/main.db") == "$(items)" ]]; }
all_ended() { [[ $(ended "$DB") == "$(items)" ]]; } # the store's view, WAL included
wait_for 20 all_ended
wait_for 5 in_db && pass "an idle host checkpoints the WAL: the database file alone has all $(items) items COMPLETED" ||
    fail "an idle host checkpoints the WAL" "$(ended "$DB") items COMPLETED, $(ended "$T_DIR/main.db") of them in the database file"
stop_host

t_done
