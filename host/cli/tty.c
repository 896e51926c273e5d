/*
 * Terminal helpers (tty.h). Text shown on a terminal comes from plugins and people: a
 * progress message may carry escape sequences that would move the cursor, retitle the
 * window or hide what follows, so everything a live line shows goes through
 * tty_clean_line first.
 */
#include "tty.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int tty_columns(int fd)
{
    if (!isatty(fd))
        return 0;
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *env = getenv("COLUMNS");
    char *end;
    long n = env ? strtol(env, &end, 10) : 0;
    return env && *end == '\0' && n > 0 && n < 10000 ? (int)n : 80;
}

/* Decodes one UTF-8 character at p (n bytes left) into *cp; returns its length, or 0 when
 * the bytes there are not valid UTF-8 (overlong forms, surrogates and values past U+10FFFF
 * included). */
static size_t utf8_decode(const unsigned char *p, size_t n, unsigned *cp)
{
    static const unsigned min_of[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t len = p[0] < 0x80             ? 1
                 : (p[0] & 0xe0) == 0xc0 ? 2
                 : (p[0] & 0xf0) == 0xe0 ? 3
                 : (p[0] & 0xf8) == 0xf0 ? 4
                                         : 0;
    if (len == 0 || len > n)
        return 0;
    unsigned v = len == 1 ? p[0] : p[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3f);
    }
    if (v < min_of[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

/* Columns a printable character takes: 0 for combining marks, 2 for East Asian wide and
 * emoji ranges, else 1. */
static int char_columns(unsigned cp)
{
    if ((cp >= 0x300 && cp <= 0x36f) || (cp >= 0x200b && cp <= 0x200f) || cp == 0xfeff)
        return 0;
    if ((cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) ||
        (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) ||
        (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
        (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x1f300 && cp <= 0x1faff) ||
        (cp >= 0x20000 && cp <= 0x3fffd))
        return 2;
    return 1;
}

/* The length of the escape sequence starting with ESC at p (n bytes left). */
static size_t escape_length(const unsigned char *p, size_t n)
{
    size_t i;
    if (n < 2)
        return n;
    if (p[1] == '[') { /* CSI: parameters and intermediates, then a final byte */
        for (i = 2; i < n && !(p[i] >= 0x40 && p[i] <= 0x7e); i++)
            ;
        return i < n ? i + 1 : n;
    }
    if (p[1] == ']' || p[1] == 'P' || p[1] == '_' || p[1] == '^') { /* strings: to BEL or ST */
        for (i = 2; i < n; i++) {
            if (p[i] == 0x07)
                return i + 1;
            if (p[i] == 0x1b && i + 1 < n && p[i + 1] == '\\')
                return i + 2;
        }
        return n;
    }
    return 2; /* ESC and one character */
}

int tty_clean_line(const char *text, char *out, size_t outlen, int max_cols)
{
    static const char ellipsis[] = "\xe2\x80\xa6";
    const unsigned char *p = (const unsigned char *)(text ? text : "");
    size_t n = strlen((const char *)p), o = 0;
    int cols = 0;
    /* Where the text would be cut if what follows does not fit: room for the ellipsis. */
    size_t cut_o = 0;
    int cut_cols = 0, limit = max_cols > 0 ? max_cols : -1;
    for (size_t i = 0; i < n;) {
        unsigned cp = '?';
        size_t len = utf8_decode(p + i, n - i, &cp);
        if (len == 0) {
            len = 1; /* a stray byte: shown as '?' */
            cp = '?';
        } else if (cp == 0x1b) {
            i += escape_length(p + i, n - i);
            continue;
        } else if (cp == '\t' || cp == '\n' || cp == '\r') {
            cp = ' ';
        } else if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f)) {
            i += len;
            continue;
        }
        int w = char_columns(cp);
        size_t bytes = cp == '?' || cp == ' ' ? 1 : len;
        /* Keep room for the ellipsis (1 column, 3 bytes) and the terminating NUL. */
        if (cols + w <= (limit < 0 ? cols + w : limit - 1) && o + bytes + 4 <= outlen) {
            cut_o = o + bytes;
            cut_cols = cols + w;
        }
        if ((limit >= 0 && cols + w > limit) || o + bytes + 1 > outlen) {
            o = cut_o;
            cols = cut_cols;
            if (o + sizeof(ellipsis) <= outlen && (limit < 0 || cols + 1 <= limit)) {
                memcpy(out + o, ellipsis, sizeof(ellipsis) - 1);
                o += sizeof(ellipsis) - 1;
                cols++;
            }
            break;
        }
        if (bytes == 1)
            out[o] = (char)cp;
        else
            memcpy(out + o, p + i, len);
        o += bytes;
        cols += w;
        i += len;
    }
    out[o] = '\0';
    return cols;
}
