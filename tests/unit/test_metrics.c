#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/buf.h"
#include "streamgate/metrics.h"

static char *render(struct sg_metrics *m)
{
    struct sg_buf b;
    sg_buf_init(&b, 0);
    cr_assert_eq(sg_metrics_render(m, &b), 0);
    sg_buf_append_char(&b, '\0');
    return b.data;
}

Test(metrics, counters_with_labels_render_in_registration_order)
{
    struct sg_metrics *m = sg_metrics_create();
    struct sg_counter *a = sg_metrics_counter(m, "x_total", "Help for x.", "t=\"http\"");
    struct sg_counter *b = sg_metrics_counter(m, "x_total", "ignored", "t=\"tcp\"");
    struct sg_counter *c = sg_metrics_counter(m, "y_total", "Y.", NULL);
    cr_assert(a && b && c && a != b);
    cr_assert_eq(sg_metrics_counter(m, "x_total", "", "t=\"http\""), a,
                 "same series, same pointer");
    sg_counter_add(a, 3);
    sg_counter_inc(b);
    char *out = render(m);
    const char *want = "# HELP x_total Help for x.\n"
                       "# TYPE x_total counter\n"
                       "x_total{t=\"http\"} 3\n"
                       "x_total{t=\"tcp\"} 1\n"
                       "# HELP y_total Y.\n"
                       "# TYPE y_total counter\n"
                       "y_total 0\n";
    cr_assert_str_eq(out, want);
    cr_assert_eq(sg_metrics_counter_value(m, "x_total", "t=\"http\""), 3);
    cr_assert_eq(sg_metrics_counter_value(m, "x_total", "t=\"nope\""), 0);
    free(out);
    sg_metrics_destroy(m);
}

Test(metrics, type_conflict_is_refused)
{
    struct sg_metrics *m = sg_metrics_create();
    cr_assert_not_null(sg_metrics_counter(m, "z", "", NULL));
    cr_assert_null(sg_metrics_gauge(m, "z", "", NULL));
    sg_metrics_destroy(m);
}

Test(metrics, gauges_and_help_escaping)
{
    struct sg_metrics *m = sg_metrics_create();
    struct sg_gauge *g = sg_metrics_gauge(m, "g", "a\\b\nc", "k=\"v\"");
    sg_gauge_set(g, 2.5);
    sg_gauge_add(g, -0.5);
    char *out = render(m);
    cr_assert_str_eq(out, "# HELP g a\\\\b\\nc\n# TYPE g gauge\ng{k=\"v\"} 2\n");
    free(out);
    sg_metrics_destroy(m);
}

Test(metrics, histogram_buckets_are_cumulative)
{
    static const double bounds[] = {0.1, 1.0, 10.0};
    struct sg_metrics *m = sg_metrics_create();
    struct sg_histogram *h = sg_metrics_histogram(m, "lat_seconds", "L.", NULL, bounds, 3);
    sg_histogram_observe(h, 0.05);
    sg_histogram_observe(h, 0.1); /* le is inclusive */
    sg_histogram_observe(h, 0.5);
    sg_histogram_observe(h, 7);
    char *out = render(m);
    cr_assert_str_eq(out, "# HELP lat_seconds L.\n# TYPE lat_seconds histogram\n"
                          "lat_seconds_bucket{le=\"0.1\"} 2\n"
                          "lat_seconds_bucket{le=\"1\"} 3\n"
                          "lat_seconds_bucket{le=\"10\"} 4\n"
                          "lat_seconds_bucket{le=\"+Inf\"} 4\n"
                          "lat_seconds_sum 7.65\n"
                          "lat_seconds_count 4\n");
    free(out);
    sg_metrics_destroy(m);
}
