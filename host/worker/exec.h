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
    /* Readable from the moment cancelled() turns true, so that a stream's watcher looks at
     * once rather than at its next tick; 0 (left out) for none: never stdin. */
    int cancel_fd;
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

/*
 * The streaming exec (ferry_host.exec_start / exec_wait, ABI 1.2; exec_stream.c): starts
 * command on the machine as exec_on_machine() would, with its stdin and stdout handed to the
 * caller as blocking, close-on-exec pipes (*to_cmd to write, *from_cmd to read) and its
 * stderr kept apart (the last 64 KiB). options: timeout, env, cwd ("stdin" and "max_output"
 * are refused). A watcher thread reads the stderr and stops the command (SIGTERM, then
 * SIGKILL, to its process group; over SSH the remote side follows) on the timeout, the
 * hooks' deadline or cancel, or exec_stream_wait(stop), so that a caller blocked on the pipes
 * wakes up. hooks (copied; cancelled is called from the watcher thread) must stay valid
 * until the stream is waited. Returns a handle (never 0), or 0 with err set.
 */
uintptr_t exec_stream_start(const json_t *machine, const char *command, const json_t *options,
                            const exec_hooks *hooks, int *to_cmd, int *from_cmd, char *err,
                            size_t errlen);

/*
 * Waits for a stream to end (stopping it first when stop is non-zero) and frees it. Returns
 * a new {"exit_code","signal","output","truncated","duration_ms","stopped"} ("stopped":
 * "timeout", "cancelled", "stop" or null), or NULL with err set when handle is not a live
 * stream (0, never returned, or already waited) or the SSH connection failed.
 */
json_t *exec_stream_wait(uintptr_t handle, int stop, char *err, size_t errlen);

/* An attempt's end: stops and frees every stream not waited yet, then ends the attempt's
 * shared SSH connection (exec_ssh_end_attempt()). Returns how many streams it stopped. */
int exec_stream_end_all(void);

/* --- shared by exec.c, exec_ssh.c and exec_stream.c ------------------------------------- */

/* What exec_spawn() and exec_fork() start. */
typedef struct exec_spawn_spec {
    char *const *argv;      /* argv[0] is looked up on PATH */
    const char *cwd;        /* changed into in the child, or NULL */
    const json_t *env;      /* {"NAME":"value"} set in the child, or NULL */
    const char *stdin_text; /* written to the child's stdin, or NULL for none */
    /* Keep the child's stdin open (after stdin_text) until its output ends: the SSH remote
     * wrapper reads end-of-file on it as "the client is gone". */
    int hold_stdin;
    int split_stderr; /* exec_fork(): the child's stderr gets a pipe of its own */
} exec_spawn_spec;

/* The local command line of command: /bin/sh -c command (argv: 4 slots) in options' cwd
 * with options' env. */
void exec_local_spec(exec_spawn_spec *spec, char *argv[4], const char *command,
                     const json_t *options);

/*
 * Forks spec->argv in a process group of its own (pgid = the returned pid): fds[0] is its
 * stdin (ours to write), fds[1] its stdout (ours to read), fds[2] its stderr (ours to read)
 * with spec->split_stderr, else -1 and stderr joins stdout. All three are close-on-exec.
 * Returns the pid, or -1 with errno set.
 */
pid_t exec_fork(const exec_spawn_spec *spec, int fds[3]);

/* The stopping side of a running command: deadline, cancel check, escalation. */
typedef struct exec_stopper {
    pid_t pgid;
    int64_t stop_at, kill_at; /* mono_ms(); stop_at 0 = no time limit */
    int requested;            /* set by the caller: stop now */
    int killing, killed, timed_out;
    const char *why; /* once killing: "timeout", "cancelled" or "stop" */
} exec_stopper;

/* When a command started at start (mono_ms) must stop: the earlier of options' timeout and
 * the hooks' deadline; 0 for never. */
int64_t exec_stop_time(int64_t start, const json_t *options, const exec_hooks *hooks);

/* Called every turn: SIGTERM to the group once it must stop, SIGKILL after the grace. */
void exec_police(exec_stopper *s, const exec_hooks *hooks);

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
 * (mode 0600, never on disk) that vanish with the process. The commands of one attempt to
 * one machine are sessions of one connection (an OpenSSH master started by the first of
 * them, ended by exec_ssh_end_attempt(); exec_ssh.c). Returns as exec_on_machine().
 */
json_t *exec_ssh(const json_t *machine, const char *command, const json_t *options,
                 const exec_hooks *hooks, char *err, size_t errlen);

/*
 * The pieces of exec_ssh(), for exec_stream.c too. exec_ssh_prepare() makes the ssh command
 * line (its key and host keys in memfds, which live as long as the returned object) for
 * command with options' cwd and env; streaming selects the remote wrapper whose stdin and
 * stdout are the command's, and which watches its sshd session instead of stdin (exec_ssh.c).
 * NULL with err set on a bad machine description.
 */
typedef struct exec_ssh_cmd exec_ssh_cmd;
exec_ssh_cmd *exec_ssh_prepare(const json_t *machine, const char *command, const json_t *options,
                               const exec_hooks *hooks, size_t stdin_len, int streaming, char *err,
                               size_t errlen);
char *const *exec_ssh_argv(exec_ssh_cmd *c);
/* After ssh ended with exit_code (killed: we stopped it): non-zero when ssh itself failed
 * (exit 255 with a diagnostic), err then says why and names the machine. */
int exec_ssh_failed(exec_ssh_cmd *c, int exit_code, int killed, char *err, size_t errlen);
void exec_ssh_free(exec_ssh_cmd *c);

/* A streaming command that ran over the attempt's shared connection outlives its ssh client
 * (the connection stays up for the other commands): kills the remote process group pgid
 * (SIGTERM, SIGKILL 2 s later), reported by the stream wrapper, through that connection.
 * 1 when it did, 0 when c had a connection of its own (its wrapper sees it end), -1 when the
 * kill could not be sent. */
int exec_ssh_stop_remote(exec_ssh_cmd *c, int pgid);

/* Ends the attempt's shared SSH connection, if one was opened (the master started by the
 * attempt's first SSH command, exec_ssh.c), and removes its control socket's directory. Called
 * by exec_stream_end_all() at the attempt's end, after its commands have ended. */
void exec_ssh_end_attempt(void);

#endif
