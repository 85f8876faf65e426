/* ingest.ack delivered end to end: the real gateway producing to a mock Kafka cluster in its
 * own process (tests/tools/mock_kafka, faults on its stdin), real HTTP, and the raw topic read
 * back with kcat, a consumer independent of the gateway. A 202 must mean "in the topic"; a
 * failure for good, a timeout and a client that goes away each get their own outcome; and a
 * gateway killed with SIGKILL loses nothing it acknowledged. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "kafka_util.h"

#define PARTITIONS "6"
#define WAIT_MS    30000

#define RAW_DELIVERED                                                                              \
    "streamgate_sink_records_total{sink=\"kafka\",stream=\"raw\",result=\"delivered\"}"
#define RAW_FAILED "streamgate_sink_records_total{sink=\"kafka\",stream=\"raw\",result=\"failed\"}"
#define ACK_COUNT  "streamgate_ack_seconds_count"

static void start_gateway(struct sgt_proc *p, const char *bootstrap, const char *const *more)
{
    const char *args[32];
    size_t n = 0;
    args[n++] = "--kafka-brokers";
    args[n++] = bootstrap;
    args[n++] = "--ingest-ack";
    args[n++] = "delivered";
    args[n++] = "--kafka-agg-topic";
    args[n++] = "";
    for (const char *const *a = more; a && *a && n < 30; a++)
        args[n++] = *a;
    args[n] = NULL;
    sgt_start(p, args, NULL);
}

/* Sends one POST /v1/events on a kept-alive connection. */
static void send_post(int fd, const char *body)
{
    char head[256];
    snprintf(head, sizeof(head),
             "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n",
             strlen(body));
    sgt_send_str(fd, head);
    sgt_send_str(fd, body);
}

/* True when nothing arrives on `fd` within `ms`: the answer is being held. */
static bool quiet_for(int fd, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, ms) == 0;
}

/* A number member of a JSON answer; -1 when absent. */
static double json_num(const char *body, const char *name)
{
    cJSON *j = cJSON_Parse(body);
    cr_assert_not_null(j, "answer is not JSON: %s", body);
    cJSON *v = cJSON_GetObjectItem(j, name);
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    cJSON_Delete(j);
    return d;
}

/* The records of the raw topic whose value holds `needle`. */
static size_t count_values(const struct sgt_recs *rs, const char *needle)
{
    size_t n = 0;
    for (size_t i = 0; i < rs->n; i++)
        n += strstr(rs->v[i].value, needle) != NULL;
    return n;
}

/* A mock cluster and a gateway acknowledging on delivery to it; then `cmd` to the cluster
 * (NULL: none). */
static void start_pair(struct sgt_mock *m, struct sgt_proc *p, const char *const *more,
                       const char *cmd)
{
    sgt_mock_start(m, PARTITIONS, "events");
    start_gateway(p, m->bootstrap, more);
    if (cmd)
        sgt_mock_cmd(m, cmd);
}

static void stop_pair(struct sgt_mock *m, struct sgt_proc *p)
{
    sgt_stop_ok(p);
    sgt_mock_stop(m);
}

/* A gateway with http.ack_timeout 1s, and every broker down. */
static void start_brokers_down(struct sgt_mock *m, struct sgt_proc *p)
{
    const char *more[] = {"--http-ack-timeout", "1s", NULL};
    start_pair(m, p, more, "down-all");
}

/* Brings the brokers back and expects `n` events whose value holds `needle` to be delivered
 * and read back; then stops both. */
static void expect_delivered_after_up(struct sgt_mock *m, struct sgt_proc *p, int n,
                                      const char *needle)
{
    sgt_mock_cmd(m, "up-all");
    cr_assert_eq(sgt_wait_metric(p->http, RAW_DELIVERED, n, WAIT_MS), n);
    struct sgt_recs rs;
    sgt_kcat_read(m->bootstrap, "events", (size_t)n, 10000, &rs);
    cr_assert_eq(count_values(&rs, needle), (size_t)n, "kcat read %zu records", rs.n);
    sgt_recs_free(&rs);
    stop_pair(m, p);
}

Test(ack, answer_is_held_until_the_records_are_in_the_topic)
{
    struct sgt_mock m = {0};
    struct sgt_proc p;
    /* Brokers down: the events are accepted, and the answer waits. */
    start_pair(&m, &p, NULL, "down-all");
    int fd = sgt_connect(p.http);
    send_post(fd, "[{\"key\":\"a\",\"id\":\"held-1\"},{\"key\":\"b\",\"id\":\"held-2\"},"
                  "{\"key\":\"c\",\"id\":\"held-3\"},{\"bad\":true}]");
    cr_assert_eq(
        sgt_wait_metric(p.http, "streamgate_events_accepted_total{transport=\"http\"}", 3, WAIT_MS),
        3);
    cr_assert(quiet_for(fd, 1500), "answered while the brokers were down");

    sgt_mock_cmd(&m, "up-all");
    struct sgt_response r;
    cr_assert_eq(sgt_read_response(fd, &r), 0, "no answer after the brokers came back");
    cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
    cr_assert_eq(json_num(r.body, "accepted"), 3, "%s", r.body);
    cr_assert_eq(json_num(r.body, "delivered"), 3, "%s", r.body);
    cr_assert_eq(json_num(r.body, "rejected"), 1, "%s", r.body);
    cr_assert(strstr(r.body, "\"index\":3"), "%s", r.body);
    sgt_response_free(&r);

    /* The moment the 202 is in, an independent consumer reads all three: one pass, no wait. */
    struct sgt_recs rs;
    sgt_kcat_read(m.bootstrap, "events", 3, 0, &rs);
    cr_assert_eq(count_values(&rs, "\"id\":\"held-"), 3, "kcat read %zu records right after 202",
                 rs.n);
    sgt_recs_free(&rs);
    cr_assert_eq(sgt_metric(p.http, ACK_COUNT), 1);
    close(fd);
    stop_pair(&m, &p);
}

Test(ack, pipelined_answers_keep_request_order)
{
    struct sgt_mock m = {0};
    struct sgt_proc p;
    start_pair(&m, &p, NULL, "down-all");

    /* Three ingest requests of 1, 2 and 3 events and a health check, in one send. */
    int fd = sgt_connect(p.http);
    char all[4096] = "";
    for (int i = 1; i <= 3; i++) {
        char body[512] = "[", head[256];
        for (int e = 0; e < i; e++) {
            char ev[64];
            snprintf(ev, sizeof(ev), "%s{\"key\":\"p%d\",\"id\":\"pipe-%d-%d\"}", e ? "," : "", e,
                     i, e);
            strcat(body, ev);
        }
        strcat(body, "]");
        snprintf(head, sizeof(head),
                 "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n",
                 strlen(body));
        strcat(all, head);
        strcat(all, body);
    }
    strcat(all, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    sgt_send_str(fd, all);
    cr_assert(quiet_for(fd, 1500), "an answer came while the first was held");

    sgt_mock_cmd(&m, "up-all");
    for (int i = 1; i <= 3; i++) {
        struct sgt_response r;
        cr_assert_eq(sgt_read_response(fd, &r), 0, "no answer %d", i);
        cr_assert_eq(r.status, 202, "answer %d: %d %s", i, r.status, r.body);
        cr_assert_eq(json_num(r.body, "accepted"), i, "answer %d out of order: %s", i, r.body);
        cr_assert_eq(json_num(r.body, "delivered"), i, "answer %d: %s", i, r.body);
        sgt_response_free(&r);
    }
    struct sgt_response r;
    cr_assert_eq(sgt_read_response(fd, &r), 0);
    cr_assert_eq(r.status, 200, "%d %s", r.status, r.body);
    sgt_response_free(&r);
    close(fd);
    stop_pair(&m, &p);
}

Test(ack, delivery_failed_for_good_is_502_with_counts)
{
    struct sgt_mock m = {0};
    struct sgt_proc p;
    /* The next Produce request fails with TOPIC_AUTHORIZATION_FAILED, which is not retried. */
    start_pair(&m, &p, NULL, "errors 0 1 29");

    struct sgt_response r;
    sgt_post(p.http, "application/json", "{\"key\":\"denied\",\"id\":\"fail-1\"}", &r);
    cr_assert_eq(r.status, 502, "%d %s", r.status, r.body);
    cr_assert_eq(json_num(r.body, "accepted"), 1, "%s", r.body);
    cr_assert_eq(json_num(r.body, "delivered"), 0, "%s", r.body);
    cr_assert_eq(json_num(r.body, "failed"), 1, "%s", r.body);
    cr_assert(strstr(r.body, "\"error\":"), "%s", r.body);
    sgt_response_free(&r);
    cr_assert_eq(sgt_metric(p.http, RAW_FAILED), 1);

    /* The writer goes on. librdkafka refuses the topic at once until its metadata is fetched
     * again (400 sink_failed: nothing ingested); then a request is delivered and answered 202. */
    int64_t deadline = sgt_mono_ms() + WAIT_MS;
    for (;;) {
        sgt_post(p.http, "application/json", "{\"key\":\"fine\",\"id\":\"fail-2\"}", &r);
        if (r.status == 202)
            break;
        cr_assert(r.status == 400 && strstr(r.body, "sink_failed"), "%d %s", r.status, r.body);
        cr_assert(sgt_mono_ms() < deadline, "never answered 202 again: %s", r.body);
        sgt_response_free(&r);
        sgt_sleep_ms(100);
    }
    cr_assert_eq(json_num(r.body, "delivered"), 1, "%s", r.body);
    sgt_response_free(&r);
    stop_pair(&m, &p);
}

Test(ack, ack_timeout_is_503_with_what_was_delivered_so_far)
{
    struct sgt_mock m = {0};
    struct sgt_proc p;
    start_brokers_down(&m, &p);

    struct sgt_response r;
    int64_t t0 = sgt_mono_ms();
    sgt_post(p.http, "application/json",
             "[{\"key\":\"t1\",\"id\":\"late-1\"},{\"key\":\"t2\",\"id\":\"late-2\"}]", &r);
    int64_t took = sgt_mono_ms() - t0;
    cr_assert_eq(r.status, 503, "%d %s", r.status, r.body);
    cr_assert(took >= 900, "answered after %lld ms, before http.ack_timeout", (long long)took);
    char *ra = sgt_header(&r, "Retry-After");
    cr_assert_not_null(ra, "%s", r.headers);
    free(ra);
    cr_assert_eq(json_num(r.body, "accepted"), 2, "%s", r.body);
    cr_assert_eq(json_num(r.body, "delivered"), 0, "%s", r.body);
    cr_assert_eq(json_num(r.body, "pending"), 2, "%s", r.body);
    sgt_response_free(&r);
    cr_assert_eq(sgt_metric(p.http, "streamgate_limit_hits_total{limit=\"http_ack_timeout\"}"), 1);

    /* The events were not dropped with the answer: once the brokers are back they arrive. */
    expect_delivered_after_up(&m, &p, 2, "\"id\":\"late-");
}

Test(ack, client_gone_while_held_loses_no_event)
{
    struct sgt_mock m = {0};
    struct sgt_proc p;
    start_brokers_down(&m, &p);

    /* Two clients post and hang up without waiting for their answers. The answers time out
     * into closed sockets and the connections go, while the events are still queued. */
    for (int c = 0; c < 2; c++) {
        int fd = sgt_connect(p.http);
        char body[256];
        snprintf(body, sizeof(body),
                 "[{\"key\":\"g%d\",\"id\":\"gone-%d-0\"},{\"key\":\"h%d\",\"id\":\"gone-%d-1\"}]",
                 c, c, c, c);
        send_post(fd, body);
        close(fd);
    }
    cr_assert_eq(
        sgt_wait_metric(p.http, "streamgate_events_accepted_total{transport=\"http\"}", 4, WAIT_MS),
        4);
    cr_assert_eq(sgt_wait_metric(p.http, ACK_COUNT, 2, WAIT_MS), 2, "the answers never timed out");
    /* Only the scraping connection is left. */
    cr_assert_eq(sgt_wait_metric(p.http, "streamgate_connections{transport=\"http\"}", 1, WAIT_MS),
                 1);
    cr_assert_eq(sgt_metric(p.http, RAW_DELIVERED), 0);

    expect_delivered_after_up(&m, &p, 4, "\"id\":\"gone-");
}

/* ---- kill -9 ---------------------------------------------------------------------------- */

#define KILL_BATCH 20 /* events per request */

struct killer {
    pid_t pid;
    int after_ms;
};

static void *kill_later(void *arg)
{
    struct killer *k = arg;
    sgt_sleep_ms(k->after_ms);
    kill(k->pid, SIGKILL);
    return NULL;
}

/* Event ids (the events' "id" numbers): one count over every trial. */
struct idset {
    long *v;
    size_t n, cap;
};

static void idset_add(struct idset *s, long id)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        cr_assert(s->v);
    }
    s->v[s->n++] = id;
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static bool idset_has(const struct idset *sorted, long id)
{
    return bsearch(&id, sorted->v, sorted->n, sizeof(long), cmp_long) != NULL;
}

/* Builds the body of one request: the events with ids first..first+KILL_BATCH-1. */
static void kill_body(char *body, size_t size, long first)
{
    size_t len = (size_t)snprintf(body, size, "[");
    for (int i = 0; i < KILL_BATCH; i++)
        len += (size_t)snprintf(body + len, size - len, "%s{\"key\":\"k%ld\",\"id\":%ld}",
                                i ? "," : "", (first + i) % 17, first + i);
    snprintf(body + len, size - len, "]");
}

/* Posts batches over one kept-alive connection until the gateway dies; every batch answered 202
 * goes into `acked`. A batch whose answer did not come (the kill cut it off) is sent again to
 * the next gateway first, as a client would: those already in the topic come back as
 * duplicates. Returns the first event of the batch left unanswered, or -1. */
static long post_until_killed(const char *http, int trial, long resend, struct idset *acked,
                              long *next, size_t *requests)
{
    int fd = sgt_connect(http);
    char body[KILL_BATCH * 64];
    for (;;) {
        long first = resend >= 0 ? resend : *next;
        if (resend < 0)
            *next += KILL_BATCH;
        kill_body(body, sizeof(body), first);
        char head[256];
        int n = snprintf(head, sizeof(head),
                         "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\n\r\n",
                         strlen(body));
        if (send(fd, head, (size_t)n, MSG_NOSIGNAL) != n ||
            send(fd, body, strlen(body), MSG_NOSIGNAL) != (ssize_t)strlen(body)) {
            close(fd);
            return first;
        }
        struct sgt_response r;
        if (sgt_read_response(fd, &r) != 0) {
            close(fd);
            return first;
        }
        (*requests)++;
        cr_assert_eq(r.status, 202, "trial %d: %d %s", trial, r.status, r.body);
        for (int i = 0; i < KILL_BATCH; i++)
            idset_add(acked, first + i);
        sgt_response_free(&r);
        resend = -1;
    }
}

/* Every event id in the raw topic, in `ids` (sorted), read with kcat. False when kcat did not
 * get to the end of the topic (a slow or unreachable cluster): the caller tries again. Tens of
 * thousands of records, so not through sgt_kcat_read, whose 30 s alarm a busy machine can
 * outlast. */
static bool read_topic_ids(const char *bootstrap, struct idset *ids)
{
    bool ok;
    char *text = sgt_kcat_dump(bootstrap, "events", "%s\n", 300, &ok);
    ids->n = 0;
    for (const char *id = text; (id = strstr(id, "\"id\":")) != NULL; id += 5)
        idset_add(ids, strtol(id + 5, NULL, 10));
    free(text);
    qsort(ids->v, ids->n, sizeof(long), cmp_long);
    return ok;
}

static int kill_trials(void)
{
    const char *t = getenv("SG_KILL_TRIALS");
    int n = t ? atoi(t) : 0;
    return n > 0 ? n : 5;
}

/* The gateway is killed with SIGKILL at a random moment while a client posts to it, over and
 * over, against one mock cluster that outlives every gateway. Afterwards every event any
 * gateway answered 202 must be in the raw topic. Events delivered but not acknowledged (the
 * kill came between the delivery report and the answer) are sent again by the client, so they
 * may be there twice: the test counts and prints those duplicates. SG_KILL_TRIALS sets the
 * number of trials (5; bench/kill-delivered runs more). */
Test(ack, kill_9_loses_no_acknowledged_event, .timeout = 240)
{
    struct sgt_mock m = {0};
    sgt_mock_start(&m, PARTITIONS, "events");
    int trials = kill_trials();
    struct idset acked = {0};
    long resend = -1, next = 0;
    size_t requests = 0;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    cr_log_info("kill -9: %d trials, seed %u", trials, seed);
    srand(seed);

    for (int trial = 0; trial < trials; trial++) {
        struct sgt_proc p;
        start_gateway(&p, m.bootstrap, NULL);
        struct killer k = {.pid = p.pid, .after_ms = 200 + rand() % 1300};
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, kill_later, &k), 0);
        resend = post_until_killed(p.http, trial, resend, &acked, &next, &requests);
        pthread_join(th, NULL);
        int status = 0;
        cr_assert_eq(waitpid(p.pid, &status, 0), p.pid);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "trial %d: the gateway ended with status %d before the kill", trial, status);
        p.pid = 0;
        sgt_stop(&p); /* removes the run's directory */
    }
    cr_assert_gt(acked.n, 0, "no request was acknowledged in %d trials", trials);
    qsort(acked.v, acked.n, sizeof(long), cmp_long);

    /* Every acknowledged event is in the topic; it may take a moment for kcat to see them. */
    struct idset seen = {0};
    size_t missing = 0, dups = 0, unacked = 0;
    int64_t deadline = sgt_mono_ms() + WAIT_MS;
    for (;;) {
        bool whole = read_topic_ids(m.bootstrap, &seen);
        missing = dups = unacked = 0;
        for (size_t i = 0; i < seen.n; i++) {
            if (i > 0 && seen.v[i] == seen.v[i - 1])
                dups++;
            else if (!idset_has(&acked, seen.v[i]))
                unacked++;
        }
        for (size_t i = 0; i < acked.n; i++)
            if (!idset_has(&seen, acked.v[i]))
                missing++;
        if ((whole && missing == 0) || sgt_mono_ms() > deadline)
            break;
        sgt_sleep_ms(200);
    }
    cr_log_info("kill -9: %d trials, %zu requests answered 202, %zu events acknowledged, %zu "
                "records in the topic, %zu acknowledged missing, %zu duplicates, %zu delivered "
                "but never acknowledged",
                trials, requests, acked.n, seen.n, missing, dups, unacked);
    printf("kill-9 trials=%d requests=%zu acknowledged=%zu records=%zu missing=%zu "
           "duplicates=%zu unacknowledged=%zu\n",
           trials, requests, acked.n, seen.n, missing, dups, unacked);
    fflush(stdout);
    cr_assert_eq(missing, 0, "%zu acknowledged events are not in the topic", missing);
    free(seen.v);
    free(acked.v);
    sgt_mock_stop(&m);
}
