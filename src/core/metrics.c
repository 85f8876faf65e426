#include "streamgate/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "streamgate/buf.h"

static const struct {
    const char *name;
    enum sg_metric_type type;
    const char *labels;
    const char *help;
} metric_catalogue[SG_METRIC_COUNT] = {
#define SG_X(id, name, type, labels, help) {name, SG_METRIC_TYPE_##type, labels, help},
    SG_METRIC_MAP(SG_X)
#undef SG_X
};

static const char *const metric_type_names[] = {"counter", "gauge", "histogram"};

const char *sg_metrics_name(enum sg_metric id)
{
    return metric_catalogue[id].name;
}

const char *sg_metrics_help(enum sg_metric id)
{
    return metric_catalogue[id].help;
}

enum sg_metric_type sg_metrics_type(enum sg_metric id)
{
    return metric_catalogue[id].type;
}

const char *sg_metrics_labels(enum sg_metric id)
{
    return metric_catalogue[id].labels;
}

void sg_metrics_print_markdown(FILE *out)
{
    fputs("| series | type | description |\n| --- | --- | --- |\n", out);
    for (int id = 0; id < SG_METRIC_COUNT; id++) {
        const char *labels = metric_catalogue[id].labels;
        fprintf(out, "| `%s%s%s%s` | %s | %s |\n", metric_catalogue[id].name, *labels ? "{" : "",
                labels, *labels ? "}" : "", metric_type_names[metric_catalogue[id].type],
                metric_catalogue[id].help);
    }
}

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
    enum sg_metric id;
    struct series *first, **tail;
};

struct sg_metrics {
    struct family *first, **tail; /* registration order */
    struct family *by_id[SG_METRIC_COUNT];
};

struct sg_metrics *sg_metrics_create(void)
{
    struct sg_metrics *m = calloc(1, sizeof(*m));
    if (m)
        m->tail = &m->first;
    return m;
}

static void series_free(struct series *s, enum sg_metric_type type)
{
    if (type == SG_METRIC_TYPE_HISTOGRAM)
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
            series_free(s, metric_catalogue[f->id].type);
            s = snext;
        }
        free(f);
        f = fnext;
    }
    free(m);
}

static struct series *series_find(struct family *f, const char *labels)
{
    for (struct series *s = f->first; s; s = s->next)
        if (strcmp(s->labels, labels) == 0)
            return s;
    return NULL;
}

/* Whether `name` (not NUL-terminated) is one of the comma-separated names in `declared`. */
static bool label_declared(const char *declared, const char *name, size_t len)
{
    for (const char *p = declared; *p;) {
        size_t n = strcspn(p, ",");
        if (n == len && memcmp(p, name, len) == 0)
            return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

/* Whether `labels` is a well-formed list of name="value" pairs whose names the family
 * declares. Values may hold backslash escapes (\\, \", \n), as the exposition format allows. */
static bool labels_valid(const char *declared, const char *labels)
{
    const char *p = labels;
    while (*p) {
        const char *name = p;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
               (p > name && *p >= '0' && *p <= '9'))
            p++;
        if (p == name || !label_declared(declared, name, (size_t)(p - name)))
            return false;
        if (p[0] != '=' || p[1] != '"')
            return false;
        for (p += 2; *p != '"'; p++) {
            if (*p == '\0' || (*p == '\\' && *++p == '\0'))
                return false;
        }
        p++;
        if (*p == ',' && p[1] != '\0')
            p++;
        else if (*p != '\0')
            return false;
    }
    return true;
}

/* Finds or creates the series; *created tells the caller to initialise a new one. */
static struct series *series_get(struct sg_metrics *m, enum sg_metric id, const char *labels,
                                 enum sg_metric_type type, bool *created)
{
    *created = false;
    if (!labels)
        labels = "";
    if ((unsigned)id >= SG_METRIC_COUNT || metric_catalogue[id].type != type)
        return NULL;
    struct family *f = m->by_id[id];
    struct series *s = f ? series_find(f, labels) : NULL;
    if (s)
        return s;
    if (!labels_valid(metric_catalogue[id].labels, labels))
        return NULL;
    if (!f) {
        f = calloc(1, sizeof(*f));
        if (!f)
            return NULL;
        f->id = id;
        f->tail = &f->first;
        *m->tail = f;
        m->tail = &f->next;
        m->by_id[id] = f;
    }
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

struct sg_counter *sg_metrics_counter(struct sg_metrics *m, enum sg_metric id, const char *labels)
{
    bool created;
    struct series *s = series_get(m, id, labels, SG_METRIC_TYPE_COUNTER, &created);
    return s ? &s->u.counter : NULL;
}

struct sg_gauge *sg_metrics_gauge(struct sg_metrics *m, enum sg_metric id, const char *labels)
{
    bool created;
    struct series *s = series_get(m, id, labels, SG_METRIC_TYPE_GAUGE, &created);
    return s ? &s->u.gauge : NULL;
}

struct sg_histogram *sg_metrics_histogram(struct sg_metrics *m, enum sg_metric id,
                                          const char *labels, const double *bounds, size_t nbounds)
{
    bool created;
    struct series *s = series_get(m, id, labels, SG_METRIC_TYPE_HISTOGRAM, &created);
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

uint64_t sg_metrics_counter_value(struct sg_metrics *m, enum sg_metric id, const char *labels)
{
    if ((unsigned)id >= SG_METRIC_COUNT || metric_catalogue[id].type != SG_METRIC_TYPE_COUNTER)
        return 0;
    struct family *f = m->by_id[id];
    if (!f)
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

static int render_histogram(struct sg_buf *out, const char *name, const struct series *s)
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
        rc = append_series_name(out, name, "_bucket", s->labels, le);
        if (rc == 0)
            rc = sg_buf_printf(out, "%" PRIu64 "\n", cumulative);
    }
    if (rc == 0)
        rc = append_series_name(out, name, "_sum", s->labels, NULL);
    if (rc == 0)
        rc = append_double(out, h->sum);
    if (rc == 0)
        rc = sg_buf_append_char(out, '\n');
    if (rc == 0)
        rc = append_series_name(out, name, "_count", s->labels, NULL);
    if (rc == 0)
        rc = sg_buf_printf(out, "%" PRIu64 "\n", h->count);
    return rc;
}

int sg_metrics_render(struct sg_metrics *m, struct sg_buf *out)
{
    int rc = 0;
    for (struct family *f = m->first; f && rc == 0; f = f->next) {
        const char *name = metric_catalogue[f->id].name;
        enum sg_metric_type type = metric_catalogue[f->id].type;
        rc = sg_buf_printf(out, "# HELP %s ", name);
        if (rc == 0)
            rc = append_help(out, metric_catalogue[f->id].help);
        if (rc == 0)
            rc = sg_buf_printf(out, "\n# TYPE %s %s\n", name, metric_type_names[type]);
        for (struct series *s = f->first; s && rc == 0; s = s->next) {
            switch (type) {
            case SG_METRIC_TYPE_COUNTER:
                rc = append_series_name(out, name, "", s->labels, NULL);
                if (rc == 0)
                    rc = sg_buf_printf(out, "%" PRIu64 "\n", s->u.counter.value);
                break;
            case SG_METRIC_TYPE_GAUGE:
                rc = append_series_name(out, name, "", s->labels, NULL);
                if (rc == 0)
                    rc = append_double(out, s->u.gauge.value);
                if (rc == 0)
                    rc = sg_buf_append_char(out, '\n');
                break;
            case SG_METRIC_TYPE_HISTOGRAM:
                if (s->u.histogram.buckets)
                    rc = render_histogram(out, name, s);
                break;
            }
        }
    }
    return rc;
}
