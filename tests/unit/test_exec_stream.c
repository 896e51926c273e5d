/*
 * The streaming exec (host/worker/exec_stream.c) on the local machine, with real processes:
 * data both ways through cat, a command that ends early or never reads, a stderr flood, the
 * timeout, the deadline, a cancel and exec_wait's stop waking a caller blocked in read() or
 * write(), env/cwd, exit codes, the refused options, bad handles, streams never waited, and
 * a failed SSH connection reported by exec_wait. (Over SSH: tests/e2e/exec_stream.sh.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "exec.h"
#include "util.h"

static volatile int cancel_now;
static int is_cancelled(void *arg)
{
    (void)arg;
    return cancel_now;
}
static pid_t reported;
static void on_pgroup(void *arg, pid_t pgid)
{
    (void)arg;
    reported = pgid;
}

static exec_hooks hooks = {.cancelled = is_cancelled, .on_pgroup = on_pgroup};

/* Starts command (options as JSON text, may be NULL); asserts it started. */
static uintptr_t start(const char *command, const char *options, int *to, int *from)
{
    json_t *o = options ? json_loads(options, 0, NULL) : NULL;
    char err[512] = "";
    cancel_now = 0;
    uintptr_t h = exec_stream_start(NULL, command, o, &hooks, to, from, err, sizeof(err));
    json_decref(o);
    if (h == 0)
        fail_msg("exec_stream_start: %s", err);
    return h;
}

/* Starts command with its stdin and stdout closed at once. */
static uintptr_t start_closed(const char *command, const char *options)
{
    int to, from;
    uintptr_t h = start(command, options, &to, &from);
    close(to);
    close(from);
    return h;
}

static json_t *wait_for(uintptr_t h, int stop)
{
    char err[512] = "";
    json_t *res = exec_stream_wait(h, stop, err, sizeof(err));
    if (res == NULL)
        fail_msg("exec_stream_wait: %s", err);
    return res;
}

static json_int_t num(const json_t *res, const char *key)
{
    return json_integer_value(json_object_get(res, key));
}
static const char *str(const json_t *res, const char *key)
{
    return json_string_value(json_object_get(res, key));
}

/* A deterministic byte stream and a hash of what passes. */
static uint64_t next_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}
static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

struct writer {
    int fd;
    size_t bytes, written;
    uint64_t hash;
    int err;
};

static void *write_all(void *arg)
{
    struct writer *w = arg;
    unsigned char buf[65536];
    uint64_t x = 88172645463325252ULL;
    w->hash = 14695981039346656037ULL;
    while (w->written < w->bytes) {
        size_t n = w->bytes - w->written < sizeof(buf) ? w->bytes - w->written : sizeof(buf);
        for (size_t i = 0; i < n; i += 8) {
            uint64_t r = next_rand(&x);
            memcpy(buf + i, &r, n - i < 8 ? n - i : 8);
        }
        ssize_t k = write(w->fd, buf, n);
        if (k < 0) {
            w->err = errno;
            break;
        }
        w->hash = fnv(w->hash, buf, (size_t)k);
        w->written += (size_t)k;
    }
    close(w->fd);
    return NULL;
}

/* Reads fd to its end; returns the bytes, their hash in *hash, the text's start in head. */
static size_t read_all(int fd, uint64_t *hash, char *head, size_t headlen)
{
    unsigned char buf[65536];
    size_t total = 0;
    uint64_t h = 14695981039346656037ULL;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
        if (n < 0)
            continue;
        if (head && total < headlen - 1) {
            size_t c = headlen - 1 - total < (size_t)n ? headlen - 1 - total : (size_t)n;
            memcpy(head + total, buf, c);
            head[total + c] = '\0';
        }
        h = fnv(h, buf, (size_t)n);
        total += (size_t)n;
    }
    close(fd);
    if (hash)
        *hash = h;
    return total;
}

/* Runs command while a thread writes bytes to its stdin and this one reads its stdout to the
 * end (the first bytes in head); returns exec_stream_wait's result, the writer's side in *w,
 * the bytes read in *got and their hash in *hash. */
static json_t *pump(const char *command, size_t bytes, struct writer *w, size_t *got,
                    uint64_t *hash, char *head, size_t headlen)
{
    int to, from;
    uintptr_t h = start(command, NULL, &to, &from);
    *w = (struct writer){.fd = to, .bytes = bytes};
    pthread_t t;
    pthread_create(&t, NULL, write_all, w);
    *got = read_all(from, hash, head, headlen);
    pthread_join(t, NULL);
    return wait_for(h, 0);
}

static void test_cat_both_ways(void **state)
{
    (void)state;
    struct writer w;
    size_t got;
    uint64_t hash;
    json_t *res = pump("cat", 32u << 20, &w, &got, &hash, NULL, 0);
    assert_true(reported > 0);
    assert_int_equal(getpgid(reported), -1); /* its own process group, gone with it */
    assert_int_equal(w.err, 0);
    assert_int_equal(got, w.bytes);
    assert_true(hash == w.hash);
    assert_int_equal(num(res, "exit_code"), 0);
    assert_true(json_is_null(json_object_get(res, "signal")));
    assert_true(json_is_null(json_object_get(res, "stopped")));
    assert_string_equal(str(res, "output"), "");
    assert_true(json_is_false(json_object_get(res, "truncated")));
    json_decref(res);
}

static void test_own_group(void **state)
{
    (void)state;
    int to, from;
    uintptr_t h = start("exec cat", NULL, &to, &from);
    assert_true(reported > 0);
    assert_int_equal(getpgid(reported), reported); /* a process group of its own */
    close(to);
    close(from);
    json_decref(wait_for(h, 0));
}

static void test_closes_stdout_early(void **state)
{
    (void)state;
    struct writer w;
    size_t got;
    char head[64] = "";
    json_t *res = pump("head -c 10 >/dev/null; echo early; exec >&-; sleep 0.3; exit 4", 64u << 20,
                       &w, &got, NULL, head, sizeof(head));
    assert_string_equal(head, "early\n");
    assert_int_equal(w.err, EPIPE); /* its writes fail once the command is gone: no SIGPIPE */
    assert_true(w.written < w.bytes);
    assert_int_equal(num(res, "exit_code"), 4);
    json_decref(res);
}

static void test_never_reads_stdin(void **state)
{
    (void)state;
    struct writer w;
    size_t got;
    char head[64] = "";
    json_t *res = pump("echo ignored", 16u << 20, &w, &got, NULL, head, sizeof(head));
    assert_string_equal(head, "ignored\n");
    assert_int_equal(w.err, EPIPE);
    assert_int_equal(num(res, "exit_code"), 0);
    json_decref(res);
}

static void test_stderr_flood(void **state)
{
    (void)state;
    int to, from;
    /* 8 MiB of stderr, then the data: the flood must not block the command. */
    uintptr_t h = start("head -c 8388608 /dev/zero | tr '\\0' e >&2; echo tail-marker >&2; "
                        "printf data; exit 3",
                        NULL, &to, &from);
    close(to);
    char head[64] = "";
    read_all(from, NULL, head, sizeof(head));
    assert_string_equal(head, "data");
    json_t *res = wait_for(h, 0);
    assert_int_equal(num(res, "exit_code"), 3);
    const char *out = str(res, "output");
    assert_int_equal(strlen(out), 64 * 1024);
    assert_string_equal(out + strlen(out) - 12, "tail-marker\n");
    assert_true(json_is_true(json_object_get(res, "truncated")));
    json_decref(res);
}

static void test_stderr_binary(void **state)
{
    (void)state;
    uintptr_t h = start_closed("printf 'a\\000b\\377c' >&2", NULL);
    json_t *res = wait_for(h, 0);
    assert_string_equal(str(res, "output"), "a?b\xef\xbf\xbd"
                                            "c"); /* valid UTF-8 */
    json_decref(res);
}

static void test_timeout_wakes_a_reader(void **state)
{
    (void)state;
    int to, from;
    int64_t t0 = mono_ms();
    uintptr_t h = start("exec sleep 30", "{\"timeout\": 1}", &to, &from);
    read_all(from, NULL, NULL, 0); /* blocks until the timeout ends the command */
    assert_true(mono_ms() - t0 < 4000);
    close(to);
    json_t *res = wait_for(h, 0);
    assert_string_equal(str(res, "stopped"), "timeout");
    assert_int_equal(num(res, "signal"), SIGTERM);
    assert_int_equal(num(res, "exit_code"), -1);
    json_decref(res);
}

static void test_deadline(void **state)
{
    (void)state;
    int to, from;
    exec_hooks keep = hooks;
    hooks.deadline_ms = now_ms() + 500;
    uintptr_t h = start("exec sleep 30", NULL, &to, &from);
    hooks = keep;
    read_all(from, NULL, NULL, 0);
    close(to);
    json_t *res = wait_for(h, 0);
    assert_string_equal(str(res, "stopped"), "timeout");
    json_decref(res);
}

static int always(void *arg)
{
    (void)arg;
    return 1;
}

/* The attempt's cancel check turns true at its deadline by the wall clock, which may come a
 * moment before the monotonic stop time: that is still a timeout, not a cancel. */
static void test_police_deadline_is_timeout(void **state)
{
    (void)state;
    int to, from;
    uintptr_t h = start("exec sleep 30", NULL, &to, &from);
    exec_hooks dl = {.cancelled = always, .deadline_ms = now_ms() - 1};
    exec_stopper st = {.pgid = reported, .stop_at = mono_ms() + 60000};
    exec_police(&st, &dl);
    assert_string_equal(st.why, "timeout");
    assert_true(st.timed_out);
    exec_hooks cancel = {.cancelled = always};
    exec_stopper st2 = {.pgid = reported};
    exec_police(&st2, &cancel);
    assert_string_equal(st2.why, "cancelled");
    close(to);
    close(from);
    json_decref(wait_for(h, 1));
}

static void *cancel_later(void *arg)
{
    (void)arg;
    usleep(300000);
    cancel_now = 1;
    return NULL;
}

static void test_cancel_wakes_a_writer(void **state)
{
    (void)state;
    int to, from;
    /* The command reads nothing and ignores SIGTERM: the writer blocks on a full pipe until
     * the cancel's SIGKILL ends it. */
    uintptr_t h = start("trap '' TERM; sleep 30 </dev/null & wait; sleep 30", NULL, &to, &from);
    pthread_t c;
    pthread_create(&c, NULL, cancel_later, NULL);
    struct writer w = {.fd = to, .bytes = 1u << 30};
    int64_t t0 = mono_ms();
    write_all(&w);
    pthread_join(c, NULL);
    assert_int_equal(w.err, EPIPE);
    assert_true(mono_ms() - t0 < 6000);
    read_all(from, NULL, NULL, 0);
    json_t *res = wait_for(h, 0);
    assert_string_equal(str(res, "stopped"), "cancelled");
    assert_int_equal(num(res, "signal"), SIGKILL);
    json_decref(res);
    /* Nothing of its group is left (once init reaped the orphans). */
    for (int i = 0; i < 100 && kill(-reported, 0) == 0; i++)
        usleep(20000);
    assert_int_equal(kill(-reported, 0), -1);
}

static void test_wait_stop(void **state)
{
    (void)state;
    int to, from;
    uintptr_t h = start_closed("exec sleep 30", NULL);
    int64_t t0 = mono_ms();
    json_t *res = wait_for(h, 1);
    assert_true(mono_ms() - t0 < 3000);
    assert_string_equal(str(res, "stopped"), "stop");
    json_decref(res);
    /* A command that already ended is not "stopped". */
    h = start("exit 7", NULL, &to, &from);
    close(to);
    read_all(from, NULL, NULL, 0);
    usleep(200000);
    res = wait_for(h, 1);
    assert_true(json_is_null(json_object_get(res, "stopped")));
    assert_int_equal(num(res, "exit_code"), 7);
    json_decref(res);
}

static void test_env_cwd(void **state)
{
    (void)state;
    int to, from;
    uintptr_t h = start("printf '%s|' \"$FOO\"; pwd",
                        "{\"env\": {\"FOO\": \"a b'c\"}, \"cwd\": \"/tmp\"}", &to, &from);
    close(to);
    char head[64] = "";
    read_all(from, NULL, head, sizeof(head));
    assert_string_equal(head, "a b'c|/tmp\n");
    json_decref(wait_for(h, 0));
}

static void test_refused_and_bad_handles(void **state)
{
    (void)state;
    int to = 5, from = 5;
    char err[512] = "";
    json_t *o = json_pack("{s:s}", "stdin", "x");
    assert_true(exec_stream_start(NULL, "cat", o, &hooks, &to, &from, err, sizeof(err)) == 0);
    assert_non_null(strstr(err, "\"stdin\""));
    json_decref(o);
    o = json_pack("{s:i}", "max_output", 10);
    assert_true(exec_stream_start(NULL, "cat", o, &hooks, &to, &from, err, sizeof(err)) == 0);
    assert_non_null(strstr(err, "\"max_output\""));
    json_decref(o);
    err[0] = '\0';
    assert_null(exec_stream_wait(0, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "not a handle"));
    assert_null(exec_stream_wait(12345678, 1, err, sizeof(err)));
    uintptr_t h = start_closed("true", NULL);
    json_decref(wait_for(h, 0));
    err[0] = '\0';
    assert_null(exec_stream_wait(h, 0, err, sizeof(err))); /* already waited */
    assert_non_null(strstr(err, "already waited"));
}

static void test_end_all(void **state)
{
    (void)state;
    int to[2], from[2];
    start("exec sleep 30", NULL, &to[0], &from[0]);
    pid_t first = reported;
    start("exec sleep 30", NULL, &to[1], &from[1]);
    int64_t t0 = mono_ms();
    assert_int_equal(exec_stream_end_all(), 2);
    assert_true(mono_ms() - t0 < 3000);
    assert_int_equal(kill(first, 0), -1);
    assert_int_equal(kill(reported, 0), -1);
    assert_int_equal(exec_stream_end_all(), 0);
    for (int i = 0; i < 2; i++) {
        close(to[i]);
        close(from[i]);
    }
}

static void test_ssh_failure(void **state)
{
    (void)state;
    int s = socket(AF_INET, SOCK_STREAM, 0); /* a port nothing listens on */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(s, (struct sockaddr *)&a, &len);
    json_t *m = json_pack("{s:s,s:s,s:s,s:i}", "name", "far", "ip", "127.0.0.1", "user", "nobody",
                          "ssh_port", ntohs(a.sin_port));
    int to, from;
    char err[512] = "";
    /* The attempt's first command to a machine makes the connection its later commands
     * share (docs/machines.md): one that cannot be made fails the start, with the reason. */
    uintptr_t h = exec_stream_start(m, "cat", NULL, &hooks, &to, &from, err, sizeof(err));
    assert_true(h == 0);
    assert_non_null(strstr(err, "machine far"));
    assert_non_null(strstr(err, "Connection refused"));
    close(s);
    json_decref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cat_both_ways),
        cmocka_unit_test(test_own_group),
        cmocka_unit_test(test_closes_stdout_early),
        cmocka_unit_test(test_never_reads_stdin),
        cmocka_unit_test(test_stderr_flood),
        cmocka_unit_test(test_stderr_binary),
        cmocka_unit_test(test_timeout_wakes_a_reader),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_police_deadline_is_timeout),
        cmocka_unit_test(test_cancel_wakes_a_writer),
        cmocka_unit_test(test_wait_stop),
        cmocka_unit_test(test_env_cwd),
        cmocka_unit_test(test_refused_and_bad_handles),
        cmocka_unit_test(test_end_all),
        cmocka_unit_test(test_ssh_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
