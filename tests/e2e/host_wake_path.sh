#!/usr/bin/env bash
# The path of an item on an idle host, from the create's wake-up to the claim's commit: the
# host reads its wake-ups in one call (a second that found none was one more system call on
# the path of every item) and goes to the claim without asking its workers for events when
# poll saw none (an epoll_wait that found nothing, at every item).
. "$(dirname "$0")/../lib.sh"

only_sqlite "the wake-up socket is SQLite's"
need_strace
write_config
install_plugins
setup_local_machine Ops box1

start_host || fail "the host starts"
strace -f -p "$HOST_PID" -e trace=recvfrom,recvmsg,recvmmsg,epoll_wait,fdatasync -e signal=none \
    -o "$T_DIR/trace" 2>/dev/null &
tracer=$!
wait_for 10 test -s "$T_DIR/trace" || sleep 1 # attached: strace writes nothing before a call
for i in 1 2 3 4 5; do
    id=$(ferry create queue-item Ops box1 local --vault '{"function":"hello"}' --output json |
        jq -r '.data[0].taskId')
    wait_status "$id" COMPLETED 20 || fail "item $i completes" "$(task_status "$id")"
    sleep 0.3 # idle again before the next
done
kill -INT "$tracer"
wait "$tracer" 2>/dev/null
stop_host

# From each wake-up read (a one-byte datagram) to the next fdatasync (the claim's commit):
# the calls that read wake-ups, and the epoll_waits.
paths=$(awk '
    /recv(from|msg|mmsg)\(/ && !on && /"w"/ { on = 1; reads = 0; epolls = 0 }
    on && /recv(from|msg|mmsg)\(/ { reads++ }
    on && /epoll_wait\(/ { epolls++ }
    on && /fdatasync\(/ { print reads " " epolls; on = 0 }' "$T_DIR/trace")
n=$(wc -l <<<"$paths")
((n >= 5)) && pass "the trace holds the wake-up paths of the 5 items ($n)" ||
    fail "the trace holds the wake-up paths of the 5 items" "$paths"
eq "each wake-up is read in one call" "$(cut -d' ' -f1 <<<"$paths" | sort -u)" 1
# A worker's own message (a ready worker, a late stderr line) may land in the same turn and is
# then read there, so a busy machine may show one epoll_wait; before, every path had one.
quiet=$(grep -c ' 0$' <<<"$paths")
((quiet * 2 > n)) && pass "most paths reach the claim without an epoll_wait ($quiet of $n)" ||
    fail "most paths reach the claim without an epoll_wait" "$paths"
t_done
