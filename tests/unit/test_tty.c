/*
 * Unit tests for host/cli/tty.c: text from plugins made safe for a terminal line. Escape
 * sequences and control characters go, bytes that are not UTF-8 become '?', a long text is
 * cut at a character boundary within the columns asked for (wide characters count two) and
 * within the buffer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "tty.h"

static void clean_is(const char *in, int cols, const char *want, int want_cols)
{
    char out[256];
    int got = tty_clean_line(in, out, sizeof(out), cols);
    assert_string_equal(out, want);
    assert_int_equal(got, want_cols);
}

static void test_plain_text_unchanged(void **state)
{
    (void)state;
    clean_is("copying 3 of 7 files", 0, "copying 3 of 7 files", 20);
    clean_is("", 10, "", 0);
    clean_is(NULL, 10, "", 0);
    clean_is("déjà vu", 0, "déjà vu", 7);
}

static void test_escapes_and_controls_dropped(void **state)
{
    (void)state;
    clean_is("\x1b[31mred\x1b[0m", 0, "red", 3);
    clean_is("\x1b]0;pwned\x07title", 0, "title", 5);
    clean_is("\x1b]2;pwned\x1b\\after", 0, "after", 5);
    clean_is("\x1b"
             "cA\x1b[2J\x1b[H!",
             0, "A!", 2); /* reset, clear screen, home */
    clean_is("a\tb\nc\rd", 0, "a b c d", 7);
    clean_is("bell\x07 back\x08 del\x7f nul-less", 0, "bell back del nul-less", 22);
    clean_is("c1 \xc2\x9b"
             "31m csi",
             0, "c1 31m csi", 10);         /* U+009B, the 8-bit CSI */
    clean_is("cut \x1b[31", 0, "cut ", 4); /* a sequence left open */
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    clean_is("bad \xff\xfe bytes", 0, "bad ?? bytes", 12);
    clean_is("overlong \xc0\xaf", 0, "overlong ??", 11);
    clean_is("surrogate \xed\xa0\x80", 0, "surrogate ???", 13);
    clean_is("cut \xe2\x82", 0, "cut ??", 6);
}

static void test_cut_to_columns(void **state)
{
    (void)state;
    clean_is("abcdef", 6, "abcdef", 6);
    clean_is("abcdefg", 6, "abcde\xe2\x80\xa6", 6);
    clean_is("日本語テキスト", 6, "日本\xe2\x80\xa6", 5); /* a third wide one would make 7 */
    clean_is("ab", 1, "\xe2\x80\xa6", 1);
}

/* 10 kB of a hostile message: the line is at most the columns asked for and the buffer. */
static void test_long_hostile(void **state)
{
    (void)state;
    size_t n = 10000;
    char *in = malloc(n + 1), out[512];
    for (size_t i = 0; i < n; i++)
        in[i] = "\x1b[31m\xff"
                "ab\x07"[i % 9];
    in[n] = '\0';
    int cols = tty_clean_line(in, out, sizeof(out), 80);
    assert_true(cols <= 80);
    assert_null(strchr(out, '\x1b'));
    assert_null(strchr(out, '\x07'));
    /* No column limit: the buffer is the limit, and the text still ends well. */
    cols = tty_clean_line(in, out, sizeof(out), 0);
    assert_true(strlen(out) < sizeof(out));
    assert_string_equal(out + strlen(out) - 3, "\xe2\x80\xa6");
    free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_text_unchanged),
        cmocka_unit_test(test_escapes_and_controls_dropped),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_cut_to_columns),
        cmocka_unit_test(test_long_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
