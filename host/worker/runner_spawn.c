/*
 * The runner's worker processes, apart from the attempts they run: how a worker starts (a
 * fresh image of ferry, or a worker of another user from ferry-priv), the environment it
 * gets, how it joins the pool, the heirs started ahead of a retirement, the idle workers
 * kept ready, and how a worker leaves. runner.c decides which worker runs what.
 */
#include "runner_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "priv_client.h"
#include "reap.h"
#include "ssh_options.h"
#include "util.h"
#include "worker.h"

/*
 * The environment a worker starts with, and so every command its functions run: an allowlist
 * (docs/operations.md, "The workers' environment"), never the host's whole environment, which
 * may hold a PGPASSWORD or AWS_SECRET_ACCESS_KEY meant for the host alone. PATH is the
 * configured one (workers.path), HOME the home of the user the worker runs as; LANG,
 * LANGUAGE, LC_*, TZ, TZDIR, TMPDIR, FERRY_* and the names in workers.pass_env pass through
 * from the host's environment.
 * Built once per runner; the strings are malloc'd.
 */
static int env_allowed(const char *kv, const char *pass)
{
    if (strncmp(kv, SSH_ALLOW_COMMAND_OPTIONS_ENV "=", strlen(SSH_ALLOW_COMMAND_OPTIONS_ENV) + 1) ==
        0)
        return 0; /* from the config only (runner_opts) */
    if (strncmp(kv, "FERRY_KNOWN_HOSTS=", 18) == 0)
        return 0; /* from the store's place only (runner_opts) */
    /* workers.pass_env: names the admin lets through, separated by spaces or commas. */
    size_t klen = strcspn(kv, "=");
    for (const char *p = pass; p && *p;) {
        p += strspn(p, " ,");
        size_t n = strcspn(p, " ,");
        if (n > 0 && n == klen && strncmp(p, kv, n) == 0)
            return 1;
        p += n;
    }
    static const char *const exact[] = {"LANG=", "LANGUAGE=", "TZ=", "TZDIR=", "TMPDIR="};
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (strncmp(kv, exact[i], strlen(exact[i])) == 0)
            return 1;
    if (strncmp(kv, "LC_", 3) == 0 || strncmp(kv, "FERRY_", 6) == 0)
        return 1;
#if defined(__SANITIZE_ADDRESS__)
    /* Sanitizer builds (development only): their options carry suppressions, no secrets. */
    if (strncmp(kv, "ASAN_OPTIONS=", 13) == 0 || strncmp(kv, "LSAN_OPTIONS=", 13) == 0 ||
        strncmp(kv, "UBSAN_OPTIONS=", 14) == 0)
        return 1;
#endif
    return 0;
}

char **runner_worker_env(const runner_opts *o)
{
    extern char **environ;
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    char **env = calloc(n + 5, sizeof(*env));
    size_t k = 0;
    env[k++] = xasprintf("PATH=%s", o->path && *o->path ? o->path : RUNNER_SAFE_PATH);
    struct passwd *pw = getpwuid(geteuid());
    env[k++] = xasprintf("HOME=%s", pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : "/");
    for (char **e = environ; e && *e; e++)
        if (env_allowed(*e, o->pass_env))
            env[k++] = xstrdup(*e);
    if (o->ssh_command_options)
        env[k++] = xstrdup(SSH_ALLOW_COMMAND_OPTIONS_ENV "=1");
    if (o->known_hosts && *o->known_hosts)
        env[k++] = xasprintf("FERRY_KNOWN_HOSTS=%s", o->known_hosts);
    env[k] = NULL;
    return env;
}

static int pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Takes a started worker into the pool. */
static worker *adopt(runner *r, pid_t pid, int sock, int errfd, int pidfd, int ctl)
{
    fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK);
    fcntl(errfd, F_SETFL, fcntl(errfd, F_GETFL) | O_NONBLOCK);
    worker *w = calloc(1, sizeof(*w));
    w->pid = pid;
    w->sock = sock;
    w->errfd = errfd;
    w->pidfd = pidfd;
    w->ctl = ctl;
    w->generation = r->generation;
    w->serial = ++r->next_serial;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = w->serial << EV_BITS | EV_SOCK};
    epoll_ctl(r->epfd, EPOLL_CTL_ADD, w->sock, &ev);
    struct epoll_event eev = {.events = EPOLLIN, .data.u64 = w->serial << EV_BITS | EV_STDERR};
    epoll_ctl(r->epfd, EPOLL_CTL_ADD, w->errfd, &eev);
    if (w->pidfd >= 0) {
        struct epoll_event pev = {.events = EPOLLIN, .data.u64 = w->serial << EV_BITS | EV_PIDFD};
        epoll_ctl(r->epfd, EPOLL_CTL_ADD, w->pidfd, &pev);
    }
    if (r->n_workers == r->cap_workers) {
        r->cap_workers = r->cap_workers ? r->cap_workers * 2 : 8;
        r->workers = realloc(r->workers, r->cap_workers * sizeof(*r->workers));
    }
    r->workers[r->n_workers++] = w;
    return w;
}

/*
 * Starts a worker as a fresh program image (exec of /proc/self/exe): a worker holds no copy
 * of the host's memory (other jobs' vaults, store credentials). posix_spawn, not fork: the
 * host copies no page tables and takes no copy-on-write fault on each page it writes after
 * (0.4 ms and some 700 faults a worker, measured), at every start and every retirement.
 * The worker watches the host from its first steps (worker.c guard_host: a host already
 * gone ends it), so nothing needs to run between fork and exec.
 */
worker *runner_spawn(runner *r)
{
    int sv[2], ep[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        hlog(LOG_ERROR, "cannot create a worker socket: %s", strerror(errno));
        return NULL;
    }
    if (pipe2(ep, O_CLOEXEC) != 0) {
        hlog(LOG_ERROR, "cannot create a worker's stderr pipe: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return NULL;
    }
    char parent[32], memory[32];
    snprintf(parent, sizeof(parent), "%d", (int)getpid());
    snprintf(memory, sizeof(memory), "%d", r->o.memory_limit_mb);
    char *argv[] = {"ferry", WORKER_ARGV1, parent, memory, NULL};
    /* Its own process group, every signal at its default and none blocked; stdin and stdout
     * /dev/null, stderr into the attempt's trace (not the host's log), the socket on fd 3,
     * nothing else. */
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t fa;
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDWR, 0);
    posix_spawn_file_actions_adddup2(&fa, STDIN_FILENO, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, ep[1], STDERR_FILENO);
    posix_spawn_file_actions_adddup2(&fa, sv[1], WORKER_FD);
    posix_spawn_file_actions_addclosefrom_np(&fa, WORKER_FD + 1);
    pid_t pid;
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv, r->env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(sv[1]);
    close(ep[1]);
    if (rc != 0) {
        hlog(LOG_ERROR, "cannot start a worker: %s", strerror(rc));
        close(sv[0]);
        close(ep[0]);
        return NULL;
    }
    return adopt(r, pid, sv[0], ep[0], pidfd_open_(pid), -1);
}

/*
 * A worker running as job->user, from ferry-priv: one per attempt (it takes no other, and
 * leaves after it), within max_workers (an idle worker of the host's own user leaves to make
 * room; a nested call may go past). NULL with why empty: no room now; with why set: the
 * helper is not there or refused (why says which).
 */
worker *runner_spawn_as(runner *r, const runner_job *job, char *why, size_t wlen)
{
    if (why)
        why[0] = '\0';
    if (!job->nested && runner_occupied(r) >= r->o.max_workers) {
        for (size_t i = 0; i < r->n_workers; i++)
            if (runner_load_of(r->workers[i]) == 0 && runner_eligible(r, r->workers[i])) {
                runner_retire(r, r->workers[i]);
                break;
            }
        if (runner_occupied(r) >= r->o.max_workers)
            return NULL;
    }
    struct priv_worker pw;
    char err[1024];
    if (priv_spawn(r->o.priv_socket, job->fn, job->user, r->o.memory_limit_mb, r->env, &pw, err,
                   sizeof(err)) != 0) {
        hlog(LOG_ERROR, "%s", err);
        if (why)
            snprintf(why, wlen, "%s", err);
        return NULL;
    }
    worker *w = adopt(r, pw.pid, pw.sock, pw.errfd, pw.pidfd, pw.ctl);
    w->leaving = 1; /* this attempt only */
    return w;
}

static void close_stderr(runner *r, worker *w)
{
    if (w->errfd >= 0) {
        epoll_ctl(r->epfd, EPOLL_CTL_DEL, w->errfd, NULL);
        close(w->errfd);
        w->errfd = -1;
    }
}

/* Signals a worker and the command groups its running attempt started. */
void runner_kill_groups(worker *w, int sig)
{
    if (w->ctl >= 0) { /* started by ferry-priv: its keeper signals it (another user's) */
        priv_ctl(w->ctl, sig == SIGKILL ? "kill" : "term");
        return;
    }
    if (sig == SIGKILL)
        reap_kill_worker(w->pid); /* its descendants too, in whatever group or session */
    kill(-w->pid, sig);
    if (w->job)
        for (int i = 0; i < w->job->n_pgroups; i++)
            kill(-w->job->pgroups[i], sig);
}

/* A worker's descriptors, closed whether its process was reaped already (worker_died) or is
 * reaped next (runner_retire_now). */
void runner_close_worker(runner *r, worker *w)
{
    epoll_ctl(r->epfd, EPOLL_CTL_DEL, w->sock, NULL);
    close(w->sock);
    close_stderr(r, w);
    if (w->pidfd >= 0) {
        epoll_ctl(r->epfd, EPOLL_CTL_DEL, w->pidfd, NULL);
        close(w->pidfd);
    }
}

/* The last step of a worker's removal, once its process is reaped. */
void runner_free_worker(runner *r, worker *w)
{
    proto_reader_free(&w->rd);
    proto_buf_free(&w->out);
    free(w->marks);
    for (size_t i = 0; i < r->n_workers; i++) {
        if (r->workers[i] == w) {
            r->workers[i] = r->workers[--r->n_workers];
            break;
        }
    }
    free(w);
}

/* How long an idle worker being retired has to run its plugins' fini() and exit. */
#define FINI_GRACE_MS 1000

/*
 * Removes a worker: an idle one is first let go (its socket closed, it runs its plugins'
 * fini() and exits, plugin.h), then what is left of its process groups is killed and it is
 * reaped. wait: wait here for it to exit (up to FINI_GRACE_MS); else the host's loop goes
 * on and the worker is reaped when it has exited (its pidfd) or its time is up
 * (runner_tick), a replacement may start meanwhile.
 */
void runner_retire(runner *r, worker *w)
{
    if (w->job == NULL && w->pidfd >= 0 && !w->exiting) {
        shutdown(w->sock, SHUT_RDWR);
        w->leaving = 1;
        w->exiting = mono_ms() + FINI_GRACE_MS;
        epoll_ctl(r->epfd, EPOLL_CTL_DEL, w->sock, NULL); /* its EOF says nothing new */
        close_stderr(r, w);
        return;
    }
    runner_retire_now(r, w, 0);
}

void runner_retire_now(runner *r, worker *w, int wait)
{
    if (wait && w->job == NULL && w->pidfd >= 0) {
        struct pollfd p = {.fd = w->pidfd, .events = POLLIN};
        shutdown(w->sock, SHUT_RDWR);
        int64_t left = w->exiting ? w->exiting - mono_ms() : FINI_GRACE_MS;
        while (left > 0 && poll(&p, 1, (int)left) < 0 && errno == EINTR)
            ;
    }
    runner_kill_groups(w, SIGKILL);
    runner_close_worker(r, w);
    while (w->ctl < 0 && waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    if (w->ctl >= 0)
        close(w->ctl); /* its keeper ends what is left of it */
    else
        reap_worker_gone(w->pid);
    runner_free_worker(r, w);
}

/* w was started ahead and may still take attempts (not retired by a recycle meanwhile). */
static int heir_ready(const runner *r, const worker *w)
{
    return w->heir && !w->dead && !w->leaving && w->generation == r->generation;
}

/* An heir, now a worker like the others, or NULL when there is none. */
worker *runner_take_heir(runner *r)
{
    for (size_t i = 0; i < r->n_workers; i++) {
        worker *w = r->workers[i];
        if (heir_ready(r, w)) {
            w->heir = 0;
            return w;
        }
    }
    return NULL;
}

/* The pool's part of runner_tick: see runner_int.h. */
void runner_keep_workers(runner *r, int64_t now)
{
    /* Workers let go whose fini() ran out of time are killed. */
    for (size_t i = r->n_workers; i-- > 0;)
        if (r->workers[i]->exiting && now >= r->workers[i]->exiting)
            runner_retire_now(r, r->workers[i], 0);
    /* A worker leaves at its quota of attempts, and a fresh one takes its slot. That one
     * starts ahead, while the last eighth of the quota runs: a worker takes milliseconds to
     * start (exec, moving into its cgroup: up to 20 ms on a busy machine), during which its
     * slot stayed empty at each retirement. It takes no attempt until the slot is free, so
     * no more attempts run at once than max_workers. One for each worker due to leave. */
    int heirs = 0, due = 0;
    for (size_t i = 0; i < r->n_workers; i++) {
        worker *w = r->workers[i];
        heirs += heir_ready(r, w);
        due += runner_eligible(r, w) && w->ctl < 0 &&
               w->jobs_done + runner_load_of(w) >= r->o.max_jobs - r->o.max_jobs / 8;
    }
    for (worker *next; heirs < due && (next = runner_spawn(r)) != NULL; heirs++)
        next->heir = 1;
    if (runner_occupied(r) < r->o.max_workers)
        runner_take_heir(r);
    /* Keep a few idle workers ready so an attempt never waits for a fork. */
    int idle = 0, leaving = 0;
    for (size_t i = 0; i < r->n_workers; i++) {
        idle += r->workers[i]->job == NULL && runner_eligible(r, r->workers[i]);
        leaving += r->workers[i]->exiting != 0;
    }
    int room = r->o.max_workers - ((int)r->n_workers - leaving);
    for (int k = idle; k < r->o.prefork && room > 0; k++, room--)
        runner_spawn(r);
}
