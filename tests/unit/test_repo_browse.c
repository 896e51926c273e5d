/*
 * Unit tests for plugins/repo/browse.c (issue 18 point 6: ferry repo snapshots|ls|diff):
 * which snapshot a name picks (latest, ids, unique prefixes, REPOSITORY/ID, filters, the
 * ambiguous and the missing, hostile text in the name), the entries ls lists at a path
 * (direct and recursive, a name that is a prefix of another's, refused paths, names that are
 * not UTF-8), and diff's marks, order and counts over hand-built trees.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/repo/chunker.c"
#include "../../plugins/repo/crypto.c"
#include "../../plugins/repo/index.c"
#include "../../plugins/repo/pack.c"
#include "../../plugins/repo/snapshot.c"
#include "../../plugins/repo/storage.c"
#include "../../plugins/repo/storage_local.c"
#include "../../plugins/repo/tree.c"
#include "../../plugins/repo/util.c"
#include "../../plugins/repo/browse.c"

const stor_ops stor_s3_ops = {.name = "s3"};
const stor_ops stor_sftp_ops = {.name = "sftp"};
const stor_ops stor_webdav_ops = {.name = "webdav"};

/* --- snap_find ------------------------------------------------------------------------- */

/* A list, oldest first: repository/id pushed by machine. */
static void list_add(snap_list *l, const char *repository, const char *id, const char *machine)
{
    l->items = realloc(l->items, (l->n + 1) * sizeof(*l->items));
    assert_non_null(l->items);
    snap_info *si = &l->items[l->n++];
    memset(si, 0, sizeof(*si));
    snprintf(si->repository, sizeof(si->repository), "%s", repository);
    snprintf(si->id, sizeof(si->id), "%s", id);
    si->doc = json_pack("{s:s?}", "machine", machine);
}

static snap_list sample_list(void)
{
    snap_list l = {0};
    list_add(&l, "app", "20260101_020000", "web-01");
    list_add(&l, "app", "20260101_020000-2", "web-02");
    list_add(&l, "db", "20260101_030000", "web-01");
    list_add(&l, "app", "20260102_020000", "web-01");
    list_add(&l, "db", "20260102_020000", "web-02");
    list_add(&l, "old", "v1", NULL);
    return l;
}

/* The snapshot what names as "repository/id", or "!" and the error's kind and text. */
static char *find(const snap_list *l, const char *what, const char *repository, const char *machine,
                  rerr *e)
{
    memset(e, 0, sizeof(*e));
    const snap_info *si = snap_find(l, what, repository, machine, "st", e);
    if (si == NULL) {
        assert_int_not_equal(e->kind, E_NONE);
        return xasprintf("!%d %s", e->kind, e->msg);
    }
    return xasprintf("%s/%s", si->repository, si->id);
}

#define ASSERT_FINDS(what, repository, machine, expected)                                          \
    do {                                                                                           \
        rerr e_;                                                                                   \
        char *got_ = find(&l, what, repository, machine, &e_);                                     \
        assert_string_equal(got_, expected);                                                       \
        free(got_);                                                                                \
    } while (0)

static void test_find_names(void **state)
{
    (void)state;
    snap_list l = sample_list();
    ASSERT_FINDS("latest", NULL, NULL, "old/v1");
    ASSERT_FINDS("latest", "app", NULL, "app/20260102_020000");
    ASSERT_FINDS("latest", NULL, "web-02", "db/20260102_020000");
    ASSERT_FINDS("latest", "app", "web-02", "app/20260101_020000-2");
    /* A whole id wins over the longer one it starts. */
    ASSERT_FINDS("20260101_020000", NULL, NULL, "app/20260101_020000");
    ASSERT_FINDS("20260101_020000-", NULL, NULL, "app/20260101_020000-2");
    ASSERT_FINDS("20260101_03", NULL, NULL, "db/20260101_030000");
    ASSERT_FINDS("v", NULL, NULL, "old/v1");
    ASSERT_FINDS("app/20260102", NULL, NULL, "app/20260102_020000");
    ASSERT_FINDS("db/20260102", NULL, NULL, "db/20260102_020000");
    ASSERT_FINDS("20260102", "db", NULL, "db/20260102_020000");
    ASSERT_FINDS("20260102", NULL, "web-02", "db/20260102_020000");
    snap_list_free(&l);
}

static void test_find_refusals(void **state)
{
    (void)state;
    snap_list l = sample_list();
    rerr e;
    char *got = find(&l, "2026", NULL, NULL, &e);
    assert_int_equal(e.kind, E_INVALID);
    assert_non_null(strstr(got, "snapshot \"2026\" is ambiguous in storage st: 5 snapshots match "
                                "(\"db/20260102_020000\", \"app/20260102_020000\", "
                                "\"db/20260101_030000\", …); give more of the id"));
    free(got);
    /* The same id in two repositories: whole ids are ambiguous too. */
    got = find(&l, "20260102_020000", NULL, NULL, &e);
    assert_int_equal(e.kind, E_INVALID);
    assert_non_null(strstr(got, "2 snapshots match"));
    free(got);
    got = find(&l, "19990101", NULL, NULL, &e);
    assert_int_equal(e.kind, E_NOTFOUND);
    assert_string_equal(got, "!5 storage st has no snapshot \"19990101\" (ferry repo snapshots "
                             "lists them)");
    free(got);
    got = find(&l, "v1", "app", "web-01", &e);
    assert_string_equal(got, "!5 storage st has no snapshot \"v1\" (repository app, pushed by "
                             "web-01) (ferry repo snapshots lists them)");
    free(got);
    got = find(&l, "latest", "nothing", NULL, &e);
    assert_int_equal(e.kind, E_NOTFOUND);
    free(got);
    got = find(&l, "app/", NULL, NULL, &e);
    assert_int_equal(e.kind, E_INVALID);
    free(got);
    got = find(&l, "", NULL, NULL, &e);
    assert_int_equal(e.kind, E_INVALID);
    free(got);
    /* Whatever the name holds is quoted escaped in the message, never raw. */
    got = find(&l, "\x1b[31m\n\xff", NULL, NULL, &e);
    assert_non_null(strstr(got, "\"\\x1b[31m\\x0a\\xff\""));
    for (const char *p = got; *p; p++)
        assert_true((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
    free(got);
    snap_list_free(&l);
}

static void test_snap_row(void **state)
{
    (void)state;
    snap_list l = {0};
    list_add(&l, "app", "bad\xff", NULL);
    json_object_set_new(l.items[0].doc, "tags", json_pack("{s:s}", "type", "nightly"));
    json_t *row = snap_row(&l.items[0]);
    char *text = json_dumps(row, JSON_COMPACT);
    assert_string_equal(text, "{\"repository\":\"app\",\"id\":\"bad\xef\xbf\xbd\",\"id_hex\":"
                              "\"626164ff\",\"machine\":null,\"time\":null,\"expires\":null,"
                              "\"tags\":{\"type\":\"nightly\"},\"source\":null,\"stats\":null}");
    free(text);
    json_decref(row);
    snap_list_free(&l);
}

/* --- ls ---------------------------------------------------------------------------------- */

static tnode *node(tree *t, uint8_t kind, const char *path)
{
    tnode *n = add_node(t);
    n->kind = kind;
    n->path = xstrdup(path);
    n->mode = kind == T_DIR ? 0755 : 0644;
    n->mtime_sec = 1767232800; /* 2026-01-01T02:00:00Z */
    n->mtime_nsec = 5;
    return n;
}

static void sample_tree(tree *t)
{
    node(t, T_DIR, "");
    node(t, T_DIR, "a");
    node(t, T_FILE, "a/b")->size = 3;
    node(t, T_DIR, "a/c");
    node(t, T_FILE, "a/c/d");
    node(t, T_FILE, "a-b");
    node(t, T_SYMLINK, "link")->target = xstrdup("a/\xfe");
    node(t, T_FILE, "x\xff");
}

/* The paths ls lists, space-separated, or "!kind message". */
static char *ls(const tree *t, const char *path, int recursive)
{
    json_t *out = NULL;
    rerr e = {0};
    if (browse_ls(t, path, recursive, "snapshot s", &out, &e) != 0) {
        assert_null(out);
        return xasprintf("!%d %s", e.kind, e.msg);
    }
    char *text = xstrdup("");
    size_t i;
    json_t *entry;
    json_array_foreach (out, i, entry) {
        char *next = xasprintf("%s%s%s", text, i ? " " : "",
                               json_string_value(json_object_get(entry, "path")));
        free(text);
        text = next;
    }
    json_decref(out);
    return text;
}

#define ASSERT_LS(path, recursive, expected)                                                       \
    do {                                                                                           \
        char *got_ = ls(&t, path, recursive);                                                      \
        assert_string_equal(got_, expected);                                                       \
        free(got_);                                                                                \
    } while (0)

static void test_ls(void **state)
{
    (void)state;
    tree t = {0};
    sample_tree(&t);
    ASSERT_LS("", 0, "a a-b link x\xef\xbf\xbd");
    ASSERT_LS("/", 1, "a a/b a/c a/c/d a-b link x\xef\xbf\xbd");
    ASSERT_LS("a", 0, "a a/b a/c");
    ASSERT_LS("/a/", 0, "a a/b a/c");
    ASSERT_LS("a", 1, "a a/b a/c a/c/d");
    ASSERT_LS("a/b", 1, "a/b");
    ASSERT_LS("a-b", 0, "a-b");
    ASSERT_LS("../a", 0, "!3 path \"../a\" has an empty, \".\" or \"..\" component");
    ASSERT_LS("a//b", 0, "!3 path \"a//b\" has an empty, \".\" or \"..\" component");
    ASSERT_LS("a/./b", 0, "!3 path \"a/./b\" has an empty, \".\" or \"..\" component");
    ASSERT_LS("a/..", 0, "!3 path \"a/..\" has an empty, \".\" or \"..\" component");
    ASSERT_LS("zz\n", 0, "!5 snapshot s has no entry \"zz\\x0a\"");

    json_t *out = NULL;
    rerr e = {0};
    assert_int_equal(browse_ls(&t, "", 0, "s", &out, &e), 0);
    char *text = json_dumps(out, JSON_COMPACT);
    assert_non_null(strstr(text,
                           "{\"path\":\"a\",\"type\":\"dir\",\"mode\":493,\"uid\":0,\"gid\":0,"
                           "\"size\":0,\"mtime\":\"2026-01-01T02:00:00.000000005Z\"}"));
    assert_non_null(strstr(text, "\"path\":\"link\",\"type\":\"symlink\""));
    assert_non_null(strstr(text, "\"target\":\"a/\xef\xbf\xbd\",\"target_hex\":\"612ffe\""));
    assert_non_null(strstr(text, "\"path\":\"x\xef\xbf\xbd\",\"path_hex\":\"78ff\""));
    free(text);
    json_decref(out);
    tree_free(&t);
}

static void test_names_not_utf8(void **state)
{
    (void)state;
    /* Overlong forms, surrogates and code points past U+10FFFF are not UTF-8 either. */
    static const char *const bad[] = {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82",
                                      "ok\x80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *o = json_object();
        set_name(o, "path", bad[i]);
        assert_non_null(json_object_get(o, "path_hex"));
        assert_non_null(strstr(json_string_value(json_object_get(o, "path")), "\xef\xbf\xbd"));
        json_decref(o);
    }
    json_t *o = json_object();
    set_name(o, "path", "caf\xc3\xa9 \xf0\x9f\x98\x80 \x1b");
    assert_null(json_object_get(o, "path_hex"));
    assert_string_equal(json_string_value(json_object_get(o, "path")),
                        "caf\xc3\xa9 \xf0\x9f\x98\x80 \x1b");
    json_decref(o);
}

/* --- diff -------------------------------------------------------------------------------- */

static tnode *chunk(tnode *n, uint8_t byte)
{
    n->nchunks = 1;
    n->chunks = xcalloc(1, sizeof(chunk_ref));
    memset(n->chunks[0].id, byte, ID_LEN);
    n->chunks[0].len = 10;
    n->size = 10;
    return n;
}

static char *diff_text(const tree *a, const tree *b, int metadata, json_t **stats)
{
    json_t *d = browse_diff(a, b, metadata);
    char *text = xstrdup("");
    size_t i;
    json_t *c;
    json_array_foreach (json_object_get(d, "changes"), i, c) {
        char *next = xasprintf("%s%s%s %s", text, i ? ", " : "",
                               json_string_value(json_object_get(c, "change")),
                               json_string_value(json_object_get(c, "path")));
        free(text);
        text = next;
    }
    *stats = json_incref(json_object_get(d, "stats"));
    json_decref(d);
    return text;
}

static void test_diff(void **state)
{
    (void)state;
    tree a = {0}, b = {0};
    node(&a, T_DIR, "");
    node(&a, T_DIR, "a");
    chunk(node(&a, T_FILE, "a/same"), 1);
    chunk(node(&a, T_FILE, "a/changed"), 2);
    chunk(node(&a, T_FILE, "a/touched"), 3);
    node(&a, T_DIR, "gone");
    chunk(node(&a, T_FILE, "gone/f"), 4);
    chunk(node(&a, T_FILE, "kind"), 5);
    node(&a, T_SYMLINK, "link")->target = xstrdup("x");

    node(&b, T_DIR, "");
    node(&b, T_DIR, "a");
    chunk(node(&b, T_FILE, "a/changed"), 9);
    chunk(node(&b, T_FILE, "a/same"), 1);
    node(&b, T_DIR, "a/sub");
    chunk(node(&b, T_FILE, "a/sub/new"), 6);
    chunk(node(&b, T_FILE, "a/touched"), 3)->mode = 0600;
    chunk(node(&b, T_FILE, "a-new"), 7);
    node(&b, T_SYMLINK, "kind")->target = xstrdup("a");
    node(&b, T_SYMLINK, "link")->target = xstrdup("y");

    json_t *stats = NULL;
    char *got = diff_text(&a, &b, 0, &stats);
    /* Tree order: "a/…" before "a-new" ('/' sorts first), a directory before what it holds. */
    assert_string_equal(got, "M a/changed, + a/sub/, + a/sub/new, + a-new, - gone/, - gone/f, "
                             "T kind, M link");
    free(got);
    char *s = json_dumps(stats, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"added\":{\"bytes\":20,\"dirs\":1,\"files\":2,\"others\":0},"
                           "\"changed_files\":1,\"metadata\":0,"
                           "\"removed\":{\"bytes\":10,\"dirs\":1,\"files\":1,\"others\":0}}");
    free(s);
    json_decref(stats);

    got = diff_text(&a, &b, 1, &stats);
    assert_non_null(strstr(got, "M a/changed, + a/sub/, + a/sub/new, U a/touched, + a-new"));
    assert_int_equal(json_integer_value(json_object_get(stats, "metadata")), 1);
    free(got);
    json_decref(stats);

    got = diff_text(&a, &a, 1, &stats);
    assert_string_equal(got, "");
    free(got);
    json_decref(stats);
    tree_free(&a);
    tree_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_names),     cmocka_unit_test(test_find_refusals),
        cmocka_unit_test(test_snap_row),       cmocka_unit_test(test_ls),
        cmocka_unit_test(test_names_not_utf8), cmocka_unit_test(test_diff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
