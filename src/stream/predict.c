/* Holt's linear exponential smoothing per key and field (see predict.h for the equations). */
#include "predict.h"

#include <errno.h>
#include <math.h>
#include <string.h>

void sg_predict_init(struct sg_predict_model *m, uint32_t field)
{
    *m = (struct sg_predict_model){.field = field};
}

/* The residual scale: sqrt(var), and never zero, so a series that was constant until now
 * scores its first change as far out rather than as infinity. */
static double sg_predict__scale(const struct sg_predict_model *m, double f)
{
    double s = sqrt(m->var);
    double floor = 1e-9 * fmax(1.0, fabs(f));
    return s > floor ? s : floor;
}

void sg_predict_update(const struct sg_predict_conf *c, struct sg_predict_model *m, int64_t step,
                       double y, struct sg_predict_out *out)
{
    *out = (struct sg_predict_out){0};
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
        double ec = e;
        if (m->n >= c->warmup) {
            double s = sg_predict__scale(m, f);
            double clip = c->threshold * s;
            out->anomaly = e / s;
            out->has_anomaly = true;
            out->anomalous = fabs(out->anomaly) > c->threshold;
            ec = e > clip ? clip : e < -clip ? -clip : e;
        }
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

void sg_predict_peek(const struct sg_predict_conf *c, const struct sg_predict_model *m,
                     int64_t step, double y, struct sg_predict_out *out)
{
    struct sg_predict_model copy = *m;
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

void sg_predict_encode(const struct sg_predict_model *m, uint8_t out[SG_PREDICT_ENCODED_SIZE])
{
    out[0] = SG_PREDICT_ENCODING_VERSION;
    for (int i = 0; i < 4; i++)
        out[1 + i] = (uint8_t)(m->n >> (8 * i));
    sg_predict__put64(out + 5, (uint64_t)m->last_step);
    sg_predict__put64(out + 13, sg_predict__bits(m->level));
    sg_predict__put64(out + 21, sg_predict__bits(m->trend));
    sg_predict__put64(out + 29, sg_predict__bits(m->var));
}

int sg_predict_decode(struct sg_predict_model *m, const uint8_t *in, size_t len)
{
    if (len != SG_PREDICT_ENCODED_SIZE || in[0] != SG_PREDICT_ENCODING_VERSION)
        return -EINVAL;
    uint32_t n = 0;
    for (int i = 0; i < 4; i++)
        n |= (uint32_t)in[1 + i] << (8 * i);
    double level = sg_predict__double(in + 13), trend = sg_predict__double(in + 21);
    double var = sg_predict__double(in + 29);
    if (!isfinite(level) || !isfinite(trend) || !isfinite(var) || var < 0)
        return -EINVAL;
    m->n = n;
    m->last_step = (int64_t)sg_predict__get64(in + 5);
    m->level = level;
    m->trend = trend;
    m->var = var;
    return 0;
}
