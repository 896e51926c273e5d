#!/usr/bin/env bash
# An idle host that checkpointed a long WAL (store_idle) restarts it at once with its
# heartbeat. The commit that restarts the WAL also syncs its new header, and before, that
# commit was the next create's: two fdatasyncs instead of one on the path of the item (one
# create in twenty of the latency bench). Items created one at a time, each run before the
# next: every create syncs the WAL once.
. "$(dirname "$0")/../lib.sh"

if [[ ${FERRY_TEST_DRIVER:-sqlite} != sqlite ]]; then
    echo "ok 1 - # SKIP the WAL is SQLite's"
    exit 0
fi
if ! command -v strace >/dev/null || ! strace -f -o /dev/null true 2>/dev/null; then
    echo "ok 1 - # SKIP strace cannot trace here"
    exit 0
fi
write_config
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c && chmod 644 "$T_DIR/plugins/misbehave.so"
setup_local_machine Ops box1
DB=$T_DIR/ferry.db
# The WAL's checkpoint sequence: one more at every restart.
wal_seq() { od -An -tu1 -j12 -N4 "$DB-wal" 2>/dev/null | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }'; }

start_host || fail "the host starts"
first=$(wal_seq)
# About 30 frames an item (the create, the claim, the end): the host's WAL passes 512 frames,
# and is checkpointed when the host goes idle, every 17 items or so.
twice=
for i in $(seq 60); do
    strace -f -y -e trace=fdatasync,fsync -o "$T_DIR/trace" "$FERRY_BIN" create queue-item Ops box1 local \
        --vault '{"function":"fx_noop"}' --output json >"$T_DIR/out" 2>&1
    id=$(jq -r '.data[0].taskId' "$T_DIR/out")
    syncs=$(grep -cE 'sync\([0-9]+<[^>]*-wal>' "$T_DIR/trace") # the store's directory aside
    [[ $syncs -ne 1 ]] && twice="$twice item $i: $syncs syncs;"
    wait_status "$id" COMPLETED 20 || fail "item $i completes" "$(task_status "$id")"
    sleep 0.2 # the host goes idle: its checkpoint and heartbeat, when due, come now
done
restarts=$(($(wal_seq) - first))
[[ $restarts -ge 2 ]] && pass "the host checkpointed and restarted the WAL $restarts times in 60 items" ||
    fail "the host checkpointed and restarted the WAL at least twice in 60 items" "$restarts restarts"
eq "... and every create synced the WAL once (the host restarted it, not a create)" "$twice" ""
eq "the store is intact" "$(sqlite3 -cmd '.timeout 5000' "$DB" 'PRAGMA integrity_check')" ok
stop_host
t_done
