/*
 * The machine side of repo_pull (pull.c): where a restore is written and how it replaces
 * what was there, on a local machine and on one reached over SSH with no ferry installed.
 * The restore itself -- reading the snapshot, checking its tree, narrowing it to `include`,
 * decrypting and checking every chunk -- is the engine's (restore.h) and the same for both:
 * only the writing step differs (files in a directory of the bridge, or one tar stream read
 * by GNU tar on the machine).
 */
#ifndef REPO_PULL_H
#define REPO_PULL_H

#include "jobs.h"
#include "pattern.h"

/*
 * Checks repo_pull's "target": an absolute path of names (no "", "." or ".." component)
 * that is not "/" and not inside the datastore's internal directory DATASTORE/.ferry.
 * Returns the path without trailing slashes (new string), or NULL with the attempt's
 * error set.
 */
char *pull_target(target *t, const char *given);

/*
 * repo_pull's "include" (inc: absent, or a list of patterns in pattern.h's syntax, none with
 * a ".." component) compiled into *out (NULL when absent; pattern_free). 0, or -1 with the
 * attempt's error set.
 */
int pull_include(ferry_ctx *ctx, const json_t *inc, pattern_set **out);

/* restore_req.include for a pattern_set: the entries its patterns match. */
int pull_selects(const void *set, const char *path, int is_dir);

/*
 * Prepares the directory the restore is written to, beside dest: creates dest's parent,
 * removes what earlier pulls into dest left (directories .NAME.pull-* beside it, from a
 * worker killed or a connection dropped mid-restore) and, with empty_only, refuses a dest
 * that exists and is not an empty directory. FERRY_OK with *fresh the new directory's path
 * (to create; new string) and *uid, *gid the machine user's ids; FERRY_RETRY when the
 * machine cannot be reached, else FERRY_FAIL, with the error set.
 */
ferry_result pull_prepare(target *t, const char *dest, int empty_only, char **fresh, int64_t *uid,
                          int64_t *gid);

/*
 * Writes req's snapshot into req->dest, which must not exist: on a local machine with
 * repo_restore, on a remote one as a tar stream through the exec service's exec_start into
 * GNU tar, then (with req->verify) checked with the machine's sha256sum. On failure nothing
 * is left at req->dest. FERRY_OK with *result set, or an outcome with the error set.
 */
ferry_result pull_write(target *t, storage *s, const restore_req *req, int64_t uid, int64_t gid,
                        job *j, json_t **result);

/*
 * Moves the restored directory fresh into place at live: the previous content is renamed
 * aside, fresh renamed in, the aside removed (rename(2) locally, mv -T and rm -rf remotely).
 * FERRY_OK, or FERRY_FAIL with the error set and live as it was.
 */
ferry_result pull_swap_in(target *t, const char *fresh, const char *live);

#endif
