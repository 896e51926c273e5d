#!/usr/bin/env bash
# The seed guide's own scripts, for this issue's functions (issue 7, point 8), extracted from
# tests/seed/ with `rediacc-cli` replaced by `ferry` and nothing else changed:
#   block-01.sh             its os_update item ("security", "critical", reboot false)
#   deployment-pipeline.sh  its run_tests item (smoke suite for the environment), passing and
#                           failing (notify_on_failure mailed)
#   conditional-backup.sh   the check over SSH, then the if_false branch through the host
# Two hosts share the store: one serves prod-bridge, one staging-bridge.
#
# The os_update item runs on a machine whose apt-get is a sandbox (a wrapper first on the
# host's PATH that simulates everything: apt-get -s), so the guide's real update of security
# and critical packages runs end to end without changing this machine. The repo_* items
# belong to the repository plugin and are only reported here.
. "$(dirname "$0")/../lib.sh"

SEED=$T_DIR/seed
"$FERRY_ROOT/tests/seed/extract.sh" "$FERRY_ROOT/tests/seed/000_fe445159a0569f11.txt" "$SEED" >/dev/null ||
    { fail "the guide's scripts are extracted"; t_done; exit 1; }
SSHD_DIR=$T_DIR/sshd
port=$("$FERRY_ROOT/tests/helpers/sshd.sh" start "$SSHD_DIR") || { fail "sshd starts" "$port"; t_done; exit 1; }
rx=$T_DIR/rx; mkdir -p "$rx"
python3 "$FERRY_ROOT/tests/helpers/receivers.py" "$rx" & T_EXTRA_PIDS=$!
STAGING_PID=
trap '[[ -n $STAGING_PID ]] && kill -9 $STAGING_PID 2>/dev/null; "$FERRY_ROOT/tests/helpers/sshd.sh" stop "$SSHD_DIR"; t_cleanup' EXIT
wait_for 10 test -s "$rx/ports" || { fail "receivers started"; t_done; exit 1; }
read -r smtp_port http_port <"$rx/ports"

common=('timeouts = { default = 120; grace = 1; };' 'retry = { max_retries = 0; };'
    'lease = { poll_ms = 100; };' "workers = { count = 4; path = \"$T_DIR/sandbox:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"; };"
    "smtp = { url = \"smtp://127.0.0.1:$smtp_port\"; from = \"ferry@test.local\"; };")
T_BRIDGE=staging-bridge write_config "${common[@]}"
mv "$T_DIR/ferry.conf" "$T_DIR/staging.conf"
T_BRIDGE=prod-bridge write_config "${common[@]}"
install_plugins

# The machines. all-servers: local, apt sandboxed. app-server and staging-test-01: SSH.
DS=$T_DIR/ds
mkdir -p "$DS/tests" "$T_DIR/bin" "$T_DIR/sandbox"
cat >"$DS/tests/smoke.sh" <<'EOF'
echo "smoke tests against $1 (deployment $FERRY_DEPLOYMENT_ID)"
echo "1..4"
echo "ok 1 - home page answers"
echo "ok 2 - login page answers"
if [ -e "$(dirname "$0")/BROKEN" ]; then echo "not ok 3 - checkout"; else echo "ok 3 - checkout"; fi
echo "ok 4 - health"
EOF
cat >"$T_DIR/sandbox/apt-get" <<'EOF'
#!/bin/bash
# Test sandbox: this machine's apt-get, but nothing changes: everything is simulated.
[[ " $* " == *" update "* ]] && { echo "sandbox: apt-get update skipped"; exit 0; }
args=(); for a; do [[ $a == -y ]] || args+=("$a"); done
exec /usr/bin/apt-get -s -o Debug::NoLocking=1 "${args[@]}"
EOF
chmod 755 "$T_DIR/sandbox/apt-get"
ln -s "$FERRY_BIN" "$T_DIR/bin/ferry"
ssh_vault=$(jq -n --argjson p "$port" --arg d "$DS" --arg k "$(cat "$SSHD_DIR/client_key")" \
    '{ip:"127.0.0.1", user:"root", ssh_port:$p, datastore:$d, SSH_PRIVATE_KEY:$k}')
ferry create region eu >/dev/null
ferry create bridge eu prod-bridge >/dev/null
ferry create bridge eu staging-bridge >/dev/null
ferry create team Operations >/dev/null
ferry create team DevOps >/dev/null
ferry create machine Operations prod-bridge all-servers --vault '{"connection":"local"}' >/dev/null
ferry create machine Operations prod-bridge web-server-01 --vault '{"connection":"local"}' >/dev/null
ferry create machine Operations prod-bridge app-server --vault "$ssh_vault" >/dev/null
for m in web-01 web-02 web-03; do
    ferry create machine DevOps staging-bridge staging-$m --vault '{"connection":"local"}' >/dev/null
done
ferry create machine DevOps staging-bridge staging-test-01 --vault "$ssh_vault" >/dev/null

PATH=$T_DIR/sandbox:$PATH start_host
FERRY_CONFIG=$T_DIR/staging.conf "$FERRY_BIN" serve >>"$T_DIR/host-staging.log" 2>&1 &
STAGING_PID=$!
wait_for 10 grep -q "serving bridge" "$T_DIR/host-staging.log" || fail "the staging-bridge host starts"

status_is() { [[ $(task_status "$1") == "$2" ]]; }
wait_st() { wait_for "${3:-60}" status_is "$1" "$2"; }
run_seed() { # run_seed SCRIPT [ARGS]: output in $T_DIR/out
    (cd "$T_DIR" && PATH=$T_DIR/bin:$PATH timeout 60 bash "$SEED/$1" "${@:2}") >"$T_DIR/out" 2>"$T_DIR/err"
    RC=$?
}
item() { # item FUNCTION MACHINE: the newest item's task id
    ferry list queue --output json | jq -r --arg f "$1" --arg m "$2" \
        '[.data[] | select(.function == $f and .machineName == $m)][0].taskId'
}
res() { ferry list queue --task-id "$1" --output json | jq -c '.data[0].responseVault'; }
timeline() { ferry queue trace "$1" --output json | jq -r '.data.timeline[] | "\(.action) \(.details)"'; }

# --- block-01.sh: the system update job ---------------------------------------------------------
n_sim=$(LC_ALL=C apt-get -s -o Debug::NoLocking=1 upgrade --with-new-pkgs 2>/dev/null | grep -c '^Inst ')
status_before=$(md5sum /var/lib/dpkg/status)
run_seed block-01.sh
eq "block-01.sh runs" "$RC" 0
osu=$(item os_update all-servers)
wait_st "$osu" COMPLETED 90
r=$(res "$osu")
eq "its os_update item completes" "$(jq -r .status <<<"$r")" COMPLETED
eq "on apt" "$(jq -r .result.manager <<<"$r")" apt
eq "with the guide's parameters: not a dry run, no reboot" "$(jq -r '[.result.dry_run, .result.reboot] | @tsv' <<<"$r")" $'false\tnot requested'
eq "every package listed has a name and versions" \
    "$(jq -r '[.result.packages[] | select(.name and .new_version and has("old_version"))] | length' <<<"$r")" \
    "$(jq -r .result.count <<<"$r")"
(($(jq -r .result.count <<<"$r") <= n_sim)) && pass "security and critical are a subset of all ($n_sim) updates" ||
    fail "security and critical are a subset of all updates" "$r"
contains "the (sandboxed) apt-get install ran" "$(timeline "$osu")" "apt-get install exited 0"
eq "and this machine is unchanged" "$(md5sum /var/lib/dpkg/status)" "$status_before"
push=$(item repo_push web-server-01)
echo "# block-01.sh's repo_push item (repository plugin): $(ferry list queue --task-id "$push" --output json | jq -r '.data[0].status')"

# --- deployment-pipeline.sh: the smoke tests --------------------------------------------------
run_seed deployment-pipeline.sh staging
eq "deployment-pipeline.sh staging runs" "$RC" 0
dep_id=$(sed -n 's/^Deployment pipeline initiated: //p' "$T_DIR/out")
[[ -n $dep_id ]] && pass "it prints its deployment id" || fail "it prints its deployment id" "$(cat "$T_DIR/out" "$T_DIR/err")"
rt=$(item run_tests staging-test-01)
wait_st "$rt" COMPLETED 60
r=$(res "$rt")
eq "its run_tests item passes on the SSH test machine" "$(jq -r .status <<<"$r")" COMPLETED
eq "with TAP counts" "$(jq -r '.result | [.format, .passed, .failed, .total] | @tsv' <<<"$r")" $'tap\t4\t0\t4'
eq "for the environment and the deployment" "$(jq -r '.result | [.target_env, .deployment_id] | @tsv' <<<"$r")" "staging	$dep_id"
contains "the suite saw both" "$(jq -r .result.output <<<"$r")" "smoke tests against staging (deployment $dep_id)"
for m in web-01 web-02 web-03; do
    t=$(item repo_pull staging-$m)
    echo "# deployment-pipeline.sh's repo_pull on staging-$m (repository plugin): $(ferry list queue --task-id "$t" --output json | jq -r '.data[0].status')"
done

touch "$DS/tests/BROKEN"
run_seed deployment-pipeline.sh staging
rt2=$(item run_tests staging-test-01)
[[ $rt2 != "$rt" ]] && pass "a second pipeline queues a new run" || fail "a second pipeline queues a new run"
wait_st "$rt2" FAILED 60
r=$(res "$rt2")
eq "a failing smoke test fails the item" "$(jq -r '[.status, .result.failed] | @tsv' <<<"$r")" $'FAILED\t1'
wait_for 15 bash -c "grep -ls 'run_tests FAILED' '$rx'/mail-*.txt"
mail=$(cat $(grep -ls 'run_tests FAILED' "$rx"/mail-*.txt 2>/dev/null) /dev/null)
contains "notify_on_failure mails deployments@company.com" "$mail" "TO <deployments@company.com>"
contains "about that run" "$mail" "Subject: [ferry] run_tests FAILED on staging-test-01 ($rt2)"

# --- conditional-backup.sh -----------------------------------------------------------------------
if [[ -e /app ]]; then
    echo "# /app exists on this machine: the check's count is not known in advance"
fi
run_seed conditional-backup.sh
eq "conditional-backup.sh runs" "$RC" 0
cb=$(item conditional_backup app-server)
wait_st "$cb" COMPLETED 30
r=$(res "$cb")
if [[ ! -e /app ]]; then
    eq "no /app, no changes: the if_false branch" "$(jq -r '[.status, .result.value, .result.branch, .result.function] | @tsv' <<<"$r")" \
        $'COMPLETED\t0\tif_false\tlog_message'
    tl=$(timeline "$cb")
    contains "log_message ran through the host" "$tl" "CALL conditional_backup called log_message"
    contains "and its message is in the item's trace" "$tl" "log_message: No changes detected, skipping backup"
fi

# --- custom automation scripts (issue 15, point 4) -------------------------------------------------
# The guide lists "custom automation scripts" among its jobs: items of the script function,
# queued as its one-time jobs are, read back and troubleshot with its own commands, used as a
# conditional job's branch, and under its error-handling keys.
t=$(ferry create queue-item "Operations" app-server prod-bridge \
  --vault '{
    "function": "script",
    "script": "echo \"rotating logs older than $1 days on $(hostname) for $2\"; [ -n \"$DB_PASSWORD\" ]",
    "args": [14, "production"],
    "env": {"DB_PASSWORD": "pw-Kx81-secret"},
    "description": "Custom automation: rotate logs"
  }' \
  --priority 3 --output json | jq -r '.data[0].taskId')
wait_st "$t" COMPLETED 30
eq "a custom script runs on the SSH machine as a one-time job" "$(task_status "$t")" COMPLETED
eq "the guide's 'Get job results' shows its output" \
    "$(ferry list queue --task-id "$t" --output json | jq -r '.data[0].responseVault.result.output')" \
    "rotating logs older than 14 days on $(hostname) for production"
t=$(ferry create queue-item "Operations" app-server prod-bridge \
  --vault '{"function": "script", "script": "echo \"migrating with $DB_PASSWORD\"; echo migration step 3 failed; exit 4",
            "env": {"DB_PASSWORD": "pw-Kx81-secret"}}' --priority 2 --output json | jq -r '.data[0].taskId')
wait_st "$t" FAILED 30
run_seed troubleshoot-job.sh "$t" </dev/null
eq "troubleshoot-job.sh runs on a failed script" "$RC" 0
contains "its execution trace shows the script's output" "$(cat "$T_DIR/out")" "migration step 3 failed"
contains "and why it failed" "$(cat "$T_DIR/out")" "script exited 4: migration step 3 failed"
not_contains "the secret in env is masked there" "$(cat "$T_DIR/out" "$T_DIR/err")" "pw-Kx81-secret"
contains "... as ********" "$(cat "$T_DIR/out")" "migrating with ********"

cb=$(ferry create queue-item "Operations" "app-server" "prod-bridge" \
  --vault '{
    "function": "conditional_backup",
    "check_command": "find /app -newer /var/lib/rediacc/last_backup -type f | wc -l",
    "threshold": 1,
    "if_true": {"function": "repo_push", "repository": "application", "storage": "incremental-backups"},
    "if_false": {"function": "script", "script": "echo \"no changes on $(hostname): cleaning temp files\""}
  }' --priority 4 --output json | jq -r '.data[0].taskId')
if [[ ! -e /app ]]; then
    wait_st "$cb" COMPLETED 30
    eq "a script as the conditional job's branch" "$(res "$cb" | jq -r '[.result.branch, .result.function] | @tsv')" $'if_false\tscript'
    contains "runs through the host; its output is in the item's trace" "$(timeline "$cb")" "no changes on $(hostname): cleaning temp files"
fi

t=$(ferry create queue-item "Operations" app-server prod-bridge --vault '{
  "function": "script",
  "script": "echo \"attempt $FERRY_ATTEMPT: storage busy\"; exit 75",
  "retry_on_exit_codes": [75],
  "max_retries": 2,
  "retry_delay": 1,
  "on_failure": {"notify": ["ops@company.com"]},
  "timeout": 3600
}' --output json | jq -r '.data[0].taskId')
wait_st "$t" FAILED 60
eq "the guide's error-handling keys work with script: retried on exit 75" "$(ferry list queue --task-id "$t" --output json | jq -r '.data[0].retryCount')" 2
eq "its last attempt's output is in the result" "$(res "$t" | jq -r .result.output)" "attempt 3: storage busy"
wait_for 15 bash -c "grep -ls 'script FAILED' '$rx'/mail-*.txt"
contains "on_failure mails ops@company.com" "$(cat $(grep -ls 'script FAILED' "$rx"/mail-*.txt 2>/dev/null) /dev/null)" "TO <ops@company.com>"

stop_host
kill -TERM "$STAGING_PID" 2>/dev/null
wait "$STAGING_PID" 2>/dev/null
STAGING_PID=
t_done
