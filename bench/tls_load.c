/* An HTTP/1.1 load client with or without TLS, the same for every server it is pointed at, so
 * streamgate and nginx over TLS can be compared side by side. Each thread holds one keep-alive
 * connection and sends one-event POSTs back to back (one in flight), or (--handshakes) opens,
 * completes a TLS handshake and closes connections in a loop, resuming the previous session
 * with --resume. Prints one JSON line: requests or handshakes per second over --seconds.
 *
 *   tls_load HOST:PORT [--tls CA.pem] [--conns N] [--seconds S] [--handshakes [--resume]] */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static struct sockaddr_in addr;
static SSL_CTX *ctx; /* NULL: plain HTTP */
static bool handshakes, resume;
static double seconds = 5;
static atomic_bool stop;
static atomic_ulong done, errors, reused;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct conn {
    int fd;
    SSL *ssl;
};

static int conn_open(struct conn *c, SSL_SESSION *sess)
{
    int one = 1;

    c->ssl = NULL;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return -1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        return -1;
    if (!ctx)
        return 0;
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    if (sess)
        SSL_set_session(c->ssl, sess);
    return SSL_connect(c->ssl) == 1 ? 0 : -1;
}

static void conn_close(struct conn *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    ERR_clear_error();
}

static int conn_write(struct conn *c, const char *p, size_t n)
{
    if (c->ssl)
        return SSL_write(c->ssl, p, (int)n) == (int)n ? 0 : -1;
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static ssize_t conn_read(struct conn *c, char *p, size_t n)
{
    if (c->ssl) {
        int r = SSL_read(c->ssl, p, (int)n);
        return r > 0 ? r : -1;
    }
    ssize_t r = recv(c->fd, p, n, 0);
    return r > 0 ? r : -1;
}

/* Reads one response (status line, headers, a Content-Length body or none); returns the
 * status, or -1. */
static int read_response(struct conn *c)
{
    char buf[8192];
    size_t len = 0;
    char *end;

    buf[0] = '\0';
    while (!(end = strstr(buf, "\r\n\r\n"))) {
        if (len >= sizeof(buf) - 1)
            return -1;
        ssize_t r = conn_read(c, buf + len, sizeof(buf) - 1 - len);
        if (r < 0)
            return -1;
        len += (size_t)r;
        buf[len] = '\0';
    }
    int status = atoi(buf + 9);
    const char *cl = strcasestr(buf, "\r\ncontent-length:");
    size_t want = cl ? (size_t)atol(cl + 17) : 0;
    size_t have = len - (size_t)(end + 4 - buf);
    while (have < want) {
        ssize_t r = conn_read(c, buf, sizeof(buf));
        if (r < 0)
            return -1;
        have += (size_t)r;
    }
    return status;
}

static void *requests_thread(void *arg)
{
    unsigned long id = (unsigned long)(uintptr_t)arg, n = 0;
    struct conn c;
    char req[512], body[96];

    if (conn_open(&c, NULL) != 0) {
        atomic_fetch_add(&errors, 1);
        conn_close(&c);
        return NULL;
    }
    while (!atomic_load(&stop)) {
        int blen =
            snprintf(body, sizeof(body), "{\"key\":\"k%lu\",\"v\":%lu}", id * 1000 + n % 1000, n);
        int rlen = snprintf(req, sizeof(req),
                            "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                            "application/json\r\nContent-Length: %d\r\n\r\n%s",
                            blen, body);
        n++;
        int status = conn_write(&c, req, (size_t)rlen) == 0 ? read_response(&c) : -1;
        if (status < 200 || status > 299) {
            atomic_fetch_add(&errors, 1);
            break;
        }
        atomic_fetch_add(&done, 1);
    }
    conn_close(&c);
    return NULL;
}

static void *handshakes_thread(void *arg)
{
    SSL_SESSION *sess = NULL;
    (void)arg;

    while (!atomic_load(&stop)) {
        struct conn c;
        if (conn_open(&c, resume ? sess : NULL) != 0) {
            atomic_fetch_add(&errors, 1);
            conn_close(&c);
            continue;
        }
        /* TLS 1.3 sends its tickets after the handshake: one request makes sure they are in. */
        static const char req[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
        if (conn_write(&c, req, sizeof(req) - 1) != 0 || read_response(&c) < 0) {
            atomic_fetch_add(&errors, 1);
        } else {
            if (SSL_session_reused(c.ssl))
                atomic_fetch_add(&reused, 1);
            /* TLS 1.3 tickets are for one use: keep the one this connection brought. */
            if (resume) {
                SSL_SESSION_free(sess);
                sess = SSL_get1_session(c.ssl);
            }
            atomic_fetch_add(&done, 1);
        }
        conn_close(&c);
    }
    SSL_SESSION_free(sess);
    return NULL;
}

int main(int argc, char **argv)
{
    int conns = 16;
    const char *ca = NULL;

    if (argc < 2) {
        fprintf(stderr, "usage: tls_load HOST:PORT [--tls CA] [--conns N] [--seconds S] "
                        "[--handshakes [--resume]]\n");
        return 2;
    }
    char host[64];
    const char *colon = strrchr(argv[1], ':');
    if (!colon || (size_t)(colon - argv[1]) >= sizeof(host))
        return 2;
    memcpy(host, argv[1], (size_t)(colon - argv[1]));
    host[colon - argv[1]] = '\0';
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return 2;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--tls") && i + 1 < argc)
            ca = argv[++i];
        else if (!strcmp(argv[i], "--conns") && i + 1 < argc)
            conns = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--handshakes"))
            handshakes = true;
        else if (!strcmp(argv[i], "--resume"))
            resume = true;
        else
            return 2;
    }
    if (ca) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
            return 1;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    }
    pthread_t *th = calloc((size_t)conns, sizeof(*th));
    double t0 = now_s();
    for (int i = 0; i < conns; i++)
        pthread_create(&th[i], NULL, handshakes ? handshakes_thread : requests_thread,
                       (void *)(uintptr_t)i);
    while (now_s() - t0 < seconds)
        usleep(10000);
    unsigned long n0 = atomic_load(&done);
    atomic_store(&stop, true);
    double t = now_s() - t0;
    for (int i = 0; i < conns; i++)
        pthread_join(th[i], NULL);
    printf("{\"%s\":%.0f,\"count\":%lu,\"reused\":%lu,\"errors\":%lu,\"conns\":%d,\"tls\":%s,"
           "\"resume\":%s}\n",
           handshakes ? "handshakes_per_second" : "requests_per_second", (double)n0 / t, n0,
           atomic_load(&reused), atomic_load(&errors), conns, ctx ? "true" : "false",
           resume ? "true" : "false");
    free(th);
    SSL_CTX_free(ctx);
    return atomic_load(&errors) > 0 && n0 == 0 ? 1 : 0;
}
