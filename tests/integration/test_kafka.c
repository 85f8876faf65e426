/* Kafka end to end: the gateway produces to a mock Kafka cluster (librdkafka's mock brokers,
 * run by the mock_kafka tool in its own process so the test can take brokers down), and the
 * records are read back with kcat over the real Kafka protocol. Covers raw events over both
 * transports (bytes, key, headers, per-key order, partitioning), window results on the
 * aggregates topic, a broker outage, the embedded cluster, and the drain on SIGTERM. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "kafka_util.h"

#define PARTITIONS "12"
#define T0         1700000000000LL /* a multiple of the window size used here */
#define WAIT_MS    30000

#define RAW_DELIVERED                                                                              \
    "streamgate_sink_records_total{sink=\"kafka\",stream=\"raw\",result=\"delivered\"}"
#define TCP_ACCEPTED "streamgate_events_accepted_total{transport=\"tcp\"}"

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int find_value(const struct sgt_recs *r, const char *value)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->v[i].value, value) == 0)
            return (int)i;
    return -1;
}

/* Asserts the records with key `key`, in topic order, carry seq 0..n-1 in that order and all
 * sit on one partition; returns that partition. */
static int check_key_order(const struct sgt_recs *r, const char *key, int n)
{
    int next = 0, partition = -1;
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->v[i].key, key) != 0)
            continue;
        cJSON *j = cJSON_Parse(r->v[i].value);
        cr_assert_not_null(j, "value is not JSON: %s", r->v[i].value);
        cJSON *seq = cJSON_GetObjectItem(j, "seq");
        cr_assert(cJSON_IsNumber(seq), "%s", r->v[i].value);
        cr_assert_eq((int)seq->valuedouble, next, "key %s: seq %d where %d was due", key,
                     (int)seq->valuedouble, next);
        cJSON_Delete(j);
        next++;
        if (partition < 0)
            partition = r->v[i].partition;
        cr_assert_eq(r->v[i].partition, partition, "key %s on partitions %d and %d", key, partition,
                     r->v[i].partition);
    }
    cr_assert_eq(next, n, "key %s: %d records, %d expected", key, next, n);
    return partition;
}

static void start_gateway(struct sgt_proc *p, const char *bootstrap, const char *const *more)
{
    const char *args[32];
    size_t n = 0;
    args[n++] = "--kafka-brokers";
    args[n++] = bootstrap;
    args[n++] = "--kafka-partitions";
    args[n++] = PARTITIONS;
    for (const char *const *a = more; a && *a && n < 30; a++)
        args[n++] = *a;
    args[n] = NULL;
    sgt_start(p, args, NULL);
}

/* ---- tests ---- */

Test(kafka, raw_events_over_http_and_tcp_keep_bytes_key_headers_and_order)
{
    struct sgt_mock m = {0};
    sgt_mock_start(&m, PARTITIONS, "events,aggregates");
    struct sgt_proc p;
    const char *more[] = {"--kafka-headers", "transport,received-at", NULL};
    start_gateway(&p, m.bootstrap, more);

    /* 20 events for 5 keys over HTTP, as one array with no spaces between elements so each
     * element's bytes are exactly known; then 20 lines for 5 other keys over TCP. */
    char sent[40][160];
    char body[8192] = "[";
    for (int i = 0; i < 20; i++) {
        snprintf(sent[i], sizeof(sent[i]),
                 "{\"key\":\"h%d\",\"seq\":%d,\"value\":%d.25,\"s\":\"x y\"}", i % 5, i / 5, i);
        strcat(body, sent[i]);
        strcat(body, i < 19 ? "," : "]");
    }
    int64_t t_begin = wall_ms();
    struct sgt_response r;
    sgt_post(p.http, "application/json", body, &r);
    cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
    sgt_response_free(&r);

    int fd = sgt_connect(p.tcp);
    char lines[8192] = "";
    for (int i = 0; i < 20; i++) {
        snprintf(sent[20 + i], sizeof(sent[20 + i]), "{\"seq\":%d,\"key\":\"t%d\",\"value\":%d}",
                 i / 5, i % 5, -i);
        strcat(lines, sent[20 + i]);
        strcat(lines, "\n");
    }
    sgt_send_str(fd, lines);

    double delivered = sgt_wait_metric(p.http, RAW_DELIVERED, 40, WAIT_MS);
    cr_assert_eq(delivered, 40, "delivered %g of 40 raw records", delivered);
    int64_t t_end = wall_ms();

    struct sgt_recs rs;
    sgt_kcat_read(m.bootstrap, "events", 40, 10000, &rs);
    cr_assert_eq(rs.n, 40, "kcat read %zu records, 40 expected", rs.n);

    for (int i = 0; i < 40; i++) {
        int at = find_value(&rs, sent[i]);
        cr_assert(at >= 0, "event not found byte for byte in the topic: %s", sent[i]);
        const struct sgt_rec *rec = &rs.v[at];
        char want_key[8];
        snprintf(want_key, sizeof(want_key), "%c%d", i < 20 ? 'h' : 't', i % 5);
        cr_assert_str_eq(rec->key, want_key, "key of %s", sent[i]);

        /* transport and received-at, as asked, and nothing else. */
        char v[64];
        cr_assert(!sgt_kafka_header(rec->headers, "content-type", v, sizeof(v)), "headers: %s",
                  rec->headers);
        cr_assert_eq(strchr(rec->headers, ',') - rec->headers,
                     (ptrdiff_t)strlen(i < 20 ? "transport=http" : "transport=tcp"), "headers: %s",
                     rec->headers);
        cr_assert(sgt_kafka_header(rec->headers, "transport", v, sizeof(v)), "headers: %s",
                  rec->headers);
        cr_assert_str_eq(v, i < 20 ? "http" : "tcp", "transport of %s", sent[i]);
        cr_assert(sgt_kafka_header(rec->headers, "received-at", v, sizeof(v)), "headers: %s",
                  rec->headers);
        char *end;
        long long at_ms = strtoll(v, &end, 10);
        cr_assert(*end == '\0' && at_ms >= t_begin - 1000 && at_ms <= t_end + 1000,
                  "received-at %s outside [%lld, %lld]", v, (long long)t_begin, (long long)t_end);
    }

    /* Per key: order kept and one partition; overall: more than one partition. */
    int first_partition = -1;
    bool spread = false;
    for (int k = 0; k < 10; k++) {
        char key[8];
        snprintf(key, sizeof(key), "%c%d", k < 5 ? 'h' : 't', k % 5);
        int part = check_key_order(&rs, key, 4);
        cr_assert(part >= 0 && part < 12, "partition %d", part);
        if (first_partition < 0)
            first_partition = part;
        else if (part != first_partition)
            spread = true;
    }
    cr_assert(spread, "all 10 keys landed on partition %d", first_partition);

    sgt_recs_free(&rs);
    close(fd);
    sgt_stop_ok(&p);
    sgt_mock_stop(&m);
}

/* Sends `n` events for keys k0..k4 over TCP and reads the `n` raw records back. */
static void send_and_read_raw(struct sgt_proc *p, const char *bootstrap, int n, struct sgt_recs *rs)
{
    int fd = sgt_connect(p->tcp);
    char lines[4096] = "";
    for (int i = 0; i < n; i++) {
        char line[128];
        snprintf(line, sizeof(line), "{\"key\":\"k%d\",\"ts\":%lld,\"value\":%d}\n", i % 5, T0 + i,
                 i);
        strcat(lines, line);
    }
    sgt_send_str(fd, lines);
    double delivered = sgt_wait_metric(p->http, RAW_DELIVERED, n, WAIT_MS);
    cr_assert_eq(delivered, n, "delivered %g of %d raw records", delivered, n);
    sgt_kcat_read(bootstrap, "events", (size_t)n, 10000, rs);
    cr_assert_eq(rs->n, (size_t)n, "kcat read %zu records, %d expected", rs->n, n);
    close(fd);
}

/* kafka.headers picks the headers: records carry exactly those, in the documented order, and a
 * window result carries content-type when it is picked. */
Test(kafka, kafka_headers_puts_exactly_the_chosen_headers_on_records)
{
    struct sgt_mock m = {0};
    sgt_mock_start(&m, PARTITIONS, "events,aggregates");
    const char *more[] = {"--kafka-headers",
                          "received-at,content-type",
                          "--window-size",
                          "1s",
                          "--window-idle-timeout",
                          "200ms",
                          NULL};
    struct sgt_proc p;
    start_gateway(&p, m.bootstrap, more);
    int64_t t_begin = wall_ms();
    struct sgt_recs rs;
    send_and_read_raw(&p, m.bootstrap, 20, &rs);
    int64_t t_end = wall_ms();
    for (size_t i = 0; i < rs.n; i++) {
        long long at_ms;
        int used = 0;
        int got = sscanf(rs.v[i].headers, "content-type=application/json,received-at=%lld%n",
                         &at_ms, &used);
        cr_assert(got == 1 && rs.v[i].headers[used] == '\0',
                  "headers \"%s\", expected content-type=application/json,received-at=<ms> and "
                  "nothing else",
                  rs.v[i].headers);
        cr_assert(at_ms >= t_begin - 1000 && at_ms <= t_end + 1000,
                  "received-at %lld outside [%lld, %lld]", at_ms, (long long)t_begin,
                  (long long)t_end);
    }
    sgt_recs_free(&rs);

    /* Each record's Kafka timestamp is its arrival time, the value received-at carries. */
    bool ok;
    char *dump = sgt_kcat_dump(m.bootstrap, "events", "%T %h\n", 30, &ok);
    cr_assert(ok, "kcat did not read to the end: %s", dump);
    int lines = 0;
    char *save = NULL;
    for (char *line = strtok_r(dump, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        long long ts, at_ms;
        cr_assert_eq(
            sscanf(line, "%lld content-type=application/json,received-at=%lld", &ts, &at_ms), 2,
            "%s", line);
        cr_assert_eq(ts, at_ms, "record timestamp %lld, received-at %lld", ts, at_ms);
        lines++;
    }
    cr_assert_eq(lines, 20);
    free(dump);

    struct sgt_recs agg;
    sgt_kcat_read(m.bootstrap, "aggregates", 5, WAIT_MS, &agg);
    cr_assert_eq(agg.n, 5, "kcat read %zu results, 5 expected", agg.n);
    for (size_t i = 0; i < agg.n; i++)
        cr_assert_str_eq(agg.v[i].headers, "content-type=application/json", "result %s",
                         agg.v[i].value);
    sgt_recs_free(&agg);
    sgt_stop_ok(&p);
    sgt_mock_stop(&m);
}

/* By default (kafka.headers empty) records carry no headers at all, bytes and keys as always,
 * and each record's Kafka timestamp is its arrival time. */
Test(kafka, records_carry_no_headers_by_default)
{
    struct sgt_mock m = {0};
    sgt_mock_start(&m, PARTITIONS, "events,aggregates");
    struct sgt_proc p;
    int64_t t_begin = wall_ms();
    start_gateway(&p, m.bootstrap, NULL);
    struct sgt_recs rs;
    send_and_read_raw(&p, m.bootstrap, 20, &rs);
    for (size_t i = 0; i < rs.n; i++) {
        cr_assert_str_eq(rs.v[i].headers, "", "record %s has headers", rs.v[i].value);
        cJSON *j = cJSON_Parse(rs.v[i].value);
        cr_assert_not_null(j, "value is not JSON: %s", rs.v[i].value);
        cJSON *key = cJSON_GetObjectItem(j, "key");
        cr_assert(cJSON_IsString(key) && strcmp(key->valuestring, rs.v[i].key) == 0,
                  "record key %s, value %s", rs.v[i].key, rs.v[i].value);
        cJSON_Delete(j);
    }
    for (int k = 0; k < 5; k++) {
        char key[8];
        snprintf(key, sizeof(key), "k%d", k);
        int count = 0;
        for (size_t i = 0; i < rs.n; i++)
            count += strcmp(rs.v[i].key, key) == 0;
        cr_assert_eq(count, 4, "key %s: %d records, 4 expected", key, count);
    }
    sgt_recs_free(&rs);
    int64_t t_end = wall_ms();

    bool ok;
    char *dump = sgt_kcat_dump(m.bootstrap, "events", "%T\n", 30, &ok);
    cr_assert(ok, "kcat did not read to the end: %s", dump);
    int lines = 0;
    char *save = NULL;
    for (char *line = strtok_r(dump, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *end;
        long long ts = strtoll(line, &end, 10);
        cr_assert(*end == '\0' && ts >= t_begin - 1000 && ts <= t_end + 1000,
                  "record timestamp %s outside [%lld, %lld]", line, (long long)t_begin,
                  (long long)t_end);
        lines++;
    }
    cr_assert_eq(lines, 20);
    free(dump);
    sgt_stop_ok(&p);
    sgt_mock_stop(&m);
}

/* Without the received-at header an aggregator takes the record's timestamp, which the
 * gateway sets to the arrival time, as the time of an event without a time field: each
 * result's window is the one its record's timestamp falls into, not the later one the
 * aggregator consumed it in. */
Test(kafka, aggregator_takes_the_arrival_time_from_the_record_timestamp)
{
    struct sgt_mock m = {0};
    sgt_mock_start(&m, PARTITIONS, "events,aggregates");
    const char *gw_args[] = {"--role", "gateway", "--kafka-headers", "", NULL};
    struct sgt_proc gw;
    start_gateway(&gw, m.bootstrap, gw_args);
    int fd = sgt_connect(gw.tcp);
    sgt_send_str(fd, "{\"key\":\"z0\",\"value\":1}\n{\"key\":\"z1\",\"value\":2}\n"
                     "{\"key\":\"z2\",\"value\":3}\n");
    double delivered = sgt_wait_metric(gw.http, RAW_DELIVERED, 3, WAIT_MS);
    cr_assert_eq(delivered, 3, "delivered %g of 3 raw records", delivered);
    close(fd);

    bool ok;
    char *dump = sgt_kcat_dump(m.bootstrap, "events", "%k %T %h|\n", 30, &ok);
    cr_assert(ok, "kcat did not read to the end: %s", dump);
    long long ts[3] = {0, 0, 0};
    char *save = NULL;
    for (char *line = strtok_r(dump, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int k;
        long long t;
        cr_assert_eq(sscanf(line, "z%d %lld |", &k, &t), 2, "%s", line);
        cr_assert(k >= 0 && k < 3 && strstr(line, " |") != NULL, "%s (no headers expected)", line);
        ts[k] = t;
    }
    free(dump);
    for (int k = 0; k < 3; k++)
        cr_assert(ts[k] > 0, "no record for z%d", k);

    const char *agg_args[] = {
        "--role", "aggregator", "--window-size", "1s", "--window-idle-timeout", "200ms", NULL};
    struct sgt_proc agg;
    start_gateway(&agg, m.bootstrap, agg_args);
    struct sgt_recs rs;
    sgt_kcat_read(m.bootstrap, "aggregates", 3, WAIT_MS, &rs);
    cr_assert_eq(rs.n, 3, "kcat read %zu results, 3 expected", rs.n);
    for (size_t i = 0; i < rs.n; i++) {
        int k = rs.v[i].key[1] - '0';
        cr_assert(rs.v[i].key[0] == 'z' && k >= 0 && k < 3, "key %s", rs.v[i].key);
        cJSON *j = cJSON_Parse(rs.v[i].value);
        cr_assert_not_null(j, "result is not JSON: %s", rs.v[i].value);
        cJSON *ws = cJSON_GetObjectItem(j, "window_start");
        cr_assert(cJSON_IsNumber(ws) && (long long)ws->valuedouble == ts[k] / 1000 * 1000,
                  "result %s, record timestamp %lld", rs.v[i].value, ts[k]);
        cJSON_Delete(j);
    }
    sgt_recs_free(&rs);
    sgt_stop_ok(&agg);
    sgt_stop_ok(&gw);
    sgt_mock_stop(&m);
}

/* An aggregator whose committed offset the log has dropped meanwhile (the mock cluster keeps
 * 5 MiB per partition) starts again at the log's start: the offsets it passed over are counted
 * in streamgate_kafka_records_missed_total, not lost in silence, and together with the records
 * it read they account for every record past its commit. */
#define CONSUMED "streamgate_kafka_records_consumed_total"
#define MISSED   "streamgate_kafka_records_missed_total"
Test(kafka, an_offset_reset_past_unread_records_is_counted_as_missed)
{
    struct sgt_mock m = {0};
    sgt_mock_start(&m, PARTITIONS, "events,aggregates");
    const char *gw_args[] = {"--role", "gateway", NULL};
    struct sgt_proc gw;
    start_gateway(&gw, m.bootstrap, gw_args);
    int fd = sgt_connect(gw.tcp);
    sgt_send_str(fd, "{\"key\":\"k\",\"value\":1}\n{\"key\":\"k\",\"value\":2}\n"
                     "{\"key\":\"k\",\"value\":3}\n");
    cr_assert_eq(sgt_wait_metric(gw.http, RAW_DELIVERED, 3, WAIT_MS), 3);

    /* The first aggregator reads the three records, fires their window and commits past them. */
    const char *agg_args[] = {
        "--role", "aggregator", "--window-size", "1s", "--window-idle-timeout", "200ms", NULL};
    struct sgt_proc agg;
    start_gateway(&agg, m.bootstrap, agg_args);
    struct sgt_recs rs;
    sgt_kcat_read(m.bootstrap, "aggregates", 1, WAIT_MS, &rs);
    cr_assert_eq(rs.n, 1, "kcat read %zu results, 1 expected", rs.n);
    sgt_recs_free(&rs);
    double commits = sgt_metric(agg.http, "streamgate_kafka_commits_total{result=\"ok\"}");
    cr_assert_geq(sgt_wait_metric(agg.http, "streamgate_kafka_commits_total{result=\"ok\"}",
                                  commits + 1, WAIT_MS),
                  commits + 1, "no commit after the window fired");
    cr_assert_eq(sgt_metric(agg.http, MISSED), 0);
    sgt_stop_ok(&agg);

    /* 8 MB of incompressible records on the key's partition: the log drops its oldest ones. */
    enum { N = 40000, PAD = 200 };
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    size_t cap = (size_t)N * (PAD + 64), len = 0;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    srand(7);
    for (int i = 0; i < N; i++) {
        len += (size_t)snprintf(buf + len, cap - len, "{\"key\":\"k\",\"value\":%d,\"pad\":\"", i);
        for (int c = 0; c < PAD; c++)
            buf[len++] = alphabet[rand() % (int)(sizeof(alphabet) - 1)];
        len += (size_t)snprintf(buf + len, cap - len, "\"}\n");
    }
    sgt_send_all(fd, buf, len);
    free(buf);
    cr_assert_eq(sgt_wait_metric(gw.http, RAW_DELIVERED, N + 3, WAIT_MS), N + 3);
    close(fd);

    /* The second one's committed offset is gone: it starts at the log's start and says so. */
    start_gateway(&agg, m.bootstrap, agg_args);
    int64_t until = sgt_mono_ms() + WAIT_MS;
    double consumed = 0, missed = 0;
    while (sgt_mono_ms() < until) {
        consumed = sgt_metric(agg.http, CONSUMED);
        missed = sgt_metric(agg.http, MISSED);
        if (consumed + missed >= N)
            break;
        sgt_sleep_ms(50);
    }
    cr_assert_gt(missed, 0, "nothing counted as missed (%g records read)", consumed);
    cr_assert_gt(consumed, 0, "nothing read after the reset (%g missed)", missed);
    cr_assert(consumed + missed >= N && consumed + missed <= N + 3,
              "%g read and %g missed of the %d records past the commit", consumed, missed, N);
    sgt_stop_ok(&agg);
    sgt_stop_ok(&gw);
    sgt_mock_stop(&m);
}

Test(kafka, window_results_reach_the_aggregates_topic)
{
    struct sgt_mock m = {0};
    sgt_mock_start(&m, PARTITIONS, "events,aggregates");
    const char *more[] = {"--window-size", "1s", "--window-idle-timeout", "200ms", NULL};
    struct sgt_proc p;
    start_gateway(&p, m.bootstrap, more);

    /* Keys a0, a1, a2 with 1, 2, 3 events in the window [T0, T0+1s). */
    int fd = sgt_connect(p.tcp);
    char lines[2048] = "";
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i <= k; i++) {
            char line[128];
            snprintf(line, sizeof(line), "{\"key\":\"a%d\",\"ts\":%lld,\"value\":%d}\n", k,
                     T0 + 100 * (k + 1) + i, 10 * (i + 1));
            strcat(lines, line);
        }
    }
    sgt_send_str(fd, lines);

    /* Nothing else arrives: the idle advance moves the watermark past the window's end. */
    struct sgt_recs rs;
    sgt_kcat_read(m.bootstrap, "aggregates", 3, WAIT_MS, &rs);
    cr_assert_eq(rs.n, 3, "kcat read %zu results, 3 expected", rs.n);
    bool seen[3] = {false, false, false};
    for (size_t i = 0; i < rs.n; i++) {
        const struct sgt_rec *rec = &rs.v[i];
        cr_assert(rec->key[0] == 'a' && rec->key[1] >= '0' && rec->key[1] <= '2' && !rec->key[2],
                  "unexpected key %s", rec->key);
        int k = rec->key[1] - '0';
        cr_assert(!seen[k], "two results for %s", rec->key);
        seen[k] = true;
        cJSON *j = cJSON_Parse(rec->value);
        cr_assert_not_null(j, "result is not JSON: %s", rec->value);
        cJSON *key = cJSON_GetObjectItem(j, "key");
        cr_assert(cJSON_IsString(key) && strcmp(key->valuestring, rec->key) == 0,
                  "record key %s, result %s", rec->key, rec->value);
        cJSON *count = cJSON_GetObjectItem(j, "count");
        cr_assert(cJSON_IsNumber(count), "%s", rec->value);
        cr_assert_eq((int)count->valuedouble, k + 1, "count in %s", rec->value);
        cJSON *ws = cJSON_GetObjectItem(j, "window_start");
        cr_assert(cJSON_IsNumber(ws) && ws->valuedouble == (double)T0, "%s", rec->value);
        cJSON_Delete(j);
    }
    sgt_recs_free(&rs);
    close(fd);
    sgt_stop_ok(&p);
    sgt_mock_stop(&m);
}

/* A key whose window means climb by one a window, with a little noise, and one window ten
 * times too high; another key just as regular without it. Only the spike's final result reaches
 * the anomaly topic and the anomaly file (not the early update that scored it while its window
 * was open), every result still reaches the aggregates topic with its forecast members, and the
 * anomaly is counted once. */
static void send_windows(int fd, int from, int to, int spike)
{
    char lines[8192] = "";
    for (int w = from; w < to; w++) {
        for (int k = 0; k < 2; k++) {
            double v = 10 + w + 0.1 * (w % 3);
            if (k == 0 && w == spike)
                v *= 10;
            char line[128];
            snprintf(line, sizeof(line), "{\"key\":\"%s\",\"ts\":%lld,\"value\":%.17g}\n",
                     k ? "calm" : "spiky", T0 + 1000LL * w + 10 * k, v);
            strcat(lines, line);
        }
    }
    sgt_send_str(fd, lines);
}

/* The final results of one key on the aggregates topic, in window order: each carries the
 * forecast the previous one's `next` gave (none for the first), and a score from the sixth
 * window on (predict.warmup 5). */
static void check_forecasts(const struct sgt_recs *rs, const char *key, int windows)
{
    int seen = 0;
    double prev_next = 0;
    for (size_t i = 0; i < rs->n; i++) {
        if (strcmp(rs->v[i].key, key) != 0)
            continue;
        cJSON *j = cJSON_Parse(rs->v[i].value);
        cr_assert_not_null(j, "%s", rs->v[i].value);
        if (!cJSON_IsTrue(cJSON_GetObjectItem(j, "final"))) {
            cJSON_Delete(j);
            continue;
        }
        int w = (int)((cJSON_GetObjectItem(j, "window_start")->valuedouble - (double)T0) / 1000);
        cr_assert_eq(w, seen, "%s: window %d where %d was due", key, w, seen);
        const cJSON *value = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "fields"), "value");
        const cJSON *forecast = cJSON_GetObjectItem(value, "forecast");
        const cJSON *anomaly = cJSON_GetObjectItem(value, "anomaly");
        const cJSON *next = cJSON_GetObjectItem(value, "next");
        cr_assert(forecast && anomaly && cJSON_IsNumber(next), "%s", rs->v[i].value);
        if (w == 0) {
            cr_assert(cJSON_IsNull(forecast), "%s", rs->v[i].value);
        } else {
            cr_assert(cJSON_IsNumber(forecast), "%s", rs->v[i].value);
            cr_assert(fabs(forecast->valuedouble - prev_next) <= 1e-6 * fabs(prev_next),
                      "%s: forecast %.17g, the previous window's next %.17g", key,
                      forecast->valuedouble, prev_next);
        }
        cr_assert(w < 5 ? cJSON_IsNull(anomaly) : cJSON_IsNumber(anomaly), "%s", rs->v[i].value);
        prev_next = next->valuedouble;
        cJSON_Delete(j);
        seen++;
    }
    cr_assert_eq(seen, windows, "%s: %d final results of %d", key, seen, windows);
}

Test(kafka, anomalies_reach_their_topic_and_file)
{
    char anomalies[256];
    snprintf(anomalies, sizeof(anomalies), "/tmp/sgt-kafka-%d-anomalies.ndjson", (int)getpid());
    unlink(anomalies);
    struct sgt_mock m = {0};
    sgt_mock_start(&m, PARTITIONS, "events,aggregates,anomalies");
    const char *more[] = {"--window-size",
                          "1s",
                          "--window-idle-timeout",
                          "2s",
                          "--window-emit-interval",
                          "100ms",
                          "--kafka-anomaly-topic",
                          "anomalies",
                          "--output-anomaly-file",
                          anomalies,
                          NULL};
    struct sgt_proc p;
    start_gateway(&p, m.bootstrap, more);

    enum { WINDOWS = 12, SPIKE = 9 };
    int fd = sgt_connect(p.tcp);
    /* Up to the spike's window, which stays open until an early update has scored it. */
    send_windows(fd, 0, SPIKE + 1, SPIKE);
    cr_assert_geq(sgt_wait_metric(p.http, "streamgate_window_updates_total", 2, WAIT_MS), 2);
    send_windows(fd, SPIKE + 1, WINDOWS, SPIKE);

    cr_assert_eq(sgt_wait_metric(p.http, "streamgate_windows_fired_total", 2 * WINDOWS, WAIT_MS),
                 2 * WINDOWS);
    cr_assert_eq(sgt_metric(p.http, "streamgate_anomalies_total"), 1);
    struct sgt_recs rs;
    sgt_kcat_read(m.bootstrap, "anomalies", 2, 3000, &rs);
    cr_assert_eq(rs.n, 1, "kcat read %zu anomalies, 1 expected", rs.n);
    cr_assert_str_eq(rs.v[0].key, "spiky");
    cJSON *j = cJSON_Parse(rs.v[0].value);
    cr_assert_not_null(j, "%s", rs.v[0].value);
    cr_assert_eq(cJSON_GetObjectItem(j, "window_start")->valuedouble, (double)(T0 + 1000 * SPIKE));
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(j, "final")), "%s", rs.v[0].value);
    const cJSON *value = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "fields"), "value");
    cr_assert_gt(cJSON_GetObjectItem(value, "anomaly")->valuedouble, 4, "%s", rs.v[0].value);
    cJSON_Delete(j);
    sgt_recs_free(&rs);
    double updates = sgt_metric(p.http, "streamgate_window_updates_total");
    sgt_kcat_read(m.bootstrap, "aggregates", 2 * WINDOWS + (size_t)updates, WAIT_MS, &rs);
    cr_assert_eq(rs.n, 2 * WINDOWS + (size_t)updates);
    check_forecasts(&rs, "spiky", WINDOWS);
    check_forecasts(&rs, "calm", WINDOWS);
    sgt_recs_free(&rs);

    cr_assert_eq(sgt_wait_lines(anomalies, 1, WAIT_MS), 1);
    char *text = sgt_read_file(anomalies, NULL);
    cr_assert_not_null(strstr(text, "\"key\":\"spiky\""), "%s", text);
    cr_assert_not_null(strstr(text, "\"final\":true"), "%s", text);
    cr_assert_eq(strchr(text, '\n') - text + 1, (long)strlen(text), "one line: %s", text);
    free(text);
    close(fd);
    sgt_stop_ok(&p);
    sgt_mock_stop(&m);
    unlink(anomalies);
}

Test(kafka, broker_outage_queues_records_and_delivers_them_after)
{
    struct sgt_mock m = {0};
    sgt_mock_start(&m, PARTITIONS, "events,aggregates");
    struct sgt_proc p;
    start_gateway(&p, m.bootstrap, NULL);
    cr_assert_eq(sgt_metric(p.http, RAW_DELIVERED), 0);

    sgt_mock_cmd(&m, "down-all");
    int fd = sgt_connect(p.tcp);
    char lines[8192] = "";
    for (int i = 0; i < 50; i++) {
        char line[128];
        snprintf(line, sizeof(line), "{\"key\":\"o%d\",\"seq\":%d,\"value\":%d}\n", i % 7, i, i);
        strcat(lines, line);
    }
    sgt_send_str(fd, lines);
    cr_assert_eq(sgt_wait_metric(p.http, TCP_ACCEPTED, 50, 10000), 50);

    /* While every broker is down nothing can be delivered, and nothing is reported failed. */
    sgt_sleep_ms(2000);
    cr_assert_eq(sgt_metric(p.http, RAW_DELIVERED), 0, "delivered during the outage");
    double failed = sgt_metric(
        p.http, "streamgate_sink_records_total{sink=\"kafka\",stream=\"raw\",result=\"failed\"}");
    cr_assert(failed <= 0, "%g records failed during a short outage", failed);

    sgt_mock_cmd(&m, "up-all");
    double delivered = sgt_wait_metric(p.http, RAW_DELIVERED, 50, WAIT_MS);
    cr_assert_eq(delivered, 50, "delivered %g of 50 after the outage", delivered);

    struct sgt_recs rs;
    sgt_kcat_read(m.bootstrap, "events", 50, 10000, &rs);
    cr_assert_eq(rs.n, 50, "kcat read %zu records, 50 expected (none lost, none doubled)", rs.n);
    bool seen[50] = {false};
    for (size_t i = 0; i < rs.n; i++) {
        cJSON *j = cJSON_Parse(rs.v[i].value);
        cr_assert_not_null(j, "%s", rs.v[i].value);
        int seq = (int)cJSON_GetObjectItem(j, "seq")->valuedouble;
        cr_assert(seq >= 0 && seq < 50 && !seen[seq], "seq %d twice or out of range", seq);
        seen[seq] = true;
        cJSON_Delete(j);
    }
    sgt_recs_free(&rs);
    close(fd);
    sgt_stop_ok(&p);
    sgt_mock_stop(&m);
}

Test(kafka, embedded_cluster_is_readable_with_kcat)
{
    struct sgt_proc p;
    const char *args[] = {"--kafka-brokers", "embedded", NULL};
    sgt_start(&p, args, NULL);

    struct sgt_response r;
    sgt_http(p.http, "GET", "/v1/info", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "status %d: %s", r.status, r.body);
    cJSON *info = cJSON_Parse(r.body);
    cr_assert_not_null(info, "%s", r.body);
    cJSON *kafka = cJSON_GetObjectItem(info, "kafka");
    cJSON *bs = kafka ? cJSON_GetObjectItem(kafka, "bootstrap") : NULL;
    cr_assert(cJSON_IsString(bs) && strchr(bs->valuestring, ':'), "/v1/info: %s", r.body);
    char bootstrap[512];
    snprintf(bootstrap, sizeof(bootstrap), "%s", bs->valuestring);
    cJSON *listeners = cJSON_GetObjectItem(info, "listeners");
    cr_assert_not_null(listeners, "/v1/info: %s", r.body);
    cJSON_Delete(info);
    sgt_response_free(&r);

    /* The start-up log names the same bootstrap. */
    char *log = sgt_read_file(p.log_path, NULL);
    const char *line = log ? strstr(log, "\"msg\":\"kafka embedded cluster started\"") : NULL;
    cr_assert_not_null(line, "no embedded-cluster log line:\n%s", log ? log : "");
    const char *eol = strchr(line, '\n');
    char field[600];
    snprintf(field, sizeof(field), "\"bootstrap\":\"%s\"", bootstrap);
    const char *f = strstr(line, field);
    cr_assert(f && (!eol || f < eol), "log line does not name %s", bootstrap);
    free(log);

    int fd = sgt_connect(p.tcp);
    const char *events[] = {"{\"key\":\"e1\",\"value\":1}", "{\"key\":\"e2\",\"value\":2}",
                            "{\"key\":\"e3\",\"value\":3}"};
    for (int i = 0; i < 3; i++) {
        sgt_send_str(fd, events[i]);
        sgt_send_str(fd, "\n");
    }
    cr_assert_eq(sgt_wait_metric(p.http, RAW_DELIVERED, 3, WAIT_MS), 3);

    struct sgt_recs rs;
    sgt_kcat_read(bootstrap, "events", 3, 10000, &rs);
    cr_assert_eq(rs.n, 3, "kcat read %zu records from %s, 3 expected", rs.n, bootstrap);
    for (int i = 0; i < 3; i++) {
        int at = find_value(&rs, events[i]);
        cr_assert(at >= 0, "%s not in the topic", events[i]);
        char key[4];
        snprintf(key, sizeof(key), "e%d", i + 1);
        cr_assert_str_eq(rs.v[at].key, key);
    }
    sgt_recs_free(&rs);
    close(fd);
    sgt_stop_ok(&p);
}

Test(kafka, sigterm_drains_queued_records_before_exit)
{
    struct sgt_mock m = {0};
    sgt_mock_start(&m, PARTITIONS, "events,aggregates");
    /* Slow brokers, so records are still in flight when the signal comes. */
    for (int b = 1; b <= 3; b++) {
        char cmd[32];
        snprintf(cmd, sizeof(cmd), "rtt %d 300", b);
        sgt_mock_cmd(&m, cmd);
    }
    struct sgt_proc p;
    start_gateway(&p, m.bootstrap, NULL);

    int fd = sgt_connect(p.tcp);
    char *lines = calloc(100, 128);
    cr_assert(lines);
    for (int i = 0; i < 100; i++) {
        char line[128];
        snprintf(line, sizeof(line), "{\"key\":\"d%d\",\"seq\":%d,\"value\":%d}\n", i % 9, i, i);
        strcat(lines, line);
    }
    sgt_send_str(fd, lines);
    free(lines);
    cr_assert_eq(sgt_wait_metric(p.http, TCP_ACCEPTED, 100, 10000), 100);
    double before = sgt_metric(p.http, RAW_DELIVERED);
    cr_log_info("delivered before SIGTERM: %g of 100", before);
    close(fd);
    sgt_stop_ok(&p);

    struct sgt_recs rs;
    sgt_kcat_read(m.bootstrap, "events", 100, 10000, &rs);
    cr_assert_eq(rs.n, 100, "kcat read %zu records after the drain, 100 expected", rs.n);
    bool seen[100] = {false};
    for (size_t i = 0; i < rs.n; i++) {
        cJSON *j = cJSON_Parse(rs.v[i].value);
        cr_assert_not_null(j, "%s", rs.v[i].value);
        int seq = (int)cJSON_GetObjectItem(j, "seq")->valuedouble;
        cr_assert(seq >= 0 && seq < 100 && !seen[seq], "seq %d twice or out of range", seq);
        seen[seq] = true;
        cJSON_Delete(j);
    }
    sgt_recs_free(&rs);
    sgt_mock_stop(&m);
}

/* With no reachable broker, shutdown waits for delivery only until shutdown.timeout, then gives
 * up, counts and logs what was left, and exits with status 3, which says records were left. */
Test(kafka, shutdown_deadline_bounds_the_drain_with_brokers_unreachable)
{
    const char *args[] = {"--kafka-brokers", "127.0.0.1:1", "--shutdown-timeout", "1s", NULL};
    struct sgt_proc p;
    sgt_start(&p, args, NULL);
    struct sgt_response r;
    sgt_post(p.http, "application/json", "{\"key\":\"a\",\"v\":1}", &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    sgt_response_free(&r);
    int64_t start = sgt_mono_ms();
    kill(p.pid, SIGTERM);
    int status = -1;
    while (sgt_mono_ms() - start < 10000) {
        if (waitpid(p.pid, &status, WNOHANG) == p.pid)
            break;
        sgt_sleep_ms(10);
    }
    int64_t took = sgt_mono_ms() - start;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 3, "exit status %d", status);
    cr_assert_lt(took, 5000, "the drain took %lld ms despite a 1 s deadline", (long long)took);
    char *log = sgt_read_file(p.log_path, NULL);
    cr_assert_not_null(strstr(log, "kafka records left undelivered at shutdown"), "%s", log);
    free(log);
    p.pid = 0;
    sgt_stop(&p); /* removes the run's directory */
}

/* A record Kafka refused for good goes to the dead-letter output, like every writer's: to its
 * file, and from there to the late topic with the error as its reason. */
Test(kafka, permanent_failure_goes_to_the_dead_letter_file_and_the_late_topic)
{
    struct sgt_mock m = {0};
    char dl_path[] = "/tmp/sgt-dead-XXXXXX";
    int dl_fd = mkstemp(dl_path);
    cr_assert_geq(dl_fd, 0);
    close(dl_fd);
    sgt_mock_start(&m, PARTITIONS, "events,aggregates,late");
    /* The next Produce request fails with TOPIC_AUTHORIZATION_FAILED, which is not retried. */
    sgt_mock_cmd(&m, "errors 0 1 29");
    const char *more[] = {"--kafka-late-topic", "late", "--output-dead-letter-file", dl_path, NULL};
    struct sgt_proc p;
    start_gateway(&p, m.bootstrap, more);

    struct sgt_response r;
    sgt_post(p.http, "application/json", "{\"key\":\"denied\",\"seq\":0,\"value\":1}", &r);
    cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
    sgt_response_free(&r);
    double failed = sgt_wait_metric(
        p.http, "streamgate_sink_records_total{sink=\"kafka\",stream=\"raw\",result=\"failed\"}", 1,
        WAIT_MS);
    cr_assert_eq(failed, 1, "the refused record was not counted failed");
    cr_assert_eq(
        sgt_wait_metric(
            p.http,
            "streamgate_sink_records_total{sink=\"kafka\",stream=\"late\",result=\"delivered\"}", 1,
            WAIT_MS),
        1, "the refused record did not reach the late topic");

    struct sgt_recs rs;
    sgt_kcat_read(m.bootstrap, "late", 1, 10000, &rs);
    cr_assert_eq(rs.n, 1, "late topic holds %zu records", rs.n);
    cr_assert_str_eq(rs.v[0].key, "denied");
    cr_assert_str_eq(rs.v[0].value, "{\"key\":\"denied\",\"seq\":0,\"value\":1}");
    char reason[64];
    cr_assert(sgt_kafka_header(rs.v[0].headers, "reason", reason, sizeof(reason)), "%s",
              rs.v[0].headers);
    cr_assert_str_eq(reason, "TOPIC_AUTHORIZATION_FAILED");
    char sink[16];
    cr_assert(sgt_kafka_header(rs.v[0].headers, "sink", sink, sizeof(sink)), "%s", rs.v[0].headers);
    cr_assert_str_eq(sink, "kafka");
    sgt_recs_free(&rs);
    cr_assert_eq(sgt_wait_lines(dl_path, 1, WAIT_MS), 1, "no dead-letter line");
    char *dl = sgt_read_file(dl_path, NULL);
    cr_assert(dl && strstr(dl, "{\"sink\":\"kafka\",\"key\":\"denied\",\"error\":"
                               "\"TOPIC_AUTHORIZATION_FAILED\""),
              "dead-letter file: %s", dl ? dl : "(none)");
    cr_assert(strstr(dl, "\"record\":{\"key\":\"denied\",\"seq\":0,\"value\":1}}"), "%s", dl);
    free(dl);

    /* The log names the key of the failed record. */
    char *log = sgt_read_file(p.log_path, NULL);
    cr_assert(log && strstr(log, "\"msg\":\"kafka delivery failed\",\"stream\":\"raw\",\"key\":"
                                 "\"denied\""),
              "no delivery-failure log line with the key");
    free(log);
    /* Nothing else is affected: the next record goes to the events topic. */
    sgt_post(p.http, "application/json", "{\"key\":\"fine\",\"seq\":0}", &r);
    cr_assert_eq(r.status, 202);
    sgt_response_free(&r);
    cr_assert_eq(sgt_wait_metric(p.http, RAW_DELIVERED, 1, WAIT_MS), 1);
    sgt_stop_ok(&p);
    sgt_mock_stop(&m);
    unlink(dl_path);
}

Test(kafka, full_local_queue_keeps_records_in_order_until_there_is_room)
{
    struct sgt_mock m = {0};
    sgt_mock_start(&m, PARTITIONS, "events,aggregates");
    /* A local queue of 20 records, so most of the 600 wait in the writer's backlog. */
    const char *more[] = {"--kafka-rdkafka", "queue.buffering.max.messages=20", NULL};
    struct sgt_proc p;
    start_gateway(&p, m.bootstrap, more);
    sgt_mock_cmd(&m, "down-all");

    enum { N = 600, KEYS = 6 };
    int fd = sgt_connect(p.tcp);
    static char lines[N * 64];
    size_t len = 0;
    for (int i = 0; i < N; i++)
        len +=
            (size_t)snprintf(lines + len, sizeof(lines) - len,
                             "{\"key\":\"q%d\",\"seq\":%d,\"value\":%d}\n", i % KEYS, i / KEYS, i);
    sgt_send_all(fd, lines, len);
    cr_assert_eq(sgt_wait_metric(p.http, TCP_ACCEPTED, N, 10000), N, "a full queue refused events");
    double held = sgt_metric(p.http, "streamgate_sink_backpressure_total{sink=\"kafka\"}");
    cr_assert(held >= N - 20, "only %g records waited in the backlog", held);
    cr_assert_eq(sgt_metric(p.http, "streamgate_sink_queue_messages{sink=\"kafka\"}"), N);

    sgt_mock_cmd(&m, "up-all");
    cr_assert_eq(sgt_wait_metric(p.http, RAW_DELIVERED, N, 60000), N);
    struct sgt_recs rs;
    sgt_kcat_read(m.bootstrap, "events", N, 10000, &rs);
    cr_assert_eq(rs.n, N, "kcat read %zu records", rs.n);
    for (int k = 0; k < KEYS; k++) {
        char key[8];
        snprintf(key, sizeof(key), "q%d", k);
        check_key_order(&rs, key, N / KEYS);
    }
    sgt_recs_free(&rs);
    close(fd);
    sgt_stop_ok(&p);
    sgt_mock_stop(&m);
}

Test(kafka, producer_failed_for_good_refuses_input_instead_of_losing_it)
{
    struct sgt_mock m = {0};
    sgt_mock_start(&m, PARTITIONS, "events,aggregates");
    /* The idempotent producer cannot get its producer id: librdkafka raises a fatal error. */
    sgt_mock_cmd(&m, "errors 22 50 31");
    struct sgt_proc p;
    start_gateway(&p, m.bootstrap, NULL);

    struct sgt_response r;
    int64_t deadline = sgt_mono_ms() + WAIT_MS;
    for (;;) {
        sgt_http(p.http, "GET", "/readyz", NULL, NULL, 0, &r);
        int status = r.status;
        sgt_response_free(&r);
        if (status == 503)
            break;
        cr_assert(sgt_mono_ms() < deadline, "/readyz never reported the failed producer");
        sgt_sleep_ms(100);
    }
    char *log = sgt_read_file(p.log_path, NULL);
    cr_assert(log && strstr(log, "kafka producer failed for good"), "no fatal-error log line");
    free(log);

    /* HTTP: a 503 before the body is ingested, so the client keeps its events. */
    sgt_post(p.http, "application/json", "{\"key\":\"k\",\"seq\":0}", &r);
    cr_assert_eq(r.status, 503, "%d %s", r.status, r.body);
    cr_assert(strstr(r.body, "nothing was ingested"), "%s", r.body);
    char *ra = sgt_header(&r, "Retry-After");
    cr_assert_not_null(ra);
    free(ra);
    sgt_response_free(&r);

    /* TCP: the connection is kept but not read, so the lines wait with the sender. */
    int fd = sgt_connect(p.tcp);
    sgt_send_str(fd, "{\"key\":\"k\",\"seq\":1}\n");
    sgt_sleep_ms(1500);
    cr_assert_eq(sgt_metric(p.http, "streamgate_events_received_total{transport=\"tcp\"}"), 0);
    cr_assert(sgt_metric(p.http, "streamgate_pushback_total{transport=\"tcp\"}") >= 1);
    cr_assert_eq(sgt_metric(p.http, "streamgate_events_received_total{transport=\"http\"}"), 0);
    close(fd);
    sgt_stop_ok(&p);
    sgt_mock_stop(&m);
}

/* Stops the gateway with SIGTERM; returns its exit status (the run's directory stays). */
static int sigterm_status(struct sgt_proc *p)
{
    int status = 0;
    kill(p->pid, SIGTERM);
    cr_assert_eq(waitpid(p->pid, &status, 0), p->pid);
    p->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The exit status tells an operator whether a stop lost anything: 0 when every record was
 * delivered, 3 when the brokers went down and shutdown.timeout passed with records still
 * queued (they are counted as failed and logged). */
Test(kafka, exit_status_says_whether_records_were_left)
{
    struct sgt_mock m = {0};
    sgt_mock_start(&m, PARTITIONS, "events,aggregates");
    const char *args[] = {"--shutdown-timeout", "1s", NULL};
    struct sgt_proc p;
    struct sgt_response r;

    /* Everything delivered: a clean stop. */
    start_gateway(&p, m.bootstrap, args);
    sgt_post(p.http, "application/json", "{\"key\":\"a\",\"v\":1}", &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    sgt_response_free(&r);
    cr_assert_eq(sgt_wait_metric(p.http, RAW_DELIVERED, 1, WAIT_MS), 1);
    int code = sigterm_status(&p);
    char *log = sgt_read_file(p.log_path, NULL);
    cr_assert_eq(code, 0, "exit status %d after a clean stop:\n%s", code, log);
    free(log);
    sgt_stop(&p); /* removes the run's directory */

    /* The brokers go down with a record queued: it cannot be delivered before the deadline. */
    start_gateway(&p, m.bootstrap, args);
    sgt_mock_cmd(&m, "down-all");
    sgt_post(p.http, "application/json", "{\"key\":\"b\",\"v\":2}", &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    sgt_response_free(&r);
    code = sigterm_status(&p);
    log = sgt_read_file(p.log_path, NULL);
    cr_assert_eq(code, 3, "exit status %d with records left:\n%s", code, log);
    cr_assert_not_null(strstr(log, "kafka records left undelivered at shutdown"), "%s", log);
    free(log);
    sgt_stop(&p);
    sgt_mock_stop(&m);
}
