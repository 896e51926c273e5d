/* Notifications by email (SMTP through libcurl) and JSON POST; see notify.h. */
#include "notify.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "seal.h"
#include "store_seal.h"
#include "util.h"
#include "vault.h"

#define NOTIFY_TIMEOUT_S 30

struct upload {
    const char *data;
    size_t len, off;
};

static size_t read_cb(char *buf, size_t size, size_t n, void *arg)
{
    struct upload *u = arg;
    size_t room = size * n, left = u->len - u->off;
    size_t k = left < room ? left : room;
    memcpy(buf, u->data + u->off, k);
    u->off += k;
    return k;
}

static size_t discard_cb(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* 1 when mail must go over TLS: smtp.tls "required", or "auto" with a login. smtps:// is TLS
 * from the first byte; for smtp:// curl then requires STARTTLS (CURLUSESSL_ALL). */
static int smtp_needs_tls(const ferry_config *cfg)
{
    if (strcmp(cfg->smtp_tls, "none") == 0)
        return 0;
    if (strcmp(cfg->smtp_tls, "required") == 0)
        return 1;
    return cfg->smtp_password[0] != '\0' || cfg->smtp_username[0] != '\0';
}

static int send_email(const ferry_config *cfg, const char *to, const json_t *body, char *err,
                      size_t errlen)
{
    if (cfg->smtp_url == NULL || cfg->smtp_url[0] == '\0') {
        seterr(err, errlen, "no SMTP server configured (smtp.url in the config)");
        return -1;
    }
    const char *status = json_string_value(json_object_get(body, "status"));
    const char *task = json_string_value(json_object_get(body, "taskId"));
    const char *fn = json_string_value(json_object_get(body, "function"));
    const char *machine = json_string_value(json_object_get(body, "machine"));
    char *pretty = json_dumps(body, JSON_INDENT(2));
    char date[64];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    char *msg = xasprintf("Date: %s\r\nTo: <%s>\r\nFrom: <%s>\r\n"
                          "Subject: [ferry] %s %s on %s (%s)\r\n"
                          "Content-Type: text/plain; charset=utf-8\r\n\r\n"
                          "ferry: queue item %s, function %s on machine %s, ended %s.\r\n\r\n"
                          "%s\r\n",
                          date, to, cfg->smtp_from, fn ? fn : "?", status ? status : "?",
                          machine ? machine : "?", task ? task : "?", task ? task : "?",
                          fn ? fn : "?", machine ? machine : "?", status ? status : "?", pretty);
    free(pretty);
    CURL *curl = curl_easy_init();
    struct curl_slist *rcpt = curl_slist_append(NULL, to);
    char *from = xasprintf("<%s>", cfg->smtp_from);
    struct upload u = {.data = msg, .len = strlen(msg)};
    curl_easy_setopt(curl, CURLOPT_URL, cfg->smtp_url);
    curl_easy_setopt(curl, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(curl, CURLOPT_READDATA, &u);
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)NOTIFY_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (cfg->smtp_username[0]) {
        curl_easy_setopt(curl, CURLOPT_USERNAME, cfg->smtp_username);
        curl_easy_setopt(curl, CURLOPT_PASSWORD, cfg->smtp_password);
    }
    int need_tls = smtp_needs_tls(cfg);
    if (need_tls)
        curl_easy_setopt(curl, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_USE_SSL_FAILED && need_tls)
        seterr(err, errlen,
               "mail to %s through %s failed: the server offers no STARTTLS, and ferry sends "
               "%s only over TLS (use smtps:// or a server with STARTTLS; smtp.tls = \"none\" "
               "sends it in clear)",
               to, cfg->smtp_url,
               cfg->smtp_password[0] || cfg->smtp_username[0] ? "a password" : "mail");
    else if (rc != CURLE_OK)
        seterr(err, errlen, "mail to %s through %s failed: %s", to, cfg->smtp_url,
               curl_easy_strerror(rc));
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(curl);
    free(from);
    free(msg);
    return rc == CURLE_OK ? 0 : -1;
}

/*
 * Link-local and cloud metadata addresses: where a cloud instance hands out its credentials
 * (169.254.169.254, fd00:ec2::254, Alibaba's 100.100.100.200). Checked on the address curl
 * is about to connect to, so a name that resolves there is refused too, after any DNS
 * answer, and no byte is sent. IPv4-mapped IPv6 addresses are checked as IPv4.
 */
static int ipv4_forbidden(const unsigned char *a)
{
    return (a[0] == 169 && a[1] == 254) || (a[0] == 100 && a[1] == 100 && a[2] == 100 && a[3] == 200);
}

static int addr_forbidden(const struct sockaddr *sa, char *text, size_t len)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, text, (socklen_t)len);
        return ipv4_forbidden((const unsigned char *)&in->sin_addr);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        const unsigned char *a = in6->sin6_addr.s6_addr;
        static const unsigned char ec2[16] = {0xfd, 0x00, 0x0e, 0xc2, [15] = 0x54, [14] = 0x02};
        inet_ntop(AF_INET6, &in6->sin6_addr, text, (socklen_t)len);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            return ipv4_forbidden(a + 12);
        return (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) || memcmp(a, ec2, 16) == 0;
    }
    return 0;
}

/*
 * The URL's own host when it is an address: checked before any connection too, since through
 * an http(s)_proxy from the environment the socket goes to the proxy, not to the host named.
 * 1 when forbidden (text set), 0 otherwise (a name, or no host to read; text untouched).
 */
static int url_host_forbidden(const char *url, char *text, size_t len)
{
    const char *p = strstr(url, "://");
    if (p == NULL)
        return 0;
    p += 3;
    size_t n = strcspn(p, "/?#");
    const char *at = memchr(p, '@', n);
    while (at != NULL) { /* userinfo: the host follows the last '@' */
        n -= (size_t)(at + 1 - p);
        p = at + 1;
        at = memchr(p, '@', n);
    }
    char bare[INET6_ADDRSTRLEN + 8] = "";
    if (n > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (close == NULL || (size_t)(close - p - 1) >= sizeof(bare))
            return 0;
        memcpy(bare, p + 1, (size_t)(close - p - 1));
    } else {
        n = strcspn(p, ":/?#");
        if (n >= sizeof(bare))
            return 0;
        memcpy(bare, p, n);
    }
    char *zone = strchr(bare, '%'); /* fe80::1%eth0, fe80::1%25eth0 */
    if (zone)
        *zone = '\0';
    struct sockaddr_in in = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    char shown[INET6_ADDRSTRLEN] = "";
    int bad = 0;
    if (inet_pton(AF_INET, bare, &in.sin_addr) == 1)
        bad = addr_forbidden((struct sockaddr *)&in, shown, sizeof(shown));
    else if (inet_pton(AF_INET6, bare, &in6.sin6_addr) == 1)
        bad = addr_forbidden((struct sockaddr *)&in6, shown, sizeof(shown));
    if (bad) /* text is only written for a refusal: the caller tells refusals by it */
        snprintf(text, len, "%s", shown);
    return bad;
}

struct guard {
    int allow;          /* notify.allow_link_local_urls */
    char refused[64];   /* the address refused, "" when none */
};

static curl_socket_t open_socket_cb(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct guard *g = arg;
    (void)purpose;
    char text[INET6_ADDRSTRLEN] = "";
    if (!g->allow && addr_forbidden(&a->addr, text, sizeof(text))) {
        snprintf(g->refused, sizeof(g->refused), "%s", text);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

/* "v1=" and the hex HMAC-SHA256 of "TIMESTAMP.BODY" under secret, into out[68]; 0 or -1. */
static int webhook_signature(const char *secret, const char *stamp, const char *body,
                             char out[68])
{
    char *msg = xasprintf("%s.%s", stamp, body);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const EVP_MD *sha = EVP_sha256();
    int ok = sha != NULL &&
             HMAC(sha, secret, (int)strlen(secret), (const unsigned char *)msg, strlen(msg), md,
                  &mdlen) != NULL &&
             mdlen == 32;
    free(msg);
    if (!ok)
        return -1;
    memcpy(out, "v1=", 3);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 3 + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static int send_post(const ferry_config *cfg, const char *url, const json_t *body,
                     const char *secret, char *err, size_t errlen)
{
    if (secret != NULL && strncmp(secret, SEAL_PREFIX, strlen(SEAL_PREFIX)) == 0) {
        seterr(err, errlen, "POST %s not sent: its webhook_secret is still sealed", url);
        return -1;
    }
    char *text = json_dumps(body, JSON_COMPACT);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (secret != NULL && secret[0] != '\0') {
        char stamp[32], sig[68], line[128];
        snprintf(stamp, sizeof(stamp), "%lld", (long long)time(NULL));
        if (webhook_signature(secret, stamp, text, sig) != 0) {
            seterr(err, errlen, "POST %s not sent: cannot sign it (libcrypto)", url);
            curl_slist_free_all(hdrs);
            free(text);
            return -1;
        }
        snprintf(line, sizeof(line), "X-Ferry-Timestamp: %s", stamp);
        hdrs = curl_slist_append(hdrs, line);
        snprintf(line, sizeof(line), "X-Ferry-Signature: %s", sig);
        hdrs = curl_slist_append(hdrs, line);
    }
    struct guard g = {.allow = cfg->notify_allow_link_local};
    if (!g.allow && url_host_forbidden(url, g.refused, sizeof(g.refused))) {
        seterr(err, errlen,
               "POST %s refused: %s is a link-local or cloud metadata address "
               "(notify.allow_link_local_urls = true allows it)",
               url, g.refused);
        curl_slist_free_all(hdrs);
        free(text);
        return -1;
    }
    CURL *curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
    curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &g);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)NOTIFY_TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_cb);
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    int ok = 0;
    if (rc != CURLE_OK && g.refused[0]) {
        seterr(err, errlen,
               "POST %s refused: %s is a link-local or cloud metadata address "
               "(notify.allow_link_local_urls = true allows it)",
               url, g.refused);
    } else if (rc != CURLE_OK) {
        seterr(err, errlen, "POST %s failed: %s", url, curl_easy_strerror(rc));
    } else {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        ok = status >= 200 && status < 300;
        if (!ok)
            seterr(err, errlen, "POST %s answered HTTP %ld", url, status);
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(curl);
    free(text);
    return ok ? 0 : -1;
}

int notify_deliver(const ferry_config *cfg, const char *target, const json_t *body, char *err,
                   size_t errlen)
{
    return notify_deliver_signed(cfg, target, body, NULL, err, errlen);
}

int notify_deliver_signed(const ferry_config *cfg, const char *target, const json_t *body,
                          const char *secret, char *err, size_t errlen)
{
    if (secret == NULL || secret[0] == '\0')
        secret = cfg->notify_webhook_secret;
    if (strncmp(target, "http://", 7) == 0 || strncmp(target, "https://", 8) == 0)
        return send_post(cfg, target, body, secret, err, errlen);
    if (strchr(target, '@') != NULL)
        return send_email(cfg, target, body, err, errlen);
    seterr(err, errlen, "'%s' is neither an email address nor an http(s) URL", target);
    return -1;
}

/* Appends the targets notify names to list (NULL: only counts them); returns how many. */
static size_t add_targets(json_t *list, const json_t *notify)
{
    size_t n = 0;
    if (json_is_string(notify)) {
        n++;
        if (list)
            json_array_append(list, (json_t *)notify);
    }
    size_t i;
    json_t *v;
    json_array_foreach(notify, i, v)
    {
        if (!json_is_string(v))
            continue;
        n++;
        if (list)
            json_array_append(list, v);
    }
    return n;
}

void notify_deliver_all(const ferry_config *cfg, const json_t *request)
{
    char err[1024];
    const json_t *targets = json_object_get(request, "targets");
    const json_t *body = json_object_get(request, "body");
    const char *task_id = json_string_value(json_object_get(request, "taskId"));
    const char *secret = json_string_value(json_object_get(request, "webhookSecret"));

    size_t i;
    json_t *t;
    json_array_foreach(targets, i, t)
    {
        const char *target = json_string_value(t);
        if (target == NULL)
            continue;
        int rc = notify_deliver_signed(cfg, target, body, secret, err, sizeof(err));
        if (task_id == NULL)
            continue;
        store *st = store_open_config(cfg, NULL, 0);
        if (st == NULL)
            continue;
        if (rc == 0)
            store_event_append(st, task_id, "NOTIFIED", target, NULL, 0, NULL, 0);
        else
            store_event_append(st, task_id, "NOTIFY_FAILED", err, NULL, 0, NULL, 0);
        store_close(st);
    }
}

/*
 * Hands the request to a fresh `ferry notify send` process. It must be a new program image,
 * not just a fork: an SQLite connection must never be used across fork(), and the deliverer
 * records what happened in the store.
 */
static void spawn_deliverer(const ferry_config *cfg, const json_t *request)
{
    int fds[2];
    if (pipe(fds) != 0)
        return;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* Double fork: the host reaps this child at once and never waits for delivery. */
        pid_t grandchild = fork();
        if (grandchild == 0) {
            setsid();
            dup2(fds[0], STDIN_FILENO);
            close_range(3, ~0U, 0);
            sigset_t none;
            sigemptyset(&none);
            sigprocmask(SIG_SETMASK, &none, NULL);
            if (cfg->path)
                execl("/proc/self/exe", "ferry", "--config", cfg->path, "notify", "send",
                      (char *)NULL);
            else
                execl("/proc/self/exe", "ferry", "notify", "send", (char *)NULL);
            _exit(127);
        }
        close(fds[0]);
        if (grandchild > 0) {
            char *text = json_dumps(request, JSON_COMPACT);
            size_t n = strlen(text), off = 0;
            while (off < n) {
                ssize_t w = write(fds[1], text + off, n - off);
                if (w <= 0)
                    break;
                off += (size_t)w;
            }
        }
        _exit(0);
    }
    close(fds[0]);
    close(fds[1]);
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
}

/*
 * Appends the targets vault names for an item ending with status to list (NULL: only
 * counts them, allocating nothing: most items name none, and every end asks); returns how
 * many.
 */
static size_t targets_of(const json_t *vault, const char *status, json_t *list)
{
    size_t n = 0;
    const char *section = strcmp(status, "COMPLETED") == 0 ? "on_success" : "on_failure";
    if (strcmp(status, "CANCELLED") != 0)
        n += add_targets(list, json_object_get(json_object_get(vault, section), "notify"));
    /* run_tests and friends name a failure address directly in their parameters. */
    if (strcmp(status, "FAILED") == 0)
        n += add_targets(list, json_object_get(vault, "notify_on_failure"));
    return n;
}

int notify_wanted(const json_t *vault, const char *status)
{
    return targets_of(vault, status, NULL) > 0;
}

void notify_outcome(const ferry_config *cfg, store *st, const struct store_item *item,
                    const json_t *vault, const char *status, const json_t *response)
{
    if (targets_of(vault, status, NULL) == 0)
        return;
    json_t *targets = json_array();
    targets_of(vault, status, targets);
    const char *task = item->task_id;
    json_t *resp = response ? vault_redact(response, NULL) : json_null();
    json_t *body = json_pack("{s:s,s:s,s:s,s:s?,s:s?,s:s?,s:s?,s:o}", "event", "ferry.queue_item",
                             "status", status, "taskId", task, "function", item->function, "team",
                             item->team, "machine", item->machine, "bridge", item->bridge,
                             "response", resp);
    json_t *request = json_pack("{s:o,s:o,s:s}", "targets", targets, "body", body, "taskId", task);
    /* The section's own key signs its webhooks (a secret name: sealed at rest, redacted). A
     * running item's vault is open; one read back from the store (an end a lost host left
     * unsent) is opened here, on a copy. */
    const char *section = strcmp(status, "COMPLETED") == 0 ? "on_success" : "on_failure";
    const json_t *secret = json_object_get(json_object_get(vault, section), "webhook_secret");
    json_t *opened = NULL;
    if (json_is_string(secret) && st != NULL &&
        strncmp(json_string_value(secret), SEAL_PREFIX, strlen(SEAL_PREFIX)) == 0) {
        char why[600];
        opened = json_deep_copy(vault);
        if (store_seal_open_item(st, item->team, task, opened, why, sizeof(why)) == 0)
            secret = json_object_get(json_object_get(opened, section), "webhook_secret");
        else
            fprintf(stderr, "ferry: item %s: webhook_secret: %s\n", task, why);
    }
    if (json_is_string(secret))
        json_object_set(request, "webhookSecret", (json_t *)secret);
    json_decref(opened);
    spawn_deliverer(cfg, request);
    json_decref(request);
}
