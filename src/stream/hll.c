/* HyperLogLog with one byte per register. The register index is the top `precision` bits of a
 * 64-bit hash and the rank is one plus the number of leading zeros of the remaining bits, so with
 * a 64-bit hash no large-range correction is needed; small cardinalities use linear counting. */
#include "hll.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/hash.h"

/* Fixed so that sketches built anywhere in the process (and across restarts) merge. */
#define SG_HLL_SEED 0

/* Largest possible rank: all 64 - p remaining bits zero. */
#define SG_HLL_MAX_RANK(p) (64 - (p) + 1)

int sg_hll_init(struct sg_hll *h, unsigned precision)
{
    h->precision = 0;
    h->registers = NULL;
    if (precision < SG_HLL_MIN_PRECISION || precision > SG_HLL_MAX_PRECISION)
        return -EINVAL;
    h->registers = calloc((size_t)1 << precision, 1);
    if (h->registers == NULL)
        return -ENOMEM;
    h->precision = (uint8_t)precision;
    return 0;
}

void sg_hll_free(struct sg_hll *h)
{
    free(h->registers);
    h->registers = NULL;
}

void sg_hll_add_hash(struct sg_hll *h, uint64_t hash)
{
    unsigned p = h->precision;
    size_t idx = (size_t)(hash >> (64 - p));
    uint64_t rest = hash << p; /* the remaining 64 - p bits, left-aligned */
    uint8_t rank = rest ? (uint8_t)(__builtin_clzll(rest) + 1) : (uint8_t)SG_HLL_MAX_RANK(p);
    if (rank > h->registers[idx])
        h->registers[idx] = rank;
}

void sg_hll_add(struct sg_hll *h, const void *data, size_t len)
{
    sg_hll_add_hash(h, sg_hash64(data, len, SG_HLL_SEED));
}

int sg_hll_merge(struct sg_hll *dst, const struct sg_hll *src)
{
    if (dst->precision != src->precision || dst->registers == NULL || src->registers == NULL)
        return -EINVAL;
    size_t m = (size_t)1 << dst->precision;
    for (size_t i = 0; i < m; i++) {
        if (src->registers[i] > dst->registers[i])
            dst->registers[i] = src->registers[i];
    }
    return 0;
}

/* alpha_m of Flajolet et al. for m = 2^p registers. */
static double sg_hll_alpha(size_t m)
{
    switch (m) {
    case 16:
        return 0.673;
    case 32:
        return 0.697;
    case 64:
        return 0.709;
    default:
        return 0.7213 / (1.0 + 1.079 / (double)m);
    }
}

double sg_hll_estimate(const struct sg_hll *h)
{
    if (h->registers == NULL)
        return 0.0;
    size_t m = (size_t)1 << h->precision;
    /* A histogram of register values turns m powers of two into at most 62 ldexp calls. Sized
     * for any byte, so registers set by hand cannot index past it. */
    uint32_t hist[256] = {0};
    for (size_t i = 0; i < m; i++)
        hist[h->registers[i]]++;

    /* Smallest terms first, for accuracy. */
    double sum = 0.0;
    for (int k = 255; k >= 0; k--) {
        if (hist[k])
            sum += ldexp((double)hist[k], -k);
    }
    double md = (double)m;
    double e = sg_hll_alpha(m) * md * md / sum;
    uint32_t zeros = hist[0];
    if (e <= 2.5 * md && zeros > 0)
        return md * log(md / (double)zeros);
    return e;
}
