/* The HTTP connection's TCP transport: a connection's bytes over its libuv socket. Reads land in
 * the server's shared buffer and go to sg_http__conn_input; writes are tried at once and queued
 * when the socket is full. The TLS transport (http_tls.c) sits between the socket and the
 * connection instead, handing sg_http__conn_input the plaintext. */
#include <stdlib.h>

#include "http_internal.h"
#include "streamgate/common.h"

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
        sg_http__conn_input(conn, buf->base, (size_t)nread);
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
    struct sg_http_conn *conn = req->data;

    free(req);
    sg_http__conn_on_write(conn, status);
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
    /* Made only for a write that has to wait (one at a time), so an idle connection does not
     * carry one. libuv calls back even for a write cancelled by the close, which frees it. */
    uv_write_t *req = malloc(sizeof(*req));
    if (!req)
        return UV_ENOMEM;
    req->data = conn;
    int rc = uv_write(req, (uv_stream_t *)&conn->tcp, &ub, 1, tcp_on_write);
    if (rc < 0)
        free(req);
    return rc;
}

static void tcp_on_shutdown(uv_shutdown_t *req, int status)
{
    struct sg_http_conn *conn = req->data;

    free(req);
    sg_http__conn_on_shutdown(conn, status);
}

static int tcp_shutdown(struct sg_http_conn *conn)
{
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req)
        return UV_ENOMEM;
    req->data = conn;
    int rc = uv_shutdown(req, (uv_stream_t *)&conn->tcp, tcp_on_shutdown);
    if (rc < 0)
        free(req);
    return rc;
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
