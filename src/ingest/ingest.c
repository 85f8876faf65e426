/* Ingest: the one path from bytes to sinks. Both servers hand it events (a TCP line, an element
 * of an HTTP body); it decodes each one, counts it as received and then accepted or rejected
 * with a reason, logs bad input at a rate limit, and gives accepted events to the sink set.
 *
 * Every series is registered at create time, so /metrics shows each (transport, reason) pair
 * as 0 before the first event, and the hot path is a decode plus a few increments through the
 * kept pointers. */
#include "streamgate/ingest.h"
#include "ack.h"
#include "ahead.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/config.h"
#include "json_split.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "ndjson.h"
#include "streamgate/sink.h"
#include "streamgate/sinks.h"
#include "streamgate/streams.h"

/* Bytes of a rejected event quoted in its log line: enough to recognise it, never a flood. */
#define SG_INGEST_EXCERPT_MAX 64
/* Added to the invalid_json error of a JSON body that holds one object per line. */
#define SG_INGEST_NDJSON_HINT                                                                      \
    "; the body looks like NDJSON (one JSON object per line): send it with Content-Type: "         \
    "application/x-ndjson"

struct sg_ingest {
    const char *client_id; /* sg_ingest_set_client */
    struct sg_log *log;
    struct sg_event_decoder dec;
    bool dec_ready;
    struct sg_sinks *sinks;     /* NULL: accepted events go nowhere */
    struct sg_streams *streams; /* NULL: no windowing */

    /* Accepted events by the decoder that read them: the flat-event scanner, or the tree. */
    struct sg_counter *decoded_flat, *decoded_tree;
    struct sg_counter *received[SG_TRANSPORT_COUNT];
    struct sg_counter *accepted[SG_TRANSPORT_COUNT];
    struct sg_counter *rejected[SG_TRANSPORT_COUNT][SG_REJECT_COUNT];
    /* One per reason, so a flood of one kind of bad input cannot hide another kind. */
    struct sg_log_limiter limiters[SG_REJECT_COUNT];

    /* The view of the event in hand. It is large (SG_EVENT_MAX_FIELDS fields) and only lives
     * for one sg_ingest_event call, so one instance is reused instead of a big stack frame. */
    struct sg_event ev;
};

static int ingest_register(struct sg_ingest *ing, struct sg_metrics *metrics)
{
    char labels[128];

    ing->decoded_flat =
        sg_metrics_counter(metrics, SG_METRIC_EVENTS_DECODED_TOTAL, "decoder=\"flat\"");
    ing->decoded_tree =
        sg_metrics_counter(metrics, SG_METRIC_EVENTS_DECODED_TOTAL, "decoder=\"tree\"");
    if (!ing->decoded_flat || !ing->decoded_tree)
        return -ENOMEM;
    for (int t = 0; t < SG_TRANSPORT_COUNT; t++) {
        const char *tname = sg_transport_name((enum sg_transport)t);

        snprintf(labels, sizeof(labels), "transport=\"%s\"", tname);
        ing->received[t] = sg_metrics_counter(metrics, SG_METRIC_EVENTS_RECEIVED_TOTAL, labels);
        ing->accepted[t] = sg_metrics_counter(metrics, SG_METRIC_EVENTS_ACCEPTED_TOTAL, labels);
        if (!ing->received[t] || !ing->accepted[t])
            return -ENOMEM;
        for (int r = 0; r < SG_REJECT_COUNT; r++) {
            snprintf(labels, sizeof(labels), "transport=\"%s\",reason=\"%s\"", tname,
                     sg_reject_label((enum sg_reject)r));
            ing->rejected[t][r] =
                sg_metrics_counter(metrics, SG_METRIC_EVENTS_REJECTED_TOTAL, labels);
            if (!ing->rejected[t][r])
                return -ENOMEM;
        }
    }
    return 0;
}

struct sg_ingest *sg_ingest_create(const struct sg_config *cfg, struct sg_metrics *metrics,
                                   struct sg_log *log)
{
    struct sg_ingest *ing = calloc(1, sizeof(*ing));

    if (!ing)
        return NULL;
    ing->log = log;
    sg_event_decoder_init(&ing->dec, cfg);
    ing->dec_ready = true;
    for (int r = 0; r < SG_REJECT_COUNT; r++)
        ing->limiters[r].interval_ms = (int64_t)cfg->log_bad_input_interval_ms;
    if (ingest_register(ing, metrics) < 0) {
        sg_ingest_destroy(ing);
        return NULL;
    }
    return ing;
}

/* The sink set belongs to the wiring: it drains and destroys it. */
void sg_ingest_destroy(struct sg_ingest *ing)
{
    if (!ing)
        return;
    if (ing->dec_ready)
        sg_event_decoder_free(&ing->dec);
    free(ing);
}

void sg_ingest_set_streams(struct sg_ingest *ing, struct sg_streams *streams)
{
    ing->streams = streams;
}

void sg_ingest_set_sinks(struct sg_ingest *ing, struct sg_sinks *sinks)
{
    ing->sinks = sinks;
}

/* Counts a rejection and logs it through the reason's limiter. `input` (may be NULL) is the
 * bad event, quoted in part; `sink` and `err` name a writer that refused it. */
static void ingest_rejected(struct sg_ingest *ing, enum sg_transport transport, enum sg_reject why,
                            const char *input, size_t input_len, const struct sg_sink *sink,
                            int err)
{
    struct sg_log_field fields[8];
    size_t n = 0;
    int64_t suppressed;

    if ((unsigned)why >= SG_REJECT_COUNT)
        why = SG_REJECT_INVALID_JSON;
    sg_counter_inc(ing->rejected[transport][why]);

    if (SG_LOG_WARN < ing->log->level)
        return;
    suppressed = sg_log_limiter_take(&ing->limiters[why], sg_now_ms());
    if (suppressed < 0)
        return;
    fields[n++] = (struct sg_log_field)SG_F_STR("transport", sg_transport_name(transport));
    fields[n++] = (struct sg_log_field)SG_F_STR("reason", sg_reject_label(why));
    if (input)
        fields[n++] = (struct sg_log_field)SG_F_STRN("input", input,
                                                     SG_MIN(input_len, SG_INGEST_EXCERPT_MAX));
    if (sink) {
        fields[n++] = (struct sg_log_field)SG_F_STR("sink", sink->ops->name);
        fields[n++] = (struct sg_log_field)SG_F_STR("error", sg_strerror(err));
    }
    if (suppressed > 0)
        fields[n++] = (struct sg_log_field)SG_F_INT("suppressed", suppressed);
    fields[n].key = NULL;
    sg_log_emit(ing->log, SG_LOG_WARN, "event rejected", fields);
}

/* sg_ingest_event, with the request's group (NULL: none) each accepted event is confirmed to. */
static int ingest_event(struct sg_ingest *ing, enum sg_transport transport, const char *buf,
                        size_t len, int64_t now_ms, struct sg_ack *ack, enum sg_reject *why)
{
    enum sg_reject reason = SG_REJECT_INVALID_JSON;
    const struct sg_sink *failed = NULL;
    int failed_err = 0;

    sg_counter_inc(ing->received[transport]);
    if (sg_event_decode(&ing->dec, buf, len, now_ms, &ing->ev, &reason) != 0) {
        ingest_rejected(ing, transport, reason, buf, len, NULL, 0);
        goto rejected;
    }
    ing->ev.transport = (int)transport;
    ing->ev.received_ms = now_ms;
    ing->ev.client_id = ing->client_id;
    /* Windows first: an event the streams refuse (key_limit) reaches no writer either. */
    if (ing->streams && sg_streams_add(ing->streams, &ing->ev, now_ms, &reason) != 0) {
        ingest_rejected(ing, transport, reason, ing->ev.key, ing->ev.key_len, NULL, 0);
        goto rejected;
    }
    /* A writer that refused it leaves the event rejected, since not every writer has it;
     * the others still took it (the set gives each its chance). */
    struct sg_sinks_outcome out = {0};
    struct sg_sink_done *done = ack ? sg_ack_event_begin(ack) : NULL;
    if (ing->sinks)
        sg_sinks_write_raw(ing->sinks, &ing->ev, transport, now_ms, done, &out);
    if (ack)
        sg_ack_event_end(ack, done, out.took, out.failed != NULL);
    failed = out.failed;
    failed_err = out.err;
    if (failed) {
        reason = SG_REJECT_SINK_FAILED;
        ingest_rejected(ing, transport, reason, NULL, 0, failed, failed_err);
        goto rejected;
    }
    sg_counter_inc(ing->accepted[transport]);
    sg_counter_inc(ing->ev.flat ? ing->decoded_flat : ing->decoded_tree);
    return 0;

rejected:
    if (why)
        *why = reason;
    return -EINVAL;
}

void sg_ingest_set_client(struct sg_ingest *ing, const char *client_id)
{
    ing->client_id = client_id && client_id[0] ? client_id : NULL;
}

int sg_ingest_event(struct sg_ingest *ing, enum sg_transport transport, const char *buf, size_t len,
                    int64_t now_ms, enum sg_reject *why)
{
    return ingest_event(ing, transport, buf, len, now_ms, NULL, why);
}

/* The first step of the hint of an event pushed into a queue: its key, and the slot of the key
 * table it hashes to. */
static void ingest_peek(struct sg_ingest *ing, struct sg_ingest_held *ev)
{
    struct sg_ingest_hint *h = &ev->hint;

    h->step = 0;
    if (!ing->streams || !sg_event_peek_key(&ing->dec, ev->buf, ev->len, &h->key, &h->key_len))
        return;
    h->hash = sg_streams_prefetch_slot(ing->streams, h->key, h->key_len);
    h->step = 1;
}

/* One more step of an event's hint: the stream the slot leads to, its current window, then that
 * window's sketches. */
static void ingest_prefetch(struct sg_ingest *ing, struct sg_ingest_held *ev)
{
    struct sg_ingest_hint *h = &ev->hint;

    switch (h->step) {
    case 1:
        sg_streams_prefetch_stream(ing->streams, h->hash);
        h->step = 2;
        break;
    case 2:
        sg_streams_prefetch_window(ing->streams, h->key, h->key_len, h->hash);
        h->step = 3;
        break;
    case 3:
        sg_streams_prefetch_sketches(ing->streams, h->key, h->key_len, h->hash);
        h->step = 4;
        break;
    default: /* no hint, or every step taken */
        break;
    }
}

bool sg_ingest_ahead_push(struct sg_ingest *ing, struct sg_ingest_ahead *a,
                          const struct sg_ingest_held *ev, struct sg_ingest_held *due)
{
    bool full = a->n == SG_INGEST_AHEAD;

    for (unsigned i = 0, at = a->head; i < a->n; i++, at = (at + 1) % SG_INGEST_AHEAD)
        ingest_prefetch(ing, &a->q[at]);
    if (full)
        sg_ingest_ahead_pop(a, due);
    struct sg_ingest_held *slot = &a->q[(a->head + a->n) % SG_INGEST_AHEAD];
    *slot = *ev;
    ingest_peek(ing, slot);
    a->n++;
    return full;
}

bool sg_ingest_ahead_pop(struct sg_ingest_ahead *a, struct sg_ingest_held *ev)
{
    if (a->n == 0)
        return false;
    *ev = a->q[a->head];
    a->head = (a->head + 1) % SG_INGEST_AHEAD;
    a->n--;
    return true;
}

void sg_ingest_reject(struct sg_ingest *ing, enum sg_transport transport, enum sg_reject why)
{
    sg_counter_inc(ing->received[transport]);
    ingest_rejected(ing, transport, why, NULL, 0, NULL, 0);
}

/* State shared by the per-element callbacks of one sg_ingest_body call. */
struct sg_body_ctx {
    struct sg_ingest *ing;
    struct sg_ingest_result *res;
    enum sg_body_format fmt;
    const char *body;
    size_t len;
    int64_t now_ms;
    /* NDJSON only: the event ordinal, and newlines counted in body[0..scanned). */
    size_t index;
    size_t scanned;
    size_t newlines;
    struct sg_ingest_ahead ahead; /* events not ingested yet; they lie in the body */
};

/* Appends one entry to res->errors, or nothing at all when it does not fit (the buffer has a
 * cap), so the list always stays well-formed. `line` is 0 for a JSON body. */
static void body_add_error(struct sg_body_ctx *ctx, size_t index, size_t line, size_t offset,
                           enum sg_reject why)
{
    struct sg_ingest_result *res = ctx->res;
    struct sg_buf *b = res->errors;
    char text[256];
    size_t saved;
    int rc;

    if (res->nerrors >= res->max_errors)
        return;
    if (!b) {
        res->nerrors++;
        return;
    }
    saved = b->len;
    rc = sg_buf_printf(b, "%s{\"index\":%zu", res->nerrors > 0 ? "," : "", index);
    if (rc == 0 && line > 0)
        rc = sg_buf_printf(b, ",\"line\":%zu", line);
    if (rc == 0)
        rc = sg_buf_printf(b, ",\"offset\":%zu,\"error\":", offset);
    if (rc == 0) {
        /* A JSON body that is invalid because it holds NDJSON says how to send it. Such a body
         * starts with '{', so it is one event, index 0: only that error is looked at, once per
         * body whatever the number of errors. */
        const char *hint = why == SG_REJECT_INVALID_JSON && ctx->fmt == SG_BODY_JSON &&
                                   index == 0 && sg_json_looks_like_ndjson(ctx->body, ctx->len)
                               ? SG_INGEST_NDJSON_HINT
                               : "";
        int n = snprintf(text, sizeof(text), "%s: %s%s", sg_reject_label(why),
                         sg_reject_message(why), hint);
        rc = sg_buf_append_json_string(b, text, SG_MIN((size_t)n, sizeof(text) - 1));
    }
    if (rc == 0)
        rc = sg_buf_append_char(b, '}');
    if (rc != 0) {
        b->len = saved;
        return;
    }
    res->nerrors++;
}

static void body_ingest(struct sg_body_ctx *ctx, const struct sg_ingest_held *ev)
{
    enum sg_reject why = SG_REJECT_INVALID_JSON;

    if (ingest_event(ctx->ing, SG_TRANSPORT_HTTP, ev->buf, ev->len, ctx->now_ms, ctx->res->ack,
                     &why) == 0) {
        ctx->res->accepted++;
        return;
    }
    ctx->res->rejected++;
    body_add_error(ctx, ev->index, ev->line, ev->offset, why);
}

/* Ingests the events held back, in order. */
static void body_flush(struct sg_body_ctx *ctx)
{
    struct sg_ingest_held ev;

    while (sg_ingest_ahead_pop(&ctx->ahead, &ev))
        body_ingest(ctx, &ev);
}

/* Events inside the body are ingested SG_INGEST_AHEAD events late, through the queue; results
 * and errors come out in the body's order. */
static void body_event(struct sg_body_ctx *ctx, const struct sg_ingest_held *ev)
{
    struct sg_ingest_held due;

    if (sg_ingest_ahead_push(ctx->ing, &ctx->ahead, ev, &due))
        body_ingest(ctx, &due);
}

static int body_json_element(void *arg, size_t index, const char *elem, size_t len, size_t offset)
{
    body_event(arg, &(struct sg_ingest_held){
                        .buf = elem, .len = len, .index = index, .line = 0, .offset = offset});
    return 0;
}

/* Where the line handed out by the framer starts in the body. Lines inside the body come out
 * in place; only the last one, when it has no newline, is a copy held by the framer, and it
 * starts right after the body's last newline. */
static size_t body_line_offset(const struct sg_body_ctx *ctx, const char *line)
{
    uintptr_t p = (uintptr_t)line, b = (uintptr_t)ctx->body;
    size_t off;

    if (p >= b && p - b <= ctx->len)
        return (size_t)(p - b);
    off = ctx->len;
    while (off > 0 && ctx->body[off - 1] != '\n')
        off--;
    return off;
}

static int body_ndjson_line(void *arg, const char *line, size_t len, bool too_long)
{
    struct sg_body_ctx *ctx = arg;
    size_t offset = body_line_offset(ctx, line);
    size_t index = ctx->index++;

    /* Line numbers count blank lines too, so they match what an editor shows. */
    while (ctx->scanned < offset) {
        const char *nl = memchr(ctx->body + ctx->scanned, '\n', offset - ctx->scanned);

        if (!nl) {
            ctx->scanned = offset;
            break;
        }
        ctx->newlines++;
        ctx->scanned = (size_t)(nl - ctx->body) + 1;
    }
    if (too_long) {
        /* Cannot happen with the framer's limit above the body's length; kept so the framer's
         * whole contract is handled. */
        body_flush(ctx);
        sg_ingest_reject(ctx->ing, SG_TRANSPORT_HTTP, SG_REJECT_LINE_TOO_LONG);
        ctx->res->rejected++;
        body_add_error(ctx, index, ctx->newlines + 1, offset, SG_REJECT_LINE_TOO_LONG);
        return 0;
    }
    struct sg_ingest_held ev = {
        .buf = line, .len = len, .index = index, .line = ctx->newlines + 1, .offset = offset};
    if ((uintptr_t)line < (uintptr_t)ctx->body ||
        (uintptr_t)line + len > (uintptr_t)ctx->body + ctx->len) {
        /* The framer's copy of a last line without a newline: valid only now. */
        body_flush(ctx);
        body_ingest(ctx, &ev);
        return 0;
    }
    body_event(ctx, &ev);
    return 0;
}

int sg_ingest_body(struct sg_ingest *ing, enum sg_body_format fmt, const char *body, size_t len,
                   int64_t now_ms, struct sg_ingest_result *res)
{
    struct sg_body_ctx ctx = {
        .ing = ing, .res = res, .fmt = fmt, .body = body, .len = len, .now_ms = now_ms};
    struct sg_ndjson fr;
    int rc;

    res->accepted = 0;
    res->rejected = 0;
    res->nerrors = 0;
    res->bad_offset = 0;
    res->bad_msg = NULL;

    if (fmt == SG_BODY_JSON) {
        rc = sg_json_split(body, len, body_json_element, &ctx, &res->bad_offset, &res->bad_msg);
        body_flush(&ctx);
        return rc < 0 ? -EINVAL : 0;
    }

    /* The whole body is one chunk, so the framer hands lines out in place; the size limit
     * already bounded the body, so no line in it is "too long". */
    sg_ndjson_init(&fr, len + 1);
    rc = sg_ndjson_feed(&fr, body, len, body_ndjson_line, &ctx);
    if (rc == 0)
        rc = sg_ndjson_finish(&fr, body_ndjson_line, &ctx);
    body_flush(&ctx);
    sg_ndjson_free(&fr);
    return rc < 0 ? rc : 0;
}

bool sg_ingest_ready(struct sg_ingest *ing)
{
    return !ing->sinks || sg_sinks_ready(ing->sinks);
}

bool sg_ingest_accepting(struct sg_ingest *ing)
{
    return !ing->sinks || sg_sinks_accepting(ing->sinks);
}
