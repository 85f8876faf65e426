/* DDSketch: a value v > 0 falls in bucket i = ceil(log_gamma(v)), which holds (gamma^(i-1),
 * gamma^i], and is estimated by 2 * gamma^i / (gamma + 1), within alpha of every value in the
 * bucket (gamma = (1 + alpha) / (1 - alpha)). Each store is a dense array of counts over a window
 * of bucket indices that grows with slack when a value falls outside; when the occupied span
 * would pass max_bins, the lowest buckets are folded into the lowest kept one.
 *
 * The final contents of a store depend only on the multiset of values added (a value of index i
 * ends up in bucket max(i, highest index - max_bins + 1)), so merging is exact and independent
 * of order even after collapsing. */
#include "streamgate/ddsketch.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Extra slots allocated past the needed range so that a slowly widening range reallocates once
 * per SG_DDSKETCH_SLACK new buckets instead of on each. */
#define SG_DDSKETCH_SLACK 32
/* Bucket indices are clamped to +/- this, and spans to at most this, so that every index,
 * offset and offset + length fits an int32_t. With alpha = 0.01 real indices stay within
 * +/- 36000; only an absurdly small alpha reaches the clamp. */
#define SG_DDSKETCH_MAX_INDEX (1 << 29)

struct sg_ddsketch_store {
    uint64_t *counts; /* counts[k] counts bucket offset + k; NULL while the store is empty */
    int32_t offset;
    uint32_t len;
    int32_t lo, hi; /* lowest and highest non-empty bucket (valid when counts != NULL) */
};

struct sg_ddsketch {
    double alpha;
    double inv_log_gamma; /* 1 / ln(gamma): one multiplication per add instead of a division */
    /* All values, zeros included; the zero count is what the stores do not hold, which keeps
     * an empty sketch at 80 bytes. */
    uint64_t count;
    uint32_t max_bins;
    struct sg_ddsketch_store pos; /* positive values */
    struct sg_ddsketch_store neg; /* magnitudes of negative values */
};

struct sg_ddsketch *sg_ddsketch_create(double alpha, uint32_t max_bins)
{
    if (!(alpha > 0.0 && alpha < 1.0) || max_bins < 16)
        return NULL;
    struct sg_ddsketch *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->alpha = alpha;
    s->inv_log_gamma = 1.0 / log((1.0 + alpha) / (1.0 - alpha));
    s->max_bins = max_bins < SG_DDSKETCH_MAX_INDEX ? max_bins : SG_DDSKETCH_MAX_INDEX;
    return s;
}

void sg_ddsketch_destroy(struct sg_ddsketch *s)
{
    if (s == NULL)
        return;
    free(s->pos.counts);
    free(s->neg.counts);
    free(s);
}

/* Bucket index of a magnitude m >= SG_DDSKETCH_MIN_VALUE. */
static int32_t sg_ddsketch_index(const struct sg_ddsketch *s, double m)
{
    double x = ceil(log(m) * s->inv_log_gamma);
    if (x > SG_DDSKETCH_MAX_INDEX)
        return SG_DDSKETCH_MAX_INDEX;
    if (x < -SG_DDSKETCH_MAX_INDEX)
        return -SG_DDSKETCH_MAX_INDEX;
    return (int32_t)x;
}

/* Makes the array cover (at least) the buckets [nlo, nhi], nhi - nlo < max_bins, keeping the
 * counts of those buckets and zeroing every other slot. Returns -ENOMEM with the store
 * unchanged. */
static int sg_ddsketch_store_fit(struct sg_ddsketch_store *st, int64_t nlo, int64_t nhi,
                                 uint32_t max_bins)
{
    if (st->counts != NULL && nlo >= st->offset && nhi < (int64_t)st->offset + st->len) {
        /* Buckets below nlo are being collapsed by the caller. */
        if (st->lo < nlo)
            memset(st->counts + (st->lo - st->offset), 0,
                   (size_t)(nlo - st->lo) * sizeof(uint64_t));
        return 0;
    }

    int64_t span = nhi - nlo + 1;
    int64_t want = span + SG_DDSKETCH_SLACK;
    if (want > (int64_t)max_bins + SG_DDSKETCH_SLACK)
        want = (int64_t)max_bins + SG_DDSKETCH_SLACK;
    int64_t noff;
    if (st->counts == NULL)
        noff = nlo - (want - span) / 2; /* first bucket: room on both sides */
    else if (nhi >= (int64_t)st->offset + st->len)
        noff = nlo; /* growing upwards: slack above */
    else
        noff = nhi - want + 1; /* growing downwards: slack below */

    /* Old buckets that survive: the occupied range clipped to [nlo, nhi]. */
    int64_t keep_lo = 0, keep_hi = -1;
    if (st->counts != NULL) {
        keep_lo = st->lo > nlo ? st->lo : nlo;
        keep_hi = st->hi < nhi ? st->hi : nhi;
    }

    if (st->counts != NULL && want <= st->len) {
        /* Same array, new window: slide the kept buckets into place. */
        uint64_t *c = st->counts;
        if (keep_lo <= keep_hi) {
            memmove(c + (keep_lo - noff), c + (keep_lo - st->offset),
                    (size_t)(keep_hi - keep_lo + 1) * sizeof(uint64_t));
        } else {
            /* Nothing survives: the whole array is cleared below. */
            keep_lo = noff;
            keep_hi = noff - 1;
        }
        memset(c, 0, (size_t)(keep_lo - noff) * sizeof(uint64_t));
        memset(c + (keep_hi - noff + 1), 0,
               (size_t)(st->len - (keep_hi - noff + 1)) * sizeof(uint64_t));
        st->offset = (int32_t)noff;
        return 0;
    }

    uint64_t *c = calloc((size_t)want, sizeof(uint64_t));
    if (c == NULL)
        return -ENOMEM;
    if (st->counts != NULL && keep_lo <= keep_hi)
        memcpy(c + (keep_lo - noff), st->counts + (keep_lo - st->offset),
               (size_t)(keep_hi - keep_lo + 1) * sizeof(uint64_t));
    free(st->counts);
    st->counts = c;
    st->offset = (int32_t)noff;
    st->len = (uint32_t)want;
    return 0;
}

/* Widens the store so that buckets [ilo, ihi] can be counted, collapsing the lowest buckets
 * when the span would pass max_bins. Afterwards bucket i is counted at max(i, st->lo). The caller
 * must then add to the buckets ilo and ihi (so that lo and hi stay non-empty). Returns -ENOMEM
 * with the store unchanged. */
static int sg_ddsketch_store_extend(struct sg_ddsketch_store *st, int32_t ilo, int32_t ihi,
                                    uint32_t max_bins)
{
    int64_t nlo = ilo, nhi = ihi;
    if (st->counts != NULL) {
        nlo = st->lo < ilo ? st->lo : ilo;
        nhi = st->hi > ihi ? st->hi : ihi;
    }
    int64_t floor_idx = nlo;
    if (nhi - nlo + 1 > max_bins)
        floor_idx = nhi - max_bins + 1;

    /* Counts that the collapse moves into the new lowest bucket. */
    uint64_t carry = 0;
    if (st->counts != NULL && st->lo < floor_idx) {
        int64_t end = st->hi < floor_idx ? st->hi + 1 : floor_idx;
        for (int64_t i = st->lo; i < end; i++)
            carry += st->counts[i - st->offset];
    }

    int err = sg_ddsketch_store_fit(st, floor_idx, nhi, max_bins);
    if (err)
        return err;
    st->lo = (int32_t)floor_idx;
    st->hi = (int32_t)nhi;
    st->counts[floor_idx - st->offset] += carry;
    return 0;
}

static int sg_ddsketch_store_add(struct sg_ddsketch_store *st, int32_t idx, uint32_t max_bins)
{
    if (st->counts == NULL || idx < st->lo || idx > st->hi) {
        int err = sg_ddsketch_store_extend(st, idx, idx, max_bins);
        if (err)
            return err;
        if (idx < st->lo)
            idx = st->lo; /* below the kept span: collapsed */
    }
    st->counts[idx - st->offset]++;
    return 0;
}

int sg_ddsketch_add(struct sg_ddsketch *s, double v)
{
    if (!isfinite(v))
        return 0;
    int err = 0;
    if (v >= SG_DDSKETCH_MIN_VALUE)
        err = sg_ddsketch_store_add(&s->pos, sg_ddsketch_index(s, v), s->max_bins);
    else if (v <= -SG_DDSKETCH_MIN_VALUE)
        err = sg_ddsketch_store_add(&s->neg, sg_ddsketch_index(s, -v), s->max_bins);
    /* else: a zero, counted by count alone */
    if (err)
        return err;
    s->count++;
    return 0;
}

/* Adds every bucket of src to dst; *added receives the number of values moved. */
static int sg_ddsketch_store_merge(struct sg_ddsketch_store *dst,
                                   const struct sg_ddsketch_store *src, uint32_t max_bins,
                                   uint64_t *added)
{
    *added = 0;
    if (src->counts == NULL)
        return 0;
    /* One extension for the whole range: at most one allocation, and the collapse floor is
     * final before any count moves. */
    int err = sg_ddsketch_store_extend(dst, src->lo, src->hi, max_bins);
    if (err)
        return err;
    uint64_t total = 0;
    for (int64_t i = src->lo; i <= src->hi; i++) {
        uint64_t n = src->counts[i - src->offset];
        int64_t j = i > dst->lo ? i : dst->lo;
        dst->counts[j - dst->offset] += n;
        total += n;
    }
    *added = total;
    return 0;
}

int sg_ddsketch_merge(struct sg_ddsketch *dst, const struct sg_ddsketch *src)
{
    /* Exact comparison: a different alpha maps values to different buckets, so even a tiny
     * difference would make a bucket-wise sum meaningless. */
    if (dst->alpha != src->alpha)
        return -EINVAL;
    /* Read before the stores change, in case dst == src. */
    uint64_t src_count = src->count;
    uint64_t added_pos, added_neg;
    int err = sg_ddsketch_store_merge(&dst->pos, &src->pos, dst->max_bins, &added_pos);
    if (err)
        return err;
    err = sg_ddsketch_store_merge(&dst->neg, &src->neg, dst->max_bins, &added_neg);
    if (err) {
        /* dst now holds src's positive values: count them, so that count minus the stores
         * still gives dst's own zeros. */
        dst->count += added_pos;
        return err;
    }
    dst->count += src_count; /* src's zeros live in its count only */
    return 0;
}

/* The estimate for every value of bucket i: 2 gamma^i / (gamma + 1), computed in the log domain
 * so that the top bucket does not overflow on the way. An estimate past DBL_MAX is clamped: the
 * value it stands for is at most DBL_MAX, so the clamp only brings the estimate closer. */
static double sg_ddsketch_value(const struct sg_ddsketch *s, int64_t i)
{
    double gamma = (1.0 + s->alpha) / (1.0 - s->alpha);
    double v = exp((double)i / s->inv_log_gamma - log((gamma + 1.0) / 2.0));
    return v > DBL_MAX ? DBL_MAX : v;
}

static uint64_t sg_ddsketch_store_total(const struct sg_ddsketch_store *st)
{
    uint64_t total = 0;
    if (st->counts != NULL) {
        for (int64_t i = st->lo; i <= st->hi; i++)
            total += st->counts[i - st->offset];
    }
    return total;
}

double sg_ddsketch_quantile(const struct sg_ddsketch *s, double q)
{
    if (s->count == 0 || isnan(q))
        return NAN;
    if (q < 0.0)
        q = 0.0;
    if (q > 1.0)
        q = 1.0;
    uint64_t rank = (uint64_t)floor(q * (double)(s->count - 1));
    if (rank >= s->count)
        rank = s->count - 1;

    /* Negative values first, from the largest magnitude (highest index) down. */
    uint64_t seen = 0;
    const struct sg_ddsketch_store *st = &s->neg;
    if (st->counts != NULL) {
        for (int64_t i = st->hi; i >= st->lo; i--) {
            seen += st->counts[i - st->offset];
            if (rank < seen)
                return -sg_ddsketch_value(s, i);
        }
    }
    /* Then the zeros: whatever count the two stores do not hold. */
    st = &s->pos;
    uint64_t zeros = s->count - seen - sg_ddsketch_store_total(st);
    seen += zeros;
    if (rank < seen)
        return 0.0;
    if (st->counts != NULL) {
        for (int64_t i = st->lo; i <= st->hi; i++) {
            seen += st->counts[i - st->offset];
            if (rank < seen)
                return sg_ddsketch_value(s, i);
        }
    }
    /* Only reached if the counts disagree with count, which add and merge never allow. */
    return NAN;
}

uint64_t sg_ddsketch_count(const struct sg_ddsketch *s)
{
    return s->count;
}

double sg_ddsketch_alpha(const struct sg_ddsketch *s)
{
    return s->alpha;
}

size_t sg_ddsketch_memory(const struct sg_ddsketch *s)
{
    return sizeof(*s) + ((size_t)s->pos.len + s->neg.len) * sizeof(uint64_t);
}
