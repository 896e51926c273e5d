/*
 * The worker process: runs plugin functions, one attempt at a time, for the host. It is
 * started by the runner (runner_spawn.c) and talks to it over one socket. The messages (run,
 * reply, log, progress, call, storage, pgroup, exit, done) are built and parsed by proto.h,
 * whose PROTO_OPS table is the list; docs/protocol.md describes each.
 *
 * Every meaning travels in these messages, never in the worker's exit status (a plugin can
 * call exit() with any status). The worker's stderr is a pipe the runner reads into the
 * running attempt's trace.
 *
 * SIGUSR1 tells the running function it is cancelled (ferry_cancelled() turns true);
 * SIGTERM and SIGKILL end the worker.
 */
#ifndef FERRY_WORKER_H
#define FERRY_WORKER_H

#include <ferry/plugin.h>

/* How the runner starts a worker: `ferry WORKER_ARGV1 HOST_PID MEMORY_MB`, socket on fd 3
 * (the worker moves it to a higher, close-on-exec descriptor before any plugin runs). */
#define WORKER_ARGV1 "__worker"
#define WORKER_FD    3

/*
 * The worker program's entry, called by main() before anything else when argv[1] is
 * WORKER_ARGV1. Never returns.
 */
void worker_process_main(int argc, char **argv) __attribute__((noreturn));

/* Options fixed when a worker is started. */
typedef struct worker_opts {
    int memory_limit_mb; /* RLIMIT_AS; 0 = none */
} worker_opts;

/* The worker's main loop on socket fd sock. Never returns. */
void worker_main(int sock, const worker_opts *opts) __attribute__((noreturn));

/* The services table handed to plugins (also to init() in probes). */
const ferry_host *worker_host_table(void);

/* Result names used on the wire and in the store. */
const char *worker_code_name(ferry_result code);

#endif
