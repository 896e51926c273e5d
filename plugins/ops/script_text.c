/* The script function's text helpers: see script.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "script.h"

#define MASK         "********"
#define MASK_MIN_LEN 4

void script_buf_add(script_buf *b, const void *p, size_t n)
{
    char *grown = realloc(b->data, b->len + n + 1);
    if (grown == NULL)
        abort();
    if (n > 0)
        memcpy(grown + b->len, p, n);
    b->data = grown;
    b->len += n;
    b->data[b->len] = '\0';
}

void script_buf_free(script_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *script_base64(const void *p, size_t n)
{
    const unsigned char *in = p;
    char *out = malloc((n + 2) / 3 * 4 + 1);
    if (out == NULL)
        abort();
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[j++] = b64_alphabet[(v >> 18) & 63];
        out[j++] = b64_alphabet[(v >> 12) & 63];
        out[j++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        out[j++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
    }
    out[j] = '\0';
    return out;
}

int script_unbase64(const char *text, script_buf *out)
{
    unsigned acc = 0;
    int bits = 0, pad = 0;
    for (const char *c = text; *c; c++) {
        if (*c == ' ' || *c == '\n' || *c == '\r' || *c == '\t')
            continue;
        if (*c == '=') {
            pad++;
            continue;
        }
        const char *at = strchr(b64_alphabet, *c);
        if (at == NULL || pad)
            return -1;
        acc = (acc << 6) | (unsigned)(at - b64_alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            char byte = (char)((acc >> bits) & 0xff);
            script_buf_add(out, &byte, 1);
        }
    }
    if (out->data == NULL)
        script_buf_add(out, "", 0);
    return 0;
}

/* The longest secret that matches text at i (its length), or 0. */
static size_t match_at(const char *text, size_t len, size_t i, const char *const *secrets)
{
    size_t best = 0;
    for (size_t k = 0; secrets && secrets[k]; k++) {
        size_t n = strlen(secrets[k]);
        if (n >= MASK_MIN_LEN && n > best && n <= len - i && memcmp(text + i, secrets[k], n) == 0)
            best = n;
    }
    return best;
}

script_buf script_mask(const char *text, size_t len, const char *const *secrets, size_t skip)
{
    script_buf out = {0};
    script_buf_add(&out, "", 0);
    size_t i = 0;
    while (i < len) {
        size_t n = match_at(text, len, i, secrets);
        int keep = i >= skip;
        if (n > 0) {
            if (keep || i + n > skip)
                script_buf_add(&out, MASK, strlen(MASK));
            i += n;
        } else {
            if (keep)
                script_buf_add(&out, text + i, 1);
            i++;
        }
    }
    return out;
}

/* The length of the valid UTF-8 sequence at p (at most n bytes), or 0 when there is none.
 * The rules are jansson's: no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    if (p[0] >= 0x01 && p[0] < 0x80)
        return 1;
    size_t len = p[0] >= 0xC2 && p[0] <= 0xDF   ? 2
                 : p[0] >= 0xE0 && p[0] <= 0xEF ? 3
                 : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4
                                                : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    if ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] >= 0xA0) ||
        (p[0] == 0xF0 && p[1] < 0x90) || (p[0] == 0xF4 && p[1] >= 0x90))
        return 0;
    return len;
}

json_t *script_text_json(const char *text, size_t len, size_t max)
{
    size_t start = len > max ? len - max : 0;
    while (start < len && start > 0 && ((unsigned char)text[start] & 0xC0) == 0x80)
        start++;
    script_buf clean = {0};
    script_buf_add(&clean, "", 0);
    for (size_t i = start; i < len;) {
        size_t n = utf8_seq((const unsigned char *)text + i, len - i);
        if (n == 0) {
            script_buf_add(&clean, "\xEF\xBF\xBD", 3);
            i++;
        } else {
            script_buf_add(&clean, text + i, n);
            i += n;
        }
    }
    json_t *s = json_stringn(clean.data, clean.len);
    script_buf_free(&clean);
    return s ? s : json_string("");
}

/* ---- reading a script file on the bridge ------------------------------------------------ */

/* Non-zero when path is dir or below it (both resolved). */
static int is_below(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (n > 1 && dir[n - 1] == '/')
        n--;
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || (n == 1 && dir[0] == '/'));
}

/* The resolved path of an open descriptor (malloc'd), or NULL. */
static char *fd_path(int fd)
{
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n <= 0)
        return NULL;
    target[n] = '\0';
    return strdup(target);
}

/* Opens name (relative: in the first of dirs that has it). Returns the fd or -1. */
static int open_in_dirs(const char *name, const json_t *dirs, int *saved_errno)
{
    *saved_errno = ENOENT;
    if (name[0] == '/') {
        int fd = open(name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        *saved_errno = errno;
        return fd;
    }
    size_t i;
    json_t *d;
    json_array_foreach (dirs, i, d) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof(path), "%s/%s", json_string_value(d), name) >= (int)sizeof(path))
            continue;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd >= 0)
            return fd;
        if (errno != ENOENT)
            *saved_errno = errno;
    }
    return -1;
}

/* Non-zero when the opened file lies inside one of dirs; *path gets its resolved path. */
static int inside_dirs(int fd, const json_t *dirs, char **path)
{
    *path = fd_path(fd);
    if (*path == NULL)
        return 0;
    size_t i;
    json_t *d;
    json_array_foreach (dirs, i, d) {
        char *dir = realpath(json_string_value(d), NULL);
        int below = dir && is_below(*path, dir);
        free(dir);
        if (below)
            return 1;
    }
    return 0;
}

/* The configured directories as an array of strings (a new reference), or NULL. */
static json_t *dir_list(const json_t *dirs)
{
    json_t *list = json_array();
    if (json_is_string(dirs) && json_string_length(dirs) > 0)
        json_array_append(list, (json_t *)dirs);
    size_t i;
    json_t *d;
    json_array_foreach (dirs, i, d) {
        if (json_is_string(d) && json_string_length(d) > 0)
            json_array_append(list, d);
    }
    if (json_array_size(list) == 0) {
        json_decref(list);
        return NULL;
    }
    return list;
}

static int read_all(int fd, script_buf *out)
{
    script_buf_add(out, "", 0);
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (out->len + (size_t)n > SCRIPT_MAX_BYTES)
            return -2;
        script_buf_add(out, chunk, (size_t)n);
    }
}

int script_read_file(const char *name, const json_t *dirs_config, script_buf *out, char **path,
                     int *invalid, char *err, size_t errlen)
{
    *path = NULL;
    *invalid = 1;
    json_t *dirs = dir_list(dirs_config);
    int fd = -1, rc = -1, saved = 0;
    struct stat st;
    if (dirs == NULL) {
        snprintf(err, errlen,
                 "script_file needs the directories scripts may be read from on the bridge: set "
                 "plugin = { ops = { script_dirs = [\"/etc/ferry/scripts\"]; }; } in the "
                 "host's configuration");
        goto out;
    }
    if (name[0] == '\0' || strlen(name) >= PATH_MAX) {
        snprintf(err, errlen, "script_file must name a file");
        goto out;
    }
    fd = open_in_dirs(name, dirs, &saved);
    if (fd < 0) {
        *invalid = saved == ENOENT || saved == ENOTDIR;
        snprintf(err, errlen, "script_file %s cannot be opened on the bridge: %s%s", name,
                 strerror(saved),
                 name[0] == '/' ? "" : " (looked in the ops plugin's script_dirs)");
        goto out;
    }
    if (!inside_dirs(fd, dirs, path)) {
        snprintf(err, errlen,
                 "script_file %s is not inside the ops plugin's script_dirs (symlinks resolved)",
                 name);
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "script_file %s is not a regular file", *path);
        goto out;
    }
    if (st.st_size > SCRIPT_MAX_BYTES) {
        snprintf(err, errlen, "script_file %s has %lld bytes; a script may have at most %d", *path,
                 (long long)st.st_size, SCRIPT_MAX_BYTES);
        goto out;
    }
    int got = read_all(fd, out);
    if (got != 0) {
        *invalid = got == -2;
        snprintf(err, errlen, "script_file %s: %s", *path,
                 got == -2 ? "grew past the size limit while it was read" : strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    json_decref(dirs);
    if (rc != 0) {
        free(*path);
        *path = NULL;
        script_buf_free(out);
    }
    return rc;
}
