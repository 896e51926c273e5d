/*
 * Fuzzes the TZif reader (host/base/tz.c): the bytes are parsed as a zone file, then the zone is
 * queried around an instant taken from the input, so the transition table and the POSIX TZ
 * footer rules both run on hostile data. Input: 8 bytes of instant, then the TZif file.
 */
#include <stdio.h>

#include "../../host/base/tz.c"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t t = (int64_t)fuzz_take(&data, &size, 8);
    /* Instants beyond ±2^40 s (±35,000 years) are outside what callers use. */
    t %= (int64_t)1 << 40;
    unsigned char *copy = malloc(size ? size : 1);
    if (copy == NULL)
        abort();
    if (size)
        memcpy(copy, data, size);
    tz_info *tz = tz_new("Fuzz/Zone");
    char err[256];
    if (parse_tzif(copy, size, tz, "fuzz", err, sizeof(err)) == 0) {
        tz_period p;
        tz_period_at(tz, t, &p);
        if (!(p.start <= t && t < p.end))
            abort();
        (void)tz_offset_at(tz, t);
        tz_local l = tz_local_to_utc(tz, t);
        if (l.earliest > l.latest)
            abort();
        for (int64_t step = -86400 * 400; step <= 86400 * 400; step += 86400 * 37)
            (void)tz_local_to_utc(tz, t + step);
    }
    tz_destroy(tz);
    free(copy);
    return 0;
}
