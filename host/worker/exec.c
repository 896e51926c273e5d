/*
 * Running a command on a machine. Local machines: fork/exec of /bin/sh -c. Remote machines go
 * through exec_ssh() (exec_ssh.c), which builds an ssh command line and comes back here to
 * run it: both share exec_spawn(), the one place that captures output and enforces
 * timeouts and cancellation. The streaming exec (exec_stream.c) starts its commands with
 * exec_fork() and stops them with exec_police(), as exec_spawn() does.
 */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#define DEFAULT_MAX_OUTPUT (1024 * 1024)
#define KILL_GRACE_MS      2000

int exec_machine_is_local(const json_t *machine)
{
    if (machine == NULL || json_is_null(machine))
        return 1;
    if (json_is_true(json_object_get(machine, "local")))
        return 1;
    const char *conn = json_string_value(json_object_get(machine, "connection"));
    const char *ip = json_string_value(json_object_get(machine, "ip"));
    if (conn && strcmp(conn, "local") == 0)
        return 1;
    return ip && strcmp(ip, "local") == 0;
}

/* Captured output with a hard maximum: what does not fit is dropped and flagged. */
struct buf {
    char *data;
    size_t len, cap, max;
    int truncated;
};

static void buf_add(struct buf *b, const char *p, size_t n)
{
    if (b->len + n > b->max) {
        b->truncated = 1;
        n = b->max - b->len;
    }
    if (n == 0)
        return;
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        if (b->cap > b->max + 1)
            b->cap = b->max + 1;
        b->data = realloc(b->data, b->cap);
        if (b->data == NULL)
            abort();
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void child(const exec_spawn_spec *spec, int out_fd, int in_fd, int err_fd)
{
    setpgid(0, 0);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
    dup2(in_fd, STDIN_FILENO);
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd >= 0 ? err_fd : out_fd, STDERR_FILENO);
    if (spec->cwd && chdir(spec->cwd) != 0) {
        dprintf(STDERR_FILENO, "cannot change to %s: %s\n", spec->cwd, strerror(errno));
        _exit(126);
    }
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)spec->env, key, v) {
        if (json_is_string(v))
            setenv(key, json_string_value(v), 1);
    }
    execvp(spec->argv[0], spec->argv);
    dprintf(STDERR_FILENO, "cannot run %s: %s\n", spec->argv[0], strerror(errno));
    _exit(127);
}

/* The stdin side of a running command: text still to write, and whether to hold it open. */
struct feed {
    int fd;
    const char *text;
    size_t left;
    int hold;
};

/* Writes what the pipe takes without blocking; closes it when done unless it is held. */
static void feed_some(struct feed *f)
{
    while (f->fd >= 0 && f->left > 0) {
        ssize_t n = write(f->fd, f->text, f->left);
        if (n > 0) {
            f->text += n;
            f->left -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return;
        } else {
            f->left = 0; /* the command closed its stdin: it does not want the rest */
        }
    }
    if (f->fd >= 0 && f->left == 0 && !f->hold) {
        close(f->fd);
        f->fd = -1;
    }
}

int64_t exec_stop_time(int64_t start, const json_t *options, const exec_hooks *hooks)
{
    json_int_t timeout_s = json_integer_value(json_object_get(options, "timeout"));
    int64_t stop_at = timeout_s > 0 ? start + timeout_s * 1000 : 0;
    if (hooks && hooks->deadline_ms > 0) {
        int64_t d = start + (hooks->deadline_ms - now_ms());
        if (stop_at == 0 || d < stop_at)
            stop_at = d;
    }
    return stop_at;
}

static void close_pair(int p[2])
{
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
}

pid_t exec_fork(const exec_spawn_spec *spec, int fds[3])
{
    int out[2] = {-1, -1}, in[2] = {-1, -1}, er[2] = {-1, -1};
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(in, O_CLOEXEC) != 0 ||
        (spec->split_stderr && pipe2(er, O_CLOEXEC) != 0)) {
        int saved = errno;
        close_pair(out);
        close_pair(in);
        errno = saved;
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0)
        child(spec, out[1], in[0], er[1]);
    if (pid > 0)
        setpgid(pid, pid); /* both sides set it, so there is no race with a kill */
    int saved = errno;
    close(out[1]);
    close(in[0]);
    if (er[1] >= 0)
        close(er[1]);
    if (pid < 0) {
        close(out[0]);
        close(in[1]);
        if (er[0] >= 0)
            close(er[0]);
    }
    fds[0] = in[1];
    fds[1] = out[0];
    fds[2] = er[0];
    errno = saved;
    return pid;
}

void exec_police(exec_stopper *s, const exec_hooks *hooks)
{
    int64_t now = mono_ms();
    int timeout = s->stop_at > 0 && now >= s->stop_at;
    int cancelled = !timeout && hooks && hooks->cancelled && hooks->cancelled(hooks->cancelled_arg);
    /* The cancel check also turns true at the deadline, by the wall clock: that is a timeout. */
    if (cancelled && hooks->deadline_ms > 0 && now_ms() >= hooks->deadline_ms) {
        timeout = 1;
        cancelled = 0;
    }
    if ((timeout || cancelled || s->requested) && !s->killing) {
        s->timed_out = timeout;
        s->why = timeout ? "timeout" : cancelled ? "cancelled" : "stop";
        kill(-s->pgid, SIGTERM);
        s->killing = 1;
        s->kill_at = now + KILL_GRACE_MS;
    } else if (s->killing && now >= s->kill_at) {
        kill(-s->pgid, SIGKILL);
        s->killed = 1;
        s->kill_at = now + 60000;
    }
}

json_t *exec_spawn(const exec_spawn_spec *spec, const json_t *options, const exec_hooks *hooks,
                   char *err, size_t errlen)
{
    int fds[3];
    int64_t start = mono_ms();
    pid_t pid = exec_fork(spec, fds);
    int out_fd = fds[1], in_fd = fds[0];
    if (pid < 0) {
        seterr(err, errlen, "cannot start command: %s", strerror(errno));
        return NULL;
    }
    if (hooks && hooks->on_pgroup)
        hooks->on_pgroup(hooks->on_pgroup_arg, pid);

    /* A command that ignores its stdin must not make the worker die of SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    fcntl(in_fd, F_SETFL, O_NONBLOCK);
    struct feed f = {.fd = in_fd,
                     .text = spec->stdin_text ? spec->stdin_text : "",
                     .left = spec->stdin_text ? strlen(spec->stdin_text) : 0,
                     .hold = spec->hold_stdin};
    feed_some(&f);

    json_int_t max = json_integer_value(json_object_get(options, "max_output"));
    struct buf b = {.max = max > 0 ? (size_t)max : DEFAULT_MAX_OUTPUT};
    exec_stopper st = {.pgid = pid, .stop_at = exec_stop_time(start, options, hooks)};
    for (int open_out = 1; open_out;) {
        struct pollfd p[2] = {{.fd = out_fd, .events = POLLIN},
                              {.fd = f.left > 0 ? f.fd : -1, .events = POLLOUT}};
        int rc = poll(p, 2, 100);
        if (rc > 0 && p[1].revents)
            feed_some(&f);
        if (rc > 0 && p[0].revents) {
            char chunk[65536];
            ssize_t n = read(out_fd, chunk, sizeof(chunk));
            if (n > 0)
                buf_add(&b, chunk, (size_t)n);
            else if (n == 0 || (errno != EINTR && errno != EAGAIN))
                open_out = 0;
        }
        exec_police(&st, hooks);
    }
    close(out_fd);
    if (f.fd >= 0)
        close(f.fd);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (st.killing)
        kill(-pid, SIGKILL); /* whatever of the group is left */
    json_t *res = json_pack("{s:i,s:s,s:b,s:b,s:I}", "exit_code",
                            WIFEXITED(status) ? WEXITSTATUS(status) : -1, "output",
                            b.data ? b.data : "", "truncated", b.truncated, "timed_out",
                            st.timed_out, "duration_ms", (json_int_t)(mono_ms() - start));
    json_object_set_new(res, "signal",
                        WIFSIGNALED(status) ? json_integer(WTERMSIG(status)) : json_null());
    free(b.data);
    return res;
}

json_t *exec_on_machine(const json_t *machine, const char *command, const json_t *options,
                        const exec_hooks *hooks, char *err, size_t errlen)
{
    if (!exec_machine_is_local(machine))
        return exec_ssh(machine, command, options, hooks, err, errlen);
    char *argv[4];
    exec_spawn_spec spec;
    exec_local_spec(&spec, argv, command, options);
    spec.stdin_text = json_string_value(json_object_get(options, "stdin"));
    return exec_spawn(&spec, options, hooks, err, errlen);
}

void exec_local_spec(exec_spawn_spec *spec, char *argv[4], const char *command,
                     const json_t *options)
{
    argv[0] = "/bin/sh";
    argv[1] = "-c";
    argv[2] = (char *)command;
    argv[3] = NULL;
    *spec = (exec_spawn_spec){.argv = argv,
                              .cwd = json_string_value(json_object_get(options, "cwd")),
                              .env = json_object_get(options, "env")};
}
