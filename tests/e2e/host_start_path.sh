#!/usr/bin/env bash
# The path of an item from its create to its start, by system calls: an idle host writes
# the run message right after the claim's sync, and the durable marker (a write of its own)
# only after it; a process that creates many items through one store handle reads the
# wake-up directory once, not at every create (an opendir, two getdents and a close on the
# path of every item). test_store's wake_listing: a kept listing still finds a host that
# came after it and removes one that died.
. "$(dirname "$0")/../lib.sh"

only_sqlite "the wake-up directory and the durable marker are SQLite's"
need_strace
build_bench_queue
write_config
install_plugins
setup_local_machine Ops box1
ferry create machine Ops local m0 --vault '{"connection":"local"}' >/dev/null

start_host || fail "the host starts"
trace_idle_items fdatasync,pwrite64,write "$T_DIR/host.trace"

# From the host's last fdatasync before each run message to the message: its pwrites.
paths=$(awk '
    /fdatasync\(/ { on = 1; writes = 0; next }
    on && /pwrite64\(/ { writes++ }
    on && /write\(/ && /\\"op\\":\\"run\\"/ { print writes; on = 0 }' "$T_DIR/host.trace")
n=$(grep -c . <<<"$paths")
((n >= 5)) && pass "the trace holds the start paths of the 5 items ($n)" ||
    fail "the trace holds the start paths of the 5 items" "$(head -c 3000 "$T_DIR/host.trace")"
eq "no write between the claim's sync and its run message" "$(sort -u <<<"$paths")" 0

# A handle that creates 20 items notifies the host 20 times and lists the directory once.
# Its listing is trusted once the directory is a second older than the listing.
sleep 1.2
ASAN_OPTIONS=${ASAN_OPTIONS//detect_leaks=1/detect_leaks=0} strace -e trace=getdents64,sendto -e signal=none -o "$T_DIR/creator.trace" \
    "$FERRY_ROOT/$BUILD/tests/bench_queue" enqueue "$T_DIR/ferry.db" 20 >/dev/null ||
    fail "bench_queue enqueue creates 20 items"
eq "each create wakes the host" "$(grep -c '^sendto(' "$T_DIR/creator.trace")" 20
lists=$(grep -c '^getdents64(' "$T_DIR/creator.trace")
((lists <= 2)) && pass "the wake-up directory is read once for 20 creates ($lists getdents64)" ||
    fail "the wake-up directory is read once for 20 creates" "$lists getdents64"

stop_host
t_done
