#!/usr/bin/env bash
# A create wakes the host before its commit is on disk, and is on disk when it returns:
# store_commit sends the batch's wake-ups once the commit is published, then the driver syncs
# the WAL (docs/store-drivers.md). The host's claim then runs while the create's sync does,
# and starts nothing before its own sync, which covers the create's frames too.
#  - the wake-up datagram goes out before the create's fdatasync of the WAL;
#  - the create syncs the WAL exactly once, and before it exits (durable when it returns);
#  - the item runs.
. "$(dirname "$0")/../lib.sh"

only_sqlite "the WAL and its sync are SQLite's"
need_strace
write_config
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c && chmod 644 "$T_DIR/plugins/misbehave.so"
setup_local_machine Ops box1
DB=$T_DIR/ferry.db

start_host || fail "the host starts"
# (LeakSanitizer cannot run under ptrace: a SAN=1 build checks leaks in the other tests.)
for i in 1 2 3; do
    ASAN_OPTIONS=${ASAN_OPTIONS//detect_leaks=1/detect_leaks=0} strace -y -e trace=sendto,fdatasync,exit_group -o "$T_DIR/trace$i" "$FERRY_BIN" create queue-item \
        Ops box1 local --vault '{"function":"fx_noop"}' --output json >"$T_DIR/out$i" 2>"$T_DIR/err$i" ||
        fail "create $i" "$(cat "$T_DIR/err$i")"
done
# Order of the calls of the command's own process: w = the wake-up, s = a sync of the WAL, x = exit.
order() { awk '/sendto\(.*\.wake\// { printf "w" } /sync\([0-9]+<[^>]*-wal>/ { printf "s" }
    /exit_group/ { printf "x" }' "$1"; }
eq "the first create wakes the host, then syncs the WAL once, then exits" "$(order "$T_DIR/trace1")" wsx
eq "... the second too" "$(order "$T_DIR/trace2")" wsx
eq "... the third too" "$(order "$T_DIR/trace3")" wsx
id=$(jq -r '.data[0].taskId' "$T_DIR/out3")
wait_status "$id" COMPLETED 20 && pass "the item created last runs" ||
    fail "the item created last runs" "$(task_status "$id")"
stop_host

t_done
