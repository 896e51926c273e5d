#!/usr/bin/env bash
# Schedules firing in a real host (issue 6, point 4): each fire creates one queue item from
# queue_config for the schedule's machine and its bridge, records the schedule on the item,
# applies the schedule's notifications (delivered by the host to a real HTTP receiver);
# enabled false and disabled_until are honoured, a re-enabled schedule does not make up the
# fires it skipped, a timing change takes effect at once and an edit of anything else costs
# no fire; list team-schedules shows lastRun, nextRun and lastTaskId; only the host of the
# machine's bridge fires.
#
# Time: the scheduler's test hook runs its clock 60 times faster than the real one
# (FERRY_TEST_CLOCK_RATE=60: a virtual minute per real second) from 2031-01-01T00:00:30Z,
# for the host and the CLI alike, so "* * * * *" fires once a second.
. "$(dirname "$0")/../lib.sh"

RATE=60
V0=$(date -u -d 2031-01-01T00:00:30Z +%s)000
export FERRY_TEST_CLOCK_RATE=$RATE
export FERRY_TEST_CLOCK_OFFSET_MS=$((V0 - $(date +%s%3N) * RATE))
vnow() { echo $(($(date +%s%3N) * RATE + FERRY_TEST_CLOCK_OFFSET_MS)); }
iso_of() { date -u -d "@$(($1 / 1000))" +%Y-%m-%dT%H:%M:%S.000Z; }
ms_of() { date -u -d "$1" +%s%3N; }
# fires NAME: the fire times of a schedule's items, oldest first, one a line.
fires() { ferry list queue --output json | jq -r --arg n "$1" '[.data[] | select(.scheduleName == $n) | .scheduleFireTime] | sort | .[]'; }
nfires() { fires "$1" | grep -c .; }
# has_fires NAME N: the schedule has made at least N items.
has_fires() { (($(nfires "$1") >= $2)); }
# consecutive STEP_MINUTES: reads fire times on stdin; passes when each follows the last by STEP.
consecutive() {
    local prev= t
    while read -r t; do
        t=$(ms_of "$t")
        [[ -n $prev && $((t - prev)) -ne $(($1 * 60000)) ]] && return 1
        prev=$t
    done
    return 0
}
sched_row() { ferry list team-schedules Ops --output json | jq -c --arg n "$1" '.data[] | select(.scheduleName == $n)'; }

rx=$T_DIR/rx; mkdir -p "$rx"
python3 "$FERRY_ROOT/tests/helpers/receivers.py" "$rx" & T_EXTRA_PIDS=$!
wait_for 10 test -s "$rx/ports" || { fail "receivers started"; t_done; exit 1; }
read -r _ http_port <"$rx/ports"
write_config 'lease = { poll_ms = 200; };'
install_plugins
setup_local_machine Ops m1
ferry create bridge local-region other >/dev/null
ferry create machine Ops other m2 --vault '{"connection":"local"}' >/dev/null

hook="http://127.0.0.1:$http_port/scheduled"
ferry create schedule Ops every --vault "{\"cron\":\"* * * * *\",\"machine\":\"m1\",\"priority\":2,
  \"queue_config\":{\"function\":\"hello\",\"name\":\"scheduler\",\"description\":\"minutely\"},
  \"notifications\":{\"on_success\":\"$hook\"}}" >/dev/null
ferry create schedule Ops elsewhere --vault '{"cron":"* * * * *","machine":"m2","queue_config":{"function":"hello"}}' >/dev/null
ferry create schedule Ops off --vault '{"cron":"* * * * *","machine":"m1","enabled":false,"queue_config":{"function":"hello"}}' >/dev/null
ferry create schedule Ops paused --vault '{"cron":"* * * * *","machine":"m1","enabled":false,
  "disabled_reason":"maintenance","disabled_until":"2031-01-01T00:03:00Z","queue_config":{"function":"hello"}}' >/dev/null
ferry create schedule Ops retimed --vault '{"cron":"* * * * *","machine":"m1","queue_config":{"function":"hello"}}' >/dev/null
# (The virtual clock moves a second per 17 real ms: the CLI read it somewhere in between.)
before=$(vnow)
row=$(sched_row every)
after=$(vnow)
next=$(ms_of "$(jq -r .nextRun <<<"$row")")
((next > before && next <= after + 60000 && next % 60000 == 0)) &&
    pass "before any host runs, list shows the first nextRun" ||
    fail "before any host runs, list shows the first nextRun" "$row" "list ran $(iso_of "$before") to $(iso_of "$after")"
created=$(($(ms_of "$(jq -r .createdTime <<<"$row")") * RATE + FERRY_TEST_CLOCK_OFFSET_MS))
first_due=$(iso_of $(((created / 60000 + 1) * 60000)))
eq "and none for a disabled schedule" "$(sched_row off | jq -r .nextRun)" null
eq "and the end of a pause for a paused one" "$(sched_row paused | jq -r .nextRun)" 2031-01-01T00:03:00.000Z

start_host
contains "the host says the test clock is on" "$(cat "$T_DIR/host.log")" "test hook: schedules fire by a test clock"
wait_for 10 has_fires every 3 || fail "every fired 3 times" "$(fires every)"

# While it runs: re-enable "off", re-time "retimed" to even minutes, and change only the
# notifications of "every" (which must not cost it a fire).
enabled_at=$(vnow)
ferry update schedule-vault Ops off --vault '{"enabled":true}' >/dev/null
ferry update schedule-vault Ops retimed --vault '{"cron":"*/2 * * * *"}' >/dev/null
retimed_at=$(vnow)
ferry update schedule-vault Ops every --vault "{\"notifications\":{\"on_success\":\"$hook\",\"on_failure\":\"ops@example.com\"}}" >/dev/null
wait_for 10 has_fires every 7 || fail "every fired 7 times"
ferry rm schedule Ops retimed >/dev/null
removed_at=$(vnow)
sleep 1.5
stop_host

# --- what each fire created ------------------------------------------------------------------
f=$(fires every)
eq "the first fire is the first minute after the schedule was created" "$(head -1 <<<"$f")" "$first_due"
consecutive 1 <<<"$f" && pass "one item per minute, none missed or doubled ($(wc -l <<<"$f") fires)" || fail "one item per minute" "$f"
items=$(ferry list queue --output json | jq -c '[.data[] | select(.scheduleName == "every")]')
eq "each item runs queue_config's function on the schedule's machine and its bridge" \
    "$(jq -r '[.[] | [.function, .machineName, .bridgeName, .teamName, .priority] | @tsv] | unique | .[]' <<<"$items")" \
    "hello	m1	local	Ops	2"
eq "marked idempotent, as its function is (so a host crash retries it)" "$(jq -r '[.[].idempotent] | unique | .[]' <<<"$items")" true
eq "with queue_config's parameters" "$(jq -r '[.[] | .vaultContent.name + "/" + .vaultContent.description] | unique | .[]' <<<"$items")" \
    "scheduler/minutely"
eq "and the schedule's on_success address as on_success.notify" \
    "$(jq -c '.[-1].vaultContent.on_success.notify' <<<"$items")" "[\"$hook\"]"
eq "later fires carry the edited notifications" "$(jq -c '.[0].vaultContent.on_failure.notify' <<<"$items")" '["ops@example.com"]'
wait_for 10 bash -c "'$FERRY_BIN' list queue --output json | jq -e '[.data[] | select(.scheduleName == \"every\" and .status != \"COMPLETED\")] | length == 0'"
eq "the host ran them all" "$(ferry list queue --output json | jq -r '[.data[] | select(.scheduleName == "every") | .status] | unique | join(",")')" COMPLETED
first=$(jq -r 'sort_by(.scheduleFireTime) | .[0].taskId' <<<"$items")
trace=$(ferry queue trace "$first" --output json)
contains "the trace says which schedule and fire made the item" "$(jq -r '.data.timeline[] | select(.action == "SCHEDULED") | .details' <<<"$trace")" \
    "fired by schedule every (cron '* * * * *', UTC) for $first_due"
eq "the item records the schedule" "$(jq -r '.data.queue_item | [.scheduleName, .scheduleFireTime] | @tsv' <<<"$trace")" \
    "every	$first_due"
wait_for 10 bash -c "grep -l '\"$first\"' '$rx'/post-*.json"
post=$(grep -l "\"$first\"" "$rx"/post-*.json 2>/dev/null | head -1)
eq "the schedule's notification was delivered (POST on success)" "$(jq -r '[.status, .function, .machine] | @tsv' "$post" 2>/dev/null)" "COMPLETED	hello	m1"

# --- list team-schedules: lastRun, nextRun, lastTaskId ---------------------------------------
before=$(vnow)
row=$(sched_row every)
after=$(vnow)
newest=$(jq -r 'sort_by(.scheduleFireTime) | .[-1]' <<<"$items")
eq "lastRun is the latest fire" "$(jq -r .lastRun <<<"$row")" "$(jq -r .scheduleFireTime <<<"$newest")"
eq "lastTaskId is its item" "$(jq -r .lastTaskId <<<"$row")" "$(jq -r .taskId <<<"$newest")"
next=$(ms_of "$(jq -r .nextRun <<<"$row")")
((next > before && next <= after + 60000 && next % 60000 == 0)) && pass "nextRun is the coming minute" ||
    fail "nextRun is the coming minute" "nextRun $(jq -r .nextRun <<<"$row"), list ran $(iso_of "$before") to $(iso_of "$after")"
# --wide: the default table fits 100 columns and shows a task id's first 8 characters.
text=$(ferry list team-schedules Ops --wide)
contains "the text table shows them too" "$text" "$(jq -r .lastTaskId <<<"$row")"

# --- enabled, disabled_until, re-enabling, re-timing, removing -------------------------------
eq "the host of another bridge's machine fires it, not this one" "$(nfires elsewhere)" 0
f=$(fires paused)
eq "disabled until 00:03: the first fire is at 00:03" "$(head -1 <<<"$f")" 2031-01-01T00:03:00.000Z
consecutive 1 <<<"$f" && pass "then every minute" || fail "paused: then every minute" "$f"
f=$(fires off)
first_on=$(ms_of "$(head -1 <<<"$f")")
[[ -n $f ]] && ((first_on > enabled_at && first_on - enabled_at <= 65000)) &&
    pass "re-enabled: it fires from the next minute, making up none it skipped" ||
    fail "re-enabled: from the next minute only" "enabled at $(iso_of "$enabled_at")" "$f"
f=$(fires retimed)
after=$(while read -r t; do (($(ms_of "$t") > retimed_at)) && echo "$t"; done <<<"$f")
[[ -n $after ]] && ! grep -qvE ':[0-5][02468]:00\.000Z$' <<<"$after" &&
    pass "re-timed to */2: from then on only even minutes" || fail "re-timed to */2" "$f"
last=$(ms_of "$(tail -1 <<<"$f")")
((last <= removed_at)) && pass "a removed schedule fires no more" || fail "a removed schedule fires no more" "$f"
t_done
