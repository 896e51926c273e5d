/*
 * Colour on the terminal: when to, and which (colour.h).
 */
#include "colour.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int colour_wanted(FILE *f)
{
    const char *no_colour = getenv("NO_COLOR"), *term = getenv("TERM");
    if (no_colour != NULL && no_colour[0] != '\0')
        return 0;
    if (term == NULL || term[0] == '\0' || strcmp(term, "dumb") == 0)
        return 0;
    int fd = f != NULL ? fileno(f) : -1;
    return fd >= 0 && isatty(fd);
}

static const struct {
    const char *word;
    enum colour colour;
} words[] = {
    {"COMPLETED", COLOUR_GREEN}, {"alive", COLOUR_GREEN},       {"loaded", COLOUR_GREEN},
    {"active", COLOUR_GREEN},    {"FAILED", COLOUR_RED},        {"REFUSED", COLOUR_RED},
    {"refused", COLOUR_RED},     {"STALE", COLOUR_YELLOW},      {"STALE_PENDING", COLOUR_YELLOW},
    {"stale", COLOUR_YELLOW},    {"CANCELLING", COLOUR_YELLOW}, {"RETRIED", COLOUR_YELLOW},
    {"PROCESSING", COLOUR_CYAN}, {"ACTIVE", COLOUR_CYAN},       {"ASSIGNED", COLOUR_CYAN},
    {"STARTED", COLOUR_CYAN},    {"CANCELLED", COLOUR_DIM},     {"stopped", COLOUR_DIM},
    {"revoked", COLOUR_DIM},
};

enum colour colour_of_word(const char *word)
{
    if (word == NULL)
        return COLOUR_NONE;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcmp(words[i].word, word) == 0)
            return words[i].colour;
    return COLOUR_NONE;
}

const char *colour_start(enum colour colour)
{
    switch (colour) {
    case COLOUR_GREEN:
        return "\033[32m";
    case COLOUR_RED:
        return "\033[1;31m";
    case COLOUR_YELLOW:
        return "\033[33m";
    case COLOUR_CYAN:
        return "\033[36m";
    case COLOUR_DIM:
        return "\033[2m";
    case COLOUR_NONE:
        break;
    }
    return "";
}
