/*
 * Fuzzes lock documents (plugins/repo/lock.c, docs/storage-format.md "Locks"): the input is
 * stored as another holder's lock and scanned the way a push (any lock) and the collector
 * (exclusive locks only) scan before going on; a stale one is deleted. Input: 1 mode byte
 * (see repo_fuzz.h; bit 2 set: scan for exclusive locks only), then the lock document.
 */
#include "repo_fuzz.h"
#include "../../plugins/repo/lock.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned first = (unsigned)fuzz_take(&data, &size, 1);
    int mode = (int)(first % FUZZ_MODES);
    storage *s = fuzz_storage(mode);
    fuzz_put(s, mode, "locks/00000000000000000000000000000000", LOCK_AAD, data, size);
    lock *self = new_lock(s, "shared", "fuzz");
    char holder[512];
    rerr e = {0};
    (void)other_locks(self, (first & 4) != 0, holder, sizeof(holder), &e);
    free_lock(self);
    return 0;
}
