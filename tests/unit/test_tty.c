/*
 * Unit tests for the terminal line of host/cli/term_text.c (term_clean_fit, term_columns):
 * text from plugins made safe for a terminal line. Escape sequences and control characters
 * are shown as visible C escapes (\x1b), never raw; bytes that are not UTF-8 become U+FFFD;
 * the text stays one line, and a long text is cut at a character boundary within the columns
 * asked for (wide characters count two). The width of a terminal that does not say is
 * $COLUMNS, else 80.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "term_text.h"

static void clean_is(const char *in, size_t cols, const char *want, size_t want_cols)
{
    char *out = term_clean_fit(in, cols);
    assert_string_equal(out, want);
    assert_int_equal(term_width(out), want_cols);
    free(out);
}

static void test_plain_text_unchanged(void **state)
{
    (void)state;
    clean_is("copying 3 of 7 files", 0, "copying 3 of 7 files", 20);
    clean_is("", 10, "", 0);
    clean_is(NULL, 10, "", 0);
    clean_is("déjà vu", 0, "déjà vu", 7);
}

/* Nothing reaches the terminal raw: each control character is written as a C escape, so the
 * sequence shows as text and does nothing (the rule of term_clean; before, they were
 * dropped). */
static void test_escapes_and_controls_visible(void **state)
{
    (void)state;
    clean_is("\x1b[31mred\x1b[0m", 0, "\\x1b[31mred\\x1b[0m", 18);
    clean_is("\x1b]0;pwned\x07title", 0, "\\x1b]0;pwned\\x07title", 21);
    clean_is("\x1b"
             "cA\x1b[2J\x1b[H!",
             0,
             "\\x1b"
             "cA\\x1b[2J\\x1b[H!",
             20);                            /* reset, clear screen, home */
    clean_is("a\tb\nc\rd", 0, "a b c d", 7); /* one line */
    clean_is("bell\x07 back\x08 del\x7f", 0, "bell\\x07 back\\x08 del\\x7f", 25);
    clean_is("c1 \xc2\x9b"
             "31m csi",
             0, "c1 \\u009b31m csi", 16); /* U+009B, the 8-bit CSI */
    clean_is("\xe2\x80\xae"
             "exe.gnp",
             0, "\\u202eexe.gnp", 13); /* a bidi override */
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    clean_is("bad \xff\xfe bytes", 0, "bad \xef\xbf\xbd\xef\xbf\xbd bytes", 12);
    clean_is("overlong \xc0\xaf", 0, "overlong \xef\xbf\xbd\xef\xbf\xbd", 11);
    clean_is("cut \xe2\x82", 0, "cut \xef\xbf\xbd\xef\xbf\xbd", 6);
}

static void test_cut_to_columns(void **state)
{
    (void)state;
    clean_is("abcdef", 6, "abcdef", 6);
    clean_is("abcdefg", 6, "abcde\xe2\x80\xa6", 6);
    /* A third wide one would make 7: a space keeps the line's width. */
    clean_is("日本語テキスト", 6, "日本 \xe2\x80\xa6", 6);
    clean_is("ab", 1, "\xe2\x80\xa6", 1);
    /* An escape is cut as the text it became, never inside a character. */
    clean_is("ab\x1b[2J", 6, "ab\\x1\xe2\x80\xa6", 6);
}

/* 10 kB of a hostile message: the line is at most the columns asked for, one line, with no
 * raw escape or bell; with no limit, all of it is there, made safe. */
static void test_long_hostile(void **state)
{
    (void)state;
    size_t n = 10000;
    char *in = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        in[i] = "\x1b[31m\xff"
                "ab\x07\n"[i % 10];
    in[n] = '\0';
    char *out = term_clean_fit(in, 80);
    assert_true(term_width(out) <= 80);
    assert_null(strchr(out, '\x1b'));
    assert_null(strchr(out, '\x07'));
    assert_null(strchr(out, '\n'));
    assert_string_equal(out + strlen(out) - 3, "\xe2\x80\xa6");
    free(out);
    out = term_clean_fit(in, 0);
    assert_null(strchr(out, '\x1b'));
    assert_null(strchr(out, '\n'));
    /* Each 10 bytes show as 16 columns: \x1b, [31m, U+FFFD, ab, \x07 and a space. */
    assert_int_equal(term_width(out), n / 10 * 16);
    free(out);
    free(in);
}

/* term_columns: 0 off a terminal; a terminal's own width; $COLUMNS, else the fallback, from
 * a terminal that does not say (size 0). */
static void test_columns(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(term_columns(fds[1], 80), 0);
    close(fds[0]);
    close(fds[1]);
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    int tty = open(ptsname(master), O_RDWR | O_NOCTTY);
    assert_true(tty >= 0);
    struct winsize ws = {.ws_row = 20, .ws_col = 132};
    assert_int_equal(ioctl(tty, TIOCSWINSZ, &ws), 0);
    assert_int_equal(term_columns(tty, 80), 132);
    ws.ws_col = 0;
    assert_int_equal(ioctl(tty, TIOCSWINSZ, &ws), 0);
    setenv("COLUMNS", "61", 1);
    assert_int_equal(term_columns(tty, 80), 61);
    setenv("COLUMNS", "61x", 1);
    assert_int_equal(term_columns(tty, 80), 80);
    unsetenv("COLUMNS");
    assert_int_equal(term_columns(tty, 80), 80);
    assert_int_equal(term_columns(tty, 100), 100);
    close(tty);
    close(master);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_text_unchanged),
        cmocka_unit_test(test_escapes_and_controls_visible),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_cut_to_columns),
        cmocka_unit_test(test_long_hostile),
        cmocka_unit_test(test_columns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
