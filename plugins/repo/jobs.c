/* Glue between queue functions and the engine: see jobs.h. */
#include "jobs.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "keep.h"
#include "lock.h"
#include "pack.h"
#include "pattern.h"
#include "remote_read.h"
#include "snapshot.h"
#include "xfer.h"

#define PROGRESS_EVERY 2.0 /* seconds between progress reports (each is a trace row) */

static void ui_host_progress(void *arg, int percent, const char *message)
{
    job *j = arg;
    double now = mono_sec();
    /* A new phase (the message's first words change) is always reported. */
    size_t head = strcspn(message, ":");
    int new_phase = strncmp(j->last_message, message, head < 63 ? head : 63) != 0;
    if (!new_phase && percent < 100 && now - j->last_progress < PROGRESS_EVERY)
        return;
    j->last_progress = now;
    snprintf(j->last_message, sizeof(j->last_message), "%.*s", (int)(head < 63 ? head : 63),
             message);
    ferry_progress(j->ctx, percent, message);
}

static void ui_host_log(void *arg, int warn, const char *message)
{
    job *j = arg;
    ferry_log(j->ctx, warn ? FERRY_LOG_WARN : FERRY_LOG_INFO, "%s", message);
}

static int ui_host_cancelled(void *arg)
{
    job *j = arg;
    int cancelled = ferry_cancelled(j->ctx);
    if (cancelled)
        xfer_cancel(1); /* ends transfers to remote storages in flight */
    return cancelled;
}

void job_init(job *j, ferry_ctx *ctx)
{
    memset(j, 0, sizeof(*j));
    xfer_cancel(0);
    j->ctx = ctx;
    j->u = (ui){
        .arg = j, .progress = ui_host_progress, .log = ui_host_log, .cancelled = ui_host_cancelled};
}

/* The last error set through job_error: one job runs at a time in a worker. */
static char last_code[32], last_msg[1024];

void job_error(ferry_ctx *ctx, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
    va_end(ap);
    snprintf(last_code, sizeof(last_code), "%s", code);
    ferry_set_error(ctx, code, "%s", last_msg);
}

const char *job_last_error(const char **code)
{
    if (code)
        *code = last_code[0] ? last_code : "failed";
    return last_msg[0] ? last_msg : "failed";
}

ferry_result job_fail(ferry_ctx *ctx, const rerr *e, int retry_transient)
{
    job_error(ctx, rerr_code(e->kind), "%s", e->msg[0] ? e->msg : "failed");
    switch (e->kind) {
    case E_INVALID:
        return FERRY_INVALID;
    case E_TRANSIENT:
        return retry_transient ? FERRY_RETRY : FERRY_FAIL;
    default:
        return FERRY_FAIL;
    }
}

const char *param_str(const json_t *params, const char *name)
{
    return json_string_value(json_object_get(params, name));
}

int param_bool(const json_t *params, const char *name, int fallback)
{
    const json_t *v = json_object_get(params, name);
    return json_is_boolean(v) ? json_is_true(v) : fallback;
}

double param_num(const json_t *params, const char *name, double fallback)
{
    const json_t *v = json_object_get(params, name);
    return json_is_number(v) ? json_number_value(v) : fallback;
}

int check_name(ferry_ctx *ctx, const char *what, const char *value)
{
    if (valid_name(value))
        return 1;
    job_error(ctx, "bad_parameter",
              "%s \"%s\" must be 1-128 characters of letters, digits, '.', '_' and '-', "
              "starting with a letter or digit",
              what, value ? value : "");
    return 0;
}

json_t *job_vault(ferry_ctx *ctx, const char *name)
{
    json_t *vault = ctx->host->storage(ctx, name);
    if (vault == NULL)
        job_error(ctx, "not_found",
                  "the team has no storage named %s (create it with ferry create storage)", name);
    return vault;
}

ferry_result job_storage(ferry_ctx *ctx, const char *name, int create, storage **out,
                         int retry_transient)
{
    json_t *vault = job_vault(ctx, name);
    if (vault == NULL)
        return FERRY_FAIL;
    rerr e = {0};
    int rc = storage_open(name, vault, create, out, &e);
    json_decref(vault);
    return rc == 0 ? FERRY_OK : job_fail(ctx, &e, retry_transient);
}

ferry_result require_local(target *t, const char *function)
{
    if (t->local)
        return FERRY_OK;
    job_error(t->ctx, "unsupported",
              "%s reads and writes the repository's files in the worker, so it needs a "
              "local machine; %s is remote: run a ferry bridge on it",
              function, t->name ? t->name : "the machine");
    return FERRY_FAIL;
}

static int lock_wait(void *arg, const char *holder)
{
    job *j = arg;
    ui_progress(&j->u, 0, "waiting for the storage: %s", holder);
    return ferry_cancelled(j->ctx);
}

/*
 * Retention after a push; its failure is reported but does not undo the backup. A keep
 * policy in params applies to the group of the push: its repository's snapshots from its
 * machine, no other.
 */
static json_t *after_push_retention(job *j, storage *s, const json_t *params,
                                    const char *repository, const char *machine)
{
    json_t *config = j->ctx->host->config(j->ctx);
    double hours = param_num(config, "gc_grace_hours", DEFAULT_GRACE_HOURS);
    json_decref(config);
    keep_policy policy;
    int keep = keep_policy_parse(params, &policy, NULL, 0) == 0 && keep_counts(&policy);
    gc_req req = {.grace = (int64_t)(hours * 3600),
                  .now = (int64_t)time(NULL),
                  .policy = keep ? &policy : NULL,
                  .repository = repository,
                  .machine = machine ? machine : ""};
    json_t *out = NULL;
    rerr e = {0};
    if (repo_gc(s, &req, &j->u, &out, &e) != 0) {
        ferry_log(j->ctx, FERRY_LOG_WARN, "retention failed (the snapshot is stored): %s", e.msg);
        return json_pack("{s:s}", "error", e.msg);
    }
    return out;
}

static int push_filter(void *arg, const char *rel, int is_dir)
{
    return pattern_excluded(arg, rel, is_dir);
}

/* Whether a push runs retention afterwards: any retention or keep parameter given. */
static int wants_retention(const json_t *params)
{
    static const char *const names[] = {"retention_days", "retention_years", "keep_last",
                                        "keep_hourly",    "keep_daily",      "keep_weekly",
                                        "keep_monthly",   "keep_yearly"};
    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
        const json_t *v = json_object_get(params, names[i]);
        if (v && !json_is_null(v))
            return 1;
    }
    return 0;
}

/*
 * The expiry a push records: now plus retention_days and retention_years, or 0 (none).
 * With a keep_* rule there is none: retention_* are then the policy's keep-within rule, and
 * a recorded expiry would remove, at the next collection, a monthly snapshot the policy
 * keeps. *bad is set, with the error, when a retention or keep parameter is invalid.
 */
static int64_t expiry(const json_t *params, ferry_ctx *ctx, int *bad)
{
    keep_policy policy;
    char err[200];
    *bad = keep_policy_parse(params, &policy, err, sizeof(err)) != 0;
    if (*bad) {
        job_error(ctx, "bad_parameter", "%s", err);
        return 0;
    }
    if (keep_counts(&policy) || policy.within == 0)
        return 0;
    return (int64_t)time(NULL) + policy.within;
}

/* The exclude parameter compiled (NULL when absent), or -1 with the error set. */
static int push_exclude(ferry_ctx *ctx, const json_t *params, pattern_set **out)
{
    const json_t *list = json_object_get(params, "exclude");
    *out = NULL;
    if (list == NULL || json_is_null(list))
        return 0;
    size_t n = json_is_array(list) ? json_array_size(list) : 0;
    const char **texts = xcalloc(n ? n : 1, sizeof(*texts));
    int ok = json_is_array(list);
    for (size_t i = 0; ok && i < n; i++)
        ok = (texts[i] = json_string_value(json_array_get(list, i))) != NULL &&
             strlen(texts[i]) == json_string_length(json_array_get(list, i));
    char err[256];
    if (!ok)
        job_error(ctx, "bad_parameter",
                  "exclude must be a list of patterns (strings without NUL bytes), e.g. "
                  "[\"*.log\", \"/cache/\"]");
    else if ((*out = pattern_compile(texts, n, err, sizeof(err))) == NULL)
        job_error(ctx, "bad_parameter", "%s", err);
    free(texts);
    return ok && *out ? 0 : -1;
}

/* The push parameters every push checks first (push_opts_read). */
typedef struct push_opts {
    int level;         /* zstd level */
    int64_t expires;   /* Unix seconds, 0: none */
    char snap_id[129]; /* the given snapshot_id, or the default (the time) */
    int default_id;    /* no snapshot_id was given */
} push_opts;

/*
 * Pushes source (a directory on the machine) as a snapshot of repository. path is the
 * absolute path pushed for repo_push's "paths" (recorded in the manifest), NULL for a
 * repository of the datastore. On a remote machine the files are listed and read through
 * the host's streaming exec service (remote_read.h).
 */
static ferry_result push_dir(ferry_ctx *ctx, target *t, const char *repository, const char *source,
                             int from_snapshot, const char *path, const char *storage_name,
                             const json_t *params, const push_opts *o, int retry_transient,
                             json_t **result)
{
    ferry_result res = FERRY_OK;
    storage *s = NULL;
    lock *lk = NULL;
    pattern_set *exclude = NULL;
    remote_source remote;
    job j;
    job_init(&j, ctx);
    rerr e = {0};
    if (push_exclude(ctx, params, &exclude) != 0)
        return FERRY_INVALID;
    if (!t->local && remote_source_init(&remote, ctx, t->name, source, exclude, &e) != 0) {
        res = job_fail(ctx, &e, 0);
        goto out;
    }
    if ((res = job_storage(ctx, storage_name, 1, &s, retry_transient)) != FERRY_OK)
        goto out;
    char purpose[300], host[256] = "";
    gethostname(host, sizeof(host) - 1);
    snprintf(purpose, sizeof(purpose), "push %s", repository);
    if (lock_shared(s, purpose, LOCK_WAIT, lock_wait, &j, &lk, &e) != 0) {
        res = job_fail(ctx, &e, retry_transient);
        goto out;
    }
    backup_req req = {.repository = repository,
                      .source = source,
                      .remote = t->local ? NULL : &remote.ops,
                      .filter = exclude ? push_filter : NULL,
                      .filter_arg = exclude,
                      .path = path,
                      .source_is_snapshot = from_snapshot,
                      .snapshot_id = o->snap_id,
                      .default_id = o->default_id,
                      .tags = json_object_get(params, "tags"),
                      .description = param_str(params, "description"),
                      .hostname = host,
                      .machine = t->name,
                      .level = o->level,
                      .verify = param_bool(params, "verify", 0),
                      .reread = param_bool(params, "reread", 0),
                      .expires = o->expires,
                      .threads = (int)json_integer_value(json_object_get(params, "threads"))};
    if (repo_backup(s, &req, &j.u, result, &e) != 0) {
        res = job_fail(ctx, &e, retry_transient);
        goto out;
    }
    lock_release(lk);
    lk = NULL;
    if (path)
        json_object_set_new(*result, "path", json_string(path));
    if (!t->local)
        json_object_set_new(
            *result, "bytes_received",
            json_integer((json_int_t)__atomic_load_n(&remote.bytes, __ATOMIC_RELAXED)));
    ferry_log(ctx, FERRY_LOG_INFO, "pushed %s%s as snapshot %s to storage %s",
              path ? path : repository, from_snapshot ? " (local snapshot)" : "",
              json_string_value(json_object_get(*result, "snapshot_id")), storage_name);
    if (wants_retention(params))
        json_object_set_new(*result, "retention",
                            after_push_retention(&j, s, params, repository, t->name));
out:
    lock_release(lk);
    storage_close(s);
    pattern_free(exclude);
    return res;
}

/* Checks the compression level, the expiry and the snapshot id into o. */
static ferry_result push_opts_read(ferry_ctx *ctx, const json_t *params, push_opts *o)
{
    const char *compression = param_str(params, "compression");
    o->level = compression_level(compression ? compression : "default");
    if (o->level < 0) {
        job_error(ctx, "bad_parameter",
                  "compression must be fast, default, high or none, not \"%s\"", compression);
        return FERRY_INVALID;
    }
    int bad = 0;
    o->expires = expiry(params, ctx, &bad);
    const char *given = param_str(params, "snapshot_id");
    if (bad || (given && !check_name(ctx, "snapshot_id", given)))
        return FERRY_INVALID;
    o->default_id = given == NULL;
    if (given)
        snprintf(o->snap_id, sizeof(o->snap_id), "%s", given);
    else
        snap_default_id(o->snap_id, sizeof(o->snap_id));
    return FERRY_OK;
}

ferry_result push_one(ferry_ctx *ctx, target *t, const char *repository, const char *storage_name,
                      const json_t *params, int retry_transient, json_t **result)
{
    push_opts o;
    ferry_result res = push_opts_read(ctx, params, &o);
    if (res != FERRY_OK)
        return res;
    if (!check_name(ctx, "repository", repository))
        return FERRY_INVALID;
    char *live = repo_dir(t, repository);
    char *snaps = snapshots_dir(t, repository);
    char *local_snap = xasprintf("%s/%s", snaps, o.snap_id);
    int from_snapshot = 0, exists = 0;
    if (t->local || o.default_id) {
        from_snapshot = o.default_id ? 0 : machine_test(t, local_snap);
        exists = from_snapshot == 0 ? machine_test(t, live) : 1;
    } else { /* one command where two would each cost an SSH connection */
        char *qs = sh_quote(local_snap), *ql = sh_quote(live);
        char *cmd = xasprintf("{ test -e %s || test -L %s; } && exit 10; "
                              "{ test -e %s || test -L %s; } && exit 11; exit 12",
                              qs, qs, ql, ql);
        int rc = machine_sh(t, cmd, NULL, NULL);
        free(cmd);
        free(qs);
        free(ql);
        from_snapshot = rc < 0 ? -1 : rc == 10;
        exists = rc < 0 ? -1 : rc == 10 || rc == 11;
    }
    if (from_snapshot < 0 || exists < 0) {
        res = FERRY_RETRY; /* the machine could not be reached: the exec service said why */
    } else if (!exists) {
        job_error(ctx, "not_found", "repository %s does not exist on %s (%s)", repository, t->name,
                  live);
        res = FERRY_FAIL;
    } else {
        res = push_dir(ctx, t, repository, from_snapshot ? local_snap : live, from_snapshot, NULL,
                       storage_name, params, &o, retry_transient, result);
    }
    free(live);
    free(snaps);
    free(local_snap);
    return res;
}

char *path_repository(const char *path)
{
    unsigned char digest[32];
    char hex[65];
    EVP_Digest(path, strlen(path), digest, NULL, EVP_sha256(), NULL);
    hex_encode(digest, 4, hex);
    buf slug = {0};
    for (const char *p = path; *p && slug.len < 100; p++) {
        if (*p == '/') {
            if (slug.len && p[1])
                buf_put_u8(&slug, '-');
            continue;
        }
        int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-';
        buf_put_u8(&slug, plain ? (uint8_t)*p : '_');
    }
    char *name = xasprintf("path-%.*s%s%s", (int)slug.len, slug.len ? (char *)slug.data : "",
                           slug.len ? "-" : "root-", hex);
    buf_free(&slug);
    return name;
}

/* Why path is not an absolute, normalised path, or NULL. */
static const char *path_problem_abs(const char *path)
{
    if (path[0] != '/')
        return "is not absolute";
    for (const char *p = path + 1; *p;) {
        size_t len = strcspn(p, "/");
        if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return "has a \".\" or \"..\" component";
        if (len == 0 && p[0] == '/')
            return "has an empty component (\"//\")";
        p += len + (p[len] == '/');
    }
    return NULL;
}

ferry_result push_paths(ferry_ctx *ctx, target *t, const json_t *paths, const char *storage_name,
                        const json_t *params, int retry_transient, json_t **result)
{
    size_t n = json_is_array(paths) ? json_array_size(paths) : 0;
    if (n == 0) {
        job_error(
            ctx, "bad_parameter",
            "paths must be a non-empty list of absolute paths, e.g. [\"/etc\", \"/var/www\"]");
        return FERRY_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *p = json_array_get(paths, i);
        const char *text = json_string_value(p);
        const char *why = text == NULL || strlen(text) != json_string_length(p)
                              ? "is not a string without NUL bytes"
                              : path_problem_abs(text);
        if (why) {
            char q[300];
            job_error(ctx, "bad_parameter", "paths[%zu] %s %s", i,
                      tree_quote(text ? text : "", q, sizeof(q)), why);
            return FERRY_INVALID;
        }
    }
    push_opts o;
    ferry_result res = push_opts_read(ctx, params, &o);
    json_t *pushed = json_array();
    for (size_t i = 0; i < n && res == FERRY_OK; i++) {
        char *path = xstrdup(json_string_value(json_array_get(paths, i)));
        size_t len = strlen(path);
        while (len > 1 && path[len - 1] == '/')
            path[--len] = '\0';
        char *repository = path_repository(path);
        json_t *one = NULL;
        int exists = machine_test(t, path);
        if (exists < 0) {
            res = FERRY_RETRY;
        } else if (!exists) {
            job_error(ctx, "not_found", "path %s does not exist on %s", path, t->name);
            res = FERRY_FAIL;
        } else {
            res = push_dir(ctx, t, repository, path, 0, path, storage_name, params, &o,
                           retry_transient, &one);
        }
        if (res == FERRY_OK)
            json_array_append_new(pushed, one);
        free(repository);
        free(path);
    }
    if (res == FERRY_OK)
        *result = json_pack("{s:s,s:O}", "storage", storage_name, "pushed", pushed);
    json_decref(pushed);
    return res;
}
