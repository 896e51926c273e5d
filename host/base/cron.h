// Cron expressions: parsing and "when does it fire next" in a time zone. Pure logic: no
// clock, no allocation, no global state, so every function is safe from any thread.
//
// Syntax: five fields, "minute hour day-of-month month day-of-week".
//   minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC,
//   day-of-week 0-7 or SUN-SAT (0 and 7 are both Sunday); names are case-insensitive.
//   Each field is a comma-separated list of items; an item is "*", "a" or "a-b", optionally
//   followed by "/step": "*/15" (every 15th value), "10-50/20" (10, 30, 50), and "5/15"
//   (5-max/15: 5, 20, 35, 50). Ranges must run upwards ("22-2" is refused).
//   Macros replace all five fields: @yearly and @annually (0 0 1 1 *), @monthly (0 0 1 * *),
//   @weekly (0 0 * * 0), @daily and @midnight (0 0 * * *), @hourly (0 * * * *).
//
// Day matching (as Vixie cron): when both day-of-month and day-of-week are restricted
// (neither field starts with '*'), a day matches when EITHER matches ("0 0 1 * MON" fires on
// the 1st and on every Monday); otherwise both must match. A field such as "*/2" starts with
// '*' and therefore counts as unrestricted for this rule, as in Vixie cron.
//
// Daylight saving time (ISC cron's rule). Fire times are wall-clock times in the zone.
//   - When the hour field is fixed (does not start with '*'; "0 2 * * *", "30 1-3 * * *"):
//     each matching wall time fires once. A wall time the clocks skip (spring forward) fires
//     once at the instant of the jump, i.e. the first instant after the gap (in New York
//     "30 2 * * *" fires at 03:00 EDT on the day DST begins). A wall time the clocks repeat
//     (fall back) fires once, at its first occurrence (in New York "30 1 * * *" fires at
//     01:30 EDT, not again at 01:30 EST). Several skipped matches share the one fire.
//   - When the hour field starts with '*' ("*/30 * * * *", "0 * * * *", "0 */2 * * *"): the
//     expression fires at every real instant whose wall time matches. In a repeated hour it
//     fires in both occurrences, in a skipped hour not at all, so the real time between fires
//     stays regular ("*/30" fires every 1800 s straight through DST changes). A skipped
//     wall time is not moved: in a zone whose clocks jump from 02:00 to 02:30
//     (Australia/Lord_Howe), "0 * * * *" has no 02:00 fire on that day.
//
// (Line comments here because cron syntax contains the characters that end a C comment.)
#ifndef FERRY_CRON_H
#define FERRY_CRON_H

#include <stddef.h>
#include <stdint.h>

#include "tz.h"

/* cron_expr.flags */
#define CRON_DOM_STAR  0x01 /* the day-of-month field starts with '*' */
#define CRON_DOW_STAR  0x02 /* the day-of-week field starts with '*' */
#define CRON_HOUR_STAR 0x04 /* the hour field starts with '*': fire by real instants */

/* A parsed expression: one bit per allowed value. A plain value; copy it freely. */
typedef struct cron_expr {
    uint64_t minutes;       /* bit n: minute n, 0-59 */
    uint32_t hours;         /* bit n: hour n, 0-23 */
    uint32_t days_of_month; /* bit n: day n, 1-31 */
    uint16_t months;        /* bit n: month n, 1-12 */
    uint8_t days_of_week;   /* bit n: weekday n, 0 = Sunday … 6 = Saturday */
    uint8_t flags;          /* CRON_*_STAR */
} cron_expr;

/*
 * Parses text (five fields or a macro, surrounded by any amount of blank space) into *out.
 * Also refuses expressions that can never fire, such as "0 0 30 2 *".
 * Returns 0; or -1 with *out untouched and a message naming the field and value in err,
 * e.g. "cron field 2 (hour) '25' is out of range 0-23". err may be NULL.
 */
int cron_parse(const char *text, cron_expr *out, char *err, size_t errlen);

/* Non-zero when the local wall time (seconds, see tz.h), taken to the minute, matches e. */
int cron_matches(const cron_expr *e, int64_t local_seconds);

/*
 * Finds the first fire strictly after the instant after_utc_seconds, in zone tz (NULL means
 * UTC), following the day and DST rules above, and stores it in *next_utc_seconds. Fires
 * are whole wall-clock minutes. Call it again with the fire it returned to get the one after.
 * Returns 0; or -1 (with *next_utc_seconds untouched) when the expression never fires (it
 * looks 400 years ahead, one full cycle of the Gregorian calendar: rare combinations such as
 * February 29 falling on a Sunday are found, 40 years apart at worst) or when the instant is
 * beyond about ±17,000 years.
 */
int cron_next(const cron_expr *e, const tz_info *tz, int64_t after_utc_seconds,
              int64_t *next_utc_seconds);

#endif
