/*
 * Messages between the host and its worker processes: a 4-byte little-endian length, then
 * that many bytes of compact JSON. Both sides use blocking writes; the host reads with
 * proto_reader so one poll loop can serve many workers.
 */
#ifndef FERRY_PROTO_H
#define FERRY_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "outcome.h"

/* The largest message accepted; a larger length prefix means a broken peer. */
#define PROTO_MAX_MESSAGE (64u * 1024 * 1024)

/* Writes one message (msg is borrowed) to a blocking socket: a worker's or a probe's. The
 * host's ends are non-blocking; it frames its messages into a worker's proto_buf, which
 * runner.c writes as the socket takes them. Returns 0, -1 when the peer is gone (or memory ran
 * out), -2 when the message is larger than PROTO_MAX_MESSAGE (nothing is written). */
int proto_send(int fd, const json_t *msg);

/*
 * Whole frames (length and text) gathered to be written together: a turn's run messages
 * for one worker go out in one write. Start from {0}; free with proto_buf_free().
 */
struct proto_buf {
    char *p;
    size_t len, cap;
};

/* Appends msg's frame (msg borrowed). 0, -1 when memory runs out, -2 when the message is
 * larger than PROTO_MAX_MESSAGE (nothing is appended in either case). */
int proto_buf_msg(struct proto_buf *b, const json_t *msg);
/* Appends n bytes (whole frames taken from another buffer). 0, or -1 when memory runs out. */
int proto_buf_add(struct proto_buf *b, const void *bytes, size_t n);
/* Appends v in decimal. 0, or -1 when memory runs out. */
int proto_buf_i64(struct proto_buf *b, int64_t v);
void proto_buf_free(struct proto_buf *b);

/*
 * Reads one whole message, blocking. Returns a new reference, or NULL on end of file, a read
 * error or a malformed message.
 */
json_t *proto_recv(int fd);

/* Incremental reader for a non-blocking fd. */
typedef struct proto_reader {
    char *buf;
    size_t len, cap;
    /* The last read did not fill the room it had: it took all the peer had written then. */
    int drained;
} proto_reader;

/*
 * Reads what is available from fd into r: one read, unless it filled the buffer. Returns 1
 * when data was read, 0 when the fd would block, -1 on end of file or error.
 */
int proto_fill(proto_reader *r, int fd);
/* As proto_fill(), from a blocking socket, without waiting: what the peer wrote so far, in
 * the one system call that also says there is nothing (a worker's look before each start). */
int proto_fill_now(proto_reader *r, int fd);

/*
 * Takes the next complete message out of r. Returns a new reference, NULL when no complete
 * message is buffered yet; sets *broken when the buffer holds garbage.
 */
json_t *proto_next(proto_reader *r, int *broken);

/*
 * The next complete message's text (*text, *n bytes, not NUL-terminated), left in r: the
 * caller takes it out with proto_drop() when done with it. Returns 1, or 0 when no complete
 * message is buffered (*broken set when the buffer holds garbage: a length prefix out of
 * range).
 */
int proto_peek(proto_reader *r, const char **text, size_t *n, int *broken);
/* Takes out of r the message proto_peek() or proto_read_text() gave. */
void proto_drop(proto_reader *r);

struct proto_done;
/*
 * As proto_next(), except that a plain "done" message (an attempt's usual end: no result,
 * no error text) is parsed straight into *done without a JSON tree: returns 1 then, with
 * *done as proto_parse_done() would fill it. Otherwise returns 0 with *msg and *broken as
 * proto_next() gives them (a "done" that is not plain comes back as a message).
 */
int proto_next_done(proto_reader *r, json_t **msg, struct proto_done *done, int *broken);

/*
 * The next message from a blocking fd through r: what r already holds first, else reads
 * (each read takes all that is there, so several messages cost one read). Returns a new
 * reference, or NULL on end of file, a read error or a malformed message.
 */
json_t *proto_read(proto_reader *r, int fd);
/* As proto_read(), the message as its text, left in r (see proto_peek()). Returns 1, or 0 on
 * end of file, a read error or a broken length prefix. */
int proto_read_text(proto_reader *r, int fd, const char **text, size_t *n);

void proto_reader_free(proto_reader *r);

/*
 * Text a plugin supplies travels and is stored capped, at these sizes in bytes (the cap
 * included the "…" that marks a cut). An error message is the same text in the response
 * vault's error.message and in lastFailureReason, so both are cut at PROTO_ERROR_MAX, which
 * is not above the store's own cap on reasons (store.c MAX_REASON).
 */
#define PROTO_ERROR_MAX 4096
#define PROTO_CODE_MAX  64
#define PROTO_LOG_MAX   4096

/*
 * A copy of text made fit for the wire and the store: every byte sequence that is not
 * valid UTF-8 becomes U+FFFD, and text longer than max bytes is cut at a character
 * boundary and ended with "…" (the result is at most max bytes; max >= 8). NULL text gives
 * NULL. The caller frees the copy.
 */
char *proto_clean_text(const char *text, size_t max);

/*
 * Raw bytes a plugin wrote (its stderr) made fit for a log line: control characters other
 * than tab become \xNN, then as proto_clean_text() (bad UTF-8 replaced, at most max bytes).
 * NUL bytes are escaped too. The caller frees the copy; NULL only when memory runs out.
 */
char *proto_clean_bytes(const char *bytes, size_t len, size_t max);

/* Like proto_clean_text(), as a new JSON string ("" for NULL text). */
json_t *proto_text(const char *text, size_t max);

/* --- the messages ----------------------------------------------------------------------- */

/*
 * Every message between the host and a worker, by its "op". This table is the protocol:
 * docs/protocol.md lists the same names in the same order (tests/e2e/proto_docs.sh checks).
 * A message carries "op" and, except "reply", "id" (the attempt's number in this runner).
 */
#define PROTO_OPS(X)                                                                             \
    X(RUN, "run")           /* host -> worker: start an attempt */                             \
    X(REPLY, "reply")       /* host -> worker: the answer to a call or storage request */      \
    X(SKIP, "skip")         /* host -> worker: do not start a queued attempt (cancelled) */    \
    X(LOG, "log")           /* worker -> host: a log line of the function */                   \
    X(PROGRESS, "progress") /* worker -> host: percent done and a message */                  \
    X(CALL, "call")         /* worker -> host: run another function; waits for the reply */    \
    X(STORAGE, "storage")   /* worker -> host: a storage's vault; waits for the reply */       \
    X(PGROUP, "pgroup")     /* worker -> host: a command's process group, to kill on stop */  \
    X(EXIT, "exit")         /* worker -> host: the plugin called exit() */                     \
    X(DONE, "done")         /* worker -> host: the attempt ended */                            \
    X(PROBE, "probe")       /* probe -> host: how far loading a plugin got (registry.c) */

enum proto_op {
#define PROTO_OP_ENUM(name, text) PROTO_##name,
    PROTO_OPS(PROTO_OP_ENUM)
#undef PROTO_OP_ENUM
        PROTO_N_OPS,
    PROTO_BAD_OP = -1, /* no "op", or one this table does not have */
};

/* The wire name of op ("run", ...); "?" for anything else. */
const char *proto_op_name(enum proto_op op);
/* The op of a message, PROTO_BAD_OP when it has none this table knows. */
enum proto_op proto_op_of(const json_t *msg);

/*
 * One attempt as the host hands it to a worker: what to run, with what, where, and whose it
 * is. Every field is explicit; nothing rides inside another (the machine facts carry no
 * secrets and no hooks). Pointers are borrowed.
 */
struct attempt_spec {
    const char *plugin;      /* the plugin's file */
    const char *function;    /* the function's name */
    const json_t *params;    /* its parameters (object; NULL: {}) */
    const json_t *config;    /* the plugin's config section (object; NULL: {}) */
    const json_t *machine;   /* the machine's facts, secrets removed, or NULL */
    /* machine already written as compact JSON (json_dumps JSON_COMPACT), kept by the host
     * with the facts so each run message copies it; NULL: machine is written. In a worker,
     * the facts as proto_scan_run() left them, as text (machine NULL until parsed). */
    const char *machine_json;
    const char *pre_hook;    /* shell command run on the machine before the function, or NULL */
    const char *post_hook;   /* ... after it, or NULL */
    const char *hook_dir;    /* where on the machine the hooks run when it exists, or NULL */
    const char *ssh_key;     /* the machine's SSH private key (PEM or base64), or NULL */
    const char *task_id;     /* the item's id (host->task_id), or NULL */
    int attempt;             /* the item's attempt number (host->attempt), 1 the first */
    int depth;               /* 0 for the item's own attempt, N for a call N deep */
    int64_t timeout_ms;      /* 0: none */
};

/* "run": host -> worker. deadline_ms is the wall-clock end (epoch ms, 0 none). */
struct proto_run {
    int64_t id;
    int64_t deadline_ms;
    struct attempt_spec spec;
};

/*
 * "reply": host -> worker, the answer to a "call" (kind of the callee's outcome, result,
 * error) or to a "storage" request (OUTCOME_OK with vault, or an error).
 */
struct proto_reply {
    enum outcome_kind kind; /* OK, RETRY, FAIL or INVALID */
    const json_t *result;   /* a call's result, or NULL */
    const json_t *vault;    /* a storage's vault, or NULL */
    const char *code;       /* error code, NULL when OK */
    const char *message;    /* error message, NULL when OK */
};

/* "skip": the attempt id, sent ahead to the worker, is cancelled: the worker drops it if it
 * has not started it (and says so with a done whose skipped is 1), else ignores the skip. */
struct proto_skip {
    int64_t id;
};

/* "log": level is "debug", "info", "warn", "error" (or "stderr", the runner's own). */
struct proto_log {
    int64_t id;
    const char *level;
    const char *text;
};

/* "progress": percent -1..100, message may be NULL. */
struct proto_progress {
    int64_t id;
    int percent;
    const char *message;
};

/* "call": run function with params (an object) and wait for the reply. */
struct proto_call {
    int64_t id;
    const char *function;
    const json_t *params;
};

/* "storage": the vault of the team's storage name. */
struct proto_storage {
    int64_t id;
    const char *name;
};

/* "pgroup": a command the function started runs in process group pgid. */
struct proto_pgroup {
    int64_t id;
    int64_t pgid;
};

/* "exit": the plugin called exit(status); loading: from its init(), while being loaded. */
struct proto_exit {
    int64_t id;
    int status;
    int loading;
};

/*
 * "done": the attempt ended. kind is OK, RETRY, FAIL, INVALID (what the function returned)
 * or UNAVAILABLE (the worker could not load the plugin or find the function); retire asks
 * the runner to replace the worker (its copy of the plugin is stale).
 */
struct proto_done {
    int64_t id;
    enum outcome_kind kind;
    const json_t *result; /* NULL when none */
    const char *code;     /* NULL on success */
    const char *message;  /* NULL on success */
    int64_t duration_ms;
    int retire;
    /* 1: the worker's stderr pipe was empty as it ended (the runner has read all of it and
     * need not read again); 0: unknown. */
    int stderr_drained;
    /* 1: the attempt never started (a "skip" reached the worker first); nothing else set. */
    int skipped;
};

/* "probe": stage reached ("dlopen", "entry", "init", "done"), the plugin's
 * descriptor once read, the reason it stopped. */
struct proto_probe {
    const char *stage;
    const json_t *result; /* NULL when none */
    const char *reason;   /* NULL when none */
};

/* Any one message, for code that parses whichever op came. */
union proto_msg {
    struct proto_run run;
    struct proto_reply reply;
    struct proto_skip skip;
    struct proto_log log;
    struct proto_progress progress;
    struct proto_call call;
    struct proto_storage storage;
    struct proto_pgroup pgroup;
    struct proto_exit exit;
    struct proto_done done;
    struct proto_probe probe;
};

/*
 * Builders: each returns a new message (with "op") ready for proto_send(), or NULL when
 * memory runs out. Text is copied as given: the sender cleans what a plugin supplies
 * (proto_clean_text) before it builds. JSON members (params, result, ...) are shared with
 * the caller's trees, not copied: send the message and drop it, do not change it.
 */
json_t *proto_build_run(const struct proto_run *m);
/* Appends the frame of a "run" message, written straight from m: the message
 * proto_build_run() returns, without a JSON tree (proto_build_run() parses this text).
 * Returns as proto_buf_msg(). */
int proto_buf_run(struct proto_buf *b, const struct proto_run *m);
json_t *proto_build_reply(const struct proto_reply *m);
json_t *proto_build_skip(const struct proto_skip *m);
json_t *proto_build_log(const struct proto_log *m);
json_t *proto_build_progress(const struct proto_progress *m);
json_t *proto_build_call(const struct proto_call *m);
json_t *proto_build_storage(const struct proto_storage *m);
json_t *proto_build_pgroup(const struct proto_pgroup *m);
json_t *proto_build_exit(const struct proto_exit *m);
json_t *proto_build_done(const struct proto_done *m);
/* Appends the frame of a "done" message written straight from m, as proto_buf_run() does:
 * the message proto_build_done() returns. Returns as proto_buf_msg(). */
int proto_buf_done(struct proto_buf *b, const struct proto_done *m);
/* Sends a "done" message as proto_send() sends one built by proto_build_done(). */
int proto_send_done(int fd, const struct proto_done *m);
json_t *proto_build_probe(const struct proto_probe *m);

/*
 * Parsers: each fills *out from msg (pointers borrowed from msg, valid while it lives) and
 * returns 0, or -1 with a one-line reason in err when msg is not that message: another op,
 * a member missing or of the wrong type, a number out of range, text that is not valid
 * UTF-8 (jansson refuses it when reading). Optional members may be absent or null.
 */
int proto_parse_run(const json_t *msg, struct proto_run *out, char *err, size_t errlen);

/*
 * A "run" message's text (n bytes, as proto_buf_run() writes it) parsed without a JSON tree:
 * the worker's side of the message sent per attempt, where building a tree cost more than the
 * rest of a short attempt. Returns 1 with *out as proto_parse_run() fills it from the same
 * text, except: params and config are new references (the caller drops them), NULL when
 * they are {}; machine is left as its text in spec.machine_json (NUL-terminated; NULL for
 * null) with spec.machine NULL, for the caller to parse when it needs it (it always parses).
 * The text is changed (strings end in place) and must outlive *out. Returns 0, the text
 * untouched, when it is not plain: compact JSON whose strings are printable ASCII without
 * escapes, the members proto_parse_run() knows each at most once, numbers integers; the
 * caller reads such text the general way, which also reports what is wrong.
 */
int proto_scan_run(char *text, size_t n, struct proto_run *out);
int proto_parse_skip(const json_t *msg, struct proto_skip *out, char *err, size_t errlen);
int proto_parse_reply(const json_t *msg, struct proto_reply *out, char *err, size_t errlen);
int proto_parse_log(const json_t *msg, struct proto_log *out, char *err, size_t errlen);
int proto_parse_progress(const json_t *msg, struct proto_progress *out, char *err,
                         size_t errlen);
int proto_parse_call(const json_t *msg, struct proto_call *out, char *err, size_t errlen);
int proto_parse_storage(const json_t *msg, struct proto_storage *out, char *err, size_t errlen);
int proto_parse_pgroup(const json_t *msg, struct proto_pgroup *out, char *err, size_t errlen);
int proto_parse_exit(const json_t *msg, struct proto_exit *out, char *err, size_t errlen);
int proto_parse_done(const json_t *msg, struct proto_done *out, char *err, size_t errlen);
int proto_parse_probe(const json_t *msg, struct proto_probe *out, char *err, size_t errlen);

/*
 * Where an item's hooks run: a plugin's hook_dir template (plugin.h) filled in from
 * one attempt. {datastore} is the machine's datastore, any other {name} the item's string
 * parameter name. Returns the path (the caller frees it), or NULL when a placeholder has no
 * value, an empty one or one holding "..", or the template is not valid.
 */
char *proto_hook_dir(const char *tmpl, const json_t *machine, const json_t *params);

/* 0 when tmpl is a valid hook_dir template (printable ASCII, {name} placeholders, at most
 * PROTO_HOOK_DIR_MAX bytes); else -1 and why in err. */
int proto_hook_dir_valid(const char *tmpl, char *err, size_t errlen);
#define PROTO_HOOK_DIR_MAX 512

/* The kind named on the wire ("OK", "RETRY", ...; outcome_kind_name()); -1 when unknown. */
int proto_kind_of(const char *name);

#endif
