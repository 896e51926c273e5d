/*
 * ferry plugin SDK, ABI 1.2.
 *
 * This header is the whole manual for writing a ferry queue function. A plugin is a shared
 * object (.so) dropped into the host's plugin directory. It exports exactly one symbol,
 * ferry_plugin_entry, which returns a static descriptor of the plugin and its functions. The
 * host calls back into the plugin only through that descriptor, and the plugin reaches the
 * host only through the services table (struct ferry_host) it is handed; a plugin never links
 * against host symbols.
 *
 * Build with -fPIC -fvisibility=hidden and link against jansson (sources before libraries,
 * or the linker drops jansson before it knows the plugin needs it):
 *
 *     cc -fPIC -fvisibility=hidden -shared $(pkg-config --cflags ferry-plugin) \
 *        -o myplugin.so myplugin.c $(pkg-config --libs ferry-plugin)
 *
 * The header is C99 and C++ clean (-Wpedantic): a plugin may be written in either.
 *
 * Compatibility rules (the host enforces them when it loads a plugin):
 *   - magic must be FERRY_PLUGIN_MAGIC;
 *   - abi_major must equal the host's, and abi_minor must be <= the host's;
 *   - unknown flag bits are refused;
 *   - every struct starts (or, for arrays, is described) with its size as compiled into the
 *     plugin, and the host reads only that many bytes. Structs grow at the end only, so a
 *     plugin built against an older minor keeps loading.
 *
 * Where plugin code runs: the host never runs plugin code in its own process. It reads
 * descriptors and runs init() in short-lived probe processes, and runs functions in worker
 * processes, each in its own process group. init() may therefore run several times, in
 * several processes: keep it cheap, idempotent and free of side effects outside the process.
 * A worker runs many attempts one after another; a function must not leave state behind that
 * changes the next attempt (open files, changed cwd, signal handlers, threads).
 *
 * JSON ownership (jansson): every json_t a plugin receives as a parameter is borrowed and
 * read-only; every json_t a plugin stores into *result is a new reference that the host
 * takes; every json_t a host service returns is a new reference that the plugin must
 * json_decref.
 */
#ifndef FERRY_PLUGIN_H
#define FERRY_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* "FERRYPLG" in ASCII. */
#define FERRY_PLUGIN_MAGIC UINT64_C(0x4645525259504C47)
#define FERRY_ABI_MAJOR    1
#define FERRY_ABI_MINOR    2 /* 1.1 added ferry_host.task_id and ferry_host.attempt, and
                                * later ferry_plugin.hook_dir (read by struct_size); 1.2 added
                                * ferry_host.exec_start and ferry_host.exec_wait */

/* The name of the one symbol a plugin exports; FERRY_PLUGIN() below defines it. */
#define FERRY_PLUGIN_ENTRY_SYMBOL "ferry_plugin_entry"

/*
 * What a function's run() returns. The host owns what happens next:
 *   FERRY_OK       the attempt succeeded; *result (if set) becomes the job's result.
 *   FERRY_RETRY    a transient failure: the host retries under the job's retry policy.
 *   FERRY_FAIL     a permanent failure of this attempt: no retry, the fallback (if any) runs.
 *   FERRY_INVALID  the parameters are wrong: never retried, no fallback.
 * Plugins never sleep-and-retry on their own. Set a reason with host->set_error before
 * returning anything but FERRY_OK; the host invents a generic one otherwise.
 *
 * The host adds outcomes of its own that a function never returns: TIMEOUT, CRASHED,
 * CANCELLED and UNAVAILABLE (the plugin could not be loaded).
 */
typedef enum ferry_result {
    FERRY_OK = 0,
    FERRY_RETRY = 1,
    FERRY_FAIL = 2,
    FERRY_INVALID = 3,
} ferry_result;

/* The JSON type a parameter must have. The host checks it before run() is called. */
typedef enum ferry_param_type {
    FERRY_PARAM_STRING = 1,
    FERRY_PARAM_INTEGER = 2, /* a JSON integer */
    FERRY_PARAM_NUMBER = 3,  /* a JSON integer or real */
    FERRY_PARAM_BOOLEAN = 4,
    FERRY_PARAM_OBJECT = 5,
    FERRY_PARAM_ARRAY = 6,
    FERRY_PARAM_ANY = 7,        /* any JSON value */
    FERRY_PARAM_STRING_LIST = 8 /* a string, or an array of strings */
} ferry_param_type;

/* Parameter flags. */
#define FERRY_PARAM_REQUIRED (1u << 0) /* creating an item without it is refused */
#define FERRY_PARAM_SECRET   (1u << 1) /* redacted in every listing, trace, log and error */
#define FERRY_PARAM_KNOWN_FLAGS (FERRY_PARAM_REQUIRED | FERRY_PARAM_SECRET)

/*
 * Reserved parameter names: the queue item vault keys the host reads and acts on itself
 * and never passes to a function. A plugin that declares a parameter with one of these
 * names is refused at load ("parameter 'timeout' of function f is a vault key the host
 * owns"): the host would take the value for itself and the function would never see it.
 *
 *   function     the function to run
 *   timeout      seconds before the attempt is stopped
 *   max_retries  retries of a FERRY_RETRY outcome
 *   retry_delay  seconds before the first retry
 *   on_failure   {"notify": ..., "fallback_function": ..., "webhook_secret": ...}
 *   on_success   {"notify": ..., "webhook_secret": ...}
 *   pre_hook     shell command run on the machine before the function
 *   post_hook    shell command run on the machine after it
 *   priority     the item's priority, 1-5 (set by the CLI and by a schedule): reserved
 *   max_parallel    ABI 1.2: how many members of a machine group run at once (fan-out)
 *   stop_on_failure ABI 1.2: cancel a machine group's members not yet started after a failure
 *
 * "description" and "tags" are host keys too (the host checks their type), but they are
 * passed through, so a function may declare them to read them. FERRY_RESERVED_PARAMS
 * expands to the list as string literals, for a plugin's own checks.
 */
#define FERRY_RESERVED_PARAMS                                                                      \
    "function", "timeout", "max_retries", "retry_delay", "on_failure", "on_success", "pre_hook",   \
        "post_hook", "priority", "max_parallel", "stop_on_failure"

/*
 * One row of a function's parameter table. Tables are arrays ended by a row whose name is
 * NULL (FERRY_PARAM_END); the host walks them with the stride given in ferry_function.param_size,
 * so new members can be appended in later minors.
 */
typedef struct ferry_param {
    const char *name;        /* the vault key, e.g. "repository"; not FERRY_RESERVED_PARAMS */
    ferry_param_type type;   /* the JSON type required */
    uint32_t flags;          /* FERRY_PARAM_* */
    const char *default_json; /* default as JSON text ("3", "\"fast\"", "true"), or NULL */
    const char *description; /* one sentence for `ferry functions` and docs/functions.md */
} ferry_param;

/* The row that ends a parameter table (C and C++ alike). */
#define FERRY_PARAM_END                                                                            \
    {                                                                                              \
        NULL, (ferry_param_type)0, 0, NULL, NULL                                                   \
    }

/* Function flags. */
#define FERRY_FN_IDEMPOTENT    (1u << 0) /* safe to run again after a host was lost mid-run */
/*
 * Deprecated in ABI 1.1 and without effect: every queue item runs for a machine (the exec
 * and machine services always have one), so there is nothing for the host to enforce. The
 * bit stays defined and accepted so that plugins which set it keep loading; listings no
 * longer show it. New code should not set it.
 */
#define FERRY_FN_NEEDS_MACHINE (1u << 1)
/*
 * The function runs commands its item gives (a script, a test command, a check command):
 * creating such an item may need a higher role than other items (people.command_role,
 * docs/people.md). Hooks in a vault count the same without the flag. Added after ABI 1.2
 * was released: a host older than it refuses a function that sets it.
 */
#define FERRY_FN_RUNS_COMMANDS (1u << 2)
#define FERRY_FN_KNOWN_FLAGS   (FERRY_FN_IDEMPOTENT | FERRY_FN_NEEDS_MACHINE | FERRY_FN_RUNS_COMMANDS)

typedef struct ferry_ctx ferry_ctx;
typedef struct ferry_host ferry_host;
/* A command started by ferry_host.exec_start (ABI 1.2); opaque, never dereferenced. */
typedef struct ferry_exec_stream ferry_exec_stream;

/*
 * run() executes one attempt of the function.
 *   ctx     the attempt: pass it to every host service. Valid only during this call.
 *   params  the validated parameters (an object): every declared parameter that was given or
 *           has a default is present with the declared type; undeclared keys are passed
 *           through untouched. Borrowed, read-only.
 *   result  where to store the attempt's result (an object, a new reference the host takes),
 *           or leave NULL for none.
 */
typedef ferry_result (*ferry_run_fn)(ferry_ctx *ctx, const json_t *params, json_t **result);

typedef struct ferry_function {
    uint32_t struct_size;      /* sizeof(ferry_function) as compiled: FERRY_FUNCTION_INIT sets it */
    uint32_t flags;            /* FERRY_FN_* */
    const char *name;          /* [a-z][a-z0-9_]*, unique across every loaded plugin */
    const char *summary;       /* one line */
    const char *description;   /* a paragraph, or NULL */
    const ferry_param *params; /* the parameter table, ended by a row with name NULL; or NULL */
    uint32_t param_size;       /* sizeof(ferry_param) as compiled: FERRY_PARAMS() sets it */
    uint32_t default_timeout;  /* seconds; 0 means the host's configured default */
    ferry_run_fn run;          /* required */
} ferry_function;

/* Plugin flags: none are defined in ABI 1.0; a set bit is refused. */
#define FERRY_PLUGIN_KNOWN_FLAGS 0u

typedef struct ferry_plugin {
    uint64_t magic;     /* FERRY_PLUGIN_MAGIC */
    uint16_t abi_major; /* FERRY_ABI_MAJOR as compiled */
    uint16_t abi_minor; /* FERRY_ABI_MINOR as compiled */
    uint32_t struct_size; /* sizeof(ferry_plugin) as compiled */
    uint32_t flags;       /* FERRY_PLUGIN_*; none defined yet */
    const char *name;     /* [a-z][a-z0-9_-]*; also names its section in the config */
    const char *version;  /* free text, e.g. "1.2.0" */
    const char *summary;  /* one line */
    const ferry_function *const *functions; /* NULL-terminated list; at least one */
    /*
     * Optional. Called once per process before any run(). config is the plugin's own
     * section of the host configuration converted to a JSON object ({} when absent);
     * borrowed, valid only during the call: copy what you keep. Return 0 on success; on
     * failure return -1 and write a one-line reason into err (errlen bytes, always > 0). A
     * plugin whose init fails is refused and its functions are unavailable.
     */
    int (*init)(const ferry_host *host, const json_t *config, char *err, size_t errlen);
    /*
     * Optional. Called once in every process where init() succeeded, when that process
     * ends normally: right after init() in a probe, and when a worker is retired (recycled
     * after its job limit or a plugin change, or at host shutdown). Not called when a worker
     * is killed (a timeout or cancel past the grace period, a crash). Keep it short: a
     * worker that has not exited a second after it was asked to is killed.
     */
    void (*fini)(void);
    /*
     * Optional (added within ABI 1.1, read only when struct_size covers it; a host that
     * predates it ignores it). Where on the machine the pre_hook and post_hook of a queue item
     * run, whatever its function, when the directory exists there: a template in which
     * {datastore} is the machine's datastore and any other {name} the item's string
     * parameter name, e.g. "{datastore}/repositories/{repository}". It applies to an item
     * only when every placeholder has a value (non-empty, without ".."); the first plugin
     * whose template applies wins. The hook runs in that directory with it first on PATH.
     */
    const char *hook_dir;
} ferry_plugin;

/* Log levels for ferry_host.log. */
typedef enum ferry_log_level {
    FERRY_LOG_DEBUG = 0,
    FERRY_LOG_INFO = 1,
    FERRY_LOG_WARN = 2,
    FERRY_LOG_ERROR = 3,
} ferry_log_level;

/*
 * The host's services. The table is append-only: a member added in minor N is present when
 * host->struct_size covers it; test with FERRY_HOST_HAS(host, member) before calling a
 * member newer than the minor you require. Every service takes the attempt's ctx and may be
 * called only from the thread that called run().
 *
 * A service that the host cannot provide (not configured, or not in this build) answers
 * with its failure value and sets the attempt's error to code "unavailable" with a message
 * that says why; a function can return FERRY_FAIL straight after. The outcome is then FAIL,
 * never retried: a missing service does not come back by trying again. Error codes never
 * change an outcome; only the returned ferry_result does (return FERRY_RETRY for a failure
 * that may pass). The host's own UNAVAILABLE outcome means the plugin could not be loaded.
 */
struct ferry_host {
    uint32_t struct_size; /* sizeof(struct ferry_host) in the host */
    uint16_t abi_major;   /* the host's FERRY_ABI_MAJOR */
    uint16_t abi_minor;   /* the host's FERRY_ABI_MINOR */

    /*
     * Appends a line to the job's trace (printf format). The text is truncated at 4 KiB.
     * Values of the job's SECRET parameters are masked before the line is stored.
     */
    void (*log)(ferry_ctx *ctx, ferry_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* Reports progress: percent 0-100 (-1 for unknown) and a short message (may be NULL). */
    void (*progress)(ferry_ctx *ctx, int percent, const char *message);

    /*
     * Returns non-zero once the job has been cancelled or has passed its deadline. Long
     * loops should test it and return FERRY_FAIL promptly; the host signals the worker
     * (SIGTERM, then SIGKILL after a grace period) if the function does not return.
     */
    int (*cancelled)(ferry_ctx *ctx);

    /* Returns the attempt's deadline in milliseconds since the Unix epoch (0: none). */
    int64_t (*deadline)(ferry_ctx *ctx);

    /*
     * Records why the attempt did not succeed: a short machine-readable code
     * ("not_found", "timeout", "bad_parameter", ...) and a one-line message (printf
     * format). The last call wins. Copies both strings.
     */
    void (*set_error)(ferry_ctx *ctx, const char *code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /*
     * Runs another queue function through the host, for the same machine, and waits for it.
     * params is borrowed. On return *result holds the callee's result (a new reference the
     * caller must json_decref) or NULL. Returns the callee's outcome; the call and its
     * outcome appear in the job's trace. Calls nest to a depth limit; a cycle is refused
     * with FERRY_INVALID.
     */
    ferry_result (*call)(ferry_ctx *ctx, const char *function, const json_t *params,
                         json_t **result);

    /*
     * Runs a shell command on the job's machine: locally, or over SSH for a remote one.
     * options (borrowed, may be NULL): {"timeout": seconds, "stdin": "text",
     * "max_output": bytes, "env": {"NAME": "value"}, "cwd": "path"}.
     * Returns a new object {"exit_code": int, "signal": int|null, "output": "stdout+stderr",
     * "truncated": bool, "duration_ms": int}, or NULL when the command could not be started
     * (the attempt's error says why). A non-zero exit is not a NULL return.
     */
    json_t *(*exec)(ferry_ctx *ctx, const char *command, const json_t *options);

    /*
     * Returns the job's machine as a new object: {"name", "team", "bridge", "local": bool,
     * "ip", "user", "ssh_port", "datastore", ...} with secrets removed, or NULL when the
     * job has no machine.
     */
    json_t *(*machine)(ferry_ctx *ctx);

    /*
     * Returns the vault of the named storage of the job's team as a new object, secrets
     * included (a storage's credentials are what the function needs), or NULL when there is
     * no such storage (the attempt's error says so). Never log what it returns.
     */
    json_t *(*storage)(ferry_ctx *ctx, const char *name);

    /* Returns the plugin's own config section as a new object ({} when absent). */
    json_t *(*config)(ferry_ctx *ctx);

    /*
     * Makes one HTTP(S) request through libcurl. request (borrowed): {"method": "GET",
     * "url": "...", "headers": {"Name": "value"}, "body": "text", "timeout": seconds}.
     * Returns a new object {"status": int, "headers": {...}, "body": "text",
     * "duration_ms": int}, or NULL on a transport error (the attempt's error says why).
     */
    json_t *(*http)(ferry_ctx *ctx, const json_t *request);

    /* --- ABI 1.1 --------------------------------------------------------------------- */

    /*
     * The queue item's task id (a UUID), the same for every attempt of the item and for the
     * nested calls it makes; a fallback item has its own. Borrowed, valid until run()
     * returns. `ferry run` gives each run an id of its own ("run-" and a UUID) and attempt 1.
     * Build idempotency keys from it (with your own step names): a retry of the item sees
     * the same id, so it can find what an earlier attempt already did.
     */
    const char *(*task_id)(ferry_ctx *ctx);

    /*
     * The attempt number: 1 for the item's first attempt, 2 for its first retry, and so on;
     * nested calls see the attempt of the item they serve. 0 outside an attempt.
     */
    int (*attempt)(ferry_ctx *ctx);

    /* --- ABI 1.2 --------------------------------------------------------------------- */

    /*
     * Starts a shell command on the job's machine, locally or over SSH as exec does, and
     * returns at once, so that the function streams the command's standard input and output
     * itself, at its own pace and of any size (the host holds none of it in memory).
     * Test FERRY_HOST_HAS(ctx->host, exec_start) first when the plugin declares an older
     * minor than 1.2.
     *
     * options (borrowed, may be NULL): {"timeout": seconds, "env": {"NAME": "value"},
     * "cwd": "path"}, as for exec; "stdin" and "max_output" belong to exec and are refused
     * here (NULL, error code "exec_failed").
     *
     * On success returns a handle and sets *to_cmd (write the command's stdin there; close it
     * for end-of-file) and *from_cmd (the command's stdout: read it until end-of-file). Both
     * are pipes: blocking, close-on-exec, binary-safe (no terminal, locally or over SSH), and
     * the function's to close. Returns NULL (both set to -1) when the command could not be
     * started (the attempt's error says why). The command's stderr does not mix with the
     * data: the host keeps its last 64 KiB for exec_wait.
     *
     * The command runs in a process group of its own that belongs to the attempt, as exec's
     * commands do. The attempt's cancel and deadline, and the options' timeout, stop it
     * (SIGTERM to the group, SIGKILL 2 s later; the host looks every 100 ms) even while the
     * function is blocked in read() or write() on the pipes: from_cmd then reads end-of-file
     * and writes to to_cmd fail with EPIPE. So does a command that ends or closes its stdin
     * early: the worker ignores SIGPIPE, a write never kills it. On an SSH machine the local
     * OpenSSH client is what gets stopped; the far side ends the remote command's process
     * group (SIGTERM, then SIGKILL) within about a second of the connection going away
     * (stopped, client killed, or dropped), so nothing of it is left there. The far side
     * needs only a POSIX shell (and /proc, or kill -0, to notice the connection is gone).
     * Over SSH an attempt's commands share one connection, made by its first command: a
     * machine that cannot be reached then makes exec_start return NULL, the attempt's error
     * saying why; a connection that drops later reads as end-of-file, and exec_wait says why.
     *
     * When the command both reads and writes (cat, tar, ...), write from one thread and read
     * from another (or poll() both): a function that only writes while the command's stdout
     * pipe is full waits for ever (until the timeout). A command never waited for is stopped
     * when run() returns, with a warning in the trace. Call exec_start and exec_wait from
     * run()'s thread; the descriptors may be used from any thread.
     */
    ferry_exec_stream *(*exec_start)(ferry_ctx *ctx, const char *command, const json_t *options,
                                     int *to_cmd, int *from_cmd);

    /*
     * Waits for a command started by exec_start to end and frees the handle. With stop
     * non-zero, the command is stopped first (SIGTERM, then SIGKILL; the remote side too).
     * Close to_cmd and from_cmd before calling it, or a command blocked on them would keep it
     * waiting until its timeout. Returns a new object {"exit_code": int (-1 when a signal
     * ended it), "signal": int|null, "output": "the tail of stderr" (valid UTF-8: bad bytes
     * replaced, NUL as '?'), "truncated": bool (stderr was longer than 64 KiB),
     * "duration_ms": int, "stopped": "cancelled"|"timeout"|"stop"|null} ("timeout" for the
     * options' timeout and the attempt's deadline, "stop" for exec_wait's stop; null when
     * the command ended by itself, even if stop was asked after that).
     * Returns NULL when the handle is NULL (nothing else happens), when it is not a live
     * handle of this attempt (already waited for: the attempt's error says so; never a
     * crash), and when the SSH connection failed (the attempt's error is ssh's reason, e.g.
     * "ssh to user@host port 22 (machine web1) failed: Host key verification failed.").
     */
    json_t *(*exec_wait)(ferry_ctx *ctx, ferry_exec_stream *stream, int stop);
};

/* Non-zero when the host's table contains member m. */
#define FERRY_HOST_HAS(host, m)                                                               \
    ((host)->struct_size >= offsetof(struct ferry_host, m) + sizeof((host)->m))

/*
 * The public head of the attempt context. The host allocates the context; its remaining
 * members are private. Use the convenience macros below rather than the fields directly.
 */
struct ferry_ctx {
    uint32_t struct_size;
    const ferry_host *host;
};

#define ferry_log(ctx, level, ...)        ((ctx)->host->log((ctx), (level), __VA_ARGS__))
#define ferry_progress(ctx, pct, msg)     ((ctx)->host->progress((ctx), (pct), (msg)))
#define ferry_cancelled(ctx)              ((ctx)->host->cancelled(ctx))
#define ferry_set_error(ctx, code, ...)   ((ctx)->host->set_error((ctx), (code), __VA_ARGS__))
#define ferry_exec(ctx, cmd, opts)        ((ctx)->host->exec((ctx), (cmd), (opts)))
/* ABI 1.1: NULL / 0 from a host older than 1.1 (which refuses a 1.1 plugin anyway). */
#define ferry_task_id(ctx) (FERRY_HOST_HAS((ctx)->host, task_id) ? (ctx)->host->task_id(ctx) : NULL)
#define ferry_attempt(ctx) (FERRY_HOST_HAS((ctx)->host, attempt) ? (ctx)->host->attempt(ctx) : 0)

/* Fills the size member of a function descriptor. */
#define FERRY_FUNCTION_INIT .struct_size = sizeof(ferry_function)
/* Points a function descriptor at its parameter table. */
#define FERRY_PARAMS(table) .params = (table), .param_size = sizeof((table)[0])

/* The entry point keeps its C name when the plugin is C++ (dlsym looks it up by name). */
#ifdef __cplusplus
#define FERRY_EXTERN_C extern "C"
#else
#define FERRY_EXTERN_C
#endif

#if defined(__GNUC__)
#define FERRY_EXPORT __attribute__((visibility("default")))
#else
#define FERRY_EXPORT
#endif

/* The entry point's type; the host looks it up with dlsym(FERRY_PLUGIN_ENTRY_SYMBOL). */
typedef const ferry_plugin *(*ferry_plugin_entry_fn)(void);

/*
 * C++20 designated initializers must follow the members' order, and g++ -Wextra warns about
 * every member left out: the optional ones (flags, init, fini) are meant to be left out.
 */
#if defined(__cplusplus) && defined(__GNUC__)
#define FERRY_OPTIONAL_MEMBERS_BEGIN                                                               \
    _Pragma("GCC diagnostic push")                                                                 \
        _Pragma("GCC diagnostic ignored \"-Wmissing-field-initializers\"")
#define FERRY_OPTIONAL_MEMBERS_END _Pragma("GCC diagnostic pop")
#else
#define FERRY_OPTIONAL_MEMBERS_BEGIN
#define FERRY_OPTIONAL_MEMBERS_END
#endif

/*
 * Defines the plugin's entry point. Use once per plugin, at file scope:
 *
 *     FERRY_PLUGIN(.name = "greeter", .version = "1.0", .summary = "Says hello",
 *                  .functions = greeter_functions);
 */
#define FERRY_PLUGIN(...)                                                                          \
    FERRY_EXTERN_C FERRY_EXPORT const ferry_plugin *ferry_plugin_entry(void);                      \
    FERRY_EXPORT const ferry_plugin *ferry_plugin_entry(void)                                      \
    {                                                                                              \
        FERRY_OPTIONAL_MEMBERS_BEGIN                                                               \
        static const ferry_plugin descriptor = {.magic = FERRY_PLUGIN_MAGIC,                       \
                                                .abi_major = FERRY_ABI_MAJOR,                      \
                                                .abi_minor = FERRY_ABI_MINOR,                      \
                                                .struct_size = sizeof(ferry_plugin),               \
                                                __VA_ARGS__};                                      \
        FERRY_OPTIONAL_MEMBERS_END                                                                 \
        return &descriptor;                                                                        \
    }

#ifdef __cplusplus
}
#endif

#endif /* FERRY_PLUGIN_H */
