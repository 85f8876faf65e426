/* Pressure: the writer cannot keep up (every Kafka broker down, or slow) while clients keep
 * sending over HTTP and TCP. The gateway must push back (HTTP 503 with Retry-After, TCP reads
 * paused, /readyz not ready), keep its memory within the budget, and afterwards deliver every
 * event it acknowledged: every event of a 202 and every line the TCP sender got into the
 * socket is read back from Kafka with kcat, none missing and none twice. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "harness.h"
#include "kafka_util.h"

#define PARTITIONS "4"
#define BUDGET_MIB 32
#define HTTP_KEYS  8
#define TCP_KEYS   8
#define BATCH      100
#define MAX_SEQ    (1 << 20)
#define PAD_LEN    160
#define RAW_DELIVERED                                                                              \
    "streamgate_sink_records_total{sink=\"kafka\",stream=\"raw\",result=\"delivered\"}"

static char pad[PAD_LEN + 1];

/* ---- the TCP sender: one connection, blocking writes, so a paused gateway blocks it ---- */

/* The TCP sender's pace: enough to fill the budget within a second or two of an outage, not so
 * much that reading the topic back dominates the test. */
#define TCP_LINES_PER_TICK 500
#define TCP_TICK_MS        10

struct tcp_sender {
    const char *hostport;
    atomic_bool stop;
    /* Lines fully handed to the socket, per key: seq 0..sent[k]-1 must all arrive. */
    int sent[TCP_KEYS];
    pthread_t thread;
};

static void *tcp_send_loop(void *arg)
{
    struct tcp_sender *s = arg;
    int fd = sgt_connect(s->hostport);
    struct timeval none = {0};
    /* No send timeout: while the gateway is paused a write blocks until it resumes. */
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
    char line[512];
    for (int i = 0; !atomic_load(&s->stop); i++) {
        int k = i % TCP_KEYS;
        int n = snprintf(line, sizeof(line),
                         "{\"key\":\"t%d\",\"seq\":%d,\"value\":%d,\"pad\":\"%s\"}\n", k,
                         s->sent[k], i, pad);
        size_t off = 0;
        while (off < (size_t)n) {
            ssize_t w = send(fd, line + off, (size_t)n - off, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                close(fd);
                return (void *)(intptr_t)errno;
            }
            off += (size_t)w;
        }
        s->sent[k]++;
        if (i % TCP_LINES_PER_TICK == TCP_LINES_PER_TICK - 1)
            sgt_sleep_ms(TCP_TICK_MS);
    }
    shutdown(fd, SHUT_WR);
    close(fd);
    return NULL;
}

/* ---- the HTTP sender: batches of BATCH events; only a 202 advances a key's seq ---- */

struct http_stats {
    int acked[HTTP_KEYS]; /* seq 0..acked[k]-1 acknowledged per key */
    long requests, accepted_202, pushback_503, other;
    long accepted_after_heal; /* 202s once the fault is over: ingest resumed */
    bool saw_retry_after;
};

static void http_send_batch(const char *hostport, struct http_stats *st, int batch_no)
{
    int k = batch_no % HTTP_KEYS;
    size_t cap = BATCH * (PAD_LEN + 96) + 16, len = 0;
    char *body = malloc(cap);
    cr_assert(body);
    body[len++] = '[';
    for (int i = 0; i < BATCH; i++)
        len += (size_t)snprintf(body + len, cap - len,
                                "%s{\"key\":\"h%d\",\"seq\":%d,\"value\":%d,\"pad\":\"%s\"}",
                                i ? "," : "", k, st->acked[k] + i, i, pad);
    body[len++] = ']';
    body[len] = '\0';
    struct sgt_response r;
    sgt_post(hostport, "application/json", body, &r);
    st->requests++;
    if (r.status == 202) {
        cr_assert(strstr(r.body, "\"accepted\":100,\"rejected\":0"), "202 with %s", r.body);
        st->accepted_202++;
        st->acked[k] += BATCH;
    } else if (r.status == 503) {
        char *ra = sgt_header(&r, "Retry-After");
        if (ra && atoi(ra) >= 1)
            st->saw_retry_after = true;
        free(ra);
        cr_assert(strstr(r.body, "nothing was ingested"), "503 with %s", r.body);
        st->pushback_503++;
        sgt_sleep_ms(5); /* a client that backs off a little, if not the full Retry-After */
    } else {
        st->other++;
        cr_log_error("unexpected status %d: %s", r.status, r.body);
    }
    sgt_response_free(&r);
    free(body);
}

/* ---- reading back ---- */

/* Checks that topic records of keys `prefix`0..nkeys-1 carry, per key, every seq below want[k]
 * exactly once (in order: one partition per key keeps it) and nothing else. */
static void check_delivered(const struct sgt_recs *rs, char prefix, int nkeys, const int *want)
{
    int *next = calloc((size_t)nkeys, sizeof(int));
    cr_assert(next);
    for (size_t i = 0; i < rs->n; i++) {
        const char *key = rs->v[i].key;
        if (key[0] != prefix)
            continue;
        int k = atoi(key + 1);
        cr_assert(k >= 0 && k < nkeys, "unexpected key %s", key);
        cJSON *j = cJSON_Parse(rs->v[i].value);
        cr_assert_not_null(j, "value is not JSON: %.80s", rs->v[i].value);
        int seq = (int)cJSON_GetObjectItem(j, "seq")->valuedouble;
        cJSON_Delete(j);
        cr_assert_eq(seq, next[k], "key %s: seq %d where %d was due (lost, doubled or reordered)",
                     key, seq, next[k]);
        next[k]++;
    }
    for (int k = 0; k < nkeys; k++)
        cr_assert_eq(next[k], want[k], "key %c%d: %d records in Kafka, %d acknowledged", prefix, k,
                     next[k], want[k]);
    free(next);
}

static void fill_pad(void)
{
    memset(pad, 'x', PAD_LEN);
    pad[PAD_LEN] = '\0';
}

/* Batches that must be accepted after the fault before the load stops, and how long the load
 * may go on for them (librdkafka's reconnect backoff grows to 10 s during an outage). */
#define HEALED_BATCHES   5
#define HEAL_MAX_WAIT_MS 40000

/* Runs load over both transports while `fault_cmd` is in effect for `fault_ms`, then heals
 * the cluster and goes on until ingest has visibly resumed; then checks pushback happened,
 * memory stayed within the budget, and every acknowledged event reached Kafka. */
static void mock_cmds(struct sgt_mock *m, const char *const *cmds)
{
    for (; *cmds; cmds++)
        sgt_mock_cmd(m, *cmds);
}

static void run_pressure(const char *const *fault_cmds, const char *const *heal_cmds, int fault_ms,
                         const char *rdkafka)
{
    fill_pad();
    struct sgt_mock m = {0};
    sgt_mock_start(&m, PARTITIONS, "events");
    char budget[32];
    snprintf(budget, sizeof(budget), "%dMiB", BUDGET_MIB);
    const char *args[] = {"--kafka-brokers",
                          m.bootstrap,
                          "--kafka-agg-topic",
                          "",
                          "--output-file",
                          "",
                          "--limits-memory",
                          budget,
                          "--log-level",
                          "info",
                          rdkafka ? "--kafka-rdkafka" : NULL,
                          rdkafka,
                          NULL};
    struct sgt_proc p;
    sgt_start(&p, args, NULL);

    /* Idle: connected to the cluster, nothing queued. */
    struct sgt_response r;
    sgt_post(p.http, "application/json", "{\"key\":\"warmup\",\"seq\":0}", &r);
    cr_assert_eq(r.status, 202);
    sgt_response_free(&r);
    cr_assert_eq(sgt_wait_metric(p.http, RAW_DELIVERED, 1, 20000), 1);
    sgt_sleep_ms(500);
    long idle_kb = sgt_rss_kb(p.pid);
    cr_assert(idle_kb > 0);

    mock_cmds(&m, fault_cmds);
    struct tcp_sender ts = {.hostport = p.tcp};
    atomic_init(&ts.stop, false);
    cr_assert_eq(pthread_create(&ts.thread, NULL, tcp_send_loop, &ts), 0);

    struct http_stats st = {0};
    long max_kb = idle_kb;
    double max_budget = 0;
    bool saw_paused = false, saw_not_ready = false, healed = false;
    int64_t t0 = sgt_mono_ms(), last_probe = 0;
    for (int b = 0;; b++) {
        int64_t now = sgt_mono_ms();
        if (!healed && now - t0 >= fault_ms) {
            mock_cmds(&m, heal_cmds);
            healed = true;
        }
        if (healed &&
            (st.accepted_after_heal >= HEALED_BATCHES || now - t0 >= fault_ms + HEAL_MAX_WAIT_MS))
            break;
        long before = st.accepted_202;
        http_send_batch(p.http, &st, b);
        if (healed)
            st.accepted_after_heal += st.accepted_202 - before;
        long kb = sgt_rss_kb(p.pid);
        if (kb > max_kb)
            max_kb = kb;
        if (now - last_probe >= 250) {
            last_probe = now;
            double held = sgt_metric(p.http, "streamgate_budget_bytes");
            if (held > max_budget)
                max_budget = held;
            if (sgt_metric(p.http, "streamgate_ingest_paused") == 1) {
                saw_paused = true;
                struct sgt_response rz;
                sgt_http(p.http, "GET", "/readyz", NULL, NULL, 0, &rz);
                saw_not_ready |= rz.status == 503;
                sgt_response_free(&rz);
            }
        }
    }
    atomic_store(&ts.stop, true);
    void *terr = NULL;
    pthread_join(ts.thread, &terr);
    cr_assert_null(terr, "the TCP sender failed: %s (the gateway reset the connection?)",
                   strerror((int)(intptr_t)terr));

    /* Everything acknowledged is accepted, and then delivered. */
    long tcp_lines = 0, http_events = 1; /* the warm-up event */
    for (int k = 0; k < TCP_KEYS; k++)
        tcp_lines += ts.sent[k];
    for (int k = 0; k < HTTP_KEYS; k++)
        http_events += st.acked[k];
    double tcp_accepted = sgt_wait_metric(
        p.http, "streamgate_events_accepted_total{transport=\"tcp\"}", (double)tcp_lines, 60000);
    cr_assert_eq(tcp_accepted, (double)tcp_lines, "TCP: %g accepted of %ld lines sent",
                 tcp_accepted, tcp_lines);
    double want = (double)(tcp_lines + http_events);
    double delivered = sgt_wait_metric(p.http, RAW_DELIVERED, want, 120000);
    cr_assert_eq(delivered, want, "delivered %g of %g acknowledged events", delivered, want);
    cr_log_info("pressure: %ld requests (%ld x 202, %ld of them after the fault; %ld x 503), %ld "
                "TCP lines, idle RSS %ld kB, peak %ld kB, budget %d MiB",
                st.requests, st.accepted_202, st.accepted_after_heal, st.pushback_503, tcp_lines,
                idle_kb, max_kb, BUDGET_MIB);

    cr_assert_eq(st.other, 0, "unexpected statuses");
    cr_assert(st.pushback_503 > 0, "no 503 while the writer could not keep up");
    cr_assert(st.saw_retry_after, "no Retry-After on a 503");
    cr_assert(st.accepted_after_heal > 0, "HTTP ingest never resumed after the fault");
    cr_assert(saw_paused, "streamgate_ingest_paused never became 1");
    cr_assert(saw_not_ready, "/readyz stayed ready while ingest was paused");
    cr_assert(sgt_metric(p.http, "streamgate_pushback_total{transport=\"tcp\"}") > 0,
              "TCP reads were never paused");
    cr_assert(sgt_metric(p.http, "streamgate_pushback_total{transport=\"http\"}") >=
              (double)st.pushback_503);
    cr_assert(max_budget <= BUDGET_MIB * 1048576.0, "the budget's account reached %g bytes",
              max_budget);
    /* Under AddressSanitizer freed memory sits in its quarantine and every allocation carries
     * redzones, so RSS says nothing about the gateway; the normal build checks it. */
    long limit_kb = idle_kb + BUDGET_MIB * 1024L * 11 / 10;
    if (!getenv("SG_SANITIZED"))
        cr_assert(max_kb <= limit_kb, "peak RSS %ld kB over idle %ld kB + budget %d MiB + 10%%",
                  max_kb, idle_kb, BUDGET_MIB);

    struct sgt_recs rs;
    sgt_kcat_read(m.bootstrap, "events", (size_t)want, 60000, &rs);
    cr_assert_eq(rs.n, (size_t)want, "kcat read %zu records, %g acknowledged", rs.n, want);
    check_delivered(&rs, 't', TCP_KEYS, ts.sent);
    check_delivered(&rs, 'h', HTTP_KEYS, st.acked);
    sgt_recs_free(&rs);

    sgt_stop_ok(&p);
    sgt_mock_stop(&m);
}

Test(pressure, all_brokers_down_under_load_pushes_back_and_loses_nothing, .timeout = 280)
{
    static const char *const down[] = {"down-all", NULL}, *const up[] = {"up-all", NULL};
    run_pressure(down, up, 20000, NULL);
}

/* Slow brokers: a second of round trip on every broker, and small batches, so the cluster
 * drains about 1,500 records a second while the senders offer far more than 5 times that. */
Test(pressure, slow_brokers_under_load_push_back_and_lose_nothing, .timeout = 280)
{
    static const char *const slow[] = {"rtt 1 1000", "rtt 2 1000", "rtt 3 1000", NULL};
    static const char *const fast[] = {"rtt 1 0", "rtt 2 0", "rtt 3 0", NULL};
    run_pressure(slow, fast, 30000, "batch.num.messages=100");
}
