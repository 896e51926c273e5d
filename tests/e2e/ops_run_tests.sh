#!/usr/bin/env bash
# run_tests (issue 7, point 3): a named suite found on the machine (tests/ dir, Ferryfile
# function, plugin config, or the vault's command), run for target_env; pass/fail counts
# from TAP, "N passed, N failed" and JUnit XML (printed or a report file); a failing suite
# fails the job and notify_on_failure is mailed / POSTed by the host; also over SSH.
. "$(dirname "$0")/../lib.sh"

SSHD_DIR=$T_DIR/sshd
port=$("$FERRY_ROOT/tests/helpers/sshd.sh" start "$SSHD_DIR") || { fail "sshd starts" "$port"; t_done; exit 1; }
rx=$T_DIR/rx; mkdir -p "$rx"
python3 "$FERRY_ROOT/tests/helpers/receivers.py" "$rx" & T_EXTRA_PIDS=$!
trap '"$FERRY_ROOT/tests/helpers/sshd.sh" stop "$SSHD_DIR"; t_cleanup' EXIT
wait_for 10 test -s "$rx/ports" || { fail "receivers started"; t_done; exit 1; }
read -r smtp_port http_port <"$rx/ports"

write_config 'timeouts = { default = 30; grace = 1; };' 'retry = { max_retries = 0; };' \
    'lease = { poll_ms = 100; };' 'workers = { count = 8; };' \
    "smtp = { url = \"smtp://127.0.0.1:$smtp_port\"; from = \"ferry@test.local\"; };" \
    'plugin = { ops = { suites = { lint = "echo checking; echo 7 passed, 0 failed"; }; }; };'
install_plugins

# The machine's datastore: tests/smoke.sh (TAP), and a repository with a Ferryfile.
DS=$T_DIR/ds
mkdir -p "$DS/tests" "$DS/repositories/webapp"
cat >"$DS/tests/smoke.sh" <<'EOF'
echo "args=$* env=$FERRY_TARGET_ENV/$TARGET_ENV deployment=$FERRY_DEPLOYMENT_ID suite=$FERRY_TEST_SUITE"
echo "1..3"
echo "ok 1 - home page"
echo "ok 2 - login # SKIP no test user"
echo "ok 3 - health"
EOF
cat >"$DS/repositories/webapp/Ferryfile" <<'EOF'
prep() { :; }
up() { :; }
test_integration() {
    echo "running integration for $1 in $PWD"
    echo "=== 5 passed, 1 failed in 0.12s ==="
    return 1
}
EOF
ferry create region r1 >/dev/null
ferry create bridge r1 local >/dev/null
ferry create team QA >/dev/null
for m in box1 box2 box3 box4 box5 box6 box7; do
    ferry create machine QA local $m --vault "$(jq -n --arg d "$DS" '{connection:"local", datastore:$d}')" >/dev/null
done
ferry create machine QA local remote --vault "$(jq -n --argjson p "$port" --arg d "$DS" \
    --arg k "$(cat "$SSHD_DIR/client_key")" '{ip:"127.0.0.1", user:"root", ssh_port:$p, datastore:$d, SSH_PRIVATE_KEY:$k}')" >/dev/null
start_host

status_is() { [[ $(task_status "$1") == "$2" ]]; }
wait_st() { wait_for "${3:-20}" status_is "$1" "$2"; }
q() { ferry create queue-item QA "$1" local --vault "$2" --output json | jq -r '.data[0].taskId'; }
res() { ferry list queue --task-id "$1" --output json | jq -c '.data[0].responseVault'; }
counts() { res "$1" | jq -r '.result | [.format, .passed, .failed, .skipped, .total] | @tsv'; }

smoke=$(q box1 '{"function":"run_tests","test_suite":"smoke","target_env":"staging","deployment_id":"d-42"}')
integ=$(q box2 '{"function":"run_tests","test_suite":"integration","repository":"webapp","target_env":"qa"}')
junit=$(q box3 "{\"function\":\"run_tests\",\"test_suite\":\"unit\",\"command\":\"printf '<?xml version=\\\"1.0\\\"?>\\\\n<testsuite name=\\\"u\\\" tests=\\\"4\\\" failures=\\\"1\\\" errors=\\\"0\\\" skipped=\\\"1\\\"></testsuite>\\\\n'\"}")
report=$(q box4 '{"function":"run_tests","test_suite":"api","repository":"webapp","command":"printf \"<testsuites tests=\\\"12\\\" failures=\\\"0\\\" errors=\\\"0\\\"><testsuite tests=\\\"12\\\"/></testsuites>\" > report.xml; echo wrote report","junit":"report.xml"}')
lint=$(q box5 '{"function":"run_tests","test_suite":"lint"}')
missing=$(q box6 '{"function":"run_tests","test_suite":"perf"}')
plain=$(q box7 '{"function":"run_tests","test_suite":"e2e","command":"echo something broke; exit 3"}')
for t in "$smoke" "$report" "$lint"; do wait_st "$t" COMPLETED 20; done
for t in "$integ" "$junit" "$missing" "$plain"; do wait_st "$t" FAILED 20; done

r=$(res "$smoke")
eq "tests/smoke.sh in the datastore runs and passes" "$(jq -r .status <<<"$r")" COMPLETED
eq "TAP counts: passed, failed, skipped, total" "$(counts "$smoke")" $'tap\t2\t0\t1\t3'
contains "the suite gets target_env as argument and in the environment" "$(jq -r .result.output <<<"$r")" "args=staging env=staging/staging deployment=d-42 suite=smoke"
eq "target_env and deployment_id are in the result" "$(jq -r '[.result.target_env, .result.deployment_id] | @tsv' <<<"$r")" $'staging\td-42'

r=$(res "$integ")
eq "a Ferryfile test_integration function runs in the repository" "$(jq -r .result.source <<<"$r")" "test_integration in $DS/repositories/webapp/Ferryfile"
contains "with target_env as its argument" "$(jq -r .result.output <<<"$r")" "running integration for qa in $DS/repositories/webapp"
eq "'N passed, N failed' counts" "$(counts "$integ")" $'summary\t5\t1\t0\t6'
eq "a failed test fails the job" "$(jq -r .error.code <<<"$r")" tests_failed
contains "saying how many" "$(jq -r .error.message <<<"$r")" "integration: 1 of 6 tests failed"

eq "JUnit XML in the output is counted" "$(counts "$junit")" $'junit\t2\t1\t1\t4'
eq "a JUnit report file is read" "$(counts "$report")" $'junit\t12\t0\t0\t12'
eq "a suite from the plugin config" "$(counts "$lint")" $'summary\t7\t0\t0\t7'
r=$(res "$missing")
eq "an unknown suite is INVALID" "$(jq -r '[.error.code, .error.outcome] | @tsv' <<<"$r")" $'no_such_suite\tINVALID'
contains "and says where it looked" "$(jq -r .error.message <<<"$r")" "tests/perf(.sh)"
r=$(res "$plain")
eq "a non-zero exit without counts fails" "$(jq -r .error.message <<<"$r")" "test suite e2e exited 3"
eq "and keeps the output" "$(jq -r .result.output <<<"$r")" "something broke"

# notify_on_failure: mailed (and POSTed) by the host when the job fails, not when it passes.
nf=$(q box1 "{\"function\":\"run_tests\",\"test_suite\":\"integration\",\"repository\":\"webapp\",\"notify_on_failure\":[\"deployments@company.com\",\"http://127.0.0.1:$http_port/hook\"]}")
ns=$(q box2 "{\"function\":\"run_tests\",\"test_suite\":\"smoke\",\"notify_on_failure\":\"never@company.com\"}")
wait_st "$nf" FAILED 20 && wait_st "$ns" COMPLETED 20
wait_for 10 test -e "$rx/mail-1.txt" -a -e "$rx/post-1.json"
mail=$(cat "$rx/mail-1.txt" 2>/dev/null)
contains "notify_on_failure mails the address" "$mail" "TO <deployments@company.com>"
contains "about the failed run" "$mail" "Subject: [ferry] run_tests FAILED on box1 ($nf)"
contains "with the counts" "$mail" '"failed": 1'
eq "and POSTs to a URL" "$(jq -r '[.status, .response.result.failed] | @tsv' "$rx/post-1.json" 2>/dev/null)" $'FAILED\t1'
sleep 1
[[ ! -e $rx/mail-2.txt ]] && pass "a passing run notifies nobody" || fail "a passing run notifies nobody" "$(cat "$rx/mail-2.txt")"

# Over SSH, the same suite.
t=$(q remote '{"function":"run_tests","test_suite":"smoke","target_env":"production"}')
wait_st "$t" COMPLETED 20
eq "the suite runs on an SSH machine" "$(counts "$t")" $'tap\t2\t0\t1\t3'
contains "with its target_env" "$(res "$t" | jq -r .result.output)" "env=production/production"

stop_host
t_done
