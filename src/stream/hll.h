/* HyperLogLog distinct counting (Flajolet et al. 2007, with the small-range linear counting
 * correction of Heule et al. 2013), 2^precision one-byte registers, standard error about
 * 1.04 / sqrt(2^precision). Same-precision sketches merge exactly (register-wise max). */
#ifndef STREAMGATE_HLL_H
#define STREAMGATE_HLL_H

#include <stddef.h>
#include <stdint.h>

#define SG_HLL_MIN_PRECISION 4
#define SG_HLL_MAX_PRECISION 16

struct sg_hll {
    uint8_t precision;
    uint8_t *registers; /* 2^precision */
};

/* Returns 0, -EINVAL for a precision outside [4, 16], or -ENOMEM. */
int sg_hll_init(struct sg_hll *h, unsigned precision);
void sg_hll_free(struct sg_hll *h);
void sg_hll_add_hash(struct sg_hll *h, uint64_t hash);
void sg_hll_add(struct sg_hll *h, const void *data, size_t len);
/* dst := dst ∪ src. Returns 0 or -EINVAL when the precisions differ. */
int sg_hll_merge(struct sg_hll *dst, const struct sg_hll *src);
double sg_hll_estimate(const struct sg_hll *h);

#endif
