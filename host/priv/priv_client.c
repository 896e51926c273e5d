/*
 * The host's side of ferry-priv: see priv_client.h.
 */
#include "priv_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "priv.h"

int priv_user_for(const char *map, const char *function, const json_t *machine, char *user,
                  size_t ulen, char *why, size_t wlen)
{
    user[0] = '\0';
    size_t fl = function ? strlen(function) : 0;
    for (const char *p = map; p && *p && fl > 0;) {
        p += strspn(p, " ,\t");
        size_t n = strcspn(p, " ,\t");
        if (n > fl + 1 && strncmp(p, function, fl) == 0 && p[fl] == '=') {
            snprintf(user, ulen, "%.*s", (int)(n - fl - 1), p + fl + 1);
            break;
        }
        p += n;
    }
    const json_t *m =
        user[0] == '\0' && json_is_object(machine) ? json_object_get(machine, "run_as") : NULL;
    if (m && !json_is_null(m)) {
        if (!json_is_string(m) || json_string_length(m) >= ulen) {
            snprintf(why, wlen, "the machine's run_as must be a user name");
            return -1;
        }
        snprintf(user, ulen, "%s", json_string_value(m));
    }
    if (user[0] == '\0')
        return 0;
    if (!priv_user_name_ok(user)) {
        snprintf(why, wlen, "run_as \"%.40s\" is not a user name", user);
        user[0] = '\0';
        return -1;
    }
    struct passwd *pw = getpwnam(user);
    if (pw == NULL) {
        snprintf(why, wlen, "run_as %s: no such user on this machine", user);
        user[0] = '\0';
        return -1;
    }
    if (pw->pw_uid == geteuid())
        user[0] = '\0'; /* the host's own: no helper */
    return 0;
}

static ssize_t recv_fds(int sock, char *buf, size_t len, int *fds, int max, int *nfds)
{
    union {
        char b[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b)};
    ssize_t n;
    while ((n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    *nfds = 0;
    for (struct cmsghdr *c = n >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int got[4];
        memcpy(got, CMSG_DATA(c), sizeof(int) * (size_t)(k < 4 ? k : 4));
        for (int i = 0; i < k && i < 4; i++) {
            if (*nfds < max)
                fds[(*nfds)++] = got[i];
            else
                close(got[i]);
        }
    }
    return n;
}

int priv_spawn(const char *socket_path, const char *function, const char *user, int memory_mb,
               char *const *env, struct priv_worker *out, char *why, size_t wlen)
{
    const char *path = socket_path && *socket_path ? socket_path : PRIV_DEFAULT_SOCKET;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
        int denied = errno == EACCES || errno == EPERM;
        snprintf(why, wlen, "%s must run as %s, %s %s (%s): %s", function, user,
                 denied ? "but the host's user may not reach ferry-priv's socket"
                        : "which needs the privileged helper ferry-priv, but it does not answer at",
                 path, strerror(errno),
                 denied ? "it must be in the socket's group (SocketGroup=ferry in "
                          "ferry-priv.socket)"
                        : "start it (systemctl enable --now ferry-priv.socket; docs/security.md, "
                          "\"Least privilege\")");
        if (s >= 0)
            close(s);
        return -1;
    }
    char req[PRIV_MSG_MAX];
    int len = snprintf(req, sizeof(req), "ferry-priv 1\nfunction %s\nuser %s\nmemory_mb %d\n",
                       function, user, memory_mb);
    for (char *const *e = env; e && *e && len < (int)sizeof(req); e++)
        if (strchr(*e, '\n') == NULL && len + 6 + (int)strlen(*e) < (int)sizeof(req))
            len += snprintf(req + len, sizeof(req) - (size_t)len, "env %s\n", *e);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char ans[1100];
    int fds[3], nfds = 0;
    ssize_t n = send(s, req, (size_t)len, MSG_NOSIGNAL) == len
                    ? recv_fds(s, ans, sizeof(ans) - 1, fds, 3, &nfds)
                    : -1;
    ans[n > 0 ? n : 0] = '\0';
    int pid = 0;
    if (n > 3 && strncmp(ans, "ok ", 3) == 0 && nfds == 3 && (pid = atoi(ans + 3)) > 0) {
        *out = (struct priv_worker){
            .pid = pid, .sock = fds[0], .errfd = fds[1], .pidfd = fds[2], .ctl = s};
        return 0;
    }
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    close(s);
    if (n > 9 && strncmp(ans, "refused: ", 9) == 0)
        snprintf(why, wlen, "ferry-priv refused to start %s as %s: %s", function, user, ans + 9);
    else
        snprintf(why, wlen, "ferry-priv at %s gave no worker for %s as %s (%s)", path, function,
                 user, n < 0 ? strerror(errno) : "it closed the connection");
    return -1;
}

void priv_ctl(int ctl, const char *what)
{
    if (ctl >= 0)
        send(ctl, what, strlen(what), MSG_NOSIGNAL | MSG_DONTWAIT);
}

int priv_exit_status(int ctl, int timeout_ms, int *status)
{
    struct pollfd p = {.fd = ctl, .events = POLLIN};
    while (ctl >= 0 && poll(&p, 1, timeout_ms) > 0) {
        char buf[64];
        ssize_t n = recv(ctl, buf, sizeof(buf) - 1, MSG_DONTWAIT);
        if (n <= 0)
            return -1;
        buf[n] = '\0';
        if (sscanf(buf, "exit %d", status) == 1)
            return 0;
    }
    return -1;
}
