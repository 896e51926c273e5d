/*
 * Unit tests for plugins/repo/plain_http.c (issue 17, point 4): which URL hosts count as
 * loopback, where the webdav and s3 providers allow a credential over plain http. Hostile
 * names (a DNS name that begins with "127.", "localhost" as a prefix, a bracketed address
 * with junk) are not loopback.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../plugins/repo/plain_http.c"

static void test_loopback_hosts(void **state)
{
    (void)state;
    const char *yes[] = {"localhost", "LOCALHOST",         "localhost.",        "dav.localhost",
                         "127.0.0.1", "127.1.2.3",         "127.255.255.255",   "::1",
                         "[::1]",     "[0:0:0:0:0:0:0:1]", "[::ffff:127.0.0.1]"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!plain_http_loopback(yes[i]))
            fail_msg("%s should be loopback", yes[i]);
}

static void test_other_hosts(void **state)
{
    (void)state;
    const char *no[] = {"",
                        "dav.example.com",
                        "127.evil.example.com",
                        "127.0.0.1.nip.io",
                        "localhost.example.com",
                        "notlocalhost",
                        "xlocalhost",
                        "128.0.0.1",
                        "10.0.0.1",
                        "0.0.0.0",
                        "203.0.113.9",
                        "::",
                        "[::2]",
                        "[::1",
                        "[::1]x",
                        "::ffff:10.0.0.1",
                        "fe80::1"};
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (plain_http_loopback(no[i]))
            fail_msg("%s should not be loopback", no[i]);
    assert_false(plain_http_loopback(NULL));
}

static void test_url_hosts(void **state)
{
    (void)state;
    struct {
        const char *url, *host;
    } cases[] = {
        {"http://127.0.0.1:8080/backups", "127.0.0.1"},
        {"http://dav.example.com/a/b", "dav.example.com"},
        {"https://dav.example.com", "dav.example.com"},
        {"http://[::1]:81/x", "[::1]"},
        {"http://u:p@127.0.0.1/x", "127.0.0.1"},
        {"http://127.0.0.1@evil.example.com/x", "evil.example.com"},
        {"http://localhost?x", "localhost"},
        {"no-scheme", ""},
    };
    char host[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        plain_http_host(cases[i].url, host, sizeof(host));
        assert_string_equal(host, cases[i].host);
    }
    char small[4];
    plain_http_host("http://localhost/", small, sizeof(small));
    assert_string_equal(small, ""); /* too long for the buffer: not taken for loopback */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loopback_hosts),
        cmocka_unit_test(test_other_hosts),
        cmocka_unit_test(test_url_hosts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
