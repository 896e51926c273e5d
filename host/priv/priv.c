/*
 * ferry-priv, the privileged helper: see priv.h for the wire, docs/security.md ("Least
 * privilege") for the design. Everything here runs as root until the keeper of a worker
 * that is not root drops to the worker's user. The code path is short on purpose: it links
 * only this file, reap.c (to end a worker's tree) and libc; it opens no store, loads no
 * plugin and parses no JSON.
 */
#include "priv.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "reap.h"
#include "worker.h"

#define POLICY_MAX_RULES 256
#define SAFE_PATH        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* --- names ----------------------------------------------------------------------------- */

/* A character of a user or function name after the first. */
static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

static int all_name_chars(const char *s, size_t from, size_t n)
{
    for (size_t i = from; i < n; i++)
        if (!name_char(s[i]))
            return 0;
    return 1;
}

int priv_user_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > PRIV_NAME_MAX || strstr(s, "..") != NULL)
        return 0;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_'))
        return 0;
    return all_name_chars(s, 1, n);
}

int priv_function_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= 128 && s[0] != '.' && all_name_chars(s, 0, n);
}

/* --- the worker's side: what a helper-started worker runs -------------------------------- */

int priv_worker_allows(const struct attempt_spec *spec, char *why, size_t len)
{
    const char *fn = getenv("FERRY_PRIV_FUNCTION"), *dir = getenv("FERRY_PRIV_PLUGIN_DIR");
    if (fn == NULL)
        return 0;
    if (spec->function == NULL || strcmp(spec->function, fn) != 0) {
        snprintf(why, len, "this worker was started by ferry-priv for function %s only, not %s", fn,
                 spec->function ? spec->function : "(none)");
        return -1;
    }
    char real[PATH_MAX];
    size_t dl = dir ? strlen(dir) : 0;
    struct stat st;
    if (dir == NULL || spec->plugin == NULL || realpath(spec->plugin, real) == NULL ||
        strncmp(real, dir, dl) != 0 || real[dl] != '/' || stat(real, &st) != 0 ||
        !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) != 0) {
        snprintf(why, len,
                 "ferry-priv runs plugins only from its policy's plugin_dir %s, owned by root "
                 "and writable by root alone; %s is not one",
                 dir ? dir : "(none)", spec->plugin ? spec->plugin : "(none)");
        return -1;
    }
    if (geteuid() == 0 && (spec->pre_hook || spec->post_hook)) {
        snprintf(why, len,
                 "a worker running as root runs no pre_hook or post_hook (an item's "
                 "commands, which whoever creates items may set); remove them from the item");
        return -1;
    }
    return 0;
}

/* --- the helper's log: one line per decision, on stderr (the journal) ---------------------- */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "ferry-priv[%d]: %s\n", (int)getpid(), line);
}

/* --- the policy ------------------------------------------------------------------------- */

struct rule {
    char function[129]; /* or "*" */
    char users[512];    /* space-separated */
};

struct policy {
    char host_user[PRIV_NAME_MAX + 1];
    char plugin_dir[PATH_MAX];
    char path[1024];
    struct rule rules[POLICY_MAX_RULES];
    int n_rules;
};

/* A file (or directory) root alone may change. */
static int root_only(const struct stat *st)
{
    return st->st_uid == 0 && (st->st_mode & 022) == 0;
}

/* Every directory above path (path itself included when dir) is root's, writable by root
 * alone or sticky (/tmp): nobody else can swap what lies below. */
static int root_chain(const char *path)
{
    char buf[PATH_MAX];
    if (realpath(path, buf) == NULL)
        return 0;
    for (;;) {
        struct stat st;
        if (stat(buf, &st) != 0 || st.st_uid != 0 ||
            ((st.st_mode & 022) != 0 && !(S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX))))
            return 0;
        char *slash = strrchr(buf, '/');
        if (slash == NULL || slash == buf)
            break;
        *slash = '\0';
    }
    return 1;
}

/* Reads the policy file (docs/security.md): refused unless it and its directory are root's
 * and writable by root alone. Returns 0, or -1 with why. */
static int policy_load(const char *file, struct policy *p, char *why, size_t len)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->host_user, sizeof(p->host_user), "ferry");
    snprintf(p->path, sizeof(p->path), SAFE_PATH);
    int fd = open(file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st, dst;
    if (fd < 0) {
        snprintf(why, len, "cannot read the policy %s: %s", file, strerror(errno));
        return -1;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", file);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || !root_only(&st) || stat(dir, &dst) != 0 ||
        !root_only(&dst) || !root_chain(dir)) {
        snprintf(why, len,
                 "the policy %.120s (and its directory) must belong to root and be "
                 "writable by root alone; run: chown root: %.120s && chmod go-w %.120s %.120s",
                 file, file, file, dir);
        close(fd);
        return -1;
    }
    FILE *f = fdopen(fd, "r");
    char line[2048];
    int lineno = 0;
    while (f && fgets(line, sizeof(line), f)) {
        lineno++;
        line[strcspn(line, "\r\n#")] = '\0'; /* a # starts a comment */
        for (size_t e = strlen(line); e > 0 && (line[e - 1] == ' ' || line[e - 1] == '\t'); e--)
            line[e - 1] = '\0';
        char *s = line + strspn(line, " \t");
        if (*s == '#' || *s == '\0')
            continue;
        char key[32] = "", rest[1800] = "";
        if (sscanf(s, "%31s %1799[^\n]", key, rest) < 2) {
            snprintf(why, len, "%s:%d: a line is \"KEY VALUE\"", file, lineno);
            fclose(f);
            return -1;
        }
        if (strcmp(key, "host_user") == 0 && priv_user_name_ok(rest)) {
            snprintf(p->host_user, sizeof(p->host_user), "%s", rest);
        } else if (strcmp(key, "plugin_dir") == 0 && rest[0] == '/') {
            if (realpath(rest, p->plugin_dir) == NULL) {
                snprintf(why, len, "%s:%d: plugin_dir %s: %s", file, lineno, rest, strerror(errno));
                fclose(f);
                return -1;
            }
        } else if (strcmp(key, "path") == 0 && rest[0] == '/') {
            snprintf(p->path, sizeof(p->path), "%s", rest);
        } else if (strcmp(key, "allow") == 0 && p->n_rules < POLICY_MAX_RULES) {
            struct rule *r = &p->rules[p->n_rules];
            int used = 0;
            if (sscanf(rest, "%128s %n", r->function, &used) < 1 || rest[used] == '\0' ||
                (strcmp(r->function, "*") != 0 && !priv_function_name_ok(r->function))) {
                snprintf(why, len, "%s:%d: allow FUNCTION USER...", file, lineno);
                fclose(f);
                return -1;
            }
            snprintf(r->users, sizeof(r->users), " %s ", rest + used);
            p->n_rules++;
        } else {
            snprintf(why, len, "%s:%d: unknown or bad line (host_user, plugin_dir, path, allow)",
                     file, lineno);
            fclose(f);
            return -1;
        }
    }
    if (f)
        fclose(f);
    if (p->plugin_dir[0] == '\0') {
        snprintf(why, len, "the policy %s names no plugin_dir", file);
        return -1;
    }
    struct stat pst;
    if (stat(p->plugin_dir, &pst) != 0 || !root_only(&pst) || !root_chain(p->plugin_dir)) {
        snprintf(why, len,
                 "plugin_dir %.300s and the directories above it must belong to root and be "
                 "writable by root alone",
                 p->plugin_dir);
        return -1;
    }
    return 0;
}

/* May function run as user (whose uid is uid)? "*" never grants uid 0. */
static int policy_allows(const struct policy *p, const char *function, const char *user, uid_t uid)
{
    char word[PRIV_NAME_MAX + 3];
    snprintf(word, sizeof(word), " %s ", user);
    for (int i = 0; i < p->n_rules; i++) {
        const struct rule *r = &p->rules[i];
        int any = strcmp(r->function, "*") == 0;
        if ((any && uid == 0) || (!any && strcmp(r->function, function) != 0))
            continue;
        /* users are separated by blanks: normalise tabs */
        char users[sizeof(r->users)];
        snprintf(users, sizeof(users), "%s", r->users);
        for (char *c = users; *c; c++)
            if (*c == '\t')
                *c = ' ';
        if (strstr(users, word))
            return 1;
    }
    return 0;
}

/* --- one connection: check, start the worker, keep it ----------------------------------- */

static int send_msg(int sock, const char *text, const int *fds, int n)
{
    struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n > 0) {
        memset(&u, 0, sizeof(u));
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
    }
    return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

static void __attribute__((noreturn)) refuse(int conn, const struct ucred *peer, const char *fmt,
                                             ...) __attribute__((format(printf, 3, 4)));
static void refuse(int conn, const struct ucred *peer, const char *fmt, ...)
{
    char why[1100], msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    say("refused uid %d (pid %d): %s", peer ? (int)peer->uid : -1, peer ? (int)peer->pid : 0, why);
    snprintf(msg, sizeof(msg), "refused: %s", why);
    send_msg(conn, msg, NULL, 0);
    _exit(1);
}

/* The environment the worker gets: built here, from the request only where a name is on this
 * list (never PATH, LD_*, HOME or a FERRY_PRIV_*). */
static int env_from_request(const char *kv)
{
    static const char *const exact[] = {"LANG=", "LANGUAGE=", "TZ=", "FERRY_CONTAINMENT="};
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (strncmp(kv, exact[i], strlen(exact[i])) == 0)
            return 1;
    if (strncmp(kv, "LC_", 3) == 0 && strchr(kv, '=') != NULL)
        return 1;
    return strcmp(kv, "FERRY_SSH_ALLOW_COMMAND_OPTIONS=1") == 0;
}

/* SIGTERM to the worker's process group and to every process group in its tree. */
static void term_tree(pid_t worker)
{
    enum { CAP = 4096 };
    static pid_t todo[CAP];
    int n = 0, head = 0;
    kill(-worker, SIGTERM);
    todo[n++] = worker;
    while (head < n) {
        pid_t pid = todo[head++];
        pid_t g = getpgid(pid);
        if (g > 1 && g != getpgrp())
            kill(-g, SIGTERM);
        else
            kill(pid, SIGTERM);
        n = reap_children_of(pid, todo, n, CAP);
    }
}

/* SIGKILL to every descendant of this keeper but the worker's pid (which it has not reaped,
 * so the pid cannot be another process's), until none is left or 2 s passed; reaps them. */
static void kill_own_tree(pid_t worker)
{
    enum { CAP = 4096 };
    static pid_t todo[CAP];
    for (int round = 0; round < 2000; round++) {
        int n = reap_children_of(getpid(), todo, 0, CAP), alive = 0;
        for (int head = 0; head < n; head++) {
            n = reap_children_of(todo[head], todo, n, CAP);
            if (todo[head] != worker && kill(todo[head], SIGKILL) == 0)
                alive++;
        }
        while (waitpid(-1, NULL, WNOHANG | __WALL) > 0)
            ;
        if (alive == 0)
            return;
        struct timespec ms = {.tv_nsec = 1000000};
        nanosleep(&ms, NULL);
    }
}

/* The keeper: after the worker started, stays its parent until it ends. The worker watches
 * the keeper (its "host" pid), so a keeper killed takes the worker and its tree along. */
static void __attribute__((noreturn)) keep(int conn, pid_t worker, int pidfd)
{
    struct pollfd p[2] = {{.fd = conn, .events = POLLIN}, {.fd = pidfd, .events = POLLIN}};
    int status = 0, told = 0;
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents) { /* the worker ended: a zombie until reaped below */
            told = 1;
            break;
        }
        if (p[0].revents) {
            char buf[128];
            ssize_t n = recv(conn, buf, sizeof(buf) - 1, 0);
            if (n <= 0) {
                if (n < 0 && errno == EINTR)
                    continue;
                break; /* the host let go of it, or died */
            }
            buf[n] = '\0';
            long id;
            if (strcmp(buf, "term") == 0)
                term_tree(worker);
            else if (strcmp(buf, "kill") == 0)
                reap_kill_worker(worker);
            else if (sscanf(buf, "cancel %ld", &id) == 1) {
                union sigval v = {.sival_int = (int)id};
                sigqueue(worker, SIGUSR1, v);
            }
        }
    }
    /* Nothing of the worker outlives its keeper's watch. */
    if (!told)
        reap_kill_worker(worker);
    reap_worker_gone(worker);
    kill_own_tree(worker);
    while (waitpid(worker, &status, 0) < 0 && errno == EINTR)
        ;
    if (told) {
        char msg[64];
        snprintf(msg, sizeof(msg), "exit %d", status);
        send_msg(conn, msg, NULL, 0);
    }
    _exit(0);
}

/* Applies the host's own resource limits to this process where they are lower. They are
 * read from /proc/PID/limits (readable without CAP_SYS_RESOURCE, which prlimit on another
 * user's process needs); the caller waits for the answer, so its pid is its own. */
static void take_limits(pid_t host)
{
    static const struct {
        int res;
        const char *name;
    } lim[] = {{RLIMIT_CPU, "Max cpu time"},          {RLIMIT_FSIZE, "Max file size"},
               {RLIMIT_DATA, "Max data size"},        {RLIMIT_STACK, "Max stack size"},
               {RLIMIT_CORE, "Max core file size"},   {RLIMIT_NPROC, "Max processes"},
               {RLIMIT_NOFILE, "Max open files"},     {RLIMIT_MEMLOCK, "Max locked memory"},
               {RLIMIT_AS, "Max address space"},      {RLIMIT_SIGPENDING, "Max pending signals"},
               {RLIMIT_MSGQUEUE, "Max msgqueue size"}};
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/limits", (int)host);
    FILE *f = fopen(path, "re");
    while (f && fgets(line, sizeof(line), f)) {
        for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]); i++) {
            size_t n = strlen(lim[i].name);
            char soft[32], hard[32];
            if (strncmp(line, lim[i].name, n) != 0 || line[n] != ' ' ||
                sscanf(line + n, "%31s %31s", soft, hard) != 2)
                continue;
            struct rlimit mine;
            if (getrlimit((__rlimit_resource_t)lim[i].res, &mine) != 0)
                continue;
            rlim_t s = strcmp(soft, "unlimited") == 0 ? RLIM_INFINITY : strtoull(soft, NULL, 10);
            rlim_t h = strcmp(hard, "unlimited") == 0 ? RLIM_INFINITY : strtoull(hard, NULL, 10);
            if (h < mine.rlim_max)
                mine.rlim_max = h;
            if (s < mine.rlim_cur)
                mine.rlim_cur = s;
            if (mine.rlim_cur > mine.rlim_max)
                mine.rlim_cur = mine.rlim_max;
            setrlimit((__rlimit_resource_t)lim[i].res, &mine);
        }
    }
    if (f)
        fclose(f);
}

static int high_fd(int fd)
{
    int h = fcntl(fd, F_DUPFD_CLOEXEC, 16);
    close(fd);
    return h;
}

static int become(const struct passwd *pw)
{
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 ||
        setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) != 0 ||
        setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) != 0)
        return -1;
    uid_t r, e, s;
    if (getresuid(&r, &e, &s) != 0 || r != pw->pw_uid || e != pw->pw_uid || s != pw->pw_uid)
        return -1;
    if (pw->pw_uid != 0 && setuid(0) == 0)
        return -1; /* the change did not hold */
    return 0;
}

static void __attribute__((noreturn)) serve_conn(int conn, const char *policy_file)
{
    struct ucred peer;
    socklen_t pl = sizeof(peer);
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &peer, &pl) != 0)
        refuse(conn, NULL, "cannot tell who asks (SO_PEERCRED): %s", strerror(errno));
    /* The request is read first (a refusal then reaches the caller), trusted for nothing
     * but the names checked below. */
    struct timeval tv = {.tv_sec = 5};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    static char req[PRIV_MSG_MAX + 1];
    ssize_t n = recv(conn, req, PRIV_MSG_MAX, 0);
    if (n <= 0)
        refuse(conn, &peer, "no request");
    req[n] = '\0';
    struct policy *pol = calloc(1, sizeof(*pol));
    char why[1024];
    if (pol == NULL || policy_load(policy_file, pol, why, sizeof(why)) != 0)
        refuse(conn, &peer, "%s", pol ? why : "out of memory");
    struct passwd *hp = getpwnam(pol->host_user);
    if (hp == NULL || peer.uid != hp->pw_uid)
        refuse(conn, &peer, "only the host's user %s may ask ferry-priv (policy %s)",
               pol->host_user, policy_file);
    if (strlen(req) != (size_t)n || strncmp(req, "ferry-priv 1\n", 13) != 0)
        refuse(conn, &peer, "not a ferry-priv 1 request");
    char function[200] = "", user[200] = "";
    int memory_mb = 0;
    char *env[72];
    int n_env = 0;
    static char home[PATH_MAX + 8], path[1100], uenv[64], fenv[200], denv[PATH_MAX + 32];
    for (char *line = strtok(req + 13, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "function ", 9) == 0)
            snprintf(function, sizeof(function), "%s", line + 9);
        else if (strncmp(line, "user ", 5) == 0)
            snprintf(user, sizeof(user), "%s", line + 5);
        else if (strncmp(line, "memory_mb ", 10) == 0)
            memory_mb = atoi(line + 10);
        else if (strncmp(line, "env ", 4) == 0 && env_from_request(line + 4) && n_env < 64)
            env[n_env++] = line + 4;
    }
    if (!priv_function_name_ok(function))
        refuse(conn, &peer, "not a function name: \"%.64s\"", function);
    if (!priv_user_name_ok(user))
        refuse(conn, &peer, "not a user name: \"%.64s\"", user);
    struct passwd *pw = getpwnam(user);
    if (pw == NULL)
        refuse(conn, &peer, "no user %s on this machine", user);
    if (!policy_allows(pol, function, user, pw->pw_uid))
        refuse(conn, &peer,
               "the policy %s does not let %s run as %s%s; add \"allow %s %s\" "
               "if it should",
               policy_file, function, user,
               pw->pw_uid == 0 ? " (root only on a line naming the function)" : "", function, user);
    if (memory_mb < 0)
        memory_mb = 0;
    snprintf(home, sizeof(home), "HOME=%s", pw->pw_dir && pw->pw_dir[0] == '/' ? pw->pw_dir : "/");
    snprintf(path, sizeof(path), "PATH=%s", pol->path);
    snprintf(uenv, sizeof(uenv), "USER=%s", pw->pw_name);
    snprintf(fenv, sizeof(fenv), "FERRY_PRIV_FUNCTION=%s", function);
    snprintf(denv, sizeof(denv), "FERRY_PRIV_PLUGIN_DIR=%s", pol->plugin_dir);
    env[n_env++] = path;
    env[n_env++] = home;
    env[n_env++] = uenv;
    env[n_env++] = fenv;
    env[n_env++] = denv;
    env[n_env] = NULL;

    /* The binary root execs: this one, which must be root's alone. */
    int exe = open("/proc/self/exe", O_PATH | O_CLOEXEC);
    struct stat est;
    if (exe < 0 || fstat(exe, &est) != 0 || !root_only(&est))
        refuse(conn, &peer, "ferry's binary must belong to root and be writable by root alone");
    take_limits(peer.pid);
    exe = high_fd(exe);
    setsid();
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    int sv[2], ep[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 || pipe2(ep, O_CLOEXEC) != 0)
        refuse(conn, &peer, "cannot make the worker's pipes: %s", strerror(errno));
    /* Above the descriptors the child sets up (0 to WORKER_FD + 1), so none is clobbered. */
    sv[1] = high_fd(sv[1]);
    ep[1] = high_fd(ep[1]);
    pid_t keeper = getpid();
    pid_t pid = fork();
    if (pid < 0)
        refuse(conn, &peer, "cannot fork: %s", strerror(errno));
    if (pid == 0) {
        if (become(pw) != 0)
            _exit(126);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != keeper)
            _exit(0);
        setpgid(0, 0);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        dup2(ep[1], STDERR_FILENO);
        dup2(sv[1], WORKER_FD);
        dup2(exe, WORKER_FD + 1);
        fcntl(WORKER_FD + 1, F_SETFD, FD_CLOEXEC);
        close_range(WORKER_FD + 2, ~0U, 0);
        if (chdir(pw->pw_dir && pw->pw_dir[0] == '/' ? pw->pw_dir : "/") != 0 && chdir("/") != 0)
            _exit(126);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int sig = 1; sig < NSIG; sig++)
            signal(sig, SIG_DFL);
        char parent[32], memory[32];
        snprintf(parent, sizeof(parent), "%d", (int)keeper);
        snprintf(memory, sizeof(memory), "%d", memory_mb);
        char *argv[] = {"ferry", WORKER_ARGV1, parent, memory, NULL};
        syscall(SYS_execveat, WORKER_FD + 1, "", argv, env, AT_EMPTY_PATH);
        _exit(127);
    }
    close(sv[1]);
    close(ep[1]);
    close(exe);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int fds[3] = {sv[0], ep[0], pidfd};
    char ok[64];
    snprintf(ok, sizeof(ok), "ok %d", (int)pid);
    if (pidfd < 0 || send_msg(conn, ok, fds, 3) != 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        _exit(1);
    }
    close(sv[0]);
    close(ep[0]);
    say("started %s as %s (uid %d) for uid %d (pid %d): worker %d", function, user, (int)pw->pw_uid,
        (int)peer.uid, (int)peer.pid, (int)pid);
    /* The keeper of a worker that is not root needs no more than its user. */
    if (pw->pw_uid != 0 && become(pw) != 0) {
        kill(pid, SIGKILL);
        _exit(1);
    }
    free(pol);
    keep(conn, pid, pidfd);
}

/* --- the listener ------------------------------------------------------------------------ */

static void usage(int code)
{
    fprintf(code ? stderr : stdout,
            "usage: ferry priv [--policy FILE] [--socket PATH]\n"
            "The privileged helper that starts workers as the users a function or machine\n"
            "names (run_as), for the host running as the unprivileged ferry user. Runs as\n"
            "root, normally from ferry-priv.socket (systemd passes the socket); with --socket\n"
            "it binds PATH itself (mode 0660, group of the policy's host_user). Policy:\n"
            "%s by default (docs/security.md, \"Least privilege\").\n",
            PRIV_DEFAULT_POLICY);
    exit(code);
}

void priv_main(int argc, char **argv)
{
    const char *policy = PRIV_DEFAULT_POLICY, *sock_path = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--policy") == 0 && i + 1 < argc)
            policy = argv[++i];
        else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
            sock_path = argv[++i];
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            usage(0);
        else
            usage(2);
    }
    if (geteuid() != 0) {
        fprintf(stderr, "ferry priv: must run as root (it starts workers as other users)\n");
        exit(1);
    }
    struct policy *pol = calloc(1, sizeof(*pol));
    char why[1024];
    if (pol == NULL || policy_load(policy, pol, why, sizeof(why)) != 0) {
        /* Said at start for the journal; every request checks again. */
        say("%s", pol ? why : "out of memory");
    }
    int lfd = -1;
    const char *lp = getenv("LISTEN_PID"), *lf = getenv("LISTEN_FDS");
    if (sock_path == NULL && lp && lf && atoi(lp) == (int)getpid() && atoi(lf) == 1) {
        lfd = 3;
        fcntl(lfd, F_SETFD, FD_CLOEXEC);
    } else {
        if (sock_path == NULL)
            sock_path = PRIV_DEFAULT_SOCKET;
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        if (strlen(sock_path) >= sizeof(a.sun_path)) {
            fprintf(stderr, "ferry priv: socket path too long\n");
            exit(1);
        }
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
        struct passwd *hp = getpwnam(pol && pol->host_user[0] ? pol->host_user : "ferry");
        lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        unlink(sock_path);
        mode_t old = umask(0177);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0) {
            fprintf(stderr, "ferry priv: cannot bind %s: %s\n", sock_path, strerror(errno));
            exit(1);
        }
        umask(old);
        if (hp == NULL || chown(sock_path, 0, hp->pw_gid) != 0 || chmod(sock_path, 0660) != 0 ||
            listen(lfd, 64) != 0) {
            fprintf(stderr, "ferry priv: cannot set up %s for the host's user: %s\n", sock_path,
                    hp ? strerror(errno) : "no such user");
            exit(1);
        }
    }
    free(pol);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    struct sigaction sa = {.sa_handler = SIG_IGN, .sa_flags = SA_NOCLDWAIT};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    say("serving (policy %s)", policy);
    for (;;) {
        int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
                continue;
            say("accept: %s", strerror(errno));
            exit(1);
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(lfd);
            signal(SIGCHLD, SIG_DFL);
            serve_conn(conn, policy);
        }
        close(conn);
    }
}
