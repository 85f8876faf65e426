/* The HTTP listener: binds, accepts, enforces http.max_connections, and shuts down in order
 * (listener first, then each connection once it is done). Everything about one connection
 * lives in http_conn.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_internal.h"
#include "tls_link.h"
#include "server.h"
#include "streamgate/common.h"
#include "streamgate/config.h"

#define SG_HTTP_BACKLOG 511

/* Registered up front so they read 0 before the first request; others on first use. */
static const int sg_http_common_codes[] = {200, 202, 400, 401, 404, 405, 408,
                                           413, 415, 431, 500, 502, 503};

static const double sg_http_ack_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,    1,     2.5,  5,     10,   30};

static const char *const sg_http_limit_names[SG_HTTP_LIMIT_COUNT] = {
    [SG_HTTP_LIMIT_BODY_SIZE] = "http_body_size",
    [SG_HTTP_LIMIT_DECODED_SIZE] = "http_decoded_size",
    [SG_HTTP_LIMIT_HEADER_SIZE] = "http_header_size",
    [SG_HTTP_LIMIT_CONNECTIONS] = "http_connections",
    [SG_HTTP_LIMIT_HEADER_TIMEOUT] = "http_header_timeout",
    [SG_HTTP_LIMIT_BODY_TIMEOUT] = "http_body_timeout",
    [SG_HTTP_LIMIT_IDLE_TIMEOUT] = "http_idle_timeout",
    [SG_HTTP_LIMIT_RATE] = "http_rate",
    [SG_HTTP_LIMIT_ACK_TIMEOUT] = "http_ack_timeout",
};

static struct sg_counter *http_code_counter(struct sg_http_server *srv, int code)
{
    char labels[32];

    for (size_t i = 0; i < srv->ncodes; i++)
        if (srv->codes[i].code == code)
            return srv->codes[i].counter;
    if (srv->ncodes == SG_HTTP_MAX_CODES)
        return NULL;
    snprintf(labels, sizeof(labels), "code=\"%d\"", code);
    struct sg_counter *c = sg_metrics_counter(srv->metrics, SG_METRIC_HTTP_REQUESTS_TOTAL, labels);
    if (!c)
        return NULL;
    srv->codes[srv->ncodes].code = code;
    srv->codes[srv->ncodes].counter = c;
    srv->ncodes++;
    return c;
}

void sg_http__count_status(struct sg_http_server *srv, int code)
{
    struct sg_counter *c = http_code_counter(srv, code);

    if (c)
        sg_counter_inc(c);
}

void sg_http__count_limit(struct sg_http_server *srv, enum sg_http_limit limit)
{
    sg_counter_inc(srv->limit_hits[limit]);
}

static int http_register_metrics(struct sg_http_server *srv)
{
    char labels[64];

    for (size_t i = 0; i < SG_ARRAY_SIZE(sg_http_common_codes); i++)
        if (!http_code_counter(srv, sg_http_common_codes[i]))
            return -ENOMEM;
    srv->connections = sg_metrics_gauge(srv->metrics, SG_METRIC_CONNECTIONS, "transport=\"http\"");
    srv->connections_rejected = sg_metrics_counter(
        srv->metrics, SG_METRIC_CONNECTIONS_REJECTED_TOTAL, "transport=\"http\"");
    srv->connections_accepted = sg_metrics_counter(
        srv->metrics, SG_METRIC_CONNECTIONS_ACCEPTED_TOTAL, "transport=\"http\"");
    srv->bytes_received =
        sg_metrics_counter(srv->metrics, SG_METRIC_BYTES_RECEIVED_TOTAL, "transport=\"http\"");
    if (!srv->connections || !srv->connections_rejected || !srv->connections_accepted ||
        !srv->bytes_received)
        return -ENOMEM;
    for (int i = 0; i < SG_HTTP_LIMIT_COUNT; i++) {
        snprintf(labels, sizeof(labels), "limit=\"%s\"", sg_http_limit_names[i]);
        srv->limit_hits[i] = sg_metrics_counter(srv->metrics, SG_METRIC_LIMIT_HITS_TOTAL, labels);
        if (!srv->limit_hits[i])
            return -ENOMEM;
    }
    srv->ack_seconds = sg_metrics_histogram(srv->metrics, SG_METRIC_ACK_SECONDS, NULL,
                                            sg_http_ack_bounds, SG_ARRAY_SIZE(sg_http_ack_bounds));
    return srv->ack_seconds ? 0 : -ENOMEM;
}

static void http_server_free(struct sg_http_server *srv)
{
    sg_buf_free(&srv->resp);
    sg_buf_free(&srv->decoded);
    sg_buf_free(&srv->errors);
    sg_rate_destroy(srv->rate);
    sg_tls_server_destroy(srv->tls);
    free(srv);
}

static bool http_all_closed(const struct sg_http_server *srv)
{
    return sg_listener_gone(&srv->listener) && srv->conns == NULL;
}

/* Calls back (once) when shutdown has closed every handle, and frees a server whose owner
 * already let go of it. Nothing may touch `srv` after this returns. */
static void http_maybe_done(struct sg_http_server *srv)
{
    if (!http_all_closed(srv))
        return;
    if (srv->free_on_close) {
        http_server_free(srv);
        return;
    }
    if (srv->shutting_down && !srv->done) {
        srv->done = true;
        if (srv->closed_cb)
            srv->closed_cb(srv->closed_arg); /* may destroy the server */
    }
}

static void http_on_listener_closed(struct sg_listener *l)
{
    http_maybe_done(sg_container_of(l, struct sg_http_server, listener));
}

void sg_http__server_conn_gone(struct sg_http_server *srv, struct sg_http_conn *conn)
{
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        srv->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    if (conn->rejected) {
        srv->nrejecting--;
    } else {
        srv->nconns--;
        sg_gauge_set(srv->connections, (double)srv->nconns);
    }
    sg_http__conn_free(conn);
    http_maybe_done(srv);
}

/* Links a new connection (its transport set up, its timer initialised here) and counts it
 * as served or rejected. Classified before anything can fail, so sg_http__server_conn_gone
 * undoes the right count whatever happens next. */
static void http_conn_add(struct sg_http_server *srv, struct sg_http_conn *conn)
{
    const struct sg_config *cfg = srv->cfg;

    uv_timer_init(srv->loop, &conn->timer); /* cannot fail */
    conn->open_handles = 2;
    conn->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = conn;
    srv->conns = conn;

    if (cfg->http_max_connections > 0 && (int64_t)srv->nconns >= cfg->http_max_connections) {
        conn->rejected = true;
        srv->nrejecting++;
        sg_counter_inc(srv->connections_rejected);
        sg_http__count_limit(srv, SG_HTTP_LIMIT_CONNECTIONS);
    } else {
        srv->nconns++;
        sg_counter_inc(srv->connections_accepted);
        sg_gauge_set(srv->connections, (double)srv->nconns);
    }
}

/* Answers and closes a rejected connection, or starts serving the others. */
static int http_conn_serve(struct sg_http_server *srv, struct sg_http_conn *conn)
{
    int rc;

    if (conn->rejected) {
        /* Over TLS the answer would need a handshake first: refusing costs less without. */
        if (srv->nrejecting > SG_HTTP_MAX_REJECTING || srv->tls)
            sg_http__conn_close(conn);
        else
            sg_http__conn_reject(conn);
        return 0;
    }
    rc = sg_http__conn_start(conn);
    if (rc < 0) {
        sg_debug(srv->log, "http connection dropped", SG_F_STR("error", uv_strerror(rc)));
        sg_http__conn_close(conn);
    }
    return rc;
}

static void http_on_connection(uv_stream_t *listener, int status)
{
    struct sg_http_server *srv =
        sg_container_of((uv_tcp_t *)listener, struct sg_http_server, listener.tcp);
    struct sg_http_conn *conn;
    int rc;

    if (status < 0) {
        /* UV_EMFILE past the open-files limit: libuv has closed the waiting sockets. */
        int64_t suppressed = sg_log_limiter_take(&srv->accept_limiter, sg_now_ms());
        if (suppressed >= 0)
            sg_warn(srv->log, "http accept failed", SG_F_STR("error", uv_strerror(status)),
                    SG_F_INT("suppressed", suppressed));
        return;
    }
    if (srv->shutting_down)
        return;

    conn = calloc(1, sizeof(*conn));
    if (!conn) {
        sg_warn(srv->log, "http connection dropped", SG_F_STR("error", "out of memory"));
        return;
    }
    conn->srv = srv;
    conn->io = &sg_http__tcp_io;
    rc = uv_tcp_init(srv->loop, &conn->tcp);
    if (rc < 0) {
        sg_warn(srv->log, "http connection dropped", SG_F_STR("error", uv_strerror(rc)));
        free(conn);
        return;
    }
    http_conn_add(srv, conn);

    rc = uv_accept(listener, (uv_stream_t *)&conn->tcp);
    if (rc < 0) {
        sg_debug(srv->log, "http accept failed", SG_F_STR("error", uv_strerror(rc)));
        sg_http__conn_close(conn);
        return;
    }
    sg_http__conn_peer_name(conn);
    uv_tcp_nodelay(&conn->tcp, 1);
    if (srv->tls && !conn->rejected) {
        rc = sg_http__tls_wrap(conn, srv->tls);
        if (rc < 0) {
            sg_warn(srv->log, "http connection dropped", SG_F_STR("error", sg_strerror(rc)));
            sg_http__conn_close(conn);
            return;
        }
    }
    http_conn_serve(srv, conn);
}

int sg_http__server_open(struct sg_http_server *srv, const struct sg_http_io *io, void *io_arg,
                         const char *peer, struct sg_http_conn **out)
{
    struct sg_http_conn *conn;
    int rc;

    *out = NULL;
    if (srv->shutting_down)
        return -ESHUTDOWN;
    conn = calloc(1, sizeof(*conn));
    if (!conn)
        return -ENOMEM;
    conn->srv = srv;
    conn->io = io;
    conn->io_arg = io_arg;
    snprintf(conn->peer, sizeof(conn->peer), "%s", peer);
    http_conn_add(srv, conn);
    rc = http_conn_serve(srv, conn);
    if (rc < 0)
        return rc;
    *out = conn;
    return 0;
}

/* Gives up on a server that create could not finish. A listener handle that was initialised
 * must be closed through the loop; the server is freed in its close callback. */
static void http_server_abort(struct sg_http_server *srv)
{
    if (!sg_listener_gone(&srv->listener)) {
        srv->free_on_close = true;
        sg_listener_close(&srv->listener);
        return;
    }
    http_server_free(srv);
}

/* Everything but the listener. On failure the server is freed and *out is NULL. */
/* "Retry-After: N" for pushback answers, from limits.retry_after. */
static void http_set_retry_after(struct sg_http_server *srv)
{
    snprintf(srv->retry_after, sizeof(srv->retry_after), "Retry-After: %llu\r\n",
             (unsigned long long)((srv->cfg->limits_retry_after_ms + 999) / 1000));
}

/* (Re)creates the rate limiter from http.rate_limit and http.rate_burst; every client starts
 * with a full bucket. Returns 0, or -ENOMEM with the previous limiter kept. */
static int http_set_rate(struct sg_http_server *srv)
{
    const struct sg_config *cfg = srv->cfg;
    struct sg_rate_limiter *rate = NULL;

    if (cfg->http_rate_limit > 0) {
        double r = (double)cfg->http_rate_limit;
        double burst = cfg->http_rate_burst > 0 ? (double)cfg->http_rate_burst : r;
        rate = sg_rate_create(r, burst, SG_HTTP_RATE_CLIENTS);
        if (!rate)
            return -ENOMEM;
    }
    sg_rate_destroy(srv->rate);
    srv->rate = rate;
    srv->rate_limit = cfg->http_rate_limit;
    srv->rate_burst = cfg->http_rate_burst;
    return 0;
}

static int http_server_init(const struct sg_server_env *env, struct sg_http_server **out,
                            char *errstr, size_t errstr_size)
{
    const struct sg_config *cfg = env->cfg;
    struct sg_http_server *srv;
    size_t errors_cap;
    int rc;

    *out = NULL;
    srv = calloc(1, sizeof(*srv));
    if (!srv) {
        snprintf(errstr, errstr_size, "http server: out of memory");
        return -ENOMEM;
    }
    srv->loop = env->loop;
    srv->cfg = cfg;
    srv->ingest = env->ingest;
    srv->streams = env->streams;
    srv->history = env->history;
    srv->history_arg = env->history_arg;
    srv->budget = env->budget;
    http_set_retry_after(srv);
    srv->info = env->info;
    srv->ready = env->ready;
    srv->info_arg = env->info_arg;
    srv->metrics = env->metrics;
    srv->log = env->log;
    srv->bad_input.interval_ms = (int64_t)cfg->log_bad_input_interval_ms;
    srv->accept_limiter.interval_ms = (int64_t)cfg->log_bad_input_interval_ms;
    sg_buf_init(&srv->resp, SG_HTTP_OUT_MAX);
    sg_buf_init(&srv->decoded, cfg->http_max_decoded_size ? cfg->http_max_decoded_size : 1);
    /* Room for max_errors entries of a few hundred bytes each; ingest drops what does not fit
     * (and the response then says the list was truncated). */
    errors_cap = cfg->http_max_errors > 0 ? (size_t)cfg->http_max_errors * 512 : 1;
    sg_buf_init(&srv->errors, SG_MIN(errors_cap, (size_t)SG_HTTP_OUT_MAX / 2));
    sg_http__settings_init(&srv->settings);

    rc = http_register_metrics(srv);
    if (rc < 0) {
        snprintf(errstr, errstr_size, "http server: cannot register metrics");
        http_server_free(srv);
        return rc;
    }
    rc = http_set_rate(srv);
    if (rc < 0) {
        snprintf(errstr, errstr_size, "http server: out of memory");
        http_server_free(srv);
        return rc;
    }
    rc = sg_tls_server_create(cfg, "http", "http/1.1", srv->log, srv->metrics, srv->budget,
                              srv->rbuf, sizeof(srv->rbuf), &srv->tls, errstr, errstr_size);
    if (rc < 0) {
        http_server_free(srv);
        return rc;
    }
    *out = srv;
    return 0;
}

int sg_http_server_reload(struct sg_http_server *srv)
{
    http_set_retry_after(srv);
    if (srv->cfg->http_rate_limit == srv->rate_limit &&
        srv->cfg->http_rate_burst == srv->rate_burst)
        return 0;
    return http_set_rate(srv);
}

int sg_http__server_create_test(const struct sg_server_env *env, struct sg_http_server **out,
                                char *errstr, size_t errstr_size)
{
    return http_server_init(env, out, errstr, errstr_size);
}

int sg_http_server_create(const struct sg_server_env *env, struct sg_http_server **out,
                          char *errstr, size_t errstr_size)
{
    struct sg_http_server *srv;
    int rc;

    *out = NULL;
    rc = http_server_init(env, &srv, errstr, errstr_size);
    if (rc < 0)
        return rc;
    rc = sg_listener_open(&srv->listener, env->loop, env->cfg->http_listen,
                          env->cfg->http_reuse_port, SG_HTTP_BACKLOG, http_on_connection,
                          http_on_listener_closed, "http.listen", errstr, errstr_size);
    if (rc < 0)
        goto fail;
    *out = srv;
    return 0;

fail:
    http_server_abort(srv);
    return rc;
}

const char *sg_http_server_address(const struct sg_http_server *srv)
{
    return srv->listener.address;
}

int sg_http_server_reload_tls(struct sg_http_server *srv, char *errstr, size_t errstr_size)
{
    return srv->tls ? sg_tls_server_reload(srv->tls, srv->cfg, errstr, errstr_size) : 0;
}

void sg_http_server_shutdown(struct sg_http_server *srv, sg_server_closed_cb cb, void *arg)
{
    struct sg_http_conn *conn, *next;

    srv->closed_cb = cb;
    srv->closed_arg = arg;
    if (srv->shutting_down)
        return;
    srv->shutting_down = true;
    sg_listener_close(&srv->listener);
    /* Connections leave the list only in their close callbacks, which never run inside this
     * loop, but take `next` first anyway. */
    for (conn = srv->conns; conn; conn = next) {
        next = conn->next;
        sg_http__conn_shutdown(conn);
    }
    /* Every close above completes in a later callback, which calls back; nothing to do now
     * unless nothing was open at all. */
    if (sg_listener_gone(&srv->listener))
        http_maybe_done(srv);
}

void sg_http_server_destroy(struct sg_http_server *srv)
{
    struct sg_http_conn *conn;

    if (!srv)
        return;
    if (http_all_closed(srv)) {
        http_server_free(srv);
        return;
    }
    /* Destroyed before shutdown finished: close whatever is open, without calling back, and
     * free the server when the last handle is gone. */
    srv->free_on_close = true;
    srv->shutting_down = true;
    sg_listener_close(&srv->listener);
    for (conn = srv->conns; conn; conn = conn->next)
        sg_http__conn_close(conn);
}
