/* The expectation: per key and tumbling window, count and per field count/sum/min/max of the
 * events the server accepted and did not drop as late. Sums are doubles added in the order the
 * key's events were made, which is the order the server adds them (a key always travels over
 * one connection, in order), so the totals match the server's bit for bit. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

int gen_expect_init(struct gen_expect *ex, int64_t window_ms, int nfields, size_t values_max)
{
    memset(ex, 0, sizeof(*ex));
    ex->window_ms = window_ms;
    ex->nfields = nfields;
    ex->vals_max = values_max;
    ex->cap = 1024;
    ex->slots = calloc(ex->cap, sizeof(*ex->slots));
    return ex->slots ? 0 : -ENOMEM;
}

void gen_expect_destroy(struct gen_expect *ex)
{
    free(ex->slots);
    ex->slots = NULL;
    ex->cap = ex->len = 0;
    free(ex->vals);
    ex->vals = NULL;
    ex->nvals = ex->vals_cap = 0;
}

/* Keeps one event's values, while fewer than vals_max are kept. */
static int gen_expect__keep(struct gen_expect *ex, const struct gen_rec *rec)
{
    if (ex->vals_over || ex->vals_max == 0)
        return 0;
    if (ex->nvals == ex->vals_max) {
        ex->vals_over = true;
        free(ex->vals);
        ex->vals = NULL;
        ex->nvals = ex->vals_cap = 0;
        return 0;
    }
    if (ex->nvals == ex->vals_cap) {
        size_t cap = ex->vals_cap ? ex->vals_cap * 2 : 4096;
        cap = cap > ex->vals_max ? ex->vals_max : cap;
        struct gen_evals *v = realloc(ex->vals, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        ex->vals = v;
        ex->vals_cap = cap;
    }
    struct gen_evals *e = &ex->vals[ex->nvals++];
    e->key = rec->key;
    memcpy(e->v, rec->v, sizeof(e->v));
    return 0;
}

static size_t gen_expect__hash(uint32_t key, int64_t start)
{
    uint64_t h =
        ((uint64_t)key * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)start * 0xc2b2ae3d27d4eb4fULL);
    return (size_t)(h ^ (h >> 29));
}

static struct gen_ewin *gen_expect__find(struct gen_ewin *slots, size_t cap, uint32_t key,
                                         int64_t start)
{
    size_t i = gen_expect__hash(key, start) & (cap - 1);
    while (slots[i].used && (slots[i].key != key || slots[i].start != start))
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static int gen_expect__grow(struct gen_expect *ex)
{
    size_t cap = ex->cap * 2;
    struct gen_ewin *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < ex->cap; i++)
        if (ex->slots[i].used)
            *gen_expect__find(slots, cap, ex->slots[i].key, ex->slots[i].start) = ex->slots[i];
    free(ex->slots);
    ex->slots = slots;
    ex->cap = cap;
    return 0;
}

int gen_expect_add(struct gen_expect *ex, const struct gen_rec *rec)
{
    if (rec->late)
        return 0;
    if ((ex->len + 1) * 2 > ex->cap && gen_expect__grow(ex) != 0)
        return -ENOMEM;
    if (gen_expect__keep(ex, rec) != 0)
        return -ENOMEM;
    int64_t q = rec->ts / ex->window_ms;
    if (rec->ts % ex->window_ms != 0 && rec->ts < 0)
        q--;
    int64_t start = q * ex->window_ms;
    struct gen_ewin *w = gen_expect__find(ex->slots, ex->cap, rec->key, start);
    if (!w->used) {
        w->used = true;
        w->key = rec->key;
        w->start = start;
        ex->len++;
    }
    w->count++;
    w->planted = rec->planted;
    w->signal = rec->signal;
    for (int i = 0; i < ex->nfields; i++) {
        struct gen_fagg *f = &w->f[i];
        double v = rec->v[i];
        if (f->count++ == 0) {
            f->min = f->max = v;
        } else {
            if (v < f->min)
                f->min = v;
            if (v > f->max)
                f->max = v;
        }
        f->sum += v;
    }
    return 0;
}

size_t gen_format_double(double v, char *buf)
{
    if (!isfinite(v))
        return (size_t)snprintf(buf, 40, "null");
    if (v == trunc(v) && fabs(v) < 1e15 && !(v == 0 && signbit(v)))
        return (size_t)snprintf(buf, 40, "%" PRId64, (int64_t)v);
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, 40, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return (size_t)n;
}

struct gen_expect_row {
    const struct gen_ewin *w;
    char key[32];
};

static int gen_expect__cmp(const void *a, const void *b)
{
    const struct gen_expect_row *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c != 0)
        return c;
    return x->w->start < y->w->start ? -1 : x->w->start > y->w->start;
}

int gen_expect_write(const struct gen_expect *ex, enum gen_source_kind kind, const char *path,
                     const char *const *names, char *errstr, size_t errstr_size)
{
    int rc = 0;
    FILE *f = NULL;
    struct gen_expect_row *rows = malloc((ex->len ? ex->len : 1) * sizeof(*rows));
    if (!rows) {
        snprintf(errstr, errstr_size, "out of memory writing the expectation");
        return -ENOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; i < ex->cap; i++)
        if (ex->slots[i].used) {
            rows[n].w = &ex->slots[i];
            gen_source_key_name(kind, ex->slots[i].key, rows[n].key);
            n++;
        }
    qsort(rows, n, sizeof(*rows), gen_expect__cmp);

    f = fopen(path, "w");
    if (!f) {
        rc = -errno;
        snprintf(errstr, errstr_size, "cannot write %s: %s", path, strerror(errno));
        goto out;
    }
    char num[64];
    for (size_t i = 0; i < n; i++) {
        const struct gen_ewin *w = rows[i].w;
        fprintf(f,
                "{\"key\":\"%s\",\"window_start\":%" PRId64 ",\"window_end\":%" PRId64
                ",\"count\":%" PRIu64 ",\"fields\":{",
                rows[i].key, w->start, w->start + ex->window_ms, w->count);
        for (int j = 0; j < ex->nfields; j++) {
            const struct gen_fagg *a = &w->f[j];
            fprintf(f, "%s\"%s\":{\"count\":%" PRIu64, j ? "," : "", names[j], a->count);
            gen_format_double(a->sum, num);
            fprintf(f, ",\"sum\":%s", num);
            gen_format_double(a->min, num);
            fprintf(f, ",\"min\":%s", num);
            gen_format_double(a->max, num);
            fprintf(f, ",\"max\":%s}", num);
        }
        fputc('}', f);
        if (ex->signal) {
            gen_format_double(w->signal, num);
            fprintf(f, ",\"planted\":%s,\"signal\":%s", w->planted ? "true" : "false", num);
            gen_format_double(ex->noise, num);
            fprintf(f, ",\"noise\":%s", num);
        }
        fputs("}\n", f);
    }
    if (fclose(f) != 0) {
        rc = -errno;
        snprintf(errstr, errstr_size, "cannot write %s: %s", path, strerror(errno));
    }
out:
    free(rows);
    return rc;
}

struct gen_values_key {
    uint32_t key;
    char name[32];
    size_t first, n; /* its events in the sorted values */
};

static int gen_expect__values_cmp(const void *a, const void *b)
{
    const struct gen_evals *x = a, *y = b;
    return (x->key > y->key) - (x->key < y->key);
}

static int gen_expect__name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct gen_values_key *)a)->name,
                  ((const struct gen_values_key *)b)->name);
}

static int gen_expect__double_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int gen_expect_write_values(const struct gen_expect *ex, enum gen_source_kind kind,
                            const char *path, const char *const *names, char *errstr,
                            size_t errstr_size)
{
    if (ex->vals_over) {
        (void)remove(path);
        return 1;
    }
    /* The events by key, then each key's values of a field sorted in turn. */
    qsort(ex->vals, ex->nvals, sizeof(*ex->vals), gen_expect__values_cmp);
    size_t nkeys = 0;
    for (size_t i = 0; i < ex->nvals; i++)
        nkeys += i == 0 || ex->vals[i].key != ex->vals[i - 1].key;
    struct gen_values_key *keys = malloc((nkeys ? nkeys : 1) * sizeof(*keys));
    double *v = malloc((ex->nvals ? ex->nvals : 1) * sizeof(*v));
    FILE *f = keys && v ? fopen(path, "w") : NULL;
    int rc = 0;
    if (!f) {
        rc = keys && v ? -errno : -ENOMEM;
        snprintf(errstr, errstr_size, "cannot write %s: %s", path, strerror(-rc));
        goto out;
    }
    for (size_t i = 0, k = 0; i < ex->nvals; i++) {
        if (i > 0 && ex->vals[i].key == ex->vals[i - 1].key) {
            keys[k - 1].n++;
            continue;
        }
        keys[k] = (struct gen_values_key){.key = ex->vals[i].key, .first = i, .n = 1};
        gen_source_key_name(kind, ex->vals[i].key, keys[k].name);
        k++;
    }
    qsort(keys, nkeys, sizeof(*keys), gen_expect__name_cmp);
    char num[64];
    for (size_t k = 0; k < nkeys; k++)
        for (int j = 0; j < ex->nfields; j++) {
            for (size_t i = 0; i < keys[k].n; i++)
                v[i] = ex->vals[keys[k].first + i].v[j];
            qsort(v, keys[k].n, sizeof(*v), gen_expect__double_cmp);
            fprintf(f, "{\"key\":\"%s\",\"field\":\"%s\",\"count\":%zu,\"values\":[", keys[k].name,
                    names[j], keys[k].n);
            for (size_t i = 0; i < keys[k].n; i++) {
                gen_format_double(v[i], num);
                fprintf(f, "%s%s", i ? "," : "", num);
            }
            fputs("]}\n", f);
        }
    if (fclose(f) != 0) {
        rc = -errno;
        snprintf(errstr, errstr_size, "cannot write %s: %s", path, strerror(errno));
    }
out:
    free(keys);
    free(v);
    return rc;
}
