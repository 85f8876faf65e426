/* HTTP target: each lane is one keep-alive connection with at most one request in flight. A
 * request carries one event (a JSON object), or a batch as a JSON array or NDJSON. Responses
 * are parsed with llhttp; a 2xx counts the "accepted" and "rejected" numbers of its body, 400
 * counts its events as rejected, 503/429 is pushback, sent again after Retry-After with
 * --retry. A request whose connection ends before its answer is lost: the server may or may
 * not have taken it, so it is neither retried nor counted as acknowledged.
 *
 * A connection is opened when its lane has something to send; one with nothing to send is
 * closed while another lane waits out pushback, so a server at its connection limit gets the
 * slot back. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gen.h"

#define GEN_HTTP_CONNECT_TRIES 5

static void gen_http__send(struct gen_lane *lane);
static void gen_http__connect(struct gen_lane *lane);

static void gen_http__close_cb(uv_handle_t *h)
{
    struct gen_lane *lane = container_of((uv_tcp_t *)h, struct gen_lane, tcp);
    struct gen_app *app = lane->app;
    lane->state = GEN_CONN_IDLE;
    if (lane->busy && !lane->waiting_retry) {
        /* The connection ended with the request unanswered. */
        lane->busy = false;
        app->stats.errors++;
        gen_lane_lost(lane);
    }
    if (!app->finished)
        gen_lane_settled(lane);
}

/* Closes the lane's connection; the close callback settles what was in flight. */
static void gen_http__disconnect(struct gen_lane *lane)
{
    if (lane->state == GEN_CONN_OPEN || lane->state == GEN_CONN_CONNECTING) {
        lane->state = GEN_CONN_CLOSING;
        uv_close((uv_handle_t *)&lane->tcp, gen_http__close_cb);
    }
}

void gen_http_close(struct gen_lane *lane)
{
    gen_http__disconnect(lane);
}

/* ---- responses ----------------------------------------------------------------------- */

static int gen_http__on_message_begin(llhttp_t *p)
{
    struct gen_lane *lane = container_of(p, struct gen_lane, parser);
    lane->body_len = 0;
    lane->retry_after_len = 0;
    lane->hdr_field_len = 0;
    lane->hdr_is_retry_after = false;
    return 0;
}

static int gen_http__on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct gen_lane *lane = container_of(p, struct gen_lane, parser);
    size_t room = sizeof(lane->hdr_field) - 1 - lane->hdr_field_len;
    size_t n = len < room ? len : room;
    memcpy(lane->hdr_field + lane->hdr_field_len, at, n);
    lane->hdr_field_len += n;
    return 0;
}

static int gen_http__on_header_field_complete(llhttp_t *p)
{
    struct gen_lane *lane = container_of(p, struct gen_lane, parser);
    lane->hdr_field[lane->hdr_field_len] = '\0';
    lane->hdr_is_retry_after = strcasecmp(lane->hdr_field, "retry-after") == 0;
    lane->hdr_field_len = 0;
    if (lane->hdr_is_retry_after)
        lane->retry_after_len = 0;
    return 0;
}

static int gen_http__on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct gen_lane *lane = container_of(p, struct gen_lane, parser);
    if (!lane->hdr_is_retry_after)
        return 0;
    size_t room = sizeof(lane->retry_after) - 1 - lane->retry_after_len;
    size_t n = len < room ? len : room;
    memcpy(lane->retry_after + lane->retry_after_len, at, n);
    lane->retry_after_len += n;
    lane->retry_after[lane->retry_after_len] = '\0';
    return 0;
}

static int gen_http__on_body(llhttp_t *p, const char *at, size_t len)
{
    struct gen_lane *lane = container_of(p, struct gen_lane, parser);
    size_t room = sizeof(lane->body) - 1 - lane->body_len;
    size_t n = len < room ? len : room; /* the counts come first; a long error list is cut */
    memcpy(lane->body + lane->body_len, at, n);
    lane->body_len += n;
    lane->body[lane->body_len] = '\0';
    return 0;
}

/* Keeps the indexes the answer's "errors" list names in lane->refused; false when the list
 * is absent, out of order, not all numbers or out of memory. */
static bool gen_http__refused(struct gen_lane *lane, const cJSON *errors)
{
    const cJSON *e;
    lane->nrefused = 0;
    if (!cJSON_IsArray(errors))
        return false;
    cJSON_ArrayForEach(e, errors)
    {
        const cJSON *index = cJSON_GetObjectItemCaseSensitive(e, "index");
        if (!cJSON_IsNumber(index) || index->valuedouble < 0 ||
            (lane->nrefused && index->valuedouble <= lane->refused[lane->nrefused - 1]))
            return false;
        if (lane->nrefused == lane->refused_cap) {
            size_t cap = lane->refused_cap ? 2 * lane->refused_cap : 64;
            uint32_t *grown = realloc(lane->refused, cap * sizeof(*grown));
            if (!grown)
                return false;
            lane->refused = grown;
            lane->refused_cap = cap;
        }
        lane->refused[lane->nrefused++] = (uint32_t)index->valuedouble;
    }
    return true;
}

/* Reads "accepted" and "rejected" from an ingest answer; -1 where absent. The body may have
 * been cut short, so the numbers are looked for as text when it does not parse. Sets *named
 * when lane->refused holds the index of every refused event. */
static void gen_http__counts(struct gen_lane *lane, int64_t *accepted, int64_t *rejected,
                             bool *named)
{
    const char *body = lane->body;
    *accepted = *rejected = -1;
    *named = false;
    cJSON *j = cJSON_Parse(body);
    if (j) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "accepted");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "rejected");
        if (cJSON_IsNumber(a))
            *accepted = (int64_t)a->valuedouble;
        if (cJSON_IsNumber(r))
            *rejected = (int64_t)r->valuedouble;
        *named = gen_http__refused(lane, cJSON_GetObjectItemCaseSensitive(j, "errors")) &&
                 *rejected >= 0 && lane->nrefused == (size_t)*rejected;
        cJSON_Delete(j);
        return;
    }
    const char *a = strstr(body, "\"accepted\":"), *r = strstr(body, "\"rejected\":");
    if (a)
        *accepted = strtoll(a + 11, NULL, 10);
    if (r)
        *rejected = strtoll(r + 11, NULL, 10);
}

static void gen_http__retry_cb(uv_timer_t *t)
{
    struct gen_lane *lane = container_of(t, struct gen_lane, retry_timer);
    struct gen_app *app = lane->app;
    if (app->finished)
        return;
    if (lane->waiting_retry) {
        lane->waiting_retry = false;
        app->pushback_waiting--;
    }
    if (lane->busy) { /* a request waits to go again */
        if (lane->state == GEN_CONN_OPEN)
            gen_http__send(lane);
        else if (lane->state == GEN_CONN_IDLE)
            gen_http__connect(lane);
        return;
    }
    gen_lane_settled(lane);
}

static int gen_http__on_message_complete(llhttp_t *p)
{
    struct gen_lane *lane = container_of(p, struct gen_lane, parser);
    struct gen_app *app = lane->app;
    int status = (int)p->status_code;
    /* Asked here, while the parser still holds this answer's headers: once it is back in its
     * initial state it no longer knows the body had a length, and says the connection ends. */
    lane->keep_alive = llhttp_should_keep_alive(p);
    if (!lane->busy || lane->waiting_retry)
        return 0; /* an answer to nothing (a refused connection answers before the request) */
    lane->got_response = true;
    app->stats.requests++;
    gen_hist_add(&app->stats.lat, (uv_hrtime() - lane->sent_at_ns) / 1000);
    uint64_t n = lane->req_events;
    int64_t accepted, rejected;
    bool named;
    if (status >= 200 && status < 300) {
        gen_http__counts(lane, &accepted, &rejected, &named);
        lane->busy = false;
        gen_lane_ack(lane, accepted < 0 ? n : (uint64_t)accepted,
                     rejected < 0 ? 0 : (uint64_t)rejected, named ? lane->refused : NULL,
                     lane->nrefused);
    } else if (status == 400) {
        gen_http__counts(lane, &accepted, &rejected, &named);
        lane->busy = false;
        gen_lane_ack(lane, 0, rejected < 0 ? n : (uint64_t)rejected, NULL, 0);
    } else if (status == 503 || status == 429) {
        app->stats.pushback++;
        if (app->opts.retry && lane->attempts <= app->opts.max_retries) {
            uint64_t wait_ms = 1000;
            if (lane->retry_after_len > 0) {
                char *end;
                unsigned long long s = strtoull(lane->retry_after, &end, 10);
                if (end != lane->retry_after)
                    wait_ms = s > 60 ? 60000 : s * 1000;
            }
            lane->waiting_retry = true;
            app->pushback_waiting++;
            uv_timer_start(&lane->retry_timer, gen_http__retry_cb, wait_ms ? wait_ms : 1, 0);
        } else {
            lane->busy = false;
            app->stats.errors++;
            gen_lane_lost(lane);
        }
    } else {
        lane->busy = false;
        app->stats.errors++;
        gen_lane_lost(lane);
    }
    return 0;
}

static void gen_http__alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct gen_lane *lane = container_of((uv_tcp_t *)h, struct gen_lane, tcp);
    (void)suggested;
    *buf = uv_buf_init(lane->app->rbuf, sizeof(lane->app->rbuf));
}

static void gen_http__read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct gen_lane *lane = container_of((uv_tcp_t *)s, struct gen_lane, tcp);
    struct gen_app *app = lane->app;
    if (nread == 0 || lane->state != GEN_CONN_OPEN)
        return;
    if (nread < 0) {
        gen_http__disconnect(lane);
        return;
    }
    llhttp_errno_t err = llhttp_execute(&lane->parser, buf->base, (size_t)nread);
    if (err != HPE_OK) {
        app->stats.errors++;
        gen_http__disconnect(lane);
        return;
    }
    /* After an answer: close when the server said so, and otherwise send the next request. */
    if (!lane->busy || lane->waiting_retry) {
        if (!lane->keep_alive || lane->waiting_retry)
            gen_http__disconnect(lane);
        else
            gen_lane_settled(lane);
    }
}

/* ---- requests ------------------------------------------------------------------------ */

static void gen_http__written(uv_write_t *req, int status)
{
    struct gen_lane *lane = container_of(req, struct gen_lane, write_req);
    if (status < 0 && lane->state == GEN_CONN_OPEN) {
        /* The answer may still be readable (a server refusing the connection answers and
         * closes); the read side ends the connection. */
        return;
    }
}

static void gen_http__send(struct gen_lane *lane)
{
    struct gen_app *app = lane->app;
    lane->attempts++;
    if (lane->attempts > 1)
        app->stats.retried++;
    else
        app->stats.sent += lane->req_events;
    lane->got_response = false;
    lane->sent_at_ns = uv_hrtime();
    uv_buf_t buf = uv_buf_init(lane->req, (unsigned)lane->req_len);
    int rc = uv_write(&lane->write_req, (uv_stream_t *)&lane->tcp, &buf, 1, gen_http__written);
    if (rc < 0)
        gen_http__disconnect(lane);
    else
        app->stats.bytes += lane->req_len;
}

static int gen_http__reserve(struct gen_lane *lane, size_t need)
{
    if (need <= lane->req_cap)
        return 0;
    size_t cap = lane->req_cap ? lane->req_cap : 4096;
    while (cap < need)
        cap *= 2;
    char *p = realloc(lane->req, cap);
    if (!p)
        return -ENOMEM;
    lane->req = p;
    lane->req_cap = cap;
    return 0;
}

/* Takes up to --batch events from the lane's queue into one request. */
static int gen_http__build(struct gen_lane *lane)
{
    struct gen_app *app = lane->app;
    struct gen_queue *q = &lane->fill;
    uint64_t n = q->nevents < app->opts.batch ? q->nevents : app->opts.batch;
    const char *start = q->data + q->rd, *p = start;
    for (uint64_t i = 0; i < n; i++)
        p = (const char *)memchr(p, '\n', (size_t)(q->data + q->wr - p)) + 1;
    size_t raw = (size_t)(p - start);
    bool single = n == 1 && app->opts.batch == 1 && !app->opts.ndjson;
    bool array = !single && !app->opts.ndjson;
    size_t body_len = single ? raw - 1 : array ? raw + 1 : raw;
    char head[1536];
    int hl = snprintf(head, sizeof(head),
                      "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "%s%s%s\r\n",
                      app->path, app->host_header,
                      app->opts.ndjson ? "application/x-ndjson" : "application/json", body_len,
                      app->opts.token ? "Authorization: Bearer " : "",
                      app->opts.token ? app->opts.token : "", app->opts.token ? "\r\n" : "");
    if (hl < 0 || (size_t)hl >= sizeof(head) || gen_http__reserve(lane, (size_t)hl + body_len) != 0)
        return -ENOMEM;
    memcpy(lane->req, head, (size_t)hl);
    char *b = lane->req + hl;
    if (single) {
        memcpy(b, start, raw - 1);
    } else if (array) {
        b[0] = '[';
        memcpy(b + 1, start, raw);
        for (char *c = b + 1, *e = b + 1 + raw; c < e; c++)
            if (*c == '\n')
                *c = ',';
        b[raw] = ']';
    } else {
        memcpy(b, start, raw);
    }
    lane->req_len = (size_t)hl + body_len;
    lane->req_events = n;
    lane->attempts = 0;

    /* The request's events move from the queue to flight (records too, for the ack). */
    struct gen_queue *f = &lane->flight;
    gen_queue_reset(f);
    f->nevents = n;
    if (app->keep_expect) {
        memcpy(f->recs, q->recs + q->rrd, n * sizeof(*f->recs));
        f->rwr = n;
        q->rrd += n;
    }
    q->rd += raw;
    q->nevents -= n;
    if (q->nevents == 0)
        gen_queue_reset(q);
    return 0;
}

static void gen_http__connected(uv_connect_t *req, int status)
{
    struct gen_lane *lane = container_of(req, struct gen_lane, connect_req);
    struct gen_app *app = lane->app;
    if (lane->state != GEN_CONN_CONNECTING)
        return; /* closed meanwhile */
    if (status < 0) {
        app->stats.errors++;
        lane->connect_failures++;
        lane->state = GEN_CONN_CLOSING;
        uv_close((uv_handle_t *)&lane->tcp, gen_http__close_cb);
        if (lane->connect_failures >= GEN_HTTP_CONNECT_TRIES) {
            char msg[160];
            snprintf(msg, sizeof(msg), "cannot connect to %s: %s", app->opts.http_url,
                     uv_strerror(status));
            gen_fail(app, status, msg);
        } else {
            /* Nothing was sent: try again shortly, keeping what waits. */
            lane->waiting_retry = true;
            app->pushback_waiting++;
            uv_timer_start(&lane->retry_timer, gen_http__retry_cb, 100u * lane->connect_failures,
                           0);
        }
        return;
    }
    lane->connect_failures = 0;
    lane->state = GEN_CONN_OPEN;
    uv_tcp_nodelay(&lane->tcp, 1);
    llhttp_init(&lane->parser, HTTP_RESPONSE, &app->http_settings);
    uv_read_start((uv_stream_t *)&lane->tcp, gen_http__alloc, gen_http__read);
    if (lane->busy)
        gen_http__send(lane);
    else
        gen_lane_settled(lane);
}

static void gen_http__connect(struct gen_lane *lane)
{
    struct gen_app *app = lane->app;
    uv_tcp_init(app->loop, &lane->tcp);
    lane->state = GEN_CONN_CONNECTING;
    int rc = uv_tcp_connect(&lane->connect_req, &lane->tcp, (struct sockaddr *)&app->addr,
                            gen_http__connected);
    if (rc < 0) {
        lane->state = GEN_CONN_CLOSING;
        uv_close((uv_handle_t *)&lane->tcp, gen_http__close_cb);
        app->stats.errors++;
        gen_fail(app, rc, "cannot connect");
    }
}

void gen_http_kick(struct gen_lane *lane, bool flush)
{
    struct gen_app *app = lane->app;
    if (lane->waiting_retry || lane->state == GEN_CONN_CONNECTING ||
        lane->state == GEN_CONN_CLOSING)
        return;
    if (lane->busy) {
        if (lane->state == GEN_CONN_IDLE) /* a retry's connection */
            gen_http__connect(lane);
        return;
    }
    bool ready = lane->fill.nevents >= app->opts.batch || (flush && lane->fill.nevents > 0);
    if (!ready) {
        if (lane->fill.nevents == 0 && lane->state == GEN_CONN_OPEN && app->pushback_waiting > 0)
            gen_http__disconnect(lane); /* give the server's connection slot back */
        return;
    }
    if (gen_http__build(lane) != 0) {
        gen_fail(app, -ENOMEM, "out of memory building a request");
        return;
    }
    lane->busy = true;
    if (lane->state == GEN_CONN_OPEN)
        gen_http__send(lane);
    else
        gen_http__connect(lane);
}

int gen_http_init(struct gen_app *app, char *errstr, size_t errstr_size)
{
    const char *url = app->opts.http_url;
    /* First, so that ending the run can close them whatever fails below. */
    for (unsigned i = 0; i < app->nlanes; i++) {
        uv_timer_init(app->loop, &app->lanes[i].retry_timer);
        app->lanes[i].state = GEN_CONN_IDLE;
    }
    if (strncmp(url, "http://", 7) != 0) {
        snprintf(errstr, errstr_size, "--http: only http:// URLs are supported, not \"%s\"", url);
        return -EINVAL;
    }
    const char *hp = url + 7;
    const char *slash = strchr(hp, '/');
    size_t hplen = slash ? (size_t)(slash - hp) : strlen(hp);
    snprintf(app->path, sizeof(app->path), "%s", slash ? slash : "/v1/events");
    if (hplen == 0 || hplen >= sizeof(app->host_header)) {
        snprintf(errstr, errstr_size, "--http: no host in \"%s\"", url);
        return -EINVAL;
    }
    memcpy(app->host_header, hp, hplen);
    app->host_header[hplen] = '\0';
    char host[256], port[16] = "80";
    const char *h = app->host_header;
    const char *portp = NULL;
    size_t hostlen;
    if (*h == '[') {
        const char *rb = strchr(h, ']');
        if (!rb)
            goto bad;
        h++;
        hostlen = (size_t)(rb - h);
        if (rb[1] == ':')
            portp = rb + 2;
        else if (rb[1])
            goto bad;
    } else {
        const char *colon = strchr(h, ':');
        hostlen = colon ? (size_t)(colon - h) : strlen(h);
        if (colon)
            portp = colon + 1;
    }
    if (hostlen == 0 || hostlen >= sizeof(host))
        goto bad;
    memcpy(host, h, hostlen);
    host[hostlen] = '\0';
    if (portp) {
        if (!*portp || strlen(portp) >= sizeof(port))
            goto bad;
        snprintf(port, sizeof(port), "%s", portp);
    }
    int rc = gen_resolve(app->loop, host, port, &app->addr, errstr, errstr_size);
    if (rc < 0)
        return rc;

    llhttp_settings_init(&app->http_settings);
    app->http_settings.on_message_begin = gen_http__on_message_begin;
    app->http_settings.on_header_field = gen_http__on_header_field;
    app->http_settings.on_header_field_complete = gen_http__on_header_field_complete;
    app->http_settings.on_header_value = gen_http__on_header_value;
    app->http_settings.on_body = gen_http__on_body;
    app->http_settings.on_message_complete = gen_http__on_message_complete;
    return 0;
bad:
    snprintf(errstr, errstr_size, "--http: bad host or port in \"%s\"", url);
    return -EINVAL;
}
