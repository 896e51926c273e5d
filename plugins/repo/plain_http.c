/* Plain http and credentials: see plain_http.h. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "plain_http.h"

int plain_http_loopback(const char *host)
{
    if (host == NULL || host[0] == '\0')
        return 0;
    size_t n = strlen(host);
    if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0 ||
        (n > 10 && strcasecmp(host + n - 10, ".localhost") == 0))
        return 1;
    char bare[64];
    if (host[0] == '[') {
        if (n < 3 || n - 2 >= sizeof(bare) || host[n - 1] != ']')
            return 0;
        memcpy(bare, host + 1, n - 2);
        bare[n - 2] = '\0';
    } else {
        if (n >= sizeof(bare))
            return 0;
        memcpy(bare, host, n + 1);
    }
    struct in_addr a4;
    if (inet_pton(AF_INET, bare, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, bare, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return 0;
}

void plain_http_host(const char *url, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    out[0] = '\0';
    const char *p = url ? strstr(url, "://") : NULL;
    if (p == NULL)
        return;
    p += 3;
    size_t alen = strcspn(p, "/?#");
    const char *at = memchr(p, '@', alen);
    if (at) {
        alen -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    size_t hlen;
    if (p[0] == '[') {
        const char *close = memchr(p, ']', alen);
        hlen = close ? (size_t)(close - p) + 1 : alen;
    } else {
        const char *colon = memchr(p, ':', alen);
        hlen = colon ? (size_t)(colon - p) : alen;
    }
    if (hlen >= outlen)
        return; /* too long to be a loopback name: "" (not loopback) */
    memcpy(out, p, hlen);
    out[hlen] = '\0';
}
