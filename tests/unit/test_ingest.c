/* Unit tests for ingest: decoding, counting, rejecting with reasons, rate-limited logging of bad
 * input, body splitting (JSON and NDJSON) with per-event errors, and the hand-off to the sink
 * set (fan-out, confirmations, readiness, drain). A small recording sink stands in for the
 * writers. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "streamgate/buf.h"
#include "streamgate/config.h"
#include "streamgate/event.h"
#include "streamgate/ingest.h"
#include "../../src/ingest/ahead.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "streamgate/sink.h"
#include "streamgate/sinks.h"

#define NOW_MS INT64_C(1700000000000)

/* ---- a sink that records what it was given ---- */

#define REC_MAX 32

struct rec_event {
    char raw[512];
    size_t raw_len;
    char key[128];
    int64_t ts_ms;
    enum sg_transport transport;
    int64_t received_ms;
};

struct test_sink {
    struct sg_sink sink;
    int fail_rc; /* returned by write_raw when non-zero */
    bool healthy;
    bool drain_async; /* keep the drain callback for the test to fire */
    size_t ndrains;
    sg_sink_drained_cb drained_cb;
    void *drained_arg;
    size_t n;
    struct rec_event ev[REC_MAX];
    struct sg_sink_done *held_done; /* the last confirmation taken, told when the test says */
};

static int test_sink_write_raw(struct sg_sink *sink, const struct sg_event *ev,
                               enum sg_transport transport, int64_t received_ms,
                               struct sg_sink_done *done)
{
    struct test_sink *ts = sg_container_of(sink, struct test_sink, sink);
    struct rec_event *r;

    if (ts->fail_rc)
        return ts->fail_rc;
    if (done)
        ts->held_done = done;
    cr_assert_lt(ts->n, REC_MAX);
    r = &ts->ev[ts->n++];
    cr_assert_lt(ev->raw_len, sizeof(r->raw));
    memcpy(r->raw, ev->raw, ev->raw_len);
    r->raw_len = ev->raw_len;
    cr_assert_lt(ev->key_len, sizeof(r->key));
    memcpy(r->key, ev->key, ev->key_len);
    r->key[ev->key_len] = '\0';
    r->ts_ms = ev->ts_ms;
    r->transport = transport;
    r->received_ms = received_ms;
    return 0;
}

static bool test_sink_healthy(struct sg_sink *sink)
{
    return sg_container_of(sink, struct test_sink, sink)->healthy;
}

static void test_sink_drain(struct sg_sink *sink, sg_sink_drained_cb cb, void *arg)
{
    struct test_sink *ts = sg_container_of(sink, struct test_sink, sink);

    ts->ndrains++;
    if (ts->drain_async) {
        ts->drained_cb = cb;
        ts->drained_arg = arg;
        return;
    }
    cb(sink, arg);
}

static void test_sink_destroy(struct sg_sink *sink)
{
}

static const struct sg_sink_ops test_sink_ops = {
    .name = "test",
    .write_raw = test_sink_write_raw,
    .healthy = test_sink_healthy,
    .drain = test_sink_drain,
    .destroy = test_sink_destroy,
};

static void test_sink_init(struct test_sink *ts)
{
    memset(ts, 0, sizeof(*ts));
    ts->sink.ops = &test_sink_ops;
    ts->healthy = true;
}

static bool rec_raw_is(const struct rec_event *r, const char *want)
{
    return r->raw_len == strlen(want) && memcmp(r->raw, want, r->raw_len) == 0;
}

/* ---- fixture ---- */

struct fx {
    struct sg_config cfg;
    struct sg_metrics *metrics;
    FILE *logf;
    struct sg_log log;
    struct sg_ingest *ing;
    struct sg_sinks *sinks;
    struct test_sink sink;
};

/* Builds an ingest with one test sink. `interval_ms` is the bad-input log interval. */
static void fx_init(struct fx *fx, uint64_t interval_ms)
{
    memset(fx, 0, sizeof(*fx));
    sg_config_defaults(&fx->cfg);
    fx->cfg.event_max_key_size = 8;
    fx->cfg.log_bad_input_interval_ms = interval_ms;
    fx->metrics = sg_metrics_create();
    cr_assert_not_null(fx->metrics);
    fx->logf = tmpfile();
    cr_assert_not_null(fx->logf);
    sg_log_init(&fx->log, SG_LOG_DEBUG, fx->logf);
    fx->ing = sg_ingest_create(&fx->cfg, fx->metrics, &fx->log);
    cr_assert_not_null(fx->ing);
    fx->sinks = sg_sinks_create();
    cr_assert_not_null(fx->sinks);
    test_sink_init(&fx->sink);
    cr_assert_eq(sg_sinks_add(fx->sinks, &fx->sink.sink), 0);
    sg_ingest_set_sinks(fx->ing, fx->sinks);
}

static void fx_free(struct fx *fx)
{
    sg_ingest_destroy(fx->ing);
    sg_sinks_destroy(fx->sinks);
    sg_metrics_destroy(fx->metrics);
    fclose(fx->logf);
    sg_config_free(&fx->cfg);
}

/* Everything logged so far, NUL-terminated (malloc'd). */
static char *fx_log_text(struct fx *fx)
{
    long n;
    char *s;

    fflush(fx->logf);
    n = ftell(fx->logf);
    cr_assert_geq(n, 0);
    s = calloc(1, (size_t)n + 1);
    cr_assert_not_null(s);
    rewind(fx->logf);
    cr_assert_eq(fread(s, 1, (size_t)n, fx->logf), (size_t)n);
    fseek(fx->logf, 0, SEEK_END);
    return s;
}

static size_t count_substr(const char *s, const char *sub)
{
    size_t n = 0;

    for (const char *p = strstr(s, sub); p; p = strstr(p + 1, sub))
        n++;
    return n;
}

static uint64_t counter(struct fx *fx, enum sg_metric id, const char *labels)
{
    return sg_metrics_counter_value(fx->metrics, id, labels);
}

static uint64_t received(struct fx *fx, const char *transport)
{
    char labels[64];

    snprintf(labels, sizeof(labels), "transport=\"%s\"", transport);
    return counter(fx, SG_METRIC_EVENTS_RECEIVED_TOTAL, labels);
}

static uint64_t accepted(struct fx *fx, const char *transport)
{
    char labels[64];

    snprintf(labels, sizeof(labels), "transport=\"%s\"", transport);
    return counter(fx, SG_METRIC_EVENTS_ACCEPTED_TOTAL, labels);
}

static uint64_t rejected(struct fx *fx, const char *transport, const char *reason)
{
    char labels[128];

    snprintf(labels, sizeof(labels), "transport=\"%s\",reason=\"%s\"", transport, reason);
    return counter(fx, SG_METRIC_EVENTS_REJECTED_TOTAL, labels);
}

static int ingest_str(struct fx *fx, enum sg_transport t, const char *s, enum sg_reject *why)
{
    return sg_ingest_event(fx->ing, t, s, strlen(s), NOW_MS, why);
}

/* ---- single events ---- */

Test(ingest, every_series_is_registered_at_zero)
{
    struct fx fx;
    struct sg_buf out;
    char line[256];

    fx_init(&fx, 1000);
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_metrics_render(fx.metrics, &out), 0);
    cr_assert_eq(sg_buf_append_char(&out, '\0'), 0);
    for (int t = 0; t < SG_TRANSPORT_COUNT; t++) {
        const char *tn = sg_transport_name((enum sg_transport)t);

        snprintf(line, sizeof(line), "streamgate_events_received_total{transport=\"%s\"} 0\n", tn);
        cr_assert_not_null(strstr(out.data, line), "missing: %s", line);
        snprintf(line, sizeof(line), "streamgate_events_accepted_total{transport=\"%s\"} 0\n", tn);
        cr_assert_not_null(strstr(out.data, line), "missing: %s", line);
        for (int r = 0; r < SG_REJECT_COUNT; r++) {
            snprintf(line, sizeof(line),
                     "streamgate_events_rejected_total{transport=\"%s\",reason=\"%s\"} 0\n", tn,
                     sg_reject_label((enum sg_reject)r));
            cr_assert_not_null(strstr(out.data, line), "missing: %s", line);
        }
    }
    sg_buf_free(&out);
    fx_free(&fx);
}

Test(ingest, accepted_event_reaches_the_sink)
{
    struct fx fx;
    enum sg_reject why = SG_REJECT_COUNT;
    const char *ev = "{\"key\":\"dev1\",\"ts\":1700000001234,\"v\":1.5}";

    fx_init(&fx, 1000);
    cr_assert_eq(ingest_str(&fx, SG_TRANSPORT_TCP, ev, &why), 0);
    cr_assert_eq(why, SG_REJECT_COUNT, "why must be left alone on success");
    cr_assert_eq(fx.sink.n, 1);
    cr_assert(rec_raw_is(&fx.sink.ev[0], ev));
    cr_assert_str_eq(fx.sink.ev[0].key, "dev1");
    cr_assert_eq(fx.sink.ev[0].ts_ms, INT64_C(1700000001234));
    cr_assert_eq(fx.sink.ev[0].transport, SG_TRANSPORT_TCP);
    cr_assert_eq(fx.sink.ev[0].received_ms, NOW_MS);
    cr_assert_eq(received(&fx, "tcp"), 1);
    cr_assert_eq(accepted(&fx, "tcp"), 1);
    cr_assert_eq(received(&fx, "http"), 0);
    cr_assert_eq(accepted(&fx, "http"), 0);
    for (int r = 0; r < SG_REJECT_COUNT; r++)
        cr_assert_eq(rejected(&fx, "tcp", sg_reject_label((enum sg_reject)r)), 0);

    /* No time field: arrival time. */
    cr_assert_eq(ingest_str(&fx, SG_TRANSPORT_HTTP, "{\"key\":7}", &why), 0);
    cr_assert_eq(fx.sink.n, 2);
    cr_assert_str_eq(fx.sink.ev[1].key, "7");
    cr_assert_eq(fx.sink.ev[1].ts_ms, NOW_MS);
    cr_assert_eq(fx.sink.ev[1].transport, SG_TRANSPORT_HTTP);
    cr_assert_eq(received(&fx, "http"), 1);
    cr_assert_eq(accepted(&fx, "http"), 1);
    fx_free(&fx);
}

/* The look-ahead queue hands events back oldest first, at most SG_INGEST_AHEAD held, and
 * keeps each one's place in its input. */
Test(ingest, ahead_queue_keeps_order)
{
    struct fx fx;
    struct sg_ingest_ahead a;
    struct sg_ingest_held ev, due;
    const char *text = "0123456789";
    size_t next = 0;

    fx_init(&fx, 1000);
    memset(&a, 0, sizeof(a));
    cr_assert_not(sg_ingest_ahead_pop(&a, &ev), "a zeroed queue is empty");
    for (size_t i = 0; i < 10; i++) {
        bool full = sg_ingest_ahead_push(
            fx.ing, &a,
            &(struct sg_ingest_held){
                .buf = text + i, .len = 1, .index = i, .line = i + 1, .offset = 2 * i},
            &due);
        cr_assert_eq(full, i >= SG_INGEST_AHEAD, "push %zu", i);
        if (full) {
            cr_assert_eq(due.buf, text + next);
            cr_assert_eq(due.index, next);
            cr_assert_eq(due.line, next + 1);
            cr_assert_eq(due.offset, 2 * next);
            next++;
        }
    }
    while (sg_ingest_ahead_pop(&a, &ev)) {
        cr_assert_eq(ev.buf, text + next);
        cr_assert_eq(ev.index, next);
        next++;
    }
    cr_assert_eq(next, 10);
    cr_assert_eq(fx.sink.n, 0, "the queue ingests nothing itself");
    fx_free(&fx);
}

Test(ingest, accepted_events_count_by_decoder)
{
    struct fx fx;
    enum sg_reject why = SG_REJECT_COUNT;

    fx_init(&fx, 1000);
    cr_assert_eq(ingest_str(&fx, SG_TRANSPORT_TCP, "{\"key\":\"a\",\"v\":1}", &why), 0);
    cr_assert_eq(ingest_str(&fx, SG_TRANSPORT_TCP, "{\"key\":\"b\",\"v\":2}", &why), 0);
    /* An escape sequence takes the tree decoder; a rejection counts under neither. */
    cr_assert_eq(ingest_str(&fx, SG_TRANSPORT_HTTP, "{\"key\":\"c\\n\"}", &why), 0);
    cr_assert_eq(ingest_str(&fx, SG_TRANSPORT_HTTP, "{\"v\":1}", &why), -EINVAL);
    cr_assert_eq(counter(&fx, SG_METRIC_EVENTS_DECODED_TOTAL, "decoder=\"flat\""), 2);
    cr_assert_eq(counter(&fx, SG_METRIC_EVENTS_DECODED_TOTAL, "decoder=\"tree\""), 1);
    fx_free(&fx);
}

Test(ingest, each_decode_reason_is_rejected_and_counted)
{
    static const struct {
        const char *input;
        enum sg_reject why;
    } cases[] = {
        {"{\"key\":", SG_REJECT_INVALID_JSON},
        {"", SG_REJECT_INVALID_JSON},
        {"{\"key\":\"a\"} trailing", SG_REJECT_INVALID_JSON},
        {"[1,2]", SG_REJECT_NOT_OBJECT},
        {"\"just a string\"", SG_REJECT_NOT_OBJECT},
        {"{\"v\":1}", SG_REJECT_MISSING_KEY},
        {"{\"key\":true}", SG_REJECT_MISSING_KEY},
        {"{\"key\":\"123456789\"}", SG_REJECT_KEY_TOO_LONG},
        {"{\"key\":\"a\",\"ts\":\"yesterday\"}", SG_REJECT_BAD_TIMESTAMP},
        {"{\"key\":\"a\",\"ts\":-5}", SG_REJECT_BAD_TIMESTAMP},
    };
    struct fx fx;
    uint64_t want[SG_REJECT_COUNT] = {0};

    fx_init(&fx, 1000);
    for (size_t i = 0; i < SG_ARRAY_SIZE(cases); i++) {
        enum sg_reject why = SG_REJECT_COUNT;

        cr_assert_eq(ingest_str(&fx, SG_TRANSPORT_TCP, cases[i].input, &why), -EINVAL,
                     "case %zu (%s) was accepted", i, cases[i].input);
        cr_assert_eq(why, cases[i].why, "case %zu (%s): got %s, want %s", i, cases[i].input,
                     sg_reject_label(why), sg_reject_label(cases[i].why));
        want[cases[i].why]++;
    }
    cr_assert_eq(fx.sink.n, 0, "no rejected event may reach a sink");
    cr_assert_eq(received(&fx, "tcp"), SG_ARRAY_SIZE(cases));
    cr_assert_eq(accepted(&fx, "tcp"), 0);
    for (int r = 0; r < SG_REJECT_COUNT; r++) {
        const char *label = sg_reject_label((enum sg_reject)r);

        cr_assert_eq(rejected(&fx, "tcp", label), want[r], "reason %s", label);
        cr_assert_eq(rejected(&fx, "http", label), 0, "reason %s", label);
    }
    fx_free(&fx);
}

Test(ingest, reject_before_decoding_counts_as_received)
{
    struct fx fx;

    fx_init(&fx, 1000);
    sg_ingest_reject(fx.ing, SG_TRANSPORT_TCP, SG_REJECT_LINE_TOO_LONG);
    sg_ingest_reject(fx.ing, SG_TRANSPORT_TCP, SG_REJECT_LINE_TOO_LONG);
    cr_assert_eq(received(&fx, "tcp"), 2);
    cr_assert_eq(accepted(&fx, "tcp"), 0);
    cr_assert_eq(rejected(&fx, "tcp", "line_too_long"), 2);
    cr_assert_eq(fx.sink.n, 0);

    char *log = fx_log_text(&fx);
    cr_assert_eq(count_substr(log, "\"msg\":\"event rejected\""), 1, "log: %s", log);
    cr_assert_not_null(strstr(log, "\"transport\":\"tcp\""));
    cr_assert_not_null(strstr(log, "\"reason\":\"line_too_long\""));
    cr_assert_not_null(strstr(log, "\"level\":\"warn\""));
    cr_assert_null(strstr(log, "\"input\""), "nothing to quote for a line never decoded");
    free(log);
    fx_free(&fx);
}

Test(ingest, failing_sink_rejects_with_sink_failed)
{
    struct fx fx;
    struct test_sink second;
    enum sg_reject why = SG_REJECT_COUNT;

    fx_init(&fx, 1000);
    test_sink_init(&second);
    cr_assert_eq(sg_sinks_add(fx.sinks, &second.sink), 0);
    fx.sink.fail_rc = -ENOBUFS;

    cr_assert_eq(ingest_str(&fx, SG_TRANSPORT_HTTP, "{\"key\":\"a\"}", &why), -EINVAL);
    cr_assert_eq(why, SG_REJECT_SINK_FAILED);
    cr_assert_eq(second.n, 1, "a failing sink must not starve the others");
    cr_assert_eq(received(&fx, "http"), 1);
    cr_assert_eq(accepted(&fx, "http"), 0);
    cr_assert_eq(rejected(&fx, "http", "sink_failed"), 1);

    char *log = fx_log_text(&fx);
    cr_assert_not_null(strstr(log, "\"reason\":\"sink_failed\""), "log: %s", log);
    cr_assert_not_null(strstr(log, "\"sink\":\"test\""), "log: %s", log);
    cr_assert_not_null(strstr(log, "\"error\":"), "log: %s", log);
    free(log);

    /* The sink recovers: the next event goes through. */
    fx.sink.fail_rc = 0;
    cr_assert_eq(ingest_str(&fx, SG_TRANSPORT_HTTP, "{\"key\":\"b\"}", &why), 0);
    cr_assert_eq(fx.sink.n, 1);
    cr_assert_eq(accepted(&fx, "http"), 1);
    fx_free(&fx);
}

Test(ingest, sink_limit_is_enforced)
{
    struct fx fx;
    struct test_sink extra[SG_SINKS_MAX];

    fx_init(&fx, 1000);
    for (size_t i = 0; i < SG_SINKS_MAX - 1; i++) {
        test_sink_init(&extra[i]);
        cr_assert_eq(sg_sinks_add(fx.sinks, &extra[i].sink), 0);
    }
    test_sink_init(&extra[SG_SINKS_MAX - 1]);
    cr_assert_eq(sg_sinks_add(fx.sinks, &extra[SG_SINKS_MAX - 1].sink), -ENOSPC);
    fx_free(&fx);
}

/* ---- logging of bad input ---- */

Test(ingest, bad_input_log_quotes_at_most_64_bytes)
{
    struct fx fx;
    char input[201];
    char want[80];
    enum sg_reject why;

    fx_init(&fx, 3600 * 1000);
    memset(input, 'x', 200);
    input[200] = '\0';
    input[0] = '@'; /* cannot start a JSON value */
    cr_assert_eq(ingest_str(&fx, SG_TRANSPORT_TCP, input, &why), -EINVAL);
    cr_assert_eq(why, SG_REJECT_INVALID_JSON);

    char *log = fx_log_text(&fx);
    snprintf(want, sizeof(want), "\"input\":\"%.64s\"", input);
    cr_assert_not_null(strstr(log, want), "log: %s", log);
    cr_assert_not_null(strstr(log, "\"reason\":\"invalid_json\""));
    cr_assert_not_null(strstr(log, "\"transport\":\"tcp\""));
    cr_assert_null(strstr(log, "\"suppressed\""), "nothing was suppressed yet");
    free(log);
    fx_free(&fx);
}

Test(ingest, bad_input_log_escapes_control_bytes)
{
    struct fx fx;
    enum sg_reject why;
    static const char input[] = "{\"key\":\"a\0b\"}\n";

    fx_init(&fx, 3600 * 1000);
    cr_assert_eq(sg_ingest_event(fx.ing, SG_TRANSPORT_TCP, input, sizeof(input) - 1, NOW_MS, &why),
                 -EINVAL);
    char *log = fx_log_text(&fx);
    cr_assert_not_null(strstr(log, "\\u0000"), "log: %s", log);
    cr_assert_eq(count_substr(log, "\n"), 1, "one line per message: %s", log);
    free(log);
    fx_free(&fx);
}

Test(ingest, bad_input_log_is_rate_limited_per_reason)
{
    struct fx fx;
    enum sg_reject why;

    fx_init(&fx, 200);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(ingest_str(&fx, SG_TRANSPORT_TCP, "nope", &why), -EINVAL);
    /* Another reason has its own limiter. */
    cr_assert_eq(ingest_str(&fx, SG_TRANSPORT_HTTP, "{\"v\":1}", &why), -EINVAL);

    char *log = fx_log_text(&fx);
    cr_assert_eq(count_substr(log, "\"reason\":\"invalid_json\""), 1, "log: %s", log);
    cr_assert_eq(count_substr(log, "\"reason\":\"missing_key\""), 1, "log: %s", log);
    free(log);
    cr_assert_eq(rejected(&fx, "tcp", "invalid_json"), 5, "every one is counted");

    usleep(300 * 1000);
    cr_assert_eq(ingest_str(&fx, SG_TRANSPORT_TCP, "nope", &why), -EINVAL);
    log = fx_log_text(&fx);
    cr_assert_eq(count_substr(log, "\"reason\":\"invalid_json\""), 2, "log: %s", log);
    cr_assert_not_null(strstr(log, "\"suppressed\":4"), "log: %s", log);
    free(log);
    fx_free(&fx);
}

/* ---- bodies ---- */

struct body_run {
    struct sg_buf errors;
    struct sg_ingest_result res;
    int rc;
};

static void body_run(struct fx *fx, struct body_run *br, enum sg_body_format fmt, const char *body,
                     size_t max_errors)
{
    sg_buf_init(&br->errors, 0);
    memset(&br->res, 0, sizeof(br->res));
    br->res.max_errors = max_errors;
    br->res.errors = &br->errors;
    br->rc = sg_ingest_body(fx->ing, fmt, body, strlen(body), NOW_MS, &br->res);
    cr_assert_eq(sg_buf_append_char(&br->errors, '\0'), 0);
}

static void body_free(struct body_run *br)
{
    sg_buf_free(&br->errors);
}

static size_t offset_of(const char *body, const char *needle)
{
    const char *p = strstr(body, needle);

    cr_assert_not_null(p, "%s not in body", needle);
    return (size_t)(p - body);
}

Test(ingest, json_body_single_object)
{
    struct fx fx;
    struct body_run br;

    fx_init(&fx, 1000);
    body_run(&fx, &br, SG_BODY_JSON, "  {\"key\":\"a\",\"v\":2}\n", 10);
    cr_assert_eq(br.rc, 0);
    cr_assert_eq(br.res.accepted, 1);
    cr_assert_eq(br.res.rejected, 0);
    cr_assert_eq(br.res.nerrors, 0);
    cr_assert_str_eq(br.errors.data, "");
    cr_assert_eq(fx.sink.n, 1);
    cr_assert(rec_raw_is(&fx.sink.ev[0], "{\"key\":\"a\",\"v\":2}"));
    cr_assert_eq(fx.sink.ev[0].transport, SG_TRANSPORT_HTTP);
    cr_assert_eq(received(&fx, "http"), 1);
    cr_assert_eq(accepted(&fx, "http"), 1);
    body_free(&br);
    fx_free(&fx);
}

Test(ingest, json_body_single_invalid_object)
{
    struct fx fx;
    struct body_run br;

    fx_init(&fx, 1000);
    body_run(&fx, &br, SG_BODY_JSON, "{\"v\":2}", 10);
    cr_assert_eq(br.rc, 0);
    cr_assert_eq(br.res.accepted, 0);
    cr_assert_eq(br.res.rejected, 1);
    cr_assert_eq(br.res.nerrors, 1);
    cr_assert_str_eq(br.errors.data,
                     "{\"index\":0,\"offset\":0,\"error\":\"missing_key: the key field is "
                     "missing or not a string or number\"}");
    body_free(&br);
    fx_free(&fx);
}

Test(ingest, json_body_holding_ndjson_says_so)
{
    struct fx fx;
    struct body_run br;

    fx_init(&fx, 1000);
    body_run(&fx, &br, SG_BODY_JSON, "{\"key\":\"a\",\"v\":1}\n{\"key\":\"b\",\"v\":2}\n", 10);
    cr_assert_eq(br.rc, 0);
    cr_assert_eq(br.res.accepted, 0);
    cr_assert_eq(br.res.rejected, 1);
    /* The same entry and reason as any invalid body; only the message says more. */
    cr_assert_str_eq(br.errors.data,
                     "{\"index\":0,\"offset\":0,\"error\":\"invalid_json: not valid JSON; the "
                     "body looks like NDJSON (one JSON object per line): send it with "
                     "Content-Type: application/x-ndjson\"}");
    cr_assert_eq(rejected(&fx, "http", "invalid_json"), 1);
    body_free(&br);

    /* Sent as NDJSON, the same body is two events. */
    body_run(&fx, &br, SG_BODY_NDJSON, "{\"key\":\"a\",\"v\":1}\n{\"key\":\"b\",\"v\":2}\n", 10);
    cr_assert_eq(br.res.accepted, 2);
    body_free(&br);
    fx_free(&fx);
}

Test(ingest, json_body_hint_only_for_ndjson)
{
    static const char *const bodies[] = {
        "{\"key\":\"a\",}",                             /* invalid, one line */
        "{\"key\":\"a\"} {\"key\":\"b\"}",              /* two objects, no newline */
        "{\n \"key\": \"a\"\n}\n{\n \"key\": \"b\"\n}", /* pretty-printed, one after another */
        "[{\"key\":\"a\"},{\"key\":\"a\",}]",           /* an invalid element of an array */
        "[{\"key\":\"a\"},\n{\"key\":\"a\",}\n,{\"key\":\"b\"}]", /* the same over lines */
    };
    struct fx fx;
    struct body_run br;

    fx_init(&fx, 1000);
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        body_run(&fx, &br, SG_BODY_JSON, bodies[i], 10);
        cr_assert_eq(br.rc, 0, "%s", bodies[i]);
        cr_assert_geq(br.res.rejected, 1, "%s", bodies[i]);
        cr_assert_not_null(strstr(br.errors.data, "invalid_json: not valid JSON\""), "%s: %s",
                           bodies[i], br.errors.data);
        cr_assert_null(strstr(br.errors.data, "NDJSON"), "%s: %s", bodies[i], br.errors.data);
        body_free(&br);
    }
    fx_free(&fx);
}

Test(ingest, json_body_array_with_mixed_elements)
{
    struct fx fx;
    struct body_run br;
    char want[1024];
    const char *body = "[ {\"key\":\"a\",\"n\":[1,\"]\"]} ,42,\n"
                       "{\"nokey\":1}, {\"key\":}, {\"key\":\"b\"},\"s\"]";

    fx_init(&fx, 1000);
    body_run(&fx, &br, SG_BODY_JSON, body, 10);
    cr_assert_eq(br.rc, 0);
    cr_assert_eq(br.res.accepted, 2);
    cr_assert_eq(br.res.rejected, 4);
    cr_assert_eq(br.res.nerrors, 4);
    snprintf(want, sizeof(want),
             "{\"index\":1,\"offset\":%zu,\"error\":\"not_object: an event must be a JSON "
             "object\"},"
             "{\"index\":2,\"offset\":%zu,\"error\":\"missing_key: the key field is missing or "
             "not a string or number\"},"
             "{\"index\":3,\"offset\":%zu,\"error\":\"invalid_json: not valid JSON\"},"
             "{\"index\":5,\"offset\":%zu,\"error\":\"not_object: an event must be a JSON "
             "object\"}",
             offset_of(body, "42"), offset_of(body, "{\"nokey\""), offset_of(body, "{\"key\":}"),
             offset_of(body, "\"s\""));
    cr_assert_str_eq(br.errors.data, want);

    /* The sink sees exactly each element's bytes, without the separators around them. */
    cr_assert_eq(fx.sink.n, 2);
    cr_assert(rec_raw_is(&fx.sink.ev[0], "{\"key\":\"a\",\"n\":[1,\"]\"]}"), "got %.*s",
              (int)fx.sink.ev[0].raw_len, fx.sink.ev[0].raw);
    cr_assert(rec_raw_is(&fx.sink.ev[1], "{\"key\":\"b\"}"));

    cr_assert_eq(received(&fx, "http"), 6);
    cr_assert_eq(accepted(&fx, "http"), 2);
    cr_assert_eq(rejected(&fx, "http", "not_object"), 2);
    cr_assert_eq(rejected(&fx, "http", "missing_key"), 1);
    cr_assert_eq(rejected(&fx, "http", "invalid_json"), 1);
    cr_assert_eq(received(&fx, "tcp"), 0);
    body_free(&br);
    fx_free(&fx);
}

Test(ingest, json_body_empty_array)
{
    struct fx fx;
    struct body_run br;

    fx_init(&fx, 1000);
    body_run(&fx, &br, SG_BODY_JSON, "[ ]", 10);
    cr_assert_eq(br.rc, 0);
    cr_assert_eq(br.res.accepted, 0);
    cr_assert_eq(br.res.rejected, 0);
    cr_assert_eq(received(&fx, "http"), 0);
    body_free(&br);
    fx_free(&fx);
}

Test(ingest, json_body_framing_error_ingests_nothing)
{
    static const char *const bodies[] = {
        "[{\"key\":\"a\"}, {\"key\":\"b\"",
        "[{\"key\":\"a\"} {\"key\":\"b\"}]",
        "[{\"key\":\"a\"}, \"unterminated]",
        "[{\"key\":\"a\"}] trailing",
    };

    for (size_t i = 0; i < SG_ARRAY_SIZE(bodies); i++) {
        struct fx fx;
        struct body_run br;

        fx_init(&fx, 1000);
        body_run(&fx, &br, SG_BODY_JSON, bodies[i], 10);
        cr_assert_eq(br.rc, -EINVAL, "body %zu: %s", i, bodies[i]);
        cr_assert_not_null(br.res.bad_msg, "body %zu", i);
        cr_assert_leq(br.res.bad_offset, strlen(bodies[i]), "body %zu", i);
        cr_assert_eq(br.res.accepted, 0);
        cr_assert_eq(br.res.rejected, 0);
        cr_assert_eq(br.res.nerrors, 0);
        cr_assert_eq(fx.sink.n, 0, "body %zu: nothing may be ingested", i);
        cr_assert_eq(received(&fx, "http"), 0);
        body_free(&br);
        fx_free(&fx);
    }
}

Test(ingest, ndjson_body_counts_lines_and_events)
{
    struct fx fx;
    struct body_run br;
    char want[1024];
    /* line 1: ok; 2: blank; 3: invalid; 4: spaces only; 5: ok with CRLF; 6: missing key, no
     * final newline. */
    const char *body = "{\"key\":\"a\"}\n"
                       "\n"
                       "{bad\n"
                       "   \n"
                       "{\"key\":\"b\",\"v\":1}\r\n"
                       "{\"v\":1}";

    fx_init(&fx, 1000);
    body_run(&fx, &br, SG_BODY_NDJSON, body, 10);
    cr_assert_eq(br.rc, 0);
    cr_assert_eq(br.res.accepted, 2);
    cr_assert_eq(br.res.rejected, 2);
    cr_assert_eq(br.res.nerrors, 2);
    snprintf(want, sizeof(want),
             "{\"index\":1,\"line\":3,\"offset\":%zu,\"error\":\"invalid_json: not valid JSON\"},"
             "{\"index\":3,\"line\":6,\"offset\":%zu,\"error\":\"missing_key: the key field is "
             "missing or not a string or number\"}",
             offset_of(body, "{bad"), offset_of(body, "{\"v\":1}"));
    cr_assert_str_eq(br.errors.data, want);

    cr_assert_eq(fx.sink.n, 2);
    cr_assert(rec_raw_is(&fx.sink.ev[0], "{\"key\":\"a\"}"));
    cr_assert(rec_raw_is(&fx.sink.ev[1], "{\"key\":\"b\",\"v\":1}"), "the CR is not part of it");
    cr_assert_eq(received(&fx, "http"), 4);
    cr_assert_eq(accepted(&fx, "http"), 2);
    cr_assert_eq(rejected(&fx, "http", "invalid_json"), 1);
    cr_assert_eq(rejected(&fx, "http", "missing_key"), 1);
    body_free(&br);
    fx_free(&fx);
}

Test(ingest, ndjson_body_last_line_without_newline_is_ingested)
{
    struct fx fx;
    struct body_run br;
    char want[256];
    const char *body = "\n\n{\"key\":\"a\"}\n{\"key\":\"bb\"}";

    fx_init(&fx, 1000);
    body_run(&fx, &br, SG_BODY_NDJSON, body, 10);
    cr_assert_eq(br.rc, 0);
    cr_assert_eq(br.res.accepted, 2);
    cr_assert_eq(fx.sink.n, 2);
    cr_assert(rec_raw_is(&fx.sink.ev[1], "{\"key\":\"bb\"}"));

    /* The same body with a bad last line reports its real line and offset. */
    body_free(&br);
    body = "\n\n{\"key\":\"a\"}\n[1]";
    body_run(&fx, &br, SG_BODY_NDJSON, body, 10);
    cr_assert_eq(br.res.accepted, 1);
    cr_assert_eq(br.res.rejected, 1);
    snprintf(want, sizeof(want),
             "{\"index\":1,\"line\":4,\"offset\":%zu,\"error\":\"not_object: an event must be a "
             "JSON object\"}",
             offset_of(body, "[1]"));
    cr_assert_str_eq(br.errors.data, want);
    body_free(&br);
    fx_free(&fx);
}

Test(ingest, ndjson_body_empty_and_blank)
{
    struct fx fx;
    struct body_run br;

    fx_init(&fx, 1000);
    body_run(&fx, &br, SG_BODY_NDJSON, "", 10);
    cr_assert_eq(br.rc, 0);
    cr_assert_eq(br.res.accepted + br.res.rejected, 0);
    body_free(&br);
    body_run(&fx, &br, SG_BODY_NDJSON, "\n\r\n  \n", 10);
    cr_assert_eq(br.rc, 0);
    cr_assert_eq(br.res.accepted + br.res.rejected, 0);
    cr_assert_eq(received(&fx, "http"), 0);
    body_free(&br);
    fx_free(&fx);
}

Test(ingest, max_errors_caps_the_list_not_the_count)
{
    struct fx fx;
    struct body_run br;
    struct sg_buf body;

    fx_init(&fx, 1000);
    sg_buf_init(&body, 0);
    cr_assert_eq(sg_buf_append_char(&body, '['), 0);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(sg_buf_printf(&body, "%s{\"n\":%d}", i ? "," : "", i), 0);
    cr_assert_eq(sg_buf_append_str(&body, ",{\"key\":\"ok\"}]"), 0);
    cr_assert_eq(sg_buf_append_char(&body, '\0'), 0);

    body_run(&fx, &br, SG_BODY_JSON, body.data, 3);
    cr_assert_eq(br.rc, 0);
    cr_assert_eq(br.res.accepted, 1);
    cr_assert_eq(br.res.rejected, 10);
    cr_assert_eq(br.res.nerrors, 3);
    cr_assert_eq(count_substr(br.errors.data, "{\"index\":"), 3, "%s", br.errors.data);
    cr_assert_not_null(strstr(br.errors.data, "{\"index\":2,"));
    cr_assert_null(strstr(br.errors.data, "{\"index\":3,"));
    cr_assert_eq(rejected(&fx, "http", "missing_key"), 10);
    body_free(&br);

    body_run(&fx, &br, SG_BODY_JSON, body.data, 0);
    cr_assert_eq(br.res.rejected, 10);
    cr_assert_eq(br.res.nerrors, 0);
    cr_assert_str_eq(br.errors.data, "");
    body_free(&br);
    sg_buf_free(&body);
    fx_free(&fx);
}

Test(ingest, errors_buffer_cap_keeps_the_list_well_formed)
{
    struct fx fx;
    struct sg_buf errors;
    struct sg_ingest_result res = {0};
    const char *body = "[1,2,3]";
    const char *one = "{\"index\":0,\"offset\":1,\"error\":\"not_object: an event must be a "
                      "JSON object\"}";

    fx_init(&fx, 1000);
    /* Room for one entry and a half: the second must not be cut in the middle. */
    sg_buf_init(&errors, strlen(one) * 3 / 2);
    res.max_errors = 10;
    res.errors = &errors;
    cr_assert_eq(sg_ingest_body(fx.ing, SG_BODY_JSON, body, strlen(body), NOW_MS, &res), 0);
    cr_assert_eq(res.rejected, 3);
    cr_assert_eq(res.nerrors, 1);
    cr_assert_eq(errors.len, strlen(one));
    cr_assert_eq(memcmp(errors.data, one, errors.len), 0);
    sg_buf_free(&errors);
    fx_free(&fx);
}

Test(ingest, body_result_is_reset_between_calls)
{
    struct fx fx;
    struct sg_ingest_result res = {.accepted = 99, .rejected = 99, .nerrors = 0};
    const char *body = "{\"key\":\"a\"}";

    fx_init(&fx, 1000);
    res.max_errors = 5;
    res.errors = NULL; /* the caller may only want the counts */
    cr_assert_eq(sg_ingest_body(fx.ing, SG_BODY_JSON, body, strlen(body), NOW_MS, &res), 0);
    cr_assert_eq(res.accepted, 1);
    cr_assert_eq(res.rejected, 0);
    body = "[1,2]";
    cr_assert_eq(sg_ingest_body(fx.ing, SG_BODY_JSON, body, strlen(body), NOW_MS, &res), 0);
    cr_assert_eq(res.accepted, 0);
    cr_assert_eq(res.rejected, 2);
    cr_assert_eq(res.nerrors, 2);
    fx_free(&fx);
}

Test(ingest, failing_sink_in_a_body_is_reported_per_event)
{
    struct fx fx;
    struct body_run br;

    fx_init(&fx, 1000);
    fx.sink.fail_rc = -ENOBUFS;
    body_run(&fx, &br, SG_BODY_NDJSON, "{\"key\":\"a\"}\n", 10);
    cr_assert_eq(br.rc, 0);
    cr_assert_eq(br.res.rejected, 1);
    cr_assert_str_eq(br.errors.data,
                     "{\"index\":0,\"line\":1,\"offset\":0,\"error\":\"sink_failed: "
                     "the event could not be handed to a writer\"}");
    cr_assert_eq(rejected(&fx, "http", "sink_failed"), 1);
    body_free(&br);
    fx_free(&fx);
}

/* ---- readiness and drain ---- */

Test(ingest, ready_follows_every_sink)
{
    struct fx fx;
    struct test_sink second;

    fx_init(&fx, 1000);
    test_sink_init(&second);
    cr_assert_eq(sg_sinks_add(fx.sinks, &second.sink), 0);
    cr_assert(sg_ingest_ready(fx.ing));
    second.healthy = false;
    cr_assert_not(sg_ingest_ready(fx.ing));
    second.healthy = true;
    fx.sink.healthy = false;
    cr_assert_not(sg_ingest_ready(fx.ing));
    fx_free(&fx);
}

static void count_cb(void *arg)
{
    (*(int *)arg)++;
}

Test(ingest, drain_calls_back_once_after_the_last_sink)
{
    struct fx fx;
    struct test_sink second;
    int called = 0;

    fx_init(&fx, 1000);
    test_sink_init(&second);
    second.drain_async = true;
    fx.sink.drain_async = true;
    cr_assert_eq(sg_sinks_add(fx.sinks, &second.sink), 0);

    sg_sinks_drain(fx.sinks, count_cb, &called);
    cr_assert_eq(fx.sink.ndrains, 1);
    cr_assert_eq(second.ndrains, 1);
    cr_assert_eq(called, 0);
    second.drained_cb(&second.sink, second.drained_arg);
    cr_assert_eq(called, 0, "one sink is still draining");
    fx.sink.drained_cb(&fx.sink.sink, fx.sink.drained_arg);
    cr_assert_eq(called, 1);
    fx_free(&fx);
}

Test(ingest, drain_with_sinks_calling_back_at_once)
{
    struct fx fx;
    struct test_sink second;
    int called = 0;

    fx_init(&fx, 1000);
    test_sink_init(&second);
    cr_assert_eq(sg_sinks_add(fx.sinks, &second.sink), 0);
    sg_sinks_drain(fx.sinks, count_cb, &called);
    cr_assert_eq(fx.sink.ndrains, 1);
    cr_assert_eq(second.ndrains, 1, "every sink is asked even if the first calls back at once");
    cr_assert_eq(called, 1);
    fx_free(&fx);
}

Test(ingest, drain_without_sinks)
{
    struct sg_config cfg;
    struct sg_metrics *metrics = sg_metrics_create();
    struct sg_log log;
    struct sg_ingest *ing;
    int called = 0;

    sg_config_defaults(&cfg);
    sg_log_init(&log, SG_LOG_OFF, NULL);
    ing = sg_ingest_create(&cfg, metrics, &log);
    cr_assert_not_null(ing);
    cr_assert(sg_ingest_ready(ing));
    cr_assert(sg_ingest_accepting(ing));
    struct sg_sinks *sinks = sg_sinks_create();
    cr_assert_not_null(sinks);
    sg_ingest_set_sinks(ing, sinks);
    cr_assert(sg_ingest_ready(ing));
    cr_assert_not(sg_sinks_take_raw(sinks));
    sg_sinks_drain(sinks, count_cb, &called);
    cr_assert_eq(called, 1);
    sg_sinks_destroy(sinks);
    sg_sinks_destroy(NULL);
    sg_ingest_destroy(ing);
    sg_ingest_destroy(NULL);
    sg_metrics_destroy(metrics);
    sg_config_free(&cfg);
}

/* ---- confirmations through the set ---- */

struct count_done {
    struct sg_sink_done done;
    int written, failed;
};

static void count_done_cb(struct sg_sink_done *done, bool written)
{
    struct count_done *c = sg_container_of(done, struct count_done, done);
    if (written)
        c->written++;
    else
        c->failed++;
}

static void test_sink_tell(struct test_sink *ts, bool written)
{
    cr_assert_not_null(ts->held_done);
    struct sg_sink_done *d = ts->held_done;
    ts->held_done = NULL;
    d->cb(d, written);
}

Test(sinks, write_raw_counts_the_writers_that_took_the_confirmation)
{
    struct fx fx;
    struct test_sink second, refusing;
    struct count_done c = {.done.cb = count_done_cb};
    struct sg_event ev = {.key = "k", .key_len = 1, .raw = "{}", .raw_len = 2};
    struct sg_sinks_outcome out;

    fx_init(&fx, 1000);
    test_sink_init(&second);
    cr_assert_eq(sg_sinks_add(fx.sinks, &second.sink), 0);
    cr_assert(sg_sinks_take_raw(fx.sinks));
    cr_assert_not(sg_sinks_take_results(fx.sinks));
    cr_assert_eq(sg_sinks_write_raw(fx.sinks, &ev, SG_TRANSPORT_HTTP, NOW_MS, &c.done, &out), 0);
    cr_assert_eq(out.took, 2);
    cr_assert_null(out.failed);
    test_sink_tell(&fx.sink, true);
    test_sink_tell(&second, false);
    cr_assert_eq(c.written, 1);
    cr_assert_eq(c.failed, 1);

    /* A writer that refuses: the others still take it, and the set names the refuser. */
    test_sink_init(&refusing);
    refusing.fail_rc = -ENOBUFS;
    cr_assert_eq(sg_sinks_add(fx.sinks, &refusing.sink), 0);
    cr_assert_eq(sg_sinks_write_raw(fx.sinks, &ev, SG_TRANSPORT_TCP, NOW_MS, &c.done, &out),
                 -ENOBUFS);
    cr_assert_eq(out.took, 2);
    cr_assert_eq(out.failed, &refusing.sink);
    cr_assert_eq(out.err, -ENOBUFS);
    cr_assert_eq(second.n, 2, "the refusal starved no one");
    test_sink_tell(&fx.sink, true);
    test_sink_tell(&second, true);
    cr_assert_null(refusing.held_done, "a refused record is never confirmed");
    cr_assert_eq(c.written, 3);

    /* Without a confirmation nobody takes one. */
    cr_assert_eq(sg_sinks_write_raw(fx.sinks, &ev, SG_TRANSPORT_TCP, NOW_MS, NULL, &out), -ENOBUFS);
    cr_assert_eq(out.took, 0);
    fx_free(&fx);
}

Test(sinks, render_info_names_the_writer_or_null)
{
    struct fx fx;
    struct sg_buf out;
    fx_init(&fx, 1000);
    sg_buf_init(&out, 1024);
    cr_assert_eq(sg_sinks_render_info(fx.sinks, "kafka", &out), 0);
    cr_assert_eq(out.len, 4);
    cr_assert_eq(memcmp(out.data, "null", 4), 0);
    sg_buf_free(&out);
    fx_free(&fx);
}
