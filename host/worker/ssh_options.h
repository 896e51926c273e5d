/*
 * A machine's ssh_options, checked before ssh runs on the bridge (issue 17, point 3): options
 * that make ssh run a command, load code or read more configuration on the bridge itself are
 * refused unless the host's config allows them (ssh.allow_command_options). See
 * docs/machines.md, "ssh_options".
 */
#ifndef FERRY_SSH_OPTIONS_H
#define FERRY_SSH_OPTIONS_H

#include <stddef.h>

/* The environment variable through which the host tells its workers that
 * ssh.allow_command_options is true (set by the runner from the config only). */
#define SSH_ALLOW_COMMAND_OPTIONS_ENV "FERRY_SSH_ALLOW_COMMAND_OPTIONS"

/*
 * Checks one "Option=value" (or "Option value") string as ssh's -o reads it: the keyword is
 * case-insensitive and ends at the first space, tab or '='. Returns 0 when it may be used,
 * or -1 with a one-line reason in err. allow_commands: ssh.allow_command_options.
 */
int ssh_option_check(const char *machine, const char *opt, int allow_commands, char *err,
                     size_t errlen);

/* ssh.allow_command_options as the worker sees it (SSH_ALLOW_COMMAND_OPTIONS_ENV). */
int ssh_command_options_allowed(void);

#endif
