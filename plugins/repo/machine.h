/*
 * The job's machine as the repo functions see it: its datastore, where repositories live
 * ("<datastore>/repositories/<name>"), local snapshots ("<datastore>/snapshots/<name>/<id>")
 * and the running markers that repo_up and repo_down keep
 * ("<datastore>/.ferry/running/<name>"). Commands run through the host's exec service, so
 * they work on local and (SSH) remote machines alike; file work that streams data (push,
 * pull) runs in the worker and therefore needs a local machine.
 */
#ifndef REPO_MACHINE_H
#define REPO_MACHINE_H

#include <ferry/plugin.h>

#include "util.h"

typedef struct target {
    ferry_ctx *ctx;
    json_t *machine; /* from the machine service (owned) */
    int local;
    char *datastore;
    const char *name; /* the machine's name (inside machine) */
} target;

/*
 * Describes the job's machine. The datastore comes from the machine's vault ("datastore"),
 * else from the plugin's config ("datastore"). Returns FERRY_OK, or an outcome with the
 * attempt's error set.
 */
ferry_result target_open(ferry_ctx *ctx, target *t);
void target_close(target *t);

/* Paths on the machine (new strings, caller frees). */
char *repo_dir(const target *t, const char *repository);
char *snapshots_dir(const target *t, const char *repository);
char *running_marker(const target *t, const char *repository);

/* 'text' quoted for /bin/sh (new string). */
char *sh_quote(const char *text);

/*
 * Runs a shell command on the machine. Returns the exit code (0 success), or -1 when it
 * could not run (the attempt's error is set). *output, when not NULL, receives the combined
 * output (caller frees). options is borrowed, may be NULL.
 */
int machine_sh(target *t, const char *command, const json_t *options, char **output);

/* Non-zero when path exists on the machine. */
int machine_exists(target *t, const char *path);
/* 1 when path exists on the machine, 0 when not, -1 when the machine could not be reached
 * (the attempt's error is set: the exec service's reason). */
int machine_test(target *t, const char *path);

/*
 * Runs the named Ferryfile functions (e.g. {"prep", "up"}) with bash in the repository's
 * directory. A function the Ferryfile does not define is skipped. *ran is set when there is
 * a Ferryfile at all. Returns FERRY_OK or FERRY_FAIL (error set, output in the trace).
 */
ferry_result ferryfile_run(target *t, const char *repository, const char *const *fns, size_t n,
                           int *ran);

/* Removes a directory tree on the machine. 0 or -1 (error set). */
int machine_rmtree(target *t, const char *path);

#endif
