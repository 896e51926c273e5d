/*
 * A claim token is the claim's random prefix and the last 12 digits of the item's seq,
 * zero-padded (claim.c; finish.c finds the item by them). SQLite writes the padding with a
 * CASE over the seq's magnitude rather than substr() and length() (store_sqlite.c,
 * S_CLAIM_ASSIGN: a function call would cost the claim a statement journal): these tests
 * check its tokens for seqs of every length, and for a seq past 12 digits, whose item still
 * ends by its token.
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

static char g_dir[64], g_path[160];

enum { MACHINES = 12 };

struct fx {
    store *s;
    char region[64], bridge[64], team[64], owner[64];
    char m[MACHINES][64];
    int64_t t0;
};

static void create_item(struct fx *f, int machine, char id[37])
{
    suite_item(f->s, f->team, f->bridge, f->m[machine], f->t0, id);
}

/* The seq of the item task_id, read behind the store's back. */
static int64_t seq_of(const char *task_id)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(g_path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT seq FROM queue_items WHERE task_id = ?1", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t seq = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return seq;
}

/* A token is 24 characters of prefix, then the last 12 digits of seq, zero-padded. */
static void assert_token_of(const char *token, int64_t seq)
{
    char digits[24];
    snprintf(digits, sizeof(digits), "%012lld", (long long)(seq % 1000000000000LL));
    assert_int_equal(strlen(token), 36);
    assert_string_equal(token + 24, digits);
}

/* The test's store, with its region, bridge, team, machines and owner (closed by the test). */
static void fx_open(struct fx *f)
{
    f->s = suite_store_open(g_path, f->region, f->bridge, f->team, f->m, MACHINES);
    assert_non_null(f->s);
    fresh_name(f->owner, sizeof(f->owner), "host");
    f->t0 = now_ms() - 3600 * 1000;
}

/* Items of seqs 1 to 12 digits long (the store's next seq raised behind its back between
 * them): each claimed item's token ends with its seq, zero-padded to 12 digits. */
static void test_token_pads_every_length(void **state)
{
    (void)state;
    struct fx fx, *f = &fx;
    fx_open(f);
    char err[512], ids[MACHINES][37];
    int64_t seqs[MACHINES];
    for (int m = 0; m < MACHINES; m++) {
        /* An item of seq 10^m - 1 makes the next one 10^m: m + 1 digits. */
        if (m > 0) {
            char *sql = xasprintf("UPDATE queue_items SET seq = %lld WHERE task_id = '%s';"
                                  " UPDATE queue_events SET task_seq = %lld WHERE task_seq = %lld",
                                  (long long)(seqs[m - 1] * 10 + 9), ids[m - 1],
                                  (long long)(seqs[m - 1] * 10 + 9), (long long)seqs[m - 1]);
            raw_sql(g_path, sql);
            free(sql);
            seqs[m - 1] = seq_of(ids[m - 1]);
        }
        create_item(f, m, ids[m]);
        seqs[m] = seq_of(ids[m]);
    }
    assert_true(seqs[MACHINES - 1] >= 100000000000LL); /* 12 digits */
    struct store_item *items = NULL;
    size_t n = 0;
    assert_rc(STORE_OK, store_claim_items(f->s, f->bridge, f->owner, 30000, MACHINES, 1,
                                          f->t0 + 100, &items, &n, err, sizeof(err)));
    assert_int_equal(n, MACHINES);
    for (size_t i = 0; i < n; i++) {
        int m = 0;
        while (m < MACHINES && strcmp(ids[m], items[i].task_id) != 0)
            m++;
        assert_true(m < MACHINES);
        assert_token_of(items[i].token, seqs[m]);
    }
    store_items_free(items, n);
    store_close(f->s);
}

/* A seq past 12 digits: the token keeps its last 12 (as it always did), and the item still
 * ends by that token. */
static void test_token_of_a_seq_past_12_digits(void **state)
{
    (void)state;
    struct fx fx, *f = &fx;
    fx_open(f);
    char err[512], id[37], small[37];
    create_item(f, 0, small); /* an item whose seq the long one's last digits could name */
    create_item(f, 1, id);
    int64_t old = seq_of(id), big = 1000000000000LL + seq_of(small);
    char *sql = xasprintf("UPDATE queue_items SET seq = %lld WHERE task_id = '%s';"
                          " UPDATE queue_events SET task_seq = %lld WHERE task_seq = %lld",
                          (long long)big, id, (long long)big, (long long)old);
    raw_sql(g_path, sql);
    free(sql);
    struct store_item *items = NULL;
    size_t n = 0;
    assert_rc(STORE_OK, store_claim_items(f->s, f->bridge, f->owner, 30000, 2, 1, f->t0 + 100,
                                          &items, &n, err, sizeof(err)));
    assert_int_equal(n, 2);
    size_t k = strcmp(items[0].task_id, id) == 0 ? 0 : 1;
    assert_string_equal(items[k].task_id, id);
    assert_token_of(items[k].token, big);
    assert_string_equal(items[k].token + 24, items[1 - k].token + 24); /* the same digits */
    struct store_finish fin = {
        .task_id = id, .token = items[k].token, .outcome = {.kind = STORE_OUTCOME_COMPLETED}};
    int rc = -1;
    assert_rc(STORE_OK, store_finish_many(f->s, &fin, 1, &rc, f->t0 + 200, err, sizeof(err)));
    assert_int_equal(rc, STORE_OK);
    json_t *row = NULL;
    assert_rc(STORE_OK, store_queue_get(f->s, id, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "status"), "COMPLETED");
    json_decref(row);
    json_t *other = NULL;
    assert_rc(STORE_OK, store_queue_get(f->s, small, &other, err, sizeof(err)));
    assert_string_equal(jstr(other, "status"), "PROCESSING"); /* its look-alike untouched */
    json_decref(other);
    store_items_free(items, n);
    store_close(f->s);
}

int main(void)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/ferry-test-claim-token-XXXXXX");
    if (mkdtemp(g_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(g_path, sizeof(g_path), "%s/ferry.db", g_dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_pads_every_length),
        cmocka_unit_test(test_token_of_a_seq_past_12_digits),
    };
    int failed = cmocka_run_group_tests_name("claim_token", tests, NULL, NULL);
    char *rm = xasprintf("rm -rf '%s'", g_dir);
    if (system(rm) != 0)
        failed = 1;
    free(rm);
    return failed;
}
