/* What the files of host/web/ share (web.h says which file does what). */
#ifndef FERRY_WEB_INT_H
#define FERRY_WEB_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "config.h"
#include "people.h"
#include "store.h"

/* people_role_name (host/people). */
static inline const char *web_role_name(enum people_role r)
{
    return people_role_name(r);
}

struct web {
    const ferry_config *cfg;
    int tls;
    int auth; /* tokens are checked: always, since host/people is linked */
    volatile int stopping;

    /* Store handles, each used by one thread at a time. */
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_cond;
    store **free_handles;
    int n_free, n_open;

    /* Sessions of logged-in browsers and per-token request counts. */
    pthread_mutex_t lock;
    json_t *sessions; /* id -> {"token","csrf","expires","checked", principal fields} */
    json_t *rates;    /* key -> [window start ms, count] */

    /* /metrics' counters, kept up to date from the ended items (metrics.c). */
    pthread_mutex_t metrics_lock;
    json_t *fn_stats;     /* function -> [completed, failed, count, sum ms, buckets…] */
    int64_t watermark_ms; /* items finished before it are counted */
    json_t *gauges;       /* store_web_gauges' last answer (metrics_refresh), or NULL */
    pthread_t refresher;  /* refreshes counters and gauges every METRICS_REFRESH_MS */
    int refresher_started;
};

/* One request. */
struct req {
    struct web *w;
    struct MHD_Connection *conn;
    const char *method, *url;
    char *body;
    size_t len;
    int too_big;
    store *st;            /* a pooled handle while the request needs one */
    struct principal p;   /* who asks (after web_authenticate) */
    int via_cookie;       /* authenticated by the session cookie */
    char address[64];     /* the client's */
    char csrf[80];        /* set by login: goes back in the answer */
};

/* Answers with body (taken: freed by MHD) and extra headers (name, value, …, NULL). */
enum MHD_Result web_reply(struct req *r, unsigned status, const char *type, char *body,
                          size_t len, ...);
/* Answers a JSON envelope (stolen). */
enum MHD_Result web_json(struct req *r, unsigned status, json_t *env);
/* Answers {"success":false,"data":null,"error":…}. */
enum MHD_Result web_error(struct req *r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A store handle for this request (r->st), from the pool; NULL (after answering 500 or
 * 503) when the store cannot be opened. Given back when the request ends. */
store *web_store(struct req *r);

/* Authenticates the request (bearer token or session cookie). 0, or an HTTP status (401)
 * after which the caller answers. */
int web_authenticate(struct req *r);
/* Whether r->p may act on team with role need: 0, or 401/403 already answered. */
int web_allowed(struct req *r, const char *team, enum people_role need);

/* Starts a session for the authenticated principal: Set-Cookie value into cookie, the
 * CSRF token into r->csrf. */
void web_session_start(struct req *r, const char *token, char *cookie, size_t len);
/* Ends the request's session (logout). */
void web_session_end(struct req *r);

/* Routes of /api/v1 (api.c). */
enum MHD_Result api_handle(struct req *r);
/* /metrics, /healthz, /api/v1/summary, /api/v1/events (metrics.c). */
enum MHD_Result metrics_serve(struct req *r);
enum MHD_Result healthz_serve(struct req *r);
enum MHD_Result summary_serve(struct req *r);
enum MHD_Result events_serve(struct req *r);
/* Counts the items ended since the last call into w->fn_stats (under metrics_lock). */
int metrics_catch_up(struct web *w, store *st, char *err, size_t errlen);
/* Reads the counters and the gauges afresh into w (metrics_catch_up, w->gauges). */
int metrics_refresh(struct web *w, store *st, char *err, size_t errlen);
/* The refresher thread: metrics_refresh every METRICS_REFRESH_MS until w->stopping. */
void *metrics_refresher(void *arg);
#define METRICS_REFRESH_MS 5000
/* A store handle from the pool for work outside a request (NULL when none can be opened),
 * and its return. */
store *web_store_take(struct web *w);
void web_store_put(struct web *w, store *st);

#endif
