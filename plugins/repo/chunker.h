/*
 * Content-defined chunking: FastCDC (Xia et al., USENIX ATC 2016) with a gear hash and
 * normalised chunking. A cut point depends only on the 64 bytes before it, so an insertion
 * or deletion changes the chunks around it and no others: that is what makes data
 * deduplicate between snapshots of a changing file.
 */
#ifndef REPO_CHUNKER_H
#define REPO_CHUNKER_H

#include <stddef.h>
#include <stdint.h>

typedef struct cdc {
    uint64_t gear[256];
    uint64_t mask_small; /* used before the average size: harder to match */
    uint64_t mask_large; /* used after it: easier to match */
    size_t min_size;
    size_t avg_size;
    size_t max_size;
} cdc;

/* File data: chunks of 256 KiB to 4 MiB, 1 MiB on average. */
#define CDC_DATA_MIN ((size_t)256 << 10)
#define CDC_DATA_AVG ((size_t)1 << 20)
#define CDC_DATA_MAX ((size_t)4 << 20)
/* Snapshot trees: 16 KiB to 256 KiB, 64 KiB on average, so a small change to a large tree
 * stores only a few new chunks. */
#define CDC_META_MIN ((size_t)16 << 10)
#define CDC_META_AVG ((size_t)64 << 10)
#define CDC_META_MAX ((size_t)256 << 10)

/*
 * Sets up a chunker. seed selects the gear table (each storage has its own, so chunk
 * boundaries do not reveal content to someone who knows the default table); avg_size must
 * be a power of two with min_size < avg_size < max_size.
 */
void cdc_init(cdc *c, uint64_t seed, size_t min_size, size_t avg_size, size_t max_size);

/*
 * Returns the length of the first chunk of p[0..n): a content-defined cut point, or
 * min(n, max_size) when there is none. A caller streaming a file must hold max_size bytes
 * (or all that remains of the file) before asking, or the chunk ends early.
 */
size_t cdc_cut(const cdc *c, const uint8_t *p, size_t n);

#endif
