#!/usr/bin/env bash
# Drop-in plugins while `ferry serve` runs: added, replaced, removed, and SIGHUP.
. "$(dirname "$0")/../lib.sh"

write_config 'lease = { poll_ms = 5000; };'
install_plugins
setup_local_machine Ops box1
P=$T_DIR/plugins
start_host

run_fn() { # run_fn FUNCTION -> prints the result's version or the failure reason
    local id
    id=$(ferry create queue-item Ops box1 local --vault "{\"function\":\"$1\"}" --output json 2>/dev/null | jq -r '.data[0].taskId')
    wait_for 10 bash -c "s=\$('$FERRY_BIN' list queue --task-id $id --output json | jq -r '.data[0].status'); [[ \$s == COMPLETED || \$s == FAILED ]]"
    ferry list queue --task-id "$id" --output json |
        jq -r '.data[0] | if .status == "COMPLETED" then "v\(.responseVault.result.version)" else .lastFailureReason end'
}

# Added while running: usable within 2 s, no restart.
build_fixture "$T_DIR/v1.so" abi.c -DFUNC=dropped -DVERSION_TAG=1
build_fixture "$T_DIR/v2.so" abi.c -DFUNC=dropped -DVERSION_TAG=2
start=$(date +%s%N)
cp "$T_DIR/v1.so" "$P/.dropped.so.tmp" && chmod 644 "$P/.dropped.so.tmp" && mv "$P/.dropped.so.tmp" "$P/dropped.so"
wait_for 2 grep -q "plugins rescanned" "$T_DIR/host.log"
elapsed=$((($(date +%s%N) - start) / 1000000))
if grep -q "plugins rescanned" "$T_DIR/host.log" && ((elapsed <= 2000)); then
    pass "a dropped-in .so is picked up within 2 s (${elapsed} ms)"
else
    fail "a dropped-in .so is picked up within 2 s" "$(cat "$T_DIR/host.log")"
fi
eq "the new function runs without a restart" "$(run_fn dropped)" v1

# Replaced (install(1) writes a new file and renames it): the next job uses the new code.
install -m 644 "$T_DIR/v2.so" "$P/dropped.so"
sleep 0.5
eq "a replaced .so is used for the next job" "$(run_fn dropped)" v2

# Removed: gone from ferry functions, and the host fails items for it clearly.
rm "$P/dropped.so"
sleep 0.5
out=$(ferry functions --output json | jq -r '[.data[].name] | index("dropped")')
eq "a removed .so disappears from ferry functions" "$out" null
contains "the host no longer offers a removed function" "$(run_fn dropped)" "function dropped is not provided by any plugin on bridge local"

# SIGHUP forces a rescan (here with inotify still on, the log line proves the path runs).
kill -HUP "$HOST_PID"
wait_for 5 grep -q "SIGHUP: rescanning plugins" "$T_DIR/host.log"
contains "SIGHUP rescans the plugin directory" "$(cat "$T_DIR/host.log")" "SIGHUP: rescanning plugins"
id=$(ferry create queue-item Ops box1 local --vault '{"function":"hello"}' --output json | jq -r ".data[0].taskId")
wait_status "$id" COMPLETED 10
eq "the host still runs jobs after SIGHUP" "$(task_status "$id")" COMPLETED
stop_host
t_done
