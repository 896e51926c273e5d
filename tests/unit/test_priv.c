/*
 * Unit tests for host/priv (issue 17, point 3): the names ferry-priv accepts (hostile ones:
 * "..", slashes, blanks, newlines, leading dashes, too long), which user an attempt runs as
 * (workers.run_as beats the machine's run_as; the host's own user needs no helper), and
 * what a worker the helper started refuses (another function, a plugin outside its
 * policy's plugin_dir, hooks as root).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pwd.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "priv.h"
#include "priv_client.h"

static void test_user_names(void **state)
{
    (void)state;
    const char *ok[] = {"root", "ferry", "_apt", "www-data", "john.doe", "a", "U1"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (!priv_user_name_ok(ok[i]))
            fail_msg("%s should be a user name", ok[i]);
    const char *bad[] = {"",     "..",      "../root", "a/b",
                         "a..b", ".hidden", "-rf",     "1abc",
                         "a b",  "a\nb",    "root\n",  "a\tb",
                         "a;b",  "$(id)",   "a*",      "abcdefghijklmnopqrstuvwxyz0123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (priv_user_name_ok(bad[i]))
            fail_msg("\"%s\" should not be a user name", bad[i]);
    assert_false(priv_user_name_ok(NULL));
}

static void test_function_names(void **state)
{
    (void)state;
    assert_true(priv_function_name_ok("os_update"));
    assert_true(priv_function_name_ok("repo.backup-2"));
    const char *bad[] = {"", "../x", "a/b", ".x", "a b", "a\nb", "*"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (priv_function_name_ok(bad[i]))
            fail_msg("\"%s\" should not be a function name", bad[i]);
    char longer[140];
    memset(longer, 'a', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    assert_false(priv_function_name_ok(longer));
}

/* A user of this machine that is not the one running the test. */
static const char *other_user(void)
{
    return geteuid() == 0 ? "nobody" : "root";
}

static void test_user_for(void **state)
{
    (void)state;
    char user[40], why[200] = "";
    const char *other = other_user();
    json_t *m = json_pack("{s:s}", "run_as", other);
    /* the config's entry wins over the machine's */
    char map[100];
    snprintf(map, sizeof(map), "deploy=daemon os_update=%s", other);
    assert_int_equal(priv_user_for(map, "os_update", NULL, user, sizeof(user), why, sizeof(why)),
                     0);
    assert_string_equal(user, other);
    assert_int_equal(
        priv_user_for("os_update=daemon", "os_update", m, user, sizeof(user), why, sizeof(why)), 0);
    assert_string_equal(user, geteuid() == 1 ? "" : "daemon");
    /* a prefix of a function's name is not the function */
    assert_int_equal(
        priv_user_for("os=daemon", "os_update", NULL, user, sizeof(user), why, sizeof(why)), 0);
    assert_string_equal(user, "");
    /* then the machine's */
    assert_int_equal(priv_user_for("", "hello", m, user, sizeof(user), why, sizeof(why)), 0);
    assert_string_equal(user, other);
    json_decref(m);
    /* the host's own user: no helper */
    struct passwd *me = getpwuid(geteuid());
    assert_non_null(me);
    m = json_pack("{s:s}", "run_as", me->pw_name);
    assert_int_equal(priv_user_for("", "hello", m, user, sizeof(user), why, sizeof(why)), 0);
    assert_string_equal(user, "");
    json_decref(m);
    /* hostile names and users that do not exist fail with a reason */
    const char *bad[] = {"../root", "a b", "root\n", ".."};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        m = json_pack("{s:s}", "run_as", bad[i]);
        why[0] = '\0';
        assert_int_equal(priv_user_for("", "hello", m, user, sizeof(user), why, sizeof(why)), -1);
        assert_non_null(strstr(why, "not a user name"));
        assert_string_equal(user, "");
        json_decref(m);
    }
    m = json_pack("{s:i}", "run_as", 0);
    assert_int_equal(priv_user_for("", "hello", m, user, sizeof(user), why, sizeof(why)), -1);
    json_decref(m);
    assert_int_equal(
        priv_user_for("hello=no_such_user_zz", "hello", NULL, user, sizeof(user), why, sizeof(why)),
        -1);
    assert_non_null(strstr(why, "no such user"));
}

static void test_worker_pin(void **state)
{
    (void)state;
    char why[400];
    struct attempt_spec spec = {.plugin = "/nonexistent/core.so", .function = "hello"};
    unsetenv("FERRY_PRIV_FUNCTION");
    assert_int_equal(priv_worker_allows(&spec, why, sizeof(why)), 0); /* the runner's own */
    /* a root-owned plugin directory and file: this test's own, made under /tmp when root */
    char dir[] = "/tmp/ferry-priv-unit.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char so[128];
    snprintf(so, sizeof(so), "%s/core.so", dir);
    FILE *f = fopen(so, "w");
    assert_non_null(f);
    fclose(f);
    chmod(dir, 0755);
    chmod(so, 0644);
    setenv("FERRY_PRIV_FUNCTION", "hello", 1);
    setenv("FERRY_PRIV_PLUGIN_DIR", dir, 1);
    spec.plugin = so;
    int root = geteuid() == 0;
    assert_int_equal(priv_worker_allows(&spec, why, sizeof(why)), root ? 0 : -1);
    spec.function = "script";
    assert_int_equal(priv_worker_allows(&spec, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "for function hello only"));
    spec.function = "hello";
    spec.plugin = "/usr/lib/x86_64-linux-gnu/libc.so.6"; /* root's, but not in plugin_dir */
    assert_int_equal(priv_worker_allows(&spec, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "plugin_dir"));
    char sneaky[200];
    snprintf(sneaky, sizeof(sneaky), "%s/../%s/core.so", dir, dir + 5);
    spec.plugin = sneaky; /* resolves back into the directory: allowed when root's */
    assert_int_equal(priv_worker_allows(&spec, why, sizeof(why)), root ? 0 : -1);
    char sibling[160];
    snprintf(sibling, sizeof(sibling), "%sx/core.so", dir); /* a prefix is not the dir */
    spec.plugin = sibling;
    assert_int_equal(priv_worker_allows(&spec, why, sizeof(why)), -1);
    if (root) {
        chmod(so, 0666); /* writable by others */
        spec.plugin = so;
        assert_int_equal(priv_worker_allows(&spec, why, sizeof(why)), -1);
        chmod(so, 0644);
        spec.pre_hook = "id"; /* as root: no hooks */
        assert_int_equal(priv_worker_allows(&spec, why, sizeof(why)), -1);
        assert_non_null(strstr(why, "pre_hook"));
    }
    unsetenv("FERRY_PRIV_FUNCTION");
    unsetenv("FERRY_PRIV_PLUGIN_DIR");
    unlink(so);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_names),
        cmocka_unit_test(test_function_names),
        cmocka_unit_test(test_user_for),
        cmocka_unit_test(test_worker_pin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
