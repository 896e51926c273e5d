/*
 * Messages between the host and its worker processes: a 4-byte little-endian length, then
 * that many bytes of compact JSON. Both sides use blocking writes; the host reads with
 * proto_reader so one poll loop can serve many workers.
 */
#ifndef FERRY_PROTO_H
#define FERRY_PROTO_H

#include <stddef.h>

#include <jansson.h>

/* The largest message accepted; a larger length prefix means a broken peer. */
#define PROTO_MAX_MESSAGE (64u * 1024 * 1024)

/* Writes one message (msg is borrowed). Returns 0, or -1 when the peer is gone. */
int proto_send(int fd, const json_t *msg);

/*
 * Reads one whole message, blocking. Returns a new reference, or NULL on end of file, a read
 * error or a malformed message.
 */
json_t *proto_recv(int fd);

/* Incremental reader for a non-blocking fd. */
typedef struct proto_reader {
    char *buf;
    size_t len, cap;
} proto_reader;

/*
 * Reads what is available from fd into r. Returns 1 when data was read, 0 when the fd would
 * block, -1 on end of file or error.
 */
int proto_fill(proto_reader *r, int fd);

/*
 * Takes the next complete message out of r. Returns a new reference, NULL when no complete
 * message is buffered yet; sets *broken when the buffer holds garbage.
 */
json_t *proto_next(proto_reader *r, int *broken);

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

#endif
