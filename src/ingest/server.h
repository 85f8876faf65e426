/* What both listeners (HTTP and TCP) share inside ingest: binding a listening socket, naming
 * its address, and the listener's life cycle (struct sg_listener). What the wiring gives a server
 * (struct sg_server_env) is in streamgate/ingest.h. */
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
/* Writes the peer address of a connected handle as "host:port" ("?" when unknown). */
void sg_tcp_peer_address(const uv_tcp_t *tcp, char *buf, size_t len);

/* A server's listening socket through its life, the same for HTTP and TCP: opened (bound,
 * listening, its address read) at create; closed once, at shutdown or destroy; its close
 * callback tells the owner, which frees or reports once nothing of it is open. Zeroed, it is
 * a listener that was never opened (and so counts as closed). */
struct sg_listener {
    uv_tcp_t tcp;     /* the connection callback gets &tcp: sg_container_of(.., listener.tcp) */
    bool initialised; /* the handle is in the loop: it must be closed */
    bool closing;     /* uv_close was called */
    bool closed;      /* its close callback ran */
    void (*on_closed)(struct sg_listener *l);
    char address[96]; /* "host:port" once listening */
};

/* Opens `l` on `hostport` (see sg_listen_tcp); `what` names it in errors ("http.listen").
 * `on_closed` runs when the listener's handle has closed (also after a failed open that got
 * as far as initialising it: the caller then closes it and waits, as after a success). Returns
 * 0 or a negative code with a message in errstr. */
int sg_listener_open(struct sg_listener *l, uv_loop_t *loop, const char *hostport, bool reuse_port,
                     int backlog, uv_connection_cb cb, void (*on_closed)(struct sg_listener *l),
                     const char *what, char *errstr, size_t errstr_size);
/* Stops listening; on_closed follows in a later callback. Does nothing when already closing or
 * never opened. */
void sg_listener_close(struct sg_listener *l);
/* True when nothing of the listener is open any more: never opened, or its close callback ran. */
static inline bool sg_listener_gone(const struct sg_listener *l)
{
    return !l->initialised || l->closed;
}

#endif
