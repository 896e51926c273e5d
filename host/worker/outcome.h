/*
 * How an attempt ended, in one typed shape from the worker's "done" message to the store:
 * the kind (what the function returned, or what the runner saw), why it stopped when the
 * function did not end by itself, the error code and one-line message, the function's
 * result. The runner fills it; policy.c decides from it; the host records it.
 */
#ifndef FERRY_OUTCOME_H
#define FERRY_OUTCOME_H

#include <stdint.h>

#include <jansson.h>

enum outcome_kind {
    OUTCOME_OK,          /* the function returned FERRY_OK */
    OUTCOME_RETRY,       /* FERRY_RETRY */
    OUTCOME_FAIL,        /* FERRY_FAIL */
    OUTCOME_INVALID,     /* FERRY_INVALID */
    OUTCOME_TIMEOUT,     /* the deadline passed; the worker was stopped */
    OUTCOME_CRASHED,     /* the worker died (signal, exit(), broken protocol) */
    OUTCOME_CANCELLED,   /* cancelled, or interrupted by the host's shutdown (see stop) */
    OUTCOME_UNAVAILABLE, /* the plugin or function could not be loaded in the worker */
};

/* Why an attempt stopped when the function did not end it by itself. */
enum outcome_stop {
    STOP_NONE,        /* the function returned */
    STOP_CANCEL,      /* a person or script cancelled the item */
    STOP_SHUTDOWN,    /* the host is stopping: the item goes back to the queue */
    STOP_DEADLINE,    /* the timeout passed */
    STOP_WORKER_DIED, /* a signal or exit() ended the worker */
    STOP_PROTOCOL,    /* the worker broke the protocol */
    STOP_LIMIT,       /* the attempt went over its memory, CPU time or process limit */
};

struct outcome {
    enum outcome_kind kind;
    enum outcome_stop stop;
    const char *code;    /* error code, NULL on success; borrowed */
    const char *message; /* one line, NULL on success; borrowed */
    json_t *result;      /* the function's result or NULL; borrowed */
    int64_t duration_ms;
};

/* "OK", "RETRY", "FAIL", "INVALID", "TIMEOUT", "CRASHED", "CANCELLED", "UNAVAILABLE". */
const char *outcome_kind_name(enum outcome_kind kind);

#endif
