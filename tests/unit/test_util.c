/*
 * Unit tests for host/base/util.c's uuid_v4: the form of a version 4 UUID, no repeats over
 * many ids (the random bytes come from a pool drawn 4 KiB at a time), a forked child that
 * does not reuse the pool it inherited, and a thread's first draw of 64 bytes; i64_decimal
 * against printf's %lld; and iso8601_ms against gmtime_r, without reading the time zone as
 * gmtime_r does.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static int is_v4(const char *id)
{
    if (strlen(id) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? id[i] != '-' : strchr("0123456789abcdef", id[i]) == NULL || id[i] == '\0')
            return 0;
    }
    return id[14] == '4' && strchr("89ab", id[19]) != NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_form_and_no_repeats(void **state)
{
    (void)state;
    enum { N = 20000 }; /* about 78 draws of the pool */
    char(*ids)[37] = calloc(N, 37);
    assert_non_null(ids);
    for (int i = 0; i < N; i++) {
        uuid_v4(ids[i]);
        assert_true(is_v4(ids[i]));
    }
    qsort(ids, N, 37, cmp_id);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);
}

/* The parent and a child forked with a part-used pool make different next ids. */
static void test_fork_draws_its_own(void **state)
{
    (void)state;
    char first[37], parent_next[37], child_next[37] = "";
    uuid_v4(first); /* the pool is drawn and mostly left */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char id[37];
        uuid_v4(id);
        ssize_t w = write(fds[1], id, 37);
        _exit(w == 37 ? 0 : 1);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], child_next, 37), 37);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    uuid_v4(parent_next);
    assert_true(is_v4(child_next));
    assert_string_not_equal(child_next, parent_next);
    assert_string_not_equal(child_next, first);
}

/* The sizes util.c asked getrandom for: this definition takes the place of libc's for the
 * test program, which util.o is linked into. */
static size_t asked[8];
static int n_asked;

ssize_t getrandom(void *buf, size_t n, unsigned int flags)
{
    if (n_asked < 8)
        asked[n_asked] = n;
    n_asked++;
    return syscall(SYS_getrandom, buf, n, flags);
}

static void *five_ids(void *arg)
{
    char(*ids)[37] = arg;
    for (int i = 0; i < 5; i++)
        uuid_v4(ids[i]);
    return NULL;
}

/* A thread's first draw is 64 bytes, four ids (a command makes one or two); the draws after
 * it fill the whole pool. */
static void test_first_draw_small(void **state)
{
    (void)state;
    char ids[5][37];
    pthread_t t;
    n_asked = 0;
    assert_int_equal(pthread_create(&t, NULL, five_ids, ids), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(n_asked, 2);
    assert_int_equal(asked[0], 64);
    assert_int_equal(asked[1], 4096);
    for (int i = 0; i < 5; i++) {
        assert_true(is_v4(ids[i]));
        for (int k = 0; k < i; k++)
            assert_string_not_equal(ids[k], ids[i]);
    }
}

/* i64_decimal writes what printf's %lld writes, at the ends of the range too. */
static void test_i64_decimal(void **state)
{
    (void)state;
    const int64_t values[] = {
        0, 1, -1, 9, 10, 99, 100, 12345678901234LL, -42, INT64_MAX, INT64_MIN, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char out[I64_DECIMAL_MAX], want[32], got[I64_DECIMAL_MAX + 1];
        char *d = i64_decimal(values[i], out);
        size_t n = (size_t)(out + sizeof(out) - d);
        assert_true(n >= 1 && n <= I64_DECIMAL_MAX);
        memcpy(got, d, n);
        got[n] = '\0';
        snprintf(want, sizeof(want), "%lld", (long long)values[i]);
        assert_string_equal(got, want);
    }
}

/*
 * A UTC date needs no time zone: iso8601_ms must not run glibc's time zone set-up, which
 * reads /etc/localtime (six system calls of every create queue-item). Its sign: TZ's offset
 * in the global timezone. Runs before the test that calls gmtime_r, which sets it up.
 */
static void test_iso8601_reads_no_time_zone(void **state)
{
    (void)state;
    setenv("TZ", "XYZ+5", 1);
    char out[32];
    iso8601_ms(1764331528123, out);
    assert_string_equal(out, "2025-11-28T12:05:28.123Z");
    assert_int_equal(timezone, 0);
    tzset(); /* the sign works: the set-up reads TZ */
    assert_int_equal(timezone, 5 * 3600);
    unsetenv("TZ");
    tzset();
}

/* The form gmtime_r gave, for comparison. */
static void iso8601_gmtime(int64_t ms, char out[32])
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100, (int)(ms % 1000 + 1000) % 1000);
}

static void test_iso8601_as_gmtime(void **state)
{
    (void)state;
    /* Edges: the epoch and the millisecond before it, leap days (2000 is a leap year,
     * 2100 is not), the ends of a year, the last millisecond of 9999. */
    static const int64_t edges[] = {0, -1, -999, -1000, -1001, -86400000, 951782400000,
                                    951868800000, 4107542400000, 4107456000000, 1767225599999,
                                    1767225600000, 253402300799999, -62135596800000};
    char got[32], want[32];
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        iso8601_ms(edges[i], got);
        iso8601_gmtime(edges[i], want);
        assert_string_equal(got, want);
    }
    /* Every day from 1900 to 2400, at a varying time of day. */
    for (int64_t day = -25567; day < 157054; day++) {
        int64_t ms = day * 86400000 + (day * 7919 % 86400000 + 86400000) % 86400000;
        iso8601_ms(ms, got);
        iso8601_gmtime(ms, want);
        assert_string_equal(got, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_form_and_no_repeats),
        cmocka_unit_test(test_fork_draws_its_own),
        cmocka_unit_test(test_first_draw_small),
        cmocka_unit_test(test_i64_decimal),
        cmocka_unit_test(test_iso8601_reads_no_time_zone), /* before any gmtime_r */
        cmocka_unit_test(test_iso8601_as_gmtime),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
