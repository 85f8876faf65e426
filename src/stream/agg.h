/* Mergeable aggregate state of one numeric field in one window: count, sum, min, max, mean and
 * variance (Welford's online algorithm, merged with Chan et al.'s parallel formula), first and
 * last value by event time, and optionally a quantile sketch. Merging two partial states gives
 * the state of the union of their inputs (up to floating-point rounding of sum/mean/m2). */
#ifndef STREAMGATE_AGG_H
#define STREAMGATE_AGG_H

#include <stddef.h>
#include <stdint.h>

struct sg_ddsketch;

struct sg_agg {
    uint64_t count;
    double sum;
    double min, max;
    double mean, m2; /* Welford: running mean and sum of squared deviations */
    double first, last;
    int64_t first_ts, last_ts;  /* event times of first and last */
    struct sg_ddsketch *sketch; /* owned; NULL when no quantiles are computed */
};

/* Sets `a` to the empty state; `sketch` (may be NULL) becomes owned by `a`. */
void sg_agg_init(struct sg_agg *a, struct sg_ddsketch *sketch);
/* Frees the sketch. */
void sg_agg_free(struct sg_agg *a);
/* Folds in one value observed at event time `ts`. Ties in time: `first` keeps the earlier
 * arrival, `last` takes the later one. NaN and infinities are ignored (one would poison mean and
 * variance for the rest of the window). */
void sg_agg_add(struct sg_agg *a, double v, int64_t ts);
/* The same, adding any change in the bytes the sketch allocated to *held (see
 * sg_ddsketch_add_counted). */
void sg_agg_add_counted(struct sg_agg *a, double v, int64_t ts, size_t *held);
/* dst := dst ∪ src. `src` is taken as the later-arriving part for first/last ties. Both
 * sketches must exist or both be NULL. Returns 0 or -EINVAL (mismatched sketches). */
int sg_agg_merge(struct sg_agg *dst, const struct sg_agg *src);
/* Population standard deviation (0 for fewer than two values). */
double sg_agg_stddev(const struct sg_agg *a);

#endif
