/* Running a command on a machine: local fork/exec now; OpenSSH for remote machines. */
#ifndef FERRY_EXEC_H
#define FERRY_EXEC_H

#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

typedef struct exec_hooks {
    int (*cancelled)(void *arg); /* polled while the command runs; non-zero stops it */
    void *cancelled_arg;
    void (*on_pgroup)(void *arg, pid_t pgid); /* told the command's process group */
    void *on_pgroup_arg;
    int64_t deadline_ms; /* the attempt's deadline (epoch ms), 0 = none */
} exec_hooks;

/*
 * Runs command with /bin/sh -c on the machine described by machine (borrowed; NULL or
 * {"local":true} runs it here). options (borrowed, may be NULL): timeout (s), stdin (text),
 * max_output (bytes, default 1 MiB), env (object), cwd. The command runs in a process group
 * of its own, killed (SIGTERM, then SIGKILL after 2 s) on timeout or cancel.
 * Returns a new {"exit_code","signal","output","truncated","timed_out","duration_ms"} or
 * NULL with err set when it could not be started.
 */
json_t *exec_on_machine(const json_t *machine, const char *command, const json_t *options,
                        const exec_hooks *hooks, char *err, size_t errlen);

/* Non-zero when a machine description or vault says the machine is this one. */
int exec_machine_is_local(const json_t *machine);

#endif
