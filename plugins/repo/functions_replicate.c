/*
 * repo_replicate: one source to several target storages, each target on its own, so one
 * failing target does not stop the others. The source is either
 *   - a repository of the item's machine ({"repository": "db"}): each target gets a push of
 *     it, all under one snapshot id; or
 *   - a storage ({"storage": "s3-us-east", "repository": "db"}; repository optional): each
 *     target becomes a replica of it and receives the snapshots it lacks (replicate.c).
 * "region" in the source and in each target is a label carried into the result.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "functions.h"
#include "jobs.h"
#include "snapshot.h"

typedef struct repl {
    ferry_ctx *ctx;
    const json_t *params;
    const char *repository;  /* the source repository, or NULL (a whole storage) */
    const char *src_storage; /* NULL: the repository on the machine */
    int full;
    int verify;
    double sample;
    char snap_id[129];
} repl;

/* Checks the parameters; FERRY_OK or FERRY_INVALID with the error set. */
static ferry_result read_params(ferry_ctx *ctx, const json_t *params, repl *r)
{
    const json_t *source = json_object_get(params, "source");
    const json_t *targets = json_object_get(params, "targets");
    const char *mode = param_str(params, "mode");
    memset(r, 0, sizeof(*r));
    r->ctx = ctx;
    r->params = params;
    r->repository = param_str(source, "repository");
    r->src_storage = param_str(source, "storage");
    r->verify = param_bool(params, "verify", 0);
    r->sample = param_num(params, "verify_sample", 100);
    if (r->repository == NULL && r->src_storage == NULL) {
        job_error(ctx, "bad_parameter",
                  "source needs \"repository\" (a repository of this machine) or \"storage\" "
                  "(a storage to copy snapshots from), e.g. {\"repository\": \"db\"}");
        return FERRY_INVALID;
    }
    if ((r->repository && !check_name(ctx, "source.repository", r->repository)) ||
        (r->src_storage && !check_name(ctx, "source.storage", r->src_storage)))
        return FERRY_INVALID;
    if (mode && strcmp(mode, "incremental") != 0 && strcmp(mode, "full") != 0) {
        job_error(ctx, "bad_parameter", "mode must be \"incremental\" or \"full\", not \"%s\"",
                  mode);
        return FERRY_INVALID;
    }
    r->full = mode && strcmp(mode, "full") == 0;
    if (!(r->sample > 0 && r->sample <= 100)) {
        job_error(ctx, "bad_parameter", "verify_sample is a percentage: more than 0, at most 100");
        return FERRY_INVALID;
    }
    if (!json_is_array(targets) || json_array_size(targets) == 0) {
        job_error(ctx, "bad_parameter",
                  "targets must be a list of storages, e.g. [{\"storage\": \"s3-eu-west\"}]");
        return FERRY_INVALID;
    }
    size_t i;
    const json_t *t;
    json_array_foreach (targets, i, t) {
        const char *name = json_is_string(t) ? json_string_value(t) : param_str(t, "storage");
        if (name == NULL) {
            job_error(ctx, "bad_parameter",
                      "targets[%zu] needs \"storage\": the name of a storage of the team", i);
            return FERRY_INVALID;
        }
        if (!check_name(ctx, "target storage", name))
            return FERRY_INVALID;
        if (r->src_storage && strcmp(name, r->src_storage) == 0) {
            job_error(ctx, "bad_parameter", "target %s is the source storage itself", name);
            return FERRY_INVALID;
        }
    }
    const char *given = param_str(params, "snapshot_id");
    if (given && !check_name(ctx, "snapshot_id", given))
        return FERRY_INVALID;
    if (given)
        snprintf(r->snap_id, sizeof(r->snap_id), "%s", given);
    else
        snap_default_id(r->snap_id, sizeof(r->snap_id));
    return FERRY_OK;
}

/* Verifies what a target holds of the repository (every snapshot when NULL). */
static ferry_result verify_target(repl *r, job *j, const char *name, json_t *out)
{
    storage *s = NULL;
    ferry_result res = job_storage(r->ctx, name, 0, &s, 0);
    if (res != FERRY_OK)
        return res;
    lock *lk = NULL;
    json_t *vres = NULL;
    rerr e = {0};
    if (lock_shared(s, "verify", LOCK_WAIT, NULL, NULL, &lk, &e) != 0 ||
        repo_verify(s, r->repository, r->sample, &j->u, &vres, &e) != 0)
        res = job_fail(r->ctx, &e, 0);
    else
        json_object_set_new(out, "verify", vres);
    lock_release(lk);
    storage_close(s);
    return res;
}

/* Pushes the machine's repository to one target. */
static ferry_result push_target(repl *r, target *t, const char *name, json_t *out)
{
    json_t *p = json_deep_copy(r->params);
    json_object_set_new(p, "snapshot_id", json_string(r->snap_id));
    json_object_set_new(p, "reread", json_boolean(r->full));
    json_object_del(p, "verify"); /* repo_replicate's verify checks the target afterwards */
    json_t *pushed = NULL;
    ferry_result res = push_one(r->ctx, t, r->repository, name, p, 0, &pushed);
    json_decref(p);
    if (res == FERRY_OK)
        json_object_set_new(out, "push", pushed);
    return res;
}

/* Copies snapshots from the source storage (opened once, src) to one target. */
static ferry_result copy_target(repl *r, job *j, storage *src, const char *name, json_t *out)
{
    json_t *vault = job_vault(r->ctx, name);
    if (vault == NULL)
        return FERRY_FAIL;
    storage *dst = NULL;
    lock *lk = NULL;
    json_t *copied = NULL;
    rerr e = {0};
    ferry_result res = FERRY_OK;
    char purpose[300];
    snprintf(purpose, sizeof(purpose), "replicate from %s", src->name);
    copy_req req = {.repository = r->repository, .full = r->full, .now = (int64_t)time(NULL)};
    if (storage_open_replica(name, vault, src, &dst, &e) != 0 ||
        lock_shared(dst, purpose, LOCK_WAIT, NULL, NULL, &lk, &e) != 0 ||
        repo_copy(src, dst, &req, &j->u, &copied, &e) != 0)
        res = job_fail(r->ctx, &e, 0);
    else
        json_object_set_new(out, "copy", copied);
    lock_release(lk);
    storage_close(dst);
    json_decref(vault);
    return res;
}

static ferry_result repo_replicate_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    repl r;
    ferry_result res = read_params(ctx, params, &r);
    if (res != FERRY_OK)
        return res;
    job j;
    job_init(&j, ctx);
    target t = {0};
    storage *src = NULL;
    lock *src_lock = NULL;
    rerr e = {0};
    if (r.src_storage) {
        if ((res = job_storage(ctx, r.src_storage, 0, &src, 0)) != FERRY_OK)
            goto out;
        if (lock_shared(src, "replicate", LOCK_WAIT, NULL, NULL, &src_lock, &e) != 0) {
            res = job_fail(ctx, &e, 0);
            goto out;
        }
    } else if ((res = target_open(ctx, &t)) != FERRY_OK ||
               (res = require_local(&t, "repo_replicate from a repository")) != FERRY_OK) {
        goto out;
    }

    const json_t *targets = json_object_get(params, "targets");
    json_t *reports = json_array();
    size_t i, failed = 0;
    const json_t *tg;
    char summary[2048] = "";
    json_array_foreach (targets, i, tg) {
        const char *name = json_is_string(tg) ? json_string_value(tg) : param_str(tg, "storage");
        json_t *out = json_pack("{s:s}", "storage", name);
        if (param_str(tg, "region"))
            json_object_set(out, "region", json_object_get(tg, "region"));
        ui_progress(&j.u, (int)(100 * i / json_array_size(targets)), "replicating to %s", name);
        ferry_result one =
            src ? copy_target(&r, &j, src, name, out) : push_target(&r, &t, name, out);
        if (one == FERRY_OK && r.verify)
            one = verify_target(&r, &j, name, out);
        if (one == FERRY_OK) {
            json_object_set_new(out, "status", json_string("COMPLETED"));
            ferry_log(ctx, FERRY_LOG_INFO, "replicated to %s", name);
        } else {
            const char *code;
            const char *msg = job_last_error(&code);
            json_object_set_new(out, "status", json_string("FAILED"));
            json_object_set_new(out, "error", json_pack("{s:s,s:s}", "code", code, "message", msg));
            ferry_log(ctx, FERRY_LOG_WARN, "replication to %s failed: %s", name, msg);
            size_t used = strlen(summary);
            snprintf(summary + used, sizeof(summary) - used, "%s%s: %s", failed ? "; " : "", name,
                     msg);
            failed++;
        }
        json_array_append_new(reports, out);
    }
    json_t *source = json_deep_copy(json_object_get(params, "source"));
    *result =
        json_pack("{s:s,s:o,s:s,s:o,s:I,s:I}", "mode", r.full ? "full" : "incremental", "source",
                  source, "snapshot_id", r.snap_id, "targets", reports, "completed",
                  (json_int_t)(json_array_size(targets) - failed), "failed", (json_int_t)failed);
    if (src)
        json_object_del(*result, "snapshot_id"); /* copies keep the source's snapshot ids */
    if (failed) {
        job_error(ctx, "failed", "replication failed for %zu of %zu targets: %s", failed,
                  json_array_size(targets), summary);
        res = FERRY_FAIL;
    } else {
        res = FERRY_OK;
    }
out:
    lock_release(src_lock);
    storage_close(src);
    if (!r.src_storage)
        target_close(&t);
    return res;
}

static const ferry_param repo_replicate_params[] = {
    {"source", FERRY_PARAM_OBJECT, FERRY_PARAM_REQUIRED, NULL,
     "What to replicate: {\"repository\": R} pushes repository R of the machine to every "
     "target; {\"storage\": S} (with \"repository\" to take one repository only) copies the "
     "snapshots of storage S. \"region\" is a label for the result."},
    {"targets", FERRY_PARAM_ARRAY, FERRY_PARAM_REQUIRED, NULL,
     "Storages to replicate to: [{\"storage\": \"s3-eu-west\", \"region\": \"eu-west\"}, …] or "
     "names. Each is reported on its own; one failing does not stop the others."},
    {"mode", FERRY_PARAM_STRING, 0, "\"incremental\"",
     "incremental: send only what each target lacks; full: read every source file again "
     "(repository source) or copy every pack and manifest again, repairing a damaged target "
     "(storage source)."},
    {"verify", FERRY_PARAM_BOOLEAN, 0, "false",
     "After replicating, check each target's copy of the repository (repo_verify)."},
    {"verify_sample", FERRY_PARAM_NUMBER, 0, "100",
     "Percentage of packs verify reads blob by blob."},
    {"snapshot_id", FERRY_PARAM_STRING, 0, NULL,
     "Repository source: id of the new snapshot on every target (default: the UTC time)."},
    {"tags", FERRY_PARAM_ANY, 0, NULL, "Repository source: labels stored with the snapshot."},
    {"compression", FERRY_PARAM_STRING, 0, "\"default\"",
     "Repository source: zstd effort, fast, default, high or none."},
    {"retention_days", FERRY_PARAM_NUMBER, 0, NULL,
     "Repository source: keep the snapshot this many days on each target."},
    {"description", FERRY_PARAM_STRING, 0, NULL,
     "Repository source: free text stored with the snapshot."},
    {"threads", FERRY_PARAM_INTEGER, 0, "0",
     "Repository source: threads for chunking and compression; 0: one per core (at most 8)."},
    {NULL, 0, 0, NULL, NULL},
};

const ferry_function fn_repo_replicate = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_NEEDS_MACHINE | FERRY_FN_IDEMPOTENT,
    .name = "repo_replicate",
    .summary = "Replicate a repository or a storage to several storages",
    .description = "Pushes a repository of the machine to every target under one snapshot id, "
                   "or copies a storage's snapshots to replicas of it byte for byte (nothing is "
                   "decrypted). Each target is reported separately in the result; the item "
                   "fails when any target failed. See docs/repositories.md.",
    FERRY_PARAMS(repo_replicate_params),
    .default_timeout = 86400,
    .run = repo_replicate_run,
};
