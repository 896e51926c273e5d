/*
 * Process containment (host/worker/reap.c), in both ways: each case runs a "worker" in a child
 * process of its own (reap's state is per process) that leaves hostile descendants —
 * setsid(), SIGTERM ignored, double forks, a fork loop — and checks that the worker's
 * sweep, its SIGTERM handler or the host's kill leaves none of them alive. The cgroup
 * cases are skipped where no writable cgroup2 with cgroup.kill exists.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "reap.h"

#define MAX_PIDS 8

/* Dead, or a zombie nobody reaped yet. */
static int gone(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p == NULL || p[2] == 'Z' || p[2] == 'X';
}

static int all_gone_within(const pid_t *pids, int n, int ms)
{
    for (int waited = 0; waited <= ms; waited += 10) {
        int left = 0;
        for (int i = 0; i < n; i++)
            left += !gone(pids[i]);
        if (left == 0)
            return 1;
        usleep(10000);
    }
    return 0;
}

static void linger(int report_fd)
{
    setsid();
    signal(SIGTERM, SIG_IGN);
    pid_t me = getpid();
    if (write(report_fd, &me, sizeof(me)) != sizeof(me))
        _exit(1);
    for (;;)
        pause();
}

/* Leaves a setsid() child, a double-forked daemon and a fork loop; their pids go to
 * report_fd. Returns how many were started (3). */
static int leave_hostile(int report_fd)
{
    if (fork() == 0)
        linger(report_fd);
    pid_t mid = fork();
    if (mid == 0) {
        if (fork() == 0)
            linger(report_fd);
        _exit(0);
    }
    waitpid(mid, NULL, 0);
    if (fork() == 0) {
        setsid();
        signal(SIGTERM, SIG_IGN);
        pid_t me = getpid();
        if (write(report_fd, &me, sizeof(me)) != sizeof(me))
            _exit(1);
        for (;;) {
            if (fork() == 0) {
                usleep(20000);
                _exit(0);
            }
            while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        }
    }
    return 3;
}

/* Kills what a failed case left, so that a failure leaves nothing running either. */
static void kill_all(const pid_t *pids, int n)
{
    for (int i = 0; i < n; i++)
        if (pids[i] > 0)
            kill(pids[i], SIGKILL);
}

static int read_pids(int fd, pid_t *pids, int n)
{
    for (int i = 0; i < n; i++)
        if (read(fd, &pids[i], sizeof(pids[i])) != sizeof(pids[i]))
            return -1;
    return 0;
}

static int cgroup_usable(void)
{
    static int known = -1;
    if (known >= 0)
        return known;
    known = 0;
    pid_t pid = fork();
    if (pid == 0) {
        setenv("FERRY_CONTAINMENT", "cgroup", 1);
        _exit(strcmp(reap_worker_init(), "cgroup") == 0 ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    reap_worker_gone(pid);
    known = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    return known;
}

/* The worker's side of the sweep case: exit status 0 when every descendant was killed and
 * the count is right. */
static void sweep_worker(const char *mode)
{
    setenv("FERRY_CONTAINMENT", mode, 1);
    if (strcmp(reap_worker_init(), mode) != 0)
        _exit(10);
    if (reap_worker_sweep() != 0)
        _exit(11); /* nothing to kill yet */
    int fds[2];
    if (pipe(fds) != 0)
        _exit(12);
    pid_t pids[MAX_PIDS];
    int n = leave_hostile(fds[1]);
    if (read_pids(fds[0], pids, n) != 0)
        _exit(13);
    usleep(50000); /* the fork loop is busy forking */
    int killed = reap_worker_sweep();
    int code = killed < n ? 14 : !all_gone_within(pids, n, 1000) ? 15 : 0;
    kill_all(pids, n);
    if (code)
        _exit(code);
    if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD)
        _exit(16); /* no child left, not even a zombie */
    _exit(0);
}

static void run_sweep(const char *mode)
{
    pid_t pid = fork();
    if (pid == 0)
        sweep_worker(mode);
    int status = 0;
    waitpid(pid, &status, 0);
    reap_worker_gone(pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_sweep_subreaper(void **state)
{
    (void)state;
    run_sweep("subreaper");
}

static void test_sweep_cgroup(void **state)
{
    (void)state;
    if (!cgroup_usable())
        skip();
    run_sweep("cgroup");
}

/* Starts a worker in mode that leaves hostile descendants and waits; their pids in pids. */
static pid_t hostile_worker(const char *mode, pid_t *pids, int *n)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("FERRY_CONTAINMENT", mode, 1);
        reap_worker_init();
        close(fds[0]);
        leave_hostile(fds[1]);
        for (;;)
            pause();
    }
    close(fds[1]);
    *n = 3;
    assert_int_equal(read_pids(fds[0], pids, *n), 0);
    close(fds[0]);
    usleep(50000);
    return pid;
}

/* The host kills a live worker: its descendants go with it, whatever session they are in. */
static void run_host_kill(const char *mode)
{
    pid_t pids[MAX_PIDS];
    int n = 0;
    pid_t worker = hostile_worker(mode, pids, &n);
    reap_kill_worker(worker);
    int status = 0;
    waitpid(worker, &status, 0);
    reap_worker_gone(worker);
    int ok = all_gone_within(pids, n, 1000);
    kill_all(pids, n);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_true(ok);
}

static void test_host_kill_subreaper(void **state)
{
    (void)state;
    run_host_kill("subreaper");
}

static void test_host_kill_cgroup(void **state)
{
    (void)state;
    if (!cgroup_usable())
        skip();
    run_host_kill("cgroup");
}

/* SIGTERM (a timeout, a cancel) kills the worker, which ends its descendants first. */
static void test_sigterm_ends_descendants(void **state)
{
    (void)state;
    pid_t pids[MAX_PIDS];
    int n = 0;
    pid_t worker = hostile_worker("subreaper", pids, &n);
    kill(worker, SIGTERM);
    int status = 0;
    waitpid(worker, &status, 0);
    int ok = all_gone_within(pids, n, 1000);
    kill_all(pids, n);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    assert_true(ok);
}

/* A worker's cgroup is removed once the host has reaped it. */
static void test_cgroup_removed(void **state)
{
    (void)state;
    if (!cgroup_usable())
        skip();
    pid_t pids[MAX_PIDS];
    int n = 0;
    pid_t worker = hostile_worker("cgroup", pids, &n);
    char line[4096] = "", path[64];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)worker);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) && strncmp(line, "0::", 3) != 0)
        ;
    fclose(f);
    char want[32], dir[sizeof(line) + 600];
    snprintf(want, sizeof(want), "/ferry-w%d\n", (int)worker);
    int in_own = strstr(line, want) != NULL;
    kill(worker, SIGKILL); /* dies on its own, as a crash would: the tree is cut */
    waitpid(worker, NULL, 0);
    reap_worker_gone(worker);
    int ok = all_gone_within(pids, n, 1000);
    kill_all(pids, n);
    assert_true(in_own);
    assert_true(ok);
    /* and the cgroup itself is removed: its directory is the line's path below the
     * cgroup2 mount */
    line[strcspn(line, "\n")] = '\0';
    char mnt[512] = "", info[1024];
    f = fopen("/proc/self/mountinfo", "r");
    assert_non_null(f);
    while (mnt[0] == '\0' && fgets(info, sizeof(info), f))
        if (strstr(info, " - cgroup2 ") != NULL)
            sscanf(info, "%*s %*s %*s %*s %511s", mnt);
    fclose(f);
    snprintf(dir, sizeof(dir), "%s%s", mnt, line + 3);
    struct stat st;
    assert_int_equal(stat(dir, &st), -1);
    assert_int_equal(errno, ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sweep_subreaper),
        cmocka_unit_test(test_sweep_cgroup),
        cmocka_unit_test(test_host_kill_subreaper),
        cmocka_unit_test(test_host_kill_cgroup),
        cmocka_unit_test(test_sigterm_ends_descendants),
        cmocka_unit_test(test_cgroup_removed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
