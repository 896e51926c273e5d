/* Hashing, sealing and key handling: see crypto.h and docs/storage-format.md. */
#include "crypto.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* scrypt cost: 2^15 x 8 x 1 takes about 0.1 s and 32 MiB, once per job. */
#define KDF_N      32768
#define KDF_R      8
#define KDF_P      1
#define KDF_MAXMEM (64u << 20)
#define MASTER_LEN (32 + 32 + 8)

static EVP_MD *sha256_fetched;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void)
{
    /* An explicit fetch once per process: the implicit one inside EVP_Digest* with
     * EVP_sha256() costs a lookup on every call. */
    sha256_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static EVP_MD *sha256_md(void)
{
    pthread_once(&sha256_once, fetch_sha256);
    return sha256_fetched;
}

void sha256(const void *p, size_t n, uint8_t out[ID_LEN])
{
    unsigned int len = ID_LEN;
    EVP_Digest(p, n, out, &len, sha256_md(), NULL);
}

struct hasher {
    int keyed;
    EVP_MD_CTX *work;
    EVP_MD_CTX *inner; /* SHA-256 state after (id_key ^ ipad) */
    EVP_MD_CTX *outer; /* SHA-256 state after (id_key ^ opad) */
};

hasher *hasher_new(const keys *k)
{
    hasher *h = xcalloc(1, sizeof(*h));
    h->keyed = k->encrypted;
    h->work = EVP_MD_CTX_new();
    if (h->keyed) {
        uint8_t pad[64];
        h->inner = EVP_MD_CTX_new();
        h->outer = EVP_MD_CTX_new();
        memset(pad, 0x36, sizeof(pad));
        for (int i = 0; i < 32; i++)
            pad[i] ^= k->id_key[i];
        EVP_DigestInit_ex(h->inner, sha256_md(), NULL);
        EVP_DigestUpdate(h->inner, pad, sizeof(pad));
        memset(pad, 0x5c, sizeof(pad));
        for (int i = 0; i < 32; i++)
            pad[i] ^= k->id_key[i];
        EVP_DigestInit_ex(h->outer, sha256_md(), NULL);
        EVP_DigestUpdate(h->outer, pad, sizeof(pad));
    }
    return h;
}

void hasher_free(hasher *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->work);
    EVP_MD_CTX_free(h->inner);
    EVP_MD_CTX_free(h->outer);
    free(h);
}

void hasher_id(hasher *h, const void *p, size_t n, uint8_t out[ID_LEN])
{
    unsigned int len = ID_LEN;
    if (!h->keyed) {
        EVP_DigestInit_ex(h->work, sha256_md(), NULL);
        EVP_DigestUpdate(h->work, p, n);
        EVP_DigestFinal_ex(h->work, out, &len);
        return;
    }
    uint8_t inner[ID_LEN];
    EVP_MD_CTX_copy_ex(h->work, h->inner);
    EVP_DigestUpdate(h->work, p, n);
    EVP_DigestFinal_ex(h->work, inner, &len);
    EVP_MD_CTX_copy_ex(h->work, h->outer);
    EVP_DigestUpdate(h->work, inner, sizeof(inner));
    EVP_DigestFinal_ex(h->work, out, &len);
}

struct sealer {
    int encrypted;
    EVP_CIPHER_CTX *enc;
    EVP_CIPHER_CTX *dec;
};

sealer *sealer_new(const keys *k)
{
    sealer *s = xcalloc(1, sizeof(*s));
    s->encrypted = k->encrypted;
    if (s->encrypted) {
        s->enc = EVP_CIPHER_CTX_new();
        s->dec = EVP_CIPHER_CTX_new();
        EVP_EncryptInit_ex(s->enc, EVP_aes_256_gcm(), NULL, k->enc_key, NULL);
        EVP_DecryptInit_ex(s->dec, EVP_aes_256_gcm(), NULL, k->enc_key, NULL);
    }
    return s;
}

void sealer_free(sealer *s)
{
    if (s == NULL)
        return;
    EVP_CIPHER_CTX_free(s->enc);
    EVP_CIPHER_CTX_free(s->dec);
    free(s);
}

size_t seal_overhead(const keys *k)
{
    return k->encrypted ? SEAL_OVERHEAD : 0;
}

size_t seal(sealer *s, const void *aad, size_t aadlen, const void *in, size_t n, uint8_t *out)
{
    if (!s->encrypted) {
        if (n) /* an empty object may come with NULL buffers */
            memcpy(out, in, n);
        return n;
    }
    int len = 0;
    random_bytes(out, SEAL_NONCE);
    EVP_EncryptInit_ex(s->enc, NULL, NULL, NULL, out);
    if (aadlen)
        EVP_EncryptUpdate(s->enc, NULL, &len, aad, (int)aadlen);
    EVP_EncryptUpdate(s->enc, out + SEAL_NONCE, &len, in, (int)n);
    EVP_EncryptFinal_ex(s->enc, out + SEAL_NONCE + n, &len);
    EVP_CIPHER_CTX_ctrl(s->enc, EVP_CTRL_GCM_GET_TAG, SEAL_TAG, out + SEAL_NONCE + n);
    return n + SEAL_OVERHEAD;
}

int unseal(sealer *s, const void *aad, size_t aadlen, const void *in, size_t n, uint8_t *out,
           size_t *outlen)
{
    if (!s->encrypted) {
        if (n) /* an empty object may come with NULL buffers */
            memcpy(out, in, n);
        *outlen = n;
        return 0;
    }
    if (n < SEAL_OVERHEAD)
        return -1;
    const uint8_t *p = in;
    size_t clen = n - SEAL_OVERHEAD;
    int len = 0;
    EVP_DecryptInit_ex(s->dec, NULL, NULL, NULL, p);
    if (aadlen)
        EVP_DecryptUpdate(s->dec, NULL, &len, aad, (int)aadlen);
    EVP_DecryptUpdate(s->dec, out, &len, p + SEAL_NONCE, (int)clen);
    EVP_CIPHER_CTX_ctrl(s->dec, EVP_CTRL_GCM_SET_TAG, SEAL_TAG, (void *)(p + SEAL_NONCE + clen));
    if (EVP_DecryptFinal_ex(s->dec, out + clen, &len) != 1)
        return -1;
    *outlen = clen;
    return 0;
}

void seal_buf(const keys *k, const char *aad, const void *in, size_t n, buf *out)
{
    sealer *s = sealer_new(k);
    buf_reserve(out, n + seal_overhead(k) + 1); /* + 1: out->data is never NULL below */
    out->len += seal(s, aad, strlen(aad), in, n, out->data + out->len);
    sealer_free(s);
}

int unseal_buf(const keys *k, const char *aad, const void *in, size_t n, buf *out)
{
    sealer *s = sealer_new(k);
    buf_reserve(out, n + 1); /* + 1: out->data is never NULL below, even for n == 0 */
    size_t len = 0;
    int rc = unseal(s, aad, strlen(aad), in, n, out->data + out->len, &len);
    if (rc == 0)
        out->len += len;
    sealer_free(s);
    return rc;
}

static int derive_kek(const char *passphrase, const uint8_t *salt, size_t saltlen, uint64_t n,
                      uint64_t r, uint64_t p, uint8_t kek[32])
{
    return EVP_PBE_scrypt(passphrase, strlen(passphrase), salt, saltlen, n, r, p, KDF_MAXMEM, kek,
                          32) == 1
               ? 0
               : -1;
}

void keys_create(const char *passphrase, keys *k, json_t **enc)
{
    memset(k, 0, sizeof(*k));
    random_bytes(&k->chunker_seed, sizeof(k->chunker_seed));
    *enc = NULL;
    if (passphrase == NULL || passphrase[0] == '\0')
        return;
    k->encrypted = 1;
    random_bytes(k->enc_key, sizeof(k->enc_key));
    random_bytes(k->id_key, sizeof(k->id_key));
    uint8_t master[MASTER_LEN], salt[16], kek[32];
    memcpy(master, k->enc_key, 32);
    memcpy(master + 32, k->id_key, 32);
    memcpy(master + 64, &k->chunker_seed, 8);
    random_bytes(salt, sizeof(salt));
    if (derive_kek(passphrase, salt, sizeof(salt), KDF_N, KDF_R, KDF_P, kek) != 0)
        abort(); /* fixed, valid parameters: only memory exhaustion gets here */
    keys wrap = {.encrypted = 1};
    memcpy(wrap.enc_key, kek, 32);
    buf sealed = {0};
    seal_buf(&wrap, "ferry-keys", master, sizeof(master), &sealed);
    char salt_hex[33];
    hex_encode(salt, sizeof(salt), salt_hex);
    char *keys_hex = xmalloc(sealed.len * 2 + 1);
    hex_encode(sealed.data, sealed.len, keys_hex);
    *enc = json_pack("{s:s,s:s,s:I,s:I,s:I,s:s,s:s}", "cipher", "aes-256-gcm", "kdf", "scrypt", "n",
                     (json_int_t)KDF_N, "r", (json_int_t)KDF_R, "p", (json_int_t)KDF_P, "salt",
                     salt_hex, "keys", keys_hex);
    free(keys_hex);
    buf_free(&sealed);
    memset(kek, 0, sizeof(kek));
    memset(master, 0, sizeof(master));
}

int keys_unlock(const json_t *enc, const char *passphrase, keys *k, rerr *e)
{
    memset(k, 0, sizeof(*k));
    const char *salt_hex = json_string_value(json_object_get(enc, "salt"));
    const char *keys_hex = json_string_value(json_object_get(enc, "keys"));
    json_int_t n = json_integer_value(json_object_get(enc, "n"));
    json_int_t r = json_integer_value(json_object_get(enc, "r"));
    json_int_t p = json_integer_value(json_object_get(enc, "p"));
    uint8_t salt[16], kek[32];
    if (salt_hex == NULL || keys_hex == NULL || hex_decode(salt_hex, salt, sizeof(salt)) != 0 ||
        n <= 1 || n > (1 << 22) || r < 1 || r > 64 || p < 1 || p > 16)
        return rerr_set(e, E_CORRUPT, "the storage's config has a damaged encryption section");
    if (passphrase == NULL || passphrase[0] == '\0')
        return rerr_set(e, E_INVALID,
                        "the storage is encrypted: add its \"passphrase\" to the storage vault");
    size_t sealed_len = strlen(keys_hex) / 2;
    uint8_t *sealed = xmalloc(sealed_len + 1);
    int rc = -1;
    if (hex_decode(keys_hex, sealed, sealed_len) != 0) {
        rerr_set(e, E_CORRUPT, "the storage's config has damaged wrapped keys");
        goto out;
    }
    if (derive_kek(passphrase, salt, sizeof(salt), (uint64_t)n, (uint64_t)r, (uint64_t)p, kek) !=
        0) {
        rerr_set(e, E_FAIL, "scrypt failed (out of memory?)");
        goto out;
    }
    keys wrap = {.encrypted = 1};
    memcpy(wrap.enc_key, kek, 32);
    buf master = {0};
    if (unseal_buf(&wrap, "ferry-keys", sealed, sealed_len, &master) != 0 ||
        master.len != MASTER_LEN) {
        buf_free(&master);
        rerr_set(e, E_INVALID, "wrong passphrase for this storage (its keys do not open)");
        goto out;
    }
    k->encrypted = 1;
    memcpy(k->enc_key, master.data, 32);
    memcpy(k->id_key, master.data + 32, 32);
    memcpy(&k->chunker_seed, master.data + 64, 8);
    memset(master.data, 0, master.len);
    buf_free(&master);
    rc = 0;
out:
    memset(kek, 0, sizeof(kek));
    free(sealed);
    return rc;
}
