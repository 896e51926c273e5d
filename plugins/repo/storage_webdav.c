/*
 * The "webdav" storage provider (also named "http"): a collection on a WebDAV server
 * (Apache mod_dav, nginx dav, lighttpd mod_webdav, Nextcloud, a NAS ...), through libcurl and
 * the shared transfer layer (xfer.h: connection pool, bandwidth limit, timeouts, retries).
 *
 * Vault: {"provider": "webdav", "url": "https://dav.example.com/backups/web",
 *         "user": "backup", "password": "…", "auth": "any|basic|digest", + xfer.h's keys}.
 *
 * Keys map to URLs below the base collection ("data/ab/ab12…" → URL/data/ab/ab12…).
 *   - put uploads to a temporary name (".tmp-RANDOM") in the target's collection, then MOVEs
 *     it into place: "Overwrite: T" replaces, "Overwrite: F" makes an exclusive put (412:
 *     exists). Content-named keys (data/, index/) also move with "Overwrite: F": an existing
 *     object there holds the same bytes, so 412 is success. Collections a PUT finds missing
 *     (409) are created with MKCOL, from the deepest missing one up, once each.
 *   - get asks for a Range; a server that ignores it (200 and the whole body) is sliced.
 *   - list walks collections with PROPFIND (Depth: 1), skipping names that start with '.'
 *     (temporaries of puts in progress or interrupted).
 * Besides the pool, the only state shared between requests is the authentication scheme
 * settled by the first one (under a mutex), so every operation may run from several threads
 * at once. The password goes to libcurl only; no message names it, and the URL is refused
 * when it carries credentials.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "plain_http.h"
#include "storage.h"
#include "xfer.h"

typedef struct webdav {
    xfer_pool *pool;
    char *base;      /* "https://host/path", no trailing '/' */
    char *base_path; /* the base's path, percent-decoded, ending in '/': "/path/" */
    char *user;      /* NULL: no authentication */
    char *password;
    int https;
    /* CURLAUTH_* the requests use. "auth": "any" starts with basic and digest both, which
     * makes libcurl send every request twice (once unauthenticated, to learn the scheme, an
     * upload's body included); so the first request asks the server once which schemes it
     * offers and settles on one. auth_mu guards auth and auth_settled. */
    pthread_mutex_t auth_mu;
    long auth;
    int auth_settled;
    int stream_dir_made; /* atomic: the collection of streamed puts' temporaries exists */
} webdav;

/* Nesting of collections under the base that list follows; ferry's keys use three levels. */
#define LIST_MAX_DEPTH 16

static const char PROPFIND_BODY[] = "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
                                    "<D:propfind xmlns:D=\"DAV:\"><D:prop>"
                                    "<D:resourcetype/><D:getcontentlength/>"
                                    "</D:prop></D:propfind>";

/* --- requests ------------------------------------------------------------------------------ */

static void set_credentials(CURL *h, void *arg)
{
    webdav *w = arg;
    if (w->user == NULL)
        return;
    curl_easy_setopt(h, CURLOPT_USERNAME, w->user);
    curl_easy_setopt(h, CURLOPT_PASSWORD, w->password ? w->password : "");
    pthread_mutex_lock(&w->auth_mu);
    long auth = w->auth;
    pthread_mutex_unlock(&w->auth_mu);
    curl_easy_setopt(h, CURLOPT_HTTPAUTH, auth);
}

/* The URL of key ("" is the base collection itself, "data/" a collection). Caller frees. */
static char *key_url(const webdav *w, const char *key)
{
    char *escaped = url_path_escape(key);
    char *url = xasprintf("%s/%s", w->base, escaped);
    free(escaped);
    return url;
}

/* Sends method on key through prepare (see dav_do). 0 when a response came, or -1 with e set. */
static int dav_send(webdav *w, http_req *r, const char *method, const char *key,
                    void (*prepare)(CURL *, void *), void *prepare_arg, rerr *e)
{
    char *url = key_url(w, key);
    char *what = xasprintf("%s %s on webdav storage %s", method, key[0] ? key : "/", w->base);
    r->method = method;
    r->url = url;
    r->prepare = prepare;
    r->prepare_arg = prepare_arg;
    r->idempotent = 1;
    r->what = what;
    int rc = http_do(w->pool, r, e);
    free(what);
    free(url);
    return rc;
}

/* The authentication schemes a server's 401 offers, collected from its headers. */
static size_t collect_challenges(char *data, size_t size, size_t n, void *arg)
{
    unsigned long *offered = arg;
    size_t len = size * n;
    static const char field[] = "WWW-Authenticate:";
    if (len > sizeof(field) - 1 && strncasecmp(data, field, sizeof(field) - 1) == 0) {
        const char *v = data + sizeof(field) - 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (strncasecmp(v, "Digest", 6) == 0)
            *offered |= CURLAUTH_DIGEST;
        else if (strncasecmp(v, "Basic", 5) == 0)
            *offered |= CURLAUTH_BASIC;
    }
    return len;
}

static void prepare_probe(CURL *h, void *arg)
{
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, collect_challenges);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, arg);
}

/*
 * With "auth": "any", asks the server once (an unauthenticated PROPFIND of the base) which
 * schemes it offers, and keeps one: basic over https (one round trip per request), digest
 * over http (the password never crosses the wire). 0, or -1 with e set.
 */
static int settle_auth(webdav *w, rerr *e)
{
    int rc = 0;
    pthread_mutex_lock(&w->auth_mu);
    if (!w->auth_settled && w->user != NULL) {
        unsigned long offered = 0;
        struct curl_slist *headers = curl_slist_append(NULL, "Depth: 0");
        headers = curl_slist_append(headers, "Content-Type: application/xml; charset=utf-8");
        http_req r = {.headers = headers, .body = PROPFIND_BODY, .body_len = strlen(PROPFIND_BODY)};
        rc = dav_send(w, &r, "PROPFIND", "", prepare_probe, &offered, e);
        curl_slist_free_all(headers);
        if (rc == 0) {
            if ((offered & CURLAUTH_BASIC) && (w->https || !(offered & CURLAUTH_DIGEST)))
                w->auth = CURLAUTH_BASIC;
            else if (offered & CURLAUTH_DIGEST)
                w->auth = CURLAUTH_DIGEST;
            /* else: nothing asked for here; keep both, libcurl answers a later challenge */
            w->auth_settled = 1;
        }
    }
    pthread_mutex_unlock(&w->auth_mu);
    return rc;
}

/*
 * Sends method on key with what the caller filled in r (headers, body, range, out), with the
 * vault's credentials. Every request here is safe to repeat: temporaries have fresh names,
 * MOVE and DELETE answer 404 when an earlier try landed, and put checks what that means.
 * Returns 0 when a response came (r->status set), or -1 with e set.
 */
static int dav_do(webdav *w, http_req *r, const char *method, const char *key, rerr *e)
{
    if (settle_auth(w, e) != 0)
        return -1;
    return dav_send(w, r, method, key, set_credentials, w, e);
}

static int ok_status(long status)
{
    return status >= 200 && status < 300;
}

/* Turns an unexpected status into an error that says what to do. Returns ST_ERROR. */
static int status_error(const webdav *w, const char *method, const char *key, long status, rerr *e)
{
    const char *k = key[0] ? key : "/";
    if (status == 401 || status == 403)
        return rerr_set(e, E_INVALID,
                        "webdav storage %s refused %s %s (HTTP %ld): the server does not accept "
                        "the credentials; fix \"user\" and \"password\" in the storage's vault "
                        "(or the account's rights on the collection)",
                        w->base, method, k, status);
    if (status >= 500 || status == 429 || status == 408)
        return rerr_set(e, E_TRANSIENT,
                        "webdav storage %s: %s %s failed with HTTP %ld after retries; the "
                        "server may be overloaded or down",
                        w->base, method, k, status);
    return rerr_set(e, E_FAIL, "webdav storage %s: %s %s failed with HTTP %ld", w->base, method, k,
                    status);
}

/* The collection holding key, with its trailing '/' ("" for a key at the top). Caller frees. */
static char *parent_of(const char *key)
{
    size_t n = strlen(key);
    if (n > 0 && key[n - 1] == '/')
        n--; /* a collection's parent */
    while (n > 0 && key[n - 1] != '/')
        n--;
    char *dir = xmalloc(n + 1);
    memcpy(dir, key, n);
    dir[n] = '\0';
    return dir;
}

/* Content-named keys: an object that exists under such a name holds exactly those bytes. */
static int content_named(const char *key)
{
    return strncmp(key, "data/", 5) == 0 || strncmp(key, "index/", 6) == 0;
}

/* --- collections --------------------------------------------------------------------------- */

/*
 * Creates collection dir ("data/ab/"; "" is the base), and the missing ones above it: MKCOL
 * answers 409 when the parent is missing, so creation walks up only as far as needed.
 */
static int make_collection(webdav *w, const char *dir, int depth, rerr *e)
{
    http_req r = {0};
    if (dav_do(w, &r, "MKCOL", dir, e) != 0)
        return ST_ERROR;
    if (r.status == 409 && dir[0] != '\0' && depth < LIST_MAX_DEPTH) {
        char *parent = parent_of(dir);
        int rc = make_collection(w, parent, depth + 1, e);
        free(parent);
        if (rc != ST_OK)
            return rc;
        memset(&r, 0, sizeof(r));
        if (dav_do(w, &r, "MKCOL", dir, e) != 0)
            return ST_ERROR;
    }
    /* 405: the collection exists (another thread, or another push, made it first). */
    if (ok_status(r.status) || r.status == 405)
        return ST_OK;
    if (r.status == 409)
        return rerr_set(e, E_INVALID,
                        "webdav storage %s: the collection above the storage's URL does not "
                        "exist; create it on the server or fix \"url\" in the vault",
                        w->base);
    return status_error(w, "MKCOL", dir, r.status, e);
}

/* --- put ----------------------------------------------------------------------------------- */

/* Best-effort removal of a temporary after a failed put; list never reports it anyway. */
static void discard(webdav *w, const char *tmp)
{
    rerr ignore = {0};
    http_req r = {0};
    dav_do(w, &r, "DELETE", tmp, &ignore);
}

/* PUTs data under key, creating missing collections. ST_OK or ST_ERROR. */
static int upload(webdav *w, const char *key, const void *data, size_t len, rerr *e)
{
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    int rc = ST_OK;
    for (int round = 0; round < 2; round++) {
        http_req r = {.headers = headers, .body = data ? data : "", .body_len = len};
        if (dav_do(w, &r, "PUT", key, e) != 0) {
            rc = ST_ERROR;
            break;
        }
        if (ok_status(r.status))
            break;
        /* 409 (404 on some servers): a collection on the way is missing. */
        if ((r.status == 409 || r.status == 404) && round == 0) {
            char *dir = parent_of(key);
            rc = make_collection(w, dir, 0, e);
            free(dir);
            if (rc != ST_OK)
                break;
            continue;
        }
        rc = status_error(w, "PUT", key, r.status, e);
        break;
    }
    curl_slist_free_all(headers);
    return rc;
}

/* 1 when key holds exactly data, 0 when it holds something else or nothing, -1 on error. */
static int holds(webdav *w, const char *key, const void *data, size_t len, rerr *e)
{
    buf got = {0};
    http_req r = {.out = &got};
    int rc = -1;
    if (dav_do(w, &r, "GET", key, e) != 0)
        goto out;
    if (r.status == 404) {
        rc = 0;
        goto out;
    }
    if (!ok_status(r.status)) {
        status_error(w, "GET", key, r.status, e);
        goto out;
    }
    rc = got.len == len && (len == 0 || memcmp(got.data, data, len) == 0);
out:
    buf_free(&got);
    return rc;
}

/*
 * MOVEs tmp onto key. 412 (the target exists, with "Overwrite: F") is success for a
 * content-named key and ST_EXISTS for an exclusive put, unless the target holds our very
 * bytes: then an earlier try of this put landed (sealed objects carry random nonces, so equal
 * bytes are ours). 404 means tmp is gone: a retried MOVE whose first try landed, checked the
 * same way.
 */
static int publish(webdav *w, const char *tmp, const char *key, const void *data, size_t len,
                   unsigned flags, rerr *e)
{
    int exclusive = (flags & STOR_PUT_EXCLUSIVE) != 0;
    int keep_existing = exclusive || content_named(key);
    char *dest_url = key_url(w, key);
    char *dest = xasprintf("Destination: %s", dest_url);
    struct curl_slist *headers = curl_slist_append(NULL, dest);
    headers = curl_slist_append(headers, keep_existing ? "Overwrite: F" : "Overwrite: T");
    http_req r = {.headers = headers};
    int rc = ST_OK;
    if (dav_do(w, &r, "MOVE", tmp, e) != 0) {
        rc = ST_ERROR;
        goto out;
    }
    if (ok_status(r.status))
        goto out;
    if (r.status == 412 && keep_existing && !exclusive)
        goto out;
    if (r.status == 412 || r.status == 404) {
        int same = holds(w, key, data, len, e);
        if (same < 0)
            rc = ST_ERROR;
        else if (same == 0 && r.status == 412)
            rc = ST_EXISTS;
        else if (same == 0)
            rc = rerr_set(e, E_TRANSIENT,
                          "webdav storage %s: the uploaded %s vanished before it was moved "
                          "into place as %s (another client cleaning up?)",
                          w->base, tmp, key);
        goto out;
    }
    rc = status_error(w, "MOVE", tmp, r.status, e);
out:
    /* Whatever went wrong, the temporary must not linger (after a success it is gone). */
    if (rc != ST_OK || r.status == 412)
        discard(w, tmp);
    curl_slist_free_all(headers);
    free(dest);
    free(dest_url);
    return rc;
}

static int dav_put(void *self, const char *key, const void *data, size_t len, unsigned flags,
                   rerr *e)
{
    webdav *w = self;
    char name[64];
    tmp_name(name, sizeof(name));
    char *dir = parent_of(key);
    char *tmp = xasprintf("%s%s", dir, name);
    int rc = upload(w, tmp, data, len, e);
    if (rc == ST_OK)
        rc = publish(w, tmp, key, data, len, flags, e);
    else if (e == NULL || e->kind != E_TRANSIENT)
        discard(w, tmp); /* a server that answered may hold part of it; a dead one will not */
    free(tmp);
    free(dir);
    return rc;
}

/* --- get, exists, del ---------------------------------------------------------------------- */

static int dav_exists(void *self, const char *key, uint64_t *size, rerr *e);

static int dav_get(void *self, const char *key, uint64_t offset, uint64_t len, buf *out, rerr *e)
{
    webdav *w = self;
    size_t start = out->len;
    http_req r = {.off = offset, .len = len, .out = out};
    if (dav_do(w, &r, "GET", key, e) != 0)
        return ST_ERROR;
    if (r.status == 404)
        return ST_NOTFOUND;
    if (r.status == 416 && len == 0) {
        /* "From offset to the end" where offset is the end: nothing, if that is the size. */
        uint64_t size = 0;
        int rc = dav_exists(w, key, &size, e);
        if (rc != ST_OK || size == offset)
            return rc;
    }
    if (r.status == 416)
        return rerr_set(e, E_CORRUPT, "webdav storage %s: %s is shorter than expected (%llu)",
                        w->base, key, (unsigned long long)(offset + len));
    if (!ok_status(r.status))
        return status_error(w, "GET", key, r.status, e);
    uint64_t got = out->len - start;
    if (r.status == 200 && (offset > 0 || len > 0)) {
        /* The server ignored the Range and sent the whole object: keep the range of it. */
        if (offset > got || (len > 0 && offset + len > got)) {
            out->len = start;
            return rerr_set(
                e, E_CORRUPT, "webdav storage %s: %s is %llu bytes, shorter than expected (%llu)",
                w->base, key, (unsigned long long)got, (unsigned long long)(offset + len));
        }
        uint64_t keep = len > 0 ? len : got - offset;
        memmove(out->data + start, out->data + start + offset, keep);
        out->len = start + keep;
        return ST_OK;
    }
    if (len > 0 && got != len) {
        out->len = start;
        return rerr_set(e, E_CORRUPT,
                        "webdav storage %s: %s returned %llu bytes of the %llu asked for at "
                        "offset %llu (object shorter than expected)",
                        w->base, key, (unsigned long long)got, (unsigned long long)len,
                        (unsigned long long)offset);
    }
    return ST_OK;
}

static int dav_exists(void *self, const char *key, uint64_t *size, rerr *e)
{
    webdav *w = self;
    http_req r = {0};
    if (dav_do(w, &r, "HEAD", key, e) != 0)
        return ST_ERROR;
    if (r.status == 404)
        return ST_NOTFOUND;
    if (!ok_status(r.status))
        return status_error(w, "HEAD", key, r.status, e);
    if (size)
        *size = r.content_length > 0 ? (uint64_t)r.content_length : 0;
    return ST_OK;
}

static int dav_del(void *self, const char *key, rerr *e)
{
    webdav *w = self;
    http_req r = {0};
    if (dav_do(w, &r, "DELETE", key, e) != 0)
        return ST_ERROR;
    if (r.status == 404)
        return ST_NOTFOUND;
    if (!ok_status(r.status))
        return status_error(w, "DELETE", key, r.status, e);
    return ST_OK;
}

/* --- list ---------------------------------------------------------------------------------- */

/* One <response> of a PROPFIND answer. */
typedef struct dav_entry {
    char *href;
    int collection;
    uint64_t size;
} dav_entry;

typedef struct propfind {
    dav_entry cur;
    dav_entry *v;
    size_t n, cap;
} propfind;

static void on_element(void *arg, const char *path, const char *text)
{
    propfind *pf = arg;
    if (strcmp(path, "multistatus/response/href") == 0) {
        free(pf->cur.href);
        pf->cur.href = xstrdup(text);
    } else if (strcmp(path, "multistatus/response/propstat/prop/resourcetype/collection") == 0) {
        pf->cur.collection = 1;
    } else if (strcmp(path, "multistatus/response/propstat/prop/getcontentlength") == 0 &&
               text[0] != '\0') {
        pf->cur.size = strtoull(text, NULL, 10);
    } else if (strcmp(path, "multistatus/response") == 0) {
        if (pf->cur.href == NULL)
            return;
        if (pf->n == pf->cap) {
            pf->cap = pf->cap ? pf->cap * 2 : 64;
            pf->v = xrealloc(pf->v, pf->cap * sizeof(*pf->v));
        }
        pf->v[pf->n++] = pf->cur;
        memset(&pf->cur, 0, sizeof(pf->cur));
    }
}

static void propfind_free(propfind *pf)
{
    for (size_t i = 0; i < pf->n; i++)
        free(pf->v[i].href);
    free(pf->v);
    free(pf->cur.href);
}

/* Decodes %XX escapes; a malformed escape is kept as it is. Caller frees. */
static char *percent_decode(const char *s)
{
    char *out = xmalloc(strlen(s) + 1);
    char *o = out;
    for (; *s; s++) {
        int hi, lo;
        if (s[0] == '%' && (hi = hex_digit(s[1])) >= 0 && (lo = hex_digit(s[2])) >= 0) {
            *o++ = (char)(hi << 4 | lo);
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
    return out;
}

/* The path of an absolute URL ("https://h:1/a/b" → "/a/b"), or s itself when it is a path. */
static const char *path_part(const char *s)
{
    const char *scheme_end = strstr(s, "://");
    if (scheme_end == NULL || strchr(s, '/') < scheme_end)
        return s;
    const char *p = strchr(scheme_end + 3, '/');
    return p ? p : "/";
}

/* The key an href names, relative to the base ("data/ab/" for a collection), or NULL when
 * it lies outside the base. Caller frees. */
static char *href_to_key(const webdav *w, const char *href)
{
    char *path = percent_decode(path_part(href));
    size_t bl = strlen(w->base_path);
    char *key = NULL;
    if (strncmp(path, w->base_path, bl) == 0)
        key = xstrdup(path + bl);
    free(path);
    return key;
}

/* Lists collection prefix ("" or ending in '/') and the ones below it. ST_OK, ST_ERROR, or 1
 * when cb stopped the listing. */
static int list_collection(webdav *w, const char *prefix, int temporaries, stor_list_cb cb,
                           void *arg, int depth, rerr *e)
{
    buf body = {0};
    propfind pf = {0};
    struct curl_slist *headers = curl_slist_append(NULL, "Depth: 1");
    headers = curl_slist_append(headers, "Content-Type: application/xml; charset=utf-8");
    http_req r = {
        .headers = headers, .body = PROPFIND_BODY, .body_len = strlen(PROPFIND_BODY), .out = &body};
    int rc = ST_OK;
    if (dav_do(w, &r, "PROPFIND", prefix, e) != 0) {
        rc = ST_ERROR;
        goto out;
    }
    if (r.status == 404)
        goto out; /* nothing was ever put under this prefix */
    if (r.status != 207) {
        rc = ok_status(r.status)
                 ? rerr_set(e, E_FAIL,
                            "webdav storage %s: PROPFIND %s answered HTTP %ld instead of 207; "
                            "is the URL a WebDAV collection?",
                            w->base, prefix, r.status)
                 : status_error(w, "PROPFIND", prefix, r.status, e);
        goto out;
    }
    if (xml_walk((const char *)body.data, body.len, on_element, &pf) != 0) {
        rc = rerr_set(e, E_TRANSIENT, "webdav storage %s: PROPFIND %s returned malformed XML",
                      w->base, prefix[0] ? prefix : "/");
        goto out;
    }
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < pf.n && rc == ST_OK; i++) {
        char *key = href_to_key(w, pf.v[i].href);
        if (key == NULL || strncmp(key, prefix, plen) != 0) {
            free(key);
            continue;
        }
        size_t klen = strlen(key);
        int is_dir = pf.v[i].collection || (klen > 0 && key[klen - 1] == '/');
        if (klen > 0 && key[klen - 1] == '/')
            key[--klen] = '\0';
        const char *name = key + (klen > plen ? plen : klen);
        /* Skip the collection itself, temporaries (".tmp-…") and anything not one level down;
         * with temporaries, report only those. */
        int tmp = strncmp(name, ".tmp-", 5) == 0 && !is_dir;
        if (klen <= plen || (name[0] == '.' && !(temporaries && tmp)) ||
            strchr(name, '/') != NULL || (temporaries && !is_dir && !tmp)) {
            free(key);
            continue;
        }
        if (is_dir) {
            char *sub = xasprintf("%s/", key);
            rc = depth < LIST_MAX_DEPTH
                     ? list_collection(w, sub, temporaries, cb, arg, depth + 1, e)
                                        : rerr_set(e, E_FAIL,
                                                   "webdav storage %s: collections nested "
                                                   "deeper than %d levels under %s",
                                                   w->base, LIST_MAX_DEPTH, prefix);
            free(sub);
        } else if (cb(arg, key, pf.v[i].size) != 0) {
            rc = 1;
        }
        free(key);
    }
out:
    propfind_free(&pf);
    curl_slist_free_all(headers);
    buf_free(&body);
    return rc;
}

static int dav_list(void *self, const char *prefix, stor_list_cb cb, void *arg, rerr *e)
{
    return list_collection(self, prefix, 0, cb, arg, 0, e) == ST_ERROR ? ST_ERROR : ST_OK;
}

static int dav_list_tmp(void *self, stor_list_cb cb, void *arg, rerr *e)
{
    return list_collection(self, "", 1, cb, arg, 0, e) == ST_ERROR ? ST_ERROR : ST_OK;
}

/* --- streamed puts ------------------------------------------------------------------------- */

#define STREAM_BUFFER ((size_t)1 << 20) /* bytes between the pack writer and the upload */

/* A pack on its way: PUT to a temporary as it is written (chunked), MOVEd at commit. */
typedef struct dav_writer {
    webdav *w;
    char *tmp; /* its key */
    xfer_stream *st;
    uint64_t size; /* bytes written */
} dav_writer;

static int dav_stream_run(xfer_stream *st, void *arg, rerr *e)
{
    dav_writer *dw = arg;
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    http_req r = {.headers = headers, .stream = st};
    int rc = dav_do(dw->w, &r, "PUT", dw->tmp, e) != 0 ? -1
             : ok_status(r.status)                    ? 0
             : (status_error(dw->w, "PUT", dw->tmp, r.status, e), -1);
    curl_slist_free_all(headers);
    return rc;
}

static void *dav_wopen(void *self, const char *dir_hint, rerr *e)
{
    webdav *w = self;
    /* A streamed PUT cannot be sent twice, so the collection is made before it, once. */
    if (!__atomic_load_n(&w->stream_dir_made, __ATOMIC_RELAXED)) {
        if (make_collection(w, dir_hint, 0, e) != ST_OK)
            return NULL;
        __atomic_store_n(&w->stream_dir_made, 1, __ATOMIC_RELAXED);
    }
    dav_writer *dw = xcalloc(1, sizeof(*dw));
    char name[64];
    tmp_name(name, sizeof(name));
    dw->w = w;
    dw->tmp = xasprintf("%s%s", dir_hint, name);
    dw->st = xfer_stream_start(STREAM_BUFFER, dav_stream_run, dw);
    return dw;
}

static int dav_wwrite(void *self, void *wp, const void *data, size_t len, rerr *e)
{
    (void)self;
    dav_writer *dw = wp;
    if (dw->st == NULL)
        return rerr_set(e, E_FAIL, "webdav: write to a finished upload (a bug)");
    if (xfer_stream_write(dw->st, data, len, e) != 0)
        return ST_ERROR;
    dw->size += len;
    return ST_OK;
}

/* Ends the upload, then checks that the server holds every byte (a short write fails here). */
static int dav_wfinish(void *self, void *wp, rerr *e)
{
    webdav *w = self;
    dav_writer *dw = wp;
    xfer_stream *st = dw->st;
    dw->st = NULL;
    if (xfer_stream_finish(st, e) != 0)
        return ST_ERROR;
    uint64_t size = 0;
    int rc = dav_exists(w, dw->tmp, &size, e);
    if (rc == ST_NOTFOUND)
        return rerr_set(e, E_FAIL, "webdav storage %s: the uploaded %s is gone", w->base, dw->tmp);
    if (rc == ST_OK && size != dw->size)
        return rerr_set(e, E_FAIL,
                        "webdav storage %s: the server holds %llu bytes of %s, %llu were sent "
                        "(a short write: disk full or quota?)",
                        w->base, (unsigned long long)size, dw->tmp, (unsigned long long)dw->size);
    return rc;
}

static void dav_wabort(void *self, void *wp)
{
    dav_writer *dw = wp;
    xfer_stream_abort(dw->st);
    discard(self, dw->tmp); /* best effort: repo_gc removes what stays */
    free(dw->tmp);
    free(dw);
}

/*
 * MOVEs the finished upload onto key ("Overwrite: F"). The key names its content, so 412 (it
 * exists) is success, and so is 404 when the key is there (a retried MOVE whose first try
 * landed). 409: the key's collection is missing; it is made and the MOVE sent again.
 */
static int dav_wcommit(void *self, void *wp, const char *key, unsigned flags, rerr *e)
{
    (void)flags; /* one class of storage here */
    webdav *w = self;
    dav_writer *dw = wp;
    int rc = dw->st ? dav_wfinish(w, dw, e) : ST_OK;
    char *dest_url = key_url(w, key);
    char *dest = xasprintf("Destination: %s", dest_url);
    struct curl_slist *headers = curl_slist_append(NULL, dest);
    headers = curl_slist_append(headers, "Overwrite: F");
    long status = 0;
    int was = xfer_shield(1); /* the upload is whole: a cancel must not cut its MOVE */
    for (int round = 0; rc == ST_OK && round < 2; round++) {
        http_req r = {.headers = headers};
        if (dav_do(w, &r, "MOVE", dw->tmp, e) != 0) {
            rc = ST_ERROR;
            break;
        }
        status = r.status;
        if (status != 409 || round > 0)
            break;
        char *dir = parent_of(key);
        rc = make_collection(w, dir, 0, e);
        free(dir);
    }
    if (rc == ST_OK && !ok_status(status) && status != 412) {
        int there = status == 404 ? dav_exists(w, key, NULL, e) : ST_NOTFOUND;
        if (there == ST_ERROR)
            rc = ST_ERROR;
        else if (there == ST_NOTFOUND)
            rc = status_error(w, "MOVE", dw->tmp, status, e);
    }
    xfer_shield(was);
    if (rc != ST_OK || status == 412)
        discard(w, dw->tmp);
    curl_slist_free_all(headers);
    free(dest);
    free(dest_url);
    free(dw->tmp);
    free(dw);
    return rc;
}

/* --- open, close --------------------------------------------------------------------------- */

static void dav_close(void *self)
{
    webdav *w = self;
    if (w == NULL)
        return;
    if (w->pool)
        xfer_pool_free(w->pool);
    free(w->base);
    free(w->base_path);
    free(w->user);
    pthread_mutex_destroy(&w->auth_mu);
    if (w->password) {
        memset(w->password, 0, strlen(w->password));
        free(w->password);
    }
    free(w);
}

/* Checks the vault's url and fills base and base_path. 0, or -1 with e set. */
static int parse_url(webdav *w, const char *url, rerr *e)
{
    if (url == NULL ||
        (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0))
        return rerr_set(e, E_INVALID,
                        "a webdav storage's vault needs \"url\": the base collection, "
                        "http://… or https://… (e.g. \"https://dav.example.com/backups/web\")");
    const char *authority = strstr(url, "://") + 3;
    const char *path = strchr(authority, '/');
    size_t alen = path ? (size_t)(path - authority) : strlen(authority);
    if (alen == 0)
        return rerr_set(e, E_INVALID, "the webdav storage's \"url\" has no host");
    if (memchr(authority, '@', alen) != NULL)
        return rerr_set(e, E_INVALID,
                        "the webdav storage's \"url\" must not carry credentials: put them in "
                        "the vault's \"user\" and \"password\"");
    if (strpbrk(url, "?# \t\r\n") != NULL)
        return rerr_set(e, E_INVALID,
                        "the webdav storage's \"url\" must be a plain collection URL, without a "
                        "query, fragment or spaces (write a space as %%20)");
    w->https = strncasecmp(url, "https://", 8) == 0;
    w->base = xstrdup(url);
    size_t n = strlen(w->base);
    while (n > 0 && w->base[n - 1] == '/')
        w->base[--n] = '\0';
    char *decoded = percent_decode(path ? path : "/");
    size_t dn = strlen(decoded);
    while (dn > 0 && decoded[dn - 1] == '/')
        decoded[--dn] = '\0';
    w->base_path = xasprintf("%s/", decoded);
    free(decoded);
    return 0;
}

static int parse_auth(webdav *w, const json_t *vault, rerr *e)
{
    const json_t *user = json_object_get(vault, "user");
    const json_t *password = json_object_get(vault, "password");
    const char *auth = json_string_value(json_object_get(vault, "auth"));
    if ((user && !json_is_string(user)) || (password && !json_is_string(password)))
        return rerr_set(e, E_INVALID,
                        "the webdav storage's \"user\" and \"password\" must be strings");
    if (password && !user)
        return rerr_set(e, E_INVALID,
                        "the webdav storage's vault has a \"password\" but no \"user\"");
    if (user && json_string_length(user) > 0) {
        w->user = xstrdup(json_string_value(user));
        w->password = xstrdup(password ? json_string_value(password) : "");
    }
    w->auth_settled = 1;
    if (auth == NULL || strcmp(auth, "any") == 0) {
        w->auth = CURLAUTH_BASIC | CURLAUTH_DIGEST;
        w->auth_settled = 0;
    } else if (strcmp(auth, "basic") == 0) {
        w->auth = CURLAUTH_BASIC;
    } else if (strcmp(auth, "digest") == 0) {
        w->auth = CURLAUTH_DIGEST;
    } else
        return rerr_set(e, E_INVALID,
                        "the webdav storage's \"auth\" must be \"any\", \"basic\" or \"digest\"");
    return 0;
}

static void *dav_open(const json_t *vault, rerr *e)
{
    webdav *w = xcalloc(1, sizeof(*w));
    pthread_mutex_init(&w->auth_mu, NULL);
    xfer_opts o;
    if (parse_url(w, json_string_value(json_object_get(vault, "url")), e) != 0 ||
        parse_auth(w, vault, e) != 0 || xfer_opts_read(vault, "webdav", &o, e) != 0) {
        dav_close(w);
        return NULL;
    }
    /* A credential over plain http only to loopback: Basic sends the password readable, and
     * even digest lets a listener replay or crack it. Refused before any request. */
    char host[256];
    plain_http_host(w->base, host, sizeof(host));
    if (!w->https && w->user != NULL && !plain_http_loopback(host)) {
        rerr_set(e, E_INVALID,
                 "the webdav storage's \"url\" %s is plain http to another machine and its "
                 "vault has a \"user\": ferry sends credentials over http only to loopback; "
                 "use https://",
                 w->base);
        dav_close(w);
        return NULL;
    }
    w->pool = xfer_pool_new(&o);
    return w;
}

const stor_ops stor_webdav_ops = {
    .name = "webdav",
    .open = dav_open,
    .put = dav_put,
    .get = dav_get,
    .list = dav_list,
    .del = dav_del,
    .exists = dav_exists,
    .close = dav_close,
    .wopen = dav_wopen,
    .wwrite = dav_wwrite,
    .wcommit = dav_wcommit,
    .wabort = dav_wabort,
    .wfinish = dav_wfinish,
    .list_tmp = dav_list_tmp,
};
