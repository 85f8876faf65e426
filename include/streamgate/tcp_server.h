/* The raw TCP listener: newline-delimited JSON, one event per line. */
#ifndef STREAMGATE_TCP_SERVER_H
#define STREAMGATE_TCP_SERVER_H

#include <stddef.h>

#include "streamgate/ingest.h"

struct sg_tcp_server;

int sg_tcp_server_create(const struct sg_server_env *env, struct sg_tcp_server **out, char *errstr,
                         size_t errstr_size);
const char *sg_tcp_server_address(const struct sg_tcp_server *srv);
/* As sg_http_server_reload_tls, for tcp.tls_cert, tcp.tls_key and tcp.tls_client_ca. */
int sg_tcp_server_reload_tls(struct sg_tcp_server *srv, char *errstr, size_t errstr_size);
/* Stops accepting, ingests what was already read (including a final line without a newline),
 * closes every connection, and calls `cb` once every handle is closed. */
void sg_tcp_server_shutdown(struct sg_tcp_server *srv, sg_server_closed_cb cb, void *arg);
void sg_tcp_server_destroy(struct sg_tcp_server *srv);

#endif
