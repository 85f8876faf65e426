/* A DDSketch quantile sketch (Masson, Rim, Lee, VLDB 2019): logarithmic buckets give every
 * quantile estimate a relative error of at most `alpha` (|estimate - true| <= alpha * |true|)
 * for values whose bucket was not collapsed. Positive and negative values have their own bucket
 * stores; zero (|v| < SG_DDSKETCH_MIN_VALUE) has its own count. Sketches with the same alpha merge
 * exactly (the merge of two sketches equals the sketch of the union). When a store would pass
 * max_bins, its lowest buckets are collapsed into one (the bound then no longer holds for the
 * values of smallest magnitude only: the lowest positive and the highest negative values). */
#ifndef STREAMGATE_DDSKETCH_H
#define STREAMGATE_DDSKETCH_H

#include <stddef.h>
#include <stdint.h>

#define SG_DDSKETCH_DEFAULT_ALPHA    0.01
#define SG_DDSKETCH_DEFAULT_MAX_BINS 2048
#define SG_DDSKETCH_MIN_VALUE        1e-9

struct sg_ddsketch;

/* Returns NULL when out of memory or when alpha is not in (0, 1) or max_bins < 16. */
struct sg_ddsketch *sg_ddsketch_create(double alpha, uint32_t max_bins);
void sg_ddsketch_destroy(struct sg_ddsketch *s);
/* Adds one value; NaN and infinities are ignored. Returns 0 or -ENOMEM. */
int sg_ddsketch_add(struct sg_ddsketch *s, double v);
/* dst := dst ∪ src. Returns 0, -EINVAL when the alphas differ, or -ENOMEM. */
int sg_ddsketch_merge(struct sg_ddsketch *dst, const struct sg_ddsketch *src);
/* The q-quantile (0 <= q <= 1) estimate; NaN when empty. The estimate for rank
 * floor(q * (count - 1)) (lower quantile, 0-based). */
double sg_ddsketch_quantile(const struct sg_ddsketch *s, double q);
uint64_t sg_ddsketch_count(const struct sg_ddsketch *s);
double sg_ddsketch_alpha(const struct sg_ddsketch *s);
/* Bytes the sketch holds (struct and bucket arrays). */
size_t sg_ddsketch_memory(const struct sg_ddsketch *s);

#endif
