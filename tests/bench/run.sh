#!/usr/bin/env bash
# make bench: throughput, latency and memory of the queue and the host, plus the other
# benchmark scripts in this folder when present. Figures are printed, never asserted.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
FERRY=$PWD/$BUILD/ferry
BQ=$PWD/$BUILD/tests/bench_queue
W=$(mktemp -d /tmp/ferry-bench.XXXXXX)
trap 'pkill -P $$ 2>/dev/null; rm -rf "$W"' EXIT
export FERRY_CONFIG=$W/ferry.conf
TIME=/usr/bin/time

setup() { # setup NAME [config lines...]: a fresh store with team Ops, bridge local, m0..m99
    local d=$W/$1; shift
    mkdir -p "$d/plugins"
    cp "$BUILD"/plugins/*.so "$d/plugins/"
    cc -std=gnu11 -O2 -fPIC -fvisibility=hidden -shared -Isdk/include -o "$d/plugins/misbehave.so" \
        tests/fixtures/misbehave.c -ljansson
    { echo "store = { path = \"$d/ferry.db\"; };"; echo "plugins = { dir = \"$d/plugins\"; };"
      echo 'log_level = "warn";'; for l in "$@"; do echo "$l"; done; } >"$d/ferry.conf"
    export FERRY_CONFIG=$d/ferry.conf DB=$d/ferry.db D=$d
    "$FERRY" create region r >/dev/null && "$FERRY" create bridge r local >/dev/null &&
        "$FERRY" create team Ops >/dev/null
    for i in $(seq 0 99); do echo "m$i"; done | while read -r m; do
        "$FERRY" create machine Ops local "$m" --vault '{"connection":"local"}' >/dev/null
    done
}
row() { printf '%-58s %14s\n' "$1" "$2"; }
median3() { sort -n | sed -n 2p; }

echo "ferry benchmarks on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo

echo "== enqueue (SQLite, synchronous=full) =="
setup enq
t0=$(date +%s%N)
for i in $(seq 1 1000); do "$FERRY" create queue-item Ops m1 local --vault '{"function":"fx_noop"}' >/dev/null; done
row "CLI, one process, 1000 items (items/s)" "$(echo "1000000000000 / ($(date +%s%N) - $t0)" | bc)"
t0=$(date +%s%N)
for p in 1 2 3 4; do
    (for i in $(seq 1 500); do "$FERRY" create queue-item Ops m$p local --vault '{"function":"fx_noop"}' >/dev/null; done) &
done
wait
row "CLI, 4 processes x 500 items (items/s)" "$(echo "2000000000000 / ($(date +%s%N) - $t0)" | bc)"
row "store API, one commit per item, 5000 items (items/s)" "$("$BQ" enqueue "$DB" 5000)"
row "store API, batches of 1000, 100000 items (items/s)" "$("$BQ" fill "$DB" 100000 fx_noop 100)"
echo

echo "== list queue with 1,000,000 items =="
setup list
"$BQ" fill "$DB" 1000000 fx_noop 100 >/dev/null
for args in "--status PENDING" "--machine m7" "--status FAILED" "--task-id 0"; do
    times=$(for k in 1 2 3; do $TIME -f "%e %M" "$FERRY" list queue $args --max-records 1000 --output json 2>&1 >/dev/null | tail -1; done)
    ms=$(awk '{print $1 * 1000}' <<<"$times" | median3)
    rss=$(awk '{print $2}' <<<"$times" | sort -n | tail -1)
    row "list queue $args --max-records 1000 (ms, peak RSS KiB)" "$ms ms, $rss"
done
echo

echo "== host: drain 10,000 queued no-op jobs =="
for workers in 2 4; do
    setup "drain$workers" "workers = { count = $workers; prefork = $workers; };"
    "$BQ" fill "$DB" 10000 fx_noop 100 >/dev/null
    out=$($TIME -f "%e %M" "$FERRY" serve --drain 2>&1 | tail -1)
    secs=$(awk '{print $1}' <<<"$out"); rss=$(awk '{print $2}' <<<"$out")
    done_n=$("$FERRY" list queue --status COMPLETED --max-records 10000 --output json | jq '.data | length')
    row "workers=$workers: jobs/s (create->claim->worker->result)" "$(echo "$done_n / $secs" | bc)"
    row "workers=$workers: completed / host peak RSS (KiB)" "$done_n / $rss"
done
echo

echo "== host: enqueue-to-start latency on an idle host (200 jobs, ms) =="
setup lat
"$FERRY" serve >"$D/host.log" 2>&1 &
hp=$!
sleep 1
read -r p50 p90 p99 < <("$BQ" latency "$DB" 200 "$D/stamps")
row "p50 / p90 / p99 (ms)" "$p50 / $p90 / $p99"
row "idle host RSS (KiB, VmHWM)" "$(awk '/VmHWM/ {print $2}' /proc/$hp/status)"
kill -TERM $hp; wait $hp 2>/dev/null
echo

for extra in tests/bench/schedule.sh tests/bench/backup.sh tests/bench/pg.sh; do
    [[ -x $extra ]] && { BUILD=$BUILD "$extra" || echo "($extra failed)"; echo; }
done
# Remote storages over loopback: ferry and restic against the same S3 and SFTP servers. The
# S3 server (moto) keeps objects in memory, hence the smaller tree.
for target in s3 sftp; do
    BUILD=$BUILD BENCH_TARGET=$target BENCH_MB=${BENCH_REMOTE_MB:-256} BENCH_TOOLS="ferry restic" \
        tests/bench/backup.sh || echo "(backup.sh on $target failed)"
    echo
done
