/* One signed call to Tablestore on a reused easy handle (see tablestore_internal.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "streamgate/common.h"
#include "streamgate/tablestore.h"
#include "tablestore_internal.h"

/* The signed x-ots-* headers of one request, as a curl header list. NULL when out of memory. */
static struct curl_slist *signed_headers(const struct sg_ts_creds *creds, const char *operation,
                                         const void *body, size_t len)
{
    char date[SG_TS_DATE_SIZE], md5[SG_TS_MD5_SIZE], sig[SG_TS_SIGNATURE_SIZE];
    struct sg_ts_header h[6];
    size_t n = 0;
    if (sg_ts_format_date(sg_now_ms(), date) != 0 || sg_ts_content_md5(body, len, md5) != 0)
        return NULL;
    h[n++] = sg_ts_hdr("x-ots-date", date);
    h[n++] = sg_ts_hdr("x-ots-apiversion", SG_TS_API_VERSION);
    h[n++] = sg_ts_hdr("x-ots-accesskeyid", creds->akid);
    h[n++] = sg_ts_hdr("x-ots-instancename", creds->instance);
    h[n++] = sg_ts_hdr("x-ots-contentmd5", md5);
    if (creds->sts_token && *creds->sts_token)
        h[n++] = sg_ts_hdr("x-ots-ststoken", creds->sts_token);
    if (sg_ts_sign_request(creds->secret, strlen(creds->secret), operation, h, n, sig) != 0)
        return NULL;
    struct curl_slist *list = NULL;
    char line[4096];
    for (size_t i = 0; i <= n; i++) {
        if (i < n)
            snprintf(line, sizeof(line), "%.*s: %.*s", (int)h[i].name_len, h[i].name,
                     (int)h[i].value_len, h[i].value);
        else
            snprintf(line, sizeof(line), "x-ots-signature: %s", sig);
        struct curl_slist *next = curl_slist_append(list, line);
        if (!next) {
            curl_slist_free_all(list);
            return NULL;
        }
        list = next;
    }
    /* No "Expect: 100-continue" round trip for large bodies. */
    struct curl_slist *next = curl_slist_append(list, "Expect:");
    if (!next)
        curl_slist_free_all(list);
    return next;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct sg_buf *b = userdata;
    return sg_buf_append(b, ptr, size * nmemb) == 0 ? size * nmemb : 0;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct sg_buf *b = userdata;
    size_t n = size * nmemb;
    /* A new status line starts a new header block (after a 1xx or a redirect). */
    if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0)
        sg_buf_reset(b);
    return sg_buf_append(b, ptr, n) == 0 ? n : 0;
}

/* Splits a raw header block into headers pointing into it. Returns the count. */
static size_t parse_headers(const struct sg_buf *raw, struct sg_ts_header *out, size_t max)
{
    size_t n = 0;
    const char *p = raw->data, *end = raw->data + raw->len;
    while (p && p < end && n < max) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon) {
            const char *v = colon + 1, *ve = line_end;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            out[n].name = p;
            out[n].name_len = (size_t)(colon - p);
            out[n].value = v;
            out[n].value_len = (size_t)(ve - v);
            n++;
        }
        p = eol ? eol + 1 : NULL;
    }
    return n;
}

int sg_ts_call_init(struct sg_ts_call *call, size_t max_body)
{
    memset(call, 0, sizeof(*call));
    sg_buf_init(&call->body, max_body);
    sg_buf_init(&call->resp, SG_TS_CALL_MAX_RESPONSE_BODY);
    sg_buf_init(&call->resp_hdrs, SG_TS_CALL_MAX_RESPONSE_HEADERS);
    call->easy = curl_easy_init();
    return call->easy ? 0 : -ENOMEM;
}

void sg_ts_call_free(struct sg_ts_call *call)
{
    if (call->easy)
        curl_easy_cleanup(call->easy);
    call->easy = NULL;
    curl_slist_free_all(call->hdrs);
    call->hdrs = NULL;
    sg_buf_free(&call->body);
    sg_buf_free(&call->resp);
    sg_buf_free(&call->resp_hdrs);
}

void sg_ts_call_reset(struct sg_ts_call *call)
{
    curl_slist_free_all(call->hdrs);
    call->hdrs = NULL;
    sg_buf_reset(&call->body);
    sg_buf_reset(&call->resp);
    sg_buf_reset(&call->resp_hdrs);
}

int sg_ts_call_prepare(struct sg_ts_call *call, const struct sg_ts_creds *creds,
                       const char *operation, long connect_timeout_ms, long timeout_ms)
{
    char url[1024];
    curl_slist_free_all(call->hdrs);
    call->hdrs = signed_headers(creds, operation, call->body.data, call->body.len);
    if (!call->hdrs)
        return -ENOMEM;
    sg_buf_reset(&call->resp);
    sg_buf_reset(&call->resp_hdrs);
    snprintf(url, sizeof(url), "%s/%s", creds->endpoint, operation);
    CURL *e = call->easy;
    curl_easy_reset(e);
    call->errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_URL, url); /* libcurl keeps its own copy */
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body.data);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body.len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &call->resp);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &call->resp_hdrs);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)&call->xfer);
    if (connect_timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
    if (timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
    return 0;
}

int sg_ts_call_verify(const struct sg_ts_call *call, const struct sg_ts_creds *creds,
                      const char *operation)
{
    struct sg_ts_header h[SG_TS_MAX_SIGNED_HEADERS + 16];
    size_t n = parse_headers(&call->resp_hdrs, h, SG_ARRAY_SIZE(h));
    return sg_ts_verify_response(creds->secret, strlen(creds->secret), creds->akid, operation, h, n,
                                 call->resp.data, call->resp.len);
}

long sg_ts_call_status(const struct sg_ts_call *call)
{
    long status = 0;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

const char *sg_ts_call_error(const struct sg_ts_call *call, CURLcode result)
{
    /* A request that never got a connection: libcurl counts one waiting for a free connection of
     * the multi handle as connecting, and then says "Failed to resolve host ... after 0 ms" or
     * "Connection timed out after 0 milliseconds". */
    curl_off_t connected_us = -1, sent_us = -1;
    curl_easy_getinfo(call->easy, CURLINFO_CONNECT_TIME_T, &connected_us);
    curl_easy_getinfo(call->easy, CURLINFO_PRETRANSFER_TIME_T, &sent_us);
    if (result == CURLE_OPERATION_TIMEDOUT && connected_us == 0 && sent_us == 0)
        return "no connection before its deadline: the client's connections "
               "(tablestore.max_in_flight) were all busy, or the endpoint accepted none";
    return call->errbuf[0] ? call->errbuf : curl_easy_strerror(result);
}
