/*
 * ferry web: the HTTP server of the dashboard, the JSON API (docs/api.md), /metrics and
 * /healthz, on libmicrohttpd (loaded on first use, lazy_mhd.c). A process of its own on the
 * store the hosts use, so that a bug here cannot take a host down.
 *
 * One thread per connection (MHD_USE_THREAD_PER_CONNECTION), so that a long event stream
 * never holds up a scrape; the threads share a small pool of store handles, each used by
 * one thread at a time (store.h: a handle must not be shared across threads).
 * Files: web.c (the server, limits, sessions, authentication), api.c (the /api/v1 routes,
 * run through the command line's own command functions so that the shapes are one),
 * metrics.c (/metrics, /healthz, /api/v1/summary, /api/v1/events).
 */
#ifndef FERRY_WEB_H
#define FERRY_WEB_H

#include "config.h"

/* Runs the server until SIGTERM or SIGINT. listen overrides web.listen (NULL: the
 * config's). Returns 0, or -1 after logging why it could not start. */
int web_run(const ferry_config *cfg, const char *listen);

/* Splits "ADDR:PORT" or "[ADDR6]:PORT" into addr (a numeric address) and *port. 0, or -1
 * when it is not one. */
int web_parse_listen(const char *text, char *addr, size_t addrlen, int *port);

#endif
