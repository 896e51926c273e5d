/*
 * Internal to the SQLite driver (store_sqlite.c: connection, statements, transactions,
 * migrations, resources; store_sqlite_queue.c: queue items, claims, the held item's life,
 * wake-ups). Nothing outside these two files includes it.
 */
#ifndef FERRY_STORE_SQLITE_H
#define FERRY_STORE_SQLITE_H

#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/types.h>

#include "store.h"

/* Internal status: the engine was busy; the whole transaction is retried. */
#define SQ_BUSY (-100)

#define STMT_SLOTS       256
#define STALE_DEFAULT_MS ((int64_t)STORE_DEFAULT_STALE_MINUTES * 60000)

struct stmt_slot {
    const char *sql; /* the static SQL text it was prepared from (not copied) */
    sqlite3_stmt *st;
};

struct sq {
    struct store base;
    sqlite3 *db;
    char *path;
    pid_t pid; /* the process that opened the handle */
    int busy_timeout_ms;
    int64_t busy_started_us;
    unsigned rand_state; /* jitter for busy waits */
    int in_tx;           /* a transaction (batch or operation) is open */
    int batch_lost;      /* an error rolled back the open batch: refuse until it ends */
    struct stmt_slot stmts[STMT_SLOTS];
    int wake_fd; /* bound socket a host polls, or -1 */
    char *wake_path;
    int send_fd; /* unbound socket notifications are sent from, or -1 */
};

/* The body of one operation: runs inside sq_run's transaction. */
typedef int (*sq_body)(struct sq *q, void *ctx, char *err, size_t errlen);

/* store_sqlite.c: statements, bindings, errors, transactions, resource reads. */
int64_t col_i64(sqlite3_stmt *st, int i);
const char *col_text(sqlite3_stmt *st, int i);
int sq_exec(struct sq *q, char *err, size_t errlen, const char *sql, const char *types, ...);
int sq_fail(struct sq *q, int rc, char *err, size_t errlen);
int sq_need(struct sq *q, store_kind kind, const char *team, const char *name, char *err,
            size_t errlen);
sqlite3_stmt *sq_query(struct sq *q, int *status, char *err, size_t errlen, const char *sql,
                       const char *types, ...);
int sq_read_resource(struct sq *q, store_kind kind, const char *team, const char *name,
                     json_t **row, char *err, size_t errlen);
int sq_run(struct sq *q, int write, sq_body body, void *ctx, char *err, size_t errlen);
int sq_scalar(struct sq *q, int64_t *out, char *err, size_t errlen, const char *sql,
              const char *types, ...);
int sq_step(struct sq *q, sqlite3_stmt *st, char *err, size_t errlen);

/* store_sqlite_queue.c: the driver operations on queue items. */
int sq_cancelling(store *s, const char *owner, json_t **items, char *err, size_t errlen);
int sq_claim(store *s, const char *bridge, const char *owner, int64_t lease_ms, int max_n,
             int64_t now, json_t **items, char *err, size_t errlen);
int sq_event_append(store *s, const char *task_id, const char *action, const char *details,
                    json_t *details_json, int64_t at_ms, char *err, size_t errlen);
int sq_event_list(store *s, const char *task_id, json_t **events, char *err, size_t errlen);
int sq_expired(store *s, const char *bridge, int64_t now, json_t **items, char *err, size_t errlen);
int sq_finish(store *s, const char *task_id, const char *token, const struct store_outcome *outcome,
              int64_t now, char *err, size_t errlen);
int sq_heartbeat(store *s, const char *owner, int64_t lease_ms, int64_t now, int *renewed,
                 char *err, size_t errlen);
int sq_progress(store *s, const char *task_id, const char *token, int percent, const char *message,
                int64_t now, char *err, size_t errlen);
int sq_queue_cancel(store *s, const char *task_id, int force, int64_t now, json_t **row, char *err,
                    size_t errlen);
int sq_queue_counts(store *s, const char *bridge, json_t **counts, char *err, size_t errlen);
int sq_queue_count(store *s, const struct store_queue_filter *filter, int64_t *count, char *err,
                   size_t errlen);
int sq_queue_create(store *s, const struct store_item_spec *specs, size_t n, char (*task_ids)[37],
                    char *err, size_t errlen);
int sq_queue_delete(store *s, const char *task_id, int64_t now, char *err, size_t errlen);
int sq_queue_get(store *s, const char *task_id, json_t **row, char *err, size_t errlen);
int sq_queue_list(store *s, const struct store_queue_filter *filter, json_t **rows, char *err,
                  size_t errlen);
int sq_start(store *s, const char *task_id, const char *token, int64_t now, char *err,
             size_t errlen);
int sq_wait_fd(store *s, const char *bridge, char *err, size_t errlen);
void sq_notify(store *s, const char *bridge);
void sq_wait_drain(store *s);

#endif
