/* Pass/fail counts from a test suite's output (test_summary.c). */
#ifndef FERRY_OPS_TEST_SUMMARY_H
#define FERRY_OPS_TEST_SUMMARY_H

typedef struct test_counts {
    const char *format; /* "tap", "junit" or "summary" (a static string) */
    long passed, failed, skipped, total;
} test_counts;

/*
 * Each returns 1 and fills *c when its format is recognised in the text (borrowed; NULL is
 * "not recognised"), else 0 and leaves *c alone.
 *   tap:   "ok N" / "not ok N" lines at the start of a line, "# SKIP" and "# TODO"
 *          directives, and the plan "1..N" (tests the plan promised but never reported
 *          count as failed).
 *   line:  the last line with "N passed" / "N failed" (also passing, failing, failures,
 *          errors, skipped, pending, total), as pytest, jest, mocha and ferry print them.
 *   junit: <testsuites tests=...> totals, else the sum of every <testsuite>'s tests,
 *          failures + errors, skipped + disabled.
 */
int test_summary_tap(const char *out, test_counts *c);
int test_summary_line(const char *out, test_counts *c);
int test_summary_junit(const char *xml, test_counts *c);

/* Tries a JUnit report first (junit_xml, may be NULL), then TAP, JUnit XML printed in the
 * output, and summary lines. Returns 1 when any was recognised. */
int test_summary_parse(const char *out, const char *junit_xml, test_counts *c);

#endif
