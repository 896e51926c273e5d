/*
 * Queue functions that manage repositories on their machine: repo_new, repo_rm, repo_list,
 * repo_up, repo_down and repo_snapshot. They work through the exec service (or, for a
 * local machine, directly on the files), so local and remote machines behave the same.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "browse.h"
#include "functions.h"
#include "jobs.h"
#include "snapshot.h"

static const ferry_param repository_only[] = {
    {"repository", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL,
     "Name of the repository: a directory under <datastore>/repositories."},
    {NULL, 0, 0, NULL, NULL},
};

/* Opens the machine and checks the repository parameter. */
static ferry_result open_repo(ferry_ctx *ctx, const json_t *params, target *t, const char **repo)
{
    *repo = param_str(params, "repository");
    if (!check_name(ctx, "repository", *repo))
        return FERRY_INVALID;
    return target_open(ctx, t);
}

/* Writes a file on the machine (locally, or through exec with the text on stdin). */
static int put_text(target *t, const char *path, const char *text, int executable)
{
    if (t->local) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, executable ? 0755 : 0644);
        size_t len = strlen(text);
        int ok = fd >= 0 && write(fd, text, len) == (ssize_t)len;
        if (fd >= 0)
            close(fd);
        if (!ok)
            ferry_set_error(t->ctx, "failed", "cannot write %s: %s", path, strerror(errno));
        return ok ? 0 : -1;
    }
    char *q = sh_quote(path);
    char *cmd =
        xasprintf("cat > %s%s%s", q, executable ? " && chmod 755 " : "", executable ? q : "");
    json_t *opts = json_pack("{s:s}", "stdin", text);
    int rc = machine_sh(t, cmd, opts, NULL);
    json_decref(opts);
    free(cmd);
    free(q);
    if (rc > 0)
        ferry_set_error(t->ctx, "failed", "cannot write %s on %s", path, t->name);
    return rc == 0 ? 0 : -1;
}

static ferry_result repo_new_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    target t;
    const char *repo;
    ferry_result res = open_repo(ctx, params, &t, &repo);
    if (res != FERRY_OK)
        return res;
    char *dir = repo_dir(&t, repo);
    char *q = sh_quote(dir);
    char *parent = xasprintf("%s/repositories", t.datastore);
    char *qp = sh_quote(parent);
    const char *ferryfile = param_str(params, "ferryfile");
    if (machine_exists(&t, dir)) {
        ferry_set_error(ctx, "exists", "repository %s already exists on %s (%s)", repo, t.name,
                        dir);
        res = FERRY_FAIL;
        goto out;
    }
    char *cmd = xasprintf("mkdir -p %s && mkdir %s", qp, q);
    char *out = NULL;
    int rc = machine_sh(&t, cmd, NULL, &out);
    free(cmd);
    if (rc != 0) {
        if (rc > 0)
            ferry_set_error(ctx, "failed", "cannot create %s on %s: %s", dir, t.name, out);
        free(out);
        res = FERRY_FAIL;
        goto out;
    }
    free(out);
    if (ferryfile) {
        char *path = xasprintf("%s/Ferryfile", dir);
        int wrc = put_text(&t, path, ferryfile, 1);
        free(path);
        if (wrc != 0) {
            res = FERRY_FAIL;
            goto out;
        }
    }
    ferry_log(ctx, FERRY_LOG_INFO, "created repository %s at %s", repo, dir);
    *result =
        json_pack("{s:s,s:s,s:b}", "repository", repo, "path", dir, "ferryfile", ferryfile != NULL);
out:
    free(q);
    free(qp);
    free(parent);
    free(dir);
    target_close(&t);
    return res;
}

static ferry_result repo_rm_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    target t;
    const char *repo;
    ferry_result res = open_repo(ctx, params, &t, &repo);
    if (res != FERRY_OK)
        return res;
    char *dir = repo_dir(&t, repo);
    char *snaps = snapshots_dir(&t, repo);
    char *marker = running_marker(&t, repo);
    int force = param_bool(params, "force", 0);
    if (!machine_exists(&t, dir)) {
        ferry_set_error(ctx, "not_found", "repository %s does not exist on %s", repo, t.name);
        res = FERRY_FAIL;
    } else if (machine_exists(&t, marker) && !force) {
        ferry_set_error(ctx, "running",
                        "repository %s is running (repo_up); run repo_down first, or pass "
                        "\"force\": true",
                        repo);
        res = FERRY_FAIL;
    } else {
        if (machine_exists(&t, marker)) {
            const char *down[] = {"down"};
            int ran = 0;
            if (ferryfile_run(&t, repo, down, 1, &ran) != FERRY_OK)
                ferry_log(ctx, FERRY_LOG_WARN, "down failed; removing %s anyway (force)", repo);
        }
        if (machine_rmtree(&t, dir) != 0 || machine_rmtree(&t, snaps) != 0 ||
            machine_rmtree(&t, marker) != 0)
            res = FERRY_FAIL;
        else
            *result = json_pack("{s:s,s:s,s:b}", "repository", repo, "path", dir, "removed", 1);
    }
    free(dir);
    free(snaps);
    free(marker);
    target_close(&t);
    return res;
}

static uint64_t du_total;
static int du_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)flag;
    (void)ftw;
    du_total += (uint64_t)st->st_blocks * 512;
    return 0;
}

/* Lists the names in a directory of the machine, sorted ("" entries skipped). */
static json_t *list_names(target *t, const char *dir)
{
    json_t *names = json_array();
    if (t->local) {
        DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL)
            if (de->d_name[0] != '.')
                json_array_append_new(names, json_string(de->d_name));
        if (d)
            closedir(d);
    } else {
        char *q = sh_quote(dir);
        char *cmd = xasprintf("ls -1 %s 2>/dev/null || true", q);
        char *out = NULL;
        if (machine_sh(t, cmd, NULL, &out) == 0)
            for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
                json_array_append_new(names, json_string(line));
        free(out);
        free(cmd);
        free(q);
    }
    /* sort */
    size_t n = json_array_size(names);
    for (size_t i = 1; i < n; i++)
        for (size_t k = i; k > 0 && strcmp(json_string_value(json_array_get(names, k - 1)),
                                           json_string_value(json_array_get(names, k))) > 0;
             k--) {
            json_t *a = json_incref(json_array_get(names, k - 1));
            json_array_set(names, k - 1, json_array_get(names, k));
            json_array_set_new(names, k, a);
        }
    return names;
}

static json_t *describe_repo(target *t, const char *name)
{
    char *dir = repo_dir(t, name);
    char *ff = xasprintf("%s/Ferryfile", dir);
    char *marker = running_marker(t, name);
    char *snaps = snapshots_dir(t, name);
    json_int_t size = -1;
    if (t->local) {
        du_total = 0; /* nftw has no context argument; run() is single-threaded here */
        if (nftw(dir, du_entry, 32, FTW_PHYS) == 0)
            size = (json_int_t)du_total;
    } else {
        char *q = sh_quote(dir);
        char *cmd = xasprintf("du -sB1 %s | cut -f1", q);
        char *out = NULL;
        if (machine_sh(t, cmd, NULL, &out) == 0)
            size = strtoll(out, NULL, 10);
        free(out);
        free(cmd);
        free(q);
    }
    json_t *row = json_pack("{s:s,s:s,s:I,s:b,s:b,s:o}", "name", name, "path", dir, "size_bytes",
                            size, "ferryfile", machine_exists(t, ff), "running",
                            machine_exists(t, marker), "local_snapshots", list_names(t, snaps));
    free(dir);
    free(ff);
    free(marker);
    free(snaps);
    return row;
}

/* Snapshots of a storage (optionally of one repository), for repo_list. */
static ferry_result list_storage(ferry_ctx *ctx, const char *name, const char *repo, json_t **out)
{
    storage *s = NULL;
    ferry_result res = job_storage(ctx, name, 0, &s, 0);
    if (res != FERRY_OK)
        return res;
    snap_list l;
    rerr e = {0};
    if (snap_list_read(s, repo, &l, &e) != 0) {
        snap_list_free(&l);
        storage_close(s);
        return job_fail(ctx, &e, 0);
    }
    *out = json_array();
    for (size_t i = 0; i < l.n; i++)
        json_array_append_new(*out, snap_row(&l.items[i]));
    snap_list_free(&l);
    storage_close(s);
    return FERRY_OK;
}

static ferry_result repo_list_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    const char *storage_name = param_str(params, "storage");
    const char *only = param_str(params, "repository");
    if (only && !check_name(ctx, "repository", only))
        return FERRY_INVALID;
    target t;
    ferry_result res = target_open(ctx, &t);
    if (res != FERRY_OK)
        return res;
    char *root = xasprintf("%s/repositories", t.datastore);
    json_t *names = list_names(&t, root);
    json_t *repos = json_array();
    size_t i;
    json_t *name;
    json_array_foreach (names, i, name) {
        if (!only || strcmp(only, json_string_value(name)) == 0)
            json_array_append_new(repos, describe_repo(&t, json_string_value(name)));
    }
    json_decref(names);
    free(root);
    *result = json_pack("{s:s,s:s,s:o}", "machine", t.name ? t.name : "", "datastore", t.datastore,
                        "repositories", repos);
    if (storage_name) {
        json_t *snaps = NULL;
        res = list_storage(ctx, storage_name, only, &snaps);
        if (res == FERRY_OK)
            json_object_set_new(*result, "snapshots", snaps);
    }
    target_close(&t);
    return res;
}

static ferry_result set_running(target *t, const char *repo, int running)
{
    char *marker = running_marker(t, repo);
    char *q = sh_quote(marker);
    char *cmd = running ? xasprintf("mkdir -p \"$(dirname %s)\" && date -u +%%FT%%TZ > %s", q, q)
                        : xasprintf("rm -f %s", q);
    int rc = machine_sh(t, cmd, NULL, NULL);
    free(cmd);
    free(q);
    free(marker);
    if (rc > 0)
        ferry_set_error(t->ctx, "failed", "cannot update the running marker of %s", repo);
    return rc == 0 ? FERRY_OK : FERRY_FAIL;
}

ferry_result repo_start(target *t, const char *repository, int prep_only, int *ran)
{
    const char *fns[] = {"prep", "up"};
    ferry_result res = ferryfile_run(t, repository, fns, prep_only ? 1 : 2, ran);
    if (res == FERRY_OK && !prep_only)
        res = set_running(t, repository, 1);
    return res;
}

static ferry_result repo_up_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    target t;
    const char *repo;
    ferry_result res = open_repo(ctx, params, &t, &repo);
    if (res != FERRY_OK)
        return res;
    const char *option = param_str(params, "option");
    int prep_only = param_bool(params, "prep_only", 0);
    if (option && strcmp(option, "prep-only") == 0)
        prep_only = 1;
    else if (option && option[0]) {
        ferry_set_error(ctx, "bad_parameter", "option must be \"prep-only\" or empty, not \"%s\"",
                        option);
        target_close(&t);
        return FERRY_INVALID;
    }
    int ran = 0;
    res = repo_start(&t, repo, prep_only, &ran);
    if (res == FERRY_OK) {
        if (!ran)
            ferry_log(ctx, FERRY_LOG_INFO, "%s has no Ferryfile: nothing to start", repo);
        *result = json_pack("{s:s,s:b,s:b,s:b}", "repository", repo, "ferryfile", ran, "prep_only",
                            prep_only, "running", !prep_only);
    }
    target_close(&t);
    return res;
}

static ferry_result repo_down_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    target t;
    const char *repo;
    ferry_result res = open_repo(ctx, params, &t, &repo);
    if (res != FERRY_OK)
        return res;
    const char *fns[] = {"down"};
    int ran = 0;
    res = ferryfile_run(&t, repo, fns, 1, &ran);
    if (res == FERRY_OK)
        res = set_running(&t, repo, 0);
    if (res == FERRY_OK)
        *result = json_pack("{s:s,s:b,s:b}", "repository", repo, "ferryfile", ran, "running", 0);
    target_close(&t);
    return res;
}

/*
 * The snapshot script: a read-only btrfs snapshot when the repository is a subvolume, else
 * a copy with cp -a (reflinks where the filesystem has them; holes, hard links, owners and
 * times preserved) under a temporary name renamed into place. Then the oldest snapshots
 * beyond `keep` are removed. $1 repository dir, $2 snapshots dir, $3 id, $4 keep.
 */
static const char snapshot_script[] =
    "set -eu\n"
    "src=$1 dir=$2 id=$3 keep=$4\n"
    "mkdir -p \"$dir\"\n"
    "if [ -e \"$dir/$id\" ]; then echo \"snapshot $id exists already\" >&2; exit 3; fi\n"
    "if command -v btrfs >/dev/null 2>&1 && btrfs subvolume show \"$src\" >/dev/null 2>&1; then\n"
    "  btrfs subvolume snapshot -r \"$src\" \"$dir/$id\" >/dev/null; echo btrfs\n"
    "else\n"
    "  rm -rf \"$dir/.$id.tmp\"\n"
    "  cp -a --reflink=auto \"$src\" \"$dir/.$id.tmp\"\n"
    "  mv \"$dir/.$id.tmp\" \"$dir/$id\"; echo copy\n"
    "fi\n"
    "find \"$dir\" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%C@ %f\\n' | sort -rn |\n"
    "  tail -n +$((keep + 1)) | cut -d' ' -f2- | while IFS= read -r old; do\n"
    "    btrfs subvolume delete \"$dir/$old\" >/dev/null 2>&1 || rm -rf -- \"$dir/$old\"\n"
    "    echo \"pruned $old\"\n"
    "  done\n";

static ferry_result repo_snapshot_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    target t;
    const char *repo;
    ferry_result res = open_repo(ctx, params, &t, &repo);
    if (res != FERRY_OK)
        return res;
    char id[129];
    const char *given = param_str(params, "snapshot_id");
    json_int_t keep = json_integer_value(json_object_get(params, "keep"));
    if ((given && !check_name(ctx, "snapshot_id", given)) || keep < 1) {
        if (keep < 1)
            ferry_set_error(ctx, "bad_parameter", "keep must be at least 1");
        target_close(&t);
        return FERRY_INVALID;
    }
    if (given)
        snprintf(id, sizeof(id), "%s", given);
    else
        snap_default_id(id, sizeof(id));
    char *dir = repo_dir(&t, repo), *snaps = snapshots_dir(&t, repo);
    char *qscript = sh_quote(snapshot_script), *qdir = sh_quote(dir), *qsnaps = sh_quote(snaps);
    char *cmd =
        xasprintf("sh -c %s snapshot %s %s %s %lld", qscript, qdir, qsnaps, id, (long long)keep);
    char *out = NULL;
    int rc = -1;
    if (!machine_exists(&t, dir)) {
        ferry_set_error(ctx, "not_found", "repository %s does not exist on %s", repo, t.name);
        res = FERRY_FAIL;
    } else if ((rc = machine_sh(&t, cmd, NULL, &out)) != 0) {
        if (rc > 0)
            ferry_set_error(ctx, rc == 3 ? "exists" : "failed", "snapshot of %s failed: %s", repo,
                            out ? out : "");
        res = FERRY_FAIL;
    } else {
        json_t *pruned = json_array();
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
            if (strncmp(line, "pruned ", 7) == 0)
                json_array_append_new(pruned, json_string(line + 7));
        char *path = xasprintf("%s/%s", snaps, id);
        *result =
            json_pack("{s:s,s:s,s:s,s:s,s:o}", "repository", repo, "snapshot_id", id, "path", path,
                      "method", strncmp(out, "btrfs", 5) == 0 ? "btrfs" : "copy", "pruned", pruned);
        ferry_log(ctx, FERRY_LOG_INFO, "snapshot %s of %s at %s", id, repo, path);
        free(path);
    }
    free(out);
    free(cmd);
    free(qscript);
    free(qdir);
    free(qsnaps);
    free(dir);
    free(snaps);
    target_close(&t);
    return res;
}

static const ferry_param repo_new_params[] = {
    {"repository", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL,
     "Name of the new repository: a directory under <datastore>/repositories."},
    {"ferryfile", FERRY_PARAM_STRING, 0, NULL,
     "Text of the repository's Ferryfile (bash defining prep, up and down), if any."},
    {NULL, 0, 0, NULL, NULL},
};

static const ferry_param repo_rm_params[] = {
    {"repository", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL, "Repository to remove."},
    {"force", FERRY_PARAM_BOOLEAN, 0, "false",
     "Remove a running repository too (its Ferryfile's down runs first)."},
    {NULL, 0, 0, NULL, NULL},
};

static const ferry_param repo_list_params[] = {
    {"repository", FERRY_PARAM_STRING, 0, NULL, "Only this repository."},
    {"storage", FERRY_PARAM_STRING, 0, NULL,
     "Also list the snapshots in this storage (of the repository, or of all)."},
    {NULL, 0, 0, NULL, NULL},
};

static const ferry_param repo_up_params[] = {
    {"repository", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL, "Repository to start."},
    {"option", FERRY_PARAM_STRING, 0, NULL,
     "\"prep-only\": run the Ferryfile's prep and not up (the repository is not marked "
     "running)."},
    {"prep_only", FERRY_PARAM_BOOLEAN, 0, NULL, "The same as option \"prep-only\"."},
    {NULL, 0, 0, NULL, NULL},
};

static const ferry_param repo_snapshot_params[] = {
    {"repository", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL, "Repository to snapshot."},
    {"snapshot_id", FERRY_PARAM_STRING, 0, NULL,
     "Id of the snapshot; default: the UTC time, YYYYmmdd_HHMMSS."},
    {"keep", FERRY_PARAM_INTEGER, 0, "3",
     "Local snapshots of the repository to keep; older ones are removed."},
    {NULL, 0, 0, NULL, NULL},
};

const ferry_function fn_repo_new = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_NEEDS_MACHINE,
    .name = "repo_new",
    .summary = "Create a repository on the machine",
    .description = "Creates <datastore>/repositories/<repository>, with a Ferryfile when "
                   "`ferryfile` is given. Fails if the repository exists.",
    FERRY_PARAMS(repo_new_params),
    .default_timeout = 120,
    .run = repo_new_run,
};

const ferry_function fn_repo_rm = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_NEEDS_MACHINE | FERRY_FN_IDEMPOTENT,
    .name = "repo_rm",
    .summary = "Remove a repository and its local snapshots from the machine",
    .description = "Refuses a running repository unless `force` is set. Snapshots already "
                   "pushed to storages are not touched.",
    FERRY_PARAMS(repo_rm_params),
    .default_timeout = 3600,
    .run = repo_rm_run,
};

const ferry_function fn_repo_list = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_NEEDS_MACHINE | FERRY_FN_IDEMPOTENT,
    .name = "repo_list",
    .summary = "List the machine's repositories (and a storage's snapshots)",
    .description = "Each repository with its size, whether it has a Ferryfile, whether it is "
                   "running and its local snapshots; with `storage`, the snapshots stored there.",
    FERRY_PARAMS(repo_list_params),
    .default_timeout = 600,
    .run = repo_list_run,
};

const ferry_function fn_repo_up = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_NEEDS_MACHINE,
    .name = "repo_up",
    .summary = "Start a repository's services (Ferryfile prep and up)",
    .description = "Runs the Ferryfile's prep then up with bash in the repository directory "
                   "(prep only with option \"prep-only\") and marks the repository running. "
                   "Without a Ferryfile it only marks it running.",
    FERRY_PARAMS(repo_up_params),
    .default_timeout = 1800,
    .run = repo_up_run,
};

const ferry_function fn_repo_down = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_NEEDS_MACHINE | FERRY_FN_IDEMPOTENT,
    .name = "repo_down",
    .summary = "Stop a repository's services (Ferryfile down)",
    .description = "Runs the Ferryfile's down with bash in the repository directory and "
                   "clears the running mark, so repo_pull may replace the repository.",
    FERRY_PARAMS(repository_only),
    .default_timeout = 1800,
    .run = repo_down_run,
};

const ferry_function fn_repo_snapshot = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_NEEDS_MACHINE,
    .name = "repo_snapshot",
    .summary = "Take a local point-in-time snapshot of a repository",
    .description = "A read-only btrfs snapshot when the repository is a subvolume, else a "
                   "copy (reflinked where the filesystem can) under "
                   "<datastore>/snapshots/<repository>/<snapshot_id>. repo_push with the same "
                   "snapshot_id pushes it.",
    FERRY_PARAMS(repo_snapshot_params),
    .default_timeout = 3600,
    .run = repo_snapshot_run,
};
