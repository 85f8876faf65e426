/* A registry of counters, gauges and histograms and its Prometheus text exposition (format
 * 0.0.4). Series are registered once at start-up and updated through the returned pointers,
 * so the hot path is a plain increment. Label sets come from small fixed sets; never register
 * a series per key or per client. Single-threaded: only the loop thread touches it. */
#ifndef STREAMGATE_METRICS_H
#define STREAMGATE_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct sg_buf;
struct sg_metrics;

struct sg_counter {
    uint64_t value;
};

struct sg_gauge {
    double value;
};

struct sg_histogram {
    size_t nbounds;
    const double *bounds; /* upper bounds, ascending; +Inf is implicit */
    uint64_t *buckets;    /* nbounds + 1 cumulative-on-render counts */
    uint64_t count;
    double sum;
};

struct sg_metrics *sg_metrics_create(void);
void sg_metrics_destroy(struct sg_metrics *m);

/* Registers (or finds) the series `name{labels}`. `labels` is the inside of the braces, e.g.
 * `transport="http",reason="invalid_json"`, or NULL/"" for none. A family's help text and type
 * come from its first registration. Returns NULL only when out of memory or when `name` is
 * already registered with another type. */
struct sg_counter *sg_metrics_counter(struct sg_metrics *m, const char *name, const char *help,
                                      const char *labels);
struct sg_gauge *sg_metrics_gauge(struct sg_metrics *m, const char *name, const char *help,
                                  const char *labels);
/* `bounds` must outlive the registry (a static array). */
struct sg_histogram *sg_metrics_histogram(struct sg_metrics *m, const char *name, const char *help,
                                          const char *labels, const double *bounds, size_t nbounds);

static inline void sg_counter_inc(struct sg_counter *c)
{
    c->value++;
}
static inline void sg_counter_add(struct sg_counter *c, uint64_t n)
{
    c->value += n;
}
static inline void sg_gauge_set(struct sg_gauge *g, double v)
{
    g->value = v;
}
static inline void sg_gauge_add(struct sg_gauge *g, double v)
{
    g->value += v;
}
void sg_histogram_observe(struct sg_histogram *h, double v);

/* Finds a registered series; NULL when absent. For tests and for gauges owned elsewhere. */
uint64_t sg_metrics_counter_value(struct sg_metrics *m, const char *name, const char *labels);

/* Appends the whole registry in Prometheus text format 0.0.4. Returns 0 or a negative code. */
int sg_metrics_render(struct sg_metrics *m, struct sg_buf *out);

#endif
