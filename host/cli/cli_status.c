/*
 * `ferry status`: the hosts of each bridge with the age of their last heartbeat, the queue
 * depth of each bridge, the oldest pending item and the schedules whose last fire failed
 * (docs/cli.md). And cli_warn_no_host (cli_status.h).
 */
#include "cli_status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hosts.h"
#include "store.h"
#include "term_text.h"
#include "util.h"

/* The bridges already warned about in this run. */
static json_t *warned;

const char *cli_age_text(int64_t seconds, char *buf, size_t len)
{
    if (seconds < 0)
        seconds = 0;
    if (seconds < 120)
        snprintf(buf, len, "%lld s", (long long)seconds);
    else if (seconds < 7200)
        snprintf(buf, len, "%lld min", (long long)(seconds / 60));
    else if (seconds < 172800)
        snprintf(buf, len, "%lld h", (long long)(seconds / 3600));
    else
        snprintf(buf, len, "%lld days", (long long)(seconds / 86400));
    return buf;
}

/* The host of each bridge looked up in this run (cli_look_for_host): an alive host of it,
 * else the one last seen, else null. */
static json_t *looked;

/* Scripts that queue before any host runs turn the warning off (docs/cli.md); so does
 * tests/lib.sh, for the many tests that check stderr and run no host (status.sh does not). */
static int warning_off(void)
{
    const char *off = getenv("FERRY_NO_HOST_WARNING");
    return off != NULL && strcmp(off, "1") == 0;
}

void cli_look_for_host(cli *c, const char *bridge)
{
    if (bridge == NULL || json_object_get(looked, bridge) != NULL ||
        json_object_get(warned, bridge) != NULL || warning_off())
        return;
    char err[512];
    json_t *last;
    if (store_bridge_host(c->st, bridge, now_ms(), &last, err, sizeof(err)) != STORE_OK)
        return; /* a store without the hosts table cannot say: no guess */
    if (looked == NULL)
        looked = json_object();
    json_object_set_new(looked, bridge, last ? last : json_null());
}

void cli_warn_no_host(cli *c, const char *bridge)
{
    if (bridge == NULL || json_object_get(warned, bridge) != NULL || warning_off())
        return;
    cli_look_for_host(c, bridge);
    json_t *last = json_object_get(looked, bridge);
    if (last == NULL)
        return; /* not looked up: the store cannot say */
    last = json_is_null(last) ? NULL : json_incref(last);
    json_object_del(looked, bridge);
    if (warned == NULL)
        warned = json_object();
    json_object_set_new(warned, bridge, json_true());
    if (json_is_true(json_object_get(last, "alive"))) {
        json_decref(last);
        return;
    }
    char seen[200] = "no host of it seen yet", age[32];
    if (last != NULL)
        snprintf(seen, sizeof(seen), "last seen %s ago: %s, %s",
                 cli_age_text(json_integer_value(json_object_get(last, "lastSeenAgeSeconds")), age,
                              sizeof(age)),
                 json_string_value(json_object_get(last, "hostId")),
                 json_is_null(json_object_get(last, "stoppedTime")) ? "no heartbeat since"
                                                                    : "stopped");
    cli_warn(c,
             "no host is serving bridge %s (%s); the item waits until one starts: ferry serve / "
             "systemctl start ferry",
             bridge, seen);
    json_decref(last);
}

static json_t *noted;

void cli_note_bridge(const char *bridge)
{
    if (noted == NULL)
        noted = json_object();
    if (json_object_get(noted, bridge) == NULL)
        json_object_set_new(noted, bridge, json_true());
}

void cli_warn_no_host_noted(cli *c)
{
    const char *bridge;
    json_t *v;
    json_object_foreach (noted, bridge, v)
        cli_warn_no_host(c, bridge);
}

/* --- ferry status ------------------------------------------------------------------------ */

/* The bridge's entry of bridges (an object by name), made on first use. */
static json_t *bridge_entry(json_t *bridges, const char *name)
{
    json_t *b = json_object_get(bridges, name);
    if (b == NULL) {
        b = json_pack("{s:s,s:i,s:i,s:i,s:[]}", "bridgeName", name, "hostsAlive", 0, "pending", 0,
                      "active", 0, "hosts");
        json_object_set_new(bridges, name, b);
    }
    return b;
}

static void add_int(json_t *o, const char *key, json_int_t n)
{
    json_object_set_new(o, key, json_integer(json_integer_value(json_object_get(o, key)) + n));
}

/* The oldest PENDING item as {"taskId","bridgeName","function","createdTime","ageSeconds"},
 * or null: created at oldest_ms, so the newest at or before it is the one. */
static json_t *oldest_pending(cli *c, int64_t oldest_ms, int64_t now, char *err, size_t errlen,
                              int *rc)
{
    *rc = STORE_OK;
    if (oldest_ms <= 0)
        return json_null();
    static const char *const pending[] = {"PENDING"};
    struct store_queue_filter f = {
        .statuses = pending, .n_statuses = 1, .date_to_ms = oldest_ms, .max_records = 1};
    json_t *rows = NULL;
    if ((*rc = store_queue_list(c->st, &f, &rows, err, errlen)) != STORE_OK)
        return NULL;
    json_t *r = json_array_get(rows, 0);
    json_t *out = r == NULL
                      ? json_null()
                      : json_pack("{s:O,s:O,s:O,s:O,s:I}", "taskId", json_object_get(r, "taskId"),
                                  "bridgeName", json_object_get(r, "bridgeName"), "function",
                                  json_object_get(r, "function"), "createdTime",
                                  json_object_get(r, "createdTime"), "ageSeconds",
                                  (json_int_t)((now - oldest_ms) / 1000));
    json_decref(rows);
    return out;
}

/* Schedules whose last fire's item FAILED: [{"teamName","scheduleName","lastTaskId",
 * "lastRun","lastFailureReason"}]. */
static json_t *failing_schedules(cli *c, char *err, size_t errlen, int *rc)
{
    json_t *rows = NULL, *out = json_array();
    if ((*rc = store_resource_list(c->st, STORE_SCHEDULE, NULL, &rows, err, errlen)) != STORE_OK) {
        json_decref(out);
        return NULL;
    }
    size_t i;
    json_t *s;
    json_array_foreach (rows, i, s) {
        const char *last = json_string_value(json_object_get(s, "lastTaskId"));
        json_t *item = NULL;
        if (last == NULL || store_queue_get(c->st, last, &item, NULL, 0) != STORE_OK)
            continue;
        if (strcmp(json_string_value(json_object_get(item, "status")), "FAILED") == 0)
            json_array_append_new(
                out, json_pack("{s:O,s:O,s:s,s:O,s:O}", "teamName", json_object_get(s, "teamName"),
                               "scheduleName", json_object_get(s, "scheduleName"), "lastTaskId",
                               last, "lastRun", json_object_get(s, "lastRun"), "lastFailureReason",
                               json_object_get(item, "lastFailureReason")));
        json_decref(item);
    }
    json_decref(rows);
    return out;
}

const char *cli_host_state(const json_t *h)
{
    if (json_is_true(json_object_get(h, "alive")))
        return "alive";
    return json_is_null(json_object_get(h, "stoppedTime")) ? "stale" : "stopped";
}

static const char *str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* The width of the BRIDGE column: 20 as always, more for longer names while the row still
 * fits the style's limit (HOSTS, PENDING and ACTIVE take about 30 columns). */
static size_t bridge_column(const json_t *bridges, const struct term_style *st)
{
    size_t w = 20, i;
    json_t *b;
    json_array_foreach (bridges, i, b) {
        char *clean = term_clean(str(b, "bridgeName"));
        if (term_width(clean) > w)
            w = term_width(clean);
        free(clean);
    }
    if (st->limit && w > st->limit - 30)
        w = st->limit > 50 ? st->limit - 30 : 20;
    return w;
}

static void print_bridge(const json_t *b, size_t col, const struct term_style *st)
{
    struct term_line l;
    term_line_init(&l, st);
    term_line_put(&l, str(b, "bridgeName"), col, COLOUR_NONE);
    term_line_pad(&l, col + 1);
    term_line_printf(&l, "%lld/%zu",
                     (long long)json_integer_value(json_object_get(b, "hostsAlive")),
                     json_array_size(json_object_get(b, "hosts")));
    term_line_pad(&l, col + 10);
    term_line_printf(&l, "%lld", (long long)json_integer_value(json_object_get(b, "pending")));
    term_line_pad(&l, col + 19);
    term_line_printf(&l, "%lld", (long long)json_integer_value(json_object_get(b, "active")));
    term_line_end(&l, stdout);
}

static void print_host(const json_t *h, const struct term_style *st)
{
    char age[32], tail[96];
    const char *state = cli_host_state(h);
    snprintf(tail, sizeof(tail), ", seen %s ago, %lld running, version ",
             cli_age_text(json_integer_value(json_object_get(h, "lastSeenAgeSeconds")), age,
                          sizeof(age)),
             (long long)json_integer_value(json_object_get(h, "runningAttempts")));
    struct term_piece p[] = {TERM_TEXT("  host "), TERM_CAP(str(h, "hostId"), 40),
                             TERM_TEXT("  "),      TERM_COLOUR(state, colour_of_word(state)),
                             TERM_TEXT(tail),      TERM_CAP(str(h, "version"), 16)};
    term_pieces(stdout, st, p, sizeof(p) / sizeof(p[0]));
}

static void print_text(const json_t *data)
{
    struct term_style st = term_style_for(stdout);
    char age[64];
    size_t i, j;
    json_t *b, *h;
    const json_t *bridges = json_object_get(data, "bridges");
    size_t col = bridge_column(bridges, &st);
    struct term_line l;
    term_line_init(&l, &st);
    term_line_put(&l, "BRIDGE", 0, COLOUR_NONE);
    term_line_pad(&l, col + 1);
    term_line_put(&l, "HOSTS    PENDING  ACTIVE", 0, COLOUR_NONE);
    term_line_end(&l, stdout);
    json_array_foreach (bridges, i, b) {
        print_bridge(b, col, &st);
        json_array_foreach (json_object_get(b, "hosts"), j, h)
            print_host(h, &st);
        if (json_array_size(json_object_get(b, "hosts")) == 0)
            printf("  no host has served it yet (start one: ferry serve)\n");
    }
    const json_t *o = json_object_get(data, "oldestPending");
    if (json_is_object(o)) {
        char waiting[80];
        snprintf(
            waiting, sizeof(waiting), "), waiting %s",
            cli_age_text(json_integer_value(json_object_get(o, "ageSeconds")), age, sizeof(age)));
        struct term_piece p[] = {TERM_TEXT("Oldest pending: "),
                                 TERM_ID(str(o, "taskId")),
                                 TERM_TEXT(" ("),
                                 TERM_CAP(str(o, "function"), 24),
                                 TERM_TEXT(" on bridge "),
                                 TERM_CAP(str(o, "bridgeName"), 24),
                                 TERM_TEXT(waiting)};
        term_pieces(stdout, &st, p, sizeof(p) / sizeof(p[0]));
    } else
        printf("Oldest pending: none\n");
    const json_t *fs = json_object_get(data, "failingSchedules");
    printf("Failing schedules: %s\n", json_array_size(fs) ? "" : "none");
    json_array_foreach (fs, i, h) {
        const char *reason = str(h, "lastFailureReason");
        struct term_piece p[] = {TERM_TEXT("  "),
                                 TERM_CAP(str(h, "teamName"), 20),
                                 TERM_TEXT("/"),
                                 TERM_CAP(str(h, "scheduleName"), 24),
                                 TERM_TEXT("  last fire "),
                                 TERM_ID(str(h, "lastTaskId")),
                                 TERM_TEXT(" "),
                                 TERM_COLOUR("FAILED", COLOUR_RED),
                                 TERM_TEXT(reason ? ": " : ""),
                                 TERM_TEXT(reason)};
        term_pieces(stdout, &st, p, sizeof(p) / sizeof(p[0]));
    }
}

static int cmd_status(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    char err[1024];
    int64_t now = now_ms();
    json_t *hosts = NULL, *gauges = NULL, *known = NULL, *oldest = NULL, *failing = NULL;
    int rc = store_resource_list(c->st, STORE_BRIDGE, NULL, &known, err, sizeof(err));
    if (rc == STORE_OK)
        rc = store_hosts_list(c->st, now, &hosts, err, sizeof(err));
    if (rc == STORE_OK)
        rc = store_web_gauges(c->st, now, &gauges, err, sizeof(err));
    if (rc == STORE_OK)
        oldest = oldest_pending(c, json_integer_value(json_object_get(gauges, "oldestPendingMs")),
                                now, err, sizeof(err), &rc);
    if (rc == STORE_OK)
        failing = failing_schedules(c, err, sizeof(err), &rc);
    if (rc != STORE_OK) {
        json_decref(known);
        json_decref(hosts);
        json_decref(gauges);
        json_decref(oldest);
        return cli_fail(c, EXIT_ERROR, "%s", err);
    }
    json_t *bridges = json_object();
    size_t i;
    json_t *r;
    json_array_foreach (known, i, r)
        bridge_entry(bridges, json_string_value(json_object_get(r, "bridgeName")));
    json_array_foreach (hosts, i, r) {
        json_t *b = bridge_entry(bridges, json_string_value(json_object_get(r, "bridgeName")));
        json_t *h = json_deep_copy(r);
        json_object_del(h, "bridgeName");
        json_array_append_new(json_object_get(b, "hosts"), h);
        if (json_is_true(json_object_get(r, "alive")))
            add_int(b, "hostsAlive", 1);
    }
    json_array_foreach (json_object_get(gauges, "depth"), i, r) {
        json_t *b = bridge_entry(bridges, json_string_value(json_array_get(r, 0)));
        const char *status = json_string_value(json_array_get(r, 1));
        add_int(b, strcmp(status, "PENDING") == 0 ? "pending" : "active",
                json_integer_value(json_array_get(r, 3)));
    }
    json_t *list = json_array();
    const char *name;
    json_t *b;
    json_object_foreach (bridges, name, b)
        json_array_append(list, b);
    json_decref(bridges);
    json_t *data = json_pack("{s:o,s:o,s:o}", "bridges", list, "oldestPending", oldest,
                             "failingSchedules", failing);
    if (c->json)
        cli_print_ok(c, data, "status");
    else {
        print_text(data);
        json_decref(data);
    }
    json_decref(known);
    json_decref(hosts);
    json_decref(gauges);
    return EXIT_OK;
}

static const cli_opt none[] = {{NULL, 0, NULL, 0, NULL}};

const cli_command cli_status_commands[] = {
    {"status", NULL, NULL, 0, 0, none, cmd_status,
     "hosts of each bridge (alive or stale), queue depth, oldest pending item, failing "
     "schedules"},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL},
};
