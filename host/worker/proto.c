/* Length-prefixed JSON messages between the host and its workers. */
#include "proto.h"

#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Grows the buffer *p of *cap bytes, doubling from first, until len + n bytes fit; -1 when
 * memory runs out (the buffer is kept). */
static int grow(char **p, size_t *cap, size_t len, size_t n, size_t first)
{
    if (*cap - len >= n)
        return 0;
    size_t c = *cap ? *cap : first;
    while (c - len < n)
        c *= 2;
    char *q = realloc(*p, c);
    if (q == NULL)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* Room for n more bytes in b; -1 when memory runs out. */
static int buf_reserve(struct proto_buf *b, size_t n)
{
    return grow(&b->p, &b->cap, b->len, n, 4096);
}

int proto_buf_add(struct proto_buf *b, const void *bytes, size_t n)
{
    if (buf_reserve(b, n) != 0)
        return -1;
    memcpy(b->p + b->len, bytes, n);
    b->len += n;
    return 0;
}

static int buf_add(const char *buffer, size_t size, void *data)
{
    return proto_buf_add(data, buffer, size);
}

/* Starts a frame at the end of b: room for its length, filled in by frame_end(). */
static int frame_begin(struct proto_buf *b, size_t *at)
{
    *at = b->len;
    return buf_add("\0\0\0\0", 4, b);
}

/* Ends the frame started at at: writes its length, or takes it back (-2) when it is larger
 * than PROTO_MAX_MESSAGE, or (-1) when ok says building it failed. */
static int frame_end(struct proto_buf *b, size_t at, int ok)
{
    size_t n = b->len - at - 4;
    if (!ok || n > PROTO_MAX_MESSAGE) {
        b->len = at;
        return ok ? -2 : -1;
    }
    char *p = b->p + at;
    p[0] = (char)(n & 0xff);
    p[1] = (char)((n >> 8) & 0xff);
    p[2] = (char)((n >> 16) & 0xff);
    p[3] = (char)((n >> 24) & 0xff);
    return 0;
}

int proto_buf_msg(struct proto_buf *b, const json_t *msg)
{
    size_t at;
    if (frame_begin(b, &at) != 0)
        return -1;
    return frame_end(b, at, json_dump_callback(msg, buf_add, b, JSON_COMPACT | JSON_ENCODE_ANY) == 0);
}

void proto_buf_free(struct proto_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* Where a blocking sender frames its message, straight from the encoder, to send it in one
 * write: kept for the next message (a worker sends one or more per attempt), unless a large
 * one grew it. */
static __thread struct proto_buf send_buf;

/* Writes what send_buf holds when rc (framing it) is 0; returns rc, else the write's. */
static int send_framed(int fd, int rc)
{
    if (rc == 0)
        rc = write_all(fd, send_buf.p, send_buf.len);
    if (send_buf.cap > 1024 * 1024)
        proto_buf_free(&send_buf);
    return rc;
}

int proto_send(int fd, const json_t *msg)
{
    send_buf.len = 0;
    return send_framed(fd, proto_buf_msg(&send_buf, msg));
}

int proto_send_done(int fd, const struct proto_done *m)
{
    send_buf.len = 0;
    return send_framed(fd, proto_buf_done(&send_buf, m));
}

static uint32_t get_len(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

json_t *proto_recv(int fd)
{
    char head[4];
    if (read_all(fd, head, 4) != 0)
        return NULL;
    uint32_t n = get_len(head);
    if (n > PROTO_MAX_MESSAGE)
        return NULL;
    char *buf = malloc(n ? n : 1);
    if (buf == NULL)
        return NULL;
    json_t *msg = NULL;
    if (read_all(fd, buf, n) == 0)
        msg = json_loadb(buf, n, JSON_DECODE_ANY, NULL);
    free(buf);
    return msg;
}

/* Room for at least 64 KiB more in r; -1 when memory runs out. */
static int reserve(proto_reader *r)
{
    return grow(&r->buf, &r->cap, r->len, 65536, 131072);
}

/* proto_fill(), or with now proto_fill_now(): a blocking socket read without waiting. */
static int fill(proto_reader *r, int fd, int now)
{
    int got = 0;
    for (;;) {
        if (reserve(r) != 0)
            return -1;
        size_t room = r->cap - r->len;
        ssize_t n =
            now ? recv(fd, r->buf + r->len, room, MSG_DONTWAIT) : read(fd, r->buf + r->len, room);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return got;
        if (n <= 0)
            return got ? 1 : -1;
        r->len += (size_t)n;
        got = 1;
        /* A read that did not fill the room took all there was: no second read to learn
         * that the socket is empty (a level-triggered poll reports anything left). */
        r->drained = (size_t)n < room;
        if (r->drained || r->len > PROTO_MAX_MESSAGE + 4)
            return 1;
    }
}

int proto_fill(proto_reader *r, int fd)
{
    return fill(r, fd, 0);
}

int proto_fill_now(proto_reader *r, int fd)
{
    return fill(r, fd, 1);
}

int proto_read_text(proto_reader *r, int fd, const char **text, size_t *len)
{
    for (;;) {
        int broken = 0;
        if (proto_peek(r, text, len, &broken))
            return 1;
        if (broken || reserve(r) != 0)
            return 0;
        size_t room = r->cap - r->len;
        ssize_t n = read(fd, r->buf + r->len, room);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        r->len += (size_t)n;
        r->drained = (size_t)n < room;
    }
}

json_t *proto_read(proto_reader *r, int fd)
{
    const char *text;
    size_t n;
    if (!proto_read_text(r, fd, &text, &n))
        return NULL;
    json_t *msg = json_loadb(text, n, JSON_DECODE_ANY, NULL);
    proto_drop(r);
    return msg;
}

int proto_peek(proto_reader *r, const char **text, size_t *n, int *broken)
{
    *broken = 0;
    if (r->len < 4)
        return 0;
    uint32_t len = get_len(r->buf);
    if (len > PROTO_MAX_MESSAGE) {
        *broken = 1;
        return 0;
    }
    if (r->len < (size_t)len + 4)
        return 0;
    *text = r->buf + 4;
    *n = len;
    return 1;
}

void proto_drop(proto_reader *r)
{
    size_t n = 4 + (size_t)get_len(r->buf);
    memmove(r->buf, r->buf + n, r->len - n);
    r->len -= n;
}

json_t *proto_next(proto_reader *r, int *broken)
{
    const char *text;
    size_t n;
    if (!proto_peek(r, &text, &n, broken))
        return NULL;
    json_t *msg = json_loadb(text, n, JSON_DECODE_ANY, NULL);
    if (msg == NULL)
        *broken = 1;
    proto_drop(r);
    return msg;
}

/* One token of a plain message's text (scan_done): the text at *p matches lit exactly. */
static int lit(const char **p, const char *end, const char *lit_text, size_t n)
{
    if ((size_t)(end - *p) < n || memcmp(*p, lit_text, n) != 0)
        return 0;
    *p += n;
    return 1;
}

/* A non-negative integer of at most 18 digits, no leading zero (so it fits int64_t). */
static int scan_uint(const char **p, const char *end, int64_t *v)
{
    const char *s = *p;
    int64_t n = 0;
    int digits = 0;
    while (s < end && *s >= '0' && *s <= '9' && digits < 18) {
        n = n * 10 + (*s++ - '0');
        digits++;
    }
    if (digits == 0 || (digits > 1 && **p == '0') ||
        (s < end && (*s == '.' || *s == 'e' || *s == 'E' || (*s >= '0' && *s <= '9'))))
        return 0;
    *v = n;
    *p = s;
    return 1;
}

/* A member's name in a plain message (scan_done, proto_scan_run): keys[i] and its length. */
struct plain_key {
    const char *name;
    size_t len;
};
#define PLAIN_KEY(name)                                                                            \
    {                                                                                              \
        name, sizeof(name) - 1                                                                     \
    }

/*
 * The member at *p: the index of its name among keys[0, n), *p moved past the colon after
 * it; -1 for a name not among them or already seen (each at most once: seen, a bit each).
 */
static int plain_member(const char **p, const char *end, const struct plain_key *keys, int n,
                        unsigned *seen)
{
    int k = -1;
    for (int i = 0; i < n && k < 0; i++) {
        size_t kl = keys[i].len;
        /* The quotes and colon first: they rule out every key of another length without
         * a call to memcmp (30 calls a message, the most of its scan, before). */
        if ((size_t)(end - *p) > kl + 2 && (*p)[0] == '"' && (*p)[kl + 1] == '"' &&
            (*p)[kl + 2] == ':' && memcmp(*p + 1, keys[i].name, kl) == 0)
            k = i;
    }
    if (k < 0 || (*seen & (1u << k)))
        return -1;
    *seen |= 1u << k;
    *p += keys[k].len + 3;
    return k;
}

/*
 * A "done" message's text parsed without a JSON tree, when it is plain: compact JSON of
 * one flat object, members op "done", id, code, result null, error null, duration_ms and
 * the three flags, each at most once, strings of printable ASCII without escapes. Returns
 * 1 with *out filled as proto_parse_done() fills it from the same text, 0 for anything
 * else (proto_next() then reads it the general way, which also reports what is wrong).
 */
static int scan_done(const char *text, size_t n, struct proto_done *out)
{
    const char *p = text, *end = text + n;
    enum { K_OP, K_ID, K_CODE, K_RESULT, K_ERROR, K_DURATION, K_RETIRE, K_DRAINED, K_SKIPPED };
    static const struct plain_key keys[] = {PLAIN_KEY("op"),     PLAIN_KEY("id"),
                                            PLAIN_KEY("code"),   PLAIN_KEY("result"),
                                            PLAIN_KEY("error"),  PLAIN_KEY("duration_ms"),
                                            PLAIN_KEY("retire"), PLAIN_KEY("stderr_drained"),
                                            PLAIN_KEY("skipped")};
    unsigned seen = 0;
    memset(out, 0, sizeof(*out));
    if (!lit(&p, end, "{", 1))
        return 0;
    for (int first = 1;; first = 0) {
        if (lit(&p, end, "}", 1) && !first)
            break;
        if (!first && !lit(&p, end, ",", 1))
            return 0;
        int k = plain_member(&p, end, keys, (int)(sizeof(keys) / sizeof(keys[0])), &seen);
        if (k < 0)
            return 0;
        if (k == K_OP || k == K_CODE) {
            if (!lit(&p, end, "\"", 1))
                return 0;
            const char *s = p;
            while (p < end && *p != '"' && *p != '\\' && *p >= 0x20 && *p < 0x7f)
                p++;
            if (p == end || *p != '"')
                return 0;
            size_t len = (size_t)(p++ - s);
            if (k == K_OP) {
                if (len != 4 || memcmp(s, "done", 4) != 0)
                    return 0;
                continue;
            }
            int kind = -1;
            for (int c = OUTCOME_OK; c <= OUTCOME_UNAVAILABLE && kind < 0; c++) {
                const char *name = outcome_kind_name((enum outcome_kind)c);
                if (strlen(name) == len && memcmp(name, s, len) == 0)
                    kind = c;
            }
            if (kind < 0 || (kind > OUTCOME_INVALID && kind != OUTCOME_UNAVAILABLE))
                return 0;
            out->kind = (enum outcome_kind)kind;
        } else if (k == K_RESULT || k == K_ERROR) {
            if (!lit(&p, end, "null", 4))
                return 0;
        } else if (k == K_ID || k == K_DURATION) {
            if (!scan_uint(&p, end, k == K_ID ? &out->id : &out->duration_ms))
                return 0;
        } else {
            int v = lit(&p, end, "true", 4) ? 1 : lit(&p, end, "false", 5) ? 0 : -1;
            if (v < 0)
                return 0;
            *(k == K_RETIRE    ? &out->retire
              : k == K_DRAINED ? &out->stderr_drained
                               : &out->skipped) = v;
        }
    }
    unsigned needed = 1u << K_OP | 1u << K_ID | 1u << K_CODE;
    return p == end && (seen & needed) == needed;
}

int proto_next_done(proto_reader *r, json_t **msg, struct proto_done *done, int *broken)
{
    *msg = NULL;
    const char *text;
    size_t n;
    if (!proto_peek(r, &text, &n, broken))
        return 0;
    int plain = scan_done(text, n, done);
    if (!plain && (*msg = json_loadb(text, n, JSON_DECODE_ANY, NULL)) == NULL)
        *broken = 1;
    proto_drop(r);
    return plain;
}

void proto_reader_free(proto_reader *r)
{
    free(r->buf);
    memset(r, 0, sizeof(*r));
}

/*
 * Length of the valid UTF-8 sequence at p (n bytes left), or 0 when it is not one; then
 * *bad is how many bytes to replace with one U+FFFD: the longest start of a valid sequence
 * (Unicode's "maximal subpart"), at least 1.
 */
static size_t utf8_len(const unsigned char *p, size_t n, size_t *bad)
{
    unsigned char c = p[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
    *bad = 1;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* no overlong forms */
        if (c == 0xed)
            hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (n < 2 || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if (i >= n || (p[i] & 0xc0) != 0x80) {
            *bad = i;
            return 0;
        }
    }
    return len;
}

char *proto_clean_text(const char *text, size_t max)
{
    static const char replacement[] = "\xef\xbf\xbd", cut_mark[] = "\xe2\x80\xa6";
    if (text == NULL)
        return NULL;
    if (max < 8)
        max = 8;
    const unsigned char *p = (const unsigned char *)text;
    size_t n = strlen(text), out_len = 0;
    /* Each input byte becomes at most 3 output bytes; nothing past max + 3 is kept. */
    size_t keep = n < max + 3 ? n : max + 3;
    char *out = malloc(3 * keep + sizeof(cut_mark));
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n && out_len <= max;) {
        size_t bad, len = utf8_len(p + i, n - i, &bad);
        if (len) {
            memcpy(out + out_len, text + i, len);
            out_len += len;
            i += len;
        } else {
            memcpy(out + out_len, replacement, sizeof(replacement) - 1);
            out_len += sizeof(replacement) - 1;
            i += bad;
        }
    }
    if (out_len > max) { /* cut at a character boundary, leaving room for the mark */
        out_len = max - (sizeof(cut_mark) - 1);
        while (out_len > 0 && ((unsigned char)out[out_len] & 0xc0) == 0x80)
            out_len--;
        memcpy(out + out_len, cut_mark, sizeof(cut_mark) - 1);
        out_len += sizeof(cut_mark) - 1;
    }
    out[out_len] = 0;
    return out;
}

char *proto_clean_bytes(const char *bytes, size_t len, size_t max)
{
    if (max < 8)
        max = 8;
    if (len > max)
        len = max + 3; /* enough for the cut mark to show; the rest would be cut anyway */
    char *text = malloc(len * 4 + 1);
    if (text == NULL)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)bytes[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            n += (size_t)snprintf(text + n, len * 4 + 1 - n, "\\x%02x", c);
        else
            text[n++] = (char)c;
    }
    text[n] = 0;
    char *clean = proto_clean_text(text, max);
    free(text);
    return clean;
}

json_t *proto_text(const char *text, size_t max)
{
    char *clean = proto_clean_text(text ? text : "", max);
    json_t *s = clean ? json_string(clean) : NULL;
    free(clean);
    return s ? s : json_string("");
}

/* --- the messages ----------------------------------------------------------------------- */

static const char *const op_names[] = {
#define PROTO_OP_NAME(name, text) text,
    PROTO_OPS(PROTO_OP_NAME)
#undef PROTO_OP_NAME
};

const char *proto_op_name(enum proto_op op)
{
    return (unsigned)op < PROTO_N_OPS ? op_names[op] : "?";
}

enum proto_op proto_op_of(const json_t *msg)
{
    const char *name = json_string_value(json_object_get(msg, "op"));
    for (int i = 0; name && i < PROTO_N_OPS; i++)
        if (strcmp(name, op_names[i]) == 0)
            return (enum proto_op)i;
    return PROTO_BAD_OP;
}

const char *outcome_kind_name(enum outcome_kind kind)
{
    static const char *const names[] = {"OK",      "RETRY",   "FAIL",      "INVALID",
                                        "TIMEOUT", "CRASHED", "CANCELLED", "UNAVAILABLE"};
    return (unsigned)kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "FAIL";
}

int proto_kind_of(const char *name)
{
    for (int k = OUTCOME_OK; name && k <= OUTCOME_UNAVAILABLE; k++)
        if (strcmp(name, outcome_kind_name((enum outcome_kind)k)) == 0)
            return k;
    return -1;
}

/* --- building --------------------------------------------------------------------------- */

/* A JSON string of text; text that is not valid UTF-8 is cleaned rather than lost. */
static json_t *jstr(const char *text)
{
    json_t *s = json_string(text);
    return s ? s : proto_text(text, PROTO_MAX_MESSAGE);
}

static json_t *start(enum proto_op op, int64_t id, int with_id)
{
    json_t *m = json_object();
    json_object_set_new(m, "op", json_string(op_names[op]));
    if (with_id)
        json_object_set_new(m, "id", json_integer(id));
    return m;
}

static void put_str(json_t *m, const char *key, const char *text)
{
    if (text)
        json_object_set_new(m, key, jstr(text));
}

static void put_int(json_t *m, const char *key, int64_t v)
{
    json_object_set_new(m, key, json_integer(v));
}

/* A JSON member, shared with the caller's tree (a message is sent and dropped, never
 * changed: no copy on the hot path). */
static void put_obj(json_t *m, const char *key, const json_t *v, int null_too)
{
    if (v)
        json_object_set(m, key, (json_t *)v);
    else if (null_too)
        json_object_set_new(m, key, json_null());
}

/* An object member shared as put_obj(), {} when v is NULL. */
static void put_obj_or_empty(json_t *m, const char *key, const json_t *v)
{
    if (v)
        json_object_set(m, key, (json_t *)v);
    else
        json_object_set_new(m, key, json_object());
}

/*
 * The run message is written as text straight from its struct: it is the one message sent
 * per attempt, and a JSON tree built only to be dumped once cost the host an allocation per
 * member. Only its JSON members (params, config, machine) go through the encoder.
 */

/* Appends text as a JSON string; text that is not valid UTF-8 is cleaned as jstr() does. */
static int put_text(struct proto_buf *b, const char *text)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t plain = 0;
    /* Printable ASCII without quotes or backslashes (paths, names, ids) is copied as is; the
     * scan for it also finds the end of such text (its NUL is below 0x20), in one pass. */
    while (p[plain] >= 0x20 && p[plain] < 0x7f && p[plain] != '"' && p[plain] != '\\')
        plain++;
    size_t n = p[plain] == '\0' ? plain : plain + strlen(text + plain);
    if (plain == n) {
        if (buf_reserve(b, n + 2) != 0)
            return -1;
        char *o = b->p + b->len;
        o[0] = '"';
        memcpy(o + 1, text, n);
        o[n + 1] = '"';
        b->len += n + 2;
        return 0;
    }
    for (size_t i = 0; i < n;) {
        size_t bad, len = utf8_len(p + i, n - i, &bad);
        if (len == 0) {
            char *clean = proto_clean_text(text, PROTO_MAX_MESSAGE);
            int rc = clean ? put_text(b, clean) : -1;
            free(clean);
            return rc;
        }
        i += len;
    }
    if (buf_reserve(b, 6 * n + 2) != 0)
        return -1;
    char *o = b->p + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20) {
            static const char hex[] = "0123456789abcdef";
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            o += 6;
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    return 0;
}

/* Appends ,"key": (key is one of the run message's own names: no escaping needed). */
static int run_key(struct proto_buf *b, const char *key)
{
    size_t n = strlen(key);
    if (buf_reserve(b, n + 4) != 0)
        return -1;
    char *o = b->p + b->len;
    o[0] = ',';
    o[1] = '"';
    memcpy(o + 2, key, n);
    o[n + 2] = '"';
    o[n + 3] = ':';
    b->len += n + 4;
    return 0;
}

/* Appends ,"key":value for a string member (nothing when text is NULL). */
static int run_str(struct proto_buf *b, const char *key, const char *text)
{
    if (text == NULL)
        return 0;
    return run_key(b, key) || put_text(b, text) ? -1 : 0;
}

int proto_buf_i64(struct proto_buf *b, int64_t v)
{
    char text[I64_DECIMAL_MAX], *o = i64_decimal(v, text);
    return proto_buf_add(b, o, (size_t)(text + sizeof(text) - o));
}

static int run_int(struct proto_buf *b, const char *key, int64_t v)
{
    return run_key(b, key) || proto_buf_i64(b, v) ? -1 : 0;
}

/* Appends ,"key":JSON for v; NULL gives fallback ("{}" or "null"); text, when given, is v
 * already written as compact JSON. */
static int run_json(struct proto_buf *b, const char *key, const json_t *v, const char *fallback,
                    const char *text)
{
    if (run_key(b, key) != 0)
        return -1;
    if (v == NULL)
        return buf_add(fallback, strlen(fallback), b);
    if (text)
        return buf_add(text, strlen(text), b);
    if (json_is_object(v) && json_object_size(v) == 0)
        return buf_add("{}", 2, b);
    return json_dump_callback(v, buf_add, b, JSON_COMPACT | JSON_ENCODE_ANY) == 0 ? 0 : -1;
}

int proto_buf_run(struct proto_buf *b, const struct proto_run *m)
{
    const struct attempt_spec *s = &m->spec;
    size_t at;
    if (frame_begin(b, &at) != 0)
        return -1;
    static const char head[] = "{\"op\":\"run\",\"id\":";
    int bad = buf_add(head, sizeof(head) - 1, b) || proto_buf_i64(b, m->id) ||
              run_str(b, "plugin", s->plugin) || run_str(b, "function", s->function) ||
              run_json(b, "params", s->params, "{}", NULL) ||
              run_json(b, "config", s->config, "{}", NULL) ||
              run_json(b, "machine", s->machine, "null", s->machine_json) ||
              run_str(b, "pre_hook", s->pre_hook) || run_str(b, "post_hook", s->post_hook) ||
              run_str(b, "hook_dir", s->hook_dir) || run_str(b, "ssh_key", s->ssh_key) ||
              run_str(b, "task", s->task_id) || run_int(b, "attempt", s->attempt) ||
              run_int(b, "depth", s->depth) || run_int(b, "timeout_ms", s->timeout_ms) ||
              run_int(b, "deadline", m->deadline_ms) || buf_add("}", 1, b);
    return frame_end(b, at, !bad);
}

json_t *proto_build_run(const struct proto_run *m)
{
    struct proto_buf b = {0};
    json_t *j = proto_buf_run(&b, m) == 0 ? json_loadb(b.p + 4, b.len - 4, 0, NULL) : NULL;
    proto_buf_free(&b);
    return j;
}

/* {"code","message"} of an error, or null when there is none. */
static json_t *error_obj(const char *code, const char *message)
{
    if (code == NULL && message == NULL)
        return json_null();
    json_t *e = json_object();
    json_object_set_new(e, "code", jstr(code ? code : "error"));
    json_object_set_new(e, "message", jstr(message ? message : ""));
    return e;
}

json_t *proto_build_reply(const struct proto_reply *m)
{
    json_t *j = start(PROTO_REPLY, 0, 0);
    json_object_set_new(j, "code", json_string(outcome_kind_name(m->kind)));
    put_obj(j, "result", m->result, 1);
    put_obj(j, "vault", m->vault, 0);
    json_object_set_new(j, "error", error_obj(m->code, m->message));
    return j;
}

json_t *proto_build_log(const struct proto_log *m)
{
    json_t *j = start(PROTO_LOG, m->id, 1);
    put_str(j, "level", m->level ? m->level : "info");
    put_str(j, "text", m->text ? m->text : "");
    return j;
}

json_t *proto_build_progress(const struct proto_progress *m)
{
    json_t *j = start(PROTO_PROGRESS, m->id, 1);
    put_int(j, "percent", m->percent);
    put_str(j, "message", m->message);
    return j;
}

json_t *proto_build_call(const struct proto_call *m)
{
    json_t *j = start(PROTO_CALL, m->id, 1);
    put_str(j, "function", m->function);
    put_obj_or_empty(j, "params", m->params);
    return j;
}

json_t *proto_build_storage(const struct proto_storage *m)
{
    json_t *j = start(PROTO_STORAGE, m->id, 1);
    put_str(j, "name", m->name);
    return j;
}

json_t *proto_build_skip(const struct proto_skip *m)
{
    json_t *j = start(PROTO_SKIP, 0, 0);
    put_int(j, "id", m->id); /* its only member */
    return j;
}

json_t *proto_build_pgroup(const struct proto_pgroup *m)
{
    json_t *j = start(PROTO_PGROUP, m->id, 1);
    put_int(j, "pgid", m->pgid);
    return j;
}

json_t *proto_build_exit(const struct proto_exit *m)
{
    json_t *j = start(PROTO_EXIT, m->id, 1);
    put_int(j, "status", m->status);
    json_object_set_new(j, "loading", json_boolean(m->loading));
    return j;
}

/* Appends "key":true when on. */
static int run_flag(struct proto_buf *b, const char *key, int on)
{
    return on && (run_key(b, key) || buf_add("true", 4, b)) ? -1 : 0;
}

/*
 * The done message is written as text straight from its struct too: a worker sends one per
 * attempt. Its error object is made as error_obj() makes it.
 */
int proto_buf_done(struct proto_buf *b, const struct proto_done *m)
{
    size_t at;
    if (frame_begin(b, &at) != 0)
        return -1;
    static const char head[] = "{\"op\":\"done\",\"id\":";
    int bad = buf_add(head, sizeof(head) - 1, b) || proto_buf_i64(b, m->id) ||
              run_str(b, "code", outcome_kind_name(m->kind)) ||
              run_json(b, "result", m->result, "null", NULL) || run_key(b, "error");
    if (!bad && m->code == NULL && m->message == NULL)
        bad = buf_add("null", 4, b);
    else if (!bad)
        bad = buf_add("{\"code\":", 8, b) || put_text(b, m->code ? m->code : "error") ||
              buf_add(",\"message\":", 11, b) || put_text(b, m->message ? m->message : "") ||
              buf_add("}", 1, b);
    bad = bad || run_int(b, "duration_ms", m->duration_ms) || run_flag(b, "retire", m->retire) ||
          run_flag(b, "stderr_drained", m->stderr_drained) || run_flag(b, "skipped", m->skipped) ||
          buf_add("}", 1, b);
    return frame_end(b, at, !bad);
}

json_t *proto_build_done(const struct proto_done *m)
{
    struct proto_buf b = {0};
    json_t *j = proto_buf_done(&b, m) == 0 ? json_loadb(b.p + 4, b.len - 4, 0, NULL) : NULL;
    proto_buf_free(&b);
    return j;
}

json_t *proto_build_probe(const struct proto_probe *m)
{
    json_t *j = start(PROTO_PROBE, 0, 0);
    put_str(j, "stage", m->stage);
    put_obj(j, "result", m->result, 0);
    put_str(j, "reason", m->reason);
    return j;
}

/* --- parsing ---------------------------------------------------------------------------- */

/* A parse in progress: the message, the op it must be, the first problem found. */
struct rd {
    const json_t *msg;
    const char *op;
    char *err;
    size_t errlen;
    int bad;
};

static void __attribute__((format(printf, 2, 3))) bad(struct rd *r, const char *fmt, ...)
{
    if (r->bad++)
        return;
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (r->err && r->errlen)
        snprintf(r->err, r->errlen, "bad \"%s\" message: %s", r->op, what);
}

static int begin(struct rd *r, const json_t *msg, enum proto_op op, char *err, size_t errlen)
{
    *r = (struct rd){.msg = msg, .op = op_names[op], .err = err, .errlen = errlen};
    if (!json_is_object(msg)) {
        bad(r, "not an object");
        return -1;
    }
    if (proto_op_of(msg) != op) {
        const char *got = json_string_value(json_object_get(msg, "op"));
        bad(r, "op is %s", got ? got : "missing or not a string");
        return -1;
    }
    return 0;
}

/* A string member: required, or optional (absent or null gives NULL); at most max bytes. */
static const char *get_str(struct rd *r, const char *key, int required, size_t max)
{
    const json_t *v = json_object_get(r->msg, key);
    if ((v == NULL || json_is_null(v)) && !required)
        return NULL;
    if (!json_is_string(v)) {
        bad(r, "\"%s\" must be a string", key);
        return NULL;
    }
    if (max && json_string_length(v) > max) {
        bad(r, "\"%s\" is longer than %zu bytes", key, max);
        return NULL;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        bad(r, "\"%s\" holds a NUL byte", key);
        return NULL;
    }
    return json_string_value(v);
}

/* An integer member within [lo, hi]; optional ones default to dflt. */
static int64_t get_int(struct rd *r, const char *key, int required, int64_t lo, int64_t hi,
                       int64_t dflt)
{
    const json_t *v = json_object_get(r->msg, key);
    if (v == NULL && !required)
        return dflt;
    if (!json_is_integer(v)) {
        bad(r, "\"%s\" must be an integer", key);
        return dflt;
    }
    json_int_t n = json_integer_value(v);
    if (n < lo || n > hi) {
        bad(r, "\"%s\" is out of range", key);
        return dflt;
    }
    return (int64_t)n;
}

/* An object member; absent or null gives NULL unless required. */
static const json_t *get_obj(struct rd *r, const char *key, int required)
{
    const json_t *v = json_object_get(r->msg, key);
    if ((v == NULL || json_is_null(v)) && !required)
        return NULL;
    if (!json_is_object(v)) {
        bad(r, "\"%s\" must be an object", key);
        return NULL;
    }
    return v;
}

/* Any JSON value but null; absent or null gives NULL. */
static const json_t *get_any(struct rd *r, const char *key)
{
    const json_t *v = json_object_get(r->msg, key);
    (void)r;
    return json_is_null(v) ? NULL : v;
}

static int64_t get_id(struct rd *r)
{
    return get_int(r, "id", 1, 0, INT64_MAX, 0);
}

/* The outcome kind named by "code"; allowed: the kinds from OUTCOME_OK to last. */
static enum outcome_kind get_kind(struct rd *r, enum outcome_kind last, int also_unavailable)
{
    const char *name = get_str(r, "code", 1, 0);
    int k = proto_kind_of(name);
    if (name && (k < 0 || (k > (int)last && !(also_unavailable && k == OUTCOME_UNAVAILABLE))))
        bad(r, "\"code\" %s is not an outcome this message carries", name);
    return k < 0 ? OUTCOME_FAIL : (enum outcome_kind)k;
}

/* "error": null, or {"code","message"} both strings within the caps. */
static void get_error(struct rd *r, const char **code, const char **message)
{
    *code = *message = NULL;
    const json_t *e = json_object_get(r->msg, "error");
    if (e == NULL || json_is_null(e))
        return;
    struct rd sub = {.msg = e, .op = r->op, .err = NULL};
    if (!json_is_object(e)) {
        bad(r, "\"error\" must be an object or null");
        return;
    }
    *code = get_str(&sub, "code", 1, PROTO_CODE_MAX);
    *message = get_str(&sub, "message", 1, PROTO_ERROR_MAX);
    if (sub.bad)
        bad(r, "\"error\" needs string \"code\" (at most %d bytes) and \"message\" (at most %d)",
            PROTO_CODE_MAX, PROTO_ERROR_MAX);
}

static int end(struct rd *r)
{
    return r->bad ? -1 : 0;
}

int proto_parse_run(const json_t *msg, struct proto_run *out, char *err, size_t errlen)
{
    struct rd r;
    memset(out, 0, sizeof(*out));
    if (begin(&r, msg, PROTO_RUN, err, errlen) != 0)
        return -1;
    struct attempt_spec *s = &out->spec;
    out->id = get_id(&r);
    out->deadline_ms = get_int(&r, "deadline", 0, 0, INT64_MAX, 0);
    s->plugin = get_str(&r, "plugin", 1, 4096);
    s->function = get_str(&r, "function", 1, 256);
    s->params = get_obj(&r, "params", 0);
    s->config = get_obj(&r, "config", 0);
    s->machine = get_obj(&r, "machine", 0);
    s->pre_hook = get_str(&r, "pre_hook", 0, 0);
    s->post_hook = get_str(&r, "post_hook", 0, 0);
    s->hook_dir = get_str(&r, "hook_dir", 0, 4096);
    s->ssh_key = get_str(&r, "ssh_key", 0, 0);
    s->task_id = get_str(&r, "task", 0, 256);
    s->attempt = (int)get_int(&r, "attempt", 0, 0, INT32_MAX, 0);
    s->depth = (int)get_int(&r, "depth", 0, 0, 1000, 0);
    s->timeout_ms = get_int(&r, "timeout_ms", 0, 0, INT64_MAX, 0);
    return end(&r);
}

/* A plain string's text at *p (after its opening quote): printable ASCII up to the closing
 * quote, no escapes. Returns its end (the quote), p moved past it; NULL when not plain. */
static const char *plain_string(const char **p, const char *end)
{
    const char *s = *p;
    while (s < end && *s != '"' && *s != '\\' && *s >= 0x20 && *s < 0x7f)
        s++;
    if (s == end || *s != '"')
        return NULL;
    *p = s + 1;
    return s;
}

/*
 * The end of the JSON value at p when it is plain (printable ASCII strings without escapes,
 * integers of at most 18 digits, nested at most 32 deep): a value jansson reads whatever
 * else it holds, so one kept as text is parsed later without fail. NULL for anything else.
 */
static const char *plain_value(const char *p, const char *end, int depth)
{
    if (p == end || depth > 32)
        return NULL;
    if (*p == '"') {
        p++;
        return plain_string(&p, end) ? p : NULL;
    }
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p++;
        if (p < end && *p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                if (p == end || *p++ != '"' || plain_string(&p, end) == NULL || p == end ||
                    *p++ != ':')
                    return NULL;
            }
            if ((p = plain_value(p, end, depth + 1)) == NULL || p == end)
                return NULL;
            if (*p == close)
                return p + 1;
            if (*p++ != ',')
                return NULL;
        }
    }
    if (lit(&p, end, "true", 4) || lit(&p, end, "false", 5) || lit(&p, end, "null", 4))
        return p;
    int64_t v;
    lit(&p, end, "-", 1);
    return scan_uint(&p, end, &v) ? p : NULL;
}

int proto_scan_run(char *text, size_t n, struct proto_run *out)
{
    enum {
        K_OP,
        K_ID,
        K_PLUGIN,
        K_FUNCTION,
        K_PARAMS,
        K_CONFIG,
        K_MACHINE,
        K_PRE,
        K_POST,
        K_HOOK_DIR,
        K_SSH_KEY,
        K_TASK,
        K_ATTEMPT,
        K_DEPTH,
        K_TIMEOUT,
        K_DEADLINE,
        K_N
    };
    static const struct plain_key keys[K_N] = {
        PLAIN_KEY("op"),       PLAIN_KEY("id"),       PLAIN_KEY("plugin"),
        PLAIN_KEY("function"), PLAIN_KEY("params"),   PLAIN_KEY("config"),
        PLAIN_KEY("machine"),  PLAIN_KEY("pre_hook"), PLAIN_KEY("post_hook"),
        PLAIN_KEY("hook_dir"), PLAIN_KEY("ssh_key"),  PLAIN_KEY("task"),
        PLAIN_KEY("attempt"),  PLAIN_KEY("depth"),    PLAIN_KEY("timeout_ms"),
        PLAIN_KEY("deadline")};
    /* What each holds: a string (s), an object (o) or an integer (i); at most max bytes
     * (0: any) or max. The first four are required. */
    static const char kind[K_N + 1] = "sissooosssssiiii";
    static const int64_t max[K_N] = {0,   INT64_MAX, 4096, 256,       0,        0, 0, 0, 0, 4096, 0,
                                     256, INT32_MAX, 1000, INT64_MAX, INT64_MAX};
    const char *str[K_N] = {0}, *ends[K_N] = {0}; /* a string's text and its closing quote */
    const char *obj[K_N] = {0}, *obj_end[K_N] = {0};
    int64_t num[K_N] = {0};
    unsigned seen = 0;
    const char *p = text, *end = text + n;
    if (!lit(&p, end, "{", 1))
        return 0;
    for (int first = 1;; first = 0) {
        if (!first && lit(&p, end, "}", 1))
            break;
        if (!first && !lit(&p, end, ",", 1))
            return 0;
        int k = plain_member(&p, end, keys, K_N, &seen);
        if (k < 0)
            return 0;
        if (k > K_FUNCTION && kind[k] != 'i' && lit(&p, end, "null", 4))
            continue; /* an optional member given as null: absent */
        if (kind[k] == 's') {
            if (!lit(&p, end, "\"", 1))
                return 0;
            str[k] = p;
            if ((ends[k] = plain_string(&p, end)) == NULL || (max[k] && ends[k] - str[k] > max[k]))
                return 0;
        } else if (kind[k] == 'o') {
            if (p == end || *p != '{' || (obj_end[k] = plain_value(p, end, 0)) == NULL)
                return 0;
            obj[k] = p;
            p = obj_end[k];
        } else if (!scan_uint(&p, end, &num[k]) || num[k] > max[k]) {
            return 0;
        }
    }
    unsigned needed = 1u << K_OP | 1u << K_ID | 1u << K_PLUGIN | 1u << K_FUNCTION;
    if (p != end || (seen & needed) != needed || ends[K_OP] - str[K_OP] != 3 ||
        memcmp(str[K_OP], "run", 3) != 0)
        return 0;
    json_t *parsed[K_N] = {0};
    for (int k = K_PARAMS; k <= K_CONFIG; k++) {
        if (obj[k] && obj_end[k] - obj[k] > 2 &&
            (parsed[k] = json_loadb(obj[k], (size_t)(obj_end[k] - obj[k]), 0, NULL)) == NULL) {
            json_decref(parsed[K_PARAMS]); /* out of memory: the general way says so */
            return 0;
        }
    }
    /* Plain and whole: from here on the text is taken apart, each string ended at its
     * closing quote, the machine at the ',' or '}' after it. */
    for (int k = 0; k < K_N; k++)
        if (ends[k])
            text[ends[k] - text] = '\0';
    if (obj[K_MACHINE])
        text[obj_end[K_MACHINE] - text] = '\0';
    *out = (struct proto_run){.id = num[K_ID],
                              .deadline_ms = num[K_DEADLINE],
                              .spec = {.plugin = str[K_PLUGIN],
                                       .function = str[K_FUNCTION],
                                       .params = parsed[K_PARAMS],
                                       .config = parsed[K_CONFIG],
                                       .machine_json = obj[K_MACHINE],
                                       .pre_hook = str[K_PRE],
                                       .post_hook = str[K_POST],
                                       .hook_dir = str[K_HOOK_DIR],
                                       .ssh_key = str[K_SSH_KEY],
                                       .task_id = str[K_TASK],
                                       .attempt = (int)num[K_ATTEMPT],
                                       .depth = (int)num[K_DEPTH],
                                       .timeout_ms = num[K_TIMEOUT]}};
    return 1;
}

int proto_parse_reply(const json_t *msg, struct proto_reply *out, char *err, size_t errlen)
{
    struct rd r;
    memset(out, 0, sizeof(*out));
    if (begin(&r, msg, PROTO_REPLY, err, errlen) != 0)
        return -1;
    out->kind = get_kind(&r, OUTCOME_INVALID, 0);
    out->result = get_any(&r, "result");
    out->vault = get_obj(&r, "vault", 0);
    get_error(&r, &out->code, &out->message);
    return end(&r);
}

int proto_parse_log(const json_t *msg, struct proto_log *out, char *err, size_t errlen)
{
    struct rd r;
    memset(out, 0, sizeof(*out));
    if (begin(&r, msg, PROTO_LOG, err, errlen) != 0)
        return -1;
    out->id = get_id(&r);
    out->level = get_str(&r, "level", 1, 16);
    out->text = get_str(&r, "text", 1, PROTO_LOG_MAX);
    return end(&r);
}

int proto_parse_progress(const json_t *msg, struct proto_progress *out, char *err,
                         size_t errlen)
{
    struct rd r;
    memset(out, 0, sizeof(*out));
    if (begin(&r, msg, PROTO_PROGRESS, err, errlen) != 0)
        return -1;
    out->id = get_id(&r);
    out->percent = (int)get_int(&r, "percent", 1, -1, 100, -1);
    out->message = get_str(&r, "message", 0, PROTO_LOG_MAX);
    return end(&r);
}

int proto_parse_call(const json_t *msg, struct proto_call *out, char *err, size_t errlen)
{
    struct rd r;
    memset(out, 0, sizeof(*out));
    if (begin(&r, msg, PROTO_CALL, err, errlen) != 0)
        return -1;
    out->id = get_id(&r);
    out->function = get_str(&r, "function", 1, 256);
    out->params = get_obj(&r, "params", 0);
    return end(&r);
}

int proto_parse_storage(const json_t *msg, struct proto_storage *out, char *err, size_t errlen)
{
    struct rd r;
    memset(out, 0, sizeof(*out));
    if (begin(&r, msg, PROTO_STORAGE, err, errlen) != 0)
        return -1;
    out->id = get_id(&r);
    out->name = get_str(&r, "name", 1, 256);
    return end(&r);
}

int proto_parse_skip(const json_t *msg, struct proto_skip *out, char *err, size_t errlen)
{
    struct rd r;
    memset(out, 0, sizeof(*out));
    if (begin(&r, msg, PROTO_SKIP, err, errlen) != 0)
        return -1;
    out->id = get_id(&r);
    return end(&r);
}

int proto_parse_pgroup(const json_t *msg, struct proto_pgroup *out, char *err, size_t errlen)
{
    struct rd r;
    memset(out, 0, sizeof(*out));
    if (begin(&r, msg, PROTO_PGROUP, err, errlen) != 0)
        return -1;
    out->id = get_id(&r);
    out->pgid = get_int(&r, "pgid", 1, 2, INT32_MAX, 0); /* never 0, 1 or a negative */
    return end(&r);
}

int proto_parse_exit(const json_t *msg, struct proto_exit *out, char *err, size_t errlen)
{
    struct rd r;
    memset(out, 0, sizeof(*out));
    if (begin(&r, msg, PROTO_EXIT, err, errlen) != 0)
        return -1;
    out->id = get_id(&r);
    out->status = (int)get_int(&r, "status", 1, INT32_MIN, INT32_MAX, 0);
    const json_t *loading = json_object_get(msg, "loading");
    if (loading && !json_is_boolean(loading))
        bad(&r, "\"loading\" must be true or false");
    out->loading = json_is_true(loading);
    return end(&r);
}

int proto_parse_done(const json_t *msg, struct proto_done *out, char *err, size_t errlen)
{
    struct rd r;
    memset(out, 0, sizeof(*out));
    if (begin(&r, msg, PROTO_DONE, err, errlen) != 0)
        return -1;
    out->id = get_id(&r);
    out->kind = get_kind(&r, OUTCOME_INVALID, 1);
    out->result = get_any(&r, "result");
    get_error(&r, &out->code, &out->message);
    out->duration_ms = get_int(&r, "duration_ms", 0, 0, INT64_MAX, 0);
    const json_t *retire = json_object_get(msg, "retire");
    if (retire && !json_is_boolean(retire))
        bad(&r, "\"retire\" must be true or false");
    out->retire = json_is_true(retire);
    const json_t *drained = json_object_get(msg, "stderr_drained");
    if (drained && !json_is_boolean(drained))
        bad(&r, "\"stderr_drained\" must be true or false");
    out->stderr_drained = json_is_true(drained);
    const json_t *skipped = json_object_get(msg, "skipped");
    if (skipped && !json_is_boolean(skipped))
        bad(&r, "\"skipped\" must be true or false");
    out->skipped = json_is_true(skipped);
    return end(&r);
}

int proto_parse_probe(const json_t *msg, struct proto_probe *out, char *err, size_t errlen)
{
    struct rd r;
    memset(out, 0, sizeof(*out));
    if (begin(&r, msg, PROTO_PROBE, err, errlen) != 0)
        return -1;
    out->stage = get_str(&r, "stage", 1, 32);
    out->result = get_obj(&r, "result", 0);
    out->reason = get_str(&r, "reason", 0, 0);
    return end(&r);
}

/* --- where hooks run ------------------------------------------------------------------- */

/* Length of the placeholder name at p (after '{'), up to its '}'; 0 when malformed. */
static size_t placeholder(const char *p)
{
    size_t n = 0;
    if (!(p[0] >= 'a' && p[0] <= 'z') && p[0] != '_')
        return 0;
    while ((p[n] >= 'a' && p[n] <= 'z') || (p[n] >= '0' && p[n] <= '9') || p[n] == '_')
        n++;
    return p[n] == '}' && n <= 64 ? n : 0;
}

int proto_hook_dir_valid(const char *tmpl, char *err, size_t errlen)
{
    size_t len = tmpl ? strlen(tmpl) : 0;
    if (len == 0 || len > PROTO_HOOK_DIR_MAX) {
        snprintf(err, errlen, "hook_dir must be 1 to %d bytes", PROTO_HOOK_DIR_MAX);
        return -1;
    }
    for (const char *p = tmpl; *p; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) {
            snprintf(err, errlen, "hook_dir must be printable ASCII");
            return -1;
        }
        if (*p == '}') {
            snprintf(err, errlen, "hook_dir has a '}' without its '{'");
            return -1;
        }
        if (*p == '{') {
            size_t n = placeholder(p + 1);
            if (n == 0) {
                snprintf(err, errlen, "hook_dir placeholder at byte %zu is not {name}",
                         (size_t)(p - tmpl));
                return -1;
            }
            p += n + 1;
        }
    }
    return 0;
}

char *proto_hook_dir(const char *tmpl, const json_t *machine, const json_t *params)
{
    char err[128];
    if (tmpl == NULL || proto_hook_dir_valid(tmpl, err, sizeof(err)) != 0)
        return NULL;
    size_t cap = 256, len = 0;
    char *out = malloc(cap);
    for (const char *p = tmpl; out && *p;) {
        const char *piece = p;
        size_t n = 1;
        char name[72];
        if (*p == '{') {
            size_t k = placeholder(p + 1);
            snprintf(name, sizeof(name), "%.*s", (int)k, p + 1);
            const json_t *v = strcmp(name, "datastore") == 0 ? json_object_get(machine, name)
                                                              : json_object_get(params, name);
            piece = json_string_value(v);
            /* An unset or empty value, or one that could climb out, matches nothing. */
            if (piece == NULL || piece[0] == 0 || strstr(piece, "..") != NULL) {
                free(out);
                return NULL;
            }
            n = strlen(piece);
            p += k + 2;
        } else {
            p++;
        }
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *bigger = realloc(out, cap);
            if (bigger == NULL) {
                free(out);
                return NULL;
            }
            out = bigger;
        }
        memcpy(out + len, piece, n);
        len += n;
    }
    if (out)
        out[len] = 0;
    return out;
}
