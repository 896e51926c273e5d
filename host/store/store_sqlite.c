/*
 * The SQLite store driver: one database file shared by the host and any number of CLI
 * processes on the same machine. It supplies what engine.h asks of a driver, nothing more:
 * the dialect, the connection, transactions and their lock, statements, wake-ups.
 *
 * Durability and concurrency: WAL journal, every commit synced unless asked otherwise
 * (SQLite's synchronous=NORMAL, and this driver syncs the WAL after each commit: for a batch,
 * once its wake-ups are sent, sq_synced), foreign keys on. Every write runs inside BEGIN
 * IMMEDIATE, so a transaction takes the single write lock before it reads what it will
 * change; a busy handler with short, jittered sleeps waits for that lock, and the whole
 * transaction is retried on the rare SQLITE_BUSY the handler cannot see (WAL recovery,
 * snapshot races), so "database is locked" never reaches a user unless the lock is held for
 * the whole busy timeout. With one writer at a time no row locks are needed: the statements
 * marked lock-only are skipped, and a claim's select-then-update inside one IMMEDIATE
 * transaction is atomic.
 *
 * The host's handle commits without a sync (store_defer_sync: synchronous=NORMAL): a commit
 * writes its WAL frames and is visible to every connection at once, and the host makes it
 * durable itself, from a thread of its own (store_sync), with an fdatasync of a descriptor
 * of the WAL that is this driver's, never SQLite's file (the unix VFS keeps state in its
 * sync). The fdatasync of any descriptor flushes the file whoever wrote it, and SQLite
 * never removes the WAL while a connection is open. So another connection may read what a
 * power loss would undo; the read barrier keeps that from leaving its process. Every
 * transaction of a synchronous handle notes the data_version it read; when that is not the
 * one this handle last saw durable, the WAL is synced before the results are returned.
 * Not when the transaction wrote (the sync after its commit synced the whole WAL, every
 * frame before its own), nor when the log ends where the host last made it durable: store_sync
 * writes where that is (the end of the log as the WAL index's header names it) to
 * "<db>.wake/durable". An unchanged store costs a data_version read and no sync (a polling
 * `ferry wait`). Reads that need no barrier say so (ENG_READ_NO_BARRIER).
 *
 * Wake-ups travel as one-byte datagrams to unix sockets in "<db>.wake/", one per listening
 * host ("<bridge>@<pid>").
 */
#include "engine.h"

#include "sqlite_vfs.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Transaction control statements: prepared once per handle like the store's own, since a
 * host runs two transactions per loop turn and sqlite3_exec would parse them every time. */
enum sq_tx { TX_BEGIN, TX_BEGIN_IMMEDIATE, TX_COMMIT, TX_ROLLBACK, TX_SAVEPOINT, TX_ROLLBACK_TO,
             TX_RELEASE, TX_COUNT };

static const char *const tx_sql[TX_COUNT] = {
    [TX_BEGIN] = "BEGIN",
    [TX_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [TX_COMMIT] = "COMMIT",
    [TX_ROLLBACK] = "ROLLBACK",
    [TX_SAVEPOINT] = "SAVEPOINT op",
    [TX_ROLLBACK_TO] = "ROLLBACK TO op",
    [TX_RELEASE] = "RELEASE op",
};

/* Where the log ends, as sq_wal_end reads it: five words of the WAL index's header. */
#define WAL_END_WORDS 5

struct sq {
    struct store base;
    sqlite3 *db;
    char *path;
    pid_t pid; /* the process that opened the handle */
    int busy_timeout_ms;
    int64_t busy_started_us;
    unsigned rand_state; /* jitter for busy waits */
    int in_tx;           /* a transaction (batch or operation) is open */
    /* The batch operation now running (sq_run_in_batch): whether it took a savepoint
     * (sq_may_undo); the connection's count of changed rows when it began and when it took
     * the savepoint; and that count when the batch began. */
    int in_op, op_savepoint;
    int64_t op_changes, savepoint_changes, batch_changes;
    sqlite3_stmt *stmts[S_COUNT]; /* prepared by statement id */
    sqlite3_stmt *tx[TX_COUNT];   /* transaction control, prepared once too */
    sqlite3_stmt *data_version;   /* PRAGMA data_version, asked once per host turn */
    int wake_fd; /* bound socket a host polls, or -1 */
    char *wake_path;
    int send_fd; /* unbound socket notifications are sent from, or -1 */
    /* sq_notify's listing of "<db>.wake": its entries (NUL-separated), the directory's
     * identity and times when it was read, and whether it may be kept (wake_list). */
    char *wake_names;
    size_t wake_len;
    struct stat wake_st;
    int wake_kept;
    int short_lived; /* store_options.short_lived */
    int wal_frames;  /* frames in the WAL after this connection's last commit */
    int deferred;    /* store_defer_sync: commits are synced by the caller */
    int barrier;     /* the read barrier applies (synchronous handles) */
    /* Synchronous handles: SQLite commits with synchronous=NORMAL and this driver syncs
     * the WAL after each commit (sq_sync_log), for a batch once its wake-ups are sent
     * (sq_synced). unsynced: a batch committed, not yet synced. */
    int commit_sync, unsynced;
    int wal_fd;      /* the WAL file, read-only, for fdatasync; -1: not open yet */
    int shm_fd;      /* the WAL index, read-only, for its header (wal_end); -1: not open */
    int marker_fd;   /* "<db>.wake/durable" (wal_end): written by a deferred handle */
    /* A marker sq_sync left to sq_sync_note (note_later): two copies of the end synced. */
    uint32_t note[2 * WAL_END_WORDS];
    int note_due;
    int64_t synced_version; /* data_version when this handle last synced the WAL; -1 */
    /* A host's checkpointer (sq_ckpt_start), NULL until its first checkpoint; ckpt_failed:
     * its thread or connection did not start, the host checkpoints itself. ckpt_passes:
     * passes asked of it since the log last restarted. host_wal_frames: HOST_WAL_FRAMES,
     * or FERRY_TEST_WAL_FRAMES. */
    struct sq_ckpt *ckpt;
    int ckpt_failed, ckpt_passes, host_wal_frames;
};

/* A host's checkpointer: a thread with a connection of its own that copies the WAL into the
 * database file (PASSIVE: it never blocks a writer nor waits for one), so that the host's
 * loop does not read the frames, write the pages and sync the database file itself. A
 * checkpoint is no commit: the host's connection keeps its page cache and data_version.
 * Under mu: passes asked (want) and ended (ran), the last one's frames in the log and
 * copied (-1: it failed), stop; dead: its connection did not open. */
struct sq_ckpt {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *path;
    unsigned want, ran, waited;
    int log, done;
    int stop, dead;
    int stall; /* tests: FERRY_TEST_CKPT=stall, a pass not waited for ends at stop */
};

/* A short-lived connection leaves the WAL to the next one while it holds fewer frames
 * than this (512 KiB, about ten items created: the next opener reads it all to recover the
 * WAL index); the one that finds it longer checkpoints it on close. */
#define SHORT_WAL_FRAMES 128

/* A host (a connection that listens for wake-ups) has the WAL checkpointed (sq_ckpt) at
 * this many frames (32 MiB) instead of SQLite's 1000: its turns rewrite the same index and
 * table pages over and over, and a checkpoint copies each page once however often it was
 * written since the last one. In a drain of 100,000 items that is a tenth fewer page
 * writes and a third fewer page reads (the checkpoint reads what it copies) per item. */
#define HOST_WAL_FRAMES 8000

/* The checkpointer copies most of the log while the host commits more; the log restarts
 * only at a commit that finds every frame copied, so the host waits for one last pass once
 * at most HOST_CKPT_TAIL frames came after the previous one (or after HOST_CKPT_PASSES
 * passes), copying only those. A checkpointer that falls behind (a pass still running at
 * HOST_WAL_FRAMES * HOST_WAL_MAX_FACTOR frames) leaves the host to checkpoint itself, as
 * it did before it had one: the log never grows without bound. */
#define HOST_CKPT_TAIL      1024
#define HOST_CKPT_PASSES    4
#define HOST_WAL_MAX_FACTOR 4

/* A host that goes idle (store_idle: nothing running) checkpoints a WAL of at least this
 * many frames, off the path of any item: the next commit then restarts the WAL at its
 * start, overwriting blocks the file already has (an fdatasync there costs about half of
 * one that appends and so grows the file), and no writer on the path of an item (a create,
 * which checkpoints at SQLite's 1000 frames) finds a long WAL to checkpoint. Not at every
 * idle turn: the commit that restarts the WAL syncs its header too, one more fdatasync (the
 * host makes it its own heartbeat's, store_idle's answer, rather than the next create's). */
#define HOST_IDLE_WAL_FRAMES 512

static const struct eng_driver sqlite_driver;

/* ---- dialect -------------------------------------------------------------------------------- */

static const char *const fragments[F_COUNT] = {
    [F_DEPS_CSV] = "group_concat(p.task_id)",
    [F_INDEX_CLAIM] = "INDEXED BY qi_claim",
    [F_INDEX_MACHINE_ACTIVE] = "INDEXED BY qi_machine_active",
    [F_INDEX_CLAIM_MACHINE] = "INDEXED BY qi_claim_machine",
    [F_JSON_TEXTS] = "SELECT value FROM json_each(@)",
    [F_JSON_SEQS] = "SELECT value FROM json_each(@)",
    /* Each row's text once (json_each renders value again at every use). */
    [F_JSON_FINISHES] = "WITH r(v) AS MATERIALIZED (SELECT value FROM json_each(@))"
                        " SELECT v ->> 0 AS task_id, v ->> 1 AS token, v ->> 2 AS status,"
                        " v ->> 3 AS response, v ->> 4 AS reason FROM r",
    [F_NOW_MS] = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    [F_OR_FAIL] = "OR FAIL",
};

/* The SET of S_CLAIM_ASSIGN and S_CLAIM_ASSIGN_ONE (see dialect_sql's comment on them). */
#define SQ_CLAIM_ASSIGN_SET                                                                        \
    "UPDATE OR FAIL queue_items SET status = CASE WHEN ?5 <> 0"                                    \
    " THEN 'PROCESSING' ELSE 'ASSIGNED' END, lease_owner = ?2,"                                    \
    " lease_expires_at = ?3, claim_token = ?6 || CASE"                                             \
    " WHEN seq % 1000000000000 < 10 THEN '00000000000'"                                            \
    " WHEN seq % 1000000000000 < 100 THEN '0000000000'"                                            \
    " WHEN seq % 1000000000000 < 1000 THEN '000000000'"                                            \
    " WHEN seq % 1000000000000 < 10000 THEN '00000000'"                                            \
    " WHEN seq % 1000000000000 < 100000 THEN '0000000'"                                            \
    " WHEN seq % 1000000000000 < 1000000 THEN '000000'"                                            \
    " WHEN seq % 1000000000000 < 10000000 THEN '00000'"                                            \
    " WHEN seq % 1000000000000 < 100000000 THEN '0000'"                                            \
    " WHEN seq % 1000000000000 < 1000000000 THEN '000'"                                            \
    " WHEN seq % 1000000000000 < 10000000000 THEN '00'"                                            \
    " WHEN seq % 1000000000000 < 100000000000 THEN '0' ELSE '' END"                                \
    " || (seq % 1000000000000),"                                                                   \
    " assigned_at = ?4, updated_at = ?4,"                                                          \
    " started_at = CASE WHEN ?5 <> 0 THEN ?4 ELSE NULL END,"                                       \
    " progress_percent = NULL, progress_message = NULL"

static const char *const dialect_sql[S_COUNT] = {
    /* With one writer, the next seqs follow the largest in use. */
    [S_NEXT_SEQS] = "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?1)"
                    " SELECT (SELECT coalesce(max(seq), 0) FROM queue_items) + i FROM k",
    /* A third of the recursive form's cost to prepare, which a create of one item pays. */
    [S_NEXT_SEQ] = "SELECT coalesce(max(seq), 0) + 1 FROM queue_items",
    /* The claim of statements.c without what only row locks need: with one writer every
     * pick is still PENDING when it is marked (the claim read it in this transaction), so
     * the count of rows changed says it all. RETURNING cost SQLite about a quarter of the
     * UPDATE (it runs as a trigger), and the inner SELECT of the picks a lookup each.
     * Nothing in it can fail (OR FAIL) and it calls no function (the seq's last 12 digits,
     * zero-padded, by CASE): a statement of many rows that may fail, or that calls one, gets
     * a statement journal from SQLite, a copy of every page it changes (5% of a drain's
     * store instructions) to undo it alone, where the batch or its savepoint undoes it. */
    [S_CLAIM_ASSIGN] = SQ_CLAIM_ASSIGN_SET " WHERE seq IN (SELECT value FROM json_each(?1))"
                                           " AND (status || '') = 'PENDING'",
    /* S_CLAIM_ASSIGN of one pick (?1 its seq), as an idle host claims: IN (…) is answered
     * through a temporary index SQLite opens and frees each time, more than half of what
     * marking one item costs. */
    [S_CLAIM_ASSIGN_ONE] = SQ_CLAIM_ASSIGN_SET " WHERE seq = ?1 AND (status || '') = 'PENDING'",
    /* statements.c's, with the picks joined in the order of ?1 (the claim gives them in seq
     * order) instead of tested with IN, which SQLite answers by first storing them in a
     * temporary index, and without the ORDER BY that the join then needs no sort for: a
     * sixth less an item. */
    [S_CLAIM_EVENTS] = "WITH j(value) AS (SELECT value FROM json_each(?1))"
                       " INSERT OR FAIL INTO queue_events (task_seq, action, details,"
                       " details_is_json, at, started_attempt) SELECT q.seq, 'ASSIGNED',"
                       " 'claimed by ' || ?2 || ' for attempt ' || (q.retry_count + 1)"
                       " || ', lease until ' || ?4, 0, ?3, CASE WHEN ?5 <> 0"
                       " THEN q.retry_count + 1 END FROM j CROSS JOIN queue_items q"
                       " WHERE q.seq = j.value",
    /* ?1: [[task_seq, action, details, details_is_json, at, actor], …] */
    [S_EVENTS_INSERT_MANY] = "WITH r(v) AS MATERIALIZED (SELECT value FROM json_each(?1))"
                             " INSERT INTO queue_events (task_seq, action, details,"
                             " details_is_json, at, actor) SELECT v ->> 0, v ->> 1, v ->> 2,"
                             " v ->> 3, v ->> 4, v ->> 5 FROM r",
    /* ?1: [[seq, task_id, team, machine, bridge, function, priority, vault, created,
     * run_after, idempotent], …] */
    [S_ITEMS_INSERT_MANY] = "INSERT INTO queue_items (seq, task_id, team_name, machine_name,"
                            " bridge_name, function, priority, status, vault, created_at,"
                            " updated_at, run_after, idempotent) SELECT value ->> 0,"
                            " value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,"
                            " value ->> 6, 'PENDING', value ->> 7, value ->> 8, value ->> 8,"
                            " value ->> 9, value ->> 10 FROM json_each(?1) WHERE true"
                            " ON CONFLICT DO NOTHING", /* WHERE: SQLite's upsert parses so */
};

/* ---- migrations -------------------------------------------------------------------------- */

/*
 * Numbered schema changes, applied in order inside one IMMEDIATE transaction at open and
 * recorded in schema_migrations. Never edit a released migration: append a new one.
 */
static const struct eng_migration migrations[] = {
    {1, "resources, queue items, dependencies, events",
     "CREATE TABLE teams ("
     " name TEXT PRIMARY KEY, vault TEXT NOT NULL, vault_version INTEGER NOT NULL,"
     " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
     "CREATE TABLE regions ("
     " name TEXT PRIMARY KEY, vault TEXT NOT NULL, vault_version INTEGER NOT NULL,"
     " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
     "CREATE TABLE bridges ("
     " name TEXT PRIMARY KEY, region_name TEXT NOT NULL REFERENCES regions(name),"
     " vault TEXT NOT NULL, vault_version INTEGER NOT NULL,"
     " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
     "CREATE INDEX bridges_region ON bridges(region_name);"
     "CREATE TABLE machines ("
     " name TEXT PRIMARY KEY, team_name TEXT NOT NULL REFERENCES teams(name),"
     " bridge_name TEXT NOT NULL REFERENCES bridges(name),"
     " concurrency INTEGER NOT NULL DEFAULT 1 CHECK (concurrency >= 1),"
     " vault TEXT NOT NULL, vault_version INTEGER NOT NULL,"
     " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
     "CREATE INDEX machines_team ON machines(team_name);"
     "CREATE INDEX machines_bridge ON machines(bridge_name);"
     "CREATE TABLE storages ("
     " team_name TEXT NOT NULL REFERENCES teams(name), name TEXT NOT NULL,"
     " vault TEXT NOT NULL, vault_version INTEGER NOT NULL,"
     " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
     " PRIMARY KEY (team_name, name));"
     "CREATE TABLE schedules ("
     " team_name TEXT NOT NULL REFERENCES teams(name), name TEXT NOT NULL,"
     " vault TEXT NOT NULL, vault_version INTEGER NOT NULL,"
     " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
     " next_run_at INTEGER, last_run_at INTEGER, last_task_id TEXT,"
     " PRIMARY KEY (team_name, name));"
     /* Queue items keep names, not foreign keys: history outlives machines. */
     "CREATE TABLE queue_items ("
     " seq INTEGER PRIMARY KEY, task_id TEXT NOT NULL UNIQUE,"
     " team_name TEXT NOT NULL, machine_name TEXT NOT NULL, bridge_name TEXT NOT NULL,"
     " function TEXT NOT NULL,"
     " priority INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 5),"
     " status TEXT NOT NULL CHECK (status IN ('PENDING','ASSIGNED','PROCESSING',"
     "  'CANCELLING','COMPLETED','FAILED','CANCELLED')),"
     " vault TEXT NOT NULL, response_vault TEXT,"
     " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, run_after INTEGER NOT NULL,"
     " assigned_at INTEGER, started_at INTEGER, finished_at INTEGER,"
     " retry_count INTEGER NOT NULL DEFAULT 0, last_retry_at INTEGER,"
     " last_failure_reason TEXT,"
     " lease_owner TEXT, lease_expires_at INTEGER, claim_token TEXT,"
     " progress_percent INTEGER, progress_message TEXT,"
     " parent_task_id TEXT, link_kind TEXT, schedule_name TEXT, schedule_fire_at INTEGER,"
     " idempotent INTEGER NOT NULL DEFAULT 0);"
     /* The claim reads only these two partial indexes: the PENDING set stays small
      * however long the history grows. */
     "CREATE INDEX qi_claim ON queue_items"
     " (bridge_name, priority, created_at, seq, run_after, machine_name)"
     " WHERE status = 'PENDING';"
     "CREATE INDEX qi_claim_machine ON queue_items"
     " (bridge_name, machine_name, priority, created_at, seq, run_after)"
     " WHERE status = 'PENDING';"
     "CREATE INDEX qi_machine_active ON queue_items(machine_name)"
     " WHERE status IN ('ASSIGNED','PROCESSING','CANCELLING');"
     "CREATE INDEX qi_created ON queue_items(created_at);"
     "CREATE INDEX qi_status_created ON queue_items(status, created_at);"
     "CREATE INDEX qi_machine_created ON queue_items(machine_name, created_at);"
     "CREATE UNIQUE INDEX qi_schedule_fire ON queue_items"
     " (team_name, schedule_name, schedule_fire_at) WHERE schedule_fire_at IS NOT NULL;"
     "CREATE TABLE queue_deps ("
     " task_seq INTEGER NOT NULL REFERENCES queue_items(seq) ON DELETE CASCADE,"
     " dep_seq INTEGER NOT NULL REFERENCES queue_items(seq) ON DELETE CASCADE,"
     " PRIMARY KEY (task_seq, dep_seq)) WITHOUT ROWID;"
     "CREATE INDEX queue_deps_dep ON queue_deps(dep_seq);"
     "CREATE TABLE queue_events ("
     " seq INTEGER PRIMARY KEY,"
     " task_seq INTEGER NOT NULL REFERENCES queue_items(seq) ON DELETE CASCADE,"
     " action TEXT NOT NULL, details TEXT, details_is_json INTEGER NOT NULL DEFAULT 0,"
     " at INTEGER NOT NULL);"
     "CREATE INDEX queue_events_task ON queue_events(task_seq, seq);"},
    /* The hot path writes less per item: a claim that starts its attempt writes one event
     * row where it wrote two (started_attempt: S_EVENTS_LIST reads it as ASSIGNED then
     * PROCESSING). */
    {2, "one event row for a claim and its start",
     "ALTER TABLE queue_events ADD COLUMN started_attempt INTEGER;"},
    /* Machine groups (groups.c): a team's named list of machines, kept in the vault's
     * "members"; an item for a group fans out into one child per member, found by its
     * parent's task id. */
    {3, "machine groups and fan-out",
     "CREATE TABLE machine_groups ("
     " team_name TEXT NOT NULL REFERENCES teams(name), name TEXT NOT NULL,"
     " vault TEXT NOT NULL, vault_version INTEGER NOT NULL,"
     " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
     " PRIMARY KEY (team_name, name));"
     "CREATE INDEX machine_groups_name ON machine_groups(name);"
     "CREATE INDEX qi_parent ON queue_items(parent_task_id)"
     " WHERE parent_task_id IS NOT NULL;"},
    /*
     * An IN list of three or more constants is evaluated through a temporary b-tree that
     * SQLite builds and frees each time a statement runs: for the status CHECK, once per
     * item inserted, about a third of an insert's work (create queue-items). The CHECK
     * becomes the same test written as comparisons. SQLite cannot alter a constraint, and
     * rebuilding queue_items inside the migration's transaction would cascade the foreign
     * keys of events and dependencies, so the table's definition is rewritten in place
     * (https://sqlite.org/lang_altertable.html#otheralter: a CHECK changed, nothing on disk
     * changes); the index rebuilt after it moves the schema cookie on, so every connection
     * reads the new definition. qi_machine_active's predicate, the same IN list of three,
     * is evaluated for every row written: it is written as comparisons too, and the
     * statements that read the index name it so (ACTIVE_EQ in statements.c). (PostgreSQL's
     * migration 4 drops index entries; SQLite rewrites only the index entries whose
     * columns an update changes.)
     */
    {4, "fewer index entries and cheaper checks for the hot path's writes",
     "PRAGMA writable_schema = ON;"
     "UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (status IN (''PENDING'',''ASSIGNED'',"
     "''PROCESSING'',  ''CANCELLING'',''COMPLETED'',''FAILED'',''CANCELLED''))', 'CHECK (status"
     " = ''PENDING'' OR status = ''ASSIGNED'' OR status = ''PROCESSING'' OR status"
     " = ''CANCELLING'' OR status = ''COMPLETED'' OR status = ''FAILED'' OR status"
     " = ''CANCELLED'')') WHERE type = 'table' AND name = 'queue_items';"
     "PRAGMA writable_schema = OFF;"
     "DROP INDEX qi_machine_active;"
     "CREATE INDEX qi_machine_active ON queue_items(machine_name)"
     " WHERE status = 'ASSIGNED' OR status = 'PROCESSING' OR status = 'CANCELLING';"},
    /*
     * People (host/people, docs/people.md): users, their API tokens (only a SHA-256 hash of
     * each is kept) and the audit log, which the store's changes write in their own
     * transaction; an item's events record who asked for them (actor, NULL for the host).
     * A user removed stays as a row (deleted_at) so that the audit log's names keep one
     * meaning.
     */
    {5, "users, tokens, roles and the audit log",
     "CREATE TABLE users ("
     " name TEXT PRIMARY KEY, created_at INTEGER NOT NULL, created_by TEXT NOT NULL,"
     " deleted_at INTEGER, deleted_by TEXT);"
     "CREATE TABLE tokens ("
     " id INTEGER PRIMARY KEY, user_name TEXT NOT NULL REFERENCES users(name),"
     " team_name TEXT NOT NULL,"
     " role TEXT NOT NULL CHECK (role = 'viewer' OR role = 'operator' OR role = 'admin'),"
     " token_hash TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL, created_by TEXT NOT NULL,"
     " last_used_at INTEGER, last_used_address TEXT, revoked_at INTEGER, revoked_by TEXT);"
     "CREATE INDEX tokens_user ON tokens(user_name);"
     "CREATE TABLE audit_log ("
     " seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL, via TEXT NOT NULL,"
     " address TEXT, token_id INTEGER, action TEXT NOT NULL, team_name TEXT, target TEXT,"
     " details TEXT);"
     "CREATE INDEX audit_at ON audit_log(at);"
     "ALTER TABLE queue_events ADD COLUMN actor TEXT;"},
    /* ferry web (hosts.c): the hosts' heartbeats, and ended items by their end, which
     * /metrics counts and the event stream follows without reading the whole history. */
    {6, "hosts and their heartbeats; ended items by finished_at",
     "CREATE TABLE IF NOT EXISTS hosts ("
     " host_id TEXT PRIMARY KEY, bridge_name TEXT NOT NULL, version TEXT NOT NULL,"
     " started_at INTEGER NOT NULL, last_seen_at INTEGER NOT NULL,"
     " running INTEGER NOT NULL DEFAULT 0, stopped_at INTEGER);"
     "CREATE INDEX IF NOT EXISTS qi_finished ON queue_items(finished_at)"
     " WHERE finished_at IS NOT NULL;"},
    /* Secrets sealed at rest (store_seal.c): the id of the key every sealed value of the
     * store is under. No row: the store's secrets have not been sealed yet (a store made
     * before this migration); the first process that holds the key seals them. */
    {7, "the key secrets are sealed with",
     "CREATE TABLE IF NOT EXISTS seal_state (one INTEGER PRIMARY KEY CHECK (one = 1),"
     " key_id TEXT NOT NULL, updated_at INTEGER NOT NULL);"},
    /* 8 (the engine work, issue 14): the hosts of a bridge that wait for work while others
     * hold every machine with ready items (fair claims: waits.c, host/serve/fairness.c).
     * One row per waiting host. */
    {8, "hosts waiting for work, and notifications not yet sent",
     "CREATE TABLE IF NOT EXISTS claim_waits (bridge_name TEXT NOT NULL, owner TEXT NOT NULL,"
     " until_ms INTEGER NOT NULL, PRIMARY KEY (bridge_name, owner)) WITHOUT ROWID;"
     /* ... and the notifications of ends not yet handed to their sender (settle.c): a
      * host that dies between its commit and that hand-off leaves them to another. */
     "CREATE TABLE IF NOT EXISTS notify_outbox (task_id TEXT PRIMARY KEY,"
     " bridge_name TEXT NOT NULL, due_ms INTEGER NOT NULL) WITHOUT ROWID;"},
    /* 10 (history upkeep, issue 18): chores that one host of the store does at a time, such
     * as pruning the history once a day (host/serve/upkeep.c): who holds one, until when,
     * when it is due again and what its last run did. */
    {10, "chores shared by the hosts of a store",
     "CREATE TABLE IF NOT EXISTS chores (name TEXT PRIMARY KEY, owner TEXT,"
     " lease_until INTEGER NOT NULL DEFAULT 0, due_at INTEGER NOT NULL DEFAULT 0,"
     " started_at INTEGER, finished_at INTEGER, result TEXT);"},
    /* 11: PostgreSQL's count of the changes to machines and teams (store_resources_version); SQLite
     * has PRAGMA data_version, so nothing changes here: recorded so that both drivers
     * number their migrations alike. */
    {11, "a count of the changes to machines and teams", "SELECT 1;"},
    /* 12: PostgreSQL's host and client roles; SQLite has no roles (file modes guard it). */
    {12, "host and client roles", ""},
    /*
     * The hot path's writes, once more. A claim and an end each moved an item's entry in
     * qi_status_created (status, created_at): a delete and an insert twice in every item's
     * life. qi_unheld_created keeps the same key for the items no host holds (PENDING and
     * ended), so a claim deletes the PENDING entry and an end inserts the ended one: two
     * b-tree operations an item instead of four, and every list by status is still a seek
     * of its newest items. The active set (at most the machines' concurrency) is read
     * through qi_machine_active. A partial index serves only a query that states its
     * predicate, so the readers name each status as a literal (queue.c's status filters,
     * S_COUNTS_*) or ACTIVE_EQ (statements.c). And every event row (two an item) paid a
     * foreign-key lookup of its item: the key goes, as on PostgreSQL (its migration 4), and
     * a trigger removes an item's events with the item, as the key's cascade did. The key
     * is removed by rewriting the table's definition in place, the way SQLite documents
     * for dropping a foreign key (nothing on disk changes; see migration 4); RESET reads
     * the schema again, or the migrating connection would go on checking the key, and the
     * index and trigger changes after it move the schema cookie on, so that every other
     * connection reads it again too. bench_queue turns (10,000 items): 177,000 -> 169,300
     * instructions an item (an index of the ended items alone: 164,300, but then a list of
     * the PENDING items read all of them).
     */
    {13,
     "an index by status of the items no host holds instead of every item's; events without a "
     "foreign key",
     "PRAGMA writable_schema = ON;"
     "UPDATE sqlite_schema SET sql = replace(sql, 'task_seq INTEGER NOT NULL REFERENCES"
     " queue_items(seq) ON DELETE CASCADE, action', 'task_seq INTEGER NOT NULL, action')"
     " WHERE type = 'table' AND name = 'queue_events';"
     "PRAGMA writable_schema = RESET;"
     "CREATE TRIGGER IF NOT EXISTS queue_items_events AFTER DELETE ON queue_items"
     " BEGIN DELETE FROM queue_events WHERE task_seq = old.seq; END;"
     "DROP INDEX IF EXISTS qi_status_created;"
     "CREATE INDEX IF NOT EXISTS qi_unheld_created ON queue_items(status, created_at)"
     " WHERE status = 'PENDING' OR status = 'COMPLETED' OR status = 'FAILED'"
     " OR status = 'CANCELLED';"},
};


#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

/* ---- statements ----------------------------------------------------------------------------- */

/* Maps an engine result to a store status, formatting err for real failures. */
static int sq_fail(struct sq *q, int rc, char *err, size_t errlen)
{
    int primary = rc & 0xff;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
        return ENG_AGAIN;
    if (primary == SQLITE_CONSTRAINT) {
        seterr(err, errlen, "store %s: %s", q->path, sqlite3_errmsg(q->db));
        return STORE_CONFLICT;
    }
    seterr(err, errlen, "store %s: %s", q->path,
           primary == SQLITE_OK ? "internal error" : sqlite3_errmsg(q->db));
    return STORE_ERROR;
}

/* Binds values 1…n; values past the statement's last parameter are skipped, so the
 * statements of one family can share a parameter list. A statement without result columns
 * runs to its end in sq_exec's one step and is reset before it is bound again, so its texts
 * are bound in place: copying them was 4% of a bulk create's instructions. A statement with
 * rows keeps its own copies, since the caller's texts may go before its last row is read. */
static int sq_bind(sqlite3_stmt *st, int n, const struct eng_val *v)
{
    int rc = SQLITE_OK, count = sqlite3_bind_parameter_count(st);
    sqlite3_destructor_type keep =
        sqlite3_column_count(st) == 0 ? SQLITE_STATIC : SQLITE_TRANSIENT;
    for (int i = 0; rc == SQLITE_OK && i < n && i < count; i++) {
        if (v[i].is_null)
            rc = sqlite3_bind_null(st, i + 1);
        else if (v[i].is_text)
            rc = sqlite3_bind_text(st, i + 1, v[i].text, -1, keep);
        else
            rc = sqlite3_bind_int64(st, i + 1, v[i].num);
    }
    return rc;
}

/* Cursor state in eng_rows: impl the statement, pos 1 when a stepped row waits to be read,
 * 0 when the next step is due, -1 at the end; n 1 when the statement is dynamic (finalized
 * at the end) rather than cached. */
static int sq_exec(store *s, int id, const char *sql, int flags, int n, const struct eng_val *v,
                   eng_rows *rows, long *changes, char *err, size_t errlen)
{
    struct sq *q = (struct sq *)s;
    sqlite3_stmt *st = id >= 0 ? q->stmts[id] : NULL;
    int rc = SQLITE_OK;
    (void)flags;
    if (st == NULL) {
        rc = sqlite3_prepare_v3(q->db, sql, -1, id >= 0 ? SQLITE_PREPARE_PERSISTENT : 0, &st,
                                NULL);
        if (rc != SQLITE_OK)
            return sq_fail(q, rc, err, errlen);
        if (id >= 0)
            q->stmts[id] = st;
    }
    rc = sq_bind(st, n, v);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        int status = sq_fail(q, rc, err, errlen);
        if (id >= 0) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
        } else {
            sqlite3_finalize(st);
        }
        return status;
    }
    if (changes)
        *changes = sqlite3_changes(q->db);
    *rows = (eng_rows){.s = s, .impl = st, .pos = rc == SQLITE_ROW ? 1 : -1, .n = id < 0};
    return STORE_OK;
}

static int sq_next(eng_rows *r, char *err, size_t errlen)
{
    if (r->pos == 1) {
        r->pos = 0;
        return 1;
    }
    if (r->pos < 0)
        return 0;
    int rc = sqlite3_step(r->impl);
    if (rc == SQLITE_ROW)
        return 1;
    r->pos = -1;
    return rc == SQLITE_DONE ? 0 : sq_fail((struct sq *)r->s, rc, err, errlen);
}

static const char *sq_text(eng_rows *r, int col)
{
    return (const char *)sqlite3_column_text(r->impl, col);
}

static int64_t sq_i64(eng_rows *r, int col)
{
    return sqlite3_column_int64(r->impl, col);
}

static int sq_is_null(eng_rows *r, int col)
{
    return sqlite3_column_type(r->impl, col) == SQLITE_NULL;
}

static void sq_done(eng_rows *r)
{
    if (r->n) {
        sqlite3_finalize(r->impl);
        return;
    }
    sqlite3_reset(r->impl);
    sqlite3_clear_bindings(r->impl);
}

static int sq_script(store *s, const char *sql, char *err, size_t errlen)
{
    struct sq *q = (struct sq *)s;
    char *msg = NULL;
    int rc = sqlite3_exec(q->db, sql, NULL, NULL, &msg);
    int status = STORE_OK;
    if (rc != SQLITE_OK) {
        status = sq_fail(q, rc, NULL, 0);
        if (status != ENG_AGAIN)
            seterr(err, errlen, "%s", msg ? msg : sqlite3_errstr(rc));
        status = status == ENG_AGAIN ? ENG_AGAIN : STORE_ERROR;
    }
    sqlite3_free(msg);
    return status;
}

/* Runs a transaction control statement, reporting failures. */
static int sq_cmd(struct sq *q, enum sq_tx cmd, char *err, size_t errlen)
{
    int rc = SQLITE_OK;
    if (q->tx[cmd] == NULL)
        rc = sqlite3_prepare_v3(q->db, tx_sql[cmd], -1, SQLITE_PREPARE_PERSISTENT, &q->tx[cmd],
                                NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(q->tx[cmd]);
        sqlite3_reset(q->tx[cmd]);
    }
    return rc == SQLITE_DONE || rc == SQLITE_OK ? STORE_OK : sq_fail(q, rc, err, errlen);
}

/* ---- transactions --------------------------------------------------------------------------- */

static int64_t sq_data_version(store *s);

/* A file of the store's, opened once read-only (its fd in *fd); -1 when it cannot be. Not a
 * FIFO put in its place: O_NONBLOCK (nothing for a regular file). Its reads leave its
 * inode clean where they may (sqlite_vfs_open): the marker is read before every sync. */
static int sq_open_once(struct sq *q, int *fd, const char *suffix)
{
    if (*fd < 0) {
        char *name = xasprintf("%s%s", q->path, suffix);
        *fd = sqlite_vfs_open(name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0);
        free(name);
    }
    return *fd;
}

/*
 * Where the log ends: the fields of the WAL index's header that name its last commit (the
 * frame count, that frame's checksum, the salts that change when the log restarts; bytes
 * 16-19 and 24-39 of WalIndexHdr in SQLite's wal.c), read from the -shm file. SQLite keeps
 * two copies of the header and writes them one after the other: copies that differ are
 * being written, and the end is unknown. 0, or -1 when unknown.
 */
static int sq_wal_end(struct sq *q, uint32_t end[WAL_END_WORDS])
{
    unsigned char h[96];
    if (sq_open_once(q, &q->shm_fd, "-shm") < 0 || pread(q->shm_fd, h, sizeof(h), 0) != 96 ||
        memcmp(h, h + 48, 48) != 0 || h[12] == 0)
        return -1;
    memcpy(end, h + 16, 4);
    memcpy(end + 1, h + 24, 16);
    return 0;
}

/*
 * The read barrier (see the top of the file): a transaction that read data_version version
 * returns only once every commit it may have seen is durable. synced: it committed changes
 * itself, synchronously, which synced the WAL up to its own frames. No sync either when
 * the log ends where a deferred handle last made it durable (sq_sync's marker, in the
 * wake-up directory): a command reading the row it just created, which the host claimed
 * and synced meanwhile, would sync a second time for nothing.
 */
static int sq_barrier(struct sq *q, int64_t version, int synced, char *err, size_t errlen)
{
    if (version >= 0 && version == q->synced_version)
        return STORE_OK;
    uint32_t end[WAL_END_WORDS], marked[2 * WAL_END_WORDS];
    if (!synced && sq_wal_end(q, end) == 0 &&
        sq_open_once(q, &q->marker_fd, ".wake/durable") >= 0 &&
        pread(q->marker_fd, marked, sizeof(marked), 0) == (ssize_t)sizeof(marked) &&
        memcmp(marked, marked + WAL_END_WORDS, sizeof(end)) == 0 &&
        memcmp(marked, end, sizeof(end)) == 0)
        synced = 1;
    /* No WAL file: every commit is in the database file, synced by its checkpoint. */
    if (!synced && sq_open_once(q, &q->wal_fd, "-wal") >= 0 && fdatasync(q->wal_fd) != 0) {
        seterr(err, errlen, "store %s: cannot sync the log before answering: %s", q->path,
               strerror(errno));
        return STORE_ERROR;
    }
    q->synced_version = version;
    return STORE_OK;
}

/* A synchronous handle's commit made durable: a sync of the WAL, whose frames it wrote
 * (and every frame before them, whoever wrote them), through SQLite's own file, as
 * synchronous=FULL's commit did: in the handle's thread, so the unix VFS's state in its
 * sync (the directory of a WAL it created, synced once) is its own to keep. */
static int sq_sync_log(struct sq *q, char *err, size_t errlen)
{
    q->unsynced = 0;
    sqlite3_file *wal = NULL;
    int rc = sqlite3_file_control(q->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal);
    if (rc == SQLITE_OK && wal != NULL && wal->pMethods != NULL)
        rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
    else
        rc = sq_open_once(q, &q->wal_fd, "-wal") >= 0 && fdatasync(q->wal_fd) == 0
                 ? SQLITE_OK
                 : SQLITE_IOERR_FSYNC;
    if (rc != SQLITE_OK) {
        seterr(err, errlen, "store %s: cannot sync the log: %s", q->path, sqlite3_errstr(rc));
        return STORE_ERROR;
    }
    return STORE_OK;
}

/* SQLite's busy handler: short sleeps that grow to a few ms, with jitter so that several
 * waiting processes do not retry in lock-step; gives up after the busy timeout. */
static int sq_busy_handler(void *arg, int count)
{
    struct sq *q = arg;
    int64_t now = mono_us();
    if (count == 0)
        q->busy_started_us = now;
    if (now - q->busy_started_us > (int64_t)q->busy_timeout_ms * 1000)
        return 0;
    unsigned base = 50u << (count < 6 ? count : 6);
    usleep(base + (unsigned)rand_r(&q->rand_state) % base);
    return 1;
}

/* Waits before the next try of a busy transaction; 0, or -1 (err set) past the deadline. */
static int sq_backoff(struct sq *q, unsigned attempt, int64_t deadline, char *err, size_t errlen)
{
    if (mono_ms() >= deadline) {
        seterr(err, errlen, "store %s stayed locked by another process for %.1f s; try again",
               q->path, q->busy_timeout_ms / 1000.0);
        return -1;
    }
    unsigned base = 200u << (attempt < 5 ? attempt : 5);
    usleep(base + (unsigned)rand_r(&q->rand_state) % base);
    return 0;
}

/*
 * Runs body in its own transaction (IMMEDIATE for writes), committing when it returns
 * STORE_OK and rolling back otherwise. A busy engine restarts the whole transaction until
 * the busy timeout.
 */
static int sq_run(store *s, int write, eng_body body, void *ctx, char *err, size_t errlen)
{
    struct sq *q = (struct sq *)s;
    int64_t deadline = mono_ms() + q->busy_timeout_ms;
    for (unsigned attempt = 0;; attempt++) {
        int rc = sq_cmd(q, write ? TX_BEGIN_IMMEDIATE : TX_BEGIN, err, errlen);
        if (rc == STORE_OK) {
            q->in_tx = 1;
            /* Not for store_open's own reads (migrations, the seal's state): a command that
             * only writes (a create) syncs once, at its commit. */
            int barrier = q->barrier && q->base.opened && !q->base.read_no_barrier;
            int64_t changes = barrier ? sqlite3_total_changes64(q->db) : 0, version = -1;
            rc = body(s, ctx, err, errlen);
            if (rc == STORE_OK && barrier)
                version = sq_data_version(s); /* what the transaction read */
            /* Outputs exist once the body succeeded, so a failed COMMIT is reported rather
             * than retried (in WAL mode, with the write lock held, it does not happen). */
            if (rc == STORE_OK && (rc = sq_cmd(q, TX_COMMIT, err, errlen)) == ENG_AGAIN) {
                seterr(err, errlen, "store %s: commit refused while busy; try again", q->path);
                rc = STORE_ERROR;
            }
            if (!sqlite3_get_autocommit(q->db))
                sq_cmd(q, TX_ROLLBACK, NULL, 0);
            q->in_tx = 0;
            if (rc == STORE_OK && write && q->commit_sync)
                rc = sq_sync_log(q, err, errlen);
            if (rc == STORE_OK && barrier)
                rc = sq_barrier(q, version, sqlite3_total_changes64(q->db) != changes, err,
                                errlen);
        }
        if (rc != ENG_AGAIN)
            return rc;
        if (sq_backoff(q, attempt, deadline, err, errlen) != 0)
            return STORE_ERROR;
    }
}

static int sq_begin(store *s, char *err, size_t errlen)
{
    struct sq *q = (struct sq *)s;
    int64_t deadline = mono_ms() + q->busy_timeout_ms;
    for (unsigned attempt = 0;; attempt++) {
        int rc = sq_cmd(q, TX_BEGIN_IMMEDIATE, err, errlen);
        if (rc == STORE_OK) {
            q->in_tx = 1;
            q->batch_changes = sqlite3_total_changes64(q->db);
        }
        if (rc != ENG_AGAIN)
            return rc;
        if (sq_backoff(q, attempt, deadline, err, errlen) != 0)
            return STORE_ERROR;
    }
}

/*
 * One operation inside the open batch, whose failure undoes only its own changes. It runs
 * without a savepoint: one copies every page the operation changes (with its SAVEPOINT and
 * RELEASE, 2,600 instructions an item in bench_queue turns). An operation changes nothing
 * before its checks have passed (its CONFLICT or NOT_FOUND) and SQLite undoes a failed
 * statement, so the connection's count of changed rows tells whether a failure left
 * anything to undo; an operation that may fail after it changed rows says so first
 * (sq_may_undo) and gets the savepoint. Should one fail after changes it did not announce
 * (an I/O error, a hostile trigger), the batch begins again when it held nothing else, and
 * is lost otherwise (batch_lost), as when SQLite rolled it back itself.
 */
static int sq_run_in_batch(store *s, eng_body body, void *ctx, char *err, size_t errlen)
{
    struct sq *q = (struct sq *)s;
    q->in_op = 1;
    q->op_savepoint = 0;
    q->op_changes = sqlite3_total_changes64(q->db);
    int rc = body(&q->base, ctx, err, errlen);
    q->in_op = 0;
    if (sqlite3_get_autocommit(q->db)) {
        /* An I/O error or similar rolled back the whole batch. */
        q->in_tx = 0;
        q->base.batch_lost = 1;
        seterr(err, errlen, "store %s: the batch was rolled back: %s", q->path,
               sqlite3_errmsg(q->db));
        return STORE_ERROR;
    }
    if (q->op_savepoint && rc != STORE_OK)
        sq_cmd(q, TX_ROLLBACK_TO, NULL, 0);
    if (q->op_savepoint)
        sq_cmd(q, TX_RELEASE, NULL, 0);
    if (rc == ENG_AGAIN) {
        seterr(err, errlen, "store %s: busy inside a batch", q->path);
        rc = STORE_ERROR;
    }
    int64_t left = q->op_savepoint ? q->savepoint_changes : sqlite3_total_changes64(q->db);
    if (rc == STORE_OK || left == q->op_changes)
        return rc;
    char why[512];
    snprintf(why, sizeof(why), "%s", err ? err : "");
    sq_cmd(q, TX_ROLLBACK, NULL, 0);
    q->in_tx = 0;
    if (q->op_changes == q->batch_changes && sq_begin(s, NULL, 0) == STORE_OK)
        return rc;
    q->base.batch_lost = 1;
    seterr(err, errlen, "store %s: the batch was rolled back: %s", q->path, why);
    return STORE_ERROR;
}

/* The running batch operation may fail after it changed rows: its savepoint, taken now,
 * before its first write. Outside a batch the operation's transaction is its own. */
static void sq_may_undo(store *s)
{
    struct sq *q = (struct sq *)s;
    if (!q->in_op || q->op_savepoint || sq_cmd(q, TX_SAVEPOINT, NULL, 0) != STORE_OK)
        return;
    q->op_savepoint = 1;
    q->savepoint_changes = sqlite3_total_changes64(q->db);
}

static int sq_commit(store *s, char *err, size_t errlen)
{
    struct sq *q = (struct sq *)s;
    int rc = q->in_tx ? sq_cmd(q, TX_COMMIT, err, errlen) : STORE_ERROR;
    if (!q->in_tx)
        seterr(err, errlen, "store %s: the batch was lost (rolled back after an error)", q->path);
    if (!sqlite3_get_autocommit(q->db))
        sq_cmd(q, TX_ROLLBACK, NULL, 0);
    q->in_tx = 0;
    q->unsynced = rc == STORE_OK && q->commit_sync;
    return rc == ENG_AGAIN ? STORE_ERROR : rc;
}

/* store_commit, its wake-ups sent: the batch's commit on disk. */
static int sq_synced(store *s, char *err, size_t errlen)
{
    struct sq *q = (struct sq *)s;
    return q->unsynced ? sq_sync_log(q, err, errlen) : STORE_OK;
}

static int sq_rollback(store *s, char *err, size_t errlen)
{
    struct sq *q = (struct sq *)s;
    (void)err;
    (void)errlen;
    if (!sqlite3_get_autocommit(q->db))
        sq_cmd(q, TX_ROLLBACK, NULL, 0);
    q->in_tx = 0;
    return STORE_OK;
}

/* ---- open, close ------------------------------------------------------------------------------ */

/* Sets a PRAGMA, retrying while another process holds a lock it needs (switching to WAL
 * does, once per file). */
static int sq_pragma(struct sq *q, const char *sql, const char *expect, char *err, size_t errlen)
{
    int64_t deadline = mono_ms() + q->busy_timeout_ms;
    for (;;) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(q->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(st);
        int ok = rc == SQLITE_DONE ||
                 (rc == SQLITE_ROW &&
                  (expect == NULL || strcmp((const char *)sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "", expect) == 0));
        if (rc == SQLITE_ROW && !ok)
            seterr(err, errlen, "store %s: %s gave '%s', not '%s'", q->path, sql,
                   (const char *)sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "", expect);
        sqlite3_finalize(st);
        if (ok)
            return STORE_OK;
        if (rc == SQLITE_ROW)
            return STORE_ERROR;
        if (sq_fail(q, rc, err, errlen) != ENG_AGAIN)
            return STORE_ERROR;
        if (mono_ms() >= deadline) {
            seterr(err, errlen, "store %s stayed locked by another process; try again", q->path);
            return STORE_ERROR;
        }
        usleep(2000);
    }
}

/* The migrations' check at every open asks whether their table exists: SQLite has parsed
 * the schema by then (the journal mode's PRAGMA needs it), so the answer is a look-up in it,
 * where a query of sqlite_master cost 71,000 instructions (2% of a create queue-item). */
static int sq_has_table(store *s, const char *name, int64_t *exists, char *err, size_t errlen)
{
    struct sq *q = (struct sq *)s;
    int rc = sqlite3_table_column_metadata(q->db, "main", name, NULL, NULL, NULL, NULL, NULL,
                                           NULL);
    *exists = rc == SQLITE_OK;
    /* SQLITE_ERROR: no such table (a view is none either). */
    return rc == SQLITE_OK || rc == SQLITE_ERROR ? STORE_OK : sq_fail(q, rc, err, errlen);
}

static void sq_ckpt_stop(struct sq *q);

static void sq_free(struct sq *q)
{
    for (size_t i = 0; i < S_COUNT; i++)
        sqlite3_finalize(q->stmts[i]);
    for (size_t i = 0; i < TX_COUNT; i++)
        sqlite3_finalize(q->tx[i]);
    sqlite3_finalize(q->data_version);
    sq_ckpt_stop(q);
    int fds[] = {q->wal_fd, q->shm_fd, q->marker_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (q->wake_fd >= 0)
        close(q->wake_fd);
    if (q->send_fd >= 0)
        close(q->send_fd);
    if (q->wake_path)
        unlink(q->wake_path);
    sqlite3_close_v2(q->db);
    eng_free_texts(&q->base);
    free(q->wake_path);
    free(q->wake_names);
    free(q->path);
    free(q);
}

static void sq_close(store *s)
{
    struct sq *q = (struct sq *)s;
    if (q->pid != getpid()) {
        /* A child that inherited the handle across fork must not touch the parent's
         * database connection or wake-up socket: only the memory is let go. */
        eng_free_texts(&q->base);
        if (q->ckpt != NULL) /* the parent's thread: not this process's */
            free(q->ckpt->path);
        free(q->ckpt);
        free(q->wake_path);
        free(q->wake_names);
        free(q->path);
        free(q);
        return;
    }
    if (!sqlite3_get_autocommit(q->db))
        sq_cmd(q, TX_ROLLBACK, NULL, 0);
    if (q->short_lived && q->wal_frames >= SHORT_WAL_FRAMES)
        sqlite3_db_config(q->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, (int *)NULL);
    sq_free(q);
}

/* A command's handle outside a transaction, with no wake-up socket to remove, and a WAL
 * shorter than the close's checkpoint (sq_close): its close only unmaps the WAL index,
 * releases its locks and closes its files, which the exit does too. */
static int sq_exit_leaves(store *s)
{
    struct sq *q = (struct sq *)s;
    return q->pid == getpid() && q->short_lived && q->wake_path == NULL &&
           sqlite3_get_autocommit(q->db) && q->wal_frames < SHORT_WAL_FRAMES;
}

static void *sq_ckpt_thread(void *arg)
{
    struct sq_ckpt *c = arg;
    sqlite3 *db = NULL;
    /* Never a checkpoint at its close (the host's connection is open), synchronous as the
     * host's: a checkpoint syncs the WAL before it copies and the database file after. */
    int ok = sqlite3_open_v2(c->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) ==
                 SQLITE_OK &&
             sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL) == SQLITE_OK &&
             sqlite3_busy_timeout(db, 5000) == SQLITE_OK &&
             sqlite3_exec(db, "PRAGMA synchronous = NORMAL; PRAGMA journal_mode = WAL", NULL, NULL,
                          NULL) == SQLITE_OK;
    pthread_mutex_lock(&c->mu);
    c->dead = !ok;
    pthread_cond_broadcast(&c->cv);
    while (!c->stop && !c->dead) {
        if (c->ran >= c->want) {
            pthread_cond_wait(&c->cv, &c->mu);
            continue;
        }
        unsigned target = c->want;
        while (c->stall && c->waited < target && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        pthread_mutex_unlock(&c->mu);
        int log = -1, done = -1;
        if (sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done) !=
            SQLITE_OK)
            log = -1;
        pthread_mutex_lock(&c->mu);
        c->ran = target;
        c->log = log;
        c->done = done;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    sqlite3_close_v2(db);
    return NULL;
}

/* The host's checkpointer, started at its first checkpoint; NULL when it cannot run. */
static struct sq_ckpt *sq_ckpt_start(struct sq *q)
{
    if (q->ckpt != NULL || q->ckpt_failed)
        return q->ckpt;
    /* Tests and measurements: FERRY_TEST_CKPT=off, the host checkpoints itself, as before. */
    const char *test = getenv("FERRY_TEST_CKPT");
    if (test != NULL && strcmp(test, "off") == 0) {
        q->ckpt_failed = 1;
        return NULL;
    }
    struct sq_ckpt *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    c->path = xstrdup(q->path);
    c->stall = test != NULL && strcmp(test, "stall") == 0;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    /* The thread takes no signal (a host reads them from its signalfd), as durable.c's. */
    int started = thread_start_quiet(&c->thread, sq_ckpt_thread, c) == 0;
    if (!started) {
        free(c->path);
        free(c);
        q->ckpt_failed = 1;
        return NULL;
    }
    q->ckpt = c;
    return c;
}

/* Stops the checkpointer: a pass under way ends first. */
static void sq_ckpt_stop(struct sq *q)
{
    struct sq_ckpt *c = q->ckpt;
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c->path);
    free(c);
    q->ckpt = NULL;
}

/* Asks the checkpointer for a pass, if it is between passes; wait: returns once the pass
 * ended, with its log and done. 0, or -1 when there is no checkpointer or it is in a pass.
 * A checkpointer whose connection did not open is stopped: the host checkpoints itself. */
static int sq_ckpt_pass(struct sq *q, int wait, int *log, int *done)
{
    struct sq_ckpt *c = sq_ckpt_start(q);
    if (c == NULL)
        return -1;
    pthread_mutex_lock(&c->mu);
    int ok = !c->dead && c->ran >= c->want;
    if (ok) {
        unsigned target = ++c->want;
        if (wait)
            c->waited = target;
        pthread_cond_broadcast(&c->cv);
        while (wait && c->ran < target && !c->dead)
            pthread_cond_wait(&c->cv, &c->mu);
        ok = !c->dead;
        *log = c->log;
        *done = c->done;
    }
    pthread_mutex_unlock(&c->mu);
    if (!ok && c->dead && !q->ckpt_failed) {
        q->ckpt_failed = 1;
        sq_ckpt_stop(q);
    }
    return ok ? 0 : -1;
}

/* A host's log at host_wal_frames or more: the checkpointer copies it, in passes the host
 * does not wait for, then one last pass it waits for (HOST_CKPT_TAIL) after which its
 * next commit restarts the log. */
static void sq_host_checkpoint(struct sq *q, int frames)
{
    int log = 0, done = 0;
    struct sq_ckpt *c = sq_ckpt_start(q);
    if (c != NULL && q->ckpt_passes > 0) {
        pthread_mutex_lock(&c->mu);
        int idle = c->ran >= c->want, copied = c->log < 0 ? 0 : c->done;
        pthread_mutex_unlock(&c->mu);
        if (idle && (frames - copied <= HOST_CKPT_TAIL || q->ckpt_passes >= HOST_CKPT_PASSES)) {
            if (sq_ckpt_pass(q, 1, &log, &done) == 0)
                q->ckpt_passes = 0;
            return;
        }
    }
    if (c != NULL && sq_ckpt_pass(q, 0, &log, &done) == 0) {
        q->ckpt_passes++;
        return;
    }
    if (q->ckpt == NULL || frames >= q->host_wal_frames * HOST_WAL_MAX_FACTOR)
        sqlite3_wal_checkpoint(q->db, NULL);
}

/* Commit hook: notes the WAL's length (for sq_close and sq_idle), and checkpoints as
 * SQLite's own hook would, at its default 1000 frames for a short-lived connection; a
 * host's checkpointer at host_wal_frames (sq_host_checkpoint). */
static int sq_wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct sq *q = arg;
    if (frames < q->wal_frames)
        q->ckpt_passes = 0; /* the log restarted */
    q->wal_frames = frames;
    if (q->short_lived) {
        if (frames >= 1000)
            sqlite3_wal_checkpoint(db, name);
    } else if (frames >= q->host_wal_frames) {
        sq_host_checkpoint(q, frames);
    }
    return SQLITE_OK;
}

static int sq_configure(struct sq *q, const struct store_options *opts, char *err, size_t errlen)
{
    sqlite3_extended_result_codes(q->db, 1);
    sqlite3_busy_handler(q->db, sq_busy_handler, q);
    /* A command is often the first to open the store since the last one closed it: its
     * first read (the PRAGMA below) rebuilds the WAL index from the whole log, read many
     * frames at a time (sqlite_vfs.c). */
    if (q->short_lived)
        (void)sqlite_vfs_read_ahead(q->db);
    int rc = sq_pragma(q, "PRAGMA journal_mode = WAL", "wal", err, errlen);
    if (rc == STORE_OK)
        rc = sq_pragma(q, "PRAGMA foreign_keys = ON", NULL, err, errlen);
    /* synchronous=FULL's durability with the sync after the commit, by this driver
     * (sq_sync_log): a commit is published first, and a batch's wake-ups go out before
     * its sync, so that the host woken claims while the disk syncs (docs/store-drivers.md).
     * store.synchronous = "normal": no sync at all, SQLite's NORMAL. */
    q->commit_sync = !opts->synchronous_normal;
    if (rc == STORE_OK)
        rc = sq_pragma(q, "PRAGMA synchronous = NORMAL", NULL, err, errlen);
    /* A statement that changes many rows inside a transaction keeps the pages it changed
     * in a statement journal (to undo itself alone); past 64 KiB SQLite writes it to a
     * temporary file. A claim of 64 items did, at every claim: a third of the store's
     * writes. In memory it is a few hundred KiB for as long as the statement runs. */
    if (rc == STORE_OK)
        rc = sq_pragma(q, "PRAGMA temp_store = MEMORY", NULL, err, errlen);
    if (rc == STORE_OK && q->short_lived) {
        /* Closing the last connection would checkpoint the WAL into the database and
         * remove it: three fsyncs and a file created and removed per command. The commit
         * itself is as durable (the WAL is synced); the next opener recovers the WAL. */
        sqlite3_db_config(q->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
        sqlite3_wal_hook(q->db, sq_wal_hook, q);
        /* The close that does checkpoint (SHORT_WAL_FRAMES) keeps the WAL file and empties
         * it (sqlite_vfs.c, wal_truncate): no file removed, made and its directory synced
         * again, and the next commits write over its blocks. journal_size_limit (at least
         * 0) is what makes SQLite empty a kept WAL at close; it also cuts a WAL longer than
         * it at the commit after an in-connection restart (a bulk create). */
        int keep = 1;
        sqlite3_file_control(q->db, "main", SQLITE_FCNTL_PERSIST_WAL, &keep);
        rc = sq_pragma(q, "PRAGMA journal_size_limit = 1048576", NULL, err, errlen);
        /* A bulk create is one transaction of many pages: the savepoint and statement
         * journals stay in memory (temp_store, above), and up to 64 MiB of pages stay
         * cached instead of spilling to the WAL and being read back. */
        if (rc == STORE_OK)
            rc = sq_pragma(q, "PRAGMA cache_size = -65536", NULL, err, errlen);
    }
    if (rc == STORE_OK) {
        char msg[512] = "";
        rc = eng_migrate(&q->base, msg, sizeof(msg));
        if (rc != STORE_OK)
            seterr(err, errlen, "store %s: %s", q->path, msg);
    }
    q->barrier = !opts->synchronous_normal;
    return rc;
}

/* SQLite keeps memory statistics by default, and so takes a global mutex around every
 * malloc and free it makes: 3% of a bulk create's instructions and 4% of a create
 * queue-item's. Nothing here reads them (no sqlite3_memory_used, no soft heap limit). Set
 * once per process, before SQLite initializes. Then every connection goes through the VFS
 * that writes a commit's WAL frames at once (sqlite_vfs.c); should it fail to register,
 * connections use the unix VFS as before. */
static void sq_global_config(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    (void)sqlite_vfs_register();
}

/*
 * Opens the SQLite store at path (creating the file and its directory), configures the
 * connection and applies migrations. Returns the handle, or NULL with err set. The caller
 * closes it with store_close.
 */
store_open_fn store_sqlite_open; /* listed in drivers.c */
store *store_sqlite_open(const char *path, const struct store_options *opts, char *err,
                         size_t errlen)
{
    static pthread_once_t configured = PTHREAD_ONCE_INIT;
    pthread_once(&configured, sq_global_config);
    struct sq *q = calloc(1, sizeof(*q));
    if (q == NULL)
        abort();
    eng_init(&q->base, &sqlite_driver);
    q->path = xstrdup(path);
    q->pid = getpid();
    q->wake_fd = q->send_fd = -1;
    q->busy_timeout_ms = opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : 60000;
    q->short_lived = opts->short_lived;
    q->wal_fd = q->shm_fd = q->marker_fd = -1;
    q->synced_version = -1;
    q->rand_state = (unsigned)(getpid() ^ mono_us());

    /* Created 0600 here, whatever the umask: SQLite gives the -wal and -shm files the
     * database file's mode. The directory is made, and the open tried again, only when
     * the file cannot be opened: a command's open no longer asks for every directory on the
     * path, and a failure still names the directory that could not be made. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        char *dir_copy = xstrdup(path);
        char *dir = dirname(dir_copy);
        int made = strcmp(dir, ".") == 0 || mkdir_p(dir) == 0;
        if (!made)
            seterr(err, errlen, "cannot create the store's directory %s: %s", dir,
                   strerror(errno));
        free(dir_copy);
        if (!made) {
            eng_free_texts(&q->base);
            free(q->path);
            free(q);
            return NULL;
        }
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    }
    if (fd >= 0)
        close(fd);
    int rc = sqlite3_open_v2(
        path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        seterr(err, errlen, "cannot open store %s: %s", path,
               q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
        sq_free(q);
        return NULL;
    }
    if (sq_configure(q, opts, err, errlen) != STORE_OK) {
        sq_free(q);
        return NULL;
    }
    return &q->base;
}

/* ---- wake-ups ------------------------------------------------------------------------------ */

/* "<db>.wake" holds one datagram socket per listening host, named "<bridge>@<pid>". */
static int wake_addr(const struct sq *q, const char *entry, struct sockaddr_un *addr)
{
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    int n = entry ? snprintf(addr->sun_path, sizeof(addr->sun_path), "%s.wake/%s", q->path, entry)
                  : snprintf(addr->sun_path, sizeof(addr->sun_path), "%s.wake", q->path);
    return n > 0 && (size_t)n < sizeof(addr->sun_path) ? 0 : -1;
}

static int64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t ts_ns(struct timespec ts)
{
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Reads the entries of the wake-up directory into q->wake_names; -1 when it cannot. */
static int wake_list(struct sq *q, const char *path)
{
    int64_t listed = real_ns();
    DIR *dir = opendir(path);
    q->wake_kept = 0;
    if (dir == NULL)
        return -1;
    q->wake_len = 0;
    size_t cap = 0;
    struct dirent *e;
    int ok = fstat(dirfd(dir), &q->wake_st) == 0;
    while ((e = readdir(dir)) != NULL) {
        size_t n = strlen(e->d_name) + 1;
        if (q->wake_len + n > cap) {
            cap = 2 * (q->wake_len + n) + 256;
            char *more = realloc(q->wake_names, cap);
            if (more == NULL)
                abort();
            q->wake_names = more;
        }
        memcpy(q->wake_names + q->wake_len, e->d_name, n);
        q->wake_len += n;
    }
    closedir(dir);
    /* A change after the read gives the directory times after the read's start, less one
     * tick of the kernel's coarse clock: different from times a second older than that. */
    q->wake_kept = ok && ts_ns(q->wake_st.st_mtim) < listed - 1000000000 &&
                   ts_ns(q->wake_st.st_ctim) < listed - 1000000000;
    return 0;
}

/*
 * The wake-up directory's listing is kept: a notify stats the directory and reads it again
 * only when it changed (a host came or went: its socket bound or removed): one stat where
 * an opendir, fstat, two getdents64 and a close were on the path of every item a
 * long-lived handle creates. Its times tell a change only when they moved since the read:
 * a listing read within a second of the directory's last change (timestamps are as coarse
 * as the kernel's clock tick) is read again at the next notify. A host that died without
 * removing its socket is removed by the send that finds it gone, from a kept listing too.
 */
static void sq_notify(store *s, const char *bridge)
{
    struct sq *q = (struct sq *)s;
    struct sockaddr_un addr;
    size_t blen = strlen(bridge);
    if (wake_addr(q, NULL, &addr) != 0)
        return;
    struct stat st;
    if (stat(addr.sun_path, &st) != 0)
        return; /* no host has ever listened */
    int fresh = q->wake_kept && st.st_ino == q->wake_st.st_ino && st.st_dev == q->wake_st.st_dev &&
                ts_ns(st.st_mtim) == ts_ns(q->wake_st.st_mtim) &&
                ts_ns(st.st_ctim) == ts_ns(q->wake_st.st_ctim);
    if (!fresh && wake_list(q, addr.sun_path) != 0)
        return;
    if (q->send_fd < 0)
        q->send_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    for (size_t off = 0; q->send_fd >= 0 && off < q->wake_len;) {
        const char *name = q->wake_names + off;
        off += strlen(name) + 1;
        if (strncmp(name, bridge, blen) != 0 || name[blen] != '@' || wake_addr(q, name, &addr) != 0)
            continue;
        if (sendto(q->send_fd, "w", 1, MSG_DONTWAIT, (struct sockaddr *)&addr, sizeof(addr)) < 0 &&
            errno == ECONNREFUSED)
            unlink(addr.sun_path); /* its host is gone: the directory changes */
    }
}

static int sq_wait_fd(store *s, const char *bridge, char *err, size_t errlen)
{
    struct sq *q = (struct sq *)s;
    struct sockaddr_un addr;
    char entry[160];
    if (q->wake_fd >= 0)
        return q->wake_fd;
    snprintf(entry, sizeof(entry), "%s@%ld", bridge, (long)getpid());
    if (wake_addr(q, NULL, &addr) != 0 || wake_addr(q, entry, &addr) != 0) {
        seterr(err, errlen, "store path %s is too long for a wake-up socket; polling instead",
               q->path);
        return -1;
    }
    char *dir = xasprintf("%s.wake", q->path);
    int made = mkdir(dir, 0700) == 0 || errno == EEXIST;
    free(dir);
    int fd = made ? socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0) : -1;
    unlink(addr.sun_path); /* a socket left by an earlier process with our pid */
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        seterr(err, errlen, "cannot listen for wake-ups at %s: %s", addr.sun_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    q->wake_fd = fd;
    q->wake_path = xstrdup(addr.sun_path);
    if (!q->short_lived) {
        const char *frames = getenv("FERRY_TEST_WAL_FRAMES");
        q->host_wal_frames = frames != NULL && atoi(frames) > 0 ? atoi(frames) : HOST_WAL_FRAMES;
        sqlite3_wal_hook(q->db, sq_wal_hook, q);
    }
    return fd;
}

/* The host is idle: checkpoint (PASSIVE: never waits, never blocks a writer) a WAL of
 * HOST_IDLE_WAL_FRAMES or more since this host's last checkpoint, by the checkpointer (the
 * host waits: it is idle), or here when it has none or it is in a pass. Once every frame
 * is in the database, the next writer restarts the WAL at its start: 1 then. Tried again
 * at the next idle turn when a reader kept some frames in use. */
static int sq_idle(store *s)
{
    struct sq *q = (struct sq *)s;
    int log = 0, done = 0;
    if (q->wake_fd < 0 || q->short_lived || q->in_tx || q->wal_frames < HOST_IDLE_WAL_FRAMES)
        return 0;
    int rc = SQLITE_OK;
    if (sq_ckpt_pass(q, 1, &log, &done) != 0)
        rc = sqlite3_wal_checkpoint_v2(q->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    if (rc != SQLITE_OK || log < 0 || done < log)
        return 0;
    q->wal_frames = 0;
    q->ckpt_passes = 0;
    return 1;
}

/* Wake-ups read in one call: a host woken by a create finds its one datagram without a
 * second call that finds none (on the path of every item). More wait only when a call
 * filled every slot. */
#define WAKE_READS 16

static void sq_wait_drain(store *s)
{
    struct sq *q = (struct sq *)s;
    char buf[WAKE_READS][8];
    struct iovec iov[WAKE_READS];
    struct mmsghdr msgs[WAKE_READS];
    for (int i = 0; i < WAKE_READS; i++) {
        iov[i] = (struct iovec){.iov_base = buf[i], .iov_len = sizeof(buf[i])};
        msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    while (q->wake_fd >= 0 &&
           recvmmsg(q->wake_fd, msgs, WAKE_READS, MSG_DONTWAIT, NULL) == WAKE_READS)
        ;
}

/* SQLite's data_version: it changes when another connection (of any process) commits. */
static int64_t sq_data_version(store *s)
{
    struct sq *q = (struct sq *)s;
    int64_t v = -1;
    if (q->data_version == NULL &&
        sqlite3_prepare_v3(q->db, "PRAGMA data_version", -1, SQLITE_PREPARE_PERSISTENT,
                           &q->data_version, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(q->data_version) == SQLITE_ROW)
        v = sqlite3_column_int64(q->data_version, 0);
    sqlite3_reset(q->data_version);
    return v;
}

/* store_defer_sync. Its files are opened here, by the handle's thread: sq_sync may run in
 * another. A WAL file or marker that does not open leaves the handle synchronous. */
static int sq_defer_sync(store *s)
{
    struct sq *q = (struct sq *)s;
    if (q->deferred || !q->barrier)
        return q->deferred ? 0 : -1;
    char *dir = xasprintf("%s.wake", q->path), *marker = xasprintf("%s/durable", dir);
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        q->marker_fd = sqlite_vfs_open(
            marker, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    free(marker);
    free(dir);
    if (q->marker_fd >= 0 && sq_open_once(q, &q->wal_fd, "-wal") >= 0 &&
        sq_open_once(q, &q->shm_fd, "-shm") >= 0 &&
        sq_pragma(q, "PRAGMA synchronous = NORMAL", NULL, NULL, 0) == STORE_OK) {
        q->deferred = 1;
        q->barrier = q->commit_sync = 0; /* its own commits are what its caller syncs */
    }
    return q->deferred ? 0 : -1;
}

/* Writes the marker: end, two copies of where the log ends, is synced. */
static void sq_mark(struct sq *q, const uint32_t end[2 * WAL_END_WORDS])
{
    if (pwrite(q->marker_fd, end, 2 * WAL_END_WORDS * sizeof(*end), 0) !=
        (ssize_t)(2 * WAL_END_WORDS * sizeof(*end))) {
        /* A marker not written only costs readers a sync of their own. */
    }
}

/* store_sync: the end of the log is read before the sync, so that the marker names no
 * frame the sync may not have covered. A log that ends where the marker says is synced
 * already (an idle host's turn commits nothing: no flush of the disk for it). Touches
 * nothing of the handle but its descriptors and, with note_later (its caller's thread
 * only), the note it leaves to sq_sync_note: the marker's write (a system call into the
 * file system, tens of microseconds) then comes after the run message that waited for the
 * sync. A marker older than the log's end is still true: a reader then syncs itself. */
static int sq_sync(store *s, int note_later, char *err, size_t errlen)
{
    struct sq *q = (struct sq *)s;
    uint32_t end[2 * WAL_END_WORDS], marked[2 * WAL_END_WORDS];
    int known = sq_wal_end(q, end) == 0;
    if (known && note_later && q->note_due && memcmp(q->note, end, sizeof(end) / 2) == 0)
        return STORE_OK; /* synced, its marker not written yet */
    if (known && pread(q->marker_fd, marked, sizeof(marked), 0) == (ssize_t)sizeof(marked) &&
        memcmp(marked, marked + WAL_END_WORDS, sizeof(marked) / 2) == 0 &&
        memcmp(marked, end, sizeof(marked) / 2) == 0)
        return STORE_OK;
    if (fdatasync(q->wal_fd) != 0) {
        seterr(err, errlen, "store %s: cannot sync the log: %s", q->path, strerror(errno));
        return STORE_ERROR;
    }
    if (!known)
        return STORE_OK;
    /* Two copies: a reader that reads while it is written sees them differ. */
    memcpy(end + WAL_END_WORDS, end, WAL_END_WORDS * sizeof(*end));
    if (note_later) {
        memcpy(q->note, end, sizeof(end));
        q->note_due = 1;
    } else {
        sq_mark(q, end);
    }
    return STORE_OK;
}

/* store_sync_note: the marker sq_sync left for later. */
static void sq_sync_note(store *s)
{
    struct sq *q = (struct sq *)s;
    if (q->note_due)
        sq_mark(q, q->note);
    q->note_due = 0;
}

static const struct eng_driver sqlite_driver = {
    .name = "sqlite",
    .fragments = fragments,
    .sql = dialect_sql,
    .row_locks = 0,
    .in_process = 1,
    .migrations = migrations,
    .n_migrations = N_MIGRATIONS,
    .run = sq_run,
    .run_in_batch = sq_run_in_batch,
    .may_undo = sq_may_undo,
    .exec = sq_exec,
    .next = sq_next,
    .text = sq_text,
    .i64 = sq_i64,
    .is_null = sq_is_null,
    .done = sq_done,
    .script = sq_script,
    .has_table = sq_has_table,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .close = sq_close,
    .exit_leaves = sq_exit_leaves,
    .data_version = sq_data_version,
    .notify = sq_notify,
    .wait_fd = sq_wait_fd,
    .wait_drain = sq_wait_drain,
    .idle = sq_idle,
    .defer_sync = sq_defer_sync,
    .sync = sq_sync,
    .sync_note = sq_sync_note,
    .synced = sq_synced,
};
