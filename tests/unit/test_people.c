/*
 * People (host/people, docs/people.md): roles and what each may do, users and tokens, token
 * checks against hostile input, the actor of a store handle and the audit log its changes
 * write in their own transaction.
 *
 * Runs against a fresh SQLite file, and once more against PostgreSQL when FERRY_TEST_PG_URL
 * names a database (tests/e2e/pg_people.sh runs it so). Each test makes its own team, users
 * and machines under fresh names, so the suite runs unchanged on a shared server.
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

#include "descriptor.h"
#include "people.h"
#include "store.h"
#include "util.h"

#include "store_suite.h"

static const char *g_url;
static char g_dir[64];

struct fx {
    store *s;
    char region[64], bridge[64], team[64], team2[64], m1[64], user[64];
};

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
    fresh_name(f->team2, sizeof(f->team2), "t2");
    fresh_name(f->m1, sizeof(f->m1), "m1");
    fresh_name(f->user, sizeof(f->user), "u");
    int rc = store_region_create(f->s, f->region, NULL, NULL, err, sizeof(err));
    rc = rc ? rc : store_bridge_create(f->s, f->region, f->bridge, NULL, NULL, err, sizeof(err));
    rc = rc ? rc : store_team_create(f->s, f->team, NULL, NULL, err, sizeof(err));
    rc = rc ? rc : store_team_create(f->s, f->team2, NULL, NULL, err, sizeof(err));
    rc = rc ? rc
            : store_machine_create(f->s, f->team, f->bridge, f->m1, NULL, NULL, err, sizeof(err));
    rc = rc ? rc : people_user_create(f->s, f->user, NULL, err, sizeof(err));
    if (rc != STORE_OK) {
        print_error("fixture: %s\n", err);
        store_close(f->s);
        free(f);
        return -1;
    }
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

/* The audit rows of filter f (team defaults to the fixture's). */
static json_t *audit(struct fx *fx, struct people_audit_filter f)
{
    char err[512];
    json_t *rows = NULL;
    assert_rc(STORE_OK, people_audit_list(fx->s, &f, &rows, NULL, err, sizeof(err)));
    return rows;
}

static size_t audit_count(struct fx *fx, const char *action, const char *target)
{
    json_t *rows = audit(fx, (struct people_audit_filter){.action = action, .target = target});
    size_t n = json_array_size(rows);
    json_decref(rows);
    return n;
}

static int64_t make_token(struct fx *f, const char *team, enum people_role role,
                          char token[PEOPLE_TOKEN_LEN + 1])
{
    char err[512];
    json_t *row = NULL;
    assert_rc(STORE_OK, people_token_create(f->s, f->user, team, role, token, &row, err,
                                            sizeof(err)));
    int64_t id = jint(row, "tokenId");
    assert_true(id > 0);
    assert_null(json_object_get(row, "token"));
    json_decref(row);
    return id;
}

/* ---- roles --------------------------------------------------------------------------------- */

static void test_role_names(void **state)
{
    (void)state;
    for (int r = ROLE_VIEWER; r <= ROLE_ADMIN; r++)
        assert_int_equal(people_role_parse(people_role_name((enum people_role)r)), r);
    assert_int_equal(people_role_parse("Admin"), ROLE_NONE);
    assert_int_equal(people_role_parse("none"), ROLE_NONE);
    assert_int_equal(people_role_parse(""), ROLE_NONE);
    assert_int_equal(people_role_parse(NULL), ROLE_NONE);
    assert_string_equal(people_role_name((enum people_role)9), "none");
}

/* principal_cli's reading of /etc/passwd: only where getpwuid would read the same line. */
static int user_of(const char *nsswitch, const char *passwd, uid_t uid, char *out)
{
    char *n = xstrdup(nsswitch), *p = xstrdup(passwd);
    strcpy(out, "-");
    int found = people_user_from_files(n, p, uid, out, 128);
    free(n);
    free(p);
    return found;
}

static void test_user_from_files(void **state)
{
    (void)state;
    char name[128];
    const char *pw = "# comment\n\nroot:x:0:0:root:/root:/bin/bash\n"
                     "ada:x:1000:1000:Ada,,,:/home/ada:/bin/sh\nbob:x:1000:5::/:/bin/sh\n";
    const char *files = "# passwd: ldap\ngroup: ldap\npasswd:   files systemd # local first\n";
    assert_int_equal(user_of(files, pw, 0, name), 1);
    assert_string_equal(name, "root");
    assert_int_equal(user_of(files, pw, 1000, name), 1);
    assert_string_equal(name, "ada"); /* the first line with the uid, as getpwuid */
    assert_int_equal(user_of("passwd:files", pw, 1000, name), 1);
    assert_int_equal(user_of(files, pw, 1001, name), 0); /* not in the file: getpwuid */
    /* Another source first, an action after files, no passwd line, two of them. */
    assert_int_equal(user_of("passwd: sss files\n", pw, 0, name), 0);
    assert_int_equal(user_of("passwd: files [SUCCESS=continue] ldap\n", pw, 0, name), 0);
    assert_int_equal(user_of("passwd: filesx\n", pw, 0, name), 0);
    assert_int_equal(user_of("group: files\n", pw, 0, name), 0);
    assert_int_equal(user_of("passwd: files\npasswd: ldap\n", pw, 0, name), 0);
    /* A line getpwuid reads otherwise before the one asked: NIS compat, a blank, a field
     * more or less, a uid that is not plain digits, an empty name, an empty gid. */
    assert_int_equal(user_of("passwd: files", "+::::::\nroot:x:0:0::/:/bin/sh\n", 0, name), 0);
    assert_int_equal(user_of("passwd: files", " root:x:0:0::/:/bin/sh\n", 0, name), 0);
    assert_int_equal(user_of("passwd: files", "a:x:5:0::/\nroot:x:0:0::/:/bin/sh\n", 0, name), 0);
    assert_int_equal(user_of("passwd: files", "a:x:5:0::/:/bin/sh:\nroot:x:0:0::/:/x\n", 0, name),
                     0);
    assert_int_equal(user_of("passwd: files", "a:x: 5:0::/:/bin/sh\nroot:x:0:0::/:/x\n", 0, name),
                     0);
    assert_int_equal(user_of("passwd: files", ":x:0:0::/:/bin/sh\n", 0, name), 0);
    assert_int_equal(user_of("passwd: files", "a:x:0::g:/:/bin/sh\nroot:x:0:0::/:/x\n", 0, name),
                     0);
    /* A line after the one asked does not matter. */
    assert_int_equal(user_of("passwd: files", "root:x:0:0::/:/x\n+::::::\n", 0, name), 1);
    assert_string_equal(name, "root");
}

static void test_allowed(void **state)
{
    (void)state;
    struct principal p = {.role = ROLE_VIEWER};
    snprintf(p.team, sizeof(p.team), "Ops");
    assert_int_equal(people_allowed(NULL, "Ops", ROLE_VIEWER), 401);
    assert_int_equal(people_allowed(&(struct principal){0}, "Ops", ROLE_VIEWER), 401);
    assert_int_equal(people_allowed(&p, "Ops", ROLE_VIEWER), 0);
    assert_int_equal(people_allowed(&p, "Ops", ROLE_OPERATOR), 403); /* viewer creating */
    assert_int_equal(people_allowed(&p, "Dev", ROLE_VIEWER), 403);   /* another team */
    assert_int_equal(people_allowed(&p, NULL, ROLE_VIEWER), 0);      /* regions, bridges */
    p.role = ROLE_OPERATOR;
    assert_int_equal(people_allowed(&p, "Ops", ROLE_OPERATOR), 0);
    assert_int_equal(people_allowed(&p, "Ops", ROLE_ADMIN), 403); /* operator: a machine */
    assert_int_equal(people_allowed(&p, "Dev", ROLE_OPERATOR), 403);
    p.role = ROLE_ADMIN;
    assert_int_equal(people_allowed(&p, "Ops", ROLE_ADMIN), 0);
    assert_int_equal(people_allowed(&p, "Dev", ROLE_ADMIN), 403);
    assert_int_equal(people_allowed(&p, NULL, ROLE_ADMIN), 403); /* a bridge: the CLI's */
    struct principal cli;
    principal_cli(&cli);
    assert_int_equal(cli.role, ROLE_ADMIN);
    assert_string_equal(cli.via, "cli");
    assert_string_equal(cli.team, "");
    assert_true(cli.user[0] != '\0');
    assert_int_equal(people_allowed(&cli, "Dev", ROLE_ADMIN), 0);
    assert_int_equal(people_allowed(&cli, NULL, ROLE_ADMIN), 0);
}

/* A script item (its function flagged runs_commands) or any item with a hook needs the
 * configured command role; others need an operator. */
static void test_item_role(void **state)
{
    (void)state;
    json_t *script = json_pack("{s:s,s:[s]}", "name", "script", "flags", "runs_commands");
    json_t *hello = json_pack("{s:s,s:[s]}", "name", "hello", "flags", "idempotent");
    json_t *plain = json_pack("{s:s}", "function", "hello");
    json_t *hooked = json_pack("{s:s,s:s}", "function", "hello", "pre_hook", "rm -rf /tmp/x");
    json_t *post = json_pack("{s:s,s:s}", "function", "hello", "post_hook", "x");
    assert_true(descriptor_flags(script) & FERRY_FN_RUNS_COMMANDS);
    assert_int_equal(people_item_role(script, plain, ROLE_ADMIN), ROLE_ADMIN);
    assert_int_equal(people_item_role(script, plain, ROLE_OPERATOR), ROLE_OPERATOR);
    assert_int_equal(people_item_role(script, plain, ROLE_NONE), ROLE_OPERATOR);
    assert_int_equal(people_item_role(hello, plain, ROLE_ADMIN), ROLE_OPERATOR);
    assert_int_equal(people_item_role(hello, hooked, ROLE_ADMIN), ROLE_ADMIN);
    assert_int_equal(people_item_role(NULL, post, ROLE_ADMIN), ROLE_ADMIN);
    /* A function the caller cannot look up: the vault decides. */
    assert_int_equal(people_item_role(NULL, plain, ROLE_ADMIN), ROLE_OPERATOR);
    assert_int_equal(people_item_role(NULL, NULL, ROLE_ADMIN), ROLE_OPERATOR);
    assert_int_equal(people_item_role(hello, NULL, ROLE_ADMIN), ROLE_OPERATOR);
    json_decref(script);
    json_decref(hello);
    json_decref(plain);
    json_decref(hooked);
    json_decref(post);
}

/* An operator toggles schedules; anything else in a schedule is an admin's. */
static void test_schedule_patch_role(void **state)
{
    (void)state;
    const char *operator_patches[] = {"{\"enabled\":false}", "{\"enabled\":true}",
                                      "{\"enabled\":false,\"disabled_until\":\"2027-01-01\"}"};
    const char *admin_patches[] = {"{}", "[]", "{\"cron\":\"* * * * *\"}",
                                   "{\"enabled\":true,\"queue_config\":{\"function\":\"script\"}}",
                                   "{\"machine\":\"m\"}"};
    for (size_t i = 0; i < sizeof(operator_patches) / sizeof(*operator_patches); i++) {
        json_t *p = json_loads(operator_patches[i], 0, NULL);
        assert_int_equal(people_schedule_patch_role(p), ROLE_OPERATOR);
        json_decref(p);
    }
    for (size_t i = 0; i < sizeof(admin_patches) / sizeof(*admin_patches); i++) {
        json_t *p = json_loads(admin_patches[i], 0, NULL);
        assert_int_equal(people_schedule_patch_role(p), ROLE_ADMIN);
        json_decref(p);
    }
    assert_int_equal(people_schedule_patch_role(NULL), ROLE_ADMIN);
}

/* ---- users and tokens ---------------------------------------------------------------------- */

static void test_users(void **state)
{
    struct fx *f = *state;
    char err[512], name[64];
    json_t *rows = NULL, *row = NULL;
    fresh_name(name, sizeof(name), "v");
    assert_rc(STORE_OK, people_user_create(f->s, name, &row, err, sizeof(err)));
    assert_string_equal(jstr(row, "userName"), name);
    json_decref(row);
    assert_rc(STORE_CONFLICT, people_user_create(f->s, name, NULL, err, sizeof(err)));
    assert_rc(STORE_ERROR, people_user_create(f->s, "bad name", NULL, err, sizeof(err)));
    assert_rc(STORE_ERROR, people_user_create(f->s, "", NULL, err, sizeof(err)));
    assert_rc(STORE_OK, people_user_list(f->s, &rows, err, sizeof(err)));
    size_t i, found = 0;
    json_array_foreach (rows, i, row)
        found += strcmp(jstr(row, "userName"), name) == 0;
    assert_int_equal(found, 1);
    json_decref(rows);
    assert_rc(STORE_OK, people_user_delete(f->s, name, err, sizeof(err)));
    assert_rc(STORE_NOT_FOUND, people_user_delete(f->s, name, err, sizeof(err)));
    /* A removed user's name is not taken again: the audit log names it. */
    assert_rc(STORE_CONFLICT, people_user_create(f->s, name, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "removed"));
    assert_int_equal(audit_count(f, "user.create", name), 1);
    assert_int_equal(audit_count(f, "user.delete", name), 1);
}

static void test_token_create_refused(void **state)
{
    struct fx *f = *state;
    char err[512], token[PEOPLE_TOKEN_LEN + 1] = "x";
    assert_rc(STORE_NOT_FOUND, people_token_create(f->s, "nobody-at-all", f->team, ROLE_ADMIN,
                                                   token, NULL, err, sizeof(err)));
    assert_string_equal(token, "");
    assert_rc(STORE_NOT_FOUND, people_token_create(f->s, f->user, "no-such-team", ROLE_ADMIN,
                                                   token, NULL, err, sizeof(err)));
    assert_rc(STORE_ERROR, people_token_create(f->s, f->user, f->team, ROLE_NONE, token, NULL,
                                               err, sizeof(err)));
    assert_rc(STORE_ERROR, people_token_create(f->s, f->user, f->team, (enum people_role)7,
                                               token, NULL, err, sizeof(err)));
    json_t *rows = NULL;
    assert_rc(STORE_OK, people_token_list(f->s, f->user, &rows, err, sizeof(err)));
    assert_int_equal(json_array_size(rows), 0);
    json_decref(rows);
    assert_rc(STORE_NOT_FOUND, people_token_list(f->s, "nobody-at-all", &rows, err, sizeof(err)));
}

static void test_authenticate(void **state)
{
    struct fx *f = *state;
    char err[512], token[PEOPLE_TOKEN_LEN + 1], target[32];
    struct principal p;
    int64_t id = make_token(f, f->team, ROLE_OPERATOR, token);
    assert_int_equal(strlen(token), PEOPLE_TOKEN_LEN);
    assert_memory_equal(token, PEOPLE_TOKEN_PREFIX, strlen(PEOPLE_TOKEN_PREFIX));
    assert_rc(STORE_OK, people_authenticate(f->s, token, "10.0.0.5", &p, err, sizeof(err)));
    assert_string_equal(p.user, f->user);
    assert_string_equal(p.team, f->team);
    assert_int_equal(p.role, ROLE_OPERATOR);
    assert_int_equal(p.token_id, id);
    assert_string_equal(p.via, "api");
    assert_string_equal(p.address, "10.0.0.5");
    /* Its use is recorded once a minute per address, not on every request. */
    assert_rc(STORE_OK, people_authenticate(f->s, token, "10.0.0.5", &p, err, sizeof(err)));
    snprintf(target, sizeof(target), "%lld", (long long)id);
    assert_int_equal(audit_count(f, "token.use", target), 1);
    assert_rc(STORE_OK, people_authenticate(f->s, token, "10.0.0.6", &p, err, sizeof(err)));
    assert_int_equal(audit_count(f, "token.use", target), 2);
    json_t *rows = NULL;
    assert_rc(STORE_OK, people_token_list(f->s, f->user, &rows, err, sizeof(err)));
    json_t *row = json_array_get(rows, 0);
    assert_string_equal(jstr(row, "lastUsedAddress"), "10.0.0.6");
    assert_non_null(jstr(row, "lastUsedTime"));
    assert_null(json_object_get(row, "token"));
    assert_null(json_object_get(row, "tokenHash"));
    char *text = json_dumps(rows, 0);
    assert_null(strstr(text, token + strlen(PEOPLE_TOKEN_PREFIX)));
    free(text);
    json_decref(rows);
    /* Two tokens are never the same. */
    char other[PEOPLE_TOKEN_LEN + 1];
    make_token(f, f->team, ROLE_VIEWER, other);
    assert_string_not_equal(token, other);
}

/* Every malformed, truncated, altered or unknown token is refused the same way. */
static void test_authenticate_hostile(void **state)
{
    struct fx *f = *state;
    char err[512], token[PEOPLE_TOKEN_LEN + 1], bad[PEOPLE_TOKEN_LEN + 8];
    struct principal p;
    make_token(f, f->team, ROLE_ADMIN, token);
    const char *fixed[] = {NULL, "", "fy1_", "Bearer", "fy1_zz", "' OR 1=1 --"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(*fixed); i++) {
        assert_rc(STORE_NOT_FOUND, people_authenticate(f->s, fixed[i], "h", &p, err, sizeof(err)));
        assert_int_equal(p.role, ROLE_NONE);
    }
    snprintf(bad, sizeof(bad), "%.*s", PEOPLE_TOKEN_LEN - 1, token); /* truncated */
    assert_rc(STORE_NOT_FOUND, people_authenticate(f->s, bad, "h", &p, err, sizeof(err)));
    snprintf(bad, sizeof(bad), "%s0", token); /* one more digit */
    assert_rc(STORE_NOT_FOUND, people_authenticate(f->s, bad, "h", &p, err, sizeof(err)));
    snprintf(bad, sizeof(bad), "%s", token); /* the last digit changed */
    bad[PEOPLE_TOKEN_LEN - 1] = bad[PEOPLE_TOKEN_LEN - 1] == '0' ? '1' : '0';
    assert_rc(STORE_NOT_FOUND, people_authenticate(f->s, bad, "h", &p, err, sizeof(err)));
    assert_string_equal(err, "unknown token");
    snprintf(bad, sizeof(bad), "%s", token); /* upper case */
    for (char *c = bad; *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 'a' + 'A');
    assert_rc(STORE_NOT_FOUND, people_authenticate(f->s, bad, "h", &p, err, sizeof(err)));
    snprintf(bad, sizeof(bad), "fy2_%s", token + 4); /* another prefix */
    assert_rc(STORE_NOT_FOUND, people_authenticate(f->s, bad, "h", &p, err, sizeof(err)));
    /* No message names the token. */
    assert_null(strstr(err, token + 4));
    assert_rc(STORE_OK, people_authenticate(f->s, token, "h", &p, err, sizeof(err)));
}

static void test_revoke(void **state)
{
    struct fx *f = *state;
    char err[512], token[PEOPLE_TOKEN_LEN + 1], target[32];
    struct principal p;
    json_t *row = NULL;
    int64_t id = make_token(f, f->team, ROLE_OPERATOR, token);
    assert_rc(STORE_OK, people_token_revoke(f->s, id, &row, err, sizeof(err)));
    assert_true(json_is_true(json_object_get(row, "revoked")));
    json_decref(row);
    assert_rc(STORE_CONFLICT, people_token_revoke(f->s, id, NULL, err, sizeof(err)));
    assert_rc(STORE_NOT_FOUND, people_token_revoke(f->s, 1LL << 50, NULL, err, sizeof(err)));
    assert_rc(STORE_NOT_FOUND, people_authenticate(f->s, token, "h", &p, err, sizeof(err)));
    assert_int_equal(p.role, ROLE_NONE);
    snprintf(target, sizeof(target), "%lld", (long long)id);
    assert_int_equal(audit_count(f, "token.revoke", target), 1);
    assert_int_equal(audit_count(f, "token.refused", target), 1);
    /* Tried again and again from one address: one row a minute, not one a try. */
    for (int i = 0; i < 5; i++)
        assert_rc(STORE_NOT_FOUND, people_authenticate(f->s, token, "h", &p, err, sizeof(err)));
    assert_int_equal(audit_count(f, "token.refused", target), 1);
    /* A removed user's tokens stop working with it. */
    char token2[PEOPLE_TOKEN_LEN + 1];
    make_token(f, f->team, ROLE_ADMIN, token2);
    assert_rc(STORE_OK, people_authenticate(f->s, token2, "h", &p, err, sizeof(err)));
    assert_rc(STORE_OK, people_user_delete(f->s, f->user, err, sizeof(err)));
    assert_rc(STORE_NOT_FOUND, people_authenticate(f->s, token2, "h", &p, err, sizeof(err)));
}

/* A team with active tokens cannot be removed: a team of that name created later would
 * inherit them. Revoked, they are no obstacle. */
static void test_team_with_tokens(void **state)
{
    struct fx *f = *state;
    char err[512], token[PEOPLE_TOKEN_LEN + 1];
    int64_t id = make_token(f, f->team2, ROLE_VIEWER, token);
    assert_rc(STORE_CONFLICT, store_resource_delete(f->s, STORE_TEAM, NULL, f->team2, err,
                                                    sizeof(err)));
    char want[64];
    snprintf(want, sizeof(want), "active API tokens %lld", (long long)id);
    assert_non_null(strstr(err, want));
    assert_rc(STORE_OK, people_token_revoke(f->s, id, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_resource_delete(f->s, STORE_TEAM, NULL, f->team2, err, sizeof(err)));
    assert_int_equal(audit_count(f, "team.delete", f->team2), 1);
}

/* ---- the actor and the audit log ------------------------------------------------------------ */

static void test_actor_on_item(void **state)
{
    struct fx *f = *state;
    char err[512], id[37], token[PEOPLE_TOKEN_LEN + 1];
    struct principal p;
    make_token(f, f->team, ROLE_OPERATOR, token);
    assert_rc(STORE_OK, people_authenticate(f->s, token, "192.0.2.7", &p, err, sizeof(err)));
    store_set_actor(f->s, &p);
    struct store_item_spec spec = {.team = f->team, .machine = f->m1, .bridge = f->bridge,
                                   .function = "hello"};
    assert_rc(STORE_OK, store_queue_create(f->s, &spec, id, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_queue_cancel(f->s, id, 0, NULL, err, sizeof(err)));
    store_set_actor(f->s, NULL);
    json_t *events = NULL;
    assert_rc(STORE_OK, store_event_list(f->s, id, &events, err, sizeof(err)));
    char want[256];
    snprintf(want, sizeof(want), "%s (api 192.0.2.7)", f->user);
    assert_int_equal(json_array_size(events), 2);
    assert_string_equal(jstr(json_array_get(events, 0), "action"), "CREATED");
    assert_string_equal(jstr(json_array_get(events, 0), "actor"), want);
    assert_string_equal(jstr(json_array_get(events, 1), "actor"), want);
    json_decref(events);
    json_t *rows = audit(f, (struct people_audit_filter){.target = id});
    assert_int_equal(json_array_size(rows), 2); /* newest first */
    json_t *cancel = json_array_get(rows, 0), *create = json_array_get(rows, 1);
    assert_string_equal(jstr(cancel, "action"), "queue.cancel");
    assert_string_equal(jstr(create, "action"), "queue.create");
    assert_string_equal(jstr(create, "user"), f->user);
    assert_string_equal(jstr(create, "via"), "api");
    assert_string_equal(jstr(create, "address"), "192.0.2.7");
    assert_string_equal(jstr(create, "team"), f->team);
    assert_int_equal(json_integer_value(json_object_get(create, "tokenId")), p.token_id);
    json_decref(rows);
    /* Without an actor the host's own events carry none; its changes are audited as the
     * process's Unix user via "host". */
    assert_rc(STORE_OK, store_queue_create(f->s, &spec, id, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_event_list(f->s, id, &events, err, sizeof(err)));
    assert_null(json_object_get(json_array_get(events, 0), "actor"));
    json_decref(events);
    rows = audit(f, (struct people_audit_filter){.target = id});
    assert_string_equal(jstr(json_array_get(rows, 0), "via"), "host");
    json_decref(rows);
}

/* The audit row is written by the change's own transaction: a change refused, or rolled
 * back with its batch, leaves none. */
static void test_audit_same_transaction(void **state)
{
    struct fx *f = *state;
    char err[512], name[64], name2[64];
    fresh_name(name, sizeof(name), "gone");
    fresh_name(name2, sizeof(name2), "kept");
    assert_rc(STORE_NOT_FOUND, store_machine_create(f->s, "no-such-team", f->bridge, name, NULL,
                                                    NULL, err, sizeof(err)));
    assert_int_equal(audit_count(f, "machine.create", name), 0);
    assert_rc(STORE_OK, store_begin(f->s, err, sizeof(err)));
    assert_rc(STORE_OK, store_team_create(f->s, name, NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_rollback(f->s, err, sizeof(err)));
    assert_int_equal(audit_count(f, "team.create", name), 0);
    assert_rc(STORE_OK, store_begin(f->s, err, sizeof(err)));
    assert_rc(STORE_OK, store_team_create(f->s, name2, NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_commit(f->s, err, sizeof(err)));
    assert_int_equal(audit_count(f, "team.create", name2), 1);
}

static void test_audit_resources_and_filters(void **state)
{
    struct fx *f = *state;
    char err[512], sched[64];
    fresh_name(sched, sizeof(sched), "s");
    json_t *vault = json_pack("{s:s,s:s,s:{s:s},s:s}", "cron", "0 2 * * *", "machine", f->m1,
                              "queue_config", "function", "hello", "password", "hunter2-secret");
    json_t *patch = json_pack("{s:b}", "enabled", 0);
    assert_rc(STORE_OK, store_schedule_create(f->s, f->team, sched, vault, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_resource_update_vault(f->s, STORE_SCHEDULE, f->team, sched, patch, -1,
                                                    STORE_VAULT_MERGE, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_resource_update_vault(f->s, STORE_SCHEDULE, f->team, sched, vault, -1,
                                                    STORE_VAULT_REPLACE, NULL, err, sizeof(err)));
    assert_rc(STORE_OK,
              store_resource_delete(f->s, STORE_SCHEDULE, f->team, sched, err, sizeof(err)));
    json_decref(vault);
    json_decref(patch);
    json_t *rows = audit(f, (struct people_audit_filter){.team = f->team, .action = "schedule"});
    assert_int_equal(json_array_size(rows), 4);
    assert_string_equal(jstr(json_array_get(rows, 0), "action"), "schedule.delete");
    assert_string_equal(jstr(json_array_get(rows, 1), "action"), "schedule.replace");
    assert_string_equal(jstr(json_array_get(rows, 2), "action"), "schedule.update");
    assert_string_equal(jstr(json_array_get(rows, 2), "details"), "vault keys: enabled");
    assert_string_equal(jstr(json_array_get(rows, 3), "action"), "schedule.create");
    char *text = json_dumps(rows, 0);
    assert_null(strstr(text, "hunter2")); /* keys, never values */
    free(text);
    json_decref(rows);
    /* The other team's filter sees none of it; a limit cuts and says so. */
    rows = audit(f, (struct people_audit_filter){.team = f->team2, .action = "schedule"});
    assert_int_equal(json_array_size(rows), 0);
    json_decref(rows);
    int truncated = 0;
    struct people_audit_filter lf = {.team = f->team, .limit = 2};
    assert_rc(STORE_OK, people_audit_list(f->s, &lf, &rows, &truncated, err, sizeof(err)));
    assert_int_equal(json_array_size(rows), 2);
    assert_true(truncated);
    json_decref(rows);
    lf = (struct people_audit_filter){.team = f->team, .since_ms = now_ms() + 60000};
    rows = audit(f, lf);
    assert_int_equal(json_array_size(rows), 0);
    json_decref(rows);
    rows = audit(f, (struct people_audit_filter){.team = f->team, .user = "nobody-at-all"});
    assert_int_equal(json_array_size(rows), 0);
    json_decref(rows);
}

/* ---- upgrade ------------------------------------------------------------------------------- */

/* A store of schema version 4 (migration 5 undone) with an item is brought to version 5 when
 * opened: the item and its events stay, and users, tokens and the audit log work. */
static void test_upgrade_from_v4(void **state)
{
    struct fx *f = *state;
    char err[512], path[128], id[37], token[PEOPLE_TOKEN_LEN + 1];
    if (strcmp(store_driver_name(f->s), "sqlite") != 0)
        skip(); /* PostgreSQL's upgrade: tests/e2e/pg_people.sh */
    snprintf(path, sizeof(path), "%s/upgrade4.db", g_dir);
    store *s = store_open(path, err, sizeof(err));
    assert_non_null(s);
    assert_rc(STORE_OK, store_region_create(s, "r", NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_bridge_create(s, "r", "b", NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_team_create(s, "T", NULL, NULL, err, sizeof(err)));
    assert_rc(STORE_OK, store_machine_create(s, "T", "b", "m", NULL, NULL, err, sizeof(err)));
    struct store_item_spec spec = {.team = "T", .machine = "m", .bridge = "b", .function = "x"};
    assert_rc(STORE_OK, store_queue_create(s, &spec, id, NULL, err, sizeof(err)));
    store_close(s);
    raw_sql(path, "DROP TABLE audit_log; DROP TABLE tokens; DROP TABLE users;"
                  "ALTER TABLE queue_events DROP COLUMN actor;"
                  "DELETE FROM schema_migrations WHERE version >= 5;");
    s = store_open(path, err, sizeof(err));
    assert_non_null(s);
    json_t *rows = NULL, *events = NULL;
    assert_rc(STORE_OK, store_migrations(s, &rows, err, sizeof(err)));
    assert_int_equal(jint(json_array_get(rows, 4), "version"), 5);
    json_decref(rows);
    assert_rc(STORE_OK, store_event_list(s, id, &events, err, sizeof(err)));
    assert_int_equal(json_array_size(events), 1);
    assert_null(json_object_get(json_array_get(events, 0), "actor"));
    json_decref(events);
    assert_rc(STORE_OK, people_user_create(s, "ann", NULL, err, sizeof(err)));
    assert_rc(STORE_OK, people_token_create(s, "ann", "T", ROLE_VIEWER, token, NULL, err,
                                            sizeof(err)));
    struct principal p;
    assert_rc(STORE_OK, people_authenticate(s, token, "h", &p, err, sizeof(err)));
    assert_int_equal(p.role, ROLE_VIEWER);
    store_close(s);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

static int run_suite(const char *name)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_role_names),
        cmocka_unit_test(test_user_from_files),
        cmocka_unit_test(test_allowed),
        cmocka_unit_test(test_item_role),
        cmocka_unit_test(test_schedule_patch_role),
        T(test_users),
        T(test_token_create_refused),
        T(test_authenticate),
        T(test_authenticate_hostile),
        T(test_revoke),
        T(test_team_with_tokens),
        T(test_actor_on_item),
        T(test_audit_same_transaction),
        T(test_audit_resources_and_filters),
        T(test_upgrade_from_v4),
    };
    return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}

int main(void)
{
    return store_suite_main("people", g_dir, sizeof(g_dir), &g_url, run_suite);
}
