/*
 * The chores the hosts of one store share (host/store/history.h, migration 10): one holder
 * at a time, a lease that another takes over when it runs out, and a chore done is not due
 * again before its time. The daily prune of ended items is built on it (host/serve/upkeep.c;
 * what the prune removes and keeps is tests/e2e/history_prune.sh's, on both drivers).
 *
 * Runs against a fresh SQLite file, and once more against PostgreSQL when FERRY_TEST_PG_URL
 * names a database; each test uses chore names of its own, so it runs on a shared server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sqlite3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "store.h"
#include "util.h"

#include "store_suite.h"

static const char *g_url;
static char g_dir[64];

static int setup(void **state)
{
    char err[512] = "";
    store *s = store_open(g_url, err, sizeof(err));
    if (s == NULL) {
        print_error("cannot open %s: %s\n", g_url, err);
        return -1;
    }
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    store_close(*state);
    return 0;
}

/* Whether owner takes chore at now (lease for 1000 ms). */
static int take(store *s, const char *chore, const char *owner, int64_t now)
{
    char err[512] = "";
    int taken = -1;
    assert_rc(STORE_OK,
              store_chore_take(s, chore, owner, now, now + 1000, &taken, err, sizeof(err)));
    return taken;
}

static void test_chore_one_holder(void **state)
{
    store *s = *state;
    char chore[64], err[512];
    fresh_name(chore, sizeof(chore), "chore");
    assert_int_equal(take(s, chore, "host-a", 10000), 1); /* never run: due */
    assert_int_equal(take(s, chore, "host-b", 10500), 0); /* a's lease runs */
    assert_int_equal(take(s, chore, "host-a", 10600), 0); /* not twice, even by a */
    /* A renewed lease holds longer. */
    assert_rc(STORE_OK, store_chore_renew(s, chore, "host-a", 12000, err, sizeof(err)));
    assert_int_equal(take(s, chore, "host-b", 11500), 0);
    /* Done: not due again before its time, whoever asks. */
    assert_rc(STORE_OK, store_chore_done(s, chore, "host-a", 11800, 11800 + 86400000LL, "3 items",
                                         err, sizeof(err)));
    assert_int_equal(take(s, chore, "host-b", 12500), 0);
    assert_int_equal(take(s, chore, "host-a", 11800 + 86399999LL), 0);
    assert_int_equal(take(s, chore, "host-b", 11800 + 86400000LL), 1);
}

static void test_chore_lease_runs_out(void **state)
{
    store *s = *state;
    char chore[64], err[512];
    fresh_name(chore, sizeof(chore), "chore");
    assert_int_equal(take(s, chore, "host-a", 5000), 1);
    /* a dies: once its lease ran out, b takes the chore over. */
    assert_int_equal(take(s, chore, "host-b", 6000), 1);
    /* a, back, cannot end or extend b's run. */
    assert_rc(STORE_OK,
              store_chore_done(s, chore, "host-a", 6100, 999999999, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_chore_renew(s, chore, "host-a", 999999999, err, sizeof(err)));
    assert_int_equal(take(s, chore, "host-c", 7001), 1); /* b's lease ran out at 7000 */
}

static int run_suite(const char *name)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chore_one_holder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chore_lease_runs_out, setup, teardown),
    };
    return _cmocka_run_group_tests(name, tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL);
}

int main(void)
{
    return store_suite_main("store_history", g_dir, sizeof(g_dir), &g_url, run_suite);
}
