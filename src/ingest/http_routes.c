/* The routes an HTTP connection answers, and their handlers. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ack.h"
#include "http_internal.h"
#include "streamgate/common.h"
#include "streamgate/config.h"
#include "gzip.h"
#include "streamgate/ingest.h"
#include "streamgate/streams.h"

/* --- request handling -------------------------------------------------------------------- */

static void handle_events(struct sg_http_conn *conn, bool close)
{
    struct sg_http_server *srv = conn->srv;
    const struct sg_config *cfg = srv->cfg;
    struct sg_http_req *req = &conn->req;
    struct sg_buf *resp = &srv->resp;
    struct sg_ingest_result res = {0};
    const char *data = conn->body.data;
    size_t len = conn->body.len;
    int status;
    int rc;

    if (len > 0 && req->gzip) {
        sg_buf_reset(&srv->decoded);
        rc = sg_gunzip(data, len, cfg->http_max_decoded_size, &srv->decoded);
        if (rc == -E2BIG) {
            sg_http__count_limit(srv, SG_HTTP_LIMIT_DECODED_SIZE);
            sg_http__conn_debug(conn, "http request rejected", 413, "decoded body too large");
            sg_http__conn_respond_error(conn, 413, "decoded body exceeds http.max_decoded_size",
                                        NULL, close);
            return;
        }
        if (rc < 0) {
            sg_http__conn_debug(conn, "http request rejected", 400, "corrupt gzip body");
            sg_http__conn_respond_error(conn, rc == -ENOMEM ? 500 : 400,
                                        rc == -ENOMEM ? "out of memory" : "invalid gzip body", NULL,
                                        close);
            return;
        }
        data = srv->decoded.data;
        len = srv->decoded.len;
        if (srv->budget)
            sg_budget_set(srv->budget, SG_BUDGET_BODIES, &srv->budget_decoded, srv->decoded.cap);
    }
    if (len == 0) {
        sg_http__conn_respond_error(conn, 400, "empty body", NULL, close);
        return;
    }

    sg_buf_reset(&srv->errors);
    res.errors = &srv->errors;
    res.max_errors = cfg->http_max_errors > 0 ? (size_t)cfg->http_max_errors : 0;
    if (cfg->ingest_ack == SG_ACK_DELIVERED) {
        res.ack = sg_ack_create(srv->budget);
        if (!res.ack) {
            sg_http__conn_respond_error(conn, 500, "out of memory", NULL, close);
            return;
        }
    }
    srv->ingesting = true;
    sg_ingest_set_client(srv->ingest, conn->client_id);
    rc = sg_ingest_body(srv->ingest, req->format, data, len, sg_now_ms(), &res);
    sg_ingest_set_client(srv->ingest, NULL);
    srv->ingesting = false;
    if (srv->budget_decoded > 0) {
        /* A large decoded body gives its storage back at once, like a large request body. */
        if (srv->decoded.cap > SG_HTTP_KEEP_BODY_CAP)
            sg_buf_free(&srv->decoded);
        sg_budget_set(srv->budget, SG_BUDGET_BODIES, &srv->budget_decoded, srv->decoded.cap);
    }

    if (res.ack && rc == 0 && res.accepted > 0) {
        sg_http__conn_hold(conn, res.ack, &res, close);
        return;
    }
    /* Nothing accepted: nothing to wait for. */
    sg_ack_detach(res.ack);

    sg_buf_reset(resp);
    if (rc == -EINVAL) {
        const char *why = res.bad_msg ? res.bad_msg : "malformed body";

        sg_http__conn_debug(conn, "http request rejected", 400, why);
        rc = sg_buf_printf(resp,
                           "{\"accepted\":0,\"rejected\":0,\"errors\":[{\"offset\":%zu,"
                           "\"error\":",
                           res.bad_offset);
        if (rc == 0)
            rc = sg_buf_append_json_string(resp, why, strlen(why));
        if (rc == 0)
            rc = sg_buf_append_str(resp, "}]}");
        status = 400;
    } else if (rc < 0) {
        sg_http__conn_respond_error(conn, 500, sg_strerror(rc), NULL, close);
        return;
    } else {
        status = res.accepted > 0 ? 202 : 400;
        rc = sg_buf_append_str(resp, "{\"accepted\":");
        if (rc == 0)
            rc = sg_buf_append_uint(resp, res.accepted);
        if (rc == 0)
            rc = sg_buf_append_str(resp, ",\"rejected\":");
        if (rc == 0)
            rc = sg_buf_append_uint(resp, res.rejected);
        if (rc == 0)
            rc = sg_http__append_errors(resp, &srv->errors, res.rejected, res.nerrors);
    }
    if (rc < 0) {
        sg_http__conn_respond_error(conn, 500, "out of memory", NULL, close);
        return;
    }
    sg_http__conn_respond(conn, status, SG_HTTP_JSON, resp->data, resp->len, NULL, close);
}

/* Decodes %XX escapes of a URL path segment in place. Returns the new length, or -1 for a
 * malformed escape. */
static ssize_t percent_decode(char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            s[o++] = s[i];
            continue;
        }
        if (i + 2 >= len)
            return -1;
        int hi = sg_hex_digit(s[i + 1]), lo = sg_hex_digit(s[i + 2]);
        if (hi < 0 || lo < 0)
            return -1;
        s[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    return (ssize_t)o;
}

/* The value of `name` in the query string of `url`, or NULL; *vlen gets its length. */
static const char *query_param(const char *url, size_t len, const char *name, size_t *vlen)
{
    const char *q = memchr(url, '?', len);
    size_t nlen = strlen(name);
    if (!q)
        return NULL;
    const char *p = q + 1, *end = url + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
            *vlen = (size_t)(stop - p - (ptrdiff_t)nlen - 1);
            return p + nlen + 1;
        }
        p = stop + 1;
    }
    return NULL;
}

#define SG_HTTP_STREAMS_DEFAULT_LIMIT 100
#define SG_HTTP_STREAMS_MAX_LIMIT     1000

/* The `limit` query parameter: digits only, 1 to SG_HTTP_STREAMS_MAX_LIMIT. */
static int parse_limit(const char *v, size_t len, size_t *limit)
{
    size_t n = 0;
    if (len == 0 || len > 4)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -EINVAL;
        n = n * 10 + (size_t)(v[i] - '0');
    }
    if (n < 1 || n > SG_HTTP_STREAMS_MAX_LIMIT)
        return -EINVAL;
    *limit = n;
    return 0;
}

static void handle_streams(struct sg_http_conn *conn, bool close)
{
    struct sg_http_server *srv = conn->srv;
    struct sg_http_req *req = &conn->req;
    const char *url = req->url.data ? req->url.data : "";
    size_t vlen = 0, limit = SG_HTTP_STREAMS_DEFAULT_LIMIT;
    const char *v = query_param(url, req->url.len, "limit", &vlen);

    if (v && parse_limit(v, vlen, &limit) != 0) {
        sg_http__conn_respond_error(conn, 400, "limit must be a whole number from 1 to 1000", NULL,
                                    close);
        return;
    }
    sg_buf_reset(&srv->resp);
    if (!srv->streams) {
        sg_http__conn_respond_error(conn, 404, "this process keeps no windows (role gateway)", NULL,
                                    close);
        return;
    }
    if (sg_streams_render_list(srv->streams, limit, &srv->resp) < 0) {
        sg_http__conn_respond_error(conn, 500, "cannot render the stream list", NULL, close);
        return;
    }
    sg_http__conn_respond(conn, 200, SG_HTTP_JSON, srv->resp.data, srv->resp.len, NULL, close);
}

static void handle_stream(struct sg_http_conn *conn, bool close)
{
    struct sg_http_server *srv = conn->srv;
    struct sg_http_req *req = &conn->req;
    char *key = req->url.data + 12; /* after "/v1/streams/" */
    size_t len = req->url.len - 12;
    const char *stop = memchr(key, '?', len);
    if (stop)
        len = (size_t)(stop - key);
    ssize_t klen = percent_decode(key, len);
    if (klen <= 0) {
        sg_http__conn_respond_error(conn, 400, "malformed key in the path", NULL, close);
        return;
    }
    sg_buf_reset(&srv->resp);
    int rc =
        srv->streams ? sg_streams_render_key(srv->streams, key, (size_t)klen, &srv->resp) : -ENOENT;
    if (rc == -ENOENT) {
        sg_http__conn_respond_error(conn, 404, "no stream for this key", NULL, close);
        return;
    }
    if (rc < 0) {
        sg_http__conn_respond_error(conn, 500, "cannot render the stream", NULL, close);
        return;
    }
    sg_http__conn_respond(conn, 200, SG_HTTP_JSON, srv->resp.data, srv->resp.len, NULL, close);
}

static void handle_metrics(struct sg_http_conn *conn, bool close)
{
    struct sg_http_server *srv = conn->srv;

    sg_buf_reset(&srv->resp);
    if (sg_metrics_render(srv->metrics, &srv->resp) < 0) {
        sg_http__conn_respond_error(conn, 500, "cannot render metrics", NULL, close);
        return;
    }
    sg_http__conn_respond(conn, 200, SG_HTTP_PROMETHEUS, srv->resp.data, srv->resp.len, NULL,
                          close);
}

static void handle_healthz(struct sg_http_conn *conn, bool close)
{
    static const char ok[] = "{\"status\":\"ok\"}";

    sg_http__conn_respond(conn, 200, SG_HTTP_JSON, ok, sizeof(ok) - 1, NULL, close);
}

static void handle_readyz(struct sg_http_conn *conn, bool close)
{
    struct sg_http_server *srv = conn->srv;
    static const char ready[] = "{\"status\":\"ready\"}";
    static const char not_ready[] = "{\"status\":\"not ready\"}";

    if (!srv->shutting_down && sg_ingest_ready(srv->ingest) &&
        (!srv->ready || srv->ready(srv->info_arg)) &&
        !(srv->budget && sg_budget_paused(srv->budget)))
        sg_http__conn_respond(conn, 200, SG_HTTP_JSON, ready, sizeof(ready) - 1, NULL, close);
    else
        sg_http__conn_respond(conn, 503, SG_HTTP_JSON, not_ready, sizeof(not_ready) - 1, NULL,
                              close);
}

static void handle_info(struct sg_http_conn *conn, bool close)
{
    struct sg_http_server *srv = conn->srv;

    sg_buf_reset(&srv->resp);
    if (!srv->info) {
        sg_http__conn_respond_error(conn, 404, "not found", NULL, close);
        return;
    }
    if (srv->info(srv->info_arg, &srv->resp) < 0) {
        sg_http__conn_respond_error(conn, 500, "cannot render the info", NULL, close);
        return;
    }
    sg_http__conn_respond(conn, 200, SG_HTTP_JSON, srv->resp.data, srv->resp.len, NULL, close);
}

/* GET /v1/history[/{key}]: the stored-results query, a handler of its own (env.history). */
static void handle_history(struct sg_http_conn *conn, bool close)
{
    struct sg_http_server *srv = conn->srv;
    struct sg_http_req *req = &conn->req;

    if (!srv->history) {
        sg_http__conn_respond_error(conn, 404,
                                    "no stored results to query: set tablestore.endpoint (and "
                                    "tablestore.results_table)",
                                    NULL, close);
        return;
    }
    conn->later_close = close;
    srv->history(srv->history_arg, conn, req->url.data, req->url.len);
}

/* Every route, looked up by path (the query and fragment aside). A path ending in '/' takes
 * every path under it. To add a route, add a row. */
static const struct sg_http_route routes[] = {
    {"/v1/events", SG_HTTP_POST, SG_HTTP_AUTH_INGEST, true, handle_events},
    {"/metrics", SG_HTTP_GET, SG_HTTP_AUTH_METRICS, false, handle_metrics},
    {"/healthz", SG_HTTP_GET, SG_HTTP_AUTH_METRICS, false, handle_healthz},
    {"/readyz", SG_HTTP_GET, SG_HTTP_AUTH_METRICS, false, handle_readyz},
    {"/v1/info", SG_HTTP_GET, SG_HTTP_AUTH_METRICS, false, handle_info},
    {"/v1/streams", SG_HTTP_GET, SG_HTTP_AUTH_INGEST, false, handle_streams}, /* ?limit=N */
    {"/v1/streams/", SG_HTTP_GET, SG_HTTP_AUTH_INGEST, false, handle_stream}, /* {key} */
    {"/v1/history", SG_HTTP_GET, SG_HTTP_AUTH_INGEST, false, handle_history},
    {"/v1/history/", SG_HTTP_GET, SG_HTTP_AUTH_INGEST, false, handle_history}, /* {key} */
};

const struct sg_http_route *sg_http__route_find(const char *url, size_t len)
{
    const char *q = memchr(url, '?', len);
    const char *h = memchr(url, '#', len);

    if (q)
        len = (size_t)(q - url);
    if (h && (size_t)(h - url) < len)
        len = (size_t)(h - url);
    for (size_t i = 0; i < SG_ARRAY_SIZE(routes); i++) {
        const char *path = routes[i].path;
        size_t plen = strlen(path);
        if (path[plen - 1] == '/' ? len > plen && memcmp(url, path, plen) == 0
                                  : len == plen && memcmp(url, path, plen) == 0)
            return &routes[i];
    }
    return NULL;
}

bool sg_http__route_allows(const struct sg_http_route *route, uint8_t method)
{
    if (method == HTTP_GET || method == HTTP_HEAD)
        return (route->methods & SG_HTTP_GET) != 0;
    if (method == HTTP_POST)
        return (route->methods & SG_HTTP_POST) != 0;
    return false;
}

void sg_http__handle_request(struct sg_http_conn *conn, bool close)
{
    struct sg_http_req *req = &conn->req;

    if (req->status != 0) {
        sg_http__conn_respond_error(conn, req->status, req->error ? req->error : "error",
                                    sg_http__error_extra(conn->srv, req->status, req->route),
                                    close);
        return;
    }
    if (!req->route) {
        sg_http__conn_respond_error(conn, 404, "not found", NULL, close);
        return;
    }
    req->route->handle(conn, close);
}
