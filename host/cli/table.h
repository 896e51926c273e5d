/*
 * Text tables fitted to the terminal (docs/cli.md, "Output"). cli_print_table (cli.h) is
 * the one commands call; this is the same with the style given, for output that is built
 * before it is written (dashboard --watch draws a whole frame at once).
 *
 * A table wider than the style's limit is fitted: task ids show their first 8 characters
 * and times their first 16 (to the minute), free text is cut with "…" (down to 12 columns),
 * and when that is still too wide, the columns least needed go first (bridge and region,
 * then creation times, retries and versions, then team), and those go before a name (name,
 * teamName …) is cut; status words and numbers are never cut, nor queue trace's timeline
 * details. --wide (no limit) shows every column whole.
 */
#ifndef FERRY_TABLE_H
#define FERRY_TABLE_H

#include <jansson.h>
#include <stdio.h>

#include "term_text.h"

/* Prints rows (objects) as a table of cols ({header, key} pairs ended by {NULL, NULL})
 * to out in style: a header, a rule of dashes, one line per row. Nothing is stolen. */
void table_render(FILE *out, const json_t *rows, const char *const cols[][2],
                  const struct term_style *style);

#endif
