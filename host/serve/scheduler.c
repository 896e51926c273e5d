/*
 * The scheduler; see scheduler.h for what a schedule vault says and docs/schedules.md for
 * the rules as operators read them.
 *
 * What is shared and what is not. Everything hosts must agree on lives in the store: the
 * vault, lastRun / lastTaskId, and the unique (team, schedule, fire instant) key of queue
 * items, which is what makes a fire happen once however many hosts try it. Each host keeps
 * only a small cache per schedule (struct sched_entry) that remembers what it has already
 * handled and which vault version it last saw; losing it (a restart) costs nothing but a
 * re-read.
 *
 * Which fires are due. A tick at time `now` considers the fires in (lower, now], where
 * lower is the latest of: the schedule's lastRun, the fire this host last handled, the
 * schedule's creation, the last change of its timing (cron, timezone, enabled,
 * disabled_until: after such a change the old timing's past is not the new one's), and
 * disabled_until. Normally that is one fire, made within milliseconds of its instant. More
 * than one, or one older than SCHEDULER_GRACE_MS, means no host ran at the time: the
 * schedule's catchup policy decides which of them are made.
 */
#include "scheduler.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron.h"
#include "descriptor.h"
#include "log.h"
#include "tz.h"
#include "util.h"
#include "vault.h"

enum catchup { CATCHUP_LATEST, CATCHUP_NONE, CATCHUP_ALL };
static const char *const catchup_names[] = {"latest", "none", "all"};

/* What a host remembers about one schedule between ticks. */
typedef struct sched_entry {
    char *key;              /* "team\nname" (names never hold a newline) */
    int64_t version;        /* vault version last seen; -1 before the first sight */
    char *timing;           /* cron, timezone, enabled, disabled_until of that version */
    int64_t base_ms;        /* fires at or before this are never made: creation or the
                               last timing change, in scheduler time */
    int64_t handled_ms;     /* the latest fire this host made, found made, or skipped */
    int64_t warned_version; /* the version a problem was last logged for: one line each */
} sched_entry;

struct scheduler {
    const ferry_config *cfg;
    const registry *reg;
    int64_t clock_offset_ms, clock_rate; /* the test hook; 0 and 1 without it */
    sched_entry *entries;                /* in the order of the last listing */
    size_t n_entries;
    json_t *index; /* key -> position in entries */
};

/* A schedule vault as the scheduler reads it. */
typedef struct rules {
    cron_expr cron;
    tz_info *tz;
    const char *machine;
    int fires;        /* 0: enabled is false and no disabled_until ends it */
    int64_t until_ms; /* no fire before this instant (0: none) */
    enum catchup catchup;
    int priority; /* 0: the default */
} rules;

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* An ISO time field of a store row as ms; 0 when null or unreadable. */
static int64_t row_time(const json_t *row, const char *key)
{
    int64_t ms;
    const char *text = jstr(row, key);
    return text && parse_date_ms(text, &ms) == 0 ? ms : 0;
}

/* ---- the test clock ------------------------------------------------------------------- */

static void test_clock(int64_t *offset_ms, int64_t *rate)
{
    const char *offset = getenv("FERRY_TEST_CLOCK_OFFSET_MS");
    const char *speed = getenv("FERRY_TEST_CLOCK_RATE");
    *offset_ms = offset && *offset ? strtoll(offset, NULL, 10) : 0;
    *rate = speed && *speed ? strtoll(speed, NULL, 10) : 1;
    if (*rate < 1)
        *rate = 1;
}

int64_t scheduler_now_ms(void)
{
    int64_t offset, rate;
    test_clock(&offset, &rate);
    return now_ms() * rate + offset;
}

/* A real instant (a store timestamp, the host's clock) in scheduler time. */
static int64_t sched_time(const scheduler *s, int64_t real_ms)
{
    return real_ms * s->clock_rate + s->clock_offset_ms;
}

/* ---- reading a schedule vault --------------------------------------------------------- */

/* Non-zero when a date text names its zone ("…Z", "…+02:00", "…-05:00"). */
static int has_zone(const char *text)
{
    size_t len = strlen(text);
    if (len <= 10)
        return 0;
    return text[len - 1] == 'Z' || text[len - 1] == 'z' || strchr(text + 10, '+') != NULL ||
           strchr(text + 10, '-') != NULL;
}

static int parse_until(const json_t *value, const tz_info *tz, int64_t *out, char *err,
                       size_t errlen)
{
    const char *text = json_string_value(value);
    int64_t ms;
    if (text == NULL || parse_date_ms(text, &ms) != 0) {
        seterr(err, errlen,
               "schedule \"disabled_until\" must be a date such as \"2024-01-15\" "
               "or an instant such as \"2024-01-15T08:00:00Z\"");
        return -1;
    }
    if (!has_zone(text)) {
        /* A wall time in the schedule's zone; a skipped one means the jump. */
        int64_t sec = floor_div(ms, 1000);
        ms = tz_local_to_utc(tz, sec).earliest * 1000 + (ms - sec * 1000);
    }
    *out = ms;
    return 0;
}

static void rules_free(rules *r)
{
    tz_free(r->tz);
    r->tz = NULL;
}

/* Reads what the scheduler needs from a schedule vault. On failure r holds nothing. */
static int rules_load(const json_t *vault, rules *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    const char *cron = jstr(vault, "cron");
    if (cron == NULL) {
        seterr(err, errlen, "schedule vault needs \"cron\", e.g. \"cron\": \"0 2 * * *\"");
        return -1;
    }
    if (cron_parse(cron, &r->cron, err, errlen) != 0)
        return -1;
    const json_t *tzv = json_object_get(vault, "timezone");
    if (tzv && !json_is_string(tzv)) {
        seterr(err, errlen,
               "schedule \"timezone\" must be a string such as \"UTC\" or "
               "\"America/New_York\"");
        return -1;
    }
    if (tz_load(tzv ? json_string_value(tzv) : "UTC", &r->tz, err, errlen) != 0)
        return -1;
    int rc = -1;
    r->machine = jstr(vault, "machine");
    const json_t *enabled = json_object_get(vault, "enabled");
    if (enabled && !json_is_boolean(enabled)) {
        seterr(err, errlen, "schedule \"enabled\" must be true or false");
        goto out;
    }
    const json_t *until = json_object_get(vault, "disabled_until");
    if (until && parse_until(until, r->tz, &r->until_ms, err, errlen) != 0)
        goto out;
    r->fires = !json_is_false(enabled) || r->until_ms != 0;
    const json_t *catchup = json_object_get(vault, "catchup");
    if (catchup) {
        const char *name = json_string_value(catchup);
        size_t i = 0;
        while (name && i < 3 && strcmp(name, catchup_names[i]) != 0)
            i++;
        if (name == NULL || i == 3) {
            seterr(err, errlen, "schedule \"catchup\" must be \"latest\", \"none\" or \"all\"");
            goto out;
        }
        r->catchup = (enum catchup)i;
    }
    const json_t *priority = json_object_get(vault, "priority");
    if (priority) {
        if (!json_is_integer(priority) || json_integer_value(priority) < 1 ||
            json_integer_value(priority) > 5) {
            seterr(err, errlen,
                   "schedule \"priority\" must be a whole number from 1 (highest) "
                   "to 5 (lowest)");
            goto out;
        }
        r->priority = (int)json_integer_value(priority);
    }
    rc = 0;
out:
    if (rc != 0)
        rules_free(r);
    return rc;
}

int scheduler_disabled_until(const json_t *schedule_vault, int64_t *out_ms, char *err,
                             size_t errlen)
{
    *out_ms = 0;
    const json_t *until = json_object_get(schedule_vault, "disabled_until");
    if (until == NULL)
        return 0;
    const json_t *tzv = json_object_get(schedule_vault, "timezone");
    tz_info *tz = NULL;
    if (tz_load(json_is_string(tzv) ? json_string_value(tzv) : "UTC", &tz, err, errlen) != 0)
        return -1;
    int rc = parse_until(until, tz, out_ms, err, errlen);
    tz_free(tz);
    return rc;
}

/* The first fire strictly after after_ms, or INT64_MAX. */
static int64_t next_after(const rules *r, int64_t after_ms)
{
    int64_t next;
    if (cron_next(&r->cron, r->tz, floor_div(after_ms, 1000), &next) != 0)
        return INT64_MAX;
    return next * 1000;
}

int scheduler_next_fire(const json_t *schedule_vault, int64_t after_ms, int64_t *next_ms, char *err,
                        size_t errlen)
{
    rules r;
    if (rules_load(schedule_vault, &r, err, errlen) != 0)
        return -1;
    int64_t next = r.fires ? next_after(&r, max64(after_ms, r.until_ms - 1)) : INT64_MAX;
    rules_free(&r);
    if (next == INT64_MAX)
        return 0;
    *next_ms = next;
    return 1;
}

/* ---- the item vault ------------------------------------------------------------------- */

static int is_target_list(const json_t *v)
{
    if (json_is_string(v))
        return 1;
    if (!json_is_array(v) || json_array_size(v) == 0)
        return 0;
    size_t i;
    json_t *item;
    json_array_foreach (v, i, item) {
        if (!json_is_string(item))
            return 0;
    }
    return 1;
}

static int list_has(const json_t *list, const json_t *v)
{
    size_t i;
    json_t *item;
    json_array_foreach (list, i, item) {
        if (json_equal(item, (json_t *)v))
            return 1;
    }
    return 0;
}

/* Appends targets (a value or an array of them) to list, skipping ones already there. */
static void append_targets(json_t *list, const json_t *targets)
{
    if (targets == NULL)
        return;
    if (!json_is_array(targets)) {
        if (!list_has(list, targets))
            json_array_append(list, (json_t *)targets);
        return;
    }
    size_t i;
    json_t *item;
    json_array_foreach (targets, i, item) {
        if (!list_has(list, item))
            json_array_append(list, item);
    }
}

/* Adds targets to item[section].notify, after the ones queue_config already names. */
static int add_notify(json_t *item, const char *section, const json_t *targets, char *err,
                      size_t errlen)
{
    json_t *sec = json_object_get(item, section);
    if (sec == NULL) {
        sec = json_object();
        json_object_set_new(item, section, sec);
    } else if (!json_is_object(sec)) {
        seterr(err, errlen, "queue_config \"%s\" must be an object such as {\"notify\": …}",
               section);
        return -1;
    }
    json_t *list = json_array();
    append_targets(list, json_object_get(sec, "notify"));
    append_targets(list, targets);
    json_object_set_new(sec, "notify", list);
    return 0;
}

int scheduler_item_vault(const json_t *schedule_vault, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    const json_t *qc = json_object_get(schedule_vault, "queue_config");
    if (!json_is_object(qc)) {
        seterr(err, errlen,
               "schedule vault needs \"queue_config\": the vault of the queue item "
               "each fire creates, with its \"function\"");
        return -1;
    }
    const json_t *notes = json_object_get(schedule_vault, "notifications");
    if (notes != NULL && !json_is_object(notes)) {
        seterr(err, errlen,
               "schedule \"notifications\" must be an object such as "
               "{\"on_failure\": \"ops@example.com\"}");
        return -1;
    }
    json_t *item = json_deep_copy(qc);
    const char *key;
    json_t *targets;
    json_object_foreach ((json_t *)notes, key, targets) {
        if (strcmp(key, "on_failure") != 0 && strcmp(key, "on_success") != 0) {
            seterr(err, errlen,
                   "schedule \"notifications\" has an unknown key \"%.64s\"; it "
                   "takes on_failure and on_success",
                   key);
            goto fail;
        }
        if (!is_target_list(targets)) {
            seterr(err, errlen,
                   "schedule \"notifications.%s\" must be an email address, an "
                   "http(s) URL or a non-empty array of them",
                   key);
            goto fail;
        }
        if (add_notify(item, key, targets, err, errlen) != 0)
            goto fail;
    }
    *out = item;
    return 0;
fail:
    json_decref(item);
    return -1;
}

/* Checks each notification target the way the host checks an item's notify lists. */
static int check_targets(const json_t *notes, char *err, size_t errlen)
{
    const char *key;
    json_t *targets;
    json_object_foreach ((json_t *)notes, key, targets) {
        size_t n = json_is_array(targets) ? json_array_size(targets) : 1;
        for (size_t i = 0; i < n; i++) {
            json_t *target = json_is_array(targets) ? json_array_get(targets, i) : targets;
            json_t *probe =
                json_pack("{s:s,s:{s:O}}", "function", "probe", "on_success", "notify", target);
            int rc = vault_check_host_keys(probe, NULL, 0);
            json_decref(probe);
            if (rc != 0) {
                seterr(err, errlen,
                       "schedule \"notifications.%s\" has \"%.80s\"; expected an "
                       "email address or an http(s) URL",
                       key, json_is_string(target) ? json_string_value(target) : "?");
                return -1;
            }
        }
    }
    return 0;
}

int scheduler_check_vault(const json_t *schedule_vault, char *err, size_t errlen)
{
    rules r;
    if (rules_load(schedule_vault, &r, err, errlen) != 0)
        return -1;
    rules_free(&r);
    json_t *item = NULL;
    if (scheduler_item_vault(schedule_vault, &item, err, errlen) != 0)
        return -1;
    char why[512];
    int rc = check_targets(json_object_get(schedule_vault, "notifications"), err, errlen);
    if (rc != 0) {
        json_decref(item);
        return rc;
    }
    rc = vault_check_host_keys(item, why, sizeof(why));
    if (rc != 0)
        seterr(err, errlen, "the queue item a fire creates (queue_config with notifications): %s",
               why);
    json_decref(item);
    return rc;
}

/* ---- due fires ------------------------------------------------------------------------ */

/* The most recent due fires, oldest first, and how many older ones were passed over. */
typedef struct due_fires {
    int64_t ms[SCHEDULER_CATCHUP_MAX];
    size_t n;
    size_t older;    /* due fires before ms[0] that are not listed */
    int older_exact; /* 0: there may be even more than `older` */
} due_fires;

/* Walks fires in (from_ms, to_ms], keeping the last k in ring (slot count % k). */
static size_t walk(const rules *r, int64_t from_ms, int64_t to_ms, int64_t *ring, size_t k)
{
    size_t count = 0;
    for (int64_t t = from_ms;;) {
        int64_t next = next_after(r, t);
        if (next > to_ms)
            break;
        ring[count++ % k] = next;
        t = next;
    }
    return count;
}

/*
 * Finds the k most recent fires in (lower_ms, now_ms]. A long outage of a frequent
 * schedule must not cost a walk over every fire since, so windows ending at now grow until
 * they hold k fires or reach lower_ms.
 */
static void collect_due(const rules *r, int64_t lower_ms, int64_t now_ms, size_t k, due_fires *out)
{
    static const int64_t windows_ms[] = {2 * 3600000LL, 2 * 86400000LL, 64 * 86400000LL,
                                         800 * 86400000LL, 0};
    int64_t ring[SCHEDULER_CATCHUP_MAX];
    size_t count = 0;
    int64_t from = lower_ms;
    memset(out, 0, sizeof(*out));
    if (lower_ms >= now_ms)
        return;
    for (size_t w = 0; w < sizeof(windows_ms) / sizeof(windows_ms[0]); w++) {
        from =
            windows_ms[w] && now_ms - windows_ms[w] > lower_ms ? now_ms - windows_ms[w] : lower_ms;
        count = walk(r, from, now_ms, ring, k);
        if (count >= k || from == lower_ms)
            break;
    }
    out->n = count < k ? count : k;
    for (size_t i = 0; i < out->n; i++)
        out->ms[i] = ring[(count - out->n + i) % k];
    out->older = count - out->n;
    out->older_exact = from == lower_ms;
}

/* ---- one schedule's tick -------------------------------------------------------------- */

/* One schedule during one tick. */
typedef struct sched_ctx {
    scheduler *s;
    store *st;
    sched_entry *e;
    const json_t *row, *vault;
    const char *team, *name, *bridge;
    rules r;
    int64_t now;
    /* Run bookkeeping: as stored, then as this tick leaves it. */
    int64_t last_run, next_run;
    char last_task[37];
    int changed;  /* this host made a fire: record it */
    int conflict; /* another host made one: it records its own */
} sched_ctx;

static void warn_once(sched_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Logs a problem of a schedule once per vault version, not once per tick. */
static void warn_once(sched_ctx *c, const char *fmt, ...)
{
    int64_t version = json_integer_value(json_object_get(c->row, "vaultVersion"));
    if (c->e->warned_version == version)
        return;
    c->e->warned_version = version;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    hlog(LOG_WARN, "schedule %s/%s: %s", c->team, c->name, text);
}

/*
 * Keeps base_ms current. On first sight (host start) it is the later of creation and last
 * update: an update made while no host ran may have changed the timing, and fires of a
 * timing from before it must not be made up. Afterwards only a change of the timing moves
 * it, so editing a schedule's notifications never costs a fire.
 */
static void entry_update(sched_ctx *c)
{
    sched_entry *e = c->e;
    json_t *t = json_pack("{s:O?,s:O?,s:O?,s:O?}", "cron", json_object_get(c->vault, "cron"),
                          "timezone", json_object_get(c->vault, "timezone"), "enabled",
                          json_object_get(c->vault, "enabled"), "disabled_until",
                          json_object_get(c->vault, "disabled_until"));
    char *timing = json_dumps(t, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(t);
    int64_t version = json_integer_value(json_object_get(c->row, "vaultVersion"));
    int64_t created = sched_time(c->s, row_time(c->row, "createdTime"));
    int64_t updated = sched_time(c->s, row_time(c->row, "updatedTime"));
    if (e->version < 0)
        e->base_ms = max64(created, updated);
    else if (version != e->version && strcmp(timing, e->timing) != 0)
        e->base_ms = max64(e->base_ms, updated);
    e->version = version;
    free(e->timing);
    e->timing = timing;
}

static void record_event(sched_ctx *c, const char *task, int64_t fire_ms, int caught_up)
{
    char when[32], text[600], err[256];
    iso8601_ms(fire_ms, when);
    snprintf(text, sizeof(text), "fired by schedule %s (cron '%s', %s) for %s, %lld ms after it%s",
             c->name, jstr(c->vault, "cron"), tz_name(c->r.tz), when, (long long)(c->now - fire_ms),
             caught_up ? "; a missed fire, made by the catch-up policy" : "");
    if (store_event_append(c->st, task, "SCHEDULED", text, NULL, 0, err, sizeof(err)) != 0)
        hlog(LOG_WARN, "cannot record the schedule of %s: %s", task, err);
}

static int function_is_idempotent(const scheduler *s, const char *function)
{
    struct ferry_fn fn;
    return s->reg && registry_fn(s->reg, function, &fn) == 0 &&
           (fn.flags & FERRY_FN_IDEMPOTENT) != 0;
}

/* Makes one fire. Returns 0 when it is handled (made here or by another host), -1 when it
 * could not be made (logged; the next tick tries again). */
static int fire_one(sched_ctx *c, int64_t fire_ms, int caught_up)
{
    char err[1024], task[37];
    json_t *item = NULL;
    /* The schedule's secrets are sealed under the schedule's identity: opened here, so that
     * the store seals them again as the new item's. */
    json_t *open_row = json_deep_copy(c->row);
    int made = store_resource_reveal(c->st, STORE_SCHEDULE, open_row, err, sizeof(err)) == 0 &&
               scheduler_item_vault(json_object_get(open_row, "vault"), &item, err,
                                    sizeof(err)) == 0;
    json_decref(open_row);
    if (!made) {
        warn_once(c, "not fired: %s", err);
        return -1;
    }
    struct store_item_spec spec = {
        .team = c->team,
        .machine = c->r.machine,
        .bridge = c->bridge,
        .priority = c->r.priority,
        .vault = item,
        .schedule_name = c->name,
        .schedule_fire_ms = fire_ms,
        .idempotent = function_is_idempotent(c->s, jstr(item, "function")),
    };
    /* The function's "secret" parameters are sealed at rest too. */
    struct ferry_fn fn;
    json_t *secrets = c->s->reg && registry_fn(c->s->reg, jstr(item, "function"), &fn) == 0
                          ? params_secret_names(fn.desc)
                          : NULL;
    spec.secret_names = secrets;
    int rc = store_queue_create(c->st, &spec, task, NULL, err, sizeof(err));
    json_decref(secrets);
    json_decref(item);
    char when[32];
    iso8601_ms(fire_ms, when);
    if (rc == STORE_OK) {
        record_event(c, task, fire_ms, caught_up);
        hlog(LOG_INFO, "schedule %s/%s fired for %s%s: task %s", c->team, c->name, when,
             caught_up ? " (catch-up)" : "", task);
        c->last_run = fire_ms;
        memcpy(c->last_task, task, sizeof(task));
        c->changed = 1;
    } else if (rc == STORE_CONFLICT) {
        hlog(LOG_DEBUG, "schedule %s/%s: %s", c->team, c->name, err);
        c->conflict = 1;
    } else {
        warn_once(c, "cannot fire for %s: %s", when, err);
        return -1;
    }
    c->e->handled_ms = max64(c->e->handled_ms, fire_ms);
    return 0;
}

/* Makes the due fires the catch-up policy asks for. */
static void fire_due(sched_ctx *c, int64_t lower)
{
    due_fires due;
    size_t k = c->r.catchup == CATCHUP_ALL ? SCHEDULER_CATCHUP_MAX : 1;
    collect_due(&c->r, lower, c->now, k, &due);
    if (due.n == 0)
        return;
    int64_t latest = due.ms[due.n - 1];
    int on_time = c->now - latest <= SCHEDULER_GRACE_MS;
    size_t first = c->r.catchup == CATCHUP_NONE && !on_time ? due.n : 0;
    for (size_t i = first; i < due.n; i++) {
        int caught_up = i + 1 < due.n || !on_time;
        if (fire_one(c, due.ms[i], caught_up) != 0)
            return;
    }
    if (first == due.n) {
        char when[32];
        iso8601_ms(latest, when);
        hlog(LOG_INFO,
             "schedule %s/%s: catchup none: %s%zu missed fire(s), the latest for %s, "
             "not made",
             c->team, c->name, due.older_exact ? "" : "at least ", due.older + due.n, when);
    } else if (due.older > 0) {
        char when[32];
        iso8601_ms(due.ms[0], when);
        hlog(LOG_INFO, "schedule %s/%s: catchup %s: %s%zu missed fire(s) before %s not made",
             c->team, c->name, catchup_names[c->r.catchup], due.older_exact ? "" : "at least ",
             due.older, when);
    }
    c->e->handled_ms = max64(c->e->handled_ms, latest);
}

/* Copies the bridge of the schedule's machine into bridge; -1 (logged) when there is none. */
static int machine_bridge(sched_ctx *c, char *bridge, size_t len)
{
    json_t *row = NULL;
    char err[1024];
    if (c->r.machine == NULL) {
        warn_once(c, "not fired: the vault names no \"machine\"");
        return -1;
    }
    int rc = store_resource_get(c->st, STORE_MACHINE, c->team, c->r.machine, &row, err,
                                sizeof(err));
    json_t *group = NULL;
    /* A machine group: its first member's bridge (every member's, for a queue item). */
    if (rc == STORE_NOT_FOUND && store_resource_get(c->st, STORE_MACHINE_GROUP, c->team,
                                                    c->r.machine, &group, NULL, 0) == STORE_OK)
        rc = store_resource_get(c->st, STORE_MACHINE, c->team,
                                json_string_value(json_array_get(json_object_get(group,
                                                                                 "members"),
                                                                 0)),
                                &row, err, sizeof(err));
    json_decref(group);
    if (rc != STORE_OK) {
        warn_once(c, "not fired: %s", err);
        return -1;
    }
    snprintf(bridge, len, "%s", jstr(row, "bridgeName") ? jstr(row, "bridgeName") : "");
    json_decref(row);
    return 0;
}

/* Writes lastRun / nextRun / lastTaskId when this tick changed them. */
static void record_run(sched_ctx *c, const char *stored_task)
{
    char err[512];
    if (c->conflict)
        return;
    int64_t stored_next = row_time(c->row, "nextRun");
    if (!c->changed && stored_next == c->next_run)
        return;
    const char *task = c->changed ? c->last_task : stored_task;
    if (store_schedule_set_run(c->st, c->team, c->name, c->next_run, c->last_run, task, err,
                               sizeof(err)) != STORE_OK)
        hlog(LOG_WARN, "schedule %s/%s: cannot record its runs: %s", c->team, c->name, err);
}

/* Ticks one schedule; returns its next fire in scheduler time (INT64_MAX: none here). */
static int64_t schedule_tick(scheduler *s, store *st, const json_t *row, sched_entry *e,
                             int64_t now)
{
    sched_ctx c = {.s = s, .st = st, .e = e, .row = row, .now = now};
    c.vault = json_object_get(row, "vault");
    c.team = jstr(row, "teamName");
    c.name = jstr(row, "scheduleName");
    char err[1024], bridge[256];
    if (rules_load(c.vault, &c.r, err, sizeof(err)) != 0) {
        warn_once(&c, "not fired: %s", err);
        return INT64_MAX;
    }
    int64_t next = INT64_MAX;
    if (machine_bridge(&c, bridge, sizeof(bridge)) != 0 || strcmp(bridge, s->cfg->bridge) != 0)
        goto out;
    c.bridge = bridge;
    entry_update(&c);
    c.last_run = row_time(row, "lastRun");
    if (c.r.fires) {
        int64_t lower =
            max64(max64(e->base_ms, c.last_run), max64(e->handled_ms, c.r.until_ms - 1));
        fire_due(&c, lower);
        next = next_after(&c.r, max64(now, c.r.until_ms - 1));
    }
    c.next_run = next == INT64_MAX ? 0 : next;
    record_run(&c, jstr(row, "lastTaskId"));
out:
    rules_free(&c.r);
    return next;
}

/* ---- the tick ------------------------------------------------------------------------- */

scheduler *scheduler_new(const ferry_config *cfg, const registry *reg)
{
    scheduler *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    s->cfg = cfg;
    s->reg = reg;
    s->index = json_object();
    test_clock(&s->clock_offset_ms, &s->clock_rate);
    if (s->clock_offset_ms != 0 || s->clock_rate != 1) {
        char when[32];
        iso8601_ms(sched_time(s, now_ms()), when);
        hlog(LOG_WARN,
             "test hook: schedules fire by a test clock (FERRY_TEST_CLOCK_OFFSET_MS="
             "%lld, FERRY_TEST_CLOCK_RATE=%lld), now %s",
             (long long)s->clock_offset_ms, (long long)s->clock_rate, when);
    }
    return s;
}

static void entries_free(sched_entry *entries, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(entries[i].key);
        free(entries[i].timing);
    }
    free(entries);
}

/* Moves the cached entry for row's schedule (or a fresh one) into *out. */
static void entry_take(scheduler *s, const json_t *row, sched_entry *out)
{
    char *key = xasprintf("%s\n%s", jstr(row, "teamName"), jstr(row, "scheduleName"));
    json_t *at = json_object_get(s->index, key);
    if (at && s->entries[json_integer_value(at)].key != NULL) {
        sched_entry *old = &s->entries[json_integer_value(at)];
        *out = *old;
        old->key = NULL;
        old->timing = NULL;
        free(key);
        return;
    }
    *out = (sched_entry){.key = key, .version = -1, .warned_version = -1};
}

static int64_t real_delay(const scheduler *s, int64_t now, int64_t next_fire)
{
    if (next_fire == INT64_MAX)
        return SCHEDULER_RESCAN_MS;
    int64_t d = next_fire - now;
    d = d <= 0 ? 1 : (d + s->clock_rate - 1) / s->clock_rate;
    return d > SCHEDULER_RESCAN_MS ? SCHEDULER_RESCAN_MS : d;
}

int64_t scheduler_tick(scheduler *s, store *st, int64_t now_ms)
{
    int64_t now = sched_time(s, now_ms);
    json_t *rows = NULL;
    char err[1024];
    if (store_resource_list(st, STORE_SCHEDULE, NULL, &rows, err, sizeof(err)) != STORE_OK) {
        hlog(LOG_WARN, "scheduler: cannot list the schedules: %s", err);
        return SCHEDULER_RESCAN_MS;
    }
    size_t n = json_array_size(rows);
    sched_entry *entries = calloc(n + 1, sizeof(*entries));
    json_t *index = json_object();
    if (entries == NULL || index == NULL)
        abort();
    int64_t next_fire = INT64_MAX;
    size_t i;
    json_t *row;
    json_array_foreach (rows, i, row) {
        entry_take(s, row, &entries[i]);
        json_object_set_new(index, entries[i].key, json_integer((json_int_t)i));
        int64_t next = schedule_tick(s, st, row, &entries[i], now);
        if (next < next_fire)
            next_fire = next;
    }
    /* Schedules that were removed leave their entries behind here. */
    entries_free(s->entries, s->n_entries);
    json_decref(s->index);
    s->entries = entries;
    s->n_entries = n;
    s->index = index;
    json_decref(rows);
    return real_delay(s, now, next_fire);
}

void scheduler_free(scheduler *s)
{
    if (s == NULL)
        return;
    entries_free(s->entries, s->n_entries);
    json_decref(s->index);
    free(s);
}
