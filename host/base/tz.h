/*
 * Time zones from the system tz database (TZif files), without process-global state.
 *
 * The C library's localtime() works on one process-wide zone chosen through $TZ; a host
 * running schedules in many zones at once cannot use it. This module reads TZif files
 * (RFC 8536, versions 1 to 4) itself: the 64-bit transition table, and the POSIX TZ string
 * in the footer for instants after the last transition (so dates past 2037 work).
 *
 * Time is counted in two ways here:
 *   - an instant: seconds since 1970-01-01T00:00:00Z (UTC), as time() gives;
 *   - a local wall time: the clock reading in the zone, counted as seconds since
 *     1970-01-01T00:00:00 on that clock (local_seconds = instant + UTC offset).
 * Leap seconds are not counted (zones from the "right/" tree are refused).
 *
 * A loaded tz_info is immutable, so threads may share it freely.
 */
#ifndef FERRY_TZ_H
#define FERRY_TZ_H

#include <stddef.h>
#include <stdint.h>

typedef struct tz_info tz_info;

/*
 * Loads the zone NAME (an IANA name such as "Europe/Berlin" or "UTC") from $TZDIR, or from
 * /usr/share/zoneinfo when $TZDIR is unset or empty. Names containing "..", starting with
 * '/', or holding characters outside [A-Za-z0-9/_+.-] are refused, as are files that are
 * not TZif. "UTC" (and "Etc/UTC") work even when the database lacks them.
 *
 * Loaded zones are kept in a small cache (16 zones, keyed by file path and checked against
 * the file's inode and modification time), so loading the same zone again is cheap.
 *
 * Returns 0 and stores a new reference in *out, which the caller releases with tz_free().
 * Returns -1 with *out set to NULL and a one-line message in err (e.g. "unknown time zone
 * 'Mars/Base': not in the system tz database (/usr/share/zoneinfo)"). Thread-safe.
 */
int tz_load(const char *name, tz_info **out, char *err, size_t errlen);

/* Releases a reference from tz_load(). NULL is ignored. Thread-safe. */
void tz_free(tz_info *tz);

/* The name tz_load() was given. The string belongs to tz and lives as long as it. */
const char *tz_name(const tz_info *tz);

/* The UTC offset (seconds east of Greenwich) in effect at the instant. NULL means UTC. */
int32_t tz_offset_at(const tz_info *tz, int64_t utc_seconds);

/*
 * A stretch of time during which a zone's UTC offset stays the same: the instants
 * [start, end). start is INT64_MIN for the first period and end INT64_MAX for the last one.
 * prev_offset is the offset just before start (equal to offset for the first period), so
 * offset > prev_offset means the clocks jumped forward at start (a gap in local time) and
 * offset < prev_offset that they were set back (an overlap).
 */
typedef struct tz_period {
    int64_t start;
    int64_t end;
    int32_t offset;
    int32_t prev_offset;
} tz_period;

/*
 * Fills *out with the period containing the instant. Consecutive periods may carry the same
 * offset (the zone changed only its abbreviation). NULL tz means UTC: one endless period.
 */
void tz_period_at(const tz_info *tz, int64_t utc_seconds, tz_period *out);

/* What a local wall time maps to. */
typedef enum tz_local_kind {
    TZ_LOCAL_UNIQUE,  /* the wall time happens once: earliest == latest */
    TZ_LOCAL_GAP,     /* skipped (clocks jumped over it): earliest == latest == the instant
                         the clocks jumped, i.e. the first instant after the gap */
    TZ_LOCAL_OVERLAP, /* repeated (clocks were set back): two instants, earliest < latest */
} tz_local_kind;

typedef struct tz_local {
    tz_local_kind kind;
    int64_t earliest;
    int64_t latest;
} tz_local;

/*
 * Maps a local wall time (see the top of this file) to instants in the zone. NULL means UTC.
 * Wall times beyond about ±34,000 years are clamped.
 */
tz_local tz_local_to_utc(const tz_info *tz, int64_t local_seconds);

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1-12, day 1-31). */
int64_t tz_days_from_civil(int64_t year, int month, int day);

/* The proleptic Gregorian date of a day counted from 1970-01-01 (inverse of the above). */
void tz_civil_from_days(int64_t days, int64_t *year, int *month, int *day);

/* Day of the week of a day counted from 1970-01-01: 0 = Sunday … 6 = Saturday. */
int tz_weekday(int64_t days);

#endif
