#!/usr/bin/env bash
# Items the store says a live host holds but that it does not run (a claim or an outcome
# that went with a COMMIT lost with the store's connection, as pg_restart once showed): the
# host ends them like a crashed host's instead of renewing their leases for ever — a claimed
# one goes back to the queue and runs, an idempotent running one is retried, another running
# one FAILS with the reason — and nothing it does run is touched.
. "$(dirname "$0")/../lib.sh"

write_config 'lease = { poll_ms = 100; seconds = 30; };'
install_plugins
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c
setup_local_machine Ops box1
ferry create bridge local-region elsewhere >/dev/null
ferry create machine Ops elsewhere box2 --vault '{"connection":"local"}' >/dev/null
start_host
owner=$(grep -o 'serving bridge local as [^:]*:[0-9]*:[0-9a-f]*' "$T_DIR/host.log" | awk '{print $5}')
[[ -n $owner ]] && pass "the host's lease owner is $owner" || fail "the host names its lease owner" "$(cat "$T_DIR/host.log")"

sql() {
    python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=5)
c.execute(sys.argv[2]); c.commit()' "$T_DIR/ferry.db" "$1"
}
# orphan STATUS VAULT: an item of box2 (a bridge no host serves), then made to look held by
# this host on its bridge with a live lease; prints its task id.
orphan() {
    local task
    task=$(ferry create queue-item Ops box2 elsewhere --vault "$2" --output json | jq -r '.data[0].taskId')
    sql "UPDATE queue_items SET bridge_name = 'local', machine_name = 'box1', status = '$1',
         lease_owner = '$owner', claim_token = 'lost-claim', assigned_at = updated_at,
         started_at = CASE WHEN '$1' = 'PROCESSING' THEN updated_at END,
         lease_expires_at = (strftime('%s','now') + 30) * 1000 WHERE task_id = '$task'"
    echo "$task"
}
running=$(ferry create queue-item Ops box1 local --vault '{"function":"fx_sleep","seconds":12}' --output json | jq -r '.data[0].taskId')
wait_status "$running" PROCESSING 10
claimed=$(orphan ASSIGNED '{"function":"fx_noop"}')
idem=$(orphan PROCESSING '{"function":"fx_noop"}')
plain=$(orphan PROCESSING '{"function":"fx_record","file":"'"$T_DIR"'/runs","label":"x"}')

wait_status "$plain" FAILED 15 && pass "a lost non-idempotent attempt fails within seconds" || fail "the lost attempt is ended" "$(task_status "$plain")"
contains "with the reason" "$(ferry list queue --task-id "$plain" --output json | jq -r '.data[0].lastFailureReason')" "attempt lost by this host while running"
eq "the attempt the host does run is untouched" "$(task_status "$running")" PROCESSING
wait_status "$running" COMPLETED 30 && pass "and completes" || fail "the running attempt completes" "$(task_status "$running")"
# box1 runs one item at a time: the other two follow once the real attempt is done.
wait_status "$idem" COMPLETED 15 && pass "a lost idempotent attempt is retried and completes" || fail "the idempotent one is retried" "$(task_status "$idem")"
wait_status "$claimed" COMPLETED 15 && pass "a lost claim goes back to the queue and runs" || fail "the claim is released" "$(task_status "$claimed")"
t_done
