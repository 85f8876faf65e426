/* Kafka's murmur2 (bit-exact with the Java client, so keys land on the partitions a Java
 * producer's default partitioner picks) and a fast 64-bit hash built on 64x64->128-bit
 * multiplication, used for in-memory tables and HyperLogLog. */
#include "streamgate/hash.h"

#include <string.h>

#define SG_MURMUR2_SEED 0x9747b28cu
#define SG_MURMUR2_M    0x5bd1e995u
#define SG_MURMUR2_R    24

int32_t sg_kafka_murmur2(const void *key, size_t len)
{
    const uint8_t *p = key;
    /* Java computes `seed ^ length` on a 32-bit int; keys are far below 2 GiB anyway. */
    uint32_t h = SG_MURMUR2_SEED ^ (uint32_t)len;
    size_t blocks = len / 4;

    for (size_t i = 0; i < blocks; i++) {
        const uint8_t *b = p + i * 4;
        uint32_t k =
            (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        k *= SG_MURMUR2_M;
        k ^= k >> SG_MURMUR2_R;
        k *= SG_MURMUR2_M;
        h *= SG_MURMUR2_M;
        h ^= k;
    }

    const uint8_t *tail = p + (len & ~(size_t)3);
    switch (len & 3) {
    case 3:
        h ^= (uint32_t)tail[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)tail[1] << 8;
        /* fall through */
    case 1:
        h ^= (uint32_t)tail[0];
        h *= SG_MURMUR2_M;
    }

    h ^= h >> 13;
    h *= SG_MURMUR2_M;
    h ^= h >> 15;
    /* Two's complement reinterpretation, as Java's int; memcpy avoids the implementation-defined
     * conversion of an out-of-range unsigned value. */
    int32_t out;
    memcpy(&out, &h, sizeof(out));
    return out;
}

int32_t sg_kafka_partition(const void *key, size_t len, int32_t partitions)
{
    if (partitions <= 0)
        return 0;
    return (int32_t)(((uint32_t)sg_kafka_murmur2(key, len) & 0x7fffffffu) % (uint32_t)partitions);
}

/* Odd 64-bit constants with well-spread bits (the golden ratio and the splitmix64 / Stafford
 * "mix13" multipliers). */
#define SG_H0 0x9e3779b97f4a7c15ull
#define SG_H1 0xbf58476d1ce4e5b9ull
#define SG_H2 0x94d049bb133111ebull
#define SG_H3 0xd6e8feb86659fd93ull

/* Full 128-bit product of a and b, returned as low and high halves. */
static inline void sg_hash_mul128(uint64_t a, uint64_t b, uint64_t *lo, uint64_t *hi)
{
#ifdef __SIZEOF_INT128__
    unsigned __int128 r = (unsigned __int128)a * b;
    *lo = (uint64_t)r;
    *hi = (uint64_t)(r >> 64);
#else
    uint64_t al = a & 0xffffffffu, ah = a >> 32, bl = b & 0xffffffffu, bh = b >> 32;
    uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint64_t mid = (ll >> 32) + (lh & 0xffffffffu) + (hl & 0xffffffffu);
    *lo = (mid << 32) | (ll & 0xffffffffu);
    *hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
#endif
}

/* Folds the 128-bit product: every output bit depends on every input bit of both operands. */
static inline uint64_t sg_hash_mix(uint64_t a, uint64_t b)
{
    uint64_t lo, hi;
    sg_hash_mul128(a, b, &lo, &hi);
    return lo ^ hi;
}

/* Little-endian loads through memcpy: no unaligned access, same result on every host. */
static inline uint64_t sg_hash_read64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint64_t sg_hash_read32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

uint64_t sg_hash64(const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = data;
    size_t n = len;
    uint64_t h = seed ^ sg_hash_mix(seed ^ SG_H0, SG_H1);
    uint64_t a, b;

    /* 16 bytes a round; the last 1..16 bytes are handled below so that short keys (the common
     * case) take no loop iteration at all. */
    while (n > 16) {
        h = sg_hash_mix(sg_hash_read64(p) ^ SG_H1, sg_hash_read64(p + 8) ^ h);
        p += 16;
        n -= 16;
    }
    /* The tail reads may overlap; given the length they still cover each byte exactly once or
     * twice, so different tails of the same length give different (a, b). */
    if (n > 8) {
        a = sg_hash_read64(p);
        b = sg_hash_read64(p + n - 8);
    } else if (n >= 4) {
        a = sg_hash_read32(p);
        b = sg_hash_read32(p + n - 4);
    } else if (n > 0) {
        a = (uint64_t)p[0] << 16 | (uint64_t)p[n >> 1] << 8 | p[n - 1];
        b = 0;
    } else {
        a = 0;
        b = 0;
    }

    uint64_t lo, hi;
    sg_hash_mul128(a ^ SG_H2, b ^ h, &lo, &hi);
    return sg_hash_mix(lo ^ SG_H3 ^ (uint64_t)len, hi ^ SG_H1);
}
