/*
 * The scheduler: turns schedules (cron + time zone) into queue items, exactly once per
 * (schedule, fire instant) even with several hosts on one store (a unique key, not a
 * leader), honouring enabled / disabled_until and the catch-up policy.
 */
#ifndef FERRY_SCHEDULER_H
#define FERRY_SCHEDULER_H

#include <stdint.h>

#include "config.h"
#include "store.h"

typedef struct scheduler scheduler;

/* Creates a scheduler for the host configured by cfg (borrowed; must outlive it). */
scheduler *scheduler_new(const ferry_config *cfg);

/*
 * Fires every schedule that is due at now_ms (epoch ms), creating its queue items through
 * st. Returns the number of milliseconds until it next has work (the host's poll timeout
 * takes it into account), at most a minute.
 */
int64_t scheduler_tick(scheduler *s, store *st, int64_t now_ms);

void scheduler_free(scheduler *s);

#endif
