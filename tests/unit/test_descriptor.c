/*
 * The SDK's contract as the host reads it: reserved parameter names are refused (and only
 * they), FERRY_HOST_HAS and the 1.1 accessors against a 1.0-sized and a 1.1 host table, a
 * descriptor built for ABI 1.0 still read, FERRY_FN_NEEDS_MACHINE accepted and not listed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "descriptor.h"
#include "vault.h"
#include "worker.h"

static ferry_result noop(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    (void)ctx;
    (void)params;
    (void)result;
    return FERRY_OK;
}

/* Reads a one-function plugin whose only parameter is called name; returns the reason. */
static json_t *read_with_param(const char *name, uint32_t fn_flags, char *reason, size_t rlen)
{
    const ferry_param params[] = {
        {name, FERRY_PARAM_STRING, 0, NULL, "test"},
        FERRY_PARAM_END,
    };
    const ferry_function fn = {FERRY_FUNCTION_INIT, .flags = fn_flags, .name = "f",
                               FERRY_PARAMS(params), .run = noop};
    const ferry_function *const fns[] = {&fn, NULL};
    const ferry_plugin p = {.magic = FERRY_PLUGIN_MAGIC,
                            .abi_major = FERRY_ABI_MAJOR,
                            .abi_minor = FERRY_ABI_MINOR,
                            .struct_size = sizeof(ferry_plugin),
                            .name = "t",
                            .functions = fns};
    reason[0] = '\0';
    return descriptor_read(&p, reason, rlen);
}

static const char *const reserved[] = {FERRY_RESERVED_PARAMS};

static void test_reserved_names_are_refused(void **state)
{
    (void)state;
    char reason[512];
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        json_t *d = read_with_param(reserved[i], 0, reason, sizeof(reason));
        assert_null(d);
        char want[128];
        snprintf(want, sizeof(want), "parameter '%s' is a vault key the host owns", reserved[i]);
        assert_non_null(strstr(reason, want));
    }
}

static void test_passed_through_host_keys_may_be_declared(void **state)
{
    (void)state;
    char reason[512];
    const char *ok[] = {"description", "tags", "repository", "timeout_seconds"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        json_t *d = read_with_param(ok[i], 0, reason, sizeof(reason));
        assert_non_null(d);
        json_decref(d);
    }
}

/* Every reserved name but priority is a host key of the item vault (vault.c), and the two
 * host keys a function may declare are the ones the host passes through. */
static void test_reserved_names_match_the_vault_rules(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (strcmp(reserved[i], "priority") != 0)
            assert_true(vault_is_host_key(reserved[i]));
    assert_true(vault_is_host_key("description"));
    assert_true(vault_is_host_key("tags"));
}

static void test_needs_machine_is_accepted_and_not_listed(void **state)
{
    (void)state;
    char reason[512];
    json_t *d = read_with_param("x", FERRY_FN_NEEDS_MACHINE, reason, sizeof(reason));
    assert_non_null(d);
    json_t *flags = json_object_get(json_array_get(json_object_get(d, "functions"), 0), "flags");
    assert_int_equal(json_array_size(flags), 0);
    json_decref(d);
}

static void test_host_has_by_size(void **state)
{
    (void)state;
    const ferry_host *full = worker_host_table();
    assert_int_equal(full->abi_minor, 2);
    assert_true(FERRY_HOST_HAS(full, task_id));
    assert_true(FERRY_HOST_HAS(full, attempt));
    assert_true(FERRY_HOST_HAS(full, exec_start));
    assert_true(FERRY_HOST_HAS(full, exec_wait));
    assert_non_null(full->exec_start);
    assert_non_null(full->exec_wait);
    /* A 1.1 host's table ends at attempt: the 1.2 streaming exec reads as absent. */
    ferry_host v11;
    memcpy(&v11, full, sizeof(v11));
    v11.struct_size = (uint32_t)(offsetof(ferry_host, attempt) + sizeof(v11.attempt));
    assert_true(FERRY_HOST_HAS(&v11, attempt));
    assert_false(FERRY_HOST_HAS(&v11, exec_start));
    assert_false(FERRY_HOST_HAS(&v11, exec_wait));
    /* A 1.0 host's table ends at http: the 1.1 accessors read as absent. */
    ferry_host old;
    memcpy(&old, full, sizeof(old));
    old.struct_size = (uint32_t)(offsetof(ferry_host, http) + sizeof(old.http));
    old.abi_minor = 0;
    assert_true(FERRY_HOST_HAS(&old, http));
    assert_false(FERRY_HOST_HAS(&old, task_id));
    struct ferry_ctx ctx = {.struct_size = sizeof(ctx), .host = &old};
    assert_null(ferry_task_id(&ctx));
    assert_int_equal(ferry_attempt(&ctx), 0);
    /* Outside an attempt the 1.1 services answer "" and 0. */
    assert_string_equal(full->task_id(NULL), "");
    assert_int_equal(full->attempt(NULL), 0);
}

static void test_abi_10_descriptor_still_reads(void **state)
{
    (void)state;
    const ferry_function fn = {FERRY_FUNCTION_INIT, .name = "old", .run = noop};
    const ferry_function *const fns[] = {&fn, NULL};
    const ferry_plugin p = {.magic = FERRY_PLUGIN_MAGIC,
                            .abi_major = 1,
                            .abi_minor = 0,
                            .struct_size = sizeof(ferry_plugin),
                            .name = "old",
                            .functions = fns};
    char reason[512] = "";
    json_t *d = descriptor_read(&p, reason, sizeof(reason));
    assert_non_null(d);
    assert_string_equal(json_string_value(json_object_get(d, "abi")), "1.0");
    json_decref(d);
}

/* A flag read by the probe comes back as the same bit through descriptor_flags, the one
 * place the host turns a descriptor's flag names into facts. */
static void test_flags_round_trip_to_bits(void **state)
{
    (void)state;
    char reason[512];
    json_t *d = read_with_param("x", FERRY_FN_IDEMPOTENT | FERRY_FN_NEEDS_MACHINE, reason,
                                sizeof(reason));
    assert_non_null(d);
    json_t *fn = json_array_get(json_object_get(d, "functions"), 0);
    assert_int_equal(descriptor_flags(fn), FERRY_FN_IDEMPOTENT);
    struct ferry_fn f;
    assert_int_equal(descriptor_fn(fn, &f), 0);
    assert_string_equal(f.name, "f");
    assert_int_equal(f.flags, FERRY_FN_IDEMPOTENT);
    assert_ptr_equal(f.desc, fn);
    json_decref(d);
    d = read_with_param("x", 0, reason, sizeof(reason));
    assert_int_equal(descriptor_flags(json_array_get(json_object_get(d, "functions"), 0)), 0);
    json_decref(d);
}

/* Hostile or missing descriptors: unknown names, non-strings and no descriptor at all. */
static void test_flags_of_odd_descriptors(void **state)
{
    (void)state;
    assert_int_equal(descriptor_flags(NULL), 0);
    json_t *odd = json_pack("{s:s,s:[s,i,n,s],s:i}", "name", "g", "flags", "Idempotent", 1,
                            "idempotentx", "timeout", -5);
    assert_int_equal(descriptor_flags(odd), 0);
    struct ferry_fn f;
    assert_int_equal(descriptor_fn(odd, &f), 0);
    assert_int_equal(f.timeout_s, 0);
    json_object_set_new(odd, "flags", json_string("idempotent")); /* not an array */
    assert_int_equal(descriptor_flags(odd), 0);
    json_decref(odd);
    assert_int_equal(descriptor_fn(NULL, &f), -1);
    json_t *nameless = json_pack("{s:[s]}", "flags", "idempotent");
    assert_int_equal(descriptor_fn(nameless, &f), -1);
    json_decref(nameless);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reserved_names_are_refused),
        cmocka_unit_test(test_passed_through_host_keys_may_be_declared),
        cmocka_unit_test(test_reserved_names_match_the_vault_rules),
        cmocka_unit_test(test_needs_machine_is_accepted_and_not_listed),
        cmocka_unit_test(test_host_has_by_size),
        cmocka_unit_test(test_abi_10_descriptor_still_reads),
        cmocka_unit_test(test_flags_round_trip_to_bits),
        cmocka_unit_test(test_flags_of_odd_descriptors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
