#!/usr/bin/env bash
# History upkeep (issue 18, point 5; docs/operations.md "History"). With history.keep_days
# the host prunes ended items older than that, with their events, in batches of 500 with
# its loop free between them: 50,000 old items go while a busy queue keeps draining, and the
# longest gap between two item starts during the prune stays well under a second. Items
# that something still waiting or running needs stay: a PENDING item `after` one, a
# PENDING fallback of one, the members of a group still running, an item whose
# notification is not sent yet. `ferry queue prune --before DATE [--status S …]
# [--dry-run]` does the same by hand and says how many rows went (text and JSON); bad
# dates and statuses are one-line usage errors. Migration 10 (the chores table) upgrades
# an existing store. A host stopped mid-prune gives the run back to the next. Runs on
# SQLite and, as history_prune.sh@pg, on PostgreSQL.
. "$(dirname "$0")/../lib.sh"

write_config 'workers = { count = 4; };' 'history = { keep_days = 1; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops m1
for m in m2 m3 m4; do ferry create machine Ops local $m --vault '{"connection":"local"}' >/dev/null; done
ferry create bridge local-region far >/dev/null
ferry create machine Ops far fm --vault '{"connection":"local"}' >/dev/null
DB=$T_DIR/ferry.db
q() { sqlite3 "$DB" "$1"; }
NOW=$(($(date +%s) * 1000))
OLD=$((NOW - 10 * 86400000))
mk() { ferry create queue-item Ops fm far --vault '{"function":"fx_noop"}' --output json "$@" | jq -r '.data[0].taskId'; }

# Items that ended long ago but are still needed; and two that may go (D, and E after it),
# with an event each (CREATED).
A=$(mk); B=$(mk --after "$A")   # B waits after A
F=$(mk); C=$(mk)                # C: F's fallback, waiting
P=$(mk); G=$(mk)                # G: a member of group item P, which still runs
N=$(mk)                         # N: its notification is not sent yet
D=$(mk); E=$(mk --after "$D")   # both ended: both go
R=$(mk)                         # ended just now: stays
q "UPDATE queue_items SET status = 'COMPLETED', finished_at = $OLD WHERE task_id IN ('$A', '$G', '$N', '$E');
   UPDATE queue_items SET status = 'FAILED', finished_at = $OLD WHERE task_id = '$F';
   UPDATE queue_items SET status = 'CANCELLED', finished_at = $OLD WHERE task_id = '$D';
   UPDATE queue_items SET status = 'COMPLETED', finished_at = $NOW WHERE task_id = '$R';
   UPDATE queue_items SET parent_task_id = '$F', link_kind = 'fallback' WHERE task_id = '$C';
   UPDATE queue_items SET status = 'PROCESSING', started_at = $OLD WHERE task_id = '$P';
   UPDATE queue_items SET parent_task_id = '$P', link_kind = 'member' WHERE task_id = '$G';
   INSERT INTO notify_outbox (task_id, bridge_name, due_ms) VALUES ('$N', 'far', $((NOW + 86400000)))"

# 50,000 items that ended 10 days ago (one in ten FAILED), two events each.
old_items() { # FIRST_SEQ COUNT STATUS_EXPR
    q "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < $2)
       INSERT INTO queue_items (seq, task_id, team_name, machine_name, bridge_name, function,
         priority, status, vault, created_at, updated_at, run_after, started_at, finished_at)
       SELECT $1 + i, '00000000-0000-4000-8000-' || (100000000000 + $1 + i), 'Ops', 'm1', 'local',
         'fx_noop', 3, $3, '{}', $OLD, $OLD, $OLD, $OLD, $OLD + i FROM k;
       INSERT INTO queue_events (task_seq, action, details, details_is_json, at)
         SELECT seq, 'CREATED', 'old', 0, created_at FROM queue_items WHERE seq > $1 AND seq <= $1 + $2;
       INSERT INTO queue_events (task_seq, action, details, details_is_json, at)
         SELECT seq, 'COMPLETED', 'old', 0, finished_at FROM queue_items
         WHERE seq > $1 AND seq <= $1 + $2 AND $4"
}
old_items 1000000 50000 "CASE WHEN i % 10 = 0 THEN 'FAILED' ELSE 'COMPLETED' END" "1 = 1"
eq "50,000 old items with 100,000 events are in the store" \
    "$(q "SELECT count(*) FROM queue_items WHERE seq > 1000000 AND seq <= 1050000") $(q "SELECT count(*) FROM queue_events WHERE task_seq > 1000000 AND task_seq <= 1050000")" \
    "50000 100000"

# A busy queue: 800 short items over four machines, queued before the host starts, so that
# they drain while it prunes.
for i in $(seq 800); do
    echo "{\"team\":\"Ops\",\"machine\":\"m$((i % 4 + 1))\",\"bridge\":\"local\",\"vault\":{\"function\":\"fx_sleep\",\"seconds\":0.02}}"
done | ferry create queue-items >/dev/null
start_host
wait_for 120 grep -q "history pruned:" "$T_DIR/host.log" || fail "the host pruned the history" "$(tail -5 "$T_DIR/host.log")"
line=$(grep "history pruned:" "$T_DIR/host.log")
contains "the host logs how many rows went" "$line" "history pruned: 50002 items and 100002 events that ended before "
eq "... once" "$(grep -c "history pruned:" "$T_DIR/host.log")" 1
drained() { [[ $(q "SELECT count(*) FROM queue_items WHERE function = 'fx_sleep' AND status <> 'COMPLETED'") == 0 ]]; }
wait_for 120 drained && pass "the busy queue drained" || fail "the busy queue drained"

# The gaps between item starts: the prune (the chore's row says when it ran) overlapped the
# drain, and no two consecutive starts of the whole drain are a second apart. A prune that
# held the loop (one transaction for everything) shows as one such gap, and as few starts
# during the prune.
read -r ps pf <<<"$(q "SELECT started_at, finished_at FROM chores WHERE name = 'history.prune'" | tr '|' ' ')"
starts=$(q "SELECT started_at FROM queue_items WHERE function = 'fx_sleep' ORDER BY started_at")
read -r n_in max_gap prune_ms <<<"$(awk -v ps="$ps" -v pf="$pf" '
    NR > 1 && $1 - prev > max { max = $1 - prev }
    { prev = $1; if ($1 >= ps && $1 <= pf) n++ }
    END { print n + 0, max + 0, pf - ps }' <<<"$starts")"
echo "# prune ${prune_ms} ms; $n_in item starts during it; longest gap between two starts ${max_gap} ms"
((n_in >= 20)) && pass "items kept starting while the prune ran ($n_in starts in $prune_ms ms)" ||
    fail "items kept starting while the prune ran" "$n_in starts in $prune_ms ms"
((max_gap < 1000)) && pass "the longest gap between two item starts is well under a second (${max_gap} ms)" ||
    fail "the longest gap between two item starts is well under a second" "${max_gap} ms"

eq "the old items and their events are gone" \
    "$(q "SELECT count(*) FROM queue_items WHERE seq > 1000000 AND seq <= 1050000") $(q "SELECT count(*) FROM queue_events WHERE task_seq > 1000000 AND task_seq <= 1050000")" "0 0"
for t in A B F C P G N R; do
    eq "kept: $t" "$(q "SELECT count(*) FROM queue_items WHERE task_id = '${!t}'")" 1
done
for t in D E; do eq "pruned: $t (ended, and only ended items need it)" "$(q "SELECT count(*) FROM queue_items WHERE task_id = '${!t}'")" 0; done
eq "B is still after A" "$(q "SELECT count(*) FROM queue_deps d JOIN queue_items b ON b.seq = d.task_seq JOIN queue_items a ON a.seq = d.dep_seq WHERE b.task_id = '$B' AND a.task_id = '$A'")" 1
eq "the chore records its run, due again in a day" \
    "$(q "SELECT owner IS NULL, due_at - finished_at >= 86400000, result FROM chores WHERE name = 'history.prune'")" \
    "1|1|50002 items, 100002 events, ended before $(grep -o 'ended before [^ ,]*' <<<"$line" | cut -d' ' -f3)"
contains "the audit log has the prune" "$(ferry audit list --action queue.prune --wide)" "50002 items and 100002 events that ended before"
stop_host

# A host stopped in the middle of a prune gives it back, due at once; the next host goes on.
old_items 3000000 30000 "'COMPLETED'" "1 = 0"
q "UPDATE chores SET due_at = 0 WHERE name = 'history.prune'"
: >"$T_DIR/host.log"
# Stopped once its upkeep took the chore: a stop that came first leaves no prune to give back.
taken() { [[ $(q "SELECT owner IS NOT NULL FROM chores WHERE name = 'history.prune'") == 1 ]]; }
start_host && { wait_for 60 taken; stop_host; }
eq "stopped mid-prune: the chore is given back, due now" \
    "$(q "SELECT owner IS NULL, due_at <= $(date +%s%3N), result LIKE 'stopped with the host after %' FROM chores WHERE name = 'history.prune'")" "1|1|1"
n1=$(q "SELECT result FROM chores WHERE name = 'history.prune'" | grep -o '[0-9]*')
contains "... and the host says so" "$(cat "$T_DIR/host.log")" "history prune stopped with the host after $n1 items"
start_host
wait_for 60 grep -q "history pruned:" "$T_DIR/host.log" || fail "the next host prunes the rest"
n2=$(grep -o 'history pruned: [0-9]*' "$T_DIR/host.log" | grep -o '[0-9]*$')
eq "... the next host prunes the rest" "$((n1 + n2)) $(q "SELECT count(*) FROM queue_items WHERE seq > 3000000")" "30000 0"
stop_host

# Two hosts of one store: one prunes, the other finds the chore taken (or done) and does not.
old_items 4000000 2000 "'COMPLETED'" "1 = 0"
q "UPDATE chores SET due_at = 0 WHERE name = 'history.prune'"
T_LOG_LEVEL=debug write_config 'workers = { count = 4; };' 'history = { keep_days = 1; };'
: >"$T_DIR/host.log"
"$FERRY_BIN" serve >"$T_DIR/host2.log" 2>&1 &
H2=$!
T_EXTRA_PIDS="${T_EXTRA_PIDS:-} $H2"
start_host
one_each() {
    cat "$T_DIR/host.log" "$T_DIR/host2.log" >"$T_DIR/both.log"
    grep -q "history pruned:" "$T_DIR/both.log" && grep -q "history prune: not taken" "$T_DIR/both.log"
}
wait_for 60 one_each && pass "two hosts of one store: one prunes, the other does not take the chore" ||
    fail "two hosts of one store: one prunes, the other does not take the chore" "$(grep "history prun" "$T_DIR/both.log")"
eq "... one line of what went, in all" "$(grep -c "history pruned:" "$T_DIR/both.log") $(q "SELECT count(*) FROM queue_items WHERE seq > 4000000")" "1 0"
stop_host
kill -TERM "$H2" && wait "$H2"
T_LOG_LEVEL=info write_config 'workers = { count = 4; };' 'history = { keep_days = 1; };'

# By hand: 1,200 old items, a third of each ended status, one event each.
old_items 2000000 1200 "CASE i % 3 WHEN 0 THEN 'COMPLETED' WHEN 1 THEN 'FAILED' ELSE 'CANCELLED' END" "1 = 0"
out=$(ferry queue prune --before 1d --dry-run --output json)
eq "dry run: counts, JSON" "$(jq -c '[.success, .data.items, .data.events, .data.dryRun, .data.statuses]' <<<"$out")" \
    '[true,1200,1200,true,["COMPLETED","FAILED","CANCELLED"]]'
eq "... and removes nothing" "$(q "SELECT count(*) FROM queue_items WHERE seq > 2000000")" 1200
out=$(ferry queue prune --before "$(date -u -d @$(((NOW - 86400000) / 1000)) +%Y-%m-%dT%H:%M:%SZ)" --status failed)
eq "prune --status FAILED: text says how many rows went" "$out" \
    "pruned 400 items and 400 events that ended before $(date -u -d @$(((NOW - 86400000) / 1000)) +%Y-%m-%dT%H:%M:%S.000Z)"
eq "... the FAILED ones alone" "$(q "SELECT count(*) FROM queue_items WHERE seq > 2000000 AND status = 'FAILED'") $(q "SELECT count(*) FROM queue_items WHERE seq > 2000000")" "0 800"
out=$(ferry queue prune --before 2d --output json)
eq "prune --output json: rows and batches of 500" "$(jq -c '[.data.items, .data.events, .data.batches, .data.dryRun]' <<<"$out")" '[800,800,2,false]'
eq "... and the needed ones still stay" "$(q "SELECT count(*) FROM queue_items WHERE task_id IN ('$A', '$F', '$G', '$N')")" 4

# Bad input: one line on stderr, exit 2, nothing removed.
bad() { # NAME EXPECTED-TEXT ARGS...
    local name=$1 want=$2; shift 2
    local err rc
    err=$(ferry queue prune "$@" 2>&1 >/dev/null); rc=$?
    eq "$name: exit 2" "$rc" 2
    eq "$name: one line" "$(wc -l <<<"$err")" 1
    contains "$name: says why" "$err" "$want"
}
bad "no --before" "--before DATE is required"
bad "a bad date" "--before takes a date such as 2026-11-27" --before yesterday
bad "a bad month" "not '2026-13-01'" --before 2026-13-01
bad "an unknown status" "--status takes COMPLETED, FAILED or CANCELLED" --before 1d --status DONE
bad "a status that has not ended" "only ended items are pruned), not 'PENDING'" --before 1d --status PENDING
out=$(ferry queue prune --before nope --output json); rc=$?
eq "bad input with --output json: the failure envelope, exit 2" "$(jq -c '[.success, (.error | test("--before takes"))]' <<<"$out") $rc" "[false,true] 2"

# ferry doctor reads the store's clock (PostgreSQL: the server's; doctor.sh has the rest).
if [[ ${FERRY_TEST_DRIVER:-sqlite} == postgres ]]; then
    contains "doctor compares this machine's clock with the database server's" "$(ferry doctor)" \
        "ok    clock: this machine's clock is "
fi

# Migration 10 on a store that predates it.
q "DROP TABLE chores; DELETE FROM schema_migrations WHERE version >= 10" # as before 10 and what came after
ferry list teams >/dev/null
eq "an older store gets the chores table (migration 10)" "$(q "SELECT count(*) FROM schema_migrations WHERE version = 10") $(q "SELECT count(*) FROM chores")" "1 0"
t_done
