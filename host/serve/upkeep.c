/*
 * The host's history upkeep (upkeep.h).
 */
#include "upkeep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "log.h"
#include "util.h"

struct upkeep {
    int keep_days;
    char owner[160];
    int64_t next_check_mono; /* when to look whether the prune is due */
    int running;             /* a prune taken by this host is in progress */
    struct store_prune prune;
    int64_t started_mono, renewed_mono;
};

upkeep *upkeep_new(int keep_days, const char *owner)
{
    upkeep *u = calloc(1, sizeof(*u));
    if (u == NULL)
        abort();
    u->keep_days = keep_days;
    snprintf(u->owner, sizeof(u->owner), "%s", owner);
    return u;
}

void upkeep_free(upkeep *u)
{
    free(u);
}

int upkeep_busy(const upkeep *u)
{
    return u != NULL && u->running;
}

/* Takes the day's prune when it is due and no other host runs it. */
static void upkeep_start(upkeep *u, store *s, int64_t mono)
{
    char err[512];
    int taken = 0;
    int64_t now = now_ms();
    u->next_check_mono = mono + UPKEEP_CHECK_MS;
    if (store_chore_take(s, UPKEEP_CHORE, u->owner, now, now + UPKEEP_LEASE_MS, &taken, err,
                         sizeof(err)) != 0) {
        hlog(LOG_WARN, "history prune not started: %s", err);
        return;
    }
    if (!taken) {
        hlog(LOG_DEBUG, "history prune: not taken (not due, or another host of the store runs "
                        "it)");
        return;
    }
    u->prune = (struct store_prune){.before_ms = now - (int64_t)u->keep_days * 86400000LL};
    u->running = 1;
    u->started_mono = u->renewed_mono = mono;
    char before[32];
    iso8601_ms(u->prune.before_ms, before);
    hlog(LOG_DEBUG, "history prune: items that ended before %s (history.keep_days = %d)", before,
         u->keep_days);
}

/* Ends this host's run: due again in a day after a whole run, in UPKEEP_CHECK_MS after a
 * failure (the lease is given back either way). */
static void upkeep_finish(upkeep *u, store *s, int64_t mono, const char *failure)
{
    char err[512], result[300], before[32];
    int64_t now = now_ms();
    iso8601_ms(u->prune.before_ms, before);
    u->running = 0;
    if (failure != NULL)
        snprintf(result, sizeof(result), "failed after %ld items: %.200s", u->prune.items, failure);
    else
        snprintf(result, sizeof(result), "%ld items, %ld events, ended before %s", u->prune.items,
                 u->prune.events, before);
    if (store_chore_done(s, UPKEEP_CHORE, u->owner, now,
                         failure ? now + UPKEEP_CHECK_MS : now + UPKEEP_EVERY_MS, result, err,
                         sizeof(err)) != 0)
        hlog(LOG_WARN, "history prune: cannot record its end: %s", err);
    if (failure != NULL)
        hlog(LOG_WARN, "history prune stopped after %ld items: %s", u->prune.items, failure);
    else
        hlog(LOG_INFO,
             "history pruned: %ld items and %ld events that ended before %s, in %ld batches, "
             "%lld ms",
             u->prune.items, u->prune.events, before, u->prune.batches,
             (long long)(mono - u->started_mono));
}

void upkeep_stop(upkeep *u, store *s)
{
    if (!upkeep_busy(u))
        return;
    char err[512], result[200];
    int64_t now = now_ms();
    u->running = 0;
    snprintf(result, sizeof(result), "stopped with the host after %ld items", u->prune.items);
    if (store_chore_done(s, UPKEEP_CHORE, u->owner, now, now, result, err, sizeof(err)) != 0)
        hlog(LOG_WARN, "history prune: cannot give it back: %s", err);
    else
        hlog(LOG_INFO, "history prune stopped with the host after %ld items and %ld events",
             u->prune.items, u->prune.events);
}

void upkeep_tick(upkeep *u, store *s, int64_t mono)
{
    if (u == NULL || u->keep_days <= 0)
        return;
    if (!u->running) {
        if (mono >= u->next_check_mono)
            upkeep_start(u, s, mono);
        return;
    }
    char err[512];
    if (store_prune_step(s, &u->prune, err, sizeof(err)) != 0) {
        upkeep_finish(u, s, mono, err);
        return;
    }
    if (u->prune.done) {
        upkeep_finish(u, s, mono, NULL);
        return;
    }
    if (mono - u->renewed_mono < UPKEEP_LEASE_MS / 10)
        return;
    u->renewed_mono = mono;
    if (store_chore_renew(s, UPKEEP_CHORE, u->owner, now_ms() + UPKEEP_LEASE_MS, err,
                          sizeof(err)) != 0)
        hlog(LOG_WARN, "history prune: lease not renewed: %s", err);
}
