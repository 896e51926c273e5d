/*
 * The PostgreSQL driver's execution protocol: claims, and the held item's life (start,
 * progress, heartbeat, finish, recovery lists).
 *
 * Claims and machines. Items of one machine run one at a time (or `concurrency` at a time)
 * in claim order, counted across every bridge. FOR UPDATE SKIP LOCKED on queue items alone
 * cannot enforce that: two hosts claiming at once each skip the other's locked row and take
 * the *next* item of the same machine, so the machine runs two items at once, out of order.
 * So the unit a claim locks is the machine: ferry_machine_slots() (see the migration in
 * store_pg.c) locks the machine's row FOR NO KEY UPDATE SKIP LOCKED and only then counts its
 * active items, in a fresh snapshot that sees every claim committed before the lock was
 * granted. A machine another host is claiming for is skipped, never waited for. Row locks
 * were chosen over advisory locks because they live on the row that also holds the
 * machine's concurrency (a vault update or a delete conflicts with a claim as it should),
 * need no hashing of names into a key space shared with other applications, and show up by
 * table in pg_locks.
 *
 * The picked items themselves are then locked FOR NO KEY UPDATE SKIP LOCKED and marked
 * ASSIGNED in one statement (the CTE shape of Oban and River): an item a CLI is cancelling
 * at that instant is left out rather than waited for, and never replaced by a later item of
 * the same machine.
 *
 * Every state change of a held item checks and carries the claim token in its WHERE
 * clause, so a host that lost its lease can never overwrite a newer outcome.
 */
#include "store_pg.h"

#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- claim ----------------------------------------------------------------------------------- */

/* The "every dependency COMPLETED" test of a candidate q. */
#define DEPS_DONE                                                                                  \
    " AND NOT EXISTS (SELECT 1 FROM queue_deps d JOIN queue_items p ON p.seq = d.dep_seq"          \
    " WHERE d.task_seq = q.seq AND p.status <> 'COMPLETED')"

struct slot {
    char machine[129];
    int free;
};

struct pick {
    int64_t seq;
    char token[37];
};

struct claim {
    const char *bridge, *owner;
    int64_t now, lease_ms;
    int max_n;
    struct slot *slots;
    size_t n_slots, cap_slots;
    struct pick *picked;
    size_t n_picked, cap_picked;
    json_t *out; /* the claimed rows */
};

/* The text[] literal of the machines found full so far. New string. */
static char *full_machines(const struct claim *cl)
{
    struct pg_buf t = {0};
    store_pg_buf_add(&t, "{", 1);
    for (size_t i = 0; i < cl->n_slots; i++)
        if (cl->slots[i].free == 0)
            store_pg_buf_element(&t, cl->slots[i].machine);
    store_pg_buf_add(&t, "}", 1);
    return t.s;
}

/* How many more items machine may start in this claim; looked up (and the machine locked)
 * once per claim. A machine another claim holds counts as full. */
static int machine_slot(struct pg *p, struct claim *cl, const char *machine, struct slot **out,
                        char *err, size_t errlen)
{
    for (size_t i = 0; i < cl->n_slots; i++)
        if (strcmp(cl->slots[i].machine, machine) == 0) {
            *out = &cl->slots[i];
            return STORE_OK;
        }
    int64_t free_slots = 0;
    int rc = store_pg_scalar(p, &free_slots, err, errlen, "SELECT ferry_machine_slots($1)", "t",
                             machine);
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
    s->free = free_slots > 0 ? (int)free_slots : 0;
    *out = s;
    return STORE_OK;
}

/*
 * Walks the bridge's ready items in claim order, a chunk at a time, taking each whose
 * machine has a free slot. Machines found full are left out of the next chunks, so a long
 * backlog of a busy machine is skipped inside the server rather than sent over. Taking
 * items greedily in claim order is what the model requires: a machine's slots are used up
 * only by its own earlier items.
 */
static int pick_items(struct pg *p, struct claim *cl, char *err, size_t errlen)
{
    int budget = cl->max_n * 4 + 64;
    int64_t key_priority = 0, key_created = 0, key_seq = 0;
    for (;;) {
        PGresult *r;
        char *full = full_machines(cl);
        int rc = store_pg_q(p, &r, err, errlen,
                            "SELECT q.seq, q.machine_name, q.priority, q.created_at"
                            " FROM queue_items q WHERE q.status = 'PENDING'"
                            " AND q.bridge_name = $1 AND q.run_after <= $2"
                            " AND (q.priority, q.created_at, q.seq) > ($4, $5, $6)"
                            " AND q.machine_name <> ALL ($7::text[])" DEPS_DONE
                            " ORDER BY q.priority, q.created_at, q.seq LIMIT $3",
                            "tIiIIIt", cl->bridge, cl->now, budget, key_priority, key_created,
                            key_seq, full);
        free(full);
        if (rc != STORE_OK)
            return rc;
        int rows = PQntuples(r);
        for (int i = 0; rc == STORE_OK && i < rows && (int)cl->n_picked < cl->max_n; i++) {
            struct slot *slot;
            rc = machine_slot(p, cl, store_pg_text(r, i, 1), &slot, err, errlen);
            if (rc != STORE_OK || slot->free == 0)
                continue;
            if (cl->n_picked == cl->cap_picked) {
                cl->cap_picked = cl->cap_picked ? cl->cap_picked * 2 : 64;
                cl->picked = realloc(cl->picked, cl->cap_picked * sizeof(*cl->picked));
                if (cl->picked == NULL)
                    abort();
            }
            cl->picked[cl->n_picked].seq = store_pg_i64(r, i, 0);
            uuid_v4(cl->picked[cl->n_picked].token);
            cl->n_picked++;
            slot->free--;
        }
        if (rows > 0) {
            key_seq = store_pg_i64(r, rows - 1, 0);
            key_priority = store_pg_i64(r, rows - 1, 2);
            key_created = store_pg_i64(r, rows - 1, 3);
        }
        PQclear(r);
        if (rc != STORE_OK || rows < budget || (int)cl->n_picked >= cl->max_n)
            return rc;
    }
}

/* Builds "{a,b,c}" from the picks: their seqs, or their tokens. New string. */
static char *picks_literal(const struct claim *cl, int tokens)
{
    struct pg_buf t = {0};
    char num[24];
    store_pg_buf_add(&t, "{", 1);
    for (size_t i = 0; i < cl->n_picked; i++) {
        if (i)
            store_pg_buf_add(&t, ",", 1);
        if (tokens) {
            store_pg_buf_add(&t, cl->picked[i].token, strlen(cl->picked[i].token));
        } else {
            int n = snprintf(num, sizeof(num), "%lld", (long long)cl->picked[i].seq);
            store_pg_buf_add(&t, num, (size_t)n);
        }
    }
    store_pg_buf_add(&t, "}", 1);
    return t.s;
}

/* Marks the picked items ASSIGNED (all but any that someone else holds locked at this
 * instant), writes their ASSIGNED events and builds their host rows in claim order: one
 * statement, one round trip. */
static int assign(struct pg *p, struct claim *cl, char *err, size_t errlen)
{
    char *seqs = picks_literal(cl, 0), *tokens = picks_literal(cl, 1), until[32];
    PGresult *r = NULL;
    iso8601_ms(cl->now + cl->lease_ms, until);
    int rc = store_pg_wq(
        p, &r, err, errlen,
        "WITH picked AS (SELECT q.seq FROM queue_items q"
        " WHERE q.seq = ANY ($1::bigint[]) AND q.status = 'PENDING'"
        " FOR NO KEY UPDATE SKIP LOCKED),"
        " tokens AS (SELECT * FROM unnest($1::bigint[], $2::text[]) AS t(seq, token)),"
        " u AS (UPDATE queue_items q SET status = 'ASSIGNED', lease_owner = $3,"
        " lease_expires_at = $4, claim_token = tokens.token, assigned_at = $5,"
        " updated_at = $5, started_at = NULL, progress_percent = NULL, progress_message = NULL"
        " FROM picked JOIN tokens ON tokens.seq = picked.seq"
        " WHERE q.seq = picked.seq RETURNING q.seq, " PG_ITEM_COLS "),"
        " e AS (INSERT INTO queue_events (task_seq, action, details, details_is_json, at)"
        " SELECT u.seq, 'ASSIGNED', 'claimed by ' || $3 || ' for attempt '"
        " || (u.retry_count + 1) || ', lease until ' || $6, 0, $5 FROM u)"
        " SELECT * FROM u",
        "tttIIt", seqs, tokens, cl->owner, cl->now + cl->lease_ms, cl->now, until);
    free(seqs);
    free(tokens);
    if (rc != STORE_OK)
        return rc;
    json_t *items = json_array();
    for (size_t i = 0; i < cl->n_picked; i++)
        for (int k = 0; k < PQntuples(r); k++)
            if (store_pg_i64(r, k, 0) == cl->picked[i].seq)
                json_array_append_new(items,
                                      store_pg_item_row(r, k, 1, cl->now, PG_STALE_DEFAULT_MS, 1));
    PQclear(r);
    json_decref(cl->out);
    cl->out = items;
    return STORE_OK;
}

static int claim_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct claim *cl = ctx;
    cl->n_picked = cl->n_slots = 0;
    int rc = pick_items(p, cl, err, errlen);
    if (rc == STORE_OK && cl->n_picked > 0)
        return assign(p, cl, err, errlen);
    if (rc == STORE_OK) {
        json_decref(cl->out);
        cl->out = json_array();
    }
    return rc;
}

int store_pg_claim(store *s, const char *bridge, const char *owner, int64_t lease_ms, int max_n,
                   int64_t now, json_t **items, char *err, size_t errlen)
{
    struct claim cl = {
        .bridge = bridge, .owner = owner, .now = now, .lease_ms = lease_ms, .max_n = max_n};
    int rc = store_pg_run((struct pg *)s, 1, claim_body, &cl, err, errlen);
    free(cl.slots);
    free(cl.picked);
    if (rc != STORE_OK) {
        json_decref(cl.out);
        cl.out = NULL;
    }
    *items = cl.out;
    return rc;
}

/* ---- the held item's life -------------------------------------------------------------------- */

/* The context of the operations below. */
struct held_ctx {
    const char *task_id, *token, *owner, *bridge, *message;
    int percent, count;
    int64_t now, lease_ms;
    const struct store_outcome *outcome;
    json_t *out;
    char wake[4][129]; /* bridges to wake once the change is committed */
    int n_wake;
};

static void ctx_wake(struct held_ctx *c, const char *bridge)
{
    for (int i = 0; i < c->n_wake; i++)
        if (strcmp(c->wake[i], bridge) == 0)
            return;
    if (c->n_wake < 4)
        snprintf(c->wake[c->n_wake++], sizeof(c->wake[0]), "%s", bridge);
}

static int wake_after(store *s, struct held_ctx *c, int rc)
{
    for (int i = 0; rc == STORE_OK && i < c->n_wake; i++)
        store_notify_after_commit(s, c->wake[i]);
    return rc;
}

/*
 * Locks and loads the item task_id if token still holds it: the token matches and the item
 * is ASSIGNED, PROCESSING or CANCELLING. CONFLICT otherwise, so a host that lost the item
 * (cancelled, recovered after its lease, finished) cannot change it. The lock orders this
 * change after a concurrent cancel or recovery, whose outcome it then sees.
 */
static int held(struct pg *p, const char *task_id, const char *token, struct pg_item_ref *ref,
                int *has_dependents, char *err, size_t errlen)
{
    PGresult *r;
    int rc = store_pg_q(p, &r, err, errlen,
                        "SELECT seq, task_id, status, retry_count, bridge_name, claim_token,"
                        " EXISTS (SELECT 1 FROM queue_deps d WHERE d.dep_seq = queue_items.seq)"
                        " FROM queue_items WHERE task_id = $1 FOR NO KEY UPDATE",
                        "t", task_id);
    if (rc != STORE_OK)
        return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        seterr(err, errlen, "no queue item with task id '%s'", task_id);
        return STORE_NOT_FOUND;
    }
    ref->seq = store_pg_i64(r, 0, 0);
    snprintf(ref->task_id, sizeof(ref->task_id), "%s", store_pg_text(r, 0, 1));
    snprintf(ref->status, sizeof(ref->status), "%s", store_pg_text(r, 0, 2));
    ref->retry_count = (int)store_pg_i64(r, 0, 3);
    snprintf(ref->bridge, sizeof(ref->bridge), "%s", store_pg_text(r, 0, 4));
    const char *holder = store_pg_text(r, 0, 5);
    if (has_dependents)
        *has_dependents = strcmp(store_pg_text(r, 0, 6), "t") == 0;
    int ok = holder != NULL && strcmp(holder, token) == 0 &&
             (strcmp(ref->status, "ASSIGNED") == 0 || strcmp(ref->status, "PROCESSING") == 0 ||
              strcmp(ref->status, "CANCELLING") == 0);
    PQclear(r);
    if (!ok) {
        seterr(err, errlen, "task %s is no longer held by this claim (it is %s now)", task_id,
               ref->status);
        return STORE_CONFLICT;
    }
    return STORE_OK;
}

/* The message of a held-item change that matched no row: held() says why. */
static int not_held(struct pg *p, const char *task_id, const char *token, const char *want,
                    char *err, size_t errlen)
{
    struct pg_item_ref r;
    int rc = held(p, task_id, token, &r, NULL, err, errlen);
    if (rc != STORE_OK)
        return rc;
    seterr(err, errlen, "task %s is %s, not %s; it cannot start", r.task_id, r.status, want);
    return STORE_CONFLICT;
}

/* ASSIGNED → PROCESSING and its event in one statement; the token and status are its guard. */
static int start_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct held_ctx *c = ctx;
    long rows = 0;
    int rc = store_pg_w(p, &rows, err, errlen,
                        "WITH u AS (UPDATE queue_items SET status = 'PROCESSING', started_at = $2,"
                        " updated_at = $2 WHERE task_id = $1 AND claim_token = $3"
                        " AND status = 'ASSIGNED' RETURNING seq, retry_count)"
                        " INSERT INTO queue_events (task_seq, action, details, details_is_json, at)"
                        " SELECT seq, 'PROCESSING', 'attempt ' || (retry_count + 1) || ' started',"
                        " 0, $2 FROM u",
                        "tIt", c->task_id, c->now, c->token);
    if (rc == STORE_OK && rows == 0)
        rc = not_held(p, c->task_id, c->token, "ASSIGNED", err, errlen);
    return rc;
}

int store_pg_start(store *s, const char *task_id, const char *token, int64_t now, char *err,
                   size_t errlen)
{
    struct held_ctx c = {.task_id = task_id, .token = token, .now = now};
    return store_pg_run((struct pg *)s, 1, start_body, &c, err, errlen);
}

static int progress_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct held_ctx *c = ctx;
    long rows = 0;
    char *details =
        c->message ? xasprintf("%d%%: %s", c->percent, c->message) : xasprintf("%d%%", c->percent);
    int rc = store_pg_w(p, &rows, err, errlen,
                        "WITH u AS (UPDATE queue_items SET progress_percent = $2,"
                        " progress_message = $3, updated_at = $4 WHERE task_id = $1"
                        " AND claim_token = $5 AND status IN " PG_ACTIVE " RETURNING seq)"
                        " INSERT INTO queue_events (task_seq, action, details, details_is_json, at)"
                        " SELECT seq, 'PROGRESS', $6, 0, $4 FROM u",
                        "titItt", c->task_id, c->percent, c->message, c->now, c->token, details);
    free(details);
    if (rc == STORE_OK && rows == 0) {
        struct pg_item_ref r;
        rc = held(p, c->task_id, c->token, &r, NULL, err, errlen);
        if (rc == STORE_OK) {
            seterr(err, errlen, "task %s changed while its progress was recorded", c->task_id);
            rc = STORE_CONFLICT;
        }
    }
    return rc;
}

int store_pg_progress(store *s, const char *task_id, const char *token, int percent,
                      const char *message, int64_t now, char *err, size_t errlen)
{
    struct held_ctx c = {
        .task_id = task_id, .token = token, .percent = percent, .message = message, .now = now};
    return store_pg_run((struct pg *)s, 1, progress_body, &c, err, errlen);
}

static int heartbeat_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct held_ctx *c = ctx;
    long rows = 0;
    int rc = store_pg_w(p, &rows, err, errlen,
                        "UPDATE queue_items SET lease_expires_at = $2, updated_at = $3"
                        " WHERE lease_owner = $1 AND status IN " PG_ACTIVE,
                        "tII", c->owner, c->now + c->lease_ms, c->now);
    c->count = rc == STORE_OK ? (int)rows : 0;
    return rc;
}

int store_pg_heartbeat(store *s, const char *owner, int64_t lease_ms, int64_t now, int *renewed,
                       char *err, size_t errlen)
{
    struct held_ctx c = {.owner = owner, .lease_ms = lease_ms, .now = now};
    int rc = store_pg_run((struct pg *)s, 1, heartbeat_body, &c, err, errlen);
    if (renewed)
        *renewed = rc == STORE_OK ? c.count : 0;
    return rc;
}

/* COMPLETED, FAILED or CANCELLED, and its event, in one statement: final, the token dies;
 * FAILED and CANCELLED take the dependents with them. COMPLETED clears an earlier attempt's
 * failure reason and the progress, which would otherwise describe an attempt that is over. */
static int finish_final(struct pg *p, const struct pg_item_ref *r, int has_dependents,
                        const char *token, const char *status, const struct store_outcome *o,
                        int64_t now, char *err, size_t errlen)
{
    int rc = store_pg_w(p, NULL, err, errlen,
                        "WITH u AS (UPDATE queue_items SET status = $2,"
                        " response_vault = coalesce($3, response_vault), finished_at = $4,"
                        " updated_at = $4, lease_expires_at = NULL, claim_token = NULL,"
                        " last_failure_reason = CASE WHEN $2 = 'FAILED'"
                        " THEN coalesce($5, last_failure_reason)"
                        " WHEN $2 = 'COMPLETED' THEN NULL ELSE last_failure_reason END,"
                        " progress_percent ="
                        " CASE WHEN $2 = 'COMPLETED' THEN NULL ELSE progress_percent END,"
                        " progress_message ="
                        " CASE WHEN $2 = 'COMPLETED' THEN NULL ELSE progress_message END"
                        " WHERE seq = $1 AND claim_token = $6 RETURNING seq)"
                        " INSERT INTO queue_events (task_seq, action, details, details_is_json, at)"
                        " SELECT seq, $2, $5, 0, $4 FROM u",
                        "ItjItt", r->seq, status, o->response, now, o->reason, token);
    if (rc == STORE_OK && has_dependents && strcmp(status, "COMPLETED") != 0)
        rc = store_pg_cancel_dependents(p, r->seq, r->task_id, status, now, err, errlen);
    return rc;
}

/* RETRY (counted) or RELEASE (not counted): back to PENDING, claimable at run_after. */
static int finish_requeue(struct pg *p, const struct pg_item_ref *r, const char *token,
                          const struct store_outcome *o, int64_t now, char *err, size_t errlen)
{
    int retry = o->kind == STORE_OUTCOME_RETRY;
    int64_t run_after = o->run_after_ms ? o->run_after_ms : now;
    char when[32], details[700];
    iso8601_ms(run_after, when);
    if (retry)
        snprintf(details, sizeof(details), "attempt %d failed: %.500s; next attempt at %s",
                 r->retry_count + 1, o->reason ? o->reason : "no reason given", when);
    else
        snprintf(details, sizeof(details), "returned to the queue: %.500s",
                 o->reason ? o->reason : "released by the host");
    return store_pg_w(p, NULL, err, errlen,
                      "WITH u AS (UPDATE queue_items SET status = 'PENDING', run_after = $3,"
                      " retry_count = retry_count + $4,"
                      " last_retry_at = CASE WHEN $4 <> 0 THEN $2 ELSE last_retry_at END,"
                      " last_failure_reason = CASE WHEN $4 <> 0 THEN $5"
                      " ELSE last_failure_reason END,"
                      " response_vault = coalesce($6, response_vault), lease_expires_at = NULL,"
                      " claim_token = NULL, assigned_at = NULL, started_at = NULL,"
                      " updated_at = $2 WHERE seq = $1 AND claim_token = $7 RETURNING seq)"
                      " INSERT INTO queue_events (task_seq, action, details, details_is_json, at)"
                      " SELECT seq, $8, $9, 0, $2 FROM u",
                      "IIIitjttt", r->seq, now, run_after, retry, o->reason, o->response, token,
                      retry ? "RETRY_SCHEDULED" : "RELEASED", details);
}

/* Notes the bridges of the items waiting for seq, which may become ready now. */
static int wake_dependents(struct pg *p, struct held_ctx *c, int64_t seq, char *err, size_t errlen)
{
    PGresult *r;
    int rc = store_pg_q(p, &r, err, errlen,
                        "SELECT DISTINCT t.bridge_name FROM queue_deps d"
                        " JOIN queue_items t ON t.seq = d.task_seq"
                        " WHERE d.dep_seq = $1 AND t.status = 'PENDING' LIMIT 4",
                        "I", seq);
    for (int i = 0; rc == STORE_OK && i < PQntuples(r); i++)
        ctx_wake(c, store_pg_text(r, i, 0));
    PQclear(r);
    return rc;
}

static int finish_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    static const char *const final_status[] = {
        [STORE_OUTCOME_COMPLETED] = "COMPLETED",
        [STORE_OUTCOME_FAILED] = "FAILED",
        [STORE_OUTCOME_CANCELLED] = "CANCELLED",
    };
    struct held_ctx *c = ctx;
    const struct store_outcome *o = c->outcome;
    struct pg_item_ref r;
    int deps = 0;
    c->n_wake = 0;
    int rc = held(p, c->task_id, c->token, &r, &deps, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (o->kind == STORE_OUTCOME_RETRY || o->kind == STORE_OUTCOME_RELEASE) {
        if (strcmp(r.status, "CANCELLING") != 0) {
            if (o->run_after_ms <= c->now)
                ctx_wake(c, r.bridge); /* another host of the bridge may take it now */
            return finish_requeue(p, &r, c->token, o, c->now, err, errlen);
        }
        /* A cancel was asked for: the attempt is over, so the item ends here. */
        struct store_outcome cancelled = *o;
        cancelled.kind = STORE_OUTCOME_CANCELLED;
        cancelled.reason = "cancelled while its attempt was ending";
        return finish_final(p, &r, deps, c->token, "CANCELLED", &cancelled, c->now, err, errlen);
    }
    if (o->kind == STORE_OUTCOME_COMPLETED && deps)
        rc = wake_dependents(p, c, r.seq, err, errlen);
    return rc != STORE_OK
               ? rc
               : finish_final(p, &r, deps, c->token, final_status[o->kind], o, c->now, err, errlen);
}

int store_pg_finish(store *s, const char *task_id, const char *token,
                    const struct store_outcome *outcome, int64_t now, char *err, size_t errlen)
{
    struct held_ctx c = {.task_id = task_id, .token = token, .outcome = outcome, .now = now};
    return wake_after(s, &c, store_pg_run((struct pg *)s, 1, finish_body, &c, err, errlen));
}

static int expired_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct held_ctx *c = ctx;
    PGresult *r;
    int rc = store_pg_q(p, &r, err, errlen,
                        "SELECT " PG_ITEM_COLS " FROM queue_items q"
                        " WHERE q.status IN " PG_ACTIVE " AND q.lease_expires_at <= $1"
                        " AND ($2::text IS NULL OR q.bridge_name = $2)"
                        " ORDER BY q.lease_expires_at, q.seq LIMIT 1000",
                        "It", c->now, c->bridge);
    if (rc == STORE_OK)
        store_pg_item_rows(r, c->now, PG_STALE_DEFAULT_MS, 1, &c->out);
    PQclear(r);
    return rc;
}

int store_pg_expired(store *s, const char *bridge, int64_t now, json_t **items, char *err,
                     size_t errlen)
{
    struct held_ctx c = {.bridge = bridge, .now = now};
    int rc = store_pg_run((struct pg *)s, 0, expired_body, &c, err, errlen);
    if (rc != STORE_OK) {
        json_decref(c.out);
        c.out = NULL;
    }
    *items = c.out;
    return rc;
}

static int cancelling_body(struct pg *p, void *ctx, char *err, size_t errlen)
{
    struct held_ctx *c = ctx;
    PGresult *r;
    int rc = store_pg_q(p, &r, err, errlen,
                        "SELECT " PG_ITEM_COLS " FROM queue_items q"
                        " WHERE q.status = 'CANCELLING' AND q.lease_owner = $1 ORDER BY q.seq",
                        "t", c->owner);
    if (rc == STORE_OK)
        store_pg_item_rows(r, c->now, PG_STALE_DEFAULT_MS, 1, &c->out);
    PQclear(r);
    return rc;
}

int store_pg_cancelling(store *s, const char *owner, json_t **items, char *err, size_t errlen)
{
    struct held_ctx c = {.owner = owner, .now = now_ms()};
    int rc = store_pg_run((struct pg *)s, 0, cancelling_body, &c, err, errlen);
    if (rc != STORE_OK) {
        json_decref(c.out);
        c.out = NULL;
    }
    *items = c.out;
    return rc;
}
