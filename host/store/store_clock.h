/*
 * The store's own clock: the database server's for PostgreSQL, this machine's for an SQLite
 * file. `ferry doctor` compares the hosts' heartbeats (written with each host's clock) and
 * this machine's clock to it.
 */
#ifndef FERRY_STORE_CLOCK_H
#define FERRY_STORE_CLOCK_H

#include <stddef.h>
#include <stdint.h>

typedef struct store store;

/* The store's time now, ms since the epoch, in *ms. STORE_OK or a status with err set. */
int store_clock_ms(store *s, int64_t *ms, char *err, size_t errlen);

#endif
