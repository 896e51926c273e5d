#!/usr/bin/env bash
# make bench, PostgreSQL rows: drain 10,000 no-op jobs and idle enqueue-to-start latency on
# a throwaway server with durable settings, beside the SQLite rows printed before.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
FERRY=$PWD/$BUILD/ferry
BQ=$PWD/$BUILD/tests/bench_queue
row() { printf '%-58s %14s\n' "$1" "$2"; }
echo "== PostgreSQL 15 (fsync on) =="
url=$(tests/bench/pg_env.sh start 2>/dev/null) || { echo "(no PostgreSQL server could be started)"; exit 0; }
W=$(mktemp -d /tmp/ferry-bench-pg.XXXXXX)
trap 'tests/bench/pg_env.sh stop "$url" >/dev/null 2>&1; rm -rf "$W"' EXIT
mkdir -p "$W/plugins"
cp "$BUILD"/plugins/*.so "$W/plugins/"
cc -std=gnu11 -O2 -fPIC -fvisibility=hidden -shared -Isdk/include -o "$W/plugins/misbehave.so" \
    tests/fixtures/misbehave.c -ljansson
run_case() { # run_case NAME WORKERS
    local db
    db=$(tests/bench/pg_env.sh createdb "$url" "$1")
    { echo "store = { driver = \"postgres\"; conninfo = \"$db\"; };"
      echo "plugins = { dir = \"$W/plugins\"; };"; echo 'log_level = "warn";'
      echo "workers = { count = $2; prefork = $2; };"; } >"$W/$1.conf"
    export FERRY_CONFIG=$W/$1.conf DB=$db
    "$FERRY" create region r >/dev/null && "$FERRY" create bridge r local >/dev/null &&
        "$FERRY" create team Ops >/dev/null
    for i in $(seq 0 99); do "$FERRY" create machine Ops local "m$i" --vault '{"connection":"local"}' >/dev/null; done
}
run_case drain 4
"$BQ" fill "$DB" 10000 fx_noop 100 >/dev/null
out=$(/usr/bin/time -f "%e %M" "$FERRY" serve --drain 2>&1 | tail -1)
secs=$(awk '{print $1}' <<<"$out"); rss=$(awk '{print $2}' <<<"$out")
row "workers=4: jobs/s (create->claim->worker->result)" "$(echo "10000 / $secs" | bc)"
row "workers=4: host peak RSS (KiB)" "$rss"
run_case latency 4
"$FERRY" serve >"$W/host.log" 2>&1 &
hp=$!
sleep 1
read -r p50 p90 p99 < <("$BQ" latency "$DB" 200 "$W/stamps")
row "enqueue-to-start p50 / p90 / p99 (ms)" "$p50 / $p90 / $p99"
kill -TERM $hp; wait $hp 2>/dev/null
