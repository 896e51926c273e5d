/*
 * Unit tests for host/cli/cli_jsonl.c: a JSON line parses to what json_loadb makes of it,
 * the same values in the same key order, or the same error at the same place. Plain lines
 * (create queue-items' usual ones) take the fast path; every other line, hostile ones
 * included, is jansson's to judge. Random lines over a JSON-ish alphabet compare the two.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_jsonl.h"

#define FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)

/* Parses line both ways and checks that the answers are the same. Returns whether the fast
 * path took it. */
static int same_as_jansson(const char *line, size_t len)
{
    json_error_t a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    json_t *mine = cli_jsonl_parse(line, len, FLAGS, &a);
    json_t *ref = json_loadb(line, len, FLAGS, &b);
    if ((mine == NULL) != (ref == NULL))
        fail_msg("line %.*s: %s here, %s by jansson", (int)len, line, mine ? "parsed" : "refused",
                 ref ? "parsed" : "refused");
    if (ref == NULL) {
        assert_string_equal(a.text, b.text);
        assert_int_equal(a.line, b.line);
        assert_int_equal(a.column, b.column);
        assert_int_equal(a.position, b.position);
    } else {
        /* Dumped in key order: the same values, keys in the same order. */
        char *x = json_dumps(mine, JSON_COMPACT | JSON_ENCODE_ANY);
        char *y = json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY);
        if (strcmp(x, y) != 0)
            fail_msg("line %.*s: %s here, %s by jansson", (int)len, line, x, y);
        assert_true(json_equal(mine, ref));
        free(x);
        free(y);
    }
    json_decref(mine);
    json_decref(ref);
    json_t *plain = cli_jsonl_plain(line, len);
    json_decref(plain);
    return plain != NULL;
}

static int same(const char *line)
{
    return same_as_jansson(line, strlen(line));
}

static void test_plain_lines_take_the_fast_path(void **state)
{
    (void)state;
    static const char *const plain[] = {
        "{\"team\":\"Ops\",\"machine\":\"m17\",\"bridge\":\"local\",\"vault\":{\"function\":\"fx_noop\"},"
        "\"priority\":3}",
        "  {\"team\" : \"Ops\" ,\t\"vault\": {\"function\": \"hello\", \"name\": \"n1\"}}\r ",
        "{}",
        "{\"a\":[],\"b\":[1,-2,3,[true,false,null]],\"c\":{\"d\":{}},\"e\":\"\"}",
        "{\"big\":999999999999999999,\"neg\":-999999999999999999,\"zero\":0}",
        "{\"t\":true,\"f\":false,\"n\":null,\"s\":\"a b ~ { } [ ] , : '\"}",
        "{\"same\":1,\"inner\":{\"same\":2}}",
    };
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
        if (!same(plain[i]))
            fail_msg("not taken by the fast path: %s", plain[i]);
}

static void test_other_lines_are_jansson_s(void **state)
{
    (void)state;
    static const char *const other[] = {
        "", "   ", "[1,2]", "\"just a string\"", "3", "null",
        "{\"a\":1,\"a\":2}",                       /* duplicate key */
        "{\"o\":{\"k\":1,\"k\":2}}",               /* duplicate inside */
        "{\"a\":\"line\\nbreak\"}",                /* escape */
        "{\"a\":\"\\u00e9\"}", "{\"a\":\"\xc3\xa9\"}", "{\"a\":\"\xff\xfe\"}", /* UTF-8, invalid */
        "{\"a\":\"tab\there\"}",                   /* a control character */
        "{\"a\":1.5}", "{\"a\":1e3}", "{\"a\":1E3}", "{\"a\":-0}", "{\"a\":01}", "{\"a\":-}",
        "{\"a\":1234567890123456789}", "{\"a\":99999999999999999999999}", "{\"a\":-1.0}",
        "{\"a\":truex}", "{\"a\":tru}", "{\"a\":nul}", "{\"a\":True}", "{\"a\":true1}",
        "{\"a\":1,}", "{\"a\" 1}", "{\"a\":}", "{,}", "{\"a\":1", "{\"a\":[1,]}", "{\"a\":[1 2]}",
        "{\"a\":1} x", "{\"a\":1}{}", "{a:1}", "{'a':1}", "{\"a\":hunter2secret}",
        "{\"team\":\"Ops\",\"machine\":\"bo", "{\"a\":\"unterminated}",
        "{\"\xe2\x80\xae\":1}", "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
        "\xef\xbb\xbf{\"a\":1}", /* a byte order mark */
    };
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        if (same(other[i]))
            fail_msg("taken by the fast path: %s", other[i]);
    /* A NUL byte inside the line (the length says where it ends). */
    static const char nul[] = "{\"a\":\"x\0y\"}";
    assert_false(same_as_jansson(nul, sizeof(nul) - 1));
    static const char nul_after[] = "{\"a\":1}\0";
    assert_false(same_as_jansson(nul_after, sizeof(nul_after) - 1));
}

/* Random lines over JSON's punctuation, a few words and bytes: both parsers agree on each. */
static void test_random_lines_agree(void **state)
{
    (void)state;
    static const char *const tok[] = {
        "{", "}", "[", "]", ",", ":", " ", "\"k\"", "\"v\"", "\"k\"", "1", "-2", "0", "3.5",
        "true", "false", "null", "tru", "\"a\\\"b\"", "\"\xc3\xa9\"", "\xff", "e5", "\t", "x",
    };
    size_t n_tok = sizeof(tok) / sizeof(tok[0]);
    unsigned seed = 14;
    int fast = 0;
    for (int i = 0; i < 20000; i++) {
        char line[256] = "{";
        int k = 1 + (int)(rand_r(&seed) % 14);
        for (int j = 0; j < k; j++)
            strncat(line, tok[rand_r(&seed) % n_tok], sizeof(line) - strlen(line) - 1);
        if (rand_r(&seed) % 2)
            strncat(line, "}", sizeof(line) - strlen(line) - 1);
        fast += same(line);
    }
    /* Objects that happen to be plain do come out of the mix: the fast path is exercised. */
    printf("# %d of 20000 random lines took the fast path\n", fast);
    assert_true(fast > 0);
}

/* A random value written as JSON text into out (at most about 200 bytes), with random
 * whitespace between tokens. */
static void random_value(char *out, size_t cap, unsigned *seed, int depth)
{
    static const char *const scalars[] = {"1", "-7", "0", "42", "true", "false", "null",
                                          "\"\"", "\"fx_noop\"", "\"a b\"", "123456789012345678"};
    static const char *const keys[] = {"\"team\"", "\"machine\"", "\"vault\"", "\"k\"", "\"\""};
    static const char *const ws[] = {"", "", "", " ", "\t", "\r", "  "};
    size_t n_ws = sizeof(ws) / sizeof(ws[0]);
    unsigned pick = rand_r(seed) % 10;
    if (depth > 3 || pick < 5) {
        strncat(out, scalars[rand_r(seed) % (sizeof(scalars) / sizeof(scalars[0]))],
                cap - strlen(out) - 1);
        return;
    }
    int obj = pick < 8;
    strncat(out, obj ? "{" : "[", cap - strlen(out) - 1);
    int n = (int)(rand_r(seed) % 4);
    for (int i = 0; i < n; i++) {
        if (i)
            strncat(out, ",", cap - strlen(out) - 1);
        strncat(out, ws[rand_r(seed) % n_ws], cap - strlen(out) - 1);
        if (obj) {
            /* Distinct keys mostly; now and then one twice (a duplicate). */
            char key[32];
            if (rand_r(seed) % 8 == 0)
                snprintf(key, sizeof(key), "\"k\"");
            else
                snprintf(key, sizeof(key), "\"k%d\"", i);
            strncat(out, i % 2 ? key : keys[rand_r(seed) % 5], cap - strlen(out) - 1);
            strncat(out, ws[rand_r(seed) % n_ws], cap - strlen(out) - 1);
            strncat(out, ":", cap - strlen(out) - 1);
            strncat(out, ws[rand_r(seed) % n_ws], cap - strlen(out) - 1);
        }
        random_value(out, cap, seed, depth + 1);
    }
    strncat(out, obj ? "}" : "]", cap - strlen(out) - 1);
}

/* Random well-formed objects, and the same with one byte changed: both parsers agree. */
static void test_random_objects_agree(void **state)
{
    (void)state;
    static const char bytes[] = "{}[],:\" \\0123456789-.eEtfnulx\t\xff\xc3";
    unsigned seed = 7;
    int fast = 0, total = 20000;
    for (int i = 0; i < total; i++) {
        char line[1024] = "{";
        int n = 1 + (int)(rand_r(&seed) % 5);
        for (int j = 0; j < n; j++) {
            char key[16];
            snprintf(key, sizeof(key), "%s\"f%d\":", j ? "," : "", j);
            strncat(line, key, sizeof(line) - strlen(line) - 1);
            random_value(line, sizeof(line), &seed, 1);
        }
        strncat(line, "}", sizeof(line) - strlen(line) - 1);
        if (i % 3 == 0) { /* one byte changed */
            size_t at = rand_r(&seed) % strlen(line);
            line[at] = bytes[rand_r(&seed) % (sizeof(bytes) - 1)];
        }
        fast += same(line);
    }
    printf("# %d of %d random objects took the fast path\n", fast, total);
    assert_true(fast > total / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_lines_take_the_fast_path),
        cmocka_unit_test(test_other_lines_are_jansson_s),
        cmocka_unit_test(test_random_lines_agree),
        cmocka_unit_test(test_random_objects_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
