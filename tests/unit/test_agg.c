#include <criterion/criterion.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/stream/agg.h"
#include "streamgate/ddsketch.h"

struct rng {
    uint64_t s;
};

static uint64_t rng_u64(struct rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_unit(struct rng *r)
{
    return ((double)(rng_u64(r) >> 11) + 0.5) / 9007199254740992.0;
}

static int close_to(double got, double want, double rel)
{
    return fabs(got - want) <= rel * fmax(1.0, fabs(want));
}

Test(agg, empty_state)
{
    struct sg_agg a;
    memset(&a, 0x5a, sizeof(a)); /* init must not rely on zeroed memory */
    sg_agg_init(&a, NULL);
    cr_expect_eq(a.count, 0);
    cr_expect_eq(a.sum, 0.0);
    cr_expect(isinf(a.min) && a.min > 0);
    cr_expect(isinf(a.max) && a.max < 0);
    cr_expect_eq(a.mean, 0.0);
    cr_expect_eq(a.m2, 0.0);
    cr_expect(isnan(a.first));
    cr_expect(isnan(a.last));
    cr_expect_null(a.sketch);
    cr_expect_eq(sg_agg_stddev(&a), 0.0);
    sg_agg_free(&a);
    sg_agg_free(&a); /* twice is harmless */
}

Test(agg, single_value)
{
    struct sg_agg a;
    sg_agg_init(&a, NULL);
    sg_agg_add(&a, -3.25, 1000);
    cr_expect_eq(a.count, 1);
    cr_expect_eq(a.sum, -3.25);
    cr_expect_eq(a.min, -3.25);
    cr_expect_eq(a.max, -3.25);
    cr_expect_eq(a.mean, -3.25);
    cr_expect_eq(a.m2, 0.0);
    cr_expect_eq(a.first, -3.25);
    cr_expect_eq(a.last, -3.25);
    cr_expect_eq(a.first_ts, 1000);
    cr_expect_eq(a.last_ts, 1000);
    cr_expect_eq(sg_agg_stddev(&a), 0.0);
    sg_agg_free(&a);
}

Test(agg, known_statistics)
{
    /* The textbook set: mean 5, population standard deviation exactly 2. */
    const double v[] = {2, 4, 4, 4, 5, 5, 7, 9};
    struct sg_agg a;
    sg_agg_init(&a, NULL);
    for (size_t i = 0; i < 8; i++)
        sg_agg_add(&a, v[i], (int64_t)i);
    cr_expect_eq(a.count, 8);
    cr_expect_eq(a.sum, 40.0);
    cr_expect_eq(a.min, 2.0);
    cr_expect_eq(a.max, 9.0);
    cr_expect_eq(a.mean, 5.0);
    cr_expect(close_to(a.m2, 32.0, 1e-15), "m2 %.17g", a.m2);
    cr_expect(close_to(sg_agg_stddev(&a), 2.0, 1e-15), "stddev %.17g", sg_agg_stddev(&a));
    cr_expect_eq(a.first, 2.0);
    cr_expect_eq(a.last, 9.0);
    sg_agg_free(&a);

    /* Two values: population (not sample) deviation, |a - b| / 2. */
    sg_agg_init(&a, NULL);
    sg_agg_add(&a, 1.0, 0);
    sg_agg_add(&a, 3.0, 0);
    cr_expect(close_to(sg_agg_stddev(&a), 1.0, 1e-15));
    sg_agg_free(&a);
}

/* Exact reference statistics by a two-pass computation in long double. */
static void reference(const double *v, size_t n, long double *mean, long double *m2)
{
    long double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    *mean = s / n;
    long double q = 0;
    for (size_t i = 0; i < n; i++)
        q += (v[i] - *mean) * (v[i] - *mean);
    *m2 = q;
}

Test(agg, welford_is_stable_with_a_large_offset)
{
    /* Values 1e9 + U(0, 1): the naive sum-of-squares formula loses every digit here. */
    const size_t n = 100000;
    double *v = malloc(n * sizeof(*v));
    struct rng r = {1};
    struct sg_agg a;
    sg_agg_init(&a, NULL);
    for (size_t i = 0; i < n; i++) {
        v[i] = 1e9 + rng_unit(&r);
        sg_agg_add(&a, v[i], (int64_t)i);
    }
    long double mean, m2;
    reference(v, n, &mean, &m2);
    cr_expect(close_to(a.mean, (double)mean, 1e-13), "mean %.17g vs %.17Lg", a.mean, mean);
    cr_expect(fabs(a.m2 - (double)m2) <= 1e-6 * (double)m2, "m2 %.17g vs %.17Lg", a.m2, m2);
    double sd = sqrtl(m2 / n);
    cr_expect(fabs(sg_agg_stddev(&a) - sd) <= 1e-6 * sd);
    /* U(0,1) has standard deviation 1/sqrt(12). */
    cr_expect(fabs(sg_agg_stddev(&a) - 0.288675) < 0.005);
    free(v);
    sg_agg_free(&a);
}

Test(agg, first_last_tie_rules)
{
    struct sg_agg a;
    sg_agg_init(&a, NULL);
    sg_agg_add(&a, 1.0, 10);
    sg_agg_add(&a, 2.0, 10); /* same time: first keeps the earlier arrival, last takes this */
    cr_expect_eq(a.first, 1.0);
    cr_expect_eq(a.last, 2.0);
    sg_agg_add(&a, 3.0, 5); /* earlier event time, arriving late */
    cr_expect_eq(a.first, 3.0);
    cr_expect_eq(a.first_ts, 5);
    cr_expect_eq(a.last, 2.0);
    cr_expect_eq(a.last_ts, 10);
    sg_agg_add(&a, 4.0, 5); /* ties the first: not taken */
    cr_expect_eq(a.first, 3.0);
    sg_agg_add(&a, 5.0, 10); /* ties the last: taken */
    cr_expect_eq(a.last, 5.0);
    sg_agg_add(&a, 6.0, 7); /* strictly between: neither */
    cr_expect_eq(a.first, 3.0);
    cr_expect_eq(a.last, 5.0);
    sg_agg_add(&a, 7.0, 11);
    cr_expect_eq(a.last, 7.0);
    cr_expect_eq(a.last_ts, 11);
    /* Negative and extreme timestamps order the same way. */
    sg_agg_add(&a, 8.0, INT64_MIN);
    cr_expect_eq(a.first, 8.0);
    cr_expect_eq(a.first_ts, INT64_MIN);
    sg_agg_add(&a, 9.0, INT64_MAX);
    cr_expect_eq(a.last, 9.0);
    cr_expect_eq(a.count, 9);
    sg_agg_free(&a);
}

Test(agg, non_finite_values_ignored)
{
    struct sg_agg a;
    sg_agg_init(&a, sg_ddsketch_create(0.01, 2048));
    cr_assert_not_null(a.sketch);
    sg_agg_add(&a, NAN, 1);
    sg_agg_add(&a, INFINITY, 2);
    sg_agg_add(&a, -INFINITY, 3);
    cr_expect_eq(a.count, 0);
    cr_expect(isnan(a.first));
    sg_agg_add(&a, 2.0, 4);
    sg_agg_add(&a, NAN, 5);
    cr_expect_eq(a.count, 1);
    cr_expect_eq(a.mean, 2.0);
    cr_expect_eq(a.last, 2.0);
    cr_expect_eq(sg_ddsketch_count(a.sketch), 1);
    sg_agg_free(&a);
    cr_expect_null(a.sketch);
}

static void expect_agg_equal(const struct sg_agg *got, const struct sg_agg *want, const char *what)
{
    cr_expect_eq(got->count, want->count, "%s: count", what);
    cr_expect_eq(got->min, want->min, "%s: min", what);
    cr_expect_eq(got->max, want->max, "%s: max", what);
    cr_expect(close_to(got->sum, want->sum, 1e-12), "%s: sum %.17g vs %.17g", what, got->sum,
              want->sum);
    cr_expect(close_to(got->mean, want->mean, 1e-12), "%s: mean %.17g vs %.17g", what, got->mean,
              want->mean);
    cr_expect(fabs(got->m2 - want->m2) <= 1e-9 * fmax(1.0, want->m2), "%s: m2 %.17g vs %.17g", what,
              got->m2, want->m2);
    cr_expect(got->first == want->first || (isnan(got->first) && isnan(want->first)),
              "%s: first %g vs %g", what, got->first, want->first);
    cr_expect(got->last == want->last || (isnan(got->last) && isnan(want->last)),
              "%s: last %g vs %g", what, got->last, want->last);
    if (want->count > 0) {
        cr_expect_eq(got->first_ts, want->first_ts, "%s: first_ts", what);
        cr_expect_eq(got->last_ts, want->last_ts, "%s: last_ts", what);
    }
    if (want->sketch != NULL) {
        cr_assert_not_null(got->sketch);
        cr_expect_eq(sg_ddsketch_count(got->sketch), sg_ddsketch_count(want->sketch));
        for (int i = 0; i <= 100; i++) {
            double x = sg_ddsketch_quantile(got->sketch, i / 100.0);
            double y = sg_ddsketch_quantile(want->sketch, i / 100.0);
            cr_expect(x == y || (isnan(x) && isnan(y)), "%s: q%d %g vs %g", what, i, x, y);
        }
    }
}

Test(agg, merge_equals_sequential)
{
    /* Values with repeated timestamps so the first/last tie rules matter across the split: the
     * earlier part goes to dst, the later to src, like two partial windows in arrival order. */
    const size_t n = 20000;
    double *v = malloc(n * sizeof(*v));
    int64_t *ts = malloc(n * sizeof(*ts));
    struct rng r = {2};
    for (size_t i = 0; i < n; i++) {
        v[i] = (rng_unit(&r) - 0.3) * 1000.0;
        ts[i] = (int64_t)(rng_u64(&r) % 50);
    }
    const size_t cuts[] = {0, 1, 2, 777, n / 2, n - 1, n};
    for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
        struct sg_agg all, a, b;
        sg_agg_init(&all, sg_ddsketch_create(0.01, 2048));
        sg_agg_init(&a, sg_ddsketch_create(0.01, 2048));
        sg_agg_init(&b, sg_ddsketch_create(0.01, 2048));
        for (size_t i = 0; i < n; i++) {
            sg_agg_add(&all, v[i], ts[i]);
            sg_agg_add(i < cuts[c] ? &a : &b, v[i], ts[i]);
        }
        cr_assert_eq(sg_agg_merge(&a, &b), 0);
        expect_agg_equal(&a, &all, "split");
        sg_agg_free(&all);
        sg_agg_free(&a);
        sg_agg_free(&b);
    }
    free(v);
    free(ts);
}

Test(agg, merge_many_parts)
{
    /* A window assembled from 100 partial states (hopping windows merge panes like this). */
    const size_t n = 10000, parts = 100;
    struct sg_agg all, acc, part;
    sg_agg_init(&all, NULL);
    sg_agg_init(&acc, NULL);
    struct rng r = {3};
    size_t i = 0;
    for (size_t p = 0; p < parts; p++) {
        sg_agg_init(&part, NULL);
        for (size_t k = 0; k < n / parts; k++, i++) {
            double v = 1e6 + 10.0 * rng_unit(&r);
            int64_t t = (int64_t)i / 3;
            sg_agg_add(&all, v, t);
            sg_agg_add(&part, v, t);
        }
        cr_assert_eq(sg_agg_merge(&acc, &part), 0);
        sg_agg_free(&part);
    }
    expect_agg_equal(&acc, &all, "parts");
    cr_expect(close_to(sg_agg_stddev(&acc), sg_agg_stddev(&all), 1e-9));
    sg_agg_free(&all);
    sg_agg_free(&acc);
}

Test(agg, merge_with_empty)
{
    struct sg_agg a, e, ref;
    sg_agg_init(&a, NULL);
    sg_agg_init(&ref, NULL);
    for (int i = 0; i < 10; i++) {
        sg_agg_add(&a, i * 1.5, 100 + i);
        sg_agg_add(&ref, i * 1.5, 100 + i);
    }
    /* Empty source: nothing changes. */
    sg_agg_init(&e, NULL);
    cr_assert_eq(sg_agg_merge(&a, &e), 0);
    expect_agg_equal(&a, &ref, "a+empty");
    cr_expect_eq(a.mean, ref.mean);
    cr_expect_eq(a.m2, ref.m2);
    /* Empty destination: becomes a copy. */
    cr_assert_eq(sg_agg_merge(&e, &a), 0);
    expect_agg_equal(&e, &ref, "empty+a");
    cr_expect_eq(e.mean, ref.mean);
    cr_expect_eq(e.m2, ref.m2);
    cr_expect_eq(e.first_ts, 100);
    cr_expect_eq(e.last_ts, 109);
    /* Both empty: still empty. */
    struct sg_agg x, y;
    sg_agg_init(&x, NULL);
    sg_agg_init(&y, NULL);
    cr_assert_eq(sg_agg_merge(&x, &y), 0);
    cr_expect_eq(x.count, 0);
    cr_expect(isinf(x.min) && x.min > 0);
    cr_expect(isinf(x.max) && x.max < 0);
    cr_expect(isnan(x.first) && isnan(x.last));
    cr_expect_eq(x.mean, 0.0);
    cr_expect_eq(x.m2, 0.0);
    sg_agg_free(&a);
    sg_agg_free(&e);
    sg_agg_free(&ref);
}

Test(agg, merge_first_last_ties)
{
    struct sg_agg dst, src;
    sg_agg_init(&dst, NULL);
    sg_agg_init(&src, NULL);
    sg_agg_add(&dst, 1.0, 10);
    sg_agg_add(&dst, 2.0, 20);
    sg_agg_add(&src, 3.0, 10);
    sg_agg_add(&src, 4.0, 20);
    /* Same times on both sides: src is the later arrival. */
    cr_assert_eq(sg_agg_merge(&dst, &src), 0);
    cr_expect_eq(dst.first, 1.0);
    cr_expect_eq(dst.last, 4.0);

    /* src strictly earlier first / strictly earlier last. */
    sg_agg_init(&src, NULL);
    sg_agg_add(&src, 5.0, 9);
    sg_agg_add(&src, 6.0, 19);
    cr_assert_eq(sg_agg_merge(&dst, &src), 0);
    cr_expect_eq(dst.first, 5.0);
    cr_expect_eq(dst.first_ts, 9);
    cr_expect_eq(dst.last, 4.0);
    cr_expect_eq(dst.last_ts, 20);
    cr_expect_eq(dst.count, 6);
    cr_expect_eq(dst.min, 1.0);
    cr_expect_eq(dst.max, 6.0);
    cr_expect_eq(dst.sum, 21.0);
    cr_expect_eq(dst.mean, 3.5);
    sg_agg_free(&dst);
    sg_agg_free(&src);
}

Test(agg, merge_sketch_mismatch)
{
    struct sg_agg with, without, other_alpha;
    sg_agg_init(&with, sg_ddsketch_create(0.01, 2048));
    sg_agg_init(&without, NULL);
    sg_agg_init(&other_alpha, sg_ddsketch_create(0.05, 2048));
    sg_agg_add(&with, 1.0, 1);
    sg_agg_add(&without, 2.0, 2);
    sg_agg_add(&other_alpha, 3.0, 3);

    cr_expect_eq(sg_agg_merge(&with, &without), -EINVAL);
    cr_expect_eq(sg_agg_merge(&without, &with), -EINVAL);
    cr_expect_eq(sg_agg_merge(&with, &other_alpha), -EINVAL);
    /* A refused merge leaves dst as it was. */
    cr_expect_eq(with.count, 1);
    cr_expect_eq(with.max, 1.0);
    cr_expect_eq(with.last, 1.0);
    cr_expect_eq(sg_ddsketch_count(with.sketch), 1);
    cr_expect_eq(without.count, 1);
    cr_expect_eq(without.sum, 2.0);
    sg_agg_free(&with);
    sg_agg_free(&without);
    sg_agg_free(&other_alpha);
}

Test(agg, sketch_receives_values)
{
    struct sg_agg a;
    sg_agg_init(&a, sg_ddsketch_create(0.01, 2048));
    for (int i = 1; i <= 1000; i++)
        sg_agg_add(&a, (double)i, i);
    cr_expect_eq(sg_ddsketch_count(a.sketch), 1000);
    double p50 = sg_ddsketch_quantile(a.sketch, 0.5); /* rank 499: the value 500 */
    cr_expect(fabs(p50 - 500.0) <= 5.0, "p50 %g", p50);
    double p99 = sg_ddsketch_quantile(a.sketch, 0.99); /* rank 989: the value 990 */
    cr_expect(fabs(p99 - 990.0) <= 9.9, "p99 %g", p99);
    sg_agg_free(&a);
}
