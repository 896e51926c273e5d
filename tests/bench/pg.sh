#!/usr/bin/env bash
# make bench, PostgreSQL rows, on a throwaway server with durable settings (fsync on):
#   - one host (4 workers) draining BENCH_PG_N (10,000) queued no-op items;
#   - four hosts (2 workers each) on one bridge of one database draining BENCH_PG_N fx_stamp
#     items together, checked exactly once: every item COMPLETED, one ASSIGNED event each, no
#     retry, and every label stamped exactly once by the function itself;
#   - enqueue-to-start latency on an idle host (200 items).
# Rows for the summary table go to $BENCH_SUMMARY when run.sh set it.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
W=$(mktemp -d /tmp/ferry-bench-pg.XXXXXX)
. tests/bench/lib.sh
N=${BENCH_PG_N:-10000}
# The drains' workers.pipeline, as in run.sh's drain rows (attempts queued per worker).
PIPELINE=${BENCH_PIPELINE:-32}
url=
HOST=
PIDS=()
cleanup() {
    stop_pid "$HOST"
    for p in ${PIDS[@]+"${PIDS[@]}"}; do stop_pid "$p"; done
    [[ -n $url ]] && tests/bench/pg_env.sh stop "$url" >/dev/null 2>&1
    rm -rf "$W"
}
trap cleanup EXIT
echo "== PostgreSQL 15 (fsync on) =="
url=$(tests/bench/pg_env.sh start 2>"$W/pg.log") || { url=; echo "(no PostgreSQL server could be started: $(tail -1 "$W/pg.log"))"; exit 0; }
mkdir -p "$W/plugins"
plugins "$W/plugins"
psql_v() { psql -X -qAt "$DB" -c "$1" 2>/dev/null || echo "?"; }

# pg_case NAME WORKERS [PIPELINE]: a fresh database NAME with the bench's region, bridge, team and
# machines; exports FERRY_CONFIG and DB (its URL).
pg_case() {
    DB=$(tests/bench/pg_env.sh createdb "$url" "$1")
    { echo "store = { driver = \"postgres\"; conninfo = \"$DB\"; };"
      echo "plugins = { dir = \"$W/plugins\"; };"; echo 'log_level = "warn";'
      echo "workers = { count = $2; prefork = $2; pipeline = ${3:-0}; };"; } >"$W/$1.conf"
    export FERRY_CONFIG=$W/$1.conf DB
    populate
}
# work: "transactions buffers scans" the server has counted for the database so far, scans
# being those of the claim's index by machine (qi_claim_machine: one a machine the claim
# looks at); a backend reports as it ends: read half a second after the hosts' ended.
work() {
    psql -X -qAt -F ' ' "$DB" -c "SELECT xact_commit + xact_rollback, blks_hit + blks_read,
        (SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes
         WHERE indexrelname = 'qi_claim_machine') FROM pg_stat_database
        WHERE datname = current_database()" 2>/dev/null || echo "? ? ?"
}
# per_item BEFORE AFTER: the server's transactions and buffer accesses per item between two
# work readings: counts that do not swing with the machine's load as the rates do.
per_item() {
    awk -v b="$1" -v a="$2" -v n="$N" 'BEGIN { split(b, x, " "); split(a, y, " ")
        if (y[1] !~ /^[0-9]+$/ || x[1] !~ /^[0-9]+$/) { print "? / ?"; exit }
        printf "%.3f / %.1f\n", (y[1] - x[1]) / n, (y[2] - x[2]) / n }'
}
# per_claim BEFORE AFTER: the claims that took items (a claim's ASSIGNED events share its
# host and instant), items per claim, and the index scans of qi_claim_machine per claim and
# per item between two work readings. With several hosts a claim looks at every machine
# with a free slot, so these show how much each claim's search costs whatever the load.
per_claim() {
    local claims
    claims=$(psql_v "SELECT count(*) FROM (SELECT 1 FROM queue_events e JOIN queue_items t
        ON t.seq = e.task_seq WHERE e.action = 'ASSIGNED' GROUP BY t.lease_owner, e.at) x")
    awk -v b="$1" -v a="$2" -v n="$N" -v c="$claims" 'BEGIN { split(b, x, " "); split(a, y, " ")
        if (y[3] !~ /^[0-9]+$/ || x[3] !~ /^[0-9]+$/ || c !~ /^[1-9][0-9]*$/) { print "?"; exit }
        printf "%d, %.1f; %.1f / %.2f\n", c, n / c, (y[3] - x[3]) / c, (y[3] - x[3]) / n }'
}
# rates T0_MS: "incl steady" jobs/s of the COMPLETED items, from T0_MS (when the host was
# started) and from the first start, both to the last finish the store recorded.
rates() {
    local done first last
    read -r done first last < <(psql -X -qAt -F ' ' "$DB" -c \
        "SELECT count(*), min(started_at), max(finished_at) FROM queue_items WHERE status = 'COMPLETED'" 2>/dev/null || echo "0 ? ?")
    awk -v n="$done" -v t0="$1" -v a="$first" -v b="$last" 'BEGIN {
        if (b !~ /^[0-9]+$/) { print "? ?"; exit }
        printf "%.0f %s\n", n * 1000 / (b - t0), (b > a ? sprintf("%.0f", n * 1000 / (b - a)) : "?") }'
}

pg_case drain 4 "$PIPELINE"
"$BQ" fill "$DB" "$N" fx_noop 100 >/dev/null
limit=$((60 + N / 100))
w0=$(work)
t0=$(now_ms)
read -r wall hwm _ rc < <("$BQ" run "$limit" "$FERRY" serve --drain 2>"$W/host.log")
[[ $rc == 0 ]] || { echo "(the host exited with status $rc; its log ends with:)"; tail -3 "$W/host.log"; }
sleep 0.5
w1=$(work)
read -r incl st < <(rates "$t0")
done_n=$(psql_v "SELECT count(*) FROM queue_items WHERE status = 'COMPLETED'")
row "1 host, workers=4, pipeline=$PIPELINE, $N items: incl. / steady (jobs/s)" "$incl / $st"
row "1 host: completed, host wall s, host VmHWM KiB" "$done_n, $wall, $hwm"
row "1 host: server transactions / buffer accesses per item" "$(per_item "$w0" "$w1")"
row "1 host: claims, items per claim; machine scans per claim / item" "$(per_claim "$w0" "$w1")"
summary "PG drain $N, 1 host w=4 p=$PIPELINE, steady (jobs/s)" "$st" "-" "-" ">= 5000" "$(verdict "$st" ">=" 5000)"

pg_case hosts 2 "$PIPELINE"
"$BQ" fill "$DB" "$N" fx_stamp 100 "$W/runs" >/dev/null
w0=$(work)
t0=$(now_ms)
for h in 1 2 3 4; do
    timeout -k 5 "$limit" "$FERRY" serve --drain >"$W/host$h.log" 2>&1 &
    PIDS+=($!)
done
wait "${PIDS[@]}"
PIDS=()
sleep 0.5
w1=$(work)
read -r incl st < <(rates "$t0")
completed=$(psql_v "SELECT count(*) FROM queue_items WHERE status = 'COMPLETED'")
assigned=$(psql_v "SELECT count(*) FROM queue_events WHERE action = 'ASSIGNED'")
retries=$(psql_v "SELECT coalesce(sum(retry_count), 0) FROM queue_items")
runs=$(wc -l <"$W/runs" 2>/dev/null || echo 0)
labels=$(awk '{print $1}' "$W/runs" 2>/dev/null | sort -u | wc -l)
hosts=$(psql_v "SELECT count(DISTINCT lease_owner) FROM queue_items")
# Items per host, most first ("-" for a host that ran none): with a pipeline, a host holds
# more machines than it has workers, and the turn that ends a machine's item claims its next
# one in the same transaction, so hosts that started later may find every machine taken.
per_host=$(psql_v "SELECT string_agg(n::text, ' ' ORDER BY n DESC) FROM (SELECT count(*) n FROM queue_items GROUP BY lease_owner) x")
per_host="$per_host$(for ((k = $(wc -w <<<"$per_host"); k < 4; k++)); do printf ' -'; done)"
once=PASS
[[ $completed == "$N" && $assigned == "$N" && $retries == 0 && $runs == "$N" && $labels == "$N" ]] || once=FAIL
row "4 hosts x 2 workers, pipeline=$PIPELINE, one bridge, $N items: incl. / steady (jobs/s)" "$incl / $st"
row "4 hosts: COMPLETED, ASSIGNED events, retries, hosts that ran items" "$completed, $assigned, $retries, $hosts"
row "4 hosts: items run by each host" "$per_host"
row "4 hosts: server transactions / buffer accesses per item" "$(per_item "$w0" "$w1")"
row "4 hosts: claims, items per claim; machine scans per claim / item" "$(per_claim "$w0" "$w1")"
row "4 hosts: runs stamped, distinct items stamped; exactly once" "$runs, $labels; $once"
[[ $once == PASS ]] || echo "FAIL: 4 hosts on one PostgreSQL store did not run every item exactly once"
summary "PG drain $N, 4 hosts w=2 p=$PIPELINE, steady (jobs/s)" "$st" "-" "-" ">= 5000" "$(verdict "$st" ">=" 5000)"
summary "PG 4 hosts: every item run exactly once" "$once" "-" "-" "exactly once" "$once"

pg_case latency 4
"$FERRY" serve >"$W/host.log" 2>&1 &
HOST=$!
if read -r p50 p90 p99 _ _ < <("$BQ" latency "$DB" 200 "$W/stamps"); then
    row "enqueue-to-start, idle host, 200 items: p50 / p90 / p99 (ms)" "$p50 / $p90 / $p99"
else
    row "enqueue-to-start" "failed"
fi
stop_pid "$HOST"
HOST=
