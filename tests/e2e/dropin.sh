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

# --- clashes: a newcomer never takes over a loaded function, whatever its file name ----------
item_is() { # item_is FUNCTION [,"key":value...]: runs an item, prints STATUS and the result
    local id   # (without the task id and attempt number) or the failure reason
    id=$(ferry create queue-item Ops box1 local --vault "{\"function\":\"$1\"${2:-}}" --output json 2>/dev/null | jq -r '.data[0].taskId')
    wait_for 10 bash -c "s=\$('$FERRY_BIN' list queue --task-id $id --output json | jq -r '.data[0].status'); [[ \$s == COMPLETED || \$s == FAILED ]]"
    ferry list queue --task-id "$id" --output json |
        jq -r '.data[0] | "\(.status) \(if .status == "COMPLETED" then (.responseVault.result | del(.task, .attempt) | tojson) else .lastFailureReason end)"'
}
drop() { # drop SRC NAME: installs a built fixture the way an operator would
    cp "$1" "$P/.$2.tmp" && chmod 644 "$P/.$2.tmp" && mv "$P/.$2.tmp" "$P/$2"
}
refusal_logged() { grep -q "$P/$1 refused: $2" "$T_DIR/host.log"; }
plugin_reason() { ferry plugins --output json | jq -r --arg f "$1" '.data[] | select(.file==$f) | .reason'; }

# The issue's reproduction: aa_dup.so declares hello and sorts before core.so.
build_fixture "$T_DIR/dup.so" abi.c -DDUPLICATE -DFUNC=dup
drop "$T_DIR/dup.so" aa_dup.so
if wait_for 5 refusal_logged aa_dup.so "function 'hello' is already provided by plugin core"; then
    pass "a newcomer declaring a loaded function is refused, with the owner in the host log"
else
    fail "a newcomer declaring a loaded function is refused" "$(tail -5 "$T_DIR/host.log")"
fi
contains "hello still runs core's code" "$(item_is hello)" "COMPLETED {\"message\":\"hello from"
contains "log_message still runs (the loaded plugin keeps all its functions)" \
    "$(item_is log_message ',"message":"still here"')" "COMPLETED"
contains "ferry plugins gives the newcomer's refusal" "$(plugin_reason aa_dup.so)" "function 'hello' is already provided by plugin core"
eq "ferry functions still credits hello to core" \
    "$(ferry functions --output json | jq -r '.data[] | select(.name=="hello") | .plugin')" core

# Two third-party plugins: the loaded one keeps its function against a newcomer that sorts first.
build_fixture "$T_DIR/owner.so" abi.c -DFUNC=shared -DVERSION_TAG=1 -DPLUGIN_NAME='"owner"'
build_fixture "$T_DIR/intruder.so" abi.c -DFUNC=shared -DVERSION_TAG=2 -DPLUGIN_NAME='"intruder"'
drop "$T_DIR/owner.so" zz_owner.so
wait_for 5 bash -c "'$FERRY_BIN' functions --output json | jq -e '.data[] | select(.name==\"shared\")'"
eq "the first plugin serves its function" "$(item_is shared)" 'COMPLETED {"version":1}'
drop "$T_DIR/intruder.so" aa_intruder.so
if wait_for 5 refusal_logged aa_intruder.so "function 'shared' is already provided by plugin owner"; then
    pass "a newcomer sorting first is refused against the loaded third-party plugin"
else
    fail "a newcomer sorting first is refused against the loaded third-party plugin" "$(tail -5 "$T_DIR/host.log")"
fi
eq "the loaded plugin keeps serving" "$(item_is shared)" 'COMPLETED {"version":1}'

# SIGHUP probes every file again but the loaded plugins keep their names.
lines=$(grep -c "SIGHUP: rescanning plugins" "$T_DIR/host.log")
kill -HUP "$HOST_PID"
wait_for 5 bash -c "(( \$(grep -c 'SIGHUP: rescanning plugins' '$T_DIR/host.log') > $lines ))"
eq "after SIGHUP the loaded plugin still serves" "$(item_is shared)" 'COMPLETED {"version":1}'
contains "after SIGHUP hello is still core's" "$(item_is hello)" "COMPLETED {\"message\":\"hello from"

# A new version of the loaded plugin keeps its function against the refused newcomer.
build_fixture "$T_DIR/owner3.so" abi.c -DFUNC=shared -DVERSION_TAG=3 -DPLUGIN_NAME='"owner"'
install -m 644 "$T_DIR/owner3.so" "$P/zz_owner.so"
served_v3() { [[ $(item_is shared) == 'COMPLETED {"version":3}' ]]; }
if wait_for 10 served_v3; then
    pass "a replaced loaded plugin keeps its function against the refused newcomer"
else
    fail "a replaced loaded plugin keeps its function against the refused newcomer" "$(item_is shared)" "$(tail -5 "$T_DIR/host.log")"
fi
contains "and the newcomer stays refused" "$(plugin_reason aa_intruder.so)" "function 'shared' is"

# First start, nothing loaded yet: the bundled core wins over aa_dup.so; the two third-party
# plugins are both refused, each naming the other (not the one that sorts first).
stop_host
: >"$T_DIR/host.log"
start_host
if wait_for 5 refusal_logged aa_intruder.so "function 'shared' is also declared by $P/zz_owner.so" &&
    refusal_logged zz_owner.so "function 'shared' is also declared by $P/aa_intruder.so"; then
    pass "at first start two clashing third-party plugins are both refused, each naming the other"
else
    fail "at first start two clashing third-party plugins are both refused" "$(grep refused "$T_DIR/host.log")"
fi
contains "at first start the bundled core wins over aa_dup.so" "$(grep 'aa_dup.so refused' "$T_DIR/host.log")" "already provided by plugin core"
contains "hello is core's after a restart" "$(item_is hello)" "COMPLETED {\"message\":\"hello from"
contains "the clashing function is unavailable until one file goes" "$(item_is shared)" "FAILED function shared is not provided"
contains "ferry plugins agrees with the host" "$(plugin_reason zz_owner.so)" "is also declared by $P/aa_intruder.so"
rm "$P/aa_intruder.so"
wait_for 5 bash -c "'$FERRY_BIN' functions --output json | jq -e '.data[] | select(.name==\"shared\")'"
eq "once the other file is removed the survivor loads" "$(item_is shared)" 'COMPLETED {"version":3}'

# --- world-writable: refused, and loaded again at the next rescan once fixed (no SIGHUP) -----
rm "$P/aa_dup.so"
chmod o+w "$P/zz_owner.so"
if wait_for 5 refusal_logged zz_owner.so "$P/zz_owner.so is world-writable"; then
    pass "a file made world-writable is refused"
else
    fail "a file made world-writable is refused" "$(tail -5 "$T_DIR/host.log")"
fi
chmod o-w "$P/zz_owner.so"
wait_for 5 bash -c "'$FERRY_BIN' functions --output json | jq -e '.data[] | select(.name==\"shared\")'"
eq "the fixed file serves again without SIGHUP" "$(item_is shared)" 'COMPLETED {"version":3}'
chmod o+w "$P"
if wait_for 5 refusal_logged core.so "plugin directory $P is world-writable"; then
    pass "a directory made world-writable refuses its plugins"
else
    fail "a directory made world-writable refuses its plugins" "$(tail -5 "$T_DIR/host.log")"
fi
n=$(grep -c "core.so refused: plugin directory" "$T_DIR/host.log")
rescans=$(grep -c "plugins rescanned" "$T_DIR/host.log")
sleep 4.5 # two periodic rescans (every 2 s) with nothing changed
eq "an unchanged refusal is logged once, not at every rescan" "$(grep -c "core.so refused: plugin directory" "$T_DIR/host.log")" "$n"
eq "and does not count as a change" "$(grep -c "plugins rescanned" "$T_DIR/host.log")" "$rescans"
chmod o-w "$P"
wait_for 5 bash -c "'$FERRY_BIN' functions --output json | jq -e '.data[] | select(.name==\"hello\")'"
contains "a fixed directory is loaded again at the next rescan, without SIGHUP" "$(item_is hello)" "COMPLETED {\"message\":\"hello from"
eq "with the third-party plugin too" "$(item_is shared)" 'COMPLETED {"version":3}'
not_contains "no SIGHUP was needed" "$(sed -n '/world-writable/,$p' "$T_DIR/host.log")" "SIGHUP"
stop_host
t_done
