/*
 * The "sftp" storage provider: a directory on an SSH server, through libcurl's SFTP
 * (libssh2). Vault:
 *   {"provider": "sftp", "host": "backup.example.com", "port": 22, "user": "ferry",
 *    "path": "/srv/ferry", "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----…",
 *    "host_public_key": "ssh-ed25519 AAAA…"}
 * with "password" instead of (or beside) "private_key", an optional "key_passphrase",
 * "known_hosts" (text) instead of "host_public_key", and the transfer settings of xfer.h.
 *
 * put uploads under a temporary name ".tmp-RANDOM" in the target's directory, then renames
 * it into place in the same request (a post-quote command). SFTP v3's rename refuses an
 * existing target, which gives exclusive puts for free; for content-named keys (data/,
 * index/) "exists" is success, since the object there holds the same bytes. Any other put
 * (gc/state) replaces the target by removing it and renaming: a reader in the window of one
 * round trip between the two sees no object; locks never rely on replacing (a refresh
 * writes a new key). A put is durable once the server has acknowledged the close and the
 * rename: SFTP v3 offers no fsync through libcurl, so durability is the server's.
 *
 * Secrets: the private key lives in a memfd that libssh2 opens as /proc/self/fd/N, so it
 * never touches a disk; the password, key and passphrase go to libcurl only, never into a
 * URL, a message or a log line. Host keys are checked in CURLOPT_SSH_HOSTKEYFUNCTION
 * against the pinned ones; with none pinned every connection is refused with an error that
 * shows the server's key, for the operator to pin.
 *
 * Every operation may run on several threads at once: the provider is read-only after open,
 * and each request borrows its own handle (and SSH connection) from the xfer pool. Transient
 * failures (connection refused or reset, timeouts, SSH session errors) are retried with
 * backoff; that is safe for every operation, as each upload try goes to a fresh temporary
 * name. A crash can leave a ".tmp-*" file behind, which list never reports. A request that
 * moves no byte for the vault's "timeout" is ended, whatever phase it is in (see watchdog).
 *
 * list reads the server's long listing (OpenSSH's "ls -l" shape) of each directory, the
 * subdirectories of the prefix in parallel over the pool's connections; names starting with
 * '.' are skipped.
 */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "storage.h"
#include "xfer.h"

#define UPLOAD_BUFFER  (2L << 20)         /* 96 → 145 MB/s on loopback (NOTES.md) */
#define LISTING_MAX    ((size_t)64 << 20) /* one directory's long listing */
#define MAX_PINS       16
#define KEY_TEXT_MAX   4096 /* "ssh-rsa AAAA…" of the largest host keys */
#define VAULT_TEXT_MAX (1 << 20)

typedef struct pin {
    uint8_t *blob; /* the public key blob, as the server sends it */
    size_t len;
} pin;

typedef struct sftp {
    char *host;
    long port;
    char *user;
    char *password;   /* NULL without password authentication */
    char *passphrase; /* of the private key; NULL when it has none */
    char *root;       /* the storage directory, no trailing slash ("" for "/") */
    char *url_base;   /* "sftp://host:port" */
    int key_fd;       /* memfd holding the private key, or -1 */
    char key_path[48];
    pin pins[MAX_PINS];
    int npins;
    const char *pin_source; /* "host_public_key", "known_hosts" or NULL */
    char where[512];        /* "user@host:port:/path", for messages */
    xfer_pool *pool;
} sftp;

/* ---- small text helpers ---------------------------------------------------------------- */

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* Base64 (with or without padding, whitespace ignored) into a new buffer; NULL when bad. */
static uint8_t *b64_decode(const char *in, size_t inlen, size_t *outlen)
{
    char *clean = xmalloc(inlen + 4);
    size_t n = 0;
    for (size_t i = 0; i < inlen; i++)
        if (!isspace((unsigned char)in[i]))
            clean[n++] = in[i];
    size_t pad = 0;
    while (n > 0 && clean[n - 1] == '=') {
        n--;
        pad++;
    }
    if (pad > 2 || n % 4 == 1) {
        free(clean);
        return NULL;
    }
    pad = (4 - n % 4) % 4;
    for (size_t i = 0; i < pad; i++)
        clean[n++] = '=';
    uint8_t *out = xmalloc(n / 4 * 3 + 1);
    int got = n ? EVP_DecodeBlock(out, (const unsigned char *)clean, (int)n) : 0;
    free(clean);
    if (got < 0 || (size_t)got < pad) {
        free(out);
        return NULL;
    }
    *outlen = (size_t)got - pad;
    return out;
}

static char *b64_encode(const uint8_t *in, size_t len)
{
    char *out = xmalloc(4 * ((len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    return out;
}

/* "ssh-ed25519 AAAA…" for a key blob (whose first field is its type) into out. */
static void key_text(const uint8_t *blob, size_t len, char *out, size_t outlen)
{
    char type[64] = "unknown-type";
    if (len >= 4) {
        uint32_t tl =
            (uint32_t)blob[0] << 24 | (uint32_t)blob[1] << 16 | (uint32_t)blob[2] << 8 | blob[3];
        if (tl > 0 && tl < sizeof(type) && tl <= len - 4) {
            memcpy(type, blob + 4, tl);
            type[tl] = '\0';
        }
    }
    char *b64 = b64_encode(blob, len);
    snprintf(out, outlen, "%s %s", type, b64);
    free(b64);
}

/* Quotes path for a libcurl SFTP quote command: "…" with '"' and '\' escaped. */
static void quote_path(buf *b, const char *path)
{
    buf_append(b, "\"", 1);
    for (const char *p = path; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_append(b, "\\", 1);
        buf_append(b, p, 1);
    }
    buf_append(b, "\"", 1);
}

/* A quote command "VERB "PATH1" ["PATH2"]" appended to list; returns the new list. */
static struct curl_slist *add_quote(struct curl_slist *list, const char *verb, const char *p1,
                                    const char *p2)
{
    buf b = {0};
    buf_append(&b, verb, strlen(verb));
    buf_append(&b, " ", 1);
    quote_path(&b, p1);
    if (p2) {
        buf_append(&b, " ", 1);
        quote_path(&b, p2);
    }
    buf_append(&b, "", 1);
    list = curl_slist_append(list, (const char *)b.data);
    buf_free(&b);
    return list;
}

/* ---- host keys ------------------------------------------------------------------------- */

/* Adds the key of a "TYPE BASE64 [comment]" text; -1 when it is not one. */
static int add_pin(sftp *s, const char *line)
{
    const char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    p += strcspn(p, " \t"); /* the type: the blob repeats it */
    while (*p == ' ' || *p == '\t')
        p++;
    size_t b64len = strcspn(p, " \t\r\n");
    size_t len = 0;
    uint8_t *blob = b64len ? b64_decode(p, b64len, &len) : NULL;
    if (blob == NULL || len < 8) {
        free(blob);
        return -1;
    }
    if (s->npins == MAX_PINS) {
        free(blob);
        return 0;
    }
    s->pins[s->npins++] = (pin){blob, len};
    return 0;
}

/* One known_hosts host pattern against the host name: plain, wildcard or hashed (|1|). */
static int host_pattern_matches(const char *pattern, size_t plen, const char *name)
{
    char pat[1024];
    if (plen >= sizeof(pat))
        return 0;
    memcpy(pat, pattern, plen);
    pat[plen] = '\0';
    if (strncmp(pat, "|1|", 3) == 0) {
        char *bar = strchr(pat + 3, '|');
        if (bar == NULL)
            return 0;
        size_t saltlen = 0, hashlen = 0;
        uint8_t *salt = b64_decode(pat + 3, (size_t)(bar - pat - 3), &saltlen);
        uint8_t *hash = b64_decode(bar + 1, strlen(bar + 1), &hashlen);
        uint8_t mac[EVP_MAX_MD_SIZE];
        unsigned maclen = 0;
        int match = salt && hash &&
                    HMAC(EVP_sha1(), salt, (int)saltlen, (const uint8_t *)name, strlen(name), mac,
                         &maclen) != NULL &&
                    maclen == hashlen && memcmp(mac, hash, hashlen) == 0;
        free(salt);
        free(hash);
        return match;
    }
    /* Wildcards only: the brackets of "[host]:port" are literal. */
    char glob[2 * sizeof(pat)], *g = glob;
    for (const char *c = pat; *c; c++) {
        if (*c == '[' || *c == ']' || *c == '\\')
            *g++ = '\\';
        *g++ = *c;
    }
    *g = '\0';
    return fnmatch(glob, name, 0) == 0;
}

/* Whether the comma-separated host list of a known_hosts line names host (negations win). */
static int host_list_matches(const char *list, size_t len, const char *name)
{
    int match = 0;
    const char *end = list + len;
    while (list < end) {
        const char *comma = memchr(list, ',', (size_t)(end - list));
        size_t n = comma ? (size_t)(comma - list) : (size_t)(end - list);
        int negated = n > 0 && list[0] == '!';
        if (host_pattern_matches(list + negated, n - (size_t)negated, name)) {
            if (negated)
                return 0;
            match = 1;
        }
        list += n + 1;
    }
    return match;
}

/* Pins the keys that known_hosts text gives this host (OpenSSH's format). */
static void read_known_hosts(sftp *s, const char *text)
{
    char name[600];
    if (s->port == 22)
        snprintf(name, sizeof(name), "%s", s->host);
    else
        snprintf(name, sizeof(name), "[%s]:%ld", s->host, s->port);
    for (const char *line = text; *line;) {
        size_t len = strcspn(line, "\n");
        const char *p = line, *end = line + len;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        /* @cert-authority lines hold no host key; @revoked keys must not be trusted. */
        if (p < end && *p != '#' && *p != '@') {
            size_t hl = strcspn(p, " \t\n");
            if (host_list_matches(p, hl, name)) {
                char *rest = xasprintf("%.*s", (int)(end - p - hl), p + hl);
                add_pin(s, rest);
                free(rest);
            }
        }
        line = *end ? end + 1 : end;
    }
}

typedef struct hostcheck {
    const sftp *s;
    int seen;                 /* the callback ran (a new connection) */
    char found[KEY_TEXT_MAX]; /* the server's key as text */
} hostcheck;

static int check_host_key(void *arg, int keytype, const char *key, size_t keylen)
{
    (void)keytype;
    hostcheck *hc = arg;
    hc->seen = 1;
    key_text((const uint8_t *)key, keylen, hc->found, sizeof(hc->found));
    for (int i = 0; i < hc->s->npins; i++)
        if (hc->s->pins[i].len == keylen && memcmp(hc->s->pins[i].blob, key, keylen) == 0)
            return CURLKHMATCH_OK;
    return CURLKHMATCH_MISMATCH;
}

/* ---- one request, with retries --------------------------------------------------------- */

/* A request: fill the inputs, call perform. */
typedef struct call {
    xfer_pool *pool;  /* set by perform_once: bandwidth is booked against it */
    const char *what; /* "upload data/ab/ab12…", for messages */
    char *url;        /* owned */
    struct curl_slist *quote, *postquote;
    const uint8_t *body; /* upload from memory when upload is set */
    size_t body_len;
    xfer_stream *stream; /* or from this stream (one try only) */
    int upload;
    int nobody;
    char range[64]; /* "from-to" or "from-"; "" for all */
    buf *out;       /* a download is appended here */
    size_t out_start;
    size_t out_max; /* bytes a download may bring at most */
    /* per try */
    size_t sent;
    int overflow;
    hostcheck hc;
    curl_off_t moved;  /* bytes moved so far, both ways */
    double moved_at;   /* when they last changed (mono_sec) */
    double allowed;    /* seconds the transfer may go on without moving a byte */
    double stall_time; /* the vault's "timeout" */
    int stalled;       /* the watchdog stopped the transfer */
    char errbuf[CURL_ERROR_SIZE];
    int tries;
    curl_off_t size; /* CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, -1 when unknown */
} call;

static void call_free(call *c)
{
    free(c->url);
    curl_slist_free_all(c->quote);
    curl_slist_free_all(c->postquote);
}

static size_t read_cb(char *to, size_t size, size_t n, void *arg)
{
    call *c = arg;
    if (c->stream) {
        size_t got = xfer_stream_read(c->stream, to, size * n);
        if (got != CURL_READFUNC_ABORT)
            xfer_throttle(c->pool, XFER_SEND, got);
        return got;
    }
    size_t left = c->body_len - c->sent;
    size_t want = size * n < left ? size * n : left;
    /* Under a bandwidth limit, small steps keep the pace even (the buffer is 2 MiB). */
    if (xfer_pool_opts(c->pool)->bwlimit > 0 && want > 65536)
        want = 65536;
    if (want == 0)
        return 0;
    xfer_throttle(c->pool, XFER_SEND, want);
    memcpy(to, c->body + c->sent, want);
    c->sent += want;
    return want;
}

static size_t write_cb(char *data, size_t size, size_t n, void *arg)
{
    call *c = arg;
    size_t len = size * n;
    xfer_throttle(c->pool, XFER_RECV, len);
    if (c->out == NULL)
        return len;
    if (c->out->len - c->out_start + len > c->out_max) {
        c->overflow = 1;
        return 0;
    }
    buf_append(c->out, data, len);
    return len;
}

/*
 * Ends a request that has moved no byte for the vault's "timeout" (from its start: that plus
 * "connect_timeout"). libcurl's low-speed limit only watches the body: a server that freezes
 * while a file is opened, stat'ed or renamed would otherwise hold the request for ever (a
 * stopped process still has its kernel acknowledge every packet).
 */
static int watchdog(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                    curl_off_t ulnow)
{
    (void)dltotal;
    (void)ultotal;
    call *c = arg;
    if (xfer_cancelled())
        return 1; /* the job was cancelled */
    double now = mono_sec();
    if (dlnow + ulnow != c->moved) {
        c->moved = dlnow + ulnow;
        c->moved_at = now;
        c->allowed = c->stall_time;
    } else if (now - c->moved_at > c->allowed) {
        c->stalled = 1;
        return 1;
    }
    return 0;
}

static char *url_of(const sftp *s, const char *path)
{
    char *esc = url_path_escape(path);
    char *url = xasprintf("%s%s", s->url_base, esc);
    free(esc);
    return url;
}

static char *path_of(const sftp *s, const char *key)
{
    return xasprintf("%s/%s", s->root, key);
}

static void set_auth(const sftp *s, CURL *h)
{
    long types = 0;
    curl_easy_setopt(h, CURLOPT_USERNAME, s->user);
    if (s->key_fd >= 0) {
        types |= CURLSSH_AUTH_PUBLICKEY;
        curl_easy_setopt(h, CURLOPT_SSH_PRIVATE_KEYFILE, s->key_path);
        if (s->passphrase)
            curl_easy_setopt(h, CURLOPT_KEYPASSWD, s->passphrase);
    }
    if (s->password) {
        types |= CURLSSH_AUTH_PASSWORD | CURLSSH_AUTH_KEYBOARD;
        curl_easy_setopt(h, CURLOPT_PASSWORD, s->password);
    }
    curl_easy_setopt(h, CURLOPT_SSH_AUTH_TYPES, types);
}

static CURLcode perform_once(sftp *s, call *c)
{
    CURL *h = c->stream && !xfer_stream_replaying(c->stream) ? xfer_get_background(s->pool)
                                                              : xfer_get(s->pool);
    c->pool = s->pool;
    c->sent = 0;
    if (c->stream)
        xfer_stream_rewind(c->stream, 0); /* a replay's next try starts over */
    c->overflow = 0;
    c->errbuf[0] = '\0';
    c->hc = (hostcheck){.s = s};
    c->size = -1;
    if (c->out)
        c->out->len = c->out_start;
    const xfer_opts *o = xfer_pool_opts(s->pool);
    c->moved = 0;
    c->moved_at = mono_sec();
    c->stall_time = (double)o->timeout;
    c->allowed = (double)(o->connect_timeout + o->timeout);
    c->stalled = 0;
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, watchdog);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "sftp");
    set_auth(s, h);
    curl_easy_setopt(h, CURLOPT_SSH_HOSTKEYFUNCTION, check_host_key);
    curl_easy_setopt(h, CURLOPT_SSH_HOSTKEYDATA, &c->hc);
    curl_easy_setopt(h, CURLOPT_NEW_FILE_PERMS, 0600L);
    curl_easy_setopt(h, CURLOPT_NEW_DIRECTORY_PERMS, 0700L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    if (c->quote)
        curl_easy_setopt(h, CURLOPT_QUOTE, c->quote);
    if (c->postquote)
        curl_easy_setopt(h, CURLOPT_POSTQUOTE, c->postquote);
    if (c->upload) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, UPLOAD_BUFFER);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(h, CURLOPT_READDATA, c);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
                         c->stream ? (curl_off_t)-1 : (curl_off_t)c->body_len);
        curl_easy_setopt(h, CURLOPT_FTP_CREATE_MISSING_DIRS, (long)CURLFTP_CREATE_DIR);
    }
    if (c->nobody)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (c->range[0])
        curl_easy_setopt(h, CURLOPT_RANGE, c->range);
    CURLcode rc = curl_easy_perform(h);
    curl_off_t size = -1;
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &size) == CURLE_OK)
        c->size = size;
    xfer_put(s->pool, h);
    if (rc == CURLE_ABORTED_BY_CALLBACK && c->stalled) {
        rc = CURLE_OPERATION_TIMEDOUT;
        snprintf(c->errbuf, sizeof(c->errbuf), "the server did not answer for %.0f seconds",
                 c->allowed);
    }
    if (rc != CURLE_OK && c->errbuf[0] == '\0')
        snprintf(c->errbuf, sizeof(c->errbuf), "%s", curl_easy_strerror(rc));
    return rc;
}

/* A curl result that may pass on another try: xfer's list, plus a full disk and a session
 * that could not start (a server restarting, or out of sessions). */
static int transient(CURLcode rc)
{
    return xfer_transient(rc) || rc == CURLE_REMOTE_DISK_FULL || rc == CURLE_FAILED_INIT;
}

/*
 * Runs the request, retrying transient failures with the pool's backoff. before_retry, when
 * set, is called before each new try (to pick a fresh temporary name). Returns the last
 * curl result; c->tries says how many tries it took.
 */
static CURLcode perform(sftp *s, call *c, void (*before_retry)(call *c, void *arg), void *arg)
{
    int login_failures = 0;
    for (c->tries = 1;; c->tries++) {
        CURLcode rc = perform_once(s, c);
        /* A connection that drops during authentication looks like a refused login to
         * libcurl: one more try tells a server going away from wrong credentials. */
        int retry = transient(rc) || (rc == CURLE_LOGIN_DENIED && login_failures++ == 0);
        if (rc == CURLE_OK || !retry || xfer_backoff(s->pool, c->tries) != 0)
            return rc;
        if (before_retry)
            before_retry(c, arg);
    }
}

/* Fills e for a failed request; returns ST_ERROR. */
static int call_error(const sftp *s, const call *c, CURLcode rc, rerr *e)
{
    if (rc == CURLE_PEER_FAILED_VERIFICATION && c->hc.seen) {
        if (s->pin_source == NULL)
            return rerr_set(e, E_INVALID,
                            "sftp %s: the server's host key is not pinned; if it is the right "
                            "server, add \"host_public_key\": \"%s\" to the storage vault (or "
                            "give its known_hosts lines as \"known_hosts\")",
                            s->where, c->hc.found);
        if (s->npins == 0)
            return rerr_set(e, E_INVALID,
                            "sftp %s: \"known_hosts\" in the storage vault has no key for this "
                            "host and port; the server offers \"%s\" (add it as "
                            "\"host_public_key\" if it is the right server)",
                            s->where, c->hc.found);
        return rerr_set(e, E_INVALID,
                        "sftp %s: the server's host key \"%s\" does not match the one pinned by "
                        "\"%s\" in the storage vault; if the server's key changed on purpose, "
                        "update the vault, otherwise something may be intercepting the "
                        "connection",
                        s->where, c->hc.found, s->pin_source);
    }
    if (rc == CURLE_LOGIN_DENIED) {
        if (s->key_fd >= 0)
            return rerr_set(e, E_INVALID,
                            "sftp %s: the server refused the login of user \"%s\" with the "
                            "vault's private_key%s; check \"user\", \"private_key\" (is its "
                            "public key in the server's authorized_keys?) and \"key_passphrase\"",
                            s->where, s->user, s->password ? " and password" : "");
        return rerr_set(e, E_INVALID,
                        "sftp %s: the server refused the login of user \"%s\" with the vault's "
                        "password; check \"user\" and \"password\" in the storage vault",
                        s->where, s->user);
    }
    if (transient(rc))
        return rerr_set(e, E_TRANSIENT, "sftp %s: %s: %s%s (%d %s)", s->where, c->what,
                        rc == CURLE_OPERATION_TIMEDOUT ? "timed out: " : "", c->errbuf, c->tries,
                        c->tries == 1 ? "try" : "tries");
    return rerr_set(e, E_FAIL, "sftp %s: %s: %s", s->where, c->what, c->errbuf);
}

/* ---- open and close -------------------------------------------------------------------- */

static const char *vault_str(const json_t *vault, const char *key)
{
    const char *v = json_string_value(json_object_get(vault, key));
    return v && v[0] ? v : NULL;
}

/* The private key text: PEM/OpenSSH as is, or base64 of it (as some vault tools store it). */
static char *key_text_from_vault(const char *v)
{
    if (strstr(v, "-----BEGIN ") == NULL) {
        size_t n = 0;
        uint8_t *raw = b64_decode(v, strlen(v), &n);
        if (raw && memmem(raw, n, "-----BEGIN ", 11) != NULL) {
            char *text = xasprintf("%.*s\n", (int)n, (const char *)raw);
            OPENSSL_cleanse(raw, n);
            free(raw);
            return text;
        }
        free(raw);
        return NULL;
    }
    return xasprintf("%s\n", v); /* libssh2 wants the last line ended */
}

/* Puts the private key into a 0600 memfd; 0, or -1 with e set. */
static int key_into_memfd(sftp *s, const char *vault_key, rerr *e)
{
    char *text = key_text_from_vault(vault_key);
    if (text == NULL)
        return rerr_set(e, E_INVALID,
                        "sftp storage vault: \"private_key\" must hold a private key in PEM or "
                        "OpenSSH format (-----BEGIN …), or that text in base64");
    int rc = 0;
    int fd = memfd_create("ferry-sftp-key", MFD_CLOEXEC);
    if (fd < 0 || fchmod(fd, 0600) != 0) {
        rc = rerr_set(e, E_TRANSIENT, "sftp: cannot create an in-memory file for the key: %s",
                      strerror(errno));
        goto out;
    }
    size_t left = strlen(text);
    for (const char *p = text; left > 0;) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = rerr_set(e, E_TRANSIENT, "sftp: cannot write the in-memory key file: %s",
                          strerror(errno));
            goto out;
        }
        p += n;
        left -= (size_t)n;
    }
    s->key_fd = fd;
    snprintf(s->key_path, sizeof(s->key_path), "/proc/self/fd/%d", fd);
    fd = -1;
out:
    if (fd >= 0)
        close(fd);
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    return rc;
}

static void free_secret(char *p)
{
    if (p) {
        OPENSSL_cleanse(p, strlen(p));
        free(p);
    }
}

static void sftp_close(void *self)
{
    sftp *s = self;
    if (s == NULL)
        return;
    xfer_pool_free(s->pool);
    if (s->key_fd >= 0)
        close(s->key_fd);
    for (int i = 0; i < s->npins; i++)
        free(s->pins[i].blob);
    free(s->host);
    free(s->user);
    free_secret(s->password);
    free_secret(s->passphrase);
    free(s->root);
    free(s->url_base);
    free(s);
}

/* Reads host, port, user and path; 0, or -1 with e set. */
static int read_location(sftp *s, const json_t *vault, rerr *e)
{
    const char *host = vault_str(vault, "host"), *user = vault_str(vault, "user");
    const char *path = vault_str(vault, "path");
    const json_t *port = json_object_get(vault, "port");
    if (host == NULL || strlen(host) > 255 || has_control(host) || strpbrk(host, "/@ []"))
        return rerr_set(e, E_INVALID,
                        "sftp storage vault: \"host\" must be a host name or address");
    if (user == NULL || strlen(user) > 128 || has_control(user) || strpbrk(user, ":@/"))
        return rerr_set(e, E_INVALID, "sftp storage vault: \"user\" (the SSH login) is required");
    if (path == NULL || path[0] != '/' || strlen(path) > 1024 || has_control(path))
        return rerr_set(e, E_INVALID,
                        "sftp storage vault: \"path\" must be an absolute directory on the server");
    s->port = 22;
    if (port && !json_is_null(port)) {
        json_int_t p = json_is_integer(port)  ? json_integer_value(port)
                       : json_is_string(port) ? atoll(json_string_value(port))
                                              : 0;
        if (p < 1 || p > 65535)
            return rerr_set(e, E_INVALID, "sftp storage vault: \"port\" must be from 1 to 65535");
        s->port = (long)p;
    }
    s->host = xstrdup(host);
    s->user = xstrdup(user);
    s->root = xstrdup(path);
    size_t rl = strlen(s->root);
    while (rl > 0 && s->root[rl - 1] == '/')
        s->root[--rl] = '\0';
    int v6 = strchr(host, ':') != NULL;
    s->url_base = xasprintf("sftp://%s%s%s:%ld", v6 ? "[" : "", host, v6 ? "]" : "", s->port);
    snprintf(s->where, sizeof(s->where), "%s@%s:%ld:%s", user, host, s->port, path);
    return 0;
}

/* Reads the credentials and the host key pins; 0, or -1 with e set. */
static int read_secrets(sftp *s, const json_t *vault, rerr *e)
{
    const char *password = vault_str(vault, "password");
    const char *key = vault_str(vault, "private_key");
    const char *passphrase = vault_str(vault, "key_passphrase");
    const char *hpk = vault_str(vault, "host_public_key");
    const char *kh = vault_str(vault, "known_hosts");
    if (password == NULL && key == NULL)
        return rerr_set(e, E_INVALID,
                        "sftp storage vault: give \"password\" or \"private_key\" for user \"%s\"",
                        s->user);
    if ((key && strlen(key) > VAULT_TEXT_MAX) || (kh && strlen(kh) > VAULT_TEXT_MAX))
        return rerr_set(e, E_INVALID,
                        "sftp storage vault: \"private_key\" or \"known_hosts\" "
                        "is larger than 1 MiB");
    if (key && key_into_memfd(s, key, e) != 0)
        return -1;
    if (password)
        s->password = xstrdup(password);
    if (passphrase)
        s->passphrase = xstrdup(passphrase);
    if (hpk) {
        s->pin_source = "host_public_key";
        for (const char *line = hpk; *line;) {
            size_t len = strcspn(line, "\n");
            char *one = xasprintf("%.*s", (int)len, line);
            int bad = strspn(one, " \t\r") != len && add_pin(s, one) != 0;
            free(one);
            if (bad)
                return rerr_set(e, E_INVALID,
                                "sftp storage vault: \"host_public_key\" must be the server's "
                                "public key as \"ssh-ed25519 AAAA…\" (a line of its "
                                "/etc/ssh/ssh_host_*_key.pub)");
            line += len + (line[len] == '\n');
        }
    }
    if (kh) {
        s->pin_source = hpk ? "host_public_key or known_hosts" : "known_hosts";
        read_known_hosts(s, kh);
    }
    return 0;
}

static void *sftp_open(const json_t *vault, rerr *e)
{
    sftp *s = xcalloc(1, sizeof(*s));
    s->key_fd = -1;
    xfer_opts o;
    if (read_location(s, vault, e) != 0 || read_secrets(s, vault, e) != 0 ||
        xfer_opts_read(vault, "sftp", &o, e) != 0) {
        sftp_close(s);
        return NULL;
    }
    s->pool = xfer_pool_new(&o);
    return s;
}

/* ---- exists and get -------------------------------------------------------------------- */

/* Whether path (a file) is there; ST_OK with *size, ST_NOTFOUND, or ST_ERROR. */
static int stat_path(sftp *s, const char *path, const char *what, struct curl_slist *quote,
                     uint64_t *size, rerr *e)
{
    call c = {.what = what, .url = url_of(s, path), .nobody = 1, .quote = quote};
    CURLcode rc = perform(s, &c, NULL, NULL);
    int st = ST_OK;
    if (rc == CURLE_REMOTE_FILE_NOT_FOUND)
        st = ST_NOTFOUND;
    else if (rc != CURLE_OK)
        st = call_error(s, &c, rc, e);
    else if (size)
        *size = c.size >= 0 ? (uint64_t)c.size : 0;
    c.quote = NULL; /* the caller's */
    call_free(&c);
    return st;
}

static int sftp_exists(void *self, const char *key, uint64_t *size, rerr *e)
{
    sftp *s = self;
    char *path = path_of(s, key);
    char *what = xasprintf("stat %s", key);
    int rc = stat_path(s, path, what, NULL, size, e);
    free(what);
    free(path);
    return rc;
}

static int sftp_get(void *self, const char *key, uint64_t offset, uint64_t len, buf *out, rerr *e)
{
    sftp *s = self;
    char *path = path_of(s, key);
    char *what = xasprintf("download %s", key);
    call c = {.what = what, .url = url_of(s, path), .out = out, .out_start = out->len};
    c.out_max = len ? len : BUF_MAX - out->len;
    if (len)
        snprintf(c.range, sizeof(c.range), "%llu-%llu", (unsigned long long)offset,
                 (unsigned long long)(offset + len - 1));
    else if (offset)
        snprintf(c.range, sizeof(c.range), "%llu-", (unsigned long long)offset);
    CURLcode rc = perform(s, &c, NULL, NULL);
    int st = ST_OK;
    uint64_t got = out->len - c.out_start;
    if (rc == CURLE_REMOTE_FILE_NOT_FOUND) {
        st = ST_NOTFOUND;
    } else if (rc == CURLE_BAD_DOWNLOAD_RESUME || (rc == CURLE_OK && len && got != len)) {
        st = rerr_set(e, E_CORRUPT, "sftp %s: %s is shorter than expected (%llu bytes from %llu)",
                      s->where, key, (unsigned long long)got, (unsigned long long)offset);
    } else if (c.overflow) {
        st = rerr_set(e, E_CORRUPT, "sftp %s: %s is larger than expected", s->where, key);
    } else if (rc != CURLE_OK) {
        st = call_error(s, &c, rc, e);
    }
    if (st != ST_OK)
        out->len = c.out_start;
    call_free(&c);
    free(what);
    free(path);
    return st;
}

/* ---- put ------------------------------------------------------------------------------- */

/* Keys named by their content: an object already there holds the same bytes. */
static int content_named(const char *key)
{
    return strncmp(key, "data/", 5) == 0 || strncmp(key, "index/", 6) == 0;
}

typedef struct putting {
    sftp *s;
    const char *key;
    char *target; /* server path of the key */
    char *tmp;    /* server path of this try's temporary file */
    unsigned flags;
} putting;

/* A fresh temporary name beside the target; the previous try's file is removed first
 * ("*": a failure to remove it does not fail the request). */
static void new_temp(call *c, void *arg)
{
    putting *p = arg;
    curl_slist_free_all(c->quote);
    c->quote = NULL;
    if (p->tmp) {
        c->quote = add_quote(NULL, "*rm", p->tmp, NULL);
        free(p->tmp);
    }
    char name[64];
    tmp_name(name, sizeof(name));
    const char *slash = strrchr(p->target, '/');
    p->tmp = xasprintf("%.*s/%s", (int)(slash - p->target), p->target, name);
    free(c->url);
    c->url = url_of(p->s, p->tmp);
    curl_slist_free_all(c->postquote);
    c->postquote = NULL;
    if (!(p->flags & STOR_PUT_EXCLUSIVE) && !content_named(p->key))
        c->postquote = add_quote(NULL, "*rm", p->target, NULL);
    c->postquote = add_quote(c->postquote, "rename", p->tmp, p->target);
}

/* Whether the object at the target holds data (for an exclusive put whose own earlier try may
 * have renamed it into place before the connection broke). */
static int target_holds(sftp *s, const char *key, const void *data, size_t len)
{
    buf got = {0};
    rerr ignore = {0};
    int same = sftp_get(s, key, 0, 0, &got, &ignore) == ST_OK && got.len == len &&
               (len == 0 || memcmp(got.data, data, len) == 0);
    buf_free(&got);
    return same;
}

/* After a refused rename: ST_EXISTS/ST_OK when the target is there, else the failure. */
static int settle_rename(putting *p, call *c, const void *data, size_t len, rerr *e)
{
    sftp *s = p->s;
    struct curl_slist *rm_tmp = add_quote(NULL, "*rm", p->tmp, NULL);
    char *what = xasprintf("stat %s", p->key);
    rerr se = {0};
    int st = stat_path(s, p->target, what, rm_tmp, NULL, &se);
    free(what);
    curl_slist_free_all(rm_tmp);
    if (st == ST_OK) {
        if (!(p->flags & STOR_PUT_EXCLUSIVE))
            return content_named(p->key) ? ST_OK
                                         : rerr_set(e, E_FAIL, "sftp %s: cannot replace %s: %s",
                                                    s->where, p->key, c->errbuf);
        if (c->tries > 1 && target_holds(s, p->key, data, len))
            return ST_OK; /* our own earlier try got there */
        return ST_EXISTS;
    }
    if (st == ST_NOTFOUND)
        return rerr_set(e, E_FAIL, "sftp %s: cannot rename a temporary file into %s: %s", s->where,
                        p->key, c->errbuf);
    rerr_merge(e, &se);
    return ST_ERROR;
}

static int sftp_put(void *self, const char *key, const void *data, size_t len, unsigned flags,
                    rerr *e)
{
    sftp *s = self;
    putting p = {.s = s, .key = key, .target = path_of(s, key), .flags = flags};
    char *what = xasprintf("upload %s", key);
    call c = {.what = what, .upload = 1, .body = data, .body_len = len};
    new_temp(&c, &p);
    CURLcode rc = perform(s, &c, new_temp, &p);
    int st = ST_OK;
    if (rc == CURLE_QUOTE_ERROR) {
        st = settle_rename(&p, &c, data, len, e);
    } else if (rc != CURLE_OK) {
        st = call_error(s, &c, rc, e);
        /* Best effort, once: a server that is gone leaves a ".tmp-*" file list ignores. */
        call rm = {.what = "cleanup",
                   .url = url_of(s, s->root[0] ? s->root : "/"),
                   .nobody = 1,
                   .quote = add_quote(NULL, "*rm", p.tmp, NULL)};
        if (!transient(rc))
            perform_once(s, &rm);
        call_free(&rm);
    }
    call_free(&c);
    free(what);
    free(p.tmp);
    free(p.target);
    return st;
}

/* ---- del and list ---------------------------------------------------------------------- */

static int sftp_del(void *self, const char *key, rerr *e)
{
    sftp *s = self;
    char *path = path_of(s, key);
    char *what = xasprintf("delete %s", key);
    call c = {.what = what,
              .url = url_of(s, s->root[0] ? s->root : "/"),
              .nobody = 1,
              .quote = add_quote(NULL, "rm", path, NULL)};
    CURLcode rc = perform(s, &c, NULL, NULL);
    int st = ST_OK;
    if (rc == CURLE_QUOTE_ERROR) {
        /* rm failed: a missing file is "not found", anything else an error. */
        rerr se = {0};
        st = stat_path(s, path, what, NULL, NULL, &se);
        if (st == ST_OK)
            st = rerr_set(e, E_FAIL, "sftp %s: cannot delete %s: %s", s->where, key, c.errbuf);
        else if (st == ST_ERROR)
            rerr_merge(e, &se);
    } else if (rc != CURLE_OK) {
        st = call_error(s, &c, rc, e);
    }
    call_free(&c);
    free(what);
    free(path);
    return st;
}

/* One entry of a long listing ("-rw------- 1 u g 1234 Jan  1 12:00 name"): its type
 * character, size and name. 0, or -1 when the line has another shape. */
static int parse_long_entry(char *line, char *type, uint64_t *size, char **name)
{
    char *p = line;
    char *fields[8];
    for (int i = 0; i < 8; i++) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            return -1;
        fields[i] = p;
        p += strcspn(p, " \t");
        if (*p == '\0')
            return -1;
        *p++ = '\0';
    }
    while (*p == ' ' || *p == '\t')
        p++;
    char *end;
    unsigned long long n = strtoull(fields[4], &end, 10);
    if (*p == '\0' || *end != '\0' || strlen(fields[0]) < 10)
        return -1;
    *type = fields[0][0];
    *size = n;
    *name = p;
    return 0;
}

/* Listed objects: keys with their sizes (directories end in '/'). */
typedef struct entries {
    char **keys;
    uint64_t *sizes;
    size_t n, cap;
} entries;

static void entries_add(entries *l, char *key, uint64_t size)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->keys = xrealloc(l->keys, l->cap * sizeof(*l->keys));
        l->sizes = xrealloc(l->sizes, l->cap * sizeof(*l->sizes));
    }
    l->keys[l->n] = key;
    l->sizes[l->n++] = size;
}

static void entries_free(entries *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->keys[i]);
    free(l->keys);
    free(l->sizes);
    *l = (entries){0};
}

/* Parses a long listing of rel into files and dirs; 0, or -1 with e set. */
static int parse_listing(const sftp *s, const char *rel, char *text, entries *files, entries *dirs,
                         int temporaries, rerr *e)
{
    for (char *line = text, *next; *line; line = next) {
        next = line + strcspn(line, "\n");
        if (*next)
            *next++ = '\0';
        line[strcspn(line, "\r")] = '\0';
        char type, *name;
        uint64_t size;
        if (line[0] == '\0')
            continue;
        if (parse_long_entry(line, &type, &size, &name) != 0)
            return rerr_set(e, E_FAIL,
                            "sftp %s: cannot read the server's listing of %s (\"%.80s\"); an "
                            "OpenSSH-style long listing is needed",
                            s->where, rel, line);
        /* ".", "..", and temporary files of puts in progress; with temporaries, only the
         * latter (and the directories to walk). */
        int tmp = strncmp(name, ".tmp-", 5) == 0;
        if ((name[0] == '.' && !(temporaries && tmp && type == '-')) ||
            (temporaries && type == '-' && !tmp))
            continue;
        if (type == 'd')
            entries_add(dirs, xasprintf("%s%s/", rel, name), 0);
        else if (type == '-')
            entries_add(files, xasprintf("%s%s", rel, name), size);
    }
    return 0;
}

/* Reads the directory rel (a key prefix ending in '/'): its files and subdirectories. A
 * missing directory is empty. 0, or -1 with e set. */
static int read_dir(sftp *s, const char *rel, entries *files, entries *dirs, int temporaries,
                    rerr *e)
{
    char *dir = path_of(s, rel);
    char *what = xasprintf("list %s", rel);
    buf out = {0};
    call c = {.what = what, .url = url_of(s, dir), .out = &out, .out_max = LISTING_MAX};
    CURLcode rc = perform(s, &c, NULL, NULL);
    int result = 0;
    if (rc == CURLE_REMOTE_FILE_NOT_FOUND) {
        result = 0;
    } else if (c.overflow) {
        result = rerr_set(e, E_FAIL, "sftp %s: the listing of %s is larger than %zu MiB", s->where,
                          rel, LISTING_MAX >> 20);
    } else if (rc != CURLE_OK) {
        result = call_error(s, &c, rc, e);
    } else {
        buf_append(&out, "", 1);
        result = parse_listing(s, rel, (char *)out.data, files, dirs, temporaries, e);
    }
    buf_free(&out);
    call_free(&c);
    free(what);
    free(dir);
    return result;
}

/* Every file under rel, into files (depth first). 0, or -1 with e set. */
static int collect(sftp *s, const char *rel, entries *files, int temporaries, rerr *e)
{
    entries dirs = {0};
    int rc = read_dir(s, rel, files, &dirs, temporaries, e);
    for (size_t i = 0; rc == 0 && i < dirs.n; i++)
        rc = collect(s, dirs.keys[i], files, temporaries, e);
    entries_free(&dirs);
    return rc;
}

/* Subdirectories listed in parallel, one connection each: data/ has 256 of them, and one
 * round trip after another would make a listing crawl over a distant link. */
typedef struct fanout {
    sftp *s;
    const entries *dirs;
    entries *found; /* one list per directory */
    size_t next;    /* the next directory to take (atomic) */
    int failed;     /* atomic */
    pthread_mutex_t mu;
    rerr e; /* the first error (under mu) */
} fanout;

static void *fanout_main(void *arg)
{
    fanout *f = arg;
    for (;;) {
        size_t i = __atomic_fetch_add(&f->next, 1, __ATOMIC_RELAXED);
        if (i >= f->dirs->n || __atomic_load_n(&f->failed, __ATOMIC_RELAXED))
            return NULL;
        rerr e = {0};
        if (collect(f->s, f->dirs->keys[i], &f->found[i], 0, &e) != 0) {
            __atomic_store_n(&f->failed, 1, __ATOMIC_RELAXED);
            pthread_mutex_lock(&f->mu);
            rerr_merge(&f->e, &e);
            pthread_mutex_unlock(&f->mu);
        }
    }
}

#define LIST_THREADS 8

static int sftp_list(void *self, const char *prefix, stor_list_cb cb, void *arg, rerr *e)
{
    sftp *s = self;
    entries files = {0}, dirs = {0};
    if (read_dir(s, prefix, &files, &dirs, 0, e) != 0) {
        entries_free(&files);
        entries_free(&dirs);
        return ST_ERROR;
    }
    fanout f = {.s = s, .dirs = &dirs, .found = xcalloc(dirs.n + 1, sizeof(entries))};
    pthread_mutex_init(&f.mu, NULL);
    int nthreads = xfer_pool_opts(s->pool)->connections;
    if (nthreads > LIST_THREADS)
        nthreads = LIST_THREADS;
    if ((size_t)nthreads > dirs.n)
        nthreads = (int)dirs.n;
    pthread_t threads[LIST_THREADS];
    int started = 0;
    while (started < nthreads && pthread_create(&threads[started], NULL, fanout_main, &f) == 0)
        started++;
    fanout_main(&f); /* this thread works too (and alone, when no thread could start) */
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    int rc = ST_OK;
    if (f.failed) {
        rerr_merge(e, &f.e);
        rc = ST_ERROR;
    }
    /* The callback runs on this thread only, as callers expect. */
    int stop = rc != ST_OK;
    for (size_t i = 0; !stop && i < files.n; i++)
        stop = cb(arg, files.keys[i], files.sizes[i]) != 0;
    for (size_t d = 0; !stop && d < dirs.n; d++)
        for (size_t i = 0; !stop && i < f.found[d].n; i++)
            stop = cb(arg, f.found[d].keys[i], f.found[d].sizes[i]) != 0;
    for (size_t d = 0; d < dirs.n; d++)
        entries_free(&f.found[d]);
    free(f.found);
    pthread_mutex_destroy(&f.mu);
    entries_free(&files);
    entries_free(&dirs);
    return rc;
}

/* Every temporary file of puts and streams, walking the whole tree (sequentially). */
static int sftp_list_tmp(void *self, stor_list_cb cb, void *arg, rerr *e)
{
    entries tmps = {0};
    int rc = collect(self, "", &tmps, 1, e) == 0 ? ST_OK : ST_ERROR;
    for (size_t i = 0; rc == ST_OK && i < tmps.n; i++)
        if (cb(arg, tmps.keys[i], tmps.sizes[i]) != 0)
            break;
    entries_free(&tmps);
    return rc;
}

/* ---- streamed puts --------------------------------------------------------------------- */

#define STREAM_BUFFER ((size_t)1 << 20) /* bytes between the pack writer and the upload */

/* A pack on its way: uploaded to a temporary file as it is written, renamed at commit. */
typedef struct sftp_writer {
    sftp *s;
    char *tmp;     /* server path of the temporary file */
    char *tmp_key; /* its key, for messages and cleanup */
    xfer_stream *st;
    uint64_t size; /* bytes written */
} sftp_writer;

static int stream_run(xfer_stream *st, void *arg, rerr *e)
{
    sftp_writer *w = arg;
    char *what = xasprintf("upload %s", w->tmp_key);
    call c = {.what = what, .url = url_of(w->s, w->tmp), .upload = 1, .stream = st};
    /* The streamed try is the only one; a replay from the spool retries as a put does. */
    CURLcode rc = xfer_stream_replaying(st) ? perform(w->s, &c, NULL, NULL) : perform_once(w->s, &c);
    int st_rc = rc == CURLE_OK ? ST_OK : call_error(w->s, &c, rc, e);
    call_free(&c);
    free(what);
    return st_rc == ST_OK ? 0 : -1;
}

static void *sftp_wopen(void *self, const char *dir_hint, rerr *e)
{
    (void)e;
    sftp_writer *w = xcalloc(1, sizeof(*w));
    char name[64];
    tmp_name(name, sizeof(name));
    w->s = self;
    w->tmp_key = xasprintf("%s%s", dir_hint, name);
    w->tmp = path_of(w->s, w->tmp_key);
    w->st = xfer_stream_start(STREAM_BUFFER, stream_run, w);
    return w;
}

static int sftp_wwrite(void *self, void *wp, const void *data, size_t len, rerr *e)
{
    (void)self;
    sftp_writer *w = wp;
    if (w->st == NULL)
        return rerr_set(e, E_FAIL, "sftp: write to a finished upload (a bug)");
    if (xfer_stream_write(w->st, data, len, e) != 0)
        return ST_ERROR;
    w->size += len;
    return ST_OK;
}

/* Ends the upload, then checks that the server holds every byte (a short write fails here). */
static int sftp_wfinish(void *self, void *wp, rerr *e)
{
    sftp *s = self;
    sftp_writer *w = wp;
    xfer_stream *st = w->st;
    w->st = NULL;
    if (xfer_stream_finish(st, e) != 0)
        return ST_ERROR;
    uint64_t size = 0;
    char *what = xasprintf("stat %s", w->tmp_key);
    int rc = stat_path(s, w->tmp, what, NULL, &size, e);
    free(what);
    if (rc == ST_NOTFOUND)
        return rerr_set(e, E_FAIL, "sftp %s: the uploaded %s is gone", s->where, w->tmp_key);
    if (rc == ST_OK && size != w->size)
        return rerr_set(e, E_FAIL,
                        "sftp %s: the server holds %llu bytes of %s, %llu were sent (a short "
                        "write: disk full or quota?)",
                        s->where, (unsigned long long)size, w->tmp_key,
                        (unsigned long long)w->size);
    return rc;
}

static void sftp_wfree(sftp_writer *w)
{
    free(w->tmp);
    free(w->tmp_key);
    free(w);
}

static void sftp_wabort(void *self, void *wp)
{
    sftp_writer *w = wp;
    xfer_stream_abort(w->st);
    rerr ignore = {0};
    sftp_del(self, w->tmp_key, &ignore); /* best effort: repo_gc removes what stays */
    sftp_wfree(w);
}

/* Renames the finished upload onto key; the key's directory is made first ("*": it may
 * exist). An object already there holds the same bytes (keys of streams are content hashes),
 * so a refused rename onto an existing key is success. */
static int sftp_wcommit(void *self, void *wp, const char *key, unsigned flags, rerr *e)
{
    (void)flags; /* one class of storage here */
    sftp *s = self;
    sftp_writer *w = wp;
    int rc = w->st ? sftp_wfinish(s, w, e) : ST_OK;
    int leftover = 0;
    char *target = path_of(s, key);
    char *what = xasprintf("rename %s to %s", w->tmp_key, key);
    if (rc == ST_OK) {
        char *dir = xasprintf("%.*s", (int)(strrchr(target, '/') - target), target);
        call c = {.what = what,
                  .url = url_of(s, s->root[0] ? s->root : "/"),
                  .nobody = 1,
                  .quote = add_quote(add_quote(NULL, "*mkdir", dir, NULL), "rename", w->tmp,
                                     target)};
        int was = xfer_shield(1); /* the upload is whole: a cancel must not cut its rename */
        CURLcode cr = perform(s, &c, NULL, NULL);
        xfer_shield(was);
        if (cr == CURLE_QUOTE_ERROR) {
            rerr se = {0};
            int st = stat_path(s, target, what, NULL, NULL, &se);
            if (st == ST_NOTFOUND)
                rc = rerr_set(e, E_FAIL, "sftp %s: cannot rename %s into %s: %s", s->where,
                              w->tmp_key, key, c.errbuf);
            else if (st != ST_OK)
                rc = (rerr_merge(e, &se), ST_ERROR);
            leftover = 1; /* the key was there already, or the rename failed */
        } else if (cr != CURLE_OK) {
            rc = call_error(s, &c, cr, e);
        }
        call_free(&c);
        free(dir);
    }
    rerr ignore = {0};
    if (rc != ST_OK || leftover)
        sftp_del(s, w->tmp_key, &ignore);
    free(what);
    free(target);
    sftp_wfree(w);
    return rc;
}

const stor_ops stor_sftp_ops = {
    .name = "sftp",
    .open = sftp_open,
    .put = sftp_put,
    .get = sftp_get,
    .list = sftp_list,
    .del = sftp_del,
    .exists = sftp_exists,
    .close = sftp_close,
    .wopen = sftp_wopen,
    .wwrite = sftp_wwrite,
    .wcommit = sftp_wcommit,
    .wabort = sftp_wabort,
    .wfinish = sftp_wfinish,
    .list_tmp = sftp_list_tmp,
};
