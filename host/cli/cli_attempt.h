/*
 * One attempt run here, in a worker, without the queue: what `ferry run` and `ferry repo`
 * share (cli_attempt.c).
 */
#ifndef FERRY_CLI_ATTEMPT_H
#define FERRY_CLI_ATTEMPT_H

#include "cli.h"
#include "runner.h"

/* Put this first in the state the runner's callbacks get: they answer requests through r
 * and end the wait by setting done. */
struct cli_attempt {
    runner *r;
    int done;
};

/*
 * Runs spec (borrowed) in one worker, with the configuration's worker settings (memory,
 * PATH, environment, SSH options, limits, grace period), and calls ev's callbacks with a as
 * their ud until one of them sets a->done (the done callback, at the latest). The worker is
 * gone when this returns; a->r is then NULL.
 */
void cli_run_attempt(cli *c, const struct attempt_spec *spec, const runner_events *ev,
                     struct cli_attempt *a);

#endif
