/*
 * The PostgreSQL driver's statements and transactions (see store_pg.h).
 *
 * Statements. A statement of the store (statements.c) is kept by its id with its text
 * rewritten to $N parameters; run a second time on a connection it is prepared (named
 * "ferry_<id>") and executed by name from then on, since parsing and planning were half of
 * the server's work per statement. A one-shot process (the CLI) runs most statements once,
 * and preparing them would only cost it a round trip each. A lost connection takes its
 * prepared statements with it.
 *
 * Transactions. Every write operation runs in its own READ COMMITTED transaction (or in the
 * caller's batch); reads run in autocommit. A lost connection or a deadlock / serialization
 * failure runs the operation again (within the reconnect window); a transaction whose
 * COMMIT got no answer is looked up by transaction id (txid_status) so it is never applied
 * twice or lost. Neither the BEGIN nor the question of that id costs a round trip of its own:
 * they travel with the transaction's first statement and with a write (pipeline mode).
 */
#include "store_pg.h"

#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- statements ------------------------------------------------------------------------------ */

/* Rewrites ?N parameters to $N. New string. */
static char *dollar_params(const char *sql)
{
    char *t = xstrdup(sql);
    for (char *c = t; *c; c++)
        if (*c == '?' && c[1] >= '0' && c[1] <= '9')
            *c = '$';
    return t;
}

void store_pg_stmts_reset(struct pg *p)
{
    for (size_t i = 0; i < S_COUNT; i++)
        p->stmts[i].prepared = 0;
}

/* The name to execute statement id by, preparing it on its second use; NULL to run it
 * unnamed. *rc: STORE_OK or the failure of preparing. */
static const char *stmt_name(struct pg *p, int id, int n, const Oid *types, char name[24], int *rc,
                             char *err, size_t errlen)
{
    struct pg_stmt *st = &p->stmts[id];
    if (n > PG_MAX_PARAMS || st->n != n || memcmp(st->types, types, (size_t)n * sizeof(Oid)) != 0)
        return NULL; /* first use, or other parameter types: unnamed */
    snprintf(name, 24, "ferry_%d", id);
    if (st->prepared)
        return name;
    if (++st->uses < 2)
        return NULL;
    PGresult *r = PQprepare(p->conn, name, st->sql, n, types);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        *rc = store_pg_fail(p, r, err, errlen);
        PQclear(r);
        return NULL;
    }
    PQclear(r);
    st->prepared = 1;
    return name;
}

/* The question pg_commit needs answered: the transaction's id, if it has one. */
#define ASK_XID "SELECT txid_current_if_assigned()"

/*
 * Runs one statement of the extended protocol together with what goes in its round trip
 * (libpq's pipeline mode): before it the transaction's deferred BEGIN, after it (ask) the
 * question of the transaction's id. *out: the statement's result. The id, when the answer
 * came, is kept in the handle; a failed question only leaves it unknown (pg_commit asks).
 */
static int exec_pipelined(struct pg *p, const char *named, const char *sql, int n,
                          const Oid *types, const char *const *values, int begin, int ask,
                          PGresult **out, char *err, size_t errlen)
{
    PGconn *c = p->conn;
    int queued = 0, main_q = begin; /* queries sent; the statement's place among them */
    if (PQenterPipelineMode(c)) {
        int ok = !begin || PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
        queued += ok && begin;
        ok = ok && (named ? PQsendQueryPrepared(c, named, n, values, NULL, NULL, 0)
                          : PQsendQueryParams(c, sql, n, types, values, NULL, NULL, 0));
        queued += ok;
        queued += ok && ask && PQsendQueryParams(c, ASK_XID, 0, NULL, NULL, NULL, NULL, 0);
        /* Even after a failed send: what was sent is then read up to the sync. */
        if (!PQpipelineSync(c))
            queued = -1;
    }
    /* The results come query by query, each ended by NULL, then the sync's. */
    PGresult *failed = NULL, *mine = NULL;
    for (int q = 0; queued >= 0 && q <= queued;) {
        PGresult *r = PQgetResult(c);
        if (r == NULL) {
            if (PQstatus(c) != CONNECTION_OK)
                break;
            q++;
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            break;
        }
        int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
        if (q == main_q && ok && mine == NULL) {
            mine = r;
            continue;
        }
        if (q == main_q + 1 && ok && PQntuples(r) == 1) {
            p->xid = PQgetisnull(r, 0, 0) ? 0 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            p->xid_current = 1;
        } else if (!ok && st != PGRES_PIPELINE_ABORTED && q <= main_q && failed == NULL) {
            failed = r;
            continue;
        }
        PQclear(r);
    }
    PQexitPipelineMode(c);
    if (mine != NULL && failed == NULL) {
        *out = mine;
        return STORE_OK;
    }
    int rc = store_pg_fail(p, failed, err, errlen);
    PQclear(failed);
    PQclear(mine);
    return rc;
}

/* store_pg_exec_raw; ask: a write, after which the transaction's id is asked for in the same
 * round trip while it is not known. */
static int exec_stmt(struct pg *p, int id, const char *sql, int n, const Oid *types,
                     const char *const *values, int ask, PGresult **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    p->version_at = 0;
    if (PQstatus(p->conn) != CONNECTION_OK) {
        char msg[256];
        store_pg_conn_message(p->conn, msg, sizeof(msg));
        seterr(err, errlen, "lost the connection to the PostgreSQL store %s: %s", p->label, msg);
        return ENG_LOST;
    }
    int begin = p->begin_pending;
    if (ask) {
        ask = p->in_tx && p->xid == 0;
        p->xid_current = 0;
    }
    PGresult *r;
    if (n < 0 && begin) {
        char *both = xasprintf("BEGIN; %s", sql);
        p->begin_pending = 0;
        r = PQexec(p->conn, both);
        free(both);
    } else if (n < 0) {
        r = PQexec(p->conn, sql);
    } else {
        int rc = STORE_OK;
        char name[24];
        const char *named = id >= 0 ? stmt_name(p, id, n, types, name, &rc, err, errlen) : NULL;
        if (rc != STORE_OK)
            return rc;
        p->begin_pending = 0;
        if (begin || ask)
            return exec_pipelined(p, named, sql, n, types, values, begin, ask, out, err, errlen);
        r = named ? PQexecPrepared(p->conn, named, n, values, NULL, NULL, 0)
                  : PQexecParams(p->conn, sql, n, types, values, NULL, NULL, 0);
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        *out = r;
        return STORE_OK;
    }
    int rc = store_pg_fail(p, r, err, errlen);
    PQclear(r);
    return rc;
}

int store_pg_exec_raw(struct pg *p, int id, const char *sql, int n, const Oid *types,
                      const char *const *values, PGresult **out, char *err, size_t errlen)
{
    return exec_stmt(p, id, sql, n, types, values, 0, out, err, errlen);
}

int store_pg_cmd(struct pg *p, const char *sql, char *err, size_t errlen)
{
    PGresult *r;
    int rc = store_pg_exec_raw(p, -1, sql, -1, NULL, NULL, &r, err, errlen);
    PQclear(r);
    return rc;
}

void store_pg_rollback_quietly(struct pg *p)
{
    p->begin_pending = 0; /* nothing was sent: nothing to roll back */
    if (PQstatus(p->conn) == CONNECTION_OK && PQtransactionStatus(p->conn) != PQTRANS_IDLE)
        store_pg_cmd(p, "ROLLBACK", NULL, 0);
    p->in_tx = 0;
}

/* A transaction opens: its BEGIN goes with its first statement (exec_stmt), a round trip
 * less; a transaction that runs none sends nothing. */
static void tx_open(struct pg *p)
{
    p->in_tx = p->begin_pending = 1;
    p->tx_wrote = 0;
    p->xid = p->xid_current = 0;
}

/* Remembers a write of the open batch, with copies of its parameters. */
static void log_append(struct pg *p, const char *sql, int n, const Oid *types,
                       const char *const *values, long rows)
{
    if (p->n_log == p->cap_log) {
        p->cap_log = p->cap_log ? p->cap_log * 2 : 64;
        p->log = realloc(p->log, p->cap_log * sizeof(*p->log));
        if (p->log == NULL)
            abort();
    }
    if (n > PG_MAX_PARAMS)
        abort(); /* the store's own writes take at most PG_MAX_PARAMS parameters */
    struct pg_logged *e = &p->log[p->n_log++];
    e->sql = sql;
    e->n = n;
    memcpy(e->types, types, (size_t)n * sizeof(Oid));
    e->rows = rows;
    e->op = p->op_seq;
    e->values = calloc((size_t)(n ? n : 1), sizeof(char *));
    if (e->values == NULL)
        abort();
    for (int i = 0; i < n; i++)
        e->values[i] = values[i] ? xstrdup(values[i]) : NULL;
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

void store_pg_tx_free(struct pg *p)
{
    log_truncate(p, 0);
    free(p->log);
    for (size_t i = 0; i < S_COUNT; i++)
        free(p->stmts[i].sql);
}

/* The statement text to run for id ($N parameters), kept in the handle for its life. */
static const char *stmt_text(struct pg *p, int id, const char *sql, int n, const Oid *types)
{
    struct pg_stmt *st = &p->stmts[id];
    if (st->sql == NULL) {
        st->sql = dollar_params(sql);
        st->n = n < PG_MAX_PARAMS ? n : PG_MAX_PARAMS;
        memcpy(st->types, types, (size_t)st->n * sizeof(Oid));
    }
    return st->sql;
}

int store_pg_exec(store *s, int id, const char *sql, int flags, int n, const struct eng_val *v,
                  eng_rows *rows, long *changes, char *err, size_t errlen)
{
    struct pg *p = (struct pg *)s;
    Oid *types = calloc((size_t)(n ? n : 1), sizeof(Oid));
    const char **values = calloc((size_t)(n ? n : 1), sizeof(char *));
    char **owned = calloc((size_t)(n ? n : 1), sizeof(char *));
    if (types == NULL || values == NULL || owned == NULL)
        abort();
    for (int i = 0; i < n; i++) {
        types[i] = v[i].is_text ? PG_TEXT_OID : PG_INT8_OID;
        if (v[i].is_null)
            continue;
        if (v[i].is_text) {
            /* PostgreSQL refuses invalid UTF-8 where SQLite keeps any bytes. */
            owned[i] = store_pg_utf8_clean(v[i].text);
            values[i] = owned[i] ? owned[i] : v[i].text;
        } else {
            owned[i] = xasprintf("%lld", (long long)v[i].num);
            values[i] = owned[i];
        }
    }
    char *dynamic = id < 0 ? dollar_params(sql) : NULL;
    const char *text = id < 0 ? dynamic : stmt_text(p, id, sql, n, types);
    int rc = STORE_OK;
    PGresult *r = NULL;
    /* Inside a batch, an operation that may fail after it changed something takes a
     * savepoint at its first write, so that its failure undoes only its own changes. The
     * others save the round trips: if one fails after all, the batch is rebuilt without it
     * (store_pg_run_in_batch). */
    if ((flags & ENG_WRITE) && p->in_op && p->op_undo && !p->op_savepoint) {
        rc = store_pg_cmd(p, "SAVEPOINT op", err, errlen);
        p->op_savepoint = rc == STORE_OK;
    }
    if (rc == STORE_OK)
        rc = exec_stmt(p, id, text, n, types, values, flags & ENG_WRITE, &r, err, errlen);
    long changed = rc == STORE_OK ? atol(PQcmdTuples(r)) : 0;
    if (rc == STORE_OK && (flags & ENG_WRITE)) {
        p->tx_wrote = 1;
        p->op_changed |= changed > 0;
        if (p->in_batch && id >= 0)
            log_append(p, text, n, types, values, changed);
    }
    if (changes)
        *changes = changed;
    if (rc == STORE_OK)
        *rows = (eng_rows){.s = s, .impl = r, .pos = 0, .n = PQntuples(r)};
    for (int i = 0; i < n; i++)
        free(owned[i]);
    free(owned);
    free(values);
    free(types);
    free(dynamic);
    return rc;
}

/* Cursor state: impl the result, pos the next row, n the rows. */
int store_pg_next(eng_rows *r, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    if (r->pos >= r->n)
        return 0;
    r->pos++;
    return 1;
}

const char *store_pg_text(eng_rows *r, int col)
{
    return PQgetisnull(r->impl, r->pos - 1, col) ? NULL : PQgetvalue(r->impl, r->pos - 1, col);
}

int64_t store_pg_i64(eng_rows *r, int col)
{
    const char *t = store_pg_text(r, col);
    return t ? strtoll(t, NULL, 10) : 0;
}

int store_pg_is_null(eng_rows *r, int col)
{
    return PQgetisnull(r->impl, r->pos - 1, col);
}

void store_pg_done(eng_rows *r)
{
    PQclear(r->impl);
}

int store_pg_script(store *s, const char *sql, char *err, size_t errlen)
{
    struct pg *p = (struct pg *)s;
    int rc = store_pg_cmd(p, sql, err, errlen);
    if (rc == STORE_OK)
        p->tx_wrote = 1;
    p->xid_current = 0; /* it may have written without asking for the id */
    return rc;
}

void store_pg_may_undo(store *s)
{
    ((struct pg *)s)->op_undo = 1;
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
 * COMMIT, and with version the count of changes to machines and teams read right after it
 * in the same round trip (a host asks for it after every turn's commit: pg_resources_version
 * takes it from there). The count's failure (a role that may not read it) is only no count.
 */
static int exec_commit(struct pg *p, int version, PGresult **out, char *err, size_t errlen)
{
    if (!version || PQstatus(p->conn) != CONNECTION_OK)
        return store_pg_exec_raw(p, -1, "COMMIT", -1, NULL, NULL, out, err, errlen);
    p->version_at = 0;
    *out = NULL;
    if (!PQsendQuery(p->conn, "COMMIT; SELECT n FROM resource_changes"))
        return store_pg_fail(p, NULL, err, errlen);
    PGresult *r, *commit = NULL;
    while ((r = PQgetResult(p->conn)) != NULL) {
        if (commit == NULL) {
            commit = r;
            continue;
        }
        if (PQresultStatus(commit) == PGRES_COMMAND_OK && PQresultStatus(r) == PGRES_TUPLES_OK &&
            PQntuples(r) == 1) {
            p->version = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            p->version_at = mono_ms();
        }
        PQclear(r);
    }
    if (commit != NULL && PQresultStatus(commit) == PGRES_COMMAND_OK) {
        *out = commit;
        return STORE_OK;
    }
    int rc = store_pg_fail(p, commit, err, errlen);
    PQclear(commit);
    return rc;
}

/*
 * Commits the open transaction. STORE_OK when it committed; ENG_LOST when it certainly did
 * not (the caller runs it again); STORE_ERROR when the outcome cannot be known.
 */
static int pg_commit(struct pg *p, int version, int64_t deadline, char *err, size_t errlen)
{
    int rc = STORE_OK;
    PGresult *r = NULL;
    if (p->begin_pending) { /* no statement ran: there is nothing to commit */
        p->begin_pending = p->in_tx = 0;
        return STORE_OK;
    }
    /* The id, asked for in the round trip of the last write (exec_stmt), or now. */
    int64_t xid = p->xid;
    if (p->tx_wrote && xid == 0 && !p->xid_current) {
        rc = store_pg_exec_raw(p, -1, ASK_XID, -1, NULL, NULL, &r, err, errlen);
        if (rc == STORE_OK)
            xid = (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0);
        PQclear(r);
        if (rc != STORE_OK)
            return rc; /* COMMIT was never sent */
    }
    rc = exec_commit(p, version, &r, err, errlen);
    if (rc == STORE_OK && strcmp(PQcmdStatus(r), "COMMIT") != 0) {
        seterr(err, errlen, "store %s: the transaction was rolled back", p->label);
        rc = STORE_ERROR;
    }
    PQclear(r);
    p->in_tx = 0;
    if (rc != ENG_LOST || xid == 0)
        return rc;
    /* The server went away while committing: ask it, once it is back, what became of it. */
    char last[512] = "no answer";
    for (;;) {
        char txt[24];
        snprintf(txt, sizeof(txt), "%lld", (long long)xid);
        if (store_pg_connected(p, deadline, err, errlen) != STORE_OK)
            break;
        char why[512] = "";
        const Oid int8[1] = {PG_INT8_OID};
        const char *values[1] = {txt};
        rc = store_pg_exec_raw(p, -1, "SELECT txid_status($1)", 1, int8, values, &r, why,
                               sizeof(why));
        /* After a crash the server may not know the id at all ("transaction ID … is in the
         * future"): its WAL never reached disk, so the transaction did not commit. */
        if (rc != STORE_OK && rc != ENG_LOST && strstr(why, "in the future")) {
            PQclear(r);
            return ENG_LOST;
        }
        if (rc != STORE_OK)
            snprintf(last, sizeof(last), "%s", why);
        const char *status = rc == STORE_OK ? (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? PQgetvalue(r, 0, 0) : NULL) : NULL;
        int done = status && strcmp(status, "committed") == 0;
        int aborted = status && strcmp(status, "aborted") == 0;
        int pending = status && strcmp(status, "in progress") == 0;
        if (rc == STORE_OK)
            snprintf(last, sizeof(last), "txid_status: %s", status ? status : "unknown (too old)");
        PQclear(r);
        if (done)
            return STORE_OK;
        if (aborted)
            return ENG_LOST;
        if ((rc != ENG_LOST && !pending) || mono_ms() >= deadline)
            break;
        store_pg_sleep_ms(50);
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
    PGresult *r;
    int rc = store_pg_exec_raw(p, -1, e->sql, e->n, e->types, (const char *const *)e->values, &r,
                               err, errlen);
    *rows = rc == STORE_OK ? atol(PQcmdTuples(r)) : -1;
    PQclear(r);
    return rc;
}

/* Replays the log into the open (fresh) transaction. STORE_OK or ENG_LOST. */
static int replay(struct pg *p, char *err, size_t errlen)
{
    size_t keep = 0, dropped = 0;
    for (size_t i = 0; i < p->n_log;) {
        unsigned op = p->log[i].op;
        size_t j = i;
        long rows = 0;
        int rc = store_pg_cmd(p, "SAVEPOINT replay", err, errlen);
        for (; rc == STORE_OK && j < p->n_log && p->log[j].op == op; j++) {
            rc = exec_logged(p, &p->log[j], &rows, NULL, 0);
            if (rc == STORE_OK && rows != p->log[j].rows)
                rc = STORE_CONFLICT;
        }
        if (rc == ENG_LOST)
            return ENG_LOST;
        while (j < p->n_log && p->log[j].op == op)
            j++;
        if (rc == STORE_OK) {
            rc = store_pg_cmd(p, "RELEASE SAVEPOINT replay", err, errlen);
            for (size_t k = i; k < j; k++)
                p->log[keep++] = p->log[k];
        } else {
            rc = store_pg_cmd(p, "ROLLBACK TO SAVEPOINT replay; RELEASE SAVEPOINT replay", err, errlen);
            for (size_t k = i; k < j; k++)
                log_free_entry(&p->log[k]);
            dropped++;
        }
        if (rc != STORE_OK)
            return ENG_LOST;
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
        store_pg_rollback_quietly(p);
        int rc = store_pg_connected(p, deadline, err, errlen);
        if (rc != STORE_OK)
            return rc;
        rc = store_pg_cmd(p, "BEGIN", err, errlen);
        if (rc == STORE_OK) {
            p->in_tx = 1;
            p->tx_wrote = 0;
            p->xid = p->xid_current = 0;
            rc = replay(p, err, errlen);
        }
        if (rc == STORE_OK)
            return STORE_OK;
        if (rc != ENG_LOST || mono_ms() >= deadline || attempt > 50)
            return rc == ENG_LOST ? STORE_ERROR : rc;
    }
}

static void end_batch(struct pg *p)
{
    store_pg_rollback_quietly(p);
    log_truncate(p, 0);
    p->in_batch = p->base.batch_lost = p->in_op = 0;
}

/* One operation inside the open batch. */
int store_pg_run_in_batch(store *s, eng_body body, void *ctx, char *err, size_t errlen)
{
    struct pg *p = (struct pg *)s;
    int64_t deadline = store_pg_deadline(p);
    for (unsigned attempt = 0;; attempt++) {
        size_t mark = p->n_log;
        p->in_op = 1;
        p->op_savepoint = p->op_undo = p->op_changed = 0;
        int rc = body(&p->base, ctx, err, errlen);
        p->in_op = 0;
        if (rc == STORE_OK && p->op_savepoint)
            rc = store_pg_cmd(p, "RELEASE SAVEPOINT op", err, errlen);
        p->op_seq++;
        if (rc == STORE_OK)
            return STORE_OK;
        log_truncate(p, mark);
        int rebuild = rc == ENG_LOST;
        if (!rebuild && p->op_savepoint)
            rebuild =
                store_pg_cmd(p, "ROLLBACK TO SAVEPOINT op; RELEASE SAVEPOINT op", NULL, 0) != STORE_OK;
        else if (!rebuild)
            rebuild = p->op_changed ||
                      (!p->begin_pending && PQtransactionStatus(p->conn) != PQTRANS_INTRANS);
        if (rebuild) {
            char why[512];
            snprintf(why, sizeof(why), "%s", err ? err : "");
            int rb = rebuild_batch(p, deadline, err, errlen);
            if (rb != STORE_OK) {
                p->base.batch_lost = 1;
                return STORE_ERROR;
            }
            if (err)
                snprintf(err, errlen, "%s", why);
        }
        if (rc != ENG_LOST && rc != ENG_AGAIN)
            return rc;
        if (attempt >= 20 || mono_ms() >= deadline) {
            if (rc == ENG_AGAIN)
                seterr(err, errlen, "store %s: deadlocked repeatedly; try again", p->label);
            return STORE_ERROR;
        }
        if (rc == ENG_AGAIN)
            store_pg_sleep_ms(1 + (int)(rand_r(&p->rand_state) % (2u << (attempt < 6 ? attempt : 6))));
    }
}

/* Connected (reconnecting until deadline), with the wake-up connection checked on the way:
 * ready for a transaction. */
static int ready(struct pg *p, int64_t deadline, char *err, size_t errlen)
{
    int rc = store_pg_connected(p, deadline, err, errlen);
    if (rc == STORE_OK)
        store_pg_listen_tick(p);
    return rc;
}

int store_pg_run(store *s, int write, eng_body body, void *ctx, char *err, size_t errlen)
{
    struct pg *p = (struct pg *)s;
    int64_t deadline = store_pg_deadline(p);
    for (unsigned attempt = 0;; attempt++) {
        int rc = ready(p, deadline, err, errlen);
        if (rc != STORE_OK)
            return rc;
        if (write)
            tx_open(p);
        rc = body(&p->base, ctx, err, errlen);
        if (rc == STORE_OK && write)
            rc = pg_commit(p, 0, deadline, err, errlen);
        if (p->in_tx)
            store_pg_rollback_quietly(p);
        if (rc != ENG_LOST && rc != ENG_AGAIN)
            return rc;
        if (attempt >= 50 || (mono_ms() >= deadline && PQstatus(p->conn) == CONNECTION_OK)) {
            if (rc == ENG_AGAIN)
                seterr(err, errlen, "store %s: deadlocked repeatedly; try again", p->label);
            return STORE_ERROR;
        }
        if (rc == ENG_AGAIN)
            store_pg_sleep_ms(1 + (int)(rand_r(&p->rand_state) % (2u << (attempt < 6 ? attempt : 6))));
    }
}

int store_pg_begin(store *s, char *err, size_t errlen)
{
    struct pg *p = (struct pg *)s;
    int rc = ready(p, store_pg_deadline(p), err, errlen);
    if (rc != STORE_OK)
        return rc;
    /* A connection lost before the first statement is the batch's first operation's to
     * ride out (store_pg_run_in_batch rebuilds the empty batch). */
    tx_open(p);
    p->in_batch = 1;
    p->base.batch_lost = 0;
    p->op_seq = 0;
    log_truncate(p, 0);
    return STORE_OK;
}

int store_pg_commit_batch(store *s, char *err, size_t errlen)
{
    struct pg *p = (struct pg *)s;
    int rc = STORE_OK;
    if (!p->in_batch || p->base.batch_lost) {
        seterr(err, errlen, "store %s: the batch was lost with the connection", p->label);
        rc = STORE_ERROR;
    }
    int64_t deadline = store_pg_deadline(p);
    for (unsigned attempt = 0; rc == STORE_OK; attempt++) {
        rc = pg_commit(p, 1, deadline, err, errlen);
        if (rc != ENG_LOST)
            break;
        /* Certainly not committed: commit the rebuilt batch instead. */
        rc = attempt < 20 ? rebuild_batch(p, deadline, err, errlen) : STORE_ERROR;
    }
    end_batch(p);
    return rc;
}

int store_pg_rollback(store *s, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    end_batch((struct pg *)s);
    return STORE_OK;
}

