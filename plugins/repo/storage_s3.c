/*
 * The "s3" storage provider: a bucket (and optionally a key prefix inside it) on Amazon S3
 * or any S3-compatible server, through libcurl and the shared transfer layer (xfer.h).
 *
 * Vault (besides the transfer settings of xfer.h: connections, bwlimit, timeout, ...):
 *   "bucket"             required
 *   "access_key_id", "secret_access_key"   required; "session_token" optional
 *   "region"             default "us-east-1"
 *   "endpoint"           default https://s3.REGION.amazonaws.com; http:// only for loopback
 *                        hosts unless "insecure_http" is true
 *   "prefix"             keys live under "PREFIX/" in the bucket (default: the bucket's root)
 *   "url_style"          "virtual" (bucket.host/key) or "path" (host/bucket/key); default
 *                        virtual for amazonaws.com endpoints, path for the others
 *
 * Requests are signed with AWS SigV4 by libcurl (CURLOPT_AWS_SIGV4). libcurl 7.88 does not
 * add x-amz-content-sha256, so every request carries the hex SHA-256 of its body (all bodies
 * are in memory), signed with the rest.
 *
 * Every object is written with one PUT, which S3 makes atomic and durable when it answers
 * 200. No multipart upload: packs are at most ~16 MiB and index files tens of MiB, far below
 * the 5 GB limit of a single PUT, so the streaming put of storage.h is left to the default
 * (the object is buffered in memory and handed to put).
 *
 * Exclusive puts send "If-None-Match: *" (S3 answers 412 when the key exists) and look with
 * HEAD first, for servers that ignore the header. When a PUT that was tried more than once
 * meets an existing object, the object is read back: equal bytes mean an earlier try of ours
 * arrived although its answer was lost (sealed objects carry random nonces, so nobody else
 * writes the same bytes).
 *
 * The provider is thread-safe: its state is read-only after open, and every request borrows
 * a handle from the pool. The secret and the session token reach libcurl only; no message
 * holds them, nor the Authorization header or a server's error body beyond its <Code>.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "plain_http.h"
#include "storage.h"
#include "xfer.h"

#define S3_LIST_MAX_PAGES 100000 /* a bound on pagination (100 M keys), against a loop */

typedef struct s3 {
    xfer_pool *pool;
    char *endpoint; /* as configured, for messages */
    char *bucket;
    char *base;       /* URL of the bucket's root without a trailing '/' */
    const char *root; /* what follows base in the bucket's own URL: "/" (virtual) or "" */
    char *prefix;     /* "" or "dir/sub/" */
    char *sigv4;      /* "aws:amz:REGION:s3" */
    char *access_key_id;
    char *secret;
    char *token_header; /* "x-amz-security-token: ..." or NULL */
    char storage_class[32]; /* of data packs; "" for the bucket's default (STANDARD) */
    int cold;               /* that class must be restored before a read (GLACIER, DEEP_ARCHIVE) */
    long thaw_timeout;      /* seconds a read waits for a restore */
    int thaw_days;          /* days a restored copy stays readable */
    char thaw_tier[16];     /* "Standard", "Bulk" or "Expedited" */
} s3;

/* The storage classes S3 knows; cold ones must be restored (thawed) before a read. */
static const struct {
    const char *name;
    int cold;
} s3_classes[] = {
    {"STANDARD", 0},   {"REDUCED_REDUNDANCY", 0}, {"STANDARD_IA", 0},  {"ONEZONE_IA", 0},
    {"INTELLIGENT_TIERING", 0}, {"GLACIER_IR", 0}, {"GLACIER", 1},     {"DEEP_ARCHIVE", 1},
};

/* The storage class a put of key asks for: the vault's for data packs, none for the rest
 * (indexes, manifests, locks, the config stay STANDARD, so nothing but a pull reads cold). */
static const char *class_of(const s3 *s, const char *key, unsigned flags)
{
    return s->storage_class[0] && strncmp(key, "data/", 5) == 0 && !(flags & STOR_PUT_META)
               ? s->storage_class
               : NULL;
}

/* One request: what http_do takes and answers, and the signing state its prepare needs. */
typedef struct s3_call {
    http_req r;
    const s3 *s;
    struct curl_slist *headers; /* the request's complete header list */
    int tries;                  /* how many times http_do sent it */
} s3_call;

/* ---- opening ----------------------------------------------------------------------------- */

static void s3_free(s3 *s)
{
    if (s == NULL)
        return;
    xfer_pool_free(s->pool);
    if (s->secret)
        memset(s->secret, 0, strlen(s->secret));
    if (s->token_header)
        memset(s->token_header, 0, strlen(s->token_header));
    free(s->endpoint);
    free(s->bucket);
    free(s->base);
    free(s->prefix);
    free(s->sigv4);
    free(s->access_key_id);
    free(s->secret);
    free(s->token_header);
    free(s);
}

static const char *vault_str(const json_t *vault, const char *key)
{
    const char *v = json_string_value(json_object_get(vault, key));
    return v && v[0] ? v : NULL;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Bucket names S3 accepts in a host name (virtual style) or in a path (any style). */
static int valid_bucket(const char *b, int in_host)
{
    size_t n = strlen(b);
    if (n < 3 || n > 255 || !isalnum((unsigned char)b[0]))
        return 0;
    for (const char *p = b; *p; p++) {
        int ok = islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' ||
                 *p == '.' || (!in_host && (isupper((unsigned char)*p) || *p == '_'));
        if (!ok)
            return 0;
    }
    return !in_host || n <= 63;
}

/* "/a//b/" → "a/b/"; "" stays "". Caller frees. */
static char *normal_prefix(const char *p)
{
    char *out = xmalloc(strlen(p) + 2), *o = out;
    for (; *p; p++)
        if (*p != '/' || (o > out && o[-1] != '/'))
            *o++ = *p;
    if (o > out && o[-1] != '/')
        *o++ = '/';
    *o = '\0';
    return out;
}

/*
 * Builds s->base from the endpoint: "scheme://host[:port][/path]/bucket" (path style) or
 * "scheme://bucket.host[:port][/path]" (virtual-host style). 0, or -1 with e set.
 */
static int build_base(s3 *s, const json_t *vault, rerr *e)
{
    int rc = -1;
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *user = NULL, *query = NULL;
    CURLU *u = curl_url();
    if (u == NULL || curl_url_set(u, CURLUPART_URL, s->endpoint, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        rerr_set(e, E_INVALID, "s3 storage vault: \"endpoint\" %s is not a URL", s->endpoint);
        goto out;
    }
    curl_url_get(u, CURLUPART_PORT, &port, 0);
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    curl_url_get(u, CURLUPART_USER, &user, 0);
    curl_url_get(u, CURLUPART_QUERY, &query, 0);
    if (user || query) {
        rerr_set(e, E_INVALID,
                 "s3 storage vault: \"endpoint\" must be scheme://host[:port][/path] without "
                 "credentials or a query; the keys go in \"access_key_id\" and "
                 "\"secret_access_key\"");
        goto out;
    }
    int https = strcmp(scheme, "https") == 0;
    if (!https && strcmp(scheme, "http") != 0) {
        rerr_set(e, E_INVALID, "s3 storage vault: \"endpoint\" must be an http:// or https:// URL");
        goto out;
    }
    if (!https && !plain_http_loopback(host) &&
        !json_is_true(json_object_get(vault, "insecure_http"))) {
        rerr_set(e, E_INVALID,
                 "s3 storage vault: \"endpoint\" %s is plain http to another machine, which "
                 "exposes the data and the session token: use https, or set "
                 "\"insecure_http\": true",
                 s->endpoint);
        goto out;
    }
    const char *style = vault_str(vault, "url_style");
    int virtual_style;
    if (style == NULL)
        virtual_style = ends_with(host, "amazonaws.com") && strchr(s->bucket, '.') == NULL;
    else if (strcmp(style, "virtual") == 0 || strcmp(style, "path") == 0)
        virtual_style = style[0] == 'v';
    else {
        rerr_set(e, E_INVALID, "s3 storage vault: \"url_style\" must be \"virtual\" or \"path\"");
        goto out;
    }
    if (!valid_bucket(s->bucket, virtual_style)) {
        rerr_set(e, E_INVALID, "s3 storage vault: \"bucket\" \"%s\" is not a valid bucket name%s",
                 s->bucket,
                 virtual_style ? " for virtual-host style (3-63 of a-z 0-9 . -); use "
                                 "\"url_style\": \"path\" for other names"
                               : "");
        goto out;
    }
    size_t pl = path ? strlen(path) : 0;
    while (pl > 0 && path[pl - 1] == '/')
        pl--;
    char portpart[16] = "";
    if (port)
        snprintf(portpart, sizeof(portpart), ":%s", port);
    s->root = virtual_style ? "/" : "";
    if (virtual_style)
        s->base = xasprintf("%s://%s.%s%s%.*s", scheme, s->bucket, host, portpart, (int)pl,
                            path ? path : "");
    else
        s->base = xasprintf("%s://%s%s%.*s/%s", scheme, host, portpart, (int)pl, path ? path : "",
                            s->bucket);
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(user);
    curl_free(query);
    curl_url_cleanup(u);
    return rc;
}

/* "storage_class", "thaw_timeout" and "thaw_days"; 0, or -1 with e set. */
static int read_cold_settings(s3 *s, const json_t *vault, rerr *e)
{
    const char *cls = vault_str(vault, "storage_class");
    s->thaw_timeout = 43200;
    s->thaw_days = 1;
    if (cls) {
        size_t i = 0, n = sizeof(s3_classes) / sizeof(s3_classes[0]);
        while (i < n && strcmp(s3_classes[i].name, cls) != 0)
            i++;
        if (i == n)
            return rerr_set(e, E_INVALID,
                            "s3 storage vault: \"storage_class\" \"%.40s\" is not one of STANDARD, "
                            "REDUCED_REDUNDANCY, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, "
                            "GLACIER_IR, GLACIER, DEEP_ARCHIVE",
                            cls);
        if (strcmp(cls, "STANDARD") != 0)
            snprintf(s->storage_class, sizeof(s->storage_class), "%s", cls);
        s->cold = s3_classes[i].cold;
    }
    const json_t *t = json_object_get(vault, "thaw_timeout");
    if (t && !json_is_null(t)) {
        if (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > 604800)
            return rerr_set(e, E_INVALID,
                            "s3 storage vault: \"thaw_timeout\" must be seconds from 1 to 604800 "
                            "(a week)");
        s->thaw_timeout = (long)json_integer_value(t);
    }
    const char *tier = vault_str(vault, "thaw_tier");
    if (tier && strcmp(tier, "Standard") != 0 && strcmp(tier, "Bulk") != 0 &&
        strcmp(tier, "Expedited") != 0)
        return rerr_set(e, E_INVALID,
                        "s3 storage vault: \"thaw_tier\" must be \"Standard\", \"Bulk\" or "
                        "\"Expedited\"");
    snprintf(s->thaw_tier, sizeof(s->thaw_tier), "%s", tier ? tier : "Standard");
    const json_t *d = json_object_get(vault, "thaw_days");
    if (d && !json_is_null(d)) {
        if (!json_is_integer(d) || json_integer_value(d) < 1 || json_integer_value(d) > 365)
            return rerr_set(e, E_INVALID,
                            "s3 storage vault: \"thaw_days\" must be days from 1 to 365");
        s->thaw_days = (int)json_integer_value(d);
    }
    return 0;
}

static void *s3_open(const json_t *vault, rerr *e)
{
    xfer_opts o;
    if (xfer_opts_read(vault, "s3", &o, e) != 0)
        return NULL;
    const char *bucket = vault_str(vault, "bucket");
    const char *akid = vault_str(vault, "access_key_id");
    const char *secret = vault_str(vault, "secret_access_key");
    if (bucket == NULL || akid == NULL || secret == NULL) {
        rerr_set(e, E_INVALID,
                 "an s3 storage's vault needs \"bucket\", \"access_key_id\" and "
                 "\"secret_access_key\"");
        return NULL;
    }
    const char *region = vault_str(vault, "region");
    if (region == NULL)
        region = "us-east-1";
    for (const char *p = region; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-') {
            rerr_set(e, E_INVALID, "s3 storage vault: \"region\" \"%s\" is not a region name",
                     region);
            return NULL;
        }
    if (strchr(akid, ':') || strchr(akid, '\n') || strchr(secret, '\n')) {
        rerr_set(e, E_INVALID,
                 "s3 storage vault: \"access_key_id\" or \"secret_access_key\" "
                 "holds a character no AWS key has (':' or a line break)");
        return NULL;
    }
    const char *token = vault_str(vault, "session_token");
    if (token && (strchr(token, '\n') || strchr(token, '\r'))) {
        rerr_set(e, E_INVALID, "s3 storage vault: \"session_token\" holds a line break");
        return NULL;
    }
    s3 *s = xcalloc(1, sizeof(*s));
    s->bucket = xstrdup(bucket);
    const char *endpoint = vault_str(vault, "endpoint");
    s->endpoint = endpoint ? xstrdup(endpoint) : xasprintf("https://s3.%s.amazonaws.com", region);
    s->prefix = normal_prefix(vault_str(vault, "prefix") ? vault_str(vault, "prefix") : "");
    s->sigv4 = xasprintf("aws:amz:%s:s3", region);
    s->access_key_id = xstrdup(akid);
    s->secret = xstrdup(secret);
    s->token_header = token ? xasprintf("x-amz-security-token: %s", token) : NULL;
    if (read_cold_settings(s, vault, e) != 0 || build_base(s, vault, e) != 0) {
        s3_free(s);
        return NULL;
    }
    s->pool = xfer_pool_new(&o);
    return s;
}

static void s3_close(void *self)
{
    s3_free(self);
}

/* ---- requests ----------------------------------------------------------------------------- */

/* Signs the request on its handle (libcurl computes the SigV4 signature when it sends). */
static void s3_sign(CURL *h, void *arg)
{
    s3_call *c = arg;
    c->tries++;
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, c->s->sigv4);
    curl_easy_setopt(h, CURLOPT_USERNAME, c->s->access_key_id);
    curl_easy_setopt(h, CURLOPT_PASSWORD, c->s->secret);
}

/* The object URL of key (relative to the vault's prefix); caller frees. */
static char *object_url(const s3 *s, const char *key)
{
    char *full = xasprintf("%s%s", s->prefix, key);
    char *esc = url_path_escape(full);
    char *url = xasprintf("%s/%s", s->base, esc);
    free(esc);
    free(full);
    return url;
}

/* The headers every request carries: the body's SHA-256 and the session token. */
static struct curl_slist *base_headers(const s3 *s, const void *body, size_t len)
{
    uint8_t digest[ID_LEN];
    char hex[HEX_LEN + 1];
    sha256(body ? body : "", body ? len : 0, digest);
    hex_encode(digest, ID_LEN, hex);
    char line[128];
    snprintf(line, sizeof(line), "x-amz-content-sha256: %s", hex);
    struct curl_slist *h = curl_slist_append(NULL, line);
    if (s->token_header)
        h = curl_slist_append(h, s->token_header);
    return h;
}

/*
 * Sends c->r (method, url, body, out and what filled in) with the extra headers (taken over
 * and freed here). Returns 0 with c->r's outputs filled (any status) and c->tries set, or -1
 * with e set when no answer came even after the retries.
 */
static int s3_request(const s3 *s, s3_call *c, struct curl_slist *extra, rerr *e)
{
    c->s = s;
    c->headers = base_headers(s, c->r.body, c->r.body_len);
    for (struct curl_slist *x = extra; x; x = x->next)
        c->headers = curl_slist_append(c->headers, x->data);
    curl_slist_free_all(extra);
    c->r.headers = c->headers;
    c->r.prepare = s3_sign;
    c->r.prepare_arg = c;
    /* Every request may be repeated: GET, HEAD, DELETE, and PUTs of whole objects (for an
     * exclusive PUT, put tells a retry's own earlier success from somebody else's object). */
    c->r.idempotent = 1;
    int rc = http_do(s->pool, &c->r, e);
    curl_slist_free_all(c->headers);
    c->headers = c->r.headers = NULL;
    return rc;
}

/* S3's <Code> from an error body. */
typedef struct code_walk {
    char code[64];
} code_walk;

static void on_error_elem(void *arg, const char *path, const char *text)
{
    code_walk *w = arg;
    if (strcmp(path, "Error/Code") == 0)
        snprintf(w->code, sizeof(w->code), "%s", text);
}

static void error_code(const http_req *r, char *code, size_t codelen)
{
    code_walk w = {""};
    if (r->err_body[0])
        xml_walk(r->err_body, strlen(r->err_body), on_error_elem, &w);
    /* Codes are identifiers; anything else is not echoed. */
    for (char *p = w.code; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            *p = '\0';
    snprintf(code, codelen, "%s", w.code);
}

/* What to tell the operator for an S3 error <Code>. */
static const struct {
    const char *code;
    int kind;
    const char *hint; /* follows "WHAT: STATUS CODE: " */
} s3_errors[] = {
    {"SignatureDoesNotMatch", E_INVALID,
     "the server rejected the request's signature: check \"secret_access_key\" (and "
     "\"region\") in the storage's vault"},
    {"InvalidAccessKeyId", E_INVALID,
     "the server does not know the access key: check \"access_key_id\" in the storage's vault"},
    {"AccessDenied", E_INVALID,
     "give the key of \"access_key_id\" s3:GetObject, s3:PutObject, s3:DeleteObject and "
     "s3:ListBucket on the bucket"},
    {"AllAccessDisabled", E_INVALID, "access to the bucket is disabled"},
    {"InvalidToken", E_INVALID,
     "the session token was refused: renew \"session_token\" (with its key pair) in the "
     "storage's vault"},
    {"ExpiredToken", E_INVALID,
     "the session token has expired: renew \"session_token\" (with its key pair) in the "
     "storage's vault"},
    {"RequestTimeTooSkewed", E_TRANSIENT,
     "this machine's clock is too far off the server's: fix the clock (NTP)"},
    {"AuthorizationHeaderMalformed", E_INVALID,
     "the bucket is in another region: set \"region\" (or \"endpoint\") in the storage's "
     "vault to the bucket's"},
    {"InvalidObjectState", E_TRANSIENT,
     "the object is in a cold storage class (GLACIER, DEEP_ARCHIVE) and not restored: "
     "repo_pull restores (thaws) the packs it needs first, waiting up to the vault's "
     "\"thaw_timeout\""},
    {"PermanentRedirect", E_INVALID,
     "the bucket is in another region: set \"region\" (or \"endpoint\") in the storage's "
     "vault to the bucket's"},
};

/*
 * Turns an unexpected status into an error naming what to fix. Returns ST_ERROR. The
 * server's error body is only read for its <Code>: AWS echoes the canonical request in some
 * error bodies, and that holds the session token.
 */
static int s3_fail(const s3 *s, const http_req *r, rerr *e)
{
    char code[64];
    error_code(r, code, sizeof(code));
    const char *sep = code[0] ? " " : "";
    if (strcmp(code, "NoSuchBucket") == 0)
        return rerr_set(e, E_INVALID,
                        "%s: bucket %s does not exist at %s: create it, or fix \"bucket\" or "
                        "\"endpoint\" in the storage's vault",
                        r->what, s->bucket, s->endpoint);
    for (size_t i = 0; i < sizeof(s3_errors) / sizeof(s3_errors[0]); i++)
        if (strcmp(code, s3_errors[i].code) == 0)
            return rerr_set(e, s3_errors[i].kind, "%s: %ld %s: %s", r->what, r->status, code,
                            s3_errors[i].hint);
    if (r->status == 301 || r->status == 307)
        return rerr_set(e, E_INVALID,
                        "%s: %ld%s%s: bucket %s is in another region: set \"region\" (or "
                        "\"endpoint\") in the storage's vault to the bucket's",
                        r->what, r->status, sep, code, s->bucket);
    if (r->status == 403)
        return rerr_set(e, E_INVALID,
                        "%s: 403%s%s: check \"access_key_id\", \"secret_access_key\" and the "
                        "key's permissions on bucket %s",
                        r->what, sep, code, s->bucket);
    /* 409: a conflicting request in flight (S3's ConditionalRequestConflict). */
    int kind = r->status >= 500 || r->status == 429 || r->status == 408 || r->status == 409
                   ? E_TRANSIENT
                   : E_FAIL;
    return rerr_set(e, kind, "%s: the server answered HTTP %ld%s%s", r->what, r->status, sep, code);
}

/* ---- operations --------------------------------------------------------------------------- */

static int s3_exists(void *self, const char *key, uint64_t *size, rerr *e)
{
    const s3 *s = self;
    char *url = object_url(s, key);
    char *what = xasprintf("HEAD s3://%s/%s%s", s->bucket, s->prefix, key);
    s3_call c = {.r = {.method = "HEAD", .url = url, .what = what}};
    int rc = s3_request(s, &c, NULL, e);
    if (rc == 0) {
        if (c.r.status == 200) {
            if (size)
                *size = c.r.content_length >= 0 ? (uint64_t)c.r.content_length : 0;
            rc = ST_OK;
        } else if (c.r.status == 404) {
            rc = ST_NOTFOUND;
        } else {
            rc = s3_fail(s, &c.r, e);
        }
    }
    free(what);
    free(url);
    return rc;
}

/* Reads range [off, off+len) (len 0: to the end) of key, appended to out. See stor_ops.get. */
static int s3_get(void *self, const char *key, uint64_t off, uint64_t len, buf *out, rerr *e)
{
    const s3 *s = self;
    char *url = object_url(s, key);
    char *what = xasprintf("GET s3://%s/%s%s", s->bucket, s->prefix, key);
    int ranged = off > 0 || len > 0;
    size_t start = out->len;
    s3_call c = {
        .r = {.method = "GET", .url = url, .out = out, .off = off, .len = len, .what = what}};
    int rc = s3_request(s, &c, NULL, e);
    if (rc != 0)
        goto out;
    if (c.r.status == 404) {
        char code[64];
        error_code(&c.r, code, sizeof(code));
        rc = strcmp(code, "NoSuchBucket") == 0 ? s3_fail(s, &c.r, e) : ST_NOTFOUND;
        goto out;
    }
    if (c.r.status == 416) {
        rc = rerr_set(e, E_CORRUPT, "%s: the object is shorter than offset %llu", what,
                      (unsigned long long)off);
        goto out;
    }
    if (c.r.status != 200 && c.r.status != 206) {
        rc = s3_fail(s, &c.r, e);
        goto out;
    }
    uint64_t got = out->len - start;
    if (c.r.status == 200 && ranged) {
        /* The server sent the whole object: keep the range. */
        uint64_t want = len ? len : got > off ? got - off : 0;
        if (off + want > got) {
            rc = rerr_set(e, E_CORRUPT, "%s: %llu bytes, shorter than expected (%llu)", what,
                          (unsigned long long)got, (unsigned long long)(off + want));
            goto out;
        }
        memmove(out->data + start, out->data + start + off, want);
        out->len = start + want;
    } else if (len > 0 && got != len) {
        rc = rerr_set(e, E_CORRUPT, "%s: %llu bytes at offset %llu, expected %llu", what,
                      (unsigned long long)got, (unsigned long long)off, (unsigned long long)len);
        goto out;
    }
    rc = ST_OK;
out:
    if (rc != ST_OK)
        out->len = start;
    free(what);
    free(url);
    return rc;
}

/* Non-zero when key holds exactly data (an earlier try of our own exclusive put). */
static int holds_bytes(const s3 *s, const char *key, const void *data, size_t len)
{
    buf got = {0};
    rerr ignored = {0};
    int same = s3_get((void *)s, key, 0, 0, &got, &ignored) == ST_OK && got.len == len &&
               (len == 0 || memcmp(got.data, data, len) == 0);
    buf_free(&got);
    return same;
}

static int s3_put(void *self, const char *key, const void *data, size_t len, unsigned flags,
                  rerr *e)
{
    const s3 *s = self;
    int exclusive = (flags & STOR_PUT_EXCLUSIVE) != 0;
    /* STOR_PUT_NOSYNC changes nothing: S3 answers once the object is stored. */
    if (exclusive) {
        int rc = s3_exists(self, key, NULL, e);
        if (rc != ST_NOTFOUND)
            return rc == ST_OK ? ST_EXISTS : rc;
    }
    char *url = object_url(s, key);
    char *what = xasprintf("PUT s3://%s/%s%s", s->bucket, s->prefix, key);
    struct curl_slist *extra = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    if (exclusive)
        extra = curl_slist_append(extra, "If-None-Match: *");
    char class_header[80];
    if (class_of(s, key, flags)) {
        snprintf(class_header, sizeof(class_header), "x-amz-storage-class: %s",
                 class_of(s, key, flags));
        extra = curl_slist_append(extra, class_header);
    }
    s3_call c = {
        .r = {
            .method = "PUT", .url = url, .body = data ? data : "", .body_len = len, .what = what}};
    int rc = s3_request(s, &c, extra, e);
    if (rc != 0)
        goto out;
    if (c.r.status == 200 || c.r.status == 201 || c.r.status == 204)
        rc = ST_OK;
    else if (exclusive && c.r.status == 412)
        rc = c.tries > 1 && holds_bytes(s, key, data, len) ? ST_OK : ST_EXISTS;
    else
        rc = s3_fail(s, &c.r, e);
out:
    free(what);
    free(url);
    return rc;
}

static int s3_del(void *self, const char *key, rerr *e)
{
    const s3 *s = self;
    char *url = object_url(s, key);
    char *what = xasprintf("DELETE s3://%s/%s%s", s->bucket, s->prefix, key);
    s3_call c = {.r = {.method = "DELETE", .url = url, .what = what}};
    int rc = s3_request(s, &c, NULL, e);
    if (rc == 0) {
        char code[64];
        error_code(&c.r, code, sizeof(code));
        /* S3 answers 204 whether or not the key existed. */
        if (c.r.status == 200 || c.r.status == 204 ||
            (c.r.status == 404 && strcmp(code, "NoSuchBucket") != 0))
            rc = ST_OK;
        else
            rc = s3_fail(s, &c.r, e);
    }
    free(what);
    free(url);
    return rc;
}

/* ---- listing ------------------------------------------------------------------------------- */

typedef struct list_entry {
    char *key;
    uint64_t size;
} list_entry;

/* One page of ListObjectsV2, as the XML walk collects it. */
typedef struct list_page {
    list_entry *entries;
    size_t n, cap;
    char *key; /* of the <Contents> being read */
    uint64_t size;
    int truncated;
    char *next_token;
} list_page;

static void on_list_elem(void *arg, const char *path, const char *text)
{
    list_page *pg = arg;
    if (strcmp(path, "ListBucketResult/Contents/Key") == 0) {
        free(pg->key);
        pg->key = xstrdup(text);
    } else if (strcmp(path, "ListBucketResult/Contents/Size") == 0) {
        pg->size = strtoull(text, NULL, 10);
    } else if (strcmp(path, "ListBucketResult/Contents") == 0 && pg->key) {
        if (pg->n == pg->cap) {
            pg->cap = pg->cap ? pg->cap * 2 : 256;
            pg->entries = xrealloc(pg->entries, pg->cap * sizeof(*pg->entries));
        }
        pg->entries[pg->n++] = (list_entry){pg->key, pg->size};
        pg->key = NULL;
        pg->size = 0;
    } else if (strcmp(path, "ListBucketResult/IsTruncated") == 0) {
        pg->truncated = strcmp(text, "true") == 0;
    } else if (strcmp(path, "ListBucketResult/NextContinuationToken") == 0) {
        free(pg->next_token);
        pg->next_token = xstrdup(text);
    }
}

static void page_free(list_page *pg)
{
    for (size_t i = 0; i < pg->n; i++)
        free(pg->entries[i].key);
    free(pg->entries);
    free(pg->key);
    free(pg->next_token);
    memset(pg, 0, sizeof(*pg));
}

/* The ListObjectsV2 URL: query parameters sorted by name, as SigV4 needs with libcurl. */
static char *list_url(const s3 *s, const char *full_prefix, const char *token)
{
    char *p = url_query_escape(full_prefix);
    char *url;
    if (token) {
        char *t = url_query_escape(token);
        url = xasprintf("%s%s?continuation-token=%s&list-type=2&prefix=%s", s->base, s->root, t, p);
        free(t);
    } else {
        url = xasprintf("%s%s?list-type=2&prefix=%s", s->base, s->root, p);
    }
    free(p);
    return url;
}

/*
 * Reports the page's keys relative to the vault's prefix, skipping hidden names (a last
 * component starting with '.'). Returns 1 when cb asked to stop.
 */
static int report_page(const s3 *s, const list_page *pg, int temporaries, stor_list_cb cb,
                       void *arg)
{
    size_t plen = strlen(s->prefix);
    for (size_t i = 0; i < pg->n; i++) {
        const char *key = pg->entries[i].key;
        if (strncmp(key, s->prefix, plen) != 0)
            continue;
        key += plen;
        const char *last = strrchr(key, '/');
        last = last ? last + 1 : key;
        int tmp = strncmp(last, ".tmp-", 5) == 0;
        if ((last[0] == '.' && !(temporaries && tmp)) || last[0] == '\0' || (temporaries && !tmp))
            continue;
        if (cb(arg, key, pg->entries[i].size) != 0)
            return 1;
    }
    return 0;
}

/* Lists the objects under prefix; with temporaries, only the temporary ones (".tmp-*"). */
static int list_objects(const s3 *s, const char *prefix, int temporaries, stor_list_cb cb,
                        void *arg, rerr *e)
{
    char *full = xasprintf("%s%s", s->prefix, prefix);
    char *what = xasprintf("LIST s3://%s/%s", s->bucket, full);
    char *token = NULL;
    int rc = ST_OK;
    for (int page = 0; page < S3_LIST_MAX_PAGES; page++) {
        buf body = {0};
        char *url = list_url(s, full, token);
        s3_call c = {.r = {.method = "GET", .url = url, .out = &body, .what = what}};
        list_page pg = {0};
        if (s3_request(s, &c, NULL, e) != 0) {
            rc = ST_ERROR;
        } else if (c.r.status != 200) {
            rc = s3_fail(s, &c.r, e);
        } else if (xml_walk((const char *)body.data, body.len, on_list_elem, &pg) != 0) {
            rc = rerr_set(e, E_TRANSIENT, "%s: the server's listing is not well-formed XML", what);
        } else if (pg.truncated && (pg.next_token == NULL || pg.next_token[0] == '\0')) {
            rc = rerr_set(e, E_FAIL, "%s: a truncated listing without a continuation token", what);
        }
        int stop = rc == ST_OK && report_page(s, &pg, temporaries, cb, arg);
        free(token);
        token = pg.truncated && rc == ST_OK ? xstrdup(pg.next_token) : NULL;
        page_free(&pg);
        buf_free(&body);
        free(url);
        if (rc != ST_OK || stop || token == NULL)
            break;
    }
    if (rc == ST_OK && token)
        rc = rerr_set(e, E_FAIL, "%s: more than %d pages of keys", what, S3_LIST_MAX_PAGES);
    free(token);
    free(what);
    free(full);
    return rc;
}

static int s3_list(void *self, const char *prefix, stor_list_cb cb, void *arg, rerr *e)
{
    return list_objects(self, prefix, 0, cb, arg, e);
}

/* ---- streamed puts: multipart uploads ------------------------------------------------------ */

/*
 * A pack is uploaded while it is written: parts of PART_SIZE (S3's minimum but for the last)
 * go to a multipart upload under a temporary key ("data/.tmp-TIME-RANDOM"), one part on its
 * way on a thread of its own while the next one fills, so a stream holds two parts in memory.
 * The pack's name (the hash of its trailer) is known only at the end, and a multipart upload
 * cannot change its key: commit copies the temporary object onto the pack's key on the
 * server (CopyObject, which also gives it the vault's storage class), checks its size, and
 * deletes the temporary. A pack smaller than a part (the last of a push) skips all this: it
 * is PUT under its key at commit. Each part carries its SHA-256 (x-amz-content-sha256) and
 * MD5 (Content-MD5), which S3 checks; an ETag that is an MD5 other than the part's fails the
 * upload. An upload that fails is aborted; one a crash left is aborted by repo_gc (sweep).
 */
#define PART_SIZE ((size_t)5 << 20)
#define MAX_PARTS 10000

typedef struct s3_writer {
    s3 *s;
    char tmp[96]; /* the temporary key, relative to the vault's prefix */
    buf part;     /* the part being filled */
    uint64_t size;
    char *upload_id; /* NULL until the first part goes */
    int nparts;
    char (*etags)[80];
    int finished;  /* the data is complete (and, when multipart, the upload too) */
    int completed; /* the temporary object exists (multipart upload completed) */
    /* the part on its way */
    int sending;
    pthread_t thread;
    buf out;
    int out_no;
    int out_rc;
    rerr out_err;
} s3_writer;

/* The URL of key with a query (already sorted and escaped); caller frees. */
static char *query_url(const s3 *s, const char *key, const char *query)
{
    char *base = object_url(s, key);
    char *url = xasprintf("%s?%s", base, query);
    free(base);
    return url;
}

/* A <Code> S3 puts in a 200 answer (CompleteMultipartUpload and CopyObject may). */
static int error_in_body(const buf *body, char *code, size_t codelen)
{
    code_walk w = {""};
    if (body->len > 0)
        xml_walk((const char *)body->data, body->len, on_error_elem, &w);
    snprintf(code, codelen, "%s", w.code);
    return w.code[0] != '\0';
}

typedef struct upload_walk {
    char id[512];
} upload_walk;

static void on_upload_elem(void *arg, const char *path, const char *text)
{
    upload_walk *w = arg;
    if (strcmp(path, "InitiateMultipartUploadResult/UploadId") == 0)
        snprintf(w->id, sizeof(w->id), "%s", text);
}

static int create_upload(s3_writer *w, rerr *e)
{
    const s3 *s = w->s;
    buf body = {0};
    char *url = query_url(s, w->tmp, "uploads=");
    char *what = xasprintf("POST s3://%s/%s%s?uploads", s->bucket, s->prefix, w->tmp);
    s3_call c = {.r = {.method = "POST", .url = url, .body = "", .out = &body, .what = what}};
    upload_walk uw = {""};
    int rc = s3_request(s, &c, curl_slist_append(NULL, "Content-Type: application/octet-stream"),
                        e);
    if (rc == 0 && c.r.status != 200)
        rc = s3_fail(s, &c.r, e);
    else if (rc == 0 && (xml_walk((const char *)body.data, body.len, on_upload_elem, &uw) != 0 ||
                         uw.id[0] == '\0'))
        rc = rerr_set(e, E_FAIL, "%s: the server's answer holds no UploadId", what);
    if (rc == 0)
        w->upload_id = xstrdup(uw.id);
    buf_free(&body);
    free(what);
    free(url);
    return rc == 0 ? ST_OK : ST_ERROR;
}

/* PUTs part no from data; its ETag into etag. ST_OK or ST_ERROR. */
static int upload_part(const s3 *s, const char *tmp, const char *upload_id, int no,
                       const buf *data, char *etag, size_t etaglen, rerr *e)
{
    uint8_t md5[16];
    unsigned int md5len = 0;
    EVP_Digest(data->data ? (const void *)data->data : "", data->len, md5, &md5len, EVP_md5(),
               NULL);
    char b64[32], hex[40], header[64];
    EVP_EncodeBlock((unsigned char *)b64, md5, 16);
    hex_encode(md5, 16, hex);
    snprintf(header, sizeof(header), "Content-MD5: %s", b64);
    char *id = url_query_escape(upload_id);
    char *query = xasprintf("partNumber=%d&uploadId=%s", no, id);
    char *url = query_url(s, tmp, query);
    char *what = xasprintf("PUT s3://%s/%s%s (part %d)", s->bucket, s->prefix, tmp, no);
    s3_call c = {.r = {.method = "PUT",
                       .url = url,
                       .body = data->data ? (const void *)data->data : "",
                       .body_len = data->len,
                       .what = what}};
    int rc = s3_request(s, &c, curl_slist_append(NULL, header), e);
    if (rc == 0 && c.r.status != 200) {
        rc = s3_fail(s, &c.r, e);
    } else if (rc == 0) {
        /* An ETag of 32 hex digits is the MD5 of what the server stored (other ETags, with
         * SSE-KMS say, are opaque): one that differs means the part arrived damaged. */
        char quoted[48];
        snprintf(quoted, sizeof(quoted), "\"%s\"", hex);
        const char *et = c.r.etag;
        size_t n = strlen(et);
        int md5_shaped = n == 34 && et[0] == '"' && strspn(et + 1, "0123456789abcdef") == 32;
        if (n == 0)
            rc = rerr_set(e, E_FAIL, "%s: the server's answer has no ETag", what);
        else if (md5_shaped && strcmp(et, quoted) != 0)
            rc = rerr_set(e, E_CORRUPT,
                          "%s: the server stored other bytes than were sent (ETag %s, MD5 of the "
                          "part %s)",
                          what, et, quoted);
        else if (n >= etaglen)
            rc = rerr_set(e, E_FAIL, "%s: the server's ETag is longer than %zu bytes", what,
                          etaglen - 1);
        else
            memcpy(etag, et, n + 1);
    }
    free(what);
    free(url);
    free(query);
    free(id);
    return rc == 0 ? ST_OK : ST_ERROR;
}

static void *part_main(void *arg)
{
    s3_writer *w = arg;
    w->out_rc = upload_part(w->s, w->tmp, w->upload_id, w->out_no, &w->out, w->etags[w->out_no - 1],
                            sizeof(w->etags[0]), &w->out_err);
    return NULL;
}

/* Waits for the part on its way; its result. */
static int wait_part(s3_writer *w, rerr *e)
{
    if (!w->sending)
        return ST_OK;
    pthread_join(w->thread, NULL);
    w->sending = 0;
    if (w->out_rc != ST_OK)
        rerr_merge(e, &w->out_err);
    return w->out_rc;
}

/* Sends the filled part: on this thread when last, else on the part thread. */
static int send_part(s3_writer *w, int last, rerr *e)
{
    if (wait_part(w, e) != ST_OK || (w->upload_id == NULL && create_upload(w, e) != ST_OK))
        return ST_ERROR;
    if (w->nparts == MAX_PARTS)
        return rerr_set(e, E_FAIL, "an object of more than %d parts (a bug)", MAX_PARTS);
    w->nparts++;
    w->etags = xrealloc(w->etags, (size_t)w->nparts * sizeof(*w->etags));
    w->etags[w->nparts - 1][0] = '\0';
    buf swap = w->out;
    w->out = w->part;
    w->part = swap;
    w->part.len = 0;
    w->out_no = w->nparts;
    if (last) {
        part_main(w);
        if (w->out_rc != ST_OK)
            rerr_merge(e, &w->out_err);
        return w->out_rc;
    }
    w->sending = 1;
    if (pthread_create(&w->thread, NULL, part_main, w) != 0) {
        w->sending = 0;
        part_main(w);
        if (w->out_rc != ST_OK)
            rerr_merge(e, &w->out_err);
        return w->out_rc;
    }
    return ST_OK;
}

static void *s3_wopen(void *self, const char *dir_hint, rerr *e)
{
    (void)e;
    s3_writer *w = xcalloc(1, sizeof(*w));
    char name[64];
    tmp_name(name, sizeof(name));
    w->s = self;
    snprintf(w->tmp, sizeof(w->tmp), "%s%s", dir_hint, name);
    return w;
}

static int s3_wwrite(void *self, void *wp, const void *data, size_t len, rerr *e)
{
    (void)self;
    s3_writer *w = wp;
    const uint8_t *p = data;
    if (w->finished)
        return rerr_set(e, E_FAIL, "s3: write to a finished upload (a bug)");
    while (len > 0) {
        if (w->part.cap < PART_SIZE)
            buf_reserve(&w->part, PART_SIZE - w->part.len); /* exactly a part, never doubled */
        size_t step = PART_SIZE - w->part.len < len ? PART_SIZE - w->part.len : len;
        buf_append(&w->part, p, step);
        p += step;
        len -= step;
        w->size += step;
        if (w->part.len == PART_SIZE && send_part(w, 0, e) != ST_OK)
            return ST_ERROR;
    }
    return ST_OK;
}

typedef struct complete_walk {
    char code[64];
} complete_walk;

static int complete_upload(s3_writer *w, rerr *e)
{
    const s3 *s = w->s;
    buf xml = {0}, body = {0};
    static const char head[] = "<CompleteMultipartUpload>";
    buf_append(&xml, head, strlen(head));
    for (int i = 0; i < w->nparts; i++) {
        char one[160];
        int n = snprintf(one, sizeof(one), "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>",
                         i + 1, w->etags[i]);
        buf_append(&xml, one, (size_t)n);
    }
    buf_append(&xml, "</CompleteMultipartUpload>", 26);
    char *id = url_query_escape(w->upload_id);
    char *query = xasprintf("uploadId=%s", id);
    char *url = query_url(s, w->tmp, query);
    char *what = xasprintf("POST s3://%s/%s%s (complete)", s->bucket, s->prefix, w->tmp);
    s3_call c = {.r = {.method = "POST",
                       .url = url,
                       .body = xml.data,
                       .body_len = xml.len,
                       .out = &body,
                       .what = what}};
    int rc = s3_request(s, &c, curl_slist_append(NULL, "Content-Type: application/xml"), e);
    char code[64] = "";
    if (rc == 0 && c.r.status == 404 && c.tries > 1) {
        /* NoSuchUpload on a second try: the first one completed it, if the object is there. */
        uint64_t size = 0;
        rerr ignore = {0};
        if (s3_exists((void *)s, w->tmp, &size, &ignore) != ST_OK || size != w->size)
            rc = s3_fail(s, &c.r, e);
    } else if (rc == 0 && c.r.status != 200) {
        rc = s3_fail(s, &c.r, e);
    } else if (rc == 0 && error_in_body(&body, code, sizeof(code))) {
        rc = rerr_set(e, E_TRANSIENT, "%s: the server answered 200 with error %s", what, code);
    }
    if (rc == 0)
        w->completed = 1;
    buf_free(&xml);
    buf_free(&body);
    free(what);
    free(url);
    free(query);
    free(id);
    return rc == 0 ? ST_OK : ST_ERROR;
}

static int s3_wfinish(void *self, void *wp, rerr *e)
{
    (void)self;
    s3_writer *w = wp;
    if (w->finished)
        return ST_OK;
    w->finished = 1;
    if (w->upload_id == NULL && !w->sending)
        return ST_OK; /* smaller than a part: PUT whole at commit */
    int rc = w->part.len > 0 ? send_part(w, 1, e) : wait_part(w, e);
    if (rc == ST_OK)
        rc = complete_upload(w, e);
    buf_free(&w->part);
    buf_free(&w->out);
    return rc;
}

static void abort_upload(const s3 *s, const char *key, const char *upload_id)
{
    char *id = url_query_escape(upload_id);
    char *query = xasprintf("uploadId=%s", id);
    char *url = query_url(s, key, query);
    char *what = xasprintf("DELETE s3://%s/%s%s (abort upload)", s->bucket, s->prefix, key);
    s3_call c = {.r = {.method = "DELETE", .url = url, .what = what}};
    rerr ignore = {0};
    s3_request(s, &c, NULL, &ignore);
    free(what);
    free(url);
    free(query);
    free(id);
}

static void s3_wfree(s3_writer *w)
{
    rerr ignore = {0};
    wait_part(w, &ignore);
    buf_free(&w->part);
    buf_free(&w->out);
    free(w->upload_id);
    free(w->etags);
    free(w);
}

static void s3_wabort(void *self, void *wp)
{
    s3_writer *w = wp;
    rerr ignore = {0};
    wait_part(w, &ignore);
    if (w->completed)
        s3_del(self, w->tmp, &ignore);
    else if (w->upload_id)
        abort_upload(self, w->tmp, w->upload_id);
    s3_wfree(w);
}

/* Copies the temporary object onto key (with the storage class of data keys), then checks
 * the copy's size. ST_OK or ST_ERROR. */
static int copy_into(const s3 *s, const char *tmp, const char *key, unsigned flags, uint64_t size,
                     rerr *e)
{
    char *full = xasprintf("%s/%s%s", s->bucket, s->prefix, tmp);
    char *esc = url_path_escape(full);
    char *source = xasprintf("x-amz-copy-source: /%s", esc);
    struct curl_slist *extra = curl_slist_append(NULL, source);
    const char *cls = class_of(s, key, flags);
    char class_header[80];
    if (cls) {
        snprintf(class_header, sizeof(class_header), "x-amz-storage-class: %s", cls);
        extra = curl_slist_append(extra, class_header);
    }
    char *url = object_url(s, key);
    char *what = xasprintf("COPY s3://%s/%s%s to %s", s->bucket, s->prefix, tmp, key);
    buf body = {0};
    s3_call c = {.r = {.method = "PUT", .url = url, .body = "", .out = &body, .what = what}};
    int rc = s3_request(s, &c, extra, e);
    char code[64] = "";
    uint64_t got = 0;
    if (rc == 0 && c.r.status != 200)
        rc = s3_fail(s, &c.r, e);
    else if (rc == 0 && error_in_body(&body, code, sizeof(code)))
        rc = rerr_set(e, E_TRANSIENT, "%s: the server answered 200 with error %s", what, code);
    else if (rc == 0 && (rc = s3_exists((void *)s, key, &got, e)) == ST_NOTFOUND)
        rc = rerr_set(e, E_FAIL, "%s: the copy is not there after the server confirmed it", what);
    else if (rc == 0 && got != size)
        rc = rerr_set(e, E_FAIL, "%s: the copy holds %llu bytes, %llu were uploaded", what,
                      (unsigned long long)got, (unsigned long long)size);
    buf_free(&body);
    free(what);
    free(url);
    free(source);
    free(esc);
    free(full);
    return rc == 0 ? ST_OK : ST_ERROR;
}

static int s3_wcommit(void *self, void *wp, const char *key, unsigned flags, rerr *e)
{
    s3 *s = self;
    s3_writer *w = wp;
    int rc = s3_wfinish(s, w, e);
    if (rc == ST_OK && !w->completed)
        rc = s3_put(s, key, w->part.data, w->part.len, flags, e);
    else if (rc == ST_OK) { /* the upload is whole: a cancel must not cut its placing */
        int was = xfer_shield(1);
        rc = copy_into(s, w->tmp, key, flags, w->size, e);
        xfer_shield(was);
    }
    rerr ignore = {0};
    if (w->completed)
        s3_del(s, w->tmp, &ignore); /* a failure leaves it to repo_gc */
    else if (w->upload_id && rc != ST_OK)
        abort_upload(s, w->tmp, w->upload_id);
    s3_wfree(w);
    return rc;
}

/* ---- sweeping temporaries ------------------------------------------------------------------ */

typedef struct mp_page {
    char key[1024], id[512];
    char (*keys)[1024];
    char (*ids)[512];
    size_t n;
    int truncated;
    char next_key[1024], next_id[512];
} mp_page;

static void on_uploads_elem(void *arg, const char *path, const char *text)
{
    mp_page *pg = arg;
    if (strcmp(path, "ListMultipartUploadsResult/Upload/Key") == 0)
        snprintf(pg->key, sizeof(pg->key), "%s", text);
    else if (strcmp(path, "ListMultipartUploadsResult/Upload/UploadId") == 0)
        snprintf(pg->id, sizeof(pg->id), "%s", text);
    else if (strcmp(path, "ListMultipartUploadsResult/Upload") == 0 && pg->n < 1000) {
        pg->keys = xrealloc(pg->keys, (pg->n + 1) * sizeof(*pg->keys));
        pg->ids = xrealloc(pg->ids, (pg->n + 1) * sizeof(*pg->ids));
        memcpy(pg->keys[pg->n], pg->key, sizeof(pg->key));
        memcpy(pg->ids[pg->n], pg->id, sizeof(pg->id));
        pg->n++;
    } else if (strcmp(path, "ListMultipartUploadsResult/IsTruncated") == 0)
        pg->truncated = strcmp(text, "true") == 0;
    else if (strcmp(path, "ListMultipartUploadsResult/NextKeyMarker") == 0)
        snprintf(pg->next_key, sizeof(pg->next_key), "%s", text);
    else if (strcmp(path, "ListMultipartUploadsResult/NextUploadIdMarker") == 0)
        snprintf(pg->next_id, sizeof(pg->next_id), "%s", text);
}

/* Aborts the multipart uploads under the vault's prefix whose keys are expired temporaries. */
static int sweep_uploads(const s3 *s, int64_t cutoff, uint64_t *removed, rerr *e)
{
    char *prefix = url_query_escape(s->prefix);
    char *what = xasprintf("LIST uploads s3://%s/%s", s->bucket, s->prefix);
    char key_marker[1024] = "", id_marker[512] = "";
    int rc = ST_OK;
    for (int page = 0; rc == ST_OK && page < S3_LIST_MAX_PAGES; page++) {
        char *km = url_query_escape(key_marker), *im = url_query_escape(id_marker);
        char *url = key_marker[0] ? xasprintf("%s%s?key-marker=%s&prefix=%s&upload-id-marker=%s"
                                              "&uploads=",
                                              s->base, s->root, km, prefix, im)
                                  : xasprintf("%s%s?prefix=%s&uploads=", s->base, s->root, prefix);
        buf body = {0};
        mp_page pg = {0};
        s3_call c = {.r = {.method = "GET", .url = url, .out = &body, .what = what}};
        if (s3_request(s, &c, NULL, e) != 0)
            rc = ST_ERROR;
        else if (c.r.status != 200)
            rc = s3_fail(s, &c.r, e);
        else if (xml_walk((const char *)body.data, body.len, on_uploads_elem, &pg) != 0)
            rc = rerr_set(e, E_TRANSIENT, "%s: the server's listing is not well-formed XML", what);
        size_t plen = strlen(s->prefix);
        for (size_t i = 0; rc == ST_OK && i < pg.n; i++)
            if (strncmp(pg.keys[i], s->prefix, plen) == 0 &&
                tmp_expired(pg.keys[i] + plen, cutoff) &&
                strncmp(strrchr(pg.keys[i], '/') ? strrchr(pg.keys[i], '/') + 1 : pg.keys[i],
                        ".tmp-", 5) == 0) {
                abort_upload(s, pg.keys[i] + plen, pg.ids[i]);
                (*removed)++;
            }
        int more = rc == ST_OK && pg.truncated && pg.next_key[0];
        snprintf(key_marker, sizeof(key_marker), "%s", pg.next_key);
        snprintf(id_marker, sizeof(id_marker), "%s", pg.next_id);
        free(pg.keys);
        free(pg.ids);
        buf_free(&body);
        free(url);
        free(km);
        free(im);
        if (!more)
            break;
    }
    free(what);
    free(prefix);
    return rc;
}

static int s3_list_tmp(void *self, stor_list_cb cb, void *arg, rerr *e)
{
    return list_objects(self, "", 1, cb, arg, e);
}

static int s3_abort_stale(void *self, int64_t cutoff, uint64_t *removed, rerr *e)
{
    return sweep_uploads(self, cutoff, removed, e);
}

/* ---- cold storage: restoring (thawing) objects ---------------------------------------------- */

static int s3_cold(void *self)
{
    return ((const s3 *)self)->cold;
}

enum { THAW_READY, THAW_WAITING, THAW_ASK };

/* Where key stands: readable, being restored, or to be asked for. ST_OK or ST_ERROR. */
static int thaw_state(const s3 *s, const char *key, int *state, rerr *e)
{
    char *url = object_url(s, key);
    char *what = xasprintf("HEAD s3://%s/%s%s", s->bucket, s->prefix, key);
    s3_call c = {.r = {.method = "HEAD", .url = url, .what = what}};
    int rc = s3_request(s, &c, NULL, e);
    if (rc == 0 && c.r.status == 404)
        rc = rerr_set(e, E_CORRUPT, "%s: the pack is missing from the storage", what);
    else if (rc == 0 && c.r.status != 200)
        rc = s3_fail(s, &c.r, e);
    if (rc == 0) {
        int cold = strcmp(c.r.amz_class, "GLACIER") == 0 || strcmp(c.r.amz_class, "DEEP_ARCHIVE") == 0;
        if (!cold || strstr(c.r.amz_restore, "ongoing-request=\"false\""))
            *state = THAW_READY;
        else if (strstr(c.r.amz_restore, "ongoing-request=\"true\""))
            *state = THAW_WAITING;
        else
            *state = THAW_ASK;
    }
    free(what);
    free(url);
    return rc == 0 ? ST_OK : ST_ERROR;
}

/* Asks for a restore of key (RestoreObject). ST_OK or ST_ERROR. */
static int ask_restore(const s3 *s, const char *key, rerr *e)
{
    char body[256];
    snprintf(body, sizeof(body),
             "<RestoreRequest><Days>%d</Days><GlacierJobParameters><Tier>%s</Tier>"
             "</GlacierJobParameters></RestoreRequest>",
             s->thaw_days, s->thaw_tier);
    char *url = query_url(s, key, "restore=");
    char *what = xasprintf("POST s3://%s/%s%s?restore", s->bucket, s->prefix, key);
    s3_call c = {.r = {.method = "POST", .url = url, .body = body, .body_len = strlen(body),
                       .what = what}};
    int rc = s3_request(s, &c, curl_slist_append(NULL, "Content-Type: application/xml"), e);
    char code[64];
    error_code(&c.r, code, sizeof(code));
    /* 202: started; 200: restored already; 409 RestoreAlreadyInProgress: someone asked. */
    if (rc == 0 && c.r.status != 200 && c.r.status != 202 &&
        !(c.r.status == 409 && strcmp(code, "RestoreAlreadyInProgress") == 0))
        rc = s3_fail(s, &c.r, e);
    free(what);
    free(url);
    return rc == 0 ? ST_OK : ST_ERROR;
}

/*
 * Restores every one of names[0..n) that is not readable, then polls them (1 s, doubling up
 * to 5 minutes between rounds; a Standard restore from GLACIER takes hours) until all are
 * readable or the vault's thaw_timeout has passed. See stor_ops.thaw.
 */
static int s3_thaw(void *self, char *const *names, size_t n, stor_thaw_cb progress, void *arg,
                   rerr *e)
{
    const s3 *s = self;
    int *state = xcalloc(n, sizeof(*state));
    size_t ready = 0;
    int rc = ST_OK;
    double started = mono_sec(), pause = 1.0;
    for (size_t i = 0; rc == ST_OK && i < n; i++) {
        rc = thaw_state(s, names[i], &state[i], e);
        if (rc == ST_OK && state[i] == THAW_ASK && (rc = ask_restore(s, names[i], e)) == ST_OK)
            state[i] = THAW_WAITING;
        ready += rc == ST_OK && state[i] == THAW_READY;
    }
    while (rc == ST_OK) {
        /* Poll the waiting ones again (a moto or an instant tier may already be done). */
        for (size_t i = 0; rc == ST_OK && i < n; i++)
            if (state[i] == THAW_WAITING && (rc = thaw_state(s, names[i], &state[i], e)) == ST_OK) {
                ready += state[i] == THAW_READY;
                /* A restore that lapsed before we saw it done is asked for again. */
                if (state[i] == THAW_ASK && (rc = ask_restore(s, names[i], e)) == ST_OK)
                    state[i] = THAW_WAITING;
            }
        double waited = mono_sec() - started;
        if (progress)
            progress(arg, ready, n, waited);
        if (rc != ST_OK || ready == n)
            break;
        if (xfer_cancelled()) {
            rc = rerr_set(e, E_CANCELLED, "cancelled while waiting for packs to thaw");
            break;
        }
        if (waited >= (double)s->thaw_timeout) {
            rc = rerr_set(e, E_TRANSIENT,
                          "s3://%s/%s: %zu of %zu packs are still being restored from storage "
                          "class %s after %ld s (\"thaw_timeout\"); the restores go on: run the "
                          "pull again later, or raise \"thaw_timeout\" (or use \"thaw_tier\": "
                          "\"Expedited\")",
                          s->bucket, s->prefix, n - ready, n,
                          s->storage_class[0] ? s->storage_class : "(cold)", s->thaw_timeout);
            break;
        }
        double left = (double)s->thaw_timeout - waited;
        double nap = pause < left ? pause : left;
        /* Short naps, so that a cancel is noticed within a second. */
        for (double slept = 0; slept < nap && !xfer_cancelled(); slept += 1.0) {
            double step = nap - slept < 1.0 ? nap - slept : 1.0;
            struct timespec ts = {(time_t)step, (long)((step - (double)(time_t)step) * 1e9)};
            nanosleep(&ts, NULL);
        }
        pause = pause * 2 < 300 ? pause * 2 : 300;
    }
    free(state);
    return rc;
}

const stor_ops stor_s3_ops = {
    .name = "s3",
    .open = s3_open,
    .put = s3_put,
    .get = s3_get,
    .list = s3_list,
    .del = s3_del,
    .exists = s3_exists,
    .close = s3_close,
    .wopen = s3_wopen,
    .wwrite = s3_wwrite,
    .wcommit = s3_wcommit,
    .wabort = s3_wabort,
    .wfinish = s3_wfinish,
    .list_tmp = s3_list_tmp,
    .abort_stale = s3_abort_stale,
    .cold = s3_cold,
    .thaw = s3_thaw,
};
