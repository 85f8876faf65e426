/* A new key's forecast models, read back from its latest stored result (see models.h).
 *
 * Each new key gets one GetRange on the results table, newest first, from (key, INF_MAX) down
 * to (key, INF_MIN), limit 2: the newest row is the key's last final result unless a window
 * was only ever written as an early update (window.emit_interval) before a crash, and then the
 * row before it is. Its `<field>_model` columns go to the engine, which applies them if the
 * key's first window has not fired yet. Reads beyond predict.restore_reads wait in a FIFO of
 * at most predict.restore_queue keys. */
#include "models.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/budget.h"
#include "streamgate/common.h"
#include "streamgate/config.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "streamgate/streams.h"
#include "streamgate/tablestore.h"
#include "streamgate/tablestore_reader.h"

/* Rows read per key: the newest, and the one before it in case the newest has no model. */
#define MODELS_ROWS 2
/* What a GetRange request for a key costs beyond the key, charged while it is in flight. */
#define MODELS_REQUEST_BYTES 128

enum models_outcome { MR_RESTORED, MR_NONE, MR_FAILED, MR_SKIPPED, MR_NOUTCOMES };
static const char *const outcome_labels[MR_NOUTCOMES] = {
    "outcome=\"restored\"", "outcome=\"none\"", "outcome=\"failed\"", "outcome=\"skipped\""};

/* A key waiting for its read or being read: one allocation, the key after it. */
struct mr_key {
    struct mr_key *prev, *next; /* the FIFO, or the reads in flight */
    struct sg_models *mr;
    struct sg_ts_read *rd; /* in flight */
    size_t len;
    char key[];
};

struct sg_models {
    struct sg_ts_reader *reader;
    struct sg_streams *streams;
    struct sg_budget *budget;
    struct sg_log *log;
    uint64_t timeout_ms;
    size_t max_reads, max_queue;
    struct mr_key *head, *tail; /* waiting, oldest first */
    size_t queued;
    struct mr_key *reading; /* in flight */
    size_t nreading;
    size_t held; /* charged to the budget */
    size_t bytes;
    bool closing;
    struct sg_log_limiter fail_limiter;
    struct sg_buf start, end, body;
    struct sg_counter *outcomes[MR_NOUTCOMES];
};

static size_t key_bytes(const struct mr_key *k)
{
    return sizeof(*k) + k->len + MODELS_REQUEST_BYTES;
}

static void mr_account(struct sg_models *mr)
{
    if (mr->budget)
        sg_budget_set(mr->budget, SG_BUDGET_STREAMS, &mr->held, mr->bytes);
}

static void list_unlink(struct mr_key **head, struct mr_key **tail, struct mr_key *k)
{
    if (k->prev)
        k->prev->next = k->next;
    else
        *head = k->next;
    if (k->next)
        k->next->prev = k->prev;
    else if (tail)
        *tail = k->prev;
    k->prev = k->next = NULL;
}

static void key_free(struct sg_models *mr, struct mr_key *k)
{
    mr->bytes -= key_bytes(k);
    free(k);
}

/* The key's models (none when `res` is NULL or holds none) go to the engine. */
static void hand_over(struct sg_models *mr, const struct mr_key *k,
                      const struct sg_ts_range_result *res, bool failed)
{
    struct sg_streams_stored_model models[SG_EVENT_MAX_FIELDS];
    size_t n = 0;
    for (size_t r = 0; res && n == 0 && r < res->rows.row_count; r++) {
        const struct sg_ts_row *row = &res->rows.rows[r];
        for (size_t i = 0; i < row->attr_count && n < SG_ARRAY_SIZE(models); i++) {
            const struct sg_ts_column *c = &row->attrs[i];
            if (c->name_len > 6 && memcmp(c->name + c->name_len - 6, "_model", 6) == 0 &&
                c->has_value && c->value.type == SG_TS_BLOB)
                models[n++] = (struct sg_streams_stored_model){
                    .column = c->name,
                    .column_len = c->name_len - 6,
                    .model = (const uint8_t *)c->value.bytes.ptr,
                    .len = c->value.bytes.len,
                };
        }
    }
    int applied = mr->streams ? sg_streams_restore(mr->streams, k->key, k->len, models, n) : -1;
    /* -ENOENT: the key's first window fired first (the engine counted it), or it is gone. */
    if (applied >= 0)
        sg_counter_inc(mr->outcomes[failed ? MR_FAILED : applied > 0 ? MR_RESTORED : MR_NONE]);
}

static void start_reads(struct sg_models *mr);

static void on_read(void *arg, enum sg_ts_read_outcome outcome, const char *code,
                    const char *message, const void *body, size_t len)
{
    struct mr_key *k = arg;
    struct sg_models *mr = k->mr;
    list_unlink(&mr->reading, NULL, k);
    mr->nreading--;
    k->rd = NULL;
    if (mr->closing) {
        key_free(mr, k);
        return;
    }
    struct sg_ts_range_result res;
    char err[256] = "";
    bool ok =
        outcome == SG_TS_READ_OK && sg_ts_get_range_parse(body, len, &res, err, sizeof(err)) == 0;
    if (ok) {
        hand_over(mr, k, &res, false);
        sg_ts_range_result_free(&res);
    } else {
        /* Cancelled: the writer is closing, nothing to say. */
        int64_t suppressed = outcome == SG_TS_READ_CANCELLED
                                 ? -1
                                 : sg_log_limiter_take(&mr->fail_limiter, sg_now_ms());
        if (suppressed >= 0)
            sg_warn(mr->log, "could not read a key's stored forecast models: they start afresh",
                    SG_F_STRN("key", k->key, k->len),
                    SG_F_STR("code", outcome == SG_TS_READ_OK ? "unreadable" : code),
                    SG_F_STR("message", outcome == SG_TS_READ_OK ? err : message),
                    SG_F_INT("suppressed", suppressed));
        hand_over(mr, k, NULL, true);
    }
    key_free(mr, k);
    start_reads(mr);
    mr_account(mr);
}

/* Sends a read for k. Returns 0, or a negative errno when it could not be sent. */
static int read_key(struct sg_models *mr, struct mr_key *k)
{
    struct sg_ts_column start[2] = {sg_ts_col("key", sg_ts_string(k->key, k->len)),
                                    sg_ts_col("window_start", sg_ts_special(SG_TS_INF_MAX))};
    struct sg_ts_column end[2] = {sg_ts_col("key", sg_ts_string(k->key, k->len)),
                                  sg_ts_col("window_start", sg_ts_special(SG_TS_INF_MIN))};
    struct sg_ts_row srow = {.pk = start, .pk_count = 2}, erow = {.pk = end, .pk_count = 2};
    sg_buf_reset(&mr->start);
    sg_buf_reset(&mr->end);
    sg_buf_reset(&mr->body);
    int rc = sg_ts_pb_encode(&mr->start, SG_TS_ROW_PK, &srow, NULL, 0);
    if (rc == 0)
        rc = sg_ts_pb_encode(&mr->end, SG_TS_ROW_PK, &erow, NULL, 0);
    if (rc == 0) {
        struct sg_ts_get_range gr = {.table = sg_ts_reader_results_table(mr->reader),
                                     .direction = SG_TS_BACKWARD,
                                     .start = mr->start.data,
                                     .start_len = mr->start.len,
                                     .end = mr->end.data,
                                     .end_len = mr->end.len,
                                     .limit = MODELS_ROWS};
        rc = sg_ts_get_range_build(&mr->body, &gr, NULL, 0);
    }
    if (rc == 0)
        rc = sg_ts_reader_call(mr->reader, "GetRange", mr->body.data, mr->body.len, mr->timeout_ms,
                               on_read, k, &k->rd);
    if (rc != 0)
        return rc;
    k->next = mr->reading;
    if (mr->reading)
        mr->reading->prev = k;
    mr->reading = k;
    mr->nreading++;
    return 0;
}

/* Moves waiting keys to reads while there is room. Runs on the loop, outside the engine. */
static void start_reads(struct sg_models *mr)
{
    while (mr->head && mr->nreading < mr->max_reads && !mr->closing) {
        struct mr_key *k = mr->head;
        list_unlink(&mr->head, &mr->tail, k);
        mr->queued--;
        if (read_key(mr, k) != 0) {
            hand_over(mr, k, NULL, true);
            key_free(mr, k);
        }
    }
}

bool sg_models_key_new(struct sg_models *mr, const char *key, size_t key_len)
{
    if (mr->closing)
        return false;
    bool can_read = mr->nreading < mr->max_reads;
    if (!can_read && mr->queued >= mr->max_queue) {
        sg_counter_inc(mr->outcomes[MR_SKIPPED]);
        return false;
    }
    struct mr_key *k = malloc(sizeof(*k) + key_len);
    if (!k) {
        sg_counter_inc(mr->outcomes[MR_FAILED]);
        return false;
    }
    memset(k, 0, sizeof(*k));
    k->mr = mr;
    k->len = key_len;
    memcpy(k->key, key, key_len);
    mr->bytes += key_bytes(k);
    /* The engine is in the middle of an event: a read is only sent from here (its answer
     * always comes on a later turn of the loop), never handed over. */
    if (can_read && read_key(mr, k) == 0) {
        mr_account(mr);
        return true;
    }
    if (can_read) {
        sg_counter_inc(mr->outcomes[MR_FAILED]);
        key_free(mr, k);
        return false;
    }
    k->prev = mr->tail;
    if (mr->tail)
        mr->tail->next = k;
    else
        mr->head = k;
    mr->tail = k;
    mr->queued++;
    mr_account(mr);
    return true;
}

int sg_models_create(const struct sg_config *cfg, struct sg_ts_reader *reader,
                     struct sg_budget *budget, struct sg_metrics *metrics, struct sg_log *log,
                     struct sg_models **out)
{
    *out = NULL;
    struct sg_models *mr = calloc(1, sizeof(*mr));
    if (!mr)
        return -ENOMEM;
    mr->reader = reader;
    mr->budget = budget;
    mr->log = log;
    mr->timeout_ms = (uint64_t)cfg->query_timeout_ms;
    mr->max_reads = (size_t)cfg->predict_restore_reads;
    mr->max_queue = (size_t)cfg->predict_restore_queue;
    mr->fail_limiter.interval_ms = (int64_t)cfg->log_bad_input_interval_ms;
    for (int i = 0; i < MR_NOUTCOMES; i++) {
        mr->outcomes[i] =
            sg_metrics_counter(metrics, SG_METRIC_PREDICT_RESTORES_TOTAL, outcome_labels[i]);
        if (!mr->outcomes[i]) {
            free(mr);
            return -ENOMEM;
        }
    }
    *out = mr;
    return 0;
}

void sg_models_set_streams(struct sg_models *mr, struct sg_streams *st)
{
    if (mr)
        mr->streams = st;
}

void sg_models_destroy(struct sg_models *mr)
{
    if (!mr)
        return;
    mr->closing = true;
    while (mr->reading)
        sg_ts_read_cancel(mr->reading->rd); /* its callback frees the key */
    while (mr->head) {
        struct mr_key *k = mr->head;
        list_unlink(&mr->head, &mr->tail, k);
        key_free(mr, k);
    }
    mr->bytes = 0;
    mr_account(mr);
    sg_buf_free(&mr->start);
    sg_buf_free(&mr->end);
    sg_buf_free(&mr->body);
    free(mr);
}
