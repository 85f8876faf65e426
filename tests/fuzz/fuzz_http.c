/* Whole HTTP connections through the server's connection code, fed from memory.
 *
 * A server is made in test mode (no listener) on its own loop, with one connection over an
 * in-memory transport: input is handed to sg_http__conn_feed in chunks the input chooses, every
 * write is recorded and completed at once or later (or failed), the connection's timer can be
 * made to fire, and the server can be shut down in the middle. The input then ends (EOF), every
 * handle is closed and everything is freed, so LeakSanitizer sees any leak.
 *
 * Input layout:
 *   byte 0  http.max_body_size: 0 the default, else n * 8 bytes
 *   byte 1  http.max_header_size: 1024 + n * 64 bytes (0xff: the default)
 *   byte 2  bits 0-2: http.max_errors - 1; bit 3: ingest needs a bearer token; bit 4: /metrics
 *           needs one; bit 5: a memory budget; bit 6: the budget starts paused; bit 7: a
 *           streams engine
 *   byte 3  http.max_decoded_size: 0 the default, else n * 32 bytes
 *   byte 4  the memory budget's limit: 96 KiB + n * 4 KiB (the read buffer takes 64 KiB)
 *   byte 5  number of steps N, then N step bytes: bits 0-2 the action, bits 3-7 the chunk size
 *           s (the next s * s bytes of the stream; 0: all the rest)
 *   rest    the byte stream the client sends
 * Actions: 0-2 feed, then complete every write; 3 feed, leave a write pending; 4 feed, fire the
 * timer, complete writes; 5 feed, fail the pending write; 6 feed, complete writes and the
 * shutdown; 7 feed, then shut the server down.
 *
 * Checks (abort on violation):
 * - the output is a sequence of complete HTTP/1.1 responses, parsed back with llhttp: each final
 *   one has exactly one Content-Length that its body matches (none for a HEAD request's), a
 *   known reason phrase, and a JSON body when it says application/json;
 * - there are no more final responses than requests an independent llhttp request parser sees
 *   start in the same stream;
 * - nothing follows a response that says Connection: close;
 * - a 202 accepted something; the accepted + rejected of all answered ingest requests add up to
 *   the events counted in metrics (at most, when a write failed or was cancelled);
 * - the connection never waits with nothing to write and no reading (it would hang); it closes
 *   once the input ends, and the loop ends with no handle open. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <llhttp.h>
#include <uv.h>

#include "http_internal.h"
#include "streamgate/budget.h"
#include "streamgate/config.h"
#include "streamgate/ingest.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "streamgate/streams.h"

#define HEADER_LEN 6
/* Bounds the drain loop at the end; a connection that needs more rounds is stuck. */
#define MAX_ROUNDS 10000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static FILE *devnull;

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_http: %s\n", what);
    abort();
}

static void close_devnull(void)
{
    if (devnull)
        fclose(devnull);
    devnull = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    devnull = fopen("/dev/null", "w");
    if (!devnull)
        abort();
    atexit(close_devnull);
    return 0;
}

/* --- the in-memory transport ------------------------------------------------------------- */

struct mem_io {
    struct sg_http_conn *conn; /* NULL once the close was reported */
    bool reading;
    bool write_pending;
    const char *wdata;
    size_t wlen;
    bool shutdown_pending;
    bool shut;          /* the write side was shut down */
    bool close_pending; /* io->close was called; reported in settle() */
    struct sg_buf out;  /* every byte that was written */
    bool lost;          /* a write failed or was cancelled */
};

static struct mem_io *mem_of(struct sg_http_conn *conn)
{
    return conn->io_arg;
}

static int mem_read_start(struct sg_http_conn *conn)
{
    struct mem_io *io = mem_of(conn);

    if (io->close_pending)
        fail("read started on a closed transport");
    io->reading = true;
    return 0;
}

static void mem_read_stop(struct sg_http_conn *conn)
{
    mem_of(conn)->reading = false;
}

static int mem_write(struct sg_http_conn *conn, const char *data, size_t len)
{
    struct mem_io *io = mem_of(conn);

    if (io->write_pending)
        fail("a second write while one is in flight");
    if (io->shut || io->close_pending)
        fail("a write after the write side was shut down or closed");
    if (len == 0)
        fail("an empty write");
    io->write_pending = true;
    io->wdata = data;
    io->wlen = len;
    return 0;
}

static int mem_shutdown(struct sg_http_conn *conn)
{
    struct mem_io *io = mem_of(conn);

    if (io->shut || io->write_pending)
        fail("shutdown twice, or with a write in flight");
    io->shut = true;
    io->shutdown_pending = true;
    return 0;
}

static void mem_close(struct sg_http_conn *conn)
{
    struct mem_io *io = mem_of(conn);

    if (io->close_pending)
        fail("closed twice");
    io->close_pending = true;
    io->reading = false;
}

static const struct sg_http_io mem_io_ops = {
    .read_start = mem_read_start,
    .read_stop = mem_read_stop,
    .write = mem_write,
    .shutdown = mem_shutdown,
    .close = mem_close,
};

/* Completes the write in flight (and any it starts) with `status`. */
static void complete_writes(struct mem_io *io, int status)
{
    while (io->conn && io->write_pending && !io->close_pending) {
        io->write_pending = false;
        if (status == 0) {
            if (sg_buf_append(&io->out, io->wdata, io->wlen) != 0)
                abort();
        } else {
            io->lost = true;
        }
        sg_http__conn_on_write(io->conn, status);
        status = 0;
    }
}

static void complete_shutdown(struct mem_io *io)
{
    if (io->conn && io->shutdown_pending && !io->close_pending) {
        io->shutdown_pending = false;
        sg_http__conn_on_shutdown(io->conn, 0);
    }
}

/* Reports a close the way libuv does (pending requests cancelled first), then lets the loop
 * run its close callbacks. */
static void settle(struct mem_io *io, uv_loop_t *loop)
{
    if (io->conn && io->close_pending) {
        struct sg_http_conn *conn = io->conn;

        if (io->write_pending) {
            io->write_pending = false;
            io->lost = true;
            sg_http__conn_on_write(conn, UV_ECANCELED);
        }
        if (io->shutdown_pending) {
            io->shutdown_pending = false;
            sg_http__conn_on_shutdown(conn, UV_ECANCELED);
        }
        io->conn = NULL;
        sg_http__conn_on_closed(conn);
    }
    uv_run(loop, UV_RUN_NOWAIT);
}

/* Feeds up to `len` bytes while the connection reads; returns how many it took. */
static size_t feed(struct mem_io *io, const char *p, size_t len)
{
    size_t done = 0;

    while (done < len && io->conn && io->reading && !io->close_pending) {
        size_t n = sg_http__conn_feed(io->conn, p + done, len - done);
        if (n == 0)
            fail("a reading connection took no input");
        done += n;
    }
    return done;
}

/* --- the reference request parser -------------------------------------------------------- */

struct ref {
    size_t started;
    bool *head; /* per started request: its method is HEAD */
    size_t cap;
};

static int ref_on_begin(llhttp_t *p)
{
    struct ref *r = p->data;

    if (r->started < r->cap)
        r->head[r->started] = false;
    r->started++;
    return 0;
}

static int ref_on_method_complete(llhttp_t *p)
{
    struct ref *r = p->data;

    if (r->started > 0 && r->started <= r->cap)
        r->head[r->started - 1] = llhttp_get_method(p) == HTTP_HEAD;
    return 0;
}

static void ref_parse(struct ref *r, const char *stream, size_t len)
{
    llhttp_settings_t settings;
    llhttp_t parser;

    llhttp_settings_init(&settings);
    settings.on_message_begin = ref_on_begin;
    settings.on_method_complete = ref_on_method_complete;
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    parser.data = r;
    llhttp_execute(&parser, stream, len);
}

/* --- the response checker ---------------------------------------------------------------- */

struct resp_check {
    const struct ref *ref;
    size_t finals;    /* final responses seen so far */
    bool after_close; /* a response said Connection: close */
    bool closing;     /* the current one says it */
    bool json;        /* the current one is application/json */
    int hdr;          /* which header the current value belongs to: 0 none, 1 Connection,
                         2 Content-Type, 3 Content-Length */
    size_t content_lengths;
    char field[32];
    size_t field_len;
    char value[128];
    size_t value_len;
    char reason[64];
    size_t reason_len;
    struct sg_buf body;
    uint64_t events; /* accepted + rejected over all ingest answers */
};

static int rc_on_begin(llhttp_t *p)
{
    struct resp_check *c = p->data;

    if (c->after_close)
        fail("a response after one that said Connection: close");
    c->closing = false;
    c->json = false;
    c->hdr = 0;
    c->content_lengths = 0;
    c->field_len = 0;
    c->value_len = 0;
    c->reason_len = 0;
    sg_buf_reset(&c->body);
    return 0;
}

static int rc_on_status(llhttp_t *p, const char *at, size_t len)
{
    struct resp_check *c = p->data;

    if (c->reason_len + len < sizeof(c->reason)) {
        memcpy(c->reason + c->reason_len, at, len);
        c->reason_len += len;
    }
    return 0;
}

static int rc_on_field(llhttp_t *p, const char *at, size_t len)
{
    struct resp_check *c = p->data;

    if (c->field_len + len < sizeof(c->field))
        memcpy(c->field + c->field_len, at, len);
    c->field_len += len;
    return 0;
}

static bool span_is(const char *s, size_t len, const char *lit)
{
    return len == strlen(lit) && strncasecmp(s, lit, len) == 0;
}

static int rc_on_field_complete(llhttp_t *p)
{
    struct resp_check *c = p->data;

    c->hdr = 0;
    if (c->field_len < sizeof(c->field)) {
        if (span_is(c->field, c->field_len, "connection"))
            c->hdr = 1;
        else if (span_is(c->field, c->field_len, "content-type"))
            c->hdr = 2;
        else if (span_is(c->field, c->field_len, "content-length"))
            c->hdr = 3;
    }
    c->field_len = 0;
    c->value_len = 0;
    return 0;
}

static int rc_on_value(llhttp_t *p, const char *at, size_t len)
{
    struct resp_check *c = p->data;

    if (c->value_len + len < sizeof(c->value)) {
        memcpy(c->value + c->value_len, at, len);
        c->value_len += len;
    }
    return 0;
}

static int rc_on_value_complete(llhttp_t *p)
{
    struct resp_check *c = p->data;

    if (c->hdr == 1 && span_is(c->value, c->value_len, "close"))
        c->closing = true;
    else if (c->hdr == 2 && span_is(c->value, c->value_len, "application/json"))
        c->json = true;
    else if (c->hdr == 3)
        c->content_lengths++;
    c->hdr = 0;
    return 0;
}

static int rc_on_headers_complete(llhttp_t *p)
{
    struct resp_check *c = p->data;
    int status = llhttp_get_status_code(p);

    if (llhttp_get_http_major(p) != 1 || llhttp_get_http_minor(p) != 1)
        fail("a response that is not HTTP/1.1");
    if (status < 200) {
        if (status != 100 || !span_is(c->reason, c->reason_len, "Continue"))
            fail("an interim response other than 100 Continue");
        return 0;
    }
    if (span_is(c->reason, c->reason_len, "Unknown") || c->reason_len == 0)
        fail("a status code without its reason phrase");
    if (c->content_lengths != 1 || (p->flags & F_CHUNKED))
        fail("a final response without exactly one Content-Length");
    if (c->finals >= c->ref->started)
        fail("more final responses than requests started");
    /* The answer to a HEAD request has the headers of the full answer and no body. */
    if (c->finals < c->ref->cap && c->ref->head[c->finals])
        return 1;
    return 0;
}

static int rc_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct resp_check *c = p->data;

    if (sg_buf_append(&c->body, at, len) != 0)
        abort();
    return 0;
}

/* Accepted + rejected of an ingest answer ({"accepted":..,"rejected":..,"errors":[..]}). */
static void check_body(struct resp_check *c, int status)
{
    cJSON *doc, *acc, *rej;

    doc = cJSON_ParseWithLength(c->body.data ? c->body.data : "", c->body.len);
    if (!doc)
        fail("an application/json body that does not parse");
    acc = cJSON_GetObjectItemCaseSensitive(doc, "accepted");
    rej = cJSON_GetObjectItemCaseSensitive(doc, "rejected");
    if (acc || rej) {
        if (!cJSON_IsNumber(acc) || !cJSON_IsNumber(rej) || acc->valuedouble < 0 ||
            rej->valuedouble < 0 || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(doc, "errors")))
            fail("an ingest answer without counts or errors");
        if ((status == 202) != (acc->valuedouble > 0))
            fail("202 without an accepted event, or accepted events without 202");
        if (status != 202 && status != 400)
            fail("an ingest answer with a status other than 202 or 400");
        c->events += (uint64_t)acc->valuedouble + (uint64_t)rej->valuedouble;
    } else if (status == 202) {
        fail("a 202 without counts");
    } else if (status >= 400 && !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(doc, "error")) &&
               !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(doc, "status"))) {
        fail("an error answer without an error message");
    }
    cJSON_Delete(doc);
}

static int rc_on_complete(llhttp_t *p)
{
    struct resp_check *c = p->data;
    int status = llhttp_get_status_code(p);

    if (status < 200)
        return 0;
    if (c->json && !(c->finals < c->ref->cap && c->ref->head[c->finals]))
        check_body(c, status);
    c->finals++;
    if (c->closing)
        c->after_close = true;
    return 0;
}

static void check_output(struct resp_check *c, const char *out, size_t len)
{
    llhttp_settings_t settings;
    llhttp_t parser;
    llhttp_errno_t err;

    llhttp_settings_init(&settings);
    settings.on_message_begin = rc_on_begin;
    settings.on_status = rc_on_status;
    settings.on_header_field = rc_on_field;
    settings.on_header_field_complete = rc_on_field_complete;
    settings.on_header_value = rc_on_value;
    settings.on_header_value_complete = rc_on_value_complete;
    settings.on_headers_complete = rc_on_headers_complete;
    settings.on_body = rc_on_body;
    settings.on_message_complete = rc_on_complete;
    llhttp_init(&parser, HTTP_RESPONSE, &settings);
    parser.data = c;
    err = llhttp_execute(&parser, out, len);
    if (err != HPE_OK) {
        fprintf(stderr, "fuzz_http: %s at output offset %zu\n", llhttp_get_error_reason(&parser),
                (size_t)(llhttp_get_error_pos(&parser) - out));
        fail("the output does not parse as HTTP responses");
    }
    /* Every write holds whole responses, so the output never ends inside one. */
    if (llhttp_finish(&parser) != HPE_OK)
        fail("the output ends inside a response");
}

/* --- one run ----------------------------------------------------------------------------- */

static void on_server_closed(void *arg)
{
    *(bool *)arg = true;
}

static void on_result(void *arg, const struct sg_window_result *res)
{
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sg_config cfg;
    struct sg_log log;
    struct sg_metrics *metrics;
    struct sg_ingest *ing;
    struct sg_streams *streams = NULL;
    struct sg_budget *budget = NULL;
    struct sg_http_server *srv = NULL;
    struct sg_streams_callbacks cbs = {.result = on_result};
    struct sg_server_env env = {0};
    struct mem_io io = {0};
    struct resp_check check = {0};
    struct ref ref = {0};
    struct sg_http_conn *conn;
    uv_loop_t loop;
    bool server_closed = false, shutdown_called = false;
    char err[256];
    const uint8_t *steps;
    size_t nsteps, stream_len, pos = 0;
    char *stream;
    uint64_t received;

    if (size < HEADER_LEN)
        return 0;
    nsteps = data[5];
    if (size < HEADER_LEN + nsteps)
        return 0;
    steps = data + HEADER_LEN;
    stream_len = size - HEADER_LEN - nsteps;
    /* Exactly its size on the heap, so a read past the end is an ASan report. */
    stream = malloc(stream_len ? stream_len : 1);
    if (!stream)
        abort();
    memcpy(stream, data + HEADER_LEN + nsteps, stream_len);

    sg_config_defaults(&cfg);
    if (data[0])
        cfg.http_max_body_size = (uint64_t)data[0] * 8;
    if (data[1] != 0xff)
        cfg.http_max_header_size = 1024 + (uint64_t)data[1] * 64;
    cfg.http_max_errors = 1 + (data[2] & 7);
    if (data[2] & 0x08 &&
        sg_config_set(&cfg, "http.auth_tokens", "s3cret,other", err, sizeof(err)) != 0)
        fail(err);
    if (data[2] & 0x10 &&
        sg_config_set(&cfg, "http.metrics_token", "m3trics", err, sizeof(err)) != 0)
        fail(err);
    if (data[3])
        cfg.http_max_decoded_size = (uint64_t)data[3] * 32;
    cfg.log_bad_input_interval_ms = 0;
    /* Short keys and few of them, so the streams engine rejects some events. */
    cfg.stream_max_keys = 4;
    sg_log_init(&log, SG_LOG_DEBUG, devnull);

    metrics = sg_metrics_create();
    if (!metrics)
        abort();
    ing = sg_ingest_create(&cfg, metrics, &log);
    if (!ing)
        abort();
    if (data[2] & 0x80) {
        streams = sg_streams_create(&cfg, metrics, &log, NULL, &cbs);
        if (!streams)
            abort();
        sg_ingest_set_streams(ing, streams);
    }
    if (data[2] & 0x20) {
        /* From a budget the connection's read buffer alone nearly fills, to a roomy one. */
        budget = sg_budget_create(96 * 1024 + (size_t)data[4] * 4096, 70, 50, metrics, &log);
        if (!budget)
            abort();
        if (data[2] & 0x40)
            sg_budget_charge(budget, SG_BUDGET_QUEUES, 96 * 1024 + (size_t)data[4] * 4096);
    }
    if (uv_loop_init(&loop) != 0)
        abort();

    env.loop = &loop;
    env.cfg = &cfg;
    env.ingest = ing;
    env.streams = streams;
    env.budget = budget;
    env.metrics = metrics;
    env.log = &log;
    if (sg_http__server_create_test(&env, &srv, err, sizeof(err)) != 0)
        fail(err);
    sg_buf_init(&io.out, 0);
    if (sg_http__server_open(srv, &mem_io_ops, &io, "fuzz:1", &conn) != 0)
        fail("cannot open a connection");
    io.conn = conn;

    for (size_t i = 0; i < nsteps && io.conn; i++) {
        unsigned action = steps[i] & 7, s = steps[i] >> 3;
        size_t want = s ? (size_t)s * s : stream_len - pos;

        want = want < stream_len - pos ? want : stream_len - pos;
        pos += feed(&io, stream + pos, want);
        settle(&io, &loop);
        if (!io.conn)
            break;
        switch (action) {
        case 3:
            break; /* the write stays in flight */
        case 4:
            if (!io.close_pending)
                sg_http__conn_expire(io.conn);
            settle(&io, &loop);
            complete_writes(&io, 0);
            break;
        case 5:
            complete_writes(&io, UV_EPIPE);
            break;
        case 6:
            complete_writes(&io, 0);
            complete_shutdown(&io);
            break;
        case 7:
            if (!shutdown_called) {
                shutdown_called = true;
                sg_http_server_shutdown(srv, on_server_closed, &server_closed);
            }
            complete_writes(&io, 0);
            break;
        default:
            complete_writes(&io, 0);
            break;
        }
        settle(&io, &loop);
    }

    /* The rest of the stream, then the end of input; everything completes at once. */
    for (int round = 0; io.conn; round++) {
        if (round == MAX_ROUNDS)
            fail("the connection does not close after its input ended");
        complete_writes(&io, 0);
        complete_shutdown(&io);
        settle(&io, &loop);
        if (!io.conn)
            break;
        if (io.reading) {
            if (pos < stream_len)
                pos += feed(&io, stream + pos, stream_len - pos);
            else
                sg_http__conn_feed_end(io.conn, UV_EOF);
        } else if (!io.write_pending && !io.close_pending) {
            fail("the connection neither reads nor writes: it would hang");
        }
        settle(&io, &loop);
    }

    if (!shutdown_called)
        sg_http_server_shutdown(srv, on_server_closed, &server_closed);
    int rounds = 0;
    while (!server_closed) {
        if (++rounds > MAX_ROUNDS)
            fail("the server does not call back after shutdown");
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    sg_http_server_destroy(srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        fail("a handle is still open after the server is gone");

    /* The whole stream, as the client sent it, through an independent parser. */
    ref.cap = stream_len + 1;
    ref.head = calloc(ref.cap, sizeof(*ref.head));
    if (!ref.head)
        abort();
    ref_parse(&ref, stream, stream_len);
    check.ref = &ref;
    sg_buf_init(&check.body, 0);
    if (getenv("FUZZ_HTTP_DUMP"))
        fprintf(stderr, "--- %zu requests started, output:\n%.*s\n---\n", ref.started,
                (int)io.out.len, io.out.data ? io.out.data : "");
    check_output(&check, io.out.data ? io.out.data : "", io.out.len);

    received =
        sg_metrics_counter_value(metrics, SG_METRIC_EVENTS_RECEIVED_TOTAL, "transport=\"http\"");
    if (io.lost ? check.events > received : check.events != received) {
        fprintf(stderr, "fuzz_http: answers count %llu events, metrics %llu\n",
                (unsigned long long)check.events, (unsigned long long)received);
        fail("the ingest answers disagree with the metrics");
    }

    sg_buf_free(&check.body);
    free(ref.head);
    sg_buf_free(&io.out);
    sg_ingest_destroy(ing);
    sg_streams_destroy(streams);
    sg_budget_destroy(budget);
    sg_metrics_destroy(metrics);
    sg_config_free(&cfg);
    free(stream);
    return 0;
}
