#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "streamgate/common.h"
#include "streamgate/config.h"
#include "server.h"

/* Gives `tcp` a socket of `family` with SO_REUSEPORT set, so other processes (each setting it
 * too) can bind the same address and the kernel spreads new connections over them. libuv 1.44
 * has no bind flag for it (UV_TCP_REUSEPORT came in 1.49), so the socket is made here and handed
 * over with uv_tcp_open; uv_tcp_bind then binds it as it would its own. Returns 0 or a negative
 * code. */
static int reuse_port_socket(uv_tcp_t *tcp, int family)
{
    int one = 1;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc;

    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    rc = uv_tcp_open(tcp, (uv_os_sock_t)fd);
    if (rc != 0)
        close(fd);
    return rc;
}

int sg_listen_tcp(uv_loop_t *loop, uv_tcp_t *tcp, const char *hostport, bool reuse_port,
                  int backlog, uv_connection_cb cb, char *errstr, size_t errstr_size)
{
    /* Initialised first, so the caller always owns an initialised handle to close. */
    int rc = uv_tcp_init(loop, tcp);
    if (rc != 0) {
        snprintf(errstr, errstr_size, "cannot set up a socket handle: %s", uv_strerror(rc));
        return rc;
    }
    char host[256];
    int port;
    if (sg_parse_hostport(hostport, host, sizeof(host), &port) != 0) {
        snprintf(errstr, errstr_size, "invalid listen address \"%s\"", hostport);
        return -EINVAL;
    }
    /* Resolution happens once, at start-up, before the loop runs; blocking here is fine. */
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0) {
        snprintf(errstr, errstr_size, "cannot resolve \"%s\": %s", host, gai_strerror(gai));
        return -EINVAL;
    }
    if (reuse_port) {
        rc = reuse_port_socket(tcp, res->ai_family);
        if (rc != 0) {
            freeaddrinfo(res);
            snprintf(errstr, errstr_size, "cannot set SO_REUSEPORT for %s: %s", hostport,
                     uv_strerror(rc));
            return rc;
        }
    }
    rc = uv_tcp_bind(tcp, res->ai_addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)tcp, backlog, cb);
    freeaddrinfo(res);
    if (rc == UV_EADDRINUSE && !reuse_port)
        snprintf(errstr, errstr_size,
                 "cannot listen on %s: %s (another process listens there; to share the port, "
                 "every process on it needs reuse_port)",
                 hostport, uv_strerror(rc));
    else if (rc != 0)
        snprintf(errstr, errstr_size, "cannot listen on %s: %s", hostport, uv_strerror(rc));
    return rc;
}

/* Writes `ss` as "host:port" ("[v6]:port"). */
static void sockaddr_name(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%d", ip, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(buf, len, "%s:%d", ip, ntohs(a->sin_port));
    }
}

int sg_tcp_local_address(const uv_tcp_t *tcp, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    int namelen = sizeof(ss);
    int rc = uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &namelen);
    if (rc != 0)
        return rc;
    sockaddr_name(&ss, buf, len);
    return 0;
}

void sg_tcp_peer_address(const uv_tcp_t *tcp, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    int namelen = sizeof(ss);
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &namelen) != 0)
        snprintf(buf, len, "?");
    else
        sockaddr_name(&ss, buf, len);
}

static void listener_closed(uv_handle_t *handle)
{
    struct sg_listener *l = sg_container_of((uv_tcp_t *)handle, struct sg_listener, tcp);

    l->closed = true;
    if (l->on_closed)
        l->on_closed(l);
}

int sg_listener_open(struct sg_listener *l, uv_loop_t *loop, const char *hostport, bool reuse_port,
                     int backlog, uv_connection_cb cb, void (*on_closed)(struct sg_listener *l),
                     const char *what, char *errstr, size_t errstr_size)
{
    char detail[256] = "";
    int rc;

    l->on_closed = on_closed;
    rc = sg_listen_tcp(loop, &l->tcp, hostport, reuse_port, backlog, cb, detail, sizeof(detail));
    /* sg_listen_tcp initialises the handle before anything that can fail; the handle's type
     * tells whether that happened. */
    l->initialised = l->tcp.loop == loop && l->tcp.type == UV_TCP;
    if (rc < 0) {
        /* Both listeners report the same kinds of failure; say which one it was. */
        snprintf(errstr, errstr_size, "%s: %s", what, detail);
        return rc;
    }
    rc = sg_tcp_local_address(&l->tcp, l->address, sizeof(l->address));
    if (rc < 0)
        snprintf(errstr, errstr_size, "%s: cannot read the bound address: %s", what,
                 uv_strerror(rc));
    return rc;
}

void sg_listener_close(struct sg_listener *l)
{
    if (!l->initialised || l->closing)
        return;
    l->closing = true;
    uv_close((uv_handle_t *)&l->tcp, listener_closed);
}
