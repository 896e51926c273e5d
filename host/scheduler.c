/* The scheduler; see scheduler.h. (Placeholder until schedules are implemented: fires
 * nothing.) */
#include "scheduler.h"

#include <stdlib.h>

struct scheduler {
    const ferry_config *cfg;
};

scheduler *scheduler_new(const ferry_config *cfg)
{
    scheduler *s = calloc(1, sizeof(*s));
    s->cfg = cfg;
    return s;
}

int64_t scheduler_tick(scheduler *s, store *st, int64_t now_ms)
{
    (void)s;
    (void)st;
    (void)now_ms;
    return 60000;
}

void scheduler_free(scheduler *s)
{
    free(s);
}
