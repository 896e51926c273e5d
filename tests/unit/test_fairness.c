/*
 * Fair claims among the hosts of a bridge (host/serve/fairness.c over host/store/waits.c)
 * against a real SQLite store: a host marks itself waiting only when ready items wait, the
 * others then see it and keep to their share of the bridge's work (active items and open
 * machines; never less than their idle workers), a mark runs out, a host without a mark
 * writes nothing, and a host that waits while it holds items counts once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fairness.h"
#include "util.h"

struct fixture {
    char dir[64];
    store *st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-test-fairness.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char path[128], err[512];
    snprintf(path, sizeof(path), "%s/ferry.db", f->dir);
    f->st = store_open(path, err, sizeof(err));
    assert_non_null(f->st);
    assert_int_equal(store_region_create(f->st, "r", NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(store_bridge_create(f->st, "r", "b", NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(store_bridge_create(f->st, "r", "empty", NULL, NULL, err, sizeof(err)), 0);
    assert_int_equal(store_team_create(f->st, "T", NULL, NULL, err, sizeof(err)), 0);
    const char *machines[] = {"m0", "m1", "m2", "m3"};
    for (int m = 0; m < 4; m++) {
        assert_int_equal(
            store_machine_create(f->st, "T", "b", machines[m], NULL, NULL, err, sizeof(err)), 0);
        for (int k = 0; k < 2; k++) {
            json_t *v = json_pack("{s:s}", "function", "fx");
            struct store_item_spec spec = {
                .team = "T", .machine = machines[m], .bridge = "b", .vault = v};
            assert_int_equal(store_queue_create(f->st, &spec, NULL, NULL, err, sizeof(err)), 0);
            json_decref(v);
        }
    }
    /* Host a holds three machines, host b the fourth: every machine is held. */
    struct store_item *items = NULL;
    size_t n = 0;
    assert_int_equal(
        store_claim_items(f->st, "b", "a", 60000, 3, 1, now_ms(), &items, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 3);
    store_items_free(items, n);
    assert_int_equal(
        store_claim_items(f->st, "b", "b", 60000, 5, 1, now_ms(), &items, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    store_items_free(items, n);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static struct store_claim_share share(struct fixture *f, const char *owner, int64_t at)
{
    struct store_claim_share sh;
    assert_int_equal(store_claim_share(f->st, "b", owner, at, &sh, NULL, 0), 0);
    return sh;
}

static void test_marks_and_shares(void **state)
{
    struct fixture *f = *state;
    int64_t now = now_ms();
    struct store_claim_share sh = share(f, "c", now);
    assert_int_equal(sh.waiting, 0);
    assert_int_equal(sh.holding, 2);
    assert_int_equal(sh.active, 4);
    assert_int_equal(sh.mine, 0);
    int marked = -1;
    /* Ready items wait (their machines are held): c is marked. */
    assert_int_equal(store_claim_wait(f->st, "b", "c", 1, now, now + 1500, &marked, NULL, 0), 0);
    assert_int_equal(marked, 1);
    sh = share(f, "a", now);
    assert_int_equal(sh.waiting, 1);
    assert_int_equal(sh.holding, 1); /* b; c holds nothing */
    assert_int_equal(sh.mine, 3);
    assert_int_equal(share(f, "c", now).waiting, 0);        /* a host does not count itself */
    assert_int_equal(share(f, "a", now + 2000).waiting, 0); /* the mark ran out */
    /* Nothing ready on a bridge: no mark, and with want 2 nothing is written. */
    assert_int_equal(store_claim_wait(f->st, "empty", "c", 2, now, now + 1500, &marked, NULL, 0),
                     0);
    assert_int_equal(marked, 0);
    /* want 0 clears c's mark. */
    assert_int_equal(store_claim_wait(f->st, "b", "c", 0, now, 0, &marked, NULL, 0), 0);
    assert_int_equal(marked, 0);
    assert_int_equal(share(f, "a", now).waiting, 0);
}

static void test_fair_slots(void **state)
{
    struct fixture *f = *state;
    /* Nobody waits: a's pipeline fills as it may. */
    fairness *fa = fairness_new(f->st, "b", "a");
    assert_int_equal(fairness_slots(fa, 66, 2, 3), 66);
    assert_int_equal(fairness_slots(fa, 2, 2, 3), 2); /* idle workers are always fed */
    fairness_free(fa);

    /* c has idle workers and its claim came up short: it waits, and polls often. */
    fairness *fc = fairness_new(f->st, "b", "c");
    fairness_claimed(fc, 0, 2);
    assert_int_equal(fairness_waiting(fc), 1);
    /* a sees it: its share is ceil(4 active / 3 hosts) = 2, it holds 3, so only its idle
     * workers are fed, and none when it has none. */
    fa = fairness_new(f->st, "b", "a");
    assert_int_equal(fairness_slots(fa, 66, 2, 3), 2);
    assert_int_equal(fairness_slots(fa, 66, 0, 3), 0);
    fairness_free(fa);
    /* The waiting host keeps to a share too: 2, not its whole pipeline. */
    assert_int_equal(fairness_slots(fc, 66, 2, 0), 2);
    /* Fed: it stops waiting; its mark is left to run out, then freeing it clears it. */
    fairness_claimed(fc, 2, 2);
    assert_int_equal(fairness_waiting(fc), 0);
    assert_int_equal(share(f, "a", now_ms()).waiting, 1);
    fairness_free(fc);
    assert_int_equal(share(f, "a", now_ms()).waiting, 0);
}

/* A host that waits while it holds items is one host, counted among the waiting only: the
 * others' share is the active items over the hosts there are. Counted twice (as holding and
 * as waiting), every host's share shrank below what the bridge's machines allow, the
 * shares shrank the active items in turn, and pipelines dried up (PG drain, 4 hosts). */
static void test_waiting_holder_counts_once(void **state)
{
    struct fixture *f = *state;
    int64_t now = now_ms();
    int marked = -1;
    /* b holds m3 and waits: ready items wait on the machines a holds. */
    assert_int_equal(store_claim_wait(f->st, "b", "b", 1, now, now + 1500, &marked, NULL, 0), 0);
    assert_int_equal(marked, 1);
    struct store_claim_share sh = share(f, "a", now);
    assert_int_equal(sh.waiting, 1);
    assert_int_equal(sh.holding, 0);
    assert_int_equal(sh.active, 4);
    assert_int_equal(sh.mine, 3);
    /* Once b's mark ran out, b holds again. */
    sh = share(f, "a", now + 2000);
    assert_int_equal(sh.waiting, 0);
    assert_int_equal(sh.holding, 1);
}

/* While a host waits, the shares are of the bridge's work: its active items and its machines
 * with a free slot and a ready item. Of the active items alone, the shares kept the hosts
 * where they were when the wait began (every host at its share, so none grew) and the free
 * machines idle, however long the wait lasted. */
static void test_share_counts_free_machines(void **state)
{
    struct fixture *f = *state;
    char err[512];
    const char *machines[] = {"m4", "m5", "m6"};
    for (int m = 0; m < 3; m++) {
        assert_int_equal(
            store_machine_create(f->st, "T", "b", machines[m], NULL, NULL, err, sizeof(err)), 0);
        json_t *v = json_pack("{s:s}", "function", "fx");
        struct store_item_spec spec = {
            .team = "T", .machine = machines[m], .bridge = "b", .vault = v};
        assert_int_equal(store_queue_create(f->st, &spec, NULL, NULL, err, sizeof(err)), 0);
        json_decref(v);
    }
    fairness *fc = fairness_new(f->st, "b", "c");
    fairness_claimed(fc, 0, 2);
    assert_int_equal(fairness_waiting(fc), 1);
    /* a, b and c: ceil((4 active + 3 free machines) / 3) = 3, of which a holds 1. */
    fairness *fa = fairness_new(f->st, "b", "a");
    assert_int_equal(fairness_slots(fa, 66, 0, 1), 2);
    fairness_free(fa);
    fairness_free(fc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_marks_and_shares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fair_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiting_holder_counts_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_share_counts_free_machines, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
