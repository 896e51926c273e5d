/*
 * Fair claims among the hosts of a bridge, the store's side (the host's side, and why:
 * host/serve/fairness.c). A host that has idle workers and finds ready items whose machines
 * other hosts hold says so in claim_waits (a row per waiting host, with an expiry); the
 * others read how many hosts wait. Same code for every driver (over engine.h).
 */
#include "engine.h"

#include "util.h"

#include <string.h>

struct wait_ctx {
    const char *bridge, *owner;
    int want;
    int64_t now, until;
    int result;
};

/* Marks the host waiting when ready items wait on its bridge (its claim came up short, so
 * their machines are held), else clears its mark (and marks that ran out). */
static int wait_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct wait_ctx *c = ctx;
    int ready = 0;
    if (c->want) {
        eng_rows r;
        int rc = eng_q(s, &r, err, errlen, S_CLAIM_SCAN, "tIi", c->bridge, c->now, 1);
        if (rc != STORE_OK)
            return rc;
        int got = eng_next(&r, err, errlen);
        eng_done(&r);
        if (got < 0)
            return got;
        ready = got == 1;
    }
    int rc = STORE_OK;
    if (ready)
        rc = eng_w(s, NULL, err, errlen, S_CLAIM_WAIT_MARK, "ttI", c->bridge, c->owner, c->until);
    else if (c->want != 2) /* 2: the host has no mark left to clear */
        rc = eng_w(s, NULL, err, errlen, S_CLAIM_WAIT_CLEAR, "ttI", c->bridge, c->owner, c->now);
    if (rc == STORE_OK)
        c->result = ready;
    return rc;
}

int store_claim_wait(store *s, const char *bridge, const char *owner, int want, int64_t now,
                     int64_t until_ms, int *marked, char *err, size_t errlen)
{
    if (bridge == NULL || owner == NULL) {
        seterr(err, errlen, "a claim wait needs a bridge and an owner");
        return STORE_ERROR;
    }
    struct wait_ctx c = {
        .bridge = bridge, .owner = owner, .want = want, .now = now, .until = until_ms};
    int rc = eng_run(s, 1, wait_body, &c, err, errlen);
    if (marked)
        *marked = rc == STORE_OK ? c.result : 0;
    return rc;
}

struct share_ctx {
    const char *bridge, *owner;
    int64_t now;
    struct store_claim_share out;
};

static int share_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct share_ctx *c = ctx;
    int64_t waiting = 0;
    int rc =
        eng_scalar(s, &waiting, err, errlen, S_CLAIM_WAITERS, "ttI", c->bridge, c->owner, c->now);
    eng_rows r;
    if (rc == STORE_OK)
        rc = eng_q(s, &r, err, errlen, S_CLAIM_HOLDERS, "ttI", c->bridge, c->owner, c->now);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    if (got == 1)
        c->out = (struct store_claim_share){.waiting = (int)waiting,
                                            .holding = (int)eng_i64(&r, 1),
                                            .active = (int)eng_i64(&r, 0),
                                            .mine = (int)eng_i64(&r, 2)};
    eng_done(&r);
    if (got < 0)
        return got;
    /* Work no host holds matters only to a share, which holds only while a host waits: this
     * one (counted only among all the marks) or another. */
    int64_t marks = waiting, open = 0;
    if (marks == 0)
        rc = eng_scalar(s, &marks, err, errlen, S_CLAIM_WAITERS, "ttI", c->bridge, "", c->now);
    if (rc == STORE_OK && marks > 0)
        rc = eng_scalar(s, &open, err, errlen, S_CLAIM_OPEN, "tI", c->bridge, c->now);
    c->out.open = (int)open;
    return rc;
}

int store_claim_share(store *s, const char *bridge, const char *owner, int64_t now,
                      struct store_claim_share *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (bridge == NULL || owner == NULL) {
        seterr(err, errlen, "a claim share needs a bridge and an owner");
        return STORE_ERROR;
    }
    struct share_ctx c = {.bridge = bridge, .owner = owner, .now = now};
    int rc = eng_run(s, 0, share_body, &c, err, errlen);
    if (rc == STORE_OK)
        *out = c.out;
    return rc;
}
