/*
 * script: runs a script on the machine, local or over SSH, through the host's exec service.
 * See docs/scripts.md for the user's side; this comment says how it travels.
 *
 * Everything that is data travels on the command's stdin, never on a command line: the
 * values of "env" (secrets, as the parameter is SECRET), the "args" and the script itself.
 * A command line is visible in `ps` on the bridge (the ssh client's argv) and on the machine
 * (the remote shell's argv); stdin is not. The command line holds only names, lengths, the
 * interpreter and the cwd. stdin is base64 (so a script file in any encoding passes through
 * the exec service's text stdin) and is decoded on the machine by `base64 -d`; the wrapper
 * then reads each value with `head -c LENGTH` into a shell variable (command substitution
 * plus a guard character, so trailing newlines survive) and assigns it without the shell
 * ever parsing it again: quotes, $(...) and newlines in a value arrive as written.
 *
 * The script reaches the interpreter as /dev/fd/3, a pipe fed by `head -c SCRIPT_LENGTH`
 * (`INTERPRETER /dev/fd/3 ARGS...`): any interpreter that runs a file works (sh, bash,
 * python3, perl), the args are its $1..., and the script's stdin is /dev/null, so a command
 * in the script that reads stdin cannot swallow the rest of the script (as with `sh -s`).
 * Nothing is written to the machine's disk, apart from what the exec service itself does
 * over SSH (it keeps the command's stdin in a private temporary directory while it runs).
 *
 * Output: stdout and stderr together, in order, through `tail -c` on the machine, so only
 * the last bytes cross the wire and the result holds the tail (where errors are), whatever
 * the script prints; then base64 again, so any bytes come back intact and are made valid
 * UTF-8 here. The tail runs with SIGTERM ignored: when the attempt times out or is cancelled
 * the exec service signals the process group, the script ends, and the tail still comes
 * back for the result and the trace (locally; over SSH the connection goes with the ssh
 * client). The exit code comes back as the command's own exit code (128+N when a signal
 * ended the interpreter).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "script.h"

#define DEFAULT_MAX_OUTPUT 65536
#define MAX_MAX_OUTPUT     (1024 * 1024)
#define OUTPUT_IN_TRACE    2048
#define LINE_IN_ERROR      200
#define MAX_ENV            256
#define MAX_ARGS           1024
#define MAX_VALUES_BYTES   (256 * 1024)
#define MAX_INTERP_WORDS   16
#define SETUP_PREFIX       "ferry-script: "

/* One attempt's plan: what runs, what goes on stdin, what to mask. */
typedef struct script_plan {
    script_buf payload; /* stdin before base64: env values, args, the script */
    char *command;      /* the wrapper (malloc'd) */
    char *exports;      /* "export A=\"$ferry_e1\" ...; " or "" (malloc'd) */
    char *source;       /* "inline" or the file's resolved path (malloc'd) */
    size_t script_bytes;
    const char **secrets; /* the env values, NULL-terminated (borrowed from params) */
    size_t n_secrets, longest_secret;
} script_plan;

static void plan_free(script_plan *p)
{
    script_buf_free(&p->payload);
    free(p->command);
    free(p->exports);
    free(p->source);
    free(p->secrets);
}

static ferry_result invalid(ferry_ctx *ctx, const char *fmt, const char *what)
{
    ferry_set_error(ctx, "bad_parameter", fmt, what);
    return FERRY_INVALID;
}

static int env_name_ok(const char *name)
{
    if (!(isalpha((unsigned char)name[0]) || name[0] == '_') || strlen(name) > 128)
        return 0;
    for (const char *c = name; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '_'))
            return 0;
    return 1;
}

/* No control characters (a newline would end a line of the wrapper's messages). */
static int plain_text(const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return 0;
    return 1;
}

/* A value given as a string or an integer, as text (malloc'd), or NULL for another type. */
static char *value_text(const json_t *v)
{
    if (json_is_string(v))
        return strndup(json_string_value(v), json_string_length(v));
    if (json_is_integer(v)) {
        char *s = NULL;
        ops_appendf(&s, "%lld", (long long)json_integer_value(v));
        return s;
    }
    return NULL;
}

/* Appends the wrapper line that reads the next value of n bytes from stdin into $v. */
static void read_value(script_plan *p, const char *value, size_t n)
{
    script_buf_add(&p->payload, value, n);
    ops_appendf(&p->command, "r %zu; ", n);
}

/* The env: ferry's own variables, then the vault's (which win on a clash). */
static ferry_result plan_env(ferry_ctx *ctx, const json_t *params, script_plan *p)
{
    const json_t *env = json_object_get(params, "env");
    if (json_object_size(env) > MAX_ENV)
        return invalid(ctx, "env has more than %s variables", "256");
    json_t *all = json_object();
    json_t *machine = ctx->host->machine(ctx);
    const char *task = ferry_task_id(ctx);
    char attempt[16];
    snprintf(attempt, sizeof(attempt), "%d", ferry_attempt(ctx));
    json_object_set_new(all, "FERRY_TASK_ID", json_string(task ? task : ""));
    json_object_set_new(all, "FERRY_ATTEMPT", json_string(attempt));
    json_object_set(all, "FERRY_MACHINE", json_object_get(machine, "name"));
    json_decref(machine);
    json_object_update(all, (json_t *)env);
    p->secrets = calloc(json_object_size(env) + 1, sizeof(*p->secrets));
    if (p->secrets == NULL)
        abort();
    ferry_result code = FERRY_OK;
    size_t total = 0, k = 0;
    const char *name;
    json_t *v;
    p->exports = strdup("");
    json_object_foreach (all, name, v) {
        char *text = value_text(v);
        if (!env_name_ok(name) || text == NULL) {
            free(text);
            code =
                invalid(ctx,
                        !env_name_ok(name)
                            ? "env name '%s' is not a shell variable name ([A-Za-z_][A-Za-z0-9_]*)"
                            : "env %s must be a string or an integer",
                        name);
            break;
        }
        size_t n = strlen(text);
        total += n;
        read_value(p, text, n);
        ops_appendf(&p->command, "ferry_e%zu=$v\n", ++k);
        ops_appendf(&p->exports, "%s%s=\"$ferry_e%zu\"", p->exports[0] ? " " : "export ", name, k);
        free(text);
        const json_t *given = json_object_get(env, name);
        if (given && json_is_string(given)) {
            p->secrets[p->n_secrets++] = json_string_value(given);
            if (json_string_length(given) > p->longest_secret)
                p->longest_secret = json_string_length(given);
        }
    }
    if (code == FERRY_OK && total > MAX_VALUES_BYTES)
        code = invalid(ctx, "env values add up to more than %s bytes", "262144");
    if (p->exports[0])
        ops_appendf(&p->exports, "; ");
    json_decref(all);
    return code;
}

/* The args, into the wrapper's positional parameters. */
static ferry_result plan_args(ferry_ctx *ctx, const json_t *params, script_plan *p)
{
    const json_t *args = json_object_get(params, "args");
    if (json_array_size(args) > MAX_ARGS)
        return invalid(ctx, "args has more than %s items", "1024");
    ops_appendf(&p->command, "set --\n");
    size_t i, total = 0;
    json_t *a;
    json_array_foreach (args, i, a) {
        char *text = value_text(a);
        if (text == NULL)
            return invalid(ctx, "args must hold strings and integers only%s", "");
        total += strlen(text);
        read_value(p, text, strlen(text));
        ops_appendf(&p->command, "set -- \"$@\" \"$v\"\n");
        free(text);
    }
    if (total > MAX_VALUES_BYTES)
        return invalid(ctx, "args add up to more than %s bytes", "262144");
    return FERRY_OK;
}

/* The shell test that the interpreter's program exists (run with the script's env). */
static void interpreter_check(script_plan *p, const char *program)
{
    ops_appendf(&p->command, "( %s", p->exports);
    if (strchr(program, '/')) {
        ops_appendf(&p->command, "[ -f");
        ops_append_word(&p->command, program);
        ops_appendf(&p->command, " ] && [ -x");
        ops_append_word(&p->command, program);
        ops_appendf(&p->command, " ]");
    } else {
        ops_appendf(&p->command, "command -v");
        ops_append_word(&p->command, program);
    }
    char *msg = NULL;
    ops_appendf(&msg, "no_interpreter: the interpreter %s is not %s on the machine", program,
                strchr(program, '/') ? "an executable file" : "a command found on PATH");
    ops_appendf(&p->command, " ) >/dev/null 2>&1 || fs_fail");
    ops_append_word(&p->command, msg);
    ops_appendf(&p->command, "\n");
    free(msg);
}

/* Splits the interpreter at blanks into shell words appended to *words. 0, or -1. */
static int interpreter_words(const char *interp, char **words, char **program)
{
    char *copy = strdup(interp);
    int n = 0, rc = 0;
    for (char *save = NULL, *w = strtok_r(copy, " \t", &save); w;
         w = strtok_r(NULL, " \t", &save)) {
        if (++n > MAX_INTERP_WORDS || (n == 1 && w[0] == '-')) {
            rc = -1;
            break;
        }
        if (n == 1)
            *program = strdup(w);
        ops_append_word(words, w);
    }
    free(copy);
    return n == 0 ? -1 : rc;
}

/* How many bytes of the output's end the machine sends back: the cap, the longest secret
 * (a guard where a secret cut in half may sit, see output_tail()) and one byte that tells a
 * cut output from one that fits. */
static size_t plan_window(const script_plan *p, size_t cap)
{
    return cap + p->longest_secret + 1;
}

/* The wrapper (see the top of the file). */
static ferry_result plan_command(ferry_ctx *ctx, const json_t *params, script_plan *p, size_t cap)
{
    const char *interp = json_string_value(json_object_get(params, "interpreter"));
    const char *cwd = json_string_value(json_object_get(params, "cwd"));
    char *words = NULL, *program = NULL;
    ferry_result code = FERRY_OK;
    if (interp == NULL || !plain_text(interp) || interpreter_words(interp, &words, &program) != 0) {
        code = invalid(ctx,
                       "interpreter '%s' must be a program and its options separated by spaces "
                       "(e.g. /bin/bash -eu or python3), at most 16 words, the first not "
                       "starting with '-'",
                       interp ? interp : "");
        goto out;
    }
    if (cwd && (cwd[0] != '/' || !plain_text(cwd) || strlen(cwd) > 4096)) {
        code = invalid(ctx, "cwd '%s' must be an absolute path on the machine", cwd);
        goto out;
    }
    if (cwd) {
        char *msg = NULL;
        ops_appendf(&msg, "no_cwd: the cwd %s is not a directory on the machine", cwd);
        ops_appendf(&p->command, "cd");
        ops_append_word(&p->command, cwd);
        ops_appendf(&p->command, " 2>/dev/null || fs_fail");
        ops_append_word(&p->command, msg);
        ops_appendf(&p->command, "\n");
        free(msg);
    }
    interpreter_check(p, program);
    ops_appendf(&p->command,
                "exec 4>&1\n"
                "rc=$( { { head -c %zu | ( %sexec%s /dev/fd/3 \"$@\" ) 3<&0 </dev/null 2>&1 4>&- "
                "5>&-; echo \"$?\" >&5; } | { trap '' TERM; tail -c %zu | base64 -w0; } 5>&- "
                ">&4; } 5>&1 )\n"
                "exit \"${rc:-125}\"\n}\n",
                p->script_bytes, p->exports, words, plan_window(p, cap));
out:
    free(words);
    free(program);
    return code;
}

/* The script's text: inline, or read from a file on the bridge (see script_read_file). */
static ferry_result load_script(ferry_ctx *ctx, const json_t *params, script_buf *text,
                                char **source)
{
    const json_t *inline_text = json_object_get(params, "script");
    const char *file = json_string_value(json_object_get(params, "script_file"));
    if ((inline_text != NULL) == (file != NULL))
        return invalid(ctx,
                       "give the script as \"script\" (its text) or as \"script_file\" (a "
                       "file on the bridge), %s",
                       inline_text ? "not both" : "one of them");
    if (inline_text) {
        if (json_string_length(inline_text) > SCRIPT_MAX_BYTES)
            return invalid(ctx, "script is larger than %s bytes", "1048576");
        script_buf_add(text, json_string_value(inline_text), json_string_length(inline_text));
        *source = strdup("inline");
        return FERRY_OK;
    }
    json_t *config = ctx->host->config(ctx);
    char err[1024];
    int bad_param = 0;
    int rc = script_read_file(file, json_object_get(config, "script_dirs"), text, source,
                              &bad_param, err, sizeof(err));
    json_decref(config);
    if (rc == 0)
        return FERRY_OK;
    ferry_set_error(ctx, bad_param ? "bad_parameter" : "script_file_unreadable", "%s", err);
    return bad_param ? FERRY_INVALID : FERRY_FAIL;
}

static ferry_result plan_script(ferry_ctx *ctx, const json_t *params, script_plan *p, size_t cap)
{
    script_buf text = {0};
    ferry_result code = load_script(ctx, params, &text, &p->source);
    ops_appendf(&p->command, "base64 -d | {\n"
                             "fs_fail() { printf '" SETUP_PREFIX "%%s\\n' \"$1\"; exit 125; }\n"
                             "r() { v=$(head -c \"$1\"; echo .); v=${v%%.}; }\n");
    if (code == FERRY_OK)
        code = plan_env(ctx, params, p);
    if (code == FERRY_OK)
        code = plan_args(ctx, params, p);
    if (code == FERRY_OK) {
        ops_appendf(&p->command, "unset v\n");
        p->script_bytes = text.len;
        script_buf_add(&p->payload, text.data, text.len);
        code = plan_command(ctx, params, p, cap);
    }
    script_buf_free(&text);
    return code;
}

/* Checks the parameters that need more than a type. */
static ferry_result check_params(ferry_ctx *ctx, const json_t *params, json_int_t *max_output)
{
    *max_output = json_integer_value(json_object_get(params, "max_output"));
    if (*max_output < 1 || *max_output > MAX_MAX_OUTPUT)
        return invalid(ctx, "max_output must be 1 to %s bytes", "1048576");
    size_t i;
    json_t *c;
    json_array_foreach (json_object_get(params, "retry_on_exit_codes"), i, c) {
        if (!json_is_integer(c) || json_integer_value(c) < 1 || json_integer_value(c) > 255)
            return invalid(ctx, "retry_on_exit_codes must list exit codes from 1 to 255%s", "");
    }
    return FERRY_OK;
}

static int retry_code(const json_t *params, int exit_code)
{
    size_t i;
    json_t *c;
    json_array_foreach (json_object_get(params, "retry_on_exit_codes"), i, c) {
        if (json_integer_value(c) == exit_code)
            return 1;
    }
    return 0;
}

/* What came back: the output's tail, masked, as valid UTF-8; *truncated when cut. */
static json_t *output_tail(const script_plan *p, const script_buf *raw, size_t cap, int *truncated)
{
    size_t window = cap + p->longest_secret;
    *truncated = raw->len > window;
    size_t skip = *truncated ? raw->len - cap : 0;
    script_buf masked = script_mask(raw->data, raw->len, p->secrets, skip);
    if (masked.len > cap)
        *truncated = 1;
    json_t *s = script_text_json(masked.data, masked.len, cap);
    script_buf_free(&masked);
    return s;
}

/* The last non-empty line of text, at most LINE_IN_ERROR bytes (malloc'd). */
static char *last_line(const char *text)
{
    size_t len = strlen(text);
    while (len > 0 && isspace((unsigned char)text[len - 1]))
        len--;
    size_t start = len;
    while (start > 0 && text[start - 1] != '\n')
        start--;
    json_t *s = script_text_json(text + start, len - start, LINE_IN_ERROR);
    char *line = strdup(json_string_value(s));
    json_decref(s);
    return line;
}

/* A failure of the wrapper before the script ran ("ferry-script: CODE: message"). */
static ferry_result setup_failed(ferry_ctx *ctx, const char *output)
{
    char *line = strdup(output + strlen(SETUP_PREFIX));
    line[strcspn(line, "\n")] = '\0';
    char *message = strstr(line, ": ");
    if (message) {
        *message = '\0';
        message += 2;
    }
    ferry_set_error(ctx, message ? line : "script_setup", "%s", message ? message : line);
    ferry_log(ctx, FERRY_LOG_ERROR, "script did not start: %s", message ? message : line);
    free(line);
    return FERRY_FAIL;
}

/* The outcome from the exit code, the deadline and retry_on_exit_codes. */
static ferry_result verdict(ferry_ctx *ctx, const json_t *params, const json_t *res, int exit_code,
                            const char *output)
{
    if (json_is_true(json_object_get(res, "timed_out"))) {
        ferry_set_error(ctx, "timeout", "the script was stopped: it ran past its time");
        return FERRY_FAIL;
    }
    if (ferry_cancelled(ctx)) {
        ferry_set_error(ctx, "cancelled", "the script was stopped: the item was cancelled");
        return FERRY_FAIL;
    }
    if (exit_code == 0)
        return FERRY_OK;
    char *line = last_line(output);
    int retry = retry_code(params, exit_code);
    ferry_set_error(ctx, retry ? "script_retry" : "script_failed", "script exited %d%s%s%s",
                    exit_code, retry ? " (in retry_on_exit_codes)" : "", line[0] ? ": " : "", line);
    free(line);
    return retry ? FERRY_RETRY : FERRY_FAIL;
}

/* Reads the exec result into the job's result, trace and outcome. */
static ferry_result report(ferry_ctx *ctx, const json_t *params, const script_plan *p,
                           const json_t *res, size_t cap, json_t **result)
{
    const char *out = ops_output(res);
    if (strncmp(out, SETUP_PREFIX, strlen(SETUP_PREFIX)) == 0)
        return setup_failed(ctx, out);
    script_buf raw = {0};
    if (script_unbase64(out, &raw) != 0) {
        json_t *shown = script_text_json(out, strlen(out), LINE_IN_ERROR);
        ferry_set_error(ctx, "script_setup", "the script's wrapper failed on the machine: %s",
                        json_string_value(shown));
        json_decref(shown);
        script_buf_free(&raw);
        return FERRY_FAIL;
    }
    int truncated = 0, exit_code = ops_exit_code(res);
    json_t *tail = output_tail(p, &raw, cap, &truncated);
    script_buf_free(&raw);
    const char *text = json_string_value(tail);
    json_int_t ms = json_integer_value(json_object_get(res, "duration_ms"));
    size_t len = strlen(text), from = len > OUTPUT_IN_TRACE ? len - OUTPUT_IN_TRACE : 0;
    while (from < len && ((unsigned char)text[from] & 0xC0) == 0x80)
        from++;
    ferry_log(ctx, exit_code == 0 ? FERRY_LOG_INFO : FERRY_LOG_ERROR,
              "script (%s, %zu bytes) exited %d in %lld ms%s%s%s", p->source, p->script_bytes,
              exit_code, (long long)ms,
              len ? (from > 0 || truncated ? "; the output's tail:\n..." : "; output:\n") : "",
              text + from, len ? "" : "; no output");
    *result = json_pack("{s:i,s:O,s:b,s:b,s:I,s:s,s:s,s:I}", "exit_code", exit_code, "output", tail,
                        "truncated", truncated, "timed_out",
                        json_is_true(json_object_get(res, "timed_out")), "duration_ms", ms,
                        "source", p->source, "interpreter",
                        json_string_value(json_object_get(params, "interpreter")), "script_bytes",
                        (json_int_t)p->script_bytes);
    ferry_result code = verdict(ctx, params, res, exit_code, text);
    json_decref(tail);
    return code;
}

static ferry_result script_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    json_int_t max_output;
    ferry_result code = check_params(ctx, params, &max_output);
    if (code != FERRY_OK)
        return code;
    script_plan p = {0};
    code = plan_script(ctx, params, &p, (size_t)max_output);
    if (code != FERRY_OK) {
        plan_free(&p);
        return code;
    }
    size_t window = plan_window(&p, (size_t)max_output);
    char *stdin_text = script_base64(p.payload.data, p.payload.len);
    json_t *opts = json_pack("{s:s,s:I}", "stdin", stdin_text, "max_output",
                             (json_int_t)((window + 2) / 3 * 4 + 8192));
    free(stdin_text);
    ferry_log(ctx, FERRY_LOG_INFO, "running script (%s, %zu bytes) with %s", p.source,
              p.script_bytes, json_string_value(json_object_get(params, "interpreter")));
    ferry_progress(ctx, -1, "running script");
    json_t *res = ops_exec(ctx, "script", p.command, opts);
    json_decref(opts);
    if (res == NULL)
        code = FERRY_RETRY; /* the machine could not be reached: the exec service said why */
    else
        code = report(ctx, params, &p, res, (size_t)max_output, result);
    json_decref(res);
    plan_free(&p);
    return code;
}

static const ferry_param script_params[] = {
    {"script", FERRY_PARAM_STRING, 0, NULL,
     "The script's text (up to 1 MiB), run by the interpreter on the machine. Give this or "
     "script_file."},
    {"script_file", FERRY_PARAM_STRING, 0, NULL,
     "A script file on the bridge, read when the attempt starts and sent to the machine: a "
     "name relative to the ops plugin's script_dirs, or an absolute path inside one of them "
     "(up to 1 MiB)."},
    {"interpreter", FERRY_PARAM_STRING, 0, "\"/bin/sh\"",
     "The program that runs the script, with its options (split at spaces, e.g. \"/bin/bash "
     "-eu\", \"python3\"); it gets the script as a file (/dev/fd/3) followed by args."},
    {"args", FERRY_PARAM_ARRAY, 0, "[]",
     "Arguments for the script ($1, $2, ...): strings or integers."},
    {"env", FERRY_PARAM_OBJECT, FERRY_PARAM_SECRET, NULL,
     "Environment variables for the script, {\"NAME\": \"value\"}: names are shell variable "
     "names, values strings or integers. Secret: masked in listings, traces, logs, errors and "
     "the result's output."},
    {"cwd", FERRY_PARAM_STRING, 0, NULL,
     "Absolute directory on the machine to run in; the item fails (no_cwd) when it is not "
     "there. Default: the login directory over SSH, the host's directory locally."},
    {"max_output", FERRY_PARAM_INTEGER, 0, "65536",
     "How many bytes of the output's end the result keeps (1 to 1048576); `truncated` says "
     "when there was more."},
    {"retry_on_exit_codes", FERRY_PARAM_ARRAY, 0, "[]",
     "Exit codes (1-255) that mean \"try again later\": the attempt ends as RETRY and the "
     "host's retry policy (max_retries, retry_delay) applies. Any other non-zero exit fails."},
    FERRY_PARAM_END,
};

const ferry_function ops_fn_script = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_RUNS_COMMANDS,
    .name = "script",
    .summary = "Run a script on the machine (inline or a file from the bridge)",
    .description =
        "Runs `script` (or the bridge's `script_file`) with `interpreter` on the machine, "
        "locally or over SSH, with `args`, `env` and `cwd`. The result has `exit_code`, the "
        "output's tail (stdout and stderr together, the last `max_output` bytes, `truncated` "
        "when cut), `duration_ms`, `source` and `script_bytes`; the trace shows the output's "
        "tail. Exit 0 completes the item, a code in `retry_on_exit_codes` retries it, any "
        "other fails it. See docs/scripts.md.",
    FERRY_PARAMS(script_params),
    .default_timeout = 3600,
    .run = script_run,
};
