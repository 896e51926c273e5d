/* Fair claims among the hosts of a bridge; see fairness.h. */
#include "fairness.h"

#include <stdlib.h>

#include "log.h"
#include "util.h"

#define CHECK_MS    100  /* how stale the count of waiting hosts, or an unmarked check, may be */
#define MARK_TTL_MS 1500 /* a mark's life: a host that died stops counting after this */

struct fairness {
    store *st;
    char *bridge, *owner;
    struct store_claim_share share; /* as last read */
    int64_t share_at;               /* mono_ms of that read; 0: never */
    int marked;                     /* 1: this host waits (its mark is renewed) */
    int64_t marked_at;              /* wall ms of the last mark; 0: none left */
    int64_t checked_at; /* mono_ms of the last unmarked check that found nothing ready */
};

fairness *fairness_new(store *st, const char *bridge, const char *owner)
{
    fairness *f = calloc(1, sizeof(*f));
    if (f == NULL)
        abort();
    f->st = st;
    f->bridge = xstrdup(bridge);
    f->owner = xstrdup(owner);
    return f;
}

void fairness_free(fairness *f)
{
    if (f == NULL)
        return;
    if (f->marked_at && now_ms() - f->marked_at < MARK_TTL_MS)
        store_claim_wait(f->st, f->bridge, f->owner, 0, now_ms(), 0, NULL, NULL, 0);
    free(f->bridge);
    free(f->owner);
    free(f);
}

int fairness_slots(fairness *f, int slots, int idle, int held)
{
    if (slots <= idle)
        return slots; /* idle workers are always fed */
    int64_t mono = mono_ms();
    if (f->share_at == 0 || mono - f->share_at >= CHECK_MS) {
        char err[512];
        struct store_claim_share sh;
        if (store_claim_share(f->st, f->bridge, f->owner, now_ms(), &sh, err, sizeof(err)) != 0)
            hlog(LOG_DEBUG, "cannot read how the bridge's work is shared: %s", err);
        else if (sh.waiting > 0 && f->share.waiting == 0)
            hlog(LOG_DEBUG, "%d other host(s) of %s wait for work: keeping to a fair share",
                 sh.waiting, f->bridge);
        f->share = sh;
        f->share_at = mono;
    }
    const struct store_claim_share *sh = &f->share;
    if (sh->waiting == 0 && !(f->marked && sh->holding > 0))
        return slots; /* nobody waits: pipelines fill as they may */
    /* Someone waits: every host keeps to its share of the bridge's work (this one, those
     * that hold some, those that wait), and feeds its idle workers. The work is the active
     * items and the machines with a free slot and a ready item: a share of the active items
     * alone held them where they were when the wait began (every host full, so none grew),
     * the free machines idle, and every claim looked at each of them again (4 hosts on 100
     * machines: 76 active, 24 free, about 58 index seeks a claim of 10 items). */
    int hosts = 1 + sh->holding + sh->waiting;
    int cap = (sh->active + sh->open + hosts - 1) / hosts;
    int room = cap - held;
    if (room < idle)
        room = idle;
    if (room < 0)
        room = 0;
    return room < slots ? room : slots;
}

void fairness_claimed(fairness *f, int n, int idle)
{
    int want = idle > 0 && n < idle;
    int64_t now = now_ms(), mono = mono_ms();
    if (!want) {
        /* Fed: the mark is left to run out, so the shares hold a while longer. */
        f->marked = 0;
        return;
    }
    /* Unmarked and still short: ask again only once the last answer (nothing ready) is
     * CHECK_MS old; marked: renew at half the mark's life. */
    if (!f->marked && f->checked_at && mono - f->checked_at < CHECK_MS)
        return;
    if (f->marked && now - f->marked_at < MARK_TTL_MS / 2)
        return;
    char err[512];
    int marked = 0;
    /* Without a mark left, nothing is written unless ready items wait. */
    int live = f->marked_at != 0 && now - f->marked_at < MARK_TTL_MS;
    if (store_claim_wait(f->st, f->bridge, f->owner, live ? 1 : 2, now, now + MARK_TTL_MS, &marked,
                         err, sizeof(err)) != 0) {
        hlog(LOG_DEBUG, "cannot record whether this host waits for work: %s", err);
        return;
    }
    if (marked && !f->marked)
        hlog(LOG_DEBUG, "%s: ready items wait on machines other hosts hold; waiting for work",
             f->bridge);
    f->marked = marked;
    if (marked)
        f->marked_at = now;
    f->checked_at = marked ? 0 : mono;
}

int fairness_waiting(const fairness *f)
{
    return f->marked;
}
