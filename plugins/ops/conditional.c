/*
 * conditional and conditional_backup: run a check on the machine, compare its number with a
 * threshold, then run one of two queue functions through the host's call service (so the
 * branch shows in the item's trace and obeys the host's depth limit and cycle detection).
 */
#include <stdlib.h>
#include <string.h>

#include "ops.h"

#define OUTPUT_IN_RESULT 512

/* The comparisons "operator" may name. */
static const struct {
    const char *name;
    int lt, eq, gt; /* the outcome when value is less than, equal to, greater than threshold */
} comparisons[] = {
    {">=", 0, 1, 1}, {">", 0, 0, 1},  {"<=", 1, 1, 0},
    {"<", 1, 0, 0},  {"==", 0, 1, 0}, {"!=", 1, 0, 1},
};

/* Returns 0 and *holds, or -1 for an operator that is not in the table. */
static int compare(const char *op, double value, double threshold, int *holds)
{
    for (size_t i = 0; i < sizeof(comparisons) / sizeof(comparisons[0]); i++) {
        if (strcmp(op, comparisons[i].name) != 0)
            continue;
        *holds = value < threshold   ? comparisons[i].lt
                 : value > threshold ? comparisons[i].gt
                                     : comparisons[i].eq;
        return 0;
    }
    return -1;
}

/* Checks a branch parameter: absent/null, or an object naming a function. */
static int branch_ok(ferry_ctx *ctx, const char *name, const json_t *branch)
{
    if (branch == NULL || json_is_null(branch))
        return 1;
    if (json_is_string(json_object_get(branch, "function")))
        return 1;
    ferry_set_error(ctx, "bad_parameter",
                    "%s must be an object with a \"function\" and its parameters, e.g. "
                    "{\"function\": \"log_message\", \"message\": \"...\"}",
                    name);
    return 0;
}

/* Calls the branch's function through the host; fills the result's call fields. */
static ferry_result run_branch(ferry_ctx *ctx, const char *which, const json_t *branch,
                               json_t *result)
{
    const char *fn = json_string_value(json_object_get(branch, "function"));
    json_t *params = json_deep_copy(branch);
    json_object_del(params, "function");
    ferry_log(ctx, FERRY_LOG_INFO, "%s: calling %s", which, fn);
    json_t *callee = NULL;
    ferry_result code = ctx->host->call(ctx, fn, params, &callee);
    json_decref(params);
    json_object_set_new(result, "function", json_string(fn));
    json_object_set_new(result, "outcome",
                        json_string(code == FERRY_OK      ? "OK"
                                    : code == FERRY_RETRY ? "RETRY"
                                    : code == FERRY_FAIL  ? "FAIL"
                                                          : "INVALID"));
    json_object_set_new(result, "result", callee ? callee : json_null());
    return code;
}

/* After a successful backup branch: touches the marker file the next check compares with. */
static ferry_result touch_marker(ferry_ctx *ctx, const char *marker, json_t *result)
{
    char *cmd = NULL;
    ops_appendf(&cmd, "d=$(dirname --");
    ops_append_word(&cmd, marker);
    ops_appendf(&cmd, ") && mkdir -p \"$d\" && touch --");
    ops_append_word(&cmd, marker);
    json_t *res = ops_exec(ctx, "touch marker", cmd, NULL);
    free(cmd);
    if (res == NULL)
        return FERRY_RETRY;
    int ok = ops_exit_code(res) == 0;
    if (!ok)
        ferry_set_error(ctx, "marker_failed",
                        "the backup ran but marker %s could not be "
                        "touched: %s",
                        marker, ops_output(res));
    json_decref(res);
    json_object_set_new(result, "marker", json_string(marker));
    return ok ? FERRY_OK : FERRY_FAIL;
}

/*
 * The check's number: the last line of its output that starts with one. Output and errors
 * arrive as one stream, and in a pipeline such as the seed's `find ... | wc -l` the earlier
 * stages' complaints come first while the count comes last.
 */
static int last_number(const char *out, double *value)
{
    size_t len = strlen(out);
    while (len > 0) {
        size_t start = len;
        while (start > 0 && out[start - 1] != '\n')
            start--;
        char line[128];
        size_t n = len - start < sizeof(line) - 1 ? len - start : sizeof(line) - 1;
        memcpy(line, out + start, n);
        line[n] = '\0';
        if (ops_parse_number(line, value) == 0)
            return 0;
        len = start > 0 ? start - 1 : 0;
    }
    return -1;
}

static ferry_result conditional_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    const char *check = json_string_value(json_object_get(params, "check_command"));
    const char *op = json_string_value(json_object_get(params, "operator"));
    double threshold = json_number_value(json_object_get(params, "threshold"));
    const json_t *if_true = json_object_get(params, "if_true");
    const json_t *if_false = json_object_get(params, "if_false");
    const char *marker = json_string_value(json_object_get(params, "marker"));
    int holds = 0;
    if (compare(op, 0, 0, &holds) != 0) {
        ferry_set_error(ctx, "bad_parameter",
                        "operator must be one of >=, >, <=, <, ==, != (not '%s')", op);
        return FERRY_INVALID;
    }
    if (!branch_ok(ctx, "if_true", if_true) || !branch_ok(ctx, "if_false", if_false))
        return FERRY_INVALID;

    json_t *opts = json_pack("{s:O?}", "timeout", json_object_get(params, "check_timeout"));
    json_t *res = ops_exec(ctx, "check_command", check, opts);
    json_decref(opts);
    if (res == NULL)
        return FERRY_RETRY;
    const char *out = ops_output(res);
    double value = 0;
    ferry_result code = FERRY_OK;
    if (ops_exit_code(res) != 0) {
        ferry_set_error(ctx, "check_failed", "check_command exited %d: %.300s", ops_exit_code(res),
                        out);
        code = FERRY_FAIL;
    } else if (last_number(out, &value) != 0) {
        ferry_set_error(ctx, "check_not_numeric",
                        "check_command printed '%.200s', not a number to compare with %g", out,
                        threshold);
        code = FERRY_FAIL;
    }
    if (code != FERRY_OK) {
        json_decref(res);
        return code;
    }
    compare(op, value, threshold, &holds);
    const char *which = holds ? "if_true" : "if_false";
    const json_t *branch = holds ? if_true : if_false;
    ferry_log(ctx, FERRY_LOG_INFO, "check_command gave %g; %g %s %g is %s", value, value, op,
              threshold, holds ? "true" : "false");
    *result = json_pack("{s:f,s:f,s:s,s:b,s:s,s:o}", "value", value, "threshold", threshold,
                        "operator", op, "condition", holds, "branch", which, "check_output",
                        ops_tail(out, OUTPUT_IN_RESULT));
    json_decref(res);
    if (branch == NULL || json_is_null(branch)) {
        ferry_log(ctx, FERRY_LOG_INFO, "no %s branch: nothing to do", which);
        json_object_set_new(*result, "function", json_null());
        return FERRY_OK;
    }
    code = run_branch(ctx, which, branch, *result);
    if (code == FERRY_OK && holds && marker && marker[0])
        code = touch_marker(ctx, marker, *result);
    return code;
}

#define COMMON_PARAMS                                                                              \
    {"check_command", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL,                              \
     "Shell command run on the machine; the last line of its output that starts with a "           \
     "number is compared (e.g. a count from wc -l). A non-zero exit fails the job."},              \
        {"threshold", FERRY_PARAM_NUMBER, 0, "1", "The number the output is compared with."},      \
        {"operator", FERRY_PARAM_STRING, 0, "\">=\"",                                              \
         "How: output >= threshold by default; also >, <=, <, ==, !=."},                           \
    {                                                                                              \
        "check_timeout", FERRY_PARAM_INTEGER, 0, "300",                                            \
            "Seconds the check may run before it is stopped."                                      \
    }

static const ferry_param conditional_params[] = {
    COMMON_PARAMS,
    {"if_true", FERRY_PARAM_OBJECT, 0, NULL,
     "Run when the comparison holds: {\"function\": NAME, ...its parameters}, through the "
     "host (it shows in the trace)."},
    {"if_false", FERRY_PARAM_OBJECT, 0, NULL,
     "Run when it does not hold; same shape. Either branch may be left out: nothing runs."},
    {NULL, 0, 0, NULL, NULL},
};

static const ferry_param conditional_backup_params[] = {
    COMMON_PARAMS,
    {"if_true", FERRY_PARAM_OBJECT, FERRY_PARAM_REQUIRED, NULL,
     "The backup, run when the comparison holds (changes found): {\"function\": "
     "\"repo_push\", ...}."},
    {"if_false", FERRY_PARAM_OBJECT, 0, NULL,
     "Run when it does not hold, e.g. {\"function\": \"log_message\", \"message\": ...}."},
    {"marker", FERRY_PARAM_STRING, 0, NULL,
     "A file on the machine touched after the backup succeeded, for the next check to "
     "compare with (`find ... -newer MARKER`)."},
    {NULL, 0, 0, NULL, NULL},
};

const ferry_function ops_fn_conditional = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_NEEDS_MACHINE | FERRY_FN_RUNS_COMMANDS,
    .name = "conditional",
    .summary = "Run one of two functions depending on a check's number",
    .description =
        "Runs `check_command` on the machine, compares the number it prints with `threshold` "
        "(by `operator`), then calls `if_true` or `if_false` through the host. The branch's "
        "outcome is the job's outcome; its result is under `result`. Nested calls appear in "
        "the trace and obey the host's depth limit and cycle detection.",
    FERRY_PARAMS(conditional_params),
    .default_timeout = 3600,
    .run = conditional_run,
};

const ferry_function ops_fn_conditional_backup = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_NEEDS_MACHINE | FERRY_FN_RUNS_COMMANDS,
    .name = "conditional_backup",
    .summary = "Back up only when a check finds changes",
    .description =
        "`conditional` with a required backup branch: runs `check_command` on the machine "
        "(e.g. counting files newer than the last backup), calls `if_true` (the backup) when "
        "the number reaches `threshold`, else `if_false`; with `marker`, touches that file "
        "after a successful backup.",
    FERRY_PARAMS(conditional_backup_params),
    .default_timeout = 86400,
    .run = conditional_run,
};
