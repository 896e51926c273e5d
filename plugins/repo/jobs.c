/* Glue between queue functions and the engine: see jobs.h. */
#include "jobs.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keep.h"
#include "lock.h"
#include "pack.h"
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

ferry_result push_one(ferry_ctx *ctx, target *t, const char *repository, const char *storage_name,
                      const json_t *params, int retry_transient, json_t **result)
{
    const char *compression = param_str(params, "compression");
    int level = compression_level(compression ? compression : "default");
    if (level < 0) {
        job_error(ctx, "bad_parameter",
                  "compression must be fast, default, high or none, not \"%s\"", compression);
        return FERRY_INVALID;
    }
    int bad = 0;
    int64_t expires = expiry(params, ctx, &bad);
    char snap_id[129];
    const char *given = param_str(params, "snapshot_id");
    if (bad || !check_name(ctx, "repository", repository) ||
        (given && !check_name(ctx, "snapshot_id", given)))
        return FERRY_INVALID;
    if (given)
        snprintf(snap_id, sizeof(snap_id), "%s", given);
    else
        snap_default_id(snap_id, sizeof(snap_id));

    char *live = repo_dir(t, repository);
    char *snaps = snapshots_dir(t, repository);
    char *local_snap = xasprintf("%s/%s", snaps, snap_id);
    int from_snapshot = given && machine_exists(t, local_snap);
    ferry_result res = FERRY_OK;
    storage *s = NULL;
    lock *lk = NULL;
    job j;
    job_init(&j, ctx);
    if (!from_snapshot && !machine_exists(t, live)) {
        job_error(ctx, "not_found", "repository %s does not exist on %s (%s)", repository, t->name,
                  live);
        res = FERRY_FAIL;
        goto out;
    }
    if ((res = job_storage(ctx, storage_name, 1, &s, retry_transient)) != FERRY_OK)
        goto out;
    char purpose[300], host[256] = "";
    gethostname(host, sizeof(host) - 1);
    snprintf(purpose, sizeof(purpose), "push %s", repository);
    rerr e = {0};
    if (lock_shared(s, purpose, LOCK_WAIT, lock_wait, &j, &lk, &e) != 0) {
        res = job_fail(ctx, &e, retry_transient);
        goto out;
    }
    backup_req req = {.repository = repository,
                      .source = from_snapshot ? local_snap : live,
                      .source_is_snapshot = from_snapshot,
                      .snapshot_id = snap_id,
                      .default_id = given == NULL,
                      .tags = json_object_get(params, "tags"),
                      .description = param_str(params, "description"),
                      .hostname = host,
                      .machine = t->name,
                      .level = level,
                      .verify = param_bool(params, "verify", 0),
                      .reread = param_bool(params, "reread", 0),
                      .expires = expires,
                      .threads = (int)json_integer_value(json_object_get(params, "threads"))};
    if (repo_backup(s, &req, &j.u, result, &e) != 0) {
        res = job_fail(ctx, &e, retry_transient);
        goto out;
    }
    lock_release(lk);
    lk = NULL;
    ferry_log(ctx, FERRY_LOG_INFO, "pushed %s%s as snapshot %s to storage %s", repository,
              from_snapshot ? " (local snapshot)" : "",
              json_string_value(json_object_get(*result, "snapshot_id")), storage_name);
    if (wants_retention(params))
        json_object_set_new(*result, "retention",
                            after_push_retention(&j, s, params, repository, t->name));
out:
    lock_release(lk);
    storage_close(s);
    free(live);
    free(snaps);
    free(local_snap);
    return res;
}
