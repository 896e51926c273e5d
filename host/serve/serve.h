/*
 * The host: claims this bridge's queue items from the store and runs them in workers;
 * owns order, leases, timeouts, retries, fallbacks, notifications and results.
 */
#ifndef FERRY_SERVE_H
#define FERRY_SERVE_H

#include "config.h"

typedef struct serve_options {
    int drain; /* exit once the bridge has nothing left to run */
} serve_options;

/* Runs until SIGTERM/SIGINT (or, with drain, until the bridge is empty). 0 or -1. */
int serve_run(const ferry_config *cfg, const serve_options *opts);

#endif
