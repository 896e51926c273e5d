#!/usr/bin/env bash
# Outcomes say what happened: the worker's exit status carries no meaning a plugin can fake
# (exit(4) is not "plugin file changed", a closed fd 3 breaks nothing), a plugin's stderr is
# in its trace (escaped, bounded) and not in the host log, bad UTF-8 is replaced instead of
# dropping the error, error messages are capped at one size everywhere, FAIL with code
# "unavailable" is a FAIL, and a COMPLETED item keeps no stale failure reason or progress.
. "$(dirname "$0")/../lib.sh"

write_config 'workers = { count = 3; };' 'timeouts = { default = 30; grace = 2; };' \
    'retry = { max_retries = 0; delay = 1; jitter = 0.0; };' 'lease = { poll_ms = 200; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops m1
for m in m2 m3 m4 m5 m6 m7 m8 m9; do ferry create machine Ops local $m --vault '{"connection":"local"}' >/dev/null; done
start_host
q() { ferry create queue-item Ops "$1" local --vault "$2" --output json | jq -r '.data[0].taskId'; }
row() { ferry list queue --task-id "$1" --output json | jq -r ".data[0]$2"; }
details() { ferry queue trace "$1" --output json | jq -r '.data.timeline[].details | strings'; }

# A function that calls exit(4): the status used to mean "plugin file changed" (and a retry).
ex=$(q m1 '{"function":"fx_exit_with","status":4}')
wait_status "$ex" FAILED 15
eq "exit(4) is reported as the function's exit" "$(row "$ex" .lastFailureReason)" \
    "the function called exit(4), which ended its worker"
eq "its outcome is CRASHED" "$(row "$ex" .responseVault.error.outcome)" CRASHED
eq "it is not taken for a changed plugin and retried" "$(row "$ex" .retryCount)" 0

# A function that closes fd 3 (where the host's socket used to be) and returns OK.
c3=$(q m2 '{"function":"fx_close3"}')
wait_status "$c3" COMPLETED 15
eq "closing fd 3 breaks nothing: COMPLETED" "$(task_status "$c3")" COMPLETED
eq "with its result" "$(row "$c3" .responseVault.result.closed)" true

# stderr goes into the item's trace, escaped and bounded, not into the host log.
se=$(q m3 '{"function":"fx_stderr","lines":200}')
wait_status "$se" COMPLETED 15
tr=$(details "$se")
contains "stderr is in the trace, control characters escaped" "$tr" \
    '[stderr] fx_stderr says \x1b[31mred\x07 and '$'\xef\xbf\xbd\xef\xbf\xbd'' bytes'
contains "a flood of stderr is cut, and the trace says how much was not kept" "$tr" "more bytes of stderr not kept"
kept=$(ferry queue trace "$se" --output json | jq '[.data.timeline[] | select(.action=="LOG") | .details | strings | select(startswith("[stderr] filler"))] | length')
((kept > 10 && kept < 200)) && pass "the trace keeps a bounded part ($kept of 200 lines)" || fail "the trace keeps a bounded part" "kept=$kept"
not_contains "nothing raw from the plugin's stderr reaches the host log" "$(cat "$T_DIR/host.log")" $'\x1b[31m'
# Sanitizer builds copy workers' stderr (escaped) to the host log, where sanitizer reports
# are looked for; other builds keep it out entirely.
[[ ${SAN:-0} == 1 ]] ||
    not_contains "the host log does not carry the plugin's stderr" "$(cat "$T_DIR/host.log")" "fx_stderr says"

# Invalid UTF-8 in set_error and log: replaced with U+FFFD, the code, message and line kept.
bu=$(q m4 '{"function":"fx_badutf8"}')
wait_status "$bu" FAILED 15
R=$'\xef\xbf\xbd'
eq "the message is kept, bad bytes replaced" "$(row "$bu" .lastFailureReason)" "message with bad bytes $R here $R end"
eq "the response vault says the same" "$(row "$bu" .responseVault.error.message)" "message with bad bytes $R here $R end"
eq "the code is kept" "$(row "$bu" .responseVault.error.code)" "bad${R}code"
contains "the log line is kept" "$(details "$bu")" "log with bad bytes $R( and $R end"

# One cap for error messages: lastFailureReason and responseVault.error agree.
big=$(q m5 '{"function":"fx_badutf8","size":10000}')
wait_status "$big" FAILED 15
r1=$(row "$big" .lastFailureReason); r2=$(row "$big" .responseVault.error.message)
eq "lastFailureReason and responseVault.error.message are the same text" "$r1" "$r2"
n=$(printf '%s' "$r1" | wc -c)
((n <= 4096 && n > 4000)) && pass "capped at 4096 bytes ($n)" || fail "capped at 4096 bytes" "length $n"
[[ $r1 == *… ]] && pass "the cut is marked with …" || fail "the cut is marked with …" "${r1: -10}"

# FERRY_FAIL with code "unavailable" is a FAIL (plugin.h): never retried.
un=$(q m6 '{"function":"fx_fail_code","code":"unavailable","max_retries":2,"retry_delay":1}')
wait_status "$un" FAILED 15
eq "FAIL with code unavailable: outcome FAIL" "$(row "$un" .responseVault.error.outcome)" FAIL
eq "and it is not retried" "$(row "$un" .retryCount)" 0

# Progress never goes back within an attempt: 90 then 3 stays 90.
pr=$(q m7 '{"function":"fx_progress","percents":[40,90,3],"hold":4}')
at_step3() { [[ $(row "$pr" .progress.message) == "step 3" ]]; }
wait_for 15 at_step3 || fail "progress reaches step 3" "$(row "$pr" .progress)"
eq "progress does not go backwards (90 then 3)" "$(row "$pr" .progress.percent)" 90
wait_status "$pr" COMPLETED 15
eq "a COMPLETED item keeps no progress" "$(row "$pr" .progress)" null

# A COMPLETED item keeps no stale failure reason from an earlier attempt.
fl=$(q m8 "{\"function\":\"fx_flaky\",\"fail_first\":\"$T_DIR/flaky\",\"max_retries\":1,\"retry_delay\":1}")
wait_status "$fl" COMPLETED 20
eq "it was retried once" "$(row "$fl" .retryCount)" 1
eq "COMPLETED after a retry: no lastFailureReason" "$(row "$fl" .lastFailureReason)" null
eq "and no progress from the failed attempt" "$(row "$fl" .progress)" null
contains "the trace still has the failed attempt" "$(details "$fl")" "first attempt fails"

# The trace actions docs/cli.md names for the host are ones the host writes.
doc=$(sed -n '/^Timeline actions written by the store/,/is a string or an object/p' "$FERRY_ROOT/docs/cli.md" | tr '\n' ' ')
missing=
for a in $(grep -oE '\b[A-Z][A-Z_]{3,}\b' <<<"$doc" | sort -u); do
    grep -rqF --include="*.c" "\"$a\"" "$FERRY_ROOT"/host || missing="$missing $a"
done
eq "every trace action docs/cli.md lists is written somewhere" "$missing" ""
acts=$(for t in "$ex" "$c3" "$se" "$bu" "$un" "$pr" "$fl"; do ferry queue trace "$t" --output json | jq -r '.data.timeline[].action'; done | sort -u)
undoc=
for a in $acts; do [[ " $doc " == *" $a"[\ ,\(.]* ]] || undoc="$undoc $a"; done
eq "every action in these traces is documented" "$undoc" ""

# A plugin file replaced under a worker that loaded it: the worker says so in the protocol
# (the attempt never started there: a done "skipped" with "retire"), where it used to exit
# with status 4, a status any plugin could use, and the attempt runs in a fresh worker
# without using up a retry (it used to end UNAVAILABLE and be retried). The file changes
# through a hard link elsewhere, which the plugin directory's inotify watch does not see, so
# a worker is likely to meet the change before the periodic rescan replaces it; the test
# tries a few times.
mkdir -p "$T_DIR/elsewhere"
ln "$T_DIR/plugins/misbehave.so" "$T_DIR/elsewhere/link.so"
seen=
for try in 1 2 3 4 5; do
    warm=$(q m9 '{"function":"fx_noop"}')
    wait_status "$warm" COMPLETED 15
    sleep 2.5 # past the periodic rescan, so the next one is ~2 s away
    touch -m -d "@$((1700000000 + try))" "$T_DIR/elsewhere/link.so"
    moved=$(grep -c "stale copy of a plugin changed on disk" "$T_DIR/host.log")
    ch=$(q m9 '{"function":"fx_noop","max_retries":1,"retry_delay":1}')
    wait_status "$ch" COMPLETED 20
    if (($(grep -c "stale copy of a plugin changed on disk" "$T_DIR/host.log") > moved)); then
        seen=$ch
        break
    fi
done
if [[ -n $seen ]]; then
    pass "a changed plugin file is said in the protocol: the stale worker hands the attempt back"
    eq "... which completes in a fresh worker without a retry" "$(row "$seen" .retryCount)" 0
    not_contains "... and no UNAVAILABLE attempt is in its trace" "$(details "$seen")" UNAVAILABLE
else
    pass "# SKIP the periodic rescan won the race five times; nothing to check"
fi

# A plugin that writes on stderr while it loads (its probe's init()): the host log gets one
# escaped warning, never the raw bytes, which could forge log lines of their own.
cat >"$T_DIR/loud.c" <<'SRC'
#include <stdio.h>
#include <ferry/plugin.h>
static int loud_init(const ferry_host *host, const json_t *config, char *err, size_t errlen)
{
    (void)host; (void)config; (void)err; (void)errlen;
    fprintf(stderr, "\033[31mloud init\n2026-01-01T00:00:00Z ERROR forged host line\n");
    return 0;
}
static ferry_result loud_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    (void)ctx; (void)params; (void)result;
    return FERRY_OK;
}
static const ferry_function loud_fn = {FERRY_FUNCTION_INIT, .name = "fx_loud_noop",
                                       .summary = "nothing", .run = loud_run};
static const ferry_function *const functions[] = {&loud_fn, NULL};
FERRY_PLUGIN(.name = "loud", .version = "1", .summary = "writes on stderr in init",
             .functions = functions, .init = loud_init)
SRC
san=(); [[ ${SAN:-0} == 1 ]] && san=(-fsanitize=address,undefined)
${CC:-cc} -std=gnu11 -fPIC -shared -fvisibility=hidden "${san[@]}" -I"$FERRY_ROOT/sdk/include" \
    -o "$T_DIR/loud.so.tmp" "$T_DIR/loud.c" -ljansson && mv "$T_DIR/loud.so.tmp" "$T_DIR/plugins/loud.so"
if wait_for 15 grep -q "wrote on stderr while loading" "$T_DIR/host.log"; then
    contains "a loading plugin's stderr is in the host log, escaped" "$(cat "$T_DIR/host.log")" \
        'loud.so wrote on stderr while loading: \x1b[31mloud init\x0a2026-01-01T00:00:00Z ERROR forged host line\x0a'
else
    fail "a loading plugin's stderr is in the host log, escaped" "no such line in host.log"
fi
if grep -q '^2026-01-01T00:00:00Z ERROR forged' "$T_DIR/host.log"; then
    fail "no log line is forged by it" "a raw line reached host.log"
else
    pass "no log line is forged by it"
fi
not_contains "no raw escape byte from it either" "$(grep -a 'loud' "$T_DIR/host.log")" $'\x1b[31m'

kill -0 "$HOST_PID" 2>/dev/null && pass "the host survived them all" || fail "the host survived them all"
stop_host
not_contains "no sanitizer report" "$(cat "$T_DIR/host.log")" "runtime error:"
t_done
