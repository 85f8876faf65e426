/* Whole HTTP bodies through ingest, with no sinks and no streams.
 *
 * Byte 0 picks the format (bit 0: JSON or NDJSON) and the error-list limit (bits 1-3: 0 to 7
 * entries); byte 1 picks the error buffer's cap (a small one forces the "entry does not fit"
 * path). The rest is the body, in a heap buffer of exactly its size. Each run builds its own
 * configuration, metrics registry and ingest, and frees them all, so LeakSanitizer sees any
 * leak; rejections are logged at debug level with no rate limit to a /dev/null stream, so the
 * logging of bad input runs on every rejected event.
 *
 * Checks (abort on violation): accepted + rejected equals the number of events the body holds
 * (sg_json_split's count for JSON, the non-blank lines for NDJSON); a JSON body with broken
 * framing ingests nothing and reports where; the error list holds at most max_errors entries,
 * no more than the rejections, and parses as a JSON array of that many objects; the metrics
 * counted the same numbers. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "streamgate/buf.h"
#include "streamgate/config.h"
#include "streamgate/ingest.h"
#include "json_split.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"

#define NOW_MS INT64_C(1700000000000)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Opened once: a stream per run would only measure fopen. Closed at exit. */
static FILE *devnull;

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_ingest_body: %s\n", what);
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

static int count_element(void *arg, size_t index, const char *elem, size_t len, size_t offset)
{
    (*(size_t *)arg)++;
    return 0;
}

/* Events an NDJSON body holds: its lines that are not blank once one trailing '\r' is
 * dropped. */
static size_t count_lines(const char *body, size_t len)
{
    size_t n = 0, pos = 0;

    while (pos < len) {
        const char *nl = memchr(body + pos, '\n', len - pos);
        size_t seg = nl ? (size_t)(nl - (body + pos)) : len - pos;
        size_t l = seg;
        bool blank = true;

        if (l > 0 && body[pos + l - 1] == '\r')
            l--;
        for (size_t i = 0; i < l; i++) {
            char c = body[pos + i];
            if (c != ' ' && c != '\t' && c != '\r') {
                blank = false;
                break;
            }
        }
        if (!blank)
            n++;
        pos += seg + (nl ? 1 : 0);
    }
    return n;
}

/* The response's "errors" array, as the HTTP server wraps it, must be JSON with one object per
 * counted error. */
static void check_errors_json(const struct sg_buf *errors, size_t nerrors)
{
    struct sg_buf wrapped;
    cJSON *arr;

    sg_buf_init(&wrapped, 0);
    if (sg_buf_append_char(&wrapped, '[') != 0 ||
        sg_buf_append(&wrapped, errors->data, errors->len) != 0 ||
        sg_buf_append_char(&wrapped, ']') != 0)
        abort();
    arr = cJSON_ParseWithLength(wrapped.data, wrapped.len);
    if (!arr || !cJSON_IsArray(arr))
        fail("the error list is not a JSON array's inside");
    if ((size_t)cJSON_GetArraySize(arr) != nerrors)
        fail("the error list's length differs from nerrors");
    for (const cJSON *it = arr->child; it; it = it->next) {
        if (!cJSON_IsObject(it) || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(it, "index")) ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it, "error")))
            fail("an error entry without index or error");
    }
    cJSON_Delete(arr);
    sg_buf_free(&wrapped);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sg_config cfg;
    struct sg_metrics *metrics = NULL;
    struct sg_ingest *ing = NULL;
    struct sg_log log;
    struct sg_buf errors;
    struct sg_ingest_result res = {0};
    enum sg_body_format fmt;
    size_t expected = 0;
    char err[256];
    char *body;
    size_t len;
    int rc;

    if (size < 2)
        return 0;
    fmt = (data[0] & 1) ? SG_BODY_NDJSON : SG_BODY_JSON;
    res.max_errors = (data[0] >> 1) & 7;
    sg_buf_init(&errors, data[1] & 1 ? 64 + data[1] : 0);
    res.errors = &errors;
    len = size - 2;
    body = malloc(len ? len : 1);
    if (!body)
        abort();
    memcpy(body, data + 2, len);

    sg_config_defaults(&cfg);
    if (sg_config_set(&cfg, "log.bad_input_interval", "0", err, sizeof(err)) != 0)
        fail(err);
    sg_log_init(&log, SG_LOG_DEBUG, devnull);
    metrics = sg_metrics_create();
    if (!metrics)
        abort();
    ing = sg_ingest_create(&cfg, metrics, &log);
    if (!ing)
        abort();

    rc = sg_ingest_body(ing, fmt, body, len, NOW_MS, &res);

    if (fmt == SG_BODY_JSON) {
        int n = sg_json_split(body, len, count_element, &expected, NULL, NULL);
        if (rc == -EINVAL) {
            if (n >= 0)
                fail("a body the splitter accepts was refused");
            if (res.accepted || res.rejected || res.nerrors)
                fail("a body with broken framing ingested events");
            if (!res.bad_msg || res.bad_offset > len)
                fail("broken framing without a message or with an offset past the body");
        } else if (rc != 0 || n < 0 || (size_t)n != expected) {
            fail("JSON body result disagrees with the splitter");
        }
    } else {
        if (rc != 0)
            fail("an NDJSON body failed");
        expected = count_lines(body, len);
    }

    if (rc == 0 && res.accepted + res.rejected != expected)
        fail("accepted + rejected differs from the events in the body");
    if (res.nerrors > res.max_errors || res.nerrors > res.rejected)
        fail("more errors listed than allowed or than rejected");
    check_errors_json(&errors, res.nerrors);
    if (sg_metrics_counter_value(metrics, SG_METRIC_EVENTS_RECEIVED_TOTAL, "transport=\"http\"") !=
            res.accepted + res.rejected ||
        sg_metrics_counter_value(metrics, SG_METRIC_EVENTS_ACCEPTED_TOTAL, "transport=\"http\"") !=
            res.accepted)
        fail("metrics disagree with the result");

    sg_ingest_destroy(ing);
    sg_metrics_destroy(metrics);
    sg_config_free(&cfg);
    sg_buf_free(&errors);
    free(body);
    return 0;
}
