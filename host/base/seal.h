/*
 * Sealing secrets at rest: AES-256-GCM (OpenSSL EVP) under a 32-byte key kept in a file
 * outside the store, with the identity of the row and the field a value belongs to as
 * associated data, so that a sealed value copied to another row or field does not open.
 *
 * A sealed value is a string "ferry-sealed:1:<key id>:<base64 of nonce, ciphertext, tag>"
 * that takes the place of the secret value in its vault; the plaintext is the value's
 * compact JSON, so an object or an array under a secret key is sealed whole. The key id
 * (16 hex digits of a SHA-256 of the key) names the key without revealing it: a store
 * sealed under another key says so instead of failing to decrypt.
 *
 * Key files hold one line, "ferry-key-1:" and 64 hex digits, and are created 0400.
 * docs/security.md says what this protects and what it does not.
 */
#ifndef FERRY_SEAL_H
#define FERRY_SEAL_H

#include <jansson.h>
#include <stddef.h>

#define SEAL_PREFIX    "ferry-sealed:1:"
#define SEAL_KEY_BYTES 32
#define SEAL_ID_LEN    16

struct seal_key {
    unsigned char bytes[SEAL_KEY_BYTES];
    char id[SEAL_ID_LEN + 1];
};

/* Whose value it is: the row's kind ("machine", "item" …), its team ("" when none) and its
 * name or task id. The field path is added by the vault walkers below. */
struct seal_ident {
    const char *kind, *team, *name;
};

/* Makes a new random key (RAND_bytes). 0, or -1 with err set. */
int seal_key_generate(struct seal_key *k, char *err, size_t errlen);

/* Sets k->id from k->bytes. */
void seal_key_set_id(struct seal_key *k);

/*
 * Writes k to a new file at path, mode 0400 (O_EXCL: an existing file is EEXIST, never
 * overwritten), and syncs it and its directory. 0, or -1 with err set and errno kept.
 */
int seal_key_write(const char *path, const struct seal_key *k, char *err, size_t errlen);

/*
 * Reads the key at path. Refuses a file other users may read or write ("chmod 400 …").
 * 0; -1 with err set (errno ENOENT when the file does not exist).
 */
int seal_key_read(const char *path, struct seal_key *k, char *err, size_t errlen);

/*
 * seal_key_read for a check at start: the id is computed in a short-lived child while
 * libcrypto is not loaded in this single-threaded process, so that a host that meets no
 * sealed value never maps it.
 */
int seal_key_read_apart(const char *path, struct seal_key *k, char *err, size_t errlen);

/* Non-zero when s is a sealed value (starts with SEAL_PREFIX). */
int seal_is_sealed(const char *s);

/* Copies the key id of a sealed value into id (SEAL_ID_LEN + 1 bytes); "" when unreadable. */
void seal_value_key_id(const char *sealed, char id[SEAL_ID_LEN + 1]);

/*
 * Seals every secret value of vault in place (modified): the values under keys
 * vault_key_is_secret_in() names (secret_names may be NULL), at any depth, unless null or
 * already sealed. *count (may be NULL) gets how many were sealed. 0, or -1 with err set
 * (the vault may then be partly sealed: callers drop it).
 */
int seal_vault(json_t *vault, const struct seal_key *k, const struct seal_ident *who,
               const json_t *secret_names, int *count, char *err, size_t errlen);

/*
 * Opens every sealed string of vault in place, whatever its key's name, with the first of
 * keys[0..nkeys) whose id it names. *count (may be NULL) gets how many. 0, or -1 with err
 * naming the row and field and why (no key with that id; altered or moved). On failure the
 * values not opened stay sealed.
 */
int seal_vault_open(json_t *vault, const struct seal_key *keys, size_t nkeys,
                    const struct seal_ident *who, int *count, char *err, size_t errlen);

/* Non-zero when some string in vault (any depth) is sealed. */
int seal_vault_has_sealed(const json_t *vault);

/* Non-zero when vault holds a secret value that is not sealed (what seal_vault would seal). */
int seal_vault_has_plain_secret(const json_t *vault, const json_t *secret_names);

/* Appends to names (an array) the key of every sealed string of vault, at any depth: the
 * secret names to seal a copy of the opened vault with again. */
void seal_vault_sealed_keys(const json_t *vault, json_t *names);

/* Replaces every sealed string of vault (in place) by null: what a value that did not open
 * becomes, so that a function never receives ciphertext as its parameter. */
void seal_vault_drop_sealed(json_t *vault);

#endif
