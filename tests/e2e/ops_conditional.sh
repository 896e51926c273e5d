#!/usr/bin/env bash
# conditional and conditional_backup (issue 7, point 4): check_command on the machine, its
# number against threshold, then if_true or if_false through the host's call service; the
# nested call in the parent's trace; failures of the check and of the branch; the marker;
# the host's cycle detection and depth limit reached through these functions.
. "$(dirname "$0")/../lib.sh"

write_config 'timeouts = { default = 30; grace = 1; };' 'retry = { max_retries = 0; };' \
    'lease = { poll_ms = 100; };' 'workers = { count = 12; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c && chmod 644 "$T_DIR/plugins/misbehave.so"
# A chain of ten distinct functions, fx_d1 calling fx_d2 ... calling fx_d10, to reach the
# host's depth limit (8) without a cycle.
cat >"$T_DIR/chain.c" <<'EOF'
#include <stdio.h>
#include <ferry/plugin.h>
static ferry_result step(ferry_ctx *ctx, int n, json_t **r)
{
    if (n == 10) {
        *r = json_pack("{s:i}", "reached", n);
        return FERRY_OK;
    }
    char next[16];
    snprintf(next, sizeof(next), "fx_d%d", n + 1);
    json_t *params = json_object(), *res = NULL;
    ferry_result code = ctx->host->call(ctx, next, params, &res);
    json_decref(params);
    *r = res ? res : json_pack("{s:i}", "stopped_at", n);
    return code;
}
#define D(n)                                                                               \
    static ferry_result fx_d##n(ferry_ctx *ctx, const json_t *p, json_t **r)               \
    {                                                                                      \
        (void)p;                                                                           \
        return step(ctx, n, r);                                                            \
    }                                                                                      \
    static const ferry_function def_d##n = {FERRY_FUNCTION_INIT, .name = "fx_d" #n,       \
                                            .summary = "chain", .run = fx_d##n};
D(1) D(2) D(3) D(4) D(5) D(6) D(7) D(8) D(9) D(10)
static const ferry_function *const fns[] = {&def_d1, &def_d2, &def_d3, &def_d4, &def_d5,
                                            &def_d6, &def_d7, &def_d8, &def_d9, &def_d10, NULL};
FERRY_PLUGIN(.name = "chain", .version = "1", .summary = "a call chain", .functions = fns)
EOF
san=(); [[ ${SAN:-0} == 1 ]] && san=(-fsanitize=address,undefined)
${CC:-cc} -std=gnu11 -O1 -fPIC -fvisibility=hidden -shared -Wall -Wextra -Werror "${san[@]}" \
    -I"$FERRY_ROOT/sdk/include" -o "$T_DIR/plugins/chain.so" "$T_DIR/chain.c" -ljansson &&
    chmod 644 "$T_DIR/plugins/chain.so" || fail "the chain plugin builds"
setup_local_machine Ops m1
for m in m2 m3 m4 m5 m6 m7 m8 m9 m10 m11 m12; do
    ferry create machine Ops local $m --vault '{"connection":"local"}' >/dev/null
done
start_host

status_is() { [[ $(task_status "$1") == "$2" ]]; }
wait_st() { wait_for "${3:-20}" status_is "$1" "$2"; }
q() { ferry create queue-item Ops "$1" local --vault "$2" --output json | jq -r '.data[0].taskId'; }
res() { ferry list queue --task-id "$1" --output json | jq -c '.data[0].responseVault'; }
timeline() { ferry queue trace "$1" --output json | jq -r '.data.timeline[] | "\(.action) \(.details)"'; }

yes=$(q m1 '{"function":"conditional_backup","check_command":"printf \"  3\\n\"","threshold":1,
  "if_true":{"function":"log_message","message":"backing up"},
  "if_false":{"function":"log_message","message":"No changes detected, skipping backup"}}')
no=$(q m2 '{"function":"conditional_backup","check_command":"echo 0","threshold":1,
  "if_true":{"function":"log_message","message":"backing up"},
  "if_false":{"function":"log_message","message":"No changes detected, skipping backup"}}')
lt=$(q m3 '{"function":"conditional","check_command":"echo 2.5","threshold":10,"operator":"<",
  "if_true":{"function":"hello","name":"small"}}')
none=$(q m4 '{"function":"conditional","check_command":"echo 0","if_true":{"function":"hello"}}')
nan=$(q m5 '{"function":"conditional","check_command":"echo many","if_true":{"function":"hello"}}')
bad=$(q m6 '{"function":"conditional","check_command":"echo 9; exit 2","if_true":{"function":"hello"}}')
boom=$(q m7 '{"function":"conditional","check_command":"echo 1","if_true":{"function":"fx_result","code":"FAIL","message":"backup target full"}}')
shape=$(q m8 '{"function":"conditional","check_command":"echo 1","if_true":{"message":"no function"}}')
badop=$(q m9 '{"function":"conditional","check_command":"echo 1","operator":"=>","if_true":{"function":"hello"}}')
for t in "$yes" "$no" "$lt" "$none"; do wait_st "$t" COMPLETED 20; done
for t in "$nan" "$bad" "$boom" "$shape" "$badop"; do wait_st "$t" FAILED 20; done

r=$(res "$yes")
eq "a count over the threshold takes if_true" "$(jq -r '[.status, .result.condition, .result.branch, .result.function] | @tsv' <<<"$r")" $'COMPLETED\ttrue\tif_true\tlog_message'
eq "the number is read from the check's output" "$(jq -r .result.value <<<"$r")" 3
eq "the branch's result is kept" "$(jq -r .result.result.message <<<"$r")" "backing up"
tl=$(timeline "$yes")
contains "the nested call is in the parent's trace" "$tl" "CALL conditional_backup called log_message"
contains "with its outcome" "$tl" "CALL_DONE log_message OK"
contains "and the callee's log line" "$tl" "[info] log_message: backing up"
r=$(res "$no")
eq "a count under the threshold takes if_false" "$(jq -r '[.result.condition, .result.branch, .result.result.message] | @tsv' <<<"$r")" $'false\tif_false\tNo changes detected, skipping backup'
eq "operator < compares the other way" "$(res "$lt" | jq -r '[.result.condition, .result.result.message] | @tsv')" $'true\thello, small from '"$(hostname)"
eq "a missing branch runs nothing and succeeds" "$(res "$none" | jq -r '[.result.branch, .result.function == null] | @tsv')" $'if_false\ttrue'
contains "a check that prints no number fails" "$(res "$nan" | jq -r .error.message)" "check_command printed 'many"
eq "a failing check fails the job" "$(res "$bad" | jq -r .error.code)" check_failed
r=$(res "$boom")
eq "a failing branch fails the job" "$(jq -r .status <<<"$r")" FAILED
contains "with the callee's reason" "$(jq -r .error.message <<<"$r")" "backup target full"
contains "the failed call is in the trace" "$(timeline "$boom")" "CALL_DONE fx_result FAIL"
eq "a branch without a function is INVALID" "$(res "$shape" | jq -r .error.outcome)" INVALID
eq "an unknown operator is INVALID" "$(res "$badop" | jq -r .error.outcome)" INVALID

# marker: touched after a successful backup, so the next check finds nothing new.
mkdir -p "$T_DIR/app" "$T_DIR/state"
touch -d '1 hour ago' "$T_DIR/state/last_backup"
echo data >"$T_DIR/app/file1"
cb="{\"function\":\"conditional_backup\",\"check_command\":\"find $T_DIR/app -newer $T_DIR/state/last_backup -type f | wc -l\",\"threshold\":1,\"marker\":\"$T_DIR/state/last_backup\",\"if_true\":{\"function\":\"log_message\",\"message\":\"backup\"},\"if_false\":{\"function\":\"log_message\",\"message\":\"skip\"}}"
t1=$(q m10 "$cb")
wait_st "$t1" COMPLETED 20
eq "changed files: the backup branch" "$(res "$t1" | jq -r .result.branch)" if_true
t2=$(q m10 "$cb")
wait_st "$t2" COMPLETED 20
eq "the marker was touched: nothing new next time" "$(res "$t2" | jq -r '[.result.value, .result.branch] | @tsv')" $'0\tif_false'

# Cycles and depth, through the host's call service.
cyc=$(q m11 '{"function":"conditional","check_command":"echo 1","if_true":{"function":"conditional","check_command":"echo 1"}}')
cyc2=$(q m12 '{"function":"conditional","check_command":"echo 1","if_true":{"function":"fx_call","target":"conditional","target_params":{"check_command":"echo 1"}}}')
deep=$(q m1 '{"function":"fx_d1"}')
ok8=$(q m2 '{"function":"fx_d2"}')
wait_st "$cyc" FAILED 20 && wait_st "$cyc2" FAILED 20 && wait_st "$deep" FAILED 30 && wait_st "$ok8" COMPLETED 30
r=$(res "$cyc")
eq "conditional calling itself is refused as a cycle" "$(jq -r .error.code <<<"$r")" call_cycle
eq "a cycle is INVALID" "$(jq -r .error.outcome <<<"$r")" INVALID
contains "the refusal is in the trace" "$(timeline "$cyc")" 'CALL_REFUSED call cycle: ["conditional"] -> conditional'
contains "a cycle through fx_call is refused too" "$(res "$cyc2" | jq -r .error.message)" "call cycle"
contains "and shows the chain" "$(timeline "$cyc2")" 'CALL_REFUSED call cycle: ["conditional","fx_call"] -> conditional'
eq "a chain of 8 nested calls completes" "$(res "$ok8" | jq -r .result.reached)" 10
eq "each nested call is in the root's trace" "$(timeline "$ok8" | grep -c '^CALL ')" 8
r=$(res "$deep")
eq "a ninth nested call is refused" "$(jq -r .error.code <<<"$r")" call_depth
contains "the depth refusal is in the trace" "$(timeline "$deep")" "CALL_REFUSED call to fx_d10 refused: deeper than 8"

stop_host
t_done
