/*
 * The little cryptography tokens need: random bytes, SHA-256 and a constant-time compare.
 * libcrypto is loaded on first use (host/base/lazy_crypto.c, shared with the sealed
 * secrets), as libpq and libcurl are: only `create token` and the web server's token
 * checks hash anything. Random bytes come from
 * the kernel (getrandom), which needs no library.
 */
#include "people_store.h"

#include "lazy_lib.h"
#include "util.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

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
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    const EVP_MD *sha256 = EVP_sha256();
    if (sha256 == NULL) {
        seterr(err, errlen, "%s", lazy_lib_error(&lazy_crypto_lib));
        return -1;
    }
    if (EVP_Digest(text, strlen(text), md, &len, sha256, NULL) != 1 || len != 32) {
        seterr(err, errlen, "libcrypto could not compute a SHA-256");
        return -1;
    }
    for (unsigned i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int people_equal_ct(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}
