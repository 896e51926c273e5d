/*
 * Queue functions that read a storage and change nothing: repo_snapshots, repo_ls and
 * repo_diff (browse.h does the work). `ferry repo snapshots|ls|diff` runs them in a worker
 * without the queue (host/cli/cli_repo.c), as restic's snapshots, ls and diff.
 */
#include <string.h>

#include "browse.h"
#include "functions.h"
#include "jobs.h"

/* What the three share: the storage opened, its snapshots read (of the repository filter). */
typedef struct browse {
    ferry_ctx *ctx;
    const char *storage_name, *repository, *machine;
    storage *s;
    snap_list l;
} browse;

static ferry_result browse_open(ferry_ctx *ctx, const json_t *params, browse *b)
{
    memset(b, 0, sizeof(*b));
    b->ctx = ctx;
    b->storage_name = param_str(params, "storage");
    b->repository = param_str(params, "repository");
    b->machine = param_str(params, "from_machine");
    if (b->repository && !check_name(ctx, "repository", b->repository))
        return FERRY_INVALID;
    ferry_result res = job_storage(ctx, b->storage_name, 0, &b->s, 1);
    if (res != FERRY_OK)
        return res;
    rerr e = {0};
    if (snap_list_read(b->s, b->repository, &b->l, &e) != 0)
        return job_fail(ctx, &e, 1);
    return FERRY_OK;
}

static void browse_close(browse *b)
{
    snap_list_free(&b->l);
    storage_close(b->s);
}

/* The snapshot a parameter names, with its tree loaded into t. NULL with the error set. */
static const snap_info *browse_tree(browse *b, const char *what, tree *t, ferry_result *res)
{
    rerr e = {0};
    const snap_info *si = snap_find(&b->l, what, b->repository, b->machine, b->storage_name, &e);
    if (si == NULL || snap_tree(b->s, si, t, &e) != 0) {
        *res = job_fail(b->ctx, &e, 1);
        return NULL;
    }
    return si;
}

static ferry_result repo_snapshots_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    browse b;
    ferry_result res = browse_open(ctx, params, &b);
    if (res == FERRY_OK) {
        json_t *rows = json_array();
        for (size_t i = 0; i < b.l.n; i++)
            if (b.machine == NULL || (snap_machine(b.l.items[i].doc) &&
                                      strcmp(snap_machine(b.l.items[i].doc), b.machine) == 0))
                json_array_append_new(rows, snap_row(&b.l.items[i]));
        *result = json_pack("{s:s,s:o}", "storage", b.storage_name, "snapshots", rows);
    }
    browse_close(&b);
    return res;
}

static ferry_result repo_ls_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    browse b;
    tree t = {0};
    ferry_result res = browse_open(ctx, params, &b);
    const snap_info *si = NULL;
    if (res == FERRY_OK)
        si = browse_tree(&b, param_str(params, "snapshot"), &t, &res);
    if (si != NULL) {
        char label[600];
        snprintf(label, sizeof(label), "snapshot %s/%s in storage %s", si->repository, si->id,
                 b.storage_name);
        json_t *entries = NULL;
        rerr e = {0};
        const char *path = param_str(params, "path");
        if (browse_ls(&t, path ? path : "", param_bool(params, "recursive", 0), label, &entries,
                      &e) != 0)
            res = job_fail(ctx, &e, 0);
        else
            *result = json_pack("{s:s,s:o,s:o}", "storage", b.storage_name, "snapshot",
                                snap_row(si), "entries", entries);
    }
    tree_free(&t);
    browse_close(&b);
    return res;
}

static ferry_result repo_diff_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    browse b;
    tree from = {0}, to = {0};
    ferry_result res = browse_open(ctx, params, &b);
    const snap_info *a = NULL, *z = NULL;
    if (res == FERRY_OK && (a = browse_tree(&b, param_str(params, "from"), &from, &res)) != NULL)
        z = browse_tree(&b, param_str(params, "to"), &to, &res);
    if (z != NULL) {
        *result = browse_diff(&from, &to, param_bool(params, "metadata", 0));
        json_object_set_new(*result, "storage", json_string(b.storage_name));
        json_object_set_new(*result, "from", snap_row(a));
        json_object_set_new(*result, "to", snap_row(z));
    }
    tree_free(&from);
    tree_free(&to);
    browse_close(&b);
    return res;
}

#define BROWSE_FILTERS                                                                             \
    {"repository", FERRY_PARAM_STRING, 0, NULL, "Only snapshots of this repository."},             \
    {                                                                                              \
        "from_machine", FERRY_PARAM_STRING, 0, NULL,                                               \
            "Only snapshots this machine pushed (the manifest's machine)."                         \
    }

static const ferry_param repo_snapshots_params[] = {
    {"storage", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL, "The storage to read."},
    BROWSE_FILTERS,
    FERRY_PARAM_END,
};

static const ferry_param repo_ls_params[] = {
    {"storage", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL, "The storage to read."},
    {"snapshot", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL,
     "latest, REPOSITORY/ID or ID, where ID may be a unique prefix of a snapshot id."},
    {"path", FERRY_PARAM_STRING, 0, "\"\"",
     "A path in the snapshot: that entry and, for a directory, what it holds (\"\": the top)."},
    {"recursive", FERRY_PARAM_BOOLEAN, 0, "false",
     "List everything below the path, not only what it holds directly."},
    BROWSE_FILTERS,
    FERRY_PARAM_END,
};

static const ferry_param repo_diff_params[] = {
    {"storage", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL, "The storage to read."},
    {"from", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL,
     "The older snapshot, named as repo_ls's snapshot."},
    {"to", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL,
     "The newer snapshot, named as repo_ls's snapshot."},
    {"metadata", FERRY_PARAM_BOOLEAN, 0, "false",
     "Also report entries whose mode, owner or mtime alone changed (U)."},
    BROWSE_FILTERS,
    FERRY_PARAM_END,
};

const ferry_function fn_repo_snapshots = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_IDEMPOTENT,
    .name = "repo_snapshots",
    .summary = "List a storage's snapshots (reads the storage only)",
    .description = "Every snapshot of the storage, oldest first, as repo_list lists them: "
                   "repository, id, machine, time, expires, tags, source and stats. Writes "
                   "nothing and takes no lock.",
    FERRY_PARAMS(repo_snapshots_params),
    .default_timeout = 600,
    .run = repo_snapshots_run,
};

const ferry_function fn_repo_ls = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_IDEMPOTENT,
    .name = "repo_ls",
    .summary = "List the files of a snapshot (reads the storage only)",
    .description = "Loads the snapshot's tree and lists the entries at path with type, mode, "
                   "owner, size, mtime and link target. A name that is not UTF-8 comes with "
                   "its exact bytes in path_hex. Writes nothing and takes no lock.",
    FERRY_PARAMS(repo_ls_params),
    .default_timeout = 600,
    .run = repo_ls_run,
};

const ferry_function fn_repo_diff = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_IDEMPOTENT,
    .name = "repo_diff",
    .summary = "Compare two snapshots (reads the storage only)",
    .description = "What was added (+), removed (-), changed in content (M) or type (T), and "
                   "with metadata in mode, owner or mtime (U), from one snapshot to the other, "
                   "in tree order, with counts. Writes nothing and takes no lock.",
    FERRY_PARAMS(repo_diff_params),
    .default_timeout = 600,
    .run = repo_diff_run,
};
