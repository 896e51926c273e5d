/*
 * TZif reader (RFC 8536) and UTC offset arithmetic, with no process-global zone.
 *
 * A zone is kept as a list of transitions (instant, offset from then on) plus the footer's
 * POSIX TZ rule, which generates the transitions after the table ends. Everything else
 * (offset at an instant, local time to instants) is built on tz_period_at().
 */
#include "tz.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TZ_DEFAULT_DIR "/usr/share/zoneinfo"
#define TZ_NAME_MAX    255
#define TZ_FOOTER_MAX  255
/* The largest zone in the database is under 4 KB; anything this big is not a zone. */
#define TZ_FILE_MAX   (256 * 1024)
#define TZ_CACHE_SIZE 16
/* RFC 8536 limits UTC offsets to -89999..93599 s; 26 h covers them both ways. */
#define TZ_OFFSET_BOUND (26 * 3600)
/* Instants are clamped to about ±34,800 years before calendar arithmetic, far from overflow. */
#define TZ_TIME_LIMIT ((int64_t)1 << 40)

enum rule_kind {
    RULE_JULIAN_NO_LEAP, /* Jn: day 1-365, February 29 never counted */
    RULE_DAY_OF_YEAR,    /* n: day 0-365, February 29 counted in leap years */
    RULE_MONTH_WEEK_DAY, /* Mm.w.d: weekday d of week w (5 = last) of month m */
};

typedef struct tz_rule {
    enum rule_kind kind;
    int day;      /* Jn / n: the day number; M: the weekday, 0 = Sunday */
    int week;     /* M only: 1-5 */
    int month;    /* M only: 1-12 */
    int32_t time; /* local seconds after midnight; RFC 8536 allows -167 h to 167 h */
} tz_rule;

/* The footer's POSIX TZ string, e.g. "EST5EDT,M3.2.0,M11.1.0". */
typedef struct tz_footer {
    int present; /* 0 when the file has none (version 1) or an empty one */
    int has_dst;
    int32_t std_offset; /* seconds east of UTC (POSIX strings count west; this is flipped) */
    int32_t dst_offset;
    tz_rule start; /* DST begins, expressed in standard time */
    tz_rule end;   /* DST ends, expressed in daylight time */
} tz_footer;

struct tz_info {
    char *name;
    int refs; /* guarded by cache_lock */
    size_t transition_count;
    int64_t *transitions;        /* ascending instants */
    int32_t *transition_offsets; /* the offset in effect from transitions[i] on */
    int32_t initial_offset;      /* before the first transition: time type 0 */
    tz_footer footer;
};

/* ---- calendar arithmetic (Howard Hinnant's days_from_civil and civil_from_days) ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Days before/after 1970-01-01; the era arithmetic keeps it exact for negative years. */
int64_t tz_days_from_civil(int64_t year, int month, int day)
{
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t year_of_era = year - era * 400;
    int64_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

/* Inverse of tz_days_from_civil(); the month index counts from March so leap days come last. */
void tz_civil_from_days(int64_t days, int64_t *year, int *month, int *day)
{
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t day_of_era = days - era * 146097;
    int64_t year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
    int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    int64_t month_index = (5 * day_of_year + 2) / 153; /* 0 = March */
    int m = (int)(month_index < 10 ? month_index + 3 : month_index - 9);
    *day = (int)(day_of_year - (153 * month_index + 2) / 5 + 1);
    *month = m;
    *year = year_of_era + era * 400 + (m <= 2);
}

/* 0 = Sunday; the result is in 0-6 for negative days too. */
int tz_weekday(int64_t days)
{
    return (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
}

static int is_leap(int64_t year)
{
    return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
}

static int days_in_month(int64_t year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month == 2 && is_leap(year) ? 29 : days[month - 1];
}

/* ---- the footer's POSIX TZ string ---- */

static int parse_zone_abbreviation(const char **p)
{
    const char *s = *p, *begin;
    if (*s == '<') {
        begin = ++s;
        while (*s != '\0' && *s != '>') {
            if (!isalnum((unsigned char)*s) && *s != '+' && *s != '-')
                return -1;
            s++;
        }
        if (*s != '>' || s - begin < 3)
            return -1;
        *p = s + 1;
        return 0;
    }
    begin = s;
    while (isalpha((unsigned char)*s))
        s++;
    if (s - begin < 3)
        return -1;
    *p = s;
    return 0;
}

static int parse_number(const char **p, int max, int *out)
{
    const char *s = *p;
    int value = 0;
    if (!isdigit((unsigned char)*s))
        return -1;
    while (isdigit((unsigned char)*s)) {
        value = value * 10 + (*s++ - '0');
        if (value > max)
            return -1;
    }
    *p = s;
    *out = value;
    return 0;
}

/* [+|-]hh[:mm[:ss]] as signed seconds, hours at most max_hours. */
static int parse_clock(const char **p, int max_hours, int32_t *out)
{
    const char *s = *p;
    int sign = 1, hours, minutes = 0, seconds = 0;
    if (*s == '+' || *s == '-')
        sign = *s++ == '-' ? -1 : 1;
    if (parse_number(&s, max_hours, &hours) < 0)
        return -1;
    if (*s == ':') {
        s++;
        if (parse_number(&s, 59, &minutes) < 0)
            return -1;
        if (*s == ':') {
            s++;
            if (parse_number(&s, 59, &seconds) < 0)
                return -1;
        }
    }
    *p = s;
    *out = sign * (hours * 3600 + minutes * 60 + seconds);
    return 0;
}

static int parse_rule(const char **p, tz_rule *rule)
{
    const char *s = *p;
    if (*s == 'J') {
        s++;
        rule->kind = RULE_JULIAN_NO_LEAP;
        if (parse_number(&s, 365, &rule->day) < 0 || rule->day < 1)
            return -1;
    } else if (*s == 'M') {
        s++;
        rule->kind = RULE_MONTH_WEEK_DAY;
        if (parse_number(&s, 12, &rule->month) < 0 || rule->month < 1 || *s++ != '.' ||
            parse_number(&s, 5, &rule->week) < 0 || rule->week < 1 || *s++ != '.' ||
            parse_number(&s, 6, &rule->day) < 0)
            return -1;
    } else {
        rule->kind = RULE_DAY_OF_YEAR;
        if (parse_number(&s, 365, &rule->day) < 0)
            return -1;
    }
    rule->time = 2 * 3600;
    if (*s == '/') {
        s++;
        if (parse_clock(&s, 167, &rule->time) < 0)
            return -1;
    }
    *p = s;
    return 0;
}

/* Parses a POSIX TZ string such as "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0". */
static int parse_posix_tz(const char *s, tz_footer *footer)
{
    int32_t west;
    memset(footer, 0, sizeof(*footer));
    if (parse_zone_abbreviation(&s) < 0 || parse_clock(&s, 24, &west) < 0)
        return -1;
    footer->present = 1;
    footer->std_offset = -west;
    if (*s == '\0')
        return 0;
    if (parse_zone_abbreviation(&s) < 0)
        return -1;
    footer->has_dst = 1;
    footer->dst_offset = footer->std_offset + 3600;
    if (*s != ',' && *s != '\0') {
        if (parse_clock(&s, 24, &west) < 0)
            return -1;
        footer->dst_offset = -west;
    }
    if (*s == '\0') {
        /* No rules: POSIX leaves them to the implementation; glibc uses the US ones. */
        s = ",M3.2.0,M11.1.0";
    }
    if (*s++ != ',' || parse_rule(&s, &footer->start) < 0 || *s++ != ',' ||
        parse_rule(&s, &footer->end) < 0 || *s != '\0')
        return -1;
    return 0;
}

/* The local wall time (seconds since the local epoch) at which the rule fires in year. */
static int64_t rule_local_time(const tz_rule *rule, int64_t year)
{
    int64_t days = tz_days_from_civil(year, 1, 1);
    switch (rule->kind) {
    case RULE_JULIAN_NO_LEAP:
        days += rule->day - 1 + (is_leap(year) && rule->day >= 60);
        break;
    case RULE_DAY_OF_YEAR:
        days += rule->day;
        break;
    case RULE_MONTH_WEEK_DAY: {
        int64_t first = tz_days_from_civil(year, rule->month, 1);
        int day = 1 + (rule->day - tz_weekday(first) + 7) % 7 + 7 * (rule->week - 1);
        if (day > days_in_month(year, rule->month))
            day -= 7;
        days = first + day - 1;
        break;
    }
    }
    return days * 86400 + rule->time;
}

/* ---- periods ---- */

typedef struct offset_change {
    int64_t at;
    int32_t offset;
} offset_change;

/* Period lookup inside the transition table: t < the last transition. */
static void table_period(const tz_info *tz, int64_t t, tz_period *out)
{
    const int64_t *tr = tz->transitions;
    if (t < tr[0]) {
        *out = (tz_period){INT64_MIN, tr[0], tz->initial_offset, tz->initial_offset};
        return;
    }
    size_t lo = 0, hi = tz->transition_count - 1; /* tr[lo] <= t < tr[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tr[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    out->start = tr[lo];
    out->end = tr[lo + 1];
    out->offset = tz->transition_offsets[lo];
    out->prev_offset = lo > 0 ? tz->transition_offsets[lo - 1] : tz->initial_offset;
}

/* Appends the footer rule's transitions for one year, in the order they happen. */
static size_t add_rule_changes(const tz_footer *f, int64_t year, offset_change *list, size_t n)
{
    offset_change start = {rule_local_time(&f->start, year) - f->std_offset, f->dst_offset};
    offset_change end = {rule_local_time(&f->end, year) - f->dst_offset, f->std_offset};
    /* Stable order inside the year; when DST lasts all year, end(Y) == start(Y+1). */
    list[n++] = start.at <= end.at ? start : end;
    list[n++] = start.at <= end.at ? end : start;
    return n;
}

/* Period lookup after the table, from the footer rule (or the last offset if there is none). */
static void footer_period(const tz_info *tz, int64_t t, tz_period *out)
{
    size_t count = tz->transition_count;
    int32_t last_offset = count ? tz->transition_offsets[count - 1] : tz->initial_offset;
    int32_t before_last = count > 1 ? tz->transition_offsets[count - 2] : tz->initial_offset;
    int64_t last_start = count ? tz->transitions[count - 1] : INT64_MIN;
    const tz_footer *f = &tz->footer;

    if (!f->present || !f->has_dst) {
        int32_t offset = f->present ? f->std_offset : last_offset;
        *out = (tz_period){last_start, INT64_MAX, offset, count ? before_last : offset};
        return;
    }

    offset_change raw[6], list[7];
    size_t n_raw = 0, n = 0;
    int64_t clamped = t < -TZ_TIME_LIMIT ? -TZ_TIME_LIMIT : t > TZ_TIME_LIMIT ? TZ_TIME_LIMIT : t;
    int64_t year;
    int month, day;
    tz_civil_from_days(floor_div(clamped, 86400), &year, &month, &day);
    for (int64_t y = year - 1; y <= year + 1; y++)
        n_raw = add_rule_changes(f, y, raw, n_raw);
    /* Insertion sort: stable, so equal instants keep generation order and the later wins. */
    for (size_t i = 1; i < n_raw; i++) {
        offset_change c = raw[i];
        size_t j = i;
        for (; j > 0 && raw[j - 1].at > c.at; j--)
            raw[j] = raw[j - 1];
        raw[j] = c;
    }
    if (count)
        list[n++] = (offset_change){last_start, last_offset};
    for (size_t i = 0; i < n_raw; i++) {
        if (count && raw[i].at <= last_start)
            continue; /* the table governs up to its last transition */
        if (i + 1 < n_raw && raw[i + 1].at == raw[i].at)
            continue;
        if (n > 0 && list[n - 1].offset == raw[i].offset)
            continue;
        list[n++] = raw[i];
    }

    size_t k = 0;
    if (n == 0 || t < list[0].at) {
        /* Only reachable for instants beyond the clamp; treat them as one long period. */
        int32_t offset =
            n ? (list[0].offset == f->dst_offset ? f->std_offset : f->dst_offset) : f->std_offset;
        *out = (tz_period){INT64_MIN, n ? list[0].at : INT64_MAX, offset, offset};
        return;
    }
    while (k + 1 < n && list[k + 1].at <= t)
        k++;
    out->start = list[k].at;
    out->end = k + 1 < n ? list[k + 1].at : INT64_MAX;
    out->offset = list[k].offset;
    out->prev_offset = k > 0 ? list[k - 1].offset : (count ? before_last : list[k].offset);
}

/* The table up to its last transition, the footer rule after it (see tz.h). */
void tz_period_at(const tz_info *tz, int64_t utc_seconds, tz_period *out)
{
    if (tz == NULL) {
        *out = (tz_period){INT64_MIN, INT64_MAX, 0, 0};
        return;
    }
    size_t count = tz->transition_count;
    if (count > 0 && utc_seconds < tz->transitions[count - 1]) {
        table_period(tz, utc_seconds, out);
        return;
    }
    if (count == 0 && !tz->footer.present) {
        *out = (tz_period){INT64_MIN, INT64_MAX, tz->initial_offset, tz->initial_offset};
        return;
    }
    footer_period(tz, utc_seconds, out);
}

/* The offset of the period containing the instant; NULL means UTC. */
int32_t tz_offset_at(const tz_info *tz, int64_t utc_seconds)
{
    tz_period period;
    tz_period_at(tz, utc_seconds, &period);
    return period.offset;
}

/*
 * Collects every period whose wall-clock range holds local_seconds. None: a gap, and the
 * instant of the jump over it is reported; two: an overlap. NULL tz means UTC.
 */
tz_local tz_local_to_utc(const tz_info *tz, int64_t local_seconds)
{
    if (local_seconds < -TZ_TIME_LIMIT || local_seconds > TZ_TIME_LIMIT)
        local_seconds = local_seconds < 0 ? -TZ_TIME_LIMIT : TZ_TIME_LIMIT; /* no overflow */
    tz_local result = {TZ_LOCAL_UNIQUE, local_seconds, local_seconds};
    if (tz == NULL)
        return result;
    /* Every instant whose wall time can be local_seconds lies within the offset bound. */
    int64_t low = local_seconds - TZ_OFFSET_BOUND - 1;
    int64_t high = local_seconds + TZ_OFFSET_BOUND + 1;
    int64_t jump = 0;
    int found = 0, have_jump = 0;
    tz_period p;
    for (int64_t t = low;;) {
        tz_period_at(tz, t, &p);
        int64_t candidate = local_seconds - p.offset;
        if (candidate >= p.start && candidate < p.end) {
            if (found++ == 0)
                result.earliest = candidate;
            result.latest = candidate;
        } else if (!have_jump && candidate < p.start) {
            /* This period's wall clock starts past local_seconds: the clocks jumped here. */
            jump = p.start;
            have_jump = 1;
        }
        if (p.end == INT64_MAX || p.end > high)
            break;
        t = p.end;
    }
    if (found >= 2) {
        result.kind = TZ_LOCAL_OVERLAP;
    } else if (found == 0) {
        result.kind = have_jump ? TZ_LOCAL_GAP : TZ_LOCAL_UNIQUE;
        result.earliest = result.latest =
            have_jump ? jump : local_seconds - tz_offset_at(tz, local_seconds);
    }
    return result;
}

/* ---- TZif files ---- */

static uint32_t read_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t read_be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)read_be32(p) << 32 | read_be32(p + 4));
}

typedef struct tzif_counts {
    uint32_t isut, isstd, leap, time, type, chars;
} tzif_counts;

static void read_counts(const unsigned char *header, tzif_counts *c)
{
    c->isut = read_be32(header + 20);
    c->isstd = read_be32(header + 24);
    c->leap = read_be32(header + 28);
    c->time = read_be32(header + 32);
    c->type = read_be32(header + 36);
    c->chars = read_be32(header + 40);
}

/* Size of a data block whose times take time_size bytes (4 in version 1, 8 later). */
static size_t data_size(const tzif_counts *c, size_t time_size)
{
    return (size_t)c->time * time_size + c->time + (size_t)c->type * 6 + c->chars +
           (size_t)c->leap * (time_size + 4) + c->isstd + c->isut;
}

/*
 * Fills tz's transitions, initial offset and footer from a TZif image. Returns 0; 1 when the
 * data is not TZif at all; -1 with err set when it is a TZif file we cannot use.
 */
static int parse_tzif(const unsigned char *buf, size_t len, tz_info *tz, const char *path,
                      char *err, size_t errlen)
{
    tzif_counts c;
    if (len < 44 || memcmp(buf, "TZif", 4) != 0)
        return 1;
    read_counts(buf, &c);
    size_t time_size = 4;
    size_t pos = 44;
    const char *problem = NULL;
    if (buf[4] >= '2') {
        pos += data_size(&c, 4);
        if (pos + 44 > len || memcmp(buf + pos, "TZif", 4) != 0) {
            problem = "second header";
            goto bad;
        }
        read_counts(buf + pos, &c);
        pos += 44;
        time_size = 8;
    }
    if (c.type == 0 || c.type > 256 || c.time > 100000 || c.chars == 0) {
        problem = "counts";
        goto bad;
    }
    if (data_size(&c, time_size) > len - pos) {
        problem = "truncated";
        goto bad;
    }
    if (c.leap > 0) {
        seterr(err, errlen,
               "time zone file %s counts leap seconds, which ferry does not support; use the "
               "zone of the same name outside right/",
               path);
        return -1;
    }

    const unsigned char *times = buf + pos;
    const unsigned char *indexes = times + (size_t)c.time * time_size;
    const unsigned char *types = indexes + c.time;
    int32_t type_offsets[256] = {0};
    for (uint32_t i = 0; i < c.type; i++) {
        int32_t offset = (int32_t)read_be32(types + 6 * i);
        if (offset < -89999 || offset > 93599) {
            problem = "UTC offset";
            goto bad;
        }
        type_offsets[i] = offset;
    }
    tz->initial_offset = type_offsets[0];
    tz->transition_count = c.time;
    tz->transitions = calloc(c.time ? c.time : 1, sizeof(int64_t));
    tz->transition_offsets = calloc(c.time ? c.time : 1, sizeof(int32_t));
    if (tz->transitions == NULL || tz->transition_offsets == NULL)
        abort(); /* as xstrdup: out of memory is not recoverable here */
    for (uint32_t i = 0; i < c.time; i++) {
        const unsigned char *p = times + (size_t)i * time_size;
        tz->transitions[i] = time_size == 8 ? read_be64(p) : (int32_t)read_be32(p);
        if (indexes[i] >= c.type || (i > 0 && tz->transitions[i] <= tz->transitions[i - 1])) {
            problem = "transitions";
            goto bad;
        }
        tz->transition_offsets[i] = type_offsets[indexes[i]];
    }

    pos += data_size(&c, time_size);
    if (time_size == 8) {
        char footer[TZ_FOOTER_MAX + 1];
        const unsigned char *end =
            pos + 1 < len ? memchr(buf + pos + 1, '\n', len - pos - 1) : NULL;
        size_t footer_len = end ? (size_t)(end - (buf + pos + 1)) : 0;
        if (pos >= len || buf[pos] != '\n' || end == NULL || footer_len > TZ_FOOTER_MAX) {
            problem = "footer";
            goto bad;
        }
        memcpy(footer, buf + pos + 1, footer_len);
        footer[footer_len] = '\0';
        if (footer_len > 0 && parse_posix_tz(footer, &tz->footer) < 0) {
            seterr(err, errlen,
                   "time zone file %s ends in a rule ferry cannot read ('%s'); update tzdata", path,
                   footer);
            return -1;
        }
    }
    return 0;

bad:
    seterr(err, errlen, "time zone file %s is damaged (%s); reinstall the tzdata package", path,
           problem);
    return -1;
}

/* ---- loading, names and the cache ---- */

typedef struct cache_entry {
    char *path; /* NULL: free slot */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    tz_info *tz; /* the cache's own reference */
    uint64_t last_used;
} cache_entry;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cache_entry cache[TZ_CACHE_SIZE];
static uint64_t cache_clock;

static void tz_destroy(tz_info *tz)
{
    free(tz->name);
    free(tz->transitions);
    free(tz->transition_offsets);
    free(tz);
}

static tz_info *tz_new(const char *name)
{
    tz_info *tz = calloc(1, sizeof(*tz));
    if (tz == NULL)
        abort();
    tz->name = xstrdup(name);
    tz->refs = 1;
    return tz;
}

static int valid_zone_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > TZ_NAME_MAX || name[0] == '/' || strstr(name, "..") != NULL)
        return 0;
    for (const char *p = name; *p; p++) {
        if (!isalnum((unsigned char)*p) && strchr("/_+-.", *p) == NULL)
            return 0;
    }
    return 1;
}

static int same_file(const cache_entry *e, const char *path, const struct stat *st)
{
    return e->path != NULL && strcmp(e->path, path) == 0 && e->dev == st->st_dev &&
           e->ino == st->st_ino && e->size == st->st_size &&
           e->mtime.tv_sec == st->st_mtim.tv_sec && e->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

/* Returns a new reference to the cached zone for this file, or NULL. */
static tz_info *cache_find(const char *path, const struct stat *st)
{
    tz_info *found = NULL;
    pthread_mutex_lock(&cache_lock);
    for (size_t i = 0; i < TZ_CACHE_SIZE; i++) {
        if (same_file(&cache[i], path, st)) {
            found = cache[i].tz;
            found->refs++;
            cache[i].last_used = ++cache_clock;
            break;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return found;
}

/* Drops one reference; the caller holds cache_lock. */
static void release_locked(tz_info *tz)
{
    if (--tz->refs == 0)
        tz_destroy(tz);
}

/* Keeps a reference to tz under path, replacing a stale entry or the least recently used. */
static void cache_store(const char *path, const struct stat *st, tz_info *tz)
{
    pthread_mutex_lock(&cache_lock);
    size_t slot = TZ_CACHE_SIZE;
    for (size_t i = 0; i < TZ_CACHE_SIZE && slot == TZ_CACHE_SIZE; i++) {
        if (cache[i].path != NULL && strcmp(cache[i].path, path) == 0)
            slot = i;
    }
    for (size_t i = 0; i < TZ_CACHE_SIZE && slot == TZ_CACHE_SIZE; i++) {
        if (cache[i].path == NULL)
            slot = i;
    }
    if (slot == TZ_CACHE_SIZE) {
        slot = 0;
        for (size_t i = 1; i < TZ_CACHE_SIZE; i++) {
            if (cache[i].last_used < cache[slot].last_used)
                slot = i;
        }
    }
    cache_entry *e = &cache[slot];
    if (e->path != NULL) {
        free(e->path);
        release_locked(e->tz);
    }
    e->path = xstrdup(path);
    e->dev = st->st_dev;
    e->ino = st->st_ino;
    e->size = st->st_size;
    e->mtime = st->st_mtim;
    e->tz = tz;
    e->last_used = ++cache_clock;
    tz->refs++;
    pthread_mutex_unlock(&cache_lock);
}

/* Reads at most TZ_FILE_MAX bytes of fd into a buffer the caller frees; NULL on error. */
static unsigned char *read_all(int fd, size_t *len)
{
    unsigned char *buf = malloc(TZ_FILE_MAX);
    size_t got = 0;
    if (buf == NULL)
        abort();
    while (got < TZ_FILE_MAX) {
        ssize_t n = read(fd, buf + got, TZ_FILE_MAX - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            return NULL;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    *len = got;
    return buf;
}

static int is_utc_name(const char *name)
{
    return strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0;
}

/*
 * Validates the name, opens DIR/NAME, and returns the cached zone when the file is unchanged;
 * otherwise parses it and caches it. The caller owns the returned reference (tz_free).
 */
int tz_load(const char *name, tz_info **out, char *err, size_t errlen)
{
    int result = 0, fd = -1, parsed;
    unsigned char *buf = NULL;
    size_t len = 0;
    tz_info *tz = NULL;
    char path[PATH_MAX];
    struct stat st;
    const char *dir = getenv("TZDIR");
    if (dir == NULL || *dir == '\0')
        dir = TZ_DEFAULT_DIR;

    *out = NULL;
    for (const char *p = name; p != NULL && *p != '\0'; p++) {
        if (iscntrl((unsigned char)*p)) {
            name = "(control characters)"; /* keep the message on one line */
            break;
        }
    }
    if (name == NULL || !valid_zone_name(name)) {
        seterr(err, errlen,
               "invalid time zone name '%.64s': use an IANA name like Europe/Berlin "
               "or UTC",
               name ? name : "");
        return -1;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        goto unknown;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && (errno == ENOENT || errno == ENOTDIR) && is_utc_name(name)) {
        *out = tz_new(name); /* a database without UTC: UTC needs no file */
        return 0;
    }
    if (fd < 0 && errno != ENOENT && errno != ENOTDIR) {
        seterr(err, errlen, "cannot read time zone file %s: %s", path, strerror(errno));
        result = -1;
        goto out;
    }
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        goto unknown;
    if ((*out = cache_find(path, &st)) != NULL)
        goto out;

    if ((buf = read_all(fd, &len)) == NULL) {
        seterr(err, errlen, "cannot read time zone file %s: %s", path, strerror(errno));
        result = -1;
        goto out;
    }
    tz = tz_new(name);
    parsed = parse_tzif(buf, len, tz, path, err, errlen);
    if (parsed == 1)
        goto unknown;
    if (parsed < 0) {
        result = -1;
        goto out;
    }
    cache_store(path, &st, tz);
    *out = tz;
    tz = NULL;
    goto out;

unknown:
    seterr(err, errlen, "unknown time zone '%s': not in the system tz database (%s)", name, dir);
    result = -1;
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    if (tz != NULL)
        tz_destroy(tz);
    return result;
}

/* Drops the caller's reference; the zone is freed when the cache no longer holds it either. */
void tz_free(tz_info *tz)
{
    if (tz == NULL)
        return;
    pthread_mutex_lock(&cache_lock);
    release_locked(tz);
    pthread_mutex_unlock(&cache_lock);
}

/* The name given to tz_load(), owned by tz; "UTC" for NULL. */
const char *tz_name(const tz_info *tz)
{
    return tz ? tz->name : "UTC";
}
