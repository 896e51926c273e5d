/*
 * Unit tests for host/cli/term_text.c and table.c: hostile cell contents (escape sequences,
 * invalid UTF-8, wide CJK text, bidi and zero-width characters, combining marks) never
 * reach the output raw and never break a table's alignment; a table fits its limit, and
 * with no limit (--wide) shows everything whole.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "table.h"
#include "term_text.h"

static const char *const hostile[] = {
    "evil\x1b[31mred\x1b[0m\x07 and \x1b]0;pwned\x07 title",
    "bad utf-8 \xff\xfe\xc3( \xe2\x82 \xed\xa0\x80 \xc0\xaf end",
    "\xe6\x9d\xb1\xe4\xba\xac\xe3\x83\x87\xe3\x83\xbc\xe3\x82\xbf\xe3\x82\xbb\xe3\x83\xb3\xe3\x82"
    "\xbf\xe3\x83\xbc\xe6\x9d\xb1\xe4\xba\xac\xe3\x83\x87\xe3\x83\xbc\xe3\x82\xbf\xe3\x82\xbb\xe3"
    "\x83\xb3\xe3\x82\xbf\xe3\x83\xbc", /* 東京データセンター twice: 36 columns */
    "\xe2\x80\xae" "exe.gnp and a\xe2\x80\x8b" "b, \xe2\x80\xa8 line sep",
    "e\xcc\x81" "e\xcc\x81" "e\xcc\x81 combining, C1 \xc2\x9b" "31m",
    "line\nbreak\tand tab\rreturn",
};
#define N_HOSTILE (sizeof(hostile) / sizeof(hostile[0]))

/* Rows of a queue-like table whose text cells hold the hostile strings and a long one.
 * jansson refuses invalid UTF-8 in json_string: the _nocheck form puts it there anyway, as a
 * store driver or plugin that skipped the check would. */
static json_t *hostile_rows(void)
{
    json_t *rows = json_array();
    char longtext[400];
    memset(longtext, 'x', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = '\0';
    for (size_t i = 0; i < N_HOSTILE; i++) {
        const char *h = hostile[i], *g = hostile[(i + 1) % N_HOSTILE];
        json_t *row = json_pack("{s:s,s:s,s:s,s:i}", "taskId",
                                "2ca76aec-df77-4af9-a495-ebf65d0f929d", "status",
                                i % 2 ? "FAILED" : "COMPLETED", "createdTime",
                                "2026-11-28T13:29:40.147Z", "retryCount", (int)i);
        json_object_set_new(row, "function", json_string_nocheck(h));
        json_object_set_new(row, "teamName", json_string_nocheck(g));
        json_object_set_new(row, "machineName", json_string_nocheck(h));
        json_object_set_new(row, "progressText", json_string_nocheck(i == 0 ? longtext : g));
        json_array_append_new(rows, row);
    }
    assert_int_equal(json_array_size(rows), N_HOSTILE);
    return rows;
}

static const char *const cols[][2] = {
    {"TASK ID", "taskId"},     {"STATUS", "status"},       {"FUNCTION", "function"},
    {"TEAM", "teamName"},      {"MACHINE", "machineName"}, {"CREATED", "createdTime"},
    {"RETRIES", "retryCount"}, {"PROGRESS", "progressText"}, {NULL, NULL}};

static char *render(const json_t *rows, size_t limit, int colour)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_non_null(f);
    struct term_style st = {.limit = limit, .colour = colour};
    table_render(f, rows, cols, &st);
    fclose(f);
    return out;
}

/* Removes the SGR sequences colour adds ("\033[…m"), in place. */
static void strip_sgr(char *s)
{
    char *o = s;
    for (char *p = s; *p;) {
        if (p[0] == '\033' && p[1] == '[') {
            char *q = p + 2;
            while (*q && strchr("0123456789;", *q))
                q++;
            if (*q == 'm') {
                p = q + 1;
                continue;
            }
        }
        *o++ = *p++;
    }
    *o = '\0';
}

/* The display column where each column of the rule line (line 2) starts. */
static size_t rule_starts(const char *rule, size_t *starts, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; rule[i] && n < max; i++)
        if (rule[i] == '-' && (i == 0 || rule[i - 1] == ' '))
            starts[n++] = i;
    return n;
}

/* The columns the C library says a character takes (the test's reference, apart from
 * term_width); a character it calls unprintable fails the test. */
static size_t ref_width(const char *p, size_t *len)
{
    mbstate_t ms;
    memset(&ms, 0, sizeof(ms));
    wchar_t wc;
    size_t n = mbrtowc(&wc, p, strlen(p), &ms);
    assert_true(n != (size_t)-1 && n != (size_t)-2 && n > 0);
    *len = n;
    int w = wcwidth(wc);
    assert_true(w >= 0);
    return (size_t)w;
}

/* Checks one line: clean (term_clean leaves it as it is), at most limit columns (0: any),
 * and each column from the second starting at its rule's column, after a space. */
static void check_line(const char *line, const size_t *starts, size_t n, size_t limit)
{
    char *again = term_clean(line);
    assert_string_equal(again, line);
    free(again);
    size_t total = 0, len;
    for (const char *p = line; *p; p += len)
        total += ref_width(p, &len);
    if (limit)
        assert_true(total <= limit);
    for (size_t k = 1; k < n; k++) {
        /* The text before the column's start is exactly starts[k] columns wide and ends
         * with a space. */
        size_t w = 0;
        const char *p = line;
        while (*p && w < starts[k]) {
            w += ref_width(p, &len);
            p += len;
        }
        if (*p == '\0')
            continue; /* an empty last cell */
        assert_int_equal(w, starts[k]);
        assert_int_equal(p[-1], ' ');
    }
}

/* Checks every line of a table (check_line); returns how many columns it shows. */
static size_t check_table(char *out, size_t limit)
{
    char *save = NULL, *line = strtok_r(out, "\n", &save);
    size_t starts[32], n = 0;
    for (int i = 0; line; i++, line = strtok_r(NULL, "\n", &save)) {
        if (i == 1)
            n = rule_starts(line, starts, 32);
        check_line(line, starts, n, limit);
    }
    assert_true(n >= 1);
    return n;
}

static void test_hostile_cells_fit_and_align(void **state)
{
    (void)state;
    json_t *rows = hostile_rows();
    for (size_t limit = 5; limit <= 125; limit += 15) {
        char *out = render(rows, limit, 0);
        assert_null(strchr(out, '\033'));
        assert_null(strchr(out, '\a'));
        assert_null(strchr(out, '\r'));
        assert_null(strstr(out, "\xe2\x80\xae")); /* the bidi override */
        /* Below the width of two columns, one is left (cut to the limit). */
        size_t shown = check_table(out, limit);
        assert_true(limit < 20 ? shown == 1 : shown >= 2);
        free(out);
    }
    json_decref(rows);
}

static void test_colour_adds_only_sgr(void **state)
{
    (void)state;
    json_t *rows = hostile_rows();
    char *out = render(rows, 100, 1);
    assert_non_null(strstr(out, "\033[1;31mFAILED\033[0m"));
    assert_non_null(strstr(out, "\033[32mCOMPLETED\033[0m"));
    strip_sgr(out);
    assert_null(strchr(out, '\033'));
    assert_true(check_table(out, 100) >= 5);
    free(out);
    json_decref(rows);
}

static void test_wide_shows_everything(void **state)
{
    (void)state;
    json_t *rows = hostile_rows();
    char *out = render(rows, 0, 0);
    assert_non_null(strstr(out, "2ca76aec-df77-4af9-a495-ebf65d0f929d"));
    assert_non_null(strstr(out, "2026-11-28T13:29:40.147Z"));
    assert_non_null(strstr(out, hostile[2])); /* the CJK text whole */
    char longtext[400];
    memset(longtext, 'x', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = '\0';
    assert_non_null(strstr(out, longtext));
    assert_null(strstr(out, "\xe2\x80\xa6")); /* nothing cut */
    assert_null(strchr(out, '\033'));
    assert_int_equal(check_table(out, 0), 8);
    free(out);
    json_decref(rows);
}

static void test_fit_and_clean(void **state)
{
    (void)state;
    char *c = term_clean(hostile[2]);
    assert_int_equal(term_width(c), 36);
    for (size_t max = 1; max < 36; max++) {
        char *f = term_fit(c, max, 1);
        assert_int_equal(term_width(f), max); /* a wide character never passes the edge */
        free(f);
        f = term_fit(c, max, 0);
        assert_true(term_width(f) == max || term_width(f) == max - 1);
        free(f);
    }
    free(c);
    c = term_clean("a\x1b[2Jb\xc2\x85" "c\xff");
    assert_string_equal(c, "a\\x1b[2Jb\\u0085c\xef\xbf\xbd");
    free(c);
    c = term_clean("e\xcc\x81");
    assert_int_equal(term_width(c), 1);
    free(c);
}

static void test_line_keeps_its_width(void **state)
{
    (void)state;
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    struct term_style st = {.limit = 30, .colour = 1};
    struct term_piece p[] = {TERM_TEXT("host "), TERM_CAP(hostile[0], 10), TERM_TEXT(" "),
                             TERM_COLOUR("alive", COLOUR_GREEN), TERM_TEXT(" "),
                             TERM_ID("2ca76aec-df77-4af9-a495-ebf65d0f929d")};
    term_pieces(f, &st, p, sizeof(p) / sizeof(p[0]));
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
    strip_sgr(out);
    assert_null(strchr(out, '\033'));
    assert_true(term_width(out) <= 30);
    assert_non_null(strstr(out, "alive 2ca76aec"));
    free(out);
}

int main(void)
{
    /* The reference widths need a UTF-8 locale. */
    if (setlocale(LC_CTYPE, "C.UTF-8") == NULL && setlocale(LC_CTYPE, "en_US.UTF-8") == NULL) {
        printf("1..0 # SKIP no UTF-8 locale for the reference widths\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_cells_fit_and_align),
        cmocka_unit_test(test_colour_adds_only_sgr),
        cmocka_unit_test(test_wide_shows_everything),
        cmocka_unit_test(test_fit_and_clean),
        cmocka_unit_test(test_line_keeps_its_width),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
