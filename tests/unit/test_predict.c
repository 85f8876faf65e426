#include <criterion/criterion.h>

#include <errno.h>
#include <math.h>
#include <string.h>

#include "../../src/stream/predict.h"

/* alpha = beta = 0.5, threshold 2, scores from the fourth window: small enough to follow by
 * hand (the numbers in the comments are worked from predict.h's equations). */
static const struct sg_predict_conf conf = {.alpha = 0.5, .beta = 0.5, .threshold = 2, .warmup = 3};

static int close_to(double got, double want)
{
    return fabs(got - want) <= 1e-12 * fmax(1.0, fabs(want));
}

Test(predict, linear_trend_is_forecast_exactly)
{
    struct sg_predict_model m;
    struct sg_predict_out o;
    sg_predict_init(&m, 7, NULL);
    sg_predict_update(&conf, &m, 0, 5, &o);
    cr_expect(!o.has_forecast && !o.has_anomaly);
    cr_expect_eq(o.next, 5); /* the level, no trend yet */
    sg_predict_update(&conf, &m, 1, 8, &o);
    cr_expect(o.has_forecast && !o.has_anomaly);
    cr_expect_eq(o.forecast, 5);
    cr_expect_eq(o.next, 11); /* trend 3 from the first change */
    for (int t = 2; t < 10; t++) {
        sg_predict_update(&conf, &m, t, 5 + 3 * t, &o);
        cr_expect_eq(o.forecast, 5 + 3 * t, "step %d: %g", t, o.forecast);
        cr_expect_eq(o.next, 5 + 3 * (t + 1));
        cr_expect_eq(o.has_anomaly, t >= 3, "step %d", t);
        if (o.has_anomaly)
            cr_expect_eq(o.anomaly, 0);
    }
    cr_expect_eq(m.field, 7);
    cr_expect_eq(m.n, 10);
}

/* 10, 12, 13, 17, 30 (a spike), then nothing at step 5, then 24 at step 6; threshold 3. The
 * t-th window's gains are a = max(0.5, 2(2t - 1) / (t(t + 1))), b = max(0.5, 3 / (2t - 1)). */
Test(predict, warmup_spike_clipping_and_gap)
{
    struct sg_predict_conf c = conf;
    c.threshold = 3;
    struct sg_predict_model m;
    struct sg_predict_out o;
    sg_predict_init(&m, 0, NULL);
    sg_predict_update(&c, &m, 0, 10, &o); /* level 10 */
    sg_predict_update(&c, &m, 1, 12, &o); /* f 10; trend 2, level 12 */
    cr_expect_eq(o.forecast, 10);
    cr_expect_eq(o.next, 14);
    cr_expect(!o.has_anomaly);
    /* t = 3: a = 5/6, b = 3/5. f 14, e -1 (still warming up: not clipped, no score);
     * level 14 - 5/6 = 79/6, trend 2 - 1/2 = 1.5, var = 1 (the first residual alone). */
    sg_predict_update(&c, &m, 2, 13, &o);
    cr_expect_eq(o.forecast, 14);
    cr_expect(!o.has_anomaly);
    cr_expect(close_to(o.next, 79.0 / 6 + 1.5));
    cr_expect_eq(m.trend, 1.5);
    cr_expect_eq(m.var, 1);
    /* t = 4: a = 0.7, b = 0.5. f 44/3, e 7/3, scale 1: anomaly 7/3 (under 3);
     * level 44/3 + 0.7 * 7/3 = 16.3, trend 1.5 + 0.35 * 7/3, var = 1 + ((7/3)^2 - 1) / 2 = 29/9. */
    sg_predict_update(&c, &m, 3, 17, &o);
    cr_expect(o.has_anomaly && !o.anomalous);
    cr_expect(close_to(o.forecast, 44.0 / 3));
    cr_expect(close_to(o.anomaly, 7.0 / 3));
    cr_expect(close_to(m.level, 16.3));
    cr_expect(close_to(m.trend, 1.5 + 0.35 * 7 / 3));
    cr_expect(close_to(m.var, 29.0 / 9));
    /* t = 5: a = 0.6, b = 0.5. f = 16.3 + trend, e = 30 - f, scale s = sqrt(29/9): flagged.
     * The update sees e clipped to 3s: level f + 1.8s, trend + 0.9s,
     * var = 29/9 + (9 * 29/9 - 29/9) / 3 = 319/27. */
    double s = sqrt(29.0 / 9), trend = 1.5 + 0.35 * 7 / 3, f = 16.3 + trend;
    sg_predict_update(&c, &m, 4, 30, &o);
    cr_expect(o.anomalous);
    cr_expect(close_to(o.forecast, f));
    cr_expect(close_to(o.anomaly, (30 - f) / s), "%.17g", o.anomaly);
    cr_expect(close_to(m.level, f + 1.8 * s));
    cr_expect(close_to(m.trend, trend + 0.9 * s));
    cr_expect(close_to(m.var, 319.0 / 27));
    /* Unclipped, the level would be f + 0.6 e, 2.1 higher: this is what keeps the next window
     * from being flagged. Step 5 has no window: the level moves by the trend through it,
     * f = level + 2 trend; the scale is sqrt(319/27). */
    double level = f + 1.8 * s;
    trend += 0.9 * s;
    sg_predict_update(&c, &m, 6, 24, &o);
    cr_expect(close_to(o.forecast, level + 2 * trend), "%.17g", o.forecast);
    cr_expect(close_to(o.anomaly, (24 - (level + 2 * trend)) / sqrt(319.0 / 27)), "%.17g",
              o.anomaly);
    cr_expect(!o.anomalous);
    cr_expect_eq(m.last_step, 6);
}

Test(predict, peek_leaves_the_model_alone)
{
    struct sg_predict_model m, before;
    struct sg_predict_out o, p;
    sg_predict_init(&m, 0, NULL);
    for (int t = 0; t < 6; t++)
        sg_predict_update(&conf, &m, t, t % 2 ? 1 : -1, &o);
    before = m;
    sg_predict_peek(&conf, &m, 6, 9, &p);
    cr_expect(memcmp(&before, &m, sizeof(m)) == 0);
    sg_predict_update(&conf, &m, 6, 9, &o);
    cr_expect(memcmp(&o, &p, sizeof(o)) == 0);
}

Test(predict, constant_series_scores_a_change_far_out)
{
    struct sg_predict_model m;
    struct sg_predict_out o;
    sg_predict_init(&m, 0, NULL);
    for (int t = 0; t < 6; t++)
        sg_predict_update(&conf, &m, t, 4, &o);
    cr_expect(o.has_anomaly && o.anomaly == 0);
    sg_predict_update(&conf, &m, 6, 5, &o);
    cr_expect(o.anomalous && isfinite(o.anomaly) && o.anomaly > 1e6);
}

Test(predict, encoding_round_trips_and_refuses_garbage)
{
    struct sg_predict_model m, back;
    struct sg_predict_out o;
    uint8_t enc[SG_PREDICT_ENCODED_SIZE];
    sg_predict_init(&m, 3, NULL);
    for (int t = -3; t < 5; t++)
        sg_predict_update(&conf, &m, t, t * 0.25, &o);
    cr_expect_eq(sg_predict_encode(&conf, &m, enc), SG_PREDICT_ENCODED_SIZE);
    cr_expect_eq(enc[0], SG_PREDICT_ENCODING_VERSION);
    cr_expect_eq(enc[1], 8); /* n, little-endian */
    cr_expect_eq(enc[5], 4); /* last_step */
    sg_predict_init(&back, 3, NULL);
    cr_assert_eq(sg_predict_decode(&conf, &back, enc, sizeof(enc)), 0);
    cr_expect(memcmp(&back, &m, sizeof(m)) == 0);
    cr_expect_eq(sg_predict_decode(&conf, &back, enc, sizeof(enc) - 1), -EINVAL);
    enc[0] = 2;
    cr_expect_eq(sg_predict_decode(&conf, &back, enc, sizeof(enc)), -EINVAL);
    enc[0] = SG_PREDICT_ENCODING_VERSION;
    memset(enc + 29, 0xff, 8); /* var: a NaN */
    cr_expect_eq(sg_predict_decode(&conf, &back, enc, sizeof(enc)), -EINVAL);
}

/* Holt-Winters by hand: a season of 4 with terms 2, 0, -2, 0 on the line 10 + t. The start
 * after two seasons finds the line and the terms exactly; then a spike moves level, trend and
 * its own slot by the gains, and nothing else. */
static const struct sg_predict_conf seasonal = {
    .alpha = 0.5, .beta = 0.5, .threshold = 100, .warmup = 3, .season = 4, .gamma = 0.5};

static double seasonal_y(int t)
{
    static const double terms[4] = {2, 0, -2, 0};
    return 10 + t + terms[t % 4];
}

Test(predict, seasons_start_from_two_seasons_then_follow_the_cycle)
{
    double arr[SG_PREDICT_SEASON_SLOTS(4)];
    struct sg_predict_model m;
    struct sg_predict_out o;
    sg_predict_init(&m, 0, arr);
    double next;
    for (int t = 0; t < 7; t++) {
        sg_predict_update(&seasonal, &m, t, seasonal_y(t), &o);
        cr_expect_not(o.has_forecast, "no forecast in the first two seasons (t %d)", t);
        cr_expect(isnan(o.next));
        cr_expect_not(sg_predict_next(&seasonal, &m, &next));
    }
    sg_predict_update(&seasonal, &m, 7, seasonal_y(7), &o);
    /* mean 11.5 then 15.5: trend 1; the terms come out exactly; level at t 7 is 17. */
    cr_expect_float_eq(m.trend, 1.0, 1e-12);
    cr_expect_float_eq(m.level, 17.0, 1e-12);
    const double terms[4] = {2, 0, -2, 0};
    for (int i = 0; i < 4; i++)
        cr_expect_float_eq(arr[i], terms[i], 1e-12, "slot %d", i);
    cr_expect_float_eq(o.next, 20.0, 1e-12);
    cr_assert(sg_predict_next(&seasonal, &m, &next));
    cr_expect_float_eq(next, 20.0, 1e-12);

    sg_predict_update(&seasonal, &m, 8, 20, &o); /* as forecast: e = 0 */
    cr_expect(o.has_forecast && !o.has_anomaly);
    cr_expect_float_eq(o.forecast, 20.0, 1e-12);
    cr_expect_float_eq(m.level, 18.0, 1e-12);
    cr_expect_float_eq(m.var, 0.0, 1e-12);
    sg_predict_update(&seasonal, &m, 9, seasonal_y(9) + 5, &o); /* 24 against 19 */
    cr_expect_float_eq(o.forecast, 19.0, 1e-12);
    cr_expect_float_eq(m.level, 21.5, 1e-12); /* 18 + 1 + 0.5 * 5 */
    cr_expect_float_eq(m.trend, 2.25, 1e-12); /* 1 + 0.5 * 0.5 * 5 */
    cr_expect_float_eq(arr[1], 2.5, 1e-12);   /* 0 + 0.5 * 5 */
    cr_expect_float_eq(arr[2], -2.0, 1e-12);  /* the others untouched */
    cr_expect_float_eq(m.var, 12.5, 1e-12);   /* the second residual: w = 1/2 */
    cr_expect_float_eq(o.next, 21.75, 1e-12); /* 21.5 + 2.25 - 2 */
}

/* A gap over the whole second season: the start has no trend to take, and the step after the
 * gap is forecast from the level by the slot it falls in. Peeking changes nothing. */
Test(predict, seasons_start_across_a_gap_and_peek_changes_nothing)
{
    double arr[SG_PREDICT_SEASON_SLOTS(4)];
    struct sg_predict_model m;
    struct sg_predict_out o;
    sg_predict_init(&m, 0, arr);
    for (int t = 0; t < 4; t++)
        sg_predict_update(&seasonal, &m, t, seasonal_y(t), &o);
    double before[SG_PREDICT_SEASON_SLOTS(4)];
    memcpy(before, arr, sizeof(arr));
    struct sg_predict_model copy = m;
    sg_predict_peek(&seasonal, &m, 9, 100, &o);
    cr_expect(o.has_forecast);
    cr_expect(memcmp(&copy, &m, sizeof(m)) == 0 && memcmp(before, arr, sizeof(arr)) == 0,
              "peek left the model and its terms alone");
    sg_predict_update(&seasonal, &m, 9, 11, &o);
    /* level 11.5, trend 0, slot 1: 11 - 11.5 */
    cr_expect_float_eq(o.forecast, 11.0, 1e-12);
    cr_expect_eq(m.last_step, 9);
}

Test(predict, seasonal_encoding_round_trips_and_needs_the_same_season)
{
    double arr[SG_PREDICT_SEASON_SLOTS(4)], arr2[SG_PREDICT_SEASON_SLOTS(4)];
    struct sg_predict_model m, back;
    struct sg_predict_out o;
    uint8_t enc[SG_PREDICT_ENCODED_SIZE_SEASONAL(4)];
    sg_predict_init(&m, 0, arr);
    for (int t = 0; t < 3; t++) /* still starting: a slot is NaN */
        sg_predict_update(&seasonal, &m, t, seasonal_y(t), &o);
    cr_assert_eq(sg_predict_encode(&seasonal, &m, enc), sizeof(enc));
    cr_expect_eq(enc[0], SG_PREDICT_ENCODING_SEASONAL);
    sg_predict_init(&back, 0, arr2);
    cr_assert_eq(sg_predict_decode(&seasonal, &back, enc, sizeof(enc)), 0);
    for (int t = 3; t < 12; t++) {
        struct sg_predict_out a, b;
        sg_predict_update(&seasonal, &m, t, seasonal_y(t), &a);
        sg_predict_update(&seasonal, &back, t, seasonal_y(t), &b);
        cr_expect(a.has_forecast == b.has_forecast && (!a.has_forecast || a.forecast == b.forecast),
                  "t %d", t);
    }
    struct sg_predict_conf other = seasonal;
    other.season = 5;
    cr_expect_eq(sg_predict_decode(&other, &back, enc, sizeof(enc)), -EINVAL);
    cr_expect_eq(sg_predict_decode(&conf, &back, enc, sizeof(enc)), -EINVAL, "not a Holt model");
}
