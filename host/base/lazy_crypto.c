/*
 * libcrypto, loaded on first use (lazy_lib.h): the EVP and RAND functions that seal secrets
 * at rest (seal.c), each forwarding to libcrypto.so.3. A command that meets no sealed secret
 * (a listing, a create without secrets) never loads it: linking it made every command pay
 * about 0.7 ms to map and relocate it.
 *
 * When libcrypto cannot be loaded, each wrapper returns what OpenSSL returns for a failure
 * (NULL, 0, -1), so sealing and opening fail with their usual one-line messages.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "lazy_lib.h"

LAZY_LIB(lazy_crypto_lib, "libcrypto.so.3", "libssl3", NULL)

#define CR(ret, fail, name, params, args) LAZY_FN(lazy_crypto_lib, ret, fail, name, params, args)
#define CRV(name, params, args)           LAZY_VOID(lazy_crypto_lib, name, params, args)

CR(int, 0, RAND_bytes, (unsigned char *buf, int num), (buf, num))
CR(EVP_CIPHER_CTX *, NULL, EVP_CIPHER_CTX_new, (void), ())
CRV(EVP_CIPHER_CTX_free, (EVP_CIPHER_CTX * ctx), (ctx))
CR(int, 0, EVP_CIPHER_CTX_ctrl, (EVP_CIPHER_CTX * ctx, int type, int arg, void *ptr),
   (ctx, type, arg, ptr))
CR(const EVP_CIPHER *, NULL, EVP_aes_256_gcm, (void), ())
CR(int, 0, EVP_EncryptInit_ex,
   (EVP_CIPHER_CTX * ctx, const EVP_CIPHER *cipher, ENGINE *impl, const unsigned char *key,
    const unsigned char *iv),
   (ctx, cipher, impl, key, iv))
CR(int, 0, EVP_EncryptUpdate,
   (EVP_CIPHER_CTX * ctx, unsigned char *out, int *outl, const unsigned char *in, int inl),
   (ctx, out, outl, in, inl))
CR(int, 0, EVP_EncryptFinal_ex, (EVP_CIPHER_CTX * ctx, unsigned char *out, int *outl),
   (ctx, out, outl))
CR(int, 0, EVP_DecryptInit_ex,
   (EVP_CIPHER_CTX * ctx, const EVP_CIPHER *cipher, ENGINE *impl, const unsigned char *key,
    const unsigned char *iv),
   (ctx, cipher, impl, key, iv))
CR(int, 0, EVP_DecryptUpdate,
   (EVP_CIPHER_CTX * ctx, unsigned char *out, int *outl, const unsigned char *in, int inl),
   (ctx, out, outl, in, inl))
CR(int, 0, EVP_DecryptFinal_ex, (EVP_CIPHER_CTX * ctx, unsigned char *outm, int *outl),
   (ctx, outm, outl))
CR(int, -1, EVP_EncodeBlock, (unsigned char *t, const unsigned char *f, int n), (t, f, n))
CR(int, -1, EVP_DecodeBlock, (unsigned char *t, const unsigned char *f, int n), (t, f, n))
CR(const EVP_MD *, NULL, EVP_sha256, (void), ())
CR(int, 0, EVP_Digest,
   (const void *data, size_t count, unsigned char *md, unsigned int *size, const EVP_MD *type,
    ENGINE *impl),
   (data, count, md, size, type, impl))
/* A failure to load compares as different: nothing was hashed to compare (people/crypto.c). */
CR(int, 1, CRYPTO_memcmp, (const void *a, const void *b, size_t len), (a, b, len))
/* Webhook signatures (notify.c): HMAC-SHA256 of the timestamp and the body. */
CR(unsigned char *, NULL, HMAC,
   (const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *d, size_t n,
    unsigned char *md, unsigned int *md_len),
   (evp_md, key, key_len, d, n, md, md_len))
