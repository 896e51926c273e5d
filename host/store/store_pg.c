/*
 * The PostgreSQL store driver: many bridges, each running `ferry serve`, share one database.
 * It supplies what engine.h asks of a driver: the dialect (row locks, SKIP LOCKED, JSON
 * arrays, a sequence for item seqs), connections and reconnects, transactions (in
 * store_pg_tx.c) and wake-ups. The store's logic is the same code as SQLite's.
 *
 * Connections. One libpq connection per handle runs every operation; a host that asks for
 * wake-ups gets a second one that only LISTENs. lock_timeout is the busy timeout, so a wait
 * for a row lock ends in a clear message rather than a hang.
 *
 * Lost connections. A server restart or a dropped connection between or during operations
 * is ridden out: the operation reconnects with a growing, jittered backoff for up to the
 * reconnect window (the busy timeout, 60 s by default) and runs again (store_pg_tx.c). When
 * the window runs out the operation fails and the handle fails fast, one reconnect attempt
 * every few seconds, until the server answers again.
 *
 * Wake-ups are LISTEN/NOTIFY on one channel per bridge ("ferry:<bridge>").
 */
#include "store_pg.h"

#include "log.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BACKOFF_MAX  2000 /* ms between reconnect attempts, at most */
#define OFFLINE_WAIT 3000 /* ms between attempts once a reconnect window ran out */
#define VERSION_FRESH_MS 100  /* how long the change count read with a commit stands */

static const struct eng_driver pg_driver;

/* ---- dialect ---------------------------------------------------------------------------------- */

static const char *const fragments[F_COUNT] = {
    [F_DEPS_CSV] = "string_agg(p.task_id, ',' ORDER BY d.dep_seq)",
    [F_LOCK_SHARE] = " FOR SHARE",
    [F_LOCK_KEY_SHARE] = " FOR KEY SHARE",
    [F_LOCK_UPDATE] = " FOR NO KEY UPDATE",
    [F_LOCK_DELETE] = " FOR UPDATE",
    [F_LOCK_UPDATE_OF_T] = " FOR NO KEY UPDATE OF t",
    [F_LOCK_SKIP] = " FOR NO KEY UPDATE SKIP LOCKED",
    [F_JSON_TEXTS] = "SELECT json_array_elements_text(@::json) AS value",
    [F_JSON_SEQS] = "SELECT json_array_elements_text(@::json)::bigint",
    /* jsonb, not json: a json element is lexed again by every ->> that reads it. */
    [F_JSON_FINISHES] = "SELECT e->>0 AS task_id, e->>1 AS token, e->>2 AS status, e->>3 AS"
                        " response, e->>4 AS reason FROM jsonb_array_elements(@::jsonb) AS e",
    /* parent_task_id has the database's collation (migration 1), task_id "C": an equality
     * between them must name the index's, or qi_parent cannot serve it. */
    [F_COLLATE_DEFAULT] = " COLLATE \"default\"",
    [F_NOW_MS] = "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS bigint)",
};

/* Serialises migrations of processes opening a fresh database at the same moment. */
#define MIGRATION_LOCK_KEY "7236261198410592621"

/* The dialect's statements. */
static const char *dialect_sql[S_COUNT] = {
    /* Taken from the sequence before the inserts, so a rebuilt batch inserts the same. */
    [S_NEXT_SEQS] = "SELECT nextval('queue_item_seq') FROM generate_series(1, ?1)",
    [S_NEXT_SEQ] = "SELECT nextval('queue_item_seq')",
    [S_SCHEMA_EXISTS] = "SELECT (to_regclass('schema_migrations') IS NOT NULL)::int",
    [S_MIGRATION_LOCK] = "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK_KEY ")",
    /* ?1: [[task_seq, action, details, details_is_json, at], …] */
    [S_EVENTS_INSERT_MANY] = "INSERT INTO queue_events (task_seq, action, details,"
                             " details_is_json, at, actor) SELECT (e->>0)::bigint, e->>1, e->>2,"
                             " (e->>3)::int, (e->>4)::bigint, e->>5"
                             " FROM jsonb_array_elements(?1::jsonb) AS e",
    /* ?1: [[seq, task_id, team, machine, bridge, function, priority, vault, created,
     * run_after, idempotent], …] */
    [S_ITEMS_INSERT_MANY] = "INSERT INTO queue_items (seq, task_id, team_name, machine_name,"
                            " bridge_name, function, priority, status, vault, created_at,"
                            " updated_at, run_after, idempotent) SELECT (e->>0)::bigint, e->>1,"
                            " e->>2, e->>3, e->>4, e->>5, (e->>6)::int, 'PENDING', e->>7,"
                            " (e->>8)::bigint, (e->>8)::bigint, (e->>9)::bigint, (e->>10)::int"
                            " FROM jsonb_array_elements(?1::jsonb) AS e ON CONFLICT DO NOTHING",
    /* The common texts' shapes, spelled so that the planner cannot choose otherwise: with
     * statistics older than the queue (a queue filled since the last analyze) it read the
     * first min() by aggregating every PENDING index entry, and joined the heads to
     * queue_items by hashing a sequential scan of the whole table, both as deep as the
     * queue. ORDER BY … LIMIT 1 is one seek; LATERAL one seek per machine. */
    [S_CLAIM_HEADS] = "SELECT h.seq, h.machine_name, h.priority, h.created_at"
                      " FROM ({json_texts:6}) AS m CROSS JOIN LATERAL (SELECT i.seq,"
                      " i.machine_name, i.priority, i.created_at FROM queue_items i"
                      " WHERE i.status = 'PENDING' AND i.bridge_name = ?1"
                      " AND i.machine_name = m.value AND i.run_after <= ?2"
                      " AND (i.priority, i.created_at, i.seq) > (?3, ?4, ?5)"
                      " AND NOT EXISTS (SELECT 1 FROM queue_deps d JOIN queue_items p"
                      " ON p.seq = d.dep_seq WHERE d.task_seq = i.seq AND p.status <> 'COMPLETED')"
                      " ORDER BY i.priority, i.created_at, i.seq LIMIT ?7) AS h",
    /* The machines with PENDING items on bridge ?1, each with its head (as S_CLAIM_HEADS
     * after no key) when it has a free slot: the first ?3 in claim order that no other
     * claim holds, locked in the same statement.
     * Which machines to look at depends on how busy the store is (busy, asked once a
     * statement by reading at most twice as many machines as have active items: an idle
     * store's claim reads one). Mostly idle, the machines are found one seek each in
     * qi_claim_machine (a loose index scan, m), which lands on the machine's first PENDING
     * item in claim order; its row is carried along, and it is the head unless it waits on
     * run_after or a dependency: only then is the head looked for by a second seek (the
     * Append's second branch, which runs only when the first gives no row). When at least
     * half the machines have active items (a drain: every machine busy but the few whose
     * items just ended), the loose scan would seek every busy machine only to drop it; the
     * candidates are then every machine (m stays empty; k takes the machines' table
     * instead), and only those with a free slot are sought, by that second seek: no more
     * than there are busy machines, whose active items the statement reads anyway. With 4
     * hosts draining over 100 machines (a claim takes about 15 items) a claim read 615
     * buffers, now about 240; the candidates are the same either way, and so are the picks.
     * Whether a dependency holds a head back is asked of queue_deps as a whole first (once a
     * statement); the per-row test is a scalar subquery, which the planner never turns into
     * a hash of the whole table as it may a NOT EXISTS under OR.
     * The machines' active items are counted in one pass over qi_machine_active (the active
     * set, at most the machines' concurrency), not by a probe a machine: with 4 hosts on
     * 100 machines, 120 buffers a claim instead of about 270. */
    /* As the common text, in shapes that do not hang on the statistics (as above): with a
     * queue filled since the last analyze, the common one counted each machine's active
     * items by reading the whole table, 10,000 buffers a call (4 hosts, 100 machines). */
    [S_CLAIM_OPEN] =
        "WITH a AS (SELECT machine_name, count(*) AS n FROM queue_items"
        " WHERE status IN ('ASSIGNED','PROCESSING','CANCELLING') GROUP BY machine_name),"
        " q AS (SELECT NOT EXISTS (SELECT 1 FROM queue_deps) AS none)"
        " SELECT count(*) FROM machines mc LEFT JOIN a ON a.machine_name = mc.name"
        " CROSS JOIN LATERAL (SELECT i.seq, i.run_after FROM queue_items i"
        " WHERE i.bridge_name = ?1 AND i.status = 'PENDING' AND i.machine_name = mc.name"
        " ORDER BY i.machine_name, i.priority, i.created_at, i.seq LIMIT 1) AS h"
        " WHERE mc.bridge_name = ?1 AND mc.concurrency > coalesce(a.n, 0)"
        " AND h.run_after <= ?2 AND ((SELECT none FROM q) OR (SELECT 1 FROM queue_deps d"
        " JOIN queue_items p ON p.seq = d.dep_seq WHERE d.task_seq = h.seq"
        " AND p.status <> 'COMPLETED' LIMIT 1) IS NULL)",
    [S_CLAIM_FREE_HEADS_LOCKED] =
        "WITH RECURSIVE a AS (SELECT machine_name, count(*) AS n FROM queue_items"
        " WHERE status IN ('ASSIGNED','PROCESSING','CANCELLING') GROUP BY machine_name),"
        " busy(yes) AS (SELECT (SELECT count(*) FROM (SELECT 1 FROM machines"
        " LIMIT (SELECT count(*) FROM a) * 2 + 1) AS x) <= (SELECT count(*) FROM a) * 2),"
        " m(seq, name, priority, created, run_after) AS ((SELECT seq,"
        " machine_name, priority, created_at, run_after FROM queue_items WHERE bridge_name = ?1"
        " AND status = 'PENDING' AND NOT (SELECT yes FROM busy)"
        " ORDER BY machine_name, priority, created_at, seq LIMIT 1)"
        " UNION ALL SELECT n.* FROM m CROSS JOIN LATERAL (SELECT seq, machine_name, priority,"
        " created_at, run_after FROM queue_items WHERE bridge_name = ?1 AND status = 'PENDING'"
        " AND machine_name > m.name ORDER BY machine_name, priority, created_at, seq LIMIT 1)"
        " AS n),"
        " k(seq, name, priority, created, run_after) AS (SELECT * FROM m UNION ALL"
        " SELECT NULL::bigint, name, NULL::integer, NULL::bigint, NULL::bigint FROM machines"
        " WHERE (SELECT yes FROM busy)),"
        " q AS (SELECT NOT EXISTS (SELECT 1 FROM queue_deps) AS none)"
        " SELECT h.seq, h.machine_name, h.priority, h.created_at"
        " FROM k JOIN machines c ON c.name = k.name"
        " LEFT JOIN a ON a.machine_name = k.name CROSS JOIN LATERAL"
        " (SELECT k.seq, k.name AS machine_name, k.priority, k.created AS created_at"
        " WHERE k.run_after <= ?2 AND ((SELECT none FROM q)"
        " OR (SELECT 1 FROM queue_deps d JOIN queue_items p ON p.seq = d.dep_seq"
        " WHERE d.task_seq = k.seq AND p.status <> 'COMPLETED' LIMIT 1) IS NULL)"
        " UNION ALL (SELECT i.seq, i.machine_name, i.priority, i.created_at"
        " FROM queue_items i WHERE i.status = 'PENDING' AND i.bridge_name = ?1"
        " AND i.machine_name = k.name AND i.run_after <= ?2"
        " AND ((SELECT none FROM q) OR (SELECT 1 FROM queue_deps d JOIN queue_items p"
        " ON p.seq = d.dep_seq WHERE d.task_seq = i.seq AND p.status <> 'COMPLETED'"
        " LIMIT 1) IS NULL)"
        " ORDER BY i.priority, i.created_at, i.seq LIMIT 1) LIMIT 1) AS h"
        " WHERE c.concurrency > coalesce(a.n, 0)"
        " ORDER BY h.priority, h.created_at, h.seq LIMIT ?3"
        " FOR NO KEY UPDATE OF c SKIP LOCKED",
};

/* ---- migrations ------------------------------------------------------------------------------ */

/*
 * Numbered schema changes, the same numbers and names as the SQLite driver's, applied in
 * order under an advisory lock and recorded in schema_migrations. Names compare byte-wise
 * (COLLATE "C") as SQLite's do, which also keeps task id prefix ranges on the index.
 * Never edit a released migration: append a new one.
 */
static const struct eng_migration migrations[] = {
    {1, "resources, queue items, dependencies, events",
     "CREATE TABLE teams ("
     " name text COLLATE \"C\" PRIMARY KEY, vault text NOT NULL, vault_version bigint NOT NULL,"
     " created_at bigint NOT NULL, updated_at bigint NOT NULL);"
     "CREATE TABLE regions ("
     " name text COLLATE \"C\" PRIMARY KEY, vault text NOT NULL, vault_version bigint NOT NULL,"
     " created_at bigint NOT NULL, updated_at bigint NOT NULL);"
     "CREATE TABLE bridges ("
     " name text COLLATE \"C\" PRIMARY KEY,"
     " region_name text COLLATE \"C\" NOT NULL REFERENCES regions(name),"
     " vault text NOT NULL, vault_version bigint NOT NULL,"
     " created_at bigint NOT NULL, updated_at bigint NOT NULL);"
     "CREATE INDEX bridges_region ON bridges(region_name);"
     "CREATE TABLE machines ("
     " name text COLLATE \"C\" PRIMARY KEY,"
     " team_name text COLLATE \"C\" NOT NULL REFERENCES teams(name),"
     " bridge_name text COLLATE \"C\" NOT NULL REFERENCES bridges(name),"
     " concurrency integer NOT NULL DEFAULT 1 CHECK (concurrency >= 1),"
     " vault text NOT NULL, vault_version bigint NOT NULL,"
     " created_at bigint NOT NULL, updated_at bigint NOT NULL);"
     "CREATE INDEX machines_team ON machines(team_name);"
     "CREATE INDEX machines_bridge ON machines(bridge_name);"
     "CREATE TABLE storages ("
     " team_name text COLLATE \"C\" NOT NULL REFERENCES teams(name),"
     " name text COLLATE \"C\" NOT NULL,"
     " vault text NOT NULL, vault_version bigint NOT NULL,"
     " created_at bigint NOT NULL, updated_at bigint NOT NULL,"
     " PRIMARY KEY (team_name, name));"
     "CREATE TABLE schedules ("
     " team_name text COLLATE \"C\" NOT NULL REFERENCES teams(name),"
     " name text COLLATE \"C\" NOT NULL,"
     " vault text NOT NULL, vault_version bigint NOT NULL,"
     " created_at bigint NOT NULL, updated_at bigint NOT NULL,"
     " next_run_at bigint, last_run_at bigint, last_task_id text,"
     " PRIMARY KEY (team_name, name));"
     /* Queue items keep names, not foreign keys: history outlives machines. The seq is
      * taken from the sequence before the insert, so a rebuilt batch inserts the same. */
     "CREATE SEQUENCE queue_item_seq;"
     "CREATE TABLE queue_items ("
     " seq bigint PRIMARY KEY DEFAULT nextval('queue_item_seq'),"
     " task_id text COLLATE \"C\" NOT NULL UNIQUE,"
     " team_name text COLLATE \"C\" NOT NULL, machine_name text COLLATE \"C\" NOT NULL,"
     " bridge_name text COLLATE \"C\" NOT NULL, function text NOT NULL,"
     " priority integer NOT NULL CHECK (priority BETWEEN 1 AND 5),"
     " status text NOT NULL CHECK (status IN ('PENDING','ASSIGNED','PROCESSING',"
     "  'CANCELLING','COMPLETED','FAILED','CANCELLED')),"
     " vault text NOT NULL, response_vault text,"
     " created_at bigint NOT NULL, updated_at bigint NOT NULL, run_after bigint NOT NULL,"
     " assigned_at bigint, started_at bigint, finished_at bigint,"
     " retry_count integer NOT NULL DEFAULT 0, last_retry_at bigint,"
     " last_failure_reason text,"
     " lease_owner text, lease_expires_at bigint, claim_token text,"
     " progress_percent integer, progress_message text,"
     " parent_task_id text, link_kind text, schedule_name text, schedule_fire_at bigint,"
     " idempotent integer NOT NULL DEFAULT 0);"
     "ALTER SEQUENCE queue_item_seq OWNED BY queue_items.seq;"
     /* The claim reads only partial indexes: the PENDING set stays small however long the
      * history grows. */
     "CREATE INDEX qi_claim ON queue_items (bridge_name, priority, created_at, seq)"
     " INCLUDE (run_after, machine_name) WHERE status = 'PENDING';"
     "CREATE INDEX qi_claim_machine ON queue_items"
     " (bridge_name, machine_name, priority, created_at, seq) WHERE status = 'PENDING';"
     "CREATE INDEX qi_machine_active ON queue_items (machine_name)"
     " WHERE status IN ('ASSIGNED','PROCESSING','CANCELLING');"
     "CREATE INDEX qi_owner_active ON queue_items (lease_owner)"
     " WHERE status IN ('ASSIGNED','PROCESSING','CANCELLING');"
     "CREATE INDEX qi_lease_active ON queue_items (lease_expires_at)"
     " WHERE status IN ('ASSIGNED','PROCESSING','CANCELLING');"
     "CREATE INDEX qi_created ON queue_items (created_at);"
     "CREATE INDEX qi_status_created ON queue_items (status, created_at);"
     "CREATE INDEX qi_machine_created ON queue_items (machine_name, created_at);"
     "CREATE UNIQUE INDEX qi_schedule_fire ON queue_items"
     " (team_name, schedule_name, schedule_fire_at) WHERE schedule_fire_at IS NOT NULL;"
     "CREATE TABLE queue_deps ("
     " task_seq bigint NOT NULL REFERENCES queue_items(seq) ON DELETE CASCADE,"
     " dep_seq bigint NOT NULL REFERENCES queue_items(seq) ON DELETE CASCADE,"
     " PRIMARY KEY (task_seq, dep_seq));"
     "CREATE INDEX queue_deps_dep ON queue_deps(dep_seq);"
     "CREATE TABLE queue_events ("
     " seq bigserial PRIMARY KEY,"
     " task_seq bigint NOT NULL REFERENCES queue_items(seq) ON DELETE CASCADE,"
     " action text NOT NULL, details text, details_is_json integer NOT NULL DEFAULT 0,"
     " at bigint NOT NULL);"
     "CREATE INDEX queue_events_task ON queue_events(task_seq, seq);"
     /*
      * Released with migration 1 and no longer called: claim.c locks and counts a
      * machine itself, the same way for every driver. (Released migrations are never
      * edited; the function is harmless.)
      */
     "CREATE FUNCTION ferry_machine_slots(machine text) RETURNS integer"
     " LANGUAGE plpgsql VOLATILE AS $fn$"
     " DECLARE limit_n integer; busy integer;"
     " BEGIN"
     "  SELECT count(*) INTO busy FROM queue_items WHERE machine_name = machine"
     "   AND status IN ('ASSIGNED','PROCESSING','CANCELLING');"
     "  SELECT concurrency INTO limit_n FROM machines WHERE name = machine;"
     "  IF NOT FOUND THEN RETURN greatest(1 - busy, 0); END IF;"
     "  IF limit_n <= busy THEN RETURN 0; END IF;"
     "  PERFORM 1 FROM machines WHERE name = machine FOR NO KEY UPDATE SKIP LOCKED;"
     "  IF NOT FOUND THEN RETURN -1; END IF;"
     "  SELECT concurrency INTO limit_n FROM machines WHERE name = machine;"
     "  SELECT count(*) INTO busy FROM queue_items WHERE machine_name = machine"
     "   AND status IN ('ASSIGNED','PROCESSING','CANCELLING');"
     "  RETURN greatest(limit_n - busy, 0);"
     " END $fn$;"},
    /* As the SQLite driver's migration 2: one event row for a claim and its start. */
    {2, "one event row for a claim and its start",
     "ALTER TABLE queue_events ADD COLUMN started_attempt integer;"},
    /* As the SQLite driver's migration 3: machine groups and fan-out. */
    {3, "machine groups and fan-out",
     "CREATE TABLE machine_groups ("
     " team_name text COLLATE \"C\" NOT NULL REFERENCES teams(name),"
     " name text COLLATE \"C\" NOT NULL,"
     " vault text NOT NULL, vault_version bigint NOT NULL,"
     " created_at bigint NOT NULL, updated_at bigint NOT NULL,"
     " PRIMARY KEY (team_name, name));"
     "CREATE INDEX machine_groups_name ON machine_groups(name);"
     "CREATE INDEX qi_parent ON queue_items (parent_task_id)"
     " WHERE parent_task_id IS NOT NULL;"},
    /*
     * A claim and a finish change status, which every partial index names, so PostgreSQL
     * writes each a new row version with an entry in every index (no HOT update), and
     * every event row paid a foreign-key check and a primary-key entry: about a third of
     * the server's work per item. The active set is small (at most the machines'
     * concurrency), so the heartbeat, the cancelling list and the expired-lease scan read
     * it through qi_machine_active, whose predicate is theirs; events are read by task
     * (queue_events_task) and removed with their item by a trigger instead of the foreign
     * key's cascade. Every statement may run again over a store where it already ran.
     */
    {4, "fewer index entries and cheaper checks for the hot path's writes",
     "DROP INDEX IF EXISTS qi_owner_active;"
     "DROP INDEX IF EXISTS qi_lease_active;"
     "ALTER TABLE queue_events DROP CONSTRAINT IF EXISTS queue_events_task_seq_fkey;"
     "ALTER TABLE queue_events DROP CONSTRAINT IF EXISTS queue_events_pkey;"
     "DROP TRIGGER IF EXISTS queue_items_events ON queue_items;"
     "CREATE OR REPLACE FUNCTION ferry_events_of_deleted() RETURNS trigger LANGUAGE plpgsql AS $fn$"
     " BEGIN"
     "  DELETE FROM queue_events e USING deleted_items d WHERE e.task_seq = d.seq;"
     "  RETURN NULL;"
     " END $fn$;"
     "CREATE TRIGGER queue_items_events AFTER DELETE ON queue_items"
     " REFERENCING OLD TABLE AS deleted_items FOR EACH STATEMENT"
     " EXECUTE FUNCTION ferry_events_of_deleted();"},
    /* As the SQLite driver's migration 5: users, tokens, the audit log, events' actor. */
    {5, "users, tokens, roles and the audit log",
     "CREATE TABLE IF NOT EXISTS users ("
     " name text COLLATE \"C\" PRIMARY KEY, created_at bigint NOT NULL,"
     " created_by text NOT NULL, deleted_at bigint, deleted_by text);"
     "CREATE TABLE IF NOT EXISTS tokens ("
     " id bigserial PRIMARY KEY, user_name text COLLATE \"C\" NOT NULL REFERENCES users(name),"
     " team_name text COLLATE \"C\" NOT NULL,"
     " role text NOT NULL CHECK (role IN ('viewer','operator','admin')),"
     " token_hash text NOT NULL UNIQUE, created_at bigint NOT NULL, created_by text NOT NULL,"
     " last_used_at bigint, last_used_address text, revoked_at bigint, revoked_by text);"
     "CREATE INDEX IF NOT EXISTS tokens_user ON tokens(user_name);"
     "CREATE TABLE IF NOT EXISTS audit_log ("
     " seq bigserial PRIMARY KEY, at bigint NOT NULL, actor text NOT NULL, via text NOT NULL,"
     " address text, token_id bigint, action text NOT NULL, team_name text COLLATE \"C\","
     " target text, details text);"
     "CREATE INDEX IF NOT EXISTS audit_at ON audit_log(at);"
     "ALTER TABLE queue_events ADD COLUMN IF NOT EXISTS actor text;"},
    /* As the SQLite driver's migration 6: hosts and their heartbeats (ferry web). */
    {6, "hosts and their heartbeats; ended items by finished_at",
     "CREATE TABLE IF NOT EXISTS hosts ("
     " host_id text COLLATE \"C\" PRIMARY KEY, bridge_name text NOT NULL,"
     " version text NOT NULL, started_at bigint NOT NULL, last_seen_at bigint NOT NULL,"
     " running integer NOT NULL DEFAULT 0, stopped_at bigint);"
     "CREATE INDEX IF NOT EXISTS qi_finished ON queue_items (finished_at)"
     " WHERE finished_at IS NOT NULL;"},
    /* As the SQLite driver's migration 7: the key secrets are sealed with. */
    {7, "the key secrets are sealed with",
     "CREATE TABLE IF NOT EXISTS seal_state (one integer PRIMARY KEY CHECK (one = 1),"
     " key_id text NOT NULL, updated_at bigint NOT NULL);"},
    /* 8 (the engine work, issue 14): the hosts of a bridge that wait for work while others
     * hold every machine with ready items (fair claims: waits.c, host/serve/fairness.c).
     * One row per waiting host. */
    {8, "hosts waiting for work, and notifications not yet sent",
     "CREATE TABLE IF NOT EXISTS claim_waits (bridge_name text COLLATE \"C\" NOT NULL,"
     " owner text COLLATE \"C\" NOT NULL, until_ms bigint NOT NULL,"
     " PRIMARY KEY (bridge_name, owner));"
     /* ... and the notifications of ends not yet handed to their sender (settle.c): a
      * host that dies between its commit and that hand-off leaves them to another. */
     "CREATE TABLE IF NOT EXISTS notify_outbox (task_id text COLLATE \"C\" PRIMARY KEY,"
     " bridge_name text COLLATE \"C\" NOT NULL, due_ms bigint NOT NULL);"},
    /* As the SQLite driver's migration 10: chores one host of the store does at a time. */
    {10, "chores shared by the hosts of a store",
     "CREATE TABLE IF NOT EXISTS chores (name text COLLATE \"C\" PRIMARY KEY, owner text,"
     " lease_until bigint NOT NULL DEFAULT 0, due_at bigint NOT NULL DEFAULT 0,"
     " started_at bigint, finished_at bigint, result text);"},
    /* 11 (PostgreSQL only): a count of the changes to machines and teams, raised in the
     * changing transaction, so a host keeps the machines it read from turn to turn until
     * one changes (pg_resources_version, store_resources_version). Before, a host read
     * every started item's machine again: a quarter of its time when claims are small. */
    {11, "a count of the changes to machines and teams",
     "CREATE TABLE IF NOT EXISTS resource_changes (one integer PRIMARY KEY CHECK (one = 1),"
     " n bigint NOT NULL);"
     "INSERT INTO resource_changes VALUES (1, 0) ON CONFLICT DO NOTHING;"
     "CREATE OR REPLACE FUNCTION ferry_resource_changed() RETURNS trigger LANGUAGE plpgsql"
     " AS $fn$ BEGIN UPDATE resource_changes SET n = n + 1; RETURN NULL; END $fn$;"
     "DROP TRIGGER IF EXISTS machines_changed ON machines;"
     "CREATE TRIGGER machines_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON machines"
     " FOR EACH STATEMENT EXECUTE FUNCTION ferry_resource_changed();"
     "DROP TRIGGER IF EXISTS teams_changed ON teams;"
     "CREATE TRIGGER teams_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON teams"
     " FOR EACH STATEMENT EXECUTE FUNCTION ferry_resource_changed();"},
    /* 12 (issue 17, least privilege): NOLOGIN group roles <database>_host and
     * <database>_client with row rights on ferry's tables (SELECT only on schema_migrations),
     * and default privileges so that tables of later migrations follow. The roles are made
     * when the migrating role may (CREATEROLE or superuser); otherwise one warning (logged by
     * quiet_notice) says what an admin runs, ending with SELECT ferry_grant_roles(), which
     * grants again at any time. Neither role gets CREATE, TRUNCATE or ownership. */
    {12, "host and client roles",
     "CREATE OR REPLACE FUNCTION ferry_grant_roles() RETURNS text LANGUAGE plpgsql AS $f$"
     /* name: cut to 63 bytes as PostgreSQL cuts a role's name, so that the lookup finds it */
     " DECLARE h name := current_database() || '_host'; c name := current_database() || '_client';"
     " sch name; own name; may boolean; r name; missing text := '';"
     " BEGIN"
     " SELECT n.nspname, pg_get_userbyid(t.relowner) INTO sch, own FROM pg_class t"
     "  JOIN pg_namespace n ON n.oid = t.relnamespace WHERE t.oid = to_regclass('schema_migrations');"
     " SELECT rolsuper OR rolcreaterole INTO may FROM pg_roles WHERE rolname = current_user;"
     " FOREACH r IN ARRAY ARRAY[h, c] LOOP"
     "  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN"
     "   IF may THEN EXECUTE format('CREATE ROLE %I NOLOGIN', r);"
     "   ELSE missing := missing || format('CREATE ROLE %I NOLOGIN; ', r); END IF;"
     "  END IF;"
     " END LOOP;"
     " IF missing <> '' THEN"
     "  RAISE WARNING 'ferry: roles % and % not created (role % may not create roles);"
     " as an admin, in database %, run: %SELECT ferry_grant_roles();',"
     "   h, c, current_user, current_database(), missing;"
     "  RETURN 'roles missing';"
     " END IF;"
     " EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I, %I', current_database(), h, c);"
     " EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I, %I', sch, h, c);"
     " EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I"
     " TO %I, %I', sch, h, c);"
     " EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON %I.schema_migrations FROM %I, %I',"
     "  sch, h, c);"
     " EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I, %I', sch, h, c);"
     " EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I"
     " GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I, %I', own, sch, h, c);"
     " EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I"
     " GRANT USAGE, SELECT ON SEQUENCES TO %I, %I', own, sch, h, c);"
     " RETURN 'granted';"
     " END $f$;"
     "REVOKE ALL ON FUNCTION ferry_grant_roles() FROM PUBLIC;"
     "SELECT ferry_grant_roles();"},
    /* 13: SQLite's index by status of the items no host holds (its hot path moved every
     * item's qi_status_created entry twice) and its events without a foreign key. PostgreSQL
     * keeps qi_status_created: it writes an entry in every index at each status change anyway
     * (no HOT update), so one index less is a smaller share of its work, and its readers'
     * plans would need measuring under its statistics first; its events lost their foreign
     * key in migration 4. Recorded so that both drivers number their migrations alike. */
    {13,
     "an index by status of the items no host holds instead of every item's; events without a "
     "foreign key",
     "SELECT 1;"},
};


/* ---- errors and text ------------------------------------------------------------------------- */

/* The first line of libpq's message for the connection, without the trailing newline. */
void store_pg_conn_message(PGconn *conn, char *out, size_t n)
{
    const char *msg = conn ? PQerrorMessage(conn) : "out of memory";
    size_t len = strcspn(msg, "\n");
    snprintf(out, n, "%.*s", (int)len, *msg ? msg : "no answer from the server");
}

static int is_lost_state(const char *state)
{
    return state != NULL && (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
                             strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0);
}

/* Maps a failed result to a store status, formatting err. */
int store_pg_fail(struct pg *p, const PGresult *r, char *err, size_t errlen)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char buf[512];
    if (msg == NULL) {
        store_pg_conn_message(p->conn, buf, sizeof(buf));
        msg = buf;
    }
    /* libpq reports some losses of the connection (a write that failed as the server went
     * away) by a result of its own, with no SQLSTATE, while the connection still looks up
     * until its input is read: read it, so that the loss is seen as one and the operation
     * runs again on a new connection instead of failing. */
    if (state == NULL && PQstatus(p->conn) == CONNECTION_OK)
        PQconsumeInput(p->conn);
    if (PQstatus(p->conn) != CONNECTION_OK || is_lost_state(state)) {
        seterr(err, errlen, "lost the connection to the PostgreSQL store %s: %s", p->label, msg);
        return ENG_LOST;
    }
    if (state == NULL) {
        seterr(err, errlen, "store %s: %s", p->label, msg);
        return STORE_ERROR;
    }
    if (strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0) {
        seterr(err, errlen, "store %s: %s", p->label, msg);
        return ENG_AGAIN;
    }
    if (strcmp(state, "55P03") == 0) {
        seterr(err, errlen, "store %s stayed locked by another process for %.1f s; try again",
               p->label, p->window_ms / 1000.0);
        return STORE_ERROR;
    }
    seterr(err, errlen, "store %s: %s", p->label, msg);
    return strncmp(state, "23", 2) == 0 ? STORE_CONFLICT : STORE_ERROR;
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when it is not one. PostgreSQL
 * refuses invalid UTF-8 where SQLite keeps any bytes. */
static int utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (s[0] >= 0xe0 && s[0] <= 0xef) {
        if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
            return 0;
        if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))
            return 0; /* overlong, or a surrogate */
        return 3;
    }
    if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        if ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
            return 0;
        return 4;
    }
    return 0;
}

/* NULL when text is valid UTF-8; otherwise a copy (caller frees) with each invalid byte
 * replaced by '?', as the rows show such text. */
char *store_pg_utf8_clean(const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    int n;
    while (s[i] && (n = utf8_len(s + i)) > 0)
        i += (size_t)n;
    if (s[i] == '\0')
        return NULL;
    char *copy = xstrdup(text);
    unsigned char *c = (unsigned char *)copy;
    for (i = 0; c[i];) {
        n = utf8_len(c + i);
        if (n == 0)
            c[i++] = '?';
        else
            i += (size_t)n;
    }
    return copy;
}

/* ---- connecting ------------------------------------------------------------------------------ */

/* The server's notices ("terminating connection due to administrator command" …) would
 * go to stderr, mixed into command output; the driver reports what matters itself. */
static void quiet_notice(void *arg, const char *message)
{
    (void)arg;
    /* ... but ferry's own (migration 12's "ferry: roles ... not created") is logged. */
    const char *own = strstr(message, "ferry: ");
    if (own != NULL)
        hlog(LOG_WARN, "store: %.*s", (int)strcspn(own + 7, "\n"), own + 7);
}

/*
 * Connects with ferry's defaults under whatever the configured conninfo says; the conninfo
 * (URL or key=value) may override application_name, connect_timeout and options. The
 * default options tell the planner that reads are cached (random_page_cost 1.1, not 4):
 * with 4 it joined a claim's or finish's picks (a JSON array of ~100 seqs or outcomes) to
 * queue_items by hashing a sequential scan of the whole table instead of ~100 index probes.
 */
static PGconn *pg_connect(const struct pg *p)
{
    const char *keys[] = {"application_name", "connect_timeout", "options", "dbname",
                          "client_encoding", NULL};
    const char *values[] = {"ferry", "10", "-c random_page_cost=1.1", p->conninfo, "UTF8", NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    if (conn != NULL)
        PQsetNoticeProcessor(conn, quiet_notice, NULL);
    return conn;
}

/* Session settings, on every new connection. */
static int pg_setup(struct pg *p, PGconn *conn)
{
    char sql[256];
    /* A transaction left idle this long belongs to a stuck process: the server ends it so
     * that the machines it locked become claimable again. */
    snprintf(sql, sizeof(sql),
             "SET lock_timeout = %d; SET idle_in_transaction_session_timeout = %d", p->window_ms,
             p->window_ms > 60000 ? p->window_ms : 60000);
    PGresult *r = PQexec(conn, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok ? STORE_OK : STORE_ERROR;
}

/* "postgres://user@host:port/db" for messages: never the password. */
static char *pg_label(const char *conninfo)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &msg);
    const char *host = NULL, *port = NULL, *db = NULL, *user = NULL;
    PQfreemem(msg);
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (o->val == NULL || *o->val == '\0')
            continue;
        if (strcmp(o->keyword, "host") == 0 || (strcmp(o->keyword, "hostaddr") == 0 && !host))
            host = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        else if (strcmp(o->keyword, "dbname") == 0)
            db = o->val;
        else if (strcmp(o->keyword, "user") == 0)
            user = o->val;
    }
    char *label =
        xasprintf("postgres://%s%s%s%s%s/%s", user ? user : "", user ? "@" : "",
                  host ? host : "localhost", port ? ":" : "", port ? port : "", db ? db : "");
    PQconninfoFree(opts);
    return label;
}

void store_pg_sleep_ms(int ms)
{
    if (ms > 0)
        usleep((useconds_t)ms * 1000);
}

/* The last moment an operation starting now may spend reconnecting. */
int64_t store_pg_deadline(const struct pg *p)
{
    return p->offline ? mono_ms() : mono_ms() + p->window_ms;
}

static void pg_close_listen(struct pg *p);

/*
 * Makes sure the connection is up, reconnecting until deadline with a growing, jittered
 * backoff. Any transaction the lost connection had is gone with it. STORE_OK, or
 * STORE_ERROR with err set.
 */
int store_pg_connected(struct pg *p, int64_t deadline, char *err, size_t errlen)
{
    if (PQstatus(p->conn) == CONNECTION_OK)
        return STORE_OK;
    p->in_tx = p->begin_pending = 0;
    char msg[256];
    if (!p->warned) {
        store_pg_conn_message(p->conn, msg, sizeof(msg));
        hlog(LOG_WARN, "store %s: connection lost (%s); reconnecting", p->label, msg);
        p->warned = 1;
    }
    int backoff = 50;
    for (;;) {
        if (!p->offline || mono_ms() >= p->next_connect_at) {
            PQreset(p->conn);
            store_pg_stmts_reset(p);
            if (PQstatus(p->conn) == CONNECTION_OK && pg_setup(p, p->conn) == STORE_OK) {
                hlog(LOG_INFO, "store %s: reconnected", p->label);
                p->warned = p->offline = 0;
                return STORE_OK;
            }
            if (p->offline)
                p->next_connect_at = mono_ms() + OFFLINE_WAIT;
        }
        int64_t left = deadline - mono_ms();
        if (left <= 0) {
            store_pg_conn_message(p->conn, msg, sizeof(msg));
            seterr(err, errlen, "cannot reach the PostgreSQL store %s (%s); retrying", p->label,
                   msg);
            p->offline = 1;
            return STORE_ERROR;
        }
        int wait = backoff + (int)(rand_r(&p->rand_state) % (unsigned)backoff);
        store_pg_sleep_ms(wait < left ? wait : (int)left);
        backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
    }
}

/* ---- wake-ups ----------------------------------------------------------------------------------
 *
 * The host polls wait_fd, a descriptor number that stays the same for the handle's life:
 * while the listen connection is up it is a dup of that connection's socket (readable when
 * a notification arrives); while it is down, a dup of an empty pipe (never readable: the
 * host falls back to its slow poll). When the listen connection comes back a byte in the
 * pipe wakes the host once, since notifications sent meanwhile were lost.
 */

/* The channel of a bridge. Channel names are identifiers of at most 63 bytes; bridge
 * names may be longer, so a long one is cut and completed with a hash of the whole. */
static void channel_of(const char *bridge, char out[64])
{
    size_t n = strlen(bridge);
    if (n <= 50) {
        snprintf(out, 64, "ferry:%s", bridge);
        return;
    }
    uint64_t h = fnv1a(FNV1A_BASIS, bridge);
    snprintf(out, 64, "ferry:%.33s#%016llx", bridge, (unsigned long long)h);
}

static void point_wait_fd(struct pg *p, int fd)
{
    if (p->wait_fd >= 0 && fd >= 0)
        dup3(fd, p->wait_fd, O_CLOEXEC);
}

static void pg_close_listen(struct pg *p)
{
    if (p->listen != NULL)
        PQfinish(p->listen);
    p->listen = NULL;
    point_wait_fd(p, p->pipe_rd);
    p->wait_on_socket = 0;
}

/* Opens the listen connection. 0, or -1 (and a retry is scheduled). */
static int listen_open(struct pg *p)
{
    PGconn *conn = pg_connect(p);
    int ok = PQstatus(conn) == CONNECTION_OK;
    if (ok) {
        char sql[160];
        char *ident = PQescapeIdentifier(conn, p->channel, strlen(p->channel));
        snprintf(sql, sizeof(sql), "LISTEN %s", ident ? ident : "\"ferry\"");
        PQfreemem(ident);
        PGresult *r = PQexec(conn, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    if (!ok) {
        PQfinish(conn);
        p->listen_backoff_ms = p->listen_backoff_ms ? p->listen_backoff_ms * 2 : 100;
        if (p->listen_backoff_ms > BACKOFF_MAX)
            p->listen_backoff_ms = BACKOFF_MAX;
        p->listen_retry_at = mono_ms() + p->listen_backoff_ms;
        return -1;
    }
    p->listen = conn;
    p->listen_backoff_ms = 0;
    return 0;
}

/* Brings a lost listen connection back when its retry time has come, and wakes the host
 * once. Called on the way into operations, so a host whose poll has gone quiet still gets
 * its wake-ups back soon after the server returns. */
void store_pg_listen_tick(struct pg *p)
{
    if (p->wait_fd < 0 || p->listen != NULL || mono_ms() < p->listen_retry_at)
        return;
    if (listen_open(p) == 0 && write(p->pipe_wr, "w", 1) < 0) {
        point_wait_fd(p, PQsocket(p->listen));
        p->wait_on_socket = 1;
    }
}

static void pg_notify(store *s, const char *bridge)
{
    struct pg *p = (struct pg *)s;
    char channel[64];
    const char *values[1] = {channel};
    const Oid types[1] = {PG_TEXT_OID};
    if (PQstatus(p->conn) != CONNECTION_OK || PQtransactionStatus(p->conn) == PQTRANS_INERROR)
        return;
    channel_of(bridge, channel);
    /* A hint: if it fails, hosts find the item at their next poll. store.c sends it after
     * the commit (a transaction whose BEGIN is still deferred has sent nothing either). */
    PGresult *r =
        PQexecParams(p->conn, "SELECT pg_notify($1, '')", 1, types, values, NULL, NULL, 0);
    /* Sent outside a transaction to the channel this handle listens on: it arrives at once,
     * and the next drain waits for it (see pg_wait_drain). */
    if (PQresultStatus(r) == PGRES_TUPLES_OK && p->listen != NULL &&
        PQtransactionStatus(p->conn) == PQTRANS_IDLE && strcmp(channel, p->channel) == 0) {
        p->self_pending++;
        p->self_pid = PQbackendPID(p->conn);
    }
    PQclear(r);
}

static int pg_wait_fd(store *s, const char *bridge, char *err, size_t errlen)
{
    struct pg *p = (struct pg *)s;
    int fds[2];
    if (p->wait_fd >= 0)
        return p->wait_fd;
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        seterr(err, errlen, "cannot make a wake-up pipe: %s; polling instead", strerror(errno));
        return -1;
    }
    p->pipe_rd = fds[0];
    p->pipe_wr = fds[1];
    p->wait_fd = fcntl(p->pipe_rd, F_DUPFD_CLOEXEC, 0);
    channel_of(bridge, p->channel);
    if (listen_open(p) == 0) {
        point_wait_fd(p, PQsocket(p->listen));
        p->wait_on_socket = 1;
    }
    return p->wait_fd;
}

/* Consumes what the listen connection has received. 0, or -1 when it is gone. */
static int listen_consume(struct pg *p)
{
    if (p->listen == NULL || !PQconsumeInput(p->listen) || PQstatus(p->listen) != CONNECTION_OK)
        return -1;
    PGnotify *n;
    while ((n = PQnotifies(p->listen)) != NULL) {
        if (p->self_pending > 0 && n->be_pid == p->self_pid)
            p->self_pending--;
        PQfreemem(n);
    }
    return 0;
}

/*
 * Drains the wake-ups. A notification this handle sent itself a moment ago is still on
 * its way through the server; it is waited for (briefly), so that a host's own wake-ups
 * are consumed by the drain that follows them, as with SQLite's synchronous datagrams.
 */
static void pg_wait_drain(store *s)
{
    struct pg *p = (struct pg *)s;
    char buf[64];
    if (p->wait_fd < 0)
        return;
    while (read(p->pipe_rd, buf, sizeof(buf)) > 0)
        ;
    int rc = listen_consume(p);
    for (int64_t until = mono_ms() + 200; rc == 0 && p->self_pending > 0 && mono_ms() < until;) {
        struct pollfd pfd = {.fd = PQsocket(p->listen), .events = POLLIN};
        if (poll(&pfd, 1, 20) > 0)
            rc = listen_consume(p);
    }
    p->self_pending = 0;
    if (rc == 0) {
        if (!p->wait_on_socket)
            point_wait_fd(p, PQsocket(p->listen));
        p->wait_on_socket = 1;
        return;
    }
    /* The listen connection is gone (its socket read end-of-file): quiet the descriptor
     * and try again at once, then with a backoff. */
    pg_close_listen(p);
    p->listen_retry_at = 0;
    store_pg_listen_tick(p);
}

static void pg_free(struct pg *p)
{
    if (p->pid == getpid()) {
        PQfinish(p->conn);
        if (p->listen != NULL)
            PQfinish(p->listen);
        if (p->wait_fd >= 0) {
            close(p->wait_fd);
            close(p->pipe_rd);
            close(p->pipe_wr);
        }
    }
    /* A child that inherited the handle across fork must not touch the parent's
     * connections (PQfinish would end the parent's session): only memory is let go. */
    store_pg_tx_free(p);
    eng_free_texts(&p->base);
    free(p->conninfo);
    free(p->label);
    free(p);
}

static void pg_close(store *s)
{
    struct pg *p = (struct pg *)s;
    if (p->pid == getpid() && p->in_tx)
        store_pg_rollback_quietly(p);
    pg_free(p);
}

/*
 * Opens the PostgreSQL store named by conninfo (a postgres:// URL or a libpq key=value
 * string), configures the session and applies migrations. Returns the handle, or NULL with
 * err set (the message never shows a password). The caller closes it with store_close.
 */
store_open_fn store_pg_open; /* listed in drivers.c */
store *store_pg_open(const char *conninfo, const struct store_options *opts, char *err,
                     size_t errlen)
{
    struct pg *p = calloc(1, sizeof(*p));
    if (p == NULL)
        abort();
    eng_init(&p->base, &pg_driver);
    p->conninfo = xstrdup(conninfo);
    p->label = pg_label(conninfo);
    p->pid = getpid();
    p->window_ms = opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : 60000;
    p->rand_state = (unsigned)(getpid() ^ mono_us());
    p->wait_fd = p->pipe_rd = p->pipe_wr = -1;
    p->conn = pg_connect(p);
    if (PQstatus(p->conn) != CONNECTION_OK || pg_setup(p, p->conn) != STORE_OK) {
        char msg[256];
        store_pg_conn_message(p->conn, msg, sizeof(msg));
        seterr(err, errlen, "cannot open the PostgreSQL store %s: %s", p->label, msg);
        pg_free(p);
        return NULL;
    }
    char msg[512] = "";
    if (eng_migrate(&p->base, msg, sizeof(msg)) != STORE_OK) {
        seterr(err, errlen, "store %s: %s", p->label, msg);
        pg_free(p);
        return NULL;
    }
    return &p->base;
}

/* ---- which stores are PostgreSQL's --------------------------------------------------------- */

/* Keywords that start a libpq conninfo string ("host=db dbname=ferry"). */
static const char *const conninfo_keys[] = {
    "host",           "hostaddr", "port",    "dbname",           "user",
    "password",       "passfile", "service", "connect_timeout",  "sslmode",
    "options",        "application_name",    "target_session_attrs", NULL,
};

store_url_fn store_pg_url; /* listed in drivers.c */
int store_pg_url(const char *url)
{
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
        return 1;
    while (isspace((unsigned char)*url))
        url++;
    for (const char *const *k = conninfo_keys; *k; k++) {
        size_t n = strlen(*k);
        const char *p = url + n;
        if (strncmp(url, *k, n) != 0)
            continue;
        while (*p == ' ')
            p++;
        if (*p == '=')
            return 1;
    }
    return 0;
}


/*
 * The count of committed changes to machines and teams (migration 11): what a host caches
 * of them (serve.c's machine facts) holds while it stays the same. Raised inside the
 * changing transaction, it is seen only once that commits, so facts read after the count
 * are never older than it. -1 when it cannot be read, and inside a transaction (a failed
 * read there, such as a role without SELECT on the table, would abort the host's batch):
 * the caller then reads the facts again.
 */
static int64_t pg_resources_version(store *s)
{
    struct pg *p = (struct pg *)s;
    if (PQstatus(p->conn) != CONNECTION_OK || PQtransactionStatus(p->conn) != PQTRANS_IDLE ||
        p->begin_pending)
        return -1;
    /* Read with the last batch's commit, a moment ago, and no statement ran since. */
    if (p->version_at > 0 && mono_ms() - p->version_at < VERSION_FRESH_MS)
        return p->version;
    PGresult *r = NULL;
    int64_t v = -1;
    if (store_pg_exec_raw(p, -1, "SELECT n FROM resource_changes", -1, NULL, NULL, &r, NULL, 0) ==
            STORE_OK &&
        PQntuples(r) == 1)
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

static const struct eng_driver pg_driver = {
    .name = "postgres",
    .fragments = fragments,
    .sql = dialect_sql,
    .row_locks = 1,
    .migrations = migrations,
    .n_migrations = sizeof(migrations) / sizeof(migrations[0]),
    .run = store_pg_run,
    .run_in_batch = store_pg_run_in_batch,
    .exec = store_pg_exec,
    .next = store_pg_next,
    .text = store_pg_text,
    .i64 = store_pg_i64,
    .is_null = store_pg_is_null,
    .done = store_pg_done,
    .script = store_pg_script,
    .may_undo = store_pg_may_undo,
    .begin = store_pg_begin,
    .commit = store_pg_commit_batch,
    .rollback = store_pg_rollback,
    .close = pg_close,
    .resources_version = pg_resources_version,
    .notify = pg_notify,
    .wait_fd = pg_wait_fd,
    .wait_drain = pg_wait_drain,
};
