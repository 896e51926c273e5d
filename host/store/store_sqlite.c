/*
 * The SQLite store driver: one database file shared by the host and any number of CLI
 * processes on the same machine.
 *
 * Durability and concurrency: WAL journal, synchronous=FULL unless asked otherwise,
 * foreign keys on. Every write runs inside BEGIN IMMEDIATE, so a transaction takes the
 * single write lock before it reads what it will change; a busy handler with short,
 * jittered sleeps waits for that lock, and the whole transaction is retried on the rare
 * SQLITE_BUSY the handler cannot see (WAL recovery, snapshot races), so "database is
 * locked" never reaches a user unless the lock is held for the whole busy timeout.
 *
 * Claims need no SKIP LOCKED: with one writer at a time, a claim's select-then-update
 * inside one IMMEDIATE transaction is atomic. Wake-ups travel as one-byte datagrams to
 * unix sockets in "<db>.wake/", one per listening host ("<bridge>@<pid>").
 */
#include "store.h"

#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "store_sqlite.h"

static const struct store_driver sqlite_driver;

/* ---- migrations -------------------------------------------------------------------------- */

/*
 * Numbered schema changes, applied in order inside one IMMEDIATE transaction at open and
 * recorded in schema_migrations. Never edit a released migration: append a new one.
 */
static const struct migration {
    int version;
    const char *name;
    const char *sql;
} migrations[] = {
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
};

#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

/* ---- statements, bindings, errors ---------------------------------------------------------- */

static uint32_t hash_text(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Maps an engine result to a store status, formatting err for real failures. */
int sq_fail(struct sq *q, int rc, char *err, size_t errlen)
{
    int primary = rc & 0xff;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
        return SQ_BUSY;
    if (primary == SQLITE_CONSTRAINT) {
        seterr(err, errlen, "store %s: %s", q->path, sqlite3_errmsg(q->db));
        return STORE_CONFLICT;
    }
    seterr(err, errlen, "store %s: %s", q->path,
           primary == SQLITE_OK ? "internal error" : sqlite3_errmsg(q->db));
    return STORE_ERROR;
}

/*
 * Returns the cached, reset statement for static SQL text (prepared on first use), or
 * NULL with *rc set. Dynamic SQL never comes here: the cache holds only the driver's own
 * fixed statements, so it never needs to evict one that a caller is stepping.
 */
static sqlite3_stmt *sq_prep(struct sq *q, const char *sql, int *rc)
{
    uint32_t h = hash_text(sql);
    struct stmt_slot *slot = NULL;
    for (size_t i = 0; i < STMT_SLOTS; i++) {
        slot = &q->stmts[(h + i) % STMT_SLOTS];
        if (slot->sql == NULL)
            break;
        if (slot->sql == sql || strcmp(slot->sql, sql) == 0) {
            sqlite3_reset(slot->st);
            sqlite3_clear_bindings(slot->st);
            return slot->st;
        }
        slot = NULL;
    }
    if (slot == NULL) {
        *rc = SQLITE_FULL;
        return NULL;
    }
    *rc = sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &slot->st, NULL);
    if (*rc != SQLITE_OK)
        return NULL;
    slot->sql = sql;
    return slot->st;
}

/*
 * Binds parameters 1…n from a type string: 't' text (NULL binds NULL), 'i' int,
 * 'I' int64_t, 'N' int64_t where 0 binds NULL, 'j' json_t * (NULL binds NULL).
 * Values past the statement's last parameter are skipped, so the statements of one
 * table-driven family can share a parameter list.
 */
static int sq_bindv(sqlite3_stmt *st, const char *types, va_list ap)
{
    int rc = SQLITE_OK;
    int count = sqlite3_bind_parameter_count(st);
    for (int i = 1; rc == SQLITE_OK && types[i - 1]; i++) {
        if (i > count) {
            /* Consume the value without binding it. */
            switch (types[i - 1]) {
            case 'i':
                (void)va_arg(ap, int);
                break;
            case 'I':
            case 'N':
                (void)va_arg(ap, int64_t);
                break;
            default:
                (void)va_arg(ap, void *);
            }
            continue;
        }
        switch (types[i - 1]) {
        case 't': {
            const char *t = va_arg(ap, const char *);
            rc = t ? sqlite3_bind_text(st, i, t, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
            break;
        }
        case 'i':
            rc = sqlite3_bind_int(st, i, va_arg(ap, int));
            break;
        case 'I':
            rc = sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
            break;
        case 'N': {
            int64_t v = va_arg(ap, int64_t);
            rc = v ? sqlite3_bind_int64(st, i, v) : sqlite3_bind_null(st, i);
            break;
        }
        case 'j': {
            json_t *j = va_arg(ap, json_t *);
            char *text = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            rc = text ? sqlite3_bind_text(st, i, text, -1, free) : sqlite3_bind_null(st, i);
            break;
        }
        default:
            rc = SQLITE_MISUSE;
        }
    }
    return rc;
}

/* Prepares (cached) and binds a statement; NULL with err set (or SQ_BUSY in *status). */
sqlite3_stmt *sq_query(struct sq *q, int *status, char *err, size_t errlen, const char *sql,
                       const char *types, ...)
{
    int rc = SQLITE_OK;
    sqlite3_stmt *st = sq_prep(q, sql, &rc);
    if (st != NULL) {
        va_list ap;
        va_start(ap, types);
        rc = sq_bindv(st, types, ap);
        va_end(ap);
    }
    if (rc != SQLITE_OK) {
        *status = sq_fail(q, rc, err, errlen);
        return NULL;
    }
    *status = STORE_OK;
    return st;
}

/* Runs a statement that returns no rows. STORE_OK, SQ_BUSY or an error status. */
int sq_exec(struct sq *q, char *err, size_t errlen, const char *sql, const char *types, ...)
{
    int rc = SQLITE_OK;
    sqlite3_stmt *st = sq_prep(q, sql, &rc);
    if (st != NULL) {
        va_list ap;
        va_start(ap, types);
        rc = sq_bindv(st, types, ap);
        va_end(ap);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (st != NULL)
        sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? STORE_OK : sq_fail(q, rc, err, errlen);
}

/* Steps a query: 1 for a row, 0 when done, or a negative status (the statement is then
 * reset). */
int sq_step(struct sq *q, sqlite3_stmt *st, char *err, size_t errlen)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sq_fail(q, rc, err, errlen);
}

const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

int64_t col_i64(sqlite3_stmt *st, int i)
{
    return sqlite3_column_int64(st, i);
}

/* Runs a query expected to return one integer (0 when it returns no row or NULL). */
int sq_scalar(struct sq *q, int64_t *out, char *err, size_t errlen, const char *sql,
              const char *types, ...)
{
    int rc = SQLITE_OK;
    sqlite3_stmt *st = sq_prep(q, sql, &rc);
    if (st != NULL) {
        va_list ap;
        va_start(ap, types);
        rc = sq_bindv(st, types, ap);
        va_end(ap);
    }
    if (rc != SQLITE_OK)
        return sq_fail(q, rc, err, errlen);
    int got = sq_step(q, st, err, errlen);
    if (got < 0)
        return got;
    *out = got ? col_i64(st, 0) : 0;
    sqlite3_reset(st);
    return STORE_OK;
}

/* ---- transactions --------------------------------------------------------------------------- */

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

static int sq_raw(struct sq *q, const char *sql)
{
    return sq_exec(q, NULL, 0, sql, "");
}

/* Inside a batch: the operation gets a savepoint, so its failure undoes only itself. */
static int sq_run_nested(struct sq *q, sq_body body, void *ctx, char *err, size_t errlen)
{
    int rc = sq_exec(q, err, errlen, "SAVEPOINT op", "");
    if (rc != STORE_OK)
        return rc;
    rc = body(q, ctx, err, errlen);
    if (sqlite3_get_autocommit(q->db)) {
        /* An I/O error or similar rolled back the whole batch. */
        q->in_tx = 0;
        q->batch_lost = 1;
        seterr(err, errlen, "store %s: the batch was rolled back: %s", q->path,
               sqlite3_errmsg(q->db));
        return STORE_ERROR;
    }
    if (rc != STORE_OK)
        sq_raw(q, "ROLLBACK TO op");
    sq_raw(q, "RELEASE op");
    if (rc == SQ_BUSY) {
        seterr(err, errlen, "store %s: busy inside a batch", q->path);
        rc = STORE_ERROR;
    }
    return rc;
}

/*
 * Runs body in its own transaction (IMMEDIATE for writes), committing when it returns
 * STORE_OK and rolling back otherwise. A busy engine restarts the whole transaction until
 * the busy timeout, so body must leave nothing behind when it fails (outputs are set only
 * on success).
 */
int sq_run(struct sq *q, int write, sq_body body, void *ctx, char *err, size_t errlen)
{
    if (q->batch_lost) {
        /* Running on outside the batch would commit what the caller means to group. */
        seterr(err, errlen, "store %s: the batch was rolled back after an error; end it first",
               q->path);
        return STORE_ERROR;
    }
    if (q->in_tx)
        return sq_run_nested(q, body, ctx, err, errlen);
    int64_t deadline = mono_ms() + q->busy_timeout_ms;
    for (unsigned attempt = 0;; attempt++) {
        int rc = sq_exec(q, err, errlen, write ? "BEGIN IMMEDIATE" : "BEGIN", "");
        if (rc == STORE_OK) {
            q->in_tx = 1;
            rc = body(q, ctx, err, errlen);
            /* Outputs exist once the body succeeded, so a failed COMMIT is reported rather
             * than retried (in WAL mode, with the write lock held, it does not happen). */
            if (rc == STORE_OK && (rc = sq_exec(q, err, errlen, "COMMIT", "")) == SQ_BUSY) {
                seterr(err, errlen, "store %s: commit refused while busy; try again", q->path);
                rc = STORE_ERROR;
            }
            if (!sqlite3_get_autocommit(q->db))
                sq_raw(q, "ROLLBACK");
            q->in_tx = 0;
        }
        if (rc != SQ_BUSY)
            return rc;
        if (mono_ms() >= deadline) {
            seterr(err, errlen, "store %s stayed locked by another process for %.1f s; try again",
                   q->path, q->busy_timeout_ms / 1000.0);
            return STORE_ERROR;
        }
        unsigned base = 200u << (attempt < 5 ? attempt : 5);
        usleep(base + (unsigned)rand_r(&q->rand_state) % base);
    }
}

static int sq_begin(store *s, char *err, size_t errlen)
{
    struct sq *q = (struct sq *)s;
    int64_t deadline = mono_ms() + q->busy_timeout_ms;
    for (;;) {
        int rc = sq_exec(q, err, errlen, "BEGIN IMMEDIATE", "");
        if (rc == STORE_OK)
            q->in_tx = 1;
        if (rc != SQ_BUSY)
            return rc;
        if (mono_ms() >= deadline) {
            seterr(err, errlen, "store %s stayed locked by another process; try again", q->path);
            return STORE_ERROR;
        }
        usleep(1000);
    }
}

static int sq_commit(store *s, char *err, size_t errlen)
{
    struct sq *q = (struct sq *)s;
    int rc = q->in_tx ? sq_exec(q, err, errlen, "COMMIT", "") : STORE_ERROR;
    if (!q->in_tx)
        seterr(err, errlen, "store %s: the batch was lost (rolled back after an error)", q->path);
    if (!sqlite3_get_autocommit(q->db))
        sq_raw(q, "ROLLBACK");
    q->in_tx = q->batch_lost = 0;
    return rc == SQ_BUSY ? STORE_ERROR : rc;
}

static int sq_rollback(store *s, char *err, size_t errlen)
{
    struct sq *q = (struct sq *)s;
    (void)err;
    (void)errlen;
    if (!sqlite3_get_autocommit(q->db))
        sq_raw(q, "ROLLBACK");
    q->in_tx = q->batch_lost = 0;
    return STORE_OK;
}

/* ---- open, migrate, close ------------------------------------------------------------------- */

static int current_version(struct sq *q, int64_t *version, char *err, size_t errlen)
{
    int64_t exists = 0;
    int rc = sq_scalar(q, &exists, err, errlen,
                       "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                       " AND name = 'schema_migrations'",
                       "");
    *version = 0;
    if (rc == STORE_OK && exists)
        rc = sq_scalar(q, version, err, errlen,
                       "SELECT coalesce(max(version), 0) FROM schema_migrations", "");
    return rc;
}

static int migrate_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    int64_t version = 0;
    int64_t latest = migrations[N_MIGRATIONS - 1].version;
    (void)ctx;
    int rc = sq_exec(q, err, errlen,
                     "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                     " name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
                     "");
    if (rc == STORE_OK)
        rc = current_version(q, &version, err, errlen);
    if (rc == STORE_OK && version > latest) {
        seterr(err, errlen,
               "store %s has schema version %lld, newer than this ferry knows (%lld); "
               "upgrade ferry",
               q->path, (long long)version, (long long)latest);
        return STORE_ERROR;
    }
    for (size_t i = 0; rc == STORE_OK && i < N_MIGRATIONS; i++) {
        if (migrations[i].version <= version)
            continue;
        char *msg = NULL;
        int erc = sqlite3_exec(q->db, migrations[i].sql, NULL, NULL, &msg);
        if (erc != SQLITE_OK) {
            rc = sq_fail(q, erc, NULL, 0);
            if (rc != SQ_BUSY)
                seterr(err, errlen, "store %s: migration %d failed: %s", q->path,
                       migrations[i].version, msg ? msg : sqlite3_errstr(erc));
            rc = rc == SQ_BUSY ? SQ_BUSY : STORE_ERROR;
        }
        sqlite3_free(msg);
        if (rc == STORE_OK)
            rc = sq_exec(q, err, errlen,
                         "INSERT INTO schema_migrations (version, name, applied_at)"
                         " VALUES (?1, ?2, ?3)",
                         "itI", migrations[i].version, migrations[i].name, now_ms());
    }
    return rc;
}

/* Applies missing migrations. A store already up to date is only read, so opening it does
 * not queue behind writers. */
static int sq_migrate(struct sq *q, char *err, size_t errlen)
{
    int64_t version = 0;
    int rc = current_version(q, &version, err, errlen);
    if (rc == STORE_OK && version == migrations[N_MIGRATIONS - 1].version)
        return STORE_OK;
    return sq_run(q, 1, migrate_body, NULL, err, errlen);
}

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
                  (expect == NULL || strcmp(col_text(st, 0) ? col_text(st, 0) : "", expect) == 0));
        if (rc == SQLITE_ROW && !ok)
            seterr(err, errlen, "store %s: %s gave '%s', not '%s'", q->path, sql,
                   col_text(st, 0) ? col_text(st, 0) : "", expect);
        sqlite3_finalize(st);
        if (ok)
            return STORE_OK;
        if (rc == SQLITE_ROW)
            return STORE_ERROR;
        if (sq_fail(q, rc, err, errlen) != SQ_BUSY)
            return STORE_ERROR;
        if (mono_ms() >= deadline) {
            seterr(err, errlen, "store %s stayed locked by another process; try again", q->path);
            return STORE_ERROR;
        }
        usleep(2000);
    }
}

static void sq_free(struct sq *q)
{
    for (size_t i = 0; i < STMT_SLOTS; i++)
        if (q->stmts[i].st)
            sqlite3_finalize(q->stmts[i].st);
    if (q->wake_fd >= 0)
        close(q->wake_fd);
    if (q->send_fd >= 0)
        close(q->send_fd);
    if (q->wake_path)
        unlink(q->wake_path);
    sqlite3_close_v2(q->db);
    free(q->wake_path);
    free(q->path);
    free(q);
}

static void sq_close(store *s)
{
    struct sq *q = (struct sq *)s;
    if (q->pid != getpid()) {
        /* A child that inherited the handle across fork must not touch the parent's
         * database connection or wake-up socket: only the memory is let go. */
        free(q->wake_path);
        free(q->path);
        free(q);
        return;
    }
    if (!sqlite3_get_autocommit(q->db))
        sq_raw(q, "ROLLBACK");
    sq_free(q);
}

static int sq_configure(struct sq *q, const struct store_options *opts, char *err, size_t errlen)
{
    sqlite3_extended_result_codes(q->db, 1);
    sqlite3_busy_handler(q->db, sq_busy_handler, q);
    int rc = sq_pragma(q, "PRAGMA journal_mode = WAL", "wal", err, errlen);
    if (rc == STORE_OK)
        rc = sq_pragma(q, "PRAGMA foreign_keys = ON", NULL, err, errlen);
    if (rc == STORE_OK)
        rc = sq_pragma(q,
                       opts->synchronous_normal ? "PRAGMA synchronous = NORMAL"
                                                : "PRAGMA synchronous = FULL",
                       NULL, err, errlen);
    if (rc == STORE_OK)
        rc = sq_migrate(q, err, errlen);
    return rc;
}

/*
 * Opens the SQLite store at path (creating the file and its directory), configures the
 * connection and applies migrations. Returns the handle, or NULL with err set. The caller
 * closes it with store_close.
 */
store *store_sqlite_open(const char *path, const struct store_options *opts, char *err,
                         size_t errlen)
{
    struct sq *q = calloc(1, sizeof(*q));
    if (q == NULL)
        abort();
    q->base.drv = &sqlite_driver;
    q->path = xstrdup(path);
    q->pid = getpid();
    q->wake_fd = q->send_fd = -1;
    q->busy_timeout_ms = opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : 60000;
    q->rand_state = (unsigned)(getpid() ^ mono_us());

    char *dir_copy = xstrdup(path);
    char *dir = dirname(dir_copy);
    int made = strcmp(dir, ".") == 0 || mkdir_p(dir) == 0;
    if (!made)
        seterr(err, errlen, "cannot create the store's directory %s: %s", dir, strerror(errno));
    free(dir_copy);
    if (!made) {
        free(q->path);
        free(q);
        return NULL;
    }
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

static int migrations_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    int rc = STORE_OK;
    sqlite3_stmt *st = sq_query(q, &rc, err, errlen,
                                "SELECT version, name, applied_at FROM schema_migrations"
                                " ORDER BY version",
                                "");
    json_t *rows = json_array();
    int got = 0;
    while (st != NULL && (got = sq_step(q, st, err, errlen)) == 1) {
        char when[32];
        iso8601_ms(col_i64(st, 2), when);
        json_array_append_new(rows,
                              json_pack("{s:I,s:s,s:s,s:I}", "version", (json_int_t)col_i64(st, 0),
                                        "name", col_text(st, 1), "appliedTime", when,
                                        "appliedTimeMs", (json_int_t)col_i64(st, 2)));
    }
    if (st != NULL && got < 0)
        rc = got;
    if (rc != STORE_OK) {
        json_decref(rows);
        return rc;
    }
    *(json_t **)ctx = rows;
    return STORE_OK;
}

static int sq_migrations(store *s, json_t **rows, char *err, size_t errlen)
{
    *rows = NULL;
    return sq_run((struct sq *)s, 0, migrations_body, rows, err, errlen);
}

/* ---- resources ------------------------------------------------------------------------------ */

/*
 * SQL per resource kind. Parameters: ?1 team, ?2 name, ?3 vault, ?4 now, ?5 parent (region
 * of a bridge, bridge of a machine), ?6 concurrency. Row queries return the columns of
 * struct store_resource_cols in order.
 */
static const struct res_sql {
    const char *get, *list, *list_in, *exists, *insert, *update, *remove;
} res_sql[STORE_KIND_COUNT] = {
    [STORE_TEAM] =
        {"SELECT name, NULL, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM teams WHERE name = ?2",
         "SELECT name, NULL, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM teams ORDER BY name",
         NULL, "SELECT 1 FROM teams WHERE name = ?2",
         "INSERT INTO teams (name, vault, vault_version, created_at, updated_at)"
         " VALUES (?2, ?3, 1, ?4, ?4)",
         "UPDATE teams SET vault = ?3, vault_version = vault_version + 1, updated_at = ?4"
         " WHERE name = ?2",
         "DELETE FROM teams WHERE name = ?2"},
    [STORE_REGION] =
        {"SELECT name, NULL, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM regions WHERE name = ?2",
         "SELECT name, NULL, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM regions ORDER BY name",
         NULL, "SELECT 1 FROM regions WHERE name = ?2",
         "INSERT INTO regions (name, vault, vault_version, created_at, updated_at)"
         " VALUES (?2, ?3, 1, ?4, ?4)",
         "UPDATE regions SET vault = ?3, vault_version = vault_version + 1, updated_at = ?4"
         " WHERE name = ?2",
         "DELETE FROM regions WHERE name = ?2"},
    [STORE_BRIDGE] =
        {"SELECT name, NULL, NULL, region_name, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM bridges WHERE name = ?2",
         "SELECT name, NULL, NULL, region_name, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM bridges ORDER BY name",
         "SELECT name, NULL, NULL, region_name, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM bridges WHERE region_name = ?1 ORDER BY name",
         "SELECT 1 FROM bridges WHERE name = ?2",
         "INSERT INTO bridges (name, region_name, vault, vault_version, created_at,"
         " updated_at) VALUES (?2, ?5, ?3, 1, ?4, ?4)",
         "UPDATE bridges SET vault = ?3, vault_version = vault_version + 1, updated_at = ?4"
         " WHERE name = ?2",
         "DELETE FROM bridges WHERE name = ?2"},
    [STORE_MACHINE] =
        {"SELECT m.name, m.team_name, m.bridge_name, b.region_name, m.vault, m.vault_version,"
         " m.created_at, m.updated_at, NULL, NULL, NULL"
         " FROM machines m LEFT JOIN bridges b ON b.name = m.bridge_name WHERE m.name = ?2",
         "SELECT m.name, m.team_name, m.bridge_name, b.region_name, m.vault, m.vault_version,"
         " m.created_at, m.updated_at, NULL, NULL, NULL"
         " FROM machines m LEFT JOIN bridges b ON b.name = m.bridge_name"
         " ORDER BY m.team_name, m.name",
         "SELECT m.name, m.team_name, m.bridge_name, b.region_name, m.vault, m.vault_version,"
         " m.created_at, m.updated_at, NULL, NULL, NULL"
         " FROM machines m LEFT JOIN bridges b ON b.name = m.bridge_name"
         " WHERE m.team_name = ?1 ORDER BY m.name",
         "SELECT 1 FROM machines WHERE name = ?2",
         "INSERT INTO machines (name, team_name, bridge_name, concurrency, vault,"
         " vault_version, created_at, updated_at) VALUES (?2, ?1, ?5, ?6, ?3, 1, ?4, ?4)",
         "UPDATE machines SET vault = ?3, vault_version = vault_version + 1, updated_at = ?4,"
         " concurrency = ?6 WHERE name = ?2",
         "DELETE FROM machines WHERE name = ?2"},
    [STORE_STORAGE] =
        {"SELECT name, team_name, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM storages WHERE team_name = ?1 AND name = ?2",
         "SELECT name, team_name, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM storages ORDER BY team_name, name",
         "SELECT name, team_name, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " NULL, NULL, NULL FROM storages WHERE team_name = ?1 ORDER BY name",
         "SELECT 1 FROM storages WHERE team_name = ?1 AND name = ?2",
         "INSERT INTO storages (team_name, name, vault, vault_version, created_at,"
         " updated_at) VALUES (?1, ?2, ?3, 1, ?4, ?4)",
         "UPDATE storages SET vault = ?3, vault_version = vault_version + 1, updated_at = ?4"
         " WHERE team_name = ?1 AND name = ?2",
         "DELETE FROM storages WHERE team_name = ?1 AND name = ?2"},
    [STORE_SCHEDULE] =
        {"SELECT name, team_name, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " next_run_at, last_run_at, last_task_id FROM schedules"
         " WHERE team_name = ?1 AND name = ?2",
         "SELECT name, team_name, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " next_run_at, last_run_at, last_task_id FROM schedules ORDER BY team_name, name",
         "SELECT name, team_name, NULL, NULL, vault, vault_version, created_at, updated_at,"
         " next_run_at, last_run_at, last_task_id FROM schedules"
         " WHERE team_name = ?1 ORDER BY name",
         "SELECT 1 FROM schedules WHERE team_name = ?1 AND name = ?2",
         "INSERT INTO schedules (team_name, name, vault, vault_version, created_at,"
         " updated_at) VALUES (?1, ?2, ?3, 1, ?4, ?4)",
         "UPDATE schedules SET vault = ?3, vault_version = vault_version + 1, updated_at = ?4"
         " WHERE team_name = ?1 AND name = ?2",
         "DELETE FROM schedules WHERE team_name = ?1 AND name = ?2"},
};

static json_t *resource_row_at(store_kind kind, sqlite3_stmt *st)
{
    struct store_resource_cols c = {
        .name = col_text(st, 0),
        .team = col_text(st, 1),
        .bridge = col_text(st, 2),
        .region = col_text(st, 3),
        .vault_json = col_text(st, 4),
        .vault_version = col_i64(st, 5),
        .created_at = col_i64(st, 6),
        .updated_at = col_i64(st, 7),
        .next_run_at = col_i64(st, 8),
        .last_run_at = col_i64(st, 9),
        .last_task_id = col_text(st, 10),
    };
    return store_resource_row(kind, &c);
}

/* Sets *found to whether the resource (kind, team, name) exists. */
static int sq_exists(struct sq *q, store_kind kind, const char *team, const char *name, int *found,
                     char *err, size_t errlen)
{
    int64_t one = 0;
    int rc = sq_scalar(q, &one, err, errlen, res_sql[kind].exists, "tt", team, name);
    *found = one != 0;
    return rc;
}

/* Fails with the not-found message unless the resource exists. */
int sq_need(struct sq *q, store_kind kind, const char *team, const char *name, char *err,
            size_t errlen)
{
    int found = 0;
    int rc = sq_exists(q, kind, team, name, &found, err, errlen);
    if (rc == STORE_OK && !found)
        rc = store_err_missing(err, errlen, kind, team, name);
    return rc;
}

/*
 * Reads one resource row into *row (new reference). NOT_FOUND explains which part is
 * missing: the team of a storage or schedule, or a machine that belongs to another team.
 */
int sq_read_resource(struct sq *q, store_kind kind, const char *team, const char *name,
                     json_t **row, char *err, size_t errlen)
{
    int rc = STORE_OK;
    sqlite3_stmt *st = sq_query(q, &rc, err, errlen, res_sql[kind].get, "tt", team, name);
    int got = st ? sq_step(q, st, err, errlen) : rc;
    if (got < 0)
        return got;
    if (got == 1) {
        const char *owner = col_text(st, 1);
        if (kind == STORE_MACHINE && team != NULL && strcmp(owner, team) != 0) {
            seterr(err, errlen, "machine '%s' belongs to team '%s', not '%s'", name, owner, team);
            sqlite3_reset(st);
            return STORE_NOT_FOUND;
        }
        *row = resource_row_at(kind, st);
        sqlite3_reset(st);
        return STORE_OK;
    }
    if (kind == STORE_STORAGE || kind == STORE_SCHEDULE) {
        rc = sq_need(q, STORE_TEAM, NULL, team, err, errlen);
        if (rc != STORE_OK)
            return rc;
    }
    return store_err_missing(err, errlen, kind, team, name);
}

struct res_ctx {
    store_kind kind;
    const char *team, *parent, *name;
    json_t *vault;
    int64_t expected_version;
    int flags;
    json_t *row; /* output */
};

static int create_conflict(struct sq *q, const struct res_ctx *c, char *err, size_t errlen)
{
    if (c->kind == STORE_MACHINE) {
        json_t *row = NULL;
        if (sq_read_resource(q, STORE_MACHINE, NULL, c->name, &row, NULL, 0) == STORE_OK)
            seterr(err, errlen,
                   "machine '%s' already exists (team '%s'); machine names are unique "
                   "across teams",
                   c->name, json_string_value(json_object_get(row, "teamName")));
        json_decref(row);
    } else if (c->kind == STORE_STORAGE || c->kind == STORE_SCHEDULE) {
        seterr(err, errlen, "team '%s' already has a %s named '%s'", c->team,
               store_kind_name(c->kind), c->name);
    } else {
        seterr(err, errlen, "%s '%s' already exists", store_kind_name(c->kind), c->name);
    }
    return STORE_CONFLICT;
}

static int resource_create_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    int rc = STORE_OK, found = 0, concurrency = 1;
    if (c->kind == STORE_MACHINE || c->kind == STORE_STORAGE || c->kind == STORE_SCHEDULE)
        rc = sq_need(q, STORE_TEAM, NULL, c->team, err, errlen);
    if (rc == STORE_OK && c->kind == STORE_BRIDGE)
        rc = sq_need(q, STORE_REGION, NULL, c->parent, err, errlen);
    if (rc == STORE_OK && c->kind == STORE_MACHINE)
        rc = sq_need(q, STORE_BRIDGE, NULL, c->parent, err, errlen);
    if (rc == STORE_OK)
        rc = sq_exists(q, c->kind, c->team, c->name, &found, err, errlen);
    if (rc == STORE_OK && found)
        return create_conflict(q, c, err, errlen);
    if (rc == STORE_OK)
        rc = store_vault_concurrency(c->vault, &concurrency, err, errlen);
    if (rc == STORE_OK)
        rc = sq_exec(q, err, errlen, res_sql[c->kind].insert, "ttjItI", c->team, c->name, c->vault,
                     now_ms(), c->parent, concurrency);
    if (rc == STORE_OK)
        rc = sq_read_resource(q, c->kind, c->team, c->name, &c->row, err, errlen);
    return rc;
}

static int sq_resource_create(store *s, store_kind kind, const char *team, const char *parent,
                              const char *name, json_t *vault, json_t **row, char *err,
                              size_t errlen)
{
    struct res_ctx c = {.kind = kind, .team = team, .parent = parent, .name = name, .vault = vault};
    int rc = sq_run((struct sq *)s, 1, resource_create_body, &c, err, errlen);
    if (row)
        *row = c.row;
    else
        json_decref(c.row);
    return rc;
}

static int resource_get_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    return sq_read_resource(q, c->kind, c->team, c->name, &c->row, err, errlen);
}

static int sq_resource_get(store *s, store_kind kind, const char *team, const char *name,
                           json_t **row, char *err, size_t errlen)
{
    struct res_ctx c = {.kind = kind, .team = team, .name = name};
    int rc = sq_run((struct sq *)s, 0, resource_get_body, &c, err, errlen);
    *row = c.row;
    return rc;
}

static int resource_list_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    int rc = STORE_OK;
    const char *sql = c->team ? res_sql[c->kind].list_in : res_sql[c->kind].list;
    if (c->team != NULL)
        rc = sq_need(q, c->kind == STORE_BRIDGE ? STORE_REGION : STORE_TEAM, NULL, c->team, err,
                     errlen);
    sqlite3_stmt *st = rc == STORE_OK ? sq_query(q, &rc, err, errlen, sql, "t", c->team) : NULL;
    json_t *rows = json_array();
    int got = 0;
    while (st != NULL && (got = sq_step(q, st, err, errlen)) == 1)
        json_array_append_new(rows, resource_row_at(c->kind, st));
    if (rc == STORE_OK && got < 0)
        rc = got;
    if (rc == STORE_OK)
        c->row = rows;
    else
        json_decref(rows);
    return rc;
}

static int sq_resource_list(store *s, store_kind kind, const char *scope, json_t **rows, char *err,
                            size_t errlen)
{
    struct res_ctx c = {.kind = kind, .team = scope};
    int rc = sq_run((struct sq *)s, 0, resource_list_body, &c, err, errlen);
    *rows = c.row;
    return rc;
}

static int update_vault_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    json_t *old = NULL, *vault = NULL;
    int concurrency = 1;
    int rc = sq_read_resource(q, c->kind, c->team, c->name, &old, err, errlen);
    if (rc != STORE_OK)
        return rc;
    json_int_t version = json_integer_value(json_object_get(old, "vaultVersion"));
    const char *team = json_string_value(json_object_get(old, "teamName"));
    if (c->expected_version >= 0 && version != c->expected_version) {
        seterr(err, errlen, "%s '%s': vault version is %lld, not %lld; re-read and retry",
               store_kind_name(c->kind), c->name, (long long)version,
               (long long)c->expected_version);
        rc = STORE_CONFLICT;
        goto out;
    }
    if (c->flags == STORE_VAULT_MERGE) {
        vault = json_deep_copy(json_object_get(old, "vault"));
        store_merge_patch(vault, c->vault);
    } else {
        vault = json_incref(c->vault);
    }
    rc = store_vault_concurrency(vault, &concurrency, err, errlen);
    if (rc == STORE_OK)
        rc = sq_exec(q, err, errlen, res_sql[c->kind].update, "ttjItI", team, c->name, vault,
                     now_ms(), (const char *)NULL, concurrency);
    if (rc == STORE_OK)
        rc = sq_read_resource(q, c->kind, team, c->name, &c->row, err, errlen);
out:
    json_decref(vault);
    json_decref(old);
    return rc;
}

static int sq_resource_update_vault(store *s, store_kind kind, const char *team, const char *name,
                                    json_t *vault, int64_t expected_version, int flags,
                                    json_t **row, char *err, size_t errlen)
{
    struct res_ctx c = {.kind = kind,
                        .team = team,
                        .name = name,
                        .vault = vault,
                        .expected_version = expected_version,
                        .flags = flags};
    int rc = sq_run((struct sq *)s, 1, update_vault_body, &c, err, errlen);
    if (row)
        *row = c.row;
    else
        json_decref(c.row);
    return rc;
}

/*
 * Appends "NOUN a, b, c" for the names a query returns (at most 5 shown, then "and N
 * more") to buf, separated from earlier text by " and ". Returns how many it found.
 */
static int64_t append_names(struct sq *q, char *buf, size_t buflen, const char *noun,
                            const char *sql, const char *key, int *status)
{
    sqlite3_stmt *st = sq_query(q, status, NULL, 0, sql, "t", key);
    int64_t n = 0;
    size_t len = strlen(buf);
    int got;
    while (st != NULL && (got = sq_step(q, st, NULL, 0)) == 1) {
        if (n < 5)
            len +=
                (size_t)snprintf(buf + len, len < buflen ? buflen - len : 0, "%s%s%s",
                                 n ? ", " : (len ? " and " : ""), n ? "" : noun, col_text(st, 0));
        n++;
    }
    if (st != NULL && got < 0)
        *status = got;
    if (n > 5 && len < buflen)
        snprintf(buf + len, buflen - len, " and %lld more", (long long)(n - 5));
    return n;
}

/* Formats what keeps a resource from being deleted into buf ("" when nothing does). */
static int delete_blockers(struct sq *q, store_kind kind, const char *name, char *buf,
                           size_t buflen)
{
    int rc = STORE_OK;
    buf[0] = '\0';
    if (kind == STORE_TEAM) {
        append_names(q, buf, buflen, "machines ",
                     "SELECT name FROM machines WHERE team_name = ?1 ORDER BY name", name, &rc);
        append_names(q, buf, buflen, "storages ",
                     "SELECT name FROM storages WHERE team_name = ?1 ORDER BY name", name, &rc);
        append_names(q, buf, buflen, "schedules ",
                     "SELECT name FROM schedules WHERE team_name = ?1 ORDER BY name", name, &rc);
    } else if (kind == STORE_REGION) {
        append_names(q, buf, buflen, "bridges ",
                     "SELECT name FROM bridges WHERE region_name = ?1 ORDER BY name", name, &rc);
    } else if (kind == STORE_BRIDGE) {
        append_names(q, buf, buflen, "machines ",
                     "SELECT name FROM machines WHERE bridge_name = ?1 ORDER BY name", name, &rc);
    } else if (kind == STORE_MACHINE) {
        append_names(q, buf, buflen, "unfinished queue items ",
                     "SELECT task_id FROM queue_items WHERE machine_name = ?1 AND status IN"
                     " ('PENDING','ASSIGNED','PROCESSING','CANCELLING') ORDER BY created_at",
                     name, &rc);
    }
    return rc;
}

static int resource_delete_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    char blockers[1024];
    json_t *row = NULL;
    int rc = sq_read_resource(q, c->kind, c->team, c->name, &row, err, errlen);
    if (rc != STORE_OK)
        return rc;
    const char *team = json_string_value(json_object_get(row, "teamName"));
    rc = delete_blockers(q, c->kind, c->name, blockers, sizeof(blockers));
    if (rc == STORE_OK && blockers[0] != '\0') {
        seterr(err, errlen, "%s '%s' still has %s; remove %s first", store_kind_name(c->kind),
               c->name, blockers, c->kind == STORE_MACHINE ? "or cancel them" : "them");
        rc = STORE_CONFLICT;
    }
    if (rc == STORE_OK)
        rc = sq_exec(q, err, errlen, res_sql[c->kind].remove, "tt", team, c->name);
    json_decref(row);
    return rc;
}

static int sq_resource_delete(store *s, store_kind kind, const char *team, const char *name,
                              char *err, size_t errlen)
{
    struct res_ctx c = {.kind = kind, .team = team, .name = name};
    return sq_run((struct sq *)s, 1, resource_delete_body, &c, err, errlen);
}

static int set_bridge_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct res_ctx *c = ctx;
    json_t *row = NULL;
    int rc = sq_read_resource(q, STORE_MACHINE, c->team, c->name, &row, err, errlen);
    json_decref(row);
    if (rc == STORE_OK)
        rc = sq_need(q, STORE_BRIDGE, NULL, c->parent, err, errlen);
    if (rc == STORE_OK)
        rc = sq_exec(q, err, errlen,
                     "UPDATE machines SET bridge_name = ?1, updated_at = ?2 WHERE name = ?3", "tIt",
                     c->parent, now_ms(), c->name);
    if (rc == STORE_OK)
        rc = sq_read_resource(q, STORE_MACHINE, NULL, c->name, &c->row, err, errlen);
    return rc;
}

static int sq_machine_set_bridge(store *s, const char *team, const char *name, const char *bridge,
                                 json_t **row, char *err, size_t errlen)
{
    struct res_ctx c = {.kind = STORE_MACHINE, .team = team, .name = name, .parent = bridge};
    int rc = sq_run((struct sq *)s, 1, set_bridge_body, &c, err, errlen);
    if (row)
        *row = c.row;
    else
        json_decref(c.row);
    return rc;
}

struct run_ctx {
    const char *team, *name, *last_task_id;
    int64_t next_run, last_run;
};

static int set_run_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct run_ctx *c = ctx;
    json_t *row = NULL;
    int rc = sq_read_resource(q, STORE_SCHEDULE, c->team, c->name, &row, err, errlen);
    json_decref(row);
    if (rc == STORE_OK)
        rc = sq_exec(q, err, errlen,
                     "UPDATE schedules SET next_run_at = ?3, last_run_at = ?4,"
                     " last_task_id = ?5 WHERE team_name = ?1 AND name = ?2",
                     "ttNNt", c->team, c->name, c->next_run, c->last_run, c->last_task_id);
    return rc;
}

static int sq_schedule_set_run(store *s, const char *team, const char *name, int64_t next_run_ms,
                               int64_t last_run_ms, const char *last_task_id, char *err,
                               size_t errlen)
{
    struct run_ctx c = {team, name, last_task_id, next_run_ms, last_run_ms};
    return sq_run((struct sq *)s, 1, set_run_body, &c, err, errlen);
}

static const struct store_driver sqlite_driver = {
    .name = "sqlite",
    .close = sq_close,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .migrations = sq_migrations,
    .resource_create = sq_resource_create,
    .resource_get = sq_resource_get,
    .resource_list = sq_resource_list,
    .resource_update_vault = sq_resource_update_vault,
    .resource_delete = sq_resource_delete,
    .machine_set_bridge = sq_machine_set_bridge,
    .schedule_set_run = sq_schedule_set_run,
    .queue_create = sq_queue_create,
    .queue_get = sq_queue_get,
    .queue_list = sq_queue_list,
    .queue_counts = sq_queue_counts,
    .queue_count = sq_queue_count,
    .queue_cancel = sq_queue_cancel,
    .queue_delete = sq_queue_delete,
    .event_append = sq_event_append,
    .event_list = sq_event_list,
    .claim = sq_claim,
    .start = sq_start,
    .progress = sq_progress,
    .heartbeat = sq_heartbeat,
    .finish = sq_finish,
    .expired = sq_expired,
    .cancelling = sq_cancelling,
    .notify = sq_notify,
    .wait_fd = sq_wait_fd,
    .wait_drain = sq_wait_drain,
};
