/*
 * health_check: polls an HTTP endpoint through the host's http service until it answers with
 * the expected status, or the tries run out. Used alone, and by other functions through the
 * host's call service (repo_pull's "health_check" parameter).
 *
 * The tries and the pause between them are this function's own parameters: waiting for a
 * service to come up is what the function is for, not a retry of a failed job. The overall
 * limit is the job's timeout (the host-owned "timeout" key, 300 s in the seed's vault): no
 * try starts that could not finish before the deadline.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ops.h"

#define BODY_IN_RESULT 512

static int64_t clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The URL: the endpoint itself when it is one, else scheme://host[:port]endpoint with host
 * defaulting to the machine's ip (127.0.0.1 for the local machine). Returns malloc'd text. */
static char *endpoint_url(ferry_ctx *ctx, const json_t *params)
{
    const char *endpoint = json_string_value(json_object_get(params, "endpoint"));
    if (strstr(endpoint, "://") != NULL)
        return strdup(endpoint);
    const char *scheme = json_string_value(json_object_get(params, "scheme"));
    const char *host = json_string_value(json_object_get(params, "host"));
    json_t *machine = ctx->host->machine(ctx);
    if (host == NULL && machine && !json_is_true(json_object_get(machine, "local")))
        host = json_string_value(json_object_get(machine, "ip"));
    if (host == NULL)
        host = "127.0.0.1";
    char *url = NULL;
    int v6 = strchr(host, ':') != NULL && host[0] != '[';
    ops_appendf(&url, "%s://%s%s%s", scheme, v6 ? "[" : "", host, v6 ? "]" : "");
    json_int_t port = json_integer_value(json_object_get(params, "port"));
    if (port > 0)
        ops_appendf(&url, ":%lld", (long long)port);
    ops_appendf(&url, "%s%s", endpoint[0] == '/' ? "" : "/", endpoint);
    json_decref(machine);
    return url;
}

/* Sleeps up to ms, waking early when the job is cancelled. Returns non-zero if cancelled. */
static int pause_ms(ferry_ctx *ctx, int64_t ms)
{
    int64_t until = clock_ms() + ms;
    while (clock_ms() < until) {
        if (ferry_cancelled(ctx))
            return 1;
        int64_t left = until - clock_ms();
        usleep((useconds_t)(left > 100 ? 100000 : left > 0 ? left * 1000 : 0));
    }
    return ferry_cancelled(ctx);
}

/* One try: 1 when healthy; else 0 with why filled in. *status is the HTTP status or 0. */
static int try_once(ferry_ctx *ctx, const json_t *request, const json_t *params, int *status,
                    json_t **body, char *why, size_t whylen)
{
    json_int_t expected = json_integer_value(json_object_get(params, "expected_status"));
    const char *expect_body = json_string_value(json_object_get(params, "expect_body"));
    json_t *res = ctx->host->http(ctx, request);
    *status = 0;
    if (res == NULL) {
        snprintf(why, whylen, "no answer");
        return 0;
    }
    *status = (int)json_integer_value(json_object_get(res, "status"));
    const char *text = json_string_value(json_object_get(res, "body"));
    json_decref(*body);
    *body = ops_tail(text, BODY_IN_RESULT);
    int healthy = *status == expected;
    if (!healthy)
        snprintf(why, whylen, "HTTP %d, expected %lld", *status, (long long)expected);
    else if (expect_body && (text == NULL || strstr(text, expect_body) == NULL)) {
        snprintf(why, whylen, "HTTP %d but the body lacks '%.100s'", *status, expect_body);
        healthy = 0;
    }
    json_decref(res);
    return healthy;
}

static ferry_result health_check_run(ferry_ctx *ctx, const json_t *params, json_t **result)
{
    char *url = endpoint_url(ctx, params);
    json_int_t retries = json_integer_value(json_object_get(params, "retries"));
    double interval = json_number_value(json_object_get(params, "interval"));
    json_int_t request_timeout = json_integer_value(json_object_get(params, "request_timeout"));
    const char *method = json_string_value(json_object_get(params, "method"));
    if (retries < 0 || interval < 0 || request_timeout <= 0) {
        ferry_set_error(ctx, "bad_parameter",
                        "retries and interval must be >= 0 and request_timeout > 0");
        free(url);
        return FERRY_INVALID;
    }
    int64_t deadline = ctx->host->deadline(ctx), start = clock_ms();
    json_t *request = json_pack("{s:s,s:s,s:O?}", "url", url, "method", method, "headers",
                                json_object_get(params, "headers"));
    json_t *body = NULL;
    char why[256] = "not tried";
    int status = 0, healthy = 0, tries = 0;
    for (;;) {
        json_int_t t = request_timeout;
        if (deadline > 0) {
            int64_t left_s = (deadline - clock_ms() - 500) / 1000;
            if (left_s < 1)
                break; /* no time left for another try before the job's deadline */
            if (left_s < t)
                t = left_s;
        }
        json_object_set_new(request, "timeout", json_integer(t));
        tries++;
        healthy = try_once(ctx, request, params, &status, &body, why, sizeof(why));
        ferry_log(ctx, healthy ? FERRY_LOG_INFO : FERRY_LOG_WARN, "%s %s: try %d: %s", method, url,
                  tries, healthy ? "healthy" : why);
        if (healthy || tries > retries)
            break;
        ferry_progress(ctx, -1, why);
        if (pause_ms(ctx, (int64_t)(interval * 1000)))
            break;
    }
    *result = json_pack("{s:s,s:b,s:i,s:i,s:I,s:o}", "url", url, "healthy", healthy, "status",
                        status, "attempts", tries, "duration_ms", (json_int_t)(clock_ms() - start),
                        "body", body ? body : json_string(""));
    if (!healthy)
        ferry_set_error(ctx, "unhealthy", "%s %s: %s after %d tr%s", method, url, why, tries,
                        tries == 1 ? "y" : "ies");
    json_decref(request);
    free(url);
    return healthy ? FERRY_OK : FERRY_FAIL;
}

static const ferry_param health_check_params[] = {
    {"endpoint", FERRY_PARAM_STRING, FERRY_PARAM_REQUIRED, NULL,
     "A URL, or a path such as /health on the machine (see host, port, scheme)."},
    {"host", FERRY_PARAM_STRING, 0, NULL,
     "Host for a path endpoint; default the machine's ip (127.0.0.1 for the local machine)."},
    {"port", FERRY_PARAM_INTEGER, 0, NULL, "Port for a path endpoint; default the scheme's."},
    {"scheme", FERRY_PARAM_STRING, 0, "\"http\"", "http or https, for a path endpoint."},
    {"method", FERRY_PARAM_STRING, 0, "\"GET\"", "HTTP method."},
    {"headers", FERRY_PARAM_OBJECT, 0, NULL, "Request headers: {\"Name\": \"value\"}."},
    {"expected_status", FERRY_PARAM_INTEGER, 0, "200", "The status that means healthy."},
    {"expect_body", FERRY_PARAM_STRING, 0, NULL,
     "Text the response body must contain as well, if given."},
    {"retries", FERRY_PARAM_INTEGER, 0, "3",
     "Tries after the first one before the check fails (the job's timeout bounds them all)."},
    {"interval", FERRY_PARAM_NUMBER, 0, "2", "Seconds between tries."},
    {"request_timeout", FERRY_PARAM_INTEGER, 0, "10", "Seconds one request may take."},
    {NULL, 0, 0, NULL, NULL},
};

const ferry_function ops_fn_health_check = {
    FERRY_FUNCTION_INIT,
    .flags = FERRY_FN_IDEMPOTENT,
    .name = "health_check",
    .summary = "Wait until an HTTP endpoint answers with the expected status",
    .description =
        "Requests `endpoint` through the host's HTTP service until it answers with "
        "`expected_status` (and contains `expect_body`), trying `retries` more times "
        "`interval` seconds apart; the vault's `timeout` bounds the whole check. Fails "
        "(FAIL) when the tries run out. Other functions call it through the host, e.g. "
        "repo_pull's `health_check` parameter: {\"endpoint\": \"/health\", \"timeout\": 300, "
        "\"retries\": 5}.",
    FERRY_PARAMS(health_check_params),
    .default_timeout = 300,
    .run = health_check_run,
};
