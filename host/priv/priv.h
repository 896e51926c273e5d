/*
 * ferry-priv: the small privileged helper that starts workers as another user (issue 17,
 * point 3; docs/security.md, "Least privilege"). The host runs as the unprivileged ferry
 * user; an attempt whose function or machine names another user (`run_as`) gets a worker
 * started by this helper, which runs as root, checks who asks (SO_PEERCRED) against its own
 * root-owned policy file, and never trusts the request beyond the names it checks.
 *
 * One connection (SOCK_SEQPACKET) is one worker:
 *   host -> helper  "ferry-priv 1\nfunction F\nuser U\nmemory_mb N\nenv K=V\n..."
 *   helper -> host  "ok PID" with SCM_RIGHTS [worker socket, its stderr, pidfd of the worker]
 *                   or "refused: WHY"
 * then, while the worker lives, the connection is its keeper's control line:
 *   host -> keeper  "term" (SIGTERM to every process group of the worker's tree),
 *                   "kill" (SIGKILL to the whole tree), "cancel ID" (SIGUSR1 with ID)
 *   keeper -> host  "exit STATUS" (wait status) when the worker ended
 * The host closing it (it retired the worker, or died) kills the worker's tree.
 */
#ifndef FERRY_PRIV_H
#define FERRY_PRIV_H

#include <stddef.h>
#include <sys/types.h>

#include "proto.h"

#define PRIV_ARGV1          "priv"
#define PRIV_DEFAULT_SOCKET "/run/ferry-priv.sock"
#define PRIV_DEFAULT_POLICY "/etc/ferry/priv.conf"
#define PRIV_MSG_MAX        8192
#define PRIV_NAME_MAX       32

/* The helper's entry (`ferry priv ...`), called by main() before anything else. */
void priv_main(int argc, char **argv) __attribute__((noreturn));

/* A user name the helper considers at all: [A-Za-z_][A-Za-z0-9_.-]*, at most 32 bytes, no
 * "..". A function name: [A-Za-z0-9_.-], 1..128 bytes, not starting with '.'. */
int priv_user_name_ok(const char *s);
int priv_function_name_ok(const char *s);

/*
 * Worker side: a worker the helper started is pinned to one function and one plugin
 * directory (FERRY_PRIV_FUNCTION, FERRY_PRIV_PLUGIN_DIR, set by the helper only); a root
 * worker runs no pre_hook or post_hook. Returns 0 when spec may run here, else -1 with why.
 * A worker the runner started itself (no FERRY_PRIV_FUNCTION) allows everything.
 */
int priv_worker_allows(const struct attempt_spec *spec, char *why, size_t len);

#endif
