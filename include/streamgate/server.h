/* What both listeners (HTTP and TCP) are built from, and their common life cycle:
 * create (bind and listen) -> shutdown (stop accepting, finish what is in flight, close every
 * connection, then call back) -> destroy. */
#ifndef STREAMGATE_SERVER_H
#define STREAMGATE_SERVER_H

#include <stddef.h>
#include <uv.h>

struct sg_buf;
struct sg_budget;
struct sg_config;
struct sg_ingest;
struct sg_streams;
struct sg_metrics;
struct sg_log;

struct sg_server_env {
    uv_loop_t *loop;
    const struct sg_config *cfg;
    struct sg_ingest *ingest;
    struct sg_streams *streams; /* for the live query; NULL answers 404 */
    struct sg_budget *budget;   /* pushback; NULL: never pauses */
    /* Renders GET /v1/info's JSON object into `out`; NULL answers 404. */
    int (*info)(void *arg, struct sg_buf *out);
    void *info_arg;
    struct sg_metrics *metrics;
    struct sg_log *log;
};

typedef void (*sg_server_closed_cb)(void *arg);

/* Initialises `tcp` and makes it listen on `hostport` ("127.0.0.1:8080", "[::1]:0"). Returns 0
 * or a negative code with a message in errstr. The handle is initialised even on failure
 * (uv_tcp_init cannot fail for AF_UNSPEC), so the caller always closes it with uv_close. */
int sg_listen_tcp(uv_loop_t *loop, uv_tcp_t *tcp, const char *hostport, int backlog,
                  uv_connection_cb cb, char *errstr, size_t errstr_size);
/* Writes the bound address of a listening handle as "host:port". */
int sg_tcp_local_address(const uv_tcp_t *tcp, char *buf, size_t len);

#endif
