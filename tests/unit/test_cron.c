/*
 * Unit tests for host/base/cron.c and host/base/tz.c: parsing, next-fire tables, a year of fires in
 * DST zones, and the TZif reader checked against the C library.
 *
 * The C library's localtime_r (with $TZ) is used here, and only here, as an independent
 * oracle for UTC offsets. Fixture zone files are written by the tests themselves into a
 * temporary directory that $TZDIR then points at.
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
#include <unistd.h>
#include <sys/stat.h>

#include "cron.h"
#include "tz.h"

#define DAY 86400

/* ---- helpers ---- */

/* "2026-03-08T07:00:00Z" as seconds since the epoch, through the C library (not tz.c). */
static int64_t utc(const char *iso)
{
    struct tm tm = {0};
    int n = 0;
    int fields = sscanf(iso, "%d-%d-%dT%d:%d:%dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                        &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n);
    assert_int_equal(fields, 6);
    assert_int_equal(iso[n], '\0');
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

static void format_utc(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Local midnight of a date in tz, as an instant (the first one, should the day repeat it). */
static int64_t local_midnight(const tz_info *tz, int year, int month, int day)
{
    return tz_local_to_utc(tz, tz_days_from_civil(year, month, day) * DAY).earliest;
}

static tz_info *load(const char *name)
{
    tz_info *tz = NULL;
    char err[256] = "";
    if (tz_load(name, &tz, err, sizeof(err)) != 0)
        fail_msg("tz_load(%s): %s", name, err);
    return tz;
}

static cron_expr parse(const char *text)
{
    cron_expr e;
    char err[256] = "";
    if (cron_parse(text, &e, err, sizeof(err)) != 0)
        fail_msg("cron_parse(%s): %s", text, err);
    return e;
}

static uint64_t xorshift_state = 0x9E3779B97F4A7C15ull;

static uint64_t random_u64(void)
{
    uint64_t x = xorshift_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return xorshift_state = x;
}

static int64_t random_between(int64_t low, int64_t high)
{
    return low + (int64_t)(random_u64() % (uint64_t)(high - low));
}

/* The C library's UTC offset for $TZ = tz_value at instant t. */
static void libc_use_zone(const char *tz_value)
{
    setenv("TZ", tz_value, 1);
    tzset();
}

static int32_t libc_offset(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    assert_non_null(localtime_r(&tt, &tm));
    return (int32_t)tm.tm_gmtoff;
}

/* ---- parsing ---- */

static void test_parse_bits(void **state)
{
    (void)state;
    cron_expr e = parse("*/15 0,12 1-5 JAN-mar,DEC mon-fri");
    assert_true(e.minutes == ((1ull << 0) | (1ull << 15) | (1ull << 30) | (1ull << 45)));
    assert_int_equal(e.hours, (1u << 0) | (1u << 12));
    assert_int_equal(e.days_of_month, 0x3e);
    assert_int_equal(e.months, (1u << 1) | (1u << 2) | (1u << 3) | (1u << 12));
    assert_int_equal(e.days_of_week, 0x3e);
    assert_int_equal(e.flags, 0);

    e = parse("5/20 1-23/11 * * *");
    assert_true(e.minutes == ((1ull << 5) | (1ull << 25) | (1ull << 45)));
    assert_int_equal(e.hours, (1u << 1) | (1u << 12) | (1u << 23));
    assert_int_equal(e.days_of_month, 0xfffffffe);
    assert_int_equal(e.months, 0x1ffe);
    assert_int_equal(e.days_of_week, 0x7f);
    assert_int_equal(e.flags, CRON_DOM_STAR | CRON_DOW_STAR);

    /* 7 is Sunday, like 0; ranges may end at 7. */
    assert_int_equal(parse("0 0 * * 7").days_of_week, 1);
    assert_int_equal(parse("0 0 * * 5-7").days_of_week, (1 << 5) | (1 << 6) | 1);
    assert_int_equal(parse("0 0 * * 0-7").days_of_week, 0x7f);
    assert_int_equal(parse("0 0 * * SUN,sat").days_of_week, 1 | (1 << 6));
    assert_int_equal(parse("0 0 * * */2").days_of_week, 1 | (1 << 2) | (1 << 4) | (1 << 6));
    assert_true(parse("59 23 31 12 6").minutes == 1ull << 59);
    assert_int_equal(parse("0 */2 * * *").flags, CRON_HOUR_STAR | CRON_DOM_STAR | CRON_DOW_STAR);
    assert_int_equal(parse("0 0 */2 * 1").flags, CRON_DOM_STAR);
    assert_int_equal(parse("0 0 1 * *").flags, CRON_DOW_STAR);
    /* Blank space of any kind around and between fields; leading zeros. */
    e = parse("  \t00  02\t* *  *\n");
    assert_true(e.minutes == 1);
    assert_int_equal(e.hours, 1u << 2);
}

static void test_parse_macros(void **state)
{
    (void)state;
    static const struct {
        const char *macro, *expansion;
    } cases[] = {
        {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
        {"@hourly", "0 * * * *"}, {"@DAILY", "0 0 * * *"},    {"  @Hourly  ", "0 * * * *"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cron_expr a = parse(cases[i].macro), b = parse(cases[i].expansion);
        assert_memory_equal(&a, &b, sizeof(a));
    }
}

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *message;
    } cases[] = {
        /* each field out of range */
        {"60 * * * *", "cron field 1 (minute) '60' is out of range 0-59"},
        {"0 25 * * *", "cron field 2 (hour) '25' is out of range 0-23"},
        {"0 24 * * *", "cron field 2 (hour) '24' is out of range 0-23"},
        {"0 0 0 * *", "cron field 3 (day-of-month) '0' is out of range 1-31"},
        {"0 0 32 * *", "cron field 3 (day-of-month) '32' is out of range 1-31"},
        {"0 0 * 0 *", "cron field 4 (month) '0' is out of range 1-12"},
        {"0 0 * 13 *", "cron field 4 (month) '13' is out of range 1-12"},
        {"0 0 * * 8", "cron field 5 (day-of-week) '8' is out of range 0-7"},
        {"0 1-99999999999999999999 * * *",
         "cron field 2 (hour) '99999999999999999999' is out of range 0-23"},
        {"1,2,70 * * * *", "cron field 1 (minute) '70' is out of range 0-59"},
        /* bad names and values */
        {"0 0 * FOO *",
         "cron field 4 (month) 'FOO' is not a month name (JAN-DEC) or a number 1-12"},
        {"0 0 * * MONDAY",
         "cron field 5 (day-of-week) 'MONDAY' is not a day name (SUN-SAT) or a number 0-7"},
        {"0 0 * * JAN",
         "cron field 5 (day-of-week) 'JAN' is not a day name (SUN-SAT) or a number 0-7"},
        {"0 0 * MON *",
         "cron field 4 (month) 'MON' is not a month name (JAN-DEC) or a number 1-12"},
        {"MON * * * *", "cron field 1 (minute) 'MON' is not a number 0-59"},
        {"1x * * * *", "cron field 1 (minute) '1x' is not a number 0-59"},
        {"? * * * *", "cron field 1 (minute) '?' is not a number 0-59"},
        {"-5 * * * *", "cron field 1 (minute) '-5' is missing a value; expected a number 0-59"},
        {"5- * * * *", "cron field 1 (minute) '5-' is missing a value; expected a number 0-59"},
        {"1-2-3 * * * *",
         "cron field 1 (minute) '1-2-3' is not valid; expected a number 0-59, a range a-b or a "
         "step */n"},
        /* bad steps */
        {"*/0 * * * *", "cron field 1 (minute) step '0' in '*/0' is out of range 1-60"},
        {"*/61 * * * *", "cron field 1 (minute) step '61' in '*/61' is out of range 1-60"},
        {"0 */25 * * *", "cron field 2 (hour) step '25' in '*/25' is out of range 1-24"},
        {"0 0 * * */8", "cron field 5 (day-of-week) step '8' in '*/8' is out of range 1-7"},
        {"*/x * * * *", "cron field 1 (minute) step 'x' in '*/x' is not a number"},
        {"1-5/ * * * *", "cron field 1 (minute) step '' in '1-5/' is not a number"},
        {"*/2/2 * * * *", "cron field 1 (minute) step '2/2' in '*/2/2' is not a number"},
        {"*5 * * * *",
         "cron field 1 (minute) '*5' is not valid; '*' may only be followed by /STEP"},
        {"*-5 * * * *",
         "cron field 1 (minute) '*-5' is not valid; '*' may only be followed by /STEP"},
        /* ranges and lists */
        {"0 22-2 * * *", "cron field 2 (hour) range '22-2' runs backwards; split it, as in "
                         "22-23,0-2"},
        {"0 0 * DEC-JAN *", "cron field 4 (month) range 'DEC-JAN' runs backwards; split it, as in "
                            "12-12,1-1"},
        {"1,,2 * * * *", "cron field 1 (minute) '1,,2' has an empty list item"},
        {",1 * * * *", "cron field 1 (minute) ',1' has an empty list item"},
        {"0 0 * * 1,", "cron field 5 (day-of-week) '1,' has an empty list item"},
        /* field counts */
        {"* * * *", "cron expression has 4 fields; expected 5 (minute hour day-of-month month "
                    "day-of-week) or a macro like @daily"},
        {"* * * * * *", "cron expression has 6 fields; expected 5 (minute hour day-of-month "
                        "month day-of-week) or a macro like @daily"},
        {"daily", "cron expression has 1 field; expected 5 (minute hour day-of-month month "
                  "day-of-week) or a macro like @daily"},
        {"", "cron expression is empty; expected 5 fields (minute hour day-of-month month "
             "day-of-week) or a macro like @daily"},
        {" \t ", "cron expression is empty; expected 5 fields (minute hour day-of-month month "
                 "day-of-week) or a macro like @daily"},
        /* macros */
        {"@reboot", "unknown cron macro '@reboot'; expected @yearly, @annually, @monthly, "
                    "@weekly, @daily, @midnight or @hourly"},
        {"@", "unknown cron macro '@'; expected @yearly, @annually, @monthly, @weekly, @daily, "
              "@midnight or @hourly"},
        {"@daily 0", "cron macro '@daily' takes no fields after it"},
        /* never fires */
        {"0 0 30 2 *", "cron expression never fires: day-of-month '30' does not occur in month "
                       "'2'"},
        {"0 0 31 APR,JUN,SEP,NOV *", "cron expression never fires: day-of-month '31' does not "
                                     "occur in month 'APR,JUN,SEP,NOV'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cron_expr e;
        memset(&e, 0xAB, sizeof(e));
        cron_expr untouched = e;
        char err[256] = "";
        if (cron_parse(cases[i].text, &e, err, sizeof(err)) != -1)
            fail_msg("'%s' parsed; expected an error", cases[i].text);
        if (strcmp(err, cases[i].message) != 0)
            fail_msg("'%s':\n  got      %s\n  expected %s", cases[i].text, err, cases[i].message);
        assert_memory_equal(&e, &untouched, sizeof(e));
        /* err may be NULL; a short buffer truncates. */
        assert_int_equal(cron_parse(cases[i].text, &e, NULL, 0), -1);
        char tiny[8];
        assert_int_equal(cron_parse(cases[i].text, &e, tiny, sizeof(tiny)), -1);
        assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
    }
    cron_expr e;
    char err[256];
    assert_int_equal(cron_parse(NULL, &e, err, sizeof(err)), -1);
    char *long_text = malloc(2000);
    memset(long_text, '1', 1999);
    long_text[1999] = '\0';
    assert_int_equal(cron_parse(long_text, &e, err, sizeof(err)), -1);
    assert_string_equal(err, "cron expression is too long (over 1024 characters)");
    free(long_text);
    /* February 29 and "31st of any month with 31 days" are fine; so is OR with a weekday. */
    parse("0 0 29 2 *");
    parse("0 0 31 1-12 *");
    parse("0 0 30 2 MON");
}

/* ---- next fire: a table of known answers ---- */

typedef struct next_case {
    const char *expr;
    const char *zone; /* NULL: tz == NULL (UTC) */
    const char *after;
    const char *next;
} next_case;

static const next_case next_cases[] = {
    {"* * * * *", NULL, "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"},
    {"* * * * *", NULL, "2026-01-01T00:00:30Z", "2026-01-01T00:01:00Z"},
    {"* * * * *", NULL, "2026-01-01T00:00:59Z", "2026-01-01T00:01:00Z"},
    {"0 * * * *", NULL, "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"},
    {"0 * * * *", "UTC", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"},
    {"*/15 * * * *", NULL, "2026-01-01T12:07:00Z", "2026-01-01T12:15:00Z"},
    {"5/15 * * * *", NULL, "2026-01-01T12:50:00Z", "2026-01-01T13:05:00Z"},
    {"10-50/20 * * * *", NULL, "2026-01-01T12:30:00Z", "2026-01-01T12:50:00Z"},
    {"10-50/20 * * * *", NULL, "2026-01-01T12:50:00Z", "2026-01-01T13:10:00Z"},
    {"0 0 * * *", NULL, "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z"},
    {"@yearly", NULL, "2026-06-15T00:00:00Z", "2027-01-01T00:00:00Z"},
    {"@monthly", NULL, "2026-01-31T12:00:00Z", "2026-02-01T00:00:00Z"},
    {"@weekly", NULL, "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"},
    {"@hourly", NULL, "2026-01-01T10:59:59Z", "2026-01-01T11:00:00Z"},
    {"@daily", NULL, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"},
    {"0 0 29 2 *", NULL, "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z"},
    {"0 0 29 2 *", NULL, "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z"},   /* 2100 is not leap */
    {"0 0 29 2 */7", NULL, "2088-03-01T00:00:00Z", "2128-02-29T00:00:00Z"}, /* AND: Sundays */
    {"0 9 * * MON-FRI", NULL, "2026-01-02T09:00:00Z", "2026-01-05T09:00:00Z"},
    {"0 0 13 * FRI", NULL, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"},  /* OR: a Friday */
    {"0 0 13 * FRI", NULL, "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z"},  /* OR: the 13th */
    {"0 0 */2 * MON", NULL, "2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z"}, /* AND: odd Mon */
    {"0 0 */2 * MON", NULL, "2026-01-05T00:00:00Z", "2026-01-19T00:00:00Z"},
    {"0 12 * JAN,jul sun", NULL, "2026-01-31T00:00:00Z", "2026-07-05T12:00:00Z"},
    {"0 0 * * 7", NULL, "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"},
    {"0 0 * * 5-7", NULL, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"},
    {"59 23 31 12 *", NULL, "2026-01-01T00:00:00Z", "2026-12-31T23:59:00Z"},
    {"0 0 31 * *", NULL, "2026-02-01T00:00:00Z", "2026-03-31T00:00:00Z"},
    {"0 0 1 1 *", NULL, "1969-12-31T00:00:00Z", "1970-01-01T00:00:00Z"},
    {"0 9 * * *", "Europe/Berlin", "2026-01-01T00:00:00Z", "2026-01-01T08:00:00Z"},
    {"0 9 * * *", "Europe/Berlin", "2026-07-01T00:00:00Z", "2026-07-01T07:00:00Z"},
    {"0 9 * * *", "Asia/Kolkata", "2026-01-01T00:00:00Z", "2026-01-01T03:30:00Z"},
    {"0 9 1 * *", "Asia/Tokyo", "2026-01-31T23:59:00Z", "2026-02-01T00:00:00Z"},
    /* New York, spring forward 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z). */
    {"30 2 * * *", "America/New_York", "2026-03-08T05:00:00Z", "2026-03-08T07:00:00Z"},
    {"0 2 * * *", "America/New_York", "2026-03-08T05:00:00Z", "2026-03-08T07:00:00Z"},
    {"0,30 2 * * *", "America/New_York", "2026-03-08T05:00:00Z", "2026-03-08T07:00:00Z"},
    {"0,30 2 * * *", "America/New_York", "2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z"},
    {"0 3 * * *", "America/New_York", "2026-03-08T05:00:00Z", "2026-03-08T07:00:00Z"},
    {"0 3 * * *", "America/New_York", "2026-03-08T07:00:00Z", "2026-03-09T07:00:00Z"},
    {"*/30 * * * *", "America/New_York", "2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z"},
    /* New York, fall back 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z). */
    {"30 1 * * *", "America/New_York", "2026-11-01T04:00:00Z", "2026-11-01T05:30:00Z"},
    {"30 1 * * *", "America/New_York", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"},
    {"30 1 * * *", "America/New_York", "2026-11-01T06:15:00Z", "2026-11-02T06:30:00Z"},
    {"*/30 * * * *", "America/New_York", "2026-11-01T05:30:00Z", "2026-11-01T06:00:00Z"},
    {"30 * * * *", "America/New_York", "2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"},
    /* Chile: midnight is skipped (Saturday 24:00 -> Sunday 01:00). */
    {"0 0 * * *", "America/Santiago", "2026-09-05T12:00:00Z", "2026-09-06T04:00:00Z"},
    /* Lord Howe: 02:00 -> 02:30 in October, 02:00 -> 01:30 in April. */
    {"0 2 * * *", "Australia/Lord_Howe", "2026-10-03T13:00:00Z", "2026-10-03T15:30:00Z"},
    {"30 1 * * *", "Australia/Lord_Howe", "2026-04-04T13:00:00Z", "2026-04-04T14:30:00Z"},
    {"30 1 * * *", "Australia/Lord_Howe", "2026-04-04T14:30:00Z", "2026-04-05T15:00:00Z"},
    {"*/30 * * * *", "Australia/Lord_Howe", "2026-10-03T15:00:00Z", "2026-10-03T15:30:00Z"},
    {"0 * * * *", "Australia/Lord_Howe", "2026-10-03T14:30:00Z", "2026-10-03T16:00:00Z"},
    /* Samoa skipped 2011-12-30 entirely: its noon fires at the jump, 31 Dec 00:00 local. */
    {"0 12 * * *", "Pacific/Apia", "2011-12-29T00:00:00Z", "2011-12-29T22:00:00Z"},
    {"0 12 * * *", "Pacific/Apia", "2011-12-29T22:00:00Z", "2011-12-30T10:00:00Z"},
    {"0 12 * * *", "Pacific/Apia", "2011-12-30T10:00:00Z", "2011-12-30T22:00:00Z"},
    /* Past 2037, where the rules come from the zone file's footer. */
    {"0 2 * * *", "America/New_York", "2040-03-11T05:00:00Z", "2040-03-11T07:00:00Z"},
    {"30 1 * * *", "Europe/London", "2045-10-29T00:00:00Z", "2045-10-29T00:30:00Z"},
    {"30 1 * * *", "Europe/London", "2045-10-29T00:30:00Z", "2045-10-30T01:30:00Z"},
    {"0 12 * * *", "Europe/Berlin", "2099-07-01T00:00:00Z", "2099-07-01T10:00:00Z"},
};

static void test_next_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(next_cases) / sizeof(next_cases[0]); i++) {
        const next_case *c = &next_cases[i];
        tz_info *tz = c->zone ? load(c->zone) : NULL;
        cron_expr e = parse(c->expr);
        int64_t next = 0;
        char got[32] = "none";
        if (cron_next(&e, tz, utc(c->after), &next) == 0)
            format_utc(next, got);
        if (strcmp(got, c->next) != 0)
            fail_msg("'%s' in %s after %s: got %s, expected %s", c->expr, c->zone ? c->zone : "UTC",
                     c->after, got, c->next);
        tz_free(tz);
    }
}

static void test_next_none(void **state)
{
    (void)state;
    /* Built by hand: cron_parse refuses it, but cron_next must still end. */
    cron_expr never = parse("0 0 29 2 *");
    never.days_of_month = 1u << 30;
    int64_t next = 123;
    assert_int_equal(cron_next(&never, NULL, utc("2026-01-01T00:00:00Z"), &next), -1);
    assert_int_equal(next, 123);
    cron_expr daily = parse("@daily");
    assert_int_equal(cron_next(&daily, NULL, INT64_MAX, &next), -1);
    assert_int_equal(cron_next(&daily, NULL, INT64_MIN, &next), -1);
    /* Never firing is known after one 400-year calendar cycle, quickly, in a DST zone too. */
    tz_info *ny = load("America/New_York");
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(cron_next(&never, ny, utc("2026-01-01T00:00:00Z"), &next), -1);
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_true(b.tv_sec - a.tv_sec < 2);
    tz_free(ny);
    /* Far but sane instants work. */
    assert_int_equal(cron_next(&daily, NULL, utc("9999-12-31T12:00:00Z"), &next), 0);
    assert_int_equal(next, utc("9999-12-31T12:00:00Z") + 12 * 3600);
}

static void test_matches(void **state)
{
    (void)state;
    cron_expr e = parse("30 1 * * *");
    int64_t day = tz_days_from_civil(2026, 11, 1) * DAY;
    assert_true(cron_matches(&e, day + 3600 + 1800));
    assert_true(cron_matches(&e, day + 3600 + 1800 + 59));
    assert_false(cron_matches(&e, day + 3600 + 1800 + 60));
    assert_false(cron_matches(&e, day + 2 * 3600 + 1800));
    e = parse("0 0 1 1 *");
    assert_true(cron_matches(&e, tz_days_from_civil(1969, 1, 1) * DAY)); /* negative seconds */
    assert_false(cron_matches(&e, tz_days_from_civil(1969, 1, 1) * DAY - 60));
}

/* Vixie: dom and dow both restricted -> OR; either starting with '*' -> AND. */
static void test_vixie_dom_dow(void **state)
{
    (void)state;
    static const struct {
        const char *expr;
        int rule; /* 0: the 13th OR Friday, 1: the 13th, 2: Friday, 3: odd day AND Friday,
                     4: odd day OR Friday */
    } cases[] = {
        {"0 0 13 * 5", 0}, {"0 0 13 * FRI", 0}, {"0 0 13 * *", 1},
        {"0 0 * * 5", 2},  {"0 0 */2 * 5", 3},  {"0 0 1-31/2 * 5", 4},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cron_expr e = parse(cases[i].expr);
        int64_t t = utc("2025-12-31T12:00:00Z");
        int64_t end = utc("2027-01-01T00:00:00Z");
        int fires = 0;
        for (int64_t day = utc("2026-01-01T00:00:00Z"); day < end; day += DAY) {
            time_t tt = (time_t)day;
            struct tm tm;
            gmtime_r(&tt, &tm);
            int dom13 = tm.tm_mday == 13, friday = tm.tm_wday == 5, odd = tm.tm_mday % 2;
            int rule = cases[i].rule;
            int expect = rule == 0   ? dom13 || friday
                         : rule == 1 ? dom13
                         : rule == 2 ? friday
                         : rule == 3 ? odd && friday
                                     : odd || friday;
            if (!expect)
                continue;
            int64_t next;
            assert_int_equal(cron_next(&e, NULL, t, &next), 0);
            if (next != day)
                fail_msg("'%s': expected a fire on %s", cases[i].expr, ctime(&tt));
            t = next;
            fires++;
        }
        assert_true(fires > 10);
    }
}

/* ---- a year of fires in DST zones ---- */

static const char *const walk_zones[] = {"America/New_York", "Europe/London", "Australia/Lord_Howe",
                                         "UTC"};

typedef struct fixed_walk {
    const char *expr;
    int hour, minute;
} fixed_walk;

/* The instant each DST-day fire must take, written out by hand. */
static const struct {
    const char *zone, *expr, *fire;
} dst_day_fires[] = {
    {"America/New_York", "0 2 * * *", "2026-03-08T07:00:00Z"},  /* skipped: at the jump */
    {"America/New_York", "0 2 * * *", "2026-11-01T07:00:00Z"},  /* 02:00 EST, once */
    {"America/New_York", "30 1 * * *", "2026-03-08T06:30:00Z"}, /* before the jump */
    {"America/New_York", "30 1 * * *", "2026-11-01T05:30:00Z"}, /* first of two 01:30s */
    {"Europe/London", "30 1 * * *", "2026-03-29T01:00:00Z"},    /* skipped: at the jump */
    {"Europe/London", "30 1 * * *", "2026-10-25T00:30:00Z"},    /* first of two */
    {"Europe/London", "0 2 * * *", "2026-03-29T01:00:00Z"},     /* 02:00 BST = the jump */
    {"Europe/London", "0 2 * * *", "2026-10-25T02:00:00Z"},
    {"Australia/Lord_Howe", "0 2 * * *", "2026-10-03T15:30:00Z"},  /* 02:00 skipped to 02:30 */
    {"Australia/Lord_Howe", "0 2 * * *", "2026-04-04T15:30:00Z"},  /* 02:00 +10:30, once */
    {"Australia/Lord_Howe", "30 1 * * *", "2026-04-04T14:30:00Z"}, /* first of two 01:30s */
    {"Australia/Lord_Howe", "30 1 * * *", "2026-10-03T15:00:00Z"}, /* 01:30 +10:30 */
};

static void walk_fixed(const char *zone, const fixed_walk *w)
{
    tz_info *tz = load(zone);
    cron_expr e = parse(w->expr);
    int64_t first_day = tz_days_from_civil(2026, 1, 1);
    int64_t start = local_midnight(tz, 2026, 1, 1), end = local_midnight(tz, 2027, 1, 1);
    int per_day[366] = {0};
    int gaps = 0, overlaps = 0, fires = 0;
    int64_t t = start - 1, next;
    while (cron_next(&e, tz, t, &next) == 0 && next < end) {
        int64_t local = next + tz_offset_at(tz, next);
        int64_t day = local / DAY - first_day;
        if (day < 0 || day >= 365)
            fail_msg("%s '%s': fire %lld is outside 2026", zone, w->expr, (long long)next);
        else
            per_day[day]++;
        /* The fire is the wall time's instant: the first when repeated, the jump when skipped. */
        tz_local wall =
            tz_local_to_utc(tz, (first_day + day) * DAY + w->hour * 3600 + w->minute * 60);
        if (next != wall.earliest)
            fail_msg("%s '%s': fire %lld is not %lld (kind %d)", zone, w->expr, (long long)next,
                     (long long)wall.earliest, wall.kind);
        gaps += wall.kind == TZ_LOCAL_GAP;
        overlaps += wall.kind == TZ_LOCAL_OVERLAP;
        assert_true(next > t);
        t = next;
        fires++;
    }
    assert_int_equal(fires, 365);
    for (int day = 0; day < 365; day++) {
        if (per_day[day] != 1)
            fail_msg("%s '%s': day %d of 2026 has %d fires", zone, w->expr, day + 1, per_day[day]);
    }
    /* Each DST zone has one spring and one autumn day; which of them touch this time: */
    int expect_gaps = 0, expect_overlaps = 0;
    if (strcmp(zone, "America/New_York") == 0) {
        expect_gaps = w->hour == 2;
        expect_overlaps = w->hour == 1;
    } else if (strcmp(zone, "Europe/London") == 0) {
        expect_gaps = expect_overlaps = w->hour == 1;
    } else if (strcmp(zone, "Australia/Lord_Howe") == 0) {
        expect_gaps = w->hour == 2 && w->minute < 30;
        expect_overlaps = w->hour == 1 && w->minute >= 30;
    }
    assert_int_equal(gaps, expect_gaps);
    assert_int_equal(overlaps, expect_overlaps);

    for (size_t i = 0; i < sizeof(dst_day_fires) / sizeof(dst_day_fires[0]); i++) {
        if (strcmp(dst_day_fires[i].zone, zone) != 0 || strcmp(dst_day_fires[i].expr, w->expr) != 0)
            continue;
        int64_t fire = utc(dst_day_fires[i].fire);
        assert_int_equal(cron_next(&e, tz, fire - 1, &next), 0);
        if (next != fire)
            fail_msg("%s '%s': expected a fire at %s", zone, w->expr, dst_day_fires[i].fire);
        /* …and exactly one that day: the following fire is on the next calendar day. */
        assert_int_equal(cron_next(&e, tz, fire, &next), 0);
        assert_true(next - fire > 20 * 3600);
    }
    tz_free(tz);
}

static void test_year_walk_fixed_hour(void **state)
{
    (void)state;
    static const fixed_walk walks[] = {{"0 2 * * *", 2, 0}, {"30 1 * * *", 1, 30}};
    for (size_t z = 0; z < sizeof(walk_zones) / sizeof(walk_zones[0]); z++) {
        for (size_t i = 0; i < sizeof(walks) / sizeof(walks[0]); i++)
            walk_fixed(walk_zones[z], &walks[i]);
    }
}

/* Walks a year of an hour-'*' expression: every fire matches and the spacing is regular. */
static int walk_regular(const char *zone, const char *expr, int64_t spacing)
{
    tz_info *tz = load(zone);
    cron_expr e = parse(expr);
    int64_t start = local_midnight(tz, 2026, 1, 1), end = local_midnight(tz, 2027, 1, 1);
    int64_t t = start - 1, next;
    int fires = 0, irregular = 0;
    while (cron_next(&e, tz, t, &next) == 0 && next < end) {
        assert_true(cron_matches(&e, next + tz_offset_at(tz, next)));
        if (fires == 0)
            assert_int_equal(next, start);
        else if (next - t != spacing)
            irregular++;
        t = next;
        fires++;
    }
    assert_int_equal(end - start, 365 * DAY); /* 2026 starts and ends in the same offset */
    tz_free(tz);
    return irregular ? -irregular : fires;
}

static void test_year_walk_every_30_minutes(void **state)
{
    (void)state;
    for (size_t z = 0; z < sizeof(walk_zones) / sizeof(walk_zones[0]); z++) {
        int fires = walk_regular(walk_zones[z], "*/30 * * * *", 1800);
        if (fires != 17520)
            fail_msg("%s: %d fires (negative: that many irregular gaps)", walk_zones[z], fires);
    }
    /* Hourly stays regular in whole-hour DST zones. */
    assert_int_equal(walk_regular("America/New_York", "0 * * * *", 3600), 8760);
    assert_int_equal(walk_regular("Europe/London", "0 * * * *", 3600), 8760);
}

static void test_year_walk_speed(void **state)
{
    (void)state;
    tz_info *tz = load("America/New_York");
    cron_expr e = parse("*/30 * * * *");
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int64_t t = local_midnight(tz, 2026, 1, 1) - 1, next;
    for (int i = 0; i < 17520; i++) {
        assert_int_equal(cron_next(&e, tz, t, &next), 0);
        t = next;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double seconds = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    print_message("# 17520 fires of */30 in %.1f ms\n", seconds * 1000);
    assert_true(seconds < 0.5);
    tz_free(tz);
}

/* cron_next against a brute force over minutes, around DST changes, for random expressions. */
static int64_t floor_minute(int64_t t)
{
    return (t >= 0 ? t / 60 : (t - 59) / 60) * 60;
}

static int64_t brute_next(const cron_expr *e, const tz_info *tz, int64_t after, int64_t window)
{
    int64_t best = INT64_MAX;
    if (e->flags & CRON_HOUR_STAR) {
        /* Every real minute (these zones' offsets are whole minutes). */
        for (int64_t t = floor_minute(after) + 60; t <= after + window; t += 60) {
            if (cron_matches(e, t + tz_offset_at(tz, t)))
                return t;
        }
        return best;
    }
    /* Every wall minute, resolved to its instant by the DST rule. */
    int64_t wall = floor_minute(after + tz_offset_at(tz, after)) - 2 * DAY;
    for (; wall <= after + window + 2 * DAY; wall += 60) {
        if (!cron_matches(e, wall))
            continue;
        int64_t instant = tz_local_to_utc(tz, wall).earliest;
        if (instant > after && instant < best)
            best = instant;
    }
    return best <= after + window ? best : INT64_MAX;
}

static void random_field(char *out, size_t size, int min, int max, int star_chance)
{
    int kind = (int)(random_u64() % 100);
    int a = min + (int)(random_u64() % (uint64_t)(max - min + 1));
    int b = a + (int)(random_u64() % (uint64_t)(max - a + 1));
    if (kind < star_chance)
        snprintf(out, size, "*");
    else if (kind < star_chance + 10)
        snprintf(out, size, "*/%d",
                 1 + (int)(random_u64() % (uint64_t)(max - min < 19 ? max - min + 1 : 20)));
    else if (kind < star_chance + 30)
        snprintf(out, size, "%d-%d", a, b);
    else if (kind < star_chance + 45)
        snprintf(out, size, "%d,%d", a, b);
    else
        snprintf(out, size, "%d", a);
}

static void test_next_against_brute_force(void **state)
{
    (void)state;
    static const char *const zones[] = {"America/New_York",
                                        "Europe/London",
                                        "Australia/Lord_Howe",
                                        "America/Santiago",
                                        "Europe/Dublin",
                                        "Asia/Kolkata",
                                        "UTC"};
    const int64_t window = 3 * DAY;
    int compared = 0;
    for (int round = 0; round < 400; round++) {
        char minute[32], hour[32], dom[32], dow[32], text[160];
        random_field(minute, sizeof(minute), 0, 59, 10);
        random_field(hour, sizeof(hour), 0, 23, 40);
        random_field(dom, sizeof(dom), 1, 31, 85);
        random_field(dow, sizeof(dow), 0, 6, 70);
        snprintf(text, sizeof(text), "%s %s %s * %s", minute, hour, dom, dow);
        cron_expr e = parse(text);
        const char *zone = zones[round % (sizeof(zones) / sizeof(zones[0]))];
        tz_info *tz = load(zone);
        /* Start near a DST change of some year between 2020 and 2045. */
        int64_t t = random_between(utc("2020-01-01T00:00:00Z"), utc("2045-01-01T00:00:00Z"));
        tz_period period;
        tz_period_at(tz, t, &period);
        int64_t after = period.start != INT64_MIN && random_u64() % 4 != 0
                            ? period.start + random_between(-6 * 3600, 3 * 3600)
                            : t;
        int64_t expect = brute_next(&e, tz, after, window), got;
        if (cron_next(&e, tz, after, &got) != 0)
            got = INT64_MAX;
        if (got > after + window)
            got = INT64_MAX;
        if (got != expect)
            fail_msg("'%s' in %s after %lld: cron_next %lld, brute force %lld", text, zone,
                     (long long)after, (long long)got, (long long)expect);
        compared += expect != INT64_MAX;
        tz_free(tz);
    }
    assert_true(compared > 200);
}

/* ---- time zones ---- */

static void compare_with_libc(const tz_info *tz, const char *zone, int64_t from, int64_t to)
{
    /* Daily samples; wherever the offset changes, find the exact second and check around it. */
    int64_t prev_t = from;
    int32_t prev = libc_offset(from);
    for (int64_t t = from; t <= to; t += DAY) {
        int32_t expect = libc_offset(t);
        if (tz_offset_at(tz, t) != expect)
            fail_msg("%s at %lld: offset %d, libc %d", zone, (long long)t, tz_offset_at(tz, t),
                     expect);
        if (expect != prev) {
            int64_t lo = prev_t, hi = t; /* libc: lo has the old offset, hi the new */
            while (hi - lo > 1) {
                int64_t mid = lo + (hi - lo) / 2;
                if (libc_offset(mid) == prev)
                    lo = mid;
                else
                    hi = mid;
            }
            assert_int_equal(tz_offset_at(tz, lo), libc_offset(lo));
            assert_int_equal(tz_offset_at(tz, hi), libc_offset(hi));
            tz_period p;
            tz_period_at(tz, hi, &p);
            assert_true(p.start <= hi && hi < p.end);
        }
        prev = expect;
        prev_t = t;
    }
    for (int i = 0; i < 2000; i++) {
        int64_t t = random_between(from, to);
        if (tz_offset_at(tz, t) != libc_offset(t))
            fail_msg("%s at %lld: offset %d, libc %d", zone, (long long)t, tz_offset_at(tz, t),
                     libc_offset(t));
    }
}

static void test_offsets_match_libc(void **state)
{
    (void)state;
    static const char *const zones[] = {
        "America/New_York",    "Europe/London",
        "Australia/Lord_Howe", "Europe/Dublin",
        "America/Santiago",    "Africa/Casablanca",
        "Pacific/Apia",        "Asia/Kolkata",
        "America/St_Johns",    "Pacific/Chatham",
        "Asia/Tehran",         "America/Sao_Paulo",
        "Europe/Moscow",       "UTC",
    };
    unsetenv("TZDIR");
    for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
        tz_info *tz = load(zones[i]);
        char value[64];
        snprintf(value, sizeof(value), ":%s", zones[i]);
        libc_use_zone(value);
        compare_with_libc(tz, zones[i], utc("1970-01-01T00:00:00Z"), utc("2040-12-31T00:00:00Z"));
        /* Past 2037 the footer rule takes over; check a stretch there too. */
        compare_with_libc(tz, zones[i], utc("2037-06-01T00:00:00Z"), utc("2100-01-01T00:00:00Z"));
        tz_free(tz);
    }
    unsetenv("TZ");
}

static void test_past_2037(void **state)
{
    (void)state;
    tz_info *ny = load("America/New_York");
    /* 2040: second Sunday of March and first Sunday of November. */
    assert_int_equal(tz_offset_at(ny, utc("2040-03-11T06:59:59Z")), -5 * 3600);
    assert_int_equal(tz_offset_at(ny, utc("2040-03-11T07:00:00Z")), -4 * 3600);
    assert_int_equal(tz_offset_at(ny, utc("2040-11-04T05:59:59Z")), -4 * 3600);
    assert_int_equal(tz_offset_at(ny, utc("2040-11-04T06:00:00Z")), -5 * 3600);
    assert_int_equal(tz_offset_at(ny, utc("2300-07-01T00:00:00Z")), -4 * 3600);
    tz_period p;
    tz_period_at(ny, utc("2040-07-01T00:00:00Z"), &p);
    assert_int_equal(p.start, utc("2040-03-11T07:00:00Z"));
    assert_int_equal(p.end, utc("2040-11-04T06:00:00Z"));
    assert_int_equal(p.offset, -4 * 3600);
    assert_int_equal(p.prev_offset, -5 * 3600);
    tz_local l = tz_local_to_utc(ny, tz_days_from_civil(2040, 11, 4) * DAY + 3600 + 1800);
    assert_int_equal(l.kind, TZ_LOCAL_OVERLAP);
    assert_int_equal(l.earliest, utc("2040-11-04T05:30:00Z"));
    assert_int_equal(l.latest, utc("2040-11-04T06:30:00Z"));
    tz_free(ny);

    tz_info *lh = load("Australia/Lord_Howe");
    /* 2050: DST from the first Sunday of October (the 2nd), 02:00 +10:30 -> 02:30 +11. */
    assert_int_equal(tz_offset_at(lh, utc("2050-10-01T15:29:59Z")), 10 * 3600 + 1800);
    assert_int_equal(tz_offset_at(lh, utc("2050-10-01T15:30:00Z")), 11 * 3600);
    cron_expr e = parse("0 2 * * *");
    int64_t next;
    assert_int_equal(cron_next(&e, lh, utc("2050-10-01T12:00:00Z"), &next), 0);
    assert_int_equal(next, utc("2050-10-01T15:30:00Z"));
    tz_free(lh);
}

static void test_local_to_utc(void **state)
{
    (void)state;
    tz_info *ny = load("America/New_York");
    int64_t march8 = tz_days_from_civil(2026, 3, 8) * DAY;
    tz_local l = tz_local_to_utc(ny, march8 + 2 * 3600 + 30 * 60);
    assert_int_equal(l.kind, TZ_LOCAL_GAP);
    assert_int_equal(l.earliest, utc("2026-03-08T07:00:00Z"));
    assert_int_equal(l.latest, l.earliest);
    l = tz_local_to_utc(ny, march8 + 2 * 3600); /* the first skipped second */
    assert_int_equal(l.kind, TZ_LOCAL_GAP);
    l = tz_local_to_utc(ny, march8 + 2 * 3600 - 1);
    assert_int_equal(l.kind, TZ_LOCAL_UNIQUE);
    assert_int_equal(l.earliest, utc("2026-03-08T06:59:59Z"));
    l = tz_local_to_utc(ny, march8 + 3 * 3600);
    assert_int_equal(l.kind, TZ_LOCAL_UNIQUE);
    assert_int_equal(l.earliest, utc("2026-03-08T07:00:00Z"));

    int64_t nov1 = tz_days_from_civil(2026, 11, 1) * DAY;
    l = tz_local_to_utc(ny, nov1 + 3600);
    assert_int_equal(l.kind, TZ_LOCAL_OVERLAP);
    assert_int_equal(l.earliest, utc("2026-11-01T05:00:00Z"));
    assert_int_equal(l.latest, utc("2026-11-01T06:00:00Z"));
    l = tz_local_to_utc(ny, nov1 + 2 * 3600);
    assert_int_equal(l.kind, TZ_LOCAL_UNIQUE);
    assert_int_equal(l.earliest, utc("2026-11-01T07:00:00Z"));
    tz_free(ny);

    tz_info *lh = load("Australia/Lord_Howe");
    int64_t oct4 = tz_days_from_civil(2026, 10, 4) * DAY;
    l = tz_local_to_utc(lh, oct4 + 2 * 3600 + 15 * 60);
    assert_int_equal(l.kind, TZ_LOCAL_GAP);
    assert_int_equal(l.earliest, utc("2026-10-03T15:30:00Z"));
    l = tz_local_to_utc(lh, oct4 + 2 * 3600 + 30 * 60);
    assert_int_equal(l.kind, TZ_LOCAL_UNIQUE);
    assert_int_equal(l.earliest, utc("2026-10-03T15:30:00Z"));
    int64_t apr5 = tz_days_from_civil(2026, 4, 5) * DAY;
    l = tz_local_to_utc(lh, apr5 + 3600 + 45 * 60);
    assert_int_equal(l.kind, TZ_LOCAL_OVERLAP);
    assert_int_equal(l.latest - l.earliest, 1800);
    tz_free(lh);

    /* Samoa: all of 2011-12-30 is a gap. */
    tz_info *apia = load("Pacific/Apia");
    l = tz_local_to_utc(apia, tz_days_from_civil(2011, 12, 30) * DAY + 12 * 3600);
    assert_int_equal(l.kind, TZ_LOCAL_GAP);
    assert_int_equal(l.earliest, utc("2011-12-30T10:00:00Z"));
    tz_free(apia);

    l = tz_local_to_utc(NULL, 12345);
    assert_int_equal(l.kind, TZ_LOCAL_UNIQUE);
    assert_int_equal(l.earliest, 12345);
}

static void test_calendar(void **state)
{
    (void)state;
    assert_int_equal(tz_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(tz_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(tz_days_from_civil(1969, 12, 31), -1);
    assert_int_equal(tz_weekday(0), 4);  /* Thursday */
    assert_int_equal(tz_weekday(-1), 3); /* Wednesday */
    for (int64_t days = -800000; days < 800000; days += 37) {
        int64_t year;
        int month, day;
        tz_civil_from_days(days, &year, &month, &day);
        assert_int_equal(tz_days_from_civil(year, month, day), days);
        time_t t = (time_t)(days * DAY);
        struct tm tm;
        gmtime_r(&t, &tm);
        assert_int_equal(year, tm.tm_year + 1900);
        assert_int_equal(month, tm.tm_mon + 1);
        assert_int_equal(day, tm.tm_mday);
        assert_int_equal(tz_weekday(days), tm.tm_wday);
    }
}

/* ---- fixture zone files ---- */

static char fixture_dir[64];

/* A TZif file of the given version ('\0' for 1, '2', '3') with the types' offsets. */
static void write_tzif(const char *name, char version, const int64_t *times, const uint8_t *indexes,
                       uint32_t time_count, const int32_t *offsets, uint32_t type_count,
                       const char *footer)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", fixture_dir, name);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0755);
    *slash = '/';
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int pass = 0; pass < (version ? 2 : 1); pass++) {
        int wide = pass == 1;
        unsigned char header[44] = {'T', 'Z', 'i', 'f', (unsigned char)version};
        const uint32_t counts[6] = {0, 0, 0, time_count, type_count, 4};
        for (int i = 0; i < 6; i++) {
            for (int b = 0; b < 4; b++)
                header[20 + 4 * i + b] = (unsigned char)(counts[i] >> (24 - 8 * b));
        }
        fwrite(header, 1, sizeof(header), f);
        for (uint32_t i = 0; i < time_count; i++) {
            uint64_t v = (uint64_t)times[i];
            for (int b = wide ? 7 : 3; b >= 0; b--)
                fputc((int)(v >> (8 * b)) & 0xff, f);
        }
        if (time_count > 0)
            fwrite(indexes, 1, time_count, f);
        for (uint32_t i = 0; i < type_count; i++) {
            uint32_t v = (uint32_t)offsets[i];
            unsigned char type[6] = {(unsigned char)(v >> 24),
                                     (unsigned char)(v >> 16),
                                     (unsigned char)(v >> 8),
                                     (unsigned char)v,
                                     0,
                                     0};
            fwrite(type, 1, sizeof(type), f);
        }
        fwrite("XXX", 1, 4, f);
    }
    if (version)
        fprintf(f, "\n%s\n", footer);
    fclose(f);
}

static int fixtures_setup(void **state)
{
    (void)state;
    strcpy(fixture_dir, "/tmp/ferry-test-cron-XXXXXX");
    assert_non_null(mkdtemp(fixture_dir));
    return 0;
}

static int fixtures_teardown(void **state)
{
    (void)state;
    char command[128];
    snprintf(command, sizeof(command), "rm -rf '%s'", fixture_dir);
    assert_int_equal(system(command), 0);
    unsetenv("TZDIR");
    return 0;
}

/* Zones made of a footer alone: the rule applies at every instant; libc reads the same rule. */
static void test_footer_rules(void **state)
{
    (void)state;
    static const char *const rules[] = {
        "EST5EDT,M3.2.0,M11.1.0",
        "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
        "IST-1GMT0,M10.5.0,M3.5.0/1", /* negative DST: winter time is the "daylight" one */
        "<-04>4<-03>,M9.1.6/24,M4.1.6/24",
        "<-02>2<-01>,M3.5.0/-1,M10.5.0/0", /* Greenland: negative transition times */
        "CET-1CEST,M3.5.0,M10.5.0/3",
        "NZST-12NZDT,M9.5.0,M4.1.0/3",
        "XST3XDT,J60/2,J300/2",               /* Julian days, February 29 not counted */
        "XST3XDT,59/2,299/2",                 /* zero-based days, February 29 counted */
        "XST3XDT2:30,M3.2.0/2:15:30,M11.1.0", /* odd DST offset and times */
        "<+0545>-5:45",
        "UTC0",
    };
    char value[128];
    const int32_t no_offsets[] = {0};
    setenv("TZDIR", fixture_dir, 1);
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        char name[32];
        snprintf(name, sizeof(name), "Rule/R%zu", i);
        write_tzif(name, '2', NULL, NULL, 0, no_offsets, 1, rules[i]);
        tz_info *tz = load(name);
        snprintf(value, sizeof(value), "%s", rules[i]);
        libc_use_zone(value);
        compare_with_libc(tz, rules[i], utc("1970-01-01T00:00:00Z"), utc("2101-01-01T00:00:00Z"));
        tz_free(tz);
    }
    unsetenv("TZ");

    /* Daylight time all year (RFC 8536 3.3.1). glibc gets the first hours of each UTC year
     * wrong for this rule, so it is checked by hand. */
    write_tzif("Rule/AllYear", '3', NULL, NULL, 0, no_offsets, 1, "EST5EDT,0/0,J365/25");
    tz_info *all_year = load("Rule/AllYear");
    for (int year = 1970; year < 2100; year++) {
        char iso[32];
        snprintf(iso, sizeof(iso), "%d-01-01T00:00:00Z", year);
        assert_int_equal(tz_offset_at(all_year, utc(iso)), -4 * 3600);
        assert_int_equal(tz_offset_at(all_year, utc(iso) + 5 * 3600), -4 * 3600);
        assert_int_equal(tz_offset_at(all_year, utc(iso) + 180 * DAY), -4 * 3600);
    }
    tz_free(all_year);

    /* A table followed by a footer: the table up to its last transition, the rule after it. */
    const int64_t times[] = {utc("2000-01-01T00:00:00Z"), utc("2010-03-14T07:00:00Z")};
    const uint8_t indexes[] = {0, 1};
    const int32_t offsets[] = {-5 * 3600, -4 * 3600};
    write_tzif("Rule/Table", '3', times, indexes, 2, offsets, 2, "EST5EDT,M3.2.0,M11.1.0");
    tz_info *tz = load("Rule/Table");
    assert_int_equal(tz_offset_at(tz, utc("1999-07-01T00:00:00Z")), -5 * 3600); /* type 0 */
    assert_int_equal(tz_offset_at(tz, utc("2005-07-01T00:00:00Z")), -5 * 3600);
    assert_int_equal(tz_offset_at(tz, utc("2010-03-14T07:00:00Z")), -4 * 3600);
    assert_int_equal(tz_offset_at(tz, utc("2010-11-07T05:59:59Z")), -4 * 3600);
    assert_int_equal(tz_offset_at(tz, utc("2010-11-07T06:00:00Z")), -5 * 3600);
    assert_int_equal(tz_offset_at(tz, utc("2011-07-01T00:00:00Z")), -4 * 3600);
    tz_period p;
    tz_period_at(tz, utc("2010-06-01T00:00:00Z"), &p);
    assert_int_equal(p.start, utc("2010-03-14T07:00:00Z"));
    assert_int_equal(p.end, utc("2010-11-07T06:00:00Z"));
    assert_int_equal(p.prev_offset, -5 * 3600);
    tz_free(tz);

    /* Version 1: 32-bit table, no footer; the last offset stays. */
    write_tzif("Rule/V1", '\0', times, indexes, 2, offsets, 2, NULL);
    tz = load("Rule/V1");
    assert_int_equal(tz_offset_at(tz, utc("2005-07-01T00:00:00Z")), -5 * 3600);
    assert_int_equal(tz_offset_at(tz, utc("2050-12-01T00:00:00Z")), -4 * 3600);
    tz_free(tz);

    /* An empty footer means "no rule": the last offset stays. */
    write_tzif("Rule/Empty", '2', times, indexes, 2, offsets, 2, "");
    tz = load("Rule/Empty");
    assert_int_equal(tz_offset_at(tz, utc("2050-12-01T00:00:00Z")), -4 * 3600);
    tz_free(tz);
}

static void expect_load_error(const char *name, const char *message)
{
    tz_info *tz = (tz_info *)(uintptr_t)1; /* must be reset to NULL */
    char err[512] = "";
    assert_int_equal(tz_load(name, &tz, err, sizeof(err)), -1);
    assert_null(tz);
    if (strstr(err, message) == NULL)
        fail_msg("tz_load(%s): '%s' lacks '%s'", name, err, message);
    assert_int_equal(tz_load(name, &tz, NULL, 0), -1);
}

static void test_load_errors(void **state)
{
    (void)state;
    unsetenv("TZDIR");
    expect_load_error("Mars/Base", "unknown time zone 'Mars/Base': not in the system tz database "
                                   "(/usr/share/zoneinfo)");
    expect_load_error("America", "unknown time zone 'America'");   /* a directory */
    expect_load_error("zone.tab", "unknown time zone 'zone.tab'"); /* not TZif */
    expect_load_error("America/New_York/x", "unknown time zone");
    expect_load_error("../../etc/passwd", "invalid time zone name '../../etc/passwd'");
    expect_load_error("Europe/../../etc/passwd", "invalid time zone name");
    expect_load_error("/etc/localtime", "invalid time zone name '/etc/localtime'");
    expect_load_error("", "invalid time zone name ''");
    expect_load_error("Europe/Berlin ", "invalid time zone name");
    expect_load_error("Europe\\Berlin", "invalid time zone name");
    expect_load_error(NULL, "invalid time zone name");
    expect_load_error("Europe/Berlin\nX", "invalid time zone name '(control characters)'");
    if (access("/usr/share/zoneinfo/right/UTC", R_OK) == 0)
        expect_load_error("right/UTC", "counts leap seconds");

    setenv("TZDIR", fixture_dir, 1);
    const int32_t zero[] = {0};
    write_tzif("Bad/Footer", '2', NULL, NULL, 0, zero, 1, "EST5EDT,M13.1.0,M11.1.0");
    expect_load_error("Bad/Footer", "ends in a rule ferry cannot read ('EST5EDT,M13.1.0,M11.1.0')");
    write_tzif("Bad/Offset", '2', NULL, NULL, 0, (const int32_t[]){100000}, 1, "UTC0");
    expect_load_error("Bad/Offset", "is damaged (UTC offset)");
    const int64_t backwards[] = {1000, 500};
    write_tzif("Bad/Order", '2', backwards, (const uint8_t[]){0, 0}, 2, zero, 1, "UTC0");
    expect_load_error("Bad/Order", "is damaged (transitions)");
    write_tzif("Bad/Index", '2', (const int64_t[]){500, 1000}, (const uint8_t[]){0, 5}, 2, zero, 1,
               "UTC0");
    expect_load_error("Bad/Index", "is damaged (transitions)");

    /* Truncated at every length: never accepted, never read out of bounds. */
    tz_info *tz;
    char full[256], cut[256];
    write_tzif("Good/Whole", '2', (const int64_t[]){500, 1000}, (const uint8_t[]){0, 1}, 2,
               (const int32_t[]){0, 3600}, 2, "UTC0");
    snprintf(full, sizeof(full), "%s/Good/Whole", fixture_dir);
    FILE *f = fopen(full, "rb");
    assert_non_null(f);
    unsigned char data[512];
    size_t size = fread(data, 1, sizeof(data), f);
    fclose(f);
    mkdir(strcat(strcpy(cut, fixture_dir), "/Cut"), 0755);
    for (size_t len = 0; len + 1 < size; len++) {
        snprintf(cut, sizeof(cut), "%s/Cut/Z%zu", fixture_dir, len);
        f = fopen(cut, "wb");
        fwrite(data, 1, len, f);
        fclose(f);
        char name[32], err[256] = "";
        snprintf(name, sizeof(name), "Cut/Z%zu", len);
        if (tz_load(name, &tz, err, sizeof(err)) == 0)
            fail_msg("a TZif file cut to %zu of %zu bytes loaded", len, size);
        assert_true(strstr(err, "damaged") != NULL || strstr(err, "unknown time zone") != NULL);
    }
    /* Not TZif at all. */
    f = fopen(strcat(strcpy(cut, fixture_dir), "/Cut/Text"), "w");
    fputs("Europe/Berlin\n", f);
    fclose(f);
    char expect[256];
    snprintf(expect, sizeof(expect),
             "unknown time zone 'Cut/Text': not in the system tz "
             "database (%s)",
             fixture_dir);
    expect_load_error("Cut/Text", expect);
    unsetenv("TZDIR");
}

static void test_utc_and_cache(void **state)
{
    (void)state;
    unsetenv("TZDIR");
    tz_info *a = load("UTC"), *b = load("UTC");
    assert_ptr_equal(a, b); /* cached */
    assert_string_equal(tz_name(a), "UTC");
    assert_int_equal(tz_offset_at(a, utc("2026-06-01T00:00:00Z")), 0);
    assert_int_equal(tz_offset_at(a, utc("2200-06-01T00:00:00Z")), 0);
    tz_free(a);
    tz_free(b);
    tz_free(NULL);
    assert_int_equal(tz_offset_at(NULL, 0), 0);

    /* More zones than the cache holds: all stay usable, the oldest are evicted. */
    static const char *const many[] = {
        "Europe/Paris", "Europe/Rome",    "Europe/Madrid",   "Europe/Oslo",     "Europe/Kyiv",
        "Asia/Tokyo",   "Asia/Seoul",     "Asia/Dubai",      "Asia/Singapore",  "Africa/Cairo",
        "Africa/Lagos", "America/Denver", "America/Chicago", "America/Phoenix", "America/Lima",
        "Pacific/Fiji", "Pacific/Guam",   "Indian/Maldives", "Atlantic/Azores", "Asia/Kathmandu",
    };
    tz_info *held[sizeof(many) / sizeof(many[0])];
    for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++)
        held[i] = load(many[i]);
    for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++) {
        assert_string_equal(tz_name(held[i]), many[i]);
        tz_free(held[i]);
    }
    tz_info *kathmandu = load("Asia/Kathmandu");
    assert_int_equal(tz_offset_at(kathmandu, utc("2026-01-01T00:00:00Z")), 5 * 3600 + 45 * 60);
    tz_free(kathmandu);

    /* A database without UTC still has UTC; other zones name the directory searched. */
    char empty[128];
    snprintf(empty, sizeof(empty), "%s/empty", fixture_dir);
    mkdir(empty, 0755);
    setenv("TZDIR", empty, 1);
    tz_info *builtin = load("UTC");
    assert_int_equal(tz_offset_at(builtin, utc("2026-06-01T00:00:00Z")), 0);
    tz_period p;
    tz_period_at(builtin, 0, &p);
    assert_true(p.start == INT64_MIN && p.end == INT64_MAX);
    tz_free(builtin);
    char message[256];
    snprintf(message, sizeof(message),
             "unknown time zone 'Europe/Berlin': not in the system tz database (%s)", empty);
    expect_load_error("Europe/Berlin", message);
    unsetenv("TZDIR");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_bits),
        cmocka_unit_test(test_parse_macros),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_matches),
        cmocka_unit_test(test_calendar),
        cmocka_unit_test(test_next_table),
        cmocka_unit_test(test_next_none),
        cmocka_unit_test(test_vixie_dom_dow),
        cmocka_unit_test(test_year_walk_fixed_hour),
        cmocka_unit_test(test_year_walk_every_30_minutes),
        cmocka_unit_test(test_year_walk_speed),
        cmocka_unit_test(test_next_against_brute_force),
        cmocka_unit_test(test_local_to_utc),
        cmocka_unit_test(test_past_2037),
        cmocka_unit_test(test_offsets_match_libc),
        cmocka_unit_test(test_footer_rules),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_utc_and_cache),
    };
    return cmocka_run_group_tests(tests, fixtures_setup, fixtures_teardown);
}
