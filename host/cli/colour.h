/*
 * Colour on the terminal (docs/cli.md, "Output"): status words, failures and warnings are
 * coloured only when the stream is a terminal, NO_COLOR is unset or empty
 * (https://no-color.org) and TERM is set and not "dumb". JSON output never is: commands
 * print it without asking.
 */
#ifndef FERRY_COLOUR_H
#define FERRY_COLOUR_H

#include <stdio.h>

enum colour {
    COLOUR_NONE,
    COLOUR_GREEN,  /* done well: COMPLETED, alive, loaded */
    COLOUR_RED,    /* failed: FAILED, REFUSED, an error */
    COLOUR_YELLOW, /* needs a look: STALE, CANCELLING, a warning */
    COLOUR_CYAN,   /* in motion: PROCESSING, ACTIVE, ASSIGNED */
    COLOUR_DIM,    /* over and unremarkable: CANCELLED, stopped, revoked */
};

/* Whether colour goes to f (see above). */
int colour_wanted(FILE *f);

/* The colour of a status word (an item's status or health, a host's or plugin's state, a
 * timeline action), or COLOUR_NONE for any other text. */
enum colour colour_of_word(const char *word);

/* The SGR sequence that starts colour (COLOUR_NONE: ""), and the one that ends it. */
const char *colour_start(enum colour colour);
#define COLOUR_END "\033[0m"

#endif
