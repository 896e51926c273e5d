/* Plugin text made fit for the wire and the store: bad UTF-8 replaced, long text cut at a
 * character boundary and marked, never longer than the cap. And framing round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "proto.h"

#define FFFD "\xef\xbf\xbd"

static void expect_clean(const char *in, size_t max, const char *want)
{
    char *got = proto_clean_text(in, max);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_valid_text_is_kept(void **state)
{
    (void)state;
    expect_clean("", 100, "");
    expect_clean("plain ascii", 100, "plain ascii");
    expect_clean("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 100,
                 "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    assert_null(proto_clean_text(NULL, 100));
}

static void test_bad_sequences_become_fffd(void **state)
{
    (void)state;
    expect_clean("a\xff"
                 "b",
                 100, "a" FFFD "b");
    expect_clean("\xc3\x28", 100, FFFD "(");                    /* lead byte without its tail */
    expect_clean("x\xe2\x82 y", 100, "x" FFFD " y");            /* one FFFD for a cut sequence */
    expect_clean("\xc0\xaf", 100, FFFD FFFD);                   /* overlong: never valid */
    expect_clean("\xed\xa0\x80", 100, FFFD FFFD FFFD);          /* a surrogate */
    expect_clean("\xf4\x90\x80\x80", 100, FFFD FFFD FFFD FFFD); /* above U+10FFFF */
    expect_clean("end\xe2", 100, "end" FFFD);                   /* cut at the very end */
}

static void test_long_text_is_cut_and_marked(void **state)
{
    (void)state;
    char in[64];
    memset(in, 'x', sizeof(in) - 1);
    in[sizeof(in) - 1] = 0;
    char *got = proto_clean_text(in, 20);
    assert_int_equal(strlen(got), 20);
    assert_string_equal(got + 17, "\xe2\x80\xa6");
    free(got);
    expect_clean("exactly ten", 11, "exactly ten"); /* fits: not cut */
    /* A cut never splits a character: 3-byte euros, cap 10 leaves 7 bytes = 2 euros. */
    expect_clean("\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 10,
                 "\xe2\x82\xac\xe2\x82\xac\xe2\x80\xa6");
    /* Replacement characters count against the cap too. */
    got = proto_clean_text("\xff\xff\xff\xff\xff\xff\xff\xff", 12);
    assert_true(strlen(got) <= 12);
    free(got);
}

static void test_json_string_and_framing(void **state)
{
    (void)state;
    json_t *s = proto_text("bad \xff", 100);
    assert_string_equal(json_string_value(s), "bad " FFFD);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    json_t *msg = json_pack("{s:s,s:O}", "op", "log", "text", s);
    assert_int_equal(proto_send(sv[0], msg), 0);
    json_t *back = proto_recv(sv[1]);
    assert_non_null(back);
    assert_true(json_equal(back, msg));
    json_decref(back);
    json_decref(msg);
    json_decref(s);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_text_is_kept),
        cmocka_unit_test(test_bad_sequences_become_fffd),
        cmocka_unit_test(test_long_text_is_cut_and_marked),
        cmocka_unit_test(test_json_string_and_framing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
