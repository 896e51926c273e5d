/*
 * Reading pass/fail counts out of a test suite's output: TAP, JUnit XML, and the summary
 * lines test runners print ("5 passed, 1 failed", "Tests: 1 failed, 5 passed, 6 total",
 * "3 passing", "1 failing").
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "test_summary.h"

/* --- TAP -------------------------------------------------------------------------------- */

/* Non-zero when line (up to its newline) has "# word" as a directive, case-insensitively. */
static int tap_directive(const char *line, size_t len, const char *word)
{
    const char *hash = memchr(line, '#', len);
    if (hash == NULL)
        return 0;
    const char *p = hash + 1;
    while (p < line + len && *p == ' ')
        p++;
    size_t n = strlen(word);
    return (size_t)(line + len - p) >= n && strncasecmp(p, word, n) == 0;
}

int test_summary_tap(const char *out, test_counts *c)
{
    long plan = -1, seen = 0, numbered = 0;
    test_counts t = {.format = "tap"};
    for (const char *line = out; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        int not_ok = len >= 6 && strncmp(line, "not ok", 6) == 0 && (len == 6 || line[6] == ' ');
        int ok = !not_ok && len >= 2 && strncmp(line, "ok", 2) == 0 && (len == 2 || line[2] == ' ');
        if (ok || not_ok) {
            const char *after = line + (not_ok ? 6 : 2);
            while (after < line + len && *after == ' ')
                after++;
            numbered += after < line + len && isdigit((unsigned char)*after);
            seen++;
            if (tap_directive(line, len, "skip"))
                t.skipped++;
            else if (ok)
                t.passed++;
            else if (!tap_directive(line, len, "todo"))
                t.failed++;
            else
                t.skipped++; /* a failing TODO test is expected to fail */
        } else if (len > 3 && strncmp(line, "1..", 3) == 0 && isdigit((unsigned char)line[3])) {
            plan = strtol(line + 3, NULL, 10);
        }
        line = nl ? nl + 1 : NULL;
    }
    /* Lines that merely start with "ok" are not TAP: ask for numbered tests or a plan. */
    if (seen == 0 || (plan < 0 && numbered == 0))
        return 0;
    if (plan > seen)
        t.failed += plan - seen; /* tests the plan promised that never reported: the suite died */
    t.total = t.passed + t.failed + t.skipped;
    *c = t;
    return 1;
}

/* --- "N passed, N failed" ------------------------------------------------------------------ */

/* Which count a word after a number adds to. */
static const struct {
    const char *word;
    int which; /* 0 passed, 1 failed, 2 skipped, 3 total */
} summary_words[] = {
    {"passed", 0}, {"passing", 0}, {"failed", 1},  {"failing", 1}, {"failures", 1},
    {"errors", 1}, {"error", 1},   {"skipped", 2}, {"pending", 2}, {"total", 3},
};

/* Reads "N word" pairs of one line into t; returns non-zero when it had passed or failed. */
static int summary_line(const char *line, size_t len, test_counts *t)
{
    test_counts s = {.format = "summary"};
    int found = 0, has_total = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)line[i]) || (i > 0 && isalnum((unsigned char)line[i - 1])))
            continue;
        char *end;
        long n = strtol(line + i, &end, 10);
        const char *w = end;
        while (w < line + len && *w == ' ')
            w++;
        if (w == end)
            continue;
        for (size_t k = 0; k < sizeof(summary_words) / sizeof(summary_words[0]); k++) {
            size_t wl = strlen(summary_words[k].word);
            if ((size_t)(line + len - w) < wl || strncasecmp(w, summary_words[k].word, wl) != 0 ||
                (w + wl < line + len && isalpha((unsigned char)w[wl])))
                continue;
            switch (summary_words[k].which) {
            case 0:
                s.passed += n, found = 1;
                break;
            case 1:
                s.failed += n, found = 1;
                break;
            case 2:
                s.skipped += n;
                break;
            default:
                s.total = n, has_total = 1;
            }
            break;
        }
        i = (size_t)(end - line);
    }
    if (!found)
        return 0;
    if (!has_total)
        s.total = s.passed + s.failed + s.skipped;
    *t = s;
    return 1;
}

int test_summary_line(const char *out, test_counts *c)
{
    int found = 0;
    for (const char *line = out; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        test_counts t;
        if (summary_line(line, len, &t)) {
            *c = t; /* the last summary wins: runners print theirs at the end */
            found = 1;
        }
        line = nl ? nl + 1 : NULL;
    }
    return found;
}

/* --- JUnit XML ------------------------------------------------------------------------- */

/* The integer value of attribute name in the tag [tag, end), or 0. */
static long xml_attr(const char *tag, const char *end, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = tag; p + n + 2 < end; p++) {
        if (strncmp(p, name, n) == 0 && isspace((unsigned char)p[-1]) && p[n] == '=' &&
            (p[n + 1] == '"' || p[n + 1] == '\''))
            return strtol(p + n + 2, NULL, 10);
    }
    return 0;
}

/* Adds one tag's counts (tests, failures, errors, skipped/disabled) to t. */
static void junit_add(const char *tag, test_counts *t)
{
    const char *end = strchr(tag, '>');
    if (end == NULL)
        return;
    long tests = xml_attr(tag, end, "tests");
    long failed = xml_attr(tag, end, "failures") + xml_attr(tag, end, "errors");
    long skipped = xml_attr(tag, end, "skipped") + xml_attr(tag, end, "disabled");
    t->total += tests;
    t->failed += failed;
    t->skipped += skipped;
    t->passed += tests - failed - skipped;
}

int test_summary_junit(const char *xml, test_counts *c)
{
    if (xml == NULL)
        return 0;
    test_counts t = {.format = "junit"};
    const char *suites = strstr(xml, "<testsuites");
    const char *suites_end = suites ? strchr(suites, '>') : NULL;
    if (suites_end && xml_attr(suites, suites_end, "tests") > 0) {
        junit_add(suites, &t);
    } else {
        int any = 0;
        for (const char *p = strstr(xml, "<testsuite"); p; p = strstr(p + 1, "<testsuite")) {
            if (strncmp(p, "<testsuites", 11) == 0)
                continue;
            junit_add(p, &t);
            any = 1;
        }
        if (!any)
            return 0;
    }
    if (t.passed < 0)
        t.passed = 0;
    *c = t;
    return 1;
}

int test_summary_parse(const char *out, const char *junit_xml, test_counts *c)
{
    if (test_summary_junit(junit_xml, c))
        return 1;
    if (test_summary_tap(out, c))
        return 1;
    if (out && strstr(out, "<testsuite") && test_summary_junit(out, c))
        return 1;
    return test_summary_line(out, c);
}
