/*
 * The engine interface's own half (engine.h): statement texts expanded for a handle's
 * dialect, parameters from type strings, the cursor, migrations, and the pieces of the
 * store's logic every operation shares (finding an item, events, cascades, item rows).
 */
#include "engine.h"
#include "seal.h"
#include "store_seal.h"
#include "groups.h"

#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARAMS 16

/* ---- statement texts ---------------------------------------------------------------------- */

/* Appends the fragment named at *p ("{name}" or "{name:N}") to out; *p moves past it. */
static void expand_fragment(const struct eng_driver *d, const char **p, FILE *out)
{
    const char *start = *p + 1, *end = strchr(start, '}');
    const char *colon = memchr(start, ':', (size_t)(end - start));
    size_t len = (size_t)((colon ? colon : end) - start);
    *p = end + 1;
    for (int f = 0; f < F_COUNT; f++) {
        if (strlen(store_fragment_names[f]) != len ||
            strncmp(store_fragment_names[f], start, len) != 0)
            continue;
        for (const char *c = d->fragments[f] ? d->fragments[f] : ""; *c; c++) {
            if (*c == '@' && colon)
                fprintf(out, "?%.*s", (int)(end - colon - 1), colon + 1);
            else
                fputc(*c, out);
        }
        return;
    }
    abort(); /* a statement names a fragment that does not exist: caught by every test */
}

/* Whether sql names a fragment ("{" and a lower-case letter). */
static int has_fragment(const char *sql)
{
    for (const char *p = strchr(sql, '{'); p; p = strchr(p + 1, '{'))
        if (p[1] >= 'a' && p[1] <= 'z')
            return 1;
    return 0;
}

/* Copies the text between fragments a run at a time: character by character through the
 * stream cost a create queue-item 5% of its instructions (each statement is expanded once
 * per connection, and a CLI command is one connection). Most texts name no fragment and are
 * copied as they are: a stream of their own cost 7,000 instructions each, 90,000 of a
 * create queue-item. */
static char *expand(const struct eng_driver *d, const char *sql)
{
    if (!has_fragment(sql))
        return xstrdup(sql);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL)
        abort();
    for (const char *p = sql; *p;) {
        if (*p == '{' && p[1] >= 'a' && p[1] <= 'z') {
            expand_fragment(d, &p, out);
            continue;
        }
        size_t run = 1 + strcspn(p + 1, "{");
        fwrite(p, 1, run, out);
        p += run;
    }
    fclose(out);
    return text;
}

const char *eng_sql(store *s, int id)
{
    const struct eng_driver *d = s->drv;
    if (s->sql[id] != NULL)
        return s->sql[id];
    const char *sql = d->sql && d->sql[id] ? d->sql[id] : store_statements[id].sql;
    if (sql == NULL || ((store_statements[id].flags & STMT_LOCK_ONLY) && !d->row_locks))
        return NULL;
    s->sql[id] = expand(d, sql);
    return s->sql[id];
}

void eng_init(store *s, const struct eng_driver *d)
{
    s->drv = d;
    s->sql = calloc(S_COUNT, sizeof(char *));
    if (s->sql == NULL)
        abort();
}

void eng_free_texts(store *s)
{
    for (int i = 0; s->sql && i < S_COUNT; i++)
        free(s->sql[i]);
    free(s->sql);
    s->sql = NULL;
}

/* ---- parameters and execution ------------------------------------------------------------ */

struct params {
    int n;
    struct eng_val v[MAX_PARAMS];
    char *owned[MAX_PARAMS];
};

static void params_build(struct params *pp, const char *types, va_list ap)
{
    memset(pp, 0, sizeof(*pp));
    for (int i = 0; i < MAX_PARAMS && types[i]; i++, pp->n++) {
        struct eng_val *v = &pp->v[i];
        switch (types[i]) {
        case 't':
            v->text = va_arg(ap, const char *);
            v->is_text = 1;
            v->is_null = v->text == NULL;
            break;
        case 'i':
            v->num = va_arg(ap, int);
            break;
        case 'I':
            v->num = va_arg(ap, int64_t);
            break;
        case 'N':
            v->num = va_arg(ap, int64_t);
            v->is_null = v->num == 0;
            break;
        case 'j': {
            json_t *j = va_arg(ap, json_t *);
            pp->owned[i] = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            v->text = pp->owned[i];
            v->is_text = 1;
            v->is_null = v->text == NULL;
            break;
        }
        default:
            abort(); /* a type string the store's own code got wrong */
        }
    }
}

static void params_free(struct params *pp)
{
    for (int i = 0; i < pp->n; i++)
        free(pp->owned[i]);
}

/* An empty cursor, for a statement the engine does not need. */
static void rows_empty(store *s, eng_rows *rows)
{
    if (rows)
        *rows = (eng_rows){.s = s, .impl = NULL, .pos = 0, .n = 0};
}

static int exec_v(store *s, int id, int flags, eng_rows *rows, long *changes, char *err,
                  size_t errlen, const char *types, va_list ap)
{
    const char *sql = eng_sql(s, id);
    eng_rows scratch;
    if (changes)
        *changes = 0;
    if (sql == NULL) {
        rows_empty(s, rows);
        return STORE_OK;
    }
    struct params pp;
    params_build(&pp, types, ap);
    int rc = s->drv->exec(s, id, sql, flags, pp.n, pp.v, rows ? rows : &scratch, changes, err,
                          errlen);
    params_free(&pp);
    if (rc == STORE_OK && rows == NULL)
        s->drv->done(&scratch);
    return rc;
}

int eng_exec(store *s, int flags, eng_rows *rows, long *changes, char *err, size_t errlen, int id,
             const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int rc = exec_v(s, id, flags, rows, changes, err, errlen, types, ap);
    va_end(ap);
    return rc;
}

int eng_scalar(store *s, int64_t *out, char *err, size_t errlen, int id, const char *types, ...)
{
    eng_rows r;
    va_list ap;
    va_start(ap, types);
    int rc = exec_v(s, id, 0, &r, NULL, err, errlen, types, ap);
    va_end(ap);
    *out = 0;
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    if (got == 1)
        *out = eng_i64(&r, 0);
    eng_done(&r);
    return got < 0 ? got : STORE_OK;
}

int eng_qv(store *s, eng_rows *rows, char *err, size_t errlen, const char *sql, int n,
           const struct eng_val *v)
{
    return s->drv->exec(s, -1, sql, 0, n, v, rows, NULL, err, errlen);
}

int eng_wv(store *s, int id, int n, const struct eng_val *v, char *err, size_t errlen)
{
    eng_rows rows;
    int rc = s->drv->exec(s, id, eng_sql(s, id), ENG_WRITE, n, v, &rows, NULL, err, errlen);
    if (rc == STORE_OK)
        s->drv->done(&rows);
    return rc;
}

int eng_next(eng_rows *r, char *err, size_t errlen)
{
    return r->impl ? r->s->drv->next(r, err, errlen) : 0;
}

const char *eng_text(eng_rows *r, int col)
{
    return r->s->drv->text(r, col);
}

int64_t eng_i64(eng_rows *r, int col)
{
    return r->s->drv->i64(r, col);
}

int eng_null(eng_rows *r, int col)
{
    return r->s->drv->is_null(r, col);
}

void eng_done(eng_rows *r)
{
    if (r->impl)
        r->s->drv->done(r);
    r->impl = NULL;
}

int eng_run(store *s, int write, eng_body body, void *ctx, char *err, size_t errlen)
{
    if (s->batch_lost) {
        seterr(err, errlen,
               "store: the batch was rolled back (after an error, or with its connection); "
               "end it first");
        return STORE_ERROR;
    }
    if (write == 1)
        s->writes++;
    if (s->batch_depth > 0)
        return s->drv->run_in_batch(s, body, ctx, err, errlen);
    s->read_no_barrier = write == ENG_READ_NO_BARRIER;
    int rc = s->drv->run(s, write > 0, body, ctx, err, errlen);
    s->read_no_barrier = 0;
    return rc;
}

/* ---- migrations -------------------------------------------------------------------------- */

/* The newest schema version the store has recorded and how many it has recorded (both 0
 * for a new store). */
static int current_version(store *s, int64_t *version, int64_t *count, char *err, size_t errlen)
{
    int64_t exists = 0;
    int rc = s->drv->has_table ? s->drv->has_table(s, "schema_migrations", &exists, err, errlen)
                               : eng_scalar(s, &exists, err, errlen, S_SCHEMA_EXISTS, "");
    *version = *count = 0;
    if (rc != STORE_OK || !exists)
        return rc;
    eng_rows r;
    rc = eng_q(s, &r, err, errlen, S_SCHEMA_VERSION, "");
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    if (got == 1) {
        *version = eng_i64(&r, 0);
        *count = eng_i64(&r, 1);
    }
    eng_done(&r);
    return got < 0 ? got : STORE_OK;
}

/* Whether the store has recorded migration version (versions: the recorded ones, n). */
static int is_recorded(const int64_t *versions, size_t n, int version)
{
    for (size_t i = 0; i < n; i++)
        if (versions[i] == version)
            return 1;
    return 0;
}

/* Applies every migration the store has not recorded, in order: those past its newest
 * version, and one whose record is missing below it (a store taken back by hand, as the
 * upgrade tests do, gets it again). */
static int migrate_body(store *s, void *ctx, char *err, size_t errlen)
{
    const struct eng_driver *d = s->drv;
    int64_t version = 0, count = 0, latest = d->migrations[d->n_migrations - 1].version;
    int64_t *versions = NULL;
    size_t n = 0;
    eng_rows r;
    (void)ctx;
    int rc = eng_w(s, NULL, err, errlen, S_MIGRATION_LOCK, "");
    if (rc == STORE_OK)
        rc = eng_w(s, NULL, err, errlen, S_MIGRATIONS_TABLE, "");
    if (rc == STORE_OK)
        rc = current_version(s, &version, &count, err, errlen);
    if (rc == STORE_OK && version > latest) {
        seterr(err, errlen,
               "the store has schema version %lld, newer than this ferry knows (%lld); "
               "upgrade ferry",
               (long long)version, (long long)latest);
        return STORE_ERROR;
    }
    if (rc == STORE_OK)
        rc = eng_q(s, &r, err, errlen, S_MIGRATIONS_LIST, "");
    if (rc == STORE_OK) {
        int got;
        versions = calloc((size_t)count + 1, sizeof(*versions));
        if (versions == NULL)
            abort();
        while ((got = eng_next(&r, err, errlen)) == 1 && n < (size_t)count)
            versions[n++] = eng_i64(&r, 0);
        eng_done(&r);
        rc = got < 0 ? got : STORE_OK;
    }
    for (size_t i = 0; rc == STORE_OK && i < d->n_migrations; i++) {
        if (is_recorded(versions, n, d->migrations[i].version))
            continue;
        char msg[512] = "";
        rc = d->script(s, d->migrations[i].sql, msg, sizeof(msg));
        if (rc != STORE_OK && rc != ENG_AGAIN && rc != ENG_LOST)
            seterr(err, errlen, "migration %d failed: %s", d->migrations[i].version, msg);
        if (rc == STORE_OK)
            rc = eng_w(s, NULL, err, errlen, S_MIGRATION_RECORD, "itI", d->migrations[i].version,
                       d->migrations[i].name, now_ms());
    }
    free(versions);
    return rc;
}

int eng_migrate(store *s, char *err, size_t errlen)
{
    int64_t version = 0, count = 0;
    const struct eng_driver *d = s->drv;
    /* A store already up to date is only read, so opening it does not queue behind
     * writers. */
    int rc = current_version(s, &version, &count, err, errlen);
    if (rc == STORE_OK && version == d->migrations[d->n_migrations - 1].version &&
        count == (int64_t)d->n_migrations)
        return STORE_OK;
    return eng_run(s, 1, migrate_body, NULL, err, errlen);
}

static int migrations_body(store *s, void *ctx, char *err, size_t errlen)
{
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_MIGRATIONS_LIST, "");
    if (rc != STORE_OK)
        return rc;
    json_t *rows = json_array();
    int got;
    while ((got = eng_next(&r, err, errlen)) == 1) {
        char when[32];
        iso8601_ms(eng_i64(&r, 2), when);
        json_array_append_new(rows, json_pack("{s:I,s:s,s:s,s:I}", "version",
                                              (json_int_t)eng_i64(&r, 0), "name", eng_text(&r, 1),
                                              "appliedTime", when, "appliedTimeMs",
                                              (json_int_t)eng_i64(&r, 2)));
    }
    eng_done(&r);
    if (got < 0) {
        json_decref(rows);
        return got;
    }
    json_decref(*(json_t **)ctx);
    *(json_t **)ctx = rows;
    return STORE_OK;
}

int eng_migrations_list(store *s, json_t **rows, char *err, size_t errlen)
{
    *rows = NULL;
    int rc = eng_run(s, 0, migrations_body, rows, err, errlen);
    if (rc != STORE_OK) {
        json_decref(*rows);
        *rows = NULL;
    }
    return rc;
}

/* ---- shared pieces ----------------------------------------------------------------------- */

int eng_resolve(store *s, const char *id, const char *what, enum eng_lock lock,
                struct item_ref *ref, char *err, size_t errlen)
{
    static const int full[] = {S_RESOLVE_FULL, S_RESOLVE_FULL_SHARE, S_RESOLVE_FULL_UPDATE,
                               S_RESOLVE_FULL_DELETE};
    static const int prefix[] = {S_RESOLVE_PREFIX, S_RESOLVE_PREFIX_SHARE,
                                 S_RESOLVE_PREFIX_UPDATE, S_RESOLVE_PREFIX_DELETE};
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, strlen(id) == 36 ? full[lock] : prefix[lock], "t", id);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    if (got == 0) {
        seterr(err, errlen, "%s%sno queue item with task id '%s'", what ? what : "",
               what ? ": " : "", id);
        got = STORE_NOT_FOUND;
    } else if (got == 1) {
        memset(ref, 0, sizeof(*ref));
        ref->seq = eng_i64(&r, 0);
        snprintf(ref->task_id, sizeof(ref->task_id), "%s", eng_text(&r, 1));
        snprintf(ref->status, sizeof(ref->status), "%s", eng_text(&r, 2));
        ref->retry_count = (int)eng_i64(&r, 3);
        snprintf(ref->bridge, sizeof(ref->bridge), "%s", eng_text(&r, 4));
        got = eng_next(&r, err, errlen);
        if (got == 1) {
            seterr(err, errlen,
                   "%s%stask id prefix '%s' matches several items (%s, %s …); give more "
                   "characters",
                   what ? what : "", what ? ": " : "", id, ref->task_id, eng_text(&r, 1));
            got = STORE_AMBIGUOUS;
        }
    }
    eng_done(&r);
    return got < 0 ? got : STORE_OK;
}

int eng_event(store *s, int64_t seq, const char *action, const char *details, int details_is_json,
              int64_t at, char *err, size_t errlen)
{
    return eng_w(s, NULL, err, errlen, S_EVENT_INSERT, "IttiIt", seq, action, details,
                 details_is_json, at, s->actor_label);
}

int eng_events_add(store *s, struct eng_events *ev, int64_t seq, const char *action,
                   const char *details, int64_t at, char *err, size_t errlen)
{
    if (s->drv->in_process) {
        if (ev->n == ev->cap) {
            ev->cap = ev->cap ? 2 * ev->cap : 16;
            ev->list = realloc(ev->list, ev->cap * sizeof(*ev->list));
            if (ev->list == NULL)
                abort();
        }
        ev->list[ev->n++] =
            (struct eng_event_row){seq, at, action, details ? xstrdup(details) : NULL};
        return STORE_OK;
    }
    json_t *text = details ? json_string(details) : json_null();
    if (text == NULL) /* not UTF-8: kept byte for byte by a statement of its own */
        return eng_event(s, seq, action, details, 0, at, err, errlen);
    if (ev->rows == NULL)
        ev->rows = json_array();
    /* The actor (store_set_actor) as a sixth element; without one, the row stays short
     * and the statement reads NULL. */
    json_array_append_new(ev->rows,
                          s->actor_label
                              ? json_pack("[I,s,o,i,I,s]", (json_int_t)seq, action, text, 0,
                                          (json_int_t)at, s->actor_label)
                              : json_pack("[I,s,o,i,I]", (json_int_t)seq, action, text, 0,
                                          (json_int_t)at));
    return STORE_OK;
}

/* Writes rows [0, n) of list with statement id (S_EVENTS_INSERT_4 or _16, n rows). */
static int events_insert(store *s, int id, const struct eng_event_row *list, size_t n, char *err,
                         size_t errlen)
{
    struct eng_val v[5 * 16];
    for (size_t i = 0; i < n; i++) {
        struct eng_val *r = &v[5 * i];
        r[0] = (struct eng_val){.num = list[i].seq};
        r[1] = (struct eng_val){.is_text = 1, .text = list[i].action};
        r[2] = (struct eng_val){
            .is_null = list[i].details == NULL, .is_text = 1, .text = list[i].details};
        r[3] = (struct eng_val){.num = list[i].at};
        r[4] = (struct eng_val){
            .is_null = s->actor_label == NULL, .is_text = 1, .text = s->actor_label};
    }
    return eng_wv(s, id, (int)(5 * n), v, err, errlen);
}

int eng_events_flush(store *s, struct eng_events *ev, char *err, size_t errlen)
{
    int rc = STORE_OK;
    size_t i = 0;
    while (rc == STORE_OK && ev->n - i >= 4) {
        size_t n = ev->n - i >= 16 ? 16 : 4;
        rc = events_insert(s, n == 16 ? S_EVENTS_INSERT_16 : S_EVENTS_INSERT_4, ev->list + i, n,
                           err, errlen);
        i += n;
    }
    for (; rc == STORE_OK && i < ev->n; i++)
        rc = eng_event(s, ev->list[i].seq, ev->list[i].action, ev->list[i].details, 0,
                       ev->list[i].at, err, errlen);
    if (rc == STORE_OK && json_array_size(ev->rows) > 0) {
        char *text = json_dumps(ev->rows, JSON_COMPACT);
        rc = eng_w(s, NULL, err, errlen, S_EVENTS_INSERT_MANY, "t", text);
        free(text);
    }
    eng_events_drop(ev);
    return rc;
}

void eng_events_drop(struct eng_events *ev)
{
    for (size_t i = 0; i < ev->n; i++)
        free(ev->list[i].details);
    free(ev->list);
    json_decref(ev->rows);
    *ev = (struct eng_events){0};
}

struct dep_work {
    int64_t seq;
    char task_id[37];
    const char *why; /* static: "FAILED", "CANCELLED", "was removed" */
};

/* Collects the PENDING items that depend on seq (locked where the engine locks rows). */
static int pending_dependents(store *s, int64_t seq, struct dep_work **list, size_t *n,
                              size_t *cap, char *err, size_t errlen)
{
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_DEPENDENTS_PENDING, "I", seq);
    int got = 0;
    while (rc == STORE_OK && (got = eng_next(&r, err, errlen)) == 1) {
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *list = realloc(*list, *cap * sizeof(**list));
            if (*list == NULL)
                abort();
        }
        (*list)[*n].seq = eng_i64(&r, 0);
        snprintf((*list)[*n].task_id, 37, "%s", eng_text(&r, 1));
        (*list)[*n].why = "CANCELLED";
        (*n)++;
    }
    if (rc == STORE_OK)
        eng_done(&r);
    return rc != STORE_OK ? rc : got;
}

int eng_cancel_dependents(store *s, int64_t seq, const char *task_id, const char *why, int64_t now,
                          char *err, size_t errlen)
{
    size_t n = 1, cap = 16;
    struct dep_work *work = malloc(cap * sizeof(*work));
    if (work == NULL)
        abort();
    work[0].seq = seq;
    work[0].why = why;
    snprintf(work[0].task_id, sizeof(work[0].task_id), "%s", task_id);
    int rc = STORE_OK;
    /* Breadth first: each entry's dependents are appended, then cancelled. An item reached
     * twice (a diamond) is PENDING only the first time, so it is cancelled once. */
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        char reason[128];
        snprintf(reason, sizeof(reason), "dependency %s %s", work[i].task_id, work[i].why);
        size_t first = n;
        rc = pending_dependents(s, work[i].seq, &work, &n, &cap, err, errlen);
        for (size_t j = first; rc == STORE_OK && j < n; j++) {
            long rows = 0;
            rc = eng_w(s, &rows, err, errlen, S_CANCEL_DEPENDENT, "IIt", work[j].seq, now, reason);
            if (rc == STORE_OK && rows > 0)
                rc = eng_event(s, work[j].seq, "CANCELLED", reason, 0, now, err, errlen);
            /* A machine group's member (after the group item's dependency): its parent
             * takes note (groups.c). */
            if (rc == STORE_OK && rows > 0)
                rc = fanout_member_ended(s, work[j].seq, now, NULL, err, errlen);
        }
    }
    free(work);
    return rc;
}

static void item_cols(eng_rows *r, int k, struct store_item_cols *c)
{
    *c = (struct store_item_cols){
        .task_id = eng_text(r, k + 0),
        .status = eng_text(r, k + 1),
        .function = eng_text(r, k + 2),
        .team = eng_text(r, k + 3),
        .machine = eng_text(r, k + 4),
        .bridge = eng_text(r, k + 5),
        .priority = (int)eng_i64(r, k + 6),
        .vault_json = eng_text(r, k + 7),
        .response_json = eng_text(r, k + 8),
        .created_at = eng_i64(r, k + 9),
        .updated_at = eng_i64(r, k + 10),
        .run_after = eng_i64(r, k + 11),
        .assigned_at = eng_i64(r, k + 12),
        .started_at = eng_i64(r, k + 13),
        .finished_at = eng_i64(r, k + 14),
        .retry_count = (int)eng_i64(r, k + 15),
        .last_retry_at = eng_i64(r, k + 16),
        .last_failure_reason = eng_text(r, k + 17),
        .lease_owner = eng_text(r, k + 18),
        .claim_token = eng_text(r, k + 19),
        .lease_expires_at = eng_i64(r, k + 20),
        .progress_percent = eng_null(r, k + 21) ? -1 : (int)eng_i64(r, k + 21),
        .progress_message = eng_text(r, k + 22),
        .parent_task_id = eng_text(r, k + 23),
        .link_kind = eng_text(r, k + 24),
        .schedule_name = eng_text(r, k + 25),
        .schedule_fire_at = eng_i64(r, k + 26),
        .idempotent = (int)eng_i64(r, k + 27),
        .after_csv = eng_text(r, k + 28),
        .deps_ready_at = eng_i64(r, k + 29),
    };
}

json_t *eng_item_row(eng_rows *r, int first, int64_t now, int64_t stale_ms, int with_token)
{
    struct store_item_cols c;
    item_cols(r, first, &c);
    return store_item_row(&c, now, stale_ms, with_token);
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

/* Copies src (NULL: empty) into dst of cap bytes, cut to fit: snprintf's "%s" without its
 * format parsing (about 550 instructions a call, twice an item a claim reads back). */
static void copy_text(char *dst, size_t cap, const char *src)
{
    size_t len = src ? strnlen(src, cap - 1) : 0;
    memcpy(dst, src ? src : "", len);
    dst[len] = '\0';
}

void eng_item_struct(eng_rows *r, int first, struct store_item *it)
{
    struct store_item_cols c;
    item_cols(r, first, &c);
    memset(it, 0, sizeof(*it));
    copy_text(it->task_id, sizeof(it->task_id), c.task_id);
    copy_text(it->token, sizeof(it->token), c.claim_token);
    it->function = dup_or_null(c.function);
    it->team = dup_or_null(c.team);
    it->machine = dup_or_null(c.machine);
    it->bridge = dup_or_null(c.bridge);
    it->status = dup_or_null(c.status);
    it->priority = c.priority;
    it->retry_count = c.retry_count;
    it->attempt = c.retry_count + 1;
    it->idempotent = c.idempotent != 0;
    it->vault = store_vault_parse(c.vault_json);
    if (!json_is_object(it->vault)) {
        json_decref(it->vault);
        it->vault = json_object();
    }
    /* The host runs this item: its secrets are opened here, and only here, for it. One that
     * does not open (a missing or wrong key, an altered value) reaches the function as
     * null, and the reason goes to the host's log, never the ciphertext. */
    char why[600];
    if (store_seal_open_item(r->s, it->team, it->task_id, it->vault, why, sizeof(why)) != 0) {
        fprintf(stderr, "ferry: item %s: %s\n", it->task_id, why);
        seal_vault_drop_sealed(it->vault);
    }
    it->parent_task_id = dup_or_null(c.parent_task_id);
    it->link_kind = dup_or_null(c.link_kind);
    it->schedule_name = dup_or_null(c.schedule_name);
    it->lease_owner = dup_or_null(c.lease_owner);
    it->created_ms = c.created_at;
    it->started_ms = c.started_at;
    it->lease_expires_ms = c.lease_expires_at;
}

int eng_read_item(store *s, int64_t seq, int64_t now, int with_token, json_t **row, char *err,
                  size_t errlen)
{
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_ITEM_BY_SEQ, "I", seq);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    if (got == 1) {
        json_decref(*row);
        *row = eng_item_row(&r, 0, now, ENG_STALE_DEFAULT_MS, with_token);
    } else if (got == 0) {
        seterr(err, errlen, "queue item vanished while it was read");
        got = STORE_NOT_FOUND;
    }
    eng_done(&r);
    return got < 0 ? got : STORE_OK;
}

int eng_item_rows(store *s, eng_rows *r, int64_t now, int64_t stale_ms, int with_token,
                  json_t **items, char *err, size_t errlen)
{
    (void)s;
    json_t *rows = json_array();
    int got;
    while ((got = eng_next(r, err, errlen)) == 1)
        json_array_append_new(rows, eng_item_row(r, 0, now, stale_ms, with_token));
    eng_done(r);
    if (got < 0) {
        json_decref(rows);
        return got;
    }
    json_decref(*items);
    *items = rows;
    return STORE_OK;
}

int eng_take_json(json_t *value, json_t **out, int rc)
{
    if (rc != STORE_OK) {
        json_decref(value);
        value = NULL;
    }
    if (out)
        *out = value;
    else
        json_decref(value);
    return rc;
}

void eng_wake_add(struct eng_wake *w, const char *bridge)
{
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->bridge[i], bridge) == 0)
            return;
    if (w->n < 4)
        snprintf(w->bridge[w->n++], sizeof(w->bridge[0]), "%s", bridge);
}

int eng_wake_after(store *s, const struct eng_wake *w, int rc)
{
    for (int i = 0; rc == STORE_OK && i < w->n; i++)
        store_notify_after_commit(s, w->bridge[i]);
    return rc;
}
