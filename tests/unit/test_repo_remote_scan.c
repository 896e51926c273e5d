/*
 * Unit tests for the remote listing parser (plugins/repo/remote_scan.c): GNU find's output for
 * a real directory, fed in pieces of every size, builds the same tree as the local scan
 * (tree_scan) of that directory; hostile listings (garbage, truncated records, "..", absolute
 * and repeated paths, entries outside any listed directory) are refused with a message naming
 * the record; exclude patterns leave out the same entries as in a local scan.
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
#include <unistd.h>

#include "../../plugins/repo/pattern.c"
#include "../../plugins/repo/remote_scan.c"
#include "../../plugins/repo/tree.c"
#include "../../plugins/repo/util.c"

static char dir[256];

static void write_file(const char *rel, const char *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/ferry-remote-scan-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char path[512];
    const char *dirs[] = {"a", "a/empty", "b", "b/c", "weird"};
    for (size_t i = 0; i < 5; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, dirs[i]);
        assert_int_equal(mkdir(path, 0755), 0);
    }
    write_file("a/one.txt", "one", 3);
    write_file("a/two.log", "two", 3);
    write_file("b/c/deep", "deep", 4);
    write_file("weird/new\nline", "nl", 2);
    write_file("weird/bad\xff\xfe", "bad", 3);
    write_file("weird/caf\xc3\xa9 space", "x", 1);
    write_file("a-b", "dash", 4); /* sorts between "a" and "a/..." children correctly */
    snprintf(path, sizeof(path), "%s/a/one.txt", dir);
    char other[512];
    snprintf(other, sizeof(other), "%s/b/hard", dir);
    assert_int_equal(link(path, other), 0);
    snprintf(other, sizeof(other), "%s/b/sym", dir);
    assert_int_equal(symlink("../a/one.txt\nx", other), 0);
    snprintf(path, sizeof(path), "%s/b/fifo", dir);
    assert_int_equal(mkfifo(path, 0640), 0);
    snprintf(path, sizeof(path), "%s/a/two.log", dir);
    assert_int_equal(chmod(path, 04755), 0);
    snprintf(path, sizeof(path), "%s/sparse", dir);
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "end", 3, 5 << 20), 3);
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* find's listing of dir (as the remote side runs it). */
static void listing(buf *out)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "cd '%s' && LC_ALL=C find . -printf '%s'", dir, REMOTE_SCAN_FORMAT);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char tmp[4096];
    size_t got;
    while ((got = fread(tmp, 1, sizeof(tmp), f)) > 0)
        buf_append(out, tmp, got);
    assert_int_equal(pclose(f), 0);
}

/* Parses bytes fed piece bytes at a time. 0 or -1 (e set). */
static int parse(const void *data, size_t len, size_t piece, tree_filter filter, void *arg, tree *t,
                 rerr *e)
{
    remote_scan *rs = remote_scan_new(filter, arg);
    for (size_t off = 0; off < len; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        if (remote_scan_feed(rs, (const char *)data + off, n, e) != 0) {
            remote_scan_free(rs);
            return -1;
        }
    }
    return remote_scan_finish(rs, t, e);
}

static void assert_same_tree(const tree *a, const tree *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const tnode *x = &a->nodes[i], *y = &b->nodes[i];
        assert_string_equal(x->path, y->path);
        assert_int_equal(x->kind, y->kind);
        assert_int_equal(x->mode, y->mode);
        assert_int_equal(x->uid, y->uid);
        assert_int_equal(x->gid, y->gid);
        assert_int_equal(x->mtime_sec, y->mtime_sec);
        assert_int_equal(x->mtime_nsec, y->mtime_nsec);
        if (x->kind == T_FILE) {
            assert_int_equal(x->size, y->size);
            assert_int_equal(x->ino, y->ino);
            assert_int_equal(x->ctime_sec, y->ctime_sec);
            assert_int_equal(x->ctime_nsec, y->ctime_nsec);
        }
        if (x->target || y->target)
            assert_string_equal(x->target, y->target);
    }
}

static void test_same_as_local_scan(void **state)
{
    (void)state;
    buf out = {0};
    listing(&out);
    tree local = {0};
    rerr e = {0};
    assert_int_equal(tree_scan(dir, &local, NULL, &e), 0);
    static const size_t pieces[] = {1, 2, 7, 64, 4096, 1 << 20};
    for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
        tree remote = {0};
        if (parse(out.data, out.len, pieces[p], NULL, NULL, &remote, &e) != 0)
            fail_msg("piece %zu: %s", pieces[p], e.msg);
        assert_same_tree(&local, &remote);
        tree_free(&remote);
    }
    tree_free(&local);
    buf_free(&out);
}

static int exclude_cb(void *arg, const char *rel, int is_dir)
{
    return pattern_excluded(arg, rel, is_dir);
}

static void test_exclude_same_as_local(void **state)
{
    (void)state;
    const char *pats[] = {"*.log", "/b/c/", "weird", "!weird"};
    char err[200];
    pattern_set *ps = pattern_compile(pats, 3, err, sizeof(err));
    assert_non_null(ps);
    buf out = {0};
    listing(&out);
    tree local = {0}, remote = {0};
    rerr e = {0};
    assert_int_equal(tree_scan_filtered(dir, &local, NULL, exclude_cb, ps, &e), 0);
    assert_int_equal(parse(out.data, out.len, 13, exclude_cb, ps, &remote, &e), 0);
    assert_same_tree(&local, &remote);
    assert_int_equal(local.excluded, remote.excluded);
    for (size_t i = 0; i < remote.n; i++) {
        assert_null(strstr(remote.nodes[i].path, ".log"));
        assert_null(strstr(remote.nodes[i].path, "weird"));
        assert_null(strstr(remote.nodes[i].path, "deep"));
    }
    tree_free(&local);
    tree_free(&remote);
    /* "!weird" after "weird" re-includes it */
    pattern_free(ps);
    ps = pattern_compile(pats, 4, err, sizeof(err));
    assert_int_equal(parse(out.data, out.len, 4096, exclude_cb, ps, &remote, &e), 0);
    int found = 0;
    for (size_t i = 0; i < remote.n; i++)
        found += strncmp(remote.nodes[i].path, "weird/", 6) == 0;
    assert_int_equal(found, 3);
    tree_free(&remote);
    pattern_free(ps);
    buf_free(&out);
}

#define ROOT            "d 755 0 0 4096 1.5 1.5 2 3 2 \0\0"
#define REC(type, path) type " 644 0 0 1 1700000000.1234567890 1700000000.5 9 3 1 " path "\0\0"

static void test_hostile(void **state)
{
    (void)state;
    static const struct {
        const char *data;
        size_t len;
        const char *why;
    } cases[] = {
#define C(s, why) {s, sizeof(s) - 1, why}
        C("garbage\n", "ends in the middle of a record"),
        C("", "is empty"),
        C("hello world\0\0", "malformed"),
        C(ROOT REC("f", "a") "f 644 0 0 1 17", "ends in the middle"),
        C(ROOT REC("f", "../etc/passwd"), "\".\" or \"..\""),
        C(ROOT REC("f", "/etc/passwd"), "absolute"),
        C(ROOT REC("d", "a") REC("f", "a/../../x"), "\"..\""),
        C(ROOT REC("f", "a") REC("f", "a"), "appears twice"),
        C(ROOT REC("f", "nodir/x"), "is not a directory listed before it"),
        C(ROOT REC("f", "file") REC("f", "file/x"), "is not a directory"),
        C(ROOT ROOT, "second root"),
        C(REC("f", "x"), "only it, is the root"),
        C("f 644 0 0 1 1.0 1.0 2 3 1 \0\0", "root directory"),
        C(ROOT "d 99 0 0 4096 1.5 1.5 2 3 2 x\0\0", "malformed"),
        C(ROOT "d 755 0 0 -4 1.5 1.5 2 3 2 x\0\0", "malformed"),
        C(ROOT "d 755 0 0 4 1.5x 1.5 2 3 2 x\0\0", "malformed"),
        C(ROOT "d 755 0 0 4 1.5 1.5 2 3 99999999999999999999999 x\0\0", "malformed"),
        C(ROOT "z 755 0 0 4 1.5 1.5 2 3 2 x\0\0", "unknown type"),
        C(ROOT REC("f", "a//b"), "empty"),
        C(ROOT REC("f", "."), "\".\""),
#undef C
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tree t = {0};
        rerr e = {0};
        int rc = parse(cases[i].data, cases[i].len, 5, NULL, NULL, &t, &e);
        if (rc == 0)
            fail_msg("case %zu accepted", i);
        if (strstr(e.msg, cases[i].why) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, e.msg, cases[i].why);
        assert_null(strchr(e.msg, '\n'));
        tree_free(&t);
    }
    /* an endless record is refused once it passes the cap, not buffered forever */
    remote_scan *rs = remote_scan_new(NULL, NULL);
    char junk[4096];
    memset(junk, 'x', sizeof(junk));
    rerr e = {0};
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++)
        rc = remote_scan_feed(rs, junk, sizeof(junk), &e);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(e.msg, "longer than"));
    remote_scan_free(rs);
}

static void test_times_and_sockets(void **state)
{
    (void)state;
    static const char data[] = ROOT "f 4755 1000 1001 5 -1.2500000000 12.0000000010 9 3 1 t\0\0"
                                    "s 755 0 0 0 1.0 1.0 10 3 1 sock\0\0";
    tree t = {0};
    rerr e = {0};
    assert_int_equal(parse(data, sizeof(data) - 1, 3, NULL, NULL, &t, &e), 0);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.skipped, 1);
    assert_int_equal(t.nodes[1].mode, 04755);
    assert_int_equal(t.nodes[1].uid, 1000);
    assert_int_equal(t.nodes[1].gid, 1001);
    assert_int_equal(t.nodes[1].mtime_sec, -2);
    assert_int_equal(t.nodes[1].mtime_nsec, 750000000);
    assert_int_equal(t.nodes[1].ctime_sec, 12);
    assert_int_equal(t.nodes[1].ctime_nsec, 1);
    tree_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_as_local_scan),
        cmocka_unit_test(test_exclude_same_as_local),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_times_and_sockets),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
