/*
 * Fuzzes the collector's state reader (plugins/repo/gc.c state_load, docs/storage-format.md
 * "Garbage collection"): the input is stored as gc/state and loaded as a collection would.
 * Input: 1 mode byte (see repo_fuzz.h), then the state.
 */
/* snapshot.c and gc.c each have a static collect(): one translation unit needs them apart. */
#define collect snapshot_collect
#include "repo_fuzz.h"
#undef collect
#include "../../plugins/repo/gc.c"
#include "../../plugins/repo/keep.c"
#include "../../plugins/repo/lock.c"
#include "../../plugins/repo/ui.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int mode = (int)(fuzz_take(&data, &size, 1) % FUZZ_MODES);
    storage *s = fuzz_storage(mode);
    fuzz_put(s, mode, STATE_KEY, STATE_AAD, data, size);
    gc_state st = {0};
    rerr e = {0};
    if (state_load(s, &st, &e) != 0 && e.msg[0] == '\0')
        abort();
    state_free(&st);
    return 0;
}
