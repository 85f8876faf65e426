/* The emulator's HTTP side. Each connection handles one request at a time: when llhttp has a
 * complete request the parser is paused and reading stops, the request is checked (headers,
 * API version, instance, access key, date, signature, content MD5) and run, and the signed
 * answer is written (after --latency ms, on a timer). Once it is out, the parser resumes on
 * whatever was pipelined behind the request in the read buffer, then reading starts again.
 * So answers keep request order without queueing, and a slow client holds one response.
 *
 * Connection life: open -> (request -> answer)* -> closing (tcp and timer handles close; the
 * memory goes in the last close callback). */
#include <errno.h>
#include <inttypes.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include "streamgate/common.h"
#include "tsemu.h"

struct tsemu_hdr {
    size_t name_off, name_len, value_off, value_len;
};

enum conn_timer { TIMER_IDLE, TIMER_LATENCY };

struct tsemu_conn {
    struct tsemu_server *srv;
    struct tsemu_conn *prev, *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write_req;
    llhttp_t parser;
    int open_handles;
    enum conn_timer timer_kind;
    bool closing;
    bool reading;
    bool eof;
    bool ready;       /* a complete request waits to be handled */
    bool processing;  /* a request is being answered: parser paused, reading stopped */
    bool close_after; /* the answer being written is the last on this connection */
    bool in_field;
    int reject_status; /* set by a callback that refused the request */
    const char *reject_code;
    const char *reject_msg;
    const char *tail; /* unparsed bytes left in rbuf behind the request */
    size_t tail_len;
    struct sg_buf url, hdrs, body, out;
    struct tsemu_hdr hdr[TSEMU_MAX_HEADERS];
    size_t hdr_count;
    char rbuf[TSEMU_READ_BUF_SIZE];
};

struct tsemu_server {
    uv_loop_t *loop;
    const struct tsemu_config *cfg;
    struct tsemu_store store;
    uint64_t rng;
    uint64_t seq;
    uv_tcp_t listener;
    bool listener_open;
    bool closing;
    llhttp_settings_t settings;
    struct tsemu_conn *conns;
    size_t conn_count;
    struct tsemu_reply reply;
    uv_timer_t index_timer; /* applies queued index changes when --index-lag has passed */
    bool index_timer_open;
    char address[80];
};

static void conn_feed(struct tsemu_conn *conn, const char *data, size_t len);
static void conn_read_start(struct tsemu_conn *conn);

static inline struct tsemu_conn *conn_of_parser(llhttp_t *parser)
{
    return sg_container_of(parser, struct tsemu_conn, parser);
}

/* ---- Closing --------------------------------------------------------------------------- */

static void conn_free(struct tsemu_conn *conn)
{
    struct tsemu_server *srv = conn->srv;

    if (conn->prev)
        conn->prev->next = conn->next;
    else
        srv->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    srv->conn_count--;
    sg_buf_free(&conn->url);
    sg_buf_free(&conn->hdrs);
    sg_buf_free(&conn->body);
    sg_buf_free(&conn->out);
    free(conn);
}

static void conn_on_close(uv_handle_t *handle)
{
    struct tsemu_conn *conn = handle->data;

    if (--conn->open_handles == 0)
        conn_free(conn);
}

static void conn_close(struct tsemu_conn *conn)
{
    if (conn->closing)
        return;
    conn->closing = true;
    conn->reading = false;
    uv_close((uv_handle_t *)&conn->tcp, conn_on_close);
    uv_close((uv_handle_t *)&conn->timer, conn_on_close);
}

/* ---- Parser callbacks ------------------------------------------------------------------ */

static int reject(struct tsemu_conn *conn, int status, const char *code, const char *msg)
{
    conn->reject_status = status;
    conn->reject_code = code;
    conn->reject_msg = msg;
    return HPE_USER;
}

static int on_message_begin(llhttp_t *parser)
{
    struct tsemu_conn *conn = conn_of_parser(parser);

    sg_buf_reset(&conn->url);
    sg_buf_reset(&conn->hdrs);
    /* A large body gives its storage back; small ones keep it for the next request. */
    if (conn->body.cap > 256 * 1024)
        sg_buf_free(&conn->body);
    else
        sg_buf_reset(&conn->body);
    conn->hdr_count = 0;
    conn->in_field = false;
    return 0;
}

static int on_url(llhttp_t *parser, const char *at, size_t len)
{
    struct tsemu_conn *conn = conn_of_parser(parser);

    /* Checked here rather than by the buffer's cap, so the NUL added later always fits. */
    if (conn->url.len + len > TSEMU_MAX_URL_BYTES || sg_buf_append(&conn->url, at, len) < 0)
        return reject(conn, 400, "OTSParameterInvalid", "Request URI is too long.");
    return 0;
}

static int on_header_field(llhttp_t *parser, const char *at, size_t len)
{
    struct tsemu_conn *conn = conn_of_parser(parser);
    struct tsemu_hdr *h;

    if (!conn->in_field) {
        if (conn->hdr_count >= TSEMU_MAX_HEADERS)
            return reject(conn, 400, "OTSParameterInvalid", "Too many headers.");
        h = &conn->hdr[conn->hdr_count];
        memset(h, 0, sizeof(*h));
        h->name_off = conn->hdrs.len;
        conn->in_field = true;
    }
    h = &conn->hdr[conn->hdr_count];
    if (sg_buf_append(&conn->hdrs, at, len) < 0)
        return reject(conn, 400, "OTSParameterInvalid", "Request headers are too large.");
    h->name_len += len;
    return 0;
}

static int on_header_field_complete(llhttp_t *parser)
{
    struct tsemu_conn *conn = conn_of_parser(parser);

    if (conn->in_field) {
        conn->hdr[conn->hdr_count].value_off = conn->hdrs.len;
        conn->hdr[conn->hdr_count].value_len = 0;
    }
    return 0;
}

static int on_header_value(llhttp_t *parser, const char *at, size_t len)
{
    struct tsemu_conn *conn = conn_of_parser(parser);

    if (!conn->in_field)
        return 0;
    if (sg_buf_append(&conn->hdrs, at, len) < 0)
        return reject(conn, 400, "OTSParameterInvalid", "Request headers are too large.");
    conn->hdr[conn->hdr_count].value_len += len;
    return 0;
}

static int on_header_value_complete(llhttp_t *parser)
{
    struct tsemu_conn *conn = conn_of_parser(parser);

    if (conn->in_field) {
        conn->hdr_count++;
        conn->in_field = false;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *parser)
{
    struct tsemu_conn *conn = conn_of_parser(parser);

    if ((parser->flags & F_CONTENT_LENGTH) && parser->content_length > SG_TS_REQUEST_MAX_BYTES)
        return reject(conn, 413, "OTSRequestBodyTooLarge", "The size of POST data is too large.");
    return 0;
}

static int on_body(llhttp_t *parser, const char *at, size_t len)
{
    struct tsemu_conn *conn = conn_of_parser(parser);
    int rc = sg_buf_append(&conn->body, at, len);

    if (rc == -E2BIG)
        return reject(conn, 413, "OTSRequestBodyTooLarge", "The size of POST data is too large.");
    if (rc < 0)
        return reject(conn, 500, "OTSInternalServerError", "Internal server error.");
    return 0;
}

static int on_message_complete(llhttp_t *parser)
{
    struct tsemu_conn *conn = conn_of_parser(parser);

    conn->ready = true;
    conn->close_after = !llhttp_should_keep_alive(parser);
    return HPE_PAUSED; /* one request at a time: the rest waits in the read buffer */
}

static void settings_init(llhttp_settings_t *s)
{
    llhttp_settings_init(s);
    s->on_message_begin = on_message_begin;
    s->on_url = on_url;
    s->on_header_field = on_header_field;
    s->on_header_field_complete = on_header_field_complete;
    s->on_header_value = on_header_value;
    s->on_header_value_complete = on_header_value_complete;
    s->on_headers_complete = on_headers_complete;
    s->on_body = on_body;
    s->on_message_complete = on_message_complete;
}

/* ---- Request checks -------------------------------------------------------------------- */

static const struct tsemu_hdr *find_hdr(const struct tsemu_conn *conn, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < conn->hdr_count; i++) {
        const struct tsemu_hdr *h = &conn->hdr[i];
        if (h->name_len == n && strncasecmp(conn->hdrs.data + h->name_off, name, n) == 0)
            return h;
    }
    return NULL;
}

static bool hdr_equals(const struct tsemu_conn *conn, const struct tsemu_hdr *h, const char *want)
{
    return h->value_len == strlen(want) &&
           memcmp(conn->hdrs.data + h->value_off, want, h->value_len) == 0;
}

static int digits(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Parses "YYYY-MM-DDTHH:MM:SS[.digits]Z" into ms since the epoch. Any digits are accepted
 * after the dot: the Go SDK writes month, day and hour there (PROTOCOL.md quirk 6). */
static int parse_date(const char *s, size_t len, int64_t *out)
{
    struct tm tm = {0};
    int64_t ms = 0;
    size_t i = 19;
    int y, mo, d, h, mi, se;

    if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[len - 1] != 'Z')
        return -EINVAL;
    y = digits(s, 4);
    mo = digits(s + 5, 2);
    d = digits(s + 8, 2);
    h = digits(s + 11, 2);
    mi = digits(s + 14, 2);
    se = digits(s + 17, 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
        se < 0 || se > 60)
        return -EINVAL;
    if (s[i] == '.') {
        size_t nd = 0;
        for (i++; i < len - 1; i++, nd++) {
            if (s[i] < '0' || s[i] > '9')
                return -EINVAL;
            if (nd < 3)
                ms = ms * 10 + (s[i] - '0');
        }
        if (nd == 0)
            return -EINVAL;
        for (; nd < 3; nd++)
            ms *= 10;
    } else if (i != len - 1) {
        return -EINVAL;
    }
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    *out = (int64_t)timegm(&tm) * 1000 + ms;
    return 0;
}

/* Checks the request as the service does and, when it passes, runs it. Fills srv->reply. */
static int handle_checked(struct tsemu_conn *conn, const char *op, size_t op_len, int64_t now_ms)
{
    static const char *const required[] = {"x-ots-date",        "x-ots-apiversion",
                                           "x-ots-accesskeyid", "x-ots-instancename",
                                           "x-ots-contentmd5",  "x-ots-signature"};
    struct tsemu_server *srv = conn->srv;
    const struct tsemu_config *cfg = srv->cfg;
    struct tsemu_reply *reply = &srv->reply;
    struct sg_ts_header headers[TSEMU_MAX_HEADERS];
    const struct tsemu_hdr *h;
    char md5[SG_TS_MD5_SIZE], opname[TSEMU_MAX_URL_BYTES + 1];
    char msg[160];
    int64_t date;
    int rc;

    if (llhttp_get_method(&conn->parser) != HTTP_POST)
        return tsemu_reply_error(reply, 405, "OTSMethodNotAllowed",
                                 "Only POST method for requests is supported.");
    for (size_t i = 0; i < SG_ARRAY_SIZE(required); i++) {
        if (!find_hdr(conn, required[i])) {
            snprintf(msg, sizeof(msg), "Missing header: '%s'.", required[i]);
            return tsemu_reply_error(reply, 400, "OTSParameterInvalid", msg);
        }
    }
    h = find_hdr(conn, "x-ots-apiversion");
    if (!hdr_equals(conn, h, SG_TS_API_VERSION))
        return tsemu_reply_error(reply, 400, "OTSParameterInvalid", "Unsupported API version.");
    h = find_hdr(conn, "x-ots-date");
    if (parse_date(conn->hdrs.data + h->value_off, h->value_len, &date) < 0)
        return tsemu_reply_error(reply, 400, "OTSParameterInvalid", "Invalid date format.");
    if (date < now_ms - TSEMU_DATE_SKEW_MS || date > now_ms + TSEMU_DATE_SKEW_MS)
        return tsemu_reply_error(reply, 403, "OTSAuthFailed",
                                 "Mismatch between system time and x-ots-date.");
    if (!hdr_equals(conn, find_hdr(conn, "x-ots-instancename"), cfg->instance))
        return tsemu_reply_error(reply, 403, "OTSAuthFailed",
                                 "The instance name does not match this endpoint.");
    if (!hdr_equals(conn, find_hdr(conn, "x-ots-accesskeyid"), cfg->access_key_id))
        return tsemu_reply_error(reply, 403, "OTSAuthFailed", "Access key id does not exist.");

    for (size_t i = 0; i < conn->hdr_count; i++) {
        const struct tsemu_hdr *x = &conn->hdr[i];
        headers[i] = (struct sg_ts_header){conn->hdrs.data + x->name_off, x->name_len,
                                           conn->hdrs.data + x->value_off, x->value_len};
    }
    memcpy(opname, op, op_len);
    opname[op_len] = '\0';
    rc = sg_ts_verify_request(cfg->access_key_secret, strlen(cfg->access_key_secret), opname,
                              headers, conn->hdr_count);
    if (rc == -EACCES)
        return tsemu_reply_error(reply, 403, "OTSAuthFailed", "Signature mismatch.");
    if (rc == -ENOMEM)
        return tsemu_reply_error(reply, 500, "OTSInternalServerError", "Internal server error.");
    if (rc < 0)
        return tsemu_reply_error(reply, 400, "OTSParameterInvalid", "Invalid signed headers.");
    if (sg_ts_content_md5(conn->body.data, conn->body.len, md5) < 0)
        return tsemu_reply_error(reply, 500, "OTSInternalServerError", "Internal server error.");
    if (!hdr_equals(conn, find_hdr(conn, "x-ots-contentmd5"), md5))
        return tsemu_reply_error(reply, 403, "OTSAuthFailed", "MD5 mismatch.");
    if (!tsemu_ops_known(op, op_len)) {
        snprintf(msg, sizeof(msg), "Unsupported operation: '%.*s'.", (int)SG_MIN(op_len, 64), op);
        return tsemu_reply_error(reply, 400, "OTSParameterInvalid", msg);
    }
    if (cfg->max_request_bytes > 0 && conn->body.len > cfg->max_request_bytes)
        return tsemu_reply_error(reply, 413, "OTSRequestBodyTooLarge",
                                 "The size of POST data is too large.");
    /* Busy is drawn only for requests that would otherwise run, like a real overload. */
    if (cfg->busy > 0 && tsemu_rand(&srv->rng) < cfg->busy)
        return tsemu_reply_error(reply, 503, "OTSServerBusy", "Server is busy.");
    return tsemu_ops_handle(&srv->store, op, op_len, conn->body.data, conn->body.len, now_ms,
                            cfg->busy_rows, &srv->rng, reply);
}

/* Appends the signed answer for srv->reply to conn->out. */
static int build_response(struct tsemu_conn *conn, const char *op, int64_t now_ms)
{
    struct tsemu_server *srv = conn->srv;
    const struct tsemu_config *cfg = srv->cfg;
    const struct tsemu_reply *reply = &srv->reply;
    char md5[SG_TS_MD5_SIZE], date[SG_TS_DATE_SIZE], sig[SG_TS_SIGNATURE_SIZE], reqid[64];
    struct sg_ts_header h[4];
    int rc;

    snprintf(reqid, sizeof(reqid), "%016" PRIx64 "-%08" PRIx64, srv->cfg->seed, srv->seq);
    if (sg_ts_content_md5(reply->body.data, reply->body.len, md5) < 0 ||
        sg_ts_format_date(now_ms, date) < 0)
        return -ENOMEM;
    h[0] = sg_ts_hdr("x-ots-contentmd5", md5);
    h[1] = sg_ts_hdr("x-ots-requestid", reqid);
    h[2] = sg_ts_hdr("x-ots-date", date);
    h[3] = sg_ts_hdr("x-ots-contenttype", "protocol buffer");
    sg_buf_reset(&conn->out);
    rc = sg_buf_printf(&conn->out,
                       "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nx-ots-contentmd5: %s\r\n"
                       "x-ots-requestid: %s\r\nx-ots-date: %s\r\n"
                       "x-ots-contenttype: protocol buffer\r\n%s",
                       reply->status, sg_http_reason(reply->status), reply->body.len, md5, reqid,
                       date, conn->close_after ? "Connection: close\r\n" : "");
    /* The signature covers "/" + operation: a request without one gets an unsigned answer. */
    if (rc == 0 && op[0]) {
        rc = sg_ts_sign_response(cfg->access_key_secret, strlen(cfg->access_key_secret), op, h, 4,
                                 sig);
        if (rc == 0)
            rc = sg_buf_printf(&conn->out, "Authorization: OTS %s:%s\r\n", cfg->access_key_id, sig);
    }
    if (rc == 0)
        rc = sg_buf_append(&conn->out, "\r\n", 2);
    if (rc == 0)
        rc = sg_buf_append(&conn->out, reply->body.data, reply->body.len);
    return rc;
}

/* ---- Answering ------------------------------------------------------------------------- */

static void conn_on_timer(uv_timer_t *timer);

static void conn_arm_idle(struct tsemu_conn *conn)
{
    conn->timer_kind = TIMER_IDLE;
    uv_timer_start(&conn->timer, conn_on_timer, TSEMU_IDLE_TIMEOUT_MS, 0);
}

static void conn_on_write(uv_write_t *req, int status)
{
    struct tsemu_conn *conn = sg_container_of(req, struct tsemu_conn, write_req);
    const char *tail;
    size_t tail_len;

    if (conn->closing)
        return;
    if (status < 0 || conn->close_after || conn->eof) {
        conn_close(conn);
        return;
    }
    conn->processing = false;
    sg_buf_reset(&conn->out);
    tail = conn->tail;
    tail_len = conn->tail_len;
    conn->tail = NULL;
    conn->tail_len = 0;
    llhttp_resume(&conn->parser);
    if (tail_len > 0)
        conn_feed(conn, tail, tail_len);
    if (!conn->closing && !conn->processing) {
        conn_arm_idle(conn);
        conn_read_start(conn);
    }
}

static void conn_send(struct tsemu_conn *conn)
{
    uv_buf_t ub = uv_buf_init(conn->out.data, (unsigned int)conn->out.len);

    if (uv_write(&conn->write_req, (uv_stream_t *)&conn->tcp, &ub, 1, conn_on_write) < 0)
        conn_close(conn);
}

static void conn_on_timer(uv_timer_t *timer)
{
    struct tsemu_conn *conn = sg_container_of(timer, struct tsemu_conn, timer);

    if (conn->timer_kind == TIMER_LATENCY)
        conn_send(conn);
    else
        conn_close(conn);
}

/* Queues the answer in srv->reply: now, or after --latency. */
static void conn_answer(struct tsemu_conn *conn, const char *op, int64_t now_ms)
{
    struct tsemu_server *srv = conn->srv;

    if (build_response(conn, op, now_ms) < 0) {
        conn_close(conn);
        return;
    }
    if (srv->cfg->verbose)
        fprintf(stderr, "tsemu: #%" PRIu64 " %s %s -> %d%s%s\n", srv->seq,
                llhttp_method_name(llhttp_get_method(&conn->parser)),
                conn->url.len ? conn->url.data : "-", srv->reply.status, srv->reply.code ? " " : "",
                srv->reply.code ? srv->reply.code : "");
    if (srv->cfg->latency > 0) {
        conn->timer_kind = TIMER_LATENCY;
        uv_timer_start(&conn->timer, conn_on_timer, srv->cfg->latency, 0);
        return;
    }
    conn_send(conn);
}

/* The operation named by the path ("/" and the operation; no query string), or "". */
static void url_op(const struct tsemu_conn *conn, const char **op, size_t *op_len)
{
    *op = "";
    *op_len = 0;
    if (conn->url.len > 1 && conn->url.data[0] == '/' &&
        !memchr(conn->url.data, '?', conn->url.len)) {
        *op = conn->url.data + 1;
        *op_len = conn->url.len - 1;
    }
}

static void index_timer_arm(struct tsemu_server *srv);

static void on_index_timer(uv_timer_t *timer)
{
    struct tsemu_server *srv = timer->data;

    if (tsemu_index_apply_due(&srv->store, sg_now_ms()) < 0)
        fprintf(stderr, "tsemu: out of memory while updating an index\n");
    index_timer_arm(srv);
}

/* Arms the index timer for the next queued index change, if any and not armed yet. */
static void index_timer_arm(struct tsemu_server *srv)
{
    int64_t due = tsemu_index_next_due(&srv->store);
    int64_t wait;

    if (due < 0 || !srv->index_timer_open || srv->closing ||
        uv_is_active((uv_handle_t *)&srv->index_timer))
        return;
    wait = due - sg_now_ms();
    uv_timer_start(&srv->index_timer, on_index_timer, wait > 0 ? (uint64_t)wait : 0, 0);
}

static void conn_handle_request(struct tsemu_conn *conn)
{
    struct tsemu_server *srv = conn->srv;
    const struct tsemu_config *cfg = srv->cfg;
    int64_t now_ms = sg_now_ms();
    const char *op = "";
    size_t op_len = 0;
    char opbuf[TSEMU_MAX_URL_BYTES + 1];

    conn->ready = false;
    conn->processing = true;
    srv->seq++;
    if (conn->reading) {
        uv_read_stop((uv_stream_t *)&conn->tcp);
        conn->reading = false;
    }
    uv_timer_stop(&conn->timer);
    if (sg_buf_append_char(&conn->url, '\0') < 0) {
        conn_close(conn);
        return;
    }
    conn->url.len--;
    if (cfg->drop > 0 && tsemu_rand(&srv->rng) < cfg->drop) {
        if (cfg->verbose)
            fprintf(stderr, "tsemu: #%" PRIu64 " %s dropped\n", srv->seq, conn->url.data);
        conn_close(conn);
        return;
    }
    url_op(conn, &op, &op_len);
    if (op_len == 0) {
        if (tsemu_reply_error(&srv->reply, 400, "OTSParameterInvalid", "Unsupported operation.") <
            0) {
            conn_close(conn);
            return;
        }
    } else if (handle_checked(conn, op, op_len, now_ms) < 0) {
        conn_close(conn);
        return;
    }
    index_timer_arm(srv);
    memcpy(opbuf, op, op_len);
    opbuf[op_len] = '\0';
    conn_answer(conn, opbuf, now_ms);
}

/* Answers a request the parser refused, and ends the connection after it. */
static void conn_refuse(struct tsemu_conn *conn, int status, const char *code, const char *msg)
{
    struct tsemu_server *srv = conn->srv;

    conn->processing = true;
    conn->close_after = true;
    srv->seq++;
    if (conn->reading) {
        uv_read_stop((uv_stream_t *)&conn->tcp);
        conn->reading = false;
    }
    uv_timer_stop(&conn->timer);
    if (tsemu_reply_error(&srv->reply, status, code, msg) < 0) {
        conn_close(conn);
        return;
    }
    if (sg_buf_append_char(&conn->url, '\0') == 0) {
        const char *op;
        size_t op_len;

        conn->url.len--;
        url_op(conn, &op, &op_len);
        conn_answer(conn, op, sg_now_ms());
        return;
    }
    conn_answer(conn, "", sg_now_ms());
}

/* ---- Reading --------------------------------------------------------------------------- */

static void conn_feed(struct tsemu_conn *conn, const char *data, size_t len)
{
    llhttp_errno_t err = llhttp_execute(&conn->parser, data, len);
    const char *pos = llhttp_get_error_pos(&conn->parser);

    if (err == HPE_OK)
        return;
    if (err == HPE_PAUSED && conn->ready) {
        size_t used = (pos >= data && pos <= data + len) ? (size_t)(pos - data) : len;

        conn->tail = data + used;
        conn->tail_len = len - used;
        conn_handle_request(conn);
        return;
    }
    if (conn->reject_status)
        conn_refuse(conn, conn->reject_status, conn->reject_code, conn->reject_msg);
    else
        conn_refuse(conn, 400, "OTSParameterInvalid", "Malformed HTTP request.");
}

static void conn_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct tsemu_conn *conn = sg_container_of((uv_tcp_t *)handle, struct tsemu_conn, tcp);

    /* One buffer per connection: reading stops while unparsed bytes wait in it. */
    *buf = uv_buf_init(conn->rbuf, sizeof(conn->rbuf));
}

static void conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct tsemu_conn *conn = sg_container_of((uv_tcp_t *)stream, struct tsemu_conn, tcp);

    if (conn->closing)
        return;
    if (nread < 0) {
        conn->eof = true;
        if (!conn->processing)
            conn_close(conn);
        return;
    }
    if (nread == 0)
        return;
    conn_arm_idle(conn);
    conn_feed(conn, buf->base, (size_t)nread);
}

static void conn_read_start(struct tsemu_conn *conn)
{
    if (conn->reading || conn->closing)
        return;
    if (conn->eof) {
        conn_close(conn);
        return;
    }
    if (uv_read_start((uv_stream_t *)&conn->tcp, conn_on_alloc, conn_on_read) < 0) {
        conn_close(conn);
        return;
    }
    conn->reading = true;
}

/* ---- Listening ------------------------------------------------------------------------- */

static void on_connection(uv_stream_t *listener, int status)
{
    struct tsemu_server *srv = sg_container_of((uv_tcp_t *)listener, struct tsemu_server, listener);
    struct tsemu_conn *conn;

    if (status < 0 || srv->closing)
        return;
    conn = calloc(1, sizeof(*conn));
    if (!conn)
        return;
    conn->srv = srv;
    sg_buf_init(&conn->url, 0);
    sg_buf_init(&conn->hdrs, TSEMU_MAX_HEADER_BYTES);
    sg_buf_init(&conn->body, SG_TS_REQUEST_MAX_BYTES);
    sg_buf_init(&conn->out, 0);
    llhttp_init(&conn->parser, HTTP_REQUEST, &srv->settings);
    conn->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = conn;
    srv->conns = conn;
    srv->conn_count++;
    uv_tcp_init(srv->loop, &conn->tcp);
    uv_timer_init(srv->loop, &conn->timer);
    conn->tcp.data = conn;
    conn->timer.data = conn;
    conn->open_handles = 2;
    if (uv_accept(listener, (uv_stream_t *)&conn->tcp) < 0 ||
        srv->conn_count > TSEMU_MAX_CONNECTIONS) {
        conn_close(conn);
        return;
    }
    uv_tcp_nodelay(&conn->tcp, 1);
    conn_arm_idle(conn);
    conn_read_start(conn);
}

static int parse_listen(const char *spec, struct sockaddr_storage *ss)
{
    char host[64];
    const char *colon = strrchr(spec, ':');
    const char *hs = spec;
    size_t hlen;
    char *end;
    long port;

    if (!colon)
        return -EINVAL;
    hlen = (size_t)(colon - spec);
    if (hlen >= 2 && spec[0] == '[' && spec[hlen - 1] == ']') {
        hs++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, hs, hlen);
    host[hlen] = '\0';
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port < 0 || port > 65535)
        return -EINVAL;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return -EINVAL;
}

static void on_index_timer_close(uv_handle_t *handle)
{
    struct tsemu_server *srv = handle->data;

    srv->index_timer_open = false;
}

static void on_listener_close(uv_handle_t *handle)
{
    struct tsemu_server *srv = handle->data;

    srv->listener_open = false;
}

int tsemu_server_create(struct tsemu_server **out, uv_loop_t *loop, const struct tsemu_config *cfg,
                        char *errstr, size_t errstr_size)
{
    struct tsemu_server *srv;
    struct sockaddr_storage ss;
    int namelen = sizeof(ss);
    char ip[64];
    int rc;

    *out = NULL;
    srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->loop = loop;
    srv->cfg = cfg;
    srv->rng = cfg->seed;
    tsemu_store_init(&srv->store);
    srv->store.index_lag_ms = (int64_t)SG_MIN(cfg->index_lag, (uint64_t)INT32_MAX);
    sg_buf_init(&srv->reply.body, 0);
    settings_init(&srv->settings);
    *out = srv;
    if (parse_listen(cfg->listen, &ss) < 0) {
        snprintf(errstr, errstr_size, "--listen %s: expected HOST:PORT", cfg->listen);
        return -EINVAL;
    }
    if (cfg->snapshot) {
        rc = tsemu_snapshot_load(&srv->store, cfg->snapshot, errstr, errstr_size);
        if (rc < 0)
            return rc;
    }
    uv_timer_init(loop, &srv->index_timer);
    srv->index_timer.data = srv;
    srv->index_timer_open = true;
    rc = uv_tcp_init(loop, &srv->listener);
    if (rc < 0) {
        snprintf(errstr, errstr_size, "tcp: %s", uv_strerror(rc));
        return rc;
    }
    srv->listener.data = srv;
    srv->listener_open = true;
    rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->listener, 128, on_connection);
    if (rc == 0)
        rc = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &namelen);
    if (rc < 0) {
        snprintf(errstr, errstr_size, "listen on %s: %s", cfg->listen, uv_strerror(rc));
        return rc;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(srv->address, sizeof(srv->address), "[%s]:%d", ip, ntohs(a->sin6_port));
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(srv->address, sizeof(srv->address), "%s:%d", ip, ntohs(a->sin_port));
    }
    return 0;
}

const char *tsemu_server_address(const struct tsemu_server *srv)
{
    return srv->address;
}

void tsemu_server_close(struct tsemu_server *srv)
{
    if (!srv || srv->closing)
        return;
    srv->closing = true;
    if (srv->listener_open && !uv_is_closing((uv_handle_t *)&srv->listener))
        uv_close((uv_handle_t *)&srv->listener, on_listener_close);
    if (srv->index_timer_open && !uv_is_closing((uv_handle_t *)&srv->index_timer))
        uv_close((uv_handle_t *)&srv->index_timer, on_index_timer_close);
    for (struct tsemu_conn *conn = srv->conns; conn; conn = conn->next)
        conn_close(conn);
}

int tsemu_server_save(struct tsemu_server *srv, char *errstr, size_t errstr_size)
{
    if (!srv->cfg->snapshot)
        return 0;
    return tsemu_snapshot_save(&srv->store, srv->cfg->snapshot, errstr, errstr_size);
}

void tsemu_server_destroy(struct tsemu_server *srv)
{
    if (!srv)
        return;
    tsemu_store_destroy(&srv->store);
    sg_buf_free(&srv->reply.body);
    free(srv);
}
