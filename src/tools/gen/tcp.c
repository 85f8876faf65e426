/* TCP target: each lane is one connection streaming NDJSON. A lane fills one buffer while the
 * other is being written (two queues swapped on completion), so making events and sending them
 * overlap and a write is as large as the queue. At the end every connection is shut down
 * (which waits for queued writes) and then closed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

static void gen_tcp__close_cb(uv_handle_t *h)
{
    struct gen_lane *lane = container_of((uv_tcp_t *)h, struct gen_lane, tcp);
    lane->state = GEN_CONN_IDLE;
}

static void gen_tcp__alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct gen_lane *lane = container_of((uv_tcp_t *)h, struct gen_lane, tcp);
    (void)suggested;
    *buf = uv_buf_init(lane->app->rbuf, sizeof(lane->app->rbuf));
}

/* The server sends nothing on TCP; reading only notices it closing. */
static void gen_tcp__read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct gen_lane *lane = container_of((uv_tcp_t *)s, struct gen_lane, tcp);
    struct gen_app *app = lane->app;
    (void)buf;
    if (nread >= 0 || app->finished)
        return;
    uv_read_stop(s);
    app->stats.errors++;
    char msg[128];
    snprintf(msg, sizeof(msg), "the server closed TCP connection %u: %s", lane->idx,
             nread == UV_EOF ? "end of stream" : uv_strerror((int)nread));
    gen_fail(app, (int)nread, msg);
}

static void gen_tcp__connected(uv_connect_t *req, int status)
{
    struct gen_lane *lane = container_of(req, struct gen_lane, connect_req);
    struct gen_app *app = lane->app;
    if (app->finished)
        return;
    if (status < 0) {
        app->stats.errors++;
        char msg[160];
        snprintf(msg, sizeof(msg), "cannot connect to %s: %s", app->opts.tcp_addr,
                 uv_strerror(status));
        gen_fail(app, status, msg);
        return;
    }
    lane->state = GEN_CONN_OPEN;
    uv_tcp_nodelay(&lane->tcp, 1);
    uv_read_start((uv_stream_t *)&lane->tcp, gen_tcp__alloc, gen_tcp__read);
    gen_lane_settled(lane);
}

static void gen_tcp__written(uv_write_t *req, int status)
{
    struct gen_lane *lane = container_of(req, struct gen_lane, write_req);
    struct gen_app *app = lane->app;
    lane->busy = false;
    if (status < 0) {
        app->stats.errors++;
        gen_lane_lost(lane);
        if (!app->finished) {
            char msg[128];
            snprintf(msg, sizeof(msg), "write on TCP connection %u failed: %s", lane->idx,
                     uv_strerror(status));
            gen_fail(app, status, msg);
        }
        return;
    }
    uint64_t n = lane->flight.nevents;
    app->stats.sent += n;
    app->stats.bytes += lane->flight.wr - lane->flight.rd;
    gen_lane_ack(lane, n, 0, NULL, 0);
    gen_lane_settled(lane);
}

void gen_tcp_kick(struct gen_lane *lane)
{
    if (lane->state != GEN_CONN_OPEN || lane->busy || lane->fill.nevents == 0)
        return;
    struct gen_queue tmp = lane->flight;
    lane->flight = lane->fill;
    lane->fill = tmp;
    gen_queue_reset(&lane->fill);
    uv_buf_t buf = uv_buf_init(lane->flight.data + lane->flight.rd,
                               (unsigned)(lane->flight.wr - lane->flight.rd));
    int rc = uv_write(&lane->write_req, (uv_stream_t *)&lane->tcp, &buf, 1, gen_tcp__written);
    if (rc < 0) {
        lane->app->stats.errors++;
        gen_lane_lost(lane);
        gen_fail(lane->app, rc, "cannot write to the TCP connection");
        return;
    }
    lane->busy = true;
}

static void gen_tcp__shutdown_cb(uv_shutdown_t *req, int status)
{
    struct gen_lane *lane = container_of(req, struct gen_lane, shutdown_req);
    (void)status;
    uv_close((uv_handle_t *)&lane->tcp, gen_tcp__close_cb);
}

void gen_tcp_close(struct gen_lane *lane)
{
    if (lane->state == GEN_CONN_IDLE || lane->state == GEN_CONN_CLOSING)
        return;
    bool open = lane->state == GEN_CONN_OPEN;
    lane->state = GEN_CONN_CLOSING;
    if (open && !lane->app->aborted) {
        uv_read_stop((uv_stream_t *)&lane->tcp);
        if (uv_shutdown(&lane->shutdown_req, (uv_stream_t *)&lane->tcp, gen_tcp__shutdown_cb) == 0)
            return;
    }
    uv_close((uv_handle_t *)&lane->tcp, gen_tcp__close_cb);
}

int gen_tcp_init(struct gen_app *app, char *errstr, size_t errstr_size)
{
    char host[256];
    const char *a = app->opts.tcp_addr, *port;
    if (*a == '[') {
        const char *rb = strchr(a, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - a - 1) >= sizeof(host))
            goto bad;
        memcpy(host, a + 1, (size_t)(rb - a - 1));
        host[rb - a - 1] = '\0';
        port = rb + 2;
    } else {
        const char *colon = strrchr(a, ':');
        if (!colon || (size_t)(colon - a) >= sizeof(host))
            goto bad;
        memcpy(host, a, (size_t)(colon - a));
        host[colon - a] = '\0';
        port = colon + 1;
    }
    if (!*host || !*port)
        goto bad;
    int rc = gen_resolve(app->loop, host, port, &app->addr, errstr, errstr_size);
    if (rc < 0)
        return rc;
    for (unsigned i = 0; i < app->nlanes; i++) {
        struct gen_lane *lane = &app->lanes[i];
        uv_tcp_init(app->loop, &lane->tcp);
        lane->state = GEN_CONN_CONNECTING;
        rc = uv_tcp_connect(&lane->connect_req, &lane->tcp, (struct sockaddr *)&app->addr,
                            gen_tcp__connected);
        if (rc < 0) {
            snprintf(errstr, errstr_size, "cannot connect to %s: %s", a, uv_strerror(rc));
            uv_close((uv_handle_t *)&lane->tcp, gen_tcp__close_cb);
            lane->state = GEN_CONN_CLOSING;
            return rc;
        }
    }
    return 0;
bad:
    snprintf(errstr, errstr_size, "--tcp: expected HOST:PORT or [V6]:PORT, not \"%s\"", a);
    return -EINVAL;
}
