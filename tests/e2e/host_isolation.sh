#!/usr/bin/env bash
# Every attempt runs in a worker process of its own group: plugins that crash, exit, loop,
# allocate without bound, fork stubborn children or scribble on stdout end with a clear
# status while the host and the other jobs carry on.
. "$(dirname "$0")/../lib.sh"

limit='workers = { count = 4; memory_limit_mb = 256; };'
[[ ${SAN:-0} == 1 ]] && limit='workers = { count = 4; };'  # ASan cannot run under RLIMIT_AS
write_config "$limit" 'timeouts = { grace = 2; };' 'lease = { poll_ms = 200; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops m1
for m in m2 m3 m4 m5 m6 m7 m8; do ferry create machine Ops local $m --vault '{"connection":"local"}' >/dev/null; done
start_host

q() { # q MACHINE VAULT -> task id
    ferry create queue-item Ops "$1" local --vault "$2" --output json | jq -r '.data[0].taskId'
}
reason() { ferry list queue --task-id "$1" --output json | jq -r '.data[0].lastFailureReason'; }
resp_outcome() { ferry list queue --task-id "$1" --output json | jq -r '.data[0].responseVault.error.outcome'; }

# A long, well-behaved job runs beside the misbehaving ones and must complete.
steady=$(q m8 '{"function":"fx_sleep","seconds":4}')
segv=$(q m1 '{"function":"fx_segv"}')
abrt=$(q m2 '{"function":"fx_abort"}')
ext=$(q m3 '{"function":"fx_exit"}')
garb=$(q m4 '{"function":"fx_garbage"}')

wait_status "$segv" FAILED 10
contains "segfault: FAILED, killed by signal 11" "$(reason "$segv")" "signal 11"
eq "segfault outcome is CRASHED" "$(resp_outcome "$segv")" CRASHED
wait_status "$abrt" FAILED 10
contains "abort: killed by SIGABRT" "$(reason "$abrt")" "signal 6"
wait_status "$ext" FAILED 10
contains "exit(): the function's exit status is reported" "$(reason "$ext")" "the function called exit(7)"
wait_status "$garb" COMPLETED 10
eq "garbage on stdout does not break the protocol" "$(task_status "$garb")" COMPLETED

loop=$(q m5 '{"function":"fx_loop","timeout":1}')
wait_status "$loop" FAILED 15
contains "an endless loop that ignores SIGTERM is killed at its timeout" "$(reason "$loop")" "timeout after 1 s"
eq "its outcome is TIMEOUT" "$(resp_outcome "$loop")" TIMEOUT

if [[ ${SAN:-0} != 1 ]]; then
    alloc=$(q m6 '{"function":"fx_alloc","timeout":30}')
    wait_status "$alloc" FAILED 30
    contains "unbounded allocation stops at the memory limit" "$(reason "$alloc")" "signal 6"
fi

fork=$(q m7 '{"function":"fx_fork","timeout":1}')
wait_status "$fork" FAILED 15
sleep 1
child=$(grep -o 'forked child [0-9]*' <(ferry queue trace "$fork") | awk '{print $3}')
# Dead may mean a zombie here: PID 1 of some machines does not reap orphans.
state=$(awk '/^State:/ {print $2}' "/proc/$child/status" 2>/dev/null)
if [[ -n $child && ( -z $state || $state == Z ) ]]; then
    pass "a child that ignores SIGTERM dies with its worker's group"
else
    fail "a child that ignores SIGTERM dies with its worker's group" "child=$child still alive"
fi

wait_status "$steady" COMPLETED 15
eq "the well-behaved job beside them completed" "$(task_status "$steady")" COMPLETED
kill -0 "$HOST_PID" 2>/dev/null && pass "the host survived them all" || fail "the host survived them all"
ok=$(q m1 '{"function":"hello"}')
wait_status "$ok" COMPLETED 10
eq "and still runs new jobs" "$(task_status "$ok")" COMPLETED
stop_host
t_done
