/*
 * Queue functions that move repositories to and from storages: repo_push, repo_pull,
 * repo_verify, repo_gc, and the seed's error-handling pair backup_with_retry and
 * backup_to_secondary. The plugin's descriptor is at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "functions.h"
#include "jobs.h"
#include "keep.h"
#include "pull.h"
#include "snapshot.h"

/* A repository of the datastore, or "paths" (absolute paths), on a local or an SSH machine. */
static ferry_result repo_push_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    const char *repo = param_str(params, "repository");
    const json_t *paths = json_object_get(params, "paths");
    if (paths && json_is_null(paths))
        paths = NULL;
    if ((repo == NULL) == (paths == NULL)) {
        ferry_set_error(ctx, "bad_parameter",
                        "repo_push takes either \"repository\" or \"paths\" (absolute paths on "
                        "the machine), not %s",
                        repo ? "both" : "neither");
        return FERRY_INVALID;
    }
    target t;
    ferry_result res = target_open(ctx, &t);
    if (res == FERRY_OK && repo)
        res = push_one(ctx, &t, repo, param_str(params, "storage"), params, 1, result);
    else if (res == FERRY_OK)
        res = push_paths(ctx, &t, paths, param_str(params, "storage"), params, 1, result);
    target_close(&t);
    return res;
}

/*
 * The restore point of a pull: "restore_point", or the seed's "version" (the same; both
 * given must agree). NULL with the error set when they disagree.
 */
static const char *pull_point(ferry_ctx *ctx, const json_t *params)
{
    const char *point = param_str(params, "restore_point");
    const char *version = param_str(params, "version");
    if (point && version && strcmp(point, version) != 0) {
        job_error(ctx, "bad_parameter",
                  "restore_point \"%s\" and version \"%s\" disagree; give one of them", point,
                  version);
        return NULL;
    }
    return point ? point : version ? version : "latest";
}

/* Checks the health_check parameter: absent, or an object with a string endpoint. */
static int health_check_ok(ferry_ctx *ctx, const json_t *hc)
{
    if (hc == NULL || json_is_null(hc) ||
        (json_is_object(hc) && json_is_string(json_object_get(hc, "endpoint"))))
        return 1;
    job_error(ctx, "bad_parameter",
              "health_check must be an object with an \"endpoint\" (a URL or a path such as "
              "/health), e.g. {\"endpoint\": \"/health\", \"timeout\": 300, \"retries\": 5}");
    return 0;
}

/*
 * Resolves the pull's restore point to one snapshot id (into id): "latest" and tags among
 * the snapshots machine pushed, an id among all. 0, or -1 with e set.
 */
static int pull_resolve(storage *s, const char *repository, const char *point,
                        const char *machine, char *id, size_t idlen, rerr *e)
{
    snap_list l;
    int rc = snap_list_read(s, repository, &l, e);
    const snap_info *si = rc == 0 ? snap_resolve_on(&l, point, machine) : NULL;
    if (si) {
        snprintf(id, idlen, "%s", si->id);
    } else if (rc == 0) {
        const snap_info *other = snap_resolve(&l, point);
        const char *by = other ? snap_machine(other->doc) : NULL;
        if (other)
            rc = rerr_set(e, E_NOTFOUND,
                          "no snapshot of repository %s in storage %s from machine %s matches "
                          "\"%s\" (machine %s has one: pass \"from_machine\": \"%s\" to "
                          "restore it here)",
                          repository, s->name, machine ? machine : "(none)", point,
                          by ? by : "(none)", by ? by : "");
        else
            rc = rerr_set(e, E_NOTFOUND, "no snapshot of repository %s in storage %s matches "
                          "\"%s\"%s",
                          repository, s->name, point,
                          l.n ? "" : " (the storage has none of this repository)");
    }
    snap_list_free(&l);
    return rc;
}

/*
 * repo_pull's health_check: starts the repository (Ferryfile prep and up, as repo_up),
 * then calls the health_check function through the host with the parameter's object.
 * FERRY_OK when healthy; otherwise the callee's outcome, with the error naming the
 * endpoint and its last answer.
 */
static ferry_result pull_health(target *t, const char *repo, const json_t *hc, json_t *result)
{
    ferry_ctx *ctx = t->ctx;
    int ran = 0;
    ferry_result res = repo_start(t, repo, 0, &ran);
    if (res != FERRY_OK)
        return res;
    ferry_log(ctx, FERRY_LOG_INFO, "%s started%s; checking %s", repo,
              ran ? " (Ferryfile prep and up)" : " (no Ferryfile)",
              json_string_value(json_object_get(hc, "endpoint")));
    json_t *answer = NULL;
    res = ctx->host->call(ctx, "health_check", hc, &answer);
    const char *url = json_string_value(json_object_get(answer, "url"));
    json_int_t status = json_integer_value(json_object_get(answer, "status"));
    json_int_t tries = json_integer_value(json_object_get(answer, "attempts"));
    const char *body = json_string_value(json_object_get(answer, "body"));
    if (url == NULL)
        url = json_string_value(json_object_get(hc, "endpoint"));
    json_object_set_new(result, "running", json_true());
    json_object_set_new(result, "health_check", answer ? answer : json_null());
    if (res == FERRY_OK)
        return FERRY_OK;
    if (answer == NULL)
        job_error(ctx, "unhealthy",
                  "%s was restored and started, but the health check of %s could not run "
                  "(is the ops plugin installed?)",
                  repo, url);
    else if (status == 0)
        job_error(ctx, "unhealthy",
                  "%s was restored and started, but %s is unhealthy after %lld tr%s: no "
                  "answer (nothing listening, or no response in time)",
                  repo, url, (long long)tries, tries == 1 ? "y" : "ies");
    else
        job_error(ctx, "unhealthy",
                  "%s was restored and started, but %s is unhealthy after %lld tr%s: the last "
                  "answer was HTTP %lld \"%.200s\"",
                  repo, url, (long long)tries, tries == 1 ? "y" : "ies", (long long)status,
                  body ? body : "");
    return res; /* FAIL; INVALID for a bad check; RETRY when the host could not run it */
}

static ferry_result repo_pull_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    const char *repo = param_str(params, "repository");
    const char *from = param_str(params, "from_repository");
    const char *from_machine = param_str(params, "from_machine");
    const char *target_param = param_str(params, "target");
    const json_t *hc = json_object_get(params, "health_check");
    const char *point = pull_point(ctx, params);
    pattern_set *include = NULL;
    if (point == NULL || !health_check_ok(ctx, hc))
        return FERRY_INVALID;
    if (!check_name(ctx, "repository", repo) || (from && !check_name(ctx, "from_repository", from)))
        return FERRY_INVALID;
    if (pull_include(ctx, json_object_get(params, "include"), &include) != 0)
        return FERRY_INVALID;
    int elsewhere = target_param != NULL;
    if (include && !elsewhere) {
        job_error(ctx, "bad_parameter",
                  "include restores part of a snapshot, which never replaces the repository: "
                  "give \"target\" too (a new or empty directory, e.g. \"/srv/restore/%s\")",
                  repo);
        pattern_free(include);
        return FERRY_INVALID;
    }
    if (elsewhere && hc && !json_is_null(hc)) {
        job_error(ctx, "bad_parameter",
                  "health_check starts the repository, which a restore to a target leaves "
                  "alone: drop one of them");
        pattern_free(include);
        return FERRY_INVALID;
    }
    target t;
    ferry_result res = target_open(ctx, &t);
    if (res != FERRY_OK) {
        pattern_free(include);
        target_close(&t);
        return res;
    }
    char *live = elsewhere ? pull_target(&t, target_param) : repo_dir(&t, repo);
    char *marker = running_marker(&t, repo), *fresh = NULL;
    storage *s = NULL;
    lock *lk = NULL;
    job j;
    job_init(&j, ctx);
    rerr e = {0};
    char id[129];
    int64_t uid = -1, gid = -1;
    if (live == NULL) {
        res = FERRY_INVALID;
        goto out;
    }
    if (!elsewhere && machine_exists(&t, marker) && !param_bool(params, "force", 0)) {
        ferry_set_error(ctx, "running",
                        "repository %s is running; run repo_down first, or pass \"force\": true "
                        "to replace it while it runs",
                        repo);
        res = FERRY_FAIL;
        goto out;
    }
    if ((res = job_storage(ctx, param_str(params, "storage"), 0, &s, 1)) != FERRY_OK)
        goto out;
    char purpose[300];
    snprintf(purpose, sizeof(purpose), "pull %s", repo);
    if (lock_shared(s, purpose, LOCK_WAIT, NULL, NULL, &lk, &e) != 0 ||
        pull_resolve(s, from ? from : repo, point, from_machine ? from_machine : t.name, id,
                     sizeof(id), &e) != 0) {
        res = job_fail(ctx, &e, 1);
        goto out;
    }
    if ((res = pull_prepare(&t, live, elsewhere, &fresh, &uid, &gid)) != FERRY_OK)
        goto out;
    restore_req req = {.repository = from ? from : repo,
                       .point = id,
                       .dest = fresh,
                       .verify = param_bool(params, "verify", 1),
                       .fsync = param_bool(params, "fsync", 0),
                       .threads = (int)json_integer_value(json_object_get(params, "threads")),
                       .include = include ? pull_selects : NULL,
                       .include_arg = include};
    if ((res = pull_write(&t, s, &req, uid, gid, &j, result)) != FERRY_OK)
        goto out;
    if ((res = pull_swap_in(&t, fresh, live)) != FERRY_OK) {
        json_decref(*result);
        *result = NULL;
        goto out;
    }
    lock_release(lk);
    lk = NULL;
    json_object_set_new(*result, "path", json_string(live));
    json_object_set_new(*result, "machine", json_string(t.name ? t.name : ""));
    if (include)
        json_object_set(*result, "include", json_object_get(params, "include"));
    ferry_log(ctx, FERRY_LOG_INFO, "restored %s%s from snapshot %s of storage %s into %s",
              include ? "part of " : "", repo, id, s->name, live);
    ui_progress(&j.u, 100, "%s restored", repo);
    if (hc && !json_is_null(hc))
        res = pull_health(&t, repo, hc, *result);
out:
    lock_release(lk);
    storage_close(s);
    pattern_free(include);
    free(live);
    free(marker);
    free(fresh);
    target_close(&t);
    return res;
}

static ferry_result repo_verify_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    const char *repo = param_str(params, "repository");
    double sample = param_num(params, "sample", 100);
    if (repo && !check_name(ctx, "repository", repo))
        return FERRY_INVALID;
    if (!(sample > 0 && sample <= 100)) {
        ferry_set_error(ctx, "bad_parameter", "sample is a percentage: more than 0, at most 100");
        return FERRY_INVALID;
    }
    storage *s = NULL;
    ferry_result res = job_storage(ctx, param_str(params, "storage"), 0, &s, 1);
    if (res != FERRY_OK)
        return res;
    job j;
    job_init(&j, ctx);
    lock *lk = NULL;
    rerr e = {0};
    if (lock_shared(s, "verify", LOCK_WAIT, NULL, NULL, &lk, &e) != 0 ||
        repo_verify(s, repo, sample, &j.u, result, &e) != 0)
        res = job_fail(ctx, &e, 1);
    lock_release(lk);
    storage_close(s);
    return res;
}

static ferry_result repo_gc_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    json_t *config = ctx->host->config(ctx);
    double hours =
        param_num(params, "grace_hours", param_num(config, "gc_grace_hours", DEFAULT_GRACE_HOURS));
    json_decref(config);
    if (hours < 0) {
        ferry_set_error(ctx, "bad_parameter", "grace_hours must not be negative");
        return FERRY_INVALID;
    }
    /* A keep policy by hand: keep_* and retention_* (its keep-within rule), applied to every
     * group the repository and from_machine filters leave. */
    keep_policy policy;
    char err[200];
    const char *repo = param_str(params, "repository");
    const char *from = param_str(params, "from_machine");
    if (keep_policy_parse(params, &policy, err, sizeof(err)) != 0) {
        job_error(ctx, "bad_parameter", "%s", err);
        return FERRY_INVALID;
    }
    if (repo && !check_name(ctx, "repository", repo))
        return FERRY_INVALID;
    if ((repo || from) && !keep_policy_active(&policy)) {
        job_error(ctx, "bad_parameter",
                  "repository and from_machine choose the snapshots a keep policy applies to; "
                  "give keep_* or retention_days too (expiries always apply to every snapshot)");
        return FERRY_INVALID;
    }
    storage *s = NULL;
    ferry_result res = job_storage(ctx, param_str(params, "storage"), 0, &s, 1);
    if (res != FERRY_OK)
        return res;
    job j;
    job_init(&j, ctx);
    gc_req req = {.dry_run = param_bool(params, "dry_run", 0),
                  .full = param_bool(params, "full", 0),
                  .grace = (int64_t)(hours * 3600),
                  .now = (int64_t)time(NULL),
                  .policy = keep_policy_active(&policy) ? &policy : NULL,
                  .repository = repo,
                  .machine = from};
    rerr e = {0};
    if (repo_gc(s, &req, &j.u, result, &e) != 0)
        res = job_fail(ctx, &e, 1);
    storage_close(s);
    return res;
}

/* The storage named by a parameter, else the plugin config's key, else a fixed name. */
static char *pick_storage(ferry_ctx *ctx, const json_t *params, const char *param,
                          const char *config_key, const char *fallback)
{
    const char *name = param_str(params, param);
    if (name)
        return xstrdup(name);
    json_t *config = ctx->host->config(ctx);
    name = param_str(config, config_key);
    char *out = xstrdup(name ? name : fallback);
    json_decref(config);
    return out;
}

/*
 * The repositories of a remote machine's datastore into names: the directories of
 * DATASTORE/repositories whose names are valid (a '/' separates them: no name holds one).
 * 0, or -1 with the error set (the machine could not be reached).
 */
static int remote_repositories(target *t, json_t *names)
{
    char *dir = xasprintf("%s/repositories", t->datastore);
    char *q = sh_quote(dir);
    char *cmd = xasprintf("test ! -d %s || LC_ALL=C find %s -mindepth 1 -maxdepth 1 -type d "
                          "-printf '%%f/'",
                          q, q);
    char *out = NULL;
    int rc = machine_sh(t, cmd, NULL, &out);
    if (rc > 0)
        ferry_set_error(t->ctx, "failed", "cannot list %s on %s: %s", dir, t->name, out);
    for (char *p = rc == 0 ? out : NULL, *slash; p && (slash = strchr(p, '/')); p = slash + 1) {
        *slash = '\0';
        if (p[0] != '.' && valid_name(p))
            json_array_append_new(names, json_string(p));
    }
    free(out);
    free(cmd);
    free(q);
    free(dir);
    return rc == 0 ? 0 : -1;
}

/* Pushes the `repository` parameter, or every repository of the machine, to storage. */
static ferry_result push_all(ferry_ctx *ctx, const json_t *params, const char *storage_name,
                             int retry_transient, json_t **result)
{
    target t;
    ferry_result res = target_open(ctx, &t);
    if (res != FERRY_OK) {
        target_close(&t);
        return res;
    }
    json_t *names = json_array();
    const char *repo = param_str(params, "repository");
    if (repo) {
        json_array_append_new(names, json_string(repo));
    } else if (!t.local) {
        if (remote_repositories(&t, names) != 0) {
            json_decref(names);
            target_close(&t);
            return FERRY_RETRY;
        }
    } else {
        char *root = xasprintf("%s/repositories", t.datastore);
        DIR *d = opendir(root);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL)
            if (de->d_name[0] != '.' && valid_name(de->d_name))
                json_array_append_new(names, json_string(de->d_name));
        if (d)
            closedir(d);
        free(root);
    }
    json_t *pushed = json_array();
    size_t i;
    json_t *name;
    json_array_foreach (names, i, name) {
        json_t *one = NULL;
        res =
            push_one(ctx, &t, json_string_value(name), storage_name, params, retry_transient, &one);
        if (res != FERRY_OK)
            break;
        json_array_append_new(pushed, one);
    }
    if (res == FERRY_OK)
        *result = json_pack("{s:s,s:O}", "storage", storage_name, "pushed", pushed);
    json_decref(pushed);
    json_decref(names);
    target_close(&t);
    return res;
}

static ferry_result backup_with_retry_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    char *name = pick_storage(ctx, params, "storage", "default_storage", "default");
    ferry_result res = push_all(ctx, params, name, 1, result);
    free(name);
    return res;
}

static ferry_result backup_to_secondary_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    char *name = pick_storage(ctx, params, "secondary_storage", "secondary_storage", "secondary");
    const char *why =
        json_string_value(json_object_get(json_object_get(params, "failure"), "message"));
    ferry_log(ctx, FERRY_LOG_INFO, "backing up to the secondary storage %s%s%s", name,
              why ? " after: " : "", why ? why : "");
    ferry_result res = push_all(ctx, params, name, 1, result);
    free(name);
    return res;
}

static const ferry_param repo_push_params[] = {
    {"repository", FERRY_PARAM_STRING, 0, NULL,
     "Repository of the machine's datastore to back up (this or paths)."},
    {"paths", FERRY_PARAM_ARRAY, 0, NULL,
     "Absolute paths on the machine to back up instead of a repository, e.g. [\"/etc\", "
     "\"/var/www\"]: each is stored as the repository path-NAMES-HASH (\"/var/www\" -> "
     "path-var-www-<8 hex digits of its SHA-256>), the path recorded in the snapshot."},
    {"storage", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL,
     "Storage of the team to push to (ferry create storage)."},
    PUSH_PARAMS,
    {NULL, 0, 0, NULL, NULL},
};

static const ferry_param repo_pull_params[] = {
    {"repository", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL,
     "Repository to restore (replaced as a whole once the restore is complete)."},
    {"storage", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL, "Storage to restore from."},
    {"restore_point", FERRY_PARAM_STRING, 0, NULL,
     "\"latest\" (the default), a snapshot id, or a tag (a tag value or key=value); the "
     "newest match among the snapshots this machine (or from_machine) pushed wins; an id "
     "names its snapshot whichever machine pushed it."},
    {"version", FERRY_PARAM_STRING, 0, NULL,
     "The same as restore_point (the seed's deploy workflow names it so)."},
    {"from_machine", FERRY_PARAM_STRING, 0, NULL,
     "Resolve \"latest\" and tags among the snapshots this machine pushed instead of the "
     "item's own machine's (restoring one machine's data onto another)."},
    {"health_check", FERRY_PARAM_OBJECT, 0, NULL,
     "After the swap, start the repository (Ferryfile prep and up, as repo_up) and call "
     "health_check with this object, e.g. {\"endpoint\": \"/health\", \"timeout\": 300, "
     "\"retries\": 5}; the item fails naming the endpoint and its last answer when it stays "
     "unhealthy."},
    {"verify", FERRY_PARAM_BOOLEAN, 0, "true",
     "Read the restored files back and check them against the snapshot (every chunk is "
     "checked against its hash while restoring either way)."},
    {"force", FERRY_PARAM_BOOLEAN, 0, "false",
     "Replace the repository even while it is running (repo_up without repo_down)."},
    {"from_repository", FERRY_PARAM_STRING, 0, NULL,
     "Restore another repository's snapshot into this one (a copy or a move)."},
    {"fsync", FERRY_PARAM_BOOLEAN, 0, "false", "Flush the restored files to disk before the swap."},
    {"threads", FERRY_PARAM_INTEGER, 0, "0", "Worker threads; 0: one per core (at most 8)."},
    {"target", FERRY_PARAM_STRING, 0, NULL,
     "Restore into this absolute directory of the machine instead of the repository's own "
     "(which is then left alone, running or not): it must not exist or be empty, and may not "
     "be \"/\" or inside the datastore's .ferry directory."},
    {"include", FERRY_PARAM_ARRAY, 0, NULL,
     "A partial restore (needs target): the entries these paths or patterns of the snapshot "
     "select (exclude's gitignore syntax, relative to the repository, e.g. "
     "[\"/etc/app.conf\", \"data/\", \"*.sql\"]), what selected directories hold, and "
     "the directories leading to them."},
    {NULL, 0, 0, NULL, NULL},
};

static const ferry_param repo_verify_params[] = {
    {"storage", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL, "Storage to check."},
    {"repository", FERRY_PARAM_STRING, 0, NULL,
     "Check only this repository's snapshots and the packs and chunks they use; damage that "
     "only other repositories use does not count."},
    {"sample", FERRY_PARAM_NUMBER, 0, "100",
     "Percentage of packs to read and check blob by blob (100: all); the index and every "
     "snapshot tree are always checked."},
    {NULL, 0, 0, NULL, NULL},
};

static const ferry_param repo_gc_params[] = {
    {"storage", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL, "Storage to clean."},
    {"dry_run", FERRY_PARAM_BOOLEAN, 0, "false", "Report what would go; change nothing."},
    {"full", FERRY_PARAM_BOOLEAN, 0, "false",
     "Also delete packs that no index lists (left by pushes killed mid-upload) once the "
     "collector first saw them at least grace_hours ago."},
    {"grace_hours", FERRY_PARAM_NUMBER, 0, NULL,
     "Unreferenced packs younger than this are kept (default 24, or gc_grace_hours from the "
     "plugin config), so an interrupted push can still reuse them."},
    KEEP_PARAMS("Policy: keep "),
    {"retention_days", FERRY_PARAM_NUMBER, 0, NULL,
     "A keep policy's keep-within rule: keep every snapshot of a group this many days younger "
     "than the group's newest (alone, it is the whole policy)."},
    {"retention_years", FERRY_PARAM_NUMBER, 0, NULL,
     "Years added to retention_days (a year is 365.25 days)."},
    {"repository", FERRY_PARAM_STRING, 0, NULL,
     "Apply the keep policy to this repository's snapshots only."},
    {"from_machine", FERRY_PARAM_STRING, 0, NULL,
     "Apply the keep policy to the snapshots this machine pushed only."},
    {NULL, 0, 0, NULL, NULL},
};

static const ferry_param backup_with_retry_params[] = {
    {"repository", FERRY_PARAM_STRING, 0, NULL,
     "Repository to back up; default: every repository of the machine."},
    {"storage", FERRY_PARAM_STRING, 0, NULL,
     "Storage to push to; default: default_storage from the plugin config, else the team's "
     "storage named \"default\"."},
    PUSH_PARAMS,
    {NULL, 0, 0, NULL, NULL},
};

static const ferry_param backup_to_secondary_params[] = {
    {"repository", FERRY_PARAM_STRING, 0, NULL,
     "Repository to back up; default: every repository of the machine."},
    {"secondary_storage", FERRY_PARAM_STRING, 0, NULL,
     "Storage to push to; default: secondary_storage from the plugin config, else the team's "
     "storage named \"secondary\". A `storage` parameter (the primary's) is ignored."},
    PUSH_PARAMS,
    {NULL, 0, 0, NULL, NULL},
};

const ferry_function fn_repo_push = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_NEEDS_MACHINE | FERRY_FN_IDEMPOTENT,
    .name = "repo_push",
    .summary = "Back up a repository to a storage as a new snapshot",
    .description = "Deduplicating, compressed (zstd) and, when the storage vault has a "
                   "passphrase, encrypted (AES-256-GCM) backup. Only data the storage lacks is "
                   "uploaded; files unchanged since the last snapshot are not read. With "
                   "retention, expired snapshots are removed afterwards. See "
                   "docs/repositories.md.",
    FERRY_PARAMS(repo_push_params),
    .default_timeout = 86400,
    .run = repo_push_run,
};

const ferry_function fn_repo_pull = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_NEEDS_MACHINE | FERRY_FN_IDEMPOTENT,
    .name = "repo_pull",
    .summary = "Restore a repository from a storage",
    .description = "Restores a snapshot into a new directory beside the repository, checking "
                   "every byte against its hash, then swaps it in. \"latest\" and tags are "
                   "the machine's own snapshots (or from_machine's). Refuses a running "
                   "repository unless `force` is set. With `health_check` it then starts the "
                   "repository (Ferryfile prep and up) and fails unless the endpoint becomes "
                   "healthy. On an SSH machine the bridge decrypts and checks the data and "
                   "streams it to GNU tar there (no ferry needed on the machine). `target` "
                   "restores elsewhere, `include` restores part of the snapshot.",
    FERRY_PARAMS(repo_pull_params),
    .default_timeout = 86400,
    .run = repo_pull_run,
};

const ferry_function fn_repo_verify = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_IDEMPOTENT,
    .name = "repo_verify",
    .summary = "Check a storage's data and snapshots",
    .description = "Reads every pack (or a sample) and checks each chunk's seal and hash, "
                   "checks the index and every snapshot tree, and names each damaged object "
                   "and the files that use it.",
    FERRY_PARAMS(repo_verify_params),
    .default_timeout = 86400,
    .run = repo_verify_run,
};

const ferry_function fn_repo_gc = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_IDEMPOTENT,
    .name = "repo_gc",
    .summary = "Apply retention and collect unused data in a storage",
    .description = "Removes expired snapshots (never the newest of a repository from a "
                   "machine) and, with keep_* or retention_days, applies that keep policy to "
                   "each repository's snapshots from each machine (restic's forget; "
                   "`repository` and `from_machine` narrow it), then deletes or repacks packs "
                   "the removed snapshots alone used. The result lists each decision and its "
                   "reasons; dry_run changes nothing. Runs only when no push, pull or verify "
                   "uses the storage; repo_push with retention or keep_* runs it too.",
    FERRY_PARAMS(repo_gc_params),
    .default_timeout = 86400,
    .run = repo_gc_run,
};

const ferry_function fn_backup_with_retry = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_NEEDS_MACHINE | FERRY_FN_IDEMPOTENT,
    .name = "backup_with_retry",
    .summary = "repo_push of one or every repository, retrying transient failures",
    .description = "Like repo_push (whose transient failures -- storage not mounted or full, "
                   "storage busy, I/O error -- return RETRY too, so max_retries and "
                   "retry_delay apply), but without `repository` it backs up every repository "
                   "of the machine and without `storage` it uses the default storage; pair it "
                   "with on_failure.fallback_function backup_to_secondary.",
    FERRY_PARAMS(backup_with_retry_params),
    .default_timeout = 86400,
    .run = backup_with_retry_run,
};

const ferry_function fn_backup_to_secondary = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_NEEDS_MACHINE | FERRY_FN_IDEMPOTENT,
    .name = "backup_to_secondary",
    .summary = "Back up to the secondary storage (a fallback for a failed backup)",
    .description = "Pushes to `secondary_storage`, else the plugin config's secondary_storage, "
                   "else the team's storage named \"secondary\".",
    FERRY_PARAMS(backup_to_secondary_params),
    .default_timeout = 86400,
    .run = backup_to_secondary_run,
};

static const ferry_function *const repo_functions[] = {
    &fn_repo_new,  &fn_repo_rm,           &fn_repo_list,
    &fn_repo_up,   &fn_repo_down,         &fn_repo_snapshot,
    &fn_repo_push, &fn_repo_pull,         &fn_repo_verify,
    &fn_repo_gc,   &fn_backup_with_retry, &fn_backup_to_secondary,
    &fn_repo_replicate, &fn_repo_snapshots, &fn_repo_ls,
    &fn_repo_diff, NULL,
};

FERRY_PLUGIN(.name = "repo", .version = "1.0.0",
             .summary = "Repositories: snapshot, push, pull, replicate, up, down, retention, verify",
             .functions = repo_functions,
             /* an item naming a repository runs its hooks in it (see machine.h) */
             .hook_dir = "{datastore}/repositories/{repository}")
