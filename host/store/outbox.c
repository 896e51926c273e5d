/*
 * Notifications not yet handed to their sender, for every driver (over engine.h). A final
 * end with notifications leaves a note in notify_outbox, written with the end (finish.c);
 * the host removes it once it handed them to `ferry notify send` (store_notify_sent). A
 * host killed between its commit and that hand-off leaves the note, and a host of the
 * bridge sends them once it is due (store_notify_due): at least once, never lost.
 */
#include "engine.h"

#include "util.h"

#include <stdio.h>
#include <string.h>

struct outbox_ctx {
    const char *task_id, *bridge;
    int64_t now, retry;
    char (*ids)[37];
    size_t max, n;
};

static int sent_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct outbox_ctx *c = ctx;
    return eng_w(s, NULL, err, errlen, S_NOTIFY_OUTBOX_DONE, "t", c->task_id);
}

int store_notify_sent(store *s, const char *task_id, char *err, size_t errlen)
{
    if (task_id == NULL) {
        seterr(err, errlen, "no task id");
        return STORE_ERROR;
    }
    struct outbox_ctx c = {.task_id = task_id};
    return eng_run(s, 1, sent_body, &c, err, errlen);
}

static int due_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct outbox_ctx *c = ctx;
    eng_rows r;
    c->n = 0;
    int rc = eng_wq(s, &r, err, errlen, S_NOTIFY_OUTBOX_TAKE, "tII", c->bridge, c->now, c->retry);
    if (rc != STORE_OK)
        return rc;
    int got;
    while ((got = eng_next(&r, err, errlen)) == 1)
        if (c->n < c->max)
            snprintf(c->ids[c->n++], 37, "%s", eng_text(&r, 0));
    eng_done(&r);
    return got < 0 ? got : STORE_OK;
}

int store_notify_due(store *s, const char *bridge, int64_t now, int64_t retry_ms, char (*ids)[37],
                     size_t max, size_t *n, char *err, size_t errlen)
{
    *n = 0;
    if (bridge == NULL) {
        seterr(err, errlen, "no bridge");
        return STORE_ERROR;
    }
    struct outbox_ctx c = {
        .bridge = bridge, .now = now, .retry = retry_ms, .ids = ids, .max = max > 16 ? 16 : max};
    int rc = eng_run(s, 1, due_body, &c, err, errlen);
    if (rc == STORE_OK)
        *n = c.n;
    return rc;
}
