/*
 * Hashing and encryption for the storage format (docs/storage-format.md):
 *   - chunk ids: SHA-256 of the plaintext, or HMAC-SHA256 under the storage's id key when
 *     the storage is encrypted (so ids reveal nothing about content);
 *   - sealing: AES-256-GCM with a random 96-bit nonce, out = nonce | ciphertext | tag, with
 *     associated data binding a blob to its id or an object to its kind;
 *   - keys: random master keys wrapped under a key derived from the storage vault's
 *     passphrase with scrypt.
 * Contexts (hasher, sealer) are per thread; keys are shared read-only.
 */
#ifndef REPO_CRYPTO_H
#define REPO_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util.h"

#define SEAL_NONCE    12
#define SEAL_TAG      16
#define SEAL_OVERHEAD (SEAL_NONCE + SEAL_TAG)

typedef struct keys {
    int encrypted;
    uint8_t enc_key[32];
    uint8_t id_key[32];
    uint64_t chunker_seed;
} keys;

/* SHA-256 of p[0..n) into out (one shot; for cold paths). */
void sha256(const void *p, size_t n, uint8_t out[ID_LEN]);

typedef struct hasher hasher;
hasher *hasher_new(const keys *k);
void hasher_free(hasher *h);
/* The chunk id of p[0..n) under the storage's keys. */
void hasher_id(hasher *h, const void *p, size_t n, uint8_t out[ID_LEN]);

typedef struct sealer sealer;
sealer *sealer_new(const keys *k);
void sealer_free(sealer *s);
/* Bytes seal() adds: SEAL_OVERHEAD when encrypted, else 0. */
size_t seal_overhead(const keys *k);
/*
 * Seals in[0..n) into out (n + seal_overhead bytes; must not overlap in) with associated
 * data aad; returns the sealed length. Without encryption the bytes are copied.
 */
size_t seal(sealer *s, const void *aad, size_t aadlen, const void *in, size_t n, uint8_t *out);
/*
 * Opens what seal() wrote: out receives n - seal_overhead bytes. Returns 0, or -1 when the
 * data was altered, sealed with other keys or other associated data.
 */
int unseal(sealer *s, const void *aad, size_t aadlen, const void *in, size_t n, uint8_t *out,
           size_t *outlen);

/* Seals or opens a whole buffer with a fresh sealer (for objects: index, manifests …). */
void seal_buf(const keys *k, const char *aad, const void *in, size_t n, buf *out);
int unseal_buf(const keys *k, const char *aad, const void *in, size_t n, buf *out);

/*
 * Makes new storage keys. With a passphrase the keys are random and *enc receives the
 * config's "encryption" section (the wrapped keys and KDF parameters, new reference);
 * without one, only the chunker seed is random and *enc is NULL.
 */
void keys_create(const char *passphrase, keys *k, json_t **enc);
/* Recovers the keys from a config's "encryption" section. Returns 0, or -1 with e set. */
int keys_unlock(const json_t *enc, const char *passphrase, keys *k, rerr *e);

#endif
