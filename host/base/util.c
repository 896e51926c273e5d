/* Small helpers every host module uses: error text, time, ids, files. */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The pool of uuid_v4, one per thread. A thread's first draw fills only its last
 * UUID_FIRST_DRAW bytes: most commands make an id or two, and the kernel took 15-45 us to
 * make 4 KiB of random bytes here, against 1-2 us for 64. Its later draws fill it all. */
#define UUID_FIRST_DRAW 64
static __thread unsigned char uuid_pool[4096];
static __thread size_t uuid_left;
static __thread int uuid_drawn;
static pthread_once_t uuid_once = PTHREAD_ONCE_INIT;

/* In a forked child (its one thread is the one that forked): the pool is the parent's. */
static void uuid_forked(void)
{
    uuid_left = 0;
}

static void uuid_register(void)
{
    if (pthread_atfork(NULL, NULL, uuid_forked) != 0)
        abort();
}

/* 16 random bytes from the pool, which the caller clears once used. */
static unsigned char *pool_take16(void)
{
    /* The kernel's random bytes are drawn 4 KiB at a time after a thread's first 64, not
     * 16 (a bulk create makes an id a line); each thread has its own pool, and a forked
     * child draws its own (ferry makes children with fork() only, which runs uuid_forked),
     * so no two processes or threads ever use the same bytes. A getpid() per id to notice
     * a fork cost a system call a line of a bulk create. */
    unsigned char *pool = uuid_pool;
    pthread_once(&uuid_once, uuid_register);
    size_t left = uuid_left;
    if (left < 16) {
        size_t want = uuid_drawn ? sizeof(uuid_pool) : UUID_FIRST_DRAW, got = 0;
        unsigned char *from = pool + sizeof(uuid_pool) - want;
        while (got < want) {
            ssize_t n = getrandom(from + got, want - got, 0);
            if (n < 0 && errno != EINTR)
                abort(); /* the kernel's random source is always there on Linux >= 3.17 */
            if (n > 0)
                got += (size_t)n;
        }
        left = want;
        uuid_drawn = 1;
    }
    uuid_left = left - 16;
    return pool + sizeof(uuid_pool) - left;
}

void random_bytes(void *out, size_t n)
{
    unsigned char *b = pool_take16();
    memcpy(out, b, n < 16 ? n : 16);
    memset(b, 0, 16);
}

void uuid_v4(char out[37])
{
    unsigned char *b = pool_take16();
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
    memset(b, 0, 16); /* an id's bytes are not kept */
}

/*
 * The calendar date of a day count since 1970-01-01, in the proleptic Gregorian calendar
 * (H. Hinnant's civil_from_days: 400-year eras of 146,097 days, years from March).
 */
static void civil_from_days(int64_t days, int64_t *year, int *month, int *day)
{
    days += 719468; /* from 0000-03-01 */
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;                                    /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                                     /* March = 0 */
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = yoe + era * 400 + (*month <= 2);
}

void iso8601_ms(int64_t ms, char out[32])
{
    /* The date computed here rather than by gmtime_r: glibc's reads the time zone
     * (/etc/localtime, six system calls) the first time any of its time conversions runs,
     * and a UTC date needs none of it. Seconds as gmtime_r was given them (ms / 1000). */
    int64_t secs = ms / 1000;
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int64_t year;
    int month, day;
    civil_from_days(days, &year, &month, &day);
    /* Years past 9999 do not occur; the casts tell the compiler the widths fit. */
    snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (int)(year % 10000), month % 100,
             day % 100, (int)(rem / 3600) % 100, (int)(rem / 60 % 60) % 100, (int)(rem % 60) % 100,
             (int)(ms % 1000 + 1000) % 1000);
}

int parse_date_ms(const char *text, int64_t *out)
{
    int y, mo, d, h = 0, mi = 0, n = 0;
    double s = 0;
    if (sscanf(text, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return -1;
    const char *p = text + n;
    if (*p == 'T' || *p == ' ') {
        int m = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &m) != 2)
            return -1;
        p += 1 + m;
        if (*p == ':') {
            char *end;
            s = strtod(p + 1, &end);
            if (end == p + 1)
                return -1;
            p = end;
        }
    }
    int offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om = 0, m = 0;
        int sign = *p == '-' ? -1 : 1;
        if (sscanf(p + 1, "%2d%n", &oh, &m) != 1)
            return -1;
        p += 1 + m;
        if (*p == ':')
            p++;
        if (*p >= '0' && *p <= '9') {
            if (sscanf(p, "%2d%n", &om, &m) != 1)
                return -1;
            p += m;
        }
        offset_min = sign * (oh * 60 + om);
    }
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s >= 61)
        return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                    .tm_min = mi};
    time_t t = timegm(&tm);
    *out = ((int64_t)t - offset_min * 60) * 1000 + (int64_t)(s * 1000.0 + 0.5);
    return 0;
}

char *read_file_capped(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (f == NULL) {
        seterr(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    if (buf == NULL)
        abort();
    for (;;) {
        if (n == cap) {
            if (cap > max)
                break;
            cap *= 2;
            buf = realloc(buf, cap + 1);
            if (buf == NULL)
                abort();
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int failed = ferror(f);
    if (!is_stdin)
        fclose(f);
    if (failed) {
        seterr(err, errlen, "cannot read %s: read error", path);
        free(buf);
        return NULL;
    }
    if (n > max) {
        seterr(err, errlen, "%s is larger than the limit of %zu bytes", path, max);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

char *xstrdup(const char *s)
{
    char *c = strdup(s);
    if (c == NULL)
        abort();
    return c;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    return s;
}

int mkdir_p(const char *path)
{
    char *copy = xstrdup(path);
    int rc = 0;
    for (char *p = copy + 1; *p && rc == 0; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, 0700) != 0 && errno != EEXIST)
            rc = -1;
        *p = '/';
    }
    if (rc == 0 && mkdir(copy, 0700) != 0 && errno != EEXIST)
        rc = -1;
    free(copy);
    return rc;
}

int valid_name(const char *s, char *err, size_t errlen)
{
    /* Names end up in shell commands, file paths and URLs, so they are kept to a safe
     * alphabet rather than quoted everywhere. */
    size_t n = strlen(s);
    int ok = n >= 1 && n <= 128 && isalnum((unsigned char)s[0]);
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)s[i]) || strchr("._-", s[i]) != NULL;
    if (!ok)
        seterr(err, errlen,
               "invalid name '%s': use 1-128 letters, digits, '.', '_' or '-', starting with a "
               "letter or digit",
               s);
    return ok;
}

uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * FNV1A_PRIME;
    return h;
}

char *i64_decimal(int64_t v, char out[I64_DECIMAL_MAX])
{
    char *o = out + I64_DECIMAL_MAX;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        *--o = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--o = '-';
    return o;
}

int thread_start_quiet(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    sigset_t all, was;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &was);
    int rc = pthread_create(thread, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &was, NULL);
    return rc;
}
