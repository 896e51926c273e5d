/*
 * An out-of-tree ferry plugin: one function, `greet`, with a required parameter, a
 * defaulted one, a secret one and a config section. Build it with the Makefile beside it.
 * It is C99 and C++20 alike (designated initializers in declaration order, every member of
 * a function descriptor given), clean under -Wall -Wextra -Wpedantic.
 */
#include <stdio.h>
#include <string.h>

#include <ferry/plugin.h>

static char greeting[64] = "Hello";

/* init copies what it needs from the plugin's config section: {"greeting": "Hi"}. */
static int greeter_init(const ferry_host *host, const json_t *config, char *err, size_t errlen)
{
    if (host->abi_major != FERRY_ABI_MAJOR) {
        snprintf(err, errlen, "host ABI %u is not %d", host->abi_major, FERRY_ABI_MAJOR);
        return -1;
    }
    const char *g = json_string_value(json_object_get(config, "greeting"));
    if (g != NULL)
        snprintf(greeting, sizeof(greeting), "%s", g);
    return 0;
}

static ferry_result greet(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    const char *who = json_string_value(json_object_get(params, "who"));
    json_int_t times = json_integer_value(json_object_get(params, "times"));
    if (times < 1 || times > 10) {
        ferry_set_error(ctx, "bad_parameter", "times must be 1 to 10, not %lld", (long long)times);
        return FERRY_INVALID;
    }
    /* The task id is the same for every attempt of the item: a key for "done already?". */
    ferry_log(ctx, FERRY_LOG_DEBUG, "task %s, attempt %d", ferry_task_id(ctx), ferry_attempt(ctx));
    json_t *lines = json_array();
    for (json_int_t i = 0; i < times; i++) {
        char line[256];
        snprintf(line, sizeof(line), "%s, %s!", greeting, who);
        ferry_log(ctx, FERRY_LOG_INFO, "%s", line);
        ferry_progress(ctx, (int)((i + 1) * 100 / times), line);
        json_array_append_new(lines, json_string(line));
    }
    *result = json_pack("{s:o}", "greetings", lines);
    return FERRY_OK;
}

static const ferry_param greet_params[] = {
    {"who", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL, "Whom to greet."},
    {"times", FERRY_PARAM_INTEGER, 0, "1", "How many greetings (1-10)."},
    {"token", FERRY_PARAM_STRING, FERRY_PARAM_SECRET, NULL,
     "An example secret: redacted in listings and traces."},
    FERRY_PARAM_END,
};

static const ferry_function greet_fn = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_IDEMPOTENT,
    .name = "greet",
    .summary = "Greet someone (the SDK's example plugin)",
    .description = "Logs a greeting for `who`, `times` times, and returns the greetings.",
    FERRY_PARAMS(greet_params),
    .default_timeout = 30,
    .run = greet,
};

static const ferry_function *const functions[] = {&greet_fn, NULL};

FERRY_PLUGIN(.name = "greeter", .version = "1.0.0", .summary = "The SDK's example plugin",
             .functions = functions, .init = greeter_init)
