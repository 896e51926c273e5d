/* Running a command on a machine. Local machines: fork/exec of /bin/sh -c. */
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

static void child(const char *command, const json_t *options, int out_fd, int in_fd)
{
    setpgid(0, 0);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
    dup2(in_fd, STDIN_FILENO);
    dup2(out_fd, STDOUT_FILENO);
    dup2(out_fd, STDERR_FILENO);
    const char *cwd = json_string_value(json_object_get(options, "cwd"));
    if (cwd && chdir(cwd) != 0) {
        dprintf(STDERR_FILENO, "cannot change to %s: %s\n", cwd, strerror(errno));
        _exit(126);
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)json_object_get(options, "env"), key, v)
    {
        if (json_is_string(v))
            setenv(key, json_string_value(v), 1);
    }
    execl("/bin/sh", "sh", "-c", command, (char *)NULL);
    _exit(127);
}

json_t *exec_on_machine(const json_t *machine, const char *command, const json_t *options,
                        const exec_hooks *hooks, char *err, size_t errlen)
{
    if (!exec_machine_is_local(machine)) {
        seterr(err, errlen, "machine %s is remote; SSH execution is not in this build yet",
               json_string_value(json_object_get(machine, "name")));
        return NULL;
    }
    int out[2], in[2];
    if (pipe2(out, O_CLOEXEC) != 0)
        goto fail_errno;
    if (pipe2(in, O_CLOEXEC) != 0) {
        close(out[0]);
        close(out[1]);
        goto fail_errno;
    }
    int64_t start = mono_ms();
    pid_t pid = fork();
    if (pid < 0) {
        close(out[0]);
        close(out[1]);
        close(in[0]);
        close(in[1]);
        goto fail_errno;
    }
    if (pid == 0)
        child(command, options, out[1], in[0]);
    setpgid(pid, pid); /* both sides set it, so there is no race with a kill */
    close(out[1]);
    close(in[0]);
    if (hooks && hooks->on_pgroup)
        hooks->on_pgroup(hooks->on_pgroup_arg, pid);

    const char *stdin_text = json_string_value(json_object_get(options, "stdin"));
    if (stdin_text) {
        /* Small inputs only: larger ones would need to be interleaved with reading. */
        size_t n = strlen(stdin_text);
        signal(SIGPIPE, SIG_IGN);
        if (write(in[1], stdin_text, n) < 0) {
            /* the command did not read its input; it sees EOF */
        }
    }
    close(in[1]);

    json_int_t max = json_integer_value(json_object_get(options, "max_output"));
    struct buf b = {.max = max > 0 ? (size_t)max : DEFAULT_MAX_OUTPUT};
    json_int_t timeout_s = json_integer_value(json_object_get(options, "timeout"));
    int64_t stop_at = timeout_s > 0 ? start + timeout_s * 1000 : 0;
    if (hooks && hooks->deadline_ms > 0) {
        int64_t d = start + (hooks->deadline_ms - now_ms());
        if (stop_at == 0 || d < stop_at)
            stop_at = d;
    }
    int timed_out = 0, killing = 0, open_out = 1;
    int64_t kill_at = 0;
    while (open_out) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        int rc = poll(&p, 1, 100);
        if (rc > 0) {
            char chunk[65536];
            ssize_t n = read(out[0], chunk, sizeof(chunk));
            if (n > 0)
                buf_add(&b, chunk, (size_t)n);
            else if (n == 0 || (errno != EINTR && errno != EAGAIN))
                open_out = 0;
        }
        int64_t now = mono_ms();
        int stop = (stop_at > 0 && now >= stop_at) ||
                   (hooks && hooks->cancelled && hooks->cancelled(hooks->cancelled_arg));
        if (stop && !killing) {
            timed_out = stop_at > 0 && now >= stop_at;
            kill(-pid, SIGTERM);
            killing = 1;
            kill_at = now + KILL_GRACE_MS;
        } else if (killing && now >= kill_at) {
            kill(-pid, SIGKILL);
            kill_at = now + 60000;
        }
    }
    close(out[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (killing)
        kill(-pid, SIGKILL); /* whatever of the group is left */
    json_t *res = json_pack("{s:i,s:s,s:b,s:b,s:I}", "exit_code",
                            WIFEXITED(status) ? WEXITSTATUS(status) : -1, "output",
                            b.data ? b.data : "", "truncated", b.truncated, "timed_out",
                            timed_out, "duration_ms", (json_int_t)(mono_ms() - start));
    json_object_set_new(res, "signal",
                        WIFSIGNALED(status) ? json_integer(WTERMSIG(status)) : json_null());
    free(b.data);
    return res;

fail_errno:
    seterr(err, errlen, "cannot start command: %s", strerror(errno));
    return NULL;
}
