/*
 * Keep policies (restic's `forget --keep-*`): which snapshots of one group (a storage, a
 * machine and a repository) stay and why. A pure function of the snapshots' times and
 * recorded expiries, the policy and the current time: no storage I/O, so the collector
 * (gc.c) and the unit tests call the same code. docs/repositories.md "Keep policies" is
 * the operator's description; the rules, in order of evaluation:
 *
 *   1. A recorded expiry that has passed removes its snapshot ("expired"), whatever the
 *      policy says, except the group's newest snapshot, which always stays.
 *   2. Over the snapshots left, newest first, each count rule (last, hourly, daily, weekly,
 *      monthly, yearly) keeps the newest snapshot of each of its `count` most recent UTC
 *      buckets that hold a snapshot (-1: of every bucket); when the rule still has counts
 *      left at the oldest snapshot, that one is kept too ("oldest daily snapshot").
 *      Buckets: the UTC hour, the UTC day, the ISO week (Monday 00:00 to Sunday 23:59 UTC),
 *      the UTC month, the UTC year. `last` counts snapshots, not buckets.
 *   3. `within` keeps every snapshot younger than that, counted back from the group's
 *      newest snapshot that is not in the future ("within").
 *   4. A recorded expiry still to come keeps its snapshot ("not expired").
 *   5. The group's newest snapshot is kept ("newest snapshot") when nothing else keeps it.
 * A snapshot is kept when any rule keeps it; the others are removed ("not kept by the
 * policy"). Without a policy (keep_policy_active() false) only rules 1 and 5 apply.
 * Snapshots of the same second: the greater id counts as the newer.
 */
#ifndef REPO_KEEP_H
#define REPO_KEEP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The count rules, in restic's order of evaluation. */
enum keep_rule {
    KEEP_LAST,
    KEEP_HOURLY,
    KEEP_DAILY,
    KEEP_WEEKLY,
    KEEP_MONTHLY,
    KEEP_YEARLY,
    KEEP_RULES
};

#define KEEP_UNLIMITED (-1)

typedef struct keep_policy {
    int64_t count[KEEP_RULES]; /* 0: rule off; KEEP_UNLIMITED: every bucket; else > 0 */
    int64_t within;            /* seconds; 0: off */
} keep_policy;

/* Why a snapshot stays or goes: bits of keep_item.why. */
enum keep_why {
    KEEP_WHY_RULE = 1u << 0,            /* << rule: kept by count rule `rule` */
    KEEP_WHY_OLDEST = 1u << KEEP_RULES, /* << rule: kept as the oldest, counts left */
    KEEP_WHY_WITHIN = 1u << (2 * KEEP_RULES),
    KEEP_WHY_NOT_EXPIRED = 1u << (2 * KEEP_RULES + 1),
    KEEP_WHY_NEWEST = 1u << (2 * KEEP_RULES + 2),
    KEEP_WHY_NO_POLICY = 1u << (2 * KEEP_RULES + 3), /* kept: no policy, no expiry passed */
    KEEP_WHY_EXPIRED = 1u << (2 * KEEP_RULES + 4),   /* removed */
    KEEP_WHY_UNMATCHED = 1u << (2 * KEEP_RULES + 5), /* removed: no rule keeps it */
    KEEP_WHY_BITS = 2 * KEEP_RULES + 6
};

/* One snapshot of a group: filled by the caller, `keep` and `why` by keep_apply. */
typedef struct keep_item {
    const char *id;  /* orders snapshots of the same second; not copied */
    int64_t time;    /* Unix seconds */
    int64_t expires; /* recorded expiry, Unix seconds; 0: none */
    int keep;        /* out: 1 kept, 0 removed */
    unsigned why;    /* out: KEEP_WHY_* bits */
} keep_item;

/* 1 when a count rule or `within` is set (p may be NULL). */
int keep_policy_active(const keep_policy *p);
/* 1 when a count rule is set (p may be NULL). */
int keep_counts(const keep_policy *p);

/*
 * Decides every item of one group (any order; the array is not reordered) under policy p
 * (NULL: none) at time now. Allocates only a sort order; aborts on out of memory, like
 * every allocation of the plugin.
 */
void keep_apply(const keep_policy *p, keep_item *items, size_t n, int64_t now);

/* The bucket of time t under count rule `rule` (KEEP_LAST: nr, the position). */
int64_t keep_bucket(int rule, int64_t t, size_t nr);

/*
 * The text of one why bit (its index, 0 .. KEEP_WHY_BITS-1): "daily snapshot", "oldest
 * weekly snapshot", "within", "not expired", "newest snapshot", "expired" … Static.
 */
const char *keep_why_text(int bit);

/*
 * Reads keep_last … keep_yearly from params into p (absent: 0) and, as `within`, the sum of
 * retention_days and retention_years (a year is 365.25 days; fractions of a second are
 * dropped). Returns 0, or -1 with a
 * one-line reason in err (errlen bytes; err may be NULL): a count that is not an integer,
 * is 0 or below -1, or a retention that is negative, not finite or over 1000 years.
 */
int keep_policy_parse(const json_t *params, keep_policy *p, char *err, size_t errlen);

/* "keep 7 daily, 4 weekly, all monthly snapshots and all within 30 days of the newest". */
void keep_policy_describe(const keep_policy *p, char *out, size_t outlen);

#endif
