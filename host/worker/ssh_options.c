/*
 * A machine's ssh_options, checked before ssh runs on the bridge. See ssh_options.h.
 */
#include "ssh_options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Keywords that make ssh run a command, load a library or read further configuration on the
 * bridge: the host's own machine, not the target. */
static const char *const command_keywords[] = {
    "ProxyCommand",        /* runs a command through the shell */
    "LocalCommand",        /* runs a command after connecting */
    "PermitLocalCommand",  /* enables LocalCommand */
    "KnownHostsCommand",   /* runs a command to list host keys */
    "Match",               /* "Match exec" runs a command */
    "Include",             /* reads a config file, which may hold any of these */
    "PKCS11Provider",      /* loads a shared library into ssh */
    "SecurityKeyProvider", /* loads a shared library into ssh */
    "XAuthLocation",       /* runs a program when X11 forwarding is asked */
};

/* A ProxyJump value: "none", or [user@]host[:port] hops separated by commas, none starting
 * with '-', of characters a host, user or port may hold. */
static int jump_ok(const char *v)
{
    if (*v == '\0')
        return 0;
    if (strcasecmp(v, "none") == 0)
        return 1;
    for (const char *p = v; *p; p++) {
        if ((p == v || p[-1] == ',' || p[-1] == '@') && *p == '-')
            return 0;
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("._-@:,[]", *p)))
            return 0;
    }
    return 1;
}

int ssh_option_check(const char *machine, const char *opt, int allow_commands, char *err,
                     size_t errlen)
{
    const char *k = opt + strspn(opt, " \t");
    size_t klen = strcspn(k, " \t=");
    const char *v = k + klen;
    v += strspn(v, " \t");
    if (*v == '=')
        v++;
    v += strspn(v, " \t");
    int word = klen > 0;
    for (size_t i = 0; i < klen; i++)
        if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') ||
              (k[i] >= '0' && k[i] <= '9')))
            word = 0; /* quotes or anything else ssh might read past */
    if (!word || *v == '\0') {
        snprintf(err, errlen,
                 "machine %s: ssh_options must be a short list of \"Option=value\" strings",
                 machine);
        return -1;
    }
    for (size_t i = 0; i < sizeof(command_keywords) / sizeof(command_keywords[0]); i++) {
        if (strlen(command_keywords[i]) == klen && strncasecmp(k, command_keywords[i], klen) == 0 &&
            !allow_commands) {
            snprintf(err, errlen,
                     "machine %s: ssh_options %s is refused: it runs commands or loads code on "
                     "the bridge (set ssh = { allow_command_options = true; } in the host's "
                     "config to allow it)",
                     machine, command_keywords[i]);
            return -1;
        }
    }
    if (klen == 9 && strncasecmp(k, "ProxyJump", 9) == 0 && !allow_commands && !jump_ok(v)) {
        snprintf(err, errlen,
                 "machine %s: ssh_options ProxyJump must be [user@]host[:port] hops separated "
                 "by commas",
                 machine);
        return -1;
    }
    return 0;
}

int ssh_command_options_allowed(void)
{
    const char *v = getenv(SSH_ALLOW_COMMAND_OPTIONS_ENV);
    return v != NULL && strcmp(v, "1") == 0;
}
