/*
 * For host/people's own files (tokens.c, audit.c): the pieces they share over the store's
 * engine. Everyone else uses people.h.
 */
#ifndef FERRY_PEOPLE_STORE_H
#define FERRY_PEOPLE_STORE_H

#include "people.h"

/* An ISO 8601 time (new reference), or JSON null for 0. */
json_t *people_time_json(int64_t ms);

/* The actor of s (store_set_actor), or, when none is set, the process's Unix user via
 * "host" with every role. */
void people_actor(store *s, struct principal *p);

/* people_audit_note for a given principal (a token's own use). */
int people_audit_write(store *s, const struct principal *p, const char *action, const char *team,
                       const char *target, const char *details, char *err, size_t errlen);

/* crypto.c: n random bytes from the kernel; 0, or -1 with err set. */
int people_random(unsigned char *buf, size_t n, char *err, size_t errlen);
/* crypto.c: the SHA-256 of text as 64 lowercase hex digits; 0, or -1 with err set (libcrypto
 * could not be loaded: err names the package). */
int people_sha256_hex(const char *text, char out[65], char *err, size_t errlen);
/* crypto.c: 1 when the n bytes at a and b are equal, compared in constant time. */
int people_equal_ct(const void *a, const void *b, size_t n);

#endif
