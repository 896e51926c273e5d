/*
 * The host's own heartbeat in the store's hosts table (hosts.h), so that `ferry web` can show
 * which hosts are alive: written every HEARTBEAT_MS from the serve loop's chores, and marked
 * stopped at a clean shutdown.
 */
#ifndef FERRY_HEARTBEAT_H
#define FERRY_HEARTBEAT_H

#include <stdint.h>

typedef struct store store;

#define HEARTBEAT_MS 5000

/* Writes the heartbeat when HEARTBEAT_MS have passed since the last one (mono: mono_ms()). */
void heartbeat_tick(store *s, const char *owner, const char *bridge, int running, int64_t mono);

/* Writes the heartbeat now, however recent the last one; the next tick counts from now. */
void heartbeat_beat(store *s, const char *owner, const char *bridge, int running, int64_t mono);

/* Marks the host stopped. */
void heartbeat_stopped(store *s, const char *owner);

#endif
