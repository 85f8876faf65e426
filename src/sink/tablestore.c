/* The Tablestore writer.
 *
 * Rows live in one of four places: the pending list (waiting for a batch), the retry heap
 * (failed, waiting out a retry backoff), a request in flight, or behind an in-flight row of the
 * same primary key (`newer`). A hash map keyed by table and primary key finds the one row per
 * key that is pending, waiting or in flight, so a newer version of a window replaces a pending
 * one in place and waits behind one in flight: the table never sees versions out of order.
 *
 * The row store (tablestore_rows.c) keeps the rows; this file decides what becomes of them.
 * Requests go out on libcurl's multi interface on the loop (curl_uv.c), each as a signed call
 * (tablestore_call.c) on a request slot that keeps its easy handle for reuse. The start-up
 * checks build and read their messages with the protocol library's table administration. */
#define _GNU_SOURCE /* asprintf */
#include <ctype.h>
#include <curl/curl.h>
#include <limits.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "streamgate/budget.h"
#include "streamgate/buf.h"
#include "streamgate/config.h"
#include "streamgate/dead_letter.h"
#include "streamgate/ddsketch.h"
#include "streamgate/hll.h"
#include "streamgate/event.h"
#include "streamgate/hash.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "streamgate/sink.h"
#include "streamgate/sink_tablestore.h"
#include "streamgate/streams.h"
#include "streamgate/tablestore.h"
#include "streamgate/tablestore_reader.h"
#include "tablestore_internal.h"

/* Room left in a request for what sg_ts_pb_row_size does not count: the table names, the
 * protobuf framing of every row and its condition. */
#define TS_REQUEST_MARGIN (64 * 1024)
#define TS_ROW_FRAMING    32
/* What a held row costs beyond its own allocation, charged to the budget with it: its one to
 * two slots in the index's bucket array (8 bytes each) and malloc's header and rounding. */
#define TS_ROW_OVERHEAD 32
/* Consecutive failed requests after which the writer reports itself unhealthy. */
#define TS_UNHEALTHY_AFTER 3
/* Timeouts of one start-up check call (DescribeTable, CreateTable): to connect, and in all.
 * The first round blocks start-up, so a service that does not answer must not hold it long. */
#define TS_CHECK_CONNECT_TIMEOUT_MS 3000
#define TS_CHECK_TIMEOUT_MS         10000

static const char *const ts_kind_names[SG_TS_NKINDS] = {"raw", "agg"};

/* The start-up check calls of one table: DescribeTable, then CreateTable when the table is
 * missing, or CreateIndex when only its time index is. */
enum ts_check_op { TS_CHECK_DESCRIBE, TS_CHECK_CREATE_TABLE, TS_CHECK_CREATE_INDEX };
static const char *const ts_check_ops[] = {"DescribeTable", "CreateTable", "CreateIndex"};

/* The writer's life: its start-up checks are being retried (rows are held, none is sent), they
 * passed, or one found a definite configuration error (every row fails). */
enum ts_phase { TS_CHECKING, TS_READY, TS_FAILED };
static const char *const ts_phase_names[] = {"checking", "ready", "failed"};

/* Error codes given their own row_errors series; any other code counts as "other". */
static const char *const ts_known_codes[] = {
    "OTSServerBusy",
    "OTSPartitionUnavailable",
    "OTSQuotaExhausted",
    "OTSTimeout",
    "OTSServerUnavailable",
    "OTSInternalServerError",
    "OTSRowOperationConflict",
    "OTSNotEnoughCapacityUnit",
    "OTSTableNotReady",
    "OTSParameterInvalid",
    "OTSObjectNotExist",
    "OTSOutOfRowSizeLimit",
    "OTSOutOfColumnCountLimit",
    "OTSConditionCheckFail",
    "OTSAuthFailed",
    "OTSRequestBodyTooLarge",
    "OTSInvalidPK",
};
#define TS_NCODES (SG_ARRAY_SIZE(ts_known_codes) + 1) /* + "other" */

/* One request slot: its easy handle is reused, request after request. */
struct ts_req {
    struct sg_ts_call call;
    struct ts_req *next; /* free list or in-flight list */
    struct ts_sink *ts;
    struct sg_ts_held **rows;
    size_t nrows;
    /* Room for req_build, SG_TS_BATCH_MAX_ROWS each: the rows ordered by table, and the
     * request's writes, pointing at the rows' encodings. */
    struct sg_ts_held **sorted;
    struct sg_ts_encoded_write *writes;
};

struct ts_sink {
    struct sg_sink sink;
    struct sg_sink_ops ops;
    uv_loop_t *loop;
    struct sg_log *log;
    struct sg_budget *budget;
    size_t budget_held;
    struct sg_dead_letter *dead_letter;

    char *endpoint, *instance, *akid, *secret, *sts_token;
    struct sg_ts_creds creds;
    char *tables[SG_TS_NKINDS];
    char *key_field, *time_field;
    int64_t max_in_flight, max_retries;
    uint64_t linger_ms, timeout_ms, backoff_ms, backoff_max_ms;
    bool create_tables;
    int32_t index_shards;
    struct sg_ts_index time_index; /* name NULL: off */
    char *time_index_name;

    struct sg_curl_uv *curl;
    struct sg_ts_reader reader; /* reads on the same connections (GET /v1/history) */
    bool reader_init;
    uv_timer_t linger_timer, retry_timer;
    bool timers_init, closing;
    struct ts_req *free_reqs, *inflight_reqs;
    int64_t requests_in_flight;

    struct sg_ts_store store;
    size_t rows_in_flight, rows_newer;
    size_t held_bytes;
    bool flush_now;         /* linger passed or retries are due: send what is pending */
    size_t batch_cap;       /* rows per request; halved after a request was too large */
    int64_t retry_armed_ms; /* due time the retry timer is set for; 0: not set */

    /* Start-up checks (see that section below). */
    enum ts_phase phase;
    size_t check_at;           /* index into ts_check_order of the table being checked */
    enum ts_check_op check_op; /* the next call for that table */
    int check_failures;        /* failed check calls in a row, for the backoff */
    struct ts_req *check_req;  /* the check call in flight, or NULL */
    uv_timer_t check_timer;
    char fatal_code[128]; /* TS_FAILED: the error every row fails with */
    char fatal_message[1024];

    uint64_t raw_seq, boot_id;
    uint64_t rng;
    int consecutive_failures;
    bool draining;
    sg_sink_drained_cb drained_cb;
    void *drained_arg;
    uint64_t written, failed, retried, superseded;

    struct sg_log_limiter fail_limiter, request_limiter, check_limiter;
    struct row_builder *rb;

    struct sg_counter *m_written[SG_TS_NKINDS], *m_failed[SG_TS_NKINDS], *m_retried[SG_TS_NKINDS];
    struct sg_counter *m_superseded;
    struct sg_counter *m_codes[TS_NCODES];
    struct sg_counter *m_requests[4]; /* 2xx, 4xx, 5xx, error */
    struct sg_histogram *m_latency;
    struct sg_gauge *m_pending, *m_inflight, *m_queue_bytes, *m_ready;
};

static const double latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25,  0.5,    1,     2.5,  5,     10,   30};

static struct ts_sink *ts_of(struct sg_sink *sink)
{
    return sg_container_of(sink, struct ts_sink, sink);
}

static void update_gauges(struct ts_sink *ts)
{
    sg_gauge_set(ts->m_pending,
                 (double)(ts->store.pending.count + ts->store.nheap + ts->rows_newer));
    sg_gauge_set(ts->m_inflight, (double)ts->requests_in_flight);
    sg_gauge_set(ts->m_queue_bytes, (double)ts->held_bytes);
    sg_gauge_set(ts->m_ready, ts->phase == TS_READY ? 1 : 0);
    if (ts->budget)
        sg_budget_set(ts->budget, SG_BUDGET_QUEUES, &ts->budget_held, ts->held_bytes);
}

/* A row freed with confirmations still waiting was never written. */
static void row_free(struct ts_sink *ts, struct sg_ts_held *r)
{
    ts->held_bytes -= r->bytes;
    sg_ts_held_tell(r, false);
    free(r);
}

/* ---- Building rows ---------------------------------------------------------------------- */

struct rb_col {
    size_t name_off, name_len;
    struct sg_ts_value v;
    size_t str_off; /* STRING and BINARY values: where the bytes are in the arena */
};

/* Columns a row may have: more are refused (OTSOutOfColumnCountLimit) before sending. */
#define TS_MAX_COLUMNS (SG_TS_COLUMNS_PER_WRITE_MAX + SG_TS_PK_MAX_COLUMNS)

/* Scratch for the row being built, kept from row to row so that building allocates nothing
 * once it has grown: cells whose names and strings go into a growing arena are recorded by
 * offset; once the row is complete they become its columns (`row`), which are encoded into
 * `enc`, and a held row copies that encoding. Nothing here outlives the row's add_row, but
 * `record`, which holds a dead-letter record while it is written. */
struct row_builder {
    struct rb_col *cols;
    size_t n, cap, npk;
    size_t max;    /* columns kept; past them the row only counts as too many */
    bool too_many; /* more than TS_MAX_COLUMNS */
    struct sg_buf arena;
    struct sg_ts_column *tscols;
    size_t tscap;
    struct sg_ts_row row;
    struct sg_buf enc, record;
    struct sg_buf sketch; /* a sketch's stored form, copied into the arena by rb_add */
};

/* `max`: columns to keep. A raw event's record is its own bytes, so its row may stop at one
 * past the limit; a result's record is rendered from its columns, so it keeps them all (a
 * result has at most a few thousand). */
static void rb_reset(struct row_builder *rb, size_t max)
{
    rb->n = 0;
    rb->npk = 0;
    rb->max = max;
    rb->too_many = false;
    sg_buf_reset(&rb->arena);
    sg_buf_reset(&rb->enc);
}

static void rb_free(struct row_builder *rb)
{
    if (!rb)
        return;
    free(rb->cols);
    free(rb->tscols);
    sg_buf_free(&rb->arena);
    sg_buf_free(&rb->enc);
    sg_buf_free(&rb->record);
    sg_buf_free(&rb->sketch);
    free(rb);
}

/* Appends `name` with every character a column name may not hold replaced by '_', and a
 * leading '_' when it would start with a digit. */
static int rb_append_name(struct row_builder *rb, const char *prefix, size_t prefix_len,
                          const char *name, size_t name_len, size_t *len)
{
    size_t start = rb->arena.len;
    int rc = 0;
    if (prefix_len && isdigit((unsigned char)prefix[0]))
        rc = sg_buf_append_char(&rb->arena, '_');
    else if (!prefix_len && name_len && isdigit((unsigned char)name[0]))
        rc = sg_buf_append_char(&rb->arena, '_');
    const char *parts[2] = {prefix, name};
    size_t lens[2] = {prefix_len, name_len};
    for (int p = 0; p < 2 && rc == 0; p++) {
        if (p == 1 && prefix_len)
            rc = sg_buf_append_char(&rb->arena, '_');
        for (size_t i = 0; i < lens[p] && rc == 0; i++) {
            char c = parts[p][i];
            rc = sg_buf_append_char(&rb->arena, isalnum((unsigned char)c) ? c : '_');
        }
    }
    *len = rb->arena.len - start;
    return rc;
}

static int rb_add(struct row_builder *rb, const char *prefix, const char *name, size_t name_len,
                  struct sg_ts_value v)
{
    if (rb->n >= TS_MAX_COLUMNS)
        rb->too_many = true;
    if (rb->n >= rb->max)
        return 0;
    if (rb->n == rb->cap) {
        size_t cap = rb->cap ? rb->cap * 2 : 64;
        struct rb_col *cols = realloc(rb->cols, cap * sizeof(*cols));
        if (!cols)
            return -ENOMEM;
        rb->cols = cols;
        rb->cap = cap;
    }
    struct rb_col *c = &rb->cols[rb->n];
    c->name_off = rb->arena.len;
    int rc = rb_append_name(rb, prefix, prefix ? strlen(prefix) : 0, name, name_len, &c->name_len);
    if (rc)
        return rc;
    c->v = v;
    if (v.type == SG_TS_STRING || v.type == SG_TS_BLOB) {
        c->str_off = rb->arena.len;
        rc = sg_buf_append(&rb->arena, v.bytes.ptr, v.bytes.len);
        if (rc)
            return rc;
    }
    rb->n++;
    return 0;
}

/* Makes rb->row of the cells added, now that the arena has stopped moving. */
static int rb_finish(struct row_builder *rb)
{
    if (rb->n > rb->tscap) {
        size_t cap = rb->cap; /* at least n */
        struct sg_ts_column *cols = realloc(rb->tscols, cap * sizeof(*cols));
        if (!cols)
            return -ENOMEM;
        rb->tscols = cols;
        rb->tscap = cap;
    }
    for (size_t i = 0; i < rb->n; i++) {
        const struct rb_col *c = &rb->cols[i];
        struct sg_ts_column *col = &rb->tscols[i];
        *col = (struct sg_ts_column){.name = rb->arena.data + c->name_off,
                                     .name_len = c->name_len,
                                     .has_value = true,
                                     .value = c->v,
                                     .op = SG_TS_OP_PUT};
        if (c->v.type == SG_TS_STRING || c->v.type == SG_TS_BLOB)
            col->value.bytes.ptr = rb->arena.data + c->str_off;
    }
    rb->row = (struct sg_ts_row){.pk = rb->tscols,
                                 .pk_count = rb->npk,
                                 .attrs = rb->tscols + rb->npk,
                                 .attr_count = rb->n - rb->npk};
    return 0;
}

/* Appends bytes as a JSON string of their base64. */
static int append_base64(struct sg_buf *out, const void *p, size_t len)
{
    if (len > INT_MAX / 2)
        return -EOVERFLOW;
    size_t n = 4 * ((len + 2) / 3);
    int rc = sg_buf_append_char(out, '"');
    if (rc == 0)
        rc = sg_buf_reserve(out, n + 2);
    if (rc != 0)
        return rc;
    EVP_EncodeBlock((unsigned char *)out->data + out->len, p, (int)len);
    out->len += n;
    return sg_buf_append_char(out, '"');
}

/* Appends a row's columns as one JSON object, {"<column>":<value>,...}, primary key first:
 * INTEGER and DOUBLE as numbers, BOOLEAN as true or false, STRING as a string, BINARY as a
 * string of its base64, anything else
 * (which the writer never makes) as null. A result row's dead-letter record. */
static int append_columns_json(struct sg_buf *out, const struct sg_ts_row *row)
{
    int rc = sg_buf_append_char(out, '{');
    for (size_t i = 0; rc == 0 && i < row->pk_count + row->attr_count; i++) {
        const struct sg_ts_column *c =
            i < row->pk_count ? &row->pk[i] : &row->attrs[i - row->pk_count];
        if (i > 0)
            rc = sg_buf_append_char(out, ',');
        if (rc == 0)
            rc = sg_buf_append_json_string(out, c->name, c->name_len);
        if (rc == 0)
            rc = sg_buf_append_char(out, ':');
        if (rc != 0)
            break;
        switch (c->has_value ? c->value.type : SG_TS_NULL) {
        case SG_TS_INTEGER:
            rc = sg_buf_append_int(out, c->value.i);
            break;
        case SG_TS_DOUBLE:
            rc = sg_buf_append_double(out, c->value.d);
            break;
        case SG_TS_BOOLEAN:
            rc = sg_buf_append_str(out, c->value.b ? "true" : "false");
            break;
        case SG_TS_STRING:
            rc = sg_buf_append_json_string(out, c->value.bytes.ptr, c->value.bytes.len);
            break;
        case SG_TS_BLOB:
            rc = append_base64(out, c->value.bytes.ptr, c->value.bytes.len);
            break;
        default:
            rc = sg_buf_append_str(out, "null");
            break;
        }
    }
    return rc ? rc : sg_buf_append_char(out, '}');
}

/* The row to hold: identity, then rb->enc (the encoded row), then `record` (raw rows). Its
 * primary key is valid: rb->enc encodes it. NULL when out of memory. */
static struct sg_ts_held *row_make(struct row_builder *rb, enum sg_ts_kind kind, const char *record,
                                   size_t record_len)
{
    size_t ident_len = 1;
    for (size_t i = 0; i < rb->row.pk_count; i++) {
        const struct sg_ts_value *v = &rb->row.pk[i].value;
        ident_len += 4 + (v->type == SG_TS_STRING ? v->bytes.len : 8);
    }
    size_t size = sizeof(struct sg_ts_held) + ident_len + rb->enc.len + record_len;
    struct sg_ts_held *r = malloc(size);
    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r));
    char *p = r->data;
    *p++ = (char)kind;
    for (size_t i = 0; i < rb->row.pk_count; i++) {
        const struct sg_ts_value *v = &rb->row.pk[i].value;
        uint32_t len = v->type == SG_TS_STRING ? (uint32_t)v->bytes.len : 8;
        memcpy(p, &len, 4);
        p += 4;
        memcpy(p, v->type == SG_TS_STRING ? v->bytes.ptr : (const void *)&v->i, len);
        p += len;
    }
    memcpy(p, rb->enc.data, rb->enc.len);
    p += rb->enc.len;
    if (record_len)
        memcpy(p, record, record_len);
    r->kind = (uint8_t)kind;
    r->ident_len = (uint32_t)ident_len;
    r->enc_len = (uint32_t)rb->enc.len;
    r->record_len = record_len;
    r->key_len = (uint16_t)rb->row.pk[0].value.bytes.len; /* at most 1 KB: a valid PK string */
    r->hash = sg_hash64(r->data, ident_len, 0x5453u);
    r->bytes = size + TS_ROW_OVERHEAD;
    return r;
}

/* Adds a field's statistic when it has a value (the JSON's null writes no column). */
static int rb_add_stat(struct row_builder *rb, const char *field, const char *name,
                       struct sg_result_stat v)
{
    return v.has_value ? rb_add(rb, field, name, strlen(name), sg_ts_double(v.value)) : 0;
}

/* A forecast field's cells: forecast, anomaly and next when they have a value, and a final
 * result's model in its stored form (BINARY), which a restart reads back. */
static int build_forecast_cells(struct row_builder *rb, const struct sg_result_field *f)
{
    int rc = rb_add_stat(rb, f->name, "forecast", f->forecast);
    if (rc == 0)
        rc = rb_add_stat(rb, f->name, "anomaly", f->anomaly);
    if (rc == 0)
        rc = rb_add_stat(rb, f->name, "next", f->next);
    if (rc == 0 && f->has_model)
        rc = rb_add(rb, f->name, "model", 5, sg_ts_blob(f->model, f->model_len));
    return rc;
}

/* Adds a sketch's stored form as a BINARY cell `<prefix>_<name>`. */
static int rb_add_encoded(struct row_builder *rb, const char *prefix, const char *name,
                          const struct sg_ddsketch *sketch, const struct sg_hll *hll)
{
    sg_buf_reset(&rb->sketch);
    int rc = sketch ? sg_ddsketch_encode(sketch, &rb->sketch) : sg_hll_encode(hll, &rb->sketch);
    if (rc == 0)
        rc = rb_add(rb, prefix, name, strlen(name), sg_ts_blob(rb->sketch.data, rb->sketch.len));
    return rc;
}

/* Adds one window result's cells: PK (key, window_start), then window_end, count, shard, per
 * field its statistics, its sketch and forecast, distinct and its registers, final. The values
 * are the result's own numbers, the ones its JSON holds. */
static int build_result_row(struct ts_sink *ts, const struct sg_window_result *res)
{
    struct row_builder *rb = ts->rb;
    int rc = rb_add(rb, NULL, "key", 3, sg_ts_string(res->key, res->key_len));
    if (rc == 0)
        rc = rb_add(rb, NULL, "window_start", 12, sg_ts_int(res->window_start));
    rb->npk = 2;
    if (rc == 0)
        rc = rb_add(rb, NULL, "window_end", 10, sg_ts_int(res->window_end));
    if (rc == 0)
        rc = rb_add(rb, NULL, "count", 5, sg_ts_int((int64_t)res->count));
    if (rc == 0)
        rc = rb_add(rb, NULL, "shard", 5,
                    sg_ts_int(sg_kafka_partition(res->key, res->key_len, ts->index_shards)));
    for (size_t i = 0; rc == 0 && i < res->nfields; i++) {
        const struct sg_result_field *f = &res->fields[i];
        rc = rb_add(rb, f->name, "count", 5, sg_ts_double((double)f->count));
        if (rc == 0)
            rc = rb_add_stat(rb, f->name, "sum", f->sum);
        if (rc == 0)
            rc = rb_add_stat(rb, f->name, "min", f->min);
        if (rc == 0)
            rc = rb_add_stat(rb, f->name, "max", f->max);
        if (rc == 0)
            rc = rb_add_stat(rb, f->name, "mean", f->mean);
        if (rc == 0)
            rc = rb_add_stat(rb, f->name, "stddev", f->stddev);
        if (rc == 0)
            rc = rb_add_stat(rb, f->name, "first", f->first);
        if (rc == 0)
            rc = rb_add_stat(rb, f->name, "last", f->last);
        for (size_t q = 0; rc == 0 && q < f->nquantiles; q++)
            rc = rb_add_stat(rb, f->name, f->quantiles[q].name, f->quantiles[q].value);
        if (rc == 0 && f->sketch)
            rc = rb_add_encoded(rb, f->name, "sketch", f->sketch, NULL);
        if (rc == 0 && f->predicted)
            rc = build_forecast_cells(rb, f);
    }
    if (rc == 0 && res->has_distinct)
        rc = rb_add(rb, NULL, "distinct", 8, sg_ts_int((int64_t)res->distinct));
    if (rc == 0 && res->has_distinct && res->hll)
        rc = rb_add_encoded(rb, "distinct", "hll", NULL, res->hll);
    if (rc == 0)
        rc = rb_add(rb, NULL, "final", 5, sg_ts_bool(res->final));
    return rc;
}

/* Integral numbers that a double holds exactly are written as INTEGER. */
static bool is_integral(double d)
{
    return isfinite(d) && d == floor(d) && fabs(d) <= 9007199254740992.0;
}

/* PK (key, ts, id) and one cell per top-level scalar field but the key and time fields. */
static int build_raw_row(struct ts_sink *ts, const struct sg_event *ev, char *idbuf,
                         size_t idbuf_size)
{
    struct row_builder *rb = ts->rb;
    cJSON *doc = cJSON_ParseWithLength(ev->raw, ev->raw_len);
    if (!doc)
        return -EINVAL;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
    const char *idp;
    size_t idlen;
    if (cJSON_IsString(id) && id->valuestring[0]) {
        idp = id->valuestring;
        idlen = strlen(idp);
    } else {
        /* Unique for this process and stable across retries of the row. */
        snprintf(idbuf, idbuf_size, "%016" PRIx64 "-%" PRIu64, ts->boot_id, ++ts->raw_seq);
        idp = idbuf;
        idlen = strlen(idbuf);
        id = NULL;
    }
    int rc = rb_add(rb, NULL, "key", 3, sg_ts_string(ev->key, ev->key_len));
    if (rc == 0)
        rc = rb_add(rb, NULL, "ts", 2, sg_ts_int(ev->ts_ms));
    if (rc == 0)
        rc = rb_add(rb, NULL, "id", 2, sg_ts_string(idp, idlen));
    rb->npk = 3;
    const cJSON *item;
    cJSON_ArrayForEach(item, doc)
    {
        if (rc != 0)
            break;
        const char *name = item->string;
        if (!name || strcmp(name, ts->key_field) == 0 || strcmp(name, ts->time_field) == 0 ||
            strcmp(name, "id") == 0 || strcmp(name, "key") == 0 || strcmp(name, "ts") == 0)
            continue;
        if (cJSON_IsNumber(item))
            rc = rb_add(rb, NULL, name, strlen(name),
                        is_integral(item->valuedouble) ? sg_ts_int((int64_t)item->valuedouble)
                                                       : sg_ts_double(item->valuedouble));
        else if (cJSON_IsString(item))
            rc = rb_add(rb, NULL, name, strlen(name),
                        sg_ts_string(item->valuestring, strlen(item->valuestring)));
        else if (cJSON_IsBool(item))
            rc = rb_add(rb, NULL, name, strlen(name), sg_ts_bool(cJSON_IsTrue(item)));
        /* Nested values and nulls have no column type. */
    }
    cJSON_Delete(doc);
    return rc;
}

/* ---- Outcomes --------------------------------------------------------------------------- */

static void count_code(struct ts_sink *ts, const char *code)
{
    size_t i = 0;
    for (; code && i < SG_ARRAY_SIZE(ts_known_codes); i++)
        if (strcmp(code, ts_known_codes[i]) == 0)
            break;
    sg_counter_inc(ts->m_codes[code ? i : SG_ARRAY_SIZE(ts_known_codes)]);
}

static void arm_linger(struct ts_sink *ts);
static void pump(struct ts_sink *ts);

/* The row left its place (written, failed for good or superseded): its key is free, and a
 * newer version that waited behind it becomes pending. */
static void row_done(struct ts_sink *ts, struct sg_ts_held *r)
{
    sg_ts_store_unindex(&ts->store, r);
    struct sg_ts_held *newer = r->newer;
    if (newer) {
        ts->rows_newer--;
        newer->state = SG_TS_ROW_PENDING;
        sg_ts_store_index(&ts->store, newer); /* the slot `r` held is free again */
        sg_ts_list_append(&ts->store.pending, newer);
        ts->store.pending_wire += newer->wire;
        arm_linger(ts);
    }
    row_free(ts, r);
}

/* Counts a row given up on, logs it (rate-limited) and hands its record to the dead-letter
 * output. `attempts` is how often it was sent (0: never). */
static void fail_record(struct ts_sink *ts, enum sg_ts_kind kind, const char *key, size_t key_len,
                        int attempts, const char *code, const char *message, const char *record,
                        size_t record_len)
{
    ts->failed++;
    sg_counter_inc(ts->m_failed[kind]);
    int64_t suppressed = sg_log_limiter_take(&ts->fail_limiter, sg_now_ms());
    if (suppressed >= 0)
        sg_error(ts->log, "tablestore row failed", SG_F_STR("table", ts->tables[kind]),
                 SG_F_STRN("key", key, key_len), SG_F_STR("error", code),
                 SG_F_STR("message", message ? message : ""), SG_F_INT("attempts", attempts + 1),
                 SG_F_INT("suppressed", suppressed));
    if (ts->dead_letter)
        sg_dead_letter_write(ts->dead_letter, "tablestore", key, key_len, code, message, record,
                             record_len);
}

/* A held row given up on. A raw event's record is the event as received, which the row keeps;
 * a result's is the object of its columns, decoded from its encoding (into rb->record), since
 * the row keeps nothing else of it. */
static void row_failed(struct ts_sink *ts, struct sg_ts_held *r, const char *code,
                       const char *message)
{
    const char *record = sg_ts_held_record(r);
    size_t record_len = r->record_len;
    if (ts->dead_letter && r->kind == SG_TS_KIND_AGG) {
        struct sg_ts_rows rows;
        struct sg_buf *out = &ts->rb->record;
        sg_buf_reset(out);
        record = NULL;
        record_len = 0;
        if (sg_ts_pb_decode(sg_ts_held_encoded(r), r->enc_len, SG_TS_DECODE_SINGLE, &rows, NULL,
                            0) == 0) {
            if (append_columns_json(out, &rows.rows[0]) == 0) {
                record = out->data;
                record_len = out->len;
            }
            sg_ts_rows_free(&rows);
        }
    }
    fail_record(ts, r->kind, sg_ts_held_key(r), r->key_len, r->attempts, code, message, record,
                record_len);
}

static uint64_t rng_next(struct ts_sink *ts)
{
    /* xorshift64*: only for retry jitter. */
    uint64_t x = ts->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    ts->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Exponential backoff with full jitter: uniform in [0, min(max, base * 2^attempt)]. */
static uint64_t backoff_ms(struct ts_sink *ts, int attempt)
{
    uint64_t d = ts->backoff_ms;
    for (int i = 1; i < attempt && d < ts->backoff_max_ms; i++)
        d *= 2;
    d = SG_MIN(d, ts->backoff_max_ms);
    return d ? rng_next(ts) % (d + 1) : 0;
}

static void on_retry_timer(uv_timer_t *t);

static void arm_retry(struct ts_sink *ts)
{
    const struct sg_ts_held *top = sg_ts_heap_first(&ts->store);
    if (ts->closing || !top)
        return;
    int64_t first = top->due_ms;
    if (ts->retry_armed_ms && ts->retry_armed_ms <= first)
        return;
    int64_t now = sg_now_ms();
    ts->retry_armed_ms = first;
    uv_timer_start(&ts->retry_timer, on_retry_timer, first > now ? (uint64_t)(first - now) : 0, 0);
}

static void on_retry_timer(uv_timer_t *t)
{
    struct ts_sink *ts = sg_container_of(t, struct ts_sink, retry_timer);
    int64_t now = sg_now_ms();
    ts->retry_armed_ms = 0;
    for (struct sg_ts_held *r; (r = sg_ts_heap_first(&ts->store)) && r->due_ms <= now;) {
        sg_ts_heap_remove(&ts->store, r);
        r->state = SG_TS_ROW_PENDING;
        sg_ts_list_append(&ts->store.pending, r);
        ts->store.pending_wire += r->wire;
    }
    if (ts->store.pending.head)
        ts->flush_now = true; /* retries have waited long enough already */
    arm_retry(ts);
    pump(ts);
}

/* A retriable failure: the row waits out a backoff and goes again, unless a newer version
 * replaces it or it is out of retries. */
static void row_retry(struct ts_sink *ts, struct sg_ts_held *r, const char *code,
                      const char *message)
{
    if (r->newer) {
        ts->superseded++;
        sg_counter_inc(ts->m_superseded);
        sg_ts_held_pass_dones(r, r->newer);
        row_done(ts, r);
        return;
    }
    if (r->attempts >= ts->max_retries || ts->closing) {
        row_failed(ts, r, code, message);
        row_done(ts, r);
        return;
    }
    r->attempts++;
    ts->retried++;
    sg_counter_inc(ts->m_retried[r->kind]);
    r->state = SG_TS_ROW_WAITING;
    r->due_ms = sg_now_ms() + (int64_t)backoff_ms(ts, r->attempts);
    sg_ts_heap_push(&ts->store, r); /* room was reserved when the row was accepted */
    arm_retry(ts);
}

/* ---- Accepting rows --------------------------------------------------------------------- */

static void on_linger(uv_timer_t *t)
{
    struct ts_sink *ts = sg_container_of(t, struct ts_sink, linger_timer);
    ts->flush_now = true;
    pump(ts);
}

static void arm_linger(struct ts_sink *ts)
{
    if (!ts->closing && ts->timers_init && !uv_is_active((uv_handle_t *)&ts->linger_timer))
        uv_timer_start(&ts->linger_timer, on_linger, ts->linger_ms, 0);
}

/* Takes a built row: replaces a pending or waiting version of the same key, waits behind an
 * in-flight one, or joins the pending list. `done` (may be NULL) is told when it is written. */
static int accept_row(struct ts_sink *ts, struct sg_ts_held *r, struct sg_sink_done *done)
{
    if (done) {
        r->dones = malloc(sizeof(*r->dones));
        if (r->dones)
            *r->dones = (struct sg_ts_done){NULL, done};
    }
    if ((done && !r->dones) || sg_ts_store_reserve(&ts->store) != 0) {
        row_failed(ts, r, "OutOfMemory", "no room to index the row");
        free(r->dones);
        free(r);
        return -ENOMEM;
    }
    /* The row without its PlainBuffer header, as sg_ts_pb_row_size counts it. */
    r->wire = (uint32_t)(r->enc_len - 4 + strlen(ts->tables[r->kind]) + TS_ROW_FRAMING);
    ts->held_bytes += r->bytes;
    struct sg_ts_held *old = sg_ts_store_find(&ts->store, r);
    if (!old) {
        r->state = SG_TS_ROW_PENDING;
        sg_ts_store_index(&ts->store, r);
        sg_ts_list_append(&ts->store.pending, r);
        ts->store.pending_wire += r->wire;
    } else if (old->state == SG_TS_ROW_PENDING || old->state == SG_TS_ROW_WAITING) {
        /* Not sent yet: the newer version takes its place (and its retry count: the key has
         * been failing). */
        sg_ts_store_unindex(&ts->store, old);
        sg_ts_store_index(&ts->store, r);
        r->state = SG_TS_ROW_PENDING;
        r->attempts = old->attempts;
        if (old->state == SG_TS_ROW_PENDING) {
            sg_ts_list_replace(&ts->store.pending, old, r);
            ts->store.pending_wire -= old->wire;
        } else {
            sg_ts_heap_remove(&ts->store, old);
            sg_ts_list_append(&ts->store.pending, r);
        }
        ts->store.pending_wire += r->wire;
        ts->superseded++;
        sg_counter_inc(ts->m_superseded);
        sg_ts_held_pass_dones(old, r);
        row_free(ts, old);
    } else { /* in flight: wait for its answer, then go */
        r->state = SG_TS_ROW_NEWER;
        if (old->newer) {
            ts->superseded++;
            sg_counter_inc(ts->m_superseded);
            sg_ts_held_pass_dones(old->newer, r);
            row_free(ts, old->newer);
        } else {
            ts->rows_newer++;
        }
        old->newer = r;
    }
    arm_linger(ts);
    pump(ts);
    update_gauges(ts);
    return 0;
}

/* Validates, encodes and accepts the row built in ts->rb. Rows the service would refuse (a key
 * over 1 KB, too many columns) are never sent, since one bad row fails the whole BatchWriteRow
 * request: they fail here with the code the service answers for them. `record` is a raw
 * event's bytes (kept with its row as its dead-letter record); a result's record is rendered
 * from its columns when needed. */
static int add_row(struct ts_sink *ts, enum sg_ts_kind kind, int build_rc, const char *key,
                   size_t key_len, const char *record, size_t record_len, struct sg_sink_done *done)
{
    struct row_builder *rb = ts->rb;
    char err[256] = "";
    const char *code = "OTSParameterInvalid";
    int rc = build_rc;
    bool built = false;
    if (rc == 0 && rb->too_many) {
        code = "OTSOutOfColumnCountLimit";
        snprintf(err, sizeof(err), "more than %d columns", SG_TS_COLUMNS_PER_WRITE_MAX);
        rc = -EINVAL;
    } else if (rc == -EINVAL) {
        snprintf(err, sizeof(err), "the record is not valid JSON");
    } else if (rc != 0) {
        code = "OutOfMemory";
        snprintf(err, sizeof(err), "%s", sg_strerror(rc));
    }
    if (rc == 0 || rb->too_many) { /* a row too wide is still a result's record */
        int frc = rb_finish(rb);
        built = frc == 0;
        if (rc == 0 && frc != 0) {
            rc = frc;
            code = "OutOfMemory";
            snprintf(err, sizeof(err), "out of memory");
        }
    }
    if (rc == 0) {
        /* Validates it: a row the service would refuse as invalid is not encoded. */
        rc = sg_ts_pb_encode(&rb->enc, SG_TS_ROW_PUT, &rb->row, err, sizeof(err));
        code = rc == -EINVAL ? "OTSParameterInvalid" : "OutOfMemory";
    }
    const char *message = err;
    if (rc == 0 && ts->phase == TS_FAILED) {
        rc = -EIO;
        code = ts->fatal_code;
        message = ts->fatal_message;
    }
    if (rc == 0 && rb->enc.len - 4 > SG_TS_REQUEST_MAX_BYTES - TS_REQUEST_MARGIN) {
        rc = -EINVAL;
        code = "OTSRequestBodyTooLarge";
        snprintf(err, sizeof(err), "the row alone exceeds the request size limit");
    }
    struct sg_ts_held *r = NULL;
    if (rc == 0) {
        r = row_make(rb, kind, kind == SG_TS_KIND_RAW ? record : NULL,
                     kind == SG_TS_KIND_RAW ? record_len : 0);
        if (!r) {
            rc = -ENOMEM;
            code = "OutOfMemory";
            snprintf(err, sizeof(err), "out of memory");
        }
    }
    if (rc != 0) {
        /* Reported as a row of the table it was meant for, not yet held. */
        if (kind == SG_TS_KIND_AGG) {
            record = NULL;
            record_len = 0;
            sg_buf_reset(&rb->record);
            if (ts->dead_letter && built && append_columns_json(&rb->record, &rb->row) == 0) {
                record = rb->record.data;
                record_len = rb->record.len;
            }
        }
        fail_record(ts, kind, key, key_len, 0, code, message, record, record_len);
        return rc == -ENOMEM ? rc : -EIO;
    }
    return accept_row(ts, r, done);
}

static int ts_write_result(struct sg_sink *sink, const struct sg_window_result *res,
                           struct sg_sink_done *done)
{
    struct ts_sink *ts = ts_of(sink);
    if (ts->closing)
        return -ESHUTDOWN;
    rb_reset(ts->rb, SIZE_MAX);
    int rc = build_result_row(ts, res);
    return add_row(ts, SG_TS_KIND_AGG, rc, res->key, res->key_len, NULL, 0, done);
}

static int ts_write_raw(struct sg_sink *sink, const struct sg_event *ev,
                        enum sg_transport transport, int64_t received_ms, struct sg_sink_done *done)
{
    struct ts_sink *ts = ts_of(sink);
    char idbuf[48];
    (void)transport;
    (void)received_ms;
    if (ts->closing)
        return -ESHUTDOWN;
    rb_reset(ts->rb, TS_MAX_COLUMNS);
    int rc = build_raw_row(ts, ev, idbuf, sizeof(idbuf));
    return add_row(ts, SG_TS_KIND_RAW, rc, ev->key, ev->key_len, ev->raw, ev->raw_len, done);
}

/* ---- Requests --------------------------------------------------------------------------- */

static void on_request_done(struct sg_curl_xfer *xfer, CURL *easy, CURLcode result);
static void req_free(struct ts_req *req);

static struct ts_req *req_get(struct ts_sink *ts)
{
    struct ts_req *req = ts->free_reqs;
    if (req) {
        ts->free_reqs = req->next;
        return req;
    }
    req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    req->ts = ts;
    req->rows = calloc(SG_TS_BATCH_MAX_ROWS, sizeof(*req->rows));
    req->sorted = calloc(SG_TS_BATCH_MAX_ROWS, sizeof(*req->sorted));
    req->writes = calloc(SG_TS_BATCH_MAX_ROWS, sizeof(*req->writes));
    req->call.xfer.done = on_request_done;
    if (sg_ts_call_init(&req->call, SG_TS_REQUEST_MAX_BYTES) != 0 || !req->rows || !req->sorted ||
        !req->writes) {
        req_free(req);
        return NULL;
    }
    req->call.xfer.done = on_request_done;
    return req;
}

static void req_free(struct ts_req *req)
{
    sg_ts_call_free(&req->call);
    free(req->writes);
    free(req->sorted);
    free(req->rows);
    free(req);
}

static void req_put(struct ts_sink *ts, struct ts_req *req)
{
    sg_ts_call_reset(&req->call);
    req->nrows = 0;
    req->next = ts->free_reqs;
    ts->free_reqs = req;
}

static void inflight_unlink(struct ts_sink *ts, struct ts_req *req)
{
    for (struct ts_req **pp = &ts->inflight_reqs; *pp; pp = &(*pp)->next)
        if (*pp == req) {
            *pp = req->next;
            break;
        }
    req->next = NULL;
    ts->requests_in_flight--;
}

/* Assembles the body of `req` from its rows' encodings (raw table first, then results). */
static int req_build(struct ts_sink *ts, struct ts_req *req, char *err, size_t errlen)
{
    struct sg_ts_encoded_table_writes tables[SG_TS_NKINDS];
    size_t ntables = 0, w = 0;
    /* Result rows must come back in request order: order rows by table first. */
    for (int k = 0; k < SG_TS_NKINDS; k++) {
        size_t first = w;
        for (size_t i = 0; i < req->nrows; i++) {
            const struct sg_ts_held *r = req->rows[i];
            if (r->kind != k)
                continue;
            req->sorted[w] = req->rows[i];
            req->writes[w] = (struct sg_ts_encoded_write){.type = SG_TS_WRITE_PUT,
                                                          .row = sg_ts_held_encoded(r),
                                                          .row_len = r->enc_len,
                                                          .expect = SG_TS_EXPECT_IGNORE,
                                                          .return_type = SG_TS_RETURN_NONE};
            w++;
        }
        if (w > first)
            tables[ntables++] = (struct sg_ts_encoded_table_writes){
                .table = ts->tables[k], .writes = req->writes + first, .write_count = w - first};
    }
    memcpy(req->rows, req->sorted, req->nrows * sizeof(*req->sorted));
    sg_buf_reset(&req->call.body);
    return sg_ts_bwr_build_encoded(&req->call.body, tables, ntables, err, errlen);
}

/* Every row of a request failed the same way. */
static void fail_request(struct ts_sink *ts, struct ts_req *req, bool retriable, const char *code,
                         const char *message)
{
    for (size_t i = 0; i < req->nrows; i++) {
        struct sg_ts_held *r = req->rows[i];
        ts->rows_in_flight--;
        count_code(ts, code);
        if (retriable) {
            row_retry(ts, r, code, message);
        } else {
            row_failed(ts, r, code, message);
            row_done(ts, r);
        }
    }
    req->nrows = 0;
}

/* Sends rows back to the front of the pending list, in order, untouched. */
static void requeue_rows(struct ts_sink *ts, struct ts_req *req)
{
    for (size_t i = req->nrows; i-- > 0;) {
        struct sg_ts_held *r = req->rows[i];
        ts->rows_in_flight--;
        r->state = SG_TS_ROW_PENDING;
        sg_ts_list_prepend(&ts->store.pending, r);
        ts->store.pending_wire += r->wire;
    }
    req->nrows = 0;
    ts->flush_now = true;
}

static void log_request_failure(struct ts_sink *ts, long status, const char *code,
                                const char *message, size_t rows)
{
    int64_t suppressed = sg_log_limiter_take(&ts->request_limiter, sg_now_ms());
    if (suppressed >= 0)
        sg_warn(ts->log, "tablestore request failed", SG_F_INT("status", status),
                SG_F_STR("error", code), SG_F_STR("message", message), SG_F_UINT("rows", rows),
                SG_F_INT("suppressed", suppressed));
}

static void handle_done(struct ts_sink *ts, struct ts_req *req, CURLcode result)
{
    long status = 0;
    double secs = (double)(uv_hrtime() - req->call.start_ns) / 1e9;
    sg_histogram_observe(ts->m_latency, secs);
    if (result == CURLE_OK)
        status = sg_ts_call_status(&req->call);
    sg_counter_inc(ts->m_requests[result != CURLE_OK ? 3
                                  : status >= 500    ? 2
                                  : status >= 400    ? 1
                                                     : 0]);
    if (result != CURLE_OK) {
        const char *msg = sg_ts_call_error(&req->call, result);
        log_request_failure(ts, 0, "connection", msg, req->nrows);
        ts->consecutive_failures++;
        fail_request(ts, req, true, result == CURLE_OPERATION_TIMEDOUT ? "timeout" : "connection",
                     msg);
        return;
    }
    if (status == 200) {
        struct sg_ts_bwr_result res = {0};
        char err[256] = "";
        if (sg_ts_call_verify(&req->call, &ts->creds, "BatchWriteRow") != 0) {
            log_request_failure(ts, status, "bad_signature",
                                "the response failed signature verification", req->nrows);
            ts->consecutive_failures++;
            fail_request(ts, req, true, "bad_signature", "response signature check failed");
            return;
        }
        if (sg_ts_bwr_parse(req->call.resp.data, req->call.resp.len, &res, err, sizeof(err)) != 0 ||
            res.row_count != req->nrows) {
            log_request_failure(ts, status, "bad_response", err, req->nrows);
            sg_ts_bwr_result_free(&res);
            ts->consecutive_failures++;
            fail_request(ts, req, true, "bad_response", err[0] ? err : "row count mismatch");
            return;
        }
        ts->consecutive_failures = 0;
        ts->batch_cap = SG_TS_BATCH_MAX_ROWS;
        for (size_t i = 0; i < req->nrows; i++) {
            struct sg_ts_held *r = req->rows[i];
            const struct sg_ts_row_result *rr = &res.rows[i];
            ts->rows_in_flight--;
            if (rr->ok) {
                ts->written++;
                sg_counter_inc(ts->m_written[r->kind]);
                sg_ts_held_tell(r, true);
                row_done(ts, r);
                continue;
            }
            count_code(ts, rr->error_code);
            if (sg_ts_error_should_retry("BatchWriteRow", true, 0, rr->error_code,
                                         rr->error_message)) {
                row_retry(ts, r, rr->error_code, rr->error_message);
            } else {
                row_failed(ts, r, rr->error_code, rr->error_message);
                row_done(ts, r);
            }
        }
        req->nrows = 0;
        sg_ts_bwr_result_free(&res);
        return;
    }
    char code[128] = "", message[512] = "";
    if (sg_ts_error_parse(req->call.resp.data, req->call.resp.len, code, sizeof(code), message,
                          sizeof(message)) != 0) {
        snprintf(code, sizeof(code), "http_%ld", status);
        snprintf(message, sizeof(message), "HTTP %ld without an error body", status);
    }
    /* Error answers are signed too; only an authentication failure may come unsigned (the
     * service cannot sign for a key it did not accept). A forged or garbled error must not
     * make rows fail for good: treat it like a lost answer. */
    if (strcmp(code, "OTSAuthFailed") != 0 &&
        sg_ts_call_verify(&req->call, &ts->creds, "BatchWriteRow") != 0) {
        log_request_failure(ts, status, "bad_signature",
                            "the error response failed signature verification", req->nrows);
        ts->consecutive_failures++;
        fail_request(ts, req, true, "bad_signature", "response signature check failed");
        return;
    }
    log_request_failure(ts, status, code, message, req->nrows);
    if ((status == 413 || strcmp(code, "OTSRequestBodyTooLarge") == 0) && req->nrows > 1) {
        /* Too large: halve the batches until one fits. */
        ts->batch_cap = SG_MAX(req->nrows / 2, (size_t)1);
        count_code(ts, "OTSRequestBodyTooLarge");
        requeue_rows(ts, req);
        return;
    }
    bool retry = sg_ts_error_should_retry("BatchWriteRow", true, (int)status, code, message);
    if (status >= 500 || retry)
        ts->consecutive_failures++;
    fail_request(ts, req, retry, code, message);
}

static void maybe_drained(struct ts_sink *ts);
static void check_done(struct ts_sink *ts, struct ts_req *req, CURLcode result);

/* A request or a check call has finished and is off the multi handle. */
static void on_request_done(struct sg_curl_xfer *xfer, CURL *easy, CURLcode result)
{
    struct ts_req *req = sg_container_of(xfer, struct ts_req, call.xfer);
    struct ts_sink *ts = req->ts;
    (void)easy;
    if (req == ts->check_req) {
        check_done(ts, req, result);
    } else {
        inflight_unlink(ts, req);
        handle_done(ts, req, result);
    }
    req_put(ts, req);
}

/* After a round of finished requests: send what became ready, and see whether that was all. */
static void on_curl_idle(void *arg)
{
    struct ts_sink *ts = arg;
    pump(ts);
    update_gauges(ts);
    maybe_drained(ts);
}

/* Moves up to a batch of pending rows into `req`. */
static void take_batch(struct ts_sink *ts, struct ts_req *req)
{
    size_t wire = 0;
    size_t limit = SG_TS_REQUEST_MAX_BYTES - TS_REQUEST_MARGIN;
    while (ts->store.pending.head && req->nrows < ts->batch_cap) {
        struct sg_ts_held *r = ts->store.pending.head;
        if (req->nrows > 0 && wire + r->wire > limit)
            break;
        sg_ts_list_remove(&ts->store.pending, r);
        ts->store.pending_wire -= r->wire;
        wire += r->wire;
        r->state = SG_TS_ROW_IN_FLIGHT;
        req->rows[req->nrows++] = r;
        ts->rows_in_flight++;
    }
}

static int send_request(struct ts_sink *ts, struct ts_req *req)
{
    char err[256] = "";
    int rc = req_build(ts, req, err, sizeof(err));
    while (rc == -E2BIG && req->nrows > 1) {
        /* The estimate was short: give the second half back and try the first. */
        size_t keep = req->nrows / 2;
        struct ts_req tail = {.rows = req->rows + keep, .nrows = req->nrows - keep};
        requeue_rows(ts, &tail);
        req->nrows = keep;
        rc = req_build(ts, req, err, sizeof(err));
    }
    if (rc != 0) {
        fail_request(ts, req, false, rc == -ENOMEM ? "OutOfMemory" : "OTSParameterInvalid",
                     err[0] ? err : sg_strerror(rc));
        return rc;
    }
    if (sg_ts_call_prepare(&req->call, &ts->creds, "BatchWriteRow", 0, (long)ts->timeout_ms) != 0) {
        fail_request(ts, req, true, "OutOfMemory", "cannot build the request headers");
        return -ENOMEM;
    }
    req->call.start_ns = uv_hrtime();
    if (sg_curl_uv_add(ts->curl, req->call.easy, &req->call.xfer) != 0) {
        fail_request(ts, req, true, "connection", "cannot start the request");
        return -EIO;
    }
    req->next = ts->inflight_reqs;
    ts->inflight_reqs = req;
    ts->requests_in_flight++;
    return 0;
}

/* Sends what is ready: full batches always, partial ones once the linger passed (or while
 * draining), as long as fewer than max_in_flight requests run. */
static void pump(struct ts_sink *ts)
{
    while (!ts->closing && ts->phase == TS_READY && ts->store.pending.head &&
           ts->requests_in_flight < ts->max_in_flight) {
        bool full = ts->store.pending.count >= ts->batch_cap ||
                    ts->store.pending_wire >= SG_TS_REQUEST_MAX_BYTES - TS_REQUEST_MARGIN;
        if (!full && !ts->flush_now && !ts->draining)
            break;
        struct ts_req *req = req_get(ts);
        if (!req)
            break;
        take_batch(ts, req);
        if (send_request(ts, req) != 0)
            req_put(ts, req);
    }
    if (!ts->store.pending.head) {
        ts->flush_now = false;
        if (ts->timers_init)
            uv_timer_stop(&ts->linger_timer);
    }
    update_gauges(ts);
}

/* ---- Health, drain, shutdown ------------------------------------------------------------ */

static bool ts_healthy(struct sg_sink *sink)
{
    struct ts_sink *ts = ts_of(sink);
    return ts->phase == TS_READY && ts->consecutive_failures < TS_UNHEALTHY_AFTER;
}

/* Rows wait within the budget while Tablestore is slow or down, or not checked yet; after a
 * definite configuration error they could only fail. */
static bool ts_accepting(struct sg_sink *sink)
{
    return ts_of(sink)->phase != TS_FAILED;
}

static void on_timer_closed(uv_handle_t *handle)
{
    /* The timers live inside the sink, which destroy frees once the loop has finished. */
    (void)handle;
}

/* Releases every loop handle: libcurl's (its sockets and timer), then the writer's timers. Requests
 * still in flight are taken off the multi handle; their rows stay held and are counted as failed by
 * destroy. */
static void close_handles(struct ts_sink *ts)
{
    if (ts->closing)
        return;
    ts->closing = true;
    if (ts->reader_init)
        sg_ts_reader_close(&ts->reader);
    if (ts->curl) {
        for (struct ts_req *req = ts->inflight_reqs; req; req = req->next)
            sg_curl_uv_remove(ts->curl, req->call.easy);
        if (ts->check_req)
            sg_curl_uv_remove(ts->curl, ts->check_req->call.easy);
        sg_curl_uv_close(ts->curl);
        ts->curl = NULL;
    }
    if (ts->timers_init) {
        uv_close((uv_handle_t *)&ts->linger_timer, on_timer_closed);
        uv_close((uv_handle_t *)&ts->retry_timer, on_timer_closed);
        uv_close((uv_handle_t *)&ts->check_timer, on_timer_closed);
    }
}

static void maybe_drained(struct ts_sink *ts)
{
    if (!ts->drained_cb || ts->store.pending.head || ts->store.nheap > 0 ||
        ts->requests_in_flight > 0 || ts->rows_newer > 0)
        return;
    sg_sink_drained_cb cb = ts->drained_cb;
    ts->drained_cb = NULL;
    close_handles(ts);
    cb(&ts->sink, ts->drained_arg);
}

static void ts_drain(struct sg_sink *sink, sg_sink_drained_cb cb, void *arg)
{
    struct ts_sink *ts = ts_of(sink);
    ts->draining = true;
    ts->drained_cb = cb;
    ts->drained_arg = arg;
    /* Rows waiting out a backoff keep waiting: the caller's deadline bounds the drain. */
    pump(ts);
    maybe_drained(ts);
}

static void ts_abandon(struct sg_sink *sink)
{
    struct ts_sink *ts = ts_of(sink);
    if (ts->closing)
        return;
    sg_warn(ts->log, "tablestore drain abandoned",
            SG_F_UINT("rows_pending", ts->store.pending.count),
            SG_F_UINT("rows_waiting", ts->store.nheap),
            SG_F_UINT("rows_in_flight", ts->rows_in_flight));
    ts->drained_cb = NULL;
    close_handles(ts);
}

static size_t fail_list(struct ts_sink *ts, struct sg_ts_held *r)
{
    size_t n = 0;
    for (struct sg_ts_held *next; r; r = next) {
        next = r->next;
        if (r->newer) {
            ts->failed++;
            sg_counter_inc(ts->m_failed[r->newer->kind]);
            row_free(ts, r->newer);
            n++;
        }
        ts->failed++;
        sg_counter_inc(ts->m_failed[r->kind]);
        row_free(ts, r);
        n++;
    }
    return n;
}

static void ts_destroy(struct sg_sink *sink)
{
    if (!sink)
        return;
    struct ts_sink *ts = ts_of(sink);
    if (!ts->closing && (ts->timers_init || ts->curl)) {
        close_handles(ts);
        uv_run(ts->loop, UV_RUN_NOWAIT);
    }
    /* What is still held could not be written: count it, and say so. */
    size_t left = fail_list(ts, ts->store.pending.head);
    for (size_t i = 0; i < ts->store.nheap; i++) {
        ts->store.heap[i]->next = NULL;
        left += fail_list(ts, ts->store.heap[i]);
    }
    for (struct ts_req *req = ts->inflight_reqs, *next; req; req = next) {
        next = req->next;
        for (size_t i = 0; i < req->nrows; i++)
            req->rows[i]->next = i + 1 < req->nrows ? req->rows[i + 1] : NULL;
        if (req->nrows)
            left += fail_list(ts, req->rows[0]);
        req_free(req);
    }
    if (left)
        sg_error(ts->log, "tablestore rows left unwritten at shutdown", SG_F_UINT("rows", left));
    if (ts->check_req)
        req_free(ts->check_req);
    for (struct ts_req *req = ts->free_reqs, *next; req; req = next) {
        next = req->next;
        req_free(req);
    }
    if (ts->budget)
        sg_budget_set(ts->budget, SG_BUDGET_QUEUES, &ts->budget_held, 0);
    rb_free(ts->rb);
    sg_ts_store_free(&ts->store);
    if (ts->secret) /* do not leave the secret in freed memory */
        memset(ts->secret, 0, strlen(ts->secret));
    free(ts->endpoint);
    free(ts->instance);
    free(ts->akid);
    free(ts->secret);
    free(ts->sts_token);
    for (int k = 0; k < SG_TS_NKINDS; k++)
        free(ts->tables[k]);
    free(ts->key_field);
    free(ts->time_field);
    free(ts->time_index_name);
    free(ts);
}

/* ---- Start-up: secret and tables -------------------------------------------------------- */

static int read_secret(const char *path, char **out, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int err = -errno;
        snprintf(errstr, errstr_size, "tablestore.access_key_secret_file: cannot open %s: %s", path,
                 strerror(errno));
        return err;
    }
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *nl = strpbrk(buf, "\r\n");
    if (nl)
        *nl = '\0';
    if (!buf[0]) {
        snprintf(errstr, errstr_size, "tablestore.access_key_secret_file: %s is empty", path);
        return -EINVAL;
    }
    *out = strdup(buf);
    memset(buf, 0, sizeof(buf));
    return *out ? 0 : -ENOMEM;
}

/* ---- Start-up checks -------------------------------------------------------------------- */

/* Every table the writer writes to is checked before any row is sent: DescribeTable, then
 * CreateTable when it is missing and tablestore.create_tables is set. The first round runs in
 * sg_sink_tablestore_create, blocking, one call after the other, so that a definite
 * configuration error (a missing table, another primary key, a refused AccessKey) stops
 * start-up. When Tablestore cannot be reached, is busy, or gives an answer that cannot be
 * trusted, the writer starts anyway: it holds rows (charged to the budget, as when Tablestore
 * goes down later), reports itself unhealthy, and repeats the calls on the loop with the rows'
 * retry backoff until they pass; then it sends what it holds. A definite error found by a later
 * round fails the writer for good. */

static const struct sg_ts_pk_column ts_agg_pk[] = {{"key", SG_TS_STRING},
                                                   {"window_start", SG_TS_INTEGER}};
static const struct sg_ts_pk_column ts_raw_pk[] = {
    {"key", SG_TS_STRING}, {"ts", SG_TS_INTEGER}, {"id", SG_TS_STRING}};
/* The time index (tablestore.time_index): results by shard, then time, then key, carrying
 * the two columns a time slice shows without reading the row. Its columns are predefined in
 * the results table with the types the writer sends. */
static const struct sg_ts_defined_column ts_time_defined[] = {
    {"shard", SG_TS_INTEGER}, {"count", SG_TS_INTEGER}, {"window_end", SG_TS_INTEGER}};
static const char *const ts_time_pk[] = {"shard", "window_start", "key"};
static const char *const ts_time_columns[] = {"count", "window_end"};

/* Table `kind`'s schema: the results table has the time index when it is on. */
static struct sg_ts_table_schema ts_schema(const struct ts_sink *ts, enum sg_ts_kind kind)
{
    if (kind == SG_TS_KIND_RAW)
        return (struct sg_ts_table_schema){.pk = ts_raw_pk, .pk_count = 3};
    struct sg_ts_table_schema s = {.pk = ts_agg_pk, .pk_count = 2};
    if (ts->time_index.name) {
        s.defined = ts_time_defined;
        s.defined_count = SG_ARRAY_SIZE(ts_time_defined);
        s.indexes = &ts->time_index;
        s.index_count = 1;
    }
    return s;
}
/* The order the tables are checked in. */
static const enum sg_ts_kind ts_check_order[SG_TS_NKINDS] = {SG_TS_KIND_AGG, SG_TS_KIND_RAW};

enum ts_check_result {
    TS_CHECK_NEXT,  /* the call did its part: on to the next one */
    TS_CHECK_RETRY, /* unreachable, busy, or an answer that cannot be trusted: again later */
    TS_CHECK_FATAL, /* a definite configuration error */
};

/* The table being checked, skipping the kinds that are off; SG_TS_NKINDS once all passed. */
static enum sg_ts_kind check_kind(struct ts_sink *ts)
{
    while (ts->check_at < SG_TS_NKINDS && !ts->tables[ts_check_order[ts->check_at]][0])
        ts->check_at++;
    return ts->check_at < SG_TS_NKINDS ? ts_check_order[ts->check_at] : SG_TS_NKINDS;
}

/* Packs the next check call of table `kind` into the call's body and signs it. Returns its
 * operation, or NULL when out of memory. */
static const char *check_pack(struct ts_sink *ts, enum sg_ts_kind kind, struct ts_req *req)
{
    const char *table = ts->tables[kind];
    const char *operation = ts_check_ops[ts->check_op];
    struct sg_ts_create_table ct = {
        .table = table, .schema = ts_schema(ts, kind), .max_versions = 1};
    struct sg_buf *body = &req->call.body;
    sg_buf_reset(body);
    /* The index of a table that already holds rows indexes them too. */
    int rc = ts->check_op == TS_CHECK_CREATE_TABLE ? sg_ts_create_table_build(body, &ct, NULL, 0)
             : ts->check_op == TS_CHECK_CREATE_INDEX
                 ? sg_ts_create_index_build(body, table, &ts->time_index, true, NULL, 0)
                 : sg_ts_describe_table_build(body, table, NULL, 0);
    if (rc == 0)
        rc = sg_ts_call_prepare(&req->call, &ts->creds, operation, TS_CHECK_CONNECT_TIMEOUT_MS,
                                TS_CHECK_TIMEOUT_MS);
    return rc == 0 ? operation : NULL;
}

/* Judges the answer to check call `operation` of table `kind` (`result`: the transfer's
 * outcome) and moves the check on when it did its part. For RETRY and FATAL, says why in
 * errstr; FATAL also sets ts->fatal_code. */
static enum ts_check_result check_answer(struct ts_sink *ts, enum sg_ts_kind kind,
                                         const char *operation, struct ts_req *req, CURLcode result,
                                         char *errstr, size_t errstr_size)
{
    const char *table = ts->tables[kind];
    char code[128] = "", msg[512] = "";
    if (result != CURLE_OK) {
        snprintf(errstr, errstr_size, "tablestore: %s %s: %s", operation, ts->endpoint,
                 sg_ts_call_error(&req->call, result));
        return TS_CHECK_RETRY;
    }
    long status = sg_ts_call_status(&req->call);
    if (status != 200) {
        if (sg_ts_error_parse(req->call.resp.data, req->call.resp.len, code, sizeof(code), msg,
                              sizeof(msg)) != 0) {
            snprintf(code, sizeof(code), "HTTP %ld", status);
            msg[0] = '\0';
        }
    }
    /* Answers are signed; only an authentication failure may come unsigned (the service cannot
     * sign for a key it did not accept). Anything else that fails the check (a proxy's error
     * page, a garbled answer) says nothing about the table: ask again. */
    bool auth_failed = status != 200 && strcmp(code, "OTSAuthFailed") == 0;
    if (!auth_failed && sg_ts_call_verify(&req->call, &ts->creds, operation) != 0) {
        snprintf(errstr, errstr_size,
                 "tablestore: %s %s: HTTP %ld, the answer failed signature verification", operation,
                 table, status);
        return TS_CHECK_RETRY;
    }
    if (status == 200 && ts->check_op == TS_CHECK_CREATE_TABLE) {
        sg_info(ts->log, "tablestore table created", SG_F_STR("table", table),
                SG_F_STR("index", kind == SG_TS_KIND_AGG ? ts->time_index.name : NULL));
        goto next_table;
    }
    if (status == 200 && ts->check_op == TS_CHECK_CREATE_INDEX) {
        sg_info(ts->log, "tablestore index created", SG_F_STR("table", table),
                SG_F_STR("index", ts->time_index.name));
        goto next_table;
    }
    if (status == 200) {
        struct sg_ts_table_schema schema = ts_schema(ts, kind);
        size_t at = (size_t)snprintf(errstr, errstr_size, "tablestore: ");
        int rc = sg_ts_describe_table_check(req->call.resp.data, req->call.resp.len, table, &schema,
                                            errstr + at, errstr_size - at);
        if (rc == -EBADMSG)
            return TS_CHECK_RETRY;
        if (rc == -ENOENT && ts->create_tables) {
            ts->check_op = TS_CHECK_CREATE_INDEX;
            return TS_CHECK_NEXT;
        }
        if (rc == -ENOENT) {
            snprintf(errstr, errstr_size,
                     "tablestore: index %s of table %s does not exist (create it, set "
                     "tablestore.create_tables=true, or turn it off with "
                     "tablestore.time_index=\"\")",
                     ts->time_index.name, table);
            snprintf(ts->fatal_code, sizeof(ts->fatal_code), "OTSObjectNotExist");
            return TS_CHECK_FATAL;
        }
        if (rc != 0) {
            snprintf(ts->fatal_code, sizeof(ts->fatal_code), "table_schema");
            return TS_CHECK_FATAL;
        }
        goto next_table;
    }
    if (strcmp(operation, "DescribeTable") == 0 && strcmp(code, "OTSObjectNotExist") == 0) {
        if (!ts->create_tables) {
            snprintf(errstr, errstr_size,
                     "tablestore: table %s does not exist (create it, or set "
                     "tablestore.create_tables=true)",
                     table);
            snprintf(ts->fatal_code, sizeof(ts->fatal_code), "%s", code);
            return TS_CHECK_FATAL;
        }
        ts->check_op = TS_CHECK_CREATE_TABLE;
        return TS_CHECK_NEXT;
    }
    /* Created meanwhile by another instance: fine, its schema is checked at the next start. */
    if (ts->check_op != TS_CHECK_DESCRIBE && strcmp(code, "OTSObjectAlreadyExist") == 0)
        goto next_table;
    snprintf(errstr, errstr_size, "tablestore: %s %s: %s %s", operation, table, code, msg);
    /* Table operations are throttled too; and a CreateTable that failed on the server's side
     * may be asked again (it either created the table or not). */
    if (!auth_failed && (sg_ts_error_should_retry(operation, false, (int)status, code, msg) ||
                         (ts->check_op != TS_CHECK_DESCRIBE && status >= 500)))
        return TS_CHECK_RETRY;
    snprintf(ts->fatal_code, sizeof(ts->fatal_code), "%s", code);
    return TS_CHECK_FATAL;
next_table:
    ts->check_op = TS_CHECK_DESCRIBE;
    ts->check_at++;
    return TS_CHECK_NEXT;
}

/* The first round, blocking (before the loop runs). Returns 0 when every table passed,
 * -EAGAIN when Tablestore could not tell yet (the loop carries on), -EINVAL on a definite
 * configuration error, or -ENOMEM; errstr says why. */
static int check_blocking(struct ts_sink *ts, char *errstr, size_t errstr_size)
{
    struct ts_req *req = req_get(ts);
    enum sg_ts_kind kind;
    int rc = 0;
    if (!req) {
        snprintf(errstr, errstr_size, "tablestore: out of memory");
        return -ENOMEM;
    }
    while (rc == 0 && (kind = check_kind(ts)) != SG_TS_NKINDS) {
        const char *operation = check_pack(ts, kind, req);
        if (!operation) {
            snprintf(errstr, errstr_size, "tablestore: out of memory");
            rc = -ENOMEM;
            break;
        }
        CURLcode result = curl_easy_perform(req->call.easy);
        switch (check_answer(ts, kind, operation, req, result, errstr, errstr_size)) {
        case TS_CHECK_NEXT:
            break;
        case TS_CHECK_RETRY:
            rc = -EAGAIN;
            break;
        case TS_CHECK_FATAL:
            rc = -EINVAL;
            break;
        }
    }
    req_put(ts, req);
    return rc;
}

static void on_check_timer(uv_timer_t *t);

/* Asks again after the rows' retry backoff. */
static void check_later(struct ts_sink *ts)
{
    ts->check_failures++;
    if (!ts->closing)
        uv_timer_start(&ts->check_timer, on_check_timer, backoff_ms(ts, ts->check_failures), 0);
}

static void check_log_retry(struct ts_sink *ts, const char *why)
{
    int64_t suppressed = sg_log_limiter_take(&ts->check_limiter, sg_now_ms());
    if (suppressed >= 0)
        sg_warn(ts->log, "tablestore start-up check failed; retrying", SG_F_STR("error", why),
                SG_F_INT("attempt", ts->check_failures), SG_F_INT("suppressed", suppressed));
}

/* The checks passed: send what was held meanwhile. */
static void become_ready(struct ts_sink *ts)
{
    ts->phase = TS_READY;
    sg_info(ts->log, "tablestore writer ready", SG_F_STR("endpoint", ts->endpoint),
            SG_F_STR("instance", ts->instance),
            SG_F_STR("results_table", ts->tables[SG_TS_KIND_AGG]),
            SG_F_STR("raw_table", ts->tables[SG_TS_KIND_RAW]));
    ts->flush_now = true;
    pump(ts);
}

static void fail_all_held(struct ts_sink *ts, struct sg_ts_list *l)
{
    while (l->head) {
        struct sg_ts_held *r = l->head;
        sg_ts_list_remove(l, r);
        if (r->state == SG_TS_ROW_PENDING)
            ts->store.pending_wire -= r->wire;
        row_failed(ts, r, ts->fatal_code, ts->fatal_message);
        row_done(ts, r); /* a newer version cannot wait behind a row that was never sent */
    }
}

/* A later round found a definite configuration error: nothing can be written, ever. What is
 * held fails now (to the dead-letter output), and so does every row from now on. */
static void become_failed(struct ts_sink *ts, const char *why)
{
    ts->phase = TS_FAILED;
    snprintf(ts->fatal_message, sizeof(ts->fatal_message), "%s", why);
    sg_error(ts->log, "tablestore writer failed for good", SG_F_STR("error", why));
    fail_all_held(ts, &ts->store.pending);
    for (struct sg_ts_held *r; (r = sg_ts_heap_first(&ts->store));) {
        sg_ts_heap_remove(&ts->store, r);
        row_failed(ts, r, ts->fatal_code, ts->fatal_message);
        row_done(ts, r);
    }
    update_gauges(ts);
}

/* The next check call, on the loop. */
static void check_start(struct ts_sink *ts)
{
    enum sg_ts_kind kind = check_kind(ts);
    if (ts->closing || ts->check_req)
        return;
    if (kind == SG_TS_NKINDS) {
        become_ready(ts);
        return;
    }
    struct ts_req *req = req_get(ts);
    const char *operation = req ? check_pack(ts, kind, req) : NULL;
    if (!operation || sg_curl_uv_add(ts->curl, req->call.easy, &req->call.xfer) != 0) {
        if (req)
            req_put(ts, req);
        check_log_retry(ts, "tablestore: cannot start a check call (out of memory)");
        check_later(ts);
        return;
    }
    ts->check_req = req;
}

static void on_check_timer(uv_timer_t *t)
{
    check_start(sg_container_of(t, struct ts_sink, check_timer));
}

/* A check call on the loop has finished (check_multi_info took it off the multi handle). */
static void check_done(struct ts_sink *ts, struct ts_req *req, CURLcode result)
{
    char why[1024];
    enum sg_ts_kind kind = check_kind(ts);
    const char *operation = ts_check_ops[ts->check_op];
    ts->check_req = NULL;
    switch (check_answer(ts, kind, operation, req, result, why, sizeof(why))) {
    case TS_CHECK_NEXT: /* the next call (or becoming ready) from the loop, not from here */
        ts->check_failures = 0;
        if (!ts->closing)
            uv_timer_start(&ts->check_timer, on_check_timer, 0, 0);
        break;
    case TS_CHECK_RETRY:
        check_later(ts);
        check_log_retry(ts, why);
        break;
    case TS_CHECK_FATAL:
        become_failed(ts, why);
        break;
    }
}

static int register_metrics(struct ts_sink *ts, struct sg_metrics *m)
{
    char labels[160];
    for (int k = 0; k < SG_TS_NKINDS; k++) {
        snprintf(labels, sizeof(labels), "sink=\"tablestore\",stream=\"%s\",result=\"written\"",
                 ts_kind_names[k]);
        ts->m_written[k] = sg_metrics_counter(m, SG_METRIC_SINK_RECORDS_TOTAL, labels);
        snprintf(labels, sizeof(labels), "sink=\"tablestore\",stream=\"%s\",result=\"failed\"",
                 ts_kind_names[k]);
        ts->m_failed[k] = sg_metrics_counter(m, SG_METRIC_SINK_RECORDS_TOTAL, labels);
        snprintf(labels, sizeof(labels), "table_kind=\"%s\"", ts_kind_names[k]);
        ts->m_retried[k] = sg_metrics_counter(m, SG_METRIC_TABLESTORE_ROWS_RETRIED_TOTAL, labels);
        if (!ts->m_written[k] || !ts->m_failed[k] || !ts->m_retried[k])
            return -ENOMEM;
    }
    for (size_t i = 0; i < TS_NCODES; i++) {
        snprintf(labels, sizeof(labels), "code=\"%s\"",
                 i < SG_ARRAY_SIZE(ts_known_codes) ? ts_known_codes[i] : "other");
        ts->m_codes[i] = sg_metrics_counter(m, SG_METRIC_TABLESTORE_ROW_ERRORS_TOTAL, labels);
        if (!ts->m_codes[i])
            return -ENOMEM;
    }
    static const char *const statuses[4] = {"2xx", "4xx", "5xx", "error"};
    for (int i = 0; i < 4; i++) {
        snprintf(labels, sizeof(labels), "status=\"%s\"", statuses[i]);
        ts->m_requests[i] = sg_metrics_counter(m, SG_METRIC_TABLESTORE_REQUESTS_TOTAL, labels);
        if (!ts->m_requests[i])
            return -ENOMEM;
    }
    ts->m_superseded = sg_metrics_counter(m, SG_METRIC_TABLESTORE_ROWS_SUPERSEDED_TOTAL, NULL);
    ts->m_latency = sg_metrics_histogram(m, SG_METRIC_TABLESTORE_REQUEST_SECONDS, NULL,
                                         latency_bounds, SG_ARRAY_SIZE(latency_bounds));
    ts->m_pending = sg_metrics_gauge(m, SG_METRIC_TABLESTORE_ROWS_PENDING, NULL);
    ts->m_inflight = sg_metrics_gauge(m, SG_METRIC_TABLESTORE_REQUESTS_IN_FLIGHT, NULL);
    ts->m_queue_bytes = sg_metrics_gauge(m, SG_METRIC_SINK_QUEUE_BYTES, "sink=\"tablestore\"");
    ts->m_ready = sg_metrics_gauge(m, SG_METRIC_TABLESTORE_READY, NULL);
    if (!ts->m_superseded || !ts->m_latency || !ts->m_pending || !ts->m_inflight ||
        !ts->m_queue_bytes || !ts->m_ready)
        return -ENOMEM;
    return 0;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

static int ts_info(struct sg_sink *sink, struct sg_buf *out);

int sg_sink_tablestore_create(uv_loop_t *loop, const struct sg_config *cfg,
                              struct sg_budget *budget, struct sg_dead_letter *dead_letter,
                              struct sg_metrics *metrics, struct sg_log *log, struct sg_sink **out,
                              char *errstr, size_t errstr_size)
{
    int rc;
    struct ts_sink *ts = calloc(1, sizeof(*ts));
    if (!ts) {
        snprintf(errstr, errstr_size, "tablestore: out of memory");
        return -ENOMEM;
    }
    ts->loop = loop;
    ts->log = log;
    ts->budget = budget;
    ts->dead_letter = dead_letter;
    ts->max_in_flight = SG_MAX(cfg->tablestore_max_in_flight, (int64_t)1);
    ts->max_retries = SG_MAX(cfg->tablestore_max_retries, (int64_t)0);
    ts->linger_ms = cfg->tablestore_linger_ms;
    ts->timeout_ms =
        cfg->tablestore_request_timeout_ms ? cfg->tablestore_request_timeout_ms : 30000;
    ts->backoff_ms = cfg->tablestore_retry_backoff_ms;
    ts->backoff_max_ms = SG_MAX(cfg->tablestore_retry_backoff_max_ms, ts->backoff_ms);
    ts->create_tables = cfg->tablestore_create_tables;
    ts->index_shards = (int32_t)SG_MAX(cfg->tablestore_index_shards, (int64_t)1);
    ts->phase = TS_CHECKING;
    ts->batch_cap = SG_TS_BATCH_MAX_ROWS;
    ts->boot_id = (uint64_t)sg_now_ms();
    ts->rng = uv_hrtime() | 1;
    ts->fail_limiter.interval_ms = (int64_t)cfg->log_bad_input_interval_ms;
    ts->request_limiter.interval_ms = (int64_t)cfg->log_bad_input_interval_ms;
    ts->check_limiter.interval_ms = (int64_t)cfg->log_bad_input_interval_ms;
    const char *raw = cfg->tablestore_raw_table, *agg = cfg->tablestore_results_table;
    ts->ops = (struct sg_sink_ops){
        .name = "tablestore",
        .info = ts_info,
        .write_raw = raw && *raw ? ts_write_raw : NULL,
        .write_result = agg && *agg ? ts_write_result : NULL,
        .result_numbers_only = true,
        .healthy = ts_healthy,
        .accepting = ts_accepting,
        .drain = ts_drain,
        .abandon = ts_abandon,
        .destroy = ts_destroy,
    };
    ts->sink.ops = &ts->ops;
    ts->endpoint = dup_or_empty(cfg->tablestore_endpoint);
    ts->instance = dup_or_empty(cfg->tablestore_instance);
    ts->akid = dup_or_empty(cfg->tablestore_access_key_id);
    ts->sts_token = dup_or_empty(cfg->tablestore_sts_token);
    ts->tables[SG_TS_KIND_RAW] = dup_or_empty(raw);
    ts->tables[SG_TS_KIND_AGG] = dup_or_empty(agg);
    ts->key_field = dup_or_empty(cfg->event_key_field);
    ts->time_field = dup_or_empty(cfg->event_time_field);
    ts->rb = calloc(1, sizeof(*ts->rb));
    if (!ts->endpoint || !ts->instance || !ts->akid || !ts->sts_token ||
        !ts->tables[SG_TS_KIND_RAW] || !ts->tables[SG_TS_KIND_AGG] || !ts->key_field ||
        !ts->time_field || !ts->rb || register_metrics(ts, metrics) != 0) {
        snprintf(errstr, errstr_size, "tablestore: out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    sg_buf_init(&ts->rb->arena, 0);
    sg_buf_init(&ts->rb->enc, 0);
    sg_buf_init(&ts->rb->record, 0);
    sg_buf_init(&ts->rb->sketch, 0);
    /* A trailing slash would make "//BatchWriteRow", which the service does not route. */
    size_t elen = strlen(ts->endpoint);
    while (elen > 0 && ts->endpoint[elen - 1] == '/')
        ts->endpoint[--elen] = '\0';
    if (strncmp(ts->endpoint, "http://", 7) != 0 && strncmp(ts->endpoint, "https://", 8) != 0) {
        snprintf(errstr, errstr_size,
                 "tablestore.endpoint: expected http://host[:port] or https://host[:port], got %s",
                 ts->endpoint);
        rc = -EINVAL;
        goto fail;
    }
    if (cfg->tablestore_access_key_secret_file && cfg->tablestore_access_key_secret_file[0]) {
        rc = read_secret(cfg->tablestore_access_key_secret_file, &ts->secret, errstr, errstr_size);
        if (rc)
            goto fail;
    } else {
        ts->secret = dup_or_empty(cfg->tablestore_access_key_secret);
    }
    if (!ts->secret || !ts->secret[0] || !ts->akid[0] || !ts->instance[0]) {
        snprintf(errstr, errstr_size,
                 "tablestore: tablestore.instance, tablestore.access_key_id and a secret "
                 "(tablestore.access_key_secret or _file) are required with tablestore.endpoint");
        rc = -EINVAL;
        goto fail;
    }
    ts->creds = (struct sg_ts_creds){.endpoint = ts->endpoint,
                                     .instance = ts->instance,
                                     .akid = ts->akid,
                                     .secret = ts->secret,
                                     .sts_token = ts->sts_token};
    const char *ti = cfg->tablestore_time_index ? cfg->tablestore_time_index : "";
    if (agg && *agg && *ti) {
        if (strcmp(ti, "auto") == 0 ? asprintf(&ts->time_index_name, "%s_by_time", agg) < 0
                                    : !(ts->time_index_name = strdup(ti))) {
            ts->time_index_name = NULL;
            snprintf(errstr, errstr_size, "tablestore: out of memory");
            rc = -ENOMEM;
            goto fail;
        }
        struct sg_buf probe; /* the protocol library judges the name */
        sg_buf_init(&probe, 0);
        struct sg_ts_index ix = {.name = ts->time_index_name, .pk = ts_time_pk, .pk_count = 1};
        rc = sg_ts_create_index_build(&probe, agg, &ix, false, NULL, 0);
        sg_buf_free(&probe);
        if (rc == -EINVAL) {
            snprintf(errstr, errstr_size,
                     "tablestore.time_index: \"%s\" is not a valid index name (1 to 255 ASCII "
                     "letters, digits and _, not starting with a digit)",
                     ts->time_index_name);
            goto fail;
        }
        ts->time_index = (struct sg_ts_index){.name = ts->time_index_name,
                                              .pk = ts_time_pk,
                                              .pk_count = SG_ARRAY_SIZE(ts_time_pk),
                                              .columns = ts_time_columns,
                                              .column_count = SG_ARRAY_SIZE(ts_time_columns)};
    }
    /* A definite configuration error stops start-up here. */
    char why[1024] = "";
    int check_rc = check_blocking(ts, why, sizeof(why));
    if (check_rc != 0 && check_rc != -EAGAIN) {
        snprintf(errstr, errstr_size, "%s", why);
        rc = check_rc;
        goto fail;
    }

    if (sg_curl_uv_create(loop, (long)ts->max_in_flight, &ts->curl) != 0 ||
        sg_curl_uv_on_idle(ts->curl, on_curl_idle, ts) != 0 ||
        sg_ts_reader_init(&ts->reader,
                          &(struct sg_ts_reader_conf){.loop = loop,
                                                      .curl = ts->curl,
                                                      .budget = ts->budget,
                                                      .creds = &ts->creds,
                                                      .results_table = ts->tables[SG_TS_KIND_AGG],
                                                      .time_index = ts->time_index.name,
                                                      .index_shards = ts->index_shards,
                                                      .backoff_ms = ts->backoff_ms,
                                                      .backoff_max_ms = ts->backoff_max_ms},
                          metrics) != 0) {
        snprintf(errstr, errstr_size, "tablestore: cannot create the HTTP client");
        rc = -ENOMEM;
        goto fail;
    }
    ts->reader_init = true;
    uv_timer_init(loop, &ts->linger_timer);
    uv_timer_init(loop, &ts->retry_timer);
    uv_timer_init(loop, &ts->check_timer);
    ts->timers_init = true;
    if (check_rc == 0) {
        become_ready(ts);
    } else {
        /* Unreachable or busy: serve anyway, hold rows, and keep asking. */
        sg_warn(log, "tablestore not ready at start; holding rows and retrying its checks",
                SG_F_STR("error", why), SG_F_STR("endpoint", ts->endpoint));
        check_later(ts);
    }
    update_gauges(ts);
    *out = &ts->sink;
    return 0;
fail:
    ts_destroy(&ts->sink);
    return rc;
}

struct sg_ts_reader *sg_sink_tablestore_reader(struct sg_sink *sink)
{
    if (!sink || sink->ops->destroy != ts_destroy)
        return NULL;
    struct ts_sink *ts = ts_of(sink);
    return ts->reader_init ? &ts->reader : NULL;
}

static int ts_info(struct sg_sink *sink, struct sg_buf *out)
{
    struct ts_sink *ts = ts_of(sink);
    int rc = sg_buf_append_str(out, "{\"endpoint\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(out, ts->endpoint, strlen(ts->endpoint));
    if (rc == 0)
        rc = sg_buf_append_str(out, ",\"instance\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(out, ts->instance, strlen(ts->instance));
    if (rc == 0)
        rc = sg_buf_printf(
            out,
            ",\"rows_pending\":%zu,\"rows_waiting\":%zu,\"rows_in_flight\":%zu,"
            "\"requests_in_flight\":%" PRId64 ",\"written\":%" PRIu64 ",\"failed\":%" PRIu64
            ",\"retried\":%" PRIu64 ",\"state\":\"%s\",\"healthy\":%s}",
            ts->store.pending.count + ts->rows_newer, ts->store.nheap, ts->rows_in_flight,
            ts->requests_in_flight, ts->written, ts->failed, ts->retried, ts_phase_names[ts->phase],
            ts_healthy(sink) ? "true" : "false");
    return rc;
}
