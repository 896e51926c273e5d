/* The job's machine: datastore paths, shell commands, Ferryfiles. See machine.h. */
#include "machine.h"

#include <errno.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FERRYFILE_OUTPUT (256 << 10)

ferry_result target_open(ferry_ctx *ctx, target *t)
{
    memset(t, 0, sizeof(*t));
    t->ctx = ctx;
    t->machine = ctx->host->machine(ctx);
    if (t->machine == NULL) {
        ferry_set_error(ctx, "bad_parameter", "this function needs a machine: queue it for one");
        return FERRY_INVALID;
    }
    t->local = json_is_true(json_object_get(t->machine, "local"));
    t->name = json_string_value(json_object_get(t->machine, "name"));
    const char *ds = json_string_value(json_object_get(t->machine, "datastore"));
    json_t *config = ctx->host->config(ctx);
    if (ds == NULL || ds[0] == '\0')
        ds = json_string_value(json_object_get(config, "datastore"));
    if (ds == NULL || ds[0] != '/') {
        ferry_set_error(ctx, "bad_parameter",
                        "machine %s has no datastore: add \"datastore\": \"/absolute/dir\" to its "
                        "vault (or plugin.repo.datastore to the config)",
                        t->name ? t->name : "?");
        json_decref(config);
        return FERRY_INVALID;
    }
    t->datastore = xstrdup(ds);
    json_decref(config);
    return FERRY_OK;
}

void target_close(target *t)
{
    json_decref(t->machine);
    free(t->datastore);
    memset(t, 0, sizeof(*t));
}

char *repo_dir(const target *t, const char *repository)
{
    return xasprintf("%s/repositories/%s", t->datastore, repository);
}

char *snapshots_dir(const target *t, const char *repository)
{
    return xasprintf("%s/snapshots/%s", t->datastore, repository);
}

char *running_marker(const target *t, const char *repository)
{
    return xasprintf("%s/.ferry/running/%s", t->datastore, repository);
}

char *sh_quote(const char *text)
{
    buf b = {0};
    buf_put_u8(&b, '\'');
    for (const char *p = text; *p; p++) {
        if (*p == '\'')
            buf_append(&b, "'\\''", 4);
        else
            buf_put_u8(&b, (uint8_t)*p);
    }
    buf_append(&b, "'", 2); /* with the NUL */
    return (char *)b.data;
}

int machine_sh(target *t, const char *command, const json_t *options, char **output)
{
    json_t *res = ferry_exec(t->ctx, command, options);
    if (output)
        *output = NULL;
    if (res == NULL)
        return -1;
    int code = (int)json_integer_value(json_object_get(res, "exit_code"));
    if (!json_is_null(json_object_get(res, "signal")) && json_object_get(res, "signal"))
        code = 128 + (int)json_integer_value(json_object_get(res, "signal"));
    if (output) {
        const char *text = json_string_value(json_object_get(res, "output"));
        *output = xstrdup(text ? text : "");
    }
    json_decref(res);
    return code;
}

int machine_exists(target *t, const char *path)
{
    if (t->local) {
        struct stat st;
        return lstat(path, &st) == 0;
    }
    char *q = sh_quote(path);
    char *cmd = xasprintf("test -e %s || test -L %s", q, q);
    int rc = machine_sh(t, cmd, NULL, NULL);
    free(cmd);
    free(q);
    return rc == 0;
}

int machine_test(target *t, const char *path)
{
    if (t->local)
        return machine_exists(t, path);
    char *q = sh_quote(path);
    char *cmd = xasprintf("test -e %s || test -L %s", q, q);
    int rc = machine_sh(t, cmd, NULL, NULL);
    free(cmd);
    free(q);
    return rc < 0 ? -1 : rc == 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int rc = flag == FTW_DP ? rmdir(path) : unlink(path);
    return rc != 0 && errno != ENOENT ? -1 : 0;
}

int machine_rmtree(target *t, const char *path)
{
    if (t->local) {
        struct stat st;
        if (lstat(path, &st) != 0)
            return 0;
        if (nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS) != 0) {
            ferry_set_error(t->ctx, "failed", "cannot remove %s: %s", path, strerror(errno));
            return -1;
        }
        return 0;
    }
    char *q = sh_quote(path);
    char *cmd = xasprintf("rm -rf -- %s", q);
    char *out = NULL;
    int rc = machine_sh(t, cmd, NULL, &out);
    if (rc > 0)
        ferry_set_error(t->ctx, "failed", "cannot remove %s on %s: %s", path, t->name, out);
    free(out);
    free(cmd);
    free(q);
    return rc == 0 ? 0 : -1;
}

/* Logs a command's output into the trace, a line at a time (the last 200 lines). */
static void log_output(ferry_ctx *ctx, const char *what, const char *out)
{
    size_t lines = 0;
    for (const char *p = out; *p; p++)
        lines += *p == '\n';
    const char *p = out;
    for (size_t skip = lines > 200 ? lines - 200 : 0; skip > 0; skip--)
        p = strchr(p, '\n') + 1;
    while (*p) {
        size_t len = strcspn(p, "\n");
        ferry_log(ctx, FERRY_LOG_INFO, "%s: %.*s", what, (int)len, p);
        p += len + (p[len] == '\n');
    }
}

ferry_result ferryfile_run(target *t, const char *repository, const char *const *fns, size_t n,
                           int *ran)
{
    char *dir = repo_dir(t, repository);
    char *file = xasprintf("%s/Ferryfile", dir);
    ferry_result result = FERRY_OK;
    *ran = 0;
    if (!machine_exists(t, dir)) {
        ferry_set_error(t->ctx, "not_found", "repository %s does not exist on %s (%s)", repository,
                        t->name, dir);
        result = FERRY_FAIL;
        goto out;
    }
    if (!machine_exists(t, file))
        goto out;
    *ran = 1;
    /* bash, not sh: Ferryfiles are bash. set -e stops at the first failing command of a
     * function; a function the Ferryfile does not define is skipped with a note. */
    buf cmd = {0};
    const char *script = "set -eo pipefail; . ./Ferryfile; for f in \"$@\"; do "
                         "if declare -F \"$f\" >/dev/null; then echo \"== $f\"; \"$f\"; "
                         "else echo \"== $f: not defined in the Ferryfile, skipped\"; fi; done";
    char *qs = sh_quote(script);
    char *head = xasprintf("bash -c %s ferryfile", qs);
    buf_append(&cmd, head, strlen(head));
    free(head);
    free(qs);
    for (size_t i = 0; i < n; i++) {
        buf_put_u8(&cmd, ' ');
        buf_append(&cmd, fns[i], strlen(fns[i]));
    }
    buf_put_u8(&cmd, 0);
    json_t *opts =
        json_pack("{s:s,s:i,s:{s:s,s:s,s:s}}", "cwd", dir, "max_output", FERRYFILE_OUTPUT, "env",
                  "REPOSITORY", repository, "REPOSITORY_PATH", dir, "DATASTORE", t->datastore);
    char *out = NULL;
    int code = machine_sh(t, (const char *)cmd.data, opts, &out);
    json_decref(opts);
    buf_free(&cmd);
    if (out)
        log_output(t->ctx, "Ferryfile", out);
    if (code != 0) {
        if (code > 0) {
            const char *last = out ? out + strlen(out) : "";
            while (last > out && (last[-1] == '\n'))
                last--;
            const char *begin = last;
            while (begin > out && begin[-1] != '\n')
                begin--;
            ferry_set_error(t->ctx, "ferryfile_failed", "%s's Ferryfile failed (exit %d): %.*s",
                            repository, code, (int)(last - begin), begin);
        }
        result = FERRY_FAIL;
    }
    free(out);
out:
    free(file);
    free(dir);
    return result;
}
