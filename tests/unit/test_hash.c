#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/hash.h"

/* Reference values from Kafka's UtilsTest.testMurmur2. */
static const struct {
    const char *key;
    int32_t hash;
} kafka_vectors[] = {
    {"21", -973932308},
    {"foobar", -790332482},
    {"a-little-bit-long-string", -985981536},
    {"a-little-bit-longer-string", -1486304829},
    {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
    {"abc", 479470107},
};

Test(hash, murmur2_kafka_vectors)
{
    for (size_t i = 0; i < sizeof(kafka_vectors) / sizeof(kafka_vectors[0]); i++) {
        const char *k = kafka_vectors[i].key;
        cr_expect_eq(sg_kafka_murmur2(k, strlen(k)), kafka_vectors[i].hash, "murmur2(\"%s\") = %d",
                     k, sg_kafka_murmur2(k, strlen(k)));
    }
    const uint8_t abc[] = {'a', 'b', 'c'};
    cr_expect_eq(sg_kafka_murmur2(abc, sizeof(abc)), 479470107);
}

Test(hash, murmur2_empty_key)
{
    /* The Java client's value for an empty array (seed ^ 0 through the final mix). */
    cr_expect_eq(sg_kafka_murmur2("", 0), 275646681);
    cr_expect_eq(sg_kafka_murmur2(NULL, 0), 275646681);
}

Test(hash, murmur2_short_lengths_differ)
{
    /* Every tail length (0..3 past a block) goes through its own switch arm. */
    const char *s = "abcdefg";
    int32_t h[8];
    for (size_t len = 0; len <= 7; len++) {
        h[len] = sg_kafka_murmur2(s, len);
        for (size_t j = 0; j < len; j++)
            cr_expect_neq(h[len], h[j], "lengths %zu and %zu collide", len, j);
    }
}

Test(hash, murmur2_uses_every_tail_byte)
{
    /* Changing any single byte of a 7-byte key changes the hash. */
    uint8_t key[7] = {1, 2, 3, 4, 5, 6, 7};
    int32_t base = sg_kafka_murmur2(key, sizeof(key));
    for (size_t i = 0; i < sizeof(key); i++) {
        key[i] ^= 0x80;
        cr_expect_neq(sg_kafka_murmur2(key, sizeof(key)), base, "byte %zu ignored", i);
        key[i] ^= 0x80;
    }
}

Test(hash, kafka_partition_in_range)
{
    char key[32];
    int32_t counts[7] = {0};
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(key, sizeof(key), "device-%d", i);
        int32_t p = sg_kafka_partition(key, (size_t)n, 7);
        cr_assert(p >= 0 && p < 7, "partition %d out of range", p);
        counts[p]++;
    }
    /* Roughly uniform: each partition gets 10000/7 = 1428 +/- a wide margin. */
    for (int p = 0; p < 7; p++)
        cr_expect(counts[p] > 1200 && counts[p] < 1650, "partition %d got %d", p, counts[p]);
    for (int32_t parts = 1; parts <= 64; parts++) {
        int32_t p = sg_kafka_partition("foobar", 6, parts);
        cr_expect(p >= 0 && p < parts);
    }
}

Test(hash, kafka_partition_known_values)
{
    /* toPositive(-790332482) = 1357151166. */
    cr_expect_eq(sg_kafka_partition("foobar", 6, 10), 1357151166 % 10);
    cr_expect_eq(sg_kafka_partition("foobar", 6, 50), 1357151166 % 50);
    cr_expect_eq(sg_kafka_partition("foobar", 6, 1), 0);
    /* "21" hashes to a negative value: its sign bit must be masked, not negated. */
    cr_expect_eq(sg_kafka_partition("21", 2, 1000), (int32_t)((-973932308 & 0x7fffffff) % 1000));
}

Test(hash, hash64_deterministic)
{
    const char *s = "the quick brown fox jumps over the lazy dog";
    for (size_t len = 0; len <= strlen(s); len++)
        cr_expect_eq(sg_hash64(s, len, 42), sg_hash64(s, len, 42));
    /* Same bytes at a different (unaligned) address hash the same. */
    char buf[64];
    memcpy(buf + 1, s, strlen(s));
    cr_expect_eq(sg_hash64(buf + 1, strlen(s), 7), sg_hash64(s, strlen(s), 7));
}

Test(hash, hash64_seed_sensitive)
{
    const char *s = "key-1";
    uint64_t h0 = sg_hash64(s, strlen(s), 0);
    for (uint64_t seed = 1; seed < 1000; seed++)
        cr_expect_neq(sg_hash64(s, strlen(s), seed), h0);
    cr_expect_neq(sg_hash64("", 0, 0), sg_hash64("", 0, 1));
}

Test(hash, hash64_lengths_differ)
{
    /* Zero bytes of different lengths must not collide (padding is not enough). */
    uint8_t zeros[64] = {0};
    uint64_t h[65];
    for (size_t len = 0; len <= 64; len++) {
        h[len] = sg_hash64(zeros, len, 0);
        for (size_t j = 0; j < len; j++)
            cr_expect_neq(h[len], h[j], "lengths %zu and %zu collide", len, j);
    }
}

static uint64_t splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

Test(hash, hash64_avalanche)
{
    /* Flipping one input bit flips about half of the 64 output bits, for every key length class
     * (tail paths 1..3, 4..8, 9..16, and the 16-byte loop). */
    const size_t lengths[] = {1, 3, 4, 7, 8, 9, 16, 17, 33, 64};
    uint64_t rng = 12345;
    for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
        size_t len = lengths[li];
        uint8_t key[64];
        uint64_t flips = 0, samples = 0;
        for (int round = 0; round < 200; round++) {
            for (size_t i = 0; i < len; i++)
                key[i] = (uint8_t)splitmix(&rng);
            uint64_t base = sg_hash64(key, len, 0);
            for (size_t bit = 0; bit < len * 8; bit++) {
                key[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                flips += (uint64_t)__builtin_popcountll(base ^ sg_hash64(key, len, 0));
                samples++;
                key[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            }
        }
        double avg = (double)flips / (double)samples;
        cr_expect(avg > 28.0 && avg < 36.0, "len %zu: %.2f bits flip on average", len, avg);
        cr_expect(avg > 31.0 && avg < 33.0, "len %zu: %.2f bits flip on average", len, avg);
    }
}

Test(hash, hash64_avalanche_per_output_bit)
{
    /* Each output bit flips with probability near 1/2 when one input bit flips: catches a hash
     * whose average looks fine but whose low bits (used for table slots) are weak. */
    uint64_t rng = 99;
    uint32_t flips[64] = {0};
    uint32_t samples = 0;
    uint8_t key[12];
    for (int round = 0; round < 2000; round++) {
        for (size_t i = 0; i < sizeof(key); i++)
            key[i] = (uint8_t)splitmix(&rng);
        uint64_t base = sg_hash64(key, sizeof(key), 0);
        for (size_t bit = 0; bit < sizeof(key) * 8; bit++) {
            key[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            uint64_t diff = base ^ sg_hash64(key, sizeof(key), 0);
            key[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            for (int o = 0; o < 64; o++)
                flips[o] += (uint32_t)((diff >> o) & 1);
            samples++;
        }
    }
    for (int o = 0; o < 64; o++) {
        double p = (double)flips[o] / samples;
        cr_expect(p > 0.47 && p < 0.53, "output bit %d flips with p=%.3f", o, p);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

Test(hash, hash64_no_collisions_sequential_keys)
{
    const size_t n = 1000000;
    uint64_t *h = malloc(n * sizeof(*h));
    cr_assert_not_null(h);
    char key[32];
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(key, sizeof(key), "key-%zu", i);
        h[i] = sg_hash64(key, (size_t)len, 0);
    }
    qsort(h, n, sizeof(*h), cmp_u64);
    size_t dups = 0;
    for (size_t i = 1; i < n; i++)
        dups += h[i] == h[i - 1];
    free(h);
    cr_expect_eq(dups, 0, "%zu collisions", dups);
}

Test(hash, hash64_low_bits_spread)
{
    /* Sequential keys fill the buckets of a 1024-slot table evenly (chi-square test, 1023
     * degrees of freedom: the 99.9th percentile is about 1168). */
    enum { SLOTS = 1024, KEYS = 200000 };
    static uint32_t slots[SLOTS];
    char key[32];
    for (int i = 0; i < KEYS; i++) {
        int len = snprintf(key, sizeof(key), "key-%d", i);
        slots[sg_hash64(key, (size_t)len, 0) & (SLOTS - 1)]++;
    }
    double expected = (double)KEYS / SLOTS, chi2 = 0;
    for (int i = 0; i < SLOTS; i++)
        chi2 += (slots[i] - expected) * (slots[i] - expected) / expected;
    cr_expect(chi2 < 1168.0, "chi-square %.1f", chi2);
}
