/*
 * systemd's notification protocol by hand: see sdnotify.h. The protocol is one datagram of
 * "KEY=VALUE" lines to $NOTIFY_SOCKET (a path, or an abstract name written with a leading
 * '@'); libsystemd is not needed for that.
 */
#include "sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sdnotify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0')
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path))
        return -1;
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)strlen(state) ? 1 : -1;
}

void sdnotify_watchdog(int64_t now_ms)
{
    static int64_t interval_ms = -1, last_ms;
    if (interval_ms < 0) {
        const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
        interval_ms = 0;
        if (usec && (pid == NULL || atol(pid) == (long)getpid()))
            interval_ms = atoll(usec) / 1000 / 2;
    }
    if (interval_ms <= 0 || now_ms - last_ms < interval_ms)
        return;
    last_ms = now_ms;
    sdnotify("WATCHDOG=1");
}
