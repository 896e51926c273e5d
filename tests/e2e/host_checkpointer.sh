#!/usr/bin/env bash
# The host's WAL checkpoints run on a thread of their own, with a connection of their own
# (store_sqlite.c, sq_ckpt): the host's loop neither reads the frames a checkpoint copies
# nor writes the database file nor syncs it. A checkpointer that falls behind leaves the
# host to checkpoint itself, so that the WAL stays bounded. FERRY_TEST_WAL_FRAMES=200
# makes a host checkpoint at 200 frames instead of 8000 (and fall back at 800).
#  - a drain of 2000 items: the log restarts several times, the host's main thread writes
#    no page of the database file and syncs none, another thread of the host does;
#  - FERRY_TEST_CKPT=stall (a pass of the checkpointer the host does not wait for never
#    ends): the host's main thread checkpoints itself, the WAL stays under 1200 frames;
#  - the store is intact.
. "$(dirname "$0")/../lib.sh"

only_sqlite "the WAL and its checkpoints are SQLite's"
need_strace
build_bench_queue
write_config
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c && chmod 644 "$T_DIR/plugins/misbehave.so"
setup_local_machine Ops box1
for m in m0 m1 m2 m3; do ferry create machine Ops local $m --vault '{"connection":"local"}' >/dev/null; done
DB=$T_DIR/ferry.db
# The WAL's checkpoint sequence: one more at every restart.
wal_seq() { od -An -tu1 -j12 -N4 "$DB-wal" 2>/dev/null | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }'; }
completed() { sqlite3 -cmd '.timeout 5000' "$DB" "SELECT count(*) FROM queue_items WHERE status = 'COMPLETED'"; }
completed_at_least() { (($(completed) >= $1)); }

# drain TRACE: 2000 items queued while a traced host runs, until all of them completed.
# Sets TRACED (the host's pid: its main thread's id), RESTARTS (of the WAL in the drain)
# and WAL_SIZE (the file's, the largest it was: a restart writes over its start).
drain() {
    local tracer before first
    before=$(completed)
    start_host || fail "the host starts"
    TRACED=$HOST_PID
    first=$(wal_seq)
    strace -f -y -p "$HOST_PID" -e trace=pwrite64,fdatasync -e signal=none -o "$1" 2>/dev/null &
    tracer=$!
    wait_for 10 test -s "$1" || sleep 1 # attached: strace writes nothing before a call
    ASAN_OPTIONS=${ASAN_OPTIONS//detect_leaks=1/detect_leaks=0} \
        "$FERRY_ROOT/$BUILD/tests/bench_queue" fill "$DB" 2000 fx_noop 4 >/dev/null ||
        fail "bench_queue fill queues 2000 items"
    wait_for 120 completed_at_least $((before + 2000)) ||
        fail "the host runs the 2000 items" "$(($(completed) - before)) completed"
    sleep 0.5 # idle: its idle checkpoint
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null
    RESTARTS=$(($(wal_seq) - first))
    WAL_SIZE=$(stat -c %s "$DB-wal")
    stop_host
}
# calls TRACE WHO CALL FILE: how many CALLs on FILE (a path's end) the host's main thread
# (WHO = main) or its other threads (WHO = other) made.
calls() {
    awk -v pid="$TRACED" -v who="$2" -v call="$3(" -v file="$4>" '
        index($2, call) == 1 && (index($0, file ",") || index($0, file ")")) && (($1 == pid) == (who == "main")) { n++ }
        END { print n + 0 }' "$1"
}

export FERRY_TEST_WAL_FRAMES=200
drain "$T_DIR/host.trace"
((RESTARTS >= 3)) && pass "the WAL restarted $RESTARTS times in the drain" ||
    fail "the WAL restarted at least 3 times in the drain" "$RESTARTS restarts"
eq "the main thread wrote no page of the database file" "$(calls "$T_DIR/host.trace" main pwrite64 /ferry.db)" 0
eq "... and synced it never" "$(calls "$T_DIR/host.trace" main fdatasync /ferry.db)" 0
n=$(calls "$T_DIR/host.trace" other pwrite64 /ferry.db)
((n > 0)) && pass "another thread of the host wrote the pages ($n)" ||
    fail "another thread of the host wrote the pages" "none"
eq "the store is intact" "$(sqlite3 -cmd '.timeout 5000' "$DB" 'PRAGMA integrity_check')" ok

# Stalled: the WAL restarts all the same, by the host's own checkpoints past 4 x 200 frames.
FERRY_TEST_CKPT=stall drain "$T_DIR/stall.trace"
((RESTARTS >= 2)) && pass "stalled checkpointer: the WAL restarted $RESTARTS times" ||
    fail "stalled checkpointer: the WAL restarted at least twice" "$RESTARTS restarts"
n=$(calls "$T_DIR/stall.trace" main pwrite64 /ferry.db)
((n > 0)) && pass "... the main thread checkpointed ($n pages)" || fail "... the main thread checkpointed" "no page"
((WAL_SIZE <= 32 + 1200 * 4120)) && pass "... and the WAL stayed under 1200 frames ($WAL_SIZE bytes)" ||
    fail "... and the WAL stayed under 1200 frames" "$WAL_SIZE bytes"
eq "the store is intact" "$(sqlite3 -cmd '.timeout 5000' "$DB" 'PRAGMA integrity_check')" ok
t_done
