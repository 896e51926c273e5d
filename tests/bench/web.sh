#!/usr/bin/env bash
# ferry web with a big store (issue 16, point 3): how long /metrics, /healthz and a first
# page of the queue take with BENCH_BIG (1,000,000) items, of which 90% ended (COMPLETED or
# FAILED, with run times) and 10% PENDING, as a store that has served a while looks; and
# how long ferry web takes to count the ended items when it starts. Printed, never
# asserted (the target is 50 ms for /metrics and /healthz).
#
#   tests/bench/web.sh        (BUILD=build by default; BENCH_BIG=1000000; BENCH_WEB_RUNS=21;
#                              BENCH_WEB_PENDING=1: every item left PENDING, the worst case of
#                              the depth query)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
BIG=${BENCH_BIG:-1000000}
RUNS=${BENCH_WEB_RUNS:-21}
W=$(mktemp -d /tmp/ferry-bench-web.XXXXXX)
. tests/bench/lib.sh
WEB_PID=
trap '[[ -n $WEB_PID ]] && kill "$WEB_PID" 2>/dev/null; wait 2>/dev/null; [[ -n ${BENCH_KEEP:-} ]] || rm -rf "$W"' EXIT

setup web
echo "# queueing $BIG items (SQL copies of one item made by the store API)" >&2
fill=$(BQ=$BQ tests/bench/fill_sql.sh "$DB" "$BIG" fx_noop 100) || { echo "web.sh: fill failed" >&2; exit 1; }
# 90% ended: COMPLETED, one in a hundred FAILED, run times of 0 to 9 s.
[[ -n ${BENCH_WEB_PENDING:-} ]] || sqlite3 "$DB" "PRAGMA journal_mode = WAL;
UPDATE queue_items SET status = CASE WHEN seq % 100 = 1 THEN 'FAILED' ELSE 'COMPLETED' END,
    started_at = created_at + 1000, finished_at = created_at + 1000 + (seq % 10) * 1000,
    function = CASE seq % 3 WHEN 0 THEN 'fx_noop' WHEN 1 THEN 'repo_push' ELSE 'hello' END
  WHERE seq % 10 != 0;" >/dev/null
sqlite3 "$DB" "ANALYZE;" >/dev/null
"$FERRY" create user bench >/dev/null
TOKEN=$("$FERRY" create token bench --team Ops --role viewer --output json | jq -r .data.token)

echo "== ferry web with $BIG items ($([[ -n ${BENCH_WEB_PENDING:-} ]] && echo "all PENDING" || echo "90% ended, 10% PENDING")) =="
row "queueing $BIG items (items/s)" "$fill"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
WEB=http://127.0.0.1:$port
t0=$(now_ms)
"$FERRY" web --listen "127.0.0.1:$port" >"$D/web.log" 2>&1 &
WEB_PID=$!
for _ in $(seq 1 3000); do curl -sf -o /dev/null "$WEB/healthz" && break; sleep 0.05; done
row "start, counting the ended items (ms, wall)" "$(($(now_ms) - t0))"
curl -sf -o /dev/null "$WEB/healthz" || { echo "web.sh: ferry web did not start: $(cat "$D/web.log")" >&2; exit 1; }

# time_of URL [CURL ARGS]: median and max of RUNS requests, in ms (curl's time_total).
time_of() {
    local url=$1; shift
    for _ in $(seq 1 "$RUNS"); do curl -s -o /dev/null -w '%{time_total}\n' "$@" "$url"; done |
        awk '{ print $1 * 1000 }' | sort -n |
        awk '{ v[NR] = $1 } END { printf "%.1f / %.1f", v[int((NR + 1) / 2)], v[NR] }'
}
m=$(time_of "$WEB/metrics")
h=$(time_of "$WEB/healthz")
row "/metrics, median / max of $RUNS (ms)" "$m"
row "/healthz, median / max of $RUNS (ms)" "$h"
row "/api/v1/queue?max-records=50, median / max (ms)" "$(time_of "$WEB/api/v1/queue?max-records=50" -H "Authorization: Bearer $TOKEN")"
row "/api/v1/summary, median / max (ms)" "$(time_of "$WEB/api/v1/summary" -H "Authorization: Bearer $TOKEN")"
cpu=$(awk '{ print ($14 + $15) * 10 }' "/proc/$WEB_PID/stat")
row "ferry web CPU for all of the above and its start (ms)" "$cpu"
summary "/metrics with $BIG items (ms, median)" "${m%% *}" "-" "-" "<= 50" "$(verdict "${m%% *}" "<=" 50)"
summary "/healthz with $BIG items (ms, median)" "${h%% *}" "-" "-" "<= 50" "$(verdict "${h%% *}" "<=" 50)"
curl -s "$WEB/metrics" | grep -E '^ferry_(items_completed_total|oldest_pending)' | head -4 | sed 's/^/# /'
kill "$WEB_PID"; wait "$WEB_PID" 2>/dev/null; WEB_PID=
