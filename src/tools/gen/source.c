/* The event source: keys (uniform or Zipf), event time (a fixed step per event, disorder, late
 * events), per-key sequence numbers, unique ids, and the fields of the two data sets. Every
 * random draw comes from one xoshiro256** stream seeded from --seed, in a fixed order per
 * event, so a seed reproduces the same events byte for byte.
 *
 * Values are made in integer hundredths and written with exactly two decimals: the double the
 * server parses is then c / 100.0, which the expectation can reproduce exactly. Formatting is
 * done by hand into the caller's buffer because it is the hot path (millions of events a
 * second); there is no allocation per event. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

/* Sine in 1/32767 units and the inverse CDF of a unit exponential in 1/1000 units: tables so
 * that values need no libm call per event. */
static void gen_source__tables(struct gen_source *src)
{
    for (int i = 0; i < GEN_SIN_SIZE; i++)
        src->sin_table[i] = (int16_t)lround(32767.0 * sin(2.0 * M_PI * i / GEN_SIN_SIZE));
    for (int i = 0; i < GEN_EXP_SIZE; i++) {
        double v = -log(1.0 - (i + 0.5) / GEN_EXP_SIZE) * 1000.0;
        src->exp_table[i] = (uint16_t)(v > 65535 ? 65535 : lround(v));
    }
}

static const char *const gen_sensor_fields[] = {"value", "temp", "humidity", "seq"};
static const char *const gen_log_fields[] = {"latency_ms", "bytes", "seq"};

static const char *const *gen_source__fields(enum gen_source_kind kind, int *n)
{
    if (kind == GEN_SOURCE_SENSORS) {
        *n = 4;
        return gen_sensor_fields;
    }
    *n = 3;
    return gen_log_fields;
}

int gen_source_field_index(enum gen_source_kind kind, const char *name)
{
    int n;
    const char *const *f = gen_source__fields(kind, &n);
    for (int i = 0; i < n; i++)
        if (strcmp(f[i], name) == 0)
            return i;
    return -1;
}

const char *gen_source_field_name(enum gen_source_kind kind, int idx)
{
    int n;
    const char *const *f = gen_source__fields(kind, &n);
    return idx >= 0 && idx < n ? f[idx] : NULL;
}

/* ---- random numbers ------------------------------------------------------------------ */

static uint64_t gen_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A bijection of 64-bit integers (splitmix64's finalizer): distinct inputs, distinct ids. */
static uint64_t gen_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t gen_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t gen_rand(struct gen_source *src)
{
    uint64_t *s = src->rng;
    uint64_t r = gen_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = gen_rotl(s[3], 45);
    return r;
}

/* Uniform in [0, n) without modulo bias worth mentioning (Lemire's multiply-shift). */
static inline uint64_t gen_below(struct gen_source *src, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)gen_rand(src) * n) >> 64);
}

static inline double gen_unit(struct gen_source *src)
{
    return (double)(gen_rand(src) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- set-up -------------------------------------------------------------------------- */

/* Vose's alias method: O(1) draws from the Zipf weights 1/(k+1)^s. */
static int gen_source__alias(struct gen_source *src, double s)
{
    uint64_t n = src->keys;
    double *p = malloc(n * sizeof(*p));
    uint32_t *small = malloc(n * sizeof(*small)), *large = malloc(n * sizeof(*large));
    src->alias_prob = malloc(n * sizeof(*src->alias_prob));
    src->alias_idx = malloc(n * sizeof(*src->alias_idx));
    int rc = -ENOMEM;
    if (!p || !small || !large || !src->alias_prob || !src->alias_idx)
        goto out;
    double total = 0;
    for (uint64_t k = 0; k < n; k++)
        total += p[k] = pow((double)(k + 1), -s);
    uint64_t ns = 0, nl = 0;
    for (uint64_t k = 0; k < n; k++) {
        p[k] = p[k] * (double)n / total;
        if (p[k] < 1.0)
            small[ns++] = (uint32_t)k;
        else
            large[nl++] = (uint32_t)k;
    }
    while (ns > 0 && nl > 0) {
        uint32_t l = small[--ns], g = large[--nl];
        src->alias_prob[l] = p[l];
        src->alias_idx[l] = g;
        p[g] = (p[g] + p[l]) - 1.0;
        if (p[g] < 1.0)
            small[ns++] = g;
        else
            large[nl++] = g;
    }
    while (nl > 0) {
        uint32_t g = large[--nl];
        src->alias_prob[g] = 1.0;
        src->alias_idx[g] = g;
    }
    while (ns > 0) { /* only rounding leaves entries here */
        uint32_t l = small[--ns];
        src->alias_prob[l] = 1.0;
        src->alias_idx[l] = l;
    }
    rc = 0;
out:
    free(p);
    free(small);
    free(large);
    return rc;
}

static int64_t gen_floor_div(int64_t a, int64_t b);

int gen_source_init(struct gen_source *src, const struct gen_opts *o, char *errstr,
                    size_t errstr_size)
{
    memset(src, 0, sizeof(*src));
    gen_source__tables(src);
    src->kind = o->source;
    src->dist = o->dist;
    src->keys = o->keys;
    uint64_t x = o->seed;
    for (int i = 0; i < 4; i++)
        src->rng[i] = gen_splitmix(&x);
    src->id_salt = gen_splitmix(&x);
    src->ts_step = o->ts_step;
    src->next_ts = o->start_ts_set ? o->start_ts : (int64_t)gen_now_ms();
    src->disorder = o->disorder;
    src->late = o->late;
    src->max_delay_ms = o->max_delay_ms;
    src->lateness_ms = o->lateness_ms;
    src->window_ms = o->window_size_ms;
    src->signal = o->trend > 0 || o->season > 0 || o->noise > 0 || o->anomaly_rate > 0;
    src->trend = o->trend;
    src->season = o->season;
    src->period = o->period;
    src->noise = o->noise;
    src->anomaly_rate = o->anomaly_rate;
    /* Events per key and window, as the options make them: a window mean's noise is
     * noise / sqrt(that). */
    double per_window = o->ts_step > 0 ? (double)o->window_size_ms / (double)o->ts_step
                                       : o->rate * (double)o->window_size_ms / 1000.0;
    per_window /= (double)o->keys;
    src->shift = o->anomaly_size * o->noise / sqrt(per_window > 1 ? per_window : 1);
    src->first_window = gen_floor_div(src->next_ts, src->window_ms);
    src->seq = calloc(o->keys, sizeof(*src->seq));
    if (!src->seq) {
        snprintf(errstr, errstr_size, "out of memory for %llu keys", (unsigned long long)o->keys);
        return -ENOMEM;
    }
    if (o->dist == GEN_DIST_ZIPF && gen_source__alias(src, o->zipf_s) != 0) {
        snprintf(errstr, errstr_size, "out of memory for the Zipf table");
        return -ENOMEM;
    }
    const char *list = o->expect_fields;
    if (!list)
        list = o->source == GEN_SOURCE_SENSORS ? "value" : "latency_ms";
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char name[64];
        if (len == 0 || len >= sizeof(name)) {
            snprintf(errstr, errstr_size, "--expect-fields: bad list \"%s\"", list);
            return -EINVAL;
        }
        memcpy(name, p, len);
        name[len] = '\0';
        int idx = gen_source_field_index(o->source, name);
        if (idx < 0) {
            snprintf(errstr, errstr_size,
                     "--expect-fields: %s is not a numeric field of this source", name);
            return -EINVAL;
        }
        if (src->nfields == GEN_MAX_FIELDS) {
            snprintf(errstr, errstr_size, "--expect-fields: at most %d fields", GEN_MAX_FIELDS);
            return -EINVAL;
        }
        src->field_idx[src->nfields++] = idx;
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

void gen_source_destroy(struct gen_source *src)
{
    free(src->seq);
    free(src->alias_prob);
    free(src->alias_idx);
    src->seq = NULL;
    src->alias_prob = NULL;
    src->alias_idx = NULL;
}

uint32_t gen_source_next_key(struct gen_source *src)
{
    if (src->dist == GEN_DIST_ROUND_ROBIN)
        return (uint32_t)(src->turn++ % src->keys);
    uint64_t i = gen_below(src, src->keys);
    if (src->dist == GEN_DIST_ZIPF && gen_unit(src) >= src->alias_prob[i])
        i = src->alias_idx[i];
    return (uint32_t)i;
}

/* ---- formatting ---------------------------------------------------------------------- */

static inline char *gen_put_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static inline char *gen_put_i64(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return gen_put_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return gen_put_u64(p, (uint64_t)v);
}

/* Hundredths as a decimal with two places: 2153 -> 21.53, -5 -> -0.05. */
static inline char *gen_put_cents(char *p, int64_t c)
{
    uint64_t u = (uint64_t)c;
    if (c < 0) {
        *p++ = '-';
        u = (uint64_t)0 - u;
    }
    p = gen_put_u64(p, u / 100);
    *p++ = '.';
    *p++ = (char)('0' + (u / 10) % 10);
    *p++ = (char)('0' + u % 10);
    return p;
}

static inline char *gen_put_str(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define GEN_PUT_LIT(p, lit) gen_put_str((p), (lit), sizeof(lit) - 1)

size_t gen_source_key_name(enum gen_source_kind kind, uint64_t k, char *keybuf)
{
    char *p = keybuf;
    if (kind == GEN_SOURCE_SENSORS)
        p = GEN_PUT_LIT(p, "sensor-");
    else
        p = GEN_PUT_LIT(p, "svc-");
    p = gen_put_u64(p, k);
    *p = '\0';
    return (size_t)(p - keybuf);
}

static int64_t gen_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* A per-key sine in hundredths: amp * sin(2 pi (ts + phase) / period). */
static inline int64_t gen_wave(const struct gen_source *src, int64_t ts, uint64_t h, int64_t amp,
                               int64_t min_period)
{
    int64_t period = min_period + (int64_t)(h % (uint64_t)(4 * min_period));
    int64_t phase = (int64_t)((h >> 24) % (uint64_t)period);
    int64_t x = (ts + phase) % period;
    if (x < 0)
        x += period;
    int64_t idx = (x * GEN_SIN_SIZE) / period;
    return amp * src->sin_table[idx] / 32767;
}

/* The planted signal of key hash h in window w, in value units: a level, a drift and a sine. */
static double gen_signal(const struct gen_source *src, uint64_t h, int64_t w)
{
    double level = 20 + (double)(h % 6000) / 100;
    double slope = src->trend * (0.5 + (double)((h >> 20) % 1000) / 1000);
    if ((h >> 40) & 1)
        slope = -slope;
    double phase = (double)((h >> 41) % src->period);
    return level + slope * (double)w +
           src->season * sin(2 * M_PI * ((double)w + phase) / (double)src->period);
}

/* A standard normal draw (Box-Muller) from two uniform draws. */
static double gen_normal(struct gen_source *src)
{
    double u1 = gen_unit(src), u2 = gen_unit(src);
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

/* The value field with a planted signal, in hundredths; `planted` says whether the event's
 * (key, window) pair was chosen for an anomaly, `signal` gets the noise-free signal. */
static int64_t gen_signal_value(struct gen_source *src, uint32_t key, int64_t ts, uint64_t h,
                                bool *planted, double *signal)
{
    int64_t w = gen_floor_div(ts, src->window_ms); /* from the run's first window */
    *signal = gen_signal(src, h, w - src->first_window);
    double v = *signal + src->noise * gen_normal(src);
    uint64_t pick = gen_mix((uint64_t)w * 0x9e3779b97f4a7c15ULL ^ key ^ src->id_salt);
    *planted = (double)(pick >> 11) / 9007199254740992.0 < src->anomaly_rate;
    if (*planted)
        v += (pick & 1) ? src->shift : -src->shift;
    return llround(v * 100);
}

size_t gen_source_make(struct gen_source *src, uint32_t key, int64_t lane_max, int64_t now_ms,
                       char *out, struct gen_rec *rec)
{
    /* Event time: fixed order of draws whatever is chosen, so one choice never shifts the
     * random stream of later events. */
    int64_t t = src->ts_step > 0 ? src->next_ts : now_ms;
    src->next_ts += src->ts_step;
    double u = gen_unit(src);
    int64_t delay = (int64_t)gen_below(src, (uint64_t)src->max_delay_ms);
    int64_t ts = t;
    if (u < src->late) {
        /* Behind everything this connection already carried by more than the lateness plus a
         * window: whatever else arrives first, the server's watermark has passed its window. */
        if (lane_max != GEN_NO_TS)
            ts = lane_max - src->lateness_ms - src->window_ms - delay;
    } else if (u < src->late + src->disorder) {
        ts = t - 1 - delay;
    }

    /* The watermark the server keeps (highest event time seen minus the lateness), followed in
     * the order events are made: an event is late when its window ended at or before it. */
    int64_t wend = gen_floor_div(ts, src->window_ms) * src->window_ms + src->window_ms;
    bool late = src->has_max && wend <= src->max_ts - src->lateness_ms;
    if (!src->has_max || ts > src->max_ts) {
        src->max_ts = ts;
        src->has_max = true;
    }

    uint64_t seq = src->seq[key]++;
    uint64_t id = gen_mix(src->n++ ^ src->id_salt);
    uint64_t h = gen_mix((uint64_t)key ^ (src->id_salt * 31));

    char *p = out;
    p = GEN_PUT_LIT(p, "{\"key\":\"");
    p += gen_source_key_name(src->kind, key, p);
    p = GEN_PUT_LIT(p, "\",\"ts\":");
    p = gen_put_i64(p, ts);
    p = GEN_PUT_LIT(p, ",\"seq\":");
    p = gen_put_u64(p, seq);
    p = GEN_PUT_LIT(p, ",\"id\":\"");
    static const char hex[] = "0123456789abcdef";
    for (int i = 60; i >= 0; i -= 4)
        *p++ = hex[(id >> i) & 15];
    *p++ = '"';

    double vals[GEN_MAX_FIELDS + 1];
    bool planted = false;
    double signal = 0;
    if (src->kind == GEN_SOURCE_SENSORS) {
        uint64_t r1 = gen_rand(src), r2 = gen_rand(src);
        int64_t value = 2000 + (int64_t)(h % 6000) +
                        gen_wave(src, ts, h >> 8, 500 + (int64_t)(h % 1500), 60000) +
                        (int64_t)(r1 % 201) + (int64_t)((r1 >> 16) % 201) - 200;
        if (((r1 >> 32) & 1023) < 5) /* about one in 200: a spike */
            value += 5000 + (int64_t)((r1 >> 42) % 5000);
        if (src->signal) /* the planted signal instead, with its own spikes only */
            value = gen_signal_value(src, key, ts, h, &planted, &signal);
        int64_t temp = 1500 + (int64_t)((h >> 13) % 1000) +
                       gen_wave(src, ts, h >> 17, 300, 600000) + (int64_t)(r2 % 61) - 30;
        int64_t hum = 3000 + (int64_t)((h >> 23) % 4000) +
                      gen_wave(src, ts, h >> 29, 1000, 300000) + (int64_t)((r2 >> 16) % 201) - 100;
        p = GEN_PUT_LIT(p, ",\"value\":");
        p = gen_put_cents(p, value);
        p = GEN_PUT_LIT(p, ",\"temp\":");
        p = gen_put_cents(p, temp);
        p = GEN_PUT_LIT(p, ",\"humidity\":");
        p = gen_put_cents(p, hum);
        vals[0] = (double)value / 100.0;
        vals[1] = (double)temp / 100.0;
        vals[2] = (double)hum / 100.0;
        vals[3] = (double)seq;
    } else {
        uint64_t r1 = gen_rand(src), r2 = gen_rand(src);
        unsigned lv = (unsigned)(r1 % 100);
        int64_t base = 500 + (int64_t)(h % 4500); /* 5 to 50 ms */
        int64_t lat = base + base * src->exp_table[(r1 >> 8) & (GEN_EXP_SIZE - 1)] / 1000;
        int64_t bytes = 200 + (int64_t)(r2 % 20000);
        if (lv < 5) {
            p = GEN_PUT_LIT(p, ",\"level\":\"error\"");
            lat *= 5;
            bytes = 100 + (int64_t)(r2 % 400);
        } else if (lv < 15) {
            p = GEN_PUT_LIT(p, ",\"level\":\"warn\"");
        } else if (lv < 25) {
            p = GEN_PUT_LIT(p, ",\"level\":\"debug\"");
        } else {
            p = GEN_PUT_LIT(p, ",\"level\":\"info\"");
        }
        if (((r1 >> 32) & 1023) < 5)
            lat += 100000; /* a one-second stall */
        p = GEN_PUT_LIT(p, ",\"latency_ms\":");
        p = gen_put_cents(p, lat);
        p = GEN_PUT_LIT(p, ",\"bytes\":");
        p = gen_put_i64(p, bytes);
        vals[0] = (double)lat / 100.0;
        vals[1] = (double)bytes;
        vals[2] = (double)seq;
    }
    *p++ = '}';
    *p++ = '\n';

    if (rec) {
        rec->key = key;
        rec->late = late;
        rec->planted = planted;
        rec->signal = signal;
        rec->ts = ts;
        for (int i = 0; i < src->nfields; i++)
            rec->v[i] = vals[src->field_idx[i]];
    }
    return (size_t)(p - out);
}
