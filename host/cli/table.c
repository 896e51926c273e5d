/*
 * Text tables fitted to the terminal's width (table.h), and cli_print_table (cli.h).
 */
#include "table.h"

#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

/* How a column gives way when the table is too wide: cut with "…" (TEXT), never (WHOLE),
 * or shown as a prefix that still means something (PREFIX: a task id's first 8 characters
 * work wherever a task id is taken; a time's first 16 are the minute). */
enum col_kind { TEXT, WHOLE, PREFIX };

/* Columns by JSON key: whole (never cut) and the order in which they go when even the cut
 * table is too wide (1 first; 0 never). Keys not listed are cut text that stays. The
 * details of queue trace's timeline (detailsText) are its whole story, read by people and
 * by grep: never cut or dropped, they may take the line past the limit (whole 2: fitting
 * counts only their header). */
static const struct col_rule {
    const char *key;
    int whole, drop;
} col_rules[] = {
    {"status", 1, 0},     {"healthStatus", 1, 6}, {"priorityLabel", 1, 0},
    {"state", 1, 0},      {"role", 1, 0},         {"action", 1, 0},
    {"enabled", 1, 0},    {"cron", 1, 0},         {"provider", 1, 0},
    {"bridgeName", 0, 1}, {"regionName", 0, 1},   {"createdTime", 0, 2},
    {"createdBy", 0, 2},  {"lastRun", 0, 2},      {"lastUsedAddress", 0, 2},
    {"retryCount", 0, 3}, {"vaultVersion", 0, 3}, {"version", 0, 3},
    {"teamName", 0, 4},   {"nextRun", 0, 5},      {"detailsText", 2, 0},
};

/* Free text is cut to no fewer columns than this (or its header's). */
#define TEXT_MIN 12

struct col {
    const char *key;
    enum col_kind kind;
    size_t natural, min, width, compact;
    int drop, shown, overflow;
    int ident; /* a name (name, teamName …): cut only once no column is left to drop */
};

static char *cell_text(const json_t *v)
{
    if (v == NULL || json_is_null(v))
        return xstrdup("-");
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_true(v))
        return xstrdup("yes");
    if (json_is_false(v))
        return xstrdup("no");
    if (json_is_real(v))
        return xasprintf("%.1f", json_real_value(v));
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static int is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++)
        if (i == 8 || i == 13 || i == 18 || i == 23 ? s[i] != '-'
                                                    : !strchr("0123456789abcdef", s[i]))
            return 0;
    return 1;
}

/* An ISO 8601 time as the store writes them: 2026-11-28T13:29:40.147Z. */
static int is_time(const char *s)
{
    static const char form[] = "dddd-dd-ddTdd:dd";
    if (strlen(s) < sizeof(form))
        return 0;
    for (size_t i = 0; i + 1 < sizeof(form); i++)
        if (form[i] == 'd' ? s[i] < '0' || s[i] > '9' : s[i] != form[i])
            return 0;
    return 1;
}

/* The kind of column key from its rule and its cells (JSON values of every row). */
static void classify(struct col *c, const json_t *rows)
{
    c->kind = TEXT;
    for (size_t i = 0; i < sizeof(col_rules) / sizeof(col_rules[0]); i++)
        if (strcmp(col_rules[i].key, c->key) == 0) {
            c->kind = col_rules[i].whole ? WHOLE : TEXT;
            c->overflow = col_rules[i].whole == 2;
            c->drop = col_rules[i].drop;
        }
    if (c->kind == WHOLE)
        return;
    size_t klen = strlen(c->key);
    c->ident = strcmp(c->key, "name") == 0 ||
               (klen > 4 && strcmp(c->key + klen - 4, "Name") == 0);
    int numbers = 1, uuids = 1, times = 1, any = 0;
    size_t i;
    const json_t *row;
    json_array_foreach (rows, i, row) {
        const json_t *v = json_object_get(row, c->key);
        if (v == NULL || json_is_null(v))
            continue;
        any = 1;
        if (!json_is_number(v) && !json_is_boolean(v))
            numbers = 0;
        if (!json_is_string(v) || !is_uuid(json_string_value(v)))
            uuids = 0;
        if (!json_is_string(v) || !is_time(json_string_value(v)))
            times = 0;
    }
    if (any && numbers)
        c->kind = WHOLE;
    else if (any && (uuids || times)) {
        c->kind = PREFIX;
        c->compact = uuids ? 8 : 16;
    }
}

/* The width of the shown columns: each at its width (use_min 0), at its minimum (1), or at
 * its minimum but names whole (2). */
static size_t total(const struct col *c, size_t n, int use_min)
{
    size_t sum = 0, shown = 0;
    for (size_t j = 0; j < n; j++)
        if (c[j].shown) {
            int least = (use_min == 1 || (use_min == 2 && !c[j].ident)) || c[j].overflow;
            sum += least ? c[j].min : c[j].width;
            shown++;
        }
    return sum + (shown ? 2 * (shown - 1) : 0);
}

/* The droppable shown column to go next (lowest rank, the rightmost of a tie), or -1. */
static int next_drop(const struct col *c, size_t n)
{
    int best = -1;
    for (size_t j = 0; j < n; j++)
        if (c[j].shown && c[j].drop && (best < 0 || c[j].drop <= c[best].drop))
            best = (int)j;
    return best;
}

/* Sets every column's width (and which are shown) to fit limit; see table.h. */
static void fit(struct col *c, size_t n, size_t limit)
{
    for (size_t j = 0; j < n; j++)
        c[j].width = c[j].natural;
    if (limit == 0 || total(c, n, 0) <= limit)
        return;
    /* Names are what people type back: columns go before a name is cut. */
    int d;
    while (total(c, n, 2) > limit && (d = next_drop(c, n)) >= 0)
        c[d].shown = 0;
    /* Still too wide (a narrow terminal): the rightmost columns go, then the one left is
     * cut to the limit. */
    for (size_t j = n; total(c, n, 1) > limit && j-- > 1;)
        if (!c[j].overflow)
            c[j].shown = 0;
    size_t used = total(c, n, 1);
    if (used > limit) {
        size_t rest = used - c[0].min;
        c[0].min = limit > rest + 1 ? limit - rest : 1;
        used = total(c, n, 1);
    }
    size_t extra = used < limit ? limit - used : 0;
    for (size_t j = 0; j < n; j++)
        c[j].width = c[j].min;
    /* The room left goes to names first, then to cut text, a column at a time, then to
     * whole ids and times. */
    for (size_t j = 0; j < n; j++)
        if (c[j].shown && c[j].ident && c[j].natural - c[j].width <= extra) {
            extra -= c[j].natural - c[j].width;
            c[j].width = c[j].natural;
        }
    for (int grew = 1; extra > 0 && grew;) {
        grew = 0;
        for (size_t j = 0; j < n && extra > 0; j++)
            if (c[j].shown && c[j].kind == TEXT && c[j].width < c[j].natural) {
                c[j].width++;
                extra--;
                grew = 1;
            }
    }
    for (size_t j = 0; j < n; j++)
        if (c[j].shown && c[j].kind == PREFIX && c[j].natural - c[j].width <= extra) {
            extra -= c[j].natural - c[j].width;
            c[j].width = c[j].natural;
        }
    for (size_t j = 0; j < n; j++)
        if (c[j].overflow)
            c[j].width = c[j].natural;
}

static int coloured_key(const char *key)
{
    return !strcmp(key, "status") || !strcmp(key, "healthStatus") || !strcmp(key, "state") ||
           !strcmp(key, "action");
}

/* Writes one cell (clean text, width columns wide) at col's width; the last column gets no
 * padding. */
static void put_cell(FILE *out, const struct col *c, const char *clean, size_t width, int header,
                     int last, const struct term_style *st)
{
    char *cut = NULL;
    if (width > c->width && c->kind == PREFIX && !header && c->width >= c->compact)
        cut = term_fit(clean, c->compact, 0);
    else if (width > c->width)
        cut = term_fit(clean, c->width, 1);
    const char *text = cut ? cut : clean;
    if (cut)
        width = term_width(cut);
    enum colour colour =
        st->colour && !header && coloured_key(c->key) ? colour_of_word(text) : COLOUR_NONE;
    if (colour != COLOUR_NONE)
        fprintf(out, "%s%s%s", colour_start(colour), text, COLOUR_END);
    else
        fputs(text, out);
    static const char spaces[] = "                                ";
    for (size_t pad = last ? 0 : c->width + 2 - width; pad > 0;) {
        size_t chunk = pad < sizeof(spaces) - 1 ? pad : sizeof(spaces) - 1;
        fwrite(spaces, 1, chunk, out);
        pad -= chunk;
    }
    free(cut);
}

void table_render(FILE *out, const json_t *rows, const char *const cols[][2],
                  const struct term_style *style)
{
    size_t n = 0, nrows = json_array_size(rows);
    while (cols[n][0] != NULL)
        n++;
    struct col *c = calloc(n, sizeof(*c));
    char **cells = calloc((nrows + 1) * n, sizeof(*cells));
    size_t *widths = calloc((nrows + 1) * n, sizeof(*widths));
    if (c == NULL || cells == NULL || widths == NULL)
        abort();
    for (size_t j = 0; j < n; j++) {
        c[j] = (struct col){.key = cols[j][1], .shown = 1};
        classify(&c[j], rows);
        cells[j] = term_clean(cols[j][0]);
        size_t head = widths[j] = term_width(cells[j]);
        c[j].natural = head;
        for (size_t i = 0; i < nrows; i++) {
            char *raw = cell_text(json_object_get(json_array_get(rows, i), cols[j][1]));
            size_t k = (i + 1) * n + j;
            if (term_is_plain(raw)) {
                cells[k] = raw;
                widths[k] = strlen(raw);
            } else {
                cells[k] = term_clean(raw);
                widths[k] = term_width(cells[k]);
                free(raw);
            }
            if (widths[k] > c[j].natural)
                c[j].natural = widths[k];
        }
        c[j].min = c[j].kind == WHOLE    ? c[j].natural
                   : c[j].kind == PREFIX ? (head > c[j].compact ? head : c[j].compact)
                                         : (head > TEXT_MIN ? head : TEXT_MIN);
        if (c[j].min > c[j].natural)
            c[j].min = c[j].natural;
        if (c[j].overflow)
            c[j].min = head;
    }
    fit(c, n, style->limit);
    size_t last = 0;
    for (size_t j = 0; j < n; j++)
        if (c[j].shown)
            last = j;
    for (size_t i = 0; i <= nrows; i++) {
        for (size_t j = 0; j < n; j++)
            if (c[j].shown)
                put_cell(out, &c[j], cells[i * n + j], widths[i * n + j], i == 0, j == last, style);
        fputc('\n', out);
        if (i == 0) {
            for (size_t j = 0; j < n; j++) {
                if (!c[j].shown)
                    continue;
                for (size_t k = 0; k < c[j].width; k++)
                    fputc('-', out);
                if (j != last)
                    fputs("  ", out);
            }
            fputc('\n', out);
        }
    }
    for (size_t i = 0; i < (nrows + 1) * n; i++)
        free(cells[i]);
    free(cells);
    free(widths);
    free(c);
}

void cli_print_table(FILE *out, const json_t *rows, const char *const cols[][2])
{
    struct term_style style = term_style_for(out);
    table_render(out, rows, cols, &style);
}
