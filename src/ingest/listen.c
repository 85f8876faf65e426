#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "streamgate/config.h"
#include "server.h"

int sg_listen_tcp(uv_loop_t *loop, uv_tcp_t *tcp, const char *hostport, int backlog,
                  uv_connection_cb cb, char *errstr, size_t errstr_size)
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
    rc = uv_tcp_bind(tcp, res->ai_addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)tcp, backlog, cb);
    freeaddrinfo(res);
    if (rc != 0)
        snprintf(errstr, errstr_size, "cannot listen on %s: %s", hostport, uv_strerror(rc));
    return rc;
}

int sg_tcp_local_address(const uv_tcp_t *tcp, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    int namelen = sizeof(ss);
    int rc = uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &namelen);
    if (rc != 0)
        return rc;
    char ip[INET6_ADDRSTRLEN];
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%d", ip, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(buf, len, "%s:%d", ip, ntohs(a->sin_port));
    }
    return 0;
}
