#!/usr/bin/env bash
# Timeouts (vault, then function, then config), retries with backoff, INVALID never retried,
# fallbacks linked both ways, results and progress.
. "$(dirname "$0")/../lib.sh"

write_config 'timeouts = { default = 2; grace = 1; };' \
    'retry = { max_retries = 0; delay = 1; backoff = 2.0; jitter = 0.0; };' 'lease = { poll_ms = 200; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops m1
for m in m2 m3 m4 m5 m6; do ferry create machine Ops local $m --vault '{"connection":"local"}' >/dev/null; done
start_host
q() { ferry create queue-item Ops "$1" local --vault "$2" --output json | jq -r '.data[0].taskId'; }
row() { ferry list queue --task-id "$1" --output json | jq -r ".data[0]$2"; }
trace() { ferry queue trace "$1" --output json; }

# Timeouts: the vault's wins, then the function's default, then the config's.
t_vault=$(q m1 '{"function":"fx_sleep","seconds":10,"timeout":1}')
t_fn=$(q m2 '{"function":"fx_slow","seconds":10}')
t_cfg=$(q m3 '{"function":"fx_sleep","seconds":10}')
wait_status "$t_vault" FAILED 10 && wait_status "$t_fn" FAILED 10 && wait_status "$t_cfg" FAILED 10
eq "vault timeout wins" "$(row "$t_vault" .lastFailureReason)" "timeout after 1 s"
eq "then the function's default" "$(row "$t_fn" .lastFailureReason)" "timeout after 1 s"
eq "then the config's default" "$(row "$t_cfg" .lastFailureReason)" "timeout after 2 s"
contains "the trace says timeout after N s" "$(trace "$t_cfg" | jq -r '.data.timeline[].details')" "TIMEOUT: timeout after 2 s"

# Retries with exponential backoff (no jitter here): 1 s, then 2 s.
r=$(q m4 '{"function":"fx_result","code":"RETRY","message":"disk busy","max_retries":2,"retry_delay":1}')
wait_status "$r" FAILED 20
eq "retryCount counts the retries" "$(row "$r" .retryCount)" 2
eq "lastFailureReason is the function's error" "$(row "$r" .lastFailureReason)" "disk busy"
[[ $(row "$r" .lastRetryAt) != null ]] && pass "lastRetryAt is kept" || fail "lastRetryAt is kept"
details=$(trace "$r" | jq -r '.data.timeline[] | select(.action=="RETRY") | .details')
eq "backoff doubles each retry" "$details" $'retry 1 of 2 in 1.0 s\nretry 2 of 2 in 2.0 s'
eq "each attempt is in the trace with its outcome" \
    "$(trace "$r" | jq -r '[.data.timeline[] | select(.action=="ATTEMPT_FAILED")] | length')" 3
eq "the response vault counts the attempts" "$(row "$r" .responseVault.attempts)" 3

# INVALID is never retried, even with retries left.
inv=$(q m5 '{"function":"fx_result","code":"INVALID","message":"bad path","max_retries":3,"retry_delay":1}')
wait_status "$inv" FAILED 10
eq "INVALID is not retried" "$(row "$inv" .retryCount)" 0
eq "its outcome is INVALID" "$(row "$inv" .responseVault.error.outcome)" INVALID

# Fallback: queued as a linked item with the original parameters and the failure.
log=$T_DIR/fallback.log
fb=$(q m6 "{\"function\":\"fx_result\",\"code\":\"FAIL\",\"message\":\"primary down\",\"file\":\"$log\",\"label\":\"fb\",\"on_failure\":{\"fallback_function\":\"fx_record\"}}")
wait_status "$fb" FAILED 10
child=$(ferry list queue --output json | jq -r --arg p "$fb" '.data[] | select(.parentTaskId==$p) | .taskId')
[[ -n $child ]] && pass "the fallback is a new item linked to the original" || fail "the fallback is a new item linked to the original"
wait_status "$child" COMPLETED 10
eq "the fallback ran" "$(awk '{print $1}' "$log")" fb
eq "it is linked as a fallback" "$(row "$child" .linkKind)" fallback
eq "it carries the failure" "$(row "$child" .vaultContent.failure.message)" "primary down"
contains "the original's trace names the fallback" "$(trace "$fb" | jq -r '.data.timeline[].details')" "fallback fx_record queued as $child"
contains "the fallback's trace names the original" "$(trace "$child" | jq -r '.data.timeline[].details')" "fallback for $fb"

# A SECRET parameter is masked everywhere, even when its name does not look secret.
sec=$(q m2 '{"function":"fx_result","code":"FAIL","message":"pin rejected","pin":"pin-9876-zq"}')
wait_status "$sec" FAILED 10
all=$(ferry list queue --task-id "$sec" --output json; ferry queue trace "$sec"; ferry queue trace "$sec" --output json; ferry list queue)
not_contains "a SECRET parameter named pin is in no listing or trace" "$all" "pin-9876-zq"
eq "it shows as ********" "$(row "$sec" .vaultContent.pin)" "********"

# Results and progress.
s=$(q m1 '{"function":"fx_sleep","seconds":3,"timeout":20}')
wait_status "$s" PROCESSING 10
sleep 1
p=$(ferry list queue --status PROCESSING --output json | jq -r --arg t "$s" '.data[] | select(.taskId==$t) | .progress.percent')
[[ $p =~ ^[0-9]+$ && $p -gt 0 ]] && pass "progress shows in list queue --status PROCESSING ($p%)" || fail "progress shows while running" "percent=$p"
wait_status "$s" COMPLETED 10
resp=$(row "$s" .responseVault)
eq "response vault: status" "$(jq -r .status <<<"$resp")" COMPLETED
eq "response vault: result" "$(jq -r .result.slept <<<"$resp")" 3
eq "response vault: no error" "$(jq -r .error <<<"$resp")" null
[[ $(jq -r .duration_ms <<<"$resp") -ge 2900 ]] && pass "response vault: duration" || fail "response vault: duration" "$resp"
contains "progress is in the trace" "$(trace "$s" | jq -r '.data.timeline[].action')" PROGRESS
stop_host
t_done
