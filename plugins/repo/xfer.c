/* The transfer layer of the remote storage providers: see xfer.h. */
#include "xfer.h"

#include <ctype.h>
#include <errno.h>
#include <expat.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 32
#define MAX_DELAY_MS    8000
#define FG_GRACE        0.05 /* seconds: see get_handle */
#define XML_TEXT_MAX    (64 * 1024)
#define XML_PATH_MAX    1024

/* ---- settings ------------------------------------------------------------------------------ */

static int read_int(const json_t *vault, const char *key, long lo, long hi, long *out,
                    const char *kind, rerr *e)
{
    const json_t *v = json_object_get(vault, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return rerr_set(e, E_INVALID,
                        "%s storage vault: \"%s\" must be a whole number from %ld to %ld", kind,
                        key, lo, hi);
    *out = (long)json_integer_value(v);
    return 0;
}

/* "20M", "512k", "1G", "1048576" or a number: bytes per second; -1 when malformed. */
static curl_off_t parse_rate(const json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v) >= 0 ? (curl_off_t)json_integer_value(v) : -1;
    const char *s = json_string_value(v);
    if (s == NULL || !isdigit((unsigned char)s[0]))
        return -1;
    char *end;
    double n = strtod(s, &end);
    double mul = 1;
    switch (*end) {
    case 'k':
    case 'K':
        mul = 1024.0;
        end++;
        break;
    case 'm':
    case 'M':
        mul = 1024.0 * 1024;
        end++;
        break;
    case 'g':
    case 'G':
        mul = 1024.0 * 1024 * 1024;
        end++;
        break;
    default:
        break;
    }
    if (strcmp(end, "") != 0 && strcmp(end, "B") != 0 && strcmp(end, "/s") != 0 &&
        strcmp(end, "B/s") != 0)
        return -1;
    return n * mul < 1e15 ? (curl_off_t)(n * mul) : -1;
}

int xfer_opts_read(const json_t *vault, const char *kind, xfer_opts *o, rerr *e)
{
    long connections = 4, connect_timeout = 15, timeout = 60, retries = 5, delay = 250;
    *o = (xfer_opts){0};
    if (read_int(vault, "connections", 1, MAX_CONNECTIONS, &connections, kind, e) != 0 ||
        read_int(vault, "connect_timeout", 1, 3600, &connect_timeout, kind, e) != 0 ||
        read_int(vault, "timeout", 1, 86400, &timeout, kind, e) != 0 ||
        read_int(vault, "retries", 0, 100, &retries, kind, e) != 0 ||
        read_int(vault, "retry_delay_ms", 1, 60000, &delay, kind, e) != 0)
        return -1;
    const json_t *bw = json_object_get(vault, "bwlimit");
    if (bw && !json_is_null(bw) && (o->bwlimit = parse_rate(bw)) < 0)
        return rerr_set(e, E_INVALID,
                        "%s storage vault: \"bwlimit\" must be bytes per second, or a number with "
                        "K, M or G (KiB/MiB/GiB per second), e.g. \"20M\"",
                        kind);
    const json_t *verify = json_object_get(vault, "tls_verify");
    if (verify && !json_is_boolean(verify))
        return rerr_set(e, E_INVALID, "%s storage vault: \"tls_verify\" must be true or false",
                        kind);
    const char *ca = json_string_value(json_object_get(vault, "ca_file"));
    if (ca && (ca[0] != '/' || strlen(ca) >= sizeof(o->ca_file)))
        return rerr_set(e, E_INVALID, "%s storage vault: \"ca_file\" must be an absolute path",
                        kind);
    o->connections = (int)connections;
    o->connect_timeout = connect_timeout;
    o->timeout = timeout;
    o->retries = (int)retries;
    o->retry_delay_ms = delay;
    o->tls_verify = verify ? json_is_true(verify) : 1;
    snprintf(o->ca_file, sizeof(o->ca_file), "%s", ca ? ca : "");
    return 0;
}

/* ---- the pool ------------------------------------------------------------------------------ */

/* A handle and what lives beside it; found again through CURLOPT_PRIVATE. */
typedef struct conn {
    CURL *h;
    int background; /* lent to a streamed upload */
    char errbuf[CURL_ERROR_SIZE];
} conn;

struct xfer_pool {
    xfer_opts o;
    pthread_mutex_t mu;
    pthread_cond_t freed;
    conn *idle[MAX_CONNECTIONS];
    int nidle;
    int created;
    int waiting;         /* xfer_get callers waiting for a connection (they go before streams) */
    double fg_put_at;    /* when an xfer_get caller last gave its handle back (mono_sec) */
    CURLSH *share;
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
    pthread_mutex_t bw_mu;
    double bw_next[2]; /* per direction: when the bandwidth already granted runs out */
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int cancelled;         /* atomic: see xfer_cancel */
static __thread int shielded; /* see xfer_shield */

void xfer_cancel(int on)
{
    __atomic_store_n(&cancelled, on, __ATOMIC_RELAXED);
}

int xfer_cancelled(void)
{
    return !shielded && __atomic_load_n(&cancelled, __ATOMIC_RELAXED);
}

int xfer_shield(int on)
{
    int was = shielded;
    shielded = on;
    return was;
}

/* Aborts a running transfer once the job is cancelled. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)arg;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return xfer_cancelled();
}

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *arg)
{
    (void)h;
    (void)access;
    xfer_pool *p = arg;
    pthread_mutex_lock(&p->share_mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *arg)
{
    (void)h;
    xfer_pool *p = arg;
    pthread_mutex_unlock(&p->share_mu[data]);
}

xfer_pool *xfer_pool_new(const xfer_opts *o)
{
    pthread_once(&global_once, global_init);
    xfer_pool *p = xcalloc(1, sizeof(*p));
    p->o = *o;
    if (p->o.connections < 1 || p->o.connections > MAX_CONNECTIONS)
        p->o.connections = 4;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->freed, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&p->bw_mu, NULL);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&p->share_mu[i], NULL);
    p->share = curl_share_init();
    if (p->share) {
        curl_share_setopt(p->share, CURLSHOPT_LOCKFUNC, share_lock);
        curl_share_setopt(p->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
        curl_share_setopt(p->share, CURLSHOPT_USERDATA, p);
        curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
        curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    }
    return p;
}

void xfer_pool_free(xfer_pool *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->nidle; i++) {
        curl_easy_cleanup(p->idle[i]->h);
        free(p->idle[i]);
    }
    if (p->share)
        curl_share_cleanup(p->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&p->share_mu[i]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->freed);
    pthread_mutex_destroy(&p->bw_mu);
    free(p);
}

const xfer_opts *xfer_pool_opts(const xfer_pool *p)
{
    return &p->o;
}

static void apply_defaults(xfer_pool *p, conn *c)
{
    CURL *h = c->h;
    c->errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_PRIVATE, c);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, p->o.connect_timeout);
    /* A transfer that moves nothing for `timeout` seconds is cut: a hung server or a dead
     * route ends the attempt instead of holding it until the job's own timeout. */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, p->o.timeout);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    /* bwlimit is enforced by xfer_throttle in the data callbacks, for the pool as a whole;
     * this cap only keeps one transfer from bursting far past it inside curl's buffers. */
    if (p->o.bwlimit > 0) {
        curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE, p->o.bwlimit);
        curl_easy_setopt(h, CURLOPT_MAX_RECV_SPEED_LARGE, p->o.bwlimit);
    }
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, p->o.tls_verify ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, p->o.tls_verify ? 2L : 0L);
    if (p->o.ca_file[0])
        curl_easy_setopt(h, CURLOPT_CAINFO, p->o.ca_file);
    if (p->share)
        curl_easy_setopt(h, CURLOPT_SHARE, p->share);
}

/* Borrows a handle; a background one (a streamed upload) also waits while others do. */
static CURL *get_handle(xfer_pool *p, int background)
{
    conn *c = NULL;
    pthread_mutex_lock(&p->mu);
    if (!background)
        p->waiting++;
    for (;;) {
        int busy = (p->nidle == 0 && p->created >= p->o.connections) || (background && p->waiting);
        /* A caller that just gave a handle back often needs one again at once (a pack's
         * rename, then its index): a stream waits FG_GRACE after that, or the second request
         * would queue behind a whole pack. */
        double hold = background ? p->fg_put_at + FG_GRACE - mono_sec() : 0;
        if (!busy && hold <= 0)
            break;
        if (busy) {
            pthread_cond_wait(&p->freed, &p->mu);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            long ns = ts.tv_nsec + (long)(hold * 1e9) + 1000000;
            ts.tv_sec += ns / 1000000000L;
            ts.tv_nsec = ns % 1000000000L;
            pthread_cond_timedwait(&p->freed, &p->mu, &ts);
        }
    }
    if (!background)
        p->waiting--;
    if (p->nidle > 0)
        c = p->idle[--p->nidle];
    else
        p->created++;
    pthread_mutex_unlock(&p->mu);
    if (c == NULL) {
        c = xcalloc(1, sizeof(*c));
        c->h = curl_easy_init();
        if (c->h == NULL) {
            fprintf(stderr, "repo: curl_easy_init failed (out of memory)\n");
            abort();
        }
    } else {
        curl_easy_reset(c->h); /* keeps the connection, the DNS and TLS session caches */
    }
    c->background = background;
    apply_defaults(p, c);
    pthread_cond_broadcast(&p->freed); /* a background waiter may go now */
    return c->h;
}

CURL *xfer_get(xfer_pool *p)
{
    return get_handle(p, 0);
}

CURL *xfer_get_background(xfer_pool *p)
{
    return get_handle(p, 1);
}

void xfer_put(xfer_pool *p, CURL *h)
{
    if (h == NULL)
        return;
    conn *c = NULL;
    curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&c);
    pthread_mutex_lock(&p->mu);
    if (!c->background)
        p->fg_put_at = mono_sec();
    p->idle[p->nidle++] = c;
    pthread_cond_broadcast(&p->freed);
    pthread_mutex_unlock(&p->mu);
}

void xfer_throttle(xfer_pool *p, int direction, size_t n)
{
    if (p->o.bwlimit <= 0 || n == 0)
        return;
    double *next = &p->bw_next[direction == XFER_RECV];
    pthread_mutex_lock(&p->bw_mu);
    double now = mono_sec();
    /* Each call books the next n bytes' share of the line; idle time earns a burst of at
     * most a tenth of a second. */
    if (*next < now - 0.1)
        *next = now - 0.1;
    *next += (double)n / (double)p->o.bwlimit;
    double wait = *next - now;
    pthread_mutex_unlock(&p->bw_mu);
    if (wait > 0 && !xfer_cancelled()) {
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

int xfer_transient(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSH:
    case CURLE_AGAIN:
    case CURLE_SEND_FAIL_REWIND:
        return 1;
    default:
        return 0;
    }
}

int xfer_backoff(const xfer_pool *p, int attempt)
{
    if (attempt > p->o.retries || xfer_cancelled())
        return -1;
    long delay = p->o.retry_delay_ms;
    for (int i = 1; i < attempt && delay < MAX_DELAY_MS; i++)
        delay *= 2;
    if (delay > MAX_DELAY_MS)
        delay = MAX_DELAY_MS;
    /* Half fixed, half random: tries from many workers do not fall into step. */
    uint32_t r;
    random_bytes(&r, sizeof(r));
    long ms = delay / 2 + (long)(r % (uint32_t)(delay / 2 + 1));
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return 0;
}

/* ---- HTTP ---------------------------------------------------------------------------------- */

typedef struct io {
    http_req *r;
    xfer_pool *p;
    CURL *h;
    size_t sent;    /* bytes of the body sent so far */
    size_t err_len; /* bytes in r->err_body */
} io;

static size_t read_body(char *to, size_t size, size_t n, void *arg)
{
    io *x = arg;
    if (x->r->stream) {
        size_t got = xfer_stream_read(x->r->stream, to, size * n);
        if (got != CURL_READFUNC_ABORT)
            xfer_throttle(x->p, XFER_SEND, got);
        return got;
    }
    size_t left = x->r->body ? x->r->body_len - x->sent : 0;
    size_t want = size * n < left ? size * n : left;
    if (want == 0)
        return 0;
    xfer_throttle(x->p, XFER_SEND, want);
    memcpy(to, (const char *)x->r->body + x->sent, want);
    x->sent += want;
    return want;
}

/* curl rewinds the body when it must send it again (an auth challenge, a reused connection
 * the server had closed). */
static int seek_body(void *arg, curl_off_t off, int origin)
{
    io *x = arg;
    if (x->r->stream)
        return origin == SEEK_SET && off >= 0 && xfer_stream_rewind(x->r->stream, (uint64_t)off) == 0
                   ? CURL_SEEKFUNC_OK
                   : CURL_SEEKFUNC_CANTSEEK;
    if (origin != SEEK_SET || off < 0 || (size_t)off > x->r->body_len)
        return CURL_SEEKFUNC_CANTSEEK;
    x->sent = (size_t)off;
    return CURL_SEEKFUNC_OK;
}

static size_t write_body(char *data, size_t size, size_t n, void *arg)
{
    io *x = arg;
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) {
        xfer_throttle(x->p, XFER_RECV, len);
        if (x->r->out) {
            if (x->r->out->len + len > BUF_MAX)
                return 0; /* an object larger than anything ferry writes: refuse it */
            buf_append(x->r->out, data, len);
        }
    } else if (x->err_len < sizeof(x->r->err_body) - 1) {
        size_t room = sizeof(x->r->err_body) - 1 - x->err_len;
        size_t take = len < room ? len : room;
        memcpy(x->r->err_body + x->err_len, data, take);
        x->err_len += take;
        x->r->err_body[x->err_len] = '\0';
    }
    return len;
}

/* Copies the value of header line data[0..len) into out when its name is name. */
static void header_value(const char *data, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(data, name, nl) != 0)
        return;
    const char *v = data + nl;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vl = (size_t)(data + len - v);
    while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    if (vl < outlen) {
        memcpy(out, v, vl);
        out[vl] = '\0';
    }
}

static size_t read_header(char *data, size_t size, size_t n, void *arg)
{
    io *x = arg;
    size_t len = size * n;
    header_value(data, len, "ETag:", x->r->etag, sizeof(x->r->etag));
    header_value(data, len, "x-amz-storage-class:", x->r->amz_class, sizeof(x->r->amz_class));
    header_value(data, len, "x-amz-restore:", x->r->amz_restore, sizeof(x->r->amz_restore));
    return len;
}

static int retryable_status(long status)
{
    return status >= 500 || status == 429 || status == 408;
}

/* One try of the request on a borrowed handle; the curl result. */
static CURLcode http_once(xfer_pool *p, http_req *r, size_t out_start, char *cause, size_t causelen)
{
    CURL *h = r->stream && !xfer_stream_replaying(r->stream) ? xfer_get_background(p) : xfer_get(p);
    io x = {.r = r, .p = p, .h = h};
    if (r->out)
        r->out->len = out_start;
    if (r->stream)
        xfer_stream_rewind(r->stream, 0); /* a replay's next try starts over */
    r->status = 0;
    r->err_body[0] = '\0';
    r->etag[0] = '\0';
    r->amz_class[0] = '\0';
    r->amz_restore[0] = '\0';
    r->content_length = -1;

    struct curl_slist *headers = NULL;
    for (const struct curl_slist *s = r->headers; s; s = s->next)
        headers = curl_slist_append(headers, s->data);
    char range[96];
    if (r->len > 0 || r->off > 0) {
        if (r->len > 0)
            snprintf(range, sizeof(range), "Range: bytes=%llu-%llu", (unsigned long long)r->off,
                     (unsigned long long)(r->off + r->len - 1));
        else
            snprintf(range, sizeof(range), "Range: bytes=%llu-", (unsigned long long)r->off);
        headers = curl_slist_append(headers, range);
    }
    /* curl asks "Expect: 100-continue" before large bodies (an empty "Expect:" header would
     * drop that, but curl 7.88 then signs a header it does not send, which breaks SigV4);
     * a server that does not answer 100 costs this wait. */
    curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 300L);
    curl_easy_setopt(h, CURLOPT_URL, r->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, read_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
    const char *m = r->method ? r->method : "GET";
    if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(m, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, read_body);
        curl_easy_setopt(h, CURLOPT_READDATA, &x);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_body);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, &x);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
                         r->stream ? (curl_off_t)-1 : (curl_off_t)(r->body ? r->body_len : 0));
    } else if (r->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        if (strcmp(m, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m);
    } else if (strcmp(m, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m);
    }
    if (r->prepare)
        r->prepare(h, r->prepare_arg);

    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_off_t cl = -1;
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK)
        r->content_length = cl;
    if (rc != CURLE_OK) {
        conn *c = NULL;
        curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&c);
        snprintf(cause, causelen, "%s", c && c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
    }
    xfer_put(p, h);
    curl_slist_free_all(headers);
    return rc;
}

int http_do(xfer_pool *p, http_req *r, rerr *e)
{
    size_t out_start = r->out ? r->out->len : 0;
    const char *what = r->what ? r->what : r->method ? r->method : "GET";
    char cause[CURL_ERROR_SIZE + 64] = "";
    for (int attempt = 0;; attempt++) {
        CURLcode rc = http_once(p, r, out_start, cause, sizeof(cause));
        int transient = rc != CURLE_OK ? xfer_transient(rc) : retryable_status(r->status);
        if (rc == CURLE_OK && !transient)
            return 0;
        if (rc == CURLE_OK)
            snprintf(cause, sizeof(cause), "the server answered HTTP %ld", r->status);
        if (!transient)
            return rerr_set(e, E_FAIL, "%s: %s", what, cause);
        int once = r->stream && !xfer_stream_replaying(r->stream);
        if (!r->idempotent || once || xfer_backoff(p, attempt + 1) != 0) {
            if (r->out)
                r->out->len = out_start;
            return rerr_set(e, E_TRANSIENT, "%s: %s (%d %s)", what, cause, attempt + 1,
                            attempt ? "tries" : "try");
        }
    }
}

/* ---- streamed uploads ------------------------------------------------------------------------ */

struct xfer_stream {
    pthread_mutex_t mu;
    pthread_cond_t changed;
    uint8_t *ring;
    size_t cap, head, len; /* bytes ring[head..head+len) (mod cap) wait for the transfer */
    int closed;            /* no more data comes */
    int aborted;           /* the producer gave up: fail the transfer */
    int ended;             /* run returned */
    uint64_t taken;
    /* Every byte also goes to an unlinked local file (the page cache, not this process's
     * memory), so that a transfer cut by a transient failure is sent again from it at
     * finish, with the provider's retries: a server restart does not fail a push. */
    int spool_fd; /* -1: none (no temporary directory, or a write to it failed) */
    uint64_t spooled;
    int replay;          /* run is sending the spool again */
    uint64_t replay_off; /* where the replay reads next */
    xfer_stream_run run;
    void *arg;
    int rc;
    rerr err;
    pthread_t thread;
};

static void *stream_main(void *arg)
{
    xfer_stream *st = arg;
    rerr e = {0};
    int rc = st->run(st, st->arg, &e);
    pthread_mutex_lock(&st->mu);
    st->rc = rc;
    st->err = e;
    st->ended = 1;
    pthread_cond_broadcast(&st->changed);
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

xfer_stream *xfer_stream_start(size_t cap, xfer_stream_run run, void *arg)
{
    xfer_stream *st = xcalloc(1, sizeof(*st));
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->changed, NULL);
    st->ring = xmalloc(cap);
    st->cap = cap;
    st->run = run;
    st->arg = arg;
    const char *dir = getenv("TMPDIR");
    st->spool_fd = open(dir && dir[0] == '/' ? dir : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (pthread_create(&st->thread, NULL, stream_main, st) != 0) {
        fprintf(stderr, "repo: cannot start a thread\n");
        abort();
    }
    return st;
}

/* The error of a transfer that ended before the data did. */
static int ended_early(xfer_stream *st, rerr *e)
{
    if (st->rc != 0)
        rerr_merge(e, &st->err);
    else
        rerr_set(e, E_FAIL, "an upload ended before its data (a bug)");
    return -1;
}

/* Whether a failed transfer is sent again from the spool at finish. */
static int can_replay(const xfer_stream *st)
{
    return st->spool_fd >= 0 && st->rc != 0 && st->err.kind == E_TRANSIENT;
}

int xfer_stream_write(xfer_stream *st, const void *data, size_t len, rerr *e)
{
    const uint8_t *p = data;
    if (st->spool_fd >= 0) {
        size_t done = 0;
        while (done < len) {
            ssize_t n = pwrite(st->spool_fd, p + done, len - done, (off_t)(st->spooled + done));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            done += (size_t)n;
        }
        pthread_mutex_lock(&st->mu);
        if (done == len) {
            st->spooled += len;
        } else { /* a full disk: go on without a second chance */
            close(st->spool_fd);
            st->spool_fd = -1;
        }
        pthread_mutex_unlock(&st->mu);
    }
    pthread_mutex_lock(&st->mu);
    while (len > 0) {
        while (st->len == st->cap && !st->ended)
            pthread_cond_wait(&st->changed, &st->mu);
        if (st->ended && can_replay(st)) {
            len = 0; /* the spool has it, for the replay at finish */
            break;
        }
        if (st->ended) {
            int rc = ended_early(st, e);
            pthread_mutex_unlock(&st->mu);
            return rc;
        }
        size_t tail = (st->head + st->len) % st->cap;
        size_t room = st->cap - st->len;
        size_t step = len < room ? len : room;
        if (step > st->cap - tail)
            step = st->cap - tail;
        memcpy(st->ring + tail, p, step);
        st->len += step;
        p += step;
        len -= step;
        pthread_cond_broadcast(&st->changed);
    }
    pthread_mutex_unlock(&st->mu);
    return 0;
}

size_t xfer_stream_read(xfer_stream *st, char *to, size_t max)
{
    if (st->replay) { /* on the finishing thread, alone: no lock needed */
        if (xfer_cancelled())
            return CURL_READFUNC_ABORT;
        uint64_t left = st->spooled - st->replay_off;
        size_t want = left < max ? (size_t)left : max;
        ssize_t n = want ? pread(st->spool_fd, to, want, (off_t)st->replay_off) : 0;
        if (n < 0)
            return CURL_READFUNC_ABORT;
        st->replay_off += (uint64_t)n;
        st->taken = st->replay_off;
        return (size_t)n;
    }
    pthread_mutex_lock(&st->mu);
    while (st->len == 0 && !st->closed && !st->aborted)
        pthread_cond_wait(&st->changed, &st->mu);
    size_t got = 0;
    if (st->aborted || xfer_cancelled()) {
        got = CURL_READFUNC_ABORT;
    } else {
        while (got < max && st->len > 0) {
            size_t step = max - got < st->len ? max - got : st->len;
            if (step > st->cap - st->head)
                step = st->cap - st->head;
            memcpy(to + got, st->ring + st->head, step);
            st->head = (st->head + step) % st->cap;
            st->len -= step;
            got += step;
        }
        st->taken += got;
        pthread_cond_broadcast(&st->changed);
    }
    pthread_mutex_unlock(&st->mu);
    return got;
}

int xfer_stream_replaying(const xfer_stream *st)
{
    return st->replay;
}

int xfer_stream_rewind(xfer_stream *st, uint64_t off)
{
    if (st->replay && off <= st->spooled) {
        st->replay_off = off;
        st->taken = off;
        return 0;
    }
    return off == 0 && xfer_stream_taken(st) == 0 ? 0 : -1;
}

uint64_t xfer_stream_taken(xfer_stream *st)
{
    pthread_mutex_lock(&st->mu);
    uint64_t n = st->taken;
    pthread_mutex_unlock(&st->mu);
    return n;
}

/* Ends the data (aborting the transfer when abort is set), waits for run; its result. */
static int stream_end(xfer_stream *st, int abort_it, rerr *e)
{
    pthread_mutex_lock(&st->mu);
    st->closed = 1;
    st->aborted = abort_it;
    pthread_cond_broadcast(&st->changed);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->thread, NULL);
    if (!abort_it && can_replay(st)) {
        /* The streamed transfer failed on the way: send it all again from the spool. */
        st->replay = 1;
        st->replay_off = 0;
        rerr again = {0};
        st->rc = st->run(st, st->arg, &again);
        st->err = again;
    }
    int rc = st->rc;
    if (rc == 0 && !abort_it && !st->replay && st->len > 0)
        rc = rerr_set(e, E_FAIL, "an upload ended with %zu bytes not sent (a bug)", st->len);
    else if (rc != 0 && e)
        rerr_merge(e, &st->err);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->changed);
    if (st->spool_fd >= 0)
        close(st->spool_fd);
    free(st->ring);
    free(st);
    return rc == 0 ? 0 : -1;
}

int xfer_stream_finish(xfer_stream *st, rerr *e)
{
    return stream_end(st, 0, e);
}

void xfer_stream_abort(xfer_stream *st)
{
    if (st)
        stream_end(st, 1, NULL);
}

/* ---- URLs ---------------------------------------------------------------------------------- */

static char *escape(const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = xmalloc(3 * n + 1), *o = out;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (isalnum(*c) || *c == '-' || *c == '.' || *c == '_' || *c == '~' ||
            (keep_slash && *c == '/')) {
            *o++ = (char)*c;
        } else {
            *o++ = '%';
            *o++ = hex[*c >> 4];
            *o++ = hex[*c & 15];
        }
    }
    *o = '\0';
    return out;
}

char *url_path_escape(const char *s)
{
    return escape(s, 1);
}

char *url_query_escape(const char *s)
{
    return escape(s, 0);
}

/* ---- XML ----------------------------------------------------------------------------------- */

typedef struct walk {
    xml_cb cb;
    void *arg;
    char path[XML_PATH_MAX];
    size_t plen;
    size_t lens[64]; /* path length before each open element */
    int depth;
    int overflow; /* elements deeper than lens[] or paths longer than path[] */
    char *text;
    size_t tlen;
} walk;

static void XMLCALL on_start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    walk *w = arg;
    const char *local = strrchr(name, ' ');
    local = local ? local + 1 : name;
    size_t ln = strlen(local);
    w->tlen = 0;
    if (w->depth >= 64 || w->plen + ln + 2 > sizeof(w->path)) {
        w->overflow++;
        return;
    }
    w->lens[w->depth++] = w->plen;
    if (w->plen)
        w->path[w->plen++] = '/';
    memcpy(w->path + w->plen, local, ln + 1);
    w->plen += ln;
}

static void XMLCALL on_end(void *arg, const XML_Char *name)
{
    (void)name;
    walk *w = arg;
    if (w->overflow) {
        w->overflow--;
        return;
    }
    size_t a = 0, b = w->tlen;
    while (a < b && isspace((unsigned char)w->text[a]))
        a++;
    while (b > a && isspace((unsigned char)w->text[b - 1]))
        b--;
    w->text[b] = '\0';
    w->cb(w->arg, w->path, w->text + a);
    w->tlen = 0;
    w->plen = w->lens[--w->depth];
    w->path[w->plen] = '\0';
}

static void XMLCALL on_text(void *arg, const XML_Char *s, int len)
{
    walk *w = arg;
    size_t take = (size_t)len;
    if (w->tlen + take > XML_TEXT_MAX)
        take = XML_TEXT_MAX - w->tlen;
    memcpy(w->text + w->tlen, s, take);
    w->tlen += take;
}

int xml_walk(const char *xml, size_t len, xml_cb cb, void *arg)
{
    if (len > (size_t)1 << 30)
        return -1;
    XML_Parser parser = XML_ParserCreateNS(NULL, ' ');
    if (parser == NULL)
        return -1;
    walk w = {.cb = cb, .arg = arg, .text = xmalloc(XML_TEXT_MAX + 1)};
    XML_SetUserData(parser, &w);
    XML_SetElementHandler(parser, on_start, on_end);
    XML_SetCharacterDataHandler(parser, on_text);
    int rc = XML_Parse(parser, xml, (int)len, 1) == XML_STATUS_OK ? 0 : -1;
    XML_ParserFree(parser);
    free(w.text);
    return rc;
}
