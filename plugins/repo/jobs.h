/*
 * Glue between queue functions and the engine: the ui backed by host services, error
 * outcomes, parameter access, storage opening. Used by the functions_*.c files.
 */
#ifndef REPO_JOBS_H
#define REPO_JOBS_H

#include <ferry/plugin.h>

#include "engine.h"
#include "machine.h"
#include "storage.h"

/* Seconds a push, pull or verify waits for a garbage collection holding the storage. */
#define LOCK_WAIT 120
/* Hours an unreferenced pack is kept (plugin config gc_grace_hours overrides it). */
#define DEFAULT_GRACE_HOURS 24.0

typedef struct job {
    ferry_ctx *ctx;
    ui u;
    double last_progress;
    char last_message[64];
} job;

/* Sets up a ui that reports through the host (progress at most every two seconds). */
void job_init(job *j, ferry_ctx *ctx);

/*
 * The outcome for an engine error, with the attempt's error set from it: E_INVALID ->
 * FERRY_INVALID; E_TRANSIENT -> FERRY_RETRY when retry_transient, else FERRY_FAIL; the rest
 * FERRY_FAIL.
 */
ferry_result job_fail(ferry_ctx *ctx, const rerr *e, int retry_transient);

/*
 * Sets the attempt's error (ferry_set_error) and keeps a copy that job_last_error returns,
 * so a function running several steps (repo_replicate's targets) can report each step's
 * cause. *code, when code is not NULL, receives the error's code.
 */
void job_error(ferry_ctx *ctx, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *job_last_error(const char **code);

/* Parameter helpers: the value, or NULL / the fallback when absent or null. */
const char *param_str(const json_t *params, const char *name);
int param_bool(const json_t *params, const char *name, int fallback);
double param_num(const json_t *params, const char *name, double fallback);

/* Checks a repository (or snapshot) name parameter; sets the error and returns 0 if bad. */
int check_name(ferry_ctx *ctx, const char *what, const char *value);

/* The vault of the named storage of the job's team (new reference), or NULL with the
 * attempt's error set (no such storage). Never log it: it holds the credentials. */
json_t *job_vault(ferry_ctx *ctx, const char *name);

/*
 * Opens the named storage of the job's team. Returns FERRY_OK with *out set, or an outcome
 * with the error set.
 */
ferry_result job_storage(ferry_ctx *ctx, const char *name, int create, storage **out,
                         int retry_transient);

/* Refuses remote machines for functions that stream file data in the worker. */
ferry_result require_local(target *t, const char *function);

/* Parameters shared by repo_push, backup_with_retry and backup_to_secondary. */
#define PUSH_PARAMS                                                                                \
    {"snapshot_id", FERRY_PARAM_STRING, 0, NULL,                                                   \
     "Id of the new snapshot; a local snapshot of that id (repo_snapshot) is pushed when "         \
     "present. Default: the UTC time, YYYYmmdd_HHMMSS."},                                          \
        {"tags", FERRY_PARAM_ANY, 0, NULL,                                                         \
         "Labels stored with the snapshot (object, list or string); repo_pull's "                  \
         "restore_point can name a tag value or key=value."},                                      \
        {"verify", FERRY_PARAM_BOOLEAN, 0, "false",                                                \
         "Re-read every pack and the manifest after writing them."},                               \
        {"reread", FERRY_PARAM_BOOLEAN, 0, "false",                                                \
         "Read every file, even those whose size, mtime, inode and ctime match the last "          \
         "snapshot."},                                                                             \
        {"compression", FERRY_PARAM_STRING, 0, "\"default\"",                                      \
         "zstd effort: fast (level 1), default (3), high (9) or none."},                           \
        {"retention_days", FERRY_PARAM_NUMBER, 0, NULL,                                            \
         "Keep the snapshot this many days; expired snapshots are removed and their data "         \
         "collected after the push."},                                                             \
        {"retention_years", FERRY_PARAM_NUMBER, 0, NULL,                                           \
         "Keep the snapshot this many years (adds to retention_days)."},                           \
        {"description", FERRY_PARAM_STRING, 0, NULL, "Free text stored with the snapshot."},       \
        {"exclude", FERRY_PARAM_ARRAY, 0, NULL,                                                    \
         "Patterns of files and directories to leave out, in gitignore syntax (*, **, ?, "         \
         "[...], leading / anchors, trailing / for directories, ! re-includes), relative to "      \
         "the pushed directory; see docs/repositories.md."},                                       \
    {                                                                                              \
        "threads", FERRY_PARAM_INTEGER, 0, "0",                                                    \
            "Worker threads for chunking and compression; 0: one per core (at most 8)."            \
    }

/*
 * One push of repository to the storage named storage_name with the push parameters in
 * params (repo_push's table). retry_transient selects backup_with_retry's outcomes.
 * On success *result holds the push's result (new reference).
 */
ferry_result push_one(ferry_ctx *ctx, target *t, const char *repository, const char *storage_name,
                      const json_t *params, int retry_transient, json_t **result);

/*
 * repo_push's "paths": each absolute path of the machine (local or remote) pushed as a snapshot
 * of the repository path_repository names. Refuses (FERRY_INVALID, one-line error) an empty
 * list, a relative path, a "." or ".." component. *result: {"storage", "pushed": [...]}.
 */
ferry_result push_paths(ferry_ctx *ctx, target *t, const json_t *paths, const char *storage_name,
                        const json_t *params, int retry_transient, json_t **result);

/*
 * The repository name under which an absolute path is stored (new string): "path-", the
 * path's names joined by '-' (bytes outside [A-Za-z0-9._-] as '_', at most 100), '-' and the
 * first 8 hex digits of the path's SHA-256: "/var/www" -> "path-var-www-<8 hex>", "/" ->
 * "path-root-<8 hex>". The same path always gets the same name, so its pushes are one
 * repository's snapshots (listing, latest, retention); the manifest records the path.
 */
char *path_repository(const char *path);

#endif
