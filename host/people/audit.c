/*
 * The audit log over the store's engine (engine.h), for every driver: one row per change,
 * written by the change's own transaction (people_audit_note, called by the store's
 * mutation functions), and the filtered list `ferry audit list` and the API read.
 */
#include "people.h"
#include "people_store.h"

#include "engine.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest details text kept (longer is cut): the row says what, never a vault's values. */
#define AUDIT_MAX_DETAILS 500

json_t *people_time_json(int64_t ms)
{
    char buf[32];
    if (ms == 0)
        return json_null();
    iso8601_ms(ms, buf);
    return json_string(buf);
}

void people_actor(store *s, struct principal *p)
{
    if (s->actor != NULL) {
        *p = *s->actor;
        return;
    }
    principal_cli(p);
    snprintf(p->via, sizeof(p->via), "host");
}

int people_audit_write(store *s, const struct principal *p, const char *action, const char *team,
                       const char *target, const char *details, char *err, size_t errlen)
{
    char cut[AUDIT_MAX_DETAILS + 1];
    if (details != NULL && strlen(details) > AUDIT_MAX_DETAILS) {
        size_t n = AUDIT_MAX_DETAILS;
        while (n > 0 && ((unsigned char)details[n] & 0xC0) == 0x80)
            n--; /* not inside a UTF-8 character */
        memcpy(cut, details, n);
        cut[n] = '\0';
        details = cut;
    }
    return eng_w(s, NULL, err, errlen, S_AUDIT_INSERT, "ItttNtttt", now_ms(), p->user, p->via,
                 p->address[0] ? p->address : NULL, p->token_id, action, team, target, details);
}

int people_audit_note(store *s, const char *action, const char *team, const char *target,
                      const char *details, char *err, size_t errlen)
{
    struct principal p;
    people_actor(s, &p);
    return people_audit_write(s, &p, action, team, target, details, err, errlen);
}

/* ---- what the store's changes call ------------------------------------------------------ */

static const char *item_action(const struct store_item_spec *sp)
{
    if (sp->schedule_name != NULL)
        return "schedule.fire";
    if (sp->link_kind != NULL && strcmp(sp->link_kind, "retry") == 0)
        return "queue.retry";
    if (sp->link_kind != NULL && strcmp(sp->link_kind, "fallback") == 0)
        return "queue.fallback";
    if (sp->link_kind != NULL && strcmp(sp->link_kind, "call") == 0)
        return "queue.call";
    return "queue.create";
}

/* Items of one team and action, for their audit row. */
struct item_group {
    const struct store_item_spec *first;
    const char *action, *first_id;
    size_t count;
};

#define ITEM_GROUPS 16

int people_audit_items(store *s, const struct store_item_spec *specs, size_t n,
                       char (*task_ids)[37], char *err, size_t errlen)
{
    struct item_group g[ITEM_GROUPS];
    size_t n_groups = 0, other = 0;
    for (size_t i = 0; i < n; i++) {
        const char *action = item_action(&specs[i]);
        size_t k = 0;
        while (k < n_groups && (g[k].action != action || strcmp(g[k].first->team, specs[i].team)))
            k++;
        if (k == n_groups && n_groups == ITEM_GROUPS) {
            other++; /* more teams and actions than rows: counted in one row without a team */
            continue;
        }
        if (k == n_groups)
            g[n_groups++] = (struct item_group){&specs[i], action, task_ids[i], 0};
        g[k].count++;
    }
    int rc = STORE_OK;
    for (size_t k = 0; rc == STORE_OK && k < n_groups; k++) {
        const struct store_item_spec *sp = g[k].first;
        char details[400];
        if (g[k].count > 1)
            snprintf(details, sizeof(details), "%zu items, the first %s", g[k].count,
                     g[k].first_id);
        else if (sp->parent_task_id != NULL)
            snprintf(details, sizeof(details), "%s on %s, priority %d, after %s %.40s",
                     sp->function, sp->machine, sp->priority, sp->link_kind,
                     sp->parent_task_id);
        else
            snprintf(details, sizeof(details), "%s on %s, priority %d%s%s", sp->function,
                     sp->machine, sp->priority, sp->schedule_name ? ", schedule " : "",
                     sp->schedule_name ? sp->schedule_name : "");
        rc = people_audit_note(s, g[k].action, sp->team, g[k].count > 1 ? NULL : g[k].first_id,
                               details, err, errlen);
    }
    if (rc == STORE_OK && other > 0) {
        char details[64];
        snprintf(details, sizeof(details), "%zu items of more teams", other);
        rc = people_audit_note(s, "queue.create", NULL, NULL, details, err, errlen);
    }
    return rc;
}

int people_audit_item(store *s, const char *action, int64_t seq, const char *details, char *err,
                      size_t errlen)
{
    json_t *row = NULL;
    int rc = eng_read_item(s, seq, now_ms(), 0, &row, err, errlen);
    if (rc == STORE_OK)
        rc = people_audit_note(s, action, json_string_value(json_object_get(row, "teamName")),
                               json_string_value(json_object_get(row, "taskId")), details, err,
                               errlen);
    json_decref(row);
    return rc;
}

int people_audit_resource(store *s, int kind, const char *verb, const char *team,
                          const char *name, const json_t *patch, char *err, size_t errlen)
{
    char action[64], details[AUDIT_MAX_DETAILS + 1] = "";
    size_t len = 0;
    const char *key;
    const json_t *v;
    snprintf(action, sizeof(action), "%s.%s",
             kind == STORE_MACHINE_GROUP ? "machine-group" : store_kind_name((store_kind)kind),
             verb);
    json_object_foreach ((json_t *)patch, key, v) {
        if (len + strlen(key) + 16 >= sizeof(details))
            break;
        len += (size_t)snprintf(details + len, sizeof(details) - len, "%s%s",
                                len ? ", " : "vault keys: ", key);
    }
    (void)v;
    return people_audit_note(s, action, kind == STORE_TEAM ? name : team, name,
                             details[0] ? details : NULL, err, errlen);
}

/* ---- the list ---------------------------------------------------------------------------- */

struct audit_query {
    FILE *sql;
    struct eng_val v[12];
    int n;
};

static void aq_text(struct audit_query *q, const char *part, const char *value)
{
    q->v[q->n++] = (struct eng_val){.is_text = 1, .text = value};
    fprintf(q->sql, part, q->n);
}

static void aq_num(struct audit_query *q, const char *part, int64_t value)
{
    q->v[q->n++] = (struct eng_val){.num = value};
    fprintf(q->sql, part, q->n);
}

struct audit_ctx {
    const struct people_audit_filter *f;
    int limit, truncated;
    json_t *out;
};

static json_t *opt_text(const char *t)
{
    return t ? json_string(t) : json_null();
}

static json_t *audit_row_at(eng_rows *r)
{
    json_t *row = json_pack("{s:I,s:o,s:I,s:s,s:s,s:o}", "id", (json_int_t)eng_i64(r, 0), "time",
                            people_time_json(eng_i64(r, 1)), "timeMs", (json_int_t)eng_i64(r, 1),
                            "user", eng_text(r, 2), "via", eng_text(r, 3), "address",
                            opt_text(eng_text(r, 4)));
    json_object_set_new(row, "tokenId",
                        eng_null(r, 5) ? json_null() : json_integer(eng_i64(r, 5)));
    json_object_set_new(row, "action", json_string(eng_text(r, 6)));
    json_object_set_new(row, "team", opt_text(eng_text(r, 7)));
    json_object_set_new(row, "target", opt_text(eng_text(r, 8)));
    json_object_set_new(row, "details", opt_text(eng_text(r, 9)));
    return row;
}

static int audit_list_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct audit_ctx *c = ctx;
    const struct people_audit_filter *f = c->f;
    struct audit_query q = {0};
    char *text = NULL;
    size_t len = 0;
    eng_rows r;
    q.sql = open_memstream(&text, &len);
    if (q.sql == NULL)
        abort();
    fputs("SELECT seq, at, actor, via, address, token_id, action, team_name, target, details"
          " FROM audit_log WHERE 1 = 1",
          q.sql);
    if (f->user)
        aq_text(&q, " AND actor = ?%d", f->user);
    if (f->team)
        aq_text(&q, " AND team_name = ?%d", f->team);
    if (f->action && strchr(f->action, '.') != NULL) {
        aq_text(&q, " AND action = ?%d", f->action);
    } else if (f->action) { /* a family: "queue" is queue.create, queue.cancel … */
        aq_text(&q, " AND action > ?%d || '.'", f->action);
        aq_text(&q, " AND action < ?%d || '/'", f->action);
    }
    if (f->target)
        aq_text(&q, " AND target = ?%d", f->target);
    if (f->since_ms)
        aq_num(&q, " AND at >= ?%d", f->since_ms);
    if (f->until_ms)
        aq_num(&q, " AND at <= ?%d", f->until_ms);
    aq_num(&q, " ORDER BY seq DESC LIMIT ?%d", (int64_t)c->limit + 1);
    fclose(q.sql);
    int rc = eng_qv(s, &r, err, errlen, text, q.n, q.v);
    free(text);
    if (rc != STORE_OK)
        return rc;
    json_t *rows = json_array();
    int got, n = 0;
    c->truncated = 0;
    while ((got = eng_next(&r, err, errlen)) == 1) {
        if (n++ == c->limit) {
            c->truncated = 1;
            break;
        }
        json_array_append_new(rows, audit_row_at(&r));
    }
    eng_done(&r);
    json_decref(c->out);
    c->out = rows;
    return got < 0 ? got : STORE_OK;
}

int people_audit_list(store *s, const struct people_audit_filter *f, json_t **rows,
                      int *truncated, char *err, size_t errlen)
{
    static const struct people_audit_filter none;
    struct audit_ctx c = {.f = f ? f : &none};
    c.limit = c.f->limit > 0 ? c.f->limit : STORE_DEFAULT_RECORDS;
    if (c.limit > STORE_MAX_RECORDS)
        c.limit = STORE_MAX_RECORDS;
    int rc = eng_run(s, 0, audit_list_body, &c, err, errlen);
    if (truncated)
        *truncated = rc == STORE_OK && c.truncated;
    return eng_take_json(c.out, rows, rc);
}
