/*
 * The little cryptography tokens need: random bytes, SHA-256 and a constant-time compare.
 * libcrypto is loaded on first use (lazy_lib.h), as libpq and libcurl are: linking it
 * would make every ferry command pay about a millisecond to map and relocate it, and only
 * `create token` and the web server's token checks hash anything. Random bytes come from
 * the kernel (getrandom), which needs no library.
 */
#include "people_store.h"

#include "lazy_lib.h"
#include "util.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

LAZY_LIB(people_crypto_lib, "libcrypto.so.3", "libssl3", NULL)

int people_random(unsigned char *buf, size_t n, char *err, size_t errlen)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            seterr(err, errlen, "no random bytes from the kernel: %s", strerror(errno));
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

int people_sha256_hex(const char *text, char out[65], char *err, size_t errlen)
{
    static void *digest_slot, *sha256_slot;
    int (*digest)(const void *, size_t, unsigned char *, unsigned int *, const EVP_MD *,
                  ENGINE *);
    const EVP_MD *(*sha256)(void);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    *(void **)&digest = lazy_lib_sym(&people_crypto_lib, "EVP_Digest", &digest_slot);
    *(void **)&sha256 = lazy_lib_sym(&people_crypto_lib, "EVP_sha256", &sha256_slot);
    if (digest == NULL || sha256 == NULL) {
        seterr(err, errlen, "%s", lazy_lib_error(&people_crypto_lib));
        return -1;
    }
    if (digest(text, strlen(text), md, &len, sha256(), NULL) != 1 || len != 32) {
        seterr(err, errlen, "libcrypto could not compute a SHA-256");
        return -1;
    }
    for (unsigned i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int people_equal_ct(const void *a, const void *b, size_t n)
{
    static void *slot;
    int (*memcmp_ct)(const void *, const void *, size_t);
    *(void **)&memcmp_ct = lazy_lib_sym(&people_crypto_lib, "CRYPTO_memcmp", &slot);
    if (memcmp_ct != NULL)
        return memcmp_ct(a, b, n) == 0;
    /* Without libcrypto nothing was hashed to compare; still, no early exit. */
    const volatile unsigned char *x = a, *y = b;
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(x[i] ^ y[i]);
    return diff == 0;
}
