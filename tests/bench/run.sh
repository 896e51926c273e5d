#!/usr/bin/env bash
# make bench: throughput, latency and memory of the queue and the host beside graphile-worker,
# PostgreSQL, the command line, schedules and backups, then a summary table against the
# targets of issue 14. Figures are printed, never asserted: a MISS does not fail the run.
#
#   tests/bench/run.sh [SECTION...]       (BUILD=build by default; run from anywhere)
#   BENCH_ONLY="SECTION..." make bench    the same through make
#
# Sections, in the order they run: enqueue, cli, graphile and drain (case by case, side by
# side), latency, list, rss, pg, schedule, backup, web, paint. "queue" stands for graphile drain latency rss (the host's hot path beside
# its peer); no section named runs them all. Sizes: BENCH_DRAIN_SIZES ("10000 100000"),
# BENCH_WORKERS ("2 4"), BENCH_BIG (1000000, the list and RSS queue), BENCH_LATENCY_N (1000),
# BENCH_MB / BENCH_REMOTE_MB (backup trees), BENCH_PIPELINE (32: the drains' workers.pipeline,
# attempts queued per worker; 0 for the default configuration). See docs/benchmarks.md.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
PIPELINE=${BENCH_PIPELINE:-32}
W=$(mktemp -d /tmp/ferry-bench.XXXXXX)
export BENCH_SUMMARY=$W/summary
. tests/bench/lib.sh
: >"$BENCH_SUMMARY"
HOST=
PG_URL=
cleanup() {
    stop_pid "$HOST"
    [[ -n $PG_URL ]] && tests/bench/pg_env.sh stop "$PG_URL" >/dev/null 2>&1
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ALL="enqueue cli graphile drain latency list rss pg schedule backup web"
ALL="$ALL paint" # the web dashboard's first paint with BENCH_BIG items (tests/bench/web_paint.sh)
want=" ${*:-${BENCH_ONLY:-$ALL}} "
want=${want//,/ }
want=${want// queue / graphile drain latency rss }
for s in $want; do
    [[ " $ALL " == *" $s "* ]] || { echo "run.sh: unknown section '$s' (sections: $ALL queue)" >&2; exit 2; }
done
on() { [[ $want == *" $1 "* ]]; }

DRAIN_SIZES=${BENCH_DRAIN_SIZES:-10000 100000}
WORKERS=${BENCH_WORKERS:-2 4}
BIG=${BENCH_BIG:-1000000}
LAT_N=${BENCH_LATENCY_N:-1000}
RSS_S=${BENCH_RSS_SECONDS:-10}
T_START=$(date +%s)

echo "ferry benchmarks on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), $(git -C "$ROOT" describe --always --dirty 2>/dev/null);" \
    "load average $(cut -d' ' -f1-3 /proc/loadavg) (the machine may be shared: figures vary)"
echo

if on enqueue; then
    echo "== enqueue through the store API (SQLite, synchronous=full) =="
    setup enq
    row "store API, one commit per item, 5000 items (items/s)" "$("$BQ" enqueue "$DB" 5000)"
    row "store API, batches of 1000, 100000 items (items/s)" "$("$BQ" fill "$DB" 100000 fx_noop 100)"
    echo
fi

if on cli; then
    echo "== command line (SQLite) =="
    setup cli
    "$FERRY" create queue-item Ops m1 local --vault '{"function":"fx_noop"}' >/dev/null # warm
    # CPU (user + system of the processes, from bash's time) beside the wall clock: on a
    # shared machine the wall clock counts the other jobs too.
    TIMEFORMAT='%3U %3S'
    t0=$(now_ns)
    # (ferry's own stderr, the no-host warning, goes to a file: in cpu1 it hid the figure)
    { time (for i in $(seq 1 200); do "$FERRY" create queue-item Ops m1 local --vault '{"function":"fx_noop"}' >/dev/null 2>>"$D/warn1"; done); } 2>"$D/cpu1"
    one_ms=$(awk -v ns="$(($(now_ns) - t0))" 'BEGIN { printf "%.2f", ns / 200 / 1e6 }')
    row "create queue-item, one process per item, mean of 200 (ms)" "$one_ms"
    row "... CPU per item, user + system (ms)" "$(awk '{ printf "%.2f", ($1 + $2) * 1000 / 200 }' "$D/cpu1")"
    summary "create queue-item (ms, mean of 200)" "$one_ms" "-" "-" "<= 3" "$(verdict "$one_ms" "<=" 3)"
    t0=$(now_ns)
    for p in 1 2 3 4; do
        (for i in $(seq 1 100); do "$FERRY" create queue-item Ops "m$p" local --vault '{"function":"fx_noop"}' >/dev/null 2>>"$D/warn$p"; done) &
    done
    wait
    row "create queue-item, 4 processes x 100 items (items/s)" "$(rate 400 $(($(now_ns) - t0)))"
    # The bulk form: one JSON object per line on stdin.
    if [[ $("$FERRY" create queue-items --help 2>&1 </dev/null) == *"unknown command"* ]]; then
        bulk="n/a (command missing)"
    else
        awk 'BEGIN { for (i = 0; i < 100000; i++)
            printf "{\"team\":\"Ops\",\"machine\":\"m%d\",\"bridge\":\"local\",\"vault\":{\"function\":\"fx_noop\"},\"priority\":%d}\n", i % 100, i % 5 + 1 }' >"$D/items.jsonl"
        before=$(sql "SELECT count(*) FROM queue_items")
        t0=$(now_ns)
        { time "$FERRY" create queue-items <"$D/items.jsonl" >"$D/bulk.out" 2>&1; } 2>"$D/cpu2"
        rc=$?
        ns=$(($(now_ns) - t0))
        added=$(($(sql "SELECT count(*) FROM queue_items") - before))
        if [[ $rc -eq 0 && $added -eq 100000 ]]; then
            bulk=$(rate 100000 "$ns")
        else
            bulk="failed (exit $rc, $added items added)"
            head -3 "$D/bulk.out" >&2
        fi
    fi
    row "create queue-items, 100000 JSON lines on stdin (items/s)" "$bulk"
    [[ -s $D/cpu2 ]] && row "... CPU, user + system (s; items per CPU second)" \
        "$(awk '{ s = $1 + $2; printf "%.2f; %.0f", s, (s > 0 ? 100000 / s : 0) }' "$D/cpu2")"
    summary "create queue-items, 100k lines (items/s)" "${bulk%% *}" "-" "-" ">= 50000" "$(verdict "$bulk" ">=" 50000)"
    unset TIMEFORMAT
    echo
fi

# The drains, ferry (SQLite) and graphile-worker (PostgreSQL) case by case, so that both
# run under the same conditions of this shared machine.
# gw_case N C: graphile-worker drains N jobs at concurrency C; prints its rows and keeps
# "incl steady" in $W/gw_N_C for the ratios.
gw_case() {
    local n=$1 c=$2 db enq total steady rss incl st
    db=$(tests/bench/pg_env.sh createdb "$PG_URL" "gw_${n}_$c")
    if read -r enq total steady rss < <(tests/bench/graphile.sh run "$db" "$n" "$c" 2>"$W/gw.err"); then
        incl=$(awk -v n="$n" -v s="$total" 'BEGIN { printf "%.0f", n / s }')
        st=$(awk -v n="$n" -v s="$steady" 'BEGIN { printf "%.0f", n / s }')
        echo "$incl $st" >"$W/gw_${n}_$c"
        row "graphile $n jobs, concurrency $c: incl. start-up / steady (jobs/s)" "$incl / $st"
        row "graphile: bulk addJobs (jobs/s), RSS (KiB)" "$enq, $rss"
    else
        row "graphile $n jobs, concurrency $c" "failed"
        tail -3 "$W/gw.err"
    fi
}
# ferry_case N C: a host with C workers drains N queued no-op items (serve --drain).
ferry_case() {
    local n=$1 c=$2 limit t0 t1 wall hwm rc done first last incl st peer k f p r v
    setup "drain_${n}_$c" "workers = { count = $c; prefork = $c; pipeline = $PIPELINE; };"
    "$BQ" fill "$DB" "$n" fx_noop 100 >/dev/null
    limit=$((60 + n / 200))
    t0=$(now_ms)
    read -r wall hwm _ rc < <("$BQ" run "$limit" "$FERRY" serve --drain 2>"$D/host.log")
    t1=$(now_ms)
    [[ $rc == 0 ]] || { echo "(the host exited with status $rc; its log ends with:)"; tail -3 "$D/host.log"; }
    read -r done first last < <(sqlite3 -readonly -separator ' ' "$DB" \
        "SELECT count(*), min(started_at), max(finished_at) FROM queue_items WHERE status = 'COMPLETED'" 2>/dev/null || echo "? ? ?")
    [[ $last =~ ^[0-9]+$ ]] || last=$t1
    incl=$(awk -v n="$done" -v ms="$((last - t0))" 'BEGIN { printf "%.0f", (ms > 0 ? n * 1000 / ms : 0) }')
    st=$(awk -v n="$done" -v a="$first" -v b="$last" 'BEGIN { if (a ~ /^[0-9]+$/ && b > a) printf "%.0f", n * 1000 / (b - a); else print "?" }')
    row "ferry $n items, workers=$c, pipeline=$PIPELINE: incl. start-up / steady (jobs/s)" "$incl / $st"
    row "ferry: completed, host wall s, host VmHWM KiB" "$done, $wall, $hwm"
    [[ $done == "$n" ]] || echo "(only $done of $n items COMPLETED within $limit s)"
    peer=$(cat "$W/gw_${n}_$c" 2>/dev/null || echo "- -")
    for k in 1 2; do
        f=$([[ $k == 1 ]] && echo "$incl" || echo "$st")
        p=$(cut -d' ' -f$k <<<"$peer")
        r=$(ratio "$f" "$p")
        v=$(verdict "$f" ">=" 25000)
        [[ $v == PASS && $p =~ ^[0-9]+$ && $(verdict "$r" ">=" 1.0001) != PASS ]] && v=MISS
        summary "drain $n SQLite w=$c p=$PIPELINE, $([[ $k == 1 ]] && echo incl. start-up || echo steady) (jobs/s)" \
            "$f" "$p" "$r" ">= 25000, > peer" "$v"
    done
    rm -rf "$D"
}
if on graphile || on drain; then
    echo "== drain queued no-op items: ferry (SQLite, 100 machines, serve --drain) and graphile-worker $(tests/bench/graphile.sh version) (PostgreSQL 15, fsync on) =="
    gw=0
    if on graphile; then
        if ! tests/bench/graphile.sh install >"$W/npm.log" 2>&1; then
            echo "(graphile-worker could not be installed:)"
            tail -5 "$W/npm.log"
        elif ! PG_URL=$(tests/bench/pg_env.sh start 2>"$W/pg.log"); then
            PG_URL=
            echo "(no PostgreSQL server for graphile-worker: $(tail -1 "$W/pg.log"))"
        else
            gw=1
        fi
    fi
    for n in $DRAIN_SIZES; do
        for c in $WORKERS; do
            ((gw)) && gw_case "$n" "$c"
            on drain && ferry_case "$n" "$c"
        done
    done
    if [[ -n $PG_URL ]]; then
        tests/bench/pg_env.sh stop "$PG_URL" >/dev/null 2>&1
        PG_URL=
    fi
    echo
fi

if on latency; then
    echo "== enqueue-to-start latency on an idle host ($LAT_N items, one at a time, SQLite) =="
    setup lat
    "$FERRY" serve >"$D/host.log" 2>&1 &
    HOST=$!
    if read -r p50 p90 p99 rss hwm < <("$BQ" latency "$DB" "$LAT_N" "$D/stamps" "$HOST"); then
        row "p50 / p90 / p99 (ms)" "$p50 / $p90 / $p99"
        row "idle host after start-up: VmRSS / VmHWM (KiB)" "$rss / $hwm"
        sleep 1
        row "idle host after the $LAT_N items: VmRSS / VmHWM (KiB)" "$(status_kib "$HOST" VmRSS) / $(status_kib "$HOST" VmHWM)"
        row "its worker processes together, VmRSS (KiB)" "$(children_rss "$HOST")"
        summary "enqueue-to-start p50 (ms)" "$p50" "-" "-" "<= 1" "$(verdict "$p50" "<=" 1)"
        summary "enqueue-to-start p99 (ms)" "$p99" "-" "-" "<= 3" "$(verdict "$p99" "<=" 3)"
        mib=$(awk -v k="$hwm" 'BEGIN { if (k ~ /^[0-9]+$/) printf "%.1f", k / 1024; else print "?" }')
        summary "host RSS idle (MiB, VmHWM)" "$mib" "-" "-" "<= 10" "$(verdict "$mib" "<=" 10)"
    else
        row "latency" "failed"
    fi
    stop_pid "$HOST"
    HOST=
    echo
fi

# One store with $BIG queued items serves the list rows and then the RSS row.
if on list || on rss; then
    setup big
    echo "# queueing $BIG items (SQL copies of one item made by the store API)" >&2
    if ! fill=$(BQ=$BQ tests/bench/fill_sql.sh "$DB" "$BIG" fx_noop 100 2>"$W/fill.err"); then
        # A store whose table the copy does not fit: the store API, slower but always right.
        echo "# the SQL copy failed ($(tail -1 "$W/fill.err")); queueing through the store API" >&2
        rm -rf "$D" && setup big
        fill="$("$BQ" fill "$DB" "$BIG" fx_noop 100) (store API)"
    fi
    if on list; then
        echo "== list queue with $BIG items =="
        row "queueing $BIG items (items/s)" "$fill"
        for args in "--status PENDING" "--machine m7" "--status FAILED" "--task-id 0"; do
            times=$(for k in 1 2 3; do "$BQ" run 60 "$FERRY" list queue $args --max-records 1000 --output json; done)
            ms=$(awk '{print $1 * 1000}' <<<"$times" | sort -n | sed -n 2p)
            rss=$(awk '{print $3}' <<<"$times" | sort -n | tail -1)
            row "list queue $args --max-records 1000 (ms, peak RSS KiB)" "$ms ms, $rss"
        done
        echo
    fi
    if on rss; then
        echo "== host memory with $BIG items queued (SQLite, default workers) =="
        pending=$(sql "SELECT count(*) FROM queue_items WHERE status = 'PENDING'")
        "$FERRY" serve >"$D/host.log" 2>&1 &
        HOST=$!
        max=0
        for i in $(seq 1 $((RSS_S * 2))); do # RSS_S seconds of claiming and running no-op items
            sleep 0.5
            v=$(status_kib "$HOST" VmRSS)
            [[ $v =~ ^[0-9]+$ ]] && ((v > max)) && max=$v
        done
        hwm=$(status_kib "$HOST" VmHWM)
        workers=$(children_rss "$HOST")
        left=$(sql "SELECT count(*) FROM queue_items WHERE status = 'PENDING'")
        stop_pid "$HOST"
        HOST=
        row "pending when the host started / after $RSS_S s" "$pending / $left"
        row "host VmRSS max over $RSS_S s / VmHWM (KiB)" "$max / $hwm"
        row "its worker processes together, VmRSS (KiB)" "$workers"
        mib=$(awk -v k="$hwm" 'BEGIN { if (k ~ /^[0-9]+$/) printf "%.1f", k / 1024; else print "?" }')
        summary "host RSS, ${BIG} queued (MiB, VmHWM)" "$mib" "-" "-" "<= 10" "$(verdict "$mib" "<=" 10)"
        echo
    fi
    rm -rf "$W/big"
fi

if on pg; then
    BUILD=$BUILD tests/bench/pg.sh || echo "(tests/bench/pg.sh failed)"
    echo
fi
if on schedule; then
    BUILD=$BUILD tests/bench/schedule.sh || echo "(tests/bench/schedule.sh failed)"
    echo
fi
if on web; then
    BUILD=$BUILD BENCH_BIG=$BIG tests/bench/web.sh || echo "(tests/bench/web.sh failed)"
    echo
fi
if on backup; then
    BUILD=$BUILD tests/bench/backup.sh || echo "(tests/bench/backup.sh failed)"
    echo
    # Remote storages over loopback: ferry and restic against the same S3 and SFTP servers.
    # The S3 server (moto) keeps objects in memory, hence the smaller tree.
    for target in s3 sftp; do
        BUILD=$BUILD BENCH_TARGET=$target BENCH_MB=${BENCH_REMOTE_MB:-256} BENCH_TOOLS="ferry restic" \
            tests/bench/backup.sh || echo "(backup.sh on $target failed)"
        echo
    done
    # A machine reached over SSH (issue 15): ferry on the bridge's own machine, ferry pushing
    # from and pulling onto the SSH machine, and restic over SFTP, on the same tree.
    BUILD=$BUILD BENCH_SOURCE=ssh BENCH_MB=${BENCH_REMOTE_MB:-256} tests/bench/backup.sh ||
        echo "(backup.sh from an SSH machine failed)"
    echo
fi

if on paint; then
    W=$W BUILD=$BUILD tests/bench/web_paint.sh || echo "(web_paint.sh failed)"
fi

echo "== summary: issue 14 targets (information only; make bench never fails on a MISS) =="
printf '%-48s %9s %9s %6s %17s  %s\n' metric ferry peer ratio target ""
while IFS='|' read -r m f p r t v; do
    printf '%-48s %9s %9s %6s %17s  %s\n' "$m" "$f" "$p" "$r" "$t" "$v"
done <"$BENCH_SUMMARY"
echo "(peer: graphile-worker at the same concurrency as ferry's workers for the drains, restic for"
echo " the backups; same run, same machine)"
echo "bench run time: $(($(date +%s) - T_START)) s; load average now $(cut -d' ' -f1-3 /proc/loadavg)"

# Nothing the bench started may outlive it: every such process carries FERRY_BENCH_MARK.
stop_pid "$HOST"
HOST=
[[ -n $PG_URL ]] && tests/bench/pg_env.sh stop "$PG_URL" >/dev/null 2>&1
PG_URL=
tests/bench/leftovers.sh
