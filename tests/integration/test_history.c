/* GET /v1/history beyond the stored rows: the open windows of a key, or of every key, folded
 * into roll-ups (live=true with rollup=true), time slices across keys newest first (order=desc)
 * and with every key's open windows (live=true). The real gateway writes to the real emulator,
 * and every answer is compared with what was sent. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "tablestore_util.h"

#define WRITTEN                                                                                    \
    "streamgate_sink_records_total{sink=\"tablestore\",stream=\"agg\",result=\"written\"}"

/* A gateway writing to emulator e, early emissions every 50 ms, `extra` after. */
static void start_gateway(struct sgt_proc *p, struct emu *e, const char *const *extra)
{
    static char secret[320], results[320];
    const char *argv[64], *more[16] = {"--window-emit-interval", "50ms", "--query-timeout", "2s"};
    size_t n = 4;
    for (; extra && *extra; extra++)
        more[n++] = *extra;
    more[n] = NULL;
    build_args(argv, e, secret, results, more);
    sgt_start(p, argv, NULL);
}

static void post(const struct sgt_proc *p, const char *body)
{
    struct sgt_response r;
    sgt_post(p->http, "application/x-ndjson", body, &r);
    cr_assert_eq(r.status, 202, "%d: %s", r.status, r.body);
    sgt_response_free(&r);
}

/* Waits until `path` lists `want` windows, `open` of them not final (early emissions stored):
 * the answer, or a failed test after 20 s. */
static cJSON *wait_windows(const struct sgt_proc *p, const char *path, int want, int open)
{
    int status = 0, got = -1, not_final = -1;
    for (int64_t until = sgt_mono_ms() + 20000; sgt_mono_ms() < until; sgt_sleep_ms(20)) {
        cJSON *doc = get_json(p->http, path, NULL, &status);
        const cJSON *w;
        got = not_final = 0;
        cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(doc, "windows"))
        {
            got++;
            not_final += cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(w, "final"));
        }
        if (status == 200 && got == want && not_final == open)
            return doc;
        cJSON_Delete(doc);
    }
    cr_assert_fail("%s: %d windows, %d not final (status %d); want %d and %d", path, got, not_final,
                   status, want, open);
    return NULL;
}

/* An event of key zz an hour (window.allowed_lateness) after window w's start: the windows
 * before w fire, w and those after it stay open. */
static void move_watermark(const struct sgt_proc *p, int w)
{
    char line[128];
    snprintf(line, sizeof(line), "{\"key\":\"zz\",\"ts\":%" PRId64 ",\"value\":1}\n",
             BASE_TS + 3600 * 1000 + (int64_t)w * WINDOW);
    post(p, line);
}

static double num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    cr_assert(cJSON_IsNumber(v), "no number %s", name);
    return v->valuedouble;
}

/* Checks a roll-up's "value" field against the `n` values sent (sorted here): count, sum, min
 * and max exactly, each quantile within 1% of the exact order statistic. */
static void expect_values(const cJSON *rollup, double *vals, size_t n, const char *what)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(rollup, "fields"), "value");
    cr_assert(v, "%s: no value field", what);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += vals[i];
    qsort(vals, n, sizeof(vals[0]), cmp_double);
    cr_expect_eq(num(v, "count"), (double)n, "%s", what);
    cr_expect(fabs(num(v, "sum") - sum) <= 1e-9 * sum, "%s: sum %.17g, sent %.17g", what,
              num(v, "sum"), sum);
    cr_expect_eq(num(v, "min"), vals[0], "%s", what);
    cr_expect_eq(num(v, "max"), vals[n - 1], "%s", what);
    static const struct {
        const char *name;
        double q;
    } quants[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}};
    for (size_t i = 0; i < 3; i++) {
        double exact = vals[(size_t)floor(quants[i].q * (double)(n - 1))];
        double est = num(v, quants[i].name);
        cr_expect(fabs(est - exact) <= 0.01 * exact, "%s: %s: %.6g, exact %.6g", what,
                  quants[i].name, est, exact);
    }
}

/* Key r1: windows 0 to 9 of 40 values each; windows 0 to 7 fire (a later event of another key
 * moves the watermark past them), 8 and 9 stay open and are stored as early emissions. The live
 * roll-up folds the open ones from memory in place of their stored rows: count, sum, min and max
 * are exactly what was sent, each quantile within 1% of the exact order statistic, and only the
 * windows starting in [from, to) count. */
Test(history, live_rollup_of_one_key, .timeout = 180)
{
    struct emu e = {0};
    emu_start(&e, NULL);
    struct sgt_proc p;
    static const char *const max_rows[] = {"--query-max-rows", "12", NULL};
    start_gateway(&p, &e, max_rows);
    static char body[64 * 1024];
    static double vals[400];
    size_t len = 0, nv = 0;
    for (int w = 0; w < 10; w++)
        for (int i = 0; i < 40; i++) {
            double v = (double)((i * 37 + w * 11) % 101) + w * 0.25;
            vals[nv++] = v;
            len += (size_t)snprintf(body + len, sizeof(body) - len,
                                    "{\"key\":\"r1\",\"ts\":%" PRId64 ",\"value\":%.17g}\n",
                                    BASE_TS + (int64_t)w * WINDOW + i, v);
        }
    post(&p, body);
    move_watermark(&p, 8);
    char path[512];
    snprintf(path, sizeof(path), "/v1/history/r1?from=%" PRId64 "&to=%" PRId64, BASE_TS,
             BASE_TS + 10 * WINDOW);
    cJSON_Delete(wait_windows(&p, path, 10, 2));

    /* Every window: the two open ones from memory, not their stored early emissions too. */
    snprintf(path, sizeof(path),
             "/v1/history/r1?from=%" PRId64 "&to=%" PRId64 "&rollup=true&live=true", BASE_TS,
             BASE_TS + 10 * WINDOW);
    int status;
    cJSON *doc = get_json(p.http, path, NULL, &status);
    cr_assert_eq(status, 200, "%s", cJSON_PrintUnformatted(doc));
    cr_expect(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "live")));
    cr_expect_eq(num(doc, "open_windows"), 2);
    cr_expect_eq(num(doc, "windows"), 10);
    cr_expect_eq(num(doc, "count"), (double)nv);
    expect_values(doc, vals, nv, "r1");
    cJSON_Delete(doc);

    /* Windows 5 to 8: three stored, one open; the others are outside the range. */
    snprintf(path, sizeof(path),
             "/v1/history/r1?from=%" PRId64 "&to=%" PRId64 "&rollup=true&live=true",
             BASE_TS + 5 * WINDOW, BASE_TS + 9 * WINDOW);
    doc = get_json(p.http, path, NULL, &status);
    cr_assert_eq(status, 200);
    cr_expect_eq(num(doc, "open_windows"), 1);
    cr_expect_eq(num(doc, "windows"), 4);
    cr_expect_eq(num(doc, "count"), 160);
    cJSON_Delete(doc);

    /* Without live=true: the stored rows only, and no "live". */
    snprintf(path, sizeof(path), "/v1/history/r1?from=%" PRId64 "&to=%" PRId64 "&rollup=true",
             BASE_TS, BASE_TS + 8 * WINDOW);
    doc = get_json(p.http, path, NULL, &status);
    cr_assert_eq(status, 200);
    cr_expect_null(cJSON_GetObjectItemCaseSensitive(doc, "live"));
    cr_expect_eq(num(doc, "count"), 320);
    cJSON_Delete(doc);

    /* 13 open windows are more than query.max_rows (12): a 422, counted, not a partial list. */
    len = 0;
    for (int w = 10; w < 23; w++)
        len += (size_t)snprintf(body + len, sizeof(body) - len,
                                "{\"key\":\"r1\",\"ts\":%" PRId64 ",\"value\":1}\n",
                                BASE_TS + (int64_t)w * WINDOW);
    post(&p, body);
    snprintf(path, sizeof(path), "/v1/history/r1?from=%" PRId64 "&to=%" PRId64 "&live=true",
             BASE_TS + 10 * WINDOW, BASE_TS + 30 * WINDOW);
    doc = get_json(p.http, path, NULL, &status);
    cr_expect_eq(status, 422);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(doc, "error");
    cr_expect(cJSON_IsString(msg) && strstr(msg->valuestring, "query.max_rows"));
    cr_expect_null(cJSON_GetObjectItemCaseSensitive(doc, "windows"));
    cJSON_Delete(doc);
    cr_expect_eq(sgt_metric(p.http, "streamgate_limit_hits_total{limit=\"query_max_rows\"}"), 1);
    stop_no_sanitizer(&p);
    emu_stop(&e);
}

/* Key k of 12 in window w holds 2 events of values 100 k + w and 100 k + w + 1. */
static void send_grid(const struct sgt_proc *p, int keys, int w0, int w1)
{
    static char body[64 * 1024];
    size_t len = 0;
    for (int w = w0; w < w1; w++)
        for (int k = 0; k < keys; k++)
            for (int i = 0; i < 2; i++)
                len += (size_t)snprintf(body + len, sizeof(body) - len,
                                        "{\"key\":\"x%02d\",\"ts\":%" PRId64 ",\"value\":%d}\n", k,
                                        BASE_TS + (int64_t)w * WINDOW + i, 100 * k + w + i);
    post(p, body);
}

/* A new emulator (`emu_args`), and a gateway (`extra` after the usual) that has stored the final
 * windows 0 to `windows` - 1 of `keys` keys (send_grid). */
static void start_grid(struct sgt_proc *p, struct emu *e, const char *const *emu_args, int keys,
                       int windows, const char *const *extra)
{
    emu_start(e, emu_args);
    start_gateway(p, e, extra);
    send_grid(p, keys, 0, windows);
    move_watermark(p, windows);
    cr_assert_geq(sgt_wait_metric(p->http, WRITTEN, keys * windows, 60000), keys * windows);
}

/* Walks every page of `query` (limit 7) and checks the windows come in (window_start, key)
 * order, newest first with `desc`, each with the numbers send_grid sent. Returns how many, and
 * how many were not final. */
static int walk_pages(const struct sgt_proc *p, const char *query, bool desc, int *not_final)
{
    char path[2048], token[1024] = "", last_key[16] = "";
    int64_t last_ws = desc ? INT64_MAX : INT64_MIN;
    int total = 0, pages = 0, status;
    *not_final = 0;
    do {
        snprintf(path, sizeof(path), "%s&limit=7%s%s%s", query, desc ? "&order=desc" : "",
                 token[0] ? "&page=" : "", token);
        cJSON *doc = get_json(p->http, path, NULL, &status);
        cr_assert_eq(status, 200, "%s: %s", path, cJSON_PrintUnformatted(doc));
        const cJSON *w;
        cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(doc, "windows"))
        {
            const char *key = cJSON_GetObjectItemCaseSensitive(w, "key")->valuestring;
            int64_t ws = (int64_t)num(w, "window_start");
            int c = ws != last_ws ? (ws > last_ws ? 1 : -1) : strcmp(key, last_key);
            cr_expect(desc ? c < 0 : c > 0, "%s/%" PRId64 " after %s/%" PRId64, key, ws, last_key,
                      last_ws);
            last_ws = ws;
            snprintf(last_key, sizeof(last_key), "%s", key);
            int k = atoi(key + 1), wi = (int)((ws - BASE_TS) / WINDOW);
            cr_expect_eq(num(w, "count"), 2, "%s/%d", key, wi);
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(w, "fields"), "value");
            cr_expect_eq(num(v, "sum"), 2 * (100 * k + wi) + 1, "%s/%d", key, wi);
            *not_final += cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(w, "final"));
            total++;
        }
        next_page_token(doc, token, sizeof(token));
        cJSON_Delete(doc);
        pages++;
    } while (token[0] && pages < 50);
    cr_expect_lt(pages, 50, "the pages never end");
    return total;
}

/* 12 keys over windows 0 to 5: pages of 7 newest first chain to exactly the windows in the
 * range; then windows 6 and 7 open for two keys (stored as early emissions too) join the last
 * page of a live query once each, in either order. */
Test(history, across_keys_desc_and_live, .timeout = 180)
{
    struct emu e = {0};
    struct sgt_proc p;
    start_grid(&p, &e, NULL, 12, 6, NULL);

    char query[256];
    int not_final;
    /* Windows 1 to 4 of 0 to 5: 48, in both orders. */
    snprintf(query, sizeof(query), "/v1/history?from=%" PRId64 "&to=%" PRId64, BASE_TS + 1 * WINDOW,
             BASE_TS + 5 * WINDOW);
    cr_expect_eq(walk_pages(&p, query, true, &not_final), 48);
    cr_expect_eq(walk_pages(&p, query, false, &not_final), 48);
    cr_expect_eq(not_final, 0);

    /* Two keys' windows 6 and 7 stay open (the watermark is at window 6's start), stored as
     * early emissions. */
    send_grid(&p, 2, 6, 8);
    snprintf(query, sizeof(query), "/v1/history?from=%" PRId64 "&to=%" PRId64, BASE_TS + 6 * WINDOW,
             BASE_TS + 8 * WINDOW);
    char path[512];
    snprintf(path, sizeof(path), "%s&limit=100", query);
    cJSON_Delete(wait_windows(&p, path, 4, 4));
    /* Windows 3 to 7: 36 stored and final, 4 open; with live=true the open ones come from
     * memory, once each (an early emission counted twice would break the order check). */
    snprintf(query, sizeof(query), "/v1/history?from=%" PRId64 "&to=%" PRId64 "&live=true",
             BASE_TS + 3 * WINDOW, BASE_TS + 8 * WINDOW);
    for (int d = 0; d < 2; d++) {
        cr_expect_eq(walk_pages(&p, query, d == 1, &not_final), 40, "order %d", d);
        cr_expect_eq(not_final, 4, "order %d", d);
    }
    /* The open windows only where they start in [from, to). */
    snprintf(query, sizeof(query), "/v1/history?from=%" PRId64 "&to=%" PRId64 "&live=true",
             BASE_TS + 5 * WINDOW, BASE_TS + 7 * WINDOW);
    cr_expect_eq(walk_pages(&p, query, true, &not_final), 14);
    cr_expect_eq(not_final, 2);
    stop_no_sanitizer(&p);
    emu_stop(&e);
}

/* 72 windows in the range, more than query.max_rows (40): pages of 7 still chain to exactly
 * them, in either order, for a page reads only each shard's first windows from where it starts
 * (4 shards: at most 32 index rows a page); a roll-up over the range, which must read them all,
 * is a 422. */
Test(history, across_keys_pages_past_max_rows, .timeout = 180)
{
    struct emu e = {0};
    struct sgt_proc p;
    static const char *const extra[] = {"--query-max-rows", "40", "--tablestore-index-shards", "4",
                                        NULL};
    start_grid(&p, &e, NULL, 12, 6, extra);

    char query[256];
    int not_final;
    snprintf(query, sizeof(query), "/v1/history?from=%" PRId64 "&to=%" PRId64, BASE_TS,
             BASE_TS + 6 * WINDOW);
    cr_expect_eq(walk_pages(&p, query, false, &not_final), 72);
    cr_expect_eq(walk_pages(&p, query, true, &not_final), 72);
    cr_expect_eq(not_final, 0);
    cr_expect_eq(sgt_metric(p.http, "streamgate_limit_hits_total{limit=\"query_max_rows\"}"), 0);

    char path[320];
    int status;
    snprintf(path, sizeof(path), "%s&rollup=true&group=none", query);
    cJSON *doc = get_json(p.http, path, NULL, &status);
    cr_expect_eq(status, 422);
    cJSON_Delete(doc);
    stop_no_sanitizer(&p);
    emu_stop(&e);
}

/* The aggregate of `key` in a roll-up across keys' "keys", or a failed test. */
static const cJSON *key_rollup(const cJSON *doc, const char *key)
{
    const cJSON *o;
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(doc, "keys"))
    {
        if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "key")), key) == 0)
            return o;
    }
    cr_assert_fail("no roll-up of %s in %s", key, cJSON_PrintUnformatted(doc));
    return NULL;
}

/* Keys a1 and a2: windows 0 to 9 of 40 values each, 8 and 9 left open (stored as early
 * emissions); key a0: window 9 only, open. The live roll-up across keys folds each key's open
 * windows from memory in place of their stored rows, per key (group=key, the keys in order) and
 * of every key (group=none): count, sum, min and max exactly what was sent, each quantile
 * within 1% of the exact order statistic. */
Test(history, live_rollup_across_keys, .timeout = 180)
{
    struct emu e = {0};
    emu_start(&e, NULL);
    struct sgt_proc p;
    start_gateway(&p, &e, NULL);
    static char body[64 * 1024];
    static double vals[3][400], all[840];
    size_t len = 0, nv[3] = {0}, na = 0;
    for (int k = 0; k < 3; k++)
        for (int w = k == 0 ? 9 : 0; w < 10; w++)
            for (int i = 0; i < 40; i++) {
                double v = (double)((i * 37 + w * 11 + k * 5) % 101) + w * 0.25 + k * 50;
                vals[k][nv[k]++] = v;
                all[na++] = v;
                len += (size_t)snprintf(body + len, sizeof(body) - len,
                                        "{\"key\":\"a%d\",\"ts\":%" PRId64 ",\"value\":%.17g}\n", k,
                                        BASE_TS + (int64_t)w * WINDOW + i, v);
            }
    post(&p, body);
    move_watermark(&p, 8);
    char path[512];
    snprintf(path, sizeof(path), "/v1/history?from=%" PRId64 "&to=%" PRId64 "&limit=100", BASE_TS,
             BASE_TS + 10 * WINDOW);
    cJSON_Delete(wait_windows(&p, path, 21, 5));

    snprintf(path, sizeof(path),
             "/v1/history?from=%" PRId64 "&to=%" PRId64 "&rollup=true&live=true", BASE_TS,
             BASE_TS + 10 * WINDOW);
    int status;
    cJSON *doc = get_json(p.http, path, NULL, &status);
    cr_assert_eq(status, 200, "%s", cJSON_PrintUnformatted(doc));
    cr_expect(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "live")));
    cr_expect_eq(num(doc, "open_windows"), 5);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "keys")), 3);
    static const char *const keys[] = {"a0", "a1", "a2"};
    for (int k = 0; k < 3; k++) {
        const cJSON *o = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "keys"), k);
        cr_assert(o);
        cr_expect_str_eq(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "key")), keys[k]);
        cr_expect_eq(num(o, "windows"), k == 0 ? 1 : 10, "%s", keys[k]);
        cr_expect_eq(num(o, "open_windows"), k == 0 ? 1 : 2, "%s", keys[k]);
        cr_expect_eq(num(o, "count"), (double)nv[k], "%s", keys[k]);
        expect_values(o, vals[k], nv[k], keys[k]);
    }
    cJSON_Delete(doc);

    snprintf(path, sizeof(path),
             "/v1/history?from=%" PRId64 "&to=%" PRId64 "&rollup=true&live=true&group=none",
             BASE_TS, BASE_TS + 10 * WINDOW);
    doc = get_json(p.http, path, NULL, &status);
    cr_assert_eq(status, 200, "%s", cJSON_PrintUnformatted(doc));
    cr_expect(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "live")));
    cr_expect_null(cJSON_GetObjectItemCaseSensitive(doc, "key"));
    cr_expect_eq(num(doc, "open_windows"), 5);
    cr_expect_eq(num(doc, "windows"), 21);
    cr_expect_eq(num(doc, "count"), (double)na);
    expect_values(doc, all, na, "every key");
    cJSON_Delete(doc);
    stop_no_sanitizer(&p);
    emu_stop(&e);
}

/* Key d1: windows 0 and 1 fire, window 2 stays open and is stored as an early emission, then
 * takes more events. The stored roll-up counts the early emission; the live one counts the
 * window once, as memory holds it now, per key and of every key; an open window past `to`
 * stays out; more open windows than query.max_rows are a 422. */
Test(history, live_rollup_across_keys_counts_a_window_once, .timeout = 180)
{
    struct emu e = {0};
    emu_start(&e, NULL);
    struct sgt_proc p;
    static const char *const max_rows[] = {"--query-max-rows", "20", NULL};
    start_gateway(&p, &e, max_rows);
    static char body[64 * 1024];
    size_t len = 0;
    for (int w = 0; w < 3; w++)
        for (int i = 0; i < 10; i++)
            len += (size_t)snprintf(body + len, sizeof(body) - len,
                                    "{\"key\":\"d1\",\"ts\":%" PRId64 ",\"value\":%d}\n",
                                    BASE_TS + (int64_t)w * WINDOW + i, 10 * w + i);
    post(&p, body);
    move_watermark(&p, 2);
    char path[512], stored[512];
    snprintf(path, sizeof(path), "/v1/history?from=%" PRId64 "&to=%" PRId64 "&limit=100", BASE_TS,
             BASE_TS + 3 * WINDOW);
    cJSON_Delete(wait_windows(&p, path, 3, 1));
    /* Five more events in the open window 2: 35 in all, 15 of them in window 2. */
    len = 0;
    for (int i = 10; i < 15; i++)
        len += (size_t)snprintf(body + len, sizeof(body) - len,
                                "{\"key\":\"d1\",\"ts\":%" PRId64 ",\"value\":%d}\n",
                                BASE_TS + 2 * WINDOW + i, 20 + i);
    /* And one open window after `to`. */
    len += (size_t)snprintf(body + len, sizeof(body) - len,
                            "{\"key\":\"d1\",\"ts\":%" PRId64 ",\"value\":1000}\n",
                            BASE_TS + 3 * WINDOW);
    post(&p, body);
    /* The early emission of window 2 counts again once the next one is stored. */
    snprintf(stored, sizeof(stored), "/v1/history/d1?from=%" PRId64 "&to=%" PRId64 "&rollup=true",
             BASE_TS, BASE_TS + 3 * WINDOW);
    int status = 0;
    double count = 0;
    for (int64_t until = sgt_mono_ms() + 20000; sgt_mono_ms() < until && count != 35;
         sgt_sleep_ms(20)) {
        cJSON *doc = get_json(p.http, stored, NULL, &status);
        count = status == 200 ? num(doc, "count") : 0;
        cJSON_Delete(doc);
    }
    cr_assert_eq(count, 35, "the stored roll-up never reached 35");

    for (int g = 0; g < 2; g++) {
        snprintf(path, sizeof(path),
                 "/v1/history?from=%" PRId64 "&to=%" PRId64 "&rollup=true&live=true%s", BASE_TS,
                 BASE_TS + 3 * WINDOW, g ? "&group=none" : "");
        cJSON *doc = get_json(p.http, path, NULL, &status);
        cr_assert_eq(status, 200, "%s", cJSON_PrintUnformatted(doc));
        const cJSON *o = g ? doc : key_rollup(doc, "d1");
        cr_expect_eq(num(doc, "open_windows"), 1, "group %d", g);
        cr_expect_eq(num(o, "windows"), 3, "group %d", g);
        cr_expect_eq(num(o, "count"), 35, "group %d", g);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(o, "fields"), "value");
        cr_expect_eq(num(v, "sum"), 34 * 35 / 2, "group %d", g);
        cr_expect_eq(num(v, "max"), 34, "group %d", g);
        cJSON_Delete(doc);
    }

    /* 21 open windows of another key: more than query.max_rows (20). */
    len = 0;
    for (int w = 10; w < 31; w++)
        len += (size_t)snprintf(body + len, sizeof(body) - len,
                                "{\"key\":\"d2\",\"ts\":%" PRId64 ",\"value\":1}\n",
                                BASE_TS + (int64_t)w * WINDOW);
    post(&p, body);
    snprintf(path, sizeof(path),
             "/v1/history?from=%" PRId64 "&to=%" PRId64 "&rollup=true&live=true", BASE_TS,
             BASE_TS + 40 * WINDOW);
    cJSON *doc = get_json(p.http, path, NULL, &status);
    cr_expect_eq(status, 422);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(doc, "error");
    /* Refused for the open windows, before any stored row is read. */
    cr_expect(cJSON_IsString(msg) && strstr(msg->valuestring, "live=true would fold in") &&
                  strstr(msg->valuestring, "query.max_rows"),
              "%s", cJSON_GetStringValue(msg));
    cJSON_Delete(doc);
    cr_expect_eq(sgt_metric(p.http, "streamgate_limit_hits_total{limit=\"query_max_rows\"}"), 1);
    stop_no_sanitizer(&p);
    emu_stop(&e);
}

/* streamgate-gen --check-history compares each quantile of a key's roll-up with the exact order
 * statistic of the values it sent (PATH.values beside --expect PATH): they match within 1%;
 * one key's values scaled by 5% are reported as differences; without the values file the
 * quantiles cannot be compared, and the check fails saying so. */
Test(history, gen_check_history_quantiles, .timeout = 180)
{
    struct emu e = {0};
    emu_start(&e, NULL);
    struct sgt_proc p;
    char secret[320], results[320], values[420], args[2048];
    const char *argv[64];
    build_args(argv, &e, secret, results, NULL);
    sgt_start(&p, argv, NULL);
    struct gen_files g;
    gen_store_run(&p, argv, &e, &g);
    const char *expect = g.expect, *out = g.out, *err = g.err;
    snprintf(values, sizeof(values), "%s.values", expect);

    snprintf(args, sizeof(args), "--check-history http://%s --expect '%s' --json", p.http, expect);
    int rc = gen_run(args, out, err);
    char *text = sgt_read_file(out, NULL);
    cr_assert_eq(rc, 0, "check-history: %s %s", text, sgt_read_file(err, NULL));
    cJSON *j = cJSON_Parse(text);
    cr_assert(j, "%s", text);
    cr_expect(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "match")));
    cr_expect_eq(num(j, "keys"), 12);
    cr_expect_eq(num(j, "quantiles"), 36, "p50, p90 and p99 of value for 12 keys");
    cJSON_Delete(j);
    free(text);

    /* The first key's values 5% larger: its quantiles are now off by more than 1%. */
    char *vt = sgt_read_file(values, NULL);
    cr_assert(vt, "no %s", values);
    char *nl = strchr(vt, '\n');
    cr_assert(nl);
    *nl = '\0';
    cJSON *first = cJSON_Parse(vt);
    cr_assert(first);
    cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(first, "values"))
    {
        cr_assert(v->valuedouble > 0, "sensor values are positive");
        cJSON_SetNumberValue(v, v->valuedouble * 1.05);
    }
    char *line = cJSON_PrintUnformatted(first);
    FILE *f = fopen(values, "w");
    cr_assert(f);
    fprintf(f, "%s\n%s", line, nl + 1);
    fclose(f);
    free(line);
    cJSON_Delete(first);
    free(vt);
    rc = gen_run(args, out, err);
    cr_expect_eq(rc, 1, "scaled values passed");
    char *etext = sgt_read_file(err, NULL);
    cr_expect(etext && strstr(etext, "exact order statistic") && strstr(etext, "p50"), "%s", etext);
    free(etext);

    /* Without the values, the roll-ups' quantiles cannot be checked: a failure that says so. */
    cr_assert_eq(remove(values), 0);
    rc = gen_run(args, out, err);
    text = sgt_read_file(out, NULL);
    cr_expect_eq(rc, 1, "%s", text);
    j = cJSON_Parse(text);
    cr_assert(j, "%s", text);
    cr_expect_eq(num(j, "quantiles"), 0);
    cr_expect(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "match")));
    cJSON_Delete(j);
    free(text);
    etext = sgt_read_file(err, NULL);
    cr_expect(etext && strstr(etext, "12 roll-up fields have quantiles") && strstr(etext, values),
              "%s", etext);
    free(etext);
    stop_no_sanitizer(&p);
    emu_stop(&e);
}

#define BODIES_USE "streamgate_budget_use_bytes{use=\"bodies\"}"

/* A query's memory is charged to the budget while it reads: against an emulator that answers
 * after 300 ms, a page of 300 windows across keys (read with three BatchGetRow of 100) holds
 * the windows it has so far, more than the answer's own bytes at its height; once answered, the
 * charge is back where it was before the query. */
Test(history, query_memory_is_charged_while_it_reads, .timeout = 180)
{
    struct emu e = {0};
    static const char *const slow[] = {"--latency", "300", NULL};
    struct sgt_proc p;
    static const char *const extra[] = {"--window-emit-interval", "0", "--query-timeout", "20s",
                                        NULL};
    start_grid(&p, &e, slow, 12, 25, extra); /* 300 windows */

    /* A first query sizes the scratch buffers the history keeps (and charges) between queries. */
    char path[128], req[256];
    int status;
    snprintf(path, sizeof(path), "/v1/history?from=%" PRId64 "&to=%" PRId64 "&limit=300", BASE_TS,
             BASE_TS + 25 * WINDOW);
    cJSON_Delete(get_json(p.http, path, NULL, &status));
    cr_assert_eq(status, 200);
    double before = sgt_metric(p.http, BODIES_USE), most = before;
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    int fd = sgt_connect(p.http);
    sgt_send_str(fd, req);
    /* Until the answer comes, the charge at its height. */
    for (struct pollfd pfd = {.fd = fd, .events = POLLIN}; poll(&pfd, 1, 5) == 0;) {
        double now = sgt_metric(p.http, BODIES_USE);
        most = now > most ? now : most;
    }
    struct sgt_response r;
    cr_assert_eq(sgt_read_response(fd, &r), 0);
    close(fd);
    cr_assert_eq(r.status, 200, "%d: %s", r.status, r.body);
    cJSON *doc = cJSON_Parse(r.body);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "windows")), 300);
    cJSON_Delete(doc);
    cr_expect_gt(most - before, (double)r.body_len, "held at most %.0f bytes for an answer of %zu",
                 most - before, r.body_len);
    sgt_response_free(&r);
    double after = sgt_wait_metric(p.http, BODIES_USE, before, 10000);
    cr_expect_eq(after, before, "%.0f after, %.0f before", after, before);
    stop_no_sanitizer(&p);
    emu_stop(&e);
}

/* Reads against a Tablestore that answers busy, drops connections and answers late: every
 * page still chains to exactly the windows in the range, roll-ups are whole, and a Tablestore
 * that stays busy past query.timeout gives a clear 503 with Retry-After, never a short answer. */
Test(history, busy_dropped_and_slow_reads_retry_or_say_503, .timeout = 180)
{
    struct emu e = {0};
    static const char *const faults[] = {"--busy", "0.3",    "--drop", "0.1", "--latency",
                                         "5",      "--seed", "7",      NULL};
    struct sgt_proc p;
    static const char *const extra[] = {"--window-emit-interval", "0", "--query-timeout", "10s",
                                        NULL};
    start_grid(&p, &e, faults, 4, 6, extra); /* 24 windows */
    int not_final;
    char query[256];
    snprintf(query, sizeof(query), "/v1/history?from=%" PRId64 "&to=%" PRId64, BASE_TS,
             BASE_TS + 6 * WINDOW);
    cr_expect_eq(walk_pages(&p, query, false, &not_final), 24);
    cr_expect_eq(walk_pages(&p, query, true, &not_final), 24);
    snprintf(query, sizeof(query), "/v1/history/x02?from=%" PRId64 "&to=%" PRId64, BASE_TS,
             BASE_TS + 6 * WINDOW);
    cr_expect_eq(walk_pages(&p, query, false, &not_final), 6);
    char path[256];
    int status;
    snprintf(path, sizeof(path),
             "/v1/history?from=%" PRId64 "&to=%" PRId64 "&rollup=true&group=none", BASE_TS,
             BASE_TS + 6 * WINDOW);
    cJSON *doc = get_json(p.http, path, NULL, &status);
    cr_assert_eq(status, 200);
    cr_expect_eq(num(doc, "count"), 48);
    cr_expect_eq(num(doc, "windows"), 24);
    cJSON_Delete(doc);
    cr_expect_gt(sgt_metric(p.http, "streamgate_tablestore_read_requests_total{outcome=\"ok\"}"),
                 0);
    stop_no_sanitizer(&p);

    /* Always busy: retried until query.timeout, then 503. */
    emu_halt(&e);
    static const char *const busy[] = {"--busy", "1", NULL};
    emu_start(&e, busy);
    static const char *const quick[] = {"--window-emit-interval",
                                        "0",
                                        "--query-timeout",
                                        "500ms",
                                        "--tablestore-create-tables",
                                        "false",
                                        NULL};
    start_gateway(&p, &e, quick);
    struct sgt_response r;
    sgt_http(p.http, "GET", path, NULL, NULL, 0, &r);
    cr_expect_eq(r.status, 503, "%d: %s", r.status, r.body);
    char *ra = sgt_header(&r, "Retry-After");
    cr_expect(ra, "no Retry-After");
    free(ra);
    sgt_response_free(&r);
    cr_expect_gt(
        sgt_metric(p.http, "streamgate_tablestore_read_requests_total{outcome=\"unavailable\"}"),
        0);
    stop_no_sanitizer(&p);
    emu_stop(&e);
}
