/* The key table and the live query: growth through many resizes, backward-shift deletion under
 * churn, partitions, render_key and render_list. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/stream/stream_internal.h"
#include "streamgate/buf.h"
#include "streamgate/common.h"
#include "streamgate/config.h"
#include "streamgate/event.h"
#include "streamgate/hash.h"
#include "streamgate/metrics.h"
#include "streamgate/streams.h"

struct fx {
    struct sg_config cfg;
    struct sg_metrics *metrics;
    struct sg_streams *st;
    struct sg_event ev;
    size_t nresults;
    int32_t last_partition;
    char last_key[64];
};

static void on_result(void *arg, const struct sg_window_result *r)
{
    struct fx *f = arg;
    f->nresults++;
    f->last_partition = r->partition;
    snprintf(f->last_key, sizeof(f->last_key), "%.*s", (int)r->key_len, r->key);
}

static void fx_start(struct fx *f)
{
    char err[256];
    cr_assert_eq(sg_config_set(&f->cfg, "window.quantiles", "", err, sizeof(err)), 0);
    cr_assert_eq(sg_config_validate(&f->cfg, err, sizeof(err)), 0, "%s", err);
    f->metrics = sg_metrics_create();
    struct sg_streams_callbacks cbs = {.result = on_result, .arg = f};
    f->st = sg_streams_create(&f->cfg, f->metrics, NULL, NULL, &cbs);
    cr_assert_not_null(f->st);
}

static void fx_stop(struct fx *f)
{
    sg_streams_destroy(f->st);
    sg_metrics_destroy(f->metrics);
    sg_config_free(&f->cfg);
}

/* An event of `key` at `ts` with one field, v = 1. */
static struct sg_event *fill(struct fx *f, const char *key, int64_t ts)
{
    struct sg_event *ev = &f->ev;
    memset(ev, 0, sizeof(*ev));
    ev->raw = "{}";
    ev->raw_len = 2;
    ev->key = key;
    ev->key_len = strlen(key);
    ev->ts_ms = ts;
    ev->fields[0].name = "v";
    ev->fields[0].name_len = 1;
    ev->fields[0].value = 1;
    ev->nfields = 1;
    return ev;
}

static int add(struct fx *f, const char *key, int64_t ts, int64_t now)
{
    enum sg_reject why = SG_REJECT_COUNT;
    return sg_streams_add(f->st, fill(f, key, ts), now, &why);
}

static bool has_key(struct fx *f, const char *key)
{
    struct sg_buf out;
    sg_buf_init(&out, 0);
    int rc = sg_streams_render_key(f->st, key, strlen(key), &out);
    sg_buf_free(&out);
    cr_assert(rc == 0 || rc == -ENOENT);
    return rc == 0;
}

/* Every key in the table is reachable from its home slot without crossing an empty slot, and
 * the count matches: what backward-shift deletion must preserve. */
static void check_table(const struct sg_streams *st)
{
    size_t n = 0;
    for (size_t i = 0; i <= st->mask; i++) {
        const struct sg_stream *s = st->slots[i];
        if (!s)
            continue;
        n++;
        for (size_t j = s->hash & st->mask; j != i; j = (j + 1) & st->mask)
            cr_assert_not_null(st->slots[j], "hole between home and slot of a key");
    }
    cr_assert_eq(n, st->nkeys);
}

Test(table, grows_through_many_resizes)
{
    struct fx f = {0};
    sg_config_defaults(&f.cfg);
    f.cfg.window_size_ms = 3600000;
    fx_start(&f);
    enum { KEYS = 100000 };
    char key[32];
    size_t resizes = 0, slots = f.st->mask + 1;
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        cr_assert_eq(add(&f, key, 1000, 0), 0);
        if (f.st->mask + 1 != slots) {
            resizes++;
            slots = f.st->mask + 1;
            cr_assert_leq(f.st->nkeys * 4, slots * 3);
        }
    }
    cr_assert_geq(resizes, 10);
    cr_assert_eq(f.st->nkeys, KEYS);
    cr_assert_leq(f.st->nkeys * 4, (f.st->mask + 1) * 3); /* load at most 3/4 */
    check_table(f.st);
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        cr_assert(has_key(&f, key), "lost %s", key);
    }
    cr_assert_not(has_key(&f, "key-100000"));
    cr_assert_not(has_key(&f, ""));
    /* Adding to known keys makes no new stream. */
    for (int i = 0; i < KEYS; i += 7) {
        snprintf(key, sizeof(key), "key-%d", i);
        cr_assert_eq(add(&f, key, 1000, 0), 0);
    }
    cr_assert_eq(f.st->nkeys, KEYS);
    struct sg_gauge *g = sg_metrics_gauge(f.metrics, SG_METRIC_KEYS_ACTIVE, NULL);
    cr_assert_eq(g->value, (double)KEYS);
    fx_stop(&f);
}

Test(table, backward_shift_under_churn)
{
    struct fx f = {0};
    sg_config_defaults(&f.cfg);
    f.cfg.window_time = SG_TIME_PROCESSING;
    f.cfg.window_size_ms = 1000;
    f.cfg.stream_key_idle_timeout_ms = 2500;
    fx_start(&f);
    enum { ROUNDS = 40, PER_ROUND = 5000, KEEP = 2000 };
    char key[32];
    /* Each round adds fresh keys and touches the "keep" keys; fresh keys of older rounds go
     * idle and are evicted while new ones arrive, so deletions and insertions interleave. */
    for (int r = 0; r < ROUNDS; r++) {
        int64_t now = (int64_t)r * 1000 + 10;
        for (int i = 0; i < PER_ROUND; i++) {
            snprintf(key, sizeof(key), "r%d-%d", r, i);
            cr_assert_eq(add(&f, key, 0, now), 0);
        }
        for (int i = 0; i < KEEP; i++) {
            snprintf(key, sizeof(key), "keep-%d", i);
            cr_assert_eq(add(&f, key, 0, now), 0);
        }
        sg_streams_tick(f.st, now + 500);
        check_table(f.st);
    }
    /* Rounds whose windows fired more than 2.5 s ago are gone; the last three are here. */
    for (int r = 0; r < ROUNDS; r++) {
        bool alive = r >= ROUNDS - 3;
        for (int i = 0; i < PER_ROUND; i += 97) {
            snprintf(key, sizeof(key), "r%d-%d", r, i);
            cr_assert_eq(has_key(&f, key), alive, "%s: %s", key, alive ? "lost" : "not evicted");
        }
    }
    for (int i = 0; i < KEEP; i++) {
        snprintf(key, sizeof(key), "keep-%d", i);
        cr_assert(has_key(&f, key), "lost %s", key);
    }
    cr_assert_eq(f.st->nkeys, 3 * PER_ROUND + KEEP);
    uint64_t evicted = sg_metrics_counter_value(f.metrics, SG_METRIC_KEYS_EVICTED_TOTAL, NULL);
    cr_assert_eq(evicted, (uint64_t)(ROUNDS - 3) * PER_ROUND);

    /* Evict everything: the table shrinks back and stays consistent. */
    sg_streams_tick(f.st, 1000000);
    sg_streams_tick(f.st, 2000000);
    cr_assert_eq(f.st->nkeys, 0);
    cr_assert_eq(f.st->mask + 1, SG_STREAMS_MIN_SLOTS);
    cr_assert_null(f.st->idle_head);
    cr_assert_eq(add(&f, "keep-1", 0, 2000001), 0);
    cr_assert(has_key(&f, "keep-1"));
    fx_stop(&f);
}

Test(table, partition_is_kafkas)
{
    struct fx f = {0};
    sg_config_defaults(&f.cfg);
    f.cfg.stream_partitions = 7;
    fx_start(&f);
    const char *keys[] = {"a", "sensor-42", "", "\xff\xfe", "a much longer key than the others"};
    for (size_t i = 0; i < SG_ARRAY_SIZE(keys); i++) {
        size_t len = strlen(keys[i]);
        int32_t p = sg_streams_partition(f.st, keys[i], len);
        cr_assert_eq(p, sg_kafka_partition(keys[i], len, 7));
        cr_assert(p >= 0 && p < 7);
    }
    /* The same value in results and in the live query. */
    cr_assert_eq(add(&f, "sensor-42", 100, 0), 0);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nresults, 1);
    cr_assert_eq(f.last_partition, sg_kafka_partition("sensor-42", 9, 7));
    struct sg_buf out;
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_streams_render_list(f.st, 10, &out), 0);
    cr_assert_eq(sg_buf_append_char(&out, '\0'), 0);
    cJSON *root = cJSON_Parse(out.data);
    cr_assert_not_null(root);
    cJSON *k = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "keys"), 0);
    cr_assert_eq(cJSON_GetObjectItem(k, "partition")->valueint,
                 sg_kafka_partition("sensor-42", 9, 7));
    cJSON_Delete(root);
    sg_buf_free(&out);
    fx_stop(&f);
}

Test(query, render_key)
{
    struct fx f = {0};
    sg_config_defaults(&f.cfg);
    f.cfg.window_type = SG_WINDOW_HOPPING;
    f.cfg.window_size_ms = 10000;
    f.cfg.window_slide_ms = 5000;
    fx_start(&f);
    struct sg_buf out;
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_streams_render_key(f.st, "k", 1, &out), -ENOENT); /* the 404 path */
    cr_assert_eq(out.len, 0);

    cr_assert_eq(add(&f, "k", 12000, 0), 0);
    cr_assert_eq(add(&f, "k", 13000, 0), 0);
    cr_assert_eq(add(&f, "other", 13000, 0), 0);
    cr_assert_eq(sg_streams_render_key(f.st, "k", 1, &out), 0);
    cr_assert_eq(sg_buf_append_char(&out, '\0'), 0);
    cJSON *root = cJSON_Parse(out.data);
    cr_assert_not_null(root, "%s", out.data);
    cr_assert_str_eq(cJSON_GetObjectItem(root, "key")->valuestring, "k");
    cr_assert_eq(cJSON_GetObjectItem(root, "partition")->valueint,
                 sg_streams_partition(f.st, "k", 1));
    cJSON *wins = cJSON_GetObjectItem(root, "windows");
    cr_assert_eq(cJSON_GetArraySize(wins), 2);
    int64_t starts[] = {5000, 10000};
    for (int i = 0; i < 2; i++) {
        cJSON *w = cJSON_GetArrayItem(wins, i);
        cr_assert_eq((int64_t)cJSON_GetObjectItem(w, "window_start")->valuedouble, starts[i]);
        cr_assert_eq(cJSON_GetObjectItem(w, "count")->valueint, 2);
        cr_assert_null(cJSON_GetObjectItem(w, "final"));
        cr_assert_not_null(cJSON_GetObjectItem(cJSON_GetObjectItem(w, "fields"), "v"));
    }
    cJSON_Delete(root);

    /* A key whose windows all fired is still known, with no windows. */
    sg_streams_flush(f.st);
    sg_buf_reset(&out);
    cr_assert_eq(sg_streams_render_key(f.st, "k", 1, &out), 0);
    cr_assert_eq(sg_buf_append_char(&out, '\0'), 0);
    root = cJSON_Parse(out.data);
    cr_assert_not_null(root);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(root, "windows")), 0);
    cJSON_Delete(root);

    /* A full buffer is an error, not a truncated document. */
    struct sg_buf small;
    sg_buf_init(&small, 8);
    cr_assert_eq(sg_streams_render_key(f.st, "k", 1, &small), -E2BIG);
    sg_buf_free(&small);
    sg_buf_free(&out);
    fx_stop(&f);
}

/* What sg_streams_open_windows handed over. */
struct open_seen {
    size_t n, stop_after;
    char keys[8][16];
    int64_t starts[8];
    uint64_t counts[8];
    bool any_final, any_json;
};

static int on_open(void *arg, const struct sg_window_result *r)
{
    struct open_seen *o = arg;
    cr_assert_lt(o->n, 8);
    snprintf(o->keys[o->n], sizeof(o->keys[0]), "%.*s", (int)r->key_len, r->key);
    o->starts[o->n] = r->window_start;
    o->counts[o->n] = r->count;
    o->any_final |= r->final;
    o->any_json |= r->json != NULL;
    cr_assert_eq(r->nfields, 1);
    cr_assert_eq(r->fields[0].sum.value, (double)r->count);
    return ++o->n == o->stop_after ? -EINTR : 0;
}

/* The open windows' numbers: one key's, every key's, none of a key without a stream, and the
 * walk stops at the callback's first nonzero return. Nothing fires or is emitted. */
Test(query, open_windows)
{
    struct fx f = {0};
    sg_config_defaults(&f.cfg);
    f.cfg.window_type = SG_WINDOW_HOPPING;
    f.cfg.window_size_ms = 10000;
    f.cfg.window_slide_ms = 5000;
    fx_start(&f);
    cr_assert_eq(add(&f, "k", 12000, 0), 0);
    cr_assert_eq(add(&f, "k", 13000, 0), 0);
    cr_assert_eq(add(&f, "other", 13000, 0), 0);

    struct open_seen o = {0};
    cr_assert_eq(sg_streams_open_windows(f.st, "k", 1, on_open, &o), 0);
    cr_assert_eq(o.n, 2);
    for (size_t i = 0; i < 2; i++) {
        cr_assert_str_eq(o.keys[i], "k");
        cr_assert_eq(o.counts[i], 2);
    }
    cr_assert(o.starts[0] + o.starts[1] == 15000, "windows 5000 and 10000");
    cr_assert_not(o.any_final);
    cr_assert_not(o.any_json);

    memset(&o, 0, sizeof(o));
    cr_assert_eq(sg_streams_open_windows(f.st, "none", 4, on_open, &o), 0);
    cr_assert_eq(o.n, 0);
    cr_assert_eq(sg_streams_open_windows(f.st, NULL, 0, on_open, &o), 0);
    cr_assert_eq(o.n, 4, "2 windows of k, 2 of other");
    memset(&o, 0, sizeof(o));
    o.stop_after = 3;
    cr_assert_eq(sg_streams_open_windows(f.st, NULL, 0, on_open, &o), -EINTR);
    cr_assert_eq(o.n, 3);
    cr_assert_eq(f.nresults, 0, "a query emits nothing");
    fx_stop(&f);
}

Test(query, render_list_limit_and_truncated)
{
    struct fx f = {0};
    sg_config_defaults(&f.cfg);
    f.cfg.window_type = SG_WINDOW_HOPPING;
    f.cfg.window_size_ms = 10000;
    f.cfg.window_slide_ms = 5000;
    fx_start(&f);
    struct sg_buf out;
    sg_buf_init(&out, 0);

    cr_assert_eq(sg_streams_render_list(f.st, 5, &out), 0);
    cr_assert_eq(sg_buf_append_char(&out, '\0'), 0);
    cr_assert_str_eq(out.data, "{\"active_keys\":0,\"keys\":[],\"truncated\":false}");

    char key[16];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        for (int j = 0; j <= i; j++)
            cr_assert_eq(add(&f, key, 12000, 0), 0);
    }
    sg_buf_reset(&out);
    cr_assert_eq(sg_streams_render_list(f.st, 3, &out), 0);
    cr_assert_eq(sg_buf_append_char(&out, '\0'), 0);
    cJSON *root = cJSON_Parse(out.data);
    cr_assert_not_null(root, "%s", out.data);
    cr_assert_eq(cJSON_GetObjectItem(root, "active_keys")->valueint, 10);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(root, "keys")), 3);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(root, "truncated")));
    cJSON_Delete(root);

    sg_buf_reset(&out);
    cr_assert_eq(sg_streams_render_list(f.st, 10, &out), 0);
    cr_assert_eq(sg_buf_append_char(&out, '\0'), 0);
    root = cJSON_Parse(out.data);
    cr_assert_not_null(root);
    cJSON *keys = cJSON_GetObjectItem(root, "keys");
    cr_assert_eq(cJSON_GetArraySize(keys), 10);
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(root, "truncated")));
    bool seen[10] = {false};
    for (cJSON *k = keys->child; k; k = k->next) {
        static const char *const order[] = {"key", "partition", "open_windows", "count"};
        size_t m = 0;
        for (cJSON *it = k->child; it; it = it->next, m++)
            cr_assert_str_eq(it->string, order[m]);
        cr_assert_eq(m, 4);
        int i = atoi(cJSON_GetObjectItem(k, "key")->valuestring + 1);
        cr_assert(i >= 0 && i < 10 && !seen[i]);
        seen[i] = true;
        cr_assert_eq(cJSON_GetObjectItem(k, "open_windows")->valueint, 2);
        /* Each event sits in two hopping windows. */
        cr_assert_eq(cJSON_GetObjectItem(k, "count")->valueint, 2 * (i + 1));
        cr_assert_eq(cJSON_GetObjectItem(k, "partition")->valueint,
                     sg_streams_partition(f.st, cJSON_GetObjectItem(k, "key")->valuestring,
                                          strlen(cJSON_GetObjectItem(k, "key")->valuestring)));
    }
    cJSON_Delete(root);
    sg_buf_free(&out);
    fx_stop(&f);
}

Test(lifecycle, destroy_without_flush_and_null)
{
    sg_streams_destroy(NULL);
    struct fx f = {0};
    sg_config_defaults(&f.cfg);
    char err[128];
    cr_assert_eq(sg_config_set(&f.cfg, "window.distinct_field", "u", err, sizeof(err)), 0);
    f.cfg.window_emit_interval_ms = 100;
    fx_start(&f);
    sg_streams_tick(f.st, 0);
    for (int i = 0; i < 100; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(add(&f, key, i * 1000, 0), 0);
    }
    cr_assert_eq(f.nresults, 90); /* windows of 10 s: all but the last fired */
    /* Open windows, the dirty list and the free list are freed without output. */
    sg_streams_destroy(f.st);
    f.st = NULL;
    cr_assert_eq(f.nresults, 90);
    sg_metrics_destroy(f.metrics);
    sg_config_free(&f.cfg);
}

Test(lifecycle, metrics_registered_at_create)
{
    struct fx f = {0};
    sg_config_defaults(&f.cfg);
    fx_start(&f);
    struct sg_buf out;
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_metrics_render(f.metrics, &out), 0);
    cr_assert_eq(sg_buf_append_char(&out, '\0'), 0);
    const char *names[] = {
        "streamgate_keys_active 0",         "streamgate_windows_open 0",
        "streamgate_windows_fired_total 0", "streamgate_window_updates_total 0",
        "streamgate_late_events_total 0",   "streamgate_watermark_lag_seconds 0",
        "streamgate_keys_evicted_total 0",  "streamgate_field_names_dropped_total 0"};
    for (size_t i = 0; i < SG_ARRAY_SIZE(names); i++)
        cr_assert_not_null(strstr(out.data, names[i]), "missing %s", names[i]);
    sg_buf_free(&out);
    fx_stop(&f);
}

/* ---- partitions owned through Kafka (role aggregator) ---------------------------------- */

static struct sg_streams_origin last_origin;

static void on_result_origin(void *arg, const struct sg_window_result *r)
{
    on_result(arg, r);
    last_origin = r->origin;
}

static void fx_start_parts(struct fx *f, uint64_t idle_timeout_ms)
{
    char err[256];
    sg_config_defaults(&f->cfg);
    f->cfg.window_size_ms = 1000;
    f->cfg.window_idle_timeout_ms = idle_timeout_ms;
    f->cfg.role = SG_ROLE_AGGREGATOR;
    cr_assert_eq(sg_config_set(&f->cfg, "window.quantiles", "", err, sizeof(err)), 0);
    f->metrics = sg_metrics_create();
    struct sg_streams_callbacks cbs = {.result = on_result_origin, .arg = f};
    f->st = sg_streams_create(&f->cfg, f->metrics, NULL, NULL, &cbs);
    cr_assert_not_null(f->st);
}

static int add_rec(struct fx *f, int32_t part, const char *key, int64_t ts, int64_t offset,
                   int64_t now)
{
    enum sg_reject why = SG_REJECT_COUNT;
    return sg_streams_add_record(f->st, fill(f, key, ts), part, offset, now, &why);
}

static uint64_t late_count(struct fx *f)
{
    return sg_metrics_counter_value(f->metrics, SG_METRIC_LATE_EVENTS_TOTAL, NULL);
}

/* An event is late against its own partition's watermark; windows fire at the minimum. */
Test(partitions, lateness_is_per_partition)
{
    struct fx f = {0};
    fx_start_parts(&f, 60000);
    cr_assert_eq(sg_streams_partition_assign(f.st, 0, NULL), 0);
    cr_assert_eq(sg_streams_partition_assign(f.st, 1, NULL), 0);
    cr_assert_eq(add_rec(&f, 0, "a", 5500, 0, 1), 0);
    cr_assert_eq(add_rec(&f, 1, "b", 1500, 0, 2), 0);
    cr_assert_eq(f.nresults, 0, "partition 1 holds firing back");
    cr_assert_eq(add_rec(&f, 1, "b2", 2500, 1, 3), 0);
    cr_assert_eq(f.nresults, 1, "b's [1000,2000) fired at the minimum watermark");
    cr_assert_str_eq(f.last_key, "b");
    /* Behind partition 0's watermark, ahead of partition 1's: on time in partition 1. */
    cr_assert_eq(add_rec(&f, 1, "c", 3200, 2, 4), 0);
    cr_assert_eq(late_count(&f), 0);
    cr_assert(has_key(&f, "c"));
    /* Ahead of the minimum, behind its own partition: late. */
    cr_assert_eq(add_rec(&f, 0, "a", 4200, 1, 5), 0);
    cr_assert_eq(late_count(&f), 1);
    fx_stop(&f);
}

/* Revoking a partition drops its keys and windows without a result. */
Test(partitions, revoke_drops_without_firing)
{
    struct fx f = {0};
    fx_start_parts(&f, 60000);
    cr_assert_eq(sg_streams_partition_assign(f.st, 0, NULL), 0);
    cr_assert_eq(sg_streams_partition_assign(f.st, 1, NULL), 0);
    for (int i = 0; i < 50; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(add_rec(&f, i % 2, key, 100 + i, i, 1), 0);
    }
    size_t before = f.st->mem_bytes;
    cr_assert_eq(sg_streams_partition_revoke(f.st, 0), 25);
    cr_assert_eq(f.nresults, 0);
    cr_assert_lt(f.st->mem_bytes, before);
    cr_assert_not(has_key(&f, "k0"));
    cr_assert(has_key(&f, "k1"));
    check_table(f.st);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nresults, 25, "only partition 1's windows fire");
    fx_stop(&f);
}

/* Holds name the first record of the oldest open window and the partition's time before it;
 * results carry their window's origin. */
Test(partitions, holds_and_origins)
{
    struct fx f = {0};
    fx_start_parts(&f, 60000);
    cr_assert_eq(sg_streams_partition_assign(f.st, 0, NULL), 0);
    cr_assert_eq(add_rec(&f, 0, "a", 1100, 10, 1), 0);
    cr_assert_eq(add_rec(&f, 0, "b", 1200, 11, 2), 0);
    cr_assert_eq(add_rec(&f, 0, "a", 2100, 12, 3), 0);
    cr_assert_eq(f.nresults, 2);
    cr_assert_eq(last_origin.offset, 11, "b's window began at offset 11");
    cr_assert_eq(last_origin.watermark, 1100);
    struct sg_streams_hold h[2];
    sg_streams_partition_holds(f.st, h, 2);
    cr_assert_eq(h[0].origin.offset, 12);
    cr_assert_eq(h[0].origin.watermark, 1200);
    cr_assert_eq(h[0].origin.max_event_time, 1200);
    cr_assert_eq(h[0].min_end, 3000);
    cr_assert_eq(h[1].origin.offset, -1);
    /* A new owner starting from that origin judges lateness as the first one did. */
    sg_streams_partition_revoke(f.st, 0);
    cr_assert_eq(sg_streams_partition_assign(f.st, 0, &h[0].origin), 0);
    cr_assert_eq(add_rec(&f, 0, "z", 150, 13, 4), 0);
    cr_assert_eq(late_count(&f), 1, "behind the stored watermark: late");
    fx_stop(&f);
}

/* A partition assigned without a time holds firing back until window.idle_timeout. */
Test(partitions, unknown_partition_holds_until_idle)
{
    struct fx f = {0};
    fx_start_parts(&f, 1000);
    sg_streams_tick(f.st, 0);
    cr_assert_eq(sg_streams_partition_assign(f.st, 0, NULL), 0);
    cr_assert_eq(sg_streams_partition_assign(f.st, 1, NULL), 0);
    cr_assert_eq(add_rec(&f, 0, "a", 100, 0, 10), 0);
    cr_assert_eq(add_rec(&f, 0, "a", 5100, 1, 20), 0);
    cr_assert_eq(f.nresults, 0);
    sg_streams_tick(f.st, 500);
    cr_assert_eq(f.nresults, 0);
    sg_streams_tick(f.st, 1100);
    cr_assert_eq(f.nresults, 1, "partition 1 idle for idle_timeout: no longer holds back");
    fx_stop(&f);
}
