/* Plugin text made fit for the wire and the store: bad UTF-8 replaced, long text cut at a
 * character boundary and marked, never longer than the cap. Framing round trips, and every
 * message's build and parse round trip; hostile messages are refused with a reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

/* --- the typed messages ----------------------------------------------------------------- */

/* Sends msg (taken) through a socket pair and reads it back, as the peer would. */
static json_t *over_the_wire(json_t *msg)
{
    assert_non_null(msg);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(proto_send(sv[0], msg), 0);
    json_decref(msg);
    proto_reader r = {0};
    json_t *back = proto_read(&r, sv[1]);
    assert_non_null(back);
    proto_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
    return back;
}

static void test_op_table(void **state)
{
    (void)state;
    const char *names[] = {"run",     "reply",  "skip", "log",  "progress", "call",
                           "storage", "pgroup", "exit", "done", "probe"};
    assert_int_equal(PROTO_N_OPS, sizeof(names) / sizeof(names[0]));
    for (int i = 0; i < PROTO_N_OPS; i++) {
        assert_string_equal(proto_op_name((enum proto_op)i), names[i]);
        json_t *m = json_pack("{s:s}", "op", names[i]);
        assert_int_equal(proto_op_of(m), i);
        json_decref(m);
    }
    assert_string_equal(proto_op_name(PROTO_BAD_OP), "?");
    assert_string_equal(proto_op_name(PROTO_N_OPS), "?");
    json_t *m = json_pack("{s:s}", "op", "quit");
    assert_int_equal(proto_op_of(m), PROTO_BAD_OP);
    json_decref(m);
    m = json_pack("{s:i}", "op", 3);
    assert_int_equal(proto_op_of(m), PROTO_BAD_OP);
    json_decref(m);
    assert_int_equal(proto_op_of(NULL), PROTO_BAD_OP);
    for (int k = OUTCOME_OK; k <= OUTCOME_UNAVAILABLE; k++)
        assert_int_equal(proto_kind_of(outcome_kind_name((enum outcome_kind)k)), k);
    assert_int_equal(proto_kind_of("ok"), -1);
    assert_int_equal(proto_kind_of(NULL), -1);
    assert_string_equal(outcome_kind_name((enum outcome_kind)99), "FAIL");
}

static void test_run_round_trip(void **state)
{
    (void)state;
    json_t *params = json_pack("{s:s,s:i}", "repository", "webapp", "n", 3);
    json_t *config = json_pack("{s:b}", "fast", 1);
    json_t *machine = json_pack("{s:s,s:b}", "name", "m1", "local", 0);
    struct proto_run in = {.id = 42,
                           .deadline_ms = 1700000000123,
                           .spec = {.plugin = "/p/core.so",
                                    .function = "log_message",
                                    .params = params,
                                    .config = config,
                                    .machine = machine,
                                    .pre_hook = "stop.sh",
                                    .post_hook = "start.sh",
                                    .hook_dir = "/ds/repositories/webapp",
                                    .ssh_key = "-----BEGIN KEY-----",
                                    .task_id = "t-1",
                                    .attempt = 3,
                                    .depth = 2,
                                    .timeout_ms = 5000}};
    json_t *wire = over_the_wire(proto_build_run(&in));
    /* Nothing rides inside the machine: it comes back as it was given. */
    assert_true(json_equal(json_object_get(wire, "machine"), machine));
    struct proto_run out;
    char err[256] = "";
    assert_int_equal(proto_parse_run(wire, &out, err, sizeof(err)), 0);
    assert_int_equal(out.id, 42);
    assert_int_equal(out.deadline_ms, 1700000000123);
    assert_string_equal(out.spec.plugin, "/p/core.so");
    assert_string_equal(out.spec.function, "log_message");
    assert_true(json_equal(out.spec.params, params));
    assert_true(json_equal(out.spec.config, config));
    assert_true(json_equal(out.spec.machine, machine));
    assert_string_equal(out.spec.pre_hook, "stop.sh");
    assert_string_equal(out.spec.post_hook, "start.sh");
    assert_string_equal(out.spec.hook_dir, "/ds/repositories/webapp");
    assert_string_equal(out.spec.ssh_key, "-----BEGIN KEY-----");
    assert_string_equal(out.spec.task_id, "t-1");
    assert_int_equal(out.spec.attempt, 3);
    assert_int_equal(out.spec.depth, 2);
    assert_int_equal(out.spec.timeout_ms, 5000);
    json_decref(wire);
    /* The optional fields absent: NULL and 0, params and config {}. */
    struct proto_run bare = {.id = 1, .spec = {.plugin = "/p.so", .function = "f"}};
    wire = over_the_wire(proto_build_run(&bare));
    assert_int_equal(proto_parse_run(wire, &out, err, sizeof(err)), 0);
    assert_null(out.spec.machine);
    assert_null(out.spec.pre_hook);
    assert_null(out.spec.post_hook);
    assert_null(out.spec.hook_dir);
    assert_null(out.spec.ssh_key);
    assert_null(out.spec.task_id);
    assert_int_equal(json_object_size(out.spec.params), 0);
    assert_int_equal(out.deadline_ms, 0);
    json_decref(wire);
    /* The machine kept as text by the host writes the same frame as the facts themselves;
     * numbers at their limits and empty objects are written as the encoder writes them. */
    char *machine_text = json_dumps(machine, JSON_COMPACT);
    json_t *empty = json_object();
    struct proto_run edge = in;
    edge.spec.params = empty;
    edge.spec.timeout_ms = INT64_MAX;
    edge.deadline_ms = 0;
    edge.id = INT64_MAX;
    edge.spec.attempt = -7;
    struct proto_buf facts = {0}, kept = {0};
    assert_int_equal(proto_buf_run(&facts, &edge), 0);
    edge.spec.machine_json = machine_text;
    assert_int_equal(proto_buf_run(&kept, &edge), 0);
    assert_int_equal(facts.len, kept.len);
    assert_memory_equal(facts.p, kept.p, facts.len);
    json_t *tree = json_loadb(kept.p + 4, kept.len - 4, 0, NULL);
    assert_non_null(tree);
    assert_true(json_integer_value(json_object_get(tree, "id")) == INT64_MAX);
    assert_true(json_integer_value(json_object_get(tree, "timeout_ms")) == INT64_MAX);
    assert_int_equal(json_integer_value(json_object_get(tree, "attempt")), -7);
    assert_int_equal(json_integer_value(json_object_get(tree, "deadline")), 0);
    assert_true(json_equal(json_object_get(tree, "params"), empty));
    assert_true(json_equal(json_object_get(tree, "machine"), machine));
    json_decref(tree);
    proto_buf_free(&facts);
    proto_buf_free(&kept);
    free(machine_text);
    json_decref(empty);
    json_decref(params);
    json_decref(config);
    json_decref(machine);
}

static void test_reply_round_trip(void **state)
{
    (void)state;
    char err[256];
    json_t *result = json_pack("{s:i}", "x", 1), *vault = json_pack("{s:s}", "url", "s3://b");
    struct proto_reply call = {.kind = OUTCOME_RETRY, .result = result, .code = "busy",
                               .message = "try later"};
    json_t *wire = over_the_wire(proto_build_reply(&call));
    assert_null(json_object_get(wire, "id"));
    struct proto_reply out;
    assert_int_equal(proto_parse_reply(wire, &out, err, sizeof(err)), 0);
    assert_int_equal(out.kind, OUTCOME_RETRY);
    assert_true(json_equal(out.result, result));
    assert_null(out.vault);
    assert_string_equal(out.code, "busy");
    assert_string_equal(out.message, "try later");
    json_decref(wire);
    struct proto_reply storage = {.kind = OUTCOME_OK, .vault = vault};
    wire = over_the_wire(proto_build_reply(&storage));
    assert_int_equal(proto_parse_reply(wire, &out, err, sizeof(err)), 0);
    assert_int_equal(out.kind, OUTCOME_OK);
    assert_null(out.result);
    assert_true(json_equal(out.vault, vault));
    assert_null(out.code);
    assert_null(out.message);
    json_decref(wire);
    json_decref(result);
    json_decref(vault);
}

static void test_worker_messages_round_trip(void **state)
{
    (void)state;
    char err[256];
    json_t *wire;

    struct proto_log log = {.id = 7, .level = "warn", .text = "caf\xc3\xa9"}, log_out;
    wire = over_the_wire(proto_build_log(&log));
    assert_int_equal(proto_parse_log(wire, &log_out, err, sizeof(err)), 0);
    assert_int_equal(log_out.id, 7);
    assert_string_equal(log_out.level, "warn");
    assert_string_equal(log_out.text, "caf\xc3\xa9");
    json_decref(wire);

    struct proto_progress pr = {.id = 7, .percent = 55, .message = "half"}, pr_out;
    wire = over_the_wire(proto_build_progress(&pr));
    assert_int_equal(proto_parse_progress(wire, &pr_out, err, sizeof(err)), 0);
    assert_int_equal(pr_out.percent, 55);
    assert_string_equal(pr_out.message, "half");
    json_decref(wire);
    pr.message = NULL;
    pr.percent = -1;
    wire = over_the_wire(proto_build_progress(&pr));
    assert_int_equal(proto_parse_progress(wire, &pr_out, err, sizeof(err)), 0);
    assert_int_equal(pr_out.percent, -1);
    assert_null(pr_out.message);
    json_decref(wire);

    json_t *params = json_pack("{s:s}", "k", "v");
    struct proto_call call = {.id = 8, .function = "hello", .params = params}, call_out;
    wire = over_the_wire(proto_build_call(&call));
    assert_int_equal(proto_parse_call(wire, &call_out, err, sizeof(err)), 0);
    assert_int_equal(call_out.id, 8);
    assert_string_equal(call_out.function, "hello");
    assert_true(json_equal(call_out.params, params));
    json_decref(wire);
    json_decref(params);

    struct proto_storage st = {.id = 9, .name = "offsite"}, st_out;
    wire = over_the_wire(proto_build_storage(&st));
    assert_int_equal(proto_parse_storage(wire, &st_out, err, sizeof(err)), 0);
    assert_int_equal(st_out.id, 9);
    assert_string_equal(st_out.name, "offsite");
    json_decref(wire);

    struct proto_pgroup pg = {.id = 10, .pgid = 4321}, pg_out;
    wire = over_the_wire(proto_build_pgroup(&pg));
    assert_int_equal(proto_parse_pgroup(wire, &pg_out, err, sizeof(err)), 0);
    assert_int_equal(pg_out.pgid, 4321);
    json_decref(wire);

    struct proto_exit ex = {.id = 11, .status = -3, .loading = 1}, ex_out;
    wire = over_the_wire(proto_build_exit(&ex));
    assert_int_equal(proto_parse_exit(wire, &ex_out, err, sizeof(err)), 0);
    assert_int_equal(ex_out.status, -3);
    assert_int_equal(ex_out.loading, 1);
    json_decref(wire);

    json_t *result = json_pack("[i,i]", 1, 2);
    struct proto_done done = {.id = 12, .kind = OUTCOME_UNAVAILABLE, .result = result,
                              .code = "unavailable", .message = "no such plugin",
                              .duration_ms = 33, .retire = 1, .stderr_drained = 1,
                              .skipped = 1},
                      done_out;
    wire = over_the_wire(proto_build_done(&done));
    assert_int_equal(proto_parse_done(wire, &done_out, err, sizeof(err)), 0);
    assert_int_equal(done_out.id, 12);
    assert_int_equal(done_out.kind, OUTCOME_UNAVAILABLE);
    assert_true(json_equal(done_out.result, result));
    assert_string_equal(done_out.code, "unavailable");
    assert_string_equal(done_out.message, "no such plugin");
    assert_int_equal(done_out.duration_ms, 33);
    assert_int_equal(done_out.retire, 1);
    assert_int_equal(done_out.stderr_drained, 1);
    assert_int_equal(done_out.skipped, 1);
    json_decref(wire);
    struct proto_skip skip = {.id = 14}, skip_out;
    wire = over_the_wire(proto_build_skip(&skip));
    assert_int_equal(proto_parse_skip(wire, &skip_out, err, sizeof(err)), 0);
    assert_int_equal(skip_out.id, 14);
    json_decref(wire);
    struct proto_done ok = {.id = 13, .kind = OUTCOME_OK};
    wire = over_the_wire(proto_build_done(&ok));
    assert_int_equal(proto_parse_done(wire, &done_out, err, sizeof(err)), 0);
    assert_int_equal(done_out.kind, OUTCOME_OK);
    assert_null(done_out.result);
    assert_null(done_out.code);
    assert_null(done_out.message);
    assert_int_equal(done_out.retire, 0);
    assert_int_equal(done_out.stderr_drained, 0); /* unknown unless the worker says so */
    assert_int_equal(done_out.skipped, 0);
    json_decref(wire);

    struct proto_probe probe = {.stage = "init", .result = result, .reason = "why"}, probe_out;
    json_decref(result);
    result = json_pack("{s:s}", "name", "core");
    probe.result = result;
    wire = over_the_wire(proto_build_probe(&probe));
    assert_int_equal(proto_parse_probe(wire, &probe_out, err, sizeof(err)), 0);
    assert_string_equal(probe_out.stage, "init");
    assert_true(json_equal(probe_out.result, result));
    assert_string_equal(probe_out.reason, "why");
    json_decref(wire);
    json_decref(result);
}

/* Parses text as message op expects; returns the parser's result, the reason in err. */
static int parse_as(enum proto_op op, const char *text, char *err, size_t errlen)
{
    json_t *m = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    union proto_msg u;
    int rc = -2;
    err[0] = 0;
    switch (op) {
    case PROTO_RUN: rc = proto_parse_run(m, &u.run, err, errlen); break;
    case PROTO_REPLY: rc = proto_parse_reply(m, &u.reply, err, errlen); break;
    case PROTO_LOG: rc = proto_parse_log(m, &u.log, err, errlen); break;
    case PROTO_PROGRESS: rc = proto_parse_progress(m, &u.progress, err, errlen); break;
    case PROTO_CALL: rc = proto_parse_call(m, &u.call, err, errlen); break;
    case PROTO_STORAGE: rc = proto_parse_storage(m, &u.storage, err, errlen); break;
    case PROTO_SKIP: rc = proto_parse_skip(m, &u.skip, err, errlen); break;
    case PROTO_PGROUP: rc = proto_parse_pgroup(m, &u.pgroup, err, errlen); break;
    case PROTO_EXIT: rc = proto_parse_exit(m, &u.exit, err, errlen); break;
    case PROTO_DONE: rc = proto_parse_done(m, &u.done, err, errlen); break;
    case PROTO_PROBE: rc = proto_parse_probe(m, &u.probe, err, errlen); break;
    default: break;
    }
    json_decref(m);
    return rc;
}

static void refused(enum proto_op op, const char *text, const char *reason)
{
    char err[256];
    if (parse_as(op, text, err, sizeof(err)) != -1)
        fail_msg("%s accepted as %s", text, proto_op_name(op));
    if (strstr(err, reason) == NULL)
        fail_msg("%s: reason \"%s\" lacks \"%s\"", text, err, reason);
}

static void test_hostile_messages_are_refused(void **state)
{
    (void)state;
    /* Not a message, or another one. */
    for (int op = 0; op < PROTO_N_OPS; op++) {
        refused((enum proto_op)op, "[1,2]", "not an object");
        refused((enum proto_op)op, "\"done\"", "not an object");
        refused((enum proto_op)op, "{}", "op is missing");
        refused((enum proto_op)op, "{\"op\":7}", "op is missing");
        refused((enum proto_op)op, op == PROTO_LOG ? "{\"op\":\"done\"}" : "{\"op\":\"log\"}",
                "op is");
    }
    /* Missing members and wrong types. */
    refused(PROTO_RUN, "{\"op\":\"run\",\"id\":1,\"function\":\"f\"}", "\"plugin\" must be");
    refused(PROTO_RUN, "{\"op\":\"run\",\"id\":1,\"plugin\":\"p\",\"function\":\"f\","
                       "\"params\":[1]}", "\"params\" must be an object");
    refused(PROTO_RUN, "{\"op\":\"run\",\"id\":1,\"plugin\":\"p\",\"function\":\"f\","
                       "\"pre_hook\":3}", "\"pre_hook\" must be a string");
    refused(PROTO_RUN, "{\"op\":\"run\",\"id\":\"1\",\"plugin\":\"p\",\"function\":\"f\"}",
            "\"id\" must be an integer");
    refused(PROTO_RUN, "{\"op\":\"run\",\"id\":1,\"plugin\":\"p\",\"function\":\"f\","
                       "\"depth\":-1}", "\"depth\" is out of range");
    refused(PROTO_LOG, "{\"op\":\"log\",\"id\":1,\"level\":\"info\"}", "\"text\" must be");
    refused(PROTO_LOG, "{\"op\":\"log\",\"id\":-1,\"level\":\"info\",\"text\":\"\"}",
            "\"id\" is out of range");
    refused(PROTO_LOG, "{\"op\":\"log\",\"level\":\"info\",\"text\":\"\"}", "\"id\" must be");
    refused(PROTO_PROGRESS, "{\"op\":\"progress\",\"id\":1,\"percent\":101}", "out of range");
    refused(PROTO_PROGRESS, "{\"op\":\"progress\",\"id\":1,\"percent\":1.5}", "integer");
    refused(PROTO_PROGRESS, "{\"op\":\"progress\",\"id\":1,\"percent\":5,\"message\":{}}",
            "\"message\" must be a string");
    refused(PROTO_CALL, "{\"op\":\"call\",\"id\":1,\"params\":{}}", "\"function\" must be");
    refused(PROTO_STORAGE, "{\"op\":\"storage\",\"id\":1,\"name\":null}", "\"name\" must be");
    /* A process group the host would kill must be a real one: never 0, 1 or negative. */
    refused(PROTO_PGROUP, "{\"op\":\"pgroup\",\"id\":1,\"pgid\":0}", "out of range");
    refused(PROTO_PGROUP, "{\"op\":\"pgroup\",\"id\":1,\"pgid\":1}", "out of range");
    refused(PROTO_PGROUP, "{\"op\":\"pgroup\",\"id\":1,\"pgid\":-4000}", "out of range");
    refused(PROTO_PGROUP, "{\"op\":\"pgroup\",\"id\":1,\"pgid\":4294967296}", "out of range");
    refused(PROTO_EXIT, "{\"op\":\"exit\",\"id\":1,\"status\":1,\"loading\":1}", "true or false");
    refused(PROTO_DONE, "{\"op\":\"done\",\"id\":1,\"code\":\"TIMEOUT\"}", "not an outcome");
    refused(PROTO_DONE, "{\"op\":\"done\",\"id\":1,\"code\":\"ok\"}", "not an outcome");
    refused(PROTO_DONE, "{\"op\":\"done\",\"id\":1}", "\"code\" must be");
    refused(PROTO_DONE, "{\"op\":\"done\",\"id\":1,\"code\":\"FAIL\",\"error\":\"x\"}",
            "\"error\" must be");
    refused(PROTO_DONE, "{\"op\":\"done\",\"id\":1,\"code\":\"FAIL\",\"error\":{\"code\":1}}",
            "\"error\" needs");
    refused(PROTO_DONE, "{\"op\":\"done\",\"id\":1,\"code\":\"OK\",\"retire\":\"yes\"}",
            "true or false");
    refused(PROTO_DONE, "{\"op\":\"done\",\"id\":1,\"code\":\"OK\",\"stderr_drained\":1}",
            "true or false");
    refused(PROTO_DONE, "{\"op\":\"done\",\"id\":1,\"code\":\"OK\",\"skipped\":\"no\"}",
            "true or false");
    refused(PROTO_SKIP, "{\"op\":\"skip\"}", "\"id\" must be");
    refused(PROTO_SKIP, "{\"op\":\"skip\",\"id\":-1}", "out of range");
    refused(PROTO_DONE, "{\"op\":\"done\",\"id\":1,\"code\":\"OK\",\"duration_ms\":-5}",
            "out of range");
    refused(PROTO_REPLY, "{\"op\":\"reply\",\"code\":\"UNAVAILABLE\"}", "not an outcome");
    refused(PROTO_REPLY, "{\"op\":\"reply\",\"code\":\"OK\",\"vault\":\"s3\"}",
            "\"vault\" must be an object");
    refused(PROTO_PROBE, "{\"op\":\"probe\"}", "\"stage\" must be");
    /* A NUL byte inside text would cut it short in C: refused, not truncated. */
    refused(PROTO_LOG, "{\"op\":\"log\",\"id\":1,\"level\":\"info\",\"text\":\"a\\u0000b\"}",
            "NUL byte");
    /* Oversized text: a worker caps what it sends, so longer text is a forgery. */
    char big[PROTO_ERROR_MAX + 200];
    char filler[PROTO_ERROR_MAX + 2];
    memset(filler, 'x', sizeof(filler) - 1);
    filler[sizeof(filler) - 1] = 0;
    snprintf(big, sizeof(big), "{\"op\":\"log\",\"id\":1,\"level\":\"info\",\"text\":\"%s\"}",
             filler);
    refused(PROTO_LOG, big, "longer than");
    snprintf(big, sizeof(big),
             "{\"op\":\"done\",\"id\":1,\"code\":\"FAIL\",\"error\":{\"code\":\"c\","
             "\"message\":\"%s\"}}",
             filler);
    refused(PROTO_DONE, big, "\"error\" needs");
    /* Just within the caps: accepted. */
    char ok[PROTO_LOG_MAX + 100], fit[PROTO_LOG_MAX + 1];
    memset(fit, 'y', sizeof(fit) - 1);
    fit[sizeof(fit) - 1] = 0;
    snprintf(ok, sizeof(ok), "{\"op\":\"log\",\"id\":1,\"level\":\"info\",\"text\":\"%s\"}", fit);
    char err[256];
    assert_int_equal(parse_as(PROTO_LOG, ok, err, sizeof(err)), 0);
}

/* Framing: a truncated stream is never a message; invalid UTF-8 is a broken stream. */
static void test_truncated_and_invalid_frames(void **state)
{
    (void)state;
    static const char body[] = "{\"op\":\"log\",\"id\":1,\"level\":\"info\",\"text\":\"hi\"}";
    char frame[128];
    uint32_t n = sizeof(body) - 1;
    frame[0] = (char)n;
    frame[1] = frame[2] = frame[3] = 0;
    memcpy(frame + 4, body, n);
    proto_reader r = {0};
    int broken = 0;
    /* Byte by byte: nothing until the last one arrives. */
    for (size_t i = 0; i < n + 4; i++) {
        r.buf = realloc(r.buf, i + 1);
        r.buf[i] = frame[i];
        r.len = i + 1;
        r.cap = i + 1;
        json_t *m = proto_next(&r, &broken);
        assert_int_equal(broken, 0);
        if (i + 1 < n + 4) {
            assert_null(m);
        } else {
            assert_non_null(m);
            assert_int_equal(proto_op_of(m), PROTO_LOG);
            json_decref(m);
        }
    }
    proto_reader_free(&r);
    /* A stream that ends inside a frame: end of file, no message. */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], frame, n), (ssize_t)n);
    close(fds[1]);
    assert_null(proto_read(&r, fds[0]));
    proto_reader_free(&r);
    close(fds[0]);
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], frame, n), (ssize_t)n);
    close(fds[1]);
    assert_null(proto_recv(fds[0]));
    close(fds[0]);
    /* Invalid UTF-8 in the JSON text: broken, never a message with mangled text. */
    static const char bad_utf8[] = "{\"op\":\"log\",\"id\":1,\"level\":\"info\",\"text\":\"\xff\"}";
    n = sizeof(bad_utf8) - 1;
    frame[0] = (char)n;
    memcpy(frame + 4, bad_utf8, n);
    r.buf = malloc(n + 4);
    memcpy(r.buf, frame, n + 4);
    r.len = r.cap = n + 4;
    assert_null(proto_next(&r, &broken));
    assert_int_equal(broken, 1);
    proto_reader_free(&r);
    /* An oversized length prefix: broken at once, nothing waited for. */
    unsigned char huge[4] = {0xff, 0xff, 0xff, 0xff};
    r.buf = malloc(4);
    memcpy(r.buf, huge, 4);
    r.len = r.cap = 4;
    assert_null(proto_next(&r, &broken));
    assert_int_equal(broken, 1);
    proto_reader_free(&r);
}

/* Text a builder is handed that is not valid UTF-8 is cleaned, never dropped. */
static void test_builders_clean_bad_text(void **state)
{
    (void)state;
    struct proto_log log = {.id = 1, .level = "info", .text = "bad \xff here"};
    json_t *m = proto_build_log(&log);
    assert_string_equal(json_string_value(json_object_get(m, "text")), "bad " FFFD " here");
    json_decref(m);
    struct proto_done done = {.id = 1, .kind = OUTCOME_FAIL, .code = "c\xc3", .message = "\xfe"};
    m = proto_build_done(&done);
    struct proto_done out;
    char err[256];
    assert_int_equal(proto_parse_done(m, &out, err, sizeof(err)), 0);
    assert_string_equal(out.code, "c" FFFD);
    assert_string_equal(out.message, FFFD);
    json_decref(m);
}

/* Pipelining: messages written together are all taken after one read of the socket. */
static void test_one_fill_takes_every_message(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
    for (int i = 0; i < 5; i++) {
        struct proto_progress p = {.id = 3, .percent = i * 10};
        json_t *m = proto_build_progress(&p);
        assert_int_equal(proto_send(sv[0], m), 0);
        json_decref(m);
    }
    proto_reader r = {0};
    assert_int_equal(proto_fill(&r, sv[1]), 1);
    int broken = 0;
    for (int i = 0; i < 5; i++) {
        json_t *m = proto_next(&r, &broken);
        assert_non_null(m);
        struct proto_progress p;
        char err[128];
        assert_int_equal(proto_parse_progress(m, &p, err, sizeof(err)), 0);
        assert_int_equal(p.percent, i * 10);
        json_decref(m);
    }
    assert_null(proto_next(&r, &broken));
    assert_int_equal(proto_fill(&r, sv[1]), 0); /* nothing left: would block */
    close(sv[0]);
    assert_int_equal(proto_fill(&r, sv[1]), -1); /* end of file */
    proto_reader_free(&r);
    close(sv[1]);
}

/* A reader holding one frame of text (n bytes). */
static proto_reader framed(const char *text, size_t n)
{
    proto_reader r = {.buf = malloc(n + 4), .len = n + 4, .cap = n + 4};
    r.buf[0] = (char)(n & 0xff);
    r.buf[1] = (char)(n >> 8 & 0xff);
    r.buf[2] = (char)(n >> 16 & 0xff);
    r.buf[3] = (char)(n >> 24 & 0xff);
    memcpy(r.buf + 4, text, n);
    return r;
}

/* proto_next_done() gives what proto_next() and proto_parse_done() give for the same
 * frame: plain ones parsed without a tree, every other text (hostile ones included) handed
 * back as a message, or as broken, exactly as proto_next() would. */
static void expect_done_path(const char *text, int plain)
{
    size_t n = strlen(text);
    proto_reader a = framed(text, n), b = framed(text, n);
    int broken_a = 0, broken_b = 0;
    json_t *msg = NULL;
    struct proto_done fast, slow;
    int got = proto_next_done(&a, &msg, &fast, &broken_a);
    json_t *ref = proto_next(&b, &broken_b);
    if (got != plain)
        fail_msg("%s: plain %d, expected %d", text, got, plain);
    assert_int_equal(broken_a, broken_b);
    assert_int_equal(a.len, b.len);
    char err[256];
    if (got) {
        assert_null(msg);
        assert_non_null(ref);
        assert_int_equal(proto_parse_done(ref, &slow, err, sizeof(err)), 0);
        assert_int_equal(fast.id, slow.id);
        assert_int_equal(fast.kind, slow.kind);
        assert_null(slow.result);
        assert_null(slow.code);
        assert_null(slow.message);
        assert_null(fast.result);
        assert_null(fast.code);
        assert_null(fast.message);
        assert_int_equal(fast.duration_ms, slow.duration_ms);
        assert_int_equal(fast.retire, slow.retire);
        assert_int_equal(fast.stderr_drained, slow.stderr_drained);
        assert_int_equal(fast.skipped, slow.skipped);
    } else {
        assert_int_equal(msg == NULL, ref == NULL);
        if (msg)
            assert_true(json_equal(msg, ref));
    }
    json_decref(msg);
    json_decref(ref);
    proto_reader_free(&a);
    proto_reader_free(&b);
}

static void test_plain_done_without_a_tree(void **state)
{
    (void)state;
    /* What a worker sends, as it builds it. */
    struct proto_done built[] = {
        {.id = 7, .kind = OUTCOME_OK, .duration_ms = 12, .stderr_drained = 1},
        {.id = 0, .kind = OUTCOME_UNAVAILABLE, .retire = 1, .skipped = 1},
        {.id = INT64_MAX / 10, .kind = OUTCOME_INVALID, .duration_ms = 999999999999},
        {.id = 3, .kind = OUTCOME_RETRY, .code = "busy", .message = "later"},
    };
    for (size_t i = 0; i < sizeof(built) / sizeof(built[0]); i++) {
        json_t *m = proto_build_done(&built[i]);
        char *text = json_dumps(m, JSON_COMPACT);
        expect_done_path(text, built[i].code == NULL);
        free(text);
        json_decref(m);
    }
    expect_done_path("{\"op\":\"done\",\"id\":1,\"code\":\"OK\"}", 1);
    expect_done_path("{\"code\":\"FAIL\",\"id\":2,\"op\":\"done\",\"result\":null,\"error\":null}", 1);
    expect_done_path("{\"op\":\"done\",\"id\":1,\"code\":\"OK\",\"retire\":false,\"skipped\":false}", 1);
    /* Anything else goes the general way, where it is parsed or refused as before. */
    static const char *const other[] = {
        "{\"op\":\"done\",\"id\":1,\"code\":\"OK\",\"result\":{\"a\":1}}",
        "{\"op\":\"done\",\"id\":1,\"code\":\"OK\",\"result\":5}",
        "{\"op\":\"done\",\"id\":1,\"code\":\"OK\",\"error\":{\"code\":\"x\",\"message\":\"y\"}}",
        "{\"op\":\"done\",\"id\":1,\"code\":\"TIMEOUT\"}",     /* not a kind a done carries */
        "{\"op\":\"done\",\"id\":1,\"code\":\"OK\\u0000\"}",  /* an escape */
        "{\"op\":\"done\",\"id\":1,\"code\":\"O\xffK\"}",     /* invalid UTF-8 */
        "{\"op\":\"done\",\"id\":1,\"code\":\"\xc3\xa9\"}",
        "{\"op\":\"done\",\"id\":\"1\",\"code\":\"OK\"}",     /* wrong types */
        "{\"op\":\"done\",\"id\":1,\"code\":1}",
        "{\"op\":\"done\",\"id\":1,\"code\":\"OK\",\"retire\":1}",
        "{\"op\":\"done\",\"id\":1,\"code\":\"OK\",\"duration_ms\":\"5\"}",
        "{\"op\":\"done\",\"id\":-1,\"code\":\"OK\"}",        /* numbers out of range */
        "{\"op\":\"done\",\"id\":99999999999999999999999,\"code\":\"OK\"}",
        "{\"op\":\"done\",\"id\":9223372036854775807,\"code\":\"OK\"}",
        "{\"op\":\"done\",\"id\":1.5,\"code\":\"OK\"}",
        "{\"op\":\"done\",\"id\":1e3,\"code\":\"OK\"}",
        "{\"op\":\"done\",\"id\":01,\"code\":\"OK\"}",
        "{\"op\":\"done\",\"id\":1,\"code\":\"OK\",\"duration_ms\":-5}",
        "{\"op\":\"done\",\"code\":\"OK\"}",                  /* missing members */
        "{\"op\":\"done\",\"id\":1}",
        "{\"id\":1,\"code\":\"OK\"}",
        "{\"op\":\"done\",\"id\":1,\"id\":2,\"code\":\"OK\"}", /* twice */
        "{\"op\":\"done\",\"id\":1,\"code\":\"OK\",\"extra\":true}",
        "{\"op\":\"log\",\"id\":1,\"code\":\"OK\"}",
        "{\"op\":\"done\", \"id\":1,\"code\":\"OK\"}",        /* not compact */
        "{\"op\":\"done\",\"id\":1,\"code\":\"OK\"} ",
        "{\"op\":\"done\",\"id\":1,\"code\":\"OK\"}}",         /* broken */
        "{\"op\":\"done\",\"id\":1,\"code\":\"OK\"",
        "{\"op\":\"done\",\"id\":1,",
        "{\"op\":\"do",
        "{}",
        "{",
        "",
        "[1]",
        "null",
    };
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        expect_done_path(other[i], 0);
    /* A plain done followed by another message: each comes out in turn. */
    static const char d1[] = "{\"op\":\"done\",\"id\":4,\"code\":\"OK\"}",
                      l1[] = "{\"op\":\"log\",\"id\":5,\"level\":\"info\",\"text\":\"x\"}";
    proto_reader r = framed(d1, strlen(d1)), second = framed(l1, strlen(l1));
    r.buf = realloc(r.buf, r.len + second.len);
    memcpy(r.buf + r.len, second.buf, second.len);
    r.len = r.cap = r.len + second.len;
    proto_reader_free(&second);
    json_t *msg;
    struct proto_done d;
    int broken = 0;
    assert_int_equal(proto_next_done(&r, &msg, &d, &broken), 1);
    assert_int_equal(d.id, 4);
    assert_int_equal(proto_next_done(&r, &msg, &d, &broken), 0);
    assert_non_null(msg);
    assert_int_equal(proto_op_of(msg), PROTO_LOG);
    json_decref(msg);
    assert_int_equal(proto_next_done(&r, &msg, &d, &broken), 0);
    assert_null(msg);
    assert_int_equal(broken, 0);
    assert_int_equal(r.len, 0);
    proto_reader_free(&r);
}

/* The worker reads a plain run message without a tree: the same attempt as
 * proto_parse_run() reads from the same text, params and config {} given as NULL, the
 * machine as text that parses to the same facts. */
static void expect_scan_as_parse(const struct proto_run *in)
{
    struct proto_buf b = {0};
    assert_int_equal(proto_buf_run(&b, in), 0);
    size_t n = b.len - 4;
    json_t *tree = json_loadb(b.p + 4, n, 0, NULL);
    struct proto_run ref, got;
    char err[256] = "";
    assert_int_equal(proto_parse_run(tree, &ref, err, sizeof(err)), 0);
    char *text = malloc(n);
    memcpy(text, b.p + 4, n);
    assert_int_equal(proto_scan_run(text, n, &got), 1);
    assert_true(got.id == ref.id);
    assert_true(got.deadline_ms == ref.deadline_ms);
    const struct attempt_spec *g = &got.spec, *r = &ref.spec;
    const char *gs[] = {g->plugin,   g->function, g->pre_hook, g->post_hook,
                        g->hook_dir, g->ssh_key,  g->task_id};
    const char *rs[] = {r->plugin,   r->function, r->pre_hook, r->post_hook,
                        r->hook_dir, r->ssh_key,  r->task_id};
    for (int i = 0; i < 7; i++) {
        assert_int_equal(gs[i] == NULL, rs[i] == NULL);
        if (gs[i])
            assert_string_equal(gs[i], rs[i]);
    }
    assert_int_equal(g->attempt, r->attempt);
    assert_int_equal(g->depth, r->depth);
    assert_true(g->timeout_ms == r->timeout_ms);
    const json_t *gj[] = {g->params, g->config}, *rj[] = {r->params, r->config};
    for (int i = 0; i < 2; i++) {
        if (gj[i])
            assert_true(json_equal(gj[i], rj[i]));
        else
            assert_true(rj[i] == NULL || json_object_size(rj[i]) == 0);
        json_decref((json_t *)gj[i]);
    }
    assert_null(g->machine);
    assert_int_equal(g->machine_json == NULL, r->machine == NULL);
    if (g->machine_json) {
        json_t *m = json_loads(g->machine_json, 0, NULL);
        assert_non_null(m);
        assert_true(json_equal(m, r->machine));
        json_decref(m);
    }
    free(text);
    json_decref(tree);
    proto_buf_free(&b);
}

/* Text the scan does not take is left as it was, for the general way. */
static void expect_not_scanned(const char *text)
{
    size_t n = strlen(text);
    char *copy = malloc(n + 1);
    memcpy(copy, text, n + 1);
    struct proto_run out;
    if (proto_scan_run(copy, n, &out) != 0)
        fail_msg("scanned: %s", text);
    assert_memory_equal(copy, text, n);
    free(copy);
}

static void test_run_scanned_without_a_tree(void **state)
{
    (void)state;
    json_t *params = json_pack("{s:s,s:i,s:[i,s]}", "repository", "webapp", "n", 3, "l", -4, "x");
    json_t *config = json_pack("{s:b,s:{s:n}}", "fast", 1, "deep", "k");
    json_t *machine = json_pack("{s:s,s:b,s:i,s:[],s:{},s:n,s:s}", "name", "m1", "local", 0, "port",
                                -22, "tags", "labels", "gone", "empty", "");
    /* Every member set (as test_run_round_trip's), strings of every kind a plain one has. */
    struct proto_run full = {.id = 42, .deadline_ms = 1700000000123};
    struct attempt_spec *f = &full.spec;
    f->plugin = "/p/core.so";
    f->function = "log_message";
    f->params = params;
    f->config = config;
    f->machine = machine;
    f->pre_hook = "stop.sh --now 'a b' {x} [y] ~!@#$%^&*()_+=|;:,.<>?/`";
    f->post_hook = "start.sh";
    f->hook_dir = "/ds/repositories/webapp";
    f->ssh_key = "-----BEGIN KEY-----";
    f->task_id = "t-1";
    f->attempt = 3;
    f->depth = 2;
    f->timeout_ms = 5000;
    expect_scan_as_parse(&full);
    struct proto_run bare = {.id = 1, .spec = {.plugin = "/p.so", .function = "f"}};
    expect_scan_as_parse(&bare);
    json_t *empty = json_object();
    struct proto_run edge = full;
    edge.id = INT64_MAX / 10;
    edge.spec.params = empty;
    edge.spec.config = empty;
    edge.spec.machine = empty;
    edge.spec.attempt = 0;
    edge.spec.depth = 1000;
    expect_scan_as_parse(&edge);
    json_decref(empty);
    json_decref(params);
    json_decref(config);
    json_decref(machine);
    expect_scan_as_parse(&(struct proto_run){
        .id = 5, .spec = {.plugin = "/p.so", .function = "f", .attempt = INT32_MAX}});
    static const char *const other[] = {
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"a\\\"b\"}", /* escapes */
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"ssh_key\":\"a\\nb\"}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"\xc3\xa9\"}", /* not ASCII */
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"\xff\"}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"extra\":1}",
        "{\"op\":\"run\",\"id\":1,\"id\":2,\"plugin\":\"/p.so\",\"function\":\"f\"}", /* twice */
        "{\"op\":\"run\",\"id\":-1,\"plugin\":\"/p.so\",\"function\":\"f\"}", /* out of range */
        "{\"op\":\"run\",\"id\":1.5,\"plugin\":\"/p.so\",\"function\":\"f\"}",
        "{\"op\":\"run\",\"id\":9223372036854775807,\"plugin\":\"/p.so\",\"function\":\"f\"}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"attempt\":2147483648}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"depth\":1001}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"depth\":null}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"params\":[]}", /* types
                                                                                            */
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"params\":\"x\"}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"task\":7}",
        "{\"op\":\"run\",\"id\":\"1\",\"plugin\":\"/p.so\",\"function\":\"f\"}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":null,\"function\":\"f\"}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"machine\":{\"a\":1.5}}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"machine\":{\"a\":1e3}}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"machine\":{\"a\":01}}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/"
        "p.so\",\"function\":\"f\",\"machine\":{\"a\":\"\\u0041\"}}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/"
        "p.so\",\"function\":\"f\",\"machine\":{\"a\":99999999999999999999}}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"machine\":{\"a\"}}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"machine\":{\"a\":1,}}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/"
        "p.so\",\"function\":\"f\",\"machine\":{\"a\":[1,]}}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"machine\":{\"a\":tru}}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"machine\":{1:2}}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"machine\":{\"a\":1}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\"}", /* missing members */
        "{\"op\":\"run\",\"plugin\":\"/p.so\",\"function\":\"f\"}",
        "{\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\"}",
        "{\"op\":\"log\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\"}",
        "{\"op\":\"run\", \"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\"}", /* not compact */
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\"} ",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\"}}",
        "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\"",
        "{\"op\":\"run\",\"id\":1,",
        "{}",
        "{",
        "",
    };
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        expect_not_scanned(other[i]);
    /* Strings past the caps proto_parse_run() sets, and values nested too deep. */
    char big[700], deep[400];
    int n =
        snprintf(big, sizeof(big), "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"");
    memset(big + n, 'f', 257);
    snprintf(big + n + 257, sizeof(big) - (size_t)n - 257, "\"}");
    expect_not_scanned(big);
    n = snprintf(deep, sizeof(deep),
                 "{\"op\":\"run\",\"id\":1,\"plugin\":\"/p.so\",\"function\":\"f\",\"machine\":");
    for (int i = 0; i < 40; i++)
        deep[n++] = '[';
    deep[n] = '\0';
    /* (the frame is cut here: nesting alone must stop the scan, whatever follows) */
    expect_not_scanned(deep);
}

/* A worker's done written as text is the message proto_build_done() gives, and a plain one
 * is read by the host without a tree. */
static void test_done_written_as_text(void **state)
{
    (void)state;
    json_t *result = json_pack("{s:s,s:[i]}", "version", "v2", "list", 1);
    struct proto_done built[] = {
        {.id = 7, .kind = OUTCOME_OK, .duration_ms = 12, .stderr_drained = 1},
        {.id = 0, .kind = OUTCOME_UNAVAILABLE, .retire = 1, .skipped = 1},
        {.id = 3, .kind = OUTCOME_RETRY, .code = "busy", .message = "la\"ter\n\x01"},
        {.id = 4, .kind = OUTCOME_FAIL, .message = "no code"},
        {.id = 5, .kind = OUTCOME_FAIL, .code = "c\xc3", .message = "\xfe"},
        {.id = 6, .kind = OUTCOME_OK, .result = result, .duration_ms = 3},
    };
    for (size_t i = 0; i < sizeof(built) / sizeof(built[0]); i++) {
        struct proto_buf b = {0};
        assert_int_equal(proto_buf_done(&b, &built[i]), 0);
        proto_reader r = {.buf = b.p, .len = b.len, .cap = b.cap};
        json_t *msg = NULL;
        struct proto_done fast, slow;
        int broken = 0;
        int plain = proto_next_done(&r, &msg, &fast, &broken);
        assert_int_equal(broken, 0);
        assert_int_equal(plain, built[i].code == NULL && built[i].message == NULL &&
                                    built[i].result == NULL);
        char err[256] = "";
        if (!plain)
            assert_int_equal(proto_parse_done(msg, &fast, err, sizeof(err)), 0);
        json_t *ref = proto_build_done(&built[i]);
        assert_int_equal(proto_parse_done(ref, &slow, err, sizeof(err)), 0);
        assert_true(fast.id == slow.id);
        assert_int_equal(fast.kind, slow.kind);
        assert_int_equal(fast.retire, slow.retire);
        assert_int_equal(fast.skipped, slow.skipped);
        assert_int_equal(fast.stderr_drained, slow.stderr_drained);
        assert_true(fast.duration_ms == slow.duration_ms);
        if (slow.code) {
            assert_string_equal(fast.code, slow.code);
            assert_string_equal(fast.message, slow.message);
        }
        if (slow.result)
            assert_true(json_equal(fast.result, result));
        json_decref(ref);
        json_decref(msg);
        proto_buf_free(&b);
    }
    json_decref(result);
}

/* Messages read as text out of a reader that keeps filling, in pieces of every size: each
 * whole and in order; a message peeked at stays first until it is dropped. */
static void test_reader_stream_in_pieces(void **state)
{
    (void)state;
    struct proto_buf all = {0};
    enum { N = 3000 };
    for (int i = 0; i < N; i++) {
        struct proto_progress p = {
            .id = i, .percent = i % 100, .message = i % 7 ? "x" : "a longer message to vary sizes"};
        json_t *m = proto_build_progress(&p);
        assert_int_equal(proto_buf_msg(&all, m), 0);
        json_decref(m);
    }
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pid_t pid = fork();
    if (pid == 0) {
        for (size_t at = 0, step = 1; at < all.len; at += step, step = step * 7 % 9001 + 1)
            if (write(sv[0], all.p + at, at + step > all.len ? all.len - at : step) < 0)
                _exit(1);
        _exit(0);
    }
    close(sv[0]);
    proto_reader r = {0};
    int next = 0, broken = 0;
    const char *text;
    size_t n;
    while (next < N && proto_read_text(&r, sv[1], &text, &n)) {
        do {
            json_t *m = json_loadb(text, n, 0, NULL);
            struct proto_progress p;
            char err[128];
            assert_int_equal(proto_parse_progress(m, &p, err, sizeof(err)), 0);
            assert_int_equal(p.id, next);
            json_decref(m);
            const char *again;
            size_t n_again;
            assert_int_equal(proto_peek(&r, &again, &n_again, &broken), 1);
            assert_true(again == text && n_again == n);
            proto_drop(&r);
            next++;
        } while (next < N && proto_peek(&r, &text, &n, &broken));
        assert_int_equal(broken, 0);
    }
    assert_int_equal(next, N);
    assert_int_equal(r.len, 0);
    proto_reader_free(&r);
    close(sv[1]);
    proto_buf_free(&all);
    int status;
    waitpid(pid, &status, 0);
    assert_int_equal(status, 0);
}

/* A worker's look at its blocking socket before each start: what came, never a wait. */
static void test_fill_now_never_waits(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    proto_reader r = {0};
    assert_int_equal(proto_fill_now(&r, sv[1]), 0); /* blocking socket, nothing there */
    struct proto_skip skip = {.id = 9};
    json_t *m = proto_build_skip(&skip);
    assert_int_equal(proto_send(sv[0], m), 0);
    assert_int_equal(proto_send(sv[0], m), 0);
    json_decref(m);
    assert_int_equal(proto_fill_now(&r, sv[1]), 1);
    int broken = 0;
    for (int i = 0; i < 2; i++) {
        m = proto_next(&r, &broken);
        assert_int_equal(proto_op_of(m), PROTO_SKIP);
        json_decref(m);
    }
    assert_int_equal(proto_fill_now(&r, sv[1]), 0);
    close(sv[0]);
    assert_int_equal(proto_fill_now(&r, sv[1]), -1); /* the peer is gone */
    proto_reader_free(&r);
    close(sv[1]);
}

/* A message larger than the peer accepts is never written. */
static void test_oversized_message_is_not_sent(void **state)
{
    (void)state;
    size_t n = PROTO_MAX_MESSAGE + 16;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'z', n);
    big[n] = 0;
    json_t *m = json_pack("{s:s,s:s%}", "op", "log", "text", big, n);
    free(big);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
    assert_int_equal(proto_send(sv[0], m), -2);
    char byte;
    assert_int_equal(read(sv[1], &byte, 1), -1); /* nothing was written */
    json_decref(m);
    close(sv[0]);
    close(sv[1]);
}

/* A plugin's hook_dir template, filled in from one attempt. */
static void test_hook_dir(void **state)
{
    (void)state;
    const char *t = "{datastore}/repositories/{repository}";
    json_t *machine = json_pack("{s:s}", "datastore", "/mnt/ds");
    json_t *params = json_pack("{s:s,s:i}", "repository", "webapp", "n", 3);
    char *dir = proto_hook_dir(t, machine, params);
    assert_string_equal(dir, "/mnt/ds/repositories/webapp");
    free(dir);
    /* Literal text only, and a template longer than the first buffer. */
    char longer[400];
    memset(longer, 'a', sizeof(longer) - 1);
    longer[0] = '/';
    longer[sizeof(longer) - 1] = 0;
    dir = proto_hook_dir(longer, NULL, NULL);
    assert_string_equal(dir, longer);
    free(dir);
    /* No value, an empty one, one that is not a string or one that climbs: no directory. */
    assert_null(proto_hook_dir(t, NULL, params));
    assert_null(proto_hook_dir(t, machine, NULL));
    json_t *bad = json_pack("{s:s}", "repository", "../../etc");
    assert_null(proto_hook_dir(t, machine, bad));
    json_decref(bad);
    bad = json_pack("{s:s}", "repository", "");
    assert_null(proto_hook_dir(t, machine, bad));
    json_decref(bad);
    assert_null(proto_hook_dir("{n}", machine, params)); /* n is an integer */
    /* Malformed templates are refused, with a reason. */
    char err[128];
    assert_int_equal(proto_hook_dir_valid(t, err, sizeof(err)), 0);
    const char *malformed[] = {"", "{datastore", "{}", "a}b", "{Data}", "{1x}", "tab\there",
                               "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        err[0] = 0;
        assert_int_equal(proto_hook_dir_valid(malformed[i], err, sizeof(err)), -1);
        assert_true(strstr(err, "hook_dir") != NULL);
        assert_null(proto_hook_dir(malformed[i], machine, params));
    }
    char huge[PROTO_HOOK_DIR_MAX + 2];
    memset(huge, 'x', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = 0;
    assert_int_equal(proto_hook_dir_valid(huge, err, sizeof(err)), -1);
    assert_null(proto_hook_dir_valid(NULL, err, sizeof(err)) == 0 ? "" : NULL);
    json_decref(machine);
    json_decref(params);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_text_is_kept),
        cmocka_unit_test(test_bad_sequences_become_fffd),
        cmocka_unit_test(test_long_text_is_cut_and_marked),
        cmocka_unit_test(test_json_string_and_framing),
        cmocka_unit_test(test_op_table),
        cmocka_unit_test(test_run_round_trip),
        cmocka_unit_test(test_reply_round_trip),
        cmocka_unit_test(test_worker_messages_round_trip),
        cmocka_unit_test(test_hostile_messages_are_refused),
        cmocka_unit_test(test_truncated_and_invalid_frames),
        cmocka_unit_test(test_builders_clean_bad_text),
        cmocka_unit_test(test_one_fill_takes_every_message),
        cmocka_unit_test(test_oversized_message_is_not_sent),
        cmocka_unit_test(test_plain_done_without_a_tree),
        cmocka_unit_test(test_hook_dir),
        cmocka_unit_test(test_run_scanned_without_a_tree),
        cmocka_unit_test(test_done_written_as_text),
        cmocka_unit_test(test_reader_stream_in_pieces),
        cmocka_unit_test(test_fill_now_never_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
