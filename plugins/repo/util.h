/*
 * Small helpers shared by the repo plugin's files: growable byte buffers with a hard cap,
 * varint encoding, hex, error records that carry a kind (transient or permanent), clocks.
 */
#ifndef REPO_UTIL_H
#define REPO_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define ID_LEN  32
#define HEX_LEN (ID_LEN * 2)

/* Largest object the plugin ever holds in memory in one piece (a pack, an index, a tree). */
#define BUF_MAX ((size_t)1 << 31)

/* Memory allocation that aborts the worker process on exhaustion: a worker that cannot
 * allocate a few megabytes cannot do anything useful, and the host records the crash. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable byte buffer. Zero-initialise it; buf_free releases it. */
typedef struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} buf;

void buf_reserve(buf *b, size_t extra);
void buf_append(buf *b, const void *p, size_t n);
void buf_put_u8(buf *b, uint8_t v);
void buf_put_u32(buf *b, uint32_t v); /* little endian */
void buf_put_varint(buf *b, uint64_t v);
void buf_put_str(buf *b, const char *s); /* varint length, then the bytes (no NUL) */
void buf_free(buf *b);

/* A bounds-checked reader over bytes. Any read past the end sets err and returns zeros. */
typedef struct reader {
    const uint8_t *p;
    const uint8_t *end;
    int err;
} reader;

void rd_init(reader *r, const void *p, size_t n);
uint8_t rd_u8(reader *r);
uint32_t rd_u32(reader *r);
uint64_t rd_varint(reader *r);
const uint8_t *rd_bytes(reader *r, size_t n); /* NULL (and err) when fewer than n remain */
/* Reads a varint-prefixed string into a new NUL-terminated copy (caller frees); NULL on error. */
char *rd_str(reader *r, size_t max);
uint32_t get_u32(const uint8_t *p);
void put_u32(uint8_t *p, uint32_t v);

void hex_encode(const uint8_t *in, size_t n, char *out); /* out holds 2n+1 bytes */
int hex_decode(const char *in, uint8_t *out, size_t n);  /* exactly 2n hex digits; 0 or -1 */
int hex_digit(char c); /* the value of one hex digit (either case), or -1 */

/*
 * Error records. Every operation that can fail fills one and returns -1; the first error
 * wins, so the record names the root cause. The kind decides the job's outcome:
 * E_TRANSIENT may succeed when run again (an unmounted disk, a full disk, a busy storage),
 * E_INVALID is a wrong parameter, E_CORRUPT is damaged data in a storage, E_FAIL the rest.
 */
enum { E_NONE = 0, E_FAIL, E_TRANSIENT, E_INVALID, E_CORRUPT, E_NOTFOUND, E_CANCELLED };

typedef struct rerr {
    int kind;
    char msg[1024];
} rerr;

int rerr_set(rerr *e, int kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Copies src into dst unless dst already holds an error. */
void rerr_merge(rerr *dst, const rerr *src);
/* The error kind an errno value from file I/O stands for. */
int errno_kind(int err);
/* A short machine-readable code for a kind ("io_error", "corrupt", ...). */
const char *rerr_code(int kind);

int64_t now_ms(void);
double mono_sec(void);
/* Formats t (Unix seconds) as UTC ISO 8601 into out (at least 21 bytes). */
void iso_time(int64_t t, char *out, size_t outlen);

/* Non-zero when name is a safe single path component: [A-Za-z0-9][A-Za-z0-9._-]{0,127}. */
int valid_name(const char *name);
/* Fills out (n bytes) with random bytes from OpenSSL; aborts if the generator fails. */
void random_bytes(void *out, size_t n);
/* A random identifier as 2n hex digits into out (2n+1 bytes). */
void random_hex(char *out, size_t n);

/* Peak resident set size of this process in KiB. */
long peak_rss_kb(void);

#endif
