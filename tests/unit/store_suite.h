/*
 * What the store suites share (test_store.c, test_people.c): run against a fresh SQLite
 * file and, when FERRY_TEST_PG_URL names a database, PostgreSQL; each test makes its own
 * resources under fresh names. Include after cmocka.h, sqlite3.h, store.h and util.h.
 */
#ifndef FERRY_TEST_STORE_SUITE_H
#define FERRY_TEST_STORE_SUITE_H

#include <sys/stat.h>

#include "seal.h"

/* Fails the test with the call, its status and its message unless it returned expected
 * (the caller has a char err[] for the message). */
#define assert_rc(expected, expr)                                                                  \
    do {                                                                                           \
        err[0] = '\0';                                                                             \
        int rc_ = (expr);                                                                          \
        if (rc_ != (expected))                                                                     \
            fail_msg("%s returned %d, expected %d: %s", #expr, rc_, (expected), err);              \
    } while (0)

static inline const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static inline json_int_t jint(json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

/* "prefix-" and 12 characters of a fresh UUID: a name no other test (or run) has. */
static inline void fresh_name(char *out, size_t n, const char *prefix)
{
    char id[37];
    uuid_v4(id);
    snprintf(out, n, "%s-%.12s", prefix, id);
}

/* Runs SQL on the SQLite store at path, behind the store's back (a store of an older
 * schema rebuilt by hand). */
static inline void raw_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

/*
 * A store at url with a region, a bridge and a team of fresh names, and n machines of that
 * team on that bridge (machines[i]): a suite's fixture. NULL, with the reason printed, when
 * it cannot be made.
 */
static inline store *suite_store_open(const char *url, char region[64], char bridge[64],
                                      char team[64], char (*machines)[64], int n)
{
    char err[512] = "";
    store *s = store_open(url, err, sizeof(err));
    if (s == NULL) {
        print_error("cannot open %s: %s\n", url, err);
        return NULL;
    }
    fresh_name(region, 64, "r");
    fresh_name(bridge, 64, "b");
    fresh_name(team, 64, "t");
    int rc = store_region_create(s, region, NULL, NULL, err, sizeof(err));
    rc = rc ? rc : store_bridge_create(s, region, bridge, NULL, NULL, err, sizeof(err));
    rc = rc ? rc : store_team_create(s, team, NULL, NULL, err, sizeof(err));
    for (int m = 0; rc == STORE_OK && m < n; m++) {
        fresh_name(machines[m], 64, "m");
        rc = store_machine_create(s, team, bridge, machines[m], NULL, NULL, err, sizeof(err));
    }
    if (rc != STORE_OK) {
        print_error("fixture: %s\n", err);
        store_close(s);
        return NULL;
    }
    return s;
}

/* Queues a "noop" item of priority 3 for machine, created and ready at now_ms: its id. */
static inline void suite_item(store *s, const char *team, const char *bridge, const char *machine,
                              int64_t now_ms, char id[37])
{
    char err[512];
    json_t *v = json_pack("{s:s}", "function", "noop");
    struct store_item_spec spec = {.team = team,
                                   .machine = machine,
                                   .bridge = bridge,
                                   .priority = 3,
                                   .vault = v,
                                   .now_ms = now_ms,
                                   .run_after_ms = now_ms};
    assert_rc(STORE_OK, store_queue_create(s, &spec, id, NULL, err, sizeof(err)));
    json_decref(v);
}

/*
 * The suites' main: runs run_suite("NAME_sqlite") with *url a store file in a fresh
 * directory dir (of dirlen bytes, removed at the end), then run_suite("NAME_postgres") with
 * *url FERRY_TEST_PG_URL when it is set. Returns the process's exit code.
 */
static inline int store_suite_main(const char *name, char *dir, size_t dirlen, const char **url,
                                   int (*run_suite)(const char *))
{
    char sqlite_path[160], suite[64];
    snprintf(dir, dirlen, "/tmp/ferry-test-%s-XXXXXX", name);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(sqlite_path, sizeof(sqlite_path), "%s/var/ferry.db", dir);
    *url = sqlite_path;
    snprintf(suite, sizeof(suite), "%s_sqlite", name);
    int failed = run_suite(suite);
    const char *pg = getenv("FERRY_TEST_PG_URL");
    if (pg != NULL && *pg != '\0') {
        /* A server store seals secrets with the key its config names; these suites have no
         * config, so the key is a systemd-style credential (docs/security.md). Every suite
         * shares FERRY_TEST_PG_URL's database, sealed by the first to open it: they all use
         * one fixed test key. */
        char *cred = xasprintf("%s/credentials", dir), *key = xasprintf("%s/ferry.key", cred);
        struct seal_key k;
        for (size_t i = 0; i < sizeof(k.bytes); i++)
            k.bytes[i] = (unsigned char)(0x5a ^ (i * 7));
        seal_key_set_id(&k);
        if (mkdir(cred, 0700) != 0 ||
            seal_key_write(key, &k, NULL, 0) != 0 || setenv("CREDENTIALS_DIRECTORY", cred, 1) != 0)
            fprintf(stderr, "cannot make a key for the PostgreSQL suite in %s\n", cred);
        free(key);
        free(cred);
        *url = pg;
        snprintf(suite, sizeof(suite), "%s_postgres", name);
        failed += run_suite(suite);
    }
    *url = NULL;
    char *rm = xasprintf("rm -rf '%s'", dir);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    free(rm);
    return failed ? 1 : 0;
}

#endif
