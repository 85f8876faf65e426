/* The TLS engine (src/ingest/tls.c) against an OpenSSL client, both driven from memory: the
 * client's ciphertext is fed to the engine and the engine's output to the client, until neither
 * has anything more to say. Certificates are made at test time by tests/tls/gen_certs.sh. */
#include <criterion/criterion.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "../../src/ingest/http_internal.h"
#include "../../src/ingest/tls.h"
#include "streamgate/config.h"
#include "streamgate/http_server.h"
#include "streamgate/ingest.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "streamgate/tcp_server.h"

static char dir[] = "/tmp/sg-tls-unit-XXXXXX";

static const char *path(const char *name)
{
    static char buf[16][512];
    static int next;
    char *p = buf[next++ % 16];

    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

static void make_certs(void)
{
    char cmd[1024];

    cr_assert_not_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "sh %s %s", SG_TLS_GEN_CERTS, dir);
    cr_assert_eq(system(cmd), 0, "gen_certs.sh failed");
}

static void remove_certs(void)
{
    char cmd[1024];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(tls, .init = make_certs, .fini = remove_certs);

/* An OpenSSL client over memory BIOs. */
struct client {
    struct sg_buf got;
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rbio, *wbio;
};

static void client_init(struct client *c, const char *cert, const char *key, const char *alpn)
{
    sg_buf_init(&c->got, 0);
    c->ctx = SSL_CTX_new(TLS_client_method());
    cr_assert_not_null(c->ctx);
    cr_assert_eq(SSL_CTX_load_verify_locations(c->ctx, path("ca.pem"), NULL), 1);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (cert) {
        cr_assert_eq(SSL_CTX_use_certificate_file(c->ctx, path(cert), SSL_FILETYPE_PEM), 1);
        cr_assert_eq(SSL_CTX_use_PrivateKey_file(c->ctx, path(key), SSL_FILETYPE_PEM), 1);
    }
    c->ssl = SSL_new(c->ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c->rbio, -1);
    BIO_set_mem_eof_return(c->wbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_connect_state(c->ssl);
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    if (alpn) {
        unsigned char wire[64];
        size_t n = strlen(alpn);
        wire[0] = (unsigned char)n;
        memcpy(wire + 1, alpn, n);
        cr_assert_eq(SSL_set_alpn_protos(c->ssl, wire, (unsigned)n + 1), 0);
    }
}

static void client_free(struct client *c)
{
    sg_buf_free(&c->got);
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
}

/* Moves bytes both ways until neither side produces more; plaintext the server decrypts is
 * appended to `got`, and what the client decrypts to c->got. Returns the server's last
 * sg_tls_read result that was not > 0. */
static ssize_t pump(struct client *c, struct sg_tls *tls, struct sg_buf *got)
{
    ssize_t last = 0;
    struct sg_buf out;

    sg_buf_init(&out, 0);
    for (int round = 0; round < 50; round++) {
        char buf[16384];
        bool moved = false;
        size_t n;

        SSL_do_handshake(c->ssl);
        /* The client reads what it can (session tickets after the handshake). */
        while (SSL_is_init_finished(c->ssl) && SSL_read_ex(c->ssl, buf, sizeof(buf), &n) == 1)
            cr_assert_eq(sg_buf_append(&c->got, buf, n), 0);
        ERR_clear_error();
        int pending = BIO_read(c->wbio, buf, sizeof(buf));
        if (pending > 0) {
            cr_assert_eq(sg_tls_feed(tls, buf, (size_t)pending), 0);
            moved = true;
        }
        for (;;) {
            last = sg_tls_read(tls, buf, sizeof(buf));
            if (last <= 0)
                break;
            if (got)
                cr_assert_eq(sg_buf_append(got, buf, (size_t)last), 0);
        }
        sg_buf_reset(&out);
        cr_assert_eq(sg_tls_out(tls, &out), 0);
        if (out.len > 0) {
            cr_assert_eq(BIO_write(c->rbio, out.data, (int)out.len), (int)out.len);
            moved = true;
        }
        if (!moved)
            break;
    }
    sg_buf_free(&out);
    return last;
}

static struct sg_tls_ctx *server_ctx(const char *client_ca, const char *alpn)
{
    struct sg_tls_ctx_opts opts = {.cert = path("server.pem"),
                                   .key = path("server.key"),
                                   .client_ca = client_ca ? path(client_ca) : NULL,
                                   .alpn = alpn};
    struct sg_tls_ctx *ctx = NULL;
    char err[256] = "";

    cr_assert_eq(sg_tls_ctx_create(&opts, &ctx, err, sizeof(err)), 0, "%s", err);
    return ctx;
}

Test(tls, handshake_and_data_both_ways)
{
    struct sg_tls_ctx *ctx = server_ctx(NULL, "http/1.1");
    struct sg_tls *tls;
    struct client c;
    struct sg_buf got;

    sg_buf_init(&got, 0);
    cr_assert_eq(sg_tls_create(ctx, &tls), 0);
    client_init(&c, NULL, NULL, "http/1.1");
    pump(&c, tls, NULL);
    cr_assert(sg_tls_handshake_done(tls));
    cr_assert_str_eq(sg_tls_alpn(tls), "http/1.1");
    cr_assert_str_eq(sg_tls_client_id(tls), "");
    cr_assert_not(sg_tls_resumed(tls));
    cr_assert_geq(sg_tls_held(tls), (size_t)SG_TLS_IDLE_HELD);

    cr_assert_eq(SSL_write(c.ssl, "hello server", 12), 12);
    cr_assert_eq(pump(&c, tls, &got), 0);
    cr_assert_eq(got.len, 12);
    cr_assert_eq(memcmp(got.data, "hello server", 12), 0);

    cr_assert_eq(sg_tls_write(tls, "hello client", 12), 0);
    cr_assert(sg_tls_has_out(tls));
    pump(&c, tls, NULL);
    cr_assert_eq(c.got.len, 12);
    cr_assert_eq(memcmp(c.got.data, "hello client", 12), 0);

    /* The client's close_notify ends the session cleanly. */
    SSL_shutdown(c.ssl);
    cr_assert_eq(pump(&c, tls, NULL), -EPIPE);

    sg_buf_free(&got);
    client_free(&c);
    sg_tls_destroy(tls);
    sg_tls_ctx_destroy(ctx);
}

Test(tls, alpn_is_optional_and_tls_1_1_is_refused)
{
    struct sg_tls_ctx *ctx = server_ctx(NULL, "http/1.1");
    struct sg_tls *tls;
    struct client c;

    cr_assert_eq(sg_tls_create(ctx, &tls), 0);
    client_init(&c, NULL, NULL, NULL);
    pump(&c, tls, NULL);
    cr_assert(sg_tls_handshake_done(tls));
    cr_assert_str_eq(sg_tls_alpn(tls), "");
    client_free(&c);
    sg_tls_destroy(tls);

    cr_assert_eq(sg_tls_create(ctx, &tls), 0);
    client_init(&c, NULL, NULL, NULL);
    SSL_set_min_proto_version(c.ssl, TLS1_VERSION);
    SSL_set_max_proto_version(c.ssl, TLS1_1_VERSION);
    SSL_set_security_level(c.ssl, 0);
    cr_assert_eq(pump(&c, tls, NULL), -EPROTO);
    cr_assert_not(sg_tls_handshake_done(tls));
    cr_assert(strstr(sg_tls_reason(tls), "protocol"), "reason: %s", sg_tls_reason(tls));
    client_free(&c);
    sg_tls_destroy(tls);
    sg_tls_ctx_destroy(ctx);
}

/* With a client CA, the client's identity is its certificate's CN, or its first SAN; a client
 * without a valid certificate is refused in the handshake, with the reason. */
static void client_cert_case(const char *cert, const char *key, ssize_t want,
                             const char *id_or_reason)
{
    struct sg_tls_ctx *ctx = server_ctx("ca.pem", NULL);
    struct sg_tls *tls;
    struct client c;
    ssize_t r;

    cr_assert_eq(sg_tls_create(ctx, &tls), 0);
    client_init(&c, cert, key, NULL);
    r = pump(&c, tls, NULL);
    cr_assert_eq(r, want, "%s: %zd (%s)", cert ? cert : "no certificate", r, sg_tls_reason(tls));
    if (want == 0) {
        cr_assert(sg_tls_handshake_done(tls));
        cr_assert_str_eq(sg_tls_client_id(tls), id_or_reason);
    } else {
        cr_assert_not(sg_tls_handshake_done(tls));
        cr_assert(strstr(sg_tls_reason(tls), id_or_reason), "reason: %s", sg_tls_reason(tls));
    }
    client_free(&c);
    sg_tls_destroy(tls);
    sg_tls_ctx_destroy(ctx);
}

Test(tls, client_certificates)
{
    client_cert_case("client.pem", "client.key", 0, "device-42");
    client_cert_case("san.pem", "san.key", 0, "sensor-7.example");
    client_cert_case("expired.pem", "client.key", -EPROTO, "expired");
    client_cert_case("stranger.pem", "client.key", -EPROTO, "unable to get local issuer");
    client_cert_case(NULL, NULL, -EPROTO, "certificate");
}

/* A session from one connection resumes on the next, over TLS 1.3 (tickets) and TLS 1.2 (the
 * server's session cache and tickets). */
static void resume_case(int version)
{
    struct sg_tls_ctx *ctx = server_ctx(NULL, NULL);
    struct sg_tls *tls;
    struct client c;
    SSL_SESSION *sess;

    cr_assert_eq(sg_tls_create(ctx, &tls), 0);
    client_init(&c, NULL, NULL, NULL);
    SSL_set_max_proto_version(c.ssl, version);
    pump(&c, tls, NULL);
    cr_assert(sg_tls_handshake_done(tls));
    cr_assert_not(sg_tls_resumed(tls));
    sess = SSL_get1_session(c.ssl);
    cr_assert_not_null(sess);
    cr_assert(SSL_SESSION_is_resumable(sess));
    /* The client ends its side (OpenSSL drops the session of an SSL freed without it); the
     * server's connection is freed without a shutdown. */
    SSL_shutdown(c.ssl);
    client_free(&c);
    sg_tls_destroy(tls);

    cr_assert_eq(sg_tls_create(ctx, &tls), 0);
    client_init(&c, NULL, NULL, NULL);
    SSL_set_max_proto_version(c.ssl, version);
    cr_assert_eq(SSL_set_session(c.ssl, sess), 1);
    pump(&c, tls, NULL);
    cr_assert(sg_tls_handshake_done(tls));
    cr_assert(sg_tls_resumed(tls), "v%x client reused %d", version, SSL_session_reused(c.ssl));
    cr_assert_eq(SSL_session_reused(c.ssl), 1);
    SSL_SESSION_free(sess);
    client_free(&c);
    sg_tls_destroy(tls);
    sg_tls_ctx_destroy(ctx);
}

Test(tls, sessions_resume)
{
    resume_case(TLS1_3_VERSION);
    resume_case(TLS1_2_VERSION);
}

/* The subject CN of the certificate the server presented to `c`. */
static void server_cn(struct client *c, char *buf, size_t len)
{
    X509 *peer = SSL_get1_peer_certificate(c->ssl);

    cr_assert_not_null(peer);
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, buf, (int)len);
    X509_free(peer);
}

static void copy_file(const char *from, const char *to)
{
    char cmd[1200];

    snprintf(cmd, sizeof(cmd), "cp %s %s", path(from), path(to));
    cr_assert_eq(system(cmd), 0);
}

/* Reload takes the files again for new connections; a bad pair leaves the old one in use. */
Test(tls, reload)
{
    char cert[512], key[512];
    struct sg_tls_ctx_opts opts = {.cert = cert, .key = key};
    struct sg_tls_ctx *ctx = NULL;
    struct sg_tls *before, *after;
    struct client c, c2;
    char err[256] = "", cn[64];

    snprintf(cert, sizeof(cert), "%s", path("live.pem"));
    snprintf(key, sizeof(key), "%s", path("live.key"));
    copy_file("server.pem", "live.pem");
    copy_file("server.key", "live.key");
    cr_assert_eq(sg_tls_ctx_create(&opts, &ctx, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sg_tls_create(ctx, &before), 0);

    /* A certificate without its key: refused, with the reason; nothing changes. */
    copy_file("server2.pem", "live.pem");
    cr_assert_lt(sg_tls_ctx_reload(ctx, err, sizeof(err)), 0);
    cr_assert(strstr(err, "does not match"), "%s", err);
    cr_assert_eq(sg_tls_create(ctx, &after), 0);
    client_init(&c, NULL, NULL, NULL);
    pump(&c, after, NULL);
    server_cn(&c, cn, sizeof(cn));
    cr_assert_str_eq(cn, "localhost");
    client_free(&c);
    sg_tls_destroy(after);

    /* With its key: new connections get the new certificate (trusted through the other CA);
     * the connection made before keeps the old one. */
    copy_file("server2.key", "live.key");
    cr_assert_eq(sg_tls_ctx_reload(ctx, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sg_tls_create(ctx, &after), 0);
    client_init(&c, NULL, NULL, NULL);
    cr_assert_eq(X509_STORE_load_file(SSL_CTX_get_cert_store(c.ctx), path("other-ca.pem")), 1);
    pump(&c, after, NULL);
    cr_assert(sg_tls_handshake_done(after), "%s", sg_tls_reason(after));
    server_cn(&c, cn, sizeof(cn));
    cr_assert_str_eq(cn, "localhost-reloaded");
    client_free(&c);

    client_init(&c2, NULL, NULL, NULL);
    pump(&c2, before, NULL);
    cr_assert(sg_tls_handshake_done(before));
    server_cn(&c2, cn, sizeof(cn));
    cr_assert_str_eq(cn, "localhost");
    client_free(&c2);

    sg_tls_destroy(before);
    sg_tls_destroy(after);
    sg_tls_ctx_destroy(ctx);
}

Test(tls, create_reports_bad_files)
{
    struct sg_tls_ctx_opts opts = {.cert = path("server.pem"), .key = path("client.key")};
    struct sg_tls_ctx *ctx = NULL;
    char err[256] = "";

    cr_assert_lt(sg_tls_ctx_create(&opts, &ctx, err, sizeof(err)), 0);
    cr_assert_null(ctx);
    cr_assert(strstr(err, "does not match"), "%s", err);
    opts.key = path("missing.key");
    cr_assert_lt(sg_tls_ctx_create(&opts, &ctx, err, sizeof(err)), 0);
    cr_assert(strstr(err, "missing.key"), "%s", err);
}

/* Bytes that are no TLS record end the session with a reason (and an alert to send); so does
 * a record that does not decrypt after the handshake. */
Test(tls, garbage)
{
    struct sg_tls_ctx *ctx = server_ctx(NULL, NULL);
    struct sg_tls *tls;
    struct client c;
    char buf[256];
    struct sg_buf out;
    static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    sg_buf_init(&out, 0);
    cr_assert_eq(sg_tls_create(ctx, &tls), 0);
    cr_assert_eq(sg_tls_feed(tls, junk, sizeof(junk) - 1), 0);
    cr_assert_eq(sg_tls_read(tls, buf, sizeof(buf)), -EPROTO);
    cr_assert(strstr(sg_tls_reason(tls), "http request"), "%s", sg_tls_reason(tls));
    cr_assert_eq(sg_tls_write(tls, "x", 1), -EPROTO);
    sg_tls_destroy(tls);

    cr_assert_eq(sg_tls_create(ctx, &tls), 0);
    client_init(&c, NULL, NULL, NULL);
    pump(&c, tls, NULL);
    cr_assert(sg_tls_handshake_done(tls));
    /* An application data record header followed by bytes that are not its ciphertext. */
    static const char bad[] = "\x17\x03\x03\x00\x20"
                              "0123456789abcdef0123456789abcdef";
    cr_assert_eq(sg_tls_feed(tls, bad, sizeof(bad) - 1), 0);
    cr_assert_eq(sg_tls_read(tls, buf, sizeof(buf)), -EPROTO);
    cr_assert(strstr(sg_tls_reason(tls), "bad record mac") ||
                  strstr(sg_tls_reason(tls), "decryption failed"),
              "%s", sg_tls_reason(tls));
    cr_assert_eq(sg_tls_out(tls, &out), 0);
    cr_assert_gt(out.len, 0, "an alert is queued for the peer");
    sg_buf_free(&out);
    client_free(&c);
    sg_tls_destroy(tls);
    sg_tls_ctx_destroy(ctx);
}

/* Plaintext written before the handshake completes waits for it. */
Test(tls, write_before_handshake)
{
    struct sg_tls_ctx *ctx = server_ctx(NULL, NULL);
    struct sg_tls *tls;
    struct client c;

    cr_assert_eq(sg_tls_create(ctx, &tls), 0);
    cr_assert_eq(sg_tls_write(tls, "early", 5), 0);
    cr_assert_not(sg_tls_has_out(tls));
    client_init(&c, NULL, NULL, NULL);
    pump(&c, tls, NULL);
    cr_assert(sg_tls_handshake_done(tls));
    cr_assert_eq(c.got.len, 5);
    cr_assert_eq(memcmp(c.got.data, "early", 5), 0);
    client_free(&c);
    sg_tls_destroy(tls);
    sg_tls_ctx_destroy(ctx);
}

static void server_closed(void *arg)
{
    *(bool *)arg = true;
}

/* The listeners' reload entry points (what a SIGHUP handler calls): 0 when the files load, the
 * reason when they do not, and 0 for a listener without TLS. */
Test(tls, listeners_reload)
{
    struct sg_config cfg;
    struct sg_log log;
    struct sg_metrics *metrics = sg_metrics_create();
    struct sg_ingest *ing;
    struct sg_server_env env = {0};
    struct sg_http_server *http = NULL;
    struct sg_tcp_server *tcp = NULL;
    uv_loop_t loop;
    char err[256] = "";
    FILE *devnull = fopen("/dev/null", "w");
    bool closed = false;

    copy_file("server.pem", "listener.pem");
    copy_file("server.key", "listener.key");
    sg_config_defaults(&cfg);
    cr_assert_eq(sg_config_set(&cfg, "tcp.listen", "127.0.0.1:0", err, sizeof(err)), 0);
    cr_assert_eq(sg_config_set(&cfg, "http.tls_cert", path("listener.pem"), err, sizeof(err)), 0);
    cr_assert_eq(sg_config_set(&cfg, "http.tls_key", path("listener.key"), err, sizeof(err)), 0);
    sg_log_init(&log, SG_LOG_ERROR, devnull);
    ing = sg_ingest_create(&cfg, metrics, &log);
    cr_assert_eq(uv_loop_init(&loop), 0);
    env.loop = &loop;
    env.cfg = &cfg;
    env.ingest = ing;
    env.metrics = metrics;
    env.log = &log;
    cr_assert_eq(sg_http__server_create_test(&env, &http, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sg_tcp_server_create(&env, &tcp, err, sizeof(err)), 0, "%s", err);

    cr_assert_eq(sg_http_server_reload_tls(http, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sg_tcp_server_reload_tls(tcp, err, sizeof(err)), 0, "no TLS: nothing to do");
    copy_file("server2.pem", "listener.pem");
    cr_assert_lt(sg_http_server_reload_tls(http, err, sizeof(err)), 0);
    cr_assert(strstr(err, "does not match"), "%s", err);
    /* Kept and counted as a TLS error of the listener. */
    cr_assert_eq(
        sg_metrics_counter_value(metrics, SG_METRIC_TLS_ERRORS_TOTAL, "transport=\"http\""), 1);
    copy_file("server2.key", "listener.key");
    cr_assert_eq(sg_http_server_reload_tls(http, err, sizeof(err)), 0, "%s", err);

    sg_http_server_shutdown(http, server_closed, &closed);
    while (!closed)
        cr_assert_geq(uv_run(&loop, UV_RUN_ONCE), 0);
    sg_http_server_destroy(http);
    closed = false;
    sg_tcp_server_shutdown(tcp, server_closed, &closed);
    while (!closed)
        cr_assert_geq(uv_run(&loop, UV_RUN_ONCE), 0);
    sg_tcp_server_destroy(tcp);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
    sg_ingest_destroy(ing);
    sg_metrics_destroy(metrics);
    sg_config_free(&cfg);
    fclose(devnull);
}

/* Heap bytes in use (glibc), with blocks it mapped on their own. */
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();

    return mi.uordblks + mi.hblkhd;
}

/* What SG_TLS_*_HELD claim, measured: N server connections driven to a phase, the heap they
 * hold divided by N, against sg_tls_held's figure for one of them, which must cover it and not
 * overstate it by more than half. The clients' share is left out: they are made before the
 * first reading, and freed before the idle one. */
static void held_case(const char *client_ca, const char *cert, const char *key, int max_version)
{
    enum { N = 200 };
    static struct sg_tls *tls[N];
    static struct client c[N];
    struct sg_tls_ctx *ctx = server_ctx(client_ca, "http/1.1");
    struct sg_buf out;
    char buf[4096];
    size_t base, measured, held;

    sg_buf_init(&out, 0);
    for (int i = 0; i < N; i++) {
        client_init(&c[i], cert, key, "http/1.1");
        if (max_version)
            SSL_set_max_proto_version(c[i].ssl, max_version);
        SSL_do_handshake(c[i].ssl);
    }
    /* The handshake: the client's hello taken, the server's flight produced. */
    base = heap_in_use();
    for (int i = 0; i < N; i++) {
        cr_assert_eq(sg_tls_create(ctx, &tls[i]), 0);
        int n = BIO_read(c[i].wbio, buf, sizeof(buf));
        cr_assert_gt(n, 0);
        cr_assert_eq(sg_tls_feed(tls[i], buf, (size_t)n), 0);
        cr_assert_eq(sg_tls_read(tls[i], buf, sizeof(buf)), 0);
    }
    measured = (heap_in_use() - base) / N;
    held = sg_tls_held(tls[0]);
    cr_log_info("handshake: %zu bytes measured, %zu held", measured, held);
    cr_assert_geq(held, measured, "handshake: %zu held, %zu measured", held, measured);
    cr_assert_leq(held, measured * 3 / 2, "handshake: %zu held, %zu measured", held, measured);

    /* Idle: handshake done, a request and an answer, then nothing; the clients gone. */
    for (int i = 0; i < N; i++) {
        cr_assert_eq(sg_tls_out(tls[i], &out), 0);
        cr_assert_eq(BIO_write(c[i].rbio, out.data, (int)out.len), (int)out.len);
        sg_buf_reset(&out);
        pump(&c[i], tls[i], NULL);
        cr_assert(sg_tls_handshake_done(tls[i]));
        cr_assert_eq(SSL_write(c[i].ssl, "GET / HTTP/1.1\r\n\r\n", 18), 18);
        pump(&c[i], tls[i], NULL);
        cr_assert_eq(sg_tls_write(tls[i], "HTTP/1.1 204 No Content\r\n\r\n", 27), 0);
        pump(&c[i], tls[i], NULL);
        sg_tls_trim(tls[i]);
    }
    /* Part of a record waits in OpenSSL for the rest. */
    cr_assert_eq(SSL_write(c[0].ssl, "GET / HTTP/1.1\r\n\r\n", 18), 18);
    int n = BIO_read(c[0].wbio, buf, sizeof(buf));
    cr_assert_gt(n, 10);
    base = heap_in_use();
    cr_assert_eq(sg_tls_feed(tls[0], buf, 10), 0);
    cr_assert_eq(sg_tls_read(tls[0], buf, sizeof(buf)), 0);
    size_t partial = heap_in_use() - base;
    held = sg_tls_held(tls[1]);
    cr_assert_geq(sg_tls_held(tls[0]), held + SG_TLS_RECORD_HELD);
    for (int i = 0; i < N; i++)
        client_free(&c[i]);
    base = heap_in_use();
    for (int i = 1; i < N; i++)
        sg_tls_destroy(tls[i]);
    measured = (base - heap_in_use()) / (N - 1);
    cr_log_info("idle: %zu bytes measured, %zu held; part of a record: %zu measured, %d held",
                measured, held, partial, SG_TLS_RECORD_HELD);
    cr_assert_geq(held, measured, "idle: %zu held, %zu measured", held, measured);
    cr_assert_leq(held, measured * 3 / 2, "idle: %zu held, %zu measured", held, measured);
    cr_assert_geq((size_t)SG_TLS_RECORD_HELD, partial);
    cr_assert_leq((size_t)SG_TLS_RECORD_HELD, partial * 3 / 2);
    sg_tls_destroy(tls[0]);
    sg_buf_free(&out);
    sg_tls_ctx_destroy(ctx);
}

Test(tls, held_matches_the_heap)
{
    /* A sanitizer's allocator is not glibc's: mallinfo2 does not see its blocks. */
    size_t base = heap_in_use();
    char *probe = malloc(1 << 20);
    cr_assert_not_null(probe);
    memset(probe, 1, 1 << 20);
    bool seen = heap_in_use() >= base + (1 << 20);
    free(probe);
    if (!seen)
        cr_skip_test("mallinfo2 does not count this allocator's memory");
    held_case(NULL, NULL, NULL, 0);
    held_case(NULL, NULL, NULL, TLS1_2_VERSION);
    held_case("ca.pem", "client.pem", "client.key", 0);
    held_case("ca.pem", "client.pem", "client.key", TLS1_2_VERSION);
}
