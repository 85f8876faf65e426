/* The raw TCP listener: each connection is a stream of newline-delimited JSON events. Reads go
 * into one buffer the whole server shares (each read is framed and ingested before the next
 * one is asked for), the NDJSON framer cuts them into lines, and every line goes to ingest on
 * its own. A connection keeps bytes of its own only while it holds the start of a line that
 * straddles two reads; between lines an idle connection holds no buffer at all. Bad input never
 * ends a connection; only EOF, a read error, the idle timeout or shutdown do, and each of those
 * still ingests a last line that had no newline. Nothing is ever written back to the peer.
 *
 * Pushback: while the memory budget is over its high watermark every connection stops reading
 * (the kernel's receive buffer fills, then the peer's send buffer, and the peer's writes
 * block), and its idle timer stops with it, since the silence is ours. Reading resumes under
 * the low watermark. Nothing is reset or dropped. The same happens when a writer has failed for
 * good (sg_ingest_accepting): reads stay paused, rechecked every second, so what the peers
 * send waits with them instead of being read only to be refused.
 *
 * Life cycle: every loop handle the server owns (each connection, each socket refused over the
 * connection limit, the recheck timer) counts in `live` until its close callback has run, and
 * the listener goes through the life cycle both servers share (struct sg_listener); the
 * shutdown callback fires, and a deferred destroy frees the server, when all are closed. */
#include "streamgate/tcp_server.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/budget.h"
#include "streamgate/common.h"
#include "streamgate/config.h"
#include "streamgate/ingest.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "ndjson.h"
#include "ahead.h"
#include "server.h"
#include "tls_link.h"

#define SG_TCP_READ_BUF_SIZE (64 * 1024)
#define SG_TCP_BACKLOG       511
/* While a writer cannot take events, how often to look whether it can again. */
#define SG_TCP_WRITER_RECHECK_MS 1000

struct sg_tcp_server;

struct sg_tcp_conn {
    struct sg_tcp_server *srv;
    struct sg_tcp_conn *prev, *next; /* in srv->conns while open */
    uv_tcp_t tcp;
    uv_timer_t idle;
    struct sg_tls_link *tls; /* tcp.tls_cert: the socket is read through it; NULL: plain */
    const char *client_id;   /* the TLS client certificate's identity; NULL: none */
    unsigned open_handles;   /* of tcp (or tls) and idle, once closing */
    bool closing;
    bool reading;       /* uv_read_start is in effect */
    size_t budget_held; /* the partial line's storage, charged to the budget */
    int64_t now_ms;     /* arrival time of the bytes being framed */
    struct sg_ndjson fr;
};

/* A socket accepted only to be closed, because the connection limit was reached. */
struct sg_tcp_refused {
    struct sg_tcp_server *srv;
    uv_tcp_t tcp;
};

struct sg_tcp_server {
    uv_loop_t *loop;
    const struct sg_config *cfg;
    struct sg_ingest *ingest;
    struct sg_log *log;
    struct sg_budget *budget;  /* NULL: never pauses */
    struct sg_tls_server *tls; /* tcp.tls_cert; NULL: plain TCP */
    bool paused;               /* over the budget's high watermark */
    bool writer_down;          /* a writer failed for good: reads paused, rechecked */
    uv_timer_t recheck;
    bool recheck_open; /* initialised and not closed yet */

    struct sg_listener listener;
    bool shutting_down;
    bool destroy_requested;
    size_t live; /* handles not yet through their close callback */
    struct sg_tcp_conn *conns;
    size_t nconns;
    sg_server_closed_cb closed_cb;
    void *closed_arg;

    struct sg_gauge *m_connections;
    struct sg_counter *m_refused;
    struct sg_counter *m_accepted;
    struct sg_counter *m_bytes;
    struct sg_counter *m_limit_line;
    struct sg_counter *m_limit_conns;
    struct sg_counter *m_limit_idle;
    struct sg_log_limiter refuse_limiter;
    struct sg_log_limiter accept_limiter;

    /* Every connection's reads land here; each read is framed and its lines ingested before
     * the next read is asked for, so one buffer serves them all. */
    char rbuf[SG_TCP_READ_BUF_SIZE];
    /* Lines of the read being framed not ingested yet, in rbuf: empty again before the read
     * returns, so one queue serves every connection too (an idle one holds none). */
    struct sg_ingest_ahead ahead;
};

/* Called whenever a handle has finished closing: reports the end of a shutdown, and frees the
 * server when destroy was called while handles were still open. */
static void tcp_server_maybe_closed(struct sg_tcp_server *srv)
{
    sg_server_closed_cb cb;

    if (srv->live > 0 || !sg_listener_gone(&srv->listener))
        return;
    if (srv->destroy_requested) {
        sg_tls_server_destroy(srv->tls);
        free(srv);
        return;
    }
    cb = srv->closed_cb;
    srv->closed_cb = NULL;
    /* Last use of srv: the callback may destroy it. */
    if (cb)
        cb(srv->closed_arg);
}

static void tcp_recheck_closed(uv_handle_t *handle)
{
    struct sg_tcp_server *srv = sg_container_of(handle, struct sg_tcp_server, recheck);

    srv->live--;
    tcp_server_maybe_closed(srv);
}

static void tcp_server_close_recheck(struct sg_tcp_server *srv)
{
    if (!srv->recheck_open)
        return;
    srv->recheck_open = false;
    uv_close((uv_handle_t *)&srv->recheck, tcp_recheck_closed);
}

static void tcp_listener_closed(struct sg_listener *l)
{
    tcp_server_maybe_closed(sg_container_of(l, struct sg_tcp_server, listener));
}

static void tcp_conn_gone(struct sg_tcp_conn *conn)
{
    struct sg_tcp_server *srv = conn->srv;

    if (--conn->open_handles > 0)
        return;
    if (srv->budget)
        sg_budget_set(srv->budget, SG_BUDGET_CONNECTIONS, &conn->budget_held, 0);
    sg_ndjson_free(&conn->fr);
    free(conn);
    srv->live--;
    tcp_server_maybe_closed(srv);
}

static void tcp_conn_handle_closed(uv_handle_t *handle)
{
    tcp_conn_gone(handle->type == UV_TIMER ? sg_container_of(handle, struct sg_tcp_conn, idle)
                                           : sg_container_of(handle, struct sg_tcp_conn, tcp));
}

static void tcp_conn_close(struct sg_tcp_conn *conn)
{
    struct sg_tcp_server *srv = conn->srv;

    if (conn->closing)
        return;
    conn->closing = true;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        srv->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    conn->prev = conn->next = NULL;
    srv->nconns--;
    sg_gauge_set(srv->m_connections, (double)srv->nconns);

    conn->open_handles = 2;
    if (conn->tls)
        sg_tls_link_close(conn->tls); /* closes the socket */
    else
        uv_close((uv_handle_t *)&conn->tcp, tcp_conn_handle_closed);
    uv_close((uv_handle_t *)&conn->idle, tcp_conn_handle_closed);
}

/* A bad event is counted and logged by ingest; the connection goes on either way. */
static void tcp_conn_ingest(struct sg_tcp_conn *conn, const char *line, size_t len)
{
    enum sg_reject why;
    sg_ingest_set_client(conn->srv->ingest, conn->client_id);
    sg_ingest_event(conn->srv->ingest, SG_TRANSPORT_TCP, line, len, conn->now_ms, &why);
    sg_ingest_set_client(conn->srv->ingest, NULL);
}

/* Ingests the lines held back, in order. Before anything else of the connection is ingested,
 * and before its read buffer is read into again. */
static void tcp_conn_flush_ahead(struct sg_tcp_conn *conn)
{
    struct sg_ingest_held ev;

    while (sg_ingest_ahead_pop(&conn->srv->ahead, &ev))
        tcp_conn_ingest(conn, ev.buf, ev.len);
}

/* Lines inside the read buffer are ingested SG_INGEST_AHEAD lines late, through the queue. A
 * line the framer copied (one that straddled two reads) is only valid now, so it goes at once,
 * after the ones held back. */
static int tcp_conn_line(void *arg, const char *line, size_t len, bool too_long)
{
    struct sg_tcp_conn *conn = arg;
    struct sg_tcp_server *srv = conn->srv;

    if (too_long) {
        tcp_conn_flush_ahead(conn);
        sg_counter_inc(srv->m_limit_line);
        sg_ingest_reject(srv->ingest, SG_TRANSPORT_TCP, SG_REJECT_LINE_TOO_LONG);
        return 0;
    }
    if (line < srv->rbuf || line + len > srv->rbuf + sizeof(srv->rbuf)) {
        tcp_conn_flush_ahead(conn);
        tcp_conn_ingest(conn, line, len);
        return 0;
    }
    struct sg_ingest_held due;
    if (sg_ingest_ahead_push(srv->ingest, &srv->ahead,
                             &(struct sg_ingest_held){.buf = line, .len = len}, &due))
        tcp_conn_ingest(conn, due.buf, due.len);
    return 0;
}

static void tcp_conn_read_stop(struct sg_tcp_conn *conn);

/* The peer is gone or the server is closing the connection: what the peer sent last still
 * counts, even without a final newline, and then the connection closes. */
static void tcp_conn_end(struct sg_tcp_conn *conn)
{
    if (conn->closing)
        return;
    tcp_conn_read_stop(conn);
    conn->reading = false;
    conn->now_ms = sg_now_ms();
    tcp_conn_flush_ahead(conn);
    sg_ndjson_finish(&conn->fr, tcp_conn_line, conn);
    tcp_conn_flush_ahead(conn);
    tcp_conn_close(conn);
}

static void tcp_conn_read_stop(struct sg_tcp_conn *conn)
{
    if (conn->tls)
        sg_tls_link_read_stop(conn->tls);
    else
        uv_read_stop((uv_stream_t *)&conn->tcp);
}

/* After a read is framed: a connection between lines gives its partial-line storage back, so
 * an idle connection holds no buffer; the budget counts what is held. */
static void tcp_conn_account(struct sg_tcp_conn *conn)
{
    if (conn->fr.partial.len == 0 && conn->fr.partial.cap > 0)
        sg_buf_free(&conn->fr.partial);
    if (conn->srv->budget)
        sg_budget_set(conn->srv->budget, SG_BUDGET_CONNECTIONS, &conn->budget_held,
                      conn->fr.partial.cap);
}

static void tcp_conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void tcp_conn_idle(uv_timer_t *timer);
static void tcp_server_writer_down(struct sg_tcp_server *srv);

static void tcp_conn_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct sg_tcp_conn *conn = sg_container_of(handle, struct sg_tcp_conn, tcp);

    /* Each read is framed before the next one is asked for, so one buffer serves them all. */
    buf->base = conn->srv->rbuf;
    buf->len = sizeof(conn->srv->rbuf);
}

/* `len` > 0 bytes of the stream arrived: from the socket, or decrypted. */
static void tcp_conn_input(struct sg_tcp_conn *conn, const char *data, size_t len)
{
    struct sg_tcp_server *srv = conn->srv;
    int rc;

    sg_counter_add(srv->m_bytes, (uint64_t)len);
    if (srv->cfg->tcp_idle_timeout_ms > 0)
        uv_timer_again(&conn->idle);
    conn->now_ms = sg_now_ms();
    rc = sg_ndjson_feed(&conn->fr, data, len, tcp_conn_line, conn);
    tcp_conn_flush_ahead(conn); /* the buffer is read into again next time */
    if (!conn->closing)
        tcp_conn_account(conn);
    if (!sg_ingest_accepting(srv->ingest))
        tcp_server_writer_down(srv);
    if (rc < 0) {
        /* Only -ENOMEM: the framer cannot hold a straddling line, so the stream is lost. */
        sg_error(srv->log, "tcp framing failed, closing the connection",
                 SG_F_STR("error", sg_strerror(rc)));
        tcp_conn_close(conn);
    }
}

static void tcp_conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct sg_tcp_conn *conn = sg_container_of(stream, struct sg_tcp_conn, tcp);

    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            sg_debug(conn->srv->log, "tcp read failed", SG_F_STR("error", uv_strerror((int)nread)));
        tcp_conn_end(conn);
        return;
    }
    tcp_conn_input(conn, buf->base, (size_t)nread);
}

/* --- over TLS ---------------------------------------------------------------------------- */

static void tcp_tls_on_plain(void *arg, const char *data, size_t len)
{
    tcp_conn_input(arg, data, len);
}

static void tcp_tls_on_handshake(void *arg)
{
    struct sg_tcp_conn *conn = arg;

    conn->client_id = sg_tls_link_client_id(conn->tls);
}

/* TLS errors and the handshake timeout are counted and logged by the link. */
static void tcp_tls_on_end(void *arg, int status)
{
    struct sg_tcp_conn *conn = arg;

    if (status != UV_EOF && status != UV_EPROTO && status != UV_ETIMEDOUT)
        sg_debug(conn->srv->log, "tcp read failed", SG_F_STR("error", uv_strerror(status)));
    tcp_conn_end(conn);
}

/* Nothing is written back but the TLS protocol's own messages. */
static void tcp_tls_on_written(void *arg, int status)
{
    (void)arg;
    (void)status;
}

static void tcp_tls_on_closed(void *arg)
{
    struct sg_tcp_conn *conn = arg;

    conn->tls = NULL;
    conn->client_id = NULL;
    tcp_conn_gone(conn);
}

static const struct sg_tls_link_cbs tcp_tls_cbs = {
    .on_plain = tcp_tls_on_plain,
    .on_handshake = tcp_tls_on_handshake,
    .on_end = tcp_tls_on_end,
    .on_written = tcp_tls_on_written,
    .on_shutdown = tcp_tls_on_written,
    .on_closed = tcp_tls_on_closed,
};

static void tcp_conn_idle(uv_timer_t *timer)
{
    struct sg_tcp_conn *conn = sg_container_of(timer, struct sg_tcp_conn, idle);
    struct sg_tcp_server *srv = conn->srv;

    sg_counter_inc(srv->m_limit_idle);
    sg_debug(srv->log, "tcp connection idle, closing",
             SG_F_UINT("idle_timeout_ms", srv->cfg->tcp_idle_timeout_ms));
    tcp_conn_end(conn);
}

static void tcp_refused_closed(uv_handle_t *handle)
{
    struct sg_tcp_refused *ref = sg_container_of(handle, struct sg_tcp_refused, tcp);
    struct sg_tcp_server *srv = ref->srv;

    free(ref);
    srv->live--;
    tcp_server_maybe_closed(srv);
}

/* Over the connection limit: take the socket off the backlog (leaving it there would stall the
 * listener) and close it at once. */
static void tcp_server_refuse(struct sg_tcp_server *srv, uv_stream_t *server)
{
    struct sg_tcp_refused *ref;
    int64_t suppressed;

    sg_counter_inc(srv->m_refused);
    sg_counter_inc(srv->m_limit_conns);
    suppressed = sg_log_limiter_take(&srv->refuse_limiter, sg_now_ms());
    if (suppressed == 0)
        sg_warn(srv->log, "tcp connection refused: too many connections",
                SG_F_INT("max_connections", srv->cfg->tcp_max_connections));
    else if (suppressed > 0)
        sg_warn(srv->log, "tcp connection refused: too many connections",
                SG_F_INT("max_connections", srv->cfg->tcp_max_connections),
                SG_F_INT("suppressed", suppressed));

    ref = malloc(sizeof(*ref));
    if (!ref) {
        sg_error(srv->log, "tcp accept failed", SG_F_STR("error", sg_strerror(-ENOMEM)));
        return;
    }
    ref->srv = srv;
    if (uv_tcp_init(srv->loop, &ref->tcp) != 0) {
        free(ref);
        return;
    }
    srv->live++;
    uv_accept(server, (uv_stream_t *)&ref->tcp);
    uv_close((uv_handle_t *)&ref->tcp, tcp_refused_closed);
}

/* Starts reading (and the idle timer), unless ingest is paused. */
static int tcp_conn_resume(struct sg_tcp_conn *conn)
{
    struct sg_tcp_server *srv = conn->srv;
    int rc;

    if (conn->closing || conn->reading || srv->paused || srv->writer_down)
        return 0;
    if (conn->tls)
        rc = sg_tls_link_read_start(conn->tls);
    else
        rc = uv_read_start((uv_stream_t *)&conn->tcp, tcp_conn_alloc, tcp_conn_read);
    if (rc != 0)
        return rc;
    conn->reading = true;
    if (srv->cfg->tcp_idle_timeout_ms > 0)
        uv_timer_start(&conn->idle, tcp_conn_idle, srv->cfg->tcp_idle_timeout_ms,
                       srv->cfg->tcp_idle_timeout_ms);
    return 0;
}

static void tcp_conn_pause(struct sg_tcp_conn *conn)
{
    if (conn->closing || !conn->reading)
        return;
    tcp_conn_read_stop(conn);
    uv_timer_stop(&conn->idle);
    conn->reading = false;
    if (conn->srv->budget)
        sg_budget_count_pushback(conn->srv->budget, SG_TRANSPORT_TCP);
}

/* Pauses or resumes every connection after srv->paused or srv->writer_down changed. */
static void tcp_server_apply(struct sg_tcp_server *srv)
{
    struct sg_tcp_conn *conn, *next;
    bool hold = srv->paused || srv->writer_down;

    for (conn = srv->conns; conn; conn = next) {
        next = conn->next;
        if (hold) {
            tcp_conn_pause(conn);
        } else if (tcp_conn_resume(conn) != 0) {
            /* Cannot happen for an open stream; closing beats hanging forever unread. */
            sg_warn(srv->log, "tcp read resume failed, closing the connection");
            tcp_conn_end(conn);
        }
    }
}

/* The budget crossed a watermark. Only starts and stops reads: the budget calls this from
 * inside a charge or release, possibly in the middle of this server's own read callback. */
static void tcp_server_on_budget(void *arg, bool paused)
{
    struct sg_tcp_server *srv = arg;

    srv->paused = paused;
    tcp_server_apply(srv);
}

static void tcp_server_recheck(uv_timer_t *timer)
{
    struct sg_tcp_server *srv = sg_container_of(timer, struct sg_tcp_server, recheck);

    if (!sg_ingest_accepting(srv->ingest))
        return;
    uv_timer_stop(&srv->recheck);
    srv->writer_down = false;
    sg_info(srv->log, "tcp reads resumed: the writers take events again");
    tcp_server_apply(srv);
}

/* A writer failed for good while this connection's bytes were ingested: stop reading
 * everywhere until it can take events again. */
static void tcp_server_writer_down(struct sg_tcp_server *srv)
{
    if (srv->writer_down || !srv->recheck_open)
        return;
    srv->writer_down = true;
    sg_error(srv->log, "tcp reads paused: a writer cannot take events");
    uv_timer_start(&srv->recheck, tcp_server_recheck, SG_TCP_WRITER_RECHECK_MS,
                   SG_TCP_WRITER_RECHECK_MS);
    tcp_server_apply(srv);
}

static void tcp_server_connection(uv_stream_t *server, int status)
{
    struct sg_tcp_server *srv = sg_container_of(server, struct sg_tcp_server, listener.tcp);
    const struct sg_config *cfg = srv->cfg;
    struct sg_tcp_conn *conn;
    int rc;

    if (status < 0) {
        /* UV_EMFILE past the open-files limit: libuv has closed the waiting sockets. */
        int64_t suppressed = sg_log_limiter_take(&srv->accept_limiter, sg_now_ms());
        if (suppressed >= 0)
            sg_warn(srv->log, "tcp accept failed", SG_F_STR("error", uv_strerror(status)),
                    SG_F_INT("suppressed", suppressed));
        return;
    }
    if (srv->shutting_down || srv->destroy_requested)
        return;
    if (cfg->tcp_max_connections > 0 && srv->nconns >= (uint64_t)cfg->tcp_max_connections) {
        tcp_server_refuse(srv, server);
        return;
    }

    conn = malloc(sizeof(*conn));
    if (!conn) {
        sg_error(srv->log, "tcp accept failed", SG_F_STR("error", sg_strerror(-ENOMEM)));
        return;
    }
    memset(conn, 0, sizeof(*conn));
    conn->srv = srv;
    rc = uv_tcp_init(srv->loop, &conn->tcp);
    if (rc != 0) {
        sg_error(srv->log, "tcp accept failed", SG_F_STR("error", uv_strerror(rc)));
        free(conn);
        return;
    }
    uv_timer_init(srv->loop, &conn->idle);
    sg_ndjson_init(&conn->fr, (size_t)cfg->tcp_max_line_size);

    /* From here on the connection is released through tcp_conn_close only. */
    srv->live++;
    conn->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = conn;
    srv->conns = conn;
    srv->nconns++;
    sg_counter_inc(srv->m_accepted);
    sg_gauge_set(srv->m_connections, (double)srv->nconns);

    rc = uv_accept(server, (uv_stream_t *)&conn->tcp);
    if (rc == 0 && srv->tls) {
        char peer[64];
        sg_tcp_peer_address(&conn->tcp, peer, sizeof(peer));
        rc = sg_tls_link_create(srv->tls, &conn->tcp, peer, &tcp_tls_cbs, conn, &conn->tls);
    }
    if (!sg_ingest_accepting(srv->ingest))
        tcp_server_writer_down(srv);
    if (rc == 0)
        rc = tcp_conn_resume(conn); /* while paused, it starts reading on resume */
    if (rc != 0) {
        sg_warn(srv->log, "tcp accept failed", SG_F_STR("error", uv_strerror(rc)));
        tcp_conn_close(conn);
        return;
    }
    if ((srv->paused || srv->writer_down) && srv->budget)
        sg_budget_count_pushback(srv->budget, SG_TRANSPORT_TCP);
    tcp_conn_account(conn);
}

static int tcp_server_register(struct sg_tcp_server *srv, struct sg_metrics *metrics)
{
    const char *tcp = "transport=\"tcp\"";

    srv->m_connections = sg_metrics_gauge(metrics, SG_METRIC_CONNECTIONS, tcp);
    srv->m_refused = sg_metrics_counter(metrics, SG_METRIC_CONNECTIONS_REJECTED_TOTAL, tcp);
    srv->m_accepted = sg_metrics_counter(metrics, SG_METRIC_CONNECTIONS_ACCEPTED_TOTAL, tcp);
    srv->m_bytes = sg_metrics_counter(metrics, SG_METRIC_BYTES_RECEIVED_TOTAL, tcp);
    srv->m_limit_line =
        sg_metrics_counter(metrics, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"tcp_line_size\"");
    srv->m_limit_conns =
        sg_metrics_counter(metrics, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"tcp_connections\"");
    srv->m_limit_idle =
        sg_metrics_counter(metrics, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"tcp_idle_timeout\"");
    if (!srv->m_connections || !srv->m_refused || !srv->m_accepted || !srv->m_bytes ||
        !srv->m_limit_line || !srv->m_limit_conns || !srv->m_limit_idle)
        return -ENOMEM;
    return 0;
}

int sg_tcp_server_create(const struct sg_server_env *env, struct sg_tcp_server **out, char *errstr,
                         size_t errstr_size)
{
    struct sg_tcp_server *srv;
    char detail[256] = "";
    int rc;

    *out = NULL;
    srv = calloc(1, sizeof(*srv));
    if (!srv) {
        snprintf(errstr, errstr_size, "tcp server: %s", sg_strerror(-ENOMEM));
        return -ENOMEM;
    }
    srv->loop = env->loop;
    srv->cfg = env->cfg;
    srv->ingest = env->ingest;
    srv->log = env->log;
    srv->budget = env->budget;
    srv->refuse_limiter.interval_ms = (int64_t)env->cfg->log_bad_input_interval_ms;
    srv->accept_limiter.interval_ms = (int64_t)env->cfg->log_bad_input_interval_ms;
    uv_timer_init(srv->loop, &srv->recheck);
    srv->recheck_open = true;
    srv->live++;

    rc = tcp_server_register(srv, env->metrics);
    if (rc == 0)
        rc = sg_tls_server_create(env->cfg, "tcp", NULL, srv->log, env->metrics, srv->budget,
                                  srv->rbuf, sizeof(srv->rbuf), &srv->tls, detail, sizeof(detail));
    if (rc < 0 && detail[0]) {
        snprintf(errstr, errstr_size, "%s", detail);
        goto fail;
    }
    if (rc == 0 && srv->budget) {
        rc = sg_budget_watch(srv->budget, tcp_server_on_budget, srv);
        srv->paused = rc == 0 && sg_budget_paused(srv->budget);
    }
    if (rc < 0) {
        snprintf(errstr, errstr_size, "tcp server: %s", sg_strerror(rc));
        goto fail;
    }
    rc = sg_listener_open(&srv->listener, srv->loop, env->cfg->tcp_listen, env->cfg->tcp_reuse_port,
                          SG_TCP_BACKLOG, tcp_server_connection, tcp_listener_closed, "tcp.listen",
                          errstr, errstr_size);
    if (rc < 0)
        goto fail;
    *out = srv;
    return 0;

fail:
    sg_tcp_server_destroy(srv);
    return rc;
}

const char *sg_tcp_server_address(const struct sg_tcp_server *srv)
{
    return srv->listener.address;
}

int sg_tcp_server_reload_tls(struct sg_tcp_server *srv, char *errstr, size_t errstr_size)
{
    return srv->tls ? sg_tls_server_reload(srv->tls, srv->cfg, errstr, errstr_size) : 0;
}

void sg_tcp_server_shutdown(struct sg_tcp_server *srv, sg_server_closed_cb cb, void *arg)
{
    srv->shutting_down = true;
    srv->closed_cb = cb;
    srv->closed_arg = arg;
    sg_listener_close(&srv->listener);
    tcp_server_close_recheck(srv);
    while (srv->conns)
        tcp_conn_end(srv->conns);
    tcp_server_maybe_closed(srv);
}

/* Frees the server at once when every handle is closed (after shutdown has called back).
 * Otherwise it closes what is still open, without ingesting anything more, and the last close
 * callback frees the server; the loop must run for that to happen. */
void sg_tcp_server_destroy(struct sg_tcp_server *srv)
{
    if (!srv)
        return;
    if (srv->budget)
        sg_budget_unwatch(srv->budget, tcp_server_on_budget, srv);
    if (srv->live == 0 && sg_listener_gone(&srv->listener)) {
        sg_tls_server_destroy(srv->tls);
        free(srv);
        return;
    }
    srv->destroy_requested = true;
    srv->closed_cb = NULL;
    sg_listener_close(&srv->listener);
    tcp_server_close_recheck(srv);
    while (srv->conns)
        tcp_conn_close(srv->conns);
}
