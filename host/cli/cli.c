/*
 * The command line: parsing, dispatch through the command tables, output conventions, help.
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ferry/plugin.h>

#include "cli_status.h"
#include "colour.h"
#include "lazy_lib.h"
#include "log.h"
#include "people.h"
#include "registry.h"
#include "store.h"
#include "term_text.h"
#include "util.h"
#include "vault.h"

static const cli_command *const command_tables[] = {
    cli_queue_commands,
    cli_dashboard_commands,
    cli_resource_commands,
    cli_group_commands,
    cli_serve_commands,
    cli_plugin_commands,
    cli_people_commands,
    cli_audit_commands,
    cli_web_commands,
    cli_key_commands,
    cli_status_commands,
    cli_repo_commands,
    cli_prune_commands,
    cli_doctor_commands,
};

#define N_TABLES (sizeof(command_tables) / sizeof(command_tables[0]))

const cli_command *const *cli_command_tables(size_t *n_tables)
{
    *n_tables = N_TABLES;
    return command_tables;
}

/* --- output ----------------------------------------------------------------------------- */

void cli_print_json(FILE *out, const json_t *v)
{
    json_dumpf(v, out, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    fputc('\n', out);
}

/* Prints an envelope, or keeps it when the command runs inside ferry web (c->capture). */
static void put_envelope(cli *c, json_t *env)
{
    if (c && c->capture) {
        json_decref(c->envelope);
        c->envelope = env;
        return;
    }
    cli_print_json(stdout, env);
    json_decref(env);
}

static void print_envelope_error(cli *c, const char *msg)
{
    put_envelope(c, json_pack("{s:b,s:n,s:s}", "success", 0, "data", "error", msg));
}

/*
 * Writes prefix and text as one line, with one write: a message quotes names and values from
 * the command line and the store, and a newline or other control character among them must
 * not split it (scripts read the first line of stderr). Newline, tab and carriage return are
 * written as \n, \t, \x0d; the rest as term_clean makes it (other controls as \xHH, bidi
 * and zero-width characters as \uHHHH, invalid UTF-8 as U+FFFD). stderr is unbuffered, so
 * the line is built first.
 */
static void fputs_one_line(const char *prefix, const char *text, FILE *out)
{
    char *kept = malloc(strlen(text) * 4 + 1), *k = kept;
    if (kept == NULL)
        abort();
    for (const char *p = text; *p; p++) {
        if (*p == '\n')
            k = stpcpy(k, "\\n");
        else if (*p == '\t')
            k = stpcpy(k, "\\t");
        else if (*p == '\r')
            k = stpcpy(k, "\\x0d");
        else
            *k++ = *p;
    }
    *k = '\0';
    char *clean = term_clean(kept), *line = xasprintf("%s%s\n", prefix, clean);
    fwrite(line, 1, strlen(line), out);
    free(line);
    free(clean);
    free(kept);
}

int cli_fail(cli *c, int code, const char *fmt, ...)
{
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c && c->json) {
        print_envelope_error(c, msg);
    } else {
        fputs_one_line(colour_wanted(stderr) ? "\033[1;31mferry:\033[0m " : "ferry: ", msg,
                       stderr);
    }
    return code;
}

static void usage_line(const cli_command *cmd, char *buf, size_t len)
{
    snprintf(buf, len, "ferry %s%s%s%s%s%s", cmd->verb, cmd->noun ? " " : "",
             cmd->noun ? cmd->noun : "", cmd->args ? " " : "", cmd->args ? cmd->args : "",
             cmd->opts && cmd->opts[0].name ? " [options]" : "");
}

int cli_usage_error(cli *c, const char *fmt, ...)
{
    char msg[1024], usage[256] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->cmd)
        usage_line(c->cmd, usage, sizeof(usage));
    return cli_fail(c, EXIT_USAGE, "%s%s%s%s", msg, usage[0] ? " (usage: " : "", usage,
                    usage[0] ? "; see --help)" : "");
}

void cli_warn(const cli *c, const char *fmt, ...)
{
    (void)c;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fputs_one_line(colour_wanted(stderr) ? "ferry: \033[33mwarning:\033[0m " : "ferry: warning: ",
                   msg, stderr);
}

void cli_print_ok_with(cli *c, json_t *data, const char *message, json_t *extra)
{
    json_t *env = json_pack("{s:b,s:o,s:s}", "success", 1, "data", data ? data : json_null(),
                            "message", message ? message : "");
    if (extra != NULL) {
        json_object_update_missing(env, extra);
        json_decref(extra);
    }
    put_envelope(c, env);
}

void cli_print_ok(cli *c, json_t *data, const char *message)
{
    cli_print_ok_with(c, data, message, NULL);
}

int cli_print_row(cli *c, json_t *row, const char *message)
{
    if (c->json)
        cli_print_ok(c, json_pack("[o]", row), message);
    else {
        printf("%s\n", message);
        json_decref(row);
    }
    return EXIT_OK;
}

/* --- options ------------------------------------------------------------------------------ */

const char *cli_opt_str(const cli *c, const char *name)
{
    const json_t *v = json_object_get(c->opts, name);
    if (json_is_array(v))
        v = json_array_get(v, json_array_size(v) - 1);
    return json_string_value(v);
}

int cli_flag(const cli *c, const char *name)
{
    return json_object_get(c->opts, name) != NULL;
}

int cli_opt_int(cli *c, const char *name, long min, long max, long *out)
{
    const char *s = cli_opt_str(c, name);
    if (s == NULL)
        return 1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        cli_fail(c, EXIT_USAGE, "--%s must be a whole number from %ld to %ld, not '%s'", name,
                 min, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_opt_bool(cli *c, const char *name, int def)
{
    const char *s = cli_opt_str(c, name);
    if (s == NULL)
        return def;
    if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "1"))
        return 1;
    if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "0"))
        return 0;
    cli_fail(c, EXIT_USAGE, "--%s takes true or false, not '%s'", name, s);
    return -1;
}

/* --- resources ------------------------------------------------------------------------------ */

int cli_config(cli *c)
{
    if (c->cfg_loaded)
        return 0;
    char err[4096];
    int rc = config_load(c->config_path, &c->cfg, err, sizeof(err));
    if (rc != 0) {
        c->config_missing = rc == CONFIG_NOT_FOUND;
        cli_fail(c, c->config_missing ? EXIT_USAGE : EXIT_ERROR, "%s", err);
        return -1;
    }
    c->cfg_loaded = 1;
    log_set_level((enum log_level)log_level_parse(c->cfg.log_level));
    return 0;
}

int cli_store_library(cli *c)
{
    char err[600];
    if (strcmp(c->cfg.store_driver, "postgres") == 0 && lazy_lib_load(&lazy_pq_lib, err, sizeof(err)) != 0) {
        cli_fail(c, EXIT_ERROR, "the store is PostgreSQL, but %s", err);
        return -1;
    }
    return 0;
}

int cli_store(cli *c)
{
    if (c->st)
        return 0;
    if (cli_config(c) != 0 || cli_store_library(c) != 0)
        return -1;
    char err[1024];
    c->st = store_open_config_short(&c->cfg, err, sizeof(err));
    if (c->st == NULL) {
        cli_fail(c, EXIT_ERROR, "%s", err);
        return -1;
    }
    /* The CLI on the store acts as an admin named by its Unix user (docs/people.md). */
    struct principal me;
    principal_cli(&me);
    store_set_actor(c->st, &me);
    return 0;
}

int cli_registry(cli *c)
{
    return cli_registry_load(c, 1);
}

int cli_registry_cached(cli *c)
{
    return cli_registry_load(c, 0);
}

/* --- help ------------------------------------------------------------------------------------ */

static void print_command_help(FILE *out, const cli_command *cmd)
{
    char usage[256];
    usage_line(cmd, usage, sizeof(usage));
    fprintf(out, "usage: %s\n\n%s\n", usage, cmd->summary);
    if (cmd->opts && cmd->opts[0].name) {
        fputs("\noptions:\n", out);
        for (const cli_opt *o = cmd->opts; o->name; o++) {
            char left[96];
            snprintf(left, sizeof(left), "%s%c%s--%s%s%s", o->short_name ? "-" : "",
                     o->short_name ? o->short_name : ' ', o->short_name ? ", " : "  ", o->name,
                     o->arg ? " " : "", o->arg ? o->arg : "");
            fprintf(out, "  %-34s %s%s\n", left + (o->short_name ? 0 : 1), o->help,
                    o->repeat ? " (repeatable)" : "");
        }
    }
    fputs("\nglobal options: -c, --config FILE   -o, --output text|json   --wide   -h, --help\n",
          out);
}

static void print_main_help(FILE *out)
{
    fputs("ferry " FERRY_VERSION " - runs queue functions from plugins for machines\n\n"
          "usage: ferry [--config FILE] [--output text|json] COMMAND [ARGS] [OPTIONS]\n\n"
          "commands:\n",
          out);
    for (size_t t = 0; t < N_TABLES; t++) {
        for (const cli_command *cmd = command_tables[t]; cmd->verb; cmd++) {
            char name[64];
            snprintf(name, sizeof(name), "%s%s%s", cmd->verb, cmd->noun ? " " : "",
                     cmd->noun ? cmd->noun : "");
            fprintf(out, "  %-26s %s\n", name, cmd->summary);
        }
    }
    fputs("\nglobal options:\n"
          "  -c, --config FILE          configuration file (else $FERRY_CONFIG, else the\n"
          "                             first of PREFIX/etc/ferry/ferry.conf beside an\n"
          "                             installed PREFIX/bin/ferry, /etc/ferry/ferry.conf,\n"
          "                             conf/ferry.conf; none found: exit 2)\n"
          "  -o, --output text|json     output format (json: {success,data,message|error})\n"
          "  --wide                     tables with every column, nothing cut (else they fit\n"
          "                             100 columns, or a narrower terminal)\n"
          "  -h, --help                 help for ferry or for a command\n"
          "  -V, --version              print the version\n\n"
          "exit codes: 0 success, 1 error, 2 usage error\n"
          "`ferry COMMAND --help` describes a command; docs/cli.md describes them all.\n",
          out);
}

/* Writes text into a Markdown table cell: a '|', even inside a code span, would end the cell. */
static void fputs_md_cell(const char *text, FILE *out)
{
    for (const char *p = text; *p; p++) {
        if (*p == '|')
            fputc('\\', out);
        fputc(*p, out);
    }
}

/* Writes docs/cli.md's command reference from the tables. */
static void print_markdown_reference(FILE *out)
{
    fputs("## Command reference\n\n<!-- Generated by `ferry help --markdown`; do not edit. -->\n",
          out);
    for (size_t t = 0; t < N_TABLES; t++) {
        for (const cli_command *cmd = command_tables[t]; cmd->verb; cmd++) {
            char usage[256];
            usage_line(cmd, usage, sizeof(usage));
            fprintf(out, "\n### ferry %s%s%s\n\n```\n%s\n```\n\n%s\n", cmd->verb,
                    cmd->noun ? " " : "", cmd->noun ? cmd->noun : "", usage, cmd->summary);
            if (cmd->opts && cmd->opts[0].name) {
                fputs("\n| option | meaning |\n|---|---|\n", out);
                for (const cli_opt *o = cmd->opts; o->name; o++) {
                    fprintf(out, "| `--%s%s", o->name, o->arg ? " " : "");
                    fputs_md_cell(o->arg ? o->arg : "", out);
                    fputc('`', out);
                    if (o->short_name)
                        fprintf(out, " (`-%c`)", o->short_name);
                    fputs(" | ", out);
                    fputs_md_cell(o->help, out);
                    fprintf(out, "%s |\n", o->repeat ? " Repeatable." : "");
                }
            }
        }
    }
}

/* --- parsing --------------------------------------------------------------------------------- */

const cli_command *cli_find_command(const char *verb, const char *noun)
{
    for (size_t t = 0; t < N_TABLES; t++)
        for (const cli_command *cmd = command_tables[t]; cmd->verb; cmd++)
            if (strcmp(cmd->verb, verb) == 0 &&
                (noun ? cmd->noun && strcmp(cmd->noun, noun) == 0 : cmd->noun == NULL))
                return cmd;
    return NULL;
}

static const cli_command *find_command(char **words, int n, int *used)
{
    for (size_t t = 0; t < N_TABLES; t++) {
        for (const cli_command *cmd = command_tables[t]; cmd->verb; cmd++) {
            if (n >= 2 && cmd->noun && strcmp(words[0], cmd->verb) == 0 &&
                strcmp(words[1], cmd->noun) == 0) {
                *used = 2;
                return cmd;
            }
        }
    }
    for (size_t t = 0; t < N_TABLES; t++) {
        for (const cli_command *cmd = command_tables[t]; cmd->verb; cmd++) {
            if (n >= 1 && cmd->noun == NULL && strcmp(words[0], cmd->verb) == 0) {
                *used = 1;
                return cmd;
            }
        }
    }
    return NULL;
}

static const cli_opt *find_opt(const cli_command *cmd, const char *name, char short_name)
{
    for (const cli_opt *o = cmd->opts; o && o->name; o++)
        if ((name && strcmp(o->name, name) == 0) || (short_name && o->short_name == short_name))
            return o;
    return NULL;
}

static void add_opt(cli *c, const cli_opt *o, const char *value)
{
    json_t *v = value ? json_string(value) : json_true();
    if (!o->repeat) {
        json_object_set_new(c->opts, o->name, v);
        return;
    }
    json_t *arr = json_object_get(c->opts, o->name);
    if (arr == NULL) {
        arr = json_array();
        json_object_set_new(c->opts, o->name, arr);
    }
    json_array_append_new(arr, v);
}

/* Parses the words after the command. Returns 0 or an exit code. */
static int parse_command_args(cli *c, char **argv, int argc)
{
    int only_args = 0;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        if (only_args || a[0] != '-' || a[1] == '\0') {
            c->args[c->n_args++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_args = 1;
            continue;
        }
        const cli_opt *o;
        const char *value = NULL;
        char name[128];
        if (a[1] == '-') {
            snprintf(name, sizeof(name), "%s", a + 2);
            char *eq = strchr(name, '=');
            if (eq) {
                *eq = '\0';
                value = a + 2 + (eq - name) + 1;
            }
            o = find_opt(c->cmd, name, 0);
        } else {
            snprintf(name, sizeof(name), "%s", a + 1);
            o = a[2] == '\0' ? find_opt(c->cmd, NULL, a[1]) : NULL;
        }
        if (o == NULL)
            return cli_usage_error(c, "unknown option '%s'", a);
        if (o->arg && value == NULL) {
            if (i + 1 >= argc)
                return cli_usage_error(c, "option --%s needs a value (%s)", o->name, o->arg);
            value = argv[++i];
        } else if (!o->arg && value != NULL) {
            return cli_usage_error(c, "option --%s takes no value", o->name);
        }
        add_opt(c, o, value);
    }
    if (c->n_args < c->cmd->min_args)
        return cli_usage_error(c, "missing arguments");
    if (c->cmd->max_args >= 0 && c->n_args > c->cmd->max_args)
        return cli_usage_error(c, "too many arguments ('%s')", c->args[c->cmd->max_args]);
    return 0;
}

int cli_main(int argc, char **argv)
{
    cli c = {.opts = json_object()};
    int rc = EXIT_OK, help = 0;
    char **rest = calloc((size_t)argc + 1, sizeof(*rest));
    int n_rest = 0;
    c.args = calloc((size_t)argc + 1, sizeof(*c.args));

    /* Global options may stand anywhere on the line. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        if (strcmp(a, "--") == 0) {
            while (i < argc)
                rest[n_rest++] = argv[i++];
            break;
        }
        if (!strcmp(a, "--config") || !strcmp(a, "-c") || !strcmp(a, "--output") ||
            !strcmp(a, "-o")) {
            if (i + 1 >= argc) {
                rc = cli_fail(&c, EXIT_USAGE, "%s needs a value", a);
                goto out;
            }
            val = argv[++i];
        } else if (!strncmp(a, "--config=", 9) || !strncmp(a, "--output=", 9)) {
            val = a + 9;
        }
        if (val && (a[1] == 'c' || a[2] == 'c')) {
            c.config_path = val;
        } else if (val) {
            if (strcmp(val, "json") == 0)
                c.json = 1;
            else if (strcmp(val, "text") != 0) {
                rc = cli_fail(&c, EXIT_USAGE, "--output takes text or json, not '%s'", val);
                goto out;
            }
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help = 1;
        } else if (!strcmp(a, "--wide")) {
            term_set_wide(1);
        } else if (!strcmp(a, "--version") || !strcmp(a, "-V")) {
            printf("ferry %s (plugin ABI %d.%d)\n", FERRY_VERSION, FERRY_ABI_MAJOR,
                   FERRY_ABI_MINOR);
            goto out;
        } else {
            rest[n_rest++] = argv[i];
        }
    }
    if (n_rest == 0 || (n_rest == 1 && strcmp(rest[0], "help") == 0)) {
        print_main_help(help || n_rest ? stdout : stderr);
        rc = help || n_rest ? EXIT_OK : EXIT_USAGE;
        goto out;
    }
    if (n_rest == 2 && strcmp(rest[0], "help") == 0 && strcmp(rest[1], "--markdown") == 0) {
        print_markdown_reference(stdout);
        goto out;
    }
    /* help --man PAGE, help --completion SHELL (cli_man.c); -1: neither, so unknown. */
    if (n_rest == 3 && strcmp(rest[0], "help") == 0) {
        int generated = cli_help_generate(rest[1], rest[2], stdout);
        if (generated >= 0) {
            rc = generated;
            goto out;
        }
    }
    int used = 0;
    c.cmd = find_command(rest, n_rest, &used);
    if (c.cmd == NULL) {
        rc = cli_fail(&c, EXIT_USAGE, "unknown command '%s%s%s'; run ferry --help for the list",
                      rest[0], n_rest > 1 ? " " : "", n_rest > 1 ? rest[1] : "");
        goto out;
    }
    if (help) {
        print_command_help(stdout, c.cmd);
        goto out;
    }
    rc = parse_command_args(&c, rest + used, n_rest - used);
    if (rc == 0)
        rc = c.cmd->fn(&c);
    /* Commands answer a failed cli_config with EXIT_ERROR; no configuration at all is a
     * usage error (exit 2), whichever command met it. */
    if (c.config_missing)
        rc = EXIT_USAGE;
out:
    /* cli_main's caller exits when it returns. */
    store_close_for_exit(c.st);
    if (c.reg) {
        registry_free(c.reg);
        free(c.reg);
    }
    cli_fncache_forget(&c);
    if (c.cfg_loaded)
        config_free(&c.cfg);
    json_decref(c.opts);
    json_decref(c.refs_checked);
    free(c.args);
    free(rest);
    fflush(stdout);
    if (ferror(stdout) && rc == 0)
        rc = EXIT_ERROR;
    return rc;
}

void cli_warn_all(const cli *c, json_t *warnings)
{
    size_t i;
    json_t *w;
    json_array_foreach(warnings, i, w) cli_warn(c, "%s", json_string_value(w));
    json_decref(warnings);
}

int cli_read_vault(cli *c, json_t **vault)
{
    *vault = NULL;
    const char *text = cli_opt_str(c, "vault");
    const char *file = cli_opt_str(c, "vault-file");
    if (text && file)
        return cli_usage_error(c, "give --vault or --vault-file, not both");
    if (!text && !file)
        return 0;
    if (cli_config(c) != 0)
        return EXIT_ERROR;
    char err[1024];
    size_t max = (size_t)c->cfg.vault_max_bytes, len = 0;
    char *buf = NULL;
    if (file) {
        buf = read_file_capped(file, max, &len, err, sizeof(err));
        if (buf == NULL)
            return cli_fail(c, EXIT_ERROR, "%s (vault.max_bytes in the config)", err);
        text = buf;
    } else {
        len = strlen(text);
    }
    *vault = vault_parse(text, len, max, err, sizeof(err));
    free(buf);
    if (*vault == NULL)
        return cli_fail(c, EXIT_ERROR, "%s", err);
    return 0;
}
