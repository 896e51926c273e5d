/*
 * The worker process: loads plugins on demand and runs one attempt at a time; implements the
 * host services table (struct ferry_host) that plugins call. See worker.h for the protocol.
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
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "descriptor.h"
#include "exec.h"
#include "httpc.h"
#include "proto.h"
#include "reap.h"
#include "util.h"

/* The private attempt context behind the public struct ferry_ctx head. */
typedef struct worker_ctx {
    struct ferry_ctx pub; /* must stay first */
    int sock;
    json_int_t id;
    int64_t deadline_ms;
    json_t *job;     /* the run message (borrowed for the attempt) */
    const char *task_id; /* "task" of the run message, "" when absent (ABI 1.1) */
    int attempt;         /* "attempt" of the run message, 0 when absent (ABI 1.1) */
    char *err_code;  /* set_error */
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
/* The attempt running now, for the exit report (report_exit): its socket (-1: none) and id. */
static int running_sock = -1;
static json_int_t running_id;
static int running_loading; /* 1 while the plugin is loaded (its init() runs), 0 in run() */
static pid_t worker_pid; /* a process the plugin forked shares running_sock: it stays quiet */

static void on_sigusr1(int sig)
{
    (void)sig;
    cancel_flag = 1;
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
    json_t *m = json_pack("{s:s,s:I,s:s,s:o}", "op", "log", "id", priv(ctx)->id, "level",
                          level_names[level], "text", proto_text(text, PROTO_LOG_MAX));
    proto_send(priv(ctx)->sock, m);
    json_decref(m);
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
    json_t *m = json_pack("{s:s,s:I,s:i,s:o?}", "op", "progress", "id", priv(ctx)->id,
                          "percent", percent, "message",
                          message ? proto_text(message, PROTO_LOG_MAX) : NULL);
    proto_send(priv(ctx)->sock, m);
    json_decref(m);
}

static int64_t svc_deadline(ferry_ctx *ctx)
{
    return ctx ? priv(ctx)->deadline_ms : 0;
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

/* Sends a request to the host and waits for its reply. Returns the reply (new reference). */
static json_t *request(worker_ctx *w, json_t *msg)
{
    json_object_set_new(msg, "id", json_integer(w->id));
    if (proto_send(w->sock, msg) != 0) {
        json_decref(msg);
        return NULL;
    }
    json_decref(msg);
    json_t *reply = proto_recv(w->sock);
    if (reply == NULL)
        _exit(0); /* the host is gone: nothing left to report to */
    return reply;
}

static ferry_result code_from_name(const char *name)
{
    if (name && strcmp(name, "OK") == 0)
        return FERRY_OK;
    if (name && strcmp(name, "RETRY") == 0)
        return FERRY_RETRY;
    if (name && strcmp(name, "INVALID") == 0)
        return FERRY_INVALID;
    return FERRY_FAIL;
}

static ferry_result svc_call(ferry_ctx *ctx, const char *function, const json_t *params,
                             json_t **result)
{
    if (result)
        *result = NULL;
    if (ctx == NULL || function == NULL)
        return FERRY_INVALID;
    json_t *reply = request(priv(ctx), json_pack("{s:s,s:s,s:O}", "op", "call", "function",
                                                 function, "params",
                                                 params ? params : json_object()));
    ferry_result code = code_from_name(json_string_value(json_object_get(reply, "code")));
    if (result && json_object_get(reply, "result") && !json_is_null(json_object_get(reply, "result")))
        *result = json_incref(json_object_get(reply, "result"));
    const json_t *error = json_object_get(reply, "error");
    if (code != FERRY_OK && json_is_object(error))
        svc_set_error(ctx, json_string_value(json_object_get(error, "code")), "%s: %s", function,
                      json_string_value(json_object_get(error, "message")));
    json_decref(reply);
    return code;
}

static json_t *svc_machine(ferry_ctx *ctx)
{
    if (ctx == NULL)
        return NULL;
    json_t *m = json_object_get(priv(ctx)->job, "machine");
    if (!json_is_object(m))
        return NULL;
    /* Members starting with '_' are the host's to the exec service (the SSH key, the
     * item's hooks): never handed to a plugin. */
    json_t *copy = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(m, key, v)
    {
        if (key[0] != '_')
            json_object_set_new(copy, key, json_deep_copy(v));
    }
    return copy;
}

static json_t *svc_storage(ferry_ctx *ctx, const char *name)
{
    if (ctx == NULL || name == NULL)
        return NULL;
    json_t *reply = request(priv(ctx), json_pack("{s:s,s:s}", "op", "storage", "name", name));
    json_t *vault = json_object_get(reply, "vault");
    json_t *out = json_is_object(vault) ? json_incref(vault) : NULL;
    if (out == NULL)
        svc_set_error(ctx, "not_found", "%s",
                      json_string_value(json_object_get(reply, "error"))
                          ? json_string_value(json_object_get(reply, "error"))
                          : "no such storage");
    json_decref(reply);
    return out;
}

static json_t *svc_config(ferry_ctx *ctx)
{
    json_t *c = ctx ? json_object_get(priv(ctx)->job, "config") : NULL;
    return json_is_object(c) ? json_deep_copy(c) : json_object();
}

static void report_pgroup(void *ud, pid_t pgid)
{
    worker_ctx *w = ud;
    json_t *m = json_pack("{s:s,s:I,s:i}", "op", "pgroup", "id", w->id, "pgid", (int)pgid);
    proto_send(w->sock, m);
    json_decref(m);
}

static json_t *svc_exec(ferry_ctx *ctx, const char *command, const json_t *options)
{
    if (ctx == NULL || command == NULL)
        return NULL;
    worker_ctx *w = priv(ctx);
    char err[512] = "";
    exec_hooks hooks = {.cancelled = (int (*)(void *))svc_cancelled,
                        .cancelled_arg = ctx,
                        .on_pgroup = report_pgroup,
                        .on_pgroup_arg = w,
                        .deadline_ms = w->deadline_ms};
    json_t *machine = json_object_get(w->job, "machine");
    json_t *res = exec_on_machine(machine, command, options, &hooks, err, sizeof(err));
    if (res == NULL)
        svc_set_error(ctx, "exec_failed", "%s", err);
    return res;
}

static json_t *svc_http(ferry_ctx *ctx, const json_t *req)
{
    if (ctx == NULL || req == NULL)
        return NULL;
    char err[512] = "";
    json_t *res = httpc_request(req, priv(ctx)->deadline_ms, err, sizeof(err));
    if (res == NULL)
        svc_set_error(ctx, "http_failed", "%s", err);
    return res;
}

static const char *svc_task_id(ferry_ctx *ctx)
{
    return ctx ? priv(ctx)->task_id : "";
}

static int svc_attempt(ferry_ctx *ctx)
{
    return ctx ? priv(ctx)->attempt : 0;
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
 * for the post_hook, FERRY_OUTCOME; when the parameters name a repository that exists on the
 * machine (DATASTORE/repositories/NAME, as the repo plugin keeps them), it runs there with
 * that directory first on PATH, so that the seed's "stop_services.sh" is found there. Returns 0 when the hook exited 0,
 * else -1 with the attempt's error set (exec_failed when it could not run at all).
 */
static int run_hook(worker_ctx *w, const char *which, const char *command, const json_t *params,
                    const char *outcome)
{
    json_t *machine = json_object_get(w->job, "machine");
    const char *datastore = json_string_value(json_object_get(machine, "datastore"));
    const char *repository = json_string_value(json_object_get(params, "repository"));
    json_t *env = json_pack("{s:s,s:s}", "FERRY_FUNCTION",
                            json_string_value(json_object_get(w->job, "function")), "FERRY_HOOK",
                            which);
    if (outcome)
        json_object_set_new(env, "FERRY_OUTCOME", json_string(outcome));
    if (datastore && repository && strstr(repository, "..") == NULL)
        json_object_set_new(env, "FERRY_REPOSITORY_DIR",
                            json_sprintf("%s/repositories/%s", datastore, repository));
    json_t *options = json_pack("{s:o}", "env", env);
    char *script = xasprintf("if [ -n \"${FERRY_REPOSITORY_DIR:-}\" ] && [ -d "
                             "\"$FERRY_REPOSITORY_DIR\" ]; then cd \"$FERRY_REPOSITORY_DIR\" "
                             "&& PATH=\"$PWD:$PATH\"; fi\n%s",
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
    const json_t *hooks = json_object_get(json_object_get(w->job, "machine"), "_hooks");
    const char *pre = json_string_value(json_object_get(hooks, "pre_hook"));
    const char *post = json_string_value(json_object_get(hooks, "post_hook"));
    if (json_integer_value(json_object_get(w->job, "depth")) > 0)
        pre = post = NULL; /* a nested call: the hooks belong to the item's own attempt */
    if (pre && run_hook(w, "pre_hook", pre, params, NULL) != 0)
        return w->err_code && strcmp(w->err_code, "exec_failed") == 0 ? FERRY_RETRY : FERRY_FAIL;
    ferry_result code = descriptor_run(fn)(&w->pub, params, result);
    if (post) {
        /* The function's own error stays the attempt's error when both failed. */
        char *code_keep = w->err_code ? xstrdup(w->err_code) : NULL;
        char *msg_keep = w->err_msg ? xstrdup(w->err_msg) : NULL;
        int hook_failed = run_hook(w, "post_hook", post, params, worker_code_name(code)) != 0;
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

static json_t *run_one(int sock, json_t *job)
{
    worker_ctx w = {.pub = {.struct_size = sizeof(struct ferry_ctx), .host = &host_table},
                    .sock = sock,
                    .id = json_integer_value(json_object_get(job, "id")),
                    .deadline_ms = json_integer_value(json_object_get(job, "deadline")),
                    .job = job,
                    .task_id = json_string_value(json_object_get(job, "task")),
                    .attempt = (int)json_integer_value(json_object_get(job, "attempt"))};
    if (w.task_id == NULL)
        w.task_id = "";
    char reason[600] = "";
    int changed = 0;
    const char *path = json_string_value(json_object_get(job, "plugin"));
    const char *fname = json_string_value(json_object_get(job, "function"));
    json_t *params = json_object_get(job, "params");
    json_t *empty = NULL;
    if (!json_is_object(params))
        params = empty = json_object();
    int64_t start = mono_us();
    ferry_result code = FERRY_FAIL;
    const char *code_name = NULL; /* the worker's own outcome, which no function can return */
    json_t *result = NULL;
    running_sock = sock;
    running_id = w.id;
    running_loading = 1;
    const ferry_plugin *plugin =
        path && fname
            ? load(path, json_object_get(job, "config"), reason, sizeof(reason), &changed)
            : NULL;
    running_loading = 0;
    const ferry_function *fn = plugin ? descriptor_find(plugin, fname) : NULL;
    if (plugin == NULL) {
        code_name = "UNAVAILABLE";
        svc_set_error(&w.pub, changed ? "plugin_changed" : "unavailable", "%s",
                      reason[0] ? reason : "bad run message");
    } else if (fn == NULL) {
        code_name = "UNAVAILABLE";
        svc_set_error(&w.pub, "unavailable", "plugin %s has no function %s", path, fname);
    } else {
        cancel_flag = 0;
        code = run_with_hooks(&w, fn, params, &result);
        int leftovers = reap_worker_sweep();
        if (leftovers > 0)
            svc_log(&w.pub, FERRY_LOG_WARN,
                    "killed %d process%s the attempt left running (nothing an attempt starts "
                    "outlives it)", leftovers, leftovers == 1 ? "" : "es");
        if ((int)code < FERRY_OK || code > FERRY_INVALID) {
            svc_set_error(&w.pub, "bad_result", "%s returned %d, which is not a ferry_result",
                          fname, (int)code);
            code = FERRY_FAIL;
        }
        if (code != FERRY_OK && w.err_msg == NULL)
            svc_set_error(&w.pub, "failed", "%s returned %s without setting an error", fname,
                          worker_code_name(code));
    }
    running_sock = -1;
    json_decref(empty);
    json_t *done = json_pack("{s:s,s:I,s:s,s:I}", "op", "done", "id", w.id, "code",
                             code_name ? code_name : worker_code_name(code), "duration_ms",
                             (json_int_t)((mono_us() - start) / 1000));
    json_object_set_new(done, "result", result ? result : json_null());
    if (changed)
        json_object_set_new(done, "retire", json_true());
    if (w.err_msg)
        json_object_set_new(done, "error", json_pack("{s:s,s:s}", "code", w.err_code, "message",
                                                     w.err_msg));
    else
        json_object_set_new(done, "error", json_null());
    free(w.err_code);
    free(w.err_msg);
    return done;
}

static void *watch_host(void *arg)
{
    int pidfd = (int)(intptr_t)arg;
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        ;
    reap_worker_doom(); /* every descendant, whatever group or session, then the worker */
}

/*
 * A worker never outlives its host: a lost host's items are recovered by another host and
 * must not still be running here. A thread watches the host through a pidfd and, when the
 * host is gone, kills everything the attempt started (reap.h), then the worker. The
 * PR_SET_PDEATHSIG the runner set before exec is cleared once the guard runs: it would kill
 * the worker at once, before the guard could end its descendants, which PID 1 then inherits.
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
    json_t *m = json_pack("{s:s,s:I,s:i,s:b}", "op", "exit", "id", running_id, "status", status,
                          "loading", running_loading);
    proto_send(running_sock, m);
    json_decref(m);
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
    struct sigaction sa = {.sa_handler = on_sigusr1};
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
        json_t *job = proto_recv(sock);
        if (job == NULL)
            unload_and_exit(); /* the host closed our socket: time to go */
        const char *op = json_string_value(json_object_get(job, "op"));
        if (op && strcmp(op, "quit") == 0)
            unload_and_exit();
        if (op == NULL || strcmp(op, "run") != 0) {
            json_decref(job);
            continue;
        }
        json_t *done = run_one(sock, job);
        json_decref(job);
        int sent = proto_send(sock, done);
        json_decref(done);
        if (sent != 0)
            _exit(0);
    }
}
