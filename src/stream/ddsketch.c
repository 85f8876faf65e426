/* DDSketch with an interpolated logarithm: the index mapping is DataDog's "cubically
 * interpolated mapping" (sketches-java/-go/-py, CubicallyInterpolatedMapping), redone here with
 * ceiling buckets and a whole number of buckets per octave.
 *
 * Mapping. A magnitude m = 2^e (1 + s), 0 <= s < 1, is read off its IEEE-754 bits (no log()),
 * and f(m) = e + P(s), where P(s) = (6/35) s^3 - (3/5) s^2 + (10/7) s approximates log2(1 + s):
 * P(0) = 0, P(1) = 1, increasing, so f is continuous and increasing over all doubles. Bucket i
 * holds the m with mult * f(m) in (i - 1, i], i.e. index(m) = mult * e + ceil(mult * P(s)). In
 * the log domain f grows at the rate (1 + s) P'(s), which never falls below 10/7 (reached at
 * s = 0 and s = 2/3; those coefficients maximise that minimum), so a bucket spans at most
 * 0.7 / mult in ln m. With mult >= 0.7 / ln(gamma), gamma = (1 + alpha) / (1 - alpha), every
 * bucket (lo, hi] has hi / lo <= gamma, and its representative 2 lo hi / (lo + hi) (both bounds
 * from the inverse of the same f) is within alpha of every value in it. That is 0.7 / ln 2 =
 * 1.0099 times the buckets of the exact log_gamma mapping. mult is rounded up to a whole number,
 * so octaves hold whole buckets and every power of two is a bucket's upper bound.
 *
 * Stores. Each sign's store is a dense array of counts over a window of bucket indices that
 * grows with slack when a value falls outside; when the occupied span would pass max_bins, the
 * lowest buckets are folded into the lowest kept one. Counts start as uint16_t; the first time a
 * bucket would pass the width's maximum, the store moves to counts twice as wide (uint32_t, then
 * uint64_t), so a long window stays exact while the usual one takes a quarter of the memory of
 * uint64_t counts. The sketch's own allocation ends with a small array that the first store to
 * need one uses while its span fits (24 buckets of uint16_t), so a narrow range costs one
 * allocation, and adding to it touches the store's header and counts that lie next to each
 * other, in one cache line when the range is narrow enough and the allocation lies well.
 *
 * The final contents of a store depend only on the multiset of values added (a value of index i
 * ends up in bucket max(i, highest index - max_bins + 1)), so merging is exact and independent
 * of order even after collapsing. Every operation that allocates does so before it changes
 * anything, so -ENOMEM leaves the sketch as it was. */
#include "streamgate/ddsketch.h"

#include "streamgate/common.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Extra slots allocated past the needed range so that a slowly widening range reallocates once
 * per SG_DDSKETCH_SLACK new buckets instead of on each. */
#define SG_DDSKETCH_SLACK 32
/* Bucket indices are clamped to +/- this, and spans to at most this, so that every index,
 * offset and offset + length fits an int32_t. With alpha = 0.01 real indices stay within
 * +/- 36000; only an absurdly small alpha (below about 7e-7) reaches the clamp. */
#define SG_DDSKETCH_MAX_INDEX (1 << 29)
/* Bytes of counts held in the sketch's own allocation: the whole sketch is then 120 bytes, a
 * 128-byte malloc chunk. */
#define SG_DDSKETCH_INLINE_BYTES 48

/* The cubic's coefficients (see the top of the file). */
#define SG_DDSKETCH_A (6.0 / 35.0)
#define SG_DDSKETCH_B (-3.0 / 5.0)
#define SG_DDSKETCH_C (10.0 / 7.0)

#define SG_DDSKETCH_MANTISSA_MASK 0x000fffffffffffffULL
#define SG_DDSKETCH_EXP_ONE       0x3ff0000000000000ULL /* the bits of 1.0 */
#define SG_DDSKETCH_ABS_MASK      0x7fffffffffffffffULL
#define SG_DDSKETCH_INF_BITS      0x7ff0000000000000ULL

/* Count widths: 2 << wlog bytes. */
enum { SG_DDSKETCH_U16, SG_DDSKETCH_U32, SG_DDSKETCH_U64 };

struct sg_ddsketch_store {
    /* len counts of 2 << wlog bytes; counts[k] counts bucket offset + k. NULL while the store is
     * empty. May point to the sketch's inline array (never with uint64_t counts). */
    void *counts;
    int32_t offset;
    uint32_t len : 30;
    uint32_t wlog : 2;
    int32_t lo, hi; /* lowest and highest non-empty bucket; lo > hi while empty */
};

/* What adding a positive value reads and writes comes first: the positive store, mult, then the
 * inline counts. */
struct sg_ddsketch {
    struct sg_ddsketch_store pos; /* positive values */
    uint32_t mult;                /* buckets per octave */
    uint32_t inl[SG_DDSKETCH_INLINE_BYTES / sizeof(uint32_t)];
    uint32_t max_bins;
    uint64_t zeros;               /* |v| < SG_DDSKETCH_MIN_VALUE */
    struct sg_ddsketch_store neg; /* magnitudes of negative values */
    double alpha;
};

static void sg_ddsketch__store_init(struct sg_ddsketch_store *st)
{
    st->counts = NULL;
    st->offset = 0;
    st->len = 0;
    st->wlog = SG_DDSKETCH_U16;
    st->lo = 1;
    st->hi = 0;
}

size_t sg_ddsketch_size(void)
{
    return sizeof(struct sg_ddsketch);
}

int sg_ddsketch_init(struct sg_ddsketch *s, double alpha, uint32_t max_bins)
{
    if (!(alpha > 0.0 && alpha < 1.0) || max_bins < 16)
        return -EINVAL;
    s->alpha = alpha;
    /* The smallest whole mult >= 0.7 / ln(gamma), with a relative margin of 1e-9 so that
     * rounding in the index computation never widens a bucket past gamma. log1p keeps ln(gamma)
     * exact to an ulp for small alpha. */
    double m = ceil(0.7 / (log1p(alpha) - log1p(-alpha)) * (1.0 + 1e-9));
    s->mult = m < SG_DDSKETCH_MAX_INDEX ? (uint32_t)m : SG_DDSKETCH_MAX_INDEX;
    s->max_bins = max_bins < SG_DDSKETCH_MAX_INDEX ? max_bins : SG_DDSKETCH_MAX_INDEX;
    s->zeros = 0;
    sg_ddsketch__store_init(&s->pos);
    sg_ddsketch__store_init(&s->neg);
    return 0;
}

struct sg_ddsketch *sg_ddsketch_create(double alpha, uint32_t max_bins)
{
    struct sg_ddsketch *s = malloc(sizeof(*s));
    if (s != NULL && sg_ddsketch_init(s, alpha, max_bins) != 0) {
        free(s);
        s = NULL;
    }
    return s;
}

static bool sg_ddsketch__is_inline(const struct sg_ddsketch *s, const struct sg_ddsketch_store *st)
{
    return st->counts == (const void *)s->inl;
}

void sg_ddsketch_fini(struct sg_ddsketch *s)
{
    if (s == NULL)
        return;
    if (!sg_ddsketch__is_inline(s, &s->pos))
        free(s->pos.counts);
    if (!sg_ddsketch__is_inline(s, &s->neg))
        free(s->neg.counts);
    sg_ddsketch__store_init(&s->pos);
    sg_ddsketch__store_init(&s->neg);
    s->zeros = 0;
}

void sg_ddsketch_destroy(struct sg_ddsketch *s)
{
    if (s == NULL)
        return;
    sg_ddsketch_fini(s);
    free(s);
}

void sg_ddsketch_moved(struct sg_ddsketch *s, const struct sg_ddsketch *old)
{
    /* Only the address of the old place is used: its memory is gone. */
    uintptr_t old_inl = (uintptr_t)old + offsetof(struct sg_ddsketch, inl);
    if ((uintptr_t)s->pos.counts == old_inl)
        s->pos.counts = s->inl;
    if ((uintptr_t)s->neg.counts == old_inl)
        s->neg.counts = s->inl;
}

/* ---- the mapping ----------------------------------------------------------------------- */

static inline double sg_ddsketch__cubic(double x)
{
    return ((SG_DDSKETCH_A * x + SG_DDSKETCH_B) * x + SG_DDSKETCH_C) * x;
}

/* Bucket index of a magnitude whose bits are `bits` (a finite double >= SG_DDSKETCH_MIN_VALUE,
 * hence normal). */
static inline int32_t sg_ddsketch__index(const struct sg_ddsketch *s, uint64_t bits)
{
    int64_t e = (int64_t)(bits >> 52) - 1023;
    uint64_t one_plus_s_bits = (bits & SG_DDSKETCH_MANTISSA_MASK) | SG_DDSKETCH_EXP_ONE;
    double one_plus_s;
    memcpy(&one_plus_s, &one_plus_s_bits, sizeof(one_plus_s));
    /* 1 + s is in [1, 2), so the subtraction is exact; x is in [0, mult]. */
    double x = (double)s->mult * sg_ddsketch__cubic(one_plus_s - 1.0);
    int64_t t = (int64_t)x; /* x >= 0: truncation is the floor */
    t += (double)t < x;     /* and now the ceiling */
    int64_t i = (int64_t)s->mult * e + t;
    if (i > SG_DDSKETCH_MAX_INDEX)
        i = SG_DDSKETCH_MAX_INDEX;
    if (i < -SG_DDSKETCH_MAX_INDEX)
        i = -SG_DDSKETCH_MAX_INDEX;
    return (int32_t)i;
}

/* s in [0, 1] with P(s) = y, for y in [0, 1]: Newton's method from 2^y - 1, which is within 0.01
 * of the root (P is close to log2(1 + s)); P' >= 26/35 on [0, 1], so it converges fast. */
static double sg_ddsketch__cubic_inverse(double y)
{
    double x = exp2(y) - 1.0;
    for (int k = 0; k < 6; k++) {
        double d = (3.0 * SG_DDSKETCH_A * x + 2.0 * SG_DDSKETCH_B) * x + SG_DDSKETCH_C;
        x -= (sg_ddsketch__cubic(x) - y) / d;
    }
    return x < 0.0 ? 0.0 : x > 1.0 ? 1.0 : x;
}

/* The upper bound of bucket i as 2^*e times the returned factor in [1, 2]. */
static double sg_ddsketch__bound(const struct sg_ddsketch *s, int64_t i, int64_t *e)
{
    int64_t m = s->mult;
    int64_t q = i >= 0 ? i / m : -((-i + m - 1) / m); /* floor(i / m) */
    *e = q;
    return 1.0 + sg_ddsketch__cubic_inverse((double)(i - q * m) / (double)m);
}

/* The estimate for every value of bucket i: the harmonic mean of its bounds, which is within
 * alpha of both. Computed on the factors so that the top bucket's upper bound (2^1024) does not
 * overflow on the way; an estimate past DBL_MAX is clamped: the value it stands for is at most
 * DBL_MAX, so the clamp only brings the estimate closer. */
static double sg_ddsketch__value(const struct sg_ddsketch *s, int64_t i)
{
    int64_t elo, ehi;
    double lo = sg_ddsketch__bound(s, i - 1, &elo);
    double hi = sg_ddsketch__bound(s, i, &ehi);
    if (ehi > elo) /* by one at most: mult >= 1 */
        hi *= 2.0;
    double v = ldexp(2.0 * lo * hi / (lo + hi), (int)elo);
    return v > DBL_MAX ? DBL_MAX : v;
}

/* ---- stores ---------------------------------------------------------------------------- */

static inline size_t sg_ddsketch__width(unsigned wlog)
{
    return (size_t)2 << wlog;
}

static unsigned sg_ddsketch__wlog_for(uint64_t n)
{
    return n <= UINT16_MAX ? SG_DDSKETCH_U16 : n <= UINT32_MAX ? SG_DDSKETCH_U32 : SG_DDSKETCH_U64;
}

static inline uint64_t sg_ddsketch__get(const struct sg_ddsketch_store *st, int64_t i)
{
    size_t k = (size_t)(i - st->offset);
    switch (st->wlog) {
    case SG_DDSKETCH_U16:
        return ((const uint16_t *)st->counts)[k];
    case SG_DDSKETCH_U32:
        return ((const uint32_t *)st->counts)[k];
    default:
        return ((const uint64_t *)st->counts)[k];
    }
}

/* The caller has made sure that n fits the store's width. */
static inline void sg_ddsketch__put(struct sg_ddsketch_store *st, int64_t i, uint64_t n)
{
    size_t k = (size_t)(i - st->offset);
    switch (st->wlog) {
    case SG_DDSKETCH_U16:
        ((uint16_t *)st->counts)[k] = (uint16_t)n;
        break;
    case SG_DDSKETCH_U32:
        ((uint32_t *)st->counts)[k] = (uint32_t)n;
        break;
    default:
        ((uint64_t *)st->counts)[k] = n;
        break;
    }
}

/* Sum of the store's buckets in [from, to] (clipped to what it holds). */
static uint64_t sg_ddsketch__sum(const struct sg_ddsketch_store *st, int64_t from, int64_t to)
{
    if (from < st->lo)
        from = st->lo;
    if (to > st->hi)
        to = st->hi;
    uint64_t total = 0;
    for (int64_t i = from; i <= to; i++)
        total += sg_ddsketch__get(st, i);
    return total;
}

/* Where a store's counts go for its new span. */
struct sg_ddsketch_plan {
    void *counts; /* the store's own array, the inline array, or a new (zeroed) heap array */
    int32_t offset;
    uint32_t len;
    unsigned wlog;
};

/* Inline slots of the given width that share a cache line with the positive store's header
 * (all of them when that header straddles two lines: the second holds them). Used to place a
 * narrow range; the sketch is wherever malloc put it (16-byte aligned). */
static int64_t sg_ddsketch__hot_slots(const struct sg_ddsketch *s, unsigned wlog)
{
    size_t start = (uintptr_t)s & 63, inl = offsetof(struct sg_ddsketch, inl);
    size_t bytes = start + inl <= 64 ? 64 - start - inl : SG_DDSKETCH_INLINE_BYTES;
    if (bytes > SG_DDSKETCH_INLINE_BYTES)
        bytes = SG_DDSKETCH_INLINE_BYTES;
    return (int64_t)(bytes / sg_ddsketch__width(wlog));
}

/* Plans the array that makes a store cover the buckets [nlo, nhi] (nhi - nlo < max_bins,
 * nhi >= the store's hi) with counts of width wlog (at least the store's), allocating it if
 * needed; changes nothing. `inline_free` says whether the store may take the sketch's inline
 * array. Returns 0 or -ENOMEM. */
static int sg_ddsketch__plan(const struct sg_ddsketch *s, const struct sg_ddsketch_store *st,
                             int64_t nlo, int64_t nhi, unsigned wlog, bool inline_free,
                             struct sg_ddsketch_plan *p)
{
    int64_t span = nhi - nlo + 1;
    int64_t inline_len = (int64_t)(SG_DDSKETCH_INLINE_BYTES / sg_ddsketch__width(wlog));
    int64_t len;
    if (st->counts != NULL && st->wlog == wlog && span <= st->len) {
        p->counts = st->counts; /* the same array is long enough: slide within it */
        len = st->len;
    } else if (wlog != SG_DDSKETCH_U64 && span <= inline_len &&
               (inline_free || sg_ddsketch__is_inline(s, st))) {
        p->counts = (void *)s->inl;
        len = inline_len;
    } else {
        len = span + SG_DDSKETCH_SLACK;
        if (len > (int64_t)s->max_bins + SG_DDSKETCH_SLACK)
            len = (int64_t)s->max_bins + SG_DDSKETCH_SLACK;
        p->counts = calloc((size_t)len, sg_ddsketch__width(wlog));
        if (p->counts == NULL)
            return -ENOMEM;
    }
    int64_t off, hot;
    if (p->counts == (void *)s->inl)
        /* Centred in the slots next to the store's header when it fits there, else in all. */
        off = span <= (hot = sg_ddsketch__hot_slots(s, wlog)) ? nlo - (hot - span) / 2
                                                              : nlo - (len - span) / 2;
    else if (st->counts != NULL && nlo >= st->offset && nhi < (int64_t)st->offset + len)
        off = st->offset; /* the old window still fits: no count moves */
    else if (st->counts == NULL)
        off = nlo - (len - span) / 2; /* first bucket: room on both sides */
    else if (nhi >= (int64_t)st->offset + len)
        off = nlo; /* growing upwards: slack above */
    else
        off = nhi - len + 1; /* growing downwards: slack below */
    p->offset = (int32_t)off;
    p->len = (uint32_t)len;
    p->wlog = wlog;
    return 0;
}

static void sg_ddsketch__plan_cancel(const struct sg_ddsketch *s,
                                     const struct sg_ddsketch_store *st,
                                     const struct sg_ddsketch_plan *p)
{
    if (p->counts != st->counts && p->counts != (const void *)s->inl)
        free(p->counts);
}

/* Carries the plan out: afterwards the store covers [floor_idx, nhi], holds every old count of
 * a bucket in that range at its place and the counts of the old buckets below floor_idx in
 * floor_idx (the caller chose a width that holds the sum). The caller must then add to
 * floor_idx (unless old counts landed there) and to nhi (unless it was the old hi), so that lo
 * and hi stay non-empty. */
static void sg_ddsketch__apply(struct sg_ddsketch *s, struct sg_ddsketch_store *st,
                               const struct sg_ddsketch_plan *p, int64_t floor_idx, int64_t nhi)
{
    uint64_t carry = 0;
    int64_t keep_lo = st->lo > floor_idx ? st->lo : floor_idx, keep_hi = st->hi;
    if (st->counts != NULL)
        carry = sg_ddsketch__sum(st, st->lo, floor_idx - 1);

    if (p->counts == st->counts && p->wlog == st->wlog) {
        /* Same array and width: slide the kept buckets into place and clear the rest. */
        size_t w = sg_ddsketch__width(st->wlog);
        char *c = p->counts;
        if (keep_lo <= keep_hi) {
            memmove(c + (size_t)(keep_lo - p->offset) * w, c + (size_t)(keep_lo - st->offset) * w,
                    (size_t)(keep_hi - keep_lo + 1) * w);
        } else {
            keep_lo = p->offset; /* nothing survives: the whole array is cleared below */
            keep_hi = p->offset - 1;
        }
        memset(c, 0, (size_t)(keep_lo - p->offset) * w);
        memset(c + (size_t)(keep_hi - p->offset + 1) * w, 0,
               (size_t)(p->len - (keep_hi - p->offset + 1)) * w);
        st->offset = p->offset;
    } else {
        /* Another array or a wider count (heap arrays come zeroed). The inline array may be both
         * source and destination when its counts widen: the old counts are read from a copy. */
        struct sg_ddsketch_store from = *st;
        uint32_t copy[SG_DDSKETCH_INLINE_BYTES / sizeof(uint32_t)];
        if (p->counts == (void *)s->inl) {
            if (sg_ddsketch__is_inline(s, st)) {
                memcpy(copy, s->inl, sizeof(copy));
                from.counts = copy;
            }
            memset(s->inl, 0, sizeof(s->inl));
        }
        struct sg_ddsketch_store to = *st;
        to.counts = p->counts;
        to.offset = p->offset;
        to.wlog = p->wlog;
        for (int64_t i = keep_lo; i <= keep_hi; i++)
            sg_ddsketch__put(&to, i, sg_ddsketch__get(&from, i));
        if (st->counts != NULL && !sg_ddsketch__is_inline(s, st))
            free(st->counts);
        st->counts = p->counts;
        st->offset = p->offset;
        st->wlog = p->wlog;
    }
    st->len = p->len;
    st->lo = (int32_t)floor_idx;
    st->hi = (int32_t)nhi;
    if (carry != 0)
        sg_ddsketch__put(st, floor_idx, sg_ddsketch__get(st, floor_idx) + carry);
}

/* Bytes of a store's heap array (none while it is empty or uses the inline array). */
static size_t sg_ddsketch__store_memory(const struct sg_ddsketch *s,
                                        const struct sg_ddsketch_store *st)
{
    if (st->counts == NULL || sg_ddsketch__is_inline(s, st))
        return 0;
    return sg_heap_bytes((size_t)st->len * sg_ddsketch__width(st->wlog));
}

/* The lowest bucket kept when a store spans [nlo, nhi]. */
static int64_t sg_ddsketch__floor(const struct sg_ddsketch *s, int64_t nlo, int64_t nhi)
{
    return nhi - nlo + 1 > s->max_bins ? nhi - s->max_bins + 1 : nlo;
}

/* Everything sg_ddsketch_add does not do inline: a bucket outside the store's span (widening
 * it, collapsing if needed), a bucket at its width's maximum, and uint64_t counts. A change in
 * the store's heap bytes is added to *held when it is not NULL. */
static __attribute__((noinline)) int sg_ddsketch__add_slow(struct sg_ddsketch *s,
                                                           struct sg_ddsketch_store *st,
                                                           int64_t idx, size_t *held)
{
    int64_t nlo = idx, nhi = idx;
    if (st->counts != NULL) {
        nlo = st->lo < idx ? st->lo : idx;
        nhi = st->hi > idx ? st->hi : idx;
    }
    int64_t floor_idx = sg_ddsketch__floor(s, nlo, nhi);
    int64_t target = idx > floor_idx ? idx : floor_idx;
    /* The buckets whose count grows: the target, and the floor, which receives whatever
     * collapses. */
    uint64_t at_floor = sg_ddsketch__sum(st, st->lo, floor_idx) + (target == floor_idx);
    uint64_t at_target = sg_ddsketch__sum(st, target, target) + 1;
    unsigned wlog = sg_ddsketch__wlog_for(at_floor > at_target ? at_floor : at_target);
    if (wlog < st->wlog)
        wlog = st->wlog;
    if (st->counts != NULL && floor_idx == nlo && wlog == st->wlog && nlo >= st->offset &&
        nhi < (int64_t)st->offset + st->len) {
        /* In the array, nothing to collapse, no wider count: the span grows in place (every
         * slot outside it is zero) or, with uint64_t counts, stays. A value past the span's
         * ends mostly lands here, not in a new plan. */
        st->lo = (int32_t)nlo;
        st->hi = (int32_t)nhi;
        sg_ddsketch__put(st, idx, sg_ddsketch__get(st, idx) + 1);
        return 0;
    }
    const struct sg_ddsketch_store *other = st == &s->pos ? &s->neg : &s->pos;
    struct sg_ddsketch_plan p;
    int err = sg_ddsketch__plan(s, st, floor_idx, nhi, wlog, !sg_ddsketch__is_inline(s, other), &p);
    if (err)
        return err;
    size_t before = held ? sg_ddsketch__store_memory(s, st) : 0;
    sg_ddsketch__apply(s, st, &p, floor_idx, nhi);
    sg_ddsketch__put(st, target, sg_ddsketch__get(st, target) + 1);
    if (held)
        *held += sg_ddsketch__store_memory(s, st) - before;
    return 0;
}

static inline int sg_ddsketch__add(struct sg_ddsketch *s, double v, size_t *held)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    uint64_t mag = bits & SG_DDSKETCH_ABS_MASK;
    /* Positive doubles order like their bits: one comparison each for the zero threshold and
     * for NaN and the infinities. */
    static const double min_value = SG_DDSKETCH_MIN_VALUE;
    uint64_t min_bits;
    memcpy(&min_bits, &min_value, sizeof(min_bits));
    if (__builtin_expect(mag < min_bits, 0)) {
        s->zeros++;
        return 0;
    }
    if (__builtin_expect(mag >= SG_DDSKETCH_INF_BITS, 0))
        return 0;
    struct sg_ddsketch_store *st = (bits >> 63) ? &s->neg : &s->pos;
    int32_t idx = sg_ddsketch__index(s, mag);
    if (__builtin_expect(idx >= st->lo && idx <= st->hi, 1)) {
        size_t k = (size_t)(idx - st->offset);
        if (st->wlog == SG_DDSKETCH_U16) {
            uint16_t *c = (uint16_t *)st->counts + k;
            if (__builtin_expect(*c != UINT16_MAX, 1)) {
                ++*c;
                return 0;
            }
        } else if (st->wlog == SG_DDSKETCH_U32) {
            uint32_t *c = (uint32_t *)st->counts + k;
            if (__builtin_expect(*c != UINT32_MAX, 1)) {
                ++*c;
                return 0;
            }
        }
    }
    return sg_ddsketch__add_slow(s, st, idx, held);
}

int sg_ddsketch_add(struct sg_ddsketch *s, double v)
{
    return sg_ddsketch__add(s, v, NULL);
}

int sg_ddsketch_add_counted(struct sg_ddsketch *s, double v, size_t *held)
{
    return sg_ddsketch__add(s, v, held);
}

/* ---- merge ----------------------------------------------------------------------------- */

/* What merging one store of src into dst's needs: the new span, the collapse floor, the width
 * that holds every merged bucket, and the array. */
struct sg_ddsketch_merge_plan {
    bool active; /* src has values of this sign */
    int64_t floor_idx, nhi;
    struct sg_ddsketch_plan p;
};

static int sg_ddsketch__merge_plan(const struct sg_ddsketch *dst, const struct sg_ddsketch_store *d,
                                   const struct sg_ddsketch_store *src, bool inline_free,
                                   struct sg_ddsketch_merge_plan *mp)
{
    mp->active = src->counts != NULL;
    if (!mp->active)
        return 0;
    int64_t nlo = src->lo, nhi = src->hi;
    if (d->counts != NULL) {
        nlo = d->lo < nlo ? d->lo : nlo;
        nhi = d->hi > nhi ? d->hi : nhi;
    }
    int64_t floor_idx = sg_ddsketch__floor(dst, nlo, nhi);
    uint64_t most = 0;
    for (int64_t j = floor_idx; j <= nhi; j++) {
        /* The floor bucket receives everything at or below it from both sides. */
        int64_t from = j == floor_idx ? INT32_MIN : j;
        uint64_t n = sg_ddsketch__sum(d, from, j) + sg_ddsketch__sum(src, from, j);
        if (n > most)
            most = n;
    }
    unsigned wlog = sg_ddsketch__wlog_for(most);
    if (wlog < d->wlog)
        wlog = d->wlog;
    mp->floor_idx = floor_idx;
    mp->nhi = nhi;
    return sg_ddsketch__plan(dst, d, floor_idx, nhi, wlog, inline_free, &mp->p);
}

/* Adds every bucket of src to d, whose array the plan made wide enough. */
static void sg_ddsketch__merge_apply(struct sg_ddsketch *dst, struct sg_ddsketch_store *d,
                                     const struct sg_ddsketch_store *src,
                                     const struct sg_ddsketch_merge_plan *mp)
{
    if (!mp->active)
        return;
    sg_ddsketch__apply(dst, d, &mp->p, mp->floor_idx, mp->nhi);
    /* When dst == src, src is d itself, already moved: each bucket is read before it is
     * written, so every count doubles. */
    for (int64_t i = src->lo; i <= src->hi; i++) {
        uint64_t n = sg_ddsketch__get(src, i);
        int64_t j = i > d->lo ? i : d->lo;
        sg_ddsketch__put(d, j, sg_ddsketch__get(d, j) + n);
    }
}

int sg_ddsketch_merge(struct sg_ddsketch *dst, const struct sg_ddsketch *src)
{
    /* Exact comparison: a different alpha maps values to different buckets, so even a tiny
     * difference would make a bucket-wise sum meaningless. */
    if (dst->alpha != src->alpha)
        return -EINVAL;
    uint64_t src_zeros = src->zeros; /* read before dst changes, in case dst == src */
    struct sg_ddsketch_merge_plan mpos, mneg;
    /* Both arrays are planned (allocated) before either store changes, so that -ENOMEM leaves
     * dst whole; the inline array goes to at most one of them. */
    int err = sg_ddsketch__merge_plan(dst, &dst->pos, &src->pos,
                                      !sg_ddsketch__is_inline(dst, &dst->neg), &mpos);
    if (err)
        return err;
    bool pos_inline_after =
        mpos.active ? mpos.p.counts == (void *)dst->inl : sg_ddsketch__is_inline(dst, &dst->pos);
    err = sg_ddsketch__merge_plan(dst, &dst->neg, &src->neg, !pos_inline_after, &mneg);
    if (err) {
        if (mpos.active)
            sg_ddsketch__plan_cancel(dst, &dst->pos, &mpos.p);
        return err;
    }
    sg_ddsketch__merge_apply(dst, &dst->pos, &src->pos, &mpos);
    sg_ddsketch__merge_apply(dst, &dst->neg, &src->neg, &mneg);
    dst->zeros += src_zeros;
    return 0;
}

/* ---- queries --------------------------------------------------------------------------- */

static uint64_t sg_ddsketch__total(const struct sg_ddsketch_store *st)
{
    return sg_ddsketch__sum(st, st->lo, st->hi);
}

double sg_ddsketch_quantile(const struct sg_ddsketch *s, double q)
{
    uint64_t count = sg_ddsketch_count(s);
    if (count == 0 || isnan(q))
        return NAN;
    if (q < 0.0)
        q = 0.0;
    if (q > 1.0)
        q = 1.0;
    uint64_t rank = (uint64_t)floor(q * (double)(count - 1));
    if (rank >= count)
        rank = count - 1;

    /* Negative values first, from the largest magnitude (highest index) down, then the zeros,
     * then the positive values. */
    uint64_t seen = 0;
    const struct sg_ddsketch_store *st = &s->neg;
    for (int64_t i = st->hi; i >= st->lo; i--) {
        seen += sg_ddsketch__get(st, i);
        if (rank < seen)
            return -sg_ddsketch__value(s, i);
    }
    seen += s->zeros;
    if (rank < seen)
        return 0.0;
    st = &s->pos;
    for (int64_t i = st->lo; i <= st->hi; i++) {
        seen += sg_ddsketch__get(st, i);
        if (rank < seen)
            return sg_ddsketch__value(s, i);
    }
    return NAN; /* not reached: count is the sum of what was walked */
}

uint64_t sg_ddsketch_count(const struct sg_ddsketch *s)
{
    return s->zeros + sg_ddsketch__total(&s->pos) + sg_ddsketch__total(&s->neg);
}

double sg_ddsketch_alpha(const struct sg_ddsketch *s)
{
    return s->alpha;
}

size_t sg_ddsketch_memory(const struct sg_ddsketch *s)
{
    return sg_heap_bytes(sizeof(*s)) + sg_ddsketch__store_memory(s, &s->pos) +
           sg_ddsketch__store_memory(s, &s->neg);
}

/* ---- stored form ----------------------------------------------------------------------- */

static uint64_t sg_ddsketch__zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t sg_ddsketch__unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static int sg_ddsketch__encode_store(const struct sg_ddsketch_store *st, struct sg_buf *out)
{
    uint64_t n = 0;
    for (int64_t i = st->lo; i <= st->hi; i++)
        n += sg_ddsketch__get(st, i) != 0;
    int rc = sg_buf_append_varint(out, n);
    int64_t prev = 0;
    for (int64_t i = st->lo; rc == 0 && i <= st->hi; i++) {
        uint64_t c = sg_ddsketch__get(st, i);
        if (c == 0)
            continue;
        rc = sg_buf_append_varint(out, i == st->lo ? sg_ddsketch__zigzag(i) : (uint64_t)(i - prev));
        if (rc == 0)
            rc = sg_buf_append_varint(out, c);
        prev = i;
    }
    return rc;
}

int sg_ddsketch_encode(const struct sg_ddsketch *s, struct sg_buf *out)
{
    size_t start = out->len;
    unsigned char head[9] = {SG_DDSKETCH_ENCODING_VERSION};
    uint64_t abits;
    memcpy(&abits, &s->alpha, sizeof(abits));
    for (int i = 0; i < 8; i++)
        head[1 + i] = (unsigned char)(abits >> (8 * i));
    int rc = sg_buf_append(out, head, sizeof(head));
    if (rc == 0)
        rc = sg_buf_append_varint(out, s->max_bins);
    if (rc == 0)
        rc = sg_buf_append_varint(out, s->zeros);
    if (rc == 0)
        rc = sg_ddsketch__encode_store(&s->pos, out);
    if (rc == 0)
        rc = sg_ddsketch__encode_store(&s->neg, out);
    if (rc != 0)
        out->len = start;
    return rc;
}

/* Reads one store into `st` as uint64_t counts over exactly [lo, hi]; *total gets its sum. */
static int sg_ddsketch__decode_store(const unsigned char **p, const unsigned char *end,
                                     uint32_t max_bins, struct sg_ddsketch_store *st,
                                     uint64_t *total)
{
    unsigned long long n, v, c;
    *total = 0;
    if (sg_varint_read(p, end, &n) != 0 || n > max_bins)
        return -EINVAL;
    if (n == 0)
        return 0;
    /* Bucket indices and counts, read once to learn the span, then again into the array. */
    const unsigned char *start = *p;
    int64_t idx = 0, lo = 0;
    for (unsigned long long k = 0; k < n; k++) {
        if (sg_varint_read(p, end, &v) != 0 || sg_varint_read(p, end, &c) != 0 || c == 0)
            return -EINVAL;
        if (k == 0) {
            idx = lo = sg_ddsketch__unzigzag(v);
        } else {
            if (v == 0 || v > (unsigned long long)max_bins)
                return -EINVAL;
            idx += (int64_t)v;
        }
        if (idx < -SG_DDSKETCH_MAX_INDEX || idx > SG_DDSKETCH_MAX_INDEX ||
            idx - lo + 1 > (int64_t)max_bins || c > UINT64_MAX - *total)
            return -EINVAL;
        *total += c;
    }
    uint64_t *counts = calloc((size_t)(idx - lo + 1), sizeof(*counts));
    if (!counts)
        return -ENOMEM;
    const unsigned char *q = start;
    int64_t i = 0;
    for (unsigned long long k = 0; k < n; k++) {
        (void)sg_varint_read(&q, end, &v);
        (void)sg_varint_read(&q, end, &c);
        i = k == 0 ? lo : i + (int64_t)v;
        counts[i - lo] = c;
    }
    st->counts = counts;
    st->offset = (int32_t)lo;
    st->len = (uint32_t)(idx - lo + 1);
    st->wlog = SG_DDSKETCH_U64;
    st->lo = (int32_t)lo;
    st->hi = (int32_t)idx;
    return 0;
}

int sg_ddsketch_decode(const void *buf, size_t len, struct sg_ddsketch **out)
{
    const unsigned char *p = buf, *end = p + len;
    unsigned long long max_bins, zeros;
    uint64_t abits = 0, npos = 0, nneg = 0;
    double alpha;
    if (len < 9 || p[0] != SG_DDSKETCH_ENCODING_VERSION)
        return -EINVAL;
    for (int i = 0; i < 8; i++)
        abits |= (uint64_t)p[1 + i] << (8 * i);
    memcpy(&alpha, &abits, sizeof(alpha));
    p += 9;
    if (sg_varint_read(&p, end, &max_bins) != 0 || max_bins < 16 ||
        max_bins > SG_DDSKETCH_MAX_INDEX || sg_varint_read(&p, end, &zeros) != 0)
        return -EINVAL;
    /* A stand-in whose stores hold the decoded counts: merging it into an empty sketch builds
     * the stores exactly as adding the values would have. */
    struct sg_ddsketch tmp;
    if (sg_ddsketch_init(&tmp, alpha, (uint32_t)max_bins) != 0)
        return -EINVAL;
    int rc = sg_ddsketch__decode_store(&p, end, tmp.max_bins, &tmp.pos, &npos);
    if (rc == 0)
        rc = sg_ddsketch__decode_store(&p, end, tmp.max_bins, &tmp.neg, &nneg);
    if (rc == 0 && (p != end || zeros > UINT64_MAX - npos || zeros + npos > UINT64_MAX - nneg))
        rc = -EINVAL;
    struct sg_ddsketch *s = NULL;
    if (rc == 0) {
        tmp.zeros = zeros;
        s = sg_ddsketch_create(alpha, (uint32_t)max_bins);
        rc = s ? sg_ddsketch_merge(s, &tmp) : -ENOMEM;
    }
    free(tmp.pos.counts);
    free(tmp.neg.counts);
    if (rc != 0) {
        sg_ddsketch_destroy(s);
        return rc;
    }
    *out = s;
    return 0;
}
