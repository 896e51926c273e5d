/*
 * Running a command on a machine: fork/exec of /bin/sh -c for the local machine, the OpenSSH
 * client for every other one (loopback addresses included). See docs/machines.md.
 */
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
    const char *ssh_key; /* the attempt's SSH private key (PEM or base64 of it), or NULL */
} exec_hooks;

/*
 * Runs command with /bin/sh -c on the machine described by machine (borrowed; NULL or
 * {"local":true} runs it here, anything else over SSH: see exec_ssh()). options (borrowed,
 * may be NULL): timeout (s), stdin (text), max_output (bytes, default 1 MiB), env (object),
 * cwd. The command runs in a process group of its own, killed (SIGTERM, then SIGKILL after
 * 2 s) on timeout or cancel; over SSH, killing the client makes the remote side kill the
 * remote command's process group too.
 * Returns a new {"exit_code","signal","output","truncated","timed_out","duration_ms"} or
 * NULL with err set when it could not be started (for SSH: the connection failed). err never
 * contains key material.
 */
json_t *exec_on_machine(const json_t *machine, const char *command, const json_t *options,
                        const exec_hooks *hooks, char *err, size_t errlen);

/* Non-zero when a machine description or vault says the machine is this one. */
int exec_machine_is_local(const json_t *machine);

/* --- shared by exec.c and exec_ssh.c ---------------------------------------------------- */

/* What exec_spawn() starts. */
typedef struct exec_spawn_spec {
    char *const *argv;      /* argv[0] is looked up on PATH */
    const char *cwd;        /* changed into in the child, or NULL */
    const json_t *env;      /* {"NAME":"value"} set in the child, or NULL */
    const char *stdin_text; /* written to the child's stdin, or NULL for none */
    /* Keep the child's stdin open (after stdin_text) until its output ends: the SSH remote
     * wrapper reads end-of-file on it as "the client is gone". */
    int hold_stdin;
} exec_spawn_spec;

/*
 * Starts spec->argv in a process group of its own with stdout and stderr captured together,
 * and waits for it under options' timeout and max_output and the hooks' deadline and cancel
 * check. Returns the result object described at exec_on_machine(), or NULL with err set
 * when the process could not be started.
 */
json_t *exec_spawn(const exec_spawn_spec *spec, const json_t *options, const exec_hooks *hooks,
                   char *err, size_t errlen);

/*
 * Runs command on a remote machine with the OpenSSH client: user@ip (or host) on ssh_port
 * (default 22), the key hooks->ssh_key (else the vault's SSH_PRIVATE_KEY; PEM text
 * or base64 of it), BatchMode, ConnectTimeout (vault connect_timeout, default 10 s), host
 * keys pinned by the vault's known_hosts or host_public_key (StrictHostKeyChecking=yes), else
 * accepted on first use for this connection only. The key and host keys live in memfds
 * (mode 0600, never on disk) that vanish with the process. Returns as exec_on_machine().
 */
json_t *exec_ssh(const json_t *machine, const char *command, const json_t *options,
                 const exec_hooks *hooks, char *err, size_t errlen);

#endif
