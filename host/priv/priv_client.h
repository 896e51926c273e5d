/*
 * The host's side of ferry-priv (priv.h): which user an attempt runs as, and asking the
 * helper for a worker running as that user. Used by the runner only.
 */
#ifndef FERRY_PRIV_CLIENT_H
#define FERRY_PRIV_CLIENT_H

#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

/*
 * The user function runs as: the entry of map ("FUNCTION=USER ...", workers.run_as) for it,
 * else the machine's run_as (its vault's facts), else none. user is set to "" when it is
 * none or the host's own user (no helper needed). Returns 0, or -1 with why (a name that is
 * not a user name, a user this machine does not have).
 */
int priv_user_for(const char *map, const char *function, const json_t *machine, char *user,
                  size_t ulen, char *why, size_t wlen);

/* A worker ferry-priv started: its pid, socket, stderr, pidfd, and its keeper's control. */
struct priv_worker {
    pid_t pid;
    int sock, errfd, pidfd, ctl;
};

/*
 * Asks the helper at socket_path for a worker running function as user (env: the host's
 * workers' environment, which the helper filters). Returns 0, or -1 with why: the helper
 * is not there (with the fix), or it refused (its reason).
 */
int priv_spawn(const char *socket_path, const char *function, const char *user, int memory_mb,
               char *const *env, struct priv_worker *out, char *why, size_t wlen);

/* Tells the keeper "term", "kill" or "cancel ID"; never blocks for long. */
void priv_ctl(int ctl, const char *what);

/* The worker's wait status from its keeper, waiting up to timeout_ms. Returns 0 or -1. */
int priv_exit_status(int ctl, int timeout_ms, int *status);

#endif
