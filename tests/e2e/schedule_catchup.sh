#!/usr/bin/env bash
# Catch-up (issue 6, point 6): fires missed while no host ran follow the schedule's
# catchup: "latest" (the default) makes one run for the most recent missed fire, "none"
# makes none, "all" makes every one (at most 100, the most recent: tests/unit/
# test_scheduler.c checks that bound). A real host is stopped across two fire times and
# started again; fires found within a minute of their instant are on time under every policy.
#
# Time: the scheduler's test hook runs its clock 120 times faster than the real one from
# 2031-01-01T00:01:00Z, so "*/5 * * * *" fires every 2.5 real seconds. The host runs over
# the fires of 00:05 and 00:10, is stopped over 00:15 and 00:20, and is started again at
# 00:22, when the fire of 00:20 is two minutes late: missed, not on time.
. "$(dirname "$0")/../lib.sh"

RATE=120
V0=$(date -u -d 2031-01-01T00:01:00Z +%s)000
export FERRY_TEST_CLOCK_RATE=$RATE
export FERRY_TEST_CLOCK_OFFSET_MS=$((V0 - $(date +%s%3N) * RATE))
vnow() { echo $(($(date +%s%3N) * RATE + FERRY_TEST_CLOCK_OFFSET_MS)); }
vms() { echo $(($(date -u -d "2031-01-01T$1Z" +%s) * 1000)); }
# fires NAME: the minutes (HH:MM) of a schedule's fires, oldest first, on one line.
fires() {
    ferry list queue --output json |
        jq -r --arg n "$1" '[.data[] | select(.scheduleName == $n) | .scheduleFireTime[11:16]] | sort | join(" ")'
}
fired() { [[ $(fires "$1") == *"$2"* ]]; }
# until_virtual HH:MM:SS: sleeps until the test clock reads that time.
until_virtual() {
    local left=$(($(vms "$1") - $(vnow)))
    ((left > 200 * RATE)) && sleep "$(awk -v ms=$((left / RATE - 100)) 'BEGIN { print ms / 1000 }')"
    while (($(vnow) < $(vms "$1"))); do sleep 0.02; done
}

write_config 'lease = { poll_ms = 200; };'
install_plugins
setup_local_machine Ops m1
for p in latest none all; do
    ferry create schedule Ops "c-$p" --vault "{\"cron\":\"*/5 * * * *\",\"machine\":\"m1\",
      \"catchup\":\"$p\",\"queue_config\":{\"function\":\"hello\"}}" >/dev/null
done
ferry create schedule Ops c-default --vault '{"cron":"*/5 * * * *","machine":"m1","queue_config":{"function":"hello"}}' >/dev/null
start_host
wait_for 15 fired c-all 00:10 || fail "the host fires 00:05 and 00:10" "$(fires c-all)"
stop_host
stopped=$(vnow)
((stopped < $(vms 00:15:00))) && pass "the host stopped before 00:15" || fail "the host stopped before 00:15" "at $stopped"
for p in latest none all default; do
    eq "catchup $p: while the host ran, every fire on time" "$(fires "c-$p")" "00:05 00:10"
done

until_virtual 00:22:00
mv "$T_DIR/host.log" "$T_DIR/host1.log"
start_host
wait_for 15 fired c-none 00:30 || fail "the restarted host fires 00:25 and 00:30" "$(fires c-none)"
stop_host
eq "catchup latest: one run for the most recent missed fire" "$(fires c-latest)" "00:05 00:10 00:20 00:25 00:30"
eq "catchup is latest by default" "$(fires c-default)" "00:05 00:10 00:20 00:25 00:30"
eq "catchup none: the missed fires are not made" "$(fires c-none)" "00:05 00:10 00:25 00:30"
eq "catchup all: every missed fire is made" "$(fires c-all)" "00:05 00:10 00:15 00:20 00:25 00:30"
log=$(cat "$T_DIR/host.log")
contains "the host log says what was not made (none)" "$log" \
    "schedule Ops/c-none: catchup none: 2 missed fire(s), the latest for 2031-01-01T00:20:00.000Z, not made"
contains "the host log says what was not made (latest)" "$log" \
    "schedule Ops/c-latest: catchup latest: 1 missed fire(s) before 2031-01-01T00:20:00.000Z not made"
contains "and what was caught up" "$log" "schedule Ops/c-all fired for 2031-01-01T00:15:00.000Z (catch-up)"
task=$(ferry list queue --output json | jq -r '.data[] | select(.scheduleName == "c-latest" and .scheduleFireTime[11:16] == "00:20") | .taskId')
details=$(ferry queue trace "$task" --output json | jq -r '.data.timeline[] | select(.action == "SCHEDULED") | .details')
contains "the caught-up item's trace names its fire" "$details" "for 2031-01-01T00:20:00.000Z"
contains "…as a missed fire made by the catch-up policy" "$details" "a missed fire, made by the catch-up policy"
eq "lastRun after the catch-up" "$(ferry list team-schedules Ops --output json | jq -r '.data[] | select(.scheduleName == "c-none") | .lastRun')" \
    2031-01-01T00:30:00.000Z
t_done
