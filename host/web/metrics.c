/*
 * /metrics (Prometheus text format 0.0.4), /healthz, /api/v1/summary and the event stream
 * /api/v1/events. Gauges are read afresh at each scrape through indexes (hosts.h:
 * store_web_gauges). The counters and the duration histogram would need the whole history
 * each time, so they are kept here instead: added up once at start, then at each scrape
 * for the items that ended since, in one aggregate query over qi_finished
 * (store_web_ended). An item is counted once its end is SETTLE_MS old, so that an end
 * committed a little after a later one is still counted, once.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hosts.h"
#include "log.h"
#include "util.h"
#include "web_int.h"

#define SETTLE_MS 5000

#define N_BUCKETS STORE_WEB_BUCKETS
/* fn_stats entries: [completed, failed, count, sum ms, bucket 0 … N_BUCKETS-1] */
#define ST_COMPLETED 0
#define ST_FAILED    1
#define ST_COUNT     2
#define ST_SUM_MS    3
#define ST_BUCKET0   4

static void bump(json_t *a, size_t i, json_int_t by)
{
    json_array_set_new(a, i, json_integer(json_integer_value(json_array_get(a, i)) + by));
}

/* Adds one row of store_web_ended to the counters. */
static void count_row(struct web *w, const json_t *row)
{
    const char *fn = json_string_value(json_array_get(row, 0));
    const char *status = json_string_value(json_array_get(row, 1));
    json_int_t n = json_integer_value(json_array_get(row, 2));
    json_t *st = json_object_get(w->fn_stats, fn ? fn : "?");
    if (st == NULL) {
        st = json_array();
        for (size_t i = 0; i < ST_BUCKET0 + N_BUCKETS; i++)
            json_array_append_new(st, json_integer(0));
        json_object_set_new(w->fn_stats, fn ? fn : "?", st);
    }
    if (status && !strcmp(status, "COMPLETED"))
        bump(st, ST_COMPLETED, n);
    else if (status && !strcmp(status, "FAILED"))
        bump(st, ST_FAILED, n);
    if (status && !strcmp(status, "CANCELLED"))
        return; /* a cancelled attempt's run time says nothing of the function */
    bump(st, ST_COUNT, json_integer_value(json_array_get(row, 3)));
    bump(st, ST_SUM_MS, json_integer_value(json_array_get(row, 4)));
    for (size_t b = 0; b < N_BUCKETS; b++)
        bump(st, ST_BUCKET0 + b, json_integer_value(json_array_get(row, 5 + b)));
}

int metrics_catch_up(struct web *w, store *st, char *err, size_t errlen)
{
    pthread_mutex_lock(&w->metrics_lock);
    int64_t hi = now_ms() - SETTLE_MS;
    int rc = STORE_OK;
    if (hi > w->watermark_ms) {
        json_t *rows = NULL;
        rc = store_web_ended(st, w->watermark_ms, hi, &rows, err, errlen);
        if (rc == STORE_OK) {
            size_t i;
            json_t *row;
            json_array_foreach(rows, i, row) count_row(w, row);
            w->watermark_ms = hi;
        }
        json_decref(rows);
    }
    pthread_mutex_unlock(&w->metrics_lock);
    return rc;
}

int metrics_refresh(struct web *w, store *st, char *err, size_t errlen)
{
    json_t *g = NULL;
    int rc = metrics_catch_up(w, st, err, errlen);
    if (rc == STORE_OK)
        rc = store_web_gauges(st, now_ms(), &g, err, errlen);
    if (rc != STORE_OK)
        return rc;
    pthread_mutex_lock(&w->metrics_lock);
    json_decref(w->gauges);
    w->gauges = g;
    pthread_mutex_unlock(&w->metrics_lock);
    return STORE_OK;
}

void *metrics_refresher(void *arg)
{
    struct web *w = arg;
    while (!w->stopping) {
        for (int i = 0; i < METRICS_REFRESH_MS / 100 && !w->stopping; i++)
            usleep(100 * 1000);
        if (w->stopping)
            break;
        store *st = web_store_take(w);
        if (st == NULL)
            continue;
        char err[512];
        if (metrics_refresh(w, st, err, sizeof(err)) != STORE_OK)
            hlog(LOG_WARN, "web: metrics not refreshed: %s", err);
        web_store_put(w, st);
    }
    return NULL;
}

/* --- text building ---------------------------------------------------------------------------- */

struct text {
    char *buf;
    size_t len;
    FILE *f;
};

/* Writes a label value escaped as the exposition format says (\\, \", \n). */
static void label(FILE *f, const char *name, const char *value)
{
    fprintf(f, "%s=\"", name);
    for (const char *p = value ? value : ""; *p; p++) {
        if (*p == '\\' || *p == '"')
            fputc('\\', f), fputc(*p, f);
        else if (*p == '\n')
            fputs("\\n", f);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static enum MHD_Result text_reply(struct req *r, unsigned status, const char *type, const char *text)
{
    char *copy = xstrdup(text);
    return web_reply(r, status, type, copy, strlen(copy), NULL);
}

enum MHD_Result metrics_serve(struct req *r)
{
    if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0)
        return web_error(r, 405, "%s takes GET", r->url);
    /* The figures the refresher read at most METRICS_REFRESH_MS ago: a scrape costs the
     * same whatever the store holds. */
    char err[512];
    int64_t now = now_ms();
    pthread_mutex_lock(&r->w->metrics_lock);
    json_t *g = json_incref(r->w->gauges);
    pthread_mutex_unlock(&r->w->metrics_lock);
    if (g == NULL) {
        if (web_store(r) == NULL)
            return MHD_YES;
        if (metrics_refresh(r->w, r->st, err, sizeof(err)) != STORE_OK)
            return web_error(r, 500, "%s", err);
        pthread_mutex_lock(&r->w->metrics_lock);
        g = json_incref(r->w->gauges);
        pthread_mutex_unlock(&r->w->metrics_lock);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    head(f, "ferry_up", "gauge", "1 while ferry web answers.");
    fputs("ferry_up 1\n", f);
    head(f, "ferry_queue_depth", "gauge",
         "Items not yet ended, by bridge, status and priority.");
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(g, "depth"), i, row)
    {
        fputs("ferry_queue_depth{", f);
        label(f, "bridge", json_string_value(json_array_get(row, 0)));
        fputc(',', f);
        label(f, "status", json_string_value(json_array_get(row, 1)));
        fprintf(f, ",priority=\"%lld\"} %lld\n", (long long)json_integer_value(json_array_get(row, 2)),
                (long long)json_integer_value(json_array_get(row, 3)));
    }
    int64_t oldest = json_integer_value(json_object_get(g, "oldestPendingMs"));
    head(f, "ferry_oldest_pending_age_seconds", "gauge",
         "Age of the oldest PENDING item (0 when none).");
    fprintf(f, "ferry_oldest_pending_age_seconds %.3f\n",
            oldest > 0 && now > oldest ? (double)(now - oldest) / 1000.0 : 0.0);
    head(f, "ferry_hosts_alive", "gauge", "Hosts whose heartbeat is at most 30 s old.");
    fprintf(f, "ferry_hosts_alive %lld\n",
            (long long)json_integer_value(json_object_get(g, "hostsAlive")));
    head(f, "ferry_schedule_fire_delay_seconds", "gauge",
         "How late each schedule's last fire created its item.");
    json_array_foreach(json_object_get(g, "scheduleDelays"), i, row)
    {
        fputs("ferry_schedule_fire_delay_seconds{", f);
        label(f, "team", json_string_value(json_array_get(row, 0)));
        fputc(',', f);
        label(f, "schedule", json_string_value(json_array_get(row, 1)));
        fprintf(f, "} %.3f\n", (double)json_integer_value(json_array_get(row, 2)) / 1000.0);
    }
    json_decref(g);
    pthread_mutex_lock(&r->w->metrics_lock);
    json_t *stats = json_deep_copy(r->w->fn_stats);
    pthread_mutex_unlock(&r->w->metrics_lock);
    const char *fn;
    json_t *st;
    head(f, "ferry_items_completed_total", "counter", "Items that ended COMPLETED, by function.");
    json_object_foreach(stats, fn, st)
    {
        fputs("ferry_items_completed_total{", f);
        label(f, "function", fn);
        fprintf(f, "} %lld\n", (long long)json_integer_value(json_array_get(st, ST_COMPLETED)));
    }
    head(f, "ferry_items_failed_total", "counter", "Items that ended FAILED, by function.");
    json_object_foreach(stats, fn, st)
    {
        fputs("ferry_items_failed_total{", f);
        label(f, "function", fn);
        fprintf(f, "} %lld\n", (long long)json_integer_value(json_array_get(st, ST_FAILED)));
    }
    head(f, "ferry_attempt_duration_seconds", "histogram",
         "Run time of the last attempt of ended items, by function.");
    json_object_foreach(stats, fn, st)
    {
        for (size_t b = 0; b <= N_BUCKETS; b++) {
            fputs("ferry_attempt_duration_seconds_bucket{", f);
            label(f, "function", fn);
            if (b < N_BUCKETS)
                fprintf(f, ",le=\"%g\"} %lld\n", (double)store_web_bucket_ms[b] / 1000.0,
                        (long long)json_integer_value(json_array_get(st, ST_BUCKET0 + b)));
            else
                fprintf(f, ",le=\"+Inf\"} %lld\n",
                        (long long)json_integer_value(json_array_get(st, ST_COUNT)));
        }
        fputs("ferry_attempt_duration_seconds_sum{", f);
        label(f, "function", fn);
        fprintf(f, "} %.3f\n", (double)json_integer_value(json_array_get(st, ST_SUM_MS)) / 1000.0);
        fputs("ferry_attempt_duration_seconds_count{", f);
        label(f, "function", fn);
        fprintf(f, "} %lld\n", (long long)json_integer_value(json_array_get(st, ST_COUNT)));
    }
    json_decref(stats);
    fclose(f);
    return web_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", buf, len, NULL);
}

enum MHD_Result healthz_serve(struct req *r)
{
    if (web_store(r) == NULL)
        return MHD_YES;
    json_t *rows = NULL;
    char err[512];
    /* One indexed read: the store answers. */
    if (store_web_ended(r->st, now_ms(), now_ms(), &rows, err, sizeof(err)) != STORE_OK)
        return text_reply(r, 503, "text/plain; charset=utf-8", "store unavailable\n");
    json_decref(rows);
    return text_reply(r, 200, "text/plain; charset=utf-8", "ok\n");
}

enum MHD_Result summary_serve(struct req *r)
{
    if (web_allowed(r, r->p.team[0] ? r->p.team : NULL, ROLE_VIEWER) != 0)
        return MHD_YES;
    char err[512];
    json_t *counts = NULL, *g = NULL;
    int64_t now = now_ms();
    if (store_queue_counts(r->st, NULL, &counts, err, sizeof(err)) != STORE_OK ||
        store_web_gauges(r->st, now, &g, err, sizeof(err)) != STORE_OK) {
        json_decref(counts);
        return web_error(r, 500, "%s", err);
    }
    json_t *pending = json_object();
    for (int p = 1; p <= 5; p++) {
        char k[4];
        snprintf(k, sizeof(k), "%d", p);
        json_object_set_new(pending, k, json_integer(0));
    }
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(g, "depth"), i, row)
    {
        if (strcmp(json_string_value(json_array_get(row, 1)), "PENDING") != 0)
            continue;
        char k[24];
        snprintf(k, sizeof(k), "%lld", (long long)json_integer_value(json_array_get(row, 2)));
        json_t *cur = json_object_get(pending, k);
        json_object_set_new(pending, k,
                            json_integer(json_integer_value(cur) +
                                         json_integer_value(json_array_get(row, 3))));
    }
    int64_t oldest = json_integer_value(json_object_get(g, "oldestPendingMs"));
    json_t *data = json_pack("{s:o,s:o,s:O,s:I}", "byStatus", counts, "pendingByPriority",
                             pending, "hostsAlive", json_object_get(g, "hostsAlive"),
                             "oldestPendingAgeSeconds",
                             (json_int_t)(oldest > 0 && now > oldest ? (now - oldest) / 1000 : 0));
    json_decref(g);
    return web_json(r, 200, json_pack("{s:b,s:o,s:s}", "success", 1, "data", data, "message", ""));
}

/* --- server-sent events ---------------------------------------------------------------------- */

#define EVENTS_POLL_MS   1000
#define EVENTS_START_MS  60000 /* a new stream starts with the changes of the last minute */
#define EVENTS_PER_POLL  500

struct stream {
    struct web *w;
    char team[64]; /* "" = every team */
    int64_t since_ms;
    int64_t last_sent_mono;
    json_t *sent; /* taskId -> "status|percent|updated" last sent */
    char *pending;
    size_t pending_len, pending_pos;
};

static void stream_free(void *cls)
{
    struct stream *s = cls;
    json_decref(s->sent);
    free(s->pending);
    free(s);
}

/* Polls the store once; appends the events of what changed to s->pending. */
static void stream_poll(struct stream *s)
{
    struct req tmp = {.w = s->w};
    char err[512];
    json_t *rows = NULL;
    int64_t asked = s->since_ms;
    if (web_store(&tmp) == NULL)
        return;
    int rc = store_web_changes(tmp.st, asked - SETTLE_MS, s->team[0] ? s->team : NULL,
                               EVENTS_PER_POLL, &rows, err, sizeof(err));
    /* Give the handle back at once: a stream must not hold one while it waits. */
    web_store_put(s->w, tmp.st);
    if (rc != STORE_OK)
        return;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        const char *id = json_string_value(json_object_get(row, "taskId"));
        json_t *pr = json_object_get(row, "progress");
        int64_t upd = json_integer_value(json_object_get(row, "updatedTimeMs"));
        char state[128];
        snprintf(state, sizeof(state), "%s|%lld|%lld",
                 json_string_value(json_object_get(row, "status")),
                 json_is_object(pr) ? (long long)json_integer_value(json_object_get(pr, "percent"))
                                    : -1LL,
                 (long long)upd);
        if (upd > s->since_ms)
            s->since_ms = upd;
        const char *before = json_string_value(json_object_get(s->sent, id));
        if (before && strcmp(before, state) == 0)
            continue;
        json_object_set_new(s->sent, id, json_string(state));
        json_object_del(row, "updatedTimeMs");
        char *text = json_dumps(row, JSON_COMPACT);
        fprintf(f, "event: item\ndata: %s\n\n", text);
        free(text);
    }
    json_decref(rows);
    if (json_object_size(s->sent) > 20000)
        json_object_clear(s->sent);
    fclose(f);
    if (len) {
        free(s->pending);
        s->pending = buf;
        s->pending_len = len;
        s->pending_pos = 0;
    } else {
        free(buf);
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    struct stream *s = cls;
    int keepalive_ms = s->w->cfg->web_timeout * 1000 / 2;
    if (keepalive_ms > 15000)
        keepalive_ms = 15000;
    for (;;) {
        if (s->w->stopping)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (s->pending_pos < s->pending_len) {
            size_t n = s->pending_len - s->pending_pos;
            if (n > max)
                n = max;
            memcpy(out, s->pending + s->pending_pos, n);
            s->pending_pos += n;
            s->last_sent_mono = mono_ms();
            return (ssize_t)n;
        }
        if (mono_ms() - s->last_sent_mono >= keepalive_ms) {
            static const char ping[] = ": keepalive\n\n";
            size_t n = sizeof(ping) - 1 < max ? sizeof(ping) - 1 : max;
            memcpy(out, ping, n);
            s->last_sent_mono = mono_ms();
            return (ssize_t)n;
        }
        stream_poll(s);
        if (s->pending_pos >= s->pending_len)
            usleep(EVENTS_POLL_MS * 1000);
    }
}

enum MHD_Result events_serve(struct req *r)
{
    if (web_allowed(r, r->p.team[0] ? r->p.team : NULL, ROLE_VIEWER) != 0)
        return MHD_YES;
    struct stream *s = calloc(1, sizeof(*s));
    s->w = r->w;
    snprintf(s->team, sizeof(s->team), "%s", r->p.team);
    s->since_ms = now_ms() - EVENTS_START_MS;
    s->last_sent_mono = mono_ms();
    s->sent = json_object();
    s->pending = xstrdup(": ferry events\n\n");
    s->pending_len = strlen(s->pending);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 8192, stream_read, s, stream_free);
    if (resp == NULL) {
        stream_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    enum MHD_Result rc = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    return rc;
}
