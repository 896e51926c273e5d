/*
 * What the command line asks of the queue's store code besides store.h: the check of a new
 * item's machine on the path of a create queue-item, in the same read the store's own check
 * of the item makes (queue.c).
 *
 * Conventions are store.h's: STORE_OK or a negative status with err set.
 */
#ifndef FERRY_STORE_QUEUE_H
#define FERRY_STORE_QUEUE_H

#include <stddef.h>

typedef struct store store;

/* *on: 1 when machine exists, is team's and is on bridge; 0 otherwise (no such machine, a
 * machine group, another team's or another bridge's), for the caller to ask why. One read
 * of the machine's team and bridge, no row built. */
int store_machine_on(store *s, const char *team, const char *machine, const char *bridge, int *on,
                     char *err, size_t errlen);

#endif
