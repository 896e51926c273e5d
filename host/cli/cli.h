/*
 * The command line: a table of commands (each file cli_*.c contributes one), a parser that
 * takes global options anywhere on the line, and the output conventions of spec/cli.md:
 * exit 0 success, 1 error, 2 usage error; with --output json every answer is an envelope
 * {"success":…,"data":…,"message"|"error":…} on stdout.
 */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

#include <stdio.h>

#include <jansson.h>

#include "config.h"

#define EXIT_OK    0
#define EXIT_ERROR 1
#define EXIT_USAGE 2

typedef struct store store;
typedef struct registry registry;

/* One option of a command. */
typedef struct cli_opt {
    const char *name; /* long name without "--" */
    char short_name;  /* or 0 */
    const char *arg;  /* argument placeholder ("N", "JSON"), or NULL for a flag */
    int repeat;       /* may be given several times (values collected in an array) */
    const char *help;
} cli_opt;

typedef struct cli cli;
typedef int (*cli_fn)(cli *c);

typedef struct cli_command {
    const char *verb;       /* "create" */
    const char *noun;       /* "queue-item", or NULL for a one-word command */
    const char *args;       /* positional arguments for usage: "TEAM MACHINE BRIDGE" */
    int min_args, max_args; /* max -1: any number */
    const cli_opt *opts;    /* ended by {NULL} */
    cli_fn fn;
    const char *summary; /* one line */
} cli_command;

/* What a command sees. */
struct cli {
    const cli_command *cmd;
    int json;                /* --output json */
    const char *config_path; /* --config, or NULL */
    char **args;             /* positional arguments */
    int n_args;
    json_t *opts; /* option name -> string, true (flag) or array (repeat) */
    ferry_config cfg;
    int cfg_loaded;
    int config_missing; /* no configuration file found: the run exits 2 */
    store *st;
    registry *reg;
    /* The descriptor cache in use (cli_fncache.c), or NULL: its key and index as text,
     * the open file (while fn_text is set), where its index (name -> [offset, length]) and
     * its descriptors start, the file's length. */
    char *fn_text;
    int fn_fd;
    size_t fn_index, fn_body, fn_len;
    json_t *refs_checked; /* "team\nmachine\nbridge" -> "" (exist) or why not (cli_item.c) */
    /* ferry web runs commands in its threads: with capture set, the JSON envelope a command
     * prints (success or failure) is kept here instead (a new reference, replacing an earlier
     * one) and nothing goes to stdout. */
    int capture;
    json_t *envelope;
};

/* The command `ferry VERB NOUN` (noun NULL for a one-word command), or NULL. */
const cli_command *cli_find_command(const char *verb, const char *noun);

/* The command tables, in the order help lists them (*n_tables of them, each ended by an
 * entry with verb NULL); static, not to be freed. */
const cli_command *const *cli_command_tables(size_t *n_tables);

/*
 * ferry help --man PAGE (ferry.1, ferry.conf.5) and ferry help --completion SHELL (bash,
 * zsh): writes the man page or completion script generated from the command and
 * configuration tables to out (cli_man.c, cli_complete.c). Returns EXIT_OK, EXIT_USAGE
 * (unknown page or shell, said on stderr), or -1 when flag is neither of the two.
 */
int cli_help_generate(const char *flag, const char *what, FILE *out);

/* Runs the command line; returns the process exit code. */
int cli_main(int argc, char **argv);

/* Option access. cli_opt_str returns NULL when absent. */
const char *cli_opt_str(const cli *c, const char *name);
int cli_flag(const cli *c, const char *name);
/* Parses an integer option into *out; returns 0, 1 when absent, -1 (with the error
 * printed) when malformed or outside [min, max]. */
int cli_opt_int(cli *c, const char *name, long min, long max, long *out);
/* A boolean option given as true/false/yes/no/1/0; def when absent; -1 when malformed. */
int cli_opt_bool(cli *c, const char *name, int def);

/* Loads the configuration once. Returns 0, or prints the error and returns -1 (when no
 * file was found at all, c->config_missing is set and the run exits 2). */
int cli_config(cli *c);
/* With a PostgreSQL store, loads libpq now (host/base/lazy_lib.h), so that a machine
 * without it hears which package to install. 0, or prints the reason and returns -1. */
int cli_store_library(cli *c);
/* Opens the store once (loads the configuration first). 0, or prints and returns -1. */
int cli_store(cli *c);
/* Scans the plugin directory once, quietly, probing every plugin (and refreshing the
 * descriptor cache). 0, or -1. */
int cli_registry(cli *c);
/* Learns the plugin directory's functions once, quietly: from the descriptor cache while
 * every plugin file is unchanged (cli_fncache.c), else by a scan that probes them. What
 * checks and redaction use, so that a create queue-item starts no probe. 0, or -1. */
int cli_registry_cached(cli *c);
/* The two above: probe 1 always scans (cli_registry), 0 may use the cache. */
int cli_registry_load(cli *c, int probe);
/* The descriptor of a function after cli_registry or cli_registry_cached (borrowed), or
 * NULL when no usable plugin provides it. From the cache, only the descriptors asked for
 * are parsed. */
const json_t *cli_function(cli *c, const char *name);
/* Lets the descriptor cache's text go (cli_main's end; a probe replacing it). */
void cli_fncache_forget(cli *c);

/*
 * Prints an error (text: "ferry: MESSAGE" on stderr; json: the failure envelope on stdout)
 * and returns code, so commands can `return cli_fail(c, EXIT_ERROR, …);`.
 */
int cli_fail(cli *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prints a usage error with the command's usage line; returns EXIT_USAGE. */
int cli_usage_error(cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints a warning on stderr (both modes). */
void cli_warn(const cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* JSON mode: prints {"success":true,"data":data,"message":message}; data is stolen. */
void cli_print_ok(cli *c, json_t *data, const char *message);
/* The answer of a command that changed one row: with --output json data is [row], else the
 * message alone. row is stolen. Returns EXIT_OK. */
int cli_print_row(cli *c, json_t *row, const char *message);
/* cli_print_ok with more members beside data and message (extra: an object, stolen, may
 * be NULL), e.g. {"total":1005,"truncated":true} for a list cut short. */
void cli_print_ok_with(cli *c, json_t *data, const char *message, json_t *extra);

/* Prints a JSON value pretty (2-space indent) with a final newline. */
void cli_print_json(FILE *out, const json_t *v);

/*
 * Prints rows as an aligned text table: cols is a NULL-terminated list of
 * {header, json key} pairs; a rule goes under the header. Values are shown as text.
 */
void cli_print_table(FILE *out, const json_t *rows, const char *const cols[][2]);

/* The commands contributed by each file, ended by an entry with verb NULL. */
extern const cli_command cli_plugin_commands[];
extern const cli_command cli_serve_commands[];
extern const cli_command cli_queue_commands[];
extern const cli_command cli_resource_commands[];
extern const cli_command cli_group_commands[];
extern const cli_command cli_people_commands[]; /* cli_people.c: users, tokens */
extern const cli_command cli_audit_commands[];  /* cli_audit.c: audit list */
extern const cli_command cli_web_commands[]; /* cli_web.c: ferry web */
extern const cli_command cli_key_commands[];
extern const cli_command cli_repo_commands[]; /* cli_repo.c: repo snapshots, ls, diff */
extern const cli_command cli_prune_commands[];  /* cli_prune.c: queue prune */
extern const cli_command cli_doctor_commands[]; /* cli_doctor.c: doctor */

/*
 * Checks a queue item vault the same way wherever one is given (create queue-item, a
 * schedule's queue_config): the host-owned keys; when a plugin in the local plugin
 * directory provides the function, its parameters (a missing REQUIRED one or a wrong type
 * is refused); and keys that are neither declared parameters nor host-owned. An unknown
 * function or key is a warning, or refused when the command was given --strict. what
 * prefixes every message ("" or "queue_config: "); where names who must provide an unknown
 * function ("the host on bridge B"). Returns 0 with *fn the function's descriptor
 * (borrowed from the registry; NULL when unknown) and *warnings a new array of one-line
 * texts for cli_warn_all, to print once the thing exists; or an exit code after printing
 * the error (*warnings is then still the caller's to free).
 */
int cli_check_item_vault(cli *c, const json_t *vault, const char *what, const char *where,
                         const json_t **fn, json_t **warnings);
/* One queue item to check: what create queue-item takes, or one line of create
 * queue-items. Everything is borrowed. */
struct cli_item {
    const char *team, *machine, *bridge;
    const json_t *vault;
};

/*
 * Checks one queue item for create queue-item and for every line of create queue-items,
 * the same way: the vault as cli_check_item_vault does (its where: "the host on bridge B"),
 * then that the team, the machine (of that team) and the bridge exist and that the machine
 * is on that bridge. The store must be open (cli_store). Returns 0 with *fn the function's
 * descriptor (borrowed; NULL when no local plugin has it) and one-line warning texts
 * appended to warnings (an array); or EXIT_ERROR with the reason in err (nothing printed).
 */
int cli_item_check(cli *c, const struct cli_item *it, const json_t **fn, json_t *warnings,
                   char *err, size_t errlen);
/* cli_item_check in its two steps, for a caller that reads the names in the transaction
 * that writes the item (create queue-item): the vault, read from no store, then the team,
 * machine and bridge. Same results. */
int cli_item_check_vault(cli *c, const struct cli_item *it, const json_t **fn, json_t *warnings,
                         char *err, size_t errlen);
int cli_item_check_refs(cli *c, const struct cli_item *it, char *err, size_t errlen);

/*
 * For cli_item_check, when machine is not a machine of team (status not_found, its message
 * in err): when team has a machine group of that name, STORE_OK if every member is on
 * bridge, else STORE_NOT_FOUND naming the one that is not; otherwise not_found and err as
 * they were (cli_groups.c).
 */
int cli_group_check_bridge(cli *c, const char *team, const char *group, const char *bridge,
                           char *err, size_t errlen, int not_found);

/* Whether the function a descriptor describes may run again after a host crash (NULL: not
 * known, so no). */
int cli_fn_idempotent(const json_t *fn);

/* create queue-items (cli_bulk.c) and its options, for the queue command table. */
int cli_create_items(cli *c);
extern const cli_opt cli_create_items_opts[];

/* Prints each warning text (an array of strings, stolen) with cli_warn. */
void cli_warn_all(const cli *c, json_t *warnings);

/*
 * Reads the vault given with --vault JSON or --vault-file PATH ("-" for stdin) into *vault
 * (new reference). Returns 0 (with *vault NULL when neither option was given), or an exit
 * code after printing the error.
 */
int cli_read_vault(cli *c, json_t **vault);
#endif
