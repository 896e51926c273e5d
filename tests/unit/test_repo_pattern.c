/*
 * Unit tests for the push's exclude patterns (plugins/repo/pattern.c): a table of gitignore
 * cases (pattern list, path, directory or not, excluded or not), the glob matcher alone, and
 * the patterns refused with their one-line reasons.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../plugins/repo/pattern.c"
#include "../../plugins/repo/util.c"

typedef struct excl_case {
    const char *patterns[4];
    const char *path;
    int is_dir;
    int excluded;
} excl_case;

static const excl_case cases[] = {
    /* a name without a slash matches at any depth, files and directories */
    {{"*.log"}, "a.log", 0, 1},
    {{"*.log"}, "x/y/a.log", 0, 1},
    {{"*.log"}, "a.logx", 0, 0},
    {{"*.log"}, "logs", 1, 0},
    {{"cache"}, "cache", 1, 1},
    {{"cache"}, "src/cache", 1, 1},
    {{"cache"}, "src/cache", 0, 1},
    {{"cache"}, "src/cachex", 0, 0},
    /* '*' and '?' never cross a slash */
    {{"a*c"}, "abbbc", 0, 1},
    {{"/a*c"}, "ab/c", 0, 0},
    {{"/a?c"}, "a/c", 0, 0},
    {{"a?c"}, "abc", 0, 1},
    {{"a?c"}, "ac", 0, 0},
    /* leading slash anchors at the pushed root */
    {{"/build"}, "build", 1, 1},
    {{"/build"}, "src/build", 1, 0},
    /* a slash in the middle anchors too */
    {{"doc/*.txt"}, "doc/a.txt", 0, 1},
    {{"doc/*.txt"}, "x/doc/a.txt", 0, 0},
    {{"doc/*.txt"}, "doc/sub/a.txt", 0, 0},
    /* trailing slash: directories only */
    {{"tmp/"}, "tmp", 1, 1},
    {{"tmp/"}, "tmp", 0, 0},
    {{"tmp/"}, "a/tmp", 1, 1},
    {{"/a/tmp/"}, "a/tmp", 1, 1},
    {{"/a/tmp/"}, "a/tmp", 0, 0},
    /* ** */
    {{"**/foo"}, "foo", 0, 1},
    {{"**/foo"}, "a/b/foo", 0, 1},
    {{"**/foo/bar"}, "x/foo/bar", 0, 1},
    {{"**/foo/bar"}, "foo/bar", 0, 1},
    {{"**/foo/bar"}, "foo/x/bar", 0, 0},
    {{"abc/**"}, "abc/x", 0, 1},
    {{"abc/**"}, "abc/x/y", 0, 1},
    {{"abc/**"}, "abc", 1, 0},
    {{"a/**/b"}, "a/b", 0, 1},
    {{"a/**/b"}, "a/x/b", 0, 1},
    {{"a/**/b"}, "a/x/y/b", 0, 1},
    {{"a/**/b"}, "a/x/y/c", 0, 0},
    {{"a/**/b"}, "ab", 0, 0},
    {{"/a**b"}, "axxb", 0, 1}, /* "**" not between slashes is "*" */
    {{"/a**b"}, "ax/b", 0, 0},
    {{"**"}, "any/thing", 0, 1},
    /* classes */
    {{"[abc].c"}, "b.c", 0, 1},
    {{"[abc].c"}, "d.c", 0, 0},
    {{"[a-c]x"}, "bx", 0, 1},
    {{"[!a-c]x"}, "bx", 0, 0},
    {{"[!a-c]x"}, "dx", 0, 1},
    {{"[^a-c]x"}, "dx", 0, 1},
    {{"[]]"}, "]", 0, 1},
    {{"/a[/]b"}, "a/b", 0, 0}, /* a class never matches a slash */
    /* escapes */
    {{"\\*"}, "*", 0, 1},
    {{"\\*"}, "x", 0, 0},
    {{"\\!keep"}, "!keep", 0, 1},
    {{"a\\?"}, "a?", 0, 1},
    {{"a\\?"}, "ab", 0, 0},
    /* negation: the last match wins */
    {{"*.log", "!keep.log"}, "keep.log", 0, 0},
    {{"*.log", "!keep.log"}, "drop.log", 0, 1},
    {{"!keep.log", "*.log"}, "keep.log", 0, 1},
    {{"*", "!*.c"}, "main.c", 0, 0},
    {{"*", "!*.c"}, "main.h", 0, 1},
    /* bytes, not text */
    {{"caf\xc3\xa9"}, "dir/caf\xc3\xa9", 0, 1},
    {{"\xff*"}, "\xff\xfe", 0, 1},
    {{"a*"}, "a\nb", 0, 1},
    {{NULL}, "anything", 0, 0},
};

static void test_exclude_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const excl_case *c = &cases[i];
        size_t n = 0;
        while (n < 4 && c->patterns[n])
            n++;
        char err[256] = "";
        pattern_set *ps = pattern_compile(c->patterns, n, err, sizeof(err));
        if (ps == NULL)
            fail_msg("case %zu: %s", i, err);
        int got = pattern_excluded(ps, c->path, c->is_dir);
        if (got != c->excluded)
            fail_msg("case %zu: pattern \"%s\" path \"%s\" (dir %d): excluded %d, want %d", i,
                     c->patterns[0] ? c->patterns[0] : "", c->path, c->is_dir, got, c->excluded);
        pattern_free(ps);
    }
    assert_int_equal(pattern_excluded(NULL, "x", 0), 0);
}

static void test_refused(void **state)
{
    (void)state;
    static const struct {
        const char *pattern;
        const char *why;
    } bad[] = {
        {"", "is empty"},         {"!", "matches nothing"}, {"/", "matches nothing"},
        {"a[bc", "unterminated"}, {"abc\\", "backslash"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        const char *list[2] = {"ok", bad[i].pattern};
        assert_null(pattern_compile(list, 2, err, sizeof(err)));
        assert_non_null(strstr(err, "exclude pattern 2"));
        assert_non_null(strstr(err, bad[i].why));
        assert_null(strchr(err, '\n'));
    }
    char big[5000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    const char *list[1] = {big};
    char err[256];
    assert_null(pattern_compile(list, 1, err, sizeof(err)));
    assert_non_null(strstr(err, "longer than 4096"));
}

/* Many stars against a long name must not take exponential time (the aborts prune). */
static void test_no_blowup(void **state)
{
    (void)state;
    char name[200];
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    double t0 = mono_sec();
    assert_false(pattern_glob("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", name));
    assert_false(pattern_glob("**/*a*a*a*a*a*a*a*a*a*a*a*a*b", name));
    assert_true(mono_sec() - t0 < 2.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exclude_table),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_no_blowup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
