/*
 * ferry web's server (web.h): the libmicrohttpd daemon, request bodies and their limits, the
 * pool of store handles, per-token rate limits, browser sessions with their CSRF tokens,
 * authentication, and the dashboard's files.
 */
#include "web.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "assets.h"
#include "lazy_lib.h"
#include "log.h"
#include "util.h"
#include "web_int.h"

extern struct lazy_lib lazy_mhd_lib;

#define SESSION_MS       (12 * 3600 * 1000LL) /* a browser session lasts this long */
#define SESSION_CHECK_MS 30000                /* a session's token is checked again after */
#define MAX_SESSIONS     10000
#define RATE_WINDOW_MS   60000
#define MAX_RATE_KEYS    100000

/* --- answers ----------------------------------------------------------------------------- */

static void security_headers(struct req *r, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; style-src 'self' "
                            "'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; "
                            "base-uri 'none'; form-action 'self'");
    if (r->w->tls)
        MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
}

enum MHD_Result web_reply(struct req *r, unsigned status, const char *type, char *body, size_t len,
                          ...)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    security_headers(r, resp);
    va_list ap;
    va_start(ap, len);
    for (const char *name; (name = va_arg(ap, const char *)) != NULL;)
        MHD_add_response_header(resp, name, va_arg(ap, const char *));
    va_end(ap);
    enum MHD_Result rc = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

enum MHD_Result web_json(struct req *r, unsigned status, json_t *env)
{
    /* jansson escapes every string: '<' and '>' stay as they are but inside a JSON string
     * served as application/json with nosniff, nothing runs. */
    char *text = json_dumps(env, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    json_decref(env);
    if (text == NULL)
        return MHD_NO;
    size_t n = strlen(text);
    char *body = realloc(text, n + 2);
    if (body == NULL) {
        free(text);
        return MHD_NO;
    }
    body[n] = '\n';
    body[n + 1] = '\0';
    return web_reply(r, status, "application/json", body, n + 1, NULL);
}

enum MHD_Result web_error(struct req *r, unsigned status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return web_json(r, status, json_pack("{s:b,s:n,s:s}", "success", 0, "data", "error", msg));
}

/* --- store handles ------------------------------------------------------------------------ */

store *web_store(struct req *r)
{
    if (r->st)
        return r->st;
    struct web *w = r->w;
    pthread_mutex_lock(&w->pool_lock);
    while (w->n_free == 0 && w->n_open >= w->cfg->web_store_handles)
        pthread_cond_wait(&w->pool_cond, &w->pool_lock);
    if (w->n_free > 0) {
        r->st = w->free_handles[--w->n_free];
        pthread_mutex_unlock(&w->pool_lock);
        return r->st;
    }
    w->n_open++;
    pthread_mutex_unlock(&w->pool_lock);
    char err[1024];
    r->st = store_open_config(w->cfg, err, sizeof(err));
    if (r->st == NULL) {
        pthread_mutex_lock(&w->pool_lock);
        w->n_open--;
        pthread_cond_signal(&w->pool_cond);
        pthread_mutex_unlock(&w->pool_lock);
        hlog(LOG_ERROR, "web: cannot open the store: %s", err);
        if (r->conn)
            web_error(r, 503, "the store cannot be opened: %s", err);
    }
    return r->st;
}

store *web_store_take(struct web *w)
{
    struct req tmp = {.w = w};
    return web_store(&tmp);
}

void web_store_put(struct web *w, store *st)
{
    store_set_actor(st, NULL);
    pthread_mutex_lock(&w->pool_lock);
    w->free_handles[w->n_free++] = st;
    pthread_cond_signal(&w->pool_cond);
    pthread_mutex_unlock(&w->pool_lock);
}

static void store_give_back(struct req *r)
{
    if (r->st == NULL)
        return;
    web_store_put(r->w, r->st);
    r->st = NULL;
}

/* --- rate limits ----------------------------------------------------------------------------- */

/* Counts a request of key; 0 when allowed, else the seconds until the window ends. */
static int rate_take(struct web *w, const char *key)
{
    int64_t now = now_ms();
    int wait = 0;
    pthread_mutex_lock(&w->lock);
    if (json_object_size(w->rates) > MAX_RATE_KEYS)
        json_object_clear(w->rates);
    json_t *e = json_object_get(w->rates, key);
    if (e == NULL || now - json_integer_value(json_array_get(e, 0)) >= RATE_WINDOW_MS) {
        json_object_set_new(w->rates, key, json_pack("[I,i]", (json_int_t)now, 1));
    } else {
        json_int_t n = json_integer_value(json_array_get(e, 1)) + 1;
        json_array_set_new(e, 1, json_integer(n));
        if (n > w->cfg->web_rate_limit)
            wait = (int)((json_integer_value(json_array_get(e, 0)) + RATE_WINDOW_MS - now + 999) /
                         1000);
    }
    pthread_mutex_unlock(&w->lock);
    return wait;
}

/* --- sessions and authentication ----------------------------------------------------------- */

static void random_hex(char *out, size_t bytes)
{
    unsigned char buf[64];
    if (bytes > sizeof(buf))
        bytes = sizeof(buf);
    size_t got = 0;
    while (got < bytes) {
        ssize_t n = getrandom(buf + got, bytes - got, 0);
        if (n < 0 && errno != EINTR)
            abort(); /* no randomness: no session may be made */
        if (n > 0)
            got += (size_t)n;
    }
    for (size_t i = 0; i < bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", buf[i]);
}

/* Compares two secrets in time that does not depend on where they differ. */
static int same_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la && i < lb; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

/* The value of cookie name in the Cookie header, copied into out; 0 when found. */
static int cookie_value(struct req *r, const char *name, char *out, size_t len)
{
    const char *v = MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, name);
    if (v == NULL || strlen(v) >= len)
        return -1;
    snprintf(out, len, "%s", v);
    return 0;
}

static void principal_to_json(const struct principal *p, json_t *o)
{
    json_object_set_new(o, "user", json_string(p->user));
    json_object_set_new(o, "team", json_string(p->team));
    json_object_set_new(o, "role", json_integer(p->role));
    json_object_set_new(o, "tokenId", json_integer(p->token_id));
}

static void principal_from_json(const json_t *o, struct principal *p)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->user, sizeof(p->user), "%s", json_string_value(json_object_get(o, "user")));
    snprintf(p->team, sizeof(p->team), "%s", json_string_value(json_object_get(o, "team")));
    p->role = (enum people_role)json_integer_value(json_object_get(o, "role"));
    p->token_id = json_integer_value(json_object_get(o, "tokenId"));
    snprintf(p->via, sizeof(p->via), "api");
}

void web_session_start(struct req *r, const char *token, char *cookie, size_t len)
{
    char sid[65];
    random_hex(sid, 32);
    random_hex(r->csrf, 32);
    json_t *s = json_pack("{s:s,s:s,s:I,s:I}", "token", token, "csrf", r->csrf, "expires",
                          (json_int_t)(now_ms() + SESSION_MS), "checked", (json_int_t)now_ms());
    principal_to_json(&r->p, s);
    pthread_mutex_lock(&r->w->lock);
    if (json_object_size(r->w->sessions) >= MAX_SESSIONS) {
        /* Drop the expired ones; if none, the oldest half goes. */
        const char *k;
        json_t *v;
        void *tmp;
        int64_t now = now_ms();
        json_object_foreach_safe(r->w->sessions, tmp, k, v) if (
            json_integer_value(json_object_get(v, "expires")) < now ||
            json_object_size(r->w->sessions) >= MAX_SESSIONS) json_object_del(r->w->sessions, k);
    }
    json_object_set_new(r->w->sessions, sid, s);
    pthread_mutex_unlock(&r->w->lock);
    snprintf(cookie, len, "ferry_session=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%lld%s",
             sid, SESSION_MS / 1000, r->w->tls ? "; Secure" : "");
}

void web_session_end(struct req *r)
{
    char sid[80];
    if (cookie_value(r, "ferry_session", sid, sizeof(sid)) != 0)
        return;
    pthread_mutex_lock(&r->w->lock);
    json_object_del(r->w->sessions, sid);
    pthread_mutex_unlock(&r->w->lock);
}

static int is_state_changing(const char *method)
{
    return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
}

/* The session named by the cookie: fills r->p, checking its token again now and then. */
static int session_auth(struct req *r, const char *sid)
{
    struct web *w = r->w;
    char token[512] = "", csrf[80] = "";
    int64_t now = now_ms(), checked = 0;
    pthread_mutex_lock(&w->lock);
    json_t *s = json_object_get(w->sessions, sid);
    if (s && json_integer_value(json_object_get(s, "expires")) < now) {
        json_object_del(w->sessions, sid);
        s = NULL;
    }
    if (s) {
        snprintf(token, sizeof(token), "%s", json_string_value(json_object_get(s, "token")));
        snprintf(csrf, sizeof(csrf), "%s", json_string_value(json_object_get(s, "csrf")));
        checked = json_integer_value(json_object_get(s, "checked"));
        principal_from_json(s, &r->p);
    }
    pthread_mutex_unlock(&w->lock);
    if (s == NULL)
        return 401;
    if (is_state_changing(r->method)) {
        const char *sent = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-CSRF-Token");
        if (sent == NULL || !same_secret(sent, csrf))
            return 403;
    }
    if (w->auth && now - checked >= SESSION_CHECK_MS) {
        char err[512];
        if (web_store(r) == NULL)
            return -1;
        if (people_authenticate(r->st, token, r->address, &r->p, err, sizeof(err)) != STORE_OK) {
            pthread_mutex_lock(&w->lock);
            json_object_del(w->sessions, sid);
            pthread_mutex_unlock(&w->lock);
            return 401;
        }
        pthread_mutex_lock(&w->lock);
        json_t *again = json_object_get(w->sessions, sid);
        if (again)
            json_object_set_new(again, "checked", json_integer(now));
        pthread_mutex_unlock(&w->lock);
    }
    r->via_cookie = 1;
    return 0;
}

int web_authenticate(struct req *r)
{
    snprintf(r->p.via, sizeof(r->p.via), "api");
    snprintf(r->p.address, sizeof(r->p.address), "%s", r->address);
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    char sid[80];
    int rc;
    if (h != NULL) {
        if (strncasecmp(h, "Bearer ", 7) != 0 || h[7] == '\0') {
            web_error(r, 401, "give the token as Authorization: Bearer TOKEN");
            return 401;
        }
        if (!r->w->auth) {
            rc = 0;
        } else {
            char err[512];
            if (web_store(r) == NULL)
                return 503;
            rc = people_authenticate(r->st, h + 7, r->address, &r->p, err, sizeof(err)) == STORE_OK
                     ? 0
                     : 401;
        }
    } else if (cookie_value(r, "ferry_session", sid, sizeof(sid)) == 0) {
        rc = session_auth(r, sid);
        if (rc < 0)
            return 503;
    } else if (!r->w->auth) {
        rc = 0;
    } else {
        rc = 401;
    }
    if (rc == 0 && !r->w->auth && !r->via_cookie) {
        /* No people module: everyone is an admin of every team, as the CLI on the store. */
        snprintf(r->p.user, sizeof(r->p.user), "anonymous");
        r->p.team[0] = '\0';
        r->p.role = ROLE_ADMIN;
    }
    snprintf(r->p.via, sizeof(r->p.via), "api");
    snprintf(r->p.address, sizeof(r->p.address), "%s", r->address);
    if (rc == 401)
        web_error(r, 401, "a valid token is needed: Authorization: Bearer TOKEN (ferry create "
                          "token), or log in");
    else if (rc == 403)
        web_error(r, 403, "a request made with the session cookie must send its CSRF token in "
                          "X-CSRF-Token");
    if (rc == 0 && r->w->auth) {
        if (web_store(r) == NULL)
            return 503;
        store_set_actor(r->st, &r->p);
    }
    return rc;
}

int web_allowed(struct req *r, const char *team, enum people_role need)
{
    int rc;
    if (r->w->auth)
        rc = people_allowed(&r->p, team, need);
    else
        rc = 0;
    if (rc == 401)
        web_error(r, 401, "a valid token is needed");
    else if (rc != 0)
        web_error(r, 403, "the token (team %s, role %s) may not do this%s%s",
                  r->p.team[0] ? r->p.team : "every", web_role_name(r->p.role),
                  team ? " for team " : "", team ? team : "");
    return rc;
}

/* --- requests ---------------------------------------------------------------------------------- */

static enum MHD_Result serve_asset(struct req *r)
{
    const char *path = strcmp(r->url, "/index.html") == 0 ? "/" : r->url;
    const struct web_asset *a = web_asset_find(path);
    if (a == NULL)
        return web_error(r, 404, "no route %s %s", r->method, r->url);
    if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0)
        return web_error(r, 405, "%s takes GET", r->url);
    char *copy = malloc(a->len ? a->len : 1);
    if (copy == NULL)
        return MHD_NO;
    memcpy(copy, a->data, a->len);
    return web_reply(r, 200, a->content_type, copy, a->len, NULL);
}

static void client_address(struct req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(r->address, sizeof(r->address), "?");
    if (ci == NULL || ci->client_addr == NULL)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, r->address,
                  sizeof(r->address));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                  r->address, sizeof(r->address));
}

static enum MHD_Result dispatch(struct req *r)
{
    if (r->too_big)
        return web_error(r, 413, "the request body is over web.max_body_bytes (%d bytes)",
                         r->w->cfg->web_max_body);
    if (strcmp(r->url, "/healthz") == 0)
        return healthz_serve(r);
    if (strcmp(r->url, "/metrics") == 0)
        return metrics_serve(r);
    if (strncmp(r->url, "/api/", 5) != 0)
        return serve_asset(r);
    /* The API: counted per token (or, before one is known, per address). Login checks
     * the token of its body itself. */
    int rc = strcmp(r->url, "/api/v1/login") == 0 ? -1 : web_authenticate(r);
    char key[200];
    if (rc == 0 && r->p.token_id)
        snprintf(key, sizeof(key), "t:%lld", (long long)r->p.token_id);
    else if (rc == 0 && r->via_cookie)
        snprintf(key, sizeof(key), "u:%s", r->p.user);
    else
        snprintf(key, sizeof(key), "a:%s", r->address);
    int wait = rate_take(r->w, key);
    if (rc > 0)
        return MHD_YES; /* answered */
    if (wait > 0) {
        char secs[16];
        snprintf(secs, sizeof(secs), "%d", wait);
        char *body = xasprintf("{\"success\":false,\"data\":null,\"error\":\"more than %d "
                               "requests in a minute; try again in %d s\"}\n",
                               r->w->cfg->web_rate_limit, wait);
        return web_reply(r, 429, "application/json", body, strlen(body), "Retry-After", secs,
                         NULL);
    }
    return api_handle(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    struct web *w = cls;
    struct req *r = *con_cls;
    if (r == NULL) {
        r = calloc(1, sizeof(*r));
        if (r == NULL)
            return MHD_NO;
        r->w = w;
        r->conn = conn;
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoll(cl, NULL, 10) > w->cfg->web_max_body) {
            /* Refused before a byte of it is read: MHD closes the connection after. */
            r->too_big = 1;
            r->url = url;
            r->method = method;
            return web_error(r, 413, "the request body is over web.max_body_bytes (%d bytes)",
                             w->cfg->web_max_body);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!r->too_big && r->len + *upload_data_size <= (size_t)w->cfg->web_max_body) {
            char *grown = realloc(r->body, r->len + *upload_data_size + 1);
            if (grown == NULL)
                return MHD_NO;
            r->body = grown;
            memcpy(r->body + r->len, upload_data, *upload_data_size);
            r->len += *upload_data_size;
            r->body[r->len] = '\0';
        } else {
            r->too_big = 1;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    r->url = url;
    r->method = method;
    client_address(r);
    enum MHD_Result rc = dispatch(r);
    store_give_back(r);
    return rc;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct req *r = *con_cls;
    if (r == NULL)
        return;
    store_give_back(r);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    hlog(LOG_DEBUG, "web: %s", msg);
}

/* --- start and stop ------------------------------------------------------------------------ */

int web_parse_listen(const char *text, char *addr, size_t addrlen, int *port)
{
    const char *colon;
    size_t alen;
    const char *a = text;
    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        a = text + 1;
        alen = (size_t)(end - a);
        colon = end + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL)
            return -1;
        alen = (size_t)(colon - text);
    }
    if (alen == 0 || alen >= addrlen)
        return -1;
    memcpy(addr, a, alen);
    addr[alen] = '\0';
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end != '\0' || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    struct in6_addr six;
    struct in_addr four;
    if (inet_pton(AF_INET, addr, &four) != 1 && inet_pton(AF_INET6, addr, &six) != 1)
        return -1;
    return 0;
}

static char *read_pem(const char *path, const char *what)
{
    char err[512];
    size_t len;
    char *text = read_file_capped(path, 1 << 20, &len, err, sizeof(err));
    if (text == NULL)
        hlog(LOG_ERROR, "web.%s: %s", what, err);
    return text;
}

int web_run(const ferry_config *cfg, const char *listen)
{
    const char *where = listen ? listen : cfg->web_listen;
    char addr[128];
    int port;
    if (web_parse_listen(where, addr, sizeof(addr), &port) != 0) {
        hlog(LOG_ERROR, "%s '%s' is not ADDR:PORT with a numeric address (127.0.0.1:8642, "
                        "[::1]:8642)", listen ? "--listen" : "web.listen", where);
        return -1;
    }
    if ((cfg->web_tls_cert[0] != '\0') != (cfg->web_tls_key[0] != '\0')) {
        hlog(LOG_ERROR, "web.tls_cert and web.tls_key go together: set both for HTTPS, or "
                        "neither");
        return -1;
    }
    char err[600];
    if (lazy_lib_load(&lazy_mhd_lib, err, sizeof(err)) != 0) {
        hlog(LOG_ERROR, "ferry web needs libmicrohttpd: %s", err);
        return -1;
    }
    struct web w = {.cfg = cfg, .tls = cfg->web_tls_cert[0] != '\0'};
    w.auth = 1;
    pthread_mutex_init(&w.pool_lock, NULL);
    pthread_cond_init(&w.pool_cond, NULL);
    pthread_mutex_init(&w.lock, NULL);
    pthread_mutex_init(&w.metrics_lock, NULL);
    w.free_handles = calloc((size_t)cfg->web_store_handles, sizeof(*w.free_handles));
    w.sessions = json_object();
    w.rates = json_object();
    w.fn_stats = json_object();

    /* The store answers before anything listens, and the counters start from it. */
    store *st = store_open_config(cfg, err, sizeof(err));
    if (st == NULL) {
        hlog(LOG_ERROR, "%s", err);
        return -1;
    }
    int64_t t0 = mono_ms();
    if (metrics_refresh(&w, st, err, sizeof(err)) != 0) {
        hlog(LOG_ERROR, "cannot read the ended items: %s", err);
        store_close(st);
        return -1;
    }
    w.free_handles[w.n_free++] = st;
    w.n_open = 1;

    char *cert = NULL, *key = NULL;
    if (w.tls) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            hlog(LOG_ERROR, "this libmicrohttpd has no TLS support");
            return -1;
        }
        if ((cert = read_pem(cfg->web_tls_cert, "tls_cert")) == NULL ||
            (key = read_pem(cfg->web_tls_key, "tls_key")) == NULL) {
            free(cert);
            return -1;
        }
    }
    struct sockaddr_storage ss = {0};
    int v6 = strchr(addr, ':') != NULL;
    if (v6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, addr, &s6->sin6_addr);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, addr, &s4->sin_addr);
    }
    /* Signals are taken by sigwait below: every thread MHD starts inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0) |
                     (w.tls ? MHD_USE_TLS : 0);
    struct MHD_OptionItem tls_opts[] = {
        {w.tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, key},
        {MHD_OPTION_END, 0, NULL},
    };
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_request, &w, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->web_timeout,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->web_max_connections,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->web_max_header + 1024,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, &w, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log,
        &w, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    if (d == NULL) {
        hlog(LOG_ERROR, "cannot listen on %s: %s", where,
             errno ? strerror(errno) : "libmicrohttpd refused to start (see debug log)");
        free(cert);
        free(key);
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int bound = di ? (int)di->port : port;
    hlog(LOG_INFO, "ferry %s web listening on %s://%s%s%s:%d (store %s, %s; %s; counters from %lld "
                   "ms of reading)",
         FERRY_VERSION, w.tls ? "https" : "http", v6 ? "[" : "", addr, v6 ? "]" : "", bound,
         store_config_target(cfg), store_driver_name(st),
         w.auth ? "tokens required" : "NO AUTHENTICATION (built without host/people)",
         (long long)(mono_ms() - t0));
    w.refresher_started = pthread_create(&w.refresher, NULL, metrics_refresher, &w) == 0;
    int sig = 0;
    while (sig != SIGTERM && sig != SIGINT)
        sigwait(&set, &sig);
    hlog(LOG_INFO, "web: stopping");
    w.stopping = 1;
    MHD_stop_daemon(d);
    if (w.refresher_started)
        pthread_join(w.refresher, NULL);
    for (int i = 0; i < w.n_free; i++)
        store_close(w.free_handles[i]);
    free(w.free_handles);
    json_decref(w.sessions);
    json_decref(w.rates);
    json_decref(w.fn_stats);
    json_decref(w.gauges);
    free(cert);
    free(key);
    return 0;
}
