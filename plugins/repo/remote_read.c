/* A remote machine's directory as a push's source. See remote_read.h. */
#include "remote_read.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "machine.h"
#include "remote_scan.h"

#define POLL_MS   200
#define IO_BUF    ((size_t)256 << 10)
#define DRAIN_MAX ((size_t)1 << 20) /* bytes tolerated after the end of a tar stream */

/* GNU tar reading the NUL-separated list on its stdin from the pushed directory. */
#define TAR_ARGS                                                                                   \
    "tar -c -f - --format=gnu --sparse --no-recursion --hard-dereference --null "                  \
    "--verbatim-files-from --no-unquote -T -"

typedef struct rstream {
    remote_source *src;
    ferry_exec_stream *h;
    int to, from;
    pthread_t writer;
    int writer_started;
    const char *const *paths;
    size_t n;
    size_t pos; /* the next listed file a tar entry may name */
    struct archive *a;
    uint8_t *buf;
} rstream;

static int stopping(const remote_source *rs)
{
    return __atomic_load_n(&rs->stop, __ATOMIC_RELAXED);
}

/* Waits until fd is ready for events, POLL_MS at a time, giving up when the push stops.
 * 0, or -1 with errno set (ECANCELED on a stop). */
static int wait_ready(remote_source *rs, int fd, short events)
{
    for (;;) {
        if (stopping(rs)) {
            errno = ECANCELED;
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, POLL_MS);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* Reads what is there on fd: the bytes read, 0 at end-of-file, -1 (errno set). */
static ssize_t poll_read(remote_source *rs, int fd, void *dst, size_t len)
{
    for (;;) {
        if (wait_ready(rs, fd, POLLIN) != 0)
            return -1;
        ssize_t got = read(fd, dst, len);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got > 0)
            __atomic_fetch_add(&rs->bytes, (uint64_t)got, __ATOMIC_RELAXED);
        return got;
    }
}

/* Writes all of data to a non-blocking fd; -1 when the push stops or the command went away
 * (EPIPE). */
static int poll_write(remote_source *rs, int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        if (wait_ready(rs, fd, POLLOUT) != 0)
            return -1;
        ssize_t put = write(fd, p, len);
        if (put < 0 && errno != EINTR && errno != EAGAIN)
            return -1;
        if (put > 0) {
            p += put;
            len -= (size_t)put;
        }
    }
    return 0;
}

/* The last non-empty line of text (the command's stderr tail), for messages: new string. */
static char *last_line(const char *text)
{
    const char *end = text + strlen(text);
    while (end > text && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        end--;
    const char *begin = end;
    while (begin > text && begin[-1] != '\n')
        begin--;
    char q[300];
    char *line = xmalloc((size_t)(end - begin) + 1);
    memcpy(line, begin, (size_t)(end - begin));
    line[end - begin] = '\0';
    tree_quote(line, q, sizeof(q));
    free(line);
    return xstrdup(q);
}

/*
 * Non-zero when every non-empty line of a command's stderr is one of the benign notices
 * (files that vanished or changed while listed or read); *changed counts the "changed" ones.
 */
static int benign_output(const char *text, int truncated, uint64_t *changed)
{
    static const char *const benign[] = {
        "No such file or directory",
        "File removed before we read it",
        "file changed as we read it",
        "Exiting with failure status due to previous errors",
        "File shrank by",
    };
    int ok = !truncated;
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, "\n");
        int known = len == 0;
        for (size_t i = 0; i < sizeof(benign) / sizeof(benign[0]) && !known; i++) {
            const char *hit = strstr(p, benign[i]);
            known = hit && hit < p + len;
            if (known && (i == 2 || i == 4) && changed)
                (*changed)++;
        }
        ok = ok && known;
        p += len + (p[len] == '\n');
    }
    return ok;
}

/*
 * Ends a command: waits for it (stopping it first when stop is set) and checks how it ended.
 * A non-zero exit is an error unless allow_benign and its stderr holds only benign notices.
 * 0, or -1 with e set (unless stop: then only the wait matters).
 */
static int end_command(remote_source *rs, ferry_exec_stream *h, const char *what, int stop,
                       int allow_benign, uint64_t *changed, rerr *e)
{
    json_t *res = rs->ctx->host->exec_wait(rs->ctx, h, stop);
    if (res == NULL)
        return stop ? 0 : rerr_set(e, E_FAIL, "%s on machine %s: no result", what, rs->machine);
    int code = (int)json_integer_value(json_object_get(res, "exit_code"));
    const json_t *sig = json_object_get(res, "signal");
    const char *out = json_string_value(json_object_get(res, "output"));
    const char *stopped = json_string_value(json_object_get(res, "stopped"));
    int truncated = json_is_true(json_object_get(res, "truncated"));
    int rc = 0;
    uint64_t count = 0;
    if (stop) {
        rc = 0;
    } else if (stopped) {
        rc = rerr_set(e, strcmp(stopped, "cancelled") == 0 ? E_CANCELLED : E_TRANSIENT,
                      "%s on machine %s was stopped (%s)", what, rs->machine, stopped);
    } else if (json_is_integer(sig)) {
        rc = rerr_set(e, E_TRANSIENT, "%s on machine %s ended by signal %d", what, rs->machine,
                      (int)json_integer_value(sig));
    } else if (code != 0 &&
               !(allow_benign && code <= 2 && benign_output(out ? out : "", truncated, &count))) {
        char *line = last_line(out ? out : "");
        /* 255 is ssh's own failure: the connection dropped or could not be made */
        rc = rerr_set(e, code == 255 ? E_TRANSIENT : E_FAIL,
                      "%s on machine %s failed (exit %d%s): %s", what, rs->machine, code,
                      code == 255 ? ", the connection failed" : "", line);
        free(line);
    } else if (changed && out) {
        count = 0;
        benign_output(out, 0, &count);
    }
    if (changed)
        *changed += count;
    json_decref(res);
    return rc;
}

/* Starts command on the machine; *to and *from are its stdin and stdout. */
static ferry_exec_stream *start(remote_source *rs, const char *command, int *to, int *from, rerr *e)
{
    ferry_exec_stream *h = rs->ctx->host->exec_start(rs->ctx, command, NULL, to, from);
    if (h == NULL)
        rerr_set(e, E_TRANSIENT,
                 "cannot start a command on machine %s (the connection failed; the trace says "
                 "why)",
                 rs->machine);
    return h;
}

static int exclude_cb(void *arg, const char *rel, int is_dir)
{
    return pattern_excluded(arg, rel, is_dir);
}

static int fill_devices(remote_source *rs, tree *t, rerr *e);

static void prestart(remote_source *rs);
static int release(remote_source *rs, int failed, rerr *e);

static int rs_scan(void *arg, tree *t, rerr *e)
{
    remote_source *rs = arg;
    char *qroot = sh_quote(rs->root), *qfmt = sh_quote(REMOTE_SCAN_FORMAT);
    char *cmd = xasprintf("cd -- %s && LC_ALL=C exec find . -printf %s", qroot, qfmt);
    free(qroot);
    free(qfmt);
    int to = -1, from = -1;
    ferry_exec_stream *h = start(rs, cmd, &to, &from, e);
    free(cmd);
    if (h == NULL)
        return -1;
    close(to);
    prestart(rs);
    remote_scan *scan = remote_scan_new(rs->exclude ? exclude_cb : NULL, (void *)rs->exclude);
    uint8_t *data = xmalloc(IO_BUF);
    int rc = 0;
    for (;;) {
        ssize_t got = poll_read(rs, from, data, IO_BUF);
        if (got < 0) {
            rc = rerr_set(e, errno == ECANCELED ? E_CANCELLED : E_TRANSIENT,
                          "reading the listing of %s on machine %s: %s", rs->root, rs->machine,
                          strerror(errno));
            break;
        }
        if (got == 0 || (rc = remote_scan_feed(scan, data, (size_t)got, e)) != 0)
            break;
    }
    free(data);
    close(from);
    /* find's own failure (a directory it may not read, a root that is not there) says more
     * than a listing cut short, so it is checked first. */
    rerr why = {0};
    if (end_command(rs, h, "listing the files", rc != 0 && e->kind == E_CANCELLED, 1, NULL, &why) !=
        0) {
        remote_scan_free(scan);
        *e = why;
        return -1;
    }
    if (rc != 0) {
        remote_scan_free(scan);
        return -1;
    }
    if (remote_scan_finish(scan, t, e) != 0)
        return -1;
    return fill_devices(rs, t, e);
}

static void *writer_main(void *arg);

/*
 * Device numbers, which find cannot print: one `stat` over the device nodes of the listing
 * (NUL-separated on its stdin), printing "MAJOR MINOR INODE" in hex, hex and decimal per
 * node. A node missing from the answer vanished since the listing and is left out.
 */
static int fill_devices(remote_source *rs, tree *t, rerr *e)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++)
        n += t->nodes[i].kind == T_CHR || t->nodes[i].kind == T_BLK;
    if (n == 0)
        return 0;
    size_t *nodes = xcalloc(n, sizeof(*nodes));
    const char **paths = xcalloc(n, sizeof(*paths));
    n = 0;
    for (size_t i = 0; i < t->n; i++)
        if (t->nodes[i].kind == T_CHR || t->nodes[i].kind == T_BLK) {
            nodes[n] = i;
            paths[n++] = t->nodes[i].path;
        }
    char *qroot = sh_quote(rs->root);
    char *cmd =
        xasprintf("cd -- %s && LC_ALL=C exec xargs -0 -r stat --printf '%%t %%T %%i\\n' --", qroot);
    free(qroot);
    rstream st = {.src = rs, .paths = paths, .n = n};
    int rc = 0;
    buf out = {0};
    st.h = start(rs, cmd, &st.to, &st.from, e);
    free(cmd);
    if (st.h == NULL) {
        rc = -1;
        goto out;
    }
    fcntl(st.to, F_SETFL, fcntl(st.to, F_GETFL) | O_NONBLOCK);
    st.writer_started = pthread_create(&st.writer, NULL, writer_main, &st) == 0;
    if (!st.writer_started)
        close(st.to);
    uint8_t chunk[4096];
    ssize_t got;
    while ((got = poll_read(rs, st.from, chunk, sizeof(chunk))) > 0 && out.len < ((size_t)64 << 20))
        buf_append(&out, chunk, (size_t)got);
    buf_put_u8(&out, 0);
    if (st.writer_started)
        pthread_join(st.writer, NULL);
    close(st.from);
    rc = end_command(rs, st.h, "reading device numbers", got < 0, 1, NULL, e);
    if (rc == 0 && got < 0)
        rc = rerr_set(e, E_CANCELLED, "cancelled");
    size_t k = 0;
    for (char *line = (char *)out.data; rc == 0 && line && *line;) {
        char *end = strchr(line, '\n');
        unsigned long major = 0, minor = 0;
        unsigned long long ino = 0;
        if (end == NULL || sscanf(line, "%lx %lx %llu", &major, &minor, &ino) != 3) {
            rc = rerr_set(e, E_FAIL, "the device numbers from machine %s are malformed",
                          rs->machine);
            break;
        }
        while (k < n && t->nodes[nodes[k]].ino != ino)
            t->nodes[nodes[k++]].kind = 0; /* vanished */
        if (k == n) {
            rc = rerr_set(e, E_FAIL, "the device numbers from machine %s name no listed node",
                          rs->machine);
            break;
        }
        t->nodes[nodes[k++]].rdev = makedev(major, minor);
        line = end + 1;
    }
    for (; rc == 0 && k < n; k++)
        t->nodes[nodes[k]].kind = 0;
out:
    buf_free(&out);
    free(paths);
    free(nodes);
    return rc;
}

static void *writer_main(void *arg)
{
    rstream *st = arg;
    /* A command that ends without reading its list (one started early that failed, a broken
     * tool) makes the writes fail with EPIPE, not end the process, whatever the host does
     * with SIGPIPE: the signal is blocked in this thread and dropped with it. */
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
    buf list = {0};
    for (size_t i = 0; i < st->n; i++) {
        buf_append(&list, st->paths[i], strlen(st->paths[i]) + 1);
        if (list.len >= IO_BUF || i + 1 == st->n) {
            if (poll_write(st->src, st->to, list.data, list.len) != 0)
                break;
            list.len = 0;
        }
    }
    buf_free(&list);
    close(st->to); /* tar's end of the list */
    st->to = -1;
    return NULL;
}

static la_ssize_t archive_input(struct archive *a, void *arg, const void **out)
{
    rstream *st = arg;
    ssize_t got = poll_read(st->src, st->from, st->buf, IO_BUF);
    if (got < 0) {
        archive_set_error(a, errno, "%s", strerror(errno));
        return -1;
    }
    *out = st->buf;
    return got;
}

static int rs_close(void *arg, void *stream, int failed, uint64_t *changed, rerr *e);

/* Starts a tar command waiting for its list; NULL with e set. */
static rstream *tar_start(remote_source *rs, rerr *e)
{
    char *qroot = sh_quote(rs->root);
    char *cmd = xasprintf("cd -- %s && LC_ALL=C exec " TAR_ARGS, qroot);
    free(qroot);
    rstream *st = xcalloc(1, sizeof(*st));
    st->src = rs;
    st->h = start(rs, cmd, &st->to, &st->from, e);
    free(cmd);
    if (st->h == NULL) {
        free(st);
        return NULL;
    }
    fcntl(st->to, F_SETFL, fcntl(st->to, F_GETFL) | O_NONBLOCK);
    st->buf = xmalloc(IO_BUF);
    return st;
}

/* The tar commands of the default worker threads, started before the listing so that their
 * connections are made while find runs. One that cannot start is started again by open. */
static void prestart(remote_source *rs)
{
    int want = default_threads();
    if (want > (int)(sizeof(rs->ready) / sizeof(rs->ready[0])))
        want = (int)(sizeof(rs->ready) / sizeof(rs->ready[0]));
    while (rs->nready < want) {
        rerr ignore = {0};
        rstream *st = tar_start(rs, &ignore);
        if (st == NULL)
            break;
        rs->ready[rs->nready++] = st;
    }
}

static void *rs_open(void *arg, const char *const *paths, size_t n, rerr *e)
{
    remote_source *rs = arg;
    rstream *st = rs->nready > 0 ? rs->ready[--rs->nready] : tar_start(rs, e);
    if (st == NULL)
        return NULL;
    st->paths = paths;
    st->n = n;
    st->a = archive_read_new();
    archive_read_support_format_tar(st->a);
    archive_read_support_format_gnutar(st->a);
    st->writer_started = pthread_create(&st->writer, NULL, writer_main, st) == 0;
    if (!st->writer_started)
        close(st->to);
    if (archive_read_open(st->a, st, NULL, archive_input, NULL) != ARCHIVE_OK) {
        rerr_set(e, stopping(rs) ? E_CANCELLED : E_FAIL,
                 "the file stream from machine %s is not a tar stream: %s", rs->machine,
                 archive_error_string(st->a) ? archive_error_string(st->a) : "unreadable");
        rerr ignore = {0};
        rs_close(rs, st, 1, NULL, &ignore);
        return NULL;
    }
    return st;
}

static int rs_next(void *stream, size_t *index, rerr *e)
{
    rstream *st = stream;
    char q[512];
    for (;;) {
        struct archive_entry *entry = NULL;
        int r = archive_read_next_header(st->a, &entry);
        if (r == ARCHIVE_EOF) {
            *index = SIZE_MAX;
            return 0;
        }
        if (r < ARCHIVE_WARN || entry == NULL)
            return rerr_set(e, stopping(st->src) ? E_CANCELLED : E_TRANSIENT,
                            "the file stream from machine %s broke off: %s", st->src->machine,
                            archive_error_string(st->a) ? archive_error_string(st->a)
                                                        : "malformed");
        const char *name = archive_entry_pathname(entry);
        size_t j = st->pos;
        while (name && j < st->n && strcmp(st->paths[j], name) != 0)
            j++;
        if (name == NULL || j == st->n)
            return rerr_set(e, E_FAIL,
                            "the file stream from machine %s holds an entry that was not asked "
                            "for: %s",
                            st->src->machine, tree_quote(name ? name : "", q, sizeof(q)));
        st->pos = j + 1;
        if (archive_entry_filetype(entry) != AE_IFREG)
            continue; /* replaced by something else since the scan: left out */
        *index = j;
        return 0;
    }
}

static long rs_read(void *stream, void *dst, size_t len, rerr *e)
{
    rstream *st = stream;
    la_ssize_t got = archive_read_data(st->a, dst, len);
    if (got < 0)
        return rerr_set(e, stopping(st->src) ? E_CANCELLED : E_TRANSIENT,
                        "the file stream from machine %s broke off: %s", st->src->machine,
                        archive_error_string(st->a) ? archive_error_string(st->a) : "malformed");
    return (long)got;
}

/* Reads whatever tar writes after the archive's end (record padding), up to DRAIN_MAX. */
static void drain(rstream *st)
{
    size_t drained = 0;
    ssize_t got;
    while ((got = poll_read(st->src, st->from, st->buf, IO_BUF)) > 0 && drained < DRAIN_MAX)
        drained += (size_t)got;
}

static int rs_close(void *arg, void *stream, int failed, uint64_t *changed, rerr *e)
{
    remote_source *rs = arg;
    rstream *st = stream;
    if (st == NULL)
        return release(rs, failed, e);
    if (failed)
        __atomic_store_n(&rs->stop, 1, __ATOMIC_RELAXED);
    if (st->writer_started)
        pthread_join(st->writer, NULL);
    int rc = 0;
    if (!failed)
        drain(st);
    archive_read_free(st->a);
    close(st->from);
    rc = end_command(rs, st->h, "reading the files", failed, 1, changed, e);
    free(st->buf);
    free(st);
    return rc;
}

/*
 * Ends the started tar commands no open took: an empty list ends each (stopped instead when
 * failed). A connection that failed does not fail the push, which did not need it.
 */
static int release(remote_source *rs, int failed, rerr *e)
{
    (void)e;
    while (rs->nready > 0) {
        rstream *st = rs->ready[--rs->nready];
        close(st->to);
        if (!failed)
            drain(st);
        close(st->from);
        rerr ignore = {0};
        end_command(rs, st->h, "reading the files", failed || stopping(rs), 1, NULL, &ignore);
        free(st->buf);
        free(st);
    }
    return 0;
}

static void rs_stop(void *arg)
{
    remote_source *rs = arg;
    __atomic_store_n(&rs->stop, 1, __ATOMIC_RELAXED);
}

int remote_source_init(remote_source *rs, ferry_ctx *ctx, const char *machine, const char *root,
                       const pattern_set *exclude, rerr *e)
{
    memset(rs, 0, sizeof(*rs));
    if (!FERRY_HOST_HAS(ctx->host, exec_wait) || ctx->host->exec_start == NULL ||
        ctx->host->exec_wait == NULL)
        return rerr_set(e, E_FAIL,
                        "pushing from remote machine %s needs the host's streaming exec service "
                        "(ABI 1.2); this host lacks it",
                        machine);
    rs->ctx = ctx;
    rs->machine = machine;
    rs->root = root;
    rs->exclude = exclude;
    rs->ops = (backup_source){.arg = rs,
                              .scan = rs_scan,
                              .open = rs_open,
                              .next = rs_next,
                              .read = rs_read,
                              .close = rs_close,
                              .stop = rs_stop};
    return 0;
}
