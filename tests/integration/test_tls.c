/* TLS on both listeners, against the real binary: curl and openssl s_client as clients, and an
 * in-process OpenSSL client where a test needs control of the bytes on the wire (garbage inside
 * records, one byte at a time). Certificates are made for each run by tests/tls/gen_certs.sh. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bad_input.h"
#include "harness.h"
#include "kafka_util.h"

#define WAIT_MS 10000

static char pki[] = "/tmp/sg-tls-it-XXXXXX";

static void make_certs(void)
{
    char cmd[1024];
    const char *root = getenv("SG_SOURCE_ROOT");

    cr_assert_not_null(root);
    cr_assert_not_null(mkdtemp(pki));
    snprintf(cmd, sizeof(cmd), "sh %s/tests/tls/gen_certs.sh %s", root, pki);
    cr_assert_eq(system(cmd), 0, "gen_certs.sh failed");
}

static void remove_certs(void)
{
    char cmd[1024];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", pki);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(tls, .init = make_certs, .fini = remove_certs, .timeout = 120);

/* A path in the certificate directory; each call has its own storage (up to 32 live). */
static const char *pem(const char *name)
{
    static char buf[32][512];
    static int next;
    char *p = buf[next++ % 32];

    snprintf(p, 512, "%s/%s", pki, name);
    return p;
}

/* Runs `cmd` with sh, returns its stdout and stderr (malloc'd) and its exit status. */
static char *shell(const char *cmd, int *status)
{
    FILE *f = popen(cmd, "r");
    size_t len = 0, cap = 4096;
    char *out = malloc(cap);

    cr_assert_not_null(f, "popen %s", cmd);
    for (;;) {
        if (len + 1024 > cap) {
            cap *= 2;
            out = realloc(out, cap);
        }
        size_t n = fread(out + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
    }
    out[len] = '\0';
    int rc = pclose(f);
    if (status)
        *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    return out;
}

/* /metrics over HTTPS with curl, trusting the CA bundle `ca` of the directory. */
static double https_metric_ca(const struct sgt_proc *p, const char *series, const char *ca)
{
    char cmd[1024];

    snprintf(cmd, sizeof(cmd), "curl -sS --max-time 10 --cacert %s https://%s/metrics", pem(ca),
             p->http);
    char *text = shell(cmd, NULL);
    double v = sgt_metric_in(text, series);
    free(text);
    return v;
}

static double https_metric(const struct sgt_proc *p, const char *series)
{
    return https_metric_ca(p, series, "ca.pem");
}

static double wait_https_metric_ca(const struct sgt_proc *p, const char *series, double want,
                                   const char *ca)
{
    int64_t deadline = sgt_mono_ms() + WAIT_MS;
    double v;

    while ((v = https_metric_ca(p, series, ca)) != want && sgt_mono_ms() < deadline)
        sgt_sleep_ms(50);
    return v;
}

static double wait_https_metric(const struct sgt_proc *p, const char *series, double want)
{
    return wait_https_metric_ca(p, series, want, "ca.pem");
}

static void start_tls(struct sgt_proc *p, const char *const *more)
{
    const char *args[40];
    size_t n = 0;

    args[n++] = "--http-tls-cert";
    args[n++] = pem("server.pem");
    args[n++] = "--http-tls-key";
    args[n++] = pem("server.key");
    args[n++] = "--tcp-tls-cert";
    args[n++] = pem("server.pem");
    args[n++] = "--tcp-tls-key";
    args[n++] = pem("server.key");
    for (const char *const *a = more; a && *a && n < 38; a++)
        args[n++] = *a;
    args[n] = NULL;
    sgt_start(p, args, NULL);
}

/* --- an in-process client ---------------------------------------------------------------- */

struct tcli {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
};

/* Connects and completes the handshake (client certificate `cert`/`key` from the directory,
 * or none). Returns 0, or -1 when the handshake failed. */
static int tcli_open(struct tcli *c, const char *hostport, const char *cert, const char *key)
{
    c->fd = sgt_connect(hostport);
    c->ctx = SSL_CTX_new(TLS_client_method());
    cr_assert_not_null(c->ctx);
    cr_assert_eq(SSL_CTX_load_verify_locations(c->ctx, pem("ca.pem"), NULL), 1);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (cert) {
        cr_assert_eq(SSL_CTX_use_certificate_file(c->ctx, pem(cert), SSL_FILETYPE_PEM), 1);
        cr_assert_eq(SSL_CTX_use_PrivateKey_file(c->ctx, pem(key), SSL_FILETYPE_PEM), 1);
    }
    c->ssl = SSL_new(c->ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    return SSL_connect(c->ssl) == 1 ? 0 : -1;
}

static void tcli_close(struct tcli *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    close(c->fd);
    ERR_clear_error();
}

static void tcli_send(struct tcli *c, const void *data, size_t len)
{
    size_t n = 0;

    cr_assert_eq(SSL_write_ex(c->ssl, data, len, &n), 1, "SSL_write failed");
    cr_assert_eq(n, len);
}

static ssize_t tls_recv(void *ssl, void *buf, size_t cap)
{
    size_t n = 0;

    return SSL_read_ex(ssl, buf, cap, &n) == 1 ? (ssize_t)n : -1;
}

static int tls_link_response(void *link, struct sgt_response *r)
{
    struct tcli *c = link;

    return sgt_read_response_with(c->fd, tls_recv, c->ssl, r);
}

/* Reads one response; returns its status, the body in `body`. */
static int tcli_response(struct tcli *c, char *body, size_t cap)
{
    struct sgt_response r;

    cr_assert_eq(tls_link_response(c, &r), 0, "no response");
    snprintf(body, cap, "%s", r.body);
    int status = r.status;
    sgt_response_free(&r);
    return status;
}

static int tcli_post(struct tcli *c, const char *body, size_t len, char *answer, size_t cap)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     len);
    tcli_send(c, head, (size_t)n);
    tcli_send(c, body, len);
    return tcli_response(c, answer, cap);
}

static void tcli_good_event(struct tcli *c, int seq)
{
    char body[128], answer[512];
    int n = snprintf(body, sizeof(body), "{\"key\":\"good\",\"seq\":%d}", seq);
    int status = tcli_post(c, body, (size_t)n, answer, sizeof(answer));
    cr_assert_eq(status, 202, "%d %s", status, answer);
}

/* --- tests ------------------------------------------------------------------------------- */

Test(tls, https_ingest_metrics_alpn_and_resumption)
{
    struct sgt_proc p;
    char cmd[2048];
    int status;

    start_tls(&p, NULL);
    snprintf(cmd, sizeof(cmd),
             "printf '{\"key\":\"a\",\"v\":1}\\n{\"key\":\"b\",\"v\":2}\\n' | "
             "curl -sS --max-time 10 --cacert %s -H 'Content-Type: application/x-ndjson' "
             "--data-binary @- -w ' %%{http_code} %%{http_version}' "
             "https://localhost:%s/v1/events",
             pem("ca.pem"), strrchr(p.http, ':') + 1);
    char *out = shell(cmd, &status);
    cr_assert_eq(status, 0, "%s", out);
    cr_assert(strstr(out, "\"accepted\":2") && strstr(out, " 202 1.1"), "%s", out);
    free(out);
    cr_assert_eq(sgt_wait_lines(p.out_path, 2, WAIT_MS), 2);

    /* Plain HTTP on the TLS port is not served. */
    snprintf(cmd, sizeof(cmd), "curl -sS --max-time 10 http://%s/healthz", p.http);
    out = shell(cmd, &status);
    cr_assert_neq(status, 0, "%s", out);
    free(out);

    /* ALPN: http/1.1 when offered. */
    snprintf(cmd, sizeof(cmd),
             "printf 'GET /healthz HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n' | "
             "openssl s_client -connect %s -CAfile %s -alpn h2,http/1.1 -ign_eof 2>&1",
             p.http, pem("ca.pem"));
    out = shell(cmd, NULL);
    cr_assert(strstr(out, "ALPN protocol: http/1.1"), "%s", out);
    cr_assert(strstr(out, "{\"status\":\"ok\"}"), "%s", out);
    free(out);

    /* Resumption, TLS 1.3 (a ticket) and 1.2: the client waits for the answer, so it has the
     * session when it leaves. */
    const char *versions[] = {"-tls1_3", "-tls1_2"};
    for (int v = 0; v < 2; v++) {
        for (int round = 0; round < 2; round++) {
            snprintf(
                cmd, sizeof(cmd),
                "printf 'GET /healthz HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n' "
                "| openssl s_client %s -connect %s -CAfile %s -ign_eof %s %s/sess%d 2>&1",
                versions[v], p.http, pem("ca.pem"), round == 0 ? "-sess_out" : "-sess_in", pki, v);
            out = shell(cmd, NULL);
            cr_assert(strstr(out, round == 0 ? "New, TLS" : "Reused, TLS"), "%s round %d: %s",
                      versions[v], round, out);
            free(out);
        }
    }
    cr_assert_eq(https_metric(&p, "streamgate_tls_handshakes_total{transport=\"http\","
                                  "result=\"resumed\"}"),
                 2);
    cr_assert_geq(https_metric(&p, "streamgate_tls_handshakes_total{transport=\"http\","
                                   "result=\"ok\"}"),
                  4);
    cr_assert_eq(https_metric(&p, "streamgate_tls_errors_total{transport=\"http\"}"), 1,
                 "the plain HTTP request is the one error");
    sgt_stop_ok(&p);
}

/* s_client sends the lines of `file` over TLS to the TCP listener with a client certificate
 * (cert NULL: none); returns its output. */
static char *s_client_tcp(const struct sgt_proc *p, const char *cert, const char *key,
                          const char *file, bool refused)
{
    char cmd[2048];

    /* A client that is to be refused waits for the server to close (and reports its alert);
     * an accepted one leaves after its lines, as the server never closes. */
    snprintf(cmd, sizeof(cmd), "openssl s_client -connect %s -CAfile %s %s%s %s%s %s < %s 2>&1",
             p->tcp, pem("ca.pem"), cert ? "-cert " : "", cert ? pem(cert) : "", key ? "-key " : "",
             key ? pem(key) : "", refused ? "-ign_eof" : "-no_ign_eof", file);
    return shell(cmd, NULL);
}

Test(tls, tcp_needs_a_valid_client_certificate)
{
    const char *args[] = {
        "--tcp-tls-client-ca", pem("ca.pem"), "--http-tls-cert", "", "--http-tls-key", "", NULL};
    struct sgt_proc p;
    char lines[600];
    char *out;

    start_tls(&p, args);
    snprintf(lines, sizeof(lines), "%s/good.ndjson", p.dir);
    FILE *f = fopen(lines, "w");
    cr_assert_not_null(f);
    fputs("{\"key\":\"dev\",\"seq\":1}\n{\"key\":\"dev\",\"seq\":2}\n", f);
    fclose(f);

    out = s_client_tcp(&p, "client.pem", "client.key", lines, false);
    cr_assert(strstr(out, "Verification: OK"), "%s", out);
    free(out);
    cr_assert_eq(sgt_wait_lines(p.out_path, 2, WAIT_MS), 2);
    cr_assert_eq(sgt_wait_metric(p.http,
                                 "streamgate_tls_handshakes_total{transport=\"tcp\",result=\"ok\"}",
                                 1, WAIT_MS),
                 1);

    snprintf(lines, sizeof(lines), "%s/bad.ndjson", p.dir);
    f = fopen(lines, "w");
    cr_assert_not_null(f);
    fputs("{\"key\":\"intruder\",\"seq\":1}\n", f);
    fclose(f);
    const char *certs[][3] = {{"expired.pem", "client.key", "certificate expired"},
                              {"stranger.pem", "client.key", "unknown ca"},
                              {NULL, NULL, "certificate required"}};
    for (int i = 0; i < 3; i++) {
        out = s_client_tcp(&p, certs[i][0], certs[i][1], lines, true);
        cr_assert(strstr(out, certs[i][2]), "%s: %s", certs[i][0] ? certs[i][0] : "none", out);
        free(out);
    }
    cr_assert_eq(sgt_wait_metric(
                     p.http, "streamgate_tls_handshakes_total{transport=\"tcp\",result=\"failed\"}",
                     3, WAIT_MS),
                 3);
    cr_assert_eq(sgt_metric(p.http, "streamgate_tls_errors_total{transport=\"tcp\"}"), 3);
    /* The refused connections' lines never reached ingest. */
    char *text = sgt_read_file(p.out_path, NULL);
    cr_assert_null(strstr(text, "intruder"), "%s", text);
    free(text);
    text = sgt_read_file(p.log_path, NULL);
    cr_assert(strstr(text, "client certificate: certificate has expired"), "%s", text);
    cr_assert(strstr(text, "\"client_id\":\"device-42\""), "%s", text);
    free(text);
    sgt_stop_ok(&p);
}

/* Garbage before the handshake and a forged record after it close that connection with a
 * counted error; a connection open meanwhile goes on. */
Test(tls, garbage_closes_only_its_connection)
{
    struct sgt_proc p;
    struct tcli good, bad;
    static const char record[] = "\x17\x03\x03\x00\x20"
                                 "0123456789abcdef0123456789abcdef";

    start_tls(&p, NULL);
    cr_assert_eq(tcli_open(&good, p.http, NULL, NULL), 0);
    tcli_good_event(&good, 0);

    int fd = sgt_connect(p.http);
    sgt_send_str(fd, "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}");
    cr_assert(sgt_wait_closed(fd, WAIT_MS));
    close(fd);
    cr_assert_eq(wait_https_metric(&p, "streamgate_tls_errors_total{transport=\"http\"}", 1), 1);
    tcli_good_event(&good, 1);

    cr_assert_eq(tcli_open(&bad, p.http, NULL, NULL), 0);
    tcli_good_event(&bad, 2);
    sgt_send_all(bad.fd, record, sizeof(record) - 1);
    cr_assert(sgt_wait_closed(bad.fd, WAIT_MS));
    tcli_close(&bad);
    cr_assert_eq(wait_https_metric(&p, "streamgate_tls_errors_total{transport=\"http\"}", 2), 2);
    tcli_good_event(&good, 3);

    /* The TCP listener, the same way. */
    fd = sgt_connect(p.tcp);
    sgt_send_str(fd, "{\"key\":\"plain\"}\n");
    cr_assert(sgt_wait_closed(fd, WAIT_MS));
    close(fd);
    cr_assert_eq(tcli_open(&bad, p.tcp, NULL, NULL), 0);
    tcli_send(&bad, "{\"key\":\"tcp-good\"}\n", 19);
    sgt_send_all(bad.fd, record, sizeof(record) - 1);
    cr_assert(sgt_wait_closed(bad.fd, WAIT_MS));
    tcli_close(&bad);
    cr_assert_eq(wait_https_metric(&p, "streamgate_tls_errors_total{transport=\"tcp\"}", 2), 2);

    tcli_good_event(&good, 4);
    tcli_close(&good);
    cr_assert_eq(sgt_wait_lines(p.out_path, 6, WAIT_MS), 6);
    char *text = sgt_read_file(p.out_path, NULL);
    cr_assert(strstr(text, "tcp-good"), "%s", text);
    cr_assert_null(strstr(text, "plain"), "%s", text);
    free(text);
    sgt_stop_ok(&p);
}

/* --- the bad-input corpus (bad_input.c) over TLS ----------------------------------------- */

/* The in-process client as a link for the corpus's driver; `arg` names the client certificate
 * and key to present (NULL: none). */
static void *tls_link_open(const struct sgt_link_ops *ops, const char *hostport)
{
    const char *const *cert = ops->arg;
    struct tcli *c = malloc(sizeof(*c));

    cr_assert_not_null(c);
    cr_assert_eq(tcli_open(c, hostport, cert ? cert[0] : NULL, cert ? cert[1] : NULL), 0,
                 "%s: handshake failed", ops->name);
    return c;
}

static void tls_link_send(void *link, const void *buf, size_t len)
{
    tcli_send(link, buf, len);
}

/* Reads and drops what comes until the server closes; true when it did within timeout_ms and
 * sent its close_notify first (a close without one reads as a truncation). */
static bool tls_link_closed(void *link, int timeout_ms)
{
    struct tcli *c = link;
    int64_t deadline = sgt_mono_ms() + timeout_ms;
    char junk[4096];

    while (sgt_mono_ms() < deadline) {
        if (SSL_pending(c->ssl) == 0) {
            struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
            if (poll(&pfd, 1, (int)(deadline - sgt_mono_ms())) <= 0)
                return false;
        }
        size_t n = 0;
        if (SSL_read_ex(c->ssl, junk, sizeof(junk), &n) == 1)
            continue;
        int err = SSL_get_error(c->ssl, 0);
        ERR_clear_error();
        if (err != SSL_ERROR_WANT_READ)
            return err == SSL_ERROR_ZERO_RETURN;
    }
    return false;
}

static void tls_link_close(void *link)
{
    tcli_close(link);
    free(link);
}

static const struct sgt_link_ops tls_link = {
    .name = "tls",
    .open = tls_link_open,
    .send = tls_link_send,
    .response = tls_link_response,
    .closed = tls_link_closed,
    .close = tls_link_close,
};

/* Every HTTP case of the corpus gets the same answer as in plain text, on one TLS connection
 * that goes on where plain text keeps it. */
Test(tls, bad_http_input_over_tls)
{
    const char *args[] = {SGT_BAD_INPUT_ARGS, NULL};
    struct sgt_proc p;

    start_tls(&p, args);
    sgt_bad_http_run(&p, &tls_link, https_metric);
    sgt_stop_ok(&p);
}

/* Every bad line of the corpus, counted and logged as in plain text, on a TLS connection that
 * goes on: without a client certificate, then with one required and presented. Metrics over
 * plain HTTP. */
Test(tls, bad_tcp_input_over_tls)
{
    const char *plain_http[] = {
        SGT_BAD_INPUT_ARGS, "--http-tls-cert", "", "--http-tls-key", "", NULL};
    const char *with_ca[] = {SGT_BAD_INPUT_ARGS,    "--http-tls-cert", "",  "--http-tls-key", "",
                             "--tcp-tls-client-ca", pem("ca.pem"),     NULL};
    struct sgt_proc p;

    start_tls(&p, plain_http);
    sgt_bad_tcp_run(&p, &tls_link, sgt_plain_metric);
    sgt_stop_ok(&p);

    static const char *const client_cert[] = {"client.pem", "client.key"};
    struct sgt_link_ops with_cert = tls_link;
    with_cert.name = "tls with a client certificate";
    with_cert.arg = client_cert;
    start_tls(&p, with_ca);
    sgt_bad_tcp_run(&p, &with_cert, sgt_plain_metric);
    cr_assert_eq(sgt_metric(p.http, "streamgate_tls_handshakes_total{transport=\"tcp\","
                                    "result=\"ok\"}"),
                 1);
    sgt_stop_ok(&p);
}

/* A TLS client driven through memory BIOs that writes each byte of its ciphertext (the
 * handshake's, then `data`'s) in a segment of its own. With `until`, reads the answer into
 * `answer` until it holds `until`; without, ends the stream after the last byte and returns once
 * the server closed it. */
static void bytewise(const char *hostport, const char *data, size_t len, char *answer, size_t cap,
                     const char *until)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    char buf[16384];
    bool sent = false, flushed = false;
    size_t got = 0;
    int fd = sgt_connect(hostport);

    cr_assert_eq(SSL_CTX_load_verify_locations(ctx, pem("ca.pem"), NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL *ssl = SSL_new(ctx);
    BIO_set_mem_eof_return(rbio, -1);
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_connect_state(ssl);
    int64_t deadline = sgt_mono_ms() + 30000;
    if (answer)
        answer[0] = '\0';
    while (!(until ? strstr(answer, until) != NULL : flushed)) {
        size_t n = 0;
        cr_assert_lt(sgt_mono_ms(), deadline, "%s", answer ? answer : "");
        if (SSL_is_init_finished(ssl) && !sent) {
            cr_assert_eq(SSL_write(ssl, data, (int)len), (int)len);
            sent = true;
        }
        if (!SSL_is_init_finished(ssl))
            SSL_do_handshake(ssl);
        else if (until && SSL_read_ex(ssl, answer + got, cap - 1 - got, &n) == 1)
            answer[got += n] = '\0';
        ERR_clear_error();
        bool wrote = false;
        while (BIO_read(wbio, buf, 1) == 1) {
            sgt_send_all(fd, buf, 1);
            wrote = true;
        }
        flushed = sent;
        if (wrote || (sent && (n > 0 || !until)))
            continue;
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        cr_assert_gt(r, 0, "connection closed: %s", answer ? answer : "");
        BIO_write(rbio, buf, (int)r);
    }
    /* Unread bytes (session tickets) would make close() a reset, which may drop what the server
     * has not read yet: end the stream, and let the server close once it read to its end. */
    if (!until) {
        cr_assert_eq(shutdown(fd, SHUT_WR), 0);
        cr_assert(sgt_wait_closed(fd, WAIT_MS), "the server kept the connection after its end");
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
}

/* The handshake and then a request or a line, one byte of ciphertext per segment, on each
 * listener: the server puts the records together and the event arrives whole. */
Test(tls, slow_client_one_byte_at_a_time)
{
    static const char req[] = "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: "
                              "application/json\r\nContent-Length: 20\r\n\r\n"
                              "{\"key\":\"slow\",\"v\":1}";
    static const char line[] = "{\"key\":\"slow-tcp\",\"v\":2}\n";
    struct sgt_proc p;
    char answer[4096];

    start_tls(&p, NULL);
    bytewise(p.http, req, sizeof(req) - 1, answer, sizeof(answer), "\"accepted\":1");
    cr_assert(strstr(answer, "HTTP/1.1 202"), "%s", answer);
    cr_assert_eq(sgt_wait_lines(p.out_path, 1, WAIT_MS), 1);
    bytewise(p.tcp, line, sizeof(line) - 1, NULL, 0, NULL);
    cr_assert_eq(sgt_wait_lines(p.out_path, 2, WAIT_MS), 2);
    char *out = sgt_read_file(p.out_path, NULL);
    cr_assert(strstr(out, "{\"key\":\"slow\",\"v\":1}\n{\"key\":\"slow-tcp\",\"v\":2}\n"), "%s",
              out);
    free(out);
    sgt_stop_ok(&p);
}

Test(tls, handshake_timeout)
{
    const char *args[] = {"--tcp-tls-handshake-timeout", "200ms", "--http-tls-handshake-timeout",
                          "300ms", NULL};
    struct sgt_proc p;

    start_tls(&p, args);
    /* The start of a record, never finished, on each listener. */
    int fd = sgt_connect(p.tcp);
    sgt_send_all(fd, "\x16\x03\x01", 3);
    cr_assert(sgt_wait_closed(fd, WAIT_MS));
    close(fd);
    fd = sgt_connect(p.http);
    sgt_send_all(fd, "\x16\x03\x01", 3);
    cr_assert(sgt_wait_closed(fd, WAIT_MS));
    close(fd);
    const char *t[] = {"tcp", "http"};
    for (int i = 0; i < 2; i++) {
        char series[160];
        snprintf(series, sizeof(series),
                 "streamgate_limit_hits_total{limit=\"%s_tls_handshake_timeout\"}", t[i]);
        cr_assert_eq(wait_https_metric(&p, series, 1), 1, "%s", series);
        snprintf(series, sizeof(series),
                 "streamgate_tls_handshakes_total{transport=\"%s\",result=\"timeout\"}", t[i]);
        cr_assert_eq(https_metric(&p, series), 1, "%s", series);
    }
    /* A client that completes its handshake in time is served. */
    struct tcli c;
    cr_assert_eq(tcli_open(&c, p.http, NULL, NULL), 0);
    tcli_good_event(&c, 0);
    tcli_close(&c);
    sgt_stop_ok(&p);
}

/* --- slow clients beside a good one ------------------------------------------------------- */

/* A client that stops mid-handshake: it sends its ClientHello, reads the server's answer to it,
 * and never sends the rest. Returns the socket. */
static int stall_handshake(const char *hostport)
{
    int fd = sgt_connect(hostport);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    char buf[16384];
    int n;

    cr_assert_not_null(ctx);
    SSL *ssl = SSL_new(ctx);
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_connect_state(ssl);
    cr_assert_leq(SSL_do_handshake(ssl), 0, "a handshake with no server finished");
    while ((n = BIO_read(wbio, buf, sizeof(buf))) > 0)
        sgt_send_all(fd, buf, (size_t)n);
    cr_assert_gt(recv(fd, buf, sizeof(buf), 0), 0, "no ServerHello");
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return fd;
}

/* True when `fd` has something to read now. */
static bool readable(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};

    return poll(&pfd, 1, 0) == 1;
}

/* Whether the server closed `fd`, without waiting; what it sent first is dropped. */
static bool closed_now(int fd)
{
    char junk[4096];

    while (readable(fd)) {
        ssize_t n = recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
        if (n <= 0)
            return n == 0 || (errno != EAGAIN && errno != EINTR);
    }
    return false;
}

/* Whether the server sent `c` application data: not only a record (TLS 1.3 session tickets
 * come unasked after the handshake), without waiting. */
static bool tls_readable(struct tcli *c)
{
    char byte;
    size_t n = 0;

    if (SSL_pending(c->ssl) > 0)
        return true;
    if (!readable(c->fd))
        return false;
    int flags = fcntl(c->fd, F_GETFL);
    cr_assert_eq(fcntl(c->fd, F_SETFL, flags | O_NONBLOCK), 0);
    int ok = SSL_peek_ex(c->ssl, &byte, 1, &n);
    int err = SSL_get_error(c->ssl, ok);
    ERR_clear_error();
    cr_assert_eq(fcntl(c->fd, F_SETFL, flags), 0);
    return ok == 1 || err != SSL_ERROR_WANT_READ;
}

#define SLOW_PACE_MS 100 /* the slow clients send a byte this often */

/* Reads the answer the server gave `c` when it cut it: `status` (0: none, the connection is only
 * closed), then the close. */
static void expect_cut(struct tcli *c, const char *who, int status)
{
    if (status) {
        struct sgt_response r;
        cr_assert_eq(tls_link_response(c, &r), 0, "%s: no answer", who);
        cr_assert_eq(r.status, status, "%s: %d %s", who, r.status, r.body);
        cr_assert(strstr(r.body, "{\"error\":\""), "%s: %s", who, r.body);
        sgt_response_free(&r);
    }
    cr_assert(tls_link_closed(c, WAIT_MS), "%s: kept, or closed without a close_notify", who);
}

/* Once the server sends `c` something: not before `after_ms` since `start`, it was cut with
 * `status` (0: only closed). Sets *cut then. */
static void watch_cut(struct tcli *c, bool *cut, int64_t start, int64_t after_ms, const char *who,
                      int status)
{
    if (*cut || !tls_readable(c))
        return;
    cr_assert_geq(sgt_mono_ms() - start, after_ms, "%s: cut before its timeout", who);
    expect_cut(c, who, status);
    *cut = true;
}

/* The same for a client stalled in its handshake, which gets no TLS close. */
static void watch_stalled(int fd, bool *cut, int64_t start, int64_t after_ms)
{
    if (*cut || !closed_now(fd))
        return;
    cr_assert_geq(sgt_mono_ms() - start, after_ms, "closed before the handshake timeout");
    *cut = true;
}

/* Slow clients over TLS beside a good one whose requests are answered all along: slowloris
 * connections (handshakes done, then a header byte per SLOW_PACE_MS) get their 408 at
 * http.header_timeout, a body that stops short its 408 at http.body_timeout, an idle keep-alive
 * connection is closed at http.idle_timeout and a client that stops mid-handshake at
 * http.tls_handshake_timeout; each is counted, none before its time. */
Test(tls, slow_https_clients_are_cut_beside_a_good_one)
{
    const char *args[] = {"--http-header-timeout",
                          "1s",
                          "--http-body-timeout",
                          "1s",
                          "--http-tls-handshake-timeout",
                          "1s",
                          "--http-idle-timeout",
                          "2s",
                          NULL};
    static const char req[] = "POST /v1/events HTTP/1.1\r\nHost: slow\r\nContent-Type: "
                              "application/json\r\nContent-Length: 20\r\n\r\n";
    enum { SLOW = 5 };
    struct sgt_proc p;
    struct tcli good, slow[SLOW], short_body, idle;
    bool cut[SLOW] = {false}, stalled_closed = false, short_cut = false, idle_closed = false;
    int ncut = 0, seq = 0;

    signal(SIGPIPE, SIG_IGN);
    start_tls(&p, args);
    cr_assert_eq(tcli_open(&good, p.http, NULL, NULL), 0);
    tcli_good_event(&good, seq++);
    for (int i = 0; i < SLOW; i++)
        cr_assert_eq(tcli_open(&slow[i], p.http, NULL, NULL), 0);
    cr_assert_eq(tcli_open(&short_body, p.http, NULL, NULL), 0);
    cr_assert_eq(tcli_open(&idle, p.http, NULL, NULL), 0);
    int64_t start = sgt_mono_ms();
    tcli_good_event(&idle, seq++);
    tcli_send(&short_body, req, sizeof(req) - 1);
    tcli_send(&short_body, "{\"key\":", 7);
    int stalled = stall_handshake(p.http);
    for (size_t pos = 0; ncut < SLOW || !stalled_closed || !short_cut || !idle_closed; pos++) {
        cr_assert_lt(sgt_mono_ms() - start, 30000, "%d of %d slowloris clients cut", ncut, SLOW);
        for (int i = 0; i < SLOW; i++) {
            if (cut[i])
                continue;
            watch_cut(&slow[i], &cut[i], start, 1000, "slowloris", 408);
            if (cut[i]) {
                tcli_close(&slow[i]);
                ncut++;
                continue;
            }
            cr_assert_lt(pos, sizeof(req) - 1, "slow client %d sent its headers uncut", i);
            tcli_send(&slow[i], req + pos, 1);
        }
        watch_cut(&short_body, &short_cut, start, 1000, "short body", 408);
        watch_cut(&idle, &idle_closed, start, 2000, "idle", 0);
        watch_stalled(stalled, &stalled_closed, start, 1000);
        tcli_good_event(&good, seq++);
        sgt_sleep_ms(SLOW_PACE_MS);
    }
    close(stalled);
    tcli_close(&short_body);
    tcli_close(&idle);
    tcli_good_event(&good, seq++);
    tcli_close(&good);
    cr_assert_eq(sgt_wait_lines(p.out_path, (size_t)seq, WAIT_MS), (size_t)seq);
    static const struct {
        const char *series;
        double want;
    } counted[] = {
        {"streamgate_limit_hits_total{limit=\"http_header_timeout\"}", SLOW},
        {"streamgate_limit_hits_total{limit=\"http_body_timeout\"}", 1},
        {"streamgate_limit_hits_total{limit=\"http_idle_timeout\"}", 1},
        {"streamgate_limit_hits_total{limit=\"http_tls_handshake_timeout\"}", 1},
        {"streamgate_tls_handshakes_total{transport=\"http\",result=\"timeout\"}", 1},
    };
    for (size_t i = 0; i < sizeof(counted) / sizeof(counted[0]); i++)
        cr_assert_eq(https_metric(&p, counted[i].series), counted[i].want, "%s", counted[i].series);
    sgt_stop_ok(&p);
}

/* A client that sends requests and never reads an answer. */
struct deaf {
    struct tcli c;
    long requests;    /* sent before the server cut it */
    int64_t ended_ms; /* when a write failed */
    atomic_bool done;
};

static void *deaf_client(void *arg)
{
    struct deaf *d = arg;
    static const char body[] = "{\"key\":\"deaf\",\"v\":1}";
    char req[256];
    int len = snprintf(req, sizeof(req),
                       "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                       "Content-Length: %zu\r\n\r\n%s",
                       sizeof(body) - 1, body);
    size_t n;

    while (SSL_write_ex(d->c.ssl, req, (size_t)len, &n) == 1)
        d->requests++;
    d->ended_ms = sgt_mono_ms();
    atomic_store(&d->done, true);
    return NULL;
}

#define CONN_BUDGET "streamgate_budget_use_bytes{use=\"connections\"}"

/* A client over TLS that sends requests and never reads their answers: once its answers back up
 * the server stops reading it, and closes it at http.idle_timeout (counted there), holding
 * nothing for it afterwards; a good client is answered meanwhile. Over HTTPS the scrape's own
 * connection holds its TLS state in the budget: that, measured on the idle server, is the
 * floor. */
Test(tls, a_client_that_never_reads_its_answers_is_cut)
{
    const char *args[] = {"--http-idle-timeout", "2s", NULL};
    struct sgt_proc p;
    struct tcli good;
    struct deaf deaf = {.requests = 0};
    pthread_t t;
    int seq = 0;

    signal(SIGPIPE, SIG_IGN);
    atomic_init(&deaf.done, false);
    start_tls(&p, args);
    double idle_budget = https_metric(&p, CONN_BUDGET);
    cr_assert_gt(idle_budget, 0);
    cr_assert_eq(tcli_open(&good, p.http, NULL, NULL), 0);
    cr_assert_eq(tcli_open(&deaf.c, p.http, NULL, NULL), 0);
    int64_t start = sgt_mono_ms();
    cr_assert_eq(pthread_create(&t, NULL, deaf_client, &deaf), 0);
    while (!atomic_load(&deaf.done)) {
        cr_assert_lt(sgt_mono_ms() - start, 30000, "the deaf client was never cut");
        tcli_good_event(&good, seq++);
        sgt_sleep_ms(SLOW_PACE_MS);
    }
    pthread_join(t, NULL);
    cr_log_info("the deaf client sent %ld requests in %lld ms", deaf.requests,
                (long long)(deaf.ended_ms - start));
    cr_assert_gt(deaf.requests, 100, "cut before its answers backed up");
    cr_assert_geq(deaf.ended_ms - start, 2000, "cut before the idle timeout");
    tcli_close(&deaf.c);
    tcli_good_event(&good, seq++);
    tcli_close(&good);
    cr_assert_eq(https_metric(&p, "streamgate_limit_hits_total{limit=\"http_idle_timeout\"}"), 1);
    /* Nothing held but what the scrape's own TLS connection holds, as on the idle server. */
    cr_assert_eq(wait_https_metric(&p, "streamgate_connections{transport=\"http\"}", 1), 1);
    double held = https_metric(&p, CONN_BUDGET);
    cr_assert(held <= idle_budget + 1024, "%g bytes held, %g idle", held, idle_budget);
    /* The good events all arrived, beside what was read of the deaf client's. */
    size_t good_lines = 0, deaf_lines = 0;
    for (int64_t end = sgt_mono_ms() + WAIT_MS; good_lines < (size_t)seq && sgt_mono_ms() < end;
         sgt_sleep_ms(20)) {
        char *out = sgt_read_file(p.out_path, NULL);
        good_lines = deaf_lines = 0;
        for (const char *at = out; at && (at = strstr(at, "{\"key\":\"")); at++) {
            good_lines += strncmp(at + 8, "good\"", 5) == 0;
            deaf_lines += strncmp(at + 8, "deaf\"", 5) == 0;
        }
        free(out);
    }
    cr_assert_eq(good_lines, (size_t)seq);
    cr_assert(deaf_lines > 0 && deaf_lines <= (size_t)deaf.requests, "%zu of %ld", deaf_lines,
              deaf.requests);
    sgt_stop_ok(&p);
}

/* Idle TLS connections hold OpenSSL's state and nothing more: once the handshake is done and
 * they have been quiet for a second, each counts about SG_TLS_IDLE_HELD (16 KiB) in the
 * budget, no record buffers (OpenSSL gives them back) and no buffers of its own. Each used to
 * count 40 KiB and more, so a few thousand devices paused ingest. The scrape's own HTTPS
 * connection is the floor, measured first. */
Test(tls, idle_tls_connections_hold_only_their_state)
{
    enum { EACH = 150, PER_CONN = 20 * 1024 };
    static struct tcli http[EACH], tcp[EACH];
    const char *args[] = {"--http-idle-timeout", "10m", "--tcp-idle-timeout", "10m", NULL};
    struct sgt_proc p;
    char line[96];

    start_tls(&p, args);
    double floor = https_metric(&p, CONN_BUDGET);
    for (int i = 0; i < EACH; i++) {
        cr_assert_eq(tcli_open(&http[i], p.http, NULL, NULL), 0);
        tcli_good_event(&http[i], i);
        cr_assert_eq(tcli_open(&tcp[i], p.tcp, NULL, NULL), 0);
        int n = snprintf(line, sizeof(line), "{\"key\":\"idle-tls\",\"seq\":%d}\n", i);
        tcli_send(&tcp[i], line, (size_t)n);
    }
    cr_assert_eq(sgt_wait_lines(p.out_path, 2 * EACH, WAIT_MS), 2 * EACH);
    /* Until the quiet connections have all given their buffers back (a second after their last
     * read or write): the same reading twice, longer than that apart. */
    double held = https_metric(&p, CONN_BUDGET) - floor, before = -1;
    for (int64_t end = sgt_mono_ms() + WAIT_MS; held != before && sgt_mono_ms() < end;) {
        sgt_sleep_ms(1200);
        before = held;
        held = https_metric(&p, CONN_BUDGET) - floor;
    }
    double limit = https_metric(&p, "streamgate_budget_limit_bytes");
    cr_log_info("%d idle TLS connections hold %.0f bytes of the budget, %.0f each (%.2f%% of "
                "limits.memory)",
                2 * EACH, held, held / (2 * EACH), 100.0 * held / limit);
    cr_assert_lt(held, 2.0 * EACH * PER_CONN, "%.0f bytes each", held / (2 * EACH));
    cr_assert_eq(https_metric(&p, "streamgate_ingest_paused"), 0);
    for (int i = 0; i < EACH; i++) {
        tcli_close(&http[i]);
        tcli_close(&tcp[i]);
    }
    sgt_stop_ok(&p);
}

#define TCP_BYTES "streamgate_bytes_received_total{transport=\"tcp\"}"

/* The TCP listener over TLS, beside a good client sending a line every SLOW_PACE_MS: a line sent
 * one byte per record (each read by the server before the next is sent) arrives whole; an idle
 * client (handshake done, nothing sent) is closed at tcp.idle_timeout, with a close_notify, and
 * one that stops mid-handshake at tcp.tls_handshake_timeout, each counted. Metrics over plain
 * HTTP. */
Test(tls, slow_tcp_clients_over_tls)
{
    const char *args[] = {"--http-tls-cert",
                          "",
                          "--http-tls-key",
                          "",
                          "--tcp-tls-handshake-timeout",
                          "1s",
                          "--tcp-idle-timeout",
                          "2s",
                          NULL};
    static const char ev[] = "{\"key\":\"slow-tls\",\"seq\":1,\"value\":42}\n";
    struct sgt_proc p;
    struct tcli good, idle, partial;
    bool idle_closed = false, stalled_closed = false;
    int seq = 0;
    double sent = 0;

    signal(SIGPIPE, SIG_IGN);
    start_tls(&p, args);
    cr_assert_eq(tcli_open(&good, p.tcp, NULL, NULL), 0);
    cr_assert_eq(tcli_open(&partial, p.tcp, NULL, NULL), 0);
    int64_t start = sgt_mono_ms();
    cr_assert_eq(tcli_open(&idle, p.tcp, NULL, NULL), 0);
    int stalled = stall_handshake(p.tcp);
    for (size_t pos = 0; pos < sizeof(ev) - 1 || !idle_closed || !stalled_closed; pos++) {
        cr_assert_lt(sgt_mono_ms() - start, 30000);
        char line[64];
        int n = snprintf(line, sizeof(line), "{\"key\":\"good\",\"seq\":%d}\n", seq++);
        tcli_send(&good, line, (size_t)n);
        sent += n;
        if (pos < sizeof(ev) - 1) {
            tcli_send(&partial, ev + pos, 1);
            sent += 1;
        }
        /* Read by the server before the next byte goes. */
        cr_assert_eq(sgt_wait_metric(p.http, TCP_BYTES, sent, WAIT_MS), sent);
        watch_cut(&idle, &idle_closed, start, 2000, "idle", 0);
        watch_stalled(stalled, &stalled_closed, start, 1000);
        sgt_sleep_ms(SLOW_PACE_MS);
    }
    cr_assert_eq(sgt_wait_lines(p.out_path, (size_t)seq + 1, WAIT_MS), (size_t)seq + 1);
    char *out = sgt_read_file(p.out_path, NULL);
    cr_assert(strstr(out, "{\"key\":\"slow-tls\",\"seq\":1,\"value\":42}\n"), "%s", out);
    free(out);
    /* The slow-but-steady client was not cut: it ends with a last line without a newline and
     * its close_notify, which the server answers with its own; the line counts. */
    tcli_send(&partial, ev, sizeof(ev) - 2);
    cr_assert_eq(SSL_shutdown(partial.ssl), 0, "close_notify not sent");
    cr_assert(tls_link_closed(&partial, WAIT_MS), "no close_notify back");
    cr_assert_eq(sgt_wait_lines(p.out_path, (size_t)seq + 2, WAIT_MS), (size_t)seq + 2);
    cr_assert_eq(sgt_metric(p.http, "streamgate_limit_hits_total{limit=\"tcp_idle_timeout\"}"), 1);
    cr_assert_eq(
        sgt_metric(p.http, "streamgate_limit_hits_total{limit=\"tcp_tls_handshake_timeout\"}"), 1);
    cr_assert_eq(
        sgt_metric(p.http, "streamgate_tls_handshakes_total{transport=\"tcp\",result=\"timeout\"}"),
        1);
    close(stalled);
    tcli_close(&idle);
    tcli_close(&partial);
    tcli_close(&good);
    sgt_stop_ok(&p);
}

/* The client certificate's identity reaches Kafka as the client-id header, from both
 * listeners: the subject's CN, or without one the first SAN. */
Test(tls, client_id_header_in_kafka)
{
    struct sgt_mock m;
    struct sgt_proc p;
    struct sgt_recs rs;
    char cmd[2048], lines[600], hdr[128];
    int status;

    sgt_mock_start(&m, "3", "events,aggregates");
    const char *args[] = {"--kafka-brokers",
                          m.bootstrap,
                          "--kafka-partitions",
                          "3",
                          "--kafka-client-id-header",
                          "true",
                          "--tcp-tls-client-ca",
                          pem("ca.pem"),
                          "--http-tls-client-ca",
                          pem("ca.pem"),
                          NULL};
    start_tls(&p, args);

    snprintf(lines, sizeof(lines), "%s/dev.ndjson", p.dir);
    FILE *f = fopen(lines, "w");
    cr_assert_not_null(f);
    fputs("{\"key\":\"over-tcp\",\"v\":1}\n", f);
    fclose(f);
    char *out = s_client_tcp(&p, "client.pem", "client.key", lines, false);
    free(out);

    snprintf(cmd, sizeof(cmd),
             "curl -sS --max-time 10 --cacert %s --cert %s --key %s -H 'Content-Type: "
             "application/json' -d '{\"key\":\"over-http\",\"v\":2}' https://%s/v1/events",
             pem("ca.pem"), pem("san.pem"), pem("san.key"), p.http);
    out = shell(cmd, &status);
    cr_assert(status == 0 && strstr(out, "\"accepted\":1"), "%s", out);
    free(out);
    /* Without a certificate: refused in the handshake. */
    snprintf(cmd, sizeof(cmd),
             "curl -sS --max-time 10 --cacert %s -H 'Content-Type: application/json' -d "
             "'{\"key\":\"anonymous\",\"v\":3}' https://%s/v1/events 2>&1",
             pem("ca.pem"), p.http);
    out = shell(cmd, &status);
    cr_assert(status != 0 && !strstr(out, "accepted"), "%s", out);
    free(out);

    sgt_kcat_read(m.bootstrap, "events", 2, WAIT_MS, &rs);
    cr_assert_eq(rs.n, 2, "kcat read %zu records", rs.n);
    int seen = 0;
    for (size_t i = 0; i < rs.n; i++) {
        bool has = sgt_kafka_header(rs.v[i].headers, "client-id", hdr, sizeof(hdr));
        if (strcmp(rs.v[i].key, "over-tcp") == 0) {
            cr_assert(has && strcmp(hdr, "device-42") == 0, "%s", rs.v[i].headers);
            seen |= 1;
        } else if (strcmp(rs.v[i].key, "over-http") == 0) {
            cr_assert(has && strcmp(hdr, "sensor-7.example") == 0, "%s", rs.v[i].headers);
            seen |= 2;
        }
    }
    cr_assert_eq(seen, 3);
    sgt_recs_free(&rs);
    sgt_stop_ok(&p);
    sgt_mock_stop(&m);
}

/* --check-config names what is wrong with the TLS files, and exits non-zero. */
Test(tls, check_config_errors)
{
    const struct {
        const char *args[8];
        const char *want;
    } cases[] = {
        {{"--http-tls-cert", pem("server.pem"), NULL}, "set both or neither"},
        {{"--http-tls-cert", pem("server.pem"), "--http-tls-key", pem("client.key"), NULL},
         "does not match the certificate"},
        {{"--tcp-tls-cert", pem("server.pem"), "--tcp-tls-key", pem("missing.key"), NULL},
         "tcp.tls_key: cannot read"},
        {{"--tcp-tls-cert", pem("server.pem"), "--tcp-tls-key", pem("server.key"),
          "--tcp-tls-client-ca", pem("server.key"), NULL},
         "holds no PEM certificate"},
        {{"--tcp-tls-client-ca", pem("ca.pem"), NULL}, "needs tcp.tls_cert"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[10] = {"--check-config"};
        char *err = NULL;
        for (int a = 0; cases[i].args[a]; a++)
            args[a + 1] = cases[i].args[a];
        int status = sgt_run(args, NULL, NULL, &err);
        cr_assert_neq(status, 0, "case %zu", i);
        cr_assert(err && strstr(err, cases[i].want), "case %zu: %s", i, err ? err : "");
        free(err);
    }
    const char *ok[] = {"--check-config",      "--http-tls-cert", pem("server.pem"),
                        "--http-tls-key",      pem("server.key"), "--tcp-tls-cert",
                        pem("server.pem"),     "--tcp-tls-key",   pem("server.key"),
                        "--tcp-tls-client-ca", pem("ca.pem"),     NULL};
    cr_assert_eq(sgt_run(ok, NULL, NULL, NULL), 0);
}

/* Copies `from` over `to` in the certificate directory, through a rename: the gateway never
 * reads a half-written file. */
static void replace_file(const char *from, const char *to)
{
    char cmd[1200];

    snprintf(cmd, sizeof(cmd), "cp %s %s.tmp && mv %s.tmp %s", pem(from), pem(to), pem(to),
             pem(to));
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* The subject and serial of the certificate a new connection to `hostport` is served (as
 * `openssl x509 -subject -serial` prints them), malloc'd. */
static char *served_cert(const char *hostport)
{
    char cmd[1024];

    snprintf(cmd, sizeof(cmd),
             "openssl s_client -connect %s -servername localhost </dev/null 2>/dev/null | "
             "openssl x509 -noout -subject -serial",
             hostport);
    return shell(cmd, NULL);
}

/* The subject and serial of a certificate file of the directory, malloc'd. */
static char *file_cert(const char *name)
{
    char cmd[1024];

    snprintf(cmd, sizeof(cmd), "openssl x509 -noout -subject -serial -in %s", pem(name));
    return shell(cmd, NULL);
}

#define RELOADS_APPLIED "streamgate_config_reloads_total{result=\"applied\"}"
#define RELOADS_INVALID "streamgate_config_reloads_total{result=\"invalid\"}"

/* A certificate rotated in place: the files replaced and SIGHUP sent, new connections on both
 * listeners get the new certificate, a connection opened before keeps working, in the same
 * process. Files that do not load keep the certificate in use. */
Test(tls, a_certificate_rotated_on_sighup)
{
    replace_file("server.pem", "live.pem");
    replace_file("server.key", "live.key");
    const char *args[] = {"--http-tls-cert", pem("live.pem"),  "--http-tls-key",
                          pem("live.key"),   "--tcp-tls-cert", pem("live.pem"),
                          "--tcp-tls-key",   pem("live.key"),  NULL};
    struct sgt_proc p;
    struct tcli old;
    char *first = file_cert("server.pem"), *second = file_cert("server2.pem"), *seen;

    cr_assert(strstr(first, "CN = localhost\n") || strstr(first, "CN=localhost\n"), "%s", first);
    cr_assert(strstr(second, "localhost-reloaded"), "%s", second);
    sgt_start(&p, args, NULL);
    pid_t pid = p.pid;
    seen = served_cert(p.http);
    cr_assert_str_eq(seen, first);
    free(seen);
    cr_assert_eq(tcli_open(&old, p.http, NULL, NULL), 0, "handshake failed");
    tcli_good_event(&old, 1);

    /* Rotated: the new certificate (from the other CA) and its key. */
    replace_file("server2.pem", "live.pem");
    replace_file("server2.key", "live.key");
    cr_assert_eq(kill(pid, SIGHUP), 0);
    cr_assert_eq(wait_https_metric_ca(&p, RELOADS_APPLIED, 1, "both-ca.pem"), 1);
    seen = served_cert(p.http);
    cr_assert_str_eq(seen, second, "the HTTP listener still serves the old certificate");
    free(seen);
    seen = served_cert(p.tcp);
    cr_assert_str_eq(seen, second, "the TCP listener still serves the old certificate");
    free(seen);
    /* The connection from before keeps its session. */
    tcli_good_event(&old, 2);
    tcli_close(&old);
    cr_assert_eq(p.pid, pid);
    cr_assert_eq(kill(pid, 0), 0, "the process is gone");

    /* A key that does not match the certificate: the whole reload is refused and the rotated
     * certificate stays in use. */
    replace_file("client.key", "live.key");
    cr_assert_eq(kill(pid, SIGHUP), 0);
    cr_assert_eq(wait_https_metric_ca(&p, RELOADS_INVALID, 1, "both-ca.pem"), 1);
    cr_assert_eq(https_metric_ca(&p, RELOADS_APPLIED, "both-ca.pem"), 1);
    seen = served_cert(p.http);
    cr_assert_str_eq(seen, second);
    free(seen);

    char *log = sgt_read_file(p.log_path, NULL);
    cr_assert(strstr(log, "\"msg\":\"tls certificate reloaded\",\"transport\":\"http\""), "%s",
              log);
    cr_assert(strstr(log, "\"msg\":\"tls certificate reloaded\",\"transport\":\"tcp\""), "%s", log);
    cr_assert(strstr(log, "does not match"), "%s", log);
    free(log);
    free(first);
    free(second);
    sgt_stop_ok(&p);
}
