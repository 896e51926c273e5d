/*
 * The PostgreSQL driver's queue items: create, read, list, count, cancel, remove, and their
 * events. Same SQL shapes, checks and messages as store_sqlite.c. What concurrency adds:
 * the dependencies of a new item are locked in share mode while it is created, so a
 * dependency cannot fail or be cancelled unseen (its cascade would miss the new item);
 * the machine of a new item is locked in key-share mode, so it cannot be removed
 * meanwhile; a cancelled or removed item is locked first.
 */
#include "store_pg.h"

#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared pieces --------------------------------------------------------------------------- */

json_t *store_pg_item_row(const PGresult *r, int i, int first, int64_t now, int64_t stale_ms,
                          int with_token)
{
    int k = first;
    struct store_item_cols c = {
        .task_id = store_pg_text(r, i, k + 0),
        .status = store_pg_text(r, i, k + 1),
        .function = store_pg_text(r, i, k + 2),
        .team = store_pg_text(r, i, k + 3),
        .machine = store_pg_text(r, i, k + 4),
        .bridge = store_pg_text(r, i, k + 5),
        .priority = (int)store_pg_i64(r, i, k + 6),
        .vault_json = store_pg_text(r, i, k + 7),
        .response_json = store_pg_text(r, i, k + 8),
        .created_at = store_pg_i64(r, i, k + 9),
        .updated_at = store_pg_i64(r, i, k + 10),
        .run_after = store_pg_i64(r, i, k + 11),
        .assigned_at = store_pg_i64(r, i, k + 12),
        .started_at = store_pg_i64(r, i, k + 13),
        .finished_at = store_pg_i64(r, i, k + 14),
        .retry_count = (int)store_pg_i64(r, i, k + 15),
        .last_retry_at = store_pg_i64(r, i, k + 16),
        .last_failure_reason = store_pg_text(r, i, k + 17),
        .lease_owner = store_pg_text(r, i, k + 18),
        .claim_token = store_pg_text(r, i, k + 19),
        .lease_expires_at = store_pg_i64(r, i, k + 20),
        .progress_percent = PQgetisnull(r, i, k + 21) ? -1 : (int)store_pg_i64(r, i, k + 21),
        .progress_message = store_pg_text(r, i, k + 22),
        .parent_task_id = store_pg_text(r, i, k + 23),
        .link_kind = store_pg_text(r, i, k + 24),
        .schedule_name = store_pg_text(r, i, k + 25),
        .schedule_fire_at = store_pg_i64(r, i, k + 26),
        .idempotent = (int)store_pg_i64(r, i, k + 27),
        .after_csv = store_pg_text(r, i, k + 28),
        .deps_ready_at = store_pg_i64(r, i, k + 29),
    };
    return store_item_row(&c, now, stale_ms, with_token);
}

void store_pg_item_rows(const PGresult *r, int64_t now, int64_t stale_ms, int with_token,
                        json_t **items)
{
    json_t *rows = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(rows, store_pg_item_row(r, i, 0, now, stale_ms, with_token));
    json_decref(*items);
    *items = rows;
}

int store_pg_read_item(struct pg *p, int64_t seq, int64_t now, int with_token, json_t **row,
                       char *err, size_t errlen)
{
    PGresult *r;
    int rc = store_pg_q(p, &r, err, errlen,
                        "SELECT " PG_ITEM_COLS " FROM queue_items q WHERE q.seq = $1", "I", seq);
    if (rc != STORE_OK)
        return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        seterr(err, errlen, "queue item vanished while it was read");
        return STORE_NOT_FOUND;
    }
    json_decref(*row);
    *row = store_pg_item_row(r, 0, 0, now, PG_STALE_DEFAULT_MS, with_token);
    PQclear(r);
    return STORE_OK;
}

static void ref_from(const PGresult *r, int i, struct pg_item_ref *ref)
{
    ref->seq = store_pg_i64(r, i, 0);
    snprintf(ref->task_id, sizeof(ref->task_id), "%s", store_pg_text(r, i, 1));
    snprintf(ref->status, sizeof(ref->status), "%s", store_pg_text(r, i, 2));
    ref->retry_count = (int)store_pg_i64(r, i, 3);
    snprintf(ref->bridge, sizeof(ref->bridge), "%s", store_pg_text(r, i, 4));
}

int store_pg_resolve(struct pg *p, const char *id, const char *what, const char *lock,
                     struct pg_item_ref *ref, char *err, size_t errlen)
{
    char sql[256];
    PGresult *r;
    if (strlen(id) == 36)
        snprintf(sql, sizeof(sql),
                 "SELECT seq, task_id, status, retry_count, bridge_name FROM queue_items"
                 " WHERE task_id = $1%s",
                 lock ? lock : "");
    else
        snprintf(sql, sizeof(sql),
                 "SELECT seq, task_id, status, retry_count, bridge_name FROM queue_items"
                 " WHERE task_id >= $1 AND task_id < $1 || '~' ORDER BY task_id LIMIT 2%s",
                 lock ? lock : "");
    int rc = store_pg_q(p, &r, err, errlen, sql, "t", id);
    if (rc != STORE_OK)
        return rc;
    int n = PQntuples(r);
    if (n == 0) {
        seterr(err, errlen, "%s%sno queue item with task id '%s'", what ? what : "",
               what ? ": " : "", id);
        rc = STORE_NOT_FOUND;
    } else if (n > 1) {
        seterr(err, errlen,
               "%s%stask id prefix '%s' matches several items (%s, %s …); give more "
               "characters",
               what ? what : "", what ? ": " : "", id, store_pg_text(r, 0, 1),
               store_pg_text(r, 1, 1));
        rc = STORE_AMBIGUOUS;
    } else {
        ref_from(r, 0, ref);
    }
    PQclear(r);
    return rc;
}

int store_pg_event(struct pg *p, int64_t seq, const char *action, const char *details,
                   int details_is_json, int64_t at, char *err, size_t errlen)
{
    return store_pg_w(p, NULL, err, errlen,
                      "INSERT INTO queue_events (task_seq, action, details, details_is_json, at)"
                      " VALUES ($1, $2, $3, $4, $5)",
                      "IttiI", seq, action, details, details_is_json, at);
}

struct dep_work {
    int64_t seq;
    char task_id[37];
    const char *why; /* static: "FAILED", "CANCELLED", "was removed" */
};

/* Collects the PENDING items that depend on seq, locked. */
static int pending_dependents(struct pg *p, int64_t seq, struct dep_work **list, size_t *n,
                              size_t *cap, char *err, size_t errlen)
{
    PGresult *r;
    int rc = store_pg_q(p, &r, err, errlen,
                        "SELECT t.seq, t.task_id FROM queue_deps d JOIN queue_items t"
                        " ON t.seq = d.task_seq WHERE d.dep_seq = $1"
                        " AND t.status = 'PENDING' ORDER BY t.seq FOR NO KEY UPDATE OF t",
                        "I", seq);
    if (rc != STORE_OK)
        return rc;
    for (int i = 0; i < PQntuples(r); i++) {
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *list = realloc(*list, *cap * sizeof(**list));
            if (*list == NULL)
                abort();
        }
        (*list)[*n].seq = store_pg_i64(r, i, 0);
        snprintf((*list)[*n].task_id, 37, "%s", store_pg_text(r, i, 1));
        (*list)[*n].why = "CANCELLED";
        (*n)++;
    }
    PQclear(r);
    return STORE_OK;
}

int store_pg_cancel_dependents(struct pg *p, int64_t seq, const char *task_id, const char *why,
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
        rc = pending_dependents(p, work[i].seq, &work, &n, &cap, err, errlen);
        for (size_t j = first; rc == STORE_OK && j < n; j++) {
            long rows = 0;
            rc = store_pg_w(p, &rows, err, errlen,
                            "UPDATE queue_items SET status = 'CANCELLED', finished_at = $2,"
                            " updated_at = $2, last_failure_reason = $3 WHERE seq = $1"
                            " AND status = 'PENDING'",
                            "IIt", work[j].seq, now, reason);
            if (rc == STORE_OK && rows > 0)
                rc = store_pg_event(p, work[j].seq, "CANCELLED", reason, 0, now, err, errlen);
        }
    }
    free(work);
    return rc;
}

/* ---- create ---------------------------------------------------------------------------------- */

/* Checks that team, machine (of that team) and bridge exist, and keeps the machine from
 * being removed until the transaction ends. */
static int check_item_refs(struct pg *p, const struct store_item_spec *sp, char *err, size_t errlen)
{
    int rc = store_pg_need(p, STORE_TEAM, NULL, sp->team, err, errlen);
    if (rc != STORE_OK)
        return rc;
    PGresult *r;
    rc = store_pg_q(p, &r, err, errlen, "SELECT 1 FROM machines WHERE name = $1 FOR KEY SHARE", "t",
                    sp->machine);
    PQclear(r);
    json_t *machine = NULL;
    if (rc == STORE_OK)
        rc = store_pg_read_resource(p, STORE_MACHINE, sp->team, sp->machine, &machine, err, errlen);
    json_decref(machine);
    if (rc == STORE_OK)
        rc = store_pg_need(p, STORE_BRIDGE, NULL, sp->bridge, err, errlen);
    return rc;
}

static int same_refs(const struct store_item_spec *a, const struct store_item_spec *b)
{
    return strcmp(a->team, b->team) == 0 && strcmp(a->machine, b->machine) == 0 &&
           strcmp(a->bridge, b->bridge) == 0;
}

/* Resolves (and share-locks) the dependencies of a new item into seqs; a dependency that
 * can never complete is refused, since the new item could then never run. */
static int resolve_after(struct pg *p, const struct store_item_spec *sp, int64_t *seqs, char *err,
                         size_t errlen)
{
    for (size_t i = 0; i < sp->n_after; i++) {
        struct pg_item_ref r;
        int rc = store_pg_resolve(p, sp->after[i], "dependency", " FOR SHARE", &r, err, errlen);
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

static int check_schedule_fire(struct pg *p, const struct store_item_spec *sp, char *err,
                               size_t errlen)
{
    if (sp->schedule_name == NULL || sp->schedule_fire_ms == 0)
        return STORE_OK;
    PGresult *r;
    int rc = store_pg_q(p, &r, err, errlen,
                        "SELECT task_id FROM queue_items WHERE team_name = $1"
                        " AND schedule_name = $2 AND schedule_fire_at = $3",
                        "ttI", sp->team, sp->schedule_name, sp->schedule_fire_ms);
    if (rc == STORE_OK && PQntuples(r) > 0) {
        char when[32];
        iso8601_ms(sp->schedule_fire_ms, when);
        seterr(err, errlen, "schedule '%s' already fired at %s (task %s)", sp->schedule_name, when,
               store_pg_text(r, 0, 0));
        rc = STORE_CONFLICT;
    }
    PQclear(r);
    return rc;
}

static int insert_item(struct pg *p, const struct store_item_spec *sp, int64_t seq, char id[37],
                       char *err, size_t errlen)
{
    int64_t *dep_seqs = calloc(sp->n_after + 1, sizeof(int64_t));
    struct pg_item_ref parent;
    long rows = 0;
    if (dep_seqs == NULL)
        abort();
    int rc = resolve_after(p, sp, dep_seqs, err, errlen);
    if (rc == STORE_OK && sp->parent_task_id != NULL)
        rc = store_pg_resolve(p, sp->parent_task_id, "parent task", NULL, &parent, err, errlen);
    if (rc == STORE_OK)
        rc = check_schedule_fire(p, sp, err, errlen);
    if (rc != STORE_OK)
        goto out;
    uuid_v4(id);
    /* A schedule's fire inserted meanwhile by another host is the unique index's conflict:
     * nothing is inserted, and it is reported like the check above. */
    rc = store_pg_w(p, &rows, err, errlen,
                    "INSERT INTO queue_items (seq, task_id, team_name, machine_name, bridge_name,"
                    " function, priority, status, vault, created_at, updated_at, run_after,"
                    " parent_task_id, link_kind, schedule_name, schedule_fire_at, idempotent)"
                    " VALUES ($15, $1, $2, $3, $4, $5, $6, 'PENDING', coalesce($7, '{}'), $8, $8,"
                    " $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING",
                    "tttttijIIttt"
                    "NiI",
                    id, sp->team, sp->machine, sp->bridge, sp->function, sp->priority, sp->vault,
                    sp->now_ms, sp->run_after_ms, sp->parent_task_id ? parent.task_id : NULL,
                    sp->link_kind, sp->schedule_name, sp->schedule_fire_ms, sp->idempotent ? 1 : 0,
                    seq);
    if (rc == STORE_OK && rows == 0) {
        char when[32];
        iso8601_ms(sp->schedule_fire_ms, when);
        seterr(err, errlen, "schedule '%s' already fired at %s",
               sp->schedule_name ? sp->schedule_name : "?", when);
        rc = STORE_CONFLICT;
    }
    for (size_t i = 0; rc == STORE_OK && i < sp->n_after; i++)
        rc = store_pg_w(p, NULL, err, errlen,
                        "INSERT INTO queue_deps (task_seq, dep_seq) VALUES ($1, $2)"
                        " ON CONFLICT DO NOTHING",
                        "II", seq, dep_seqs[i]);
    if (rc == STORE_OK) {
        char details[200];
        snprintf(details, sizeof(details), "%s queued with priority %d (%s)", sp->function,
                 sp->priority, store_priority_label(sp->priority));
        rc = store_pg_event(p, seq, "CREATED", details, 0, sp->now_ms, err, errlen);
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

/* Takes n values of the item sequence in one round trip. */
static int next_seqs(struct pg *p, size_t n, int64_t *seqs, char *err, size_t errlen)
{
    PGresult *r;
    int rc =
        store_pg_q(p, &r, err, errlen,
                   "SELECT nextval('queue_item_seq') FROM generate_series(1, $1)", "I", (int64_t)n);
    if (rc == STORE_OK && (size_t)PQntuples(r) != n) {
        seterr(err, errlen, "store %s: the item sequence gave too few values", p->label);
        rc = STORE_ERROR;
    }
    for (size_t i = 0; rc == STORE_OK && i < n; i++)
        seqs[i] = store_pg_i64(r, (int)i, 0);
    PQclear(r);
    return rc;
}

/* An item with nothing but the plain columns: it can join a bulk insert. */
static int is_plain(const struct store_item_spec *sp)
{
    return sp->n_after == 0 && sp->parent_task_id == NULL && sp->link_kind == NULL &&
           sp->schedule_name == NULL;
}

/* Array literals of plain items gathered for one bulk insert. */
struct bulk {
    struct pg_buf col[12];
    size_t n;
};

enum {
    B_SEQ,
    B_ID,
    B_TEAM,
    B_MACHINE,
    B_BRIDGE,
    B_FUNCTION,
    B_PRIORITY,
    B_VAULT,
    B_CREATED,
    B_RUN_AFTER,
    B_IDEMPOTENT,
    B_DETAILS
};

static void bulk_add(struct bulk *b, const struct store_item_spec *sp, int64_t seq, const char *id)
{
    char num[4][24], details[200];
    char *vault = sp->vault ? json_dumps(sp->vault, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (b->n == 0)
        for (int k = 0; k <= B_DETAILS; k++)
            store_pg_buf_add(&b->col[k], "{", 1);
    snprintf(num[0], sizeof(num[0]), "%lld", (long long)seq);
    snprintf(num[1], sizeof(num[1]), "%d", sp->priority);
    snprintf(num[2], sizeof(num[2]), "%lld", (long long)sp->now_ms);
    snprintf(num[3], sizeof(num[3]), "%lld", (long long)sp->run_after_ms);
    snprintf(details, sizeof(details), "%s queued with priority %d (%s)", sp->function,
             sp->priority, store_priority_label(sp->priority));
    const char *values[] = {num[0],
                            id,
                            sp->team,
                            sp->machine,
                            sp->bridge,
                            sp->function,
                            num[1],
                            vault ? vault : "{}",
                            num[2],
                            num[3],
                            sp->idempotent ? "1" : "0",
                            details};
    for (int k = 0; k <= B_DETAILS; k++)
        store_pg_buf_element(&b->col[k], values[k]);
    free(vault);
    b->n++;
}

/* Inserts the gathered plain items and their CREATED events in one statement. */
static int bulk_flush(struct pg *p, struct bulk *b, char *err, size_t errlen)
{
    if (b->n == 0)
        return STORE_OK;
    for (int k = 0; k <= B_DETAILS; k++)
        store_pg_buf_add(&b->col[k], "}", 1);
    long rows = 0;
    int rc = store_pg_w(
        p, &rows, err, errlen,
        "WITH i AS (INSERT INTO queue_items (seq, task_id, team_name, machine_name, bridge_name,"
        " function, priority, status, vault, created_at, updated_at, run_after, idempotent)"
        " SELECT s, t, tm, m, b, f, pr, 'PENDING', v, c, c, r, idem FROM unnest($1::bigint[],"
        " $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[], $8::text[],"
        " $9::bigint[], $10::bigint[], $11::int[]) AS x(s, t, tm, m, b, f, pr, v, c, r, idem)"
        " RETURNING seq)"
        " INSERT INTO queue_events (task_seq, action, details, details_is_json, at)"
        " SELECT y.s, 'CREATED', y.d, 0, y.c FROM unnest($1::bigint[], $12::text[],"
        " $9::bigint[]) AS y(s, d, c) JOIN i ON i.seq = y.s",
        "tttttttttttt", b->col[0].s, b->col[1].s, b->col[2].s, b->col[3].s, b->col[4].s,
        b->col[5].s, b->col[6].s, b->col[7].s, b->col[8].s, b->col[9].s, b->col[10].s,
        b->col[11].s);
    if (rc == STORE_OK && (size_t)rows != b->n) {
        seterr(err, errlen, "store %s: %ld of %zu items were written", p->label, rows, b->n);
        rc = STORE_ERROR;
    }
    for (int k = 0; k <= B_DETAILS; k++) {
        free(b->col[k].s);
        b->col[k] = (struct pg_buf){0};
    }
    b->n = 0;
    return rc;
}

/* Checks the references of spec i once per distinct (team, machine, bridge) of the call. */
static int check_refs_once(struct pg *p, const struct create_ctx *c, size_t i, size_t *checked,
                           size_t *n_checked, char *err, size_t errlen)
{
    for (size_t k = 0; k < *n_checked; k++)
        if (same_refs(&c->specs[checked[k]], &c->specs[i]))
            return STORE_OK;
    checked[(*n_checked)++] = i;
    return check_item_refs(p, &c->specs[i], err, errlen);
}

/*
 * Creates the items: references checked once per distinct triple, plain items inserted in
 * bulk (one statement for them and their events), the others one by one, after the plain
 * ones before them (an item may depend on one created earlier in the same call).
 */
static int create_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct create_ctx *c = ctx;
    int64_t *seqs = calloc(c->n ? c->n : 1, sizeof(int64_t));
    size_t *checked = calloc(c->n ? c->n : 1, sizeof(size_t)), n_checked = 0;
    struct bulk bulk = {0};
    if (seqs == NULL || checked == NULL)
        abort();
    p->op_undo = c->n > 1; /* item 30 may fail after items 0-29 were written */
    int rc = next_seqs(p, c->n, seqs, err, errlen);
    for (size_t i = 0; rc == STORE_OK && i < c->n; i++) {
        char msg[512] = "";
        const struct store_item_spec *sp = &c->specs[i];
        rc = check_refs_once(p, c, i, checked, &n_checked, msg, sizeof(msg));
        if (rc == STORE_OK && is_plain(sp)) {
            uuid_v4(c->ids[i]);
            bulk_add(&bulk, sp, seqs[i], c->ids[i]);
            if (bulk.n == 1000)
                rc = bulk_flush(p, &bulk, msg, sizeof(msg));
        } else if (rc == STORE_OK) {
            rc = bulk_flush(p, &bulk, msg, sizeof(msg));
            if (rc == STORE_OK)
                rc = insert_item(p, sp, seqs[i], c->ids[i], msg, sizeof(msg));
        }
        if (rc != STORE_OK && rc != PG_LOST && rc != PG_RETRY && c->n > 1)
            seterr(err, errlen, "item %zu: %s", i, msg);
        else if (rc != STORE_OK)
            seterr(err, errlen, "%s", msg);
    }
    if (rc == STORE_OK)
        rc = bulk_flush(p, &bulk, err, errlen);
    for (int k = 0; k <= B_DETAILS; k++)
        free(bulk.col[k].s);
    free(seqs);
    free(checked);
    return rc;
}

int store_pg_queue_create(store *s, const struct store_item_spec *specs, size_t n,
                          char (*task_ids)[37], char *err, size_t errlen)
{
    char(*ids)[37] = task_ids ? task_ids : calloc(n ? n : 1, 37);
    if (ids == NULL)
        abort();
    struct create_ctx c = {specs, n, ids};
    int rc = store_pg_run((struct pg *)s, 1, create_body, &c, err, errlen);
    if (ids != task_ids)
        free(ids);
    return rc;
}

/* ---- read, list, count ----------------------------------------------------------------------- */

/* The context of the single-item operations. */
struct item_ctx {
    const char *task_id, *bridge, *action, *details;
    json_t *details_json;
    int force;
    int64_t now;
    int64_t total; /* queue_count's answer */
    const struct store_queue_filter *filter;
    json_t *out;
    char wake[129]; /* a bridge to wake once the change is committed, or "" */
};

static int get_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct pg_item_ref r;
    int rc = store_pg_resolve(p, c->task_id, NULL, NULL, &r, err, errlen);
    return rc != STORE_OK ? rc : store_pg_read_item(p, r.seq, c->now, 0, &c->out, err, errlen);
}

/* Hands c->out to *out on success; frees it otherwise. */
static int take_out(struct item_ctx *c, json_t **out, int rc)
{
    if (rc != STORE_OK) {
        json_decref(c->out);
        c->out = NULL;
    }
    if (out)
        *out = c->out;
    else
        json_decref(c->out);
    return rc;
}

int store_pg_queue_get(store *s, const char *task_id, json_t **row, char *err, size_t errlen)
{
    struct item_ctx c = {.task_id = task_id, .now = now_ms()};
    return take_out(&c, row, store_pg_run((struct pg *)s, 0, get_body, &c, err, errlen));
}

/* A query built from a filter, with its parameters. */
struct list_query {
    FILE *sql;
    char *text;
    size_t len;
    const char **values;
    char *types;
    char (*nums)[24];
    int n;
};

static void lq_text(struct list_query *l, const char *sql_part, const char *value)
{
    l->n++;
    fprintf(l->sql, sql_part, l->n);
    l->values[l->n - 1] = value;
    l->types[l->n - 1] = 't';
}

static void lq_num(struct list_query *l, const char *sql_part, int64_t value)
{
    l->n++;
    fprintf(l->sql, sql_part, l->n);
    snprintf(l->nums[l->n - 1], 24, "%lld", (long long)value);
    l->values[l->n - 1] = l->nums[l->n - 1];
    l->types[l->n - 1] = 'I';
}

/* Appends " AND column IN ($a, $b, …)" for a list of texts. */
static void lq_in(struct list_query *l, const char *column, const char *const *values, size_t n)
{
    fprintf(l->sql, " AND %s IN (", column);
    for (size_t i = 0; i < n; i++)
        lq_text(l, i ? ", $%d" : "$%d", values[i]);
    fputs(")", l->sql);
}

/* Writes the query for a queue filter: its rows, newest first, up to the limit; or, with
 * count_only, how many items match at all. */
static void build_list_query(struct list_query *l, const struct store_queue_filter *f,
                             int count_only)
{
    int64_t stale_before = f->now_ms - (int64_t)f->stale_threshold_minutes * 60000;
    fputs(count_only ? "SELECT count(*) FROM queue_items q WHERE true"
                     : "SELECT " PG_ITEM_COLS " FROM queue_items q WHERE true",
          l->sql);
    if (f->n_teams)
        lq_in(l, "q.team_name", f->teams, f->n_teams);
    if (f->machine)
        lq_text(l, " AND q.machine_name = $%d", f->machine);
    if (f->bridge)
        lq_text(l, " AND q.bridge_name = $%d", f->bridge);
    if (f->n_statuses)
        lq_in(l, "q.status", f->statuses, f->n_statuses);
    if (f->priority)
        lq_num(l, " AND q.priority = $%d", f->priority);
    if (f->min_priority)
        lq_num(l, " AND q.priority >= $%d", f->min_priority);
    if (f->max_priority)
        lq_num(l, " AND q.priority <= $%d", f->max_priority);
    if (f->date_from_ms)
        lq_num(l, " AND q.created_at >= $%d", f->date_from_ms);
    if (f->date_to_ms)
        lq_num(l, " AND q.created_at <= $%d", f->date_to_ms);
    if (f->task_id && strlen(f->task_id) == 36) {
        lq_text(l, " AND q.task_id = $%d", f->task_id);
    } else if (f->task_id) {
        lq_text(l, " AND q.task_id >= $%d", f->task_id);
        lq_text(l, " AND q.task_id < $%d || '~'", f->task_id);
    }
    if (f->exclude_completed)
        fputs(" AND q.status <> 'COMPLETED'", l->sql);
    if (f->exclude_cancelled)
        fputs(" AND q.status <> 'CANCELLED'", l->sql);
    if (f->only_stale) {
        lq_num(l, " AND ((q.status IN ('ASSIGNED','PROCESSING') AND q.updated_at < $%d)",
               stale_before);
        lq_num(l, " OR (q.status = 'PENDING' AND greatest(q.created_at, q.run_after) < $%d",
               stale_before);
        /* Blocked by a dependency, or unblocked too recently, is not stale. */
        lq_num(l, " AND NOT EXISTS (SELECT 1 FROM queue_deps d JOIN queue_items p"
                  " ON p.seq = d.dep_seq WHERE d.task_seq = q.seq"
                  " AND (p.status <> 'COMPLETED' OR p.finished_at >= $%d))))",
               stale_before);
    }
    if (!count_only)
        lq_num(l, " ORDER BY q.created_at DESC, q.seq DESC LIMIT $%d", f->max_records);
}

/* Runs the filter's query (rows, or the count) into *r (the caller clears it). */
static int run_list(struct pg *p, const struct store_queue_filter *f, int count_only,
                    PGresult **r, char *err, size_t errlen)
{
    size_t max = f->n_teams + f->n_statuses + 16;
    struct list_query l = {0};
    *r = NULL;
    l.values = calloc(max, sizeof(*l.values));
    l.types = calloc(max + 1, 1);
    l.nums = calloc(max, sizeof(*l.nums));
    l.sql = open_memstream(&l.text, &l.len);
    if (l.values == NULL || l.types == NULL || l.nums == NULL || l.sql == NULL)
        abort();
    build_list_query(&l, f, count_only);
    fclose(l.sql);
    int rc = store_pg_qv(p, r, err, errlen, l.text, l.n, l.types, l.values);
    free(l.text);
    free(l.values);
    free(l.types);
    free(l.nums);
    return rc;
}

static int list_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    const struct store_queue_filter *f = c->filter;
    PGresult *r = NULL;
    int rc = run_list(p, f, 0, &r, err, errlen);
    if (rc == STORE_OK)
        store_pg_item_rows(r, f->now_ms, (int64_t)f->stale_threshold_minutes * 60000, 0, &c->out);
    PQclear(r);
    return rc;
}

static int count_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    PGresult *r = NULL;
    int rc = run_list(p, c->filter, 1, &r, err, errlen);
    if (rc == STORE_OK)
        c->total = PQntuples(r) == 1 ? store_pg_i64(r, 0, 0) : 0;
    PQclear(r);
    return rc;
}

int store_pg_queue_count(store *s, const struct store_queue_filter *filter, int64_t *count,
                         char *err, size_t errlen)
{
    struct item_ctx c = {.filter = filter};
    int rc = store_pg_run((struct pg *)s, 0, count_body, &c, err, errlen);
    *count = rc == STORE_OK ? c.total : 0;
    return rc;
}

int store_pg_queue_list(store *s, const struct store_queue_filter *filter, json_t **rows, char *err,
                        size_t errlen)
{
    struct item_ctx c = {.filter = filter};
    return take_out(&c, rows, store_pg_run((struct pg *)s, 0, list_body, &c, err, errlen));
}

static int counts_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    static const char *const names[] = {"PENDING",   "ASSIGNED", "PROCESSING", "CANCELLING",
                                        "COMPLETED", "FAILED",   "CANCELLED"};
    struct item_ctx *c = ctx;
    PGresult *r;
    int rc = c->bridge ? store_pg_q(p, &r, err, errlen,
                                    "SELECT status, count(*) FROM queue_items"
                                    " WHERE bridge_name = $1 GROUP BY status",
                                    "t", c->bridge)
                       : store_pg_q(p, &r, err, errlen,
                                    "SELECT status, count(*) FROM queue_items GROUP BY status", "");
    if (rc != STORE_OK)
        return rc;
    json_t *counts = json_object();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        json_object_set_new(counts, names[i], json_integer(0));
    json_int_t total = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        json_object_set_new(counts, store_pg_text(r, i, 0), json_integer(store_pg_i64(r, i, 1)));
        total += store_pg_i64(r, i, 1);
    }
    json_object_set_new(counts, "total", json_integer(total));
    PQclear(r);
    json_decref(c->out);
    c->out = counts;
    return STORE_OK;
}

int store_pg_queue_counts(store *s, const char *bridge, json_t **counts, char *err, size_t errlen)
{
    struct item_ctx c = {.bridge = bridge};
    return take_out(&c, counts, store_pg_run((struct pg *)s, 0, counts_body, &c, err, errlen));
}

/* ---- events ---------------------------------------------------------------------------------- */

static int event_append_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct pg_item_ref r;
    char *text =
        c->details_json ? json_dumps(c->details_json, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    const char *details = text ? text : c->details;
    int rc;
    long rows = 0;
    if (strlen(c->task_id) == 36) {
        /* A whole id (the host's case): found and appended in one statement. */
        rc = store_pg_w(p, &rows, err, errlen,
                        "INSERT INTO queue_events (task_seq, action, details, details_is_json, at)"
                        " SELECT seq, $2, $3, $4, $5 FROM queue_items WHERE task_id = $1",
                        "tttiI", c->task_id, c->action, details, text != NULL, c->now);
        if (rc == STORE_OK && rows == 0) {
            seterr(err, errlen, "no queue item with task id '%s'", c->task_id);
            rc = STORE_NOT_FOUND;
        }
    } else {
        rc = store_pg_resolve(p, c->task_id, NULL, NULL, &r, err, errlen);
        if (rc == STORE_OK)
            rc = store_pg_event(p, r.seq, c->action, details, text != NULL, c->now, err, errlen);
    }
    free(text);
    return rc;
}

int store_pg_event_append(store *s, const char *task_id, const char *action, const char *details,
                          json_t *details_json, int64_t at_ms, char *err, size_t errlen)
{
    struct item_ctx c = {.task_id = task_id,
                         .action = action,
                         .details = details,
                         .details_json = details_json,
                         .now = at_ms};
    return store_pg_run((struct pg *)s, 1, event_append_body, &c, err, errlen);
}

static int event_list_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct pg_item_ref ref;
    PGresult *r;
    int rc = store_pg_resolve(p, c->task_id, NULL, NULL, &ref, err, errlen);
    if (rc == STORE_OK)
        rc = store_pg_q(p, &r, err, errlen,
                        "SELECT action, details, details_is_json, at FROM queue_events"
                        " WHERE task_seq = $1 ORDER BY seq",
                        "I", ref.seq);
    if (rc != STORE_OK)
        return rc;
    json_t *events = json_array();
    int64_t prev = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        int64_t at = store_pg_i64(r, i, 3);
        json_array_append_new(events,
                              store_event_row(store_pg_text(r, i, 0), store_pg_text(r, i, 1),
                                              (int)store_pg_i64(r, i, 2), at, prev));
        prev = at;
    }
    PQclear(r);
    json_decref(c->out);
    c->out = events;
    return STORE_OK;
}

int store_pg_event_list(store *s, const char *task_id, json_t **events, char *err, size_t errlen)
{
    struct item_ctx c = {.task_id = task_id};
    return take_out(&c, events, store_pg_run((struct pg *)s, 0, event_list_body, &c, err, errlen));
}

/* ---- cancel and delete ----------------------------------------------------------------------- */

/* Ends an item CANCELLED at once (its claim token dies with it) and cancels dependents. */
static int cancel_now(struct pg *p, const struct pg_item_ref *r, const char *details, int64_t now,
                      char *err, size_t errlen)
{
    int rc = store_pg_w(p, NULL, err, errlen,
                        "UPDATE queue_items SET status = 'CANCELLED', finished_at = $2,"
                        " updated_at = $2, lease_expires_at = NULL, claim_token = NULL"
                        " WHERE seq = $1 AND status = $3",
                        "IIt", r->seq, now, r->status);
    if (rc == STORE_OK)
        rc = store_pg_event(p, r->seq, "CANCELLED", details, 0, now, err, errlen);
    if (rc == STORE_OK)
        rc = store_pg_cancel_dependents(p, r->seq, r->task_id, "CANCELLED", now, err, errlen);
    return rc;
}

static int cancel_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct pg_item_ref r;
    int rc = store_pg_resolve(p, c->task_id, NULL, " FOR NO KEY UPDATE", &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    const char *st = r.status;
    if (strcmp(st, "PENDING") == 0 || strcmp(st, "ASSIGNED") == 0) {
        rc = cancel_now(p, &r, "cancelled by request", c->now, err, errlen);
    } else if ((strcmp(st, "PROCESSING") == 0 || strcmp(st, "CANCELLING") == 0) && c->force) {
        rc = cancel_now(p, &r, "cancelled by request (forced, without waiting for the host)",
                        c->now, err, errlen);
    } else if (strcmp(st, "PROCESSING") == 0) {
        rc = store_pg_w(p, NULL, err, errlen,
                        "UPDATE queue_items SET status = 'CANCELLING', updated_at = $2"
                        " WHERE seq = $1 AND status = 'PROCESSING'",
                        "II", r.seq, c->now);
        if (rc == STORE_OK)
            rc = store_pg_event(p, r.seq, "CANCEL_REQUESTED",
                                "cancel requested; the host stops the running attempt", 0, c->now,
                                err, errlen);
    } else if (strcmp(st, "CANCELLING") != 0) {
        seterr(err, errlen,
               "task %s is %s; only PENDING, ASSIGNED or PROCESSING items can be cancelled",
               r.task_id, st);
        return STORE_CONFLICT;
    }
    snprintf(c->wake, sizeof(c->wake), "%s", r.bridge);
    return rc != STORE_OK ? rc : store_pg_read_item(p, r.seq, c->now, 0, &c->out, err, errlen);
}

int store_pg_queue_cancel(store *s, const char *task_id, int force, int64_t now, json_t **row,
                          char *err, size_t errlen)
{
    struct item_ctx c = {.task_id = task_id, .force = force, .now = now};
    int rc = store_pg_run((struct pg *)s, 1, cancel_body, &c, err, errlen);
    if (rc == STORE_OK && c.wake[0])
        store_notify_after_commit(s, c.wake);
    return take_out(&c, row, rc);
}

static int delete_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct pg_item_ref r;
    int rc = store_pg_resolve(p, c->task_id, NULL, " FOR UPDATE", &r, err, errlen);
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
        rc = store_pg_cancel_dependents(p, r.seq, r.task_id, "was removed", c->now, err, errlen);
    if (rc == STORE_OK)
        rc = store_pg_w(p, NULL, err, errlen,
                        "DELETE FROM queue_items WHERE seq = $1 AND status = $2", "It", r.seq,
                        r.status);
    return rc;
}

int store_pg_queue_delete(store *s, const char *task_id, int64_t now, char *err, size_t errlen)
{
    struct item_ctx c = {.task_id = task_id, .now = now};
    return store_pg_run((struct pg *)s, 1, delete_body, &c, err, errlen);
}
