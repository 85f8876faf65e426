/* What both listeners (HTTP and TCP) share inside ingest: binding a listening socket and naming
 * its address. What the wiring gives a server (struct sg_server_env) is in streamgate/ingest.h. */
#ifndef SG_INGEST_SERVER_H
#define SG_INGEST_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* Initialises `tcp` and makes it listen on `hostport` ("127.0.0.1:8080", "[::1]:0"), with
 * SO_REUSEPORT when `reuse_port` (http.reuse_port, tcp.reuse_port). Returns 0 or a negative code
 * with a message in errstr. The handle is initialised even on failure (uv_tcp_init cannot fail
 * for AF_UNSPEC), so the caller always closes it with uv_close. */
int sg_listen_tcp(uv_loop_t *loop, uv_tcp_t *tcp, const char *hostport, bool reuse_port,
                  int backlog, uv_connection_cb cb, char *errstr, size_t errstr_size);
/* Writes the bound address of a listening handle as "host:port". */
int sg_tcp_local_address(const uv_tcp_t *tcp, char *buf, size_t len);

#endif
