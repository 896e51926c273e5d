/*
 * create queue-items: many queue items from JSON lines, one object a line
 * ({"team","machine","bridge","vault","priority"}), read from stdin or --file as a stream.
 *
 * Each line gets the checks of create queue-item (cli_item_check). Good lines are written
 * in batches of BATCH_ITEMS inside one store transaction, so the input is never held whole
 * in memory: a batch's parsed lines, the task ids spooled to a temporary file for the
 * answer, and at most MAX_ERRORS_KEPT error texts for the JSON answer.
 *
 * All or nothing by default: one bad line and the transaction is rolled back (the rest of
 * the input is still read, to name every bad line), exit 2. With --continue the good lines
 * are committed and the bad ones reported, exit 1 when there were any.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_jsonl.h"
#include "cli_status.h"
#include "store.h"
#include "util.h"
#include "vault.h"

#define BATCH_ITEMS      10000
#define READ_CHUNK       (256u * 1024)
#define MAX_ERRORS_KEPT  1000 /* in the JSON answer; text mode prints each as it is found */
#define MAX_WARNINGS     100  /* distinct warning texts, each with its first line and count */
#define LINES_IN_MESSAGE 20   /* bad line numbers the final message lists */

/* --- reading lines ------------------------------------------------------------------------ */

/* Reads lines of at most max bytes from a stream, in chunks; a longer line is skipped. */
struct line_reader {
    FILE *in;
    char *chunk;
    size_t chunk_len, chunk_pos;
    char *line; /* the current line, NUL-terminated, without its '\n' */
    size_t len, cap, max;
    size_t too_long; /* the length of a skipped line (0: the line is whole) */
    int eof, error;
};

/*
 * Reads the next line into r->line. Returns 1 for a line (r->too_long set when it was over
 * the limit and dropped), 0 at the end of the input, -1 on a read error (errno kept).
 * A last line without '\n' is a line.
 */
static int read_line(struct line_reader *r)
{
    r->len = 0;
    r->too_long = 0;
    int got_any = 0;
    for (;;) {
        if (r->chunk_pos == r->chunk_len) {
            if (r->eof)
                break;
            r->chunk_len = fread(r->chunk, 1, READ_CHUNK, r->in);
            r->chunk_pos = 0;
            if (r->chunk_len == 0) {
                if (ferror(r->in))
                    return -1;
                r->eof = 1;
                break;
            }
        }
        got_any = 1;
        const char *start = r->chunk + r->chunk_pos;
        size_t avail = r->chunk_len - r->chunk_pos;
        const char *nl = memchr(start, '\n', avail);
        size_t take = nl ? (size_t)(nl - start) : avail;
        if (r->too_long == 0 && r->len + take <= r->max) {
            if (r->len + take + 1 > r->cap) {
                /* Grows with the longest line so far, up to the limit. */
                while (r->len + take + 1 > r->cap)
                    r->cap *= 2;
                if (r->cap > r->max + 1)
                    r->cap = r->max + 1;
                r->line = realloc(r->line, r->cap);
                if (r->line == NULL)
                    abort();
            }
            memcpy(r->line + r->len, start, take);
            r->len += take;
        } else {
            r->too_long = (r->too_long ? r->too_long : r->len) + take;
        }
        r->chunk_pos += take + (nl != NULL);
        if (nl != NULL)
            break;
    }
    r->line[r->len] = '\0';
    return got_any ? 1 : 0;
}

/* --- one run's state ----------------------------------------------------------------------- */

struct pending {
    long line;
    json_t *obj;     /* the parsed line; specs[i] borrows from it */
    json_t *secrets; /* the function's secret parameter names (sealed at rest), or NULL */
};

struct bulk {
    cli *c;
    int keep_going; /* --continue */
    int writing;    /* 0 once a bad line has ended all-or-nothing */
    int in_tx;
    struct store_item_spec specs[BATCH_ITEMS];
    struct pending pend[BATCH_ITEMS];
    char ids[BATCH_ITEMS][37];
    size_t n;
    long created, bad;
    FILE *spool;    /* created task ids, "ID\n" in line order */
    json_t *errors; /* JSON mode: [{"line","error"}], the first MAX_ERRORS_KEPT */
    long bad_lines[LINES_IN_MESSAGE];
    json_t *warnings; /* text -> {"line": first, "count"} */
    json_t *line_warnings;
    char store_err[1200];
    int store_failed;
    /* The last line's function and what the batch needs of it (lines usually share one) */
    const json_t *fn;
    json_t *fn_secrets;
    int fn_idempotent;
};

static void stop_writing(struct bulk *b);

/*
 * Records a bad line: printed at once in text mode, kept for the answer in JSON mode. Without
 * --continue, nothing more is written.
 */
static void bad_line(struct bulk *b, long line, const char *why)
{
    if (!b->keep_going && b->writing)
        stop_writing(b);
    if (b->bad < LINES_IN_MESSAGE)
        b->bad_lines[b->bad] = line;
    b->bad++;
    if (!b->c->json)
        fprintf(stderr, "ferry: line %ld: %s\n", line, why);
    else if (json_array_size(b->errors) < MAX_ERRORS_KEPT)
        json_array_append_new(b->errors,
                              json_pack("{s:I,s:s}", "line", (json_int_t)line, "error", why));
}

static void drop_pending(struct bulk *b)
{
    for (size_t i = 0; i < b->n; i++) {
        json_decref(b->pend[i].obj);
        json_decref(b->pend[i].secrets);
    }
    b->n = 0;
}

/* Ends all-or-nothing: nothing will be written, so the write lock goes now. */
static void stop_writing(struct bulk *b)
{
    if (b->in_tx)
        store_rollback(b->c->st, NULL, 0);
    b->in_tx = 0;
    b->writing = 0;
    drop_pending(b);
}

static void spool_ids(struct bulk *b, size_t from, size_t n)
{
    for (size_t i = from; i < from + n; i++) {
        fputs(b->ids[i], b->spool);
        putc('\n', b->spool);
        cli_note_bridge(b->specs[i].bridge);
    }
    b->created += (long)n;
}

/*
 * Writes the pending items as one store batch. A batch the store refuses (a resource
 * removed meanwhile) undoes only itself; with --continue its items are then written one by
 * one so that only the bad ones are reported.
 */
static void flush(struct bulk *b)
{
    if (b->n == 0 || !b->writing)
        return;
    char err[1200];
    if (store_queue_create_batch(b->c->st, b->specs, b->n, b->ids, err, sizeof(err)) == STORE_OK) {
        spool_ids(b, 0, b->n);
    } else if (!b->keep_going) {
        /* The store names the item by its index in the batch, or the items of a statement
         * of many rows that failed: name their lines instead. */
        size_t index, last;
        int skip = 0;
        if (sscanf(err, "item %zu: %n", &index, &skip) == 1 && skip > 0 && index < b->n)
            snprintf(b->store_err, sizeof(b->store_err), "line %ld: %s", b->pend[index].line,
                     err + skip);
        else if (sscanf(err, "items %zu to %zu: %n", &index, &last, &skip) == 2 && skip > 0 &&
                 index < last && last < b->n)
            snprintf(b->store_err, sizeof(b->store_err), "lines %ld to %ld: %s",
                     b->pend[index].line, b->pend[last].line, err + skip);
        else
            snprintf(b->store_err, sizeof(b->store_err), "%s", err);
        b->store_failed = 1;
        stop_writing(b);
        return;
    } else {
        for (size_t i = 0; i < b->n; i++) {
            if (store_queue_create_batch(b->c->st, &b->specs[i], 1, &b->ids[i], err, sizeof(err)) ==
                STORE_OK)
                spool_ids(b, i, 1);
            else
                bad_line(b, b->pend[i].line, err);
        }
    }
    drop_pending(b);
}

/* Counts each distinct warning once, with the first line that earned it. */
static void note_warnings(struct bulk *b, long line)
{
    size_t i;
    json_t *w;
    json_array_foreach (b->line_warnings, i, w) {
        const char *text = json_string_value(w);
        json_t *seen = json_object_get(b->warnings, text);
        if (seen != NULL)
            json_object_set_new(
                seen, "count",
                json_integer(json_integer_value(json_object_get(seen, "count")) + 1));
        else if (json_object_size(b->warnings) < MAX_WARNINGS)
            json_object_set_new(b->warnings, text,
                                json_pack("{s:I,s:i}", "line", (json_int_t)line, "count", 1));
    }
    json_array_clear(b->line_warnings);
}

/* --- one line -------------------------------------------------------------------------------- */

static const char *const line_keys[] = {"team", "machine", "bridge", "vault", "priority", NULL};
#define N_LINE_KEYS (sizeof(line_keys) / sizeof(line_keys[0]) - 1)

/* The index of key in line_keys, or N_LINE_KEYS when it is none of them. */
static size_t line_key(const char *key)
{
    size_t k = 0;
    while (line_keys[k] && strcmp(line_keys[k], key) != 0)
        k++;
    return k;
}

/*
 * jansson's messages end with "near 'TOKEN'", and the token may be a secret of the vault
 * (an unquoted password): the message keeps only what went wrong.
 */
static void json_error_text(const json_error_t *jerr, char *out, size_t len)
{
    const char *near = strstr(jerr->text, " near ");
    int keep = near ? (int)(near - jerr->text) : (int)strlen(jerr->text);
    snprintf(out, len, "invalid JSON at column %d: %.*s", jerr->column, keep, jerr->text);
}

/* The value v of key as a non-empty string, or NULL with the reason in err. */
static const char *string_field(const json_t *v, const char *key, char *err, size_t errlen)
{
    if (json_is_string(v) && json_string_length(v) > 0)
        return json_string_value(v);
    if (v == NULL)
        seterr(err, errlen, "\"%s\" is missing", key);
    else
        seterr(err, errlen, "\"%s\" must be a non-empty string, not %s", key, vault_type_phrase(v));
    return NULL;
}

/*
 * Checks one line and, when it is good, adds it to the batch (taking obj). Returns 0, or
 * -1 with the reason in err.
 */
static int take_line(struct bulk *b, long line, json_t *obj, char *err, size_t errlen)
{
    /* One pass over the line's keys finds the five (line_keys' order), instead of a lookup
     * each and a pass for the others: the others are looked for only when there are some. */
    const json_t *field[N_LINE_KEYS] = {NULL};
    size_t known = 0;
    const char *key;
    json_t *v;
    json_object_foreach (obj, key, v) {
        size_t k = line_key(key);
        if (k < N_LINE_KEYS) {
            field[k] = v;
            known++;
        }
    }
    const char *team, *machine, *bridge;
    if (!(team = string_field(field[0], "team", err, errlen)) ||
        !(machine = string_field(field[1], "machine", err, errlen)) ||
        !(bridge = string_field(field[2], "bridge", err, errlen)))
        return -1;
    const json_t *vault = field[3];
    if (!json_is_object(vault)) {
        seterr(err, errlen, "\"vault\" must be an object with the item's \"function\", not %s",
               vault_type_phrase(vault));
        return -1;
    }
    const json_t *pv = field[4];
    json_int_t priority = 3;
    if (pv != NULL) {
        priority = json_is_integer(pv) ? json_integer_value(pv) : 0;
        if (priority < 1 || priority > 5) {
            char shown[40];
            if (json_is_integer(pv))
                snprintf(shown, sizeof(shown), "%lld", (long long)json_integer_value(pv));
            else
                snprintf(shown, sizeof(shown), "%s", vault_type_phrase(pv));
            seterr(err, errlen, "\"priority\" must be a whole number from 1 to 5, not %s", shown);
            return -1;
        }
    }
    if (known < json_object_size(obj)) {
        json_object_foreach (obj, key, v) {
            if (line_key(key) < N_LINE_KEYS)
                continue;
            if (cli_flag(b->c, "strict")) {
                seterr(err, errlen,
                       "key \"%s\" is not one of team, machine, bridge, vault, priority; "
                       "refused by --strict",
                       key);
                return -1;
            }
            json_array_append_new(b->line_warnings,
                                  json_sprintf("key \"%s\" is not one of team, machine, bridge, "
                                               "vault, priority; it is ignored",
                                               key));
        }
    }
    const json_t *fn = NULL;
    struct cli_item item = {team, machine, bridge, vault};
    if (cli_item_check(b->c, &item, &fn, b->line_warnings, err, errlen) != 0)
        return -1;
    if (!b->writing) {
        json_decref(obj);
        return 0;
    }
    if (fn != b->fn || b->fn == NULL) {
        json_decref(b->fn_secrets);
        b->fn = fn;
        b->fn_secrets = fn ? params_secret_names(fn) : NULL;
        b->fn_idempotent = cli_fn_idempotent(fn);
    }
    b->pend[b->n] = (struct pending){line, obj, json_incref(b->fn_secrets)};
    b->specs[b->n] = (struct store_item_spec){
        .team = team,
        .machine = machine,
        .bridge = bridge,
        .priority = (int)priority,
        .vault = (json_t *)vault,
        .idempotent = b->fn_idempotent,
        .secret_names = b->pend[b->n].secrets,
    };
    if (++b->n == BATCH_ITEMS)
        flush(b);
    return 0;
}

static void one_line(struct bulk *b, struct line_reader *r, long line)
{
    char err[1400];
    if (r->too_long) {
        snprintf(err, sizeof(err),
                 "the line is %zu bytes; the limit is %zu bytes (vault.max_bytes in the config)",
                 r->too_long, r->max);
        bad_line(b, line, err);
        return;
    }
    size_t i = 0;
    while (i < r->len && strchr(" \t\r", r->line[i]))
        i++;
    if (i == r->len)
        return; /* blank lines are skipped */
    json_error_t jerr;
    json_t *obj =
        cli_jsonl_parse(r->line, r->len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (obj == NULL) {
        json_error_text(&jerr, err, sizeof(err));
        bad_line(b, line, err);
        return;
    }
    if (!json_is_object(obj)) {
        snprintf(err, sizeof(err),
                 "the line is %s, not a JSON object {\"team\", \"machine\", "
                 "\"bridge\", \"vault\", \"priority\"}",
                 vault_type_phrase(obj));
        json_decref(obj);
        bad_line(b, line, err);
        return;
    }
    if (take_line(b, line, obj, err, sizeof(err)) != 0) {
        json_decref(obj);
        json_array_clear(b->line_warnings);
        bad_line(b, line, err);
        return;
    }
    note_warnings(b, line);
}

/* --- the answer ------------------------------------------------------------------------------- */

static void print_warnings(struct bulk *b)
{
    const char *text;
    json_t *w;
    json_object_foreach (b->warnings, text, w) {
        json_int_t more = json_integer_value(json_object_get(w, "count")) - 1;
        char also[64] = "";
        if (more > 0)
            snprintf(also, sizeof(also), " (and %lld more line%s)", (long long)more,
                     more > 1 ? "s" : "");
        cli_warn(b->c, "line %lld%s: %s", (long long)json_integer_value(json_object_get(w, "line")),
                 also, text);
    }
}

/* "3 bad lines (2, 5, 9)". */
static void bad_summary(const struct bulk *b, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "%ld bad line%s (", b->bad, b->bad > 1 ? "s" : "");
    long shown = b->bad < LINES_IN_MESSAGE ? b->bad : LINES_IN_MESSAGE;
    for (long i = 0; i < shown && n < len; i++)
        n += (size_t)snprintf(out + n, len - n, "%s%ld", i ? ", " : "", b->bad_lines[i]);
    if (n < len)
        snprintf(out + n, len - n, "%s)", b->bad > shown ? ", …" : "");
}

/* The JSON answer, streamed: the task ids come from the spool, whatever their number. */
static void print_json(struct bulk *b, int ok, const char *message)
{
    printf("{\n  \"success\": %s,\n  \"data\": {\n    \"created\": %ld,\n    \"taskIds\": [",
           ok ? "true" : "false", b->created);
    rewind(b->spool);
    char id[64];
    long k = 0;
    while (b->created > 0 && fgets(id, sizeof(id), b->spool) != NULL) {
        id[strcspn(id, "\n")] = '\0';
        printf("%s\n      \"%s\"", k++ ? "," : "", id);
    }
    printf("%s],\n    \"errors\": ", k ? "\n    " : "");
    json_dumpf(b->errors, stdout, JSON_COMPACT);
    printf(",\n    \"badLines\": %ld\n  },\n  ", b->bad);
    json_t *msg = json_string(message);
    printf("\"%s\": ", ok ? "message" : "error");
    json_dumpf(msg, stdout, JSON_ENCODE_ANY);
    json_decref(msg);
    printf("\n}\n");
}

static void print_text(struct bulk *b, const char *message)
{
    printf("%s\n", message);
    rewind(b->spool);
    char id[64];
    while (fgets(id, sizeof(id), b->spool) != NULL)
        fputs(id, stdout);
}

/* --- the command --------------------------------------------------------------------------------
 */

static int run(struct bulk *b, FILE *in, const char *name)
{
    cli *c = b->c;
    char err[1200];
    struct line_reader r = {.in = in, .max = (size_t)c->cfg.vault_max_bytes, .cap = 4096};
    r.chunk = malloc(READ_CHUNK);
    r.line = malloc(r.cap);
    if (r.chunk == NULL || r.line == NULL)
        abort();
    int rc = EXIT_OK, got;
    long line = 0;
    if (store_begin(c->st, err, sizeof(err)) != STORE_OK) {
        rc = cli_fail(c, EXIT_ERROR, "%s", err);
        goto out;
    }
    b->in_tx = 1;
    while ((got = read_line(&r)) == 1)
        one_line(b, &r, ++line);
    flush(b);
    if (got < 0) {
        stop_writing(b);
        rc = cli_fail(c, EXIT_ERROR, "cannot read %s after line %ld: %s; nothing written", name,
                      line, strerror(errno));
        goto out;
    }
    if (b->store_failed) {
        rc = cli_fail(c, EXIT_ERROR, "%s; nothing written", b->store_err);
        goto out;
    }
    char summary[400] = "", msg[600];
    if (b->bad)
        bad_summary(b, summary, sizeof(summary));
    if (b->bad && !b->keep_going) {
        stop_writing(b);
        b->created = 0; /* rolled back: the spooled ids name nothing */
        snprintf(msg, sizeof(msg), "%s; nothing written (--continue writes the good lines)",
                 summary);
        if (c->json)
            print_json(b, 0, msg);
        else
            cli_fail(c, EXIT_USAGE, "%s", msg);
        rc = EXIT_USAGE;
        goto out;
    }
    if (b->in_tx && store_commit(c->st, err, sizeof(err)) != STORE_OK) {
        b->created = 0; /* the rollback at out: ends the batch */
        rc = cli_fail(c, EXIT_ERROR, "%s; nothing written", err);
        goto out;
    }
    b->in_tx = 0;
    print_warnings(b);
    if (b->created > 0)
        cli_warn_no_host_noted(c);
    snprintf(msg, sizeof(msg), "%s %ld queue item%s%s%s",
             b->bad ? "Created" : "Successfully created", b->created, b->created == 1 ? "" : "s",
             b->bad ? "; " : "", b->bad ? summary : "");
    if (b->bad)
        snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg), " not written");
    if (c->json)
        print_json(b, b->bad == 0, msg);
    else
        print_text(b, msg);
    if (b->bad && !c->json)
        cli_fail(c, EXIT_ERROR, "%s", summary);
    rc = b->bad ? EXIT_ERROR : EXIT_OK;
out:
    if (b->in_tx)
        store_rollback(c->st, NULL, 0);
    free(r.chunk);
    free(r.line);
    return rc;
}

int cli_create_items(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    const char *file = cli_opt_str(c, "file");
    FILE *in = stdin;
    if (file != NULL && strcmp(file, "-") != 0 && (in = fopen(file, "r")) == NULL)
        return cli_fail(c, EXIT_ERROR, "cannot open %s: %s", file, strerror(errno));
    struct bulk *b = calloc(1, sizeof(*b));
    if (b == NULL)
        abort();
    b->c = c;
    b->keep_going = cli_flag(c, "continue");
    b->writing = 1;
    b->errors = json_array();
    b->warnings = json_object();
    b->line_warnings = json_array();
    b->spool = tmpfile();
    int rc;
    if (b->spool == NULL)
        rc = cli_fail(c, EXIT_ERROR, "cannot create a temporary file: %s", strerror(errno));
    else
        rc = run(b, in, file && strcmp(file, "-") != 0 ? file : "stdin");
    drop_pending(b);
    if (b->spool)
        fclose(b->spool);
    json_decref(b->errors);
    json_decref(b->warnings);
    json_decref(b->line_warnings);
    json_decref(b->fn_secrets);
    free(b);
    if (in != stdin)
        fclose(in);
    return rc;
}

const cli_opt cli_create_items_opts[] = {
    {"file", 0, "FILE", 0,
     "read the lines from FILE (default and -: stdin): one JSON object a line, at most "
     "vault.max_bytes long; blank lines are skipped; empty input writes nothing, exit 0"},
    {"continue", 0, NULL, 0,
     "write the good lines and report the bad ones (exit 1 when there are any) instead of "
     "writing nothing (exit 2)"},
    {"strict", 0, NULL, 0,
     "refuse a line whose function no local plugin provides, or with vault keys the function "
     "does not declare, or with keys other than the five, instead of warning"},
    {NULL, 0, NULL, 0, NULL},
};
