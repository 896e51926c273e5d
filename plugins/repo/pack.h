/*
 * Packs: many chunks ("blobs") in one storage object, so that small files do not become one
 * object each. A pack is
 *     "FPK1" | blob … blob | sealed trailer | trailer length (u32 LE)
 * where each blob is the chunk, zstd-compressed when that saves space, then sealed with the
 * chunk id as associated data; the trailer lists every blob (id, type, flags, offset, stored
 * and raw length) so a pack can be indexed again from itself. The pack's id is the SHA-256
 * of its sealed trailer. See docs/storage-format.md.
 */
#ifndef REPO_PACK_H
#define REPO_PACK_H

#include <stddef.h>
#include <stdint.h>

#include <zstd.h>

#include "crypto.h"
#include "storage.h"
#include "util.h"

enum { BLOB_DATA = 0, BLOB_TREE = 1 };
#define BLOB_COMPRESSED 1u

#define PACK_MAGIC       "FPK1"
#define PACK_TARGET_SIZE ((size_t)16 << 20) /* a pack is closed once it reaches this */

typedef struct blob_entry {
    uint8_t id[ID_LEN];
    uint8_t type;
    uint8_t flags;
    uint32_t offset; /* from the start of the pack */
    uint32_t stored; /* bytes in the pack */
    uint32_t raw;    /* bytes of the chunk */
} blob_entry;

/* Per-thread compression, hashing and sealing state. */
typedef struct codec {
    const keys *keys;
    hasher *hash;
    sealer *seal;
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    int level; /* zstd level; 0: store uncompressed */
    buf scratch;
} codec;

codec *codec_new(const keys *k, int level);
void codec_free(codec *c);

/*
 * A pack under construction, owned by one thread. Blobs stream into a storage writer as
 * they are added, so a pack never sits in memory whole. Zero-initialise, then set s.
 */
typedef struct pack_writer {
    storage *s;
    stor_stream *out; /* opened with the first blob */
    uint64_t size;
    blob_entry *entries;
    size_t n;
    size_t cap;
    buf blob; /* one sealed blob */
} pack_writer;

/* A finished pack, written but not yet published: its id, stream and table of contents. */
typedef struct pack {
    uint8_t id[ID_LEN];
    stor_stream *out;
    uint64_t size;
    blob_entry *entries;
    size_t n;
} pack;

/* Appends raw[0..n) as a blob with the given id and type. 0, or -1 with e set. */
int pack_add(pack_writer *pw, codec *c, const uint8_t id[ID_LEN], int type, const void *raw,
             size_t n, rerr *e);
/* Appends an already encoded blob (a copy from another pack) as is. 0 or -1. */
int pack_add_stored(pack_writer *pw, const blob_entry *be, const uint8_t *stored, rerr *e);
/*
 * Closes the pack: writes its trailer and returns it (NULL when it was empty, or on error
 * with e set). The writer is empty again and may take new blobs.
 */
pack *pack_finish(pack_writer *pw, codec *c, rerr *e);
/* Publishes a finished pack under its key ("data/ab/ab12…"). 0 or -1. */
int pack_commit(pack *p, rerr *e);
/* Frees a pack; one never committed is discarded. */
void pack_free(pack *p);
void pack_writer_free(pack_writer *pw);

/*
 * Decodes one blob: opens the seal, decompresses and checks that the content hashes to the
 * entry's id. out receives the chunk (replacing its contents). Returns 0, or -1 with a
 * description of the damage in why (whylen bytes).
 */
int blob_decode(codec *c, const blob_entry *e, const uint8_t *stored, buf *out, char *why,
                size_t whylen);

/*
 * Parses the trailer of a whole pack held in data[0..len): *entries (caller frees) and *n.
 * id_out, when not NULL, receives the pack id computed from the trailer. 0 or -1.
 */
int pack_parse(codec *c, const uint8_t *data, size_t len, blob_entry **entries, size_t *n,
               uint8_t id_out[ID_LEN]);

/* The zstd level for a compression name (fast, default, high, none); -1 when unknown. */
int compression_level(const char *name);

#endif
