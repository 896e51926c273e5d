/*
 * A claim right after a claim by machine remembers which machines were full (claim.c:
 * struct claim_memory) and looks only at those that may have a free slot since: the
 * machines its own ends freed, and those it left with a free slot. Each test here first
 * brings a store to that state (a busy machine's backlog at the head of the queue, a claim
 * that finds every machine full), then changes the store in one way the memory must not
 * miss, and checks that the next claim takes what a claim over every machine would.
 *
 * Runs against a fresh SQLite file, and once more against PostgreSQL when FERRY_TEST_PG_URL
 * names a database (where claims lock rows and remember nothing: the same picks).
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

#include "store.h"
#include "util.h"

#include "store_suite.h"

static const char *g_url;
static char g_dir[64];

enum { MACHINES = 6 };

struct fx {
    store *s;
    char region[64], bridge[64], team[64], owner[64];
    char m[MACHINES][64]; /* m[0] has the backlog; m[5] has no item at first */
    int64_t t0;
    char backlog[20][37], tail[MACHINES][37];
};

static void create_item(struct fx *f, store *s, int machine, int64_t created, int64_t run_after,
                        const char *const *after, size_t n_after, char id[37])
{
    char err[512];
    json_t *v = json_pack("{s:s}", "function", "noop");
    struct store_item_spec spec = {.team = f->team,
                                   .machine = f->m[machine],
                                   .bridge = f->bridge,
                                   .priority = 3,
                                   .vault = v,
                                   .after = after,
                                   .n_after = n_after,
                                   .now_ms = f->t0 + created,
                                   .run_after_ms = f->t0 + run_after};
    assert_rc(STORE_OK, store_queue_create(s, &spec, id, NULL, err, sizeof(err)));
    json_decref(v);
}

static json_t *claim(struct fx *f, int max_n, int64_t at_ms)
{
    char err[512];
    json_t *items = NULL;
    assert_rc(STORE_OK, store_claim(f->s, f->bridge, f->owner, 30000, max_n, f->t0 + at_ms, &items,
                                    err, sizeof(err)));
    return items;
}

/* Claims (max_n 10) at at_ms and checks the picks are want[0..n), in order; returns the
 * claimed rows. */
static json_t *claim_is(struct fx *f, int64_t at_ms, const char *const *want, size_t n)
{
    json_t *got = claim(f, 10, at_ms);
    if (json_array_size(got) != n)
        fail_msg("claimed %zu, expected %zu", json_array_size(got), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(jstr(json_array_get(got, i), "taskId"), want[i]);
    return got;
}

/* Ends the i-th claimed row of got. */
static void end(struct fx *f, json_t *got, size_t i, enum store_outcome_kind kind,
                int64_t run_after, int64_t at_ms)
{
    char err[512];
    json_t *row = json_array_get(got, i);
    struct store_finish fin = {.task_id = jstr(row, "taskId"),
                               .token = jstr(row, "claimToken"),
                               .outcome = {.kind = kind,
                                           .reason = "test says so",
                                           .run_after_ms = run_after ? f->t0 + run_after : 0}};
    int rc = -1;
    assert_rc(STORE_OK, store_finish_many(f->s, &fin, 1, &rc, f->t0 + at_ms, err, sizeof(err)));
    assert_int_equal(rc, STORE_OK);
}

static int setup(void **state)
{
    char err[512] = "";
    struct fx *f = calloc(1, sizeof(*f));
    f->s = store_open(g_url, err, sizeof(err));
    if (f->s == NULL) {
        print_error("cannot open %s: %s\n", g_url, err);
        free(f);
        return -1;
    }
    fresh_name(f->region, sizeof(f->region), "r");
    fresh_name(f->bridge, sizeof(f->bridge), "b");
    fresh_name(f->team, sizeof(f->team), "t");
    fresh_name(f->owner, sizeof(f->owner), "host");
    int rc = store_region_create(f->s, f->region, NULL, NULL, err, sizeof(err));
    rc = rc ? rc : store_bridge_create(f->s, f->region, f->bridge, NULL, NULL, err, sizeof(err));
    rc = rc ? rc : store_team_create(f->s, f->team, NULL, NULL, err, sizeof(err));
    for (int m = 0; rc == STORE_OK && m < MACHINES; m++) {
        fresh_name(f->m[m], sizeof(f->m[m]), "cm");
        rc = store_machine_create(f->s, f->team, f->bridge, f->m[m], NULL, NULL, err, sizeof(err));
    }
    if (rc != STORE_OK) {
        print_error("fixture: %s\n", err);
        store_close(f->s);
        free(f);
        return -1;
    }
    f->t0 = now_ms() - 3600 * 1000;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    store_close(f->s);
    free(f);
    return 0;
}

/* The state every test starts from: m0's backlog of 20 at the head of the queue, then one
 * item each of m1..m4 (m4's waits until 50000), m5 without items. The first claim takes
 * m0's, m1's, m2's and m3's heads; the second finds every machine full (or waiting) and
 * the one after goes by machine from the start: the claims after it remember. Returns the
 * first claim's rows. */
static json_t *busy(struct fx *f)
{
    for (int i = 0; i < 20; i++)
        create_item(f, f->s, 0, 1 + i, 1 + i, NULL, 0, f->backlog[i]);
    for (int m = 1; m <= 4; m++)
        create_item(f, f->s, m, 100 + m, m == 4 ? 50000 : 100 + m, NULL, 0, f->tail[m]);
    const char *first[] = {f->backlog[0], f->tail[1], f->tail[2], f->tail[3]};
    json_t *got = claim_is(f, 1000, first, 4);
    json_decref(claim_is(f, 1001, NULL, 0));
    json_decref(claim_is(f, 1002, NULL, 0));
    return got;
}

/* The ends of the claim's own items free their machines: the next claim takes their next
 * items, and only theirs. */
static void test_memory_ends_free_machines(void **state)
{
    struct fx *f = *state;
    json_t *got = busy(f);
    end(f, got, 0, STORE_OUTCOME_COMPLETED, 0, 1100);
    const char *next[] = {f->backlog[1]};
    json_t *again = claim_is(f, 1101, next, 1);
    end(f, again, 0, STORE_OUTCOME_COMPLETED, 0, 1200);
    end(f, got, 1, STORE_OUTCOME_COMPLETED, 0, 1200);
    const char *then[] = {f->backlog[2]};
    json_decref(claim_is(f, 1201, then, 1));
    json_decref(again);
    json_decref(got);
}

/* A machine left with a free slot and an item that waits (m4) is looked at again: its item
 * is taken once its time comes, with nothing else written. */
static void test_memory_waiting_item_comes_due(void **state)
{
    struct fx *f = *state;
    json_t *got = busy(f);
    json_decref(claim_is(f, 49999, NULL, 0));
    const char *due[] = {f->tail[4]};
    json_decref(claim_is(f, 50000, due, 1));
    json_decref(got);
}

/* A retry puts the item back, waiting: its machine is free, and the item is taken again
 * once it is due. */
static void test_memory_retry_comes_back(void **state)
{
    struct fx *f = *state;
    json_t *got = busy(f);
    end(f, got, 1, STORE_OUTCOME_RETRY, 3000, 1100);
    json_decref(claim_is(f, 2999, NULL, 0));
    const char *back[] = {f->tail[1]};
    json_decref(claim_is(f, 3000, back, 1));
    json_decref(got);
}

/* An end that creates an item (a fallback, on a machine the claim never saw). */
static void test_memory_fallback(void **state)
{
    struct fx *f = *state;
    char err[512];
    json_t *got = busy(f);
    json_t *v = json_pack("{s:s}", "function", "noop");
    struct store_item_spec fb = {
        .team = f->team, .machine = f->m[5], .bridge = f->bridge, .vault = v};
    json_t *row = json_array_get(got, 0);
    struct store_finish fin = {.task_id = jstr(row, "taskId"),
                               .token = jstr(row, "claimToken"),
                               .outcome = {.kind = STORE_OUTCOME_FAILED,
                                           .reason = "test says so",
                                           .fallback = &fb}};
    int rc = -1;
    assert_rc(STORE_OK, store_finish_many(f->s, &fin, 1, &rc, f->t0 + 1100, err, sizeof(err)));
    assert_int_equal(rc, STORE_OK);
    json_t *two = claim(f, 10, 1101);
    assert_int_equal(json_array_size(two), 2);
    assert_string_equal(jstr(json_array_get(two, 0), "taskId"), f->backlog[1]);
    assert_string_equal(jstr(json_array_get(two, 1), "machineName"), f->m[5]);
    json_decref(two);
    json_decref(v);
    json_decref(got);
}

/* A dependency met by an end makes an item of a free machine ready. */
static void test_memory_dependency_met(void **state)
{
    struct fx *f = *state;
    json_t *got = busy(f);
    char dependent[37];
    const char *after[] = {f->tail[1]};
    create_item(f, f->s, 5, 200, 200, after, 1, dependent);
    json_decref(claim_is(f, 1100, NULL, 0)); /* m5 is free, its item waits on m1's */
    json_decref(claim_is(f, 1101, NULL, 0));
    end(f, got, 1, STORE_OUTCOME_COMPLETED, 0, 1200);
    const char *ready[] = {dependent};
    json_decref(claim_is(f, 1201, ready, 1));
    json_decref(got);
}

/* A new item of a machine the claim never saw, created through the same handle. */
static void test_memory_new_item(void **state)
{
    struct fx *f = *state;
    json_t *got = busy(f);
    char fresh[37];
    create_item(f, f->s, 5, 1100, 1100, NULL, 0, fresh);
    const char *want[] = {fresh};
    json_decref(claim_is(f, 1101, want, 1));
    json_decref(got);
}

/* A machine given a second slot through the same handle takes its next item; once both
 * run, the end of one frees a slot (two active items, then one). */
static void test_memory_more_slots(void **state)
{
    struct fx *f = *state;
    char err[512];
    json_t *got = busy(f);
    json_t *two = json_pack("{s:i}", "concurrency", 2);
    assert_rc(STORE_OK, store_resource_update_vault(f->s, STORE_MACHINE, f->team, f->m[0], two, -1,
                                                    0, NULL, err, sizeof(err)));
    json_decref(two);
    const char *want[] = {f->backlog[1]};
    json_decref(claim_is(f, 1100, want, 1));
    json_decref(claim_is(f, 1101, NULL, 0));
    end(f, got, 0, STORE_OUTCOME_COMPLETED, 0, 1200);
    const char *then[] = {f->backlog[2]};
    json_decref(claim_is(f, 1201, then, 1));
    json_decref(got);
}

/* Another handle (another host, the CLI) gives a machine a second slot: data_version. */
static void test_memory_other_handle(void **state)
{
    struct fx *f = *state;
    char err[512];
    json_t *got = busy(f);
    store *other = store_open(g_url, err, sizeof(err));
    assert_non_null(other);
    json_t *two = json_pack("{s:i}", "concurrency", 2);
    assert_rc(STORE_OK, store_resource_update_vault(other, STORE_MACHINE, f->team, f->m[0], two,
                                                    -1, 0, NULL, err, sizeof(err)));
    json_decref(two);
    store_close(other);
    const char *want[] = {f->backlog[1]};
    json_decref(claim_is(f, 1100, want, 1));
    json_decref(got);
}

/* A claim undone with its batch leaves its machine free: the next claim takes the same. */
static void test_memory_claim_rolled_back(void **state)
{
    struct fx *f = *state;
    char err[512];
    json_t *got = busy(f);
    end(f, got, 0, STORE_OUTCOME_COMPLETED, 0, 1100);
    assert_rc(STORE_OK, store_begin(f->s, err, sizeof(err)));
    const char *next[] = {f->backlog[1]};
    json_decref(claim_is(f, 1101, next, 1));
    assert_rc(STORE_OK, store_rollback(f->s, err, sizeof(err)));
    json_decref(claim_is(f, 1102, next, 1));
    json_decref(got);
}

/* A batch rolled back undoes the end a remembered head was ready by: the head waits again
 * on its dependency. */
static void test_memory_batch_rolled_back(void **state)
{
    struct fx *f = *state;
    char err[512], waits[37];
    json_t *got = busy(f);
    const char *after[] = {f->tail[1]};
    create_item(f, f->s, 5, 200, 200, after, 1, waits);
    json_decref(claim_is(f, 1100, NULL, 0));
    assert_rc(STORE_OK, store_begin(f->s, err, sizeof(err)));
    end(f, got, 1, STORE_OUTCOME_COMPLETED, 0, 1200); /* m1's item: waits is ready */
    end(f, got, 0, STORE_OUTCOME_COMPLETED, 0, 1200);
    json_t *one = claim(f, 1, 1201); /* m0's next comes first; m5's head is known */
    assert_int_equal(json_array_size(one), 1);
    assert_string_equal(jstr(json_array_get(one, 0), "taskId"), f->backlog[1]);
    assert_rc(STORE_OK, store_rollback(f->s, err, sizeof(err)));
    json_decref(claim_is(f, 1300, NULL, 0));
    json_decref(one);
    json_decref(got);
}

/* A claim of one leaves free machines with ready items behind: the next claim takes them. */
static void test_memory_claim_cut_short(void **state)
{
    struct fx *f = *state;
    json_t *got = busy(f);
    end(f, got, 1, STORE_OUTCOME_COMPLETED, 0, 1100);
    end(f, got, 2, STORE_OUTCOME_COMPLETED, 0, 1100);
    char more[3][37];
    for (int i = 0; i < 3; i++)
        create_item(f, f->s, 1 + i % 2, 1100 + i, 1100 + i, NULL, 0, more[i]);
    json_t *one = claim(f, 1, 1101);
    assert_int_equal(json_array_size(one), 1);
    assert_string_equal(jstr(json_array_get(one, 0), "taskId"), more[0]);
    const char *rest[] = {more[1]};
    json_decref(claim_is(f, 1102, rest, 1)); /* m1 is full again */
    json_decref(one);
    json_decref(got);
}

/* m5 gets two slots and items x (created at 200 + i, due at run_after[i]); a claim of one
 * takes x[0], then m0's head ends and a claim of one takes m0's next item, which comes
 * first: m5 is left open, its head x[1] known but not taken. taken: the two claims' rows. */
static void open_with_head(struct fx *f, json_t *got, const int64_t *run_after, int n,
                           char x[][37], json_t **taken)
{
    char err[512];
    json_t *two = json_pack("{s:i}", "concurrency", 2);
    assert_rc(STORE_OK, store_resource_update_vault(f->s, STORE_MACHINE, f->team, f->m[5], two, -1,
                                                    0, NULL, err, sizeof(err)));
    json_decref(two);
    for (int i = 0; i < n; i++)
        create_item(f, f->s, 5, 200 + i, run_after[i], NULL, 0, x[i]);
    taken[0] = claim(f, 1, 5000);
    assert_int_equal(json_array_size(taken[0]), 1);
    assert_string_equal(jstr(json_array_get(taken[0], 0), "taskId"), x[0]);
    end(f, got, 0, STORE_OUTCOME_COMPLETED, 0, 5000);
    json_t *one = claim(f, 1, 5001);
    assert_int_equal(json_array_size(one), 1);
    assert_string_equal(jstr(json_array_get(one, 0), "taskId"), f->backlog[1]);
    taken[1] = one;
}

/* A retry goes back ahead of the head the claim knew of its machine: the claim looks at the
 * machine again, and takes the retried item first. */
static void test_memory_retry_ahead_of_known_head(void **state)
{
    struct fx *f = *state;
    json_t *got = busy(f), *taken[2];
    char x[3][37];
    const int64_t due[] = {200, 201, 202};
    open_with_head(f, got, due, 3, x, taken);
    end(f, taken[0], 0, STORE_OUTCOME_RETRY, 0, 5100);
    const char *want[] = {x[0], x[1]};
    json_decref(claim_is(f, 5101, want, 2));
    json_decref(taken[0]);
    json_decref(taken[1]);
    json_decref(got);
}

/* A head known at one instant is not ready at an earlier one (a clock stepped back). */
static void test_memory_known_head_not_due_yet(void **state)
{
    struct fx *f = *state;
    json_t *got = busy(f), *taken[2];
    char x[2][37];
    const int64_t due[] = {200, 4000};
    open_with_head(f, got, due, 2, x, taken);
    json_decref(claim_is(f, 3999, NULL, 0));
    const char *want[] = {x[1]};
    json_decref(claim_is(f, 4000, want, 1));
    json_decref(taken[0]);
    json_decref(taken[1]);
    json_decref(got);
}

/* Another host (handle) takes m5's first item while this one remembers; returns what it
 * claimed, after this host's two claims that find every machine full (the second from
 * what it remembers) and with *other open. */
static json_t *other_holds_m5(struct fx *f, store **other, char ids[2][37])
{
    char err[512];
    json_decref(busy(f));
    create_item(f, f->s, 5, 200, 200, NULL, 0, ids[0]);
    create_item(f, f->s, 5, 201, 201, NULL, 0, ids[1]);
    *other = store_open(g_url, err, sizeof(err));
    assert_non_null(*other);
    json_t *theirs = NULL;
    assert_rc(STORE_OK, store_claim(*other, f->bridge, "other-host", 30000, 10, f->t0 + 1100,
                                    &theirs, err, sizeof(err)));
    assert_int_equal(json_array_size(theirs), 1);
    assert_string_equal(jstr(json_array_get(theirs, 0), "taskId"), ids[0]);
    json_decref(claim_is(f, 1101, NULL, 0));
    json_decref(claim_is(f, 1102, NULL, 0));
    return theirs;
}

/* Another host ends its item of a machine this one remembers full: the next claim here
 * takes the machine's next item (data_version; the claim does not count on its own ends
 * alone). */
static void test_memory_other_host_ends(void **state)
{
    struct fx *f = *state;
    char err[512], ids[2][37];
    store *other = NULL;
    json_t *theirs = other_holds_m5(f, &other, ids);
    json_t *row = json_array_get(theirs, 0);
    struct store_finish fin = {.task_id = jstr(row, "taskId"),
                               .token = jstr(row, "claimToken"),
                               .outcome = {.kind = STORE_OUTCOME_COMPLETED}};
    int rc = -1;
    assert_rc(STORE_OK, store_finish_many(other, &fin, 1, &rc, f->t0 + 1103, err, sizeof(err)));
    assert_int_equal(rc, STORE_OK);
    const char *want[] = {ids[1]};
    json_decref(claim_is(f, 1104, want, 1));
    json_decref(theirs);
    store_close(other);
}

/* This handle ends an item its claims did not take (another host's, by its token): the
 * claim cannot tell the machine from its own claims, so it reads the active items again
 * and takes the machine's next item. */
static void test_memory_end_of_unknown_item(void **state)
{
    struct fx *f = *state;
    char ids[2][37];
    store *other = NULL;
    json_t *theirs = other_holds_m5(f, &other, ids);
    end(f, theirs, 0, STORE_OUTCOME_COMPLETED, 0, 1103);
    const char *want[] = {ids[1]};
    json_decref(claim_is(f, 1104, want, 1));
    json_decref(theirs);
    store_close(other);
}

/* An end that does not hold (a stale token) frees nothing: the machine stays full. */
static void test_memory_end_refused(void **state)
{
    struct fx *f = *state;
    char err[512];
    json_t *got = busy(f);
    struct store_finish fin = {.task_id = jstr(json_array_get(got, 0), "taskId"),
                               .token = "00000000-0000-4000-8000-000000000000",
                               .outcome = {.kind = STORE_OUTCOME_COMPLETED}};
    int rc = -1;
    assert_rc(STORE_OK, store_finish_many(f->s, &fin, 1, &rc, f->t0 + 1100, err, sizeof(err)));
    assert_int_not_equal(rc, STORE_OK);
    json_decref(claim_is(f, 1101, NULL, 0));
    end(f, got, 0, STORE_OUTCOME_COMPLETED, 0, 1200);
    const char *next[] = {f->backlog[1]};
    json_decref(claim_is(f, 1201, next, 1));
    json_decref(got);
}

static int run_suite(const char *name)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_memory_ends_free_machines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_waiting_item_comes_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_retry_comes_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_dependency_met, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_new_item, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_more_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_other_handle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_claim_rolled_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_claim_cut_short, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_batch_rolled_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_retry_ahead_of_known_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_known_head_not_due_yet, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_other_host_ends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_end_of_unknown_item, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_end_refused, setup, teardown),
    };
    return _cmocka_run_group_tests(name, tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL);
}

int main(void)
{
    return store_suite_main("claim_memory", g_dir, sizeof(g_dir), &g_url, run_suite);
}
