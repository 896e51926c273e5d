/* The machine side of repo_pull: see pull.h. */
#include "pull.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "restore.h"

#define LISTING_MAX ((size_t)1 << 30) /* the machine's sha256sum listing, at most */

char *pull_target(target *t, const char *given)
{
    size_t len = strlen(given);
    while (len > 1 && given[len - 1] == '/')
        len--;
    char *path = xasprintf("%.*s", (int)len, given);
    const char *why = NULL;
    if (path[0] != '/')
        why = "is not an absolute path";
    else if (path[1] == '\0')
        why = "is the root directory";
    for (const char *p = path + 1; why == NULL;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            why = "has an empty, \".\" or \"..\" component";
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    char *internal = xasprintf("%s/.ferry", t->datastore);
    size_t ilen = strlen(internal);
    if (why == NULL && strncmp(path, internal, ilen) == 0 &&
        (path[ilen] == '\0' || path[ilen] == '/'))
        why = "is inside the datastore's internal directory";
    if (why) {
        job_error(t->ctx, "bad_parameter",
                  "target \"%s\" %s; give an absolute directory outside %s, e.g. "
                  "\"/srv/restore/web\"",
                  given, why, internal);
        free(path);
        path = NULL;
    }
    free(internal);
    return path;
}

/* Non-zero when pattern p has a ".." component (after its "!" and leading "/"). */
static int climbs(const char *p)
{
    p += *p == '!';
    for (;;) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return 1;
        if (p[n] == '\0')
            return 0;
        p += n + 1;
    }
}

int pull_include(ferry_ctx *ctx, const json_t *inc, pattern_set **out)
{
    *out = NULL;
    if (inc == NULL || json_is_null(inc))
        return 0;
    if (!json_is_array(inc) || json_array_size(inc) == 0) {
        job_error(ctx, "bad_parameter",
                  "include must be a list of paths or patterns of the snapshot, e.g. "
                  "[\"etc/app.conf\", \"data/\", \"*.sql\"]");
        return -1;
    }
    size_t n = json_array_size(inc);
    const char **patterns = xcalloc(n, sizeof(*patterns));
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        patterns[i] = json_string_value(json_array_get(inc, i));
        if (patterns[i] == NULL) {
            job_error(ctx, "bad_parameter", "include[%zu] must be a string (a path or pattern)", i);
            rc = -1;
        } else if (climbs(patterns[i])) {
            job_error(ctx, "bad_parameter",
                      "include \"%s\" has a \"..\" component: paths of a snapshot never do",
                      patterns[i]);
            rc = -1;
        }
    }
    char why[512];
    if (rc == 0 && (*out = pattern_compile(patterns, n, why, sizeof(why))) == NULL) {
        job_error(ctx, "bad_parameter", "include: %s", why);
        rc = -1;
    }
    free(patterns);
    return rc;
}

int pull_selects(const void *set, const char *path, int is_dir)
{
    return pattern_excluded(set, path, is_dir); /* "excluded": matched by the patterns */
}

/* $1 dest, $2 1: refuse a dest that is not an empty directory. Prints the user's ids. */
static const char prepare_script[] =
    "dest=$1 empty_only=$2\n"
    "parent=${dest%/*}; base=${dest##*/}\n"
    "mkdir -p -- \"${parent:-/}\" || exit 3\n"
    "for d in \"$parent\"/.\"$base\".pull-*; do\n"
    "  if [ -d \"$d\" ] && [ ! -L \"$d\" ]; then rm -rf -- \"$d\"; echo \"removed $d\" >&2; fi\n"
    "done\n"
    "if [ \"$empty_only\" = 1 ] && { [ -e \"$dest\" ] || [ -L \"$dest\" ]; }; then\n"
    "  if [ -L \"$dest\" ] || [ ! -d \"$dest\" ] || [ -n \"$(ls -A -- \"$dest\")\" ]; then exit 4; "
    "fi\n"
    "fi\n"
    "command -v tar >/dev/null || exit 5\n"
    "echo \"ids $(id -u) $(id -g)\"\n";

ferry_result pull_prepare(target *t, const char *dest, int empty_only, char **fresh, int64_t *uid,
                          int64_t *gid)
{
    char *qs = sh_quote(prepare_script), *qd = sh_quote(dest);
    char *cmd = xasprintf("sh -c %s prepare %s %d", qs, qd, empty_only);
    char *out = NULL;
    *fresh = NULL;
    int rc = machine_sh(t, cmd, NULL, &out);
    const char *ids = out ? strstr(out, "ids ") : NULL;
    long long u = -1, g = -1;
    if (rc == 0 && (ids == NULL || sscanf(ids, "ids %lld %lld", &u, &g) != 2))
        rc = 6;
    if (rc == 4)
        job_error(t->ctx, "exists",
                  "%s exists on %s and is not an empty directory: a restore to a target goes "
                  "into a new or empty directory",
                  dest, t->name);
    else if (rc == 5)
        job_error(t->ctx, "failed", "%s has no tar: a restore needs GNU tar on the machine",
                  t->name);
    else if (rc > 0)
        job_error(t->ctx, "failed", "cannot prepare %s on %s (exit %d): %s", dest, t->name, rc,
                  out ? out : "");
    if (rc == 0) {
        char rnd[17];
        random_hex(rnd, 8);
        const char *slash = strrchr(dest, '/');
        *fresh = xasprintf("%.*s/.%s.pull-%s", (int)(slash - dest), dest, slash + 1, rnd);
        *uid = u;
        *gid = g;
    }
    free(out);
    free(cmd);
    free(qs);
    free(qd);
    /* -1: the machine could not be reached (the exec service set the error) */
    return rc == 0 ? FERRY_OK : rc < 0 ? FERRY_RETRY : FERRY_FAIL;
}

/*
 * On the machine: $1 the new directory, $2 1 to list what was written for the check.
 * GNU tar reads the stream into the new directory; with $2 the files' SHA-256 sums follow
 * on stdout. Whatever fails -- tar, the listing, a signal from the exec service's watchdog
 * when the bridge cancels or the connection drops -- removes the new directory; a SIGKILL
 * leaves it to the next pull's pull_prepare.
 */
static const char stream_script[] =
    "fresh=$1 verify=$2\n"
    "umask 077\n"
    "mkdir -- \"$fresh\" || exit 90\n"
    "trap 'cd /; rm -rf -- \"$fresh\"; exit 143' HUP INT TERM PIPE\n" STREAM_TAR_X
    " -C \"$fresh\" || { rc=$?; rm -rf -- \"$fresh\"; exit $rc; }\n"
    "if [ \"$verify\" = 1 ]; then\n"
    "  cd -- \"$fresh\" && find . -type f -print0 | xargs -0 -r sha256sum -z ||\n"
    "    { cd /; rm -rf -- \"$fresh\"; exit 91; }\n"
    "fi\n";

/* Reads fd to its end into b, keeping at most max bytes (the rest is read and dropped). */
static void read_all(int fd, buf *b, size_t max)
{
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (b->len + (size_t)n <= max)
            buf_append(b, chunk, (size_t)n);
    }
}

/* The last lines of a command's stderr, at most 600 bytes (a pointer into text). */
static const char *tail_of(const char *text)
{
    size_t len = text ? strlen(text) : 0;
    while (len > 0 && text[len - 1] == '\n')
        len--;
    const char *p = len > 600 ? text + len - 600 : text ? text : "";
    return p;
}

/* Streams the restore to the machine. 0; -1 with e set (the machine's reason in it); -2 when
 * the command could not start or its connection failed (the attempt's error is ssh's). */
static int stream_to(target *t, storage *s, const restore_req *req, int64_t uid, int64_t gid,
                     job *j, json_t **result, rerr *e)
{
    ferry_ctx *ctx = t->ctx;
    if (!FERRY_HOST_HAS(ctx->host, exec_start) || ctx->host->exec_start == NULL)
        return rerr_set(e, E_FAIL,
                        "restoring onto %s (a remote machine) needs the host's streaming exec "
                        "service (ABI 1.2): upgrade the ferry host",
                        t->name);
    char *qs = sh_quote(stream_script), *qf = sh_quote(req->dest);
    char *cmd = xasprintf("sh -c %s stream %s %d", qs, qf, req->verify ? 1 : 0);
    json_t *opts = json_pack("{s:{s:s}}", "env", "LC_ALL", "C");
    int to_cmd = -1, from_cmd = -1, rc = -1;
    ferry_exec_stream *h = ctx->host->exec_start(ctx, cmd, opts, &to_cmd, &from_cmd);
    json_decref(opts);
    free(cmd);
    free(qs);
    free(qf);
    if (h == NULL)
        return -2; /* the exec service set the attempt's error (unreachable: RETRY) */
    json_t *sums = req->verify ? json_object() : NULL;
    stream_req sr = {.fd = to_cmd, .uid = uid, .gid = gid, .sums = sums};
    rerr mine = {0};
    buf listing = {0};
    rc = repo_restore_stream(s, req, &sr, &j->u, result, &mine);
    close(to_cmd);
    if (rc == 0)
        read_all(from_cmd, &listing, LISTING_MAX);
    close(from_cmd);
    /* Stopped on any failure of ours, EPIPE included: a connection that went away unnoticed
     * would otherwise keep the wait until ssh's keepalive gives up. */
    json_t *w = ctx->host->exec_wait(ctx, h, rc != 0);
    if (w == NULL) {
        /* The connection failed: the attempt's error is ssh's own reason. */
        json_decref(*result);
        *result = NULL;
        json_decref(sums);
        buf_free(&listing);
        return -2;
    }
    const char *stopped = json_string_value(json_object_get(w, "stopped"));
    int code = (int)json_integer_value(json_object_get(w, "exit_code"));
    const char *err_tail = tail_of(json_string_value(json_object_get(w, "output")));
    if (stopped && strcmp(stopped, "stop") != 0)
        rc = rerr_set(e, E_CANCELLED, "%s while streaming the restore to %s",
                      strcmp(stopped, "cancelled") == 0 ? "cancelled" : "timed out", t->name);
    else if (rc != 0 && mine.kind != E_TRANSIENT)
        rerr_merge(e, &mine);
    else if (code == 255) /* ssh's own failure: the connection */
        rc = rerr_set(e, E_TRANSIENT,
                      "the connection to %s was lost while streaming the restore: %s", t->name,
                      err_tail[0] ? err_tail : "(no reason given)");
    else if (rc != 0 || code != 0 || !json_is_null(json_object_get(w, "signal")))
        rc = rerr_set(e, mine.kind ? mine.kind : E_FAIL, "%s%star on %s failed (exit %d): %s",
                      mine.kind ? mine.msg : "", mine.kind ? "; " : "", t->name, code,
                      err_tail[0] ? err_tail : "(no output)");
    else if (req->verify && listing.len == LISTING_MAX)
        rc = rerr_set(e, E_FAIL, "verify: the listing of the restore on %s is too long", t->name);
    else if (req->verify)
        rc = stream_verify(sums, (const char *)listing.data, listing.len, e);
    if (rc != 0) {
        json_decref(*result);
        *result = NULL;
    }
    json_decref(w);
    json_decref(sums);
    buf_free(&listing);
    return rc;
}

ferry_result pull_write(target *t, storage *s, const restore_req *req, int64_t uid, int64_t gid,
                        job *j, json_t **result)
{
    rerr e = {0};
    int rc = t->local ? repo_restore(s, req, &j->u, result, &e)
                      : stream_to(t, s, req, uid, gid, j, result, &e);
    if (rc == 0)
        return FERRY_OK;
    if (machine_rmtree(t, req->dest) != 0)
        ferry_log(t->ctx, FERRY_LOG_WARN,
                  "the incomplete restore is left at %s on %s (the next pull removes it)",
                  req->dest, t->name);
    return rc == -2 ? FERRY_RETRY : job_fail(t->ctx, &e, 1);
}

/* $1 fresh, $2 live, $3 the name live is moved aside to. */
static const char swap_script[] = "fresh=$1 live=$2 old=$3\n"
                                  "had=0\n"
                                  "if [ -e \"$live\" ] || [ -L \"$live\" ]; then mv -T -- "
                                  "\"$live\" \"$old\" || exit 3; had=1; fi\n"
                                  "if ! mv -T -- \"$fresh\" \"$live\"; then\n"
                                  "  [ $had = 1 ] && mv -T -- \"$old\" \"$live\"; exit 4\n"
                                  "fi\n"
                                  "[ $had = 0 ] || rm -rf -- \"$old\" || exit 5\n";

ferry_result pull_swap_in(target *t, const char *fresh, const char *live)
{
    char rnd[17];
    random_hex(rnd, 8);
    const char *slash = strrchr(live, '/');
    char *old = xasprintf("%.*s/.%s.old-%s", (int)(slash - live), live, slash + 1, rnd);
    ferry_result res = FERRY_OK;
    int rc = 0;
    char *out = NULL;
    if (t->local) {
        struct stat st;
        int had = lstat(live, &st) == 0;
        if (had && rename(live, old) != 0)
            rc = 3;
        else if (rename(fresh, live) != 0) {
            rc = 4;
            if (had)
                rename(old, live);
        } else if (had && machine_rmtree(t, old) != 0)
            rc = 5;
        out = xstrdup(rc ? strerror(errno) : "");
    } else {
        char *qs = sh_quote(swap_script), *qf = sh_quote(fresh), *ql = sh_quote(live),
             *qo = sh_quote(old);
        char *cmd = xasprintf("sh -c %s swap %s %s %s", qs, qf, ql, qo);
        rc = machine_sh(t, cmd, NULL, &out);
        free(cmd);
        free(qs);
        free(qf);
        free(ql);
        free(qo);
    }
    if (rc == 3 || rc == 4 || rc < 0) {
        if (rc > 0)
            ferry_set_error(t->ctx, "failed",
                            "cannot move the restored copy into place at %s on %s (%s); %s is "
                            "unchanged and the restored copy is left at %s",
                            live, t->name, tail_of(out), live, fresh);
        res = FERRY_FAIL;
    } else if (rc != 0) {
        ferry_log(t->ctx, FERRY_LOG_WARN, "the previous content is left at %s", old);
    }
    free(out);
    free(old);
    return res;
}
