/*
 * The runner owns worker processes: it forks them (each in its own process group), hands
 * them attempts, enforces deadlines (SIGTERM to the group, a grace period, SIGKILL), turns a
 * worker that dies into a CRASHED outcome, and replaces workers after max_jobs attempts or
 * when the plugin registry changes. It is driven by the caller's poll loop: poll
 * runner_fd() for input and call runner_process(); call runner_tick() at least every
 * runner_timeout_ms().
 */
#ifndef FERRY_RUNNER_H
#define FERRY_RUNNER_H

#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

typedef struct runner runner;
typedef struct runner_job runner_job;

/* How an attempt ended, as the host records it. */
typedef enum runner_status {
    RUN_OK,          /* the function returned FERRY_OK */
    RUN_RETRY,       /* FERRY_RETRY */
    RUN_FAIL,        /* FERRY_FAIL */
    RUN_INVALID,     /* FERRY_INVALID */
    RUN_TIMEOUT,     /* the deadline passed; the worker was stopped */
    RUN_CRASHED,     /* the worker died (signal, exit(), broken protocol) */
    RUN_CANCELLED,   /* runner_cancel() */
    RUN_UNAVAILABLE, /* the plugin could not be loaded in the worker */
} runner_status;

const char *runner_status_name(runner_status s);

typedef struct runner_outcome {
    runner_status status;
    json_t *result;       /* borrowed: the function's result or NULL */
    const char *err_code; /* NULL on success */
    const char *err_msg;  /* one line; NULL on success */
    int64_t duration_ms;
} runner_outcome;

typedef struct runner_callbacks {
    /* A log or progress message from the function (msg borrowed). */
    void (*on_message)(void *ud, runner_job *job, const json_t *msg);
    /*
     * A request that needs an answer ("call", "storage"); msg borrowed. Answer now or later
     * with runner_reply(). May be NULL: every request is then answered with an error.
     */
    void (*on_request)(void *ud, runner_job *job, const json_t *msg);
    /* The attempt ended. The job is freed right after this returns. */
    void (*on_done)(void *ud, runner_job *job, const runner_outcome *out);
} runner_callbacks;

typedef struct runner_opts {
    int max_workers;     /* attempts at once */
    int prefork;         /* idle workers kept ready */
    int max_jobs;        /* attempts per worker before it is replaced */
    int memory_limit_mb; /* per worker; 0 = none */
    int grace_ms;        /* SIGTERM -> SIGKILL */
} runner_opts;

runner *runner_new(const runner_opts *opts, const runner_callbacks *cb, void *ud);
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

/* Free capacity: how many more attempts runner_submit() accepts now. */
int runner_free_slots(const runner *r);
/* Attempts running now. */
int runner_busy(const runner *r);

/*
 * Starts an attempt. msg is the worker's run message without "op"/"id" (taken: the runner
 * owns it now); timeout_ms 0 = none. tag is the caller's, returned by runner_job_tag().
 * nested: a call made by a running attempt, allowed past max_workers (up to 4x) so that
 * a parent waiting on its callee cannot deadlock the pool.
 * Returns the job, or NULL when there is no free slot.
 */
runner_job *runner_submit(runner *r, json_t *msg, int64_t timeout_ms, void *tag, int nested);

void *runner_job_tag(const runner_job *job);
int64_t runner_job_id(const runner_job *job);
pid_t runner_job_pid(const runner_job *job);

/* Answers a request of job (reply borrowed). */
void runner_reply(runner *r, runner_job *job, const json_t *reply);

/*
 * Cancels a running attempt: SIGUSR1 now (ferry_cancelled() turns true), SIGTERM to its
 * process group after half the grace period, SIGKILL after the grace period. The outcome is
 * RUN_CANCELLED unless the function finished first.
 */
void runner_cancel(runner *r, runner_job *job);

/*
 * Interrupts a running attempt for shutdown: like cancel, but the outcome says
 * "interrupted by host shutdown" so the caller can return the item to the queue.
 */
void runner_interrupt(runner *r, runner_job *job);

/* Replaces every worker once it is idle (the plugins on disk changed). */
void runner_recycle(runner *r);

#endif
