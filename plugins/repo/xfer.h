/*
 * The transfer layer shared by the remote storage providers (s3, sftp, webdav): a pool of
 * libcurl handles (one connection each), the transfer settings every remote storage vault
 * accepts, retries with backoff for what is safe to repeat, and error text that never
 * carries a credential.
 *
 * Vault settings read by xfer_opts_read (all optional):
 *   "connections"      parallel transfers, 1..32 (default 4)
 *   "bwlimit"          bandwidth for all transfers together, each direction: a number of
 *                      bytes per second, or a string with a K, M or G suffix (KiB/MiB/GiB per
 *                      second), e.g. "20M"; 0 or absent: unlimited
 *   "connect_timeout"  seconds to establish a connection (default 15)
 *   "timeout"          seconds a transfer may go without moving a byte (default 60)
 *   "retries"          further tries of a transient failure (default 5; 0 disables)
 *   "retry_delay_ms"   first backoff delay (default 250), doubled per try up to 8 s, with
 *                      jitter; so five retries wait about 8 s in all
 *   "tls_verify"       false to accept any TLS certificate (default true)
 *   "ca_file"          a CA bundle for TLS (default: the system's)
 */
#ifndef REPO_XFER_H
#define REPO_XFER_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdint.h>

#include "util.h"

typedef struct xfer_stream xfer_stream; /* a streamed upload, see xfer_stream_start */

typedef struct xfer_opts {
    int connections;
    curl_off_t bwlimit; /* bytes/s for the whole pool, 0: none */
    long connect_timeout;
    long timeout;
    int retries;
    long retry_delay_ms;
    int tls_verify;
    char ca_file[512];
} xfer_opts;

/* Reads the settings above from vault; 0, or -1 with an E_INVALID error naming the key. */
int xfer_opts_read(const json_t *vault, const char *storage_kind, xfer_opts *o, rerr *e);

typedef struct xfer_pool xfer_pool;

/* A pool of at most o->connections handles sharing DNS and TLS sessions. */
xfer_pool *xfer_pool_new(const xfer_opts *o);
void xfer_pool_free(xfer_pool *p);
const xfer_opts *xfer_pool_opts(const xfer_pool *p);

/*
 * Borrows a handle, waiting while all connections are in use. It comes reset, with the
 * pool's timeouts, bandwidth share (bwlimit / connections), TLS settings, NOSIGNAL and
 * keep-alive set, and its error buffer cleared. Give it back with xfer_put.
 */
CURL *xfer_get(xfer_pool *p);
void xfer_put(xfer_pool *p, CURL *h);
/*
 * xfer_get for a streamed upload, which holds its connection as long as a pack is being
 * written: it also waits while any xfer_get caller does, so that the short requests that
 * publish and index finished packs never queue behind whole packs.
 */
CURL *xfer_get_background(xfer_pool *p);

/*
 * Waits as long as the pool's bwlimit asks before n more bytes move in direction
 * (XFER_SEND or XFER_RECV). Every data callback of every provider calls it, so the limit
 * holds for all transfers of the storage together, however many are running.
 */
enum { XFER_SEND = 0, XFER_RECV = 1 };
void xfer_throttle(xfer_pool *p, int direction, size_t n);

/*
 * Once called with 1, every running and later transfer of the process ends at once with
 * CURLE_ABORTED_BY_CALLBACK and no retry is tried; 0 clears it. The job's cancel check
 * sets it (a worker runs one job at a time) and a new job clears it.
 */
void xfer_cancel(int on);
/* Non-zero once xfer_cancel(1) was called, unless this thread is shielded (for providers
 * with their own progress callback). */
int xfer_cancelled(void);
/*
 * Shields the calling thread's transfers from a cancel while on is 1; returns the previous
 * state, to pass back. For the short steps that must finish once the data are on the
 * storage: placing a finished upload under its key and writing the index of a stored pack.
 * Cut there, a cancel would leave a pack that no index names.
 */
int xfer_shield(int on);

/* Non-zero when a curl result may pass on another try (connection refused or reset,
 * timeout, partial transfer, send/receive error). */
int xfer_transient(CURLcode rc);

/*
 * Sleeps before try number attempt (1 = the first retry) for the pool's backoff with full
 * jitter. Returns 0, or -1 when attempt is past o->retries (stop retrying).
 */
int xfer_backoff(const xfer_pool *p, int attempt);

/*
 * One HTTP request. Fill the inputs, call http_do; read the outputs.
 *   method    "GET", "PUT", "HEAD", "DELETE", "POST", "PROPFIND", "MKCOL", "MOVE", ...
 *   url       the whole URL (never holding credentials)
 *   headers   extra request headers (the caller owns and frees the list)
 *   body      request body sent from memory (PUT/POST/PROPFIND), body_len bytes; NULL: none
 *   off, len  a byte range (Range: bytes=off-(off+len-1)) when len > 0; off alone when
 *             len == 0 and off > 0
 *   out       a 2xx response body is appended here (may be NULL: discarded)
 *   prepare   called on the handle after the request is set up (signing, credentials),
 *             with prepare_arg; may be NULL
 * Outputs:
 *   status          the final HTTP status (0 when no response came)
 *   err_body        the start of a non-2xx response body (at most 4 KiB), NUL-terminated,
 *                   for error messages (S3's <Code>, say)
 *   content_length  from the response headers (-1 when absent)
 *   etag            the ETag response header, quotes included ("" when absent)
 *   amz_class, amz_restore   S3's x-amz-storage-class and x-amz-restore headers
 *
 * Statuses 500-599, 429 and 408, and transient transport errors, are retried with backoff
 * when the caller marks the request idempotent; the output buffer is rewound between tries.
 * Returns 0 when a response came with a status for the caller to map (2xx, 3xx, 404, 412,
 * 403 ...), or -1 with e set: E_TRANSIENT for a transport failure or a 5xx/429/408 status
 * left after the retries, E_FAIL for other transport errors (a bad URL, say). e's message
 * names `what` (e.g. "PUT data/ab/ab12… on s3 bucket b") and the cause, never a header.
 */
typedef struct http_req {
    const char *method;
    const char *url;
    struct curl_slist *headers;
    const void *body;
    size_t body_len;
    xfer_stream *stream; /* PUT: the body comes from this stream (chunked; not retried) */
    uint64_t off, len;
    buf *out;
    void (*prepare)(CURL *h, void *arg);
    void *prepare_arg;
    int idempotent; /* set by the caller: 1 when repeating the request is harmless */
    const char *what;
    /* outputs */
    long status;
    char err_body[4096];
    int64_t content_length;
    char etag[128];
    char amz_class[32];    /* S3's x-amz-storage-class response header ("" when absent) */
    char amz_restore[160]; /* S3's x-amz-restore response header ("" when absent) */
} http_req;

int http_do(xfer_pool *p, http_req *r, rerr *e);

/*
 * A streamed upload: one background thread runs a transfer (run) whose read callback takes
 * the bytes a producer writes, through a bounded buffer of cap bytes, so an object of any
 * size crosses with cap bytes in memory. The size is unknown to the transfer until the end.
 * The streamed try is the only one while the data flows (its bytes are gone); see
 * xfer_stream_replaying for the second chance.
 *
 *   xfer_stream_start   starts run(st, arg, e) on its own thread; never fails
 *   xfer_stream_write   blocks while the buffer is full; 0, or -1 with e set from run's
 *                       error once the transfer has ended early
 *   xfer_stream_finish  ends the data, waits for run, returns its result (0 or -1 with e
 *                       set) and frees the stream
 *   xfer_stream_abort   ends the transfer (the read callback fails it), waits, frees
 *   xfer_stream_read    for run's read callback: up to max bytes, waiting for them; 0 at the
 *                       end of the data, CURL_READFUNC_ABORT once aborted
 */
typedef int (*xfer_stream_run)(xfer_stream *st, void *arg, rerr *e);
xfer_stream *xfer_stream_start(size_t cap, xfer_stream_run run, void *arg);
int xfer_stream_write(xfer_stream *st, const void *data, size_t len, rerr *e);
int xfer_stream_finish(xfer_stream *st, rerr *e);
void xfer_stream_abort(xfer_stream *st);
size_t xfer_stream_read(xfer_stream *st, char *to, size_t max);
/* Bytes the transfer has taken so far. */
uint64_t xfer_stream_taken(xfer_stream *st);
/*
 * A transfer cut by a transient failure is run again at finish, once, from a spool of the
 * data (an unlinked file in $TMPDIR or /tmp: page cache, not memory): run then sees
 * xfer_stream_replaying non-zero and may retry (with backoff) as for an upload from memory,
 * calling xfer_stream_rewind(st, 0) before each try. rewind: 0, or -1 when the bytes before
 * off are gone (a first, streamed try that already sent some).
 */
int xfer_stream_replaying(const xfer_stream *st);
int xfer_stream_rewind(xfer_stream *st, uint64_t off);

/* Percent-encodes s for a URL path (keeps A-Z a-z 0-9 - . _ ~ and '/'); caller frees. */
char *url_path_escape(const char *s);
/* Percent-encodes s for a query value (also encodes '/'); caller frees. */
char *url_query_escape(const char *s);

/*
 * Walks an XML document: cb is called at the end of every element with the path of local
 * names from the root joined by '/' (namespaces dropped: "multistatus/response/href") and
 * the element's own text (trimmed; "" for an empty element). Returns 0, or -1 when the
 * document is not well-formed.
 */
typedef void (*xml_cb)(void *arg, const char *path, const char *text);
int xml_walk(const char *xml, size_t len, xml_cb cb, void *arg);

#endif
