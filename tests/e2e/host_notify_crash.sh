#!/usr/bin/env bash
# Notifications survive a host crash (issue 14, point 1). They leave the store only after
# the commit of the end they tell of, so the end leaves a note of them in the same
# transaction (notify_outbox) that goes once they are handed to their sender. A host killed
# right after the commit (FERRY_TEST_CRASH=after-failed-commit, as in host_fallback_crash.sh)
# has sent nothing, but the note is there; the next host of the bridge sends them once the
# note is due (5 s after the commit) and forgets the note: delivered once. Runs on
# PostgreSQL too (pg_notify_crash.sh).
. "$(dirname "$0")/../lib.sh"

rx=$T_DIR/rx; mkdir -p "$rx"
python3 "$FERRY_ROOT/tests/helpers/receivers.py" "$rx" & T_EXTRA_PIDS=$!
wait_for 10 test -s "$rx/ports" || { fail "receivers started"; t_done; exit 1; }
read -r _ http_port <"$rx/ports"
write_config 'lease = { poll_ms = 200; seconds = 2; };' 'workers = { count = 2; prefork = 2; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops m1
db=$T_DIR/ferry.db
notes() { sqlite3 "$db" "SELECT count(*) FROM notify_outbox"; }
notified() { ferry queue trace "$1" --output json | jq '[.data.timeline[] | select(.action == "NOTIFIED")] | length'; }

FERRY_TEST_CRASH=after-failed-commit start_host || fail "the crashing host starts"
pid=$HOST_PID
task=$(ferry create queue-item Ops m1 local --vault "{\"function\":\"fx_result\",\"code\":\"FAIL\",\"message\":\"boom\",\"on_failure\":{\"notify\":\"http://127.0.0.1:$http_port/hook\"}}" --output json | jq -r '.data[0].taskId')
end=$((SECONDS + 20))
while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.02; done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
eq "the host died right after committing the FAILED end (SIGKILL)" "$?" 137
HOST_PID=
eq "the item is FAILED" "$(sqlite3 "$db" "SELECT status FROM queue_items WHERE task_id = '$task'")" FAILED
eq "its notifications are noted, written with the end" \
    "$(sqlite3 "$db" "SELECT count(*) FROM notify_outbox WHERE task_id = '$task'")" 1
sleep 0.5
[[ ! -e $rx/post-1.json ]] && pass "nothing was sent before the crash" || fail "nothing was sent before the crash"

start_host || fail "a host starts after the crash"
wait_for 20 test -e "$rx/post-1.json" && pass "the next host sends the notification" ||
    fail "the next host sends the notification" "$(tail -5 "$T_DIR/host.log")"
post=$(cat "$rx/post-1.json" 2>/dev/null)
eq "it tells of the failure" "$(jq -r '[.taskId, .status] | @tsv' <<<"$post")" "$task	FAILED"
contains "with the error" "$(jq -r .response.error.message <<<"$post")" "boom"
wait_for 10 bash -c "[[ \$('$FERRY_BIN' queue trace $task --output json | jq '[.data.timeline[] | select(.action == \"NOTIFIED\")] | length') == 1 ]]" &&
    pass "its delivery is in the trace" || fail "its delivery is in the trace" "$(notified "$task")"
wait_for 5 bash -c "[[ \$(sqlite3 '$db' 'SELECT count(*) FROM notify_outbox') == 0 ]]" &&
    pass "the note is gone once sent" || fail "the note is gone once sent" "$(notes)"
contains "the host says why it sent them" "$(cat "$T_DIR/host.log")" "sending the notifications of $task"

# A host that lives sends at once and leaves no note behind.
ok=$(ferry create queue-item Ops m1 local --vault "{\"function\":\"hello\",\"on_success\":{\"notify\":\"http://127.0.0.1:$http_port/ok\"}}" --output json | jq -r '.data[0].taskId')
wait_status "$ok" COMPLETED 10
wait_for 10 test -e "$rx/post-2.json" && pass "a live host sends at once" || fail "a live host sends at once"
eq "it is the completed item's" "$(jq -r .taskId "$rx/post-2.json" 2>/dev/null)" "$ok"
eq "no note is left" "$(notes)" 0
sleep 7 # past the note's due time: nothing is sent again
[[ ! -e $rx/post-3.json ]] && pass "each notification was sent once" || fail "each notification was sent once" "$(ls "$rx")"
eq "one delivery in the failed item's trace" "$(notified "$task")" 1
stop_host
t_done
