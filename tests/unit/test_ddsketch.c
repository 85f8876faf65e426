#include <criterion/criterion.h>

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/common.h"
#include "streamgate/ddsketch.h"

static const double quantiles[] = {0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1};
#define NQ (sizeof(quantiles) / sizeof(quantiles[0]))

/* Relative error allowed on top of alpha: values that sit exactly on a bucket boundary reach
 * alpha itself, and log/exp rounding may add a few ulps. */
#define ROUNDING 1e-12

/* A small deterministic generator (splitmix64), so every run tests the same data. */
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

/* Uniform in (0, 1). */
static double rng_unit(struct rng *r)
{
    return ((double)(rng_u64(r) >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(struct rng *r)
{
    return sqrt(-2.0 * log(rng_unit(r))) * cos(2.0 * M_PI * rng_unit(r));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The exact value at the sketch's rank definition: sorted[floor(q * (n - 1))]. */
static double exact_quantile(const double *sorted, size_t n, double q)
{
    return sorted[(size_t)floor(q * (double)(n - 1))];
}

/* Enough bins that none of the test distributions collapses: the bound holds only for buckets
 * that were not collapsed. */
#define WIDE_BINS (1u << 17)

/* A sketch of v[0..n), which is then sorted for the exact quantiles. */
static struct sg_ddsketch *sketch_of(const char *name, double *v, size_t n, double alpha,
                                     uint32_t max_bins)
{
    struct sg_ddsketch *s = sg_ddsketch_create(alpha, max_bins);
    cr_assert_not_null(s);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(sg_ddsketch_add(s, v[i]), 0);
    cr_assert_eq(sg_ddsketch_count(s), n, "%s: count", name);
    qsort(v, n, sizeof(*v), cmp_double);
    return s;
}

/* Builds a sketch of v[0..n) and checks every quantile against the sorted data. */
static void check_quantiles_bins(const char *name, double *v, size_t n, double alpha,
                                 uint32_t max_bins)
{
    struct sg_ddsketch *s = sketch_of(name, v, n, alpha, max_bins);
    for (size_t i = 0; i < NQ; i++) {
        double want = exact_quantile(v, n, quantiles[i]);
        double got = sg_ddsketch_quantile(s, quantiles[i]);
        if (fabs(want) < SG_DDSKETCH_MIN_VALUE) {
            cr_expect_eq(got, 0.0, "%s q=%g: want 0, got %.17g", name, quantiles[i], got);
            continue;
        }
        double err = fabs(got - want) / fabs(want);
        cr_expect(err <= alpha + ROUNDING, "%s n=%zu q=%g: want %.17g, got %.17g (error %.6f)",
                  name, n, quantiles[i], want, got, err);
    }
    sg_ddsketch_destroy(s);
}

static void check_quantiles(const char *name, double *v, size_t n, double alpha)
{
    check_quantiles_bins(name, v, n, alpha, WIDE_BINS);
}

static double *gen(const char *dist, size_t n, uint64_t seed)
{
    struct rng r = {seed};
    double *v = malloc(n * sizeof(*v));
    cr_assert_not_null(v);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(dist, "uniform") == 0)
            v[i] = 1000.0 * rng_unit(&r);
        else if (strcmp(dist, "exponential") == 0)
            v[i] = -log(rng_unit(&r)) * 50.0;
        else if (strcmp(dist, "pareto") == 0)
            v[i] = 1.0 / pow(rng_unit(&r), 1.0 / 1.2); /* alpha 1.2: heavy tail to ~1e6 */
        else if (strcmp(dist, "lognormal") == 0)
            v[i] = exp(2.0 * rng_normal(&r));
        else if (strcmp(dist, "mixed") == 0) {
            /* A third negative, a tenth exactly zero, some tiny magnitudes below the zero
             * threshold, and a wide spread of positives. */
            uint64_t k = rng_u64(&r) % 30;
            if (k < 3)
                v[i] = 0.0;
            else if (k < 4)
                v[i] = (rng_unit(&r) - 0.5) * 1e-10;
            else if (k < 14)
                v[i] = -exp(6.0 * rng_normal(&r));
            else
                v[i] = exp(6.0 * rng_normal(&r));
        } else if (strcmp(dist, "micro") == 0)
            v[i] = 1e-6 * (1.0 + rng_unit(&r)); /* small but above the zero threshold */
        else if (strcmp(dist, "narrow") == 0) {
            /* Like streamgate-gen's sensor value: a level, noise of +/- 2 in hundredths, and a
             * spike of +50..100 about once in 200. */
            double x = 50.0 + (double)(rng_u64(&r) % 401) / 100.0 - 2.0;
            if (rng_u64(&r) % 200 == 0)
                x += 50.0 + (double)(rng_u64(&r) % 5000) / 100.0;
            v[i] = x;
        } else if (strcmp(dist, "narrow_negative") == 0)
            v[i] = -20.0 + (double)(rng_u64(&r) % 61) / 100.0 - 0.3;
        else if (strcmp(dist, "negative") == 0)
            v[i] = -exp(2.0 * rng_normal(&r));
        else if (strcmp(dist, "zeros_narrow") == 0) {
            /* A tenth zeros, the rest +/- 5 with small noise: both stores narrow. */
            uint64_t k = rng_u64(&r) % 10;
            double x = 5.0 + (double)(rng_u64(&r) % 21) / 100.0 - 0.1;
            v[i] = k == 0 ? 0.0 : k < 5 ? -x : x;
        } else if (strcmp(dist, "integers") == 0)
            v[i] = 1e6 + (double)(rng_u64(&r) % 1000); /* a sequence number within a window */
        else
            cr_assert_fail("unknown distribution %s", dist);
    }
    return v;
}

static void check_dist(const char *dist, size_t n, double alpha)
{
    double *v = gen(dist, n, 0x5eed + n);
    check_quantiles(dist, v, n, alpha);
    free(v);
}

Test(ddsketch, uniform)
{
    check_dist("uniform", 100000, 0.01);
}

Test(ddsketch, exponential)
{
    check_dist("exponential", 100000, 0.01);
}

Test(ddsketch, pareto_heavy_tail)
{
    check_dist("pareto", 100000, 0.01);
}

Test(ddsketch, lognormal)
{
    check_dist("lognormal", 100000, 0.01);
}

Test(ddsketch, negatives_and_zeros)
{
    check_dist("mixed", 100000, 0.01);
}

Test(ddsketch, micro_values)
{
    check_dist("micro", 10000, 0.01);
}

Test(ddsketch, other_alphas)
{
    const double alphas[] = {0.001, 0.02, 0.05, 0.2, 0.5};
    for (size_t i = 0; i < sizeof(alphas) / sizeof(alphas[0]); i++) {
        check_dist("lognormal", 20000, alphas[i]);
        check_dist("mixed", 20000, alphas[i]);
    }
}

Test(ddsketch, constant)
{
    const double constants[] = {42.0, -42.0, 1.0, 1e-9, 1e300, -7.5e-5};
    for (size_t c = 0; c < sizeof(constants) / sizeof(constants[0]); c++) {
        double v[1000];
        for (size_t i = 0; i < 1000; i++)
            v[i] = constants[c];
        check_quantiles("constant", v, 1000, 0.01);
    }
    double zeros[10] = {0};
    check_quantiles("zeros", zeros, 10, 0.01);
}

Test(ddsketch, tiny_counts)
{
    double one[] = {3.5};
    check_quantiles("one", one, 1, 0.01);
    double two[] = {100.0, -2.0};
    check_quantiles("two", two, 2, 0.01);
    double three[] = {7.0, 0.0, 1e6};
    check_quantiles("three", three, 3, 0.01);
    double three_neg[] = {-7.0, -1e-3, -1e6};
    check_quantiles("three_neg", three_neg, 3, 0.01);

    /* With two values the median is the lower one (rank floor(0.5 * 1) = 0). */
    struct sg_ddsketch *s = sg_ddsketch_create(0.01, 2048);
    cr_assert_not_null(s);
    sg_ddsketch_add(s, 10.0);
    sg_ddsketch_add(s, 1000.0);
    cr_expect(fabs(sg_ddsketch_quantile(s, 0.5) - 10.0) <= 0.1);
    cr_expect(fabs(sg_ddsketch_quantile(s, 0.999) - 10.0) <= 0.1);
    cr_expect(fabs(sg_ddsketch_quantile(s, 1.0) - 1000.0) <= 10.0);
    sg_ddsketch_destroy(s);
}

Test(ddsketch, default_bins_cover_realistic_ranges)
{
    /* 2048 buckets at alpha 0.01 (35 per factor of two) span a factor 2^(2048 / 35) = 4e17:
     * 1e-3 .. 1e12 fits. */
    const size_t n = 100000;
    struct rng r = {11};
    double *v = malloc(n * sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = (i % 2 ? 1 : -1) * pow(10.0, -3.0 + 15.0 * rng_unit(&r));
    check_quantiles_bins("default bins", v, n, SG_DDSKETCH_DEFAULT_ALPHA,
                         SG_DDSKETCH_DEFAULT_MAX_BINS);
    free(v);
}

Test(ddsketch, large_count)
{
    check_dist("lognormal", 1000000, 0.01);
    check_dist("mixed", 1000000, 0.01);
}

Test(ddsketch, empty_and_out_of_range_q)
{
    struct sg_ddsketch *s = sg_ddsketch_create(0.01, 2048);
    cr_assert_not_null(s);
    cr_expect(isnan(sg_ddsketch_quantile(s, 0.5)));
    cr_expect_eq(sg_ddsketch_count(s), 0);
    sg_ddsketch_add(s, 5.0);
    sg_ddsketch_add(s, 50.0);
    /* q outside [0, 1] is clamped; a NaN q has no answer. */
    cr_expect_eq(sg_ddsketch_quantile(s, -1.0), sg_ddsketch_quantile(s, 0.0));
    cr_expect_eq(sg_ddsketch_quantile(s, 2.0), sg_ddsketch_quantile(s, 1.0));
    cr_expect(isnan(sg_ddsketch_quantile(s, NAN)));
    sg_ddsketch_destroy(s);
}

Test(ddsketch, ignores_nan_and_inf)
{
    struct sg_ddsketch *s = sg_ddsketch_create(0.01, 2048);
    cr_assert_not_null(s);
    size_t before = sg_ddsketch_memory(s);
    cr_expect_eq(sg_ddsketch_add(s, NAN), 0);
    cr_expect_eq(sg_ddsketch_add(s, INFINITY), 0);
    cr_expect_eq(sg_ddsketch_add(s, -INFINITY), 0);
    cr_expect_eq(sg_ddsketch_count(s), 0);
    cr_expect_eq(sg_ddsketch_memory(s), before);
    cr_expect(isnan(sg_ddsketch_quantile(s, 0.5)));
    sg_ddsketch_add(s, 2.0);
    sg_ddsketch_add(s, NAN);
    cr_expect_eq(sg_ddsketch_count(s), 1);
    cr_expect(fabs(sg_ddsketch_quantile(s, 1.0) - 2.0) <= 0.02);
    sg_ddsketch_destroy(s);
}

Test(ddsketch, extreme_magnitudes)
{
    /* The largest and smallest finite magnitudes, the zero threshold on both sides, and
     * subnormals (counted as zero). */
    double v[] = {DBL_MAX, -DBL_MAX, 1e-9, -1e-9, 9.9e-10, -9.9e-10, 4.9e-324, -0.0, 1.0};
    check_quantiles("extremes", v, sizeof(v) / sizeof(v[0]), 0.01);
    struct sg_ddsketch *s = sg_ddsketch_create(0.01, 2048);
    sg_ddsketch_add(s, DBL_MAX);
    cr_expect(isfinite(sg_ddsketch_quantile(s, 1.0)));
    sg_ddsketch_destroy(s);
}

Test(ddsketch, create_rejects_bad_parameters)
{
    cr_expect_null(sg_ddsketch_create(0.0, 2048));
    cr_expect_null(sg_ddsketch_create(1.0, 2048));
    cr_expect_null(sg_ddsketch_create(-0.01, 2048));
    cr_expect_null(sg_ddsketch_create(1.5, 2048));
    cr_expect_null(sg_ddsketch_create(NAN, 2048));
    cr_expect_null(sg_ddsketch_create(INFINITY, 2048));
    cr_expect_null(sg_ddsketch_create(0.01, 15));
    cr_expect_null(sg_ddsketch_create(0.01, 0));
    struct sg_ddsketch *s = sg_ddsketch_create(0.01, 16);
    cr_expect_not_null(s);
    cr_expect_eq(sg_ddsketch_alpha(s), 0.01);
    sg_ddsketch_destroy(s);
    sg_ddsketch_destroy(NULL);
}

/* Quantiles and counts of two sketches must match exactly. */
static void expect_same(const struct sg_ddsketch *a, const struct sg_ddsketch *b, const char *what)
{
    cr_expect_eq(sg_ddsketch_count(a), sg_ddsketch_count(b), "%s: count", what);
    for (int i = 0; i <= 1000; i++) {
        double q = i / 1000.0;
        double x = sg_ddsketch_quantile(a, q), y = sg_ddsketch_quantile(b, q);
        cr_expect(x == y || (isnan(x) && isnan(y)), "%s: q=%g %.17g != %.17g", what, q, x, y);
    }
}

static void check_merge_law(const double *v, size_t n, uint32_t max_bins)
{
    /* Splits: empty/all, one value, halves, interleaved, and a three-way split. */
    const size_t cuts[] = {0, 1, n / 3, n / 2, n - 1, n};
    struct sg_ddsketch *all = sg_ddsketch_create(0.01, max_bins);
    cr_assert_not_null(all);
    for (size_t i = 0; i < n; i++)
        sg_ddsketch_add(all, v[i]);

    for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
        struct sg_ddsketch *a = sg_ddsketch_create(0.01, max_bins);
        struct sg_ddsketch *b = sg_ddsketch_create(0.01, max_bins);
        for (size_t i = 0; i < n; i++)
            sg_ddsketch_add(i < cuts[c] ? a : b, v[i]);
        cr_assert_eq(sg_ddsketch_merge(a, b), 0);
        expect_same(a, all, "a+b");
        /* And the other way round. */
        struct sg_ddsketch *a2 = sg_ddsketch_create(0.01, max_bins);
        for (size_t i = 0; i < cuts[c]; i++)
            sg_ddsketch_add(a2, v[i]);
        cr_assert_eq(sg_ddsketch_merge(b, a2), 0);
        expect_same(b, all, "b+a");
        sg_ddsketch_destroy(a);
        sg_ddsketch_destroy(b);
        sg_ddsketch_destroy(a2);
    }

    struct sg_ddsketch *parts[3];
    for (int p = 0; p < 3; p++)
        parts[p] = sg_ddsketch_create(0.01, max_bins);
    for (size_t i = 0; i < n; i++)
        sg_ddsketch_add(parts[i % 3], v[i]);
    cr_assert_eq(sg_ddsketch_merge(parts[2], parts[0]), 0);
    cr_assert_eq(sg_ddsketch_merge(parts[1], parts[2]), 0);
    expect_same(parts[1], all, "three-way");
    for (int p = 0; p < 3; p++)
        sg_ddsketch_destroy(parts[p]);
    sg_ddsketch_destroy(all);
}

Test(ddsketch, merge_equals_union)
{
    double *v = gen("mixed", 50000, 7);
    check_merge_law(v, 50000, SG_DDSKETCH_DEFAULT_MAX_BINS);
    free(v);
    v = gen("pareto", 20000, 8);
    check_merge_law(v, 20000, SG_DDSKETCH_DEFAULT_MAX_BINS);
    free(v);
}

Test(ddsketch, merge_equals_union_with_collapsing)
{
    /* The final buckets depend only on the values, not the order or grouping, so the law holds
     * even when the lowest buckets were collapsed. */
    double *v = gen("mixed", 30000, 9);
    check_merge_law(v, 30000, 64);
    check_merge_law(v, 30000, 16);
    free(v);
    /* Sorted input: every new value raises the highest index. */
    v = gen("lognormal", 20000, 10);
    qsort(v, 20000, sizeof(*v), cmp_double);
    check_merge_law(v, 20000, 32);
    free(v);
}

Test(ddsketch, merge_disjoint_ranges)
{
    /* src entirely above, then entirely below dst: the store widens in both directions. */
    struct sg_ddsketch *a = sg_ddsketch_create(0.01, 2048);
    struct sg_ddsketch *b = sg_ddsketch_create(0.01, 2048);
    struct sg_ddsketch *c = sg_ddsketch_create(0.01, 2048);
    struct sg_ddsketch *all = sg_ddsketch_create(0.01, 2048);
    for (int i = 1; i <= 100; i++) {
        sg_ddsketch_add(a, i);
        sg_ddsketch_add(b, i * 1e6);
        sg_ddsketch_add(c, i * 1e-6);
        sg_ddsketch_add(all, i);
        sg_ddsketch_add(all, i * 1e6);
        sg_ddsketch_add(all, i * 1e-6);
    }
    cr_assert_eq(sg_ddsketch_merge(a, b), 0);
    cr_assert_eq(sg_ddsketch_merge(a, c), 0);
    expect_same(a, all, "disjoint");
    sg_ddsketch_destroy(a);
    sg_ddsketch_destroy(b);
    sg_ddsketch_destroy(c);
    sg_ddsketch_destroy(all);
}

Test(ddsketch, merge_empty_and_self)
{
    struct sg_ddsketch *a = sg_ddsketch_create(0.01, 2048);
    struct sg_ddsketch *e = sg_ddsketch_create(0.01, 2048);
    struct sg_ddsketch *ref = sg_ddsketch_create(0.01, 2048);
    for (int i = -50; i <= 50; i++) {
        sg_ddsketch_add(a, i * 3.0);
        sg_ddsketch_add(ref, i * 3.0);
    }
    cr_assert_eq(sg_ddsketch_merge(a, e), 0);
    expect_same(a, ref, "a+empty");
    cr_assert_eq(sg_ddsketch_merge(e, a), 0);
    expect_same(e, ref, "empty+a");
    /* Self-merge doubles every count. */
    for (int i = -50; i <= 50; i++)
        sg_ddsketch_add(ref, i * 3.0);
    cr_assert_eq(sg_ddsketch_merge(a, a), 0);
    expect_same(a, ref, "a+a");
    sg_ddsketch_destroy(a);
    sg_ddsketch_destroy(e);
    sg_ddsketch_destroy(ref);
}

Test(ddsketch, merge_alpha_mismatch)
{
    struct sg_ddsketch *a = sg_ddsketch_create(0.01, 2048);
    struct sg_ddsketch *b = sg_ddsketch_create(0.02, 2048);
    struct sg_ddsketch *c = sg_ddsketch_create(0.01 + 1e-15, 2048);
    sg_ddsketch_add(a, 1.0);
    sg_ddsketch_add(b, 2.0);
    sg_ddsketch_add(c, 3.0);
    cr_expect_eq(sg_ddsketch_merge(a, b), -EINVAL);
    cr_expect_eq(sg_ddsketch_merge(b, a), -EINVAL);
    cr_expect_eq(sg_ddsketch_merge(a, c), -EINVAL);
    cr_expect_eq(sg_ddsketch_count(a), 1);
    cr_expect(fabs(sg_ddsketch_quantile(a, 1.0) - 1.0) <= 0.01);
    sg_ddsketch_destroy(a);
    sg_ddsketch_destroy(b);
    sg_ddsketch_destroy(c);
}

Test(ddsketch, collapsing_keeps_count_and_high_quantiles)
{
    /* 1e-6 .. 1e9 spans about 1744 buckets at alpha 0.01; with 128 bins only the top 128
     * buckets (a factor of 2^(128 / 35) = 12.6: from 8e7 up) stay exact. */
    const size_t n = 200000;
    struct rng r = {77};
    double *v = malloc(n * sizeof(*v));
    struct sg_ddsketch *s = sg_ddsketch_create(0.01, 128);
    cr_assert_not_null(s);
    for (size_t i = 0; i < n; i++) {
        v[i] = pow(10.0, -6.0 + 15.0 * rng_unit(&r));
        cr_assert_eq(sg_ddsketch_add(s, v[i]), 0);
    }
    cr_expect_eq(sg_ddsketch_count(s), n);
    qsort(v, n, sizeof(*v), cmp_double);
    const double high[] = {0.95, 0.99, 0.999, 1.0};
    for (size_t i = 0; i < sizeof(high) / sizeof(high[0]); i++) {
        double want = exact_quantile(v, n, high[i]);
        double got = sg_ddsketch_quantile(s, high[i]);
        cr_expect(fabs(got - want) <= (0.01 + ROUNDING) * want, "q=%g: want %g got %g", high[i],
                  want, got);
    }
    /* The low quantiles land in the collapsed bucket: too high, but never above the kept
     * range, and monotone in q. */
    double prev = -INFINITY;
    for (int i = 0; i <= 100; i++) {
        double got = sg_ddsketch_quantile(s, i / 100.0);
        cr_expect(got >= prev, "quantiles not monotone at q=%d%%", i);
        prev = got;
    }
    /* Memory is bounded by max_bins (plus slack), not by the range. */
    cr_expect_leq(sg_ddsketch_memory(s), 100 + (128 + 32) * sizeof(uint64_t));
    free(v);
    sg_ddsketch_destroy(s);
}

Test(ddsketch, collapsing_negative_store)
{
    /* Negative values collapse their smallest magnitudes; the most negative stay exact. */
    const size_t n = 50000;
    struct rng r = {78};
    double *v = malloc(n * sizeof(*v));
    struct sg_ddsketch *s = sg_ddsketch_create(0.01, 32);
    for (size_t i = 0; i < n; i++) {
        v[i] = -pow(10.0, -3.0 + 9.0 * rng_unit(&r));
        sg_ddsketch_add(s, v[i]);
    }
    cr_expect_eq(sg_ddsketch_count(s), n);
    qsort(v, n, sizeof(*v), cmp_double);
    const double low[] = {0.0, 0.001, 0.01};
    for (size_t i = 0; i < sizeof(low) / sizeof(low[0]); i++) {
        double want = exact_quantile(v, n, low[i]);
        double got = sg_ddsketch_quantile(s, low[i]);
        cr_expect(fabs(got - want) <= (0.01 + ROUNDING) * fabs(want), "q=%g: want %g got %g",
                  low[i], want, got);
    }
    free(v);
    sg_ddsketch_destroy(s);
}

Test(ddsketch, collapsing_descending_input)
{
    /* Values arriving from high to low: new indices below the kept span go straight into the
     * lowest kept bucket. */
    struct sg_ddsketch *s = sg_ddsketch_create(0.01, 16);
    struct sg_ddsketch *asc = sg_ddsketch_create(0.01, 16);
    for (int i = 1000; i >= 1; i--)
        sg_ddsketch_add(s, (double)i);
    for (int i = 1; i <= 1000; i++)
        sg_ddsketch_add(asc, (double)i);
    cr_expect_eq(sg_ddsketch_count(s), 1000);
    expect_same(s, asc, "descending vs ascending");
    cr_expect(fabs(sg_ddsketch_quantile(s, 1.0) - 1000.0) <= 10.0);
    cr_expect(fabs(sg_ddsketch_quantile(s, 0.99) - 990.0) <= 9.9 + 1e-9);
    sg_ddsketch_destroy(s);
    sg_ddsketch_destroy(asc);
}

/* The index mapping, restated from its definition (see src/stream/ddsketch.c) rather than
 * taken from the implementation: a magnitude m = 2^e (1 + s), 0 <= s < 1, is in bucket
 * mult * e + ceil(mult * P(s)), P(s) = (6/35) s^3 - (3/5) s^2 + (10/7) s, where mult is the
 * smallest whole number of buckets per factor of two at least 0.7 / ln(gamma) (with a margin of
 * 1e-9 against rounding). Bucket i holds (U(i - 1), U(i)], U(j) = 2^floor(j / mult) *
 * (1 + P^-1((j mod mult) / mult)), and is estimated by the harmonic mean of its bounds. The
 * polynomial is evaluated in the same order as the implementation so that indices agree
 * exactly; the inverse is found by bisection here (Newton's method there). */
static double ref_cubic(double s)
{
    return ((6.0 / 35.0 * s + -3.0 / 5.0) * s + 10.0 / 7.0) * s;
}

static uint32_t ref_mult(double alpha)
{
    return (uint32_t)ceil(0.7 / (log1p(alpha) - log1p(-alpha)) * (1.0 + 1e-9));
}

static int64_t ref_index(uint32_t mult, double mag)
{
    int e;
    double f = frexp(mag, &e); /* mag = f 2^e, f in [0.5, 1) */
    return (int64_t)mult * (e - 1) + (int64_t)ceil((double)mult * ref_cubic(2.0 * f - 1.0));
}

static double ref_cubic_inverse(double y)
{
    double lo = 0.0, hi = 1.0;
    for (int k = 0; k < 200 && lo < hi; k++) {
        double mid = (lo + hi) / 2.0;
        if (mid <= lo || mid >= hi)
            break;
        if (ref_cubic(mid) < y)
            lo = mid;
        else
            hi = mid;
    }
    return (lo + hi) / 2.0;
}

static double ref_bound(uint32_t mult, int64_t j)
{
    int64_t e = j >= 0 ? j / mult : -((-j + mult - 1) / mult);
    return ldexp(1.0 + ref_cubic_inverse((double)(j - e * mult) / mult), (int)e);
}

static double ref_estimate(uint32_t mult, int64_t i)
{
    double lo = ref_bound(mult, i - 1), hi = ref_bound(mult, i);
    return 2.0 * lo * hi / (lo + hi);
}

/* What the sketch must hold, computed independently: a value of bucket index i ends up in
 * bucket max(i, hi - max_bins + 1), where hi is its store's highest index. */
struct model {
    uint32_t mult;
    uint32_t max_bins;
    int64_t hi_pos, hi_neg;
};

static int64_t model_index(const struct model *m, double mag)
{
    return ref_index(m->mult, mag);
}

static double model_estimate(const struct model *m, double v)
{
    if (fabs(v) < SG_DDSKETCH_MIN_VALUE)
        return 0.0;
    int64_t hi = v > 0 ? m->hi_pos : m->hi_neg;
    int64_t i = model_index(m, fabs(v));
    if (i < hi - (int64_t)m->max_bins + 1)
        i = hi - (int64_t)m->max_bins + 1;
    double est = ref_estimate(m->mult, i);
    return v > 0 ? est : -est;
}

static void check_against_model(double *v, size_t n, double alpha, uint32_t max_bins,
                                const char *what)
{
    struct model m = {ref_mult(alpha), max_bins, INT64_MIN, INT64_MIN};
    struct sg_ddsketch *s = sg_ddsketch_create(alpha, max_bins);
    cr_assert_not_null(s);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(sg_ddsketch_add(s, v[i]), 0);
        if (fabs(v[i]) >= SG_DDSKETCH_MIN_VALUE) {
            int64_t *hi = v[i] > 0 ? &m.hi_pos : &m.hi_neg;
            int64_t idx = model_index(&m, fabs(v[i]));
            if (idx > *hi)
                *hi = idx;
        }
    }
    double *est = malloc(n * sizeof(*est));
    for (size_t i = 0; i < n; i++)
        est[i] = model_estimate(&m, v[i]);
    qsort(est, n, sizeof(*est), cmp_double);
    cr_expect_eq(sg_ddsketch_count(s), n, "%s: count", what);
    for (int k = 0; k <= 1000; k++) {
        double q = k / 1000.0;
        double want = est[(size_t)floor(q * (double)(n - 1))];
        double got = sg_ddsketch_quantile(s, q);
        cr_expect(fabs(got - want) <= 1e-12 * fabs(want), "%s: q=%g want %.17g got %.17g", what, q,
                  want, got);
    }
    free(est);
    sg_ddsketch_destroy(s);
}

Test(ddsketch, collapsing_matches_model)
{
    const size_t n = 20000;
    const uint32_t bins[] = {16, 17, 100, 1000};
    for (size_t b = 0; b < sizeof(bins) / sizeof(bins[0]); b++) {
        double *v = gen("mixed", n, 100 + b);
        check_against_model(v, n, 0.01, bins[b], "random order");
        qsort(v, n, sizeof(*v), cmp_double);
        check_against_model(v, n, 0.01, bins[b], "ascending");
        for (size_t i = 0; i < n / 2; i++) {
            double t = v[i];
            v[i] = v[n - 1 - i];
            v[n - 1 - i] = t;
        }
        check_against_model(v, n, 0.01, bins[b], "descending");
        /* Alternating ends: the store widens on both sides turn by turn. */
        double *w = malloc(n * sizeof(*w));
        for (size_t i = 0; i < n; i++)
            w[i] = v[i % 2 ? i / 2 : n - 1 - i / 2];
        check_against_model(w, n, 0.01, bins[b], "alternating");
        free(w);
        free(v);
    }
    double *v = gen("lognormal", n, 200);
    check_against_model(v, n, 0.2, 16, "alpha 0.2");
    free(v);
}

Test(ddsketch, largest_value_does_not_overflow)
{
    /* The top bucket's estimate may lie past DBL_MAX; it must come back finite and within
     * alpha of DBL_MAX. */
    const double alphas[] = {0.001, 0.01, 0.05, 0.2, 0.5, 0.9};
    for (size_t i = 0; i < sizeof(alphas) / sizeof(alphas[0]); i++) {
        struct sg_ddsketch *s = sg_ddsketch_create(alphas[i], 2048);
        sg_ddsketch_add(s, DBL_MAX);
        sg_ddsketch_add(s, -DBL_MAX);
        double hi = sg_ddsketch_quantile(s, 1.0), lo = sg_ddsketch_quantile(s, 0.0);
        cr_expect(isfinite(hi) && isfinite(lo), "alpha %g: %g %g", alphas[i], lo, hi);
        cr_expect(fabs(hi - DBL_MAX) <= alphas[i] * DBL_MAX, "alpha %g: %g", alphas[i], hi);
        cr_expect_eq(lo, -hi);
        sg_ddsketch_destroy(s);
    }
}

Test(ddsketch, memory_grows_with_range_not_count)
{
    struct sg_ddsketch *s = sg_ddsketch_create(0.01, 2048);
    cr_assert_not_null(s);
    size_t empty = sg_ddsketch_memory(s);
    cr_expect_leq(empty, 128, "an empty sketch holds %zu bytes (its heap chunk)", empty);

    /* A narrow range lives in the sketch's own allocation: the first value costs nothing more,
     * and neither do a million values in 100..101 (two buckets, whose counts pass 65535 and so
     * move to 4-byte counts, still in place). */
    sg_ddsketch_add(s, 100.0);
    cr_expect_eq(sg_ddsketch_memory(s), empty);
    for (int i = 0; i < 1000000; i++)
        sg_ddsketch_add(s, 100.0 + (i % 100) / 100.0);
    cr_expect_eq(sg_ddsketch_memory(s), empty);
    cr_expect_eq(sg_ddsketch_count(s), 1000001);

    /* Widening the range grows it: 1 .. 1e6 is 19.93 factors of two, 698 buckets of 4-byte
     * counts (those of 100 and 101 need them) plus slack. */
    for (double x = 1.0; x < 1e6; x *= 1.001)
        sg_ddsketch_add(s, x);
    size_t wide = sg_ddsketch_memory(s);
    cr_expect_geq(wide, empty + 698 * sizeof(uint32_t), "%zu", wide);
    cr_expect_leq(wide, empty + (698 + 32) * sizeof(uint32_t) + 32, "%zu (and its heap chunk)",
                  wide);
    /* ...but never past max_bins + slack per store. */
    cr_expect_leq(wide, empty + 2 * (2048 + 64) * sizeof(uint64_t));
    sg_ddsketch_destroy(s);

    /* Counts start at two bytes: 698 buckets of one value each. */
    s = sg_ddsketch_create(0.01, 2048);
    for (double x = 1.0; x < 1e6; x *= 1.001)
        sg_ddsketch_add(s, x);
    size_t small = sg_ddsketch_memory(s);
    cr_expect_geq(small, empty + 698 * sizeof(uint16_t), "%zu", small);
    cr_expect_leq(small, empty + (698 + 2 * 32) * sizeof(uint16_t), "%zu", small);
    sg_ddsketch_destroy(s);
}

/* The estimate the sketch gives for a single value. */
static double estimate_of(double alpha, double v)
{
    struct sg_ddsketch *s = sg_ddsketch_create(alpha, 2048);
    cr_assert_not_null(s);
    cr_assert_eq(sg_ddsketch_add(s, v), 0);
    double est = sg_ddsketch_quantile(s, 0.5);
    sg_ddsketch_destroy(s);
    return est;
}

Test(ddsketch, buckets_follow_the_mapping)
{
    /* Every power of two is the upper bound of its bucket: its estimate lies below it, the
     * estimate of the next double above it. This replaces the log_gamma mapping's "1.0 is in
     * bucket 0, estimated 2 / (gamma + 1)". */
    int bad = 0, first_bad = 0;
    for (int k = -29; k <= 1023; k++) {
        double p = ldexp(1.0, k), above = nextafter(p, INFINITY);
        double a = estimate_of(0.01, p), b = estimate_of(0.01, above);
        if (!(a < p && b > p) || fabs(a - p) > 0.01 * p || fabs(b - above) > 0.01 * above ||
            estimate_of(0.01, -p) != -a) {
            if (bad++ == 0)
                first_bad = k;
        }
    }
    cr_expect_eq(bad, 0, "%d powers of two are not bucket bounds, the first 2^%d", bad, first_bad);
    cr_expect(fabs(estimate_of(0.01, 1.0) - 0.99) < 0.01);
    /* ...and exactly the estimate the mapping's definition gives for its bucket. */
    uint32_t mult = ref_mult(0.01);
    double one = ref_estimate(mult, ref_index(mult, 1.0));
    cr_expect(fabs(estimate_of(0.01, 1.0) - one) <= ROUNDING * one, "got %.17g, want %.17g",
              estimate_of(0.01, 1.0), one);

    /* Each factor of two holds the same whole number of buckets: the smallest at least
     * 0.7 / ln(gamma), about 1% more than the ln(2) / ln(gamma) of exact logarithmic buckets
     * (35 against 34.66 at alpha = 0.01, which the header promises). */
    const double alphas[] = {0.001, 0.01, 0.02, 0.05, 0.2, 0.5};
    for (size_t a = 0; a < sizeof(alphas) / sizeof(alphas[0]); a++) {
        double lng = log1p(alphas[a]) - log1p(-alphas[a]);
        uint32_t want = (uint32_t)ceil(0.7 / lng);
        for (int e = -3; e <= 3; e += 3) {
            /* Distinct estimates over (2^e, 2^(e + 1)]; 2^e itself tops the bucket below. */
            uint32_t buckets = 0;
            double prev = 0.0;
            for (uint32_t j = 1; j <= (1u << 16); j++) {
                double est = estimate_of(alphas[a], ldexp(1.0 + j / 65536.0, e));
                buckets += est != prev;
                prev = est;
            }
            cr_expect_eq(buckets, want, "alpha %g, 2^%d: %u buckets", alphas[a], e, buckets);
        }
        cr_expect_leq(want, 0.7 / lng + 1.0);
        if (alphas[a] == 0.01)
            cr_expect_eq(want, 35);
    }
}

/* The guarantee, value by value: whatever bucket a value falls in, its estimate is within alpha,
 * and estimates never decrease as values grow. */
/* Criterion reports every assertion to its runner, which is slow in loops of 10^5: the loops
 * below count failures and assert once, naming the first. */
static void check_every_value(double alpha, double from, double to, size_t n)
{
    double prev = 0.0, first_v = 0.0, first_est = 0.0;
    double ratio = pow(to / from, 1.0 / (double)(n - 1));
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double v = i + 1 == n ? to : from * pow(ratio, (double)i);
        double est = estimate_of(alpha, v);
        if (fabs(est - v) > (alpha + ROUNDING) * v || est < prev) {
            if (bad++ == 0) {
                first_v = v;
                first_est = est;
            }
        }
        prev = est;
    }
    cr_expect_eq(bad, 0, "alpha %g: %zu values off, the first %.17g -> %.17g", alpha, bad, first_v,
                 first_est);
}

Test(ddsketch, every_value_within_alpha)
{
    check_every_value(0.01, 1.0, 4.0, 200000); /* a fine grid over two bucket periods */
    check_every_value(0.01, 1e-9, 1e300, 200000);
    check_every_value(0.01, 1e300, DBL_MAX, 1000);
    check_every_value(0.001, 0.5, 8.0, 100000);
    check_every_value(0.05, 1e-9, 1e12, 50000);
    check_every_value(0.5, 1e-9, 1e12, 50000);
    /* Random mantissas at every exponent. */
    struct rng r = {99};
    size_t bad = 0;
    for (int i = 0; i < 200000; i++) {
        double v = ldexp(1.0 + rng_unit(&r), -29 + (int)(rng_u64(&r) % 1052));
        double est = estimate_of(0.01, v);
        bad += fabs(est - v) > (0.01 + ROUNDING) * v;
    }
    cr_expect_eq(bad, 0, "%zu random values off", bad);
}

/* Every q of a fine grid (k / 1000) against the exact lower quantile. */
static void check_quantiles_grid(const char *name, double *v, size_t n, double alpha,
                                 uint32_t max_bins)
{
    struct sg_ddsketch *s = sketch_of(name, v, n, alpha, max_bins);
    int bad = 0;
    double first_q = 0, first_want = 0, first_got = 0;
    for (int k = 0; k <= 1000; k++) {
        double q = k / 1000.0;
        double want = exact_quantile(v, n, q), got = sg_ddsketch_quantile(s, q);
        bool ok = fabs(want) < SG_DDSKETCH_MIN_VALUE
                      ? got == 0.0
                      : fabs(got - want) <= (alpha + ROUNDING) * fabs(want);
        if (!ok && bad++ == 0) {
            first_q = q;
            first_want = want;
            first_got = got;
        }
    }
    cr_expect_eq(bad, 0, "%s alpha %g: %d quantiles off, the first q=%g want %.17g got %.17g", name,
                 alpha, bad, first_q, first_want, first_got);
    sg_ddsketch_destroy(s);
}

Test(ddsketch, accuracy_on_a_fine_q_grid)
{
    const char *dists[] = {"uniform",  "lognormal", "pareto",   "narrow",       "narrow_negative",
                           "negative", "mixed",     "integers", "zeros_narrow", "micro"};
    const double alphas[] = {0.01, 0.001, 0.05};
    for (size_t d = 0; d < sizeof(dists) / sizeof(dists[0]); d++) {
        for (size_t a = 0; a < sizeof(alphas) / sizeof(alphas[0]); a++) {
            double *v = gen(dists[d], 50000, 0xf1e + d);
            check_quantiles_grid(dists[d], v, 50000, alphas[a], WIDE_BINS);
            free(v);
        }
        /* Small samples too: the rank arithmetic at its edges. */
        for (size_t n = 1; n <= 7; n++) {
            double *v = gen(dists[d], n, 0xa11 + n);
            check_quantiles_grid(dists[d], v, n, 0.01, WIDE_BINS);
            free(v);
        }
    }
}

/* Quiet expect_same for loops: counts the quantiles that differ. */
static int count_different(const struct sg_ddsketch *a, const struct sg_ddsketch *b)
{
    int bad = sg_ddsketch_count(a) != sg_ddsketch_count(b);
    for (int i = 0; i <= 1000; i++) {
        double x = sg_ddsketch_quantile(a, i / 1000.0), y = sg_ddsketch_quantile(b, i / 1000.0);
        bad += !(x == y || (isnan(x) && isnan(y)));
    }
    return bad;
}

/* Splits v into `parts` random parts and merges them pairwise in a random order. */
static struct sg_ddsketch *merge_random_parts(const double *v, size_t n, size_t parts,
                                              uint32_t max_bins, struct rng *r)
{
    struct sg_ddsketch *p[16];
    cr_assert_leq(parts, 16);
    for (size_t i = 0; i < parts; i++)
        cr_assert_not_null(p[i] = sg_ddsketch_create(0.01, max_bins));
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(sg_ddsketch_add(p[rng_u64(r) % parts], v[i]), 0);
    while (parts > 1) {
        size_t a = rng_u64(r) % parts, b = rng_u64(r) % (parts - 1);
        if (b >= a)
            b++;
        cr_assert_eq(sg_ddsketch_merge(p[a], p[b]), 0);
        sg_ddsketch_destroy(p[b]);
        p[b] = p[--parts];
    }
    return p[0];
}

Test(ddsketch, merge_in_any_order)
{
    /* Narrow ranges live in the sketch's inline array, wider ones move to the heap, both signs
     * compete for the inline array, and with 16 bins everything collapses: the merged sketch
     * must equal the sketch of all the values every time. */
    const char *dists[] = {"narrow", "narrow_negative", "zeros_narrow", "mixed", "integers"};
    const uint32_t bins[] = {2048, 16};
    struct rng r = {4242};
    for (size_t d = 0; d < sizeof(dists) / sizeof(dists[0]); d++) {
        for (size_t b = 0; b < sizeof(bins) / sizeof(bins[0]); b++) {
            const size_t n = 20000;
            double *v = gen(dists[d], n, 0xbeef + d);
            struct sg_ddsketch *all = sg_ddsketch_create(0.01, bins[b]);
            for (size_t i = 0; i < n; i++)
                sg_ddsketch_add(all, v[i]);
            int bad = 0;
            for (int trial = 0; trial < 6; trial++) {
                struct sg_ddsketch *m =
                    merge_random_parts(v, n, 2 + (size_t)trial * 2, bins[b], &r);
                bad += count_different(m, all);
                sg_ddsketch_destroy(m);
            }
            cr_expect_eq(bad, 0, "%s, %u bins: %d quantiles differ", dists[d], bins[b], bad);
            sg_ddsketch_destroy(all);
            free(v);
        }
    }
}

Test(ddsketch, stores_share_the_inline_array)
{
    /* The order in which the signs first need an array, and whether the first one later
     * outgrows the inline array, decide which store holds it; the contents must not depend on
     * it. Each sequence is checked against the model and for the merge law. */
    const size_t n = 4000;
    double *v = malloc(n * sizeof(*v));
    struct rng r = {7};
    for (int pattern = 0; pattern < 4; pattern++) {
        for (size_t i = 0; i < n; i++) {
            double x = 5.0 + rng_unit(&r) * 0.2;
            switch (pattern) {
            case 0: /* narrow negatives first, then narrow positives */
                v[i] = i < n / 2 ? -x : x;
                break;
            case 1: /* narrow positives, which then widen, then narrow negatives */
                v[i] = i < n / 4 ? x : i < n / 2 ? x * pow(10.0, 6.0 * rng_unit(&r)) : -x;
                break;
            case 2: /* alternating signs */
                v[i] = i % 2 ? -x : x;
                break;
            default: /* a zero, then narrow negatives that widen, then positives */
                v[i] = i == 0 ? 0.0 : i < n / 2 ? -x * (i < n / 4 ? 1.0 : 1e3 * rng_unit(&r)) : x;
                break;
            }
        }
        check_against_model(v, n, 0.01, 2048, "inline array");
        check_against_model(v, n, 0.01, 16, "inline array, collapsing");
        check_merge_law(v, n, 2048);
        check_merge_law(v, n, 16);
    }
    free(v);
}

/* A sketch holding `count` copies of v (count >= 1), built by self-merges (each doubles every
 * count) and merges, so that counts past 2^32 cost a few dozen operations. */
static struct sg_ddsketch *sketch_of_copies(double v, uint64_t count, uint32_t max_bins)
{
    struct sg_ddsketch *acc = sg_ddsketch_create(0.01, max_bins);
    struct sg_ddsketch *pow2 = sg_ddsketch_create(0.01, max_bins);
    cr_assert(acc && pow2);
    cr_assert_eq(sg_ddsketch_add(pow2, v), 0);
    for (int k = 0; k < 64 && (count >> k) != 0; k++) {
        if ((count >> k) & 1)
            cr_assert_eq(sg_ddsketch_merge(acc, pow2), 0);
        if ((count >> k) > 1)
            cr_assert_eq(sg_ddsketch_merge(pow2, pow2), 0);
    }
    sg_ddsketch_destroy(pow2);
    cr_assert_eq(sg_ddsketch_count(acc), count);
    return acc;
}

static bool within(double got, double want, double alpha)
{
    return fabs(got - want) <= (alpha + ROUNDING) * fabs(want);
}

Test(ddsketch, counts_widen_past_16_bits)
{
    /* Through the add path: a bucket reaches 65535 and goes on, in the inline array and in a
     * heap array, and the collapse floor gathers more than 65535. */
    struct sg_ddsketch *s = sg_ddsketch_create(0.01, 2048);
    for (int i = 0; i < 65535; i++)
        sg_ddsketch_add(s, 42.0);
    sg_ddsketch_add(s, 1000.0); /* the span is now past the inline array */
    for (int i = 0; i < 70000; i++)
        cr_assert_eq(sg_ddsketch_add(s, 42.0), 0);
    sg_ddsketch_add(s, 43.0);
    cr_expect_eq(sg_ddsketch_count(s), 65535 + 1 + 70000 + 1);
    cr_expect(within(sg_ddsketch_quantile(s, 0.0), 42.0, 0.01));
    cr_expect(within(sg_ddsketch_quantile(s, 135534.0 / 135536.0), 42.0, 0.01)); /* the last 42 */
    cr_expect(within(sg_ddsketch_quantile(s, 1.0), 1000.0, 0.01));
    uint64_t count = sg_ddsketch_count(s);
    double q43 = (double)(count - 2) / (double)(count - 1); /* rank count - 2: the 43 */
    cr_expect(within(sg_ddsketch_quantile(s, q43), 43.0, 0.01), "%.17g",
              sg_ddsketch_quantile(s, q43));
    sg_ddsketch_destroy(s);

    /* Collapsing: 16 bins, 40000 values in each of two low buckets, then a value far above
     * folds both into the lowest kept bucket (80000 > 65535). */
    s = sg_ddsketch_create(0.01, 16);
    for (int i = 0; i < 40000; i++) {
        sg_ddsketch_add(s, 1.0);
        sg_ddsketch_add(s, 1.03);
    }
    sg_ddsketch_add(s, 1000.0);
    cr_expect_eq(sg_ddsketch_count(s), 80001);
    struct model m = {ref_mult(0.01), 16, ref_index(ref_mult(0.01), 1000.0), INT64_MIN};
    double floor_est = model_estimate(&m, 1.0);
    cr_expect_eq(sg_ddsketch_quantile(s, 0.0), floor_est);
    cr_expect_eq(sg_ddsketch_quantile(s, 0.9999), floor_est);
    cr_expect(within(sg_ddsketch_quantile(s, 1.0), 1000.0, 0.01));
    sg_ddsketch_destroy(s);

    /* And a long random mix against the model: a million copies of one value among others. */
    const size_t n = 1100000;
    double *v = malloc(n * sizeof(*v));
    struct rng r = {5};
    for (size_t i = 0; i < n; i++)
        v[i] = i % 11 == 0 ? exp(3.0 * rng_normal(&r)) : 5.0;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rng_u64(&r) % (i + 1);
        double t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
    check_against_model(v, n, 0.01, 2048, "a million copies");
    check_against_model(v, n, 0.01, 16, "a million copies, collapsing");
    free(v);
}

Test(ddsketch, counts_widen_past_32_bits)
{
    const uint64_t max32 = UINT32_MAX;
    /* A bucket at exactly 2^32 - 1 (it fits), then one more through the add path. */
    struct sg_ddsketch *s = sketch_of_copies(7.0, max32, 2048);
    size_t before = sg_ddsketch_memory(s);
    cr_assert_eq(sg_ddsketch_add(s, 7.0), 0);
    cr_expect_eq(sg_ddsketch_count(s), max32 + 1);
    cr_expect_gt(sg_ddsketch_memory(s), before, "8-byte counts live in a heap array");
    cr_assert_eq(sg_ddsketch_add(s, 7.0), 0);
    cr_assert_eq(sg_ddsketch_add(s, 700.0), 0);
    cr_expect_eq(sg_ddsketch_count(s), max32 + 3);
    cr_expect(within(sg_ddsketch_quantile(s, 0.0), 7.0, 0.01));
    cr_expect(within(sg_ddsketch_quantile(s, 0.999999), 7.0, 0.01));
    cr_expect(within(sg_ddsketch_quantile(s, 1.0), 700.0, 0.01));
    sg_ddsketch_destroy(s);

    /* Merging two buckets whose sum passes 2^32, and a sketch of 8-byte counts into one of
     * 2-byte counts and back: the union either way. */
    struct sg_ddsketch *a = sketch_of_copies(-3.0, max32 / 2 + 5, 2048);
    struct sg_ddsketch *b = sketch_of_copies(-3.0, max32 / 2 + 7, 2048);
    cr_assert_eq(sg_ddsketch_merge(a, b), 0);
    cr_expect_eq(sg_ddsketch_count(a), 2 * (max32 / 2) + 12);
    cr_assert_eq(sg_ddsketch_add(a, 1.0), 0);
    cr_expect(within(sg_ddsketch_quantile(a, 0.5), -3.0, 0.01));
    cr_expect(within(sg_ddsketch_quantile(a, 1.0), 1.0, 0.01));
    struct sg_ddsketch *big = sketch_of_copies(2.0, 3 * max32, 2048);
    struct sg_ddsketch *small1 = sg_ddsketch_create(0.01, 2048);
    struct sg_ddsketch *small2 = sg_ddsketch_create(0.01, 2048);
    double *v = gen("mixed", 5000, 3);
    for (size_t i = 0; i < 5000; i++) {
        sg_ddsketch_add(small1, v[i]);
        sg_ddsketch_add(small2, v[i]);
    }
    struct sg_ddsketch *big2 = sketch_of_copies(2.0, 3 * max32, 2048);
    cr_assert_eq(sg_ddsketch_merge(small1, big), 0);
    cr_assert_eq(sg_ddsketch_merge(big2, small2), 0);
    expect_same(small1, big2, "wide into narrow vs narrow into wide");
    cr_expect_eq(sg_ddsketch_count(small1), 3 * max32 + 5000);
    free(v);

    /* Collapsing into a bucket that then passes 2^32. */
    s = sketch_of_copies(1.0, max32 - 10, 16);
    struct sg_ddsketch *t = sketch_of_copies(1.03, 100, 16);
    cr_assert_eq(sg_ddsketch_merge(s, t), 0);
    cr_assert_eq(sg_ddsketch_add(s, 1e6), 0);
    cr_expect_eq(sg_ddsketch_count(s), max32 + 91);
    struct model m = {ref_mult(0.01), 16, ref_index(ref_mult(0.01), 1e6), INT64_MIN};
    cr_expect_eq(sg_ddsketch_quantile(s, 0.5), model_estimate(&m, 1.0));
    cr_expect(within(sg_ddsketch_quantile(s, 1.0), 1e6, 0.01));

    struct sg_ddsketch *all[] = {s, t, a, b, big, big2, small1, small2};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        sg_ddsketch_destroy(all[i]);
}

Test(ddsketch, tiny_alpha_is_clamped_not_broken)
{
    /* Below about 7e-7 the bucket indices of values far from 1 reach the clamp (as the log
     * mapping's did, and then the span collapses to max_bins): estimates stay finite and
     * ordered. Values near 1 keep their accuracy. */
    struct sg_ddsketch *s = sg_ddsketch_create(1e-9, 2048);
    cr_assert_not_null(s);
    const double v[] = {1e-9, 0.9, 1.0, 1.1, 1e300, -5.0, DBL_MAX};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        cr_assert_eq(sg_ddsketch_add(s, v[i]), 0);
    double prev = -INFINITY;
    for (int k = 0; k <= 100; k++) {
        double q = sg_ddsketch_quantile(s, k / 100.0);
        cr_expect(isfinite(q) && q >= prev, "q=%d%%: %g", k, q);
        prev = q;
    }
    sg_ddsketch_destroy(s);
    s = sg_ddsketch_create(1e-9, WIDE_BINS);
    const double near1[] = {0.9999999, 1.0, 1.0000001};
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(sg_ddsketch_add(s, near1[i]), 0);
    for (size_t i = 0; i < 3; i++)
        cr_expect(within(sg_ddsketch_quantile(s, i / 2.0), near1[i], 1e-9), "%.17g",
                  sg_ddsketch_quantile(s, i / 2.0));
    sg_ddsketch_destroy(s);
}

/* ---- running out of memory ----------------------------------------------------------------
 * malloc and calloc are replaced for this test program (glibc allows it; they forward to its
 * own), so that a chosen allocation fails. Not with AddressSanitizer, whose allocator must stay
 * in place: those tests are skipped there. */
#if defined(__SANITIZE_ADDRESS__)
#define FAIL_ALLOC 0
#else
#define FAIL_ALLOC 1
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
/* Allocations to let through before one fails; -1: none fails. */
static int alloc_fail_in = -1;

static bool alloc_should_fail(void)
{
    if (alloc_fail_in < 0)
        return false;
    if (alloc_fail_in-- > 0)
        return false;
    return true; /* alloc_fail_in is now -1: only this one fails */
}

void *malloc(size_t n)
{
    return alloc_should_fail() ? NULL : __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    return alloc_should_fail() ? NULL : __libc_calloc(n, size);
}
#endif

#if FAIL_ALLOC
/* Runs add(s, v) with its first allocation failing; expects -ENOMEM and s still equal to ref. */
static void expect_add_enomem(struct sg_ddsketch *s, const struct sg_ddsketch *ref, double v,
                              const char *what)
{
    size_t mem = sg_ddsketch_memory(s);
    alloc_fail_in = 0;
    int rc = sg_ddsketch_add(s, v);
    bool consumed = alloc_fail_in == -1;
    alloc_fail_in = -1;
    cr_expect_eq(rc, -ENOMEM, "%s: %d", what, rc);
    cr_expect(consumed, "%s: no allocation was tried", what);
    cr_expect_eq(sg_ddsketch_memory(s), mem, "%s", what);
    cr_expect_eq(count_different(s, ref), 0, "%s: the sketch changed", what);
}
#endif

Test(ddsketch, enomem_leaves_the_sketch_unchanged)
{
#if !FAIL_ALLOC
    cr_skip_test("allocation failures are not injected under AddressSanitizer");
#else
    struct sg_ddsketch *s = sg_ddsketch_create(0.01, 2048);
    struct sg_ddsketch *ref = sg_ddsketch_create(0.01, 2048);
    alloc_fail_in = 0;
    cr_expect_null(sg_ddsketch_create(0.01, 2048));
    alloc_fail_in = -1;
    for (int i = 0; i < 100; i++) {
        sg_ddsketch_add(s, 10.0 + i / 100.0); /* inline */
        sg_ddsketch_add(ref, 10.0 + i / 100.0);
    }
    /* Out of the inline array: the first heap array. */
    expect_add_enomem(s, ref, 1e6, "first heap array");
    cr_assert_eq(sg_ddsketch_add(s, 1e6), 0);
    cr_assert_eq(sg_ddsketch_add(ref, 1e6), 0);
    /* Past the heap array's slack. */
    expect_add_enomem(s, ref, 1e-3, "growing the heap array");
    /* The positive store moved to the heap: the negative one takes the inline array without
     * allocating, then outgrows it. */
    cr_assert_eq(sg_ddsketch_add(s, -2.0), 0);
    cr_assert_eq(sg_ddsketch_add(ref, -2.0), 0);
    expect_add_enomem(s, ref, -1e9, "negative store out of the inline array");
    /* A heap bucket at 65535 that must widen. */
    for (int i = 0; i < 65535 - 1; i++) {
        sg_ddsketch_add(s, 1e6);
        sg_ddsketch_add(ref, 1e6);
    }
    expect_add_enomem(s, ref, 1e6, "widening to 4-byte counts");
    cr_assert_eq(sg_ddsketch_add(s, 1e6), 0);
    cr_assert_eq(sg_ddsketch_add(ref, 1e6), 0);
    cr_expect_eq(count_different(s, ref), 0);

    /* Merges: the positive store's array fails, or the negative one's after the positive one
     * was allocated; dst stays as it was either way. */
    double *v = gen("mixed", 3000, 11);
    struct sg_ddsketch *src = sg_ddsketch_create(0.01, 2048);
    for (size_t i = 0; i < 3000; i++)
        sg_ddsketch_add(src, v[i]);
    for (int which = 0; which < 2; which++) {
        struct sg_ddsketch *dst = sg_ddsketch_create(0.01, 2048);
        struct sg_ddsketch *dref = sg_ddsketch_create(0.01, 2048);
        for (int i = 0; i < 50; i++) {
            sg_ddsketch_add(dst, 3.0 + i / 1000.0);
            sg_ddsketch_add(dref, 3.0 + i / 1000.0);
            sg_ddsketch_add(dst, -3.0 - i / 1000.0);
            sg_ddsketch_add(dref, -3.0 - i / 1000.0);
        }
        size_t mem = sg_ddsketch_memory(dst);
        alloc_fail_in = which;
        int rc = sg_ddsketch_merge(dst, src);
        bool consumed = alloc_fail_in == -1;
        alloc_fail_in = -1;
        cr_expect_eq(rc, -ENOMEM, "merge, allocation %d failing: %d", which, rc);
        cr_expect(consumed);
        cr_expect_eq(sg_ddsketch_memory(dst), mem);
        cr_expect_eq(count_different(dst, dref), 0, "merge, allocation %d failing", which);
        cr_assert_eq(sg_ddsketch_merge(dst, src), 0);
        cr_assert_eq(sg_ddsketch_merge(dref, src), 0);
        cr_expect_eq(count_different(dst, dref), 0);
        sg_ddsketch_destroy(dst);
        sg_ddsketch_destroy(dref);
    }
    free(v);
    sg_ddsketch_destroy(src);
    sg_ddsketch_destroy(s);
    sg_ddsketch_destroy(ref);
#endif
}

/* A sketch in the caller's memory answers like one of its own; copied elsewhere and told so, it
 * goes on from there (narrow sketches point into their own bytes, wide ones to an array they
 * allocated); fini frees that array (the leak checker sees it otherwise) and leaves an empty,
 * usable sketch. */
Test(ddsketch, in_place_moved_and_finished)
{
    size_t size = sg_ddsketch_size();
    cr_assert_geq(size, 64);
    struct sg_ddsketch *bad = aligned_alloc(8, (size + 7) & ~(size_t)7);
    cr_assert_eq(sg_ddsketch_init(bad, 2.0, 2048), -EINVAL);
    cr_assert_eq(sg_ddsketch_init(bad, 0.01, 8), -EINVAL);
    free(bad);
    for (int wide = 0; wide <= 1; wide++) {
        struct sg_ddsketch *ref = sg_ddsketch_create(0.01, 2048);
        void *a = aligned_alloc(8, (size + 7) & ~(size_t)7);
        void *b = aligned_alloc(8, (size + 7) & ~(size_t)7);
        cr_assert(ref && a && b);
        struct sg_ddsketch *s = a;
        cr_assert_eq(sg_ddsketch_init(s, 0.01, 2048), 0);
        for (int i = 0; i < 1000; i++) {
            double v = wide ? (double)(i + 1) * 1.7 : 20.0 + (i % 3) - (i % 7 == 0 ? 41.0 : 0.0);
            cr_assert_eq(sg_ddsketch_add(s, v), 0);
            cr_assert_eq(sg_ddsketch_add(ref, v), 0);
        }
        memcpy(b, a, size);
        memset(a, 0xa5, size); /* the old place is gone */
        s = b;
        sg_ddsketch_moved(s, a);
        for (int i = 0; i < 100; i++) {
            cr_assert_eq(sg_ddsketch_add(s, (double)i), 0);
            cr_assert_eq(sg_ddsketch_add(ref, (double)i), 0);
        }
        cr_assert_eq(sg_ddsketch_count(s), sg_ddsketch_count(ref));
        for (size_t q = 0; q < sizeof(quantiles) / sizeof(quantiles[0]); q++)
            cr_assert_eq(sg_ddsketch_quantile(s, quantiles[q]),
                         sg_ddsketch_quantile(ref, quantiles[q]), "wide %d q %g", wide,
                         quantiles[q]);
        sg_ddsketch_fini(s);
        cr_assert_eq(sg_ddsketch_count(s), 0);
        cr_assert(isnan(sg_ddsketch_quantile(s, 0.5)));
        cr_assert_eq(sg_ddsketch_add(s, 3.0), 0);
        cr_assert_eq(sg_ddsketch_count(s), 1);
        sg_ddsketch_fini(s);
        sg_ddsketch_destroy(ref);
        free(a);
        free(b);
    }
}

/* An owner's account follows the sketch's bucket arrays exactly: as the range widens in both
 * signs, as counts widen past 16 bits, as the lowest buckets collapse, and as a store moves from
 * the inline array to one of its own; the answers are those of the uncounted add. */
Test(ddsketch, counted_add_keeps_the_owners_account)
{
    struct sg_ddsketch *s = sg_ddsketch_create(0.01, 128);
    struct sg_ddsketch *ref = sg_ddsketch_create(0.01, 128);
    cr_assert(s && ref);
    size_t held = 0, changes = 0;
    for (int i = 0; i < 200000; i++) {
        double v = i < 70000 ? 21.5                              /* one bucket past 65535 */
                   : i % 2   ? ldexp(1.0, (i / 2) % 50 - 25)     /* 50 octaves: collapses */
                             : -(double)((i * 7919) % 100000 + 1); /* the negative store */
        size_t before = held;
        cr_assert_eq(sg_ddsketch_add_counted(s, v, &held), 0);
        cr_assert_eq(sg_ddsketch_add(ref, v), 0);
        changes += held != before;
        cr_assert_eq(held, sg_ddsketch_memory(s) - sg_heap_bytes(sg_ddsketch_size()),
                     "after value %d", i);
    }
    cr_assert_gt(changes, 3, "the arrays changed only %zu times", changes);
    cr_assert_eq(sg_ddsketch_count(s), sg_ddsketch_count(ref));
    for (size_t q = 0; q < sizeof(quantiles) / sizeof(quantiles[0]); q++)
        cr_assert_eq(sg_ddsketch_quantile(s, quantiles[q]),
                     sg_ddsketch_quantile(ref, quantiles[q]));
    sg_ddsketch_destroy(s);
    sg_ddsketch_destroy(ref);
}

/* Two sketches answer alike everywhere: count and every quantile on a fine grid. */
static void assert_same_sketch(const struct sg_ddsketch *a, const struct sg_ddsketch *b)
{
    cr_assert_eq(sg_ddsketch_count(a), sg_ddsketch_count(b));
    cr_assert_eq(sg_ddsketch_alpha(a), sg_ddsketch_alpha(b));
    for (int i = 0; i <= 1000; i++) {
        double q = i / 1000.0, x = sg_ddsketch_quantile(a, q), y = sg_ddsketch_quantile(b, q);
        cr_assert(x == y || (isnan(x) && isnan(y)), "q=%g: %.17g vs %.17g", q, x, y);
    }
}

static struct sg_ddsketch *round_trip(const struct sg_ddsketch *s, size_t *len)
{
    struct sg_buf b;
    struct sg_ddsketch *back = NULL;
    sg_buf_init(&b, 0);
    cr_assert_eq(sg_ddsketch_encode(s, &b), 0);
    cr_assert_eq(sg_ddsketch_decode(b.data, b.len, &back), 0);
    if (len)
        *len = b.len;
    sg_buf_free(&b);
    return back;
}

Test(ddsketch, stored_form_round_trips)
{
    struct rng r = {7};
    struct sg_ddsketch *s = sg_ddsketch_create(0.01, 2048);
    struct sg_ddsketch *back = round_trip(s, NULL); /* empty */
    assert_same_sketch(s, back);
    sg_ddsketch_destroy(back);
    for (int i = 0; i < 100000; i++) {
        double v = exp(rng_normal(&r) * 3);
        cr_assert_eq(sg_ddsketch_add(s, i % 7 == 0 ? -v : i % 11 == 0 ? 0.0 : v), 0);
    }
    for (int i = 0; i < 70000; i++) /* past 16-bit counts in one bucket */
        cr_assert_eq(sg_ddsketch_add(s, 42.0), 0);
    size_t len;
    back = round_trip(s, &len);
    assert_same_sketch(s, back);
    /* A stored form is a few bytes per occupied bucket, not per value. */
    cr_assert_lt(len, 8 * 2048);
    sg_ddsketch_destroy(back);
    sg_ddsketch_destroy(s);
}

Test(ddsketch, stored_form_keeps_collapsed_stores_and_alpha)
{
    struct sg_ddsketch *s = sg_ddsketch_create(0.02, 64);
    for (int i = 0; i < 5000; i++)
        cr_assert_eq(sg_ddsketch_add(s, pow(1.1, i % 400)), 0);
    struct sg_ddsketch *back = round_trip(s, NULL);
    assert_same_sketch(s, back);
    sg_ddsketch_destroy(back);
    sg_ddsketch_destroy(s);
}

Test(ddsketch, decoded_sketches_merge_like_the_originals)
{
    struct rng r = {11};
    struct sg_ddsketch *a = sg_ddsketch_create(0.01, 2048), *b = sg_ddsketch_create(0.01, 2048);
    for (int i = 0; i < 20000; i++) {
        cr_assert_eq(sg_ddsketch_add(a, rng_unit(&r) * 100), 0);
        cr_assert_eq(sg_ddsketch_add(b, 50 + rng_unit(&r) * 1000), 0);
    }
    struct sg_ddsketch *da = round_trip(a, NULL), *db = round_trip(b, NULL);
    cr_assert_eq(sg_ddsketch_merge(a, b), 0);
    cr_assert_eq(sg_ddsketch_merge(da, db), 0);
    assert_same_sketch(a, da);
    sg_ddsketch_destroy(a);
    sg_ddsketch_destroy(b);
    sg_ddsketch_destroy(da);
    sg_ddsketch_destroy(db);
}

Test(ddsketch, decode_refuses_what_is_not_a_stored_form)
{
    struct sg_ddsketch *s = sg_ddsketch_create(0.01, 2048), *back = NULL;
    for (int i = 1; i <= 100; i++)
        cr_assert_eq(sg_ddsketch_add(s, i), 0);
    struct sg_buf b;
    sg_buf_init(&b, 0);
    cr_assert_eq(sg_ddsketch_encode(s, &b), 0);
    unsigned char *p = (unsigned char *)b.data;
    /* Every truncation fails cleanly. */
    for (size_t n = 0; n < b.len; n++)
        cr_assert_eq(sg_ddsketch_decode(p, n, &back), -EINVAL, "length %zu", n);
    cr_assert_eq(sg_buf_append_char(&b, 0), 0); /* a trailing byte */
    cr_assert_eq(sg_ddsketch_decode(b.data, b.len, &back), -EINVAL);
    b.len--;
    p[0] = 2; /* another version */
    cr_assert_eq(sg_ddsketch_decode(b.data, b.len, &back), -EINVAL);
    p[0] = 1;
    double bad_alpha = 1.5;
    memcpy(p + 1, &bad_alpha, 8); /* little-endian hosts: the stored byte order */
    cr_assert_eq(sg_ddsketch_decode(b.data, b.len, &back), -EINVAL);
    /* Arbitrary bytes never crash and never pass unless they form a valid sketch. */
    struct rng r = {3};
    for (int t = 0; t < 20000; t++) {
        unsigned char junk[40];
        size_t n = rng_u64(&r) % sizeof(junk);
        for (size_t i = 0; i < n; i++)
            junk[i] = (unsigned char)rng_u64(&r);
        junk[0] = 1;
        if (sg_ddsketch_decode(junk, n, &back) == 0)
            sg_ddsketch_destroy(back);
    }
    sg_buf_free(&b);
    sg_ddsketch_destroy(s);
}
