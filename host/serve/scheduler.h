/*
 * The scheduler: turns schedules (cron + time zone) into queue items, exactly once per
 * (schedule, fire instant) even with several hosts on one store (a unique key, not a
 * leader), honouring enabled / disabled_until and the catch-up policy.
 *
 * Who fires: every host whose bridge serves the schedule's machine (the machine's
 * bridgeName) considers the schedule; hosts of other bridges ignore it. Several hosts on
 * that bridge all try, and the store's unique (team, schedule, fire instant) key on queue
 * items lets exactly one creation through; the others see CONFLICT and move on.
 *
 * A schedule's vault (see docs/schedules.md):
 *   cron            five fields or a macro (cron.h), required
 *   timezone        IANA name, default "UTC"
 *   machine         the team's machine the items run on, required
 *   queue_config    the vault of each item (its "function" required)
 *   notifications   {"on_failure": ADDR|[ADDR…], "on_success": ADDR|[ADDR…]}: added to the
 *                   item's on_failure.notify / on_success.notify
 *   priority        1-5 of each item, default 3
 *   enabled         false: no fires (unless disabled_until says until when)
 *   disabled_until  a date or instant: no fires before it, whatever enabled says; a date or
 *                   a time without zone is read in the schedule's time zone
 *   catchup         fires missed while no host ran: "latest" (default), "none", "all"
 *
 * Test hook: FERRY_TEST_CLOCK_OFFSET_MS and FERRY_TEST_CLOCK_RATE (environment, read by
 * scheduler_new only) shift and speed up the clock the scheduler fires by:
 * scheduler time = real time × rate + offset (ms). Nothing else in ferry reads them; they
 * exist so that tests can cross fire times without waiting for them.
 */
#ifndef FERRY_SCHEDULER_H
#define FERRY_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config.h"
#include "registry.h"
#include "store.h"

/* A fire is on time when made within this long of its instant; later it counts as missed. */
#define SCHEDULER_GRACE_MS 60000
/* catchup "all" makes at most this many missed fires (the most recent ones). */
#define SCHEDULER_CATCHUP_MAX 100
/* The scheduler re-reads the schedules at least this often (real ms), so new and changed
 * schedules take effect within it. */
#define SCHEDULER_RESCAN_MS 1000

typedef struct scheduler scheduler;

/*
 * Creates a scheduler for the host configured by cfg. reg (may be NULL) is consulted at
 * each fire to mark items of IDEMPOTENT functions. Both are borrowed and must outlive the
 * scheduler. Reads the test-clock hook from the environment (see above).
 */
scheduler *scheduler_new(const ferry_config *cfg, const registry *reg);

/*
 * Fires every schedule of this host's bridge that is due at now_ms (real epoch ms; the
 * test hook is applied inside), creating its queue items through st and recording
 * lastRun / nextRun / lastTaskId. Run it inside a store batch so an item and its
 * bookkeeping commit together. Returns the milliseconds (real time, 1 to
 * SCHEDULER_RESCAN_MS) until it next has work.
 */
int64_t scheduler_tick(scheduler *s, store *st, int64_t now_ms);

void scheduler_free(scheduler *s);

/*
 * Builds the vault of the queue item a fire of the schedule with vault schedule_vault
 * creates: a copy of queue_config with the schedule's notifications added to
 * on_failure.notify / on_success.notify. Returns 0 with *out a new reference (caller
 * owns); -1 with err set when queue_config or notifications are malformed.
 */
int scheduler_item_vault(const json_t *schedule_vault, json_t **out, char *err, size_t errlen);

/*
 * Checks what the scheduler reads from a schedule vault beyond cron, timezone and machine:
 * notifications, priority, and the item vault they make (vault_check_host_keys). Returns
 * 0, or -1 with a one-line message in err.
 */
int scheduler_check_vault(const json_t *schedule_vault, char *err, size_t errlen);

/*
 * The first fire of the schedule strictly after after_ms (epoch ms, real), honouring
 * enabled and disabled_until. Returns 1 with *next_ms set; 0 when it does not fire (disabled
 * without an end, or a cron that never fires); -1 with err set when cron, timezone or
 * disabled_until is invalid.
 */
int scheduler_next_fire(const json_t *schedule_vault, int64_t after_ms, int64_t *next_ms, char *err,
                        size_t errlen);

/* The time schedules fire by: the real clock, through the test hook when it is set. */
int64_t scheduler_now_ms(void);

/*
 * Reads disabled_until of a schedule vault into *out_ms (0 when absent): a date or a time
 * without zone is a wall time in the schedule's time zone. Returns 0, or -1 with err set.
 */
int scheduler_disabled_until(const json_t *schedule_vault, int64_t *out_ms, char *err,
                             size_t errlen);

#endif
