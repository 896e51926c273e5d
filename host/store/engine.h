/*
 * The engine interface: the narrow seam between the store's logic (written once: resources.c,
 * queue.c, claim.c, finish.c) and a database driver (store_sqlite.c, store_pg*.c).
 *
 * A driver supplies only what really differs between engines:
 *  - its dialect: a few SQL fragments ({name} in the statement texts of statements.c), the
 *    texts of the few statements whose SQL differs as a whole, and its migrations;
 *  - running a transaction (the write lock, restarts on busy / deadlock / serialization
 *    failure / lost connection) and batches (store_begin … store_commit);
 *  - statements: prepared once per handle and statement id, bound, executed, and read
 *    through a row cursor;
 *  - wake-ups: notify a bridge, a descriptor to poll, draining it.
 * Everything above that (what a claim picks, how an attempt ends, cascades, messages) is
 * the same code for every driver. docs/store-drivers.md says how to add one.
 *
 * Statement texts use numbered parameters ?1 … ?N, which a driver rewrites when its engine
 * spells them differently (PostgreSQL's $N).
 */
#ifndef FERRY_ENGINE_H
#define FERRY_ENGINE_H

#include "statements.h"
#include "store.h"

#include <stdarg.h>
#include <stdint.h>

/* Internal statuses, never returned through store.h: the transaction's body is run again
 * by the driver's run (busy engine, deadlock, serialization failure, lost connection). */
#define ENG_AGAIN (-100)
#define ENG_LOST  (-101)

#define ENG_STALE_DEFAULT_MS ((int64_t)STORE_DEFAULT_STALE_MINUTES * 60000)

/* One bound parameter. */
struct eng_val {
    int is_null;
    int is_text;
    const char *text; /* borrowed until the statement was executed */
    int64_t num;
};

/* A cursor over the rows of one executed statement. impl and pos belong to the driver. */
typedef struct eng_rows {
    store *s;
    void *impl;
    int pos, n;
} eng_rows;

/* The body of one operation: runs inside the driver's transaction and may be run again
 * (ENG_AGAIN / ENG_LOST), so it sets its outputs only on success and replaces (never
 * leaks) outputs of an earlier run. */
typedef int (*eng_body)(store *s, void *ctx, char *err, size_t errlen);

/* Execution flags. */
#define ENG_WRITE 1 /* the statement changes rows (a batch driver may log it for a replay) */

/* One numbered schema change (never edited once released: append a new one). */
struct eng_migration {
    int version;
    const char *name;
    const char *sql; /* the driver's dialect; may hold several statements */
};

struct eng_driver {
    const char *name; /* "sqlite", "postgres" */

    /* Dialect. fragments[i] replaces "{name of fragment i}" in statement texts;
     * sql[id], when not NULL, replaces the common text of statement id. row_locks: the
     * engine has row locks (PostgreSQL); without them (SQLite: one writer at a time),
     * statements marked lock-only are skipped. */
    const char *const *fragments;
    const char *const *sql;
    int row_locks;
    /* 1: statements run in the caller's process (SQLite), so a statement per row costs no
     * round trip and the store's logic need not gather rows into one statement. */
    int in_process;
    const struct eng_migration *migrations;
    size_t n_migrations;

    /* Runs body as one transaction (write: holding the write lock), restarting it on
     * ENG_AGAIN / ENG_LOST until the busy timeout. Returns body's status or the engine's
     * failure, err set. */
    int (*run)(store *s, int write, eng_body body, void *ctx, char *err, size_t errlen);
    /* Runs body inside the open batch, so that its failure undoes only its own changes;
     * when the engine lost the whole batch, sets s->batch_lost. */
    int (*run_in_batch)(store *s, eng_body body, void *ctx, char *err, size_t errlen);

    /* Executes statement id (its expanded text is sql; id < 0: a dynamic text, not cached)
     * with n values. On success *rows is open (the caller ends it with done) and *changes
     * (may be NULL) the rows a write changed. */
    int (*exec)(store *s, int id, const char *sql, int flags, int n, const struct eng_val *v,
                eng_rows *rows, long *changes, char *err, size_t errlen);
    /* Row cursor: next is 1 (a row), 0 (end) or a negative status; text is NULL for SQL
     * NULL and valid until the next call; i64 is 0 for NULL. */
    int (*next)(eng_rows *r, char *err, size_t errlen);
    const char *(*text)(eng_rows *r, int col);
    int64_t (*i64)(eng_rows *r, int col);
    int (*is_null)(eng_rows *r, int col);
    void (*done)(eng_rows *r);
    /* Runs a script of statements without parameters or results (migrations). */
    int (*script)(store *s, const char *sql, char *err, size_t errlen);
    /* Optional: sets *exists to 1 when table name exists, else 0, without a statement
     * (SQLite looks in the schema it has parsed); without it, the dialect's S_SCHEMA_EXISTS
     * answers for the migrations' table. Returns STORE_OK or a failure, err set. */
    int (*has_table)(store *s, const char *name, int64_t *exists, char *err, size_t errlen);
    /* Optional: the operation now running inside a batch may fail after it changed rows,
     * so its failure must undo only its own changes (a savepoint). */
    void (*may_undo)(store *s);

    /* Batches: store_begin … store_commit (store.c keeps the nesting). */
    int (*begin)(store *s, char *err, size_t errlen);
    int (*commit)(store *s, char *err, size_t errlen);
    int (*rollback)(store *s, char *err, size_t errlen);

    void (*close)(store *s);
    /* Optional: 1 when the process may exit with the handle open, as closing it would change
     * nothing another process sees (store_close_for_exit); else 0, and it is closed. */
    int (*exit_leaves)(store *s);
    /* Optional: a number that changes when another handle commits (store_data_version). */
    int64_t (*data_version)(store *s);
    /* Optional: the same for machines and teams only (store_resources_version); without
     * it, data_version answers. */
    int64_t (*resources_version)(store *s);
    void (*notify)(store *s, const char *bridge);
    int (*wait_fd)(store *s, const char *bridge, char *err, size_t errlen);
    void (*wait_drain)(store *s);
    /* Optional: the host has nothing running (store_idle); 1 when the next commit restarts
     * the log. */
    int (*idle)(store *s);
    /* Optional, both or neither: store_defer_sync (without it, commits stay durable at
     * commit) and store_sync. note_later: what other handles learn of the sync (SQLite's
     * marker) waits for sync_note (optional; without it sync notes at once). */
    int (*defer_sync)(store *s);
    int (*sync)(store *s, int note_later, char *err, size_t errlen);
    void (*sync_note)(store *s);
    /* Optional: a batch's commit returned before it was on disk (SQLite's synchronous
     * handles publish it first), and store_commit, once it has sent the batch's wake-ups,
     * waits here until it is. */
    int (*synced)(store *s, char *err, size_t errlen);
};

/* ---- for the store's logic: statements by id --------------------------------------------- */

/*
 * Runs statement id with parameters from a type string: 't' text (NULL is SQL NULL), 'i'
 * int, 'I' int64_t, 'N' int64_t where 0 is NULL, 'j' json_t * (NULL is NULL), with flags
 * (ENG_WRITE); rows, when not NULL, is opened (end it with eng_done); changes (may be NULL)
 * gets the rows a write changed. The three shapes the store uses: eng_q a query, eng_w a
 * write and its count, eng_wq a write whose rows (RETURNING) are read. A lock-only
 * statement on an engine without row locks does nothing and yields no rows.
 */
int eng_exec(store *s, int flags, eng_rows *rows, long *changes, char *err, size_t errlen, int id,
             const char *types, ...);
#define eng_q(s, rows, err, errlen, ...) eng_exec(s, 0, rows, NULL, err, errlen, __VA_ARGS__)
#define eng_w(s, changes, err, errlen, ...)                                                        \
    eng_exec(s, ENG_WRITE, NULL, changes, err, errlen, __VA_ARGS__)
#define eng_wq(s, rows, err, errlen, ...) eng_exec(s, ENG_WRITE, rows, NULL, err, errlen, __VA_ARGS__)
/* A query of one integer: *out (0 when no row or NULL). */
int eng_scalar(store *s, int64_t *out, char *err, size_t errlen, int id, const char *types, ...);
/* A dynamic query (text built at run time, ?N parameters): not cached. */
int eng_qv(store *s, eng_rows *rows, char *err, size_t errlen, const char *sql, int n,
           const struct eng_val *v);

/* A write of statement id with its n values already bound (the many-row inserts of an
 * in-process engine: S_ITEMS_INSERT_ROWS, S_EVENTS_INSERT_16 and _4). */
int eng_wv(store *s, int id, int n, const struct eng_val *v, char *err, size_t errlen);

/* The cursor, through the driver. */
int eng_next(eng_rows *r, char *err, size_t errlen);
const char *eng_text(eng_rows *r, int col);
int64_t eng_i64(eng_rows *r, int col);
int eng_null(eng_rows *r, int col);
void eng_done(eng_rows *r);

/* Runs body through the driver: in its own transaction, or inside the open batch (refused
 * once the batch was lost, since running on outside it would commit what the caller means
 * to group). write: 0 a read, 1 a write, ENG_WRITE_HELD a write of claims or ends only,
 * ENG_READ_NO_BARRIER a read that needs no read barrier. */
int eng_run(store *s, int write, eng_body body, void *ctx, char *err, size_t errlen);

/* eng_run's write for an operation that only claims items or ends held ones (and writes
 * their events and what ends create: retries, fallback items). Every other write counts in
 * s->writes: what a claim remembers of the machines' slots holds only while that count
 * stays (claim.c), and the store tells the claim of its ends (claim_ended). */
#define ENG_WRITE_HELD 2

/* eng_run's write for a read whose answer needs no read barrier (store_defer_sync): of rows
 * only synchronous handles write (every resource but schedules, which a host writes), so
 * what it sees is durable already; or of the hosts' heartbeats, which only tell whether a
 * host is alive (a power loss moves them back a few seconds). The driver's run sees a
 * read, with s->read_no_barrier set. */
#define ENG_READ_NO_BARRIER (-1)

/* The expanded text of statement id for this handle's dialect (cached per handle), or NULL
 * for a lock-only statement the engine does not need. */
const char *eng_sql(store *s, int id);

/* Brings the schema up to date with the driver's migrations (under its write lock and,
 * where the engine has one, a migration lock statement). */
int eng_migrate(store *s, char *err, size_t errlen);

/* Sets up the engine's part of a new handle for driver d (drivers call it from open). */
void eng_init(store *s, const struct eng_driver *d);

/* Frees the handle's expanded statement texts (drivers call it from close). */
void eng_free_texts(store *s);

/* ---- shared pieces of the store's logic --------------------------------------------------- */

/* An item as operations find it by id. */
struct item_ref {
    int64_t seq;
    char task_id[37];
    char status[16];
    int retry_count;
    char bridge[129];
    int has_dependents;
};

/* Lock modes for eng_resolve. */
enum eng_lock { LOCK_NONE, LOCK_SHARE, LOCK_UPDATE, LOCK_DELETE };

/* Finds the item a task id or unique prefix names (what, e.g. "dependency", prefixes the
 * message), locked as asked where the engine has row locks. NOT_FOUND or AMBIGUOUS. */
int eng_resolve(store *s, const char *id, const char *what, enum eng_lock lock,
                struct item_ref *r, char *err, size_t errlen);

/* Appends an event to item seq. */
int eng_event(store *s, int64_t seq, const char *action, const char *details, int details_is_json,
              int64_t at, char *err, size_t errlen);

/* Events gathered to be written together (eng_events_flush). */
struct eng_event_row {
    int64_t seq, at;
    const char *action; /* static */
    char *details;      /* owned */
};
struct eng_events {
    json_t *rows; /* [[task_seq, action, details, details_is_json, at], …] or NULL */
    /* In process, the events themselves, bound in statements of several rows (JSON would
     * cost more than it saves there). */
    struct eng_event_row *list;
    size_t n, cap;
};
/* Adds an event to ev (action: a static text); text that cannot travel as JSON (not UTF-8)
 * is written at once. */
int eng_events_add(store *s, struct eng_events *ev, int64_t seq, const char *action,
                   const char *details, int64_t at, char *err, size_t errlen);
/* Writes the gathered events, in the order they were added, and empties ev; on failure ev
 * is emptied too. */
int eng_events_flush(store *s, struct eng_events *ev, char *err, size_t errlen);
/* Empties ev without writing it. */
void eng_events_drop(struct eng_events *ev);

/* Cancels the PENDING dependents of an item that will never complete, transitively, each
 * with the reason "dependency <id> <why>". */
int eng_cancel_dependents(store *s, int64_t seq, const char *task_id, const char *why, int64_t now,
                          char *err, size_t errlen);

/* The JSON row of the item the cursor is on (columns ITEM_COLS from column first). */
json_t *eng_item_row(eng_rows *r, int first, int64_t now, int64_t stale_ms, int with_token);

/* Reads the row of item seq into *row (replacing what it held). */
int eng_read_item(store *s, int64_t seq, int64_t now, int with_token, json_t **row, char *err,
                  size_t errlen);

/* Every row of an item query (ITEM_COLS) into a new array *items (replacing what it held). */
int eng_item_rows(store *s, eng_rows *r, int64_t now, int64_t stale_ms, int with_token,
                  json_t **items, char *err, size_t errlen);

/* Fills a typed item from the cursor (ITEM_COLS from column first). */
void eng_item_struct(eng_rows *r, int first, struct store_item *it);

/* Resources (resources.c), for the queue's checks. */
int eng_need(store *s, store_kind kind, const char *team, const char *name, char *err,
             size_t errlen);
int eng_read_resource(store *s, store_kind kind, const char *team, const char *name, json_t **row,
                      char *err, size_t errlen);

/* An operation's JSON output: handed to *out (out may be NULL: then freed) when rc is
 * STORE_OK, freed otherwise (out then receives NULL). Returns rc. */
int eng_take_json(json_t *value, json_t **out, int rc);

/* Bridges to wake once an operation's change is committed. */
struct eng_wake {
    char bridge[4][129];
    int n;
};
void eng_wake_add(struct eng_wake *w, const char *bridge);
/* After a successful operation, wakes the noted bridges (after the outermost commit when a
 * batch is open). Returns rc. */
int eng_wake_after(store *s, const struct eng_wake *w, int rc);

/* ---- the operations, called by store.c once inputs are validated ---------------------------- */

/* resources.c */
int store_res_create(store *s, store_kind kind, const char *team, const char *parent,
                     const char *name, json_t *vault, json_t **row, char *err, size_t errlen);
int store_res_get(store *s, store_kind kind, const char *team, const char *name, json_t **row,
                  char *err, size_t errlen);
int store_res_list(store *s, store_kind kind, const char *scope, json_t **rows, char *err,
                   size_t errlen);
int store_res_update_vault(store *s, store_kind kind, const char *team, const char *name,
                           json_t *vault, int64_t expected_version, int flags, json_t **row,
                           char *err, size_t errlen);
int store_res_delete(store *s, store_kind kind, const char *team, const char *name, char *err,
                     size_t errlen);
int store_res_set_bridge(store *s, const char *team, const char *name, const char *bridge,
                         json_t **row, char *err, size_t errlen);
int store_res_set_run(store *s, const char *team, const char *name, int64_t next_run_ms,
                      int64_t last_run_ms, const char *last_task_id, char *err, size_t errlen);

/* queue.c (specs filled in, task ids normalised, filters prepared by store.c) */
int store_items_create(store *s, const struct store_item_spec *specs, size_t n,
                       char (*task_ids)[37], char *err, size_t errlen);
int store_item_get(store *s, const char *task_id, json_t **row, char *err, size_t errlen);
int store_items_list(store *s, const struct store_queue_filter *filter, json_t **rows, char *err,
                     size_t errlen);
int store_items_count(store *s, const struct store_queue_filter *filter, int64_t *count, char *err,
                      size_t errlen);
int store_items_counts(store *s, const char *bridge, json_t **counts, char *err, size_t errlen);
int store_item_cancel(store *s, const char *task_id, int force, int64_t now, json_t **row,
                      char *err, size_t errlen);
int store_item_delete(store *s, const char *task_id, int64_t now, char *err, size_t errlen);
int store_events_append(store *s, const char *task_id, const char *action, const char *details,
                        json_t *details_json, int64_t at_ms, char *err, size_t errlen);
int store_events_list(store *s, const char *task_id, json_t **events, char *err, size_t errlen);

/* claim.c. claim_forget frees what the claim remembers on the handle (store_close).
 * claim_ended tells it of the ends f[0..n) this handle wrote (store_held_finish's rcs, or
 * NULL for one end, and its rc): each one that ended frees a slot of its machine; a finish
 * that failed forgets what the claim remembers. */
void claim_forget(store *s);
void claim_ended(store *s, const struct store_finish *f, size_t n, const int *rcs, int rc);
int store_claim_rows(store *s, const char *bridge, const char *owner, int64_t lease_ms, int max_n,
                     int64_t now, json_t **items, char *err, size_t errlen);
int store_claim_typed(store *s, const char *bridge, const char *owner, int64_t lease_ms, int max_n,
                      int start, int64_t now, struct store_item **items, size_t *n, char *err,
                      size_t errlen);

/* finish.c. store_held_finish with rcs NULL ends the one attempt f[0] and returns its own
 * status and message; with rcs, each entry's status goes to rcs[i] (an entry that is not
 * held changes nothing, the others apply). The recovery lists fill rows (JSON, with
 * tokens) when items is NULL, else items / n. */
int store_held_start(store *s, const char *task_id, const char *token, int64_t now, char *err,
                     size_t errlen);
int store_held_progress(store *s, const char *task_id, const char *token, int percent,
                        const char *message, int64_t now, char *err, size_t errlen);
int store_held_heartbeat(store *s, const char *owner, int64_t lease_ms, int64_t now, int *renewed,
                         char *err, size_t errlen);
int store_held_finish(store *s, const struct store_finish *f, size_t n, int *rcs, int64_t now,
                      char *err, size_t errlen);
int store_held_expired(store *s, const char *bridge, int64_t now, json_t **rows,
                       struct store_item **items, size_t *n, char *err, size_t errlen);
int store_held_cancelling(store *s, const char *owner, json_t **rows, struct store_item **items,
                          size_t *n, char *err, size_t errlen);

/* The migrations applied, as rows (engine.c). */
int eng_migrations_list(store *s, json_t **rows, char *err, size_t errlen);

#endif
