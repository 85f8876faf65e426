/* Windows end to end: a generated data set with known per-key, per-window results goes in over
 * TCP and HTTP; every fired window is compared with what the test computed itself (exactly for
 * count/min/max/first/last, to rounding for sums and moments, within the sketch's bound for
 * quantiles). Also: late events, the live query, idle advance, key_limit, early firing. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define T0        1700000000000LL /* a multiple of every window size used here */
#define KEYS      20
#define WINDOWS   4
#define PER_WIN   25
#define SIZE_MS   1000
#define WAIT_MS   10000
#define QUANT_EPS 0.0100001 /* DDSketch relative accuracy, and a hair for float printing */

struct expect {
    uint64_t count;
    double sum, min, max, sumsq;
    double first, last;
    int64_t first_ts, last_ts;
    double values[PER_WIN];
    bool seen;
};

static struct expect expected[KEYS][WINDOWS];

static uint64_t rng_state = 42;
static uint64_t rng(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return rng_state >> 33;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The exact lower q-quantile, rank floor(q * (n - 1)), as the sketch defines it. */
static double exact_quantile(double *v, size_t n, double q)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return v[(size_t)floor(q * (double)(n - 1))];
}

/* Builds the data set: event i of key k in window w has a unique time inside the window and a
 * skewed value (a few spikes). Returns the NDJSON lines per window, in a shuffled order. */
static char **make_windows(void)
{
    char **per_window = calloc(WINDOWS, sizeof(*per_window));
    for (int w = 0; w < WINDOWS; w++) {
        size_t n = (size_t)KEYS * PER_WIN, cap = n * 128;
        char **lines = calloc(n, sizeof(*lines));
        size_t li = 0;
        for (int k = 0; k < KEYS; k++) {
            struct expect *e = &expected[k][w];
            e->min = INFINITY;
            e->max = -INFINITY;
            for (int i = 0; i < PER_WIN; i++) {
                int64_t ts = T0 + (int64_t)w * SIZE_MS + (int64_t)i * (SIZE_MS / PER_WIN);
                double v = (double)(rng() % 10000) / 100.0;
                if (rng() % 10 == 0)
                    v *= 50; /* spikes: a skewed distribution */
                /* What is sent is the two-decimal text; expect what that text reads back as. */
                char text[32];
                snprintf(text, sizeof(text), "%.2f", v);
                v = strtod(text, NULL);
                e->values[i] = v;
                e->count++;
                e->sum += v;
                e->sumsq += v * v;
                e->min = fmin(e->min, v);
                e->max = fmax(e->max, v);
                if (i == 0) {
                    e->first = v;
                    e->first_ts = ts;
                }
                e->last = v;
                e->last_ts = ts;
                lines[li] = malloc(128);
                snprintf(lines[li], 128, "{\"key\":\"sensor-%d\",\"ts\":%lld,\"value\":%.2f}", k,
                         (long long)ts, v);
                li++;
            }
        }
        /* Shuffle within the window: order inside a window must not matter. */
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = rng() % (i + 1);
            char *t = lines[i];
            lines[i] = lines[j];
            lines[j] = t;
        }
        per_window[w] = calloc(1, cap);
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
            off += (size_t)snprintf(per_window[w] + off, cap - off, "%s\n", lines[i]);
            free(lines[i]);
        }
        free(lines);
    }
    return per_window;
}

static double num(const cJSON *obj, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    cr_assert(cJSON_IsNumber(it), "missing number %s", name);
    return it->valuedouble;
}

static void assert_close(double got, double want, double rel, const char *what)
{
    double tol = rel * fmax(1.0, fabs(want));
    cr_assert(fabs(got - want) <= tol, "%s: got %.17g, want %.17g", what, got, want);
}

/* Reads the results file and checks every (key, window) against `expected`. */
static void check_results(const char *path, size_t want_results)
{
    size_t got = sgt_wait_lines(path, want_results, WAIT_MS);
    cr_assert_eq(got, want_results, "results: got %zu lines, want %zu", got, want_results);
    char *text = sgt_read_file(path, NULL);
    size_t finals = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *r = cJSON_Parse(line);
        cr_assert_not_null(r, "not JSON: %s", line);
        const cJSON *key = cJSON_GetObjectItemCaseSensitive(r, "key");
        cr_assert(cJSON_IsString(key));
        int k = atoi(key->valuestring + strlen("sensor-"));
        int64_t start = (int64_t)num(r, "window_start");
        int w = (int)((start - T0) / SIZE_MS);
        cr_assert(k >= 0 && k < KEYS && w >= 0 && w < WINDOWS, "unexpected result %s", line);
        cr_assert_eq((int64_t)num(r, "window_end"), start + SIZE_MS);
        cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "final")), "%s", line);
        struct expect *e = &expected[k][w];
        cr_assert(!e->seen, "window %d of key %d fired twice", w, k);
        e->seen = true;
        finals++;
        cr_assert_eq((uint64_t)num(r, "count"), e->count, "%s", line);
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(r, "fields"), "value");
        cr_assert_not_null(f, "no value field: %s", line);
        cr_assert_eq((uint64_t)num(f, "count"), e->count);
        assert_close(num(f, "sum"), e->sum, 1e-9, "sum");
        cr_assert_eq(num(f, "min"), e->min, "min %s", line);
        cr_assert_eq(num(f, "max"), e->max, "max %s", line);
        double mean = e->sum / (double)e->count;
        assert_close(num(f, "mean"), mean, 1e-9, "mean");
        double var = e->sumsq / (double)e->count - mean * mean;
        assert_close(num(f, "stddev"), sqrt(var > 0 ? var : 0), 1e-6, "stddev");
        cr_assert_eq(num(f, "first"), e->first, "first %s", line);
        cr_assert_eq(num(f, "last"), e->last, "last %s", line);
        static const struct {
            const char *name;
            double q;
        } qs[] = {{"p50", 0.5}, {"p99", 0.99}};
        for (size_t i = 0; i < 2; i++) {
            double v[PER_WIN];
            memcpy(v, e->values, sizeof(v));
            double want = exact_quantile(v, e->count, qs[i].q);
            double gotq = num(f, qs[i].name);
            cr_assert(fabs(gotq - want) <= QUANT_EPS * fabs(want), "%s: got %g, exact %g (%s)",
                      qs[i].name, gotq, want, line);
        }
        cJSON_Delete(r);
    }
    cr_assert_eq(finals, want_results);
    free(text);
}

static void results_args(const char **args, char *results, char *late)
{
    args[0] = "--output-results-file";
    args[1] = results;
    args[2] = "--output-late-file";
    args[3] = late;
}

/* Result and late files, named before the process starts (the harness's own directory only
 * exists once it has). */
static void temp_paths(char *results, char *late, size_t len)
{
    static int n;
    snprintf(results, len, "/tmp/sgt-windows-%d-%d-results.ndjson", (int)getpid(), n);
    snprintf(late, len, "/tmp/sgt-windows-%d-%d-late.ndjson", (int)getpid(), n++);
    unlink(results);
    unlink(late);
}

Test(windows, tumbling_results_exact_over_tcp_and_http, .timeout = 120)
{
    char results[256], late[256];
    temp_paths(results, late, sizeof(results));
    const char *args[] = {NULL,
                          NULL,
                          NULL,
                          NULL,
                          "--window-size",
                          "1s",
                          "--window-quantiles",
                          "p50,p99",
                          "--window-idle-timeout",
                          "1h",
                          NULL};
    struct sgt_proc p;
    results_args(args, results, late);
    sgt_start(&p, args, NULL);
    char **per_window = make_windows();

    /* Window by window; within each, half the lines over TCP and half over HTTP NDJSON. Before
     * the next window moves event time on, this window's TCP lines must all be in, or they
     * would (rightly) be late. */
    int tcp = sgt_connect(p.tcp);
    double tcp_lines = 0;
    for (int w = 0; w < WINDOWS; w++) {
        char *text = per_window[w];
        size_t len = strlen(text), half = len / 2;
        while (half < len && text[half - 1] != '\n')
            half++;
        for (size_t i = 0; i < half; i++)
            tcp_lines += text[i] == '\n';
        sgt_send_all(tcp, text, half);
        struct sgt_response r;
        sgt_http(p.http, "POST", "/v1/events", "Content-Type: application/x-ndjson\r\n",
                 text + half, len - half, &r);
        cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
        cr_assert_not_null(strstr(r.body, "\"rejected\":0"), "rejections: %s", r.body);
        sgt_response_free(&r);
        cr_assert_eq(sgt_wait_metric(p.http, "streamgate_events_accepted_total{transport=\"tcp\"}",
                                     tcp_lines, WAIT_MS),
                     tcp_lines);
        free(text);
    }
    free(per_window);
    cr_assert_eq(sgt_metric(p.http, "streamgate_late_events_total"), 0);
    close(tcp);
    /* Windows 0..2 fired as time passed them; the last one fires on SIGTERM. */
    sgt_wait_metric(p.http, "streamgate_windows_fired_total", KEYS * (WINDOWS - 1), WAIT_MS);
    cr_assert_eq(sgt_metric(p.http, "streamgate_windows_fired_total"), KEYS * (WINDOWS - 1));
    cr_assert_eq(sgt_metric(p.http, "streamgate_windows_open"), KEYS);
    cr_assert_eq(sgt_metric(p.http, "streamgate_keys_active"), KEYS);
    sgt_stop_ok(&p);
    check_results(results, (size_t)KEYS * WINDOWS);
    unlink(results);
    unlink(late);
}

Test(windows, late_event_is_counted_and_does_not_change_a_fired_result)
{
    char results[256], late[256];
    temp_paths(results, late, sizeof(results));
    const char *args[] = {NULL,
                          NULL,
                          NULL,
                          NULL,
                          "--window-size",
                          "1s",
                          "--window-allowed-lateness",
                          "500ms",
                          "--window-idle-timeout",
                          "1h",
                          NULL};
    struct sgt_proc p;
    results_args(args, results, late);
    sgt_start(&p, args, NULL);
    struct sgt_response r;
    char body[512];
    snprintf(body, sizeof(body),
             "{\"key\":\"k\",\"ts\":%lld,\"value\":1}\n"
             "{\"key\":\"k\",\"ts\":%lld,\"value\":2}\n"
             /* 1.7 s later: the watermark (1.2 s) passes the end of window 0 */
             "{\"key\":\"k\",\"ts\":%lld,\"value\":3}\n",
             (long long)T0 + 100, (long long)T0 + 900, (long long)T0 + 1700);
    sgt_post(p.http, "application/x-ndjson", body, &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    sgt_response_free(&r);
    cr_assert_eq(sgt_wait_lines(results, 1, WAIT_MS), 1, "window 0 fired");

    /* Within lateness for window 1 (still open), but too late for window 0. */
    snprintf(body, sizeof(body),
             "{\"key\":\"k\",\"ts\":%lld,\"value\":100}\n"
             "{\"key\":\"k\",\"ts\":%lld,\"value\":4}\n",
             (long long)T0 + 500, (long long)T0 + 1300);
    sgt_post(p.http, "application/x-ndjson", body, &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    cr_assert_str_eq(r.body, "{\"accepted\":2,\"rejected\":0,\"errors\":[]}",
                     "a late event is accepted (the raw stream has it), not aggregated");
    sgt_response_free(&r);
    cr_assert_eq(sgt_wait_metric(p.http, "streamgate_late_events_total", 1, WAIT_MS), 1);
    cr_assert_eq(sgt_wait_lines(late, 1, WAIT_MS), 1);
    char *late_text = sgt_read_file(late, NULL);
    cr_assert_not_null(strstr(late_text, "\"value\":100"), "late file: %s", late_text);
    free(late_text);
    sgt_stop_ok(&p);

    cr_assert_eq(sgt_wait_lines(results, 2, WAIT_MS), 2);
    char *text = sgt_read_file(results, NULL);
    char *second = strchr(text, '\n') + 1;
    second[-1] = '\0';
    cJSON *w0 = cJSON_Parse(text), *w1 = cJSON_Parse(second);
    cr_assert(w0 && w1, "%s", text);
    cr_assert_eq(num(w0, "window_start"), (double)T0);
    cr_assert_eq(num(w0, "count"), 2, "the late event did not change window 0");
    cr_assert_eq(num(cJSON_GetObjectItem(cJSON_GetObjectItem(w0, "fields"), "value"), "max"), 2);
    cr_assert_eq(num(w1, "window_start"), (double)T0 + 1000);
    cr_assert_eq(num(w1, "count"), 2, "window 1 took the event within lateness");
    cJSON_Delete(w0);
    cJSON_Delete(w1);
    free(text);
    unlink(results);
    unlink(late);
}

Test(windows, live_query_shows_open_windows)
{
    const char *args[] = {"--window-size", "10s", "--window-idle-timeout", "1h", NULL};
    struct sgt_proc p;
    sgt_start(&p, args, NULL);
    struct sgt_response r;
    char body[512];
    snprintf(body, sizeof(body),
             "[{\"key\":\"a/b c\",\"ts\":%lld,\"value\":1.5},"
             "{\"key\":\"a/b c\",\"ts\":%lld,\"value\":2.5},"
             "{\"key\":\"x\",\"ts\":%lld,\"v\":7},{\"key\":\"y\",\"ts\":%lld,\"v\":8}]",
             (long long)T0, (long long)T0 + 1, (long long)T0 + 2, (long long)T0 + 3);
    sgt_post(p.http, "application/json", body, &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    sgt_response_free(&r);

    sgt_http(p.http, "GET", "/v1/streams/a%2Fb%20c", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cJSON *j = cJSON_Parse(r.body);
    cr_assert_not_null(j, "%s", r.body);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "key")->valuestring, "a/b c");
    const cJSON *wins = cJSON_GetObjectItem(j, "windows");
    cr_assert_eq(cJSON_GetArraySize(wins), 1);
    const cJSON *w = cJSON_GetArrayItem(wins, 0);
    cr_assert_eq(num(w, "count"), 2);
    cr_assert_eq(num(w, "window_start"), (double)T0);
    cr_assert_eq(num(cJSON_GetObjectItem(cJSON_GetObjectItem(w, "fields"), "value"), "sum"), 4);
    cJSON_Delete(j);
    sgt_response_free(&r);

    sgt_http(p.http, "GET", "/v1/streams/nope", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 404);
    sgt_response_free(&r);
    sgt_http(p.http, "GET", "/v1/streams/%zz", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 400);
    sgt_response_free(&r);

    sgt_http(p.http, "GET", "/v1/streams?limit=2", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    j = cJSON_Parse(r.body);
    cr_assert_eq(num(j, "active_keys"), 3);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "keys")), 2);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(j, "truncated")));
    cJSON_Delete(j);
    sgt_response_free(&r);

    sgt_http(p.http, "GET", "/v1/streams", NULL, NULL, 0, &r);
    j = cJSON_Parse(r.body);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "keys")), 3);
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(j, "truncated")));
    cJSON_Delete(j);
    sgt_response_free(&r);

    const char *bad[] = {"/v1/streams?limit=0", "/v1/streams?limit=abc", "/v1/streams?limit=1001",
                         "/v1/streams?limit="};
    for (size_t i = 0; i < 4; i++) {
        sgt_http(p.http, "GET", bad[i], NULL, NULL, 0, &r);
        cr_assert_eq(r.status, 400, "%s: %d", bad[i], r.status);
        sgt_response_free(&r);
    }
    sgt_http(p.http, "POST", "/v1/streams", NULL, "", 0, &r);
    cr_assert_eq(r.status, 405);
    sgt_response_free(&r);
    sgt_stop_ok(&p);
}

Test(windows, idle_advance_fires_the_last_window_without_new_events)
{
    char results[256], late[256];
    temp_paths(results, late, sizeof(results));
    const char *args[] = {NULL,    NULL, NULL, NULL, "--window-size", "1s", "--window-idle-timeout",
                          "200ms", NULL};
    struct sgt_proc p;
    results_args(args, results, late);
    sgt_start(&p, args, NULL);
    int fd = sgt_connect(p.tcp);
    char line[128];
    snprintf(line, sizeof(line), "{\"key\":\"idle\",\"ts\":%lld,\"value\":5}\n", (long long)T0);
    sgt_send_str(fd, line);
    /* Nothing else arrives: after 200 ms idle the watermark moves at the wall clock's pace and
     * passes the window's end about a second later. */
    cr_assert_eq(sgt_wait_lines(results, 1, WAIT_MS), 1, "the window fired on idle advance");
    char *text = sgt_read_file(results, NULL);
    cr_assert_not_null(strstr(text, "\"final\":true"), "%s", text);
    free(text);
    close(fd);
    sgt_stop_ok(&p);
    unlink(results);
    unlink(late);
}

Test(windows, key_limit_rejects_new_keys_only)
{
    const char *args[] = {"--stream-max-keys", "2", NULL};
    struct sgt_proc p;
    sgt_start(&p, args, NULL);
    struct sgt_response r;
    sgt_post(p.http, "application/x-ndjson",
             "{\"key\":\"a\",\"v\":1}\n{\"key\":\"b\",\"v\":1}\n{\"key\":\"c\",\"v\":1}\n"
             "{\"key\":\"a\",\"v\":2}\n",
             &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"accepted\":3,\"rejected\":1"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"index\":2,\"line\":3"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "key_limit"), "%s", r.body);
    sgt_response_free(&r);
    cr_assert_eq(
        sgt_metric(p.http,
                   "streamgate_events_rejected_total{transport=\"http\",reason=\"key_limit\"}"),
        1);
    cr_assert_eq(sgt_wait_lines(p.out_path, 3, WAIT_MS), 3, "the rejected event is not written");
    sgt_stop_ok(&p);
}

Test(windows, early_firing_emits_updates_then_the_final)
{
    char results[256], late[256];
    temp_paths(results, late, sizeof(results));
    const char *args[] = {NULL,
                          NULL,
                          NULL,
                          NULL,
                          "--window-size",
                          "1h",
                          "--window-emit-interval",
                          "100ms",
                          "--window-idle-timeout",
                          "1h",
                          NULL};
    struct sgt_proc p;
    results_args(args, results, late);
    sgt_start(&p, args, NULL);
    struct sgt_response r;
    char body[256];
    snprintf(body, sizeof(body), "{\"key\":\"e\",\"ts\":%lld,\"value\":1}", (long long)T0);
    sgt_post(p.http, "application/json", body, &r);
    sgt_response_free(&r);
    cr_assert_eq(sgt_wait_lines(results, 1, WAIT_MS), 1, "an update within the interval");
    sgt_sleep_ms(350);
    cr_assert_eq(sgt_wait_lines(results, 1, 10), 1, "no update while nothing changed");
    snprintf(body, sizeof(body), "{\"key\":\"e\",\"ts\":%lld,\"value\":2}", (long long)T0 + 5);
    sgt_post(p.http, "application/json", body, &r);
    sgt_response_free(&r);
    cr_assert_eq(sgt_wait_lines(results, 2, WAIT_MS), 2);
    sgt_stop_ok(&p);
    cr_assert_eq(sgt_wait_lines(results, 3, WAIT_MS), 3, "the final at shutdown");
    char *text = sgt_read_file(results, NULL);
    char *l2 = strchr(text, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    l2[-1] = l3[-1] = '\0';
    cJSON *a = cJSON_Parse(text), *b = cJSON_Parse(l2), *c = cJSON_Parse(l3);
    cr_assert(a && b && c);
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(a, "final")));
    cr_assert_eq(num(a, "count"), 1);
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(b, "final")));
    cr_assert_eq(num(b, "count"), 2);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(c, "final")));
    cr_assert_eq(num(c, "count"), 2);
    cr_assert_eq(num(a, "window_start"), num(c, "window_start"), "same identity: an upsert");
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
    free(text);
    unlink(results);
    unlink(late);
}

Test(windows, hopping_windows_count_each_event_in_every_window)
{
    char results[256], late[256];
    temp_paths(results, late, sizeof(results));
    const char *args[] = {NULL,
                          NULL,
                          NULL,
                          NULL,
                          "--window-type",
                          "hopping",
                          "--window-size",
                          "2s",
                          "--window-slide",
                          "1s",
                          "--window-idle-timeout",
                          "1h",
                          NULL};
    struct sgt_proc p;
    results_args(args, results, late);
    sgt_start(&p, args, NULL);
    int fd = sgt_connect(p.tcp);
    char line[128];
    /* One event per 500 ms over [T0, T0+3s): windows starting at T0-1s .. T0+2s. */
    for (int i = 0; i < 6; i++) {
        snprintf(line, sizeof(line), "{\"key\":\"h\",\"ts\":%lld,\"value\":%d}\n",
                 (long long)T0 + i * 500, i);
        sgt_send_str(fd, line);
    }
    close(fd);
    sgt_wait_metric(p.http, "streamgate_events_accepted_total{transport=\"tcp\"}", 6, WAIT_MS);
    sgt_stop_ok(&p);
    cr_assert_eq(sgt_wait_lines(results, 4, WAIT_MS), 4);
    char *text = sgt_read_file(results, NULL);
    int seen = 0;
    for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(l);
        int64_t start = (int64_t)num(j, "window_start") - T0;
        double want = start == -1000 ? 2 : start == 0 ? 4 : start == 1000 ? 4 : 2;
        cr_assert(start >= -1000 && start <= 2000 && start % 1000 == 0, "%s", l);
        cr_assert_eq(num(j, "count"), want, "%s", l);
        cr_assert_eq(num(j, "window_end") - num(j, "window_start"), 2000);
        seen |= 1 << (start / 1000 + 1);
        cJSON_Delete(j);
    }
    cr_assert_eq(seen, 0xf, "every window once");
    free(text);
    unlink(results);
    unlink(late);
}

Test(windows, processing_time_windows_use_arrival_time)
{
    char results[256], late[256];
    temp_paths(results, late, sizeof(results));
    const char *args[] = {NULL,    NULL, NULL, NULL, "--window-time", "processing", "--window-size",
                          "200ms", NULL};
    struct sgt_proc p;
    results_args(args, results, late);
    sgt_start(&p, args, NULL);
    struct sgt_response r;
    /* An event time long ago does not matter in processing time. */
    sgt_post(p.http, "application/json", "{\"key\":\"pt\",\"ts\":1000,\"value\":1}", &r);
    cr_assert_eq(r.status, 202);
    sgt_response_free(&r);
    cr_assert_eq(sgt_wait_lines(results, 1, WAIT_MS), 1, "fired by the wall clock");
    char *text = sgt_read_file(results, NULL);
    cJSON *j = cJSON_Parse(text);
    cr_assert_gt(num(j, "window_start"), 1.6e12, "arrival time, not the event's ts: %s", text);
    cr_assert_eq(sgt_metric(p.http, "streamgate_late_events_total"), 0);
    cJSON_Delete(j);
    free(text);
    sgt_stop_ok(&p);
    unlink(results);
    unlink(late);
}

Test(windows, session_windows_with_distinct_counts)
{
    char results[256], late[256];
    temp_paths(results, late, sizeof(results));
    const char *args[] = {NULL,
                          NULL,
                          NULL,
                          NULL,
                          "--window-type",
                          "session",
                          "--window-gap",
                          "1s",
                          "--window-distinct-field",
                          "user",
                          "--window-quantiles",
                          "",
                          "--window-idle-timeout",
                          "1h",
                          NULL};
    struct sgt_proc p;
    results_args(args, results, late);
    sgt_start(&p, args, NULL);
    /* Session A: 200 events 100 ms apart (gaps under 1 s) from 50 users; then 5 s of silence;
     * session B: 3 events from one user. */
    char *body = malloc(64 * 1024);
    size_t off = 0;
    for (int i = 0; i < 200; i++)
        off += (size_t)snprintf(body + off, 64 * 1024 - off,
                                "{\"key\":\"s\",\"ts\":%lld,\"user\":\"u%d\",\"value\":1}\n",
                                (long long)T0 + i * 100, i % 50);
    for (int i = 0; i < 3; i++)
        off += (size_t)snprintf(body + off, 64 * 1024 - off,
                                "{\"key\":\"s\",\"ts\":%lld,\"user\":\"solo\",\"value\":2}\n",
                                (long long)T0 + 19900 + 5000 + i * 10);
    struct sgt_response r;
    sgt_post(p.http, "application/x-ndjson", body, &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"accepted\":203"), "%s", r.body);
    sgt_response_free(&r);
    free(body);
    /* Session A ended 1 s after its last event, which the watermark has passed. */
    cr_assert_eq(sgt_wait_lines(results, 1, WAIT_MS), 1);
    sgt_stop_ok(&p);
    cr_assert_eq(sgt_wait_lines(results, 2, WAIT_MS), 2);

    char *text = sgt_read_file(results, NULL);
    char *second = strchr(text, '\n') + 1;
    second[-1] = '\0';
    cJSON *a = cJSON_Parse(text), *b = cJSON_Parse(second);
    cr_assert(a && b, "%s", text);
    cr_assert_eq(num(a, "window_start"), (double)T0);
    cr_assert_eq(num(a, "window_end"), (double)T0 + 19900 + 1000, "last event + gap");
    cr_assert_eq(num(a, "count"), 200);
    /* 50 distinct users: HyperLogLog at p=12 is exact-ish at this size (within 3 sigma). */
    cr_assert(fabs(num(a, "distinct") - 50) <= 3 * 1.04 / 64 * 50 + 1, "distinct %g",
              num(a, "distinct"));
    cr_assert_null(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "fields"), "value"), "p50"),
        "an empty window.quantiles turns the sketch off");
    cr_assert_eq(num(b, "window_start"), (double)T0 + 24900);
    cr_assert_eq(num(b, "count"), 3);
    cr_assert_eq(num(b, "distinct"), 1);
    cJSON_Delete(a);
    cJSON_Delete(b);
    free(text);
    unlink(results);
    unlink(late);
}

Test(windows, epoch_seconds_with_event_time_unit_s)
{
    char results[256], late[256];
    temp_paths(results, late, sizeof(results));
    const char *args[] = {NULL,
                          NULL,
                          NULL,
                          NULL,
                          "--event-time-unit",
                          "s",
                          "--window-size",
                          "10s",
                          "--window-idle-timeout",
                          "1h",
                          NULL};
    struct sgt_proc p;
    results_args(args, results, late);
    sgt_start(&p, args, NULL);
    /* Epoch seconds, as many producers send them; 1732460000 s is a multiple of 10 s. The last
     * millisecond of the first window, written as a fraction, must stay in it; the event 25 s
     * on moves the watermark past the ends of the first two windows. */
    const long long s0 = 1732460000;
    char body[512];
    snprintf(body, sizeof(body),
             "{\"key\":\"sec\",\"ts\":%lld,\"value\":1}\n"
             "{\"key\":\"sec\",\"ts\":%lld.5,\"value\":2}\n"
             "{\"key\":\"sec\",\"ts\":%lld.999,\"value\":3}\n"
             "{\"key\":\"sec\",\"ts\":%lld,\"value\":4}\n"
             "{\"key\":\"sec\",\"ts\":%lld,\"value\":5}\n",
             s0, s0 + 4, s0 + 9, s0 + 10, s0 + 25);
    struct sgt_response r;
    sgt_post(p.http, "application/x-ndjson", body, &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    cr_assert_str_eq(r.body, "{\"accepted\":5,\"rejected\":0,\"errors\":[]}");
    sgt_response_free(&r);
    cr_assert_eq(sgt_wait_lines(results, 2, WAIT_MS), 2, "the first two windows fired");
    cr_assert_eq(sgt_metric(p.http, "streamgate_late_events_total"), 0);

    char *text = sgt_read_file(results, NULL);
    char *second = strchr(text, '\n') + 1;
    second[-1] = '\0';
    cJSON *a = cJSON_Parse(text), *b = cJSON_Parse(second);
    cr_assert(a && b, "%s", text);
    cr_assert_eq(num(a, "window_start"), (double)s0 * 1000, "%s", text);
    cr_assert_eq(num(a, "window_end"), (double)(s0 + 10) * 1000);
    cr_assert_eq(num(a, "count"), 3);
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(a, "fields"), "value");
    cr_assert_eq(num(v, "first"), 1);
    cr_assert_eq(num(v, "last"), 3, "9.999 s is the first window's last millisecond");
    cr_assert_eq(num(b, "window_start"), (double)(s0 + 10) * 1000, "%s", second);
    cr_assert_eq(num(b, "count"), 1);
    cJSON_Delete(a);
    cJSON_Delete(b);
    free(text);
    sgt_stop_ok(&p);
    unlink(results);
    unlink(late);
}

/* The server's log lines whose "msg" is `msg`, parsed, in order; returns how many (at most
 * max). */
static size_t log_lines(const struct sgt_proc *p, const char *msg, cJSON **out, size_t max)
{
    char *text = sgt_read_file(p->log_path, NULL);
    size_t n = 0;
    cr_assert_not_null(text);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "msg");
        if (cJSON_IsString(m) && strcmp(m->valuestring, msg) == 0 && n < max)
            out[n++] = j;
        else
            cJSON_Delete(j);
    }
    free(text);
    return n;
}

static void free_lines_json(cJSON **lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cJSON_Delete(lines[i]);
}

Test(windows, late_events_are_logged_at_the_bad_input_rate)
{
    const char *args[] = {"--window-size",
                          "1s",
                          "--window-idle-timeout",
                          "1h",
                          "--log-bad-input-interval",
                          "1h",
                          NULL};
    struct sgt_proc p;
    sgt_start(&p, args, NULL);
    struct sgt_response r;
    char body[512];
    /* On time: window 0 holds the first event; the second moves the watermark to T0 + 1700,
     * past window 0's end. */
    snprintf(body, sizeof(body),
             "{\"key\":\"on-time\",\"ts\":%lld,\"value\":1}\n"
             "{\"key\":\"on-time\",\"ts\":%lld,\"value\":2}\n",
             (long long)T0 + 100, (long long)T0 + 1700);
    sgt_post(p.http, "application/x-ndjson", body, &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    sgt_response_free(&r);
    cJSON *lines[4];
    cr_assert_eq(log_lines(&p, "late event", lines, 4), 0, "nothing is late yet");

    snprintf(body, sizeof(body), "{\"key\":\"sensor-9\",\"ts\":%lld,\"value\":3}",
             (long long)T0 + 500);
    sgt_post(p.http, "application/json", body, &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    sgt_response_free(&r);
    cr_assert_eq(sgt_wait_metric(p.http, "streamgate_late_events_total", 1, WAIT_MS), 1);
    cr_assert_eq(log_lines(&p, "late event", lines, 4), 1);
    cJSON *j = lines[0];
    cr_assert_str_eq(cJSON_GetObjectItem(j, "level")->valuestring, "warn");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "key")->valuestring, "sensor-9");
    cr_assert_eq(num(j, "event_time"), (double)T0 + 500);
    cr_assert_eq(num(j, "window_end"), (double)T0 + 1000, "the window it missed");
    cr_assert_eq(num(j, "watermark"), (double)T0 + 1700);
    cr_assert_null(cJSON_GetObjectItem(j, "hint"), "an ordinary late event: no unit hint");
    cJSON_Delete(j);

    /* A burst of late events within log.bad_input_interval: counted, not logged again. */
    char *burst = malloc(64 * 1024);
    size_t off = 0;
    for (int i = 0; i < 200; i++)
        off += (size_t)snprintf(burst + off, 64 * 1024 - off,
                                "{\"key\":\"burst-%d\",\"ts\":%lld,\"value\":1}\n", i % 7,
                                (long long)T0 + i);
    sgt_post(p.http, "application/x-ndjson", burst, &r);
    free(burst);
    cr_assert_eq(r.status, 202, "%s", r.body);
    sgt_response_free(&r);
    cr_assert_eq(sgt_wait_metric(p.http, "streamgate_late_events_total", 201, WAIT_MS), 201);
    size_t n = log_lines(&p, "late event", lines, 4);
    cr_assert_eq(n, 1, "%zu late-event lines within one interval", n);
    free_lines_json(lines, n);
    sgt_stop_ok(&p);
}

Test(windows, late_event_in_the_wrong_time_unit_is_logged_with_a_hint)
{
    const char *args[] = {"--window-size", "1s", "--window-idle-timeout", "1h", NULL};
    struct sgt_proc p;
    sgt_start(&p, args, NULL);
    struct sgt_response r;
    char body[512];
    /* One producer sends milliseconds, another epoch seconds while the unit is ms. */
    snprintf(body, sizeof(body),
             "{\"key\":\"ms\",\"ts\":%lld,\"value\":1}\n"
             "{\"key\":\"seconds\",\"ts\":%lld,\"value\":2}\n",
             (long long)T0, (long long)T0 / 1000);
    sgt_post(p.http, "application/x-ndjson", body, &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    sgt_response_free(&r);
    cr_assert_eq(sgt_wait_metric(p.http, "streamgate_late_events_total", 1, WAIT_MS), 1);
    cJSON *lines[4];
    size_t n = log_lines(&p, "late event", lines, 4);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(cJSON_GetObjectItem(lines[0], "key")->valuestring, "seconds");
    cr_assert_eq(num(lines[0], "event_time"), (double)(T0 / 1000));
    const cJSON *hint = cJSON_GetObjectItem(lines[0], "hint");
    cr_assert(cJSON_IsString(hint), "no hint in the late-event line");
    cr_assert_not_null(strstr(hint->valuestring, "is event.time_unit right?"), "%s",
                       hint->valuestring);
    free_lines_json(lines, n);
    sgt_stop_ok(&p);
}
