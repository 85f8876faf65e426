/* The aggregation path alone: events (already decoded) folded into per-key windows by the
 * streams engine, without JSON, sockets or writers. Reports events per second of CPU time on
 * one core, heap bytes per open key-window (stream, window, key-table slot and heap entry, with
 * malloc's overhead), and apart from those the engine's fixed bytes made at create.
 *
 *   agg_bench --keys N --events M [--fields F] [--quantiles p50,p99] [--window 10s]
 *             [--predict true|false]  (forecasts per fired window; on by default, as in the server)
 *             [--lateness DURATION]  (window.allowed_lateness; 0 by default: with more, each key
 *                                     holds the windows that wait it out)
 *             [--values uniform|sensor] [--order roundrobin|random]
 *
 * Keys are visited round-robin with event time advancing slowly, so every key has one open
 * window most of the time and windows fire as time passes their end (as in steady state).
 * Round-robin visits the keys' memory in the order it was allocated, which the hardware
 * prefetcher follows; `--order random` draws each event's key uniformly (as streamgate-gen
 * does), so that a key's stream, window and sketches are cache misses as in production.
 *
 * Values: `uniform` (the default) draws every value uniformly from [0, 16777), so each window's
 * values spread over four decades. `sensor` makes them the way streamgate-gen's sensor source
 * does (src/tools/gen/source.c): fields cycle through its value, temp, humidity and seq shapes,
 * each a per-key level plus a slow sine plus small noise (value also has a spike about one event in
 * 200), and seq counts the key's events from 1,000,000 on (a generator that has been running
 * for a while, not its first window); so each window's values span a narrow range, as in
 * production. */
#include <malloc.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "streamgate/config.h"
#include "streamgate/event.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "streamgate/streams.h"

static uint64_t results;

static void on_result(void *arg, const struct sg_window_result *res)
{
    (void)arg;
    (void)res;
    results++;
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void usage(void)
{
    fprintf(stderr, "usage: agg_bench --keys N --events M [--fields F] [--quantiles LIST] "
                    "[--window DURATION] [--values uniform|sensor] [--order roundrobin|random] "
                    "[--predict true|false] [--lateness DURATION]\n");
    exit(2);
}

/* ---- sensor-like values: streamgate-gen's shapes, made cheap enough per event ------------ */

#define BENCH_SIN_BITS 12 /* the generator's 4096-entry sine table */

/* One field of one key. The generator's sine index ((ts + phase) mod period) * 4096 / period
 * is kept as a 32-bit phase that wraps once per period: inc = 2^32 / period per millisecond,
 * so an event costs a multiply instead of two divisions. */
struct bench_shape {
    int32_t level; /* hundredths */
    int32_t amp;   /* hundredths */
    uint32_t inc;
    uint32_t phase0;
};

enum bench_kind { BENCH_VALUE, BENCH_TEMP, BENCH_HUMIDITY, BENCH_SEQ };

struct bench_sensors {
    long fields;
    int16_t sin_table[1 << BENCH_SIN_BITS];
    struct bench_shape *shape; /* keys * fields */
    uint64_t *seq;             /* per key */
};

/* splitmix64's finalizer, as the generator hashes keys. */
static uint64_t bench_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static struct bench_shape bench_shape_make(uint64_t h, int32_t level, int32_t amp,
                                           int64_t min_period, int64_t t0)
{
    int64_t period = min_period + (int64_t)(h % (uint64_t)(4 * min_period));
    int64_t phase = (int64_t)((h >> 24) % (uint64_t)period);
    struct bench_shape sh = {level, amp, (uint32_t)((1ULL << 32) / (uint64_t)period), 0};
    /* The phase at ts = 0 such that ts = t0 lands where the generator's formula would. */
    int64_t x = (t0 + phase) % period;
    sh.phase0 = (uint32_t)(((uint64_t)x << 32) / (uint64_t)period - (uint64_t)t0 * sh.inc);
    return sh;
}

static int bench_sensors_init(struct bench_sensors *bs, long keys, long fields, int64_t t0)
{
    bs->fields = fields;
    for (int i = 0; i < (1 << BENCH_SIN_BITS); i++)
        bs->sin_table[i] = (int16_t)lround(32767.0 * sin(2.0 * M_PI * i / (1 << BENCH_SIN_BITS)));
    bs->shape = malloc((size_t)keys * (size_t)fields * sizeof(*bs->shape));
    bs->seq = malloc((size_t)keys * sizeof(*bs->seq));
    if (!bs->shape || !bs->seq)
        return -1;
    for (long k = 0; k < keys; k++) {
        bs->seq[k] = 1000000;
        for (long f = 0; f < fields; f++) {
            /* Fields past the generator's four repeat its shapes with other per-key draws. */
            uint64_t h = bench_mix((uint64_t)k ^ (0x5e45011ULL * (uint64_t)(f / 4 + 1)));
            struct bench_shape *sh = &bs->shape[k * fields + f];
            switch (f % 4) {
            case BENCH_VALUE:
                *sh = bench_shape_make(h >> 8, 2000 + (int32_t)(h % 6000),
                                       500 + (int32_t)(h % 1500), 60000, t0);
                break;
            case BENCH_TEMP:
                *sh =
                    bench_shape_make(h >> 17, 1500 + (int32_t)((h >> 13) % 1000), 300, 600000, t0);
                break;
            case BENCH_HUMIDITY:
                *sh =
                    bench_shape_make(h >> 29, 3000 + (int32_t)((h >> 23) % 4000), 1000, 300000, t0);
                break;
            default:
                memset(sh, 0, sizeof(*sh));
                break;
            }
        }
    }
    return 0;
}

static void bench_sensors_free(struct bench_sensors *bs)
{
    free(bs->shape);
    free(bs->seq);
}

/* The fields of key k's next event at time ts; `r` is a fresh 64-bit random draw. */
static void bench_sensors_values(struct bench_sensors *bs, long k, int64_t ts, uint64_t r,
                                 struct sg_event *ev)
{
    const struct bench_shape *sh = &bs->shape[k * bs->fields];
    uint64_t seq = bs->seq[k]++;
    for (long f = 0; f < bs->fields; f++, sh++) {
        /* Each field takes its noise from its own bits of r (rotated per field). */
        uint64_t rf = (r >> (f % 8 * 8)) | (r << (64 - f % 8 * 8) % 64);
        uint32_t ph = (uint32_t)((uint64_t)ts * sh->inc) + sh->phase0;
        int64_t wave = (int64_t)sh->amp * bs->sin_table[ph >> (32 - BENCH_SIN_BITS)] / 32767;
        int64_t c;
        switch (f % 4) {
        case BENCH_VALUE:
            c = sh->level + wave + (int64_t)(rf % 201) + (int64_t)((rf >> 16) % 201) - 200;
            if (((rf >> 32) & 1023) < 5) /* about one in 200: a spike */
                c += 5000 + (int64_t)((rf >> 42) % 5000);
            break;
        case BENCH_TEMP:
            c = sh->level + wave + (int64_t)(rf % 61) - 30;
            break;
        case BENCH_HUMIDITY:
            c = sh->level + wave + (int64_t)((rf >> 16) % 201) - 100;
            break;
        default:
            ev->fields[f].value = (double)seq;
            continue;
        }
        ev->fields[f].value = (double)c / 100.0;
    }
}

int main(int argc, char **argv)
{
    long keys = 10000, events = 5000000, fields = 1;
    const char *quantiles = "", *window = "10s", *values = "uniform", *order = "roundrobin";
    const char *predict = "true", *lateness = "0";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--keys") == 0)
            keys = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--events") == 0)
            events = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--fields") == 0)
            fields = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--quantiles") == 0)
            quantiles = argv[i + 1];
        else if (strcmp(argv[i], "--window") == 0)
            window = argv[i + 1];
        else if (strcmp(argv[i], "--values") == 0)
            values = argv[i + 1];
        else if (strcmp(argv[i], "--order") == 0)
            order = argv[i + 1];
        else if (strcmp(argv[i], "--predict") == 0)
            predict = argv[i + 1];
        else if (strcmp(argv[i], "--lateness") == 0)
            lateness = argv[i + 1];
        else
            usage();
    }
    bool sensor = strcmp(values, "sensor") == 0;
    bool random_order = strcmp(order, "random") == 0;
    if (keys < 1 || events < 1 || fields < 1 || fields > SG_EVENT_MAX_FIELDS ||
        (!sensor && strcmp(values, "uniform") != 0) ||
        (!random_order && strcmp(order, "roundrobin") != 0))
        usage();

    char err[256];
    struct sg_config cfg;
    sg_config_defaults(&cfg);
    char max_keys[32];
    snprintf(max_keys, sizeof(max_keys), "%ld", keys);
    if (sg_config_set(&cfg, "window.quantiles", quantiles, err, sizeof(err)) ||
        sg_config_set(&cfg, "window.size", window, err, sizeof(err)) ||
        sg_config_set(&cfg, "stream.max_keys", max_keys, err, sizeof(err)) ||
        sg_config_set(&cfg, "window.idle_timeout", "1h", err, sizeof(err)) ||
        sg_config_set(&cfg, "predict.enabled", predict, err, sizeof(err)) ||
        sg_config_set(&cfg, "window.allowed_lateness", lateness, err, sizeof(err))) {
        fprintf(stderr, "agg_bench: %s\n", err);
        return 2;
    }
    struct sg_log log;
    sg_log_init(&log, SG_LOG_ERROR, stderr);
    struct sg_metrics *metrics = sg_metrics_create();
    struct sg_streams_callbacks cbs = {.result = on_result};

    /* Key texts and field names prepared up front: the benchmark measures the engine. */
    char(*key_text)[24] = malloc((size_t)keys * sizeof(*key_text));
    size_t *key_len = malloc((size_t)keys * sizeof(*key_len));
    for (long k = 0; k < keys; k++)
        key_len[k] = (size_t)snprintf(key_text[k], sizeof(key_text[k]), "sensor-%ld", k);
    static char names[SG_EVENT_MAX_FIELDS][16];
    struct sg_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.raw = "{}";
    ev.raw_len = 2;
    ev.ts_from_event = true;
    ev.nfields = (size_t)fields;
    for (long f = 0; f < fields; f++) {
        int n = snprintf(names[f], sizeof(names[f]), "field%ld", f);
        ev.fields[f].name = names[f];
        ev.fields[f].name_len = (size_t)n;
    }

    /* Made before the heap is measured: the benchmark's own tables are not the engine's. */
    const int64_t t0 = 1700000000000LL;
    struct bench_sensors *bs = NULL;
    if (sensor) {
        bs = malloc(sizeof(*bs));
        if (!bs || bench_sensors_init(bs, keys, fields, t0) != 0) {
            fprintf(stderr, "agg_bench: out of memory\n");
            return 1;
        }
    }

    /* The engine's fixed structures (made at create) are reported apart from what each key and
     * window costs. */
    size_t heap_before = heap_in_use();
    struct sg_streams *st = sg_streams_create(&cfg, metrics, &log, NULL, &cbs);
    if (!st) {
        fprintf(stderr, "agg_bench: cannot create the engine\n");
        return 1;
    }
    size_t heap_created = heap_in_use();
    /* Warm-up pass: every key gets its stream and first window (allocation happens here). */
    enum sg_reject why;
    for (long k = 0; k < keys; k++) {
        ev.key = key_text[k];
        ev.key_len = key_len[k];
        ev.ts_ms = t0;
        if (bs)
            bench_sensors_values(bs, k, t0, bench_mix((uint64_t)k), &ev);
        else
            for (long f = 0; f < fields; f++)
                ev.fields[f].value = (double)k;
        sg_streams_add(st, &ev, t0, &why);
    }
    size_t heap_open = heap_in_use();
    double bytes_per_window = (double)(heap_open - heap_created) / (double)keys;

    /* Timed pass: event time moves by 1 ms per full round over the keys. */
    double start = cpu_seconds();
    uint64_t x = 12345;
    for (long i = 0; i < events; i++) {
        long k = i % keys;
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        if (random_order) /* Lemire's multiply-shift on the LCG's strong high bits */
            k = (long)(((x >> 32) * (uint64_t)keys) >> 32);
        ev.key = key_text[k];
        ev.key_len = key_len[k];
        ev.ts_ms = t0 + i / keys;
        if (bs) /* the LCG's low bits are weak: mixed before they become noise */
            bench_sensors_values(bs, k, ev.ts_ms, bench_mix(x), &ev);
        else
            for (long f = 0; f < fields; f++)
                ev.fields[f].value = (double)(x >> 40) / 1000.0;
        if (sg_streams_add(st, &ev, t0, &why) != 0) {
            fprintf(stderr, "agg_bench: event %ld rejected (%s)\n", i, sg_reject_label(why));
            return 1;
        }
    }
    double cpu = cpu_seconds() - start;

    /* Bytes per open key-window again after the timed pass: the warm-up gave each key one
     * value, while sketches grow with the range of values their window has seen. */
    double bytes_after = (double)(heap_in_use() - heap_created) / (double)keys;

    printf("{\"keys\":%ld,\"events\":%ld,\"fields\":%ld,\"quantiles\":\"%s\",\"window\":\"%s\","
           "\"values\":\"%s\",\"order\":\"%s\",\"predict\":%s,\"cpu_seconds\":%.3f,\"events_per_"
           "second\":%.0f,"
           "\"bytes_per_open_key_window\":%.0f,\"bytes_per_key_after\":%.0f,"
           "\"engine_fixed_bytes\":%zu,\"results\":%llu}\n",
           keys, events, fields, quantiles, window, values, order, predict, cpu,
           (double)events / cpu, bytes_per_window, bytes_after, heap_created - heap_before,
           (unsigned long long)results);
    if (bs) {
        bench_sensors_free(bs);
        free(bs);
    }
    sg_streams_destroy(st);
    sg_metrics_destroy(metrics);
    sg_config_free(&cfg);
    free(key_text);
    free(key_len);
    return 0;
}
