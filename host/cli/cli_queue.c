/*
 * Queue commands: create queue-item, list queue, queue trace / retry / cancel / wait,
 * rm queue-item (dashboard: cli_dashboard.c). The JSON shapes are the contract of spec/cli.md.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_status.h"
#include "cli_wait.h"
#include "seal.h"
#include "descriptor.h"
#include "registry.h"
#include "store.h"
#include "term_text.h"
#include "util.h"
#include "vault.h"

/*
 * Secret parameter names of a function, when the local plugin directory knows it. Every
 * output that shows a vault uses them, so that a SECRET parameter whose name does not look
 * secret ("pin") is still masked; keys that look secret are masked either way.
 */
static json_t *secret_names(cli *c, const char *function)
{
    if (function == NULL || cli_registry_cached(c) != 0)
        return NULL;
    const json_t *fn = cli_function(c, function);
    return fn ? params_secret_names(fn) : NULL;
}

/* Redacts an item row's request and response vaults in place. */
static void redact_item(cli *c, json_t *row, int use_registry)
{
    json_t *secrets = NULL;
    if (use_registry)
        secrets = secret_names(c, json_string_value(json_object_get(row, "function")));
    const char *keys[] = {"vaultContent", "responseVault"};
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(row, keys[i]);
        if (json_is_object(v))
            json_object_set_new(row, keys[i], vault_redact(v, secrets));
    }
    json_decref(secrets);
}

/*
 * Task ids are lower-case UUIDs, but a person may paste one (or a prefix) in upper case:
 * returns a lower-cased copy the caller frees.
 */
static char *task_id_copy(const char *text)
{
    char *copy = xstrdup(text);
    for (char *p = copy; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return copy;
}

/* Lower-cases the TASK argument of a command in place (argv is the process's own). */
static void task_arg_lower(cli *c)
{
    for (char *p = c->args[0]; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
}

/* Splits "A,B" into a JSON array of strings. */
static json_t *split_list(const char *text)
{
    json_t *arr = json_array();
    char *copy = xstrdup(text), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (*t)
            json_array_append_new(arr, json_string(t));
    free(copy);
    return arr;
}

/* Prints before, text as term_clean makes it safe (a status, a name, a failure reason: store
 * text may hold escape sequences), then after. Text output only: JSON keeps the text. */
static void print_clean(const char *before, const char *text, const char *after)
{
    char *clean = term_clean(text);
    printf("%s%s%s", before, clean, after);
    free(clean);
}

/* Prints a vault as indented JSON, each line through term_clean: jansson escapes control
 * characters but leaves bidi overrides, zero-width and C1 characters as they are. */
static void print_json_clean(const json_t *v, size_t flags)
{
    char *dump = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY | flags);
    if (dump == NULL) {
        printf("null\n");
        return;
    }
    for (char *line = dump, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        print_clean("", line, "\n");
    }
    free(dump);
}

/* --- create queue-item ------------------------------------------------------------------- */

/* The one place the CLI decides idempotency from a descriptor (create queue-item and
 * create queue-items). */
int cli_fn_idempotent(const json_t *fn)
{
    return (descriptor_flags(fn) & FERRY_FN_IDEMPOTENT) != 0;
}

static int cmd_create_item(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    long priority = 3, timeout = 0;
    if (cli_opt_int(c, "priority", 1, 5, &priority) < 0 ||
        cli_opt_int(c, "timeout", 1, 1L << 30, &timeout) < 0)
        return EXIT_USAGE;
    if (cli_flag(c, "follow") && !cli_flag(c, "wait"))
        return cli_usage_error(c, "--follow shows the item's timeline while --wait waits; give "
                                  "both");
    json_t *vault = NULL;
    int rc = cli_read_vault(c, &vault);
    if (rc != 0)
        return rc;
    if (vault == NULL)
        return cli_usage_error(c, "give the item's vault with --vault '{\"function\":\"…\"}' or "
                                  "--vault-file");
    char err[1200];
    json_t *warnings = json_array(), *fn_secrets = NULL;
    json_t *after = json_object_get(c->opts, "after");
    char **after_ids = NULL;
    size_t n_after = 0;
    const json_t *fn = NULL;
    struct cli_item item = {c->args[0], c->args[1], c->args[2], vault};
    if ((rc = cli_item_check_vault(c, &item, &fn, warnings, err, sizeof(err))) != 0) {
        cli_fail(c, rc, "%s", err);
        goto out;
    }
    /* The names, the create and the host of the bridge are read in one transaction, the
     * create's, where there were three: each read transaction took and dropped a read lock
     * of the WAL and checked its index (six system calls of a create). The vault is
     * checked first, outside it: a changed plugin directory is probed then (seconds), and
     * the store's write lock is not held meanwhile. */
    if (store_begin(c->st, err, sizeof(err)) != STORE_OK) {
        rc = cli_fail(c, EXIT_ERROR, "%s", err);
        goto out;
    }
    if ((rc = cli_item_check_refs(c, &item, err, sizeof(err))) != 0) {
        cli_fail(c, rc, "%s", err);
        goto out;
    }
    int idempotent = cli_fn_idempotent(fn);
    n_after = json_array_size(after);
    after_ids = calloc(n_after + 1, sizeof(*after_ids));
    for (size_t i = 0; i < n_after; i++)
        after_ids[i] = task_id_copy(json_string_value(json_array_get(after, i)));
    struct store_item_spec spec = {
        .team = c->args[0],
        .machine = c->args[1],
        .bridge = c->args[2],
        .priority = (int)priority,
        .vault = vault,
        .after = (const char *const *)after_ids,
        .n_after = n_after,
        .idempotent = idempotent,
        .secret_names = fn_secrets = fn ? params_secret_names(fn) : NULL,
    };
    char task[37];
    json_t *row = NULL;
    /* Plain text without --wait prints the id alone: the row is not read back. */
    int need_row = c->json || cli_flag(c, "wait");
    if (store_queue_create(c->st, &spec, task, need_row ? &row : NULL, err, sizeof(err)) !=
        STORE_OK) {
        rc = cli_fail(c, EXIT_ERROR, "%s", err);
        goto out;
    }
    cli_look_for_host(c, c->args[2]);
    if (store_commit(c->st, err, sizeof(err)) != STORE_OK) {
        json_decref(row);
        rc = cli_fail(c, EXIT_ERROR, "%s", err);
        goto out;
    }
    /* Warned only once the item exists, so that a refused create prints one line. */
    cli_warn_all(c, warnings);
    warnings = NULL;
    cli_warn_no_host(c, c->args[2]);
    char msg[512];
    snprintf(msg, sizeof(msg), "Successfully created queue item for machine %s with priority %ld",
             c->args[1], priority);
    if (cli_flag(c, "wait")) {
        /* The id first (JSON: on stderr, stdout keeps its one document), so that a wait cut
         * short by Ctrl-C, a timeout or a closed terminal leaves it behind. */
        if (!c->json) {
            printf("%s\nTask ID: %s\n", msg, task);
            fflush(stdout);
        }
        json_decref(row);
        struct cli_wait w = {.task = task, .timeout_s = timeout, .print_id = c->json,
                             .status_line = 1, .follow = cli_flag(c, "follow"),
                             .events_out = stderr};
        enum cli_wait_end end = cli_wait_item(c, &w, &row);
        if (end != CLI_WAIT_ENDED) {
            /* The item exists and keeps running: its id is what the caller needs next. */
            if (!c->json && row != NULL) {
                print_clean("Status: ", json_string_value(json_object_get(row, "status")), "\n");
                fflush(stdout);
            }
            if (end == CLI_WAIT_TIMEOUT)
                cli_fail(c, EXIT_ERROR, "task %s did not finish within %ld s (it keeps running; "
                                        "ferry queue wait %s)", task, timeout, task);
            json_decref(row);
            rc = end == CLI_WAIT_INTERRUPTED ? EXIT_INTERRUPTED : EXIT_ERROR;
            goto out;
        }
    }
    const char *status = json_string_value(json_object_get(row, "status"));
    int ok = !cli_flag(c, "wait") || (status != NULL && strcmp(status, "COMPLETED") == 0);
    const char *reason = json_string_value(json_object_get(row, "lastFailureReason"));
    if (row != NULL)
        redact_item(c, row, 1);
    if (c->json) {
        if (ok)
            cli_print_ok(c, json_pack("[O]", row), msg);
        else
            cli_fail(c, EXIT_ERROR, "task %s ended %s%s%s", task, status, reason ? ": " : "",
                     reason ? reason : "");
    } else {
        if (cli_flag(c, "wait"))
            print_clean("Status: ", status, "\n");
        else
            printf("%s\nTask ID: %s\n", msg, task);
        if (!ok) {
            fflush(stdout);
            cli_fail(c, EXIT_ERROR, "task %s ended %s%s%s", task, status, reason ? ": " : "",
                     reason ? reason : "");
        }
    }
    json_decref(row);
    rc = ok ? EXIT_OK : EXIT_ERROR;
out:
    store_rollback(c->st, NULL, 0); /* a batch a failure left open */
    for (size_t i = 0; after_ids && i < n_after; i++)
        free(after_ids[i]);
    free(after_ids);
    json_decref(warnings);
    json_decref(fn_secrets);
    json_decref(vault);
    return rc;
}

/* --- list queue ------------------------------------------------------------------------------ */

static const char *const queue_cols[][2] = {
    {"TASK ID", "taskId"},   {"STATUS", "status"},   {"HEALTH", "healthStatus"},
    {"PRIORITY", "priorityLabel"}, {"FUNCTION", "function"}, {"TEAM", "teamName"},
    {"MACHINE", "machineName"}, {"BRIDGE", "bridgeName"}, {"CREATED", "createdTime"},
    {"AGE (MIN)", "ageInMinutes"}, {"RETRIES", "retryCount"}, {"PROGRESS", "progressText"},
    {NULL, NULL}};

/*
 * Rewrites the forms of `date --iso-8601=…` that parse_date_ms() does not read into ones it
 * does: a comma before the fraction of a second (--iso-8601=ns prints
 * "2026-11-27T10:00:00,123456789+00:00") becomes a dot, and an hour without minutes
 * (--iso-8601=hours prints "2026-11-27T10+00:00") gets ":00". Writes at most len bytes.
 */
static void normalize_iso_date(const char *in, char *out, size_t len)
{
    size_t j = 0;
    for (size_t i = 0; in[i] != '\0' && j + 4 < len; i++) {
        out[j++] = in[i] == ',' ? '.' : in[i];
        /* "…THH" followed by an offset, a Z or the end: the minutes are missing. */
        if (i == 12 && in[10] == 'T' && (in[13] == '\0' || strchr("+-Zz", in[13]))) {
            out[j++] = ':';
            out[j++] = '0';
            out[j++] = '0';
        }
    }
    out[j] = '\0';
}

static int parse_date_opt(cli *c, const char *name, int64_t *out)
{
    const char *s = cli_opt_str(c, name);
    if (s == NULL)
        return 0;
    char norm[128];
    normalize_iso_date(s, norm, sizeof(norm));
    if (strlen(s) >= sizeof(norm) - 4 || parse_date_ms(norm, out) != 0)
        return cli_fail(c, EXIT_USAGE, "--%s '%s' is not a date; use 2026-11-27 or "
                                       "2026-11-27T10:00:00Z (what date --iso-8601 prints)",
                        name, s);
    return 0;
}

static int cmd_list_queue(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    struct store_queue_filter f = {0};
    long v;
    json_t *teams = NULL, *statuses = NULL;
    const char **team_list = NULL, **status_list = NULL;
    char *task_id = NULL;
    int rc = EXIT_OK;
    if (cli_opt_int(c, "priority", 1, 5, &v) == 0)
        f.priority = (int)v;
    else if (cli_opt_str(c, "priority"))
        return EXIT_USAGE;
    if (cli_opt_int(c, "min-priority", 1, 5, &v) == 0)
        f.min_priority = (int)v;
    else if (cli_opt_str(c, "min-priority"))
        return EXIT_USAGE;
    if (cli_opt_int(c, "max-priority", 1, 5, &v) == 0)
        f.max_priority = (int)v;
    else if (cli_opt_str(c, "max-priority"))
        return EXIT_USAGE;
    if (cli_opt_int(c, "max-records", 1, STORE_MAX_RECORDS, &v) == 0)
        f.max_records = (int)v;
    else if (cli_opt_str(c, "max-records"))
        return EXIT_USAGE;
    if (cli_opt_int(c, "stale-threshold", 1, 1L << 20, &v) == 0)
        f.stale_threshold_minutes = (int)v;
    else if (cli_opt_str(c, "stale-threshold"))
        return EXIT_USAGE;
    if (parse_date_opt(c, "date-from", &f.date_from_ms) || parse_date_opt(c, "date-to", &f.date_to_ms))
        return EXIT_USAGE;
    /* A date without a time as --date-to means the whole day. */
    const char *to = cli_opt_str(c, "date-to");
    if (to && strlen(to) == 10)
        f.date_to_ms += 86400000 - 1;
    int inc_completed = cli_opt_bool(c, "include-completed", 1);
    int inc_cancelled = cli_opt_bool(c, "include-cancelled", 1);
    if (inc_completed < 0 || inc_cancelled < 0)
        return EXIT_USAGE;
    f.exclude_completed = !inc_completed || cli_flag(c, "no-completed");
    f.exclude_cancelled = !inc_cancelled || cli_flag(c, "no-cancelled");
    f.only_stale = cli_flag(c, "only-stale");
    f.machine = cli_opt_str(c, "machine");
    f.bridge = cli_opt_str(c, "bridge");
    if (cli_opt_str(c, "task-id"))
        f.task_id = task_id = task_id_copy(cli_opt_str(c, "task-id"));
    if (cli_opt_str(c, "team")) {
        teams = split_list(cli_opt_str(c, "team"));
        f.n_teams = json_array_size(teams);
        team_list = calloc(f.n_teams + 1, sizeof(*team_list));
        for (size_t i = 0; i < f.n_teams; i++)
            team_list[i] = json_string_value(json_array_get(teams, i));
        f.teams = team_list;
    }
    if (cli_opt_str(c, "status")) {
        statuses = split_list(cli_opt_str(c, "status"));
        f.n_statuses = json_array_size(statuses);
        status_list = calloc(f.n_statuses + 1, sizeof(*status_list));
        for (size_t i = 0; i < f.n_statuses; i++) {
            status_list[i] = json_string_value(json_array_get(statuses, i));
            if (!store_status_ok(status_list[i])) {
                rc = cli_fail(c, EXIT_USAGE, "unknown status '%s'; use PENDING, ASSIGNED, "
                                             "PROCESSING, CANCELLING, COMPLETED, FAILED or "
                                             "CANCELLED", status_list[i]);
                goto out;
            }
        }
        f.statuses = status_list;
    }
    json_t *rows = NULL;
    char err[1024];
    f.now_ms = now_ms(); /* one instant for the list and its count (stale items) */
    if (store_queue_list(c->st, &f, &rows, err, sizeof(err)) != STORE_OK) {
        rc = cli_fail(c, EXIT_ERROR, "%s", err);
        goto out;
    }
    /* A full page may be a cut one: then say how many there are (an exact COUNT). */
    int64_t shown = (int64_t)json_array_size(rows), total = shown;
    if (shown == (f.max_records ? f.max_records : STORE_DEFAULT_RECORDS) &&
        store_queue_count(c->st, &f, &total, err, sizeof(err)) != STORE_OK) {
        json_decref(rows);
        rc = cli_fail(c, EXIT_ERROR, "%s", err);
        goto out;
    }
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) redact_item(c, row, 1);
    if (c->json) {
        char msg[160] = "";
        if (total > shown)
            snprintf(msg, sizeof(msg), "showing %lld of %lld; narrow the filters or raise "
                     "--max-records (at most %d)", (long long)shown, (long long)total,
                     STORE_MAX_RECORDS);
        cli_print_ok_with(c, rows, msg, json_pack("{s:I,s:b}", "total", (json_int_t)total,
                                                  "truncated", total > shown));
    } else {
        json_array_foreach(rows, i, row)
        {
            json_t *p = json_object_get(row, "progress");
            if (json_is_object(p)) {
                const char *m = json_string_value(json_object_get(p, "message"));
                char *t = xasprintf("%lld%%%s%s",
                                    (long long)json_integer_value(json_object_get(p, "percent")),
                                    m ? " " : "", m ? m : "");
                json_object_set_new(row, "progressText", json_string(t));
                free(t);
            }
        }
        cli_print_table(stdout, rows, queue_cols);
        if (total > shown)
            printf("\nshowing %lld of %lld; narrow the filters or raise --max-records (at most "
                   "%d)\n", (long long)shown, (long long)total, STORE_MAX_RECORDS);
        json_decref(rows);
    }
out:
    free(task_id);
    free(team_list);
    free(status_list);
    json_decref(teams);
    json_decref(statuses);
    return rc;
}

/* --- trace ------------------------------------------------------------------------------------ */

static void print_trace_text(const json_t *item, const json_t *events)
{
    print_clean("QUEUE ITEM ", json_string_value(json_object_get(item, "taskId")), "\n");
    const char *fields[][2] = {
        {"status", "status"},       {"health", "healthStatus"},   {"function", "function"},
        {"priority", "priorityLabel"}, {"team", "teamName"},      {"machine", "machineName"},
        {"bridge", "bridgeName"},   {"created", "createdTime"},   {"assigned", "assignedTime"},
        {"started", "startedTime"}, {"finished", "finishedTime"}, {"retries", "retryCount"},
        {"last failure", "lastFailureReason"}, {"linked to", "parentTaskId"},
        {"link", "linkKind"},       {"schedule", "scheduleName"}};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const json_t *v = json_object_get(item, fields[i][1]);
        if (v == NULL || json_is_null(v))
            continue;
        char *t = json_is_string(v) ? xstrdup(json_string_value(v)) : json_dumps(v, JSON_ENCODE_ANY);
        printf("  %-13s ", fields[i][0]);
        print_clean("", t, "\n");
        free(t);
    }
    const json_t *dur = json_object_get(item, "totalDurationSeconds");
    if (json_is_number(dur))
        printf("  %-13s %.1f s\n", "duration", json_number_value(dur));
    printf("\nREQUEST VAULT\n");
    print_json_clean(json_object_get(item, "vaultContent"), 0);
    printf("\nRESPONSE VAULT\n");
    print_json_clean(json_object_get(item, "responseVault"), 0);
    printf("\nTIMELINE\n");
    static const char *const cols[][2] = {{"TIME", "timestamp"}, {"+SECONDS", "delta"},
                                          {"ACTION", "action"}, {"BY", "actor"},
                                          {"DETAILS", "detailsText"}, {NULL, NULL}};
    json_t *rows = json_deep_copy(events);
    size_t i;
    json_t *e;
    json_array_foreach(rows, i, e)
    {
        const json_t *d = json_object_get(e, "details");
        char *dt = json_is_string(d) ? xstrdup(json_string_value(d))
                   : json_is_null(d) ? xstrdup("")
                                     : json_dumps(d, JSON_COMPACT | JSON_ENCODE_ANY);
        json_object_set_new(e, "detailsText", json_string(dt));
        free(dt);
        char *delta = xasprintf("%.3f", json_number_value(json_object_get(e, "secondsSincePrevious")));
        json_object_set_new(e, "delta", json_string(delta));
        free(delta);
    }
    cli_print_table(stdout, rows, cols);
    json_decref(rows);
}

/* Reads an item and its events. 0, or an exit code after printing the error. */
static int trace_read(cli *c, const char *task, json_t **item, json_t **events)
{
    char err[1024];
    *item = *events = NULL;
    if (store_queue_get(c->st, task, item, err, sizeof(err)) != STORE_OK)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    task = json_string_value(json_object_get(*item, "taskId"));
    if (store_event_list(c->st, task, events, err, sizeof(err)) != STORE_OK) {
        json_decref(*item);
        *item = NULL;
        return cli_fail(c, EXIT_ERROR, "%s", err);
    }
    return 0;
}

/*
 * queue trace --follow in text: the trace as it is, then each event as it is written,
 * until the item ends (then its response vault), or Ctrl-C. item is the trace's row.
 */
static int trace_follow(cli *c, const json_t *item, size_t events_shown)
{
    const char *task = json_string_value(json_object_get(item, "taskId"));
    if (cli_status_final(json_string_value(json_object_get(item, "status"))))
        return EXIT_OK;
    printf("\nFOLLOWING %s until it ends (Ctrl-C stops following, not the item)\n", task);
    fflush(stdout);
    json_t *row = NULL;
    struct cli_wait w = {.task = task, .follow = 1, .events_out = stdout,
                         .events_shown = events_shown};
    enum cli_wait_end end = cli_wait_item(c, &w, &row);
    if (end == CLI_WAIT_ENDED) {
        redact_item(c, row, 1);
        print_clean("\nENDED ", json_string_value(json_object_get(row, "status")),
                    "\n\nRESPONSE VAULT\n");
        print_json_clean(json_object_get(row, "responseVault"), JSON_REAL_PRECISION(15));
    }
    json_decref(row);
    return end == CLI_WAIT_ENDED ? EXIT_OK
           : end == CLI_WAIT_INTERRUPTED ? EXIT_INTERRUPTED : EXIT_ERROR;
}

static int cmd_trace(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    task_arg_lower(c);
    json_t *item = NULL, *events = NULL;
    int rc = trace_read(c, c->args[0], &item, &events);
    if (rc != 0)
        return rc;
    if (c->json && cli_flag(c, "follow")) {
        /* One JSON document: the trace once the item has ended. */
        json_t *row = NULL;
        struct cli_wait w = {.task = json_string_value(json_object_get(item, "taskId"))};
        enum cli_wait_end end = cli_wait_item(c, &w, &row);
        json_decref(row);
        char task[64];
        snprintf(task, sizeof(task), "%s", w.task);
        json_decref(item);
        json_decref(events);
        if (end != CLI_WAIT_ENDED)
            return end == CLI_WAIT_INTERRUPTED ? EXIT_INTERRUPTED : EXIT_ERROR;
        if ((rc = trace_read(c, task, &item, &events)) != 0)
            return rc;
    }
    redact_item(c, item, 1);
    if (c->json) {
        json_t *data = json_pack("{s:O,s:O,s:O,s:O}", "queue_item", item, "request_vault",
                                 json_object_get(item, "vaultContent"), "response_vault",
                                 json_object_get(item, "responseVault"), "timeline", events);
        cli_print_ok(c, data, "");
    } else {
        print_trace_text(item, events);
        if (cli_flag(c, "follow"))
            rc = trace_follow(c, item, json_array_size(events));
    }
    json_decref(item);
    json_decref(events);
    return rc;
}

/* --- retry, cancel, wait, rm ------------------------------------------------------------------ */

static int cmd_retry(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    task_arg_lower(c);
    json_t *item = NULL;
    char err[1024];
    if (store_queue_get(c->st, c->args[0], &item, err, sizeof(err)) != STORE_OK)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    const char *status = json_string_value(json_object_get(item, "status"));
    const char *task = json_string_value(json_object_get(item, "taskId"));
    if (strcmp(status, "FAILED") != 0 && strcmp(status, "CANCELLED") != 0) {
        int rc = cli_fail(c, EXIT_ERROR, "task %s is %s; only FAILED or CANCELLED items can be "
                                         "retried", task, status);
        json_decref(item);
        return rc;
    }
    /* The old item's secrets are sealed under its own id: opened here, sealed again (the
     * same keys) as the new item's. */
    json_t *was_sealed = json_array();
    seal_vault_sealed_keys(json_object_get(item, "vaultContent"), was_sealed);
    if (store_item_reveal(c->st, item, err, sizeof(err)) != STORE_OK) {
        json_decref(was_sealed);
        json_decref(item);
        return cli_fail(c, EXIT_ERROR, "%s", err);
    }
    struct store_item_spec spec = {
        .team = json_string_value(json_object_get(item, "teamName")),
        .machine = json_string_value(json_object_get(item, "machineName")),
        .bridge = json_string_value(json_object_get(item, "bridgeName")),
        .function = json_string_value(json_object_get(item, "function")),
        .priority = (int)json_integer_value(json_object_get(item, "priority")),
        .vault = json_object_get(item, "vaultContent"),
        .parent_task_id = task,
        .link_kind = "retry",
        .idempotent = json_is_true(json_object_get(item, "idempotent")),
        .secret_names = was_sealed,
    };
    char new_id[37];
    json_t *row = NULL;
    int created = store_queue_create(c->st, &spec, new_id, &row, err, sizeof(err));
    json_decref(was_sealed);
    if (created != STORE_OK) {
        json_decref(item);
        return cli_fail(c, EXIT_ERROR, "%s", err);
    }
    store_event_append(c->st, task, "RETRIED", new_id, NULL, 0, NULL, 0);
    char msg[256];
    snprintf(msg, sizeof(msg), "Retry of %s queued", task);
    redact_item(c, row, 1);
    if (c->json)
        cli_print_ok(c, json_pack("[O]", row), msg);
    else
        printf("%s\nTask ID: %s\n", msg, new_id);
    json_decref(row);
    json_decref(item);
    return EXIT_OK;
}

static int cmd_cancel(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    task_arg_lower(c);
    json_t *row = NULL;
    char err[1024];
    if (store_queue_cancel(c->st, c->args[0], cli_flag(c, "force"), &row, err, sizeof(err)) !=
        STORE_OK)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    /* Wake the host so it stops a running attempt now rather than at its next check. */
    store_notify(c->st, json_string_value(json_object_get(row, "bridgeName")));
    const char *status = json_string_value(json_object_get(row, "status"));
    char msg[256];
    snprintf(msg, sizeof(msg), "Task %s is %s", json_string_value(json_object_get(row, "taskId")),
             status);
    redact_item(c, row, 1);
    if (c->json)
        cli_print_ok(c, json_pack("[O]", row), msg);
    else
        print_clean("", msg, "\n");
    json_decref(row);
    return EXIT_OK;
}

static int cmd_wait(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    task_arg_lower(c);
    long timeout = 0;
    if (cli_opt_int(c, "timeout", 1, 1L << 30, &timeout) < 0)
        return EXIT_USAGE;
    json_t *row = NULL;
    struct cli_wait w = {.task = c->args[0], .timeout_s = timeout, .print_id = 1,
                         .status_line = 1, .follow = cli_flag(c, "follow"), .events_out = stderr};
    enum cli_wait_end end = cli_wait_item(c, &w, &row);
    const char *task = json_string_value(json_object_get(row, "taskId"));
    if (end == CLI_WAIT_TIMEOUT)
        cli_fail(c, EXIT_ERROR, "task %s did not finish within %ld s (it keeps running)", task,
                 timeout);
    if (end != CLI_WAIT_ENDED) {
        json_decref(row);
        return end == CLI_WAIT_INTERRUPTED ? EXIT_INTERRUPTED : EXIT_ERROR;
    }
    const char *status = json_string_value(json_object_get(row, "status"));
    int ok = strcmp(status, "COMPLETED") == 0;
    redact_item(c, row, 1);
    if (c->json && ok)
        cli_print_ok(c, json_pack("[O]", row), "COMPLETED");
    else if (ok)
        printf("COMPLETED\n");
    else
        cli_fail(c, EXIT_ERROR, "task %s ended %s%s%s", task, status,
                 json_is_string(json_object_get(row, "lastFailureReason")) ? ": " : "",
                 json_is_string(json_object_get(row, "lastFailureReason"))
                     ? json_string_value(json_object_get(row, "lastFailureReason"))
                     : "");
    json_decref(row);
    return ok ? EXIT_OK : EXIT_ERROR;
}

static int cmd_rm_item(cli *c)
{
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    task_arg_lower(c);
    char err[1024];
    json_t *item = NULL;
    /* Resolve a prefix first so that the answer names the whole task id. */
    if (store_queue_get(c->st, c->args[0], &item, err, sizeof(err)) != STORE_OK)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    char task[64];
    snprintf(task, sizeof(task), "%s", json_string_value(json_object_get(item, "taskId")));
    json_decref(item);
    if (store_queue_delete(c->st, task, err, sizeof(err)) != STORE_OK)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    char msg[128];
    snprintf(msg, sizeof(msg), "Successfully removed queue item %s", task);
    if (c->json)
        cli_print_ok(c, json_null(), msg);
    else
        printf("%s\n", msg);
    return EXIT_OK;
}

/* --- tables ---------------------------------------------------------------------------------- */

#define END_OPTS {NULL, 0, NULL, 0, NULL}

static const cli_opt create_opts[] = {
    {"vault", 0, "JSON", 0, "the item's vault: {\"function\": NAME, parameters…} (# comments "
                            "allowed)"},
    {"vault-file", 0, "PATH", 0, "read the vault from a file (- for stdin)"},
    {"priority", 'p', "1-5", 0, "1 Highest … 5 Lowest (default 3)"},
    {"after", 0, "TASK", 1, "run only after TASK has COMPLETED (cancelled if it fails)"},
    {"wait", 0, NULL, 0, "wait until the item ends, showing its status; exit 0 only when "
                         "COMPLETED, 130 when Ctrl-C stops the wait (the item goes on)"},
    {"timeout", 0, "S", 0, "with --wait: give up waiting after S seconds"},
    {"follow", 'f', NULL, 0, "with --wait: print the item's timeline events as they come"},
    {"strict", 0, NULL, 0,
     "refuse (exit 1) a function no local plugin provides, or vault keys the function does not "
     "declare, instead of warning"},
    END_OPTS};

static const cli_opt list_opts[] = {
    {"team", 0, "T1,T2", 0, "only these teams"},
    {"machine", 0, "M", 0, "only this machine"},
    {"bridge", 0, "B", 0, "only this bridge"},
    {"status", 0, "S1,S2", 0, "only these statuses"},
    {"priority", 0, "N", 0, "only this priority"},
    {"min-priority", 0, "N", 0, "priority number N or more"},
    {"max-priority", 0, "N", 0, "priority number N or less"},
    {"date-from", 0, "DATE", 0, "created at or after DATE (2026-11-27 or ISO 8601)"},
    {"date-to", 0, "DATE", 0, "created at or before DATE (a bare date: the whole day)"},
    {"task-id", 0, "ID", 0, "only this task (a unique prefix works)"},
    {"no-completed", 0, NULL, 0, "leave out COMPLETED items"},
    {"no-cancelled", 0, NULL, 0, "leave out CANCELLED items"},
    {"include-completed", 0, "true|false", 0, "include COMPLETED items (default true)"},
    {"include-cancelled", 0, "true|false", 0, "include CANCELLED items (default true)"},
    {"only-stale", 0, NULL, 0, "only items with no update past the stale threshold"},
    {"stale-threshold", 0, "MINUTES", 0, "stale threshold (default 10)"},
    {"max-records", 0, "N", 0, "at most N rows (default 1000, at most 10000)"},
    END_OPTS};

static const cli_opt cancel_opts[] = {
    {"force", 0, NULL, 0, "mark a PROCESSING item CANCELLED at once (its host is gone)"},
    END_OPTS};
static const cli_opt wait_opts[] = {
    {"timeout", 0, "S", 0, "give up after S seconds"},
    {"follow", 'f', NULL, 0, "print the item's timeline events as they come"},
    END_OPTS};
static const cli_opt trace_opts[] = {
    {"follow", 'f', NULL, 0, "then print each new event until the item ends (JSON: the trace "
                             "once it has ended)"},
    END_OPTS};
static const cli_opt none[] = {END_OPTS};

const cli_command cli_queue_commands[] = {
    {"create", "queue-item", "TEAM MACHINE BRIDGE", 3, 3, create_opts, cmd_create_item,
     "queue a function for a machine"},
    {"create", "queue-items", NULL, 0, 0, cli_create_items_opts, cli_create_items,
     "queue many items from JSON lines {\"team\",\"machine\",\"bridge\",\"vault\",\"priority\"} "
     "(stdin or --file), all or nothing unless --continue"},
    {"list", "queue", NULL, 0, 0, list_opts, cmd_list_queue, "list queue items, newest first"},
    {"queue", "list", NULL, 0, 0, list_opts, cmd_list_queue, "same as list queue"},
    {"queue", "trace", "TASK", 1, 1, trace_opts, cmd_trace,
     "show an item: details, request and response vaults, timeline"},
    {"queue", "retry", "TASK", 1, 1, none, cmd_retry,
     "queue a FAILED or CANCELLED item again (new task id, linked)"},
    {"queue", "cancel", "TASK", 1, 1, cancel_opts, cmd_cancel, "cancel an item"},
    {"queue", "wait", "TASK", 1, 1, wait_opts, cmd_wait,
     "wait until an item ends, showing its status; exit 0 only when COMPLETED"},
    {"rm", "queue-item", "TASK", 1, 1, none, cmd_rm_item, "remove a PENDING or CANCELLED item"},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL},
};
