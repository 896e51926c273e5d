/*
 * Shared by every libFuzzer harness in tests/fuzz/ (fuzz_NAME.c, corpus in corpus/NAME/).
 * A harness defines LLVMFuzzerTestOneInput and, when it needs one-time setup, calls it from
 * its own once-guard (no LLVMFuzzerInitialize: the replay main and libFuzzer then behave
 * the same). Each harness is built twice: with clang -fsanitize=fuzzer,address,undefined
 * for `make fuzz`, and with replay.c (a main that feeds every corpus file once, printing
 * TAP) under ASan and UBSan for `make check`. See docs/development.md.
 */
#ifndef FERRY_FUZZ_H
#define FERRY_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A NUL-terminated malloc'd copy of data[0..size) (so readers that want text get it, and
 * ASan still sees the exact end). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Takes a little-endian integer of n bytes (n <= 8) off the front of the input; zeros when
 * the input is shorter. */
static inline uint64_t fuzz_take(const uint8_t **data, size_t *size, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i<n && * size> 0; i++, (*data)++, (*size)--)
        v |= (uint64_t) * *data << (8 * i);
    return v;
}

#endif
