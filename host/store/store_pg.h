/*
 * Internal to the PostgreSQL store driver (store_pg*.c): the handle, the statement helpers
 * and the pieces the driver's files share. Nothing outside store_pg*.c includes this; the
 * rest of ferry sees only store.h.
 *
 * Files: store_pg.c (connections, transactions, reconnects, migrations, wake-ups, the
 * operation table), store_pg_res.c (resources), store_pg_queue.c (queue items, events,
 * cancel and delete), store_pg_exec.c (claims and the held item's life).
 */
#ifndef FERRY_STORE_PG_H
#define FERRY_STORE_PG_H

#include "store.h"

#include <libpq-fe.h>
#include <sys/types.h>

/* Internal statuses, never returned through store.h: the operation is run again. */
#define PG_LOST  (-100) /* the connection dropped (or the server restarted) mid-operation */
#define PG_RETRY (-101) /* deadlock or serialization failure: the engine asks for a retry */

#define PG_STALE_DEFAULT_MS ((int64_t)STORE_DEFAULT_STALE_MINUTES * 60000)

/* One write statement of the open batch, kept so the batch can be rebuilt (see
 * store_pg.c, "batches and the redo log"). */
struct pg_logged {
    const char *sql;   /* static SQL text (not copied) */
    const char *types; /* static parameter type string (not copied) */
    int n;
    char **values; /* owned copies; NULL entries are SQL NULL */
    long rows;     /* rows it changed the first time */
    unsigned op;   /* the batch operation it belongs to */
};

#define PG_STMT_SLOTS 256

/* A statement prepared on the connection. */
struct pg_stmt {
    char *sql; /* NULL: a free slot */
    uint32_t hash;
    int n;
    Oid types[16];
    char name[24]; /* "": seen once, not prepared yet */
};

struct pg {
    struct store base;
    PGconn *conn;
    char *conninfo; /* as configured; may hold a password, so never printed */
    char *label;    /* "postgres://user@host:port/db" for messages */
    pid_t pid;      /* the process that opened the handle */
    int window_ms;  /* lock_timeout, and how long an operation rides out a lost server */
    unsigned rand_state;
    int offline;             /* a reconnect window ran out: fail fast until the server is back */
    int warned;              /* "connection lost" was logged for the current outage */
    int64_t next_connect_at; /* offline: mono_ms of the next reconnect attempt */

    /* Transactions. */
    int in_tx;    /* a transaction is open (an operation's or a batch's) */
    int tx_wrote; /* it changed something (its commit outcome then matters) */
    int in_batch; /* store_begin opened it */
    int batch_lost;
    int in_op;        /* an operation body runs inside the batch */
    int op_undo;      /* it may fail after changing rows: its first write takes a savepoint */
    int op_savepoint; /* it has taken its savepoint */
    int op_changed;   /* its writes changed rows */
    unsigned op_seq;  /* operations run in the batch so far */
    struct pg_logged *log;
    size_t n_log, cap_log;

    /* Prepared statements of the connection (see store_pg.c). */
    struct pg_stmt stmts[PG_STMT_SLOTS];
    size_t n_stmts;
    unsigned stmt_counter;

    /* Wake-ups: a second connection LISTENs on the bridge's channel. */
    PGconn *listen;
    char channel[64];
    int wait_fd;             /* what the host polls: a dup of the listen socket or of pipe_rd */
    int pipe_rd, pipe_wr;    /* empty: quiet while the listen connection is down; a byte: wake */
    int wait_on_socket;      /* wait_fd is the listen socket (else the pipe) */
    int self_pending;        /* notifications this handle sent to its own channel, not yet seen */
    int self_pid;            /* the backend they came from */
    int64_t listen_retry_at; /* mono_ms of the next reconnect attempt */
    int listen_backoff_ms;
};

typedef int (*pg_body)(struct pg *p, void *ctx, char *err, size_t errlen);

/*
 * Runs body as one operation: in its own transaction (write) or in autocommit (read), or
 * inside the open batch. A lost connection or a deadlock runs it again (within the
 * reconnect window), so body must be restartable: it sets its outputs only on success and
 * replaces (not leaks) outputs of an earlier run.
 */
int store_pg_run(struct pg *p, int write, pg_body body, void *ctx, char *err, size_t errlen);

/*
 * Runs one statement with parameters from a type string: 't' text (NULL is SQL NULL), 'i'
 * int, 'I' int64_t, 'N' int64_t where 0 is NULL, 'j' json_t * (NULL is NULL). Every
 * parameter is declared, so a statement may leave some unused. store_pg_q keeps the result
 * in *res (caller PQclears it; NULL on failure); store_pg_w runs a write, which joins the
 * redo log of an open batch, and reports the rows it changed in *rows (may be NULL).
 * Return STORE_OK or a status, with err set.
 */
int store_pg_q(struct pg *p, PGresult **res, char *err, size_t errlen, const char *sql,
               const char *types, ...);
int store_pg_w(struct pg *p, long *rows, char *err, size_t errlen, const char *sql,
               const char *types, ...);
/* store_pg_w that also returns the write's result (RETURNING rows) in *res. */
int store_pg_wq(struct pg *p, PGresult **res, char *err, size_t errlen, const char *sql,
                const char *types, ...);
/* store_pg_q with parameters already as text (types: 't' or 'I' each). */
int store_pg_qv(struct pg *p, PGresult **res, char *err, size_t errlen, const char *sql, int n,
                const char *types, const char *const *values);
/* A query expected to return one integer: *out (0 when no row or NULL). */
int store_pg_scalar(struct pg *p, int64_t *out, char *err, size_t errlen, const char *sql,
                    const char *types, ...);

/* A growing buffer, for array literals ("{…}") passed as one text parameter. */
struct pg_buf {
    char *s; /* NUL-terminated; the owner frees it */
    size_t len, cap;
};
/* Appends n bytes of piece. */
void store_pg_buf_add(struct pg_buf *b, const char *piece, size_t n);
/* Appends one element of an array literal (after "{", or after an element): value double-
 * quoted with '"' and '\' escaped, or NULL for a NULL value. */
void store_pg_buf_element(struct pg_buf *b, const char *value);

/* Column readers: NULL / 0 for SQL NULL. */
const char *store_pg_text(const PGresult *r, int row, int col);
int64_t store_pg_i64(const PGresult *r, int row, int col);

/* The columns of struct store_item_cols, for "SELECT " PG_ITEM_COLS " FROM queue_items q". */
#define PG_ITEM_COLS                                                                               \
    "q.task_id, q.status, q.function, q.team_name, q.machine_name, q.bridge_name,"                 \
    " q.priority, q.vault, q.response_vault, q.created_at, q.updated_at, q.run_after,"             \
    " q.assigned_at, q.started_at, q.finished_at, q.retry_count, q.last_retry_at,"                 \
    " q.last_failure_reason, q.lease_owner, q.claim_token, q.lease_expires_at,"                    \
    " q.progress_percent, q.progress_message, q.parent_task_id, q.link_kind,"                      \
    " q.schedule_name, q.schedule_fire_at, q.idempotent,"                                          \
    " (SELECT string_agg(p.task_id, ',' ORDER BY d.dep_seq) FROM queue_deps d"                     \
    " JOIN queue_items p ON p.seq = d.dep_seq WHERE d.task_seq = q.seq),"                          \
    " (SELECT CASE WHEN bool_or(p.status <> 'COMPLETED') THEN -1"                                  \
    " ELSE coalesce(max(p.finished_at), 0) END FROM queue_deps d"                                  \
    " JOIN queue_items p ON p.seq = d.dep_seq WHERE d.task_seq = q.seq)"
#define PG_ITEM_NCOLS 30

#define PG_ACTIVE "('ASSIGNED','PROCESSING','CANCELLING')"

/* Builds the item row of result row i (columns PG_ITEM_COLS from column first on). */
json_t *store_pg_item_row(const PGresult *r, int i, int first, int64_t now, int64_t stale_ms,
                          int with_token);
/* Appends every row of r (PG_ITEM_COLS from column 0) to a new array in *items. */
void store_pg_item_rows(const PGresult *r, int64_t now, int64_t stale_ms, int with_token,
                        json_t **items);

/* A queue item as the operations below find it. */
struct pg_item_ref {
    int64_t seq;
    char task_id[37];
    char status[16];
    int retry_count;
    char bridge[129];
};

/* Resolves a task id or unique prefix (what, e.g. "dependency", prefixes messages). lock:
 * NULL, or a locking clause such as " FOR SHARE". */
int store_pg_resolve(struct pg *p, const char *id, const char *what, const char *lock,
                     struct pg_item_ref *r, char *err, size_t errlen);
/* Reads the row of item seq into *row. */
int store_pg_read_item(struct pg *p, int64_t seq, int64_t now, int with_token, json_t **row,
                       char *err, size_t errlen);
/* Appends an event to item seq. */
int store_pg_event(struct pg *p, int64_t seq, const char *action, const char *details,
                   int details_is_json, int64_t at, char *err, size_t errlen);
/* Cancels the PENDING dependents of an item that will never complete, transitively. */
int store_pg_cancel_dependents(struct pg *p, int64_t seq, const char *task_id, const char *why,
                               int64_t now, char *err, size_t errlen);

/* Resources (store_pg_res.c), for the queue files. */
int store_pg_need(struct pg *p, store_kind kind, const char *team, const char *name, char *err,
                  size_t errlen);
int store_pg_read_resource(struct pg *p, store_kind kind, const char *team, const char *name,
                           json_t **row, char *err, size_t errlen);

/* The operations, by file. */
int store_pg_resource_create(store *s, store_kind kind, const char *team, const char *parent,
                             const char *name, json_t *vault, json_t **row, char *err,
                             size_t errlen);
int store_pg_resource_get(store *s, store_kind kind, const char *team, const char *name,
                          json_t **row, char *err, size_t errlen);
int store_pg_resource_list(store *s, store_kind kind, const char *scope, json_t **rows, char *err,
                           size_t errlen);
int store_pg_resource_update_vault(store *s, store_kind kind, const char *team, const char *name,
                                   json_t *vault, int64_t expected_version, int flags, json_t **row,
                                   char *err, size_t errlen);
int store_pg_resource_delete(store *s, store_kind kind, const char *team, const char *name,
                             char *err, size_t errlen);
int store_pg_machine_set_bridge(store *s, const char *team, const char *name, const char *bridge,
                                json_t **row, char *err, size_t errlen);
int store_pg_schedule_set_run(store *s, const char *team, const char *name, int64_t next_run_ms,
                              int64_t last_run_ms, const char *last_task_id, char *err,
                              size_t errlen);

int store_pg_queue_create(store *s, const struct store_item_spec *specs, size_t n,
                          char (*task_ids)[37], char *err, size_t errlen);
int store_pg_queue_get(store *s, const char *task_id, json_t **row, char *err, size_t errlen);
int store_pg_queue_list(store *s, const struct store_queue_filter *filter, json_t **rows, char *err,
                        size_t errlen);
int store_pg_queue_counts(store *s, const char *bridge, json_t **counts, char *err, size_t errlen);
int store_pg_queue_count(store *s, const struct store_queue_filter *filter, int64_t *count,
                         char *err, size_t errlen);
int store_pg_queue_cancel(store *s, const char *task_id, int force, int64_t now, json_t **row,
                          char *err, size_t errlen);
int store_pg_queue_delete(store *s, const char *task_id, int64_t now, char *err, size_t errlen);
int store_pg_event_append(store *s, const char *task_id, const char *action, const char *details,
                          json_t *details_json, int64_t at_ms, char *err, size_t errlen);
int store_pg_event_list(store *s, const char *task_id, json_t **events, char *err, size_t errlen);

int store_pg_claim(store *s, const char *bridge, const char *owner, int64_t lease_ms, int max_n,
                   int64_t now, json_t **items, char *err, size_t errlen);
int store_pg_start(store *s, const char *task_id, const char *token, int64_t now, char *err,
                   size_t errlen);
int store_pg_progress(store *s, const char *task_id, const char *token, int percent,
                      const char *message, int64_t now, char *err, size_t errlen);
int store_pg_heartbeat(store *s, const char *owner, int64_t lease_ms, int64_t now, int *renewed,
                       char *err, size_t errlen);
int store_pg_finish(store *s, const char *task_id, const char *token,
                    const struct store_outcome *outcome, int64_t now, char *err, size_t errlen);
int store_pg_expired(store *s, const char *bridge, int64_t now, json_t **items, char *err,
                     size_t errlen);
int store_pg_cancelling(store *s, const char *owner, json_t **items, char *err, size_t errlen);

#endif
