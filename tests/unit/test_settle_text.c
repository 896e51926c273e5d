/*
 * The response vault as the store keeps it (settle_response_text): byte for byte the text
 * jansson dumps of the tree (settle_response), whatever the function, code, message and
 * result hold: every ASCII byte (escaped as jansson escapes it), UTF-8 and bytes that are
 * not UTF-8 (left to the tree), NULL members, nested results and extreme numbers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "settle.h"

/* settle_response_text(...) against json_dumps(settle_response(...), JSON_COMPACT). */
static void same_text(const char *function, const char *status, int attempts, int64_t duration,
                      const struct outcome *out)
{
    json_t *tree = settle_response(function, status, attempts, duration, out);
    char *want = json_dumps(tree, JSON_COMPACT);
    char *got = settle_response_text(function, status, attempts, duration, out);
    if (want == NULL)
        assert_null(got);
    else
        assert_string_equal(got, want);
    free(want);
    free(got);
    json_decref(tree);
}

static void test_usual_ends(void **state)
{
    (void)state;
    struct outcome ok = {.kind = OUTCOME_OK};
    same_text("fx_noop", "COMPLETED", 1, 0, &ok);
    same_text(NULL, "COMPLETED", 1, 0, &ok);
    same_text("f", "COMPLETED", 2147483647, INT64_MAX, &ok);
    same_text("f", "COMPLETED", -1, INT64_MIN, &ok);
    struct outcome fail = {.kind = OUTCOME_FAIL, .code = "disk_full", .message = "no space left"};
    same_text("backup", "FAILED", 3, 1234, &fail);
    struct outcome bare = {.kind = OUTCOME_TIMEOUT};
    same_text("backup", "FAILED", 1, 1500, &bare);
    struct outcome cancelled = {.kind = OUTCOME_CANCELLED, .message = "cancelled while running"};
    same_text("backup", "CANCELLED", 1, 7, &cancelled);
    /* The least text and the longest numbers: the members' names fill the room alone. */
    struct outcome least = {.kind = OUTCOME_FAIL, .code = "", .message = ""};
    same_text(NULL, "", INT32_MIN, INT64_MIN, &least);
}

/* Every byte from 1 to 255 in each text member: ASCII is written here, the rest by jansson
 * (valid UTF-8 kept, anything else drops the member as the tree does). */
static void test_every_byte(void **state)
{
    (void)state;
    for (int c = 1; c < 256; c++) {
        char text[8] = {'a', (char)c, 'b', (char)c, '\0'};
        struct outcome out = {.kind = OUTCOME_FAIL, .code = text, .message = text};
        same_text(text, "FAILED", 1, 2, &out);
        struct outcome ok = {.kind = OUTCOME_OK};
        same_text(text, "COMPLETED", 1, 2, &ok);
    }
    struct outcome utf8 = {
        .kind = OUTCOME_FAIL, .code = "e", .message = "caf\xc3\xa9 \xe2\x80\xa6"};
    same_text("f\xc3\xa9", "FAILED", 1, 2, &utf8);
    struct outcome broken = {.kind = OUTCOME_FAIL, .code = "\xff", .message = "x"};
    same_text("f", "FAILED", 1, 2, &broken);
}

static void test_results(void **state)
{
    (void)state;
    const char *results[] = {
        "{}",
        "[]",
        "null",
        "true",
        "\"a\\\"b\\\\c\\n\\u0001\\u007f/\"",
        "{\"z\":1,\"a\":[1.5,-0.0,1e300,2.5e-10,12345678901234567890.0],\"m\":{\"k\":\"v\"}}",
        "{\"caf\\u00e9\":\"\\u2026\",\"n\":-9223372036854775808}",
        "[{\"a\":{\"b\":{\"c\":[null,false,\"\"]}}}]",
    };
    for (size_t i = 0; i < sizeof(results) / sizeof(results[0]); i++) {
        json_t *result = json_loads(results[i], JSON_DECODE_ANY, NULL);
        assert_non_null(result);
        struct outcome ok = {.kind = OUTCOME_OK, .result = result};
        same_text("f", "COMPLETED", 1, 2, &ok);
        struct outcome fail = {.kind = OUTCOME_FAIL, .code = "c", .message = "m", .result = result};
        same_text("f", "FAILED", 1, 2, &fail);
        json_decref(result);
    }
}

/* Long texts: the room the writer sizes holds the worst case (every byte escaped). */
static void test_long_texts(void **state)
{
    (void)state;
    size_t n = 10000;
    char *text = malloc(n + 1);
    memset(text, '\x01', n);
    text[n] = '\0';
    struct outcome out = {.kind = OUTCOME_FAIL, .code = text, .message = text};
    same_text(text, "FAILED", 1, 2, &out);
    memset(text, '"', n);
    same_text(text, "FAILED", 1, 2, &out);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usual_ends),
        cmocka_unit_test(test_every_byte),
        cmocka_unit_test(test_results),
        cmocka_unit_test(test_long_texts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
