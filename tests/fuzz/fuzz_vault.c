/*
 * Fuzzes vaults (host/base/vault.c) and RFC 7396 merge patches (host/base/vault.c json_merge_patch,
 * host/store/store.c store_merge_patch). The input is two vaults separated by a NUL byte: the
 * target and the patch. Both are parsed (comments, duplicate keys, positions in errors),
 * checked, redacted; then the patch is applied both ways, which must agree, and applying
 * the patch again must change nothing (a merge patch is idempotent).
 */
#include <stdio.h>

#include "../../host/store/store.c"
#include "../../host/base/vault.c"
#include "fuzz.h"

static void exercise(const json_t *v)
{
    char err[512];
    (void)vault_check_host_keys(v, err, sizeof(err));
    json_t *red = vault_redact(v, NULL);
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text) {
        free(redact_text(text, v, NULL));
        free(text);
    }
    json_decref(red);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t tlen = nul ? (size_t)(nul - data) : size;
    const uint8_t *pdata = nul ? nul + 1 : data + size;
    size_t plen = size - tlen - (nul ? 1 : 0);
    char err[512];
    json_t *target = vault_parse((const char *)data, tlen, 1 << 20, err, sizeof(err));
    json_t *patch = vault_parse((const char *)pdata, plen, 1 << 20, err, sizeof(err));
    if (target)
        exercise(target);
    if (patch)
        exercise(patch);
    if (target && patch) {
        json_t *merged = json_merge_patch(target, patch);
        json_t *again = json_merge_patch(merged, patch);
        if (merged == NULL || again == NULL || !json_equal(merged, again))
            abort();
        json_t *in_place = json_deep_copy(target);
        store_merge_patch(in_place, patch);
        if (!json_equal(in_place, merged))
            abort();
        json_decref(in_place);
        json_decref(again);
        json_decref(merged);
    }
    json_decref(target);
    json_decref(patch);
    return 0;
}
