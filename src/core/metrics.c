#include "streamgate/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "streamgate/buf.h"

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

/* Series are allocated one by one so the pointers handed out stay valid for the registry's
 * life; families keep them in registration order, which is also the exposition order. */
struct series {
    struct series *next;
    char *labels;
    union {
        struct sg_counter counter;
        struct sg_gauge gauge;
        struct sg_histogram histogram;
    } u;
};

struct family {
    struct family *next;
    char *name;
    char *help;
    enum metric_type type;
    struct series *first, **tail;
};

struct sg_metrics {
    struct family *first, **tail;
};

struct sg_metrics *sg_metrics_create(void)
{
    struct sg_metrics *m = calloc(1, sizeof(*m));
    if (m)
        m->tail = &m->first;
    return m;
}

static void series_free(struct series *s, enum metric_type type)
{
    if (type == METRIC_HISTOGRAM)
        free(s->u.histogram.buckets);
    free(s->labels);
    free(s);
}

void sg_metrics_destroy(struct sg_metrics *m)
{
    if (!m)
        return;
    struct family *f = m->first;
    while (f) {
        struct family *fnext = f->next;
        struct series *s = f->first;
        while (s) {
            struct series *snext = s->next;
            series_free(s, f->type);
            s = snext;
        }
        free(f->name);
        free(f->help);
        free(f);
        f = fnext;
    }
    free(m);
}

static struct family *family_find(struct sg_metrics *m, const char *name)
{
    for (struct family *f = m->first; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static struct series *series_find(struct family *f, const char *labels)
{
    for (struct series *s = f->first; s; s = s->next)
        if (strcmp(s->labels, labels) == 0)
            return s;
    return NULL;
}

/* Finds or creates the series; *created tells the caller to initialise a new one. */
static struct series *series_get(struct sg_metrics *m, const char *name, const char *help,
                                 const char *labels, enum metric_type type, bool *created)
{
    *created = false;
    if (!labels)
        labels = "";
    struct family *f = family_find(m, name);
    if (f && f->type != type)
        return NULL;
    if (!f) {
        f = calloc(1, sizeof(*f));
        if (!f)
            return NULL;
        f->name = strdup(name);
        f->help = strdup(help ? help : "");
        f->type = type;
        f->tail = &f->first;
        if (!f->name || !f->help) {
            free(f->name);
            free(f->help);
            free(f);
            return NULL;
        }
        *m->tail = f;
        m->tail = &f->next;
    }
    struct series *s = series_find(f, labels);
    if (s)
        return s;
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->labels = strdup(labels);
    if (!s->labels) {
        free(s);
        return NULL;
    }
    *f->tail = s;
    f->tail = &s->next;
    *created = true;
    return s;
}

struct sg_counter *sg_metrics_counter(struct sg_metrics *m, const char *name, const char *help,
                                      const char *labels)
{
    bool created;
    struct series *s = series_get(m, name, help, labels, METRIC_COUNTER, &created);
    return s ? &s->u.counter : NULL;
}

struct sg_gauge *sg_metrics_gauge(struct sg_metrics *m, const char *name, const char *help,
                                  const char *labels)
{
    bool created;
    struct series *s = series_get(m, name, help, labels, METRIC_GAUGE, &created);
    return s ? &s->u.gauge : NULL;
}

struct sg_histogram *sg_metrics_histogram(struct sg_metrics *m, const char *name, const char *help,
                                          const char *labels, const double *bounds, size_t nbounds)
{
    bool created;
    struct series *s = series_get(m, name, help, labels, METRIC_HISTOGRAM, &created);
    if (!s)
        return NULL;
    struct sg_histogram *h = &s->u.histogram;
    if (created) {
        h->buckets = calloc(nbounds + 1, sizeof(*h->buckets));
        if (!h->buckets)
            return NULL; /* the series stays registered with no buckets and renders none */
        h->bounds = bounds;
        h->nbounds = nbounds;
    }
    return h->buckets ? h : NULL;
}

void sg_histogram_observe(struct sg_histogram *h, double v)
{
    /* Buckets hold per-bucket counts; rendering accumulates them. Bounds are few (about a
     * dozen), so a linear search beats anything cleverer. */
    size_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum += v;
}

uint64_t sg_metrics_counter_value(struct sg_metrics *m, const char *name, const char *labels)
{
    struct family *f = family_find(m, name);
    if (!f || f->type != METRIC_COUNTER)
        return 0;
    struct series *s = series_find(f, labels ? labels : "");
    return s ? s->u.counter.value : 0;
}

static int append_help(struct sg_buf *out, const char *help)
{
    /* HELP text escapes backslash and line feed (exposition format 0.0.4). */
    int rc = 0;
    for (const char *p = help; *p && rc == 0; p++) {
        if (*p == '\\')
            rc = sg_buf_append_str(out, "\\\\");
        else if (*p == '\n')
            rc = sg_buf_append_str(out, "\\n");
        else
            rc = sg_buf_append_char(out, *p);
    }
    return rc;
}

/* The shortest decimal text that reads back as exactly `v` (0.1, not 0.10000000000000001). */
static void format_double(char *buf, size_t len, double v)
{
    if (v == (double)(int64_t)v && fabs(v) < 1e15) { /* 10, not 1e+01 */
        snprintf(buf, len, "%" PRId64, (int64_t)v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static int append_double(struct sg_buf *out, double v)
{
    if (isnan(v))
        return sg_buf_append_str(out, "NaN");
    if (isinf(v))
        return sg_buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
    if (v == (double)(int64_t)v && fabs(v) < 9e15)
        return sg_buf_printf(out, "%" PRId64, (int64_t)v);
    char num[32];
    format_double(num, sizeof(num), v);
    return sg_buf_append_str(out, num);
}

/* name{labels[,extra]} with empty braces left out. */
static int append_series_name(struct sg_buf *out, const char *name, const char *suffix,
                              const char *labels, const char *extra)
{
    int rc = sg_buf_printf(out, "%s%s", name, suffix);
    bool has_labels = labels && *labels, has_extra = extra && *extra;
    if (rc == 0 && (has_labels || has_extra))
        rc = sg_buf_printf(out, "{%s%s%s}", has_labels ? labels : "",
                           has_labels && has_extra ? "," : "", has_extra ? extra : "");
    return rc ? rc : sg_buf_append_char(out, ' ');
}

static int render_histogram(struct sg_buf *out, const struct family *f, const struct series *s)
{
    const struct sg_histogram *h = &s->u.histogram;
    uint64_t cumulative = 0;
    char le[64];
    int rc = 0;
    for (size_t i = 0; rc == 0 && i <= h->nbounds; i++) {
        cumulative += h->buckets[i];
        if (i < h->nbounds) {
            char num[32];
            format_double(num, sizeof(num), h->bounds[i]);
            snprintf(le, sizeof(le), "le=\"%s\"", num);
        } else
            snprintf(le, sizeof(le), "le=\"+Inf\"");
        rc = append_series_name(out, f->name, "_bucket", s->labels, le);
        if (rc == 0)
            rc = sg_buf_printf(out, "%" PRIu64 "\n", cumulative);
    }
    if (rc == 0)
        rc = append_series_name(out, f->name, "_sum", s->labels, NULL);
    if (rc == 0)
        rc = append_double(out, h->sum);
    if (rc == 0)
        rc = sg_buf_append_char(out, '\n');
    if (rc == 0)
        rc = append_series_name(out, f->name, "_count", s->labels, NULL);
    if (rc == 0)
        rc = sg_buf_printf(out, "%" PRIu64 "\n", h->count);
    return rc;
}

int sg_metrics_render(struct sg_metrics *m, struct sg_buf *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    int rc = 0;
    for (struct family *f = m->first; f && rc == 0; f = f->next) {
        rc = sg_buf_printf(out, "# HELP %s ", f->name);
        if (rc == 0)
            rc = append_help(out, f->help);
        if (rc == 0)
            rc = sg_buf_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
        for (struct series *s = f->first; s && rc == 0; s = s->next) {
            switch (f->type) {
            case METRIC_COUNTER:
                rc = append_series_name(out, f->name, "", s->labels, NULL);
                if (rc == 0)
                    rc = sg_buf_printf(out, "%" PRIu64 "\n", s->u.counter.value);
                break;
            case METRIC_GAUGE:
                rc = append_series_name(out, f->name, "", s->labels, NULL);
                if (rc == 0)
                    rc = append_double(out, s->u.gauge.value);
                if (rc == 0)
                    rc = sg_buf_append_char(out, '\n');
                break;
            case METRIC_HISTOGRAM:
                if (s->u.histogram.buckets)
                    rc = render_histogram(out, f, s);
                break;
            }
        }
    }
    return rc;
}
