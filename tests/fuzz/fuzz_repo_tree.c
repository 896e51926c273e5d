/*
 * Fuzzes the tree reader (plugins/repo/tree.c, docs/storage-format.md "Trees"): tree_decode
 * on the input; a tree it accepts is encoded again and must decode again to as many
 * entries, and every path must be found in its path map.
 */
#include "repo_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tree t = {0};
    if (tree_decode(data, size, &t) == 0) {
        buf again = {0};
        tree_encode(&t, &again);
        tree t2 = {0};
        if (tree_decode(again.data, again.len, &t2) != 0 || t2.n != t.n)
            abort();
        tree_map m;
        tree_map_build(&m, &t);
        for (size_t i = 0; i < t.n; i++)
            if (tree_map_find(&m, t.nodes[i].path) == NULL)
                abort();
        tree_map_free(&m);
        tree_free(&t2);
        buf_free(&again);
    }
    tree_free(&t);
    return 0;
}
