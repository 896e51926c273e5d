/* Retry decisions and backoff: which outcomes retry, the exponential delay, the cap, jitter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "policy.h"

static const retry_policy pol = {.max_retries = 3, .delay_ms = 1000, .backoff = 2.0,
                                 .max_delay_ms = 5000, .jitter = 0.2};

static void test_transient_outcomes_retry(void **state)
{
    (void)state;
    assert_true(policy_should_retry(&pol, RUN_RETRY, 1));
    assert_true(policy_should_retry(&pol, RUN_TIMEOUT, 1));
    assert_true(policy_should_retry(&pol, RUN_CRASHED, 2));
    assert_true(policy_should_retry(&pol, RUN_UNAVAILABLE, 3));
    assert_false(policy_should_retry(&pol, RUN_RETRY, 4)); /* the 4th attempt was the last */
}

static void test_permanent_outcomes_never_retry(void **state)
{
    (void)state;
    assert_false(policy_should_retry(&pol, RUN_OK, 1));
    assert_false(policy_should_retry(&pol, RUN_FAIL, 1));
    assert_false(policy_should_retry(&pol, RUN_INVALID, 1));
    assert_false(policy_should_retry(&pol, RUN_CANCELLED, 1));
    retry_policy none = pol;
    none.max_retries = 0;
    assert_false(policy_should_retry(&none, RUN_RETRY, 1));
}

static void test_backoff_doubles_and_caps(void **state)
{
    (void)state;
    /* rnd 0: no jitter taken off */
    assert_int_equal(policy_retry_delay_ms(&pol, 1, 0.0), 1000);
    assert_int_equal(policy_retry_delay_ms(&pol, 2, 0.0), 2000);
    assert_int_equal(policy_retry_delay_ms(&pol, 3, 0.0), 4000);
    assert_int_equal(policy_retry_delay_ms(&pol, 4, 0.0), 5000); /* capped */
    assert_int_equal(policy_retry_delay_ms(&pol, 30, 0.0), 5000);
}

static void test_jitter_spreads_within_bounds(void **state)
{
    (void)state;
    /* jitter 0.2 takes up to 20% off: [800, 1000] for the first retry */
    assert_int_equal(policy_retry_delay_ms(&pol, 1, 0.5), 900);
    int64_t lo = policy_retry_delay_ms(&pol, 1, 0.999999);
    assert_true(lo >= 800 && lo < 1000);
    retry_policy flat = pol;
    flat.backoff = 1.0;
    flat.jitter = 0.0;
    assert_int_equal(policy_retry_delay_ms(&flat, 7, 0.7), 1000);
}

static void test_fallback_outcomes(void **state)
{
    (void)state;
    assert_true(policy_runs_fallback(RUN_FAIL));
    assert_true(policy_runs_fallback(RUN_TIMEOUT));
    assert_true(policy_runs_fallback(RUN_CRASHED));
    assert_true(policy_runs_fallback(RUN_RETRY));
    assert_false(policy_runs_fallback(RUN_OK));
    assert_false(policy_runs_fallback(RUN_INVALID));
    assert_false(policy_runs_fallback(RUN_CANCELLED));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transient_outcomes_retry),
        cmocka_unit_test(test_permanent_outcomes_never_retry),
        cmocka_unit_test(test_backoff_doubles_and_caps),
        cmocka_unit_test(test_jitter_spreads_within_bounds),
        cmocka_unit_test(test_fallback_outcomes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
