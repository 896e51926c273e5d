/* Pure decisions the host makes about an attempt's outcome: retry or not, and when. */
#ifndef FERRY_POLICY_H
#define FERRY_POLICY_H

#include <stdint.h>

#include "runner.h"

typedef struct retry_policy {
    int max_retries;  /* retries after the first attempt */
    int64_t delay_ms; /* before the first retry */
    double backoff;   /* multiplier per further retry (>= 1) */
    int64_t max_delay_ms;
    double jitter; /* 0..1: fraction of the delay randomised */
} retry_policy;

/*
 * Whether an attempt that ended with status, being attempt number `attempt` (1-based),
 * is retried: RETRY, TIMEOUT, CRASHED and UNAVAILABLE are transient; OK, FAIL, INVALID
 * and CANCELLED never are.
 */
int policy_should_retry(const retry_policy *p, runner_status status, int attempt);

/*
 * The delay before retry number `retry` (1-based): delay * backoff^(retry-1), capped at
 * max_delay, then spread by jitter: a value uniformly in [d*(1-jitter), d]. rnd is a
 * uniform number in [0,1) supplied by the caller (tests pass fixed values).
 */
int64_t policy_retry_delay_ms(const retry_policy *p, int retry, double rnd);

/* Whether the fallback function runs after the final outcome: FAIL, TIMEOUT, CRASHED,
 * UNAVAILABLE and an exhausted RETRY; not INVALID (the parameters are wrong, the fallback
 * gets the same ones) nor CANCELLED. */
int policy_runs_fallback(runner_status status);

#endif
