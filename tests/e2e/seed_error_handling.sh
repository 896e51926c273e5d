#!/usr/bin/env bash
# The seed's error-handling vault, verbatim: backup_with_retry with max_retries 3 and
# retry_delay 300, on_failure notify and fallback_function backup_to_secondary, timeout 3600.
# The primary storage is unreachable (transient), so every attempt retries, then the
# fallback backs the repository up to the secondary storage. retry.max_delay caps the seed's
# 300 s delay at 1 s here, so the test does not wait 15 minutes.
. "$(dirname "$0")/../lib.sh"

rx=$T_DIR/rx; mkdir -p "$rx"
python3 "$FERRY_ROOT/tests/helpers/receivers.py" "$rx" & T_EXTRA_PIDS=$!
wait_for 10 test -s "$rx/ports" || { fail "receivers started"; t_done; exit 1; }
read -r smtp_port _ <"$rx/ports"
write_config "smtp = { url = \"smtp://127.0.0.1:$smtp_port\"; };" \
    'retry = { max_delay = 1; jitter = 0.0; };' 'lease = { poll_ms = 200; };'
install_plugins
ds=$T_DIR/datastore
mkdir -p "$ds/repositories/webapp/data"
seq 1 20000 >"$ds/repositories/webapp/data/numbers.txt"
echo "config" >"$ds/repositories/webapp/app.conf"
ferry create region r >/dev/null; ferry create bridge r local >/dev/null; ferry create team Operations >/dev/null
ferry create machine Operations local app-server --vault "{\"connection\":\"local\",\"datastore\":\"$ds\"}" >/dev/null
ferry create storage Operations default --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/not-mounted/backups\"}" >/dev/null
ferry create storage Operations secondary --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/secondary\"}" >/dev/null
mkdir -p "$T_DIR/secondary"
start_host

vault=$(sed -n '/^### Error Handling/,/^## Related/p' "$FERRY_ROOT/tests/seed/000_fe445159a0569f11.txt" | sed -n '/^```json/,/^```/p' | sed '1d;$d')
contains "the seed's error-handling vault was found" "$vault" '"function": "backup_with_retry"'
vault=$(jq -c '. + {"repository":"webapp"}' <<<"$vault")
id=$(ferry create queue-item Operations app-server local --vault "$vault" --output json | jq -r '.data[0].taskId')
wait_status "$id" FAILED 60
row=$(ferry list queue --task-id "$id" --output json | jq '.data[0]')
eq "backup_with_retry retried max_retries times" "$(jq -r .retryCount <<<"$row")" 3
eq "four attempts in the response" "$(jq -r .responseVault.attempts <<<"$row")" 4
fb=$(ferry list queue --output json | jq -r --arg p "$id" '.data[] | select(.parentTaskId==$p) | .taskId')
[[ -n $fb ]] && pass "the fallback was queued" || fail "the fallback was queued"
wait_status "$fb" COMPLETED 60
eq "backup_to_secondary completed" "$(task_status "$fb")" COMPLETED
eq "the fallback is backup_to_secondary" "$(ferry list queue --task-id "$fb" --output json | jq -r '.data[0].function')" backup_to_secondary
[[ -n $(find "$T_DIR/secondary" -type f | head -1) ]] && pass "the secondary storage holds the backup" || fail "the secondary storage holds the backup"
wait_for 10 test -e "$rx/mail-1.txt"
contains "ops@company.com was told of the failure" "$(cat "$rx/mail-1.txt" 2>/dev/null)" "TO <ops@company.com>"
stop_host
t_done
