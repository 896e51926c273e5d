/*
 * Fuzzes snapshot manifests (plugins/repo/snapshot.c, docs/storage-format.md "Manifests"):
 * the input is stored as a manifest and read the ways jobs read it: listed (snap_list_read),
 * resolved by "latest" and by tag (snap_resolve), read by id (snap_read), and its tree
 * loaded against an empty index (tree_load walks the manifest's "tree" array).
 * Input: 1 mode byte (see repo_fuzz.h), then the manifest.
 */
#include "repo_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int mode = (int)(fuzz_take(&data, &size, 1) % FUZZ_MODES);
    storage *s = fuzz_storage(mode);
    fuzz_put(s, mode, "snapshots/web/20260101_020000", MANIFEST_AAD, data, size);
    rerr e = {0};
    snap_list l = {0};
    if (snap_list_read(s, NULL, &l, &e) == 0) {
        (void)snap_resolve(&l, "latest");
        (void)snap_resolve(&l, "env=prod");
        (void)snap_resolve(&l, "20260101_020000");
    }
    snap_list_free(&l); /* on failure too: it holds what was read */
    json_t *doc = NULL;
    if (snap_read(s, "web", "20260101_020000", &doc, &e) == ST_OK) {
        chunk_index ix;
        idx_init(&ix);
        static codec *codecs[2];
        int which = mode == FUZZ_PLAIN ? 0 : 1;
        if (codecs[which] == NULL)
            codecs[which] = codec_new(&s->keys, 3);
        tree t = {0};
        (void)tree_load(s, &ix, codecs[which], doc, &t, &e);
        tree_free(&t);
        idx_free(&ix);
        json_decref(doc);
    }
    return 0;
}
