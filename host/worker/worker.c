/*
 * The worker process: loads plugins on demand and runs one attempt at a time; implements the
 * host services table (struct ferry_host) that plugins call. The protocol: proto.h and
 * docs/protocol.md.
 */
#include "worker.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "descriptor.h"
#include "exec.h"
#include "httpc.h"
#include "priv.h"
#include "proto.h"
#include "reap.h"
#include "util.h"

/* The private attempt context behind the public struct ferry_ctx head. */
typedef struct worker_ctx {
    struct ferry_ctx pub; /* must stay first */
    int sock;
    struct proto_run run; /* the run message (borrowed from it for the attempt) */
    json_t *machine;      /* run.spec.machine when parsed here from its text (machine_of) */
    char *err_code;       /* set_error */
    char *err_msg;
} worker_ctx;

typedef struct loaded_plugin {
    char *path;
    dev_t dev;
    ino_t ino;
    struct timespec mtime;
    void *handle;
    const ferry_plugin *plugin;
    int inited;
} loaded_plugin;

static loaded_plugin *loaded;
static size_t n_loaded;
static volatile sig_atomic_t cancel_flag;
/* What the host wrote and the worker has not read yet: one read takes all there is. */
static proto_reader inbox;
/* The attempt running now, for the exit report (report_exit): its socket (-1: none) and id. */
static int running_sock = -1;
static int64_t running_id;
/* The running attempt's id as SIGUSR1's handler compares it (0 between attempts). */
static volatile sig_atomic_t cancel_id;
/* Readable once cancel_flag is set (set_cancelled), until the next attempt starts: streams'
 * watchers poll it (exec_hooks.cancel_fd). -1 when it could not be made: they then look at
 * the flag every 100 ms, as before. */
static int cancel_fd = -1;

/* Marks the running attempt cancelled and wakes whatever waits on cancel_fd.
 * Async-signal-safe. */
static void set_cancelled(void)
{
    cancel_flag = 1;
    if (cancel_fd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(cancel_fd, &one, sizeof(one));
        (void)w; /* full (never: one write per cancel) or gone: the tick still sees the flag */
    }
}
/*
 * A run message the host sent ahead (pipelining), not started yet: its text, read by
 * proto_scan_run() (run borrows from it, owns its params and config), or else the message
 * as a tree (msg), parsed again when it starts, for the reason it may be bad.
 */
typedef struct queued_run {
    struct proto_run run;
    int ok; /* run was parsed */
    char *text;
    json_t *msg;
} queued_run;
/* ... oldest first. */
static queued_run *queued;
static size_t n_queued, cap_queued;
static int running_loading; /* 1 while the plugin is loaded (its init() runs), 0 in run() */
/* 1 once a plugin was found changed on disk: this worker's copy is stale (dlopen would hand
 * the old one back), so it starts nothing more and hands every attempt back unstarted. */
static int stale;
static pid_t worker_pid; /* a process the plugin forked shares running_sock: it stays quiet */
/* The worker's own copy of its stderr pipe, kept whatever a plugin does with fd 2: how many
 * bytes wait in it tells the host whether it must read stderr once more (proto_done). */
static int stderr_copy = -1;

/* Bytes the host has not read from the worker's stderr yet; -1 when unknown. */
static int stderr_pending(void)
{
    int n = -1;
    if (stderr_copy < 0 || ioctl(stderr_copy, FIONREAD, &n) != 0)
        return -1;
    return n;
}

/* A cancel the runner sent with sigqueue() names its attempt: one that crossed its attempt's
 * end (the worker already runs the next one) is ignored. A plain kill() cancels whatever runs. */
/* Waits until the host has read everything written to the worker's stderr (it reads the
 * pipe as it fills), for about a second at most; costs one ioctl when the attempt wrote
 * nothing. Returns the bytes still unread then (stderr_pending()), which the done reports. */
static int wait_stderr_read(void)
{
    int pending = stderr_pending();
    for (int n = 0; n < 1100 && pending > 0; n++) {
        struct timespec ts = {0, n < 100 ? 20000 : 1000000};
        nanosleep(&ts, NULL);
        pending = stderr_pending();
    }
    return pending;
}

static void on_sigusr1(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    if (si == NULL || si->si_code != SI_QUEUE || si->si_value.sival_int == cancel_id)
        set_cancelled();
}

const char *worker_code_name(ferry_result code)
{
    switch (code) {
    case FERRY_OK:
        return "OK";
    case FERRY_RETRY:
        return "RETRY";
    case FERRY_FAIL:
        return "FAIL";
    case FERRY_INVALID:
        return "INVALID";
    }
    return "FAIL";
}

static worker_ctx *priv(ferry_ctx *ctx)
{
    return (worker_ctx *)ctx;
}

static void __attribute__((noreturn)) unload_and_exit(void);

/* Sends msg (taken; NULL when building it failed) to the host. Returns proto_send()'s. */
static int send_msg(int sock, json_t *msg)
{
    int rc = msg ? proto_send(sock, msg) : -1;
    json_decref(msg);
    return rc;
}

/* --- what the host sends ahead --------------------------------------------------------- */

static void push_queued(const queued_run *q)
{
    if (n_queued == cap_queued) {
        cap_queued = cap_queued ? cap_queued * 2 : 16;
        queued = realloc(queued, cap_queued * sizeof(*queued));
    }
    queued[n_queued++] = *q;
}

/* Takes the oldest queued run out into *q. */
static void pop_queued(queued_run *q)
{
    *q = queued[0];
    memmove(queued, queued + 1, (n_queued - 1) * sizeof(*queued));
    n_queued--;
}

static void drop_queued(queued_run *q)
{
    if (q->text) {
        json_decref((json_t *)q->run.spec.params);
        json_decref((json_t *)q->run.spec.config);
        free(q->text);
    }
    json_decref(q->msg);
}

/*
 * Keeps a run message (taken) for later, or applies a skip (taken): a queued attempt it names
 * is dropped and the host told so; a skip of the running attempt (seen while it waits for a
 * reply) cancels it; any other is late and ignored. Returns 1 when msg was one of those.
 */
static int take_input(int sock, json_t *msg)
{
    enum proto_op op = proto_op_of(msg);
    if (op == PROTO_RUN) {
        queued_run q = {.msg = msg};
        q.ok = proto_parse_run(msg, &q.run, NULL, 0) == 0;
        push_queued(&q);
        return 1;
    }
    if (op != PROTO_SKIP)
        return 0;
    struct proto_skip skip;
    if (proto_parse_skip(msg, &skip, NULL, 0) == 0) {
        for (size_t i = 0; i < n_queued; i++) {
            if (!queued[i].ok || queued[i].run.id != skip.id)
                continue;
            drop_queued(&queued[i]);
            memmove(queued + i, queued + i + 1, (n_queued - i - 1) * sizeof(*queued));
            n_queued--;
            struct proto_done done = {.id = skip.id, .kind = OUTCOME_FAIL, .skipped = 1};
            proto_send_done(sock, &done);
            break;
        }
        if (running_sock >= 0 && skip.id == running_id)
            set_cancelled();
    }
    json_decref(msg);
    return 1;
}

/*
 * One message's text from the host: a run is queued (read without a JSON tree when it is
 * plain, the common case), a skip applied (take_input); anything else is returned as a tree.
 * NULL: it was one of those, or (*broken set) the text is not a message.
 */
static json_t *take_text(int sock, const char *text, size_t n, int *broken)
{
    static const char run_head[] = "{\"op\":\"run\",";
    *broken = 0;
    queued_run q = {.ok = 1};
    if (n > sizeof(run_head) - 1 && memcmp(text, run_head, sizeof(run_head) - 1) == 0 &&
        (q.text = malloc(n)) != NULL) {
        memcpy(q.text, text, n);
        if (proto_scan_run(q.text, n, &q.run)) {
            push_queued(&q);
            return NULL;
        }
        free(q.text);
    }
    json_t *msg = json_loadb(text, n, JSON_DECODE_ANY, NULL);
    if (msg == NULL)
        *broken = 1;
    else if (take_input(sock, msg))
        msg = NULL;
    return msg;
}

/*
 * Reads everything the host has written so far without waiting (wait: unless nothing is
 * queued, then until something is). Ends the worker when the host closed the socket.
 */
static void read_input(int sock, int wait)
{
    int read_here = 0; /* this call read from the socket */
    for (;;) {
        int broken = 0;
        const char *text;
        size_t n;
        int got = proto_peek(&inbox, &text, &n, &broken);
        if (!got && !broken) {
            /* Not to block: the caller asked for no wait, or attempts are queued. */
            int look_only = !(wait && n_queued == 0);
            /* Everything is read when a read of this call took all the host had written
             * and every message it brought is taken: no look without waiting that finds
             * nothing, between the run message an idle worker waited for and its start. */
            if (look_only && read_here && inbox.drained && inbox.len == 0)
                return;
            /* Nothing now (or the host closed the socket, found when the worker waits). */
            if (look_only && proto_fill_now(&inbox, sock) <= 0)
                return;
            got = proto_read_text(&inbox, sock, &text, &n); /* what came, or its rest */
            read_here = 1;
        }
        json_t *msg = got ? take_text(sock, text, n, &broken) : NULL;
        if (got)
            proto_drop(&inbox);
        if (!got || broken)
            unload_and_exit(); /* the host closed our socket (or broke the protocol): go */
        json_decref(msg);      /* only a run starts anything */
    }
}

/* --- services ----------------------------------------------------------------------- */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static void svc_vlog(ferry_ctx *ctx, ferry_log_level level, const char *fmt, va_list ap)
{
    char text[PROTO_LOG_MAX + 8];
    vsnprintf(text, sizeof(text), fmt, ap);
    if ((int)level < 0 || level > FERRY_LOG_ERROR)
        level = FERRY_LOG_INFO;
    if (ctx == NULL) { /* during init(), outside any attempt */
        fprintf(stderr, "plugin %s: %s\n", level_names[level], text);
        return;
    }
    /* Bad UTF-8 (or a cut through a character) is replaced, never a reason to drop the line. */
    char *clean = proto_clean_text(text, PROTO_LOG_MAX);
    struct proto_log log = {.id = priv(ctx)->run.id, .level = level_names[level], .text = clean};
    send_msg(priv(ctx)->sock, proto_build_log(&log));
    free(clean);
}

static void svc_log(ferry_ctx *ctx, ferry_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    svc_vlog(ctx, level, fmt, ap);
    va_end(ap);
}

static void svc_progress(ferry_ctx *ctx, int percent, const char *message)
{
    if (ctx == NULL)
        return;
    if (percent > 100)
        percent = 100;
    if (percent < -1)
        percent = -1;
    char *clean = proto_clean_text(message, PROTO_LOG_MAX);
    struct proto_progress m = {.id = priv(ctx)->run.id, .percent = percent, .message = clean};
    send_msg(priv(ctx)->sock, proto_build_progress(&m));
    free(clean);
}

static int64_t svc_deadline(ferry_ctx *ctx)
{
    return ctx ? priv(ctx)->run.deadline_ms : 0;
}

static int svc_cancelled(ferry_ctx *ctx)
{
    if (cancel_flag)
        return 1;
    int64_t d = svc_deadline(ctx);
    return d > 0 && now_ms() >= d;
}

static void svc_set_error(ferry_ctx *ctx, const char *code, const char *fmt, ...)
{
    if (ctx == NULL)
        return;
    worker_ctx *w = priv(ctx);
    free(w->err_code);
    free(w->err_msg);
    /* Kept valid UTF-8 and capped here, once: the host stores the message as it comes. */
    w->err_code = proto_clean_text(code && code[0] ? code : "error", PROTO_CODE_MAX);
    char *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    w->err_msg = proto_clean_text(text ? text : "(out of memory formatting the error)",
                                  PROTO_ERROR_MAX);
    free(text);
}

/*
 * Sends a request (msg taken) to the host and waits for its reply, parsed into *reply
 * (borrowed from the returned message, which the caller frees; NULL when the request was
 * too large to send, *reply then a FAIL saying so). The worker ends when the host is gone or
 * answers with something that is not a reply.
 */
static json_t *request(worker_ctx *w, json_t *msg, struct proto_reply *reply)
{
    int sent = send_msg(w->sock, msg);
    if (sent == -2) {
        *reply = (struct proto_reply){.kind = OUTCOME_FAIL, .code = "too_large",
                                      .message = "the request is larger than the 64 MiB a "
                                                 "message may carry"};
        return NULL;
    }
    if (sent != 0)
        _exit(0); /* the host is gone: nothing left to report to */
    json_t *answer = NULL;
    const char *text;
    size_t n;
    int broken = 0;
    while (answer == NULL && !broken && proto_read_text(&inbox, w->sock, &text, &n)) {
        answer = take_text(w->sock, text, n, &broken); /* runs sent ahead and skips are kept */
        proto_drop(&inbox);
    }
    char err[256];
    if (answer == NULL || proto_parse_reply(answer, reply, err, sizeof(err)) != 0)
        _exit(0);
    return answer;
}

static ferry_result code_of(enum outcome_kind kind)
{
    switch (kind) {
    case OUTCOME_OK:
        return FERRY_OK;
    case OUTCOME_RETRY:
        return FERRY_RETRY;
    case OUTCOME_INVALID:
        return FERRY_INVALID;
    default:
        return FERRY_FAIL;
    }
}

static ferry_result svc_call(ferry_ctx *ctx, const char *function, const json_t *params,
                             json_t **result)
{
    if (result)
        *result = NULL;
    if (ctx == NULL || function == NULL)
        return FERRY_INVALID;
    struct proto_call call = {.id = priv(ctx)->run.id, .function = function, .params = params};
    struct proto_reply reply;
    json_t *answer = request(priv(ctx), proto_build_call(&call), &reply);
    ferry_result code = code_of(reply.kind);
    if (result && reply.result)
        *result = json_incref((json_t *)reply.result);
    if (code != FERRY_OK && reply.message)
        svc_set_error(ctx, reply.code, "%s: %s", function, reply.message);
    json_decref(answer);
    return code;
}

/* The attempt's machine facts. A run message read as text holds them as text, parsed here on
 * first use: most attempts never ask. */
static const json_t *machine_of(worker_ctx *w)
{
    if (w->run.spec.machine == NULL && w->run.spec.machine_json)
        w->run.spec.machine = w->machine = json_loads(w->run.spec.machine_json, 0, NULL);
    return w->run.spec.machine;
}

static json_t *svc_machine(ferry_ctx *ctx)
{
    if (ctx == NULL)
        return NULL;
    const json_t *m = machine_of(priv(ctx));
    return m ? json_deep_copy(m) : NULL;
}

static json_t *svc_storage(ferry_ctx *ctx, const char *name)
{
    if (ctx == NULL || name == NULL)
        return NULL;
    struct proto_storage m = {.id = priv(ctx)->run.id, .name = name};
    struct proto_reply reply;
    json_t *answer = request(priv(ctx), proto_build_storage(&m), &reply);
    json_t *out = reply.vault ? json_incref((json_t *)reply.vault) : NULL;
    if (out == NULL)
        svc_set_error(ctx, reply.code ? reply.code : "not_found", "%s",
                      reply.message ? reply.message : "no such storage");
    json_decref(answer);
    return out;
}

static json_t *svc_config(ferry_ctx *ctx)
{
    const json_t *c = ctx ? priv(ctx)->run.spec.config : NULL;
    return c ? json_deep_copy(c) : json_object();
}

static void report_pgroup(void *ud, pid_t pgid)
{
    worker_ctx *w = ud;
    struct proto_pgroup m = {.id = w->run.id, .pgid = pgid};
    send_msg(w->sock, proto_build_pgroup(&m));
}

/* The hooks a command of the attempt runs under: its cancel and deadline, its process groups
 * reported to the host, the attempt's SSH key. */
static exec_hooks attempt_hooks(worker_ctx *w)
{
    return (exec_hooks){.cancelled = (int (*)(void *))svc_cancelled,
                        .cancelled_arg = &w->pub,
                        .cancel_fd = cancel_fd > 0 ? cancel_fd : 0,
                        .on_pgroup = report_pgroup,
                        .on_pgroup_arg = w,
                        .deadline_ms = w->run.deadline_ms,
                        .ssh_key = w->run.spec.ssh_key};
}

static json_t *svc_exec(ferry_ctx *ctx, const char *command, const json_t *options)
{
    if (ctx == NULL || command == NULL)
        return NULL;
    worker_ctx *w = priv(ctx);
    char err[512] = "";
    exec_hooks hooks = attempt_hooks(w);
    json_t *res = exec_on_machine(machine_of(w), command, options, &hooks, err, sizeof(err));
    if (res == NULL)
        svc_set_error(ctx, "exec_failed", "%s", err);
    return res;
}

static ferry_exec_stream *svc_exec_start(ferry_ctx *ctx, const char *command,
                                         const json_t *options, int *to_cmd, int *from_cmd)
{
    if (to_cmd)
        *to_cmd = -1;
    if (from_cmd)
        *from_cmd = -1;
    if (ctx == NULL)
        return NULL;
    if (command == NULL || to_cmd == NULL || from_cmd == NULL) {
        svc_set_error(ctx, "exec_failed", "exec_start needs a command, to_cmd and from_cmd");
        return NULL;
    }
    worker_ctx *w = priv(ctx);
    char err[512] = "";
    exec_hooks hooks = attempt_hooks(w);
    uintptr_t h = exec_stream_start(machine_of(w), command, options, &hooks, to_cmd, from_cmd, err,
                                    sizeof(err));
    if (h == 0)
        svc_set_error(ctx, "exec_failed", "%s", err);
    return (ferry_exec_stream *)h;
}

static json_t *svc_exec_wait(ferry_ctx *ctx, ferry_exec_stream *stream, int stop)
{
    if (stream == NULL)
        return NULL;
    char err[512] = "";
    json_t *res = exec_stream_wait((uintptr_t)stream, stop, err, sizeof(err));
    if (res == NULL)
        svc_set_error(ctx, "exec_failed", "%s", err);
    return res;
}

static json_t *svc_http(ferry_ctx *ctx, const json_t *req)
{
    if (ctx == NULL || req == NULL)
        return NULL;
    char err[512] = "";
    json_t *res = httpc_request(req, priv(ctx)->run.deadline_ms, err, sizeof(err));
    if (res == NULL)
        svc_set_error(ctx, "http_failed", "%s", err);
    return res;
}

static const char *svc_task_id(ferry_ctx *ctx)
{
    return ctx && priv(ctx)->run.spec.task_id ? priv(ctx)->run.spec.task_id : "";
}

static int svc_attempt(ferry_ctx *ctx)
{
    return ctx ? priv(ctx)->run.spec.attempt : 0;
}

static const ferry_host host_table = {
    .struct_size = sizeof(ferry_host),
    .abi_major = FERRY_ABI_MAJOR,
    .abi_minor = FERRY_ABI_MINOR,
    .log = svc_log,
    .progress = svc_progress,
    .cancelled = svc_cancelled,
    .deadline = svc_deadline,
    .set_error = svc_set_error,
    .call = svc_call,
    .exec = svc_exec,
    .machine = svc_machine,
    .storage = svc_storage,
    .config = svc_config,
    .http = svc_http,
    .task_id = svc_task_id,
    .attempt = svc_attempt,
    .exec_start = svc_exec_start,
    .exec_wait = svc_exec_wait,
};

const ferry_host *worker_host_table(void)
{
    return &host_table;
}

/* --- loading ------------------------------------------------------------------------- */

/*
 * Returns the plugin at path, loading and initialising it on first use, or NULL + reason.
 * *changed is set when the file was replaced since this worker loaded it: the worker cannot
 * load it afresh (dlopen would hand back the old copy) and must be replaced.
 */
static const ferry_plugin *load(const char *path, const json_t *config, char *reason,
                                size_t rlen, int *changed)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        seterr(reason, rlen, "plugin %s is gone: %s", path, strerror(errno));
        return NULL;
    }
    for (size_t i = 0; i < n_loaded; i++) {
        loaded_plugin *l = &loaded[i];
        if (strcmp(l->path, path) != 0)
            continue;
        if (l->dev == st.st_dev && l->ino == st.st_ino &&
            l->mtime.tv_sec == st.st_mtim.tv_sec && l->mtime.tv_nsec == st.st_mtim.tv_nsec)
            return l->plugin;
        /* Replaced on disk since this worker loaded it: the runner recycles workers when the
         * registry changes, so this is a race with a drop-in. Start afresh. */
        seterr(reason, rlen, "plugin %s changed on disk while the attempt started; try again",
               path);
        *changed = 1;
        return NULL;
    }
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        seterr(reason, rlen, "cannot load %s: %s", path, dlerror());
        return NULL;
    }
    ferry_plugin_entry_fn entry;
    *(void **)&entry = dlsym(handle, FERRY_PLUGIN_ENTRY_SYMBOL);
    const ferry_plugin *plugin = entry ? entry() : NULL;
    json_t *desc = plugin ? descriptor_read(plugin, reason, rlen) : NULL;
    if (desc == NULL) {
        if (plugin == NULL)
            seterr(reason, rlen, "%s has no usable " FERRY_PLUGIN_ENTRY_SYMBOL, path);
        dlclose(handle);
        return NULL;
    }
    json_decref(desc);
    if (descriptor_init(plugin, &host_table, config ? config : json_object(), reason, rlen) !=
        0) {
        dlclose(handle);
        return NULL;
    }
    loaded = realloc(loaded, (n_loaded + 1) * sizeof(*loaded));
    loaded[n_loaded++] = (loaded_plugin){.path = xstrdup(path), .dev = st.st_dev,
                                         .ino = st.st_ino, .mtime = st.st_mtim,
                                         .handle = handle, .plugin = plugin, .inited = 1};
    return plugin;
}

/* --- pre_hook and post_hook ---------------------------------------------------------- */

#define HOOK_OUTPUT_IN_TRACE 3500

/*
 * Runs the item's pre_hook or post_hook (which) on the machine through the exec service and
 * records its exit and output in the trace. The hook sees FERRY_FUNCTION, FERRY_HOOK and,
 * for the post_hook, FERRY_OUTCOME; when the attempt names a hook_dir (the host learns it
 * from the plugins) that exists on the machine, it runs there with that directory first on
 * PATH. Returns 0 when the hook exited 0, else -1 with the attempt's error set (exec_failed
 * when it could not run at all).
 */
static int run_hook(worker_ctx *w, const char *which, const char *command, const char *outcome)
{
    const struct attempt_spec *spec = &w->run.spec;
    json_t *env = json_pack("{s:s,s:s}", "FERRY_FUNCTION", spec->function, "FERRY_HOOK", which);
    if (outcome)
        json_object_set_new(env, "FERRY_OUTCOME", json_string(outcome));
    if (spec->hook_dir)
        json_object_set_new(env, "FERRY_HOOK_DIR", json_string(spec->hook_dir));
    json_t *options = json_pack("{s:o}", "env", env);
    char *script = xasprintf("if [ -n \"${FERRY_HOOK_DIR:-}\" ] && [ -d \"$FERRY_HOOK_DIR\" ]; "
                             "then cd \"$FERRY_HOOK_DIR\" && PATH=\"$PWD:$PATH\"; fi\n%s",
                             command);
    json_t *res = svc_exec(&w->pub, script, options);
    free(script);
    json_decref(options);
    if (res == NULL) {
        svc_log(&w->pub, FERRY_LOG_ERROR, "%s could not run: %s", which, w->err_msg);
        return -1;
    }
    json_int_t code = json_integer_value(json_object_get(res, "exit_code"));
    const char *output = json_string_value(json_object_get(res, "output"));
    size_t len = output ? strlen(output) : 0;
    while (len > 0 && (output[len - 1] == '\n' || output[len - 1] == '\r'))
        len--;
    size_t skip = len > HOOK_OUTPUT_IN_TRACE ? len - HOOK_OUTPUT_IN_TRACE : 0;
    svc_log(&w->pub, code == 0 ? FERRY_LOG_INFO : FERRY_LOG_ERROR,
            "%s `%s` exited %lld in %lld ms%s%s%.*s", which, command, (long long)code,
            (long long)json_integer_value(json_object_get(res, "duration_ms")),
            len ? ", output:\n" : "", skip ? "..." : "", (int)(len - skip),
            output ? output + skip : "");
    json_decref(res);
    if (code == 0)
        return 0;
    svc_set_error(&w->pub, which[1] == 'r' ? "pre_hook_failed" : "post_hook_failed",
                  "%s `%s` exited %lld", which, command, (long long)code);
    return -1;
}

/* Runs the function between the item's hooks; see run_hook(). A failing pre_hook fails the
 * attempt before the function runs; a failing post_hook fails an attempt that succeeded. */
static ferry_result run_with_hooks(worker_ctx *w, const ferry_function *fn, const json_t *params,
                                   json_t **result)
{
    const char *pre = w->run.spec.pre_hook, *post = w->run.spec.post_hook;
    if (w->run.spec.depth > 0)
        pre = post = NULL; /* a nested call: the hooks belong to the item's own attempt */
    if (pre && run_hook(w, "pre_hook", pre, NULL) != 0)
        return w->err_code && strcmp(w->err_code, "exec_failed") == 0 ? FERRY_RETRY : FERRY_FAIL;
    ferry_result code = descriptor_run(fn)(&w->pub, params, result);
    if (post) {
        /* The function's own error stays the attempt's error when both failed. */
        char *code_keep = w->err_code ? xstrdup(w->err_code) : NULL;
        char *msg_keep = w->err_msg ? xstrdup(w->err_msg) : NULL;
        int hook_failed = run_hook(w, "post_hook", post, worker_code_name(code)) != 0;
        if (hook_failed && code == FERRY_OK) {
            json_decref(*result);
            *result = NULL;
            code = FERRY_FAIL;
        } else {
            free(w->err_code);
            free(w->err_msg);
            w->err_code = code_keep;
            w->err_msg = msg_keep;
            code_keep = msg_keep = NULL;
        }
        free(code_keep);
        free(msg_keep);
    }
    return code;
}

/* --- the loop -------------------------------------------------------------------------- */

/*
 * Sends an attempt's done; one whose result is too large to travel fails the attempt
 * instead. Returns proto_send_done()'s.
 */
static int send_done(int sock, const struct proto_done *done)
{
    int sent = proto_send_done(sock, done);
    if (sent == -2) {
        struct proto_done big = {.id = done->id,
                                 .kind = OUTCOME_FAIL,
                                 .code = "result_too_large",
                                 .message = "the function's result is larger than the "
                                            "64 MiB a message may carry"};
        sent = proto_send_done(sock, &big);
    }
    return sent;
}

/* Runs the attempt of queued run q (borrowed) and sends its "done"; returns send_done()'s. */
static int run_one(int sock, const queued_run *q)
{
    worker_ctx w = {.pub = {.struct_size = sizeof(struct ferry_ctx), .host = &host_table},
                    .sock = sock,
                    .run = q->run};
    char reason[600] = "";
    int changed = 0;
    /* A message read the general way is parsed again, for the reason when it is bad. */
    int parsed = q->msg ? proto_parse_run(q->msg, &w.run, reason, sizeof(reason)) == 0 : 1;
    /* Sent ahead, it may start later than the host wrote it: its time counts from now. */
    if (parsed && w.run.spec.timeout_ms > 0)
        w.run.deadline_ms = now_ms() + w.run.spec.timeout_ms;
    const struct attempt_spec *spec = &w.run.spec;
    json_t *params = spec->params ? (json_t *)spec->params : NULL, *empty = NULL;
    if (params == NULL)
        params = empty = json_object();
    int64_t start = mono_us();
    ferry_result code = FERRY_FAIL;
    int unavailable = 0; /* the worker's own outcome, which no function can return */
    json_t *result = NULL;
    if (cancel_flag && cancel_fd >= 0) {
        /* The last attempt's cancel (read only then: no read in vain on the start's path). A
         * cancel that lands after this leaves it readable: the watcher then finds no cancel
         * and looks at the flag by its tick instead. */
        uint64_t seen;
        ssize_t r = read(cancel_fd, &seen, sizeof(seen));
        (void)r;
    }
    cancel_flag = 0;
    cancel_id = (sig_atomic_t)w.run.id;
    running_sock = sock;
    running_id = w.run.id;
    running_loading = 1;
    /* A worker ferry-priv started runs its one function, from its policy's plugins only. */
    if (parsed && priv_worker_allows(spec, reason, sizeof(reason)) != 0)
        parsed = 0;
    const ferry_plugin *plugin =
        parsed ? load(spec->plugin, spec->config, reason, sizeof(reason), &changed) : NULL;
    running_loading = 0;
    if (changed) {
        /* Nothing of the attempt ran: the host runs it on a fresh worker instead. */
        stale = 1;
        running_sock = -1;
        cancel_id = 0;
        json_decref(empty);
        struct proto_done back = {.id = w.run.id, .kind = OUTCOME_UNAVAILABLE,
                                  .code = "plugin_changed", .message = reason,
                                  .retire = 1, .skipped = 1};
        return proto_send_done(sock, &back);
    }
    const ferry_function *fn = plugin ? descriptor_find(plugin, spec->function) : NULL;
    if (plugin == NULL) {
        unavailable = 1;
        svc_set_error(&w.pub, "unavailable", "%s",
                      reason[0] ? reason : "bad run message");
    } else if (fn == NULL) {
        unavailable = 1;
        svc_set_error(&w.pub, "unavailable", "plugin %s has no function %s", spec->plugin,
                      spec->function);
    } else {
        code = run_with_hooks(&w, fn, params, &result);
        int streams = exec_stream_end_all();
        if (streams > 0)
            svc_log(&w.pub, FERRY_LOG_WARN,
                    "stopped %d command%s started by exec_start and never waited for", streams,
                    streams == 1 ? "" : "s");
        int leftovers = reap_worker_sweep();
        if (leftovers > 0)
            svc_log(&w.pub, FERRY_LOG_WARN,
                    "killed %d process%s the attempt left running (nothing an attempt starts "
                    "outlives it)", leftovers, leftovers == 1 ? "" : "es");
        if ((int)code < FERRY_OK || code > FERRY_INVALID) {
            svc_set_error(&w.pub, "bad_result", "%s returned %d, which is not a ferry_result",
                          spec->function, (int)code);
            code = FERRY_FAIL;
        }
        if (code != FERRY_OK && w.err_msg == NULL)
            svc_set_error(&w.pub, "failed", "%s returned %s without setting an error",
                          spec->function, worker_code_name(code));
    }
    running_sock = -1;
    cancel_id = 0;
    json_decref(empty);
    /* The host reads this attempt's stderr to the end before it hears of the end (and
     * before the next attempt can write any), so every line lands in its own trace. */
    int unread = wait_stderr_read();
    struct proto_done done = {.id = w.run.id,
                              .kind = unavailable ? OUTCOME_UNAVAILABLE
                                                  : (enum outcome_kind)proto_kind_of(
                                                        worker_code_name(code)),
                              .result = result,
                              .code = w.err_msg ? w.err_code : NULL,
                              .message = w.err_msg,
                              .duration_ms = (mono_us() - start) / 1000,
                              .stderr_drained = unread == 0};
    int sent = send_done(sock, &done);
    json_decref(result);
    json_decref(w.machine);
    free(w.err_code);
    free(w.err_msg);
    return sent;
}

/* The worker's socket to the host, for watch_host (-1 until known). */
static volatile int guard_sock = -1;

static void *watch_host(void *arg)
{
    int pidfd = (int)(intptr_t)arg;
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        ;
    /* Nothing more reaches the host: an attempt whose commands are being killed under it
     * must not be reported as done (the host is gone, or it is ferry-priv's keeper). */
    if (guard_sock >= 0)
        shutdown(guard_sock, SHUT_RDWR);
    reap_worker_doom(); /* every descendant, whatever group or session, then the worker */
}

/*
 * A worker never outlives its host: a lost host's items are recovered by another host and
 * must not still be running here. A thread watches the host through a pidfd and, when the
 * host is gone, kills everything the attempt started (reap.h), then the worker; a host gone
 * before the guard starts (its parent is another) ends the worker here. The
 * PR_SET_PDEATHSIG ferry-priv's keeper sets before exec is cleared once the guard runs: it
 * would kill the worker at once, before the guard could end its descendants, which PID 1
 * then inherits.
 */
static void guard_host(pid_t host)
{
    if (host <= 0)
        return;
    int pidfd = (int)syscall(SYS_pidfd_open, host, 0);
    if (pidfd < 0 || getppid() != host)
        _exit(0);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, watch_host, (void *)(intptr_t)pidfd) != 0)
        _exit(0);
    pthread_attr_destroy(&attr);
    prctl(PR_SET_PDEATHSIG, 0);
}

/*
 * A function that calls exit() ends the worker through here (the worker itself only ever
 * uses _exit()): the host is told the status over the socket, so that it can say what
 * happened instead of guessing from the exit status, which a plugin could fake.
 */
static void report_exit(int status, void *arg)
{
    (void)arg;
    if (running_sock < 0 || getpid() != worker_pid)
        return;
    struct proto_exit m = {.id = running_id, .status = status, .loading = running_loading};
    send_msg(running_sock, proto_build_exit(&m));
}

void worker_process_main(int argc, char **argv)
{
    pid_t host = argc > 2 ? (pid_t)atoi(argv[2]) : 0;
    guard_host(host);
    worker_opts wo = {.memory_limit_mb = argc > 3 ? atoi(argv[3]) : 0};
    /* The socket moves off the well-known fd 3, out of reach of a plugin that closes or
     * reuses low descriptors, and is closed on exec so commands never inherit it. */
    int sock = fcntl(WORKER_FD, F_DUPFD_CLOEXEC, 64);
    if (sock < 0)
        _exit(0);
    close(WORKER_FD);
    guard_sock = sock;
    stderr_copy = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 64);
    worker_main(sock, &wo);
}

/* The worker ends normally: every plugin that was initialised gets its fini() (plugin.h). */
static void __attribute__((noreturn)) unload_and_exit(void)
{
    for (size_t i = 0; i < n_loaded; i++)
        if (loaded[i].inited)
            descriptor_fini(loaded[i].plugin);
    _exit(0);
}

void worker_main(int sock, const worker_opts *opts)
{
    worker_pid = getpid();
    on_exit(report_exit, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_IGN); /* Ctrl-C in a terminal reaches the host, which decides */
    reap_worker_init(); /* also SIGTERM's handler */
    signal(SIGHUP, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    cancel_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (cancel_fd >= 0 && cancel_fd <= 2) { /* exec_hooks' 0 means none: kept off 0-2 */
        int high = fcntl(cancel_fd, F_DUPFD_CLOEXEC, 3);
        close(cancel_fd);
        cancel_fd = high;
    }
    struct sigaction sa = {.sa_sigaction = on_sigusr1, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
#if defined(__SANITIZE_ADDRESS__)
    (void)opts; /* ASan reserves terabytes of address space: RLIMIT_AS would kill it */
#else
    if (opts && opts->memory_limit_mb > 0) {
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t)opts->memory_limit_mb * 1024 * 1024;
        setrlimit(RLIMIT_AS, &rl);
    }
#endif
    for (;;) {
        /* Everything the host wrote so far is read before each start: a skip sent for a
         * queued attempt is applied before that attempt could begin. */
        read_input(sock, 1);
        queued_run q;
        pop_queued(&q);
        int sent;
        if (stale) { /* handed back unstarted, like the attempt that found the change */
            struct proto_done back = {.id = q.ok ? q.run.id : 0,
                                      .kind = OUTCOME_UNAVAILABLE,
                                      .code = "plugin_changed",
                                      .retire = 1,
                                      .skipped = 1};
            sent = proto_send_done(sock, &back);
        } else {
            sent = run_one(sock, &q);
        }
        drop_queued(&q);
        if (sent != 0)
            _exit(0);
    }
}
