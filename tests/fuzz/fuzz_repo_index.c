/*
 * Fuzzes the index file reader (plugins/repo/index.c, docs/storage-format.md "Index
 * files"): the input is stored as an index file and the whole index is loaded the way every
 * job loads it (idx_load: list, get, unseal, parse, insert). Input: 1 mode byte (see
 * repo_fuzz.h), then the file.
 */
#include "repo_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int mode = (int)(fuzz_take(&data, &size, 1) % FUZZ_MODES);
    storage *s = fuzz_storage(mode);
    uint8_t id[ID_LEN];
    char hex[HEX_LEN + 1], key[100];
    sha256(data, size, id);
    hex_encode(id, ID_LEN, hex);
    snprintf(key, sizeof(key), "index/%s", hex);
    fuzz_put(s, mode, key, INDEX_AAD, data, size);
    chunk_index ix;
    idx_init(&ix);
    rerr e = {0};
    if (idx_load(s, &ix, &e) == 0) {
        for (size_t i = 0; i < ix.count; i++)
            if (idx_find(&ix, ix.entries[i].id) == NULL)
                abort(); /* every loaded chunk can be found again */
    } else if (e.msg[0] == '\0') {
        abort(); /* a failure always says why */
    }
    idx_free(&ix);
    return 0;
}
