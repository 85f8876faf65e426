/* The one path from bytes to routed events: decode, validate, count, reject with reasons, and
 * hand accepted events to the sinks. Both servers call it; it knows nothing of sockets. */
#ifndef STREAMGATE_INGEST_H
#define STREAMGATE_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "streamgate/buf.h"
#include "streamgate/common.h"
#include "streamgate/event.h"

struct sg_ack;
struct sg_budget;
struct sg_config;
struct sg_metrics;
struct sg_log;
struct sg_sink;
struct sg_ingest;
struct sg_streams;

/* What the wiring gives each server (HTTP and TCP), and their common life cycle: create (bind
 * and listen) -> shutdown (stop accepting, finish what is in flight, close every connection,
 * then call back) -> destroy. */
struct sg_http_conn;

/* A handler of GET (and HEAD) requests under a path prefix, behind the ingest tokens like the
 * live query. It answers with sg_http_answer, at once or, after sg_http_hold, later. `url` is
 * the request target as received (path and query). */
typedef void (*sg_http_handler)(void *arg, struct sg_http_conn *conn, const char *url,
                                size_t url_len);

struct sg_server_env {
    uv_loop_t *loop;
    const struct sg_config *cfg;
    struct sg_ingest *ingest;
    struct sg_streams *streams; /* for the live query; NULL answers 404 */
    struct sg_budget *budget;   /* pushback; NULL: never pauses */
    /* Renders GET /v1/info's JSON object into `out`; NULL answers 404. */
    int (*info)(void *arg, struct sg_buf *out);
    /* More /readyz demands (an aggregator's consumer has its assignment), called with
     * info_arg; NULL: none. */
    bool (*ready)(void *arg);
    void *info_arg;
    /* GET /v1/history and /v1/history/...: the stored-results query (see http_server.h);
     * NULL answers 404. */
    sg_http_handler history;
    void *history_arg;
    struct sg_metrics *metrics;
    struct sg_log *log;
};

typedef void (*sg_server_closed_cb)(void *arg);

enum sg_body_format { SG_BODY_JSON, SG_BODY_NDJSON };

/* What one HTTP body produced. `errors` receives the items of the response's "errors" array,
 * comma-separated, without the brackets: {"index":I,"offset":O,"error":"reason: message"}
 * (plus "line":L for NDJSON, 1-based), at most `max_errors` of them. */
struct sg_ingest_result {
    size_t accepted;
    size_t rejected;
    size_t nerrors;
    size_t max_errors;
    struct sg_buf *errors;
    /* Set when the body's framing is broken (sg_ingest_body returned -EINVAL). */
    size_t bad_offset;
    const char *bad_msg;
    /* ingest.ack delivered: every event handed to the writers is confirmed through this group
     * (src/ingest/ack.h); NULL: nothing is confirmed. */
    struct sg_ack *ack;
};

struct sg_ingest *sg_ingest_create(const struct sg_config *cfg, struct sg_metrics *metrics,
                                   struct sg_log *log);
void sg_ingest_destroy(struct sg_ingest *ing);
/* Routes every decoded event through the streams engine (windows) before the sinks. */
void sg_ingest_set_streams(struct sg_ingest *ing, struct sg_streams *streams);
/* The writers every accepted event goes to (not owned; NULL: none). */
struct sg_sinks;
void sg_ingest_set_sinks(struct sg_ingest *ing, struct sg_sinks *sinks);

/* Ingests one event (a TCP line, or one element of an HTTP body). Returns 0 when accepted, or
 * -EINVAL and sets `*why`. Counts received/accepted/rejected and logs rejections at a rate
 * limit. */
int sg_ingest_event(struct sg_ingest *ing, enum sg_transport transport, const char *buf, size_t len,
                    int64_t now_ms, enum sg_reject *why);

/* Sets the identity (a TLS client certificate's, see kafka.client_id_header) of the events
 * ingested until the next call; NULL or "": none. The string must stay valid meanwhile. */
void sg_ingest_set_client(struct sg_ingest *ing, const char *client_id);

/* Counts (and logs at a rate limit) an event rejected before decoding, e.g. a too-long line. */
void sg_ingest_reject(struct sg_ingest *ing, enum sg_transport transport, enum sg_reject why);

/* Ingests a whole HTTP body: one object or an array of objects (SG_BODY_JSON), or one object
 * per line (SG_BODY_NDJSON). Each event is accepted or rejected on its own. Returns 0, or
 * -EINVAL when the framing is broken (nothing ingested; see bad_offset/bad_msg). */
int sg_ingest_body(struct sg_ingest *ing, enum sg_body_format fmt, const char *body, size_t len,
                   int64_t now_ms, struct sg_ingest_result *res);

/* True when every writer is healthy (sg_sinks_ready). */
bool sg_ingest_ready(struct sg_ingest *ing);
/* True when every writer that takes raw events can still write (sg_sinks_accepting). */
bool sg_ingest_accepting(struct sg_ingest *ing);

#endif
