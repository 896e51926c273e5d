/* Packs and blobs: see pack.h and docs/storage-format.md. */
#include "pack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRAILER_AAD  "ferry-pack-trailer"
#define SAMPLE_BYTES ((size_t)64 << 10)

int compression_level(const char *name)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {{"none", 0}, {"fast", 1}, {"default", 3}, {"high", 9}};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
        if (name && strcmp(levels[i].name, name) == 0)
            return levels[i].level;
    return -1;
}

codec *codec_new(const keys *k, int level)
{
    codec *c = xcalloc(1, sizeof(*c));
    c->keys = k;
    c->hash = hasher_new(k);
    c->seal = sealer_new(k);
    c->cctx = ZSTD_createCCtx();
    c->dctx = ZSTD_createDCtx();
    c->level = level;
    return c;
}

void codec_free(codec *c)
{
    if (c == NULL)
        return;
    hasher_free(c->hash);
    sealer_free(c->seal);
    ZSTD_freeCCtx(c->cctx);
    ZSTD_freeDCtx(c->dctx);
    buf_free(&c->scratch);
    free(c);
}

/*
 * Compresses raw into c->scratch when that saves at least 1/32 of it; returns the
 * compressed length, or 0 to store the chunk as it is. Chunks over 16 KiB are first tried on
 * a sample (a quarter, at most 64 KiB) at level 1, so random data (most of a typical backup)
 * costs little here.
 */
static size_t try_compress(codec *c, const void *raw, size_t n)
{
    if (c->level <= 0 || n < 64)
        return 0;
    size_t bound = ZSTD_compressBound(n);
    c->scratch.len = 0;
    buf_reserve(&c->scratch, bound);
    size_t sample = n > 4 * SAMPLE_BYTES ? SAMPLE_BYTES : n > 16384 ? n / 4 : 0;
    if (sample) {
        size_t got = ZSTD_compressCCtx(c->cctx, c->scratch.data, bound, raw, sample, 1);
        if (ZSTD_isError(got) || got > sample - sample / 16)
            return 0;
    }
    size_t got = ZSTD_compressCCtx(c->cctx, c->scratch.data, bound, raw, n, c->level);
    if (ZSTD_isError(got) || got >= n - n / 32)
        return 0;
    return got;
}

static blob_entry *next_entry(pack_writer *pw)
{
    if (pw->n == pw->cap) {
        pw->cap = pw->cap ? pw->cap * 2 : 64;
        pw->entries = xrealloc(pw->entries, pw->cap * sizeof(*pw->entries));
    }
    return &pw->entries[pw->n++];
}

/* Writes bytes to the pack, opening its stream (and writing the magic) first if needed. */
static int pack_write(pack_writer *pw, const void *data, size_t len, rerr *e)
{
    if (pw->out == NULL) {
        if ((pw->out = stream_open(pw->s, "data/", e)) == NULL ||
            stream_write(pw->out, PACK_MAGIC, 4, e) != 0)
            return -1;
        pw->size = 4;
    }
    if (stream_write(pw->out, data, len, e) != 0)
        return -1;
    pw->size += len;
    return 0;
}

int pack_add(pack_writer *pw, codec *c, const uint8_t id[ID_LEN], int type, const void *raw,
             size_t n, rerr *e)
{
    size_t clen = try_compress(c, raw, n);
    const void *body = clen ? c->scratch.data : raw;
    size_t blen = clen ? clen : n;
    if (c->keys->encrypted) {
        pw->blob.len = 0;
        buf_reserve(&pw->blob, blen + SEAL_OVERHEAD);
        blen = seal(c->seal, id, ID_LEN, body, blen, pw->blob.data);
        body = pw->blob.data;
    }
    uint64_t offset = pw->out ? pw->size : 4;
    if (offset + blen > UINT32_MAX / 2)
        return rerr_set(e, E_FAIL, "a pack grew past 2 GiB (a bug: packs close at 16 MiB)");
    if (pack_write(pw, body, blen, e) != 0)
        return -1;
    blob_entry *be = next_entry(pw);
    memcpy(be->id, id, ID_LEN);
    be->type = (uint8_t)type;
    be->flags = clen ? BLOB_COMPRESSED : 0;
    be->offset = (uint32_t)offset;
    be->stored = (uint32_t)blen;
    be->raw = (uint32_t)n;
    return 0;
}

int pack_add_stored(pack_writer *pw, const blob_entry *src, const uint8_t *stored, rerr *e)
{
    uint64_t offset = pw->out ? pw->size : 4;
    if (pack_write(pw, stored, src->stored, e) != 0)
        return -1;
    blob_entry *be = next_entry(pw);
    *be = *src;
    be->offset = (uint32_t)offset;
    return 0;
}

static void encode_entries(const blob_entry *entries, size_t n, buf *out)
{
    buf_put_varint(out, n);
    for (size_t i = 0; i < n; i++) {
        const blob_entry *be = &entries[i];
        buf_append(out, be->id, ID_LEN);
        buf_put_u8(out, be->type);
        buf_put_u8(out, be->flags);
        buf_put_varint(out, be->offset);
        buf_put_varint(out, be->stored);
        buf_put_varint(out, be->raw);
    }
}

pack *pack_finish(pack_writer *pw, codec *c, rerr *e)
{
    if (pw->n == 0)
        return NULL;
    buf trailer = {0}, sealed = {0};
    /* A random salt makes two packs with the same blobs distinct objects. */
    uint8_t salt[8], tail[4];
    random_bytes(salt, sizeof(salt));
    buf_append(&trailer, salt, sizeof(salt));
    encode_entries(pw->entries, pw->n, &trailer);
    buf_reserve(&sealed, trailer.len + SEAL_OVERHEAD);
    sealed.len =
        seal(c->seal, TRAILER_AAD, strlen(TRAILER_AAD), trailer.data, trailer.len, sealed.data);
    put_u32(tail, (uint32_t)sealed.len);
    pack *p = NULL;
    /* Finishing the upload here, on the producing thread, gives its connection back before
     * the pack waits for its turn to be committed. */
    if (pack_write(pw, sealed.data, sealed.len, e) == 0 && pack_write(pw, tail, 4, e) == 0 &&
        stream_finish(pw->out, e) == 0) {
        p = xcalloc(1, sizeof(*p));
        sha256(sealed.data, sealed.len, p->id);
        p->out = pw->out;
        p->size = pw->size;
        p->entries = pw->entries;
        p->n = pw->n;
    } else {
        stream_abort(pw->out);
        free(pw->entries);
    }
    buf_free(&trailer);
    buf_free(&sealed);
    pw->out = NULL;
    pw->entries = NULL;
    pw->n = pw->cap = 0;
    pw->size = 0;
    return p;
}

int pack_commit(pack *p, rerr *e)
{
    char key[96];
    pack_key(p->id, key, sizeof(key));
    stor_stream *out = p->out;
    p->out = NULL;
    /* A pack holding snapshot trees is metadata: retention and listing read it, so it stays
     * out of a cold storage class. */
    unsigned flags = 0;
    for (size_t i = 0; i < p->n && !flags; i++)
        flags = p->entries[i].type == BLOB_TREE ? STOR_PUT_META : 0;
    return stream_commit(out, key, flags, e);
}

void pack_free(pack *p)
{
    if (p == NULL)
        return;
    stream_abort(p->out);
    free(p->entries);
    free(p);
}

void pack_writer_free(pack_writer *pw)
{
    stream_abort(pw->out);
    free(pw->entries);
    buf_free(&pw->blob);
    pw->out = NULL;
    pw->entries = NULL;
    pw->n = pw->cap = 0;
    pw->size = 0;
}

int blob_decode(codec *c, const blob_entry *e, const uint8_t *stored, buf *out, char *why,
                size_t whylen)
{
    char hex[HEX_LEN + 1];
    size_t plain = e->stored;
    const uint8_t *body = stored;
    if (c->keys->encrypted) {
        c->scratch.len = 0;
        buf_reserve(&c->scratch, e->stored);
        if (e->stored < SEAL_OVERHEAD ||
            unseal(c->seal, e->id, ID_LEN, stored, e->stored, c->scratch.data, &plain) != 0) {
            hex_encode(e->id, ID_LEN, hex);
            snprintf(why, whylen, "chunk %s does not authenticate (damaged bytes)", hex);
            return -1;
        }
        body = c->scratch.data;
    }
    out->len = 0;
    buf_reserve(out, e->raw);
    if (e->flags & BLOB_COMPRESSED) {
        size_t got = ZSTD_decompressDCtx(c->dctx, out->data, e->raw, body, plain);
        if (ZSTD_isError(got) || got != e->raw) {
            hex_encode(e->id, ID_LEN, hex);
            snprintf(why, whylen, "chunk %s does not decompress (damaged bytes)", hex);
            return -1;
        }
    } else if (plain == e->raw) {
        if (plain) /* an empty chunk: out->data may still be NULL */
            memcpy(out->data, body, plain);
    } else {
        hex_encode(e->id, ID_LEN, hex);
        snprintf(why, whylen, "chunk %s has the wrong length", hex);
        return -1;
    }
    out->len = e->raw;
    uint8_t id[ID_LEN];
    hasher_id(c->hash, out->data, out->len, id);
    if (memcmp(id, e->id, ID_LEN) != 0) {
        hex_encode(e->id, ID_LEN, hex);
        snprintf(why, whylen, "chunk %s does not match its hash (damaged bytes)", hex);
        return -1;
    }
    return 0;
}

int pack_parse(codec *c, const uint8_t *data, size_t len, blob_entry **entries, size_t *n,
               uint8_t id_out[ID_LEN])
{
    *entries = NULL;
    *n = 0;
    if (len < 8 || memcmp(data, PACK_MAGIC, 4) != 0)
        return -1;
    uint32_t tlen = get_u32(data + len - 4);
    if (tlen > len - 8)
        return -1;
    const uint8_t *sealed = data + len - 4 - tlen;
    if (id_out)
        sha256(sealed, tlen, id_out);
    buf plain = {0};
    buf_reserve(&plain, tlen + 1); /* + 1: never NULL, even for an empty trailer */
    size_t plen = 0;
    if (unseal(c->seal, TRAILER_AAD, strlen(TRAILER_AAD), sealed, tlen, plain.data, &plen) != 0) {
        buf_free(&plain);
        return -1;
    }
    reader r;
    rd_init(&r, plain.data, plen);
    rd_bytes(&r, 8);
    uint64_t count = rd_varint(&r);
    if (count > plen / (ID_LEN + 5)) {
        buf_free(&plain);
        return -1;
    }
    blob_entry *list = xcalloc(count, sizeof(*list));
    size_t limit = len - 4 - tlen;
    for (uint64_t i = 0; i < count && !r.err; i++) {
        const uint8_t *id = rd_bytes(&r, ID_LEN);
        if (id)
            memcpy(list[i].id, id, ID_LEN);
        list[i].type = rd_u8(&r);
        list[i].flags = rd_u8(&r);
        uint64_t off = rd_varint(&r), stored = rd_varint(&r), raw = rd_varint(&r);
        if (off < 4 || off > limit || stored > limit - off || raw > UINT32_MAX)
            r.err = 1;
        list[i].offset = (uint32_t)off;
        list[i].stored = (uint32_t)stored;
        list[i].raw = (uint32_t)raw;
    }
    buf_free(&plain);
    if (r.err) {
        free(list);
        return -1;
    }
    *entries = list;
    *n = count;
    return 0;
}
