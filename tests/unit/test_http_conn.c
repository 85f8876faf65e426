/* The HTTP connection code driven from memory (http_internal.h's test seam): exact exchanges,
 * byte for byte, with the transport's calls checked as they happen. */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../../src/ingest/http_internal.h"
#include "streamgate/budget.h"
#include "streamgate/config.h"
#include "streamgate/ingest.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"

/* A transport that records what the connection writes; the test completes writes. */
struct rec {
    struct sg_http_conn *conn; /* NULL once its close was reported */
    bool reading;
    bool write_pending;
    const char *wdata;
    size_t wlen;
    int writes;
    bool shut;
    bool close_called;
    struct sg_buf out;
};

static int rec_read_start(struct sg_http_conn *conn)
{
    ((struct rec *)conn->io_arg)->reading = true;
    return 0;
}

static void rec_read_stop(struct sg_http_conn *conn)
{
    ((struct rec *)conn->io_arg)->reading = false;
}

static int rec_write(struct sg_http_conn *conn, const char *data, size_t len)
{
    struct rec *r = conn->io_arg;

    cr_assert(!r->write_pending, "one write at a time");
    r->write_pending = true;
    r->wdata = data;
    r->wlen = len;
    r->writes++;
    return 0;
}

static int rec_shutdown(struct sg_http_conn *conn)
{
    struct rec *r = conn->io_arg;

    cr_assert(!r->write_pending, "shutdown only once everything is written");
    r->shut = true;
    return 0;
}

static void rec_close(struct sg_http_conn *conn)
{
    struct rec *r = conn->io_arg;

    r->close_called = true;
    r->reading = false;
    /* Reported at once: the connection is freed no earlier than its timer's close callback. */
    if (r->write_pending) {
        r->write_pending = false;
        sg_http__conn_on_write(conn, UV_ECANCELED);
    }
    r->conn = NULL;
    sg_http__conn_on_closed(conn);
}

static const struct sg_http_io rec_io = {
    .read_start = rec_read_start,
    .read_stop = rec_read_stop,
    .write = rec_write,
    .shutdown = rec_shutdown,
    .close = rec_close,
};

/* One server in test mode with one connection. */
static struct sg_config cfg;
static struct sg_log log_;
static struct sg_metrics *metrics;
static struct sg_ingest *ing;
static struct sg_budget *budget;
static uv_loop_t loop;
static struct sg_http_server *srv;
static struct rec rec;
static FILE *devnull;

static void open_server(bool with_budget)
{
    struct sg_server_env env = {0};
    char err[256];
    struct sg_http_conn *conn;

    devnull = fopen("/dev/null", "w");
    cr_assert_not_null(devnull);
    sg_log_init(&log_, SG_LOG_DEBUG, devnull);
    metrics = sg_metrics_create();
    cr_assert_not_null(metrics);
    ing = sg_ingest_create(&cfg, metrics, &log_);
    cr_assert_not_null(ing);
    if (with_budget) {
        budget = sg_budget_create(1 << 20, 70, 50, metrics, &log_);
        cr_assert_not_null(budget);
    }
    cr_assert_eq(uv_loop_init(&loop), 0);
    env.loop = &loop;
    env.cfg = &cfg;
    env.ingest = ing;
    env.budget = budget;
    env.metrics = metrics;
    env.log = &log_;
    cr_assert_eq(sg_http__server_create_test(&env, &srv, err, sizeof(err)), 0, "%s", err);
    sg_buf_init(&rec.out, 0);
    cr_assert_eq(sg_http__server_open(srv, &rec_io, &rec, "test:1", &conn), 0);
    rec.conn = conn;
    cr_assert(rec.reading, "a new connection reads");
}

static void on_closed(void *arg)
{
    *(bool *)arg = true;
}

static void close_server(void)
{
    bool closed = false;

    /* The client goes away, so a lingering connection need not wait for its timer. */
    if (rec.conn && rec.reading)
        sg_http__conn_feed_end(rec.conn, UV_EOF);
    sg_http_server_shutdown(srv, on_closed, &closed);
    while (!closed)
        cr_assert_geq(uv_run(&loop, UV_RUN_ONCE), 0);
    sg_http_server_destroy(srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0, "every handle is closed");
    sg_ingest_destroy(ing);
    sg_budget_destroy(budget);
    budget = NULL;
    sg_metrics_destroy(metrics);
    sg_buf_free(&rec.out);
    memset(&rec, 0, sizeof(rec));
    fclose(devnull);
}

static void setup(void)
{
    sg_config_defaults(&cfg);
    cfg.log_bad_input_interval_ms = 0;
}

static void teardown(void)
{
    sg_config_free(&cfg);
}

static void feed(const char *s)
{
    size_t len = strlen(s);

    cr_assert_not_null(rec.conn);
    cr_assert_eq(sg_http__conn_feed(rec.conn, s, len), len);
}

/* Completes the write in flight, recording its bytes. */
static void complete_write(void)
{
    cr_assert(rec.write_pending, "a write is in flight");
    rec.write_pending = false;
    cr_assert_eq(sg_buf_append(&rec.out, rec.wdata, rec.wlen), 0);
    sg_http__conn_on_write(rec.conn, 0);
}

static void expect_output(const char *want)
{
    size_t len = strlen(want);

    cr_expect_eq(rec.out.len, len, "output is %zu bytes, want %zu:\n%.*s", rec.out.len, len,
                 (int)rec.out.len, rec.out.data ? rec.out.data : "");
    if (rec.out.len == len)
        cr_expect_arr_eq(rec.out.data, want, len, "output:\n%.*s", (int)rec.out.len, rec.out.data);
}

#define JSON_HDR   "Content-Type: application/json\r\n"
#define ACCEPTED_1 "{\"accepted\":1,\"rejected\":0,\"errors\":[]}"

TestSuite(http_conn, .init = setup, .fini = teardown);

Test(http_conn, pipelined_pair_answered_in_order_in_one_write)
{
    open_server(false);
    feed("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: "
         "22\r\n\r\n{\"key\":\"k\",\"value\":1}\n"
         "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(rec.writes, 1, "both answers go out in one write");
    complete_write();
    expect_output("HTTP/1.1 202 Accepted\r\n" JSON_HDR "Content-Length: 39\r\n\r\n" ACCEPTED_1
                  "HTTP/1.1 200 OK\r\n" JSON_HDR "Content-Length: 15\r\n\r\n{\"status\":\"ok\"}");
    cr_expect(rec.reading, "keep-alive: still reading");
    cr_expect(!rec.shut && !rec.close_called);
    cr_expect_eq(
        sg_metrics_counter_value(metrics, SG_METRIC_EVENTS_ACCEPTED_TOTAL, "transport=\"http\""),
        1);
    close_server();
}

Test(http_conn, answers_wait_for_the_write_in_flight)
{
    open_server(false);
    feed("GET /healthz HTTP/1.1\r\n\r\n");
    cr_assert_eq(rec.writes, 1);
    /* The first write is still out: the next answer waits in the other buffer. */
    feed("GET /nope HTTP/1.1\r\n\r\n");
    cr_assert_eq(rec.writes, 1);
    complete_write();
    cr_assert_eq(rec.writes, 2, "the held answer is written once the first write completes");
    complete_write();
    expect_output("HTTP/1.1 200 OK\r\n" JSON_HDR "Content-Length: 15\r\n\r\n{\"status\":\"ok\"}"
                  "HTTP/1.1 404 Not Found\r\n" JSON_HDR
                  "Content-Length: 21\r\n\r\n{\"error\":\"not found\"}");
    close_server();
}

Test(http_conn, oversized_body_gets_413_and_the_connection_closes)
{
    cfg.http_max_body_size = 16;
    open_server(false);
    /* Too large to read and drop: answered at the headers, the body is never read. */
    feed("POST /v1/events HTTP/1.1\r\nContent-Length: 100000\r\n\r\n{\"key\":");
    cr_expect(!rec.reading, "no more reading once the last answer is queued");
    complete_write();
    expect_output("HTTP/1.1 413 Content Too Large\r\n" JSON_HDR
                  "Content-Length: 43\r\nConnection: close\r\n\r\n"
                  "{\"error\":\"body exceeds http.max_body_size\"}");
    /* Everything is out: the write side is shut and input is dropped until the peer closes. */
    cr_expect(rec.shut, "write side shut down");
    cr_expect(rec.reading, "lingering: reading to drop input");
    feed("more body bytes that are dropped");
    cr_expect_eq(rec.writes, 1);
    sg_http__conn_feed_end(rec.conn, UV_EOF);
    cr_expect(rec.close_called, "closed once the peer closed");
    cr_expect_eq(
        sg_metrics_counter_value(metrics, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"http_body_size\""),
        1);
    close_server();
}

Test(http_conn, chunked_body_over_the_limit_gets_413_and_closes)
{
    cfg.http_max_body_size = 8;
    open_server(false);
    feed("POST /v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
         "6\r\n{\"a\":1\r\n6\r\n,\"b\":2\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n");
    complete_write();
    expect_output("HTTP/1.1 413 Content Too Large\r\n" JSON_HDR
                  "Content-Length: 43\r\nConnection: close\r\n\r\n"
                  "{\"error\":\"body exceeds http.max_body_size\"}");
    cr_expect(rec.shut);
    close_server();
}

Test(http_conn, paused_budget_gets_503_and_keeps_the_connection)
{
    open_server(true);
    sg_budget_charge(budget, SG_BUDGET_QUEUES, 1 << 20);
    cr_assert(sg_budget_paused(budget));
    feed("POST /v1/events HTTP/1.1\r\nContent-Length: 22\r\n\r\n{\"key\":\"k\",\"value\":1}\n"
         "GET /readyz HTTP/1.1\r\n\r\n");
    complete_write();
    expect_output("HTTP/1.1 503 Service Unavailable\r\n" JSON_HDR
                  "Content-Length: 69\r\nRetry-After: 1\r\n\r\n"
                  "{\"error\":\"over the memory budget: nothing was ingested, retry later\"}"
                  "HTTP/1.1 503 Service Unavailable\r\n" JSON_HDR
                  "Content-Length: 22\r\n\r\n{\"status\":\"not ready\"}");
    cr_expect(rec.reading && !rec.shut, "the connection stays open");
    cr_expect_eq(
        sg_metrics_counter_value(metrics, SG_METRIC_EVENTS_RECEIVED_TOTAL, "transport=\"http\""), 0,
        "nothing was ingested");
    sg_budget_release(budget, SG_BUDGET_QUEUES, 1 << 20);
    close_server();
}

Test(http_conn, expect_continue_then_final_answer)
{
    open_server(false);
    feed("POST /v1/events HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 22\r\n\r\n");
    complete_write();
    expect_output("HTTP/1.1 100 Continue\r\n\r\n");
    feed("{\"key\":\"k\",\"value\":1}\n");
    complete_write();
    expect_output("HTTP/1.1 100 Continue\r\n\r\n"
                  "HTTP/1.1 202 Accepted\r\n" JSON_HDR "Content-Length: 39\r\n\r\n" ACCEPTED_1);
    close_server();
}

Test(http_conn, parse_error_after_head_still_has_its_body)
{
    open_server(false);
    /* The second request's method never parses: its 400 is not an answer to HEAD. */
    feed("HEAD /healthz HTTP/1.1\r\n\r\nG@T / HTTP/1.1\r\n\r\n");
    complete_write();
    expect_output("HTTP/1.1 200 OK\r\n" JSON_HDR "Content-Length: 15\r\n\r\n"
                  "HTTP/1.1 400 Bad Request\r\n" JSON_HDR
                  "Content-Length: 50\r\nConnection: close\r\n\r\n"
                  "{\"error\":\"Invalid method encountered\",\"offset\":27}");
    close_server();
}

Test(http_conn, header_timeout_answers_408)
{
    open_server(false);
    feed("GET /healthz HTTP/1.1\r\nHost:");
    cr_assert_eq(rec.writes, 0);
    sg_http__conn_expire(rec.conn);
    complete_write();
    expect_output("HTTP/1.1 408 Request Timeout\r\n" JSON_HDR
                  "Content-Length: 67\r\nConnection: close\r\n\r\n"
                  "{\"error\":\"request headers not received within http.header_timeout\"}");
    close_server();
}

Test(http_conn, client_that_does_not_read_stalls_the_parser)
{
    static const char req[] = "GET /metrics HTTP/1.1\r\n\r\n";
    size_t n = SG_HTTP_READ_BUF_SIZE / (sizeof(req) - 1), answered = 0;
    char *many = malloc(n * (sizeof(req) - 1) + 1);

    cr_assert_not_null(many);
    for (size_t i = 0; i < n; i++)
        memcpy(many + i * (sizeof(req) - 1), req, sizeof(req) - 1);
    many[n * (sizeof(req) - 1)] = '\0';
    open_server(false);
    feed(many);
    /* Far more than SG_HTTP_OUT_HIGH of answers are due: parsing stopped, reading too. */
    cr_expect(!rec.reading, "reading stops while the output is over the mark");
    cr_expect_eq(sg_http__conn_feed(rec.conn, req, sizeof(req) - 1), 0);
    for (int i = 0; i < 1000 && rec.write_pending; i++)
        complete_write();
    cr_expect(rec.reading, "reading again once everything is out");
    for (const char *p = rec.out.data;
         (p = memmem(p, rec.out.len - (size_t)(p - rec.out.data), "HTTP/1.1 200 OK\r\n", 17));
         p += 17)
        answered++;
    cr_expect_eq(answered, n, "every pipelined request answered: %zu of %zu", answered, n);
    free(many);
    close_server();
}
