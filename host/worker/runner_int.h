/*
 * What the files of the runner share: its structs, and the functions one file calls in
 * another. Nothing outside host/worker/runner*.c includes it; runner.h is the interface.
 * runner.c hands attempts to workers and reads what they say; runner_spawn.c starts, keeps
 * and retires the worker processes; runner_limits.c holds each attempt to its limits.
 */
#ifndef FERRY_RUNNER_INT_H
#define FERRY_RUNNER_INT_H

#include <stdint.h>
#include <sys/types.h>

#include "outcome.h"
#include "proto.h"
#include "runner.h"

#define MAX_PGROUPS 16
/* A worker's stderr: lines longer than this are cut into pieces; an attempt keeps at most
 * STDERR_PER_ATTEMPT bytes of it in its trace and counts the rest. */
#define STDERR_LINE_MAX    1024
#define STDERR_PER_ATTEMPT (16 * 1024)

/* What an epoll event is about: the low bits of its data, above them the worker's serial. */
enum { EV_SOCK, EV_PIDFD, EV_STDERR, EV_BITS = 2 };

typedef struct worker worker;

/* From byte at on, a worker's pending frames wait for commit to be durable (worker.marks). */
struct out_mark {
    size_t at;
    uint64_t commit;
};

struct runner_job {
    int64_t id;
    void *tag;
    worker *w;
    int64_t deadline; /* mono ms; 0 = none */
    int64_t timeout_ms;
    int64_t term_at;            /* mono ms: send SIGTERM (cancel) */
    int64_t kill_at;            /* mono ms: send SIGKILL */
    enum outcome_stop stopping; /* STOP_NONE, or why we are stopping it */
    int waiting_reply;
    pid_t pgroups[MAX_PGROUPS]; /* command groups the worker started */
    int n_pgroups;
    int exit_reported; /* the plugin called exit(exit_status) (an "exit" message) */
    int exit_status;
    int exit_loading;                   /* ... from its init(), while the worker loaded it */
    size_t stderr_kept, stderr_dropped; /* bytes of stderr in the trace, and beyond it */
    int nested;
    int moves; /* times it was moved off a worker whose copy of its plugin was stale */
    /* Its run message's frame, until it ends: to send it elsewhere if its worker dies before
     * starting it, or finds its plugin changed on disk before loading it. */
    struct proto_buf frame;
    runner_job *next;           /* the next one queued on the same worker */
    struct ferry_limits limits; /* this attempt's (runner_opts, its function's override) */
    int64_t cpu_base_ticks;     /* its processes' CPU time at the first check (-1: not yet) */
    int64_t next_check;         /* mono ms: the next look at its usage (limits_check) */
    char limit_msg[96];         /* "memory limit 512 MiB exceeded" (STOP_LIMIT) */
    char user[40];              /* run_as through ferry-priv; "" the host's own user */
    char fn[136];               /* its function's name (for ferry-priv) */
    char *fail_msg;             /* it could not start as its user: settled by runner_tick */
};

struct worker {
    pid_t pid;
    int sock;
    int pidfd;
    proto_reader rd;
    int errfd;                     /* read end of the worker's stderr; -1 once closed */
    char errline[STDERR_LINE_MAX]; /* a stderr line not yet ended */
    size_t errline_len;
    int jobs_done;
    unsigned generation;
    runner_job *job;              /* the attempt running (as far as the runner knows) */
    runner_job *q_first, *q_last; /* attempts sent ahead, queued behind it, in order */
    int nq;
    int dead;
    int leaving; /* to be retired once its attempt is settled: takes no new one */
    /* Started ahead for a worker whose quota of attempts is all given out: takes none until
     * a slot is free for it (pick, runner_tick). */
    int heir;
    int64_t exiting; /* mono ms: let go (socket shut), running its fini(); killed after it */
    /* Frames for the worker not written yet: a turn's run messages go out in one write
     * (runner_flush); what the socket does not take waits for EPOLLOUT. */
    struct proto_buf out;
    int want_out; /* EPOLLOUT is asked for */
    /* Where out's bytes start to wait for a commit to be durable (runner_hold): from
     * marks[i].at on they need commit marks[i].commit, in increasing order. */
    struct out_mark *marks;
    size_t n_marks, cap_marks;
    uint64_t serial; /* names the worker in epoll events, which may outlive it in a batch */
    int ctl; /* its ferry-priv keeper's control line (priv_client.h); -1: the runner's child */
};

struct runner {
    runner_opts o;
    runner_events ev;
    void *ud;
    int epfd;
    worker **workers;
    size_t n_workers, cap_workers;
    unsigned generation;
    int64_t next_id;
    uint64_t next_serial;
    /* Where run messages are built, reused: each job keeps an exact copy (small enough for
     * malloc's per-thread cache, where a fresh 4 KiB buffer per job was not). */
    struct proto_buf scratch;
    char **env;             /* the workers' environment (runner_worker_env) */
    runner_job *failed;     /* attempts that could not start as their user, to settle */
    uint64_t need, durable; /* runner_hold, runner_durable */
};

/* Attempts on w: the running one and those queued behind it. */
static inline int runner_load_of(const worker *w)
{
    return (w->job != NULL) + w->nq;
}

/* May w take new attempts at all? */
static inline int runner_eligible(const runner *r, const worker *w)
{
    return !w->dead && !w->leaving && !w->heir && w->generation == r->generation;
}

/* Workers that hold a slot of max_workers: busy ones, and idle ones that may take work. */
static inline int runner_occupied(const runner *r)
{
    int n = 0;
    for (size_t i = 0; i < r->n_workers; i++)
        n += runner_load_of(r->workers[i]) > 0 || runner_eligible(r, r->workers[i]);
    return n;
}

/* runner_spawn.c: the worker processes. */

/* The workers' environment for opts: a NULL-ended array of malloc'd strings, the caller's
 * to free (runner_free). */
char **runner_worker_env(const runner_opts *o);
/* A new worker of the host's own user, taken into r's pool; NULL (logged) when it cannot
 * be started. */
worker *runner_spawn(runner *r);
/* A worker running as job->user from ferry-priv, for job alone; NULL with why empty: no
 * room now; with why set (why may be NULL): the helper is not there or refused. */
worker *runner_spawn_as(runner *r, const runner_job *job, char *why, size_t wlen);
/* An heir (a worker started ahead), now a worker like the others; NULL: none. */
worker *runner_take_heir(runner *r);
/* runner_tick's part for the pool: kills workers let go whose fini() ran out of time, starts
 * heirs for workers near their quota and keeps prefork idle workers ready. */
void runner_keep_workers(runner *r, int64_t now);
/* Sends sig to w and the process groups its running attempt started. */
void runner_kill_groups(worker *w, int sig);
/* Stops watching w and closes its socket, stderr and pidfd; its process may live on. */
void runner_close_worker(runner *r, worker *w);
/* Takes w out of r's pool and frees it with its buffers. */
void runner_free_worker(runner *r, worker *w);
/* Removes w. runner_retire lets an idle one go to run its fini() first (it is freed once it
 * has exited, or its time is up); runner_retire_now removes and frees it at once (wait: after
 * up to FINI_GRACE_MS for it to exit). */
void runner_retire(runner *r, worker *w);
void runner_retire_now(runner *r, worker *w, int wait);

/* runner_limits.c: each attempt's memory, CPU time and processes. */

/* Sets limits to an attempt of function's (NULL: none named): opts->limits, with function's
 * overrides from opts->fn_limits. */
void runner_limits_for(const runner_opts *opts, const char *function, struct ferry_limits *limits);
/* job started at now: its first look at its usage is due LIMITS_CHECK_MS later (when it has
 * limits at all). */
void runner_limits_begin(runner_job *job, int64_t now);
/* runner_tick's part for job: a look at its usage when one is due; over a limit, its
 * processes are killed and job->stopping is STOP_LIMIT. */
void runner_limits_tick(runner_job *job, int64_t now);

#endif
