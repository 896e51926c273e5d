/* Commands about plugins and functions: functions, plugins, run, config. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attempt.h"
#include "cli.h"
#include "cli_attempt.h"
#include "descriptor.h"
#include "registry.h"
#include "runner.h"
#include "util.h"
#include "vault.h"

static int cmd_functions(cli *c)
{
    if (cli_registry(c) != 0)
        return EXIT_ERROR;
    if (cli_flag(c, "markdown")) {
        registry_write_markdown(c->reg, stdout);
        return EXIT_OK;
    }
    if (c->n_args == 1) {
        const json_t *fn = registry_function(c->reg, c->args[0]);
        if (fn == NULL)
            return cli_fail(c, EXIT_ERROR,
                            "no function named '%s' in %s; run ferry functions for the list",
                            c->args[0], c->reg->dir);
        if (c->json)
            cli_print_ok(c, json_deep_copy(fn), "");
        else
            descriptor_write_text(fn, stdout);
        return EXIT_OK;
    }
    json_t *fns = registry_functions_json(c->reg);
    if (c->json) {
        cli_print_ok(c, fns, "");
        return EXIT_OK;
    }
    static const char *const cols[][2] = {{"FUNCTION", "name"}, {"PLUGIN", "plugin"},
                                          {"SUMMARY", "summary"}, {NULL, NULL}};
    cli_print_table(stdout, fns, cols);
    size_t refused = 0;
    for (size_t i = 0; i < c->reg->n_plugins; i++)
        refused += !c->reg->plugins[i].loaded;
    if (refused)
        fprintf(stderr, "ferry: %zu plugin file(s) refused; ferry plugins says why\n", refused);
    json_decref(fns);
    return EXIT_OK;
}

static int cmd_plugins(cli *c)
{
    if (cli_registry(c) != 0)
        return EXIT_ERROR;
    json_t *rows = registry_plugins_json(c->reg);
    if (c->json) {
        cli_print_ok(c, rows, "");
        return EXIT_OK;
    }
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        json_t *names = json_object_get(row, "functions");
        char *list = json_dumps(names, JSON_COMPACT);
        json_object_set_new(row, "state", json_string(json_is_true(json_object_get(row, "loaded"))
                                                          ? "loaded"
                                                          : "REFUSED"));
        json_object_set_new(row, "functionList", json_string(list));
        free(list);
        if (json_is_null(json_object_get(row, "reason")))
            json_object_set_new(row, "reason", json_string(""));
    }
    static const char *const cols[][2] = {{"FILE", "file"},       {"STATE", "state"},
                                          {"PLUGIN", "name"},     {"VERSION", "version"},
                                          {"FUNCTIONS", "functionList"}, {"REASON", "reason"},
                                          {NULL, NULL}};
    printf("plugin directory: %s\n\n", c->reg->dir);
    cli_print_table(stdout, rows, cols);
    json_decref(rows);
    return EXIT_OK;
}

/* --- ferry run: one attempt in a worker, without the queue -------------------------------- */

struct run_state {
    struct cli_attempt a; /* first: the runner's callbacks get this struct */
    cli *c;
    enum outcome_kind status;
    json_t *result;
    char *error;
    json_t *secrets;
    json_t *vault;
};

/* Prints a line of the function's to stderr, redacted as the host would. */
static void run_print(struct run_state *s, char *line)
{
    char *safe = redact_text(line, s->vault, s->secrets);
    fprintf(stderr, "%s\n", safe);
    free(safe);
    free(line);
}

static void run_on_log(void *ud, runner_job *job, const struct proto_log *m)
{
    (void)job;
    run_print(ud, xasprintf("[%s] %s", m->level, m->text));
}

static void run_on_progress(void *ud, runner_job *job, const struct proto_progress *m)
{
    (void)job;
    run_print(ud, xasprintf("[progress %d%%] %s", m->percent, m->message ? m->message : ""));
}

static void run_refuse(struct run_state *s, runner_job *job, const char *message)
{
    struct proto_reply reply = {.kind = OUTCOME_FAIL, .code = "unavailable", .message = message};
    runner_answer(s->a.r, job, &reply);
}

static void run_on_call(void *ud, runner_job *job, const struct proto_call *m)
{
    (void)m;
    run_refuse(ud, job, "ferry run does not nest calls: use a queue item");
}

static void run_on_storage(void *ud, runner_job *job, const struct proto_storage *m)
{
    (void)m;
    run_refuse(ud, job, "ferry run has no store: storages need ferry serve");
}

static void run_on_done(void *ud, runner_job *job, const struct outcome *out)
{
    (void)job;
    struct run_state *s = ud;
    s->a.done = 1;
    s->status = out->kind;
    s->result = out->result ? json_incref(out->result) : NULL;
    if (out->message)
        s->error = redact_text(out->message, s->vault, s->secrets);
}

static int cmd_run(cli *c)
{
    if (cli_registry(c) != 0)
        return EXIT_ERROR;
    json_t *vault = NULL;
    int rc = cli_read_vault(c, &vault);
    if (rc != 0)
        return rc;
    if (vault == NULL)
        vault = json_object();
    const json_t *fn = registry_function(c->reg, c->args[0]);
    if (fn == NULL) {
        json_decref(vault);
        return cli_fail(c, EXIT_ERROR, "no function named '%s' in %s; run ferry functions",
                        c->args[0], c->reg->dir);
    }
    char err[1024];
    json_object_set_new(vault, "function", json_string(c->args[0]));
    if (vault_check_host_keys(vault, err, sizeof(err)) != 0 ||
        params_validate(fn, vault, err, sizeof(err)) != 0) {
        json_decref(vault);
        return cli_fail(c, EXIT_ERROR, "%s", err);
    }
    struct ferry_fn f;
    descriptor_fn(fn, &f);
    char run_id[41] = "run-";
    uuid_v4(run_id + 4); /* no queue item: an id of its own for host->task_id (plugin.h) */
    json_t *machine = attempt_local_machine();
    /* Built as ferry serve builds an item's attempt (attempt.c), on this machine. */
    struct attempt_source src = {.reg = c->reg,
                                 .fn = &f,
                                 .vault = vault,
                                 .item_vault = vault,
                                 .machine = machine,
                                 .task_id = run_id,
                                 .attempt = 1,
                                 .depth = 0};
    struct attempt_run run;
    attempt_build(&c->cfg, &src, &run);

    struct run_state s = {.c = c, .secrets = params_secret_names(fn), .vault = vault};
    runner_events ev = {.log = run_on_log, .progress = run_on_progress, .call = run_on_call,
                        .storage = run_on_storage, .done = run_on_done};
    cli_run_attempt(c, &run.spec, &ev, &s.a);
    attempt_run_free(&run);
    json_decref(machine);
    int ok = s.status == OUTCOME_OK;
    if (c->json) {
        json_t *data = json_pack("{s:s,s:s,s:O?,s:s?}", "function", c->args[0], "status",
                                 outcome_kind_name(s.status), "result", s.result, "error",
                                 s.error);
        if (ok)
            cli_print_ok(c, data, "");
        else {
            cli_fail(c, EXIT_ERROR, "%s %s: %s", c->args[0], outcome_kind_name(s.status),
                     s.error ? s.error : "");
            json_decref(data);
        }
    } else if (ok) {
        if (s.result)
            cli_print_json(stdout, s.result);
    } else {
        cli_fail(c, EXIT_ERROR, "%s %s: %s", c->args[0], outcome_kind_name(s.status),
                 s.error ? s.error : "");
    }
    json_decref(s.result);
    json_decref(s.secrets);
    free(s.error);
    json_decref(vault);
    return ok ? EXIT_OK : EXIT_ERROR;
}

static int cmd_config_show(cli *c)
{
    if (cli_config(c) != 0)
        return EXIT_ERROR;
    const ferry_config *f = &c->cfg;
    json_t *data = json_pack(
        "{s:s?,s:s,s:s,s:{s:s,s:s,s:s,s:s},s:{s:s},s:{s:i,s:i,s:i,s:i},s:{s:i,s:i,s:i},"
        "s:{s:i,s:i,s:f,s:i,s:f},s:{s:i,s:i},s:{s:s,s:s,s:s},s:{s:i},s:O}",
        "file", f->path, "bridge", f->bridge, "log_level", f->log_level, "store", "driver",
        f->store_driver, "path", f->store_path, "conninfo",
        f->store_conninfo[0] ? "(set)" : "", "synchronous", f->store_synchronous, "plugins",
        "dir", f->plugin_dir, "workers", "count", f->workers, "prefork", f->prefork,
        "max_jobs", f->worker_max_jobs, "memory_limit_mb", f->worker_memory_mb, "timeouts",
        "default", f->timeout_default, "max", f->timeout_max, "grace", f->grace_seconds,
        "retry", "max_retries", f->retry_max, "delay", f->retry_delay, "backoff",
        f->retry_backoff, "max_delay", f->retry_max_delay, "jitter", f->retry_jitter, "lease",
        "seconds", f->lease_seconds, "poll_ms", f->poll_ms, "smtp", "url", f->smtp_url, "from",
        f->smtp_from, "username", f->smtp_username, "vault",
        "max_bytes", f->vault_max_bytes, "plugin", f->plugin_sections);
    if (c->json)
        cli_print_ok(c, data, "");
    else {
        cli_print_json(stdout, data);
        json_decref(data);
    }
    return EXIT_OK;
}

static int cmd_config_reference(cli *c)
{
    (void)c;
    config_write_reference(stdout);
    return EXIT_OK;
}

static const cli_opt functions_opts[] = {
    {"markdown", 0, NULL, 0, "print the function reference (docs/functions.md) instead"},
    {NULL, 0, NULL, 0, NULL},
};

static const cli_opt run_opts[] = {
    {"vault", 0, "JSON", 0, "the parameters, as in a queue item's vault"},
    {"vault-file", 0, "PATH", 0, "read the vault from a file (- for stdin)"},
    {NULL, 0, NULL, 0, NULL},
};

static const cli_opt no_opts[] = {{NULL, 0, NULL, 0, NULL}};

const cli_command cli_plugin_commands[] = {
    {"functions", NULL, "[NAME]", 0, 1, functions_opts, cmd_functions,
     "list the queue functions the plugin directory provides, or describe one"},
    {"plugins", NULL, NULL, 0, 0, no_opts, cmd_plugins,
     "list plugin files: loaded, or refused and why"},
    {"run", NULL, "FUNCTION", 1, 1, run_opts, cmd_run,
     "run one function once, here, in a worker, without the queue (for plugin authors)"},
    {"config", "show", NULL, 0, 0, no_opts, cmd_config_show,
     "print the effective configuration (secrets hidden)"},
    {"config", "reference", NULL, 0, 0, no_opts, cmd_config_reference,
     "print the configuration reference (docs/configuration.md)"},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL},
};
