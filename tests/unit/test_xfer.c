/*
 * The remote providers' transfer layer (plugins/repo/xfer.c): vault settings, URL escaping,
 * the XML walker S3 and WebDAV listings go through, backoff limits, cancel, the bandwidth
 * limiter, http_do's retries against a port where nothing listens, and streamed uploads
 * (every byte through a small ring; a replay from the spool after a transient failure). The providers
 * themselves are tested against real servers in tests/e2e/storage_*.sh.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../plugins/repo/util.c"
#include "../../plugins/repo/xfer.c"

static json_t *vault_of(const char *text)
{
    json_t *v = json_loads(text, 0, NULL);
    assert_non_null(v);
    return v;
}

static void test_opts_defaults_and_rates(void **state)
{
    (void)state;
    xfer_opts o;
    rerr e = {0};
    json_t *v = vault_of("{}");
    assert_int_equal(xfer_opts_read(v, "s3", &o, &e), 0);
    assert_int_equal(o.connections, 4);
    assert_int_equal(o.bwlimit, 0);
    assert_int_equal(o.timeout, 60);
    assert_int_equal(o.retries, 5);
    assert_int_equal(o.tls_verify, 1);
    json_decref(v);
    const struct {
        const char *vault;
        curl_off_t bytes;
    } rates[] = {
        {"{\"bwlimit\": 1000}", 1000},
        {"{\"bwlimit\": \"512k\"}", 512 * 1024},
        {"{\"bwlimit\": \"20M\"}", 20 * 1024 * 1024},
        {"{\"bwlimit\": \"1.5G\"}", (curl_off_t)(1.5 * 1024 * 1024 * 1024)},
        {"{\"bwlimit\": \"2MB/s\"}", 2 * 1024 * 1024},
    };
    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
        v = vault_of(rates[i].vault);
        assert_int_equal(xfer_opts_read(v, "s3", &o, &e), 0);
        assert_int_equal(o.bwlimit, rates[i].bytes);
        json_decref(v);
    }
}

static void test_opts_refuse_bad_values(void **state)
{
    (void)state;
    const struct {
        const char *vault;
        const char *key;
    } bad[] = {
        {"{\"bwlimit\": \"fast\"}", "bwlimit"},
        {"{\"bwlimit\": -1}", "bwlimit"},
        {"{\"bwlimit\": \"10X\"}", "bwlimit"},
        {"{\"connections\": 0}", "connections"},
        {"{\"connections\": 33}", "connections"},
        {"{\"connections\": \"4\"}", "connections"},
        {"{\"timeout\": 0}", "timeout"},
        {"{\"retries\": -1}", "retries"},
        {"{\"tls_verify\": \"no\"}", "tls_verify"},
        {"{\"ca_file\": \"certs.pem\"}", "ca_file"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        xfer_opts o;
        rerr e = {0};
        json_t *v = vault_of(bad[i].vault);
        assert_int_equal(xfer_opts_read(v, "webdav", &o, &e), -1);
        assert_int_equal(e.kind, E_INVALID);
        assert_non_null(strstr(e.msg, bad[i].key));
        assert_non_null(strstr(e.msg, "webdav storage vault"));
        json_decref(v);
    }
}

static void test_url_escaping(void **state)
{
    (void)state;
    char *p = url_path_escape("snapshots/web app/ünï%20");
    assert_string_equal(p, "snapshots/web%20app/%C3%BCn%C3%AF%2520");
    free(p);
    char *q = url_query_escape("data/ab c~_.-");
    assert_string_equal(q, "data%2Fab%20c~_.-");
    free(q);
}

typedef struct seen {
    char text[2048];
} seen;

static void collect(void *arg, const char *path, const char *text)
{
    seen *s = arg;
    size_t used = strlen(s->text);
    snprintf(s->text + used, sizeof(s->text) - used, "%s=%s;", path, text);
}

static void test_xml_walk(void **state)
{
    (void)state;
    const char *s3 = "<?xml version=\"1.0\"?>\n"
                     "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                     "<IsTruncated>true</IsTruncated>"
                     "<Contents><Key>data/ab/ab12</Key><Size>42</Size></Contents>"
                     "<NextContinuationToken> tok&amp;en </NextContinuationToken>"
                     "</ListBucketResult>";
    seen s = {{0}};
    assert_int_equal(xml_walk(s3, strlen(s3), collect, &s), 0);
    assert_string_equal(s.text, "ListBucketResult/IsTruncated=true;"
                                "ListBucketResult/Contents/Key=data/ab/ab12;"
                                "ListBucketResult/Contents/Size=42;"
                                "ListBucketResult/Contents=;"
                                "ListBucketResult/NextContinuationToken=tok&en;"
                                "ListBucketResult=;");
    /* WebDAV answers use any namespace prefix: paths carry local names only. */
    const char *dav = "<d:multistatus xmlns:d=\"DAV:\"><d:response><d:href>/b/x</d:href>"
                      "<d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype>"
                      "</d:prop></d:propstat></d:response></d:multistatus>";
    memset(&s, 0, sizeof(s));
    assert_int_equal(xml_walk(dav, strlen(dav), collect, &s), 0);
    assert_non_null(strstr(s.text, "multistatus/response/href=/b/x;"));
    assert_non_null(strstr(s.text, "multistatus/response/propstat/prop/resourcetype/collection=;"));
    memset(&s, 0, sizeof(s));
    assert_int_equal(xml_walk("<a><b></a>", 10, collect, &s), -1);
}

static void test_backoff_limits_and_cancel(void **state)
{
    (void)state;
    xfer_opts o = {.connections = 1, .retries = 2, .retry_delay_ms = 20, .timeout = 5};
    xfer_pool *p = xfer_pool_new(&o);
    double t0 = mono_sec();
    assert_int_equal(xfer_backoff(p, 1), 0);
    assert_int_equal(xfer_backoff(p, 2), 0);
    /* Half of each delay is fixed: 10 ms, then 20 ms at least. */
    assert_true(mono_sec() - t0 >= 0.029);
    assert_int_equal(xfer_backoff(p, 3), -1);
    xfer_cancel(1);
    assert_int_equal(xfer_backoff(p, 1), -1);
    assert_true(xfer_cancelled());
    xfer_cancel(0);
    xfer_pool_free(p);
}

static void test_throttle_holds_the_rate(void **state)
{
    (void)state;
    xfer_opts o = {.connections = 4, .bwlimit = 1 << 20, .timeout = 5};
    xfer_pool *p = xfer_pool_new(&o);
    double t0 = mono_sec();
    for (int i = 0; i < 8; i++)
        xfer_throttle(p, XFER_SEND, 128 * 1024); /* 1 MiB at 1 MiB/s, 0.1 s of burst */
    assert_true(mono_sec() - t0 >= 0.85);
    /* The other direction has its own budget. */
    t0 = mono_sec();
    xfer_throttle(p, XFER_RECV, 64 * 1024);
    assert_true(mono_sec() - t0 < 0.5);
    xfer_pool_free(p);
}

/* A loopback port where nothing listens (bound, then closed). */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_http_do_retries_then_transient(void **state)
{
    (void)state;
    xfer_opts o = {.connections = 2,
                   .retries = 2,
                   .retry_delay_ms = 10,
                   .timeout = 5,
                   .connect_timeout = 5,
                   .tls_verify = 1};
    xfer_pool *p = xfer_pool_new(&o);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/data/ab", dead_port());
    buf out = {0};
    http_req r = {.method = "GET",
                  .url = url,
                  .out = &out,
                  .idempotent = 1,
                  .what = "GET data/ab on storage t"};
    rerr e = {0};
    assert_int_equal(http_do(p, &r, &e), -1);
    assert_int_equal(e.kind, E_TRANSIENT);
    assert_non_null(strstr(e.msg, "GET data/ab on storage t"));
    assert_non_null(strstr(e.msg, "(3 tries)"));
    /* A request that is not safe to repeat is tried once. */
    rerr once = {0};
    http_req post = {.method = "POST", .url = url, .body = "x", .body_len = 1, .what = "POST"};
    assert_int_equal(http_do(p, &post, &once), -1);
    assert_non_null(strstr(once.msg, "(1 try)"));
    buf_free(&out);
    xfer_pool_free(p);
}

static void *cancelled_there(void *arg)
{
    *(int *)arg = xfer_cancelled();
    return NULL;
}

/*
 * TLS: a real TLS server (openssl s_server -www, which answers any GET with 200) with a
 * self-signed certificate for 127.0.0.1. The pool trusts it only through ca_file, refuses it
 * without, and takes it with tls_verify false.
 */
static void test_tls_settings(void **state)
{
    (void)state;
    char dir[] = "/tmp/ferry-xfer-tls.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1 -keyout %s/key.pem -out %s/cert.pem "
             ">/dev/null 2>&1",
             dir, dir);
    assert_int_equal(system(cmd), 0);
    int port = dead_port();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char accept[16], cert[300], key[300];
        snprintf(accept, sizeof(accept), "%d", port);
        snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
        snprintf(key, sizeof(key), "%s/key.pem", dir);
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execlp("openssl", "openssl", "s_server", "-accept", accept, "-cert", cert, "-key", key,
               "-www", "-quiet", (char *)NULL);
        _exit(127);
    }
    char url[64];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/", port);
    xfer_opts o = {.connections = 1,
                   .retries = 0,
                   .retry_delay_ms = 10,
                   .timeout = 5,
                   .connect_timeout = 5,
                   .tls_verify = 1};
    /* Wait until it listens: a refused connection is transient, a certificate error not. */
    rerr e = {0};
    int rc = -1;
    for (int i = 0; i < 100; i++) {
        xfer_pool *p = xfer_pool_new(&o);
        http_req r = {.method = "GET", .url = url, .idempotent = 1, .what = "GET /"};
        memset(&e, 0, sizeof(e));
        rc = http_do(p, &r, &e);
        xfer_pool_free(p);
        if (rc == 0 || e.kind != E_TRANSIENT)
            break;
        usleep(50 * 1000);
    }
    assert_int_equal(rc, -1);
    assert_int_equal(e.kind, E_FAIL); /* an untrusted certificate is not worth retrying */
    snprintf(o.ca_file, sizeof(o.ca_file), "%s/cert.pem", dir);
    xfer_pool *p = xfer_pool_new(&o);
    http_req r = {.method = "GET", .url = url, .idempotent = 1, .what = "GET /"};
    assert_int_equal(http_do(p, &r, &e), 0);
    assert_int_equal(r.status, 200);
    xfer_pool_free(p);
    o.ca_file[0] = '\0';
    o.tls_verify = 0;
    p = xfer_pool_new(&o);
    http_req r2 = {.method = "GET", .url = url, .idempotent = 1, .what = "GET /"};
    assert_int_equal(http_do(p, &r2, &e), 0);
    assert_int_equal(r2.status, 200);
    /* A cancel ends a request at once; a shielded thread's request still finishes, and the
     * shield is this thread's only. */
    xfer_cancel(1);
    http_req r3 = {.method = "GET", .url = url, .idempotent = 1, .what = "GET /"};
    assert_int_equal(http_do(p, &r3, &e), -1);
    assert_int_equal(xfer_shield(1), 0);
    http_req r4 = {.method = "GET", .url = url, .idempotent = 1, .what = "GET /"};
    assert_int_equal(http_do(p, &r4, &e), 0);
    assert_int_equal(r4.status, 200);
    pthread_t other;
    int there = 0;
    assert_int_equal(pthread_create(&other, NULL, cancelled_there, &there), 0);
    pthread_join(other, NULL);
    assert_int_equal(there, 1);
    assert_int_equal(xfer_shield(0), 1);
    assert_true(xfer_cancelled());
    xfer_cancel(0);
    xfer_pool_free(p);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* A transfer for xfer_stream: reads everything into a buffer; with fail_after, the first
 * (streamed) try gives up after that many bytes with a transient error, as a reset
 * connection would, and the replay from the spool must then deliver every byte. */
typedef struct sink {
    buf got;
    size_t fail_after;
    int tries;
} sink;

static int sink_run(xfer_stream *st, void *arg, rerr *e)
{
    sink *k = arg;
    k->tries++;
    if (xfer_stream_rewind(st, 0) != 0)
        return rerr_set(e, E_FAIL, "cannot rewind");
    k->got.len = 0;
    char chunk[7001];
    for (;;) {
        size_t n = xfer_stream_read(st, chunk, sizeof(chunk));
        if (n == CURL_READFUNC_ABORT)
            return rerr_set(e, E_FAIL, "aborted");
        if (n == 0)
            return 0;
        buf_append(&k->got, chunk, n);
        if (k->fail_after && k->tries == 1 && k->got.len >= k->fail_after)
            return rerr_set(e, E_TRANSIENT, "connection reset (test)");
    }
}

static void stream_through(size_t fail_after, int *tries)
{
    static uint8_t data[3 << 20];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 131 + (i >> 9));
    sink k = {.fail_after = fail_after};
    xfer_stream *st = xfer_stream_start(64 << 10, sink_run, &k); /* a ring far smaller */
    rerr e = {0};
    for (size_t off = 0; off < sizeof(data); off += 100000) {
        size_t n = sizeof(data) - off < 100000 ? sizeof(data) - off : 100000;
        assert_int_equal(xfer_stream_write(st, data + off, n, &e), 0);
    }
    assert_int_equal(xfer_stream_finish(st, &e), 0);
    assert_int_equal(k.got.len, sizeof(data));
    assert_memory_equal(k.got.data, data, sizeof(data));
    *tries = k.tries;
    buf_free(&k.got);
}

static void test_stream_passes_every_byte(void **state)
{
    (void)state;
    int tries = 0;
    stream_through(0, &tries);
    assert_int_equal(tries, 1);
}

static void test_stream_replays_after_a_transient_failure(void **state)
{
    (void)state;
    int tries = 0;
    stream_through(1 << 20, &tries); /* cut after 1 MiB of 3 */
    assert_int_equal(tries, 2);
}

static int fail_at_once(xfer_stream *st, void *arg, rerr *e)
{
    (void)st;
    (void)arg;
    return rerr_set(e, E_FAIL, "refused (test)");
}

static void test_stream_reports_a_lasting_failure(void **state)
{
    (void)state;
    static uint8_t data[1 << 20];
    xfer_stream *st = xfer_stream_start(4096, fail_at_once, NULL);
    rerr e = {0};
    int rc = 0;
    for (int i = 0; i < 8 && rc == 0; i++)
        rc = xfer_stream_write(st, data, sizeof(data), &e);
    assert_int_equal(rc, -1); /* a failure that is not transient is not spooled for later */
    assert_string_equal(e.msg, "refused (test)");
    xfer_stream_abort(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opts_defaults_and_rates),
        cmocka_unit_test(test_opts_refuse_bad_values),
        cmocka_unit_test(test_url_escaping),
        cmocka_unit_test(test_xml_walk),
        cmocka_unit_test(test_backoff_limits_and_cancel),
        cmocka_unit_test(test_throttle_holds_the_rate),
        cmocka_unit_test(test_http_do_retries_then_transient),
        cmocka_unit_test(test_tls_settings),
        cmocka_unit_test(test_stream_passes_every_byte),
        cmocka_unit_test(test_stream_replays_after_a_transient_failure),
        cmocka_unit_test(test_stream_reports_a_lasting_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
