#!/usr/bin/env bash
# The CLI tells the truth about what it shows and what it was given (issue 13, points 8, 9
# and 11): a list cut at --max-records says so, the dashboard counts exactly past 10,000
# items, an item waiting for --after is not STALE_PENDING, unknown vault keys are warned
# about (refused with --strict) for items and schedules alike, a schedule's queue_config is
# checked like an item's vault, an unknown storage provider is refused, and --wait says why
# an item failed and which task it gave up on.
. "$(dirname "$0")/../lib.sh"

write_config
install_plugins
setup_local_machine Ops box1
ferry create bridge local-region far >/dev/null
ferry create machine Ops far far1 --vault '{"ip":"10.0.0.1","user":"u","ssh_port":22,"datastore":"/d"}' >/dev/null
DB=$T_DIR/ferry.db
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
mk() { # mk MACHINE BRIDGE VAULT [OPTIONS...]: prints the new task id
    local m=$1 b=$2 v=$3; shift 3
    ferry create queue-item Ops "$m" "$b" --vault "$v" "$@" --output json 2>/dev/null | jq -r '.data[0].taskId'
}

# --- list queue cut at --max-records -------------------------------------------------------
for i in 1 2 3 4 5; do mk far1 far '{"function":"hello"}' >/dev/null; done
out=$(ferry list queue --max-records 3 --output json)
eq "a cut list has its rows" "$(jq '.data | length' <<<"$out")" 3
eq "and says it was cut, with the total" "$(jq -c '[.truncated, .total]' <<<"$out")" "[true,5]"
eq "the envelope keeps success and data" "$(jq -c '[.success, (.data[0] | has("taskId"))]' <<<"$out")" "[true,true]"
contains "its message says how many of how many" "$(jq -r .message <<<"$out")" "showing 3 of 5"
out=$(ferry list queue --max-records 5 --output json)
eq "a whole list is not truncated" "$(jq -c '[.truncated, .total, (.data | length)]' <<<"$out")" "[false,5,5]"
out=$(ferry list queue --max-records 3)
contains "text says showing 3 of 5" "$out" "showing 3 of 5"
eq "text: header, rule, 3 rows, blank, note" "$(wc -l <<<"$out")" 7
not_contains "a whole text list has no note" "$(ferry list queue)" "showing"
out=$(ferry list queue --max-records 2 --status PENDING --machine far1 --output json)
eq "the total follows the filters" "$(jq .total <<<"$out")" 5

# --- dashboard counts exactly past 10,000 rows ---------------------------------------------
# 10,050 COMPLETED and 60 FAILED items of this week, written beneath the CLI for speed.
now=$(($(date +%s) * 1000))
sql "$DB" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10110)
  INSERT INTO queue_items (task_id, team_name, machine_name, bridge_name, function, priority,
    status, vault, created_at, updated_at, run_after, finished_at)
  SELECT printf('00000000-0000-4000-8000-%012d', i), 'Ops', 'far1', 'far', 'hello', 3,
    CASE WHEN i <= 60 THEN 'FAILED' ELSE 'COMPLETED' END, '{\"function\":\"hello\"}',
    $now - i * 1000, $now - i * 1000, $now - i * 1000, $now - i * 1000 FROM n;"
sql "$DB" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10020)
  INSERT INTO queue_items (task_id, team_name, machine_name, bridge_name, function, priority,
    status, vault, created_at, updated_at, run_after)
  SELECT printf('00000000-0000-4000-9000-%012d', i), 'Ops', 'far1', 'far', 'hello', 1,
    'PENDING', '{\"function\":\"hello\"}', $now - i * 1000, $now - i * 1000, $now - i * 1000 FROM n;"
out=$(ferry dashboard --output json)
eq "total7d counts every item of the week" "$(jq .data.total7d <<<"$out")" $((10110 + 10020 + 5))
eq "failed7d counts every failure" "$(jq .data.failed7d <<<"$out")" 60
eq "queue depth past 10,000" "$(jq -c '[.data.queueDepthByPriority."1", .data.queueDepthByPriority."3"]' <<<"$out")" "[10020,5]"
eq "success rate from the exact counts" "$(jq '.data.successRate7d * 1000 | round' <<<"$out")" \
    "$(python3 -c "print(round((20135 - 60) * 100 * 1000 / 20135))")"
contains "text: the depth" "$(ferry dashboard)" "Priority 1: 10020 jobs"
out=$(ferry list queue --output json)
eq "list queue's default page says 1000 of all" "$(jq -c '[(.data | length), .truncated, .total]' <<<"$out")" "[1000,true,20135]"
sql "$DB" "DELETE FROM queue_items WHERE task_id LIKE '00000000-0000-4000-%'"

# --- STALE_PENDING is not set on an item still blocked by --after ---------------------------
a=$(mk far1 far '{"function":"hello"}')
b=$(mk far1 far '{"function":"hello"}' --after "$a")
old=$(($(date +%s) * 1000 - 30 * 60000))
sql "$DB" "UPDATE queue_items SET created_at = $old, run_after = $old WHERE task_id IN ('$a', '$b')"
health() { ferry list queue --task-id "$1" --output json | jq -r '.data[0].healthStatus'; }
eq "a ready item waiting 30 minutes is STALE_PENDING" "$(health "$a")" STALE_PENDING
eq "its dependent, still blocked, is PENDING" "$(health "$b")" PENDING
stale=$(ferry list queue --only-stale --output json | jq -r '[.data[].taskId] | join(" ")')
contains "--only-stale lists the ready one" "$stale" "$a"
not_contains "--only-stale leaves out the blocked one" "$stale" "$b"
ferry queue cancel "$a" >/dev/null

# --- unknown vault keys: warned, or refused with --strict ------------------------------------
ferry create storage Ops s1 --vault '{"provider":"local","path":"/tmp"}' >/dev/null
v='{"function":"repo_push","repository":"app","storage":"s1","retention_day":3,"max_retry":2}'
ferry create queue-item Ops far1 far --vault "$v" >"$T_DIR/out" 2>"$T_DIR/err"; rc=$?
eq "unknown keys: the item is still created" "$rc" 0
eq "one warning line per unknown key" "$(grep -c 'warning: vault key' "$T_DIR/err")" 2
contains "retention_day names retention_days" "$(cat "$T_DIR/err")" \
    'ferry: warning: vault key "retention_day" is neither a parameter of repo_push nor a host key (did you mean "retention_days"?)'
contains "max_retry names max_retries (a host key)" "$(cat "$T_DIR/err")" '"max_retry" is neither a parameter of repo_push nor a host key (did you mean "max_retries"?)'
contains "stdout is the usual answer" "$(cat "$T_DIR/out")" "Task ID:"
ferry create queue-item Ops far1 far --vault '{"function":"repo_push","repository":"app","storage":"s1","retention_days":3,"max_retries":2}' >/dev/null 2>"$T_DIR/err"
eq "known keys: no warning" "$(cat "$T_DIR/err")" ""
n0=$(ferry list queue --max-records 10000 --output json | jq '.data | length')
out=$(ferry create queue-item Ops far1 far --vault "$v" --strict 2>&1); rc=$?
eq "--strict refuses an unknown key: exit 1" "$rc" 1
eq "with one line naming it" "$out" 'ferry: vault key "retention_day" is neither a parameter of repo_push nor a host key (did you mean "retention_days"?); refused by --strict'
out=$(ferry create queue-item Ops far1 far --vault '{"function":"no_such_fn"}' --strict --output json); rc=$?
eq "--strict refuses a function no plugin provides" "$rc" 1
contains "saying so" "$(jq -r .error <<<"$out")" "function no_such_fn is not provided by any plugin"
eq "nothing was created" "$(ferry list queue --max-records 10000 --output json | jq '.data | length')" "$n0"

# --- schedules: queue_config checked like create queue-item -----------------------------------
sched() { ferry create schedule Ops "$1" --vault "{\"cron\":\"0 2 * * *\",\"machine\":\"far1\",\"queue_config\":$2}" "${@:3}"; }
out=$(sched s-missing '{"function":"repo_push","repository":"app"}' 2>&1); rc=$?
eq "a missing REQUIRED parameter is refused: exit 1" "$rc" 1
eq "naming it" "$out" 'ferry: queue_config: function repo_push needs parameter "storage" (string): Storage of the team to push to (ferry create storage).'
out=$(sched s-type '{"function":"repo_push","repository":"app","storage":"s1","retention_days":"x"}' 2>&1); rc=$?
eq "a wrong type is refused" "$rc" 1
sched s-unknown '{"function":"repo_push","repository":"app","storage":"s1","retention_day":30}' >"$T_DIR/out" 2>"$T_DIR/err"; rc=$?
eq "an unknown key is accepted" "$rc" 0
contains "with a warning naming the closest key" "$(cat "$T_DIR/err")" 'ferry: warning: queue_config: vault key "retention_day" is neither a parameter of repo_push nor a host key (did you mean "retention_days"?)'
sched s-fn '{"function":"no_such_fn"}' >/dev/null 2>"$T_DIR/err"; rc=$?
eq "an unknown function is accepted" "$rc" 0
contains "with a warning" "$(cat "$T_DIR/err")" "ferry: warning: queue_config: function no_such_fn is not provided by any plugin"
out=$(sched s-strict '{"function":"repo_push","repository":"app","storage":"s1","retention_day":30}' --strict 2>&1); rc=$?
eq "--strict refuses the schedule" "$rc" 1
contains "naming the key" "$out" 'refused by --strict'
eq "the refused schedules were not written" "$(ferry list team-schedules Ops --output json | jq -r '[.data[].scheduleName] | sort | join(" ")')" "s-fn s-unknown"
out=$(ferry update schedule-vault Ops s-unknown --vault '{"queue_config":{"storage":null}}' 2>&1); rc=$?
eq "an update that drops a REQUIRED parameter is refused" "$rc" 1
contains "naming it" "$out" 'needs parameter "storage"'
ferry update schedule-vault Ops s-unknown --vault '{"enabled":false}' >/dev/null 2>"$T_DIR/err"; rc=$?
eq "a patch that leaves queue_config alone goes through" "$rc" 0
eq "without warnings" "$(cat "$T_DIR/err")" ""
out=$(ferry update schedule-vault Ops s-unknown --strict --vault '{"queue_config":{"max_retry":2}}' 2>&1); rc=$?
eq "update --strict refuses an unknown key" "$rc" 1

# --- storages: an unknown provider is refused at create --------------------------------------
out=$(ferry create storage Ops ftp1 --vault '{"provider":"ftp","host":"x"}' 2>&1); rc=$?
eq "provider ftp: exit 1" "$rc" 1
eq "naming it and the ones there are" "$out" 'ferry: storage provider "ftp" is not one ferry has; use "local", "s3", "sftp" or "webdav" (docs/storages.md)'
out=$(ferry create storage Ops n1 --vault '{"provider":5}' 2>&1)
contains "a provider that is not a string" "$out" 'storage "provider" must be a string, got an integer'
eq "nothing was written" "$(ferry list team-storages Ops --output json | jq -r '[.data[].storageName] | join(" ")')" s1
out=$(ferry update storage-vault Ops s1 --vault '{"provider":"ftp"}' 2>&1); rc=$?
eq "nor can an update make it ftp" "$rc" 1

# --- --wait: the failure reason in text mode, the task id when the wait times out ------------
start_host
ferry create queue-item Ops box1 local --vault '{"function":"not_here"}' --wait --timeout 30 >"$T_DIR/out" 2>"$T_DIR/err"; rc=$?
eq "--wait on a failing item: exit 1" "$rc" 1
contains "stdout has Status: FAILED" "$(cat "$T_DIR/out")" "Status: FAILED"
id=$(sed -n 's/^Task ID: //p' "$T_DIR/out")
contains "stderr has the reason" "$(cat "$T_DIR/err")" "ferry: task $id ended FAILED: function not_here is not provided by any plugin on bridge local"
stop_host
ferry create queue-item Ops far1 far --vault '{"function":"hello"}' --wait --timeout 1 >"$T_DIR/out" 2>"$T_DIR/err"; rc=$?
eq "--wait --timeout that runs out: exit 1" "$rc" 1
id=$(sed -n 's/^Task ID: //p' "$T_DIR/out")
[[ $id =~ ^[0-9a-f-]{36}$ ]] && pass "the task id is on stdout" || fail "the task id is on stdout" "$(cat "$T_DIR/out")"
contains "with its status" "$(cat "$T_DIR/out")" "Status: PENDING"
contains "stderr says it keeps running" "$(cat "$T_DIR/err")" "task $id did not finish within 1 s"
t_done
