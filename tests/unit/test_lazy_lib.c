/*
 * Unit tests for host/base/lazy_lib.c: a library loaded on first use forwards calls to the
 * real symbol, once loaded stays loaded, and a library or symbol that is missing gives the
 * wrapper's failure value and a one-line reason naming the Debian package, never a crash,
 * also when many threads make the first call at once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "lazy_lib.h"

LAZY_LIB(missing_lib, "libferry-no-such-library.so.7", "ferry-no-such-package", NULL)
LAZY_LIB(zlib, "libz.so.1", "zlib1g", NULL)

/* Wrappers as lazy_pq.c and lazy_curl.c write them (there, the library's header declares
 * them). */
int ferry_test_missing_fn(int x);
const char *zlibVersion(void);
int ferry_test_no_such_symbol(void);
void ferry_test_missing_void(int *p);
LAZY_FN(missing_lib, int, -7, ferry_test_missing_fn, (int x), (x))
LAZY_FN(zlib, const char *, NULL, zlibVersion, (void), ())
LAZY_FN(zlib, int, -9, ferry_test_no_such_symbol, (void), ())
static int voided;
LAZY_VOID(missing_lib, ferry_test_missing_void, (int *p), (p))

static void test_missing_library(void **state)
{
    (void)state;
    char err[600] = "";
    assert_int_equal(lazy_lib_load(&missing_lib, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot load libferry-no-such-library.so.7 (install the Debian "
                                "package ferry-no-such-package): "));
    assert_null(strchr(err, '\n'));
    assert_int_equal(ferry_test_missing_fn(3), -7);
    ferry_test_missing_void(&voided);
    assert_int_equal(voided, 0);
    assert_false(lazy_lib_loaded(&missing_lib));
    assert_string_equal(lazy_lib_error(&missing_lib), err);
    /* Tried once: a second call answers the same without trying again. */
    assert_int_equal(lazy_lib_load(&missing_lib, NULL, 0), -1);
}

static void test_forwards_to_the_real_symbol(void **state)
{
    (void)state;
    assert_false(lazy_lib_loaded(&zlib));
    const char *v = zlibVersion();
    assert_non_null(v);
    assert_true(v[0] == '1');
    assert_true(lazy_lib_loaded(&zlib));
    assert_ptr_equal(zlibVersion(), v); /* the cached slot */
}

static void test_missing_symbol(void **state)
{
    (void)state;
    assert_int_equal(ferry_test_no_such_symbol(), -9);
    assert_non_null(strstr(lazy_lib_error(&zlib), "libz.so.1 has no ferry_test_no_such_symbol"));
    assert_non_null(strstr(lazy_lib_error(&zlib), "zlib1g"));
}

LAZY_LIB(zlib_threads, "libz.so.1", "zlib1g", NULL)
static void *first_call(void *arg)
{
    (void)arg;
    static void *slot;
    return lazy_lib_sym(&zlib_threads, "zlibVersion", &slot);
}

static void test_first_call_from_many_threads(void **state)
{
    (void)state;
    pthread_t t[8];
    void *got[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, first_call, NULL), 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_join(t[i], &got[i]), 0);
    for (int i = 0; i < 8; i++) {
        assert_non_null(got[i]);
        assert_ptr_equal(got[i], got[0]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_library),
        cmocka_unit_test(test_forwards_to_the_real_symbol),
        cmocka_unit_test(test_missing_symbol),
        cmocka_unit_test(test_first_call_from_many_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
