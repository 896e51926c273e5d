/*
 * Fuzzes sealed objects and the storage config (plugins/repo/crypto.c, storage.c;
 * docs/storage-format.md "Conventions" and "config"). Input: 1 byte choosing what to do,
 * then the bytes:
 *   0-6  unseal_buf of the bytes with each object kind's associated data, under the
 *        encrypted storage's keys and (copying) under plain keys: short, empty and altered
 *        objects (empty input is the regression case for memcpy from NULL in unseal)
 *   7    the bytes are a storage config, opened with and without a passphrase (scrypt
 *        parameters are capped here so one input stays fast; keys_unlock refuses out-of-range
 *        ones itself)
 */
#include "repo_fuzz.h"

static const char *const aads[] = {"ferry-pack-trailer",
                                   "ferry-index",
                                   "ferry-snapshot",
                                   "ferry-lock",
                                   "ferry-gc",
                                   "ferry-keys",
                                   ""};

static void config(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, 0, NULL);
    json_t *enc = json_object_get(doc, "encryption");
    json_int_t n = json_integer_value(json_object_get(enc, "n"));
    json_int_t r = json_integer_value(json_object_get(enc, "r"));
    json_int_t p = json_integer_value(json_object_get(enc, "p"));
    json_decref(doc);
    if (n > 1024 || r > 8 || p > 2)
        return;
    for (int with = 0; with < 2; with++) {
        json_t *vault = with ? json_pack("{s:s,s:s}", "provider", "s3", "passphrase", "x")
                             : json_pack("{s:s}", "provider", "s3");
        /* A storage of its own, so the config is the input and nothing else. */
        mem_store *m = mem_open(vault, NULL);
        mem_put(m, "config", data, size, 0, NULL);
        storage tmp = {.name = "fuzz", .ops = &stor_s3_ops, .be = m};
        json_t *cfg = NULL;
        rerr e = {0};
        if (load_config(&tmp, NULL, 0, &cfg, &e) == 0)
            (void)apply_config(&tmp, cfg, with ? "x" : NULL, &e);
        json_decref(cfg);
        mem_close(m);
        json_decref(vault);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned what = (unsigned)fuzz_take(&data, &size, 1) % 8;
    if (what == 7) {
        config(data, size);
        return 0;
    }
    storage *s = fuzz_storage(FUZZ_ENC_RAW);
    keys plain = {0};
    const keys *ks[2] = {&s->keys, &plain};
    for (int k = 0; k < 2; k++) {
        buf out = {0};
        if (unseal_buf(ks[k], aads[what], data, size, &out) == 0 &&
            out.len != size - seal_overhead(ks[k]))
            abort();
        buf_free(&out);
    }
    return 0;
}
