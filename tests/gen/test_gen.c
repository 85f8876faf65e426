/* streamgate-gen end to end: the real generator binary ($SG_GEN_BINARY) writing files, and
 * driving the real streamgate ($SG_BINARY, through the integration harness) over TCP and HTTP.
 * What the server wrote (raw events, window results, metrics) is compared with what the
 * generator says it sent and with the window aggregates it expects. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../integration/harness.h"

#define T0      1700000000000LL
#define WAIT_MS 30000

/* ---- helpers ------------------------------------------------------------------------- */

struct run {
    int status;
    char *out, *err;
};

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
}

/* Runs streamgate-gen with `args` (NULL-terminated) to completion, capturing its output. */
static void run_gen(const char *const *args, struct run *r)
{
    const char *bin = getenv("SG_GEN_BINARY");
    cr_assert(bin && *bin, "SG_GEN_BINARY is not set (run the tests through meson test)");
    char out_path[] = "/tmp/sgt-gen-out-XXXXXX", err_path[] = "/tmp/sgt-gen-err-XXXXXX";
    int out_fd = mkstemp(out_path), err_fd = mkstemp(err_path);
    cr_assert(out_fd >= 0 && err_fd >= 0);
    const char *argv[64];
    size_t n = 0;
    argv[n++] = bin;
    for (const char *const *a = args; *a; a++) {
        cr_assert(n < 63);
        argv[n++] = *a;
    }
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(out_fd, 1);
        dup2(err_fd, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    close(out_fd);
    close(err_fd);
    r->out = sgt_read_file(out_path, NULL);
    r->err = sgt_read_file(err_path, NULL);
    unlink(out_path);
    unlink(err_path);
    cr_assert(r->out && r->err);
}

static char *tmp_dir(void)
{
    char *d = strdup("/tmp/sgt-gen-XXXXXX");
    cr_assert(d && mkdtemp(d));
    return d;
}

static void rm_dir(char *d)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
    cr_assert_eq(system(cmd), 0);
    free(d);
}

static double num(const cJSON *obj, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    cr_assert(cJSON_IsNumber(it), "missing number %s", name);
    return it->valuedouble;
}

static const char *str(const cJSON *obj, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    cr_assert(cJSON_IsString(it), "missing string %s", name);
    return it->valuestring;
}

/* Splits a file into lines in place; returns the count. */
static size_t split_lines(char *text, char ***lines)
{
    size_t n = 0, cap = 1024;
    *lines = malloc(cap * sizeof(**lines));
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (n == cap)
            *lines = realloc(*lines, (cap *= 2) * sizeof(**lines));
        (*lines)[n++] = l;
    }
    return n;
}

static int key_index(const char *key, const char *prefix)
{
    size_t pl = strlen(prefix);
    cr_assert(strncmp(key, prefix, pl) == 0, "key %s", key);
    char *end;
    long k = strtol(key + pl, &end, 10);
    cr_assert(*end == '\0' && k >= 0, "key %s", key);
    return (int)k;
}

/* Checks the raw events: `want` lines, and per key the seq numbers are exactly 0..n-1 (each
 * event arrived once). `order` also asks that they arrived in order. */
static void check_raw(const char *path, size_t want, int keys, bool order)
{
    size_t len;
    char *text = sgt_read_file(path, &len);
    cr_assert_not_null(text, "no %s", path);
    char **lines;
    size_t n = split_lines(text, &lines);
    cr_assert_eq(n, want, "raw events: %zu lines, want %zu", n, want);
    uint64_t *count = calloc((size_t)keys, sizeof(*count));
    uint8_t **seen = calloc((size_t)keys, sizeof(*seen));
    for (size_t i = 0; i < n; i++) {
        cJSON *e = cJSON_Parse(lines[i]);
        cr_assert_not_null(e, "not JSON: %s", lines[i]);
        int k = key_index(str(e, "key"), "sensor-");
        cr_assert(k < keys);
        uint64_t seq = (uint64_t)num(e, "seq");
        cr_assert(seq < want);
        if (!seen[k])
            seen[k] = calloc(want, 1);
        cr_assert(!seen[k][seq], "duplicate %s", lines[i]);
        seen[k][seq] = 1;
        if (order)
            cr_assert_eq(seq, count[k], "out of order: %s", lines[i]);
        count[k]++;
        cJSON_Delete(e);
    }
    for (int k = 0; k < keys; k++) {
        for (uint64_t s = 0; s < count[k]; s++)
            cr_assert(seen[k][s], "key %d misses seq %" PRIu64, k, s);
        free(seen[k]);
    }
    free(seen);
    free(count);
    free(lines);
    free(text);
}

static int cmp_result(const void *a, const void *b)
{
    const cJSON *x = *(cJSON *const *)a, *y = *(cJSON *const *)b;
    int c = strcmp(str(x, "key"), str(y, "key"));
    if (c)
        return c;
    double sx = num(x, "window_start"), sy = num(y, "window_start");
    return sx < sy ? -1 : sx > sy;
}

static cJSON *summary(const struct run *r)
{
    cJSON *j = cJSON_Parse(r->out);
    cr_assert_not_null(j, "no JSON summary: %s / %s", r->out, r->err);
    return j;
}

/* Runs streamgate-gen --check-results RESULTS --expect EXPECT --json; returns its status and
 * summary (NULL when it printed none: a usage or read error). */
static int run_check(const char *results_path, const char *expect_path, struct run *r, cJSON **j)
{
    run_gen(
        (const char *[]){"--check-results", results_path, "--expect", expect_path, "--json", NULL},
        r);
    *j = cJSON_Parse(r->out);
    return r->status;
}

/* Every final window in the results file equals the generator's expectation exactly, as
 * streamgate-gen --check-results compares them (its own tests below show it catches each kind
 * of difference). The expectation must not be empty and must be sorted by (key,
 * window_start), as --expect promises; the comparison itself does not need that. */
static void check_results(const char *results_path, const char *expect_path)
{
    char *et = sgt_read_file(expect_path, NULL);
    cr_assert_not_null(et);
    char **el;
    size_t en = split_lines(et, &el);
    cr_assert_gt(en, 0);
    cJSON *prev = NULL;
    for (size_t i = 0; i < en; i++) {
        cJSON *e = cJSON_Parse(el[i]);
        cr_assert_not_null(e, "not JSON: %s", el[i]);
        if (prev)
            cr_assert_lt(cmp_result(&prev, &e), 0, "expectation not sorted at line %zu", i);
        cJSON_Delete(prev);
        prev = e;
    }
    cJSON_Delete(prev);
    free(el);
    free(et);

    struct run r;
    cJSON *j;
    int status = run_check(results_path, expect_path, &r, &j);
    cr_assert_eq(status, 0, "results differ from the expectation: %s", r.err);
    cr_assert_not_null(j, "no JSON summary: %s / %s", r.out, r.err);
    cr_assert_eq(num(j, "windows"), (double)en);
    cr_assert_eq(num(j, "expected"), (double)en);
    cr_assert_eq(num(j, "differences"), 0);
    cJSON_Delete(j);
    run_free(&r);
}

/* ---- without a server ---------------------------------------------------------------- */

Test(gen, help_lists_every_option)
{
    struct run r;
    run_gen((const char *[]){"--help", NULL}, &r);
    cr_assert_eq(r.status, 0);
    static const char *const opts[] = {
        "--http",         "--tcp",           "--file",        "--source",        "--count",
        "--duration",     "--rate",          "--keys",        "--dist",          "--zipf-s",
        "--batch",        "--ndjson",        "--connections", "--start-ts",      "--ts-step",
        "--disorder",     "--max-delay",     "--late",        "--lateness",      "--window-size",
        "--expect",       "--expect-fields", "--seed",        "--retry",         "--max-retries",
        "--quiet",        "--json",          "--token",       "--check-results", "--check-history",
        "--expect-values"};
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
        cr_assert_not_null(strstr(r.out, opts[i]), "--help misses %s", opts[i]);
    run_free(&r);
}

Test(gen, bad_options_fail)
{
    const char *const *cases[] = {
        (const char *[]){"--count", "5", NULL},                                /* no target */
        (const char *[]){"--file", "/dev/null", "--tcp", "127.0.0.1:1", NULL}, /* two */
        (const char *[]){"--file", "/dev/null", "--bogus", NULL},
        (const char *[]){"--file", "/dev/null", "--count", "x", NULL},
        (const char *[]){"--file", "/dev/null", "--keys", "0", NULL},
        (const char *[]){"--file", "/dev/null", "--disorder", "0.7", "--late", "0.5", NULL},
        (const char *[]){"--file", "/dev/null", "--dist", "normal", NULL},
        (const char *[]){"--file", "/dev/null", "--expect", "/dev/null", "--expect-fields", "nope",
                         NULL},
        (const char *[]){"--http", "https://127.0.0.1:1/", NULL},
        (const char *[]){"--tcp", "127.0.0.1", NULL},
        (const char *[]){"--file", "/dev/null", "--count", NULL},
        (const char *[]){"--check-results", "/dev/null", NULL}, /* no --expect */
        (const char *[]){"--check-results", "/dev/null", "--expect", "/dev/null", "--file",
                         "/dev/null", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct run r;
        run_gen(cases[i], &r);
        cr_assert_eq(r.status, 2, "case %zu: status %d (%s)", i, r.status, r.err);
        cr_assert_not_null(strstr(r.err, "streamgate-gen: "), "case %zu: %s", i, r.err);
        run_free(&r);
    }
}

Test(gen, unreachable_server_fails)
{
    /* A port nothing listens on: the run ends with an error and a non-zero status. */
    struct run r;
    run_gen((const char *[]){"--tcp", "127.0.0.1:1", "--count", "10", "--quiet", "--json", NULL},
            &r);
    cr_assert_eq(r.status, 1, "%s", r.err);
    cJSON *j = summary(&r);
    cr_assert_eq(num(j, "acked"), 0);
    cr_assert_geq(num(j, "errors"), 1);
    cJSON_Delete(j);
    run_free(&r);
}

static char *gen_file(const char *dir, const char *name, const char *const *extra)
{
    char *path = malloc(512);
    snprintf(path, 512, "%s/%s", dir, name);
    const char *args[48] = {"--file", path, "--quiet"};
    size_t n = 3;
    for (const char *const *a = extra; *a; a++)
        args[n++] = *a;
    args[n] = NULL;
    struct run r;
    run_gen(args, &r);
    cr_assert_eq(r.status, 0, "%s", r.err);
    run_free(&r);
    return path;
}

Test(gen, same_seed_same_events)
{
    char *dir = tmp_dir();
    const char *a[] = {"--count",       "20000",      "--seed", "42",     "--start-ts",
                       "1700000000000", "--disorder", "0.1",    "--late", "0.05",
                       "--dist",        "zipf",       NULL};
    const char *b[] = {"--count",       "20000",      "--seed", "43",     "--start-ts",
                       "1700000000000", "--disorder", "0.1",    "--late", "0.05",
                       "--dist",        "zipf",       NULL};
    char *p1 = gen_file(dir, "a1", a), *p2 = gen_file(dir, "a2", a), *p3 = gen_file(dir, "b", b);
    size_t l1, l2, l3;
    char *t1 = sgt_read_file(p1, &l1), *t2 = sgt_read_file(p2, &l2), *t3 = sgt_read_file(p3, &l3);
    cr_assert_gt(l1, 20000 * 50);
    cr_assert(l1 == l2 && memcmp(t1, t2, l1) == 0, "same seed, different output");
    cr_assert(l1 != l3 || memcmp(t1, t3, l1) != 0, "different seeds, same output");
    free(t1);
    free(t2);
    free(t3);
    free(p1);
    free(p2);
    free(p3);
    rm_dir(dir);
}

/* Two decimals at most: what the expectation's exactness rests on. */
static void assert_two_decimals(const cJSON *e, const char *name, const char *line)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", name);
    const char *p = strstr(line, pat);
    cr_assert_not_null(p);
    p += strlen(pat);
    const char *dot = strchr(p, '.'), *end = p + strcspn(p, ",}");
    if (dot && dot < end)
        cr_assert_leq(end - dot - 1, 2, "%s has more than two decimals: %s", name, line);
    (void)num(e, name);
}

Test(gen, shape_sensors)
{
    char *dir = tmp_dir();
    const int keys = 37;
    const size_t count = 20000;
    char *path = gen_file(dir, "s",
                          (const char *[]){"--count", "20000", "--keys", "37", "--start-ts",
                                           "1700000000000", "--ts-step", "2", NULL});
    char *text = sgt_read_file(path, NULL);
    char **lines;
    size_t n = split_lines(text, &lines);
    cr_assert_eq(n, count);
    uint64_t next_seq[37] = {0};
    int64_t prev_ts = 0;
    char **ids = malloc(n * sizeof(*ids));
    for (size_t i = 0; i < n; i++) {
        cJSON *e = cJSON_Parse(lines[i]);
        cr_assert_not_null(e, "not JSON: %s", lines[i]);
        int k = key_index(str(e, "key"), "sensor-");
        cr_assert_lt(k, keys);
        cr_assert_eq((uint64_t)num(e, "seq"), next_seq[k]++, "seq gap: %s", lines[i]);
        int64_t ts = (int64_t)num(e, "ts");
        cr_assert_eq(ts, T0 + 2 * (int64_t)i, "ts %s", lines[i]); /* no disorder asked */
        cr_assert_gt(ts, prev_ts);
        prev_ts = ts;
        ids[i] = strdup(str(e, "id"));
        cr_assert_eq(strlen(ids[i]), 16);
        assert_two_decimals(e, "value", lines[i]);
        assert_two_decimals(e, "temp", lines[i]);
        assert_two_decimals(e, "humidity", lines[i]);
        cJSON_Delete(e);
    }
    for (int k = 0; k < keys; k++)
        cr_assert_gt(next_seq[k], 0, "key %d never drawn", k);
    qsort(ids, n, sizeof(*ids), (int (*)(const void *, const void *))strcmp);
    for (size_t i = 1; i < n; i++)
        cr_assert_str_neq(ids[i - 1], ids[i], "duplicate id");
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    free(lines);
    free(text);
    free(path);
    rm_dir(dir);
}

Test(gen, shape_logs)
{
    char *dir = tmp_dir();
    char *path = gen_file(
        dir, "l", (const char *[]){"--count", "5000", "--keys", "8", "--source", "logs", NULL});
    char *text = sgt_read_file(path, NULL);
    char **lines;
    size_t n = split_lines(text, &lines);
    cr_assert_eq(n, 5000);
    int levels[4] = {0};
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < n; i++) {
        cJSON *e = cJSON_Parse(lines[i]);
        cr_assert_not_null(e);
        cr_assert_lt(key_index(str(e, "key"), "svc-"), 8);
        const char *lv = str(e, "level");
        int found = -1;
        for (int j = 0; j < 4; j++)
            if (strcmp(lv, names[j]) == 0)
                found = j;
        cr_assert_geq(found, 0, "level %s", lv);
        levels[found]++;
        cr_assert_gt(num(e, "latency_ms"), 0);
        double bytes = num(e, "bytes");
        cr_assert(bytes == floor(bytes) && bytes > 0);
        (void)num(e, "ts");
        (void)num(e, "seq");
        (void)str(e, "id");
        cJSON_Delete(e);
    }
    for (int j = 0; j < 4; j++)
        cr_assert_gt(levels[j], 0, "no %s lines", names[j]);
    cr_assert_gt(levels[1], levels[3] * 5, "info should dominate");
    free(lines);
    free(text);
    free(path);
    rm_dir(dir);
}

/* Share of the most frequent key among `n` events over 100 keys. */
static double top_share(const char *dir, const char *dist)
{
    char *path = gen_file(dir, dist,
                          (const char *[]){"--count", "50000", "--keys", "100", "--dist", dist,
                                           "--zipf-s", "1.2", NULL});
    char *text = sgt_read_file(path, NULL);
    char **lines;
    size_t n = split_lines(text, &lines);
    uint64_t counts[100] = {0}, top = 0;
    for (size_t i = 0; i < n; i++) {
        const char *k = strstr(lines[i], "\"key\":\"sensor-");
        cr_assert_not_null(k);
        counts[atoi(k + 14)]++;
    }
    for (int i = 0; i < 100; i++)
        top = counts[i] > top ? counts[i] : top;
    free(lines);
    free(text);
    free(path);
    return (double)top / (double)n;
}

Test(gen, zipf_skews_keys)
{
    char *dir = tmp_dir();
    double uni = top_share(dir, "uniform"), zipf = top_share(dir, "zipf");
    cr_assert_lt(uni, 0.02, "uniform top key share %g", uni); /* 1% each, plus noise */
    /* Zipf s=1.2 over 100 keys gives the first key about 22% of the draws. */
    cr_assert_gt(zipf, 0.15, "zipf top key share %g", zipf);
    rm_dir(dir);
}

/* The expectation against an independent replay of the file: a global watermark (highest
 * event time so far minus the lateness), windows that end at or before it take nothing. */
Test(gen, expectation_matches_replay)
{
    char *dir = tmp_dir();
    char exp[512];
    snprintf(exp, sizeof(exp), "%s/expect", dir);
    char *path = gen_file(dir, "d",
                          (const char *[]){"--count",
                                           "30000",
                                           "--keys",
                                           "7",
                                           "--start-ts",
                                           "1700000000000",
                                           "--disorder",
                                           "0.3",
                                           "--late",
                                           "0.1",
                                           "--max-delay",
                                           "1500",
                                           "--lateness",
                                           "700",
                                           "--window-size",
                                           "1000",
                                           "--expect",
                                           exp,
                                           "--expect-fields",
                                           "value,humidity",
                                           NULL});
    char *text = sgt_read_file(path, NULL);
    char **lines;
    size_t n = split_lines(text, &lines);
    cr_assert_eq(n, 30000);
    enum { K = 7, W = 64 };
    struct {
        uint64_t count;
        double sum[2], min[2], max[2];
    } agg[K][W];
    memset(agg, 0, sizeof(agg));
    int64_t max_ts = INT64_MIN;
    size_t late = 0, disordered = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *e = cJSON_Parse(lines[i]);
        int k = key_index(str(e, "key"), "sensor-");
        int64_t ts = (int64_t)num(e, "ts");
        int64_t end = (ts / 1000) * 1000 + 1000;
        disordered += ts < max_ts;
        if (max_ts != INT64_MIN && end <= max_ts - 700) {
            late++;
        } else {
            int w = (int)((ts - T0 + 4000) / 1000); /* late events go back up to ~3.2 s */
            cr_assert(w >= 0 && w < W);
            double v[2] = {num(e, "value"), num(e, "humidity")};
            for (int f = 0; f < 2; f++) {
                if (agg[k][w].count == 0 || v[f] < agg[k][w].min[f])
                    agg[k][w].min[f] = v[f];
                if (agg[k][w].count == 0 || v[f] > agg[k][w].max[f])
                    agg[k][w].max[f] = v[f];
                agg[k][w].sum[f] += v[f];
            }
            agg[k][w].count++;
        }
        if (ts > max_ts)
            max_ts = ts;
        cJSON_Delete(e);
    }
    /* About 10% late and 30% disordered (some of those late too). */
    cr_assert(late > 2500 && late < 10000, "late %zu", late);
    cr_assert(disordered > 9000, "disordered %zu", disordered);

    char *et = sgt_read_file(exp, NULL);
    char **el;
    size_t en = split_lines(et, &el), windows = 0;
    for (int k = 0; k < K; k++)
        for (int w = 0; w < W; w++)
            windows += agg[k][w].count > 0;
    cr_assert_eq(en, windows);
    for (size_t i = 0; i < en; i++) {
        cJSON *e = cJSON_Parse(el[i]);
        int k = key_index(str(e, "key"), "sensor-");
        int64_t start = (int64_t)num(e, "window_start");
        cr_assert_eq((int64_t)num(e, "window_end"), start + 1000);
        int w = (int)((start - T0 + 4000) / 1000);
        cr_assert_eq((uint64_t)num(e, "count"), agg[k][w].count, "%s", el[i]);
        const cJSON *fields = cJSON_GetObjectItemCaseSensitive(e, "fields");
        static const char *const names[] = {"value", "humidity"};
        for (int f = 0; f < 2; f++) {
            const cJSON *g = cJSON_GetObjectItemCaseSensitive(fields, names[f]);
            cr_assert_not_null(g, "%s", el[i]);
            cr_assert_eq((uint64_t)num(g, "count"), agg[k][w].count);
            cr_assert_eq(num(g, "sum"), agg[k][w].sum[f], "%s", el[i]);
            cr_assert_eq(num(g, "min"), agg[k][w].min[f], "%s", el[i]);
            cr_assert_eq(num(g, "max"), agg[k][w].max[f], "%s", el[i]);
        }
        cJSON_Delete(e);
    }
    free(el);
    free(et);
    free(lines);
    free(text);
    free(path);
    rm_dir(dir);
}

static int cmp_values(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* --expect also writes PATH.values: each key's values of the expected fields, sorted, exactly
 * those of the events the server keeps (late ones left out); past --expect-values events it
 * writes none and says so. */
Test(gen, expect_values_are_the_kept_events)
{
    char *dir = tmp_dir(), exp[600], vpath[620];
    snprintf(exp, sizeof(exp), "%s/expect", dir);
    snprintf(vpath, sizeof(vpath), "%s.values", exp);
    char *path = gen_file(dir, "d",
                          (const char *[]){"--count", "3000", "--keys", "5", "--start-ts",
                                           "1700000000000", "--late", "0.1", "--lateness", "700",
                                           "--window-size", "1000", "--expect", exp, NULL});
    char *text = sgt_read_file(path, NULL);
    char **lines;
    size_t n = split_lines(text, &lines), nv[5] = {0}, late = 0;
    static double vals[5][3000];
    int64_t max_ts = INT64_MIN;
    for (size_t i = 0; i < n; i++) {
        cJSON *e = cJSON_Parse(lines[i]);
        int k = key_index(str(e, "key"), "sensor-");
        int64_t ts = (int64_t)num(e, "ts");
        if (max_ts != INT64_MIN && (ts / 1000) * 1000 + 1000 <= max_ts - 700)
            late++;
        else
            vals[k][nv[k]++] = num(e, "value");
        max_ts = ts > max_ts ? ts : max_ts;
        cJSON_Delete(e);
    }
    cr_assert_gt(late, 100, "late %zu", late);
    char *vt = sgt_read_file(vpath, NULL);
    cr_assert_not_null(vt, "no %s", vpath);
    char **vl;
    size_t vn = split_lines(vt, &vl);
    cr_assert_eq(vn, 5, "one line a key (one field)");
    for (size_t i = 0; i < vn; i++) {
        cJSON *e = cJSON_Parse(vl[i]);
        int k = key_index(str(e, "key"), "sensor-");
        cr_assert_str_eq(str(e, "field"), "value");
        qsort(vals[k], nv[k], sizeof(double), cmp_values);
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(e, "values"), *v;
        cr_assert_eq((size_t)num(e, "count"), nv[k]);
        cr_assert_eq((size_t)cJSON_GetArraySize(list), nv[k]);
        size_t j = 0;
        cJSON_ArrayForEach(v, list)
        {
            cr_assert_eq(v->valuedouble, vals[k][j], "%s: value %zu", str(e, "key"), j);
            j++;
        }
        cJSON_Delete(e);
    }
    free(vl);
    free(vt);

    /* More events than --expect-values: no values file (the older one removed). */
    struct run r;
    run_gen((const char *[]){"--file", path, "--count", "300", "--keys", "5", "--expect", exp,
                             "--expect-values", "200", NULL},
            &r);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.err, "--expect-values 200"), "%s", r.err);
    run_free(&r);
    cr_assert_null(sgt_read_file(vpath, NULL), "%s is still there", vpath);
    free(lines);
    free(text);
    free(path);
    rm_dir(dir);
}

/* ---- --check-results ----------------------------------------------------------------- */

enum change { SAME, CHANGED_SUM, MISSING_WINDOW, EXTRA_WINDOW, TWICE, NOT_FINAL, NOT_A_WINDOW };

/* `s` with `from` replaced by `to` (every occurrence, or the first); a new string. */
static char *subst(const char *s, const char *from, const char *to, bool all)
{
    size_t fl = strlen(from), tl = strlen(to), n = 0;
    for (const char *p = s; (p = strstr(p, from)); p += fl)
        n++;
    cr_assert_gt(n, 0, "no %s in %s", from, s);
    char *out = malloc(strlen(s) + n * tl + 1), *o = out;
    const char *p = s, *q;
    while ((q = strstr(p, from))) {
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, to, tl);
        o += tl;
        p = q + fl;
        if (!all)
            break;
    }
    strcpy(o, p);
    return out;
}

/* Writes `results` as a server would from the expectation `expect` (text edits, so every
 * number keeps its digits): every window final, in reverse order, with a statistic and a
 * field the expectation does not name; then makes one change at the window of line `at`. */
static void write_results(const char *expect, const char *results, enum change change, size_t at)
{
    char *et = sgt_read_file(expect, NULL);
    cr_assert_not_null(et);
    char **el;
    size_t en = split_lines(et, &el);
    cr_assert_gt(en, at);
    FILE *f = fopen(results, "w");
    cr_assert_not_null(f);
    for (size_t k = en; k-- > 0;) {
        size_t len = strlen(el[k]);
        cr_assert(len > 2 && strcmp(el[k] + len - 2, "}}") == 0, "%s", el[k]);
        el[k][len - 2] = '\0';
        bool final = !(change == NOT_FINAL && k == at);
        char *tail = malloc(len + 64);
        snprintf(tail, len + 64, "%s,\"extra\":{\"count\":1,\"sum\":7}},\"final\":%s}", el[k],
                 final ? "true" : "false");
        char *line = subst(tail, "\":{\"count\":", "\":{\"p50\":1.25,\"count\":", true);
        free(tail);
        cJSON *w = cJSON_Parse(line);
        cr_assert_not_null(w, "%s", line);
        if (k == at && change == CHANGED_SUM) { /* one ulp: equality must be exact */
            double sum = num(cJSON_GetObjectItemCaseSensitive(
                                 cJSON_GetObjectItemCaseSensitive(w, "fields"), "value"),
                             "sum");
            char from[64], to[64], *l2;
            const char *v = strstr(line, "\"value\":{");
            cr_assert_not_null(v);
            const char *sp = strstr(v, "\"sum\":");
            cr_assert_not_null(sp);
            snprintf(from, sizeof(from), "%.*s", (int)strcspn(sp, ",}"), sp);
            snprintf(to, sizeof(to), "\"sum\":%.17g", nextafter(sum, INFINITY));
            l2 = subst(line, from, to, false);
            free(line);
            line = l2;
        }
        if (!(k == at && change == MISSING_WINDOW))
            fprintf(f, "%s\n", line);
        if (k == at && change == TWICE)
            fprintf(f, "%s\n", line);
        if (k == at && change == NOT_A_WINDOW)
            fprintf(f, "{\"key\":\"sensor-0\",\"window_start\":\"soon\"}\n");
        if (k == at && change == EXTRA_WINDOW) {
            char from[96], to[96];
            double start = num(w, "window_start"), end = num(w, "window_end");
            snprintf(from, sizeof(from), "\"window_start\":%.0f,\"window_end\":%.0f", start, end);
            snprintf(to, sizeof(to), "\"window_start\":%.0f,\"window_end\":%.0f", start + 3600000,
                     end + 3600000);
            char *moved = subst(line, from, to, false);
            fprintf(f, "%s\n", moved);
            free(moved);
        }
        free(line);
        cJSON_Delete(w);
    }
    cr_assert_eq(fclose(f), 0);
    free(el);
    free(et);
}

Test(gen, check_results_finds_every_difference)
{
    char *dir = tmp_dir();
    char exp[512], res[512];
    snprintf(exp, sizeof(exp), "%s/expect", dir);
    snprintf(res, sizeof(res), "%s/results", dir);
    free(gen_file(dir, "events",
                  (const char *[]){"--count", "3000", "--keys", "5", "--start-ts", "1700000000000",
                                   "--window-size", "1000", "--disorder", "0.2", "--expect", exp,
                                   "--expect-fields", "value,temp", NULL}));
    static const struct {
        enum change change;
        int status;
        const char *says;
    } cases[] = {
        {SAME, 0, "matches"},
        {CHANGED_SUM, 1, "value.sum"},
        {MISSING_WINDOW, 1, "is missing from"},
        {EXTRA_WINDOW, 1, "is not expected"},
        {TWICE, 1, "a second time"},
        {NOT_FINAL, 1, "not final"},
        {NOT_A_WINDOW, 1, "not a window result"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_results(exp, res, cases[i].change, 7);
        struct run r;
        cJSON *j;
        int status = run_check(res, exp, &r, &j);
        cr_assert_eq(status, cases[i].status, "case %zu: status %d: %s", i, status, r.err);
        cr_assert_not_null(strstr(r.err, cases[i].says), "case %zu: %s", i, r.err);
        cr_assert_not_null(j, "case %zu: no summary: %s", i, r.out);
        cr_assert_eq(num(j, "differences"), status ? 1 : 0, "case %zu: %s", i, r.err);
        cr_assert_eq(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "match")), status == 0);
        if (status == 0)
            cr_assert_eq(num(j, "windows"), num(j, "expected"));
        cJSON_Delete(j);
        run_free(&r);
    }
    rm_dir(dir);
}

/* --trend, --noise and --anomaly-rate: the value field follows the planted signal, keys come in
 * turn (so every window of a key holds the same number of events), the expectation says which
 * windows were shifted and what the noise-free signal was; --check-results scores forecasts
 * against them. */
Test(gen, planted_signal_and_forecast_scores)
{
    char *dir = tmp_dir();
    char exp[512], res[512];
    snprintf(exp, sizeof(exp), "%s/expect", dir);
    snprintf(res, sizeof(res), "%s/results", dir);
    /* 4 keys, 25 events of each per 100 ms window, 40 windows; noise 1, so a window mean's noise
     * is 0.2 and a planted shift 6 * 0.2 = 1.2. */
    free(gen_file(dir, "events",
                  (const char *[]){"--count",
                                   "4000",
                                   "--keys",
                                   "4",
                                   "--dist",
                                   "round-robin",
                                   "--start-ts",
                                   "1700000000000",
                                   "--window-size",
                                   "100",
                                   "--trend",
                                   "1",
                                   "--noise",
                                   "1",
                                   "--anomaly-rate",
                                   "0.2",
                                   "--anomaly-size",
                                   "6",
                                   "--expect",
                                   exp,
                                   NULL}));
    char *text = sgt_read_file(exp, NULL);
    char **lines;
    size_t n = split_lines(text, &lines), planted = 0;
    cr_assert_eq(n, 160);
    FILE *out = fopen(res, "w");
    cr_assert_not_null(out);
    size_t false_pos = SIZE_MAX, false_neg = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        cJSON *e = cJSON_Parse(lines[i]);
        cr_assert_not_null(e, "%s", lines[i]);
        cr_assert_eq(num(e, "count"), 25, "%s", lines[i]);
        cr_assert_eq(num(e, "noise"), 1);
        bool p = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "planted"));
        cr_assert(p || cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(e, "planted")));
        planted += p;
        cJSON *value = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(e, "fields"), "value");
        double signal = num(e, "signal"), off = num(value, "sum") / 25 - signal;
        if (p) /* 1.2 up or down, within 5 standard deviations of the mean's noise */
            cr_assert(fabs(fabs(off) - 1.2) < 1, "planted: %s", lines[i]);
        else
            cr_assert(fabs(off) < 1, "%s", lines[i]);
        /* A server's result: the expectation's numbers, a forecast that is the signal, and an
         * anomaly score past the threshold exactly for the planted windows, but for one of
         * each that the check must count as a false positive and a false negative. */
        bool flag = p;
        if (!p && false_pos == SIZE_MAX)
            flag = true, false_pos = i;
        else if (p && false_neg == SIZE_MAX)
            flag = false, false_neg = i;
        /* Written into the expectation's own text, whose numbers are exact as they are. */
        const char *fields_end = strstr(lines[i], "}}");
        const char *sig = strstr(lines[i], "\"signal\":") + 9;
        fprintf(out, "%.*s,\"forecast\":%.*s,\"anomaly\":%d%.*s,\"final\":true}\n",
                (int)(fields_end - lines[i]), lines[i], (int)strcspn(sig, ",}"), sig, flag ? -9 : 1,
                (int)(strlen(fields_end) - 1), fields_end);
        cJSON_Delete(e);
    }
    fclose(out);
    cr_assert(planted > 10 && planted < 60, "%zu of 160 windows planted", planted);
    struct run r;
    cJSON *j;
    cr_assert_eq(run_check(res, exp, &r, &j), 0, "%s", r.err);
    cr_assert_not_null(strstr(r.err, "precision"), "%s", r.err);
    cr_assert_eq(num(j, "scored"), 160);
    cr_assert_eq(num(j, "planted"), (double)planted);
    cr_assert_eq(num(j, "flagged"), (double)planted);
    cr_assert_eq(num(j, "true_positives"), (double)planted - 1);
    double want = ((double)planted - 1) / (double)planted;
    cr_assert(fabs(num(j, "precision") - want) < 1e-5, "%s", r.out);
    cr_assert(fabs(num(j, "recall") - want) < 1e-5, "%s", r.out);
    cr_assert_eq(num(j, "forecast_mae"), 0);
    cr_assert(fabs(num(j, "noise_level") - 0.2) < 1e-9, "%s", r.out);
    cJSON_Delete(j);
    run_free(&r);
    free(lines);
    free(text);
    rm_dir(dir);
}

/* --season and --period: without drift or noise each key's window means are its level plus a
 * sine of the given amplitude, repeating every --period windows, and the expectation's signal
 * is exactly that mean. */
Test(gen, planted_season_repeats_every_period)
{
    char *dir = tmp_dir();
    char exp[512];
    snprintf(exp, sizeof(exp), "%s/expect", dir);
    enum { KEYS = 4, PERIOD = 8, WINDOWS = 24 }; /* 100 events a window, 25 a key */
    free(gen_file(dir, "events",
                  (const char *[]){"--count", "2400", "--keys", "4", "--dist", "round-robin",
                                   "--start-ts", "1700000000000", "--window-size", "100",
                                   "--season", "5", "--period", "8", "--expect", exp, NULL}));
    char *text = sgt_read_file(exp, NULL);
    char **lines;
    size_t n = split_lines(text, &lines);
    cr_assert_eq(n, KEYS * WINDOWS);
    char keys[KEYS][64] = {{0}};
    double signal[KEYS][WINDOWS];
    for (size_t i = 0; i < n; i++) {
        cJSON *e = cJSON_Parse(lines[i]);
        cr_assert_not_null(e, "%s", lines[i]);
        const char *key = cJSON_GetObjectItem(e, "key")->valuestring;
        int k = 0;
        while (k < KEYS && keys[k][0] && strcmp(keys[k], key) != 0)
            k++;
        cr_assert_lt(k, KEYS, "a fifth key: %s", lines[i]);
        snprintf(keys[k], sizeof(keys[k]), "%s", key);
        int w = (int)((num(e, "window_start") - 1700000000000.0) / 100);
        cr_assert(w >= 0 && w < WINDOWS, "%s", lines[i]);
        cJSON *value = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(e, "fields"), "value");
        signal[k][w] = num(e, "signal");
        cr_assert(fabs(num(value, "sum") / num(e, "count") - signal[k][w]) < 0.006, "%s", lines[i]);
        cJSON_Delete(e);
    }
    for (int k = 0; k < KEYS; k++) {
        double lo = signal[k][0], hi = signal[k][0];
        for (int w = 0; w < WINDOWS; w++) {
            lo = fmin(lo, signal[k][w]);
            hi = fmax(hi, signal[k][w]);
            if (w >= PERIOD)
                cr_assert(fabs(signal[k][w] - signal[k][w - PERIOD]) < 1e-9,
                          "key %s: window %d %.17g, a period before %.17g", keys[k], w,
                          signal[k][w], signal[k][w - PERIOD]);
        }
        /* 8 steps of a sine of amplitude 5 span at least 2 * 5 * cos(22.5 degrees). */
        cr_assert(hi - lo >= 9.2 && hi - lo <= 10 + 1e-9, "key %s: signal from %g to %g", keys[k],
                  lo, hi);
    }
    free(lines);
    free(text);
    rm_dir(dir);
}

Test(gen, check_results_unreadable_input_fails)
{
    char *dir = tmp_dir();
    char exp[512], res[512], bad[512];
    snprintf(exp, sizeof(exp), "%s/expect", dir);
    snprintf(res, sizeof(res), "%s/results", dir);
    snprintf(bad, sizeof(bad), "%s/bad", dir);
    free(gen_file(dir, "events",
                  (const char *[]){"--count", "500", "--keys", "3", "--start-ts", "1700000000000",
                                   "--expect", exp, NULL}));
    write_results(exp, res, SAME, 0);
    FILE *f = fopen(bad, "w");
    cr_assert_not_null(f);
    fputs("{\"key\":\"sensor-0\",\"window_start\":0}\n", f); /* no window_end, count */
    cr_assert_eq(fclose(f), 0);
    /* A missing file on either side, or an expectation with a line that is not a window. */
    const char *const pairs[][2] = {
        {"/nonexistent/results", exp}, {res, "/nonexistent/expect"}, {res, bad}};
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        struct run r;
        cJSON *j;
        int status = run_check(pairs[i][0], pairs[i][1], &r, &j);
        cr_assert_eq(status, 2, "case %zu: status %d: %s", i, status, r.err);
        cr_assert_null(j, "case %zu: a summary: %s", i, r.out);
        cr_assert_not_null(strstr(r.err, "streamgate-gen: "), "case %zu: %s", i, r.err);
        run_free(&r);
    }
    rm_dir(dir);
}

/* ---- against the server -------------------------------------------------------------- */

struct srv {
    struct sgt_proc p;
    char *dir;
    char out[512], results[512], expect[512];
};

static void srv_start(struct srv *s, const char *lateness, const char *const *extra)
{
    s->dir = tmp_dir();
    snprintf(s->out, sizeof(s->out), "%s/raw.ndjson", s->dir);
    snprintf(s->results, sizeof(s->results), "%s/results.ndjson", s->dir);
    snprintf(s->expect, sizeof(s->expect), "%s/expect.ndjson", s->dir);
    const char *args[32] = {"--output-file",
                            s->out,
                            "--output-results-file",
                            s->results,
                            "--window-type",
                            "tumbling",
                            "--window-size",
                            "1s",
                            "--window-allowed-lateness",
                            lateness,
                            "--window-idle-timeout",
                            "1h",
                            "--window-quantiles",
                            ""};
    size_t n = 14;
    for (const char *const *a = extra; a && *a; a++)
        args[n++] = *a;
    args[n] = NULL;
    sgt_start(&s->p, args, NULL);
}

/* Stops the server (every open window fires as final); its files stay until srv_done. */
static void srv_stop(struct srv *s)
{
    sgt_stop_ok(&s->p);
}

static void srv_done(struct srv *s)
{
    rm_dir(s->dir);
    s->dir = NULL;
}

/* Runs the generator against the server and checks the summary and the server's counters. */
static cJSON *gen_to_server(struct srv *s, const char *transport, const char *const *extra,
                            uint64_t count)
{
    char url[128], n[32];
    snprintf(n, sizeof(n), "%" PRIu64, count);
    const char *args[48];
    size_t i = 0;
    if (strcmp(transport, "tcp") == 0) {
        args[i++] = "--tcp";
        args[i++] = s->p.tcp;
    } else {
        snprintf(url, sizeof(url), "http://%s/v1/events", s->p.http);
        args[i++] = "--http";
        args[i++] = url;
    }
    const char *common[] = {"--count",       n,         "--start-ts", "1700000000000",
                            "--window-size", "1000",    "--expect",   s->expect,
                            "--json",        "--quiet", NULL};
    for (const char *const *a = common; *a; a++)
        args[i++] = *a;
    for (const char *const *a = extra; *a; a++)
        args[i++] = *a;
    args[i] = NULL;
    struct run r;
    run_gen(args, &r);
    cr_assert_eq(r.status, 0, "generator failed (%d): %s %s", r.status, r.out, r.err);
    cJSON *j = summary(&r);
    run_free(&r);
    cr_assert_eq(num(j, "generated"), (double)count);
    cr_assert_eq(num(j, "sent"), (double)count);
    cr_assert_eq(num(j, "acked"), (double)count);
    cr_assert_eq(num(j, "rejected"), 0);
    cr_assert_eq(num(j, "errors"), 0);
    /* What the generator counts as acknowledged is what the server counts as accepted. */
    char series[128];
    snprintf(series, sizeof(series), "streamgate_events_accepted_total{transport=\"%s\"}",
             transport);
    cr_assert_eq(sgt_wait_metric(s->p.http, series, num(j, "acked"), WAIT_MS), num(j, "acked"));
    return j;
}

Test(gen_server, tcp_one_connection_disorder_and_late, .timeout = 120)
{
    /* One connection: the server sees events in the order they were made, so even a small
     * allowed lateness gives exact results, and the late count is exact too. */
    struct srv s;
    srv_start(&s, "2s", NULL);
    cJSON *j = gen_to_server(&s, "tcp",
                             (const char *[]){"--keys", "40", "--disorder", "0.2", "--late", "0.05",
                                              "--max-delay", "1500", "--lateness", "2000", "--seed",
                                              "11", NULL},
                             100000);
    cr_assert_gt(num(j, "late"), 3000);
    cr_assert_eq(sgt_metric(s.p.http, "streamgate_late_events_total"), num(j, "late"));
    cJSON_Delete(j);
    srv_stop(&s);
    check_raw(s.out, 100000, 40, true);
    check_results(s.results, s.expect);
    srv_done(&s);
}

Test(gen_server, tcp_connections, .timeout = 120)
{
    /* Several connections interleave at the server; an allowed lateness above that skew keeps
     * the expectation exact, while late events are late behind their own connection. */
    struct srv s;
    srv_start(&s, "1h", NULL);
    cJSON *j = gen_to_server(&s, "tcp",
                             (const char *[]){"--keys", "100", "--connections", "4", "--disorder",
                                              "0.2", "--late", "0.02", "--lateness", "3600000",
                                              "--seed", "12", NULL},
                             200000);
    cr_assert_gt(num(j, "late"), 2000);
    cr_assert_eq(sgt_metric(s.p.http, "streamgate_late_events_total"), num(j, "late"));
    cJSON_Delete(j);
    srv_stop(&s);
    check_raw(s.out, 200000, 100, true);
    check_results(s.results, s.expect);
    srv_done(&s);
}

Test(gen_server, http_batch_1, .timeout = 120)
{
    struct srv s;
    srv_start(&s, "1h", NULL);
    cJSON *j = gen_to_server(&s, "http",
                             (const char *[]){"--keys", "30", "--connections", "4", "--batch", "1",
                                              "--disorder", "0.1", "--lateness", "3600000",
                                              "--seed", "13", NULL},
                             5000);
    cr_assert_eq(num(j, "requests"), 5000);
    cr_assert_gt(num(j, "p99_ms"), 0);
    cr_assert_geq(num(j, "max_ms"), num(j, "p99_ms"));
    cr_assert_geq(num(j, "p99_ms"), num(j, "p50_ms"));
    cr_assert_eq(sgt_metric(s.p.http, "streamgate_http_requests_total{code=\"202\"}"), 5000);
    /* Keep-alive: the 5000 requests came over the generator's 4 connections; the rest of the
     * connections accepted are the test's own scrapes of /metrics, one each, far fewer. */
    double conns =
        sgt_metric(s.p.http, "streamgate_connections_accepted_total{transport=\"http\"}");
    cr_assert_lt(conns, 1000, "%.0f connections for 5000 requests", conns);
    cJSON_Delete(j);
    srv_stop(&s);
    check_raw(s.out, 5000, 30, true);
    check_results(s.results, s.expect);
    srv_done(&s);
}

Test(gen_server, http_batch_100_array_and_ndjson, .timeout = 120)
{
    struct srv s;
    srv_start(&s, "1h", NULL);
    cJSON *j = gen_to_server(&s, "http",
                             (const char *[]){"--keys", "50", "--connections", "4", "--batch",
                                              "100", "--disorder", "0.2", "--late", "0.03",
                                              "--lateness", "3600000", "--seed", "14", NULL},
                             50000);
    cr_assert_geq(num(j, "requests"), 500);
    cr_assert_leq(num(j, "requests"), 504); /* each connection's last batch may be partial */
    cr_assert_gt(num(j, "late"), 1000);
    cr_assert_eq(sgt_metric(s.p.http, "streamgate_late_events_total"), num(j, "late"));
    cJSON_Delete(j);
    srv_stop(&s);
    check_raw(s.out, 50000, 50, true);
    check_results(s.results, s.expect);
    srv_done(&s);

    srv_start(&s, "1h", NULL);
    j = gen_to_server(&s, "http",
                      (const char *[]){"--keys", "50", "--connections", "3", "--batch", "100",
                                       "--ndjson", "--source", "sensors", "--expect-fields",
                                       "value,temp,humidity", "--lateness", "3600000", "--seed",
                                       "15", NULL},
                      20000);
    cJSON_Delete(j);
    srv_stop(&s);
    check_raw(s.out, 20000, 50, true);
    check_results(s.results, s.expect);
    srv_done(&s);
}

/* Events refused one by one (here: keys past stream.max_keys) are named by index in the
 * answer, so the expectation still holds every accepted event of a partly refused batch and
 * the results stay exactly checkable. */
Test(gen_server, refused_events_left_out_of_the_expectation, .timeout = 120)
{
    struct srv s;
    srv_start(&s, "1h", (const char *[]){"--stream-max-keys", "10", NULL});
    char url[128];
    snprintf(url, sizeof(url), "http://%s/v1/events", s.p.http);
    const char *args[] = {
        "--http",        url,       "--count",    "4000",    "--keys",     "40",
        "--batch",       "50",      "--seed",     "16",      "--start-ts", "1700000000000",
        "--window-size", "1000",    "--lateness", "3600000", "--expect",   s.expect,
        "--json",        "--quiet", NULL};
    struct run r;
    run_gen(args, &r);
    cr_assert_eq(r.status, 1, "not every event was acknowledged, so exit 1: %d %s %s", r.status,
                 r.out, r.err);
    cJSON *j = summary(&r);
    run_free(&r);
    cr_assert_gt(num(j, "rejected"), 1000, "keys past the tenth are refused");
    cr_assert_gt(num(j, "acked"), 500);
    cr_assert_eq(num(j, "acked") + num(j, "rejected"), 4000);
    cr_assert_eq(sgt_wait_metric(s.p.http, "streamgate_events_accepted_total{transport=\"http\"}",
                                 num(j, "acked"), WAIT_MS),
                 num(j, "acked"));
    cJSON_Delete(j);
    srv_stop(&s);
    check_results(s.results, s.expect);
    srv_done(&s);
}

Test(gen_server, pushback_counted_and_retried, .timeout = 120)
{
    /* Two HTTP connections allowed: the generator's others are answered 503 with Retry-After.
     * The test's own scrapes need a free slot too: they wait for the generator's connections
     * to be gone. */
    struct srv s;
    srv_start(&s, "1h", (const char *[]){"--http-max-connections", "2", NULL});
    char url[128];
    snprintf(url, sizeof(url), "http://%s/v1/events", s.p.http);

    struct run r;
    run_gen((const char *[]){"--http", url, "--connections", "4", "--batch", "50", "--count", "300",
                             "--keys", "30", "--retry", "--json", "--quiet", NULL},
            &r);
    cr_assert_eq(r.status, 0, "%s %s", r.out, r.err);
    sgt_sleep_ms(300);
    cJSON *j = summary(&r);
    run_free(&r);
    cr_assert_geq(num(j, "pushback"), 2);
    cr_assert_geq(num(j, "retried"), 2);
    cr_assert_eq(num(j, "acked"), 300);
    cr_assert_eq(num(j, "lost"), 0);
    cr_assert_eq(sgt_metric(s.p.http, "streamgate_events_accepted_total{transport=\"http\"}"), 300);
    cr_assert_geq(sgt_metric(s.p.http, "streamgate_http_requests_total{code=\"503\"}"),
                  num(j, "pushback"));
    cJSON_Delete(j);

    /* Without --retry the refused batches are lost, said so, and the status is 1. */
    run_gen((const char *[]){"--http", url, "--connections", "4", "--batch", "50", "--count", "300",
                             "--keys", "30", "--json", "--quiet", NULL},
            &r);
    cr_assert_eq(r.status, 1, "%s %s", r.out, r.err);
    sgt_sleep_ms(300);
    j = summary(&r);
    run_free(&r);
    cr_assert_geq(num(j, "pushback"), 1);
    cr_assert_eq(num(j, "retried"), 0);
    cr_assert_gt(num(j, "lost"), 0);
    cr_assert_eq(num(j, "acked") + num(j, "lost"), 300);
    cr_assert_eq(sgt_metric(s.p.http, "streamgate_events_accepted_total{transport=\"http\"}"),
                 300 + num(j, "acked"));
    cJSON_Delete(j);
    srv_stop(&s);
    srv_done(&s);
}
