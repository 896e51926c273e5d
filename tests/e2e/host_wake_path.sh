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
trace_idle_items recvfrom,recvmsg,recvmmsg,epoll_wait,fdatasync "$T_DIR/trace"
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
