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
 * Bytes move through conn->io: the TCP transport at the end of this file in production, an
 * in-memory one in tests. Everything else here is the same for both. */
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

static const char sg_http_json[] = "application/json";
static const char sg_http_prometheus[] = "text/plain; version=0.0.4; charset=utf-8";

static void conn_flush(struct sg_http_conn *conn);

static inline struct sg_http_conn *conn_of_parser(llhttp_t *parser)
{
    return sg_container_of(parser, struct sg_http_conn, parser);
}

/* Bad input and connection trouble, at debug level and at most one line per interval. */
static void conn_debug(struct sg_http_conn *conn, const char *msg, int status, const char *detail)
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
static void conn_timer(struct sg_http_conn *conn, enum sg_http_timer kind, uint64_t ms)
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
static void conn_account_body(struct sg_http_conn *conn)
{
    if (conn->srv->budget)
        sg_budget_set(conn->srv->budget, SG_BUDGET_BODIES, &conn->budget_body,
                      conn->body.cap + conn->held_errors.cap);
}

/* --- closing ----------------------------------------------------------------------------- */

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
    conn_timer(conn, SG_HTTP_TIMER_LINGER, SG_HTTP_LINGER_MS);
}

/* The last response is queued (or none is due): stop parsing, write it, then linger. Safe
 * inside parser callbacks; the write starts in conn_flush once the parser has returned. */
static void conn_finish(struct sg_http_conn *conn)
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
    conn_timer(conn, SG_HTTP_TIMER_FLUSH, ms);
}

/* --- writing ----------------------------------------------------------------------------- */

static size_t conn_pending(const struct sg_http_conn *conn)
{
    return conn->out[0].len + conn->out[1].len;
}

static void conn_parse(struct sg_http_conn *conn, const char *data, size_t len);
static void conn_resume(struct sg_http_conn *conn);

/* Gives back the storage a connection does not need between requests (the request's URL,
 * headers and body; output buffers with nothing in them; a held answer's errors once it is
 * gone), so an idle keep-alive connection holds no buffer of its own. Called after input is
 * handled and after a write completes. */
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
    conn_account_body(conn);
}

void sg_http__conn_on_write(struct sg_http_conn *conn, int status)
{
    conn->writing = false;
    sg_buf_reset(&conn->out[conn->fill ^ 1]);
    if (conn->state == SG_HTTP_CLOSING)
        return;
    if (status < 0) {
        conn_debug(conn, "http write failed", 0, uv_strerror(status));
        sg_http__conn_close(conn);
        return;
    }
    conn_resume(conn);
    conn_flush(conn);
    conn_trim(conn);
}

/* Once the output has drained below the mark and no answer is held: parse what was held back
 * at the last request boundary, then read again. */
static void conn_resume(struct sg_http_conn *conn)
{
    char *tail = conn->tail;
    size_t tail_len = conn->tail_len;

    if (!conn->stalled || conn->ack || conn->state != SG_HTTP_OPEN ||
        conn_pending(conn) >= SG_HTTP_OUT_HIGH)
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
static void conn_flush(struct sg_http_conn *conn)
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
            conn_debug(conn, "http write failed", 0, uv_strerror(rc));
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
static void conn_respond(struct sg_http_conn *conn, int status, const char *type, const char *body,
                         size_t body_len, const char *extra, bool close)
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
        conn_finish(conn);
        return;
    }
    sg_http__count_status(conn->srv, status);
    if (close)
        conn_finish(conn);
}

/* Answers {"error":"<msg>"}. */
static void conn_respond_error(struct sg_http_conn *conn, int status, const char *msg,
                               const char *extra, bool close)
{
    struct sg_buf *b = &conn->srv->resp;

    sg_buf_reset(b);
    if (sg_buf_append_str(b, "{\"error\":") < 0 ||
        sg_buf_append_json_string(b, msg, strlen(msg)) < 0 || sg_buf_append_char(b, '}') < 0) {
        conn->broken = true;
        conn_finish(conn);
        return;
    }
    conn_respond(conn, status, sg_http_json, b->data, b->len, extra, close);
}

static const char *http_error_extra(const struct sg_http_server *srv, int status,
                                    enum sg_http_route route)
{
    if (status == 503)
        return srv->retry_after;
    if (status == 429) /* http.rate_limit is at least 1 per second */
        return "Retry-After: 1\r\n";
    if (status == 401)
        return "WWW-Authenticate: Bearer\r\n";
    if (status == 405)
        return route == SG_HTTP_ROUTE_EVENTS ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n";
    return NULL;
}

/* --- request headers --------------------------------------------------------------------- */

static void req_reset(struct sg_http_conn *conn)
{
    struct sg_http_req *req = &conn->req;

    req->active = true;
    req->head = false;
    req->headers_done = false;
    req->keep_alive = false;
    req->expect_continue = false;
    req->buffer_body = false;
    req->gzip = false;
    req->format = SG_BODY_JSON;
    req->route = SG_HTTP_ROUTE_NONE;
    req->status = 0;
    req->error = NULL;
    req->header_bytes = 0;
    req->body_bytes = 0;
    req->field_len = 0;
    req->cur = SG_HTTP_HDR_NONE;
    sg_buf_reset(&req->url);
    for (int i = 0; i < SG_HTTP_HDR_COUNT; i++) {
        sg_buf_reset(&req->hdr[i]);
        req->hdr_seen[i] = false;
    }
    /* Small bodies keep their storage for the next request on this connection; a large one
     * gives it back, so an idle keep-alive connection does not pin http.max_body_size. */
    if (conn->body.cap > SG_HTTP_KEEP_BODY_CAP)
        sg_buf_free(&conn->body);
    else
        sg_buf_reset(&conn->body);
    conn_account_body(conn);
}

/* Counts request-line and header bytes; past the limit, answers 431 and stops the parser. */
static int req_count_header_bytes(struct sg_http_conn *conn, size_t len)
{
    struct sg_http_req *req = &conn->req;

    req->header_bytes += len;
    if (req->header_bytes <= conn->srv->cfg->http_max_header_size)
        return 0;
    sg_http__count_limit(conn->srv, SG_HTTP_LIMIT_HEADER_SIZE);
    conn_debug(conn, "http request rejected", 431, "headers too large");
    conn_respond_error(conn, 431, "request headers exceed http.max_header_size", NULL, true);
    return HPE_USER;
}

static int on_message_begin(llhttp_t *parser)
{
    struct sg_http_conn *conn = conn_of_parser(parser);

    req_reset(conn);
    conn_timer(conn, SG_HTTP_TIMER_HEADER, conn->srv->cfg->http_header_timeout_ms);
    return 0;
}

static int on_method_complete(llhttp_t *parser)
{
    conn_of_parser(parser)->req.head = llhttp_get_method(parser) == HTTP_HEAD;
    return 0;
}

static int on_url(llhttp_t *parser, const char *at, size_t len)
{
    struct sg_http_conn *conn = conn_of_parser(parser);

    if (req_count_header_bytes(conn, len) != 0)
        return HPE_USER;
    /* The URL is capped at the header limit, so this only fails when out of memory. */
    if (sg_buf_append(&conn->req.url, at, len) < 0) {
        conn_respond_error(conn, 500, "out of memory", NULL, true);
        return HPE_USER;
    }
    return 0;
}

static int on_header_field(llhttp_t *parser, const char *at, size_t len)
{
    struct sg_http_conn *conn = conn_of_parser(parser);
    struct sg_http_req *req = &conn->req;

    if (req_count_header_bytes(conn, len) != 0)
        return HPE_USER;
    /* Names longer than the buffer are none of the ones kept; remember only that. */
    if (req->field_len + len < sizeof(req->field))
        memcpy(req->field + req->field_len, at, len);
    req->field_len += len;
    return 0;
}

static int on_header_field_complete(llhttp_t *parser)
{
    static const char *const names[SG_HTTP_HDR_COUNT] = {
        [SG_HTTP_HDR_CONTENT_TYPE] = "content-type",
        [SG_HTTP_HDR_CONTENT_ENCODING] = "content-encoding",
        [SG_HTTP_HDR_AUTHORIZATION] = "authorization",
        [SG_HTTP_HDR_EXPECT] = "expect",
    };
    struct sg_http_conn *conn = conn_of_parser(parser);
    struct sg_http_req *req = &conn->req;

    req->cur = SG_HTTP_HDR_NONE;
    /* Trailers after a chunked body change nothing. */
    if (!req->headers_done && req->field_len < sizeof(req->field)) {
        for (int i = 0; i < SG_HTTP_HDR_COUNT; i++) {
            if (strlen(names[i]) == req->field_len &&
                strncasecmp(names[i], req->field, req->field_len) == 0) {
                req->cur = (enum sg_http_hdr)i;
                break;
            }
        }
    }
    req->field_len = 0;
    if (req->cur != SG_HTTP_HDR_NONE) {
        /* A repeated header joins the first as a list, as HTTP defines. */
        if (req->hdr_seen[req->cur] && sg_buf_append(&req->hdr[req->cur], ", ", 2) < 0)
            goto nomem;
        req->hdr_seen[req->cur] = true;
    }
    return 0;

nomem:
    conn_respond_error(conn, 500, "out of memory", NULL, true);
    return HPE_PAUSED;
}

static int on_header_value(llhttp_t *parser, const char *at, size_t len)
{
    struct sg_http_conn *conn = conn_of_parser(parser);
    struct sg_http_req *req = &conn->req;

    if (req_count_header_bytes(conn, len) != 0)
        return HPE_USER;
    if (req->cur != SG_HTTP_HDR_NONE && sg_buf_append(&req->hdr[req->cur], at, len) < 0) {
        conn_respond_error(conn, 500, "out of memory", NULL, true);
        return HPE_USER;
    }
    return 0;
}

static int on_header_value_complete(llhttp_t *parser)
{
    conn_of_parser(parser)->req.cur = SG_HTTP_HDR_NONE;
    return 0;
}

/* A kept header's value with surrounding whitespace trimmed; len 0 when absent. */
static const char *req_header(const struct sg_http_req *req, enum sg_http_hdr h, size_t *len)
{
    const struct sg_buf *b = &req->hdr[h];
    const char *s = b->data;
    size_t n = b->len;

    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    *len = n;
    return n > 0 ? s : "";
}

static bool span_ieq(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && strncasecmp(s, lit, len) == 0;
}

/* Compares two byte strings in time that depends only on the length of `secret`, so a client
 * timing the answer learns neither where a mismatch is nor how long the secret is. */
static bool secret_eq(const char *given, size_t given_len, const char *secret, size_t secret_len)
{
    volatile unsigned char diff = given_len != secret_len;

    for (size_t i = 0; i < secret_len; i++) {
        unsigned char g = given_len > 0 ? (unsigned char)given[i % given_len] : 0;
        diff |= g ^ (unsigned char)secret[i];
    }
    return diff == 0;
}

/* Does "Authorization: Bearer <token>" carry one of `tokens`? Every token is compared, so
 * the time taken does not tell which one (if any) came close. */
/* The index of the token the request's bearer matches, or -1. Every token is compared in full
 * (no early exit), so the time taken does not tell which one nearly matched. */
static int req_bearer_index(const struct sg_http_req *req, const char *const *tokens, size_t count)
{
    size_t len;
    const char *v = req_header(req, SG_HTTP_HDR_AUTHORIZATION, &len);
    int found = -1;

    if (len < 7 || strncasecmp(v, "Bearer ", 7) != 0)
        return -1;
    v += 7;
    len -= 7;
    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    for (size_t i = 0; i < count; i++)
        if (secret_eq(v, len, tokens[i], strlen(tokens[i])))
            found = (int)i;
    return found;
}

static bool req_bearer_ok(const struct sg_http_req *req, const char *const *tokens, size_t count)
{
    return req_bearer_index(req, tokens, count) >= 0;
}

/* http.rate_limit: one bucket per token when tokens are configured (so clients behind one
 * address do not share), else per client address. Returns true when the request may go on. */
static bool req_rate_ok(struct sg_http_conn *conn)
{
    struct sg_http_server *srv = conn->srv;
    const struct sg_config *cfg = srv->cfg;
    char key[80];
    int n;

    if (!srv->rate)
        return true;
    if (cfg->http_auth_tokens.count > 0) {
        n = snprintf(key, sizeof(key), "token:%d",
                     req_bearer_index(&conn->req, (const char *const *)cfg->http_auth_tokens.items,
                                      cfg->http_auth_tokens.count));
    } else {
        /* The peer is "ip:port" or "[v6]:port": the address is what comes before the port. */
        const char *colon = strrchr(conn->peer, ':');
        size_t len = colon ? (size_t)(colon - conn->peer) : strlen(conn->peer);
        n = snprintf(key, sizeof(key), "addr:%.*s", (int)len, conn->peer);
    }
    return sg_rate_take(srv->rate, key, (size_t)SG_MIN(n, (int)sizeof(key) - 1), sg_now_ms()) == 0;
}

static enum sg_http_route http_route(const char *url, size_t len)
{
    const char *q = memchr(url, '?', len);
    const char *h = memchr(url, '#', len);

    if (q)
        len = (size_t)(q - url);
    if (h && (size_t)(h - url) < len)
        len = (size_t)(h - url);
    if (len == 10 && memcmp(url, "/v1/events", 10) == 0)
        return SG_HTTP_ROUTE_EVENTS;
    if (len == 8 && memcmp(url, "/metrics", 8) == 0)
        return SG_HTTP_ROUTE_METRICS;
    if (len == 8 && memcmp(url, "/healthz", 8) == 0)
        return SG_HTTP_ROUTE_HEALTHZ;
    if (len == 7 && memcmp(url, "/readyz", 7) == 0)
        return SG_HTTP_ROUTE_READYZ;
    if (len == 8 && memcmp(url, "/v1/info", 8) == 0)
        return SG_HTTP_ROUTE_INFO;
    if (len == 11 && memcmp(url, "/v1/streams", 11) == 0)
        return SG_HTTP_ROUTE_STREAMS;
    if (len > 12 && memcmp(url, "/v1/streams/", 12) == 0)
        return SG_HTTP_ROUTE_STREAM;
    return SG_HTTP_ROUTE_NONE;
}

/* Decides what an ingest request's headers allow. Returns 0, or a status with `*msg`. */
static int req_check_ingest(struct sg_http_req *req, const char **msg)
{
    size_t len, mlen;
    const char *v = req_header(req, SG_HTTP_HDR_CONTENT_TYPE, &len);
    const char *semi;

    /* The media type, without parameters such as "; charset=utf-8". */
    semi = memchr(v, ';', len);
    mlen = semi ? (size_t)(semi - v) : len;
    while (mlen > 0 && (v[mlen - 1] == ' ' || v[mlen - 1] == '\t'))
        mlen--;
    if (len == 0 || span_ieq(v, mlen, "application/json")) {
        req->format = SG_BODY_JSON;
    } else if (span_ieq(v, mlen, "application/x-ndjson") ||
               span_ieq(v, mlen, "application/ndjson")) {
        req->format = SG_BODY_NDJSON;
    } else {
        *msg = "unsupported content type: use application/json or application/x-ndjson";
        return 415;
    }

    v = req_header(req, SG_HTTP_HDR_CONTENT_ENCODING, &len);
    if (len == 0 || span_ieq(v, len, "identity")) {
        req->gzip = false;
    } else if (span_ieq(v, len, "gzip") || span_ieq(v, len, "x-gzip")) {
        req->gzip = true;
    } else {
        *msg = "unsupported content encoding: use gzip or identity";
        return 415;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *parser)
{
    struct sg_http_conn *conn = conn_of_parser(parser);
    struct sg_http_server *srv = conn->srv;
    const struct sg_config *cfg = srv->cfg;
    struct sg_http_req *req = &conn->req;
    uint8_t method = llhttp_get_method(parser);
    bool chunked = (parser->flags & F_CHUNKED) != 0;
    bool has_body = chunked || parser->content_length > 0;
    const char *msg = NULL;
    size_t len;
    const char *expect;
    int status = 0;

    req->headers_done = true;
    /* An upgrade is never granted, so the connection cannot go on after the answer. */
    req->keep_alive =
        llhttp_should_keep_alive(parser) && !srv->shutting_down && !llhttp_get_upgrade(parser);
    expect = req_header(req, SG_HTTP_HDR_EXPECT, &len);
    /* HTTP/1.0 clients do not know 100 Continue. */
    req->expect_continue = span_ieq(expect, len, "100-continue") &&
                           (parser->http_major > 1 || parser->http_minor >= 1);
    req->route = http_route(req->url.data ? req->url.data : "", req->url.len);

    switch (req->route) {
    case SG_HTTP_ROUTE_NONE:
        status = 404;
        msg = "not found";
        break;
    case SG_HTTP_ROUTE_EVENTS:
        if (cfg->role == SG_ROLE_AGGREGATOR) {
            status = 404;
            msg = "this process is an aggregator (role aggregator): it takes no events; send "
                  "them to a gateway";
        } else if (method != HTTP_POST) {
            status = 405;
            msg = "method not allowed";
        } else if (cfg->http_auth_tokens.count > 0 &&
                   !req_bearer_ok(req, (const char *const *)cfg->http_auth_tokens.items,
                                  cfg->http_auth_tokens.count)) {
            status = 401;
            msg = "missing or invalid bearer token";
        }
        break;
    case SG_HTTP_ROUTE_STREAMS:
    case SG_HTTP_ROUTE_STREAM:
        /* The live query shows event data, so it takes the ingest tokens, not the metrics one. */
        if (method != HTTP_GET && method != HTTP_HEAD) {
            status = 405;
            msg = "method not allowed";
        } else if (cfg->http_auth_tokens.count > 0 &&
                   !req_bearer_ok(req, (const char *const *)cfg->http_auth_tokens.items,
                                  cfg->http_auth_tokens.count)) {
            status = 401;
            msg = "missing or invalid bearer token";
        }
        break;
    default:
        if (method != HTTP_GET && method != HTTP_HEAD) {
            status = 405;
            msg = "method not allowed";
        } else if (cfg->http_metrics_token && cfg->http_metrics_token[0] != '\0') {
            const char *token = cfg->http_metrics_token;
            if (!req_bearer_ok(req, &token, 1)) {
                status = 401;
                msg = "missing or invalid bearer token";
            }
        }
        break;
    }
    if (status == 0 && !chunked && parser->content_length > cfg->http_max_body_size) {
        sg_http__count_limit(srv, SG_HTTP_LIMIT_BODY_SIZE);
        status = 413;
        msg = "body exceeds http.max_body_size";
    }
    if (status == 0 && req->route == SG_HTTP_ROUTE_EVENTS)
        status = req_check_ingest(req, &msg);
    if (status == 0 && req->route == SG_HTTP_ROUTE_EVENTS && !req_rate_ok(conn)) {
        sg_http__count_limit(srv, SG_HTTP_LIMIT_RATE);
        status = 429;
        msg = "over http.rate_limit for this client: nothing was ingested, retry later";
    }
    /* Pushback comes before a single body byte is read: the client learns at once that
     * nothing of this request will be ingested and when to try again. */
    if (status == 0 && req->route == SG_HTTP_ROUTE_EVENTS && srv->budget &&
        !sg_budget_admits(srv->budget, chunked ? 0 : parser->content_length)) {
        sg_budget_count_pushback(srv->budget, SG_TRANSPORT_HTTP);
        status = 503;
        msg = "over the memory budget: nothing was ingested, retry later";
    }
    if (status == 0 && req->route == SG_HTTP_ROUTE_EVENTS && !sg_ingest_accepting(srv->ingest)) {
        status = 503;
        msg = "a writer has failed and cannot take events (see the log): nothing was ingested";
    }

    if (status != 0) {
        conn_debug(conn, "http request rejected", status, msg);
        if (!has_body || (!chunked && !req->expect_continue &&
                          parser->content_length <= SG_HTTP_KEEP_BODY_CAP)) {
            /* Nothing or little to skip: drop the body unread into memory and answer at
             * message complete, keeping the connection. */
            req->status = status;
            req->error = msg;
            if (has_body)
                conn_timer(conn, SG_HTTP_TIMER_BODY, cfg->http_body_timeout_ms);
            return 0;
        }
        /* Do not read (let alone keep) a body that is refused anyway. */
        conn_respond_error(conn, status, msg, http_error_extra(srv, status, req->route), true);
        return HPE_PAUSED;
    }

    req->buffer_body = req->route == SG_HTTP_ROUTE_EVENTS;
    if (has_body) {
        conn_timer(conn, SG_HTTP_TIMER_BODY, cfg->http_body_timeout_ms);
        if (req->expect_continue &&
            sg_buf_append_str(&conn->out[conn->fill], "HTTP/1.1 100 Continue\r\n\r\n") < 0) {
            conn->broken = true;
            conn_finish(conn);
            return HPE_PAUSED;
        }
    }
    return 0;
}

static int on_body(llhttp_t *parser, const char *at, size_t len)
{
    struct sg_http_conn *conn = conn_of_parser(parser);
    struct sg_http_req *req = &conn->req;

    req->body_bytes += len;
    if (req->body_bytes > conn->srv->cfg->http_max_body_size) {
        /* Only a chunked body gets here; a Content-Length one was refused at the headers. */
        sg_http__count_limit(conn->srv, SG_HTTP_LIMIT_BODY_SIZE);
        conn_debug(conn, "http request rejected", 413, "chunked body too large");
        conn_respond_error(conn, 413, "body exceeds http.max_body_size", NULL, true);
        return HPE_USER;
    }
    if (!req->buffer_body)
        return 0;
    if (sg_buf_append(&conn->body, at, len) < 0) {
        conn_respond_error(conn, 500, "out of memory", NULL, true);
        return HPE_USER;
    }
    conn_account_body(conn);
    if (conn->srv->budget &&
        sg_budget_used(conn->srv->budget) > sg_budget_limit(conn->srv->budget)) {
        /* The budget is spent while this body is still arriving (a chunked body's size is
         * unknown at the headers; other connections charge meanwhile). Nothing of it was
         * ingested yet, so a 503 is still the whole truth. */
        struct sg_http_server *srv = conn->srv;
        sg_budget_count_pushback(srv->budget, SG_TRANSPORT_HTTP);
        conn_debug(conn, "http request rejected", 503, "body outgrew the memory budget");
        conn_respond_error(conn, 503, "over the memory budget: nothing was ingested, retry later",
                           srv->retry_after, true);
        return HPE_USER;
    }
    return 0;
}

/* --- answers held for delivery (ingest.ack delivered) ----------------------------------- */

/* Appends the "errors" list (and errors_truncated) of an ingest answer, then closes the object. */
static int append_errors(struct sg_buf *resp, const struct sg_buf *errors, size_t rejected,
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
        rc = append_errors(resp, &conn->held_errors, conn->held_rejected, conn->held_nerrors);
    sg_ack_detach(ack);
    conn->ack = NULL;
    sg_buf_reset(&conn->held_errors);
    if (rc < 0) {
        conn_respond_error(conn, 500, "out of memory", NULL, close);
        return;
    }
    if (status == 502)
        conn_debug(conn, "http ingest answered: a writer failed events", status, NULL);
    conn_respond(conn, status, sg_http_json, resp->data, resp->len,
                 status == 503 ? srv->retry_after : NULL, close);
}

/* Out of any parser callback: answer, then go on with the requests held back behind it. */
static void conn_release_held(struct sg_http_conn *conn, bool timed_out)
{
    conn_answer_held(conn, timed_out);
    if (conn->state == SG_HTTP_OPEN)
        conn_timer(conn, SG_HTTP_TIMER_IDLE, conn->srv->cfg->http_idle_timeout_ms);
    conn_resume(conn);
    conn_flush(conn);
    conn_trim(conn);
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
        conn_timer(conn, SG_HTTP_TIMER_ACK, 1);
        return;
    }
    conn_release_held(conn, false);
}

/* Holds the answer of a request whose events went to the writers through `ack`, until they are
 * settled; answers at once when they already are. Takes `ack`. */
static void conn_hold(struct sg_http_conn *conn, struct sg_ack *ack,
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
        conn_respond_error(conn, 500, "out of memory", NULL, close);
        return;
    }
    conn_account_body(conn);
    if (sg_ack_seal(ack, conn_on_settled, conn))
        conn_answer_held(conn, false);
    /* Otherwise on_message_complete pauses the parser here until the answer goes out. */
}

/* --- request handling -------------------------------------------------------------------- */

static void handle_events(struct sg_http_conn *conn, bool close)
{
    struct sg_http_server *srv = conn->srv;
    const struct sg_config *cfg = srv->cfg;
    struct sg_http_req *req = &conn->req;
    struct sg_buf *resp = &srv->resp;
    struct sg_ingest_result res = {0};
    const char *data = conn->body.data;
    size_t len = conn->body.len;
    int status;
    int rc;

    if (len > 0 && req->gzip) {
        sg_buf_reset(&srv->decoded);
        rc = sg_gunzip(data, len, cfg->http_max_decoded_size, &srv->decoded);
        if (rc == -E2BIG) {
            sg_http__count_limit(srv, SG_HTTP_LIMIT_DECODED_SIZE);
            conn_debug(conn, "http request rejected", 413, "decoded body too large");
            conn_respond_error(conn, 413, "decoded body exceeds http.max_decoded_size", NULL,
                               close);
            return;
        }
        if (rc < 0) {
            conn_debug(conn, "http request rejected", 400, "corrupt gzip body");
            conn_respond_error(conn, rc == -ENOMEM ? 500 : 400,
                               rc == -ENOMEM ? "out of memory" : "invalid gzip body", NULL, close);
            return;
        }
        data = srv->decoded.data;
        len = srv->decoded.len;
        if (srv->budget)
            sg_budget_set(srv->budget, SG_BUDGET_BODIES, &srv->budget_decoded, srv->decoded.cap);
    }
    if (len == 0) {
        conn_respond_error(conn, 400, "empty body", NULL, close);
        return;
    }

    sg_buf_reset(&srv->errors);
    res.errors = &srv->errors;
    res.max_errors = cfg->http_max_errors > 0 ? (size_t)cfg->http_max_errors : 0;
    if (cfg->ingest_ack == SG_ACK_DELIVERED) {
        res.ack = sg_ack_create(srv->budget);
        if (!res.ack) {
            conn_respond_error(conn, 500, "out of memory", NULL, close);
            return;
        }
    }
    srv->ingesting = true;
    rc = sg_ingest_body(srv->ingest, req->format, data, len, sg_now_ms(), &res);
    srv->ingesting = false;
    if (srv->budget_decoded > 0) {
        /* A large decoded body gives its storage back at once, like a large request body. */
        if (srv->decoded.cap > SG_HTTP_KEEP_BODY_CAP)
            sg_buf_free(&srv->decoded);
        sg_budget_set(srv->budget, SG_BUDGET_BODIES, &srv->budget_decoded, srv->decoded.cap);
    }

    if (res.ack && rc == 0 && res.accepted > 0) {
        conn_hold(conn, res.ack, &res, close);
        return;
    }
    /* Nothing accepted: nothing to wait for. */
    sg_ack_detach(res.ack);

    sg_buf_reset(resp);
    if (rc == -EINVAL) {
        const char *why = res.bad_msg ? res.bad_msg : "malformed body";

        conn_debug(conn, "http request rejected", 400, why);
        rc = sg_buf_printf(resp,
                           "{\"accepted\":0,\"rejected\":0,\"errors\":[{\"offset\":%zu,"
                           "\"error\":",
                           res.bad_offset);
        if (rc == 0)
            rc = sg_buf_append_json_string(resp, why, strlen(why));
        if (rc == 0)
            rc = sg_buf_append_str(resp, "}]}");
        status = 400;
    } else if (rc < 0) {
        conn_respond_error(conn, 500, sg_strerror(rc), NULL, close);
        return;
    } else {
        status = res.accepted > 0 ? 202 : 400;
        rc = sg_buf_append_str(resp, "{\"accepted\":");
        if (rc == 0)
            rc = sg_buf_append_uint(resp, res.accepted);
        if (rc == 0)
            rc = sg_buf_append_str(resp, ",\"rejected\":");
        if (rc == 0)
            rc = sg_buf_append_uint(resp, res.rejected);
        if (rc == 0)
            rc = append_errors(resp, &srv->errors, res.rejected, res.nerrors);
    }
    if (rc < 0) {
        conn_respond_error(conn, 500, "out of memory", NULL, close);
        return;
    }
    conn_respond(conn, status, sg_http_json, resp->data, resp->len, NULL, close);
}

/* Decodes %XX escapes of a URL path segment in place. Returns the new length, or -1 for a
 * malformed escape. */
static ssize_t percent_decode(char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            s[o++] = s[i];
            continue;
        }
        if (i + 2 >= len)
            return -1;
        int hi = sg_hex_digit(s[i + 1]), lo = sg_hex_digit(s[i + 2]);
        if (hi < 0 || lo < 0)
            return -1;
        s[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    return (ssize_t)o;
}

/* The value of `name` in the query string of `url`, or NULL; *vlen gets its length. */
static const char *query_param(const char *url, size_t len, const char *name, size_t *vlen)
{
    const char *q = memchr(url, '?', len);
    size_t nlen = strlen(name);
    if (!q)
        return NULL;
    const char *p = q + 1, *end = url + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
            *vlen = (size_t)(stop - p - (ptrdiff_t)nlen - 1);
            return p + nlen + 1;
        }
        p = stop + 1;
    }
    return NULL;
}

#define SG_HTTP_STREAMS_DEFAULT_LIMIT 100
#define SG_HTTP_STREAMS_MAX_LIMIT     1000

/* The `limit` query parameter: digits only, 1 to SG_HTTP_STREAMS_MAX_LIMIT. */
static int parse_limit(const char *v, size_t len, size_t *limit)
{
    size_t n = 0;
    if (len == 0 || len > 4)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -EINVAL;
        n = n * 10 + (size_t)(v[i] - '0');
    }
    if (n < 1 || n > SG_HTTP_STREAMS_MAX_LIMIT)
        return -EINVAL;
    *limit = n;
    return 0;
}

static void handle_streams(struct sg_http_conn *conn, bool close)
{
    struct sg_http_server *srv = conn->srv;
    struct sg_http_req *req = &conn->req;
    const char *url = req->url.data ? req->url.data : "";
    size_t vlen = 0, limit = SG_HTTP_STREAMS_DEFAULT_LIMIT;
    const char *v = query_param(url, req->url.len, "limit", &vlen);

    if (v && parse_limit(v, vlen, &limit) != 0) {
        conn_respond_error(conn, 400, "limit must be a whole number from 1 to 1000", NULL, close);
        return;
    }
    sg_buf_reset(&srv->resp);
    if (!srv->streams) {
        conn_respond_error(conn, 404, "this process keeps no windows (role gateway)", NULL, close);
        return;
    }
    if (sg_streams_render_list(srv->streams, limit, &srv->resp) < 0) {
        conn_respond_error(conn, 500, "cannot render the stream list", NULL, close);
        return;
    }
    conn_respond(conn, 200, sg_http_json, srv->resp.data, srv->resp.len, NULL, close);
}

static void handle_stream(struct sg_http_conn *conn, bool close)
{
    struct sg_http_server *srv = conn->srv;
    struct sg_http_req *req = &conn->req;
    char *key = req->url.data + 12; /* after "/v1/streams/" */
    size_t len = req->url.len - 12;
    const char *stop = memchr(key, '?', len);
    if (stop)
        len = (size_t)(stop - key);
    ssize_t klen = percent_decode(key, len);
    if (klen <= 0) {
        conn_respond_error(conn, 400, "malformed key in the path", NULL, close);
        return;
    }
    sg_buf_reset(&srv->resp);
    int rc =
        srv->streams ? sg_streams_render_key(srv->streams, key, (size_t)klen, &srv->resp) : -ENOENT;
    if (rc == -ENOENT) {
        conn_respond_error(conn, 404, "no stream for this key", NULL, close);
        return;
    }
    if (rc < 0) {
        conn_respond_error(conn, 500, "cannot render the stream", NULL, close);
        return;
    }
    conn_respond(conn, 200, sg_http_json, srv->resp.data, srv->resp.len, NULL, close);
}

static void handle_request(struct sg_http_conn *conn, bool close)
{
    struct sg_http_server *srv = conn->srv;
    struct sg_http_req *req = &conn->req;
    static const char ok[] = "{\"status\":\"ok\"}";
    static const char ready[] = "{\"status\":\"ready\"}";
    static const char not_ready[] = "{\"status\":\"not ready\"}";

    if (req->status != 0) {
        conn_respond_error(conn, req->status, req->error ? req->error : "error",
                           http_error_extra(srv, req->status, req->route), close);
        return;
    }
    switch (req->route) {
    case SG_HTTP_ROUTE_EVENTS:
        handle_events(conn, close);
        break;
    case SG_HTTP_ROUTE_METRICS:
        sg_buf_reset(&srv->resp);
        if (sg_metrics_render(srv->metrics, &srv->resp) < 0) {
            conn_respond_error(conn, 500, "cannot render metrics", NULL, close);
            break;
        }
        conn_respond(conn, 200, sg_http_prometheus, srv->resp.data, srv->resp.len, NULL, close);
        break;
    case SG_HTTP_ROUTE_HEALTHZ:
        conn_respond(conn, 200, sg_http_json, ok, sizeof(ok) - 1, NULL, close);
        break;
    case SG_HTTP_ROUTE_READYZ:
        if (!srv->shutting_down && sg_ingest_ready(srv->ingest) &&
            (!srv->ready || srv->ready(srv->info_arg)) &&
            !(srv->budget && sg_budget_paused(srv->budget)))
            conn_respond(conn, 200, sg_http_json, ready, sizeof(ready) - 1, NULL, close);
        else
            conn_respond(conn, 503, sg_http_json, not_ready, sizeof(not_ready) - 1, NULL, close);
        break;
    case SG_HTTP_ROUTE_STREAMS:
        handle_streams(conn, close);
        break;
    case SG_HTTP_ROUTE_INFO:
        sg_buf_reset(&srv->resp);
        if (!srv->info) {
            conn_respond_error(conn, 404, "not found", NULL, close);
            break;
        }
        if (srv->info(srv->info_arg, &srv->resp) < 0) {
            conn_respond_error(conn, 500, "cannot render the info", NULL, close);
            break;
        }
        conn_respond(conn, 200, sg_http_json, srv->resp.data, srv->resp.len, NULL, close);
        break;
    case SG_HTTP_ROUTE_STREAM:
        handle_stream(conn, close);
        break;
    case SG_HTTP_ROUTE_NONE:
        conn_respond_error(conn, 404, "not found", NULL, close);
        break;
    }
}

static int on_message_complete(llhttp_t *parser)
{
    struct sg_http_conn *conn = conn_of_parser(parser);
    struct sg_http_server *srv = conn->srv;
    /* Shutdown may have begun since the headers: this is then the last request. */
    bool close = !conn->req.keep_alive || srv->shutting_down;

    handle_request(conn, close);
    conn->req.active = false;
    if (conn->state != SG_HTTP_OPEN)
        return HPE_PAUSED; /* the connection ends here; ignore anything pipelined behind */
    conn_timer(conn, SG_HTTP_TIMER_IDLE, srv->cfg->http_idle_timeout_ms);
    if (conn->ack) {
        /* The answer waits for its events' confirmations: parse nothing behind it, so no later
         * answer overtakes it. */
        conn_timer(conn, SG_HTTP_TIMER_ACK, srv->cfg->http_ack_timeout_ms);
        conn->stalled = true;
        return HPE_PAUSED;
    }
    if (conn_pending(conn) >= SG_HTTP_OUT_HIGH) {
        /* Stop at this request boundary until the client reads what it asked for. */
        conn->stalled = true;
        return HPE_PAUSED;
    }
    return 0;
}

void sg_http__settings_init(llhttp_settings_t *settings)
{
    llhttp_settings_init(settings);
    settings->on_message_begin = on_message_begin;
    settings->on_method_complete = on_method_complete;
    settings->on_url = on_url;
    settings->on_header_field = on_header_field;
    settings->on_header_field_complete = on_header_field_complete;
    settings->on_header_value = on_header_value;
    settings->on_header_value_complete = on_header_value_complete;
    settings->on_headers_complete = on_headers_complete;
    settings->on_body = on_body;
    settings->on_message_complete = on_message_complete;
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
        conn_finish(conn);
        break;
    default:
        if (conn->state == SG_HTTP_OPEN) {
            /* A protocol error from llhttp itself (callbacks answer their own errors). */
            const char *reason = llhttp_get_error_reason(&conn->parser);
            struct sg_buf *b = &conn->srv->resp;

            if (!reason)
                reason = llhttp_errno_name(err);
            conn_debug(conn, "http parse error", 400, reason);
            sg_buf_reset(b);
            if (sg_buf_append_str(b, "{\"error\":") == 0 &&
                sg_buf_append_json_string(b, reason, strlen(reason)) == 0 &&
                sg_buf_printf(b, ",\"offset\":%" PRIu64 "}", conn->stream_off + used) == 0)
                conn_respond(conn, 400, sg_http_json, b->data, b->len, NULL, true);
            else
                conn->broken = true;
            conn_finish(conn);
        }
        break;
    }
    conn->stream_off += used;
    conn_flush(conn);
}

/* `len` > 0 bytes were read into the server's read buffer. */
static void conn_input(struct sg_http_conn *conn, const char *data, size_t len)
{
    sg_counter_add(conn->srv->bytes_received, len);
    if (conn->state == SG_HTTP_OPEN && !conn->stalled)
        conn_parse(conn, data, len);
    /* LINGER: dropped. */
    conn_trim(conn);
}

size_t sg_http__conn_feed(struct sg_http_conn *conn, const char *data, size_t len)
{
    size_t n = SG_MIN((size_t)SG_HTTP_READ_BUF_SIZE, len);

    if (!conn->reading || len == 0)
        return 0;
    memcpy(conn->srv->rbuf, data, n);
    conn_input(conn, conn->srv->rbuf, n);
    return n;
}

void sg_http__conn_feed_end(struct sg_http_conn *conn, int status)
{
    conn->eof = true;
    conn_read_stop(conn);
    if (status != UV_EOF)
        conn_debug(conn, "http read failed", 0, uv_strerror(status));
    if (status == UV_EOF && conn->state == SG_HTTP_OPEN && !conn->req.active &&
        (conn->writing || conn_pending(conn) > 0)) {
        /* The client half-closed after its requests: still deliver the answers. */
        conn_finish(conn);
        conn_flush(conn);
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
        sg_http__count_limit(srv, SG_HTTP_LIMIT_IDLE_TIMEOUT);
        sg_http__conn_close(conn);
        break;
    case SG_HTTP_TIMER_HEADER:
    case SG_HTTP_TIMER_BODY: {
        bool header = conn->timer_kind == SG_HTTP_TIMER_HEADER;

        sg_http__count_limit(srv,
                             header ? SG_HTTP_LIMIT_HEADER_TIMEOUT : SG_HTTP_LIMIT_BODY_TIMEOUT);
        conn_debug(conn, "http request timed out", 408, header ? "headers" : "body");
        conn_respond_error(conn, 408,
                           header ? "request headers not received within http.header_timeout"
                                  : "request body not received within http.body_timeout",
                           NULL, true);
        conn_finish(conn);
        conn_flush(conn);
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
            conn_debug(conn, "http answer timed out waiting for delivery", 503, NULL);
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
    conn_timer(conn, SG_HTTP_TIMER_IDLE, cfg->http_idle_timeout_ms);
    return conn_read_start(conn);
}

void sg_http__conn_reject(struct sg_http_conn *conn)
{
    static const char body[] = "{\"error\":\"too many connections\"}";

    conn_debug(conn, "http connection refused", 503, "http.max_connections reached");
    /* The parser is never run; conn_respond only reads its (zeroed) version fields. */
    sg_buf_init(&conn->out[0], SG_HTTP_OUT_MAX);
    sg_buf_init(&conn->out[1], SG_HTTP_OUT_MAX);
    conn_respond(conn, 503, sg_http_json, body, sizeof(body) - 1, "Retry-After: 1\r\n", true);
    conn_flush(conn);
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
            conn_timer(conn, SG_HTTP_TIMER_ACK, cfg->shutdown_timeout_ms);
        return;
    }
    if (conn->writing || conn_pending(conn) > 0) {
        conn_finish(conn);
        conn_flush(conn);
        return;
    }
    sg_http__conn_close(conn);
}

/* --- the TCP transport ------------------------------------------------------------------- */

static inline struct sg_http_conn *conn_of_tcp(uv_handle_t *handle)
{
    return sg_container_of((uv_tcp_t *)handle, struct sg_http_conn, tcp);
}

static void tcp_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct sg_http_conn *conn = conn_of_tcp(handle);

    /* The server's buffer every time: all input is parsed before the next read, and an
     * unparsed tail is copied out of it (see conn_parse). */
    *buf = uv_buf_init(conn->srv->rbuf, SG_HTTP_READ_BUF_SIZE);
}

static void tcp_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct sg_http_conn *conn = conn_of_tcp((uv_handle_t *)stream);

    if (nread > 0)
        conn_input(conn, buf->base, (size_t)nread);
    else if (nread < 0)
        sg_http__conn_feed_end(conn, (int)nread);
}

static int tcp_read_start(struct sg_http_conn *conn)
{
    return uv_read_start((uv_stream_t *)&conn->tcp, tcp_on_alloc, tcp_on_read);
}

static void tcp_read_stop(struct sg_http_conn *conn)
{
    uv_read_stop((uv_stream_t *)&conn->tcp);
}

static void tcp_on_write(uv_write_t *req, int status)
{
    sg_http__conn_on_write(sg_container_of(req, struct sg_http_conn, write_req), status);
}

/* Tries the write at once: a response usually fits the socket's buffer, and a write that
 * completes there costs no request, no completion callback and no change to what the loop
 * polls for. What does not fit goes out through uv_write. A stalled connection always takes
 * uv_write: its completion is what resumes the parser. */
static int tcp_write(struct sg_http_conn *conn, const char *data, size_t len)
{
    /* uv_buf_t is not const-qualified; libuv only reads it. */
    uv_buf_t ub = uv_buf_init((char *)data, (unsigned int)len);

    if (!conn->stalled) {
        int n = uv_try_write((uv_stream_t *)&conn->tcp, &ub, 1);
        if (n == (int)len)
            return SG_HTTP_WRITTEN;
        if (n > 0)
            ub = uv_buf_init((char *)data + n, (unsigned int)(len - (size_t)n));
        else if (n != UV_EAGAIN)
            return n;
    }
    return uv_write(&conn->write_req, (uv_stream_t *)&conn->tcp, &ub, 1, tcp_on_write);
}

static void tcp_on_shutdown(uv_shutdown_t *req, int status)
{
    sg_http__conn_on_shutdown(sg_container_of(req, struct sg_http_conn, shutdown_req), status);
}

static int tcp_shutdown(struct sg_http_conn *conn)
{
    return uv_shutdown(&conn->shutdown_req, (uv_stream_t *)&conn->tcp, tcp_on_shutdown);
}

static void tcp_on_close(uv_handle_t *handle)
{
    sg_http__conn_on_closed(conn_of_tcp(handle));
}

static void tcp_close(struct sg_http_conn *conn)
{
    uv_close((uv_handle_t *)&conn->tcp, tcp_on_close);
}

const struct sg_http_io sg_http__tcp_io = {
    .read_start = tcp_read_start,
    .read_stop = tcp_read_stop,
    .write = tcp_write,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
};
