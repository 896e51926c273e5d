/*
 * The limits of each attempt: its memory, CPU time and processes (issue 17, point 6;
 * docs/operations.md, "Limits"). The runner looks at each running attempt's processes every
 * LIMITS_CHECK_MS: the worker and its descendants, which stay in its tree whatever they do
 * (the worker is their subreaper in both ways of containment). It adds up their resident
 * memory, counts them, and adds up the CPU time they used (their own and that of their
 * children already reaped) since the attempt began. Over a limit, the attempt's processes
 * are killed at once and the attempt FAILS with "memory limit 512 MiB exceeded" (or cpu
 * time, or processes); the worker is replaced, the host carries on.
 * Counted in the host rather than through rlimits: RLIMIT_NPROC counts every process of the
 * user (all attempts of the host at once) and does not hold for root, RLIMIT_CPU counts
 * each process apart, and RLIMIT_AS or RLIMIT_DATA make an allocation fail with nothing
 * that says why.
 */
#include "runner_int.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reap.h"

/* How often the runner looks at a running attempt's memory, CPU time and processes. */
#define LIMITS_CHECK_MS 100

/* What the processes of a worker's tree use, added up. */
struct tree_usage {
    int64_t rss_bytes, cpu_ticks;
    int processes;
};

/* Adds one process's figures; its children's pids go to kids (up to cap; NULL: not
 * looked for); returns how many, or -1 when the process is gone. */
static int usage_of(pid_t pid, struct tree_usage *u, pid_t *kids, int cap)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    /* After ") ": state(3) ... utime(14) stime(15) cutime(16) cstime(17) ... rss(24). */
    long long f[25] = {0};
    int field = 3;
    for (char *t = p + 2; *t && field <= 24; field++) {
        if (field > 3)
            f[field] = strtoll(t, NULL, 10);
        t = strchr(t, ' ');
        if (t == NULL)
            break;
        t++;
    }
    u->processes++;
    u->cpu_ticks += f[14] + f[15] + f[16] + f[17];
    u->rss_bytes += f[24] * sysconf(_SC_PAGESIZE);
    return kids == NULL ? 0 : reap_children_of(pid, kids, 0, cap);
}

/* The worker's tree, at most max_procs processes deep into it (then processes says more). */
static void tree_usage(pid_t root, int max_procs, struct tree_usage *u)
{
    enum { CAP = 8192 };
    static pid_t to_visit[CAP];
    int n = 0;
    to_visit[n++] = root;
    memset(u, 0, sizeof(*u));
    while (n > 0 && u->processes <= max_procs) {
        pid_t pid = to_visit[--n];
        int got = usage_of(pid, u, to_visit + n, CAP - n);
        if (got > 0)
            n += got;
    }
}

/* Ends the attempt when its processes are over a limit (see the top of this file). */
static void limits_check(runner_job *job)
{
    const struct ferry_limits *l = &job->limits;
    struct tree_usage u;
    tree_usage(job->w->pid, l->processes > 0 ? l->processes : 8191, &u);
    long hz = sysconf(_SC_CLK_TCK);
    /* CPU time counts from the first check, LIMITS_CHECK_MS into the attempt: reading it at
     * the start of every attempt cost the hot path more than the 0.1 s this leaves out. */
    if (job->cpu_base_ticks < 0)
        job->cpu_base_ticks = u.cpu_ticks;
    int64_t cpu_s = (u.cpu_ticks - job->cpu_base_ticks) / (hz > 0 ? hz : 100);
    if (l->memory_mb > 0 && u.rss_bytes > (int64_t)l->memory_mb * 1024 * 1024)
        snprintf(job->limit_msg, sizeof(job->limit_msg), "memory limit %d MiB exceeded",
                 l->memory_mb);
    else if (l->cpu_seconds > 0 && cpu_s >= l->cpu_seconds)
        snprintf(job->limit_msg, sizeof(job->limit_msg), "cpu time limit %d s exceeded",
                 l->cpu_seconds);
    else if (l->processes > 0 && u.processes > l->processes)
        snprintf(job->limit_msg, sizeof(job->limit_msg), "process limit %d exceeded", l->processes);
    else
        return;
    job->stopping = STOP_LIMIT;
    /* The worker and all it started; worker_died settles the attempt. */
    runner_kill_groups(job->w, SIGKILL);
}

/* An attempt's limits: the runner's, with its function's overrides (runner_int.h). */
void runner_limits_for(const runner_opts *opts, const char *function, struct ferry_limits *limits)
{
    *limits = opts->limits;
    for (size_t i = 0; i < opts->n_fn_limits; i++) {
        const struct ferry_limits *o = &opts->fn_limits[i];
        if (function && o->function && strcmp(o->function, function) == 0) {
            limits->memory_mb = o->memory_mb >= 0 ? o->memory_mb : limits->memory_mb;
            limits->cpu_seconds = o->cpu_seconds >= 0 ? o->cpu_seconds : limits->cpu_seconds;
            limits->processes = o->processes >= 0 ? o->processes : limits->processes;
        }
    }
}

/* Its first look at its usage comes LIMITS_CHECK_MS after it starts. */
void runner_limits_begin(runner_job *job, int64_t now)
{
    if (job->limits.memory_mb > 0 || job->limits.cpu_seconds > 0 || job->limits.processes > 0) {
        job->cpu_base_ticks = -1; /* taken at the first check: short attempts cost nothing */
        job->next_check = now + LIMITS_CHECK_MS;
    }
}

/* The limits' part of runner_tick, for one running attempt. */
void runner_limits_tick(runner_job *job, int64_t now)
{
    if (!job->stopping && job->next_check > 0 && now >= job->next_check) {
        job->next_check = now + LIMITS_CHECK_MS;
        limits_check(job);
    }
}
