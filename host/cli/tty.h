/*
 * Terminal helpers for the command line (tty.c): whether a stream is a terminal, its width,
 * and text from the store (a plugin's progress message, an event's details) made safe to
 * print as one line: no control characters or escape sequences, valid UTF-8, cut to a
 * number of columns.
 */
#ifndef FERRY_TTY_H
#define FERRY_TTY_H

#include <stddef.h>

/* The columns of the terminal fd is, or 0 when fd is not a terminal. A terminal that does
 * not say (a pty of size 0) gives $COLUMNS when it is a number, else 80. */
int tty_columns(int fd);

/*
 * Writes text into out (outlen bytes, at least 8) as one printable line: escape sequences
 * (ESC [ … final byte, ESC ] … BEL or ESC \) and every other C0 or C1 control character and
 * DEL are dropped, a tab or newline becomes a space, a byte that is not part of valid UTF-8
 * becomes '?'. When the text is wider than max_cols columns (0: no limit other than outlen)
 * it is cut at a character boundary and ends with "…" within max_cols. East Asian wide
 * characters count two columns, combining marks none. text NULL is "". Returns the columns
 * out takes.
 */
int tty_clean_line(const char *text, char *out, size_t outlen, int max_cols);

#endif
