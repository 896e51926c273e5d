#!/usr/bin/env bash
# Notifications: email through a real SMTP receiver, JSON POSTs to a real HTTP receiver,
# both on loopback; a failed delivery is in the trace and changes nothing else.
. "$(dirname "$0")/../lib.sh"

rx=$T_DIR/rx
start_receivers "$rx"
write_config "smtp = { url = \"smtp://127.0.0.1:$smtp_port\"; from = \"ferry@test.local\"; };" \
    'lease = { poll_ms = 200; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops m1
start_host
q() { ferry create queue-item Ops m1 local --vault "$1" --output json | jq -r '.data[0].taskId'; }
actions() { ferry queue trace "$1" --output json | jq -r '.data.timeline[] | "\(.action) \(.details)"'; }

ok=$(q "{\"function\":\"hello\",\"on_success\":{\"notify\":[\"ops-logs@company.com\",\"http://127.0.0.1:$http_port/hook\"]}}")
wait_status "$ok" COMPLETED 10
wait_for 10 test -e "$rx/mail-1.txt" -a -e "$rx/post-1.json"
mail=$(cat "$rx/mail-1.txt" 2>/dev/null)
contains "on_success mails the address" "$mail" "TO <ops-logs@company.com>"
contains "the mail names the task and status" "$mail" "Subject: [ferry] hello COMPLETED on m1 ($ok)"
post=$(cat "$rx/post-1.json" 2>/dev/null)
eq "on_success POSTs JSON to the URL" "$(jq -r .status <<<"$post")" COMPLETED
eq "the POST carries the task id" "$(jq -r .taskId <<<"$post")" "$ok"
wait_for 10 bash -c "'$FERRY_BIN' queue trace $ok --output json | jq -e '[.data.timeline[] | select(.action==\"NOTIFIED\")] | length == 2'"
contains "each delivery is in the trace" "$(actions "$ok")" "NOTIFIED http://127.0.0.1:$http_port/hook"

bad=$(q "{\"function\":\"fx_result\",\"code\":\"FAIL\",\"message\":\"boom\",\"password\":\"hunter22\",\"on_failure\":{\"notify\":\"ops-alerts@company.com\"},\"on_success\":{\"notify\":\"never@company.com\"}}")
wait_status "$bad" FAILED 10
wait_for 10 test -e "$rx/mail-2.txt"
mail=$(cat "$rx/mail-2.txt" 2>/dev/null)
contains "on_failure mails on failure" "$mail" "TO <ops-alerts@company.com>"
contains "with the error" "$mail" "boom"
not_contains "secrets stay out of the mail" "$mail" "hunter22"
sleep 0.5
[[ ! -e $rx/mail-3.txt ]] && pass "on_success is not sent on failure" || fail "on_success is not sent on failure"

# Undeliverable: a dead SMTP port and an HTTP 500. Recorded, job outcome unchanged.
t0=$(date +%s%N)
und=$(q "{\"function\":\"hello\",\"on_success\":{\"notify\":[\"http://127.0.0.1:$http_port/fail\",\"http://127.0.0.1:1/nothing\"]}}")
wait_status "$und" COMPLETED 10
ms=$((($(date +%s%N) - t0) / 1000000))
eq "a failing notification does not change the outcome" "$(task_status "$und")" COMPLETED
((ms < 3000)) && pass "nor delay it (${ms} ms)" || fail "nor delay it" "${ms} ms"
wait_for 10 bash -c "'$FERRY_BIN' queue trace $und --output json | jq -e '[.data.timeline[] | select(.action==\"NOTIFY_FAILED\")] | length == 2'"
tr=$(actions "$und")
contains "an HTTP 500 is recorded" "$tr" "NOTIFY_FAILED POST http://127.0.0.1:$http_port/fail answered HTTP 500"
contains "a refused connection is recorded" "$tr" "NOTIFY_FAILED POST http://127.0.0.1:1/nothing failed"
stop_host
t_done
