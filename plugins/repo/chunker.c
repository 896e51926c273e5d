/* FastCDC with a gear hash: see chunker.h. */
#include "chunker.h"

#include <assert.h>

/* splitmix64: a tiny, well-mixed generator to expand a seed into the gear table. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static int log2_of(size_t v)
{
    int bits = 0;
    while (((size_t)1 << bits) < v)
        bits++;
    return bits;
}

/* The top `bits` bits of a 64-bit word: they depend on the last 64 bytes hashed. */
static uint64_t top_mask(int bits)
{
    return bits <= 0 ? 0 : ~UINT64_C(0) << (64 - bits);
}

void cdc_init(cdc *c, uint64_t seed, size_t min_size, size_t avg_size, size_t max_size)
{
    assert(min_size < avg_size && avg_size < max_size);
    uint64_t state = seed;
    for (int i = 0; i < 256; i++)
        c->gear[i] = splitmix64(&state);
    int bits = log2_of(avg_size);
    /* Normalised chunking, level 2: two bits harder before the average, two easier after,
     * which narrows the size distribution around the average. */
    c->mask_small = top_mask(bits + 2);
    c->mask_large = top_mask(bits - 2);
    c->min_size = min_size;
    c->avg_size = avg_size;
    c->max_size = max_size;
}

size_t cdc_cut(const cdc *c, const uint8_t *p, size_t n)
{
    if (n <= c->min_size)
        return n;
    size_t max = n < c->max_size ? n : c->max_size;
    size_t normal = max < c->avg_size ? max : c->avg_size;
    const uint64_t *gear = c->gear;
    uint64_t h = 0;
    size_t i = c->min_size;
    /* The hash starts at min_size: after 64 bytes it equals a hash run from the start,
     * since every byte shifts out of the 64-bit state after 64 steps. */
    for (; i + 1 < normal; i += 2) {
        h = (h << 1) + gear[p[i]];
        if (!(h & c->mask_small))
            return i + 1;
        h = (h << 1) + gear[p[i + 1]];
        if (!(h & c->mask_small))
            return i + 2;
    }
    for (; i < normal; i++) {
        h = (h << 1) + gear[p[i]];
        if (!(h & c->mask_small))
            return i + 1;
    }
    for (; i + 1 < max; i += 2) {
        h = (h << 1) + gear[p[i]];
        if (!(h & c->mask_large))
            return i + 1;
        h = (h << 1) + gear[p[i + 1]];
        if (!(h & c->mask_large))
            return i + 2;
    }
    for (; i < max; i++) {
        h = (h << 1) + gear[p[i]];
        if (!(h & c->mask_large))
            return i + 1;
    }
    return max;
}
