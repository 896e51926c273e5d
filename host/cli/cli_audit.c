/*
 * `ferry audit list`: the audit log (docs/people.md), newest first, with filters. Every
 * change to the store writes its row in its own transaction (host/people/audit.c).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "people.h"
#include "store.h"
#include "util.h"

static const char *const audit_cols[][2] = {
    {"TIME", "time"},     {"USER", "user"},     {"FROM", "from"},       {"ACTION", "action"},
    {"TEAM", "team"},     {"TARGET", "target"}, {"DETAILS", "details"}, {NULL, NULL}};

/* A date option into *ms (0 when absent). 0, or EXIT_USAGE after printing. */
static int date_opt(cli *c, const char *name, int64_t *ms)
{
    const char *v = cli_opt_str(c, name);
    *ms = 0;
    if (v != NULL && parse_date_ms(v, ms) != 0)
        return cli_usage_error(c, "--%s takes a date such as 2026-11-27 or 2026-11-27T10:00:00Z, "
                                  "not '%.64s'",
                               name, v);
    return 0;
}

static int cmd_audit_list(cli *c)
{
    struct people_audit_filter f = {
        .user = cli_opt_str(c, "user"),
        .team = cli_opt_str(c, "team"),
        .action = cli_opt_str(c, "action"),
        .target = cli_opt_str(c, "target"),
    };
    long limit = STORE_DEFAULT_RECORDS;
    int rc = cli_opt_int(c, "limit", 1, STORE_MAX_RECORDS, &limit);
    if (rc < 0)
        return EXIT_USAGE;
    f.limit = (int)limit;
    if ((rc = date_opt(c, "since", &f.since_ms)) != 0 || (rc = date_opt(c, "until", &f.until_ms)))
        return rc;
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    json_t *rows = NULL;
    int truncated = 0;
    char err[1024];
    if (people_audit_list(c->st, &f, &rows, &truncated, err, sizeof(err)) != STORE_OK)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    if (c->json) {
        cli_print_ok_with(c, rows, "", json_pack("{s:b}", "truncated", truncated));
        return EXIT_OK;
    }
    size_t i;
    json_t *row;
    json_array_foreach (rows, i, row) {
        const char *via = json_string_value(json_object_get(row, "via"));
        const char *addr = json_string_value(json_object_get(row, "address"));
        char from[96];
        snprintf(from, sizeof(from), "%s%s%s", via ? via : "", addr ? " " : "", addr ? addr : "");
        json_object_set_new(row, "from", json_string(from));
    }
    cli_print_table(stdout, rows, audit_cols);
    if (truncated)
        cli_warn(c, "more rows match; narrow the filters or raise --limit (at most %d)",
                 STORE_MAX_RECORDS);
    json_decref(rows);
    return EXIT_OK;
}

static const cli_opt audit_opts[] = {
    {"user", 0, "NAME", 0, "only what this user (or Unix user) did"},
    {"team", 0, "TEAM", 0, "only changes that concern this team"},
    {"action", 0, "ACTION", 0,
     "only this action (queue.cancel), or a family of them (queue, token, machine …)"},
    {"target", 0, "ID", 0, "only changes to this task id, resource name or token id"},
    {"since", 0, "DATE", 0, "only from this date or time on"},
    {"until", 0, "DATE", 0, "only up to this date or time"},
    {"limit", 0, "N", 0, "at most N rows, newest first (default 1000, at most 10000)"},
    {NULL, 0, NULL, 0, NULL}};

const cli_command cli_audit_commands[] = {
    {"audit", "list", NULL, 0, 0, audit_opts, cmd_audit_list,
     "list the audit log: who changed what, from where and when (docs/people.md)"},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL},
};
