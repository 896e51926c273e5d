/* Length-prefixed JSON messages between the host and its workers. */
#include "proto.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
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

int proto_send(int fd, const json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL)
        return -1;
    size_t n = strlen(text);
    char *frame = malloc(n + 4);
    if (frame == NULL) {
        free(text);
        return -1;
    }
    uint32_t len = (uint32_t)n;
    frame[0] = (char)(len & 0xff);
    frame[1] = (char)((len >> 8) & 0xff);
    frame[2] = (char)((len >> 16) & 0xff);
    frame[3] = (char)((len >> 24) & 0xff);
    memcpy(frame + 4, text, n);
    int rc = write_all(fd, frame, n + 4);
    free(frame);
    free(text);
    return rc;
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

int proto_fill(proto_reader *r, int fd)
{
    int got = 0;
    for (;;) {
        if (r->cap - r->len < 65536) {
            size_t cap = r->cap ? r->cap * 2 : 131072;
            char *nb = realloc(r->buf, cap);
            if (nb == NULL)
                return -1;
            r->buf = nb;
            r->cap = cap;
        }
        ssize_t n = read(fd, r->buf + r->len, r->cap - r->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return got;
        if (n <= 0)
            return got ? 1 : -1;
        r->len += (size_t)n;
        got = 1;
        if (r->len > PROTO_MAX_MESSAGE + 4)
            return 1;
    }
}

json_t *proto_next(proto_reader *r, int *broken)
{
    *broken = 0;
    if (r->len < 4)
        return NULL;
    uint32_t n = get_len(r->buf);
    if (n > PROTO_MAX_MESSAGE) {
        *broken = 1;
        return NULL;
    }
    if (r->len < (size_t)n + 4)
        return NULL;
    json_t *msg = json_loadb(r->buf + 4, n, JSON_DECODE_ANY, NULL);
    if (msg == NULL)
        *broken = 1;
    memmove(r->buf, r->buf + 4 + n, r->len - 4 - n);
    r->len -= 4 + (size_t)n;
    return msg;
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
