/*
 * The PostgreSQL claim over a database of its own (FERRY_TEST_PG_ADMIN_URL), where the test
 * knows every machine and every active item: the claim's search for free machines
 * (S_CLAIM_FREE_HEADS_LOCKED) walks the bridge's PENDING items by machine while the store is
 * mostly idle, and starts from the machines' table once at least half the machines have
 * active items. Both ways must pick exactly what the greedy model picks, including a head
 * that waits on run_after or on a dependency, a machine of concurrency 2 with one slot
 * left, and the items a machine left on a bridge it has since moved from. The conformance
 * suite (test_store) shares one database with other tests, so it cannot set how busy the
 * store is. Without a server the test fails with the reason, never passes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <libpq-fe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "seal.h"
#include "store.h"
#include "util.h"

#define MACHINES 8
#define ITEMS    240

static char g_url[512], g_dir[64];

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* A connection to url whose notices ("does not exist, skipping") are not printed. */
static PGconn *connect_quietly(const char *url)
{
    PGconn *c = PQconnectdb(url);
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

#define assert_ok(expr)                                                                            \
    do {                                                                                           \
        err[0] = '\0';                                                                             \
        if ((expr) != STORE_OK)                                                                    \
            fail_msg("%s failed: %s", #expr, err);                                                 \
    } while (0)

/* Runs sql on the test's database behind the store's back. */
static void raw(const char *sql)
{
    PGconn *c = connect_quietly(g_url);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

struct model {
    char id[ITEMS][37], token[ITEMS][37];
    int machine[ITEMS], status[ITEMS]; /* 0 pending, 1 active, 2 done */
    int64_t created[ITEMS], run_after[ITEMS];
    int conc[MACHINES];
};

/* The model's picks at now (indexes into the items, in claim order, at most max_n): items
 * in (created) order, a machine's slots used up by its own earlier items. Every item here
 * has one priority, and an item whose dependency is not done (blocked) never goes. */
static int model_picks(const struct model *m, int64_t now, int max_n, int blocked, int *out)
{
    int used[MACHINES] = {0}, n = 0;
    for (int i = 0; i < ITEMS; i++)
        used[m->machine[i]] += m->status[i] == 1;
    for (int i = 0; i < ITEMS && n < max_n; i++)
        if (m->status[i] == 0 && m->run_after[i] <= now && i != blocked &&
            used[m->machine[i]] < m->conc[m->machine[i]]) {
            used[m->machine[i]]++;
            out[n++] = i;
        }
    return n;
}

/* 1 when at least half of the store's machines have active items (the claim then starts
 * from the machines' table). */
static int store_busy(const struct model *m)
{
    int busy = 0;
    for (int k = 0; k < MACHINES; k++) {
        int any = 0;
        for (int i = 0; i < ITEMS; i++)
            any |= m->machine[i] == k && m->status[i] == 1;
        busy += any;
    }
    return busy * 2 >= MACHINES;
}

static void test_claim_idle_and_busy(void **state)
{
    (void)state;
    char err[512], region[] = "r", bridge[] = "b", other[] = "b2", team[] = "t", names[MACHINES][8];
    store *s = store_open(g_url, err, sizeof(err));
    if (s == NULL)
        fail_msg("cannot open %s: %s", g_url, err);
    struct model *m = calloc(1, sizeof(*m));
    assert_ok(store_region_create(s, region, NULL, NULL, err, sizeof(err)));
    assert_ok(store_bridge_create(s, region, bridge, NULL, NULL, err, sizeof(err)));
    assert_ok(store_bridge_create(s, region, other, NULL, NULL, err, sizeof(err)));
    assert_ok(store_team_create(s, team, NULL, NULL, err, sizeof(err)));
    for (int k = 0; k < MACHINES; k++) {
        m->conc[k] = k == 2 ? 2 : 1;
        json_t *v = json_pack("{s:i}", "concurrency", m->conc[k]);
        snprintf(names[k], sizeof(names[k]), "m%d", k);
        assert_ok(store_machine_create(s, team, bridge, names[k], v, NULL, err, sizeof(err)));
        json_decref(v);
    }
    /* Items in created order, one priority; one in ten waits a while. */
    int64_t t0 = now_ms() - 3600 * 1000;
    uint64_t rng = 12345;
    json_t *v = json_pack("{s:s}", "function", "noop");
    for (int i = 0; i < ITEMS; i++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t r = (uint32_t)(rng >> 33);
        m->machine[i] = (int)(r % MACHINES);
        m->created[i] = t0 + i;
        m->run_after[i] = r % 10 == 3 ? t0 + 400 + (int64_t)(r >> 8) % 2000 : m->created[i];
        struct store_item_spec sp = {.team = team,
                                     .machine = names[m->machine[i]],
                                     .bridge = bridge,
                                     .priority = 3,
                                     .vault = v,
                                     .now_ms = m->created[i],
                                     .run_after_ms = m->run_after[i]};
        assert_ok(store_queue_create(s, &sp, m->id[i], NULL, err, sizeof(err)));
    }
    /* m7 moves to the other bridge: its items stay on this one, and still go. */
    raw("UPDATE machines SET bridge_name = 'b2' WHERE name = 'm7'");
    /* m0's first item waits for m1's last one: m0's next ready items go before it. */
    int blocked = -1, blocker = -1;
    for (int i = 0; i < ITEMS; i++) {
        if (blocked < 0 && m->machine[i] == 0 && m->run_after[i] == m->created[i])
            blocked = i;
        if (m->machine[i] == 1)
            blocker = i;
    }
    char *dep = xasprintf("INSERT INTO queue_deps (task_seq, dep_seq) SELECT a.seq, b.seq"
                          " FROM queue_items a, queue_items b WHERE a.task_id = '%s'"
                          " AND b.task_id = '%s'",
                          m->id[blocked], m->id[blocker]);
    raw(dep);
    free(dep);
    int done = 0, rounds[2] = {0, 0}, want[ITEMS];
    for (int round = 0; round < 2000 && done < ITEMS; round++) {
        int64_t now = t0 + ITEMS + 20 * round;
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        int max_n = 1 + (int)((rng >> 33) % 6);
        int busy = store_busy(m);
        int n_want = model_picks(m, now, max_n, m->status[blocker] == 2 ? -1 : blocked, want);
        rounds[busy]++;
        struct store_item *typed = NULL;
        json_t *got = NULL;
        size_t n_got = 0;
        if (round % 2)
            assert_ok(store_claim_items(s, bridge, "host", 60000, max_n, 1, now, &typed, &n_got,
                                        err, sizeof(err)));
        else
            assert_ok(store_claim(s, bridge, "host", 60000, max_n, now, &got, err, sizeof(err)));
        if (got != NULL)
            n_got = json_array_size(got);
        if ((int)n_got != n_want)
            fail_msg("round %d (%s): claimed %zu, expected %d", round, busy ? "busy" : "idle",
                     n_got, n_want);
        for (int k = 0; k < n_want; k++) {
            int i = want[k];
            json_t *row = got ? json_array_get(got, (size_t)k) : NULL;
            const char *id =
                row ? json_string_value(json_object_get(row, "taskId")) : typed[k].task_id;
            if (strcmp(id, m->id[i]) != 0)
                fail_msg("round %d (%s): claim %d is %s, expected %s", round,
                         busy ? "busy" : "idle", k, id, m->id[i]);
            m->status[i] = 1;
            snprintf(m->token[i], sizeof(m->token[i]), "%s",
                     row ? json_string_value(json_object_get(row, "claimToken")) : typed[k].token);
        }
        json_decref(got);
        store_items_free(typed, n_got);
        /* Ends come slowly for a while (the store stays busy), then quickly (it idles). */
        int every = (round / 25) % 2 ? 2 : 5;
        for (int i = 0; i < ITEMS; i++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            if (m->status[i] == 1 && (rng >> 33) % (uint64_t)every == 0) {
                struct store_outcome o = {.kind = STORE_OUTCOME_COMPLETED};
                assert_ok(store_finish(s, m->id[i], m->token[i], &o, now + 1, err, sizeof(err)));
                m->status[i] = 2;
                done++;
            }
        }
    }
    assert_int_equal(done, ITEMS);
    if (rounds[0] == 0 || rounds[1] == 0)
        fail_msg("the claims ran %d rounds idle and %d busy: both ways must be tried", rounds[0],
                 rounds[1]);
    json_decref(v);
    free(m);
    store_close(s);
}

/* A database of its own on the server, and the fixed key its secrets are sealed with (as
 * the conformance suite's, a systemd-style credential). */
static int setup(void **state)
{
    (void)state;
    const char *admin = getenv("FERRY_TEST_PG_ADMIN_URL");
    if (admin == NULL || *admin == '\0') {
        print_error("FERRY_TEST_PG_ADMIN_URL is not set: run through tests/run.sh, which starts "
                    "a PostgreSQL server\n");
        return -1;
    }
    char db[64];
    snprintf(db, sizeof(db), "ferry_pg_claim_%d", (int)getpid());
    PGconn *c = connect_quietly(admin);
    char *sql = xasprintf("DROP DATABASE IF EXISTS %s", db);
    PQclear(PQexec(c, sql));
    free(sql);
    sql = xasprintf("CREATE DATABASE %s", db);
    PGresult *r = PQexec(c, sql);
    free(sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        print_error("cannot create database %s: %s\n", db, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    if (!ok)
        return -1;
    /* The admin URL with its database replaced (".../postgres?..." or ".../postgres"). */
    const char *slash = strstr(admin, "://");
    slash = slash ? strchr(slash + 3, '/') : NULL;
    const char *rest = slash ? slash + 1 + strcspn(slash + 1, "?") : "";
    snprintf(g_url, sizeof(g_url), "%.*s/%s%s", slash ? (int)(slash - admin) : 0, admin, db, rest);
    snprintf(g_dir, sizeof(g_dir), "/tmp/ferry-test-pg-claim-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    char *key = xasprintf("%s/ferry.key", g_dir);
    struct seal_key k;
    for (size_t i = 0; i < sizeof(k.bytes); i++)
        k.bytes[i] = (unsigned char)(0x5a ^ (i * 7));
    seal_key_set_id(&k);
    ok = seal_key_write(key, &k, NULL, 0) == 0 && setenv("CREDENTIALS_DIRECTORY", g_dir, 1) == 0;
    free(key);
    return ok ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char *key = xasprintf("%s/ferry.key", g_dir);
    unlink(key);
    free(key);
    rmdir(g_dir);
    const char *admin = getenv("FERRY_TEST_PG_ADMIN_URL");
    const char *db = strrchr(g_url, '/');
    if (admin != NULL && db != NULL) {
        PGconn *c = connect_quietly(admin);
        char *sql = xasprintf("DROP DATABASE IF EXISTS %.*s", (int)strcspn(db + 1, "?"), db + 1);
        PQclear(PQexec(c, sql));
        free(sql);
        PQfinish(c);
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_claim_idle_and_busy)};
    return cmocka_run_group_tests_name("store_pg_claim", tests, setup, teardown);
}
