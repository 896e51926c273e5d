/*
 * How an attempt ends, and the rest of a held item's life, for every driver (over
 * engine.h): start, progress, lease renewal, finish (one or many in one transaction), and
 * the lists a host recovers from (expired leases, items being cancelled).
 *
 * Every change of a held item carries the claim token in its UPDATE's WHERE clause, with
 * the statuses it may change from, so a host that lost the item (cancelled, recovered after
 * its lease, finished) changes nothing: that is the item's STORE_CONFLICT, and the message
 * says what the item is now.
 *
 * Outcomes: COMPLETED, FAILED and CANCELLED are final (the token dies; FAILED and
 * CANCELLED cancel the PENDING dependents, transitively; COMPLETED wakes the bridges of
 * dependents that may now be ready). RETRY (counted) and RELEASE (not counted) return the
 * item to PENDING at run_after, except that an item being cancelled (CANCELLING) then ends
 * CANCELLED: the attempt is over and the cancel was asked for.
 *
 * Nothing is ever lost: every store change that follows from an end is made by the same
 * operation, in the same transaction, as the end itself: the retry's schedule, the `after`
 * cascade, a machine group's parent settling (groups.c), and a FAILED item's fallback
 * (end_fallback), and the note of its notifications (notify_outbox, outbox.c), which leave
 * the store only after the commit. A host killed after the commit finds them all done;
 * killed before it, none (the item is still held, and recovered after its lease).
 */
#include "engine.h"
#include "groups.h"

#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The conflict of a held-item change that matched no row: NOT_FOUND for a missing item;
 * CONFLICT "no longer held" when the token or status says another owner or state; else
 * CONFLICT with want ("it is PROCESSING, not ASSIGNED") when the caller names the status
 * it needed.
 */
static int not_held(store *s, const char *task_id, const char *token, const char *want,
                    char *err, size_t errlen)
{
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_HELD, "t", task_id);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    if (got == 0) {
        seterr(err, errlen, "no queue item with task id '%s'", task_id);
        got = STORE_NOT_FOUND;
    } else if (got == 1) {
        const char *status = eng_text(&r, 2), *holder = eng_text(&r, 5);
        int held = holder != NULL && strcmp(holder, token) == 0 &&
                   (strcmp(status, "ASSIGNED") == 0 || strcmp(status, "PROCESSING") == 0 ||
                    strcmp(status, "CANCELLING") == 0);
        if (held && want)
            seterr(err, errlen, "task %s is %s, not %s; it cannot start", task_id, status, want);
        else if (held)
            seterr(err, errlen, "task %s changed while it was being updated", task_id);
        else
            seterr(err, errlen, "task %s is no longer held by this claim (it is %s now)",
                   task_id, status);
        got = STORE_CONFLICT;
    }
    eng_done(&r);
    return got;
}

/* ---- start, progress, heartbeat ---------------------------------------------------------- */

struct held_ctx {
    const char *task_id, *token, *owner, *bridge, *message;
    int percent, count;
    int64_t now, lease_ms;
    json_t *out;
    struct store_item *items;
    size_t n_items;
};

static int start_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct held_ctx *c = ctx;
    eng_rows r;
    int rc = eng_wq(s, &r, err, errlen, S_START, "tIt", c->task_id, c->now, c->token);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    int64_t seq = got == 1 ? eng_i64(&r, 0) : 0;
    int attempt = got == 1 ? (int)eng_i64(&r, 1) + 1 : 0;
    eng_done(&r);
    if (got == 0)
        return not_held(s, c->task_id, c->token, "ASSIGNED", err, errlen);
    if (got < 0)
        return got;
    char details[64];
    snprintf(details, sizeof(details), "attempt %d started", attempt);
    return eng_event(s, seq, "PROCESSING", details, 0, c->now, err, errlen);
}

int store_held_start(store *s, const char *task_id, const char *token, int64_t now, char *err,
                     size_t errlen)
{
    struct held_ctx c = {.task_id = task_id, .token = token, .now = now};
    return eng_run(s, 1, start_body, &c, err, errlen);
}

static int progress_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct held_ctx *c = ctx;
    eng_rows r;
    int rc = eng_wq(s, &r, err, errlen, S_PROGRESS, "titIt", c->task_id, c->percent, c->message,
                    c->now, c->token);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    int64_t seq = got == 1 ? eng_i64(&r, 0) : 0;
    eng_done(&r);
    if (got == 0)
        return not_held(s, c->task_id, c->token, NULL, err, errlen);
    if (got < 0)
        return got;
    char *details =
        c->message ? xasprintf("%d%%: %s", c->percent, c->message) : xasprintf("%d%%", c->percent);
    rc = eng_event(s, seq, "PROGRESS", details, 0, c->now, err, errlen);
    free(details);
    return rc;
}

int store_held_progress(store *s, const char *task_id, const char *token, int percent,
                        const char *message, int64_t now, char *err, size_t errlen)
{
    struct held_ctx c = {
        .task_id = task_id, .token = token, .percent = percent, .message = message, .now = now};
    return eng_run(s, 1, progress_body, &c, err, errlen);
}

static int heartbeat_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct held_ctx *c = ctx;
    long rows = 0;
    int rc = eng_w(s, &rows, err, errlen, S_HEARTBEAT, "tII", c->owner, c->now + c->lease_ms,
                   c->now);
    c->count = rc == STORE_OK ? (int)rows : 0;
    return rc;
}

int store_held_heartbeat(store *s, const char *owner, int64_t lease_ms, int64_t now, int *renewed,
                         char *err, size_t errlen)
{
    struct held_ctx c = {.owner = owner, .lease_ms = lease_ms, .now = now};
    int rc = eng_run(s, 1, heartbeat_body, &c, err, errlen);
    if (renewed)
        *renewed = rc == STORE_OK ? c.count : 0;
    return rc;
}

/* ---- finish ------------------------------------------------------------------------------ */

static const char *const final_status[] = {
    [STORE_OUTCOME_COMPLETED] = "COMPLETED",
    [STORE_OUTCOME_FAILED] = "FAILED",
    [STORE_OUTCOME_CANCELLED] = "CANCELLED",
};

/* An end's response vault as the text to store: the caller's own (response_json), else its
 * tree dumped into *owned, which the caller frees; NULL when the end keeps none. */
static const char *response_text(const struct store_outcome *o, char **owned)
{
    *owned = NULL;
    if (o->response_json || o->response == NULL)
        return o->response_json;
    *owned = json_dumps(o->response, JSON_COMPACT);
    return *owned;
}

/* Notes the bridges of the items waiting for seq, which may become ready now. */
static int wake_dependents(store *s, struct eng_wake *wake, int64_t seq, char *err, size_t errlen)
{
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_WAKE_DEPENDENTS, "I", seq);
    int got = 0;
    while (rc == STORE_OK && (got = eng_next(&r, err, errlen)) == 1)
        eng_wake_add(wake, eng_text(&r, 0));
    if (rc == STORE_OK)
        eng_done(&r);
    return rc != STORE_OK ? rc : got;
}

/*
 * A FAILED end's fallback (store_finish), once the end held: the new item linked to the
 * ended one, its CREATED event, FALLBACK on the ended item and FALLBACK_OF on the new one.
 * A spec store.c refused comes as fallback NULL with the reason in fallback_note: a
 * FALLBACK_FAILED event, and the end still holds.
 */
static int end_fallback(store *s, const struct store_finish *f, int64_t seq, int64_t now,
                        struct eng_wake *wake, struct eng_events *ev, char *err, size_t errlen)
{
    char details[600];
    if (f->outcome.kind != STORE_OUTCOME_FAILED ||
        (f->outcome.fallback == NULL && f->outcome.fallback_note == NULL))
        return STORE_OK;
    if (f->outcome.fallback == NULL)
        return eng_events_add(s, ev, seq, "FALLBACK_FAILED", f->outcome.fallback_note, now, err,
                              errlen);
    struct store_item_spec sp = *f->outcome.fallback;
    sp.parent_task_id = f->task_id;
    sp.link_kind = "fallback";
    sp.now_ms = sp.run_after_ms = now;
    int64_t new_seq = 0;
    char id[37];
    int rc = queue_next_seqs(s, 1, &new_seq, err, errlen);
    if (rc == STORE_OK)
        rc = queue_insert_item(s, &sp, new_seq, id, err, errlen);
    if (rc != STORE_OK)
        return rc;
    snprintf(details, sizeof(details), "fallback %.128s queued as %s", sp.function, id);
    rc = eng_events_add(s, ev, seq, "FALLBACK", details, now, err, errlen);
    if (rc == STORE_OK && f->outcome.fallback_note)
        rc = eng_events_add(s, ev, new_seq, "FALLBACK_OF", f->outcome.fallback_note, now, err,
                            errlen);
    eng_wake_add(wake, sp.bridge);
    return rc;
}

/* COMPLETED, FAILED or CANCELLED. STORE_CONFLICT (nothing changed) when not held. */
static int finish_final(store *s, const struct store_finish *f, enum store_outcome_kind kind,
                        const char *reason, int64_t now, struct eng_wake *wake,
                        struct eng_events *ev, char *err, size_t errlen)
{
    const char *status = final_status[kind];
    eng_rows r;
    char *owned;
    const char *response = response_text(&f->outcome, &owned);
    int rc = eng_wq(s, &r, err, errlen, S_FINISH_FINAL, "tttItt", f->task_id, status, response, now,
                    reason, f->token);
    free(owned);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    int64_t seq = got == 1 ? eng_i64(&r, 0) : 0;
    int has_dependents = got == 1 && eng_i64(&r, 3) != 0;
    eng_done(&r);
    if (got == 0)
        return not_held(s, f->task_id, f->token, NULL, err, errlen);
    if (got < 0)
        return got;
    rc = eng_events_add(s, ev, seq, status, reason, now, err, errlen);
    if (rc == STORE_OK && has_dependents && kind == STORE_OUTCOME_COMPLETED)
        rc = wake_dependents(s, wake, seq, err, errlen);
    else if (rc == STORE_OK && has_dependents)
        rc = eng_cancel_dependents(s, seq, f->task_id, status, now, err, errlen);
    /* A machine group's member: its parent is one of its dependents (groups.c). */
    if (rc == STORE_OK && has_dependents)
        rc = fanout_member_ended(s, seq, now, wake, err, errlen);
    if (rc == STORE_OK && kind == f->outcome.kind)
        rc = end_fallback(s, f, seq, now, wake, ev, err, errlen);
    if (rc == STORE_OK && kind == f->outcome.kind && f->outcome.notify_due_ms)
        rc = eng_w(s, NULL, err, errlen, S_NOTIFY_OUTBOX_ADD, "II", seq,
                   f->outcome.notify_due_ms);
    return rc;
}

/* RETRY or RELEASE: back to PENDING; an item being cancelled ends CANCELLED instead. */
static int finish_requeue(store *s, const struct store_finish *f, int64_t now,
                          struct eng_wake *wake, struct eng_events *ev, char *err, size_t errlen)
{
    const struct store_outcome *o = &f->outcome;
    int retry = o->kind == STORE_OUTCOME_RETRY;
    int64_t run_after = o->run_after_ms ? o->run_after_ms : now;
    eng_rows r;
    char *owned;
    const char *response = response_text(o, &owned);
    int rc = eng_wq(s, &r, err, errlen, S_FINISH_REQUEUE, "tIIittt", f->task_id, now, run_after,
                    retry, o->reason, response, f->token);
    free(owned);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    int64_t seq = got == 1 ? eng_i64(&r, 0) : 0;
    int retry_count = got == 1 ? (int)eng_i64(&r, 1) : 0;
    char bridge[129];
    snprintf(bridge, sizeof(bridge), "%s", got == 1 ? eng_text(&r, 2) : "");
    eng_done(&r);
    if (got == 0) /* not held, or CANCELLING: the final CANCELLED says which */
        return finish_final(s, f, STORE_OUTCOME_CANCELLED,
                            "cancelled while its attempt was ending", now, wake, ev, err, errlen);
    if (got < 0)
        return got;
    char when[32], details[700];
    iso8601_ms(run_after, when);
    if (retry)
        snprintf(details, sizeof(details), "attempt %d failed: %.500s; next attempt at %s",
                 retry_count, o->reason ? o->reason : "no reason given", when);
    else
        snprintf(details, sizeof(details), "returned to the queue: %.500s",
                 o->reason ? o->reason : "released by the host");
    if (run_after <= now)
        eng_wake_add(wake, bridge); /* another host of the bridge may take it now */
    return eng_events_add(s, ev, seq, retry ? "RETRY_SCHEDULED" : "RELEASED", details, now, err,
                          errlen);
}

/* Ends one attempt; its event joins ev. Before its first write the only failure is its own
 * CONFLICT or NOT_FOUND, so a batch of them needs no savepoints. */
static int finish_one(store *s, const struct store_finish *f, int64_t now, struct eng_wake *wake,
                      struct eng_events *ev, char *err, size_t errlen)
{
    if (f->outcome.kind == STORE_OUTCOME_RETRY || f->outcome.kind == STORE_OUTCOME_RELEASE)
        return finish_requeue(s, f, now, wake, ev, err, errlen);
    return finish_final(s, f, f->outcome.kind, f->outcome.reason, now, wake, ev, err, errlen);
}

struct finish_ctx {
    const struct store_finish *f;
    size_t n;
    int *rcs;
    int64_t now;
    struct eng_wake wake;
};

/* Final outcomes of many entries (indexes idx[0..n)) in one UPDATE; done[i] marks the
 * entries it ended. An entry whose text cannot travel as JSON is left for finish_one. */
struct finished {
    int64_t seq;
    size_t entry;
    int has_dependents;
};

static int cmp_entry_id(const void *a, const void *b, void *f)
{
    const struct store_finish *e = f;
    return strcmp(e[*(const size_t *)a].task_id, e[*(const size_t *)b].task_id);
}

/* The entry (of idx, sorted by task id) with task_id that is not done yet, or -1. */
static long find_entry(const struct store_finish *f, const size_t *idx, size_t n,
                       const char *task_id, const char *done)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(f[idx[mid]].task_id, task_id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < n && strcmp(f[idx[lo]].task_id, task_id) == 0; lo++)
        if (!done[idx[lo]])
            return (long)idx[lo];
    return -1;
}

/* What follows a final outcome that held (fin): its event, its dependents, a group's
 * parent, its fallback and the note of its notifications. */
static int final_held(store *s, struct finish_ctx *c, const struct finished *fin,
                      struct eng_events *ev, char *err, size_t errlen)
{
    const struct store_finish *e = &c->f[fin->entry];
    const char *status = final_status[e->outcome.kind];
    int rc = eng_events_add(s, ev, fin->seq, status, e->outcome.reason, c->now, err, errlen);
    if (rc == STORE_OK && fin->has_dependents && e->outcome.kind == STORE_OUTCOME_COMPLETED)
        rc = wake_dependents(s, &c->wake, fin->seq, err, errlen);
    else if (rc == STORE_OK && fin->has_dependents)
        rc = eng_cancel_dependents(s, fin->seq, e->task_id, status, c->now, err, errlen);
    if (rc == STORE_OK && fin->has_dependents)
        rc = fanout_member_ended(s, fin->seq, c->now, &c->wake, err, errlen);
    if (rc == STORE_OK)
        rc = end_fallback(s, e, fin->seq, c->now, &c->wake, ev, err, errlen);
    if (rc == STORE_OK && e->outcome.notify_due_ms)
        rc = eng_w(s, NULL, err, errlen, S_NOTIFY_OUTBOX_ADD, "II", fin->seq,
                   e->outcome.notify_due_ms);
    c->rcs[fin->entry] = STORE_OK;
    return rc;
}

static int finish_set(store *s, struct finish_ctx *c, size_t *idx, size_t n, char *done,
                      struct eng_events *ev, char *err, size_t errlen)
{
    json_t *rows = json_array();
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        const struct store_finish *e = &c->f[idx[k]];
        json_t *reason = e->outcome.reason ? json_string(e->outcome.reason) : json_null();
        if (reason == NULL)
            continue; /* not UTF-8: finish_one keeps it byte for byte */
        char *owned;
        const char *resp = response_text(&e->outcome, &owned);
        json_array_append_new(rows, json_pack("[s,s,s,s?,o]", e->task_id, e->token,
                                              final_status[e->outcome.kind], resp, reason));
        free(owned);
        idx[m++] = idx[k];
    }
    qsort_r(idx, m, sizeof(*idx), cmp_entry_id, (void *)c->f);
    char *text = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    eng_rows r;
    int rc = eng_wq(s, &r, err, errlen, S_FINISH_MANY, "tI", text, c->now);
    free(text);
    if (rc != STORE_OK)
        return rc;
    struct finished *fin = calloc(m ? m : 1, sizeof(*fin));
    size_t n_fin = 0;
    int got;
    while ((got = eng_next(&r, err, errlen)) == 1) {
        long i = find_entry(c->f, idx, m, eng_text(&r, 1), done);
        if (i < 0 || n_fin == m)
            continue;
        done[i] = 1;
        fin[n_fin++] = (struct finished){eng_i64(&r, 0), (size_t)i, eng_i64(&r, 2) != 0};
    }
    eng_done(&r);
    rc = got < 0 ? got : STORE_OK;
    for (size_t k = 0; rc == STORE_OK && k < n_fin; k++)
        rc = final_held(s, c, &fin[k], ev, err, errlen);
    free(fin);
    return rc;
}

/* The seq a claim token ends with (claim.c: the claim's prefix, then the last 12 digits of
 * the item's seq), or 0 when the token has another shape. */
static int64_t token_seq(const char *token)
{
    size_t len = strlen(token);
    int64_t seq = 0;
    if (len != 36)
        return 0;
    for (size_t i = len - 12; i < len; i++) {
        if (token[i] < '0' || token[i] > '9')
            return 0;
        seq = seq * 10 + (token[i] - '0');
    }
    return seq;
}

/*
 * finish_set where a statement per row costs no round trip (in_process): each final
 * outcome in a statement of its own, the item found by the seq its token ends with and its
 * values bound. An entry whose token does not name the item (another shape, or a seq past
 * 12 digits) changes nothing here and is left for finish_one.
 */
static int finish_rows(store *s, struct finish_ctx *c, const size_t *idx, size_t n, char *done,
                       struct eng_events *ev, char *err, size_t errlen)
{
    /* Whether any item is `after` one of the batch's items, asked once for the range of
     * their seqs: when none is (a drain's usual case), no end needs S_HAS_DEPENDENTS. */
    int64_t lo = 0, hi = 0, maybe = 0;
    for (size_t k = 0; k < n; k++) {
        int64_t seq = token_seq(c->f[idx[k]].token);
        if (seq > 0 && (lo == 0 || seq < lo))
            lo = seq;
        if (seq > hi)
            hi = seq;
    }
    int rc = hi > 0 ? eng_scalar(s, &maybe, err, errlen, S_DEPENDENTS_IN_RANGE, "II", lo, hi)
                    : STORE_OK;
    for (size_t k = 0; rc == STORE_OK && k < n; k++) {
        const struct store_finish *e = &c->f[idx[k]];
        struct finished fin = {token_seq(e->token), idx[k], 0};
        long changed = 0;
        if (fin.seq <= 0)
            continue;
        char *owned;
        const char *response = response_text(&e->outcome, &owned);
        rc = eng_w(s, &changed, err, errlen, S_FINISH_SEQ, "IttIttt", fin.seq,
                   final_status[e->outcome.kind], response, c->now, e->outcome.reason, e->token,
                   e->task_id);
        free(owned);
        if (rc != STORE_OK || changed != 1)
            continue;
        int64_t has_dependents = 0;
        if (maybe)
            rc = eng_scalar(s, &has_dependents, err, errlen, S_HAS_DEPENDENTS, "I", fin.seq);
        /* An end other than COMPLETED may queue an item (a fallback, which store.c gives
         * no dependencies today): from here on every end asks, so that an item queued
         * `after` a later end of the batch would never be missed. */
        if (e->outcome.kind != STORE_OUTCOME_COMPLETED)
            maybe = 1;
        fin.has_dependents = has_dependents != 0;
        done[idx[k]] = 1;
        if (rc == STORE_OK)
            rc = final_held(s, c, &fin, ev, err, errlen);
    }
    return rc;
}

/* Ends every attempt (the final ones in one statement), then writes their events in one
 * statement. */
static int finish_many_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct finish_ctx *c = ctx;
    struct eng_events ev = {0};
    int rc = STORE_OK;
    c->wake.n = 0;
    if (c->rcs == NULL) { /* store_finish: its conflict is the operation's own */
        rc = finish_one(s, &c->f[0], c->now, &c->wake, &ev, err, errlen);
        goto out;
    }
    char *done = calloc(c->n, 1);
    size_t *idx = calloc(c->n, sizeof(size_t)), n_final = 0;
    if (done == NULL || idx == NULL)
        abort();
    for (size_t i = 0; i < c->n; i++)
        if (c->f[i].outcome.kind != STORE_OUTCOME_RETRY &&
            c->f[i].outcome.kind != STORE_OUTCOME_RELEASE)
            idx[n_final++] = i;
    if (n_final > 1 && s->drv->in_process)
        rc = finish_rows(s, c, idx, n_final, done, &ev, err, errlen);
    else if (n_final > 1)
        rc = finish_set(s, c, idx, n_final, done, &ev, err, errlen);
    /* The rest one by one: requeues, and what the set did not end (its conflict). */
    for (size_t i = 0; rc == STORE_OK && i < c->n; i++) {
        if (done[i])
            continue;
        char msg[256];
        int one = finish_one(s, &c->f[i], c->now, &c->wake, &ev, msg, sizeof(msg));
        if (one != STORE_OK && one != STORE_CONFLICT && one != STORE_NOT_FOUND) {
            seterr(err, errlen, "%s", msg);
            rc = one;
        }
        c->rcs[i] = one == STORE_NOT_FOUND ? STORE_CONFLICT : one;
    }
    free(done);
    free(idx);
out:
    if (rc == STORE_OK)
        return eng_events_flush(s, &ev, err, errlen);
    eng_events_drop(&ev);
    return rc;
}

int store_held_finish(store *s, const struct store_finish *f, size_t n, int *rcs, int64_t now,
                      char *err, size_t errlen)
{
    struct finish_ctx c = {.f = f, .n = n, .rcs = rcs, .now = now};
    return eng_wake_after(s, &c.wake,
                          eng_run(s, ENG_WRITE_HELD, finish_many_body, &c, err, errlen));
}

/* ---- recovery lists ---------------------------------------------------------------------- */

/* Reads every row of r into c (JSON rows with tokens, or typed items). */
static int read_host_items(store *s, struct held_ctx *c, eng_rows *r, int typed, char *err,
                           size_t errlen)
{
    if (!typed)
        return eng_item_rows(s, r, c->now, ENG_STALE_DEFAULT_MS, 1, &c->out, err, errlen);
    size_t cap = 0;
    int got;
    store_items_free(c->items, c->n_items);
    c->items = NULL;
    c->n_items = 0;
    while ((got = eng_next(r, err, errlen)) == 1) {
        if (c->n_items == cap) {
            cap = cap ? cap * 2 : 16;
            c->items = realloc(c->items, cap * sizeof(*c->items));
            if (c->items == NULL)
                abort();
        }
        eng_item_struct(r, 0, &c->items[c->n_items++]);
    }
    eng_done(r);
    return got < 0 ? got : STORE_OK;
}

static int expired_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct held_ctx *c = ctx;
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_EXPIRED, "It", c->now, c->bridge);
    return rc != STORE_OK ? rc : read_host_items(s, c, &r, c->count, err, errlen);
}

static int cancelling_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct held_ctx *c = ctx;
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_CANCELLING, "t", c->owner);
    return rc != STORE_OK ? rc : read_host_items(s, c, &r, c->count, err, errlen);
}

/* Runs a recovery list; typed: into *items / *n, else into *rows. */
static int recovery_list(store *s, eng_body body, struct held_ctx *c, int typed, json_t **rows,
                         struct store_item **items, size_t *n, char *err, size_t errlen)
{
    c->count = typed;
    int rc = eng_run(s, 0, body, c, err, errlen);
    if (rc != STORE_OK) {
        json_decref(c->out);
        c->out = NULL;
        store_items_free(c->items, c->n_items);
        c->items = NULL;
        c->n_items = 0;
    }
    if (rows)
        *rows = c->out;
    if (items) {
        *items = c->items;
        *n = c->n_items;
    }
    return rc;
}

int store_held_expired(store *s, const char *bridge, int64_t now, json_t **rows,
                       struct store_item **items, size_t *n, char *err, size_t errlen)
{
    struct held_ctx c = {.bridge = bridge, .now = now};
    return recovery_list(s, expired_body, &c, items != NULL, rows, items, n, err, errlen);
}

int store_held_cancelling(store *s, const char *owner, json_t **rows, struct store_item **items,
                          size_t *n, char *err, size_t errlen)
{
    struct held_ctx c = {.owner = owner, .now = now_ms()};
    return recovery_list(s, cancelling_body, &c, items != NULL, rows, items, n, err, errlen);
}
