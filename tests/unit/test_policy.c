/*
 * How a retry is decided, as tables: every outcome kind and stop reason at the first, a
 * middle and the last attempt, with and without retries left, against the final status,
 * the retry instant and the fallback; lost and refused items; the exponential delay, its
 * cap and jitter; the item's own settings over the host's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "policy.h"

static const retry_policy pol = {
    .max_retries = 3, .delay_ms = 1000, .backoff = 2.0, .max_delay_ms = 5000, .jitter = 0.2};

#define NOW 1000000
#define F   STORE_OUTCOME_FAILED
#define C   STORE_OUTCOME_COMPLETED
#define X   STORE_OUTCOME_CANCELLED
#define R   STORE_OUTCOME_RETRY
#define L   STORE_OUTCOME_RELEASE

struct decide_case {
    enum outcome_kind kind;
    enum outcome_stop stop;
    int attempt, max_retries;
    double rnd;
    enum store_outcome_kind status;
    int final;
    int64_t retry_at; /* RETRY: NOW + the delay */
    int fallback;
};

static const struct decide_case decide_cases[] = {
    /* kind, stop, attempt, max_retries, rnd -> status, final, retry_at, fallback */
    {OUTCOME_OK, STOP_NONE, 1, 3, 0, C, 1, 0, 0},
    {OUTCOME_OK, STOP_NONE, 4, 3, 0, C, 1, 0, 0}, /* success on the last attempt */
    {OUTCOME_RETRY, STOP_NONE, 1, 3, 0, R, 0, NOW + 1000, 0},
    {OUTCOME_RETRY, STOP_NONE, 2, 3, 0, R, 0, NOW + 2000, 0},
    {OUTCOME_RETRY, STOP_NONE, 3, 3, 0, R, 0, NOW + 4000, 0},
    {OUTCOME_RETRY, STOP_NONE, 3, 3, 0.5, R, 0, NOW + 3600, 0}, /* jitter takes 10% */
    {OUTCOME_RETRY, STOP_NONE, 4, 3, 0, F, 1, 0, 1},            /* retries used up: fallback */
    {OUTCOME_RETRY, STOP_NONE, 1, 0, 0, F, 1, 0, 1},            /* no retries allowed */
    {OUTCOME_TIMEOUT, STOP_DEADLINE, 1, 3, 0, R, 0, NOW + 1000, 0},
    {OUTCOME_TIMEOUT, STOP_DEADLINE, 4, 3, 0, F, 1, 0, 1},
    {OUTCOME_CRASHED, STOP_WORKER_DIED, 2, 3, 0, R, 0, NOW + 2000, 0},
    {OUTCOME_CRASHED, STOP_PROTOCOL, 1, 3, 0, R, 0, NOW + 1000, 0},
    {OUTCOME_CRASHED, STOP_WORKER_DIED, 4, 3, 0, F, 1, 0, 1},
    {OUTCOME_UNAVAILABLE, STOP_NONE, 1, 3, 0, R, 0, NOW + 1000, 0},
    {OUTCOME_UNAVAILABLE, STOP_NONE, 4, 3, 0, F, 1, 0, 1},
    {OUTCOME_FAIL, STOP_NONE, 1, 3, 0, F, 1, 0, 1}, /* permanent: never retried */
    {OUTCOME_FAIL, STOP_NONE, 4, 3, 0, F, 1, 0, 1},
    {OUTCOME_INVALID, STOP_NONE, 1, 3, 0, F, 1, 0, 0}, /* wrong parameters: no fallback */
    {OUTCOME_CANCELLED, STOP_CANCEL, 1, 3, 0, X, 1, 0, 0},
    {OUTCOME_CANCELLED, STOP_CANCEL, 4, 0, 0, X, 1, 0, 0},
    {OUTCOME_CANCELLED, STOP_SHUTDOWN, 1, 3, 0, L, 0, 0, 0}, /* back to the queue */
    {OUTCOME_CANCELLED, STOP_SHUTDOWN, 9, 0, 0, L, 0, 0, 0}, /* not counted as a retry */
};

static void test_decide_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(decide_cases) / sizeof(decide_cases[0]); i++) {
        const struct decide_case *k = &decide_cases[i];
        retry_policy p = pol;
        p.max_retries = k->max_retries;
        struct outcome out = {.kind = k->kind, .stop = k->stop, .code = "c", .message = "m"};
        struct policy_decision d = policy_decide(&out, k->attempt, &p, k->rnd, NOW);
        /* Names the row of a failing case. */
#define CHECK(cond)                                                                                \
    if (!(cond))                                                                                   \
    fail_msg("decide_cases[%zu]: %s", i, #cond)
        CHECK(d.status == k->status);
        CHECK(d.final == k->final);
        CHECK(d.retry_at_ms == k->retry_at);
        CHECK(d.delay_ms == (k->retry_at ? k->retry_at - NOW : 0));
        CHECK(d.fallback == k->fallback);
#undef CHECK
    }
}

/* Every kind, every stop: a decision is always one of the five store outcomes, final
 * exactly for the three final ones, a retry always in the future, and a fallback only
 * after a final FAILED. */
static void test_decide_invariants(void **state)
{
    (void)state;
    for (int kind = OUTCOME_OK; kind <= OUTCOME_UNAVAILABLE; kind++)
        for (int stop = STOP_NONE; stop <= STOP_PROTOCOL; stop++)
            for (int attempt = 1; attempt <= 5; attempt++) {
                struct outcome out = {.kind = (enum outcome_kind)kind,
                                      .stop = (enum outcome_stop)stop};
                struct policy_decision d = policy_decide(&out, attempt, &pol, 0.99, NOW);
                int is_final = d.status == C || d.status == F || d.status == X;
                assert_int_equal(d.final, is_final);
                if (d.status == R)
                    assert_true(d.retry_at_ms > NOW);
                else
                    assert_int_equal(d.retry_at_ms, 0);
                if (d.fallback)
                    assert_int_equal(d.status, F);
            }
}

static void test_refused_and_lost(void **state)
{
    (void)state;
    struct policy_decision d = policy_refused();
    assert_int_equal(d.status, F);
    assert_true(d.final);
    assert_false(d.fallback);
    static const struct {
        enum policy_lost_state state;
        int idempotent;
        enum store_outcome_kind status;
        int final;
    } lost[] = {
        {LOST_BEFORE_START, 0, L, 0},     {LOST_BEFORE_START, 1, L, 0},
        {LOST_WHILE_CANCELLING, 0, X, 1}, {LOST_WHILE_CANCELLING, 1, X, 1},
        {LOST_WHILE_RUNNING, 1, R, 0},    {LOST_WHILE_RUNNING, 0, F, 1},
    };
    for (size_t i = 0; i < sizeof(lost) / sizeof(lost[0]); i++) {
        d = policy_lost(lost[i].state, lost[i].idempotent);
        assert_int_equal(d.status, lost[i].status);
        assert_int_equal(d.final, lost[i].final);
        assert_int_equal(d.retry_at_ms, 0); /* a lost idempotent attempt runs again now */
        assert_false(d.fallback);
    }
}

static void test_backoff_doubles_and_caps(void **state)
{
    (void)state;
    static const struct {
        int retry;
        double rnd;
        int64_t ms;
    } rows[] = {
        {1, 0.0, 1000},  {2, 0.0, 2000}, {3, 0.0, 4000}, {4, 0.0, 5000}, /* capped */
        {30, 0.0, 5000}, {0, 0.0, 1000}, /* below 1 counts as the first */
        {1, 0.5, 900},                   /* jitter 0.2 takes up to 20% off: [800, 1000] */
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        assert_int_equal(policy_retry_delay_ms(&pol, rows[i].retry, rows[i].rnd), rows[i].ms);
    int64_t lo = policy_retry_delay_ms(&pol, 1, 0.999999);
    assert_true(lo >= 800 && lo < 1000);
    retry_policy flat = pol;
    flat.backoff = 0.5; /* below 1 means no growth */
    flat.jitter = 7;    /* clamped to 1 */
    assert_int_equal(policy_retry_delay_ms(&flat, 7, 0.0), 1000);
    assert_int_equal(policy_retry_delay_ms(&flat, 7, 0.5), 500);
}

static void test_settings_from_the_vault(void **state)
{
    (void)state;
    json_t *v = json_pack("{s:i,s:i}", "max_retries", 0, "retry_delay", 7);
    retry_policy p = policy_for_vault(&pol, v);
    assert_int_equal(p.max_retries, 0);
    assert_int_equal(p.delay_ms, 7000);
    assert_int_equal(p.max_delay_ms, pol.max_delay_ms);
    json_decref(v);
    /* Not integers (hostile or mistyped): the host's settings stand. */
    v = json_pack("{s:s,s:f}", "max_retries", "9", "retry_delay", 2.5);
    p = policy_for_vault(&pol, v);
    assert_int_equal(p.max_retries, pol.max_retries);
    assert_int_equal(p.delay_ms, pol.delay_ms);
    json_decref(v);
    p = policy_for_vault(&pol, NULL);
    assert_int_equal(p.max_retries, pol.max_retries);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide_table),
        cmocka_unit_test(test_decide_invariants),
        cmocka_unit_test(test_refused_and_lost),
        cmocka_unit_test(test_backoff_doubles_and_caps),
        cmocka_unit_test(test_settings_from_the_vault),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
