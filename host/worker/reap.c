/*
 * Process containment for attempts: a cgroup v2 per worker where one can be made, else the
 * worker as child subreaper and a walk of its process tree. See reap.h.
 *
 * Whatever runs from the worker's SIGTERM handler or its host guard thread (64 KiB of
 * stack) sticks to open/read/write/kill/waitpid and fixed buffers of a few KiB.
 */
#include "reap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CGROUP_PREFIX "ferry-w"
#define MAX_WALK      512  /* processes looked at per round; more are caught by later rounds */
#define MAX_COUNTED   1024 /* distinct processes counted as killed */
#define SWEEP_MS      5000 /* how long a sweep keeps killing before it gives up */
#define TERM_GRACE_MS 2000 /* what a SIGTERM'd worker gives its descendants before SIGKILL */

static pid_t worker_pid;
static char base_dir[PATH_MAX]; /* the cgroup workers start in, "" when there is none */
static char own_dir[PATH_MAX];  /* this worker's cgroup, "" in the subreaper way */

/* --- async-signal-safe helpers ---------------------------------------------------------- */

/* Appends s to buf (of size len, NUL-terminated), truncating. */
static void cat_str(char *buf, size_t len, const char *s)
{
    size_t n = strlen(buf);
    while (*s && n + 1 < len)
        buf[n++] = *s++;
    buf[n] = '\0';
}

static void cat_num(char *buf, size_t len, long v)
{
    char digits[24];
    int i = (int)sizeof(digits) - 1;
    digits[i] = '\0';
    unsigned long u = v < 0 ? (unsigned long)-v : (unsigned long)v;
    do {
        digits[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u && i > 1);
    if (v < 0)
        digits[--i] = '-';
    cat_str(buf, len, digits + i);
}

static long ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void nap_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Reads up to len-1 bytes of path into buf. Returns the length, or -1. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    ssize_t n;
    while (got + 1 < len && (n = read(fd, buf + got, len - 1 - got)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            return -1;
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return (ssize_t)got;
}

static int write_small(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Reads the whitespace-separated numbers of path (a children or cgroup.procs file) into
 * out, at most max. Returns how many, or -1 when the file cannot be read. */
static int read_pids(const char *path, pid_t *out, int max)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char chunk[512];
    long cur = -1;
    int n = 0;
    ssize_t got;
    while (n < max && (got = read(fd, chunk, sizeof(chunk))) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            break;
        for (ssize_t i = 0; i < got && n < max; i++) {
            if (chunk[i] >= '0' && chunk[i] <= '9') {
                cur = (cur < 0 ? 0 : cur * 10) + (chunk[i] - '0');
            } else if (cur >= 0) {
                out[n++] = (pid_t)cur;
                cur = -1;
            }
        }
    }
    if (cur >= 0 && n < max)
        out[n++] = (pid_t)cur;
    close(fd);
    return n;
}

/* The state letter and parent of pid from /proc/PID/stat; 0 when it is gone. */
static char proc_state(pid_t pid, pid_t *ppid)
{
    char path[64] = "/proc/", buf[512];
    cat_num(path, sizeof(path), pid);
    cat_str(path, sizeof(path), "/stat");
    if (read_small(path, buf, sizeof(buf)) <= 0)
        return 0;
    char *close_paren = strrchr(buf, ')'); /* the command name may hold anything */
    if (close_paren == NULL || close_paren[1] != ' ' || close_paren[2] == '\0')
        return 0;
    char state = close_paren[2];
    long parent = 0;
    for (const char *p = close_paren + 4; *p >= '0' && *p <= '9'; p++)
        parent = parent * 10 + (*p - '0');
    if (ppid)
        *ppid = (pid_t)parent;
    return state;
}

/* Which processes a sweep killed, to count each once however many rounds it takes. */
struct tally {
    pid_t killed[MAX_COUNTED];
    int n;
};

static void count_once(struct tally *t, pid_t pid)
{
    if (t == NULL)
        return;
    for (int i = 0; i < t->n; i++)
        if (t->killed[i] == pid)
            return;
    if (t->n < MAX_COUNTED)
        t->killed[t->n++] = pid;
}

/*
 * Sends sig to pid only while it is still the process that was found: a pidfd pins it, and
 * the check after opening it (still a child of parent, or still in cgroup dir) rules out a
 * pid reused in between. Returns 1 when it was signalled.
 */
static int signal_checked(pid_t pid, pid_t parent, const char *dir, int sig)
{
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0)
        return 0;
    int ok = 0;
    if (dir) {
        char path[64] = "/proc/", buf[PATH_MAX + 64];
        cat_num(path, sizeof(path), pid);
        cat_str(path, sizeof(path), "/cgroup");
        const char *name = strrchr(dir, '/');
        char *line = read_small(path, buf, sizeof(buf)) > 0 ? strstr(buf, "0::") : NULL;
        if (line && name) {
            line[strcspn(line, "\n")] = '\0';
            size_t ll = strlen(line), nl = strlen(name);
            ok = ll >= nl && strcmp(line + ll - nl, name) == 0;
        }
    } else {
        pid_t now_parent = 0;
        char state = proc_state(pid, &now_parent);
        ok = state && state != 'Z' && now_parent == parent;
    }
    if (ok)
        ok = syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) == 0;
    close(pidfd);
    return ok;
}

/* --- one round over the members ----------------------------------------------------------- */

int reap_children_of(pid_t pid, pid_t *kids, int n, int max)
{
    char path[96] = "/proc/";
    cat_num(path, sizeof(path), pid);
    cat_str(path, sizeof(path), "/task");
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return n;
    char ents[1024] __attribute__((aligned(8)));
    long got;
    while (n < max && (got = syscall(SYS_getdents64, dfd, ents, sizeof(ents))) > 0) {
        for (long off = 0; off < got;) {
            const struct dirent64 *d = (const void *)(ents + off);
            off += d->d_reclen;
            if (d->d_name[0] < '0' || d->d_name[0] > '9')
                continue;
            char kids_path[160] = "";
            cat_str(kids_path, sizeof(kids_path), path);
            cat_str(kids_path, sizeof(kids_path), "/");
            cat_str(kids_path, sizeof(kids_path), d->d_name);
            cat_str(kids_path, sizeof(kids_path), "/children");
            int k = read_pids(kids_path, kids + n, max - n);
            if (k > 0)
                n += k;
        }
    }
    close(dfd);
    return n;
}

/*
 * Signals every live descendant of root (not root itself), walking /proc breadth first.
 * Returns how many live ones were found.
 */
static int round_tree(pid_t root, int sig, struct tally *t)
{
    pid_t queue[MAX_WALK], parent[MAX_WALK];
    int head = 0, n = 0, alive = 0;
    int k = reap_children_of(root, queue, 0, MAX_WALK);
    for (; n < k; n++)
        parent[n] = root;
    for (; head < n; head++) {
        pid_t pid = queue[head];
        pid_t ppid = 0;
        char state = proc_state(pid, &ppid);
        if (state == 0 || state == 'Z')
            continue;
        alive++;
        int before = n;
        n = reap_children_of(pid, queue, n, MAX_WALK);
        for (int i = before; i < n; i++)
            parent[i] = pid;
        if (signal_checked(pid, parent[head], NULL, sig) && sig == SIGKILL)
            count_once(t, pid);
    }
    return alive;
}

/* Signals every member of the cgroup dir but self. Returns how many were found. */
static int round_cgroup(const char *dir, pid_t self, int sig, struct tally *t)
{
    char path[PATH_MAX + 32] = "";
    cat_str(path, sizeof(path), dir);
    cat_str(path, sizeof(path), "/cgroup.procs");
    pid_t pids[MAX_WALK];
    int n = read_pids(path, pids, MAX_WALK), alive = 0;
    for (int i = 0; i < n; i++) {
        if (pids[i] == self)
            continue;
        alive++;
        if (signal_checked(pids[i], 0, dir, sig) && sig == SIGKILL)
            count_once(t, pids[i]);
    }
    return alive;
}

static int round_own(int sig, struct tally *t)
{
    pid_t self = getpid();
    return own_dir[0] ? round_cgroup(own_dir, self, sig, t) : round_tree(self, sig, t);
}

static void reap_zombies(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

/* --- the worker ------------------------------------------------------------------------- */

int reap_worker_sweep(void)
{
    /* The common case, in one system call instead of a read of /proc or cgroup.procs: a
     * subreaper (the worker is one in both ways) without children has no descendants at
     * all, since every orphan below it would have come to it. */
    if (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD)
        return 0;
    struct tally t = {.n = 0};
    long until = ms_now() + SWEEP_MS;
    for (;;) {
        int alive = round_own(SIGKILL, &t);
        reap_zombies();
        if (alive == 0 || ms_now() >= until)
            break;
        nap_ms(1);
    }
    reap_zombies();
    return t.n;
}

void reap_worker_doom(void)
{
    if (own_dir[0]) {
        char path[PATH_MAX + 32] = "";
        cat_str(path, sizeof(path), own_dir);
        cat_str(path, sizeof(path), "/cgroup.kill");
        write_small(path, "1"); /* the worker included */
    }
    reap_worker_sweep();
    kill(0, SIGKILL); /* the worker's own group */
    _exit(1);
}

/*
 * A worker told to stop (timeout, cancel, shutdown) dies of SIGTERM. Before it does, its
 * descendants get the same SIGTERM and a short grace, then SIGKILL: dying first would hand
 * them to PID 1 in the subreaper way. A plugin that replaces this handler is stopped by
 * the host's SIGKILL, which goes through reap_kill_worker() while the tree is whole.
 */
static void on_sigterm(int sig)
{
    int saved = errno;
    if (getpid() == worker_pid) {
        long until = ms_now() + TERM_GRACE_MS;
        for (int sent = 0; round_own(sent ? 0 : SIGTERM, NULL) > 0 && ms_now() < until; sent = 1) {
            reap_zombies();
            nap_ms(20);
        }
        reap_worker_sweep();
    }
    signal(sig, SIG_DFL);
    kill(getpid(), sig); /* delivered when the handler returns */
    errno = saved;
}

/* --- finding the cgroup ----------------------------------------------------------------- */

/*
 * The directory of this process's cgroup in the cgroup2 hierarchy, into out. Returns 0, or
 * -1 when no cgroup2 is mounted where this process's cgroup can be seen.
 */
static int own_cgroup_dir(char *out, size_t outlen)
{
    char cg[PATH_MAX] = "";
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (f == NULL)
        return -1;
    char line[PATH_MAX + 64];
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "0::", 3) == 0)
            snprintf(cg, sizeof(cg), "%.*s", (int)strcspn(line + 3, "\n"), line + 3);
    fclose(f);
    if (cg[0] != '/')
        return -1;
    f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL)
        return -1;
    int rc = -1;
    while (rc != 0 && fgets(line, sizeof(line), f)) {
        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - TYPE SOURCE SUPER */
        char root[PATH_MAX], point[PATH_MAX];
        const char *dash = strstr(line, " - ");
        if (dash == NULL || strncmp(dash, " - cgroup2 ", 11) != 0 ||
            sscanf(line, "%*s %*s %*s %4095s %4095s", root, point) != 2)
            continue;
        size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
        if (strncmp(cg, root, rl) != 0 || (cg[rl] != '/' && cg[rl] != '\0'))
            continue;
        snprintf(out, outlen, "%s%s", point, strcmp(cg + rl, "/") == 0 ? "" : cg + rl);
        rc = 0;
    }
    fclose(f);
    return rc;
}

/* The cgroup workers start in (the host's), worked out once; NULL when there is none. */
static const char *base(void)
{
    static int looked;
    if (!looked) {
        looked = 1;
        if (own_cgroup_dir(base_dir, sizeof(base_dir)) != 0)
            base_dir[0] = '\0';
    }
    return base_dir[0] ? base_dir : NULL;
}

static void worker_dir(pid_t worker, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/" CGROUP_PREFIX "%d", base(), (int)worker);
}

/* Ends what is in the cgroup dir and removes it; waits a little for the kill to land. */
static void end_cgroup(const char *dir)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/cgroup.kill", dir);
    if (write_small(path, "1") != 0 && errno == ENOENT)
        return;
    for (int i = 0; i < 200 && rmdir(dir) != 0 && errno == EBUSY; i++)
        nap_ms(1);
}

/* Removes the cgroups of workers that are gone (a host killed before it could). */
static void clean_stale(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, CGROUP_PREFIX, strlen(CGROUP_PREFIX)) != 0)
            continue;
        char *end;
        long pid = strtol(e->d_name + strlen(CGROUP_PREFIX), &end, 10);
        if (*end != '\0' || pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char sub[PATH_MAX];
        snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
        end_cgroup(sub);
    }
    closedir(d);
}

/* Moves this worker into a cgroup of its own. Returns 0, or -1 (and leaves nothing). */
static int enter_own_cgroup(void)
{
    if (base() == NULL)
        return -1;
    clean_stale(base());
    char dir[PATH_MAX], path[PATH_MAX + 32];
    worker_dir(getpid(), dir, sizeof(dir));
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -1;
    snprintf(path, sizeof(path), "%s/cgroup.kill", dir);
    int usable = access(path, W_OK) == 0;
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    if (!usable || write_small(path, "0") != 0) {
        rmdir(dir);
        return -1;
    }
    snprintf(own_dir, sizeof(own_dir), "%s", dir);
    return 0;
}

const char *reap_worker_init(void)
{
    worker_pid = getpid();
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    const char *want = getenv("FERRY_CONTAINMENT");
    if (!(want && strcmp(want, "subreaper") == 0))
        enter_own_cgroup();
    struct sigaction sa = {.sa_handler = on_sigterm};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    return own_dir[0] ? "cgroup" : "subreaper";
}

/* --- the host --------------------------------------------------------------------------- */

const char *reap_host_check(char *err, size_t errlen)
{
    static char text[PATH_MAX + 128];
    const char *want = getenv("FERRY_CONTAINMENT");
    if (want && want[0] && strcmp(want, "auto") != 0 && strcmp(want, "cgroup") != 0 &&
        strcmp(want, "subreaper") != 0) {
        if (err)
            snprintf(err, errlen,
                     "FERRY_CONTAINMENT=%.64s is not auto, cgroup or subreaper; unset it or "
                     "pick one (docs/operations.md, \"Process containment\")",
                     want);
        return NULL;
    }
    if (want && strcmp(want, "subreaper") == 0)
        return "subreaper (FERRY_CONTAINMENT=subreaper)";
    /* The workers' test, short of moving a process: a cgroup can be made beside the host
     * and offers cgroup.kill. */
    char probe[PATH_MAX], kill_file[PATH_MAX + 32];
    int usable = 0;
    if (base()) {
        snprintf(probe, sizeof(probe), "%s/ferry-probe-%d", base(), (int)getpid());
        if (mkdir(probe, 0755) == 0) {
            snprintf(kill_file, sizeof(kill_file), "%s/cgroup.kill", probe);
            usable = access(kill_file, W_OK) == 0;
            rmdir(probe);
        }
    }
    if (usable)
        snprintf(text, sizeof(text), "cgroup v2, one per worker under %s", base());
    else
        snprintf(text, sizeof(text), "subreaper (%s)",
                 base() ? "the host's cgroup2 takes no sub-cgroup with cgroup.kill"
                        : "no cgroup2 hierarchy holds the host");
    return text;
}

void reap_kill_worker(pid_t worker)
{
    if (worker <= 0)
        return;
    if (base()) {
        char dir[PATH_MAX];
        struct stat st;
        worker_dir(worker, dir, sizeof(dir));
        if (stat(dir, &st) == 0) {
            end_cgroup(dir);
            kill(worker, SIGKILL);
            return;
        }
    }
    /* The subreaper way: the stopped worker forks no more and keeps every orphan of its
     * tree attached to it until it dies. */
    kill(worker, SIGSTOP);
    long until = ms_now() + SWEEP_MS;
    while (round_tree(worker, SIGKILL, NULL) > 0 && ms_now() < until)
        nap_ms(1);
    kill(worker, SIGKILL);
}

void reap_worker_gone(pid_t worker)
{
    if (worker <= 0 || base() == NULL)
        return;
    char dir[PATH_MAX];
    worker_dir(worker, dir, sizeof(dir));
    end_cgroup(dir);
}
