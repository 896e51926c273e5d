/*
 * The SQLite driver, second half: queue items (create, read, list, cancel, delete, events),
 * claims, the held item's life (start, progress, heartbeat, finish, recovery) and wake-ups.
 * See store_sqlite.c for the connection, statements and transactions it builds on.
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

/* ---- queue items: shared pieces ------------------------------------------------------------- */

/* The columns of struct store_item_cols, in the order item_cols_at reads them. */
#define ITEM_COLS                                                                                  \
    "q.task_id, q.status, q.function, q.team_name, q.machine_name, q.bridge_name,"                 \
    " q.priority, q.vault, q.response_vault, q.created_at, q.updated_at, q.run_after,"             \
    " q.assigned_at, q.started_at, q.finished_at, q.retry_count, q.last_retry_at,"                 \
    " q.last_failure_reason, q.lease_owner, q.claim_token, q.lease_expires_at,"                    \
    " q.progress_percent, q.progress_message, q.parent_task_id, q.link_kind,"                      \
    " q.schedule_name, q.schedule_fire_at, q.idempotent,"                                          \
    " (SELECT group_concat(p.task_id) FROM queue_deps d JOIN queue_items p"                        \
    " ON p.seq = d.dep_seq WHERE d.task_seq = q.seq),"                                             \
    " (SELECT CASE WHEN sum(p.status <> 'COMPLETED') > 0 THEN -1"                                  \
    " ELSE coalesce(max(p.finished_at), 0) END FROM queue_deps d JOIN queue_items p"               \
    " ON p.seq = d.dep_seq WHERE d.task_seq = q.seq)"

#define ACTIVE_STATUSES "('ASSIGNED','PROCESSING','CANCELLING')"

static json_t *item_row_at(sqlite3_stmt *st, int64_t now, int64_t stale_ms, int with_token)
{
    struct store_item_cols c = {
        .task_id = col_text(st, 0),
        .status = col_text(st, 1),
        .function = col_text(st, 2),
        .team = col_text(st, 3),
        .machine = col_text(st, 4),
        .bridge = col_text(st, 5),
        .priority = sqlite3_column_int(st, 6),
        .vault_json = col_text(st, 7),
        .response_json = col_text(st, 8),
        .created_at = col_i64(st, 9),
        .updated_at = col_i64(st, 10),
        .run_after = col_i64(st, 11),
        .assigned_at = col_i64(st, 12),
        .started_at = col_i64(st, 13),
        .finished_at = col_i64(st, 14),
        .retry_count = sqlite3_column_int(st, 15),
        .last_retry_at = col_i64(st, 16),
        .last_failure_reason = col_text(st, 17),
        .lease_owner = col_text(st, 18),
        .claim_token = col_text(st, 19),
        .lease_expires_at = col_i64(st, 20),
        .progress_percent =
            sqlite3_column_type(st, 21) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 21),
        .progress_message = col_text(st, 22),
        .parent_task_id = col_text(st, 23),
        .link_kind = col_text(st, 24),
        .schedule_name = col_text(st, 25),
        .schedule_fire_at = col_i64(st, 26),
        .idempotent = sqlite3_column_int(st, 27),
        .after_csv = col_text(st, 28),
        .deps_ready_at = col_i64(st, 29),
    };
    return store_item_row(&c, now, stale_ms, with_token);
}

/* Reads the row of item seq into *row. */
static int sq_item_row(struct sq *q, int64_t seq, int64_t now, int with_token, json_t **row,
                       char *err, size_t errlen)
{
    int rc = STORE_OK;
    sqlite3_stmt *st = sq_query(
        q, &rc, err, errlen, "SELECT " ITEM_COLS " FROM queue_items q WHERE q.seq = ?1", "I", seq);
    int got = st ? sq_step(q, st, err, errlen) : rc;
    if (got == 0) {
        seterr(err, errlen, "queue item vanished while it was read");
        return STORE_NOT_FOUND;
    }
    if (got < 0)
        return got;
    *row = item_row_at(st, now, STALE_DEFAULT_MS, with_token);
    sqlite3_reset(st);
    return STORE_OK;
}

/* Rows of a host-facing query (with claim tokens) into *items. */
static int sq_item_rows(struct sq *q, sqlite3_stmt *st, int64_t now, int64_t stale_ms,
                        int with_token, json_t **items, char *err, size_t errlen)
{
    json_t *rows = json_array();
    int got;
    while ((got = sq_step(q, st, err, errlen)) == 1)
        json_array_append_new(rows, item_row_at(st, now, stale_ms, with_token));
    if (got < 0) {
        json_decref(rows);
        return got;
    }
    *items = rows;
    return STORE_OK;
}

struct item_ref {
    int64_t seq;
    char task_id[37];
    char status[16];
    int retry_count;
    char bridge[129];
};

static void ref_from(sqlite3_stmt *st, struct item_ref *r)
{
    r->seq = col_i64(st, 0);
    snprintf(r->task_id, sizeof(r->task_id), "%s", col_text(st, 1));
    snprintf(r->status, sizeof(r->status), "%s", col_text(st, 2));
    r->retry_count = sqlite3_column_int(st, 3);
    snprintf(r->bridge, sizeof(r->bridge), "%s", col_text(st, 4));
}

/*
 * Finds the item a task id or unique prefix names. what ("dependency" …) prefixes the
 * message when not NULL. NOT_FOUND, or AMBIGUOUS naming two of the matches.
 */
static int sq_resolve(struct sq *q, const char *id, const char *what, struct item_ref *r, char *err,
                      size_t errlen)
{
    int rc = STORE_OK;
    sqlite3_stmt *st =
        strlen(id) == 36
            ? sq_query(q, &rc, err, errlen,
                       "SELECT seq, task_id, status, retry_count, bridge_name FROM queue_items"
                       " WHERE task_id = ?1",
                       "t", id)
            : sq_query(q, &rc, err, errlen,
                       "SELECT seq, task_id, status, retry_count, bridge_name FROM queue_items"
                       " WHERE task_id >= ?1 AND task_id < ?1 || '~' ORDER BY task_id LIMIT 2",
                       "t", id);
    int got = st ? sq_step(q, st, err, errlen) : rc;
    if (got < 0)
        return got;
    if (got == 0) {
        seterr(err, errlen, "%s%sno queue item with task id '%s'", what ? what : "",
               what ? ": " : "", id);
        return STORE_NOT_FOUND;
    }
    ref_from(st, r);
    got = sq_step(q, st, err, errlen);
    if (got == 1) {
        seterr(err, errlen,
               "%s%stask id prefix '%s' matches several items (%s, %s …); give more "
               "characters",
               what ? what : "", what ? ": " : "", id, r->task_id, col_text(st, 1));
        sqlite3_reset(st);
        return STORE_AMBIGUOUS;
    }
    return got < 0 ? got : STORE_OK;
}

static int sq_event(struct sq *q, int64_t seq, const char *action, const char *details,
                    int details_is_json, int64_t at, char *err, size_t errlen)
{
    return sq_exec(q, err, errlen,
                   "INSERT INTO queue_events (task_seq, action, details, details_is_json, at)"
                   " VALUES (?1, ?2, ?3, ?4, ?5)",
                   "IttiI", seq, action, details, details_is_json, at);
}

struct dep_work {
    int64_t seq;
    char task_id[37];
    const char *why; /* static: "FAILED", "CANCELLED", "was removed" */
};

/* Collects the PENDING items that depend on seq. */
static int pending_dependents(struct sq *q, int64_t seq, struct dep_work **list, size_t *n,
                              size_t *cap, char *err, size_t errlen)
{
    int rc = STORE_OK;
    sqlite3_stmt *st = sq_query(q, &rc, err, errlen,
                                "SELECT t.seq, t.task_id FROM queue_deps d JOIN queue_items t"
                                " ON t.seq = d.task_seq WHERE d.dep_seq = ?1"
                                " AND t.status = 'PENDING' ORDER BY t.seq",
                                "I", seq);
    int got = 0;
    while (st != NULL && (got = sq_step(q, st, err, errlen)) == 1) {
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *list = realloc(*list, *cap * sizeof(**list));
            if (*list == NULL)
                abort();
        }
        (*list)[*n].seq = col_i64(st, 0);
        snprintf((*list)[*n].task_id, 37, "%s", col_text(st, 1));
        (*list)[*n].why = "CANCELLED";
        (*n)++;
    }
    return rc != STORE_OK ? rc : got;
}

/*
 * Cancels the PENDING dependents of an item that will never complete, transitively, each
 * with the reason "dependency <id> <why>" naming its own dependency.
 */
static int sq_cancel_dependents(struct sq *q, int64_t seq, const char *task_id, const char *why,
                                int64_t now, char *err, size_t errlen)
{
    size_t n = 1, cap = 16;
    struct dep_work *work = malloc(cap * sizeof(*work));
    if (work == NULL)
        abort();
    work[0].seq = seq;
    work[0].why = why;
    snprintf(work[0].task_id, sizeof(work[0].task_id), "%s", task_id);
    int rc = STORE_OK;
    /* Breadth first: each entry's dependents are appended, then cancelled. An item reached
     * twice (a diamond) is PENDING only the first time, so it is cancelled once. */
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        char reason[128];
        snprintf(reason, sizeof(reason), "dependency %s %s", work[i].task_id, work[i].why);
        size_t first = n;
        rc = pending_dependents(q, work[i].seq, &work, &n, &cap, err, errlen);
        for (size_t j = first; rc == STORE_OK && j < n; j++) {
            rc = sq_exec(q, err, errlen,
                         "UPDATE queue_items SET status = 'CANCELLED', finished_at = ?2,"
                         " updated_at = ?2, last_failure_reason = ?3 WHERE seq = ?1"
                         " AND status = 'PENDING'",
                         "IIt", work[j].seq, now, reason);
            if (rc == STORE_OK)
                rc = sq_event(q, work[j].seq, "CANCELLED", reason, 0, now, err, errlen);
        }
    }
    free(work);
    return rc;
}

/* ---- queue items: create, read, list -------------------------------------------------------- */

/* Checks that team, machine (of that team) and bridge exist. */
static int check_item_refs(struct sq *q, const struct store_item_spec *sp, char *err, size_t errlen)
{
    int rc = sq_need(q, STORE_TEAM, NULL, sp->team, err, errlen);
    if (rc != STORE_OK)
        return rc;
    json_t *machine = NULL;
    rc = sq_read_resource(q, STORE_MACHINE, sp->team, sp->machine, &machine, err, errlen);
    json_decref(machine);
    if (rc == STORE_OK)
        rc = sq_need(q, STORE_BRIDGE, NULL, sp->bridge, err, errlen);
    return rc;
}

static int same_refs(const struct store_item_spec *a, const struct store_item_spec *b)
{
    return strcmp(a->team, b->team) == 0 && strcmp(a->machine, b->machine) == 0 &&
           strcmp(a->bridge, b->bridge) == 0;
}

/* Resolves the dependencies of a new item into seqs; a dependency that can never complete
 * is refused, since the new item could then never run. */
static int resolve_after(struct sq *q, const struct store_item_spec *sp, int64_t *seqs, char *err,
                         size_t errlen)
{
    for (size_t i = 0; i < sp->n_after; i++) {
        struct item_ref r;
        int rc = sq_resolve(q, sp->after[i], "dependency", &r, err, errlen);
        if (rc != STORE_OK)
            return rc;
        if (strcmp(r.status, "FAILED") == 0 || strcmp(r.status, "CANCELLED") == 0) {
            seterr(err, errlen, "dependency %s is %s, so an item after it could never run",
                   r.task_id, r.status);
            return STORE_CONFLICT;
        }
        seqs[i] = r.seq;
    }
    return STORE_OK;
}

static int check_schedule_fire(struct sq *q, const struct store_item_spec *sp, char *err,
                               size_t errlen)
{
    if (sp->schedule_name == NULL || sp->schedule_fire_ms == 0)
        return STORE_OK;
    int rc = STORE_OK;
    sqlite3_stmt *st = sq_query(q, &rc, err, errlen,
                                "SELECT task_id FROM queue_items WHERE team_name = ?1"
                                " AND schedule_name = ?2 AND schedule_fire_at = ?3",
                                "ttI", sp->team, sp->schedule_name, sp->schedule_fire_ms);
    int got = st ? sq_step(q, st, err, errlen) : rc;
    if (got == 1) {
        char when[32];
        iso8601_ms(sp->schedule_fire_ms, when);
        seterr(err, errlen, "schedule '%s' already fired at %s (task %s)", sp->schedule_name, when,
               col_text(st, 0));
        sqlite3_reset(st);
        return STORE_CONFLICT;
    }
    return got;
}

static int insert_item(struct sq *q, const struct store_item_spec *sp, char id[37], char *err,
                       size_t errlen)
{
    int64_t *dep_seqs = calloc(sp->n_after + 1, sizeof(int64_t));
    struct item_ref parent;
    if (dep_seqs == NULL)
        abort();
    int rc = resolve_after(q, sp, dep_seqs, err, errlen);
    if (rc == STORE_OK && sp->parent_task_id != NULL)
        rc = sq_resolve(q, sp->parent_task_id, "parent task", &parent, err, errlen);
    if (rc == STORE_OK)
        rc = check_schedule_fire(q, sp, err, errlen);
    if (rc != STORE_OK)
        goto out;
    uuid_v4(id);
    rc = sq_exec(q, err, errlen,
                 "INSERT INTO queue_items (task_id, team_name, machine_name, bridge_name,"
                 " function, priority, status, vault, created_at, updated_at, run_after,"
                 " parent_task_id, link_kind, schedule_name, schedule_fire_at, idempotent)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'PENDING', coalesce(?7, '{}'), ?8, ?8, ?9,"
                 " ?10, ?11, ?12, ?13, ?14)",
                 "tttttijIIttt"
                 "Ni",
                 id, sp->team, sp->machine, sp->bridge, sp->function, sp->priority, sp->vault,
                 sp->now_ms, sp->run_after_ms, sp->parent_task_id ? parent.task_id : NULL,
                 sp->link_kind, sp->schedule_name, sp->schedule_fire_ms, sp->idempotent ? 1 : 0);
    int64_t seq = sqlite3_last_insert_rowid(q->db);
    for (size_t i = 0; rc == STORE_OK && i < sp->n_after; i++)
        rc = sq_exec(q, err, errlen,
                     "INSERT OR IGNORE INTO queue_deps (task_seq, dep_seq) VALUES (?1, ?2)", "II",
                     seq, dep_seqs[i]);
    if (rc == STORE_OK) {
        char details[200];
        snprintf(details, sizeof(details), "%s queued with priority %d (%s)", sp->function,
                 sp->priority, store_priority_label(sp->priority));
        rc = sq_event(q, seq, "CREATED", details, 0, sp->now_ms, err, errlen);
    }
out:
    free(dep_seqs);
    return rc;
}

struct create_ctx {
    const struct store_item_spec *specs;
    size_t n;
    char (*ids)[37];
};

static int create_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct create_ctx *c = ctx;
    int rc = STORE_OK;
    for (size_t i = 0; rc == STORE_OK && i < c->n; i++) {
        char msg[512] = "";
        const struct store_item_spec *sp = &c->specs[i];
        /* A batch usually repeats one team/machine/bridge: check each new triple once. */
        if (i == 0 || !same_refs(sp, &c->specs[i - 1]))
            rc = check_item_refs(q, sp, msg, sizeof(msg));
        if (rc == STORE_OK)
            rc = insert_item(q, sp, c->ids[i], msg, sizeof(msg));
        if (rc != STORE_OK && rc != SQ_BUSY) {
            if (c->n > 1)
                seterr(err, errlen, "item %zu: %s", i, msg);
            else
                seterr(err, errlen, "%s", msg);
        }
    }
    return rc;
}

int sq_queue_create(store *s, const struct store_item_spec *specs, size_t n, char (*task_ids)[37],
                    char *err, size_t errlen)
{
    char(*ids)[37] = task_ids ? task_ids : calloc(n, 37);
    if (ids == NULL)
        abort();
    struct create_ctx c = {specs, n, ids};
    int rc = sq_run((struct sq *)s, 1, create_body, &c, err, errlen);
    if (ids != task_ids)
        free(ids);
    return rc;
}

/* The context of the single-item operations below. */
struct item_ctx {
    const char *task_id, *token, *owner, *bridge, *action, *details;
    json_t *details_json;
    int force, percent, count;
    int64_t now, lease_ms;
    int64_t total; /* queue_count's answer */
    const struct store_outcome *outcome;
    const struct store_queue_filter *filter;
    json_t *out;
    char wake[4][129]; /* bridges to wake once the change is committed */
    int n_wake;
};

/* Remembers a bridge whose hosts should hear of the change (a few at most). */
static void ctx_wake(struct item_ctx *c, const char *bridge)
{
    for (int i = 0; i < c->n_wake; i++)
        if (strcmp(c->wake[i], bridge) == 0)
            return;
    if (c->n_wake < 4)
        snprintf(c->wake[c->n_wake++], sizeof(c->wake[0]), "%s", bridge);
}

/* After a successful operation, wakes the bridges it touched (after the outermost commit
 * when a batch is open). */
static int wake_after(store *s, struct item_ctx *c, int rc)
{
    for (int i = 0; rc == STORE_OK && i < c->n_wake; i++)
        store_notify_after_commit(s, c->wake[i]);
    return rc;
}

static int get_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct item_ref r;
    int rc = sq_resolve(q, c->task_id, NULL, &r, err, errlen);
    return rc != STORE_OK ? rc : sq_item_row(q, r.seq, c->now, 0, &c->out, err, errlen);
}

int sq_queue_get(store *s, const char *task_id, json_t **row, char *err, size_t errlen)
{
    struct item_ctx c = {.task_id = task_id, .now = now_ms()};
    int rc = sq_run((struct sq *)s, 0, get_body, &c, err, errlen);
    *row = c.out;
    return rc;
}

/* One bound value of a dynamically built query. */
struct param {
    int is_text;
    const char *text;
    int64_t num;
};

struct list_query {
    FILE *sql;
    char *text;
    size_t len;
    struct param *params;
    size_t n_params;
};

static void lq_text(struct list_query *l, const char *sql_part, const char *value)
{
    fputs(sql_part, l->sql);
    l->params[l->n_params++] = (struct param){1, value, 0};
}

static void lq_num(struct list_query *l, const char *sql_part, int64_t value)
{
    fputs(sql_part, l->sql);
    l->params[l->n_params++] = (struct param){0, NULL, value};
}

/* Appends " AND column IN (?, ?, …)" for a list of texts. */
static void lq_in(struct list_query *l, const char *column, const char *const *values, size_t n)
{
    fprintf(l->sql, " AND %s IN (", column);
    for (size_t i = 0; i < n; i++)
        lq_text(l, i ? ", ?" : "?", values[i]);
    fputs(")", l->sql);
}

/* Writes the query for a queue filter: its rows, newest first, up to the limit; or, with
 * count_only, how many items match at all. */
static void build_list_query(struct list_query *l, const struct store_queue_filter *f,
                             int count_only)
{
    int64_t stale_before = f->now_ms - (int64_t)f->stale_threshold_minutes * 60000;
    fputs(count_only ? "SELECT count(*) FROM queue_items q WHERE 1"
                     : "SELECT " ITEM_COLS " FROM queue_items q WHERE 1",
          l->sql);
    if (f->n_teams)
        lq_in(l, "q.team_name", f->teams, f->n_teams);
    if (f->machine)
        lq_text(l, " AND q.machine_name = ?", f->machine);
    if (f->bridge)
        lq_text(l, " AND q.bridge_name = ?", f->bridge);
    if (f->n_statuses)
        lq_in(l, "q.status", f->statuses, f->n_statuses);
    if (f->priority)
        lq_num(l, " AND q.priority = ?", f->priority);
    if (f->min_priority)
        lq_num(l, " AND q.priority >= ?", f->min_priority);
    if (f->max_priority)
        lq_num(l, " AND q.priority <= ?", f->max_priority);
    if (f->date_from_ms)
        lq_num(l, " AND q.created_at >= ?", f->date_from_ms);
    if (f->date_to_ms)
        lq_num(l, " AND q.created_at <= ?", f->date_to_ms);
    if (f->task_id && strlen(f->task_id) == 36)
        lq_text(l, " AND q.task_id = ?", f->task_id);
    else if (f->task_id) {
        lq_text(l, " AND q.task_id >= ?", f->task_id);
        lq_text(l, " AND q.task_id < ? || '~'", f->task_id);
    }
    if (f->exclude_completed)
        fputs(" AND q.status <> 'COMPLETED'", l->sql);
    if (f->exclude_cancelled)
        fputs(" AND q.status <> 'CANCELLED'", l->sql);
    if (f->only_stale) {
        lq_num(l, " AND ((q.status IN ('ASSIGNED','PROCESSING') AND q.updated_at < ?)",
               stale_before);
        lq_num(l, " OR (q.status = 'PENDING' AND max(q.created_at, q.run_after) < ?", stale_before);
        /* Blocked by a dependency, or unblocked too recently, is not stale. */
        lq_num(l, " AND NOT EXISTS (SELECT 1 FROM queue_deps d JOIN queue_items p"
                  " ON p.seq = d.dep_seq WHERE d.task_seq = q.seq"
                  " AND (p.status <> 'COMPLETED' OR p.finished_at >= ?))))",
               stale_before);
    }
    if (!count_only)
        lq_num(l, " ORDER BY q.created_at DESC, q.seq DESC LIMIT ?", f->max_records);
}

/*
 * Prepares the filter's query (rows, or the count) into *st with its values bound. Filters
 * vary too much to cache: the statement is prepared for this call; the caller finalizes it.
 */
static int prepare_list(struct sq *q, const struct store_queue_filter *filter, int count_only,
                        sqlite3_stmt **st, char *err, size_t errlen)
{
    struct list_query l = {0};
    l.params = calloc(filter->n_teams + filter->n_statuses + 16, sizeof(struct param));
    l.sql = open_memstream(&l.text, &l.len);
    if (l.params == NULL || l.sql == NULL)
        abort();
    build_list_query(&l, filter, count_only);
    fclose(l.sql);
    *st = NULL;
    int rc = sqlite3_prepare_v2(q->db, l.text, -1, st, NULL);
    for (size_t i = 0; rc == SQLITE_OK && i < l.n_params; i++)
        rc = l.params[i].is_text
                 ? sqlite3_bind_text(*st, (int)i + 1, l.params[i].text, -1, SQLITE_TRANSIENT)
                 : sqlite3_bind_int64(*st, (int)i + 1, l.params[i].num);
    free(l.text);
    free(l.params);
    return rc == SQLITE_OK ? STORE_OK : sq_fail(q, rc, err, errlen);
}

static int list_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    const struct store_queue_filter *filter = c->filter;
    sqlite3_stmt *st = NULL;
    int rc = prepare_list(q, filter, 0, &st, err, errlen);
    if (rc == STORE_OK)
        rc = sq_item_rows(q, st, filter->now_ms,
                          (int64_t)filter->stale_threshold_minutes * 60000, 0, &c->out, err,
                          errlen);
    sqlite3_finalize(st);
    return rc;
}

static int count_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    sqlite3_stmt *st = NULL;
    int rc = prepare_list(q, c->filter, 1, &st, err, errlen);
    if (rc == STORE_OK) {
        int got = sq_step(q, st, err, errlen);
        if (got == 1)
            c->total = col_i64(st, 0);
        else
            rc = got < 0 ? got : STORE_ERROR;
    }
    sqlite3_finalize(st);
    return rc;
}

int sq_queue_count(store *s, const struct store_queue_filter *filter, int64_t *count, char *err,
                   size_t errlen)
{
    struct item_ctx c = {.filter = filter};
    int rc = sq_run((struct sq *)s, 0, count_body, &c, err, errlen);
    *count = rc == STORE_OK ? c.total : 0;
    return rc;
}

int sq_queue_list(store *s, const struct store_queue_filter *filter, json_t **rows, char *err,
                  size_t errlen)
{
    struct item_ctx c = {.filter = filter};
    int rc = sq_run((struct sq *)s, 0, list_body, &c, err, errlen);
    *rows = c.out;
    return rc;
}

static int counts_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    static const char *const names[] = {"PENDING",   "ASSIGNED", "PROCESSING", "CANCELLING",
                                        "COMPLETED", "FAILED",   "CANCELLED"};
    struct item_ctx *c = ctx;
    int rc = STORE_OK;
    sqlite3_stmt *st =
        c->bridge ? sq_query(q, &rc, err, errlen,
                             "SELECT status, count(*) FROM queue_items WHERE bridge_name = ?1"
                             " GROUP BY status",
                             "t", c->bridge)
                  : sq_query(q, &rc, err, errlen,
                             "SELECT status, count(*) FROM queue_items GROUP BY status", "");
    json_t *counts = json_object();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        json_object_set_new(counts, names[i], json_integer(0));
    json_int_t total = 0;
    int got = 0;
    while (st != NULL && (got = sq_step(q, st, err, errlen)) == 1) {
        json_object_set_new(counts, col_text(st, 0), json_integer(col_i64(st, 1)));
        total += col_i64(st, 1);
    }
    json_object_set_new(counts, "total", json_integer(total));
    if (rc == STORE_OK && got < 0)
        rc = got;
    if (rc == STORE_OK)
        c->out = counts;
    else
        json_decref(counts);
    return rc;
}

int sq_queue_counts(store *s, const char *bridge, json_t **counts, char *err, size_t errlen)
{
    struct item_ctx c = {.bridge = bridge};
    int rc = sq_run((struct sq *)s, 0, counts_body, &c, err, errlen);
    *counts = c.out;
    return rc;
}

static int event_append_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct item_ref r;
    int rc = sq_resolve(q, c->task_id, NULL, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (c->details_json == NULL)
        return sq_event(q, r.seq, c->action, c->details, 0, c->now, err, errlen);
    char *text = json_dumps(c->details_json, JSON_COMPACT | JSON_ENCODE_ANY);
    rc = sq_event(q, r.seq, c->action, text, 1, c->now, err, errlen);
    free(text);
    return rc;
}

int sq_event_append(store *s, const char *task_id, const char *action, const char *details,
                    json_t *details_json, int64_t at_ms, char *err, size_t errlen)
{
    struct item_ctx c = {.task_id = task_id,
                         .action = action,
                         .details = details,
                         .details_json = details_json,
                         .now = at_ms};
    return sq_run((struct sq *)s, 1, event_append_body, &c, err, errlen);
}

static int event_list_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct item_ref r;
    int rc = sq_resolve(q, c->task_id, NULL, &r, err, errlen);
    sqlite3_stmt *st = rc == STORE_OK ? sq_query(q, &rc, err, errlen,
                                                 "SELECT action, details, details_is_json, at"
                                                 " FROM queue_events WHERE task_seq = ?1"
                                                 " ORDER BY seq",
                                                 "I", r.seq)
                                      : NULL;
    if (st == NULL)
        return rc;
    json_t *events = json_array();
    int64_t prev = 0;
    int got;
    while ((got = sq_step(q, st, err, errlen)) == 1) {
        int64_t at = col_i64(st, 3);
        json_array_append_new(events, store_event_row(col_text(st, 0), col_text(st, 1),
                                                      sqlite3_column_int(st, 2), at, prev));
        prev = at;
    }
    if (got < 0) {
        json_decref(events);
        return got;
    }
    c->out = events;
    return STORE_OK;
}

int sq_event_list(store *s, const char *task_id, json_t **events, char *err, size_t errlen)
{
    struct item_ctx c = {.task_id = task_id};
    int rc = sq_run((struct sq *)s, 0, event_list_body, &c, err, errlen);
    *events = c.out;
    return rc;
}

/* ---- queue items: cancel and delete --------------------------------------------------------- */

/* Ends an item CANCELLED at once (its claim token dies with it) and cancels dependents. */
static int cancel_now(struct sq *q, const struct item_ref *r, const char *details, int64_t now,
                      char *err, size_t errlen)
{
    int rc = sq_exec(q, err, errlen,
                     "UPDATE queue_items SET status = 'CANCELLED', finished_at = ?2,"
                     " updated_at = ?2, lease_expires_at = NULL, claim_token = NULL"
                     " WHERE seq = ?1",
                     "II", r->seq, now);
    if (rc == STORE_OK)
        rc = sq_event(q, r->seq, "CANCELLED", details, 0, now, err, errlen);
    if (rc == STORE_OK)
        rc = sq_cancel_dependents(q, r->seq, r->task_id, "CANCELLED", now, err, errlen);
    return rc;
}

static int cancel_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct item_ref r;
    int rc = sq_resolve(q, c->task_id, NULL, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    const char *st = r.status;
    if (strcmp(st, "PENDING") == 0 || strcmp(st, "ASSIGNED") == 0)
        rc = cancel_now(q, &r, "cancelled by request", c->now, err, errlen);
    else if ((strcmp(st, "PROCESSING") == 0 || strcmp(st, "CANCELLING") == 0) && c->force)
        rc = cancel_now(q, &r, "cancelled by request (forced, without waiting for the host)",
                        c->now, err, errlen);
    else if (strcmp(st, "PROCESSING") == 0) {
        rc = sq_exec(q, err, errlen,
                     "UPDATE queue_items SET status = 'CANCELLING', updated_at = ?2"
                     " WHERE seq = ?1",
                     "II", r.seq, c->now);
        if (rc == STORE_OK)
            rc = sq_event(q, r.seq, "CANCEL_REQUESTED",
                          "cancel requested; the host stops the running attempt", 0, c->now, err,
                          errlen);
    } else if (strcmp(st, "CANCELLING") != 0) {
        seterr(err, errlen,
               "task %s is %s; only PENDING, ASSIGNED or PROCESSING items can be cancelled",
               r.task_id, st);
        return STORE_CONFLICT;
    }
    ctx_wake(c, r.bridge);
    return rc != STORE_OK ? rc : sq_item_row(q, r.seq, c->now, 0, &c->out, err, errlen);
}

int sq_queue_cancel(store *s, const char *task_id, int force, int64_t now, json_t **row, char *err,
                    size_t errlen)
{
    struct item_ctx c = {.task_id = task_id, .force = force, .now = now};
    int rc = wake_after(s, &c, sq_run((struct sq *)s, 1, cancel_body, &c, err, errlen));
    if (row)
        *row = c.out;
    else
        json_decref(c.out);
    return rc;
}

static int delete_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct item_ref r;
    int rc = sq_resolve(q, c->task_id, NULL, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (strcmp(r.status, "PENDING") != 0 && strcmp(r.status, "CANCELLED") != 0) {
        seterr(err, errlen, "task %s is %s; only PENDING or CANCELLED items can be removed%s",
               r.task_id, r.status,
               strcmp(r.status, "COMPLETED") == 0 || strcmp(r.status, "FAILED") == 0
                   ? ""
                   : " (cancel it first with: ferry queue cancel ID)");
        return STORE_CONFLICT;
    }
    if (strcmp(r.status, "PENDING") == 0)
        rc = sq_cancel_dependents(q, r.seq, r.task_id, "was removed", c->now, err, errlen);
    if (rc == STORE_OK)
        rc = sq_exec(q, err, errlen, "DELETE FROM queue_items WHERE seq = ?1", "I", r.seq);
    return rc;
}

int sq_queue_delete(store *s, const char *task_id, int64_t now, char *err, size_t errlen)
{
    struct item_ctx c = {.task_id = task_id, .now = now};
    return sq_run((struct sq *)s, 1, delete_body, &c, err, errlen);
}

/* ---- execution: claim ------------------------------------------------------------------------ */

/* The "every dependency COMPLETED" test of a candidate q. */
#define DEPS_DONE                                                                                  \
    " AND NOT EXISTS (SELECT 1 FROM queue_deps d JOIN queue_items p ON p.seq = d.dep_seq"          \
    " WHERE d.task_seq = q.seq AND p.status <> 'COMPLETED')"

struct slot {
    char machine[129];
    int free, initial;
};

struct cand {
    int64_t seq, created;
    int priority;
};

struct claim {
    const char *bridge, *owner;
    int64_t now, lease_ms;
    int max_n;
    struct slot *slots;
    size_t n_slots, cap_slots;
    struct cand *picked;
    size_t n_picked, cap_picked;
    json_t *out; /* the claimed rows */
};

/* How many more items machine may start now: its concurrency less its active items on
 * every bridge, looked up once per claim. */
static int machine_slot(struct sq *q, struct claim *cl, const char *machine, struct slot **out,
                        char *err, size_t errlen)
{
    for (size_t i = 0; i < cl->n_slots; i++)
        if (strcmp(cl->slots[i].machine, machine) == 0) {
            *out = &cl->slots[i];
            return STORE_OK;
        }
    int64_t free_slots = 0;
    int rc = sq_scalar(q, &free_slots, err, errlen,
                       "SELECT coalesce((SELECT concurrency FROM machines WHERE name = ?1), 1)"
                       " - (SELECT count(*) FROM queue_items INDEXED BY qi_machine_active"
                       " WHERE machine_name = ?1 AND status IN " ACTIVE_STATUSES ")",
                       "t", machine);
    if (rc != STORE_OK)
        return rc;
    if (cl->n_slots == cl->cap_slots) {
        cl->cap_slots = cl->cap_slots ? cl->cap_slots * 2 : 16;
        cl->slots = realloc(cl->slots, cl->cap_slots * sizeof(*cl->slots));
        if (cl->slots == NULL)
            abort();
    }
    struct slot *s = &cl->slots[cl->n_slots++];
    snprintf(s->machine, sizeof(s->machine), "%s", machine);
    s->free = s->initial = free_slots > 0 ? (int)free_slots : 0;
    *out = s;
    return STORE_OK;
}

static void pick(struct claim *cl, sqlite3_stmt *st)
{
    if (cl->n_picked == cl->cap_picked) {
        cl->cap_picked = cl->cap_picked ? cl->cap_picked * 2 : 64;
        cl->picked = realloc(cl->picked, cl->cap_picked * sizeof(*cl->picked));
        if (cl->picked == NULL)
            abort();
    }
    cl->picked[cl->n_picked++] = (struct cand){
        .seq = col_i64(st, 0), .priority = sqlite3_column_int(st, 2), .created = col_i64(st, 3)};
}

/*
 * Fast path: walks the bridge's ready items in claim order, taking each whose machine has
 * a free slot, and reading at most budget rows. Sets *exhausted when the walk ended
 * because there were no more ready items (the result is then exact).
 */
static int claim_scan(struct sq *q, struct claim *cl, int budget, int *exhausted, char *err,
                      size_t errlen)
{
    int rc = STORE_OK;
    sqlite3_stmt *st = sq_query(q, &rc, err, errlen,
                                "SELECT q.seq, q.machine_name, q.priority, q.created_at"
                                " FROM queue_items q INDEXED BY qi_claim"
                                " WHERE q.status = 'PENDING'"
                                " AND q.bridge_name = ?1 AND q.run_after <= ?2" DEPS_DONE
                                " ORDER BY q.priority, q.created_at, q.seq LIMIT ?3",
                                "tIi", cl->bridge, cl->now, budget);
    int rows = 0, got = 0;
    while (st != NULL && (int)cl->n_picked < cl->max_n &&
           (got = sq_step(q, st, err, errlen)) == 1) {
        struct slot *slot;
        rows++;
        rc = machine_slot(q, cl, col_text(st, 1), &slot, err, errlen);
        if (rc != STORE_OK)
            break;
        if (slot->free > 0) {
            slot->free--;
            pick(cl, st);
        }
    }
    if (st != NULL)
        sqlite3_reset(st);
    *exhausted = rows < budget;
    return rc != STORE_OK ? rc : got < 0 ? got : STORE_OK;
}

static int cand_order(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    if (x->created != y->created)
        return x->created < y->created ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Takes up to slot->free of one machine's ready items, in its own order. */
static int claim_machine(struct sq *q, struct claim *cl, const struct slot *slot, char *err,
                         size_t errlen)
{
    int rc = STORE_OK;
    sqlite3_stmt *st = sq_query(q, &rc, err, errlen,
                                "SELECT q.seq, q.machine_name, q.priority, q.created_at"
                                " FROM queue_items q INDEXED BY qi_claim_machine"
                                " WHERE q.status = 'PENDING'"
                                " AND q.bridge_name = ?1 AND q.machine_name = ?2"
                                " AND q.run_after <= ?3" DEPS_DONE
                                " ORDER BY q.priority, q.created_at, q.seq LIMIT ?4",
                                "ttIi", cl->bridge, slot->machine, cl->now, slot->free);
    int got = 0;
    while (st != NULL && (got = sq_step(q, st, err, errlen)) == 1)
        pick(cl, st);
    return rc != STORE_OK ? rc : got;
}

/*
 * Slow path, for when machines at their limit hold so many ready items that the fast walk
 * would read most of the queue: visit each machine with PENDING items on the bridge (one
 * index seek each), take its first free-slot-many ready items, and keep the overall first
 * max_n. Taking items greedily in claim order gives exactly this set, since a machine's
 * slots are used up only by its own earlier items.
 */
static int claim_by_machine(struct sq *q, struct claim *cl, char *err, size_t errlen)
{
    char last[129] = "";
    int rc = STORE_OK;
    cl->n_picked = 0;
    for (size_t i = 0; i < cl->n_slots; i++)
        cl->slots[i].free = cl->slots[i].initial;
    for (;;) {
        sqlite3_stmt *st = sq_query(q, &rc, err, errlen,
                                    "SELECT min(machine_name) FROM queue_items"
                                    " INDEXED BY qi_claim_machine"
                                    " WHERE status = 'PENDING' AND bridge_name = ?1"
                                    " AND machine_name > ?2",
                                    "tt", cl->bridge, last);
        int got = st ? sq_step(q, st, err, errlen) : rc;
        if (got < 0)
            return got;
        if (got == 0 || col_text(st, 0) == NULL)
            break;
        snprintf(last, sizeof(last), "%s", col_text(st, 0));
        sqlite3_reset(st);
        struct slot *slot;
        rc = machine_slot(q, cl, last, &slot, err, errlen);
        if (rc == STORE_OK && slot->free > 0)
            rc = claim_machine(q, cl, slot, err, errlen);
        if (rc != STORE_OK)
            return rc;
    }
    if (cl->n_picked > 1)
        qsort(cl->picked, cl->n_picked, sizeof(*cl->picked), cand_order);
    if ((int)cl->n_picked > cl->max_n)
        cl->n_picked = (size_t)cl->max_n;
    return STORE_OK;
}

/* Marks one picked item ASSIGNED with a fresh token and appends its host row. */
static int assign(struct sq *q, struct claim *cl, int64_t seq, json_t *items, char *err,
                  size_t errlen)
{
    char token[37], details[400], until[32];
    json_t *row = NULL;
    uuid_v4(token);
    int rc = sq_exec(q, err, errlen,
                     "UPDATE queue_items SET status = 'ASSIGNED', lease_owner = ?2,"
                     " lease_expires_at = ?3, claim_token = ?4, assigned_at = ?5,"
                     " updated_at = ?5, started_at = NULL, progress_percent = NULL,"
                     " progress_message = NULL WHERE seq = ?1 AND status = 'PENDING'",
                     "ItItI", seq, cl->owner, cl->now + cl->lease_ms, token, cl->now);
    if (rc == STORE_OK)
        rc = sq_item_row(q, seq, cl->now, 1, &row, err, errlen);
    if (rc != STORE_OK)
        return rc;
    iso8601_ms(cl->now + cl->lease_ms, until);
    snprintf(details, sizeof(details), "claimed by %s for attempt %lld, lease until %s", cl->owner,
             (long long)json_integer_value(json_object_get(row, "attempt")), until);
    json_array_append_new(items, row);
    return sq_event(q, seq, "ASSIGNED", details, 0, cl->now, err, errlen);
}

static int claim_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct claim *cl = ctx;
    int exhausted = 0;
    cl->n_picked = cl->n_slots = 0;
    int rc = claim_scan(q, cl, cl->max_n * 4 + 64, &exhausted, err, errlen);
    if (rc == STORE_OK && (int)cl->n_picked < cl->max_n && !exhausted)
        rc = claim_by_machine(q, cl, err, errlen);
    json_t *items = json_array();
    for (size_t i = 0; rc == STORE_OK && i < cl->n_picked; i++)
        rc = assign(q, cl, cl->picked[i].seq, items, err, errlen);
    if (rc != STORE_OK) {
        json_decref(items);
        return rc;
    }
    cl->out = items;
    return STORE_OK;
}

int sq_claim(store *s, const char *bridge, const char *owner, int64_t lease_ms, int max_n,
             int64_t now, json_t **items, char *err, size_t errlen)
{
    struct claim cl = {
        .bridge = bridge, .owner = owner, .now = now, .lease_ms = lease_ms, .max_n = max_n};
    int rc = sq_run((struct sq *)s, 1, claim_body, &cl, err, errlen);
    free(cl.slots);
    free(cl.picked);
    *items = cl.out;
    return rc;
}

/* ---- execution: the held item's life ----------------------------------------------------------
 */

/*
 * Loads the item task_id if token still holds it: the token matches and the item is
 * ASSIGNED, PROCESSING or CANCELLING. CONFLICT otherwise, so a host that lost the item
 * (cancelled, recovered after its lease, finished) cannot change it.
 */
static int sq_held(struct sq *q, const char *task_id, const char *token, struct item_ref *r,
                   char *err, size_t errlen)
{
    int rc = STORE_OK;
    sqlite3_stmt *st = sq_query(q, &rc, err, errlen,
                                "SELECT seq, task_id, status, retry_count, bridge_name,"
                                " claim_token FROM queue_items WHERE task_id = ?1",
                                "t", task_id);
    int got = st ? sq_step(q, st, err, errlen) : rc;
    if (got < 0)
        return got;
    if (got == 0) {
        seterr(err, errlen, "no queue item with task id '%s'", task_id);
        return STORE_NOT_FOUND;
    }
    ref_from(st, r);
    const char *held = col_text(st, 5);
    int ok = held != NULL && strcmp(held, token) == 0 &&
             (strcmp(r->status, "ASSIGNED") == 0 || strcmp(r->status, "PROCESSING") == 0 ||
              strcmp(r->status, "CANCELLING") == 0);
    sqlite3_reset(st);
    if (!ok) {
        seterr(err, errlen, "task %s is no longer held by this claim (it is %s now)", task_id,
               r->status);
        return STORE_CONFLICT;
    }
    return STORE_OK;
}

static int start_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct item_ref r;
    char details[64];
    int rc = sq_held(q, c->task_id, c->token, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (strcmp(r.status, "ASSIGNED") != 0) {
        seterr(err, errlen, "task %s is %s, not ASSIGNED; it cannot start", r.task_id, r.status);
        return STORE_CONFLICT;
    }
    rc = sq_exec(q, err, errlen,
                 "UPDATE queue_items SET status = 'PROCESSING', started_at = ?2,"
                 " updated_at = ?2 WHERE seq = ?1",
                 "II", r.seq, c->now);
    snprintf(details, sizeof(details), "attempt %d started", r.retry_count + 1);
    return rc != STORE_OK ? rc : sq_event(q, r.seq, "PROCESSING", details, 0, c->now, err, errlen);
}

int sq_start(store *s, const char *task_id, const char *token, int64_t now, char *err,
             size_t errlen)
{
    struct item_ctx c = {.task_id = task_id, .token = token, .now = now};
    return sq_run((struct sq *)s, 1, start_body, &c, err, errlen);
}

static int progress_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct item_ref r;
    int rc = sq_held(q, c->task_id, c->token, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    rc = sq_exec(q, err, errlen,
                 "UPDATE queue_items SET progress_percent = ?2, progress_message = ?3,"
                 " updated_at = ?4 WHERE seq = ?1",
                 "IitI", r.seq, c->percent, c->details, c->now);
    char *details =
        c->details ? xasprintf("%d%%: %s", c->percent, c->details) : xasprintf("%d%%", c->percent);
    if (rc == STORE_OK)
        rc = sq_event(q, r.seq, "PROGRESS", details, 0, c->now, err, errlen);
    free(details);
    return rc;
}

int sq_progress(store *s, const char *task_id, const char *token, int percent, const char *message,
                int64_t now, char *err, size_t errlen)
{
    struct item_ctx c = {
        .task_id = task_id, .token = token, .percent = percent, .details = message, .now = now};
    return sq_run((struct sq *)s, 1, progress_body, &c, err, errlen);
}

static int heartbeat_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    int rc = sq_exec(q, err, errlen,
                     "UPDATE queue_items SET lease_expires_at = ?2, updated_at = ?3"
                     " WHERE lease_owner = ?1 AND status IN " ACTIVE_STATUSES,
                     "tII", c->owner, c->now + c->lease_ms, c->now);
    c->count = rc == STORE_OK ? sqlite3_changes(q->db) : 0;
    return rc;
}

int sq_heartbeat(store *s, const char *owner, int64_t lease_ms, int64_t now, int *renewed,
                 char *err, size_t errlen)
{
    struct item_ctx c = {.owner = owner, .lease_ms = lease_ms, .now = now};
    int rc = sq_run((struct sq *)s, 1, heartbeat_body, &c, err, errlen);
    if (renewed)
        *renewed = c.count;
    return rc;
}

/* COMPLETED, FAILED or CANCELLED: final, the token dies; FAILED and CANCELLED take the
 * dependents with them. COMPLETED clears an earlier attempt's failure reason and the
 * progress, which would otherwise describe an attempt that is over. */
static int finish_final(struct sq *q, const struct item_ref *r, const char *status,
                        const struct store_outcome *o, int64_t now, char *err, size_t errlen)
{
    int rc = sq_exec(q, err, errlen,
                     "UPDATE queue_items SET status = ?2,"
                     " response_vault = coalesce(?3, response_vault), finished_at = ?4,"
                     " updated_at = ?4, lease_expires_at = NULL, claim_token = NULL,"
                     " last_failure_reason = CASE WHEN ?2 = 'FAILED'"
                     " THEN coalesce(?5, last_failure_reason)"
                     " WHEN ?2 = 'COMPLETED' THEN NULL ELSE last_failure_reason END,"
                     " progress_percent ="
                     " CASE WHEN ?2 = 'COMPLETED' THEN NULL ELSE progress_percent END,"
                     " progress_message ="
                     " CASE WHEN ?2 = 'COMPLETED' THEN NULL ELSE progress_message END"
                     " WHERE seq = ?1",
                     "ItjIt", r->seq, status, o->response, now, o->reason);
    if (rc == STORE_OK)
        rc = sq_event(q, r->seq, status, o->reason, 0, now, err, errlen);
    if (rc == STORE_OK && strcmp(status, "COMPLETED") != 0)
        rc = sq_cancel_dependents(q, r->seq, r->task_id, status, now, err, errlen);
    return rc;
}

/* RETRY (counted) or RELEASE (not counted): back to PENDING, claimable at run_after. */
static int finish_requeue(struct sq *q, const struct item_ref *r, const struct store_outcome *o,
                          int64_t now, char *err, size_t errlen)
{
    int retry = o->kind == STORE_OUTCOME_RETRY;
    int64_t run_after = o->run_after_ms ? o->run_after_ms : now;
    char when[32], details[700];
    int rc = sq_exec(q, err, errlen,
                     "UPDATE queue_items SET status = 'PENDING', run_after = ?3,"
                     " retry_count = retry_count + ?4,"
                     " last_retry_at = CASE WHEN ?4 THEN ?2 ELSE last_retry_at END,"
                     " last_failure_reason = CASE WHEN ?4 THEN ?5 ELSE last_failure_reason END,"
                     " response_vault = coalesce(?6, response_vault), lease_expires_at = NULL,"
                     " claim_token = NULL, assigned_at = NULL, started_at = NULL,"
                     " updated_at = ?2 WHERE seq = ?1",
                     "IIIitj", r->seq, now, run_after, retry, o->reason, o->response);
    iso8601_ms(run_after, when);
    if (retry)
        snprintf(details, sizeof(details), "attempt %d failed: %.500s; next attempt at %s",
                 r->retry_count + 1, o->reason ? o->reason : "no reason given", when);
    else
        snprintf(details, sizeof(details), "returned to the queue: %.500s",
                 o->reason ? o->reason : "released by the host");
    if (rc == STORE_OK)
        rc = sq_event(q, r->seq, retry ? "RETRY_SCHEDULED" : "RELEASED", details, 0, now, err,
                      errlen);
    return rc;
}

/* Notes the bridges of the items waiting for seq, which may become ready now. */
static int wake_dependents(struct sq *q, struct item_ctx *c, int64_t seq, char *err, size_t errlen)
{
    int rc = STORE_OK;
    sqlite3_stmt *st = sq_query(q, &rc, err, errlen,
                                "SELECT DISTINCT t.bridge_name FROM queue_deps d"
                                " JOIN queue_items t ON t.seq = d.task_seq"
                                " WHERE d.dep_seq = ?1 AND t.status = 'PENDING' LIMIT 4",
                                "I", seq);
    int got = 0;
    while (st != NULL && (got = sq_step(q, st, err, errlen)) == 1)
        ctx_wake(c, col_text(st, 0));
    return rc != STORE_OK ? rc : got;
}

static int finish_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    static const char *const final_status[] = {
        [STORE_OUTCOME_COMPLETED] = "COMPLETED",
        [STORE_OUTCOME_FAILED] = "FAILED",
        [STORE_OUTCOME_CANCELLED] = "CANCELLED",
    };
    struct item_ctx *c = ctx;
    const struct store_outcome *o = c->outcome;
    struct item_ref r;
    int rc = sq_held(q, c->task_id, c->token, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (o->kind == STORE_OUTCOME_RETRY || o->kind == STORE_OUTCOME_RELEASE) {
        if (strcmp(r.status, "CANCELLING") != 0) {
            if (o->run_after_ms <= c->now)
                ctx_wake(c, r.bridge); /* another host of the bridge may take it now */
            return finish_requeue(q, &r, o, c->now, err, errlen);
        }
        /* A cancel was asked for: the attempt is over, so the item ends here. */
        struct store_outcome cancelled = *o;
        cancelled.kind = STORE_OUTCOME_CANCELLED;
        cancelled.reason = "cancelled while its attempt was ending";
        return finish_final(q, &r, "CANCELLED", &cancelled, c->now, err, errlen);
    }
    if (o->kind == STORE_OUTCOME_COMPLETED)
        rc = wake_dependents(q, c, r.seq, err, errlen);
    return rc != STORE_OK ? rc : finish_final(q, &r, final_status[o->kind], o, c->now, err, errlen);
}

int sq_finish(store *s, const char *task_id, const char *token, const struct store_outcome *outcome,
              int64_t now, char *err, size_t errlen)
{
    struct item_ctx c = {.task_id = task_id, .token = token, .outcome = outcome, .now = now};
    return wake_after(s, &c, sq_run((struct sq *)s, 1, finish_body, &c, err, errlen));
}

static int expired_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    int rc = STORE_OK;
    sqlite3_stmt *st =
        sq_query(q, &rc, err, errlen,
                 "SELECT " ITEM_COLS " FROM queue_items q"
                 " WHERE q.status IN " ACTIVE_STATUSES " AND q.lease_expires_at <= ?1"
                 " AND (?2 IS NULL OR q.bridge_name = ?2)"
                 " ORDER BY q.lease_expires_at, q.seq LIMIT 1000",
                 "It", c->now, c->bridge);
    return st ? sq_item_rows(q, st, c->now, STALE_DEFAULT_MS, 1, &c->out, err, errlen) : rc;
}

int sq_expired(store *s, const char *bridge, int64_t now, json_t **items, char *err, size_t errlen)
{
    struct item_ctx c = {.bridge = bridge, .now = now};
    int rc = sq_run((struct sq *)s, 0, expired_body, &c, err, errlen);
    *items = c.out;
    return rc;
}

static int cancelling_body(struct sq *q, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    int rc = STORE_OK;
    sqlite3_stmt *st = sq_query(q, &rc, err, errlen,
                                "SELECT " ITEM_COLS " FROM queue_items q"
                                " WHERE q.status = 'CANCELLING' AND q.lease_owner = ?1"
                                " ORDER BY q.seq",
                                "t", c->owner);
    return st ? sq_item_rows(q, st, c->now, STALE_DEFAULT_MS, 1, &c->out, err, errlen) : rc;
}

int sq_cancelling(store *s, const char *owner, json_t **items, char *err, size_t errlen)
{
    struct item_ctx c = {.owner = owner, .now = now_ms()};
    int rc = sq_run((struct sq *)s, 0, cancelling_body, &c, err, errlen);
    *items = c.out;
    return rc;
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

void sq_notify(store *s, const char *bridge)
{
    struct sq *q = (struct sq *)s;
    struct sockaddr_un addr;
    size_t blen = strlen(bridge);
    if (wake_addr(q, NULL, &addr) != 0)
        return;
    DIR *dir = opendir(addr.sun_path);
    if (dir == NULL)
        return; /* no host has ever listened */
    if (q->send_fd < 0)
        q->send_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct dirent *e;
    while (q->send_fd >= 0 && (e = readdir(dir)) != NULL) {
        if (strncmp(e->d_name, bridge, blen) != 0 || e->d_name[blen] != '@' ||
            wake_addr(q, e->d_name, &addr) != 0)
            continue;
        if (sendto(q->send_fd, "w", 1, MSG_DONTWAIT, (struct sockaddr *)&addr, sizeof(addr)) < 0 &&
            errno == ECONNREFUSED)
            unlink(addr.sun_path); /* its host is gone */
    }
    closedir(dir);
}

int sq_wait_fd(store *s, const char *bridge, char *err, size_t errlen)
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
    int made = mkdir(dir, 0755) == 0 || errno == EEXIST;
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
    return fd;
}

void sq_wait_drain(store *s)
{
    struct sq *q = (struct sq *)s;
    char buf[64];
    while (q->wake_fd >= 0 && recv(q->wake_fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
}
