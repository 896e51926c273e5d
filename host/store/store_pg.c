/*
 * The PostgreSQL store driver: many bridges, each running `ferry serve`, share one database.
 *
 * Connections. One libpq connection per handle runs every operation; a host that asks for
 * wake-ups gets a second one that only LISTENs. Every write runs in its own READ COMMITTED
 * transaction (or in the caller's batch); reads run in autocommit. lock_timeout is the
 * busy timeout, so a wait for a row lock ends in a clear message rather than a hang.
 *
 * Lost connections. A server restart or a dropped connection between or during operations
 * is ridden out: the operation reconnects with a growing, jittered backoff for up to the
 * reconnect window (the busy timeout, 60 s by default) and runs again. Its body is
 * restartable; a transaction whose COMMIT got no answer is looked up by transaction id
 * (txid_status) so it is never applied twice or lost. A batch is rebuilt from its redo log
 * (below). When the window runs out the operation fails and the handle fails fast, one
 * reconnect attempt every few seconds, until the server answers again.
 *
 * Claims lock machine rows with FOR NO KEY UPDATE SKIP LOCKED, then the picked items with
 * FOR NO KEY UPDATE SKIP LOCKED: see store_pg_exec.c for why items alone are not enough.
 *
 * Wake-ups are LISTEN/NOTIFY on one channel per bridge ("ferry:<bridge>").
 */
#include "store_pg.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PARAMS   16
#define TEXT_OID     25
#define INT8_OID     20
#define BACKOFF_MAX  2000 /* ms between reconnect attempts, at most */
#define OFFLINE_WAIT 3000 /* ms between attempts once a reconnect window ran out */

static const struct store_driver pg_driver;

/* ---- migrations ------------------------------------------------------------------------------ */

/*
 * Numbered schema changes, the same numbers and names as the SQLite driver's, applied in
 * order under an advisory lock and recorded in schema_migrations. Names compare byte-wise
 * (COLLATE "C") as SQLite's do, which also keeps task id prefix ranges on the index.
 * Never edit a released migration: append a new one.
 */
static const struct migration {
    int version;
    const char *name;
    const char *sql;
} migrations[] = {
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
      * A claim's look at one machine, in one round trip: how many more items it may start,
      * -1 when another claim holds it. A busy machine is not locked at all. Otherwise its
      * row is locked (SKIP LOCKED: a machine another host is claiming for is skipped, not
      * waited for), and only then are its active items counted: a VOLATILE function takes
      * a fresh snapshot per statement, so the count sees every claim committed before the
      * lock was granted.
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
};

#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

/* Serialises migrations of processes opening a fresh database at the same moment. */
#define MIGRATION_LOCK_KEY "7236261198410592621"

/* ---- errors and text ------------------------------------------------------------------------- */

/* The first line of libpq's message for the connection, without the trailing newline. */
static void conn_message(PGconn *conn, char *out, size_t n)
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
static int pg_fail(struct pg *p, const PGresult *r, char *err, size_t errlen)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char buf[512];
    if (msg == NULL) {
        conn_message(p->conn, buf, sizeof(buf));
        msg = buf;
    }
    if (PQstatus(p->conn) != CONNECTION_OK || is_lost_state(state)) {
        seterr(err, errlen, "lost the connection to the PostgreSQL store %s: %s", p->label, msg);
        return PG_LOST;
    }
    if (state == NULL) {
        seterr(err, errlen, "store %s: %s", p->label, msg);
        return STORE_ERROR;
    }
    if (strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0) {
        seterr(err, errlen, "store %s: %s", p->label, msg);
        return PG_RETRY;
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
static char *utf8_clean(const char *text)
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

/* ---- statements ------------------------------------------------------------------------------ */

struct params {
    int n;
    Oid types[MAX_PARAMS];
    const char *values[MAX_PARAMS];
    char *owned[MAX_PARAMS];
    char num[MAX_PARAMS][24];
};

static void params_free(struct params *pp)
{
    for (int i = 0; i < pp->n; i++)
        free(pp->owned[i]);
}

/* Converts the arguments named by types into text parameters. */
static void params_build(struct params *pp, const char *types, va_list ap)
{
    memset(pp, 0, sizeof(*pp));
    for (int i = 0; i < MAX_PARAMS && types[i]; i++, pp->n++) {
        pp->types[i] = types[i] == 't' || types[i] == 'j' ? TEXT_OID : INT8_OID;
        switch (types[i]) {
        case 't': {
            const char *t = va_arg(ap, const char *);
            pp->owned[i] = t ? utf8_clean(t) : NULL;
            pp->values[i] = pp->owned[i] ? pp->owned[i] : t;
            break;
        }
        case 'i':
            snprintf(pp->num[i], sizeof(pp->num[i]), "%d", va_arg(ap, int));
            pp->values[i] = pp->num[i];
            break;
        case 'I':
            snprintf(pp->num[i], sizeof(pp->num[i]), "%lld", (long long)va_arg(ap, int64_t));
            pp->values[i] = pp->num[i];
            break;
        case 'N': {
            int64_t v = va_arg(ap, int64_t);
            snprintf(pp->num[i], sizeof(pp->num[i]), "%lld", (long long)v);
            pp->values[i] = v ? pp->num[i] : NULL;
            break;
        }
        case 'j': {
            json_t *j = va_arg(ap, json_t *);
            pp->owned[i] = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            pp->values[i] = pp->owned[i];
            break;
        }
        default:
            abort(); /* a driver bug, caught by the conformance suite */
        }
    }
}

/* ---- prepared statements ---------------------------------------------------------------------
 *
 * Parsing and planning were half of the server's work per statement, so a statement run a
 * second time on a connection is prepared (named "ferry_N") and executed by name from then
 * on. Keyed by text and parameter types; a lost connection takes its statements with it.
 */

static uint32_t hash_stmt(const char *sql, int n, const Oid *types)
{
    uint32_t h = 2166136261u;
    for (const char *c = sql; *c; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    for (int i = 0; i < n; i++)
        h = (h ^ (uint32_t)types[i]) * 16777619u;
    return h;
}

static void stmt_cache_clear(struct pg *p)
{
    for (size_t i = 0; i < PG_STMT_SLOTS; i++) {
        free(p->stmts[i].sql);
        p->stmts[i] = (struct pg_stmt){0};
    }
    p->n_stmts = 0;
}

/* The name of sql's prepared statement, preparing it first if needed; NULL when the cache
 * is full (the statement then runs unnamed). *rc: STORE_OK or the failure of preparing. */
static const char *stmt_name(struct pg *p, const char *sql, int n, const Oid *types, int *rc,
                             char *err, size_t errlen);

/* Runs one statement (simple protocol when n < 0). *out: the result on success. */
static int exec_raw(struct pg *p, const char *sql, int n, const Oid *types,
                    const char *const *values, PGresult **out, char *err, size_t errlen)
{
    *out = NULL;
    if (PQstatus(p->conn) != CONNECTION_OK) {
        char msg[256];
        conn_message(p->conn, msg, sizeof(msg));
        seterr(err, errlen, "lost the connection to the PostgreSQL store %s: %s", p->label, msg);
        return PG_LOST;
    }
    PGresult *r;
    if (n < 0) {
        r = PQexec(p->conn, sql);
    } else {
        int rc = STORE_OK;
        const char *name = stmt_name(p, sql, n, types, &rc, err, errlen);
        if (rc != STORE_OK)
            return rc;
        r = name ? PQexecPrepared(p->conn, name, n, values, NULL, NULL, 0)
                 : PQexecParams(p->conn, sql, n, types, values, NULL, NULL, 0);
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        *out = r;
        return STORE_OK;
    }
    int rc = pg_fail(p, r, err, errlen);
    PQclear(r);
    return rc;
}

static const char *stmt_name(struct pg *p, const char *sql, int n, const Oid *types, int *rc,
                             char *err, size_t errlen)
{
    uint32_t h = hash_stmt(sql, n, types);
    struct pg_stmt *slot = NULL;
    for (size_t i = 0; i < PG_STMT_SLOTS && slot == NULL; i++) {
        struct pg_stmt *s = &p->stmts[(h + i) % PG_STMT_SLOTS];
        if (s->sql == NULL || (s->hash == h && s->n == n && strcmp(s->sql, sql) == 0 &&
                               memcmp(s->types, types, (size_t)n * sizeof(Oid)) == 0))
            slot = s;
    }
    if (slot != NULL && slot->sql != NULL && slot->name[0] != '\0')
        return slot->name;
    /* Full (a few slots stay free so lookups end): run unnamed. */
    if (slot == NULL || n > MAX_PARAMS ||
        (slot->sql == NULL && p->n_stmts >= PG_STMT_SLOTS - PG_STMT_SLOTS / 8))
        return NULL;
    if (slot->sql == NULL) {
        /* First use: remembered, run unnamed. A one-shot process (the CLI) runs most
         * statements once, and preparing them would only cost it a round trip each. */
        slot->sql = xstrdup(sql);
        slot->hash = h;
        slot->n = n;
        memcpy(slot->types, types, (size_t)n * sizeof(Oid));
        p->n_stmts++;
        return NULL;
    }
    char name[24];
    snprintf(name, sizeof(name), "ferry_%u", ++p->stmt_counter);
    PGresult *r = PQprepare(p->conn, name, sql, n, types);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        *rc = pg_fail(p, r, err, errlen);
        PQclear(r);
        return NULL;
    }
    PQclear(r);
    memcpy(slot->name, name, sizeof(name));
    return slot->name;
}

/* Runs SQL without parameters and without a result (simple protocol: may hold several
 * statements). */
static int pg_cmd(struct pg *p, const char *sql, char *err, size_t errlen)
{
    PGresult *r;
    int rc = exec_raw(p, sql, -1, NULL, NULL, &r, err, errlen);
    PQclear(r);
    return rc;
}

int store_pg_qv(struct pg *p, PGresult **res, char *err, size_t errlen, const char *sql, int n,
                const char *types, const char *const *values)
{
    Oid *oids = calloc((size_t)(n > 0 ? n : 1), sizeof(Oid));
    if (oids == NULL)
        abort();
    for (int i = 0; i < n; i++)
        oids[i] = types[i] == 't' ? TEXT_OID : INT8_OID;
    int rc = exec_raw(p, sql, n, oids, values, res, err, errlen);
    free(oids);
    return rc;
}

int store_pg_q(struct pg *p, PGresult **res, char *err, size_t errlen, const char *sql,
               const char *types, ...)
{
    struct params pp;
    va_list ap;
    va_start(ap, types);
    params_build(&pp, types, ap);
    va_end(ap);
    int rc = exec_raw(p, sql, pp.n, pp.types, pp.values, res, err, errlen);
    params_free(&pp);
    return rc;
}

int store_pg_scalar(struct pg *p, int64_t *out, char *err, size_t errlen, const char *sql,
                    const char *types, ...)
{
    struct params pp;
    PGresult *r;
    va_list ap;
    va_start(ap, types);
    params_build(&pp, types, ap);
    va_end(ap);
    int rc = exec_raw(p, sql, pp.n, pp.types, pp.values, &r, err, errlen);
    params_free(&pp);
    *out = rc == STORE_OK && PQntuples(r) > 0 ? store_pg_i64(r, 0, 0) : 0;
    PQclear(r);
    return rc;
}

/* Remembers a write of the open batch, with copies of its parameters. */
static void log_append(struct pg *p, const char *sql, const char *types, const struct params *pp,
                       long rows)
{
    if (p->n_log == p->cap_log) {
        p->cap_log = p->cap_log ? p->cap_log * 2 : 64;
        p->log = realloc(p->log, p->cap_log * sizeof(*p->log));
        if (p->log == NULL)
            abort();
    }
    struct pg_logged *e = &p->log[p->n_log++];
    e->sql = sql;
    e->types = types;
    e->n = pp->n;
    e->rows = rows;
    e->op = p->op_seq;
    e->values = calloc((size_t)(pp->n ? pp->n : 1), sizeof(char *));
    if (e->values == NULL)
        abort();
    for (int i = 0; i < pp->n; i++)
        e->values[i] = pp->values[i] ? xstrdup(pp->values[i]) : NULL;
}

static void log_free_entry(struct pg_logged *e)
{
    for (int i = 0; i < e->n; i++)
        free(e->values[i]);
    free(e->values);
}

/* Forgets the batch's writes from index keep on. */
static void log_truncate(struct pg *p, size_t keep)
{
    while (p->n_log > keep)
        log_free_entry(&p->log[--p->n_log]);
}

/* A write: under the operation's savepoint inside a batch, and into the redo log. */
static int write_v(struct pg *p, PGresult **res, long *rows, char *err, size_t errlen,
                   const char *sql, const char *types, va_list ap)
{
    struct params pp;
    PGresult *r = NULL;
    params_build(&pp, types, ap);
    int rc = STORE_OK;
    /* Inside a batch, an operation that may fail after it changed something takes a
     * savepoint at its first write, so that its failure undoes only its own changes. The
     * others save the round trips: if one fails after all, the batch is rebuilt without it
     * (run_in_batch). */
    if (p->in_op && p->op_undo && !p->op_savepoint) {
        rc = pg_cmd(p, "SAVEPOINT op", err, errlen);
        p->op_savepoint = rc == STORE_OK;
    }
    if (rc == STORE_OK)
        rc = exec_raw(p, sql, pp.n, pp.types, pp.values, &r, err, errlen);
    long changed = rc == STORE_OK ? atol(PQcmdTuples(r)) : 0;
    if (rc == STORE_OK) {
        p->tx_wrote = 1;
        p->op_changed |= changed > 0;
        if (p->in_batch)
            log_append(p, sql, types, &pp, changed);
    }
    if (rows)
        *rows = changed;
    if (res)
        *res = r;
    else
        PQclear(r);
    params_free(&pp);
    return rc;
}

int store_pg_w(struct pg *p, long *rows, char *err, size_t errlen, const char *sql,
               const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int rc = write_v(p, NULL, rows, err, errlen, sql, types, ap);
    va_end(ap);
    return rc;
}

int store_pg_wq(struct pg *p, PGresult **res, char *err, size_t errlen, const char *sql,
                const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int rc = write_v(p, res, NULL, err, errlen, sql, types, ap);
    va_end(ap);
    return rc;
}

void store_pg_buf_add(struct pg_buf *b, const char *piece, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2 + 64;
        b->s = realloc(b->s, b->cap);
        if (b->s == NULL)
            abort();
    }
    memcpy(b->s + b->len, piece, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void store_pg_buf_element(struct pg_buf *b, const char *value)
{
    if (b->len > 1)
        store_pg_buf_add(b, ",", 1);
    if (value == NULL) {
        store_pg_buf_add(b, "NULL", 4);
        return;
    }
    char *clean = utf8_clean(value);
    store_pg_buf_add(b, "\"", 1);
    for (const char *c = clean ? clean : value; *c; c++) {
        if (*c == '"' || *c == '\\')
            store_pg_buf_add(b, "\\", 1);
        store_pg_buf_add(b, c, 1);
    }
    store_pg_buf_add(b, "\"", 1);
    free(clean);
}

const char *store_pg_text(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

int64_t store_pg_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* ---- connecting ------------------------------------------------------------------------------ */

/* The server's notices ("terminating connection due to administrator command" …) would
 * go to stderr, mixed into command output; the driver reports what matters itself. */
static void quiet_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Connects with ferry's defaults under whatever the configured conninfo says; the
 * conninfo (URL or key=value) may override application_name and connect_timeout. */
static PGconn *pg_connect(const struct pg *p)
{
    const char *keys[] = {"application_name", "connect_timeout", "dbname", "client_encoding", NULL};
    const char *values[] = {"ferry", "10", p->conninfo, "UTF8", NULL};
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

static void sleep_ms(int ms)
{
    if (ms > 0)
        usleep((useconds_t)ms * 1000);
}

/* The last moment an operation starting now may spend reconnecting. */
static int64_t op_deadline(const struct pg *p)
{
    return p->offline ? mono_ms() : mono_ms() + p->window_ms;
}

static void pg_close_listen(struct pg *p);

/*
 * Makes sure the connection is up, reconnecting until deadline with a growing, jittered
 * backoff. Any transaction the lost connection had is gone with it. STORE_OK, or
 * STORE_ERROR with err set.
 */
static int pg_connected(struct pg *p, int64_t deadline, char *err, size_t errlen)
{
    if (PQstatus(p->conn) == CONNECTION_OK)
        return STORE_OK;
    p->in_tx = 0;
    char msg[256];
    if (!p->warned) {
        conn_message(p->conn, msg, sizeof(msg));
        hlog(LOG_WARN, "store %s: connection lost (%s); reconnecting", p->label, msg);
        p->warned = 1;
    }
    int backoff = 50;
    for (;;) {
        if (!p->offline || mono_ms() >= p->next_connect_at) {
            PQreset(p->conn);
            stmt_cache_clear(p);
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
            conn_message(p->conn, msg, sizeof(msg));
            seterr(err, errlen, "cannot reach the PostgreSQL store %s (%s); retrying", p->label,
                   msg);
            p->offline = 1;
            return STORE_ERROR;
        }
        int wait = backoff + (int)(rand_r(&p->rand_state) % (unsigned)backoff);
        sleep_ms(wait < left ? wait : (int)left);
        backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
    }
}

/* Ends an open transaction without caring how (the connection may be gone). */
static void rollback_quietly(struct pg *p)
{
    if (PQstatus(p->conn) == CONNECTION_OK && PQtransactionStatus(p->conn) != PQTRANS_IDLE)
        pg_cmd(p, "ROLLBACK", NULL, 0);
    p->in_tx = 0;
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
    uint64_t h = 1469598103934665603ULL;
    for (const char *c = bridge; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ULL;
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
static void listen_tick(struct pg *p)
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
    const Oid types[1] = {TEXT_OID};
    if (PQstatus(p->conn) != CONNECTION_OK || PQtransactionStatus(p->conn) == PQTRANS_INERROR)
        return;
    channel_of(bridge, channel);
    /* A hint: if it fails, hosts find the item at their next poll. */
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
    listen_tick(p);
}

/* ---- transactions, batches and the redo log
 * ------------------------------------------------------
 *
 * A batch is one transaction holding many operations. Each successful write of the batch is
 * also kept in a redo log (statement, parameters, rows changed). When the transaction is
 * lost (a restart cut the connection, or an error aborted it with nothing to roll back to),
 * a new one is begun and the log replayed, one operation under a savepoint at a time. A
 * replayed write must change as many rows as the first time: the statements carry guards
 * (status, claim token, vault version), so an operation that no longer applies (another host
 * claimed the item meanwhile) is dropped whole, as if it had failed, and the rest stays.
 */

/*
 * Commits the open transaction. STORE_OK when it committed; PG_LOST when it certainly did
 * not (the caller runs it again); STORE_ERROR when the outcome cannot be known.
 */
static int pg_commit(struct pg *p, int64_t deadline, char *err, size_t errlen)
{
    int64_t xid = 0;
    int rc = STORE_OK;
    PGresult *r = NULL;
    if (p->tx_wrote) {
        rc = exec_raw(p, "SELECT txid_current_if_assigned()", -1, NULL, NULL, &r, err, errlen);
        if (rc == STORE_OK)
            xid = store_pg_i64(r, 0, 0);
        PQclear(r);
        if (rc != STORE_OK)
            return rc; /* COMMIT was never sent */
    }
    rc = exec_raw(p, "COMMIT", -1, NULL, NULL, &r, err, errlen);
    if (rc == STORE_OK && strcmp(PQcmdStatus(r), "COMMIT") != 0) {
        seterr(err, errlen, "store %s: the transaction was rolled back", p->label);
        rc = STORE_ERROR;
    }
    PQclear(r);
    p->in_tx = 0;
    if (rc != PG_LOST || xid == 0)
        return rc;
    /* The server went away while committing: ask it, once it is back, what became of it. */
    char last[512] = "no answer";
    for (;;) {
        char txt[24];
        snprintf(txt, sizeof(txt), "%lld", (long long)xid);
        if (pg_connected(p, deadline, err, errlen) != STORE_OK)
            break;
        char why[512] = "";
        rc = store_pg_q(p, &r, why, sizeof(why), "SELECT txid_status($1)", "I", xid);
        /* After a crash the server may not know the id at all ("transaction ID … is in the
         * future"): its WAL never reached disk, so the transaction did not commit. */
        if (rc != STORE_OK && rc != PG_LOST && strstr(why, "in the future")) {
            PQclear(r);
            return PG_LOST;
        }
        if (rc != STORE_OK)
            snprintf(last, sizeof(last), "%s", why);
        const char *status = rc == STORE_OK ? store_pg_text(r, 0, 0) : NULL;
        int done = status && strcmp(status, "committed") == 0;
        int aborted = status && strcmp(status, "aborted") == 0;
        int pending = status && strcmp(status, "in progress") == 0;
        if (rc == STORE_OK)
            snprintf(last, sizeof(last), "txid_status: %s", status ? status : "unknown (too old)");
        PQclear(r);
        if (done)
            return STORE_OK;
        if (aborted)
            return PG_LOST;
        if ((rc != PG_LOST && !pending) || mono_ms() >= deadline)
            break;
        sleep_ms(50);
    }
    seterr(err, errlen,
           "lost the connection to the PostgreSQL store %s while committing; the change may "
           "or may not have been saved (%s)",
           p->label, last);
    return STORE_ERROR;
}

/* Re-runs one logged write; *rows: the rows it changed. */
static int exec_logged(struct pg *p, const struct pg_logged *e, long *rows, char *err,
                       size_t errlen)
{
    Oid types[MAX_PARAMS];
    PGresult *r;
    for (int i = 0; i < e->n; i++)
        types[i] = e->types[i] == 't' || e->types[i] == 'j' ? TEXT_OID : INT8_OID;
    int rc = exec_raw(p, e->sql, e->n, types, (const char *const *)e->values, &r, err, errlen);
    *rows = rc == STORE_OK ? atol(PQcmdTuples(r)) : -1;
    PQclear(r);
    return rc;
}

/* Replays the log into the open (fresh) transaction. STORE_OK or PG_LOST. */
static int replay(struct pg *p, char *err, size_t errlen)
{
    size_t keep = 0, dropped = 0;
    for (size_t i = 0; i < p->n_log;) {
        unsigned op = p->log[i].op;
        size_t j = i;
        long rows = 0;
        int rc = pg_cmd(p, "SAVEPOINT replay", err, errlen);
        for (; rc == STORE_OK && j < p->n_log && p->log[j].op == op; j++) {
            rc = exec_logged(p, &p->log[j], &rows, NULL, 0);
            if (rc == STORE_OK && rows != p->log[j].rows)
                rc = STORE_CONFLICT;
        }
        if (rc == PG_LOST)
            return PG_LOST;
        while (j < p->n_log && p->log[j].op == op)
            j++;
        if (rc == STORE_OK) {
            rc = pg_cmd(p, "RELEASE SAVEPOINT replay", err, errlen);
            for (size_t k = i; k < j; k++)
                p->log[keep++] = p->log[k];
        } else {
            rc = pg_cmd(p, "ROLLBACK TO SAVEPOINT replay; RELEASE SAVEPOINT replay", err, errlen);
            for (size_t k = i; k < j; k++)
                log_free_entry(&p->log[k]);
            dropped++;
        }
        if (rc != STORE_OK)
            return PG_LOST;
        i = j;
    }
    p->n_log = keep;
    p->tx_wrote = 1;
    if (dropped)
        hlog(LOG_WARN,
             "store %s: batch rebuilt with %zu writes; %zu of its operations no longer "
             "applied and were dropped",
             p->label, keep, dropped);
    else
        hlog(LOG_INFO, "store %s: batch rebuilt with %zu writes", p->label, keep);
    return STORE_OK;
}

/* Starts a new transaction for the batch and replays its log (until deadline). */
static int rebuild_batch(struct pg *p, int64_t deadline, char *err, size_t errlen)
{
    for (unsigned attempt = 0;; attempt++) {
        rollback_quietly(p);
        int rc = pg_connected(p, deadline, err, errlen);
        if (rc != STORE_OK)
            return rc;
        rc = pg_cmd(p, "BEGIN", err, errlen);
        if (rc == STORE_OK) {
            p->in_tx = 1;
            p->tx_wrote = 0;
            rc = replay(p, err, errlen);
        }
        if (rc == STORE_OK)
            return STORE_OK;
        if (rc != PG_LOST || mono_ms() >= deadline || attempt > 50)
            return rc == PG_LOST ? STORE_ERROR : rc;
    }
}

static void end_batch(struct pg *p)
{
    rollback_quietly(p);
    log_truncate(p, 0);
    p->in_batch = p->batch_lost = p->in_op = 0;
}

/* One operation inside the open batch. */
static int run_in_batch(struct pg *p, pg_body body, void *ctx, char *err, size_t errlen)
{
    int64_t deadline = op_deadline(p);
    for (unsigned attempt = 0;; attempt++) {
        size_t mark = p->n_log;
        p->in_op = 1;
        p->op_savepoint = p->op_undo = p->op_changed = 0;
        int rc = body(p, ctx, err, errlen);
        p->in_op = 0;
        if (rc == STORE_OK && p->op_savepoint)
            rc = pg_cmd(p, "RELEASE SAVEPOINT op", err, errlen);
        p->op_seq++;
        if (rc == STORE_OK)
            return STORE_OK;
        log_truncate(p, mark);
        int rebuild = rc == PG_LOST;
        if (!rebuild && p->op_savepoint)
            rebuild =
                pg_cmd(p, "ROLLBACK TO SAVEPOINT op; RELEASE SAVEPOINT op", NULL, 0) != STORE_OK;
        else if (!rebuild)
            rebuild = p->op_changed || PQtransactionStatus(p->conn) != PQTRANS_INTRANS;
        if (rebuild) {
            char why[512];
            snprintf(why, sizeof(why), "%s", err ? err : "");
            int rb = rebuild_batch(p, deadline, err, errlen);
            if (rb != STORE_OK) {
                p->batch_lost = 1;
                return STORE_ERROR;
            }
            if (err)
                snprintf(err, errlen, "%s", why);
        }
        if (rc != PG_LOST && rc != PG_RETRY)
            return rc;
        if (attempt >= 20 || mono_ms() >= deadline) {
            if (rc == PG_RETRY)
                seterr(err, errlen, "store %s: deadlocked repeatedly; try again", p->label);
            return STORE_ERROR;
        }
        if (rc == PG_RETRY)
            sleep_ms(1 + (int)(rand_r(&p->rand_state) % (2u << (attempt < 6 ? attempt : 6))));
    }
}

int store_pg_run(struct pg *p, int write, pg_body body, void *ctx, char *err, size_t errlen)
{
    if (p->batch_lost) {
        /* Running on outside the batch would commit what the caller means to group. */
        seterr(err, errlen, "store %s: the batch was lost with the connection; end it first",
               p->label);
        return STORE_ERROR;
    }
    if (p->in_batch)
        return run_in_batch(p, body, ctx, err, errlen);
    int64_t deadline = op_deadline(p);
    for (unsigned attempt = 0;; attempt++) {
        int rc = pg_connected(p, deadline, err, errlen);
        if (rc != STORE_OK)
            return rc;
        listen_tick(p);
        if (write && (rc = pg_cmd(p, "BEGIN", err, errlen)) == STORE_OK) {
            p->in_tx = 1;
            p->tx_wrote = 0;
        }
        if (rc == STORE_OK) {
            rc = body(p, ctx, err, errlen);
            if (rc == STORE_OK && write)
                rc = pg_commit(p, deadline, err, errlen);
        }
        if (p->in_tx)
            rollback_quietly(p);
        if (rc != PG_LOST && rc != PG_RETRY)
            return rc;
        if (attempt >= 50 || (mono_ms() >= deadline && PQstatus(p->conn) == CONNECTION_OK)) {
            if (rc == PG_RETRY)
                seterr(err, errlen, "store %s: deadlocked repeatedly; try again", p->label);
            return STORE_ERROR;
        }
        if (rc == PG_RETRY)
            sleep_ms(1 + (int)(rand_r(&p->rand_state) % (2u << (attempt < 6 ? attempt : 6))));
    }
}

static int pg_begin(store *s, char *err, size_t errlen)
{
    struct pg *p = (struct pg *)s;
    int64_t deadline = op_deadline(p);
    for (unsigned attempt = 0;; attempt++) {
        int rc = pg_connected(p, deadline, err, errlen);
        if (rc != STORE_OK)
            return rc;
        listen_tick(p);
        rc = pg_cmd(p, "BEGIN", err, errlen);
        if (rc == STORE_OK) {
            p->in_tx = p->in_batch = 1;
            p->tx_wrote = p->batch_lost = 0;
            p->op_seq = 0;
            log_truncate(p, 0);
            return STORE_OK;
        }
        if (rc != PG_LOST)
            return rc;
        if (attempt >= 20)
            return STORE_ERROR;
    }
}

static int pg_commit_batch(store *s, char *err, size_t errlen)
{
    struct pg *p = (struct pg *)s;
    int rc = STORE_OK;
    if (!p->in_batch || p->batch_lost) {
        seterr(err, errlen, "store %s: the batch was lost with the connection", p->label);
        rc = STORE_ERROR;
    }
    int64_t deadline = op_deadline(p);
    for (unsigned attempt = 0; rc == STORE_OK; attempt++) {
        rc = pg_commit(p, deadline, err, errlen);
        if (rc != PG_LOST)
            break;
        /* Certainly not committed: commit the rebuilt batch instead. */
        rc = attempt < 20 ? rebuild_batch(p, deadline, err, errlen) : STORE_ERROR;
    }
    end_batch(p);
    return rc;
}

static int pg_rollback(store *s, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    end_batch((struct pg *)s);
    return STORE_OK;
}

/* ---- open, migrate, close -------------------------------------------------------------------- */

static int current_version(struct pg *p, int64_t *version, char *err, size_t errlen)
{
    int64_t exists = 0;
    int rc = store_pg_scalar(p, &exists, err, errlen,
                             "SELECT (to_regclass('schema_migrations') IS NOT NULL)::int", "");
    *version = 0;
    if (rc == STORE_OK && exists)
        rc = store_pg_scalar(p, version, err, errlen,
                             "SELECT coalesce(max(version), 0) FROM schema_migrations", "");
    return rc;
}

static int migrate_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    int64_t version = 0, latest = migrations[N_MIGRATIONS - 1].version;
    (void)ctx;
    int rc = pg_cmd(p, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK_KEY ")", err, errlen);
    if (rc == STORE_OK)
        rc = pg_cmd(p,
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
                    " name text NOT NULL, applied_at bigint NOT NULL)",
                    err, errlen);
    if (rc == STORE_OK)
        rc = current_version(p, &version, err, errlen);
    if (rc == STORE_OK && version > latest) {
        seterr(err, errlen,
               "store %s has schema version %lld, newer than this ferry knows (%lld); "
               "upgrade ferry",
               p->label, (long long)version, (long long)latest);
        return STORE_ERROR;
    }
    for (size_t i = 0; rc == STORE_OK && i < N_MIGRATIONS; i++) {
        if (migrations[i].version <= version)
            continue;
        char msg[512] = "";
        rc = pg_cmd(p, migrations[i].sql, msg, sizeof(msg));
        if (rc != STORE_OK && rc != PG_LOST && rc != PG_RETRY)
            seterr(err, errlen, "store %s: migration %d failed: %s", p->label,
                   migrations[i].version, msg);
        if (rc == STORE_OK)
            rc = store_pg_w(p, NULL, err, errlen,
                            "INSERT INTO schema_migrations (version, name, applied_at)"
                            " VALUES ($1, $2, $3)",
                            "itI", migrations[i].version, migrations[i].name, now_ms());
    }
    p->tx_wrote = 1;
    return rc;
}

/* Applies missing migrations. An up-to-date database is only read. */
static int pg_migrate(struct pg *p, char *err, size_t errlen)
{
    int64_t version = 0;
    int rc = current_version(p, &version, err, errlen);
    if (rc == STORE_OK && version == migrations[N_MIGRATIONS - 1].version)
        return STORE_OK;
    return store_pg_run(p, 1, migrate_body, NULL, err, errlen);
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
    log_truncate(p, 0);
    stmt_cache_clear(p);
    free(p->log);
    free(p->conninfo);
    free(p->label);
    free(p);
}

static void pg_close(store *s)
{
    struct pg *p = (struct pg *)s;
    if (p->pid == getpid() && p->in_tx)
        rollback_quietly(p);
    pg_free(p);
}

/*
 * Opens the PostgreSQL store named by conninfo (a postgres:// URL or a libpq key=value
 * string), configures the session and applies migrations. Returns the handle, or NULL with
 * err set (the message never shows a password). The caller closes it with store_close.
 */
store *store_pg_open(const char *conninfo, const struct store_options *opts, char *err,
                     size_t errlen)
{
    struct pg *p = calloc(1, sizeof(*p));
    if (p == NULL)
        abort();
    p->base.drv = &pg_driver;
    p->conninfo = xstrdup(conninfo);
    p->label = pg_label(conninfo);
    p->pid = getpid();
    p->window_ms = opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : 60000;
    p->rand_state = (unsigned)(getpid() ^ mono_us());
    p->wait_fd = p->pipe_rd = p->pipe_wr = -1;
    p->conn = pg_connect(p);
    if (PQstatus(p->conn) != CONNECTION_OK || pg_setup(p, p->conn) != STORE_OK) {
        char msg[256];
        conn_message(p->conn, msg, sizeof(msg));
        seterr(err, errlen, "cannot open the PostgreSQL store %s: %s", p->label, msg);
        pg_free(p);
        return NULL;
    }
    if (pg_migrate(p, err, errlen) != STORE_OK) {
        pg_free(p);
        return NULL;
    }
    return &p->base;
}

static int migrations_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    PGresult *r;
    int rc =
        store_pg_q(p, &r, err, errlen,
                   "SELECT version, name, applied_at FROM schema_migrations ORDER BY version", "");
    if (rc != STORE_OK)
        return rc;
    json_t *rows = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        char when[32];
        iso8601_ms(store_pg_i64(r, i, 2), when);
        json_array_append_new(rows, json_pack("{s:I,s:s,s:s,s:I}", "version",
                                              (json_int_t)store_pg_i64(r, i, 0), "name",
                                              store_pg_text(r, i, 1), "appliedTime", when,
                                              "appliedTimeMs", (json_int_t)store_pg_i64(r, i, 2)));
    }
    PQclear(r);
    json_decref(*(json_t **)ctx);
    *(json_t **)ctx = rows;
    return STORE_OK;
}

static int pg_migrations(store *s, json_t **rows, char *err, size_t errlen)
{
    *rows = NULL;
    return store_pg_run((struct pg *)s, 0, migrations_body, rows, err, errlen);
}

static const struct store_driver pg_driver = {
    .name = "postgres",
    .close = pg_close,
    .begin = pg_begin,
    .commit = pg_commit_batch,
    .rollback = pg_rollback,
    .migrations = pg_migrations,
    .resource_create = store_pg_resource_create,
    .resource_get = store_pg_resource_get,
    .resource_list = store_pg_resource_list,
    .resource_update_vault = store_pg_resource_update_vault,
    .resource_delete = store_pg_resource_delete,
    .machine_set_bridge = store_pg_machine_set_bridge,
    .schedule_set_run = store_pg_schedule_set_run,
    .queue_create = store_pg_queue_create,
    .queue_get = store_pg_queue_get,
    .queue_list = store_pg_queue_list,
    .queue_counts = store_pg_queue_counts,
    .queue_count = store_pg_queue_count,
    .queue_cancel = store_pg_queue_cancel,
    .queue_delete = store_pg_queue_delete,
    .event_append = store_pg_event_append,
    .event_list = store_pg_event_list,
    .claim = store_pg_claim,
    .start = store_pg_start,
    .progress = store_pg_progress,
    .heartbeat = store_pg_heartbeat,
    .finish = store_pg_finish,
    .expired = store_pg_expired,
    .cancelling = store_pg_cancelling,
    .notify = pg_notify,
    .wait_fd = pg_wait_fd,
    .wait_drain = pg_wait_drain,
};
