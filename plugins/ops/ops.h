/*
 * The ops plugin: everyday functions that act on a machine through the host's services
 * (exec, call, http). One file per function, plus the helpers declared here. Nothing here is
 * exported from the .so but the plugin entry (ops.c).
 */
#ifndef FERRY_OPS_H
#define FERRY_OPS_H

#include <stddef.h>

#include <ferry/plugin.h>

/* The functions, defined in their own files and listed by ops.c. */
extern const ferry_function ops_fn_os_update;
extern const ferry_function ops_fn_run_tests;
extern const ferry_function ops_fn_conditional;
extern const ferry_function ops_fn_conditional_backup;
extern const ferry_function ops_fn_health_check;
extern const ferry_function ops_fn_script;

/* --- shell.c: running commands --------------------------------------------------------- */

/*
 * Runs command on the job's machine through the exec service with options (borrowed, may be
 * NULL) and logs "what: exit N in M ms" at debug level. Returns the exec result (a new
 * reference the caller frees), or NULL when the command could not be started: the exec
 * service has set the attempt's error (machine unreachable), and the caller should return
 * FERRY_RETRY.
 */
json_t *ops_exec(ferry_ctx *ctx, const char *what, const char *command, const json_t *options);

/* The exec result's exit code (-1 when killed) and output ("" when absent). Borrowed. */
int ops_exit_code(const json_t *res);
const char *ops_output(const json_t *res);

/* s as one single-quoted shell word: a malloc'd string the caller frees. */
char *ops_shell_quote(const char *s);

/*
 * Appends s to a growing command line as one single-quoted shell word, preceded by a space.
 * *line is a malloc'd string (NULL to start) that the caller frees.
 */
void ops_append_word(char **line, const char *s);

/* Appends printf text to *line (malloc'd, NULL to start). */
void ops_appendf(char **line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * The last at most max bytes of text, without trailing whitespace, as a new JSON string:
 * what a result keeps of a long output.
 */
json_t *ops_tail(const char *text, size_t max);

/*
 * Parses the first number in text (leading whitespace allowed, e.g. "   3\n" from wc -l).
 * Returns 0 and *value, or -1 when text does not start with a number.
 */
int ops_parse_number(const char *text, double *value);

#endif
