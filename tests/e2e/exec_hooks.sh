#!/usr/bin/env bash
# pre_hook and post_hook (issue 7, point 6): host-owned vault keys, run on the machine around
# any function (locally and over SSH); a failing pre_hook fails the job before the function
# runs, a failing post_hook fails a job that succeeded; both outputs are in the trace; the
# hooks belong to the item, not to the functions it calls.
. "$(dirname "$0")/../lib.sh"

SSHD_DIR=$T_DIR/sshd
port=$("$FERRY_ROOT/tests/helpers/sshd.sh" start "$SSHD_DIR") || { fail "sshd starts" "$port"; t_done; exit 1; }
trap '"$FERRY_ROOT/tests/helpers/sshd.sh" stop "$SSHD_DIR"; t_cleanup' EXIT

write_config 'timeouts = { default = 30; grace = 1; };' 'retry = { max_retries = 0; };' \
    'lease = { poll_ms = 100; };' 'workers = { count = 4; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c && chmod 644 "$T_DIR/plugins/misbehave.so"
setup_local_machine Ops here
DS=$T_DIR/ds
mkdir -p "$DS/repositories/webapp"
printf '#!/bin/sh\necho "stopping services in $PWD"\n' >"$DS/repositories/webapp/stop_services.sh"
chmod +x "$DS/repositories/webapp/stop_services.sh"
ferry create machine Ops local remote --vault "$(jq -n --argjson p "$port" --arg d "$DS" \
    --arg k "$(cat "$SSHD_DIR/client_key")" '{ip:"127.0.0.1", user:"root", ssh_port:$p, datastore:$d, SSH_PRIVATE_KEY:$k}')" >/dev/null
start_host

status_is() { [[ $(task_status "$1") == "$2" ]]; }
wait_st() { wait_for "${3:-20}" status_is "$1" "$2"; }
q() { ferry create queue-item Ops "$1" local --vault "$2" --output json | jq -r '.data[0].taskId'; }
res() { ferry list queue --task-id "$1" --output json | jq -c '.data[0].responseVault'; }
logs() { ferry queue trace "$1" --output json | jq -r '.data.timeline[] | select(.action=="LOG") | .details'; }

# Both hooks around hello, on the SSH machine: their output in the trace, in order.
t=$(q remote '{"function":"hello","pre_hook":"echo pre-out $FERRY_HOOK $FERRY_FUNCTION; hostname","post_hook":"echo post-out $FERRY_OUTCOME"}')
wait_st "$t" COMPLETED 20
eq "hello with hooks on the SSH machine completes" "$(task_status "$t")" COMPLETED
l=$(logs "$t")
contains "the pre_hook's exit is in the trace" "$l" 'pre_hook `echo pre-out $FERRY_HOOK $FERRY_FUNCTION; hostname` exited 0'
contains "with its output" "$l" "pre-out pre_hook hello"$'\n'"$(hostname)"
contains "the post_hook's output, which sees the outcome" "$l" "post-out OK"
at() { grep -n -m1 -F -- "$1" <<<"$l" | cut -d: -f1; }
p1=$(at "pre-out pre_hook"); p2=$(at "hello from"); p3=$(at "post-out OK")
[[ -n $p1 && -n $p2 && -n $p3 ]] && ((p1 < p2 && p2 < p3)) &&
    pass "pre_hook, then the function, then post_hook" || fail "pre_hook, then the function, then post_hook" "$l"

# A failing pre_hook: the function never runs.
rec=$T_DIR/record.log
t=$(q here "{\"function\":\"fx_record\",\"file\":\"$rec\",\"label\":\"ran\",\"pre_hook\":\"echo not today; exit 4\",\"post_hook\":\"echo post-ran >>$T_DIR/post.log\"}")
wait_st "$t" FAILED 20
r=$(res "$t")
eq "a failing pre_hook fails the job" "$(jq -r .error.code <<<"$r")" pre_hook_failed
contains "its message names the hook and exit" "$(jq -r .error.message <<<"$r")" 'pre_hook `echo not today; exit 4` exited 4'
[[ ! -e $rec ]] && pass "the function did not run" || fail "the function did not run" "$(cat "$rec")"
[[ ! -e $T_DIR/post.log ]] && pass "nor the post_hook" || fail "nor the post_hook"
contains "the pre_hook's output is in the trace" "$(logs "$t")" "not today"

# A failing post_hook fails a job that succeeded; the function did run.
t=$(q here "{\"function\":\"fx_record\",\"file\":\"$rec\",\"label\":\"ran\",\"post_hook\":\"echo cannot start; exit 5\"}")
wait_st "$t" FAILED 20
eq "a failing post_hook fails the job" "$(res "$t" | jq -r .error.code)" post_hook_failed
[[ -s $rec ]] && pass "after the function ran" || fail "after the function ran"

# A failing function keeps its own error; the post_hook still runs and is told.
t=$(q here '{"function":"fx_result","code":"FAIL","message":"pull failed","post_hook":"echo outcome=$FERRY_OUTCOME"}')
wait_st "$t" FAILED 20
eq "the function's error stays the job's error" "$(res "$t" | jq -r .error.message)" "pull failed"
contains "the post_hook ran after the failure and saw it" "$(logs "$t")" "outcome=FAIL"

# The seed's form: "pre_hook": "stop_services.sh" runs in the repository named by the vault.
t=$(q remote '{"function":"log_message","message":"deploying","repository":"webapp","pre_hook":"stop_services.sh","post_hook":"pwd"}')
wait_st "$t" COMPLETED 20
l=$(logs "$t")
contains "a hook finds a script in the repository's directory" "$l" "stopping services in $DS/repositories/webapp"
contains "and runs there" "$l" $'output:\n'"$DS/repositories/webapp"

# Nested calls do not run the item's hooks again.
t=$(q here '{"function":"conditional","check_command":"echo 1","if_true":{"function":"log_message","message":"inner"},"pre_hook":"echo HOOKED"}')
wait_st "$t" COMPLETED 20
eq "hooks run once per item, not per nested call" "$(logs "$t" | grep -c 'HOOKED$')" 1

# The hooks are the item's: the next item on the same machine (started within the host's
# one-second cache of machine facts) runs without them.
a=$(q here '{"function":"log_message","message":"first","pre_hook":"echo FIRST-ITEM-HOOK"}')
b=$(q here '{"function":"log_message","message":"second"}')
wait_st "$a" COMPLETED 20 && wait_st "$b" COMPLETED 20
contains "an item's hook runs for it" "$(logs "$a")" "FIRST-ITEM-HOOK"
not_contains "and not for the next item on the machine" "$(logs "$b")" "FIRST-ITEM-HOOK"

# A hook that cannot reach its machine is an exec failure, retried like one.
ferry create machine Ops local gone --vault '{"ip":"127.0.0.1","user":"root","ssh_port":1}' >/dev/null
t=$(q gone '{"function":"log_message","message":"never","pre_hook":"true"}')
wait_st "$t" FAILED 20
r=$(res "$t")
eq "an unreachable machine fails the pre_hook as exec_failed" "$(jq -r .error.code <<<"$r")" exec_failed
eq "as a transient outcome (RETRY, retries used up)" "$(jq -r .error.outcome <<<"$r")" RETRY

stop_host
t_done
