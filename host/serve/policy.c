/* Pure decisions about an attempt's outcome; see policy.h. */
#include "policy.h"

#include <math.h>

int policy_should_retry(const retry_policy *p, runner_status status, int attempt)
{
    int transient = status == RUN_RETRY || status == RUN_TIMEOUT || status == RUN_CRASHED ||
                    status == RUN_UNAVAILABLE;
    return transient && attempt <= p->max_retries;
}

int64_t policy_retry_delay_ms(const retry_policy *p, int retry, double rnd)
{
    if (retry < 1)
        retry = 1;
    double backoff = p->backoff < 1.0 ? 1.0 : p->backoff;
    double d = (double)p->delay_ms * pow(backoff, retry - 1);
    if (p->max_delay_ms > 0 && d > (double)p->max_delay_ms)
        d = (double)p->max_delay_ms;
    double jitter = p->jitter < 0 ? 0 : p->jitter > 1 ? 1 : p->jitter;
    d -= d * jitter * rnd;
    return (int64_t)llround(d);
}

int policy_runs_fallback(runner_status status)
{
    return status != RUN_OK && status != RUN_INVALID && status != RUN_CANCELLED;
}
