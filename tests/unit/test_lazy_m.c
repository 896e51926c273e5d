/*
 * Unit tests for host/base/lazy_m.c: libm is not linked (a create calls none of it) but
 * loaded by the first math call, and every wrapper forwards to libm's function, SQLite's SQL
 * math functions included (they call the same symbols).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <sqlite3.h>

#include "lazy_lib.h"

/* Inputs the compiler cannot fold into constants: every call below reaches a wrapper. */
static volatile double zero = 0.0, one = 1.0, two = 2.0, three = 3.0, seven = 7.0;

#define near(a, b) assert_true(fabs((a) - (b)) < 1e-12)

static void test_loaded_on_first_call(void **state)
{
    (void)state;
    assert_false(lazy_lib_loaded(&lazy_m_lib));
    near(pow(two, three), 8.0); /* not sqrt: the compiler makes it one instruction */
    assert_true(lazy_lib_loaded(&lazy_m_lib));
}

static void test_every_wrapper_forwards(void **state)
{
    (void)state;
    near(acos(one), 0.0);
    near(acosh(one), 0.0);
    near(asin(zero), 0.0);
    near(asinh(zero), 0.0);
    near(atan(one), M_PI / 4);
    near(atanh(zero), 0.0);
    near(cos(zero), 1.0);
    near(cosh(zero), 1.0);
    near(exp(one), M_E);
    near(log(M_E * one), 1.0);
    near(sin(M_PI / 2 * one), 1.0);
    near(sinh(zero), 0.0);
    near(tan(zero), 0.0);
    near(tanh(zero), 0.0);
    near(trunc(-seven / two), -3.0);
    near(atan2(one, one), M_PI / 4);
    near(fmod(seven, three), 1.0);
    near(pow(two, 10 * one), 1024.0);
    assert_int_equal(llround(seven / two), 4);
}

static void test_sqlite_math_functions(void **state)
{
    (void)state;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT pow(2, 10), sqrt(16.0), cos(0), trunc(-3.5)", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    near(sqlite3_column_double(st, 0), 1024.0);
    near(sqlite3_column_double(st, 1), 4.0);
    near(sqlite3_column_double(st, 2), 1.0);
    near(sqlite3_column_double(st, 3), -3.0);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loaded_on_first_call),
        cmocka_unit_test(test_every_wrapper_forwards),
        cmocka_unit_test(test_sqlite_math_functions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
