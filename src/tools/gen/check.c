/* --check-results RESULTS --expect EXPECT: compares the window results a server wrote (one JSON
 * object per line, as --output-results-file writes them) with an expectation written by
 * --expect, instead of generating. They match when both hold the same set of (key,
 * window_start), each result is final, and each window has the same window_end and count and,
 * for every field of the expectation, the same count, sum, min and max (exact double equality:
 * the expectation adds in the server's order). Statistics and fields the expectation does not
 * name are not compared. Exit status: 0 equal, 1 different (the first differences on stderr), 2
 * an unreadable file or a line of the expectation that is not a window.
 *
 * When the expectation carries a planted signal (--trend, --season, --noise, --anomaly-rate), it
 * also scores the forecasts of the value field: of the windows with an anomaly score, those past
 * --anomaly-threshold against those planted (precision and recall), and the mean absolute error
 * of the forecast against the noise-free signal beside the noise of a window mean. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

#define GEN_CHECK_SHOW  10 /* differences printed */
#define GEN_CHECK_NAMES 64 /* distinct field names an expectation may have */
#define GEN_CHECK_STATS 4

static const char *const gen_check_stat_names[GEN_CHECK_STATS] = {"count", "sum", "min", "max"};

struct gen_cfield {
    int name;     /* index into gen_check.names */
    bool present; /* results: the field is there */
    bool valid;   /* every statistic is a number */
    double v[GEN_CHECK_STATS];
};

struct gen_cwin {
    char *key;
    double start, end, count;
    bool final;
    /* Expectation: the planted anomaly and signal of the value field, and the events' noise.
     * Results: the value field's forecast and anomaly score, when it has them. */
    bool has_signal, planted, has_forecast, has_anomaly;
    double signal, noise, forecast, anomaly;
    size_t line;
    int nf;
    struct gen_cfield *f; /* expectation: its fields; results: one per name, by index */
};

struct gen_cfile {
    const char *path;
    struct gen_cwin *w;
    size_t n;
};

struct gen_check {
    char *names[GEN_CHECK_NAMES];
    int nnames;
    size_t ndiff;
    /* The forecast check, over the windows with a signal. */
    double threshold;
    size_t with_signal, scored, planted, planted_unscored, flagged, true_pos;
    double abs_err, noise_level; /* sums over the scored windows */
};

static void gen_check__diff(struct gen_check *ck, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void gen_check__diff(struct gen_check *ck, const char *fmt, ...)
{
    if (ck->ndiff++ >= GEN_CHECK_SHOW)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("streamgate-gen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Reads a whole file into a NUL-terminated buffer. */
static char *gen_check__read(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "streamgate-gen: cannot read %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len - 1, f);
        if (len < cap - 1)
            break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    if (!buf || ferror(f)) {
        fprintf(stderr, "streamgate-gen: cannot read %s: %s\n", path,
                buf ? strerror(errno) : "out of memory");
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static int gen_check__name(struct gen_check *ck, const char *name)
{
    for (int i = 0; i < ck->nnames; i++)
        if (strcmp(ck->names[i], name) == 0)
            return i;
    if (ck->nnames == GEN_CHECK_NAMES)
        return -1;
    if (!(ck->names[ck->nnames] = strdup(name)))
        return -1;
    return ck->nnames++;
}

static void gen_check__field(const cJSON *stats, struct gen_cfield *f)
{
    f->present = cJSON_IsObject(stats);
    f->valid = f->present;
    for (int s = 0; s < GEN_CHECK_STATS && f->valid; s++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(stats, gen_check_stat_names[s]);
        f->valid = cJSON_IsNumber(v);
        f->v[s] = f->valid ? v->valuedouble : 0;
    }
}

/* The numbers of the forecast check: an expectation's planted flag, signal and noise, a
 * result's forecast and anomaly of the value field. */
static void gen_check__forecast(const cJSON *o, bool expect, struct gen_cwin *w)
{
    if (expect) {
        const cJSON *signal = cJSON_GetObjectItemCaseSensitive(o, "signal");
        const cJSON *noise = cJSON_GetObjectItemCaseSensitive(o, "noise");
        w->has_signal = cJSON_IsNumber(signal) && cJSON_IsNumber(noise);
        w->signal = w->has_signal ? signal->valuedouble : 0;
        w->noise = w->has_signal ? noise->valuedouble : 0;
        w->planted = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "planted"));
        return;
    }
    const cJSON *value =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "fields"), "value");
    const cJSON *forecast = cJSON_GetObjectItemCaseSensitive(value, "forecast");
    const cJSON *anomaly = cJSON_GetObjectItemCaseSensitive(value, "anomaly");
    w->has_forecast = cJSON_IsNumber(forecast);
    w->forecast = w->has_forecast ? forecast->valuedouble : 0;
    w->has_anomaly = cJSON_IsNumber(anomaly);
    w->anomaly = w->has_anomaly ? anomaly->valuedouble : 0;
}

/* Fills `w` from one line. The expectation's fields add names; a result keeps one entry per
 * name. Returns NULL, or what is wrong with the line. */
static const char *gen_check__window(struct gen_check *ck, const char *line, bool expect,
                                     struct gen_cwin *w)
{
    const char *why = NULL;
    cJSON *o = cJSON_Parse(line);
    if (!cJSON_IsObject(o)) {
        why = "not a JSON object";
        goto out;
    }
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(o, "key");
    const cJSON *start = cJSON_GetObjectItemCaseSensitive(o, "window_start");
    const cJSON *end = cJSON_GetObjectItemCaseSensitive(o, "window_end");
    const cJSON *count = cJSON_GetObjectItemCaseSensitive(o, "count");
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(o, "fields");
    if (!cJSON_IsString(key) || !cJSON_IsNumber(start) || !cJSON_IsNumber(end) ||
        !cJSON_IsNumber(count)) {
        why = "no string key or numeric window_start, window_end and count";
        goto out;
    }
    if (fields && !cJSON_IsObject(fields)) {
        why = "fields is not an object";
        goto out;
    }
    w->start = start->valuedouble;
    w->end = end->valuedouble;
    w->count = count->valuedouble;
    w->final = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "final"));
    gen_check__forecast(o, expect, w);
    if (!(w->key = strdup(key->valuestring))) {
        why = "out of memory";
        goto out;
    }
    if (expect) {
        w->nf = cJSON_GetArraySize(fields);
        w->f = calloc((size_t)(w->nf ? w->nf : 1), sizeof(*w->f));
        const cJSON *f;
        int i = 0;
        cJSON_ArrayForEach(f, fields)
        {
            if (!w->f || (w->f[i].name = gen_check__name(ck, f->string)) < 0) {
                why = "too many field names, or out of memory";
                goto out;
            }
            gen_check__field(f, &w->f[i]);
            if (!w->f[i++].valid) {
                why = "a field without numeric count, sum, min and max";
                goto out;
            }
        }
    } else {
        w->nf = ck->nnames;
        w->f = calloc((size_t)(w->nf ? w->nf : 1), sizeof(*w->f));
        if (!w->f) {
            why = "out of memory";
            goto out;
        }
        for (int i = 0; i < w->nf; i++) {
            w->f[i].name = i;
            gen_check__field(cJSON_GetObjectItemCaseSensitive(fields, ck->names[i]), &w->f[i]);
        }
    }
out:
    cJSON_Delete(o);
    return why;
}

/* Orders windows by (key, window_start). */
static int gen_check__order(const struct gen_cwin *x, const struct gen_cwin *y)
{
    int c = strcmp(x->key, y->key);
    if (c != 0)
        return c;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* The same, then by line: a window given twice keeps its order in the file. */
static int gen_check__sort(const void *a, const void *b)
{
    const struct gen_cwin *x = a, *y = b;
    int c = gen_check__order(x, y);
    return c ? c : x->line < y->line ? -1 : x->line > y->line;
}

static void gen_check__free(struct gen_cfile *cf)
{
    for (size_t i = 0; i < cf->n; i++) {
        free(cf->w[i].key);
        free(cf->w[i].f);
    }
    free(cf->w);
    cf->w = NULL;
    cf->n = 0;
}

/* Loads and sorts one file. A line that is not a window is an error (-1) in the expectation and
 * a difference in the results (it is left out). Returns 0 or -1. */
static int gen_check__load(struct gen_check *ck, struct gen_cfile *cf, bool expect)
{
    char *text = gen_check__read(cf->path);
    if (!text)
        return -1;
    size_t cap = 1024;
    cf->w = malloc(cap * sizeof(*cf->w));
    int rc = cf->w ? 0 : -1;
    size_t lineno = 0;
    /* memchr within what is left, not strchr: a sanitizer that checks string arguments would
     * scan the whole rest of the file at every line. */
    char *end = text + strlen(text);
    for (char *line = text, *nl; rc == 0 && line < end; line = nl ? nl + 1 : end) {
        lineno++;
        if ((nl = memchr(line, '\n', (size_t)(end - line))))
            *nl = '\0';
        if (line[strspn(line, " \t\r")] == '\0')
            continue;
        if (cf->n == cap) {
            struct gen_cwin *nw = realloc(cf->w, (cap *= 2) * sizeof(*cf->w));
            if (!nw) {
                fprintf(stderr, "streamgate-gen: out of memory reading %s\n", cf->path);
                rc = -1;
                break;
            }
            cf->w = nw;
        }
        struct gen_cwin *w = &cf->w[cf->n];
        memset(w, 0, sizeof(*w));
        w->line = lineno;
        const char *why = gen_check__window(ck, line, expect, w);
        if (!why) {
            cf->n++;
            continue;
        }
        free(w->key);
        free(w->f);
        if (expect) {
            fprintf(stderr, "streamgate-gen: %s:%zu: not a window of an expectation: %s\n",
                    cf->path, lineno, why);
            rc = -1;
        } else {
            gen_check__diff(ck, "%s:%zu: not a window result: %s", cf->path, lineno, why);
        }
    }
    if (!cf->w)
        fprintf(stderr, "streamgate-gen: out of memory reading %s\n", cf->path);
    free(text);
    if (rc == 0)
        qsort(cf->w, cf->n, sizeof(*cf->w), gen_check__sort);
    return rc;
}

/* One differing number: the shortest text that reads back as each value. */
static void gen_check__number(struct gen_check *ck, const char *at, const char *what, double got,
                              double want)
{
    char g[64], w[64];
    gen_format_double(got, g);
    gen_format_double(want, w);
    gen_check__diff(ck, "%s: %s %s, expected %s", at, what, g, w);
}

/* Counts one scored window into precision, recall and the forecast's error. */
static void gen_check__score(struct gen_check *ck, const struct gen_cwin *r,
                             const struct gen_cwin *e)
{
    if (!e->has_signal)
        return;
    ck->with_signal++;
    ck->planted += e->planted;
    if (!r->has_anomaly || !r->has_forecast) { /* warm-up */
        ck->planted_unscored += e->planted;
        return;
    }
    bool flagged = fabs(r->anomaly) > ck->threshold;
    ck->scored++;
    ck->flagged += flagged;
    ck->true_pos += flagged && e->planted;
    ck->abs_err += fabs(r->forecast - e->signal);
    ck->noise_level += e->noise / sqrt(e->count > 0 ? e->count : 1);
}

/* Prints the forecast check: on stderr unless quiet, and its members for --json. */
static void gen_check__forecast_report(const struct gen_check *ck, bool quiet, char *json,
                                       size_t json_size)
{
    json[0] = '\0';
    if (ck->with_signal == 0)
        return;
    size_t planted_scored = ck->planted - ck->planted_unscored;
    double precision = ck->flagged ? (double)ck->true_pos / (double)ck->flagged : 1;
    double recall = planted_scored ? (double)ck->true_pos / (double)planted_scored : 1;
    double mae = ck->scored ? ck->abs_err / (double)ck->scored : 0;
    double noise = ck->scored ? ck->noise_level / (double)ck->scored : 0;
    if (!quiet)
        fprintf(stderr,
                "streamgate-gen: forecasts: %zu windows scored (%zu in warm-up), %zu planted "
                "(%zu in warm-up), %zu flagged past %g: precision %.4f, recall %.4f; forecast "
                "error %.4g against a window mean's noise of %.4g\n",
                ck->scored, ck->with_signal - ck->scored, ck->planted, ck->planted_unscored,
                ck->flagged, ck->threshold, precision, recall, mae, noise);
    snprintf(json, json_size,
             ",\"scored\":%zu,\"planted\":%zu,\"planted_in_warmup\":%zu,\"flagged\":%zu,"
             "\"true_positives\":%zu,\"precision\":%.6g,\"recall\":%.6g,\"forecast_mae\":%.6g,"
             "\"noise_level\":%.6g",
             ck->scored, ck->planted, ck->planted_unscored, ck->flagged, ck->true_pos, precision,
             recall, mae, noise);
}

/* Compares one result with the expected window of the same key and start. */
static void gen_check__compare(struct gen_check *ck, const struct gen_cfile *rf,
                               const struct gen_cwin *r, const struct gen_cfile *ef,
                               const struct gen_cwin *e)
{
    char at[512], what[128];
    snprintf(at, sizeof(at), "%s:%zu vs %s:%zu: window %s @%.0f", rf->path, r->line, ef->path,
             e->line, e->key, e->start);
    if (!r->final)
        gen_check__diff(ck, "%s: not final", at);
    if (r->end != e->end)
        gen_check__number(ck, at, "window_end", r->end, e->end);
    if (r->count != e->count)
        gen_check__number(ck, at, "count", r->count, e->count);
    for (int i = 0; i < e->nf; i++) {
        const struct gen_cfield *x = &e->f[i], *y = &r->f[x->name];
        const char *name = ck->names[x->name];
        if (!y->valid) {
            gen_check__diff(ck, "%s: %s %s", at,
                            y->present ? "no numeric statistics in field" : "no field", name);
            continue;
        }
        for (int s = 0; s < GEN_CHECK_STATS; s++)
            if (y->v[s] != x->v[s]) {
                snprintf(what, sizeof(what), "%s.%s", name, gen_check_stat_names[s]);
                gen_check__number(ck, at, what, y->v[s], x->v[s]);
            }
    }
}

int gen_check_results(const struct gen_opts *o)
{
    struct gen_check ck = {.nnames = 0, .threshold = o->anomaly_threshold};
    char forecast_json[512];
    struct gen_cfile ef = {.path = o->expect_path}, rf = {.path = o->check_results};
    int code = 2;
    /* The expectation first: it names the fields to look for in the results. */
    if (gen_check__load(&ck, &ef, true) != 0 || gen_check__load(&ck, &rf, false) != 0)
        goto out;
    size_t i = 0, j = 0;
    while (i < rf.n || j < ef.n) {
        int c = i == rf.n ? 1 : j == ef.n ? -1 : gen_check__order(&rf.w[i], &ef.w[j]);
        if (c < 0) {
            bool again = i > 0 && gen_check__order(&rf.w[i - 1], &rf.w[i]) == 0;
            gen_check__diff(&ck, "%s:%zu: window %s @%.0f %s", rf.path, rf.w[i].line, rf.w[i].key,
                            rf.w[i].start, again ? "a second time" : "is not expected");
            i++;
        } else if (c > 0) {
            gen_check__diff(&ck, "%s:%zu: window %s @%.0f (count %.0f) is missing from %s", ef.path,
                            ef.w[j].line, ef.w[j].key, ef.w[j].start, ef.w[j].count, rf.path);
            j++;
        } else {
            gen_check__score(&ck, &rf.w[i], &ef.w[j]);
            gen_check__compare(&ck, &rf, &rf.w[i++], &ef, &ef.w[j++]);
        }
    }
    code = ck.ndiff ? 1 : 0;
    if (ck.ndiff)
        fprintf(stderr, "streamgate-gen: %zu difference%s between %s (%zu windows) and %s (%zu)\n",
                ck.ndiff, ck.ndiff == 1 ? "" : "s", rf.path, rf.n, ef.path, ef.n);
    else if (!o->quiet)
        fprintf(stderr, "streamgate-gen: %s matches %s: %zu windows\n", rf.path, ef.path, rf.n);
    gen_check__forecast_report(&ck, o->quiet, forecast_json, sizeof(forecast_json));
    if (o->json)
        printf("{\"windows\":%zu,\"expected\":%zu,\"differences\":%zu,\"match\":%s%s}\n", rf.n,
               ef.n, ck.ndiff, ck.ndiff ? "false" : "true", forecast_json);
out:
    gen_check__free(&rf);
    gen_check__free(&ef);
    for (int k = 0; k < ck.nnames; k++)
        free(ck.names[k]);
    return code;
}

/* ---- --check-history ------------------------------------------------------------------------ */

/* GET `path` from the server at `url` (http://host:port), blocking, on a connection of its
 * own. Returns the body (malloc'd, NUL-terminated) and the status in *status, or NULL. */
static char *gen_check__get(const char *url, const char *path, const char *token, int *status)
{
    char host[256], port[16] = "80";
    const char *hp = strncmp(url, "http://", 7) == 0 ? url + 7 : url;
    const char *colon = strchr(hp, ':'), *slash = strchr(hp, '/');
    size_t hlen = colon ? (size_t)(colon - hp) : slash ? (size_t)(slash - hp) : strlen(hp);
    if (hlen == 0 || hlen >= sizeof(host))
        return NULL;
    memcpy(host, hp, hlen);
    host[hlen] = '\0';
    if (colon)
        snprintf(port, sizeof(port), "%.*s", (int)strcspn(colon + 1, "/"), colon + 1);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return NULL;
    int fd = socket(ai->ai_family, ai->ai_socktype, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return NULL;
    }
    freeaddrinfo(ai);
    char req[4096];
    int n = snprintf(
        req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s%s%s\r\n", path,
        host, token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(req) || write(fd, req, (size_t)n) != n) {
        close(fd);
        return NULL;
    }
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap + 1);
    ssize_t got;
    while (buf && (got = read(fd, buf + len, cap - len)) > 0) {
        len += (size_t)got;
        if (len == cap) {
            char *more = realloc(buf, 2 * cap + 1);
            if (!more) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = more;
            cap *= 2;
        }
    }
    close(fd);
    if (!buf)
        return NULL;
    buf[len] = '\0';
    char *body = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/1.%*d %d", status) != 1 || !body) {
        free(buf);
        return NULL;
    }
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

/* One key's values of a field, sorted, from <expect>.values. */
struct gen_cvals {
    char *key, *field;
    double *v;
    size_t n;
};

struct gen_cvalues {
    struct gen_cvals *e;
    size_t n;
};

static int gen_check__cvals_cmp(const void *a, const void *b)
{
    const struct gen_cvals *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->field, y->field);
}

static void gen_check__values_free(struct gen_cvalues *cv)
{
    for (size_t i = 0; i < cv->n; i++) {
        free(cv->e[i].key);
        free(cv->e[i].field);
        free(cv->e[i].v);
    }
    free(cv->e);
    cv->e = NULL;
    cv->n = 0;
}

/* Reads <expect>.values (gen_expect_write_values) into `cv`. Returns 0, 1 when there is no such
 * file, or -1 (a message on stderr) when it cannot be read or a line is not a key's sorted
 * values. */
static int gen_check__load_values(const char *path, struct gen_cvalues *cv)
{
    FILE *f = fopen(path, "rb");
    if (!f && errno == ENOENT)
        return 1;
    if (!f) {
        fprintf(stderr, "streamgate-gen: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    fclose(f);
    char *text = gen_check__read(path);
    if (!text)
        return -1;
    size_t cap = 0, line = 0;
    int rc = 0;
    for (char *p = text, *nl; rc == 0 && *p; p = nl ? nl + 1 : p + strlen(p)) {
        nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        line++;
        if (!*p)
            continue;
        cJSON *doc = cJSON_Parse(p);
        const cJSON *key = cJSON_GetObjectItemCaseSensitive(doc, "key"),
                    *field = cJSON_GetObjectItemCaseSensitive(doc, "field"),
                    *vals = cJSON_GetObjectItemCaseSensitive(doc, "values"), *x;
        struct gen_cvals e = {0};
        rc = cJSON_IsString(key) && cJSON_IsString(field) && cJSON_IsArray(vals) ? 0 : -1;
        if (rc == 0 && cv->n == cap) {
            cap = cap ? cap * 2 : 64;
            struct gen_cvals *more = realloc(cv->e, cap * sizeof(*more));
            rc = more ? 0 : -1;
            cv->e = more ? more : cv->e;
        }
        if (rc == 0) {
            e.key = strdup(key->valuestring);
            e.field = strdup(field->valuestring);
            e.v = malloc(((size_t)cJSON_GetArraySize(vals) + 1) * sizeof(*e.v));
            rc = e.key && e.field && e.v ? 0 : -1;
        }
        const cJSON *list = rc == 0 ? vals : NULL;
        cJSON_ArrayForEach(x, list)
        {
            if (!cJSON_IsNumber(x) || (e.n > 0 && x->valuedouble < e.v[e.n - 1])) {
                rc = -1;
                break;
            }
            e.v[e.n++] = x->valuedouble;
        }
        if (rc == 0)
            cv->e[cv->n++] = e;
        else {
            free(e.key);
            free(e.field);
            free(e.v);
            fprintf(stderr, "streamgate-gen: %s:%zu: not a key's sorted values\n", path, line);
        }
        cJSON_Delete(doc);
    }
    free(text);
    if (rc == 0)
        qsort(cv->e, cv->n, sizeof(*cv->e), gen_check__cvals_cmp);
    return rc;
}

/* A roll-up field's quantile member (p50, p99.9, ...): its q in (0, 1], or 0 when `m` is not one.
 */
static double gen_check__quantile_of(const cJSON *m)
{
    char *end;
    if (!m->string || m->string[0] != 'p' || !isdigit((unsigned char)m->string[1]) ||
        !cJSON_IsNumber(m))
        return 0;
    double pct = strtod(m->string + 1, &end);
    return !*end && pct > 0 && pct <= 100 ? pct / 100 : 0;
}

/* Compares every quantile of roll-up field `fo` (members p50, p99.9, ...) with the exact order
 * statistic of the values `e`, at the rank the server's sketch answers for (floor(q * (n - 1)),
 * as src/stream/ddsketch.c), within DDSketch's 1% relative error. Returns how many it compared. */
static size_t gen_check__quantiles(struct gen_check *ck, const char *key, const char *field,
                                   const cJSON *fo, const struct gen_cvals *e)
{
    size_t compared = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, fo)
    {
        double q = gen_check__quantile_of(m);
        if (q == 0 || e->n == 0)
            continue;
        size_t rank = (size_t)floor(q * (double)(e->n - 1));
        rank = rank < e->n ? rank : e->n - 1;
        double exact = e->v[rank], est = m->valuedouble;
        if (fabs(est - exact) > 0.01 * fabs(exact))
            gen_check__diff(ck,
                            "%s: %s %s %.17g, exact order statistic %.17g (rank %zu of %zu): more "
                            "than 1%% off",
                            key, field, m->string, est, exact, rank, e->n);
        compared++;
    }
    return compared;
}

int gen_check_history(const struct gen_opts *o)
{
    struct gen_check ck = {.nnames = 0};
    struct gen_cfile ef = {.path = o->expect_path};
    struct gen_cvalues cv = {0};
    int code = 2;
    size_t keys = 0, quantiles = 0, unchecked = 0; /* fields with quantiles and no values */
    char vpath[4096];
    snprintf(vpath, sizeof(vpath), "%s.values", o->expect_path);
    if (gen_check__load(&ck, &ef, true) != 0)
        goto out;
    /* The values beside the expectation, for the quantiles: without them, none can be compared,
     * and a roll-up that has quantiles is a difference. */
    int vrc = gen_check__load_values(vpath, &cv);
    if (vrc < 0)
        goto out;
    /* The run's time range: every expected window falls in it. */
    double from = ef.n ? ef.w[0].start : 0, to = 0;
    for (size_t i = 0; i < ef.n; i++) {
        from = ef.w[i].start < from ? ef.w[i].start : from;
        to = ef.w[i].end > to ? ef.w[i].end : to;
    }
    for (size_t i = 0; i < ef.n;) {
        /* One key's windows (sorted by key, then start): folded in time order. */
        size_t j = i;
        double count = 0, f[GEN_CHECK_NAMES][GEN_CHECK_STATS];
        bool seen[GEN_CHECK_NAMES] = {false};
        for (; j < ef.n && strcmp(ef.w[j].key, ef.w[i].key) == 0; j++) {
            count += ef.w[j].count;
            for (int k = 0; k < ef.w[j].nf; k++) {
                const struct gen_cfield *x = &ef.w[j].f[k];
                double *y = f[x->name];
                if (!seen[x->name]) {
                    memcpy(y, x->v, sizeof(x->v));
                    seen[x->name] = true;
                    continue;
                }
                y[0] += x->v[0];
                y[1] += x->v[1];
                y[2] = x->v[2] < y[2] ? x->v[2] : y[2];
                y[3] = x->v[3] > y[3] ? x->v[3] : y[3];
            }
        }
        const char *key = ef.w[i].key;
        char path[2048], enc[1536];
        size_t e = 0;
        for (const char *p = key; *p && e + 4 < sizeof(enc); p++)
            e +=
                (size_t)snprintf(enc + e, sizeof(enc) - e,
                                 isalnum((unsigned char)*p) || strchr("-_.~", *p) ? "%c" : "%%%02X",
                                 (unsigned char)*p);
        snprintf(path, sizeof(path), "/v1/history/%s?from=%.0f&to=%.0f&rollup=true", enc, from, to);
        int status = 0;
        char *body = gen_check__get(o->check_history, path, o->token, &status);
        cJSON *doc = body ? cJSON_Parse(body) : NULL;
        if (!doc || status != 200) {
            gen_check__diff(&ck, "%s: GET %s answered %d: %.300s", key, path, status,
                            body ? body : "(no answer)");
        } else {
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(doc, "count");
            if (!cJSON_IsNumber(c) || c->valuedouble != count)
                gen_check__diff(&ck, "%s: count %.17g, expected %.17g", key,
                                cJSON_IsNumber(c) ? c->valuedouble : NAN, count);
            /* With window.distinct_field id (unique per event), distinct estimates the count. */
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(doc, "distinct");
            double se = 1.04 / sqrt((double)(1ull << (o->distinct_precision & 31)));
            if (cJSON_IsNumber(d) && fabs(d->valuedouble - count) > 3 * se * count)
                gen_check__diff(&ck, "%s: distinct %.0f, expected %.0f within %.2f%%", key,
                                d->valuedouble, count, 300 * se);
            const cJSON *fields = cJSON_GetObjectItemCaseSensitive(doc, "fields");
            for (int n = 0; n < ck.nnames; n++) {
                if (!seen[n])
                    continue;
                const cJSON *fo = cJSON_GetObjectItemCaseSensitive(fields, ck.names[n]);
                for (int s = 0; s < GEN_CHECK_STATS; s++) {
                    const cJSON *v = cJSON_GetObjectItemCaseSensitive(fo, gen_check_stat_names[s]);
                    if (!cJSON_IsNumber(v) || v->valuedouble != f[n][s])
                        gen_check__diff(&ck, "%s: %s %s %.17g, expected %.17g", key, ck.names[n],
                                        gen_check_stat_names[s],
                                        cJSON_IsNumber(v) ? v->valuedouble : NAN, f[n][s]);
                }
                struct gen_cvals want = {.key = (char *)key, .field = ck.names[n]};
                const struct gen_cvals *ve =
                    cv.n ? bsearch(&want, cv.e, cv.n, sizeof(*cv.e), gen_check__cvals_cmp) : NULL;
                if (ve && ve->n != (size_t)f[n][0])
                    gen_check__diff(&ck, "%s: %s has %zu values in %s, %.17g in the expectation",
                                    key, ck.names[n], ve->n, vpath, f[n][0]);
                else if (ve)
                    quantiles += gen_check__quantiles(&ck, key, ck.names[n], fo, ve);
                else if (vrc == 0)
                    gen_check__diff(&ck, "%s: %s has no values in %s", key, ck.names[n], vpath);
                else
                    for (const cJSON *m = fo ? fo->child : NULL; m; m = m->next)
                        if (gen_check__quantile_of(m) > 0) {
                            unchecked++;
                            break;
                        }
            }
        }
        cJSON_Delete(doc);
        free(body);
        keys++;
        i = j;
    }
    if (unchecked) { /* said even past GEN_CHECK_SHOW differences */
        ck.ndiff++;
        fprintf(stderr,
                "streamgate-gen: %zu roll-up field%s quantiles, but there is no %s to check "
                "them against (written by --expect; see --expect-values)\n",
                unchecked, unchecked == 1 ? " has" : "s have", vpath);
    }
    code = ck.ndiff ? 1 : 0;
    if (ck.ndiff)
        fprintf(stderr, "streamgate-gen: %zu difference%s between %s's roll-ups and %s\n", ck.ndiff,
                ck.ndiff == 1 ? "" : "s", o->check_history, ef.path);
    else if (!o->quiet)
        fprintf(stderr,
                "streamgate-gen: %s's roll-ups match %s: %zu keys, %zu windows, %zu quantiles\n",
                o->check_history, ef.path, keys, ef.n, quantiles);
    if (vrc == 1 && !unchecked && !o->quiet)
        fprintf(stderr, "streamgate-gen: no %s: quantiles not compared\n", vpath);
    if (o->json)
        printf(
            "{\"keys\":%zu,\"windows\":%zu,\"quantiles\":%zu,\"differences\":%zu,\"match\":%s}\n",
            keys, ef.n, quantiles, ck.ndiff, ck.ndiff ? "false" : "true");
out:
    gen_check__values_free(&cv);
    gen_check__free(&ef);
    for (int k = 0; k < ck.nnames; k++)
        free(ck.names[k]);
    return code;
}
