/*
 * Unit tests for the restore as a tar stream (plugins/repo/remote_restore.c, issue 15 point
 * 1) and for partial restores (restore_req.include, point 2). A tree with every kind of entry
 * (sparse files, hard links, symlinks, a fifo, empty directories, set-user-ID, unicode,
 * invalid UTF-8 and newline names, nanosecond mtimes) is pushed with the real repo_backup into
 * a local storage, streamed with repo_restore_stream into the same GNU tar command a pull
 * runs on an SSH machine (STREAM_TAR_X), and compared with the source: a find -printf listing
 * of type, mode, owner, size, link count, mtime and symlink target, every file's SHA-256, and
 * the blocks of the sparse file. stream_verify's check of the machine's listing and the
 * include filter of both writers are tested too. The plugin's sources are compiled in, as in
 * test_repo_hardlink.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "repo_backup_unity.h"
#include "../../plugins/repo/beneath.c"
#include "../../plugins/repo/chunker.c"
#include "../../plugins/repo/crypto.c"
#include "../../plugins/repo/index.c"
#include "../../plugins/repo/pack.c"
#include "../../plugins/repo/pattern.c"
#include "../../plugins/repo/remote_restore.c"
#include "../../plugins/repo/restore.c"
#include "../../plugins/repo/snapshot.c"
#include "../../plugins/repo/storage.c"
#include "../../plugins/repo/storage_local.c"
#include "../../plugins/repo/tree.c"
#include "../../plugins/repo/ui.c"
#include "../../plugins/repo/util.c"

static char *dir, *src;
static storage *st;
static json_t *vault;

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = NULL;
    assert_true(vasprintf(&cmd, fmt, ap) > 0);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fail_msg("command failed (%d): %s", rc, cmd);
    free(cmd);
}

/* The output of a shell command into b (emptied first; NUL bytes kept, one more after it). */
static void read_cmd(buf *b, const char *cmd)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    b->len = 0;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
        buf_append(b, chunk, n);
    buf_put_u8(b, 0);
    b->len--;
    pclose(p);
}

/* The output of a shell command (to free). */
static char *capture(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *capture(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = NULL;
    assert_true(vasprintf(&cmd, fmt, ap) > 0);
    va_end(ap);
    buf b = {0};
    read_cmd(&b, cmd);
    free(cmd);
    return (char *)b.data;
}

/* Fails with the lines that differ (cmocka cuts long strings). */
static void same_text(const char *got, const char *want)
{
    if (strcmp(got, want) == 0)
        return;
    char *g = xasprintf("%s/got.txt", dir), *w = xasprintf("%s/want.txt", dir);
    FILE *f = fopen(g, "w");
    fputs(got, f);
    fclose(f);
    f = fopen(w, "w");
    fputs(want, f);
    fclose(f);
    char *d = capture("diff '%s' '%s' | head -20", w, g);
    fail_msg("the restore differs from the source:\n%s", d);
}

static int setup(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/ferry-stream-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    dir = xstrdup(tmpl);
    src = xasprintf("%s/src", dir);
    /* Every kind of entry a repository holds. */
    sh("set -e; cd '%s'; mkdir src; cd src; mkdir -p a/b empty 'sp ace' \"$(printf "
       "'uni-\\303\\251')\"; "
       "printf 'hello\\n' > a/b/file; head -c 3000000 /dev/urandom > big; "
       "truncate -s 20M sparse; head -c 1500000 /dev/urandom | dd of=sparse bs=1M seek=8 "
       "conv=notrunc "
       "status=none; truncate -s 9M holes-only; ln big a/hard; ln big hard2; "
       "ln -s /etc/passwd abs-link; ln -s ../big a/b/rel-link; ln -s dangling broken; mkfifo fifo; "
       "printf x > \"$(printf 'bad-\\377\\376')\"; printf y > \"$(printf 'new\\nline')\"; "
       "printf s > suid; chmod 4755 suid; chmod 750 a; chmod 1777 empty; chmod 600 a/b/file; "
       "touch -h -d '2001-02-03 04:05:06.123456789' a/b/rel-link; "
       "touch -d '1999-12-31 23:59:59.5' a/b; touch -d '2010-01-01' .",
       dir);
    char *store = xasprintf("%s/store", dir);
    vault = json_pack("{s:s,s:s}", "provider", "local", "path", store);
    free(store);
    rerr e = {0};
    assert_int_equal(storage_open("st", vault, 1, &st, &e), 0);
    backup_req req = {.repository = "r",
                      .source = src,
                      .snapshot_id = "s1",
                      .hostname = "h",
                      .machine = "m",
                      .level = 1,
                      .threads = 2};
    json_t *result = NULL;
    if (repo_backup(st, &req, NULL, &result, &e) != 0)
        fail_msg("push failed: %s", e.msg);
    json_decref(result);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    storage_close(st);
    json_decref(vault);
    sh("rm -rf '%s'", dir);
    free(dir);
    free(src);
    return 0;
}

static int selects(const void *set, const char *path, int is_dir)
{
    return pattern_excluded(set, path, is_dir);
}

/* restore_req's include for patterns (NULL: everything); pattern_free the set. */
static pattern_set *patterns(const char *const *include, size_t n)
{
    char why[256];
    pattern_set *ps = n ? pattern_compile(include, n, why, sizeof(why)) : NULL;
    if (n && ps == NULL)
        fail_msg("%s", why);
    return ps;
}

/* Streams snapshot s1 (with include, when given) into `STREAM_TAR_X -C out` run by sh in a
 * new directory; returns the restore's result code, with *out the directory (to free). */
static int stream_into(const char *name, const char *const *include, size_t ninclude, json_t *sums,
                       char **out, rerr *e)
{
    *out = xasprintf("%s/%s", dir, name);
    assert_int_equal(mkdir(*out, 0700), 0);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pfd[0], 0);
        close(pfd[0]);
        close(pfd[1]);
        char *cmd = xasprintf(STREAM_TAR_X " -C '%s'", *out);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(pfd[0]);
    pattern_set *ps = patterns(include, ninclude);
    restore_req req = {.repository = "r",
                       .point = "s1",
                       .verify = sums != NULL,
                       .threads = 3,
                       .include = ps ? selects : NULL,
                       .include_arg = ps};
    stream_req sr = {
        .fd = pfd[1], .uid = (int64_t)getuid(), .gid = (int64_t)getgid(), .sums = sums};
    json_t *result = NULL;
    int rc = repo_restore_stream(st, &req, &sr, NULL, &result, e);
    pattern_free(ps);
    close(pfd[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        fail_msg("tar -x failed (status %d)", status);
    json_decref(result);
    return rc;
}

/* What must survive a round trip: every entry's type, mode, owner, size (not of
 * directories), link count, mtime (symlinks' too) and symlink target, and every file's
 * SHA-256. */
static char *listing(const char *root)
{
    return capture("cd '%s' && find . -mindepth 1 -printf '%%P|%%y|%%m|%%U:%%G|%%n|%%T@|%%l|' "
                   "-exec sh -c 'if [ -f \"$1\" ] && [ ! -L \"$1\" ]; then sha256sum < \"$1\"; "
                   "elif [ -d \"$1\" ]; then echo dir; else echo -; fi' sh {} \\; | sort; "
                   "stat -c 'root %%a %%Y' .",
                   root);
}

static void test_stream_round_trip(void **state)
{
    (void)state;
    char *out = NULL;
    rerr e = {0};
    json_t *sums = json_object();
    if (stream_into("full", NULL, 0, sums, &out, &e) != 0)
        fail_msg("the stream failed: %s", e.msg);
    char *want = listing(src), *got = listing(out);
    same_text(got, want);
    /* The sparse files stay sparse: as few blocks as a local restore gives them (the holes
     * are the chunks of zeros; a chunk that mixes data and zeros is written whole), far
     * fewer than their size. */
    char *ldir = xasprintf("%s/local", dir);
    restore_req lreq = {.repository = "r", .point = "s1", .dest = ldir, .threads = 2};
    json_t *lres = NULL;
    if (repo_restore(st, &lreq, NULL, &lres, &e) != 0)
        fail_msg("the local restore failed: %s", e.msg);
    json_decref(lres);
    char *du_src =
        capture("du -k '%s/sparse' '%s/holes-only' | cut -f1 | tr '\\n' ' '", ldir, ldir);
    char *du_out = capture("du -k '%s/sparse' '%s/holes-only' | cut -f1 | tr '\\n' ' '", out, out);
    assert_string_equal(du_out, du_src);
    assert_true(strtol(du_out, NULL, 10) < 10 * 1024);
    free(ldir);
    /* The machine's sha256sum listing matches the sums the stream recorded... */
    char *cmd = xasprintf("cd '%s' && find . -type f -print0 | xargs -0 -r sha256sum -z", out);
    buf b = {0};
    read_cmd(&b, cmd);
    assert_int_equal(stream_verify(sums, (const char *)b.data, b.len, &e), 0);
    /* ... and tells a changed file and a missing one. */
    sh("printf changed > '%s/a/b/file'", out);
    rerr e2 = {0};
    read_cmd(&b, cmd);
    assert_int_equal(stream_verify(sums, (const char *)b.data, b.len, &e2), -1);
    assert_non_null(strstr(e2.msg, "\"a/b/file\" on the machine differs"));
    sh("printf 'hello\\n' > '%s/a/b/file'", out);
    json_object_set_new(sums, "gone", json_string("00"));
    rerr e3 = {0};
    read_cmd(&b, cmd);
    assert_int_equal(stream_verify(sums, (const char *)b.data, b.len, &e3), -1);
    assert_non_null(strstr(e3.msg, "\"gone\" is missing"));
    buf_free(&b);
    free(cmd);
    free(du_src);
    free(du_out);
    free(want);
    free(got);
    free(out);
    json_decref(sums);
}

/* include (pattern.h's syntax): what the patterns select, what selected directories hold and
 * the directories leading to them; a hard link without its first link becomes the file.
 * Through both writers. */
static void test_include(void **state)
{
    (void)state;
    const char *inc[] = {"/hard2", "a/b/", "new\nline"};
    char *out = NULL;
    rerr e = {0};
    if (stream_into("part", inc, 3, NULL, &out, &e) != 0)
        fail_msg("the partial stream failed: %s", e.msg);
    char *names = capture("cd '%s' && find . -mindepth 1 | LC_ALL=C sort | tr '\\n' ' '", out);
    assert_string_equal(names, "./a ./a/b ./a/b/file ./a/b/rel-link ./hard2 ./new line ");
    char *same = capture("cmp '%s/hard2' '%s/big' && stat -c '%%a %%h' '%s/a' '%s/hard2'", out, src,
                         out, out);
    assert_string_equal(same, "750 3\n644 1\n");
    free(names);
    free(same);
    free(out);

    /* A glob without a slash matches at any depth; big and hard2 link to a/hard, which is
     * left out: the first becomes the file, the second links to it. */
    const char *globs[] = {"*-link", "b?g", "hard[0-9]"};
    pattern_set *ps = patterns(globs, 3);
    char *dest = xasprintf("%s/part-local", dir);
    restore_req req = {.repository = "r",
                       .point = "s1",
                       .dest = dest,
                       .verify = 1,
                       .threads = 2,
                       .include = selects,
                       .include_arg = ps};
    json_t *result = NULL;
    if (repo_restore(st, &req, NULL, &result, &e) != 0)
        fail_msg("the partial restore failed: %s", e.msg);
    json_decref(result);
    pattern_free(ps);
    names = capture("cd '%s' && find . -mindepth 1 | LC_ALL=C sort | tr '\\n' ' '; "
                    "[ big -ef hard2 ] && echo linked",
                    dest);
    assert_string_equal(names, "./a ./a/b ./a/b/rel-link ./abs-link ./big ./hard2 linked\n");
    free(names);
    free(dest);

    /* An include that selects nothing fails before anything is written. */
    const char *none[] = {"a/nothing", "*.none"};
    ps = patterns(none, 2);
    dest = xasprintf("%s/part-none", dir);
    req.dest = dest;
    req.include_arg = ps;
    rerr e2 = {0};
    assert_int_equal(repo_restore(st, &req, NULL, &result, &e2), -1);
    assert_non_null(strstr(e2.msg, "include matches nothing in snapshot s1 of r"));
    pattern_free(ps);
    struct stat sb;
    assert_int_equal(lstat(dest, &sb), -1);
    free(dest);
}

/* When tar stops reading, the stream ends with a clear error instead of blocking. */
static void test_stream_reader_gone(void **state)
{
    (void)state;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    close(pfd[0]);
    restore_req req = {.repository = "r", .point = "s1", .threads = 2};
    stream_req sr = {.fd = pfd[1], .uid = (int64_t)getuid(), .gid = (int64_t)getgid()};
    json_t *result = NULL;
    rerr e = {0};
    assert_int_equal(repo_restore_stream(st, &req, &sr, NULL, &result, &e), -1);
    assert_non_null(strstr(e.msg, "the machine stopped reading the restore"));
    close(pfd[1]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_round_trip),
        cmocka_unit_test(test_include),
        cmocka_unit_test(test_stream_reader_gone),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
