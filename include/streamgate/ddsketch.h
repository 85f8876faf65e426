/* A DDSketch quantile sketch (Masson, Rim, Lee, VLDB 2019): buckets of geometrically growing
 * width give every quantile estimate a relative error of at most `alpha` (|estimate - true| <=
 * alpha * |true|) for values whose bucket was not collapsed. The bucket of a value comes from its
 * binary exponent and a cubic in its mantissa instead of a logarithm (DataDog's interpolated
 * mapping), which costs about 1% more buckets than exact logarithmic ones: at alpha = 0.01, 35
 * buckets per factor of two. Positive and negative values have their own bucket stores; zero
 * (|v| < SG_DDSKETCH_MIN_VALUE) has its own count. Sketches with the same alpha merge exactly
 * (the merge of two sketches equals the sketch of the union). When a store would pass max_bins,
 * its lowest buckets are collapsed into one (the bound then no longer holds for the values of
 * smallest magnitude only: the lowest positive and the highest negative values). Counts are
 * exact up to 2^64 values. */
#ifndef STREAMGATE_DDSKETCH_H
#define STREAMGATE_DDSKETCH_H

#include <stddef.h>
#include <stdint.h>

#include "streamgate/buf.h"

#define SG_DDSKETCH_DEFAULT_ALPHA    0.01
#define SG_DDSKETCH_DEFAULT_MAX_BINS 2048
#define SG_DDSKETCH_MIN_VALUE        1e-9

struct sg_ddsketch;

/* Returns NULL when out of memory or when alpha is not in (0, 1) or max_bins < 16. */
struct sg_ddsketch *sg_ddsketch_create(double alpha, uint32_t max_bins);
void sg_ddsketch_destroy(struct sg_ddsketch *s);

/* A sketch in memory its owner provides, e.g. next to the aggregate it belongs to, so that
 * adding to both touches neighbouring cache lines: sg_ddsketch_size() bytes, 8-byte aligned.
 * init returns 0, or -EINVAL when alpha is not in (0, 1) or max_bins < 16; fini frees what the
 * sketch allocated and leaves it empty (init again before reuse is not needed). The memory
 * itself stays the owner's. */
size_t sg_ddsketch_size(void);
int sg_ddsketch_init(struct sg_ddsketch *s, double alpha, uint32_t max_bins);
void sg_ddsketch_fini(struct sg_ddsketch *s);
/* The sketch's bytes were moved (memcpy, realloc) from `old`, which is no longer read, to
 * `s`: fixes what pointed into the sketch itself. */
void sg_ddsketch_moved(struct sg_ddsketch *s, const struct sg_ddsketch *old);
/* Adds one value; NaN and infinities are ignored. Returns 0, or -ENOMEM with the sketch
 * unchanged. */
int sg_ddsketch_add(struct sg_ddsketch *s, double v);
/* The same, for an owner that keeps an account of its bytes: when the value makes the sketch
 * change its bucket arrays (a wider range, wider counts), the change in the bytes they take is
 * added to *held (which may wrap around for a decrease, as size_t arithmetic does). */
int sg_ddsketch_add_counted(struct sg_ddsketch *s, double v, size_t *held);
/* dst := dst ∪ src (dst == src doubles every count). Returns 0, -EINVAL when the alphas differ,
 * or -ENOMEM with dst unchanged. */
int sg_ddsketch_merge(struct sg_ddsketch *dst, const struct sg_ddsketch *src);
/* The q-quantile (0 <= q <= 1) estimate; NaN when empty. The estimate for rank
 * floor(q * (count - 1)) (lower quantile, 0-based). */
double sg_ddsketch_quantile(const struct sg_ddsketch *s, double q);
uint64_t sg_ddsketch_count(const struct sg_ddsketch *s);
double sg_ddsketch_alpha(const struct sg_ddsketch *s);
/* Bytes the sketch holds: its own allocation (which has room for a narrow range's buckets) and
 * any bucket arrays. */
size_t sg_ddsketch_memory(const struct sg_ddsketch *s);

/* The stored form (README "Stored sketches"): version 1 is a byte 1, alpha as 8 bytes of a
 * little-endian IEEE-754 double, then LEB128 varints: max_bins, the zero count, and for the
 * positive then the negative store the number of non-empty buckets followed, when there are
 * any, by the first bucket's index (zigzag) and count, then each next bucket's distance from the
 * one before (at least 1) and count. Decoding gives a sketch equal to the encoded one: the same
 * buckets, the same quantiles, and it merges as the original would. */
#define SG_DDSKETCH_ENCODING_VERSION 1

/* Appends the stored form of `s`. Returns 0, -ENOMEM or -E2BIG from the buffer (which is then
 * unchanged). */
int sg_ddsketch_encode(const struct sg_ddsketch *s, struct sg_buf *out);

/* Reads a stored form from (buf, len) into a new sketch (*out, sg_ddsketch_destroy frees it).
 * Returns 0, -EINVAL for anything that is not a valid stored form (another version, a bad
 * alpha, a store wider than max_bins, trailing bytes), or -ENOMEM. Safe on any input. */
int sg_ddsketch_decode(const void *buf, size_t len, struct sg_ddsketch **out);

#endif
