/*
 * Shared by the repo plugin's storage format harnesses (fuzz_repo_*.c): the plugin's format
 * sources compiled in (as tests/unit/test_repo_format.c does), and an in-memory storage
 * provider registered under the name "s3" (the remote providers are not compiled in), so
 * a harness puts its input under a key and runs the real reader through the real storage
 * layer: stor_get_sealed, unseal, parse.
 *
 * Two storages are opened once: a plain one and an encrypted one (scrypt runs once, at
 * start). A harness's first input byte picks the mode:
 *   FUZZ_PLAIN      the plain storage; the rest of the input is the object
 *   FUZZ_ENC_RAW    the encrypted storage; the rest is the sealed object as stored (so the
 *                   fuzzer attacks unseal: nonces, tags, short and empty objects)
 *   FUZZ_ENC_SEALED the encrypted storage; the rest is sealed by the harness first, so the
 *                   parser behind the decryption is reached too
 */
#ifndef FERRY_REPO_FUZZ_H
#define FERRY_REPO_FUZZ_H

#include <stdio.h>

#include "../../plugins/repo/chunker.c"
#include "../../plugins/repo/crypto.c"
#include "../../plugins/repo/index.c"
#include "../../plugins/repo/pack.c"
#include "../../plugins/repo/snapshot.c"
#include "../../plugins/repo/storage.c"
#include "../../plugins/repo/storage_local.c"
#include "../../plugins/repo/tree.c"
#include "../../plugins/repo/util.c"
#include "fuzz.h"

enum { FUZZ_PLAIN, FUZZ_ENC_RAW, FUZZ_ENC_SEALED, FUZZ_MODES };

#define MEM_MAX 16

typedef struct mem_store {
    char *keys[MEM_MAX];
    buf data[MEM_MAX];
} mem_store;

static int mem_find(mem_store *m, const char *key)
{
    for (int i = 0; i < MEM_MAX; i++)
        if (m->keys[i] && strcmp(m->keys[i], key) == 0)
            return i;
    return -1;
}

static void *mem_open(const json_t *vault, rerr *e)
{
    (void)vault;
    (void)e;
    return xcalloc(1, sizeof(mem_store));
}

static int mem_put(void *self, const char *key, const void *data, size_t len, unsigned flags,
                   rerr *e)
{
    mem_store *m = self;
    int i = mem_find(m, key);
    if (i >= 0 && (flags & STOR_PUT_EXCLUSIVE))
        return ST_EXISTS;
    for (int j = 0; i < 0 && j < MEM_MAX; j++)
        if (m->keys[j] == NULL) {
            i = j;
            m->keys[i] = xstrdup(key);
        }
    if (i < 0)
        return rerr_set(e, E_FAIL, "memory storage full");
    m->data[i].len = 0;
    buf_append(&m->data[i], data, len);
    return ST_OK;
}

static int mem_get(void *self, const char *key, uint64_t offset, uint64_t len, buf *out, rerr *e)
{
    (void)e;
    mem_store *m = self;
    int i = mem_find(m, key);
    if (i < 0)
        return ST_NOTFOUND;
    const buf *b = &m->data[i];
    if (offset > b->len)
        offset = b->len;
    if (len == 0 || len > b->len - offset)
        len = b->len - offset;
    buf_append(out, b->data ? b->data + offset : NULL, len);
    return ST_OK;
}

static int mem_list(void *self, const char *prefix, stor_list_cb cb, void *arg, rerr *e)
{
    (void)e;
    mem_store *m = self;
    for (int i = 0; i < MEM_MAX; i++)
        if (m->keys[i] && strncmp(m->keys[i], prefix, strlen(prefix)) == 0 &&
            cb(arg, m->keys[i], m->data[i].len))
            break;
    return ST_OK;
}

static int mem_del(void *self, const char *key, rerr *e)
{
    (void)e;
    mem_store *m = self;
    int i = mem_find(m, key);
    if (i < 0)
        return ST_NOTFOUND;
    free(m->keys[i]);
    m->keys[i] = NULL;
    buf_free(&m->data[i]);
    return ST_OK;
}

static int mem_exists(void *self, const char *key, uint64_t *size, rerr *e)
{
    (void)e;
    mem_store *m = self;
    int i = mem_find(m, key);
    if (i < 0)
        return ST_NOTFOUND;
    if (size)
        *size = m->data[i].len;
    return ST_OK;
}

static void mem_close(void *self)
{
    mem_store *m = self;
    for (int i = 0; i < MEM_MAX; i++) {
        free(m->keys[i]);
        buf_free(&m->data[i]);
    }
    free(m);
}

const stor_ops stor_s3_ops = {.name = "s3",
                              .open = mem_open,
                              .put = mem_put,
                              .get = mem_get,
                              .list = mem_list,
                              .del = mem_del,
                              .exists = mem_exists,
                              .close = mem_close};
const stor_ops stor_sftp_ops = {.name = "sftp"};
const stor_ops stor_webdav_ops = {.name = "webdav"};

/* Removes every object but the config (what the last input left). */
static inline void mem_reset(storage *s)
{
    mem_store *m = s->be;
    for (int i = 0; i < MEM_MAX; i++)
        if (m->keys[i] && strcmp(m->keys[i], "config") != 0)
            mem_del(m, m->keys[i], NULL);
}

static storage *fuzz_storages[2]; /* plain, encrypted */

/* The storage for mode, emptied of everything but its config. */
static inline storage *fuzz_storage(int mode)
{
    if (fuzz_storages[0] == NULL) {
        rerr e = {0};
        json_t *plain = json_pack("{s:s}", "provider", "s3");
        json_t *enc = json_pack("{s:s,s:s}", "provider", "s3", "passphrase", "fuzz passphrase");
        if (storage_open("plain", plain, 1, &fuzz_storages[0], &e) != 0 ||
            storage_open("encrypted", enc, 1, &fuzz_storages[1], &e) != 0) {
            fprintf(stderr, "fuzz: cannot open the memory storages: %s\n", e.msg);
            abort();
        }
        json_decref(plain);
        json_decref(enc);
    }
    storage *s = fuzz_storages[mode == FUZZ_PLAIN ? 0 : 1];
    mem_reset(s);
    return s;
}

/* Stores the input under key in s, as mode says (FUZZ_ENC_SEALED: sealed with aad first). */
static inline void fuzz_put(storage *s, int mode, const char *key, const char *aad,
                            const uint8_t *data, size_t size)
{
    rerr e = {0};
    int rc = mode == FUZZ_ENC_SEALED ? stor_put_sealed(s, key, aad, data, size, 0, &e)
                                     : stor_put(s, key, data, size, 0, &e);
    if (rc != ST_OK)
        abort();
}

#endif
