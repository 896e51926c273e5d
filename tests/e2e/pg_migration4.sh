#!/usr/bin/env bash
# Store migration 4 on PostgreSQL (issue 14, point 6): the hot path's writes touch fewer
# indexes. A store of the schema before it (version 3: migration 4 undone by hand on a store
# with history) is brought up to date when opened:
#   - qi_owner_active and qi_lease_active are gone, and so are queue_events' primary key and
#     its foreign key to queue_items; a trigger removes an item's events with the item;
#   - the history reads as before (the trace of a completed item);
#   - removing an item removes its events, and only its own;
#   - a host still claims, heartbeats, finishes, and another host recovers the items of a
#     host that died (the expired-lease scan and the heartbeat without their indexes).
# On SQLite, migration 4 rewrites the status CHECK of queue_items and qi_machine_active's
# predicate as comparisons (an IN list of three or more constants costs SQLite a temporary
# b-tree per inserted row): a store of version 3 is brought up to date, keeps its items,
# still refuses a status outside the seven, and a host claims through the index.
. "$(dirname "$0")/../lib.sh"
. "$FERRY_ROOT/tests/helpers/pg_test.sh"

# --- SQLite ------------------------------------------------------------------------------------------
write_config
install_plugins
export FERRY_CONFIG=$T_DIR/ferry.conf
ferry init >/dev/null 2>&1 || fail "ferry init"
ferry create queue-item Default localhost local --vault '{"function":"hello","name":"t"}' >/dev/null
old_check="CHECK (status IN ('PENDING','ASSIGNED','PROCESSING',  'CANCELLING','COMPLETED','FAILED','CANCELLED'))"
sqlite3 "$T_DIR/ferry.db" "PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = substr(sql, 1, instr(sql, 'CHECK (status =') - 1) || '${old_check//\'/\'\'}'
    || substr(sql, instr(sql, ', vault TEXT NOT NULL')) WHERE type = 'table' AND name = 'queue_items';
PRAGMA writable_schema = OFF;
DROP INDEX qi_machine_active;
CREATE INDEX qi_machine_active ON queue_items(machine_name) WHERE status IN ('ASSIGNED','PROCESSING','CANCELLING');
DELETE FROM schema_migrations WHERE version >= 4;"
contains "the store of version 3 has the IN list" "$(sqlite3 "$T_DIR/ferry.db" "SELECT sql FROM sqlite_schema WHERE name = 'queue_items'")" "$old_check"
ferry create queue-items <<<'{"team":"Default","machine":"localhost","bridge":"local","vault":{"function":"hello","name":"u"}}' >/dev/null ||
    fail "create queue-items on the store of version 3"
eq "migration 4 is applied when the store is opened" \
    "$(sqlite3 "$T_DIR/ferry.db" "SELECT group_concat(version, ',') FROM (SELECT version FROM schema_migrations WHERE version <= 4 ORDER BY version)")" "1,2,3,4"
schema=$(sqlite3 "$T_DIR/ferry.db" "SELECT sql FROM sqlite_schema WHERE name = 'queue_items'")
contains "the status CHECK is written as comparisons" "$schema" "CHECK (status = 'PENDING' OR status = 'ASSIGNED' OR status = 'PROCESSING' OR status = 'CANCELLING' OR status = 'COMPLETED' OR status = 'FAILED' OR status = 'CANCELLED')"
not_contains "and the IN list is gone" "$schema" "status IN"
eq "the store passes SQLite's integrity check" "$(sqlite3 "$T_DIR/ferry.db" "PRAGMA integrity_check")" ok
eq "both items are there" "$(sqlite3 "$T_DIR/ferry.db" "SELECT count(*) FROM queue_items WHERE status = 'PENDING'")" 2
contains "qi_machine_active's predicate is written as comparisons" \
    "$(sqlite3 "$T_DIR/ferry.db" "SELECT sql FROM sqlite_schema WHERE name = 'qi_machine_active'")" \
    "WHERE status = 'ASSIGNED' OR status = 'PROCESSING' OR status = 'CANCELLING'"
# A claim counts a machine's active items through that index (INDEXED BY on SQLite).
ferry serve --drain >"$T_DIR/sqlite_host.log" 2>&1
eq "a host drains the migrated store" "$(sqlite3 "$T_DIR/ferry.db" "SELECT group_concat(status) FROM queue_items")" "COMPLETED,COMPLETED"
out=$(sqlite3 "$T_DIR/ferry.db" "UPDATE queue_items SET status = 'DONE'" 2>&1)
contains "a status outside the seven is still refused" "$out" "CHECK constraint failed"
for st in PENDING ASSIGNED PROCESSING CANCELLING COMPLETED FAILED CANCELLED; do
    sqlite3 "$T_DIR/ferry.db" "UPDATE queue_items SET status = '$st' WHERE seq = (SELECT min(seq) FROM queue_items)" 2>/dev/null ||
        fail "status $st is taken"
done
pass "each of the seven statuses is taken"

# --- PostgreSQL --------------------------------------------------------------------------------------
pg_require

URL=$(pg_new_db "ferry_mig4_$$") || { fail "create the test database"; t_done; exit 1; }
build_fixture "$T_DIR/plugins/misbehave.so" misbehave.c && chmod 644 "$T_DIR/plugins/misbehave.so"
export FERRY_CONFIG=$T_DIR/pg.conf
pg_config "$FERRY_CONFIG" local "$URL" "workers = { count = 2; prefork = 0; };" "lease = { seconds = 3; };"

ferry create region r >/dev/null
ferry create bridge r local >/dev/null
ferry create team Ops >/dev/null
ferry create machine Ops local m1 --vault '{"connection":"local"}' >/dev/null
ferry create machine Ops local m2 --vault '{"connection":"local"}' >/dev/null
item() { ferry create queue-item Ops "$1" local --vault '{"function":"hello","name":"t"}' --output json | jq -r '.data[0].taskId'; }
done1=$(item m1)
ferry serve --drain >"$T_DIR/host0.log" 2>&1
eq "the first item completed" "$(pg_sql "$URL" "SELECT status FROM queue_items WHERE task_id = '$done1'")" COMPLETED
gone=$(item m2)
kept=$(item m2)
ferry queue cancel "$gone" >/dev/null

# --- back to schema version 3 ----------------------------------------------------------------------
pg_sql "$URL" "DROP TRIGGER queue_items_events ON queue_items;
DROP FUNCTION ferry_events_of_deleted();
ALTER TABLE queue_events ADD PRIMARY KEY (seq);
ALTER TABLE queue_events ADD FOREIGN KEY (task_seq) REFERENCES queue_items(seq) ON DELETE CASCADE;
CREATE INDEX qi_owner_active ON queue_items (lease_owner) WHERE status IN ('ASSIGNED','PROCESSING','CANCELLING');
CREATE INDEX qi_lease_active ON queue_items (lease_expires_at) WHERE status IN ('ASSIGNED','PROCESSING','CANCELLING');
DELETE FROM schema_migrations WHERE version >= 4;" >/dev/null
eq "the store is at schema version 3" "$(pg_sql "$URL" "SELECT max(version) FROM schema_migrations")" 3
events_before=$(pg_sql "$URL" "SELECT count(*) FROM queue_events")

# --- opened by this ferry ----------------------------------------------------------------------------
trace=$(ferry queue trace "$done1" --output json 2>&1)
eq "PostgreSQL: migration 4 is applied when the store is opened" \
    "$(pg_sql "$URL" "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations WHERE version <= 4")" "1,2,3,4"
eq "qi_owner_active and qi_lease_active are gone" \
    "$(pg_sql "$URL" "SELECT count(*) FROM pg_indexes WHERE indexname IN ('qi_owner_active', 'qi_lease_active')")" 0
eq "queue_events has neither a primary key nor a foreign key" \
    "$(pg_sql "$URL" "SELECT count(*) FROM pg_constraint WHERE conrelid = 'queue_events'::regclass")" 0
eq "a trigger removes the events of removed items" \
    "$(pg_sql "$URL" "SELECT count(*) FROM pg_trigger WHERE tgname = 'queue_items_events' AND tgrelid = 'queue_items'::regclass")" 1
eq "every event is still there" "$(pg_sql "$URL" "SELECT count(*) FROM queue_events")" "$events_before"
eq "the completed item's trace reads as before" \
    "$(jq -r '[.data.timeline[]?.action // .data[0].timeline[]?.action] | join(",")' <<<"$trace" 2>/dev/null)" \
    "CREATED,ASSIGNED,PROCESSING,LOG,COMPLETED"

# --- removing an item removes its events, and only its own -------------------------------------------
gone_seq=$(pg_sql "$URL" "SELECT seq FROM queue_items WHERE task_id = '$gone'")
kept_events=$(pg_sql "$URL" "SELECT count(*) FROM queue_events e JOIN queue_items q ON q.seq = e.task_seq WHERE q.task_id <> '$gone'")
ferry rm queue-item "$gone" >/dev/null
eq "the removed item is gone" "$(pg_sql "$URL" "SELECT count(*) FROM queue_items WHERE task_id = '$gone'")" 0
eq "its events went with it" "$(pg_sql "$URL" "SELECT count(*) FROM queue_events WHERE task_seq = $gone_seq")" 0
eq "the other items' events stay" "$(pg_sql "$URL" "SELECT count(*) FROM queue_events")" "$kept_events"

# --- hosts on the migrated store ---------------------------------------------------------------------
# A host claims kept and a slow item, then dies; the second host recovers the slow one once its
# lease (3 s) has expired, and the first host's heartbeats kept it alive until then.
slow=$(ferry create queue-item Ops m1 local --vault '{"function":"fx_sleep","seconds":8}' --output json | jq -r '.data[0].taskId')
FERRY_CONFIG=$FERRY_CONFIG "$FERRY_BIN" serve >"$T_DIR/host1.log" 2>&1 &
h1=$!
T_EXTRA_PIDS="${T_EXTRA_PIDS:-} $h1"
# is TASK STATUS: the item's status is STATUS now (wait_for runs it again each time).
is() { test "$(pg_sql "$URL" "SELECT status FROM queue_items WHERE task_id = '$1'")" = "$2"; }
lease_after() { test "$(pg_sql "$URL" "SELECT lease_expires_at > $2 FROM queue_items WHERE task_id = '$1'")" = t; }
if wait_for 15 is "$slow" PROCESSING; then pass "the first host started the slow item"
else fail "the first host started the slow item" "$(pg_sql "$URL" "SELECT status, last_failure_reason FROM queue_items WHERE task_id = '$slow'")"; fi
if wait_for 15 is "$kept" COMPLETED; then pass "the first host completed the queued item"; else fail "the first host completed the queued item"; fi
lease0=$(pg_sql "$URL" "SELECT lease_expires_at FROM queue_items WHERE task_id = '$slow'")
if wait_for 10 lease_after "$slow" "$lease0"; then pass "the first host's heartbeat renews the lease"; else fail "the first host's heartbeat renews the lease"; fi
kill -KILL "$h1"
wait "$h1" 2>/dev/null
start_pg_host "$FERRY_CONFIG" "$T_DIR/host2.log" || fail "the second host starts"
recovered() {
    test "$(pg_sql "$URL" "SELECT status <> 'PROCESSING' OR lease_owner NOT LIKE '%:$h1:%' FROM queue_items WHERE task_id = '$slow'")" = t
}
if wait_for 20 recovered; then pass "the second host recovers the dead host's item after its lease expired"
else fail "the second host recovers the dead host's item after its lease expired"; fi
stop_pids "$LAST_HOST_PID"
eq "the recovered item was not lost" \
    "$(pg_sql "$URL" "SELECT status IN ('PENDING','PROCESSING','ASSIGNED','COMPLETED','FAILED') FROM queue_items WHERE task_id = '$slow'")" t

t_done
