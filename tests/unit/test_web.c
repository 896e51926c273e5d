/* ferry web's pure pieces: the listen address parser (host/web/web.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "web.h"

static void test_listen(void **state)
{
    (void)state;
    char addr[64];
    int port = -1;
    assert_int_equal(web_parse_listen("127.0.0.1:8642", addr, sizeof(addr), &port), 0);
    assert_string_equal(addr, "127.0.0.1");
    assert_int_equal(port, 8642);
    assert_int_equal(web_parse_listen("[::1]:0", addr, sizeof(addr), &port), 0);
    assert_string_equal(addr, "::1");
    assert_int_equal(port, 0);
    assert_int_equal(web_parse_listen("0.0.0.0:65535", addr, sizeof(addr), &port), 0);
    const char *bad[] = {"", "8642", ":8642", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
                         "localhost:8642", "127.0.0.1:86x", "[::1]8642", "[::1", "::1:8642x",
                         "1.2.3.4.5:80", NULL};
    for (size_t i = 0; bad[i]; i++)
        assert_int_equal(web_parse_listen(bad[i], addr, sizeof(addr), &port), -1);
    char small[4];
    assert_int_equal(web_parse_listen("127.0.0.1:80", small, sizeof(small), &port), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_listen)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
