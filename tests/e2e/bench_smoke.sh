#!/usr/bin/env bash
# `make bench` in miniature (issue 14, point 6): the queue sections run with tiny sizes and
# print their rows and the summary table; the backup benchmark stops the host it started
# (it used to leave `ferry serve` running: $! was a subshell's pid); and the final check
# finds, names and kills a process the bench left behind. Figures are not asserted.
. "$(dirname "$0")/../lib.sh"
unset FERRY_CONFIG
export FERRY_BENCH_MARK=bench-smoke-$$-$RANDOM
build_bench_queue

out=$(BUILD=$BUILD BENCH_DRAIN_SIZES=300 BENCH_WORKERS=2 BENCH_LATENCY_N=20 BENCH_BIG=3000 \
    BENCH_RSS_SECONDS=1 "$FERRY_ROOT/tests/bench/run.sh" drain latency rss 2>&1)
rc=$?
eq "run.sh drain latency rss exits 0" "$rc" 0
check "the drain row counts every item completed, with the host's wall time and VmHWM" \
    grep -Eq "^ferry: completed, host wall s, host VmHWM KiB +300, [0-9.]+, [0-9]+$" <<<"$out"
check "the drain prints jobs/s including start-up and steady" \
    grep -Eq "^ferry 300 items, workers=2, pipeline=[0-9]+: incl. start-up / steady \(jobs/s\) +[0-9]+ / [0-9]+$" <<<"$out"
check "the latency row has p50 / p90 / p99" grep -Eq "p50 / p90 / p99 \(ms\) +[0-9.]+ / [0-9.]+ / [0-9.]+$" <<<"$out"
check "the idle RSS row has VmRSS / VmHWM" grep -Eq "idle host after start-up: VmRSS / VmHWM \(KiB\) +[0-9]+ / [0-9]+$" <<<"$out"
contains "the RSS section ran with the big queue" "$out" "pending when the host started / after 1 s"
contains "the summary table closes the run" "$out" "== summary: issue 14 targets"
check "the summary has the drain against its target" grep -Eq "^drain 300 SQLite w=2 p=[0-9]+, steady \(jobs/s\) .*>= 25000, > peer +(PASS|MISS)$" <<<"$out"
contains "nothing was left running" "$out" "no process left behind"
err=$("$FERRY_ROOT/tests/bench/run.sh" nosuch 2>&1 >/dev/null)
eq "an unknown section is refused with exit 2" "$?" 2
contains "and named" "$err" "run.sh: unknown section 'nosuch' (sections: enqueue cli graphile drain latency list rss pg schedule backup web paint queue)"

# The backup benchmark on a tiny tree, ferry only: its host must be gone when it returns.
BUILD=$BUILD BENCH_DIR=$T_DIR/backup BENCH_MB=2 BENCH_TOOLS=ferry \
    "$FERRY_ROOT/tests/bench/backup.sh" >"$T_DIR/backup.log" 2>&1
eq "backup.sh exits 0" "$?" 0
check "backup.sh measured ferry's three phases" grep -Eq "^ferry +restore " "$T_DIR/backup.log"
left=$("$FERRY_ROOT/tests/bench/leftovers.sh")
eq "backup.sh left no ferry serve behind" "$left" "no process left behind"

# A host nobody stopped: the final check names it, kills it and says FAIL.
write_config
install_plugins
ferry create region r >/dev/null && ferry create bridge r local >/dev/null
start_host || fail "the stray host starts"
stray=$HOST_PID
left=$("$FERRY_ROOT/tests/bench/leftovers.sh")
eq "the final check fails on a leftover process" "$?" 1
contains "it names the process" "$left" "leftover: pid $stray "
contains "it says FAIL" "$left" "FAIL: the bench left 1 process(es) running (killed now): $stray"
wait "$stray" 2>/dev/null
HOST_PID=
check "and the process is gone" bash -c "! kill -0 $stray 2>/dev/null"
t_done
