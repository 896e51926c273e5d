#!/usr/bin/env bash
# Queue items through the CLI, against a real host: create (text and JSON), list with every
# filter of spec/cli.md, the row fields, trace, retry, cancel, rm, wait, --after, unknown
# functions, parameter validation, and the text table (issue 3, points 3 and 8).
#
# Items on bridge "far" never run (no host serves it), so their status is fixed; items on
# bridge "local" are run by `ferry serve` with the misbehave fixture plugin.
. "$(dirname "$0")/../lib.sh"

write_config
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c && chmod 644 "$T_DIR/plugins/misbehave.so"
ferry create region r1 >/dev/null
ferry create bridge r1 local >/dev/null
ferry create bridge r1 far >/dev/null
for t in Ops Dev QA; do ferry create team $t >/dev/null; done
ferry create machine Ops local box1 --vault '{"connection":"local"}' >/dev/null
ferry create machine Dev local box3 --vault '{"connection":"local"}' >/dev/null
ferry create machine Ops far far1 --vault '{"ip":"10.0.0.1","user":"u","ssh_port":22,"datastore":"/d"}' >/dev/null
ferry create machine Dev far far2 --vault '{"ip":"10.0.0.2","user":"u","ssh_port":22,"datastore":"/d"}' >/dev/null
ferry create machine QA far qa1 --vault '{"ip":"10.0.0.3","user":"u","ssh_port":22,"datastore":"/d"}' >/dev/null

UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
jqf() { jq -r "$2" <<<"$1" 2>/dev/null || echo "jq failed on: $1"; }
# mk TEAM MACHINE BRIDGE PRIORITY VAULT [OPTIONS...]: creates an item, prints its task id.
mk() {
    local team=$1 machine=$2 bridge=$3 prio=$4 vault=$5; shift 5
    ferry create queue-item "$team" "$machine" "$bridge" --priority "$prio" --vault "$vault" "$@" \
        --output json 2>/dev/null | jq -r '.data[0].taskId'
}
count() { ferry list queue --max-records 10000 --output json | jq '.data | length'; }
# ids FILTERS...: the task ids list queue returns, in order, as short names (see name()).
declare -A NAME_OF
name() { NAME_OF[$1]=$2; }
ids() {
    local out id names=()
    out=$(ferry list queue "$@" --output json) || { echo "list failed: $out"; return; }
    for id in $(jq -r '.data[].taskId' <<<"$out"); do names+=("${NAME_OF[$id]:-?}"); done
    echo "${names[*]}"
}
# sql DB QUERY: runs SQL on the SQLite store (sqlite3 when installed, else python3's module),
# printing rows as a|b|c. Only for what the CLI cannot do or must be checked beneath it.
sql() {
    if command -v sqlite3 >/dev/null; then
        sqlite3 -cmd '.timeout 5000' "$1" "$2"
    else
        python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=5)
for r in c.execute(sys.argv[2]).fetchall(): print("|".join(str(x) for x in r))
c.commit()' "$1" "$2"
    fi
}
# age_item TASK MINUTES: moves an item's times into the past. Test-only surgery on the
# SQLite file: nothing in the CLI can make an item old, and the date and stale filters
# need old items.
age_item() {
    sql "$T_DIR/ferry.db" \
        "UPDATE queue_items SET created_at = created_at - $2 * 60000,
                                updated_at = updated_at - $2 * 60000,
                                run_after = run_after - $2 * 60000 WHERE task_id = '$1';"
}
# table_aligned TEXT: every column of every row starts where its header's rule starts.
table_aligned() {
    awk 'NR == 2 { n = 0; for (i = 1; i <= length($0); i++)
                       if (substr($0, i, 1) == "-" && (i == 1 || substr($0, i - 1, 1) == " ")) start[++n] = i
                   if (n < 2) bad = 1; next }
         NR > 2 && NF { for (k = 2; k <= n; k++)
                       if (substr($0, start[k] - 1, 1) != " " || substr($0, start[k], 1) == " ") bad = 1 }
         END { exit bad }' <<<"$1"
}

# --- create: the exact text and JSON the seed relies on ----------------------------------------
out=$(ferry create queue-item Ops far1 far --vault '{"function":"hello"}' --priority 4 2>"$T_DIR/err"); rc=$?
eq "create queue-item exits 0" "$rc" 0
eq "text: first line" "$(sed -n 1p <<<"$out")" "Successfully created queue item for machine far1 with priority 4"
if [[ $(sed -n 2p <<<"$out") =~ ^Task\ ID:\ [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]]; then
    pass "text: second line is Task ID: <uuid>"
else
    fail "text: second line is Task ID: <uuid>" "$out"
fi
eq "text: exactly two lines" "$(wc -l <<<"$out")" 2
eq "a known function: nothing on stderr" "$(cat "$T_DIR/err")" ""
first=$(sed -n 2p <<<"$out" | cut -d' ' -f3)
out=$(ferry create queue-item Ops far1 far --vault '{"function":"hello"}' --output json)
eq "JSON: success and message" "$(jqf "$out" '[.success, .message] | @tsv')" \
    "true	Successfully created queue item for machine far1 with priority 3"
if [[ $(jqf "$out" '.data[0].taskId') =~ $UUID_RE ]]; then pass "JSON: .data[0].taskId is a UUID"; else fail "JSON: .data[0].taskId is a UUID" "$out"; fi
eq "JSON: data holds one row, PENDING, default priority 3 Normal" \
    "$(jqf "$out" '[(.data | length), .data[0].status, .data[0].priority, .data[0].priorityLabel] | @tsv')" "1	PENDING	3	Normal"
out=$(ferry create queue-item Ops far1 far -p 2 --vault '{"function":"hello"}' --output json)
eq "-p is --priority" "$(jqf "$out" .data[0].priority)" 2
printf '{\n  "function": "hello",  # a comment\n  "note": "from a file"\n}\n' >"$T_DIR/item.json"
out=$(ferry create queue-item Ops far1 far --vault-file "$T_DIR/item.json" --output json)
eq "--vault-file with # comments" "$(jqf "$out" .data[0].vaultContent.note)" "from a file"
out=$(ferry create queue-item Ops far1 far --vault-file - --output json <"$T_DIR/item.json")
eq "--vault-file - reads stdin" "$(jqf "$out" .data[0].vaultContent.note)" "from a file"
out=$(ferry create queue-item Ops far1 far --vault '{"function":"hello", "password":"pw-secret-123", "db":{"secret_key":"sk-secret-456"}}' --output json)
not_contains "create's JSON hides a password" "$out" "pw-secret-123"
not_contains "create's JSON hides a nested secret_key" "$out" "sk-secret-456"
secret_item=$(jqf "$out" .data[0].taskId)
# Start again from an empty queue for the filter tests.
for id in $(ferry list queue --output json | jq -r '.data[].taskId'); do
    [[ $id == "$secret_item" ]] || ferry rm queue-item "$id" >/dev/null
done
eq "rm left only one item" "$(count)" 1
ferry rm queue-item "$secret_item" >/dev/null

# --- a fixed set of items in every status -------------------------------------------------------
P5=$(mk Ops far1 far 3 '{"function":"hello","note":"old"}'); name "$P5" P5
age_item "$P5" $((3 * 24 * 60)) # three days old
P1=$(mk Ops far1 far 4 '{"function":"hello","password":"pw-secret-123"}'); name "$P1" P1
P2=$(mk Ops far1 far 5 '{"function":"hello"}'); name "$P2" P2
P3=$(mk Dev far2 far 1 '{"function":"hello"}'); name "$P3" P3
P4=$(mk QA qa1 far 2 '{"function":"hello"}'); name "$P4" P4
start_host
A=$(mk Ops box1 local 3 '{"function":"fx_noop"}'); name "$A" A
ferry queue wait "$A" --timeout 20 >/dev/null
B=$(mk Ops box1 local 2 '{"function":"fx_result","code":"FAIL","message":"boom"}'); name "$B" B
ferry queue wait "$B" --timeout 20 >/dev/null 2>&1
C=$(mk Dev box3 local 1 '{"function":"fx_noop"}'); name "$C" C
ferry queue wait "$C" --timeout 20 >/dev/null
S=$(mk Ops box1 local 4 '{"function":"fx_sleep","seconds":60}'); name "$S" S
wait_status "$S" PROCESSING 20
ferry queue cancel "$P2" >/dev/null
eq "the fixed set: statuses" \
    "$(for t in $P5 $P1 $P2 $P3 $P4 $A $B $C $S; do task_status "$t"; done | tr '\n' ' ')" \
    "PENDING PENDING CANCELLED PENDING PENDING COMPLETED FAILED COMPLETED PROCESSING "

# --- list: order and every filter --------------------------------------------------------------------
eq "no filter: all, newest first" "$(ids)" "S C B A P4 P3 P2 P1 P5"
eq "queue list is list queue" "$(ferry queue list --output json | jq -r '[.data[].taskId] | length')" 9
eq "--team Ops" "$(ids --team Ops)" "S B A P2 P1 P5"
eq "--team Ops,Dev (a list)" "$(ids --team Ops,Dev)" "S C B A P3 P2 P1 P5"
eq "--team QA" "$(ids --team QA)" "P4"
eq "--team Nobody: nothing" "$(ids --team Nobody)" ""
eq "--machine far1" "$(ids --machine far1)" "P2 P1 P5"
eq "--machine box3" "$(ids --machine box3)" "C"
eq "--bridge far" "$(ids --bridge far)" "P4 P3 P2 P1 P5"
eq "--bridge local" "$(ids --bridge local)" "S C B A"
eq "--status PENDING" "$(ids --status PENDING)" "P4 P3 P1 P5"
eq "--status FAILED,CANCELLED (a list)" "$(ids --status FAILED,CANCELLED)" "B P2"
eq "--status PROCESSING" "$(ids --status PROCESSING)" "S"
eq "--status COMPLETED" "$(ids --status COMPLETED)" "C A"
out=$(ferry list queue --status DONE 2>&1); rc=$?
eq "--status with an unknown status is a usage error" "$rc" 2
contains "and lists the statuses" "$out" "PENDING, ASSIGNED, PROCESSING"
eq "--priority 1" "$(ids --priority 1)" "C P3"
eq "--priority 2" "$(ids --priority 2)" "B P4"
eq "--min-priority 4 (number 4 or more)" "$(ids --min-priority 4)" "S P2 P1"
eq "--max-priority 2 (number 2 or less)" "$(ids --max-priority 2)" "C B P4 P3"
eq "--min-priority 2 --max-priority 3" "$(ids --min-priority 2 --max-priority 3)" "B A P4 P5"
eq "--date-from \$(date -d '1 day ago' --iso-8601) leaves out the old item" \
    "$(ids --date-from "$(date -d '1 day ago' --iso-8601)")" "S C B A P4 P3 P2 P1"
eq "--date-to \$(date -d '2 days ago' --iso-8601) (a whole day): only the old item" \
    "$(ids --date-to "$(date -d '2 days ago' --iso-8601)")" "P5"
eq "--date-from --iso-8601=seconds" "$(ids --date-from "$(date -d '1 hour ago' --iso-8601=seconds)" --bridge far)" "P4 P3 P2 P1"
eq "--date-from --iso-8601=ns" "$(ids --date-from "$(date -d '1 hour ago' --iso-8601=ns)" --bridge far)" "P4 P3 P2 P1"
eq "--date-from --iso-8601=minutes" "$(ids --date-from "$(date -d '1 hour ago' --iso-8601=minutes)" --bridge far)" "P4 P3 P2 P1"
eq "--date-from --iso-8601=hours" "$(ids --date-from "$(date -d '2 hours ago' --iso-8601=hours)" --bridge far)" "P4 P3 P2 P1"
eq "--date-from in the future: nothing" "$(ids --date-from "$(date -d '1 hour' --iso-8601=seconds)")" ""
eq "--date-from and --date-to: a window" \
    "$(ids --date-from "$(date -d '4 days ago' --iso-8601)" --date-to "$(date -d '1 day ago' --iso-8601=seconds)")" "P5"
out=$(ferry list queue --date-from yesterday 2>&1); rc=$?
eq "--date-from with a non-date is a usage error" "$rc" 2
contains "and shows the form" "$out" "2026-11-27T10:00:00Z"
eq "--task-id a prefix" "$(ids --task-id "${A:0:8}")" "A"
eq "--task-id the whole id" "$(ids --task-id "$A")" "A"
eq "--task-id in upper case" "$(ids --task-id "$(tr a-f A-F <<<"${A:0:8}")")" "A"
eq "--task-id unknown: nothing" "$(ids --task-id 00000000-0000-0000-0000-000000000000)" ""
eq "--no-completed" "$(ids --no-completed)" "S B P4 P3 P2 P1 P5"
eq "--include-completed false" "$(ids --include-completed false)" "S B P4 P3 P2 P1 P5"
eq "--include-completed true" "$(ids --include-completed true)" "S C B A P4 P3 P2 P1 P5"
eq "--no-cancelled" "$(ids --no-cancelled)" "S C B A P4 P3 P1 P5"
eq "--include-cancelled false" "$(ids --include-cancelled false)" "S C B A P4 P3 P1 P5"
out=$(ferry list queue --include-completed maybe 2>&1); rc=$?
eq "--include-completed maybe is a usage error" "$rc" 2
eq "--only-stale: the item ready for longer than 10 minutes" "$(ids --only-stale)" "P5"
eq "--only-stale --stale-threshold 5000 (minutes): none" "$(ids --only-stale --stale-threshold 5000)" ""
eq "--max-records 3: the newest three" "$(ids --max-records 3)" "S C B"
out=$(ferry list queue --max-records 0 2>&1); rc=$?
eq "--max-records 0 is a usage error" "$rc" 2
out=$(ferry list queue --max-records 10001 2>&1); rc=$?
eq "--max-records 10001 is a usage error" "$rc" 2
contains "naming the limit" "$out" "10000"
eq "filters combine" "$(ids --team Ops --status PENDING --bridge far)" "P1 P5"

# --- row fields ---------------------------------------------------------------------------------
out=$(ferry list queue --output json)
for f in taskId status healthStatus priority priorityLabel function teamName machineName bridgeName \
    createdTime createdDate assignedTime ageInMinutes retryCount lastFailureReason canBeCancelled \
    hasResponse totalDurationSeconds processingDurationSeconds vaultContent responseVault; do
    eq "every row has $f" "$(jqf "$out" "all(.data[]; has(\"$f\"))")" true
done
row() { jq -c --arg t "$1" ".data[] | select(.taskId == \$t) | $2" <<<"$out"; }
eq "FAILED row" "$(row "$B" '[.status, .healthStatus, .priority, .priorityLabel, .function, .teamName, .machineName, .bridgeName, .lastFailureReason, .canBeCancelled, .hasResponse, .retryCount]')" \
    '["FAILED","FAILED",2,"High","fx_result","Ops","box1","local","boom",false,true,0]'
eq "FAILED row: responseVault carries the error" "$(row "$B" '.responseVault.error.message')" '"boom"'
eq "FAILED row: times and durations" \
    "$(row "$B" '[(.assignedTime | type), (.totalDurationSeconds | type), (.processingDurationSeconds | type), (.createdDate == .createdTime), .ageInMinutes]')" \
    '["string","number","number",true,0]'
eq "PENDING row" "$(row "$P1" '[.status, .healthStatus, .assignedTime, .responseVault, .hasResponse, .canBeCancelled, .processingDurationSeconds]')" \
    '["PENDING","PENDING",null,null,false,true,null]'
eq "PENDING row: vaultContent with secrets redacted" "$(row "$P1" '.vaultContent')" '{"function":"hello","password":"********"}'
not_contains "no output of list shows the password" "$out$(ferry list queue)" "pw-secret-123"
eq "PROCESSING row is ACTIVE" "$(row "$S" '[.status, .healthStatus, .canBeCancelled]')" '["PROCESSING","ACTIVE",true]'
eq "an old PENDING row is STALE_PENDING with its age" "$(row "$P5" '[.healthStatus, (.ageInMinutes >= 4320)]')" '["STALE_PENDING",true]'
eq "COMPLETED row" "$(row "$A" '[.status, .hasResponse, .responseVault.status, .canBeCancelled]')" '["COMPLETED",true,"COMPLETED",false]'
eq "the seed's .data[0].responseVault via --task-id" \
    "$(ferry list queue --task-id "${A:0:8}" --output json | jq -r '.data[0].responseVault.status')" COMPLETED

# --- text table -------------------------------------------------------------------------------------
# The default table fits 100 columns: BRIDGE, CREATED and RETRIES go (tests/e2e/cli_term.sh);
# --wide shows them all.
eq "text --wide: header" "$(ferry list queue --wide | sed -n 1p | tr -s ' ')" \
    "TASK ID STATUS HEALTH PRIORITY FUNCTION TEAM MACHINE BRIDGE CREATED AGE (MIN) RETRIES PROGRESS"
text=$(ferry list queue)
eq "text: header" "$(sed -n 1p <<<"$text" | tr -s ' ')" \
    "TASK ID STATUS HEALTH PRIORITY FUNCTION TEAM MACHINE AGE (MIN) PROGRESS"
if [[ $(sed -n 2p <<<"$text") =~ ^-+(\ \ -+)+$ ]]; then pass "text: a rule under the header"; else fail "text: a rule under the header" "$text"; fi
if table_aligned "$text"; then pass "text: columns aligned"; else fail "text: columns aligned" "$text"; fi
eq "text: one line per item" "$(($(wc -l <<<"$text") - 2))" 9
for label in Highest High Normal Low Lowest; do
    if grep -Eq "  $label  " <<<"$text"; then pass "text: priority label $label"; else fail "text: priority label $label" "$text"; fi
done
contains "text: the progress of a running item" "$text" "% sleeping"

# --- trace ------------------------------------------------------------------------------------------
out=$(ferry queue trace "${B:0:8}" --output json)
eq "trace JSON: data keys" "$(jqf "$out" '.data | keys | join(",")')" "queue_item,request_vault,response_vault,timeline"
eq "trace JSON: queue_item is the row" "$(jqf "$out" '.data.queue_item | [.taskId == "'"$B"'", .status] | @tsv')" "true	FAILED"
eq "trace JSON: request_vault" "$(jqf "$out" '.data.request_vault | tojson')" '{"function":"fx_result","code":"FAIL","message":"boom"}'
eq "trace JSON: response_vault" "$(jqf "$out" '.data.response_vault.error.message')" boom
eq "trace JSON: every event has action, details, timestamp, secondsSincePrevious" \
    "$(jqf "$out" '.data.timeline | length > 0 and all(.[]; has("action") and has("details") and has("timestamp") and (.secondsSincePrevious | type) == "number")')" true
eq "trace JSON: the timeline starts CREATED and ends FAILED" \
    "$(jqf "$out" '[.data.timeline[0].action, .data.timeline[-1].action] | @tsv')" "CREATED	FAILED"
eq "trace JSON: timestamps ascend" "$(jqf "$out" '[.data.timeline[].timestamp] | . == sort')" true
out=$(ferry queue trace "$P1" --output json)
not_contains "trace hides secrets" "$out$(ferry queue trace "$P1")" "pw-secret-123"
eq "trace of a PENDING item: response_vault null" "$(jqf "$out" .data.response_vault)" null
text=$(ferry queue trace "$B")
contains "trace text: item section" "$text" "QUEUE ITEM $B"
contains "trace text: last failure" "$text" "last failure  boom"
contains "trace text: request vault section" "$text" "REQUEST VAULT"
contains "trace text: response vault section" "$text" "RESPONSE VAULT"
contains "trace text: timeline section" "$text" "TIMELINE"
timeline=$(sed -n '/^TIMELINE$/,$p' <<<"$text" | tail -n +2)
eq "trace text: timeline header" "$(sed -n 1p <<<"$timeline" | tr -s ' ')" "TIME +SECONDS ACTION BY DETAILS"
if table_aligned "$timeline"; then pass "trace text: timeline aligned"; else fail "trace text: timeline aligned" "$timeline"; fi
out=$(ferry queue trace 00000000-dead-beef-0000-000000000000 2>&1); rc=$?
eq "trace of an unknown task exits 1" "$rc" 1
eq "with one line" "$(wc -l <<<"$out")" 1

# --- wait ---------------------------------------------------------------------------------------------
out=$(ferry queue wait "$A"); rc=$?
eq "wait on a COMPLETED item: exit 0" "$rc" 0
eq "and prints COMPLETED" "$out" COMPLETED
eq "wait JSON" "$(ferry queue wait "$A" --output json | jq -r '.data[0].status')" COMPLETED
out=$(ferry queue wait "$B" 2>&1); rc=$?
eq "wait on a FAILED item: exit 1" "$rc" 1
contains "with the reason" "$out" "ended FAILED: boom"
start=$SECONDS
out=$(ferry queue wait "$P4" --timeout 1 2>&1); rc=$?
eq "wait --timeout on an item that does not end: exit 1" "$rc" 1
contains "saying so" "$out" "did not finish within 1 s"
((SECONDS - start <= 5)) && pass "wait --timeout 1 returns in time" || fail "wait --timeout 1 returns in time"

# --- cancel -----------------------------------------------------------------------------------------------
out=$(ferry queue cancel "$P1"); rc=$?
eq "cancel a PENDING item" "$out" "Task $P1 is CANCELLED"
eq "it is CANCELLED" "$(task_status "$P1")" CANCELLED
out=$(ferry queue cancel "$S" --output json)
eq "cancel a PROCESSING item: CANCELLING" "$(jqf "$out" '.data[0].status')" CANCELLING
wait_status "$S" CANCELLED 20
eq "then the host stops it: CANCELLED" "$(task_status "$S")" CANCELLED
out=$(ferry queue cancel "$A" 2>&1); rc=$?
eq "cancel a COMPLETED item exits 1" "$rc" 1
contains "and says which can be" "$out" "only PENDING, ASSIGNED or PROCESSING items can be cancelled"

# --- retry --------------------------------------------------------------------------------------------------
out=$(ferry queue retry "$B" --output json); rc=$?
eq "retry a FAILED item exits 0" "$rc" 0
R=$(jqf "$out" '.data[0].taskId')
if [[ $R =~ $UUID_RE && $R != "$B" ]]; then pass "retry makes a new task id"; else fail "retry makes a new task id" "$out"; fi
eq "linked to the original" "$(jqf "$out" '.data[0] | [.parentTaskId, .linkKind, .function, .priority] | @tsv')" "$B	retry	fx_result	2"
eq "the original's timeline records the retry" \
    "$(ferry queue trace "$B" --output json | jq -r --arg r "$R" '[.data.timeline[] | select(.action == "RETRIED") | .details] | index($r) != null')" true
out=$(ferry queue retry "$P1")
eq "retry a CANCELLED item: text" "$(sed -n 1p <<<"$out")" "Retry of $P1 queued"
contains "with the new Task ID" "$(sed -n 2p <<<"$out")" "Task ID: "
out=$(ferry queue retry "$A" 2>&1); rc=$?
eq "retry a COMPLETED item exits 1" "$rc" 1
contains "and says which can be" "$out" "only FAILED or CANCELLED items can be retried"
out=$(ferry queue retry "$P4" 2>&1); rc=$?
eq "retry a PENDING item exits 1" "$rc" 1

# --- rm -------------------------------------------------------------------------------------------------------
eq "rm a PENDING item (by prefix) names the whole id" "$(ferry rm queue-item "${P3:0:8}")" "Successfully removed queue item $P3"
eq "it is gone" "$(ids --task-id "$P3")" ""
eq "rm a CANCELLED item" "$(ferry rm queue-item "$P2" --output json | jq -r .success)" true
out=$(ferry rm queue-item "$A" 2>&1); rc=$?
eq "rm a COMPLETED item exits 1" "$rc" 1
contains "and says which can be" "$out" "only PENDING or CANCELLED items can be removed"
out=$(ferry rm queue-item "$B" 2>&1); rc=$?
eq "rm a FAILED item exits 1" "$rc" 1
eq "COMPLETED and FAILED items stay" "$(ids --task-id "$A")$(ids --task-id "$B")" "AB"

# --- unknown functions (fn_missing: no plugin has it) and parameter validation ---------------
out=$(ferry create queue-item Ops box1 local --vault '{"function":"fn_missing","repository":"webapp"}' 2>"$T_DIR/err"); rc=$?
eq "an unknown function is accepted" "$rc" 0
eq "with the normal output" "$(sed -n 1p <<<"$out")" "Successfully created queue item for machine box1 with priority 3"
contains "and a warning on stderr" "$(cat "$T_DIR/err")" "ferry: warning: function fn_missing is not provided by any plugin"
eq "the warning is one line" "$(wc -l <"$T_DIR/err")" 1
U=$(sed -n 2p <<<"$out" | cut -d' ' -f3)
ferry queue wait "$U" --timeout 20 >/dev/null 2>&1
eq "the host fails it" "$(task_status "$U")" FAILED
contains "clearly" "$(ferry list queue --task-id "$U" --output json | jq -r '.data[0].lastFailureReason')" \
    "function fn_missing is not provided by any plugin on bridge local"
out=$(ferry create queue-item Ops box1 local --vault '{"function":"fn_missing"}' --output json 2>"$T_DIR/err")
eq "JSON mode: stdout stays one JSON document" "$(jqf "$out" .success)" true
contains "JSON mode: the warning goes to stderr" "$(cat "$T_DIR/err")" "warning"
ferry queue wait "$(jqf "$out" '.data[0].taskId')" --timeout 20 >/dev/null 2>&1

before=$(count)
out=$(ferry create queue-item Ops box1 local --vault '{"function":"fx_result"}' 2>&1); rc=$?
eq "a missing required parameter exits 1" "$rc" 1
contains "naming the parameter" "$out" 'function fx_result needs parameter "code"'
out=$(ferry create queue-item Ops box1 local --vault '{"function":"fx_sleep","seconds":"long"}' 2>&1); rc=$?
eq "a parameter of the wrong type exits 1" "$rc" 1
contains "naming the type" "$out" 'parameter "seconds" of fx_sleep must be'
out=$(ferry create queue-item Ops box1 local --vault '{"function":"log_message"}' 2>&1); rc=$?
eq "a core function's required parameter is checked too" "$rc" 1
out=$(ferry create queue-item Ops box1 local --vault '{"repository":"webapp"}' 2>&1); rc=$?
eq "a vault without function exits 1" "$rc" 1
contains "saying what to add" "$out" '"function"'
out=$(ferry create queue-item Ops box1 local --vault '{"function":"hello","timeout":"soon"}' 2>&1); rc=$?
eq "a host key of the wrong type exits 1" "$rc" 1
contains "naming the key" "$out" "timeout"
eq "nothing was written by the refused creates" "$(count)" "$before"

# --- --after and --wait -------------------------------------------------------------------------------------
Y=$(mk Ops box1 local 3 '{"function":"fx_sleep","seconds":1}')
Z=$(mk Dev box3 local 3 '{"function":"fx_noop"}' --after "${Y:0:8}")
eq "an item --after a running one waits" "$(task_status "$Z")" PENDING
ferry queue wait "$Z" --timeout 20 >/dev/null
eq "and runs once it COMPLETED" "$(task_status "$Z")" COMPLETED
yf=$(ferry list queue --task-id "$Y" --output json | jq -r '.data[0].finishedTime')
za=$(ferry list queue --task-id "$Z" --output json | jq -r '.data[0].assignedTime')
if [[ $za > "$yf" || $za == "$yf" ]]; then pass "it was assigned after its dependency finished"; else fail "it was assigned after its dependency finished" "Y finished $yf, Z assigned $za"; fi
eq "the row lists its dependency" "$(ferry list queue --task-id "$Z" --output json | jq -r '.data[0].after[0]')" "$Y"
Y2=$(mk Ops box1 local 3 '{"function":"fx_sleep","seconds":1}')
F=$(mk Ops box1 local 3 '{"function":"fx_result","code":"FAIL"}' --after "$Y2")
D=$(mk Dev box3 local 3 '{"function":"fx_noop"}' --after "$F" --after "$Y2")
wait_status "$D" CANCELLED 20
eq "an item after a FAILED one is CANCELLED" "$(task_status "$D")" CANCELLED
contains "naming the dependency" "$(ferry list queue --task-id "$D" --output json | jq -r '.data[0].lastFailureReason')" "dependency $F FAILED"
out=$(ferry create queue-item Ops box1 local --vault '{"function":"fx_noop"}' --after 0000dead 2>&1); rc=$?
eq "--after an unknown task exits 1" "$rc" 1
contains "naming it" "$out" "0000dead"
out=$(ferry create queue-item Ops box1 local --vault '{"function":"fx_noop"}' --wait --timeout 20); rc=$?
eq "create --wait: exit 0 when COMPLETED" "$rc" 0
contains "and prints the status" "$out" "Status: COMPLETED"
out=$(ferry create queue-item Ops box1 local --vault '{"function":"fx_result","code":"FAIL","message":"bad"}' --wait --timeout 20 2>&1); rc=$?
eq "create --wait: exit 1 when FAILED" "$rc" 1
out=$(ferry create queue-item Ops far1 far --vault '{"function":"hello"}' --wait --timeout 1 2>&1); rc=$?
eq "create --wait --timeout: exit 1 when it does not end" "$rc" 1
contains "saying how to keep waiting" "$out" "ferry queue wait"

# --- ambiguous prefixes -------------------------------------------------------------------------------------
# With 17 or more items two task ids share a first hex digit.
while (($(count) < 17)); do mk QA qa1 far 3 '{"function":"hello"}' >/dev/null; done
dup=$(ferry list queue --output json | jq -r '[.data[].taskId[0:1]] | group_by(.) | map(select(length > 1))[0][0]')
out=$(ferry queue trace "$dup" 2>&1); rc=$?
eq "an ambiguous prefix exits 1" "$rc" 1
contains "and says it is ambiguous" "$out" "$dup"

# --- a list cut at --max-records says so (on PostgreSQL too, through cli_queue.sh@pg) -------------
all=$(count)
out=$(ferry list queue --max-records 2 --output json)
eq "a cut list: 2 rows, truncated, the exact total" "$(jq -c '[(.data | length), .truncated, .total]' <<<"$out")" "[2,true,$all]"
out=$(ferry list queue --max-records 2 --team QA --output json)
eq "the total follows the filters" "$(jq .total <<<"$out")" "$(ferry list queue --team QA --output json | jq '.data | length')"
contains "text says showing 2 of all" "$(ferry list queue --max-records 2)" "showing 2 of $all"
eq "an uncut list says it is whole" "$(ferry list queue --max-records 10000 --output json | jq -c '[.truncated, .total]')" "[false,$all]"
out=$(ferry dashboard --output json)
eq "dashboard: total7d is every item of the week" "$(jq .data.total7d <<<"$out")" "$all"

if kill -0 "$HOST_PID" 2>/dev/null; then pass "the host ran throughout"; else fail "the host ran throughout" "$(tail -5 "$T_DIR/host.log")"; fi
stop_host
t_done
