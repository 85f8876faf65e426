/* Window results as JSON: key, window bounds, count, per-field statistics and quantiles, the
 * distinct count and the final flag, in that order. Numbers use the shortest text that reads
 * back as the same double, so results are exact and compact. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream_internal.h"
#include "streamgate/common.h"
#include "ddsketch.h"

/* Values with a short decimal form, as most data values and their sums are, without printf:
 * v = m / 10^k for the smallest k, where m is an integer of at most 2^53. Both are exact
 * doubles, so the division is rounded once, as strtod rounds the text m.e-k: when it gives v
 * back, that text reads back as v, and the smallest k is the shortest such text. Written in the
 * fixed notation %g uses for these magnitudes (1e-4 <= |v| < 1e15, not integral). Returns the
 * length written to `out` (at least 24 bytes), or 0 when v is not such a value. */
static size_t sg_result__short_decimal(double v, char *out)
{
    double a = fabs(v);
    if (!(a >= 1e-4 && a < 1e15))
        return 0;
    for (int k = 1; k <= 19; k++) {
        double m = nearbyint(a * sg_exact_pow10[k]);
        if (m > 9007199254740992.0)
            return 0;
        if (m / sg_exact_pow10[k] != a)
            continue;
        char digits[20];
        size_t nd = 0, n = 0;
        for (uint64_t u = (uint64_t)m; u > 0; u /= 10)
            digits[nd++] = (char)('0' + u % 10); /* lowest first */
        if (v < 0)
            out[n++] = '-';
        if (nd <= (size_t)k) { /* 0.000ddd */
            out[n++] = '0';
            out[n++] = '.';
            for (size_t z = nd; z < (size_t)k; z++)
                out[n++] = '0';
            while (nd > 0)
                out[n++] = digits[--nd];
        } else {
            while (nd > (size_t)k)
                out[n++] = digits[--nd];
            out[n++] = '.';
            while (nd > 0)
                out[n++] = digits[--nd];
        }
        return n;
    }
    return 0;
}

int sg_result__append_double(struct sg_buf *out, double v)
{
    char num[40];
    size_t n;

    if (!isfinite(v)) /* JSON has no NaN or infinity; a sum can overflow to infinity */
        return sg_buf_append_str(out, "null");
    if (v == trunc(v) && fabs(v) < 1e15 && !(v == 0 && signbit(v))) {
        return sg_buf_append_int(out, (long long)v);
    }
    n = sg_result__short_decimal(v, num);
    if (n > 0)
        return sg_buf_append(out, num, n);
    /* When the shortest exact text has at most 15 digits, %.15g finds it (a double is within
     * half a unit of the 17th digit of it, far less than the 15th digit's half unit), so at
     * most three attempts are needed instead of seventeen. */
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(num, sizeof(num), "%.*g", prec, v);
        if (strtod(num, NULL) == v)
            break;
    }
    return sg_buf_append_str(out, num);
}

/* "name":value, with a comma before. */
static int sg_result__member(struct sg_buf *out, const char *name, double v)
{
    int rc = sg_buf_append_str(out, ",\"");
    if (rc == 0)
        rc = sg_buf_append_str(out, name);
    if (rc == 0)
        rc = sg_buf_append_str(out, "\":");
    return rc ? rc : sg_result__append_double(out, v);
}

/* Significant digits of a quantile estimate as written: it is within 1% of the truth, so
 * more would only be noise (and cost the slow path of sg_result__append_double). */
#define SG_RESULT_QUANTILE_DIGITS 7

/* v rounded to SG_RESULT_QUANTILE_DIGITS significant digits (by an exact power of ten, so the
 * result reads back from that many digits). */
static double sg_result__round_estimate(double v)
{
    if (v == 0 || !isfinite(v))
        return v;
    int e = (int)floor(log10(fabs(v)));
    int k = SG_RESULT_QUANTILE_DIGITS - 1 - e;
    if (k >= 0 && k <= SG_EXACT_POW10_MAX)
        return nearbyint(v * sg_exact_pow10[k]) / sg_exact_pow10[k];
    if (k < 0 && -k <= SG_EXACT_POW10_MAX)
        return nearbyint(v / sg_exact_pow10[-k]) * sg_exact_pow10[-k];
    return v;
}

/* The sketch answers with its bucket's representative value, which can lie just outside the
 * values seen (p50 of {2, 4} came out as 1.9937). The true quantile is always within
 * [min, max], so clamping keeps the 1% bound and never reports a value no event had room
 * for. */
static double sg_result__quantile(const struct sg_agg *a, double q)
{
    double v = sg_result__round_estimate(sg_ddsketch_quantile(a->sketch, q));
    if (v < a->min)
        return a->min;
    if (v > a->max)
        return a->max;
    return v;
}

static int sg_result__field(const struct sg_streams *st, const struct sg_wfield *f,
                            struct sg_buf *out)
{
    const struct sg_agg *a = &f->agg;
    int rc = sg_buf_append_json_string(out, st->names[f->id], strlen(st->names[f->id]));
    if (rc == 0)
        rc = sg_buf_append_str(out, ":{\"count\":");
    if (rc == 0)
        rc = sg_buf_append_uint(out, a->count);
    if (rc == 0)
        rc = sg_result__member(out, "sum", a->sum);
    if (rc == 0)
        rc = sg_result__member(out, "min", a->min);
    if (rc == 0)
        rc = sg_result__member(out, "max", a->max);
    if (rc == 0)
        rc = sg_result__member(out, "mean", a->mean);
    if (rc == 0)
        rc = sg_result__member(out, "stddev", sg_agg_stddev(a));
    if (rc == 0)
        rc = sg_result__member(out, "first", a->first);
    if (rc == 0)
        rc = sg_result__member(out, "last", a->last);
    /* No sketch: it could not be allocated; the quantiles are left out rather than guessed. */
    for (size_t i = 0; rc == 0 && a->sketch && i < st->nquantiles; i++) {
        rc = sg_buf_append_char(out, ',');
        if (rc == 0)
            rc = sg_buf_append_json_string(out, st->quantile_names[i],
                                           strlen(st->quantile_names[i]));
        if (rc == 0)
            rc = sg_buf_append_char(out, ':');
        if (rc == 0)
            rc = sg_result__append_double(out, sg_result__quantile(a, st->quantiles[i]));
    }
    return rc ? rc : sg_buf_append_char(out, '}');
}

int sg_result__render(const struct sg_streams *st, const struct sg_window *w, int final,
                      struct sg_buf *out)
{
    const struct sg_stream *s = w->stream;
    int rc = sg_buf_append_str(out, "{\"key\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(out, s->key, s->key_len);
    if (rc == 0)
        rc = sg_buf_append_str(out, ",\"window_start\":");
    if (rc == 0)
        rc = sg_buf_append_int(out, w->start);
    if (rc == 0)
        rc = sg_buf_append_str(out, ",\"window_end\":");
    if (rc == 0)
        rc = sg_buf_append_int(out, w->end);
    if (rc == 0)
        rc = sg_buf_append_str(out, ",\"count\":");
    if (rc == 0)
        rc = sg_buf_append_uint(out, w->count);
    if (rc == 0)
        rc = sg_buf_append_str(out, ",\"fields\":{");

    bool first = true;
    for (unsigned i = 0; rc == 0 && i < w->nfields; i++) {
        const struct sg_wfield *f = sg_window__field_at(st, w, i);
        if (f->agg.count == 0) /* only non-finite values: nothing to report */
            continue;
        if (!first)
            rc = sg_buf_append_char(out, ',');
        first = false;
        if (rc == 0)
            rc = sg_result__field(st, f, out);
    }
    if (rc == 0)
        rc = sg_buf_append_char(out, '}');
    if (rc == 0 && st->distinct) {
        double d = sg_hll_estimate(sg_window__hll(w));
        rc = sg_buf_printf(out, ",\"distinct\":%" PRIu64, (uint64_t)llround(d));
    }
    if (rc == 0 && final >= 0)
        rc = sg_buf_append_str(out, final ? ",\"final\":true" : ",\"final\":false");
    return rc ? rc : sg_buf_append_char(out, '}');
}

void sg_result__emit(struct sg_streams *st, const struct sg_window *w, bool final)
{
    if (!st->cbs.result)
        return;
    sg_buf_reset(&st->out);
    int rc = sg_result__render(st, w, final, &st->out);
    if (rc != 0) {
        /* Out of memory, or a result past SG_STREAMS_RESULT_MAX: this one is lost. */
        sg_streams__oom(st, "window result");
        return;
    }
    struct sg_window_result res = {
        .key = w->stream->key,
        .key_len = w->stream->key_len,
        .partition = w->stream->partition,
        .window_start = w->start,
        .window_end = w->end,
        .final = final,
        .json = st->out.data,
        .json_len = st->out.len,
    };
    st->cbs.result(st->cbs.arg, &res);
}
