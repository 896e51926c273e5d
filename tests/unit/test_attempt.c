/*
 * Building an attempt (attempt.c), as ferry serve and ferry run both do: the parameters a
 * function sees, the timeout order and cap, the item's hooks only around its own attempt,
 * the SSH key and identity as explicit fields, hostile vault values ignored.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "attempt.h"

static ferry_config cfg(void)
{
    return (ferry_config){.timeout_default = 60, .timeout_max = 3600};
}

static void test_params_drop_host_keys(void **state)
{
    (void)state;
    json_t *vault = json_pack("{s:s,s:i,s:s,s:i,s:s,s:[s],s:s,s:i}", "function", "f", "timeout", 9,
                              "pre_hook", "x", "max_retries", 2, "description", "d", "tags", "t",
                              "repository", "app", "n", 7);
    json_t *p = attempt_params(vault);
    assert_null(json_object_get(p, "function"));
    assert_null(json_object_get(p, "timeout"));
    assert_null(json_object_get(p, "pre_hook"));
    assert_null(json_object_get(p, "max_retries"));
    assert_string_equal(json_string_value(json_object_get(p, "description")), "d");
    assert_non_null(json_object_get(p, "tags"));
    assert_string_equal(json_string_value(json_object_get(p, "repository")), "app");
    assert_int_equal(json_integer_value(json_object_get(p, "n")), 7);
    json_decref(p);
    json_decref(vault);
}

static void test_timeout_order_and_cap(void **state)
{
    (void)state;
    ferry_config c = cfg();
    struct ferry_fn fn = {.name = "f", .timeout_s = 30};
    static const struct {
        const char *vault;
        int64_t fn_s, ms;
    } rows[] = {
        {"{}", 0, 60000},                     /* the host's default */
        {"{}", 30, 30000},                    /* the function's */
        {"{\"timeout\":5}", 30, 5000},        /* the item's first */
        {"{\"timeout\":99999}", 30, 3600000}, /* capped */
        {"{\"timeout\":-5}", 30, 30000},      /* hostile: ignored */
        {"{\"timeout\":\"5\"}", 0, 60000},    /* not an integer: ignored */
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        json_t *v = json_loads(rows[i].vault, 0, NULL);
        fn.timeout_s = rows[i].fn_s;
        assert_int_equal(attempt_timeout_ms(&c, v, &fn), rows[i].ms);
        json_decref(v);
    }
}

static void test_build_fields(void **state)
{
    (void)state;
    ferry_config c = cfg();
    c.plugin_sections = json_pack("{s:{s:i}}", "p", "k", 1);
    struct ferry_fn fn = {.name = "f", .plugin = "p", .path = "/x/p.so"};
    json_t *vault = json_pack("{s:s,s:s,s:s,s:i}", "function", "f", "pre_hook", "echo pre",
                              "post_hook", "echo post", "a", 1);
    json_t *machine = json_pack("{s:s,s:b}", "name", "m1", "local", 1);
    struct attempt_source src = {.fn = &fn,
                                 .vault = vault,
                                 .item_vault = vault,
                                 .machine = machine,
                                 .ssh_key = "KEY",
                                 .task_id = "t-1",
                                 .attempt = 3,
                                 .depth = 0};
    struct attempt_run run;
    attempt_build(&c, &src, &run);
    assert_string_equal(run.spec.plugin, "/x/p.so");
    assert_string_equal(run.spec.function, "f");
    assert_string_equal(run.spec.pre_hook, "echo pre");
    assert_string_equal(run.spec.post_hook, "echo post");
    assert_null(run.spec.hook_dir); /* no registry: no plugin says where */
    assert_string_equal(run.spec.ssh_key, "KEY");
    assert_string_equal(run.spec.task_id, "t-1");
    assert_int_equal(run.spec.attempt, 3);
    assert_int_equal(run.spec.timeout_ms, 60000);
    assert_ptr_equal(run.spec.machine, machine);
    assert_null(json_object_get(run.spec.machine, "_hooks")); /* nothing rides in the facts */
    assert_int_equal(json_integer_value(json_object_get(run.spec.config, "k")), 1);
    assert_null(json_object_get(run.spec.params, "pre_hook"));
    attempt_run_free(&run);
    /* A nested call never runs the item's hooks. */
    src.depth = 1;
    attempt_build(&c, &src, &run);
    assert_null(run.spec.pre_hook);
    assert_null(run.spec.post_hook);
    assert_int_equal(run.spec.depth, 1);
    attempt_run_free(&run);
    /* Hooks that are not strings are no hooks. */
    json_object_set_new(vault, "pre_hook", json_integer(1));
    json_object_set_new(vault, "post_hook", json_pack("[s]", "rm -rf /"));
    src.depth = 0;
    attempt_build(&c, &src, &run);
    assert_null(run.spec.pre_hook);
    assert_null(run.spec.post_hook);
    attempt_run_free(&run);
    json_decref(machine);
    json_decref(vault);
    json_decref(c.plugin_sections);
}

/* The host's machine cache: by team and name (a slash in either is no separator), the
 * facts' text beside them, an entry replaced by a new put, and a full cache emptied. */
static void test_machine_cache(void **state)
{
    (void)state;
    machine_cache *c = machine_cache_new();
    assert_null(machine_cache_get(c, "Ops", "m1"));
    const struct machine_facts *e =
        machine_cache_put(c, "Ops", "m1", json_pack("{s:s}", "name", "m1"), json_string("KEY"));
    assert_string_equal(e->ssh_key, "KEY");
    assert_string_equal(e->json, "{\"name\":\"m1\"}");
    assert_ptr_equal(machine_cache_get(c, "Ops", "m1"), e);
    assert_null(machine_cache_get(c, "Ops", "m2"));
    assert_null(machine_cache_get(c, "ops", "m1"));
    machine_cache_put(c, "a/b", "c", json_pack("{s:i}", "n", 1), NULL);
    machine_cache_put(c, "a", "b/c", json_pack("{s:i}", "n", 2), NULL);
    assert_int_equal(json_integer_value(json_object_get(machine_cache_get(c, "a/b", "c")->facts, "n")), 1);
    assert_int_equal(json_integer_value(json_object_get(machine_cache_get(c, "a", "b/c")->facts, "n")), 2);
    assert_null(machine_cache_get(c, "a", "b/c")->ssh_key);
    e = machine_cache_put(c, "Ops", "m1", json_pack("{s:s}", "name", "again"), NULL);
    assert_null(e->ssh_key);
    assert_string_equal(machine_cache_get(c, "Ops", "m1")->json, "{\"name\":\"again\"}");
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "m%d", i);
        machine_cache_put(c, "Many", name, json_object(), NULL);
        assert_non_null(machine_cache_get(c, "Many", name));
    }
    assert_null(machine_cache_get(c, "Ops", "m1")); /* emptied once full */
    assert_non_null(machine_cache_get(c, "Many", "m4999"));
    machine_cache_clear(c);
    assert_null(machine_cache_get(c, "Many", "m4999"));
    machine_cache_free(c);
}

static void test_local_machine(void **state)
{
    (void)state;
    json_t *m = attempt_local_machine();
    assert_true(json_is_true(json_object_get(m, "local")));
    assert_non_null(json_string_value(json_object_get(m, "name")));
    json_decref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_drop_host_keys),
        cmocka_unit_test(test_timeout_order_and_cap),
        cmocka_unit_test(test_build_fields),
        cmocka_unit_test(test_local_machine),
        cmocka_unit_test(test_machine_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
