/*
 * Unit tests for host/base/seal.c: sealing vault secrets with the row's identity as
 * associated data, opening them, and the key files.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "seal.h"
#include "util.h"

static char g_dir[64];

/* Parses JSON the test writes inline; a typo fails the test. */
static json_t *J(const char *text)
{
    json_t *value = json_loads(text, JSON_DECODE_ANY, NULL);
    assert_non_null(value);
    return value;
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static struct seal_key key(void)
{
    struct seal_key k;
    assert_int_equal(seal_key_generate(&k, NULL, 0), 0);
    assert_int_equal(strlen(k.id), SEAL_ID_LEN);
    return k;
}

static const struct seal_ident machine_a = {"machine", "ops", "web-01"};

/* Every secret (by name, at any depth, whole objects too) is sealed; nothing else is; the
 * text of the sealed vault holds none of the secrets; opening gives the vault back. */
static void test_round_trip(void **state)
{
    (void)state;
    struct seal_key k = key();
    const char *text = "{\"ip\":\"10.0.0.1\",\"ssh_password\":\"hunter2-pass\","
                       "\"nested\":{\"apiToken\":\"tok-abcdef\",\"port\":22},"
                       "\"credentials\":{\"user\":\"u\",\"pw\":\"obj-secret\"},"
                       "\"list\":[{\"secret_key\":\"list-secret\"}],\"token\":null,"
                       "\"access_key_id\":\"AKIA-visible\",\"retries\":3}";
    json_t *orig = J(text), *v = J(text);
    char err[512];
    int n = 0;
    assert_int_equal(seal_vault(v, &k, &machine_a, NULL, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 4);
    assert_true(seal_is_sealed(jstr(v, "ssh_password")));
    assert_true(seal_is_sealed(jstr(json_object_get(v, "nested"), "apiToken")));
    assert_true(seal_is_sealed(jstr(v, "credentials")));
    assert_true(json_is_null(json_object_get(v, "token")));
    assert_string_equal(jstr(v, "access_key_id"), "AKIA-visible");
    assert_string_equal(jstr(v, "ip"), "10.0.0.1");
    char *dump = json_dumps(v, JSON_COMPACT);
    assert_null(strstr(dump, "hunter2-pass"));
    assert_null(strstr(dump, "tok-abcdef"));
    assert_null(strstr(dump, "obj-secret"));
    assert_null(strstr(dump, "list-secret"));
    free(dump);
    assert_true(seal_vault_has_sealed(v));
    assert_false(seal_vault_has_plain_secret(v, NULL));
    /* Sealing again seals nothing more. */
    assert_int_equal(seal_vault(v, &k, &machine_a, NULL, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    assert_int_equal(seal_vault_open(v, &k, 1, &machine_a, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 4);
    assert_true(json_equal(v, orig));
    json_decref(v);
    json_decref(orig);
}

/* A random nonce per value: the same secret sealed twice looks different. */
static void test_nonce_per_value(void **state)
{
    (void)state;
    struct seal_key k = key();
    json_t *a = J("{\"password\":\"same\"}"), *b = J("{\"password\":\"same\"}");
    assert_int_equal(seal_vault(a, &k, &machine_a, NULL, NULL, NULL, 0), 0);
    assert_int_equal(seal_vault(b, &k, &machine_a, NULL, NULL, NULL, 0), 0);
    assert_string_not_equal(jstr(a, "password"), jstr(b, "password"));
    json_decref(a);
    json_decref(b);
}

/* The row's identity and the field's path are the associated data: a sealed value moved
 * to another row, another team, another kind or another field does not open. */
static void test_moved_value_fails(void **state)
{
    (void)state;
    struct seal_key k = key();
    json_t *v = J("{\"password\":\"p-secret\"}");
    assert_int_equal(seal_vault(v, &k, &machine_a, NULL, NULL, NULL, 0), 0);
    const char *sealed = jstr(v, "password");
    const struct seal_ident others[] = {{"machine", "ops", "web-02"},
                                        {"machine", "dev", "web-01"},
                                        {"storage", "ops", "web-01"},
                                        {"item", "ops", "web-01"}};
    char err[512];
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        json_t *moved = json_pack("{s:s}", "password", sealed);
        assert_int_equal(seal_vault_open(moved, &k, 1, &others[i], NULL, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "altered or copied from another row or field"));
        assert_null(strstr(err, "p-secret"));
        assert_true(seal_is_sealed(jstr(moved, "password"))); /* left as it was */
        json_decref(moved);
    }
    json_t *field = json_pack("{s:s}", "api_token", sealed);
    assert_int_equal(seal_vault_open(field, &k, 1, &machine_a, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/api_token"));
    json_decref(field);
    json_decref(v);
}

/* Another key: a clear message naming both ids; a damaged value: a message, no crash. */
static void test_wrong_key_and_damage(void **state)
{
    (void)state;
    struct seal_key k = key(), other = key();
    json_t *v = J("{\"password\":\"p-secret\"}");
    char err[512];
    assert_int_equal(seal_vault(v, &k, &machine_a, NULL, NULL, NULL, 0), 0);
    json_t *copy = json_deep_copy(v);
    assert_int_equal(seal_vault_open(copy, &other, 1, &machine_a, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, k.id));
    assert_non_null(strstr(err, other.id));
    json_decref(copy);
    /* Two keys (a rotation under way): the one the value names opens it. */
    struct seal_key both[2] = {other, k};
    copy = json_deep_copy(v);
    assert_int_equal(seal_vault_open(copy, both, 2, &machine_a, NULL, err, sizeof(err)), 0);
    assert_string_equal(jstr(copy, "password"), "p-secret");
    json_decref(copy);
    /* Every byte of the value flipped in turn, and truncations: never opens, never crashes. */
    const char *sealed = jstr(v, "password");
    size_t len = strlen(sealed);
    for (size_t i = strlen(SEAL_PREFIX); i < len; i++) {
        char *bad = xstrdup(sealed);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        json_t *d = json_pack("{s:s}", "password", bad);
        assert_int_equal(seal_vault_open(d, &k, 1, &machine_a, NULL, err, sizeof(err)), -1);
        json_decref(d);
        bad[i] = '\0';
        d = json_pack("{s:s}", "password", bad);
        assert_int_equal(seal_vault_open(d, &k, 1, &machine_a, NULL, err, sizeof(err)), -1);
        json_decref(d);
        free(bad);
    }
    json_t *d = J("{\"password\":\"ferry-sealed:1:\"}");
    assert_int_equal(seal_vault_open(d, &k, 1, &machine_a, NULL, err, sizeof(err)), -1);
    seal_vault_drop_sealed(d);
    assert_true(json_is_null(json_object_get(d, "password")));
    json_decref(d);
    json_decref(v);
}

/* Base64 leaves unused bits before its padding; a value with them set decodes to the same
 * bytes but is not what was sealed, so it must not open (one or two '=' of padding). */
static void test_unused_bits_refused(void **state)
{
    (void)state;
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    struct seal_key k = key();
    char err[512];
    int pads_seen[3] = {0, 0, 0};
    for (int n = 1; n <= 6; n++) {
        char text[64];
        snprintf(text, sizeof(text), "{\"password\":\"%.*s\"}", n, "abcdef");
        json_t *v = J(text);
        assert_int_equal(seal_vault(v, &k, &machine_a, NULL, NULL, NULL, 0), 0);
        char *bad = xstrdup(jstr(v, "password"));
        size_t len = strlen(bad);
        int pad = (bad[len - 1] == '=') + (bad[len - 2] == '=');
        pads_seen[pad]++;
        if (pad > 0) {
            char *last = &bad[len - 1 - (size_t)pad];
            size_t index = (size_t)(strchr(alphabet, *last) - alphabet);
            assert_int_equal(index % (pad == 1 ? 4 : 16), 0); /* sealed canonically */
            *last = alphabet[index | 1];
            json_t *d = json_pack("{s:s}", "password", bad);
            assert_int_equal(seal_vault_open(d, &k, 1, &machine_a, NULL, err, sizeof(err)), -1);
            json_decref(d);
        }
        free(bad);
        json_decref(v);
    }
    assert_true(pads_seen[1] > 0 && pads_seen[2] > 0);
}

/* A function's descriptor may mark more keys secret (the one classification, vault.c). */
static void test_descriptor_secret_names(void **state)
{
    (void)state;
    struct seal_key k = key();
    json_t *v = J("{\"function\":\"deploy\",\"license\":\"LIC-12345\",\"host\":\"h\"}");
    json_t *names = J("[\"LICENSE\"]");
    const struct seal_ident item = {"item", "ops", "0b5f1a6e-0000-4000-8000-000000000001"};
    assert_true(seal_vault_has_plain_secret(v, names));
    assert_false(seal_vault_has_plain_secret(v, NULL));
    assert_int_equal(seal_vault(v, &k, &item, names, NULL, NULL, 0), 0);
    assert_true(seal_is_sealed(jstr(v, "license")));
    assert_string_equal(jstr(v, "host"), "h");
    assert_int_equal(seal_vault_open(v, &k, 1, &item, NULL, NULL, 0), 0);
    assert_string_equal(jstr(v, "license"), "LIC-12345");
    json_decref(names);
    json_decref(v);
}

/* Key files: created 0400 and never replaced; refused when others may read them; a file
 * that is not a key says so. */
static void test_key_files(void **state)
{
    (void)state;
    char path[128], err[512];
    struct seal_key k = key(), got;
    snprintf(path, sizeof(path), "%s/ferry.key", g_dir);
    assert_int_equal(seal_key_write(path, &k, err, sizeof(err)), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0400);
    assert_int_equal(seal_key_read(path, &got, err, sizeof(err)), 0);
    assert_string_equal(got.id, k.id);
    assert_memory_equal(got.bytes, k.bytes, SEAL_KEY_BYTES);
    struct seal_key other = key();
    assert_int_equal(seal_key_write(path, &other, err, sizeof(err)), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(seal_key_read(path, &got, err, sizeof(err)), 0);
    assert_string_equal(got.id, k.id);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(seal_key_read(path, &got, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "chmod 400"));
    assert_int_equal(chmod(path, 0600), 0);
    FILE *f = fopen(path, "w");
    fputs("not a key\n", f);
    fclose(f);
    assert_int_equal(seal_key_read(path, &got, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is not a ferry key"));
    snprintf(path, sizeof(path), "%s/missing.key", g_dir);
    assert_int_equal(seal_key_read(path, &got, err, sizeof(err)), -1);
    assert_int_equal(errno, ENOENT);
}

int main(void)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/ferry-test-seal-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_nonce_per_value),
        cmocka_unit_test(test_moved_value_fails),
        cmocka_unit_test(test_wrong_key_and_damage),
        cmocka_unit_test(test_unused_bits_refused),
        cmocka_unit_test(test_descriptor_secret_names),
        cmocka_unit_test(test_key_files),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    char *rm = xasprintf("rm -rf '%s'", g_dir);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    free(rm);
    return failed ? 1 : 0;
}
