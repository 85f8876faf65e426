/* The HTTP connection's TLS transport: the connection's socket (conn->tcp) wrapped in a TLS
 * link (tls_link.h), behind the same struct sg_http_io as the plain TCP transport. Plaintext
 * goes into the connection through sg_http__conn_input, as socket reads do. */
#include <errno.h>

#include "http_internal.h"
#include "tls_link.h"

/* The link hands over plaintext only while the connection reads, and stops as soon as the
 * connection stops reading (a stalled parser): the connection copies out what it keeps. */
static void tls_on_plain(void *arg, const char *data, size_t len)
{
    sg_http__conn_input(arg, data, len);
}

static void tls_on_handshake(void *arg)
{
    struct sg_http_conn *conn = arg;

    conn->client_id = sg_tls_link_client_id(conn->io_arg);
}

static void tls_on_end(void *arg, int status)
{
    sg_http__conn_feed_end(arg, status);
}

static void tls_on_written(void *arg, int status)
{
    sg_http__conn_on_write(arg, status);
}

static void tls_on_shutdown(void *arg, int status)
{
    sg_http__conn_on_shutdown(arg, status);
}

static void tls_on_closed(void *arg)
{
    struct sg_http_conn *conn = arg;

    conn->client_id = NULL;
    conn->io_arg = NULL;
    sg_http__conn_on_closed(conn);
}

static const struct sg_tls_link_cbs tls_cbs = {
    .on_plain = tls_on_plain,
    .on_handshake = tls_on_handshake,
    .on_end = tls_on_end,
    .on_written = tls_on_written,
    .on_shutdown = tls_on_shutdown,
    .on_closed = tls_on_closed,
};

static int tls_read_start(struct sg_http_conn *conn)
{
    return sg_tls_link_read_start(conn->io_arg);
}

static void tls_read_stop(struct sg_http_conn *conn)
{
    sg_tls_link_read_stop(conn->io_arg);
}

/* A stalled connection resumes on the write's completion, so its writes always report one. */
static int tls_write(struct sg_http_conn *conn, const char *data, size_t len)
{
    int rc = sg_tls_link_write(conn->io_arg, data, len, conn->stalled);

    return rc == SG_TLS_LINK_WRITTEN ? SG_HTTP_WRITTEN : rc;
}

static int tls_shutdown(struct sg_http_conn *conn)
{
    return sg_tls_link_shutdown(conn->io_arg);
}

static void tls_close(struct sg_http_conn *conn)
{
    sg_tls_link_close(conn->io_arg);
}

static const struct sg_http_io sg_http__tls_io = {
    .read_start = tls_read_start,
    .read_stop = tls_read_stop,
    .write = tls_write,
    .shutdown = tls_shutdown,
    .close = tls_close,
};

int sg_http__tls_wrap(struct sg_http_conn *conn, struct sg_tls_server *ts)
{
    struct sg_tls_link *link;
    int rc = sg_tls_link_create(ts, &conn->tcp, conn->peer, &tls_cbs, conn, &link);

    if (rc < 0)
        return rc;
    conn->io = &sg_http__tls_io;
    conn->io_arg = link;
    return 0;
}
