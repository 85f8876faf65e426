/* HyperLogLog with one byte per register. The register index is the top `precision` bits of a
 * 64-bit hash and the rank is one plus the number of leading zeros of the remaining bits, so with
 * a 64-bit hash no large-range correction is needed; small cardinalities use linear counting. */
#include "streamgate/hll.h"

#include <errno.h>
#include <stdbool.h>
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

enum { SG_HLL_DENSE = 0, SG_HLL_SPARSE = 1 };

int sg_hll_encode(const struct sg_hll *h, struct sg_buf *out)
{
    size_t m = (size_t)1 << h->precision, nonzero = 0, sparse = 0;
    size_t prev = 0;
    for (size_t i = 0; i < m; i++) {
        if (!h->registers[i])
            continue;
        size_t gap = nonzero ? i - prev : i;
        sparse += 1 + (gap < 128 ? 1 : gap < 16384 ? 2 : 3);
        nonzero++;
        prev = i;
    }
    size_t start = out->len;
    bool dense = sparse + 3 >= m; /* the count's varint takes at most 3 bytes */
    unsigned char head[3] = {SG_HLL_ENCODING_VERSION, h->precision,
                             dense ? SG_HLL_DENSE : SG_HLL_SPARSE};
    int rc = sg_buf_append(out, head, sizeof(head));
    if (rc == 0 && dense)
        rc = sg_buf_append(out, h->registers, m);
    if (rc == 0 && !dense)
        rc = sg_buf_append_varint(out, nonzero);
    for (size_t i = 0, k = 0; rc == 0 && !dense && i < m; i++) {
        if (!h->registers[i])
            continue;
        rc = sg_buf_append_varint(out, k ? i - prev : i);
        if (rc == 0)
            rc = sg_buf_append_char(out, (char)h->registers[i]);
        prev = i;
        k++;
    }
    if (rc != 0)
        out->len = start;
    return rc;
}

int sg_hll_decode(const void *buf, size_t len, struct sg_hll *h)
{
    const unsigned char *p = buf, *end = p + len;
    h->precision = 0;
    h->registers = NULL;
    if (len < 3 || p[0] != SG_HLL_ENCODING_VERSION ||
        (p[2] != SG_HLL_DENSE && p[2] != SG_HLL_SPARSE))
        return -EINVAL;
    unsigned precision = p[1], form = p[2];
    int rc = sg_hll_init(h, precision);
    if (rc != 0)
        return rc;
    size_t m = (size_t)1 << precision;
    uint8_t max_rank = (uint8_t)SG_HLL_MAX_RANK(precision);
    p += 3;
    if (form == SG_HLL_DENSE) {
        if ((size_t)(end - p) != m)
            goto bad;
        for (size_t i = 0; i < m; i++) {
            if (p[i] > max_rank)
                goto bad;
            h->registers[i] = p[i];
        }
        return 0;
    }
    unsigned long long n, gap;
    if (sg_varint_read(&p, end, &n) != 0 || n > m)
        goto bad;
    size_t idx = 0;
    for (unsigned long long k = 0; k < n; k++) {
        if (sg_varint_read(&p, end, &gap) != 0 || p >= end || (k > 0 && gap == 0) ||
            gap >= m - (k ? idx : 0))
            goto bad;
        idx = k ? idx + (size_t)gap : (size_t)gap;
        uint8_t rank = *p++;
        if (rank == 0 || rank > max_rank)
            goto bad;
        h->registers[idx] = rank;
    }
    if (p == end)
        return 0;
bad:
    sg_hll_free(h);
    h->precision = 0;
    return -EINVAL;
}
