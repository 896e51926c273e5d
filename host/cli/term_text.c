/*
 * Text for the terminal: cleaning, measuring, cutting, lines (term_text.h).
 */
#include "term_text.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "util.h"

static int wide_flag;

/* Out of memory: abort, as xstrdup does, so callers need not check. */
static void *must(void *p)
{
    if (p == NULL)
        abort();
    return p;
}

void term_set_wide(int wide)
{
    wide_flag = wide;
}

size_t term_columns(int fd, size_t fallback)
{
    if (fd < 0 || !isatty(fd))
        return 0;
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *env = getenv("COLUMNS");
    char *end;
    long n = env ? strtol(env, &end, 10) : 0;
    return env && *end == '\0' && n > 0 && n < 10000 ? (size_t)n : fallback;
}

struct term_style term_style_for(FILE *f)
{
    struct term_style st = {.limit = wide_flag ? 0 : TERM_DEFAULT_WIDTH,
                            .colour = colour_wanted(f)};
    size_t cols = st.limit ? term_columns(fileno(f), TERM_DEFAULT_WIDTH) : 0;
    if (cols >= 40 && cols < st.limit)
        st.limit = cols;
    return st;
}

/* --- code points ------------------------------------------------------------------------ */

size_t term_utf8_decode(const unsigned char *s, size_t avail, uint32_t *cp)
{
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t n;
    uint32_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xe0) == 0xc0)
        n = 2, c &= 0x1f;
    else if ((c & 0xf0) == 0xe0)
        n = 3, c &= 0x0f;
    else if ((c & 0xf8) == 0xf0)
        n = 4, c &= 0x07;
    else
        return 0;
    if (n > avail)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < least[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

struct range {
    uint32_t lo, hi;
};

static int in_ranges(uint32_t cp, const struct range *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cp >= r[i].lo && cp <= r[i].hi)
            return 1;
    return 0;
}

#define IN(cp, table) in_ranges(cp, table, sizeof(table) / sizeof(table[0]))

/* Characters that change how the text around them shows without showing themselves: C1
 * controls, zero-width and joining characters, line and paragraph separators, bidi
 * embeddings, overrides and isolates, the byte order mark, interlinear annotations, tags. */
static const struct range hidden[] = {
    {0x80, 0x9f},     {0x200b, 0x200f}, {0x2028, 0x202e},   {0x2060, 0x206f},
    {0xfeff, 0xfeff}, {0xfff9, 0xfffb}, {0xe0000, 0xe007f},
};

int term_cp_hidden(uint32_t cp)
{
    return IN(cp, hidden);
}

/* East Asian Wide and Fullwidth characters, and the emoji drawn two columns wide. */
static const struct range wide[] = {
    {0x1100, 0x115f},   {0x231a, 0x231b},   {0x2329, 0x232a},   {0x23e9, 0x23ec},
    {0x23f0, 0x23f0},   {0x23f3, 0x23f3},   {0x25fd, 0x25fe},   {0x2614, 0x2615},
    {0x2648, 0x2653},   {0x267f, 0x267f},   {0x2693, 0x2693},   {0x26a1, 0x26a1},
    {0x26aa, 0x26ab},   {0x26bd, 0x26be},   {0x26c4, 0x26c5},   {0x26ce, 0x26ce},
    {0x26d4, 0x26d4},   {0x26ea, 0x26ea},   {0x26f2, 0x26f3},   {0x26f5, 0x26f5},
    {0x26fa, 0x26fa},   {0x26fd, 0x26fd},   {0x2705, 0x2705},   {0x270a, 0x270b},
    {0x2728, 0x2728},   {0x274c, 0x274c},   {0x274e, 0x274e},   {0x2753, 0x2755},
    {0x2757, 0x2757},   {0x2795, 0x2797},   {0x27b0, 0x27b0},   {0x27bf, 0x27bf},
    {0x2b1b, 0x2b1c},   {0x2b50, 0x2b50},   {0x2b55, 0x2b55},   {0x2e80, 0x303e},
    {0x3041, 0x33ff},   {0x3400, 0x4dbf},   {0x4e00, 0x9fff},   {0xa000, 0xa4cf},
    {0xa960, 0xa97f},   {0xac00, 0xd7a3},   {0xf900, 0xfaff},   {0xfe10, 0xfe19},
    {0xfe30, 0xfe6f},   {0xff00, 0xff60},   {0xffe0, 0xffe6},   {0x16fe0, 0x16fe4},
    {0x17000, 0x18aff}, {0x1b000, 0x1b2ff}, {0x1f004, 0x1f004}, {0x1f0cf, 0x1f0cf},
    {0x1f18e, 0x1f18e}, {0x1f191, 0x1f19a}, {0x1f200, 0x1f251}, {0x1f300, 0x1f64f},
    {0x1f680, 0x1f6ff}, {0x1f7e0, 0x1f7eb}, {0x1f90c, 0x1f9ff}, {0x1fa70, 0x1faff},
    {0x20000, 0x2fffd}, {0x30000, 0x3fffd},
};

/* Combining marks and the other characters drawn on the one before them. */
static const struct range zero[] = {
    {0x0300, 0x036f}, {0x0483, 0x0489}, {0x0591, 0x05bd}, {0x0610, 0x061a},
    {0x064b, 0x065f}, {0x1160, 0x11ff}, {0x1ab0, 0x1aff}, {0x1dc0, 0x1dff},
    {0x20d0, 0x20ff}, {0xfe00, 0xfe0f}, {0xfe20, 0xfe2f}, {0xe0100, 0xe01ef},
};

static size_t cp_width(uint32_t cp)
{
    if (cp < 0x300)
        return 1;
    return IN(cp, zero) ? 0 : IN(cp, wide) ? 2 : 1;
}

/* --- cleaning and measuring ------------------------------------------------------------- */

int term_is_plain(const char *s)
{
    while (*s >= 0x20 && *s < 0x7f)
        s++;
    return *s == '\0';
}

char *term_clean(const char *s)
{
    if (s == NULL)
        s = "";
    if (term_is_plain(s)) /* the usual case */
        return xstrdup(s);
    size_t n = strlen(s);
    /* At most 6 bytes out per byte in ("\u0085" from 2 bytes, "\x1b" from 1, U+FFFD's 3). */
    char *out = must(malloc(n * 6 + 1)), *o = out;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t cp;
        size_t len = term_utf8_decode(p, SIZE_MAX, &cp);
        if (len == 0) {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            p++;
            continue;
        }
        if (cp == '\n' || cp == '\t' || cp == '\r')
            *o++ = ' ';
        else if (cp < 0x20 || cp == 0x7f)
            o += sprintf(o, "\\x%02x", cp);
        else if (term_cp_hidden(cp))
            o += sprintf(o, cp > 0xffff ? "\\U%08x" : "\\u%04x", cp);
        else {
            memcpy(o, p, len);
            o += len;
        }
        p += len;
    }
    *o = '\0';
    return out;
}

size_t term_width(const char *clean)
{
    size_t w = 0;
    const unsigned char *p = (const unsigned char *)clean;
    while (*p) {
        uint32_t cp;
        size_t len = term_utf8_decode(p, SIZE_MAX, &cp);
        if (len == 0) { /* not clean text: count the byte, as term_clean would show it */
            w++;
            p++;
            continue;
        }
        w += cp_width(cp);
        p += len;
    }
    return w;
}

char *term_fit(const char *clean, size_t max, int ellipsis)
{
    if (term_width(clean) <= max)
        return xstrdup(clean);
    size_t room = ellipsis && max > 0 ? max - 1 : max, w = 0;
    const unsigned char *p = (const unsigned char *)clean;
    while (*p) {
        uint32_t cp;
        size_t len = term_utf8_decode(p, SIZE_MAX, &cp), cw;
        if (len == 0)
            len = 1, cw = 1;
        else
            cw = cp_width(cp);
        if (w + cw > room)
            break;
        w += cw;
        p += len;
    }
    size_t keep = (size_t)((const char *)p - clean);
    char *out = must(malloc(keep + 4 + 1));
    memcpy(out, clean, keep);
    size_t n = keep;
    if (ellipsis && max > 0) {
        /* A wide character that did not fit leaves one column: a space keeps the width. */
        while (w < room) {
            out[n++] = ' ';
            w++;
        }
        memcpy(out + n, "\xe2\x80\xa6", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

char *term_clean_fit(const char *s, size_t max)
{
    char *clean = term_clean(s);
    if (max == 0)
        return clean;
    char *fit = term_fit(clean, max, 1);
    free(clean);
    return fit;
}

/* --- lines ------------------------------------------------------------------------------ */

void term_line_init(struct term_line *l, const struct term_style *style)
{
    *l = (struct term_line){.style = style};
}

static void line_append(struct term_line *l, const char *text, size_t len)
{
    if (l->len + len + 1 > l->cap) {
        l->cap = (l->len + len + 1) * 2;
        l->buf = must(realloc(l->buf, l->cap));
    }
    memcpy(l->buf + l->len, text, len);
    l->len += len;
    l->buf[l->len] = '\0';
}

void term_line_put(struct term_line *l, const char *text, size_t max, enum colour colour)
{
    size_t limit = l->style->limit;
    if (limit && l->width >= limit)
        return;
    size_t cap = limit ? limit - l->width : 0;
    if (limit && max && max < cap)
        cap = max;
    char *fit = term_clean_fit(text, cap);
    size_t w = term_width(fit);
    const char *start = l->style->colour ? colour_start(colour) : "";
    if (w > 0 && start[0])
        line_append(l, start, strlen(start));
    line_append(l, fit, strlen(fit));
    if (w > 0 && start[0])
        line_append(l, COLOUR_END, strlen(COLOUR_END));
    l->width += w;
    free(fit);
}

void term_line_printf(struct term_line *l, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    term_line_put(l, buf, 0, COLOUR_NONE);
}

void term_line_pad(struct term_line *l, size_t col)
{
    size_t limit = l->style->limit;
    if (limit && col > limit)
        col = limit;
    while (l->width < col) {
        line_append(l, " ", 1);
        l->width++;
    }
}

void term_line_end(struct term_line *l, FILE *out)
{
    if (l->len)
        fwrite(l->buf, 1, l->len, out);
    fputc('\n', out);
    free(l->buf);
    l->buf = NULL;
    l->len = l->cap = l->width = 0;
}

void term_pieces(FILE *out, const struct term_style *style, const struct term_piece *pieces,
                 size_t n)
{
    size_t whole = 0;
    for (size_t i = 0; i < n; i++) {
        char *clean = term_clean(pieces[i].text);
        whole += term_width(clean);
        free(clean);
    }
    int capped = style->limit && whole > style->limit;
    struct term_line l;
    term_line_init(&l, style);
    for (size_t i = 0; i < n; i++) {
        if (capped && pieces[i].prefix && pieces[i].cap) {
            char *clean = term_clean(pieces[i].text), *cut = term_fit(clean, pieces[i].cap, 0);
            term_line_put(&l, cut, 0, pieces[i].colour);
            free(cut);
            free(clean);
        } else {
            term_line_put(&l, pieces[i].text, capped ? pieces[i].cap : 0, pieces[i].colour);
        }
    }
    term_line_end(&l, out);
}
