/* How a retry is decided; see policy.h. Pure: no clock, no store, no random source. */
#include "policy.h"

#include <math.h>

static int transient(enum outcome_kind kind)
{
    return kind == OUTCOME_RETRY || kind == OUTCOME_TIMEOUT || kind == OUTCOME_CRASHED ||
           kind == OUTCOME_UNAVAILABLE;
}

static struct policy_decision final(enum store_outcome_kind status, int fallback)
{
    return (struct policy_decision){.status = status, .final = 1, .fallback = fallback};
}

struct policy_decision policy_decide(const struct outcome *out, int attempt, const retry_policy *p,
                                     double rnd, int64_t now_ms)
{
    if (out->kind == OUTCOME_OK)
        return final(STORE_OUTCOME_COMPLETED, 0);
    if (out->kind == OUTCOME_CANCELLED && out->stop == STOP_SHUTDOWN)
        return (struct policy_decision){.status = STORE_OUTCOME_RELEASE};
    if (out->kind == OUTCOME_CANCELLED)
        return final(STORE_OUTCOME_CANCELLED, 0);
    if (transient(out->kind) && attempt <= p->max_retries) {
        int64_t delay = policy_retry_delay_ms(p, attempt, rnd);
        return (struct policy_decision){
            .status = STORE_OUTCOME_RETRY, .retry_at_ms = now_ms + delay, .delay_ms = delay};
    }
    return final(STORE_OUTCOME_FAILED, out->kind != OUTCOME_INVALID);
}

struct policy_decision policy_refused(void)
{
    return final(STORE_OUTCOME_FAILED, 0);
}

struct policy_decision policy_lost(enum policy_lost_state state, int idempotent)
{
    switch (state) {
    case LOST_BEFORE_START:
        return (struct policy_decision){.status = STORE_OUTCOME_RELEASE};
    case LOST_WHILE_CANCELLING:
        return final(STORE_OUTCOME_CANCELLED, 0);
    case LOST_WHILE_RUNNING:
        break;
    }
    if (idempotent)
        return (struct policy_decision){.status = STORE_OUTCOME_RETRY};
    return final(STORE_OUTCOME_FAILED, 0);
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

retry_policy policy_for_vault(const retry_policy *defaults, const json_t *vault)
{
    retry_policy p = *defaults;
    const json_t *mr = json_object_get(vault, "max_retries");
    const json_t *rd = json_object_get(vault, "retry_delay");
    if (json_is_integer(mr))
        p.max_retries = (int)json_integer_value(mr);
    if (json_is_integer(rd))
        p.delay_ms = json_integer_value(rd) * 1000;
    return p;
}
