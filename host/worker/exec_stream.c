/*
 * The streaming exec service (ferry_host.exec_start / exec_wait, ABI 1.2): a command on the
 * machine whose stdin and stdout belong to the calling function, as pipes it reads and writes
 * at its own pace; nothing of the data passes through here.
 *
 * The command starts as exec's do (exec_fork(): a process group of its own, reported to the
 * host, which kills it with the attempt; over SSH the OpenSSH client runs locally with the
 * stream wrapper of exec_ssh.c on the far side). Its stderr gets a pipe of its own. Each
 * stream has a watcher thread: it reads the stderr (keeping the last 64 KiB), reaps the
 * process, and polices it with exec_police() every 100 ms, and at once on a cancel (the
 * worker's cancel eventfd wakes it): the options' timeout, the attempt's deadline, its
 * cancel, and a stop asked for by exec_wait. Stopping kills the
 * command's group, so a function blocked in read() on its stdout sees end-of-file and one
 * blocked in write() on its stdin gets EPIPE (the worker ignores SIGPIPE): the function
 * wakes up whatever it was doing. Over SSH the killed client drops the connection and the
 * remote wrapper ends the remote side.
 *
 * Over the attempt's shared SSH connection the master, not the client, holds the client's
 * stdout and stderr, and once the client is gone (killed by us or by anyone) the master
 * writes nothing more to them, yet keeps them open for as long as the remote command runs.
 * So the remote command's process group, which the stream wrapper writes first on stderr, must
 * be known before the client can die: exec_start returns once that line came (or the client
 * ended), and the watcher stops waiting for the stderr's end once the client died of a signal.
 * A client killed before the line came leaves the remote command to the attempt's end, whose
 * master stops: the connection drops and the remote wrapper's watchdog ends it.
 *
 * Handles are numbers, not pointers: exec_wait() looks them up among the live streams, so a
 * NULL, forged or already-waited handle is an error, never a crash.
 */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto.h"
#include "util.h"

#define STDERR_TAIL (64 * 1024)
#define WATCH_TICK  100       /* ms between two looks at the clock and the cancel flag */
#define PIPE_SIZE   (1 << 20) /* asked for on the data pipes; the kernel may give less */
#define WATCH_STACK (256 * 1024)

typedef struct stream {
    uintptr_t handle;
    struct stream *next;
    pid_t pid;
    int err_fd, pid_fd, wake[2];
    exec_hooks hooks;
    exec_stopper st;
    exec_ssh_cmd *ssh; /* NULL for a local command */
    int64_t start;
    pthread_t watcher;
    pthread_mutex_t lock;
    pthread_cond_t started;
    int ready; /* under lock: the remote process group is known, or will never be */
    int exited, status;
    /* Over SSH: the stream wrapper's first stderr line, "ferry-pgid N", the remote command's
     * process group; not the command's output. */
    char head[32];
    size_t head_len;
    int head_done, remote_pgid, remote_stopped;
    size_t total; /* stderr bytes seen; the last STDERR_TAIL of them are in tail */
    char tail[STDERR_TAIL];
} stream;

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static stream *live;
static uintptr_t last_handle;

static void tail_add(stream *s, const char *p, size_t n)
{
    if (n > STDERR_TAIL) {
        s->total += n - STDERR_TAIL;
        p += n - STDERR_TAIL;
        n = STDERR_TAIL;
    }
    size_t at = s->total % STDERR_TAIL, first = STDERR_TAIL - at;
    if (first > n)
        first = n;
    memcpy(s->tail + at, p, first);
    memcpy(s->tail, p + first, n - first);
    s->total += n;
}

/* Adds stderr bytes, taking the stream wrapper's "ferry-pgid N" line off the front. */
static void stderr_add(stream *s, const char *p, size_t n)
{
    while (!s->head_done && n > 0) {
        char c = *p++;
        n--;
        s->head[s->head_len++] = c;
        if (c == '\n' || s->head_len == sizeof(s->head) - 1) {
            s->head[s->head_len] = '\0';
            int pgid = 0;
            char nl = 0;
            if (sscanf(s->head, "ferry-pgid %d%c", &pgid, &nl) == 2 && nl == '\n' && pgid > 1)
                s->remote_pgid = pgid;
            else
                tail_add(s, s->head, s->head_len);
            s->head_done = 1;
        }
    }
    if (n > 0)
        tail_add(s, p, n);
}

/*
 * Over the attempt's shared SSH connection a stopped (or killed) ssh client does not end the
 * connection, so the remote wrapper cannot tell: the remote command is killed through the
 * connection instead, once, when the stop starts or the client died of a signal.
 */
static void stop_remote(stream *s)
{
    if (s->ssh == NULL || s->remote_stopped || s->remote_pgid <= 1)
        return;
    if (!s->st.killing && !(s->exited && WIFSIGNALED(s->status)))
        return;
    s->remote_stopped = 1;
    exec_ssh_stop_remote(s->ssh, s->remote_pgid);
}

/* The kept stderr, oldest byte first, as valid UTF-8 text (NUL bytes and bad sequences
 * replaced). A new string. */
static json_t *tail_text(const stream *s)
{
    size_t n = s->total < STDERR_TAIL ? s->total : STDERR_TAIL;
    size_t at = s->total < STDERR_TAIL ? 0 : s->total % STDERR_TAIL;
    char *flat = malloc(n + 1);
    if (flat == NULL)
        return json_string("");
    for (size_t i = 0; i < n; i++) {
        char c = s->tail[(at + i) % STDERR_TAIL];
        flat[i] = c ? c : '?';
    }
    flat[n] = '\0';
    json_t *text = proto_text(flat, 4 * STDERR_TAIL);
    free(flat);
    return text;
}

/* Reaps the command once it exited; 1 when it has. */
static int reaped(stream *s)
{
    if (!s->exited) {
        pid_t r = waitpid(s->pid, &s->status, WNOHANG);
        if (r == s->pid || (r < 0 && errno == ECHILD))
            s->exited = 1;
    }
    return s->exited;
}

/* Lets exec_stream_start() return: the wrapper's first line came, or no more will come. */
static void announce(stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->ready = 1;
    pthread_cond_signal(&s->started);
    pthread_mutex_unlock(&s->lock);
}

/* One read of the command's stderr into what is kept of it; 0 once the pipe is closed. */
static int read_stderr(stream *s)
{
    char chunk[16384];
    ssize_t n = read(s->err_fd, chunk, sizeof(chunk));
    if (n > 0)
        stderr_add(s, chunk, (size_t)n);
    return n > 0 || (n < 0 && (errno == EINTR || errno == EAGAIN));
}

/* Reads what the stderr pipe holds now, without waiting for more. */
static void drain_stderr(stream *s)
{
    struct pollfd p = {.fd = s->err_fd, .events = POLLIN};
    while (poll(&p, 1, 0) == 1 && (p.revents & POLLIN) && read_stderr(s))
        ;
}

/* The watcher: until the command exited and its stderr is closed (or, once it was killed,
 * exited: a process that escaped its group may hold the stderr; or, over SSH, died of a
 * signal: see the top of this file). */
static void *watch(void *arg)
{
    stream *s = arg;
    int err_open = 1;
    /* The attempt's cancel wakes the watcher at once (the worker's eventfd stays readable
     * once cancelled). Looked at until the stop starts; dropped if it wakes without a cancel
     * (a function closed it, its number reused): the tick still sees the cancel. */
    int cancel_fd = s->hooks.cancel_fd > 0 ? s->hooks.cancel_fd : -1;
    while (err_open || !s->exited) {
        if (s->exited && s->st.killed)
            break;
        struct pollfd p[4] = {{.fd = err_open ? s->err_fd : -1, .events = POLLIN},
                              {.fd = s->exited ? -1 : s->pid_fd, .events = POLLIN},
                              {.fd = s->wake[0], .events = POLLIN},
                              {.fd = s->st.killing ? -1 : cancel_fd, .events = POLLIN}};
        int rc = poll(p, 4, WATCH_TICK);
        if (rc > 0 && p[2].revents) {
            char c;
            if (read(s->wake[0], &c, 1) == 1)
                s->st.requested = 1;
        }
        if (rc > 0 && p[3].revents &&
            ((p[3].revents & POLLNVAL) || !s->hooks.cancelled ||
             !s->hooks.cancelled(s->hooks.cancelled_arg)))
            cancel_fd = -1;
        if (rc > 0 && p[0].revents)
            err_open = read_stderr(s);
        if (!reaped(s) || err_open)
            exec_police(&s->st, &s->hooks);
        stop_remote(s);
        if (!s->ready && (s->head_done || s->exited))
            announce(s);
        if (err_open && s->ssh && s->exited && WIFSIGNALED(s->status)) {
            drain_stderr(s);
            break;
        }
    }
    if (!s->head_done)
        tail_add(s, s->head, s->head_len);
    announce(s);
    if (s->st.killing)
        kill(-s->pid, SIGKILL); /* whatever of the group is left */
    return NULL;
}

static void stream_free(stream *s)
{
    if (s->err_fd >= 0)
        close(s->err_fd);
    if (s->pid_fd >= 0)
        close(s->pid_fd);
    if (s->wake[0] >= 0)
        close(s->wake[0]);
    if (s->wake[1] >= 0)
        close(s->wake[1]);
    exec_ssh_free(s->ssh);
    pthread_cond_destroy(&s->started);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* The options exec takes and exec_start does not; NULL when there is none. */
static const char *refused_option(const json_t *options)
{
    if (json_object_get(options, "stdin"))
        return "\"stdin\" is exec's option: exec_start hands the function the command's stdin "
               "(write to to_cmd)";
    if (json_object_get(options, "max_output"))
        return "\"max_output\" is exec's option: exec_start keeps none of the command's "
               "output (read from_cmd)";
    return NULL;
}

uintptr_t exec_stream_start(const json_t *machine, const char *command, const json_t *options,
                            const exec_hooks *hooks, int *to_cmd, int *from_cmd, char *err,
                            size_t errlen)
{
    const char *refused = refused_option(options);
    if (refused) {
        seterr(err, errlen, "%s", refused);
        return 0;
    }
    if (options && !json_is_object(options)) {
        seterr(err, errlen, "exec_start's options must be an object");
        return 0;
    }
    stream *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        seterr(err, errlen, "out of memory");
        return 0;
    }
    s->err_fd = s->pid_fd = s->wake[0] = s->wake[1] = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->started, NULL);
    if (hooks)
        s->hooks = *hooks;
    char *argv[4];
    exec_spawn_spec spec;
    exec_local_spec(&spec, argv, command, options);
    if (!exec_machine_is_local(machine)) {
        s->ssh = exec_ssh_prepare(machine, command, options, hooks, 0, 1, err, errlen);
        if (s->ssh == NULL) {
            stream_free(s);
            return 0;
        }
        spec = (exec_spawn_spec){.argv = exec_ssh_argv(s->ssh)};
    } else {
        s->head_done = s->ready = 1;
    }
    spec.split_stderr = 1;
    if (pipe2(s->wake, O_CLOEXEC) != 0) {
        seterr(err, errlen, "cannot start command: %s", strerror(errno));
        stream_free(s);
        return 0;
    }
    /* A command that ends before reading all its input must not end the worker too. */
    signal(SIGPIPE, SIG_IGN);
    int fds[3];
    s->start = mono_ms();
    s->pid = exec_fork(&spec, fds);
    if (s->pid < 0) {
        seterr(err, errlen, "cannot start command: %s", strerror(errno));
        stream_free(s);
        return 0;
    }
    if (hooks && hooks->on_pgroup)
        hooks->on_pgroup(hooks->on_pgroup_arg, s->pid);
    s->err_fd = fds[2];
    s->pid_fd = (int)syscall(SYS_pidfd_open, s->pid, 0); /* -1: the tick notices the exit */
    fcntl(fds[0], F_SETPIPE_SZ, PIPE_SIZE);
    fcntl(fds[1], F_SETPIPE_SZ, PIPE_SIZE);
    s->st = (exec_stopper){.pgid = s->pid, .stop_at = exec_stop_time(s->start, options, hooks)};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, WATCH_STACK);
    int rc = pthread_create(&s->watcher, &attr, watch, s);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        seterr(err, errlen, "cannot start command: no thread to watch it: %s", strerror(rc));
        kill(-s->pid, SIGKILL);
        close(fds[0]);
        close(fds[1]);
        while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        stream_free(s);
        return 0;
    }
    /* Over SSH: not before the remote process group is known (the top of this file). The
     * watcher polices the wait: a timeout or cancel kills the client, which ends it. */
    pthread_mutex_lock(&s->lock);
    while (!s->ready)
        pthread_cond_wait(&s->started, &s->lock);
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_lock(&live_lock);
    s->handle = ++last_handle;
    s->next = live;
    live = s;
    pthread_mutex_unlock(&live_lock);
    *to_cmd = fds[0];
    *from_cmd = fds[1];
    return s->handle;
}

/* Takes the live stream of handle off the list; NULL when there is none. */
static stream *take(uintptr_t handle)
{
    pthread_mutex_lock(&live_lock);
    stream **p = &live;
    while (*p && (*p)->handle != handle)
        p = &(*p)->next;
    stream *s = *p;
    if (s)
        *p = s->next;
    pthread_mutex_unlock(&live_lock);
    return s;
}

/* Stops s when asked, waits for its watcher and frees it; its result, or NULL with err set
 * when ssh failed. */
static json_t *finish(stream *s, int stop, char *err, size_t errlen)
{
    if (stop) {
        ssize_t w;
        do
            w = write(s->wake[1], "s", 1);
        while (w < 0 && errno == EINTR);
    }
    pthread_join(s->watcher, NULL);
    if (!s->exited)
        while (waitpid(s->pid, &s->status, 0) < 0 && errno == EINTR)
            ;
    int status = s->status;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    json_t *res = NULL;
    if (s->ssh == NULL ||
        !exec_ssh_failed(s->ssh, code, s->st.killing || WIFSIGNALED(status), err, errlen)) {
        res = json_pack("{s:i,s:o,s:b,s:I}", "exit_code", code, "output", tail_text(s), "truncated",
                        s->total > STDERR_TAIL, "duration_ms", (json_int_t)(mono_ms() - s->start));
        if (res == NULL)
            seterr(err, errlen, "out of memory");
        else {
            json_object_set_new(res, "signal",
                                WIFSIGNALED(status) ? json_integer(WTERMSIG(status)) : json_null());
            json_object_set_new(res, "stopped", s->st.why ? json_string(s->st.why) : json_null());
        }
    }
    stream_free(s);
    return res;
}

json_t *exec_stream_wait(uintptr_t handle, int stop, char *err, size_t errlen)
{
    stream *s = handle ? take(handle) : NULL;
    if (s == NULL) {
        seterr(err, errlen,
               "exec_wait: not a handle exec_start returned, or one already waited for");
        return NULL;
    }
    return finish(s, stop, err, errlen);
}

int exec_stream_end_all(void)
{
    int n = 0;
    for (;;) {
        pthread_mutex_lock(&live_lock);
        stream *s = live;
        if (s)
            live = s->next;
        pthread_mutex_unlock(&live_lock);
        if (s == NULL) {
            exec_ssh_end_attempt();
            return n;
        }
        char err[512];
        json_decref(finish(s, 1, err, sizeof(err)));
        n++;
    }
}
