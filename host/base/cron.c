/*
 * Cron expression parsing and next-fire computation; the rules are documented in cron.h.
 *
 * cron_next() walks the zone's periods of constant UTC offset (tz_period_at) forward from
 * the start instant. Inside one period local time is UTC plus a constant, so the first
 * matching wall minute in the period's wall-clock range gives the fire directly; the period
 * boundaries are where the DST rule decides what a skipped or repeated wall time does.
 */
#include "cron.h"
#include "util.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#define CRON_TEXT_MAX 1024
/*
 * How far cron_next() looks: the Gregorian calendar, weekdays included, repeats every 400
 * years (146097 days), so an expression with no fire in that span never fires. Two extra
 * days cover any UTC offset.
 */
#define CRON_HORIZON ((int64_t)(146097 + 2) * 86400)
/* Inside tz.c's clamp (2^40 s), horizon included: calendar arithmetic never overflows. */
#define CRON_TIME_LIMIT ((int64_t)1 << 39)

#define BLANKS      " \t\n\r\v\f"
#define FIELD_USAGE "(minute hour day-of-month month day-of-week)"

typedef struct field_spec {
    const char *name;
    int min, max;             /* numbers accepted in the text */
    int max_step;             /* the number of distinct values */
    const char *const *names; /* three-letter names for min, min+1, …; or NULL */
    const char *expected;     /* what a valid value looks like, for messages */
} field_spec;

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL",
                                          "AUG", "SEP", "OCT", "NOV", "DEC", NULL};
static const char *const day_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", NULL};

static const field_spec fields[5] = {
    {"minute", 0, 59, 60, NULL, "a number 0-59"},
    {"hour", 0, 23, 24, NULL, "a number 0-23"},
    {"day-of-month", 1, 31, 31, NULL, "a number 1-31"},
    {"month", 1, 12, 12, month_names, "a month name (JAN-DEC) or a number 1-12"},
    {"day-of-week", 0, 7, 7, day_names, "a day name (SUN-SAT) or a number 0-7"},
};

typedef struct macro {
    const char *name;
    const char *expansion;
} macro;

static const macro macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* ---- parsing ---- */

/* A slice of the expression text, for messages ("'%.*s'"). */
typedef struct span {
    const char *p;
    int len;
} span;

static span make_span(const char *begin, const char *end)
{
    ptrdiff_t len = end - begin;
    return (span){begin, len > 64 ? 64 : (int)len};
}

/*
 * Parses one value (number or name) of field number index from [*p, end), stopping at '-' or '/'.
 * item is the whole list item, for messages. Returns 0 or -1 with err set.
 */
static int parse_value(int index, const char **p, const char *end, span item, int *out, char *err,
                       size_t errlen)
{
    const field_spec *f = &fields[index];
    const char *begin = *p, *s = *p;
    while (s < end && *s != '-' && *s != '/')
        s++;
    span token = make_span(begin, s);
    if (s == begin) {
        seterr(err, errlen, "cron field %d (%s) '%.*s' is missing a value; expected %s", index + 1,
               f->name, item.len, item.p, f->expected);
        return -1;
    }
    if (isdigit((unsigned char)*begin)) {
        long value = 0;
        const char *d = begin;
        for (; d < s && isdigit((unsigned char)*d); d++) {
            if (value < 100000)
                value = value * 10 + (*d - '0');
        }
        if (d != s)
            goto not_a_value;
        if (value < f->min || value > f->max) {
            seterr(err, errlen, "cron field %d (%s) '%.*s' is out of range %d-%d", index + 1,
                   f->name, token.len, token.p, f->min, f->max);
            return -1;
        }
        *out = (int)value;
        *p = s;
        return 0;
    }
    for (int i = 0; f->names != NULL && f->names[i] != NULL; i++) {
        if (s - begin == 3 && strncasecmp(begin, f->names[i], 3) == 0) {
            *out = f->min + i;
            *p = s;
            return 0;
        }
    }
not_a_value:
    seterr(err, errlen, "cron field %d (%s) '%.*s' is not %s", index + 1, f->name, token.len,
           token.p, f->expected);
    return -1;
}

/* Parses one list item ("*", "a", "a-b", each with an optional "/step") into bits. */
static int parse_item(int index, const char *begin, const char *end, uint64_t *bits, char *err,
                      size_t errlen)
{
    const field_spec *f = &fields[index];
    span item = make_span(begin, end);
    const char *p = begin;
    int low, high, step = 1;

    if (*p == '*') {
        p++;
        low = f->min;
        high = f->max;
        if (p < end && *p != '/') {
            seterr(err, errlen,
                   "cron field %d (%s) '%.*s' is not valid; '*' may only be "
                   "followed by /STEP",
                   index + 1, f->name, item.len, item.p);
            return -1;
        }
    } else {
        if (parse_value(index, &p, end, item, &low, err, errlen) < 0)
            return -1;
        high = low;
        if (p < end && *p == '-') {
            p++;
            if (parse_value(index, &p, end, item, &high, err, errlen) < 0)
                return -1;
            if (high < low) {
                seterr(err, errlen,
                       "cron field %d (%s) range '%.*s' runs backwards; split it, "
                       "as in %d-%d,%d-%d",
                       index + 1, f->name, item.len, item.p, low, f->max, f->min, high);
                return -1;
            }
        } else if (p < end && *p == '/') {
            high = f->max; /* "a/n" means a-max/n */
        }
    }
    if (p < end && *p == '/') {
        const char *digits = ++p;
        long value = 0;
        for (; p < end && isdigit((unsigned char)*p); p++) {
            if (value < 100000)
                value = value * 10 + (*p - '0');
        }
        span step_text = make_span(digits, end);
        if (p != end || p == digits) {
            seterr(err, errlen, "cron field %d (%s) step '%.*s' in '%.*s' is not a number",
                   index + 1, f->name, step_text.len, step_text.p, item.len, item.p);
            return -1;
        }
        if (value < 1 || value > f->max_step) {
            seterr(err, errlen, "cron field %d (%s) step '%.*s' in '%.*s' is out of range 1-%d",
                   index + 1, f->name, step_text.len, step_text.p, item.len, item.p, f->max_step);
            return -1;
        }
        step = (int)value;
    }
    if (p != end) {
        seterr(err, errlen,
               "cron field %d (%s) '%.*s' is not valid; expected %s, a range a-b "
               "or a step */n",
               index + 1, f->name, item.len, item.p, f->expected);
        return -1;
    }
    for (int v = low; v <= high; v += step)
        *bits |= (uint64_t)1 << v;
    return 0;
}

/* Parses a comma-separated field into bits (bit n = value n). */
static int parse_field(int index, const char *begin, const char *end, uint64_t *bits, char *err,
                       size_t errlen)
{
    span whole = make_span(begin, end);
    *bits = 0;
    for (const char *item = begin;;) {
        const char *comma = memchr(item, ',', (size_t)(end - item));
        const char *item_end = comma ? comma : end;
        if (item_end == item) {
            seterr(err, errlen, "cron field %d (%s) '%.*s' has an empty list item", index + 1,
                   fields[index].name, whole.len, whole.p);
            return -1;
        }
        if (parse_item(index, item, item_end, bits, err, errlen) < 0)
            return -1;
        if (comma == NULL)
            return 0;
        item = comma + 1;
    }
}

static int max_days_in_month(int month)
{
    static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return days[month - 1];
}

/* With the AND rule, a day-of-month no selected month has would never fire. */
static int check_reachable(const cron_expr *e, span dom_text, span month_text, char *err,
                           size_t errlen)
{
    if ((e->flags & CRON_DOM_STAR) || !(e->flags & CRON_DOW_STAR))
        return 0;
    for (int month = 1; month <= 12; month++) {
        uint32_t days_there = (uint32_t)(((uint64_t)2 << max_days_in_month(month)) - 2);
        if ((e->months >> month & 1) && (e->days_of_month & days_there))
            return 0;
    }
    seterr(err, errlen,
           "cron expression never fires: day-of-month '%.*s' does not occur in "
           "month '%.*s'",
           dom_text.len, dom_text.p, month_text.len, month_text.p);
    return -1;
}

static int parse_fields(const char *text, cron_expr *out, char *err, size_t errlen)
{
    const char *begin[5], *end[5];
    int count = 0;
    const char *p = text;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            break;
        const char *field = p;
        while (*p != '\0' && !isspace((unsigned char)*p))
            p++;
        if (count < 5) {
            begin[count] = field;
            end[count] = p;
        }
        count++;
    }
    if (count != 5) {
        seterr(err, errlen,
               "cron expression has %d field%s; expected 5 " FIELD_USAGE " or a macro like @daily",
               count, count == 1 ? "" : "s");
        return -1;
    }

    cron_expr e = {0};
    uint64_t bits[5];
    for (int i = 0; i < 5; i++) {
        if (parse_field(i, begin[i], end[i], &bits[i], err, errlen) < 0)
            return -1;
    }
    e.minutes = bits[0];
    e.hours = (uint32_t)bits[1];
    e.days_of_month = (uint32_t)bits[2];
    e.months = (uint16_t)bits[3];
    /* Day-of-week 7 is Sunday, like 0. */
    e.days_of_week = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f);
    if (*begin[1] == '*')
        e.flags |= CRON_HOUR_STAR;
    if (*begin[2] == '*')
        e.flags |= CRON_DOM_STAR;
    if (*begin[4] == '*')
        e.flags |= CRON_DOW_STAR;
    if (check_reachable(&e, make_span(begin[2], end[2]), make_span(begin[3], end[3]), err, errlen) <
        0)
        return -1;
    *out = e;
    return 0;
}

/* Handles macros and the whole-text checks, then hands the five fields to parse_fields(). */
int cron_parse(const char *text, cron_expr *out, char *err, size_t errlen)
{
    if (text == NULL)
        text = "";
    if (strlen(text) > CRON_TEXT_MAX) {
        seterr(err, errlen, "cron expression is too long (over %d characters)", CRON_TEXT_MAX);
        return -1;
    }
    while (isspace((unsigned char)*text))
        text++;
    if (*text == '\0') {
        seterr(err, errlen,
               "cron expression is empty; expected 5 fields " FIELD_USAGE
               " or a macro like @daily");
        return -1;
    }
    if (*text != '@')
        return parse_fields(text, out, err, errlen);

    size_t len = strcspn(text, BLANKS);
    const char *rest = text + len + strspn(text + len, BLANKS);
    for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++) {
        if (strlen(macros[i].name) == len && strncasecmp(text, macros[i].name, len) == 0) {
            if (*rest != '\0') {
                seterr(err, errlen, "cron macro '%s' takes no fields after it", macros[i].name);
                return -1;
            }
            return parse_fields(macros[i].expansion, out, err, errlen);
        }
    }
    seterr(err, errlen,
           "unknown cron macro '%.*s'; expected @yearly, @annually, @monthly, "
           "@weekly, @daily, @midnight or @hourly",
           len > 32 ? 32 : (int)len, text);
    return -1;
}

/* ---- matching ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int day_matches(const cron_expr *e, int day, int weekday)
{
    int dom = (int)(e->days_of_month >> day & 1);
    int dow = (int)(e->days_of_week >> weekday & 1);
    if (e->flags & (CRON_DOM_STAR | CRON_DOW_STAR))
        return dom && dow;
    return dom || dow;
}

/* Splits the wall time into calendar fields and tests each bitset (Vixie day rule). */
int cron_matches(const cron_expr *e, int64_t local_seconds)
{
    int64_t days = floor_div(local_seconds, 86400);
    /* Not local_seconds - days * 86400: near INT64_MIN that product overflows. */
    int second_of_day = (int)(local_seconds % 86400);
    if (second_of_day < 0)
        second_of_day += 86400;
    int64_t year;
    int month, day;
    tz_civil_from_days(days, &year, &month, &day);
    return (e->months >> month & 1) && day_matches(e, day, tz_weekday(days)) &&
           (e->hours >> (second_of_day / 3600) & 1) &&
           (e->minutes >> (second_of_day % 3600 / 60) & 1);
}

/* The smallest set bit at or above from, or -1. */
static int next_bit(uint64_t bits, int from)
{
    if (from >= 64)
        return -1;
    uint64_t masked = bits & (~(uint64_t)0 << from);
    return masked ? __builtin_ctzll(masked) : -1;
}

/*
 * The first whole-minute local wall time in [low, high) that matches e, in *out.
 * Returns 0, or -1 when there is none. Skips whole months, days and hours at a time.
 */
static int next_wall_match(const cron_expr *e, int64_t low, int64_t high, int64_t *out)
{
    int64_t wall = -floor_div(-low, 60) * 60;
    while (wall < high) {
        int64_t days = floor_div(wall, 86400);
        int64_t midnight = days * 86400;
        int second_of_day = (int)(wall - midnight);
        int64_t year;
        int month, day;
        tz_civil_from_days(days, &year, &month, &day);
        if (!(e->months >> month & 1)) {
            wall = tz_days_from_civil(month == 12 ? year + 1 : year, month % 12 + 1, 1) * 86400;
            continue;
        }
        if (!day_matches(e, day, tz_weekday(days))) {
            wall = midnight + 86400;
            continue;
        }
        int hour = second_of_day / 3600;
        int next_hour = next_bit(e->hours, hour);
        if (next_hour < 0) {
            wall = midnight + 86400;
            continue;
        }
        int minute = next_hour == hour ? second_of_day % 3600 / 60 : 0;
        int next_minute = next_bit(e->minutes, minute);
        if (next_minute < 0) {
            wall = midnight + (int64_t)(next_hour + 1) * 3600;
            continue;
        }
        wall = midnight + (int64_t)next_hour * 3600 + (int64_t)next_minute * 60;
        if (wall >= high)
            return -1;
        *out = wall;
        return 0;
    }
    return -1;
}

/*
 * Walks periods of constant offset from after + 1. Within a period, fires are the matching
 * wall minutes of its wall-clock range; with a fixed hour, a spring-forward boundary adds a
 * fire at the jump for matches in the gap, and a fall-back boundary drops the repeated wall
 * times (they fired in the period before). No state: the caller keeps the last fire.
 */
int cron_next(const cron_expr *e, const tz_info *tz, int64_t after_utc_seconds,
              int64_t *next_utc_seconds)
{
    if (after_utc_seconds < -CRON_TIME_LIMIT || after_utc_seconds > CRON_TIME_LIMIT)
        return -1;
    int fixed_hour = !(e->flags & CRON_HOUR_STAR);
    int64_t horizon = after_utc_seconds + CRON_HORIZON;
    int64_t wall;
    tz_period p;
    for (int64_t t = after_utc_seconds + 1; t < horizon;) {
        tz_period_at(tz, t, &p);
        int64_t end = p.end < horizon ? p.end : horizon;
        int64_t wall_low = t + p.offset;
        if (fixed_hour && p.start > INT64_MIN) {
            /* Spring forward at p.start: matches in the skipped wall times fire at the jump. */
            if (p.offset > p.prev_offset && p.start >= t &&
                next_wall_match(e, p.start + p.prev_offset, p.start + p.offset, &wall) == 0) {
                *next_utc_seconds = p.start;
                return 0;
            }
            /* Fall back at p.start: the repeated wall times already fired before it. */
            if (p.offset < p.prev_offset && wall_low < p.start + p.prev_offset)
                wall_low = p.start + p.prev_offset;
        }
        if (next_wall_match(e, wall_low, end + p.offset, &wall) == 0) {
            *next_utc_seconds = wall - p.offset;
            return 0;
        }
        t = end;
    }
    return -1;
}
