/* Unit tests for host/base/vault.c: parsing, merge patch, redaction, host keys, parameters. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "vault.h"

/* Parses any JSON value the test writes inline; a typo in a test fails that test. */
static json_t *J(const char *text)
{
    json_error_t jerr;
    json_t *value = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (value == NULL)
        fail_msg("bad JSON in test: %s: %s", jerr.text, text);
    return value;
}

/* Asserts that two JSON values are equal, printing both when they are not. */
static void assert_json_equal(const json_t *got, const char *want_text)
{
    json_t *want = J(want_text);
    if (!json_equal(got, want)) {
        char *dumped = got ? json_dumps(got, JSON_ENCODE_ANY | JSON_SORT_KEYS) : NULL;
        print_error("got  %s\nwant %s\n", dumped ? dumped : "NULL", want_text);
        free(dumped);
        json_decref(want);
        fail();
    }
    json_decref(want);
}

static json_t *parse_ok(const char *text)
{
    char err[256] = "";
    json_t *vault = vault_parse(text, strlen(text), 0, err, sizeof(err));
    if (vault == NULL)
        fail_msg("vault_parse failed: %s\n%s", err, text);
    return vault;
}

/* Parses text expecting failure, and checks the message is exactly want. */
static void parse_fails(const char *text, size_t max_bytes, const char *want)
{
    char err[256] = "";
    json_t *vault = vault_parse(text, strlen(text), max_bytes, err, sizeof(err));
    assert_null(vault);
    assert_string_equal(err, want);
}

/* ---- vault_parse ------------------------------------------------------------------------- */

static void test_parse_plain_object(void **state)
{
    (void)state;
    json_t *vault = parse_ok("{\"function\": \"repo_push\", \"verify\": true}");
    assert_json_equal(vault, "{\"function\":\"repo_push\",\"verify\":true}");
    json_decref(vault);
}

static void test_parse_comments_blanked(void **state)
{
    (void)state;
    json_t *vault = parse_ok("# leading comment line\n"
                             "{\n"
                             "  \"cron\": \"*/30 * * * *\",  # Every 30 minutes\n"
                             "  \"timezone\": \"UTC\"# no space before it\n"
                             "}  # trailing, no newline");
    assert_json_equal(vault, "{\"cron\":\"*/30 * * * *\",\"timezone\":\"UTC\"}");
    json_decref(vault);
}

static void test_parse_hash_inside_strings_kept(void **state)
{
    (void)state;
    json_t *vault = parse_ok("{\"url\": \"https://example.com/page#section\", # comment\n"
                             " \"escaped\": \"quote \\\" # still a string\",\n"
                             " \"backslash\": \"ends in \\\\\", # a comment again\n"
                             " \"#key\": \"#\"}");
    assert_json_equal(vault, "{\"url\":\"https://example.com/page#section\","
                             "\"escaped\":\"quote \\\" # still a string\","
                             "\"backslash\":\"ends in \\\\\",\"#key\":\"#\"}");
    json_decref(vault);
}

static void test_parse_error_line_column(void **state)
{
    (void)state;
    /* Missing comma: the error points at the start of "b" on line 3. */
    parse_fails("{\n  \"a\": 1\n  \"b\": 2\n}", 0,
                "invalid JSON in vault at line 3, column 3: '}' expected near '\"b\"'");
    parse_fails("{\"a\": tru}", 0,
                "invalid JSON in vault at line 1, column 7: invalid token near 'tru'");
    parse_fails("{\"a\": 1,}", 0,
                "invalid JSON in vault at line 1, column 9: string or '}' expected near '}'");
    /* Columns count characters, not bytes. */
    parse_fails("{\"\xc3\xbc\xc3\xbc\": 1 x}", 0,
                "invalid JSON in vault at line 1, column 10: '}' expected near 'x'");
}

static void test_parse_error_position_after_comments(void **state)
{
    (void)state;
    /* Comments (with multi-byte characters in them) must not move the reported place. */
    parse_fails("{ # caf\xc3\xa9 \xe2\x82\xac\xe2\x82\xac\n"
                "  \"cron\": \"0 4 * * 0\",  # Changed from 3 AM to 4 AM\n"
                "  \"timezone\" \"UTC\"\n"
                "}",
                0, "invalid JSON in vault at line 3, column 14: ':' expected near '\"UTC\"'");
    /* A comment swallowing the closing brace: the error is at the end of the text. */
    parse_fails("{\"a\": 1 # }", 0,
                "invalid JSON in vault at line 1, column 12: '}' expected near end of file");
    parse_fails("{\"a\": 1 # }\n", 0,
                "invalid JSON in vault at line 2, column 1: '}' expected near end of file");
}

static void test_parse_error_unterminated_string(void **state)
{
    (void)state;
    parse_fails("{\"a\": \"x\ny\"}", 0,
                "invalid JSON in vault at line 1, column 7: unexpected newline near '\"x'");
}

static void test_parse_duplicate_keys(void **state)
{
    (void)state;
    parse_fails("{\"a\": 1,\n  \"a\": 2}", 0,
                "invalid JSON in vault at line 2, column 3: duplicate object key near '\"a\"'");
    /* A key too long for jansson to quote is still located at its opening quote. */
    parse_fails("{\"repository_name_that_is_long\": 1,\n \"repository_name_that_is_long\": 2}", 0,
                "invalid JSON in vault at line 2, column 2: duplicate object key");
    /* Duplicates in nested objects too. */
    char err[256];
    const char *text = "{\"a\": {\"b\": 1, \"b\": 2}}";
    assert_null(vault_parse(text, strlen(text), 0, err, sizeof(err)));
}

static void test_parse_size_limit(void **state)
{
    (void)state;
    const char *text = "{\"function\": \"repo_push\"}"; /* 25 bytes */
    parse_fails(text, 24,
                "vault is 25 bytes; the limit is 24 bytes (vault.max_bytes in the config)");
    char err[128];
    json_t *vault = vault_parse(text, strlen(text), 25, err, sizeof(err));
    assert_non_null(vault);
    json_decref(vault);
}

static void test_parse_not_an_object(void **state)
{
    (void)state;
    parse_fails("[1, 2]", 0, "vault must be a JSON object, got an array");
    parse_fails("\"text\"", 0, "vault must be a JSON object, got a string");
    parse_fails("42 # the answer", 0, "vault must be a JSON object, got an integer");
    parse_fails("null", 0, "vault must be a JSON object, got null");
}

static void test_parse_empty(void **state)
{
    (void)state;
    const char *want =
        "vault is empty; it must be a JSON object such as {\"function\": \"repo_push\"}";
    parse_fails("", 0, want);
    parse_fails("  \n\t ", 0, want);
    parse_fails("# only a comment\n   # and another", 0, want);
    char err[128];
    assert_null(vault_parse(NULL, 0, 0, err, sizeof(err)));
    assert_string_equal(err, want);
}

static void test_parse_not_nul_terminated_and_nul_bytes(void **state)
{
    (void)state;
    char err[128];
    /* len stops before the garbage: only the first len bytes count. */
    const char text[] = "{\"a\": 1}GARBAGE";
    json_t *vault = vault_parse(text, 8, 0, err, sizeof(err));
    assert_non_null(vault);
    json_decref(vault);

    const char with_nul[] = "{\"a\": 1\0}";
    assert_null(vault_parse(with_nul, sizeof(with_nul) - 1, 0, err, sizeof(err)));
    assert_string_equal(err, "vault holds a NUL byte at line 1, column 8; a vault is JSON text");
}

static void test_parse_err_may_be_null(void **state)
{
    (void)state;
    assert_null(vault_parse("{", 1, 0, NULL, 0));
    assert_null(vault_parse("{}", 2, 1, NULL, 0));
    char tiny[8];
    assert_null(vault_parse("[]", 2, 0, tiny, sizeof(tiny)));
    assert_string_equal(tiny, "vault m"); /* cut, still terminated */
}

/*
 * Every vault in the user's guide (seed/000_fe445159a0569f11.txt), as the shell hands it to
 * the program: the '$VAR' pieces replaced by sample values.
 */
enum seed_kind { SEED_QUEUE, SEED_SCHEDULE, SEED_PATCH };
static const struct seed_vault {
    enum seed_kind kind;
    const char *text;
} seed_vaults[] = {
    {SEED_QUEUE, "{\n"
                 "    \"function\": \"repo_push\",\n"
                 "    \"repository\": \"webapp\",\n"
                 "    \"storage\": \"s3-backups\",\n"
                 "    \"description\": \"Daily webapp backup\"\n"
                 "  }"},
    {SEED_QUEUE, "{\n"
                 "    \"function\": \"os_update\",\n"
                 "    \"packages\": [\"security\", \"critical\"],\n"
                 "    \"reboot\": false\n"
                 "  }"},
    {SEED_SCHEDULE, "{\n"
                    "  \"cron\": \"0 2 * * *\",\n"
                    "  \"timezone\": \"UTC\",\n"
                    "  \"machine\": \"app-server-01\",\n"
                    "  \"queue_config\": {\n"
                    "    \"function\": \"repo_push\",\n"
                    "    \"repository\": \"application\",\n"
                    "    \"storage\": \"s3-daily-backups\",\n"
                    "    \"retention_days\": 30\n"
                    "  },\n"
                    "  \"notifications\": {\n"
                    "    \"on_failure\": \"ops-alerts@company.com\",\n"
                    "    \"on_success\": \"ops-logs@company.com\"\n"
                    "  }\n"
                    "}"},
    {SEED_SCHEDULE, "{\n"
                    "  \"cron\": \"0 3 * * 0\",\n"
                    "  \"timezone\": \"UTC\",\n"
                    "  \"machine\": \"all-servers\",\n"
                    "  \"queue_config\": {\n"
                    "    \"function\": \"repo_push\",\n"
                    "    \"repository\": \"full-system\",\n"
                    "    \"storage\": \"s3-weekly-backups\",\n"
                    "    \"compression\": \"high\",\n"
                    "    \"retention_days\": 90\n"
                    "  }\n"
                    "}"},
    {SEED_SCHEDULE, "{\n"
                    "  \"cron\": \"0 4 1 * *\",\n"
                    "  \"timezone\": \"UTC\",\n"
                    "  \"machine\": \"archive-server\",\n"
                    "  \"queue_config\": {\n"
                    "    \"function\": \"repo_push\",\n"
                    "    \"repository\": \"complete-archive\",\n"
                    "    \"storage\": \"glacier-storage\",\n"
                    "    \"retention_years\": 7\n"
                    "  }\n"
                    "}"},
    {SEED_PATCH, "{\n"
                 "  \"enabled\": false,\n"
                 "  \"disabled_reason\": \"Maintenance window\",\n"
                 "  \"disabled_until\": \"2024-01-15\"\n"
                 "}"},
    {SEED_PATCH, "{\n"
                 "  \"cron\": \"0 4 * * 0\",  # Changed from 3 AM to 4 AM\n"
                 "  \"timezone\": \"America/New_York\"\n"
                 "}"},
    {SEED_QUEUE, "{\n"
                 "    \"function\": \"repo_snapshot\",\n"
                 "    \"repository\": \"webapp\",\n"
                 "    \"snapshot_id\": \"20240115_020000\"\n"
                 "  }"},
    {SEED_QUEUE, "{\n"
                 "    \"function\": \"repo_push\",\n"
                 "    \"repository\": \"webapp\",\n"
                 "    \"storage\": \"s3-backups\",\n"
                 "    \"snapshot_id\": \"20240115_020000\",\n"
                 "    \"verify\": true\n"
                 "  }"},
    {SEED_QUEUE, "{\n"
                 "    \"function\": \"repo_down\",\n"
                 "    \"repository\": \"webapp\"\n"
                 "  }"},
    {SEED_QUEUE, "{\n"
                 "    \"function\": \"repo_pull\",\n"
                 "    \"repository\": \"webapp\",\n"
                 "    \"storage\": \"s3-backups\",\n"
                 "    \"restore_point\": \"20240114_020000\",\n"
                 "    \"verify\": true\n"
                 "  }"},
    {SEED_QUEUE, "{\n"
                 "    \"function\": \"repo_up\",\n"
                 "    \"repository\": \"webapp\"\n"
                 "  }"},
    {SEED_SCHEDULE, "{\n"
                    "    \"cron\": \"*/30 * * * *\",  # Every 30 minutes\n"
                    "    \"timezone\": \"UTC\",\n"
                    "    \"machine\": \"replication-master\",\n"
                    "    \"queue_config\": {\n"
                    "      \"function\": \"repo_replicate\",\n"
                    "      \"source\": {\n"
                    "        \"repository\": \"customer-db\",\n"
                    "        \"region\": \"us-east\"\n"
                    "      },\n"
                    "      \"targets\": [\n"
                    "        {\n"
                    "          \"region\": \"us-west\",\n"
                    "          \"storage\": \"s3-us-west-customer-db\"\n"
                    "        },\n"
                    "        {\n"
                    "          \"region\": \"eu-west\", \n"
                    "          \"storage\": \"s3-eu-west-customer-db\"\n"
                    "        }\n"
                    "      ],\n"
                    "      \"mode\": \"incremental\",\n"
                    "      \"verify\": true\n"
                    "    }\n"
                    "  }"},
    {SEED_QUEUE, "{\n"
                 "    \"function\": \"repo_push\",\n"
                 "    \"repository\": \"webapp\",\n"
                 "    \"storage\": \"deployment-backups\",\n"
                 "    \"tags\": {\n"
                 "      \"deployment_id\": \"6f1c2a9e-3b7d-4e0a-9c51-2d8f4b6a7e10\",\n"
                 "      \"type\": \"pre-deployment\",\n"
                 "      \"timestamp\": \"20240115_020000\"\n"
                 "    }\n"
                 "  }"},
    {SEED_QUEUE, "{\n"
                 "      \"function\": \"repo_pull\",\n"
                 "      \"repository\": \"webapp\",\n"
                 "      \"storage\": \"release-artifacts\",\n"
                 "      \"version\": \"latest\",\n"
                 "      \"pre_hook\": \"stop_services.sh\",\n"
                 "      \"post_hook\": \"start_services.sh\",\n"
                 "      \"health_check\": {\n"
                 "        \"endpoint\": \"/health\",\n"
                 "        \"timeout\": 300,\n"
                 "        \"retries\": 5\n"
                 "      }\n"
                 "    }"},
    {SEED_QUEUE, "{\n"
                 "    \"function\": \"run_tests\",\n"
                 "    \"test_suite\": \"smoke\",\n"
                 "    \"target_env\": \"staging\",\n"
                 "    \"deployment_id\": \"6f1c2a9e-3b7d-4e0a-9c51-2d8f4b6a7e10\",\n"
                 "    \"notify_on_failure\": \"deployments@company.com\"\n"
                 "  }"},
    {SEED_QUEUE, "{\n"
                 "    \"function\": \"conditional_backup\",\n"
                 "    \"check_command\": \"find /app -newer /var/lib/rediacc/last_backup -type f | "
                 "wc -l\",\n"
                 "    \"threshold\": 1,\n"
                 "    \"if_true\": {\n"
                 "      \"function\": \"repo_push\",\n"
                 "      \"repository\": \"application\",\n"
                 "      \"storage\": \"incremental-backups\"\n"
                 "    },\n"
                 "    \"if_false\": {\n"
                 "      \"function\": \"log_message\",\n"
                 "      \"message\": \"No changes detected, skipping backup\"\n"
                 "    }\n"
                 "  }"},
    {SEED_QUEUE, "{\n"
                 "  \"function\": \"backup_with_retry\",\n"
                 "  \"max_retries\": 3,\n"
                 "  \"retry_delay\": 300,\n"
                 "  \"on_failure\": {\n"
                 "    \"notify\": [\"ops@company.com\"],\n"
                 "    \"fallback_function\": \"backup_to_secondary\"\n"
                 "  },\n"
                 "  \"timeout\": 3600\n"
                 "}"},
};

static void test_parse_seed_vaults(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(seed_vaults) / sizeof(seed_vaults[0]); i++) {
        char err[256] = "";
        json_t *vault = parse_ok(seed_vaults[i].text);
        const json_t *queue = NULL;
        if (seed_vaults[i].kind == SEED_QUEUE)
            queue = vault;
        else if (seed_vaults[i].kind == SEED_SCHEDULE)
            queue = json_object_get(vault, "queue_config");
        if (queue != NULL && vault_check_host_keys(queue, err, sizeof(err)) != 0)
            fail_msg("seed vault %zu: %s", i, err);
        json_decref(vault);
    }
}

static void test_parse_seed_values(void **state)
{
    (void)state;
    json_t *vault = parse_ok(seed_vaults[12].text);
    assert_string_equal(json_string_value(json_object_get(vault, "cron")), "*/30 * * * *");
    json_t *targets = json_object_get(json_object_get(vault, "queue_config"), "targets");
    assert_int_equal(json_array_size(targets), 2);
    json_decref(vault);
}

/* The seed's two schedule updates merge into the schedule and leave the rest alone. */
static void test_seed_schedule_patches(void **state)
{
    (void)state;
    json_t *schedule = parse_ok(seed_vaults[3].text);
    json_t *disable = parse_ok(seed_vaults[5].text);
    json_t *retime = parse_ok(seed_vaults[6].text);
    json_t *step1 = json_merge_patch(schedule, disable);
    json_t *step2 = json_merge_patch(step1, retime);
    assert_false(json_is_true(json_object_get(step2, "enabled")));
    assert_string_equal(json_string_value(json_object_get(step2, "cron")), "0 4 * * 0");
    assert_string_equal(json_string_value(json_object_get(step2, "timezone")), "America/New_York");
    assert_string_equal(json_string_value(json_object_get(step2, "machine")), "all-servers");
    assert_true(json_equal(json_object_get(step2, "queue_config"),
                           json_object_get(schedule, "queue_config")));
    json_decref(schedule);
    json_decref(disable);
    json_decref(retime);
    json_decref(step1);
    json_decref(step2);
}

/* ---- json_merge_patch -------------------------------------------------------------------- */

static void check_merge(const char *target_text, const char *patch_text, const char *want)
{
    json_t *target = J(target_text);
    json_t *patch = J(patch_text);
    json_t *target_before = json_deep_copy(target);
    json_t *patch_before = json_deep_copy(patch);
    json_t *result = json_merge_patch(target, patch);
    assert_non_null(result);
    assert_json_equal(result, want);
    assert_true(json_equal(target, target_before));
    assert_true(json_equal(patch, patch_before));
    /* The result shares nothing with its inputs: changing it leaves them alone. */
    if (json_is_object(result))
        json_object_clear(result);
    assert_true(json_equal(target, target_before));
    assert_true(json_equal(patch, patch_before));
    json_decref(result);
    json_decref(target);
    json_decref(patch);
    json_decref(target_before);
    json_decref(patch_before);
}

static void test_merge_patch_rfc_appendix(void **state)
{
    (void)state;
    /* RFC 7396, Appendix A. */
    check_merge("{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}");
    check_merge("{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}");
    check_merge("{\"a\":\"b\"}", "{\"a\":null}", "{}");
    check_merge("{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}");
    check_merge("{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}");
    check_merge("{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}");
    check_merge("{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}",
                "{\"a\":{\"b\":\"d\"}}");
    check_merge("{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}");
    check_merge("[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]");
    check_merge("{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]");
    check_merge("{\"a\":\"foo\"}", "null", "null");
    check_merge("{\"a\":\"foo\"}", "\"bar\"", "\"bar\"");
    check_merge("{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}");
    check_merge("[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}");
    check_merge("{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}");
}

static void test_merge_patch_rfc_section3(void **state)
{
    (void)state;
    check_merge(
        "{\"title\":\"Goodbye!\",\"author\":{\"givenName\":\"John\",\"familyName\":\"Doe\"},"
        "\"tags\":[\"example\",\"sample\"],\"content\":\"This will be unchanged\"}",
        "{\"title\":\"Hello!\",\"phoneNumber\":\"+01-123-456-7890\","
        "\"author\":{\"familyName\":null},\"tags\":[\"example\"]}",
        "{\"title\":\"Hello!\",\"author\":{\"givenName\":\"John\"},\"tags\":[\"example\"],"
        "\"content\":\"This will be unchanged\",\"phoneNumber\":\"+01-123-456-7890\"}");
}

static void test_merge_patch_edges(void **state)
{
    (void)state;
    json_t *patch = J("{\"a\":{\"b\":null,\"c\":1}}");
    json_t *result = json_merge_patch(NULL, patch);
    assert_json_equal(result, "{\"a\":{\"c\":1}}");
    json_decref(result);
    json_decref(patch);
    assert_null(json_merge_patch(NULL, NULL));
    /* Nulls inside an array in the patch are values, not deletions. */
    check_merge("{}", "{\"a\":[null,{\"b\":null}]}", "{\"a\":[null,{\"b\":null}]}");
}

/* ---- Secrets ----------------------------------------------------------------------------- */

static void test_key_is_secret(void **state)
{
    (void)state;
    static const char *const secret[] = {
        "password",
        "PASSWORD",
        "passwd",
        "secret",
        "secret_key",
        "token",
        "api_key",
        "API-KEY",
        "apiKey",
        "apikey",
        "access_key",
        "private_key",
        "SSH_PRIVATE_KEY",
        "sshPrivateKey",
        "passphrase",
        "credentials",
        "key",
        "Key",
        "db_password",
        "client_secret",
        "auth_token",
        "encryption_key",
        "aws_secret_access_key",
        "my.password",
        "SSHPrivateKey",
        "storage_credentials",
    };
    static const char *const not_secret[] = {
        "access_key_id",
        "accessKeyId",
        "key_id",
        "public_key",
        "ssh_public_key",
        "sort_key",
        "partition_key",
        "primary_key",
        "function",
        "repository",
        "storage",
        "keys",
        "monkey",
        "token_url",
        "password_hint_shown",
        "user",
        "ip",
        "",
        "tokens",
        "description",
    };
    for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
        if (!vault_key_is_secret(secret[i]))
            fail_msg("\"%s\" should be secret", secret[i]);
    for (size_t i = 0; i < sizeof(not_secret) / sizeof(not_secret[0]); i++)
        if (vault_key_is_secret(not_secret[i]))
            fail_msg("\"%s\" should not be secret", not_secret[i]);
    assert_false(vault_key_is_secret(NULL));

    /* A long name goes through the heap path and still works. */
    char longname[600];
    memset(longname, 'x', sizeof(longname));
    strcpy(longname + sizeof(longname) - 10, "_password");
    assert_true(vault_key_is_secret(longname));
}

static void test_redact_deep(void **state)
{
    (void)state;
    json_t *vault = J("{\"function\":\"repo_push\",\"password\":\"hunter22\","
                      "\"machines\":[{\"ip\":\"10.0.0.1\",\"SSH_PRIVATE_KEY\":\"-----BEGIN\"},"
                      "[{\"token\":42}]],"
                      "\"storage\":{\"provider\":\"s3\",\"access_key_id\":\"AKIA1\","
                      "\"secret_key\":\"s3cr3t\",\"credentials\":{\"user\":\"u\",\"pass\":\"p\"}},"
                      "\"api_key\":null,\"db_pass\":\"plain\"}");
    json_t *before = json_deep_copy(vault);
    json_t *names = J("[\"db_pass\"]");
    json_t *redacted = vault_redact(vault, names);
    assert_json_equal(redacted,
                      "{\"function\":\"repo_push\",\"password\":\"********\","
                      "\"machines\":[{\"ip\":\"10.0.0.1\",\"SSH_PRIVATE_KEY\":\"********\"},"
                      "[{\"token\":\"********\"}]],"
                      "\"storage\":{\"provider\":\"s3\",\"access_key_id\":\"AKIA1\","
                      "\"secret_key\":\"********\",\"credentials\":\"********\"},"
                      "\"api_key\":null,\"db_pass\":\"********\"}");
    assert_true(json_equal(vault, before));
    json_decref(redacted);

    /* Without the function's list, db_pass is not secret by its name. */
    redacted = vault_redact(vault, NULL);
    assert_string_equal(json_string_value(json_object_get(redacted, "db_pass")), "plain");
    json_decref(redacted);

    /* Top-level arrays and scalars are copied. */
    json_t *array = J("[{\"token\":\"abc\"},1]");
    redacted = vault_redact(array, NULL);
    assert_json_equal(redacted, "[{\"token\":\"********\"},1]");
    json_decref(redacted);
    assert_null(vault_redact(NULL, NULL));

    json_decref(array);
    json_decref(names);
    json_decref(before);
    json_decref(vault);
}

static void check_redact_text(const char *text, const char *vault_text, const char *names_text,
                              const char *want)
{
    json_t *vault = J(vault_text);
    json_t *names = names_text ? J(names_text) : NULL;
    char *got = redact_text(text, vault, names);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
    json_decref(vault);
    json_decref(names);
}

static void test_redact_text(void **state)
{
    (void)state;
    check_redact_text("login failed for admin with hunter22 (hunter22)",
                      "{\"user\":\"admin\",\"password\":\"hunter22\"}", NULL,
                      "login failed for admin with ******** (********)");
    /* Deep in arrays and objects; the whole of a secret key's subtree counts. */
    check_redact_text("keys: AAAA-BBBB and zzzz9 and topsecretvalue",
                      "{\"m\":[{\"x\":{\"private_key\":\"AAAA-BBBB\"}}],"
                      "\"credentials\":{\"list\":[\"zzzz9\"]},\"other\":\"topsecretvalue\"}",
                      NULL, "keys: ******** and ******** and topsecretvalue");
    /* Short values are left alone; names from the function count. */
    check_redact_text("pin abc, code 98765", "{\"token\":\"abc\",\"pin_code\":\"98765\"}",
                      "[\"pin_code\"]", "pin abc, code ********");
    /* A secret that contains another is replaced whole. */
    check_redact_text("x=longpassword y=long",
                      "{\"a_password\":\"long\",\"b_password\":\"longpassword\"}", NULL,
                      "x=******** y=********");
    /* The JSON-escaped form of a secret, as in a dumped vault. */
    check_redact_text("{\"password\":\"pa\\\"ss\\\\word\"}", "{\"password\":\"pa\\\"ss\\\\word\"}",
                      NULL, "{\"password\":\"********\"}");
    /* Nothing to hide, or no vault at all. */
    check_redact_text("plain text", "{\"repository\":\"plain\"}", NULL, "plain text");
    char *copy = redact_text("no vault", NULL, NULL);
    assert_string_equal(copy, "no vault");
    free(copy);
    assert_null(redact_text(NULL, NULL, NULL));
    /* Every byte of the text is a secret: the result doubles in length. */
    check_redact_text("abcdabcd", "{\"token\":\"abcd\"}", NULL, "****************");
}

/* ---- Host keys --------------------------------------------------------------------------- */

static void test_is_host_key(void **state)
{
    (void)state;
    static const char *const host[] = {"function",   "timeout",    "max_retries", "retry_delay",
                                       "on_failure", "on_success", "description", "tags",
                                       "pre_hook",   "post_hook"};
    for (size_t i = 0; i < sizeof(host) / sizeof(host[0]); i++)
        assert_true(vault_is_host_key(host[i]));
    assert_false(vault_is_host_key("repository"));
    assert_false(vault_is_host_key("Function"));
    assert_false(vault_is_host_key("notify"));
    assert_false(vault_is_host_key(NULL));
}

static void test_is_function_name(void **state)
{
    (void)state;
    assert_true(vault_is_function_name("repo_push"));
    assert_true(vault_is_function_name("a"));
    assert_true(vault_is_function_name("os_update2"));
    assert_false(vault_is_function_name(""));
    assert_false(vault_is_function_name("Repo_push"));
    assert_false(vault_is_function_name("repo-push"));
    assert_false(vault_is_function_name("_repo"));
    assert_false(vault_is_function_name("9repo"));
    assert_false(vault_is_function_name(NULL));
    char name[70];
    memset(name, 'a', 64);
    name[64] = '\0';
    assert_true(vault_is_function_name(name));
    name[64] = 'a';
    name[65] = '\0';
    assert_false(vault_is_function_name(name));
}

static void host_keys_ok(const char *text)
{
    char err[256] = "";
    json_t *vault = J(text);
    if (vault_check_host_keys(vault, err, sizeof(err)) != 0)
        fail_msg("unexpected error: %s\n%s", err, text);
    json_decref(vault);
}

static void host_keys_fail(const char *text, const char *want)
{
    char err[256] = "";
    json_t *vault = J(text);
    assert_int_equal(vault_check_host_keys(vault, err, sizeof(err)), -1);
    assert_string_equal(err, want);
    assert_int_equal(vault_check_host_keys(vault, NULL, 0), -1);
    json_decref(vault);
}

static void test_host_keys_valid(void **state)
{
    (void)state;
    host_keys_ok("{\"function\":\"repo_push\"}");
    host_keys_ok("{\"function\":\"repo_push\",\"timeout\":1,\"max_retries\":0,\"retry_delay\":0,"
                 "\"on_failure\":{\"notify\":\"ops@company.com\",\"fallback_function\":\"f2\"},"
                 "\"on_success\":{\"notify\":[\"https://hooks.example.com/x?y=1\","
                 "\"http://10.0.0.1:8080\",\"a.b+c@mail.example.org\"]},"
                 "\"description\":\"d\",\"tags\":[\"a\"],\"pre_hook\":\"a.sh\",\"post_hook\":\"\","
                 "\"repository\":\"anything\",\"timeout_extra\":\"not host-owned\"}");
    host_keys_ok("{\"function\":\"f\",\"max_retries\":100,\"tags\":{},"
                 "\"on_failure\":{\"notify\":[]},\"on_success\":{}}");
}

static void test_host_keys_function(void **state)
{
    (void)state;
    host_keys_fail(
        "{\"repository\":\"webapp\"}",
        "vault has no \"function\" key; add \"function\": \"<name>\" (see ferry functions)");
    host_keys_fail("{\"function\":7}", "vault key \"function\" must be a string naming a queue "
                                       "function (see ferry functions), got an integer");
    host_keys_fail("{\"function\":\"Repo-Push\"}",
                   "vault key \"function\" is \"Repo-Push\"; a function name is up to 64 lowercase "
                   "letters, digits and _, starting with a letter (see ferry functions)");
    host_keys_fail(
        "{\"function\":\"bad\\nname\"}",
        "vault key \"function\" is \"bad\\x0aname\"; a function name is up to 64 lowercase "
        "letters, digits and _, starting with a letter (see ferry functions)");
    host_keys_fail("[]", "vault must be a JSON object, got an array");
}

static void test_host_keys_numbers(void **state)
{
    (void)state;
    host_keys_fail("{\"function\":\"f\",\"timeout\":0}",
                   "vault key \"timeout\" must be a positive integer (seconds), got 0");
    host_keys_fail("{\"function\":\"f\",\"timeout\":\"3600\"}",
                   "vault key \"timeout\" must be a positive integer (seconds), got a string");
    host_keys_fail("{\"function\":\"f\",\"timeout\":1.5}",
                   "vault key \"timeout\" must be a positive integer (seconds), got a number");
    host_keys_fail("{\"function\":\"f\",\"timeout\":99999999999}",
                   "vault key \"timeout\" must be a positive integer (seconds), got 99999999999");
    host_keys_fail("{\"function\":\"f\",\"max_retries\":101}",
                   "vault key \"max_retries\" must be an integer from 0 to 100, got 101");
    host_keys_fail("{\"function\":\"f\",\"max_retries\":-1}",
                   "vault key \"max_retries\" must be an integer from 0 to 100, got -1");
    host_keys_fail("{\"function\":\"f\",\"max_retries\":true}",
                   "vault key \"max_retries\" must be an integer from 0 to 100, got a boolean");
    host_keys_fail("{\"function\":\"f\",\"retry_delay\":-5}",
                   "vault key \"retry_delay\" must be an integer >= 0 (seconds), got -5");
    host_keys_fail("{\"function\":\"f\",\"retry_delay\":null}",
                   "vault key \"retry_delay\" must be an integer >= 0 (seconds), got null");
}

static void test_host_keys_on_failure_success(void **state)
{
    (void)state;
    host_keys_fail("{\"function\":\"f\",\"on_failure\":\"ops@company.com\"}",
                   "vault key \"on_failure\" must be an object with notify, fallback_function and "
                   "webhook_secret, got a string");
    host_keys_fail("{\"function\":\"f\",\"on_success\":[]}",
                   "vault key \"on_success\" must be an object with notify and webhook_secret, got "
                   "an array");
    host_keys_fail("{\"function\":\"f\",\"on_failure\":{\"notfy\":\"a@b.c\"}}",
                   "vault key \"on_failure\" has an unknown key \"notfy\"; it takes notify, "
                   "fallback_function and webhook_secret");
    host_keys_fail("{\"function\":\"f\",\"on_success\":{\"fallback_function\":\"g\"}}",
                   "vault key \"on_success\" has an unknown key \"fallback_function\"; it takes "
                   "notify and webhook_secret");
    host_keys_fail(
        "{\"function\":\"f\",\"on_failure\":{\"fallback_function\":\"Backup\"}}",
        "vault key \"on_failure.fallback_function\" is \"Backup\"; a function name is up "
        "to 64 lowercase letters, digits and _, starting with a letter (see ferry "
        "functions)");
    host_keys_fail("{\"function\":\"f\",\"on_failure\":{\"fallback_function\":null}}",
                   "vault key \"on_failure.fallback_function\" must be a string naming a queue "
                   "function (see ferry functions), got null");
}

static void test_host_keys_notify(void **state)
{
    (void)state;
    const char *expected = "expected an email address, an http(s) URL or an array of them";
    char want[256];
    static const char *const bad[] = {"ops",         "ops@",     "@company.com",
                                      "ops@company", "a@b@c.d",  "ops @company.com",
                                      "ftp://x",     "https://", "ops@.com"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "{\"function\":\"f\",\"on_failure\":{\"notify\":\"%s\"}}",
                 bad[i]);
        snprintf(want, sizeof(want), "vault key \"on_failure.notify\" has \"%s\"; %s", bad[i],
                 expected);
        host_keys_fail(text, want);
    }
    host_keys_fail("{\"function\":\"f\",\"on_success\":{\"notify\":[\"a@b.co\",\"nope\"]}}",
                   "vault key \"on_success.notify\" has \"nope\"; expected an email address, an "
                   "http(s) URL or an array of them");
    host_keys_fail("{\"function\":\"f\",\"on_success\":{\"notify\":[\"a@b.co\",3]}}",
                   "vault key \"on_success.notify\" must be an email address, an http(s) URL or an "
                   "array of them, got an array holding an integer");
    host_keys_fail("{\"function\":\"f\",\"on_success\":{\"notify\":{}}}",
                   "vault key \"on_success.notify\" must be an email address, an http(s) URL or an "
                   "array of them, got an object");
}

static void test_host_keys_strings_and_tags(void **state)
{
    (void)state;
    host_keys_fail("{\"function\":\"f\",\"description\":5}",
                   "vault key \"description\" must be a string, got an integer");
    /* A string is a tag too (repo_push records it; restore_point can name it). */
    host_keys_ok("{\"function\":\"f\",\"tags\":\"pre-deployment\"}");
    host_keys_fail("{\"function\":\"f\",\"tags\":5}",
                   "vault key \"tags\" must be an object, an array or a string, got an integer");
    host_keys_fail("{\"function\":\"f\",\"pre_hook\":[\"a.sh\"]}",
                   "vault key \"pre_hook\" must be a string, got an array");
    host_keys_fail("{\"function\":\"f\",\"post_hook\":false}",
                   "vault key \"post_hook\" must be a string, got a boolean");
}

/* ---- Parameters -------------------------------------------------------------------------- */

static const char repo_push_descriptor[] =
    "{\"name\":\"repo_push\",\"plugin\":\"repo\",\"summary\":\"Push a repository\","
    "\"description\":\"...\",\"flags\":[\"idempotent\",\"needs_machine\"],\"timeout\":3600,"
    "\"params\":["
    "{\"name\":\"repository\",\"type\":\"string\",\"required\":true,\"secret\":false,"
    "\"description\":\"Repository to push\"},"
    "{\"name\":\"storage\",\"type\":\"string\",\"required\":true,\"default\":\"local\","
    "\"description\":\"Storage to push to\"},"
    "{\"name\":\"verify\",\"type\":\"boolean\",\"default\":false},"
    "{\"name\":\"retention_days\",\"type\":\"integer\",\"default\":30},"
    "{\"name\":\"ratio\",\"type\":\"number\"},"
    "{\"name\":\"options\",\"type\":\"object\",\"default\":{\"level\":3}},"
    "{\"name\":\"targets\",\"type\":\"array\"},"
    "{\"name\":\"packages\",\"type\":\"string_list\",\"default\":[\"all\"]},"
    "{\"name\":\"extra\",\"type\":\"any\"},"
    "{\"name\":\"encryption_password\",\"type\":\"string\",\"secret\":true},"
    "{\"name\":\"pin\",\"type\":\"string\",\"secret\":true,\"description\":\"\"},"
    "{\"name\":\"timeout\",\"type\":\"string\",\"required\":true}"
    "]}";

static void params_ok(const char *vault_text, const char *want)
{
    char err[256] = "";
    json_t *function = J(repo_push_descriptor);
    json_t *vault = J(vault_text);
    if (params_validate(function, vault, err, sizeof(err)) != 0)
        fail_msg("unexpected error: %s", err);
    assert_json_equal(vault, want);
    json_decref(vault);
    json_decref(function);
}

static void params_fail(const char *function_text, const char *vault_text, const char *want)
{
    char err[256] = "";
    json_t *function = J(function_text);
    json_t *vault = J(vault_text);
    json_t *before = json_deep_copy(vault);
    assert_int_equal(params_validate(function, vault, err, sizeof(err)), -1);
    assert_string_equal(err, want);
    assert_true(json_equal(vault, before)); /* no defaults inserted on failure */
    assert_int_equal(params_validate(function, vault, NULL, 0), -1);
    json_decref(before);
    json_decref(vault);
    json_decref(function);
}

static void test_params_defaults(void **state)
{
    (void)state;
    /* Defaults fill what is missing (or null); host keys and undeclared keys pass through,
     * and "timeout" is not checked as a parameter because the host owns it. */
    params_ok("{\"function\":\"repo_push\",\"repository\":\"webapp\",\"verify\":null,"
              "\"mode\":\"fast\"}",
              "{\"function\":\"repo_push\",\"repository\":\"webapp\",\"storage\":\"local\","
              "\"verify\":false,\"retention_days\":30,\"options\":{\"level\":3},"
              "\"packages\":[\"all\"],\"mode\":\"fast\"}");
    /* Given values are kept. */
    params_ok("{\"repository\":\"r\",\"storage\":\"s3\",\"verify\":true,\"retention_days\":7,"
              "\"ratio\":1,\"options\":{},\"targets\":[],\"packages\":\"security\","
              "\"extra\":null,\"encryption_password\":\"pw\",\"timeout\":60}",
              "{\"repository\":\"r\",\"storage\":\"s3\",\"verify\":true,\"retention_days\":7,"
              "\"ratio\":1,\"options\":{},\"targets\":[],\"packages\":\"security\","
              "\"extra\":null,\"encryption_password\":\"pw\",\"timeout\":60}");
}

static void test_params_default_is_a_copy(void **state)
{
    (void)state;
    json_t *function = J(repo_push_descriptor);
    json_t *vault = J("{\"repository\":\"r\"}");
    assert_int_equal(params_validate(function, vault, NULL, 0), 0);
    json_object_set_new(json_object_get(vault, "options"), "level", json_integer(9));
    json_t *params = json_object_get(function, "params");
    json_t *options_default = json_object_get(json_array_get(params, 5), "default");
    assert_json_equal(options_default, "{\"level\":3}");
    json_decref(vault);
    json_decref(function);
}

static void test_params_missing_required(void **state)
{
    (void)state;
    params_fail(repo_push_descriptor, "{\"function\":\"repo_push\",\"verify\":true}",
                "function repo_push needs parameter \"repository\" (string): Repository to push");
    params_fail(
        "{\"name\":\"f\",\"params\":[{\"name\":\"n\",\"type\":\"integer\",\"required\":true}]}",
        "{\"n\":null}", "function f needs parameter \"n\" (integer)");
}

static void test_params_wrong_types(void **state)
{
    (void)state;
    static const struct {
        const char *vault, *want;
    } cases[] = {
        {"{\"repository\":\"r\",\"verify\":\"yes\"}",
         "parameter \"verify\" of repo_push must be a boolean, got a string"},
        {"{\"repository\":5}",
         "parameter \"repository\" of repo_push must be a string, got an integer"},
        {"{\"repository\":\"r\",\"retention_days\":1.5}",
         "parameter \"retention_days\" of repo_push must be an integer, got a number"},
        {"{\"repository\":\"r\",\"ratio\":\"1\"}",
         "parameter \"ratio\" of repo_push must be a number, got a string"},
        {"{\"repository\":\"r\",\"options\":[]}",
         "parameter \"options\" of repo_push must be an object, got an array"},
        {"{\"repository\":\"r\",\"targets\":{}}",
         "parameter \"targets\" of repo_push must be an array, got an object"},
        {"{\"repository\":\"r\",\"packages\":[\"a\",1]}",
         "parameter \"packages\" of repo_push must be a string or an array of strings, got an "
         "array holding an integer"},
        {"{\"repository\":\"r\",\"packages\":true}",
         "parameter \"packages\" of repo_push must be a string or an array of strings, got a "
         "boolean"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        params_fail(repo_push_descriptor, cases[i].vault, cases[i].want);
}

static void test_params_number_accepts_integer_and_real(void **state)
{
    (void)state;
    params_ok("{\"repository\":\"r\",\"ratio\":0.5,\"packages\":[]}",
              "{\"repository\":\"r\",\"ratio\":0.5,\"packages\":[],\"storage\":\"local\","
              "\"verify\":false,\"retention_days\":30,\"options\":{\"level\":3}}");
}

static void test_params_bad_descriptors(void **state)
{
    (void)state;
    params_fail("{\"name\":\"f\",\"params\":[{\"type\":\"string\"}]}", "{}",
                "function f declares a parameter without a \"name\"");
    params_fail("{\"name\":\"f\",\"params\":[{\"name\":\"p\",\"type\":\"float\"}]}", "{}",
                "function f declares parameter \"p\" with unknown type \"float\"");
    params_fail("{\"name\":\"f\",\"params\":{}}", "{}",
                "function f: \"params\" must be an array, got an object");
    params_fail("{\"name\":\"f\"}", "[]", "vault must be a JSON object, got an array");

    /* No params, or no type (any): fine. */
    json_t *function = J("{\"name\":\"f\",\"params\":[{\"name\":\"p\"}]}");
    json_t *vault = J("{\"p\":[1]}");
    assert_int_equal(params_validate(function, vault, NULL, 0), 0);
    json_decref(function);
    function = J("{\"name\":\"f\"}");
    assert_int_equal(params_validate(function, vault, NULL, 0), 0);
    json_decref(function);
    json_decref(vault);
}

/* Keys neither declared nor host-owned are listed with the nearest known key (issue 13:
 * retention_day and max_retry passed silently). */
static void test_params_unknown_keys(void **state)
{
    (void)state;
    json_t *fn = J("{\"name\":\"repo_push\",\"params\":[{\"name\":\"repository\",\"type\":"
                   "\"string\"},{\"name\":\"retention_days\",\"type\":\"integer\"}]}");
    json_t *vault = J("{\"function\":\"repo_push\",\"repository\":\"a\",\"retention_day\":3,"
                      "\"max_retry\":2,\"timeout\":5,\"tags\":[],\"zzzzzzzzzzzzzzzzzzzzzz\":1}");
    json_t *u = params_unknown_keys(fn, vault);
    char *text = json_dumps(u, JSON_COMPACT);
    assert_string_equal(text, "[{\"key\":\"retention_day\",\"closest\":\"retention_days\"},"
                              "{\"key\":\"max_retry\",\"closest\":\"max_retries\"},"
                              "{\"key\":\"zzzzzzzzzzzzzzzzzzzzzz\",\"closest\":\"repository\"}]");
    free(text);
    json_decref(u);
    /* Every key known: nothing listed. */
    json_t *ok = J("{\"function\":\"repo_push\",\"repository\":\"a\",\"retention_days\":3,"
                   "\"max_retries\":2,\"on_failure\":{}}");
    u = params_unknown_keys(fn, ok);
    assert_int_equal(json_array_size(u), 0);
    json_decref(u);
    /* A function that declares no parameters states nothing to check against. */
    json_t *open_fn = J("{\"name\":\"stub\",\"params\":[]}");
    u = params_unknown_keys(open_fn, vault);
    assert_int_equal(json_array_size(u), 0);
    json_decref(u);
    /* A key longer than the distance table is still listed, and never crashes. */
    char longkey[200];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    json_t *big = json_pack("{s:s,s:i}", "function", "repo_push", longkey, 1);
    u = params_unknown_keys(fn, big);
    assert_int_equal(json_array_size(u), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(u, 0), "key")), longkey);
    json_decref(u);
    json_decref(big);
    json_decref(open_fn);
    json_decref(ok);
    json_decref(vault);
    json_decref(fn);
}

static void test_params_secret_names(void **state)
{
    (void)state;
    json_t *function = J(repo_push_descriptor);
    json_t *names = params_secret_names(function);
    assert_json_equal(names, "[\"encryption_password\",\"pin\"]");
    json_decref(names);
    json_decref(function);

    names = params_secret_names(NULL);
    assert_json_equal(names, "[]");
    json_decref(names);

    /* Together with redaction: the descriptor's secret names are hidden. */
    function = J(repo_push_descriptor);
    names = params_secret_names(function);
    json_t *vault = J("{\"repository\":\"r\",\"pin\":\"13579\"}");
    json_t *redacted = vault_redact(vault, names);
    assert_json_equal(redacted, "{\"repository\":\"r\",\"pin\":\"********\"}");
    char *line = redact_text("pin 13579 rejected", vault, names);
    assert_string_equal(line, "pin ******** rejected");
    free(line);
    json_decref(redacted);
    json_decref(vault);
    json_decref(names);
    json_decref(function);
}

static void test_type_phrase(void **state)
{
    (void)state;
    json_t *values = J("[{},[],\"s\",1,1.5,true,false,null]");
    static const char *const want[] = {"an object", "an array",  "a string",  "an integer",
                                       "a number",  "a boolean", "a boolean", "null"};
    for (size_t i = 0; i < 8; i++)
        assert_string_equal(vault_type_phrase(json_array_get(values, i)), want[i]);
    assert_string_equal(vault_type_phrase(NULL), "nothing");
    json_decref(values);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_plain_object),
        cmocka_unit_test(test_parse_comments_blanked),
        cmocka_unit_test(test_parse_hash_inside_strings_kept),
        cmocka_unit_test(test_parse_error_line_column),
        cmocka_unit_test(test_parse_error_position_after_comments),
        cmocka_unit_test(test_parse_error_unterminated_string),
        cmocka_unit_test(test_parse_duplicate_keys),
        cmocka_unit_test(test_parse_size_limit),
        cmocka_unit_test(test_parse_not_an_object),
        cmocka_unit_test(test_parse_empty),
        cmocka_unit_test(test_parse_not_nul_terminated_and_nul_bytes),
        cmocka_unit_test(test_parse_err_may_be_null),
        cmocka_unit_test(test_parse_seed_vaults),
        cmocka_unit_test(test_parse_seed_values),
        cmocka_unit_test(test_seed_schedule_patches),
        cmocka_unit_test(test_merge_patch_rfc_appendix),
        cmocka_unit_test(test_merge_patch_rfc_section3),
        cmocka_unit_test(test_merge_patch_edges),
        cmocka_unit_test(test_key_is_secret),
        cmocka_unit_test(test_redact_deep),
        cmocka_unit_test(test_redact_text),
        cmocka_unit_test(test_is_host_key),
        cmocka_unit_test(test_is_function_name),
        cmocka_unit_test(test_host_keys_valid),
        cmocka_unit_test(test_host_keys_function),
        cmocka_unit_test(test_host_keys_numbers),
        cmocka_unit_test(test_host_keys_on_failure_success),
        cmocka_unit_test(test_host_keys_notify),
        cmocka_unit_test(test_host_keys_strings_and_tags),
        cmocka_unit_test(test_params_defaults),
        cmocka_unit_test(test_params_default_is_a_copy),
        cmocka_unit_test(test_params_missing_required),
        cmocka_unit_test(test_params_wrong_types),
        cmocka_unit_test(test_params_number_accepts_integer_and_real),
        cmocka_unit_test(test_params_bad_descriptors),
        cmocka_unit_test(test_params_secret_names),
        cmocka_unit_test(test_params_unknown_keys),
        cmocka_unit_test(test_type_phrase),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
