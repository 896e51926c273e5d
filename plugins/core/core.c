/*
 * The core plugin: the simplest functions, useful to check that a bridge and a machine
 * work end to end.
 */
#include <string.h>
#include <unistd.h>

#include <ferry/plugin.h>

static ferry_result hello_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    const char *name = json_string_value(json_object_get(params, "name"));
    json_t *machine = ctx->host->machine(ctx);
    char hostname[256] = "";
    if (machine == NULL || json_is_true(json_object_get(machine, "local"))) {
        gethostname(hostname, sizeof(hostname) - 1);
    } else {
        json_t *out = ferry_exec(ctx, "hostname", NULL);
        if (out == NULL) {
            json_decref(machine);
            return FERRY_RETRY; /* the exec service set the error: unreachable machine */
        }
        const char *text = json_string_value(json_object_get(out, "output"));
        strncpy(hostname, text ? text : "", sizeof(hostname) - 1);
        hostname[strcspn(hostname, "\r\n")] = '\0';
        json_decref(out);
    }
    const char *mname = json_string_value(json_object_get(machine, "name"));
    char greeting[512];
    snprintf(greeting, sizeof(greeting), "hello%s%s from %s", name ? ", " : "", name ? name : "",
             hostname);
    ferry_log(ctx, FERRY_LOG_INFO, "%s", greeting);
    *result = json_pack("{s:s,s:s,s:s?}", "message", greeting, "hostname", hostname, "machine",
                        mname);
    json_decref(machine);
    return FERRY_OK;
}

static ferry_result log_message_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    const char *message = json_string_value(json_object_get(params, "message"));
    const char *level = json_string_value(json_object_get(params, "level"));
    ferry_log_level lv = FERRY_LOG_INFO;
    if (strcmp(level, "debug") == 0)
        lv = FERRY_LOG_DEBUG;
    else if (strcmp(level, "warn") == 0)
        lv = FERRY_LOG_WARN;
    else if (strcmp(level, "error") == 0)
        lv = FERRY_LOG_ERROR;
    else if (strcmp(level, "info") != 0) {
        ferry_set_error(ctx, "bad_parameter", "level must be debug, info, warn or error, not '%s'",
                        level);
        return FERRY_INVALID;
    }
    ferry_log(ctx, lv, "%s", message);
    *result = json_pack("{s:s,s:s}", "message", message, "level", level);
    return FERRY_OK;
}

static const ferry_param hello_params[] = {
    {"name", FERRY_PARAM_STRING, 0, NULL, "Who to greet; the greeting names the machine either way."},
    {NULL, 0, 0, NULL, NULL},
};

static const ferry_param log_message_params[] = {
    {"message", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL,
     "The text written into the job's trace and returned as the result."},
    {"level", FERRY_PARAM_STRING, 0, "\"info\"", "Trace level: debug, info, warn or error."},
    {NULL, 0, 0, NULL, NULL},
};

static const ferry_function hello = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_IDEMPOTENT,
    .name = "hello",
    .summary = "Say hello from the machine's hostname",
    .description = "Answers with the machine's hostname: run locally for a local machine, "
                   "through the exec service (SSH) for a remote one. The quickest check that "
                   "a bridge, its host and a machine work end to end.",
    FERRY_PARAMS(hello_params),
    .default_timeout = 60,
    .run = hello_run,
};

static const ferry_function log_message = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_IDEMPOTENT,
    .name = "log_message",
    .summary = "Write a message into the job's trace",
    .description = "Records `message` in the trace at `level` and returns it as the result; "
                   "the seed's conditional jobs use it for their quiet branch.",
    FERRY_PARAMS(log_message_params),
    .default_timeout = 60,
    .run = log_message_run,
};

static const ferry_function *const core_functions[] = {&hello, &log_message, NULL};

FERRY_PLUGIN(.name = "core", .version = "1.0.0",
             .summary = "hello and log_message: the smallest functions",
             .functions = core_functions)
