/* HyperLogLog distinct counting (Flajolet et al. 2007, with the small-range linear counting
 * correction of Heule et al. 2013), 2^precision one-byte registers, standard error about
 * 1.04 / sqrt(2^precision). Same-precision sketches merge exactly (register-wise max). */
#ifndef STREAMGATE_HLL_H
#define STREAMGATE_HLL_H

#include <stddef.h>
#include <stdint.h>

#include "streamgate/buf.h"

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

/* The stored form (README "Stored sketches"): version 1 is a byte 1, the precision p, then a
 * form byte: 0 (dense) and the 2^p registers, one byte each in order, or 1 (sparse) and a
 * LEB128 varint count of the non-zero registers followed by each one's index (the first as it
 * is, the next ones as the distance from the one before) as a varint and its value as a byte.
 * The encoder picks whichever is shorter. */
#define SG_HLL_ENCODING_VERSION 1

/* Appends the stored form of `h`. Returns 0, -ENOMEM or -E2BIG (the buffer is then unchanged). */
int sg_hll_encode(const struct sg_hll *h, struct sg_buf *out);

/* Reads a stored form from (buf, len) into `h` (initialised here; sg_hll_free it). Returns 0,
 * -EINVAL for anything that is not a valid stored form (a register past the largest possible
 * rank, an index out of range or out of order, trailing bytes), or -ENOMEM. Safe on any input. */
int sg_hll_decode(const void *buf, size_t len, struct sg_hll *h);

#endif
