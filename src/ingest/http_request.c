/* An HTTP request as llhttp parses it: the parser's callbacks, which keep the URL and the
 * headers that matter, enforce the size limits, pick the route and check its method and
 * bearer token, then run the route's handler when the request is complete. */
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

/* --- request headers --------------------------------------------------------------------- */

void sg_http__req_reset(struct sg_http_conn *conn)
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
    req->route = NULL;
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
    sg_http__conn_account_body(conn);
}

/* Counts request-line and header bytes; past the limit, answers 431 and stops the parser. */
static int req_count_header_bytes(struct sg_http_conn *conn, size_t len)
{
    struct sg_http_req *req = &conn->req;

    req->header_bytes += len;
    if (req->header_bytes <= conn->srv->cfg->http_max_header_size)
        return 0;
    sg_http__count_limit(conn->srv, SG_HTTP_LIMIT_HEADER_SIZE);
    sg_http__conn_debug(conn, "http request rejected", 431, "headers too large");
    sg_http__conn_respond_error(conn, 431, "request headers exceed http.max_header_size", NULL,
                                true);
    return HPE_USER;
}

static int on_message_begin(llhttp_t *parser)
{
    struct sg_http_conn *conn = sg_http__conn_of_parser(parser);

    sg_http__req_reset(conn);
    sg_http__conn_timer(conn, SG_HTTP_TIMER_HEADER, conn->srv->cfg->http_header_timeout_ms);
    return 0;
}

static int on_method_complete(llhttp_t *parser)
{
    sg_http__conn_of_parser(parser)->req.head = llhttp_get_method(parser) == HTTP_HEAD;
    return 0;
}

static int on_url(llhttp_t *parser, const char *at, size_t len)
{
    struct sg_http_conn *conn = sg_http__conn_of_parser(parser);

    if (req_count_header_bytes(conn, len) != 0)
        return HPE_USER;
    /* The URL is capped at the header limit, so this only fails when out of memory. */
    if (sg_buf_append(&conn->req.url, at, len) < 0) {
        sg_http__conn_respond_error(conn, 500, "out of memory", NULL, true);
        return HPE_USER;
    }
    return 0;
}

static int on_header_field(llhttp_t *parser, const char *at, size_t len)
{
    struct sg_http_conn *conn = sg_http__conn_of_parser(parser);
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
    struct sg_http_conn *conn = sg_http__conn_of_parser(parser);
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
    sg_http__conn_respond_error(conn, 500, "out of memory", NULL, true);
    return HPE_PAUSED;
}

static int on_header_value(llhttp_t *parser, const char *at, size_t len)
{
    struct sg_http_conn *conn = sg_http__conn_of_parser(parser);
    struct sg_http_req *req = &conn->req;

    if (req_count_header_bytes(conn, len) != 0)
        return HPE_USER;
    if (req->cur != SG_HTTP_HDR_NONE && sg_buf_append(&req->hdr[req->cur], at, len) < 0) {
        sg_http__conn_respond_error(conn, 500, "out of memory", NULL, true);
        return HPE_USER;
    }
    return 0;
}

static int on_header_value_complete(llhttp_t *parser)
{
    sg_http__conn_of_parser(parser)->req.cur = SG_HTTP_HDR_NONE;
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

/* Whether the request carries the bearer token its route asks for (none asked: yes). The live
 * query shows event data, so it takes the ingest tokens, not the metrics one. */
static bool req_authorized(const struct sg_http_req *req, enum sg_http_auth auth,
                           const struct sg_config *cfg)
{
    if (auth == SG_HTTP_AUTH_INGEST)
        return cfg->http_auth_tokens.count == 0 ||
               req_bearer_ok(req, (const char *const *)cfg->http_auth_tokens.items,
                             cfg->http_auth_tokens.count);
    if (cfg->http_metrics_token && cfg->http_metrics_token[0] != '\0') {
        const char *token = cfg->http_metrics_token;
        return req_bearer_ok(req, &token, 1);
    }
    return true;
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
    struct sg_http_conn *conn = sg_http__conn_of_parser(parser);
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
    bool ingest;

    req->headers_done = true;
    /* An upgrade is never granted, so the connection cannot go on after the answer. */
    req->keep_alive =
        llhttp_should_keep_alive(parser) && !srv->shutting_down && !llhttp_get_upgrade(parser);
    expect = req_header(req, SG_HTTP_HDR_EXPECT, &len);
    /* HTTP/1.0 clients do not know 100 Continue. */
    req->expect_continue = span_ieq(expect, len, "100-continue") &&
                           (parser->http_major > 1 || parser->http_minor >= 1);
    req->route = sg_http__route_find(req->url.data ? req->url.data : "", req->url.len);
    ingest = req->route && req->route->ingest;

    if (!req->route) {
        status = 404;
        msg = "not found";
    } else if (req->route->ingest && cfg->role == SG_ROLE_AGGREGATOR) {
        status = 404;
        msg = "this process is an aggregator (role aggregator): it takes no events; send them "
              "to a gateway";
    } else if (!sg_http__route_allows(req->route, method)) {
        status = 405;
        msg = "method not allowed";
    } else if (!req_authorized(req, req->route->auth, cfg)) {
        status = 401;
        msg = "missing or invalid bearer token";
    }
    if (status == 0 && !chunked && parser->content_length > cfg->http_max_body_size) {
        sg_http__count_limit(srv, SG_HTTP_LIMIT_BODY_SIZE);
        status = 413;
        msg = "body exceeds http.max_body_size";
    }
    if (status == 0 && ingest)
        status = req_check_ingest(req, &msg);
    if (status == 0 && ingest && !req_rate_ok(conn)) {
        sg_http__count_limit(srv, SG_HTTP_LIMIT_RATE);
        status = 429;
        msg = "over http.rate_limit for this client: nothing was ingested, retry later";
    }
    /* Pushback comes before a single body byte is read: the client learns at once that
     * nothing of this request will be ingested and when to try again. */
    if (status == 0 && ingest && srv->budget &&
        !sg_budget_admits(srv->budget, chunked ? 0 : parser->content_length)) {
        sg_budget_count_pushback(srv->budget, SG_TRANSPORT_HTTP);
        status = 503;
        msg = "over the memory budget: nothing was ingested, retry later";
    }
    if (status == 0 && ingest && !sg_ingest_accepting(srv->ingest)) {
        status = 503;
        msg = "a writer has failed and cannot take events (see the log): nothing was ingested";
    }

    if (status != 0) {
        sg_http__conn_debug(conn, "http request rejected", status, msg);
        if (!has_body || (!chunked && !req->expect_continue &&
                          parser->content_length <= SG_HTTP_KEEP_BODY_CAP)) {
            /* Nothing or little to skip: drop the body unread into memory and answer at
             * message complete, keeping the connection. */
            req->status = status;
            req->error = msg;
            if (has_body)
                sg_http__conn_timer(conn, SG_HTTP_TIMER_BODY, cfg->http_body_timeout_ms);
            return 0;
        }
        /* Do not read (let alone keep) a body that is refused anyway. */
        sg_http__conn_respond_error(conn, status, msg,
                                    sg_http__error_extra(srv, status, req->route), true);
        return HPE_PAUSED;
    }

    req->buffer_body = ingest;
    if (has_body) {
        sg_http__conn_timer(conn, SG_HTTP_TIMER_BODY, cfg->http_body_timeout_ms);
        if (req->expect_continue &&
            sg_buf_append_str(&conn->out[conn->fill], "HTTP/1.1 100 Continue\r\n\r\n") < 0) {
            conn->broken = true;
            sg_http__conn_finish(conn);
            return HPE_PAUSED;
        }
    }
    return 0;
}

static int on_body(llhttp_t *parser, const char *at, size_t len)
{
    struct sg_http_conn *conn = sg_http__conn_of_parser(parser);
    struct sg_http_req *req = &conn->req;

    req->body_bytes += len;
    if (req->body_bytes > conn->srv->cfg->http_max_body_size) {
        /* Only a chunked body gets here; a Content-Length one was refused at the headers. */
        sg_http__count_limit(conn->srv, SG_HTTP_LIMIT_BODY_SIZE);
        sg_http__conn_debug(conn, "http request rejected", 413, "chunked body too large");
        sg_http__conn_respond_error(conn, 413, "body exceeds http.max_body_size", NULL, true);
        return HPE_USER;
    }
    if (!req->buffer_body)
        return 0;
    if (sg_buf_append(&conn->body, at, len) < 0) {
        sg_http__conn_respond_error(conn, 500, "out of memory", NULL, true);
        return HPE_USER;
    }
    sg_http__conn_account_body(conn);
    if (conn->srv->budget &&
        sg_budget_used(conn->srv->budget) > sg_budget_limit(conn->srv->budget)) {
        /* The budget is spent while this body is still arriving (a chunked body's size is
         * unknown at the headers; other connections charge meanwhile). Nothing of it was
         * ingested yet, so a 503 is still the whole truth. */
        struct sg_http_server *srv = conn->srv;
        sg_budget_count_pushback(srv->budget, SG_TRANSPORT_HTTP);
        sg_http__conn_debug(conn, "http request rejected", 503, "body outgrew the memory budget");
        sg_http__conn_respond_error(conn, 503,
                                    "over the memory budget: nothing was ingested, retry later",
                                    srv->retry_after, true);
        return HPE_USER;
    }
    return 0;
}

static int on_message_complete(llhttp_t *parser)
{
    struct sg_http_conn *conn = sg_http__conn_of_parser(parser);
    struct sg_http_server *srv = conn->srv;
    /* Shutdown may have begun since the headers: this is then the last request. */
    bool close = !conn->req.keep_alive || srv->shutting_down;

    sg_http__handle_request(conn, close);
    conn->req.active = false;
    if (conn->state != SG_HTTP_OPEN)
        return HPE_PAUSED; /* the connection ends here; ignore anything pipelined behind */
    sg_http__conn_idle(conn);
    if (conn->ack) {
        /* The answer waits for its events' confirmations: parse nothing behind it, so no later
         * answer overtakes it. */
        sg_http__conn_timer(conn, SG_HTTP_TIMER_ACK, srv->cfg->http_ack_timeout_ms);
        conn->stalled = true;
        return HPE_PAUSED;
    }
    if (conn->later) {
        /* The same for a handler's answer to come, which its own deadline bounds
         * (query.timeout): no idle timer meanwhile. */
        sg_http__conn_timer(conn, SG_HTTP_TIMER_NONE, 0);
        conn->stalled = true;
        return HPE_PAUSED;
    }
    if (sg_http__conn_pending(conn) >= SG_HTTP_OUT_HIGH) {
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
