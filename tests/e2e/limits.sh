#!/usr/bin/env bash
# Issue 17, point 6: limits by default. An attempt whose processes go over their memory, CPU
# time or process limit (limits.*, overridden per function by limits.functions.NAME) FAILS
# with "memory limit N MiB exceeded", "cpu time limit N s exceeded" or "process limit N
# exceeded"; everything it started is gone and the host runs the next item.
. "$(dirname "$0")/../lib.sh"

write_config 'timeouts = { default = 60; grace = 1; };' 'retry = { max_retries = 0; };' \
    'lease = { poll_ms = 100; };' 'workers = { count = 2; };' \
    'limits = { memory_mb = 256; cpu_seconds = 3; processes = 32;
                functions = { lim_alloc = { memory_mb = 512; }; lim_spin = { memory_mb = 0; }; }; };'
install_plugins
build_fixture "$T_DIR/plugins/limits.so" limits.c || { t_done; exit 1; }
ferry create region r1 >/dev/null
ferry create bridge r1 local >/dev/null
ferry create team Ops >/dev/null
ferry create machine Ops local m1 --vault '{"connection":"local","concurrency":2}' >/dev/null
start_host || { t_done; exit 1; }

q() { ferry create queue-item Ops m1 local --vault "$1" --output json | jq -r '.data[0].taskId'; }
reason() { ferry list queue --task-id "$1" --output json | jq -r '.data[0].lastFailureReason'; }
code() { ferry list queue --task-id "$1" --output json | jq -r '.data[0].responseVault.error.code'; }

# ends VAULT STATUS MESSAGE WHAT: queues an item, waits for its end, checks its message.
ends() {
    local t
    t=$(q "$1")
    check "$4: $2" wait_status "$t" "$2" 60
    [[ -n $3 ]] && { contains "$4: says '$3'" "$(reason "$t")" "$3"; eq "$4: code" "$(code "$t")" limit_exceeded; }
}
sh_item() { jq -nc --arg s "$1" '{function:"script", interpreter:"/bin/sh", script:$s}'; }
ends '{"function":"lim_alloc","mib":3072}' FAILED "memory limit 512 MiB exceeded" "3 GiB allocation (lim_alloc's 512 MiB override)"
ends '{"function":"lim_alloc","mib":128}' COMPLETED "" "128 MiB under the override"
ends '{"function":"lim_spin"}' FAILED "cpu time limit 3 s exceeded" "a spinning function"
ends '{"function":"lim_forks"}' FAILED "process limit 32 exceeded" "a function forking in a loop"
# A command the function runs is counted with it: tail -c holds 400 MiB in memory.
ends "$(sh_item 'head -c 400M /dev/zero | tail -c 400M >/dev/null; echo done')" FAILED \
    "memory limit 256 MiB exceeded" "a command holding 400 MiB"
ends "$(sh_item 'i=0; while [ $i -lt 40 ]; do sleep 3017 & i=$((i+1)); done; wait')" FAILED \
    "process limit 32 exceeded" "a script starting 40 sleeps"
check "no sleep the script started is left" wait_for 10 bash -c '! pgrep -x -f "sleep 3017" >/dev/null'
check "the host carries on" kill -0 "$HOST_PID"
ends "$(sh_item 'echo fine')" COMPLETED "" "the next item"
not_contains "the host logged no error" "$(grep -i ' error ' "$T_DIR/host.log")" "error"
stop_host

# The limits are on by default.
write_config 'lease = { poll_ms = 100; };'
ref=$(ferry config reference)
contains "on by default: 2048 MiB" "$ref" '| `limits.memory_mb` | integer | `2048` |'
contains "on by default: 3600 s" "$ref" '| `limits.cpu_seconds` | integer | `3600` |'
contains "on by default: 512 processes" "$ref" '| `limits.processes` | integer | `512` |'
printf 'limits = { functions = { x = { memroy_mb = 1; }; }; };\n' >>"$T_DIR/ferry.conf"
contains "an unknown override key is refused" "$(ferry list queue 2>&1)" "unknown key 'limits.functions.x.memroy_mb'"
t_done
