/* Keep policies: see keep.h. */
#include "keep.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const rule_names[KEEP_RULES] = {"last",   "hourly",  "daily",
                                                   "weekly", "monthly", "yearly"};

int keep_counts(const keep_policy *p)
{
    for (int r = 0; p && r < KEEP_RULES; r++)
        if (p->count[r] != 0)
            return 1;
    return 0;
}

int keep_policy_active(const keep_policy *p)
{
    return p && (keep_counts(p) || p->within > 0);
}

/* Division rounding towards minus infinity (times before 1970 are negative). */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t keep_bucket(int rule, int64_t t, size_t nr)
{
    int64_t day = floor_div(t, 86400);
    time_t tt = (time_t)t;
    struct tm tm = {0};
    switch (rule) {
    case KEEP_LAST:
        return (int64_t)nr;
    case KEEP_HOURLY:
        return floor_div(t, 3600);
    case KEEP_DAILY:
        return day;
    case KEEP_WEEKLY:
        /* 1970-01-01 was a Thursday: shifting by 3 days starts each bucket on a Monday,
         * which is exactly an ISO week (ISO years only name these weeks). */
        return floor_div(day + 3, 7);
    case KEEP_MONTHLY:
        gmtime_r(&tt, &tm);
        return ((int64_t)tm.tm_year + 1900) * 12 + tm.tm_mon;
    default:
        gmtime_r(&tt, &tm);
        return (int64_t)tm.tm_year + 1900;
    }
}

/* Newest first; the greater id is the newer within a second. */
static int newest_first(const void *a, const void *b)
{
    const keep_item *x = *(keep_item *const *)a, *y = *(keep_item *const *)b;
    if (x->time != y->time)
        return x->time > y->time ? -1 : 1;
    int c = strcmp(y->id ? y->id : "", x->id ? x->id : "");
    return c;
}

/* Rules 2-5 of keep.h over the snapshots rule 1 left, newest first. */
static void apply_rules(const keep_policy *p, keep_item **left, size_t n, int64_t now)
{
    int64_t latest = now;
    int have_latest = 0;
    for (size_t i = 0; i < n; i++)
        if (left[i]->time <= now && (!have_latest || left[i]->time > latest)) {
            latest = left[i]->time;
            have_latest = 1;
        }
    int64_t remaining[KEEP_RULES], last[KEEP_RULES];
    int seen[KEEP_RULES] = {0};
    memcpy(remaining, p->count, sizeof(remaining));
    for (size_t i = 0; i < n; i++) {
        keep_item *cur = left[i];
        /* latest - within, where that does not underflow (times come from manifests) */
        if (p->within > 0 && (latest < INT64_MIN + p->within || cur->time > latest - p->within))
            cur->why |= KEEP_WHY_WITHIN;
        for (int r = 0; r < KEEP_RULES; r++) {
            if (remaining[r] == 0)
                continue;
            int64_t val = keep_bucket(r, cur->time, i);
            unsigned bit;
            if (!seen[r] || val != last[r])
                bit = KEEP_WHY_RULE << r;
            else if (i == n - 1)
                bit = KEEP_WHY_OLDEST << r;
            else
                continue;
            cur->why |= bit;
            seen[r] = 1;
            last[r] = val;
            if (remaining[r] > 0)
                remaining[r]--;
        }
        if (cur->expires > now)
            cur->why |= KEEP_WHY_NOT_EXPIRED;
    }
}

void keep_apply(const keep_policy *p, keep_item *items, size_t n, int64_t now)
{
    if (n == 0)
        return;
    keep_item **order = malloc(n * sizeof(*order));
    if (order == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        order[i] = &items[i];
        items[i].keep = 0;
        items[i].why = 0;
    }
    qsort(order, n, sizeof(*order), newest_first);
    /* Rule 1: passed expiries go (never the newest); the rest are compacted in order. */
    size_t left = 0;
    for (size_t i = 0; i < n; i++) {
        keep_item *it = order[i];
        if (i > 0 && it->expires != 0 && it->expires <= now)
            it->why = KEEP_WHY_EXPIRED;
        else
            order[left++] = it;
    }
    if (keep_policy_active(p)) {
        apply_rules(p, order, left, now);
    } else {
        for (size_t i = 0; i < left; i++) {
            keep_item *it = order[i];
            it->why = it->expires > now ? KEEP_WHY_NOT_EXPIRED
                      : it->expires     ? 0 /* the newest, expired: rule 5 below */
                                        : KEEP_WHY_NO_POLICY;
        }
    }
    if (order[0]->why == 0)
        order[0]->why = KEEP_WHY_NEWEST;
    for (size_t i = 0; i < left; i++) {
        if (order[i]->why == 0)
            order[i]->why = KEEP_WHY_UNMATCHED;
        else
            order[i]->keep = 1;
    }
    free(order);
}

const char *keep_why_text(int bit)
{
    static const char *const rules[KEEP_RULES] = {"last snapshot",    "hourly snapshot",
                                                  "daily snapshot",   "weekly snapshot",
                                                  "monthly snapshot", "yearly snapshot"};
    static const char *const oldest[KEEP_RULES] = {
        "oldest last snapshot",   "oldest hourly snapshot",  "oldest daily snapshot",
        "oldest weekly snapshot", "oldest monthly snapshot", "oldest yearly snapshot"};
    if (bit >= 0 && bit < KEEP_RULES)
        return rules[bit];
    if (bit >= KEEP_RULES && bit < 2 * KEEP_RULES)
        return oldest[bit - KEEP_RULES];
    switch (bit - 2 * KEEP_RULES) {
    case 0:
        return "within";
    case 1:
        return "not expired";
    case 2:
        return "newest snapshot";
    case 3:
        return "no policy";
    case 4:
        return "expired";
    case 5:
        return "not kept by the policy";
    default:
        return "?";
    }
}

int keep_policy_parse(const json_t *params, keep_policy *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    for (int r = 0; r < KEEP_RULES; r++) {
        char name[32];
        snprintf(name, sizeof(name), "keep_%s", rule_names[r]);
        const json_t *v = json_object_get(params, name);
        if (v == NULL || json_is_null(v))
            continue;
        json_int_t n = json_integer_value(v);
        if (!json_is_integer(v) || n == 0 || n < KEEP_UNLIMITED) {
            if (err && errlen)
                snprintf(err, errlen,
                         "%s must be an integer, at least 1, or -1 for all (leave it out to not "
                         "use the rule)",
                         name);
            return -1;
        }
        p->count[r] = n;
    }
    const json_t *dv = json_object_get(params, "retention_days");
    const json_t *yv = json_object_get(params, "retention_years");
    double days = json_is_number(dv) ? json_number_value(dv) : 0;
    double years = json_is_number(yv) ? json_number_value(yv) : 0;
    if ((dv && !json_is_null(dv) && !json_is_number(dv)) ||
        (yv && !json_is_null(yv) && !json_is_number(yv)) || !isfinite(days) || !isfinite(years) ||
        days < 0 || years < 0 || years > 1000 || days > 1000 * 366.0) {
        if (err && errlen)
            snprintf(err, errlen,
                     "retention_days and retention_years must be positive numbers (at most "
                     "1000 years)");
        return -1;
    }
    p->within = (int64_t)(days * 86400.0 + years * 365.25 * 86400.0);
    return 0;
}

void keep_policy_describe(const keep_policy *p, char *out, size_t outlen)
{
    size_t len = 0;
    int parts = 0;
    if (outlen == 0)
        return;
    out[0] = '\0';
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int w = snprintf(out + len, outlen - len, __VA_ARGS__);                                    \
        if (w > 0)                                                                                 \
            len = len + (size_t)w < outlen ? len + (size_t)w : outlen - 1;                         \
    } while (0)
    PUT("keep");
    for (int r = 0; r < KEEP_RULES; r++) {
        if (p->count[r] == 0)
            continue;
        PUT("%s ", parts++ ? "," : "");
        if (p->count[r] == KEEP_UNLIMITED)
            PUT("all %s", r == KEEP_LAST ? "latest" : rule_names[r]);
        else
            PUT("%lld %s", (long long)p->count[r], r == KEEP_LAST ? "latest" : rule_names[r]);
    }
    if (parts)
        PUT(" snapshots");
    if (p->within > 0)
        PUT("%s all within %g days of the newest", parts ? " and" : "", p->within / 86400.0);
    if (!parts && p->within <= 0)
        PUT(" every snapshot whose expiry has not passed");
#undef PUT
}
