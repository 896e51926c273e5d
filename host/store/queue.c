/*
 * Queue items over the engine (engine.h), for every driver: create (with `after`
 * dependencies, parent links and schedule fires), read, list, count, events, cancel and
 * remove, with the cascade that cancels the dependents of an item that will never
 * complete. Claims are in claim.c; how an attempt ends in finish.c.
 *
 * Where the engine has row locks: the dependencies of a new item are locked in share mode
 * while it is created, so a dependency cannot fail or be cancelled unseen (its cascade
 * would miss the new item); the machine of a new item is locked in key-share mode, so it
 * cannot be removed meanwhile; a cancelled or removed item is locked first.
 */
#include "engine.h"
#include "queue.h"
#include "store_seal.h"
#include "groups.h"
#include "people.h"

#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- create ------------------------------------------------------------------------------ */

/* An item whose machine is a machine group of its team (check_item_refs): groups.c fans
 * it out. */
#define REFS_GROUP 1

/* *on: 1 when machine is team's and on bridge, in one read (S_MACHINE_REFS), else 0. */
static int machine_on(store *s, const char *team, const char *machine, const char *bridge,
                      int *on, char *err, size_t errlen)
{
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_MACHINE_REFS, "t", machine);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    *on = got == 1 && strcmp(eng_text(&r, 0), team) == 0 && strcmp(eng_text(&r, 1), bridge) == 0;
    eng_done(&r);
    return got < 0 ? got : STORE_OK;
}

struct on_ctx {
    const char *team, *machine, *bridge;
    int on;
};

static int on_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct on_ctx *c = ctx;
    return machine_on(s, c->team, c->machine, c->bridge, &c->on, err, errlen);
}

int store_machine_on(store *s, const char *team, const char *machine, const char *bridge, int *on,
                     char *err, size_t errlen)
{
    struct on_ctx c = {team, machine, bridge, 0};
    /* Machines, teams and bridges are written only by synchronous handles (resources.c):
     * durable at their commit, so no read barrier (store_sqlite.c). With one, a create after
     * the idle host's unsynced heartbeat synced the WAL twice (tests/e2e/host_idle_wal.sh). */
    int rc = eng_run(s, ENG_READ_NO_BARRIER, on_body, &c, err, errlen);
    *on = rc == STORE_OK && c.on;
    return rc;
}

/* Checks that team, machine (of that team) and bridge exist, and keeps the machine from
 * being removed until the transaction ends. REFS_GROUP when the machine is a group. */
static int check_item_refs(store *s, const struct store_item_spec *sp, char *err, size_t errlen)
{
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_MACHINE_KEY_SHARE, "t", sp->machine);
    if (rc != STORE_OK)
        return rc;
    eng_done(&r);
    /* The usual case in one read: the team's machine, on the item's bridge. The foreign
     * keys of its row keep that team and bridge in existence, so the checks below would all
     * pass. Anything else is asked in their order, for the first thing wrong in the store's
     * words. (Three reads, one of them the machine's whole row as JSON, were 1.5% of a
     * create queue-item's instructions.) */
    int on = 0;
    if ((rc = machine_on(s, sp->team, sp->machine, sp->bridge, &on, err, errlen)) != STORE_OK ||
        on)
        return rc;
    int group = 0;
    rc = eng_need(s, STORE_TEAM, NULL, sp->team, err, errlen);
    json_t *machine = NULL;
    if (rc == STORE_OK)
        rc = eng_read_resource(s, STORE_MACHINE, sp->team, sp->machine, &machine, err, errlen);
    json_decref(machine);
    if (rc == STORE_NOT_FOUND && (group = group_exists(s, sp->team, sp->machine)) != 0)
        rc = STORE_OK;
    if (rc == STORE_OK)
        rc = eng_need(s, STORE_BRIDGE, NULL, sp->bridge, err, errlen);
    return rc == STORE_OK && group ? REFS_GROUP : rc;
}

static int same_refs(const struct store_item_spec *a, const struct store_item_spec *b)
{
    return strcmp(a->team, b->team) == 0 && strcmp(a->machine, b->machine) == 0 &&
           strcmp(a->bridge, b->bridge) == 0;
}

/* Resolves (and share-locks) the dependencies of a new item into seqs; a dependency that
 * can never complete is refused, since the new item could then never run. */
static int resolve_after(store *s, const struct store_item_spec *sp, int64_t *seqs, char *err,
                         size_t errlen)
{
    for (size_t i = 0; i < sp->n_after; i++) {
        struct item_ref r;
        int rc = eng_resolve(s, sp->after[i], "dependency", LOCK_SHARE, &r, err, errlen);
        if (rc != STORE_OK)
            return rc;
        if (strcmp(r.status, "FAILED") == 0 || strcmp(r.status, "CANCELLED") == 0) {
            seterr(err, errlen, "dependency %s is %s, so an item after it could never run",
                   r.task_id, r.status);
            return STORE_CONFLICT;
        }
        seqs[i] = r.seq;
    }
    return STORE_OK;
}

/* CONFLICT naming the task of a schedule's fire that exists already. */
static int check_schedule_fire(store *s, const struct store_item_spec *sp, char *err,
                               size_t errlen)
{
    if (sp->schedule_name == NULL || sp->schedule_fire_ms == 0)
        return STORE_OK;
    eng_rows r;
    int rc = eng_q(s, &r, err, errlen, S_SCHEDULE_FIRED, "ttI", sp->team, sp->schedule_name,
                   sp->schedule_fire_ms);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    if (got == 1) {
        char when[32];
        iso8601_ms(sp->schedule_fire_ms, when);
        seterr(err, errlen, "schedule '%s' already fired at %s (task %s)", sp->schedule_name, when,
               eng_text(&r, 0));
        got = STORE_CONFLICT;
    }
    eng_done(&r);
    return got < 0 ? got : STORE_OK;
}

static int insert_item(store *s, const struct store_item_spec *sp, int64_t seq, char id[37],
                       char *err, size_t errlen)
{
    int64_t *dep_seqs = calloc(sp->n_after + 1, sizeof(int64_t));
    struct item_ref parent;
    long rows = 0;
    if (dep_seqs == NULL)
        abort();
    int rc = resolve_after(s, sp, dep_seqs, err, errlen);
    if (rc == STORE_OK && sp->parent_task_id != NULL)
        rc = eng_resolve(s, sp->parent_task_id, "parent task", LOCK_NONE, &parent, err, errlen);
    if (rc == STORE_OK)
        rc = check_schedule_fire(s, sp, err, errlen);
    if (rc != STORE_OK)
        goto out;
    uuid_v4(id);
    json_t *vault = NULL;
    rc = store_seal_item(s, sp->team, id, sp->vault, sp->secret_names, &vault, err, errlen);
    if (rc == STORE_OK)
        rc = eng_w(s, &rows, err, errlen, S_ITEM_INSERT,
               "tttttijIIttt"
               "NiI",
               id, sp->team, sp->machine, sp->bridge, sp->function, sp->priority, vault,
               sp->now_ms, sp->run_after_ms, sp->parent_task_id ? parent.task_id : NULL,
               sp->link_kind, sp->schedule_name, sp->schedule_fire_ms, sp->idempotent ? 1 : 0,
               seq);
    json_decref(vault);
    if (rc == STORE_OK && rows == 0) {
        char when[32];
        iso8601_ms(sp->schedule_fire_ms, when);
        seterr(err, errlen, "schedule '%s' already fired at %s",
               sp->schedule_name ? sp->schedule_name : "?", when);
        rc = STORE_CONFLICT;
    }
    for (size_t i = 0; rc == STORE_OK && i < sp->n_after; i++)
        rc = eng_w(s, NULL, err, errlen, S_DEP_INSERT, "II", seq, dep_seqs[i]);
    if (rc == STORE_OK) {
        char details[200];
        snprintf(details, sizeof(details), "%s queued with priority %d (%s)", sp->function,
                 sp->priority, store_priority_label(sp->priority));
        rc = eng_event(s, seq, "CREATED", details, 0, sp->now_ms, err, errlen);
    }
out:
    free(dep_seqs);
    return rc;
}

int queue_insert_item(store *s, const struct store_item_spec *sp, int64_t seq, char id[37],
                      char *err, size_t errlen)
{
    return insert_item(s, sp, seq, id, err, errlen);
}

/* Takes n item seqs in one round trip (the driver's S_NEXT_SEQS). Taken before the
 * inserts, so a batch a driver replays inserts the same ones. */
static int next_seqs(store *s, size_t n, int64_t *seqs, char *err, size_t errlen)
{
    eng_rows r;
    size_t got_n = 0;
    int rc = n == 1 ? eng_q(s, &r, err, errlen, S_NEXT_SEQ, "")
                    : eng_q(s, &r, err, errlen, S_NEXT_SEQS, "I", (int64_t)n);
    if (rc != STORE_OK)
        return rc;
    int got;
    while ((got = eng_next(&r, err, errlen)) == 1 && got_n < n)
        seqs[got_n++] = eng_i64(&r, 0);
    eng_done(&r);
    if (got < 0)
        return got;
    if (got_n != n) {
        seterr(err, errlen, "the item sequence gave %zu of %zu values", got_n, n);
        return STORE_ERROR;
    }
    return STORE_OK;
}

int queue_next_seqs(store *s, size_t n, int64_t *seqs, char *err, size_t errlen)
{
    return next_seqs(s, n, seqs, err, errlen);
}

struct create_ctx {
    const struct store_item_spec *specs;
    size_t n;
    char (*ids)[37];
};

/* Checks the references of spec i once per distinct (team, machine, bridge) of the call:
 * a batch usually spreads over a few machines, or a hundred (create queue-items in the
 * bench: a scan of the ones checked so far was 3% of its instructions). slot is a table of
 * 2n entries by the names' FNV-1a, open addressing: 0 empty, else 1 + the first spec with
 * those names, whose answer is in found. */
static int check_refs_once(store *s, const struct create_ctx *c, size_t i, size_t *slot, int *found,
                           char *err, size_t errlen)
{
    const struct store_item_spec *sp = &c->specs[i];
    size_t cap = 2 * c->n;
    size_t k = (size_t)(fnv1a(fnv1a(fnv1a(FNV1A_BASIS, sp->team), sp->machine), sp->bridge) % cap);
    for (; slot[k] != 0; k = (k + 1) % cap)
        if (same_refs(&c->specs[slot[k] - 1], sp))
            return found[slot[k] - 1];
    slot[k] = i + 1;
    found[i] = check_item_refs(s, sp, err, errlen);
    return found[i];
}

/* An item with nothing but the plain columns: it can join a bulk insert. */
static int is_plain(const struct store_item_spec *sp)
{
    return sp->n_after == 0 && sp->parent_task_id == NULL && sp->link_kind == NULL &&
           sp->schedule_name == NULL;
}

/* A plain item waiting in process for its rows' statement; seq, id and sp outlive it. */
struct plain_row {
    int64_t seq;
    const char *id;
    const struct store_item_spec *sp;
    char *vault; /* sealed, as text */
};

/* In process: up to ITEM_ROWS items, and the values of their rows' statement. */
struct plain_rows {
    size_t n;
    struct plain_row row[ITEM_ROWS];
    struct eng_val v[ITEM_ROWS * ITEM_ROW_VALS];
};

/* Plain items gathered for one statement, and their CREATED events: on a server as JSON
 * for S_ITEMS_INSERT_MANY (up to 1000, saving round trips), in process ITEM_ROWS for
 * S_ITEMS_INSERT_ROWS (plain). */
struct bulk {
    json_t *rows;
    struct plain_rows *plain;
    struct eng_events events;
    size_t first, count; /* the call's items gathered: indexes first … first + count - 1 */
    int failed;          /* writing them failed (bulk_flush) */
};

/* Whether the gathered items make a whole statement. */
static int bulk_full(const struct bulk *b)
{
    return b->plain ? b->plain->n == ITEM_ROWS : json_array_size(b->rows) == 1000;
}

static int bulk_add(store *s, struct bulk *b, size_t index, const struct store_item_spec *sp,
                    int64_t seq, const char *id, char *err, size_t errlen)
{
    char details[200];
    if (b->count++ == 0)
        b->first = index;
    json_t *sealed = NULL;
    if (store_seal_item(s, sp->team, id, sp->vault, sp->secret_names, &sealed, err, errlen) !=
        STORE_OK)
        return STORE_ERROR;
    char *vault = sealed ? json_dumps(sealed, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(sealed);
    if (b->plain) {
        b->plain->row[b->plain->n++] = (struct plain_row){seq, id, sp, vault};
    } else {
        if (b->rows == NULL)
            b->rows = json_array();
        json_array_append_new(b->rows,
                              json_pack("[I,s,s,s,s,s,i,s,I,I,i]", (json_int_t)seq, id, sp->team,
                                        sp->machine, sp->bridge, sp->function, sp->priority,
                                        vault ? vault : "{}", (json_int_t)sp->now_ms,
                                        (json_int_t)sp->run_after_ms, sp->idempotent ? 1 : 0));
        free(vault);
    }
    snprintf(details, sizeof(details), "%s queued with priority %d (%s)", sp->function,
             sp->priority, store_priority_label(sp->priority));
    /* Names and functions are checked text, so the event always joins the bulk. */
    return eng_events_add(s, &b->events, seq, "CREATED", details, sp->now_ms, err, errlen);
}

static struct eng_val text_val(const char *text)
{
    return (struct eng_val){.is_text = 1, .text = text};
}

static struct eng_val num_val(int64_t num)
{
    return (struct eng_val){.num = num};
}

/* Writes the items gathered in process: a whole ITEM_ROWS with their statement. */
static int plain_insert_rows(store *s, struct plain_rows *b, char *err, size_t errlen)
{
    for (size_t i = 0; i < ITEM_ROWS; i++) {
        const struct plain_row *p = &b->row[i];
        const struct store_item_spec *sp = p->sp;
        struct eng_val *v = &b->v[i * ITEM_ROW_VALS];
        v[0] = num_val(p->seq);
        v[1] = text_val(p->id);
        v[2] = text_val(sp->team);
        v[3] = text_val(sp->machine);
        v[4] = text_val(sp->bridge);
        v[5] = text_val(sp->function);
        v[6] = num_val(sp->priority);
        v[7] = text_val(p->vault ? p->vault : "{}");
        v[8] = v[9] = num_val(sp->now_ms);
        v[10] = num_val(sp->run_after_ms);
        v[11] = num_val(sp->idempotent ? 1 : 0);
    }
    return eng_wv(s, S_ITEMS_INSERT_ROWS, ITEM_ROWS * ITEM_ROW_VALS, b->v, err, errlen);
}

/* Writes the items gathered in process: a whole ITEM_ROWS with their statement, fewer (the
 * last of a call) a statement each. */
static int plain_flush(store *s, struct plain_rows *b, char *err, size_t errlen)
{
    int rc = b->n == ITEM_ROWS ? plain_insert_rows(s, b, err, errlen) : STORE_OK;
    for (size_t i = 0; b->n < ITEM_ROWS && rc == STORE_OK && i < b->n; i++) {
        const struct plain_row *p = &b->row[i];
        const struct store_item_spec *sp = p->sp;
        long rows = 0;
        rc = eng_w(s, &rows, err, errlen, S_ITEM_INSERT, "tttttitIItttNiI", p->id, sp->team,
                   sp->machine, sp->bridge, sp->function, sp->priority, p->vault, sp->now_ms,
                   sp->run_after_ms, NULL, NULL, NULL, (int64_t)0, sp->idempotent ? 1 : 0, p->seq);
        if (rc == STORE_OK && rows == 0) { /* its ON CONFLICT: only a task id taken already */
            seterr(err, errlen, "task id %s exists already", p->id);
            rc = STORE_ERROR;
        }
    }
    for (size_t i = 0; i < b->n; i++)
        free(b->row[i].vault);
    b->n = 0;
    return rc;
}

/* Inserts the gathered plain items, then their events. */
static int bulk_flush(store *s, struct bulk *b, char *err, size_t errlen)
{
    size_t n = json_array_size(b->rows);
    long rows = 0;
    int rc = STORE_OK;
    if (b->plain) {
        rc = plain_flush(s, b->plain, err, errlen);
    } else if (n > 0) {
        char *text = json_dumps(b->rows, JSON_COMPACT);
        rc = text ? eng_w(s, &rows, err, errlen, S_ITEMS_INSERT_MANY, "t", text) : STORE_ERROR;
        free(text);
        if (rc == STORE_OK && (size_t)rows != n) {
            seterr(err, errlen, "%ld of %zu items were written", rows, n);
            rc = STORE_ERROR;
        }
    }
    json_decref(b->rows);
    b->rows = NULL;
    if (rc == STORE_OK)
        rc = eng_events_flush(s, &b->events, err, errlen);
    else
        eng_events_drop(&b->events);
    b->failed = rc != STORE_OK && rc != ENG_AGAIN && rc != ENG_LOST;
    if (rc == STORE_OK)
        b->count = 0;
    return rc;
}

/* The message of a call's failure: the item it was at, or the items a failed bulk_flush
 * held (a statement of many rows does not say which row failed). */
static void name_failure(const struct bulk *b, size_t i, const char *msg, char *err, size_t errlen)
{
    if (b->failed && b->count > 1)
        seterr(err, errlen, "items %zu to %zu: %s", b->first, b->first + b->count - 1, msg);
    else
        seterr(err, errlen, "item %zu: %s", b->failed ? b->first : i, msg);
}

/*
 * Creates the items: references checked once per run of one (team, machine, bridge), plain
 * items inserted in bulk (struct bulk), the others one by one after the plain ones before
 * them (an item may depend on one created earlier in the same call).
 */
static int create_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct create_ctx *c = ctx;
    struct bulk bulk = {0};
    int64_t *seqs = calloc(c->n ? c->n : 1, sizeof(int64_t));
    size_t *slot = calloc(c->n ? 2 * c->n : 1, sizeof(size_t));
    int *found = calloc(c->n ? c->n : 1, sizeof(int));
    /* Plain items are gathered: on a server, from two on (a round trip saved each); in
     * process, when the call has a whole statement of them (fewer would pay for preparing
     * it, and the rest of a call goes a statement each). */
    int gather = s->drv->in_process ? c->n >= ITEM_ROWS : c->n > 1;
    if (gather && s->drv->in_process && (bulk.plain = calloc(1, sizeof(*bulk.plain))) == NULL)
        abort();
    if (seqs == NULL || slot == NULL || found == NULL)
        abort();
    if (c->n > 1 && s->drv->may_undo)
        s->drv->may_undo(s); /* item 30 may fail after items 0-29 were written */
    int rc = next_seqs(s, c->n, seqs, err, errlen);
    int64_t taken = rc == STORE_OK && c->n ? seqs[c->n - 1] : 0; /* for fanout_create */
    for (size_t i = 0; rc == STORE_OK && i < c->n; i++) {
        char msg[512] = "";
        const struct store_item_spec *sp = &c->specs[i];
        rc = check_refs_once(s, c, i, slot, found, msg, sizeof(msg));
        if (rc == REFS_GROUP) { /* a machine group: a parent and its children (groups.c) */
            rc = bulk_flush(s, &bulk, msg, sizeof(msg));
            if (rc == STORE_OK)
                rc = fanout_create(s, sp, seqs[i], c->ids[i], &taken, msg, sizeof(msg));
        } else if (rc == STORE_OK && is_plain(sp) && gather) {
            uuid_v4(c->ids[i]);
            rc = bulk_add(s, &bulk, i, sp, seqs[i], c->ids[i], msg, sizeof(msg));
            if (rc == STORE_OK && bulk_full(&bulk))
                rc = bulk_flush(s, &bulk, msg, sizeof(msg));
        } else if (rc == STORE_OK) {
            rc = bulk_flush(s, &bulk, msg, sizeof(msg));
            if (rc == STORE_OK)
                rc = insert_item(s, sp, seqs[i], c->ids[i], msg, sizeof(msg));
        }
        if (rc != STORE_OK && rc != ENG_AGAIN && rc != ENG_LOST && c->n > 1)
            name_failure(&bulk, i, msg, err, errlen);
        else if (rc != STORE_OK)
            seterr(err, errlen, "%s", msg);
    }
    char msg[512] = "";
    if (rc == STORE_OK && (rc = bulk_flush(s, &bulk, msg, sizeof(msg))) != STORE_OK) {
        if (bulk.failed && c->n > 1)
            name_failure(&bulk, bulk.first, msg, err, errlen);
        else
            seterr(err, errlen, "%s", msg);
    }
    if (rc == STORE_OK) /* who created them, in the same transaction (people.h) */
        rc = people_audit_items(s, c->specs, c->n, c->ids, err, errlen);
    json_decref(bulk.rows);
    eng_events_drop(&bulk.events);
    for (size_t i = 0; bulk.plain && i < bulk.plain->n; i++) /* left by a failure */
        free(bulk.plain->row[i].vault);
    free(bulk.plain);
    free(found);
    free(slot);
    free(seqs);
    return rc;
}

int store_items_create(store *s, const struct store_item_spec *specs, size_t n,
                       char (*task_ids)[37], char *err, size_t errlen)
{
    char(*ids)[37] = task_ids ? task_ids : calloc(n ? n : 1, 37);
    if (ids == NULL)
        abort();
    struct create_ctx c = {specs, n, ids};
    int rc = eng_run(s, 1, create_body, &c, err, errlen);
    if (ids != task_ids)
        free(ids);
    return rc;
}

/* ---- read, list, count ------------------------------------------------------------------- */

/* The context of the single-item operations. */
struct item_ctx {
    const char *task_id, *bridge, *action, *details;
    json_t *details_json;
    int force;
    int64_t now;
    int64_t total; /* queue_count's answer */
    const struct store_queue_filter *filter;
    json_t *out;
    struct eng_wake wake;
};


static int get_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct item_ref r;
    int rc = eng_resolve(s, c->task_id, NULL, LOCK_NONE, &r, err, errlen);
    return rc != STORE_OK ? rc : eng_read_item(s, r.seq, c->now, 0, &c->out, err, errlen);
}

int store_item_get(store *s, const char *task_id, json_t **row, char *err, size_t errlen)
{
    struct item_ctx c = {.task_id = task_id, .now = now_ms()};
    int rc = eng_run(s, 0, get_body, &c, err, errlen);
    return eng_take_json(c.out, row, rc);
}

/* A query built from a filter, with its parameters. */
struct list_query {
    FILE *sql;
    char *text;
    size_t len;
    struct eng_val *v;
    int n;
};

static void lq_text(struct list_query *l, const char *sql_part, const char *value)
{
    l->n++;
    fprintf(l->sql, sql_part, l->n);
    l->v[l->n - 1] = (struct eng_val){.is_text = 1, .text = value};
}

static void lq_num(struct list_query *l, const char *sql_part, int64_t value)
{
    l->n++;
    fprintf(l->sql, sql_part, l->n);
    l->v[l->n - 1] = (struct eng_val){.num = value};
}

/* Appends " AND column IN (?a, ?b, …)" for a list of texts. */
static void lq_in(struct list_query *l, const char *column, const char *const *values, size_t n)
{
    fprintf(l->sql, " AND %s IN (", column);
    for (size_t i = 0; i < n; i++)
        lq_text(l, i ? ", ?%d" : "?%d", values[i]);
    fputs(")", l->sql);
}

/* The statuses a filter can ask for, as a list's SQL names them: as literals taken from
 * here (store.c checked that each asked for is one of them), since SQLite uses a partial
 * index only for a query whose terms state its predicate, and never proves one from bound
 * parameters. On SQLite (migration 13), qi_unheld_created (status, created_at) holds the
 * items no host holds, so each unheld status is a range of it in created order; the held
 * ones are qi_machine_active's (the active set, at most the machines' concurrency). */
static const char *const unheld_statuses[] = {"PENDING", "COMPLETED", "FAILED", "CANCELLED"};
static const char *const held_statuses[] = {"ASSIGNED", "PROCESSING", "CANCELLING"};
#define N_UNHELD (sizeof(unheld_statuses) / sizeof(unheld_statuses[0]))
#define N_HELD   (sizeof(held_statuses) / sizeof(held_statuses[0]))
/* The status filter's branches, each read through one index: 0 … N_UNHELD - 1 an unheld
 * status each, N_UNHELD the held statuses asked for. */
#define N_BRANCHES (N_UNHELD + 1)
#define HELD       N_UNHELD

static int asks_for(const struct store_queue_filter *f, const char *status)
{
    for (size_t i = 0; i < f->n_statuses; i++)
        if (strcmp(f->statuses[i], status) == 0)
            return 1;
    return 0;
}

static int branch_asked(const struct store_queue_filter *f, size_t b)
{
    if (b != HELD)
        return asks_for(f, unheld_statuses[b]);
    for (size_t i = 0; i < N_HELD; i++)
        if (asks_for(f, held_statuses[i]))
            return 1;
    return 0;
}

/* Appends branch b's condition on the status. */
static void put_branch(FILE *sql, const struct store_queue_filter *f, size_t b)
{
    if (b != HELD) {
        fprintf(sql, " AND q.status = '%s'", unheld_statuses[b]);
        return;
    }
    const char *sep = " AND " ACTIVE_EQ " AND q.status IN (";
    for (size_t i = 0; i < N_HELD; i++) {
        if (asks_for(f, held_statuses[i])) {
            fprintf(sql, "%s'%s'", sep, held_statuses[i]);
            sep = ", ";
        }
    }
    fputs(")", sql);
}

/*
 * Writes the rows' query, newest first, up to the limit (parameter limit), for the filter's
 * other conditions (cond) and its statuses. One unheld status is a seek of its range from
 * the newest item. Any other set is the union of its branches' newest items (the limit
 * pushed into each), then sorted and cut: with the statuses beside the list's order
 * instead, SQLite walked qi_created from the newest item until it had found enough, the
 * whole history when few items match; without the limit in each branch, it read every
 * item of each status asked for. The held branch has no limit: its items are few, and
 * with an order of its own SQLite would rather walk qi_created than sort them.
 */
static void put_rows(store *s, FILE *sql, const struct store_queue_filter *f, const char *cond,
                     int limit)
{
    /* The item columns of S_ITEM_BY_SEQ, expanded for this dialect. */
    const char *item = eng_sql(s, S_ITEM_BY_SEQ);
    char order[64];
    snprintf(order, sizeof(order), " ORDER BY q.created_at DESC, q.seq DESC LIMIT ?%d", limit);
    fprintf(sql, "%.*s WHERE 1 = 1", (int)(strstr(item, " WHERE q.seq") - item), item);
    size_t n = 0, only = 0;
    for (size_t b = 0; b < N_BRANCHES; b++)
        if (f->n_statuses && branch_asked(f, b))
            n++, only = b;
    if (n == 0 || (n == 1 && only != HELD)) {
        fputs(cond, sql);
        if (n)
            put_branch(sql, f, only);
        fputs(order, sql);
        return;
    }
    const char *sep = " AND q.seq IN (";
    for (size_t b = 0; b < N_BRANCHES; b++) {
        if (!branch_asked(f, b))
            continue;
        if (b == HELD) {
            fprintf(sql, "%sSELECT q.seq FROM queue_items q WHERE 1 = 1%s", sep, cond);
            put_branch(sql, f, b);
        } else {
            fprintf(sql, "%sSELECT seq FROM (SELECT q.seq FROM queue_items q WHERE 1 = 1%s", sep,
                    cond);
            put_branch(sql, f, b);
            fprintf(sql, "%s) AS b%zu", order, b);
        }
        sep = " UNION ALL ";
    }
    fprintf(sql, ")%s", order);
}

/* Writes the count's query: the sum of its branches' counts, each through its index. */
static void put_count(FILE *sql, const struct store_queue_filter *f, const char *cond)
{
    const char *sep = "SELECT ";
    for (size_t b = 0; f->n_statuses && b < N_BRANCHES; b++) {
        if (!branch_asked(f, b))
            continue;
        fprintf(sql, "%s(SELECT count(*) FROM queue_items q WHERE 1 = 1%s", sep, cond);
        put_branch(sql, f, b);
        fputs(")", sql);
        sep = " + ";
    }
    if (!f->n_statuses)
        fprintf(sql, "SELECT count(*) FROM queue_items q WHERE 1 = 1%s", cond);
}

/* Writes the query for a queue filter: its rows, newest first, up to the limit; or, with
 * count_only, how many items match at all. */
static void build_list_query(store *s, struct list_query *l, const struct store_queue_filter *f,
                             int count_only, int group)
{
    int64_t stale_before = f->now_ms - (int64_t)f->stale_threshold_minutes * 60000;
    /* The conditions other than the statuses, written once and repeated in each branch of
     * the status filter (their parameters keep their numbers). */
    FILE *out = l->sql;
    char *cond = NULL;
    size_t cond_len = 0;
    l->sql = open_memstream(&cond, &cond_len);
    if (l->sql == NULL)
        abort();
    if (f->n_teams)
        lq_in(l, "q.team_name", f->teams, f->n_teams);
    if (f->machine && group) { /* a machine group: its items and their members */
        lq_text(l, " AND (q.machine_name = ?%d", f->machine);
        lq_text(l, " OR (q.link_kind = 'member' AND q.parent_task_id IN (SELECT g.task_id"
                   " FROM queue_items g WHERE g.machine_name = ?%d)))", f->machine);
    } else if (f->machine) {
        lq_text(l, " AND q.machine_name = ?%d", f->machine);
    }
    if (f->bridge)
        lq_text(l, " AND q.bridge_name = ?%d", f->bridge);
    if (f->priority)
        lq_num(l, " AND q.priority = ?%d", f->priority);
    if (f->min_priority)
        lq_num(l, " AND q.priority >= ?%d", f->min_priority);
    if (f->max_priority)
        lq_num(l, " AND q.priority <= ?%d", f->max_priority);
    if (f->date_from_ms)
        lq_num(l, " AND q.created_at >= ?%d", f->date_from_ms);
    if (f->date_to_ms)
        lq_num(l, " AND q.created_at <= ?%d", f->date_to_ms);
    if (f->task_id && strlen(f->task_id) == 36) {
        lq_text(l, " AND q.task_id = ?%d", f->task_id);
    } else if (f->task_id) {
        lq_text(l, " AND q.task_id >= ?%d", f->task_id);
        lq_text(l, " AND q.task_id < ?%d || '~'", f->task_id);
    }
    if (f->exclude_completed)
        fputs(" AND q.status <> 'COMPLETED'", l->sql);
    if (f->exclude_cancelled)
        fputs(" AND q.status <> 'CANCELLED'", l->sql);
    if (f->only_stale) {
        lq_num(l, " AND ((q.status IN ('ASSIGNED','PROCESSING') AND q.updated_at < ?%d"
                  " AND q.lease_owner IS NOT NULL)",
               stale_before);
        lq_num(l,
               " OR (q.status = 'PENDING' AND CASE WHEN q.created_at > q.run_after"
               " THEN q.created_at ELSE q.run_after END < ?%d",
               stale_before);
        /* Blocked by a dependency, or unblocked too recently, is not stale. */
        lq_num(l, " AND NOT EXISTS (SELECT 1 FROM queue_deps d JOIN queue_items p"
                  " ON p.seq = d.dep_seq WHERE d.task_seq = q.seq"
                  " AND (p.status <> 'COMPLETED' OR p.finished_at >= ?%d))))",
               stale_before);
    }
    fclose(l->sql);
    l->sql = out;
    if (count_only) {
        put_count(out, f, cond);
    } else {
        l->v[l->n++] = (struct eng_val){.num = f->max_records};
        put_rows(s, out, f, cond, l->n);
    }
    free(cond);
}

/* Runs the filter's query (rows, or the count) into *r. Filters vary too much to cache. */
static int run_list(store *s, const struct store_queue_filter *f, int count_only, eng_rows *r,
                    char *err, size_t errlen)
{
    struct list_query l = {0};
    int group = 0;
    if (f->machine) {
        int rc = group_name_free(s, f->machine, NULL, 0);
        if (rc != STORE_OK && rc != STORE_CONFLICT)
            return rc;
        group = rc == STORE_CONFLICT;
    }
    l.v = calloc(f->n_teams + f->n_statuses + 16, sizeof(*l.v));
    l.sql = open_memstream(&l.text, &l.len);
    if (l.v == NULL || l.sql == NULL)
        abort();
    build_list_query(s, &l, f, count_only, group);
    fclose(l.sql);
    int rc = eng_qv(s, r, err, errlen, l.text, l.n, l.v);
    free(l.text);
    free(l.v);
    return rc;
}

static int list_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    const struct store_queue_filter *f = c->filter;
    eng_rows r;
    int rc = run_list(s, f, 0, &r, err, errlen);
    return rc != STORE_OK ? rc
                          : eng_item_rows(s, &r, f->now_ms,
                                          (int64_t)f->stale_threshold_minutes * 60000, 0, &c->out,
                                          err, errlen);
}

static int count_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    eng_rows r;
    int rc = run_list(s, c->filter, 1, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    int got = eng_next(&r, err, errlen);
    c->total = got == 1 ? eng_i64(&r, 0) : 0;
    eng_done(&r);
    return got < 0 ? got : STORE_OK;
}

int store_items_count(store *s, const struct store_queue_filter *filter, int64_t *count, char *err,
                      size_t errlen)
{
    struct item_ctx c = {.filter = filter};
    int rc = eng_run(s, 0, count_body, &c, err, errlen);
    *count = rc == STORE_OK ? c.total : 0;
    return rc;
}

int store_items_list(store *s, const struct store_queue_filter *filter, json_t **rows, char *err,
                     size_t errlen)
{
    struct item_ctx c = {.filter = filter};
    int rc = eng_run(s, 0, list_body, &c, err, errlen);
    return eng_take_json(c.out, rows, rc);
}

static int counts_body(store *s, void *ctx, char *err, size_t errlen)
{
    static const char *const names[] = {"PENDING",   "ASSIGNED", "PROCESSING", "CANCELLING",
                                        "COMPLETED", "FAILED",   "CANCELLED"};
    struct item_ctx *c = ctx;
    eng_rows r;
    int rc = c->bridge ? eng_q(s, &r, err, errlen, S_COUNTS_BRIDGE, "t", c->bridge)
                       : eng_q(s, &r, err, errlen, S_COUNTS_ALL, "");
    if (rc != STORE_OK)
        return rc;
    json_t *counts = json_object();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        json_object_set_new(counts, names[i], json_integer(0));
    json_int_t total = 0;
    int got;
    while ((got = eng_next(&r, err, errlen)) == 1) {
        json_object_set_new(counts, eng_text(&r, 0), json_integer(eng_i64(&r, 1)));
        total += eng_i64(&r, 1);
    }
    eng_done(&r);
    json_object_set_new(counts, "total", json_integer(total));
    if (got < 0) {
        json_decref(counts);
        return got;
    }
    json_decref(c->out);
    c->out = counts;
    return STORE_OK;
}

int store_items_counts(store *s, const char *bridge, json_t **counts, char *err, size_t errlen)
{
    struct item_ctx c = {.bridge = bridge};
    int rc = eng_run(s, 0, counts_body, &c, err, errlen);
    return eng_take_json(c.out, counts, rc);
}

static int has_work_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    return eng_scalar(s, &c->total, err, errlen, S_BRIDGE_HAS_WORK, "t", c->bridge);
}

int store_bridge_has_work(store *s, const char *bridge, int *has, char *err, size_t errlen)
{
    struct item_ctx c = {.bridge = bridge};
    int rc = eng_run(s, 0, has_work_body, &c, err, errlen);
    *has = rc == STORE_OK ? c.total != 0 : 1;
    return rc;
}

/* ---- events ------------------------------------------------------------------------------ */

static int event_append_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct item_ref r;
    char *text =
        c->details_json ? json_dumps(c->details_json, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    const char *details = text ? text : c->details;
    int rc;
    long rows = 0;
    if (strlen(c->task_id) == 36) {
        /* A whole id (the host's case): found and appended in one statement. */
        rc = eng_w(s, &rows, err, errlen, S_EVENT_APPEND_BY_ID, "tttiIt", c->task_id,
                   c->action, details, text != NULL, c->now, s->actor_label);
        if (rc == STORE_OK && rows == 0) {
            seterr(err, errlen, "no queue item with task id '%s'", c->task_id);
            rc = STORE_NOT_FOUND;
        }
    } else {
        rc = eng_resolve(s, c->task_id, NULL, LOCK_NONE, &r, err, errlen);
        if (rc == STORE_OK)
            rc = eng_event(s, r.seq, c->action, details, text != NULL, c->now, err, errlen);
    }
    free(text);
    return rc;
}

int store_events_append(store *s, const char *task_id, const char *action, const char *details,
                        json_t *details_json, int64_t at_ms, char *err, size_t errlen)
{
    struct item_ctx c = {.task_id = task_id,
                         .action = action,
                         .details = details,
                         .details_json = details_json,
                         .now = at_ms};
    return eng_run(s, 1, event_append_body, &c, err, errlen);
}

static int event_list_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct item_ref ref;
    eng_rows r;
    int rc = eng_resolve(s, c->task_id, NULL, LOCK_NONE, &ref, err, errlen);
    if (rc == STORE_OK)
        rc = eng_q(s, &r, err, errlen, S_EVENTS_LIST, "I", ref.seq);
    if (rc != STORE_OK)
        return rc;
    json_t *events = json_array();
    int64_t prev = 0;
    int got;
    while ((got = eng_next(&r, err, errlen)) == 1) {
        int64_t at = eng_i64(&r, 3);
        json_t *row = store_event_row(eng_text(&r, 0), eng_text(&r, 1), (int)eng_i64(&r, 2), at,
                                      prev);
        if (eng_text(&r, 4) != NULL) /* who asked for it (people.h); the host's have none */
            json_object_set_new(row, "actor", json_string(eng_text(&r, 4)));
        json_array_append_new(events, row);
        prev = at;
    }
    eng_done(&r);
    if (got < 0) {
        json_decref(events);
        return got;
    }
    json_decref(c->out);
    c->out = events;
    return STORE_OK;
}

int store_events_list(store *s, const char *task_id, json_t **events, char *err, size_t errlen)
{
    struct item_ctx c = {.task_id = task_id};
    int rc = eng_run(s, 0, event_list_body, &c, err, errlen);
    return eng_take_json(c.out, events, rc);
}

/* ---- cancel and remove ------------------------------------------------------------------- */

/* Ends an item CANCELLED at once (its claim token dies with it) and cancels dependents;
 * a group member's parent takes note (groups.c). */
static int cancel_now(store *s, const struct item_ref *r, const char *details, int64_t now,
                      struct eng_wake *wake, char *err, size_t errlen)
{
    int rc = eng_w(s, NULL, err, errlen, S_CANCEL_NOW, "IIt", r->seq, now, r->status);
    if (rc == STORE_OK)
        rc = eng_event(s, r->seq, "CANCELLED", details, 0, now, err, errlen);
    if (rc == STORE_OK)
        rc = eng_cancel_dependents(s, r->seq, r->task_id, "CANCELLED", now, err, errlen);
    if (rc == STORE_OK)
        rc = fanout_member_ended(s, r->seq, now, wake, err, errlen);
    return rc;
}

static int cancel_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct item_ref r;
    c->wake.n = 0;
    int rc = eng_resolve(s, c->task_id, NULL, LOCK_UPDATE, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    const char *st = r.status;
    int group = 0; /* a machine group's item: it and its members (groups.c) */
    if (strcmp(st, "PROCESSING") == 0 || strcmp(st, "CANCELLING") == 0)
        rc = fanout_cancel(s, &r, c->force, c->now, &c->wake, &group, err, errlen);
    if (rc != STORE_OK || group) {
        /* done */
    } else if (strcmp(st, "PENDING") == 0 || strcmp(st, "ASSIGNED") == 0) {
        rc = cancel_now(s, &r, "cancelled by request", c->now, &c->wake, err, errlen);
    } else if ((strcmp(st, "PROCESSING") == 0 || strcmp(st, "CANCELLING") == 0) && c->force) {
        rc = cancel_now(s, &r, "cancelled by request (forced, without waiting for the host)",
                        c->now, &c->wake, err, errlen);
    } else if (strcmp(st, "PROCESSING") == 0) {
        rc = eng_w(s, NULL, err, errlen, S_SET_CANCELLING, "II", r.seq, c->now);
        if (rc == STORE_OK)
            rc = eng_event(s, r.seq, "CANCEL_REQUESTED",
                           "cancel requested; the host stops the running attempt", 0, c->now, err,
                           errlen);
    } else if (strcmp(st, "CANCELLING") != 0) {
        seterr(err, errlen,
               "task %s is %s; only PENDING, ASSIGNED or PROCESSING items can be cancelled",
               r.task_id, st);
        return STORE_CONFLICT;
    }
    eng_wake_add(&c->wake, r.bridge);
    if (rc == STORE_OK)
        rc = people_audit_item(s, "queue.cancel", r.seq, c->force ? "forced" : NULL, err, errlen);
    return rc != STORE_OK ? rc : eng_read_item(s, r.seq, c->now, 0, &c->out, err, errlen);
}

int store_item_cancel(store *s, const char *task_id, int force, int64_t now, json_t **row,
                      char *err, size_t errlen)
{
    struct item_ctx c = {.task_id = task_id, .force = force, .now = now};
    int rc = eng_wake_after(s, &c.wake, eng_run(s, 1, cancel_body, &c, err, errlen));
    return eng_take_json(c.out, row, rc);
}

static int delete_body(store *s, void *ctx, char *err, size_t errlen)
{
    struct item_ctx *c = ctx;
    struct item_ref r;
    int rc = eng_resolve(s, c->task_id, NULL, LOCK_DELETE, &r, err, errlen);
    if (rc != STORE_OK)
        return rc;
    if (strcmp(r.status, "PENDING") != 0 && strcmp(r.status, "CANCELLED") != 0) {
        seterr(err, errlen, "task %s is %s; only PENDING or CANCELLED items can be removed%s",
               r.task_id, r.status,
               strcmp(r.status, "COMPLETED") == 0 || strcmp(r.status, "FAILED") == 0
                   ? ""
                   : " (cancel it first with: ferry queue cancel ID)");
        return STORE_CONFLICT;
    }
    rc = fanout_member_removable(s, r.seq, r.task_id, err, errlen);
    if (rc == STORE_OK)
        rc = people_audit_item(s, "queue.delete", r.seq, r.status, err, errlen);
    if (rc == STORE_OK && strcmp(r.status, "PENDING") == 0)
        rc = eng_cancel_dependents(s, r.seq, r.task_id, "was removed", c->now, err, errlen);
    if (rc == STORE_OK)
        rc = eng_w(s, NULL, err, errlen, S_ITEM_DELETE, "It", r.seq, r.status);
    return rc;
}

int store_item_delete(store *s, const char *task_id, int64_t now, char *err, size_t errlen)
{
    struct item_ctx c = {.task_id = task_id, .now = now};
    return eng_run(s, 1, delete_body, &c, err, errlen);
}
