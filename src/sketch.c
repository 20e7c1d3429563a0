/*
 * sketch.c -- occurrence keys and levels, and the Count-Min sketch's
 * hashing (see sketch.h for the definitions, which tests/oracle.py
 * re-implements independently).
 */
#include "sketch.h"

#include <string.h>
#include <xxhash.h>

#include "util.h"

uint64_t pd_okey(const char *event_id, size_t idlen, int64_t ts_ms, const char *type, size_t tlen)
{
    uint8_t b[1 + 8 + 256];
    if (event_id && idlen) {
        if (idlen > sizeof b - 1) idlen = sizeof b - 1; /* ids are at most 256 bytes (event.h) */
        b[0] = 'i';
        memcpy(b + 1, event_id, idlen);
        return XXH3_64bits(b, 1 + idlen);
    }
    if (tlen > sizeof b - 9) tlen = sizeof b - 9; /* types are at most 64 bytes */
    b[0] = 't';
    pd_put_u64be(b + 1, (uint64_t)ts_ms);
    memcpy(b + 9, type, tlen);
    return XXH3_64bits(b, 9 + tlen);
}

uint8_t pd_occ_level(uint64_t okey, const char *v, size_t len)
{
    uint64_t u = XXH3_64bits_withSeed(v, len, okey);
    if (u == 0) return 255;
    int z = __builtin_clzll(u);
    unsigned m = (unsigned)((u << z) >> 60) & 7; /* the three bits after the leading one */
    unsigned l = 8u * (unsigned)z + 7u - m;
    return (uint8_t)(l > 255 ? 255 : l);
}

uint32_t pd_sketch_width(uint32_t cap)
{
    uint32_t w = PD_SKETCH_MIN_WIDTH;
    while (w < PD_SKETCH_MAX_WIDTH && (uint64_t)w < 2 * (uint64_t)cap) w <<= 1;
    return w;
}

void pd_sketch_cells(const char *v, size_t len, uint32_t w, uint32_t cell[PD_SKETCH_ROWS])
{
    XXH128_hash_t h = XXH3_128bits_withSeed(v, len, PD_SKETCH_SEED);
    const uint32_t part[PD_SKETCH_ROWS] = {(uint32_t)h.low64, (uint32_t)(h.low64 >> 32),
                                           (uint32_t)h.high64, (uint32_t)(h.high64 >> 32)};
    for (int r = 0; r < PD_SKETCH_ROWS; r++) cell[r] = (uint32_t)r * w + (part[r] & (w - 1));
}

uint64_t pd_sketch_estimate(const uint64_t *sk, uint32_t w, const char *v, size_t len)
{
    uint32_t cell[PD_SKETCH_ROWS];
    pd_sketch_cells(v, len, w, cell);
    uint64_t e = sk[cell[0]];
    for (int r = 1; r < PD_SKETCH_ROWS; r++)
        if (sk[cell[r]] < e) e = sk[cell[r]];
    return e;
}
