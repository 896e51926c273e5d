/*
 * Process containment: nothing an attempt starts outlives it. See docs/operations.md,
 * "Process containment".
 *
 * Two ways, chosen once per worker:
 *  - cgroup: the worker moves itself into a cgroup v2 of its own, ferry-w<pid>, created
 *    beside it in the cgroup it started in (the host's). Everything the attempt forks lands
 *    there whatever it does (setsid, double fork); after an attempt every member but the
 *    worker is killed, and the host ends the whole cgroup with cgroup.kill when the worker goes.
 *    Chosen when a cgroup2 hierarchy is mounted, the host's cgroup in it is writable and has
 *    cgroup.kill (Linux 5.14+).
 *  - subreaper (the fallback): the worker is PR_SET_CHILD_SUBREAPER, so orphaned descendants
 *    are re-parented to it instead of PID 1 and its process tree holds all of them while it
 *    lives; ending them is a walk of that tree (/proc/PID/task/TID/children), SIGKILL to
 *    each, repeated until no live descendant is left (a forking child is caught by a later
 *    round: a killed process forks no more).
 * The environment variable FERRY_CONTAINMENT ("cgroup", "subreaper", or "auto", the default)
 * forces one way; "cgroup" falls back when no usable cgroup2 exists.
 *
 * Everything here that a signal handler or the host guard calls uses only async-signal-safe
 * system calls and fixed buffers: no malloc, no stdio.
 */
#ifndef FERRY_REAP_H
#define FERRY_REAP_H

#include <stddef.h>
#include <sys/types.h>

/*
 * In the host, once at start: checks FERRY_CONTAINMENT and finds out which way its workers
 * will take. Returns a description for the log ("cgroup v2: one per worker under DIR", or
 * "subreaper" and why), static text valid until the next call, or NULL with err set when
 * FERRY_CONTAINMENT holds something else than auto, cgroup or subreaper.
 */
const char *reap_host_check(char *err, size_t errlen);

/*
 * In a worker, once at start: becomes the subreaper of its descendants, moves into its own
 * cgroup when that way is chosen (removing empty cgroups left by dead workers), and
 * installs a SIGTERM handler that ends the worker's descendants before the worker dies of
 * it. Returns "cgroup" or "subreaper" (static text): the way in force.
 */
const char *reap_worker_init(void);

/*
 * In a worker, after an attempt: kills every process the attempt left behind and reaps
 * those that were the worker's children. Returns how many processes had to be killed.
 * Async-signal-safe.
 */
int reap_worker_sweep(void);

/*
 * In a worker whose host is gone: ends all its descendants and then the worker itself.
 * Does not return. Async-signal-safe.
 */
void reap_worker_doom(void) __attribute__((noreturn));

/*
 * In the host, instead of SIGKILL to a worker it still has to reap: freezes the worker
 * (SIGSTOP), kills its descendants (its cgroup, or its process tree), then the worker.
 */
void reap_kill_worker(pid_t worker);

/*
 * In the host, after reaping a worker: whatever is left in the worker's cgroup is killed
 * and the cgroup removed. Nothing to do in the subreaper way (a worker that died on its
 * own took its tree's links with it: see docs/operations.md).
 */
void reap_worker_gone(pid_t worker);

/*
 * Appends the children of every thread of pid to kids[n..max) (/proc/PID/task/TID/children)
 * and returns the new count. Async-signal-safe; also the runner's walk for the limits.
 */
int reap_children_of(pid_t pid, pid_t *kids, int n, int max);

#endif
