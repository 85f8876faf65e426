#include <criterion/criterion.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "streamgate/hash.h"
#include "streamgate/hll.h"

static void add_keys(struct sg_hll *h, const char *prefix, uint64_t from, uint64_t to)
{
    char key[64];
    for (uint64_t i = from; i < to; i++) {
        int len = snprintf(key, sizeof(key), "%s%llu", prefix, (unsigned long long)i);
        sg_hll_add(h, key, (size_t)len);
    }
}

static void check_accuracy(unsigned p, const char *prefix)
{
    const uint64_t cards[] = {0, 1, 10, 100, 1000, 10000, 100000, 1000000};
    double m = (double)(1u << p);
    double bound = 3.0 * 1.04 / sqrt(m);
    struct sg_hll h;
    cr_assert_eq(sg_hll_init(&h, p), 0);
    uint64_t added = 0;
    for (size_t i = 0; i < sizeof(cards) / sizeof(cards[0]); i++) {
        add_keys(&h, prefix, added, cards[i]);
        added = cards[i];
        double est = sg_hll_estimate(&h);
        if (cards[i] == 0) {
            cr_expect_eq(est, 0.0, "p=%u: empty sketch estimates %f", p, est);
            continue;
        }
        double err = fabs(est - (double)cards[i]) / (double)cards[i];
        cr_expect(err <= bound, "p=%u n=%llu: estimate %.1f, relative error %.4f > %.4f", p,
                  (unsigned long long)cards[i], est, err, bound);
    }
    sg_hll_free(&h);
}

Test(hll, accuracy_p12)
{
    check_accuracy(12, "user-");
}

Test(hll, accuracy_p14)
{
    check_accuracy(14, "user-");
}

Test(hll, accuracy_other_keys)
{
    /* A second, unrelated key set, so the bounds do not hold by luck of one key family. */
    check_accuracy(12, "session:");
    check_accuracy(14, "10.0.");
}

Test(hll, accuracy_small_precisions)
{
    /* The special alpha_m constants for m = 16, 32, 64 and the linear-counting switch. */
    for (unsigned p = 4; p <= 6; p++) {
        double bound = 3.0 * 1.04 / sqrt((double)(1u << p));
        struct sg_hll h;
        cr_assert_eq(sg_hll_init(&h, p), 0);
        /* Averaged over many independent sketches: one sketch of 16 registers is too noisy to
         * test on its own, but the mean relative error must still be within the bound. */
        double total = 0;
        const int trials = 200;
        for (int t = 0; t < trials; t++) {
            memset(h.registers, 0, (size_t)1 << p);
            char prefix[32];
            snprintf(prefix, sizeof(prefix), "t%d-", t);
            add_keys(&h, prefix, 0, 5000);
            total += fabs(sg_hll_estimate(&h) - 5000.0) / 5000.0;
        }
        cr_expect(total / trials <= bound, "p=%u: mean relative error %.4f", p, total / trials);
        sg_hll_free(&h);
    }
}

Test(hll, duplicates_do_not_change_estimate)
{
    struct sg_hll h;
    cr_assert_eq(sg_hll_init(&h, 12), 0);
    add_keys(&h, "k", 0, 5000);
    double est = sg_hll_estimate(&h);
    uint8_t regs[4096];
    memcpy(regs, h.registers, sizeof(regs));
    for (int r = 0; r < 5; r++)
        add_keys(&h, "k", 0, 5000);
    cr_expect_eq(sg_hll_estimate(&h), est);
    cr_expect_eq(memcmp(regs, h.registers, sizeof(regs)), 0);
    sg_hll_free(&h);
}

Test(hll, single_value)
{
    struct sg_hll h;
    cr_assert_eq(sg_hll_init(&h, 14), 0);
    sg_hll_add(&h, "only", 4);
    sg_hll_add(&h, "only", 4);
    double est = sg_hll_estimate(&h);
    cr_expect(fabs(est - 1.0) < 0.01, "estimate %f", est);
    sg_hll_free(&h);
}

Test(hll, merge_equals_union)
{
    const unsigned precisions[] = {4, 12, 14, 16};
    for (size_t pi = 0; pi < sizeof(precisions) / sizeof(precisions[0]); pi++) {
        unsigned p = precisions[pi];
        struct sg_hll a, b, u;
        cr_assert_eq(sg_hll_init(&a, p), 0);
        cr_assert_eq(sg_hll_init(&b, p), 0);
        cr_assert_eq(sg_hll_init(&u, p), 0);
        /* Overlapping halves: [0, 60000) and [40000, 100000). */
        add_keys(&a, "x", 0, 60000);
        add_keys(&b, "x", 40000, 100000);
        add_keys(&u, "x", 0, 100000);
        cr_assert_eq(sg_hll_merge(&a, &b), 0);
        cr_expect_eq(memcmp(a.registers, u.registers, (size_t)1 << p), 0, "p=%u", p);
        cr_expect_eq(sg_hll_estimate(&a), sg_hll_estimate(&u));
        /* Merging is idempotent and merging an empty sketch changes nothing. */
        struct sg_hll e;
        cr_assert_eq(sg_hll_init(&e, p), 0);
        cr_assert_eq(sg_hll_merge(&a, &a), 0);
        cr_assert_eq(sg_hll_merge(&a, &e), 0);
        cr_expect_eq(memcmp(a.registers, u.registers, (size_t)1 << p), 0);
        cr_assert_eq(sg_hll_merge(&e, &u), 0);
        cr_expect_eq(memcmp(e.registers, u.registers, (size_t)1 << p), 0);
        sg_hll_free(&a);
        sg_hll_free(&b);
        sg_hll_free(&u);
        sg_hll_free(&e);
    }
}

Test(hll, precision_mismatch)
{
    struct sg_hll a, b;
    cr_assert_eq(sg_hll_init(&a, 12), 0);
    cr_assert_eq(sg_hll_init(&b, 14), 0);
    add_keys(&b, "z", 0, 100);
    cr_expect_eq(sg_hll_merge(&a, &b), -EINVAL);
    cr_expect_eq(sg_hll_merge(&b, &a), -EINVAL);
    /* dst is left untouched. */
    cr_expect_eq(sg_hll_estimate(&a), 0.0);
    sg_hll_free(&a);
    sg_hll_free(&b);
}

Test(hll, precision_bounds)
{
    struct sg_hll h;
    const unsigned bad[] = {0, 1, 3, 17, 32, 64, 1000};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_expect_eq(sg_hll_init(&h, bad[i]), -EINVAL, "precision %u", bad[i]);
        cr_expect_null(h.registers);
        sg_hll_free(&h); /* safe on a failed init */
    }
    for (unsigned p = SG_HLL_MIN_PRECISION; p <= SG_HLL_MAX_PRECISION; p++) {
        cr_assert_eq(sg_hll_init(&h, p), 0, "precision %u", p);
        cr_expect_eq(h.precision, p);
        for (size_t i = 0; i < ((size_t)1 << p); i++)
            cr_assert_eq(h.registers[i], 0);
        sg_hll_free(&h);
        cr_expect_null(h.registers);
        sg_hll_free(&h); /* twice is harmless */
    }
}

Test(hll, register_index_and_rank)
{
    /* The index is the top p bits, the rank the leading zeros of the rest plus one. */
    struct sg_hll h;
    cr_assert_eq(sg_hll_init(&h, 4), 0);
    sg_hll_add_hash(&h, 0x3000000000000000ull | (1ull << 59)); /* index 3, next bit set: rank 1 */
    cr_expect_eq(h.registers[3], 1);
    sg_hll_add_hash(&h, 0xa000000000000000ull | (1ull << 50)); /* index 10, 9 zeros: rank 10 */
    cr_expect_eq(h.registers[10], 10);
    sg_hll_add_hash(&h, 0xa000000000000000ull | (1ull << 55)); /* lower rank: kept at 10 */
    cr_expect_eq(h.registers[10], 10);
    sg_hll_add_hash(&h, 0xf000000000000000ull); /* rest all zero: the cap, 64 - 4 + 1 */
    cr_expect_eq(h.registers[15], 61);
    sg_hll_add_hash(&h, 0x0000000000000001ull); /* index 0, 59 zeros then the last bit */
    cr_expect_eq(h.registers[0], 60);
    sg_hll_free(&h);

    cr_assert_eq(sg_hll_init(&h, 16), 0);
    sg_hll_add_hash(&h, 0xffff000000000000ull);
    cr_expect_eq(h.registers[0xffff], 49);
    sg_hll_add_hash(&h, 0x0001800000000000ull);
    cr_expect_eq(h.registers[1], 1);
    sg_hll_free(&h);
}

Test(hll, add_uses_hash64_seed_zero)
{
    struct sg_hll a, b;
    cr_assert_eq(sg_hll_init(&a, 10), 0);
    cr_assert_eq(sg_hll_init(&b, 10), 0);
    sg_hll_add(&a, "hello", 5);
    sg_hll_add_hash(&b, sg_hash64("hello", 5, 0));
    cr_expect_eq(memcmp(a.registers, b.registers, 1024), 0);
    sg_hll_free(&a);
    sg_hll_free(&b);
}

/* The raw estimate alpha_m * m^2 / sum(2^-register), computed independently. */
static double raw_estimate(const struct sg_hll *h)
{
    size_t m = (size_t)1 << h->precision;
    double alpha = m == 16 ? 0.673 : m == 32 ? 0.697 : m == 64 ? 0.709 : 0.7213 / (1 + 1.079 / m);
    double sum = 0;
    for (size_t i = 0; i < m; i++)
        sum += pow(2.0, -(double)h->registers[i]);
    return alpha * (double)m * (double)m / sum;
}

Test(hll, estimator_formulas)
{
    struct sg_hll h;
    cr_assert_eq(sg_hll_init(&h, 4), 0);
    /* Half the registers zero: raw 14.4 <= 2.5m = 40, so linear counting m ln(m / V). */
    memset(h.registers, 1, 8);
    cr_expect(fabs(sg_hll_estimate(&h) - 16.0 * log(2.0)) < 1e-9, "got %.17g", sg_hll_estimate(&h));
    /* One zero register but raw 59.9 > 40: the raw estimate. */
    memset(h.registers, 3, 16);
    h.registers[7] = 0;
    cr_expect(fabs(sg_hll_estimate(&h) - raw_estimate(&h)) < 1e-9, "got %.17g want %.17g",
              sg_hll_estimate(&h), raw_estimate(&h));
    cr_expect(fabs(raw_estimate(&h) - 0.673 * 256 / 2.875) < 1e-9);
    /* No zero register and raw below 2.5m: still raw (linear counting needs a zero). */
    memset(h.registers, 1, 16);
    cr_expect(fabs(sg_hll_estimate(&h) - 0.673 * 256 / 8.0) < 1e-9);
    sg_hll_free(&h);

    /* The alpha_m constant of each precision. */
    for (unsigned p = 4; p <= 16; p++) {
        cr_assert_eq(sg_hll_init(&h, p), 0);
        size_t m = (size_t)1 << p;
        for (size_t i = 0; i < m; i++)
            h.registers[i] = (uint8_t)(3 + i % 7);
        double want = raw_estimate(&h);
        cr_expect(fabs(sg_hll_estimate(&h) - want) <= 1e-12 * want, "p=%u: %.17g vs %.17g", p,
                  sg_hll_estimate(&h), want);
        sg_hll_free(&h);
    }
}

Test(hll, saturated_registers_stay_finite)
{
    /* Every register at the cap: the raw estimate is used and is finite and huge. */
    struct sg_hll h;
    cr_assert_eq(sg_hll_init(&h, 4), 0);
    memset(h.registers, 61, 16);
    double est = sg_hll_estimate(&h);
    cr_expect(isfinite(est) && est > 1e18, "estimate %g", est);
    sg_hll_free(&h);
}

/* Encodes `h`, decodes it, and checks the registers came back; returns the stored length. */
static size_t hll_round_trip(const struct sg_hll *h, unsigned char want_form)
{
    struct sg_buf b;
    struct sg_hll back;
    sg_buf_init(&b, 0);
    cr_assert_eq(sg_hll_encode(h, &b), 0);
    cr_assert_eq((unsigned char)b.data[0], SG_HLL_ENCODING_VERSION);
    cr_assert_eq((unsigned char)b.data[2], want_form, "form %d", b.data[2]);
    cr_assert_eq(sg_hll_decode(b.data, b.len, &back), 0);
    cr_assert_eq(back.precision, h->precision);
    cr_assert_eq(memcmp(back.registers, h->registers, (size_t)1 << h->precision), 0);
    cr_assert_eq(sg_hll_estimate(&back), sg_hll_estimate(h));
    size_t len = b.len;
    sg_hll_free(&back);
    sg_buf_free(&b);
    return len;
}

Test(hll, stored_form_sparse_then_dense)
{
    struct sg_hll h;
    cr_assert_eq(sg_hll_init(&h, 14), 0);
    cr_assert_eq(hll_round_trip(&h, 1), 4); /* empty: header and a zero count */
    add_keys(&h, "k", 0, 100);
    size_t sparse = hll_round_trip(&h, 1);
    cr_assert_lt(sparse, 100 * 4 + 8, "%zu bytes for 100 keys", sparse);
    add_keys(&h, "k", 100, 200000);
    cr_assert_eq(hll_round_trip(&h, 0), 3 + (1u << 14));
    sg_hll_free(&h);
}

Test(hll, decoded_sketches_merge_like_the_originals)
{
    struct sg_hll a, b, da, db;
    struct sg_buf ba, bb;
    cr_assert_eq(sg_hll_init(&a, 12), 0);
    cr_assert_eq(sg_hll_init(&b, 12), 0);
    add_keys(&a, "x", 0, 3000);
    add_keys(&b, "x", 2000, 50000);
    sg_buf_init(&ba, 0);
    sg_buf_init(&bb, 0);
    cr_assert_eq(sg_hll_encode(&a, &ba), 0);
    cr_assert_eq(sg_hll_encode(&b, &bb), 0);
    cr_assert_eq(sg_hll_decode(ba.data, ba.len, &da), 0);
    cr_assert_eq(sg_hll_decode(bb.data, bb.len, &db), 0);
    cr_assert_eq(sg_hll_merge(&a, &b), 0);
    cr_assert_eq(sg_hll_merge(&da, &db), 0);
    cr_assert_eq(memcmp(a.registers, da.registers, 1u << 12), 0);
    cr_assert_eq(sg_hll_estimate(&a), sg_hll_estimate(&da));
    sg_hll_free(&a);
    sg_hll_free(&b);
    sg_hll_free(&da);
    sg_hll_free(&db);
    sg_buf_free(&ba);
    sg_buf_free(&bb);
}

Test(hll, decode_refuses_what_is_not_a_stored_form)
{
    struct sg_hll h;
    /* version, precision 4, sparse: count 1, index 3, rank 2 */
    const unsigned char good[] = {1, 4, 1, 1, 3, 2};
    cr_assert_eq(sg_hll_decode(good, sizeof(good), &h), 0);
    cr_assert_eq(h.registers[3], 2);
    sg_hll_free(&h);
    const unsigned char *bad[] = {
        (const unsigned char[]){2, 4, 1, 1, 3, 2},       /* version */
        (const unsigned char[]){1, 3, 1, 1, 3, 2},       /* precision */
        (const unsigned char[]){1, 4, 2, 1, 3, 2},       /* form */
        (const unsigned char[]){1, 4, 1, 1, 16, 2},      /* index past 2^4 */
        (const unsigned char[]){1, 4, 1, 1, 3, 62},      /* rank past 64 - 4 + 1 */
        (const unsigned char[]){1, 4, 1, 2, 3, 2},       /* cut short */
        (const unsigned char[]){1, 4, 1, 1, 3, 0},       /* a zero register listed */
        (const unsigned char[]){1, 4, 1, 2, 3, 2, 0, 2}, /* the same index twice */
    };
    const size_t lens[] = {6, 6, 6, 6, 6, 6, 6, 8};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
        cr_assert_eq(sg_hll_decode(bad[i], lens[i], &h), -EINVAL, "case %zu", i);
    const unsigned char trailing[] = {1, 4, 1, 1, 3, 2, 0};
    cr_assert_eq(sg_hll_decode(trailing, sizeof(trailing), &h), -EINVAL);
    unsigned char dense[3 + 16] = {1, 4, 0};
    cr_assert_eq(sg_hll_decode(dense, sizeof(dense), &h), 0);
    sg_hll_free(&h);
    cr_assert_eq(sg_hll_decode(dense, sizeof(dense) - 1, &h), -EINVAL);
}
