/* GET /v1/history beyond the stored rows: the open windows of a key folded into its roll-up
 * (live=true with rollup=true), time slices across keys newest first (order=desc) and with every
 * key's open windows (live=true). The real gateway writes to the real emulator, and every answer
 * is compared with what was sent. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static double num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    cr_assert(cJSON_IsNumber(v), "no number %s", name);
    return v->valuedouble;
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
    char line[128];
    snprintf(line, sizeof(line), "{\"key\":\"zz\",\"ts\":%" PRId64 ",\"value\":1}\n",
             BASE_TS + 3600 * 1000 + 8 * WINDOW);
    post(&p, line);
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
    const cJSON *v =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "fields"), "value");
    cr_assert(v, "no value field");
    double sum = 0;
    for (size_t i = 0; i < nv; i++)
        sum += vals[i];
    qsort(vals, nv, sizeof(vals[0]), cmp_double);
    cr_expect_eq(num(v, "count"), (double)nv);
    cr_expect(fabs(num(v, "sum") - sum) <= 1e-9 * sum, "sum %.17g, sent %.17g", num(v, "sum"), sum);
    cr_expect_eq(num(v, "min"), vals[0]);
    cr_expect_eq(num(v, "max"), vals[nv - 1]);
    static const struct {
        const char *name;
        double q;
    } quants[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}};
    for (size_t i = 0; i < 3; i++) {
        double exact = vals[(size_t)floor(quants[i].q * (double)(nv - 1))];
        double est = num(v, quants[i].name);
        cr_expect(fabs(est - exact) <= 0.01 * exact, "%s: %.6g, exact %.6g", quants[i].name, est,
                  exact);
    }
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
    emu_start(&e, NULL);
    struct sgt_proc p;
    start_gateway(&p, &e, NULL);
    send_grid(&p, 12, 0, 6);
    char line[128];
    snprintf(line, sizeof(line), "{\"key\":\"zz\",\"ts\":%" PRId64 ",\"value\":1}\n",
             BASE_TS + 3600 * 1000 + 6 * WINDOW);
    post(&p, line);
    cr_assert_geq(sgt_wait_metric(p.http, WRITTEN, 72, 30000), 72);

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

    /* A roll-up across keys does not take the open windows yet. */
    int status;
    snprintf(path, sizeof(path), "/v1/history?from=1&to=2&rollup=true&live=true");
    cJSON *doc = get_json(p.http, path, NULL, &status);
    cr_expect_eq(status, 501);
    cr_expect(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(doc, "error")));
    cJSON_Delete(doc);
    stop_no_sanitizer(&p);
    emu_stop(&e);
}

/* streamgate-gen --check-history compares each quantile of a key's roll-up with the exact order
 * statistic of the values it sent (PATH.values beside --expect PATH): they match within 1%;
 * one key's values scaled by 5% are reported as differences; without the values file the
 * quantiles are not compared. */
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

    /* Without the values: count, sum, min and max only. */
    cr_assert_eq(remove(values), 0);
    rc = gen_run(args, out, err);
    text = sgt_read_file(out, NULL);
    cr_expect_eq(rc, 0, "%s", text);
    j = cJSON_Parse(text);
    cr_assert(j, "%s", text);
    cr_expect_eq(num(j, "quantiles"), 0);
    cJSON_Delete(j);
    free(text);
    stop_no_sanitizer(&p);
    emu_stop(&e);
}
