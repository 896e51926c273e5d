/*
 * `ferry queue prune`: removes ended items (and their events and dependency links) that ended
 * before a date, in batches of one transaction each, as the hosts' daily prune does
 * (history.keep_days; host/store/history.h says what is kept).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "history.h"
#include "store.h"
#include "util.h"

/* --before: a date parse_date_ms takes, or N days ago ("90d"). 0, or EXIT_USAGE after
 * printing. */
static int before_opt(cli *c, int64_t *ms)
{
    const char *v = cli_opt_str(c, "before");
    if (v == NULL)
        return cli_usage_error(c, "--before DATE is required: the items that ended before it go");
    size_t n = strlen(v);
    if (n >= 2 && n <= 7 && v[n - 1] == 'd' && strspn(v, "0123456789") == n - 1) {
        long days = strtol(v, NULL, 10);
        *ms = now_ms() - (int64_t)days * 86400000LL;
        return 0;
    }
    if (parse_date_ms(v, ms) != 0)
        return cli_usage_error(c,
                               "--before takes a date such as 2026-11-27 or "
                               "2026-11-27T10:00:00Z, or days ago such as 90d, not '%.64s'",
                               v);
    return 0;
}

/* --status S (repeatable): ended statuses only. 0, or EXIT_USAGE after printing. */
static int status_opt(cli *c, unsigned *bits)
{
    const json_t *v = json_object_get(c->opts, "status");
    size_t i;
    const json_t *s;
    *bits = 0;
    json_array_foreach (v, i, s) {
        const char *name = json_string_value(s);
        char up[32];
        size_t k = 0;
        for (; name[k] && k + 1 < sizeof(up); k++)
            up[k] = (char)toupper((unsigned char)name[k]);
        up[k] = '\0';
        unsigned bit = store_prune_status_bit(up);
        if (bit == 0)
            return cli_usage_error(c,
                                   "--status takes COMPLETED, FAILED or CANCELLED (only ended "
                                   "items are pruned), not '%.64s'",
                                   name);
        *bits |= bit;
    }
    return 0;
}

static int cmd_prune(cli *c)
{
    struct store_prune p = {.dry_run = cli_flag(c, "dry-run")};
    int rc = before_opt(c, &p.before_ms);
    if (rc == 0)
        rc = status_opt(c, &p.statuses);
    if (rc != 0)
        return rc;
    if (cli_store(c) != 0)
        return EXIT_ERROR;
    char err[1024], before[32];
    iso8601_ms(p.before_ms, before);
    while (!p.done)
        if (store_prune_step(c->st, &p, err, sizeof(err)) != STORE_OK)
            return cli_fail(c, EXIT_ERROR, "prune stopped after %ld items and %ld events: %s",
                            p.items, p.events, err);
    char msg[300];
    snprintf(msg, sizeof(msg), "%s %ld items and %ld events that ended before %s",
             p.dry_run ? "would prune" : "pruned", p.items, p.events, before);
    if (!c->json) {
        printf("%s\n", msg);
        return EXIT_OK;
    }
    json_t *statuses = json_array();
    for (const char *const *n = (const char *const[]){"COMPLETED", "FAILED", "CANCELLED", NULL}; *n;
         n++)
        if (p.statuses == 0 || (p.statuses & store_prune_status_bit(*n)))
            json_array_append_new(statuses, json_string(*n));
    cli_print_ok(c,
                 json_pack("{s:I,s:I,s:I,s:s,s:o,s:b}", "items", (json_int_t)p.items, "events",
                           (json_int_t)p.events, "batches", (json_int_t)p.batches, "before", before,
                           "statuses", statuses, "dryRun", p.dry_run),
                 msg);
    return EXIT_OK;
}

static const cli_opt prune_opts[] = {
    {"before", 0, "DATE", 0,
     "items that ended before DATE (2026-11-27, 2026-11-27T10:00:00Z; 90d: 90 days ago)"},
    {"status", 0, "STATUS", 1, "only these ended statuses: COMPLETED, FAILED, CANCELLED"},
    {"dry-run", 0, NULL, 0, "count what would go; remove nothing"},
    {NULL, 0, NULL, 0, NULL}};

const cli_command cli_prune_commands[] = {
    {"queue", "prune", NULL, 0, 0, prune_opts, cmd_prune,
     "remove ended items, with their events, that ended before a date (in batches)"},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL},
};
