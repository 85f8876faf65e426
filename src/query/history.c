/* GET /v1/history: stored window results read back through the Tablestore writer's reader, so
 * a query never blocks the loop (README "Querying stored results").
 *
 * /v1/history/{key}: one key's windows with GetRange on the results table (primary key key,
 * window_start: a key's windows are already in time order), a page at a time, or all of them
 * folded into one roll-up. /v1/history: a time slice across keys through the time index, each
 * shard's range in turn, the windows sorted by time and their rows read with BatchGetRow, or
 * folded into roll-ups per key or of every key. */
#define _GNU_SOURCE /* timegm */
#include "history.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "streamgate/budget.h"
#include "streamgate/buf.h"
#include "streamgate/common.h"
#include "streamgate/config.h"
#include "streamgate/ddsketch.h"
#include "streamgate/hll.h"
#include "streamgate/http_server.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "streamgate/streams.h"
#include "streamgate/tablestore.h"
#include "streamgate/tablestore_reader.h"

#define HQ_DEFAULT_LIMIT 100
#define HQ_MAX_LIMIT     1000
/* Longest query parameter value kept (a page token, a time). */
#define HQ_MAX_PARAM 2048

struct sg_history;

/* One field's roll-up: the windows' statistics combined. */
struct hq_field {
    char name[SG_TS_NAME_MAX_BYTES + 1];
    double count, sum, min, max, mean, m2;
    int64_t first_ws, last_ws;
    double first, last;
    struct sg_ddsketch *sketch; /* NULL until a window brings one */
    size_t sketch_mem;          /* its bytes, as charged to the query */
    bool sketch_lost;           /* a window had quantiles but no sketch: none are shown */
};

/* A roll-up in progress: every window of the range folded in, page after page. */
struct hq_rollup {
    uint64_t windows, count, rows_scanned;
    uint64_t open_windows; /* of them, open windows from memory (live=true) */
    struct hq_field *fields;
    size_t nfields, cap;
    struct sg_hll hll;
    size_t hll_mem; /* the registers' bytes, as charged to the query */
    bool has_distinct, distinct_lost;
};

/* A window found in the time index. */
struct hq_entry {
    int64_t ws;
    size_t key_off; /* in hq_slice.keys */
    size_t key_len;
};

/* live=true with rollup=true and group=key across keys: the roll-up of one key's open windows,
 * its key in hq.open_keys, joined to the key's stored windows when their turn comes. */
struct hq_open_key {
    size_t key_off, key_len;
    struct hq_rollup ru;
};

struct hq;

/* One shard's range of the time index being read. */
struct hq_shard {
    struct hq *q;
    struct sg_ts_read *rd; /* NULL once its range is read */
    int32_t s;
    int32_t got; /* windows of this shard noted for the page */
};

/* A time slice across keys in progress: every shard's range of the time index at once, then the
 * windows' rows from the results table, SG_TS_BATCH_GET_MAX_ROWS at a time. */
struct hq_slice {
    int32_t nshards;
    struct hq_shard *shards;
    int32_t reading; /* shard reads in flight */
    bool ending;     /* being answered: shard reads cancelled now only end */
    int32_t limit;
    bool has_page; /* start every shard at (page_ws, page_key) */
    int64_t page_ws;
    struct sg_buf page_key;
    struct sg_buf keys;
    struct hq_entry *e;
    size_t n, cap;
    size_t fetched, take; /* entries read from the table so far; entries answered with */
    cJSON *doc, *windows;
    /* rollup=true: one aggregate per key ("keys"), or of every key together (group=none). The
     * entries are then read in (key, window_start) order, so a key's windows come together. */
    bool group_none;
    struct sg_buf cur_key; /* the key being rolled up */
};

/* One query in progress: its connection waits for it (sg_http_hold). */
struct hq {
    struct sg_history *h;
    struct hq *prev, *next;
    struct sg_http_conn *conn; /* NULL once the connection has gone */
    struct sg_ts_read *rd;
    int64_t from, to;
    bool desc;
    bool live;                /* live=true: the open windows too, on the pages that hold them */
    struct hq_rollup *rollup; /* rollup=true; NULL: the windows themselves */
    /* live=true with rollup=true: the open windows folded in from memory, (key, window_start)
     * in (key, window_start) order once gathered, whose stored rows (early emissions) the
     * roll-up then skips; their keys are in open_keys. */
    struct hq_entry *open;
    size_t nopen, open_cap;
    struct sg_buf open_keys;
    /* Across keys with group=key: the open windows' roll-ups, one per key in key order; those
     * before okeys_next are answered or joined to their stored windows. */
    struct hq_open_key *okeys;
    size_t nokeys, okeys_cap, okeys_next;
    size_t live_held; /* bytes of the open windows' results in a listing's answer */
    size_t doc_held;  /* bytes of the rest of the answer: its JSON and its text */
    bool has_lo;      /* a page of one key's windows from a token: where it starts */
    int64_t lo_ws;
    struct hq_slice *slice; /* across keys (GET /v1/history); NULL: one key */
    uint64_t start_ns;
    size_t key_len;
    char key[]; /* not NUL-terminated */
};

struct sg_history {
    const struct sg_config *cfg;
    struct sg_ts_reader *reader;
    struct sg_streams *streams;
    struct sg_log *log;
    struct sg_budget *budget;
    size_t budget_held;
    size_t held; /* bytes of the queries in progress */
    struct hq *queries;
    struct sg_histogram *m_latency;
    struct sg_counter *m_max_rows; /* queries refused for query.max_rows */
    struct sg_buf start, end, body, out;
};

static const double latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25,  0.5,    1,     2.5,  5,     10};

int sg_history_create(const struct sg_config *cfg, struct sg_ts_reader *reader,
                      struct sg_streams *streams, struct sg_metrics *metrics, struct sg_log *log,
                      struct sg_budget *budget, struct sg_history **out)
{
    struct sg_history *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->cfg = cfg;
    h->reader = reader;
    h->streams = streams;
    h->log = log;
    h->budget = budget;
    h->m_latency = sg_metrics_histogram(metrics, SG_METRIC_QUERY_SECONDS, NULL, latency_bounds,
                                        SG_ARRAY_SIZE(latency_bounds));
    h->m_max_rows =
        sg_metrics_counter(metrics, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"query_max_rows\"");
    if (!h->m_latency || !h->m_max_rows) {
        free(h);
        return -ENOMEM;
    }
    sg_buf_init(&h->start, 0);
    sg_buf_init(&h->end, 0);
    sg_buf_init(&h->body, 0);
    sg_buf_init(&h->out, 0);
    *out = h;
    return 0;
}

static void hq_account(struct sg_history *h)
{
    if (h->budget)
        sg_budget_set(h->budget, SG_BUDGET_BODIES, &h->budget_held,
                      h->held + h->out.cap + h->body.cap);
}

/* Charges `bytes` more of query q's answer until the query goes. */
static void hq_hold(struct hq *q, size_t bytes)
{
    q->doc_held += bytes;
    q->h->held += bytes;
    hq_account(q->h);
}

static void rollup_clear(struct sg_history *h, struct hq_rollup *ru);

static void hq_free(struct hq *q)
{
    struct sg_history *h = q->h;
    if (q->prev)
        q->prev->next = q->next;
    else
        h->queries = q->next;
    if (q->next)
        q->next->prev = q->prev;
    h->held -= sizeof(*q) + q->key_len;
    if (q->slice) {
        struct hq_slice *sl = q->slice;
        h->held -= sizeof(*sl) + sl->keys.cap + sl->cap * sizeof(*sl->e) +
                   (sl->shards ? (size_t)sl->nshards * sizeof(*sl->shards) : 0);
        sg_buf_free(&sl->keys);
        sg_buf_free(&sl->page_key);
        sg_buf_free(&sl->cur_key);
        free(sl->shards);
        free(sl->e);
        cJSON_Delete(sl->doc);
        free(sl);
    }
    if (q->rollup) {
        rollup_clear(h, q->rollup);
        h->held -= sizeof(*q->rollup);
        free(q->rollup);
    }
    for (size_t i = 0; i < q->nokeys; i++)
        rollup_clear(h, &q->okeys[i].ru);
    h->held -= q->okeys_cap * sizeof(*q->okeys) + q->open_cap * sizeof(*q->open) +
               q->open_keys.cap + q->live_held + q->doc_held;
    free(q->okeys);
    free(q->open);
    sg_buf_free(&q->open_keys);
    hq_account(h);
    free(q);
}

static void hq_cancel(struct hq *q);

void sg_history_destroy(struct sg_history *h)
{
    if (!h)
        return;
    while (h->queries)
        hq_cancel(h->queries); /* answers 503 and frees the query */
    if (h->budget)
        sg_budget_set(h->budget, SG_BUDGET_BODIES, &h->budget_held, 0);
    sg_buf_free(&h->start);
    sg_buf_free(&h->end);
    sg_buf_free(&h->body);
    sg_buf_free(&h->out);
    free(h);
}

/* ---- Answers ----------------------------------------------------------------------------- */

static void answer_error(struct sg_http_conn *conn, struct sg_buf *out, int status,
                         const char *message, const char *extra)
{
    sg_buf_reset(out);
    int rc = sg_buf_append_str(out, "{\"error\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(out, message, strlen(message));
    if (rc == 0)
        rc = sg_buf_append_char(out, '}');
    if (rc != 0)
        sg_http_answer(conn, 500, "{\"error\":\"out of memory\"}", 25, NULL);
    else
        sg_http_answer(conn, status, out->data, out->len, extra);
}

/* cJSON prints a number with 15 significant digits whenever that reads back within an epsilon
 * of it, which can lose the last bit of a sum; answers carry every number exactly instead:
 * integral values as integers, others as the shortest text that reads back as the same double. */
static int exact_numbers(cJSON *item)
{
    char num[48];
    for (cJSON *c = item ? item->child : NULL; c; c = c->next) {
        if (!cJSON_IsNumber(c)) {
            if (exact_numbers(c) != 0)
                return -ENOMEM;
            continue;
        }
        double v = c->valuedouble;
        struct sg_buf b = {.data = num, .cap = sizeof(num), .max = sizeof(num) - 1};
        if (isfinite(v) && v == trunc(v) && fabs(v) < 1e15)
            snprintf(num, sizeof(num), "%" PRId64, (int64_t)v);
        else if (sg_buf_append_double(&b, v) != 0 || sg_buf_append_char(&b, '\0') != 0)
            return -ENOMEM;
        char *raw = strdup(num);
        if (!raw)
            return -ENOMEM;
        c->type = cJSON_Raw;
        c->valuestring = raw;
    }
    return 0;
}

/* The text of an answer (malloc'd), or NULL when out of memory. */
static char *print_exact(cJSON *doc)
{
    return doc && exact_numbers(doc) == 0 ? cJSON_PrintUnformatted(doc) : NULL;
}

/* ---- Parameters -------------------------------------------------------------------------- */

/* The value of query parameter `name` in `url`, percent-decoded into `out` (NUL-terminated).
 * Returns 1 when present, 0 when absent, -1 when malformed or longer than `size` - 1. */
static int param(const char *url, size_t len, const char *name, char *out, size_t size)
{
    const char *q = memchr(url, '?', len), *end = url + len;
    size_t nlen = strlen(name);
    for (const char *p = q ? q + 1 : end; p < end;) {
        const char *stop = memchr(p, '&', (size_t)(end - p));
        stop = stop ? stop : end;
        if ((size_t)(stop - p) >= nlen + 1 && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
            size_t o = 0;
            for (const char *c = p + nlen + 1; c < stop; c++) {
                int v = (unsigned char)*c;
                if (v == '%') {
                    if (stop - c < 3 || sg_hex_digit(c[1]) < 0 || sg_hex_digit(c[2]) < 0)
                        return -1;
                    v = sg_hex_digit(c[1]) * 16 + sg_hex_digit(c[2]);
                    c += 2;
                }
                if (o + 1 >= size)
                    return -1;
                out[o++] = (char)v;
            }
            out[o] = '\0';
            return 1;
        }
        p = stop + 1;
    }
    return 0;
}

/* A time: epoch milliseconds (digits, optionally negative), or RFC 3339
 * (2024-05-06T07:08:09[.123](Z|+hh:mm|-hh:mm)). Returns 0 or -EINVAL. */
static int parse_time(const char *s, int64_t *out)
{
    char *end;
    if (*s && (isdigit((unsigned char)*s) || *s == '-') && !strchr(s, 'T') && !strchr(s, 't')) {
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || *end || end == s)
            return -EINVAL;
        *out = v;
        return 0;
    }
    struct tm tm = {0};
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2d%*1[Tt]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 ||
        n != 19 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
        tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return -EINVAL;
    const char *p = s + n;
    int64_t ms = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; isdigit((unsigned char)*p); p++, digits++)
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
        if (digits == 0)
            return -EINVAL;
        for (; digits < 3; digits++)
            ms *= 10;
    }
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, m = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &m) != 2 || m != 5 || oh > 23 || om > 59)
            return -EINVAL;
        offset = (oh * 60 + om) * 60000LL * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -EINVAL;
    }
    if (*p)
        return -EINVAL;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    *out = (int64_t)t * 1000 + ms - offset;
    return 0;
}

/* ---- Page tokens: the next start primary key, base64url without padding ------------------ */

static int token_encode(struct sg_buf *out, const uint8_t *p, size_t len)
{
    size_t n = 4 * ((len + 2) / 3);
    int rc = sg_buf_reserve(out, n + 1);
    if (rc != 0)
        return rc;
    char *dst = out->data + out->len;
    EVP_EncodeBlock((unsigned char *)dst, p, (int)len);
    while (n > 0 && dst[n - 1] == '=')
        n--;
    for (size_t i = 0; i < n; i++)
        dst[i] = dst[i] == '+' ? '-' : dst[i] == '/' ? '_' : dst[i];
    out->len += n;
    return 0;
}

/* Decodes a token into `out` (the primary key buffer it stands for). -EINVAL when it is not
 * base64url. */
static int token_decode(const char *tok, struct sg_buf *out)
{
    size_t n = strlen(tok);
    if (n == 0 || n % 4 == 1 || n > HQ_MAX_PARAM)
        return -EINVAL;
    char padded[HQ_MAX_PARAM + 4];
    size_t i = 0;
    for (; i < n; i++) {
        char c = tok[i];
        if (!(isalnum((unsigned char)c) || c == '-' || c == '_'))
            return -EINVAL;
        padded[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    size_t pad = (4 - n % 4) % 4;
    for (size_t k = 0; k < pad; k++)
        padded[i++] = '=';
    sg_buf_reset(out);
    if (sg_buf_reserve(out, i) != 0)
        return -ENOMEM;
    int len = EVP_DecodeBlock((unsigned char *)out->data, (unsigned char *)padded, (int)i);
    if (len < 0)
        return -EINVAL;
    out->len = (size_t)len - pad;
    return 0;
}

/* ---- Rows to results --------------------------------------------------------------------- */

/* Splits a statistic's column name `<field>_<stat>` at the statistic, whose name it writes
 * into `stat` (a quantile's p99_9 back to p99.9). False for a column that is not one. */
static bool split_stat(const char *name, size_t len, size_t *field_len, char *stat, size_t size)
{
    static const char *const stats[] = {"count", "sum",  "min",      "max",     "mean", "stddev",
                                        "first", "last", "forecast", "anomaly", "next"};
    for (size_t i = 0; i < SG_ARRAY_SIZE(stats); i++) {
        size_t sl = strlen(stats[i]);
        if (len > sl + 1 && name[len - sl - 1] == '_' &&
            memcmp(name + len - sl, stats[i], sl) == 0) {
            *field_len = len - sl - 1;
            snprintf(stat, size, "%s", stats[i]);
            return true;
        }
    }
    /* A quantile: _p<digits>, or _p<digits>_<digits> for p99.9. */
    size_t e = len, digits2 = 0, digits1 = 0;
    while (e > 0 && isdigit((unsigned char)name[e - 1]))
        e--, digits2++;
    size_t frac_at = 0;
    if (digits2 && e > 1 && name[e - 1] == '_' && isdigit((unsigned char)name[e - 2])) {
        frac_at = e - 1;
        e--;
        while (e > 0 && isdigit((unsigned char)name[e - 1]))
            e--, digits1++;
    } else {
        digits1 = digits2;
        digits2 = 0;
    }
    if (!digits1 || e < 3 || name[e - 1] != 'p' || name[e - 2] != '_' || len - e + 2 >= size)
        return false;
    *field_len = e - 2;
    size_t o = 0;
    for (size_t i = e - 1; i < len; i++)
        stat[o++] = i == frac_at ? '.' : name[i];
    stat[o] = '\0';
    return true;
}

static cJSON *row_result(const struct sg_ts_row *row)
{
    cJSON *res = cJSON_CreateObject(), *fields = cJSON_CreateObject();
    if (!res || !fields) {
        cJSON_Delete(res);
        cJSON_Delete(fields);
        return NULL;
    }
    const struct sg_ts_value *k = &row->pk[0].value, *ws = &row->pk[1].value;
    char name[SG_TS_NAME_MAX_BYTES + 1], stat[64];
    snprintf(name, sizeof(name), "%.*s", (int)k->bytes.len, (const char *)k->bytes.ptr);
    cJSON_AddStringToObject(res, "key", name);
    cJSON_AddNumberToObject(res, "window_start", (double)ws->i);
    cJSON *window_end = NULL, *count = NULL, *distinct = NULL, *final = NULL;
    for (size_t i = 0; i < row->attr_count; i++) {
        const struct sg_ts_column *c = &row->attrs[i];
        const struct sg_ts_value *v = &c->value;
        snprintf(name, sizeof(name), "%.*s", (int)c->name_len, c->name);
        size_t flen;
        if (v->type == SG_TS_INTEGER && strcmp(name, "window_end") == 0)
            window_end = cJSON_CreateNumber((double)v->i);
        else if (v->type == SG_TS_INTEGER && strcmp(name, "count") == 0)
            count = cJSON_CreateNumber((double)v->i);
        else if (v->type == SG_TS_INTEGER && strcmp(name, "distinct") == 0)
            distinct = cJSON_CreateNumber((double)v->i);
        else if (v->type == SG_TS_BOOLEAN && strcmp(name, "final") == 0)
            final = cJSON_CreateBool(v->b);
        else if (v->type == SG_TS_DOUBLE &&
                 split_stat(name, c->name_len, &flen, stat, sizeof(stat))) {
            name[flen] = '\0';
            cJSON *f = cJSON_GetObjectItemCaseSensitive(fields, name);
            if (!f)
                f = cJSON_AddObjectToObject(fields, name);
            if (f && strcmp(stat, "count") == 0)
                cJSON_AddNumberToObject(f, stat, v->d);
            else if (f)
                cJSON_AddNumberToObject(f, stat, v->d);
        }
        /* shard, the sketches and models are for merging and restoring, not for showing. */
    }
    if (window_end)
        cJSON_AddItemToObject(res, "window_end", window_end);
    if (count)
        cJSON_AddItemToObject(res, "count", count);
    cJSON_AddItemToObject(res, "fields", fields);
    if (distinct)
        cJSON_AddItemToObject(res, "distinct", distinct);
    cJSON_AddItemToObject(res, "final", final ? final : cJSON_CreateBool(false));
    return res;
}

/* ---- Roll-ups ----------------------------------------------------------------------------- */

static struct hq_field *rollup_field(struct sg_history *h, struct hq_rollup *ru, const char *name,
                                     size_t len)
{
    for (size_t i = 0; i < ru->nfields; i++)
        if (strlen(ru->fields[i].name) == len && memcmp(ru->fields[i].name, name, len) == 0)
            return &ru->fields[i];
    if (ru->nfields == ru->cap) {
        size_t cap = ru->cap ? ru->cap * 2 : 8;
        struct hq_field *f = realloc(ru->fields, cap * sizeof(*f));
        if (!f)
            return NULL;
        h->held += (cap - ru->cap) * sizeof(*f);
        ru->fields = f;
        ru->cap = cap;
    }
    struct hq_field *f = &ru->fields[ru->nfields++];
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%.*s", (int)len, name);
    f->first_ws = INT64_MAX;
    f->last_ws = INT64_MIN;
    return f;
}

/* One window's statistics of a field, as stored. */
struct hq_window_field {
    double count, sum, min, max, mean, stddev, first, last;
    bool has_min, has_max, has_mean, has_stddev, has_first, has_last, has_quantiles;
    const void *sketch;
    size_t sketch_len;
};

/* Folds the registers of a window's distinct count (their stored form) into the roll-up.
 * Returns 0 or -EINVAL (unreadable registers). */
static int rollup_hll(struct sg_history *h, struct hq_rollup *ru, const void *p, size_t len)
{
    struct sg_hll one;
    if (sg_hll_decode(p, len, &one) != 0)
        return -EINVAL;
    int rc = ru->hll.registers ? sg_hll_merge(&ru->hll, &one) : 0;
    if (!ru->hll.registers)
        ru->hll = one;
    else
        sg_hll_free(&one);
    if (rc != 0)
        ru->distinct_lost = true; /* another precision: cannot merge */
    ru->has_distinct = true;
    size_t mem = (size_t)1 << ru->hll.precision;
    h->held += mem - ru->hll_mem;
    ru->hll_mem = mem;
    return 0;
}

/* Folds one window's statistics of field `name` (starting at `ws`) into the roll-up. The mean
 * and variance combine by the parallel algorithm (Chan, Golub, LeVeque): M2 = n * stddev^2 per
 * part, and for the union M2 = M2a + M2b + delta^2 * na * nb / n. Returns 0, -ENOMEM, or
 * -EINVAL (an unreadable sketch). */
static int rollup_field_fold(struct sg_history *h, struct hq_rollup *ru, const char *name,
                             size_t len, int64_t ws, const struct hq_window_field *w)
{
    struct hq_field *f = rollup_field(h, ru, name, len);
    if (!f)
        return -ENOMEM;
    if (w->count <= 0)
        return 0;
    double n = f->count + w->count, delta = w->mean - f->mean;
    double m2w = w->has_stddev ? w->count * w->stddev * w->stddev : 0;
    if (f->count == 0) {
        f->mean = w->mean;
        f->m2 = m2w;
        f->min = w->min;
        f->max = w->max;
    } else {
        f->mean += delta * w->count / n;
        f->m2 += m2w + delta * delta * f->count * w->count / n;
        f->min = w->has_min && w->min < f->min ? w->min : f->min;
        f->max = w->has_max && w->max > f->max ? w->max : f->max;
    }
    f->count = n;
    f->sum += w->sum;
    if (w->has_first && ws < f->first_ws)
        f->first_ws = ws, f->first = w->first;
    if (w->has_last && ws > f->last_ws)
        f->last_ws = ws, f->last = w->last;
    if (w->sketch) {
        struct sg_ddsketch *sk = NULL;
        if (sg_ddsketch_decode(w->sketch, w->sketch_len, &sk) != 0)
            return -EINVAL;
        int rc = 0;
        if (!f->sketch)
            f->sketch = sk;
        else {
            rc = sg_ddsketch_merge(f->sketch, sk);
            sg_ddsketch_destroy(sk);
        }
        size_t mem = sg_ddsketch_memory(f->sketch);
        h->held += mem - f->sketch_mem;
        f->sketch_mem = mem;
        if (rc == -ENOMEM)
            return rc;
        f->sketch_lost |= rc != 0;
    } else if (w->has_quantiles) {
        f->sketch_lost = true;
    }
    return 0;
}

/* Folds one stored window into the roll-up. Returns 0, -ENOMEM, or -EINVAL (an unreadable
 * sketch). */
static int rollup_window(struct sg_history *h, struct hq_rollup *ru, const struct sg_ts_row *row)
{
    int64_t ws = row->pk[1].value.i;
    ru->windows++;
    /* Group this row's columns by field: a row has at most a few hundred. */
    for (size_t i = 0; i < row->attr_count; i++) {
        const struct sg_ts_column *c = &row->attrs[i];
        const struct sg_ts_value *v = &c->value;
        if (c->name_len == 5 && memcmp(c->name, "count", 5) == 0 && v->type == SG_TS_INTEGER)
            ru->count += (uint64_t)v->i;
        if (c->name_len == 12 && memcmp(c->name, "distinct_hll", 12) == 0 &&
            v->type == SG_TS_BLOB && rollup_hll(h, ru, v->bytes.ptr, v->bytes.len) != 0)
            return -EINVAL;
    }
    for (size_t i = 0; i < row->attr_count; i++) {
        const struct sg_ts_column *c = &row->attrs[i];
        char stat[64];
        size_t flen;
        if (c->value.type != SG_TS_DOUBLE ||
            !split_stat(c->name, c->name_len, &flen, stat, sizeof(stat)) ||
            strcmp(stat, "count") != 0)
            continue;
        /* A field of this window: gather its statistics. */
        struct hq_window_field w = {.count = c->value.d};
        for (size_t j = 0; j < row->attr_count; j++) {
            const struct sg_ts_column *d = &row->attrs[j];
            char st[64];
            size_t fl;
            if (d->name_len == flen + 7 && memcmp(d->name, c->name, flen) == 0 &&
                memcmp(d->name + flen, "_sketch", 7) == 0 && d->value.type == SG_TS_BLOB) {
                w.sketch = d->value.bytes.ptr;
                w.sketch_len = d->value.bytes.len;
                continue;
            }
            if (d->value.type != SG_TS_DOUBLE ||
                !split_stat(d->name, d->name_len, &fl, st, sizeof(st)) || fl != flen ||
                memcmp(d->name, c->name, flen) != 0)
                continue;
            double x = d->value.d;
            if (strcmp(st, "sum") == 0)
                w.sum = x;
            else if (strcmp(st, "min") == 0)
                w.min = x, w.has_min = true;
            else if (strcmp(st, "max") == 0)
                w.max = x, w.has_max = true;
            else if (strcmp(st, "mean") == 0)
                w.mean = x, w.has_mean = true;
            else if (strcmp(st, "stddev") == 0)
                w.stddev = x, w.has_stddev = true;
            else if (strcmp(st, "first") == 0)
                w.first = x, w.has_first = true;
            else if (strcmp(st, "last") == 0)
                w.last = x, w.has_last = true;
            else if (st[0] == 'p')
                w.has_quantiles = true;
        }
        int rc = rollup_field_fold(h, ru, c->name, flen, ws, &w);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Folds an open window from memory into the roll-up as a stored one is folded: its sketches
 * and registers go through their stored form (in `scratch`), so both merge the same way.
 * Returns 0, -ENOMEM, or -EINVAL. */
static int rollup_open_window(struct sg_history *h, struct hq_rollup *ru,
                              const struct sg_window_result *res, struct sg_buf *scratch)
{
    ru->windows++;
    ru->open_windows++;
    ru->count += res->count;
    sg_buf_reset(scratch);
    if (res->has_distinct && res->hll &&
        (sg_hll_encode(res->hll, scratch) != 0 ||
         rollup_hll(h, ru, scratch->data, scratch->len) != 0))
        return -ENOMEM;
    for (size_t i = 0; i < res->nfields; i++) {
        const struct sg_result_field *rf = &res->fields[i];
        struct hq_window_field w = {.count = (double)rf->count,
                                    .sum = rf->sum.value,
                                    .min = rf->min.value,
                                    .max = rf->max.value,
                                    .mean = rf->mean.value,
                                    .stddev = rf->stddev.value,
                                    .first = rf->first.value,
                                    .last = rf->last.value,
                                    .has_min = rf->min.has_value,
                                    .has_max = rf->max.has_value,
                                    .has_mean = rf->mean.has_value,
                                    .has_stddev = rf->stddev.has_value,
                                    .has_first = rf->first.has_value,
                                    .has_last = rf->last.has_value,
                                    .has_quantiles = rf->nquantiles > 0};
        sg_buf_reset(scratch);
        if (rf->sketch) {
            if (sg_ddsketch_encode(rf->sketch, scratch) != 0)
                return -ENOMEM;
            w.sketch = scratch->data;
            w.sketch_len = scratch->len;
        }
        int rc = rollup_field_fold(h, ru, rf->name, rf->name_len, res->window_start, &w);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Empties a roll-up for the next key. */
static void rollup_clear(struct sg_history *h, struct hq_rollup *ru)
{
    for (size_t i = 0; i < ru->nfields; i++) {
        sg_ddsketch_destroy(ru->fields[i].sketch);
        h->held -= ru->fields[i].sketch_mem;
    }
    sg_hll_free(&ru->hll);
    h->held -= ru->cap * sizeof(*ru->fields) + ru->hll_mem;
    free(ru->fields);
    memset(ru, 0, sizeof(*ru));
}

/* The roll-up as a result: {"key":..,"from":..,"to":..,"windows":N,"count":..,"fields":{..},
 * "distinct":..}. */
static cJSON *rollup_render(const struct sg_history *h, const struct hq_rollup *ru,
                            const char *key_bytes, size_t key_len, int64_t from, int64_t to)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *fields = doc ? cJSON_CreateObject() : NULL;
    if (!fields) {
        cJSON_Delete(doc);
        return NULL;
    }
    char key[SG_TS_PK_VALUE_MAX_BYTES + 1];
    snprintf(key, sizeof(key), "%.*s", (int)key_len, key_bytes ? key_bytes : "");
    if (key_bytes) /* NULL: every key merged (group=none) */
        cJSON_AddStringToObject(doc, "key", key);
    cJSON_AddNumberToObject(doc, "from", (double)from);
    cJSON_AddNumberToObject(doc, "to", (double)to);
    cJSON_AddNumberToObject(doc, "windows", (double)ru->windows);
    cJSON_AddNumberToObject(doc, "count", (double)ru->count);
    for (size_t i = 0; i < ru->nfields; i++) {
        const struct hq_field *f = &ru->fields[i];
        cJSON *o = cJSON_AddObjectToObject(fields, f->name);
        if (!o || f->count <= 0)
            continue;
        cJSON_AddNumberToObject(o, "count", f->count);
        cJSON_AddNumberToObject(o, "sum", f->sum);
        cJSON_AddNumberToObject(o, "min", f->min);
        cJSON_AddNumberToObject(o, "max", f->max);
        cJSON_AddNumberToObject(o, "mean", f->mean);
        cJSON_AddNumberToObject(o, "stddev", sqrt(f->m2 / f->count));
        if (f->first_ws != INT64_MAX)
            cJSON_AddNumberToObject(o, "first", f->first);
        if (f->last_ws != INT64_MIN)
            cJSON_AddNumberToObject(o, "last", f->last);
        const struct sg_strlist *qs = &h->cfg->window_quantiles;
        for (size_t k = 0; f->sketch && !f->sketch_lost && k < qs->count; k++) {
            double qv, v;
            if (sg_parse_quantile(qs->items[k], &qv) != 0)
                continue;
            v = sg_ddsketch_quantile(f->sketch, qv);
            /* As a live result does: the true quantile lies within [min, max]. */
            v = v < f->min ? f->min : v > f->max ? f->max : v;
            cJSON_AddNumberToObject(o, qs->items[k], v);
        }
    }
    cJSON_AddItemToObject(doc, "fields", fields);
    if (ru->has_distinct && !ru->distinct_lost)
        cJSON_AddNumberToObject(doc, "distinct", (double)llround(sg_hll_estimate(&ru->hll)));
    return doc;
}

/* ---- The query --------------------------------------------------------------------------- */

static void observe(struct hq *q)
{
    sg_histogram_observe(q->h->m_latency, (double)(uv_hrtime() - q->start_ns) / 1e9);
}

static void rollup_page(struct hq *q, struct sg_ts_range_result *res);

static int64_t ws_of(const cJSON *w)
{
    return (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(w, "window_start"));
}

/* A statistic as a number, or null where the value is not finite. */
static cJSON *stat_json(struct sg_result_stat v)
{
    return v.has_value ? cJSON_CreateNumber(v.value) : cJSON_CreateNull();
}

/* An open window's result as the live query shows it, with "final":false. */
static cJSON *open_result(const struct sg_window_result *res)
{
    char name[SG_TS_PK_VALUE_MAX_BYTES + 1];
    cJSON *doc = cJSON_CreateObject(), *fields = cJSON_CreateObject();
    if (!doc || !fields) {
        cJSON_Delete(doc);
        cJSON_Delete(fields);
        return NULL;
    }
    snprintf(name, sizeof(name), "%.*s", (int)res->key_len, res->key);
    cJSON_AddStringToObject(doc, "key", name);
    cJSON_AddNumberToObject(doc, "window_start", (double)res->window_start);
    cJSON_AddNumberToObject(doc, "window_end", (double)res->window_end);
    cJSON_AddNumberToObject(doc, "count", (double)res->count);
    for (size_t i = 0; i < res->nfields; i++) {
        const struct sg_result_field *rf = &res->fields[i];
        snprintf(name, sizeof(name), "%.*s", (int)rf->name_len, rf->name);
        cJSON *o = cJSON_AddObjectToObject(fields, name);
        if (!o)
            break;
        cJSON_AddNumberToObject(o, "count", (double)rf->count);
        const struct sg_result_stat *stats[] = {&rf->sum,    &rf->min,   &rf->max, &rf->mean,
                                                &rf->stddev, &rf->first, &rf->last};
        static const char *const names[] = {"sum", "min", "max", "mean", "stddev", "first", "last"};
        for (size_t k = 0; k < SG_ARRAY_SIZE(names); k++)
            cJSON_AddItemToObject(o, names[k], stat_json(*stats[k]));
        for (size_t k = 0; k < rf->nquantiles; k++)
            cJSON_AddItemToObject(o, rf->quantiles[k].name, stat_json(rf->quantiles[k].value));
        if (rf->predicted) {
            cJSON_AddItemToObject(o, "forecast", stat_json(rf->forecast));
            cJSON_AddItemToObject(o, "anomaly", stat_json(rf->anomaly));
            cJSON_AddItemToObject(o, "next", stat_json(rf->next));
        }
    }
    cJSON_AddItemToObject(doc, "fields", fields);
    if (res->has_distinct)
        cJSON_AddNumberToObject(doc, "distinct", (double)res->distinct);
    cJSON_AddBoolToObject(doc, "final", false);
    return doc;
}

/* Orders keys as Tablestore does: by their bytes, a key before those it begins. */
static int key_cmp(const char *a, size_t a_len, const char *b, size_t b_len)
{
    size_t n = a_len < b_len ? a_len : b_len;
    int c = n ? memcmp(a, b, n) : 0;
    return c ? c : (a_len > b_len) - (a_len < b_len);
}

/* Bytes a result's JSON holds: its nodes and their strings. */
static size_t json_bytes(const cJSON *item)
{
    size_t n = sizeof(*item) + (item->string ? strlen(item->string) + 1 : 0) +
               (item->valuestring ? strlen(item->valuestring) + 1 : 0);
    for (const cJSON *c = item->child; c; c = c->next)
        n += json_bytes(c);
    return n;
}

/* Prints query q's answer `doc` (NULL: out of memory), charging the text, and the tree too when
 * `tree` (one built whole, not charged as it grew), until the query goes. */
static char *hq_print(struct hq *q, cJSON *doc, bool tree)
{
    if (doc && tree)
        hq_hold(q, json_bytes(doc));
    char *text = print_exact(doc);
    if (text)
        hq_hold(q, strlen(text) + 1);
    return text;
}

/* A place in a listing: a window (window_start, key). */
struct hq_pos {
    int64_t ws;
    const char *key;
    size_t key_len;
};

/* The order of (ws, key) against `p` in a listing: by window_start then key, newest first when
 * `desc`. */
static int pos_cmp(int64_t ws, const char *key, size_t key_len, const struct hq_pos *p, bool desc)
{
    int c = ws != p->ws ? (ws < p->ws ? -1 : 1) : key_cmp(key, key_len, p->key, p->key_len);
    return desc ? -c : c;
}

/* What a walk over the open windows gathers: the results in [from, to) and in the page's span
 * [lo, hi) (either NULL: no bound), or (roll-ups) their numbers folded in. */
struct hq_open {
    struct hq *q;
    const struct hq_pos *lo, *hi;
    cJSON **items;
    size_t n, cap;
};

/* Counts an open window of the range and the page against query.max_rows: 0 to take it, 1 to
 * pass it by, or -E2BIG. */
static int open_take(struct hq_open *o, const struct sg_window_result *res)
{
    int64_t ws = res->window_start;
    if (ws < o->q->from || ws >= o->q->to ||
        (o->lo && pos_cmp(ws, res->key, res->key_len, o->lo, o->q->desc) < 0) ||
        (o->hi && pos_cmp(ws, res->key, res->key_len, o->hi, o->q->desc) >= 0))
        return 1;
    if (o->n >= (size_t)o->q->h->cfg->query_max_rows)
        return -E2BIG;
    return 0;
}

static int on_open_result(void *arg, const struct sg_window_result *res)
{
    struct hq_open *o = arg;
    int rc = open_take(o, res);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    struct sg_history *h = o->q->h;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        cJSON **items = realloc(o->items, cap * sizeof(*items));
        if (!items)
            return -ENOMEM;
        h->held += (cap - o->cap) * sizeof(*items); /* until add_live is done with them */
        o->items = items;
        o->cap = cap;
    }
    if (!(o->items[o->n] = open_result(res)))
        return -ENOMEM;
    /* The result stays in the answer until it is sent. */
    size_t bytes = json_bytes(o->items[o->n++]);
    o->q->live_held += bytes;
    h->held += bytes;
    return 0;
}

/* The roll-up an open window of `key` goes into: the query's, or (group=key across keys) its
 * key's own, made at the key's first open window; `key_off` is where open_keys holds the key.
 * The engine hands a key's open windows one after the other, so a key's roll-up is the last
 * one made or a new one. NULL when out of memory. */
static struct hq_rollup *open_rollup(struct hq *q, const char *key, size_t key_len, size_t key_off)
{
    if (!q->slice || q->slice->group_none)
        return q->rollup;
    struct hq_open_key *last = q->nokeys ? &q->okeys[q->nokeys - 1] : NULL;
    if (last && key_cmp(q->open_keys.data + last->key_off, last->key_len, key, key_len) == 0)
        return &last->ru;
    if (q->nokeys == q->okeys_cap) {
        size_t cap = q->okeys_cap ? q->okeys_cap * 2 : 8;
        struct hq_open_key *ok = realloc(q->okeys, cap * sizeof(*ok));
        if (!ok)
            return NULL;
        q->h->held += (cap - q->okeys_cap) * sizeof(*ok);
        q->okeys = ok;
        q->okeys_cap = cap;
    }
    struct hq_open_key *ok = &q->okeys[q->nokeys++];
    *ok = (struct hq_open_key){.key_off = key_off, .key_len = key_len};
    return &ok->ru;
}

static int on_open_fold(void *arg, const struct sg_window_result *res)
{
    struct hq_open *o = arg;
    struct hq *q = o->q;
    int rc = open_take(o, res);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    if (q->nopen == q->open_cap) {
        size_t cap = q->open_cap ? q->open_cap * 2 : 8;
        struct hq_entry *e = realloc(q->open, cap * sizeof(*e));
        if (!e)
            return -ENOMEM;
        q->h->held += (cap - q->open_cap) * sizeof(*e);
        q->open = e;
        q->open_cap = cap;
    }
    struct hq_entry *e = &q->open[q->nopen];
    *e = (struct hq_entry){
        .ws = res->window_start, .key_off = q->open_keys.len, .key_len = res->key_len};
    size_t before = q->open_keys.cap;
    rc = sg_buf_append(&q->open_keys, res->key, res->key_len);
    q->h->held += q->open_keys.cap - before;
    if (rc != 0)
        return -ENOMEM;
    q->nopen++;
    o->n++;
    struct hq_rollup *ru = open_rollup(q, res->key, res->key_len, e->key_off);
    return ru ? rollup_open_window(q->h, ru, res, &q->h->out) : -ENOMEM;
}

/* Orders results by (window_start, key), newest first when *arg is true. */
static int result_cmp(const void *a, const void *b, void *arg)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    int64_t wx = ws_of(x), wy = ws_of(y);
    int c = wx != wy ? (wx < wy ? -1 : 1)
                     : strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x, "key")),
                              cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(y, "key")));
    return *(const bool *)arg ? -c : c;
}

/* live=true: the open windows in [from, to) of the query's key (of every key across keys),
 * from memory, marked "final":false and merged into `windows` in its order; each takes the place
 * of a stored early emission of the same window. A page takes those of its span: from where it
 * starts (`lo`, its token; NULL: the first page) to where the next one starts (`hi`; NULL: the
 * last page), so that every open window comes once over the pages, in order. Returns 0,
 * -ENOMEM, or -E2BIG (more than query.max_rows open windows). */
static int add_live(struct sg_history *h, struct hq *q, cJSON *windows, const struct hq_pos *lo,
                    const struct hq_pos *hi)
{
    struct hq_open o = {.q = q, .lo = lo, .hi = hi};
    int rc = sg_streams_open_windows(h->streams, q->slice ? NULL : q->key, q->key_len,
                                     on_open_result, &o);
    size_t ns = (size_t)cJSON_GetArraySize(windows);
    cJSON **stored = rc == 0 && ns && o.n ? malloc(ns * sizeof(*stored)) : NULL;
    if (rc == 0 && ns && o.n && !stored)
        rc = -ENOMEM;
    size_t arrays = o.cap * sizeof(*o.items) + (stored ? ns * sizeof(*stored) : 0);
    h->held += stored ? ns * sizeof(*stored) : 0;
    hq_account(h); /* the most the listing holds: the results and both arrays */
    if (rc == 0 && o.n > 0) {
        qsort_r(o.items, o.n, sizeof(*o.items), result_cmp, &q->desc);
        for (size_t i = 0; i < ns; i++)
            stored[i] = cJSON_DetachItemFromArray(windows, 0);
        size_t i = 0, j = 0;
        while (i < ns || j < o.n) {
            int c = i == ns ? 1 : j == o.n ? -1 : result_cmp(&stored[i], &o.items[j], &q->desc);
            if (c == 0) /* memory wins over a stored early emission */
                cJSON_Delete(stored[i++]);
            cJSON_AddItemToArray(windows, c < 0 ? stored[i++] : o.items[j++]);
        }
        o.n = 0;
    }
    for (size_t i = 0; i < o.n; i++)
        cJSON_Delete(o.items[i]);
    free(o.items);
    free(stored);
    h->held -= arrays;
    return rc;
}

/* The 422 of a query that would hold more than query.max_rows windows. */
static void answer_too_many(struct sg_history *h, struct sg_http_conn *conn, const char *what)
{
    char why[256];
    sg_counter_inc(h->m_max_rows);
    snprintf(why, sizeof(why),
             "%s more than query.max_rows (%" PRId64
             ") windows: narrow the range or raise the option",
             what, h->cfg->query_max_rows);
    answer_error(conn, &h->out, 422, why, NULL);
}

/* The window_start of a results table primary key (key, window_start). */
static bool pk_ws(const void *pk, size_t len, int64_t *ws)
{
    struct sg_ts_rows rows;
    if (sg_ts_pb_decode(pk, len, SG_TS_DECODE_SINGLE, &rows, NULL, 0) != 0)
        return false;
    const struct sg_ts_row *r = &rows.rows[0];
    bool ok = r->pk_count == 2 && r->pk[1].value.type == SG_TS_INTEGER;
    *ws = ok ? r->pk[1].value.i : 0;
    sg_ts_rows_free(&rows);
    return ok;
}

static void on_range(void *arg, enum sg_ts_read_outcome outcome, const char *code,
                     const char *message, const void *body, size_t len)
{
    struct hq *q = arg;
    struct sg_history *h = q->h;
    struct sg_http_conn *conn = q->conn;
    char why[768];
    q->rd = NULL;
    if (!conn) { /* the client has gone */
        hq_free(q);
        return;
    }
    if ((!q->rollup && !q->slice) || outcome != SG_TS_READ_OK)
        observe(q);
    if (outcome != SG_TS_READ_OK) {
        int status = outcome == SG_TS_READ_REFUSED ? 502 : 503;
        snprintf(why, sizeof(why), "%s: %s %s",
                 outcome == SG_TS_READ_REFUSED     ? "Tablestore refused the read"
                 : outcome == SG_TS_READ_CANCELLED ? "the query was cancelled (shutting down)"
                                                   : "Tablestore is busy or unreachable "
                                                     "(retried for query.timeout)",
                 code, message);
        answer_error(conn, &h->out, status, why, status == 503 ? "Retry-After: 1\r\n" : NULL);
        hq_free(q);
        return;
    }
    struct sg_ts_range_result res;
    char err[256] = "";
    if (sg_ts_get_range_parse(body, len, &res, err, sizeof(err)) != 0) {
        snprintf(why, sizeof(why), "unreadable GetRange answer: %s", err);
        answer_error(conn, &h->out, 502, why, NULL);
        hq_free(q);
        return;
    }
    if (q->rollup) {
        rollup_page(q, &res);
        return;
    }
    cJSON *doc = cJSON_CreateObject(), *windows = cJSON_AddArrayToObject(doc, "windows");
    bool ok = doc && windows;
    for (size_t i = 0; ok && i < res.rows.row_count; i++) {
        const struct sg_ts_row *row = &res.rows.rows[i];
        cJSON *w = NULL;
        if (row->pk_count == 2 && row->pk[0].value.type == SG_TS_STRING &&
            row->pk[1].value.type == SG_TS_INTEGER)
            w = row_result(row);
        ok = w && cJSON_AddItemToArray(windows, w);
    }
    if (doc)
        hq_hold(q, json_bytes(doc)); /* the stored windows; add_live charges its own */
    sg_buf_reset(&h->out);
    if (ok && res.next_start)
        ok = token_encode(&h->out, res.next_start, res.next_start_len) == 0 &&
             sg_buf_append_char(&h->out, '\0') == 0;
    if (ok) {
        cJSON *next = res.next_start ? cJSON_CreateString(h->out.data) : cJSON_CreateNull();
        ok = next && cJSON_AddItemToObject(doc, "next_page", next);
    }
    int lrc = 0;
    if (ok && q->live) {
        /* This page's span: from its token (if any) to the next page's start (if any). */
        struct hq_pos lo = {q->lo_ws, q->key, q->key_len}, hi = {0, q->key, q->key_len};
        bool has_hi = res.next_start && pk_ws(res.next_start, res.next_start_len, &hi.ws);
        lrc = add_live(h, q, windows, q->has_lo ? &lo : NULL, has_hi ? &hi : NULL);
    }
    sg_ts_range_result_free(&res);
    char *text = ok && lrc == 0 ? hq_print(q, doc, false) : NULL;
    cJSON_Delete(doc);
    if (lrc == -E2BIG) {
        answer_too_many(h, conn, "live=true would add");
    } else if (!text) {
        answer_error(conn, &h->out, 500, "out of memory", NULL);
    } else {
        sg_http_answer(conn, 200, text, strlen(text), NULL);
        free(text);
    }
    hq_free(q);
}

static int encode_pk(struct sg_buf *out, const char *key, size_t key_len, int64_t ws);

/* Whether the roll-up took the window of `key` starting at `ws` from memory (live=true): its
 * stored row, an early emission, is then not folded in again. */
static bool is_open(const struct hq *q, const char *key, size_t key_len, int64_t ws)
{
    size_t lo = 0, hi = q->nopen;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct hq_entry *e = &q->open[mid];
        int c = key_cmp(q->open_keys.data + e->key_off, e->key_len, key, key_len);
        c = c ? c : (e->ws > ws) - (e->ws < ws);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Marks a live roll-up: open windows from memory are in it, and how many. */
static void live_marks(cJSON *doc, uint64_t open_windows)
{
    if (doc) {
        cJSON_AddBoolToObject(doc, "live", true);
        cJSON_AddNumberToObject(doc, "open_windows", (double)open_windows);
    }
}

/* A roll-up's page: fold its windows in, then read the next page or answer. */
static void rollup_page(struct hq *q, struct sg_ts_range_result *res)
{
    struct sg_history *h = q->h;
    struct sg_http_conn *conn = q->conn;
    struct hq_rollup *ru = q->rollup;
    char why[256];
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < res->rows.row_count; i++) {
        const struct sg_ts_row *row = &res->rows.rows[i];
        if (++ru->rows_scanned > (uint64_t)h->cfg->query_max_rows) {
            rc = -E2BIG;
            break;
        }
        if (row->pk_count == 2 && row->pk[1].value.type == SG_TS_INTEGER &&
            !is_open(q, q->key, q->key_len, row->pk[1].value.i))
            rc = rollup_window(h, ru, row);
    }
    hq_account(h);
    if (rc == 0 && res->next_start) {
        /* The next page, from where this one stopped to the same end. */
        int erc = encode_pk(&h->end, q->key, q->key_len, q->to);
        struct sg_ts_get_range gr = {.table = sg_ts_reader_results_table(h->reader),
                                     .direction = SG_TS_FORWARD,
                                     .start = res->next_start,
                                     .start_len = res->next_start_len,
                                     .end = h->end.data,
                                     .end_len = h->end.len};
        sg_buf_reset(&h->body);
        if (erc == 0)
            erc = sg_ts_get_range_build(&h->body, &gr, NULL, 0);
        sg_ts_range_result_free(res);
        uint64_t spent_ms = (uv_hrtime() - q->start_ns) / 1000000;
        uint64_t timeout = h->cfg->query_timeout_ms;
        if (erc == 0 && spent_ms < timeout &&
            sg_ts_reader_call(h->reader, "GetRange", h->body.data, h->body.len, timeout - spent_ms,
                              on_range, q, &q->rd) == 0)
            return;
        observe(q);
        answer_error(conn, &h->out, 503,
                     "Tablestore is busy or unreachable (retried for query.timeout)",
                     "Retry-After: 1\r\n");
        hq_free(q);
        return;
    }
    sg_ts_range_result_free(res);
    observe(q);
    if (rc == -E2BIG) {
        sg_counter_inc(h->m_max_rows);
        snprintf(why, sizeof(why),
                 "the roll-up would scan more than query.max_rows (%" PRId64
                 ") stored windows: narrow the range or raise the option",
                 h->cfg->query_max_rows);
        answer_error(conn, &h->out, 422, why, NULL);
    } else if (rc != 0) {
        answer_error(conn, &h->out, rc == -ENOMEM ? 500 : 502,
                     rc == -ENOMEM ? "out of memory" : "a stored sketch does not decode", NULL);
    } else {
        cJSON *doc = rollup_render(h, q->rollup, q->key, q->key_len, q->from, q->to);
        if (q->live)
            live_marks(doc, q->nopen);
        char *text = hq_print(q, doc, true);
        cJSON_Delete(doc);
        if (text)
            sg_http_answer(conn, 200, text, strlen(text), NULL);
        else
            answer_error(conn, &h->out, 500, "out of memory", NULL);
        free(text);
    }
    hq_free(q);
}

/* ---- Time slices across keys -------------------------------------------------------------- */

static void on_conn_gone(void *arg);

static void on_range(void *arg, enum sg_ts_read_outcome outcome, const char *code,
                     const char *message, const void *body, size_t len);

/* Encodes a time index bound (shard, window_start, key), the key INF_MIN when NULL. */
static int encode_index_pk(struct sg_buf *out, int32_t shard, int64_t ws, const char *key,
                           size_t key_len)
{
    struct sg_ts_column cols[3] = {
        sg_ts_col("shard", sg_ts_int(shard)), sg_ts_col("window_start", sg_ts_int(ws)),
        sg_ts_col("key", key ? sg_ts_string(key, key_len) : sg_ts_special(SG_TS_INF_MIN))};
    struct sg_ts_row row = {.pk = cols, .pk_count = 3};
    sg_buf_reset(out);
    return sg_ts_pb_encode(out, SG_TS_ROW_PK, &row, NULL, 0);
}

/* Starts the next read of a slice: a shard's range (from `start`, or its beginning), or the
 * next batch of rows. Returns 0, or a negative code when it could not. */
static int slice_read(struct hq *q, const uint8_t *start, size_t start_len);

/* Ends a slice: the shard reads still in flight are cancelled, the client (if still there) gets
 * `status`, and the query goes. */
static void slice_fail(struct hq *q, int status, const char *why, const char *extra)
{
    struct hq_slice *sl = q->slice;
    sl->ending = true;
    for (int32_t i = 0; sl->shards && i < sl->nshards; i++)
        if (sl->shards[i].rd)
            sg_ts_read_cancel(sl->shards[i].rd); /* on_shard only notes it */
    if (q->rd)
        sg_ts_read_cancel(q->rd);
    if (q->conn) {
        observe(q);
        answer_error(q->conn, &q->h->out, status, why, extra);
    }
    hq_free(q);
}

static void hq_cancel(struct hq *q)
{
    if (q->slice) {
        slice_fail(q, 503, "the query was cancelled (shutting down)", "Retry-After: 1\r\n");
        return;
    }
    if (q->rd) {
        sg_ts_read_cancel(q->rd); /* answers 503 and frees the query */
        return;
    }
    if (q->conn)
        answer_error(q->conn, &q->h->out, 503, "the query was cancelled (shutting down)",
                     "Retry-After: 1\r\n");
    hq_free(q);
}

static int entry_key_cmp(const void *a, const void *b, void *arg)
{
    const struct hq_entry *x = a, *y = b;
    const char *keys = arg;
    int c = key_cmp(keys + x->key_off, x->key_len, keys + y->key_off, y->key_len);
    return c ? c : (x->ws > y->ws) - (x->ws < y->ws);
}

static int entry_cmp(const void *a, const void *b, void *arg)
{
    const struct hq_entry *x = a, *y = b;
    const char *keys = arg;
    if (x->ws != y->ws)
        return x->ws < y->ws ? -1 : 1;
    return key_cmp(keys + x->key_off, x->key_len, keys + y->key_off, y->key_len);
}

/* Newest first: (window_start, key) descending. */
static int entry_cmp_desc(const void *a, const void *b, void *arg)
{
    return entry_cmp(b, a, arg);
}

static int okey_cmp(const void *a, const void *b, void *arg)
{
    const struct hq_open_key *x = a, *y = b;
    const char *keys = arg;
    return key_cmp(keys + x->key_off, x->key_len, keys + y->key_off, y->key_len);
}

/* live=true with rollup=true: folds the open windows in [from, to) of the query's key (of every
 * key across keys) into the roll-up, as they are now: a window that fires while the stored rows
 * are read was counted here, and its stored row is skipped. Returns 0, -ENOMEM, or -E2BIG (more
 * than query.max_rows open windows). */
static int live_fold(struct hq *q)
{
    struct hq_open o = {.q = q};
    int rc = sg_streams_open_windows(q->h->streams, q->slice ? NULL : q->key, q->key_len,
                                     on_open_fold, &o);
    if (rc == 0 && q->nopen > 1)
        qsort_r(q->open, q->nopen, sizeof(*q->open), entry_key_cmp, q->open_keys.data);
    if (rc == 0 && q->nokeys > 1)
        qsort_r(q->okeys, q->nokeys, sizeof(*q->okeys), okey_cmp, q->open_keys.data);
    hq_account(q->h);
    return rc;
}

static int shard_read(struct hq_shard *sh, const uint8_t *start, size_t start_len);

/* A page of a shard's range: note its windows; on to the rest of the range, or, once every
 * shard is read, to the rows. */
static void on_shard(void *arg, enum sg_ts_read_outcome outcome, const char *code,
                     const char *message, const void *body, size_t len)
{
    struct hq_shard *sh = arg;
    struct hq *q = sh->q;
    struct sg_history *h = q->h;
    struct hq_slice *sl = q->slice;
    char why[768];
    sh->rd = NULL;
    sl->reading--;
    if (sl->ending)
        return; /* slice_fail is cancelling the reads and frees the query */
    if (outcome != SG_TS_READ_OK || !q->conn) {
        snprintf(why, sizeof(why), "%s: %s %s",
                 outcome == SG_TS_READ_REFUSED ? "Tablestore refused the read"
                                               : "Tablestore is busy or unreachable (retried "
                                                 "for query.timeout)",
                 code, message);
        slice_fail(q, outcome == SG_TS_READ_REFUSED ? 502 : 503, why,
                   outcome == SG_TS_READ_REFUSED ? NULL : "Retry-After: 1\r\n");
        return;
    }
    struct sg_ts_range_result res;
    char err[256] = "";
    if (sg_ts_get_range_parse(body, len, &res, err, sizeof(err)) != 0) {
        snprintf(why, sizeof(why), "unreadable GetRange answer: %s", err);
        slice_fail(q, 502, why, NULL);
        return;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < res.rows.row_count; i++) {
        const struct sg_ts_row *row = &res.rows.rows[i];
        if (row->pk_count != 3 || row->pk[1].value.type != SG_TS_INTEGER ||
            row->pk[2].value.type != SG_TS_STRING)
            continue;
        if (sl->n >= (size_t)h->cfg->query_max_rows) {
            rc = -E2BIG;
            break;
        }
        if (sl->n == sl->cap) {
            size_t cap = sl->cap ? sl->cap * 2 : 256;
            struct hq_entry *e = realloc(sl->e, cap * sizeof(*e));
            if (!e) {
                rc = -ENOMEM;
                break;
            }
            h->held += (cap - sl->cap) * sizeof(*e);
            sl->e = e;
            sl->cap = cap;
        }
        size_t before = sl->keys.cap;
        struct hq_entry *e = &sl->e[sl->n];
        e->ws = row->pk[1].value.i;
        e->key_off = sl->keys.len;
        e->key_len = row->pk[2].value.bytes.len;
        rc = sg_buf_append(&sl->keys, row->pk[2].value.bytes.ptr, e->key_len);
        h->held += sl->keys.cap - before;
        sl->n += rc == 0;
        sh->got += rc == 0;
    }
    hq_account(h);
    /* A listing's page needs no more than a shard's first limit + 1 windows: the page's windows
     * and the first one left out are among them. */
    if (rc == 0 && res.next_start && (q->rollup || sh->got <= sl->limit))
        rc = shard_read(sh, res.next_start, res.next_start_len);
    sg_ts_range_result_free(&res);
    if (rc == -E2BIG) {
        sg_counter_inc(h->m_max_rows);
        snprintf(why, sizeof(why),
                 q->rollup ? "the time slice holds more than query.max_rows (%" PRId64
                             ") windows: narrow the range or raise the option"
                           : "the page would scan more than query.max_rows (%" PRId64
                             ") index rows: lower limit, narrow the range or raise the option",
                 h->cfg->query_max_rows);
        slice_fail(q, 422, why, NULL);
        return;
    }
    if (rc != 0) {
        slice_fail(q, rc == -ENOMEM ? 500 : 503,
                   rc == -ENOMEM ? "out of memory"
                                 : "Tablestore is busy or unreachable (retried for "
                                   "query.timeout)",
                   rc == -ENOMEM ? NULL : "Retry-After: 1\r\n");
        return;
    }
    if (sl->reading > 0)
        return;
    /* Every shard read: all the windows in time order (or by key, for roll-ups), then their
     * rows. */
    if (sl->n > 1) /* sl->e is NULL while the range is empty */
        qsort_r(sl->e, sl->n, sizeof(*sl->e),
                q->rollup ? entry_key_cmp
                : q->desc ? entry_cmp_desc
                          : entry_cmp,
                sl->keys.data);
    sl->take = q->rollup ? sl->n : sl->n < (size_t)sl->limit ? sl->n : (size_t)sl->limit;
    if (slice_read(q, NULL, 0) != 0)
        slice_fail(q, 503, "Tablestore is busy or unreachable (retried for query.timeout)",
                   "Retry-After: 1\r\n");
}

/* Reads (the rest of) shard sh's range of the time index: from `start`, or its beginning; for a
 * listing, only up to the shard's first limit + 1 windows from there. */
static int shard_read(struct hq_shard *sh, const uint8_t *start, size_t start_len)
{
    struct hq *q = sh->q;
    struct sg_history *h = q->h;
    struct hq_slice *sl = q->slice;
    uint64_t spent_ms = (uv_hrtime() - q->start_ns) / 1000000;
    uint64_t timeout = h->cfg->query_timeout_ms;
    if (spent_ms >= timeout)
        return -ETIMEDOUT;
    int rc = 0;
    /* Forward: [(s, from, INF_MIN), (s, to, INF_MIN)); backward: from (s, to, INF_MIN), which
     * is past every window before `to`, down to (s, from, INF_MIN), exclusive. A page starts at
     * its first window (page_ws, page_key), inclusive in either direction. */
    int64_t first = q->desc ? q->to : q->from, stop = q->desc ? q->from : q->to;
    if (!start) {
        rc = encode_index_pk(&h->start, sh->s, sl->has_page ? sl->page_ws : first,
                             sl->has_page ? sl->page_key.data : NULL, sl->page_key.len);
        start = (const uint8_t *)h->start.data;
        start_len = h->start.len;
    }
    if (rc == 0)
        rc = encode_index_pk(&h->end, sh->s, stop, NULL, 0);
    struct sg_ts_get_range gr = {.table = sg_ts_reader_time_index(h->reader),
                                 .direction = q->desc ? SG_TS_BACKWARD : SG_TS_FORWARD,
                                 .start = start,
                                 .start_len = start_len,
                                 .end = h->end.data,
                                 .end_len = h->end.len,
                                 .limit = q->rollup ? 0 : sl->limit + 1 - sh->got};
    sg_buf_reset(&h->body);
    if (rc == 0)
        rc = sg_ts_get_range_build(&h->body, &gr, NULL, 0);
    if (rc == 0)
        rc = sg_ts_reader_call(h->reader, "GetRange", h->body.data, h->body.len, timeout - spent_ms,
                               on_shard, sh, &sh->rd);
    sl->reading += rc == 0;
    return rc;
}

/* Adds roll-up `ru` of `key` to "keys", and empties it. */
static int slice_add_key(struct hq *q, struct hq_rollup *ru, const char *key, size_t key_len)
{
    cJSON *o = rollup_render(q->h, ru, key, key_len, q->from, q->to);
    if (q->live)
        live_marks(o, ru->open_windows);
    if (!o || !cJSON_AddItemToArray(q->slice->windows, o)) {
        cJSON_Delete(o);
        return -ENOMEM;
    }
    hq_hold(q, json_bytes(o));
    rollup_clear(q->h, ru);
    return 0;
}

/* Adds the roll-up of the key folded so far to "keys", and empties it. */
static int slice_flush_key(struct hq *q)
{
    struct hq_slice *sl = q->slice;
    return q->rollup->windows ? slice_add_key(q, q->rollup, sl->cur_key.data, sl->cur_key.len) : 0;
}

/* live=true, group=key: adds the open windows' roll-ups of the keys before `key` (of every key
 * left when NULL) to "keys", for those keys have no stored window, and makes that of `key`
 * itself, if any, the roll-up its stored windows join. q->rollup is empty. */
static int slice_open_keys(struct hq *q, const char *key, size_t key_len)
{
    for (; q->okeys_next < q->nokeys; q->okeys_next++) {
        struct hq_open_key *ok = &q->okeys[q->okeys_next];
        const char *k = q->open_keys.data + ok->key_off;
        int c = key ? key_cmp(k, ok->key_len, key, key_len) : -1;
        if (c > 0)
            break;
        if (c == 0) {
            rollup_clear(q->h, q->rollup);
            *q->rollup = ok->ru;
            memset(&ok->ru, 0, sizeof(ok->ru));
            q->okeys_next++;
            break;
        }
        if (slice_add_key(q, &ok->ru, k, ok->key_len) != 0)
            return -ENOMEM;
    }
    return 0;
}

/* Folds one window's row into the roll-up of its key (or of every key). */
static int slice_fold(struct hq *q, const struct sg_ts_row *row)
{
    struct hq_slice *sl = q->slice;
    const struct sg_ts_value *k = &row->pk[0].value;
    if (row->pk_count != 2 || k->type != SG_TS_STRING || row->pk[1].value.type != SG_TS_INTEGER)
        return 0;
    if (!sl->group_none &&
        (sl->cur_key.len != k->bytes.len || memcmp(sl->cur_key.data, k->bytes.ptr, k->bytes.len))) {
        if (slice_flush_key(q) != 0 || slice_open_keys(q, k->bytes.ptr, k->bytes.len) != 0)
            return -ENOMEM;
        sg_buf_reset(&sl->cur_key);
        if (sg_buf_append(&sl->cur_key, k->bytes.ptr, k->bytes.len) != 0)
            return -ENOMEM;
    }
    if (is_open(q, k->bytes.ptr, k->bytes.len, row->pk[1].value.i))
        return 0; /* an early emission of a window folded in from memory */
    return rollup_window(q->h, q->rollup, row) == -ENOMEM ? -ENOMEM : 0;
}

/* Answers a slice with `text` (taken; NULL: out of memory) and lets it go. */
static void slice_answer_text(struct hq *q, char *text)
{
    observe(q);
    if (text)
        sg_http_answer(q->conn, 200, text, strlen(text), NULL);
    else
        answer_error(q->conn, &q->h->out, 500, "out of memory", NULL);
    free(text);
    hq_free(q);
}

/* The answer of a slice once every row is read. */
static void slice_answer(struct hq *q)
{
    struct hq_slice *sl = q->slice;
    struct sg_history *h = q->h;
    bool ok = true;
    if (q->rollup) {
        /* One aggregate per key in "keys", or of them all. */
        cJSON *doc = NULL;
        if (sl->group_none) {
            doc = rollup_render(h, q->rollup, NULL, 0, q->from, q->to);
        } else if (slice_flush_key(q) == 0 && slice_open_keys(q, NULL, 0) == 0 &&
                   (doc = cJSON_CreateObject())) {
            cJSON_AddNumberToObject(doc, "from", (double)q->from);
            cJSON_AddNumberToObject(doc, "to", (double)q->to);
            cJSON_DetachItemViaPointer(sl->doc, sl->windows);
            cJSON_AddItemToObject(doc, "keys", sl->windows);
        }
        if (q->live)
            live_marks(doc, q->nopen);
        /* Per key, the aggregates were charged as they were added to "keys". */
        char *text = hq_print(q, doc, sl->group_none);
        cJSON_Delete(doc);
        slice_answer_text(q, text);
        return;
    }
    cJSON *next = cJSON_CreateNull();
    if (sl->take < sl->n) {
        /* The next page starts at the first window left out. */
        const struct hq_entry *e = &sl->e[sl->take];
        struct sg_ts_column cols[2] = {
            sg_ts_col("window_start", sg_ts_int(e->ws)),
            sg_ts_col("key", sg_ts_string(sl->keys.data + e->key_off, e->key_len))};
        struct sg_ts_row row = {.pk = cols, .pk_count = 2};
        sg_buf_reset(&h->start);
        sg_buf_reset(&h->out);
        cJSON_Delete(next);
        next = NULL;
        ok = sg_ts_pb_encode(&h->start, SG_TS_ROW_PK, &row, NULL, 0) == 0 &&
             token_encode(&h->out, (const uint8_t *)h->start.data, h->start.len) == 0 &&
             sg_buf_append_char(&h->out, '\0') == 0 && (next = cJSON_CreateString(h->out.data));
    }
    ok = ok && next && cJSON_AddItemToObject(sl->doc, "next_page", next);
    int lrc = 0;
    if (ok && q->live) {
        /* This page's span: from its token (if any) to the first window left out (if any). */
        const struct hq_entry *e = sl->take < sl->n ? &sl->e[sl->take] : NULL;
        struct hq_pos lo = {sl->page_ws, sl->page_key.data, sl->page_key.len};
        struct hq_pos hi = {e ? e->ws : 0, e ? sl->keys.data + e->key_off : NULL,
                            e ? e->key_len : 0};
        lrc = add_live(h, q, sl->windows, sl->has_page ? &lo : NULL, e ? &hi : NULL);
    }
    if (lrc == -E2BIG) {
        observe(q);
        answer_too_many(h, q->conn, "live=true would add");
        hq_free(q);
        return;
    }
    slice_answer_text(q, ok && lrc == 0 ? hq_print(q, sl->doc, false) : NULL);
}

static void on_batch(void *arg, enum sg_ts_read_outcome outcome, const char *code,
                     const char *message, const void *body, size_t len)
{
    struct hq *q = arg;
    struct hq_slice *sl = q->slice;
    char why[768];
    q->rd = NULL;
    if (sl->ending)
        return; /* slice_fail is cancelling it and frees the query */
    if (!q->conn) {
        hq_free(q);
        return;
    }
    struct sg_ts_batch_get_result res = {0};
    if (outcome != SG_TS_READ_OK || sg_ts_batch_get_parse(body, len, &res, why, sizeof(why)) != 0) {
        if (outcome != SG_TS_READ_OK)
            snprintf(why, sizeof(why), "reading the windows' rows: %s %s", code, message);
        slice_fail(q, outcome == SG_TS_READ_REFUSED || outcome == SG_TS_READ_OK ? 502 : 503, why,
                   outcome == SG_TS_READ_UNAVAILABLE ? "Retry-After: 1\r\n" : NULL);
        return;
    }
    bool ok = true;
    size_t added = 0; /* bytes of the windows added to the answer */
    for (size_t i = 0; ok && i < res.row_count; i++) {
        const struct sg_ts_batch_get_row *r = &res.rows[i];
        if (!r->ok) {
            snprintf(why, sizeof(why), "reading a window's row: %s %s", r->error_code,
                     r->error_message);
            sg_ts_batch_get_result_free(&res);
            slice_fail(q, 503, why, "Retry-After: 1\r\n");
            return;
        }
        if (!r->found)
            continue; /* gone from the table since the index listed it */
        const struct sg_ts_row *row = &r->decoded.rows[0];
        if (q->rollup) {
            ok = slice_fold(q, row) == 0;
            continue;
        }
        cJSON *w = row_result(row);
        ok = w && cJSON_AddItemToArray(sl->windows, w);
        added += ok ? json_bytes(w) : 0;
    }
    sg_ts_batch_get_result_free(&res);
    hq_hold(q, added);
    if (!ok) {
        slice_fail(q, 500, "out of memory", NULL);
        return;
    }
    if (sl->fetched < sl->take) {
        if (slice_read(q, NULL, 0) != 0)
            slice_fail(q, 503, "Tablestore is busy or unreachable (retried for query.timeout)",
                       "Retry-After: 1\r\n");
        return;
    }
    slice_answer(q);
}

static int slice_read(struct hq *q, const uint8_t *start, size_t start_len)
{
    (void)start;
    (void)start_len;
    struct sg_history *h = q->h;
    struct hq_slice *sl = q->slice;
    uint64_t spent_ms = (uv_hrtime() - q->start_ns) / 1000000;
    uint64_t timeout = h->cfg->query_timeout_ms;
    if (spent_ms >= timeout)
        return -ETIMEDOUT;
    sg_buf_reset(&h->body);
    if (sl->take == 0) {
        slice_answer(q); /* nothing in the range */
        return 0;
    }
    /* The next rows, at most SG_TS_BATCH_GET_MAX_ROWS, encoded one after the other in h->start. */
    size_t n = sl->take - sl->fetched;
    n = n < SG_TS_BATCH_GET_MAX_ROWS ? n : SG_TS_BATCH_GET_MAX_ROWS;
    const void *keys[SG_TS_BATCH_GET_MAX_ROWS];
    size_t lens[SG_TS_BATCH_GET_MAX_ROWS], offs[SG_TS_BATCH_GET_MAX_ROWS];
    sg_buf_reset(&h->start);
    for (size_t i = 0; i < n; i++) {
        const struct hq_entry *e = &sl->e[sl->fetched + i];
        struct sg_ts_column cols[2] = {
            sg_ts_col("key", sg_ts_string(sl->keys.data + e->key_off, e->key_len)),
            sg_ts_col("window_start", sg_ts_int(e->ws))};
        struct sg_ts_row row = {.pk = cols, .pk_count = 2};
        offs[i] = h->start.len;
        if (sg_ts_pb_encode(&h->start, SG_TS_ROW_PK, &row, NULL, 0) != 0)
            return -ENOMEM;
        lens[i] = h->start.len - offs[i];
    }
    for (size_t i = 0; i < n; i++)
        keys[i] = h->start.data + offs[i];
    int rc = sg_ts_batch_get_build(&h->body, sg_ts_reader_results_table(h->reader), keys, lens, n,
                                   NULL, 0, NULL, 0);
    sl->fetched += n;
    return rc ? rc
              : sg_ts_reader_call(h->reader, "BatchGetRow", h->body.data, h->body.len,
                                  timeout - spent_ms, on_batch, q, &q->rd);
}

/* What a GET /v1/history across keys asks. */
struct hq_slice_ask {
    int64_t from, to;
    long limit;
    bool rollup, group_none, desc, live;
};

/* A GET /v1/history across keys: sets the slice up and reads every shard's range. */
static bool slice_start(struct sg_history *h, struct sg_http_conn *conn, const char *url,
                        size_t url_len, const struct hq_slice_ask *ask, uint64_t start_ns)
{
    int64_t from = ask->from, to = ask->to;
    bool rollup = ask->rollup;
    char value[HQ_MAX_PARAM + 1];
    if (!sg_ts_reader_time_index(h->reader)[0]) {
        answer_error(conn, &h->out, 404,
                     "no time index to query across keys: tablestore.time_index is empty; ask "
                     "for one key: GET /v1/history/{key}",
                     NULL);
        return false;
    }
    struct hq *q = calloc(1, sizeof(*q));
    struct hq_slice *sl = q ? calloc(1, sizeof(*sl)) : NULL;
    if (!sl) {
        free(q);
        answer_error(conn, &h->out, 500, "out of memory", NULL);
        return false;
    }
    *q = (struct hq){.h = h,
                     .conn = conn,
                     .from = from,
                     .to = to,
                     .desc = ask->desc,
                     .live = ask->live,
                     .slice = sl};
    sl->group_none = ask->group_none;
    sg_buf_init(&sl->cur_key, 0);
    sg_buf_init(&q->open_keys, 0);
    q->rollup = rollup ? calloc(1, sizeof(*q->rollup)) : NULL;
    q->start_ns = start_ns;
    sl->nshards = sg_ts_reader_index_shards(h->reader);
    sl->limit = (int32_t)ask->limit;
    sg_buf_init(&sl->keys, 0);
    sg_buf_init(&sl->page_key, 0);
    sl->doc = cJSON_CreateObject();
    sl->windows = sl->doc ? cJSON_AddArrayToObject(sl->doc, "windows") : NULL;
    /* The list of queries owns it from here: hq_free releases what it holds. */
    q->next = h->queries;
    if (h->queries)
        h->queries->prev = q;
    h->queries = q;
    h->held += sizeof(*q) + sizeof(*sl) + (q->rollup ? sizeof(*q->rollup) : 0);
    if (!sl->windows || (rollup && !q->rollup)) {
        slice_fail(q, 500, "out of memory", NULL);
        return true;
    }
    int rc = param(url, url_len, "page", value, sizeof(value));
    if (rc == 1) {
        /* A page token here is (window_start, key): where the next page starts. */
        struct sg_ts_rows rows;
        bool ok =
            token_decode(value, &h->start) == 0 &&
            sg_ts_pb_decode(h->start.data, h->start.len, SG_TS_DECODE_SINGLE, &rows, NULL, 0) == 0;
        if (ok) {
            const struct sg_ts_row *r = &rows.rows[0];
            ok = r->pk_count == 2 && r->pk[0].value.type == SG_TS_INTEGER &&
                 r->pk[1].value.type == SG_TS_STRING && r->pk[0].value.i >= from &&
                 r->pk[0].value.i < to &&
                 sg_buf_append(&sl->page_key, r->pk[1].value.bytes.ptr, r->pk[1].value.bytes.len) ==
                     0;
            sl->page_ws = ok ? r->pk[0].value.i : 0;
            sg_ts_rows_free(&rows);
        }
        sl->has_page = ok;
        rc = ok ? 1 : -1;
    }
    if (rc < 0) {
        slice_fail(q, 400, "page: not a page token of this query (use next_page as it was given)",
                   NULL);
        return true;
    }
    if (q->live && q->rollup) {
        rc = live_fold(q);
        if (rc == -E2BIG) {
            hq_free(q);
            answer_too_many(h, conn, "live=true would fold in");
            return false;
        }
        if (rc != 0) {
            slice_fail(q, 500, "out of memory", NULL);
            return true;
        }
    }
    sl->shards = calloc((size_t)sl->nshards, sizeof(*sl->shards));
    if (!sl->shards) {
        slice_fail(q, 500, "out of memory", NULL);
        return true;
    }
    h->held += (size_t)sl->nshards * sizeof(*sl->shards);
    for (int32_t i = 0; i < sl->nshards; i++) {
        sl->shards[i] = (struct hq_shard){.q = q, .s = i};
        if (shard_read(&sl->shards[i], NULL, 0) != 0) {
            slice_fail(q, 503, "the Tablestore client is closing", "Retry-After: 1\r\n");
            return true;
        }
    }
    hq_account(h);
    sg_http_hold(conn, on_conn_gone, q);
    return true;
}

/* The connection closed before the answer: the read goes on to its end, unanswered. */
static void on_conn_gone(void *arg)
{
    struct hq *q = arg;
    q->conn = NULL;
}

/* Encodes the primary key (key, window_start) into `out`. */
static int encode_pk(struct sg_buf *out, const char *key, size_t key_len, int64_t ws)
{
    struct sg_ts_column cols[2] = {sg_ts_col("key", sg_ts_string(key, key_len)),
                                   sg_ts_col("window_start", sg_ts_int(ws))};
    struct sg_ts_row row = {.pk = cols, .pk_count = 2};
    sg_buf_reset(out);
    return sg_ts_pb_encode(out, SG_TS_ROW_PK, &row, NULL, 0);
}

/* A page token must be a primary key of this key inside the range; *ws is its window_start. */
static bool token_ok(const struct sg_buf *pk, const char *key, size_t key_len, int64_t from,
                     int64_t to, int64_t *ws)
{
    struct sg_ts_rows rows;
    if (sg_ts_pb_decode(pk->data, pk->len, SG_TS_DECODE_SINGLE, &rows, NULL, 0) != 0)
        return false;
    const struct sg_ts_row *r = &rows.rows[0];
    bool ok = r->pk_count == 2 && r->attr_count == 0 && r->pk[0].value.type == SG_TS_STRING &&
              r->pk[0].value.bytes.len == key_len &&
              memcmp(r->pk[0].value.bytes.ptr, key, key_len) == 0 &&
              r->pk[1].value.type == SG_TS_INTEGER && r->pk[1].value.i >= from &&
              r->pk[1].value.i < to;
    *ws = ok ? r->pk[1].value.i : 0;
    sg_ts_rows_free(&rows);
    return ok;
}

static bool history_start(struct sg_history *h, struct sg_http_conn *conn, const char *url,
                          size_t url_len, uint64_t start_ns);

void sg_history_handle(void *arg, struct sg_http_conn *conn, const char *url, size_t url_len)
{
    struct sg_history *h = arg;
    uint64_t start_ns = uv_hrtime();
    /* A query answered at once (refused) is timed here; one that reads, when it is answered. */
    if (!history_start(h, conn, url, url_len, start_ns))
        sg_histogram_observe(h->m_latency, (double)(uv_hrtime() - start_ns) / 1e9);
}

/* Answers at once (false) or starts the read (true). */
static bool history_start(struct sg_history *h, struct sg_http_conn *conn, const char *url,
                          size_t url_len, uint64_t start_ns)
{
    char value[HQ_MAX_PARAM + 1], msg[512];
    if (!h->reader) {
        answer_error(conn, &h->out, 404,
                     "no stored results to query: set tablestore.endpoint (and "
                     "tablestore.results_table)",
                     NULL);
        return false;
    }
    const char *table = sg_ts_reader_results_table(h->reader);
    if (!table[0]) {
        answer_error(conn, &h->out, 404,
                     "no stored results to query: tablestore.results_table is empty", NULL);
        return false;
    }
    /* The key: the path after /v1/history/, percent-decoded. */
    const char *q = memchr(url, '?', url_len);
    size_t path_len = q ? (size_t)(q - url) : url_len;
    bool all_keys = path_len <= 12;
    char key[SG_TS_PK_VALUE_MAX_BYTES + 1];
    size_t key_len = 0;
    for (size_t i = 12; !all_keys && i < path_len; i++) {
        int v = (unsigned char)url[i];
        if (v == '%') {
            if (path_len - i < 3 || sg_hex_digit(url[i + 1]) < 0 || sg_hex_digit(url[i + 2]) < 0) {
                answer_error(conn, &h->out, 400, "malformed key in the path", NULL);
                return false;
            }
            v = sg_hex_digit(url[i + 1]) * 16 + sg_hex_digit(url[i + 2]);
            i += 2;
        }
        if (key_len >= SG_TS_PK_VALUE_MAX_BYTES) {
            answer_error(conn, &h->out, 400, "key longer than 1024 bytes", NULL);
            return false;
        }
        key[key_len++] = (char)v;
    }
    int64_t from, to;
    static const char *const names[] = {"from", "to"};
    int64_t *times[] = {&from, &to};
    for (int i = 0; i < 2; i++) {
        int rc = param(url, url_len, names[i], value, sizeof(value));
        if (rc <= 0 || parse_time(value, times[i]) != 0) {
            snprintf(msg, sizeof(msg),
                     "%s: %s; expected epoch milliseconds or RFC 3339 (2024-05-06T07:08:09Z)",
                     names[i], rc == 0 ? "missing" : "not a time");
            answer_error(conn, &h->out, 400, msg, NULL);
            return false;
        }
    }
    if (from >= to) {
        answer_error(conn, &h->out, 400, "from must be before to", NULL);
        return false;
    }
    bool desc = false;
    int rc = param(url, url_len, "order", value, sizeof(value));
    if (rc < 0 || (rc == 1 && strcmp(value, "asc") != 0 && strcmp(value, "desc") != 0)) {
        answer_error(conn, &h->out, 400, "order: asc or desc", NULL);
        return false;
    }
    desc = rc == 1 && strcmp(value, "desc") == 0;
    long limit = HQ_DEFAULT_LIMIT;
    rc = param(url, url_len, "limit", value, sizeof(value));
    if (rc == 1) {
        char *end;
        limit = strtol(value, &end, 10);
        if (*end || end == value || limit < 1 || limit > HQ_MAX_LIMIT)
            rc = -1;
    }
    if (rc < 0) {
        answer_error(conn, &h->out, 400, "limit: a whole number from 1 to 1000", NULL);
        return false;
    }
    if (all_keys) {
        int r2 = param(url, url_len, "rollup", value, sizeof(value));
        bool all_rollup = r2 == 1 && strcmp(value, "true") == 0;
        if (r2 < 0 || (r2 == 1 && !all_rollup && strcmp(value, "false") != 0)) {
            answer_error(conn, &h->out, 400, "rollup: true or false", NULL);
            return false;
        }
        r2 = param(url, url_len, "group", value, sizeof(value));
        if (r2 < 0 || (r2 == 1 && strcmp(value, "none") != 0 && strcmp(value, "key") != 0) ||
            (r2 == 1 && !all_rollup)) {
            answer_error(conn, &h->out, 400, "group: key or none, with rollup=true", NULL);
            return false;
        }
        bool group_none = r2 == 1 && strcmp(value, "none") == 0;
        r2 = param(url, url_len, "live", value, sizeof(value));
        bool all_live = r2 == 1 && strcmp(value, "true") == 0;
        if (r2 < 0 || (r2 == 1 && !all_live && strcmp(value, "false") != 0)) {
            answer_error(conn, &h->out, 400, "live: true or false", NULL);
            return false;
        }
        if (all_live && !h->streams) {
            answer_error(conn, &h->out, 501,
                         "live=true needs the windows, which this process does not keep (role "
                         "gateway)",
                         NULL);
            return false;
        }
        struct hq_slice_ask ask = {.from = from,
                                   .to = to,
                                   .limit = limit,
                                   .rollup = all_rollup,
                                   .group_none = group_none,
                                   .desc = desc && !all_rollup,
                                   .live = all_live};
        return slice_start(h, conn, url, url_len, &ask, start_ns);
    }
    /* Forward: [(key, from), (key, to)); backward: from (key, to - 1) down to (key, from - 1),
     * exclusive. A page token replaces the start. */
    int erc = encode_pk(&h->start, key, key_len, desc ? to - 1 : from);
    if (erc == 0)
        erc = encode_pk(&h->end, key, key_len, desc ? from - 1 : to);
    if (erc != 0) {
        answer_error(conn, &h->out, 400, "the key is not a valid Tablestore key", NULL);
        return false;
    }
    rc = param(url, url_len, "page", value, sizeof(value));
    int64_t lo_ws = 0;
    bool has_lo = rc == 1;
    if (rc < 0 || (rc == 1 && (token_decode(value, &h->start) != 0 ||
                               !token_ok(&h->start, key, key_len, from, to, &lo_ws)))) {
        answer_error(conn, &h->out, 400,
                     "page: not a page token of this query (use next_page as it was given)", NULL);
        return false;
    }
    bool rollup = false;
    rc = param(url, url_len, "rollup", value, sizeof(value));
    if (rc < 0 || (rc == 1 && strcmp(value, "true") != 0 && strcmp(value, "false") != 0)) {
        answer_error(conn, &h->out, 400, "rollup: true or false", NULL);
        return false;
    }
    rollup = rc == 1 && strcmp(value, "true") == 0;
    rc = param(url, url_len, "live", value, sizeof(value));
    if (rc < 0 || (rc == 1 && strcmp(value, "true") != 0 && strcmp(value, "false") != 0)) {
        answer_error(conn, &h->out, 400, "live: true or false", NULL);
        return false;
    }
    bool live = rc == 1 && strcmp(value, "true") == 0;
    if (live && !h->streams) {
        answer_error(conn, &h->out, 501,
                     "live=true needs the windows, which this process does not keep (role "
                     "gateway)",
                     NULL);
        return false;
    }
    if (rollup) {
        /* A roll-up reads the whole range, oldest first, in one answer. */
        if (encode_pk(&h->start, key, key_len, from) != 0 ||
            encode_pk(&h->end, key, key_len, to) != 0) {
            answer_error(conn, &h->out, 400, "the key is not a valid Tablestore key", NULL);
            return false;
        }
        desc = false;
    }
    struct sg_ts_get_range gr = {.table = table,
                                 .direction = desc ? SG_TS_BACKWARD : SG_TS_FORWARD,
                                 .start = h->start.data,
                                 .start_len = h->start.len,
                                 .end = h->end.data,
                                 .end_len = h->end.len,
                                 .limit = rollup ? 0 : (int32_t)limit};
    sg_buf_reset(&h->body);
    if (sg_ts_get_range_build(&h->body, &gr, msg, sizeof(msg)) != 0) {
        answer_error(conn, &h->out, 400, msg, NULL);
        return false;
    }
    struct hq *hq = calloc(1, sizeof(*hq) + key_len);
    if (!hq) {
        answer_error(conn, &h->out, 500, "out of memory", NULL);
        return false;
    }
    *hq = (struct hq){.h = h,
                      .conn = conn,
                      .from = from,
                      .to = to,
                      .desc = desc,
                      .live = live,
                      .has_lo = has_lo && !rollup,
                      .lo_ws = lo_ws};
    if (rollup && !(hq->rollup = calloc(1, sizeof(*hq->rollup)))) {
        free(hq);
        answer_error(conn, &h->out, 500, "out of memory", NULL);
        return false;
    }
    hq->start_ns = start_ns;
    hq->key_len = key_len;
    memcpy(hq->key, key, key_len);
    sg_buf_init(&hq->open_keys, 0);
    /* The list of queries owns it from here: hq_free releases what it holds. */
    hq->next = h->queries;
    if (h->queries)
        h->queries->prev = hq;
    h->queries = hq;
    h->held += sizeof(*hq) + key_len + (rollup ? sizeof(*hq->rollup) : 0);
    if (rollup && live) {
        /* The open windows first (live_fold). */
        rc = live_fold(hq);
        if (rc != 0) {
            hq_free(hq);
            if (rc == -E2BIG)
                answer_too_many(h, conn, "live=true would fold in");
            else
                answer_error(conn, &h->out, 500, "out of memory", NULL);
            return false;
        }
    }
    if (sg_ts_reader_call(h->reader, "GetRange", h->body.data, h->body.len,
                          h->cfg->query_timeout_ms, on_range, hq, &hq->rd) != 0) {
        hq_free(hq);
        answer_error(conn, &h->out, 503, "the Tablestore client is closing", "Retry-After: 1\r\n");
        return false;
    }
    hq_account(h);
    sg_http_hold(conn, on_conn_gone, hq);
    return true;
}
