/* Sealing secrets at rest; see seal.h. */
#include "seal.h"
#include "lazy_lib.h"
#include "util.h"
#include "vault.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#define NONCE_LEN 12
#define TAG_LEN   16
#define KEY_FILE_PREFIX "ferry-key-1:"

/* Sealed values hold secrets of a few KiB at most; a cap keeps a hostile store from making
 * us allocate without bound. */
#define SEAL_MAX_PLAIN (16u * 1024 * 1024)

static json_t *readonly(const json_t *value)
{
    return (json_t *)value;
}

void seal_key_set_id(struct seal_key *k)
{
    unsigned char digest[EVP_MAX_MD_SIZE], input[13 + SEAL_KEY_BYTES];
    unsigned int dlen = 0;
    memcpy(input, "ferry-key-id:", 13);
    memcpy(input + 13, k->bytes, SEAL_KEY_BYTES);
    EVP_Digest(input, sizeof(input), digest, &dlen, EVP_sha256(), NULL);
    explicit_bzero(input, sizeof(input));
    for (int i = 0; i < SEAL_ID_LEN / 2; i++)
        snprintf(k->id + 2 * i, 3, "%02x", digest[i]);
}

int seal_key_generate(struct seal_key *k, char *err, size_t errlen)
{
    if (RAND_bytes(k->bytes, SEAL_KEY_BYTES) != 1) {
        seterr(err, errlen, "cannot make a key: the random generator failed");
        return -1;
    }
    seal_key_set_id(k);
    return 0;
}

static void sync_dir_of(const char *path)
{
    char *copy = xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

int seal_key_write(const char *path, const struct seal_key *k, char *err, size_t errlen)
{
    char line[sizeof(KEY_FILE_PREFIX) + 2 * SEAL_KEY_BYTES + 2];
    int n = snprintf(line, sizeof(line), "%s", KEY_FILE_PREFIX);
    for (int i = 0; i < SEAL_KEY_BYTES; i++)
        n += snprintf(line + n, sizeof(line) - (size_t)n, "%02x", k->bytes[i]);
    line[n++] = '\n';
    /* Written whole under a private name, then linked into place: a process that finds the
     * file never reads half a key, and an existing key is never replaced (EEXIST). */
    char *tmp = xasprintf("%s.%ld.tmp", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0400);
    int ok = fd >= 0 && fchmod(fd, 0400) == 0 && write(fd, line, (size_t)n) == n &&
             fsync(fd) == 0;
    int saved = errno;
    if (fd >= 0)
        close(fd);
    explicit_bzero(line, sizeof(line));
    if (ok && link(tmp, path) != 0) {
        ok = 0;
        saved = errno;
    }
    unlink(tmp);
    free(tmp);
    if (!ok) {
        seterr(err, errlen, "cannot create key file %s: %s", path, strerror(saved));
        errno = saved;
        return -1;
    }
    sync_dir_of(path);
    return 0;
}

static int hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* 1 when this process runs one thread: a forked child may then call anything. */
static int single_threaded(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[128];
    int threads = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "Threads:", 8) == 0)
            threads = atoi(line + 8);
    if (f != NULL)
        fclose(f);
    return threads == 1;
}

/*
 * seal_key_set_id in a short-lived child, so that this process does not map libcrypto (3.6
 * MiB of a host's 8) only to check at start that its key is the store's. Used only while
 * libcrypto is not loaded and the process has one thread; in process otherwise, or when
 * the child fails.
 */
static void set_id_apart(struct seal_key *k)
{
    int fds[2];
    if (lazy_lib_loaded(&lazy_crypto_lib) || !single_threaded() || pipe2(fds, O_CLOEXEC) != 0) {
        seal_key_set_id(k);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        seal_key_set_id(k);
        ssize_t w = write(fds[1], k->id, SEAL_ID_LEN);
        _exit(w == SEAL_ID_LEN ? 0 : 1);
    }
    close(fds[1]);
    char id[SEAL_ID_LEN + 1] = "";
    ssize_t got = 0, n = 1;
    while (pid > 0 && got < SEAL_ID_LEN && n > 0) {
        n = read(fds[0], id + got, (size_t)(SEAL_ID_LEN - got));
        if (n > 0)
            got += n;
        else if (n < 0 && errno == EINTR)
            n = 1;
    }
    close(fds[0]);
    int status = 0;
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (pid > 0 && got == SEAL_ID_LEN && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        memcpy(k->id, id, SEAL_ID_LEN);
        k->id[SEAL_ID_LEN] = '\0';
    } else {
        seal_key_set_id(k);
    }
}

static int read_key(const char *path, struct seal_key *k, int apart, char *err, size_t errlen)
{
    char buf[256];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int saved = errno;
        seterr(err, errlen, "cannot read key file %s: %s", path, strerror(errno));
        errno = saved;
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        seterr(err, errlen, "key file %s is not a regular file", path);
        errno = EINVAL;
        return -1;
    }
    if (st.st_mode & 077) {
        close(fd);
        seterr(err, errlen,
               "key file %s may be read or changed by other users (mode %04o); run: chmod 400 %s",
               path, (unsigned)(st.st_mode & 07777), path);
        errno = EPERM;
        return -1;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    size_t plen = strlen(KEY_FILE_PREFIX);
    int ok = n >= (ssize_t)(plen + 2 * SEAL_KEY_BYTES) && memcmp(buf, KEY_FILE_PREFIX, plen) == 0;
    for (int i = 0; ok && i < SEAL_KEY_BYTES; i++) {
        int hi = hex_digit((unsigned char)buf[plen + 2 * i]);
        int lo = hex_digit((unsigned char)buf[plen + 2 * i + 1]);
        ok = hi >= 0 && lo >= 0;
        k->bytes[i] = (unsigned char)(hi << 4 | lo);
    }
    explicit_bzero(buf, sizeof(buf));
    if (!ok) {
        seterr(err, errlen, "key file %s is not a ferry key (expected one line \"%s\" and 64 "
               "hex digits)", path, KEY_FILE_PREFIX);
        errno = EINVAL;
        return -1;
    }
    if (apart)
        set_id_apart(k);
    else
        seal_key_set_id(k);
    return 0;
}

int seal_key_read(const char *path, struct seal_key *k, char *err, size_t errlen)
{
    return read_key(path, k, 0, err, errlen);
}

int seal_key_read_apart(const char *path, struct seal_key *k, char *err, size_t errlen)
{
    return read_key(path, k, 1, err, errlen);
}

int seal_is_sealed(const char *s)
{
    return s != NULL && strncmp(s, SEAL_PREFIX, strlen(SEAL_PREFIX)) == 0;
}

void seal_value_key_id(const char *sealed, char id[SEAL_ID_LEN + 1])
{
    id[0] = '\0';
    if (!seal_is_sealed(sealed))
        return;
    const char *p = sealed + strlen(SEAL_PREFIX);
    if (strlen(p) > SEAL_ID_LEN && p[SEAL_ID_LEN] == ':') {
        memcpy(id, p, SEAL_ID_LEN);
        id[SEAL_ID_LEN] = '\0';
    }
}

/* ---- one value ---------------------------------------------------------------------------- */

/* The associated data: the row's identity and the field's path, separated by 0x1f. */
static char *aad_of(const struct seal_ident *who, const char *path)
{
    return xasprintf("ferry-seal-1\x1f%s\x1f%s\x1f%s\x1f%s", who->kind, who->team ? who->team : "",
                     who->name ? who->name : "", path);
}

/* Seals plain (len bytes) under k with aad; returns the sealed string (caller frees), or
 * NULL when OpenSSL fails. */
static char *seal_bytes(const struct seal_key *k, const char *aad, const char *plain, size_t len)
{
    size_t raw_len = NONCE_LEN + len + TAG_LEN;
    unsigned char *raw = malloc(raw_len);
    char *b64 = malloc(4 * ((raw_len + 2) / 3) + 1);
    char *out = NULL;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    if (raw == NULL || b64 == NULL || ctx == NULL || RAND_bytes(raw, NONCE_LEN) != 1)
        goto out;
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(ctx, NULL, NULL, k->bytes, raw) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) != 1 ||
        EVP_EncryptUpdate(ctx, raw + NONCE_LEN, &n, (const unsigned char *)plain, (int)len) != 1 ||
        EVP_EncryptFinal_ex(ctx, raw + NONCE_LEN + n, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, raw + NONCE_LEN + len) != 1)
        goto out;
    EVP_EncodeBlock((unsigned char *)b64, raw, (int)raw_len);
    out = xasprintf("%s%s:%s", SEAL_PREFIX, k->id, b64);
out:
    EVP_CIPHER_CTX_free(ctx);
    free(raw);
    free(b64);
    return out;
}

/* 1 when b64 (b64_len characters) is the one encoding of raw (raw_len bytes). Base64 leaves
 * unused bits in the last character before padding; a value whose unused bits are set decodes
 * to the same bytes, so without this check a changed value could still open. */
static int canonical_b64(const char *b64, size_t b64_len, const unsigned char *raw, int raw_len)
{
    char *again = malloc(b64_len + 1);
    int same = again != NULL &&
               (size_t)EVP_EncodeBlock((unsigned char *)again, raw, raw_len) == b64_len &&
               memcmp(again, b64, b64_len) == 0;
    free(again);
    return same;
}

/* Opens sealed under k with aad into *plain (malloc'd, NUL-terminated, *len bytes).
 * 0, or -1 when it does not open (damaged, altered, another row's, another key). */
static int open_bytes(const struct seal_key *k, const char *aad, const char *sealed,
                      char **plain, size_t *len)
{
    const char *b64 = sealed + strlen(SEAL_PREFIX) + SEAL_ID_LEN + 1;
    size_t b64_len = strlen(b64);
    if (b64_len % 4 != 0 || b64_len / 4 * 3 > SEAL_MAX_PLAIN)
        return -1;
    unsigned char *raw = malloc(b64_len / 4 * 3 + 1);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int rc = -1, n = 0, fin = 0;
    char *out = NULL;
    int raw_len = raw ? EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)b64_len) : -1;
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    if (raw_len > 0 && b64_len >= 1 && b64[b64_len - 1] == '=')
        raw_len--;
    if (raw_len > 0 && b64_len >= 2 && b64[b64_len - 2] == '=')
        raw_len--;
    if (ctx == NULL || raw_len < NONCE_LEN + TAG_LEN || !canonical_b64(b64, b64_len, raw, raw_len))
        goto out;
    size_t clen = (size_t)raw_len - NONCE_LEN - TAG_LEN;
    out = malloc(clen + 1);
    if (out == NULL ||
        EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(ctx, NULL, NULL, k->bytes, raw) != 1 ||
        EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) != 1 ||
        EVP_DecryptUpdate(ctx, (unsigned char *)out, &n, raw + NONCE_LEN, (int)clen) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, raw + NONCE_LEN + clen) != 1 ||
        EVP_DecryptFinal_ex(ctx, (unsigned char *)out + n, &fin) != 1)
        goto out;
    out[clen] = '\0';
    *plain = out;
    *len = clen;
    out = NULL;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    free(raw);
    free(out);
    return rc;
}

/* ---- vaults ------------------------------------------------------------------------------- */

/* Appends a JSON pointer step for key (~ and / escaped) to path. */
static char *path_step(const char *path, const char *key)
{
    size_t n = strlen(path), k = strlen(key);
    char *out = malloc(n + 2 * k + 2);
    if (out == NULL)
        abort();
    memcpy(out, path, n);
    out[n++] = '/';
    for (size_t i = 0; i < k; i++) {
        if (key[i] == '~' || key[i] == '/') {
            out[n++] = '~';
            out[n++] = key[i] == '~' ? '0' : '1';
        } else {
            out[n++] = key[i];
        }
    }
    out[n] = '\0';
    return out;
}

static char *path_index(const char *path, size_t i)
{
    return xasprintf("%s/%zu", path, i);
}

struct walk {
    const struct seal_key *keys;
    size_t nkeys;
    const struct seal_ident *who;
    const json_t *secret_names;
    int count;
    char *err;
    size_t errlen;
};

/* Seals value (under a secret key) at path; returns the sealed string value or NULL. */
static json_t *seal_one(struct walk *w, const json_t *value, const char *path)
{
    char *plain = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    char *aad = aad_of(w->who, path);
    char *sealed = plain ? seal_bytes(&w->keys[0], aad, plain, strlen(plain)) : NULL;
    json_t *out = sealed ? json_string(sealed) : NULL;
    if (plain)
        explicit_bzero(plain, strlen(plain));
    free(plain);
    free(aad);
    free(sealed);
    if (out == NULL)
        seterr(w->err, w->errlen, "cannot seal %s of %s '%s': encryption failed", path,
               w->who->kind, w->who->name);
    return out;
}

static int seal_walk(struct walk *w, json_t *value, const char *path)
{
    int rc = 0;
    if (json_is_object(value)) {
        const char *key;
        json_t *child;
        json_object_foreach(value, key, child)
        {
            char *p = path_step(path, key);
            if (vault_key_is_secret_in(key, w->secret_names) && !json_is_null(child)) {
                if (!(json_is_string(child) && seal_is_sealed(json_string_value(child)))) {
                    json_t *sealed = seal_one(w, child, p);
                    rc = sealed ? json_object_set_new(value, key, sealed) : -1;
                    w->count += rc == 0;
                }
            } else {
                rc = seal_walk(w, child, p);
            }
            free(p);
            if (rc != 0)
                return -1;
        }
    } else if (json_is_array(value)) {
        size_t i;
        json_t *child;
        json_array_foreach(value, i, child)
        {
            char *p = path_index(path, i);
            rc = seal_walk(w, child, p);
            free(p);
            if (rc != 0)
                return -1;
        }
    }
    return 0;
}

int seal_vault(json_t *vault, const struct seal_key *k, const struct seal_ident *who,
               const json_t *secret_names, int *count, char *err, size_t errlen)
{
    struct walk w = {.keys = k, .nkeys = 1, .who = who, .secret_names = secret_names,
                     .err = err, .errlen = errlen};
    int rc = seal_walk(&w, vault, "");
    if (count)
        *count = w.count;
    return rc;
}

/* Opens one sealed string at path; a new reference to the value, or NULL with err set. */
static json_t *open_one(struct walk *w, const char *sealed, const char *path)
{
    char id[SEAL_ID_LEN + 1];
    seal_value_key_id(sealed, id);
    const struct seal_key *k = NULL;
    for (size_t i = 0; i < w->nkeys && k == NULL; i++)
        if (strcmp(w->keys[i].id, id) == 0)
            k = &w->keys[i];
    const char *team = w->who->team && w->who->team[0] ? w->who->team : NULL;
    if (k == NULL) {
        seterr(w->err, w->errlen,
               "the secret at %s of %s '%s'%s%s is sealed with key %s, but the key file "
               "holds key %s: use the key this store was sealed with",
               path, w->who->kind, w->who->name, team ? " of team " : "", team ? team : "",
               id[0] ? id : "(unreadable)", w->nkeys ? w->keys[0].id : "(none)");
        return NULL;
    }
    char *aad = aad_of(w->who, path), *plain = NULL;
    size_t len = 0;
    json_t *value = NULL;
    if (open_bytes(k, aad, sealed, &plain, &len) == 0) {
        json_error_t jerr;
        value = json_loadb(plain, len, JSON_DECODE_ANY, &jerr);
        explicit_bzero(plain, len);
    }
    free(plain);
    free(aad);
    if (value == NULL)
        seterr(w->err, w->errlen,
               "the secret at %s of %s '%s'%s%s does not open with key %s: it was altered or "
               "copied from another row or field",
               path, w->who->kind, w->who->name, team ? " of team " : "", team ? team : "",
               k->id);
    return value;
}

/* Called for each sealed string of a vault: its parent (an object, with key, or an array,
 * with index), the string and its path. Non-zero stops the walk and is returned. */
typedef int (*sealed_visit)(void *ctx, json_t *parent, const char *key, size_t index,
                            const char *sealed, const char *path);

static int each_sealed(json_t *value, const char *path, sealed_visit visit, void *ctx)
{
    int rc = 0;
    size_t n = json_is_array(value) ? json_array_size(value) : 0;
    void *it = json_is_object(value) ? json_object_iter(value) : NULL;
    for (size_t i = 0; rc == 0 && (it != NULL || i < n); i++) {
        const char *key = it ? json_object_iter_key(it) : NULL;
        json_t *child = it ? json_object_iter_value(it) : json_array_get(value, i);
        char *p = key ? path_step(path, key) : path_index(path, i);
        if (json_is_string(child) && seal_is_sealed(json_string_value(child)))
            rc = visit(ctx, value, key, i, json_string_value(child), p);
        else
            rc = each_sealed(child, p, visit, ctx);
        free(p);
        if (it)
            it = json_object_iter_next(value, it);
    }
    return rc;
}

/* Puts v (stolen) where the sealed string was. */
static int put(json_t *parent, const char *key, size_t index, json_t *v)
{
    return key ? json_object_set_new(parent, key, v) : json_array_set_new(parent, index, v);
}

static int open_visit(void *ctx, json_t *parent, const char *key, size_t index,
                      const char *sealed, const char *path)
{
    struct walk *w = ctx;
    json_t *opened = open_one(w, sealed, path);
    if (opened == NULL || put(parent, key, index, opened) != 0)
        return -1;
    w->count++;
    return 0;
}

int seal_vault_open(json_t *vault, const struct seal_key *keys, size_t nkeys,
                    const struct seal_ident *who, int *count, char *err, size_t errlen)
{
    struct walk w = {.keys = keys, .nkeys = nkeys, .who = who, .err = err, .errlen = errlen};
    int rc = each_sealed(vault, "", open_visit, &w);
    if (count)
        *count = w.count;
    return rc != 0 ? -1 : 0;
}

static int found_visit(void *ctx, json_t *parent, const char *key, size_t index,
                       const char *sealed, const char *path)
{
    (void)ctx, (void)parent, (void)key, (void)index, (void)sealed, (void)path;
    return 1;
}

static int drop_visit(void *ctx, json_t *parent, const char *key, size_t index,
                      const char *sealed, const char *path)
{
    (void)ctx, (void)sealed, (void)path;
    put(parent, key, index, json_null());
    return 0;
}

static int key_visit(void *ctx, json_t *parent, const char *key, size_t index,
                     const char *sealed, const char *path)
{
    (void)parent, (void)index, (void)sealed, (void)path;
    if (key)
        json_array_append_new(ctx, json_string(key));
    return 0;
}

int seal_vault_has_sealed(const json_t *vault)
{
    if (json_is_string(vault))
        return seal_is_sealed(json_string_value(vault));
    return each_sealed(readonly(vault), "", found_visit, NULL) != 0;
}

void seal_vault_drop_sealed(json_t *vault)
{
    each_sealed(vault, "", drop_visit, NULL);
}

void seal_vault_sealed_keys(const json_t *vault, json_t *names)
{
    each_sealed(readonly(vault), "", key_visit, names);
}

int seal_vault_has_plain_secret(const json_t *vault, const json_t *secret_names)
{
    const char *key;
    json_t *child;
    size_t i;
    if (json_is_object(vault)) {
        json_object_foreach(readonly(vault), key, child)
        {
            if (vault_key_is_secret_in(key, secret_names) && !json_is_null(child)) {
                if (!(json_is_string(child) && seal_is_sealed(json_string_value(child))))
                    return 1;
            } else if (seal_vault_has_plain_secret(child, secret_names)) {
                return 1;
            }
        }
    }
    if (json_is_array(vault))
        json_array_foreach(vault, i, child) if (seal_vault_has_plain_secret(child, secret_names))
            return 1;
    return 0;
}
