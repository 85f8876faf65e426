/* Forecasts and anomaly scores over a key's window means: Holt's linear exponential smoothing
 * (level and trend; Hyndman & Athanasopoulos, Forecasting: Principles and Practice, ch. 8) per
 * key and field, with the residual scale an exponentially weighted mean of the squared
 * one-step residuals. The model moves once per fired window, never per event.
 *
 * One window mean y at step t (the window's index: its start divided by window.slide; a
 * session is one step after the one before), k = t - (the step of the last window folded in):
 *   forecast f = level + k * trend  (the k - 1 windows without a value step the level by trend)
 *   residual e = y - f;  anomaly = e / sqrt(var) once `warmup` windows were folded in
 *   e' = e clipped to +-threshold * sqrt(var) (after warm-up), so one spike does not drag it
 *   level = f + a * e';  trend += a * b * e'
 *   var += w * (e'^2 - var), w = max(SG_PREDICT_SCALE_WEIGHT, 1 / residuals so far)
 *   next = level + trend
 * with a = max(alpha, 2(2t - 1) / (t(t + 1))) and b = max(beta, 3 / (2t - 1)) for the t-th
 * window: the gains of a least-squares line through the first windows, which hand over to
 * alpha and beta after a few (about 4 / alpha windows). Without them the trend made of the
 * first two noisy windows would linger for about 1 / (alpha beta) windows.
 * The first window sets the level (no forecast); the second sets the trend to the change per
 * step (the first forecast is the first value). Residuals count from the third window.
 *
 * With a season of m windows (predict.season; Holt-Winters, additive, FPP section 8.3) each
 * step t also has a seasonal term s[t mod m]:
 *   f = level + k * trend + s[t mod m];  e = y - f, clipped as above to e'
 *   level = level + k * trend + a * e';  trend += a * b * e';  s[t mod m] += g * e'
 *   next = level + trend + s[(t + 1) mod m]
 * with g = predict.gamma. It starts from two whole seasons (the classic start): the first m
 * steps' means are kept in s, the second season's are summed; then trend = (mean of the second
 * season - mean of the first) / m, s[i] = the first season's mean at i less the line through
 * it, and the level is the line at the current step. No forecast before that; scores after
 * `warmup` more windows. */
#ifndef STREAMGATE_PREDICT_H
#define STREAMGATE_PREDICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Weight of the newest squared residual in the residual scale: about the last 1 / w windows
 * make it. */
#define SG_PREDICT_SCALE_WEIGHT 0.05
/* The stored form of a model without a season (sg_predict_encode), in bytes. */
#define SG_PREDICT_ENCODED_SIZE 37
/* Its first byte; a model with a season is version 2. */
#define SG_PREDICT_ENCODING_VERSION  1
#define SG_PREDICT_ENCODING_SEASONAL 2
/* Longest season, in windows. */
#define SG_PREDICT_MAX_SEASON 1024
/* Doubles of a seasonal model's array: a slot per step of the season, then the start's state
 * (first step or the window count at the start, the second season's sum and count). */
#define SG_PREDICT_SEASON_SLOTS(m) ((size_t)(m) + 3u)
/* The stored form of a model with a season of m windows. */
#define SG_PREDICT_ENCODED_SIZE_SEASONAL(m)                                                        \
    (SG_PREDICT_ENCODED_SIZE + 2u + 8u * SG_PREDICT_SEASON_SLOTS(m))

struct sg_predict_conf {
    double alpha, beta; /* smoothing of level and trend, in (0, 1] */
    double threshold;   /* |anomaly| above it flags the window; also the clip, in scales */
    uint32_t warmup;    /* windows folded in before a score is given (at least 3) */
    uint32_t season;    /* windows per season (Holt-Winters), 0: none */
    double gamma;       /* smoothing of the seasonal terms, in (0, 1] */
};

/* One key's model of one field: 48 bytes, and with a season its array of
 * SG_PREDICT_SEASON_SLOTS(season) doubles, which the caller allocates and frees. */
struct sg_predict_model {
    double level, trend;
    double var;        /* the residual scale, squared */
    int64_t last_step; /* step of the last window folded in */
    uint32_t n;        /* windows folded in */
    uint32_t field;    /* the engine's field id */
    double *season;    /* NULL without a season */
};

/* What a window's result says about one field. */
struct sg_predict_out {
    double forecast, anomaly, next;
    bool has_forecast; /* false for a model's first window */
    bool has_anomaly;  /* false during warm-up */
    bool anomalous;    /* |anomaly| > threshold */
};

/* Sets a model to the empty state for field id `field`; `season` is its array (NULL without a
 * season, else SG_PREDICT_SEASON_SLOTS(c->season) doubles), kept by the model. */
void sg_predict_init(struct sg_predict_model *m, uint32_t field, double *season);
/* What the model expects of the window after the last one it folded in; false when it has no
 * forecast yet. */
bool sg_predict_next(const struct sg_predict_conf *c, const struct sg_predict_model *m,
                     double *next);
/* The forecast and score of mean `y` at `step` without changing the model (an early update, the
 * live query). */
void sg_predict_peek(const struct sg_predict_conf *c, const struct sg_predict_model *m,
                     int64_t step, double y, struct sg_predict_out *out);
/* Folds the final mean `y` of the window at `step` in; `out` as for sg_predict_peek, with
 * `next` from the updated model. */
void sg_predict_update(const struct sg_predict_conf *c, struct sg_predict_model *m, int64_t step,
                       double y, struct sg_predict_out *out);

/* The model's stored form, little-endian: version (1 byte, SG_PREDICT_ENCODING_VERSION), n
 * (uint32), last_step (int64), level, trend, var (IEEE 754 binary64): SG_PREDICT_ENCODED_SIZE
 * bytes. With a season: version SG_PREDICT_ENCODING_SEASONAL, the same, then the season's
 * length (uint16) and the SG_PREDICT_SEASON_SLOTS doubles of its array. The field id is not
 * stored: the column's name says the field. `out` has room for
 * SG_PREDICT_ENCODED_SIZE_SEASONAL(c->season) bytes; returns the bytes written. */
size_t sg_predict_encode(const struct sg_predict_conf *c, const struct sg_predict_model *m,
                         uint8_t *out);
/* Reads a stored form back into `m` (its field id and array are kept). Returns 0, or -EINVAL for
 * a wrong length or version, a season other than c->season, or a value that is not finite (m
 * unchanged). */
int sg_predict_decode(const struct sg_predict_conf *c, struct sg_predict_model *m,
                      const uint8_t *in, size_t len);

#endif
