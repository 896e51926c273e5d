#!/usr/bin/env bash
# Waiting that talks (issue 18, point 1; docs/cli.md "Waiting"): `create queue-item --wait`
# and `queue wait` print the task id first, then the item's status (on a terminal one line
# redrawn with \r, else one line per change), its timeline with --follow, and the end with
# the exit status; stdout and JSON are what they were; Ctrl-C stops the wait, not the item
# (exit 130); `queue trace --follow` streams a running item until it ends; a hostile progress
# message never reaches the terminal raw (its escape sequences show as visible \x1b escapes,
# term_clean's rule), stays one line and is cut to the terminal's width.
. "$(dirname "$0")/../lib.sh"

write_config 'workers = { count = 2; };' 'lease = { poll_ms = 200; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops m1
ferry create bridge local-region far >/dev/null
ferry create machine Ops far m2 --vault '{"connection":"local"}' >/dev/null
UUID='[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
ESC=$'\e'
mkf() { ferry create queue-item Ops "$1" "$2" --vault "$3" --output json | jq -r '.data[0].taskId'; }
# tty CMD...: runs ferry on a terminal 60 columns wide (util-linux script); prints what it drew.
tty() { script -qfec "stty cols 60 rows 20; $(printf '%q ' "$FERRY_BIN" "$@")" /dev/null </dev/null; }

# --- an item no host runs (bridge far): the id first, plain lines, a terminal's redrawn line ---
P=$(mkf m2 far '{"function":"fx_noop"}')
ferry queue wait "${P:0:8}" --timeout 1 >"$T_DIR/out" 2>"$T_DIR/err"; rc=$?
eq "wait that times out: exit 1" "$rc" 1
eq "not a terminal: stdout has nothing" "$(cat "$T_DIR/out")" ""
eq "the whole task id is the first line on stderr" "$(head -1 "$T_DIR/err")" "Task ID: $P"
eq "then one line for the status, none for a second that changed nothing" "$(sed -n '2,$p' "$T_DIR/err")" \
    "[0.0s] PENDING
ferry: task $P did not finish within 1 s (it keeps running)"

# A hostile progress message: escape sequences (colour, window title), a bell, a 10 kB tail;
# then (SQLite: PostgreSQL's text refuses them) bytes that are not UTF-8. Only a host writes
# progress; here it is written beneath the CLI.
long=$(printf 'x%.0s' {1..10000})
hostile="${ESC}[31mred${ESC}[0m ${ESC}]0;pwned"$'\a'"title"$'\a'" é wide 日本"
progress() {
    sqlite3 "$T_DIR/ferry.db" "UPDATE queue_items SET progress_percent = 42, progress_message = '$1' WHERE task_id = '$P'" ||
        fail "progress written beneath the CLI"
}
progress "$hostile $long"
TIMEFORMAT='%3U %3S'
cpu=$({ time ferry queue wait "$P" --timeout 2 >/dev/null 2>"$T_DIR/err"; } 2>&1 | awk '{print $1 + $2}')
check "an idle wait of 2 s sleeps: it used under 0.4 s of CPU ($cpu s)" awk -v c="$cpu" 'BEGIN { exit !(c < 0.4) }'
line=$(sed -n 2p "$T_DIR/err")
contains "a plain line shows the percent and the message, its escapes visible" "$line" \
    'PENDING 42% \x1b[31mred\x1b[0m \x1b]0;pwned\x07title\x07 é wide 日本'
not_contains "... without a raw escape sequence" "$line" "$ESC"
not_contains "... or a raw bell ending the window title it tried to set" "$line" $'\a'
check "... and is cut (at most 300 columns)" test "$(wc -m <<<"$line")" -le 302
# The same on a terminal, for three seconds: the line is redrawn in place.
drawn=$(tty queue wait "$P" --timeout 3 2>&1)
first=${drawn%%$'\r'*}
contains "terminal: the task id comes first" "$first" "Task ID: $P"
redraws=$(grep -o $'\r\e\[K\[' <<<"$drawn" | wc -l)
check "terminal: the status line is redrawn with \\r (3 or more times in 3 s, got $redraws)" test "$redraws" -ge 3
rest=${drawn#*$'\r'}
stripped=${rest//$'\e[K'/}
# The error line's own colour on a terminal (colour.c: "ferry:" in red) is not the store's.
stripped=${stripped//$'\e[1;31mferry:\e[0m'/ferry:}
not_contains "terminal: no escape sequence but the line's own \\e[K" "$stripped" "$ESC"
not_contains "... no bell" "$stripped" $'\a'
widest=0
while IFS= read -r seg; do
    seg=${seg%$'\n'}
    [[ $seg == ferry:* ]] && continue
    ((${#seg} > widest)) && widest=${#seg}
done < <(tr '\r' '\n' <<<"$stripped")
check "terminal: each drawn line fits the 60 columns (widest $widest)" test "$widest" -le 59
contains "... cut with …" "$stripped" "…"
contains "... showing the percent and elapsed time" "$stripped" '[1s] PENDING 42% \x1b[31mred\x1b[0m \x1b]0;pwned'
drawn=$(TERM=dumb tty queue wait "$P" --timeout 1 2>&1)
not_contains "TERM=dumb (no erasing): plain lines" "$drawn" $'\e[K'
if [[ ${FERRY_TEST_DRIVER:-sqlite} == sqlite ]]; then
    progress "bad "$'\xff\xfe'" bytes"
    line=$(ferry queue wait "$P" --timeout 1 2>&1 >/dev/null | sed -n 2p)
    eq "bytes that are not UTF-8 are never printed" "$line" "[0.0s] PENDING 42% bad ?? bytes"
fi

out=$(ferry create queue-item Ops m2 far --vault '{"function":"fx_noop"}' --follow 2>&1); rc=$?
eq "--follow without --wait: a usage error (exit 2)" "$rc" 2
contains "... saying to give both" "$out" "give both"

# --- a host runs the rest -------------------------------------------------------------------------
start_host

# --follow: the timeline, in order, as it is written; stdout the three lines it always had.
ferry create queue-item Ops m1 local --vault '{"function":"fx_progress","percents":[10,50,90],"hold":1}' \
    --wait --follow >"$T_DIR/out" 2>"$T_DIR/err"; rc=$?
eq "create --wait --follow: exit 0 when COMPLETED" "$rc" 0
id=$(sed -n 's/^Task ID: //p' "$T_DIR/out")
eq "stdout: the message, the id, the status, and nothing else" "$(cat "$T_DIR/out")" \
    "Successfully created queue item for machine m1 with priority 3
Task ID: $id
Status: COMPLETED"
events=$(grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2}T' "$T_DIR/err" | awk '{print $2}' | tr '\n' ' ')
eq "stderr: every timeline event once, in the timeline's order" "$events" \
    "$(ferry queue trace "$id" --output json | jq -r '[.data.timeline[].action] | join(" ")') "
contains "... with its details" "$(cat "$T_DIR/err")" "PROGRESS 50%: step 2"
order=$(grep -nE 'PROGRESS 90%: step 3|PROCESSING 90% step 3$|COMPLETED \(exit 0\)$' "$T_DIR/err" | cut -d: -f1)
eq "... the event, then the status it made, the end last" "$(wc -l <<<"$order") $(sort -n <<<"$order" | tr '\n' ' ')" "3 $(tr '\n' ' ' <<<"$order")"
eq "... and the end says the exit status" "$(tail -1 "$T_DIR/err" | sed 's/^\[[0-9.]*s\] //')" "COMPLETED (exit 0)"

# The same on a terminal: each event on a line of its own, the status line drawn below.
drawn=$(tty create queue-item Ops m1 local --vault '{"function":"fx_progress","percents":[10,50]}' --wait --follow 2>&1)
lines=$(sed $'s/\r\e\[K/\\n/g' <<<"$drawn" | sed 's/\\n/\n/g' | tr -d '\r' | grep -v '^$')
eq "terminal --follow: every line is an event, a status or the three of stdout" \
    "$(grep -cvE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[^ ]+ [A-Z_]+( |$)|^\[[0-9]+s\] [A-Z]+|^Successfully created|^Task ID: |^Status: ' <<<"$lines")" 0
eq "... the status line ends it, then stdout's Status" "$(tail -2 <<<"$lines" | sed 's/^\[[0-9]*s\] //')" \
    "COMPLETED (exit 0)
Status: COMPLETED"
contains "... the events are there" "$lines" "PROGRESS 50%: step 2"

# JSON stdout unchanged: one document; the id on stderr first.
ferry create queue-item Ops m1 local --vault '{"function":"fx_noop"}' --wait --output json >"$T_DIR/out" 2>"$T_DIR/err"; rc=$?
eq "create --wait --output json: exit 0" "$rc" 0
eq "stdout is one JSON document of the same shape" "$(jq -sc '[length, (.[0] | keys), .[0].data[0].status]' "$T_DIR/out")" \
    '[1,["data","message","success"],"COMPLETED"]'
eq "stderr starts with its task id" "$(head -1 "$T_DIR/err")" "Task ID: $(jq -r '.data[0].taskId' "$T_DIR/out")"
eq "queue wait --output json: the row" "$(ferry queue wait "$id" --output json 2>/dev/null | jq -c '[.success, .data[0].taskId == "'"$id"'"]')" '[true,true]'

# The failure reason and the exit code.
F=$(mkf m1 local '{"function":"fx_result","code":"FAIL","message":"boom"}')
ferry queue wait "$F" --timeout 20 >"$T_DIR/out" 2>"$T_DIR/err"; rc=$?
eq "a FAILED item: exit 1" "$rc" 1
eq "... its end, the exit status, then the reason" "$(tail -2 "$T_DIR/err" | sed 's/^\[[0-9.]*s\] //')" \
    "FAILED (exit 1)
ferry: task $F ended FAILED: boom"

# Ctrl-C: the id is said, the item goes on to COMPLETED; exit 130.
"$FERRY_BIN" create queue-item Ops m1 local --vault '{"function":"fx_sleep","seconds":2}' --wait \
    >"$T_DIR/out" 2>"$T_DIR/err" &
waiter=$!
wait_for 10 grep -q 'PROCESSING' "$T_DIR/err" || fail "the waiter saw the item run" "$(cat "$T_DIR/err")"
kill -INT "$waiter"
wait "$waiter"; rc=$?
eq "Ctrl-C: exit 130" "$rc" 130
S=$(sed -n 's/^Task ID: //p' "$T_DIR/out")
[[ $S =~ ^$UUID$ ]] && pass "... the id was on stdout before the wait" || fail "... the id was on stdout before the wait" "$(cat "$T_DIR/out")"
contains "... stdout says what it was doing" "$(cat "$T_DIR/out")" "Status: PROCESSING"
contains "... stderr says the wait stopped, not the item" "$(cat "$T_DIR/err")" \
    "ferry: stopped waiting for task $S (PROCESSING"
contains "... and how to wait again" "$(cat "$T_DIR/err")" "the item goes on: ferry queue wait $S"
wait_status "$S" COMPLETED 20
eq "... and the item ran to COMPLETED" "$(task_status "$S")" COMPLETED

# queue trace --follow: the trace, then each event until the item ends.
T=$(mkf m1 local '{"function":"fx_sleep","seconds":1}')
start=$SECONDS
timeout 20 "$FERRY_BIN" queue trace "${T:0:8}" --follow >"$T_DIR/out" 2>"$T_DIR/err"; rc=$?
eq "trace --follow: exit 0 once the item ended" "$rc" 0
check "... within a few seconds" test $((SECONDS - start)) -le 10
eq "... the item had ended" "$(task_status "$T")" COMPLETED
out=$(cat "$T_DIR/out")
contains "... the trace first" "$out" "QUEUE ITEM $T"
contains "... then the events as they came" "$out" "COMPLETED attempt 1 completed in"
contains "... then the end and the response vault" "$out" "ENDED COMPLETED

RESPONSE VAULT"
check "... nothing on stderr" test ! -s "$T_DIR/err"
T=$(mkf m1 local '{"function":"fx_sleep","seconds":0.5}')
eq "trace --follow --output json: one document, once ended" \
    "$(timeout 20 "$FERRY_BIN" queue trace "$T" --follow --output json | jq -sc '[length, .[0].data.queue_item.status, .[0].data.timeline[-1].action]')" \
    '[1,"COMPLETED","COMPLETED"]'

stop_host
t_done
