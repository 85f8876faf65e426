#include <criterion/criterion.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/buf.h"
#include "streamgate/common.h"
#include "streamgate/metrics.h"

static char *render(struct sg_metrics *m)
{
    struct sg_buf b;
    sg_buf_init(&b, 0);
    cr_assert_eq(sg_metrics_render(m, &b), 0);
    sg_buf_append_char(&b, '\0');
    return b.data;
}

/* Each family's id as written in the catalogue, to check it against the name. */
static const char *const catalogue_ids[SG_METRIC_COUNT] = {
#define SG_X(id, name, type, labels, help) #id,
    SG_METRIC_MAP(SG_X)
#undef SG_X
};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Prometheus data model: metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]* (names starting with __ are reserved). */
static bool valid_name(const char *s, size_t len, bool colon)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

Test(catalogue, names_are_valid_unique_and_typed)
{
    for (int id = 0; id < SG_METRIC_COUNT; id++) {
        const char *name = sg_metrics_name((enum sg_metric)id);
        enum sg_metric_type type = sg_metrics_type((enum sg_metric)id);
        cr_assert(valid_name(name, strlen(name), true), "not a metric name: %s", name);
        cr_assert_eq(strncmp(name, "streamgate_", 11), 0, "%s lacks the streamgate_ prefix", name);

        /* The id is the name after the prefix, in capitals. */
        const char *upper = catalogue_ids[id];
        cr_assert_eq(strlen(name + 11), strlen(upper), "id %s does not match %s", upper, name);
        for (size_t i = 0; upper[i]; i++)
            cr_assert_eq(toupper((unsigned char)name[11 + i]), upper[i], "id %s does not match %s",
                         upper, name);

        if (type == SG_METRIC_TYPE_COUNTER)
            cr_assert(ends_with(name, "_total"), "counter %s does not end in _total", name);
        else
            cr_assert(!ends_with(name, "_total"), "%s ends in _total but is no counter", name);

        for (int other = 0; other < id; other++) {
            const char *o = sg_metrics_name((enum sg_metric)other);
            cr_assert_str_neq(name, o, "%s is in the catalogue twice", name);
            /* A histogram's series are name_bucket, name_sum and name_count. */
            static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
            for (size_t k = 0; k < SG_ARRAY_SIZE(suffixes); k++) {
                char series[256];
                if (type == SG_METRIC_TYPE_HISTOGRAM) {
                    snprintf(series, sizeof(series), "%s%s", name, suffixes[k]);
                    cr_assert_str_neq(series, o, "%s collides with histogram %s", o, name);
                }
                if (sg_metrics_type((enum sg_metric)other) == SG_METRIC_TYPE_HISTOGRAM) {
                    snprintf(series, sizeof(series), "%s%s", o, suffixes[k]);
                    cr_assert_str_neq(series, name, "%s collides with histogram %s", name, o);
                }
            }
        }
    }
}

Test(catalogue, help_and_labels_are_well_formed)
{
    for (int id = 0; id < SG_METRIC_COUNT; id++) {
        const char *name = sg_metrics_name((enum sg_metric)id);
        const char *help = sg_metrics_help((enum sg_metric)id);
        cr_assert(help[0] != '\0', "%s has no help text", name);
        cr_assert(ends_with(help, "."), "%s: help is not a sentence: %s", name, help);
        cr_assert_null(strpbrk(help, "\n\\|"), "%s: help holds a line break, \\ or |", name);

        const char *labels = sg_metrics_labels((enum sg_metric)id);
        for (const char *p = labels; *p;) {
            size_t n = strcspn(p, ",");
            cr_assert(valid_name(p, n, false), "%s: bad label name in \"%s\"", name, labels);
            cr_assert(!(n >= 2 && p[0] == '_' && p[1] == '_'), "%s: reserved label", name);
            if (sg_metrics_type((enum sg_metric)id) == SG_METRIC_TYPE_HISTOGRAM)
                cr_assert(!(n == 2 && memcmp(p, "le", 2) == 0), "%s: le is the bucket's", name);
            for (const char *q = labels; q < p; q += strcspn(q, ",") + 1)
                cr_assert(!(strcspn(q, ",") == n && memcmp(q, p, n) == 0),
                          "%s: label listed twice in \"%s\"", name, labels);
            p += n;
            if (*p == ',')
                p++;
        }
    }
}

/* One series of every family, each declared label set to "x". */
static void register_every_family(struct sg_metrics *m)
{
    static const double bounds[] = {1.0};
    for (int id = 0; id < SG_METRIC_COUNT; id++) {
        char labels[256] = "";
        size_t used = 0;
        for (const char *p = sg_metrics_labels((enum sg_metric)id); *p;) {
            size_t n = strcspn(p, ",");
            used += (size_t)snprintf(labels + used, sizeof(labels) - used, "%s%.*s=\"x\"",
                                     used ? "," : "", (int)n, p);
            p += n + (p[n] == ',');
        }
        void *series = NULL;
        switch (sg_metrics_type((enum sg_metric)id)) {
        case SG_METRIC_TYPE_COUNTER:
            series = sg_metrics_counter(m, (enum sg_metric)id, labels);
            break;
        case SG_METRIC_TYPE_GAUGE:
            series = sg_metrics_gauge(m, (enum sg_metric)id, labels);
            break;
        case SG_METRIC_TYPE_HISTOGRAM:
            series = sg_metrics_histogram(m, (enum sg_metric)id, labels, bounds, 1);
            break;
        }
        cr_assert_not_null(series, "cannot register %s{%s}", sg_metrics_name((enum sg_metric)id),
                           labels);
    }
}

Test(catalogue, render_shows_each_family_with_its_help_and_type)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    struct sg_metrics *m = sg_metrics_create();
    register_every_family(m);
    char *out = render(m);
    size_t helps = 0;
    for (const char *p = strstr(out, "# HELP "); p; p = strstr(p + 1, "# HELP "))
        helps++;
    cr_assert_eq(helps, SG_METRIC_COUNT, "%zu HELP lines for %d families", helps, SG_METRIC_COUNT);
    for (int id = 0; id < SG_METRIC_COUNT; id++) {
        const char *name = sg_metrics_name((enum sg_metric)id);
        char want[512];
        snprintf(want, sizeof(want), "# HELP %s %s\n# TYPE %s %s\n", name,
                 sg_metrics_help((enum sg_metric)id), name,
                 type_names[sg_metrics_type((enum sg_metric)id)]);
        cr_assert_not_null(strstr(out, want), "missing:\n%s", want);
    }
    free(out);
    sg_metrics_destroy(m);
}

Test(catalogue, markdown_has_a_row_per_family)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    sg_metrics_print_markdown(f);
    fclose(f);
    cr_assert_eq(strncmp(text, "| series | type | description |\n| --- | --- | --- |\n", 52), 0,
                 "%s", text);
    cr_assert_not_null(strstr(text, "| `streamgate_events_rejected_total{transport,reason}` | "
                                    "counter | Events rejected, by reason. |\n"));
    cr_assert_not_null(strstr(text, "| `streamgate_keys_active` | gauge | "));
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    cr_assert_eq(lines, 2 + SG_METRIC_COUNT);
    free(text);
}

Test(metrics, counters_with_labels_render_in_registration_order)
{
    struct sg_metrics *m = sg_metrics_create();
    struct sg_counter *a = sg_metrics_counter(m, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"a\"");
    struct sg_counter *b = sg_metrics_counter(m, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"b\"");
    struct sg_counter *c = sg_metrics_counter(m, SG_METRIC_WINDOWS_FIRED_TOTAL, NULL);
    cr_assert(a && b && c && a != b);
    cr_assert_eq(sg_metrics_counter(m, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"a\""), a,
                 "same series, same pointer");
    sg_counter_add(a, 3);
    sg_counter_inc(b);
    char *out = render(m);
    char want[1024];
    snprintf(want, sizeof(want),
             "# HELP streamgate_limit_hits_total %s\n"
             "# TYPE streamgate_limit_hits_total counter\n"
             "streamgate_limit_hits_total{limit=\"a\"} 3\n"
             "streamgate_limit_hits_total{limit=\"b\"} 1\n"
             "# HELP streamgate_windows_fired_total %s\n"
             "# TYPE streamgate_windows_fired_total counter\n"
             "streamgate_windows_fired_total 0\n",
             sg_metrics_help(SG_METRIC_LIMIT_HITS_TOTAL),
             sg_metrics_help(SG_METRIC_WINDOWS_FIRED_TOTAL));
    cr_assert_str_eq(out, want);
    cr_assert_eq(sg_metrics_counter_value(m, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"a\""), 3);
    cr_assert_eq(sg_metrics_counter_value(m, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"nope\""), 0);
    cr_assert_eq(sg_metrics_counter_value(m, SG_METRIC_KEYS_EVICTED_TOTAL, NULL), 0);
    free(out);
    sg_metrics_destroy(m);
}

Test(metrics, a_family_of_another_type_is_refused)
{
    static const double bounds[] = {1.0};
    struct sg_metrics *m = sg_metrics_create();
    cr_assert_null(sg_metrics_gauge(m, SG_METRIC_WINDOWS_FIRED_TOTAL, NULL));
    cr_assert_null(sg_metrics_counter(m, SG_METRIC_KEYS_ACTIVE, NULL));
    cr_assert_null(sg_metrics_histogram(m, SG_METRIC_KEYS_ACTIVE, NULL, bounds, 1));
    cr_assert_null(sg_metrics_counter(m, SG_METRIC_COUNT, NULL));
    cr_assert_null(sg_metrics_counter(m, (enum sg_metric) - 1, NULL));
    char *out = render(m);
    cr_assert_str_eq(out, "", "a refused registration leaves nothing behind");
    free(out);
    cr_assert_not_null(sg_metrics_counter(m, SG_METRIC_WINDOWS_FIRED_TOTAL, NULL));
    cr_assert_null(sg_metrics_gauge(m, SG_METRIC_WINDOWS_FIRED_TOTAL, NULL));
    sg_metrics_destroy(m);
}

Test(metrics, labels_must_be_declared_and_well_formed)
{
    struct sg_metrics *m = sg_metrics_create();
    const enum sg_metric id = SG_METRIC_EVENTS_REJECTED_TOTAL; /* transport,reason */
    cr_assert_not_null(sg_metrics_counter(m, id, "transport=\"http\",reason=\"x\""));
    cr_assert_not_null(sg_metrics_counter(m, id, "reason=\"x\""), "a subset, in any order");
    cr_assert_not_null(sg_metrics_counter(m, id, "reason=\"a\\\"b\\\\c\""), "escapes");
    cr_assert_null(sg_metrics_counter(m, id, "code=\"200\""), "undeclared");
    cr_assert_null(sg_metrics_counter(m, id, "transports=\"http\""), "undeclared");
    cr_assert_null(sg_metrics_counter(m, id, "transport=http"), "unquoted");
    cr_assert_null(sg_metrics_counter(m, id, "transport=\"http"), "unterminated");
    cr_assert_null(sg_metrics_counter(m, id, "transport=\"http\","), "trailing comma");
    cr_assert_null(sg_metrics_counter(m, id, "transport=\"http\" "), "trailing bytes");
    cr_assert_null(sg_metrics_counter(m, id, "=\"http\""), "no name");
    cr_assert_null(sg_metrics_counter(m, SG_METRIC_KEYS_EVICTED_TOTAL, "x=\"1\""), "no labels");
    sg_metrics_destroy(m);
}

Test(metrics, gauges)
{
    struct sg_metrics *m = sg_metrics_create();
    struct sg_gauge *g = sg_metrics_gauge(m, SG_METRIC_SINK_QUEUE_BYTES, "sink=\"file\"");
    sg_gauge_set(g, 2.5);
    sg_gauge_add(g, -0.5);
    char *out = render(m);
    char want[512];
    snprintf(want, sizeof(want),
             "# HELP streamgate_sink_queue_bytes %s\n# TYPE streamgate_sink_queue_bytes gauge\n"
             "streamgate_sink_queue_bytes{sink=\"file\"} 2\n",
             sg_metrics_help(SG_METRIC_SINK_QUEUE_BYTES));
    cr_assert_str_eq(out, want);
    free(out);
    sg_metrics_destroy(m);
}

Test(metrics, histogram_buckets_are_cumulative)
{
    static const double bounds[] = {0.1, 1.0, 10.0};
    struct sg_metrics *m = sg_metrics_create();
    struct sg_histogram *h = sg_metrics_histogram(m, SG_METRIC_LOOP_LAG_SECONDS, NULL, bounds, 3);
    sg_histogram_observe(h, 0.05);
    sg_histogram_observe(h, 0.1); /* le is inclusive */
    sg_histogram_observe(h, 0.5);
    sg_histogram_observe(h, 7);
    char *out = render(m);
    const char *body = strstr(out, "\n# TYPE streamgate_loop_lag_seconds histogram\n");
    cr_assert_not_null(body, "%s", out);
    cr_assert_str_eq(body, "\n# TYPE streamgate_loop_lag_seconds histogram\n"
                           "streamgate_loop_lag_seconds_bucket{le=\"0.1\"} 2\n"
                           "streamgate_loop_lag_seconds_bucket{le=\"1\"} 3\n"
                           "streamgate_loop_lag_seconds_bucket{le=\"10\"} 4\n"
                           "streamgate_loop_lag_seconds_bucket{le=\"+Inf\"} 4\n"
                           "streamgate_loop_lag_seconds_sum 7.65\n"
                           "streamgate_loop_lag_seconds_count 4\n");
    free(out);
    sg_metrics_destroy(m);
}
