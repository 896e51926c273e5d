/*
 * Fuzzes vaults (host/base/vault.c) and RFC 7396 merge patches (json_merge_patch, ferry's one
 * implementation: the store merges vaults with it too). The input is two vaults separated by
 * a NUL byte: the target and the patch. Both are parsed (comments, duplicate keys, positions
 * in errors), checked, redacted; then the patch is applied, and the result is checked
 * against the RFC member by member, the target must be left as it was, and applying the
 * patch again must change nothing (a merge patch is idempotent).
 */
#include <stdio.h>

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

/* Aborts unless merged is what RFC 7396 makes of target and patch: for an object patch,
 * every null member removed, every object member merged into the target's member, every
 * other member taken as it is, and the target's other members kept. */
static void check_merged(const json_t *target, const json_t *patch, const json_t *merged)
{
    if (!json_is_object(patch)) {
        if (!json_equal(patch, merged))
            abort();
        return;
    }
    if (!json_is_object(merged))
        abort();
    const char *key;
    json_t *value;
    json_object_foreach (readonly(patch), key, value) {
        json_t *got = json_object_get(merged, key);
        if (json_is_null(value) ? got != NULL : got == NULL)
            abort();
        if (!json_is_null(value))
            check_merged(json_is_object(target) ? json_object_get(target, key) : NULL, value, got);
    }
    if (!json_is_object(target))
        return;
    json_object_foreach (readonly(target), key, value)
        if (json_object_get(patch, key) == NULL && !json_equal(value, json_object_get(merged, key)))
            abort();
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
        json_t *before = json_deep_copy(target);
        json_t *merged = json_merge_patch(target, patch);
        json_t *again = json_merge_patch(merged, patch);
        if (merged == NULL || again == NULL || !json_equal(merged, again))
            abort();
        if (!json_equal(target, before))
            abort();
        check_merged(target, patch, merged);
        json_decref(before);
        json_decref(again);
        json_decref(merged);
    }
    json_decref(target);
    json_decref(patch);
    return 0;
}
