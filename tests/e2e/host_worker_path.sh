#!/usr/bin/env bash
# The path of an item inside an idle worker, from the run message it waited for to the
# plugin's start: the read that brought the message took all the host had written (it did
# not fill its buffer), so the worker starts without a look at its socket that finds
# nothing (a recv answered EAGAIN, one more system call on the path of every item).
. "$(dirname "$0")/../lib.sh"

need_strace
write_config 'workers = { count = 2; prefork = 2; };'
install_plugins
setup_local_machine Ops box1
start_host || fail "the host starts"
wait_for 10 test "$(pgrep -cP "$HOST_PID")" -ge 2 || fail "the host starts its 2 workers"

# The workers alone, attached by pid (they outlive the items: prefork, no retirement here).
attach=()
for w in $(pgrep -P "$HOST_PID"); do attach+=(-p "$w"); done
strace "${attach[@]}" -e trace=read,recvfrom,recvmsg,write -e signal=none -s 40 \
    -o "$T_DIR/trace" 2>/dev/null &
tracer=$!
sleep 1 # attached before the first item
ids=()
for label in a b c d e; do
    ids+=("$(ferry create queue-item Ops box1 local --vault '{"function":"hello"}' --output json |
        jq -r '.data[0].taskId')")
    wait_status "${ids[-1]}" COMPLETED 20 || fail "item $label completes"
    sleep 0.3 # the worker waits for its next run message again
done
kill -INT "$tracer"
wait "$tracer" 2>/dev/null
stop_host

# In each worker, from the read that returns a run message to its done message: the reads
# that found nothing.
paths=$(awk '
    /(read\(|read resumed)/ && /\\"op\\":\\"run\\"/ { on[$1] = 1; empty[$1] = 0; next }
    on[$1] && /EAGAIN/ { empty[$1]++ }
    on[$1] && /write\(/ && /\\"op\\":\\"done\\"/ { print empty[$1]; on[$1] = 0 }' "$T_DIR/trace")
n=$(grep -c . <<<"$paths")
((n == 5)) && pass "the trace holds the worker paths of the 5 items" ||
    fail "the trace holds the worker paths of the 5 items ($n)" "$(head -c 3000 "$T_DIR/trace")"
eq "no worker looks at its socket in vain before it starts an attempt" "$(sort -u <<<"$paths")" 0
t_done
