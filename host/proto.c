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
