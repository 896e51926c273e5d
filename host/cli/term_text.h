/*
 * Text for the terminal (docs/cli.md, "Output"): store contents made safe to print raw and
 * measured in terminal columns, cut to a width with an ellipsis, and lines built within the
 * width a table may use. Whatever a name, message or progress line holds (escape sequences,
 * invalid UTF-8, wide CJK text, bidi controls), what these functions hand back prints as
 * text and measures as the terminal will draw it, so columns stay aligned.
 */
#ifndef FERRY_TERM_TEXT_H
#define FERRY_TERM_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "colour.h"

/* The width tables fit into unless --wide, or a narrower terminal says otherwise. */
#define TERM_DEFAULT_WIDTH 100

/* How text goes to one stream. */
struct term_style {
    size_t limit; /* columns a line may use; 0: no limit (--wide) */
    int colour;   /* colour_wanted() of the stream */
};

/* --wide on the command line (cli_main): tables show every column, nothing cut. */
void term_set_wide(int wide);

/* The columns of the terminal fd is, or 0 when fd is not a terminal. A terminal that does
 * not say (a pty of size 0) gives $COLUMNS when it is a number, else fallback. */
size_t term_columns(int fd, size_t fallback);

/* The style of output to f: no limit with --wide; else TERM_DEFAULT_WIDTH, or the width of
 * the terminal f is (term_columns) when that is narrower (at least 40). Colour as
 * colour_wanted(f). */
struct term_style term_style_for(FILE *f);

/*
 * A copy of s (NULL: "") that is safe to print: newline, tab and carriage return become a
 * space; other control characters are written as C escapes (\x1b, \u009b), as are the
 * invisible format characters that reorder or hide text (bidi overrides, zero-width
 * spaces, line separators); each byte of invalid UTF-8 becomes U+FFFD. The caller frees it.
 */
char *term_clean(const char *s);

/* Decodes the UTF-8 sequence at s (avail bytes left) into *cp; returns its length, or 0
 * when s does not start a valid one (a stray continuation byte, an overlong form, a
 * surrogate, past U+10FFFF, or cut short). A NUL-terminated s may give SIZE_MAX: the NUL
 * is never a continuation byte. */
size_t term_utf8_decode(const unsigned char *s, size_t avail, uint32_t *cp);

/* Whether cp changes how the text around it shows without showing itself: C1 controls,
 * zero-width and joining characters, line and paragraph separators, bidi controls, the
 * byte order mark, interlinear annotations, tags. term_clean writes them as \uHHHH. */
int term_cp_hidden(uint32_t cp);

/* Whether s is printable ASCII only: clean as it is, as wide as it is long. */
int term_is_plain(const char *s);

/* The columns clean text (term_clean's) takes on a terminal: East Asian wide characters
 * count 2, combining marks 0, everything else 1. */
size_t term_width(const char *clean);

/* A copy of clean text cut to at most max columns, never inside a character: when cut,
 * the last column is "…" if ellipsis, else the text just stops. The caller frees it. */
char *term_fit(const char *clean, size_t max, int ellipsis);

/* Any text (NULL: "") as one line that is safe to print and at most max columns (0: no
 * limit): term_clean, then term_fit with "…" when cut. A live status line and a followed
 * event are printed this way. The caller frees it. */
char *term_clean_fit(const char *s, size_t max);

/*
 * One output line built piece by piece within a style's limit: each piece is cleaned, cut
 * to its own cap and to what is left of the line (ending with "…" when cut), and coloured
 * when the style has colour. Once the line is full, further pieces are dropped. The line's
 * buffer is the caller's until term_line_end.
 */
struct term_line {
    const struct term_style *style;
    char *buf;
    size_t len, cap, width;
};
void term_line_init(struct term_line *l, const struct term_style *style);
/* Adds text, at most max columns (0: no cap of its own; with --wide caps are ignored). */
void term_line_put(struct term_line *l, const char *text, size_t max, enum colour colour);
/* Adds a formatted piece, uncoloured, with no cap of its own. */
void term_line_printf(struct term_line *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Pads with spaces to column col (nothing when already there or past it). */
void term_line_pad(struct term_line *l, size_t col);
/* Writes the line and a newline to out, and frees the buffer. */
void term_line_end(struct term_line *l, FILE *out);

/* A piece of a sentence-like line (term_pieces). */
struct term_piece {
    const char *text; /* NULL: "" */
    size_t cap;       /* the columns it is cut to when the whole line does not fit; 0: none */
    enum colour colour;
    int prefix; /* cut with no "…" (a task id's prefix is still a task id) */
};
/* Pieces: plain text; text cut to N columns; a task id (its first 8 characters); coloured. */
// clang-format off
#define TERM_TEXT(t)      {.text = (t)}
#define TERM_CAP(t, n)    {.text = (t), .cap = (n)}
#define TERM_ID(t)        {.text = (t), .cap = 8, .prefix = 1}
#define TERM_COLOUR(t, c) {.text = (t), .colour = (c)}
// clang-format on
/* Writes n pieces as one line: whole when that fits the style's limit; else each piece cut
 * to its cap and the line to the limit. */
void term_pieces(FILE *out, const struct term_style *style, const struct term_piece *pieces,
                 size_t n);

#endif
