#!/usr/bin/env bash
# A parent that ends (timeout, cancel) while its host->call callee runs takes the callee with
# it: the callee is stopped, and the host neither touches the freed parent when the callee
# ends (it used to die of SIGSEGV or spin at 100% CPU) nor keeps the item's machine busy.
. "$(dirname "$0")/../lib.sh"

grace=2
write_config 'workers = { count = 2; };' "timeouts = { default = 60; grace = $grace; };" \
    'retry = { max_retries = 0; };' 'lease = { poll_ms = 200; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops m1
for m in m2 m3 m4 m5 m6 m7 m8 m9; do ferry create machine Ops local $m --vault '{"connection":"local"}' >/dev/null; done
start_host
q() { ferry create queue-item Ops "$1" local --vault "$2" --output json | jq -r '.data[0].taskId'; }
row() { ferry list queue --task-id "$1" --output json | jq -r ".data[0]$2"; }
pids=$T_DIR/callees
alive_callees() { # prints the callees still running (zombies count as ended)
    local p st
    [[ -f $pids ]] || return 0
    while read -r p; do
        st=$(awk '/^State:/ {print $2}' "/proc/$p/status" 2>/dev/null)
        [[ -n $st && $st != Z ]] && echo "$p"
    done <"$pids"
}
none_alive() { [[ -z $(alive_callees) ]]; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Eight parents that time out after 2 s while their callee hangs (it ignores cancellation).
tasks=()
for m in m1 m2 m3 m4 m5 m6 m7 m8; do
    tasks+=("$(q $m "{\"function\":\"fx_call\",\"target\":\"fx_hang\",\"target_params\":{\"file\":\"$pids\"},\"timeout\":2}")")
done
ok=1
for t in "${tasks[@]}"; do wait_status "$t" FAILED 40 || ok=0; done
[[ $ok == 1 ]] && pass "all eight parents end FAILED" || fail "all eight parents end FAILED" "$(ferry list queue)"
eq "the parent's reason is its timeout" "$(row "${tasks[0]}" .lastFailureReason)" "timeout after 2 s"
eq "every callee started" "$(wc -l <"$pids" 2>/dev/null)" 8

# The callees go with their parents, within the grace period.
if wait_for $((grace + 3)) none_alive; then
    pass "every callee is stopped with its parent"
else
    fail "every callee is stopped with its parent" "still running: $(alive_callees | tr '\n' ' ')"
fi
# Whatever is left ends now, as a callee that finally returns would: the host must not touch
# the freed parent.
for p in $(alive_callees); do kill -TERM "$p" 2>/dev/null; done
wait_for 5 none_alive
contains "the trace says the callee was stopped with its caller" \
    "$(ferry queue trace "${tasks[0]}" --output json | jq -r '.data.timeline[].details')" "fx_hang CANCELLED"

sleep 1 # let the host handle the callees' ends
if kill -0 "$HOST_PID" 2>/dev/null; then
    pass "the host lives on"
    a=$(cpu_ticks "$HOST_PID"); sleep 3; b=$(cpu_ticks "$HOST_PID")
    hz=$(getconf CLK_TCK)
    # 3 s idle: anything near 100% of a core would be ~3*hz ticks; allow 10%.
    (( b - a <= 3 * hz / 10 )) && pass "the host is idle ($((b - a)) ticks in 3 s)" \
        || fail "the host is idle" "$((b - a)) ticks of CPU in 3 s (hz $hz)"
    ok_task=$(q m9 '{"function":"fx_noop"}')
    wait_status "$ok_task" COMPLETED 10
    eq "and still runs new items" "$(task_status "$ok_task")" COMPLETED
else
    fail "the host lives on" "$(tail -5 "$T_DIR/host.log")"
fi

# A cancelled parent takes its callee too.
: >"$pids"
c=$(q m1 "{\"function\":\"fx_call\",\"target\":\"fx_hang\",\"target_params\":{\"file\":\"$pids\"},\"timeout\":30}")
wait_for 10 lines_at_least "$pids" 1
ferry queue cancel "$c" >/dev/null
wait_status "$c" CANCELLED 15
if wait_for $((grace + 3)) none_alive; then pass "a cancelled parent's callee is stopped"; else fail "a cancelled parent's callee is stopped" "$(alive_callees)"; fi

# SIGTERM still stops the host within its grace period.
if kill -0 "$HOST_PID" 2>/dev/null; then
    kill -TERM "$HOST_PID"
    start=$SECONDS
    while kill -0 "$HOST_PID" 2>/dev/null && ((SECONDS - start <= grace + 3)); do sleep 0.1; done
    if kill -0 "$HOST_PID" 2>/dev/null; then
        fail "SIGTERM stops the host within its grace period"
    else
        pass "SIGTERM stops the host within its grace period"
        wait "$HOST_PID"; rc=$?
        eq "the host exits 0" "$rc" 0
        HOST_PID=
    fi
else
    fail "SIGTERM stops the host within its grace period" "the host is gone"
fi
not_contains "no sanitizer report" "$(cat "$T_DIR/host.log")" "runtime error:"
t_done
