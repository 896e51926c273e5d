/*
 * Unit tests for vault_scrub (host/base/vault.c): a function's result made fit to show in a
 * response vault, a webhook's body or a mail (issue 17, point 5).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "vault.h"

static json_t *J(const char *text)
{
    json_t *value = json_loads(text, JSON_DECODE_ANY, NULL);
    assert_non_null(value);
    return value;
}

static void assert_scrubbed(const char *vault, const char *names, const char *result,
                            const char *want)
{
    json_t *v = J(vault), *n = names ? J(names) : NULL, *r = J(result), *w = J(want);
    json_t *before = json_deep_copy(r);
    json_t *got = vault_scrub(r, v, n);
    if (!json_equal(got, w)) {
        char *dumped = json_dumps(got, JSON_ENCODE_ANY | JSON_SORT_KEYS);
        print_error("got  %s\nwant %s\n", dumped, want);
        free(dumped);
        fail();
    }
    assert_true(json_equal(r, before)); /* not modified */
    json_decref(got);
    json_decref(before);
    json_decref(w);
    json_decref(r);
    json_decref(n);
    json_decref(v);
}

/* Secret values of the item's vault are masked wherever they appear in the result: alone,
 * inside text, in arrays, deep; secret keys of the result itself are redacted. */
static void test_masks_everywhere(void **state)
{
    (void)state;
    assert_scrubbed("{\"function\":\"f\",\"password\":\"hunter2x\",\"host\":\"db1\"}", NULL,
                    "{\"out\":\"login with hunter2x ok\",\"list\":[\"hunter2x\",{\"x\":\"ahunter2xb\"}],"
                    "\"token\":\"other\",\"host\":\"db1\",\"n\":3}",
                    "{\"out\":\"login with ******** ok\",\"list\":[\"********\",{\"x\":\"a********b\"}],"
                    "\"token\":\"********\",\"host\":\"db1\",\"n\":3}");
}

/* A function's SECRET parameter (its descriptor's names) is masked too; a result that is a
 * bare string is scrubbed; short secrets are left (they would hide too much). */
static void test_descriptor_names_and_shapes(void **state)
{
    (void)state;
    assert_scrubbed("{\"license\":\"LIC-777\",\"pin\":\"12\"}", "[\"license\",\"pin\"]",
                    "\"key LIC-777 and pin 12\"", "\"key ******** and pin 12\"");
    assert_scrubbed("{\"license\":\"LIC-777\"}", "[\"license\"]", "{\"license\":\"x\",\"a\":[1,null]}",
                    "{\"license\":\"********\",\"a\":[1,null]}");
    /* Nothing secret: the result is copied as it is. */
    assert_scrubbed("{\"host\":\"db1\"}", NULL, "{\"host\":\"db1\"}", "{\"host\":\"db1\"}");
}

/* The JSON-escaped form of a secret is masked too (a result that embeds JSON text). */
static void test_escaped_form(void **state)
{
    (void)state;
    assert_scrubbed("{\"secret\":\"a\\\"quote\"}", NULL, "{\"raw\":\"{\\\"s\\\":\\\"a\\\\\\\"quote\\\"}\"}",
                    "{\"raw\":\"{\\\"s\\\":\\\"********\\\"}\"}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_masks_everywhere),
        cmocka_unit_test(test_descriptor_names_and_shapes),
        cmocka_unit_test(test_escaped_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
