/* Window results: their numbers (the view a result callback gets beside the JSON), and the JSON
 * written from those numbers: key, window bounds, count, per-field statistics and quantiles,
 * the distinct count and the final flag, in that order. Numbers use the shortest text that
 * reads back as the same double, so results are exact and compact. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream_internal.h"
#include "streamgate/common.h"
#include "streamgate/ddsketch.h"

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

/* "name":value, with a comma before; null for a statistic without a value. */
static int sg_result__member(struct sg_buf *out, const char *name, struct sg_result_stat v)
{
    int rc = sg_buf_append_str(out, ",\"");
    if (rc == 0)
        rc = sg_buf_append_str(out, name);
    if (rc == 0)
        rc = sg_buf_append_str(out, "\":");
    if (rc != 0)
        return rc;
    return v.has_value ? sg_result__append_double(out, v.value) : sg_buf_append_str(out, "null");
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
static double sg_result__quantile(const struct sg_agg *a, const struct sg_ddsketch *sk, double q)
{
    double v = sg_result__round_estimate(sg_ddsketch_quantile(sk, q));
    if (v < a->min)
        return a->min;
    if (v > a->max)
        return a->max;
    return v;
}

static struct sg_result_stat sg_result__stat(double v)
{
    struct sg_result_stat s = {.value = v, .has_value = isfinite(v)};
    return s;
}

/* Bytes of one of the view's rooms for a sketch. */
#define SG_RESULT_ROOM 256

void sg_result__release_rooms(struct sg_streams *st)
{
    for (size_t i = 0; i < st->view_rooms_used; i++)
        sg_ddsketch_fini((struct sg_ddsketch *)(void *)(st->view_rooms + i * SG_RESULT_ROOM));
    st->view_rooms_used = 0;
}

/* One field's numbers; its quantiles go to `q` (room for st->nquantiles). A field without a
 * sketch of its own gets one in the view's next free room. */
static void sg_result__fill_field(struct sg_streams *st, const struct sg_wfield *f,
                                  struct sg_result_field *rf, struct sg_result_quantile *q)
{
    const struct sg_agg *a = &f->agg;
    rf->name = st->names[f->id];
    rf->name_len = strlen(rf->name);
    rf->count = a->count;
    rf->sum = sg_result__stat(a->sum);
    rf->min = sg_result__stat(a->min);
    rf->max = sg_result__stat(a->max);
    rf->mean = sg_result__stat(a->mean);
    rf->stddev = sg_result__stat(sg_agg_stddev(a));
    rf->first = sg_result__stat(a->first);
    rf->last = sg_result__stat(a->last);
    rf->quantiles = NULL;
    rf->nquantiles = 0;
    rf->sketch = NULL;
    if (st->nquantiles == 0 || f->sketch_lost)
        return; /* a lost sketch: the quantiles are left out rather than guessed */
    /* A field of a value or two has no sketch yet: the one its min and max make, in memory
     * of our own, answers exactly as the field's would. */
    struct sg_ddsketch *sk = a->sketch;
    if (!sk) {
        if (sg_ddsketch_size() > SG_RESULT_ROOM)
            return;
        sk = (struct sg_ddsketch *)(void *)(st->view_rooms + st->view_rooms_used * SG_RESULT_ROOM);
        (void)sg_ddsketch_init(sk, SG_DDSKETCH_DEFAULT_ALPHA, SG_DDSKETCH_DEFAULT_MAX_BINS);
        if (sg_window__sketch_fill(sk, a) != 0) {
            sg_ddsketch_fini(sk);
            return;
        }
        st->view_rooms_used++;
    }
    rf->sketch = sk;
    rf->quantiles = q;
    rf->nquantiles = st->nquantiles;
    for (size_t i = 0; i < rf->nquantiles; i++) {
        q[i].name = st->quantile_names[i];
        q[i].value = sg_result__stat(sg_result__quantile(a, sk, st->quantiles[i]));
    }
}

/* The stat of a forecast number that may be absent (then NaN, written as null), to
 * SG_RESULT_QUANTILE_DIGITS significant digits: a forecast is no more precise than that, and
 * the full 17 would cost the slow path of sg_result__append_double three times per field and
 * window (the stored model keeps every bit). */
static struct sg_result_stat sg_result__maybe(double v, bool has)
{
    return sg_result__stat(has ? sg_result__round_estimate(v) : NAN);
}

/* The forecast numbers of a field of stream s's window w: a final window moves the model, any
 * other result (an early update, the live query) only looks. Once per window and field. */
static void sg_result__predict(struct sg_streams *st, const struct sg_window *w, bool final,
                               const struct sg_wfield *f, struct sg_result_field *rf)
{
    rf->predicted = false;
    rf->anomalous = false;
    rf->has_model = false;
    if (!st->predict || !st->name_predicted[f->id])
        return;
    struct sg_predict_model *m = sg_streams__model(st, w->stream, f->id);
    if (!m)
        return;
    if (final && w->stream->restore_pending) {
        /* The key's stored models did not come in time: they start afresh. */
        w->stream->restore_pending = false;
        sg_counter_inc(st->restores_late);
    }
    /* Fixed windows start on multiples of window.slide; sessions are one step apart. */
    int64_t step = st->type == SG_WINDOW_SESSION ? m->last_step + 1 : w->start / st->slide_ms;
    /* A window a restored model folded in already (an aggregator rebuilding windows its
     * partition's last owner had fired and stored) is scored, not folded in twice. */
    bool replayed = st->type != SG_WINDOW_SESSION && m->n > 0 && step <= m->last_step;
    struct sg_predict_out o;
    if (final && !replayed)
        sg_predict_update(&st->predict_conf, m, step, f->agg.mean, &o);
    else
        sg_predict_peek(&st->predict_conf, m, step, f->agg.mean, &o);
    rf->predicted = true;
    rf->anomalous = o.anomalous;
    rf->forecast = sg_result__maybe(o.forecast, o.has_forecast);
    rf->anomaly = sg_result__maybe(o.anomaly, o.has_anomaly);
    rf->next = sg_result__maybe(o.next, true);
    if (final) {
        uint8_t *enc = st->view_models + (size_t)(rf - st->view_fields) * st->view_model_size;
        rf->model = enc;
        rf->model_len = sg_predict_encode(&st->predict_conf, m, enc);
        rf->has_model = true;
        if (o.anomalous)
            sg_counter_inc(st->anomalies);
    }
}

/* Room in the engine's view for `nfields` fields and their quantiles. The view is made at the
 * first result for event.max_fields fields and then reused: a result allocates nothing. */
static int sg_result__view_reserve(struct sg_streams *st, size_t nfields)
{
    if (nfields <= st->view_cap)
        return 0;
    size_t cap = nfields > st->max_fields ? nfields : st->max_fields;
    size_t fields_bytes = cap * sizeof(struct sg_result_field);
    size_t quantiles_bytes = cap * st->nquantiles * sizeof(struct sg_result_quantile);
    /* The fields' stored models after them. */
    size_t model_size = st->predict_conf.season
                            ? SG_PREDICT_ENCODED_SIZE_SEASONAL(st->predict_conf.season)
                            : SG_PREDICT_ENCODED_SIZE;
    void *p = malloc(fields_bytes + quantiles_bytes + cap * model_size);
    unsigned char *rooms = st->nquantiles ? aligned_alloc(16, cap * SG_RESULT_ROOM) : NULL;
    if (!p || (st->nquantiles && !rooms)) {
        free(p);
        free(rooms);
        return -ENOMEM;
    }
    sg_result__release_rooms(st);
    free(st->view_rooms);
    st->view_rooms = rooms;
    free(st->view_fields);
    st->view_fields = p;
    st->view_quantiles = (struct sg_result_quantile *)(void *)((char *)p + fields_bytes);
    st->view_models = (uint8_t *)p + fields_bytes + quantiles_bytes;
    st->view_model_size = model_size;
    st->view_cap = cap;
    return 0;
}

/* Fills `res` with window w's numbers, in the engine's view (valid until the next result). */
static int sg_result__view(struct sg_streams *st, const struct sg_window *w, bool final,
                           struct sg_window_result *res)
{
    if (sg_result__view_reserve(st, w->nfields) != 0)
        return -ENOMEM;
    sg_result__release_rooms(st);
    size_t n = 0, nanomalous = 0;
    for (unsigned i = 0; i < w->nfields; i++) {
        const struct sg_wfield *f = sg_window__field_at(st, w, i);
        if (f->agg.count == 0) /* only non-finite values: nothing to report */
            continue;
        sg_result__fill_field(st, f, &st->view_fields[n], st->view_quantiles + n * st->nquantiles);
        sg_result__predict(st, w, final, f, &st->view_fields[n]);
        /* An early update shows its window's score so far; only the final result is flagged
         * (sent to the anomaly outputs), as only it is counted and moves the model. */
        nanomalous += final && st->view_fields[n].anomalous;
        n++;
    }
    *res = (struct sg_window_result){
        .key = w->stream->key,
        .key_len = w->stream->key_len,
        .partition = w->stream->partition,
        .window_start = w->start,
        .window_end = w->end,
        .final = final,
        .count = w->count,
        .has_distinct = st->distinct,
        .distinct = st->distinct ? (uint64_t)llround(sg_hll_estimate(sg_window__hll(w))) : 0,
        .hll = st->distinct ? sg_window__hll(w) : NULL,
        .fields = n ? st->view_fields : NULL,
        .nfields = n,
        .nanomalous = nanomalous,
    };
    return 0;
}

static int sg_result__field_json(const struct sg_result_field *rf, struct sg_buf *out)
{
    int rc = sg_buf_append_json_string(out, rf->name, rf->name_len);
    if (rc == 0)
        rc = sg_buf_append_str(out, ":{\"count\":");
    if (rc == 0)
        rc = sg_buf_append_uint(out, rf->count);
    if (rc == 0)
        rc = sg_result__member(out, "sum", rf->sum);
    if (rc == 0)
        rc = sg_result__member(out, "min", rf->min);
    if (rc == 0)
        rc = sg_result__member(out, "max", rf->max);
    if (rc == 0)
        rc = sg_result__member(out, "mean", rf->mean);
    if (rc == 0)
        rc = sg_result__member(out, "stddev", rf->stddev);
    if (rc == 0)
        rc = sg_result__member(out, "first", rf->first);
    if (rc == 0)
        rc = sg_result__member(out, "last", rf->last);
    for (size_t i = 0; rc == 0 && i < rf->nquantiles; i++) {
        const struct sg_result_quantile *q = &rf->quantiles[i];
        rc = sg_buf_append_char(out, ',');
        if (rc == 0)
            rc = sg_buf_append_json_string(out, q->name, strlen(q->name));
        if (rc == 0)
            rc = sg_buf_append_char(out, ':');
        if (rc == 0)
            rc = q->value.has_value ? sg_result__append_double(out, q->value.value)
                                    : sg_buf_append_str(out, "null");
    }
    if (rc == 0 && rf->predicted) {
        rc = sg_result__member(out, "forecast", rf->forecast);
        if (rc == 0)
            rc = sg_result__member(out, "anomaly", rf->anomaly);
        if (rc == 0)
            rc = sg_result__member(out, "next", rf->next);
    }
    return rc ? rc : sg_buf_append_char(out, '}');
}

/* The JSON of a filled view: written from its numbers, so the two always agree. */
static int sg_result__json(const struct sg_window_result *res, int final, struct sg_buf *out)
{
    int rc = sg_buf_append_str(out, "{\"key\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(out, res->key, res->key_len);
    if (rc == 0)
        rc = sg_buf_append_str(out, ",\"window_start\":");
    if (rc == 0)
        rc = sg_buf_append_int(out, res->window_start);
    if (rc == 0)
        rc = sg_buf_append_str(out, ",\"window_end\":");
    if (rc == 0)
        rc = sg_buf_append_int(out, res->window_end);
    if (rc == 0)
        rc = sg_buf_append_str(out, ",\"count\":");
    if (rc == 0)
        rc = sg_buf_append_uint(out, res->count);
    if (rc == 0)
        rc = sg_buf_append_str(out, ",\"fields\":{");
    for (size_t i = 0; rc == 0 && i < res->nfields; i++) {
        if (i > 0)
            rc = sg_buf_append_char(out, ',');
        if (rc == 0)
            rc = sg_result__field_json(&res->fields[i], out);
    }
    if (rc == 0)
        rc = sg_buf_append_char(out, '}');
    if (rc == 0 && res->has_distinct)
        rc = sg_buf_printf(out, ",\"distinct\":%" PRIu64, res->distinct);
    if (rc == 0 && final >= 0)
        rc = sg_buf_append_str(out, final ? ",\"final\":true" : ",\"final\":false");
    return rc ? rc : sg_buf_append_char(out, '}');
}

int sg_result__open_numbers(struct sg_streams *st, const struct sg_window *w,
                            struct sg_window_result *res)
{
    int rc = sg_result__view(st, w, false, res);
    if (rc == 0)
        res->origin = (struct sg_streams_origin){
            .offset = -1, .watermark = INT64_MIN, .max_event_time = INT64_MIN};
    return rc;
}

int sg_result__render(struct sg_streams *st, const struct sg_window *w, int final,
                      struct sg_buf *out)
{
    struct sg_window_result res;
    int rc = sg_result__view(st, w, final > 0, &res);
    return rc ? rc : sg_result__json(&res, final, out);
}

void sg_result__emit(struct sg_streams *st, const struct sg_window *w, bool final)
{
    if (!st->cbs.result)
        return;
    sg_buf_reset(&st->out);
    struct sg_window_result res;
    int rc = sg_result__view(st, w, final, &res);
    if (rc == 0 && !st->cbs.numbers_only)
        rc = sg_result__json(&res, final, &st->out);
    if (rc != 0) {
        /* Out of memory, or a result past SG_STREAMS_RESULT_MAX: this one is lost. */
        sg_streams__oom(st, "window result");
        return;
    }
    res.json = st->cbs.numbers_only ? NULL : st->out.data;
    res.json_len = st->cbs.numbers_only ? 0 : st->out.len;
    res.origin = st->origin_off ? *sg_window__origin(st, w) : st->origin;
    st->cbs.result(st->cbs.arg, &res);
}
