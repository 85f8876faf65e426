/* Shared between the HTTP listener (http_server.c: accept, connection limit, shutdown) and the
 * per-connection code: http_conn.c (the connection's state machine, timeouts, responses),
 * http_request.c (the parser's callbacks: limits, route, auth), http_routes.c (the route table
 * and its handlers) and http_tcp.c (the TCP transport). Nothing outside these files includes
 * it, except the tests that drive a connection from memory (see struct sg_http_io). */
#ifndef STREAMGATE_HTTP_INTERNAL_H
#define STREAMGATE_HTTP_INTERNAL_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "streamgate/budget.h"
#include "streamgate/common.h"
#include "streamgate/buf.h"
#include "streamgate/http_server.h"
#include "streamgate/ingest.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "rate.h"
#include "server.h"

/* Bytes read from a socket at a time, into one buffer the whole server shares: each read is
 * parsed before the next one is asked for, and a connection that has to stop part-way (see
 * `tail`) copies only the unparsed rest into storage of its own. */
#define SG_HTTP_READ_BUF_SIZE (64 * 1024)
/* Request body storage a connection keeps between requests; larger bodies are freed after use.
 * Also the largest body of a refused request that is read and dropped to keep the connection;
 * a larger one is not read at all (the connection closes after the answer). */
#define SG_HTTP_KEEP_BODY_CAP (64 * 1024)
/* Pending response bytes past which a connection stops reading (and parsing pipelined
 * requests) until its write completes, so a client that does not read cannot grow memory. */
#define SG_HTTP_OUT_HIGH (1024 * 1024)
/* Hard cap on one output buffer; a response that cannot fit closes the connection. */
#define SG_HTTP_OUT_MAX (64 * 1024 * 1024)
/* After the final response of a closing connection, how long input is read and dropped
 * before the socket is closed. Closing with unread input makes the kernel send a reset,
 * which can destroy the response before the client has read it. */
#define SG_HTTP_LINGER_MS 2000
/* Over-limit connections that may be waiting for their 503 to go out at once; past this they
 * are closed without an answer, so a connection flood cannot pin memory either. */
#define SG_HTTP_MAX_REJECTING 64
/* Clients whose request rate is tracked at once (http.rate_limit); about 100 bytes each. */
#define SG_HTTP_RATE_CLIENTS 16384
/* How long a keep-alive connection waits for its next request before it gives back the storage
 * its last one used (the request's buffers, its output buffers), so that an idle connection
 * holds none while a busy one does not free and allocate them for every request. */
#define SG_HTTP_TRIM_MS 1000
/* Distinct status codes counted in streamgate_http_requests_total. */
#define SG_HTTP_MAX_CODES 32

/* Limits counted in streamgate_limit_hits_total{limit}. */
enum sg_http_limit {
    SG_HTTP_LIMIT_BODY_SIZE,
    SG_HTTP_LIMIT_DECODED_SIZE,
    SG_HTTP_LIMIT_HEADER_SIZE,
    SG_HTTP_LIMIT_CONNECTIONS,
    SG_HTTP_LIMIT_HEADER_TIMEOUT,
    SG_HTTP_LIMIT_BODY_TIMEOUT,
    SG_HTTP_LIMIT_IDLE_TIMEOUT,
    SG_HTTP_LIMIT_RATE,
    SG_HTTP_LIMIT_ACK_TIMEOUT,
    SG_HTTP_LIMIT_COUNT
};

/* Request headers the server acts on; every other header is only counted toward the size. */
enum sg_http_hdr {
    SG_HTTP_HDR_CONTENT_TYPE,
    SG_HTTP_HDR_CONTENT_ENCODING,
    SG_HTTP_HDR_AUTHORIZATION,
    SG_HTTP_HDR_EXPECT,
    SG_HTTP_HDR_COUNT,
    SG_HTTP_HDR_NONE = SG_HTTP_HDR_COUNT
};

#define SG_HTTP_JSON       "application/json"
#define SG_HTTP_PROMETHEUS "text/plain; version=0.0.4; charset=utf-8"

struct sg_http_conn;

/* Which bearer token a route asks for. */
enum sg_http_auth {
    SG_HTTP_AUTH_INGEST,  /* one of http.auth_tokens, when any is set */
    SG_HTTP_AUTH_METRICS, /* http.metrics_token, when set */
};

/* Methods a route takes. */
#define SG_HTTP_GET  0x1u /* GET and HEAD */
#define SG_HTTP_POST 0x2u

/* One row of the route table (http_routes.c). */
struct sg_http_route {
    const char *path; /* exact; a path ending in '/' takes every path under it */
    unsigned methods; /* SG_HTTP_GET, SG_HTTP_POST */
    enum sg_http_auth auth;
    bool ingest; /* the body is kept and ingested (and the ingest checks apply); an aggregator
                  * refuses it */
    /* Answers the complete request (conn->req, conn->body); `close` ends the connection. */
    void (*handle)(struct sg_http_conn *conn, bool close);
};

/* What the connection's one timer is counting down to. */
enum sg_http_timer {
    SG_HTTP_TIMER_NONE,
    SG_HTTP_TIMER_IDLE,   /* keep-alive wait for the next request */
    SG_HTTP_TIMER_HEADER, /* first byte of a request to the end of its headers */
    SG_HTTP_TIMER_BODY,   /* end of headers to the end of the body */
    SG_HTTP_TIMER_FLUSH,  /* final response still being written */
    SG_HTTP_TIMER_LINGER, /* write side shut down, dropping input until the peer closes */
    SG_HTTP_TIMER_ACK,    /* an answer held for its events' confirmations (http.ack_timeout) */
};

enum sg_http_state {
    SG_HTTP_OPEN,      /* reading and parsing requests */
    SG_HTTP_FINISHING, /* the last response is queued; no more parsing; write, then linger */
    SG_HTTP_LINGER,    /* write side shut down; input is read and dropped until EOF */
    SG_HTTP_CLOSING,   /* handles are closing; freed in the last close callback */
};

/* How a connection moves bytes: over its TCP socket (sg_http__tcp_io), or, in tests, over an
 * in-memory transport. The connection calls these; the transport reports what happens through
 * the sg_http__conn_on_* functions and sg_http__conn_feed below, never from inside one of
 * these calls unless said otherwise. */
/* What sg_http_io.write returns when it wrote everything before returning. */
#define SG_HTTP_WRITTEN 1

struct sg_http_io {
    /* Starts delivering input (sg_http__conn_feed, sg_http__conn_feed_end). Returns 0 or a
     * negative code. */
    int (*read_start)(struct sg_http_conn *conn);
    void (*read_stop)(struct sg_http_conn *conn);
    /* Writes `len` bytes. Returns SG_HTTP_WRITTEN when every byte went out at once (no
     * sg_http__conn_on_write follows); 0 when the write is in flight, with `data` left valid
     * and unchanged until sg_http__conn_on_write; or a negative code (nothing was queued). At
     * most one write is in flight. */
    int (*write)(struct sg_http_conn *conn, const char *data, size_t len);
    /* Ends the write side once the write in flight is out, then sg_http__conn_on_shutdown. */
    int (*shutdown)(struct sg_http_conn *conn);
    /* Closes the transport. A write or shutdown still pending completes first (with an error
     * such as UV_ECANCELED); then sg_http__conn_on_closed, which may run before this returns. */
    void (*close)(struct sg_http_conn *conn);
};

/* The request being parsed. Its buffers are reset, not freed, between requests. */
struct sg_http_req {
    bool active; /* between message begin and message complete */
    bool head;   /* the method is HEAD: responses carry no body */
    bool headers_done;
    bool keep_alive;
    bool expect_continue;
    bool buffer_body; /* the body is kept (POST /v1/events); otherwise it is dropped */
    bool gzip;
    enum sg_body_format format;
    const struct sg_http_route *route; /* NULL: no route has the path */
    int status;            /* an error decided at headers complete, answered at message complete */
    const char *error;     /* its message */
    uint64_t header_bytes; /* URL + header names + header values */
    uint64_t body_bytes;   /* as received (after de-chunking, before gzip) */
    struct sg_buf url;
    char field[32]; /* the current header name, as far as it matters (longer names do not) */
    size_t field_len;
    enum sg_http_hdr cur; /* which kept header the current value belongs to */
    struct sg_buf hdr[SG_HTTP_HDR_COUNT];
    bool hdr_seen[SG_HTTP_HDR_COUNT];
};

struct sg_http_conn {
    const struct sg_http_io *io;
    void *io_arg; /* the transport's own state; unused over TCP */
    uv_tcp_t tcp; /* the socket, when io is sg_http__tcp_io */
    uv_timer_t timer;
    struct sg_http_server *srv;
    struct sg_http_conn *prev, *next; /* in srv->conns */
    int open_handles; /* transport and timer; freed when the last close callback runs */
    enum sg_http_state state;
    enum sg_http_timer timer_kind;
    uint64_t timer_due; /* loop time (ms) timer_kind is due at; 0: nothing due */
    uint64_t idle_due;  /* loop time (ms) the keep-alive wait ends (http.idle_timeout) */
    bool trimmed;       /* idle, and its storage given back (SG_HTTP_TRIM_MS) */
    bool rejected;      /* over the connection limit: one 503, then gone */
    bool reading;
    bool writing;
    bool eof;     /* the peer closed its side */
    bool stalled; /* reading stopped until pending output drains */
    bool broken;  /* a response could not be queued: close without more ado */
    char peer[64];
    const char *client_id; /* the TLS client certificate's identity; NULL: none yet */

    llhttp_t parser;
    char *tail; /* unparsed input kept while stalled: the connection's own copy, sized to it */
    size_t tail_len;
    uint64_t stream_off; /* input bytes handed to the parser so far, for error offsets */

    /* Responses are appended to out[fill]; the other buffer may be in flight. */
    struct sg_buf out[2];
    int fill;

    struct sg_http_req req;
    struct sg_buf body;
    size_t budget_conn; /* charged for the unparsed tail and a partial request's URL/headers */
    size_t budget_body; /* charged for the body buffer's storage and the held answer's errors */

    /* ingest.ack delivered: the last request's answer waits for its events' confirmations.
     * The parser stays paused at that request's end meanwhile (`stalled`), so no later answer
     * can overtake it. The group outlives the connection when it has to (see ack.h). */
    struct sg_ack *ack;        /* NULL: no answer held */
    struct sg_buf held_errors; /* the held answer's "errors" items */
    size_t held_rejected;
    size_t held_nerrors;
    bool held_close; /* the held answer ends the connection */

    /* A handler's answer given later (sg_http_hold). */
    bool later;
    bool later_close;
    void (*later_cancel)(void *arg);
    void *later_arg;
};

struct sg_http_code_counter {
    int code;
    struct sg_counter *counter;
};

struct sg_http_server {
    struct sg_listener listener; /* zeroed (never opened) for a test server */
    struct sg_tls_server *tls;   /* http.tls_cert: connections are wrapped in TLS; NULL: plain */
    uv_loop_t *loop;
    const struct sg_config *cfg;
    struct sg_ingest *ingest;
    struct sg_streams *streams;     /* the live query's source; NULL: 404 */
    struct sg_budget *budget;       /* NULL: never pushes back */
    struct sg_rate_limiter *rate;   /* http.rate_limit; NULL: off */
    int64_t rate_limit, rate_burst; /* what `rate` was made with */
    char retry_after[40];           /* "Retry-After: N\r\n" for pushback answers */
    int (*info)(void *arg, struct sg_buf *out);
    bool (*ready)(void *arg); /* called with info_arg; NULL: none */
    void *info_arg;
    sg_http_handler history;
    void *history_arg;
    struct sg_metrics *metrics;
    struct sg_log *log;
    llhttp_settings_t settings;       /* shared by every connection's parser */
    char rbuf[SG_HTTP_READ_BUF_SIZE]; /* every connection's reads land here (see above) */

    struct sg_http_conn *conns; /* every connection, served or being rejected */
    size_t nconns;              /* served connections (the gauge) */
    size_t nrejecting;          /* rejected connections still open */

    bool shutting_down;
    bool ingesting;     /* inside sg_ingest_body: held answers settled now wait a loop turn */
    bool free_on_close; /* create failed: the listener's close callback frees the server */
    bool done;          /* closed_cb has been called */
    sg_server_closed_cb closed_cb;
    void *closed_arg;

    /* Scratch for building one response. Requests are handled synchronously on the loop, so
     * one set serves every connection. */
    struct sg_buf resp;    /* response body */
    struct sg_buf decoded; /* gunzipped request body */
    size_t budget_decoded; /* charged for `decoded` while it holds a body */
    struct sg_buf errors;  /* ingest's per-event error list */
    struct sg_log_limiter bad_input;
    struct sg_log_limiter accept_limiter; /* accept failures (EMFILE) */

    struct sg_http_code_counter codes[SG_HTTP_MAX_CODES];
    size_t ncodes;
    struct sg_gauge *connections;
    struct sg_counter *connections_rejected;
    struct sg_counter *connections_accepted;
    struct sg_counter *bytes_received;
    struct sg_counter *limit_hits[SG_HTTP_LIMIT_COUNT];
    struct sg_histogram *ack_seconds; /* accepted to answered, ingest.ack delivered */
};

/* http_server.c */

/* For tests: a server with no listener. Connections come only from sg_http__server_open;
 * shutdown and destroy work as for a listening server. */
int sg_http__server_create_test(const struct sg_server_env *env, struct sg_http_server **out,
                                char *errstr, size_t errstr_size);
/* Adds a connection over `io` as if a client had just connected from `peer`: counted against
 * http.max_connections (an over-limit one is answered 503 and closed at once), then served.
 * Returns 0 with *out set, or a negative code with *out NULL: -ENOMEM before the connection
 * existed, or another code after `io->close` was called for it. A connection is gone once its
 * transport reported sg_http__conn_on_closed; it is freed in a later loop iteration. */
int sg_http__server_open(struct sg_http_server *srv, const struct sg_http_io *io, void *io_arg,
                         const char *peer, struct sg_http_conn **out);

/* Counts one response with status `code` (registering the series on first use). */
void sg_http__count_status(struct sg_http_server *srv, int code);
void sg_http__count_limit(struct sg_http_server *srv, enum sg_http_limit limit);
/* Called from a connection's last close callback, just before it is freed. */
void sg_http__server_conn_gone(struct sg_http_server *srv, struct sg_http_conn *conn);

/* http_conn.c */

/* http_tcp.c: the transport over `conn->tcp`, which the listener initialises and accepts. */
extern const struct sg_http_io sg_http__tcp_io;

/* Sets up the parser callbacks shared by every connection. */
void sg_http__settings_init(llhttp_settings_t *settings);
/* Names the peer of an accepted socket ("ip:port") for log lines. */
void sg_http__conn_peer_name(struct sg_http_conn *conn);
/* Starts serving a connection whose transport (conn->io) is ready. */
int sg_http__conn_start(struct sg_http_conn *conn);
/* Answers an over-limit connection with 503 and closes it. */
void sg_http__conn_reject(struct sg_http_conn *conn);
/* Server shutdown: close when idle, otherwise finish the request in flight, then close. */
void sg_http__conn_shutdown(struct sg_http_conn *conn);
/* Closes both handles; the connection is freed once both close callbacks ran. */
void sg_http__conn_close(struct sg_http_conn *conn);
/* Frees a connection's memory (not its handles). */
void sg_http__conn_free(struct sg_http_conn *conn);

/* The connection's own, for the other HTTP files. */

static inline struct sg_http_conn *sg_http__conn_of_parser(llhttp_t *parser)
{
    return sg_container_of(parser, struct sg_http_conn, parser);
}
/* Bad input and connection trouble, at debug level and at most one line per interval. */
void sg_http__conn_debug(struct sg_http_conn *conn, const char *msg, int status,
                         const char *detail);
/* Between requests: waits http.idle_timeout for the next one, giving the connection's storage
 * back after SG_HTTP_TRIM_MS of it. */
void sg_http__conn_idle(struct sg_http_conn *conn);
/* Sets the connection's one timer to `kind`, due in `ms`. */
void sg_http__conn_timer(struct sg_http_conn *conn, enum sg_http_timer kind, uint64_t ms);
/* Brings the budget's account of the body storage up to date. */
void sg_http__conn_account_body(struct sg_http_conn *conn);
/* The last response is queued: stop parsing, write it, then linger. */
void sg_http__conn_finish(struct sg_http_conn *conn);
/* Starts writing what is queued; moves a finishing connection on once all is out. */
void sg_http__conn_flush(struct sg_http_conn *conn);
/* Response bytes queued and not written yet. */
size_t sg_http__conn_pending(const struct sg_http_conn *conn);
/* Queues one response; `close` adds Connection: close and ends the connection after it.
 * `extra` holds further header lines ("Name: value\r\n..."), or NULL. */
void sg_http__conn_respond(struct sg_http_conn *conn, int status, const char *type,
                           const char *body, size_t body_len, const char *extra, bool close);
/* Answers {"error":"<msg>"}. */
void sg_http__conn_respond_error(struct sg_http_conn *conn, int status, const char *msg,
                                 const char *extra, bool close);
/* The header lines an error status comes with (Retry-After, WWW-Authenticate, Allow), or NULL. */
const char *sg_http__error_extra(const struct sg_http_server *srv, int status,
                                 const struct sg_http_route *route);
/* Appends the "errors" list (and errors_truncated) of an ingest answer, then closes the object. */
int sg_http__append_errors(struct sg_buf *resp, const struct sg_buf *errors, size_t rejected,
                           size_t nerrors);
/* ingest.ack delivered: holds the answer to the request just ingested until `ack` settles. */
void sg_http__conn_hold(struct sg_http_conn *conn, struct sg_ack *ack,
                        const struct sg_ingest_result *res, bool close);
/* Input the transport read (in the server's buffer, or decrypted by a layer between): parsed
 * and answered at once; `data` need stay valid only during the call. */
void sg_http__conn_input(struct sg_http_conn *conn, const char *data, size_t len);

/* http_request.c */

/* Starts a new request (the parser's message begin). */
void sg_http__req_reset(struct sg_http_conn *conn);

/* http_routes.c */

/* The route for a request's URL (its query and fragment aside), or NULL. */
const struct sg_http_route *sg_http__route_find(const char *url, size_t len);
/* Whether the route takes the method (llhttp's enum; HEAD goes with GET). */
bool sg_http__route_allows(const struct sg_http_route *route, uint8_t method);
/* Answers the complete request: its error decided at the headers, or its route's handler. */
void sg_http__handle_request(struct sg_http_conn *conn, bool close);

/* What a transport reports. */

/* Input arrived: copies up to SG_HTTP_READ_BUF_SIZE bytes of `data` into the server's read
 * buffer, as one socket read would, and handles them. Returns the bytes taken: 0 when the
 * connection is not reading (the rest waits, as in a socket's receive buffer, until it reads
 * again; a finished connection reads and drops input while it lingers). */
size_t sg_http__conn_feed(struct sg_http_conn *conn, const char *data, size_t len);
/* The input ended: UV_EOF when the peer closed its side, another negative code for a read
 * error. Only while the connection is reading. */
void sg_http__conn_feed_end(struct sg_http_conn *conn, int status);
/* The write in flight completed: 0, or a negative code when it failed or was cancelled. */
void sg_http__conn_on_write(struct sg_http_conn *conn, int status);
void sg_http__conn_on_shutdown(struct sg_http_conn *conn, int status);
/* The transport is closed; the connection may be freed from here on (see io->close). */
void sg_http__conn_on_closed(struct sg_http_conn *conn);
/* For tests: does what the connection's timer does at its deadline, now, if one is set. */
void sg_http__conn_expire(struct sg_http_conn *conn);

/* http_tls.c */

struct sg_tls_server;
/* Puts an accepted connection's socket (conn->tcp) behind TLS: conn->io becomes the TLS
 * transport. Before sg_http__conn_start. Returns 0 or -ENOMEM (the connection is unchanged). */
int sg_http__tls_wrap(struct sg_http_conn *conn, struct sg_tls_server *ts);

#endif
