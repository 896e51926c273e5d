/* The chunk index: see index.h and docs/storage-format.md. */
#include "index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INDEX_MAGIC "FIX1"
#define INDEX_AAD   "ferry-index"

static uint64_t id_hash(const uint8_t *id)
{
    uint64_t h;
    memcpy(&h, id, sizeof(h)); /* ids are hashes: their first bytes are already uniform */
    return h;
}

void idx_init(chunk_index *ix)
{
    memset(ix, 0, sizeof(*ix));
}

void idx_free(chunk_index *ix)
{
    free(ix->entries);
    free(ix->slots);
    free(ix->packs);
    free(ix->pack_slots);
    for (size_t i = 0; i < ix->nfiles; i++)
        free(ix->files[i]);
    free(ix->files);
    free(ix->file_packs);
    memset(ix, 0, sizeof(*ix));
}

static void rehash(chunk_index *ix)
{
    size_t cap = ix->slots_cap ? ix->slots_cap * 2 : 1024;
    uint32_t *slots = xcalloc(cap, sizeof(*slots));
    for (size_t i = 0; i < ix->count; i++) {
        size_t s = id_hash(ix->entries[i].id) & (cap - 1);
        while (slots[s])
            s = (s + 1) & (cap - 1);
        slots[s] = (uint32_t)i + 1;
    }
    free(ix->slots);
    ix->slots = slots;
    ix->slots_cap = cap;
}

idx_entry *idx_find(const chunk_index *ix, const uint8_t id[ID_LEN])
{
    if (ix->slots_cap == 0)
        return NULL;
    size_t mask = ix->slots_cap - 1;
    for (size_t s = id_hash(id) & mask; ix->slots[s]; s = (s + 1) & mask) {
        idx_entry *e = &ix->entries[ix->slots[s] - 1];
        if (memcmp(e->id, id, ID_LEN) == 0)
            return e;
    }
    return NULL;
}

idx_entry *idx_insert(chunk_index *ix, const idx_entry *e, int *inserted)
{
    idx_entry *found = idx_find(ix, e->id);
    if (found) {
        if (inserted)
            *inserted = 0;
        return found;
    }
    if ((ix->count + 1) * 4 > ix->slots_cap * 3)
        rehash(ix);
    if (ix->count == ix->entries_cap) {
        ix->entries_cap = ix->entries_cap ? ix->entries_cap * 2 : 1024;
        ix->entries = xrealloc(ix->entries, ix->entries_cap * sizeof(*ix->entries));
    }
    ix->entries[ix->count] = *e;
    size_t mask = ix->slots_cap - 1;
    size_t s = id_hash(e->id) & mask;
    while (ix->slots[s])
        s = (s + 1) & mask;
    ix->slots[s] = (uint32_t)++ix->count;
    if (inserted)
        *inserted = 1;
    return &ix->entries[ix->count - 1];
}

uint32_t idx_pack_find(const chunk_index *ix, const uint8_t id[ID_LEN])
{
    if (ix->pack_slots_cap == 0)
        return IDX_NONE;
    size_t mask = ix->pack_slots_cap - 1;
    for (size_t s = id_hash(id) & mask; ix->pack_slots[s]; s = (s + 1) & mask)
        if (memcmp(ix->packs[ix->pack_slots[s] - 1].id, id, ID_LEN) == 0)
            return ix->pack_slots[s] - 1;
    return IDX_NONE;
}

uint32_t idx_pack_add(chunk_index *ix, const uint8_t id[ID_LEN], int64_t time)
{
    uint32_t n = idx_pack_find(ix, id);
    if (n != IDX_NONE)
        return n;
    if ((ix->npacks + 1) * 2 > ix->pack_slots_cap) {
        size_t cap = ix->pack_slots_cap ? ix->pack_slots_cap * 2 : 256;
        uint32_t *slots = xcalloc(cap, sizeof(*slots));
        for (size_t i = 0; i < ix->npacks; i++) {
            size_t s = id_hash(ix->packs[i].id) & (cap - 1);
            while (slots[s])
                s = (s + 1) & (cap - 1);
            slots[s] = (uint32_t)i + 1;
        }
        free(ix->pack_slots);
        ix->pack_slots = slots;
        ix->pack_slots_cap = cap;
    }
    if (ix->npacks == ix->packs_cap) {
        ix->packs_cap = ix->packs_cap ? ix->packs_cap * 2 : 64;
        ix->packs = xrealloc(ix->packs, ix->packs_cap * sizeof(*ix->packs));
    }
    idx_pack *p = &ix->packs[ix->npacks];
    memset(p, 0, sizeof(*p));
    memcpy(p->id, id, ID_LEN);
    p->time = time;
    size_t mask = ix->pack_slots_cap - 1;
    size_t s = id_hash(id) & mask;
    while (ix->pack_slots[s])
        s = (s + 1) & mask;
    ix->pack_slots[s] = (uint32_t)++ix->npacks;
    return (uint32_t)(ix->npacks - 1);
}

void idx_add_blobs(chunk_index *ix, uint32_t packno, const blob_entry *entries, size_t n)
{
    idx_pack *p = &ix->packs[packno];
    int fresh = p->blobs == 0;
    for (size_t i = 0; i < n; i++) {
        const blob_entry *b = &entries[i];
        idx_entry e = {.pack = packno,
                       .offset = b->offset,
                       .stored = b->stored,
                       .raw = b->raw,
                       .type = b->type,
                       .flags = b->flags};
        memcpy(e.id, b->id, ID_LEN);
        int inserted = 0;
        idx_entry *got = idx_insert(ix, &e, &inserted);
        if (!inserted && got->pack == IDX_PENDING)
            *got = e; /* this push's own chunk has been stored */
        else if (!inserted && got->pack != packno && fresh)
            ix->duplicates++;
        if (fresh) {
            ix->packs[packno].bytes += b->stored;
            ix->packs[packno].blobs++;
        }
    }
}

int idx_parse(const uint8_t *data, size_t len, void (*fn)(void *arg, const idx_group *g), void *arg)
{
    reader r;
    rd_init(&r, data, len);
    const uint8_t *magic = rd_bytes(&r, 4);
    if (magic == NULL || memcmp(magic, INDEX_MAGIC, 4) != 0)
        return -1;
    uint64_t npacks = rd_varint(&r);
    blob_entry *entries = NULL;
    size_t cap = 0;
    for (uint64_t i = 0; i < npacks && !r.err; i++) {
        const uint8_t *pid = rd_bytes(&r, ID_LEN);
        int64_t time = (int64_t)rd_varint(&r);
        uint64_t n = rd_varint(&r);
        if (r.err || n > len / (ID_LEN + 5))
            break;
        if (n > cap) {
            cap = n;
            entries = xrealloc(entries, cap * sizeof(*entries));
        }
        for (uint64_t j = 0; j < n && !r.err; j++) {
            const uint8_t *id = rd_bytes(&r, ID_LEN);
            if (id)
                memcpy(entries[j].id, id, ID_LEN);
            entries[j].type = rd_u8(&r);
            entries[j].flags = rd_u8(&r);
            uint64_t off = rd_varint(&r), stored = rd_varint(&r), raw = rd_varint(&r);
            if (off > UINT32_MAX || stored > UINT32_MAX || raw > UINT32_MAX)
                r.err = 1;
            entries[j].offset = (uint32_t)off;
            entries[j].stored = (uint32_t)stored;
            entries[j].raw = (uint32_t)raw;
        }
        if (!r.err) {
            idx_group g = {.pack_id = pid, .time = time, .entries = entries, .n = n};
            fn(arg, &g);
        }
    }
    free(entries);
    return r.err || r.p != r.end ? -1 : 0;
}

struct load_state {
    chunk_index *ix;
    uint32_t file;
};

static void load_group(void *arg, const idx_group *g)
{
    struct load_state *ls = arg;
    chunk_index *ix = ls->ix;
    uint32_t packno = idx_pack_add(ix, g->pack_id, g->time);
    idx_add_blobs(ix, packno, g->entries, g->n);
    ix->file_packs = xrealloc(ix->file_packs, (ix->nfile_packs + 1) * sizeof(*ix->file_packs));
    ix->file_packs[ix->nfile_packs++] = (idx_file_pack){.file = ls->file, .pack = packno};
}

struct key_list {
    char **keys;
    size_t n;
};

static int collect_key(void *arg, const char *key, uint64_t size)
{
    (void)size;
    struct key_list *kl = arg;
    kl->keys = xrealloc(kl->keys, (kl->n + 1) * sizeof(*kl->keys));
    kl->keys[kl->n++] = xstrdup(key);
    return 0;
}

int idx_load(storage *s, chunk_index *ix, rerr *e)
{
    struct key_list kl = {0};
    int rc = stor_list(s, "index/", collect_key, &kl, e);
    for (size_t i = 0; i < kl.n && rc == 0; i++) {
        buf plain = {0};
        int got = stor_get_sealed(s, kl.keys[i], INDEX_AAD, &plain, e);
        if (got == ST_NOTFOUND) {
            /* Replaced by a consolidated file since the listing: its packs are in the new
             * one, which a later load reads; missing them now only costs deduplication. */
            buf_free(&plain);
            continue;
        }
        if (got != ST_OK) {
            rc = -1;
        } else {
            ix->files = xrealloc(ix->files, (ix->nfiles + 1) * sizeof(*ix->files));
            ix->files[ix->nfiles] = xstrdup(kl.keys[i]);
            struct load_state ls = {.ix = ix, .file = (uint32_t)ix->nfiles++};
            if (idx_parse(plain.data, plain.len, load_group, &ls) != 0)
                rc = rerr_set(e, E_CORRUPT, "index file %s in storage %s is damaged", kl.keys[i],
                              s->name);
        }
        buf_free(&plain);
    }
    for (size_t i = 0; i < kl.n; i++)
        free(kl.keys[i]);
    free(kl.keys);
    return rc == 0 ? 0 : -1;
}

int idx_write(storage *s, const idx_group *groups, size_t ngroups, char *key_out, rerr *e)
{
    buf plain = {0};
    buf_append(&plain, INDEX_MAGIC, 4);
    buf_put_varint(&plain, ngroups);
    for (size_t i = 0; i < ngroups; i++) {
        const idx_group *g = &groups[i];
        buf_append(&plain, g->pack_id, ID_LEN);
        buf_put_varint(&plain, (uint64_t)g->time);
        buf_put_varint(&plain, g->n);
        for (size_t j = 0; j < g->n; j++) {
            const blob_entry *b = &g->entries[j];
            buf_append(&plain, b->id, ID_LEN);
            buf_put_u8(&plain, b->type);
            buf_put_u8(&plain, b->flags);
            buf_put_varint(&plain, b->offset);
            buf_put_varint(&plain, b->stored);
            buf_put_varint(&plain, b->raw);
        }
    }
    buf sealed = {0};
    seal_buf(&s->keys, INDEX_AAD, plain.data, plain.len, &sealed);
    buf_free(&plain);
    uint8_t id[ID_LEN];
    char hex[HEX_LEN + 1];
    sha256(sealed.data, sealed.len, id);
    hex_encode(id, ID_LEN, hex);
    snprintf(key_out, 80, "index/%s", hex);
    int rc = stor_put(s, key_out, sealed.data, sealed.len, 0, e);
    buf_free(&sealed);
    return rc == ST_OK ? 0 : -1;
}
