/*
 * The host's history upkeep (docs/operations.md, "History"): with history.keep_days set, one
 * host of the store prunes ended items older than that once a day. The run is a chore of the
 * store (history.h: taken by one host at a time, with a lease), done one batch per turn of
 * the host's loop, so that claims and ends go on between batches.
 */
#ifndef FERRY_UPKEEP_H
#define FERRY_UPKEEP_H

#include <stdint.h>

typedef struct store store;
typedef struct upkeep upkeep;

/* How often a host looks whether the day's prune is due, and how long a taken run's lease
 * lasts without a batch. */
#define UPKEEP_CHECK_MS 60000
#define UPKEEP_LEASE_MS 600000
#define UPKEEP_EVERY_MS 86400000LL
#define UPKEEP_CHORE    "history.prune"

/* A new upkeep for a host (keep_days 0: it never prunes); owner is the host's lease owner,
 * copied. */
upkeep *upkeep_new(int keep_days, const char *owner);
void upkeep_free(upkeep *u);

/* Runs what is due at mono (mono_ms()): looks whether the prune is due and takes it, or runs
 * one batch of the prune in progress. Call it outside the loop's batch (its own
 * transactions). Failures are logged; the run is given up and tried again later. */
void upkeep_tick(upkeep *u, store *s, int64_t mono);

/* 1 while a prune is in progress: the loop should come back at once for the next batch. */
int upkeep_busy(const upkeep *u);

/* A host stopping: gives a prune in progress back, due at once, so that the next host to
 * look (or this one restarted) goes on with it rather than wait for the lease to run out. */
void upkeep_stop(upkeep *u, store *s);

#endif
