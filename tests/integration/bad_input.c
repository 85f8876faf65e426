/* The corpus of bad input and its driver; see bad_input.h. */
#define _GNU_SOURCE /* memmem */
#include "bad_input.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB      (1024 * 1024)
#define WAIT_MS  10000
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the plain link ---- */

struct plain {
    int fd;
};

static void *plain_open(const struct sgt_link_ops *ops, const char *hostport)
{
    struct plain *l = malloc(sizeof(*l));

    (void)ops;
    cr_assert_not_null(l);
    l->fd = sgt_connect(hostport);
    return l;
}

static void plain_send(void *link, const void *buf, size_t len)
{
    struct plain *l = link;

    sgt_send_all(l->fd, buf, len);
}

static int plain_response(void *link, struct sgt_response *r)
{
    struct plain *l = link;

    return sgt_read_response(l->fd, r);
}

static bool plain_closed(void *link, int timeout_ms)
{
    struct plain *l = link;

    return sgt_wait_closed(l->fd, timeout_ms);
}

static void plain_close(void *link)
{
    struct plain *l = link;

    close(l->fd);
    free(l);
}

const struct sgt_link_ops sgt_plain_link = {
    .name = "plain",
    .open = plain_open,
    .send = plain_send,
    .response = plain_response,
    .closed = plain_closed,
    .close = plain_close,
};

double sgt_plain_metric(const struct sgt_proc *p, const char *series)
{
    return sgt_metric(p->http, series);
}

/* ---- HTTP ---- */

/* How a case's bytes are made when a literal cannot hold them. */
enum gen {
    GEN_NONE,
    GEN_DEEP,         /* 2000 nested arrays */
    GEN_GZIP_CUT,     /* a gzip body missing its last 6 bytes */
    GEN_GZIP_CRC,     /* a gzip body with a broken CRC */
    GEN_GZIP_BOMB,    /* 20 MiB of spaces, a few KiB compressed: over http.max_decoded_size */
    GEN_BIG_HEADER,   /* a header line of 20,000 bytes: over http.max_header_size */
    GEN_HUGE_CONTENT, /* a Content-Length of 10 MiB announced, nothing sent */
    GEN_HUGE_CHUNKED, /* chunks adding up to one byte over http.max_body_size's default */
};

struct http_case {
    const char *name;
    const char *headers; /* extra header lines of a POST /v1/events */
    const char *body;    /* the POST's body; NULL with `raw` */
    size_t len;          /* 0: strlen */
    const char *raw;     /* instead of a POST, these bytes as they are */
    enum gen gen;
    int status, status2; /* the answer, and a second one for the bytes after it (0: none) */
    const char *answer;  /* a substring of the (last) answer's body; NULL: "offset": */
    bool closes;         /* the connection is closed after the answer */
    int accepted;        /* events the request adds to the output */
    const char *stored;  /* a substring the output must then hold */
    const char *reason;  /* a rejection reason the request counts, or NULL */
    int rejected;        /* how many events it counts under `reason` */
    const char *limit;   /* a limit the request hits (streamgate_limit_hits_total), or NULL */
    /* filled by prepare() for generated cases */
    char *made;
    size_t made_len;
};

static const char nul_body[] = "{\"key\":\"n\0ul\",\"value\":1}";

static struct http_case http_cases[] = {
    {.name = "invalid UTF-8",
     .body = "{\"key\":\"u\",\"s\":\"\xff\xfe\"}",
     .status = 400,
     .answer = "invalid_utf8: not valid UTF-8",
     .reason = "invalid_utf8",
     .rejected = 1},
    {.name = "overlong UTF-8 in an array, beside a good event",
     .body = "[{\"key\":\"u\",\"s\":\"\xc0\xaf\"},{\"key\":\"good\",\"seq\":-1}]",
     .status = 202,
     .answer = "\"accepted\":1,\"rejected\":1",
     .accepted = 1,
     .stored = "{\"key\":\"good\",\"seq\":-1}",
     .reason = "invalid_utf8",
     .rejected = 1},
    {.name = "NUL byte",
     .body = nul_body,
     .len = sizeof(nul_body) - 1,
     .status = 400,
     .answer = "invalid_json",
     .reason = "invalid_json",
     .rejected = 1},
    {.name = "an escape JSON does not have",
     .body = "{\"key\":\"ab\\uZZZZcd\",\"value\":1}",
     .status = 400,
     .answer = "invalid_json",
     .reason = "invalid_json",
     .rejected = 1},
    {.name = "an escaped NUL",
     .body = "{\"key\\u0000x\":\"a\",\"key\":\"b\"}",
     .status = 400,
     .answer = "invalid_json",
     .reason = "invalid_json",
     .rejected = 1},
    {.name = "duplicate keys: the first wins",
     .body = "{\"key\":\"dupA\",\"key\":\"dupB\",\"value\":1}",
     .status = 202,
     .answer = "\"accepted\":1",
     .accepted = 1,
     .stored = "{\"key\":\"dupA\",\"key\":\"dupB\",\"value\":1}"},
    {.name = "huge numbers",
     .body = "{\"key\":\"big\",\"value\":1e400,\"w\":123456789012345678901234567890}",
     .status = 202,
     .answer = "\"accepted\":1",
     .accepted = 1,
     .stored = "\"w\":123456789012345678901234567890}"},
    {.name = "not an object",
     .body = "[1,\"two\",null]",
     .status = 400,
     .answer = "not_object",
     .reason = "not_object",
     .rejected = 3},
    {.name = "missing key",
     .body = "{\"value\":1}",
     .status = 400,
     .answer = "missing_key",
     .reason = "missing_key",
     .rejected = 1},
    {.name = "broken framing", .body = "[{\"key\":\"a\"},", .status = 400, .answer = "\"offset\":"},
    {.name = "nesting deeper than the framer allows",
     .gen = GEN_DEEP,
     .status = 400,
     .answer = "nesting too deep"},
    {.name = "truncated gzip",
     .headers = "Content-Encoding: gzip\r\n",
     .gen = GEN_GZIP_CUT,
     .status = 400,
     .answer = "invalid gzip body"},
    {.name = "gzip with a broken CRC",
     .headers = "Content-Encoding: gzip\r\n",
     .gen = GEN_GZIP_CRC,
     .status = 400,
     .answer = "invalid gzip body"},
    {.name = "gzip that inflates over http.max_decoded_size",
     .headers = "Content-Encoding: gzip\r\n",
     .gen = GEN_GZIP_BOMB,
     .status = 413,
     .answer = "decoded body exceeds http.max_decoded_size",
     .limit = "http_decoded_size"},
    {.name = "a content type other than JSON",
     .headers = "Content-Type: text/plain\r\n",
     .body = "{\"key\":\"c\"}",
     .status = 415,
     .answer = "unsupported content type"},
    {.name = "an encoding other than gzip",
     .headers = "Content-Encoding: br\r\n",
     .body = "{\"key\":\"d\"}",
     .status = 415,
     .answer = "content encoding"},
    {.name = "NDJSON with a bad line between good ones",
     .headers = "Content-Type: application/x-ndjson\r\n",
     .body = "{\"key\":\"good\",\"seq\":-2}\n{\"key\":\"u\",\"s\":\"\xff\"}\n"
             "{\"key\":\"good\",\"seq\":-3}\n",
     .status = 202,
     .answer = "\"accepted\":2,\"rejected\":1",
     .accepted = 2,
     .stored = "{\"key\":\"good\",\"seq\":-3}",
     .reason = "invalid_utf8",
     .rejected = 1},
    {.name = "NDJSON sent as application/json",
     .body = "{\"key\":\"nd1\"}\n{\"key\":\"nd2\"}\n",
     .status = 400,
     .answer = "send it with Content-Type: application/x-ndjson",
     .reason = "invalid_json",
     .rejected = 1},
    /* The rest close their connection. */
    {.name = "a Content-Length over http.max_body_size, refused before a byte of it is read",
     .gen = GEN_HUGE_CONTENT,
     .status = 413,
     .answer = "\"error\":",
     .closes = true,
     .limit = "http_body_size"},
    {.name = "a chunked body over http.max_body_size",
     .gen = GEN_HUGE_CHUNKED,
     .status = 413,
     .answer = "body exceeds http.max_body_size",
     .closes = true,
     .limit = "http_body_size"},
    {.name = "headers over http.max_header_size",
     .gen = GEN_BIG_HEADER,
     .status = 431,
     .answer = "request headers exceed http.max_header_size",
     .closes = true,
     .limit = "http_header_size"},
    /* The rest of the body is read as the next request, which is malformed; the first body is
     * judged on its own bytes, which are not JSON. */
    {.name = "a Content-Length shorter than the body",
     .raw = "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "Content-Length: 10\r\n\r\n{\"key\":\"cut\",\"value\":1}",
     .status = 400,
     .status2 = 400,
     .answer = "\"offset\":",
     .closes = true,
     .reason = "invalid_json",
     .rejected = 1},
    {.name = "no request line", .raw = "GARBAGE\r\n\r\n", .status = 400, .closes = true},
    {.name = "another protocol",
     .raw = "BREW /pot HTCPCP/1.0\r\n\r\n",
     .status = 400,
     .closes = true},
    {.name = "an unknown HTTP version",
     .raw = "GET /healthz HTTP/9.9\r\n\r\n",
     .status = 400,
     .closes = true},
    {.name = "a header without a colon",
     .raw = "GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
     .status = 400,
     .closes = true},
    {.name = "two Content-Lengths",
     .raw = "POST /v1/events HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n",
     .status = 400,
     .closes = true},
    {.name = "a Content-Length that is not a number",
     .raw = "POST /v1/events HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
     .status = 400,
     .closes = true},
    {.name = "a broken chunk size",
     .raw = "POST /v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
     .status = 400,
     .closes = true},
    {.name = "control bytes", .raw = "\x01\x02\x03\r\n\r\n", .status = 400, .closes = true},
};

static void prepare(struct http_case *c)
{
    static const char plain[] = "{\"key\":\"gz\",\"value\":1}";
    size_t n;
    char *s;

    switch (c->gen) {
    case GEN_NONE:
        return;
    case GEN_DEEP:
        n = 2000;
        c->made = malloc(2 * n);
        cr_assert_not_null(c->made);
        memset(c->made, '[', n);
        memset(c->made + n, ']', n);
        c->made_len = 2 * n;
        return;
    case GEN_GZIP_CUT:
        c->made = sgt_gzip(plain, strlen(plain), &c->made_len);
        c->made_len -= 6;
        return;
    case GEN_GZIP_CRC:
        c->made = sgt_gzip(plain, strlen(plain), &c->made_len);
        c->made[c->made_len - 6] ^= 0x55;
        return;
    case GEN_GZIP_BOMB:
        n = 20 * MIB;
        s = malloc(n);
        cr_assert_not_null(s);
        memset(s, ' ', n);
        memcpy(s, "{\"key\":\"bomb\"}", 14);
        c->made = sgt_gzip(s, n, &c->made_len);
        free(s);
        return;
    case GEN_BIG_HEADER:
        n = 20000;
        c->made = malloc(n + 128);
        cr_assert_not_null(c->made);
        c->made_len = (size_t)sprintf(c->made, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ");
        memset(c->made + c->made_len, 'a', n);
        c->made_len += n;
        memcpy(c->made + c->made_len, "\r\n\r\n", 4);
        c->made_len += 4;
        return;
    case GEN_HUGE_CHUNKED:
        /* 4 chunks of 1 MiB, then the byte over: nothing follows it, so the server has read
         * every byte sent when it answers and closes. */
        c->made = malloc(4 * (MIB + 16) + 256);
        cr_assert_not_null(c->made);
        c->made_len = (size_t)sprintf(c->made, "POST /v1/events HTTP/1.1\r\nHost: t\r\n"
                                               "Transfer-Encoding: chunked\r\n\r\n");
        for (int i = 0; i < 4; i++) {
            c->made_len += (size_t)sprintf(c->made + c->made_len, "%x\r\n", MIB);
            memset(c->made + c->made_len, ' ', MIB);
            c->made_len += MIB;
            c->made_len += (size_t)sprintf(c->made + c->made_len, "\r\n");
        }
        c->made_len += (size_t)sprintf(c->made + c->made_len, "1\r\n ");
        return;
    case GEN_HUGE_CONTENT:
        c->made = malloc(256);
        cr_assert_not_null(c->made);
        c->made_len = (size_t)snprintf(c->made, 256,
                                       "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: "
                                       "application/json\r\nContent-Length: %d\r\n\r\n",
                                       10 * MIB);
        return;
    }
}

static void unprepare(struct http_case *c)
{
    free(c->made);
    c->made = NULL;
    c->made_len = 0;
}

/* Sends the case's request: a POST of its body with its headers, or its raw bytes. */
static void send_case(const struct sgt_link_ops *ops, void *l, const struct http_case *c)
{
    bool raw = c->raw || c->gen == GEN_BIG_HEADER || c->gen == GEN_HUGE_CONTENT ||
               c->gen == GEN_HUGE_CHUNKED;
    const char *body = c->made ? c->made : c->raw ? c->raw : c->body;
    size_t len = c->made ? c->made_len : c->len ? c->len : strlen(body);
    char head[512];

    if (!raw) {
        const char *type = c->headers && strstr(c->headers, "Content-Type:")
                               ? ""
                               : "Content-Type: application/json\r\n";
        int n = snprintf(head, sizeof(head),
                         "POST /v1/events HTTP/1.1\r\nHost: t\r\n%s%sContent-Length: %zu\r\n\r\n",
                         type, c->headers ? c->headers : "", len);
        ops->send(l, head, (size_t)n);
    }
    ops->send(l, body, len);
}

static void good_event(const struct sgt_link_ops *ops, void *l, int seq)
{
    char body[96];
    struct http_case good = {.body = body};
    struct sgt_response r;

    snprintf(body, sizeof(body), "{\"key\":\"good\",\"seq\":%d,\"value\":%d}", seq, seq);
    send_case(ops, l, &good);
    cr_assert_eq(ops->response(l, &r), 0, "%s: no answer to good event %d", ops->name, seq);
    cr_assert_eq(r.status, 202, "%s: good event %d: %d %s", ops->name, seq, r.status, r.body);
    sgt_response_free(&r);
}

/* Sends the case and checks its answer(s); the connection is closed after them if it must. */
static void run_case(const struct sgt_link_ops *ops, void *l, const struct http_case *c)
{
    struct sgt_response r;

    send_case(ops, l, c);
    cr_assert_eq(ops->response(l, &r), 0, "%s: %s: no answer", ops->name, c->name);
    cr_assert_eq(r.status, c->status, "%s: %s: status %d: %s", ops->name, c->name, r.status,
                 r.body);
    if (c->status2) {
        sgt_response_free(&r);
        cr_assert_eq(ops->response(l, &r), 0, "%s: %s: no second answer", ops->name, c->name);
        cr_assert_eq(r.status, c->status2, "%s: %s: second status %d: %s", ops->name, c->name,
                     r.status, r.body);
    }
    /* Without an answer of its own: a malformed request, refused where it went wrong. */
    cr_assert(c->answer ? strstr(r.body, c->answer) != NULL
                        : strstr(r.body, "{\"error\":\"") && strstr(r.body, "\"offset\":"),
              "%s: %s: %s", ops->name, c->name, r.body);
    char *type = sgt_header(&r, "Content-Type");
    cr_assert(type && strcmp(type, "application/json") == 0, "%s: %s: Content-Type %s", ops->name,
              c->name, type ? type : "missing");
    free(type);
    char *conn = sgt_header(&r, "Connection");
    if (c->closes) {
        cr_assert(conn && strcmp(conn, "close") == 0, "%s: %s: Connection %s", ops->name, c->name,
                  conn ? conn : "missing");
        cr_assert(ops->closed(l, 5000), "%s: %s: the connection was kept", ops->name, c->name);
    } else {
        cr_assert_null(conn, "%s: %s: Connection %s", ops->name, c->name, conn);
    }
    free(conn);
    sgt_response_free(&r);
}

void sgt_bad_http_run(const struct sgt_proc *p, const struct sgt_link_ops *ops,
                      sgt_metric_fn metric)
{
    void *l = ops->open(ops, p->http);
    size_t want = 0;
    int seq = 0;

    for (size_t i = 0; i < NELEM(http_cases); i++)
        prepare(&http_cases[i]);
    good_event(ops, l, seq++);
    for (size_t i = 0; i < NELEM(http_cases); i++) {
        const struct http_case *c = &http_cases[i];
        if (c->closes) {
            void *own = ops->open(ops, p->http);
            run_case(ops, own, c);
            ops->close(own);
        } else {
            run_case(ops, l, c);
        }
        want += (size_t)c->accepted;
        good_event(ops, l, seq++); /* the same connection goes on */
    }
    ops->close(l);
    for (size_t i = 0; i < NELEM(http_cases); i++)
        unprepare(&http_cases[i]);

    /* Every good event arrived, the accepted bad-but-valid ones too, nothing else. */
    want += (size_t)seq;
    cr_assert_eq(sgt_wait_lines(p->out_path, want, WAIT_MS), want, "%s", ops->name);
    char *out = sgt_read_file(p->out_path, NULL);
    for (size_t i = 0; i < NELEM(http_cases); i++)
        if (http_cases[i].stored)
            cr_assert(strstr(out, http_cases[i].stored), "%s: %s: not stored as sent: %s",
                      ops->name, http_cases[i].name, out);
    cr_assert_null(strstr(out, "\"u\""), "%s: an invalid event reached the writer", ops->name);
    cr_assert_null(strstr(out, "\"cut\""), "%s: a cut body reached the writer", ops->name);
    free(out);

    /* The counters: each reason (and limit) summed over the corpus. */
    for (size_t i = 0; i < NELEM(http_cases); i++) {
        const struct http_case *c = &http_cases[i];
        char series[160];
        double n = 0;
        if (c->reason) {
            for (size_t j = 0; j < NELEM(http_cases); j++)
                if (http_cases[j].reason && strcmp(http_cases[j].reason, c->reason) == 0)
                    n += http_cases[j].rejected;
            snprintf(series, sizeof(series),
                     "streamgate_events_rejected_total{transport=\"http\",reason=\"%s\"}",
                     c->reason);
            cr_assert_eq(metric(p, series), n, "%s: %s: %g, not %g", ops->name, series,
                         metric(p, series), n);
        }
        if (c->limit) {
            n = 0;
            for (size_t j = 0; j < NELEM(http_cases); j++)
                if (http_cases[j].limit && strcmp(http_cases[j].limit, c->limit) == 0)
                    n++;
            snprintf(series, sizeof(series), "streamgate_limit_hits_total{limit=\"%s\"}", c->limit);
            cr_assert_eq(metric(p, series), n, "%s: %s: %g, not %g", ops->name, series,
                         metric(p, series), n);
        }
    }
}

/* ---- TCP ---- */

struct tcp_case {
    const char *name;
    const char *line; /* with its newline */
    size_t len;       /* 0: strlen */
    enum gen gen;     /* GEN_DEEP: 2048 nested arrays; GEN_HUGE_CONTENT: a 10 MiB line */
    const char *reason;
};

static const struct tcp_case tcp_cases[] = {
    {"a surrogate", "{\"key\":\"u\",\"s\":\"\xed\xa0\x80\"}\n", 0, GEN_NONE, "invalid_utf8"},
    {"invalid UTF-8", "{\"key\":\"u\",\"s\":\"\xff\xfe\"}\n", 0, GEN_NONE, "invalid_utf8"},
    {"NUL byte", "{\"key\":\"n\0\"}\n", 13, GEN_NONE, "invalid_json"},
    {"a line over tcp.max_line_size", NULL, 0, GEN_HUGE_CONTENT, "line_too_long"},
    {"nesting deeper than the JSON parser takes", NULL, 0, GEN_DEEP, "invalid_json"},
    {"not an object", "[1,2]\n", 0, GEN_NONE, "not_object"},
    {"missing key", "{\"value\":1}\n", 0, GEN_NONE, "missing_key"},
    {"a key that is an object", "{\"key\":{\"a\":1}}\n", 0, GEN_NONE, "missing_key"},
    {"truncated JSON", "{\"key\":\"t\",\"v\":\n", 0, GEN_NONE, "invalid_json"},
};

static void tcp_good(const struct sgt_link_ops *ops, void *l, int seq)
{
    char line[64];
    int n = snprintf(line, sizeof(line), "{\"key\":\"good\",\"seq\":%d}\n", seq);

    ops->send(l, line, (size_t)n);
}

/* Lines of the gateway's log that report a rejected TCP event. */
static size_t tcp_rejections_logged(const struct sgt_proc *p)
{
    char *log = sgt_read_file(p->log_path, NULL);
    size_t n = 0;

    for (const char *line = log; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (memmem(line, len, "\"msg\":\"event rejected\"", 22) &&
            memmem(line, len, "\"transport\":\"tcp\"", 17))
            n++;
        line = eol ? eol + 1 : NULL;
    }
    free(log);
    return n;
}

void sgt_bad_tcp_run(const struct sgt_proc *p, const struct sgt_link_ops *ops, sgt_metric_fn metric)
{
    void *l = ops->open(ops, p->tcp);
    int seq = 0;

    tcp_good(ops, l, seq++);
    for (size_t i = 0; i < NELEM(tcp_cases); i++) {
        const struct tcp_case *c = &tcp_cases[i];
        char *made = NULL;
        size_t len = 0;
        if (c->gen == GEN_HUGE_CONTENT) {
            len = 10 * MIB + 1;
            made = malloc(len);
            cr_assert_not_null(made);
            memset(made, 'x', len - 1);
            memcpy(made, "{\"key\":\"huge\",\"s\":\"", 19);
            made[len - 1] = '\n';
        } else if (c->gen == GEN_DEEP) {
            len = 2 * 2048 + 1;
            made = malloc(len);
            cr_assert_not_null(made);
            memset(made, '[', 2048);
            memset(made + 2048, ']', 2048);
            made[len - 1] = '\n';
        }
        if (made)
            ops->send(l, made, len);
        else
            ops->send(l, c->line, c->len ? c->len : strlen(c->line));
        free(made);
        tcp_good(ops, l, seq++);
    }
    cr_assert_eq(sgt_wait_lines(p->out_path, (size_t)seq, WAIT_MS), (size_t)seq, "%s", ops->name);

    for (size_t i = 0; i < NELEM(tcp_cases); i++) {
        char series[160];
        double n = 0;
        for (size_t j = 0; j < NELEM(tcp_cases); j++)
            n += strcmp(tcp_cases[j].reason, tcp_cases[i].reason) == 0;
        snprintf(series, sizeof(series),
                 "streamgate_events_rejected_total{transport=\"tcp\",reason=\"%s\"}",
                 tcp_cases[i].reason);
        cr_assert_eq(metric(p, series), n, "%s: %s: %g, not %g", ops->name, series,
                     metric(p, series), n);
    }
    /* Each one logged (the log is written as it happens; wait for it all the same). */
    int64_t end = sgt_mono_ms() + WAIT_MS;
    while (tcp_rejections_logged(p) < NELEM(tcp_cases) && sgt_mono_ms() < end)
        sgt_sleep_ms(20);
    cr_assert_eq(tcp_rejections_logged(p), NELEM(tcp_cases), "%s", ops->name);

    /* Still open and still read. */
    tcp_good(ops, l, seq++);
    cr_assert_eq(sgt_wait_lines(p->out_path, (size_t)seq, WAIT_MS), (size_t)seq, "%s", ops->name);
    char *out = sgt_read_file(p->out_path, NULL);
    cr_assert_null(strstr(out, "\"u\""), "%s: an invalid event reached the writer", ops->name);
    cr_assert_null(strstr(out, "huge"), "%s: the long line reached the writer", ops->name);
    free(out);
    ops->close(l);
}
