/*
 * Hosts and their heartbeats, and the aggregate reads of ferry web (hosts.h). The texts are
 * dynamic queries (eng_qv): plain SQL both drivers read alike, run rarely enough (a
 * heartbeat every few seconds, a scrape) that caching them by id buys nothing.
 */
#include "hosts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "util.h"

/* One statement and how to read its rows: cols holds a letter per column, 't' text (null
 * when NULL), 'i' integer, 'n' integer or null. */
struct q_ctx {
    const char *sql;
    int n;
    const struct eng_val *v;
    const char *cols;
    int write;
    json_t *out;
};

static json_t *read_col(eng_rows *r, int i, char type)
{
    if (eng_null(r, i))
        return type == 'i' ? json_integer(0) : json_null();
    if (type == 't') {
        const char *t = eng_text(r, i);
        return t ? json_string(t) : json_null();
    }
    return json_integer(eng_i64(r, i));
}

static int q_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct q_ctx *q = ctx;
    eng_rows r;
    long changes = 0;
    int rc = s->drv->exec(s, -1, q->sql, q->write ? ENG_WRITE : 0, q->n, q->v, &r, &changes, err,
                          errlen);
    if (rc != STORE_OK)
        return rc;
    json_t *rows = json_array();
    int got;
    size_t nc = q->cols ? strlen(q->cols) : 0;
    while (nc && (got = eng_next(&r, err, errlen)) == 1) {
        json_t *row = json_array();
        for (size_t i = 0; i < nc; i++)
            json_array_append_new(row, read_col(&r, (int)i, q->cols[i]));
        json_array_append_new(rows, row);
    }
    if (nc == 0)
        got = 0;
    eng_done(&r);
    if (got < 0) {
        json_decref(rows);
        return got;
    }
    json_decref(q->out);
    q->out = rows;
    return STORE_OK;
}

/* Runs sql with n values; *rows (may be NULL) gets its rows as arrays read by cols. */
static int run_q(store *s, int write, const char *sql, int n, const struct eng_val *v,
                 const char *cols, json_t **rows, char *err, size_t errlen)
{
    struct q_ctx q = {.sql = sql, .n = n, .v = v, .cols = cols, .write = write};
    int rc = eng_run(s, write ? write : ENG_READ_NO_BARRIER, q_body, &q, err, errlen);
    if (rows == NULL) {
        json_decref(q.out);
        return rc;
    }
    return eng_take_json(q.out, rows, rc);
}

#define TXT(x) {.is_text = 1, .text = (x), .is_null = (x) == NULL}
#define NUM(x) {.num = (x)}

int store_host_beat(store *s, const char *host_id, const char *bridge, const char *version,
                    int64_t started_ms, int running, int64_t now, char *err, size_t errlen)
{
    const struct eng_val v[] = {TXT(host_id), TXT(bridge), TXT(version), NUM(started_ms),
                                NUM(now), NUM(running)};
    return run_q(s, 1,
                 "INSERT INTO hosts (host_id, bridge_name, version, started_at, last_seen_at,"
                 " running) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                 " ON CONFLICT (host_id) DO UPDATE SET bridge_name = ?2, version = ?3,"
                 " started_at = ?4, last_seen_at = ?5, running = ?6, stopped_at = NULL",
                 6, v, NULL, NULL, err, errlen);
}

int store_host_stopped(store *s, const char *host_id, int64_t now, char *err, size_t errlen)
{
    const struct eng_val v[] = {TXT(host_id), NUM(now)};
    return run_q(s, 1,
                 "UPDATE hosts SET stopped_at = ?2, last_seen_at = ?2, running = 0"
                 " WHERE host_id = ?1",
                 2, v, NULL, NULL, err, errlen);
}

static json_t *iso_or_null(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char t[32];
    iso8601_ms(ms, t);
    return json_string(t);
}

int store_hosts_list(store *s, int64_t now, json_t **rows, char *err, size_t errlen)
{
    json_t *raw = NULL;
    *rows = NULL;
    int rc = run_q(s, 0,
                   "SELECT host_id, bridge_name, version, started_at, last_seen_at, running,"
                   " stopped_at FROM hosts ORDER BY last_seen_at DESC, host_id LIMIT 1000",
                   0, NULL, "tttiiin", &raw, err, errlen);
    if (rc != STORE_OK)
        return rc;
    json_t *out = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(raw, i, r)
    {
        int64_t seen = json_integer_value(json_array_get(r, 4));
        int64_t stopped = json_integer_value(json_array_get(r, 6));
        json_array_append_new(
            out, json_pack("{s:O,s:O,s:O,s:o,s:o,s:I,s:O,s:b,s:o}", "hostId",
                           json_array_get(r, 0), "bridgeName", json_array_get(r, 1), "version",
                           json_array_get(r, 2), "startedTime",
                           iso_or_null(json_integer_value(json_array_get(r, 3))),
                           "lastSeenTime", iso_or_null(seen), "lastSeenAgeSeconds",
                           (json_int_t)((now - seen) / 1000), "runningAttempts",
                           json_array_get(r, 5), "alive",
                           stopped == 0 && now - seen <= STORE_HOST_ALIVE_MS, "stoppedTime",
                           iso_or_null(stopped)));
    }
    json_decref(raw);
    *rows = out;
    return STORE_OK;
}

int store_bridge_host(store *s, const char *bridge, int64_t now, json_t **host, char *err,
                      size_t errlen)
{
    json_t *raw = NULL;
    *host = NULL;
    const struct eng_val v[] = {TXT(bridge)};
    /* Three columns and no ORDER BY: SQLite's cost to prepare grows with each (61.9k
     * instructions for the list's seven, 40.6k here; a sort more), and a bridge has few
     * rows to pick from here, last seen first as store_hosts_list orders them. */
    int rc = run_q(s, 0,
                   "SELECT host_id, last_seen_at, stopped_at FROM hosts WHERE bridge_name = ?1",
                   1, v, "tin", &raw, err, errlen);
    if (rc != STORE_OK)
        return rc;
    json_t *pick = NULL;
    int pick_alive = 0;
    size_t i;
    json_t *r;
    json_array_foreach(raw, i, r)
    {
        int64_t seen = json_integer_value(json_array_get(r, 1));
        int alive = json_integer_value(json_array_get(r, 2)) == 0 &&
                    now - seen <= STORE_HOST_ALIVE_MS;
        int later = pick == NULL || seen > json_integer_value(json_array_get(pick, 1)) ||
                    (seen == json_integer_value(json_array_get(pick, 1)) &&
                     strcmp(json_string_value(json_array_get(r, 0)),
                            json_string_value(json_array_get(pick, 0))) < 0);
        if (alive > pick_alive || (alive == pick_alive && later)) {
            pick = r;
            pick_alive = alive;
        }
    }
    if (pick != NULL) {
        int64_t seen = json_integer_value(json_array_get(pick, 1));
        *host = json_pack("{s:O,s:I,s:b,s:o}", "hostId", json_array_get(pick, 0),
                          "lastSeenAgeSeconds", (json_int_t)((now - seen) / 1000), "alive",
                          pick_alive, "stoppedTime",
                          iso_or_null(json_integer_value(json_array_get(pick, 2))));
    }
    json_decref(raw);
    return STORE_OK;
}

int store_web_gauges(store *s, int64_t now, json_t **out, char *err, size_t errlen)
{
    json_t *depth = NULL, *oldest = NULL, *alive = NULL, *delays = NULL;
    const struct eng_val since[] = {NUM(now - STORE_HOST_ALIVE_MS)};
    *out = NULL;
    int rc = run_q(s, 0, eng_sql(s, S_WEB_DEPTH), 0, NULL, "ttii", &depth, err, errlen);
    if (rc == STORE_OK)
        rc = run_q(s, 0, "SELECT min(created_at) FROM queue_items WHERE status = 'PENDING'", 0,
                   NULL, "i", &oldest, err, errlen);
    if (rc == STORE_OK)
        rc = run_q(s, 0,
                   "SELECT count(*) FROM hosts WHERE last_seen_at >= ?1 AND stopped_at IS NULL",
                   1, since, "i", &alive, err, errlen);
    if (rc == STORE_OK)
        rc = run_q(s, 0,
                   "SELECT sc.team_name, sc.name, q.created_at - q.schedule_fire_at"
                   " FROM schedules sc JOIN queue_items q ON q.task_id = sc.last_task_id"
                   " WHERE q.schedule_fire_at IS NOT NULL",
                   0, NULL, "tti", &delays, err, errlen);
    if (rc == STORE_OK)
        *out = json_pack("{s:o,s:O,s:O,s:o}", "depth", depth, "oldestPendingMs",
                         json_array_get(json_array_get(oldest, 0), 0), "hostsAlive",
                         json_array_get(json_array_get(alive, 0), 0), "scheduleDelays", delays);
    else {
        json_decref(depth);
        json_decref(delays);
    }
    json_decref(oldest);
    json_decref(alive);
    return rc;
}

const int64_t store_web_bucket_ms[STORE_WEB_BUCKETS] = {100,   500,   1000,   5000,   10000,
                                                          30000, 60000, 300000, 900000, 3600000};

int store_web_ended(store *s, int64_t lo_ms, int64_t hi_ms, json_t **rows, char *err,
                    size_t errlen)
{
    char *buckets = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&buckets, &blen);
    for (int b = 0; b < STORE_WEB_BUCKETS; b++)
        fprintf(f, ", sum(CASE WHEN started_at IS NOT NULL AND finished_at - started_at <= %lld"
                   " THEN 1 ELSE 0 END)",
                (long long)store_web_bucket_ms[b]);
    fclose(f);
    /* The status test is kept off the indexes (|| ''): given an index by status, SQLite
     * read every ended item through it instead of the window through qi_finished. */
    char *sql = xasprintf("SELECT function, status, count(*), count(started_at),"
                          " coalesce(sum(finished_at - started_at), 0)%s FROM queue_items"
                          " WHERE finished_at >= ?1 AND finished_at < ?2"
                          " AND ((status || '') = 'COMPLETED' OR (status || '') = 'FAILED'"
                          " OR (status || '') = 'CANCELLED') GROUP BY function, status",
                          buckets);
    free(buckets);
    char cols[8 + STORE_WEB_BUCKETS] = "ttiii";
    for (int b = 0; b < STORE_WEB_BUCKETS; b++)
        cols[5 + b] = 'i';
    cols[5 + STORE_WEB_BUCKETS] = '\0';
    const struct eng_val v[] = {NUM(lo_ms), NUM(hi_ms)};
    int rc = run_q(s, 0, sql, 2, v, cols, rows, err, errlen);
    free(sql);
    return rc;
}

int store_web_changes(store *s, int64_t since_ms, const char *team, int limit, json_t **rows,
                      char *err, size_t errlen)
{
    const char *cols = "task_id, status, priority, function, team_name, machine_name,"
                       " bridge_name, progress_percent, progress_message, updated_at";
    const char *tf = team ? " AND team_name = ?3" : "";
    char *sql = xasprintf(
        "SELECT %s FROM queue_items WHERE (status = 'ASSIGNED' OR status = 'PROCESSING' OR"
        " status = 'CANCELLING') AND updated_at > ?1%s"
        " UNION SELECT %s FROM queue_items WHERE created_at > ?1%s"
        " UNION SELECT %s FROM queue_items WHERE finished_at > ?1%s"
        " ORDER BY 10, 1 LIMIT ?2",
        cols, tf, cols, tf, cols, tf);
    const struct eng_val v[] = {NUM(since_ms), NUM(limit), TXT(team)};
    json_t *raw = NULL;
    *rows = NULL;
    int rc = run_q(s, 0, sql, team ? 3 : 2, v, "ttittttnti", &raw, err, errlen);
    free(sql);
    if (rc != STORE_OK)
        return rc;
    json_t *out = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(raw, i, r)
    {
        json_t *pct = json_array_get(r, 7);
        json_t *progress = json_is_null(pct)
                               ? json_null()
                               : json_pack("{s:O,s:O}", "percent", pct, "message",
                                           json_array_get(r, 8));
        int64_t upd = json_integer_value(json_array_get(r, 9));
        json_array_append_new(
            out, json_pack("{s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:o,s:o,s:I}", "taskId",
                           json_array_get(r, 0), "status", json_array_get(r, 1), "priority",
                           json_array_get(r, 2), "function", json_array_get(r, 3), "teamName",
                           json_array_get(r, 4), "machineName", json_array_get(r, 5),
                           "bridgeName", json_array_get(r, 6), "progress", progress,
                           "updatedTime", iso_or_null(upd), "updatedTimeMs", (json_int_t)upd));
    }
    json_decref(raw);
    *rows = out;
    return STORE_OK;
}
