/*
 * Man pages written from the tables that also write --help and the docs: ferry(1) from the
 * command tables (cli.c), ferry.conf(5) from the configuration table (config.c). The build
 * runs `ferry help --man ferry.1` and `ferry help --man ferry.conf.5` (Makefile, "man"), so
 * a command or key added to a table is in the pages with no further edit.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_man.h"
#include "config.h"
#include "util.h"

/* The options cli_main takes anywhere on the line (it parses them by hand). */
const cli_opt cli_global_opts[] = {
    {"config", 'c', "FILE", 0,
     "configuration file; else $FERRY_CONFIG, else the first that exists of "
     "PREFIX/etc/ferry/ferry.conf beside an installed PREFIX/bin/ferry, /etc/ferry/ferry.conf "
     "and conf/ferry.conf of the current directory; none found: exit 2"},
    {"output", 'o', "text|json", 0,
     "output format; json prints one envelope {\"success\",\"data\",\"message\"|\"error\"} on "
     "stdout, whatever the outcome"},
    {"help", 'h', NULL, 0, "help for ferry, or for the command it follows"},
    {"version", 'V', NULL, 0, "print the version and the plugin ABI"},
    {NULL, 0, NULL, 0, NULL},
};

/*
 * Writes text for roff: backslashes and hyphens escaped (Debian's groff shows \- as the
 * ASCII hyphen, so commands copied from the page still work), a `code span` in bold, and a
 * line that would start with a control character ('.' or ') protected.
 */
static void roff_text(FILE *out, const char *text)
{
    int bold = 0;
    if (text[0] == '.' || text[0] == '\'')
        fputs("\\&", out);
    for (const char *p = text; *p; p++) {
        if (*p == '\\')
            fputs("\\e", out);
        else if (*p == '-')
            fputs("\\-", out);
        else if (*p == '`') {
            fputs(bold ? "\\fR" : "\\fB", out);
            bold = !bold;
        } else if (*p == '\n') {
            fputc('\n', out);
            if (p[1] == '.' || p[1] == '\'')
                fputs("\\&", out);
        } else
            fputc(*p, out);
    }
    if (bold)
        fputs("\\fR", out);
}

/* "--name ARG, -x" as the tag of a .TP paragraph: the option bold, its argument italic. */
static void roff_option_tag(FILE *out, const cli_opt *o)
{
    fputs(".TP\n", out);
    if (o->short_name)
        fprintf(out, "\\fB\\-%c\\fR, ", o->short_name);
    fputs("\\fB\\-\\-", out);
    roff_text(out, o->name);
    fputs("\\fR", out);
    if (o->arg) {
        fputs(" \\fI", out);
        roff_text(out, o->arg);
        fputs("\\fR", out);
    }
    fputc('\n', out);
}

static void roff_options(FILE *out, const cli_opt *opts)
{
    for (const cli_opt *o = opts; o && o->name; o++) {
        roff_option_tag(out, o);
        roff_text(out, o->help);
        fputs(o->repeat ? " (repeatable)\n" : "\n", out);
    }
}

static void roff_paragraphs(FILE *out, const char *const *paragraphs)
{
    for (size_t i = 0; paragraphs[i]; i++) {
        if (i > 0)
            fputs(".PP\n", out);
        roff_text(out, paragraphs[i]);
        fputc('\n', out);
    }
}

static void write_man_commands(FILE *out)
{
    size_t n_tables;
    const cli_command *const *tables = cli_command_tables(&n_tables);
    for (size_t t = 0; t < n_tables; t++) {
        for (const cli_command *cmd = tables[t]; cmd->verb; cmd++) {
            fputs(".SS \"", out);
            roff_text(out, cmd->verb);
            if (cmd->noun) {
                fputc(' ', out);
                roff_text(out, cmd->noun);
            }
            fputs("\"\n\\fBferry ", out);
            roff_text(out, cmd->verb);
            if (cmd->noun) {
                fputc(' ', out);
                roff_text(out, cmd->noun);
            }
            fputs("\\fR", out);
            if (cmd->args) {
                fputs(" \\fI", out);
                roff_text(out, cmd->args);
                fputs("\\fR", out);
            }
            fputs(cmd->opts && cmd->opts[0].name ? " [\\fIoptions\\fR]\n.br\n" : "\n.br\n", out);
            roff_text(out, cmd->summary);
            fputc('\n', out);
            roff_options(out, cmd->opts);
        }
    }
}

static const char *const ferry1_description[] = {
    "ferry runs queue functions for machines. An item (a function name, a JSON vault of "
    "parameters, a priority) is queued for a machine; the ferry host serving that "
    "machine's bridge (`ferry serve`, the ferry.service unit) claims it, runs the function "
    "from a plugin in an isolated worker process, and records status, progress, a timeline "
    "and the result.",
    "One binary: `ferry serve` is the host, `ferry web` the dashboard and HTTP API; every "
    "other command is the client. They meet in the store named by ferry.conf(5): an SQLite "
    "file, or PostgreSQL when several bridges share one queue.",
    "Global options may stand anywhere on the line. With `--output json` every command prints "
    "one JSON envelope on stdout, for scripts; text output is for people and may change.",
    NULL,
};

static void write_ferry1(FILE *out)
{
    fputs(
        ".\\\" Generated by `ferry help --man ferry.1` from ferry's command tables; do not edit.\n"
        ".TH FERRY 1 \"\" \"ferry " FERRY_VERSION "\" \"ferry manual\"\n"
        ".nh\n.ad l\n.SH NAME\nferry \\- runs queue functions from plugins for machines\n"
        ".SH SYNOPSIS\n"
        "\\fBferry\\fR [\\fB\\-\\-config\\fR \\fIFILE\\fR] [\\fB\\-\\-output\\fR "
        "\\fBtext\\fR|\\fBjson\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR] [\\fIOPTIONS\\fR]\n"
        ".br\n\\fBferry\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR\n"
        ".SH DESCRIPTION\n",
        out);
    roff_paragraphs(out, ferry1_description);
    fputs(".SH GLOBAL OPTIONS\n", out);
    roff_options(out, cli_global_opts);
    fputs(".SH COMMANDS\n", out);
    write_man_commands(out);
    fputs(".SH EXIT STATUS\n"
          ".TP\n.B 0\nsuccess (for \\fBqueue wait\\fR and \\fB\\-\\-wait\\fR: the item COMPLETED)\n"
          ".TP\n.B 1\nerror\n"
          ".TP\n.B 2\nusage error, or no configuration file found\n"
          ".SH ENVIRONMENT\n"
          ".TP\n.B FERRY_CONFIG\nthe configuration file when \\fB\\-\\-config\\fR is not given\n"
          ".SH FILES\n"
          ".TP\n.I /etc/ferry/ferry.conf\n"
          "the configuration of the Debian package (\\fIPREFIX\\fR/etc/ferry/ferry.conf for "
          "other prefixes); see ferry.conf(5)\n"
          ".TP\n.I /var/lib/ferry\n"
          "the state directory of the ferry.service unit: the SQLite store and its key\n"
          ".TP\n.I /usr/lib/ferry/plugins\n"
          "the bundled plugins (\\fIPREFIX\\fR/lib/ferry/plugins)\n"
          ".SH SEE ALSO\n"
          ".BR ferry.conf (5),\n.BR systemctl (1),\n.BR journalctl (1)\n.PP\n"
          "The guides (functions, machines, schedules, storages, operations, the HTTP API, "
          "the plugin SDK) are in /usr/share/doc/ferry or in docs/ of the source.\n",
          out);
}

static const char *const conf5_description[] = {
    "ferry reads one libconfig file: `--config FILE`, else `$FERRY_CONFIG`, else the first "
    "that exists of `PREFIX/etc/ferry/ferry.conf` (found beside the running "
    "`PREFIX/bin/ferry`; /etc/ferry/ferry.conf for the Debian package) and "
    "`conf/ferry.conf` of the current directory. With none, ferry stops with exit code 2 "
    "and names the places it looked.",
    "Every key is optional; the defaults are below. A key may be written dotted "
    "(`store.driver = \"sqlite\";`) or as a group (`store = { driver = \"sqlite\"; };`). An "
    "unknown key or a value of the wrong type stops ferry with the file and line. Relative "
    "paths are resolved against the directory holding the file.",
    NULL,
};

static void write_ferry_conf5(FILE *out)
{
    fputs(".\\\" Generated by `ferry help --man ferry.conf.5` from ferry's configuration table; "
          "do not edit.\n"
          ".TH FERRY.CONF 5 \"\" \"ferry " FERRY_VERSION "\" \"ferry manual\"\n"
          ".nh\n.ad l\n.SH NAME\nferry.conf \\- configuration of the ferry host and command line\n"
          ".SH SYNOPSIS\n/etc/ferry/ferry.conf\n"
          ".SH DESCRIPTION\n",
          out);
    roff_paragraphs(out, conf5_description);
    fputs(".SH KEYS\n", out);
    struct config_key_doc k;
    for (size_t i = 0; config_key_doc(i, &k) == 0; i++) {
        fputs(".TP\n\\fB", out);
        roff_text(out, k.path);
        fprintf(out, "\\fR (%s, default \\fB%s", k.type, k.quoted ? "\"" : "");
        roff_text(out, k.default_value);
        fprintf(out, "%s\\fR)\n", k.quoted ? "\"" : "");
        roff_text(out, k.doc);
        fputc('\n', out);
    }
    fputs(".SH PLUGIN SECTIONS\n", out);
    roff_text(out, "`plugin = { NAME = { ... }; };` holds each plugin's own settings, free-form: "
                   "the host hands a plugin its section as JSON.\n");
    fputs(".SH EXAMPLE\n.nf\n", out);
    roff_text(out, "bridge = \"local\";\n"
                   "store = {\n  driver = \"sqlite\";\n  path = \"/var/lib/ferry/ferry.db\";\n};\n"
                   "plugins = { dir = \"/usr/lib/ferry/plugins\"; };\n"
                   "workers = { count = 4; };\n"
                   "plugin = { greeter = { greeting = \"Hello\"; }; };\n");
    fputs(".fi\n.SH SEE ALSO\n.BR ferry (1)\n.PP\n"
          "\\fBferry config show\\fR prints the configuration in effect (secrets hidden).\n",
          out);
}

int cli_help_generate(const char *flag, const char *what, FILE *out)
{
    if (strcmp(flag, "--completion") == 0)
        return cli_write_completion(what, out);
    if (strcmp(flag, "--man") != 0)
        return -1;
    if (strcmp(what, "ferry.1") == 0)
        write_ferry1(out);
    else if (strcmp(what, "ferry.conf.5") == 0)
        write_ferry_conf5(out);
    else {
        fprintf(stderr, "ferry: help --man takes ferry.1 or ferry.conf.5, not '%s'\n", what);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}
