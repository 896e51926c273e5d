#!/usr/bin/env bash
# The seed guide's own scripts as tests (issue 3, point 4): every ```bash block of the guide
# (the copy in tests/seed/) is extracted with `rediacc-cli` replaced by `ferry` and nothing
# else changed; the queue-item scripts and job-dashboard.sh run against a real host serving
# the guide's bridge "prod-bridge", and their output is asserted.
#
# Two liberties, both outside the scripts: `sleep` is an exported shell function that sleeps
# 0.2 s (the scripts wait 10 and 30 s between steps), and the functions the guide calls but
# ferry does not have yet (repo_push, repo_snapshot …) are first left missing — accepted with
# a warning, then failed clearly by the host — and later provided by a stand-in plugin built
# here, so that the scripts' success paths run too.
. "$(dirname "$0")/../lib.sh"

SEED_GUIDE=$FERRY_ROOT/tests/seed/000_fe445159a0569f11.txt
SEED=$T_DIR/seed
T_BRIDGE=prod-bridge
write_config
# Only the core plugin: the guide's functions are meant to be missing here, whatever other
# plugins the tree builds (their own tests run the guide against them).
cp "$FERRY_ROOT/$BUILD/plugins/core.so" "$T_DIR/plugins/" && chmod 644 "$T_DIR/plugins/core.so"
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c && chmod 644 "$T_DIR/plugins/misbehave.so"
mkdir -p "$T_DIR/bin"
ln -s "$FERRY_BIN" "$T_DIR/bin/ferry"
UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
CREATED_RE='^Successfully created queue item for machine [^ ]+ with priority [1-5]$'

# run_seed SCRIPT [ARGS...]: runs an extracted script with ferry on the PATH and `sleep`
# shortened to 0.2 s, for at most 60 s; stdout in $T_DIR/out, stderr in $T_DIR/err, exit
# code in $RC.
run_seed() {
    local script=$1; shift
    (sleep() { command sleep 0.2; }
     export -f sleep
     cd "$T_DIR" && PATH=$T_DIR/bin:$PATH timeout 60 bash "$SEED/$script" "$@") \
        >"$T_DIR/out" 2>"$T_DIR/err" <"${SEED_STDIN:-/dev/null}"
    RC=$?
}
out_line() { sed -n "${1}p" "$T_DIR/out"; }
jqf() { jq -r "$2" <<<"$1" 2>/dev/null || echo "jq failed on: $1"; }
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
task_row() { ferry list queue --task-id "$1" --output json | jq -c ".data[0] | $2"; }

# --- extraction -------------------------------------------------------------------------------
listing=$("$FERRY_ROOT/tests/seed/extract.sh" "$SEED_GUIDE" "$SEED"); rc=$?
eq "extract.sh exits 0" "$rc" 0
eq "the guide has 12 bash blocks" "$(wc -l <<<"$listing")" 12
for s in setup-backup-schedule.sh backup-workflow.sh restore-workflow.sh setup-replication.sh \
    deployment-pipeline.sh conditional-backup.sh job-dashboard.sh troubleshoot-job.sh block-01.sh block-02.sh; do
    [[ -f $SEED/$s ]] && pass "extracted $s" || fail "extracted $s" "$listing"
done
eq "no rediacc-cli is left" "$(grep -l rediacc-cli "$SEED"/* | wc -l)" 0
eq "only the program name changed" \
    "$(diff <(sed 's/ferry/rediacc-cli/g' "$SEED/job-dashboard.sh") \
        <(awk '/^# job-dashboard.sh/{p=1} p && /^```$/{exit} p' "$SEED_GUIDE" | sed '1s/^/#!\/bin\/bash\n/') && echo same)" same

# --- the guide's world: team Operations, bridge prod-bridge, its machines --------------------------
ferry create region us-east >/dev/null
ferry create bridge us-east prod-bridge >/dev/null
ferry create bridge us-east staging-bridge >/dev/null
ferry create team Operations >/dev/null
ferry create team DevOps >/dev/null
for m in web-server-01 all-servers app-server app-server-01 archive-server replication-master; do
    ferry create machine Operations prod-bridge $m --vault '{"connection":"local"}' >/dev/null
done
for m in staging-web-01 staging-web-02 staging-web-03 staging-test-01; do
    ferry create machine DevOps staging-bridge $m --vault '{"connection":"local"}' >/dev/null
done
start_host

# --- "Creating One-Time Jobs" (block 1): functions ferry does not have yet ---------------------
run_seed block-01.sh
eq "one-time jobs: exit 0" "$RC" 0
eq "one-time jobs: the first item" "$(out_line 1)" "Successfully created queue item for machine web-server-01 with priority 3"
eq "one-time jobs: the second item" "$(out_line 3)" "Successfully created queue item for machine all-servers with priority 2"
J1=$(out_line 2 | sed -n 's/^Task ID: //p')
J2=$(out_line 4 | sed -n 's/^Task ID: //p')
[[ $J1 =~ $UUID_RE && $J2 =~ $UUID_RE ]] && pass "one-time jobs: Task ID lines" || fail "one-time jobs: Task ID lines" "$(cat "$T_DIR/out")"
eq "one-time jobs: nothing else on stdout" "$(wc -l <"$T_DIR/out")" 4
contains "one-time jobs: repo_push accepted with a warning" "$(cat "$T_DIR/err")" "warning: function repo_push is not provided by any plugin"
contains "one-time jobs: os_update accepted with a warning" "$(cat "$T_DIR/err")" "warning: function os_update is not provided by any plugin"
eq "one-time jobs: two warnings, nothing else" "$(wc -l <"$T_DIR/err")" 2
eq "one-time jobs: the vault as written" "$(task_row "$J1" '[.vaultContent.repository, .vaultContent.storage, .vaultContent.description, .teamName, .bridgeName]')" \
    '["webapp","s3-backups","Daily webapp backup","Operations","prod-bridge"]'
eq "one-time jobs: os_update's vault" "$(task_row "$J2" '[.vaultContent.packages, .vaultContent.reboot]')" '[["security","critical"],false]'
ferry queue wait "$J1" --timeout 20 >/dev/null 2>&1
ferry queue wait "$J2" --timeout 20 >/dev/null 2>&1
eq "the host fails repo_push" "$(task_status "$J1")" FAILED
contains "clearly" "$(task_row "$J1" .lastFailureReason)" "function repo_push is not provided by any plugin on bridge prod-bridge"
contains "and os_update too" "$(task_row "$J2" .lastFailureReason)" "function os_update is not provided by any plugin on bridge prod-bridge"

# --- "Monitoring Job Execution" (block 2) ------------------------------------------------------------
run_seed block-02.sh
eq "monitoring: exit 0 (the last command's)" "$RC" 0
eq "monitoring: list --status PROCESSING prints the table header" "$(out_line 1 | tr -s ' ' | cut -d' ' -f1-4)" "TASK ID STATUS HEALTH"
eq "monitoring: the example task id does not exist: one line on stderr" "$(cat "$T_DIR/err")" \
    "ferry: no queue item with task id '550e8400-e29b-41d4-a716-446655440000'"
# The table fits 100 columns: a task id shows its first 8 characters (docs/cli.md, "Output").
failed_rows=$(grep -cE "^[0-9a-f]{8} +FAILED " "$T_DIR/out")
eq "monitoring: --status FAILED --date-from \$(date -d '1 day ago' --iso-8601) lists both failures" "$failed_rows" 2
eq "monitoring: .data[0].responseVault of an unknown prefix is null" "$(tail -1 "$T_DIR/out")" null

# --- troubleshoot-job.sh on a failed job, answering y ---------------------------------------------------
SEED_STDIN=<(echo y) run_seed troubleshoot-job.sh "$J1"
eq "troubleshoot: exit 0" "$RC" 0
eq "troubleshoot: first line" "$(out_line 1)" "Troubleshooting job: $J1"
info=$(sed -n '/^Job Information:$/,/^}$/p' "$T_DIR/out" | tail -n +2)
eq "troubleshoot: the job information jq builds" "$(jqf "$info" '[.status, .machine, .bridge, .priority] | @tsv')" \
    "FAILED	web-server-01	prod-bridge	3"
[[ $(jqf "$info" .created) == 20*Z ]] && pass "troubleshoot: created is the createdDate" || fail "troubleshoot: created is the createdDate" "$info"
contains "troubleshoot: the trace is printed" "$(cat "$T_DIR/out")" "QUEUE ITEM $J1"
contains "troubleshoot: with its timeline" "$(cat "$T_DIR/out")" "TIMELINE"
contains "troubleshoot: asks to retry" "$(cat "$T_DIR/out")" "Job failed. Retry? (y/n)"
contains "troubleshoot: ferry queue retry's output" "$(cat "$T_DIR/out")" "Retry of $J1 queued"
eq "troubleshoot: last line" "$(tail -1 "$T_DIR/out")" "Retry initiated"
eq "troubleshoot: the retry is linked to the job" \
    "$(ferry list queue --output json | jq -r --arg p "$J1" '[.data[] | select(.parentTaskId == $p)] | length')" 1
SEED_STDIN=<(echo n) run_seed troubleshoot-job.sh "$J2"
eq "troubleshoot, answering n: exit 0" "$RC" 0
not_contains "troubleshoot, answering n: no retry" "$(cat "$T_DIR/out")" "Retry initiated"
run_seed troubleshoot-job.sh
eq "troubleshoot without a task: exit 1" "$RC" 1
contains "troubleshoot without a task: usage" "$(cat "$T_DIR/out")" "Usage:"

# --- backup-workflow.sh while repo_push is missing -----------------------------------------------------------
run_seed backup-workflow.sh Operations web-server-01 webapp s3-backups
eq "backup-workflow (functions missing): exit 1" "$RC" 1
eq "backup-workflow: first line" "$(out_line 1)" "Starting backup: webapp on web-server-01"
eq "backup-workflow: the snapshot item (inspect machine | jq -r .bridgeName)" "$(out_line 2)" \
    "Successfully created queue item for machine web-server-01 with priority 2"
BT=$(sed -n 's/^Backup task created: //p' "$T_DIR/out")
[[ $BT =~ $UUID_RE ]] && pass "backup-workflow: jq -r '.data[0].taskId' yields a UUID" || fail "backup-workflow: jq -r '.data[0].taskId' yields a UUID" "$(cat "$T_DIR/out")"
contains "backup-workflow: the loop sees FAILED" "$(cat "$T_DIR/out")" "Backup failed!"
contains "backup-workflow: and prints the trace" "$(cat "$T_DIR/out")" "QUEUE ITEM $BT"
eq "backup-workflow: the push item" "$(task_row "$BT" '[.function, .priority, .vaultContent.snapshot_id != null, .vaultContent.verify]')" \
    '["repo_push",3,true,true]'
contains "backup-workflow: warnings for the missing functions" "$(cat "$T_DIR/err")" "function repo_snapshot is not provided"

# --- a stand-in plugin for the guide's functions ------------------------------------------------------------
cat >"$T_DIR/seedstub.c" <<'EOF'
/* Stand-ins for the guide's functions: each succeeds and echoes its parameters. */
#include <ferry/plugin.h>
#define STUB(fname)                                                                        \
    static ferry_result run_##fname(ferry_ctx *ctx, const json_t *p, json_t **r)           \
    {                                                                                      \
        (void)ctx;                                                                         \
        *r = json_pack("{s:b,s:s,s:O}", "stub", 1, "function", #fname, "params", p); \
        return FERRY_OK;                                                                   \
    }                                                                                      \
    static const ferry_function def_##fname = {FERRY_FUNCTION_INIT, .name = #fname,        \
                                               .summary = "stand-in", .run = run_##fname}
STUB(repo_snapshot);
STUB(repo_push);
STUB(repo_pull);
STUB(repo_down);
STUB(repo_up);
STUB(os_update);
STUB(run_tests);
STUB(conditional_backup);
static const ferry_function *const fns[] = {&def_repo_snapshot, &def_repo_push, &def_repo_pull,
                                            &def_repo_down, &def_repo_up, &def_os_update,
                                            &def_run_tests, &def_conditional_backup, NULL};
FERRY_PLUGIN(.name = "seedstub", .version = "1", .summary = "stand-ins for the seed guide",
             .functions = fns)
EOF
${CC:-cc} -std=gnu11 -O1 -fPIC -fvisibility=hidden -shared -Wall -Wextra -Werror \
    $([[ ${SAN:-0} == 1 ]] && echo -fsanitize=address,undefined) \
    -I"$FERRY_ROOT/sdk/include" -o "$T_DIR/seedstub.so" "$T_DIR/seedstub.c" -ljansson
chmod 644 "$T_DIR/seedstub.so"
mv "$T_DIR/seedstub.so" "$T_DIR/plugins/seedstub.so"
if wait_for 10 grep -q "plugins rescanned: .* functions" "$T_DIR/host.log"; then
    pass "the host picks up the stand-ins"
else
    fail "the host picks up the stand-ins" "$(tail -5 "$T_DIR/host.log")"
fi

# --- backup-workflow.sh, complete ----------------------------------------------------------------------------
run_seed backup-workflow.sh Operations web-server-01 webapp s3-backups
eq "backup-workflow: exit 0" "$RC" 0
eq "backup-workflow: ends with success" "$(tail -1 "$T_DIR/out")" "Backup completed successfully!"
BT=$(sed -n 's/^Backup task created: //p' "$T_DIR/out")
[[ $BT =~ $UUID_RE ]] && pass "backup-workflow: the task id" || fail "backup-workflow: the task id" "$(cat "$T_DIR/out")"
eq "backup-workflow: nothing on stderr" "$(cat "$T_DIR/err")" ""
eq "backup-workflow: the response the function gave" "$(task_row "$BT" '[.status, .responseVault.result.function, .responseVault.result.params.repository, .responseVault.result.params.storage]')" \
    '["COMPLETED","repo_push","webapp","s3-backups"]'
eq "the seed's .data[0].responseVault by prefix" \
    "$(ferry list queue --task-id "${BT:0:8}" --output json | jq -r '.data[0].responseVault.result.stub')" true

# --- restore-workflow.sh -------------------------------------------------------------------------------------
run_seed restore-workflow.sh Operations web-server-01 webapp s3-backups 2024-01-01
eq "restore-workflow: exit 0" "$RC" 0
eq "restore-workflow: first line" "$(out_line 1)" "Starting restore: webapp from s3-backups"
eq "restore-workflow: three items at priority 1" "$(grep -c '^Successfully created queue item for machine web-server-01 with priority 1$' "$T_DIR/out")" 3
eq "restore-workflow: last line" "$(tail -1 "$T_DIR/out")" "Restore initiated. Monitor with: ferry list queue --machine web-server-01"
ids=$(sed -n 's/^Task ID: //p' "$T_DIR/out")
for id in $ids; do ferry queue wait "$id" --timeout 20 >/dev/null 2>&1; done
eq "restore-workflow: all three COMPLETED, in the order queued" \
    "$(ferry list queue --machine web-server-01 --priority 1 --output json | jq -c '[.data | sort_by(.startedTime)[] | [.function, .status]]')" \
    '[["repo_down","COMPLETED"],["repo_pull","COMPLETED"],["repo_up","COMPLETED"]]'
eq "restore-workflow: repo_pull's vault" \
    "$(ferry list queue --machine web-server-01 --output json | jq -c '[.data[] | select(.function == "repo_pull") | .vaultContent | .restore_point, .verify]')" \
    '["2024-01-01",true]'

# --- conditional-backup.sh -----------------------------------------------------------------------------------
run_seed conditional-backup.sh
eq "conditional-backup: exit 0" "$RC" 0
eq "conditional-backup: output" "$(out_line 1)" "Successfully created queue item for machine app-server with priority 4"
CB=$(out_line 2 | sed -n 's/^Task ID: //p')
ferry queue wait "$CB" --timeout 20 >/dev/null 2>&1
eq "conditional-backup: nested vaults kept" "$(task_row "$CB" '[.status, .vaultContent.if_true.function, .vaultContent.if_false.message]')" \
    '["COMPLETED","repo_push","No changes detected, skipping backup"]'

# --- deployment-pipeline.sh (its bridge has no host here: the items stay PENDING) ---------------------------
run_seed deployment-pipeline.sh staging
eq "deployment-pipeline: exit 0" "$RC" 0
eq "deployment-pipeline: first line" "$(out_line 1)" "Starting deployment pipeline for staging"
eq "deployment-pipeline: five items" "$(grep -cE "$CREATED_RE" "$T_DIR/out")" 5
DID=$(sed -n 's/^Deployment pipeline initiated: //p' "$T_DIR/out")
[[ $DID =~ $UUID_RE ]] && pass "deployment-pipeline: the deployment id" || fail "deployment-pipeline: the deployment id" "$(cat "$T_DIR/out")"
eq "deployment-pipeline: machines and priorities" \
    "$(ferry list queue --bridge staging-bridge --output json | jq -c '[.data | reverse[] | "\(.machineName):\(.function):\(.priority)"]')" \
    '["staging-web-01:repo_push:1","staging-web-01:repo_pull:2","staging-web-02:repo_pull:2","staging-web-03:repo_pull:2","staging-test-01:run_tests:1"]'
eq "deployment-pipeline: tags carry the deployment id" \
    "$(ferry list queue --machine staging-web-01 --priority 1 --output json | jq -r '.data[0].vaultContent.tags.deployment_id')" "$DID"

# --- job-dashboard.sh on this store: it runs and prints every section ------------------------------------------
run_seed job-dashboard.sh
eq "job-dashboard: exit 0" "$RC" 0
eq "job-dashboard: nothing on stderr" "$(cat "$T_DIR/err")" ""
for h in "=== Rediacc Job Dashboard ===" "## Active Jobs" "## Queue Depth by Priority" "## Recent Failures (Last 24h)" "## Success Rate (Last 7 days)"; do
    contains "job-dashboard: section $h" "$(cat "$T_DIR/out")" "$h"
done
eq "job-dashboard: priority 1 counts the five PENDING staging items' share" "$(grep '^Priority 1:' "$T_DIR/out")" "Priority 1: 2 jobs"
eq "job-dashboard: priority 2" "$(grep '^Priority 2:' "$T_DIR/out")" "Priority 2: 3 jobs"
if kill -0 "$HOST_PID" 2>/dev/null; then pass "the host ran throughout"; else fail "the host ran throughout" "$(tail -5 "$T_DIR/host.log")"; fi
stop_host

# --- job-dashboard.sh on a store whose numbers are known ------------------------------------------------------
export FERRY_CONFIG=$T_DIR/dash.conf
sed "s|$T_DIR/ferry.db|$T_DIR/dash.db|" "$T_DIR/ferry.conf" >"$FERRY_CONFIG"
ferry create region us-east >/dev/null
ferry create bridge us-east prod-bridge >/dev/null
ferry create team Operations >/dev/null
ferry create machine Operations prod-bridge web-server-01 --vault '{"connection":"local"}' >/dev/null
ferry create machine Operations prod-bridge busy-01 --vault '{"connection":"local"}' >/dev/null
start_host "$T_DIR/dash-host.log"
mk() { ferry create queue-item Operations "$1" prod-bridge --priority "$2" --vault "$3" --output json | jq -r '.data[0].taskId'; }
for i in 1 2 3 4 5; do last=$(mk web-server-01 3 '{"function":"fx_noop"}'); done
ferry queue wait "$last" --timeout 20 >/dev/null
F=()
for i in 1 2 3 4; do
    F+=("$(mk web-server-01 2 '{"function":"fx_result","code":"FAIL","message":"disk full"}')")
    ferry queue wait "${F[-1]}" --timeout 20 >/dev/null 2>&1
done
# Two of the failures are old: 3 days (inside the 7-day window, outside the last 24 h) and 10
# days (outside both). Nothing in the CLI makes an item old, so the test edits the file.
for pair in "${F[2]} 4320" "${F[3]} 14400"; do
    set -- $pair
    sql "$T_DIR/dash.db" "UPDATE queue_items SET created_at = created_at - $2 * 60000 WHERE task_id = '$1'"
done
S=$(mk busy-01 4 '{"function":"fx_sleep","seconds":120}')
wait_status "$S" PROCESSING 20
for p in 1 2 2 3 3 3 5; do mk busy-01 $p '{"function":"fx_noop"}' >/dev/null; done
eq "the known store: statuses" "$(ferry list queue --max-records 10000 --output json | jq -c '[.data[].status] | group_by(.) | map("\(.[0])=\(length)")')" \
    '["COMPLETED=5","FAILED=4","PENDING=7","PROCESSING=1"]'
run_seed job-dashboard.sh
eq "dashboard: exit 0" "$RC" 0
eq "dashboard: nothing on stderr" "$(cat "$T_DIR/err")" ""
section() { awk -v h="$1" '$0 == h {p = 1; next} /^## / || /^$/ {if (p) exit} p' "$T_DIR/out"; }
eq "dashboard: active jobs" "$(section "## Active Jobs")" "busy-01: fx_sleep (Priority: 4)"
eq "dashboard: queue depth by priority" "$(section "## Queue Depth by Priority")" \
    "$(printf 'Priority 1: 1 jobs\nPriority 2: 2 jobs\nPriority 3: 3 jobs\nPriority 4: 0 jobs\nPriority 5: 1 jobs')"
eq "dashboard: recent failures, newest first, old ones left out" "$(section "## Recent Failures (Last 24h)")" \
    "$(printf '%s: web-server-01 - fx_result\n%s: web-server-01 - fx_result' "${F[1]:0:8}" "${F[0]:0:8}")"
# 7 days: 5 completed + 1 processing + 7 pending + 3 failed (the 10-day-old one is out) = 16;
# (16 - 3) * 100 / 16 = 81.25.
eq "dashboard: the success rate line" "$(section "## Success Rate (Last 7 days)")" "Success Rate: 81.25%"
# ferry dashboard computes the same in one command.
builtin_out=$(ferry dashboard)
for h in "## Active Jobs" "## Queue Depth by Priority" "## Recent Failures (Last 24h)" "## Success Rate (Last 7 days)"; do
    eq "ferry dashboard agrees: $h" "$(awk -v h="$h" '$0 == h {p = 1; next} /^## / || /^$/ {if (p) exit} p' <<<"$builtin_out")" "$(section "$h")"
done
ferry queue cancel "$S" >/dev/null
wait_status "$S" CANCELLED 20
if kill -0 "$HOST_PID" 2>/dev/null; then pass "the second host ran throughout"; else fail "the second host ran throughout" "$(tail -5 "$T_DIR/dash-host.log")"; fi
stop_host

t_done
