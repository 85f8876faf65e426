/* Window results as JSON: key, window bounds, count, per-field statistics and quantiles, the
 * distinct count and the final flag, in that order. Numbers use the shortest text that reads
 * back as the same double, so results are exact and compact. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream_internal.h"
#include "streamgate/ddsketch.h"

int sg_result__append_double(struct sg_buf *out, double v)
{
    if (!isfinite(v)) /* JSON has no NaN or infinity; a sum can overflow to infinity */
        return sg_buf_append_str(out, "null");
    if (v == trunc(v) && fabs(v) < 1e15 && !(v == 0 && signbit(v)))
        return sg_buf_printf(out, "%" PRId64, (int64_t)v);
    /* When the shortest exact text has at most 15 digits, %.15g finds it (a double is within
     * half a unit of the 17th digit of it, far less than the 15th digit's half unit), so at
     * most three attempts are needed instead of seventeen. */
    char num[40];
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
    int rc = sg_buf_printf(out, ",\"%s\":", name);
    return rc ? rc : sg_result__append_double(out, v);
}

/* The sketch answers with its bucket's representative value, which can lie just outside the
 * values seen (p50 of {2, 4} came out as 1.9937). The true quantile is always within
 * [min, max], so clamping keeps the 1% bound and never reports a value no event had room
 * for. */
static double sg_result__quantile(const struct sg_agg *a, double q)
{
    double v = sg_ddsketch_quantile(a->sketch, q);
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
        rc = sg_buf_printf(out, ":{\"count\":%" PRIu64, a->count);
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
        rc = sg_buf_printf(out,
                           ",\"window_start\":%" PRId64 ",\"window_end\":%" PRId64
                           ",\"count\":%" PRIu64 ",\"fields\":{",
                           w->start, w->end, w->count);

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
