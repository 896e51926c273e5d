/*
 * Unit tests for keep policies (issue 15 point 2; plugins/repo/keep.c): restic's
 * `forget --keep-*` semantics over synthetic calendars. The decisions of keep_apply are
 * checked against restic's documented examples, hand-picked edge cases (same bucket, same
 * second, gaps, year boundaries, ISO weeks against calendar weeks, times before 1970), the
 * interplay with recorded expiries, and, over irregular calendars of hundreds of snapshots
 * across several years, against a reference written differently: buckets named with
 * strftime (%G-W%V for ISO weeks) and grouped, the newest of each of the N most recent
 * buckets kept, plus the oldest snapshot when a rule has buckets to spare.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../plugins/repo/keep.c"

static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = s};
    return (int64_t)timegm(&tm);
}

/* A calendar: items with ids "s0000" … in time order. */
typedef struct cal {
    keep_item *items;
    char (*ids)[16];
    size_t n;
} cal;

static void cal_add(cal *c, int64_t t, int64_t expires)
{
    c->items = realloc(c->items, (c->n + 1) * sizeof(*c->items));
    c->ids = realloc(c->ids, (c->n + 1) * sizeof(*c->ids));
    assert_non_null(c->items);
    assert_non_null(c->ids);
    snprintf(c->ids[c->n], sizeof(c->ids[c->n]), "s%04zu", c->n);
    for (size_t i = 0; i < c->n; i++) /* realloc moved the ids */
        c->items[i].id = c->ids[i];
    c->items[c->n] = (keep_item){.id = c->ids[c->n], .time = t, .expires = expires};
    c->n++;
}

static void cal_free(cal *c)
{
    free(c->items);
    free(c->ids);
    memset(c, 0, sizeof(*c));
}

static size_t kept_count(const cal *c)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++)
        k += c->items[i].keep;
    return k;
}

static keep_policy pol(int64_t last, int64_t hourly, int64_t daily, int64_t weekly, int64_t monthly,
                       int64_t yearly)
{
    keep_policy p = {.count = {last, hourly, daily, weekly, monthly, yearly}};
    return p;
}

/* ---- the reference --------------------------------------------------------------------- */

static void label(int rule, int64_t t, size_t pos, char *out, size_t len)
{
    static const char *const fmt[KEEP_RULES] = {NULL,     "%Y-%m-%d %H", "%Y-%m-%d",
                                                "%G-W%V", "%Y-%m",       "%Y"};
    if (rule == KEEP_LAST) {
        snprintf(out, len, "%zu", pos);
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, len, fmt[rule], &tm);
}

static const cal *sort_cal;
static int ref_newest_first(const void *a, const void *b)
{
    const keep_item *x = &sort_cal->items[*(const size_t *)a];
    const keep_item *y = &sort_cal->items[*(const size_t *)b];
    if (x->time != y->time)
        return x->time > y->time ? -1 : 1;
    return strcmp(y->id, x->id);
}

/* Which items the reference keeps (no expiries, no within): 1 per kept item in want. */
static void reference(const cal *c, const keep_policy *p, int *want)
{
    size_t *order = calloc(c->n, sizeof(*order));
    assert_non_null(order);
    for (size_t i = 0; i < c->n; i++)
        order[i] = i;
    sort_cal = c;
    qsort(order, c->n, sizeof(*order), ref_newest_first);
    memset(want, 0, c->n * sizeof(*want));
    for (int r = 0; r < KEEP_RULES; r++) {
        if (p->count[r] == 0)
            continue;
        int64_t buckets = 0;
        char prev[64] = "", cur[64];
        for (size_t i = 0; i < c->n; i++) {
            label(r, c->items[order[i]].time, i, cur, sizeof(cur));
            if (i > 0 && strcmp(cur, prev) == 0)
                continue; /* an older snapshot of a bucket already seen */
            snprintf(prev, sizeof(prev), "%s", cur);
            if (p->count[r] != KEEP_UNLIMITED && buckets == p->count[r])
                break;
            buckets++;
            want[order[i]] = 1;
        }
        /* Fewer buckets than the count: the oldest snapshot is kept as well. */
        if (c->n && (p->count[r] == KEEP_UNLIMITED || buckets < p->count[r]))
            want[order[c->n - 1]] = 1;
    }
    if (c->n)
        want[order[0]] = 1; /* the newest, always */
    free(order);
}

static void check_against_reference(cal *c, const keep_policy *p, const char *what)
{
    int *want = calloc(c->n, sizeof(*want));
    assert_non_null(want);
    reference(c, p, want);
    keep_apply(p, c->items, c->n, utc(2030, 1, 1, 0, 0, 0));
    for (size_t i = 0; i < c->n; i++) {
        if (c->items[i].keep != want[i]) {
            char when[64];
            label(KEEP_DAILY, c->items[i].time, 0, when, sizeof(when));
            print_error("%s: %s (%s, %lld) kept %d, reference %d\n", what, c->items[i].id, when,
                        (long long)c->items[i].time, c->items[i].keep, want[i]);
        }
        assert_int_equal(c->items[i].keep, want[i]);
        assert_true(c->items[i].keep
                        ? (c->items[i].why & ~(KEEP_WHY_EXPIRED | KEEP_WHY_UNMATCHED)) != 0
                        : c->items[i].why == KEEP_WHY_UNMATCHED);
    }
    free(want);
}

/* ---- restic's documented examples ------------------------------------------------------ */

/* doc/060_forget.rst: one backup every Sunday for 12 weeks; --keep-daily 4 keeps the last
 * four Sundays and removes the other eight. */
static void test_restic_twelve_sundays(void **state)
{
    (void)state;
    cal c = {0};
    for (int w = 0; w < 12; w++)
        cal_add(&c, utc(2019, 9, 1, 11, 0, 0) + (int64_t)w * 7 * 86400, 0);
    keep_policy p = pol(0, 0, 4, 0, 0, 0);
    keep_apply(&p, c.items, c.n, utc(2019, 11, 18, 0, 0, 0));
    for (size_t i = 0; i < c.n; i++) {
        assert_int_equal(c.items[i].keep, i >= 8);
        assert_int_equal(c.items[i].why, i >= 8 ? KEEP_WHY_RULE << KEEP_DAILY : KEEP_WHY_UNMATCHED);
    }
    assert_string_equal(keep_why_text(KEEP_DAILY), "daily snapshot");
    cal_free(&c);
}

/* doc/060_forget.rst: a backup every day; --keep-daily 7 --keep-weekly 5 --keep-monthly 12
 * --keep-yearly 75 keeps the 7 dailies, 4 more weeklies (the dailies include one), 12 or 11
 * monthlies and 75 or 74 yearlies. Here three years ending on a Sunday: 11 monthlies of
 * their own, 2 yearlies of their own, and the oldest (75 years asked, 3 there). */
static void test_restic_daily_for_years(void **state)
{
    (void)state;
    cal c = {0};
    for (int64_t t = utc(2022, 1, 1, 2, 0, 0); t <= utc(2024, 12, 29, 2, 0, 0); t += 86400)
        cal_add(&c, t, 0);
    keep_policy p = pol(0, 0, 7, 5, 12, 75);
    check_against_reference(&c, &p, "daily for 3 years");
    size_t daily = 0, weekly_only = 0, monthly_only = 0, yearly_only = 0, oldest = 0;
    for (size_t i = 0; i < c.n; i++) {
        unsigned w = c.items[i].why;
        daily += (w & (KEEP_WHY_RULE << KEEP_DAILY)) != 0;
        weekly_only += w == (KEEP_WHY_RULE << KEEP_WEEKLY);
        monthly_only += (w & ~(KEEP_WHY_RULE << KEEP_YEARLY)) == (KEEP_WHY_RULE << KEEP_MONTHLY);
        yearly_only += w == (KEEP_WHY_RULE << KEEP_YEARLY);
        oldest += (w & (KEEP_WHY_OLDEST << KEEP_YEARLY)) != 0;
    }
    assert_int_equal(daily, 7);
    assert_int_equal(weekly_only, 4); /* the 7 dailies hold the newest week's Sunday */
    /* 2024-12-29 is the newest daily and December's monthly: 11 monthlies of their own. */
    assert_int_equal(monthly_only, 11);
    assert_int_equal(yearly_only, 2); /* 2023-12-31 and 2022-12-31 */
    assert_int_equal(oldest, 1);      /* 2022-01-01 */
    assert_int_equal(c.items[0].why, KEEP_WHY_OLDEST << KEEP_YEARLY);
    assert_int_equal(kept_count(&c), 7 + 4 + 11 + 2 + 1);
    cal_free(&c);
}

/* ---- irregular calendars against the reference ----------------------------------------- */

static uint64_t rng_state;
static uint64_t rng(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return rng_state >> 33;
}

/* About 700 snapshots over four years: bursts minutes apart, hours apart, days apart and
 * gaps of weeks, at irregular times of day. */
static void irregular(cal *c, uint64_t seed)
{
    rng_state = seed;
    int64_t t = utc(2020, 11, 20, 0, 0, 0) + (int64_t)(rng() % 86400);
    while (t < utc(2024, 12, 1, 0, 0, 0)) {
        cal_add(c, t, 0);
        switch (rng() % 10) {
        case 0:
        case 1:
            t += 60 + (int64_t)(rng() % 3600); /* minutes */
            break;
        case 2:
        case 3:
        case 4:
            t += 3600 + (int64_t)(rng() % (12 * 3600)); /* hours */
            break;
        case 9:
            t += 86400 * (7 + (int64_t)(rng() % 20)); /* a gap of weeks */
            break;
        default:
            t += 86400 + (int64_t)(rng() % (3 * 86400)); /* days */
        }
    }
}

static void test_irregular_calendar(void **state)
{
    (void)state;
    const keep_policy policies[] = {
        pol(0, 0, 7, 5, 12, 75),  pol(3, 0, 0, 0, 0, 0),     pol(0, 24, 0, 0, 0, 0),
        pol(0, 0, 30, 0, 0, 0),   pol(0, 0, 0, 8, 0, 0),     pol(0, 0, 0, 0, 6, 0),
        pol(0, 0, 0, 0, 0, 2),    pol(0, 0, 0, -1, 0, 0),    pol(0, 0, 0, 0, -1, 0),
        pol(0, -1, 0, 0, 0, 0),   pol(5, 48, 14, 8, 24, 10), pol(1, 0, 0, 0, 0, -1),
        pol(0, 0, 0, 0, 1000, 0), pol(-1, 0, 0, 0, 0, 0),
    };
    const uint64_t seeds[] = {1, 42, 20261206};
    for (size_t s = 0; s < sizeof(seeds) / sizeof(*seeds); s++) {
        cal c = {0};
        irregular(&c, seeds[s]);
        assert_true(c.n > 400);
        for (size_t k = 0; k < sizeof(policies) / sizeof(*policies); k++) {
            char what[200], desc[160];
            keep_policy_describe(&policies[k], desc, sizeof(desc));
            snprintf(what, sizeof(what), "seed %llu, %zu snapshots, %s",
                     (unsigned long long)seeds[s], c.n, desc);
            check_against_reference(&c, &policies[k], what);
        }
        cal_free(&c);
    }
}

/* Order of the input does not matter: the same calendar shuffled gives the same answers. */
static void test_input_order(void **state)
{
    (void)state;
    cal c = {0};
    irregular(&c, 7);
    keep_policy p = pol(2, 12, 10, 6, 6, 3);
    keep_apply(&p, c.items, c.n, utc(2030, 1, 1, 0, 0, 0));
    int *was = calloc(c.n, sizeof(*was));
    assert_non_null(was);
    for (size_t i = 0; i < c.n; i++)
        was[i] = c.items[i].keep * 1000000 + (int)c.items[i].why;
    keep_item *shuffled = calloc(c.n, sizeof(*shuffled));
    size_t *from = calloc(c.n, sizeof(*from));
    assert_non_null(shuffled);
    assert_non_null(from);
    for (size_t i = 0; i < c.n; i++)
        from[i] = i;
    for (size_t i = c.n - 1; i > 0; i--) {
        size_t j = rng() % (i + 1), x = from[i];
        from[i] = from[j];
        from[j] = x;
    }
    for (size_t i = 0; i < c.n; i++)
        shuffled[i] = c.items[from[i]];
    keep_apply(&p, shuffled, c.n, utc(2030, 1, 1, 0, 0, 0));
    for (size_t i = 0; i < c.n; i++)
        assert_int_equal(shuffled[i].keep * 1000000 + (int)shuffled[i].why, was[from[i]]);
    free(was);
    free(shuffled);
    free(from);
    cal_free(&c);
}

/* ---- edge cases -------------------------------------------------------------------------- */

/* Two snapshots in one bucket: the newer is the bucket's; in one second, the greater id. */
static void test_same_bucket(void **state)
{
    (void)state;
    cal c = {0};
    cal_add(&c, utc(2025, 3, 4, 1, 0, 0), 0);
    cal_add(&c, utc(2025, 3, 4, 23, 59, 59), 0);
    cal_add(&c, utc(2025, 3, 3, 12, 0, 0), 0);
    keep_policy p = pol(0, 0, 2, 0, 0, 0);
    keep_apply(&p, c.items, c.n, utc(2025, 3, 5, 0, 0, 0));
    assert_int_equal(c.items[0].keep, 0);
    assert_int_equal(c.items[1].keep, 1);
    assert_int_equal(c.items[2].keep, 1);
    cal_free(&c);

    cal d = {0};
    cal_add(&d, utc(2025, 3, 4, 12, 0, 0), 0); /* s0000 */
    cal_add(&d, utc(2025, 3, 4, 12, 0, 0), 0); /* s0001: same second, greater id */
    cal_add(&d, utc(2025, 3, 1, 12, 0, 0), 0);
    p = pol(0, 0, 1, 0, 0, 0);
    keep_apply(&p, d.items, d.n, utc(2025, 3, 5, 0, 0, 0));
    assert_int_equal(d.items[0].keep, 0);
    assert_int_equal(d.items[1].keep, 1);
    assert_int_equal(d.items[2].keep, 0);
    p = pol(1, 0, 0, 0, 0, 0);
    keep_apply(&p, d.items, d.n, utc(2025, 3, 5, 0, 0, 0));
    assert_int_equal(d.items[1].why, KEEP_WHY_RULE << KEEP_LAST);
    assert_int_equal(kept_count(&d), 1);
    cal_free(&d);
}

/* Buckets only count when they hold a snapshot: gaps of months do not use counts up. */
static void test_gaps(void **state)
{
    (void)state;
    cal c = {0};
    for (int i = 0; i < 6; i++)
        cal_add(&c, utc(2023, 1, 1, 8, 0, 0) + (int64_t)i * 100 * 86400, 0);
    keep_policy p = pol(0, 0, 3, 0, 0, 0);
    keep_apply(&p, c.items, c.n, utc(2025, 1, 1, 0, 0, 0));
    for (size_t i = 0; i < c.n; i++)
        assert_int_equal(c.items[i].keep, i >= 3);
    p = pol(0, 24, 0, 0, 0, 0); /* 24 hourly buckets, 6 snapshots: all kept */
    keep_apply(&p, c.items, c.n, utc(2025, 1, 1, 0, 0, 0));
    assert_int_equal(kept_count(&c), 6);
    cal_free(&c);
}

/* ISO weeks run Monday to Sunday and may straddle years; calendar weeks would not. */
static void test_iso_weeks_and_year_boundaries(void **state)
{
    (void)state;
    cal c = {0};
    cal_add(&c, utc(2020, 12, 28, 9, 0, 0), 0);  /* Mon, 2020-W53 */
    cal_add(&c, utc(2020, 12, 31, 9, 0, 0), 0);  /* Thu, 2020-W53 */
    cal_add(&c, utc(2021, 1, 1, 9, 0, 0), 0);    /* Fri, 2020-W53 */
    cal_add(&c, utc(2021, 1, 3, 23, 59, 59), 0); /* Sun, 2020-W53: the week's newest */
    cal_add(&c, utc(2021, 1, 4, 0, 0, 0), 0);    /* Mon, 2021-W01 */
    keep_policy p = pol(0, 0, 0, 2, 0, 0);
    keep_apply(&p, c.items, c.n, utc(2021, 2, 1, 0, 0, 0));
    assert_int_equal(c.items[0].keep, 0);
    assert_int_equal(c.items[1].keep, 0);
    assert_int_equal(c.items[2].keep, 0);
    assert_int_equal(c.items[3].keep, 1);
    assert_int_equal(c.items[4].keep, 1);
    /* keep_yearly splits at 1 January: 2020's newest is the Thursday. */
    p = pol(0, 0, 0, 0, 0, 2);
    keep_apply(&p, c.items, c.n, utc(2021, 2, 1, 0, 0, 0));
    assert_int_equal(c.items[1].keep, 1);
    assert_int_equal(c.items[1].why, KEEP_WHY_RULE << KEEP_YEARLY);
    assert_int_equal(c.items[4].keep, 1);
    assert_int_equal(kept_count(&c), 2);
    /* keep_monthly likewise: December's newest is the 31st. */
    p = pol(0, 0, 0, 0, 2, 0);
    keep_apply(&p, c.items, c.n, utc(2021, 2, 1, 0, 0, 0));
    assert_int_equal(c.items[1].keep, 1);
    assert_int_equal(kept_count(&c), 2);
    cal_free(&c);

    /* 2024-12-30 (Monday) is in ISO week 2025-W01, with 2025-01-01. */
    assert_int_equal(keep_bucket(KEEP_WEEKLY, utc(2024, 12, 30, 0, 0, 0), 0),
                     keep_bucket(KEEP_WEEKLY, utc(2025, 1, 5, 23, 59, 59), 0));
    assert_int_not_equal(keep_bucket(KEEP_WEEKLY, utc(2024, 12, 29, 23, 59, 59), 0),
                         keep_bucket(KEEP_WEEKLY, utc(2024, 12, 30, 0, 0, 0), 0));
    /* Before 1970: 1969-12-29 (Monday) is in 1970-01-01's week, 1969-12-28 is not. */
    assert_int_equal(keep_bucket(KEEP_WEEKLY, utc(1969, 12, 29, 0, 0, 0), 0),
                     keep_bucket(KEEP_WEEKLY, utc(1970, 1, 1, 0, 0, 0), 0));
    assert_int_not_equal(keep_bucket(KEEP_WEEKLY, utc(1969, 12, 28, 23, 0, 0), 0),
                         keep_bucket(KEEP_WEEKLY, utc(1969, 12, 29, 0, 0, 0), 0));
    assert_int_equal(keep_bucket(KEEP_DAILY, utc(1969, 12, 31, 23, 0, 0), 0), -1);
    assert_int_equal(keep_bucket(KEEP_HOURLY, utc(1969, 12, 31, 23, 30, 0), 0), -1);
    /* Hours and days are UTC's: no daylight saving time moves them. */
    assert_int_equal(keep_bucket(KEEP_HOURLY, utc(2025, 3, 30, 2, 59, 59), 0) + 1,
                     keep_bucket(KEEP_HOURLY, utc(2025, 3, 30, 3, 0, 0), 0));
}

/* A rule with counts left at the oldest snapshot keeps it too (restic: "oldest"). */
static void test_oldest_kept_while_counts_remain(void **state)
{
    (void)state;
    cal c = {0};
    cal_add(&c, utc(2025, 5, 1, 8, 0, 0), 0);  /* oldest, same day as the next */
    cal_add(&c, utc(2025, 5, 1, 20, 0, 0), 0); /* May 1st's daily */
    cal_add(&c, utc(2025, 5, 2, 8, 0, 0), 0);
    keep_policy p = pol(0, 0, 10, 0, 0, 0);
    keep_apply(&p, c.items, c.n, utc(2025, 6, 1, 0, 0, 0));
    assert_int_equal(kept_count(&c), 3);
    assert_int_equal(c.items[0].why, KEEP_WHY_OLDEST << KEEP_DAILY);
    assert_string_equal(keep_why_text(KEEP_RULES + KEEP_DAILY), "oldest daily snapshot");
    p = pol(0, 0, 2, 0, 0, 0); /* no counts left: the oldest goes */
    keep_apply(&p, c.items, c.n, utc(2025, 6, 1, 0, 0, 0));
    assert_int_equal(c.items[0].keep, 0);
    assert_int_equal(kept_count(&c), 2);
    cal_free(&c);
}

/* A passed expiry removes whatever the policy says (never the newest); an expiry to come
 * keeps whatever the policy says; without a policy only expiries count. */
static void test_expiry_and_policy(void **state)
{
    (void)state;
    int64_t now = utc(2025, 6, 1, 0, 0, 0);
    cal c = {0};
    cal_add(&c, utc(2025, 1, 1, 0, 0, 0), now - 1);     /* expired */
    cal_add(&c, utc(2025, 2, 1, 0, 0, 0), now + 86400); /* not expired */
    cal_add(&c, utc(2025, 3, 1, 0, 0, 0), 0);           /* no expiry */
    cal_add(&c, utc(2025, 5, 31, 0, 0, 0), now - 10);   /* newest, expired */
    keep_policy p = pol(100, 0, 0, 0, 0, 0);
    keep_apply(&p, c.items, c.n, now);
    assert_int_equal(c.items[0].keep, 0);
    assert_int_equal(c.items[0].why, KEEP_WHY_EXPIRED);
    assert_int_equal(c.items[1].keep, 1);
    assert_int_equal(c.items[2].keep, 1);
    assert_int_equal(c.items[3].keep, 1);
    /* One monthly: May's; March goes; February's expiry is still to come. */
    p = pol(0, 0, 0, 0, 1, 0);
    keep_apply(&p, c.items, c.n, now);
    assert_int_equal(c.items[1].why, KEEP_WHY_NOT_EXPIRED);
    assert_int_equal(c.items[2].why, KEEP_WHY_UNMATCHED);
    /* Expired snapshots take no bucket: with three monthlies, February is the third and
     * January's expired one is not counted. */
    p = pol(0, 0, 0, 0, 3, 0);
    keep_apply(&p, c.items, c.n, now);
    assert_int_equal(c.items[2].why, KEEP_WHY_RULE << KEEP_MONTHLY);
    assert_int_equal(c.items[1].why, KEEP_WHY_NOT_EXPIRED | (KEEP_WHY_RULE << KEEP_MONTHLY));
    assert_int_equal(c.items[0].why, KEEP_WHY_EXPIRED);
    p = pol(0, 0, 0, 0, 1, 0);
    keep_apply(&p, c.items, c.n, now);
    assert_int_equal(c.items[3].why, KEEP_WHY_RULE << KEEP_MONTHLY);
    /* keep_last 1: the no-expiry snapshot of March goes, the unexpired one stays. */
    cal_add(&c, utc(2025, 5, 31, 1, 0, 0), 0); /* the new newest */
    p = pol(1, 0, 0, 0, 0, 0);
    keep_apply(&p, c.items, c.n, now);
    assert_int_equal(c.items[1].keep, 1);
    assert_int_equal(c.items[2].keep, 0);
    assert_int_equal(c.items[2].why, KEEP_WHY_UNMATCHED);
    assert_int_equal(c.items[3].keep, 0);
    assert_int_equal(c.items[3].why, KEEP_WHY_EXPIRED);
    assert_int_equal(c.items[4].why, KEEP_WHY_RULE << KEEP_LAST);
    /* No policy: the expired go, the rest stay; an expired newest stays as the newest. */
    keep_apply(NULL, c.items, c.n, now);
    assert_int_equal(c.items[0].keep, 0);
    assert_int_equal(c.items[1].why, KEEP_WHY_NOT_EXPIRED);
    assert_int_equal(c.items[2].why, KEEP_WHY_NO_POLICY);
    assert_int_equal(c.items[3].keep, 0);
    assert_int_equal(c.items[4].keep, 1);
    c.n = 4; /* without the new one, the expired snapshot of May 31st is the newest */
    keep_apply(NULL, c.items, c.n, now);
    assert_int_equal(c.items[3].keep, 1);
    assert_int_equal(c.items[3].why, KEEP_WHY_NEWEST);
    c.n = 5;
    cal_free(&c);
}

/* `within` counts back from the newest snapshot that is not in the future, not from now. */
static void test_within(void **state)
{
    (void)state;
    int64_t now = utc(2025, 6, 1, 0, 0, 0);
    cal c = {0};
    for (int d = 1; d <= 10; d++)
        cal_add(&c, utc(2025, 1, d, 12, 0, 0), 0);
    cal_add(&c, now + 30 * 86400, 0); /* a clock ahead: ignored as the newest */
    keep_policy p = {.within = 3 * 86400};
    keep_apply(&p, c.items, c.n, now);
    for (int d = 1; d <= 10; d++)
        assert_int_equal(c.items[d - 1].keep, d > 7); /* Jan 8, 9, 10 (strictly within) */
    assert_int_equal(c.items[10].keep, 1);
    assert_int_equal(c.items[9].why, KEEP_WHY_WITHIN);
    /* Combined: a snapshot is kept if any rule keeps it. Three weeks: the future one's,
     * Jan 6-12's (Jan 10, within as well) and Dec 30-Jan 5's (Jan 5, a Sunday). */
    p.count[KEEP_WEEKLY] = 3;
    keep_apply(&p, c.items, c.n, now);
    assert_int_equal(c.items[9].why, KEEP_WHY_WITHIN | (KEEP_WHY_RULE << KEEP_WEEKLY));
    assert_int_equal(c.items[4].keep, 1);
    assert_int_equal(c.items[4].why, KEEP_WHY_RULE << KEEP_WEEKLY);
    assert_int_equal(kept_count(&c), 5);
    cal_free(&c);
}

static void test_parse(void **state)
{
    (void)state;
    keep_policy p;
    char err[200];
    json_t *ok = json_pack("{s:i,s:i,s:i,s:f}", "keep_daily", 7, "keep_monthly", -1, "keep_last", 1,
                           "retention_days", 1.5);
    assert_int_equal(keep_policy_parse(ok, &p, err, sizeof(err)), 0);
    assert_int_equal(p.count[KEEP_DAILY], 7);
    assert_int_equal(p.count[KEEP_MONTHLY], KEEP_UNLIMITED);
    assert_int_equal(p.count[KEEP_WEEKLY], 0);
    assert_int_equal(p.within, 129600);
    assert_true(keep_policy_active(&p));
    char desc[200];
    keep_policy_describe(&p, desc, sizeof(desc));
    assert_string_equal(desc,
                        "keep 1 latest, 7 daily, all monthly snapshots and all within 1.5 days "
                        "of the newest");
    json_decref(ok);

    const char *bad[] = {"{\"keep_daily\": 0}",         "{\"keep_weekly\": -2}",
                         "{\"keep_last\": 1.5}",        "{\"keep_yearly\": \"3\"}",
                         "{\"keep_hourly\": true}",     "{\"retention_days\": -1}",
                         "{\"retention_years\": 1001}", "{\"retention_days\": \"7\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        json_t *v = json_loads(bad[i], 0, NULL);
        assert_non_null(v);
        err[0] = '\0';
        assert_int_equal(keep_policy_parse(v, &p, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "must be"));
        assert_null(strchr(err, '\n'));
        assert_int_equal(keep_policy_parse(v, &p, NULL, 0), -1);
        json_decref(v);
    }
    json_t *none = json_object();
    assert_int_equal(keep_policy_parse(none, &p, err, sizeof(err)), 0);
    assert_false(keep_policy_active(&p));
    json_decref(none);
    json_t *nul = json_pack("{s:n}", "keep_daily");
    assert_int_equal(keep_policy_parse(nul, &p, err, sizeof(err)), 0);
    assert_false(keep_policy_active(&p));
    json_decref(nul);
}

/* Times and expiries a damaged or hostile manifest may hold: no overflow, a decision each. */
static void test_extreme_times(void **state)
{
    (void)state;
    keep_item it[4] = {{.id = "a", .time = INT64_MIN, .expires = INT64_MIN},
                       {.id = "b", .time = INT64_MAX, .expires = INT64_MAX},
                       {.id = "c", .time = -1, .expires = 1},
                       {.id = "d", .time = 0}};
    keep_policy p = {.count = {2, 1, 1, 1, 1, 1}, .within = INT64_MAX};
    keep_apply(&p, it, 4, 0);
    assert_int_equal(it[1].keep, 1); /* the newest */
    assert_int_equal(it[0].keep, 0); /* expired */
    p.within = 86400;
    keep_apply(&p, it, 4, INT64_MIN);
    assert_int_equal(it[1].keep, 1);
    for (int r = 0; r < KEEP_RULES; r++) {
        (void)keep_bucket(r, INT64_MIN, 0);
        (void)keep_bucket(r, INT64_MAX, 0);
    }
}

static void test_empty_group(void **state)
{
    (void)state;
    keep_policy p = pol(1, 0, 0, 0, 0, 0);
    keep_apply(&p, NULL, 0, 0);
    keep_item one = {.id = "x", .time = 5};
    keep_apply(&p, &one, 1, 10);
    assert_int_equal(one.keep, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restic_twelve_sundays),
        cmocka_unit_test(test_restic_daily_for_years),
        cmocka_unit_test(test_irregular_calendar),
        cmocka_unit_test(test_input_order),
        cmocka_unit_test(test_same_bucket),
        cmocka_unit_test(test_gaps),
        cmocka_unit_test(test_iso_weeks_and_year_boundaries),
        cmocka_unit_test(test_oldest_kept_while_counts_remain),
        cmocka_unit_test(test_expiry_and_policy),
        cmocka_unit_test(test_within),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_extreme_times),
        cmocka_unit_test(test_empty_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
