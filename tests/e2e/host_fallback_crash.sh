#!/usr/bin/env bash
# Nothing is ever lost (issue 14, point 1): a FAILED item's fallback is created in the
# transaction that ends the item, never after it. The host is killed (SIGKILL) at exactly
# the point after it committed the turn that ended an item FAILED: with
# FERRY_TEST_CRASH=after-failed-commit it kills itself there, before anything that follows
# the commit (settle.c). The store must then already hold the fallback, once, linked to the
# item; a host started afterwards runs it once. When the fallback was queued after that
# commit, such a crash lost it for good. Runs on PostgreSQL too (pg_fallback_crash.sh).
# The fallback (fx_record_idem) is idempotent: the dying host may have claimed it in the
# same transaction (the turn's claim follows its ends), and an idempotent item a lost host
# held is run again rather than failed, so it must run exactly once either way.
. "$(dirname "$0")/../lib.sh"

write_config 'lease = { poll_ms = 100; seconds = 2; };' \
    'workers = { count = 2; prefork = 2; pipeline = 8; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops box1
for m in 1 2 3 4 5; do
    ferry create machine Ops local "m$m" --vault '{"connection":"local"}' >/dev/null
done
db=$T_DIR/ferry.db
runs=$T_DIR/fallback.log
touch "$runs"
sql() { sqlite3 "$db" "$1"; }
fallbacks_of() { sql "SELECT count(*) FROM queue_items WHERE parent_task_id = '$1' AND link_kind = 'fallback'"; }
fallback_of() { sql "SELECT task_id FROM queue_items WHERE parent_task_id = '$1' AND link_kind = 'fallback'"; }
events_of() { sql "SELECT count(*) FROM queue_events e JOIN queue_items q ON q.seq = e.task_seq WHERE q.task_id = '$1' AND e.action = '$2'"; }
# failing MACHINE LABEL: queues an item that fails for good, whose fallback (fx_record_idem) writes
# LABEL to $runs; prints its task id.
failing() {
    ferry create queue-item Ops "$1" local --vault '{"function":"fx_result","code":"FAIL","message":"primary down","file":"'"$runs"'","label":"'"$2"'","on_failure":{"fallback_function":"fx_record_idem"}}' \
        --output json | jq -r '.data[0].taskId'
}
# crash_host: starts a host that kills itself after its first commit of a FAILED end, and
# waits for it to die; "$@" queues the work (run once the host serves).
crash_host() {
    FERRY_TEST_CRASH=after-failed-commit start_host || { fail "the crashing host starts"; return 1; }
    local pid=$HOST_PID
    "$@"
    local end=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.02; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    CRASH_RC=$?
    HOST_PID=
}

# 1. One item: the host dies right after the commit that ended it FAILED.
queue_one() { T1=$(failing box1 fb1); }
crash_host queue_one
eq "the host died right after committing the FAILED end (SIGKILL)" "$CRASH_RC" 137
contains "it died at the crash point" "$(cat "$T_DIR/host.log")" "after-failed-commit: killing this host"
eq "the item is FAILED in the store" "$(sql "SELECT status FROM queue_items WHERE task_id = '$T1'")" FAILED
eq "its fallback exists: created in the same transaction" "$(fallbacks_of "$T1")" 1
eq "the FALLBACK event is there once" "$(events_of "$T1" FALLBACK)" 1
fb1=$(fallback_of "$T1")
fb1_status=$(sql "SELECT status FROM queue_items WHERE task_id = '$fb1'")
[[ $fb1_status == PENDING || $fb1_status == PROCESSING ]] &&
    pass "the fallback is queued, or claimed by the dead host ($fb1_status)" ||
    fail "the fallback is queued, or claimed by the dead host" "$fb1_status"
eq "the fallback's trace names the original" "$(events_of "$fb1" FALLBACK_OF)" 1
eq "the fallback carries the failure" \
    "$(ferry list queue --task-id "$fb1" --output json | jq -r '.data[0].vaultContent.failure.task_id')" "$T1"
eq "nothing ran it before the crash" "$(grep -c '^fb1 ' "$runs")" 0

start_host || fail "a host starts after the crash"
wait_status "$fb1" COMPLETED 20 && pass "the new host runs the fallback" ||
    fail "the new host runs the fallback" "$(task_status "$fb1"); $(tail -5 "$T_DIR/host.log")"
eq "the fallback ran exactly once" "$(grep -c '^fb1 ' "$runs")" 1
eq "the item still has exactly one fallback" "$(fallbacks_of "$T1")" 1
stop_host
eq "after the host stopped, the fallback still ran exactly once" "$(grep -c '^fb1 ' "$runs")" 1

# 2. Several items ending in the same turns (one statement ends many): every item the store
# shows FAILED by its own attempt has its fallback, once; a host started afterwards runs
# each exactly once. (An item whose attempt was cut by the crash is recovered as "host lost",
# which never runs a fallback.)
queue_many() {
    for k in 1 2 3 4 5; do
        echo '{"team":"Ops","machine":"m'$k'","bridge":"local","vault":{"function":"fx_result","code":"FAIL","message":"down","file":"'"$runs"'","label":"many'$k'","on_failure":{"fallback_function":"fx_record_idem"}}}'
    done | ferry create queue-items >/dev/null
}
crash_host queue_many
eq "the host died after a commit of FAILED ends" "$CRASH_RC" 137
originals=$(sql "SELECT task_id FROM queue_items WHERE function = 'fx_result' AND task_id <> '$T1'")
eq "five items were queued" "$(wc -w <<<"$originals")" 5
ended=0
for t in $originals; do
    if [[ $(sql "SELECT status FROM queue_items WHERE task_id = '$t'") == FAILED ]]; then
        ended=$((ended + 1))
        eq "FAILED item $t has its fallback once" "$(fallbacks_of "$t")" 1
    fi
done
((ended >= 1)) && pass "at least one item ended FAILED before the crash ($ended)" ||
    fail "at least one item ended FAILED before the crash"
start_host || fail "a host starts after the second crash"
for t in $originals; do
    wait_for 20 bash -c "[[ \$(sqlite3 '$db' \"SELECT status FROM queue_items WHERE task_id = '$t'\") == FAILED ]]" ||
        fail "item $t ends FAILED" "$(task_status "$t")"
done
for t in $originals; do
    reason=$(ferry list queue --task-id "$t" --output json | jq -r '.data[0].lastFailureReason')
    if [[ $reason == *"host lost"* ]]; then
        eq "lost item $t has no fallback" "$(fallbacks_of "$t")" 0
        continue
    fi
    eq "item $t has exactly one fallback" "$(fallbacks_of "$t")" 1
    f=$(fallback_of "$t")
    wait_status "$f" COMPLETED 20 || fail "the fallback of $t completes" "$(task_status "$f")"
    label=$(ferry list queue --task-id "$t" --output json | jq -r '.data[0].vaultContent.label')
    eq "the fallback of $t ran exactly once" "$(grep -c "^$label " "$runs")" 1
done
stop_host
eq "no item has two fallbacks" \
    "$(sql "SELECT count(*) FROM (SELECT parent_task_id FROM queue_items WHERE link_kind = 'fallback' GROUP BY parent_task_id HAVING count(*) > 1) x")" 0
t_done
