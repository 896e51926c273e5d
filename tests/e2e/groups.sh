#!/usr/bin/env bash
# Machine groups and fan-out (issue 15, point 3): `create machine-group` and the rest of its
# commands with their bad input; an item for a group becomes a parent with one child per
# member, run by the host; max_parallel observed from the members' own start and end times;
# stop_on_failure; a failing member; cancel; retry; a schedule firing on a group; a host
# killed with SIGKILL mid-fan-out and started again; and, on PostgreSQL, two hosts of one
# bridge settling the parent once.
#
# Runs on SQLite; tests/e2e/pg_groups.sh runs it again with FERRY_TEST_DRIVER=postgres.
. "$(dirname "$0")/../lib.sh"

jqf() { jq -r "$2" <<<"$1" 2>/dev/null || echo "jq failed on: $1"; }
write_config 'lease = { seconds = 3; poll_ms = 200; };' 'workers = { count = 6; prefork = 2; };' \
    'retry = { max_retries = 0; };' 'timeouts = { default = 120; grace = 1; };'
install_plugins
setup_local_machine Ops web-01
for m in web-02 web-03 web-04; do
    ferry create machine Ops "${T_BRIDGE:-local}" "$m" --vault '{"connection":"local"}' >/dev/null
done
ferry create team Dev >/dev/null
ferry create machine Dev local dev-01 --vault '{"connection":"local"}' >/dev/null
ferry create bridge local-region other-bridge >/dev/null
ferry create machine Ops other-bridge far-01 --vault '{"connection":"local"}' >/dev/null

# --- the upgrade: a store of schema version 2 (before groups) gets migration 3 -----------------
OLD=$(ferry create queue-item Ops web-01 local --vault '{"function":"hello"}' --output json | jq -r '.data[0].taskId')
sqlite3 "$T_DIR/ferry.db" "DROP TABLE audit_log; DROP TABLE tokens; DROP TABLE users; ALTER TABLE queue_events DROP COLUMN actor;
DROP INDEX qi_parent; DROP TABLE machine_groups; DELETE FROM schema_migrations WHERE version >= 3" ||
    fail "the store is taken back to schema version 2"
eq "the store is at version 2" "$(sqlite3 "$T_DIR/ferry.db" "SELECT max(version) FROM schema_migrations")" 2
eq "the next command upgrades it and keeps its items" "$(task_status "$OLD")" PENDING
eq "migration 3 is recorded" "$(sqlite3 "$T_DIR/ferry.db" "SELECT version || ' ' || name FROM schema_migrations WHERE version = 3")" \
    "3 machine groups and fan-out"
ferry rm queue-item "$OLD" >/dev/null

# --- the commands --------------------------------------------------------------------------------
out=$(ferry create machine-group Ops all-servers --members web-01,web-02,web-03 --output json); rc=$?
eq "create machine-group exits 0" "$rc" 0
eq "its JSON envelope and row" "$(jqf "$out" '[.success, .message, .data[0].groupName, .data[0].teamName, (.data[0].members | join(","))] | @tsv')" \
    "true	Successfully created machine group all-servers with 3 members	all-servers	Ops	web-01,web-02,web-03"
eq "text output" "$(ferry create machine-group Ops pair --members web-01,web-02)" \
    "Successfully created machine group pair with 2 members"
eq "inspect machine-group prints the row" "$(ferry inspect machine-group Ops all-servers | jq -r '.members | join(",")')" \
    "web-01,web-02,web-03"
eq "list team-machine-groups (JSON)" "$(ferry list team-machine-groups Ops --output json | jq -r '[.data[].groupName] | join(",")')" \
    "all-servers,pair"
out=$(ferry list team-machine-groups Ops)
contains "list team-machine-groups (text) has a header" "$out" "GROUP"
contains "and the members" "$out" "web-01,web-02,web-03"
wide=$(awk 'length > 100' <<<"$out" | wc -l)
eq "the table fits 100 columns" "$wide" 0
many=$(for i in $(seq 1 30); do echo -n "m$i,"; done)
for i in $(seq 1 30); do ferry create machine Ops local "m$i" --vault '{"connection":"local"}' >/dev/null; done
ferry create machine-group Ops big --members "${many%,}" >/dev/null
out=$(ferry list team-machine-groups Ops)
eq "a group of 30 still fits 100 columns" "$(awk 'length > 100' <<<"$out" | wc -l)" 0
contains "its members are cut with a count" "$out" "(+"

# bad input: exit 1 (a store refusal) or 2 (usage), one line naming what is wrong and the fix
bad() { # bad NAME WANT_RC NEEDLE ARGS...
    local name=$1 want=$2 needle=$3; shift 3
    local out rc
    out=$(ferry "$@" 2>&1); rc=$?
    eq "$name: exit $want" "$rc" "$want"
    contains "$name: says so" "$out" "$needle"
    eq "$name: one line" "$(wc -l <<<"$out")" 1
}
bad "unknown member" 1 "member 'ghost': no machine named 'ghost'; create it with: ferry create machine Ops" \
    create machine-group Ops g1 --members web-01,ghost
bad "empty members" 2 "--members needs machine names" create machine-group Ops g1 --members ''
bad "no members" 2 "give the group's machines with --members" create machine-group Ops g1
bad "an empty name in the list" 2 "empty machine name" create machine-group Ops g1 --members web-01,,web-02
bad "duplicate member" 1 "member 'web-01' is listed twice" create machine-group Ops g1 --members web-01,web-01
bad "a group in a group" 1 "groups cannot contain groups" create machine-group Ops g1 --members web-01,pair
bad "a group containing itself" 1 "cannot contain itself" create machine-group Ops g1 --members g1,web-01
bad "another team's machine" 1 "belongs to team 'Dev'" create machine-group Ops g1 --members dev-01
bad "a machine's name" 1 "cannot take a machine's name" create machine-group Ops web-04 --members web-01
bad "the group exists" 1 "already has a machine group named 'pair'" create machine-group Ops pair --members web-03
bad "a machine named like a group" 1 "cannot take a group's name" create machine Dev local pair
bad "a bad group name" 1 "invalid name 'bad name'" create machine-group Ops 'bad name' --members web-01
bad "no such team" 1 "no team named 'Nope'" create machine-group Nope g1 --members web-01
bad "inspect a missing group" 1 "ferry create machine-group Ops nope --members" inspect machine-group Ops nope
bad "a member cannot be removed" 1 "take it out first with: ferry update machine-group Ops all-servers --remove web-01" \
    rm machine web-01
bad "update without a change" 2 "say what changes" update machine-group Ops pair
bad "remove a non-member" 1 "has no member 'web-04'" update machine-group Ops pair --remove web-04
bad "update to no member" 1 "non-empty list" update machine-group Ops pair --remove web-01,web-02
bad "a stale --vault-version" 1 "vault version is 1, not 7" update machine-group Ops pair --add web-03 --vault-version 7
bad "a group item on a bridge its members are not on" 1 "member 'web-01' is on bridge 'local', not 'other-bridge'" \
    create queue-item Ops all-servers other-bridge --vault '{"function":"hello"}'
bad "max_parallel must be positive" 1 "max_parallel" create queue-item Ops all-servers local --vault '{"function":"hello","max_parallel":0}'
bad "stop_on_failure is a boolean" 1 "stop_on_failure" create queue-item Ops all-servers local --vault '{"function":"hello","stop_on_failure":"yes"}'
out=$(ferry create machine-group Ops g1 --members web-01,ghost --output json); rc=$?
eq "a refusal in JSON: exit 1" "$rc" 1
eq "the error envelope" "$(jqf "$out" '[.success, .data, (.error | test("ghost"))] | @tsv')" "false		true"

out=$(ferry update machine-group Ops pair --add web-03,web-04 --remove web-01 --output json)
eq "update --add/--remove" "$(jqf "$out" '.data[0] | [(.members | join(",")), .vaultVersion] | @tsv')" "web-02,web-03,web-04	2"
out=$(ferry update machine-group Ops pair --members web-04,web-01)
eq "update --members replaces" "$out" "Successfully updated machine group pair: 2 members (vault version 3)"
eq "rm machine-group" "$(ferry rm machine-group Ops pair)" "Successfully removed machine group pair"
bad "rm a missing group" 1 "has no machine group named 'pair'" rm machine-group Ops pair
ferry update machine-group Ops big --remove m1 >/dev/null
eq "a machine out of every group can be removed" "$(ferry rm machine m1)" "Successfully removed machine m1"

# --- fan-out through the host ---------------------------------------------------------------------
LOG=$T_DIR/runs.log
: >"$LOG"
# A member's run: its start and end times (ns) and machine, in one shared log.
script_vault() { # script_vault SLEEP [EXTRA_JSON]
    local extra=${2:-}
    [[ -n $extra ]] || extra='{}'
    jq -nc --arg log "$LOG" --arg s "$1" --argjson extra "$extra" '{function:"script",
      script:("echo \"start $(date +%s%N) $FERRY_MACHINE $FERRY_TASK_ID\" >> " + $log + "; sleep " + $s +
              "; [ -e " + $log + ".fail-$FERRY_MACHINE ] && { echo \"end $(date +%s%N) $FERRY_MACHINE\" >> " + $log +
              "; echo broken >&2; exit 3; }; echo \"end $(date +%s%N) $FERRY_MACHINE\" >> " + $log)} + $extra'
}
# max_running: the most members running at once, from the log's starts and ends.
max_running() { sort -k2,2n "$LOG" | awk '$1 == "start" {n++; if (n > m) m = n} $1 == "end" {n--} END {print m + 0}'; }
starts_of() { grep -c "^start .* $1 " "$LOG"; }
children() { ferry list queue --machine "$1" --output json | jq -r --arg p "$2" '[.data[] | select(.parentTaskId == $p)] | length'; }

start_host || { fail "the host starts"; t_done; exit 1; }

# max_parallel: four members, two at a time.
ferry create machine-group Ops quad --members web-01,web-02,web-03,web-04 >/dev/null
out=$(ferry create queue-item Ops quad local --vault "$(script_vault 1 '{"max_parallel":2}')" --output json)
P=$(jqf "$out" '.data[0].taskId')
eq "the group item's row names the group" "$(jqf "$out" '.data[0] | [.machineName, .status] | @tsv')" "quad	PROCESSING"
eq "list queue --machine GROUP shows the parent and its four members" \
    "$(ferry list queue --machine quad --output json | jq -r --arg p "$P" '[.data[] | select(.taskId == $p or .parentTaskId == $p)] | length')" 5
wait_status "$P" COMPLETED 40 || fail "the group item completes" "$(ferry queue trace "$P")"
eq "the group item COMPLETED" "$(task_status "$P")" COMPLETED
eq "never more than max_parallel members at once" "$(max_running)" 2
eq "each member ran once" "$(for m in web-01 web-02 web-03 web-04; do starts_of "$m"; done | tr '\n' ' ')" "1 1 1 1 "
r=$(ferry list queue --task-id "$P" --output json | jq -c '.data[0].responseVault')
eq "the response lists every member" "$(jqf "$r" '[.total, .completed, ([.members[].machine] | join(","))] | @tsv')" \
    "4	4	web-01,web-02,web-03,web-04"
eq "with its task id and status" "$(jqf "$r" '[.members[] | select((.taskId | length) == 36 and .status == "COMPLETED" and .error == null)] | length')" 4
tl=$(ferry queue trace "$P" --output json | jq -r '.data.timeline[] | "\(.action) \(.details)"')
contains "queue trace shows the fan-out" "$tl" "FANOUT machine group quad: 4 members, at most 2 at once"
eq "and each member's end" "$(grep -c '^MEMBER_ENDED' <<<"$tl")" 4
contains "and the end" "$tl" "COMPLETED 4 of 4 members completed"
out=$(ferry queue trace "$P")
contains "the text trace shows the members" "$out" '"machine": "web-03"'

# create queue-items: a line for a group fans out like create queue-item.
out=$(printf '%s\n' '{"team":"Ops","machine":"all-servers","bridge":"local","vault":{"function":"hello"}}' \
    '{"team":"Ops","machine":"web-04","bridge":"local","vault":{"function":"hello"}}' | ferry create queue-items --output json)
B=$(jqf "$out" '.data.taskIds[0]')
eq "create queue-items: two lines, two items" "$(jqf "$out" '.data.created')" 2
eq "the group line's item is the parent" "$(ferry list queue --task-id "$B" --output json | jq -r '.data[0].machineName')" all-servers
wait_status "$B" COMPLETED 30 || fail "the bulk group item completes" "$(ferry queue trace "$B")"
eq "with three members" "$(children all-servers "$B")" 3

# A failing member: the parent FAILED with the per-member list.
: >"$LOG"
touch "$LOG.fail-web-02"
P=$(ferry create queue-item Ops all-servers local --vault "$(script_vault 0)" --output json | jq -r '.data[0].taskId')
wait_status "$P" FAILED 40 || fail "a group item with a failing member fails" "$(ferry queue trace "$P")"
r=$(ferry list queue --task-id "$P" --output json | jq -c '.data[0]')
eq "the parent FAILED" "$(jqf "$r" .status)" FAILED
eq "its reason names the member" "$(jqf "$r" .lastFailureReason)" "2 of 3 members completed; not completed: web-02 FAILED"
eq "the member list says who failed and why" \
    "$(jqf "$r" '.responseVault.members[] | select(.machine == "web-02") | [.status, (.error | test("script exited 3"))] | @tsv')" "FAILED	true"
eq "the others completed" "$(jqf "$r" '[.responseVault.members[] | select(.status == "COMPLETED")] | length')" 2

# Retry of the parent: runs again only the members that did not complete.
rm -f "$LOG.fail-web-02"
: >"$LOG"
out=$(ferry queue retry "$P" --output json)
R=$(jqf "$out" '.data[0].taskId')
wait_status "$R" COMPLETED 40 || fail "the retry completes" "$(ferry queue trace "$R")"
eq "the retry ran only the failed member" "$(cut -d' ' -f3 "$LOG" | sort -u | tr '\n' ' ')" "web-02 "
eq "the retry is linked to the original" "$(ferry list queue --task-id "$R" --output json | jq -r '.data[0] | [.parentTaskId, .linkKind] | @tsv')" \
    "$P	retry"

# stop_on_failure: one at a time, the first fails, the rest never start.
: >"$LOG"
touch "$LOG.fail-web-01"
P=$(ferry create queue-item Ops quad local --vault "$(script_vault 0 '{"max_parallel":1,"stop_on_failure":true}')" --output json | jq -r '.data[0].taskId')
wait_status "$P" FAILED 40 || fail "stop_on_failure: the group item fails" "$(ferry queue trace "$P")"
eq "only the first member ran" "$(grep -c '^start' "$LOG")" 1
r=$(ferry list queue --task-id "$P" --output json | jq -c '.data[0].responseVault')
eq "the rest were cancelled" "$(jqf "$r" '[.failed, .cancelled] | @tsv')" "1	3"
contains "saying why" "$(jqf "$r" '.members[1].error')" "stop_on_failure: member web-01"
rm -f "$LOG.fail-web-01"

# Cancel: the running members are stopped, the waiting ones never start.
: >"$LOG"
P=$(ferry create queue-item Ops quad local --vault "$(script_vault 30 '{"max_parallel":2}')" --output json | jq -r '.data[0].taskId')
wait_for 20 lines_at_least "$LOG" 2 || fail "two members started"
out=$(ferry queue cancel "$P" --output json)
eq "cancel the group item" "$(jqf "$out" '.success')" true
wait_status "$P" CANCELLED 30 || fail "the group item ends CANCELLED" "$(ferry queue trace "$P")"
r=$(ferry list queue --task-id "$P" --output json | jq -c '.data[0].responseVault')
eq "every member CANCELLED" "$(jqf "$r" '[.members[] | select(.status == "CANCELLED")] | length')" 4
eq "the waiting members never started" "$(grep -c '^start' "$LOG")" 2
eq "no member item is left running" \
    "$(ferry list queue --machine quad --status PENDING,ASSIGNED,PROCESSING,CANCELLING --output json | jq '.data | length')" 0

# A schedule firing on a group: every fire fans out. The scheduler's test clock runs 60
# times faster, so "* * * * *" fires about once a second.
stop_host
export FERRY_TEST_CLOCK_RATE=60
export FERRY_TEST_CLOCK_OFFSET_MS=$(($(date -u -d 2031-06-01T00:00:30Z +%s)000 - $(date +%s%3N) * 60))
ferry create schedule Ops every-minute --vault '{"cron":"* * * * *","timezone":"UTC","machine":"all-servers",
  "queue_config":{"function":"hello"}}' >/dev/null
eq "a schedule on a group is accepted" "$(ferry list team-schedules Ops --output json | jq -r '.data[0].machine')" all-servers
start_host
fired() { ferry list queue --machine all-servers --output json | jq -r '[.data[] | select(.scheduleName == "every-minute" and .linkKind == null and .status == "COMPLETED")] | length'; }
at_least_fired() { (($(fired) >= 1)); }
wait_for 30 at_least_fired || fail "the schedule fired on the group" "$(ferry list queue --machine all-servers)"
ferry update schedule-vault Ops every-minute --vault '{"enabled":false}' >/dev/null
S=$(ferry list queue --machine all-servers --output json | jq -r '[.data[] | select(.scheduleName == "every-minute" and .linkKind == null and .status == "COMPLETED")][0].taskId')
eq "a fire is a parent with one member per machine" "$(children all-servers "$S")" 3
eq "its members completed" "$(ferry list queue --task-id "$S" --output json | jq -r '.data[0].responseVault.completed')" 3
stop_host
unset FERRY_TEST_CLOCK_RATE FERRY_TEST_CLOCK_OFFSET_MS
start_host

# A host killed with SIGKILL mid-fan-out, then started again: the members it was running
# end (FAILED: the script is not idempotent), the others run once, the parent ends.
: >"$LOG"
P=$(ferry create queue-item Ops quad local --vault "$(script_vault 4 '{"max_parallel":2}')" --output json | jq -r '.data[0].taskId')
wait_for 20 lines_at_least "$LOG" 2 || fail "two members started before the kill"
kill -9 "$HOST_PID"
wait "$HOST_PID" 2>/dev/null
HOST_PID=
eq "the parent is still running while its host is gone" "$(task_status "$P")" PROCESSING
start_host
wait_status "$P" FAILED 60 || fail "the parent ends after the restart" "$(ferry queue trace "$P")"
r=$(ferry list queue --task-id "$P" --output json | jq -c '.data[0].responseVault')
eq "the two interrupted members failed as host lost" \
    "$(jqf "$r" '[.members[] | select(.status == "FAILED" and (.error | test("host")))] | length')" 2
eq "the two waiting members completed" "$(jqf "$r" '[.members[] | select(.status == "COMPLETED")] | length')" 2
eq "each member started exactly once" "$(for m in web-01 web-02 web-03 web-04; do starts_of "$m"; done | tr '\n' ' ')" "1 1 1 1 "
eq "the parent ended once" "$(ferry queue trace "$P" --output json | jq '[.data.timeline[] | select(.action == "FAILED")] | length')" 1
stop_host

# --- two hosts of one bridge (a PostgreSQL store): one parent, settled once ------------------------
if [[ ${FERRY_TEST_DRIVER:-sqlite} == postgres ]]; then
    start_host
    "$FERRY_BIN" serve >>"$T_DIR/host2.log" 2>&1 &
    H2=$!
    T_EXTRA_PIDS="${T_EXTRA_PIDS:-} $H2"
    wait_for 10 grep -q "serving bridge" "$T_DIR/host2.log" || fail "the second host starts"
    for i in $(seq 1 12); do ferry create machine Ops local "w$i" --vault '{"connection":"local"}' >/dev/null; done
    ferry create machine-group Ops dozen --members "$(seq -s, -f 'w%g' 1 12)" >/dev/null
    ids=()
    for k in 1 2 3 4 5; do
        ids+=("$(ferry create queue-item Ops dozen local --vault '{"function":"hello"}' --output json | jq -r '.data[0].taskId')")
    done
    all_done() { local id; for id in "${ids[@]}"; do status_is "$id" COMPLETED || return 1; done; }
    wait_for 60 all_done || fail "two hosts complete five fan-outs of twelve"
    ends=0 members=0
    for id in "${ids[@]}"; do
        ends=$((ends + $(ferry queue trace "$id" --output json | jq '[.data.timeline[] | select(.action == "COMPLETED")] | length')))
        members=$((members + $(ferry list queue --task-id "$id" --output json | jq '.data[0].responseVault.completed')))
    done
    eq "each parent settled exactly once" "$ends" 5
    eq "every member completed once" "$members" 60
    by_host=$(ferry list queue --machine dozen --output json | jq -r '[.data[] | select(.linkKind == "member") | .leaseOwner] | unique | length')
    echo "# the members ran on $by_host host(s)"
    kill -TERM "$H2"
    wait "$H2" 2>/dev/null
    stop_host
fi

t_done
