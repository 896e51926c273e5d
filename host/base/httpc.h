/* The HTTP helper behind the plugins' http service (libcurl). */
#ifndef FERRY_HTTPC_H
#define FERRY_HTTPC_H

#include <stdint.h>

#include <jansson.h>

/*
 * Makes one request: req (borrowed) is {"method","url","headers":{},"body","timeout"}.
 * deadline_ms (epoch ms, 0 = none) caps the timeout. Returns a new
 * {"status","headers":{},"body","duration_ms"} or NULL with err set on a transport error.
 * The response body is capped at 16 MiB.
 */
json_t *httpc_request(const json_t *req, int64_t deadline_ms, char *err, size_t errlen);

#endif
