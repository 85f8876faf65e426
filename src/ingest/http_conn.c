/* One HTTP connection: llhttp parses whatever arrives (several pipelined requests per read,
 * or one request over many reads), each complete request is answered at once (ingest is
 * synchronous), and responses are appended in order to an output buffer that goes out with
 * one write after each parse. While a write is in flight, new responses go to the second
 * buffer. Past SG_HTTP_OUT_HIGH pending bytes the parser pauses at a request boundary and
 * reading stops until the write completes.
 *
 * Life cycle: OPEN (parsing) -> FINISHING (last response queued, parser stopped) -> LINGER
 * (write side shut down, input dropped until the peer closes or a short timer fires) ->
 * CLOSING (transport and timer closing; the memory goes in the last close callback). Errors that
 * end a connection are answered first (with Connection: close) wherever the protocol allows.
 *
 * This file is the connection's state machine and its I/O: timers, reading, writing, responses,
 * answers held for delivery, and the parse loop. The parser's callbacks (limits, auth) are in
 * http_request.c, the routes in http_routes.c. Bytes move through conn->io: the TCP transport
 * (http_tcp.c) in production, an in-memory one in tests. Everything else is the same for both. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ack.h"
#include "http_internal.h"
#include "streamgate/common.h"
#include "streamgate/config.h"
#include "gzip.h"
#include "streamgate/ingest.h"
#include "streamgate/streams.h"

/* Bad input and connection trouble, at debug level and at most one line per interval. */
void sg_http__conn_debug(struct sg_http_conn *conn, const char *msg, int status, const char *detail)
{
    struct sg_http_server *srv = conn->srv;
    int64_t suppressed;

    if (SG_LOG_DEBUG < srv->log->level)
        return;
    suppressed = sg_log_limiter_take(&srv->bad_input, sg_now_ms());
    if (suppressed < 0)
        return;
    sg_debug(srv->log, msg, SG_F_STR("peer", conn->peer), SG_F_INT("status", status),
             SG_F_STR("detail", detail ? detail : ""), SG_F_INT("suppressed", suppressed));
}

/* --- timers ------------------------------------------------------------------------------ */

static void conn_on_timer(uv_timer_t *timer);

/* Sets the one deadline a connection has (idle, header, body, flush or linger). A request
 * moves through three of them, and restarting a libuv timer costs two heap operations, so the
 * timer is restarted only when the new deadline comes earlier than the one it is set for; a
 * timer that fires early sets itself again for what is left. */
void sg_http__conn_timer(struct sg_http_conn *conn, enum sg_http_timer kind, uint64_t ms)
{
    conn->timer_kind = kind;
    if (kind == SG_HTTP_TIMER_NONE || ms == 0) {
        conn->timer_due = 0; /* a timer still set finds nothing due */
        return;
    }
    conn->timer_due = uv_now(conn->timer.loop) + ms;
    if (uv_is_active((uv_handle_t *)&conn->timer) && uv_timer_get_due_in(&conn->timer) <= ms)
        return;
    uv_timer_start(&conn->timer, conn_on_timer, ms, 0);
}

/* --- reading ----------------------------------------------------------------------------- */

static int conn_read_start(struct sg_http_conn *conn)
{
    int rc;

    if (conn->reading || conn->eof)
        return 0;
    rc = conn->io->read_start(conn);
    if (rc == 0)
        conn->reading = true;
    return rc;
}

static void conn_read_stop(struct sg_http_conn *conn)
{
    if (!conn->reading)
        return;
    conn->io->read_stop(conn);
    conn->reading = false;
}

/* --- budget ------------------------------------------------------------------------------ */

/* Brings the budget's account of what this connection holds of its input (an unparsed tail,
 * a partial request's URL and headers) up to date. */
static void conn_account_input(struct sg_http_conn *conn)
{
    size_t held = conn->tail_len + conn->req.url.cap;

    for (int i = 0; i < SG_HTTP_HDR_COUNT; i++)
        held += conn->req.hdr[i].cap;
    if (conn->srv->budget)
        sg_budget_set(conn->srv->budget, SG_BUDGET_CONNECTIONS, &conn->budget_conn, held);
}

/* Brings the budget's account of this connection's body storage (and of a held answer's
 * error list) up to date. */
void sg_http__conn_account_body(struct sg_http_conn *conn)
{
    if (conn->srv->budget)
        sg_budget_set(conn->srv->budget, SG_BUDGET_BODIES, &conn->budget_body,
                      conn->body.cap + conn->held_errors.cap);
}

/* --- closing ----------------------------------------------------------------------------- */

/* The connection ends with a handler's answer to come: the handler lets go of it. */
static void conn_cancel_later(struct sg_http_conn *conn)
{
    void (*cancel)(void *arg) = conn->later_cancel;
    if (!conn->later)
        return;
    conn->later = false;
    conn->later_cancel = NULL;
    if (cancel)
        cancel(conn->later_arg);
}

void sg_http__conn_free(struct sg_http_conn *conn)
{
    struct sg_budget *budget = conn->srv->budget;

    if (budget) {
        sg_budget_set(budget, SG_BUDGET_CONNECTIONS, &conn->budget_conn, 0);
        sg_budget_set(budget, SG_BUDGET_BODIES, &conn->budget_body, 0);
    }
    /* Its events go on to the writers without it (see ack.h). */
    sg_ack_detach(conn->ack);
    conn->ack = NULL;
    conn_cancel_later(conn);
    sg_buf_free(&conn->held_errors);
    sg_buf_free(&conn->out[0]);
    sg_buf_free(&conn->out[1]);
    sg_buf_free(&conn->body);
    sg_buf_free(&conn->req.url);
    for (int i = 0; i < SG_HTTP_HDR_COUNT; i++)
        sg_buf_free(&conn->req.hdr[i]);
    free(conn->tail);
    free(conn);
}

static void conn_handle_closed(struct sg_http_conn *conn)
{
    if (--conn->open_handles == 0)
        sg_http__server_conn_gone(conn->srv, conn);
}

void sg_http__conn_on_closed(struct sg_http_conn *conn)
{
    conn_handle_closed(conn);
}

static void conn_on_timer_closed(uv_handle_t *handle)
{
    conn_handle_closed(sg_container_of((uv_timer_t *)handle, struct sg_http_conn, timer));
}

void sg_http__conn_close(struct sg_http_conn *conn)
{
    if (conn->state == SG_HTTP_CLOSING)
        return;
    conn->state = SG_HTTP_CLOSING;
    conn->reading = false;
    /* No answer can go out any more; a held one's events go on to the writers without it. */
    sg_ack_detach(conn->ack);
    conn->ack = NULL;
    conn_cancel_later(conn);
    /* The timer closes last, so its callback (never run before this returns) is the earliest
     * point the connection can be freed, even when the transport reports at once. */
    conn->io->close(conn);
    uv_close((uv_handle_t *)&conn->timer, conn_on_timer_closed);
}

void sg_http__conn_on_shutdown(struct sg_http_conn *conn, int status)
{
    if (status < 0 && conn->state == SG_HTTP_LINGER)
        sg_http__conn_close(conn);
}

/* Everything is written: send FIN and drop input until the peer closes, so the kernel has no
 * unread input when the socket closes (which would turn the close into a reset). */
static void conn_linger(struct sg_http_conn *conn)
{
    if (conn->eof) {
        sg_http__conn_close(conn);
        return;
    }
    conn->state = SG_HTTP_LINGER;
    if (conn->io->shutdown(conn) < 0 || conn_read_start(conn) < 0) {
        sg_http__conn_close(conn);
        return;
    }
    sg_http__conn_timer(conn, SG_HTTP_TIMER_LINGER, SG_HTTP_LINGER_MS);
}

/* The last response is queued (or none is due): stop parsing, write it, then linger. Safe
 * inside parser callbacks; the write starts in sg_http__conn_flush once the parser has returned. */
void sg_http__conn_finish(struct sg_http_conn *conn)
{
    const struct sg_config *cfg = conn->srv->cfg;
    uint64_t ms;

    if (conn->state != SG_HTTP_OPEN)
        return;
    conn->state = SG_HTTP_FINISHING;
    free(conn->tail);
    conn->tail = NULL;
    conn->tail_len = 0;
    conn->stalled = false;
    conn_read_stop(conn);
    /* A peer that never reads its last response must not hold the connection forever, nor
     * hold up a shutdown past its deadline. */
    ms = cfg->http_idle_timeout_ms;
    if (conn->srv->shutting_down && cfg->shutdown_timeout_ms > 0)
        ms = SG_MIN(ms, cfg->shutdown_timeout_ms);
    sg_http__conn_timer(conn, SG_HTTP_TIMER_FLUSH, ms);
}

/* --- writing ----------------------------------------------------------------------------- */

size_t sg_http__conn_pending(const struct sg_http_conn *conn)
{
    return conn->out[0].len + conn->out[1].len;
}

static void conn_parse(struct sg_http_conn *conn, const char *data, size_t len);
static void conn_resume(struct sg_http_conn *conn);

/* Gives back the storage a connection does not need between requests (the request's URL,
 * headers and body; output buffers with nothing in them; a held answer's errors once it is
 * gone), so an idle keep-alive connection holds no buffer of its own. Called once the
 * connection has waited SG_HTTP_TRIM_MS for its next request, and after a write that
 * completes later than that. */
static void conn_trim(struct sg_http_conn *conn)
{
    if (conn->state == SG_HTTP_CLOSING)
        return;
    if (!conn->req.active) {
        sg_buf_free(&conn->req.url);
        for (int i = 0; i < SG_HTTP_HDR_COUNT; i++)
            sg_buf_free(&conn->req.hdr[i]);
        sg_buf_free(&conn->body);
    }
    if (!conn->ack)
        sg_buf_free(&conn->held_errors);
    for (int i = 0; i < 2; i++)
        if (conn->out[i].len == 0)
            sg_buf_free(&conn->out[i]);
    conn_account_input(conn);
    sg_http__conn_account_body(conn);
}

void sg_http__conn_on_write(struct sg_http_conn *conn, int status)
{
    conn->writing = false;
    sg_buf_reset(&conn->out[conn->fill ^ 1]);
    if (conn->state == SG_HTTP_CLOSING)
        return;
    if (status < 0) {
        sg_http__conn_debug(conn, "http write failed", 0, uv_strerror(status));
        sg_http__conn_close(conn);
        return;
    }
    conn_resume(conn);
    sg_http__conn_flush(conn);
    if (conn->trimmed)
        conn_trim(conn);
}

void sg_http__conn_idle(struct sg_http_conn *conn)
{
    uint64_t idle = conn->srv->cfg->http_idle_timeout_ms;

    conn->idle_due = uv_now(conn->timer.loop) + idle;
    conn->trimmed = false;
    sg_http__conn_timer(conn, SG_HTTP_TIMER_IDLE, SG_MIN(idle, (uint64_t)SG_HTTP_TRIM_MS));
}

/* Once the output has drained below the mark and no answer is held: parse what was held back
 * at the last request boundary, then read again. */
static void conn_resume(struct sg_http_conn *conn)
{
    char *tail = conn->tail;
    size_t tail_len = conn->tail_len;

    if (!conn->stalled || conn->ack || conn->later || conn->state != SG_HTTP_OPEN ||
        sg_http__conn_pending(conn) >= SG_HTTP_OUT_HIGH)
        return;
    conn->stalled = false;
    conn->tail = NULL;
    conn->tail_len = 0;
    /* The parser was paused at the end of the last request it answered. */
    llhttp_resume(&conn->parser);
    if (tail_len > 0)
        conn_parse(conn, tail, tail_len); /* flushes; stalling again copies what is left */
    free(tail);
    if (conn->state == SG_HTTP_OPEN && !conn->stalled && conn_read_start(conn) < 0)
        sg_http__conn_close(conn);
}

/* Starts writing what is queued unless a write is in flight; moves a finishing connection
 * on once everything is out. Never called from inside a parser callback. */
void sg_http__conn_flush(struct sg_http_conn *conn)
{
    struct sg_buf *out;
    int rc;

    if (conn->state == SG_HTTP_CLOSING || conn->state == SG_HTTP_LINGER)
        return;
    if (conn->broken) {
        sg_http__conn_close(conn);
        return;
    }
    out = &conn->out[conn->fill];
    if (!conn->writing && out->len > 0) {
        rc = conn->io->write(conn, out->data, out->len);
        if (rc < 0) {
            sg_http__conn_debug(conn, "http write failed", 0, uv_strerror(rc));
            sg_http__conn_close(conn);
            return;
        }
        if (rc == SG_HTTP_WRITTEN) {
            sg_buf_reset(out); /* out already, as most responses are */
        } else {
            conn->writing = true;
            conn->fill ^= 1;
        }
    }
    if (!conn->writing && conn->state == SG_HTTP_FINISHING)
        conn_linger(conn);
}

/* --- responses --------------------------------------------------------------------------- */

/* Queues one response. `close` adds Connection: close and ends the connection after it.
 * `extra` holds further header lines ("Name: value\r\n..."), or NULL. */
void sg_http__conn_respond(struct sg_http_conn *conn, int status, const char *type,
                           const char *body, size_t body_len, const char *extra, bool close)
{
    struct sg_buf *out = &conn->out[conn->fill];
    size_t saved = out->len;
    /* The method of a request cut short before it was parsed is unknown, not the last one's. */
    bool head = conn->req.active && conn->req.head;
    const char *connection = "";
    int rc;

    if (conn->state != SG_HTTP_OPEN)
        return; /* the connection already has its last response */
    if (close)
        connection = "Connection: close\r\n";
    else if (llhttp_get_http_major(&conn->parser) == 1 && llhttp_get_http_minor(&conn->parser) == 0)
        connection = "Connection: keep-alive\r\n";

    /* Appends, not printf: this runs once per request. */
    rc = sg_buf_append_str(out, "HTTP/1.1 ");
    if (rc == 0)
        rc = sg_buf_append_uint(out, (unsigned)status);
    if (rc == 0)
        rc = sg_buf_append_char(out, ' ');
    if (rc == 0)
        rc = sg_buf_append_str(out, sg_http_reason(status));
    if (rc == 0 && type)
        rc = sg_buf_append_str(out, "\r\nContent-Type: ");
    if (rc == 0 && type)
        rc = sg_buf_append_str(out, type);
    if (rc == 0)
        rc = sg_buf_append_str(out, "\r\nContent-Length: ");
    if (rc == 0)
        rc = sg_buf_append_uint(out, body_len);
    if (rc == 0)
        rc = sg_buf_append_str(out, "\r\n");
    if (rc == 0)
        rc = sg_buf_append_str(out, connection);
    if (rc == 0 && extra)
        rc = sg_buf_append_str(out, extra);
    if (rc == 0)
        rc = sg_buf_append_str(out, "\r\n");
    if (rc == 0 && !head)
        rc = sg_buf_append(out, body, body_len);
    if (rc < 0) {
        out->len = saved;
        conn->broken = true;
        sg_http__conn_finish(conn);
        return;
    }
    sg_http__count_status(conn->srv, status);
    if (close)
        sg_http__conn_finish(conn);
}

/* Answers {"error":"<msg>"}. */
void sg_http__conn_respond_error(struct sg_http_conn *conn, int status, const char *msg,
                                 const char *extra, bool close)
{
    struct sg_buf *b = &conn->srv->resp;

    sg_buf_reset(b);
    if (sg_buf_append_str(b, "{\"error\":") < 0 ||
        sg_buf_append_json_string(b, msg, strlen(msg)) < 0 || sg_buf_append_char(b, '}') < 0) {
        conn->broken = true;
        sg_http__conn_finish(conn);
        return;
    }
    sg_http__conn_respond(conn, status, SG_HTTP_JSON, b->data, b->len, extra, close);
}

const char *sg_http__error_extra(const struct sg_http_server *srv, int status,
                                 const struct sg_http_route *route)
{
    if (status == 503)
        return srv->retry_after;
    if (status == 429) /* http.rate_limit is at least 1 per second */
        return "Retry-After: 1\r\n";
    if (status == 401)
        return "WWW-Authenticate: Bearer\r\n";
    if (status == 405 && route)
        return route->methods == SG_HTTP_POST ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n";
    return NULL;
}

/* --- answers a handler gives later (sg_http_hold) ---------------------------------------- */

void sg_http_hold(struct sg_http_conn *conn, void (*cancel)(void *arg), void *arg)
{
    conn->later = true;
    conn->later_cancel = cancel;
    conn->later_arg = arg;
}

void sg_http_answer(struct sg_http_conn *conn, int status, const char *body, size_t len,
                    const char *extra)
{
    bool held = conn->later;
    conn->later = false;
    conn->later_cancel = NULL;
    sg_http__conn_respond(conn, status, SG_HTTP_JSON, body, len, extra,
                          conn->later_close || conn->srv->shutting_down);
    if (!held || conn->req.active)
        return; /* answered inside its request: on_message_complete goes on */
    if (conn->state == SG_HTTP_OPEN)
        sg_http__conn_idle(conn);
    conn_resume(conn);
    sg_http__conn_flush(conn);
}

/* --- answers held for delivery (ingest.ack delivered) ----------------------------------- */

/* Appends the "errors" list (and errors_truncated) of an ingest answer, then closes the object. */
int sg_http__append_errors(struct sg_buf *resp, const struct sg_buf *errors, size_t rejected,
                           size_t nerrors)
{
    int rc = sg_buf_append_str(resp, ",\"errors\":[");
    if (rc == 0)
        rc = sg_buf_append(resp, errors->data, errors->len);
    if (rc == 0)
        rc = sg_buf_append_char(resp, ']');
    if (rc == 0 && rejected > nerrors)
        rc = sg_buf_append_str(resp, ",\"errors_truncated\":true");
    if (rc == 0)
        rc = sg_buf_append_char(resp, '}');
    return rc;
}

/* Queues the held answer: 202 when every accepted event was written by every writer, 502 when
 * one failed for good, 503 (with Retry-After) when http.ack_timeout passed first. Lets go of
 * the group, which goes on alone when events are still pending. Safe inside parser callbacks:
 * it only queues. */
static void conn_answer_held(struct sg_http_conn *conn, bool timed_out)
{
    struct sg_http_server *srv = conn->srv;
    struct sg_ack *ack = conn->ack;
    struct sg_buf *resp = &srv->resp;
    bool close = conn->held_close || srv->shutting_down;
    size_t failed = sg_ack_failed(ack), pending = sg_ack_pending(ack);
    int status = timed_out ? 503 : failed > 0 ? 502 : 202;
    int rc = 0;

    sg_histogram_observe(srv->ack_seconds, (double)(uv_hrtime() - sg_ack_sealed_ns(ack)) / 1e9);
    sg_buf_reset(resp);
    if (status == 503)
        rc = sg_buf_append_str(resp, "{\"error\":\"not every accepted event was confirmed "
                                     "within http.ack_timeout; those pending are still being "
                                     "written\",");
    else if (status == 502)
        rc = sg_buf_append_str(resp, "{\"error\":\"a writer failed some accepted events for "
                                     "good (see the log)\",");
    else
        rc = sg_buf_append_char(resp, '{');
    if (rc == 0)
        rc = sg_buf_printf(resp, "\"accepted\":%zu,\"rejected\":%zu,\"delivered\":%zu",
                           sg_ack_accepted(ack), conn->held_rejected, sg_ack_delivered(ack));
    if (rc == 0 && status != 202)
        rc = sg_buf_printf(resp, ",\"failed\":%zu", failed);
    if (rc == 0 && status == 503)
        rc = sg_buf_printf(resp, ",\"pending\":%zu", pending);
    if (rc == 0)
        rc = sg_http__append_errors(resp, &conn->held_errors, conn->held_rejected,
                                    conn->held_nerrors);
    sg_ack_detach(ack);
    conn->ack = NULL;
    sg_buf_reset(&conn->held_errors);
    if (rc < 0) {
        sg_http__conn_respond_error(conn, 500, "out of memory", NULL, close);
        return;
    }
    if (status == 502)
        sg_http__conn_debug(conn, "http ingest answered: a writer failed events", status, NULL);
    sg_http__conn_respond(conn, status, SG_HTTP_JSON, resp->data, resp->len,
                          status == 503 ? srv->retry_after : NULL, close);
}

/* Out of any parser callback: answer, then go on with the requests held back behind it. */
static void conn_release_held(struct sg_http_conn *conn, bool timed_out)
{
    conn_answer_held(conn, timed_out);
    if (conn->state == SG_HTTP_OPEN)
        sg_http__conn_idle(conn);
    conn_resume(conn);
    sg_http__conn_flush(conn);
}

/* Every accepted event of the held request is settled. Told by a writer; should that ever
 * happen inside another request's ingest, the answer waits for the next loop iteration rather
 * than parse this connection's next requests in the middle of it (they share the server's
 * scratch buffers). */
static void conn_on_settled(void *arg, struct sg_ack *ack)
{
    struct sg_http_conn *conn = arg;

    (void)ack;
    if (conn->srv->ingesting) {
        sg_http__conn_timer(conn, SG_HTTP_TIMER_ACK, 1);
        return;
    }
    conn_release_held(conn, false);
}

/* Holds the answer of a request whose events went to the writers through `ack`, until they are
 * settled; answers at once when they already are. Takes `ack`. */
void sg_http__conn_hold(struct sg_http_conn *conn, struct sg_ack *ack,
                        const struct sg_ingest_result *res, bool close)
{
    struct sg_http_server *srv = conn->srv;

    conn->ack = ack;
    conn->held_rejected = res->rejected;
    conn->held_nerrors = res->nerrors;
    conn->held_close = close;
    sg_buf_reset(&conn->held_errors);
    if (sg_buf_append(&conn->held_errors, srv->errors.data, srv->errors.len) < 0) {
        sg_ack_detach(ack);
        conn->ack = NULL;
        sg_http__conn_respond_error(conn, 500, "out of memory", NULL, close);
        return;
    }
    sg_http__conn_account_body(conn);
    if (sg_ack_seal(ack, conn_on_settled, conn))
        conn_answer_held(conn, false);
    /* Otherwise on_message_complete pauses the parser here until the answer goes out. */
}

/* --- parsing ----------------------------------------------------------------------------- */

/* Parses `data` and queues the answers; then writes them out. */
static void conn_parse(struct sg_http_conn *conn, const char *data, size_t len)
{
    llhttp_errno_t err = llhttp_execute(&conn->parser, data, len);
    const char *pos = llhttp_get_error_pos(&conn->parser);
    size_t used = len;

    if (err != HPE_OK && pos >= data && pos <= data + len)
        used = (size_t)(pos - data);

    switch (err) {
    case HPE_OK:
        break;
    case HPE_PAUSED:
        if (conn->state == SG_HTTP_OPEN && conn->stalled) {
            /* The read buffer is the server's: keep a copy of the rest; reading stays off
             * until it is parsed. */
            conn_read_stop(conn);
            if (len > used) {
                conn->tail = malloc(len - used);
                if (!conn->tail) {
                    conn->broken = true;
                    break;
                }
                memcpy(conn->tail, data + used, len - used);
                conn->tail_len = len - used;
            }
        } else if (conn->state == SG_HTTP_OPEN) {
            conn->broken = true; /* paused for no known reason: cannot go on */
        }
        break;
    case HPE_PAUSED_UPGRADE:
        /* Answered already; what follows would be another protocol. */
        sg_http__conn_finish(conn);
        break;
    default:
        if (conn->state == SG_HTTP_OPEN) {
            /* A protocol error from llhttp itself (callbacks answer their own errors). */
            const char *reason = llhttp_get_error_reason(&conn->parser);
            struct sg_buf *b = &conn->srv->resp;

            if (!reason)
                reason = llhttp_errno_name(err);
            sg_http__conn_debug(conn, "http parse error", 400, reason);
            sg_buf_reset(b);
            if (sg_buf_append_str(b, "{\"error\":") == 0 &&
                sg_buf_append_json_string(b, reason, strlen(reason)) == 0 &&
                sg_buf_printf(b, ",\"offset\":%" PRIu64 "}", conn->stream_off + used) == 0)
                sg_http__conn_respond(conn, 400, SG_HTTP_JSON, b->data, b->len, NULL, true);
            else
                conn->broken = true;
            sg_http__conn_finish(conn);
        }
        break;
    }
    conn->stream_off += used;
    sg_http__conn_flush(conn);
}

/* `len` > 0 bytes were read into the server's read buffer. */
void sg_http__conn_input(struct sg_http_conn *conn, const char *data, size_t len)
{
    sg_counter_add(conn->srv->bytes_received, len);
    if (conn->state == SG_HTTP_OPEN && !conn->stalled)
        conn_parse(conn, data, len);
    /* LINGER: dropped. */
    if (conn->state != SG_HTTP_CLOSING)
        conn_account_input(conn);
}

size_t sg_http__conn_feed(struct sg_http_conn *conn, const char *data, size_t len)
{
    size_t n = SG_MIN((size_t)SG_HTTP_READ_BUF_SIZE, len);

    if (!conn->reading || len == 0)
        return 0;
    memcpy(conn->srv->rbuf, data, n);
    sg_http__conn_input(conn, conn->srv->rbuf, n);
    return n;
}

void sg_http__conn_feed_end(struct sg_http_conn *conn, int status)
{
    conn->eof = true;
    conn_read_stop(conn);
    if (status != UV_EOF)
        sg_http__conn_debug(conn, "http read failed", 0, uv_strerror(status));
    if (status == UV_EOF && conn->state == SG_HTTP_OPEN && !conn->req.active &&
        (conn->writing || sg_http__conn_pending(conn) > 0)) {
        /* The client half-closed after its requests: still deliver the answers. */
        sg_http__conn_finish(conn);
        sg_http__conn_flush(conn);
        return;
    }
    sg_http__conn_close(conn);
}

/* The deadline has passed: the connection's timeout of its kind. */
static void conn_timer_expired(struct sg_http_conn *conn)
{
    struct sg_http_server *srv = conn->srv;

    conn->timer_due = 0;
    switch (conn->timer_kind) {
    case SG_HTTP_TIMER_IDLE:
        if (!conn->trimmed) {
            uint64_t now = uv_now(conn->timer.loop);
            conn->trimmed = true;
            conn_trim(conn);
            if (conn->idle_due > now) {
                sg_http__conn_timer(conn, SG_HTTP_TIMER_IDLE, conn->idle_due - now);
                break;
            }
        }
        sg_http__count_limit(srv, SG_HTTP_LIMIT_IDLE_TIMEOUT);
        sg_http__conn_close(conn);
        break;
    case SG_HTTP_TIMER_HEADER:
    case SG_HTTP_TIMER_BODY: {
        bool header = conn->timer_kind == SG_HTTP_TIMER_HEADER;

        sg_http__count_limit(srv,
                             header ? SG_HTTP_LIMIT_HEADER_TIMEOUT : SG_HTTP_LIMIT_BODY_TIMEOUT);
        sg_http__conn_debug(conn, "http request timed out", 408, header ? "headers" : "body");
        sg_http__conn_respond_error(conn, 408,
                                    header
                                        ? "request headers not received within http.header_timeout"
                                        : "request body not received within http.body_timeout",
                                    NULL, true);
        sg_http__conn_finish(conn);
        sg_http__conn_flush(conn);
        break;
    }
    case SG_HTTP_TIMER_FLUSH:
    case SG_HTTP_TIMER_LINGER:
        sg_http__conn_close(conn);
        break;
    case SG_HTTP_TIMER_ACK:
        if (conn->ack && sg_ack_pending(conn->ack) == 0) {
            conn_release_held(conn, false); /* settled during another request's ingest */
        } else if (conn->ack) {
            sg_http__count_limit(srv, SG_HTTP_LIMIT_ACK_TIMEOUT);
            sg_http__conn_debug(conn, "http answer timed out waiting for delivery", 503, NULL);
            conn_release_held(conn, true);
        }
        break;
    case SG_HTTP_TIMER_NONE:
        break;
    }
}

static void conn_on_timer(uv_timer_t *timer)
{
    struct sg_http_conn *conn = sg_container_of(timer, struct sg_http_conn, timer);
    uint64_t now = uv_now(timer->loop);

    if (conn->timer_due == 0)
        return;
    if (now < conn->timer_due) {
        /* Set for an earlier deadline that has since moved later. */
        uv_timer_start(timer, conn_on_timer, conn->timer_due - now, 0);
        return;
    }
    conn_timer_expired(conn);
}

/* --- life cycle -------------------------------------------------------------------------- */

void sg_http__conn_expire(struct sg_http_conn *conn)
{
    if (conn->timer_due == 0)
        return;
    uv_timer_stop(&conn->timer);
    conn_timer_expired(conn);
}

void sg_http__conn_peer_name(struct sg_http_conn *conn)
{
    struct sockaddr_storage ss;
    int namelen = sizeof(ss);
    char ip[64] = "?";
    int port = 0;

    if (uv_tcp_getpeername(&conn->tcp, (struct sockaddr *)&ss, &namelen) == 0) {
        if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, ip, sizeof(ip));
            port = ntohs(a->sin6_port);
        } else if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
            uv_ip4_name(a, ip, sizeof(ip));
            port = ntohs(a->sin_port);
        }
    }
    snprintf(conn->peer, sizeof(conn->peer), "%s:%d", ip, port);
}

int sg_http__conn_start(struct sg_http_conn *conn)
{
    const struct sg_config *cfg = conn->srv->cfg;
    size_t hdr_max = cfg->http_max_header_size ? cfg->http_max_header_size : 1;

    sg_buf_init(&conn->out[0], SG_HTTP_OUT_MAX);
    sg_buf_init(&conn->out[1], SG_HTTP_OUT_MAX);
    sg_buf_init(&conn->body, cfg->http_max_body_size ? cfg->http_max_body_size : 1);
    sg_buf_init(&conn->held_errors, SG_HTTP_OUT_MAX);
    sg_buf_init(&conn->req.url, hdr_max);
    for (int i = 0; i < SG_HTTP_HDR_COUNT; i++)
        sg_buf_init(&conn->req.hdr[i], hdr_max);
    llhttp_init(&conn->parser, HTTP_REQUEST, &conn->srv->settings);
    sg_http__conn_idle(conn);
    return conn_read_start(conn);
}

void sg_http__conn_reject(struct sg_http_conn *conn)
{
    static const char body[] = "{\"error\":\"too many connections\"}";

    sg_http__conn_debug(conn, "http connection refused", 503, "http.max_connections reached");
    /* The parser is never run; sg_http__conn_respond only reads its (zeroed) version fields. */
    sg_buf_init(&conn->out[0], SG_HTTP_OUT_MAX);
    sg_buf_init(&conn->out[1], SG_HTTP_OUT_MAX);
    sg_http__conn_respond(conn, 503, SG_HTTP_JSON, body, sizeof(body) - 1, "Retry-After: 1\r\n",
                          true);
    sg_http__conn_flush(conn);
}

void sg_http__conn_shutdown(struct sg_http_conn *conn)
{
    const struct sg_config *cfg = conn->srv->cfg;

    if (conn->state != SG_HTTP_OPEN || conn->req.active)
        return; /* already ending, or its request will end it (shutting_down is set) */
    if (conn->ack) {
        /* Its answer ends it (shutting_down is set); the wait is bounded by the shutdown's
         * deadline too. */
        uint64_t due = uv_now(conn->timer.loop) + cfg->shutdown_timeout_ms;
        if (conn->timer_due == 0 || conn->timer_due > due)
            sg_http__conn_timer(conn, SG_HTTP_TIMER_ACK, cfg->shutdown_timeout_ms);
        return;
    }
    if (conn->writing || sg_http__conn_pending(conn) > 0) {
        sg_http__conn_finish(conn);
        sg_http__conn_flush(conn);
        return;
    }
    sg_http__conn_close(conn);
}
