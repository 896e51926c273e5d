/*
 * Fuzzes the pack reader (plugins/repo/pack.c, docs/storage-format.md "Blobs and packs"):
 * pack_parse on the whole input as a pack, then blob_decode of every blob its trailer lists
 * that lies inside the pack, as repo_pull, repo_verify and the collector read them.
 * Input: 1 mode byte (0 plain keys, otherwise the encrypted storage's keys), then the pack.
 * Empty blobs (raw length 0) are the regression case for memcpy from NULL in blob_decode.
 */
#include "repo_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int mode = (int)(fuzz_take(&data, &size, 1) % FUZZ_MODES);
    storage *s = fuzz_storage(mode);
    static codec *codecs[2];
    int which = mode == FUZZ_PLAIN ? 0 : 1;
    if (codecs[which] == NULL)
        codecs[which] = codec_new(&s->keys, 3);
    codec *c = codecs[which];
    uint8_t *copy = xmalloc(size ? size : 1);
    if (size)
        memcpy(copy, data, size);
    blob_entry *entries = NULL;
    size_t n = 0;
    uint8_t id[ID_LEN];
    if (pack_parse(c, copy, size, &entries, &n, id) == 0) {
        buf out = {0};
        char why[256];
        for (size_t i = 0; i < n && i < 64; i++) {
            const blob_entry *be = &entries[i];
            if ((uint64_t)be->offset + be->stored > size || be->raw > (1u << 24))
                continue; /* readers check this against the index before decoding */
            (void)blob_decode(c, be, copy + be->offset, &out, why, sizeof(why));
        }
        buf_free(&out);
        free(entries);
    }
    free(copy);
    return 0;
}
