/*
 * Operations inside a batch (store_begin … store_commit) on SQLite, where they run without a
 * savepoint of their own. One that fails after it announced it may fail having changed rows
 * (may_undo, a create of many items) undoes only itself; one that fails after changes it did
 * not announce (here a hostile trigger) begins the batch again when the batch held nothing
 * else, and otherwise loses the batch, which says so, refuses what follows and commits
 * nothing. And the events of many ends, which SQLite binds in statements of sixteen and four
 * rows and one by one for the rest: each end gets its event once, after the events written
 * before it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <sqlite3.h>

#include "store.h"
#include "util.h"

#define N_ENDS 21

struct fixture {
    char dir[64];
    store *st;
    json_t *vault;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-test-batch.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char path[128], err[512];
    snprintf(path, sizeof(path), "%s/ferry.db", f->dir);
    f->st = store_open(path, err, sizeof(err));
    assert_non_null(f->st);
    assert_int_equal(store_region_create(f->st, "r", NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(store_bridge_create(f->st, "r", "b", NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(store_team_create(f->st, "T", NULL, NULL, err, sizeof(err)), 0);
    json_t *conc = json_pack("{s:i}", "concurrency", N_ENDS);
    assert_int_equal(store_machine_create(f->st, "T", "b", "m", conc, NULL, err, sizeof(err)), 0);
    json_decref(conc);
    f->vault = json_pack("{s:s}", "function", "fx");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->st);
    json_decref(f->vault);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Runs sql on the store's file through a connection of its own; returns the first column of
 * the last row as an integer (0 when none). */
static int64_t raw(struct fixture *f, const char *sql)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/ferry.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    int64_t v = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    assert_int_equal(rc, SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static int64_t count(struct fixture *f, const char *what)
{
    char *sql = xasprintf("SELECT count(*) FROM queue_items WHERE %s", what);
    int64_t n = raw(f, sql);
    free(sql);
    return n;
}

/* A create of one item for machine (NOT_FOUND, changing nothing, for a machine that does
 * not exist); the item's vault is {"function": function}. */
static int create(struct fixture *f, const char *machine, const char *function)
{
    json_t *v = json_pack("{s:s}", "function", function);
    struct store_item_spec spec = {.team = "T", .machine = machine, .bridge = "b", .vault = v};
    int rc = store_queue_create(f->st, &spec, NULL, NULL, NULL, 0);
    json_decref(v);
    return rc;
}

/* Two items queued and claimed (started) in a transaction of their own. */
static struct store_item *claim_two(struct fixture *f)
{
    assert_int_equal(create(f, "m", "held"), STORE_OK);
    assert_int_equal(create(f, "m", "held"), STORE_OK);
    struct store_item *items = NULL;
    size_t got = 0;
    assert_int_equal(
        store_claim_items(f->st, "b", "me", 60000, 2, 1, now_ms(), &items, &got, NULL, 0),
        STORE_OK);
    assert_int_equal(got, 2);
    return items;
}

/* From now on the second item's end fails as it runs (abs() of the smallest integer is an
 * error). */
static void second_end_fails(struct fixture *f, struct store_item *items)
{
    char *sql = xasprintf("CREATE TRIGGER no_end BEFORE UPDATE OF status ON queue_items"
                          " WHEN old.task_id = '%s' BEGIN SELECT abs(-9223372036854775807 - 1);"
                          " END",
                          items[1].task_id);
    raw(f, sql);
    free(sql);
}

/* Ends both items COMPLETED in one operation. */
static int end_both(struct fixture *f, struct store_item *items, char *err, size_t errlen)
{
    struct store_finish fin[2];
    int rcs[2];
    for (int i = 0; i < 2; i++)
        fin[i] = (struct store_finish){.task_id = items[i].task_id,
                                       .token = items[i].token,
                                       .outcome = {.kind = STORE_OUTCOME_COMPLETED}};
    return store_finish_many(f->st, fin, 2, rcs, now_ms(), err, errlen);
}

/* A create of three items whose last names a machine that does not exist fails after the
 * first two were written; it announced so, and only it is undone. */
static void test_announced_failure_undoes_itself(void **state)
{
    struct fixture *f = *state;
    struct store_item_spec specs[3];
    for (int i = 0; i < 3; i++)
        specs[i] = (struct store_item_spec){
            .team = "T", .machine = i == 2 ? "ghost" : "m", .bridge = "b", .vault = f->vault};
    assert_int_equal(store_begin(f->st, NULL, 0), STORE_OK);
    assert_int_equal(create(f, "m", "before"), STORE_OK);
    assert_int_equal(store_queue_create_batch(f->st, specs, 3, NULL, NULL, 0), STORE_NOT_FOUND);
    assert_int_equal(create(f, "m", "after"), STORE_OK);
    assert_int_equal(store_commit(f->st, NULL, 0), STORE_OK);
    assert_int_equal(count(f, "function = 'before'"), 1);
    assert_int_equal(count(f, "function = 'after'"), 1);
    assert_int_equal(count(f, "function = 'fx'"), 0);
}

/* The batch's first write fails after it changed rows it did not announce: the batch begins
 * again, holding nothing of it, and goes on. */
static void test_unannounced_failure_first_begins_again(void **state)
{
    struct fixture *f = *state;
    struct store_item *items = claim_two(f);
    char err[512] = "";
    second_end_fails(f, items);
    assert_int_equal(store_begin(f->st, NULL, 0), STORE_OK);
    assert_int_equal(create(f, "ghost", "refused"), STORE_NOT_FOUND); /* changed nothing */
    /* The first end was written when the second failed. */
    assert_int_equal(end_both(f, items, err, sizeof(err)), STORE_ERROR);
    assert_non_null(strstr(err, "integer overflow"));
    assert_int_equal(create(f, "m", "after"), STORE_OK);
    assert_int_equal(store_commit(f->st, NULL, 0), STORE_OK);
    assert_int_equal(count(f, "status = 'PROCESSING'"), 2); /* neither end held */
    assert_int_equal(count(f, "function = 'after'"), 1);
    store_items_free(items, 2);
}

/* The same failure after another operation of the batch wrote: the batch is lost (SQLite
 * keeps no record of that operation to write it again), the failure says so, what follows is
 * refused and the commit fails, writing nothing. */
static void test_unannounced_failure_later_loses_the_batch(void **state)
{
    struct fixture *f = *state;
    struct store_item *items = claim_two(f);
    char err[512] = "";
    second_end_fails(f, items);
    assert_int_equal(store_begin(f->st, NULL, 0), STORE_OK);
    assert_int_equal(create(f, "m", "before"), STORE_OK);
    assert_int_equal(end_both(f, items, err, sizeof(err)), STORE_ERROR);
    assert_non_null(strstr(err, "the batch was rolled back"));
    assert_non_null(strstr(err, "integer overflow"));
    assert_int_equal(create(f, "m", "after"), STORE_ERROR);
    assert_int_equal(store_commit(f->st, NULL, 0), STORE_ERROR);
    assert_int_equal(count(f, "function = 'before' OR function = 'after'"), 0);
    assert_int_equal(count(f, "status = 'PROCESSING'"), 2);
    /* The handle goes on: the next batch commits. */
    assert_int_equal(store_begin(f->st, NULL, 0), STORE_OK);
    assert_int_equal(create(f, "m", "next"), STORE_OK);
    assert_int_equal(store_commit(f->st, NULL, 0), STORE_OK);
    assert_int_equal(count(f, "function = 'next'"), 1);
    store_items_free(items, 2);
}

/* The actions of task's trace, joined by spaces (the caller frees it); with its last event's
 * text in *last (freed by the caller too). */
static char *actions(struct fixture *f, const char *task, char **last)
{
    json_t *ev = NULL;
    assert_int_equal(store_event_list(f->st, task, &ev, NULL, 0), STORE_OK);
    char *out = xstrdup("");
    size_t i;
    json_t *e;
    json_array_foreach (ev, i, e) {
        char *next = xasprintf("%s%s%s", out, *out ? " " : "",
                               json_string_value(json_object_get(e, "action")));
        free(out);
        out = next;
        free(*last);
        const char *details = json_string_value(json_object_get(e, "details"));
        *last = details ? xstrdup(details) : NULL;
    }
    json_decref(ev);
    return out;
}

static void test_many_ends_each_get_their_event(void **state)
{
    struct fixture *f = *state;
    char err[512];
    json_t *v = json_pack("{s:s}", "function", "fx");
    for (int i = 0; i < N_ENDS; i++) {
        struct store_item_spec spec = {.team = "T", .machine = "m", .bridge = "b", .vault = v};
        assert_int_equal(store_queue_create(f->st, &spec, NULL, NULL, err, sizeof(err)), 0);
    }
    json_decref(v);
    struct store_item *items = NULL;
    size_t got = 0;
    assert_int_equal(store_claim_items(f->st, "b", "me", 60000, N_ENDS, 1, now_ms(), &items, &got,
                                       err, sizeof(err)),
                     STORE_OK);
    assert_int_equal(got, N_ENDS);
    struct store_finish fin[N_ENDS];
    char reasons[N_ENDS][32];
    int rcs[N_ENDS];
    assert_int_equal(store_begin(f->st, NULL, 0), STORE_OK);
    /* The last item retries: its decision event is written first, in the same batch. */
    assert_int_equal(store_event_append(f->st, items[N_ENDS - 1].task_id, "RETRY", "retry 1 of 2",
                                        NULL, now_ms(), err, sizeof(err)),
                     STORE_OK);
    for (int i = 0; i < N_ENDS; i++) {
        snprintf(reasons[i], sizeof(reasons[i]), "attempt 1 of item %d", i);
        fin[i] = (struct store_finish){
            .task_id = items[i].task_id,
            .token = items[i].token,
            .outcome = {.kind = i == N_ENDS - 1 ? STORE_OUTCOME_RETRY : STORE_OUTCOME_COMPLETED,
                        .reason = reasons[i]}};
    }
    assert_int_equal(store_finish_many(f->st, fin, N_ENDS, rcs, now_ms(), err, sizeof(err)),
                     STORE_OK);
    assert_int_equal(store_commit(f->st, err, sizeof(err)), STORE_OK);
    for (int i = 0; i < N_ENDS; i++) {
        assert_int_equal(rcs[i], STORE_OK);
        char *last = NULL, *a = actions(f, items[i].task_id, &last);
        if (i == N_ENDS - 1) {
            assert_string_equal(a, "CREATED ASSIGNED PROCESSING RETRY RETRY_SCHEDULED");
            assert_non_null(strstr(last, reasons[i]));
        } else {
            assert_string_equal(a, "CREATED ASSIGNED PROCESSING COMPLETED");
            assert_string_equal(last, reasons[i]);
        }
        free(a);
        free(last);
    }
    store_items_free(items, got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_announced_failure_undoes_itself, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unannounced_failure_first_begins_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unannounced_failure_later_loses_the_batch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_many_ends_each_get_their_event, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
