/* What a window result costs while it waits in the Tablestore writer's queue.
 *
 *   ts_row_bench [--keys N] [--fields F] [--events-per-key E] [--quantiles p50,p90,p99]
 *
 * The streams engine folds E events of F fields into one window per key (10 s tumbling; the
 * quantiles default to streamgate's, p50/p90/p99), then emits every window at once as an early
 * update (window.emit_interval), which leaves the windows open, so the engine frees nothing
 * meanwhile. Each result goes to the real Tablestore writer, pointed at a port nothing listens
 * on, so the writer holds every row (as it does while Tablestore is down) and sends none.
 * Reports, per row:
 *   - charged: the bytes the writer charges to the memory budget for it (SG_BUDGET_QUEUES);
 *   - heap: the heap growth (glibc mallinfo2: in use plus mmapped) across the emission, divided
 *     by the rows: each row's allocation with malloc's overhead, the writer's index growing,
 *     and, spread over all rows, the scratch the writer and the engine make once;
 *   - json: the result's JSON text, for comparison.
 * Memory figures only: nothing here is timed. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "streamgate/budget.h"
#include "streamgate/config.h"
#include "streamgate/event.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "streamgate/sink.h"
#include "streamgate/sink_tablestore.h"
#include "streamgate/streams.h"

struct bench {
    struct sg_sink *sink;
    size_t rows, failed, json;
};

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void on_result(void *arg, const struct sg_window_result *res)
{
    struct bench *b = arg;
    int rc = b->sink->ops->write_result(b->sink, res, NULL);
    b->json += res->json_len;
    if (rc == 0)
        b->rows++;
    else
        b->failed++;
}

static void usage(void)
{
    fprintf(stderr, "usage: ts_row_bench [--keys N] [--fields F] [--events-per-key E] "
                    "[--quantiles LIST]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long keys = 10000, fields = 3, per_key = 20;
    const char *quantiles = "p50,p90,p99";
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--keys") == 0)
            keys = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--fields") == 0)
            fields = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--events-per-key") == 0)
            per_key = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--quantiles") == 0)
            quantiles = argv[i + 1];
        else
            usage();
    }
    if (keys < 1 || per_key < 1 || fields < 1 || fields > 3)
        usage();

    char err[1024] = "";
    char max_keys[32];
    snprintf(max_keys, sizeof(max_keys), "%ld", keys);
    struct sg_config cfg;
    sg_config_defaults(&cfg);
    if (sg_config_set(&cfg, "window.quantiles", quantiles, err, sizeof(err)) ||
        sg_config_set(&cfg, "window.size", "10s", err, sizeof(err)) ||
        sg_config_set(&cfg, "window.emit_interval", "1s", err, sizeof(err)) ||
        sg_config_set(&cfg, "window.idle_timeout", "1h", err, sizeof(err)) ||
        sg_config_set(&cfg, "stream.max_keys", max_keys, err, sizeof(err)) ||
        sg_config_set(&cfg, "tablestore.endpoint", "http://127.0.0.1:1", err, sizeof(err)) ||
        sg_config_set(&cfg, "tablestore.instance", "bench", err, sizeof(err)) ||
        sg_config_set(&cfg, "tablestore.access_key_id", "AKID", err, sizeof(err)) ||
        sg_config_set(&cfg, "tablestore.access_key_secret", "SECRET", err, sizeof(err))) {
        fprintf(stderr, "ts_row_bench: %s\n", err);
        return 2;
    }
    struct sg_log log;
    sg_log_init(&log, SG_LOG_OFF, stderr);
    struct sg_metrics *metrics = sg_metrics_create();
    struct sg_budget *budget = sg_budget_create((size_t)1 << 40, 90, 50, metrics, &log);
    uv_loop_t loop;
    struct bench b = {0};
    if (!metrics || !budget || uv_loop_init(&loop) != 0 ||
        sg_sink_tablestore_create(&loop, &cfg, budget, NULL, metrics, &log, &b.sink, err,
                                  sizeof(err)) != 0) {
        fprintf(stderr, "ts_row_bench: %s\n", err[0] ? err : "out of memory");
        return 1;
    }
    struct sg_streams_callbacks cbs = {.result = on_result, .arg = &b};
    struct sg_streams *st = sg_streams_create(&cfg, metrics, &log, NULL, &cbs);
    if (!st) {
        fprintf(stderr, "ts_row_bench: cannot create the engine\n");
        return 1;
    }

    /* Sensor-like fields: a per-key level and a little movement from event to event. */
    static const char *const names[3] = {"value", "temp", "humidity"};
    static const double levels[3] = {50.0, 21.0, 40.0};
    struct sg_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.raw = "{}";
    ev.raw_len = 2;
    ev.ts_from_event = true;
    ev.nfields = (size_t)fields;
    for (long f = 0; f < fields; f++) {
        ev.fields[f].name = names[f];
        ev.fields[f].name_len = strlen(names[f]);
    }
    const int64_t t0 = 1700000000000LL;
    sg_streams_tick(st, t0); /* arms the early updates: the first is due at t0 + 1 s */
    char key[32];
    enum sg_reject why;
    for (long k = 0; k < keys; k++) {
        ev.key = key;
        ev.key_len = (size_t)snprintf(key, sizeof(key), "sensor-%ld", k);
        for (long e = 0; e < per_key; e++) {
            ev.ts_ms = t0 + e * 100;
            for (long f = 0; f < fields; f++)
                ev.fields[f].value = levels[f] + (double)(k % 97) / 4.0 + (double)(e % 7) * 0.37;
            if (sg_streams_add(st, &ev, t0, &why) != 0) {
                fprintf(stderr, "ts_row_bench: event rejected (%s)\n", sg_reject_label(why));
                return 1;
            }
        }
    }
    size_t heap_before = heap_in_use();
    sg_streams_tick(st, t0 + 1000); /* the early update of every window */
    size_t heap = heap_in_use() - heap_before;

    size_t charged = sg_budget_used(budget);
    printf("{\"keys\":%ld,\"fields\":%ld,\"events_per_key\":%ld,\"quantiles\":\"%s\","
           "\"rows\":%zu,\"failed\":%zu,\"charged_bytes_per_row\":%.1f,"
           "\"heap_bytes_per_row\":%.1f,\"json_bytes_per_row\":%.1f}\n",
           keys, fields, per_key, quantiles, b.rows, b.failed,
           (double)charged / (double)(b.rows ? b.rows : 1),
           (double)heap / (double)(b.rows ? b.rows : 1),
           (double)b.json / (double)(b.rows ? b.rows : 1));

    sg_streams_destroy(st);
    b.sink->ops->destroy(b.sink);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    sg_budget_destroy(budget);
    sg_metrics_destroy(metrics);
    sg_config_free(&cfg);
    return b.failed || b.rows != (size_t)keys ? 1 : 0;
}
