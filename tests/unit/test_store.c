/*
 * The store conformance suite: every store operation, run against every driver.
 *
 * The suite runs once against a fresh SQLite file, and once more against PostgreSQL when
 * FERRY_TEST_PG_URL names a database. Tests never assume an empty store: each one creates
 * its own region, bridges, teams and machines under fresh random names and filters by
 * them, so the same suite runs unchanged on a shared server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sqlite3.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "queue.h"
#include "seal.h"
#include "store.h"
#include "util.h"

#include "store_suite.h"

static const char *g_url; /* the store under test */
static char g_dir[64];    /* scratch directory for SQLite files */

struct fx {
    store *s;
    char region[64], bridge[64], bridge2[64], team[64], team2[64];
    char m1[64], m2[64], m3[64], mx[64]; /* m1, m2 on bridge; m3 on bridge2; mx of team2 */
    char owner[64];                      /* this test's host, the lease owner of its claims */
    int64_t t0;
};

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (j == NULL)
        fail_msg("bad test JSON %s: %s", text, e.text);
    return j;
}

static int is_sqlite(const struct fx *f)
{
    return strcmp(store_driver_name(f->s), "sqlite") == 0;
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
    fresh_name(f->bridge2, sizeof(f->bridge2), "b2");
    fresh_name(f->team, sizeof(f->team), "t");
    fresh_name(f->team2, sizeof(f->team2), "t2");
    fresh_name(f->m1, sizeof(f->m1), "m1");
    fresh_name(f->m2, sizeof(f->m2), "m2");
    fresh_name(f->m3, sizeof(f->m3), "m3");
    fresh_name(f->mx, sizeof(f->mx), "mx");
    fresh_name(f->owner, sizeof(f->owner), "host");
    int rc = store_region_create(f->s, f->region, NULL, NULL, err, sizeof(err));
    rc = rc ? rc : store_bridge_create(f->s, f->region, f->bridge, NULL, NULL, err, sizeof(err));
    rc = rc ? rc : store_bridge_create(f->s, f->region, f->bridge2, NULL, NULL, err, sizeof(err));
    rc = rc ? rc : store_team_create(f->s, f->team, NULL, NULL, err, sizeof(err));
    rc = rc ? rc : store_team_create(f->s, f->team2, NULL, NULL, err, sizeof(err));
    rc = rc ? rc
            : store_machine_create(f->s, f->team, f->bridge, f->m1, NULL, NULL, err, sizeof(err));
    rc = rc ? rc
            : store_machine_create(f->s, f->team, f->bridge, f->m2, NULL, NULL, err, sizeof(err));
    rc = rc ? rc
            : store_machine_create(f->s, f->team, f->bridge2, f->m3, NULL, NULL, err, sizeof(err));
    rc = rc ? rc
            : store_machine_create(f->s, f->team2, f->bridge, f->mx, NULL, NULL, err, sizeof(err));
    if (rc != STORE_OK) {
        print_error("fixture: %s\n", err);
        store_close(f->s);
        free(f);
        return -1;
    }
    f->t0 = now_ms() - 3600 * 1000; /* an hour ago, so tests can step time forward */
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

/* Creates an item of f->team on machine/bridge created at t0 + at_ms. */
static void item_full(struct fx *f, const char *machine, const char *bridge, int priority,
                      int64_t at_ms, const char *const *after, size_t n_after, char id[37])
{
    char err[512];
    json_t *vault = J("{\"function\":\"noop\",\"x\":1}");
    struct store_item_spec sp = {.team = f->team,
                                 .machine = machine,
                                 .bridge = bridge,
                                 .priority = priority,
                                 .vault = vault,
                                 .after = after,
                                 .n_after = n_after,
                                 .now_ms = f->t0 + at_ms};
    assert_rc(STORE_OK, store_queue_create(f->s, &sp, id, NULL, err, sizeof(err)));
    json_decref(vault);
}

static void item(struct fx *f, const char *machine, int priority, int64_t at_ms, char id[37])
{
    item_full(f, machine, f->bridge, priority, at_ms, NULL, 0, id);
}

static json_t *get(struct fx *f, const char *id)
{
    char err[512];
    json_t *row = NULL;
    assert_rc(STORE_OK, store_queue_get(f->s, id, &row, err, sizeof(err)));
    return row;
}

static void assert_status(struct fx *f, const char *id, const char *status)
{
    json_t *row = get(f, id);
    if (strcmp(jstr(row, "status"), status) != 0)
        fail_msg("task %s is %s, expected %s", id, jstr(row, "status"), status);
    json_decref(row);
}

/* Claims on f->bridge at t0 + at_ms and returns the array. */
static json_t *claim(struct fx *f, const char *bridge, int max_n, int64_t at_ms)
{
    char err[512];
    json_t *items = NULL;
    assert_rc(STORE_OK, store_claim(f->s, bridge, f->owner, 30000, max_n, f->t0 + at_ms, &items,
                                    err, sizeof(err)));
    return items;
}

static const char *claimed_id(json_t *items, size_t i)
{
    return jstr(json_array_get(items, i), "taskId");
}

static const char *token_of(json_t *items, size_t i)
{
    return jstr(json_array_get(items, i), "claimToken");
}

static void finish(struct fx *f, const char *id, const char *token, enum store_outcome_kind k,
                   int64_t at_ms, int expected)
{
    char err[512];
    struct store_outcome o = {.kind = k, .reason = "test says so"};
    assert_rc(expected, store_finish(f->s, id, token, &o, f->t0 + at_ms, err, sizeof(err)));
}

/* ---- opening and migrations --------------------------------------------------------------- */

static void test_migrations_recorded(void **state)
{
    struct fx *f = *state;
    char err[512];
    json_t *rows = NULL, *again = NULL;
    assert_rc(STORE_OK, store_migrations(f->s, &rows, err, sizeof(err)));
    assert_true(json_array_size(rows) >= 1);
    assert_int_equal(jint(json_array_get(rows, 0), "version"), 1);
    assert_non_null(jstr(json_array_get(rows, 0), "appliedTime"));
    store *s2 = store_open(g_url, err, sizeof(err));
    assert_non_null(s2);
    assert_rc(STORE_OK, store_migrations(s2, &again, err, sizeof(err)));
    assert_true(json_equal(rows, again)); /* reopening applied nothing twice */
    store_close(s2);
    json_decref(rows);
    json_decref(again);
}

static void test_open_errors(void **state)
{
    struct fx *f = *state;
    char err[512] = "";
    (void)f;
    assert_null(store_open("", err, sizeof(err)));
    assert_true(strlen(err) > 0);
    err[0] = '\0';
    assert_null(store_open("/dev/null/ferry.db", err, sizeof(err)));
    assert_non_null(strstr(err, "/dev/null"));
    err[0] = '\0';
    assert_null(
        store_open("postgres://127.0.0.1:1/ferry_nowhere?connect_timeout=2", err, sizeof(err)));
    assert_true(strlen(err) > 0);
    assert_null(store_open("", NULL, 0)); /* err may be NULL */
}

static void test_concurrent_fresh_open(void **state)
{
    struct fx *f = *state;
    char err[512], path[128];
    if (!is_sqlite(f))
        skip();
    snprintf(path, sizeof(path), "%s/fresh-%d/sub/store.db", g_dir, (int)getpid());
    pid_t kids[4];
    for (int i = 0; i < 4; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            store *s = store_open(path, err, sizeof(err));
            if (s == NULL)
                fprintf(stderr, "child open: %s\n", err);
            store_close(s);
            _exit(s ? 0 : 1);
        }
    }
    for (int i = 0; i < 4; i++) {
        int status = 0;
        waitpid(kids[i], &status, 0);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    store *s = store_open(path, err, sizeof(err));
    assert_non_null(s);
    json_t *mine = NULL, *theirs = NULL;
    assert_rc(STORE_OK, store_migrations(s, &mine, err, sizeof(err)));
    assert_rc(STORE_OK, store_migrations(f->s, &theirs, err, sizeof(err)));
    assert_int_equal(json_array_size(mine), json_array_size(theirs));
    json_decref(mine);
    json_decref(theirs);
    store_close(s);
}

/* Runs SQL on the SQLite store at path, outside the store's API. */
/* The integer a query of the SQLite store at path returns. */
static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* What undoes migration 5 (users, tokens, the audit log, events' actor) on SQLite, for the
 * tests that rebuild an older store by hand. */
#define UNDO_MIGRATION_5                                                                           \
    "DROP TABLE audit_log; DROP TABLE tokens; DROP TABLE users;"                                   \
    "ALTER TABLE queue_events DROP COLUMN actor;"

/* The newest schema version, as the fixture's fresh store has it. */
static int64_t latest_version(struct fx *f)
{
    json_t *rows = NULL;
    char err[512];
    assert_rc(STORE_OK, store_migrations(f->s, &rows, err, sizeof(err)));
    int64_t v = jint(json_array_get(rows, json_array_size(rows) - 1), "version");
    json_decref(rows);
    return v;
}

/* A store made by a ferry of schema version 1 (migration 2 undone by hand, an item claimed
 * and started the way version 1 wrote it: two event rows) is brought to the latest
 * version when opened: the old trace reads as it did, and a new claim writes the new way
 * and reads the same. */
static void test_upgrade_from_v1(void **state)
{
    struct fx *f = *state;
    char err[512], path[128], a[37], b[37];
    if (!is_sqlite(f))
        skip();
    snprintf(path, sizeof(path), "%s/upgrade-%d.db", g_dir, (int)getpid());
    store *s = store_open(path, err, sizeof(err));
    assert_non_null(s);
    struct fx g = *f;
    g.s = s;
    assert_rc(STORE_OK, store_region_create(s, f->region, NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_bridge_create(s, f->region, f->bridge, NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_team_create(s, f->team, NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK,
              store_machine_create(s, f->team, f->bridge, f->m1, NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK,
              store_machine_create(s, f->team, f->bridge, f->m2, NULL, NULL, err, sizeof(err)));
    item(&g, f->m1, 3, 0, a);
    store_close(s);
    raw_sql(path, UNDO_MIGRATION_5 "ALTER TABLE queue_events DROP COLUMN started_attempt;"
                  "DROP INDEX qi_parent; DROP TABLE machine_groups;"
                  "DELETE FROM schema_migrations WHERE version >= 2;"
                  "UPDATE queue_items SET status = 'PROCESSING', started_at = 5, assigned_at = 5;"
                  "INSERT INTO queue_events (task_seq, action, details, at) SELECT seq,"
                  " 'ASSIGNED', 'claimed by h for attempt 1, lease until x', 5 FROM queue_items;"
                  "INSERT INTO queue_events (task_seq, action, details, at) SELECT seq,"
                  " 'PROCESSING', 'attempt 1 started', 5 FROM queue_items;");
    s = store_open(path, err, sizeof(err));
    assert_non_null(s);
    g.s = s;
    json_t *rows = NULL, *events = NULL;
    assert_rc(STORE_OK, store_migrations(s, &rows, err, sizeof(err)));
    assert_int_equal(jint(json_array_get(rows, json_array_size(rows) - 1), "version"),
                     latest_version(f));
    json_decref(rows);
    assert_rc(STORE_OK, store_event_list(s, a, &events, err, sizeof(err)));
    assert_int_equal(json_array_size(events), 3);
    assert_string_equal(jstr(json_array_get(events, 1), "action"), "ASSIGNED");
    assert_string_equal(jstr(json_array_get(events, 2), "action"), "PROCESSING");
    assert_string_equal(jstr(json_array_get(events, 2), "details"), "attempt 1 started");
    json_decref(events);
    /* A new claim and start: one row, read as two. */
    item(&g, f->m2, 3, 10, b);
    struct store_item *items = NULL;
    size_t n = 0;
    assert_rc(STORE_OK, store_claim_items(s, f->bridge, f->owner, 30000, 5, 1, f->t0 + 100,
                                          &items, &n, err, sizeof(err)));
    assert_int_equal(n, 1);
    store_items_free(items, n);
    assert_rc(STORE_OK, store_event_list(s, b, &events, err, sizeof(err)));
    assert_int_equal(json_array_size(events), 3);
    assert_string_equal(jstr(json_array_get(events, 2), "details"), "attempt 1 started");
    json_decref(events);
    store_close(s);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM queue_events e JOIN queue_items q"
                                   " ON q.seq = e.task_seq WHERE q.machine_name LIKE 'm2-%'"),
                     2); /* CREATED, and the claim with its start */
}

/* ---- resources ---------------------------------------------------------------------------- */

static void test_team_crud(void **state)
{
    struct fx *f = *state;
    char err[512], name[64];
    json_t *row = NULL, *rows = NULL, *vault = J("{\"owner\":\"ops\"}");
    fresh_name(name, sizeof(name), "Team");
    assert_rc(STORE_OK, store_team_create(f->s, name, vault, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "teamName"), name);
    assert_int_equal(jint(row, "vaultVersion"), 1);
    assert_string_equal(jstr(json_object_get(row, "vault"), "owner"), "ops");
    assert_non_null(jstr(row, "createdTime"));
    json_decref(row);
    assert_rc(STORE_CONFLICT, store_team_create(f->s, name, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "already exists"));
    assert_rc(STORE_OK, store_resource_get(f->s, STORE_TEAM, NULL, name, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "teamName"), name);
    json_decref(row);
    assert_rc(STORE_OK, store_resource_list(f->s, STORE_TEAM, NULL, &rows, err, sizeof(err)));
    size_t i, found = 0;
    json_array_foreach (rows, i, row)
        found += strcmp(jstr(row, "teamName"), name) == 0;
    assert_int_equal(found, 1);
    json_decref(rows);
    /* Names are case-sensitive. */
    name[0] = 't';
    assert_rc(STORE_NOT_FOUND,
              store_resource_get(f->s, STORE_TEAM, NULL, name, &row, err, sizeof(err)));
    assert_non_null(strstr(err, "ferry create team"));
    name[0] = 'T';
    assert_rc(STORE_OK, store_resource_delete(f->s, STORE_TEAM, NULL, name, err, sizeof(err)));
    assert_rc(STORE_NOT_FOUND,
              store_resource_delete(f->s, STORE_TEAM, NULL, name, err, sizeof(err)));
    json_decref(vault);
}

static void test_region_bridge(void **state)
{
    struct fx *f = *state;
    char err[512], region[64], bridge[64];
    json_t *row = NULL, *rows = NULL;
    fresh_name(region, sizeof(region), "region");
    fresh_name(bridge, sizeof(bridge), "bridge");
    assert_rc(STORE_NOT_FOUND,
              store_bridge_create(f->s, region, bridge, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "ferry create region"));
    assert_rc(STORE_OK, store_region_create(f->s, region, NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_bridge_create(f->s, region, bridge, NULL, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "regionName"), region);
    assert_string_equal(jstr(row, "bridgeName"), bridge);
    json_decref(row);
    assert_rc(STORE_CONFLICT,
              store_bridge_create(f->s, region, bridge, NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_resource_list(f->s, STORE_BRIDGE, region, &rows, err, sizeof(err)));
    assert_int_equal(json_array_size(rows), 1);
    json_decref(rows);
    assert_rc(STORE_OK, store_resource_list(f->s, STORE_REGION, NULL, &rows, err, sizeof(err)));
    assert_true(json_array_size(rows) >= 2);
    json_decref(rows);
    assert_rc(STORE_CONFLICT,
              store_resource_delete(f->s, STORE_REGION, NULL, region, err, sizeof(err)));
    assert_non_null(strstr(err, bridge));
    assert_rc(STORE_OK, store_resource_delete(f->s, STORE_BRIDGE, NULL, bridge, err, sizeof(err)));
    assert_rc(STORE_OK, store_resource_delete(f->s, STORE_REGION, NULL, region, err, sizeof(err)));
}

static void test_machine(void **state)
{
    struct fx *f = *state;
    char err[512], name[64], missing[64];
    json_t *row = NULL, *rows = NULL;
    json_t *vault = J("{\"ip\":\"10.0.0.5\",\"user\":\"ops\",\"ssh_port\":22}");
    fresh_name(name, sizeof(name), "web");
    fresh_name(missing, sizeof(missing), "nobody");
    assert_rc(STORE_NOT_FOUND,
              store_machine_create(f->s, missing, f->bridge, name, vault, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no team named"));
    assert_non_null(strstr(err, "ferry create team"));
    assert_rc(STORE_NOT_FOUND,
              store_machine_create(f->s, f->team, missing, name, vault, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no bridge named"));
    assert_rc(STORE_OK,
              store_machine_create(f->s, f->team, f->bridge, name, vault, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "machineName"), name);
    assert_string_equal(jstr(row, "teamName"), f->team);
    assert_string_equal(jstr(row, "bridgeName"), f->bridge);
    assert_string_equal(jstr(row, "regionName"), f->region);
    assert_int_equal(jint(json_object_get(row, "vault"), "ssh_port"), 22);
    json_decref(row);
    /* Unique across teams. */
    assert_rc(STORE_CONFLICT,
              store_machine_create(f->s, f->team2, f->bridge, name, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, f->team));
    /* Get without a team finds it; with another team it is refused by name. */
    assert_rc(STORE_OK,
              store_resource_get(f->s, STORE_MACHINE, NULL, name, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "bridgeName"), f->bridge);
    json_decref(row);
    assert_rc(STORE_NOT_FOUND,
              store_resource_get(f->s, STORE_MACHINE, f->team2, name, &row, err, sizeof(err)));
    assert_non_null(strstr(err, "belongs to team"));
    assert_rc(STORE_OK, store_resource_list(f->s, STORE_MACHINE, f->team, &rows, err, sizeof(err)));
    assert_int_equal(json_array_size(rows), 4); /* m1, m2, m3 and this one */
    json_decref(rows);
    assert_rc(STORE_NOT_FOUND,
              store_resource_list(f->s, STORE_MACHINE, missing, &rows, err, sizeof(err)));
    /* Move it. */
    assert_rc(STORE_OK,
              store_machine_set_bridge(f->s, f->team, name, f->bridge2, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "bridgeName"), f->bridge2);
    json_decref(row);
    assert_rc(STORE_NOT_FOUND,
              store_machine_set_bridge(f->s, f->team, name, missing, NULL, err, sizeof(err)));
    assert_rc(STORE_OK,
              store_resource_delete(f->s, STORE_MACHINE, f->team, name, err, sizeof(err)));
    json_decref(vault);
}

static void test_storage_schedule(void **state)
{
    struct fx *f = *state;
    char err[512];
    json_t *row = NULL, *rows = NULL;
    json_t *sv = J("{\"provider\":\"s3\",\"secret_key\":\"k\"}");
    json_t *cv = J("{\"cron\":\"0 2 * * *\",\"machine\":\"app-01\",\"queue_config\":"
                   "{\"function\":\"repo_push\",\"retention_days\":30}}");
    assert_rc(STORE_OK,
              store_storage_create(f->s, f->team, "s3-backups", sv, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "storageName"), "s3-backups");
    assert_string_equal(jstr(row, "teamName"), f->team);
    json_decref(row);
    /* The same storage name in another team is another storage. */
    assert_rc(STORE_OK,
              store_storage_create(f->s, f->team2, "s3-backups", sv, NULL, err, sizeof(err)));
    assert_rc(STORE_CONFLICT,
              store_storage_create(f->s, f->team, "s3-backups", sv, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_resource_list(f->s, STORE_STORAGE, f->team, &rows, err, sizeof(err)));
    assert_int_equal(json_array_size(rows), 1);
    json_decref(rows);
    assert_rc(STORE_NOT_FOUND,
              store_resource_get(f->s, STORE_STORAGE, f->team, "nope", &row, err, sizeof(err)));
    assert_non_null(strstr(err, "ferry create storage"));

    assert_rc(STORE_OK, store_schedule_create(f->s, f->team, "daily", cv, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "scheduleName"), "daily");
    assert_string_equal(jstr(row, "cron"), "0 2 * * *");
    assert_string_equal(jstr(row, "timezone"), "UTC");
    assert_string_equal(jstr(row, "machine"), "app-01");
    assert_true(json_is_true(json_object_get(row, "enabled")));
    assert_true(json_is_null(json_object_get(row, "nextRun")));
    assert_true(json_is_null(json_object_get(row, "lastTaskId")));
    assert_true(json_equal(json_object_get(row, "vaultContent"), cv));
    json_decref(row);
    assert_rc(STORE_OK,
              store_schedule_set_run(f->s, f->team, "daily", f->t0 + 60000, f->t0,
                                     "550e8400-e29b-41d4-a716-446655440000", err, sizeof(err)));
    assert_rc(STORE_OK,
              store_resource_list(f->s, STORE_SCHEDULE, f->team, &rows, err, sizeof(err)));
    assert_int_equal(json_array_size(rows), 1);
    row = json_array_get(rows, 0);
    assert_non_null(jstr(row, "nextRun"));
    assert_non_null(jstr(row, "lastRun"));
    assert_string_equal(jstr(row, "lastTaskId"), "550e8400-e29b-41d4-a716-446655440000");
    assert_int_equal(jint(row, "vaultVersion"), 1);
    json_decref(rows);
    assert_rc(STORE_NOT_FOUND,
              store_schedule_set_run(f->s, f->team, "weekly", 0, 0, NULL, err, sizeof(err)));
    assert_rc(STORE_OK,
              store_resource_delete(f->s, STORE_SCHEDULE, f->team, "daily", err, sizeof(err)));
    assert_rc(STORE_OK,
              store_resource_delete(f->s, STORE_STORAGE, f->team, "s3-backups", err, sizeof(err)));
    assert_rc(STORE_OK,
              store_resource_delete(f->s, STORE_STORAGE, f->team2, "s3-backups", err, sizeof(err)));
    json_decref(sv);
    json_decref(cv);
}

static void test_vault_versions(void **state)
{
    struct fx *f = *state;
    char err[512];
    json_t *row = NULL;
    json_t *v = J("{\"cron\":\"0 3 * * 0\",\"timezone\":\"UTC\",\"machine\":\"m\","
                  "\"queue_config\":{\"function\":\"repo_push\",\"compression\":\"high\"}}");
    json_t *disable = J("{\"enabled\":false,\"disabled_reason\":\"Maintenance window\"}");
    json_t *retime = J("{\"cron\":\"0 4 * * 0\",\"timezone\":\"America/New_York\","
                       "\"queue_config\":{\"compression\":null}}");
    json_t *replace = J("{\"cron\":\"@daily\"}");
    assert_rc(STORE_OK, store_schedule_create(f->s, f->team, "weekly", v, NULL, err, sizeof(err)));
    assert_rc(STORE_OK,
              store_resource_update_vault(f->s, STORE_SCHEDULE, f->team, "weekly", disable, 1,
                                          STORE_VAULT_MERGE, &row, err, sizeof(err)));
    assert_int_equal(jint(row, "vaultVersion"), 2);
    assert_false(json_is_true(json_object_get(row, "enabled")));
    assert_string_equal(jstr(row, "cron"), "0 3 * * 0"); /* the rest survived */
    json_decref(row);
    /* A stale version is refused and changes nothing. */
    assert_rc(STORE_CONFLICT,
              store_resource_update_vault(f->s, STORE_SCHEDULE, f->team, "weekly", retime, 1,
                                          STORE_VAULT_MERGE, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "vault version is 2, not 1; re-read and retry"));
    assert_rc(STORE_OK, store_resource_update_vault(f->s, STORE_SCHEDULE, f->team, "weekly", retime,
                                                    -1, STORE_VAULT_MERGE, &row, err, sizeof(err)));
    assert_int_equal(jint(row, "vaultVersion"), 3);
    assert_string_equal(jstr(row, "timezone"), "America/New_York");
    json_t *qc = json_object_get(json_object_get(row, "vault"), "queue_config");
    assert_null(json_object_get(qc, "compression")); /* null removes (RFC 7396) */
    assert_string_equal(jstr(qc, "function"), "repo_push");
    assert_false(json_is_true(json_object_get(row, "enabled")));
    json_decref(row);
    assert_rc(STORE_OK,
              store_resource_update_vault(f->s, STORE_SCHEDULE, f->team, "weekly", replace, 3,
                                          STORE_VAULT_REPLACE, &row, err, sizeof(err)));
    assert_true(json_equal(json_object_get(row, "vault"), replace));
    assert_int_equal(jint(row, "vaultVersion"), 4);
    json_decref(row);
    /* Every kind has a vault; a machine's concurrency is checked on update. */
    json_t *bad = J("{\"concurrency\":0}");
    assert_rc(STORE_ERROR, store_resource_update_vault(f->s, STORE_MACHINE, f->team, f->m1, bad, -1,
                                                       STORE_VAULT_MERGE, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "concurrency"));
    assert_rc(STORE_OK, store_resource_update_vault(f->s, STORE_TEAM, NULL, f->team, replace, 1,
                                                    STORE_VAULT_REPLACE, &row, err, sizeof(err)));
    assert_int_equal(jint(row, "vaultVersion"), 2);
    json_decref(row);
    assert_rc(STORE_NOT_FOUND, store_resource_update_vault(f->s, STORE_STORAGE, f->team, "none",
                                                           replace, -1, 0, NULL, err, sizeof(err)));
    json_decref(bad);
    json_decref(v);
    json_decref(disable);
    json_decref(retime);
    json_decref(replace);
}

static void test_delete_refused(void **state)
{
    struct fx *f = *state;
    char err[512], id[37];
    assert_rc(STORE_OK,
              store_storage_create(f->s, f->team, "store1", NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_CONFLICT,
              store_resource_delete(f->s, STORE_TEAM, NULL, f->team, err, sizeof(err)));
    assert_non_null(strstr(err, "machines"));
    assert_non_null(strstr(err, f->m1));
    assert_non_null(strstr(err, "storages store1"));
    for (int i = 2; i <= 6; i++) {
        char name[32];
        snprintf(name, sizeof(name), "store%d", i);
        assert_rc(STORE_OK,
                  store_storage_create(f->s, f->team, name, NULL, NULL, err, sizeof(err)));
    }
    assert_rc(STORE_CONFLICT,
              store_resource_delete(f->s, STORE_TEAM, NULL, f->team, err, sizeof(err)));
    assert_non_null(strstr(err, "store5 and 1 more"));
    assert_rc(STORE_CONFLICT,
              store_resource_delete(f->s, STORE_BRIDGE, NULL, f->bridge, err, sizeof(err)));
    assert_non_null(strstr(err, f->m1));
    /* A machine with unfinished work stays. */
    item(f, f->m2, 3, 0, id);
    assert_rc(STORE_CONFLICT,
              store_resource_delete(f->s, STORE_MACHINE, f->team, f->m2, err, sizeof(err)));
    assert_non_null(strstr(err, id));
    assert_rc(STORE_OK, store_queue_cancel(f->s, id, 0, NULL, err, sizeof(err)));
    assert_rc(STORE_OK,
              store_resource_delete(f->s, STORE_MACHINE, f->team, f->m2, err, sizeof(err)));
    /* Its history remains readable. */
    assert_status(f, id, "CANCELLED");
}

static void test_invalid_input(void **state)
{
    struct fx *f = *state;
    char err[512];
    json_t *arr = J("[1,2]");
    json_t *conc = J("{\"concurrency\":\"two\"}");
    const char *bad[] = {"", "has space", "quote'd", "semi;colon", "ünï", "-dash"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_rc(STORE_ERROR, store_team_create(f->s, bad[i], NULL, NULL, err, sizeof(err)));
        assert_non_null(strstr(err, "invalid name"));
    }
    assert_rc(STORE_ERROR, store_team_create(f->s, "ok-name", arr, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "JSON object"));
    assert_rc(STORE_ERROR,
              store_machine_create(f->s, f->team, f->bridge, "c1", conc, NULL, err, sizeof(err)));
    /* Lookups with hostile names fail cleanly too. */
    json_t *row = NULL;
    assert_rc(STORE_ERROR,
              store_resource_get(f->s, STORE_TEAM, NULL, "x' OR '1'='1", &row, err, sizeof(err)));
    assert_null(row);
    json_decref(arr);
    json_decref(conc);
}

/* ---- queue items: create, read ------------------------------------------------------------ */

static void test_queue_create_row(void **state)
{
    struct fx *f = *state;
    char err[512], id[37];
    json_t *row = NULL, *events = NULL;
    json_t *vault = J("{\"function\":\"repo_push\",\"repository\":\"webapp\","
                      "\"password\":\"hunter2\",\"description\":\"it's \\\"quoted\\\"\"}");
    struct store_item_spec sp = {.team = f->team,
                                 .machine = f->m1,
                                 .bridge = f->bridge,
                                 .priority = 2,
                                 .vault = vault,
                                 .idempotent = 1};
    assert_rc(STORE_OK, store_queue_create(f->s, &sp, id, &row, err, sizeof(err)));
    assert_int_equal(strlen(id), 36);
    assert_string_equal(jstr(row, "taskId"), id);
    assert_string_equal(jstr(row, "status"), "PENDING");
    assert_string_equal(jstr(row, "healthStatus"), "PENDING");
    assert_int_equal(jint(row, "priority"), 2);
    assert_string_equal(jstr(row, "priorityLabel"), "High");
    assert_string_equal(jstr(row, "function"), "repo_push");
    assert_string_equal(jstr(row, "teamName"), f->team);
    assert_string_equal(jstr(row, "machineName"), f->m1);
    assert_string_equal(jstr(row, "bridgeName"), f->bridge);
    assert_string_equal(jstr(row, "createdTime"), jstr(row, "createdDate"));
    assert_true(json_is_null(json_object_get(row, "assignedTime")));
    assert_int_equal(jint(row, "ageInMinutes"), 0);
    assert_int_equal(jint(row, "retryCount"), 0);
    assert_true(json_is_null(json_object_get(row, "lastFailureReason")));
    assert_true(json_is_true(json_object_get(row, "canBeCancelled")));
    assert_true(json_is_false(json_object_get(row, "hasResponse")));
    assert_true(json_is_number(json_object_get(row, "totalDurationSeconds")));
    assert_true(json_is_null(json_object_get(row, "processingDurationSeconds")));
    /* Secrets are sealed at rest: a row shows them sealed until a caller opens them. */
    assert_string_equal(jstr(json_object_get(row, "vaultContent"), "repository"), "webapp");
    assert_true(seal_is_sealed(jstr(json_object_get(row, "vaultContent"), "password")));
    assert_rc(STORE_OK, store_item_reveal(f->s, row, err, sizeof(err)));
    assert_true(json_equal(json_object_get(row, "vaultContent"), vault));
    assert_true(json_is_null(json_object_get(row, "responseVault")));
    assert_true(json_is_array(json_object_get(row, "after")));
    assert_true(json_is_true(json_object_get(row, "idempotent")));
    assert_null(json_object_get(row, "claimToken")); /* tokens only go to hosts */
    json_decref(row);
    assert_rc(STORE_OK, store_event_list(f->s, id, &events, err, sizeof(err)));
    assert_int_equal(json_array_size(events), 1);
    assert_string_equal(jstr(json_array_get(events, 0), "action"), "CREATED");
    json_decref(events);
    /* The default priority is 3 (Normal), and the function may be given apart. */
    struct store_item_spec sp2 = {
        .team = f->team, .machine = f->m1, .bridge = f->bridge, .function = "hello"};
    assert_rc(STORE_OK, store_queue_create(f->s, &sp2, id, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "priorityLabel"), "Normal");
    assert_string_equal(jstr(row, "function"), "hello");
    json_decref(row);
    json_decref(vault);
}

static int count_team_items(struct fx *f)
{
    char err[512];
    json_t *rows = NULL;
    const char *teams[] = {f->team};
    struct store_queue_filter flt = {.teams = teams, .n_teams = 1, .max_records = 10000};
    assert_rc(STORE_OK, store_queue_list(f->s, &flt, &rows, err, sizeof(err)));
    int n = (int)json_array_size(rows);
    json_decref(rows);
    return n;
}

static void test_queue_create_refs(void **state)
{
    struct fx *f = *state;
    char err[512], id[37];
    json_t *v = J("{\"function\":\"noop\"}");
    json_t *nofn = J("{\"repository\":\"x\"}");
    struct store_item_spec sp = {
        .team = f->team, .machine = f->m1, .bridge = f->bridge, .vault = v};
    struct store_item_spec s;
    s = sp, s.team = "ghost-team";
    assert_rc(STORE_NOT_FOUND, store_queue_create(f->s, &s, id, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no team named 'ghost-team'; create it with: ferry create team "
                                "ghost-team"));
    s = sp, s.machine = "ghost-machine";
    assert_rc(STORE_NOT_FOUND, store_queue_create(f->s, &s, id, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no machine named 'ghost-machine'"));
    s = sp, s.machine = f->mx; /* of team2 */
    assert_rc(STORE_NOT_FOUND, store_queue_create(f->s, &s, id, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "belongs to team"));
    s = sp, s.bridge = "ghost-bridge";
    assert_rc(STORE_NOT_FOUND, store_queue_create(f->s, &s, id, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no bridge named"));
    s = sp, s.priority = 6;
    assert_rc(STORE_ERROR, store_queue_create(f->s, &s, id, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "priority must be 1-5"));
    s = sp, s.priority = -1;
    assert_rc(STORE_ERROR, store_queue_create(f->s, &s, id, NULL, err, sizeof(err)));
    s = sp, s.vault = nofn;
    assert_rc(STORE_ERROR, store_queue_create(f->s, &s, id, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "function"));
    const char *ghost[] = {"00000000-0000-4000-8000-000000000000"};
    s = sp, s.after = ghost, s.n_after = 1;
    assert_rc(STORE_NOT_FOUND, store_queue_create(f->s, &s, id, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "dependency"));
    const char *junk[] = {"not-a-task!"};
    s = sp, s.after = junk, s.n_after = 1;
    assert_rc(STORE_NOT_FOUND, store_queue_create(f->s, &s, id, NULL, err, sizeof(err)));
    s = sp, s.link_kind = "sideways";
    assert_rc(STORE_ERROR, store_queue_create(f->s, &s, id, NULL, err, sizeof(err)));
    s = sp, s.parent_task_id = ghost[0], s.link_kind = "retry";
    assert_rc(STORE_NOT_FOUND, store_queue_create(f->s, &s, id, NULL, err, sizeof(err)));
    assert_int_equal(count_team_items(f), 0); /* nothing half-written */
    json_decref(v);
    json_decref(nofn);
}

static void test_queue_prefix(void **state)
{
    struct fx *f = *state;
    char err[512], ids[20][37];
    json_t *row = NULL;
    /* 20 ids over 16 hex digits: two share a first character. */
    for (int i = 0; i < 20; i++)
        item(f, f->m1, 3, i, ids[i]);
    int a = -1, b = -1;
    for (int i = 0; i < 20 && a < 0; i++)
        for (int j = i + 1; j < 20 && a < 0; j++)
            if (ids[i][0] == ids[j][0])
                a = i, b = j;
    assert_true(a >= 0);
    char one[2] = {ids[a][0], 0};
    (void)b;
    /* Other tests' items may share the prefix too: ambiguous either way. */
    assert_rc(STORE_AMBIGUOUS, store_queue_get(f->s, one, &row, err, sizeof(err)));
    assert_non_null(strstr(err, "matches several"));
    assert_null(row);
    char prefix[13];
    snprintf(prefix, sizeof(prefix), "%.12s", ids[a]);
    assert_rc(STORE_OK, store_queue_get(f->s, prefix, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "taskId"), ids[a]);
    json_decref(row);
    /* Upper case works; a non-hex id is simply not found. */
    char upper[37];
    for (int i = 0; i < 37; i++)
        upper[i] = (char)(ids[a][i] >= 'a' && ids[a][i] <= 'f' ? ids[a][i] - 32 : ids[a][i]);
    assert_rc(STORE_OK, store_queue_get(f->s, upper, &row, err, sizeof(err)));
    json_decref(row);
    assert_rc(STORE_NOT_FOUND, store_queue_get(f->s, "zzzz", &row, err, sizeof(err)));
    assert_rc(STORE_NOT_FOUND, store_queue_get(f->s, "00000000-0000-4000-8000-000000000000", &row,
                                               err, sizeof(err)));
    assert_non_null(strstr(err, "no queue item"));
}

/* ---- queue items: list -------------------------------------------------------------------------
 */

static int list_count(struct fx *f, struct store_queue_filter *flt)
{
    char err[512];
    json_t *rows = NULL;
    const char *teams[] = {f->team};
    if (flt->n_teams == 0)
        flt->teams = teams, flt->n_teams = 1;
    assert_rc(STORE_OK, store_queue_list(f->s, flt, &rows, err, sizeof(err)));
    int n = (int)json_array_size(rows);
    json_decref(rows);
    return n;
}

static void test_list_filters(void **state)
{
    struct fx *f = *state;
    char err[512], ids[6][37];
    /* Six items: priorities 1..5 and 3, a minute apart, on m1, m2, m3. */
    item(f, f->m1, 1, 0, ids[0]);
    item(f, f->m1, 2, 60000, ids[1]);
    item(f, f->m2, 3, 120000, ids[2]);
    item(f, f->m2, 4, 180000, ids[3]);
    item_full(f, f->m3, f->bridge2, 5, 240000, NULL, 0, ids[4]);
    item(f, f->m1, 3, 300000, ids[5]);
    /* Complete ids[0], cancel ids[3]. */
    json_t *got = claim(f, f->bridge, 1, 400000);
    assert_string_equal(claimed_id(got, 0), ids[0]);
    finish(f, ids[0], token_of(got, 0), STORE_OUTCOME_COMPLETED, 400001, STORE_OK);
    json_decref(got);
    assert_rc(STORE_OK, store_queue_cancel(f->s, ids[3], 0, NULL, err, sizeof(err)));

    json_t *rows = NULL;
    const char *teams[] = {f->team};
    struct store_queue_filter all = {.teams = teams, .n_teams = 1};
    assert_rc(STORE_OK, store_queue_list(f->s, &all, &rows, err, sizeof(err)));
    assert_int_equal(json_array_size(rows), 6);
    for (int i = 0; i < 6; i++) /* newest first */
        assert_string_equal(jstr(json_array_get(rows, (size_t)i), "taskId"), ids[5 - i]);
    json_decref(rows);

    struct store_queue_filter flt;
    flt = (struct store_queue_filter){.machine = f->m1};
    assert_int_equal(list_count(f, &flt), 3);
    flt = (struct store_queue_filter){.bridge = f->bridge2};
    assert_int_equal(list_count(f, &flt), 1);
    const char *pc[] = {"PENDING", "CANCELLED"};
    flt = (struct store_queue_filter){.statuses = pc, .n_statuses = 2};
    assert_int_equal(list_count(f, &flt), 5);
    flt = (struct store_queue_filter){.priority = 3};
    assert_int_equal(list_count(f, &flt), 2);
    flt = (struct store_queue_filter){.min_priority = 2, .max_priority = 4};
    assert_int_equal(list_count(f, &flt), 4);
    flt = (struct store_queue_filter){.date_from_ms = f->t0 + 120000};
    assert_int_equal(list_count(f, &flt), 4);
    flt = (struct store_queue_filter){.date_to_ms = f->t0 + 120000};
    assert_int_equal(list_count(f, &flt), 3);
    flt = (struct store_queue_filter){.date_from_ms = f->t0 + 60000, .date_to_ms = f->t0 + 180000};
    assert_int_equal(list_count(f, &flt), 3);
    char prefix[9];
    snprintf(prefix, sizeof(prefix), "%.8s", ids[2]);
    flt = (struct store_queue_filter){.task_id = prefix};
    assert_int_equal(list_count(f, &flt), 1);
    flt = (struct store_queue_filter){.task_id = ids[4]};
    assert_int_equal(list_count(f, &flt), 1);
    flt = (struct store_queue_filter){.task_id = "not hex"};
    assert_int_equal(list_count(f, &flt), 0);
    flt = (struct store_queue_filter){.exclude_completed = 1};
    assert_int_equal(list_count(f, &flt), 5);
    flt = (struct store_queue_filter){.exclude_cancelled = 1};
    assert_int_equal(list_count(f, &flt), 5);
    flt = (struct store_queue_filter){.exclude_completed = 1, .exclude_cancelled = 1};
    assert_int_equal(list_count(f, &flt), 4);
    flt = (struct store_queue_filter){.max_records = 2};
    assert_int_equal(list_count(f, &flt), 2);
    const char *two[] = {f->team, f->team2};
    flt = (struct store_queue_filter){.teams = two, .n_teams = 2};
    assert_int_equal(list_count(f, &flt), 6);
    const char *other[] = {f->team2};
    flt = (struct store_queue_filter){.teams = other, .n_teams = 1};
    assert_int_equal(list_count(f, &flt), 0);
    /* Filters combine. */
    const char *pending[] = {"PENDING"};
    flt = (struct store_queue_filter){.machine = f->m1, .statuses = pending, .n_statuses = 1};
    assert_int_equal(list_count(f, &flt), 2);
    const char *bogus[] = {"DONE"};
    flt = (struct store_queue_filter){.statuses = bogus, .n_statuses = 1};
    assert_rc(STORE_ERROR, store_queue_list(f->s, &flt, &rows, err, sizeof(err)));
    assert_non_null(strstr(err, "unknown status"));
}

static const char *health_of(struct fx *f, const char *id, int64_t at_ms, int stale_min)
{
    static char buf[32];
    char err[512];
    json_t *rows = NULL;
    struct store_queue_filter flt = {
        .task_id = id, .now_ms = f->t0 + at_ms, .stale_threshold_minutes = stale_min};
    assert_rc(STORE_OK, store_queue_list(f->s, &flt, &rows, err, sizeof(err)));
    assert_int_equal(json_array_size(rows), 1);
    snprintf(buf, sizeof(buf), "%s", jstr(json_array_get(rows, 0), "healthStatus"));
    json_decref(rows);
    return buf;
}

static void test_health_and_stale(void **state)
{
    struct fx *f = *state;
    char err[512], a[37], b[37], c[37];
    const int64_t min = 60000;
    item(f, f->m1, 3, 0, a);
    item(f, f->m2, 3, 0, b);
    item(f, f->m3 /* other bridge */, 3, 0, c);
    json_t *got = claim(f, f->bridge, 2, 0);
    assert_int_equal(json_array_size(got), 2);
    const char *tb = strcmp(claimed_id(got, 0), b) == 0 ? token_of(got, 0) : token_of(got, 1);
    assert_rc(STORE_OK, store_start(f->s, b, tb, f->t0 + min, err, sizeof(err)));
    assert_string_equal(health_of(f, a, 5 * min, 10), "ACTIVE");
    assert_string_equal(health_of(f, b, 5 * min, 10), "ACTIVE");
    assert_string_equal(health_of(f, c, 5 * min, 10), "PENDING");
    assert_string_equal(health_of(f, a, 11 * min, 10), "STALE");
    assert_string_equal(health_of(f, b, 11 * min, 10), "ACTIVE"); /* started at 1 min */
    assert_string_equal(health_of(f, b, 12 * min, 10), "STALE");
    assert_string_equal(health_of(f, c, 11 * min, 10), "STALE_PENDING");
    assert_string_equal(health_of(f, c, 11 * min, 20), "PENDING");
    /* only_stale uses the same rule. */
    struct store_queue_filter flt = {.only_stale = 1, .now_ms = f->t0 + 11 * min};
    assert_int_equal(list_count(f, &flt), 2); /* a and c */
    flt = (struct store_queue_filter){
        .only_stale = 1, .now_ms = f->t0 + 11 * min, .stale_threshold_minutes = 30};
    assert_int_equal(list_count(f, &flt), 0);
    /* A heartbeat is a sign of life. */
    assert_rc(STORE_OK,
              store_heartbeat(f->s, f->owner, 30000, f->t0 + 10 * min, NULL, err, sizeof(err)));
    assert_string_equal(health_of(f, a, 11 * min, 10), "ACTIVE");
    /* Ends and cancels show as themselves, with durations. */
    assert_rc(STORE_OK, store_queue_cancel(f->s, b, 0, NULL, err, sizeof(err)));
    assert_string_equal(health_of(f, b, 11 * min, 10), "CANCELLING");
    struct store_outcome done = {.kind = STORE_OUTCOME_CANCELLED};
    assert_rc(STORE_OK, store_finish(f->s, b, tb, &done, f->t0 + 2 * min, err, sizeof(err)));
    assert_string_equal(health_of(f, b, 11 * min, 10), "CANCELLED");
    json_t *row = get(f, b);
    assert_true(json_real_value(json_object_get(row, "totalDurationSeconds")) == 120.0);
    assert_true(json_real_value(json_object_get(row, "processingDurationSeconds")) == 60.0);
    assert_true(json_is_false(json_object_get(row, "canBeCancelled")));
    assert_true(jint(row, "ageInMinutes") >= 60);
    json_decref(row);
    json_decref(got);
}

/* store_queue_count over f->team's items with flt: asserts it agrees with the list when the
 * list is not cut. */
static int64_t count_of(struct fx *f, struct store_queue_filter flt)
{
    char err[512];
    const char *teams[] = {f->team};
    if (flt.n_teams == 0)
        flt.teams = teams, flt.n_teams = 1;
    int64_t n = -1;
    assert_rc(STORE_OK, store_queue_count(f->s, &flt, &n, err, sizeof(err)));
    json_t *rows = NULL;
    flt.max_records = STORE_MAX_RECORDS;
    assert_rc(STORE_OK, store_queue_list(f->s, &flt, &rows, err, sizeof(err)));
    if (json_array_size(rows) < STORE_MAX_RECORDS)
        assert_int_equal(json_array_size(rows), n);
    json_decref(rows);
    return n;
}

/* Counts are exact at any size (issue 13: a dashboard counting by fetching 10,000 rows said
 * 10000 of 10001), whatever max_records, and take every filter the list takes. */
static void test_queue_count(void **state)
{
    struct fx *f = *state;
    char err[512], a[37];
    const size_t n = STORE_MAX_RECORDS + 1;
    json_t *vault = J("{\"function\":\"noop\"}");
    struct store_item_spec *specs = calloc(n, sizeof(*specs));
    for (size_t i = 0; i < n; i++)
        specs[i] = (struct store_item_spec){.team = f->team, .machine = f->m1,
                                            .bridge = f->bridge, .priority = 1 + (int)(i % 5),
                                            .vault = vault, .now_ms = f->t0 + (int64_t)i};
    assert_rc(STORE_OK, store_queue_create_batch(f->s, specs, n, NULL, err, sizeof(err)));
    free(specs);
    json_decref(vault);
    item(f, f->m2, 3, 60000, a);
    assert_rc(STORE_OK, store_queue_cancel(f->s, a, 0, NULL, err, sizeof(err)));

    assert_int_equal(count_of(f, (struct store_queue_filter){0}), n + 1);
    assert_int_equal(count_of(f, (struct store_queue_filter){.max_records = 5}), n + 1);
    assert_int_equal(list_count(f, &(struct store_queue_filter){0}), STORE_DEFAULT_RECORDS);
    const char *pending[] = {"PENDING"}, *cancelled[] = {"CANCELLED"};
    assert_int_equal(count_of(f, (struct store_queue_filter){.statuses = pending, .n_statuses = 1}),
                     n);
    assert_int_equal(
        count_of(f, (struct store_queue_filter){.statuses = cancelled, .n_statuses = 1}), 1);
    assert_int_equal(count_of(f, (struct store_queue_filter){.priority = 2}), n / 5);
    assert_int_equal(count_of(f, (struct store_queue_filter){.machine = f->m2}), 1);
    assert_int_equal(count_of(f, (struct store_queue_filter){.exclude_cancelled = 1}), n);
    assert_int_equal(count_of(f, (struct store_queue_filter){.date_from_ms = f->t0 + 10000}),
                     n - 10000 + 1);
    assert_int_equal(count_of(f, (struct store_queue_filter){.task_id = a}), 1);
    assert_int_equal(count_of(f, (struct store_queue_filter){.task_id = "not hex"}), 0);
    assert_int_equal(count_of(f, (struct store_queue_filter){.only_stale = 1,
                                                             .now_ms = f->t0 + 5000}),
                     0);
    /* Ten minutes after the last one was created, every PENDING item is stale. */
    assert_int_equal(count_of(f, (struct store_queue_filter){.only_stale = 1,
                                                             .now_ms = f->t0 + 20 * 60000}),
                     n);
    const char *bogus[] = {"DONE"};
    int64_t c = 0;
    struct store_queue_filter bad = {.statuses = bogus, .n_statuses = 1};
    assert_rc(STORE_ERROR, store_queue_count(f->s, &bad, &c, err, sizeof(err)));
}

/* An item waiting for its --after dependency is not stuck: it is PENDING, not
 * STALE_PENDING, until the dependency has COMPLETED and the threshold has passed since. */
static void test_stale_pending_after(void **state)
{
    struct fx *f = *state;
    char a[37], b[37];
    const int64_t min = 60000;
    item(f, f->m1, 3, 0, a);
    const char *after_a[] = {a};
    item_full(f, f->m2, f->bridge, 3, 1, after_a, 1, b);
    assert_string_equal(health_of(f, a, 11 * min, 10), "STALE_PENDING");
    assert_string_equal(health_of(f, b, 11 * min, 10), "PENDING");
    struct store_queue_filter st = {.only_stale = 1, .now_ms = f->t0 + 11 * min};
    assert_int_equal(count_of(f, st), 1);
    json_t *got = claim(f, f->bridge, 10, 12 * min);
    assert_int_equal(json_array_size(got), 1);
    assert_string_equal(claimed_id(got, 0), a);
    finish(f, a, token_of(got, 0), STORE_OUTCOME_COMPLETED, 12 * min, STORE_OK);
    json_decref(got);
    /* Ready since a COMPLETED at 12 min: stale only ten minutes after that. */
    assert_string_equal(health_of(f, b, 13 * min, 10), "PENDING");
    st.now_ms = f->t0 + 13 * min;
    assert_int_equal(count_of(f, st), 0);
    assert_string_equal(health_of(f, b, 23 * min, 10), "STALE_PENDING");
    st.now_ms = f->t0 + 23 * min;
    assert_int_equal(count_of(f, st), 1);
}

/* ---- claims -----------------------------------------------------------------------------------
 */

static void test_claim_order(void **state)
{
    struct fx *f = *state;
    char err[512], id[6][37];
    json_t *v = J("{\"concurrency\":10}");
    assert_rc(STORE_OK, store_resource_update_vault(f->s, STORE_MACHINE, NULL, f->m1, v, -1,
                                                    STORE_VAULT_MERGE, NULL, err, sizeof(err)));
    item(f, f->m1, 3, 0, id[0]);
    item(f, f->m1, 5, 1, id[1]);
    item(f, f->m1, 1, 2, id[2]);
    item(f, f->m1, 3, 3, id[3]);
    item(f, f->m1, 1, 4, id[4]);
    item(f, f->m1, 2, 2, id[5]);
    json_t *got = claim(f, f->bridge, 4, 1000);
    assert_int_equal(json_array_size(got), 4);
    assert_string_equal(claimed_id(got, 0), id[2]);
    assert_string_equal(claimed_id(got, 1), id[4]);
    assert_string_equal(claimed_id(got, 2), id[5]);
    assert_string_equal(claimed_id(got, 3), id[0]);
    json_t *first = json_array_get(got, 0);
    assert_string_equal(jstr(first, "status"), "ASSIGNED");
    assert_string_equal(jstr(first, "leaseOwner"), f->owner);
    assert_int_equal(strlen(jstr(first, "claimToken")), 36);
    assert_int_equal(jint(first, "attempt"), 1);
    assert_non_null(jstr(first, "assignedTime"));
    assert_string_equal(jstr(json_array_get(got, 1), "status"), "ASSIGNED");
    assert_string_not_equal(token_of(got, 0), token_of(got, 1));
    json_decref(got);
    got = claim(f, f->bridge, 10, 1000);
    assert_int_equal(json_array_size(got), 2);
    assert_string_equal(claimed_id(got, 0), id[3]);
    assert_string_equal(claimed_id(got, 1), id[1]);
    json_decref(got);
    got = claim(f, f->bridge, 10, 1000);
    assert_int_equal(json_array_size(got), 0);
    json_decref(got);
    json_decref(v);
}

static void test_claim_machine_exclusive(void **state)
{
    struct fx *f = *state;
    char err[512], down[37], pull[37], up[37], other[37];
    /* The restore workflow: three items for one machine, created in order. */
    item(f, f->m1, 1, 0, down);
    item(f, f->m1, 1, 1, pull);
    item(f, f->m1, 1, 2, up);
    item(f, f->m2, 3, 3, other);
    json_t *got = claim(f, f->bridge, 10, 100);
    assert_int_equal(json_array_size(got), 2); /* one per machine */
    assert_string_equal(claimed_id(got, 0), down);
    assert_string_equal(claimed_id(got, 1), other);
    json_t *more = claim(f, f->bridge, 10, 100);
    assert_int_equal(json_array_size(more), 0); /* m1 is busy until down ends */
    json_decref(more);
    assert_rc(STORE_OK, store_start(f->s, down, token_of(got, 0), f->t0 + 101, err, sizeof(err)));
    more = claim(f, f->bridge, 10, 102);
    assert_int_equal(json_array_size(more), 0); /* PROCESSING counts too */
    json_decref(more);
    finish(f, down, token_of(got, 0), STORE_OUTCOME_COMPLETED, 103, STORE_OK);
    more = claim(f, f->bridge, 10, 104);
    assert_int_equal(json_array_size(more), 1);
    assert_string_equal(claimed_id(more, 0), pull);
    finish(f, pull, token_of(more, 0), STORE_OUTCOME_COMPLETED, 105, STORE_OK);
    json_decref(more);
    more = claim(f, f->bridge, 10, 106);
    assert_string_equal(claimed_id(more, 0), up);
    json_decref(more);
    json_decref(got);
}

static void test_claim_concurrency(void **state)
{
    struct fx *f = *state;
    char err[512], id[37];
    json_t *v = J("{\"ip\":\"local\",\"concurrency\":3}");
    assert_rc(STORE_OK, store_resource_update_vault(f->s, STORE_MACHINE, f->team, f->m1, v, -1,
                                                    STORE_VAULT_REPLACE, NULL, err, sizeof(err)));
    for (int i = 0; i < 5; i++)
        item(f, f->m1, 3, i, id);
    json_t *got = claim(f, f->bridge, 10, 100);
    assert_int_equal(json_array_size(got), 3);
    json_t *more = claim(f, f->bridge, 10, 100);
    assert_int_equal(json_array_size(more), 0);
    json_decref(more);
    finish(f, claimed_id(got, 1), token_of(got, 1), STORE_OUTCOME_FAILED, 101, STORE_OK);
    more = claim(f, f->bridge, 10, 102);
    assert_int_equal(json_array_size(more), 1);
    json_decref(more);
    /* The machine's items on other bridges count against it too. */
    item_full(f, f->m1, f->bridge2, 3, 200, NULL, 0, id);
    more = claim(f, f->bridge2, 10, 300);
    assert_int_equal(json_array_size(more), 0);
    json_decref(more);
    json_decref(got);
    json_decref(v);
}

static void test_claim_machine_order(void **state)
{
    struct fx *f = *state;
    char low_early[37], high_late[37], m2item[37];
    /* Among one machine's ready items the earliest in (priority, created) goes first. */
    item(f, f->m1, 4, 0, low_early);
    item(f, f->m2, 3, 1, m2item);
    item(f, f->m1, 2, 2, high_late);
    json_t *got = claim(f, f->bridge, 1, 100);
    assert_string_equal(claimed_id(got, 0), high_late);
    json_decref(got);
    got = claim(f, f->bridge, 5, 100);
    assert_int_equal(json_array_size(got), 1);
    assert_string_equal(claimed_id(got, 0), m2item);
    json_decref(got);
}

static void test_claim_run_after_and_bridge(void **state)
{
    struct fx *f = *state;
    char err[512], later[37], now_id[37], b2[37];
    json_t *v = J("{\"function\":\"noop\"}");
    struct store_item_spec sp = {.team = f->team,
                                 .machine = f->m1,
                                 .bridge = f->bridge,
                                 .vault = v,
                                 .now_ms = f->t0,
                                 .run_after_ms = f->t0 + 5000};
    assert_rc(STORE_OK, store_queue_create(f->s, &sp, later, NULL, err, sizeof(err)));
    item(f, f->m2, 5, 10, now_id);
    item_full(f, f->m3, f->bridge2, 1, 20, NULL, 0, b2);
    json_t *got = claim(f, f->bridge, 10, 1000);
    assert_int_equal(json_array_size(got), 1);
    assert_string_equal(claimed_id(got, 0), now_id);
    json_decref(got);
    got = claim(f, f->bridge, 10, 5000);
    assert_int_equal(json_array_size(got), 1);
    assert_string_equal(claimed_id(got, 0), later);
    json_decref(got);
    got = claim(f, f->bridge2, 10, 5000);
    assert_int_equal(json_array_size(got), 1);
    assert_string_equal(claimed_id(got, 0), b2);
    json_decref(got);
    json_decref(v);
}

static void test_claim_busy_backlog(void **state)
{
    struct fx *f = *state;
    char err[512], id[37], late[37], late2[37];
    /* m1 is busy and has a backlog longer than the claim's first look; m2's items come
     * last in claim order and must still be found. */
    json_t *v = J("{\"function\":\"noop\"}");
    struct store_item_spec *specs = calloc(400, sizeof(*specs));
    for (int i = 0; i < 400; i++)
        specs[i] = (struct store_item_spec){.team = f->team,
                                            .machine = f->m1,
                                            .bridge = f->bridge,
                                            .priority = 1,
                                            .vault = v,
                                            .now_ms = f->t0 + i};
    assert_rc(STORE_OK, store_queue_create_batch(f->s, specs, 400, NULL, err, sizeof(err)));
    item(f, f->m2, 5, 1000, late);
    item(f, f->m2, 5, 1001, late2);
    item(f, f->m1, 5, 1002, id);
    json_t *got = claim(f, f->bridge, 1, 2000);
    assert_int_equal(json_array_size(got), 1); /* m1's first */
    json_decref(got);
    got = claim(f, f->bridge, 1, 2000);
    assert_int_equal(json_array_size(got), 1);
    assert_string_equal(claimed_id(got, 0), late);
    json_decref(got);
    got = claim(f, f->bridge, 5, 2000);
    assert_int_equal(json_array_size(got), 0); /* both machines busy */
    json_decref(got);
    free(specs);
    json_decref(v);
}

static void test_claim_busy_backlog_merge(void **state)
{
    struct fx *f = *state;
    char err[512], m4[64], a[37], b[37], c[37], d[37];
    json_t *v = J("{\"function\":\"noop\"}");
    json_t *two = J("{\"concurrency\":2}");
    fresh_name(m4, sizeof(m4), "m4");
    assert_rc(STORE_OK,
              store_machine_create(f->s, f->team, f->bridge, m4, NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_resource_update_vault(f->s, STORE_MACHINE, NULL, f->m2, two, -1,
                                                    STORE_VAULT_MERGE, NULL, err, sizeof(err)));
    struct store_item_spec *specs = calloc(300, sizeof(*specs));
    for (int i = 0; i < 300; i++)
        specs[i] = (struct store_item_spec){.team = f->team,
                                            .machine = f->m1,
                                            .bridge = f->bridge,
                                            .priority = 1,
                                            .vault = v,
                                            .now_ms = f->t0 + i};
    assert_rc(STORE_OK, store_queue_create_batch(f->s, specs, 300, NULL, err, sizeof(err)));
    json_t *got = claim(f, f->bridge, 1, 5000); /* m1 is busy from here on */
    json_decref(got);
    item(f, f->m2, 5, 1000, a);
    item(f, f->m2, 5, 1001, b);
    item(f, f->m2, 5, 1002, c); /* beyond m2's two slots */
    item(f, m4, 4, 1003, d);
    /* Behind 299 ready items of a busy machine: all the others, in claim order. */
    got = claim(f, f->bridge, 2, 5000);
    assert_int_equal(json_array_size(got), 2);
    assert_string_equal(claimed_id(got, 0), d);
    assert_string_equal(claimed_id(got, 1), a);
    json_decref(got);
    got = claim(f, f->bridge, 10, 5000);
    assert_int_equal(json_array_size(got), 1);
    assert_string_equal(claimed_id(got, 0), b);
    json_decref(got);
    free(specs);
    json_decref(v);
    json_decref(two);
}

/* Claims, turn after turn, while the head of the queue is a busy machine's backlog, then
 * once that machine is free again: the same picks whichever way a claim goes (a claim
 * after one that found the head held goes by machine from the start, claim.c). */
static void test_claim_busy_backlog_turns(void **state)
{
    struct fx *f = *state;
    char a[37], b[37], c[37], ids[40][37];
    for (int i = 0; i < 40; i++) /* longer than a claim's first look */
        item(f, f->m1, 1, i, ids[i]);
    item(f, f->m2, 5, 1000, a);
    item(f, f->m2, 5, 1001, b);
    item(f, f->m2, 5, 1002, c);
    json_t *first = claim(f, f->bridge, 1, 2000);
    assert_string_equal(claimed_id(first, 0), ids[0]);
    json_t *got = claim(f, f->bridge, 3, 2000); /* m1 busy: its backlog heads the queue */
    assert_int_equal(json_array_size(got), 1);
    assert_string_equal(claimed_id(got, 0), a);
    json_t *none = claim(f, f->bridge, 3, 2000); /* both busy */
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
    finish(f, a, token_of(got, 0), STORE_OUTCOME_COMPLETED, 2001, STORE_OK);
    json_decref(got);
    got = claim(f, f->bridge, 3, 2002); /* m2 free again, m1 still busy */
    assert_int_equal(json_array_size(got), 1);
    assert_string_equal(claimed_id(got, 0), b);
    json_decref(got);
    finish(f, ids[0], token_of(first, 0), STORE_OUTCOME_COMPLETED, 2003, STORE_OK);
    json_decref(first);
    for (int i = 1; i < 3; i++) { /* the head is claimable again, one item at a time */
        got = claim(f, f->bridge, 3, 2004 + 2 * i);
        assert_int_equal(json_array_size(got), 1);
        assert_string_equal(claimed_id(got, 0), ids[i]);
        finish(f, ids[i], token_of(got, 0), STORE_OUTCOME_COMPLETED, 2005 + 2 * i, STORE_OK);
        json_decref(got);
    }
}

/* A claim that goes by machine (the head of the queue a busy machine's backlog) takes a
 * machine's first PENDING item only when its dependencies are COMPLETED, and otherwise
 * the machine's next ready item: from the first pass's last row on, and, the claim after,
 * from the start (S_CLAIM_FREE_HEADS takes that first item as the head when it is ready). */
static void test_claim_by_machine_waits_on_dependency(void **state)
{
    struct fx *f = *state;
    char head[37], waited[37], later[37], x[37], y[37];
    item(f, f->m1, 1, 0, head);
    item(f, f->m1, 1, 1, waited);
    for (int i = 2; i < 40; i++) /* m1's backlog, longer than a claim's first look */
        item(f, f->m1, 1, i, later);
    const char *dep[] = {waited};
    item_full(f, f->m2, f->bridge, 5, 1000, dep, 1, x);
    item(f, f->m2, 5, 1001, y);
    json_t *busy = claim(f, f->bridge, 1, 2000); /* m1 runs its head */
    json_t *got = claim(f, f->bridge, 3, 2000);  /* by machine after m1's rows */
    assert_string_equal(claimed_id(busy, 0), head);
    assert_int_equal(json_array_size(got), 1);
    assert_string_equal(claimed_id(got, 0), y);
    finish(f, y, token_of(got, 0), STORE_OUTCOME_COMPLETED, 2001, STORE_OK);
    json_decref(got);
    got = claim(f, f->bridge, 3, 2002); /* by machine from the start: x still waits */
    assert_int_equal(json_array_size(got), 0);
    json_decref(got);
    assert_status(f, x, "PENDING");
    json_decref(busy);
}

/* By machine, a machine with slots left after its head is taken reads its next ready items
 * together, as many as it and the claim may still take: the picks stay those of the walk in
 * claim order (an item waiting on run_after skipped, the claim's own limit kept). */
static void test_claim_by_machine_slots(void **state)
{
    struct fx *f = *state;
    char err[512], m4[64], ids[5][37], d[37], later[37];
    json_t *v = J("{\"function\":\"noop\"}");
    json_t *three = J("{\"concurrency\":3}");
    fresh_name(m4, sizeof(m4), "m4");
    assert_rc(STORE_OK,
              store_machine_create(f->s, f->team, f->bridge, m4, NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_resource_update_vault(f->s, STORE_MACHINE, NULL, f->m2, three, -1,
                                                    STORE_VAULT_MERGE, NULL, err, sizeof(err)));
    for (int i = 0; i < 40; i++) /* m1's backlog, longer than a claim's first look */
        item(f, f->m1, 1, i, later);
    /* m2's a, b, w (waits until 9000), c, e, in claim order. */
    struct store_item_spec specs[5];
    for (int i = 0; i < 5; i++)
        specs[i] = (struct store_item_spec){.team = f->team,
                                            .machine = f->m2,
                                            .bridge = f->bridge,
                                            .priority = 2,
                                            .vault = v,
                                            .now_ms = f->t0 + 100 + i,
                                            .run_after_ms = f->t0 + (i == 2 ? 9000 : 100 + i)};
    assert_rc(STORE_OK, store_queue_create_batch(f->s, specs, 5, ids, err, sizeof(err)));
    item(f, m4, 3, 200, d);
    json_t *busy = claim(f, f->bridge, 1, 5000); /* m1 runs its head */
    json_t *got = claim(f, f->bridge, 10, 5000);
    assert_int_equal(json_array_size(got), 4);
    assert_string_equal(claimed_id(got, 0), ids[0]);
    assert_string_equal(claimed_id(got, 1), ids[1]);
    assert_string_equal(claimed_id(got, 2), ids[3]);
    assert_string_equal(claimed_id(got, 3), d);
    json_t *none = claim(f, f->bridge, 10, 5000); /* every machine full */
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
    finish(f, ids[0], token_of(got, 0), STORE_OUTCOME_COMPLETED, 5001, STORE_OK);
    finish(f, ids[1], token_of(got, 1), STORE_OUTCOME_COMPLETED, 5001, STORE_OK);
    json_t *one = claim(f, f->bridge, 1, 5002); /* two slots, a claim of one */
    assert_int_equal(json_array_size(one), 1);
    assert_string_equal(claimed_id(one, 0), ids[4]);
    none = claim(f, f->bridge, 10, 5002); /* a slot left, but w still waits */
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
    json_t *waited = claim(f, f->bridge, 10, 9000);
    assert_int_equal(json_array_size(waited), 1);
    assert_string_equal(claimed_id(waited, 0), ids[2]);
    json_decref(waited);
    json_decref(one);
    json_decref(got);
    json_decref(busy);
    json_decref(v);
    json_decref(three);
}

/* A small deterministic generator, so that a failure can be replayed. */
static uint32_t next_rand(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*state >> 33);
}

struct model_item {
    char id[37], token[37];
    int machine, priority, status; /* 0 pending, 1 active, 2 done */
    int64_t created, run_after;
};

static int model_order(const void *a, const void *b)
{
    const struct model_item *x = *(struct model_item *const *)a;
    const struct model_item *y = *(struct model_item *const *)b;
    if (x->priority != y->priority)
        return x->priority - y->priority;
    return x->created < y->created ? -1 : x->created > y->created;
}

/* What a claim must return: greedy in (priority, created) order under machine slots. */
static size_t model_claim(struct model_item *items, size_t n, const int *conc, int machines,
                          int64_t now, int max_n, struct model_item **out)
{
    int used[8] = {0};
    struct model_item **ready = calloc(n, sizeof(*ready));
    size_t n_ready = 0, n_out = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i].status == 1)
            used[items[i].machine]++;
        else if (items[i].status == 0 && items[i].run_after <= now)
            ready[n_ready++] = &items[i];
    }
    qsort(ready, n_ready, sizeof(*ready), model_order);
    for (size_t i = 0; i < n_ready && (int)n_out < max_n; i++)
        if (used[ready[i]->machine] < conc[ready[i]->machine]) {
            used[ready[i]->machine]++;
            out[n_out++] = ready[i];
        }
    (void)machines;
    free(ready);
    return n_out;
}

static void test_claim_matches_model(void **state)
{
    struct fx *f = *state;
    char err[512];
    enum { MACHINES = 5, ITEMS = 300 };
    const int conc[MACHINES] = {1, 1, 2, 3, 1};
    char names[MACHINES][64];
    uint64_t seed = (uint64_t)now_ms();
    uint64_t rng = seed;
    json_t *v = J("{\"function\":\"noop\"}");
    for (int m = 0; m < MACHINES; m++) {
        char vault[32];
        snprintf(vault, sizeof(vault), "{\"concurrency\":%d}", conc[m]);
        json_t *mv = J(vault);
        fresh_name(names[m], sizeof(names[m]), "mm");
        assert_rc(STORE_OK, store_machine_create(f->s, f->team, f->bridge, names[m], mv, NULL, err,
                                                 sizeof(err)));
        json_decref(mv);
    }
    struct model_item *items = calloc(ITEMS, sizeof(*items));
    struct model_item **want = calloc(ITEMS, sizeof(*want));
    struct store_item_spec *specs = calloc(ITEMS, sizeof(*specs));
    char(*ids)[37] = calloc(ITEMS, 37);
    for (int i = 0; i < ITEMS; i++) {
        uint32_t r = next_rand(&rng);
        items[i].machine = r % 10 < 6 ? 0 : 1 + (int)(r >> 8) % (MACHINES - 1);
        items[i].priority = 1 + (int)(next_rand(&rng) % 5);
        items[i].created = f->t0 + i;
        items[i].run_after =
            next_rand(&rng) % 10 == 0 ? f->t0 + 500 + next_rand(&rng) % 2000 : items[i].created;
        specs[i] = (struct store_item_spec){.team = f->team,
                                            .machine = names[items[i].machine],
                                            .bridge = f->bridge,
                                            .priority = items[i].priority,
                                            .vault = v,
                                            .now_ms = items[i].created,
                                            .run_after_ms = items[i].run_after};
    }
    assert_rc(STORE_OK, store_queue_create_batch(f->s, specs, ITEMS, ids, err, sizeof(err)));
    for (int i = 0; i < ITEMS; i++)
        memcpy(items[i].id, ids[i], 37);
    int done = 0;
    for (int round = 0; round < 5000 && done < ITEMS; round++) {
        int64_t now = f->t0 + ITEMS + 100 * round;
        int max_n = 1 + (int)(next_rand(&rng) % 20);
        size_t n_want = model_claim(items, ITEMS, conc, MACHINES, now, max_n, want);
        /* Odd rounds claim structs, started (the host's way: S_CLAIM_TAKE with row locks). */
        json_t *got = NULL;
        struct store_item *typed = NULL;
        size_t n_got = 0;
        if (round % 2)
            assert_rc(STORE_OK, store_claim_items(f->s, f->bridge, f->owner, 60000, max_n, 1, now,
                                                  &typed, &n_got, err, sizeof(err)));
        else
            assert_rc(STORE_OK, store_claim(f->s, f->bridge, f->owner, 60000, max_n, now, &got, err,
                                            sizeof(err)));
        if (got != NULL)
            n_got = json_array_size(got);
        if (n_got != n_want)
            fail_msg("seed %llu round %d: claimed %zu, expected %zu", (unsigned long long)seed,
                     round, n_got, n_want);
        for (size_t i = 0; i < n_want; i++) {
            const char *id = got ? claimed_id(got, i) : typed[i].task_id;
            if (strcmp(id, want[i]->id) != 0)
                fail_msg("seed %llu round %d: claim %zu is %s, expected %s",
                         (unsigned long long)seed, round, i, id, want[i]->id);
            want[i]->status = 1;
            memcpy(want[i]->token, got ? token_of(got, i) : typed[i].token, 37);
        }
        json_decref(got);
        store_items_free(typed, n_got);
        /* About half of the running items end. */
        for (int i = 0; i < ITEMS; i++)
            if (items[i].status == 1 && next_rand(&rng) % 2) {
                finish(f, items[i].id, items[i].token, STORE_OUTCOME_COMPLETED, now - f->t0,
                       STORE_OK);
                items[i].status = 2;
                done++;
            }
    }
    assert_int_equal(done, ITEMS);
    free(items);
    free(want);
    free(specs);
    free(ids);
    json_decref(v);
}

static void test_dependencies(void **state)
{
    struct fx *f = *state;
    char a[37], b[37], c[37];
    item(f, f->m1, 3, 0, a);
    const char *after_a[] = {a};
    item_full(f, f->m2, f->bridge, 1, 1, after_a, 1, b);
    char prefix[10];
    snprintf(prefix, sizeof(prefix), "%.9s", b);
    const char *after_ab[] = {a, prefix};
    item_full(f, f->m3, f->bridge2, 1, 2, after_ab, 2, c);
    json_t *row = get(f, c);
    assert_int_equal(json_array_size(json_object_get(row, "after")), 2);
    json_decref(row);
    json_t *got = claim(f, f->bridge, 10, 100);
    assert_int_equal(json_array_size(got), 1); /* b waits for a despite its priority */
    assert_string_equal(claimed_id(got, 0), a);
    finish(f, a, token_of(got, 0), STORE_OUTCOME_COMPLETED, 101, STORE_OK);
    json_decref(got);
    got = claim(f, f->bridge2, 10, 102);
    assert_int_equal(json_array_size(got), 0); /* c still waits for b */
    json_decref(got);
    got = claim(f, f->bridge, 10, 102);
    assert_string_equal(claimed_id(got, 0), b);
    finish(f, b, token_of(got, 0), STORE_OUTCOME_COMPLETED, 103, STORE_OK);
    json_decref(got);
    got = claim(f, f->bridge2, 10, 104);
    assert_string_equal(claimed_id(got, 0), c);
    json_decref(got);
}

static void test_dependents_cancelled(void **state)
{
    struct fx *f = *state;
    char err[512], a[37], b[37], c[37], d[37], e[37];
    item(f, f->m1, 3, 0, a);
    const char *after_a[] = {a};
    item_full(f, f->m2, f->bridge, 3, 1, after_a, 1, b);
    const char *after_b[] = {b};
    item_full(f, f->m2, f->bridge, 3, 2, after_b, 1, c);
    item(f, f->m2, 3, 3, d); /* independent */
    json_t *got = claim(f, f->bridge, 1, 100);
    assert_string_equal(claimed_id(got, 0), a);
    finish(f, a, token_of(got, 0), STORE_OUTCOME_FAILED, 101, STORE_OK);
    json_decref(got);
    json_t *row = get(f, b);
    assert_string_equal(jstr(row, "status"), "CANCELLED");
    char reason[80];
    snprintf(reason, sizeof(reason), "dependency %s FAILED", a);
    assert_string_equal(jstr(row, "lastFailureReason"), reason);
    json_decref(row);
    row = get(f, c);
    assert_string_equal(jstr(row, "status"), "CANCELLED");
    snprintf(reason, sizeof(reason), "dependency %s CANCELLED", b);
    assert_string_equal(jstr(row, "lastFailureReason"), reason);
    json_decref(row);
    assert_status(f, d, "PENDING");
    /* A new item cannot depend on one that will never complete. */
    const char *after_fail[] = {a};
    json_t *v = J("{\"function\":\"noop\"}");
    struct store_item_spec sp = {.team = f->team,
                                 .machine = f->m1,
                                 .bridge = f->bridge,
                                 .vault = v,
                                 .after = after_fail,
                                 .n_after = 1};
    assert_rc(STORE_CONFLICT, store_queue_create(f->s, &sp, e, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "FAILED"));
    /* Cancelling and removing a dependency also cancel. */
    const char *after_d[] = {d};
    item_full(f, f->m1, f->bridge, 3, 10, after_d, 1, e);
    assert_rc(STORE_OK, store_queue_cancel(f->s, d, 0, NULL, err, sizeof(err)));
    assert_status(f, e, "CANCELLED");
    char g[37], h[37];
    item(f, f->m1, 3, 20, g);
    const char *after_g[] = {g};
    item_full(f, f->m1, f->bridge, 3, 21, after_g, 1, h);
    assert_rc(STORE_OK, store_queue_delete(f->s, g, err, sizeof(err)));
    row = get(f, h);
    assert_string_equal(jstr(row, "status"), "CANCELLED");
    assert_non_null(strstr(jstr(row, "lastFailureReason"), "was removed"));
    json_decref(row);
    json_decref(v);
}

/* ---- execution: tokens, leases, outcomes ------------------------------------------------------
 */

static void test_token_checks(void **state)
{
    struct fx *f = *state;
    char err[512], a[37];
    item(f, f->m1, 3, 0, a);
    json_t *got = claim(f, f->bridge, 1, 100);
    const char *tok = token_of(got, 0);
    const char *wrong = "00000000-0000-4000-8000-000000000000";
    assert_rc(STORE_CONFLICT, store_start(f->s, a, wrong, f->t0 + 101, err, sizeof(err)));
    assert_non_null(strstr(err, "no longer held"));
    assert_rc(STORE_CONFLICT,
              store_progress(f->s, a, wrong, 5, "x", f->t0 + 101, err, sizeof(err)));
    finish(f, a, wrong, STORE_OUTCOME_COMPLETED, 101, STORE_CONFLICT);
    assert_rc(STORE_OK, store_start(f->s, a, tok, f->t0 + 102, err, sizeof(err)));
    assert_rc(STORE_CONFLICT, store_start(f->s, a, tok, f->t0 + 103, err, sizeof(err)));
    finish(f, a, tok, STORE_OUTCOME_COMPLETED, 104, STORE_OK);
    /* Finished: the token is dead. */
    finish(f, a, tok, STORE_OUTCOME_FAILED, 105, STORE_CONFLICT);
    finish(f, a, tok, STORE_OUTCOME_RETRY, 105, STORE_CONFLICT);
    assert_status(f, a, "COMPLETED");
    finish(f, "00000000-0000-4000-8000-000000000001", tok, STORE_OUTCOME_COMPLETED, 105,
           STORE_NOT_FOUND);
    struct store_outcome o = {.kind = STORE_OUTCOME_COMPLETED};
    assert_rc(STORE_ERROR, store_finish(f->s, a, NULL, &o, f->t0, err, sizeof(err)));
    json_decref(got);
}

static void test_lease_expiry(void **state)
{
    struct fx *f = *state;
    char err[512], a[37];
    json_t *items = NULL;
    item(f, f->m1, 3, 0, a);
    json_t *got = claim(f, f->bridge, 1, 1000); /* lease 30 s: until t0+31000 */
    const char *old = token_of(got, 0);
    assert_rc(STORE_OK, store_start(f->s, a, old, f->t0 + 1001, err, sizeof(err)));
    assert_rc(STORE_OK, store_expired(f->s, f->bridge, f->t0 + 30999, &items, err, sizeof(err)));
    assert_int_equal(json_array_size(items), 0);
    json_decref(items);
    assert_rc(STORE_OK, store_expired(f->s, f->bridge, f->t0 + 31000, &items, err, sizeof(err)));
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(jstr(json_array_get(items, 0), "taskId"), a);
    assert_string_equal(jstr(json_array_get(items, 0), "claimToken"), old);
    json_decref(items);
    assert_rc(STORE_OK, store_expired(f->s, f->bridge2, f->t0 + 31000, &items, err, sizeof(err)));
    assert_int_equal(json_array_size(items), 0);
    json_decref(items);
    /* A recovering host requeues it with the old token … */
    struct store_outcome retry = {.kind = STORE_OUTCOME_RETRY,
                                  .reason = "host lost while running",
                                  .run_after_ms = f->t0 + 32000};
    assert_rc(STORE_OK, store_finish(f->s, a, old, &retry, f->t0 + 31500, err, sizeof(err)));
    json_t *again = claim(f, f->bridge, 1, 31999);
    assert_int_equal(json_array_size(again), 0); /* not before run_after */
    json_decref(again);
    again = claim(f, f->bridge, 1, 32000);
    assert_int_equal(json_array_size(again), 1);
    assert_int_equal(jint(json_array_get(again, 0), "attempt"), 2);
    assert_string_not_equal(token_of(again, 0), old);
    /* … and the old host, back from the dead, cannot overwrite the new attempt. */
    finish(f, a, old, STORE_OUTCOME_COMPLETED, 32001, STORE_CONFLICT);
    assert_rc(STORE_CONFLICT, store_progress(f->s, a, old, 50, NULL, f->t0, err, sizeof(err)));
    finish(f, a, token_of(again, 0), STORE_OUTCOME_COMPLETED, 32002, STORE_OK);
    json_decref(again);
    json_decref(got);
}

static void test_heartbeat(void **state)
{
    struct fx *f = *state;
    char err[512], a[37], b[37];
    json_t *items = NULL;
    int renewed = -1;
    item(f, f->m1, 3, 0, a);
    item(f, f->m2, 3, 0, b);
    json_t *got = claim(f, f->bridge, 2, 0);
    assert_rc(STORE_OK,
              store_heartbeat(f->s, f->owner, 30000, f->t0 + 25000, &renewed, err, sizeof(err)));
    assert_int_equal(renewed, 2);
    assert_rc(STORE_OK, store_expired(f->s, NULL, f->t0 + 40000, &items, err, sizeof(err)));
    size_t i;
    json_t *row;
    json_array_foreach (items, i, row) {
        assert_string_not_equal(jstr(row, "taskId"), a);
        assert_string_not_equal(jstr(row, "taskId"), b);
    }
    json_decref(items);
    assert_rc(STORE_OK,
              store_heartbeat(f->s, "host-nobody", 30000, f->t0, &renewed, err, sizeof(err)));
    assert_int_equal(renewed, 0);
    json_decref(got);
}

static void test_retry_release(void **state)
{
    struct fx *f = *state;
    char err[512], a[37];
    item(f, f->m1, 3, 0, a);
    json_t *got = claim(f, f->bridge, 1, 100);
    json_t *resp = J("{\"status\":\"failed\",\"error\":{\"code\":\"RETRY\"}}");
    struct store_outcome retry = {.kind = STORE_OUTCOME_RETRY,
                                  .reason = "connection refused",
                                  .run_after_ms = f->t0 + 500,
                                  .response = resp};
    assert_rc(STORE_OK,
              store_finish(f->s, a, token_of(got, 0), &retry, f->t0 + 200, err, sizeof(err)));
    json_t *row = get(f, a);
    assert_string_equal(jstr(row, "status"), "PENDING");
    assert_int_equal(jint(row, "retryCount"), 1);
    assert_non_null(jstr(row, "lastRetryAt"));
    assert_string_equal(jstr(row, "lastFailureReason"), "connection refused");
    assert_true(json_is_true(json_object_get(row, "hasResponse")));
    assert_true(json_is_null(json_object_get(row, "leaseExpiresTime")));
    json_decref(row);
    json_decref(got);
    got = claim(f, f->bridge, 1, 500);
    assert_int_equal(jint(json_array_get(got, 0), "attempt"), 2);
    struct store_outcome release = {.kind = STORE_OUTCOME_RELEASE, .reason = "host shutting down"};
    assert_rc(STORE_OK,
              store_finish(f->s, a, token_of(got, 0), &release, f->t0 + 600, err, sizeof(err)));
    row = get(f, a);
    assert_string_equal(jstr(row, "status"), "PENDING");
    assert_int_equal(jint(row, "retryCount"), 1); /* a release is not a retry */
    json_decref(row);
    json_decref(got);
    got = claim(f, f->bridge, 1, 600);
    assert_int_equal(json_array_size(got), 1);
    assert_int_equal(jint(json_array_get(got, 0), "attempt"), 2);
    json_t *ok = J("{\"status\":\"completed\",\"result\":{\"bytes\":42}}");
    struct store_outcome done = {.kind = STORE_OUTCOME_COMPLETED, .response = ok};
    assert_rc(STORE_OK,
              store_finish(f->s, a, token_of(got, 0), &done, f->t0 + 700, err, sizeof(err)));
    row = get(f, a);
    assert_string_equal(jstr(row, "status"), "COMPLETED");
    assert_true(json_equal(json_object_get(row, "responseVault"), ok));
    assert_non_null(jstr(row, "finishedTime"));
    json_decref(row);
    json_t *events = NULL;
    assert_rc(STORE_OK, store_event_list(f->s, a, &events, err, sizeof(err)));
    const char *want[] = {"CREATED",  "ASSIGNED", "RETRY_SCHEDULED", "ASSIGNED",
                          "RELEASED", "ASSIGNED", "COMPLETED"};
    assert_int_equal(json_array_size(events), 7);
    for (size_t i = 0; i < 7; i++)
        assert_string_equal(jstr(json_array_get(events, i), "action"), want[i]);
    json_decref(events);
    json_decref(got);
    json_decref(resp);
    json_decref(ok);
}

static void test_progress(void **state)
{
    struct fx *f = *state;
    char err[512], a[37];
    item(f, f->m1, 3, 0, a);
    json_t *got = claim(f, f->bridge, 1, 100);
    assert_rc(STORE_OK, store_start(f->s, a, token_of(got, 0), f->t0 + 101, err, sizeof(err)));
    assert_rc(STORE_OK, store_progress(f->s, a, token_of(got, 0), 142, "uploading", f->t0 + 102,
                                       err, sizeof(err)));
    json_t *row = get(f, a);
    json_t *p = json_object_get(row, "progress");
    assert_int_equal(jint(p, "percent"), 100);
    assert_string_equal(jstr(p, "message"), "uploading");
    json_decref(row);
    json_t *events = NULL;
    assert_rc(STORE_OK, store_event_list(f->s, a, &events, err, sizeof(err)));
    json_t *last = json_array_get(events, json_array_size(events) - 1);
    assert_string_equal(jstr(last, "action"), "PROGRESS");
    assert_string_equal(jstr(last, "details"), "100%: uploading");
    json_decref(events);
    json_decref(got);
}

static void test_cancel_state_machine(void **state)
{
    struct fx *f = *state;
    char err[512], p[37], as[37], pr[37];
    json_t *items = NULL, *row = NULL;
    json_t *v = J("{\"concurrency\":5}");
    assert_rc(STORE_OK, store_resource_update_vault(f->s, STORE_MACHINE, NULL, f->m1, v, -1,
                                                    STORE_VAULT_MERGE, NULL, err, sizeof(err)));
    item(f, f->m1, 1, 0, as);
    item(f, f->m1, 1, 1, pr);
    json_t *got = claim(f, f->bridge, 2, 10);
    item(f, f->m1, 3, 2, p);
    const char *tas = token_of(got, 0), *tpr = token_of(got, 1);
    assert_rc(STORE_OK, store_start(f->s, pr, tpr, f->t0 + 11, err, sizeof(err)));
    /* PENDING → CANCELLED */
    assert_rc(STORE_OK, store_queue_cancel(f->s, p, 0, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "status"), "CANCELLED");
    json_decref(row);
    /* ASSIGNED → CANCELLED, and the host's later start is refused. */
    assert_rc(STORE_OK, store_queue_cancel(f->s, as, 0, NULL, err, sizeof(err)));
    assert_status(f, as, "CANCELLED");
    assert_rc(STORE_CONFLICT, store_start(f->s, as, tas, f->t0 + 12, err, sizeof(err)));
    /* PROCESSING → CANCELLING; the owner sees it; cancelling again changes nothing. */
    assert_rc(STORE_OK, store_queue_cancel(f->s, pr, 0, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "status"), "CANCELLING");
    json_decref(row);
    assert_rc(STORE_OK, store_queue_cancel(f->s, pr, 0, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_cancelling(f->s, f->owner, &items, err, sizeof(err)));
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(jstr(json_array_get(items, 0), "claimToken"), tpr);
    json_decref(items);
    assert_rc(STORE_OK, store_cancelling(f->s, "host-b", &items, err, sizeof(err)));
    assert_int_equal(json_array_size(items), 0);
    json_decref(items);
    /* The host's attempt ends: a RETRY of a cancelling item still ends CANCELLED. */
    finish(f, pr, tpr, STORE_OUTCOME_RETRY, 13, STORE_OK);
    assert_status(f, pr, "CANCELLED");
    /* Final states cannot be cancelled. */
    assert_rc(STORE_CONFLICT, store_queue_cancel(f->s, pr, 0, NULL, err, sizeof(err)));
    char want[200];
    snprintf(want, sizeof(want),
             "task %s is CANCELLED; only PENDING, ASSIGNED or PROCESSING items can be cancelled",
             pr);
    assert_string_equal(err, want);
    char done[37];
    item(f, f->m2, 3, 20, done);
    json_t *g2 = claim(f, f->bridge, 5, 30);
    assert_int_equal(json_array_size(g2), 1);
    finish(f, done, token_of(g2, 0), STORE_OUTCOME_COMPLETED, 31, STORE_OK);
    assert_rc(STORE_CONFLICT, store_queue_cancel(f->s, done, 0, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "is COMPLETED"));
    json_decref(g2);
    /* Forced: a PROCESSING item whose host is gone ends at once. */
    char forced[37];
    item(f, f->m2, 3, 40, forced);
    g2 = claim(f, f->bridge, 5, 50);
    assert_rc(STORE_OK, store_start(f->s, forced, token_of(g2, 0), f->t0 + 51, err, sizeof(err)));
    assert_rc(STORE_OK, store_queue_cancel(f->s, forced, 1, NULL, err, sizeof(err)));
    assert_status(f, forced, "CANCELLED");
    finish(f, forced, token_of(g2, 0), STORE_OUTCOME_COMPLETED, 52, STORE_CONFLICT);
    json_decref(g2);
    json_decref(got);
    json_decref(v);
}

static void test_delete_item(void **state)
{
    struct fx *f = *state;
    char err[512], a[37], b[37];
    json_t *row = NULL, *events = NULL;
    item(f, f->m1, 3, 0, a);
    item(f, f->m2, 3, 1, b);
    json_t *got = claim(f, f->bridge, 1, 10); /* a */
    assert_rc(STORE_CONFLICT, store_queue_delete(f->s, a, err, sizeof(err)));
    assert_non_null(strstr(err, "only PENDING or CANCELLED"));
    assert_rc(STORE_OK, store_queue_delete(f->s, b, err, sizeof(err)));
    assert_rc(STORE_NOT_FOUND, store_queue_get(f->s, b, &row, err, sizeof(err)));
    assert_rc(STORE_NOT_FOUND, store_event_list(f->s, b, &events, err, sizeof(err)));
    finish(f, a, token_of(got, 0), STORE_OUTCOME_CANCELLED, 11, STORE_OK);
    assert_rc(STORE_OK, store_queue_delete(f->s, a, err, sizeof(err)));
    json_decref(got);
}

static void test_events(void **state)
{
    struct fx *f = *state;
    char err[512], a[37];
    json_t *events = NULL;
    json_t *details = J("{\"attempt\":1,\"exit\":0}");
    item(f, f->m1, 3, 0, a);
    assert_rc(STORE_OK, store_event_append(f->s, a, "LOG", "first line", NULL, f->t0 + 1500, err,
                                           sizeof(err)));
    assert_rc(STORE_OK, store_event_append(f->s, a, "ATTEMPT", NULL, details, f->t0 + 4000, err,
                                           sizeof(err)));
    assert_rc(STORE_OK,
              store_event_append(f->s, a, "NOTE", NULL, NULL, f->t0 + 4000, err, sizeof(err)));
    char prefix[9];
    snprintf(prefix, sizeof(prefix), "%.8s", a);
    assert_rc(STORE_OK, store_event_list(f->s, prefix, &events, err, sizeof(err)));
    assert_int_equal(json_array_size(events), 4);
    json_t *e1 = json_array_get(events, 1), *e2 = json_array_get(events, 2);
    assert_string_equal(jstr(e1, "action"), "LOG");
    assert_string_equal(jstr(e1, "details"), "first line");
    assert_true(json_real_value(json_object_get(e1, "secondsSincePrevious")) == 1.5);
    assert_true(json_equal(json_object_get(e2, "details"), details));
    assert_true(json_real_value(json_object_get(e2, "secondsSincePrevious")) == 2.5);
    assert_non_null(jstr(e2, "timestamp"));
    assert_true(json_is_null(json_object_get(json_array_get(events, 3), "details")));
    json_decref(events);
    assert_rc(STORE_NOT_FOUND, store_event_append(f->s, "00000000-0000-4000-8000-00000000000f",
                                                  "LOG", "x", NULL, 0, err, sizeof(err)));
    assert_rc(STORE_ERROR, store_event_append(f->s, a, "", "x", NULL, 0, err, sizeof(err)));
    json_decref(details);
}

/* ---- batches ----------------------------------------------------------------------------------
 */

static void test_batch_create(void **state)
{
    struct fx *f = *state;
    char err[512];
    json_t *v = J("{\"function\":\"noop\"}");
    struct store_item_spec specs[50];
    char ids[50][37];
    for (int i = 0; i < 50; i++)
        specs[i] = (struct store_item_spec){.team = f->team,
                                            .machine = i % 2 ? f->m1 : f->m2,
                                            .bridge = f->bridge,
                                            .vault = v,
                                            .now_ms = f->t0 + i};
    assert_rc(STORE_OK, store_queue_create_batch(f->s, specs, 50, ids, err, sizeof(err)));
    assert_int_equal(count_team_items(f), 50);
    assert_status(f, ids[49], "PENDING");
    /* One bad item: none of the batch is written, and the message names it. */
    specs[30].machine = "ghost";
    assert_rc(STORE_NOT_FOUND, store_queue_create_batch(f->s, specs, 50, ids, err, sizeof(err)));
    assert_non_null(strstr(err, "item 30"));
    assert_int_equal(count_team_items(f), 50);
    json_decref(v);
}

static void test_begin_commit(void **state)
{
    struct fx *f = *state;
    char err[512], a[37], b[37], c[37];
    item(f, f->m1, 3, 0, a);
    item(f, f->m2, 3, 1, b);
    json_t *got = claim(f, f->bridge, 2, 10);
    assert_rc(STORE_OK, store_begin(f->s, err, sizeof(err)));
    assert_rc(STORE_OK, store_begin(f->s, err, sizeof(err))); /* nests */
    for (size_t i = 0; i < 2; i++) {
        assert_rc(STORE_OK, store_start(f->s, claimed_id(got, i), token_of(got, i), f->t0 + 11, err,
                                        sizeof(err)));
        assert_rc(STORE_OK, store_event_append(f->s, claimed_id(got, i), "LOG", "in batch", NULL,
                                               f->t0 + 11, err, sizeof(err)));
    }
    /* A failing operation inside undoes only itself. */
    finish(f, a, "bad-token", STORE_OUTCOME_COMPLETED, 12, STORE_CONFLICT);
    assert_rc(STORE_OK, store_commit(f->s, err, sizeof(err)));
    assert_rc(STORE_OK, store_commit(f->s, err, sizeof(err)));
    assert_status(f, a, "PROCESSING");
    assert_status(f, b, "PROCESSING");
    /* Rolled back: nothing happened. */
    assert_rc(STORE_OK, store_begin(f->s, err, sizeof(err)));
    finish(f, a, token_of(got, 0), STORE_OUTCOME_COMPLETED, 13, STORE_OK);
    item(f, f->m1, 3, 14, c);
    assert_rc(STORE_OK, store_rollback(f->s, err, sizeof(err)));
    assert_status(f, a, "PROCESSING");
    json_t *row = NULL;
    assert_rc(STORE_NOT_FOUND, store_queue_get(f->s, c, &row, err, sizeof(err)));
    assert_rc(STORE_ERROR, store_commit(f->s, err, sizeof(err)));
    json_decref(got);
}

/* ---- schedules, counts, wake-ups --------------------------------------------------------------
 */

static void test_schedule_fire_unique(void **state)
{
    struct fx *f = *state;
    char err[512], a[37], b[37];
    json_t *v = J("{\"function\":\"repo_push\"}");
    struct store_item_spec sp = {.team = f->team,
                                 .machine = f->m1,
                                 .bridge = f->bridge,
                                 .vault = v,
                                 .schedule_name = "nightly",
                                 .schedule_fire_ms = f->t0 + 7200000};
    json_t *row = NULL;
    assert_rc(STORE_OK, store_queue_create(f->s, &sp, a, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "scheduleName"), "nightly");
    assert_non_null(jstr(row, "scheduleFireTime"));
    json_decref(row);
    assert_rc(STORE_CONFLICT, store_queue_create(f->s, &sp, b, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "already fired"));
    sp.schedule_fire_ms += 86400000;
    assert_rc(STORE_OK, store_queue_create(f->s, &sp, b, NULL, err, sizeof(err)));
    /* Links to a parent. */
    sp = (struct store_item_spec){.team = f->team,
                                  .machine = f->m1,
                                  .bridge = f->bridge,
                                  .vault = v,
                                  .parent_task_id = a,
                                  .link_kind = "fallback"};
    assert_rc(STORE_OK, store_queue_create(f->s, &sp, b, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "parentTaskId"), a);
    assert_string_equal(jstr(row, "linkKind"), "fallback");
    json_decref(row);
    json_decref(v);
}

static void test_counts(void **state)
{
    struct fx *f = *state;
    char err[512], id[37];
    json_t *counts = NULL;
    for (int i = 0; i < 3; i++)
        item(f, f->m1, 3, i, id);
    item_full(f, f->m3, f->bridge2, 3, 5, NULL, 0, id);
    json_t *got = claim(f, f->bridge, 5, 10);
    assert_rc(STORE_OK, store_queue_counts(f->s, f->bridge, &counts, err, sizeof(err)));
    assert_int_equal(jint(counts, "PENDING"), 2);
    assert_int_equal(jint(counts, "ASSIGNED"), 1);
    assert_int_equal(jint(counts, "COMPLETED"), 0);
    assert_int_equal(jint(counts, "total"), 3);
    json_decref(counts);
    assert_rc(STORE_OK, store_queue_counts(f->s, NULL, &counts, err, sizeof(err)));
    assert_true(jint(counts, "total") >= 4);
    json_decref(counts);
    json_decref(got);
}

/* What `serve --drain` asks: a bridge has work while an item of it is PENDING (due or not)
 * or held; ended items, and other bridges' items, do not count. */
static void test_bridge_has_work(void **state)
{
    struct fx *f = *state;
    char err[512], a[37], b[37], other[37];
    int has = -1;
    assert_rc(STORE_OK, store_bridge_has_work(f->s, f->bridge, &has, err, sizeof(err)));
    assert_int_equal(has, 0);
    item_full(f, f->m3, f->bridge2, 3, 5, NULL, 0, other);
    assert_rc(STORE_OK, store_bridge_has_work(f->s, f->bridge, &has, err, sizeof(err)));
    assert_int_equal(has, 0); /* another bridge's item */
    assert_rc(STORE_OK, store_bridge_has_work(f->s, f->bridge2, &has, err, sizeof(err)));
    assert_int_equal(has, 1);
    item(f, f->m1, 3, 10, a);
    assert_rc(STORE_OK, store_bridge_has_work(f->s, f->bridge, &has, err, sizeof(err)));
    assert_int_equal(has, 1); /* PENDING */
    json_t *got = claim(f, f->bridge, 5, 20);
    assert_int_equal(json_array_size(got), 1);
    assert_rc(STORE_OK, store_bridge_has_work(f->s, f->bridge, &has, err, sizeof(err)));
    assert_int_equal(has, 1); /* ASSIGNED */
    assert_rc(STORE_OK, store_start(f->s, a, token_of(got, 0), f->t0 + 21, err, sizeof(err)));
    assert_rc(STORE_OK, store_bridge_has_work(f->s, f->bridge, &has, err, sizeof(err)));
    assert_int_equal(has, 1); /* PROCESSING */
    finish(f, a, token_of(got, 0), STORE_OUTCOME_COMPLETED, 30, STORE_OK);
    json_decref(got);
    assert_rc(STORE_OK, store_bridge_has_work(f->s, f->bridge, &has, err, sizeof(err)));
    assert_int_equal(has, 0); /* only history left */
    /* A PENDING item not yet due still counts: a drain waits for it. */
    struct store_item_spec sp = {.team = f->team,
                                 .machine = f->m1,
                                 .bridge = f->bridge,
                                 .vault = J("{\"function\":\"noop\"}"),
                                 .now_ms = f->t0 + 40,
                                 .run_after_ms = f->t0 + 3600000};
    assert_rc(STORE_OK, store_queue_create(f->s, &sp, b, NULL, err, sizeof(err)));
    json_decref((json_t *)sp.vault);
    assert_rc(STORE_OK, store_bridge_has_work(f->s, f->bridge, &has, err, sizeof(err)));
    assert_int_equal(has, 1);
}

static int readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

/* The socket a host (pid kid) of bridge left when it died is there until a notify of
 * bridge by cli finds it gone and removes it. */
static void assert_notify_clears(store *cli, const char *bridge, pid_t kid)
{
    char path[256];
    struct stat sb;
    snprintf(path, sizeof(path), "%s.wake/%s@%d", g_url, bridge, (int)kid);
    assert_int_equal(stat(path, &sb), 0);
    store_notify(cli, bridge);
    assert_int_not_equal(stat(path, &sb), 0);
}

static void test_wake_fd(void **state)
{
    struct fx *f = *state;
    char err[512], id[37];
    int fd = store_wait_fd(f->s, f->bridge, err, sizeof(err));
    if (fd < 0)
        fail_msg("store_wait_fd: %s", err);
    assert_int_equal(store_wait_fd(f->s, f->bridge, err, sizeof(err)), fd);
    store_wait_drain(f->s);
    assert_false(readable(fd, 0));
    /* Another handle (a CLI) creates an item on this bridge: the host wakes. */
    store *cli = store_open(g_url, err, sizeof(err));
    assert_non_null(cli);
    json_t *v = J("{\"function\":\"noop\"}");
    struct store_item_spec sp = {
        .team = f->team, .machine = f->m1, .bridge = f->bridge, .vault = v};
    assert_rc(STORE_OK, store_queue_create(cli, &sp, id, NULL, err, sizeof(err)));
    assert_true(readable(fd, 2000));
    store_wait_drain(f->s);
    assert_false(readable(fd, 0));
    /* Other bridges do not wake it. */
    sp.machine = f->m3, sp.bridge = f->bridge2;
    assert_rc(STORE_OK, store_queue_create(cli, &sp, id, NULL, err, sizeof(err)));
    assert_false(readable(fd, 200));
    /* Inside a batch the wake-up waits for the commit. */
    sp.machine = f->m1, sp.bridge = f->bridge;
    assert_rc(STORE_OK, store_begin(cli, err, sizeof(err)));
    assert_rc(STORE_OK, store_queue_create(cli, &sp, id, NULL, err, sizeof(err)));
    assert_false(readable(fd, 100));
    assert_rc(STORE_OK, store_commit(cli, err, sizeof(err)));
    assert_true(readable(fd, 2000));
    store_wait_drain(f->s);
    store_notify(cli, f->bridge);
    assert_true(readable(fd, 2000));
    if (is_sqlite(f)) {
        /* A host killed without closing leaves its socket; the next notify clears it. */
        pid_t kid = fork();
        if (kid == 0) {
            store *host = store_open(g_url, NULL, 0);
            _exit(host != NULL && store_wait_fd(host, f->bridge, NULL, 0) >= 0 ? 0 : 1);
        }
        int status = 0;
        waitpid(kid, &status, 0);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_notify_clears(cli, f->bridge, kid);
    }
    store_close(cli);
    json_decref(v);
}

/* SQLite keeps a notifier's listing of the wake-up directory while the directory does not
 * change: a host that comes after the listing is woken all the same, and one that died
 * without removing its socket is removed by the next notify even from a kept listing. */
static void test_wake_listing(void **state)
{
    struct fx *f = *state;
    char err[512];
    if (!is_sqlite(f))
        skip();
    if (store_wait_fd(f->s, f->bridge, err, sizeof(err)) < 0)
        fail_msg("store_wait_fd: %s", err);
    store *cli = store_open(g_url, err, sizeof(err));
    assert_non_null(cli);
    sleep(2); /* the directory is older than a kept listing must be */
    store_notify(cli, f->bridge);
    store_notify(cli, f->bridge); /* from the kept listing */
    int ready[2], go[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid_t kid = fork();
    if (kid == 0) {
        /* A host of bridge2: says when it listens, then how many wake-ups it got. */
        store *host = store_open(g_url, NULL, 0);
        int fd = host ? store_wait_fd(host, f->bridge2, NULL, 0) : -1;
        char c = fd >= 0 ? 'l' : 'x';
        if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(99);
        int n = 0;
        while (read(fd, &c, 1) == 1) /* the socket does not block */
            n++;
        _exit(n);
    }
    char c = 0;
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_int_equal(c, 'l');
    store_notify(cli, f->bridge2); /* the kept listing is older than its socket */
    sleep(2);
    store_notify(cli, f->bridge2); /* lists the directory again, and keeps it */
    assert_int_equal(write(go[1], &c, 1), 1);
    int status = 0;
    waitpid(kid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 2);
    /* It died without closing its handle: its socket stays, the kept listing names it. */
    assert_notify_clears(cli, f->bridge2, kid);
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
    store_close(cli);
}

/* The SQLite WAL's header: its checkpoint sequence (bumped when a writer restarts the WAL
 * at its start) at *seq, its size in bytes the return value, its page size at *page. */
static long wal_header(uint32_t *seq, uint32_t *page)
{
    char path[256];
    unsigned char h[32] = {0};
    snprintf(path, sizeof(path), "%s-wal", g_url);
    FILE *w = fopen(path, "rb");
    assert_non_null(w);
    assert_int_equal(fread(h, 1, sizeof(h), w), sizeof(h));
    fseek(w, 0, SEEK_END);
    long size = ftell(w);
    fclose(w);
    *page = (uint32_t)h[8] << 24 | (uint32_t)h[9] << 16 | (uint32_t)h[10] << 8 | h[11];
    *seq = (uint32_t)h[12] << 24 | (uint32_t)h[13] << 16 | (uint32_t)h[14] << 8 | h[15];
    return size;
}

/* A host that goes idle (store_idle) checkpoints a WAL of 512 frames or more, so the next
 * commits overwrite the WAL from its start instead of growing it; a shorter WAL is left. */
static void test_idle_checkpoint(void **state)
{
    struct fx *f = *state;
    char err[512], id[37];
    uint32_t seq, seq2, page;
    if (!is_sqlite(f)) {
        store_idle(f->s); /* nothing to do on PostgreSQL */
        return;
    }
    if (store_wait_fd(f->s, f->bridge, err, sizeof(err)) < 0)
        fail_msg("store_wait_fd: %s", err); /* a host's handle */
    /* Commits until the WAL holds 512 frames or more and its last commit grew the file:
     * its frames then end where the file does. */
    long size = 0, before;
    int grew = 0, n = 0;
    do {
        before = wal_header(&seq, &page);
        item(f, f->m1, 3, n, id);
        size = wal_header(&seq2, &page);
        grew = size > before && seq2 == seq;
        assert_true(++n < 2000);
    } while (!grew || size < 32 + 512 * (long)(page + 24));
    store_idle(f->s);
    for (int i = 0; i < 3; i++)
        item(f, f->m1, 3, n + i, id);
    long after = wal_header(&seq2, &page);
    assert_int_equal(seq2, seq + 1); /* restarted at its start */
    assert_true(after <= size);      /* not grown */
    /* Three items (about 40 frames) since: idle leaves so short a WAL alone. */
    store_idle(f->s);
    item(f, f->m1, 3, n + 3, id);
    wal_header(&seq, &page);
    assert_int_equal(seq, seq2);
    assert_status(f, id, "PENDING");
}

/* store_idle says when it checkpointed the whole WAL (the host then writes its heartbeat, so
 * that the commit restarting the WAL is its own): 0 for a short WAL, 1 once, then 0 again
 * until the WAL is long again; always 0 on PostgreSQL. */
static void test_idle_reports_checkpoint(void **state)
{
    struct fx *f = *state;
    char err[512], id[37];
    uint32_t seq, seq2, page;
    if (!is_sqlite(f)) {
        assert_int_equal(store_idle(f->s), 0);
        return;
    }
    if (store_wait_fd(f->s, f->bridge, err, sizeof(err)) < 0)
        fail_msg("store_wait_fd: %s", err);
    item(f, f->m1, 3, 0, id);
    assert_int_equal(store_idle(f->s), 0); /* a short WAL is left alone */
    int n = 1;
    do {
        item(f, f->m1, 3, n, id);
        wal_header(&seq, &page);
        assert_true(++n < 2000);
    } while (store_idle(f->s) == 0);
    assert_int_equal(store_idle(f->s), 0); /* nothing left to checkpoint */
    item(f, f->m1, 3, n, id);
    wal_header(&seq2, &page);
    assert_int_equal(seq2, seq + 1); /* the commit after it restarted the WAL */
    assert_int_equal(store_idle(f->s), 0);
}

static void test_multiprocess_create(void **state)
{
    struct fx *f = *state;
    char err[512];
    enum { PROCS = 4, EACH = 2500 };
    pid_t kids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        kids[p] = fork();
        if (kids[p] != 0)
            continue;
        store *s = store_open(g_url, err, sizeof(err));
        int failed = s == NULL;
        json_t *v = J("{\"function\":\"noop\"}");
        for (int i = 0; i < EACH && !failed; i++) {
            char id[37];
            struct store_item_spec sp = {
                .team = f->team, .machine = i % 2 ? f->m1 : f->m2, .bridge = f->bridge, .vault = v};
            if (store_queue_create(s, &sp, id, NULL, err, sizeof(err)) != STORE_OK)
                failed = 1;
        }
        if (failed)
            fprintf(stderr, "child %d: %s\n", p, err);
        json_decref(v);
        store_close(s);
        _exit(failed);
    }
    int failures = 0;
    for (int p = 0; p < PROCS; p++) {
        int status = 0;
        waitpid(kids[p], &status, 0);
        failures += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(failures, 0);
    json_t *counts = NULL;
    assert_rc(STORE_OK, store_queue_counts(f->s, f->bridge, &counts, err, sizeof(err)));
    assert_int_equal(jint(counts, "total"), PROCS * EACH);
    json_decref(counts);
    assert_int_equal(count_team_items(f), PROCS * EACH);
}

/* A child holds the write lock (an open batch) for hold_ms, then exits. */
static pid_t hold_write_lock(int hold_ms, int ready_fd)
{
    pid_t kid = fork();
    if (kid == 0) {
        char err[512];
        store *s = store_open(g_url, err, sizeof(err));
        int ok = s != NULL && store_begin(s, err, sizeof(err)) == STORE_OK;
        /* Write something so that the lock is really taken on every engine. */
        if (ok)
            ok = store_region_create(s, "lock-holder-region", NULL, NULL, err, sizeof(err)) !=
                 STORE_ERROR;
        if (write(ready_fd, ok ? "y" : "n", 1) != 1)
            ok = 0;
        usleep((useconds_t)hold_ms * 1000);
        if (s)
            store_rollback(s, err, sizeof(err));
        store_close(s);
        _exit(ok ? 0 : 1);
    }
    return kid;
}

static void test_waits_for_writer(void **state)
{
    struct fx *f = *state;
    char err[512], id[37], c;
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t kid = hold_write_lock(1500, p[1]);
    assert_int_equal(read(p[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    int64_t t = mono_ms();
    item(f, f->m1, 3, 0, id); /* waits for the lock instead of failing */
    if (is_sqlite(f))
        assert_true(mono_ms() - t >= 1000);
    int status = 0;
    waitpid(kid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_status(f, id, "PENDING");
    if (!is_sqlite(f)) {
        close(p[0]);
        close(p[1]);
        return;
    }
    /* With a short busy timeout the wait ends in a clear message, not "database is locked". */
    struct store_options opts = {.busy_timeout_ms = 300};
    store *impatient = store_open_opts(g_url, &opts, err, sizeof(err));
    assert_non_null(impatient);
    kid = hold_write_lock(1500, p[1]);
    assert_int_equal(read(p[0], &c, 1), 1);
    json_t *v = J("{\"function\":\"noop\"}");
    struct store_item_spec sp = {
        .team = f->team, .machine = f->m1, .bridge = f->bridge, .vault = v};
    assert_rc(STORE_ERROR, store_queue_create(impatient, &sp, id, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "locked by another process"));
    waitpid(kid, &status, 0);
    store_close(impatient);
    json_decref(v);
    close(p[0]);
    close(p[1]);
}

static void test_wake_on_changes(void **state)
{
    struct fx *f = *state;
    char err[512], a[37], b[37];
    int fd = store_wait_fd(f->s, f->bridge2, err, sizeof(err));
    if (fd < 0)
        fail_msg("store_wait_fd: %s", err);
    item(f, f->m1, 3, 0, a);
    const char *after_a[] = {a};
    item_full(f, f->m3, f->bridge2, 3, 1, after_a, 1, b); /* wakes bridge2 */
    store_wait_drain(f->s);
    json_t *got = claim(f, f->bridge, 1, 10);
    assert_false(readable(fd, 0));
    /* a COMPLETED makes b ready: bridge2's host hears of it. */
    finish(f, a, token_of(got, 0), STORE_OUTCOME_COMPLETED, 11, STORE_OK);
    assert_true(readable(fd, 2000));
    store_wait_drain(f->s);
    json_decref(got);
    /* Cancelling a running item wakes its host. */
    got = claim(f, f->bridge2, 1, 20);
    assert_rc(STORE_OK, store_start(f->s, b, token_of(got, 0), f->t0 + 21, err, sizeof(err)));
    store_wait_drain(f->s);
    assert_rc(STORE_OK, store_queue_cancel(f->s, b, 0, NULL, err, sizeof(err)));
    assert_true(readable(fd, 2000));
    json_decref(got);
}

static void test_long_text_capped(void **state)
{
    struct fx *f = *state;
    char err[512], a[37];
    size_t n = 200000;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    item(f, f->m1, 3, 0, a);
    assert_rc(STORE_OK, store_event_append(f->s, a, "LOG", big, NULL, 0, err, sizeof(err)));
    json_t *got = claim(f, f->bridge, 1, 10);
    struct store_outcome o = {.kind = STORE_OUTCOME_FAILED, .reason = big};
    assert_rc(STORE_OK, store_finish(f->s, a, token_of(got, 0), &o, f->t0 + 11, err, sizeof(err)));
    json_t *row = get(f, a);
    assert_true(strlen(jstr(row, "lastFailureReason")) < 5000);
    json_decref(row);
    json_t *events = NULL;
    assert_rc(STORE_OK, store_event_list(f->s, a, &events, err, sizeof(err)));
    assert_true(strlen(jstr(json_array_get(events, 1), "details")) < 70000);
    json_decref(events);
    json_decref(got);
    free(big);
}

/* ---- the host's typed view --------------------------------------------------------------- */

static void test_claim_items_typed(void **state)
{
    struct fx *f = *state;
    char err[512], a[37], b[37], c[37];
    struct store_item *items = NULL;
    size_t n = 0;
    item(f, f->m1, 2, 0, a);
    item(f, f->m2, 1, 10, b);
    item(f, f->m1, 3, 20, c); /* m1 runs one item at a time: c waits for a */
    assert_rc(STORE_OK, store_claim_items(f->s, f->bridge, f->owner, 30000, 10, 1, f->t0 + 100,
                                          &items, &n, err, sizeof(err)));
    assert_int_equal(n, 2);
    assert_string_equal(items[0].task_id, b); /* priority 1 first */
    assert_string_equal(items[1].task_id, a);
    for (size_t i = 0; i < n; i++) {
        struct store_item *it = &items[i];
        assert_int_equal(strlen(it->token), 36);
        assert_string_equal(it->status, "PROCESSING"); /* the start folded in */
        assert_int_equal(it->attempt, 1);
        assert_int_equal(it->retry_count, 0);
        assert_string_equal(it->function, "noop");
        assert_string_equal(it->team, f->team);
        assert_string_equal(it->bridge, f->bridge);
        assert_string_equal(it->lease_owner, f->owner);
        assert_int_equal(it->started_ms, f->t0 + 100);
        assert_int_equal(it->lease_expires_ms, f->t0 + 30100);
        assert_int_equal(json_integer_value(json_object_get(it->vault, "x")), 1);
        assert_null(it->parent_task_id);
    }
    assert_string_equal(items[0].machine, f->m2);
    assert_string_not_equal(items[0].token, items[1].token);
    assert_status(f, a, "PROCESSING");
    /* Started already: a second start is refused. */
    assert_rc(STORE_CONFLICT,
              store_start(f->s, a, items[1].token, f->t0 + 101, err, sizeof(err)));
    json_t *events = NULL;
    assert_rc(STORE_OK, store_event_list(f->s, a, &events, err, sizeof(err)));
    assert_int_equal(json_array_size(events), 3);
    assert_string_equal(jstr(json_array_get(events, 1), "action"), "ASSIGNED");
    assert_string_equal(jstr(json_array_get(events, 2), "action"), "PROCESSING");
    json_decref(events);
    store_items_free(items, n);
    /* Nothing ready: an empty claim. Without start, items stay ASSIGNED. */
    assert_rc(STORE_OK, store_claim_items(f->s, f->bridge, f->owner, 30000, 10, 0, f->t0 + 200,
                                          &items, &n, err, sizeof(err)));
    assert_int_equal(n, 0);
    store_items_free(items, n);
    assert_rc(STORE_ERROR, store_claim_items(f->s, f->bridge2, f->owner, 30000, 0, 1, f->t0,
                                             &items, &n, err, sizeof(err)));
    assert_int_equal(n, 0);
}

/* A claim that starts its attempt reads, in the trace, exactly as a claim followed by a
 * start at the same instant: the same events, texts and times. */
static void test_claim_start_trace(void **state)
{
    struct fx *f = *state;
    char err[512], a[37], b[37];
    struct store_item *items = NULL;
    size_t n = 0;
    item(f, f->m1, 2, 0, a);
    item(f, f->m2, 2, 0, b);
    assert_rc(STORE_OK, store_claim_items(f->s, f->bridge, f->owner, 30000, 1, 0, f->t0 + 100,
                                          &items, &n, err, sizeof(err)));
    assert_int_equal(n, 1);
    assert_string_equal(items[0].task_id, a);
    assert_rc(STORE_OK, store_start(f->s, a, items[0].token, f->t0 + 100, err, sizeof(err)));
    store_items_free(items, n);
    assert_rc(STORE_OK, store_claim_items(f->s, f->bridge, f->owner, 30000, 1, 1, f->t0 + 100,
                                          &items, &n, err, sizeof(err)));
    assert_int_equal(n, 1);
    assert_string_equal(items[0].task_id, b);
    struct store_outcome o = {.kind = STORE_OUTCOME_COMPLETED};
    assert_rc(STORE_OK, store_finish(f->s, b, items[0].token, &o, f->t0 + 200, err, sizeof(err)));
    store_items_free(items, n);
    json_t *ea = NULL, *eb = NULL;
    assert_rc(STORE_OK, store_event_list(f->s, a, &ea, err, sizeof(err)));
    assert_rc(STORE_OK, store_event_list(f->s, b, &eb, err, sizeof(err)));
    assert_int_equal(json_array_size(ea), 3);
    assert_int_equal(json_array_size(eb), 4);
    assert_string_equal(jstr(json_array_get(eb, 3), "action"), "COMPLETED");
    json_array_remove(eb, 3);
    if (!json_equal(ea, eb)) {
        char *ta = json_dumps(ea, 0), *tb = json_dumps(eb, 0);
        fail_msg("claim then start:\n%s\nclaim with start:\n%s", ta, tb);
    }
    json_decref(ea);
    json_decref(eb);
}

static void test_claim_items_unstarted(void **state)
{
    struct fx *f = *state;
    char err[512], a[37];
    struct store_item *items = NULL;
    size_t n = 0;
    item(f, f->m1, 3, 0, a);
    assert_rc(STORE_OK, store_claim_items(f->s, f->bridge, f->owner, 30000, 5, 0, f->t0 + 100,
                                          &items, &n, err, sizeof(err)));
    assert_int_equal(n, 1);
    assert_string_equal(items[0].status, "ASSIGNED");
    assert_int_equal(items[0].started_ms, 0);
    assert_rc(STORE_OK, store_start(f->s, a, items[0].token, f->t0 + 101, err, sizeof(err)));
    assert_status(f, a, "PROCESSING");
    store_items_free(items, n);
}

static void test_finish_many(void **state)
{
    struct fx *f = *state;
    char err[512], a[37], b[37], c[37];
    struct store_item *items = NULL;
    size_t n = 0;
    item(f, f->m1, 3, 0, a);
    item(f, f->m2, 3, 10, b);
    item_full(f, f->m3, f->bridge2, 3, 20, NULL, 0, c);
    json_t *bad = NULL;
    assert_rc(STORE_OK, store_claim_items(f->s, f->bridge, f->owner, 30000, 10, 1, f->t0 + 100,
                                          &items, &n, err, sizeof(err)));
    assert_int_equal(n, 2);
    json_t *resp = J("{\"status\":\"completed\",\"result\":{\"n\":7}}");
    const char *wrong = "00000000-0000-4000-8000-000000000000";
    struct store_finish fin[5] = {
        {items[0].task_id, items[0].token, {.kind = STORE_OUTCOME_COMPLETED, .response = resp}},
        {items[1].task_id, wrong, {.kind = STORE_OUTCOME_FAILED, .reason = "stale host"}},
        {items[1].task_id, NULL, {.kind = STORE_OUTCOME_COMPLETED}},
        {"00000000-0000-4000-8000-000000000001", wrong, {.kind = STORE_OUTCOME_COMPLETED}},
        /* Another item's token, which ends with that item's seq: it names nothing here. */
        {items[1].task_id, items[0].token, {.kind = STORE_OUTCOME_FAILED, .reason = "mixed up"}},
    };
    int rcs[5] = {-9, -9, -9, -9, -9};
    assert_rc(STORE_OK, store_finish_many(f->s, fin, 5, rcs, f->t0 + 200, err, sizeof(err)));
    assert_int_equal(rcs[0], STORE_OK);
    assert_int_equal(rcs[1], STORE_CONFLICT); /* the token is checked per entry */
    assert_int_equal(rcs[2], STORE_ERROR);    /* no token: invalid, left out */
    assert_int_equal(rcs[3], STORE_CONFLICT); /* no such item */
    assert_int_equal(rcs[4], STORE_CONFLICT);
    json_t *row = get(f, a);
    assert_string_equal(jstr(row, "status"), "COMPLETED");
    assert_true(json_equal(json_object_get(row, "responseVault"), resp));
    json_decref(row);
    assert_status(f, b, "PROCESSING"); /* the wrong token changed nothing */
    /* b retries, c (claimed on its own bridge) is being cancelled, so its release ends it. */
    struct store_item *other = NULL;
    size_t n_other = 0;
    assert_rc(STORE_OK, store_claim_items(f->s, f->bridge2, f->owner, 30000, 10, 1,
                                          f->t0 + 300, &other, &n_other, err, sizeof(err)));
    assert_int_equal(n_other, 1);
    assert_rc(STORE_OK, store_queue_cancel(f->s, c, 0, &bad, err, sizeof(err)));
    assert_string_equal(jstr(bad, "status"), "CANCELLING");
    struct store_finish more[2] = {
        {items[1].task_id, items[1].token,
         {.kind = STORE_OUTCOME_RETRY, .reason = "try again", .run_after_ms = f->t0 + 1000}},
        {other[0].task_id, other[0].token, {.kind = STORE_OUTCOME_RELEASE}},
    };
    assert_rc(STORE_OK, store_finish_many(f->s, more, 2, rcs, f->t0 + 400, err, sizeof(err)));
    assert_int_equal(rcs[0], STORE_OK);
    assert_int_equal(rcs[1], STORE_OK);
    row = get(f, b);
    assert_string_equal(jstr(row, "status"), "PENDING");
    assert_int_equal(jint(row, "retryCount"), 1);
    assert_string_equal(jstr(row, "lastFailureReason"), "try again");
    json_decref(row);
    assert_status(f, c, "CANCELLED");
    /* Nothing to end is fine. */
    assert_rc(STORE_OK, store_finish_many(f->s, NULL, 0, NULL, f->t0 + 500, err, sizeof(err)));
    json_decref(bad);
    json_decref(resp);
    store_items_free(other, n_other);
    store_items_free(items, n);
}

/* Final ends of one store_finish_many whose first and last items (by seq: the ends of the
 * range the store asks about dependencies once for) have dependents: each FAILED end cancels
 * its dependent; the COMPLETED end between them has none. */
static void test_finish_many_dependents(void **state)
{
    struct fx *f = *state;
    char err[512], ma[64], a[37], b[37], c[37], d[37], e[37];
    fresh_name(ma, sizeof(ma), "ma");
    assert_rc(STORE_OK,
              store_machine_create(f->s, f->team, f->bridge, ma, NULL, NULL, err, sizeof(err)));
    item(f, f->m1, 3, 0, a);
    item(f, f->m2, 3, 10, b);
    item(f, ma, 3, 20, c);
    const char *after_a[] = {a}, *after_c[] = {c};
    item_full(f, f->m1, f->bridge, 3, 30, after_a, 1, d);
    item_full(f, f->m2, f->bridge, 3, 40, after_c, 1, e);
    struct store_item *items = NULL;
    size_t n = 0;
    assert_rc(STORE_OK, store_claim_items(f->s, f->bridge, f->owner, 30000, 10, 1, f->t0 + 100,
                                          &items, &n, err, sizeof(err)));
    assert_int_equal(n, 3);
    struct store_finish fin[3];
    int rcs[3];
    for (size_t i = 0; i < n; i++)
        fin[i] = (struct store_finish){items[i].task_id, items[i].token,
                                       {.kind = strcmp(items[i].task_id, b) == 0
                                                    ? STORE_OUTCOME_COMPLETED
                                                    : STORE_OUTCOME_FAILED,
                                        .reason = "boom"}};
    assert_rc(STORE_OK, store_finish_many(f->s, fin, n, rcs, f->t0 + 200, err, sizeof(err)));
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rcs[i], STORE_OK);
    assert_status(f, a, "FAILED");
    assert_status(f, b, "COMPLETED");
    assert_status(f, c, "FAILED");
    assert_status(f, d, "CANCELLED");
    assert_status(f, e, "CANCELLED");
    store_items_free(items, n);
}

static void test_recovery_items(void **state)
{
    struct fx *f = *state;
    char err[512], a[37];
    struct store_item *items = NULL, *got = NULL;
    size_t n = 0, n_got = 0;
    item(f, f->m1, 3, 0, a);
    assert_rc(STORE_OK, store_claim_items(f->s, f->bridge, f->owner, 30000, 1, 1, f->t0 + 1000,
                                          &items, &n, err, sizeof(err)));
    assert_int_equal(n, 1);
    assert_rc(STORE_OK,
              store_expired_items(f->s, f->bridge, f->t0 + 30999, &got, &n_got, err, sizeof(err)));
    assert_int_equal(n_got, 0);
    store_items_free(got, n_got);
    assert_rc(STORE_OK,
              store_expired_items(f->s, f->bridge, f->t0 + 31000, &got, &n_got, err, sizeof(err)));
    assert_int_equal(n_got, 1);
    assert_string_equal(got[0].task_id, a);
    assert_string_equal(got[0].token, items[0].token);
    assert_string_equal(got[0].status, "PROCESSING");
    store_items_free(got, n_got);
    assert_rc(STORE_OK,
              store_cancelling_items(f->s, f->owner, &got, &n_got, err, sizeof(err)));
    assert_int_equal(n_got, 0);
    store_items_free(got, n_got);
    json_t *row = NULL;
    assert_rc(STORE_OK, store_queue_cancel(f->s, a, 0, &row, err, sizeof(err)));
    json_decref(row);
    assert_rc(STORE_OK,
              store_cancelling_items(f->s, f->owner, &got, &n_got, err, sizeof(err)));
    assert_int_equal(n_got, 1);
    assert_string_equal(got[0].status, "CANCELLING");
    assert_string_equal(got[0].token, items[0].token);
    store_items_free(got, n_got);
    assert_rc(STORE_ERROR,
              store_cancelling_items(f->s, "", &got, &n_got, err, sizeof(err)));
    store_items_free(items, n);
}

/* A claim of the most a host takes at once: one transaction, every item started once. */
static void test_claim_items_full_batch(void **state)
{
    struct fx *f = *state;
    char err[512], big[64];
    fresh_name(big, sizeof(big), "mbig");
    json_t *mv = J("{\"concurrency\":5000}");
    assert_rc(STORE_OK,
              store_machine_create(f->s, f->team, f->bridge, big, mv, NULL, err, sizeof(err)));
    json_decref(mv);
    json_t *vault = J("{\"function\":\"noop\"}");
    enum { N = 1100 };
    struct store_item_spec *specs = calloc(N, sizeof(*specs));
    for (size_t i = 0; i < N; i++)
        specs[i] = (struct store_item_spec){
            .team = f->team, .machine = big, .bridge = f->bridge, .vault = vault, .now_ms = f->t0};
    assert_rc(STORE_OK, store_queue_create_batch(f->s, specs, N, NULL, err, sizeof(err)));
    struct store_item *items = NULL;
    size_t n = 0;
    assert_rc(STORE_OK, store_claim_items(f->s, f->bridge, f->owner, 30000, 5000, 1, f->t0 + 100,
                                          &items, &n, err, sizeof(err)));
    assert_int_equal(n, 1024); /* at most 1024 per claim */
    struct store_finish *fin = calloc(n, sizeof(*fin));
    int *rcs = calloc(n, sizeof(int));
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(items[i].status, "PROCESSING");
        for (size_t k = i + 1; k < n && k < i + 4; k++)
            assert_string_not_equal(items[i].token, items[k].token);
        fin[i] = (struct store_finish){items[i].task_id, items[i].token,
                                       {.kind = STORE_OUTCOME_COMPLETED}};
    }
    assert_rc(STORE_OK, store_finish_many(f->s, fin, n, rcs, f->t0 + 200, err, sizeof(err)));
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rcs[i], STORE_OK);
    store_items_free(items, n);
    assert_rc(STORE_OK, store_claim_items(f->s, f->bridge, f->owner, 30000, 5000, 1, f->t0 + 300,
                                          &items, &n, err, sizeof(err)));
    assert_int_equal(n, N - 1024);
    store_items_free(items, n);
    free(fin);
    free(rcs);
    free(specs);
    json_decref(vault);
}

/* A filter with thousands of values is one query with as many parameters, on every driver. */
static void test_list_many_teams(void **state)
{
    struct fx *f = *state;
    char err[512], a[37];
    enum { N = 3000 };
    char(*names)[16] = calloc(N, 16);
    const char **teams = calloc(N, sizeof(*teams));
    for (size_t i = 0; i < N; i++) {
        snprintf(names[i], 16, "nobody%zu", i);
        teams[i] = names[i];
    }
    teams[N - 1] = f->team;
    item(f, f->m1, 3, 0, a);
    struct store_queue_filter filter = {.teams = teams, .n_teams = N, .machine = f->m1};
    json_t *rows = NULL;
    int64_t count = 0;
    assert_rc(STORE_OK, store_queue_list(f->s, &filter, &rows, err, sizeof(err)));
    assert_int_equal(json_array_size(rows), 1);
    assert_rc(STORE_OK, store_queue_count(f->s, &filter, &count, err, sizeof(err)));
    assert_int_equal(count, 1);
    json_decref(rows);
    free(teams);
    free(names);
}

/* ---- machine groups and fan-out (groups.c) -------------------------------------------------- */

/* Creates group name of f->team with the members m1, m2 (and m1's bridge). */
static void make_group(struct fx *f, char *name, size_t n, const char *members_json)
{
    char err[512], text[300];
    fresh_name(name, n, "g");
    snprintf(text, sizeof(text), "{\"members\":%s}", members_json);
    json_t *v = J(text);
    assert_rc(STORE_OK, store_machine_group_create(f->s, f->team, name, v, NULL, err, sizeof(err)));
    json_decref(v);
}

/* Creates an item for group at t0 + at_ms with the vault text. */
static void group_item(struct fx *f, const char *group, const char *vault, int64_t at_ms,
                       char id[37])
{
    char err[512];
    json_t *v = J(vault);
    struct store_item_spec sp = {
        .team = f->team, .machine = group, .bridge = f->bridge, .vault = v, .now_ms = f->t0 + at_ms};
    assert_rc(STORE_OK, store_queue_create(f->s, &sp, id, NULL, err, sizeof(err)));
    json_decref(v);
}

/* The member items of parent, oldest first (a list filtered by the group). */
static json_t *members_of(struct fx *f, const char *group, const char *parent)
{
    char err[512];
    json_t *rows = NULL, *out = json_array();
    struct store_queue_filter flt = {.machine = group};
    assert_rc(STORE_OK, store_queue_list(f->s, &flt, &rows, err, sizeof(err)));
    for (size_t i = json_array_size(rows); i-- > 0;) {
        json_t *r = json_array_get(rows, i);
        if (jstr(r, "parentTaskId") && strcmp(jstr(r, "parentTaskId"), parent) == 0)
            json_array_append(out, r);
    }
    json_decref(rows);
    return out;
}

static void test_group_crud(void **state)
{
    struct fx *f = *state;
    char err[512], g[64], text[400];
    json_t *row = NULL, *rows = NULL, *v = NULL;
    snprintf(text, sizeof(text), "{\"members\":[\"%s\",\"%s\"]}", f->m1, f->m2);
    fresh_name(g, sizeof(g), "g");
    v = J(text);
    assert_rc(STORE_OK, store_machine_group_create(f->s, f->team, g, v, &row, err, sizeof(err)));
    json_decref(v);
    assert_string_equal(jstr(row, "groupName"), g);
    assert_string_equal(jstr(row, "teamName"), f->team);
    assert_int_equal(json_array_size(json_object_get(row, "members")), 2);
    json_decref(row);
    assert_rc(STORE_OK, store_resource_list(f->s, STORE_MACHINE_GROUP, f->team, &rows, err,
                                            sizeof(err)));
    assert_int_equal(json_array_size(rows), 1);
    json_decref(rows);
    /* Bad members: one line naming the member and the fix. */
    struct {
        const char *members, *want;
        int rc;
    } bad[] = {
        {"[]", "non-empty list", STORE_ERROR},
        {"[\"ghost-m\"]", "member 'ghost-m': no machine named 'ghost-m'; create it with",
         STORE_NOT_FOUND},
        {"[\"%1$s\",\"%1$s\"]", "is listed twice", STORE_ERROR},
        {"[\"%3$s\"]", "belongs to team", STORE_NOT_FOUND},
        {"[\"%4$s\"]", "groups cannot contain groups", STORE_ERROR},
        {"[\"%5$s\"]", "cannot contain itself", STORE_ERROR},
        {"[3]", "machine names", STORE_ERROR},
    };
    char g2[64];
    fresh_name(g2, sizeof(g2), "g2");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char members[300];
        snprintf(members, sizeof(members), bad[i].members, f->m1, f->m2, f->mx, g, g2);
        snprintf(text, sizeof(text), "{\"members\":%s}", members);
        v = J(text);
        assert_rc(bad[i].rc, store_machine_group_create(f->s, f->team, g2, v, NULL, err,
                                                        sizeof(err)));
        if (strstr(err, bad[i].want) == NULL)
            fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i].want);
        json_decref(v);
    }
    /* Machines and groups share one name space. */
    snprintf(text, sizeof(text), "{\"members\":[\"%s\"]}", f->m2);
    v = J(text);
    assert_rc(STORE_CONFLICT,
              store_machine_group_create(f->s, f->team, f->m1, v, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot take a machine's name"));
    json_decref(v);
    assert_rc(STORE_CONFLICT,
              store_machine_create(f->s, f->team2, f->bridge, g, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot take a group's name"));
    /* A member cannot be removed; out of the group it can. */
    assert_rc(STORE_CONFLICT, store_resource_delete(f->s, STORE_MACHINE, NULL, f->m2, err,
                                                    sizeof(err)));
    assert_non_null(strstr(err, "--remove"));
    snprintf(text, sizeof(text), "{\"members\":[\"%s\"]}", f->m1);
    v = J(text);
    assert_rc(STORE_CONFLICT, store_resource_update_vault(f->s, STORE_MACHINE_GROUP, f->team, g,
                                                          v, 7, STORE_VAULT_MERGE, NULL, err,
                                                          sizeof(err)));
    assert_rc(STORE_OK, store_resource_update_vault(f->s, STORE_MACHINE_GROUP, f->team, g, v, 1,
                                                    STORE_VAULT_MERGE, &row, err, sizeof(err)));
    assert_int_equal(json_array_size(json_object_get(row, "members")), 1);
    assert_int_equal(jint(row, "vaultVersion"), 2);
    json_decref(row);
    json_decref(v);
    assert_rc(STORE_OK, store_resource_delete(f->s, STORE_MACHINE, NULL, f->m2, err, sizeof(err)));
    v = J("{\"members\":[]}");
    assert_rc(STORE_ERROR, store_resource_update_vault(f->s, STORE_MACHINE_GROUP, f->team, g, v,
                                                       -1, STORE_VAULT_MERGE, NULL, err,
                                                       sizeof(err)));
    json_decref(v);
    assert_rc(STORE_OK, store_resource_delete(f->s, STORE_MACHINE_GROUP, f->team, g, err,
                                              sizeof(err)));
    assert_rc(STORE_NOT_FOUND, store_resource_get(f->s, STORE_MACHINE_GROUP, f->team, g, &row,
                                                  err, sizeof(err)));
    assert_non_null(strstr(err, "ferry create machine-group"));
}

/* Ends the claimed items of got with kind, at at_ms. */
static void finish_all(struct fx *f, json_t *got, enum store_outcome_kind kind, int64_t at_ms)
{
    for (size_t i = 0; i < json_array_size(got); i++)
        finish(f, claimed_id(got, i), token_of(got, i), kind, at_ms, STORE_OK);
}

static void test_group_fanout(void **state)
{
    struct fx *f = *state;
    char err[512], g[64], members[200], p[37];
    snprintf(members, sizeof(members), "[\"%s\",\"%s\"]", f->m1, f->m2);
    make_group(f, g, sizeof(g), members);
    group_item(f, g, "{\"function\":\"noop\",\"x\":1}", 0, p);
    json_t *row = get(f, p);
    assert_string_equal(jstr(row, "status"), "PROCESSING");
    assert_string_equal(jstr(row, "machineName"), g);
    assert_int_equal(json_array_size(json_object_get(row, "after")), 2);
    json_decref(row);
    json_t *kids = members_of(f, g, p);
    assert_int_equal(json_array_size(kids), 2);
    assert_string_equal(jstr(json_array_get(kids, 0), "machineName"), f->m1);
    assert_string_equal(jstr(json_array_get(kids, 0), "linkKind"), "member");
    assert_string_equal(jstr(json_object_get(json_array_get(kids, 0), "vaultContent"), "function"),
                        "noop");
    json_decref(kids);
    /* The parent is never claimed: only the two members are. */
    json_t *got = claim(f, f->bridge, 10, 10);
    assert_int_equal(json_array_size(got), 2);
    for (size_t i = 0; i < 2; i++)
        assert_string_not_equal(claimed_id(got, i), p);
    finish(f, claimed_id(got, 0), token_of(got, 0), STORE_OUTCOME_COMPLETED, 11, STORE_OK);
    assert_status(f, p, "PROCESSING");
    row = get(f, p);
    assert_int_equal(jint(json_object_get(row, "progress"), "percent"), 50);
    /* An hour old, but the parent holds no lease: its members carry the health. */
    assert_string_equal(jstr(row, "healthStatus"), "ACTIVE");
    json_decref(row);
    json_t *stale = NULL;
    struct store_queue_filter only_stale = {.machine = g, .only_stale = 1};
    assert_rc(STORE_OK, store_queue_list(f->s, &only_stale, &stale, err, sizeof(err)));
    assert_int_equal(json_array_size(stale), 1); /* the running member, not the parent */
    assert_string_not_equal(jstr(json_array_get(stale, 0), "taskId"), p);
    json_decref(stale);
    /* A second end of the same member changes nothing (exactly once). */
    finish(f, claimed_id(got, 0), token_of(got, 0), STORE_OUTCOME_COMPLETED, 12, STORE_CONFLICT);
    finish(f, claimed_id(got, 1), token_of(got, 1), STORE_OUTCOME_FAILED, 13, STORE_OK);
    row = get(f, p);
    assert_string_equal(jstr(row, "status"), "FAILED");
    json_t *resp = json_object_get(row, "responseVault");
    assert_int_equal(jint(resp, "total"), 2);
    assert_int_equal(jint(resp, "completed"), 1);
    assert_int_equal(jint(resp, "failed"), 1);
    json_t *second = json_array_get(json_object_get(resp, "members"), 1);
    assert_string_equal(jstr(second, "status"), "FAILED");
    assert_string_equal(jstr(second, "error"), "test says so");
    assert_non_null(jstr(second, "taskId"));
    assert_non_null(strstr(jstr(row, "lastFailureReason"), "not completed"));
    json_decref(row);
    json_decref(got);
    /* A retry of the parent runs again only what did not complete. */
    char r[37];
    json_t *v = J("{\"function\":\"noop\",\"x\":1}");
    struct store_item_spec sp = {.team = f->team, .machine = g, .bridge = f->bridge, .vault = v,
                                 .parent_task_id = p, .link_kind = "retry",
                                 .now_ms = f->t0 + 20};
    assert_rc(STORE_OK, store_queue_create(f->s, &sp, r, NULL, err, sizeof(err)));
    json_decref(v);
    kids = members_of(f, g, r);
    assert_int_equal(json_array_size(kids), 1);
    assert_string_equal(jstr(json_array_get(kids, 0), "machineName"), f->m2);
    json_decref(kids);
    got = claim(f, f->bridge, 10, 30);
    assert_int_equal(json_array_size(got), 1);
    finish_all(f, got, STORE_OUTCOME_COMPLETED, 31);
    json_decref(got);
    assert_status(f, r, "COMPLETED");
    /* In one batch: group, machine, group (the children's seqs never collide with the
     * items after them). */
    char ids[3][37];
    v = J("{\"function\":\"noop\"}");
    struct store_item_spec three[3] = {
        {.team = f->team, .machine = g, .bridge = f->bridge, .vault = v},
        {.team = f->team, .machine = f->m1, .bridge = f->bridge, .vault = v},
        {.team = f->team, .machine = g, .bridge = f->bridge, .vault = v},
    };
    assert_rc(STORE_OK, store_queue_create_batch(f->s, three, 3, ids, err, sizeof(err)));
    json_decref(v);
    assert_status(f, ids[1], "PENDING");
    for (int k = 0; k < 3; k += 2) {
        kids = members_of(f, g, ids[k]);
        assert_int_equal(json_array_size(kids), 2);
        json_decref(kids);
        assert_rc(STORE_OK, store_queue_cancel(f->s, ids[k], 0, NULL, err, sizeof(err)));
        assert_status(f, ids[k], "CANCELLED");
    }
    /* A member of a running group cannot be removed. */
    char q[37];
    group_item(f, g, "{\"function\":\"noop\"}", 40, q);
    kids = members_of(f, g, q);
    assert_rc(STORE_CONFLICT, store_queue_delete(f->s, jstr(json_array_get(kids, 0), "taskId"),
                                                 err, sizeof(err)));
    assert_non_null(strstr(err, "is a member of group item"));
    json_decref(kids);
}

static void test_group_max_parallel(void **state)
{
    struct fx *f = *state;
    char err[512], g[64], members[300], p[37];
    json_t *v = J("{\"concurrency\":5}");
    assert_rc(STORE_OK, store_resource_update_vault(f->s, STORE_MACHINE, NULL, f->m1, v, -1,
                                                    STORE_VAULT_MERGE, NULL, err, sizeof(err)));
    json_decref(v);
    char m4[64], m5[64];
    fresh_name(m4, sizeof(m4), "m4");
    fresh_name(m5, sizeof(m5), "m5");
    assert_rc(STORE_OK, store_machine_create(f->s, f->team, f->bridge, m4, NULL, NULL, err,
                                             sizeof(err)));
    assert_rc(STORE_OK, store_machine_create(f->s, f->team, f->bridge, m5, NULL, NULL, err,
                                             sizeof(err)));
    snprintf(members, sizeof(members), "[\"%s\",\"%s\",\"%s\",\"%s\"]", f->m1, f->m2, m4, m5);
    make_group(f, g, sizeof(g), members);
    group_item(f, g, "{\"function\":\"noop\",\"max_parallel\":2}", 0, p);
    json_t *kids = members_of(f, g, p);
    assert_null(json_object_get(json_object_get(json_array_get(kids, 0), "vaultContent"),
                                "max_parallel"));
    json_decref(kids);
    /* Two start; each end lets one more start; never three at once. */
    json_t *first = claim(f, f->bridge, 10, 100);
    assert_int_equal(json_array_size(first), 2);
    json_t *none = claim(f, f->bridge, 10, 101);
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
    finish(f, claimed_id(first, 0), token_of(first, 0), STORE_OUTCOME_COMPLETED, 102, STORE_OK);
    json_t *third = claim(f, f->bridge, 10, 103);
    assert_int_equal(json_array_size(third), 1);
    assert_string_equal(jstr(json_array_get(third, 0), "machineName"), m4);
    none = claim(f, f->bridge, 10, 104);
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
    finish(f, claimed_id(first, 1), token_of(first, 1), STORE_OUTCOME_FAILED, 105, STORE_OK);
    json_t *fourth = claim(f, f->bridge, 10, 106);
    assert_int_equal(json_array_size(fourth), 1); /* a failure frees a slot too */
    assert_string_equal(jstr(json_array_get(fourth, 0), "machineName"), m5);
    finish_all(f, third, STORE_OUTCOME_COMPLETED, 107);
    assert_status(f, p, "PROCESSING");
    finish_all(f, fourth, STORE_OUTCOME_COMPLETED, 108);
    json_decref(first);
    json_decref(third);
    json_decref(fourth);
    assert_status(f, p, "FAILED");
    json_t *events = NULL;
    assert_rc(STORE_OK, store_event_list(f->s, p, &events, err, sizeof(err)));
    assert_int_equal(json_array_size(events), 2 + 4 + 1); /* CREATED FANOUT, 4 ends, FAILED */
    json_decref(events);
    /* stop_on_failure: after a failure, the members not started are cancelled. */
    char q[37];
    group_item(f, g, "{\"function\":\"noop\",\"max_parallel\":1,\"stop_on_failure\":true}", 200,
               q);
    json_t *got = claim(f, f->bridge, 10, 210);
    assert_int_equal(json_array_size(got), 1);
    finish(f, claimed_id(got, 0), token_of(got, 0), STORE_OUTCOME_FAILED, 211, STORE_OK);
    json_decref(got);
    json_t *row = get(f, q);
    assert_string_equal(jstr(row, "status"), "FAILED");
    json_t *resp = json_object_get(row, "responseVault");
    assert_int_equal(jint(resp, "failed"), 1);
    assert_int_equal(jint(resp, "cancelled"), 3);
    assert_non_null(strstr(jstr(json_array_get(json_object_get(resp, "members"), 1), "error"),
                           "stop_on_failure"));
    json_decref(row);
    got = claim(f, f->bridge, 10, 220);
    assert_int_equal(json_array_size(got), 0);
    json_decref(got);
    /* Bad settings are refused at create. */
    char x[37];
    v = J("{\"function\":\"noop\",\"max_parallel\":0}");
    struct store_item_spec sp = {.team = f->team, .machine = g, .bridge = f->bridge, .vault = v};
    assert_rc(STORE_ERROR, store_queue_create(f->s, &sp, x, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "max_parallel"));
    json_decref(v);
}

static void test_group_cancel(void **state)
{
    struct fx *f = *state;
    char err[512], g[64], members[200], p[37];
    snprintf(members, sizeof(members), "[\"%s\",\"%s\"]", f->m1, f->m2);
    make_group(f, g, sizeof(g), members);
    group_item(f, g, "{\"function\":\"noop\"}", 0, p);
    json_t *got = claim(f, f->bridge, 1, 10); /* one member starts, one waits */
    assert_int_equal(json_array_size(got), 1);
    assert_rc(STORE_OK, store_start(f->s, claimed_id(got, 0), token_of(got, 0), f->t0 + 11, err,
                                    sizeof(err)));
    json_t *row = NULL;
    assert_rc(STORE_OK, store_queue_cancel(f->s, p, 0, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "status"), "CANCELLING");
    json_decref(row);
    assert_status(f, claimed_id(got, 0), "CANCELLING");
    /* The running member's host stops it: the parent ends CANCELLED. */
    finish(f, claimed_id(got, 0), token_of(got, 0), STORE_OUTCOME_CANCELLED, 12, STORE_OK);
    row = get(f, p);
    assert_string_equal(jstr(row, "status"), "CANCELLED");
    assert_int_equal(jint(json_object_get(row, "responseVault"), "cancelled"), 2);
    json_decref(row);
    json_decref(got);
    /* Forced, and a group item after a dependency that fails. */
    char q[37], a[37], r[37];
    group_item(f, g, "{\"function\":\"noop\"}", 20, q);
    assert_rc(STORE_OK, store_queue_cancel(f->s, q, 1, NULL, err, sizeof(err)));
    assert_status(f, q, "CANCELLED");
    item(f, f->m1, 1, 30, a);
    const char *after_a[] = {a};
    json_t *v = J("{\"function\":\"noop\"}");
    struct store_item_spec sp = {.team = f->team, .machine = g, .bridge = f->bridge, .vault = v,
                                 .after = after_a, .n_after = 1, .now_ms = f->t0 + 31};
    assert_rc(STORE_OK, store_queue_create(f->s, &sp, r, NULL, err, sizeof(err)));
    json_decref(v);
    got = claim(f, f->bridge, 10, 40);
    assert_int_equal(json_array_size(got), 1); /* a; the members wait for it */
    assert_string_equal(claimed_id(got, 0), a);
    finish(f, a, token_of(got, 0), STORE_OUTCOME_FAILED, 41, STORE_OK);
    json_decref(got);
    assert_status(f, r, "FAILED");
}

/* ---- group members ending together (one store_finish_many) -------------------------------- */

/* The parent's events: how many MEMBER_ENDED name task (its "(task ID)"), all of them, and
 * whether every one comes before the parent's end (action end_action). */
static void member_ends(struct fx *f, const char *parent, const char *task, size_t *of_task,
                        size_t *all, int *before_end, const char *end_action)
{
    char err[512], needle[60];
    json_t *events = NULL;
    assert_rc(STORE_OK, store_event_list(f->s, parent, &events, err, sizeof(err)));
    snprintf(needle, sizeof(needle), "(task %s)", task);
    *of_task = *all = 0;
    *before_end = 1;
    int ended = 0;
    for (size_t i = 0; i < json_array_size(events); i++) {
        json_t *e = json_array_get(events, i);
        const char *action = jstr(e, "action");
        if (end_action && strcmp(action, end_action) == 0)
            ended++;
        if (strcmp(action, "MEMBER_ENDED") != 0)
            continue;
        (*all)++;
        *before_end &= !ended;
        *of_task += strstr(jstr(e, "details"), needle) != NULL;
    }
    if (end_action)
        assert_int_equal(ended, 1); /* the parent ends exactly once */
    json_decref(events);
}

/* Ends the members of got whose machine is listed in order (kinds[i] for order[i]) in one
 * store_finish_many call. */
static void finish_members_together(struct fx *f, json_t *got, const char *const *order,
                                    const enum store_outcome_kind *kinds, size_t n,
                                    int64_t at_ms)
{
    char err[512];
    struct store_finish fin[8];
    int rcs[8];
    assert_true(n <= 8);
    for (size_t k = 0; k < n; k++) {
        size_t i = 0;
        while (i < json_array_size(got) &&
               strcmp(jstr(json_array_get(got, i), "machineName"), order[k]) != 0)
            i++;
        assert_true(i < json_array_size(got));
        fin[k] = (struct store_finish){claimed_id(got, i), token_of(got, i),
                                       {.kind = kinds[k], .reason = "batch says so"}};
        rcs[k] = -9;
    }
    assert_rc(STORE_OK, store_finish_many(f->s, fin, n, rcs, f->t0 + at_ms, err, sizeof(err)));
    for (size_t k = 0; k < n; k++)
        assert_int_equal(rcs[k], STORE_OK);
}

/* Members that end in one statement (a host's batch of ends) are each recorded once on the
 * parent (MEMBER_ENDED), before its one end, and its response lists every member's status,
 * whatever the batching and the order of the entries. */
static void test_group_members_end_together(void **state)
{
    struct fx *f = *state;
    char err[512], g[64], members[300], more[2][64];
    for (size_t i = 0; i < 2; i++) { /* two machines more on the bridge: four members */
        fresh_name(more[i], sizeof(more[i]), i ? "mb" : "ma");
        assert_rc(STORE_OK, store_machine_create(f->s, f->team, f->bridge, more[i], NULL, NULL,
                                                 err, sizeof(err)));
    }
    const char *mach[4] = {f->m1, f->m2, more[0], more[1]};
    snprintf(members, sizeof(members), "[\"%s\",\"%s\",\"%s\",\"%s\"]", mach[0], mach[1],
             mach[2], mach[3]);
    make_group(f, g, sizeof(g), members);
    const enum store_outcome_kind C = STORE_OUTCOME_COMPLETED, F = STORE_OUTCOME_FAILED;
    /* Batchings of the four ends (sizes, in order) and the order of the entries. */
    struct {
        size_t sizes[4];
        const char *order[4];
        enum store_outcome_kind kinds[4];
        const char *end;
        int completed, failed;
    } cases[] = {
        {{4}, {mach[0], mach[1], mach[2], mach[3]}, {C, C, C, C}, "COMPLETED", 4, 0},
        {{4}, {mach[3], mach[1], mach[0], mach[2]}, {C, F, C, C}, "FAILED", 3, 1},
        {{1, 3}, {mach[2], mach[3], mach[0], mach[1]}, {C, C, F, C}, "FAILED", 3, 1},
        {{2, 2}, {mach[1], mach[3], mach[2], mach[0]}, {C, C, C, C}, "COMPLETED", 4, 0},
        {{3, 1}, {mach[0], mach[3], mach[2], mach[1]}, {F, C, C, F}, "FAILED", 2, 2},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        char p[37];
        int64_t at = 1000 * (int64_t)(c + 1);
        group_item(f, g, "{\"function\":\"noop\"}", at, p);
        json_t *got = claim(f, f->bridge, 10, at + 10);
        assert_int_equal(json_array_size(got), 4);
        size_t done = 0;
        for (size_t b = 0; b < 4 && cases[c].sizes[b]; b++) {
            assert_status(f, p, "PROCESSING");
            finish_members_together(f, got, cases[c].order + done, cases[c].kinds + done,
                                    cases[c].sizes[b], at + 20 + (int64_t)b);
            done += cases[c].sizes[b];
        }
        assert_int_equal(done, 4);
        json_t *row = get(f, p);
        if (strcmp(jstr(row, "status"), cases[c].end) != 0)
            fail_msg("case %zu: the parent is %s, not %s", c, jstr(row, "status"), cases[c].end);
        json_t *resp = json_object_get(row, "responseVault");
        assert_int_equal(jint(resp, "total"), 4);
        assert_int_equal(jint(resp, "completed"), cases[c].completed);
        assert_int_equal(jint(resp, "failed"), cases[c].failed);
        json_t *list = json_object_get(resp, "members");
        assert_int_equal(json_array_size(list), 4);
        for (size_t i = 0; i < 4; i++) {
            json_t *m = json_array_get(list, i);
            assert_string_equal(jstr(m, "machine"), mach[i]);
            size_t k = 0;
            while (strcmp(cases[c].order[k], mach[i]) != 0)
                k++;
            assert_string_equal(jstr(m, "status"), cases[c].kinds[k] == C ? "COMPLETED" : "FAILED");
            size_t of_task = 0, all = 0;
            int before_end = 0;
            member_ends(f, p, jstr(m, "taskId"), &of_task, &all, &before_end, cases[c].end);
            if (of_task != 1 || all != 4 || !before_end)
                fail_msg("case %zu, member %s: %zu MEMBER_ENDED of its own, %zu in all, %s the "
                         "parent's end",
                         c, mach[i], of_task, all, before_end ? "all before" : "some after");
        }
        json_decref(row);
        json_decref(got);
    }
}

/* A store of schema version 2 (migration 3 undone) is brought to version 3, its items and
 * resources kept, and groups work in it. */
static void test_upgrade_from_v2(void **state)
{
    struct fx *f = *state;
    char err[512], path[128], a[37], g[64], p[37], members[200];
    if (!is_sqlite(f))
        skip();
    snprintf(path, sizeof(path), "%s/upgrade2-%d.db", g_dir, (int)getpid());
    store *s = store_open(path, err, sizeof(err));
    assert_non_null(s);
    struct fx h = *f;
    h.s = s;
    assert_rc(STORE_OK, store_region_create(s, f->region, NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_bridge_create(s, f->region, f->bridge, NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_team_create(s, f->team, NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK,
              store_machine_create(s, f->team, f->bridge, f->m1, NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK,
              store_machine_create(s, f->team, f->bridge, f->m2, NULL, NULL, err, sizeof(err)));
    item(&h, f->m1, 3, 0, a);
    store_close(s);
    raw_sql(path, UNDO_MIGRATION_5 "DROP INDEX qi_parent; DROP TABLE machine_groups;"
                  "DELETE FROM schema_migrations WHERE version >= 3;");
    s = store_open(path, err, sizeof(err));
    assert_non_null(s);
    h.s = s;
    json_t *rows = NULL;
    assert_rc(STORE_OK, store_migrations(s, &rows, err, sizeof(err)));
    assert_int_equal(jint(json_array_get(rows, json_array_size(rows) - 1), "version"),
                     latest_version(f));
    json_decref(rows);
    assert_status(&h, a, "PENDING");
    snprintf(members, sizeof(members), "[\"%s\",\"%s\"]", f->m1, f->m2);
    make_group(&h, g, sizeof(g), members);
    group_item(&h, g, "{\"function\":\"noop\"}", 10, p);
    assert_status(&h, p, "PROCESSING");
    store_close(s);
}

/* store_machine_on (queue.h), the one read of the usual create's check: 1 only for the
 * team's machine on that bridge; every other case is 0, for the caller to ask why. */
static void test_machine_on(void **state)
{
    struct fx *f = *state;
    char err[512], g[64], members[200];
    int on = -1;
    assert_rc(STORE_OK, store_machine_on(f->s, f->team, f->m1, f->bridge, &on, err, sizeof(err)));
    assert_int_equal(on, 1);
    assert_rc(STORE_OK, store_machine_on(f->s, f->team, f->m1, f->bridge2, &on, err, sizeof(err)));
    assert_int_equal(on, 0);
    assert_rc(STORE_OK, store_machine_on(f->s, f->team2, f->m1, f->bridge, &on, err, sizeof(err)));
    assert_int_equal(on, 0);
    assert_rc(STORE_OK, store_machine_on(f->s, f->team, f->mx, f->bridge, &on, err, sizeof(err)));
    assert_int_equal(on, 0);
    assert_rc(STORE_OK,
              store_machine_on(f->s, f->team, "ghost-machine", f->bridge, &on, err, sizeof(err)));
    assert_int_equal(on, 0);
    snprintf(members, sizeof(members), "[\"%s\"]", f->m1);
    make_group(f, g, sizeof(g), members);
    assert_rc(STORE_OK, store_machine_on(f->s, f->team, g, f->bridge, &on, err, sizeof(err)));
    assert_int_equal(on, 0);
    /* Moved, it is on its new bridge alone. */
    assert_rc(STORE_OK,
              store_machine_set_bridge(f->s, f->team, f->m1, f->bridge2, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_machine_on(f->s, f->team, f->m1, f->bridge2, &on, err, sizeof(err)));
    assert_int_equal(on, 1);
    assert_rc(STORE_OK, store_machine_on(f->s, f->team, f->m1, f->bridge, &on, err, sizeof(err)));
    assert_int_equal(on, 0);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

static int run_suite(const char *name)
{
    const struct CMUnitTest tests[] = {
        T(test_migrations_recorded),
        T(test_open_errors),
        T(test_concurrent_fresh_open),
        T(test_upgrade_from_v1),
        T(test_team_crud),
        T(test_region_bridge),
        T(test_machine),
        T(test_storage_schedule),
        T(test_vault_versions),
        T(test_delete_refused),
        T(test_invalid_input),
        T(test_queue_create_row),
        T(test_queue_create_refs),
        T(test_queue_prefix),
        T(test_list_filters),
        T(test_health_and_stale),
        T(test_queue_count),
        T(test_stale_pending_after),
        T(test_claim_order),
        T(test_claim_machine_exclusive),
        T(test_claim_concurrency),
        T(test_claim_machine_order),
        T(test_claim_run_after_and_bridge),
        T(test_claim_busy_backlog),
        T(test_claim_busy_backlog_merge),
        T(test_claim_busy_backlog_turns),
        T(test_claim_by_machine_waits_on_dependency),
        T(test_claim_by_machine_slots),
        T(test_claim_matches_model),
        T(test_dependencies),
        T(test_dependents_cancelled),
        T(test_token_checks),
        T(test_lease_expiry),
        T(test_heartbeat),
        T(test_retry_release),
        T(test_progress),
        T(test_cancel_state_machine),
        T(test_delete_item),
        T(test_events),
        T(test_batch_create),
        T(test_begin_commit),
        T(test_schedule_fire_unique),
        T(test_counts),
        T(test_bridge_has_work),
        T(test_wake_fd),
        T(test_wake_listing),
        T(test_idle_checkpoint),
        T(test_idle_reports_checkpoint),
        T(test_wake_on_changes),
        T(test_waits_for_writer),
        T(test_long_text_capped),
        T(test_multiprocess_create),
        T(test_claim_items_typed),
        T(test_claim_start_trace),
        T(test_claim_items_unstarted),
        T(test_finish_many),
        T(test_finish_many_dependents),
        T(test_recovery_items),
        T(test_claim_items_full_batch),
        T(test_list_many_teams),
        T(test_group_crud),
        T(test_group_fanout),
        T(test_group_max_parallel),
        T(test_group_cancel),
        T(test_group_members_end_together),
        T(test_upgrade_from_v2),
        T(test_machine_on),
    };
    return _cmocka_run_group_tests(name, tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL);
}

int main(void)
{
    return store_suite_main("store", g_dir, sizeof(g_dir), &g_url, run_suite);
}
