/*
 * Fair claims among the hosts of a bridge. A host that pipelines (workers.pipeline) claims
 * more items than it has workers, and the loop turn that ends a machine's item claims that
 * machine's next item in the same transaction: a host that starts later can find every
 * machine held by the others, for good (tests/bench/pg.sh once showed 2 of 4 hosts running
 * items). So a host with idle workers whose claim came up short while ready items wait says
 * so in the store (store_claim_wait), and polls often while it waits; and while a host of
 * its bridge waits, every host keeps to its fair share of the bridge's work (its active items
 * and its machines with a free slot and a ready item), so the
 * machines the others' ends free reach the waiting host. Every host with free workers gets
 * work; the shares hold once nobody waits (the turn that ends an item claims its machine's
 * next one), and pipelines fill greedily again.
 */
#ifndef FERRY_FAIRNESS_H
#define FERRY_FAIRNESS_H

#include "store.h"

/* How often a waiting host claims (its loop's timeout while it waits). */
#define FAIRNESS_POLL_MS 50

typedef struct fairness fairness;

/* For the host owner of bridge (both copied); st is borrowed and outlives it. */
fairness *fairness_new(store *st, const char *bridge, const char *owner);
/* Clears this host's mark, if any, and frees. NULL accepted. */
void fairness_free(fairness *f);

/* How many items a claim may take now: slots (the runner's free capacity, pipeline
 * included) while no host of the bridge waits for work; while one does, no more than this
 * host's fair share of the bridge's work (its active items and its machines with a free slot
 * and a ready item, over the hosts that hold or wait), less held (the items it holds now), and
 * never less than idle (workers with nothing to run). Reads the store at most every 100 ms. */
int fairness_slots(fairness *f, int slots, int idle, int held);

/* After a claim that took n items while idle workers had nothing to run: marks this host
 * waiting when n < idle and ready items wait (renewed at most every 750 ms), clears its mark
 * when nothing is ready; once fed it stops renewing it, and the mark runs out (1.5 s), so
 * the shares hold a while. At most one store call every 100 ms while nothing changes. */
void fairness_claimed(fairness *f, int n, int idle);

/* 1 while this host is marked waiting. */
int fairness_waiting(const fairness *f);

#endif
