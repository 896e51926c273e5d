/* Small helpers every host module uses: error text, time, ids, files. */
#ifndef FERRY_UTIL_H
#define FERRY_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define FERRY_VERSION "0.1.0"

/* Error text out-parameter (Redis anet style): formats into err when err is not NULL. */
void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t now_ms(void);
/* Milliseconds from CLOCK_MONOTONIC, for measuring intervals. */
int64_t mono_ms(void);
/* Microseconds from CLOCK_MONOTONIC. */
int64_t mono_us(void);

/* Writes a random (version 4) UUID, 36 characters plus NUL, into out. */
void uuid_v4(char out[37]);

/* n random bytes (at most 16) into out, from the kernel through uuid_v4's pool. */
void random_bytes(void *out, size_t n);

/* Formats ms since the epoch as ISO 8601 UTC with milliseconds ("2026-11-28T13:05:28.123Z"). */
void iso8601_ms(int64_t ms, char out[32]);

/*
 * Parses a date for filters: "2026-11-27", "2026-11-27T10:00:00Z", "2026-11-27T10:00:00+01:00",
 * "2026-11-27T10:00" (UTC), fractional seconds allowed. Returns ms since the epoch in *out;
 * 0 on success, -1 when the text is not such a date.
 */
int parse_date_ms(const char *text, int64_t *out);

/*
 * Reads a whole file (or standard input for "-") into a NUL-terminated buffer the caller
 * frees. At most max bytes: a larger file is an error. Returns NULL with err set on failure.
 */
char *read_file_capped(const char *path, size_t max, size_t *len, char *err, size_t errlen);

/* strdup that aborts on out-of-memory, so callers need not check. */
char *xstrdup(const char *s);
/* asprintf that aborts on out-of-memory and returns the string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Creates a directory and its parents (mode 0700 for new ones: private). 0 or -1 with errno. */
int mkdir_p(const char *path);

/* Non-zero when s is a valid name for a team, machine, bridge, region, storage or schedule:
 * 1-128 of [A-Za-z0-9._-], starting with a letter or digit. Otherwise 0 with err set. */
int valid_name(const char *s, char *err, size_t errlen);

/* FNV-1a (64 bits): h folded over the bytes of s; start from FNV1A_BASIS. For names of
 * files, channels and hash tables, never for anything an attacker must not collide. */
#define FNV1A_BASIS 1469598103934665603ULL
#define FNV1A_PRIME 1099511628211ULL
uint64_t fnv1a(uint64_t h, const char *s);

/* Writes v in decimal, without a NUL, at the end of out: returns where it starts (the
 * digits run to out + I64_DECIMAL_MAX). For hot paths, where snprintf costs about a
 * thousand instructions a number. */
#define I64_DECIMAL_MAX 20
char *i64_decimal(int64_t v, char out[I64_DECIMAL_MAX]);

/* pthread_create with every signal blocked in the new thread: a host reads its signals from
 * a signalfd, and one delivered to a helper thread would take its default action (SIGTERM
 * would end the host). 0 or pthread_create's error. */
int thread_start_quiet(pthread_t *thread, void *(*fn)(void *), void *arg);

#endif
