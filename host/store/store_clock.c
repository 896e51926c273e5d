/*
 * The store's own clock (store_clock.h).
 */
#include "store_clock.h"

#include "engine.h"

static int clock_body(store *s, void *ctx, char *err, size_t errlen)
{
    return eng_scalar(s, ctx, err, errlen, S_STORE_CLOCK, "");
}

int store_clock_ms(store *s, int64_t *ms, char *err, size_t errlen)
{
    int64_t t = 0;
    int rc = eng_run(s, 0, clock_body, &t, err, errlen);
    *ms = rc == STORE_OK ? t : 0;
    return rc;
}
