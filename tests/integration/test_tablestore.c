/* The Tablestore writer end to end: the real emulator process (streamgate-tablestore-emu), the
 * real streamgate writing to it, events sent over HTTP and TCP, and the tables read back with
 * the official JS SDK (tests/sdk/readback.js). Every row read back is compared with aggregates
 * computed here from the events sent, and every column with the result the server rendered in
 * its results file. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "tablestore_util.h"
#include "kafka_util.h"
#include "streamgate/buf.h"
#include "streamgate/ddsketch.h"
#include "streamgate/hash.h"
#include "streamgate/hll.h"

/* ---- The emulator ------------------------------------------------------------------------ */

/* Restarts the emulator from its snapshot without any fault injection, for reading back. */
static void emu_restart_clean(struct emu *e)
{
    emu_halt(e);
    emu_start(e, NULL);
}

/* ---- Reading tables back with the official SDK ------------------------------------------- */

/* Runs readback.js and returns the rows as a cJSON array. */
static cJSON *read_table(const struct emu *e, const char *table, const char *pk)
{
    const char *node = getenv("SG_NODE"), *sdk = getenv("SG_SDK_DIR");
    cr_assert(node && *node && sdk && *sdk, "SG_NODE / SG_SDK_DIR not set");
    char script[512], out_path[320], err_path[320];
    snprintf(script, sizeof(script), "%s/readback.js", sdk);
    snprintf(out_path, sizeof(out_path), "%s/readback.out", e->dir);
    snprintf(err_path, sizeof(err_path), "%s/readback.err", e->dir);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        char ep[160];
        snprintf(ep, sizeof(ep), "SG_TSEMU_ENDPOINT=%s", e->endpoint);
        putenv(ep);
        putenv("SG_TSEMU_INSTANCE=" INSTANCE);
        putenv("SG_TSEMU_AK_ID=" AKID);
        putenv("SG_TSEMU_AK_SECRET=" SECRET);
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int er = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(o, 1);
        dup2(er, 2);
        execl(node, node, script, table, pk, (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    char *err = sgt_read_file(err_path, NULL);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "readback.js failed: %s",
              err ? err : "");
    free(err);
    char *out = sgt_read_file(out_path, NULL);
    cr_assert(out);
    cJSON *rows = cJSON_CreateArray();
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *row = cJSON_Parse(line);
        cr_assert(row, "bad readback line: %s", line);
        cJSON_AddItemToArray(rows, row);
    }
    free(out);
    return rows;
}

static bool sdk_available(void)
{
    const char *node = getenv("SG_NODE"), *sdk = getenv("SG_SDK_DIR");
    char path[512];
    if (!node || !*node || !sdk || !*sdk)
        return false;
    snprintf(path, sizeof(path), "%s/node_modules/tablestore", sdk);
    return access(path, F_OK) == 0;
}

/* An INTEGER cell as readback.js prints it: {"int":"123"}. */
static int64_t int_cell(const cJSON *row, const char *name)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(row, name);
    const cJSON *i = cJSON_GetObjectItemCaseSensitive(c, "int");
    cr_assert(cJSON_IsString(i), "column %s is not an INTEGER", name);
    return strtoll(i->valuestring, NULL, 10);
}

static double dbl_cell(const cJSON *row, const char *name)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(row, name);
    cr_assert(cJSON_IsNumber(c), "column %s is not a DOUBLE", name);
    return c->valuedouble;
}

/* ---- Expected aggregates ----------------------------------------------------------------- */

#define MAX_WINDOWS 4096

struct agg {
    char key[64];
    int64_t start;
    int64_t count;
    double sum, min, max, first, last;
};

struct expect {
    struct agg w[MAX_WINDOWS];
    size_t n;
};

static void expect_add(struct expect *x, const char *key, int64_t ts, double v)
{
    int64_t start = ts - ts % WINDOW;
    struct agg *a = NULL;
    for (size_t i = 0; i < x->n && !a; i++)
        if (x->w[i].start == start && strcmp(x->w[i].key, key) == 0)
            a = &x->w[i];
    if (!a) {
        cr_assert_lt(x->n, MAX_WINDOWS);
        a = &x->w[x->n++];
        snprintf(a->key, sizeof(a->key), "%s", key);
        a->start = start;
        a->min = a->max = a->first = v;
    }
    a->count++;
    a->sum += v;
    a->min = fmin(a->min, v);
    a->max = fmax(a->max, v);
    a->last = v;
}

/* The server's rendered results, by key and window start (its results file). */
static cJSON *find_result(cJSON *results, const char *key, int64_t start)
{
    cJSON *r;
    cJSON_ArrayForEach(r, results)
    {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(r, "key");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(r, "window_start");
        if (cJSON_IsString(k) && strcmp(k->valuestring, key) == 0 && cJSON_IsNumber(s) &&
            (int64_t)s->valuedouble == start)
            return r;
    }
    return NULL;
}

static cJSON *read_results_file(const char *path)
{
    char *text = sgt_read_file(path, NULL);
    cr_assert(text, "no results file %s", path);
    cJSON *arr = cJSON_CreateArray();
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *r = cJSON_Parse(line);
        cr_assert(r, "bad results line: %s", line);
        /* A later emission of the same window replaces the earlier one, as in the table. */
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(r, "key");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(r, "window_start");
        cJSON *old = find_result(arr, k->valuestring, (int64_t)s->valuedouble);
        if (old)
            cJSON_ReplaceItemViaPointer(arr, old, r);
        else
            cJSON_AddItemToArray(arr, r);
    }
    free(text);
    return arr;
}

/* A double stored little-endian at byte `at` of a hex string. */
static double hex_double(const char *hex, size_t at)
{
    uint64_t bits = 0;
    for (int i = 7; i >= 0; i--) {
        unsigned byte;
        cr_assert_eq(sscanf(hex + 2 * (at + (size_t)i), "%2x", &byte), 1);
        bits = bits << 8 | byte;
    }
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

/* A forecast field's stored model (README "Forecasts and anomalies": version 1, n, last step,
 * level, trend, scale squared) is the one that forecast the result's `next`: level + trend,
 * to the 7 digits a result shows. */
static void check_model(const cJSON *row, const cJSON *field)
{
    char col[128];
    snprintf(col, sizeof(col), "%s_model", field->string);
    const cJSON *cell = cJSON_GetObjectItemCaseSensitive(row, col);
    const cJSON *hex = cJSON_GetObjectItemCaseSensitive(cell, "hex");
    cr_assert(cJSON_IsString(hex) && strlen(hex->valuestring) == 74, "%s is not 37 bytes", col);
    cr_expect_eq(strncmp(hex->valuestring, "01", 2), 0, "%s: version", col);
    double next = cJSON_GetObjectItemCaseSensitive(field, "next")->valuedouble;
    double level = hex_double(hex->valuestring, 13), trend = hex_double(hex->valuestring, 21);
    /* The result shows 7 significant digits of it. */
    cr_expect(fabs(level + trend - next) <= 5e-7 * fabs(next),
              "%s: level %.17g + trend %.17g != "
              "next %.17g",
              col, level, trend, next);
}

static void blob_cell(const cJSON *row, const char *name, struct sg_buf *out)
{
    const cJSON *hex =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(row, name), "hex");
    cr_assert(cJSON_IsString(hex), "no BINARY cell %s", name);
    size_t n = strlen(hex->valuestring);
    cr_assert_eq(n % 2, 0);
    sg_buf_reset(out);
    for (size_t i = 0; i < n; i += 2) {
        unsigned byte;
        cr_assert_eq(sscanf(hex->valuestring + i, "%2x", &byte), 1);
        cr_assert_eq(sg_buf_append_char(out, (char)byte), 0);
    }
}

/* A field's stored sketch (README "Stored sketches") holds the field's count, and the
 * quantiles the server rendered come from it: the same estimate, clamped to [min, max] and
 * shown to 7 significant digits. */
static void check_sketch(const cJSON *row, const cJSON *field, uint64_t count)
{
    char col[128];
    struct sg_buf b;
    struct sg_ddsketch *sk = NULL;
    sg_buf_init(&b, 0);
    snprintf(col, sizeof(col), "%s_sketch", field->string);
    blob_cell(row, col, &b);
    cr_assert_eq(sg_ddsketch_decode(b.data, b.len, &sk), 0, "%s does not decode", col);
    cr_expect_eq(sg_ddsketch_count(sk), count, "%s count", col);
    double min = cJSON_GetObjectItemCaseSensitive(field, "min")->valuedouble;
    double max = cJSON_GetObjectItemCaseSensitive(field, "max")->valuedouble;
    const cJSON *stat;
    cJSON_ArrayForEach(stat, field)
    {
        double q;
        if (stat->string[0] != 'p' || sscanf(stat->string + 1, "%lf", &q) != 1)
            continue;
        double v = fmin(fmax(sg_ddsketch_quantile(sk, q / 100), min), max);
        cr_expect(fabs(v - stat->valuedouble) <= 1e-6 * fabs(stat->valuedouble) + 1e-12,
                  "%s %s: sketch %.17g, rendered %.17g", col, stat->string, v, stat->valuedouble);
    }
    sg_ddsketch_destroy(sk);
    sg_buf_free(&b);
}

/* Every row of the results table equals the expected aggregate of its window, and every
 * column equals what the server rendered for it; there is exactly one row per window. */
static void check_results(const struct emu *e, const struct expect *x, const char *results_path)
{
    cJSON *rows = read_table(e, "streamgate_results", "key,window_start");
    cJSON *rendered = read_results_file(results_path);
    cr_assert_eq((size_t)cJSON_GetArraySize(rows), x->n, "rows read back: %d, windows: %zu",
                 cJSON_GetArraySize(rows), x->n);
    for (size_t i = 0; i < x->n; i++) {
        const struct agg *a = &x->w[i];
        const cJSON *row = NULL, *r;
        cJSON_ArrayForEach(r, rows)
        {
            const cJSON *k = cJSON_GetObjectItemCaseSensitive(r, "key");
            if (cJSON_IsString(k) && strcmp(k->valuestring, a->key) == 0 &&
                int_cell(r, "window_start") == a->start)
                row = r;
        }
        cr_assert(row, "no row for key %s window %" PRId64, a->key, a->start);
        cr_expect_eq(int_cell(row, "window_end"), a->start + WINDOW);
        cr_expect_eq(int_cell(row, "count"), a->count, "%s/%" PRId64 " count", a->key, a->start);
        cr_expect_eq(dbl_cell(row, "value_count"), (double)a->count);
        cr_expect_eq(dbl_cell(row, "value_sum"), a->sum, "%s sum %.17g != %.17g", a->key,
                     dbl_cell(row, "value_sum"), a->sum);
        cr_expect_eq(dbl_cell(row, "value_min"), a->min);
        cr_expect_eq(dbl_cell(row, "value_max"), a->max);
        cr_expect_eq(dbl_cell(row, "value_first"), a->first);
        cr_expect_eq(dbl_cell(row, "value_last"), a->last);
        /* The server keeps a running mean (its exact value is checked against its rendering
         * below); here it only has to be the mean. */
        double mean = a->sum / (double)a->count;
        cr_expect(fabs(dbl_cell(row, "value_mean") - mean) <= 1e-9 * fmax(1, fabs(mean)),
                  "%s mean %.17g != %.17g", a->key, dbl_cell(row, "value_mean"), mean);
        const cJSON *fin = cJSON_GetObjectItemCaseSensitive(row, "final");
        cr_expect(cJSON_IsTrue(fin), "%s/%" PRId64 " not final", a->key, a->start);
        cr_expect_eq(int_cell(row, "shard"), sg_kafka_partition(a->key, strlen(a->key), 16),
                     "%s shard", a->key);

        /* Column by column against the server's own rendering of the window. */
        cJSON *res = find_result(rendered, a->key, a->start);
        cr_assert(res, "no rendered result for %s/%" PRId64, a->key, a->start);
        const cJSON *fields = cJSON_GetObjectItemCaseSensitive(res, "fields");
        const cJSON *field;
        size_t ncols = 6; /* key, window_start, window_end, count, shard, final */
        cJSON_ArrayForEach(field, fields)
        {
            const cJSON *stat;
            cJSON_ArrayForEach(stat, field)
            {
                char col[128];
                snprintf(col, sizeof(col), "%s_%s", field->string, stat->string);
                for (char *p = col; *p; p++)
                    if (*p == '.')
                        *p = '_';
                if (!cJSON_IsNumber(stat))
                    continue;
                cr_expect_eq(dbl_cell(row, col), stat->valuedouble, "%s %s: %.17g != %.17g", a->key,
                             col, dbl_cell(row, col), stat->valuedouble);
                ncols++;
            }
            if (cJSON_HasObjectItem(field, "next")) {
                check_model(row, field);
                ncols++;
            }
            if (cJSON_HasObjectItem(field, "p50")) {
                check_sketch(row, field, (uint64_t)a->count);
                ncols++;
            }
        }
        cr_expect_eq((size_t)cJSON_GetArraySize((cJSON *)row), ncols, "columns of %s/%" PRId64,
                     a->key, a->start);
    }
    cJSON_Delete(rows);
    cJSON_Delete(rendered);
}

/* ---- Sending ----------------------------------------------------------------------------- */

/* Event i: key k<i % keys>, times spread over `windows` windows in order, a known value. */
static void event_line(char *buf, size_t size, int i, int keys, int per_key, const char *extra)
{
    int k = i % keys, j = i / keys;
    int64_t ts = BASE_TS + (int64_t)j * (WINDOW * 5) / per_key;
    snprintf(buf, size, "{\"key\":\"k%02d\",\"ts\":%" PRId64 ",\"value\":%d%s}\n", k, ts,
             (i * 37) % 101 - 20, extra ? extra : "");
}

static void expect_line(struct expect *x, const char *line)
{
    cJSON *ev = cJSON_Parse(line);
    cr_assert(ev);
    expect_add(x, cJSON_GetObjectItemCaseSensitive(ev, "key")->valuestring,
               (int64_t)cJSON_GetObjectItemCaseSensitive(ev, "ts")->valuedouble,
               cJSON_GetObjectItemCaseSensitive(ev, "value")->valuedouble);
    cJSON_Delete(ev);
}

/* Sends `total` events: even-numbered keys over HTTP (NDJSON bodies of 50), odd ones over one
 * TCP connection; waits until the server has accepted them all. */
/* Sends `total` events over `keys` keys, half over HTTP (NDJSON bodies of 50) and half over
 * TCP. With `pace_ms`, pauses that long after every 100 events, so that early emissions come in
 * many rounds while the events still arrive. */
static void send_mixed(struct sgt_proc *p, struct expect *x, int total, int keys, int pace_ms)
{
    int per_key = total / keys;
    struct sg_buf_lite {
        char *data;
        size_t len;
    } body = {malloc(64 * 1024), 0};
    int fd = sgt_connect(p->tcp);
    int http_n = 0, tcp_n = 0;
    char line[256];
    for (int i = 0; i < total; i++) {
        if (pace_ms > 0 && i > 0 && i % 100 == 0)
            sgt_sleep_ms(pace_ms);
        event_line(line, sizeof(line), i, keys, per_key, NULL);
        expect_line(x, line);
        if ((i % keys) % 2 == 0) {
            memcpy(body.data + body.len, line, strlen(line));
            body.len += strlen(line);
            body.data[body.len] = '\0';
            http_n++;
            if (http_n % 50 == 0) {
                struct sgt_response r;
                sgt_post(p->http, "application/x-ndjson", body.data, &r);
                cr_assert(r.status == 200 || r.status == 202, "status %d: %s", r.status, r.body);
                sgt_response_free(&r);
                body.len = 0;
            }
        } else {
            sgt_send_str(fd, line);
            tcp_n++;
        }
    }
    if (body.len) {
        struct sgt_response r;
        sgt_post(p->http, "application/x-ndjson", body.data, &r);
        cr_assert(r.status == 200 || r.status == 202, "status %d: %s", r.status, r.body);
        sgt_response_free(&r);
    }
    free(body.data);
    cr_assert_eq(sgt_wait_metric(p->tcp[0] ? p->http : p->http,
                                 "streamgate_events_accepted_total{transport=\"tcp\"}", tcp_n,
                                 20000),
                 tcp_n);
    cr_assert_eq(sgt_metric(p->http, "streamgate_events_accepted_total{transport=\"http\"}"),
                 http_n);
    close(fd);
}

static void check_clean_log(struct sgt_proc *p)
{
    char *log = sgt_read_file(p->log_path, NULL);
    bool bad = log && (strstr(log, "runtime error:") || strstr(log, "Sanitizer") ||
                       strstr(log, "tablestore row failed"));
    if (bad)
        cr_log_error("streamgate stderr:\n%s", log);
    free(log);
    cr_assert_not(bad, "streamgate logged a failed row or a sanitizer report");
}

static void run_mixed(const char *const *emu_args, const char *const *server_args, int total)
{
    if (!sdk_available())
        cr_assert_fail("node or the tablestore SDK is missing: run `npm ci --prefix tests/sdk`");
    struct emu e = {0};
    struct sgt_proc p;
    char secret[320], results[320];
    const char *argv[64];
    static struct expect x;
    memset(&x, 0, sizeof(x));
    emu_start(&e, emu_args);
    build_args(argv, &e, secret, results, server_args);
    sgt_start(&p, argv, NULL);
    /* With early firing, newer versions of a window must find older ones still waiting to be
     * written, which needs emissions while events arrive: the sending is paced. */
    send_mixed(&p, &x, total, 12, server_args ? 5 : 0);
    sgt_sleep_ms(100);
    if (server_args) /* early firing: versions of a window replaced before being written */
        cr_expect_gt(sgt_metric(p.http, "streamgate_tablestore_rows_superseded_total"), 0);
    check_clean_log(&p);
    int rc = sgt_stop_keep(&p);
    bool request_faults = false;
    for (const char *const *a = emu_args; a && *a; a++)
        request_faults = request_faults || strcmp(*a, "--busy") == 0 || strcmp(*a, "--drop") == 0 ||
                         strcmp(*a, "--max-request-bytes") == 0;
    if (request_faults) /* the faults were hit, and survived */
        cr_expect(log_has(&p, "tablestore request failed"), "no request failed under faults");
    for (const char *const *a = emu_args; a && *a; a++)
        if (strcmp(*a, "--max-request-bytes") == 0)
            cr_expect(log_has(&p, "OTSRequestBodyTooLarge"), "no request was refused as too large");
    remove_run_dir(&p);
    cr_assert_eq(rc, 0, "streamgate exit status %d", rc);
    if (emu_args)
        emu_restart_clean(&e);
    check_results(&e, &x, results);
    emu_stop(&e);
}

/* ---- Tests ------------------------------------------------------------------------------- */

Test(tablestore, results_read_back_exactly, .timeout = 120)
{
    run_mixed(NULL, NULL, 1200);
}

/* The stored sketches read back through the official SDK merge into the sketch of all the
 * windows together: the merged count is exact, quantiles are within 1% of the exact order
 * statistics of every value sent, and the merged registers estimate the distinct users within
 * three standard errors; each row's registers give the distinct count its result showed. */
Test(tablestore, stored_sketches_merge_across_windows, .timeout = 120)
{
    if (!sdk_available())
        cr_assert_fail("node or the tablestore SDK is missing: run `npm ci --prefix tests/sdk`");
    enum { WINDOWS = 3, PER = 400, USERS = 700 };
    struct emu e = {0};
    struct sgt_proc p;
    char secret[320], results[320];
    const char *argv[64];
    const char *extra[] = {"--window-distinct-field", "user", "--window-quantiles",
                           "p10,p50,p90,p99", NULL};
    emu_start(&e, NULL);
    build_args(argv, &e, secret, results, extra);
    sgt_start(&p, argv, NULL);
    static double values[WINDOWS * PER];
    char *body = malloc(WINDOWS * PER * 128);
    size_t len = 0;
    for (int i = 0; i < WINDOWS * PER; i++) {
        int w = i / PER;
        values[i] = 1.0 + (double)((i * 7919) % 1000) * 0.37; /* 1 to 370.63, shuffled */
        len += (size_t)sprintf(body + len,
                               "{\"key\":\"mk\",\"ts\":%" PRId64 ",\"value\":%.2f,"
                               "\"user\":\"u%d\"}\n",
                               BASE_TS + (int64_t)w * WINDOW + i % PER, values[i], i % USERS);
    }
    struct sgt_response r;
    sgt_post(p.http, "application/x-ndjson", body, &r);
    cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
    sgt_response_free(&r);
    free(body);
    check_clean_log(&p);
    cr_assert_eq(sgt_stop(&p), 0);

    cJSON *rows = read_table(&e, "streamgate_results", "key,window_start");
    cJSON *rendered = read_results_file(results);
    cr_assert_eq(cJSON_GetArraySize(rows), WINDOWS);
    struct sg_buf b;
    sg_buf_init(&b, 0);
    struct sg_ddsketch *all =
        sg_ddsketch_create(SG_DDSKETCH_DEFAULT_ALPHA, SG_DDSKETCH_DEFAULT_MAX_BINS);
    struct sg_hll users = {0};
    const cJSON *row;
    cJSON_ArrayForEach(row, rows)
    {
        struct sg_ddsketch *sk = NULL;
        struct sg_hll h;
        blob_cell(row, "value_sketch", &b);
        cr_assert_eq(sg_ddsketch_decode(b.data, b.len, &sk), 0);
        cr_assert_eq(sg_ddsketch_merge(all, sk), 0);
        sg_ddsketch_destroy(sk);
        blob_cell(row, "distinct_hll", &b);
        cr_assert_eq(sg_hll_decode(b.data, b.len, &h), 0);
        cr_expect_eq(int_cell(row, "distinct"), llround(sg_hll_estimate(&h)));
        const cJSON *res = find_result(rendered, "mk", int_cell(row, "window_start"));
        cr_assert(res);
        cr_expect_eq(int_cell(row, "distinct"),
                     (int64_t)cJSON_GetObjectItemCaseSensitive(res, "distinct")->valuedouble);
        if (!users.registers)
            users = h;
        else {
            cr_assert_eq(sg_hll_merge(&users, &h), 0);
            sg_hll_free(&h);
        }
    }
    cr_expect_eq(sg_ddsketch_count(all), WINDOWS * PER);
    qsort(values, WINDOWS * PER, sizeof(values[0]), cmp_double);
    static const double qs[] = {0.1, 0.5, 0.9, 0.99};
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        double exact = values[(size_t)floor(qs[i] * (WINDOWS * PER - 1))];
        double est = sg_ddsketch_quantile(all, qs[i]);
        cr_expect(fabs(est - exact) <= 0.01 * exact, "q%g: merged %.6g, exact %.6g", qs[i], est,
                  exact);
    }
    double est = sg_hll_estimate(&users), se = 1.04 / sqrt(4096.0);
    cr_expect(fabs(est - USERS) <= 3 * se * USERS, "distinct users: %.1f, sent %d", est, USERS);
    sg_hll_free(&users);
    sg_ddsketch_destroy(all);
    sg_buf_free(&b);
    cJSON_Delete(rows);
    cJSON_Delete(rendered);
    emu_stop(&e);
}

/* ---- The time index ---------------------------------------------------------------------- */

/* Runs streamgate with `extra` against the emulator, sends `keys` keys x `windows` windows of
 * 3 events each (key t<k>, window w from BASE_TS + offset_windows), and stops it cleanly. */
static void run_windows(const struct emu *e, const char *const *extra, int keys, int windows,
                        int offset_windows)
{
    struct sgt_proc p;
    char secret[320], results[320];
    const char *argv[64];
    build_args(argv, e, secret, results, extra);
    sgt_start(&p, argv, NULL);
    char *body = malloc((size_t)keys * windows * 3 * 96 + 1);
    size_t len = 0;
    for (int w = 0; w < windows; w++)
        for (int k = 0; k < keys; k++)
            for (int i = 0; i < 3; i++)
                len += (size_t)sprintf(body + len,
                                       "{\"key\":\"t%03d\",\"ts\":%" PRId64 ",\"value\":%d}\n", k,
                                       BASE_TS + (int64_t)(w + offset_windows) * WINDOW + i, k + i);
    struct sgt_response r;
    sgt_post(p.http, "application/x-ndjson", body, &r);
    cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
    sgt_response_free(&r);
    free(body);
    check_clean_log(&p);
    cr_assert_eq(sgt_stop(&p), 0);
}

/* The index `index` read through the official SDK holds exactly one row per results row, in
 * (shard, window_start, key) order, with the row's count and window_end and the shard its key
 * hashes to. */
static void check_time_index(const struct emu *e, const char *index, int want_rows)
{
    cJSON *rows = read_table(e, "streamgate_results", "key,window_start");
    cJSON *idx = read_table(e, index, "shard,window_start,key");
    cr_assert_eq(cJSON_GetArraySize(rows), want_rows);
    cr_assert_eq(cJSON_GetArraySize(idx), want_rows, "index rows: %d, table rows: %d",
                 cJSON_GetArraySize(idx), want_rows);
    int64_t last_shard = -1, last_start = -1;
    char last_key[64] = "";
    const cJSON *ir, *row;
    cJSON_ArrayForEach(ir, idx)
    {
        const char *key = cJSON_GetObjectItemCaseSensitive(ir, "key")->valuestring;
        int64_t shard = int_cell(ir, "shard"), start = int_cell(ir, "window_start");
        cr_expect_eq(shard, sg_kafka_partition(key, strlen(key), 16), "%s shard", key);
        bool ordered = shard > last_shard ||
                       (shard == last_shard &&
                        (start > last_start || (start == last_start && strcmp(key, last_key) > 0)));
        cr_expect(ordered, "index out of order at %s/%" PRId64, key, start);
        last_shard = shard;
        last_start = start;
        snprintf(last_key, sizeof(last_key), "%s", key);
        const cJSON *match = NULL;
        cJSON_ArrayForEach(row, rows)
        {
            if (strcmp(cJSON_GetObjectItemCaseSensitive(row, "key")->valuestring, key) == 0 &&
                int_cell(row, "window_start") == start)
                match = row;
        }
        cr_assert(match, "index row %s/%" PRId64 " has no table row", key, start);
        cr_expect_eq(int_cell(ir, "count"), int_cell(match, "count"));
        cr_expect_eq(int_cell(ir, "window_end"), int_cell(match, "window_end"));
        /* Only the columns the index carries. */
        cr_expect_eq(cJSON_GetArraySize((cJSON *)ir), 5, "index columns of %s", key);
    }
    cJSON_Delete(rows);
    cJSON_Delete(idx);
}

/* Starts streamgate against the emulator with `results_table` (creating missing tables when
 * `create`) and expects start-up to fail (exit status 1) with `want` on stderr. */
static void expect_startup_error(const struct emu *e, const char *results_table, bool create,
                                 const char *want)
{
    const char *args[] = {"--http-listen",
                          "127.0.0.1:0",
                          "--tcp-listen",
                          "",
                          "--tablestore-endpoint",
                          e->endpoint,
                          "--tablestore-instance",
                          INSTANCE,
                          "--tablestore-access-key-id",
                          AKID,
                          "--tablestore-access-key-secret",
                          SECRET,
                          "--tablestore-create-tables",
                          create ? "true" : "false",
                          "--tablestore-results-table",
                          results_table,
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = sgt_run(args, NULL, &out, &err);
    cr_expect_eq(rc, 1, "exit status %d", rc);
    cr_expect(err && strstr(err, want), "stderr: %s", err);
    cr_expect(err && !strstr(err, SECRET), "the secret was printed");
    free(out);
    free(err);
}

/* tablestore.create_tables makes the results table with the time index; the official SDK reads
 * the index. */
Test(tablestore, time_index_created_with_the_table, .timeout = 120)
{
    if (!sdk_available())
        cr_assert_fail("node or the tablestore SDK is missing: run `npm ci --prefix tests/sdk`");
    struct emu e = {0};
    emu_start(&e, NULL);
    run_windows(&e, NULL, 40, 3, 0);
    check_time_index(&e, "streamgate_results_by_time", 120);
    emu_stop(&e);
}

/* A results table that has the index's columns but not the index: CreateIndex adds it, and it
 * indexes the rows already there as well as the new ones. Without tablestore.create_tables a
 * missing index stops start-up with a message that says what to do, and so does a table made
 * without the index's predefined columns. */
Test(tablestore, time_index_added_to_an_existing_table, .timeout = 180)
{
    if (!sdk_available())
        cr_assert_fail("node or the tablestore SDK is missing: run `npm ci --prefix tests/sdk`");
    struct emu e = {0};
    emu_start(&e, NULL);
    static const char *const other[] = {"--tablestore-time-index", "first_index", NULL};
    run_windows(&e, other, 20, 2, 0);

    expect_startup_error(&e, "streamgate_results", false,
                         "index streamgate_results_by_time of table streamgate_results does not "
                         "exist (create it, set tablestore.create_tables=true, or turn it off "
                         "with tablestore.time_index=\\\"\\\")");

    run_windows(&e, NULL, 20, 2, 2); /* create_tables: CreateIndex, with the rows there */
    check_time_index(&e, "streamgate_results_by_time", 80);
    check_time_index(&e, "first_index", 80);

    /* A table made with the index off has no predefined columns: no index can be added. */
    static const char *const plain[] = {"--tablestore-time-index", "", "--tablestore-results-table",
                                        "plain_results", NULL};
    run_windows(&e, plain, 2, 1, 0);
    expect_startup_error(&e, "plain_results", true,
                         "table plain_results has no predefined column shard of type INTEGER, "
                         "which index plain_results_by_time needs");
    emu_stop(&e);
}

#define AGG_WRITTEN                                                                                \
    "streamgate_sink_records_total{sink=\"tablestore\",stream=\"agg\",result=\"written\"}"

/* Posts `n` events (value 1) to each of windows 0 and 1 of keys r0 to r3. */
static void post_reemitted(const struct sgt_proc *p, int n)
{
    char body[4096];
    size_t len = 0;
    for (int k = 0; k < 4; k++)
        for (int w = 0; w < 2; w++)
            for (int i = 0; i < n; i++)
                len += (size_t)snprintf(body + len, sizeof(body) - len,
                                        "{\"key\":\"r%d\",\"ts\":%" PRId64 ",\"value\":1}\n", k,
                                        BASE_TS + (int64_t)w * WINDOW + i);
    struct sgt_response r;
    sgt_post(p->http, "application/x-ndjson", body, &r);
    cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
    sgt_response_free(&r);
}

/* The time index read through the official SDK holds exactly one row for each of the 8 windows
 * of post_reemitted, each with `count`. */
static void check_index_counts(const struct emu *e, int64_t count, const char *when)
{
    cJSON *idx = read_table(e, "streamgate_results_by_time", "shard,window_start,key");
    int seen[4][2] = {{0}};
    const cJSON *ir;
    cJSON_ArrayForEach(ir, idx)
    {
        const char *key = cJSON_GetObjectItemCaseSensitive(ir, "key")->valuestring;
        int64_t w = (int_cell(ir, "window_start") - BASE_TS) / WINDOW;
        int k = key[0] == 'r' ? atoi(key + 1) : -1;
        cr_assert(k >= 0 && k < 4 && w >= 0 && w < 2, "%s: index row %s/%" PRId64, when, key, w);
        seen[k][w]++;
        cr_expect_eq(int_cell(ir, "count"), count, "%s: %s/%" PRId64, when, key, w);
    }
    for (int k = 0; k < 4; k++)
        for (int w = 0; w < 2; w++)
            cr_expect_eq(seen[k][w], 1, "%s: index rows of r%d/%d", when, k, w);
    cJSON_Delete(idx);
}

/* Early updates rewrite a window's row while it is open, and its final result once more: the
 * time index follows, one row per window whose count is the newest written, the final one at
 * the end. */
Test(tablestore, time_index_follows_a_reemitted_window, .timeout = 120)
{
    if (!sdk_available())
        cr_assert_fail("node or the tablestore SDK is missing: run `npm ci --prefix tests/sdk`");
    struct emu e = {0};
    emu_start(&e, NULL);
    struct sgt_proc p;
    char secret[320], results[320];
    const char *argv[64];
    static const char *const early[] = {"--window-emit-interval", "20ms", NULL};
    build_args(argv, &e, secret, results, early);
    sgt_start(&p, argv, NULL);

    post_reemitted(&p, 2); /* an early update of each of the 8 windows: count 2 */
    cr_assert_eq(sgt_wait_metric(p.http, AGG_WRITTEN, 8, 30000), 8);
    check_index_counts(&e, 2, "first update");
    post_reemitted(&p, 3); /* another: count 5 */
    cr_assert_eq(sgt_wait_metric(p.http, AGG_WRITTEN, 16, 30000), 16);
    check_index_counts(&e, 5, "second update");
    post_reemitted(&p, 1); /* and the final results when the gateway stops: count 6 */
    check_clean_log(&p);
    cr_assert_eq(sgt_stop(&p), 0);
    check_index_counts(&e, 6, "final");
    cJSON *rows = read_table(&e, "streamgate_results", "key,window_start");
    const cJSON *row;
    cJSON_ArrayForEach(row, rows)
    {
        cr_expect_eq(int_cell(row, "count"), 6);
        cr_expect(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(row, "final")));
    }
    cr_expect_eq(cJSON_GetArraySize(rows), 8);
    cJSON_Delete(rows);
    emu_stop(&e);
}

/* ---- GET /v1/history ---------------------------------------------------------------------- */

/* The window_start values of an answer's windows, checked to be for `key` and in order. */
static size_t window_starts(const cJSON *doc, const char *key, int64_t *out, size_t max, bool desc)
{
    size_t n = 0;
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(doc, "windows"))
    {
        cr_assert_lt(n, max);
        cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(w, "key")->valuestring, key);
        out[n] = (int64_t)cJSON_GetObjectItemCaseSensitive(w, "window_start")->valuedouble;
        if (n > 0)
            cr_expect(desc ? out[n] < out[n - 1] : out[n] > out[n - 1], "out of order");
        n++;
    }
    return n;
}

/* One key's stored windows, shaped like a live result: a time range in epoch ms or RFC 3339,
 * either order, and pages of `limit` windows linked by opaque tokens until next_page is null.
 * Bad times and tokens are 400s; Tablestore down is a 503 with Retry-After once query.timeout
 * has passed; the latency and the reads are counted. */
Test(tablestore, history_of_one_key, .timeout = 180)
{
    struct emu e = {0};
    emu_start(&e, NULL);
    struct sgt_proc p;
    char secret[320], results[320];
    const char *argv[64];
    /* The reads counted below are the queries' own: no new key's models are read back. */
    static const char *const extra[] = {"--query-timeout",
                                        "500ms",
                                        "--window-quantiles",
                                        "p50,p99.9",
                                        "--query-max-rows",
                                        "30",
                                        "--predict-restore",
                                        "false",
                                        NULL};
    build_args(argv, &e, secret, results, extra);
    sgt_start(&p, argv, NULL);
    /* Key h1: windows 0 to 39, window w holding w + 1 events; key h2 in between. */
    char *body = malloc(256 * 1024);
    size_t len = 0;
    for (int w = 0; w < 40; w++)
        for (int i = 0; i <= w; i++)
            len += (size_t)sprintf(body + len,
                                   "{\"key\":\"h1\",\"ts\":%" PRId64 ",\"value\":%d}\n"
                                   "{\"key\":\"h2\",\"ts\":%" PRId64 ",\"value\":1}\n",
                                   BASE_TS + (int64_t)w * WINDOW + i, i, BASE_TS + w * WINDOW);
    struct sgt_response r;
    sgt_post(p.http, "application/x-ndjson", body, &r);
    cr_assert_eq(r.status, 202);
    sgt_response_free(&r);
    free(body);
    /* Written once the windows close: lateness is 1 h, so flush them with a second run of
     * events an hour and more later. */
    char late[128];
    snprintf(late, sizeof(late), "{\"key\":\"zz\",\"ts\":%" PRId64 ",\"value\":1}\n",
             BASE_TS + 3 * 3600 * 1000);
    sgt_post(p.http, "application/x-ndjson", late, &r);
    sgt_response_free(&r);
    cr_assert_geq(sgt_wait_metric(p.http,
                                  "streamgate_sink_records_total{sink=\"tablestore\","
                                  "stream=\"agg\",result=\"written\"}",
                                  80, 30000),
                  80);

    char path[2048];
    int status;
    int64_t from = BASE_TS + 5 * WINDOW, to = BASE_TS + 25 * WINDOW;
    snprintf(path, sizeof(path), "/v1/history/h1?from=%" PRId64 "&to=%" PRId64, from, to);
    cJSON *doc = get_json(p.http, path, NULL, &status);
    cr_assert_eq(status, 200);
    int64_t starts[64];
    cr_assert_eq(window_starts(doc, "h1", starts, 64, false), 20);
    cr_expect_eq(starts[0], from);
    const cJSON *w0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "windows"), 0);
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(w0, "count")->valuedouble, 6);
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(w0, "window_end")->valuedouble, from + WINDOW);
    cr_expect(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(w0, "final")));
    const cJSON *value =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(w0, "fields"), "value");
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(value, "sum")->valuedouble, 15);
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(value, "max")->valuedouble, 5);
    cr_expect(cJSON_HasObjectItem(value, "p99.9"), "quantile names as in a live result");
    cr_expect_null(cJSON_GetObjectItemCaseSensitive(value, "sketch"));
    cr_expect(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(doc, "next_page")));
    cJSON_Delete(doc);

    /* RFC 3339 bounds, newest first. */
    snprintf(path, sizeof(path),
             "/v1/history/h1?from=2023-11-14T22:13:25Z&to=2023-11-14T22:13:30.000%%2B00:00"
             "&order=desc");
    doc = get_json(p.http, path, NULL, &status);
    cr_assert_eq(status, 200);
    size_t n = window_starts(doc, "h1", starts, 64, true);
    cr_expect_eq(n, 5, "1700000005000 to 1700000010000: %zu windows", n);
    cr_expect_eq(starts[0], BASE_TS + 9 * WINDOW);
    cJSON_Delete(doc);

    /* Pages of 7 in both orders, through every window of h1. */
    for (int d = 0; d < 2; d++) {
        int64_t all[64];
        size_t total = 0;
        char token[1024] = "";
        int pages = 0;
        do {
            snprintf(path, sizeof(path),
                     "/v1/history/h1?from=%" PRId64 "&to=%" PRId64 "&limit=7%s%s%s", BASE_TS,
                     BASE_TS + 40 * WINDOW, d ? "&order=desc" : "", token[0] ? "&page=" : "",
                     token);
            doc = get_json(p.http, path, NULL, &status);
            cr_assert_eq(status, 200, "page %d", pages);
            size_t got = window_starts(doc, "h1", all + total, 64 - total, d == 1);
            cr_assert_leq(got, 7);
            if (total > 0 && got > 0)
                cr_expect(d ? all[total] < all[total - 1] : all[total] > all[total - 1]);
            total += got;
            const cJSON *next = cJSON_GetObjectItemCaseSensitive(doc, "next_page");
            token[0] = '\0';
            if (cJSON_IsString(next))
                snprintf(token, sizeof(token), "%s", next->valuestring);
            else
                cr_assert(cJSON_IsNull(next));
            cJSON_Delete(doc);
            pages++;
        } while (token[0] && pages < 20);
        cr_expect_eq(total, 40, "order %d: %zu windows in %d pages", d, total, pages);
        cr_expect_geq(pages, 6);
    }

    /* Bad requests. */
    static const char *const bad[] = {
        "/v1/history/h1?to=1700000010000",
        "/v1/history/h1?from=yesterday&to=1700000010000",
        "/v1/history/h1?from=1700000010000&to=1700000000000",
        "/v1/history/h1?from=1&to=2&order=sideways",
        "/v1/history/h1?from=1&to=2&limit=0",
        "/v1/history/h1?from=1&to=2&page=%%%%",
        "/v1/history/h1?from=1700000000000&to=1700000040000&page=dQAAAA",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        doc = get_json(p.http, bad[i], NULL, &status);
        cr_expect_eq(status, 400, "%s: %d", bad[i], status);
        cr_expect(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(doc, "error")));
        cJSON_Delete(doc);
    }
    /* A token of another key's range is refused too. */
    snprintf(path, sizeof(path), "/v1/history/h1?from=%" PRId64 "&to=%" PRId64 "&limit=1", BASE_TS,
             BASE_TS + 40 * WINDOW);
    doc = get_json(p.http, path, NULL, &status);
    char token[1024];
    snprintf(token, sizeof(token), "%s",
             cJSON_GetObjectItemCaseSensitive(doc, "next_page")->valuestring);
    cJSON_Delete(doc);
    snprintf(path, sizeof(path), "/v1/history/h2?from=%" PRId64 "&to=%" PRId64 "&page=%s", BASE_TS,
             BASE_TS + 40 * WINDOW, token);
    doc = get_json(p.http, path, NULL, &status);
    cr_expect_eq(status, 400);
    cJSON_Delete(doc);

    /* A roll-up of windows 0 to 24 of h1 (window w holds the values 0 to w): counts, sums and
     * extremes exact, the mean and stddev combined exactly, first and last by time, quantiles
     * from the merged sketches within 1% of the exact order statistics. */
    snprintf(path, sizeof(path), "/v1/history/h1?from=%" PRId64 "&to=%" PRId64 "&rollup=true",
             BASE_TS, BASE_TS + 25 * WINDOW);
    doc = get_json(p.http, path, NULL, &status);
    cr_assert_eq(status, 200);
    static double vals[400];
    size_t nv = 0;
    double sum = 0;
    for (int w = 0; w < 25; w++)
        for (int i = 0; i <= w; i++)
            vals[nv++] = i, sum += i;
    double mean = sum / (double)nv, m2 = 0;
    for (size_t i = 0; i < nv; i++)
        m2 += (vals[i] - mean) * (vals[i] - mean);
    qsort(vals, nv, sizeof(vals[0]), cmp_double);
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(doc, "windows")->valuedouble, 25);
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(doc, "count")->valuedouble, (double)nv);
    const cJSON *rv =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "fields"), "value");
    cr_assert(rv, "no value field in the roll-up");
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(rv, "count")->valuedouble, (double)nv);
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(rv, "sum")->valuedouble, sum);
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(rv, "min")->valuedouble, 0);
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(rv, "max")->valuedouble, 24);
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(rv, "first")->valuedouble, 0);
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(rv, "last")->valuedouble, 24);
    double got_mean = cJSON_GetObjectItemCaseSensitive(rv, "mean")->valuedouble;
    double got_sd = cJSON_GetObjectItemCaseSensitive(rv, "stddev")->valuedouble;
    cr_expect(fabs(got_mean - mean) <= 1e-9 * mean, "mean %.17g, exact %.17g", got_mean, mean);
    cr_expect(fabs(got_sd - sqrt(m2 / (double)nv)) <= 1e-9 * got_sd, "stddev %.17g, exact %.17g",
              got_sd, sqrt(m2 / (double)nv));
    static const struct {
        const char *name;
        double q;
    } quants[] = {{"p50", 0.5}, {"p99.9", 0.999}};
    for (size_t i = 0; i < 2; i++) {
        double exact = vals[(size_t)floor(quants[i].q * (double)(nv - 1))];
        double est = cJSON_GetObjectItemCaseSensitive(rv, quants[i].name)->valuedouble;
        cr_expect(fabs(est - exact) <= 0.01 * exact, "%s: %.6g, exact %.6g", quants[i].name, est,
                  exact);
    }
    cJSON_Delete(doc);
    /* 40 windows is more than query.max_rows (30): a clear 4xx, not a partial answer. */
    snprintf(path, sizeof(path), "/v1/history/h1?from=%" PRId64 "&to=%" PRId64 "&rollup=true",
             BASE_TS, BASE_TS + 40 * WINDOW);
    doc = get_json(p.http, path, NULL, &status);
    cr_expect_eq(status, 422);
    const cJSON *e422 = cJSON_GetObjectItemCaseSensitive(doc, "error");
    cr_expect(cJSON_IsString(e422) && strstr(e422->valuestring, "query.max_rows"));
    cr_expect_null(cJSON_GetObjectItemCaseSensitive(doc, "fields"));
    cJSON_Delete(doc);

    /* live=true: an open window of h1 (within the hour of lateness) joins the stored ones,
     * marked not final; without it, only what is stored. */
    int64_t open_ts = BASE_TS + 3 * 3600 * 1000 - 600 * 1000;
    snprintf(late, sizeof(late), "{\"key\":\"h1\",\"ts\":%" PRId64 ",\"value\":42}\n", open_ts);
    sgt_post(p.http, "application/x-ndjson", late, &r);
    cr_assert_eq(r.status, 202);
    sgt_response_free(&r);
    for (int live = 0; live < 2; live++) {
        snprintf(path, sizeof(path), "/v1/history/h1?from=%" PRId64 "&to=%" PRId64 "%s",
                 BASE_TS + 39 * WINDOW, open_ts + WINDOW, live ? "&live=true" : "");
        doc = get_json(p.http, path, NULL, &status);
        cr_assert_eq(status, 200);
        const cJSON *ws = cJSON_GetObjectItemCaseSensitive(doc, "windows");
        cr_assert_eq(cJSON_GetArraySize(ws), 1 + live);
        cr_expect(
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ws, 0), "final")));
        if (live) {
            const cJSON *o = cJSON_GetArrayItem(ws, 1);
            cr_expect(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "final")));
            cr_expect_eq(cJSON_GetObjectItemCaseSensitive(o, "window_start")->valuedouble,
                         (double)(open_ts - open_ts % WINDOW));
            cr_expect_eq(cJSON_GetObjectItemCaseSensitive(o, "count")->valuedouble, 1);
        }
        cJSON_Delete(doc);
    }

    /* 19 reads (1 + 1 + 6 + 6 pages + 1 + 2 roll-ups + 2), 8 queries refused before reading. */
    cr_expect_eq(sgt_metric(p.http, "streamgate_query_seconds_count"), 27);
    cr_expect_eq(sgt_metric(p.http, "streamgate_tablestore_read_requests_total{outcome=\"ok\"}"),
                 19);

    /* Tablestore down: retried until query.timeout, then 503 with Retry-After. */
    emu_halt(&e);
    struct sgt_response down;
    int64_t t0 = sgt_mono_ms();
    snprintf(path, sizeof(path), "/v1/history/h1?from=1&to=2");
    sgt_http(p.http, "GET", path, NULL, NULL, 0, &down);
    int64_t took = sgt_mono_ms() - t0;
    cr_expect_eq(down.status, 503, "%d: %s", down.status, down.body);
    char *ra = sgt_header(&down, "Retry-After");
    cr_expect(ra, "no Retry-After");
    free(ra);
    cr_expect(strstr(down.body, "query.timeout"), "%s", down.body);
    cr_expect(took >= 300 && took < 5000, "answered after %" PRId64 " ms", took);
    sgt_response_free(&down);
    cr_expect_eq(
        sgt_metric(p.http, "streamgate_tablestore_read_requests_total{outcome=\"unavailable\"}"),
        1);
    stop_no_sanitizer(&p);
    emu_stop(&e);
}

/* A time slice across keys through the time index: every shard's range merged by time, the
 * values read with BatchGetRow (at most 100 rows a request), pages linked by tokens. */
Test(tablestore, history_across_keys, .timeout = 180)
{
    struct emu e = {0};
    emu_start(&e, NULL);
    struct sgt_proc p;
    char secret[320], results[320];
    const char *argv[64];
    static const char *const quick[] = {"--query-timeout", "500ms", NULL};
    build_args(argv, &e, secret, results, quick);
    sgt_start(&p, argv, NULL);
    char *body = malloc(64 * 1024);
    size_t len = 0;
    for (int w = 0; w < 3; w++)
        for (int k = 0; k < 40; k++)
            for (int i = 0; i < 3; i++)
                len += (size_t)sprintf(body + len,
                                       "{\"key\":\"x%02d\",\"ts\":%" PRId64 ",\"value\":%d}\n", k,
                                       BASE_TS + (int64_t)w * WINDOW + i, k * 10 + w);
    len += (size_t)sprintf(body + len, "{\"key\":\"zz\",\"ts\":%" PRId64 ",\"value\":1}\n",
                           BASE_TS + 3 * 3600 * 1000);
    struct sgt_response r;
    sgt_post(p.http, "application/x-ndjson", body, &r);
    cr_assert_eq(r.status, 202);
    sgt_response_free(&r);
    free(body);
    cr_assert_geq(sgt_wait_metric(p.http,
                                  "streamgate_sink_records_total{sink=\"tablestore\","
                                  "stream=\"agg\",result=\"written\"}",
                                  120, 30000),
                  120);
    for (int limit = 150; limit >= 50; limit -= 100) {
        char path[2048], token[1024] = "";
        int status, pages = 0;
        size_t total = 0;
        int64_t last_ws = 0;
        char last_key[16] = "";
        do {
            snprintf(path, sizeof(path), "/v1/history?from=%" PRId64 "&to=%" PRId64 "&limit=%d%s%s",
                     BASE_TS, BASE_TS + 3 * WINDOW, limit, token[0] ? "&page=" : "", token);
            cJSON *doc = get_json(p.http, path, NULL, &status);
            cr_assert_eq(status, 200, "%s", cJSON_PrintUnformatted(doc));
            const cJSON *w;
            cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(doc, "windows"))
            {
                const char *key = cJSON_GetObjectItemCaseSensitive(w, "key")->valuestring;
                int64_t ws =
                    (int64_t)cJSON_GetObjectItemCaseSensitive(w, "window_start")->valuedouble;
                cr_expect(ws > last_ws || (ws == last_ws && strcmp(key, last_key) > 0),
                          "%s/%" PRId64 " out of order", key, ws);
                last_ws = ws;
                snprintf(last_key, sizeof(last_key), "%s", key);
                cr_expect_eq(cJSON_GetObjectItemCaseSensitive(w, "count")->valuedouble, 3);
                int k = atoi(key + 1), wi = (int)((ws - BASE_TS) / WINDOW);
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(
                    cJSON_GetObjectItemCaseSensitive(w, "fields"), "value");
                cr_expect_eq(cJSON_GetObjectItemCaseSensitive(v, "sum")->valuedouble,
                             3 * (k * 10 + wi), "%s/%d", key, wi);
                total++;
            }
            const cJSON *next = cJSON_GetObjectItemCaseSensitive(doc, "next_page");
            token[0] = '\0';
            if (cJSON_IsString(next))
                snprintf(token, sizeof(token), "%s", next->valuestring);
            cJSON_Delete(doc);
            pages++;
        } while (token[0] && pages < 10);
        cr_expect_eq(total, 120, "limit %d: %zu windows", limit, total);
        cr_expect_eq(pages, limit == 150 ? 1 : 3);
    }
    /* Roll-ups across keys: one per key, then every key together. */
    char path[512];
    int status;
    snprintf(path, sizeof(path), "/v1/history?from=%" PRId64 "&to=%" PRId64 "&rollup=true", BASE_TS,
             BASE_TS + 3 * WINDOW);
    cJSON *doc = get_json(p.http, path, NULL, &status);
    cr_assert_eq(status, 200);
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(doc, "keys");
    cr_assert_eq(cJSON_GetArraySize(keys), 40);
    const cJSON *o;
    cJSON_ArrayForEach(o, keys)
    {
        int k = atoi(cJSON_GetObjectItemCaseSensitive(o, "key")->valuestring + 1);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(o, "fields"), "value");
        cr_expect_eq(cJSON_GetObjectItemCaseSensitive(o, "windows")->valuedouble, 3);
        cr_expect_eq(cJSON_GetObjectItemCaseSensitive(v, "count")->valuedouble, 9);
        cr_expect_eq(cJSON_GetObjectItemCaseSensitive(v, "sum")->valuedouble, 90 * k + 9);
        cr_expect_eq(cJSON_GetObjectItemCaseSensitive(v, "min")->valuedouble, 10 * k);
        cr_expect_eq(cJSON_GetObjectItemCaseSensitive(v, "max")->valuedouble, 10 * k + 2);
    }
    cJSON_Delete(doc);
    snprintf(path, sizeof(path),
             "/v1/history?from=%" PRId64 "&to=%" PRId64 "&rollup=true&group=none", BASE_TS,
             BASE_TS + 3 * WINDOW);
    doc = get_json(p.http, path, NULL, &status);
    cr_assert_eq(status, 200);
    cr_expect_null(cJSON_GetObjectItemCaseSensitive(doc, "key"));
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(doc, "windows")->valuedouble, 120);
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(doc, "count")->valuedouble, 360);
    const cJSON *all =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "fields"), "value");
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(all, "sum")->valuedouble, 70560);
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(all, "min")->valuedouble, 0);
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(all, "max")->valuedouble, 392);
    cJSON_Delete(doc);

    /* Tablestore down: the shards' reads give up at query.timeout, the others are cancelled,
     * and the answer is a 503 with Retry-After. */
    emu_halt(&e);
    snprintf(path, sizeof(path), "/v1/history?from=%" PRId64 "&to=%" PRId64, BASE_TS,
             BASE_TS + 3 * WINDOW);
    struct sgt_response down;
    sgt_http(p.http, "GET", path, NULL, NULL, 0, &down);
    cr_expect_eq(down.status, 503, "%d: %s", down.status, down.body);
    char *ra = sgt_header(&down, "Retry-After");
    cr_expect(ra, "no Retry-After");
    free(ra);
    sgt_response_free(&down);
    emu_start(&e, NULL); /* back, from its snapshot */

    /* With the time index off, a query across keys says so. */
    stop_no_sanitizer(&p);
    static const char *const off[] = {"--tablestore-time-index", "", NULL};
    build_args(argv, &e, secret, results, off);
    sgt_start(&p, argv, NULL);
    doc = get_json(p.http, "/v1/history?from=1&to=2", NULL, &status);
    cr_expect_eq(status, 404);
    cr_expect(strstr(cJSON_GetObjectItemCaseSensitive(doc, "error")->valuestring,
                     "tablestore.time_index"));
    cJSON_Delete(doc);
    stop_no_sanitizer(&p);
    emu_stop(&e);
}

/* streamgate-gen --check-history: each key's roll-up over the run, asked of a gateway that
 * reads the stored windows back, equals the generator's expectation folded together (the
 * distinct ids within three standard errors of the count); an expectation changed by one value
 * makes it fail. */
Test(tablestore, gen_check_history, .timeout = 180)
{
    struct emu e = {0};
    emu_start(&e, NULL);
    struct sgt_proc p;
    char secret[320], results[320], args[2048];
    const char *argv[64];
    static const char *const distinct[] = {"--window-distinct-field", "id", NULL};
    build_args(argv, &e, secret, results, distinct);
    sgt_start(&p, argv, NULL);
    /* A gateway started afresh reads them back. */
    struct gen_files g;
    gen_store_run(&p, argv, &e, &g);
    const char *expect = g.expect, *out = g.out, *err = g.err;
    snprintf(args, sizeof(args), "--check-history http://%s --expect '%s' --json", p.http, expect);
    int rc = gen_run(args, out, err);
    char *text = sgt_read_file(out, NULL);
    cr_assert_eq(rc, 0, "check-history: %s %s", text, sgt_read_file(err, NULL));
    cJSON *j = cJSON_Parse(text);
    cr_assert(j, "%s", text);
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(j, "keys")->valuedouble, 12);
    cr_expect(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "match")));
    cJSON_Delete(j);
    free(text);

    /* The roll-ups it compared carry the distinct ids it checked. */
    char path[256];
    int status;
    snprintf(path, sizeof(path), "/v1/history/sensor-0?from=%" PRId64 "&to=%" PRId64 "&rollup=true",
             BASE_TS, BASE_TS + 3600 * 1000);
    j = get_json(p.http, path, NULL, &status);
    cr_expect_eq(status, 200);
    cr_expect(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "distinct")));
    cJSON_Delete(j);

    /* One window's sum changed in the expectation: that key's roll-up differs. */
    char *et = sgt_read_file(expect, NULL);
    cr_assert(et);
    char *m = strstr(et, "\"sum\":");
    cr_assert(m);
    m[6] = m[6] == '9' ? '8' : '9'; /* the first digit of the first sum */
    FILE *f = fopen(expect, "w");
    fputs(et, f);
    fclose(f);
    free(et);
    rc = gen_run(args, out, err);
    cr_expect_eq(rc, 1, "a changed expectation passed");
    char *etext = sgt_read_file(err, NULL);
    cr_expect(etext && strstr(etext, "value sum"), "%s", etext);
    free(etext);
    stop_no_sanitizer(&p);
    emu_stop(&e);
}

/* Without Tablestore the history says which option it needs; it takes the ingest tokens. */
/* Posts three events a window for `key`, windows [w0, w1), means 10 + 2w (+-0.5 in turn). */
static void post_trend(struct sgt_proc *p, const char *key, int w0, int w1)
{
    char body[16384];
    size_t len = 0;
    for (int w = w0; w < w1; w++)
        for (int i = 0; i < 3; i++)
            len += (size_t)snprintf(body + len, sizeof(body) - len,
                                    "{\"key\":\"%s\",\"ts\":%" PRId64 ",\"value\":%g}\n", key,
                                    BASE_TS + (int64_t)w * WINDOW + i,
                                    10 + 2 * w + (w % 2 ? 0.5 : -0.5) + (i - 1));
    struct sgt_response r;
    sgt_post(p->http, "application/x-ndjson", body, &r);
    cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
    sgt_response_free(&r);
}

static const cJSON *result_field(cJSON *results, const char *key, int w, const char *member)
{
    cJSON *res = find_result(results, key, BASE_TS + (int64_t)w * WINDOW);
    cr_assert_not_null(res, "no result for %s window %d", key, w);
    const cJSON *v =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(res, "fields"), "value");
    return cJSON_GetObjectItemCaseSensitive(v, member);
}

/* A restarted gateway reads a key's models back from its latest stored row: its first window
 * after the restart is forecast (the last run's `next`) and scored at once, as if the gateway
 * had never stopped; a key with no stored row starts afresh. */
Test(tablestore, forecasts_go_on_after_a_restart, .timeout = 120)
{
    struct emu e = {0};
    emu_start(&e, NULL);
    struct sgt_proc p;
    char secret[320], results[320];
    const char *argv[64];
    build_args(argv, &e, secret, results, NULL);
    sgt_start(&p, argv, NULL);
    post_trend(&p, "r1", 0, 10);
    check_clean_log(&p);
    cr_assert_eq(sgt_stop(&p), 0); /* the windows fire at the stop, all written */
    cJSON *first = read_results_file(results);
    double next9 = result_field(first, "r1", 9, "next")->valuedouble;
    cJSON_Delete(first);
    cr_assert_eq(unlink(results), 0);

    sgt_start(&p, argv, NULL);
    post_trend(&p, "r1", 10, 11);
    post_trend(&p, "r2", 10, 11);
    cr_assert_eq(sgt_wait_metric(p.http, "streamgate_predict_restores_total{outcome=\"restored\"}",
                                 1, 20000),
                 1);
    cr_assert_eq(
        sgt_wait_metric(p.http, "streamgate_predict_restores_total{outcome=\"none\"}", 1, 20000),
        1);
    check_clean_log(&p);
    cr_assert_eq(sgt_stop(&p), 0);
    cJSON *second = read_results_file(results);
    const cJSON *forecast = result_field(second, "r1", 10, "forecast");
    cr_assert(cJSON_IsNumber(forecast), "r1 was forecast after the restart");
    cr_expect(fabs(forecast->valuedouble - next9) <= 1e-6 * fabs(next9), "%.17g against %.17g",
              forecast->valuedouble, next9);
    cr_expect(cJSON_IsNumber(result_field(second, "r1", 10, "anomaly")), "and scored");
    cr_expect(cJSON_IsNull(result_field(second, "r2", 10, "forecast")), "r2 starts afresh");
    cJSON_Delete(second);
    emu_stop(&e);
}

Test(tablestore, history_needs_tablestore_and_a_token, .timeout = 60)
{
    struct sgt_proc p;
    const char *args[] = {"--http-auth-tokens", "tok1", NULL};
    sgt_start(&p, args, NULL);
    int status;
    cJSON *doc = get_json(p.http, "/v1/history/k?from=1&to=2", NULL, &status);
    cr_expect_eq(status, 401);
    cJSON_Delete(doc);
    doc = get_json(p.http, "/v1/history/k?from=1&to=2", "Authorization: Bearer tok1\r\n", &status);
    cr_expect_eq(status, 404);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(doc, "error");
    cr_expect(cJSON_IsString(err) && strstr(err->valuestring, "tablestore.endpoint"));
    cJSON_Delete(doc);
    stop_no_sanitizer(&p);
}

/* Requests the service refuses as too large: the writer halves its batches until they fit, and
 * every row still ends exactly right. */
Test(tablestore, too_large_requests_are_split, .timeout = 180)
{
    static const char *const small[] = {"--max-request-bytes", "20000", NULL};
    run_mixed(small, NULL, 1200);
}

Test(tablestore, busy_and_dropped_requests_still_exact, .timeout = 180)
{
    static const char *const faults[] = {"--busy", "0.3",    "--drop", "0.05", "--busy-rows",
                                         "0.1",    "--seed", "7",      NULL};
    run_mixed(faults, NULL, 1200);
}

/* Early firing emits each window many times while earlier versions are still in flight (slow
 * answers, one request at a time): the table must end with the final version of every window,
 * never an older one that arrived late. */
Test(tablestore, early_emissions_end_with_the_final_version, .timeout = 180)
{
    static const char *const slow[] = {"--latency", "30", "--busy-rows", "0.2", NULL};
    static const char *const early[] = {"--window-emit-interval",
                                        "10ms",
                                        "--tablestore-max-in-flight",
                                        "2",
                                        "--tablestore-linger",
                                        "1ms",
                                        NULL};
    run_mixed(slow, early, 2400);
}

/* A row Tablestore would refuse (a key over its 1 KB primary-key limit, accepted by the
 * gateway with a larger event.max_key_size) fails for good: it goes to the dead-letter file
 * with its key and error code, and the other rows are written. */
Test(tablestore, refused_row_goes_to_dead_letter, .timeout = 120)
{
    if (!sdk_available())
        cr_assert_fail("node or the tablestore SDK is missing: run `npm ci --prefix tests/sdk`");
    struct emu e = {0};
    struct sgt_proc p;
    char secret[320], results[320], dl[320];
    const char *argv[64];
    static struct expect x;
    memset(&x, 0, sizeof(x));
    emu_start(&e, NULL);
    snprintf(dl, sizeof(dl), "%s/dead.ndjson", e.dir);
    /* With the Kafka writer on, records given up on also go to its late topic. */
    struct sgt_mock m = {0};
    sgt_mock_start(&m, "1", "late");
    const char *extra[] = {"--event-max-key-size",
                           "4096",
                           "--output-dead-letter-file",
                           dl,
                           "--kafka-brokers",
                           m.bootstrap,
                           "--kafka-raw-topic",
                           "",
                           "--kafka-agg-topic",
                           "",
                           "--kafka-late-topic",
                           "late",
                           NULL};
    build_args(argv, &e, secret, results, extra);
    sgt_start(&p, argv, NULL);

    char longkey[1501];
    memset(longkey, 'L', 1500);
    longkey[1500] = '\0';
    char *body = NULL;
    cr_assert(asprintf(&body,
                       "{\"key\":\"%s\",\"ts\":%" PRId64 ",\"value\":5}\n"
                       "{\"key\":\"ok1\",\"ts\":%" PRId64 ",\"value\":7}\n"
                       "{\"key\":\"ok1\",\"ts\":%" PRId64 ",\"value\":9}\n",
                       longkey, BASE_TS, BASE_TS + 10, BASE_TS + 20) > 0);
    struct sgt_response r;
    sgt_post(p.http, "application/x-ndjson", body, &r);
    cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
    sgt_response_free(&r);
    free(body);
    expect_add(&x, "ok1", BASE_TS + 10, 7);
    expect_add(&x, "ok1", BASE_TS + 20, 9);
    int rc = sgt_stop_keep(&p);
    cr_assert_eq(rc, 0, "streamgate exit status %d", rc);
    cr_expect(log_has(&p, "tablestore row failed"));
    remove_run_dir(&p);

    size_t len = 0;
    char *text = sgt_read_file(dl, &len);
    cr_assert(text, "no dead-letter file");
    cr_assert_eq(sgt_wait_lines(dl, 1, 0), 1, "dead-letter lines:\n%s", text);
    cJSON *line = cJSON_Parse(text);
    cr_assert(line, "dead-letter line is not JSON: %s", text);
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(line, "sink")->valuestring, "tablestore");
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(line, "key")->valuestring, longkey);
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(line, "error")->valuestring,
                     "OTSParameterInvalid");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(line, "message");
    cr_expect(cJSON_IsString(msg) && msg->valuestring[0]);
    /* The record is the row's columns, as they would have been written. */
    const cJSON *rec = cJSON_GetObjectItemCaseSensitive(line, "record");
    cr_assert(cJSON_IsObject(rec), "record is not the row's columns");
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(rec, "key")->valuestring, longkey);
    static const char *const cols[] = {"window_start", "count", "value_count", "value_sum"};
    const double want[] = {(double)BASE_TS, 1, 1, 5};
    for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(rec, cols[i]);
        cr_expect(cJSON_IsNumber(c) && c->valuedouble == want[i], "record column %s", cols[i]);
    }
    cr_expect(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "final")));
    cJSON_Delete(line);
    free(text);

    struct sgt_recs rs;
    sgt_kcat_read(m.bootstrap, "late", 1, 20000, &rs);
    cr_assert_eq(rs.n, 1, "late topic holds %zu records", rs.n);
    cr_expect_str_eq(rs.v[0].key, longkey);
    char hv[64];
    cr_assert(sgt_kafka_header(rs.v[0].headers, "reason", hv, sizeof(hv)), "%s", rs.v[0].headers);
    cr_expect_str_eq(hv, "OTSParameterInvalid");
    cr_assert(sgt_kafka_header(rs.v[0].headers, "sink", hv, sizeof(hv)));
    cr_expect_str_eq(hv, "tablestore");
    cJSON *krec = cJSON_Parse(rs.v[0].value);
    cr_assert(krec && cJSON_IsObject(krec), "%s", rs.v[0].value);
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(krec, "key")->valuestring, longkey);
    cJSON_Delete(krec);
    sgt_recs_free(&rs);
    sgt_mock_stop(&m);

    /* The results file holds both windows; the table only the one that could be written. */
    char *all = sgt_read_file(results, NULL);
    cr_assert(all && strstr(all, longkey));
    char filtered[4096] = "";
    for (char *l = strtok(all, "\n"); l; l = strtok(NULL, "\n"))
        if (!strstr(l, longkey)) {
            strncat(filtered, l, sizeof(filtered) - strlen(filtered) - 2);
            strcat(filtered, "\n");
        }
    free(all);
    FILE *f = fopen(results, "w");
    cr_assert(f);
    fputs(filtered, f);
    fclose(f);
    check_results(&e, &x, results);
    emu_stop(&e);
}

/* Rows given up on after they were queued (every row answered OTSServerBusy, no retries allowed)
 * go to the dead-letter file: a raw event's record is the event exactly as it was received, a
 * result's is the object of the row's columns, decoded from the row as it was sent, holding
 * the numbers of the result the server rendered. */
Test(tablestore, queued_rows_given_up_go_to_dead_letter, .timeout = 120)
{
    struct emu e = {0};
    struct sgt_proc p;
    char secret[320], results[320], dl[320];
    const char *argv[64];
    static const char *const busy[] = {"--busy-rows", "1", NULL};
    emu_start(&e, busy);
    snprintf(dl, sizeof(dl), "%s/dead.ndjson", e.dir);
    const char *extra[] = {"--tablestore-raw-table",
                           "raw_events",
                           "--tablestore-max-retries",
                           "0",
                           "--window-quantiles",
                           "p50,p99.9",
                           "--window-distinct-field",
                           "user",
                           "--output-dead-letter-file",
                           dl,
                           NULL};
    build_args(argv, &e, secret, results, extra);
    sgt_start(&p, argv, NULL);
    char ev1[128], ev2[128], body[300];
    snprintf(ev1, sizeof(ev1), "{\"key\":\"dl\", \"ts\":%" PRId64 ", \"value\":5, \"user\":\"u1\"}",
             BASE_TS + 1);
    snprintf(ev2, sizeof(ev2),
             "{\"key\":\"dl\",\"ts\":%" PRId64 ",\"value\":7.25,\"user\":\"u2\",\"note\":\"x\"}",
             BASE_TS + 2);
    snprintf(body, sizeof(body), "%s\n%s\n", ev1, ev2);
    struct sgt_response r;
    sgt_post(p.http, "application/x-ndjson", body, &r);
    cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
    sgt_response_free(&r);
    int rc = sgt_stop_keep(&p);
    cr_assert_eq(rc, 0, "streamgate exit status %d: the rows failed, none was left", rc);
    cr_expect(log_has(&p, "tablestore row failed"));
    remove_run_dir(&p);

    char *text = sgt_read_file(dl, NULL);
    cr_assert(text, "no dead-letter file");
    cr_assert_eq(sgt_wait_lines(dl, 3, 0), 3, "dead-letter lines:\n%s", text);
    for (const char *ev = ev1; ev; ev = ev == ev1 ? ev2 : NULL) {
        char want[160];
        snprintf(want, sizeof(want), "\"record\":%s}", ev);
        cr_expect(strstr(text, want), "no raw record as received, %s, in:\n%s", ev, text);
    }
    cJSON *rendered = read_results_file(results);
    const cJSON *res = find_result(rendered, "dl", BASE_TS);
    cr_assert(res, "no result rendered");
    cJSON *rec = NULL;
    int lines = 0;
    for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
        cJSON *line = cJSON_Parse(l);
        cr_assert(line, "dead-letter line is not JSON: %s", l);
        cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(line, "sink")->valuestring, "tablestore");
        cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(line, "key")->valuestring, "dl");
        cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(line, "error")->valuestring,
                         "OTSServerBusy");
        cJSON *record = cJSON_GetObjectItemCaseSensitive(line, "record");
        if (cJSON_HasObjectItem(record, "window_start")) {
            cr_assert_null(rec, "two result records");
            rec = cJSON_DetachItemViaPointer(line, record);
        }
        cJSON_Delete(line);
        lines++;
    }
    cr_assert_eq(lines, 3);
    cr_assert(cJSON_IsObject(rec), "no result record");
    cr_expect_null(cJSON_GetObjectItemCaseSensitive(rec, "fields"),
                   "the rendered JSON, not the row");
    size_t ncols = 0;
    for (const cJSON *c = rec->child; c; c = c->next)
        ncols++;
    static const char *const top[] = {"window_start", "window_end", "count", "distinct"};
    for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++)
        cr_expect_eq(cJSON_GetObjectItemCaseSensitive(rec, top[i])->valuedouble,
                     cJSON_GetObjectItemCaseSensitive(res, top[i])->valuedouble, "%s", top[i]);
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(rec, "key")->valuestring, "dl");
    cr_expect(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "final")));
    /* key, window_start, window_end, count, shard, distinct, distinct_hll, final */
    size_t want_cols = 8;
    cr_expect(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(rec, "distinct_hll")));
    const cJSON *field, *stat;
    cJSON_ArrayForEach(field, cJSON_GetObjectItemCaseSensitive(res, "fields"))
    {
        cJSON_ArrayForEach(stat, field)
        {
            char col[128];
            snprintf(col, sizeof(col), "%s_%s", field->string, stat->string);
            for (char *c = col; *c; c++)
                if (*c == '.')
                    *c = '_';
            if (!cJSON_IsNumber(stat))
                continue;
            const cJSON *got = cJSON_GetObjectItemCaseSensitive(rec, col);
            cr_expect(cJSON_IsNumber(got) && got->valuedouble == stat->valuedouble,
                      "%s: %.17g, rendered %.17g", col, cJSON_IsNumber(got) ? got->valuedouble : 0,
                      stat->valuedouble);
            want_cols++;
        }
        /* And its sketch (BINARY, base64 here). */
        cr_expect(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(rec, "value_sketch")));
        want_cols++;
        /* A forecast field of a final result also stores its model (BINARY, base64 here). */
        if (cJSON_HasObjectItem(field, "forecast")) {
            char col[128];
            snprintf(col, sizeof(col), "%s_model", field->string);
            const cJSON *model = cJSON_GetObjectItemCaseSensitive(rec, col);
            cr_expect(cJSON_IsString(model) && strlen(model->valuestring) == 52, "%s", col);
            want_cols++;
        }
    }
    cr_expect_eq(ncols, want_cols, "the record's columns");
    cr_expect(cJSON_HasObjectItem(rec, "value_p99_9"));
    cJSON_Delete(rec);
    cJSON_Delete(rendered);
    free(text);
    emu_stop(&e);
}

/* Tablestore answering slowly with a small memory budget: rows pile up, the budget's watermark
 * makes ingest answer 503, the client resends, and every acknowledged event ends up in its
 * window and in the raw table. */
Test(tablestore, slow_tablestore_pushes_back, .timeout = 180)
{
    if (!sdk_available())
        cr_assert_fail("node or the tablestore SDK is missing: run `npm ci --prefix tests/sdk`");
    struct emu e = {0};
    struct sgt_proc p;
    char secret[320], results[320];
    const char *argv[64];
    static struct expect x;
    memset(&x, 0, sizeof(x));
    const char *emu_args[] = {"--latency", "500", NULL};
    emu_start(&e, emu_args);
    const char *extra[] = {"--tablestore-raw-table",
                           "raw_events",
                           "--limits-memory",
                           "1MiB",
                           "--tablestore-max-in-flight",
                           "1",
                           "--tablestore-linger",
                           "5ms",
                           "--shutdown-timeout",
                           "60s",
                           NULL};
    build_args(argv, &e, secret, results, extra);
    sgt_start(&p, argv, NULL);

    const int total = 3000, keys = 12, batch = 100;
    int acked = 0, pushbacks = 0;
    char *body = malloc((size_t)batch * 128);
    cr_assert(body);
    for (int i = 0; i < total; i += batch) {
        size_t len = 0;
        for (int j = i; j < i + batch; j++) {
            event_line(body + len, 128, j, keys, total / keys, NULL);
            len += strlen(body + len);
        }
        for (;;) {
            struct sgt_response r;
            sgt_post(p.http, "application/x-ndjson", body, &r);
            int status = r.status;
            sgt_response_free(&r);
            if (status == 503) {
                pushbacks++;
                sgt_sleep_ms(100);
                continue;
            }
            cr_assert_eq(status, 202, "status %d", status);
            break;
        }
        char *line = body;
        for (int j = i; j < i + batch; j++) {
            char *nl = strchr(line, '\n');
            *nl = '\0';
            expect_line(&x, line);
            *nl = '\n';
            line = nl + 1;
        }
        acked += batch;
    }
    free(body);
    cr_assert_gt(pushbacks, 0, "no 503 from a 1 MiB budget with a slow Tablestore");
    int rc = sgt_stop_keep(&p);
    cr_assert_eq(rc, 0, "streamgate exit status %d", rc);
    check_clean_log(&p);
    remove_run_dir(&p);

    check_results(&e, &x, results);
    cJSON *raw = read_table(&e, "raw_events", "key,ts,id");
    cr_expect_eq(cJSON_GetArraySize(raw), acked, "raw rows %d, acknowledged events %d",
                 cJSON_GetArraySize(raw), acked);
    /* Spot-check one raw row's cells. */
    const cJSON *row = cJSON_GetArrayItem(raw, 0);
    cr_assert(row);
    cr_expect(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(row, "id")));
    cr_expect(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(row, "value")),
              "integral values are INTEGER cells");
    cJSON_Delete(raw);
    emu_stop(&e);
}

/* Start-up checks: a missing table without tablestore.create_tables, and a table whose primary
 * key differs, stop the server with a clear message. */
Test(tablestore, startup_fails_on_missing_or_mismatched_table, .timeout = 60)
{
    struct emu e = {0};
    emu_start(&e, NULL);
    const char *args[] = {"--http-listen",
                          "127.0.0.1:0",
                          "--tcp-listen",
                          "",
                          "--tablestore-endpoint",
                          e.endpoint,
                          "--tablestore-instance",
                          INSTANCE,
                          "--tablestore-access-key-id",
                          AKID,
                          "--tablestore-access-key-secret",
                          SECRET,
                          "--tablestore-results-table",
                          "missing_table",
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = sgt_run(args, NULL, &out, &err);
    cr_expect_eq(rc, 1, "exit status %d", rc);
    cr_expect(err && strstr(err, "table missing_table does not exist"), "stderr: %s", err);
    cr_expect(err && !strstr(err, SECRET), "the secret was printed");
    free(out);
    free(err);

    /* A raw-events table (key, ts, id) named as the results table (key, window_start). */
    struct sgt_proc p;
    const char *create[] = {"--tablestore-endpoint",
                            e.endpoint,
                            "--tablestore-instance",
                            INSTANCE,
                            "--tablestore-access-key-id",
                            AKID,
                            "--tablestore-access-key-secret",
                            SECRET,
                            "--tablestore-create-tables",
                            "true",
                            "--tablestore-raw-table",
                            "other_schema",
                            NULL};
    sgt_start(&p, create, NULL);
    sgt_stop_ok(&p);
    const char *mismatch[] = {"--http-listen",
                              "127.0.0.1:0",
                              "--tcp-listen",
                              "",
                              "--tablestore-endpoint",
                              e.endpoint,
                              "--tablestore-instance",
                              INSTANCE,
                              "--tablestore-access-key-id",
                              AKID,
                              "--tablestore-access-key-secret",
                              SECRET,
                              "--tablestore-results-table",
                              "other_schema",
                              NULL};
    rc = sgt_run(mismatch, NULL, &out, &err);
    cr_expect_eq(rc, 1, "exit status %d", rc);
    cr_expect(err && strstr(err, "exists with another primary key"), "stderr: %s", err);
    free(out);
    free(err);

    /* A wrong secret: the first call is refused, and start-up says so. */
    const char *badsecret[] = {"--http-listen",
                               "127.0.0.1:0",
                               "--tcp-listen",
                               "",
                               "--tablestore-endpoint",
                               e.endpoint,
                               "--tablestore-instance",
                               INSTANCE,
                               "--tablestore-access-key-id",
                               AKID,
                               "--tablestore-access-key-secret",
                               "wrong-secret",
                               NULL};
    rc = sgt_run(badsecret, NULL, &out, &err);
    cr_expect_eq(rc, 1, "exit status %d", rc);
    cr_expect(err && strstr(err, "OTSAuthFailed"), "stderr: %s", err);
    cr_expect(err && !strstr(err, "wrong-secret"), "the secret was printed");
    free(out);
    free(err);
    emu_stop(&e);
}

/* The exit status tells an operator whether a stop lost anything: 0 when every row was
 * written, 3 when Tablestore went away and shutdown.timeout passed with rows still unwritten
 * (they are counted as failed and logged). */
Test(tablestore, exit_status_says_whether_rows_were_left, .timeout = 60)
{
    struct emu e = {0};
    struct sgt_proc p;
    char secret[320], results[320];
    const char *argv[64];
    const char *extra[] = {"--shutdown-timeout", "1s", "--tablestore-max-retries", "1000", NULL};
    const char *event = "{\"key\":\"x\",\"ts\":1700000000000,\"value\":1}";
    struct sgt_response r;
    emu_start(&e, NULL);
    build_args(argv, &e, secret, results, extra);

    /* Written: a clean stop. */
    sgt_start(&p, argv, NULL);
    sgt_post(p.http, "application/json", event, &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    sgt_response_free(&r);
    int rc = sgt_stop_keep(&p);
    cr_expect_not(log_has(&p, "left unwritten"));
    remove_run_dir(&p);
    cr_assert_eq(rc, 0, "exit status %d after a clean stop", rc);

    /* The service is gone when the window fires at shutdown: its row cannot be written. */
    sgt_start(&p, argv, NULL);
    sgt_post(p.http, "application/json", event, &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    sgt_response_free(&r);
    emu_halt(&e);
    rc = sgt_stop_keep(&p);
    bool logged = log_has(&p, "tablestore rows left unwritten at shutdown");
    remove_run_dir(&p);
    cr_assert_eq(rc, 3, "exit status %d with rows left", rc);
    cr_assert(logged, "the rows left were not logged");
    emu_stop(&e);
}

/* ---- Tablestore unreachable at start ------------------------------------------------------ */

/* A loopback port nothing listens on (yet): bound, read, released. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    cr_assert(fd >= 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* Points `e` at a free port where its emulator is not started yet. */
static void emu_not_yet(struct emu *e)
{
    int port = free_port();
    emu_dir(e);
    snprintf(e->listen, sizeof(e->listen), "127.0.0.1:%d", port);
    snprintf(e->endpoint, sizeof(e->endpoint), "http://127.0.0.1:%d", port);
}

static int get_status(const char *http, const char *path, char **body)
{
    struct sgt_response r;
    sgt_http(http, "GET", path, NULL, NULL, 0, &r);
    int status = r.status;
    if (body)
        *body = strdup(r.body);
    sgt_response_free(&r);
    return status;
}

/* Polls until GET `path` answers `want`; returns the last status. */
static int wait_status(const char *http, const char *path, int want, int timeout_ms)
{
    int64_t deadline = sgt_mono_ms() + timeout_ms;
    int status;
    while ((status = get_status(http, path, NULL)) != want && sgt_mono_ms() < deadline)
        sgt_sleep_ms(20);
    return status;
}

/* The writer's "state" in /v1/info. */
static char *writer_state(const char *http)
{
    char *body = NULL;
    cr_assert_eq(get_status(http, "/v1/info", &body), 200);
    cJSON *info = cJSON_Parse(body);
    cr_assert(info, "%s", body);
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(info, "tablestore");
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(ts, "state");
    const cJSON *healthy = cJSON_GetObjectItemCaseSensitive(ts, "healthy");
    cr_assert(cJSON_IsString(state) && cJSON_IsBool(healthy), "%s", body);
    cr_assert_eq(cJSON_IsTrue(healthy), strcmp(state->valuestring, "ready") == 0, "%s", body);
    char *out = strdup(state->valuestring);
    cJSON_Delete(info);
    free(body);
    return out;
}

#define RAW_WRITTEN                                                                                \
    "streamgate_sink_records_total{sink=\"tablestore\",stream=\"raw\",result=\"written\"}"

/* Tablestore cannot be reached when the gateway starts: it serves anyway, not ready, holding
 * rows within its memory budget (which pushes back as usual), and keeps retrying its table
 * checks. Once the service listens, the tables are created, the writer becomes ready, and every
 * acknowledged event ends up exactly in its window and in the raw table. */
Test(tablestore, unreachable_at_start_serves_and_catches_up, .timeout = 180)
{
    if (!sdk_available())
        cr_assert_fail("node or the tablestore SDK is missing: run `npm ci --prefix tests/sdk`");
    struct emu e = {0};
    struct sgt_proc p;
    char secret[320], results[320];
    const char *argv[64];
    static struct expect x;
    memset(&x, 0, sizeof(x));
    emu_not_yet(&e);
    const char *extra[] = {"--tablestore-raw-table", "raw_events", "--limits-memory", "1MiB", NULL};
    build_args(argv, &e, secret, results, extra);
    sgt_start(&p, argv, NULL);

    /* Serving, but not ready: the writer says why. */
    cr_assert_eq(get_status(p.http, "/healthz", NULL), 200);
    cr_assert_eq(get_status(p.http, "/readyz", NULL), 503);
    char *state = writer_state(p.http);
    cr_assert_str_eq(state, "checking");
    free(state);
    cr_assert_eq(sgt_metric(p.http, "streamgate_tablestore_ready"), 0);
    cr_assert(log_has(&p, "tablestore not ready at start"));

    const int total = 3000, keys = 12, batch = 100;
    int acked = 0, pushbacks = 0;
    char *body = malloc((size_t)batch * 128);
    cr_assert(body);
    for (int i = 0; i < total; i += batch) {
        size_t len = 0;
        for (int j = i; j < i + batch; j++) {
            event_line(body + len, 128, j, keys, total / keys, NULL);
            len += strlen(body + len);
        }
        for (;;) {
            struct sgt_response r;
            sgt_post(p.http, "application/x-ndjson", body, &r);
            int status = r.status;
            sgt_response_free(&r);
            if (status == 202)
                break;
            cr_assert_eq(status, 503, "status %d", status);
            if (pushbacks++ == 0) {
                /* The budget is full of rows held for a service that is not there: nothing
                 * was written, nothing was dropped. Now it comes up. */
                cr_assert_eq(sgt_metric(p.http, RAW_WRITTEN), 0);
                cr_assert_eq(sgt_metric(p.http, "streamgate_tablestore_rows_pending"), acked);
                cr_assert_eq(get_status(p.http, "/readyz", NULL), 503);
                emu_start(&e, NULL);
            }
            sgt_sleep_ms(50);
        }
        char *line = body;
        for (int j = i; j < i + batch; j++) {
            char *nl = strchr(line, '\n');
            *nl = '\0';
            expect_line(&x, line);
            *nl = '\n';
            line = nl + 1;
        }
        acked += batch;
    }
    free(body);
    cr_assert_gt(pushbacks, 0, "no 503 from a 1 MiB budget while Tablestore was unreachable");

    cr_assert_eq(wait_status(p.http, "/readyz", 200, 30000), 200, "never became ready");
    state = writer_state(p.http);
    cr_assert_str_eq(state, "ready");
    free(state);
    cr_assert_eq(sgt_metric(p.http, "streamgate_tablestore_ready"), 1);
    cr_assert_eq(sgt_wait_metric(p.http, RAW_WRITTEN, acked, 30000), acked);
    check_clean_log(&p);
    int rc = sgt_stop_keep(&p);
    bool ready_logged = log_has(&p, "tablestore writer ready");
    remove_run_dir(&p);
    cr_assert_eq(rc, 0, "streamgate exit status %d", rc);
    cr_assert(ready_logged);

    check_results(&e, &x, results);
    cJSON *raw = read_table(&e, "raw_events", "key,ts,id");
    cr_expect_eq(cJSON_GetArraySize(raw), acked, "raw rows %d, acknowledged events %d",
                 cJSON_GetArraySize(raw), acked);
    cJSON_Delete(raw);
    emu_stop(&e);
}

/* A refused AccessKey is a definite configuration error: start-up stops before anything
 * listens, with one JSON log line that says why (and never the secret), and exit status 1. */
Test(tablestore, wrong_secret_stops_startup, .timeout = 60)
{
    struct emu e = {0};
    emu_start(&e, NULL);
    const char *args[] = {"--http-listen",
                          "127.0.0.1:0",
                          "--tcp-listen",
                          "",
                          "--tablestore-endpoint",
                          e.endpoint,
                          "--tablestore-instance",
                          INSTANCE,
                          "--tablestore-access-key-id",
                          AKID,
                          "--tablestore-access-key-secret",
                          "not-the-secret",
                          "--tablestore-create-tables",
                          "true",
                          NULL};
    char *out = NULL, *err = NULL;
    int rc = sgt_run(args, NULL, &out, &err);
    cr_assert_eq(rc, 1, "exit status %d: %s", rc, err);
    int failures = 0;
    char *copy = strdup(err);
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        cr_assert(cJSON_IsObject(j), "not a JSON line: %s", line);
        const char *msg = cJSON_GetObjectItemCaseSensitive(j, "msg")->valuestring;
        cr_assert_str_neq(msg, "listening", "it listened: %s", err);
        if (strcmp(msg, "start-up failed") == 0) {
            failures++;
            const cJSON *e2 = cJSON_GetObjectItemCaseSensitive(j, "error");
            cr_assert(cJSON_IsString(e2) && strstr(e2->valuestring, "OTSAuthFailed"), "%s", line);
        }
        cJSON_Delete(j);
    }
    free(copy);
    cr_assert_eq(failures, 1, "stderr: %s", err);
    cr_assert_null(strstr(err, "not-the-secret"), "the secret was printed");
    free(out);
    free(err);
    emu_stop(&e);
}

/* A definite error that only shows once the service is reachable (here a missing table without
 * tablestore.create_tables) fails the writer for good: not ready, ingest refused, and what it
 * held goes to the dead-letter output with the service's error. */
Test(tablestore, definite_error_found_later_fails_the_writer, .timeout = 60)
{
    struct emu e = {0};
    struct sgt_proc p;
    char secret[320], results[320], dl[320];
    const char *argv[64];
    emu_not_yet(&e);
    snprintf(dl, sizeof(dl), "%s/dead.ndjson", e.dir);
    const char *extra[] = {"--tablestore-raw-table",
                           "raw_events",
                           "--tablestore-create-tables",
                           "false",
                           "--output-dead-letter-file",
                           dl,
                           NULL};
    build_args(argv, &e, secret, results, extra);
    sgt_start(&p, argv, NULL);
    cr_assert_eq(get_status(p.http, "/readyz", NULL), 503);
    struct sgt_response r;
    sgt_post(p.http, "application/x-ndjson",
             "{\"key\":\"a\",\"ts\":1700000000000,\"value\":1}\n"
             "{\"key\":\"b\",\"ts\":1700000000001,\"value\":2}\n",
             &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    sgt_response_free(&r);

    emu_start(&e, NULL);
    int64_t deadline = sgt_mono_ms() + 30000;
    char *state;
    while (strcmp(state = writer_state(p.http), "failed") != 0 && sgt_mono_ms() < deadline) {
        free(state);
        sgt_sleep_ms(20);
    }
    cr_assert_str_eq(state, "failed");
    free(state);
    cr_assert_eq(get_status(p.http, "/readyz", NULL), 503);
    cr_assert_eq(sgt_metric(p.http, "streamgate_tablestore_ready"), 0);
    sgt_post(p.http, "application/json", "{\"key\":\"c\",\"v\":3}", &r);
    cr_assert_eq(r.status, 503, "ingest goes on for a writer that failed for good: %s", r.body);
    sgt_response_free(&r);
    cr_assert(log_has(&p, "tablestore writer failed for good"));
    cr_assert(log_has(&p, "table raw_events does not exist") ||
                  log_has(&p, "table streamgate_results does not exist"),
              "the log does not say which table");
    cr_assert_eq(sgt_wait_lines(dl, 2, 10000), 2, "the rows held are not dead letters");
    char *text = sgt_read_file(dl, NULL);
    cr_assert(text && strstr(text, "\"error\":\"OTSObjectNotExist\""), "%s", text);
    free(text);
    int rc = sgt_stop_keep(&p);
    remove_run_dir(&p);
    cr_assert_eq(rc, 0, "exit status %d: nothing was left, the rows failed", rc);
    emu_stop(&e);
}
