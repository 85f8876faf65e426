/* The aggregation path alone: events (already decoded) folded into per-key windows by the
 * streams engine, without JSON, sockets or writers. Reports events per second of CPU time on
 * one core, heap bytes per open key-window (stream, window, key-table slot and heap entry, with
 * malloc's overhead), and apart from those the engine's fixed bytes made at create.
 *
 *   agg_bench --keys N --events M [--fields F] [--quantiles p50,p99] [--window 10s]
 *
 * Keys are visited round-robin with event time advancing slowly, so every key has one open
 * window most of the time and windows fire as time passes their end (as in steady state). */
#include <malloc.h>
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
                    "[--window DURATION]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long keys = 10000, events = 5000000, fields = 1;
    const char *quantiles = "", *window = "10s";
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
        else
            usage();
    }
    if (keys < 1 || events < 1 || fields < 1 || fields > SG_EVENT_MAX_FIELDS)
        usage();

    char err[256];
    struct sg_config cfg;
    sg_config_defaults(&cfg);
    char max_keys[32];
    snprintf(max_keys, sizeof(max_keys), "%ld", keys);
    if (sg_config_set(&cfg, "window.quantiles", quantiles, err, sizeof(err)) ||
        sg_config_set(&cfg, "window.size", window, err, sizeof(err)) ||
        sg_config_set(&cfg, "stream.max_keys", max_keys, err, sizeof(err)) ||
        sg_config_set(&cfg, "window.idle_timeout", "1h", err, sizeof(err))) {
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

    /* The engine's fixed structures (made at create) are reported apart from what each key and
     * window costs. */
    size_t heap_before = heap_in_use();
    struct sg_streams *st = sg_streams_create(&cfg, metrics, &log, &cbs);
    if (!st) {
        fprintf(stderr, "agg_bench: cannot create the engine\n");
        return 1;
    }
    size_t heap_created = heap_in_use();
    /* Warm-up pass: every key gets its stream and first window (allocation happens here). */
    const int64_t t0 = 1700000000000LL;
    enum sg_reject why;
    for (long k = 0; k < keys; k++) {
        ev.key = key_text[k];
        ev.key_len = key_len[k];
        ev.ts_ms = t0;
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
        ev.key = key_text[k];
        ev.key_len = key_len[k];
        ev.ts_ms = t0 + i / keys;
        for (long f = 0; f < fields; f++)
            ev.fields[f].value = (double)(x >> 40) / 1000.0;
        if (sg_streams_add(st, &ev, t0, &why) != 0) {
            fprintf(stderr, "agg_bench: event %ld rejected (%s)\n", i, sg_reject_label(why));
            return 1;
        }
    }
    double cpu = cpu_seconds() - start;

    printf("{\"keys\":%ld,\"events\":%ld,\"fields\":%ld,\"quantiles\":\"%s\",\"window\":\"%s\","
           "\"cpu_seconds\":%.3f,\"events_per_second\":%.0f,\"bytes_per_open_key_window\":%.0f,"
           "\"engine_fixed_bytes\":%zu,\"results\":%llu}\n",
           keys, events, fields, quantiles, window, cpu, (double)events / cpu, bytes_per_window,
           heap_created - heap_before, (unsigned long long)results);
    sg_streams_destroy(st);
    sg_metrics_destroy(metrics);
    sg_config_free(&cfg);
    free(key_text);
    free(key_len);
    return 0;
}
