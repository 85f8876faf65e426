#include <criterion/criterion.h>

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* Builds a sketch of v[0..n) and checks every quantile against the sorted data. */
static void check_quantiles_bins(const char *name, double *v, size_t n, double alpha,
                                 uint32_t max_bins)
{
    struct sg_ddsketch *s = sg_ddsketch_create(alpha, max_bins);
    cr_assert_not_null(s);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(sg_ddsketch_add(s, v[i]), 0);
    cr_assert_eq(sg_ddsketch_count(s), n, "%s: count", name);
    qsort(v, n, sizeof(*v), cmp_double);
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
    /* 2048 buckets at alpha 0.01 span a factor gamma^2048 = 6e17: 1e-3 .. 1e12 fits. */
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
    /* 1e-6 .. 1e9 spans about 1730 buckets at alpha 0.01; with 128 bins only the top 128
     * buckets (a factor of gamma^128 = 12.9: from 7.7e7 up) stay exact. */
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

/* What the sketch must hold, computed independently: a value of bucket index i ends up in
 * bucket max(i, hi - max_bins + 1), where hi is its store's highest index. */
struct model {
    double inv_log_gamma, gamma;
    uint32_t max_bins;
    int64_t hi_pos, hi_neg;
};

static int64_t model_index(const struct model *m, double mag)
{
    return (int64_t)ceil(log(mag) * m->inv_log_gamma);
}

static double model_estimate(const struct model *m, double v)
{
    if (fabs(v) < SG_DDSKETCH_MIN_VALUE)
        return 0.0;
    int64_t hi = v > 0 ? m->hi_pos : m->hi_neg;
    int64_t i = model_index(m, fabs(v));
    if (i < hi - (int64_t)m->max_bins + 1)
        i = hi - (int64_t)m->max_bins + 1;
    double est = 2.0 * pow(m->gamma, (double)i) / (m->gamma + 1.0);
    return v > 0 ? est : -est;
}

static void check_against_model(double *v, size_t n, double alpha, uint32_t max_bins,
                                const char *what)
{
    struct model m = {1.0 / log((1 + alpha) / (1 - alpha)), (1 + alpha) / (1 - alpha), max_bins,
                      INT64_MIN, INT64_MIN};
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
    cr_expect_lt(empty, 100, "an empty sketch holds %zu bytes", empty);

    sg_ddsketch_add(s, 100.0);
    size_t one = sg_ddsketch_memory(s);
    cr_expect_gt(one, empty);
    /* A million values in a narrow range (100..101, one or two buckets) cost nothing more. */
    for (int i = 0; i < 1000000; i++)
        sg_ddsketch_add(s, 100.0 + (i % 100) / 100.0);
    cr_expect_eq(sg_ddsketch_memory(s), one);
    cr_expect_eq(sg_ddsketch_count(s), 1000001);

    /* Widening the range grows it: ln(1e6) / ln(gamma) = 691 buckets at alpha 0.01. */
    for (double x = 1.0; x < 1e6; x *= 1.001)
        sg_ddsketch_add(s, x);
    size_t wide = sg_ddsketch_memory(s);
    cr_expect_gt(wide, empty + 691 * sizeof(uint64_t));
    cr_expect_leq(wide, empty + (692 + 32) * sizeof(uint64_t));
    /* ...but never past max_bins + slack per store. */
    cr_expect_leq(wide, empty + 2 * (2048 + 64) * sizeof(uint64_t));
    sg_ddsketch_destroy(s);
}

Test(ddsketch, buckets_follow_the_paper)
{
    /* With alpha = 0.01, gamma = 1.01 / 0.99; 1.0 is in bucket 0 (ceil(0) = 0) whose estimate is
     * 2 / (gamma + 1) = 0.99, and gamma^3 is in bucket 3. */
    double gamma = 1.01 / 0.99;
    struct sg_ddsketch *s = sg_ddsketch_create(0.01, 2048);
    sg_ddsketch_add(s, 1.0);
    cr_expect(fabs(sg_ddsketch_quantile(s, 0.5) - 0.99) < 1e-12, "got %.17g",
              sg_ddsketch_quantile(s, 0.5));
    sg_ddsketch_destroy(s);

    s = sg_ddsketch_create(0.01, 2048);
    sg_ddsketch_add(s, gamma * gamma * gamma * 0.9999);
    double want = 2.0 * gamma * gamma * gamma / (gamma + 1.0);
    cr_expect(fabs(sg_ddsketch_quantile(s, 0.5) - want) < 1e-12 * want);
    sg_ddsketch_add(s, -gamma * gamma * gamma * 0.9999);
    cr_expect(fabs(sg_ddsketch_quantile(s, 0.0) + want) < 1e-12 * want);
    sg_ddsketch_destroy(s);
}
