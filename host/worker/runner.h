/*
 * The runner owns worker processes: it starts them (each in its own process group), hands
 * them attempts (up to 1 + pipeline per worker: the ones beyond the running one are written
 * ahead and run back to back, in order; see docs/protocol.md), enforces deadlines (SIGTERM
 * to the group, a grace period, SIGKILL), turns a worker that dies into a CRASHED outcome,
 * and replaces workers after max_jobs attempts or when the plugin registry changes. It is
 * driven by the caller's poll loop: poll runner_fd() for input and call runner_process();
 * call runner_tick() at least every runner_timeout_ms().
 * Its code: runner.c hands out attempts and settles them, runner_spawn.c starts and retires
 * the workers, runner_limits.c holds attempts to their limits (runner_int.h: what they share).
 */
#ifndef FERRY_RUNNER_H
#define FERRY_RUNNER_H

#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "config.h"
#include "outcome.h"
#include "proto.h"

typedef struct runner runner;
typedef struct runner_job runner_job;

/*
 * What a running attempt tells its host, one typed callback per message (each message is
 * borrowed for the call). job is the attempt's; runner_job_tag() gives the caller's tag.
 */
typedef struct runner_events {
    /* A log line: the function's (level debug..error) or its stderr (level "stderr"). */
    void (*log)(void *ud, runner_job *job, const struct proto_log *m);
    void (*progress)(void *ud, runner_job *job, const struct proto_progress *m);
    /*
     * Requests that need an answer: answer now or later with runner_answer(). May be NULL:
     * the request is then answered with an error.
     */
    void (*call)(void *ud, runner_job *job, const struct proto_call *m);
    void (*storage)(void *ud, runner_job *job, const struct proto_storage *m);
    /*
     * The attempt ended (out borrowed). The job is freed right after this returns. Its
     * worker is free already: runner_start() from here hands it the next attempt at once
     * (unless the worker is being replaced).
     */
    void (*done)(void *ud, runner_job *job, const struct outcome *out);
} runner_events;

typedef struct runner_opts {
    int max_workers;     /* attempts at once */
    int prefork;         /* idle workers kept ready */
    int max_jobs;        /* attempts per worker before it is replaced */
    int memory_limit_mb; /* per worker; 0 = none */
    int grace_ms;        /* SIGTERM -> SIGKILL */
    /*
     * Attempts a worker may hold queued behind the one it runs (0: the default,
     * RUNNER_PIPELINE; negative: none). Their run messages are written ahead; the worker runs
     * them in order, back to back. runner_free_slots() counts them.
     */
    int pipeline;
    /* PATH of the workers' scrubbed environment (NULL or "": RUNNER_SAFE_PATH). */
    const char *path;
    /* Further variables let through from the host's environment: names, space-separated. */
    const char *pass_env;
    int ssh_command_options; /* ssh.allow_command_options (ssh_options.h) */
    /* ferry's known_hosts for SSH host keys seen at first use (FERRY_KNOWN_HOSTS, exec_ssh.c),
     * an absolute path; NULL: none kept. */
    const char *known_hosts;
    /* Limits of each attempt (0: none), and overrides by function name (fields -1: the
     * default's); borrowed for the runner's life. Enforced by the runner: see
     * runner_limits.c. */
    struct ferry_limits limits;
    const struct ferry_limits *fn_limits;
    size_t n_fn_limits;
    /* Least privilege (host/priv/priv_client.h): workers.run_as ("FUNCTION=USER ...") and
     * the helper's socket (NULL: PRIV_DEFAULT_SOCKET); borrowed for the runner's life. */
    const char *run_as;
    const char *priv_socket;
} runner_opts;

#define RUNNER_SAFE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#define RUNNER_PIPELINE 32

runner *runner_create(const runner_opts *opts, const runner_events *ev, void *ud);
/* Stops every worker (SIGKILL to each group) and frees the runner. */
void runner_free(runner *r);

/* An fd that becomes readable when a worker has something to say or has died. */
int runner_fd(const runner *r);
/* Handles everything that is ready; never blocks. */
void runner_process(runner *r);
/* Enforces deadlines and grace periods, keeps prefork workers; call periodically. */
void runner_tick(runner *r);
/* Milliseconds until runner_tick() next has work (-1: nothing pending). */
int runner_timeout_ms(const runner *r);

/* Free capacity: how many more attempts runner_start() accepts now (queued ones included). */
int runner_free_slots(const runner *r);
/* Attempts running now (not those queued behind them). */
int runner_busy(const runner *r);

/*
 * Starts an attempt (spec borrowed: its run message is built before this returns) on an
 * idle worker, a new one (up to max_workers), or else behind the shortest queue; its deadline
 * counts from when it really starts. The message of an attempt that starts at once is
 * written at once; one queued behind another is written by runner_flush(). tag is the caller's, returned by runner_job_tag().
 * nested: a call made by a running attempt, never queued (an idle or a new worker), allowed
 * past max_workers (up to 4x) so that a parent waiting on its callee cannot deadlock the
 * pool. Returns the job, or NULL when there is no free slot or the run message cannot be
 * built (out of memory); then nothing was started and no other attempt was touched.
 */
runner_job *runner_start(runner *r, const struct attempt_spec *spec, void *tag, int nested);

/*
 * Writes the run messages runner_start() gathered for queued attempts: one write per worker
 * for everything started since the last flush. runner_process() flushes too; a caller that
 * starts many attempts in a turn calls this once after them.
 */
void runner_flush(runner *r);

/*
 * Durability gate: every message for a worker added from now on (a run message, a reply, a
 * skip) waits until runner_durable(commit) or later, since it may depend on commit (the
 * claim of the attempt it starts): the host makes its commits durable off its loop
 * (store_defer_sync). Messages keep their order per worker. Commits are numbered by the
 * caller, increasing; 0: nothing waits.
 */
void runner_hold(runner *r, uint64_t commit);
/* Commits up to commit are durable: what waited for them is written now. */
void runner_durable(runner *r, uint64_t commit);

void *runner_job_tag(const runner_job *job);
int64_t runner_job_id(const runner_job *job);
pid_t runner_job_pid(const runner_job *job);
/* 1 while job waits in its worker's queue (not started: a cancel or an interrupt means it
 * never runs), 0 once it runs. */
int runner_job_queued(const runner_job *job);

/* Answers a request ("call", "storage") of job. */
void runner_answer(runner *r, runner_job *job, const struct proto_reply *reply);

/*
 * Cancels an attempt. One still queued behind another never starts (outcome CANCELLED, stop
 * STOP_CANCEL). A running one: SIGUSR1 now (ferry_cancelled() turns true), SIGTERM to its
 * process group after half the grace period, SIGKILL after the grace period. The outcome is
 * CANCELLED (stop STOP_CANCEL) unless the function finished first.
 */
void runner_cancel(runner *r, runner_job *job);

/*
 * Interrupts a running attempt for shutdown: like cancel, but the outcome's stop is
 * STOP_SHUTDOWN (code "interrupted") so the caller can return the item to the queue.
 */
void runner_interrupt(runner *r, runner_job *job);

/* Replaces every worker once it is idle (the plugins on disk changed). */
void runner_recycle(runner *r);

#endif
