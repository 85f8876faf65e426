/* Aggregate state of one numeric field: Welford's update for one value, Chan et al.'s formula
 * for merging two partial states, and first/last by event time. */
#include "agg.h"

#include <errno.h>
#include <math.h>

#include "streamgate/ddsketch.h"

void sg_agg_init(struct sg_agg *a, struct sg_ddsketch *sketch)
{
    a->count = 0;
    a->sum = 0.0;
    a->min = INFINITY;
    a->max = -INFINITY;
    a->mean = 0.0;
    a->m2 = 0.0;
    a->first = NAN;
    a->last = NAN;
    a->first_ts = 0;
    a->last_ts = 0;
    a->sketch = sketch;
}

void sg_agg_free(struct sg_agg *a)
{
    sg_ddsketch_destroy(a->sketch);
    a->sketch = NULL;
}

void sg_agg_add(struct sg_agg *a, double v, int64_t ts)
{
    sg_agg_add_counted(a, v, ts, NULL);
}

void sg_agg_add_counted(struct sg_agg *a, double v, int64_t ts, size_t *held)
{
    /* One infinity would turn mean and m2 into NaN for the rest of the window. */
    if (!isfinite(v))
        return;
    if (a->count == 0) {
        a->first = v;
        a->first_ts = ts;
        a->last = v;
        a->last_ts = ts;
    } else {
        if (ts < a->first_ts) {
            a->first = v;
            a->first_ts = ts;
        }
        if (ts >= a->last_ts) {
            a->last = v;
            a->last_ts = ts;
        }
    }
    a->count++;
    a->sum += v;
    if (v < a->min)
        a->min = v;
    if (v > a->max)
        a->max = v;
    double d = v - a->mean;
    a->mean += d / (double)a->count;
    a->m2 += d * (v - a->mean);
    /* The only failure is -ENOMEM when the sketch widens its range; the quantiles then miss
     * this value while every other statistic still counts it. */
    if (a->sketch != NULL)
        (void)sg_ddsketch_add_counted(a->sketch, v, held);
}

int sg_agg_merge(struct sg_agg *dst, const struct sg_agg *src)
{
    if ((dst->sketch == NULL) != (src->sketch == NULL))
        return -EINVAL;
    /* The sketch first: it is the only part that can fail, and dst must stay whole if it does. */
    if (dst->sketch != NULL) {
        int err = sg_ddsketch_merge(dst->sketch, src->sketch);
        if (err)
            return err;
    }
    if (src->count == 0)
        return 0;
    if (dst->count == 0) {
        dst->count = src->count;
        dst->sum = src->sum;
        dst->min = src->min;
        dst->max = src->max;
        dst->mean = src->mean;
        dst->m2 = src->m2;
        dst->first = src->first;
        dst->first_ts = src->first_ts;
        dst->last = src->last;
        dst->last_ts = src->last_ts;
        return 0;
    }

    double na = (double)dst->count, nb = (double)src->count;
    double n = na + nb;
    double d = src->mean - dst->mean;
    dst->mean += d * nb / n;
    dst->m2 += src->m2 + d * d * na * nb / n;
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    /* src arrived later: it wins ties for last and loses them for first. */
    if (src->first_ts < dst->first_ts) {
        dst->first = src->first;
        dst->first_ts = src->first_ts;
    }
    if (src->last_ts >= dst->last_ts) {
        dst->last = src->last;
        dst->last_ts = src->last_ts;
    }
    return 0;
}

double sg_agg_stddev(const struct sg_agg *a)
{
    if (a->count < 2 || !(a->m2 > 0.0))
        return 0.0;
    return sqrt(a->m2 / (double)a->count);
}
