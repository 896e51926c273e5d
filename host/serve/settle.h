/*
 * How an attempt ends. Every end of a claimed item comes here: an attempt a worker ran
 * (settle_ran), an item the host refused before any worker saw it (settle_refused), one no
 * host runs any more (settle_lost), one handed back unrun (settle_release). Each asks
 * policy.c for the decision, builds the one response vault (settle_response) and queues
 * the store change. The host loop writes the queued ends of one loop turn with one
 * store_finish_many inside its transaction (settle_write), commits, and then
 * (settle_after_commit) notifications are sent for the ends that held.
 *
 * Nothing is ever lost: every store change an end implies is part of the end itself, made
 * in its transaction by the store (finish.c): a FAILED item's fallback (built here, created
 * by the store only if the end holds), the retry's schedule, the `after` cascade, a machine
 * group's parent, and a note of the end's notifications (notify_outbox). Only what leaves
 * the store follows the commit: the notifications, handed to a detached `ferry notify
 * send`, after which the note goes. A host killed between the commit and that hand-off
 * leaves the note: a host of the bridge sends them 5 s later (settle_recover_notices): at
 * least once, never lost with the host.
 *
 * Tests: with FERRY_TEST_CRASH=after-failed-commit in its environment, the host kills
 * itself (SIGKILL) right after committing a turn that ended an item FAILED, before
 * settle_after_commit does anything (tests/e2e/host_fallback_crash.sh).
 */
#ifndef FERRY_SETTLE_H
#define FERRY_SETTLE_H

#include <jansson.h>

#include "config.h"
#include "outcome.h"
#include "policy.h"
#include "registry.h"
#include "store.h"

typedef struct settler settler;

/* A settler for a host: cfg, st and reg are borrowed and outlive it; defaults are the
 * host's retry settings (copied). */
settler *settle_new(const ferry_config *cfg, store *st, const registry *reg,
                    const retry_policy *defaults);
/* Frees the settler and every end not yet written. NULL accepted. */
void settle_free(settler *s);

struct durable;
/* The host's commits are synced off its loop (durable.h): notifications leave only once
 * the commit they tell of is on disk. Without (NULL), commits are durable at commit. */
void settle_durable(settler *s, struct durable *d);

/* How many ends are queued (not yet written). */
size_t settle_pending(const settler *s);
/* Items that ended COMPLETED / FAILED so far (ends that held in the store). */
unsigned long settle_completed(const settler *s);
unsigned long settle_failed(const settler *s);

/*
 * An attempt a worker ran ended with out (borrowed; its strings are copied). item is moved
 * into the settler (zeroed on return). secrets: the function's secret parameter names, for
 * redaction (borrowed, may be NULL). started_mono: when the attempt started (mono_ms).
 * Events that tell the decision (ATTEMPT_FAILED, RETRY, INTERRUPTED) are written with the
 * end (settle_write), before it.
 */
void settle_ran(settler *s, struct store_item *item, const json_t *secrets,
                const struct outcome *out, int64_t started_mono);

/* The host refused item before running it: kind is OUTCOME_INVALID or OUTCOME_UNAVAILABLE,
 * code the error code, reason the message. item is moved. */
void settle_refused(settler *s, struct store_item *item, enum outcome_kind kind, const char *code,
                    const char *reason);

/* No host runs item's attempt any more: what names the loss ("host lost"), why its
 * circumstance. item (as store_expired_items gives it) is moved. */
void settle_lost(settler *s, struct store_item *item, const char *what, const char *why);

/* item goes back to the queue unrun, not counted as a retry (no worker took it). Moved. */
void settle_release(settler *s, struct store_item *item, const char *reason);

/*
 * Writes every queued end with one store_finish_many, and the events that follow from it,
 * inside the caller's open batch (or as its own transaction when none is open). Returns
 * the number written. The caller commits, then calls settle_after_commit.
 */
size_t settle_write(settler *s);

/* Sends the notifications of ended items of this bridge that no host handed off (the host
 * that ended them died first) once they are due, and forgets their notes. */
void settle_recover_notices(settler *s);

/* The transaction settle_write wrote into was rolled back: the next settle_write writes the
 * same ends again. */
void settle_rewind(settler *s);

/* After the commit of what settle_write wrote: counts and sends notifications of the ends
 * that held (none when committed is 0), then forgets them. */
void settle_after_commit(settler *s, int committed);

/*
 * The response vault of an ended item (new reference): {"status","function","attempts",
 * "duration_ms","result","error"}, error null when out->kind is OUTCOME_OK, else
 * {"code","outcome","message"}. The tree an end's notifications carry.
 */
json_t *settle_response(const char *function, const char *status, int attempts, int64_t duration_ms,
                        const struct outcome *out);
/*
 * The same vault as the store keeps it: the text json_dumps(settle_response(...),
 * JSON_COMPACT) gives, byte for byte (malloc'd; NULL only where that is NULL). Written
 * directly when its texts are ASCII (an end's usual case): the tree built only to be dumped
 * cost the host about 16,000 instructions an end. Other text goes through the tree, which
 * checks its UTF-8.
 */
char *settle_response_text(const char *function, const char *status, int attempts,
                           int64_t duration_ms, const struct outcome *out);

/*
 * Appends a host event (action, printf-style details, at most 4 KiB) to task_id's trace,
 * inside the open batch if there is one; a failure is logged, never returned.
 */
void settle_event(store *st, const char *task_id, const char *action, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
