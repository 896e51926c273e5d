#!/usr/bin/env bash
# The host's log (issue 18, point 4; docs/operations.md): one line per finished attempt, at
# info (warn when it failed), with the task id, function, machine, outcome and duration; no
# secret in it; log_format = "json" gives one JSON object per line; under systemd
# (JOURNAL_STREAM set) every line starts with its journald priority.
. "$(dirname "$0")/../lib.sh"

write_config 'workers = { count = 2; };' 'retry = { max_retries = 0; delay = 1; jitter = 0.0; };' \
    'lease = { poll_ms = 200; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops m1
q() { ferry create queue-item Ops m1 local --vault "$1" --output json | jq -r '.data[0].taskId'; }
PLANT=pl4nted-s3cret-$RANDOM

start_host
a=$(q '{"function":"fx_noop"}')
b=$(q '{"function":"fx_sleep","seconds":0.2}')
c=$(q "{\"function\":\"fx_result\",\"code\":\"FAIL\",\"message\":\"broke\",\"pin\":\"$PLANT\"}")
wait_status "$a" COMPLETED 15
wait_status "$b" COMPLETED 15
u=$(q '{"function":"no_such_fn"}' 2>/dev/null)
wait_status "$c" FAILED 15
wait_status "$u" FAILED 15
stop_host
log=$(cat "$T_DIR/host.log")
la=$(grep "task=$a " <<<"$log")
lc=$(grep "task=$c " <<<"$log")
eq "one line for each of the 4 attempts" "$(grep -c 'attempt ended: ' <<<"$log")" 4
contains "a completed attempt is logged at info" "$la" " info  attempt ended: task=$a function=fx_noop machine=m1 outcome=COMPLETED attempt=1 duration_ms="
contains "with its duration" "$(grep "task=$b " <<<"$log")" "outcome=COMPLETED"
[[ $(grep "task=$b " <<<"$log" | sed -n 's/.*duration_ms=\([0-9]*\).*/\1/p') -ge 200 ]] &&
    pass "the duration is the attempt's (>= 200 ms for a 0.2 s sleep)" || fail "duration" "$(grep "task=$b " <<<"$log")"
contains "a failed attempt is logged at warn, with its reason" "$lc" \
    " warn  attempt ended: task=$c function=fx_result machine=m1 outcome=FAILED attempt=1"
contains "... and its reason" "$lc" 'reason="broke pin='
contains "an attempt the host refuses (no such function) is a failure too" "$(grep "task=$u " <<<"$log")" \
    " warn  attempt ended: task=$u function=no_such_fn machine=m1 outcome=FAILED attempt=1 duration_ms=0 reason="
not_contains "the secret the function put in its error is not in the log" "$log" "$PLANT"
[[ $log != *'<'[0-9]'>'* ]] && pass "no priority prefix outside systemd" || fail "no priority prefix outside systemd"

# JSON lines, under systemd's JOURNAL_STREAM: "<N>" then one object per line.
sed -i 's/^log_level = .*/&\nlog_format = "json";/' "$T_DIR/ferry.conf"
: >"$T_DIR/host.log"
JOURNAL_STREAM=8:12345 start_host
d=$(q '{"function":"fx_noop"}')
e=$(q "{\"function\":\"fx_result\",\"code\":\"FAIL\",\"message\":\"broke\",\"pin\":\"$PLANT\"}")
wait_status "$d" COMPLETED 15
wait_status "$e" FAILED 15
stop_host
log=$(cat "$T_DIR/host.log")
bad=$(grep -v '^<[3467]>{' <<<"$log" | head -3)
[[ -z $bad ]] && pass "every line starts with a journald priority and a JSON object" ||
    fail "every line starts with a journald priority and a JSON object" "$bad"
json=$(sed 's/^<[0-9]>//' <<<"$log")
jq -e . <<<"$json" >/dev/null && pass "every line parses with jq" || fail "every line parses with jq" "$json"
jd=$(jq -c "select(.taskId == \"$d\")" <<<"$json")
je=$(jq -c "select(.taskId == \"$e\")" <<<"$json")
eq "a completed attempt: info, its fields" "$(jq -r '[.level, .message, .function, .machine, .outcome, .attempt, (.durationMs|type)] | join(" ")' <<<"$jd")" \
    "info attempt ended fx_noop m1 COMPLETED 1 number"
eq "... with <6>" "$(grep -c "^<6>.*\"taskId\":\"$d\"" <<<"$log")" 1
eq "a failed attempt: warn, FAILED" "$(jq -r '[.level, .outcome] | join(" ")' <<<"$je")" "warn FAILED"
eq "... with <4>" "$(grep -c "^<4>.*\"taskId\":\"$e\"" <<<"$log")" 1
contains "... and its reason, the secret masked" "$(jq -r .reason <<<"$je")" "broke pin="
not_contains "the secret is not in the JSON log either" "$log" "$PLANT"
eq "other lines have time, level, pid and message" \
    "$(jq -r 'select(.message | startswith("ferry ")) | [(.time|type), .level, (.pid|type)] | join(" ")' <<<"$json")" "string info number"

# Text lines under systemd's NOTIFY_SOCKET alone (no JOURNAL_STREAM): "<N>" then the text.
sed -i 's/^log_format = .*/log_format = "text";/' "$T_DIR/ferry.conf"
: >"$T_DIR/host.log"
NOTIFY_SOCKET=$T_DIR/no-such-socket start_host
g=$(q "{\"function\":\"fx_result\",\"code\":\"FAIL\",\"message\":\"broke\",\"pin\":\"$PLANT\"}")
wait_status "$g" FAILED 15
stop_host
log=$(cat "$T_DIR/host.log")
contains "text under NOTIFY_SOCKET: a failed attempt starts with <4>" "$log" "<4>20"
contains "... then its text" "$(grep "task=$g " <<<"$log")" " warn  attempt ended: task=$g function=fx_result"
bad=$(grep -v '^<[3467]>20' <<<"$log" | head -3)
[[ -z $bad ]] && pass "every text line carries a priority" || fail "every text line carries a priority" "$bad"
not_contains "no secret in these lines either" "$log" "$PLANT"

# A bad log_format is refused, naming the key.
sed -i 's/^log_format = .*/log_format = "xml";/' "$T_DIR/ferry.conf"
out=$(ferry serve 2>&1)
contains "log_format = \"xml\" is refused" "$out" "log_format is 'xml'; use text or json"
t_done
