/*
 * Pushes through the remote path (remote_read.c: a streamed find listing, then streamed GNU
 * tar read with libarchive) with a stand-in for the host's streaming exec service that runs
 * the commands locally with /bin/sh, so the whole remote pipeline is tested without SSH (the
 * end-to-end test tests/e2e/repo_remote_push.sh runs it over real OpenSSH):
 * - a tree with modes, symlinks, hard links, a sparse file, invalid UTF-8 and newline names,
 *   empty directories and a FIFO restores equal to the source (tests/helpers/tree_compare.py);
 * - a second push after a change reads only the changed file (bytes received);
 * - a file removed between the scan and the read is left out, as a local push does;
 * - hostile remote tools (a find printing "..", garbage or a cut record; a tar sending an
 *   entry that was not asked for) fail the push and store no snapshot;
 * - a cancel while tar stalls ends the push at once and stops its commands, and the next push
 *   reuses the pack that arrived before it;
 * - names with quotes, spaces, "$(...)" and newlines reach the commands quoted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "repo_backup_unity.h"
#include "../../plugins/repo/beneath.c"
#include "../../plugins/repo/chunker.c"
#include "../../plugins/repo/crypto.c"
#include "../../plugins/repo/index.c"
#include "../../plugins/repo/machine.c"
#include "../../plugins/repo/pack.c"
#include "../../plugins/repo/pattern.c"
#include "../../plugins/repo/remote_read.c"
#include "../../plugins/repo/remote_scan.c"
#include "../../plugins/repo/restore.c"
#include "../../plugins/repo/snapshot.c"
#include "../../plugins/repo/storage.c"
#include "../../plugins/repo/storage_local.c"
#include "../../plugins/repo/tree.c"
#include "../../plugins/repo/ui.c"
#include "../../plugins/repo/util.c"

/* --- a local stand-in for exec_start / exec_wait ---------------------------------------- */

struct ferry_exec_stream {
    pid_t pid;
    int err; /* memfd holding the command's stderr */
};

static char fake_path[1024]; /* PATH for the commands (a directory of fake tools first) */
static int started;          /* commands started */

static ferry_exec_stream *fake_start(ferry_ctx *ctx, const char *command, const json_t *options,
                                     int *to_cmd, int *from_cmd)
{
    (void)ctx;
    (void)options;
    int in[2], out[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    ferry_exec_stream *h = xcalloc(1, sizeof(*h));
    h->err = memfd_create("stderr", MFD_CLOEXEC);
    h->pid = fork();
    if (h->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(h->err, 2);
        setpgid(0, 0);
        signal(SIGPIPE, SIG_DFL);
        if (fake_path[0])
            setenv("PATH", fake_path, 1);
        execl("/bin/sh", "sh", "-c", command, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    *to_cmd = in[1];
    *from_cmd = out[0];
    started++;
    return h;
}

static json_t *fake_wait(ferry_ctx *ctx, ferry_exec_stream *h, int stop)
{
    (void)ctx;
    if (stop)
        kill(-h->pid, SIGTERM);
    int status = 0;
    waitpid(h->pid, &status, 0);
    char text[65536];
    ssize_t n = pread(h->err, text, sizeof(text) - 1, 0);
    text[n > 0 ? n : 0] = '\0';
    close(h->err);
    free(h);
    return json_pack("{s:i,s:o,s:s,s:b,s:i,s:o}", "exit_code",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1, "signal",
                     WIFSIGNALED(status) ? json_integer(WTERMSIG(status)) : json_null(), "output",
                     text, "truncated", 0, "duration_ms", 0, "stopped",
                     stop ? json_string("stop") : json_null());
}

static ferry_host fake_host;
static ferry_ctx fake_ctx;

/* --- fixture ---------------------------------------------------------------------------- */

static char base[256], src[300], store[300], fakes[300];
static storage *st;
static json_t *vault;

/* Runs a shell script with arg0 as its $0 (a path that needs quoting stays out of it). */
static void sh_arg(const char *arg0, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sh_arg(const char *arg0, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = NULL;
    assert_true(vasprintf(&cmd, fmt, ap) > 0);
    va_end(ap);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, arg0, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("command failed: %s", cmd);
    free(cmd);
}
#define sh(...) sh_arg("sh", __VA_ARGS__)

static int setup(void **state)
{
    (void)state;
    fake_host.struct_size = sizeof(fake_host);
    fake_host.exec_start = fake_start;
    fake_host.exec_wait = fake_wait;
    fake_ctx.struct_size = sizeof(fake_ctx);
    fake_ctx.host = &fake_host;
    snprintf(base, sizeof(base), "/tmp/ferry-remote-push-XXXXXX");
    assert_non_null(mkdtemp(base));
    /* The pushed directory's own name needs quoting: a quote, a space, $(...) */
    snprintf(src, sizeof(src), "%s/it's a $(touch pwned) dir", base);
    snprintf(store, sizeof(store), "%s/store", base);
    snprintf(fakes, sizeof(fakes), "%s/fakes", base);
    assert_int_equal(mkdir(src, 0755), 0);
    assert_int_equal(mkdir(fakes, 0755), 0);
    sh_arg(
        src,
        "cd \"$0\" && mkdir -p a/empty b/c 'sp ace' && head -c 3000000 /dev/urandom > a/big && "
        "printf one > a/one && ln a/one b/hard && ln a/one 'sp ace/hard2' && "
        "ln -s '../a/one' b/sym && ln -s 'dangling target' b/dangle && "
        "printf nl > \"$(printf 'new\\nline')\" && printf bad > \"$(printf 'bad\\377\\376')\" && "
        "printf caf > \"$(printf 'caf\\303\\251')\" && printf q > \"it's\" && "
        "printf d > '$(touch pwned2)' && printf dash > -- && printf opt > --help && "
        "mkfifo b/fifo && chmod 4755 a/one && chmod 1777 b/c && chmod 0600 b/c/../../caf* && "
        "truncate -s 64M sparse && "
        "dd if=/dev/urandom of=sparse bs=4096 count=1 seek=8192 conv=notrunc 2>/dev/null && "
        "touch -d '2001-02-03 04:05:06.123456789' a/big");
    if (geteuid() == 0) /* device numbers come from a separate stat: a node to check them */
        sh_arg(src, "cd \"$0\" && mknod -m 0660 b/cdev c 1 7");
    vault = json_pack("{s:s,s:s}", "provider", "local", "path", store);
    rerr e = {0};
    assert_int_equal(storage_open("st", vault, 1, &st, &e), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    storage_close(st);
    json_decref(vault);
    sh("rm -rf '%s'", base);
    return 0;
}

/* Pushes src through the remote path as snapshot id; 0, or -1 with e set. *bytes receives
 * the bytes that came from the "machine". */
static ui *push_ui; /* NULL but in the cancel test */

static int remote_push(const char *id, const pattern_set *ex, uint64_t *bytes, json_t **result,
                       rerr *e)
{
    remote_source source;
    assert_int_equal(remote_source_init(&source, &fake_ctx, "m", src, ex, e), 0);
    backup_req req = {.repository = "r",
                      .source = src,
                      .remote = &source.ops,
                      .snapshot_id = id,
                      .hostname = "h",
                      .machine = "m",
                      .level = 1,
                      .verify = 1,
                      .threads = 2};
    json_t *res = NULL;
    int rc = repo_backup(st, &req, push_ui, &res, e);
    if (bytes)
        *bytes = source.bytes;
    if (result)
        *result = res;
    else
        json_decref(res);
    return rc;
}

static void compare(const char *id)
{
    char dest[400];
    snprintf(dest, sizeof(dest), "%s/%s.out", base, id);
    restore_req req = {.repository = "r", .point = id, .dest = dest, .verify = 1, .threads = 2};
    json_t *result = NULL;
    rerr e = {0};
    if (repo_restore(st, &req, NULL, &result, &e) != 0)
        fail_msg("restore of %s: %s", id, e.msg);
    json_decref(result);
    sh_arg(src, "python3 tests/helpers/tree_compare.py \"$0\" '%s' >&2", dest);
    if (strcmp(id, "vanish") != 0) /* the hole did not become data */
        sh("test $(stat -c %%b '%s/sparse') -lt 40000", dest);
    if (geteuid() == 0)
        sh("test \"$(stat -c '%%F %%t %%T' '%s/b/cdev')\" = 'character special file 1 7'", dest);
    sh("rm -rf '%s'", dest);
}

static int snapshots(void)
{
    snap_list l;
    rerr e = {0};
    assert_int_equal(snap_list_read(st, "r", &l, &e), 0);
    int n = (int)l.n;
    snap_list_free(&l);
    return n;
}

static void test_round_trip_and_incremental(void **state)
{
    (void)state;
    rerr e = {0};
    uint64_t first = 0, second = 0;
    json_t *res = NULL;
    if (remote_push("s1", NULL, &first, &res, &e) != 0)
        fail_msg("push: %s", e.msg);
    json_decref(res);
    sh("test ! -e '%s/pwned' && test ! -e pwned", base);
    /* the sparse file's hole did not travel: 3 MB of big, 4 KiB of sparse, the rest small */
    assert_true(first > 3000000 && first < 3300000);
    compare("s1");
    /* 1 file changes: only it is read again */
    sh_arg(src, "cd \"$0\" && printf changed > \"it's\"");
    int before = started;
    if (remote_push("s2", NULL, &second, &res, &e) != 0)
        fail_msg("push 2: %s", e.msg);
    json_t *stats = json_object_get(res, "stats");
    assert_int_equal(json_integer_value(json_object_get(stats, "bytes_read")), 7);
    json_decref(res);
    int devs = geteuid() == 0; /* one stat for the device numbers */
    /* one listing, and the tars started with it (one per default thread), one of them read */
    int tars = default_threads() < 16 ? default_threads() : 16;
    assert_int_equal(started - before, 1 + tars + devs);
    assert_true(second < 20000 + (uint64_t)tars * 10240); /* + the empty archives (10 KiB) */
    compare("s2");
    /* nothing changed: the listing, no file read (the tars started with it end at once) */
    before = started;
    assert_int_equal(remote_push("s3", NULL, NULL, NULL, &e), 0);
    assert_int_equal(started - before, 1 + tars + devs); /* the tars get an empty list */
}

/* A file removed between the scan and the read is left out (as in a local push). */
static void on_after_scan(const char *source)
{
    char p[600], dir[600];
    snprintf(p, sizeof(p), "%s/a/big", source);
    snprintf(dir, sizeof(dir), "%s/a", source);
    struct stat was;
    assert_int_equal(stat(dir, &was), 0);
    assert_int_equal(unlink(p), 0);
    /* the directory's mtime as scanned, so only the vanished file differs */
    struct timespec times[2] = {was.st_atim, was.st_mtim};
    assert_int_equal(utimensat(AT_FDCWD, dir, times, 0), 0);
}

static void test_vanished(void **state)
{
    (void)state;
    sh_arg(src, "cd \"$0\" && cp -p a/one a/gone-later && printf x >> a/gone-later && "
                "head -c 100000 /dev/urandom > a/big");
    backup_test_after_scan = on_after_scan;
    rerr e = {0};
    json_t *res = NULL;
    int rc = remote_push("vanish", NULL, NULL, &res, &e);
    backup_test_after_scan = NULL;
    if (rc != 0)
        fail_msg("push: %s", e.msg);
    json_decref(res);
    compare("vanish");
}

static void test_exclude(void **state)
{
    (void)state;
    const char *pats[] = {"/a/", "*.none", "sparse"};
    char err[200];
    pattern_set *ps = pattern_compile(pats, 3, err, sizeof(err));
    rerr e = {0};
    json_t *res = NULL;
    assert_int_equal(remote_push("ex", ps, NULL, &res, &e), 0);
    json_decref(res);
    pattern_free(ps);
    char dest[400];
    snprintf(dest, sizeof(dest), "%s/ex.out", base);
    restore_req req = {.repository = "r", .point = "ex", .dest = dest, .threads = 2};
    assert_int_equal(repo_restore(st, &req, NULL, &res, &e), 0);
    json_decref(res);
    sh("test ! -e '%s/a' && test ! -e '%s/sparse' && test -e '%s/b/hard'", dest, dest, dest);
    sh("rm -rf '%s'", dest);
}

/* Fake find and tar scripts first on PATH; each case must fail and store nothing. */
static void test_hostile_tools(void **state)
{
    (void)state;
    static const struct {
        const char *tool, *script, *why;
    } cases[] = {
        {"find", "printf 'd 755 0 0 1 1.0 1.0 1 1 2 \\0\\0f 644 0 0 1 1.0 1.0 2 1 1 ../x\\0\\0'",
         "\".\" or \"..\""},
        {"find", "printf 'd 755 0 0 1 1.0 1.0 1 1 2 \\0\\0f 644 0 0 1 1.0 1.0 2 1 1 /etc/x\\0\\0'",
         "absolute"},
        {"find", "echo garbage", "ends in the middle"},
        {"find", "printf 'd 755 0 0 1 1.0 1.0 1 1 2 \\0\\0f 644 0 0 1 1.0'", "ends in the middle"},
        {"find", "echo 'find: cannot read' >&2; exit 1", "exit 1"},
        {"tar",
         "cd /tmp && printf evil > /tmp/ferry-evil-$$ && exec /bin/tar -c -f - --format=gnu "
         "ferry-evil-$$",
         "not asked for"},
        {"tar", "head -c 5000 /dev/urandom", "not a tar stream"},
        {"tar", "/bin/tar \"$@\" | head -c 2000", "broke off"},
    };
    int before = snapshots();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sh_arg(cases[i].script,
               "rm -f '%s'/*; printf '#!/bin/sh\\n%%s\\n' \"$0\" > '%s/%s' && chmod +x '%s/%s'",
               fakes, fakes, cases[i].tool, fakes, cases[i].tool);
        snprintf(fake_path, sizeof(fake_path), "%s:/usr/bin:/bin", fakes);
        /* make the tar stream necessary: a changed file */
        sh_arg(src, "cd \"$0\" && printf '%zu' >> b/c/f", i);
        rerr e = {0};
        int rc = remote_push("bad", NULL, NULL, NULL, &e);
        fake_path[0] = '\0';
        if (rc == 0)
            fail_msg("case %zu (%s) was accepted", i, cases[i].tool);
        if (strstr(e.msg, cases[i].why) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, e.msg, cases[i].why);
        assert_int_equal(snapshots(), before);
    }
    sh("rm -f /tmp/ferry-evil-*");
}

static double cancel_at;
static int cancel_after(void *arg)
{
    (void)arg;
    return mono_sec() > cancel_at;
}

/* A cancel while the remote tar stalls: the push ends at once, its commands are stopped, the
 * storage verifies, and the next push reuses the pack that arrived before the cancel. */
static void test_cancel_reuses(void **state)
{
    (void)state;
    sh_arg(src, "cd \"$0\" && head -c 40000000 /dev/urandom > stalled");
    sh_arg(fakes,
           "printf '#!/bin/sh\\n/bin/tar \"$@\" | { head -c 30000000; exec sleep 61.5; }\\n' "
           "> \"$0/tar\" && chmod +x \"$0/tar\"");
    snprintf(fake_path, sizeof(fake_path), "%s:/usr/bin:/bin", fakes);
    ui u = {.cancelled = cancel_after};
    push_ui = &u;
    cancel_at = mono_sec() + 4;
    rerr e = {0};
    int before = snapshots();
    double t0 = mono_sec();
    int rc = remote_push("cancelled", NULL, NULL, NULL, &e);
    double took = mono_sec() - t0;
    push_ui = NULL;
    fake_path[0] = '\0';
    sh_arg(fakes, "rm -f \"$0/tar\"");
    assert_int_equal(rc, -1);
    assert_int_equal(e.kind, E_CANCELLED);
    assert_true(took < 10);
    assert_int_equal(snapshots(), before);
    sh("sleep 0.5; ! pgrep -f 'sleep 61[.]5' >/dev/null");
    json_t *res = NULL;
    if (remote_push("after-cancel", NULL, NULL, &res, &e) != 0)
        fail_msg("push after the cancel: %s", e.msg);
    json_int_t fresh =
        json_integer_value(json_object_get(json_object_get(res, "stats"), "bytes_new"));
    json_decref(res);
    /* a pack is 16 MiB: the first one arrived before the tar stalled (a chunk is cut once
     * 4 MiB follow it, so about 26 MB of the 30 MB sent were packed) */
    if (fresh > 40000000 - (16 << 20))
        fail_msg("the push after the cancel stored %lld new bytes of 40000000", (long long)fresh);
    compare("after-cancel"); /* every chunk, the reused ones too, checked against its hash */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_incremental),
        cmocka_unit_test(test_vanished),
        cmocka_unit_test(test_exclude),
        cmocka_unit_test(test_hostile_tools),
        cmocka_unit_test(test_cancel_reuses),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
