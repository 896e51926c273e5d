/*
 * The index: which pack holds each chunk. In memory it is a hash table (chunk id -> pack,
 * offset, lengths) and a table of packs; in the storage it is a set of immutable index files
 * "index/<sha256 of the file>", each listing some packs and their blobs:
 *     "FIX1" | varint packs | per pack: id, varint time, varint blobs, blob entries
 * sealed when the storage is encrypted. A push writes one small index file per pack as soon
 * as the pack is stored (so an interrupted push loses nothing it uploaded) and replaces them
 * by one file when it ends. See docs/storage-format.md.
 *
 * Not thread-safe: callers that share an index between threads hold their own mutex.
 */
#ifndef REPO_INDEX_H
#define REPO_INDEX_H

#include <stdint.h>

#include "pack.h"
#include "storage.h"

#define IDX_PENDING UINT32_MAX /* the chunk is in a pack this push has not stored yet */
#define IDX_NONE    UINT32_MAX

typedef struct idx_entry {
    uint8_t id[ID_LEN];
    uint32_t pack; /* number in index.packs, or IDX_PENDING */
    uint32_t offset;
    uint32_t stored;
    uint32_t raw;
    uint8_t type;
    uint8_t flags;
} idx_entry;

typedef struct idx_pack {
    uint8_t id[ID_LEN];
    int64_t time;   /* Unix seconds when the pack was indexed (for the GC grace period) */
    uint64_t bytes; /* sum of its blobs' stored lengths */
    uint32_t blobs;
    uint8_t gone; /* deleted by the garbage collector during this job */
} idx_pack;

typedef struct idx_file_pack {
    uint32_t file;
    uint32_t pack;
} idx_file_pack;

typedef struct chunk_index {
    idx_entry *entries; /* dense */
    size_t count;
    size_t entries_cap;
    uint32_t *slots; /* open addressing: entry number + 1, 0 = empty */
    size_t slots_cap;
    idx_pack *packs;
    size_t npacks;
    size_t packs_cap;
    uint32_t *pack_slots;
    size_t pack_slots_cap;
    char **files; /* keys of the index files loaded */
    size_t nfiles;
    idx_file_pack *file_packs; /* which file listed which pack */
    size_t nfile_packs;
    size_t duplicates; /* chunks stored in more than one pack */
} chunk_index;

void idx_init(chunk_index *ix);
void idx_free(chunk_index *ix);

/* The entry for id, or NULL. The pointer is valid until the next insertion. */
idx_entry *idx_find(const chunk_index *ix, const uint8_t id[ID_LEN]);
/* Inserts *e unless its id is present. Returns the table's entry; *inserted tells which. */
idx_entry *idx_insert(chunk_index *ix, const idx_entry *e, int *inserted);
/* The number of pack id, added when new. */
uint32_t idx_pack_add(chunk_index *ix, const uint8_t id[ID_LEN], int64_t time);
/* The number of pack id, or IDX_NONE. */
uint32_t idx_pack_find(const chunk_index *ix, const uint8_t id[ID_LEN]);
/* Records the blobs of pack number packno (new chunks are added, known ones kept). */
void idx_add_blobs(chunk_index *ix, uint32_t packno, const blob_entry *entries, size_t n);

/* Reads every index file of the storage into ix. 0, or -1 with e set. */
int idx_load(storage *s, chunk_index *ix, rerr *e);

/* One pack's part of an index file. */
typedef struct idx_group {
    const uint8_t *pack_id;
    int64_t time;
    const blob_entry *entries;
    size_t n;
} idx_group;

/* Writes an index file listing groups; key_out (at least 80 bytes) receives its key. */
int idx_write(storage *s, const idx_group *groups, size_t ngroups, char *key_out, rerr *e);

/* Parses an index file's plaintext, calling fn for each pack. 0, or -1 when malformed. */
int idx_parse(const uint8_t *data, size_t len, void (*fn)(void *arg, const idx_group *g),
              void *arg);

#endif
