/*
 * Storages: where repositories are pushed. A storage is a flat namespace of objects named by
 * slash-separated keys ("config", "data/ab/ab12…", "snapshots/web/20240101_020000") behind a
 * small provider interface, so that S3, SFTP and WebDAV providers (through libcurl) can join
 * the "local" provider without touching the format code above it.
 *
 * Provider contract (every provider must keep it, docs/storage-format.md repeats it):
 *   - put is atomic: a reader sees the old object, no object, or the whole new one, never a
 *     part. With STOR_PUT_EXCLUSIVE it fails with ST_EXISTS instead of replacing.
 *   - a successful put is durable (fsync, or the server's acknowledgement).
 *   - get reads a byte range; len 0 means "to the end".
 *   - list reports every object under a prefix that a put had completed before the list
 *     started; objects being written are not reported.
 *   - every operation may be called from several threads at once.
 * Errors fill an rerr; E_TRANSIENT marks what may work when tried again later.
 */
#ifndef REPO_STORAGE_H
#define REPO_STORAGE_H

#include <stdint.h>

#include <jansson.h>

#include "chunker.h"
#include "crypto.h"
#include "util.h"

enum { ST_OK = 0, ST_NOTFOUND = 1, ST_EXISTS = 2, ST_ERROR = -1 };

#define STOR_PUT_EXCLUSIVE 1u /* fail with ST_EXISTS when the key exists */
#define STOR_PUT_NOSYNC    2u /* durability not needed (lock files) */
#define STOR_PUT_META      4u /* a pack of snapshot trees: kept out of a cold storage class */

/* Progress of a thaw: ready of total objects readable after waited seconds. */
typedef void (*stor_thaw_cb)(void *arg, size_t ready, size_t total, double waited);

/* Called once per listed object; returning non-zero stops the listing. */
typedef int (*stor_list_cb)(void *arg, const char *key, uint64_t size);

typedef struct stor_ops {
    const char *name; /* the vault's "provider" */
    /* Opens a provider from the storage's vault (borrowed). NULL with e set on failure. */
    void *(*open)(const json_t *vault, rerr *e);
    int (*put)(void *self, const char *key, const void *data, size_t len, unsigned flags, rerr *e);
    /* Appends the range to out. ST_OK, ST_NOTFOUND or ST_ERROR. */
    int (*get)(void *self, const char *key, uint64_t offset, uint64_t len, buf *out, rerr *e);
    /* prefix ends with '/'; keys are reported whole ("data/ab/ab12…"). */
    int (*list)(void *self, const char *prefix, stor_list_cb cb, void *arg, rerr *e);
    int (*del)(void *self, const char *key, rerr *e); /* ST_OK, ST_NOTFOUND or ST_ERROR */
    int (*exists)(void *self, const char *key, uint64_t *size, rerr *e);
    void (*close)(void *self);
    /*
     * Optional streaming put, for packs: wopen starts an object under a temporary name
     * (dir_hint, e.g. "data/", says where it will go), wwrite appends, wcommit publishes it
     * under key with put's guarantees (atomic, durable), wabort discards it. A provider
     * without them (NULL) gets the object buffered in memory and handed to put.
     */
    void *(*wopen)(void *self, const char *dir_hint, rerr *e);
    int (*wwrite)(void *self, void *w, const void *data, size_t len, rerr *e);
    int (*wcommit)(void *self, void *w, const char *key, unsigned flags, rerr *e);
    void (*wabort)(void *self, void *w);
    /*
     * Optional: the data is complete. A remote provider finishes the upload under the
     * temporary name and gives its connection back, so a finished object waiting for
     * wcommit holds neither memory nor a connection. ST_OK or ST_ERROR (then only wabort).
     */
    int (*wfinish)(void *self, void *w, rerr *e);
    /*
     * Optional: reports every temporary object (".tmp-TIME-RANDOM", see tmp_name) that puts
     * and streams in progress or interrupted left anywhere in the storage, which list hides;
     * stor_sweep_tmp deletes the old ones. abort_stale (optional, S3) aborts the incomplete
     * multipart uploads of temporaries made before cutoff, counting them in *removed.
     * ST_OK or ST_ERROR.
     */
    int (*list_tmp)(void *self, stor_list_cb cb, void *arg, rerr *e);
    int (*abort_stale)(void *self, int64_t cutoff, uint64_t *removed, rerr *e);
    /*
     * Optional, for storages whose data packs sit in a cold class (S3 GLACIER, DEEP_ARCHIVE)
     * that must be restored before a read: cold says whether this one does; thaw requests the
     * restore of keys[0..n) (those not readable yet), then waits until every one is readable,
     * calling progress now and then, for at most the vault's "thaw_timeout". ST_OK, or
     * ST_ERROR with e set (E_TRANSIENT when the time ran out: a later try finds them thawed).
     */
    int (*cold)(void *self);
    int (*thaw)(void *self, char *const *names, size_t n, stor_thaw_cb progress, void *arg,
                rerr *e);
} stor_ops;

/*
 * The name of a new temporary object: ".tmp-<Unix seconds>-<16 hex digits>" into out (at
 * least 48 bytes). list never reports such names (they start with '.'); the time lets
 * repo_gc tell an abandoned one from one being written, on every provider.
 */
void tmp_name(char *out, size_t outlen);
/*
 * Non-zero when the last component of key is a temporary name made before cutoff (or one
 * without a time); 0 for any other name.
 */
int tmp_expired(const char *key, int64_t cutoff);

extern const stor_ops stor_local_ops;
extern const stor_ops stor_s3_ops;     /* storage_s3.c */
extern const stor_ops stor_sftp_ops;   /* storage_sftp.c */
extern const stor_ops stor_webdav_ops; /* storage_webdav.c ("webdav", also named "http") */

/* An open storage: a provider plus the format's config and keys. */
typedef struct storage {
    char *name;
    const stor_ops *ops;
    void *be;
    keys keys;
    cdc data_cdc;
    cdc meta_cdc;
    char id[33];     /* random storage id from the config */
    int connections; /* parallel transfers the provider takes (the vault's "connections") */
    int cold; /* data packs must be thawed before a read (see stor_ops.cold) */
} storage;

/*
 * Opens the storage named name whose vault is vault (borrowed). When the storage has no
 * config yet and create is set, writes one (encrypted when the vault has a "passphrase").
 * Returns 0 with *out set, or -1 with e set.
 */
int storage_open(const char *name, const json_t *vault, int create, storage **out, rerr *e);
void storage_close(storage *s);

/*
 * Opens the storage named name as a replica of src: when it has no config yet, src's config
 * is written to it first, so both share id, keys and chunker and objects copy byte for byte
 * (its vault's passphrase must then be src's). A storage that holds another config is
 * refused (E_INVALID). Returns 0 with *out set, or -1 with e set.
 */
int storage_open_replica(const char *name, const json_t *vault, storage *src, storage **out,
                         rerr *e);

/* Provider calls through the storage (thin wrappers that keep call sites short). */
int stor_put(storage *s, const char *key, const void *data, size_t len, unsigned flags, rerr *e);
int stor_get(storage *s, const char *key, uint64_t off, uint64_t len, buf *out, rerr *e);
int stor_list(storage *s, const char *prefix, stor_list_cb cb, void *arg, rerr *e);
int stor_del(storage *s, const char *key, rerr *e);
/* Removes temporaries older than cutoff (stor_ops.sweep_tmp); *removed = 0 when the provider
 * has none to sweep. 0 or -1. */
int stor_sweep_tmp(storage *s, int64_t cutoff, uint64_t *removed, rerr *e);
/* Thaws names[0..n) of a cold storage (stor_ops.thaw); 0 at once for any other. 0 or -1. */
int stor_thaw(storage *s, char *const *names, size_t n, stor_thaw_cb progress, void *arg, rerr *e);

/* A streaming put through the provider's writer, or through memory and put. */
typedef struct stor_stream stor_stream;
stor_stream *stream_open(storage *s, const char *dir_hint, rerr *e);
int stream_write(stor_stream *st, const void *data, size_t len, rerr *e);
/* The data is complete (see stor_ops.wfinish); commit or abort follows. 0 or -1. */
int stream_finish(stor_stream *st, rerr *e);
/* Publishes the object under key (flags: STOR_PUT_META or 0) and frees the stream, whatever
 * the outcome. 0 or -1. */
int stream_commit(stor_stream *st, const char *key, unsigned flags, rerr *e);
void stream_abort(stor_stream *st);

/* Puts or gets a sealed object (sealed with aad when the storage is encrypted). */
int stor_put_sealed(storage *s, const char *key, const char *aad, const void *data, size_t len,
                    unsigned flags, rerr *e);
int stor_get_sealed(storage *s, const char *key, const char *aad, buf *out, rerr *e);

/* Key of the pack with id: "data/ab/ab12…" (out holds at least 72 bytes). */
void pack_key(const uint8_t id[ID_LEN], char *out, size_t outlen);

#endif
