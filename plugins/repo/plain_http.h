/*
 * Plain http and credentials (issue 17, point 4): a storage provider sends a credential over
 * http:// only to this machine's loopback, where no network carries it. The providers call
 * plain_http_loopback() with their URL's host before any request.
 */
#ifndef FERRY_REPO_PLAIN_HTTP_H
#define FERRY_REPO_PLAIN_HTTP_H

/*
 * 1 when host, a URL's host part, is this machine's loopback: "localhost" or a name under
 * ".localhost" (any case; libcurl resolves these to loopback itself), an IPv4 address in
 * 127.0.0.0/8 in dotted-quad form, or the IPv6 address ::1 (with or without brackets, also
 * as ::ffff:127.x.y.z). 0 for anything else, names that merely begin with "127." included.
 */
int plain_http_loopback(const char *host);

/* The host of an http:// or https:// URL into out (brackets kept for IPv6), "" when there
 * is none; out has outlen bytes. A userinfo ("user:pw@") is skipped. */
void plain_http_host(const char *url, char *out, size_t outlen);

#endif
