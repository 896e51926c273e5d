/*
 * History upkeep (issue 18, point 5; docs/operations.md "History"): removing ended items, with
 * their events and dependency links, in small batches of one transaction each, so that a
 * host's loop or another process's claims never wait behind a long delete; and the chores
 * the hosts of one store share (migration 10), so that one host alone prunes once a day.
 *
 * What may go: an item that ended (COMPLETED, FAILED or CANCELLED) before a time, unless an
 * item still waiting or running needs it: one that is `after` it, one that names it as its
 * parent (fallback, retry, call, a group's member) or that is its own parent (a group
 * settles from its members), or a notification of its end not yet sent. The audit log is
 * kept whole (it names items by task id, without a link to them).
 *
 * Conventions are store.h's: STORE_OK or a negative status with err set.
 */
#ifndef FERRY_STORE_HISTORY_H
#define FERRY_STORE_HISTORY_H

#include <stddef.h>
#include <stdint.h>

typedef struct store store;

/* Items a batch removes at most, in one transaction. */
#define STORE_PRUNE_BATCH 500

/* The ended statuses, as bits of store_prune.statuses. */
#define STORE_PRUNE_COMPLETED 1u
#define STORE_PRUNE_FAILED    2u
#define STORE_PRUNE_CANCELLED 4u
#define STORE_PRUNE_ENDED     7u

/* The bit of an ended status ("COMPLETED" …), or 0 for any other text. */
unsigned store_prune_status_bit(const char *status);

/*
 * One prune, batch by batch. Set before_ms, statuses (0: every ended status), batch (0:
 * STORE_PRUNE_BATCH) and dry_run, zero the rest; then call store_prune_step until done is 1.
 * The totals count what went (with dry_run: what would go; nothing is written).
 */
struct store_prune {
    int64_t before_ms;
    unsigned statuses;
    int batch;
    int dry_run;
    /* kept between batches: the last item seen, in (finished_at, seq) order */
    int64_t after_finished, after_seq;
    long items, events, batches;
    int done;
};

/*
 * Runs one batch in its own transaction: picks up to p->batch items that may go, after the
 * last one of the previous batch, and removes them with their events (dependency links go
 * with them). Adds to the totals; sets done when no more are left. The batch that ends a
 * prune that removed anything writes one audit row, "queue.prune", with the totals.
 */
int store_prune_step(store *s, struct store_prune *p, char *err, size_t errlen);

/*
 * Chores (the table of migration 10): takes chore name for owner until lease_until when it is
 * due at now and no other owner's lease runs; *taken says whether it was taken.
 */
int store_chore_take(store *s, const char *name, const char *owner, int64_t now,
                     int64_t lease_until, int *taken, char *err, size_t errlen);
/* Extends owner's lease of chore name to lease_until. */
int store_chore_renew(store *s, const char *name, const char *owner, int64_t lease_until, char *err,
                      size_t errlen);
/* Marks owner's run of chore name done at now with a result text (may be NULL), due again at
 * due_at; the lease ends. */
int store_chore_done(store *s, const char *name, const char *owner, int64_t now, int64_t due_at,
                     const char *result, char *err, size_t errlen);

#endif
