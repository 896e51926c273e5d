#!/usr/bin/env bash
# Schedule benchmark: the delay between each fire's due instant and the creation of its
# queue item, median and p99, measured on a real host. Printed, never asserted.
#
#   steady: three schedules ("* * * * *", "*/2", "*/3") on a clock running 600 times faster
#           than the real one (the scheduler's test hook), so a few hundred fires take about
#           twenty real seconds; the delay is converted back to real milliseconds.
#   burst:  300 schedules due at the same instant, on the real clock (shifted only so that
#           the instant comes two seconds after the host starts).
#
#   tests/bench/schedule.sh        (BUILD=build by default; SECONDS_STEADY=20)
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
FERRY=$PWD/$BUILD/ferry
STEADY=${SECONDS_STEADY:-20}
W=$(mktemp -d /tmp/ferry-bench-sched.XXXXXX)
HOST=
trap '[[ -n $HOST ]] && kill "$HOST" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT

setup() { # setup NAME: a fresh store with team Ops, bridge local, machine m1
    local d=$W/$1
    mkdir -p "$d/plugins"
    cp "$BUILD"/plugins/*.so "$d/plugins/"
    chmod 755 "$d" "$d/plugins"
    chmod 644 "$d"/plugins/*.so
    { echo "store = { path = \"$d/ferry.db\"; };"; echo "plugins = { dir = \"$d/plugins\"; };"
      echo 'log_level = "warn";'; echo 'workers = { count = 4; prefork = 4; };'; } >"$d/ferry.conf"
    export FERRY_CONFIG=$d/ferry.conf D=$d
    "$FERRY" create region r >/dev/null && "$FERRY" create bridge r local >/dev/null &&
        "$FERRY" create team Ops >/dev/null &&
        "$FERRY" create machine Ops local m1 --vault '{"connection":"local","concurrency":8}' >/dev/null
}
# delays RATE OFFSET: each item's creation minus its due instant, in real ms, one a line.
delays() {
    "$FERRY" list queue --max-records 10000 --output json | jq -r --argjson rate "$1" --argjson off "$2" '
        .data[] | select(.scheduleFireTime != null)
        | (.scheduleFireTime | sub("\\.[0-9]+Z$"; "Z") | fromdateiso8601 * 1000) as $fire
        | .createdTimeMs - ($fire - $off) / $rate'
}
# stats: "N fires: median X ms, p99 Y ms" from numbers on stdin.
stats() {
    sort -n | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "no fires"; exit }
        p99 = int(NR * 0.99 + 0.999); if (p99 > NR) p99 = NR
        med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%d fires: median %.1f ms, p99 %.1f ms, max %.1f ms\n", NR, med, v[p99], v[NR] }'
}
row() { printf '%-52s %s\n' "$1" "$2"; }

echo "== schedules: delay from each fire's due instant to its item's creation =="

setup steady
RATE=600
OFFSET=$(($(date -u -d 2031-01-01T00:00:30Z +%s)000 - $(date +%s%3N) * RATE))
for c in "1|* * * * *" "2|*/2 * * * *" "3|*/3 * * * *"; do
    "$FERRY" create schedule Ops "s${c%%|*}" --vault "{\"cron\":\"${c#*|}\",\"machine\":\"m1\",\"queue_config\":{\"function\":\"hello\"}}" >/dev/null
done
FERRY_TEST_CLOCK_RATE=$RATE FERRY_TEST_CLOCK_OFFSET_MS=$OFFSET "$FERRY" serve >"$D/host.log" 2>&1 &
HOST=$!
sleep "$STEADY"
kill -TERM "$HOST"; wait "$HOST" 2>/dev/null; HOST=
row "steady: 3 schedules, clock x$RATE, ${STEADY} s" "$(delays $RATE "$OFFSET" | stats)"

setup burst
for i in $(seq 1 300); do
    "$FERRY" create schedule Ops "b$i" --vault '{"cron":"* * * * *","machine":"m1","queue_config":{"function":"hello"}}' >/dev/null
done
# The next whole minute of the shifted clock comes 2.5 s after the host starts.
now=$(date +%s%3N)
OFFSET=$(((now / 60000 + 1) * 60000 - 2500 - now))
FERRY_TEST_CLOCK_OFFSET_MS=$OFFSET "$FERRY" serve >"$D/host.log" 2>&1 &
HOST=$!
sleep 4
kill -TERM "$HOST"; wait "$HOST" 2>/dev/null; HOST=
row "burst: 300 schedules due at one instant" "$(delays 1 "$OFFSET" | stats)"
