#!/usr/bin/env bash
# Signed webhooks of queue items (issue 17, point 4): an item's on_success.webhook_secret
# signs its POSTs (it wins over notify.webhook_secret), is sealed in the store and redacted in
# listings; an on_failure URL to the metadata address is refused, recorded in the trace, and
# changes nothing else.
. "$(dirname "$0")/../lib.sh"

hx=$T_DIR/hx
mkdir -p "$hx"
python3 "$FERRY_ROOT/tests/helpers/hook_receiver.py" "$hx" &
T_EXTRA_PIDS="${T_EXTRA_PIDS:-} $!"
wait_for 10 test -s "$hx/port" || { fail "webhook receiver started"; t_done; exit 1; }
hook=http://127.0.0.1:$(cat "$hx/port")/hook
header() { sed -n "s/^$2: //Ip" "$hx/hook-$1.headers" | tr -d '\r'; }
openssl_sig() { printf 'v1=%s' "$({ printf '%s.' "$2"; cat "$3"; } | openssl dgst -sha256 -hmac "$1" -hex | sed 's/^.*= //')"; }

write_config 'notify = { webhook_secret = "conf-key-not-this-one"; };' 'lease = { poll_ms = 200; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops m1
start_host
q() { ferry create queue-item Ops m1 local --vault "$1" --output json | jq -r '.data[0].taskId'; }

ok=$(q "{\"function\":\"hello\",\"on_success\":{\"notify\":\"$hook\",\"webhook_secret\":\"item-hook-key-93\"}}")
wait_status "$ok" COMPLETED 10
wait_for 10 test -e "$hx/hook-1.headers"
ts=$(header 1 X-Ferry-Timestamp)
eq "the item's webhook_secret signs its POST" "$(openssl_sig item-hook-key-93 "$ts" "$hx/hook-1.body")" "$(header 1 X-Ferry-Signature)"
eq "the POST is the item's" "$(jq -r .taskId "$hx/hook-1.body")" "$ok"
dump=$(if [[ ${FERRY_TEST_DRIVER:-sqlite} == postgres ]]; then pg_dump "$(cat "$T_DIR/pg/server") dbname=$T_DIR/ferry.db"; else sqlite3 "$T_DIR/ferry.db" .dump; fi)
not_contains "webhook_secret is sealed in the store" "$dump" "item-hook-key-93"
contains "... as a sealed value" "$dump" "ferry-sealed:1:"
shown=$(ferry queue trace "$ok" --output json; ferry list queue-items --output json 2>/dev/null)
not_contains "listings and the trace do not show it" "$shown" "item-hook-key-93"
not_contains "nor does the POST" "$(cat "$hx/hook-1.body")" "item-hook-key-93"

bad=$(q '{"function":"fx_result","code":"FAIL","message":"boom","on_failure":{"notify":"http://169.254.169.254/latest/meta-data/iam/"}}')
wait_status "$bad" FAILED 10
wait_for 10 bash -c "'$FERRY_BIN' queue trace $bad --output json | jq -e '[.data.timeline[] | select(.action==\"NOTIFY_FAILED\")] | length == 1'"
tr=$(ferry queue trace "$bad" --output json | jq -r '.data.timeline[] | "\(.action) \(.details)"')
contains "a metadata URL is refused and recorded" "$tr" "NOTIFY_FAILED POST http://169.254.169.254/latest/meta-data/iam/ refused: 169.254.169.254 is a link-local or cloud metadata address"
eq "the item's outcome is unchanged" "$(task_status "$bad")" FAILED
stop_host
t_done
