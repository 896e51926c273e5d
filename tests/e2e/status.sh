#!/usr/bin/env bash
# Host liveness (issue 18, point 2; docs/cli.md "ferry status"): `ferry status` shows each
# bridge's hosts (alive, stale or stopped, with the age of their last heartbeat), its queue
# depth, the oldest pending item and failing schedules, as text and JSON; create
# queue-item(s) and queue wait warn on stderr, never stdout, when no live host serves the
# item's bridge.
. "$(dirname "$0")/../lib.sh"
unset FERRY_NO_HOST_WARNING # lib.sh's: the warning is what this file tests

write_config 'workers = { count = 1; };' 'retry = { max_retries = 0; delay = 1; jitter = 0.0; };' \
    'lease = { poll_ms = 200; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops m1
ferry create bridge local-region far >/dev/null
ferry create machine Ops far m2 --vault '{"connection":"local"}' >/dev/null
WARN='ferry: warning: no host is serving bridge local'

# No host at all.
ferry create queue-item Ops m1 local --vault '{"function":"fx_noop"}' --output json >"$T_DIR/out" 2>"$T_DIR/err"
a=$(jq -r '.data[0].taskId' "$T_DIR/out")
eq "no host: the JSON output is the same ({success, data, message})" "$(jq -c 'keys' "$T_DIR/out")" '["data","message","success"]'
eq "no host: create queue-item warns on stderr, once" "$(cat "$T_DIR/err")" \
    "$WARN (no host of it seen yet); the item waits until one starts: ferry serve / systemctl start ferry"
not_contains "... never on stdout" "$(cat "$T_DIR/out")" "warning"
out=$(ferry create queue-item Ops m1 local --vault '{"function":"fx_noop"}' 2>/dev/null)
[[ $out == "Successfully created"*"Task ID: "* && $out != *warning* ]] && pass "text stdout unchanged" || fail "text stdout unchanged" "$out"
err=$(printf '%s\n' '{"team":"Ops","machine":"m1","bridge":"local","vault":{"function":"fx_noop"}}' \
    '{"team":"Ops","machine":"m2","bridge":"far","vault":{"function":"fx_noop"}}' |
    ferry create queue-items --output json 2>&1 >/dev/null)
eq "create queue-items warns once per bridge" "$(grep -c 'no host is serving bridge' <<<"$err")" 2
contains "... naming each" "$err" "no host is serving bridge far"
err=$(ferry queue wait "$a" --timeout 1 2>&1 >/dev/null)
contains "queue wait warns while the item waits" "$err" "$WARN"
err=$(FERRY_NO_HOST_WARNING=1 ferry queue wait "$a" --timeout 1 2>&1 >/dev/null)
not_contains "FERRY_NO_HOST_WARNING=1 turns it off (docs/cli.md)" "$err" "no host is serving"
json=$(ferry status --output json)
eq "status JSON: its shape" "$(jq -c '.data | keys' <<<"$json")" '["bridges","failingSchedules","oldestPending"]'
eq "every bridge is listed, with no host" "$(jq -c '[.data.bridges[] | [.bridgeName, .hostsAlive, (.hosts|length), .pending, .active]]' <<<"$json")" \
    '[["far",0,0,1,0],["local",0,0,3,0]]'
eq "the oldest pending item is the first queued" "$(jq -r '.data.oldestPending | [.taskId, .bridgeName, .function, (.ageSeconds|type)] | join(" ")' <<<"$json")" \
    "$a local fx_noop number"
text=$(ferry status)
contains "status text: a row per bridge" "$text" "local                0/0      3        0"
contains "... says no host served it" "$text" "no host has served it yet"
contains "... and the oldest pending item" "$text" "Oldest pending: $a (fx_noop on bridge local)"

# A live host: no warning; status shows it alive.
start_host
wait_status "$a" COMPLETED 15
err=$(ferry create queue-item Ops m1 local --vault '{"function":"fx_noop"}' 2>&1 >/dev/null)
eq "live host: create queue-item says nothing on stderr" "$err" ""
err=$(ferry create queue-item Ops m2 far --vault '{"function":"fx_noop"}' 2>&1 >/dev/null)
contains "... but warns for a bridge it does not serve" "$err" "no host is serving bridge far"
h=$(ferry status --output json | jq -c '.data.bridges[] | select(.bridgeName == "local")')
eq "status: the live host, alive, seen just now" \
    "$(jq -c '[.hostsAlive, (.hosts|length), .hosts[0].alive, (.hosts[0].lastSeenAgeSeconds < 10), .hosts[0].version, .hosts[0].stoppedTime]' <<<"$h")" \
    "[1,1,true,true,\"$(ferry --version | awk '{print $2}')\",null]"
contains "status text: the host alive" "$(ferry status)" "alive, seen"

# A failing schedule: its last fire's item FAILED (the fire itself is schedule_fire.sh's; here
# the schedule is pointed at a failed item, as a fire would leave it).
f=$(ferry create queue-item Ops m1 local --vault '{"function":"fx_result","code":"FAIL","message":"disk full"}' --output json | jq -r '.data[0].taskId')
ferry create schedule Ops nightly --vault '{"cron":"0 3 * * *","machine":"m1","queue_config":{"function":"fx_noop"}}' >/dev/null
ferry create schedule Ops fine --vault '{"cron":"0 3 * * *","machine":"m1","queue_config":{"function":"fx_noop"}}' >/dev/null
wait_status "$f" FAILED 15
sqlite3 "$T_DIR/ferry.db" "UPDATE schedules SET last_task_id = '$f', last_run_at = 1 WHERE name = 'nightly';
    UPDATE schedules SET last_task_id = '$a', last_run_at = 1 WHERE name = 'fine'"
fs=$(ferry status --output json | jq -c '.data.failingSchedules | map([.teamName, .scheduleName, .lastTaskId, .lastFailureReason])')
eq "status: the schedule whose last fire failed, alone" "$fs" "[[\"Ops\",\"nightly\",\"$f\",\"disk full\"]]"
contains "status text: the failing schedule" "$(ferry status)" "Ops/nightly  last fire"

# A stopped host: stale, and the warning names when it was last seen.
stop_host
err=$(ferry create queue-item Ops m1 local --vault '{"function":"fx_noop"}' 2>&1 >/dev/null)
contains "stopped host: create queue-item warns again" "$err" "$WARN (last seen "
contains "... naming the stopped host" "$err" ", stopped); the item waits until one starts"
eq "status: the host is not alive, and stopped" \
    "$(ferry status --output json | jq -c '.data.bridges[] | select(.bridgeName == "local") | [.hostsAlive, .hosts[0].alive, (.hosts[0].stoppedTime|type)]')" \
    '[0,false,"string"]'
contains "status text: stopped" "$(ferry status)" "stopped, seen"
# A host that died without stopping: stale once its heartbeat is older than 30 s.
sqlite3 "$T_DIR/ferry.db" "UPDATE hosts SET stopped_at = NULL, last_seen_at = last_seen_at - 120000" 2>/dev/null
eq "a host whose heartbeat is 2 min old is not alive" \
    "$(ferry status --output json | jq -c '.data.bridges[] | select(.bridgeName == "local") | [.hostsAlive, .hosts[0].alive, .hosts[0].stoppedTime]')" '[0,false,null]'
contains "status text: stale" "$(ferry status)" "stale, seen 2 min ago"
contains "... and the warning says no heartbeat since" "$(ferry create queue-item Ops m1 local --vault '{"function":"fx_noop"}' 2>&1 >/dev/null)" \
    "last seen 2 min ago: "
t_done
