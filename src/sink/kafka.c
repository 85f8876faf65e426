/* The Kafka writer. One librdkafka producer; everything that librdkafka hands back to the
 * application (delivery reports, errors, its own log lines) is forwarded to the main queue and
 * served on the loop thread by rd_kafka_poll(rk, 0). The main queue writes a byte into a
 * non-blocking pipe when it becomes non-empty, and a uv_poll_t on the pipe's read end wakes the
 * loop; a slow timer polls as well in case a wake-up is ever missed. */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "streamgate/budget.h"
#include "streamgate/buf.h"
#include "streamgate/config.h"
#include "streamgate/dead_letter.h"
#include "streamgate/event.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "streamgate/sink.h"
#include "streamgate/sink_kafka.h"
#include "streamgate/streams.h"

/* Safety-net poll interval, and the faster one while draining. */
#define KAFKA_POLL_MS       100
#define KAFKA_DRAIN_POLL_MS 10
/* rd_kafka_poll calls per wake-up; each serves every queued op, so more than a few means the
 * queue is being refilled as fast as it is served and the loop should get on with other work. */
#define KAFKA_MAX_POLLS 16
/* How long destroy waits for the reports of purged records (the loop has stopped by then). */
#define KAFKA_PURGE_WAIT_MS 1000
/* What librdkafka holds per record beyond key and value (its message struct, the headers, our
 * context), charged to the budget with each record. Measured with the budget test's RSS
 * samples; an overestimate only pauses ingest a little earlier. */
#define KAFKA_MSG_OVERHEAD 640
/* Records per queue.buffering.max.messages per byte of budget: the message cap derived from
 * the budget is limit / this, clamped to librdkafka's range. */
#define KAFKA_BUDGET_BYTES_PER_MSG 128
#define KAFKA_MAX_MESSAGES_CAP     10000000

enum kafka_stream { KAFKA_RAW = 0, KAFKA_AGG, KAFKA_LATE, KAFKA_ANOMALY, KAFKA_NSTREAMS };

static const char *const kafka_stream_names[KAFKA_NSTREAMS] = {"raw", "agg", "late", "anomaly"};

/* Per record: what the delivery report needs. Taken from a free list; every context ever
 * allocated is also chained on `all`, so destroy frees them even when librdkafka never
 * reported a record. The list grows to the peak number of records in flight, which
 * librdkafka's queue.buffering.max.messages bounds. */
struct kafka_msg {
    struct kafka_msg *next_free;
    struct kafka_msg *next_all;
    uint64_t produced_ms; /* the loop's time at produce */
    size_t bytes;         /* key + value, for the queue-bytes gauge */
    enum kafka_stream stream;
    bool in_flight;            /* produced, its report not served yet */
    struct sg_sink_done *done; /* told at the report; NULL: nobody waits */
};

/* A record librdkafka's queue had no room for: it waits here, in arrival order, and every
 * record after it waits behind it, so per-key order holds. */
struct kafka_pending {
    struct kafka_pending *next;
    enum kafka_stream stream;
    int64_t ts_ms;            /* the record's timestamp; 0: when librdkafka takes it */
    rd_kafka_headers_t *hdrs; /* ours until librdkafka takes the record */
    struct sg_sink_done *done;
    size_t key_len, value_len;
    bool has_key;
    char data[]; /* key, then value */
};

struct kafka_sink {
    struct sg_sink sink;
    struct sg_sink_ops ops; /* per instance: a disabled stream's op is NULL */
    uv_loop_t *loop;
    struct sg_log *log;
    char *bootstrap;
    unsigned headers; /* enum sg_kafka_header bits: kafka.headers */

    rd_kafka_t *rk;
    rd_kafka_queue_t *mainq; /* holds the IO event */
    rd_kafka_topic_t *rkt[KAFKA_NSTREAMS];
    struct sg_kafka_wake wake;

    uv_timer_t timer;
    bool timer_init, handles_closing;

    bool fatal;            /* rd_kafka_fatal_error() is set: the producer is unusable */
    bool all_brokers_down; /* until the next successful delivery */
    bool destroying;       /* no late-topic re-routing while purging */
    sg_sink_drained_cb drained_cb;
    void *drained_arg;
    bool draining;

    struct kafka_msg *free_msgs, *all_msgs;
    uint64_t served_ms;  /* the loop's time, read afresh once per serve(), for the reports */
    int64_t received_ms; /* of the cached received-at header value */
    char received[24];   /* received_ms in decimal */
    size_t received_len;
    size_t queue_bytes;   /* key + value of the records in librdkafka's queue */
    size_t queue_records; /* produced and not reported yet */
    struct kafka_pending *backlog, *backlog_tail;
    size_t backlog_records, backlog_bytes;
    struct sg_budget *budget;           /* NULL: no accounting */
    size_t budget_held;                 /* what this writer has charged to it */
    struct sg_dead_letter *dead_letter; /* records given up on go there; NULL: logged only */
    uint64_t delivered, failed;

    struct sg_log_limiter produce_limiter, delivery_limiter, error_limiter;

    struct sg_counter *m_delivered[KAFKA_NSTREAMS], *m_failed[KAFKA_NSTREAMS];
    struct sg_counter *m_backpressure;
    struct sg_gauge *m_queue_messages, *m_queue_bytes;
    struct sg_histogram *m_delivery;
};

static const double delivery_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,    1,     2.5,  5,     10,   30};

static struct kafka_sink *kafka_sink_of(struct sg_sink *sink)
{
    return sg_container_of(sink, struct kafka_sink, sink);
}

static struct kafka_msg *msg_get(struct kafka_sink *ks)
{
    struct kafka_msg *m = ks->free_msgs;
    if (m) {
        ks->free_msgs = m->next_free;
        return m;
    }
    m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->next_all = ks->all_msgs;
    ks->all_msgs = m;
    return m;
}

static void msg_put(struct kafka_sink *ks, struct kafka_msg *m)
{
    m->next_free = ks->free_msgs;
    ks->free_msgs = m;
}

static void update_gauges(struct kafka_sink *ks)
{
    sg_gauge_set(ks->m_queue_messages, (double)(ks->queue_records + ks->backlog_records));
    sg_gauge_set(ks->m_queue_bytes, (double)(ks->queue_bytes + ks->backlog_bytes));
    if (ks->budget)
        sg_budget_set(ks->budget, SG_BUDGET_QUEUES, &ks->budget_held,
                      ks->queue_bytes + ks->queue_records * KAFKA_MSG_OVERHEAD + ks->backlog_bytes);
}

static void on_handle_closed(uv_handle_t *handle)
{
    /* The handles live inside the sink, which destroy frees once both are closed. */
    (void)handle;
}

static void close_handles(struct kafka_sink *ks)
{
    if (ks->handles_closing)
        return;
    ks->handles_closing = true;
    if (ks->wake.poll_init)
        uv_close((uv_handle_t *)&ks->wake.poll, on_handle_closed);
    if (ks->timer_init)
        uv_close((uv_handle_t *)&ks->timer, on_handle_closed);
}

static void maybe_drained(struct kafka_sink *ks)
{
    if (!ks->drained_cb || ks->backlog || rd_kafka_outq_len(ks->rk) > 0)
        return;
    sg_sink_drained_cb cb = ks->drained_cb;
    ks->drained_cb = NULL;
    /* Nothing is left for the loop to do; closing here means main's loop can end without
     * destroy having to touch the loop. */
    close_handles(ks);
    cb(&ks->sink, ks->drained_arg);
}

static void flush_backlog(struct kafka_sink *ks);

/* Serves delivery reports, errors and log lines, then moves what the reports made room for
 * from the backlog into librdkafka's queue. */
static void serve(struct kafka_sink *ks)
{
    /* One clock read for every report served here: the delivery time is the loop's time now
     * less the loop's time at produce (millisecond resolution). */
    uv_update_time(ks->loop);
    ks->served_ms = uv_now(ks->loop);
    for (int i = 0; i < KAFKA_MAX_POLLS; i++)
        if (rd_kafka_poll(ks->rk, 0) == 0)
            break;
    flush_backlog(ks);
    update_gauges(ks);
    maybe_drained(ks);
}

void sg_kafka_wake_init(struct sg_kafka_wake *wake)
{
    *wake = (struct sg_kafka_wake){.pipefd = {-1, -1}};
}

int sg_kafka_wake_open(struct sg_kafka_wake *wake, uv_loop_t *loop, rd_kafka_queue_t *queue,
                       const char *who, char *errstr, size_t errstr_size)
{
    if (pipe2(wake->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
        int rc = -errno;
        snprintf(errstr, errstr_size, "%s: pipe: %s", who, strerror(errno));
        return rc;
    }
    wake->queue = queue;
    rd_kafka_queue_io_event_enable(queue, wake->pipefd[1], "1", 1);
    int rc = uv_poll_init(loop, &wake->poll, wake->pipefd[0]);
    if (rc != 0) {
        snprintf(errstr, errstr_size, "%s: %s", who, uv_strerror(rc));
        return rc;
    }
    wake->poll_init = true;
    return 0;
}

static void on_wake_readable(uv_poll_t *handle, int status, int events)
{
    struct sg_kafka_wake *wake = sg_container_of(handle, struct sg_kafka_wake, poll);
    char scratch[256];
    (void)status;
    (void)events;
    while (read(wake->pipefd[0], scratch, sizeof(scratch)) > 0)
        ;
    wake->cb(wake);
}

int sg_kafka_wake_start(struct sg_kafka_wake *wake, void (*cb)(struct sg_kafka_wake *wake))
{
    wake->cb = cb;
    return uv_poll_start(&wake->poll, UV_READABLE, on_wake_readable);
}

void sg_kafka_wake_release(struct sg_kafka_wake *wake)
{
    if (wake->queue)
        rd_kafka_queue_io_event_enable(wake->queue, -1, NULL, 0);
    wake->queue = NULL;
    for (int i = 0; i < 2; i++)
        if (wake->pipefd[i] >= 0)
            close(wake->pipefd[i]);
    wake->pipefd[0] = wake->pipefd[1] = -1;
}

static void on_wake(struct sg_kafka_wake *wake)
{
    serve(sg_container_of(wake, struct kafka_sink, wake));
}

static void on_timer(uv_timer_t *handle)
{
    struct kafka_sink *ks = sg_container_of(handle, struct kafka_sink, timer);
    serve(ks);
}

/* The caller's drain deadline passed: stop waiting so the loop can end; destroy purges what is
 * still queued and counts it as failed. The drain never completed, so its callback is not
 * called. */
static void kafka_abandon(struct sg_sink *sink)
{
    struct kafka_sink *ks = kafka_sink_of(sink);
    if (!ks->drained_cb || ks->handles_closing)
        return;
    sg_warn(ks->log, "kafka drain abandoned", SG_F_INT("queued", rd_kafka_outq_len(ks->rk)),
            SG_F_UINT("backlog", ks->backlog_records));
    ks->drained_cb = NULL;
    close_handles(ks);
}

static void count_failed(struct kafka_sink *ks, enum kafka_stream stream)
{
    sg_counter_inc(ks->m_failed[stream]);
    ks->failed++;
}

static void tell(struct sg_sink_done *done, bool written)
{
    if (done)
        done->cb(done, written);
}

/* `rc` is a negative errno code; `rderr` librdkafka's error, when it gave one. */
static void log_produce_failed(struct kafka_sink *ks, enum kafka_stream stream, const char *key,
                               size_t key_len, int rc, rd_kafka_resp_err_t rderr)
{
    int64_t suppressed = sg_log_limiter_take(&ks->produce_limiter, sg_now_ms());
    if (suppressed >= 0)
        sg_error(ks->log, "kafka produce failed", SG_F_STR("stream", kafka_stream_names[stream]),
                 SG_F_STRN("key", key ? key : "", key ? key_len : 0),
                 SG_F_STR("error", rderr != RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_err2str(rderr)
                                                                       : sg_strerror(rc)),
                 SG_F_INT("suppressed", suppressed));
}

/* Hands one record to librdkafka, `ts_ms` its timestamp (0: librdkafka's clock now). Returns
 * 0 (it took the record and the headers), -EAGAIN (queue full: nothing taken; try again
 * later), -ENOMEM, or -EIO with librdkafka's error in `*rderr` (nothing taken). */
static int try_produce(struct kafka_sink *ks, enum kafka_stream stream, const char *key,
                       size_t key_len, const char *value, size_t value_len, int64_t ts_ms,
                       rd_kafka_headers_t *hdrs, struct sg_sink_done *done,
                       rd_kafka_resp_err_t *rderr)
{
    struct kafka_msg *m = msg_get(ks);
    *rderr = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!m)
        return -ENOMEM;
    m->stream = stream;
    m->bytes = key_len + value_len;
    m->produced_ms = uv_now(ks->loop);
    m->done = done;
    /* F_COPY: the caller's bytes are a short-lived view. Never F_BLOCK: a full queue is
     * handled by the backlog, not by stalling the loop. */
    rd_kafka_resp_err_t err =
        rd_kafka_producev(ks->rk, RD_KAFKA_V_RKT(ks->rkt[stream]), RD_KAFKA_V_KEY(key, key_len),
                          RD_KAFKA_V_VALUE((void *)value, value_len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(ts_ms),
                          RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(m), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        m->in_flight = true;
        ks->queue_bytes += m->bytes;
        ks->queue_records++;
        return 0;
    }
    msg_put(ks, m);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return -EAGAIN;
    if (err == RD_KAFKA_RESP_ERR__FATAL)
        ks->fatal = true;
    *rderr = err;
    return -EIO;
}

/* Keeps a record librdkafka had no room for. Returns 0 or -ENOMEM. */
static int backlog_push(struct kafka_sink *ks, enum kafka_stream stream, const char *key,
                        size_t key_len, const char *value, size_t value_len, int64_t ts_ms,
                        rd_kafka_headers_t *hdrs, struct sg_sink_done *done)
{
    struct kafka_pending *p = malloc(sizeof(*p) + key_len + value_len);
    if (!p)
        return -ENOMEM;
    p->next = NULL;
    p->stream = stream;
    p->ts_ms = ts_ms;
    p->hdrs = hdrs;
    p->done = done;
    p->has_key = key != NULL;
    p->key_len = key ? key_len : 0;
    p->value_len = value_len;
    if (p->key_len)
        memcpy(p->data, key, p->key_len);
    if (value_len)
        memcpy(p->data + p->key_len, value, value_len);
    if (ks->backlog_tail)
        ks->backlog_tail->next = p;
    else
        ks->backlog = p;
    ks->backlog_tail = p;
    ks->backlog_records++;
    ks->backlog_bytes += sizeof(*p) + key_len + value_len + KAFKA_MSG_OVERHEAD;
    sg_counter_inc(ks->m_backpressure);
    return 0;
}

static void backlog_pop(struct kafka_sink *ks)
{
    struct kafka_pending *p = ks->backlog;
    ks->backlog = p->next;
    if (!ks->backlog)
        ks->backlog_tail = NULL;
    ks->backlog_records--;
    ks->backlog_bytes -= sizeof(*p) + p->key_len + p->value_len + KAFKA_MSG_OVERHEAD;
    if (p->hdrs)
        rd_kafka_headers_destroy(p->hdrs);
    free(p);
}

/* Moves backlog records into librdkafka's queue, oldest first, until it is full again. */
static void flush_backlog(struct kafka_sink *ks)
{
    while (ks->backlog) {
        struct kafka_pending *p = ks->backlog;
        const char *key = p->has_key ? p->data : NULL;
        rd_kafka_resp_err_t rderr;
        int rc = try_produce(ks, p->stream, key, p->key_len, p->data + p->key_len, p->value_len,
                             p->ts_ms, p->hdrs, p->done, &rderr);
        if (rc == -EAGAIN)
            return;
        if (rc == 0) {
            p->hdrs = NULL; /* librdkafka owns them now */
        } else {
            count_failed(ks, p->stream);
            log_produce_failed(ks, p->stream, key, p->key_len, rc, rderr);
            tell(p->done, false);
        }
        backlog_pop(ks);
    }
}

/* Produces one record with timestamp `ts_ms` (0: when librdkafka takes it), or keeps it in the
 * backlog behind earlier ones. Takes the headers in every case. Returns 0 (`done` will be
 * told), or -EIO (-ENOMEM) when the record cannot be written at all (`done` is not told). */
static int produce(struct kafka_sink *ks, enum kafka_stream stream, const char *key, size_t key_len,
                   const char *value, size_t value_len, int64_t ts_ms, rd_kafka_headers_t *hdrs,
                   struct sg_sink_done *done)
{
    rd_kafka_resp_err_t rderr = RD_KAFKA_RESP_ERR_NO_ERROR;
    int rc;

    if (ks->fatal) {
        rc = -EIO;
        rderr = RD_KAFKA_RESP_ERR__FATAL;
    } else if (ks->backlog) {
        rc = -EAGAIN; /* behind the records already waiting */
    } else {
        rc = try_produce(ks, stream, key, key_len, value, value_len, ts_ms, hdrs, done, &rderr);
    }

    if (rc == -EAGAIN)
        rc = backlog_push(ks, stream, key, key_len, value, value_len, ts_ms, hdrs, done);
    if (rc == 0) {
        update_gauges(ks);
        return 0;
    }
    if (hdrs)
        rd_kafka_headers_destroy(hdrs);
    count_failed(ks, stream);
    log_produce_failed(ks, stream, key, key_len, rc, rderr);
    return rc == -ENOMEM ? rc : -EIO;
}

/* A header list with room for the kafka.headers in `want` plus `extra` more, the ones of them
 * that describe the event added. Sets `*out` to NULL when the record carries none: librdkafka
 * then allocates, serialises and frees nothing for headers, about a third of what a record
 * costs it. Returns 0 or -ENOMEM. */
static int event_headers(struct kafka_sink *ks, unsigned want, int transport, int64_t received_ms,
                         const char *client_id, size_t extra, rd_kafka_headers_t **out)
{
    if (!client_id)
        want &= ~(unsigned)SG_KAFKA_HDR_CLIENT_ID;
    *out = NULL;
    size_t n = (size_t)__builtin_popcount(want) + extra;
    if (n == 0)
        return 0;
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(n);
    if (!hdrs)
        return -ENOMEM;
    if (want & SG_KAFKA_HDR_CONTENT_TYPE)
        rd_kafka_header_add(hdrs, "content-type", 12, "application/json", 16);
    if (want & SG_KAFKA_HDR_TRANSPORT) {
        const char *name = sg_transport_name((enum sg_transport)transport);
        rd_kafka_header_add(hdrs, "transport", 9, name, (ssize_t)strlen(name));
    }
    if (want & SG_KAFKA_HDR_RECEIVED_AT) {
        /* Records arrive in bursts within one millisecond, so the arrival time's decimal form
         * is made once per millisecond, not once per record. */
        if (received_ms != ks->received_ms || ks->received_len == 0) {
            int len = snprintf(ks->received, sizeof(ks->received), "%" PRId64, received_ms);
            ks->received_len = len > 0 ? (size_t)len : 0;
            ks->received_ms = received_ms;
        }
        rd_kafka_header_add(hdrs, "received-at", 11, ks->received, (ssize_t)ks->received_len);
    }
    if (want & SG_KAFKA_HDR_CLIENT_ID)
        rd_kafka_header_add(hdrs, "client-id", 9, client_id, -1);
    *out = hdrs;
    return 0;
}

/* The headers of a window result: its content type, when kafka.headers has it. */
static int result_headers(struct kafka_sink *ks, rd_kafka_headers_t **out)
{
    return event_headers(ks, ks->headers & SG_KAFKA_HDR_CONTENT_TYPE, 0, 0, NULL, 0, out);
}

static int kafka_write_raw(struct sg_sink *sink, const struct sg_event *ev,
                           enum sg_transport transport, int64_t received_ms,
                           struct sg_sink_done *done)
{
    struct kafka_sink *ks = kafka_sink_of(sink);
    if (ks->draining)
        return -ESHUTDOWN;
    rd_kafka_headers_t *hdrs;
    if (event_headers(ks, ks->headers, (int)transport, received_ms, ev->client_id, 0, &hdrs) != 0)
        return -ENOMEM;
    /* The record's timestamp is the arrival time, as received-at says: librdkafka reads no
     * clock for it, and a consumer has it without the header. */
    return produce(ks, KAFKA_RAW, ev->key, ev->key_len, ev->raw, ev->raw_len, received_ms, hdrs,
                   done);
}

static int kafka_write_result(struct sg_sink *sink, const struct sg_window_result *res,
                              struct sg_sink_done *done)
{
    struct kafka_sink *ks = kafka_sink_of(sink);
    if (ks->draining)
        return -ESHUTDOWN;
    /* A result with an anomalous field also goes to the anomaly topic; no confirmation waits
     * for that copy (a failed one is counted and dead-lettered like any record). */
    rd_kafka_headers_t *hdrs;
    if (res->nanomalous > 0 && ks->rkt[KAFKA_ANOMALY]) {
        if (result_headers(ks, &hdrs) != 0)
            return -ENOMEM;
        (void)produce(ks, KAFKA_ANOMALY, res->key, res->key_len, res->json, res->json_len, 0, hdrs,
                      NULL);
    }
    if (!ks->rkt[KAFKA_AGG]) { /* the anomaly topic alone */
        if (done)
            done->cb(done, true);
        return 0;
    }
    if (result_headers(ks, &hdrs) != 0)
        return -ENOMEM;
    return produce(ks, KAFKA_AGG, res->key, res->key_len, res->json, res->json_len, 0, hdrs, done);
}

static int kafka_write_late(struct sg_sink *sink, const struct sg_event *ev, int64_t window_end)
{
    struct kafka_sink *ks = kafka_sink_of(sink);
    char end[24];
    if (ks->draining)
        return -ESHUTDOWN;
    /* A late record says why it is late whatever kafka.headers says; like before, it carries
     * no client-id. */
    rd_kafka_headers_t *hdrs;
    if (event_headers(ks, ks->headers & ~(unsigned)SG_KAFKA_HDR_CLIENT_ID, ev->transport,
                      ev->received_ms, NULL, 2, &hdrs) != 0)
        return -ENOMEM;
    snprintf(end, sizeof(end), "%" PRId64, window_end);
    rd_kafka_header_add(hdrs, "reason", -1, "late", -1);
    rd_kafka_header_add(hdrs, "window-end", -1, end, -1);
    return produce(ks, KAFKA_LATE, ev->key, ev->key_len, ev->raw, ev->raw_len, ev->received_ms,
                   hdrs, NULL);
}

/* A record librdkafka gave up on goes to the dead-letter output, as every writer's do: to its
 * file when one is set, and from there to the late topic when that is on (with `reason`, `sink`
 * and `message` headers). A late-topic record that failed goes to the file only, never back to
 * the topic that refused it. */
static void to_dead_letter(struct kafka_sink *ks, enum kafka_stream stream,
                           const rd_kafka_message_t *rkmessage)
{
    const char *key = rkmessage->key ? (const char *)rkmessage->key : "";
    size_t key_len = rkmessage->key ? rkmessage->key_len : 0;
    const char *code = rd_kafka_err2name(rkmessage->err);
    const char *message = rd_kafka_err2str(rkmessage->err);
    int rc = stream == KAFKA_LATE
                 ? sg_dead_letter_write_unforwarded(ks->dead_letter, "kafka", key, key_len, code,
                                                    message, rkmessage->payload, rkmessage->len)
                 : sg_dead_letter_write(ks->dead_letter, "kafka", key, key_len, code, message,
                                        rkmessage->payload, rkmessage->len);
    if (rc != 0) {
        int64_t suppressed = sg_log_limiter_take(&ks->delivery_limiter, sg_now_ms());
        if (suppressed >= 0)
            sg_error(ks->log, "kafka record lost: the dead-letter output refused it",
                     SG_F_STRN("key", key, key_len), SG_F_STR("error", sg_strerror(rc)),
                     SG_F_INT("suppressed", suppressed));
    }
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkmessage, void *opaque)
{
    struct kafka_sink *ks = opaque;
    struct kafka_msg *m = rkmessage->_private;
    (void)rk;
    if (!m) /* not one of ours; cannot happen, every produce sets an opaque */
        return;
    enum kafka_stream stream = m->stream;
    ks->queue_bytes -= SG_MIN(ks->queue_bytes, m->bytes);
    if (ks->queue_records > 0)
        ks->queue_records--;
    sg_histogram_observe(ks->m_delivery,
                         (double)(ks->served_ms - SG_MIN(ks->served_ms, m->produced_ms)) / 1e3);
    struct sg_sink_done *done = m->done;
    m->in_flight = false;
    m->done = NULL;
    msg_put(ks, m);
    if (rkmessage->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        sg_counter_inc(ks->m_delivered[stream]);
        ks->delivered++;
        ks->all_brokers_down = false;
        tell(done, true);
        return;
    }
    tell(done, false);
    count_failed(ks, stream);
    int64_t suppressed = sg_log_limiter_take(&ks->delivery_limiter, sg_now_ms());
    if (suppressed >= 0)
        sg_error(ks->log, "kafka delivery failed", SG_F_STR("stream", kafka_stream_names[stream]),
                 SG_F_STRN("key", rkmessage->key ? (const char *)rkmessage->key : "",
                           rkmessage->key ? rkmessage->key_len : 0),
                 SG_F_STR("error", rd_kafka_err2str(rkmessage->err)),
                 SG_F_INT("suppressed", suppressed));
    /* Records purged at shutdown were given up by the drain's deadline, not by Kafka: they
     * are counted and logged there. */
    if (ks->dead_letter && !ks->destroying && rkmessage->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE &&
        rkmessage->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
        to_dead_letter(ks, stream, rkmessage);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct kafka_sink *ks = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        ks->fatal = true;
        sg_error(ks->log, "kafka producer failed for good",
                 SG_F_STR("error", rd_kafka_err2name(orig)), SG_F_STR("reason", fatal));
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        if (!ks->all_brokers_down)
            sg_error(ks->log, "kafka: all brokers down", SG_F_STR("reason", reason));
        ks->all_brokers_down = true;
        return;
    }
    /* Transient: librdkafka reconnects and retries by itself. */
    int64_t suppressed = sg_log_limiter_take(&ks->error_limiter, sg_now_ms());
    if (suppressed >= 0)
        sg_warn(ks->log, "kafka error", SG_F_STR("error", rd_kafka_err2name(err)),
                SG_F_STR("reason", reason), SG_F_INT("suppressed", suppressed));
}

/* librdkafka's own log lines, forwarded to the main queue (log.queue) so they are written here
 * on the loop thread, as JSON lines like every other. */
void sg_kafka_log(struct sg_log *log, int level, const char *fac, const char *buf)
{
    enum sg_log_level lvl = level <= 3   ? SG_LOG_ERROR
                            : level == 4 ? SG_LOG_WARN
                            : level <= 6 ? SG_LOG_INFO
                                         : SG_LOG_DEBUG;
    sg_log(log, lvl, "librdkafka", SG_F_STR("facility", fac), SG_F_STR("text", buf));
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    struct kafka_sink *ks = rd_kafka_opaque(rk);
    if (ks)
        sg_kafka_log(ks->log, level, fac, buf);
}

static bool kafka_healthy(struct sg_sink *sink)
{
    struct kafka_sink *ks = kafka_sink_of(sink);
    return !ks->fatal && !ks->all_brokers_down;
}

/* Brokers being down is not a reason to refuse records (they wait within the budget); a
 * producer that failed for good is: it will never deliver anything again. */
static bool kafka_accepting(struct sg_sink *sink)
{
    return !kafka_sink_of(sink)->fatal;
}

static void kafka_drain(struct sg_sink *sink, sg_sink_drained_cb cb, void *arg)
{
    struct kafka_sink *ks = kafka_sink_of(sink);
    ks->draining = true;
    ks->drained_cb = cb;
    ks->drained_arg = arg;
    if (ks->timer_init && !ks->handles_closing)
        uv_timer_start(&ks->timer, on_timer, KAFKA_DRAIN_POLL_MS, KAFKA_DRAIN_POLL_MS);
    /* The caller's deadline bounds the wait: it calls abandon when it passes. */
    serve(ks);
}

/* Destroy runs after the loop has stopped. Main drains every sink it created before that (on
 * start-up failure too), and the drain's completion closes the handles. Should a caller destroy
 * a sink that was never drained, the handles are closed here and one non-blocking loop
 * iteration runs their close callbacks, which is only valid outside uv_run. */
static void kafka_destroy(struct sg_sink *sink)
{
    if (!sink)
        return;
    struct kafka_sink *ks = kafka_sink_of(sink);
    ks->destroying = true;
    if ((ks->wake.poll_init || ks->timer_init) && !ks->handles_closing) {
        close_handles(ks);
        uv_run(ks->loop, UV_RUN_NOWAIT);
    }
    if (ks->rk) {
        int left = rd_kafka_outq_len(ks->rk);
        if (left > 0) {
            uint64_t failed_before = ks->failed;
            rd_kafka_purge(ks->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            /* Serve the purged records' reports so they count as failed. */
            for (int waited = 0; waited < KAFKA_PURGE_WAIT_MS && rd_kafka_outq_len(ks->rk) > 0;
                 waited += 10)
                rd_kafka_poll(ks->rk, 10);
            sg_error(ks->log, "kafka records left undelivered at shutdown",
                     SG_F_INT("records", left),
                     SG_F_UINT("reported_failed", ks->failed - failed_before));
        }
        sg_kafka_wake_release(&ks->wake);
        if (ks->mainq)
            rd_kafka_queue_destroy(ks->mainq);
        for (int i = 0; i < KAFKA_NSTREAMS; i++)
            if (ks->rkt[i])
                rd_kafka_topic_destroy(ks->rkt[i]);
        rd_kafka_destroy(ks->rk);
    }
    if (ks->backlog_records > 0) {
        sg_error(ks->log, "kafka records left in the backlog at shutdown",
                 SG_F_UINT("records", ks->backlog_records));
        while (ks->backlog) {
            struct sg_sink_done *done = ks->backlog->done;
            count_failed(ks, ks->backlog->stream);
            backlog_pop(ks);
            tell(done, false);
        }
    }
    if (ks->budget)
        sg_budget_set(ks->budget, SG_BUDGET_QUEUES, &ks->budget_held, 0);
    sg_kafka_wake_release(&ks->wake); /* the pipe, when the producer was never made */
    for (struct kafka_msg *m = ks->all_msgs, *next; m; m = next) {
        next = m->next_all;
        if (m->in_flight) /* its purge report never came */
            tell(m->done, false);
        free(m);
    }
    free(ks->bootstrap);
    free(ks);
}

/* {"bootstrap":..,"queue_messages":N,"queue_bytes":N,"backlog":N,"delivered":N,"failed":N,
 *  "healthy":bool} */
static int kafka_info(struct sg_sink *sink, struct sg_buf *out)
{
    struct kafka_sink *ks = kafka_sink_of(sink);
    int rc = sg_buf_append_str(out, "{\"bootstrap\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(out, ks->bootstrap, strlen(ks->bootstrap));
    if (rc == 0)
        rc = sg_buf_printf(out,
                           ",\"queue_messages\":%zu,\"queue_bytes\":%zu,\"backlog\":%zu,"
                           "\"delivered\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"healthy\":%s}",
                           ks->queue_records, ks->queue_bytes, ks->backlog_records, ks->delivered,
                           ks->failed, kafka_healthy(sink) ? "true" : "false");
    return rc;
}

int sg_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                      size_t errstr_size)
{
    char err[512];
    if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "kafka.rdkafka: %s", err);
        return -EINVAL;
    }
    return 0;
}

static int register_metrics(struct kafka_sink *ks, struct sg_metrics *metrics)
{
    char labels[128];
    for (int i = 0; i < KAFKA_NSTREAMS; i++) {
        snprintf(labels, sizeof(labels), "sink=\"kafka\",stream=\"%s\",result=\"delivered\"",
                 kafka_stream_names[i]);
        ks->m_delivered[i] = sg_metrics_counter(metrics, SG_METRIC_SINK_RECORDS_TOTAL, labels);
        snprintf(labels, sizeof(labels), "sink=\"kafka\",stream=\"%s\",result=\"failed\"",
                 kafka_stream_names[i]);
        ks->m_failed[i] = sg_metrics_counter(metrics, SG_METRIC_SINK_RECORDS_TOTAL, labels);
        if (!ks->m_delivered[i] || !ks->m_failed[i])
            return -ENOMEM;
    }
    ks->m_backpressure =
        sg_metrics_counter(metrics, SG_METRIC_SINK_BACKPRESSURE_TOTAL, "sink=\"kafka\"");
    ks->m_queue_messages =
        sg_metrics_gauge(metrics, SG_METRIC_SINK_QUEUE_MESSAGES, "sink=\"kafka\"");
    ks->m_queue_bytes = sg_metrics_gauge(metrics, SG_METRIC_SINK_QUEUE_BYTES, "sink=\"kafka\"");
    ks->m_delivery =
        sg_metrics_histogram(metrics, SG_METRIC_SINK_DELIVERY_SECONDS, "sink=\"kafka\"",
                             delivery_bounds, SG_ARRAY_SIZE(delivery_bounds));
    if (!ks->m_backpressure || !ks->m_queue_messages || !ks->m_queue_bytes || !ks->m_delivery)
        return -ENOMEM;
    return 0;
}

/* The producer's configuration: bootstrap.servers (unless `bootstrap` is NULL), the defaults,
 * queue caps derived from the budget's `limit` (0: none), then cfg->kafka_rdkafka. Every property
 * goes through rd_kafka_conf_set, so a bad name or value is refused with librdkafka's own message.
 * This is the one place the writer's properties are set: sg_sink_kafka_check_config checks
 * exactly what sg_sink_kafka_create would use. */
static rd_kafka_conf_t *build_conf(const struct sg_config *cfg, const char *bootstrap, size_t limit,
                                   char *errstr, size_t errstr_size)
{
    char kbytes[32], messages[32];
    static const char *const defaults[][2] = {
        {"enable.idempotence", "true"},    {"acks", "all"},
        {"compression.type", "lz4"},       {"linger.ms", "5"},
        {"partitioner", "murmur2_random"}, {"log.queue", "true"},
    };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(errstr, errstr_size, "kafka: out of memory");
        return NULL;
    }
    if (bootstrap &&
        sg_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, errstr_size) != 0)
        goto fail;
    for (size_t i = 0; i < SG_ARRAY_SIZE(defaults); i++)
        if (sg_kafka_conf_set(conf, defaults[i][0], defaults[i][1], errstr, errstr_size) != 0)
            goto fail;
    /* librdkafka's own queue caps follow the budget, so its queue alone never holds more than
     * the budget allows; the budget's watermark normally pushes back long before. */
    if (limit) {
        size_t msgs = SG_MIN(limit / KAFKA_BUDGET_BYTES_PER_MSG, (size_t)KAFKA_MAX_MESSAGES_CAP);
        snprintf(kbytes, sizeof(kbytes), "%zu", SG_MAX(limit / 1024, (size_t)1));
        snprintf(messages, sizeof(messages), "%zu", SG_MAX(msgs, (size_t)1000));
        if (sg_kafka_conf_set(conf, "queue.buffering.max.kbytes", kbytes, errstr, errstr_size) !=
                0 ||
            sg_kafka_conf_set(conf, "queue.buffering.max.messages", messages, errstr,
                              errstr_size) != 0)
            goto fail;
    }
    if (sg_kafka_conf_apply(conf, &cfg->kafka_rdkafka, errstr, errstr_size) != 0)
        goto fail;
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

int sg_kafka_conf_apply(rd_kafka_conf_t *conf, const struct sg_strlist *props, char *errstr,
                        size_t errstr_size)
{
    for (size_t i = 0; i < props->count; i++) {
        const char *item = props->items[i];
        const char *eq = strchr(item, '=');
        if (!eq || eq == item) {
            snprintf(errstr, errstr_size, "kafka.rdkafka: expected name=value, got \"%s\"", item);
            return -EINVAL;
        }
        char name[256];
        size_t n = (size_t)(eq - item);
        if (n >= sizeof(name)) {
            snprintf(errstr, errstr_size, "kafka.rdkafka: property name too long: \"%.*s\"",
                     (int)SG_MIN(n, 64), item);
            return -EINVAL;
        }
        memcpy(name, item, n);
        name[n] = '\0';
        if (sg_kafka_conf_set(conf, name, eq + 1, errstr, errstr_size) != 0)
            return -EINVAL;
    }
    return 0;
}

void sg_kafka_log_discard(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* The check's clients have no brokers on purpose; librdkafka's warning about that (and
     * anything else it says) is not for the operator. */
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

int sg_sink_kafka_check_config(const struct sg_config *cfg, char *errstr, size_t errstr_size)
{
    char err[512];
    rd_kafka_conf_t *conf = build_conf(cfg, NULL, (size_t)cfg->limits_memory, errstr, errstr_size);
    if (!conf)
        return -EINVAL;
    /* Without bootstrap servers (even one named in kafka.rdkafka) the producer connects to
     * nothing, but creating it checks the properties against each other, as the real start
     * would (acks=1 with the default enable.idempotence=true). */
    if (sg_kafka_conf_set(conf, "bootstrap.servers", "", errstr, errstr_size) != 0) {
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
    }
    rd_kafka_conf_set_log_cb(conf, sg_kafka_log_discard);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf); /* rd_kafka_new owns it only on success */
        snprintf(errstr, errstr_size, "kafka.rdkafka: %s", err);
        return -EINVAL;
    }
    rd_kafka_destroy(rk);
    return 0;
}

int sg_sink_kafka_create(uv_loop_t *loop, const struct sg_config *cfg, const char *bootstrap,
                         struct sg_budget *budget, struct sg_dead_letter *dead_letter,
                         struct sg_metrics *metrics, struct sg_log *log, struct sg_sink **out,
                         char *errstr, size_t errstr_size)
{
    const char *topics[KAFKA_NSTREAMS] = {cfg->kafka_raw_topic, cfg->kafka_agg_topic,
                                          cfg->kafka_late_topic, cfg->kafka_anomaly_topic};
    char err[512];
    int rc;
    struct kafka_sink *ks = calloc(1, sizeof(*ks));
    if (!ks) {
        snprintf(errstr, errstr_size, "kafka: out of memory");
        return -ENOMEM;
    }
    sg_kafka_wake_init(&ks->wake);
    ks->loop = loop;
    ks->log = log;
    ks->budget = budget;
    ks->dead_letter = dead_letter;
    ks->ops = (struct sg_sink_ops){
        .name = "kafka",
        .write_raw = topics[KAFKA_RAW] && *topics[KAFKA_RAW] ? kafka_write_raw : NULL,
        .write_result = (topics[KAFKA_AGG] && *topics[KAFKA_AGG]) ||
                                (topics[KAFKA_ANOMALY] && *topics[KAFKA_ANOMALY])
                            ? kafka_write_result
                            : NULL,
        .write_late = topics[KAFKA_LATE] && *topics[KAFKA_LATE] ? kafka_write_late : NULL,
        .healthy = kafka_healthy,
        .accepting = kafka_accepting,
        .drain = kafka_drain,
        .abandon = kafka_abandon,
        .info = kafka_info,
        .destroy = kafka_destroy,
    };
    ks->sink.ops = &ks->ops;
    rc = sg_config_kafka_headers(cfg, &ks->headers, errstr, errstr_size);
    if (rc != 0)
        goto fail;
    int64_t interval = (int64_t)cfg->log_bad_input_interval_ms;
    ks->produce_limiter.interval_ms = interval;
    ks->delivery_limiter.interval_ms = interval;
    ks->error_limiter.interval_ms = interval;
    ks->bootstrap = strdup(bootstrap ? bootstrap : "");
    if (!ks->bootstrap || register_metrics(ks, metrics) != 0) {
        snprintf(errstr, errstr_size, "kafka: out of memory");
        rc = -ENOMEM;
        goto fail;
    }

    rd_kafka_conf_t *conf = build_conf(
        cfg, ks->bootstrap, ks->budget ? sg_budget_limit(ks->budget) : 0, errstr, errstr_size);
    if (!conf) {
        rc = -EINVAL;
        goto fail;
    }
    rd_kafka_conf_set_opaque(conf, ks);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    ks->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!ks->rk) {
        rd_kafka_conf_destroy(conf); /* rd_kafka_new owns it only on success */
        snprintf(errstr, errstr_size, "kafka: %s", err);
        rc = -EINVAL;
        goto fail;
    }
    for (int i = 0; i < KAFKA_NSTREAMS; i++) {
        if (!topics[i] || !*topics[i])
            continue;
        ks->rkt[i] = rd_kafka_topic_new(ks->rk, topics[i], NULL);
        if (!ks->rkt[i]) {
            snprintf(errstr, errstr_size, "kafka: topic %s: %s", topics[i],
                     rd_kafka_err2str(rd_kafka_last_error()));
            rc = -EINVAL;
            goto fail;
        }
    }

    /* Everything librdkafka reports goes to the main queue, and the main queue wakes the loop
     * through the pipe. */
    rd_kafka_set_log_queue(ks->rk, NULL);
    ks->mainq = rd_kafka_queue_get_main(ks->rk);
    rc = sg_kafka_wake_open(&ks->wake, loop, ks->mainq, "kafka", errstr, errstr_size);
    if (rc != 0)
        goto fail;
    rc = uv_timer_init(loop, &ks->timer);
    if (rc != 0)
        goto fail_uv;
    ks->timer_init = true;
    rc = sg_kafka_wake_start(&ks->wake, on_wake);
    if (rc != 0)
        goto fail_uv;
    rc = uv_timer_start(&ks->timer, on_timer, KAFKA_POLL_MS, KAFKA_POLL_MS);
    if (rc != 0)
        goto fail_uv;
    update_gauges(ks);
    *out = &ks->sink;
    return 0;
fail_uv:
    snprintf(errstr, errstr_size, "kafka: %s", uv_strerror(rc));
fail:
    kafka_destroy(&ks->sink);
    return rc;
}

int sg_sink_kafka_dead_letter(struct sg_sink *sink, const char *source, const char *key,
                              size_t key_len, const char *code, const char *message,
                              const char *record, size_t record_len)
{
    struct kafka_sink *ks = kafka_sink_of(sink);
    if (!ks->rkt[KAFKA_LATE])
        return -ENOENT;
    /* After the drain has finished nothing would deliver it any more. */
    if (ks->destroying || ks->handles_closing)
        return -ESHUTDOWN;
    /* reason, sink and message say why the record is here whatever kafka.headers says. */
    rd_kafka_headers_t *hdrs;
    if (event_headers(ks, ks->headers & SG_KAFKA_HDR_CONTENT_TYPE, 0, 0, NULL, 3, &hdrs) != 0)
        return -ENOMEM;
    rd_kafka_header_add(hdrs, "reason", -1, code ? code : "", -1);
    rd_kafka_header_add(hdrs, "sink", -1, source ? source : "", -1);
    if (message)
        rd_kafka_header_add(hdrs, "message", -1, message, -1);
    return produce(ks, KAFKA_LATE, key, key_len, record, record_len, 0, hdrs, NULL);
}
