/* Holt's linear exponential smoothing per key and field (see predict.h for the equations). */
#include "predict.h"

#include <errno.h>
#include <math.h>
#include <string.h>

void sg_predict_init(struct sg_predict_model *m, uint32_t field, double *season)
{
    *m = (struct sg_predict_model){.field = field, .season = season};
}

/* The residual scale: sqrt(var), and never zero, so a series that was constant until now
 * scores its first change as far out rather than as infinity. */
static double sg_predict__scale(const struct sg_predict_model *m, double f)
{
    double s = sqrt(m->var);
    double floor = 1e-9 * fmax(1.0, fabs(f));
    return s > floor ? s : floor;
}

/* Scores residual e of forecast f into `out`; returns e clipped to +-threshold scales. */
static double sg_predict__score(const struct sg_predict_conf *c, const struct sg_predict_model *m,
                                double f, double e, struct sg_predict_out *out)
{
    double s = sg_predict__scale(m, f);
    double clip = c->threshold * s;
    out->anomaly = e / s;
    out->has_anomaly = true;
    out->anomalous = fabs(out->anomaly) > c->threshold;
    return e > clip ? clip : e < -clip ? -clip : e;
}

/* Holt's model, without a season. */
static void sg_predict__holt(const struct sg_predict_conf *c, struct sg_predict_model *m,
                             int64_t step, double y, struct sg_predict_out *out)
{
    if (m->n == 0) { /* the first window: the level, nothing to forecast */
        m->level = y;
        m->trend = 0;
        m->var = 0;
        m->n = 1;
        m->last_step = step;
        out->next = y;
        return;
    }
    double k = step > m->last_step ? (double)(step - m->last_step) : 1.0;
    double f = m->level + k * m->trend;
    double e = y - f;
    out->forecast = f;
    out->has_forecast = true;
    if (m->n == 1) { /* the second: the trend is the change per step */
        m->trend = (y - m->level) / k;
        m->level = y;
    } else {
        double ec = m->n >= c->warmup ? sg_predict__score(c, m, f, e, out) : e;
        /* While few windows are in, the gains of a least-squares line through all of them. */
        double t = (double)m->n + 1;
        double a = fmax(c->alpha, 2 * (2 * t - 1) / (t * (t + 1)));
        double b = fmax(c->beta, 3 / (2 * t - 1));
        m->level = f + a * ec;
        m->trend += a * b * ec;
        double w = 1.0 / (double)(m->n - 1); /* residuals so far, this one included */
        if (w < SG_PREDICT_SCALE_WEIGHT)
            w = SG_PREDICT_SCALE_WEIGHT;
        m->var += w * (ec * ec - m->var);
    }
    m->n++;
    m->last_step = step > m->last_step ? step : m->last_step + 1;
    out->next = m->level + m->trend;
}

/* ---- Holt-Winters: the seasonal terms ---------------------------------------------------- */

/* The seasonal array: m slots, then the start's state. While the model starts, START holds
 * the first step and COUNT2 the second season's windows (>= 0); once started, START holds the
 * windows folded in by then and COUNT2 is -1. */
#define SEASON_START(c, m)  ((m)->season[(c)->season])
#define SEASON_SUM2(c, m)   ((m)->season[(c)->season + 1])
#define SEASON_COUNT2(c, m) ((m)->season[(c)->season + 2])

static size_t sg_predict__slot(const struct sg_predict_conf *c, int64_t step)
{
    int64_t i = step % (int64_t)c->season;
    return (size_t)(i < 0 ? i + (int64_t)c->season : i);
}

static bool sg_predict__started(const struct sg_predict_conf *c, const struct sg_predict_model *m)
{
    return m->n > 0 && SEASON_COUNT2(c, m) < 0;
}

/* The classic start from two seasons (see predict.h), as of step `at`. */
static void sg_predict__start(const struct sg_predict_conf *c, struct sg_predict_model *m,
                              int64_t at)
{
    size_t p = c->season;
    double *s = m->season;
    double first = SEASON_START(c, m), sum1 = 0, n1 = 0;
    for (size_t i = 0; i < p; i++)
        if (!isnan(s[i])) {
            sum1 += s[i];
            n1++;
        }
    double mean1 = sum1 / n1; /* the first window is in the first season: n1 >= 1 */
    double n2 = SEASON_COUNT2(c, m);
    double trend = n2 > 0 ? (SEASON_SUM2(c, m) / n2 - mean1) / (double)p : 0;
    double centre = first + ((double)p - 1) / 2;
    int64_t first_step = (int64_t)first;
    for (size_t i = 0; i < p; i++) {
        /* The step of the first season that slot i holds. */
        int64_t t1 = first_step + (int64_t)((i + p - sg_predict__slot(c, first_step)) % p);
        s[i] = isnan(s[i]) ? 0 : s[i] - (mean1 + trend * ((double)t1 - centre));
    }
    m->level = mean1 + trend * ((double)at - centre);
    m->trend = trend;
    m->var = 0;
    m->last_step = at;
    SEASON_START(c, m) = (double)m->n;
    SEASON_SUM2(c, m) = 0;
    SEASON_COUNT2(c, m) = -1;
}

/* Holt-Winters, additive. */
static void sg_predict__seasonal(const struct sg_predict_conf *c, struct sg_predict_model *m,
                                 int64_t step, double y, struct sg_predict_out *out)
{
    size_t p = c->season;
    double *s = m->season;
    if (m->n == 0) {
        for (size_t i = 0; i < p; i++)
            s[i] = NAN;
        SEASON_START(c, m) = (double)step;
        SEASON_SUM2(c, m) = 0;
        SEASON_COUNT2(c, m) = 0;
    }
    if (!sg_predict__started(c, m)) {
        int64_t d = step - (int64_t)SEASON_START(c, m);
        if (d < (int64_t)(2 * p)) { /* a window of the first two seasons: kept */
            if (d < (int64_t)p)
                s[sg_predict__slot(c, step)] = y;
            else {
                SEASON_SUM2(c, m) += y;
                SEASON_COUNT2(c, m) += 1;
            }
            m->n++;
            m->last_step = m->n == 1 || step > m->last_step ? step : m->last_step + 1;
            out->next = NAN;
            if (d == (int64_t)(2 * p) - 1) {
                sg_predict__start(c, m, m->last_step);
                out->next = m->level + m->trend + s[sg_predict__slot(c, m->last_step + 1)];
            }
            return;
        }
        /* Past the second season with a gap: start from what was kept, then fold y in. */
        sg_predict__start(c, m, m->last_step);
    }
    double k = step > m->last_step ? (double)(step - m->last_step) : 1.0;
    int64_t at = step > m->last_step ? step : m->last_step + 1;
    double *sl = &s[sg_predict__slot(c, at)];
    double f = m->level + k * m->trend + *sl;
    double e = y - f;
    out->forecast = f;
    out->has_forecast = true;
    double fitted = (double)m->n - SEASON_START(c, m); /* windows since the start */
    /* Scored from the third season on: until then each term is one window's noise. */
    double ec =
        fitted >= fmax((double)c->warmup, (double)p) ? sg_predict__score(c, m, f, e, out) : e;
    m->level += k * m->trend + c->alpha * ec;
    m->trend += c->alpha * c->beta * ec;
    /* A term starts as one noisy window; while few seasons are in, it is their mean (the gain
     * of an average), then gamma's. */
    double seasons = 2 + floor(fitted / (double)p);
    *sl += fmax(c->gamma, 1 / seasons) * ec;
    double w = 1.0 / (fitted + 1);
    if (w < SG_PREDICT_SCALE_WEIGHT)
        w = SG_PREDICT_SCALE_WEIGHT;
    m->var += w * (ec * ec - m->var);
    m->n++;
    m->last_step = at;
    out->next = m->level + m->trend + s[sg_predict__slot(c, at + 1)];
}

void sg_predict_update(const struct sg_predict_conf *c, struct sg_predict_model *m, int64_t step,
                       double y, struct sg_predict_out *out)
{
    *out = (struct sg_predict_out){0};
    if (c->season && m->season)
        sg_predict__seasonal(c, m, step, y, out);
    else
        sg_predict__holt(c, m, step, y, out);
}

bool sg_predict_next(const struct sg_predict_conf *c, const struct sg_predict_model *m,
                     double *next)
{
    if (c->season && m->season) {
        if (!sg_predict__started(c, m))
            return false;
        *next = m->level + m->trend + m->season[sg_predict__slot(c, m->last_step + 1)];
        return true;
    }
    *next = m->level + m->trend;
    return m->n > 0;
}

void sg_predict_peek(const struct sg_predict_conf *c, const struct sg_predict_model *m,
                     int64_t step, double y, struct sg_predict_out *out)
{
    double season[SG_PREDICT_SEASON_SLOTS(SG_PREDICT_MAX_SEASON)];
    struct sg_predict_model copy = *m;
    if (c->season && m->season) {
        memcpy(season, m->season, SG_PREDICT_SEASON_SLOTS(c->season) * sizeof(double));
        copy.season = season;
    }
    sg_predict_update(c, &copy, step, y, out);
}

static void sg_predict__put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t sg_predict__get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint64_t sg_predict__bits(double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof(v));
    return v;
}

static double sg_predict__double(const uint8_t *p)
{
    uint64_t v = sg_predict__get64(p);
    double d;
    memcpy(&d, &v, sizeof(d));
    return d;
}

size_t sg_predict_encode(const struct sg_predict_conf *c, const struct sg_predict_model *m,
                         uint8_t *out)
{
    bool seasonal = c->season && m->season;
    out[0] = seasonal ? SG_PREDICT_ENCODING_SEASONAL : SG_PREDICT_ENCODING_VERSION;
    for (int i = 0; i < 4; i++)
        out[1 + i] = (uint8_t)(m->n >> (8 * i));
    sg_predict__put64(out + 5, (uint64_t)m->last_step);
    sg_predict__put64(out + 13, sg_predict__bits(m->level));
    sg_predict__put64(out + 21, sg_predict__bits(m->trend));
    sg_predict__put64(out + 29, sg_predict__bits(m->var));
    if (!seasonal)
        return SG_PREDICT_ENCODED_SIZE;
    out[37] = (uint8_t)c->season;
    out[38] = (uint8_t)(c->season >> 8);
    for (size_t i = 0; i < SG_PREDICT_SEASON_SLOTS(c->season); i++)
        sg_predict__put64(out + 39 + 8 * i, sg_predict__bits(m->season[i]));
    return SG_PREDICT_ENCODED_SIZE_SEASONAL(c->season);
}

int sg_predict_decode(const struct sg_predict_conf *c, struct sg_predict_model *m,
                      const uint8_t *in, size_t len)
{
    bool seasonal = c->season && m->season;
    if (len < SG_PREDICT_ENCODED_SIZE ||
        in[0] != (seasonal ? SG_PREDICT_ENCODING_SEASONAL : SG_PREDICT_ENCODING_VERSION))
        return -EINVAL;
    if (!seasonal ? len != SG_PREDICT_ENCODED_SIZE
                  : len != SG_PREDICT_ENCODED_SIZE_SEASONAL(c->season) ||
                        (in[37] | (unsigned)in[38] << 8) != c->season)
        return -EINVAL;
    uint32_t n = 0;
    for (int i = 0; i < 4; i++)
        n |= (uint32_t)in[1 + i] << (8 * i);
    double level = sg_predict__double(in + 13), trend = sg_predict__double(in + 21);
    double var = sg_predict__double(in + 29);
    if (!isfinite(level) || !isfinite(trend) || !isfinite(var) || var < 0)
        return -EINVAL;
    if (seasonal) {
        /* The slots may be NaN while the model starts (a step of the first season not seen);
         * the start's state never is. */
        for (size_t i = 0; i < SG_PREDICT_SEASON_SLOTS(c->season); i++) {
            double v = sg_predict__double(in + 39 + 8 * i);
            if (isinf(v) || (i >= c->season && isnan(v)))
                return -EINVAL;
        }
        for (size_t i = 0; i < SG_PREDICT_SEASON_SLOTS(c->season); i++)
            m->season[i] = sg_predict__double(in + 39 + 8 * i);
    }
    m->n = n;
    m->last_step = (int64_t)sg_predict__get64(in + 5);
    m->level = level;
    m->trend = trend;
    m->var = var;
    return 0;
}
