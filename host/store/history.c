/*
 * History upkeep and shared chores (history.h), for every driver over engine.h.
 */
#include "history.h"

#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "people.h"
#include "util.h"

static const char *const ended_names[] = {"COMPLETED", "FAILED", "CANCELLED"};

unsigned store_prune_status_bit(const char *status)
{
    for (unsigned i = 0; i < 3; i++)
        if (status != NULL && strcmp(status, ended_names[i]) == 0)
            return 1u << i;
    return 0;
}

/* One batch: the items it looked at, those that may go, and what it did. */
struct prune_ctx {
    struct store_prune *p;
    json_t *statuses;
    long items, events;
    int64_t last_finished, last_seq;
    int seen, picked;
};

/* Reads the batch's items: those that may go into seqs (a new array); the key of the last
 * one seen into c. */
static int prune_pick(store *s, struct prune_ctx *c, json_t **seqs, char *err, size_t errlen)
{
    eng_rows r;
    const struct store_prune *p = c->p;
    int rc = eng_q(s, &r, err, errlen, S_PRUNE_PICK, "IIIji", p->before_ms, p->after_finished,
                   p->after_seq, c->statuses, p->batch);
    if (rc != STORE_OK)
        return rc;
    json_t *out = json_array();
    int got;
    c->seen = c->picked = 0;
    while ((got = eng_next(&r, err, errlen)) == 1) {
        c->last_seq = eng_i64(&r, 0);
        c->last_finished = eng_i64(&r, 1);
        c->seen++;
        if (eng_i64(&r, 2) == 1) {
            json_array_append_new(out, json_integer(c->last_seq));
            c->picked++;
        }
    }
    eng_done(&r);
    if (got < 0) {
        json_decref(out);
        return got;
    }
    *seqs = out;
    return STORE_OK;
}

static int prune_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct prune_ctx *c = ctx;
    json_t *seqs = NULL;
    c->items = c->events = 0;
    int rc = prune_pick(s, c, &seqs, err, errlen);
    if (rc != STORE_OK || c->picked == 0)
        goto audit;
    if (c->p->dry_run) {
        int64_t n = 0;
        rc = eng_scalar(s, &n, err, errlen, S_PRUNE_EVENTS_COUNT, "j", seqs);
        c->events = (long)n;
        c->items = c->picked;
        goto out;
    }
    rc = eng_w(s, &c->events, err, errlen, S_PRUNE_EVENTS, "j", seqs);
    if (rc == STORE_OK)
        rc = eng_w(s, &c->items, err, errlen, S_PRUNE_ITEMS, "j", seqs);
audit:
    if (rc == STORE_OK && !c->p->dry_run && c->seen < c->p->batch && c->p->items + c->items > 0) {
        /* The last batch: one audit row for the whole prune. */
        char before[32], details[200];
        iso8601_ms(c->p->before_ms, before);
        snprintf(details, sizeof(details), "%ld items and %ld events that ended before %s",
                 c->p->items + c->items, c->p->events + c->events, before);
        rc = people_audit_note(s, "queue.prune", NULL, NULL, details, err, errlen);
    }
out:
    json_decref(seqs);
    return rc;
}

int store_prune_step(store *s, struct store_prune *p, char *err, size_t errlen)
{
    if (p->done)
        return STORE_OK;
    if (p->batch <= 0)
        p->batch = STORE_PRUNE_BATCH;
    unsigned bits = p->statuses ? p->statuses : STORE_PRUNE_ENDED;
    struct prune_ctx c = {.p = p, .statuses = json_array()};
    for (unsigned i = 0; i < 3; i++)
        if (bits & (1u << i))
            json_array_append_new(c.statuses, json_string(ended_names[i]));
    int rc = eng_run(s, p->dry_run ? 0 : 1, prune_body, &c, err, errlen);
    json_decref(c.statuses);
    if (rc != STORE_OK)
        return rc;
    p->batches++;
    p->items += c.items;
    p->events += c.events;
    if (c.seen > 0) {
        p->after_finished = c.last_finished;
        p->after_seq = c.last_seq;
    }
    if (c.seen < p->batch)
        p->done = 1;
    return STORE_OK;
}

/* ---- chores --------------------------------------------------------------------------------- */

struct chore_ctx {
    const char *name, *owner, *result;
    int64_t now, until, due;
    int taken;
};

static int take_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct chore_ctx *c = ctx;
    eng_rows r;
    int rc = eng_wq(s, &r, err, errlen, S_CHORE_CLAIM, "ttII", c->name, c->owner, c->until, c->now);
    if (rc != STORE_OK)
        return rc;
    int got, n = 0;
    while ((got = eng_next(&r, err, errlen)) == 1)
        n++;
    eng_done(&r);
    if (got < 0)
        return got;
    c->taken = n > 0;
    return STORE_OK;
}

int store_chore_take(store *s, const char *name, const char *owner, int64_t now,
                     int64_t lease_until, int *taken, char *err, size_t errlen)
{
    struct chore_ctx c = {.name = name, .owner = owner, .now = now, .until = lease_until};
    *taken = 0;
    int rc = eng_run(s, 1, take_body, &c, err, errlen);
    if (rc == STORE_OK)
        *taken = c.taken;
    return rc;
}

static int renew_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct chore_ctx *c = ctx;
    return eng_w(s, NULL, err, errlen, S_CHORE_RENEW, "ttI", c->name, c->owner, c->until);
}

int store_chore_renew(store *s, const char *name, const char *owner, int64_t lease_until, char *err,
                      size_t errlen)
{
    struct chore_ctx c = {.name = name, .owner = owner, .until = lease_until};
    return eng_run(s, 1, renew_body, &c, err, errlen);
}

static int done_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct chore_ctx *c = ctx;
    return eng_w(s, NULL, err, errlen, S_CHORE_DONE, "ttIIt", c->name, c->owner, c->now, c->due,
                 c->result);
}

int store_chore_done(store *s, const char *name, const char *owner, int64_t now, int64_t due_at,
                     const char *result, char *err, size_t errlen)
{
    struct chore_ctx c = {
        .name = name, .owner = owner, .now = now, .due = due_at, .result = result};
    return eng_run(s, 1, done_body, &c, err, errlen);
}
