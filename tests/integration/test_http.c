/* The HTTP listener end to end: the real binary on an ephemeral port, driven over real
 * sockets, with accepted events read back from its output file and counters from /metrics. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* Reads one response or fails the test. */
static void read_resp(int fd, struct sgt_response *r)
{
    cr_assert_eq(sgt_read_response(fd, r), 0, "no complete response");
}

static void assert_header(const struct sgt_response *r, const char *name, const char *want)
{
    char *v = sgt_header(r, name);
    cr_assert_not_null(v, "header %s missing in:\n%s", name, r->headers);
    cr_assert_str_eq(v, want, "header %s", name);
    free(v);
}

static void assert_no_header(const struct sgt_response *r, const char *name)
{
    char *v = sgt_header(r, name);
    cr_assert_null(v, "unexpected header %s: %s", name, v);
}

static void assert_body_has(const struct sgt_response *r, const char *needle)
{
    cr_assert_not_null(strstr(r->body, needle), "body lacks %s:\n%s", needle, r->body);
}

/* POST /v1/events with a raw header block of our own; returns the response. */
static void post_with(const char *addr, const char *headers, const void *body, size_t len,
                      struct sgt_response *r)
{
    sgt_http(addr, "POST", "/v1/events", headers, body, len, r);
}

/* Counts the lines of the output file right now (after giving the writer a moment). */
static size_t out_lines(struct sgt_proc *p, size_t want)
{
    return sgt_wait_lines(p->out_path, want, want == 0 ? 300 : 5000);
}

static const char *metric_series(const char *name, const char *labels, char *buf, size_t len)
{
    snprintf(buf, len, "%s{%s}", name, labels);
    return buf;
}

static double limit_hits(struct sgt_proc *p, const char *limit)
{
    char labels[64], series[128];
    snprintf(labels, sizeof(labels), "limit=\"%s\"", limit);
    return sgt_metric(p->http,
                      metric_series("streamgate_limit_hits_total", labels, series, sizeof(series)));
}

/* --- events ------------------------------------------------------------------------------ */

Test(http, single_object)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);

    sgt_post(p.http, "application/json", "{\"key\":\"dev-1\",\"value\":42}", &r);
    cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
    cr_assert_str_eq(r.body, "{\"accepted\":1,\"rejected\":0,\"errors\":[]}");
    assert_header(&r, "Content-Type", "application/json");
    assert_header(&r, "Connection", "close");
    sgt_response_free(&r);

    cr_assert_eq(out_lines(&p, 1), 1);
    char *out = sgt_read_file(p.out_path, NULL);
    cr_assert_str_eq(out, "{\"key\":\"dev-1\",\"value\":42}\n");
    free(out);
    sgt_stop_ok(&p);
}

Test(http, array_mixed_valid_and_invalid)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);

    sgt_post(p.http, "application/json",
             "[{\"key\":\"a\",\"v\":1}, {\"v\":2}, {\"key\":\"c\",\"v\":3}, 7]", &r);
    cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
    assert_body_has(&r, "\"accepted\":2");
    assert_body_has(&r, "\"rejected\":2");
    assert_body_has(&r, "{\"index\":1,\"offset\":20,\"error\":\"missing_key:");
    assert_body_has(&r, "{\"index\":3,\"offset\":48,\"error\":\"not_object:");
    cr_assert_null(strstr(r.body, "errors_truncated"));
    sgt_response_free(&r);

    cr_assert_eq(out_lines(&p, 2), 2);
    char *out = sgt_read_file(p.out_path, NULL);
    cr_assert_str_eq(out, "{\"key\":\"a\",\"v\":1}\n{\"key\":\"c\",\"v\":3}\n");
    free(out);
    sgt_stop_ok(&p);
}

Test(http, errors_are_capped_and_marked_truncated)
{
    struct sgt_proc p;
    struct sgt_response r;
    const char *args[] = {"--http-max-errors", "2", NULL};
    sgt_start(&p, args, NULL);

    sgt_post(p.http, "application/json", "[{\"key\":\"a\"},1,2,3,4]", &r);
    cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
    assert_body_has(&r, "\"accepted\":1,\"rejected\":4,");
    assert_body_has(&r, "{\"index\":1,");
    assert_body_has(&r, "{\"index\":2,");
    cr_assert_null(strstr(r.body, "\"index\":3"), "%s", r.body);
    assert_body_has(&r, "\"errors_truncated\":true}");
    sgt_response_free(&r);
    sgt_stop_ok(&p);
}

Test(http, all_invalid_is_400)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);

    sgt_post(p.http, "application/json", "[{\"v\":1}, \"x\"]", &r);
    cr_assert_eq(r.status, 400, "status %d: %s", r.status, r.body);
    assert_body_has(&r, "\"accepted\":0,\"rejected\":2,\"errors\":[{\"index\":0,");
    assert_body_has(&r, "{\"index\":1,");
    assert_header(&r, "Content-Type", "application/json");
    sgt_response_free(&r);

    /* Broken framing: nothing is ingested, and the offset says where. */
    sgt_post(p.http, "application/json", "[{\"key\":\"a\"} {\"key\":\"b\"}]", &r);
    cr_assert_eq(r.status, 400, "status %d: %s", r.status, r.body);
    assert_body_has(&r, "{\"accepted\":0,\"rejected\":0,\"errors\":[{\"offset\":");
    sgt_response_free(&r);

    /* An empty body. */
    sgt_post(p.http, "application/json", "", &r);
    cr_assert_eq(r.status, 400, "status %d: %s", r.status, r.body);
    cr_assert_str_eq(r.body, "{\"error\":\"empty body\"}");
    sgt_response_free(&r);

    cr_assert_eq(out_lines(&p, 0), 0, "nothing may reach the output");
    sgt_stop_ok(&p);
}

Test(http, ndjson_errors_name_the_line)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);

    sgt_post(p.http, "application/x-ndjson",
             "{\"key\":\"a\"}\n{\"key\": broken\n\n{\"key\":\"c\"}\n", &r);
    cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
    assert_body_has(&r, "\"accepted\":2,\"rejected\":1,");
    assert_body_has(&r, "{\"index\":1,\"line\":2,\"offset\":12,\"error\":\"invalid_json:");
    sgt_response_free(&r);

    /* The other NDJSON media type, with a parameter and odd case. */
    sgt_post(p.http, "Application/NDJSON; charset=utf-8", "{\"key\":\"d\"}\n{\"key\":\"e\"}", &r);
    cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
    assert_body_has(&r, "\"accepted\":2,\"rejected\":0,");
    sgt_response_free(&r);

    cr_assert_eq(out_lines(&p, 4), 4);
    sgt_stop_ok(&p);
}

Test(http, ndjson_sent_as_json_gets_a_hint)
{
    static const char ndjson[] = "{\"key\":\"a\",\"v\":1}\n{\"key\":\"b\",\"v\":2}\n";
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);

    /* The usual mistake: an NDJSON file posted as application/json. The answer keeps its shape
     * and reason; the message says what to send instead. */
    sgt_post(p.http, "application/json", ndjson, &r);
    cr_assert_eq(r.status, 400, "status %d: %s", r.status, r.body);
    cr_assert_str_eq(r.body, "{\"accepted\":0,\"rejected\":1,\"errors\":[{\"index\":0,\"offset\":0,"
                             "\"error\":\"invalid_json: not valid JSON; the body looks like NDJSON "
                             "(one JSON object per line): send it with Content-Type: "
                             "application/x-ndjson\"}]}");
    sgt_response_free(&r);

    /* No Content-Type means JSON too; gzip is decoded first. */
    post_with(p.http, NULL, ndjson, sizeof(ndjson) - 1, &r);
    cr_assert_eq(r.status, 400, "status %d: %s", r.status, r.body);
    assert_body_has(&r, "Content-Type: application/x-ndjson");
    sgt_response_free(&r);
    size_t zlen;
    void *z = sgt_gzip(ndjson, sizeof(ndjson) - 1, &zlen);
    post_with(p.http, "Content-Type: application/json\r\nContent-Encoding: gzip\r\n", z, zlen, &r);
    free(z);
    cr_assert_eq(r.status, 400, "status %d: %s", r.status, r.body);
    assert_body_has(&r, "Content-Type: application/x-ndjson");
    sgt_response_free(&r);

    /* Invalid JSON that is not NDJSON keeps the plain message. */
    sgt_post(p.http, "application/json", "{\"key\":\"a\",}", &r);
    cr_assert_eq(r.status, 400, "status %d: %s", r.status, r.body);
    cr_assert_str_eq(r.body, "{\"accepted\":0,\"rejected\":1,\"errors\":[{\"index\":0,\"offset\":0,"
                             "\"error\":\"invalid_json: not valid JSON\"}]}");
    sgt_response_free(&r);

    /* Sent as NDJSON, the same body is two events. */
    sgt_post(p.http, "application/x-ndjson", ndjson, &r);
    cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
    assert_body_has(&r, "\"accepted\":2,\"rejected\":0,");
    sgt_response_free(&r);
    cr_assert_eq(out_lines(&p, 2), 2);
    sgt_stop_ok(&p);
}

Test(http, content_type_variants)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);

    sgt_post(p.http, "application/json; charset=UTF-8", "{\"key\":\"a\"}", &r);
    cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
    sgt_response_free(&r);

    /* No Content-Type at all: JSON. */
    post_with(p.http, NULL, "{\"key\":\"b\"}", 11, &r);
    cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
    sgt_response_free(&r);

    sgt_post(p.http, "text/plain", "{\"key\":\"c\"}", &r);
    cr_assert_eq(r.status, 415, "status %d: %s", r.status, r.body);
    assert_body_has(&r, "{\"error\":\"unsupported content type");
    assert_header(&r, "Content-Type", "application/json");
    sgt_response_free(&r);

    post_with(p.http, "Content-Type: application/json\r\nContent-Encoding: br\r\n",
              "{\"key\":\"d\"}", 11, &r);
    cr_assert_eq(r.status, 415, "status %d: %s", r.status, r.body);
    assert_body_has(&r, "content encoding");
    sgt_response_free(&r);

    post_with(p.http, "Content-Type: application/json\r\nContent-Encoding: identity\r\n",
              "{\"key\":\"e\"}", 11, &r);
    cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
    sgt_response_free(&r);

    cr_assert_eq(out_lines(&p, 3), 3);
    sgt_stop_ok(&p);
}

/* --- connection handling ----------------------------------------------------------------- */

Test(http, keep_alive_serves_several_requests)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);
    int fd = sgt_connect(p.http);
    char req[512];

    for (int i = 0; i < 3; i++) {
        char body[64];
        int n = snprintf(body, sizeof(body), "{\"key\":\"k%d\"}", i);
        snprintf(req, sizeof(req),
                 "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Content-Length: %d\r\n\r\n%s",
                 n, body);
        sgt_send_str(fd, req);
        read_resp(fd, &r);
        cr_assert_eq(r.status, 202, "request %d: %d %s", i, r.status, r.body);
        assert_no_header(&r, "Connection");
        sgt_response_free(&r);
    }
    /* HTTP/1.0 with keep-alive stays open too, and says so. */
    sgt_send_str(fd, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    read_resp(fd, &r);
    cr_assert_eq(r.status, 200);
    assert_header(&r, "Connection", "keep-alive");
    sgt_response_free(&r);
    /* HTTP/1.0 without it is answered, then closed. */
    sgt_send_str(fd, "GET /healthz HTTP/1.0\r\n\r\n");
    read_resp(fd, &r);
    cr_assert_eq(r.status, 200);
    assert_header(&r, "Connection", "close");
    sgt_response_free(&r);
    cr_assert(sgt_wait_closed(fd, 5000));
    close(fd);

    cr_assert_eq(out_lines(&p, 3), 3);
    /* Every request came over the one connection; the second is this scrape's own. */
    cr_assert_eq(sgt_metric(p.http, "streamgate_connections_accepted_total{transport=\"http\"}"),
                 2.0);
    sgt_stop_ok(&p);
}

Test(http, pipelined_requests_answered_in_order)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);
    int fd = sgt_connect(p.http);

    sgt_send_str(fd,
                 "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n{\"key\":\"a\"}"
                 "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /nowhere?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                 "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n{\"v\":1}\n"
                 "POST /v1/events?source=test HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
                 "Connection: close\r\n\r\n{\"key\":\"b\"}"
                 "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    read_resp(fd, &r);
    cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
    sgt_response_free(&r);
    read_resp(fd, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    sgt_response_free(&r);
    read_resp(fd, &r);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(r.body, "{\"error\":\"not found\"}");
    sgt_response_free(&r);
    read_resp(fd, &r);
    cr_assert_eq(r.status, 400, "%d %s", r.status, r.body);
    sgt_response_free(&r);
    /* The request with Connection: close is the last one answered. */
    read_resp(fd, &r);
    cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
    assert_header(&r, "Connection", "close");
    sgt_response_free(&r);
    cr_assert_eq(sgt_read_response(fd, &r), -1, "nothing after Connection: close");
    close(fd);

    cr_assert_eq(out_lines(&p, 2), 2);
    char *out = sgt_read_file(p.out_path, NULL);
    cr_assert_str_eq(out, "{\"key\":\"a\"}\n{\"key\":\"b\"}\n");
    free(out);
    sgt_stop_ok(&p);
}

Test(http, many_pipelined_requests_in_one_send)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);
    int fd = sgt_connect(p.http);
    /* Enough /metrics requests that the answers pass the output high-water mark several
     * times: the server must pause, drain and resume without losing or reordering any. */
    const int n = 600;
    const char one[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n";
    size_t len = (size_t)n * (sizeof(one) - 1);
    char *all = malloc(len + 1);
    for (int i = 0; i < n; i++)
        memcpy(all + (size_t)i * (sizeof(one) - 1), one, sizeof(one) - 1);
    sgt_send_all(fd, all, len);
    free(all);

    for (int i = 0; i < n; i++) {
        read_resp(fd, &r);
        cr_assert_eq(r.status, 200);
        cr_assert_not_null(strstr(r.body, "streamgate_http_requests_total"), "reply %d", i);
        sgt_response_free(&r);
        read_resp(fd, &r);
        cr_assert_eq(r.status, 200);
        cr_assert_str_eq(r.body, "{\"status\":\"ok\"}", "reply %d", i);
        sgt_response_free(&r);
    }
    close(fd);
    sgt_stop_ok(&p);
}

Test(http, chunked_body)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);
    int fd = sgt_connect(p.http);

    sgt_send_str(fd, "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     "Content-Type: application/x-ndjson\r\n\r\n"
                     "c\r\n{\"key\":\"a\"}\n\r\n"
                     "5\r\n{\"key\r\n"
                     "7;ext=1\r\n\":\"b\"}\n\r\n"
                     "0\r\nX-Trailer: yes\r\n\r\n");
    read_resp(fd, &r);
    cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
    assert_body_has(&r, "\"accepted\":2,\"rejected\":0");
    sgt_response_free(&r);
    close(fd);

    cr_assert_eq(out_lines(&p, 2), 2);
    char *out = sgt_read_file(p.out_path, NULL);
    cr_assert_str_eq(out, "{\"key\":\"a\"}\n{\"key\":\"b\"}\n");
    free(out);
    sgt_stop_ok(&p);
}

Test(http, chunked_body_in_tiny_pieces)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);
    int fd = sgt_connect(p.http);
    const char *req = "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      "Content-Type: application/json\r\n\r\n"
                      "1\r\n[\r\n"
                      "b\r\n{\"key\":\"a\"}\r\n"
                      "1\r\n,\r\n"
                      "B\r\n{\"key\":\"b\"}\r\n"
                      "1\r\n]\r\n"
                      "0\r\n\r\n";
    size_t len = strlen(req);

    /* Three bytes per send, each separately, so every parser state meets a read boundary. */
    for (size_t off = 0; off < len; off += 3) {
        sgt_send_all(fd, req + off, len - off < 3 ? len - off : 3);
        sgt_sleep_ms(2);
    }
    read_resp(fd, &r);
    cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
    assert_body_has(&r, "\"accepted\":2,\"rejected\":0");
    sgt_response_free(&r);
    close(fd);

    cr_assert_eq(out_lines(&p, 2), 2);
    sgt_stop_ok(&p);
}

Test(http, chunked_body_over_limit_is_413)
{
    struct sgt_proc p;
    struct sgt_response r;
    const char *args[] = {"--http-max-body-size", "100", NULL};
    sgt_start(&p, args, NULL);
    int fd = sgt_connect(p.http);
    char chunk[64];

    sgt_send_str(fd, "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 2; i++) {
        sgt_send_str(fd, "40\r\n");
        sgt_send_all(fd, chunk, sizeof(chunk));
        sgt_send_str(fd, "\r\n");
    }
    read_resp(fd, &r);
    cr_assert_eq(r.status, 413, "%d %s", r.status, r.body);
    cr_assert_str_eq(r.body, "{\"error\":\"body exceeds http.max_body_size\"}");
    assert_header(&r, "Connection", "close");
    sgt_response_free(&r);
    cr_assert(sgt_wait_closed(fd, 5000));
    close(fd);
    cr_assert_eq(limit_hits(&p, "http_body_size"), 1);
    sgt_stop_ok(&p);
}

/* --- gzip -------------------------------------------------------------------------------- */

Test(http, gzip_body)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);
    const char *body = "[{\"key\":\"g1\",\"v\":1},{\"key\":\"g2\",\"v\":2}]";
    size_t gzlen;
    void *gz = sgt_gzip(body, strlen(body), &gzlen);

    post_with(p.http, "Content-Type: application/json\r\nContent-Encoding: gzip\r\n", gz, gzlen,
              &r);
    cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
    assert_body_has(&r, "\"accepted\":2,\"rejected\":0");
    sgt_response_free(&r);
    free(gz);

    cr_assert_eq(out_lines(&p, 2), 2);
    char *out = sgt_read_file(p.out_path, NULL);
    cr_assert_str_eq(out, "{\"key\":\"g1\",\"v\":1}\n{\"key\":\"g2\",\"v\":2}\n");
    free(out);
    sgt_stop_ok(&p);
}

Test(http, gzip_over_decoded_cap_is_413)
{
    struct sgt_proc p;
    struct sgt_response r;
    const char *args[] = {"--http-max-decoded-size", "4KiB", NULL};
    sgt_start(&p, args, NULL);
    size_t n = 64 * 1024, gzlen;
    char *body = malloc(n);
    memset(body, ' ', n);
    memcpy(body, "{\"key\":\"big\"}", 13);
    void *gz = sgt_gzip(body, n, &gzlen);
    cr_assert_lt(gzlen, 4096, "the compressed body itself is small");

    post_with(p.http, "Content-Encoding: gzip\r\n", gz, gzlen, &r);
    cr_assert_eq(r.status, 413, "%d %s", r.status, r.body);
    cr_assert_str_eq(r.body, "{\"error\":\"decoded body exceeds http.max_decoded_size\"}");
    sgt_response_free(&r);
    free(gz);
    free(body);

    cr_assert_eq(limit_hits(&p, "http_decoded_size"), 1);
    cr_assert_eq(out_lines(&p, 0), 0);
    sgt_stop_ok(&p);
}

Test(http, corrupt_gzip_is_400)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);
    const char *body = "{\"key\":\"a\"}";
    size_t gzlen;
    unsigned char *gz = sgt_gzip(body, strlen(body), &gzlen);

    gz[gzlen - 6] ^= 0x55; /* break the CRC */
    post_with(p.http, "Content-Encoding: gzip\r\n", gz, gzlen, &r);
    cr_assert_eq(r.status, 400, "%d %s", r.status, r.body);
    cr_assert_str_eq(r.body, "{\"error\":\"invalid gzip body\"}");
    sgt_response_free(&r);

    /* Truncated. */
    gz[gzlen - 6] ^= 0x55;
    post_with(p.http, "Content-Encoding: gzip\r\n", gz, gzlen / 2, &r);
    cr_assert_eq(r.status, 400, "%d %s", r.status, r.body);
    sgt_response_free(&r);

    /* Not gzip at all. */
    post_with(p.http, "Content-Encoding: gzip\r\n", body, strlen(body), &r);
    cr_assert_eq(r.status, 400, "%d %s", r.status, r.body);
    sgt_response_free(&r);
    free(gz);

    cr_assert_eq(out_lines(&p, 0), 0);
    sgt_stop_ok(&p);
}

/* --- limits and bad requests ------------------------------------------------------------- */

Test(http, content_length_over_limit_is_413_without_reading)
{
    struct sgt_proc p;
    struct sgt_response r;
    const char *args[] = {"--http-max-body-size", "1KiB", NULL};
    sgt_start(&p, args, NULL);
    int fd = sgt_connect(p.http);

    /* Only the headers: the answer must come without the body being sent. */
    sgt_send_str(fd, "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 100000\r\n\r\n{\"key\":\"a\"}");
    read_resp(fd, &r);
    cr_assert_eq(r.status, 413, "%d %s", r.status, r.body);
    cr_assert_str_eq(r.body, "{\"error\":\"body exceeds http.max_body_size\"}");
    assert_header(&r, "Connection", "close");
    assert_header(&r, "Content-Type", "application/json");
    sgt_response_free(&r);
    cr_assert(sgt_wait_closed(fd, 5000));
    close(fd);

    /* Exactly at the limit is fine. */
    char body[1024];
    memset(body, ' ', sizeof(body));
    memcpy(body, "{\"key\":\"ok\"}", 12);
    post_with(p.http, NULL, body, sizeof(body), &r);
    cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
    sgt_response_free(&r);

    cr_assert_eq(limit_hits(&p, "http_body_size"), 1);
    cr_assert_eq(out_lines(&p, 1), 1);
    char *out = sgt_read_file(p.out_path, NULL);
    cr_assert_null(strstr(out, "\"a\""), "the refused event was written: %s", out);
    free(out);
    sgt_stop_ok(&p);
}

Test(http, oversized_headers_are_431)
{
    struct sgt_proc p;
    struct sgt_response r;
    const char *args[] = {"--http-max-header-size", "1KiB", NULL};
    sgt_start(&p, args, NULL);
    char big[2048];
    char hdr[2100];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(hdr, sizeof(hdr), "X-Big: %s\r\n", big);

    sgt_http(p.http, "GET", "/healthz", hdr, NULL, 0, &r);
    cr_assert_eq(r.status, 431, "%d %s", r.status, r.body);
    cr_assert_str_eq(r.body, "{\"error\":\"request headers exceed http.max_header_size\"}");
    assert_header(&r, "Connection", "close");
    sgt_response_free(&r);

    /* A long URL counts too. */
    char path[1500] = "/healthz?";
    memset(path + 9, 'q', sizeof(path) - 10);
    path[sizeof(path) - 1] = '\0';
    sgt_http(p.http, "GET", path, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 431, "%d %s", r.status, r.body);
    sgt_response_free(&r);

    /* Many small headers add up. */
    int fd = sgt_connect(p.http);
    sgt_send_str(fd, "GET /healthz HTTP/1.1\r\n");
    for (int i = 0; i < 200; i++)
        sgt_send_str(fd, "X-A: bbbbbbbb\r\n");
    sgt_send_str(fd, "\r\n");
    read_resp(fd, &r);
    cr_assert_eq(r.status, 431, "%d %s", r.status, r.body);
    sgt_response_free(&r);
    close(fd);

    cr_assert_eq(limit_hits(&p, "http_header_size"), 3);
    sgt_stop_ok(&p);
}

Test(http, not_found_and_method_not_allowed)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);

    sgt_http(p.http, "GET", "/nope", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(r.body, "{\"error\":\"not found\"}");
    assert_header(&r, "Content-Type", "application/json");
    sgt_response_free(&r);

    sgt_http(p.http, "POST", "/v1/events/extra", NULL, "{}", 2, &r);
    cr_assert_eq(r.status, 404);
    sgt_response_free(&r);

    sgt_http(p.http, "GET", "/v1/events", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 405);
    cr_assert_str_eq(r.body, "{\"error\":\"method not allowed\"}");
    assert_header(&r, "Allow", "POST");
    sgt_response_free(&r);

    sgt_http(p.http, "POST", "/metrics", NULL, "x", 1, &r);
    cr_assert_eq(r.status, 405);
    assert_header(&r, "Allow", "GET, HEAD");
    sgt_response_free(&r);

    sgt_http(p.http, "DELETE", "/healthz", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 405);
    sgt_response_free(&r);

    /* A refusal without a body keeps the connection. */
    int fd = sgt_connect(p.http);
    sgt_send_str(fd,
                 "GET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    read_resp(fd, &r);
    cr_assert_eq(r.status, 404);
    assert_no_header(&r, "Connection");
    sgt_response_free(&r);
    read_resp(fd, &r);
    cr_assert_eq(r.status, 200);
    sgt_response_free(&r);
    close(fd);
    sgt_stop_ok(&p);
}

Test(http, malformed_requests_are_400)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);
    /* The malformed requests themselves are in the bad-input corpus (bad_input.c), run over
     * plain text and TLS alike. */

    /* The offset points at the bad byte: after a good request, the count goes on. */
    int fd = sgt_connect(p.http);
    sgt_send_str(fd, "GET /healthz HTTP/1.1\r\n\r\nGET /healthz HTXP/1.1\r\n\r\n");
    read_resp(fd, &r);
    cr_assert_eq(r.status, 200);
    sgt_response_free(&r);
    read_resp(fd, &r);
    cr_assert_eq(r.status, 400);
    assert_body_has(&r, "\"offset\":40}"); /* the X of HTXP */
    sgt_response_free(&r);
    close(fd);

    /* The server is still fine. */
    sgt_http(p.http, "GET", "/healthz", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    sgt_response_free(&r);
    sgt_stop_ok(&p);
}

Test(http, expect_100_continue)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);
    int fd = sgt_connect(p.http);
    char interim[64] = "";
    size_t got = 0;
    const char want[] = "HTTP/1.1 100 Continue\r\n\r\n";

    sgt_send_str(fd, "POST /v1/events HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     "Content-Length: 11\r\n\r\n");
    while (got < strlen(want)) {
        ssize_t n = recv(fd, interim + got, strlen(want) - got, 0);
        cr_assert_gt(n, 0, "no 100 Continue before the body");
        got += (size_t)n;
    }
    cr_assert_str_eq(interim, want);
    sgt_send_str(fd, "{\"key\":\"a\"}");
    read_resp(fd, &r);
    cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
    sgt_response_free(&r);
    close(fd);

    /* Refused at the headers: the final status comes instead of 100 Continue. */
    fd = sgt_connect(p.http);
    sgt_send_str(fd, "POST /v1/events HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     "Content-Type: text/csv\r\nContent-Length: 11\r\n\r\n");
    char raw[256];
    ssize_t n = recv(fd, raw, sizeof(raw) - 1, 0);
    cr_assert_gt(n, 0);
    raw[n] = '\0';
    cr_assert_eq(strncmp(raw, "HTTP/1.1 415 ", 13), 0, "%s", raw);
    cr_assert(sgt_wait_closed(fd, 5000));
    close(fd);

    cr_assert_eq(out_lines(&p, 1), 1);
    sgt_stop_ok(&p);
}

/* --- auth -------------------------------------------------------------------------------- */

Test(http, bearer_tokens_for_ingest)
{
    struct sgt_proc p;
    struct sgt_response r;
    const char *args[] = {"--http-auth-tokens", "tok-one,tok-two", NULL};
    sgt_start(&p, args, NULL);
    const char *body = "{\"key\":\"a\"}";

    post_with(p.http, NULL, body, strlen(body), &r);
    cr_assert_eq(r.status, 401, "%d %s", r.status, r.body);
    assert_header(&r, "WWW-Authenticate", "Bearer");
    assert_body_has(&r, "{\"error\":");
    sgt_response_free(&r);

    post_with(p.http, "Authorization: Bearer tok-three\r\n", body, strlen(body), &r);
    cr_assert_eq(r.status, 401);
    sgt_response_free(&r);
    post_with(p.http, "Authorization: Bearer tok-one-more\r\n", body, strlen(body), &r);
    cr_assert_eq(r.status, 401);
    sgt_response_free(&r);
    post_with(p.http, "Authorization: Bearer tok-on\r\n", body, strlen(body), &r);
    cr_assert_eq(r.status, 401);
    sgt_response_free(&r);
    post_with(p.http, "Authorization: Basic tok-one\r\n", body, strlen(body), &r);
    cr_assert_eq(r.status, 401);
    sgt_response_free(&r);

    post_with(p.http, "Authorization: Bearer tok-two\r\n", body, strlen(body), &r);
    cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
    sgt_response_free(&r);
    post_with(p.http, "Authorization: bearer tok-one\r\n", body, strlen(body), &r);
    cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
    sgt_response_free(&r);

    /* Without a metrics token, the other routes stay open. */
    sgt_http(p.http, "GET", "/metrics", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    sgt_response_free(&r);

    cr_assert_eq(out_lines(&p, 2), 2);
    sgt_stop_ok(&p);
}

Test(http, metrics_token)
{
    struct sgt_proc p;
    struct sgt_response r;
    const char *args[] = {"--http-metrics-token", "m-secret", NULL};
    sgt_start(&p, args, NULL);

    static const char *const paths[] = {"/metrics", "/healthz", "/readyz"};
    for (size_t i = 0; i < 3; i++) {
        sgt_http(p.http, "GET", paths[i], NULL, NULL, 0, &r);
        cr_assert_eq(r.status, 401, "%s: %d", paths[i], r.status);
        assert_header(&r, "WWW-Authenticate", "Bearer");
        sgt_response_free(&r);
        sgt_http(p.http, "GET", paths[i], "Authorization: Bearer wrong\r\n", NULL, 0, &r);
        cr_assert_eq(r.status, 401, "%s: %d", paths[i], r.status);
        sgt_response_free(&r);
        sgt_http(p.http, "GET", paths[i], "Authorization: Bearer m-secret\r\n", NULL, 0, &r);
        cr_assert_eq(r.status, 200, "%s: %d", paths[i], r.status);
        sgt_response_free(&r);
    }
    /* Ingest has no token configured: open. */
    sgt_post(p.http, "application/json", "{\"key\":\"a\"}", &r);
    cr_assert_eq(r.status, 202);
    sgt_response_free(&r);
    sgt_stop_ok(&p);
}

/* --- probes and metrics ------------------------------------------------------------------ */

Test(http, health_and_readiness)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);

    sgt_http(p.http, "GET", "/healthz", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    assert_header(&r, "Content-Type", "application/json");
    assert_header(&r, "Content-Length", "15");
    sgt_response_free(&r);

    /* HEAD: the GET's headers, no body. */
    int fd = sgt_connect(p.http);
    sgt_send_str(fd, "HEAD /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    size_t len;
    char *raw = sgt_recv_all(fd, &len);
    close(fd);
    cr_assert_eq(strncmp(raw, "HTTP/1.1 200 OK\r\n", 17), 0, "%s", raw);
    cr_assert_not_null(strstr(raw, "Content-Length: 18\r\n"), "%s", raw);
    cr_assert_str_eq(strstr(raw, "\r\n\r\n"), "\r\n\r\n", "a body after HEAD: %s", raw);
    free(raw);

    sgt_http(p.http, "GET", "/readyz?verbose=1", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ready\"}");
    sgt_response_free(&r);
    sgt_stop_ok(&p);
}

Test(http, metrics_exposition_passes_promtool)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);

    /* Some traffic first, so counters with labels have values. */
    sgt_post(p.http, "application/json", "[{\"key\":\"a\"},{}]", &r);
    sgt_response_free(&r);

    sgt_http(p.http, "GET", "/metrics", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    assert_header(&r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    assert_body_has(&r, "# TYPE streamgate_http_requests_total counter");
    assert_body_has(&r, "streamgate_http_requests_total{code=\"431\"} 0");
    assert_body_has(&r, "streamgate_connections{transport=\"http\"} ");
    assert_body_has(&r, "streamgate_limit_hits_total{limit=\"http_idle_timeout\"} 0");

    cr_assert_eq(access("/usr/bin/promtool", X_OK), 0, "/usr/bin/promtool is missing");
    FILE *pt = popen("/usr/bin/promtool check metrics >/dev/null 2>&1", "w");
    cr_assert_not_null(pt);
    fwrite(r.body, 1, r.body_len, pt);
    int st = pclose(pt);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "promtool check metrics failed (%d)", st);
    sgt_response_free(&r);

    /* And promtool does fail on a broken exposition, so the check above means something. */
    pt = popen("/usr/bin/promtool check metrics >/dev/null 2>&1", "w");
    fputs("# TYPE x counter\nx{a=\"1\" 1\n", pt);
    st = pclose(pt);
    cr_assert(!(WIFEXITED(st) && WEXITSTATUS(st) == 0));
    sgt_stop_ok(&p);
}

Test(http, metric_values)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);

    for (int i = 0; i < 3; i++) {
        sgt_post(p.http, "application/json", "[{\"key\":\"a\"},{\"key\":\"b\"},{\"x\":1}]", &r);
        cr_assert_eq(r.status, 202);
        sgt_response_free(&r);
    }
    sgt_post(p.http, "application/json", "{\"x\":1}", &r);
    cr_assert_eq(r.status, 400);
    sgt_response_free(&r);
    sgt_http(p.http, "GET", "/nope", NULL, NULL, 0, &r);
    sgt_response_free(&r);

    cr_assert_eq(sgt_metric(p.http, "streamgate_http_requests_total{code=\"202\"}"), 3);
    cr_assert_eq(sgt_metric(p.http, "streamgate_http_requests_total{code=\"400\"}"), 1);
    cr_assert_eq(sgt_metric(p.http, "streamgate_http_requests_total{code=\"404\"}"), 1);
    cr_assert_eq(sgt_metric(p.http, "streamgate_events_accepted_total{transport=\"http\"}"), 6);
    cr_assert_eq(sgt_metric(p.http, "streamgate_events_received_total{transport=\"http\"}"), 10);
    double bytes = sgt_metric(p.http, "streamgate_bytes_received_total{transport=\"http\"}");
    cr_assert_gt(bytes, 300, "bytes received: %f", bytes);
    sgt_stop_ok(&p);
}

/* --- timeouts ---------------------------------------------------------------------------- */

Test(http, header_timeout_is_408)
{
    struct sgt_proc p;
    struct sgt_response r;
    const char *args[] = {"--http-header-timeout", "300ms", NULL};
    sgt_start(&p, args, NULL);
    int fd = sgt_connect(p.http);
    int64_t t0 = sgt_mono_ms();

    sgt_send_str(fd, "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Len");
    read_resp(fd, &r);
    int64_t waited = sgt_mono_ms() - t0;
    cr_assert_eq(r.status, 408, "%d %s", r.status, r.body);
    assert_header(&r, "Connection", "close");
    assert_body_has(&r, "{\"error\":\"");
    sgt_response_free(&r);
    cr_assert_geq(waited, 250, "answered after %lld ms", (long long)waited);
    cr_assert_lt(waited, 3000, "answered after %lld ms", (long long)waited);
    cr_assert(sgt_wait_closed(fd, 5000));
    close(fd);

    cr_assert_eq(limit_hits(&p, "http_header_timeout"), 1);
    cr_assert_eq(sgt_metric(p.http, "streamgate_http_requests_total{code=\"408\"}"), 1);
    sgt_stop_ok(&p);
}

Test(http, body_timeout_is_408)
{
    struct sgt_proc p;
    struct sgt_response r;
    const char *args[] = {"--http-body-timeout", "300ms", NULL};
    sgt_start(&p, args, NULL);
    int fd = sgt_connect(p.http);

    sgt_send_str(fd, "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{\"key\":");
    read_resp(fd, &r);
    cr_assert_eq(r.status, 408, "%d %s", r.status, r.body);
    assert_header(&r, "Connection", "close");
    sgt_response_free(&r);
    cr_assert(sgt_wait_closed(fd, 5000));
    close(fd);

    cr_assert_eq(limit_hits(&p, "http_body_timeout"), 1);
    cr_assert_eq(out_lines(&p, 0), 0);
    sgt_stop_ok(&p);
}

/* Each deadline is the one of the connection's current state: a longer one that follows a
 * shorter one (body after headers, idle after a request) holds for its own length. */
Test(http, later_deadlines_outlive_earlier_ones)
{
    struct sgt_proc p;
    struct sgt_response r;
    const char *args[] = {"--http-header-timeout",
                          "200ms",
                          "--http-body-timeout",
                          "1500ms",
                          "--http-idle-timeout",
                          "1500ms",
                          NULL};
    sgt_start(&p, args, NULL);
    int fd = sgt_connect(p.http);

    sgt_send_str(fd, "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n{\"key\"");
    sgt_sleep_ms(600); /* past the header deadline, well within the body's */
    sgt_send_str(fd, ":\"a\"}");
    read_resp(fd, &r);
    cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
    sgt_response_free(&r);
    sgt_sleep_ms(600); /* idle, past the header deadline again */
    sgt_send_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    read_resp(fd, &r);
    cr_assert_eq(r.status, 200);
    sgt_response_free(&r);
    close(fd);

    cr_assert_eq(limit_hits(&p, "http_header_timeout"), 0);
    cr_assert_eq(limit_hits(&p, "http_body_timeout"), 0);
    cr_assert_eq(limit_hits(&p, "http_idle_timeout"), 0);
    cr_assert_eq(out_lines(&p, 1), 1);

    /* A body that never ends is cut at its own deadline, not the header's. */
    fd = sgt_connect(p.http);
    int64_t t0 = sgt_mono_ms();
    sgt_send_str(fd, "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n{");
    read_resp(fd, &r);
    int64_t waited = sgt_mono_ms() - t0;
    cr_assert_eq(r.status, 408, "%d %s", r.status, r.body);
    cr_assert_geq(waited, 1300, "408 after %lld ms", (long long)waited);
    sgt_response_free(&r);
    close(fd);
    cr_assert_eq(limit_hits(&p, "http_body_timeout"), 1);
    sgt_stop_ok(&p);
}

Test(http, idle_keep_alive_timeout_closes)
{
    struct sgt_proc p;
    struct sgt_response r;
    const char *args[] = {"--http-idle-timeout", "300ms", NULL};
    sgt_start(&p, args, NULL);
    int fd = sgt_connect(p.http);

    sgt_send_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    read_resp(fd, &r);
    cr_assert_eq(r.status, 200);
    sgt_response_free(&r);
    int64_t t0 = sgt_mono_ms();
    /* Closed silently: no bytes, just EOF. */
    char c;
    ssize_t n = recv(fd, &c, 1, 0);
    int64_t waited = sgt_mono_ms() - t0;
    cr_assert_eq(n, 0, "expected EOF, got %zd (%s)", n, n < 0 ? strerror(errno) : "data");
    cr_assert_geq(waited, 200, "closed after %lld ms", (long long)waited);
    cr_assert_lt(waited, 3000, "closed after %lld ms", (long long)waited);
    close(fd);

    /* A connection that never sends anything is idle too. */
    fd = sgt_connect(p.http);
    cr_assert(sgt_wait_closed(fd, 3000));
    close(fd);

    cr_assert_geq(limit_hits(&p, "http_idle_timeout"), 2);
    sgt_stop_ok(&p);
}

/* --- connection limit and shutdown ------------------------------------------------------- */

Test(http, max_connections_answers_503)
{
    struct sgt_proc p;
    struct sgt_response r;
    const char *args[] = {"--http-max-connections", "2", NULL};
    sgt_start(&p, args, NULL);
    int a = sgt_connect(p.http), b = sgt_connect(p.http);

    /* Make sure both are served (accepted and counted) before the third arrives. */
    sgt_send_str(a, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    read_resp(a, &r);
    cr_assert_eq(r.status, 200);
    sgt_response_free(&r);
    sgt_send_str(b, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    read_resp(b, &r);
    cr_assert_eq(r.status, 200);
    sgt_response_free(&r);

    int c = sgt_connect(p.http);
    sgt_send_str(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    read_resp(c, &r);
    cr_assert_eq(r.status, 503, "%d %s", r.status, r.body);
    assert_header(&r, "Retry-After", "1");
    assert_header(&r, "Connection", "close");
    assert_header(&r, "Content-Type", "application/json");
    assert_body_has(&r, "{\"error\":");
    sgt_response_free(&r);
    cr_assert(sgt_wait_closed(c, 5000));
    close(c);

    /* The first two still work. */
    sgt_send_str(a, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    read_resp(a, &r);
    cr_assert_eq(r.status, 200);
    sgt_response_free(&r);
    close(a);
    close(b);
    sgt_sleep_ms(300); /* let the server see both closes before the next connection */

    /* With those gone, a scrape gets through and only counts itself. */
    cr_assert_eq(sgt_wait_metric(p.http, "streamgate_connections{transport=\"http\"}", 1, 5000), 1);
    cr_assert_eq(sgt_metric(p.http, "streamgate_connections_rejected_total{transport=\"http\"}"),
                 1);
    cr_assert_eq(limit_hits(&p, "http_connections"), 1);
    cr_assert_eq(sgt_metric(p.http, "streamgate_http_requests_total{code=\"503\"}"), 1);
    sgt_stop_ok(&p);
}

static int wait_exit(pid_t pid, int timeout_ms)
{
    int64_t deadline = sgt_mono_ms() + timeout_ms;
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid, &status, WNOHANG)) == 0 && sgt_mono_ms() < deadline)
        sgt_sleep_ms(10);
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void remove_run_dir(struct sgt_proc *p)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/out.ndjson", p->dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/stderr.log", p->dir);
    unlink(path);
    rmdir(p->dir);
}

Test(http, graceful_shutdown_finishes_request_in_flight)
{
    struct sgt_proc p;
    struct sgt_response r;
    sgt_start(&p, NULL, NULL);
    int busy = sgt_connect(p.http);
    int probe = sgt_connect(p.http);
    int idle = sgt_connect(p.http);

    /* An idle keep-alive connection, served once. */
    sgt_send_str(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    read_resp(idle, &r);
    cr_assert_eq(r.status, 200);
    sgt_response_free(&r);

    sgt_send_str(busy, "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: 21\r\n\r\n{\"key\":\"las");
    /* A readiness probe whose headers are not finished yet. */
    sgt_send_str(probe, "GET /readyz HTTP/1.1\r\nHost: x\r\n");
    sgt_sleep_ms(100);
    cr_assert_eq(kill(p.pid, SIGTERM), 0);
    /* The idle connection is closed at once. */
    cr_assert(sgt_wait_closed(idle, 3000), "idle connection left open during shutdown");
    close(idle);

    /* Finished during shutdown, the probe says "not ready" and the connection ends. */
    sgt_sleep_ms(100);
    sgt_send_str(probe, "\r\n");
    read_resp(probe, &r);
    cr_assert_eq(r.status, 503, "%d %s", r.status, r.body);
    cr_assert_str_eq(r.body, "{\"status\":\"not ready\"}");
    assert_header(&r, "Connection", "close");
    sgt_response_free(&r);
    cr_assert(sgt_wait_closed(probe, 5000));
    close(probe);

    sgt_send_str(busy, "t\",\"v\":1}\n");
    read_resp(busy, &r);
    cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
    assert_header(&r, "Connection", "close");
    sgt_response_free(&r);
    cr_assert(sgt_wait_closed(busy, 5000));
    close(busy);

    int code = wait_exit(p.pid, 20000);
    char *log = sgt_read_file(p.log_path, NULL);
    cr_assert_eq(code, 0, "exit status %d; log:\n%s", code, log ? log : "");
    free(log);
    char *out = sgt_read_file(p.out_path, NULL);
    cr_assert_not_null(out);
    cr_assert_str_eq(out, "{\"key\":\"last\",\"v\":1}\n");
    free(out);
    p.pid = 0;
    remove_run_dir(&p);
}

/* Lines in a file; 0 when it does not exist. */
static size_t file_lines(const char *path)
{
    char *data = sgt_read_file(path, NULL);
    size_t n = 0;
    for (const char *c = data; c && *c; c++)
        n += *c == '\n';
    free(data);
    return n;
}

/* http.reuse_port and tcp.reuse_port: two gateways listen on the same ports, and the kernel
 * spreads connections over both. Each writes what it accepted to its own output file, so the
 * files say which gateway served which connection. */
Test(http, reuse_port_lets_two_gateways_share_both_ports)
{
    const char *first_args[] = {"--http-reuse-port", "true", "--tcp-reuse-port", "true", NULL};
    struct sgt_proc a, b;
    sgt_start(&a, first_args, NULL);
    const char *second_args[] = {"--http-listen",
                                 a.http,
                                 "--tcp-listen",
                                 a.tcp,
                                 "--http-reuse-port",
                                 "true",
                                 "--tcp-reuse-port",
                                 "true",
                                 NULL};
    sgt_start(&b, second_args, NULL);
    cr_assert_str_eq(b.http, a.http);
    cr_assert_str_eq(b.tcp, a.tcp);

    /* One event per new connection, alternately over HTTP and TCP, until both gateways have
     * written some (or 2000 connections, which a working kernel never needs: each connection
     * goes to either with equal odds). */
    int sent_http = 0, sent_tcp = 0;
    for (int i = 0; i < 2000; i++) {
        char body[96];
        snprintf(body, sizeof(body), "{\"key\":\"k%d\",\"seq\":%d}", i % 7, i);
        if (i % 2 == 0) {
            struct sgt_response r;
            sgt_post(a.http, "application/json", body, &r);
            cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
            sgt_response_free(&r);
            sent_http++;
        } else {
            int fd = sgt_connect(a.tcp);
            sgt_send_str(fd, body);
            sgt_send_str(fd, "\n");
            close(fd);
            sent_tcp++;
        }
        if (i >= 20 && file_lines(a.out_path) >= 3 && file_lines(b.out_path) >= 3)
            break;
    }
    /* Everything sent was taken by one of the two, and both took part. */
    int total = sent_http + sent_tcp;
    int64_t deadline = sgt_mono_ms() + 10000;
    while (file_lines(a.out_path) + file_lines(b.out_path) < (size_t)total &&
           sgt_mono_ms() < deadline)
        sgt_sleep_ms(20);
    size_t la = file_lines(a.out_path), lb = file_lines(b.out_path);
    cr_log_info("reuse_port: %d connections, first gateway served %zu, second %zu", total, la, lb);
    cr_assert_eq(la + lb, (size_t)total, "%zu + %zu events written, %d sent", la, lb, total);
    cr_assert(la > 0 && lb > 0, "one gateway served nothing: %zu and %zu", la, lb);
    sgt_stop_ok(&b);
    sgt_stop_ok(&a);
}

/* Without reuse_port a second gateway on a taken port does not start, and says why. */
Test(http, taken_port_without_reuse_port_fails_to_start_clearly)
{
    struct sgt_proc a;
    sgt_start(&a, NULL, NULL);
    const char *http_args[] = {"--http-listen", a.http, "--tcp-listen", "127.0.0.1:0", NULL};
    char *err = NULL;
    int code = sgt_run(http_args, NULL, NULL, &err);
    cr_assert_eq(code, 1, "exit %d: %s", code, err);
    cr_assert(strstr(err, "\"msg\":\"start-up failed\"") && strstr(err, "address already in use") &&
                  strstr(err, "reuse_port"),
              "%s", err);
    free(err);
    const char *tcp_args[] = {"--http-listen", "127.0.0.1:0", "--tcp-listen", a.tcp, NULL};
    code = sgt_run(tcp_args, NULL, NULL, &err);
    cr_assert_eq(code, 1, "exit %d: %s", code, err);
    cr_assert(strstr(err, "tcp.listen: ") && strstr(err, "address already in use") &&
                  strstr(err, "reuse_port"),
              "%s", err);
    free(err);
    sgt_stop_ok(&a);
}
