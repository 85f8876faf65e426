/* The HTTP listener: llhttp on libuv, keep-alive, pipelining, chunked and gzip bodies.
 * Routes: POST /v1/events, GET /metrics, GET /healthz, GET /readyz, GET /v1/info, the live query
 * (GET /v1/streams[/{key}]) and, through a handler, GET /v1/history[/{key}]. */
#ifndef STREAMGATE_HTTP_SERVER_H
#define STREAMGATE_HTTP_SERVER_H

#include <stddef.h>

#include "streamgate/ingest.h"

struct sg_http_server;

int sg_http_server_create(const struct sg_server_env *env, struct sg_http_server **out,
                          char *errstr, size_t errstr_size);
/* The bound address as "host:port". */
const char *sg_http_server_address(const struct sg_http_server *srv);
/* After a configuration reload changed live options in the configuration the server reads:
 * takes limits.retry_after, and http.rate_limit and http.rate_burst (a changed rate starts
 * every client with a full bucket). The other options it reads per request. Returns 0 or
 * -ENOMEM (the previous rate limit stays). */
int sg_http_server_reload(struct sg_http_server *srv);
/* Reads http.tls_cert, http.tls_key and http.tls_client_ca again for the connections accepted
 * from now on (on SIGHUP, say); open connections keep what they have. The files (a few KiB) are
 * read and parsed on the calling thread, before this returns. On failure the files in
 * use stay in use, the error is logged and returned with errstr set. Returns 0 (also when the
 * listener has no TLS) or a negative code. */
int sg_http_server_reload_tls(struct sg_http_server *srv, char *errstr, size_t errstr_size);
/* Stops accepting, lets requests in flight finish (their responses carry Connection: close),
 * closes idle connections, and calls `cb` once every handle is closed. */
void sg_http_server_shutdown(struct sg_http_server *srv, sg_server_closed_cb cb, void *arg);
/* Frees the server; only after shutdown has called back. Safe on NULL. */
void sg_http_server_destroy(struct sg_http_server *srv);

/* For a handler (sg_http_handler): the answer comes later. The connection reads nothing more
 * meanwhile, so no later answer overtakes it. Should the connection close first, `cancel` runs
 * (with `arg`) and the handler must not touch `conn` again. */
void sg_http_hold(struct sg_http_conn *conn, void (*cancel)(void *arg), void *arg);

/* A handler's answer, JSON with `status`; `extra` holds further header lines or NULL. After a
 * hold, the connection goes on with the requests behind it. */
void sg_http_answer(struct sg_http_conn *conn, int status, const char *body, size_t len,
                    const char *extra);

#endif
