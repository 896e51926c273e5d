/*
 * The runner's typed interface with real workers: this test binary is its own worker (the
 * runner starts /proc/self/exe __worker, and main() hands that to the worker), running the
 * core plugin's log_message. Typed events and outcomes, hooks and hook_dir as explicit
 * fields, a worker handed its next attempt from the done callback, deadline and shutdown
 * stops.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>

#include "runner.h"
#include "util.h"
#include "worker.h"

static char core_so[1024];

struct seen {
    runner *r;
    int done;
    struct outcome out;
    char code[64], message[512];
    json_t *result;
    char logs[8192];
    int64_t log_id;
    pid_t pid, next_pid;
    runner_job *next; /* started from the done callback */
    struct attempt_spec again;
    /* attempts tagged 1..63: the order they ended in, and each one's outcome */
    int order[64], n_order;
    struct outcome by_tag[64];
    pid_t pid_by_tag[64];
};

static void on_log(void *ud, runner_job *job, const struct proto_log *m)
{
    struct seen *s = ud;
    s->log_id = m->id;
    assert_int_equal(m->id, runner_job_id(job));
    size_t len = strlen(s->logs);
    snprintf(s->logs + len, sizeof(s->logs) - len, "[%s] %s\n", m->level, m->text);
}

static void on_done(void *ud, runner_job *job, const struct outcome *out)
{
    struct seen *s = ud;
    s->done++;
    s->out = *out;
    snprintf(s->code, sizeof(s->code), "%s", out->code ? out->code : "");
    snprintf(s->message, sizeof(s->message), "%s", out->message ? out->message : "");
    json_decref(s->result);
    s->result = out->result ? json_deep_copy(out->result) : NULL;
    s->pid = runner_job_pid(job);
    intptr_t tag = (intptr_t)runner_job_tag(job);
    if (tag > 0 && tag < 64) {
        s->order[s->n_order++] = (int)tag;
        s->by_tag[tag] = *out;
        s->by_tag[tag].code = s->by_tag[tag].message = NULL; /* borrowed: not kept */
        s->by_tag[tag].result = NULL;
        s->pid_by_tag[tag] = runner_job_pid(job);
    }
    if (s->again.plugin && s->next == NULL) { /* the worker is free: hand it the next one */
        s->next = runner_start(s->r, &s->again, NULL, 0);
        if (s->next)
            s->next_pid = runner_job_pid(s->next);
    }
}

static void wait_done(struct seen *s, int n)
{
    int64_t until = mono_ms() + 20000;
    while (s->done < n && mono_ms() < until) {
        struct pollfd p = {.fd = runner_fd(s->r), .events = POLLIN};
        int wait = runner_timeout_ms(s->r);
        poll(&p, 1, wait < 0 || wait > 100 ? 100 : wait);
        runner_process(s->r);
        runner_tick(s->r);
    }
    assert_int_equal(s->done, n);
}

static runner *start(struct seen *s, int max_workers)
{
    memset(s, 0, sizeof(*s));
    runner_opts o = {.max_workers = max_workers, .prefork = 0, .max_jobs = 100, .grace_ms = 400};
    runner_events ev = {.log = on_log, .done = on_done};
    s->r = runner_create(&o, &ev, s);
    return s->r;
}

static void finish(struct seen *s)
{
    runner_free(s->r);
    json_decref(s->result);
}

static void test_typed_attempt(void **state)
{
    (void)state;
    struct seen s;
    start(&s, 1);
    json_t *params = json_pack("{s:s,s:s}", "message", "typed hello", "level", "warn");
    struct attempt_spec spec = {.plugin = core_so, .function = "log_message", .params = params,
                                .task_id = "t-1", .attempt = 1, .timeout_ms = 10000};
    runner_job *job = runner_start(s.r, &spec, NULL, 0);
    assert_non_null(job);
    wait_done(&s, 1);
    assert_int_equal(s.out.kind, OUTCOME_OK);
    assert_int_equal(s.out.stop, STOP_NONE);
    assert_null(s.out.code);
    assert_non_null(strstr(s.logs, "[warn] typed hello"));
    json_decref(params);
    /* A function the plugin does not have: UNAVAILABLE, the worker's own outcome. */
    struct attempt_spec none = {.plugin = core_so, .function = "no_such_function"};
    assert_non_null(runner_start(s.r, &none, NULL, 0));
    wait_done(&s, 2);
    assert_int_equal(s.out.kind, OUTCOME_UNAVAILABLE);
    assert_string_equal(s.code, "unavailable");
    assert_non_null(strstr(s.message, "has no function no_such_function"));
    finish(&s);
}

/* The done callback may hand the same worker its next attempt at once. */
static void test_next_attempt_from_done(void **state)
{
    (void)state;
    struct seen s;
    memset(&s, 0, sizeof(s));
    /* (no pipelining: one slot per worker, the old meaning of a slot) */
    runner_opts o1 = {.max_workers = 1, .max_jobs = 100, .grace_ms = 400, .pipeline = -1};
    runner_events ev1 = {.log = on_log, .done = on_done};
    s.r = runner_create(&o1, &ev1, &s);
    json_t *params = json_pack("{s:s,s:s}", "message", "first", "level", "info");
    json_t *params2 = json_pack("{s:s,s:s}", "message", "second", "level", "info");
    struct attempt_spec spec = {.plugin = core_so, .function = "log_message", .params = params};
    s.again = (struct attempt_spec){.plugin = core_so, .function = "log_message",
                                    .params = params2};
    assert_non_null(runner_start(s.r, &spec, NULL, 0));
    assert_null(runner_start(s.r, &spec, NULL, 0)); /* one slot, taken */
    wait_done(&s, 1);
    if (s.out.kind != OUTCOME_OK)
        fail_msg("%s: %s; trace:\n%s", outcome_kind_name(s.out.kind), s.message, s.logs);
    pid_t first = s.pid;
    assert_non_null(s.next);
    assert_int_equal(s.next_pid, first); /* the same worker, no new process */
    wait_done(&s, 2);
    assert_int_equal(s.out.kind, OUTCOME_OK);
    assert_int_equal(s.pid, first);
    assert_non_null(strstr(s.logs, "[info] second"));
    finish(&s);
    /* A worker at its quota is retired, never handed the next attempt: that one gets a
     * new worker and runs to its end. */
    memset(&s, 0, sizeof(s));
    runner_opts o = {.max_workers = 1, .prefork = 0, .max_jobs = 1, .grace_ms = 400};
    runner_events ev = {.log = on_log, .done = on_done};
    s.r = runner_create(&o, &ev, &s);
    s.again = (struct attempt_spec){.plugin = core_so, .function = "log_message",
                                    .params = params2};
    assert_non_null(runner_start(s.r, &spec, NULL, 0));
    wait_done(&s, 1);
    first = s.pid;
    assert_non_null(s.next);
    assert_true(s.next_pid != first);
    wait_done(&s, 2);
    assert_int_equal(s.out.kind, OUTCOME_OK);
    assert_non_null(strstr(s.logs, "[info] second"));
    json_decref(params);
    json_decref(params2);
    finish(&s);
}

/* Hooks and where they run are fields of the attempt; the machine carries neither. */
static void test_hooks_and_hook_dir(void **state)
{
    (void)state;
    struct seen s;
    start(&s, 1);
    char dir[] = "/tmp/ferry-hookdir.XXXXXX";
    assert_non_null(mkdtemp(dir));
    json_t *params = json_pack("{s:s,s:s}", "message", "between", "level", "info");
    json_t *machine = json_pack("{s:s,s:b}", "name", "here", "local", 1);
    struct attempt_spec spec = {.plugin = core_so, .function = "log_message", .params = params,
                                .machine = machine, .pre_hook = "echo in $PWD",
                                .post_hook = "echo after $FERRY_OUTCOME", .hook_dir = dir};
    assert_non_null(runner_start(s.r, &spec, NULL, 0));
    wait_done(&s, 1);
    if (s.out.kind != OUTCOME_OK)
        fail_msg("%s: %s; trace:\n%s", outcome_kind_name(s.out.kind), s.message, s.logs);
    char want[128];
    snprintf(want, sizeof(want), "in %s", dir);
    assert_non_null(strstr(s.logs, want));
    assert_non_null(strstr(s.logs, "after OK"));
    char *pre = strstr(s.logs, "pre_hook"), *fn = strstr(s.logs, "between"),
         *post = strstr(s.logs, "post_hook");
    assert_true(pre && fn && post && pre < fn && fn < post);
    /* A nested call (depth 1) runs no hooks; a hook_dir that does not exist is not entered. */
    s.logs[0] = 0;
    spec.depth = 1;
    assert_non_null(runner_start(s.r, &spec, NULL, 0));
    wait_done(&s, 2);
    assert_null(strstr(s.logs, "pre_hook"));
    s.logs[0] = 0;
    spec.depth = 0;
    spec.hook_dir = "/nonexistent/ferry/dir";
    assert_non_null(runner_start(s.r, &spec, NULL, 0));
    wait_done(&s, 3);
    assert_null(strstr(s.logs, "in /nonexistent"));
    assert_non_null(strstr(s.logs, "pre_hook `echo in $PWD` exited 0"));
    rmdir(dir);
    json_decref(params);
    json_decref(machine);
    finish(&s);
}

/* Stops: the deadline, and the host's shutdown (no error-code trick: stop says why). */
static void test_stops(void **state)
{
    (void)state;
    struct seen s;
    start(&s, 1);
    json_t *params = json_pack("{s:s,s:s}", "message", "never", "level", "info");
    json_t *machine = json_pack("{s:b}", "local", 1);
    struct attempt_spec spec = {.plugin = core_so, .function = "log_message", .params = params,
                                .machine = machine, .pre_hook = "sleep 5", .timeout_ms = 300};
    assert_non_null(runner_start(s.r, &spec, NULL, 0));
    wait_done(&s, 1);
    assert_int_equal(s.out.kind, OUTCOME_TIMEOUT);
    assert_int_equal(s.out.stop, STOP_DEADLINE);
    assert_string_equal(s.code, "timeout");
    spec.timeout_ms = 0;
    runner_job *job = runner_start(s.r, &spec, NULL, 0);
    assert_non_null(job);
    usleep(200 * 1000);
    runner_process(s.r);
    runner_interrupt(s.r, job);
    wait_done(&s, 2);
    assert_int_equal(s.out.kind, OUTCOME_CANCELLED);
    assert_int_equal(s.out.stop, STOP_SHUTDOWN);
    assert_string_equal(s.message, "interrupted by host shutdown");
    json_decref(params);
    json_decref(machine);
    finish(&s);
}

/* --- pipelining: attempts queued on a busy worker ------------------------------------------ */

static runner *start_piped(struct seen *s, int max_workers, int pipeline)
{
    memset(s, 0, sizeof(*s));
    runner_opts o = {.max_workers = max_workers, .max_jobs = 100, .grace_ms = 400,
                     .pipeline = pipeline};
    runner_events ev = {.log = on_log, .done = on_done};
    s->r = runner_create(&o, &ev, s);
    return s->r;
}

/* An attempt logging text, after a pre_hook (NULL: none) on the local machine. */
static runner_job *start_logging(struct seen *s, const char *text, const char *pre_hook,
                                 int64_t timeout_ms, intptr_t tag, int nested)
{
    json_t *params = json_pack("{s:s,s:s}", "message", text, "level", "info");
    json_t *machine = json_pack("{s:b}", "local", 1);
    struct attempt_spec spec = {.plugin = core_so, .function = "log_message", .params = params,
                                .machine = machine, .pre_hook = pre_hook,
                                .timeout_ms = timeout_ms, .depth = nested};
    runner_job *job = runner_start(s->r, &spec, (void *)tag, nested);
    json_decref(params);
    json_decref(machine);
    return job;
}

static int count_in(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* Slots count the queue; attempts queued on one worker run on it, in order, each once. */
static void test_queued_attempts_run_in_order(void **state)
{
    (void)state;
    struct seen s;
    start_piped(&s, 1, 4);
    assert_int_equal(runner_free_slots(s.r), 5);
    runner_job *jobs[5];
    char text[5][16];
    for (int i = 0; i < 5; i++) {
        snprintf(text[i], sizeof(text[i]), "queued-%d", i + 1);
        jobs[i] = start_logging(&s, text[i], NULL, 10000, i + 1, 0);
        assert_non_null(jobs[i]);
        assert_int_equal(runner_job_pid(jobs[i]), runner_job_pid(jobs[0]));
    }
    assert_int_equal(runner_free_slots(s.r), 0);
    assert_null(start_logging(&s, "one too many", NULL, 0, 0, 0));
    assert_int_equal(runner_busy(s.r), 1); /* one runs, four wait */
    assert_int_equal(runner_job_queued(jobs[0]), 0);
    for (int i = 1; i < 5; i++)
        assert_int_equal(runner_job_queued(jobs[i]), 1);
    wait_done(&s, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(s.order[i], i + 1);
        assert_int_equal(s.by_tag[i + 1].kind, OUTCOME_OK);
        assert_int_equal(count_in(s.logs, text[i]), 1);
    }
    assert_true(strstr(s.logs, "queued-1") < strstr(s.logs, "queued-5"));
    assert_int_equal(runner_free_slots(s.r), 5);
    finish(&s);
}

/* A queued attempt that is cancelled never runs; the ones behind it still do. */
static void test_cancel_queued_never_runs(void **state)
{
    (void)state;
    struct seen s;
    start_piped(&s, 1, 4);
    assert_non_null(start_logging(&s, "slow-one", "sleep 0.5", 0, 1, 0));
    runner_job *b = start_logging(&s, "never-runs", NULL, 0, 2, 0);
    runner_job *i = start_logging(&s, "never-either", NULL, 0, 3, 0);
    assert_non_null(start_logging(&s, "after-them", NULL, 0, 4, 0));
    runner_cancel(s.r, b);
    runner_interrupt(s.r, i);
    wait_done(&s, 4);
    assert_int_equal(s.by_tag[1].kind, OUTCOME_OK);
    assert_int_equal(s.by_tag[2].kind, OUTCOME_CANCELLED);
    assert_int_equal(s.by_tag[2].stop, STOP_CANCEL);
    assert_int_equal(s.by_tag[3].kind, OUTCOME_CANCELLED);
    assert_int_equal(s.by_tag[3].stop, STOP_SHUTDOWN);
    assert_int_equal(s.by_tag[4].kind, OUTCOME_OK);
    assert_null(strstr(s.logs, "never-runs"));
    assert_null(strstr(s.logs, "never-either"));
    assert_non_null(strstr(s.logs, "after-them"));
    /* the worker was not retired for it: the last one ran on the first one's worker */
    assert_int_equal(s.pid_by_tag[4], s.pid_by_tag[1]);
    finish(&s);
}

/* The running attempt's worker dies: it is CRASHED, the ones queued behind it (which never
 * started) run on another worker, each once, and none is reported crashed. */
static void test_crash_redispatches_queued(void **state)
{
    (void)state;
    struct seen s;
    start_piped(&s, 1, 4);
    runner_job *a = start_logging(&s, "dies", "sleep 5", 0, 1, 0);
    assert_non_null(a);
    assert_non_null(start_logging(&s, "moved-2", NULL, 0, 2, 0));
    assert_non_null(start_logging(&s, "moved-3", NULL, 0, 3, 0));
    pid_t first = runner_job_pid(a);
    usleep(200 * 1000);
    kill(first, SIGKILL);
    wait_done(&s, 3);
    assert_int_equal(s.order[0], 1);
    assert_int_equal(s.by_tag[1].kind, OUTCOME_CRASHED);
    assert_int_equal(s.by_tag[1].stop, STOP_WORKER_DIED);
    for (int t = 2; t <= 3; t++) {
        assert_int_equal(s.by_tag[t].kind, OUTCOME_OK);
        assert_true(s.pid_by_tag[t] != first);
    }
    assert_int_equal(count_in(s.logs, "moved-2"), 1);
    assert_int_equal(count_in(s.logs, "moved-3"), 1);
    assert_int_equal(s.order[1], 2);
    assert_int_equal(s.order[2], 3);
    finish(&s);
}

/* A queued attempt's deadline counts from its real start, not from while it waited. */
static void test_deadline_from_real_start(void **state)
{
    (void)state;
    struct seen s;
    start_piped(&s, 1, 4);
    /* Margins for a loaded machine (tests run two files at a time): the quick attempt
     * needs well under its 1 s once it starts, and waits 1.5 s before it does. */
    assert_non_null(start_logging(&s, "slow", "sleep 1.5", 0, 1, 0));
    assert_non_null(start_logging(&s, "quick-after-wait", NULL, 1000, 2, 0));
    assert_non_null(start_logging(&s, "slow-itself", "sleep 5", 1000, 3, 0));
    wait_done(&s, 3);
    assert_int_equal(s.by_tag[1].kind, OUTCOME_OK);
    assert_int_equal(s.by_tag[2].kind, OUTCOME_OK); /* waited 1,500 ms of its 1,000: fine */
    assert_non_null(strstr(s.logs, "quick-after-wait"));
    assert_int_equal(s.by_tag[3].kind, OUTCOME_TIMEOUT);
    assert_int_equal(s.by_tag[3].stop, STOP_DEADLINE);
    finish(&s);
}

/* A nested call never waits behind a queue: with every queue full it gets a worker of its own
 * and ends while its parent's worker is still busy. */
static void test_nested_with_queues_full(void **state)
{
    (void)state;
    struct seen s;
    start_piped(&s, 1, 2);
    runner_job *parent = start_logging(&s, "parent", "sleep 0.8", 0, 1, 0);
    assert_non_null(start_logging(&s, "queued-a", NULL, 0, 2, 0));
    assert_non_null(start_logging(&s, "queued-b", NULL, 0, 3, 0));
    assert_int_equal(runner_free_slots(s.r), 0);
    runner_job *callee = start_logging(&s, "callee", NULL, 0, 4, 1);
    assert_non_null(callee);
    assert_true(runner_job_pid(callee) != runner_job_pid(parent));
    wait_done(&s, 4);
    assert_int_equal(s.order[0], 4); /* the callee did not wait for the parent's queue */
    assert_int_equal(s.by_tag[4].kind, OUTCOME_OK);
    for (int t = 1; t <= 3; t++)
        assert_int_equal(s.by_tag[t].kind, OUTCOME_OK);
    finish(&s);
}

/* A hostile worker (this binary with FERRY_TEST_RUNNER_FORGE set): it answers its first run with a
 * done the runner must refuse, "skipped" (a skip it never got) or "wrong_id" (not the
 * attempt running), then waits for the host to end it. */
static void __attribute__((noreturn)) forging_worker(const char *how)
{
    proto_reader rd = {0};
    json_t *msg = proto_read(&rd, WORKER_FD);
    struct proto_run run;
    if (msg == NULL || proto_parse_run(msg, &run, NULL, 0) != 0)
        _exit(1);
    struct proto_done done = {.id = run.id, .kind = OUTCOME_OK};
    if (strcmp(how, "skipped") == 0)
        done.skipped = 1;
    else
        done.id = run.id + 1000;
    json_t *out = proto_build_done(&done);
    proto_send(WORKER_FD, out);
    json_decref(out);
    json_decref(msg);
    while ((msg = proto_read(&rd, WORKER_FD)) != NULL)
        json_decref(msg);
    _exit(0);
}

/* A done for run message msg (taken) saying text. */
static void say_done(json_t *msg, const char *text)
{
    struct proto_run run;
    if (msg == NULL || proto_parse_run(msg, &run, NULL, 0) != 0)
        _exit(1);
    struct proto_done done = {.id = run.id, .kind = OUTCOME_FAIL, .code = "seen",
                              .message = text};
    json_t *out = proto_build_done(&done);
    proto_send(WORKER_FD, out);
    json_decref(out);
    json_decref(msg);
}

/*
 * A worker (FERRY_TEST_RUNNER_FORGE=gathered) that checks how run messages arrive. It answers a
 * first run at once (the worker is then up and idle). Of the next ones, it takes the first,
 * then watches its socket for 300 ms ("early" when another run came with it or meanwhile),
 * then counts the runs one read brings. Each done says both.
 */
static void __attribute__((noreturn)) gathering_worker(void)
{
    proto_reader rd = {0};
    say_done(proto_read(&rd, WORKER_FD), "warm");
    json_t *first = proto_read(&rd, WORKER_FD);
    struct pollfd p = {.fd = WORKER_FD, .events = POLLIN};
    int early = rd.len > 0 || poll(&p, 1, 300) > 0;
    while (rd.len == 0 && poll(&p, 1, -1) > 0 && proto_fill(&rd, WORKER_FD) == 1)
        ; /* one read: what the host wrote together */
    json_t *more[16];
    int together = 0, broken = 0;
    while (together < 16 && (more[together] = proto_next(&rd, &broken)) != NULL)
        together++;
    char text[64];
    snprintf(text, sizeof(text), "early=%d together=%d", early, together);
    say_done(first, text);
    for (int i = 0; i < together; i++)
        say_done(more[i], text);
    json_t *msg;
    while ((msg = proto_read(&rd, WORKER_FD)) != NULL)
        json_decref(msg);
    _exit(0);
}

/* The run messages of attempts queued behind a running one wait for runner_flush(), which
 * writes them together; the first, which starts at once, is written at once. */
static void test_queued_runs_written_together(void **state)
{
    (void)state;
    setenv("FERRY_TEST_RUNNER_FORGE", "gathered", 1);
    struct seen s;
    start_piped(&s, 1, 4);
    assert_non_null(start_logging(&s, "warm", NULL, 0, 9, 0));
    wait_done(&s, 1);
    assert_string_equal(s.message, "warm");
    for (intptr_t t = 1; t <= 3; t++)
        assert_non_null(start_logging(&s, "gathered", NULL, 0, t, 0));
    usleep(500 * 1000); /* the worker has the first run and watches for more */
    runner_flush(s.r);
    wait_done(&s, 4);
    unsetenv("FERRY_TEST_RUNNER_FORGE");
    assert_string_equal(s.message, "early=0 together=2");
    for (int t = 1; t <= 3; t++)
        assert_int_equal(s.order[t], t);
    finish(&s);
}

/* Copies the file from to to (a new file, hence a new inode once renamed over another). */
static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/*
 * The plugin is replaced on disk while attempts wait in a worker that loaded the old copy:
 * those attempts never start there (its copy is stale) but run on a fresh worker, each once,
 * and none ends UNAVAILABLE.
 */
static void test_plugin_changed_moves_queued(void **state)
{
    (void)state;
    char dir[] = "/tmp/ferry-stale.XXXXXX", so[64], fresh[64];
    assert_non_null(mkdtemp(dir));
    snprintf(so, sizeof(so), "%s/p.so", dir);
    snprintf(fresh, sizeof(fresh), "%s/p.so.new", dir);
    copy_file(core_so, so);
    struct seen s;
    start_piped(&s, 1, 4);
    json_t *machine = json_pack("{s:b}", "local", 1);
    const char *texts[] = {NULL, "loaded-old", "moved-2", "moved-3"};
    for (intptr_t t = 1; t <= 3; t++) {
        json_t *params = json_pack("{s:s,s:s}", "message", texts[t], "level", "info");
        struct attempt_spec spec = {.plugin = so, .function = "log_message", .params = params,
                                    .machine = machine, .pre_hook = t == 1 ? "sleep 0.6" : NULL};
        assert_non_null(runner_start(s.r, &spec, (void *)t, 0));
        json_decref(params);
    }
    runner_flush(s.r);
    usleep(300 * 1000); /* the first attempt has loaded the plugin and sleeps in its hook */
    copy_file(core_so, fresh);
    assert_int_equal(rename(fresh, so), 0);
    wait_done(&s, 3);
    for (int t = 1; t <= 3; t++)
        if (s.by_tag[t].kind != OUTCOME_OK)
            fail_msg("attempt %d: %s; trace:\n%s", t, outcome_kind_name(s.by_tag[t].kind),
                     s.logs);
    assert_true(s.pid_by_tag[2] != s.pid_by_tag[1]);
    assert_int_equal(s.pid_by_tag[3], s.pid_by_tag[2]);
    for (int t = 1; t <= 3; t++)
        assert_int_equal(count_in(s.logs, texts[t]), 1);
    json_decref(machine);
    finish(&s);
    unlink(so);
    rmdir(dir);
}

/* A done the runner never asked for breaks the protocol: the attempt is CRASHED. */
static void test_forged_done_is_refused(void **state)
{
    (void)state;
    const char *hows[] = {"skipped", "wrong_id"};
    const char *reasons[] = {"which was not skipped", "which is not running"};
    for (int k = 0; k < 2; k++) {
        setenv("FERRY_TEST_RUNNER_FORGE", hows[k], 1);
        struct seen s;
        start_piped(&s, 1, 4);
        assert_non_null(start_logging(&s, "forged", NULL, 0, 1, 0));
        wait_done(&s, 1);
        unsetenv("FERRY_TEST_RUNNER_FORGE");
        assert_int_equal(s.by_tag[1].kind, OUTCOME_CRASHED);
        assert_int_equal(s.by_tag[1].stop, STOP_PROTOCOL);
        if (strstr(s.message, reasons[k]) == NULL)
            fail_msg("%s: \"%s\" lacks \"%s\"", hows[k], s.message, reasons[k]);
        finish(&s);
    }
}

/* This process's children (the workers; their commands are theirs) into kids, but those in
 * old[0, n_old) (left by an earlier test that failed); how many. */
static int my_children(pid_t *kids, int max, const pid_t *old, int n_old)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
    FILE *f = fopen(path, "r");
    int n = 0;
    if (f && fgets(buf, sizeof(buf), f)) {
        for (char *p = buf, *end; n < max && (kids[n] = (pid_t)strtol(p, &end, 10)) > 0; p = end) {
            int known = 0;
            for (int i = 0; i < n_old; i++)
                known |= old[i] == kids[n];
            n += !known;
        }
    }
    if (f)
        fclose(f);
    return n;
}

/* A runner of one worker that leaves after max_jobs attempts; the children already there
 * (64 at most) into old. */
static void start_quota(struct seen *s, int max_jobs, pid_t *old, int *n_old)
{
    memset(s, 0, sizeof(*s));
    *n_old = my_children(old, 64, NULL, 0);
    runner_opts o = {.max_workers = 1, .prefork = 0, .max_jobs = max_jobs, .grace_ms = 400};
    runner_events ev = {.log = on_log, .done = on_done};
    s->r = runner_create(&o, &ev, s);
}

/*
 * A worker leaving at its quota has its successor started ahead, while its last attempts
 * run, so the slot is not empty while a worker starts; the successor takes no attempt
 * before the slot is free: never more attempts at once than max_workers.
 */
static void test_successor_started_ahead(void **state)
{
    (void)state;
    struct seen s;
    pid_t old[64];
    int n_old;
    start_quota(&s, 8, old, &n_old);
    for (intptr_t t = 1; t <= 8; t++)
        assert_non_null(start_logging(&s, "quota", "sleep 0.05", 0, t, 0));
    int most = 0;
    pid_t kids[8], first = 0, heir = 0;
    int64_t until = mono_ms() + 20000;
    while (s.done < 8 && mono_ms() < until) {
        struct pollfd p = {.fd = runner_fd(s.r), .events = POLLIN};
        poll(&p, 1, 20);
        runner_process(s.r);
        runner_tick(s.r);
        assert_true(runner_busy(s.r) <= 1);
        if (s.done < 8) { /* the first worker has not left: no room for another attempt */
            assert_null(start_logging(&s, "no room", NULL, 0, 0, 0));
            int n = my_children(kids, 8, old, n_old);
            most = n > most ? n : most;
            for (int i = 0; i < n && n == 2; i++)
                if (kids[i] != s.pid_by_tag[1] && s.pid_by_tag[1])
                    heir = kids[i];
        }
    }
    assert_int_equal(s.done, 8);
    first = s.pid_by_tag[1];
    for (int t = 1; t <= 8; t++) {
        assert_int_equal(s.by_tag[t].kind, OUTCOME_OK);
        assert_int_equal(s.pid_by_tag[t], first);
    }
    assert_int_equal(most, 2); /* the successor ran beside the first worker's last attempts */
    assert_true(heir > 0 && heir != first);
    assert_non_null(start_logging(&s, "next", NULL, 0, 9, 0));
    wait_done(&s, 9);
    assert_int_equal(s.by_tag[9].kind, OUTCOME_OK);
    assert_int_equal(s.pid_by_tag[9], heir); /* the one started ahead */
    finish(&s);
}

/* A successor started ahead and then recycled (the plugins changed) is let go: the next
 * attempt, started before the runner saw it exit, is not handed to it but to a fresh worker. */
static void test_recycled_successor_takes_nothing(void **state)
{
    (void)state;
    struct seen s;
    pid_t old[64];
    int n_old;
    start_quota(&s, 1, old, &n_old);
    runner_job *job = start_logging(&s, "only", "sleep 0.3", 0, 1, 0);
    assert_non_null(job);
    pid_t first = runner_job_pid(job), kids[8], heir = 0;
    int64_t until = mono_ms() + 20000;
    while (heir == 0 && s.done < 1 && mono_ms() < until) {
        struct pollfd p = {.fd = runner_fd(s.r), .events = POLLIN};
        poll(&p, 1, 20);
        runner_process(s.r);
        runner_tick(s.r);
        int n = my_children(kids, 8, old, n_old);
        for (int i = 0; i < n && s.done < 1; i++)
            heir = kids[i] != first ? kids[i] : heir;
    }
    assert_true(heir > 0);
    /* Stopped, it cannot exit: the runner holds it as let go until its time is up. */
    kill(heir, SIGSTOP);
    runner_recycle(s.r);
    while (s.done < 1 && mono_ms() < until) {
        struct pollfd p = {.fd = runner_fd(s.r), .events = POLLIN};
        poll(&p, 1, 20);
        runner_process(s.r);
    }
    assert_int_equal(s.by_tag[1].kind, OUTCOME_OK);
    job = start_logging(&s, "after", NULL, 0, 2, 0);
    assert_non_null(job);
    assert_true(runner_job_pid(job) != heir);
    kill(heir, SIGCONT);
    wait_done(&s, 2);
    assert_int_equal(s.by_tag[2].kind, OUTCOME_OK);
    finish(&s);
}

int main(int argc, char **argv)
{
    const char *forge = getenv("FERRY_TEST_RUNNER_FORGE");
    if (argc > 1 && strcmp(argv[1], WORKER_ARGV1) == 0 && forge && !strcmp(forge, "gathered"))
        gathering_worker();
    if (argc > 1 && strcmp(argv[1], WORKER_ARGV1) == 0 && forge)
        forging_worker(getenv("FERRY_TEST_RUNNER_FORGE"));
    if (argc > 1 && strcmp(argv[1], WORKER_ARGV1) == 0)
        worker_process_main(argc, argv);
    const char *root = getenv("FERRY_ROOT"), *build = getenv("BUILD");
    snprintf(core_so, sizeof(core_so), "%s/%s/plugins/core.so", root ? root : ".",
             build ? build : "build");
    if (access(core_so, R_OK) != 0) {
        fprintf(stderr, "test_runner: %s is missing (make all first)\n", core_so);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typed_attempt),  cmocka_unit_test(test_next_attempt_from_done),
        cmocka_unit_test(test_hooks_and_hook_dir), cmocka_unit_test(test_stops),
        cmocka_unit_test(test_queued_attempts_run_in_order),
        cmocka_unit_test(test_cancel_queued_never_runs),
        cmocka_unit_test(test_crash_redispatches_queued),
        cmocka_unit_test(test_deadline_from_real_start),
        cmocka_unit_test(test_nested_with_queues_full),
        cmocka_unit_test(test_forged_done_is_refused),
        cmocka_unit_test(test_queued_runs_written_together),
        cmocka_unit_test(test_plugin_changed_moves_queued),
        cmocka_unit_test(test_successor_started_ahead),
        cmocka_unit_test(test_recycled_successor_takes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
