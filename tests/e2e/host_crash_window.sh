#!/usr/bin/env bash
# Exactly once across a host crash right after an attempt started: the item's attempt kills
# its own host (SIGKILL) the moment it starts, as early as a crash can fall after a start.
# The claim must already be committed then: the store shows the item PROCESSING with its
# ASSIGNED event, never PENDING (which would have the next host run it again as its first
# attempt, with no trace of the one that ran). A host started afterwards recovers it once
# its lease expires (not idempotent: FAILED, "host lost") and never runs it again.
. "$(dirname "$0")/../lib.sh"

write_config 'lease = { poll_ms = 100; seconds = 2; };' \
    'workers = { count = 2; prefork = 2; pipeline = 16; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops box1
for m in $(seq 1 20); do
    ferry create machine Ops local "m$m" --vault '{"connection":"local"}' >/dev/null
done

runs=$T_DIR/runs
for i in 1 2 3; do
    start_host || { fail "host $i starts"; break; }
    pid=$HOST_PID
    # A busy host: the turn that starts the attempt also commits other items' ends and
    # claims, so its commit takes a while to write.
    for k in $(seq 0 399); do
        echo '{"team":"Ops","machine":"m'$((k % 20 + 1))'","bridge":"local","vault":{"function":"fx_noop"},"priority":1}'
    done | ferry create queue-items >/dev/null
    task=$(ferry create queue-item Ops box1 local --priority 2 --vault '{"function":"fx_kill_host","file":"'"$runs"'","label":"k'$i'"}' --output json | jq -r '.data[0].taskId')
    end=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.01; done
    wait "$pid" 2>/dev/null
    rc=$?
    HOST_PID=
    eq "the attempt killed host $i (SIGKILL)" "$rc" 137
    eq "item $i ran once before the crash" "$(grep -c "^k$i\$" "$runs" 2>/dev/null)" 1
    eq "item $i is held in the store: its claim was committed before it started" \
        "$(sqlite3 "$T_DIR/ferry.db" "SELECT status FROM queue_items WHERE task_id = '$task'")" PROCESSING
    eq "item $i has its ASSIGNED event" \
        "$(sqlite3 "$T_DIR/ferry.db" "SELECT count(*) FROM queue_events e JOIN queue_items q ON q.seq = e.task_seq WHERE q.task_id = '$task' AND e.action = 'ASSIGNED'")" 1
    start_host || { fail "host after crash $i starts"; break; }
    wait_status "$task" FAILED 20 && pass "item $i is recovered after its lease: FAILED" ||
        fail "item $i is recovered after its lease" "$(task_status "$task"); $(tail -5 "$T_DIR/host.log")"
    contains "its reason says the host was lost" \
        "$(ferry list queue --task-id "$task" --output json | jq -r '.data[0].lastFailureReason')" "host lost"
    eq "item $i never ran again" "$(grep -c "^k$i\$" "$runs")" 1
    stop_host
done
t_done
