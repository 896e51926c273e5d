/*
 * How a retry is decided: the host's pure decisions about an attempt that ended. Given how
 * the attempt ended (struct outcome), its number, the item's retry settings, a random number
 * and the time, policy_decide says what the store records (final status, or a retry and
 * when), and whether the item's fallback function runs. The host only applies the decision
 * (settle.c); nothing here reads the clock, the store or a random source, so the whole
 * policy is tested as a table (tests/unit/test_policy.c).
 */
#ifndef FERRY_POLICY_H
#define FERRY_POLICY_H

#include <stdint.h>

#include <jansson.h>

#include "outcome.h"
#include "store.h"

/* An item's retry settings: the host's configuration, overridden by the item's vault. */
typedef struct retry_policy {
    int max_retries;  /* retries after the first attempt */
    int64_t delay_ms; /* before the first retry */
    double backoff;   /* multiplier per further retry (>= 1) */
    int64_t max_delay_ms;
    double jitter; /* 0..1: fraction of the delay randomised */
} retry_policy;

/* What to do with an attempt that ended. */
struct policy_decision {
    enum store_outcome_kind status; /* what the store records */
    int final;                      /* 1: COMPLETED, FAILED or CANCELLED: the item is done */
    int64_t retry_at_ms;            /* RETRY: not claimable before (0 otherwise) */
    int64_t delay_ms;               /* RETRY: the delay that gave retry_at_ms */
    int fallback;                   /* 1: the item's fallback function (if any) is queued */
};

/*
 * Decides an attempt's end. attempt is its number (1-based); rnd a uniform number in [0,1)
 * for the jitter; now_ms the time a retry is counted from.
 *  - OK: COMPLETED.
 *  - CANCELLED stopped by the host's shutdown: RELEASE (back to the queue, not a retry).
 *  - CANCELLED otherwise: CANCELLED.
 *  - RETRY, TIMEOUT, CRASHED, UNAVAILABLE (transient) while attempts are left
 *    (attempt <= max_retries): RETRY at now + policy_retry_delay_ms.
 *  - anything else: FAILED, and the fallback runs unless the outcome was INVALID (the
 *    fallback would get the same wrong parameters).
 */
struct policy_decision policy_decide(const struct outcome *out, int attempt, const retry_policy *p,
                                     double rnd, int64_t now_ms);

/*
 * The end of an item the host refused before any worker ran it (its function is not on
 * this bridge, or its parameters are invalid): FAILED, no retry, no fallback.
 */
struct policy_decision policy_refused(void);

/* Where an item whose attempt no host runs any more (lease expired, or lost by a store
 * commit) was. */
enum policy_lost_state {
    LOST_BEFORE_START,     /* ASSIGNED: claimed, never started */
    LOST_WHILE_RUNNING,    /* PROCESSING */
    LOST_WHILE_CANCELLING, /* CANCELLING */
};

/*
 * Decides a lost attempt's end: never started goes back to the queue (RELEASE); cancelling
 * ends CANCELLED; running is retried now when the function is idempotent, else FAILED. No
 * fallback in any case.
 */
struct policy_decision policy_lost(enum policy_lost_state state, int idempotent);

/*
 * The delay before retry number `retry` (1-based): delay * backoff^(retry-1), capped at
 * max_delay, then spread by jitter: a value uniformly in [d*(1-jitter), d]. rnd is a
 * uniform number in [0,1) supplied by the caller (tests pass fixed values).
 */
int64_t policy_retry_delay_ms(const retry_policy *p, int retry, double rnd);

/*
 * An item's retry settings: defaults, with the vault's "max_retries" (integer) and
 * "retry_delay" (integer seconds) when present. vault is borrowed and may be NULL.
 */
retry_policy policy_for_vault(const retry_policy *defaults, const json_t *vault);

#endif
