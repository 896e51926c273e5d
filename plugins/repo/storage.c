/* Opening a storage: provider by name, then the format's config and keys. See storage.h. */
#include "storage.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FORMAT_NAME    "ferry-storage"
#define FORMAT_VERSION 1

/* The providers this build knows. "http" is WebDAV over http:// or https://. */
static const struct {
    const char *name;
    const stor_ops *ops;
} providers[] = {
    {"local", &stor_local_ops},   {"s3", &stor_s3_ops},       {"sftp", &stor_sftp_ops},
    {"webdav", &stor_webdav_ops}, {"http", &stor_webdav_ops},
};

static const stor_ops *find_provider(const char *name)
{
    for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]); i++)
        if (strcmp(providers[i].name, name) == 0)
            return providers[i].ops;
    return NULL;
}

void pack_key(const uint8_t id[ID_LEN], char *out, size_t outlen)
{
    char hex[HEX_LEN + 1];
    hex_encode(id, ID_LEN, hex);
    snprintf(out, outlen, "data/%.2s/%s", hex, hex);
}

int stor_put(storage *s, const char *key, const void *data, size_t len, unsigned flags, rerr *e)
{
    return s->ops->put(s->be, key, data, len, flags, e);
}

int stor_get(storage *s, const char *key, uint64_t off, uint64_t len, buf *out, rerr *e)
{
    return s->ops->get(s->be, key, off, len, out, e);
}

int stor_list(storage *s, const char *prefix, stor_list_cb cb, void *arg, rerr *e)
{
    return s->ops->list(s->be, prefix, cb, arg, e);
}

int stor_del(storage *s, const char *key, rerr *e)
{
    return s->ops->del(s->be, key, e);
}

/* Temporaries found by a sweep, deleted once the listing is over. */
typedef struct stale {
    char **keys;
    size_t n;
    int64_t cutoff;
} stale;

static int note_stale(void *arg, const char *key, uint64_t size)
{
    (void)size;
    stale *st = arg;
    if (tmp_expired(key, st->cutoff)) {
        st->keys = xrealloc(st->keys, (st->n + 1) * sizeof(*st->keys));
        st->keys[st->n++] = xstrdup(key);
    }
    return 0;
}

int stor_sweep_tmp(storage *s, int64_t cutoff, uint64_t *removed, rerr *e)
{
    *removed = 0;
    if (s->ops->list_tmp == NULL)
        return 0;
    stale st = {.cutoff = cutoff};
    int rc = s->ops->list_tmp(s->be, note_stale, &st, e);
    for (size_t i = 0; i < st.n; i++) {
        int d = rc == ST_OK ? stor_del(s, st.keys[i], e) : ST_OK;
        if (d == ST_OK)
            (*removed)++;
        else if (d == ST_ERROR)
            rc = ST_ERROR;
        free(st.keys[i]);
    }
    free(st.keys);
    if (rc == ST_OK && s->ops->abort_stale)
        rc = s->ops->abort_stale(s->be, cutoff, removed, e);
    return rc == ST_OK ? 0 : -1;
}

int stor_thaw(storage *s, char *const *names, size_t n, stor_thaw_cb progress, void *arg, rerr *e)
{
    if (!s->cold || s->ops->thaw == NULL || n == 0)
        return 0;
    return s->ops->thaw(s->be, names, n, progress, arg, e) == ST_OK ? 0 : -1;
}

void tmp_name(char *out, size_t outlen)
{
    char rnd[17];
    random_hex(rnd, 8);
    snprintf(out, outlen, ".tmp-%lld-%s", (long long)time(NULL), rnd);
}

int tmp_expired(const char *key, int64_t cutoff)
{
    const char *name = strrchr(key, '/');
    name = name ? name + 1 : key;
    if (strncmp(name, ".tmp-", 5) != 0)
        return 0;
    char *end;
    long long t = strtoll(name + 5, &end, 10);
    if (end == name + 5 || *end != '-')
        return 1; /* ".tmp-RANDOM": an older version's, from before names carried a time */
    return t < cutoff;
}

struct stor_stream {
    storage *s;
    void *w; /* the provider's writer, or NULL */
    buf mem; /* the object, when the provider has no writer */
};

stor_stream *stream_open(storage *s, const char *dir_hint, rerr *e)
{
    stor_stream *st = xcalloc(1, sizeof(*st));
    st->s = s;
    if (s->ops->wopen && (st->w = s->ops->wopen(s->be, dir_hint, e)) == NULL) {
        free(st);
        return NULL;
    }
    return st;
}

int stream_write(stor_stream *st, const void *data, size_t len, rerr *e)
{
    if (st->w)
        return st->s->ops->wwrite(st->s->be, st->w, data, len, e) == ST_OK ? 0 : -1;
    buf_append(&st->mem, data, len);
    return 0;
}

int stream_finish(stor_stream *st, rerr *e)
{
    if (st->w == NULL || st->s->ops->wfinish == NULL)
        return 0;
    return st->s->ops->wfinish(st->s->be, st->w, e) == ST_OK ? 0 : -1;
}

int stream_commit(stor_stream *st, const char *key, unsigned flags, rerr *e)
{
    int rc = st->w ? st->s->ops->wcommit(st->s->be, st->w, key, flags, e)
                   : stor_put(st->s, key, st->mem.data, st->mem.len, flags, e);
    buf_free(&st->mem);
    free(st);
    return rc == ST_OK ? 0 : -1;
}

void stream_abort(stor_stream *st)
{
    if (st == NULL)
        return;
    if (st->w)
        st->s->ops->wabort(st->s->be, st->w);
    buf_free(&st->mem);
    free(st);
}

int stor_put_sealed(storage *s, const char *key, const char *aad, const void *data, size_t len,
                    unsigned flags, rerr *e)
{
    buf sealed = {0};
    seal_buf(&s->keys, aad, data, len, &sealed);
    int rc = stor_put(s, key, sealed.data, sealed.len, flags, e);
    buf_free(&sealed);
    return rc;
}

int stor_get_sealed(storage *s, const char *key, const char *aad, buf *out, rerr *e)
{
    buf raw = {0};
    int rc = stor_get(s, key, 0, 0, &raw, e);
    if (rc == ST_OK && unseal_buf(&s->keys, aad, raw.data, raw.len, out) != 0)
        rc = rerr_set(e, E_CORRUPT,
                      "%s in storage %s: damaged or not sealed with this storage's keys", key,
                      s->name);
    buf_free(&raw);
    return rc;
}

static json_t *new_config(const char *passphrase, keys *k)
{
    json_t *enc = NULL;
    keys_create(passphrase, k, &enc);
    char id[33], seed[17];
    random_hex(id, 16);
    uint8_t seed_bytes[8];
    memcpy(seed_bytes, &k->chunker_seed, 8);
    hex_encode(seed_bytes, 8, seed);
    json_t *chunker = json_pack("{s:s,s:[I,I,I],s:[I,I,I]}", "algorithm", "fastcdc-gear", "data",
                                (json_int_t)CDC_DATA_MIN, (json_int_t)CDC_DATA_AVG,
                                (json_int_t)CDC_DATA_MAX, "meta", (json_int_t)CDC_META_MIN,
                                (json_int_t)CDC_META_AVG, (json_int_t)CDC_META_MAX);
    /* Without encryption the seed is no secret; with it, it travels inside the wrapped keys. */
    if (enc == NULL)
        json_object_set_new(chunker, "seed", json_string(seed));
    return json_pack("{s:s,s:i,s:s,s:s,s:s,s:o,s:o}", "format", FORMAT_NAME, "version",
                     FORMAT_VERSION, "id", id, "hash", enc ? "hmac-sha256" : "sha256",
                     "compression", "zstd", "chunker", chunker, "encryption",
                     enc ? enc : json_null());
}

/* Reads the config; with create, writes a new one first when there is none. */
static int load_config(storage *s, const char *passphrase, int create, json_t **config, rerr *e)
{
    buf raw = {0};
    int rc = stor_get(s, "config", 0, 0, &raw, e);
    if (rc == ST_NOTFOUND && create) {
        keys k;
        json_t *fresh = new_config(passphrase, &k);
        char *text = json_dumps(fresh, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(fresh);
        /* Exclusive: when two pushes create a storage at once, one config wins and both
         * read it back, so no data is ever written under keys that were thrown away. */
        rc = stor_put(s, "config", text, strlen(text), STOR_PUT_EXCLUSIVE, e);
        free(text);
        if (rc == ST_OK || rc == ST_EXISTS)
            rc = stor_get(s, "config", 0, 0, &raw, e);
    }
    if (rc == ST_NOTFOUND)
        return rerr_set(e, E_NOTFOUND,
                        "storage %s has no repository data yet (no config): push to it first",
                        s->name);
    if (rc != ST_OK)
        return -1;
    json_error_t jerr;
    *config = json_loadb((const char *)raw.data, raw.len, 0, &jerr);
    buf_free(&raw);
    if (*config == NULL)
        return rerr_set(e, E_CORRUPT, "storage %s: config is not valid JSON (%s)", s->name,
                        jerr.text);
    return 0;
}

static int apply_config(storage *s, const json_t *config, const char *passphrase, rerr *e)
{
    const char *format = json_string_value(json_object_get(config, "format"));
    json_int_t version = json_integer_value(json_object_get(config, "version"));
    if (format == NULL || strcmp(format, FORMAT_NAME) != 0)
        return rerr_set(e, E_INVALID, "storage %s holds something other than a ferry storage",
                        s->name);
    if (version != FORMAT_VERSION)
        return rerr_set(e, E_INVALID,
                        "storage %s uses format version %lld; this plugin reads version %d",
                        s->name, (long long)version, FORMAT_VERSION);
    const json_t *enc = json_object_get(config, "encryption");
    if (json_is_object(enc)) {
        if (keys_unlock(enc, passphrase, &s->keys, e) != 0)
            return -1;
    } else {
        if (passphrase && passphrase[0])
            return rerr_set(e, E_INVALID,
                            "storage %s was created without encryption but its vault has a "
                            "passphrase; remove it, or point the vault at a new path",
                            s->name);
        const char *seed =
            json_string_value(json_object_get(json_object_get(config, "chunker"), "seed"));
        uint8_t seed_bytes[8];
        if (seed == NULL || hex_decode(seed, seed_bytes, 8) != 0)
            return rerr_set(e, E_CORRUPT, "storage %s: config has no chunker seed", s->name);
        memset(&s->keys, 0, sizeof(s->keys));
        memcpy(&s->keys.chunker_seed, seed_bytes, 8);
    }
    const char *id = json_string_value(json_object_get(config, "id"));
    snprintf(s->id, sizeof(s->id), "%s", id ? id : "");
    cdc_init(&s->data_cdc, s->keys.chunker_seed, CDC_DATA_MIN, CDC_DATA_AVG, CDC_DATA_MAX);
    cdc_init(&s->meta_cdc, s->keys.chunker_seed ^ 1, CDC_META_MIN, CDC_META_AVG, CDC_META_MAX);
    return 0;
}

/*
 * Buffers of 1 MiB and more (read buffers, pack parts, stream rings) are mapped and unmapped
 * on their own. By default glibc raises its mapping threshold after the first such free, and
 * the next big buffers then come from the per-thread arenas, where freed space stays in the
 * process: a push's RSS grew well past its live memory (67 instead of 54 MiB for 320 MiB to
 * WebDAV). A fixed threshold keeps RSS at what is in use. It holds for the rest of the
 * worker process's life, where it only changes where big buffers come from.
 */
static pthread_once_t malloc_once = PTHREAD_ONCE_INIT;

static void tune_malloc(void)
{
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
}

int storage_open(const char *name, const json_t *vault, int create, storage **out, rerr *e)
{
    pthread_once(&malloc_once, tune_malloc);
    const char *pname = json_string_value(json_object_get(vault, "provider"));
    if (pname == NULL)
        pname = "local";
    const stor_ops *ops = find_provider(pname);
    if (ops == NULL)
        return rerr_set(e, E_INVALID,
                        "storage %s: provider \"%s\" is not supported by this build (known: local, "
                        "s3, sftp, webdav, http)",
                        name, pname);
    storage *s = xcalloc(1, sizeof(*s));
    s->name = xstrdup(name);
    s->ops = ops;
    json_int_t conns = json_integer_value(json_object_get(vault, "connections"));
    s->connections = conns > 0 && conns <= 32 ? (int)conns : ops == &stor_local_ops ? 2 : 4;
    s->be = ops->open(vault, e);
    s->cold = s->be && ops->cold ? ops->cold(s->be) : 0;
    json_t *config = NULL;
    const char *passphrase = json_string_value(json_object_get(vault, "passphrase"));
    if (s->be == NULL || load_config(s, passphrase, create, &config, e) != 0 ||
        apply_config(s, config, passphrase, e) != 0) {
        json_decref(config);
        storage_close(s);
        return -1;
    }
    json_decref(config);
    *out = s;
    return 0;
}

int storage_open_replica(const char *name, const json_t *vault, storage *src, storage **out,
                         rerr *e)
{
    rerr probe = {0};
    if (storage_open(name, vault, 0, out, &probe) == 0)
        goto check;
    if (probe.kind != E_NOTFOUND) {
        rerr_merge(e, &probe);
        return -1;
    }
    /* No config yet: give it the source's, byte for byte, so that both share the id, the
     * keys and the chunker, and every object copies as it is. */
    buf config = {0};
    int rc = stor_get(src, "config", 0, 0, &config, e);
    if (rc == ST_NOTFOUND)
        rc = rerr_set(e, E_CORRUPT, "storage %s has no config", src->name);
    if (rc == ST_OK) {
        storage raw = {.name = (char *)name};
        const char *pname = json_string_value(json_object_get(vault, "provider"));
        raw.ops = find_provider(pname ? pname : "local");
        if (raw.ops == NULL || (raw.be = raw.ops->open(vault, e)) == NULL) {
            if (raw.ops == NULL)
                rerr_set(e, E_INVALID, "storage %s: provider \"%s\" is not supported", name, pname);
            rc = ST_ERROR;
        } else {
            rc = stor_put(&raw, "config", config.data, config.len, STOR_PUT_EXCLUSIVE, e);
            raw.ops->close(raw.be);
        }
    }
    buf_free(&config);
    if ((rc != ST_OK && rc != ST_EXISTS) || storage_open(name, vault, 0, out, e) != 0)
        return -1;
check:
    if (strcmp((*out)->id, src->id) != 0) {
        rerr_set(e, E_INVALID,
                 "storage %s already holds another storage (id %s, not %s's %s): replicate into "
                 "an empty storage or into a replica of %s",
                 name, (*out)->id, src->name, src->id, src->name);
        storage_close(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

void storage_close(storage *s)
{
    if (s == NULL)
        return;
    if (s->be)
        s->ops->close(s->be);
    memset(&s->keys, 0, sizeof(s->keys));
    free(s->name);
    free(s);
}
