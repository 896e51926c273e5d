/*
 * Unit tests for host/serve/scheduler.c: scheduler_tick driven with an injected clock against a
 * real SQLite store. What a fire creates, which host fires, enabled / disabled_until,
 * catch-up, exactly once with two schedulers on one store, and a year of fires in DST
 * zones through the scheduler itself (the cron arithmetic alone is test_cron.c's, which
 * walks whole years of all three expressions).
 *
 * Items are counted with SQL beneath the store API where a list would be capped.
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
#include <unistd.h>

#include "cron.h"
#include "log.h"
#include "scheduler.h"
#include "store.h"
#include "tz.h"
#include "util.h"

#define MINUTE 60000LL
#define HOUR   3600000LL

struct fx {
    char dir[64], db[128];
    store *st;
    ferry_config cfg; /* bridge "b1" */
    scheduler *s;
    int64_t t0; /* the next whole hour (at least 10 s ahead): fires tests step through */
};

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (j == NULL)
        fail_msg("bad test JSON %s: %s", text, e.text);
    return j;
}

#define assert_ok(expr)                                                                            \
    do {                                                                                           \
        err[0] = '\0';                                                                             \
        int rc_ = (expr);                                                                          \
        if (rc_ != STORE_OK)                                                                       \
            fail_msg("%s returned %d: %s", #expr, rc_, err);                                       \
    } while (0)

static store *open_store(const char *path)
{
    char err[512];
    struct store_options o = {.synchronous_normal = 1};
    store *st = store_open_opts(path, &o, err, sizeof(err));
    if (st == NULL)
        fail_msg("cannot open %s: %s", path, err);
    return st;
}

static int setup(void **state)
{
    char err[512];
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-test-sched-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->db, sizeof(f->db), "%s/ferry.db", f->dir);
    f->st = open_store(f->db);
    assert_ok(store_region_create(f->st, "r", NULL, NULL, err, sizeof(err)));
    assert_ok(store_bridge_create(f->st, "r", "b1", NULL, NULL, err, sizeof(err)));
    assert_ok(store_bridge_create(f->st, "r", "b2", NULL, NULL, err, sizeof(err)));
    assert_ok(store_team_create(f->st, "Ops", NULL, NULL, err, sizeof(err)));
    assert_ok(store_machine_create(f->st, "Ops", "b1", "m1", NULL, NULL, err, sizeof(err)));
    assert_ok(store_machine_create(f->st, "Ops", "b2", "m2", NULL, NULL, err, sizeof(err)));
    f->cfg.bridge = "b1";
    f->s = scheduler_new(&f->cfg, NULL);
    f->t0 = ((now_ms() + 10000) / HOUR + 1) * HOUR;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    scheduler_free(f->s);
    store_close(f->st);
    char *rm = xasprintf("rm -rf '%s'", f->dir);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", f->dir);
    free(rm);
    free(f);
    return 0;
}

static void schedule(struct fx *f, const char *name, const char *vault_text)
{
    char err[512];
    json_t *v = J(vault_text);
    if (scheduler_check_vault(v, err, sizeof(err)) != 0)
        fail_msg("schedule %s: %s", name, err);
    assert_ok(store_schedule_create(f->st, "Ops", name, v, NULL, err, sizeof(err)));
    json_decref(v);
}

static json_t *schedule_row(struct fx *f, const char *name)
{
    char err[512];
    json_t *row = NULL;
    assert_ok(store_resource_get(f->st, STORE_SCHEDULE, "Ops", name, &row, err, sizeof(err)));
    return row;
}

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void iso(int64_t ms, char out[32])
{
    iso8601_ms(ms, out);
}

/* The fire instants of a schedule's items, ascending, into out (at most max); the count. */
static size_t fires_of(struct fx *f, const char *name, int64_t *out, size_t max)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT schedule_fire_at FROM queue_items WHERE"
                                        " schedule_name = ?1 ORDER BY schedule_fire_at",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    size_t n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n < max)
            out[n] = sqlite3_column_int64(st, 0);
        n++;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static size_t count_fires(struct fx *f, const char *name)
{
    int64_t none[1];
    return fires_of(f, name, none, 0);
}

/* The item created for a fire (new reference). */
static json_t *item_for(struct fx *f, const char *name, int64_t fire_ms)
{
    char err[512], when[32];
    json_t *rows = NULL, *found = NULL;
    struct store_queue_filter filter = {.max_records = 10000};
    assert_ok(store_queue_list(f->st, &filter, &rows, err, sizeof(err)));
    iso(fire_ms, when);
    size_t i;
    json_t *row;
    json_array_foreach (rows, i, row) {
        if (jstr(row, "scheduleName") && strcmp(jstr(row, "scheduleName"), name) == 0 &&
            strcmp(jstr(row, "scheduleFireTime"), when) == 0)
            found = json_incref(row);
    }
    json_decref(rows);
    if (found == NULL)
        fail_msg("no item of %s for %s", name, when);
    return found;
}

static int64_t tick(struct fx *f, int64_t at_ms)
{
    return scheduler_tick(f->s, f->st, at_ms);
}

/* ---- what a fire creates ---- */

static void test_fire_creates_item(void **state)
{
    struct fx *f = *state;
    char when[32], err[512];
    schedule(f, "hourly",
             "{\"cron\":\"0 * * * *\",\"machine\":\"m1\",\"priority\":2,"
             "\"queue_config\":{\"function\":\"hello\",\"repository\":\"app\","
             "\"retention_days\":30,\"on_failure\":{\"notify\":\"x@y.com\"}},"
             "\"notifications\":{\"on_failure\":[\"ops@c.com\",\"x@y.com\"],"
             "\"on_success\":\"logs@c.com\"}}");
    /* Before the fire: nothing, and the delay says when to come back (at most a second). */
    assert_int_equal(tick(f, f->t0 - 5000), SCHEDULER_RESCAN_MS);
    assert_int_equal(tick(f, f->t0 - 300), 300);
    assert_int_equal(count_fires(f, "hourly"), 0);
    json_t *row = schedule_row(f, "hourly");
    iso(f->t0, when);
    assert_string_equal(jstr(row, "nextRun"), when);
    assert_true(json_is_null(json_object_get(row, "lastRun")));
    json_decref(row);

    tick(f, f->t0 + 7);
    assert_int_equal(count_fires(f, "hourly"), 1);
    json_t *item = item_for(f, "hourly", f->t0);
    assert_string_equal(jstr(item, "machineName"), "m1");
    assert_string_equal(jstr(item, "bridgeName"), "b1");
    assert_string_equal(jstr(item, "teamName"), "Ops");
    assert_string_equal(jstr(item, "function"), "hello");
    assert_string_equal(jstr(item, "status"), "PENDING");
    assert_int_equal(json_integer_value(json_object_get(item, "priority")), 2);
    json_t *v = json_object_get(item, "vaultContent");
    json_t *want = J("{\"function\":\"hello\",\"repository\":\"app\",\"retention_days\":30,"
                     "\"on_failure\":{\"notify\":[\"x@y.com\",\"ops@c.com\"]},"
                     "\"on_success\":{\"notify\":[\"logs@c.com\"]}}");
    if (!json_equal(v, want)) {
        char *got = json_dumps(v, JSON_SORT_KEYS);
        fail_msg("item vault %s", got);
    }
    json_decref(want);
    /* The trace says which schedule and fire made it. */
    json_t *events = NULL;
    assert_ok(store_event_list(f->st, jstr(item, "taskId"), &events, err, sizeof(err)));
    assert_string_equal(jstr(json_array_get(events, 1), "action"), "SCHEDULED");
    assert_non_null(strstr(jstr(json_array_get(events, 1), "details"), "fired by schedule hourly"));
    json_decref(events);

    row = schedule_row(f, "hourly");
    assert_string_equal(jstr(row, "lastRun"), when);
    assert_string_equal(jstr(row, "lastTaskId"), jstr(item, "taskId"));
    iso(f->t0 + HOUR, when);
    assert_string_equal(jstr(row, "nextRun"), when);
    json_decref(row);
    json_decref(item);

    /* Ticking again, even much later within the hour, makes nothing more. */
    tick(f, f->t0 + 9);
    tick(f, f->t0 + 59 * MINUTE);
    assert_int_equal(count_fires(f, "hourly"), 1);
    tick(f, f->t0 + HOUR);
    assert_int_equal(count_fires(f, "hourly"), 2);
}

/* ---- which host fires ---- */

static void test_host_of_the_machines_bridge_fires(void **state)
{
    struct fx *f = *state;
    char err[512];
    schedule(f, "on-b2",
             "{\"cron\":\"0 * * * *\",\"machine\":\"m2\","
             "\"queue_config\":{\"function\":\"hello\"}}");
    tick(f, f->t0 + 10);
    assert_int_equal(count_fires(f, "on-b2"), 0);
    ferry_config cfg2 = {.bridge = "b2"};
    scheduler *s2 = scheduler_new(&cfg2, NULL);
    scheduler_tick(s2, f->st, f->t0 + 20);
    assert_int_equal(count_fires(f, "on-b2"), 1);
    json_t *item = item_for(f, "on-b2", f->t0);
    assert_string_equal(jstr(item, "bridgeName"), "b2");
    json_decref(item);

    /* The machine moves to b1: from then on b1's host fires it, b2's does not. */
    assert_ok(store_machine_set_bridge(f->st, "Ops", "m2", "b1", NULL, err, sizeof(err)));
    scheduler_tick(s2, f->st, f->t0 + HOUR + 5);
    assert_int_equal(count_fires(f, "on-b2"), 1);
    tick(f, f->t0 + HOUR + 10);
    assert_int_equal(count_fires(f, "on-b2"), 2);
    item = item_for(f, "on-b2", f->t0 + HOUR);
    assert_string_equal(jstr(item, "bridgeName"), "b1");
    json_decref(item);
    scheduler_free(s2);
}

/* ---- enabled, disabled_until ---- */

static void test_enabled_and_disabled_until(void **state)
{
    struct fx *f = *state;
    char until[32];
    iso(f->t0 + 90 * MINUTE, until);
    schedule(f, "off",
             "{\"cron\":\"0 * * * *\",\"machine\":\"m1\",\"enabled\":false,"
             "\"queue_config\":{\"function\":\"hello\"}}");
    char *v = xasprintf("{\"cron\":\"0 * * * *\",\"machine\":\"m1\",\"enabled\":false,"
                        "\"disabled_reason\":\"Maintenance window\",\"disabled_until\":\"%s\","
                        "\"queue_config\":{\"function\":\"hello\"}}",
                        until);
    schedule(f, "paused", v);
    free(v);
    for (int h = 0; h < 3; h++)
        tick(f, f->t0 + h * HOUR + 1000);
    assert_int_equal(count_fires(f, "off"), 0);
    json_t *row = schedule_row(f, "off");
    assert_true(json_is_null(json_object_get(row, "nextRun")));
    json_decref(row);
    /* Disabled until 90 minutes in: the fires at 0 and 60 are not made, the one at 120 is. */
    int64_t got[4];
    assert_int_equal(fires_of(f, "paused", got, 4), 1);
    assert_int_equal(got[0], f->t0 + 2 * HOUR);

    /* The reader of disabled_until. */
    static const struct {
        const char *vault, *want;
    } cases[] = {
        {"{\"timezone\":\"America/New_York\",\"disabled_until\":\"2027-01-15\"}",
         "2027-01-15T05:00:00.000Z"},
        {"{\"timezone\":\"America/New_York\",\"disabled_until\":\"2027-07-15\"}",
         "2027-07-15T04:00:00.000Z"},
        {"{\"timezone\":\"America/New_York\",\"disabled_until\":\"2027-07-15T08:30\"}",
         "2027-07-15T12:30:00.000Z"},
        {"{\"timezone\":\"America/New_York\",\"disabled_until\":\"2027-07-15T08:30:00Z\"}",
         "2027-07-15T08:30:00.000Z"},
        {"{\"timezone\":\"Europe/Berlin\",\"disabled_until\":\"2027-07-15T08:30:00-02:00\"}",
         "2027-07-15T10:30:00.000Z"},
        {"{\"disabled_until\":\"2024-01-15\"}", "2024-01-15T00:00:00.000Z"},
        /* A wall time the clocks skip means the jump. */
        {"{\"timezone\":\"America/New_York\",\"disabled_until\":\"2027-03-14T02:30\"}",
         "2027-03-14T07:00:00.000Z"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *vault = J(cases[i].vault);
        int64_t ms;
        char err[256], when[32];
        assert_int_equal(scheduler_disabled_until(vault, &ms, err, sizeof(err)), 0);
        iso(ms, when);
        assert_string_equal(when, cases[i].want);
        json_decref(vault);
    }
}

/* ---- next fire, as list team-schedules shows it ---- */

static void test_next_fire(void **state)
{
    (void)state;
    static const struct {
        const char *vault;
        const char *after, *want; /* want NULL: does not fire */
    } cases[] = {
        {"{\"cron\":\"0 2 * * *\"}", "2027-01-10T12:00:00Z", "2027-01-11T02:00:00.000Z"},
        {"{\"cron\":\"0 2 * * *\",\"timezone\":\"America/New_York\"}", "2027-03-13T12:00:00Z",
         "2027-03-14T07:00:00.000Z"},
        {"{\"cron\":\"0 2 * * *\",\"enabled\":false}", "2027-01-10T12:00:00Z", NULL},
        {"{\"cron\":\"0 2 * * *\",\"enabled\":false,\"disabled_until\":\"2027-02-01\"}",
         "2027-01-10T12:00:00Z", "2027-02-01T02:00:00.000Z"},
        {"{\"cron\":\"0 0 * * *\",\"disabled_until\":\"2027-02-01\"}", "2027-01-10T12:00:00Z",
         "2027-02-01T00:00:00.000Z"},
        /* A cron that can never fire is refused when parsed. */
        {"{\"cron\":\"0 0 30 2 *\"}", "2027-01-10T12:00:00Z", "refused"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *vault = json_loads(cases[i].vault, 0, NULL);
        int64_t after, next;
        char err[256], when[32];
        assert_int_equal(parse_date_ms(cases[i].after, &after), 0);
        int rc = scheduler_next_fire(vault, after, &next, err, sizeof(err));
        if (strcmp(cases[i].want ? cases[i].want : "", "refused") == 0) {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err, "never"));
        } else if (cases[i].want == NULL) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, 1);
            iso(next, when);
            assert_string_equal(when, cases[i].want);
        }
        json_decref(vault);
    }
}

/* ---- vault checks ---- */

static void test_check_vault(void **state)
{
    (void)state;
    static const struct {
        const char *vault, *message;
    } bad[] = {
        {"{\"cron\":\"0 25 * * *\",\"queue_config\":{\"function\":\"hello\"}}",
         "cron field 2 (hour) '25'"},
        {"{\"cron\":\"0 2 * * *\",\"timezone\":\"Mars/Olympus\",\"queue_config\":{\"function\":"
         "\"hello\"}}",
         "Mars/Olympus"},
        {"{\"cron\":\"0 2 * * *\",\"queue_config\":{\"function\":\"hello\"},\"notifications\":"
         "\"ops@c.com\"}",
         "\"notifications\" must be an object"},
        {"{\"cron\":\"0 2 * * *\",\"queue_config\":{\"function\":\"hello\"},\"notifications\":"
         "{\"on_error\":\"ops@c.com\"}}",
         "unknown key \"on_error\"; it takes on_failure and on_success"},
        {"{\"cron\":\"0 2 * * *\",\"queue_config\":{\"function\":\"hello\"},\"notifications\":"
         "{\"on_failure\":42}}",
         "\"notifications.on_failure\" must be an email address"},
        {"{\"cron\":\"0 2 * * *\",\"queue_config\":{\"function\":\"hello\"},\"notifications\":"
         "{\"on_failure\":\"not an address\"}}",
         "\"notifications.on_failure\" has \"not an address\"; expected an email address"},
        {"{\"cron\":\"0 2 * * *\",\"queue_config\":{\"function\":\"hello\",\"on_success\":3},"
         "\"notifications\":{\"on_success\":\"a@b.com\"}}",
         "queue_config \"on_success\" must be an object"},
        {"{\"cron\":\"0 2 * * *\",\"queue_config\":{\"function\":\"hello\"},\"priority\":0}",
         "\"priority\" must be a whole number from 1"},
        {"{\"cron\":\"0 2 * * *\",\"queue_config\":{\"function\":\"hello\"},\"priority\":\"high\"}",
         "\"priority\" must be a whole number from 1"},
        {"{\"cron\":\"0 2 * * *\",\"queue_config\":{\"function\":\"hello\"},\"catchup\":\"some\"}",
         "\"catchup\" must be \"latest\", \"none\" or \"all\""},
        {"{\"cron\":\"0 2 * * *\",\"queue_config\":{\"function\":\"hello\"},\"disabled_until\":"
         "\"soon\"}",
         "\"disabled_until\" must be a date"},
        {"{\"cron\":\"0 2 * * *\",\"queue_config\":{\"function\":\"hello\"},\"enabled\":\"no\"}",
         "\"enabled\" must be true or false"},
        {"{\"cron\":\"0 2 * * *\"}", "needs \"queue_config\""},
        {"{\"cron\":\"0 2 * * *\",\"queue_config\":{\"repository\":\"x\"}}", "no \"function\""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *vault = J(bad[i].vault);
        char err[512] = "";
        assert_int_equal(scheduler_check_vault(vault, err, sizeof(err)), -1);
        if (strstr(err, bad[i].message) == NULL)
            fail_msg("%s: message '%s' lacks '%s'", bad[i].vault, err, bad[i].message);
        json_decref(vault);
    }
}

/* ---- catch-up ---- */

#define TEN_MINUTES                                                                                \
    "\"cron\":\"*/10 * * * *\",\"machine\":\"m1\",\"queue_config\":{\"function\":\"hello\"}"

static void test_catchup_policies(void **state)
{
    struct fx *f = *state;
    schedule(f, "latest", "{" TEN_MINUTES "}");
    schedule(f, "none", "{" TEN_MINUTES ",\"catchup\":\"none\"}");
    schedule(f, "all", "{" TEN_MINUTES ",\"catchup\":\"all\"}");
    schedule(f, "all-many",
             "{\"cron\":\"* * * * *\",\"machine\":\"m1\",\"catchup\":\"all\","
             "\"queue_config\":{\"function\":\"hello\"}}");
    json_t *row = schedule_row(f, "all");
    int64_t created;
    assert_int_equal(parse_date_ms(jstr(row, "createdTime"), &created), 0);
    json_decref(row);

    /* No host ran from creation until 5 minutes after t0 + 3 h: the latest due fire is
     * t0 + 3 h, 5 minutes late. */
    int64_t now = f->t0 + 3 * HOUR + 5 * MINUTE + 123;
    tick(f, now);
    int64_t got[200];
    assert_int_equal(fires_of(f, "latest", got, 200), 1);
    assert_int_equal(got[0], f->t0 + 3 * HOUR);
    assert_int_equal(count_fires(f, "none"), 0);
    /* all: every */
    size_t n = fires_of(f, "all", got, 200);
    size_t want = 0;
    for (int64_t t = (created / (10 * MINUTE) + 1) * 10 * MINUTE; t <= now; t += 10 * MINUTE) {
        assert_true(want < n);
        assert_int_equal(got[want], t);
        want++;
    }
    assert_int_equal(n, want);
    /* all, bounded: the most recent SCHEDULER_CATCHUP_MAX. */
    n = fires_of(f, "all-many", got, 200);
    assert_int_equal(n, SCHEDULER_CATCHUP_MAX);
    assert_int_equal(got[n - 1], f->t0 + 3 * HOUR + 5 * MINUTE);
    assert_int_equal(got[0], f->t0 + 3 * HOUR + 5 * MINUTE - (SCHEDULER_CATCHUP_MAX - 1) * MINUTE);
    json_t *item = item_for(f, "latest", f->t0 + 3 * HOUR);
    char err[512];
    json_t *events = NULL;
    assert_ok(store_event_list(f->st, jstr(item, "taskId"), &events, err, sizeof(err)));
    assert_non_null(strstr(jstr(json_array_get(events, 1), "details"), "a missed fire"));
    json_decref(events);
    json_decref(item);

    /* From then on every policy makes the fires on time, once. */
    tick(f, f->t0 + 3 * HOUR + 10 * MINUTE + 50);
    tick(f, f->t0 + 3 * HOUR + 10 * MINUTE + 900);
    assert_int_equal(count_fires(f, "latest"), 2);
    assert_int_equal(count_fires(f, "none"), 1);
    assert_int_equal(count_fires(f, "all"), want + 1);

    /* "none" still makes a fire found within the grace period of its instant. */
    schedule(f, "none-2", "{" TEN_MINUTES ",\"catchup\":\"none\"}");
    tick(f, f->t0 + 3 * HOUR + 20 * MINUTE + SCHEDULER_GRACE_MS - 1);
    assert_int_equal(fires_of(f, "none-2", got, 200), 1);
    assert_int_equal(got[0], f->t0 + 3 * HOUR + 20 * MINUTE);
}

/* ---- exactly once ---- */

static void test_two_schedulers_one_store(void **state)
{
    struct fx *f = *state;
    char err[512];
    schedule(f, "shared",
             "{\"cron\":\"*/5 * * * *\",\"machine\":\"m1\","
             "\"queue_config\":{\"function\":\"hello\"}}");
    store *st2 = open_store(f->db);
    scheduler *s2 = scheduler_new(&f->cfg, NULL);
    srand(7);
    for (int i = 1; i <= 60; i++) {
        int64_t fire = f->t0 + i * 5 * MINUTE;
        /* Both hosts wake at about the fire, in either order, and again a little later. */
        int64_t j1 = rand() % 50, j2 = rand() % 50;
        if (rand() % 2) {
            tick(f, fire + j1);
            scheduler_tick(s2, st2, fire + j2);
        } else {
            scheduler_tick(s2, st2, fire + j2);
            tick(f, fire + j1);
        }
        tick(f, fire + 1000 + j2);
        scheduler_tick(s2, st2, fire + 1000 + j1);
    }
    int64_t got[100];
    assert_int_equal(fires_of(f, "shared", got, 100), 60);
    for (int i = 0; i < 60; i++)
        assert_int_equal(got[i], f->t0 + (i + 1) * 5 * MINUTE);

    /*
     * A host that read the schedule before another committed its fire (possible with
     * PostgreSQL) tries the same fire: the unique key refuses it, and the loser leaves the
     * winner's bookkeeping alone. Simulated by rewinding lastRun under a fresh scheduler.
     */
    int64_t fire = f->t0 + 61 * 5 * MINUTE;
    tick(f, fire + 3);
    json_t *row = schedule_row(f, "shared");
    char winner[37];
    snprintf(winner, sizeof(winner), "%s", jstr(row, "lastTaskId"));
    json_decref(row);
    assert_ok(store_schedule_set_run(st2, "Ops", "shared", fire, fire - 5 * MINUTE, "stale", err,
                                     sizeof(err)));
    scheduler *s3 = scheduler_new(&f->cfg, NULL);
    scheduler_tick(s3, st2, fire + 5);
    assert_int_equal(count_fires(f, "shared"), 61);
    row = schedule_row(f, "shared");
    assert_string_equal(jstr(row, "lastTaskId"), "stale"); /* not rewritten by the loser */
    json_decref(row);
    /* …and its next fire is made once, recorded as usual. */
    scheduler_tick(s3, st2, fire + 5 * MINUTE + 1);
    tick(f, fire + 5 * MINUTE + 2);
    assert_int_equal(count_fires(f, "shared"), 62);
    row = schedule_row(f, "shared");
    assert_string_not_equal(jstr(row, "lastTaskId"), "stale");
    assert_string_not_equal(jstr(row, "lastTaskId"), winner);
    json_decref(row);
    scheduler_free(s3);
    scheduler_free(s2);
    store_close(st2);
}

/* ---- changes while running ---- */

static void test_removed_and_broken_schedules(void **state)
{
    struct fx *f = *state;
    char err[512];
    schedule(f, "gone",
             "{\"cron\":\"0 * * * *\",\"machine\":\"m1\","
             "\"queue_config\":{\"function\":\"hello\"}}");
    tick(f, f->t0 + 5);
    assert_int_equal(count_fires(f, "gone"), 1);
    assert_ok(store_resource_delete(f->st, STORE_SCHEDULE, "Ops", "gone", err, sizeof(err)));
    tick(f, f->t0 + HOUR + 5);
    assert_int_equal(count_fires(f, "gone"), 1);

    /* A schedule whose machine was removed fires nothing and does not stop the others. */
    assert_ok(store_machine_create(f->st, "Ops", "b1", "m3", NULL, NULL, err, sizeof(err)));
    schedule(f, "orphan",
             "{\"cron\":\"0 * * * *\",\"machine\":\"m3\","
             "\"queue_config\":{\"function\":\"hello\"}}");
    schedule(f, "fine",
             "{\"cron\":\"0 * * * *\",\"machine\":\"m1\","
             "\"queue_config\":{\"function\":\"hello\"}}");
    assert_ok(store_resource_delete(f->st, STORE_MACHINE, "Ops", "m3", err, sizeof(err)));
    /* A vault broken beneath the CLI (by hand in the database) is skipped the same way. */
    json_t *bad = J("{\"cron\":\"0 99 * * *\"}");
    assert_ok(store_resource_update_vault(f->st, STORE_SCHEDULE, "Ops", "fine", bad, -1,
                                          STORE_VAULT_MERGE, NULL, err, sizeof(err)));
    json_decref(bad);
    schedule(f, "fine2",
             "{\"cron\":\"0 * * * *\",\"machine\":\"m1\","
             "\"queue_config\":{\"function\":\"hello\"}}");
    tick(f, f->t0 + 2 * HOUR + 5);
    tick(f, f->t0 + 2 * HOUR + 6);
    assert_int_equal(count_fires(f, "orphan"), 0);
    assert_int_equal(count_fires(f, "fine"), 0);
    assert_int_equal(count_fires(f, "fine2"), 1);
}

/* ---- a year of fires through the scheduler ---- */

/* Walks the fires of [from, to) (local dates, {year, month, day}) through a scheduler. */
static void walk(const char *zone, const char *cron, const int from[3], const int to[3])
{
    char dir[64], db[128], err[512];
    snprintf(dir, sizeof(dir), "/tmp/ferry-test-walk-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof(db), "%s/ferry.db", dir);
    struct fx f = {.cfg = {.bridge = "b1"}};
    snprintf(f.db, sizeof(f.db), "%s", db);
    f.st = open_store(db);
    assert_ok(store_region_create(f.st, "r", NULL, NULL, err, sizeof(err)));
    assert_ok(store_bridge_create(f.st, "r", "b1", NULL, NULL, err, sizeof(err)));
    assert_ok(store_team_create(f.st, "Ops", NULL, NULL, err, sizeof(err)));
    assert_ok(store_machine_create(f.st, "Ops", "b1", "m1", NULL, NULL, err, sizeof(err)));
    char *v = xasprintf("{\"cron\":\"%s\",\"timezone\":\"%s\",\"machine\":\"m1\","
                        "\"catchup\":\"none\",\"queue_config\":{\"function\":\"hello\"}}",
                        cron, zone);
    schedule(&f, "walk", v);
    free(v);
    f.s = scheduler_new(&f.cfg, NULL);

    tz_info *tz = NULL;
    assert_int_equal(tz_load(zone, &tz, err, sizeof(err)), 0);
    cron_expr e;
    assert_int_equal(cron_parse(cron, &e, err, sizeof(err)), 0);
    int64_t start =
        tz_local_to_utc(tz, tz_days_from_civil(from[0], from[1], from[2]) * 86400).earliest;
    int64_t end = tz_local_to_utc(tz, tz_days_from_civil(to[0], to[1], to[2]) * 86400).earliest;
    size_t cap = 20000, n_expected = 0;
    int64_t *expected = calloc(cap, sizeof(int64_t));
    /* The host comes up a minute before the walk; earlier fires were missed (catchup none). */
    store_begin(f.st, err, sizeof(err));
    scheduler_tick(f.s, f.st, (start - 60) * 1000);
    int64_t t = start - 1, next;
    unsigned seed = 1;
    while (cron_next(&e, tz, t, &next) == 0 && next < end) {
        assert_true(n_expected < cap);
        expected[n_expected++] = next * 1000;
        /* A host wakes at the fire, late by up to two seconds; now and then also shortly
         * before it, when the delay it gets must lead it to the fire. */
        int64_t early = 1 + rand_r(&seed) % 4000, late = rand_r(&seed) % 2000;
        if (rand_r(&seed) % 8 == 0) {
            int64_t delay = scheduler_tick(f.s, f.st, next * 1000 - early);
            assert_int_equal(delay, early < SCHEDULER_RESCAN_MS ? early : SCHEDULER_RESCAN_MS);
        }
        scheduler_tick(f.s, f.st, next * 1000 + late);
        if (n_expected % 500 == 0) {
            store_commit(f.st, err, sizeof(err));
            store_begin(f.st, err, sizeof(err));
        }
        t = next;
    }
    store_commit(f.st, err, sizeof(err));
    int64_t *got = calloc(cap, sizeof(int64_t));
    size_t n = fires_of(&f, "walk", got, cap);
    if (n != n_expected)
        fail_msg("%s '%s': %zu fires made, %zu expected", zone, cron, n, n_expected);
    for (size_t i = 0; i < n; i++) {
        if (got[i] != expected[i]) {
            char a[32], b[32];
            iso(got[i], a);
            iso(expected[i], b);
            fail_msg("%s '%s': fire %zu made for %s, expected %s", zone, cron, i, a, b);
        }
    }
    free(expected);
    free(got);
    tz_free(tz);
    scheduler_free(f.s);
    store_close(f.st);
    char *rm = xasprintf("rm -rf '%s'", dir);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    free(rm);
}

/*
 * A year (2027) of "0 2 * * *" and "30 1 * * *" in four zones, and "*\/30 * * * *" through
 * the months in which those zones change their clocks (a whole year of it is test_cron's;
 * here it would only repeat the same ticks at SAN speed): every fire made once, none extra.
 */
static void test_year_walk(void **state)
{
    (void)state;
    static const char *const zones[] = {"America/New_York", "Europe/London", "Australia/Lord_Howe",
                                        "UTC"};
    static const int year[2][3] = {{2027, 1, 1}, {2028, 1, 1}};
    static const int spring[2][3] = {{2027, 3, 1}, {2027, 4, 15}};
    static const int autumn[2][3] = {{2027, 9, 25}, {2027, 11, 15}};
    for (size_t z = 0; z < 4; z++) {
        walk(zones[z], "0 2 * * *", year[0], year[1]);
        walk(zones[z], "30 1 * * *", year[0], year[1]);
        walk(zones[z], "*/30 * * * *", spring[0], spring[1]);
        walk(zones[z], "*/30 * * * *", autumn[0], autumn[1]);
    }
}

int main(void)
{
    log_set_level(LOG_WARN);
    unsetenv("FERRY_TEST_CLOCK_OFFSET_MS");
    unsetenv("FERRY_TEST_CLOCK_RATE");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fire_creates_item, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_of_the_machines_bridge_fires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enabled_and_disabled_until, setup, teardown),
        cmocka_unit_test(test_next_fire),
        cmocka_unit_test(test_check_vault),
        cmocka_unit_test_setup_teardown(test_catchup_policies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_schedulers_one_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_removed_and_broken_schedules, setup, teardown),
        cmocka_unit_test(test_year_walk),
    };
    return cmocka_run_group_tests_name("scheduler", tests, NULL, NULL);
}
