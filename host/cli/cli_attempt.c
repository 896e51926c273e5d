/* One attempt run here, in a worker, without the queue: see cli_attempt.h. */
#include "cli_attempt.h"

#include <poll.h>

void cli_run_attempt(cli *c, const struct attempt_spec *spec, const runner_events *ev,
                     struct cli_attempt *a)
{
    runner_opts ro = {.max_workers = 1,
                      .prefork = 0,
                      .max_jobs = 1,
                      .memory_limit_mb = c->cfg.worker_memory_mb,
                      .path = c->cfg.worker_path,
                      .pass_env = c->cfg.worker_pass_env,
                      .ssh_command_options = c->cfg.ssh_allow_command_options,
                      .limits = c->cfg.limits,
                      .fn_limits = c->cfg.fn_limits,
                      .n_fn_limits = c->cfg.n_fn_limits,
                      .grace_ms = c->cfg.grace_seconds * 1000};
    a->done = 0;
    a->r = runner_create(&ro, ev, a);
    runner_start(a->r, spec, NULL, 0);
    while (!a->done) {
        struct pollfd p = {.fd = runner_fd(a->r), .events = POLLIN};
        int wait = runner_timeout_ms(a->r);
        poll(&p, 1, wait < 0 || wait > 200 ? 200 : wait);
        runner_process(a->r);
        runner_tick(a->r);
    }
    runner_free(a->r);
    a->r = NULL;
}
