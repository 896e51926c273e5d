/*
 * run_tests: runs a named test suite on the machine and reports pass/fail counts.
 *
 * Where the suite comes from, first match wins:
 *   1. the vault's "command";
 *   2. the plugin config's suites section: plugin = { ops = { suites = { smoke = "..."; }; }; };
 *   3. on the machine, in the repository's directory (DATASTORE/repositories/NAME, when the vault
 *      names a repository) and then in the datastore: a test_SUITE function in the Ferryfile,
 *      else an executable tests/SUITE or tests/SUITE.sh.
 * The suite sees FERRY_TEST_SUITE, FERRY_TARGET_ENV (also TARGET_ENV) and FERRY_DEPLOYMENT_ID;
 * a Ferryfile function or a tests/ file also gets target_env as its first argument.
 *
 * The job fails (FAIL, so notify_on_failure is mailed by the host) when the suite exits
 * non-zero or its output reports a failed test.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "test_summary.h"

#define OUTPUT_IN_RESULT 4096
#define JUNIT_MAX        (4 * 1024 * 1024)

/* How the suite was found: what runs, and in which directory. */
typedef struct suite_plan {
    char *command; /* the shell command that runs the suite (malloc'd) */
    char *source;  /* a short description for the result: "command", "Ferryfile in /x" ... */
    char *dir;     /* directory it runs in, or NULL */
} suite_plan;

static void plan_free(suite_plan *p)
{
    free(p->command);
    free(p->source);
    free(p->dir);
}

static int suite_name_ok(const char *s)
{
    if (s[0] == '\0' || s[0] == '.' || s[0] == '-' || strlen(s) > 100)
        return 0;
    for (const char *c = s; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-' && *c != '.')
            return 0;
    return 1;
}

/* The directory of a repository named by the vault, as the repo plugin keeps it
 * (DATASTORE/repositories/NAME), or NULL (malloc'd). */
static char *repository_dir(const json_t *machine, const json_t *params)
{
    const char *datastore = json_string_value(json_object_get(machine, "datastore"));
    const char *repository = json_string_value(json_object_get(params, "repository"));
    if (datastore == NULL || repository == NULL || strstr(repository, "..") != NULL)
        return NULL;
    char *dir = NULL;
    ops_appendf(&dir, "%s/repositories/%s", datastore, repository);
    return dir;
}

/* A command run as given, in dir when that exists. */
static void plan_command(suite_plan *p, const char *command, const char *dir, const char *source)
{
    p->source = strdup(source);
    if (dir) {
        ops_appendf(&p->command, "if [ -d");
        ops_append_word(&p->command, dir);
        ops_appendf(&p->command, " ]; then cd");
        ops_append_word(&p->command, dir);
        ops_appendf(&p->command, "; fi\n");
        p->dir = strdup(dir);
    }
    ops_appendf(&p->command, "%s", command);
}

/*
 * Looks for the suite on the machine (rule 3 above). Returns FERRY_OK with the plan filled,
 * FERRY_INVALID when there is no such suite, FERRY_RETRY when the machine is unreachable.
 */
static ferry_result find_on_machine(ferry_ctx *ctx, const char *suite, const char *repo_dir,
                                    const char *datastore, suite_plan *p)
{
    char fn[128];
    snprintf(fn, sizeof(fn), "test_%s", suite);
    for (char *c = fn; *c; c++)
        if (*c == '-' || *c == '.')
            *c = '_';
    char *script = NULL, *quoted = ops_shell_quote(suite);
    ops_appendf(&script, "suite=%s; fn=%s\nfor d in", quoted, fn);
    free(quoted);
    ops_append_word(&script, repo_dir ? repo_dir : "");
    ops_append_word(&script, datastore ? datastore : "");
    ops_appendf(&script,
                "; do\n"
                "  [ -n \"$d\" ] && [ -d \"$d\" ] || continue\n"
                "  if [ -f \"$d/Ferryfile\" ] && grep -Eq "
                "\"^[[:space:]]*(function[[:space:]]+)?$fn[[:space:]]*(\\(\\)|\\{|$)\" "
                "\"$d/Ferryfile\"; then printf 'ferryfile\\t%%s\\n' \"$d\"; exit 0; fi\n"
                "  for f in \"tests/$suite\" \"tests/$suite.sh\"; do\n"
                "    if [ -f \"$d/$f\" ]; then printf 'file\\t%%s\\t%%s\\n' \"$d\" \"$f\"; "
                "exit 0; fi\n"
                "  done\n"
                "done\n"
                "echo none\n");
    json_t *res = ops_exec(ctx, "find test suite", script, NULL);
    free(script);
    if (res == NULL)
        return FERRY_RETRY;
    char *line = strdup(ops_output(res));
    json_decref(res);
    line[strcspn(line, "\r\n")] = '\0';
    char *kind = line, *dir = strchr(line, '\t'), *file = NULL;
    if (dir) {
        *dir++ = '\0';
        file = strchr(dir, '\t');
        if (file)
            *file++ = '\0';
    }
    const char *args = " ${FERRY_TARGET_ENV:+\"$FERRY_TARGET_ENV\"}";
    ferry_result code = FERRY_OK;
    if (dir && strcmp(kind, "ferryfile") == 0) {
        ops_appendf(&p->command, "cd");
        ops_append_word(&p->command, dir);
        ops_appendf(&p->command, " && exec bash -c '. ./Ferryfile && \"$0\" \"$@\"' %s%s", fn,
                    args);
        ops_appendf(&p->source, "%s in %s/Ferryfile", fn, dir);
        p->dir = strdup(dir);
    } else if (dir && file && strcmp(kind, "file") == 0) {
        ops_appendf(&p->command, "cd");
        ops_append_word(&p->command, dir);
        ops_appendf(&p->command, " && if [ -x");
        ops_append_word(&p->command, file);
        ops_appendf(&p->command, " ]; then exec ./%s%s; else exec bash ./%s%s; fi", file, args,
                    file, args);
        ops_appendf(&p->source, "%s/%s", dir, file);
        p->dir = strdup(dir);
    } else {
        ferry_set_error(ctx, "no_such_suite",
                        "test suite '%s' not found on the machine: give \"command\", add it to "
                        "the ops plugin's suites config, or add tests/%s(.sh) or a %s function "
                        "in the Ferryfile under %s%s%s",
                        suite, suite, fn, repo_dir ? repo_dir : "", repo_dir ? " or " : "",
                        datastore ? datastore : "the machine's datastore (none set)");
        code = FERRY_INVALID;
    }
    free(line);
    return code;
}

/* Decides what runs (see the top of the file). */
static ferry_result plan_suite(ferry_ctx *ctx, const json_t *params, const json_t *machine,
                               suite_plan *p)
{
    const char *suite = json_string_value(json_object_get(params, "test_suite"));
    const char *command = json_string_value(json_object_get(params, "command"));
    char *repo_dir = repository_dir(machine, params);
    ferry_result code = FERRY_OK;
    json_t *config = ctx->host->config(ctx);
    const char *configured =
        json_string_value(json_object_get(json_object_get(config, "suites"), suite));
    if (command && command[0])
        plan_command(p, command, repo_dir, "command");
    else if (configured)
        plan_command(p, configured, repo_dir, "plugin config");
    else if (!suite_name_ok(suite)) {
        ferry_set_error(ctx, "bad_parameter",
                        "test_suite '%s' is not a suite name ([A-Za-z0-9_.-]); to run a command "
                        "give it as \"command\"",
                        suite);
        code = FERRY_INVALID;
    } else
        code = find_on_machine(ctx, suite, repo_dir,
                               json_string_value(json_object_get(machine, "datastore")), p);
    json_decref(config);
    free(repo_dir);
    return code;
}

/* Reads the JUnit report the suite wrote (path relative to its directory), or NULL. */
static char *read_junit(ferry_ctx *ctx, const char *path, const char *dir)
{
    char *cmd = NULL;
    if (dir) {
        ops_appendf(&cmd, "cd");
        ops_append_word(&cmd, dir);
        ops_appendf(&cmd, " 2>/dev/null; ");
    }
    ops_appendf(&cmd, "cat --");
    ops_append_word(&cmd, path);
    json_t *opts = json_pack("{s:i,s:i}", "max_output", JUNIT_MAX, "timeout", 60);
    json_t *res = ops_exec(ctx, "read junit report", cmd, opts);
    json_decref(opts);
    free(cmd);
    char *xml = NULL;
    if (res && ops_exit_code(res) == 0)
        xml = strdup(ops_output(res));
    else
        ferry_log(ctx, FERRY_LOG_WARN, "junit report %s could not be read%s%s", path,
                  res ? ": " : "", res ? ops_output(res) : "");
    json_decref(res);
    return xml;
}

static json_t *suite_env(const json_t *params)
{
    json_t *env = json_object();
    const char *suite = json_string_value(json_object_get(params, "test_suite"));
    const char *target = json_string_value(json_object_get(params, "target_env"));
    const char *deployment = json_string_value(json_object_get(params, "deployment_id"));
    json_object_set_new(env, "FERRY_TEST_SUITE", json_string(suite));
    if (target) {
        json_object_set_new(env, "FERRY_TARGET_ENV", json_string(target));
        json_object_set_new(env, "TARGET_ENV", json_string(target));
    }
    if (deployment)
        json_object_set_new(env, "FERRY_DEPLOYMENT_ID", json_string(deployment));
    return env;
}

/* The job's verdict from the run and its counts; sets the error when it failed. */
static ferry_result verdict(ferry_ctx *ctx, const char *suite, const json_t *res, int counted,
                            const test_counts *c)
{
    int exit_code = ops_exit_code(res);
    if (json_is_true(json_object_get(res, "timed_out"))) {
        ferry_set_error(ctx, "timeout", "test suite %s was stopped: it ran past its time", suite);
        return FERRY_FAIL;
    }
    if (counted && c->failed > 0) {
        ferry_set_error(ctx, "tests_failed", "test suite %s: %ld of %ld tests failed (exit %d)",
                        suite, c->failed, c->total, exit_code);
        return FERRY_FAIL;
    }
    if (exit_code != 0) {
        ferry_set_error(ctx, "tests_failed", "test suite %s exited %d", suite, exit_code);
        return FERRY_FAIL;
    }
    return FERRY_OK;
}

static ferry_result run_tests_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    const char *suite = json_string_value(json_object_get(params, "test_suite"));
    const char *target = json_string_value(json_object_get(params, "target_env"));
    const char *junit = json_string_value(json_object_get(params, "junit"));
    json_t *machine = ctx->host->machine(ctx);
    suite_plan plan = {0};
    ferry_result code = plan_suite(ctx, params, machine, &plan);
    json_decref(machine);
    if (code != FERRY_OK) {
        plan_free(&plan);
        return code;
    }
    ferry_log(ctx, FERRY_LOG_INFO, "running test suite %s (%s)%s%s", suite, plan.source,
              target ? " for " : "", target ? target : "");
    ferry_progress(ctx, -1, "running tests");
    json_t *opts = json_pack("{s:o}", "env", suite_env(params));
    json_t *res = ops_exec(ctx, "test suite", plan.command, opts);
    json_decref(opts);
    if (res == NULL) {
        plan_free(&plan);
        return FERRY_RETRY;
    }
    char *xml = junit && junit[0] ? read_junit(ctx, junit, plan.dir) : NULL;
    test_counts c = {0};
    int counted = test_summary_parse(ops_output(res), xml, &c);
    free(xml);
    *result = json_pack("{s:s,s:s?,s:s,s:i,s:I,s:o}", "suite", suite, "target_env", target,
                        "source", plan.source, "exit_code", ops_exit_code(res), "duration_ms",
                        json_integer_value(json_object_get(res, "duration_ms")), "output",
                        ops_tail(ops_output(res), OUTPUT_IN_RESULT));
    if (json_object_get(params, "deployment_id"))
        json_object_set(*result, "deployment_id", json_object_get(params, "deployment_id"));
    if (counted) {
        json_t *counts = json_pack("{s:s,s:I,s:I,s:I,s:I}", "format", c.format, "passed",
                                   (json_int_t)c.passed, "failed", (json_int_t)c.failed, "skipped",
                                   (json_int_t)c.skipped, "total", (json_int_t)c.total);
        json_object_update(*result, counts);
        json_decref(counts);
        ferry_log(ctx, FERRY_LOG_INFO, "%s: %ld passed, %ld failed, %ld skipped (%s)", suite,
                  c.passed, c.failed, c.skipped, c.format);
    } else {
        json_object_set_new(*result, "format", json_null());
    }
    code = verdict(ctx, suite, res, counted, &c);
    json_decref(res);
    plan_free(&plan);
    return code;
}

static const ferry_param run_tests_params[] = {
    {"test_suite", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL,
     "The suite's name: found as the vault's command, the plugin config's suites.NAME, a "
     "test_NAME function in the Ferryfile, or tests/NAME(.sh) on the machine."},
    {"target_env", FERRY_PARAM_STRING, 0, NULL,
     "The environment under test (staging, production): FERRY_TARGET_ENV and TARGET_ENV, and "
     "the first argument of a Ferryfile function or tests/ script."},
    {"command", FERRY_PARAM_STRING, 0, NULL, "Shell command that runs the suite, if given."},
    {"repository", FERRY_PARAM_STRING, 0, NULL,
     "Repository whose directory (DATASTORE/repositories/NAME) holds the suite; it runs there."},
    {"junit", FERRY_PARAM_STRING, 0, NULL,
     "Path of a JUnit XML report the suite writes (relative to its directory), read for the "
     "counts."},
    {"deployment_id", FERRY_PARAM_STRING, 0, NULL,
     "Passed through as FERRY_DEPLOYMENT_ID and kept in the result."},
    {"notify_on_failure", FERRY_PARAM_STRING_LIST, 0, NULL,
     "Email address(es) or http(s) URL(s) the host notifies when the job fails."},
    {NULL, 0, 0, NULL, NULL},
};

const ferry_function ops_fn_run_tests = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_NEEDS_MACHINE | FERRY_FN_IDEMPOTENT | FERRY_FN_RUNS_COMMANDS,
    .name = "run_tests",
    .summary = "Run a named test suite on the machine and count passes and failures",
    .description =
        "Runs `test_suite` on the machine for `target_env`. The result has the exit code, the "
        "output's tail and, when the output has TAP, a JUnit XML report (printed, or the "
        "`junit` file) or a summary line such as `5 passed, 1 failed`, the counts `passed`, "
        "`failed`, `skipped`, `total`. A failing suite fails the job (no retry), so the host "
        "notifies `notify_on_failure`.",
    FERRY_PARAMS(run_tests_params),
    .default_timeout = 3600,
    .run = run_tests_run,
};
