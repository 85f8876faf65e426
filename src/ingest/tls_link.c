/* A TLS engine on a libuv socket: see tls_link.h.
 *
 * Reads land in the listener's `cbuf` and go into the engine at once; plaintext is taken out
 * into the owner's shared read buffer and handed to the owner while it reads. When the owner stops
 * reading, what is left stays in the engine (as ciphertext or decrypted records) and a zero-delay
 * timer hands it over once reading starts again, since the socket may have nothing more to say.
 *
 * Ciphertext goes out from two buffers: the one being written (uv_write, stable until its
 * callback) and the one filling up behind it. A write the owner makes is done when both are
 * empty. */
#include "tls_link.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/common.h"

/* Cap on ciphertext waiting to be written: the owner's one write in flight plus handshake
 * messages, so only a write larger than this could hit it. */
#define SG_TLS_LINK_OUT_MAX (128 * 1024 * 1024)
/* After this long without a read or a write, a connection gives back the buffers it does not
 * need (link_trim): a busy one keeps them from one request to the next. */
#define SG_TLS_LINK_QUIET_MS 1000

struct sg_tls_link {
    struct sg_tls_server *ts;
    struct sg_tls *tls;
    uv_tcp_t *tcp;
    uv_timer_t deadline; /* the handshake timeout; after the handshake, the quiet timer */
    uv_timer_t kick;     /* hands over input left in the engine when reading resumes */
    uv_write_t wreq;
    uv_shutdown_t sreq;
    const struct sg_tls_link_cbs *cbs;
    void *arg;
    int open_handles;
    bool reading;
    bool ended;   /* on_end was reported: no more input */
    bool closing; /* sg_tls_link_close was called */
    bool writing; /* out[!fill] is in uv_write */
    bool want_written;
    bool written_due; /* a deferred write is out: on_written at the next kick */
    bool want_shutdown;
    bool counted; /* the handshake's outcome is counted */
    size_t budget_held;
    uint64_t active_ms; /* the loop's time at the last read or write */
    struct sg_buf out[2];
    int fill;
    char peer[64];
};

/* --- the listener's TLS ------------------------------------------------------------------ */

void sg_tls_server_destroy(struct sg_tls_server *ts)
{
    if (!ts)
        return;
    sg_tls_ctx_destroy(ts->ctx);
    free(ts);
}

/* The listener's `<prefix>.tls_*` paths (its alpn left NULL). */
static struct sg_tls_ctx_opts tls_opts(const struct sg_config *cfg, bool http)
{
    return (struct sg_tls_ctx_opts){
        .cert = http ? cfg->http_tls_cert : cfg->tcp_tls_cert,
        .key = http ? cfg->http_tls_key : cfg->tcp_tls_key,
        .client_ca = http ? cfg->http_tls_client_ca : cfg->tcp_tls_client_ca,
    };
}

static uint64_t tls_handshake_timeout(const struct sg_config *cfg, bool http)
{
    return http ? cfg->http_tls_handshake_timeout_ms : cfg->tcp_tls_handshake_timeout_ms;
}

int sg_tls_server_create(const struct sg_config *cfg, const char *transport, const char *alpn,
                         struct sg_log *log, struct sg_metrics *metrics, struct sg_budget *budget,
                         char *plain, size_t plain_size, struct sg_tls_server **out, char *errstr,
                         size_t errstr_size)
{
    bool http = strcmp(transport, "http") == 0;
    struct sg_tls_ctx_opts opts = tls_opts(cfg, http);
    struct sg_tls_server *ts;
    char labels[80];
    char detail[256];
    int rc;

    *out = NULL;
    if (!opts.cert || opts.cert[0] == '\0')
        return 0;
    ts = calloc(1, sizeof(*ts));
    if (!ts) {
        snprintf(errstr, errstr_size, "%s.tls: out of memory", transport);
        return -ENOMEM;
    }
    ts->transport = http ? "http" : "tcp";
    ts->handshake_timeout_ms = tls_handshake_timeout(cfg, http);
    ts->log = log;
    ts->budget = budget;
    ts->plain = plain;
    ts->plain_size = plain_size;
    ts->limiter.interval_ms = (int64_t)cfg->log_bad_input_interval_ms;
    opts.alpn = alpn;
    rc = sg_tls_ctx_create(&opts, &ts->ctx, detail, sizeof(detail));
    if (rc < 0) {
        snprintf(errstr, errstr_size, "%s.tls_cert: %s", transport, detail);
        goto fail;
    }
#define TLS_COUNTER(field, metric, fmt)                                                            \
    do {                                                                                           \
        snprintf(labels, sizeof(labels), fmt, ts->transport);                                      \
        ts->field = sg_metrics_counter(metrics, metric, labels);                                   \
        if (!ts->field)                                                                            \
            rc = -ENOMEM;                                                                          \
    } while (0)
    TLS_COUNTER(handshake_ok, SG_METRIC_TLS_HANDSHAKES_TOTAL, "transport=\"%s\",result=\"ok\"");
    TLS_COUNTER(resumed, SG_METRIC_TLS_HANDSHAKES_TOTAL, "transport=\"%s\",result=\"resumed\"");
    TLS_COUNTER(handshake_failed, SG_METRIC_TLS_HANDSHAKES_TOTAL,
                "transport=\"%s\",result=\"failed\"");
    TLS_COUNTER(handshake_timeout, SG_METRIC_TLS_HANDSHAKES_TOTAL,
                "transport=\"%s\",result=\"timeout\"");
    TLS_COUNTER(errors, SG_METRIC_TLS_ERRORS_TOTAL, "transport=\"%s\"");
    TLS_COUNTER(limit_timeout, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"%s_tls_handshake_timeout\"");
#undef TLS_COUNTER
    if (rc < 0) {
        snprintf(errstr, errstr_size, "%s.tls: out of memory", transport);
        goto fail;
    }
    *out = ts;
    return 0;

fail:
    sg_tls_server_destroy(ts);
    return rc;
}

int sg_tls_server_reload(struct sg_tls_server *ts, const struct sg_config *cfg, char *errstr,
                         size_t errstr_size)
{
    bool http = strcmp(ts->transport, "http") == 0;
    struct sg_tls_ctx_opts opts = tls_opts(cfg, http);
    int rc;

    /* Taken for the connections accepted from now on, whatever becomes of the files. */
    ts->handshake_timeout_ms = tls_handshake_timeout(cfg, http);
    rc = sg_tls_ctx_reload_from(ts->ctx, &opts, errstr, errstr_size);
    if (rc < 0) {
        sg_counter_inc(ts->errors);
        sg_error(ts->log, "tls reload failed, keeping the certificate in use",
                 SG_F_STR("transport", ts->transport), SG_F_STR("error", errstr));
    } else {
        sg_info(ts->log, "tls certificate reloaded", SG_F_STR("transport", ts->transport),
                SG_F_STR("cert", opts.cert), SG_F_STR("key", opts.key));
    }
    return rc;
}

/* --- a connection ------------------------------------------------------------------------ */

/* Counts what the connection holds now against the budget. */
static void link_charge(struct sg_tls_link *link)
{
    if (link->ts->budget && !link->closing)
        sg_budget_set(link->ts->budget, SG_BUDGET_CONNECTIONS, &link->budget_held,
                      sizeof(*link) + sg_tls_held(link->tls) + link->out[0].cap + link->out[1].cap);
}

/* Gives back the storage that waits for nothing: output buffers that are empty (not the one
 * in uv_write) and, once no input waits, the engine's emptied BIOs. A connection that has gone
 * quiet then holds only OpenSSL's state; its next write or read allocates again. */
static void link_trim(struct sg_tls_link *link)
{
    for (int i = 0; i < 2; i++)
        if (link->out[i].len == 0 && !(link->writing && i != link->fill))
            sg_buf_free(&link->out[i]);
    if (!sg_tls_has_in(link->tls))
        sg_tls_trim(link->tls);
}

/* The quiet timer: trims once the connection has had SG_TLS_LINK_QUIET_MS without a read or a
 * write, or waits for the rest of that time. */
static void link_on_quiet(uv_timer_t *timer)
{
    struct sg_tls_link *link = timer->data;
    uint64_t quiet = uv_now(timer->loop) - link->active_ms;

    if (link->closing || link->ended)
        return;
    if (quiet < SG_TLS_LINK_QUIET_MS) {
        uv_timer_start(timer, link_on_quiet, SG_TLS_LINK_QUIET_MS - quiet, 0);
        return;
    }
    link_trim(link);
    link_charge(link);
}

/* After a read or a write: counts what the connection holds and, once the handshake is done,
 * marks it active. The quiet timer runs from the first activity and is restarted only when it
 * fires, not on every read. */
static void link_account(struct sg_tls_link *link)
{
    if (link->closing)
        return;
    if (sg_tls_handshake_done(link->tls) && !link->ended) {
        link->active_ms = uv_now(link->deadline.loop);
        if (!uv_is_active((uv_handle_t *)&link->deadline))
            uv_timer_start(&link->deadline, link_on_quiet, SG_TLS_LINK_QUIET_MS, 0);
    }
    link_charge(link);
}

static void link_on_closed(uv_handle_t *handle)
{
    struct sg_tls_link *link = handle->data;

    if (--link->open_handles > 0)
        return;
    if (link->ts->budget)
        sg_budget_set(link->ts->budget, SG_BUDGET_CONNECTIONS, &link->budget_held, 0);
    if (link->written_due)
        link->cbs->on_written(link->arg, UV_ECANCELED);
    link->cbs->on_closed(link->arg);
    sg_tls_destroy(link->tls);
    sg_buf_free(&link->out[0]);
    sg_buf_free(&link->out[1]);
    free(link);
}

/* A close the peer did not get a close_notify for (an idle or timed-out connection, or an
 * answer to the client's own close_notify) would read to it as a truncation: send the alert if
 * the socket takes it at once. Never waits: a write in flight, or a socket that does not take
 * the few bytes now, leaves the close as it was. */
static void link_close_notify(struct sg_tls_link *link)
{
    struct sg_buf *b = &link->out[link->fill];

    if (link->writing || b->len > 0)
        return;
    sg_tls_close_notify(link->tls);
    if (sg_tls_out(link->tls, b) < 0 || b->len == 0)
        return;
    uv_buf_t ub = uv_buf_init(b->data, (unsigned int)b->len);
    (void)uv_try_write((uv_stream_t *)link->tcp, &ub, 1);
    sg_buf_reset(b);
}

void sg_tls_link_close(struct sg_tls_link *link)
{
    if (link->closing)
        return;
    link_close_notify(link);
    link->closing = true;
    link->reading = false;
    link->open_handles = 3;
    uv_close((uv_handle_t *)&link->deadline, link_on_closed);
    uv_close((uv_handle_t *)&link->kick, link_on_closed);
    uv_close((uv_handle_t *)link->tcp, link_on_closed);
}

static void link_on_write(uv_write_t *req, int status);

/* Sends what the engine produced. Returns SG_TLS_LINK_WRITTEN when nothing is left to send, 0
 * while a write is in flight, or a negative code. */
static int link_flush(struct sg_tls_link *link)
{
    struct sg_buf *b = &link->out[link->fill];
    int rc = sg_tls_out(link->tls, b);

    if (rc < 0)
        return rc;
    if (link->writing)
        return 0;
    if (b->len == 0)
        return SG_TLS_LINK_WRITTEN;
    uv_buf_t ub = uv_buf_init(b->data, (unsigned int)b->len);
    int n = uv_try_write((uv_stream_t *)link->tcp, &ub, 1);
    if (n == (int)b->len) {
        sg_buf_reset(b);
        return SG_TLS_LINK_WRITTEN;
    }
    if (n > 0)
        sg_buf_consume(b, (size_t)n);
    else if (n != UV_EAGAIN)
        return n;
    ub = uv_buf_init(b->data, (unsigned int)b->len);
    rc = uv_write(&link->wreq, (uv_stream_t *)link->tcp, &ub, 1, link_on_write);
    if (rc < 0)
        return rc;
    link->writing = true;
    link->fill ^= 1;
    return 0;
}

static void link_on_shutdown(uv_shutdown_t *req, int status)
{
    struct sg_tls_link *link = req->data;

    link->cbs->on_shutdown(link->arg, status);
}

static int link_shutdown_now(struct sg_tls_link *link)
{
    link->want_shutdown = false;
    link->sreq.data = link;
    return uv_shutdown(&link->sreq, (uv_stream_t *)link->tcp, link_on_shutdown);
}

static void link_on_write(uv_write_t *req, int status)
{
    struct sg_tls_link *link = req->data;
    int rc = status;

    link->writing = false;
    sg_buf_reset(&link->out[link->fill ^ 1]);
    if (rc == 0 && !link->closing)
        rc = link_flush(link);
    if (rc == 0)
        return; /* the next write is in flight */
    if (rc == SG_TLS_LINK_WRITTEN)
        rc = 0;
    link_account(link);
    if (link->want_written) {
        link->want_written = false;
        link->cbs->on_written(link->arg, rc);
    }
    if (link->want_shutdown && !link->closing) {
        int src = rc < 0 ? rc : link_shutdown_now(link);
        if (src < 0)
            link->cbs->on_shutdown(link->arg, src);
    }
}

/* Input has ended for good: stop reading and tell the owner once. */
static void link_end(struct sg_tls_link *link, int status)
{
    if (link->ended || link->closing)
        return;
    link->ended = true;
    link->reading = false;
    uv_read_stop((uv_stream_t *)link->tcp);
    uv_timer_stop(&link->deadline);
    link->cbs->on_end(link->arg, status);
}

static void link_handshake_done(struct sg_tls_link *link)
{
    struct sg_tls_server *ts = link->ts;
    bool resumed = sg_tls_resumed(link->tls);

    link->counted = true;
    uv_timer_stop(&link->deadline);
    /* The handshake's state is gone: counted at once, since the plaintext that came with the
     * client's last handshake message is handed over before this read's accounting. */
    link_charge(link);
    sg_counter_inc(resumed ? ts->resumed : ts->handshake_ok);
    sg_debug(ts->log, "tls handshake done", SG_F_STR("transport", ts->transport),
             SG_F_STR("peer", link->peer), SG_F_STR("version", sg_tls_version(link->tls)),
             SG_F_STR("alpn", sg_tls_alpn(link->tls)), SG_F_BOOL("resumed", resumed),
             SG_F_STR("client_id", sg_tls_client_id(link->tls)));
    if (link->cbs->on_handshake)
        link->cbs->on_handshake(link->arg);
}

/* A TLS failure: counted (as a failed handshake, or an error after it), logged at a limited
 * rate, the engine's alert sent if the socket takes it at once, and the input ended. */
static void link_fail(struct sg_tls_link *link)
{
    struct sg_tls_server *ts = link->ts;
    int64_t suppressed;

    if (!link->counted) {
        link->counted = true;
        sg_counter_inc(ts->handshake_failed);
    }
    sg_counter_inc(ts->errors);
    suppressed = sg_log_limiter_take(&ts->limiter, sg_now_ms());
    if (suppressed >= 0)
        sg_warn(ts->log, "tls connection failed", SG_F_STR("transport", ts->transport),
                SG_F_STR("peer", link->peer), SG_F_STR("reason", sg_tls_reason(link->tls)),
                SG_F_INT("suppressed", suppressed));
    if (!link->writing)
        (void)link_flush(link);
    link_end(link, UV_EPROTO);
}

/* Decrypts and delivers what the engine holds, while the owner reads. */
static void link_process(struct sg_tls_link *link)
{
    while (link->reading && !link->closing) {
        bool was_done = sg_tls_handshake_done(link->tls);
        ssize_t n = sg_tls_read(link->tls, link->ts->plain, link->ts->plain_size);

        if (!was_done && sg_tls_handshake_done(link->tls)) {
            link_handshake_done(link);
            if (link->closing)
                return;
        }
        if (n > 0) {
            link->cbs->on_plain(link->arg, link->ts->plain, (size_t)n);
            continue;
        }
        if (n == -EPROTO) {
            link_fail(link);
            return;
        }
        if (n == -EPIPE) {
            link_end(link, UV_EOF);
            return;
        }
        break;
    }
    if (link->closing)
        return;
    int rc = link_flush(link);
    if (rc < 0 && rc != -E2BIG) {
        link_end(link, rc);
        return;
    }
    link_account(link);
}

static void link_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct sg_tls_link *link = handle->data;
    (void)suggested;

    *buf = uv_buf_init(link->ts->cbuf, sizeof(link->ts->cbuf));
}

static void link_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct sg_tls_link *link = stream->data;

    if (nread == 0 || link->closing)
        return;
    if (nread < 0) {
        if (!sg_tls_handshake_done(link->tls) && !link->counted) {
            link->counted = true;
            sg_counter_inc(link->ts->handshake_failed);
        }
        link_end(link, (int)nread);
        return;
    }
    if (sg_tls_feed(link->tls, buf->base, (size_t)nread) < 0) {
        link_end(link, UV_ENOMEM);
        return;
    }
    link_process(link);
}

static void link_on_deadline(uv_timer_t *timer)
{
    struct sg_tls_link *link = timer->data;
    struct sg_tls_server *ts = link->ts;

    if (sg_tls_handshake_done(link->tls) || link->counted)
        return;
    link->counted = true;
    sg_counter_inc(ts->handshake_timeout);
    sg_counter_inc(ts->limit_timeout);
    sg_debug(ts->log, "tls handshake timed out", SG_F_STR("transport", ts->transport),
             SG_F_STR("peer", link->peer),
             SG_F_UINT("handshake_timeout_ms", ts->handshake_timeout_ms));
    link_end(link, UV_ETIMEDOUT);
}

static void link_on_kick(uv_timer_t *timer)
{
    struct sg_tls_link *link = timer->data;

    if (link->written_due) {
        link->written_due = false;
        link->want_written = false;
        link->cbs->on_written(link->arg, 0);
        if (link->closing)
            return;
    }
    link_process(link);
}

int sg_tls_link_create(struct sg_tls_server *ts, uv_tcp_t *tcp, const char *peer,
                       const struct sg_tls_link_cbs *cbs, void *arg, struct sg_tls_link **out)
{
    struct sg_tls_link *link = malloc(sizeof(*link));
    uv_loop_t *loop = tcp->loop;

    *out = NULL;
    if (!link)
        return -ENOMEM;
    memset(link, 0, sizeof(*link));
    if (sg_tls_create(ts->ctx, &link->tls) < 0) {
        free(link);
        return -ENOMEM;
    }
    link->ts = ts;
    link->tcp = tcp;
    link->cbs = cbs;
    link->arg = arg;
    snprintf(link->peer, sizeof(link->peer), "%s", peer);
    sg_buf_init(&link->out[0], SG_TLS_LINK_OUT_MAX);
    sg_buf_init(&link->out[1], SG_TLS_LINK_OUT_MAX);
    tcp->data = link;
    link->wreq.data = link;
    uv_timer_init(loop, &link->deadline);
    uv_timer_init(loop, &link->kick);
    link->deadline.data = link;
    link->kick.data = link;
    if (ts->handshake_timeout_ms > 0)
        uv_timer_start(&link->deadline, link_on_deadline, ts->handshake_timeout_ms, 0);
    link_account(link);
    *out = link;
    return 0;
}

int sg_tls_link_read_start(struct sg_tls_link *link)
{
    int rc;

    if (link->closing || link->ended)
        return link->closing ? UV_EINVAL : 0;
    if (link->reading)
        return 0;
    rc = uv_read_start((uv_stream_t *)link->tcp, link_on_alloc, link_on_read);
    if (rc < 0)
        return rc;
    link->reading = true;
    if (sg_tls_has_in(link->tls))
        uv_timer_start(&link->kick, link_on_kick, 0, 0);
    return 0;
}

void sg_tls_link_read_stop(struct sg_tls_link *link)
{
    if (!link->reading || link->closing)
        return;
    link->reading = false;
    uv_read_stop((uv_stream_t *)link->tcp);
    if (!link->written_due)
        uv_timer_stop(&link->kick);
}

int sg_tls_link_write(struct sg_tls_link *link, const char *data, size_t len, bool defer)
{
    int rc;

    if (link->closing)
        return UV_EINVAL;
    rc = sg_tls_write(link->tls, data, len);
    if (rc < 0)
        return rc == -EPROTO ? UV_EPROTO : rc;
    rc = link_flush(link);
    link_account(link);
    if (rc == SG_TLS_LINK_WRITTEN && defer) {
        link->written_due = true;
        uv_timer_start(&link->kick, link_on_kick, 0, 0);
        rc = 0;
    }
    if (rc == 0)
        link->want_written = true;
    return rc;
}

int sg_tls_link_shutdown(struct sg_tls_link *link)
{
    int rc;

    if (link->closing)
        return UV_EINVAL;
    sg_tls_close_notify(link->tls);
    rc = link_flush(link);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        link->want_shutdown = true; /* once the writes in flight are out */
        return 0;
    }
    return link_shutdown_now(link);
}

const char *sg_tls_link_client_id(const struct sg_tls_link *link)
{
    return sg_tls_client_id(link->tls);
}
