/*
 * Internal to the PostgreSQL store driver: the handle and what its two files share. Every
 * PQ* call of ferry is in these files. Nothing outside store_pg*.c includes this; the rest
 * of ferry sees store.h, and the store's logic sees engine.h.
 *
 * Files: store_pg.c (dialect, migrations, connections and reconnects, wake-ups, open and
 * close, the engine operation table), store_pg_tx.c (statements by id, the row cursor,
 * transactions, batches and their redo log).
 */
#ifndef FERRY_STORE_PG_H
#define FERRY_STORE_PG_H

#include "engine.h"

#include <libpq-fe.h>
#include <sys/types.h>

#define PG_MAX_PARAMS 16
#define PG_TEXT_OID   25
#define PG_INT8_OID   20

/* One write statement of the open batch, kept so the batch can be rebuilt (see
 * store_pg_tx.c, "batches and the redo log"). */
struct pg_logged {
    const char *sql; /* the handle's statement text (not copied) */
    int n;
    Oid types[PG_MAX_PARAMS];
    char **values; /* owned copies; NULL entries are SQL NULL */
    long rows;     /* rows it changed the first time */
    unsigned op;   /* the batch operation it belongs to */
};

/* A statement of the connection, by statement id. */
struct pg_stmt {
    char *sql; /* the text with $N parameters, NULL until first used */
    int n;
    Oid types[PG_MAX_PARAMS];
    int uses;     /* run unnamed once; prepared from the second use on */
    int prepared; /* prepared as "ferry_<id>" on the current connection */
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
    int begin_pending; /* its BEGIN is not sent yet: it goes with the first statement */
    int64_t xid;       /* its id, once a write's round trip brought it back (0: not yet) */
    int xid_current;   /* no write ran since xid was asked for (xid 0: none assigned) */
    int tx_wrote; /* it changed something (its commit outcome then matters) */
    int in_batch; /* store_begin opened it */
    int in_op;        /* an operation body runs inside the batch */
    int op_undo;      /* it may fail after changing rows: its first write takes a savepoint */
    int op_savepoint; /* it has taken its savepoint */
    int op_changed;   /* its writes changed rows */
    unsigned op_seq;  /* operations run in the batch so far */
    /* The count of changes to machines and teams (migration 11) read with the last batch's
     * COMMIT, and when (mono_ms; 0: none, or a statement ran since). */
    int64_t version, version_at;
    struct pg_logged *log;
    size_t n_log, cap_log;

    struct pg_stmt stmts[S_COUNT];

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

/* store_pg.c */
int store_pg_fail(struct pg *p, const PGresult *r, char *err, size_t errlen);
void store_pg_conn_message(PGconn *conn, char *out, size_t n);
char *store_pg_utf8_clean(const char *text);
int store_pg_connected(struct pg *p, int64_t deadline, char *err, size_t errlen);
void store_pg_listen_tick(struct pg *p);
int64_t store_pg_deadline(const struct pg *p);
void store_pg_sleep_ms(int ms);

/* store_pg_tx.c */
/* Runs one statement (simple protocol when n < 0: may hold several statements). *out: the
 * result on success (caller PQclears). id >= 0 caches the statement by id. */
int store_pg_exec_raw(struct pg *p, int id, const char *sql, int n, const Oid *types,
                      const char *const *values, PGresult **out, char *err, size_t errlen);
/* Runs SQL without parameters and without a result. */
int store_pg_cmd(struct pg *p, const char *sql, char *err, size_t errlen);
/* Ends an open transaction without caring how (the connection may be gone). */
void store_pg_rollback_quietly(struct pg *p);
/* Forgets the statements prepared on a lost connection. */
void store_pg_stmts_reset(struct pg *p);
/* Frees what store_pg_tx.c keeps in the handle (statements, the redo log). */
void store_pg_tx_free(struct pg *p);

int store_pg_exec(store *s, int id, const char *sql, int flags, int n, const struct eng_val *v,
                  eng_rows *rows, long *changes, char *err, size_t errlen);
int store_pg_next(eng_rows *r, char *err, size_t errlen);
const char *store_pg_text(eng_rows *r, int col);
int64_t store_pg_i64(eng_rows *r, int col);
int store_pg_is_null(eng_rows *r, int col);
void store_pg_done(eng_rows *r);
int store_pg_script(store *s, const char *sql, char *err, size_t errlen);
void store_pg_may_undo(store *s);
int store_pg_run(store *s, int write, eng_body body, void *ctx, char *err, size_t errlen);
int store_pg_run_in_batch(store *s, eng_body body, void *ctx, char *err, size_t errlen);
int store_pg_begin(store *s, char *err, size_t errlen);
int store_pg_commit_batch(store *s, char *err, size_t errlen);
int store_pg_rollback(store *s, char *err, size_t errlen);

#endif
