/* Reads on the Tablestore writer's connections (see streamgate/tablestore_reader.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/budget.h"
#include "streamgate/common.h"
#include "streamgate/metrics.h"
#include "streamgate/tablestore.h"
#include "streamgate/tablestore_reader.h"
#include "tablestore_internal.h"

struct sg_ts_read {
    struct sg_ts_call call;
    struct sg_ts_reader *r;
    struct sg_ts_read *prev, *next; /* the reader's reads */
    uv_timer_t timer;               /* retry backoff; the read is freed in its close callback */
    const char *operation;
    uint64_t deadline; /* loop time, ms */
    int attempts;
    size_t charged; /* the call's buffers, as charged to the budget */
    bool in_multi, done;
    sg_ts_read_cb cb;
    void *arg;
};

static const char *const outcome_names[SG_TS_READ_NOUTCOMES] = {"ok", "unavailable", "refused",
                                                                "cancelled"};

int sg_ts_reader_init(struct sg_ts_reader *r, const struct sg_ts_reader_conf *conf,
                      struct sg_metrics *m)
{
    memset(r, 0, sizeof(*r));
    r->conf = *conf;
    for (int i = 0; i < SG_TS_READ_NOUTCOMES; i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome_names[i]);
        r->m_reads[i] = sg_metrics_counter(m, SG_METRIC_TABLESTORE_READ_REQUESTS_TOTAL, labels);
        if (!r->m_reads[i])
            return -ENOMEM;
    }
    return 0;
}

/* Charges the call's request and answer buffers as they are now (0 when the read is over). */
static void read_charge(struct sg_ts_read *rd, bool held)
{
    const struct sg_ts_call *call = &rd->call;
    size_t now = held ? call->body.cap + call->resp.cap + call->resp_hdrs.cap : 0;
    if (rd->r->conf.budget)
        sg_budget_set(rd->r->conf.budget, SG_BUDGET_BODIES, &rd->charged, now);
}

static void read_closed(uv_handle_t *h)
{
    struct sg_ts_read *rd = sg_container_of((uv_timer_t *)h, struct sg_ts_read, timer);
    sg_ts_call_free(&rd->call);
    free(rd);
}

/* Tells the caller and lets the read go. */
static void read_end(struct sg_ts_read *rd, enum sg_ts_read_outcome outcome, const char *code,
                     const char *message)
{
    struct sg_ts_reader *r = rd->r;
    if (rd->done)
        return;
    rd->done = true;
    if (rd->in_multi) {
        sg_curl_uv_remove(r->conf.curl, rd->call.easy);
        rd->in_multi = false;
    }
    if (rd->prev)
        rd->prev->next = rd->next;
    else
        r->reads = rd->next;
    if (rd->next)
        rd->next->prev = rd->prev;
    sg_counter_inc(r->m_reads[outcome]);
    const struct sg_buf *resp = &rd->call.resp;
    rd->cb(rd->arg, outcome, code ? code : "", message ? message : "",
           outcome == SG_TS_READ_OK ? resp->data : NULL, outcome == SG_TS_READ_OK ? resp->len : 0);
    read_charge(rd, false); /* over: its buffers are freed at the timer's close */
    uv_close((uv_handle_t *)&rd->timer, read_closed);
}

static void read_send(struct sg_ts_read *rd);

static void on_retry(uv_timer_t *t)
{
    read_send(sg_container_of(t, struct sg_ts_read, timer));
}

/* A retriable failure: again after the backoff, unless that passes the deadline. */
static void read_retry(struct sg_ts_read *rd, const char *code, const char *message)
{
    struct sg_ts_reader *r = rd->r;
    uint64_t d = r->conf.backoff_ms;
    for (int i = 1; i < rd->attempts && d < r->conf.backoff_max_ms; i++)
        d *= 2;
    d = SG_MIN(d, r->conf.backoff_max_ms);
    uint64_t now = uv_now(r->conf.loop);
    if (now + d >= rd->deadline) {
        read_end(rd, SG_TS_READ_UNAVAILABLE, code, message);
        return;
    }
    uv_timer_start(&rd->timer, on_retry, d, 0);
}

static void on_read_done(struct sg_curl_xfer *xfer, CURL *easy, CURLcode result)
{
    struct sg_ts_read *rd = sg_container_of(xfer, struct sg_ts_read, call.xfer);
    struct sg_ts_reader *r = rd->r;
    char code[128] = "", message[512] = "";
    (void)easy;
    rd->in_multi = false;
    read_charge(rd, true); /* the answer, until the caller is done with it */
    if (result != CURLE_OK) {
        read_retry(rd, result == CURLE_OPERATION_TIMEDOUT ? "timeout" : "connection",
                   sg_ts_call_error(&rd->call, result));
        return;
    }
    long status = sg_ts_call_status(&rd->call);
    if (status != 200 && sg_ts_error_parse(rd->call.resp.data, rd->call.resp.len, code,
                                           sizeof(code), message, sizeof(message)) != 0) {
        snprintf(code, sizeof(code), "http_%ld", status);
        snprintf(message, sizeof(message), "HTTP %ld without an error body", status);
    }
    /* As for writes: only an authentication failure may come unsigned. */
    if ((status == 200 || strcmp(code, "OTSAuthFailed") != 0) &&
        sg_ts_call_verify(&rd->call, r->conf.creds, rd->operation) != 0) {
        read_retry(rd, "bad_signature", "the answer failed signature verification");
        return;
    }
    if (status == 200) {
        read_end(rd, SG_TS_READ_OK, NULL, NULL);
        return;
    }
    if (sg_ts_error_should_retry(rd->operation, false, (int)status, code, message))
        read_retry(rd, code, message);
    else
        read_end(rd, SG_TS_READ_REFUSED, code, message);
}

static void read_send(struct sg_ts_read *rd)
{
    struct sg_ts_reader *r = rd->r;
    uint64_t now = uv_now(r->conf.loop);
    long left = rd->deadline > now ? (long)(rd->deadline - now) : 1;
    rd->attempts++;
    if (sg_ts_call_prepare(&rd->call, r->conf.creds, rd->operation, SG_MIN(left, 3000L), left) !=
        0) {
        read_end(rd, SG_TS_READ_UNAVAILABLE, "OutOfMemory", "cannot sign the request");
        return;
    }
    if (sg_curl_uv_add(r->conf.curl, rd->call.easy, &rd->call.xfer) != 0) {
        read_end(rd, SG_TS_READ_CANCELLED, "shutdown", "the Tablestore client is closing");
        return;
    }
    rd->in_multi = true;
}

int sg_ts_reader_call(struct sg_ts_reader *r, const char *operation, const void *body, size_t len,
                      uint64_t timeout_ms, sg_ts_read_cb cb, void *arg, struct sg_ts_read **out)
{
    if (r->closing || !r->conf.curl)
        return -ESHUTDOWN;
    struct sg_ts_read *rd = calloc(1, sizeof(*rd));
    if (!rd)
        return -ENOMEM;
    if (sg_ts_call_init(&rd->call, SG_TS_REQUEST_MAX_BYTES) != 0 ||
        sg_buf_append(&rd->call.body, body, len) != 0) {
        sg_ts_call_free(&rd->call);
        free(rd);
        return -ENOMEM;
    }
    rd->call.xfer.done = on_read_done;
    rd->r = r;
    rd->operation = operation;
    rd->cb = cb;
    rd->arg = arg;
    rd->deadline = uv_now(r->conf.loop) + timeout_ms;
    read_charge(rd, true);
    uv_timer_init(r->conf.loop, &rd->timer);
    rd->next = r->reads;
    if (r->reads)
        r->reads->prev = rd;
    r->reads = rd;
    /* Sent from the loop, so the callback never runs inside this call. */
    uv_timer_start(&rd->timer, on_retry, 0, 0);
    *out = rd;
    return 0;
}

void sg_ts_read_cancel(struct sg_ts_read *rd)
{
    if (rd)
        read_end(rd, SG_TS_READ_CANCELLED, "cancelled", "the read was cancelled");
}

void sg_ts_reader_close(struct sg_ts_reader *r)
{
    r->closing = true;
    while (r->reads)
        read_end(r->reads, SG_TS_READ_CANCELLED, "shutdown", "the Tablestore client is closing");
}

const char *sg_ts_reader_results_table(const struct sg_ts_reader *r)
{
    return r->conf.results_table;
}

const char *sg_ts_reader_time_index(const struct sg_ts_reader *r)
{
    return r->conf.time_index ? r->conf.time_index : "";
}

int32_t sg_ts_reader_index_shards(const struct sg_ts_reader *r)
{
    return r->conf.index_shards;
}
