/* Kafka end to end: the gateway produces to a mock Kafka cluster (librdkafka's mock brokers,
 * run by the mock_kafka tool in its own process so the test can take brokers down), and the
 * records are read back with kcat over the real Kafka protocol. Covers raw events over both
 * transports (bytes, key, headers, per-key order, partitioning), window results on the
 * aggregates topic, a broker outage, the embedded cluster, and the drain on SIGTERM. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define KCAT       "/usr/bin/kcat"
#define PARTITIONS "12"
#define T0         1700000000000LL /* a multiple of the window size used here */
#define WAIT_MS    30000

#define RAW_DELIVERED                                                                              \
    "streamgate_sink_records_total{sink=\"kafka\",stream=\"raw\",result=\"delivered\"}"
#define TCP_ACCEPTED "streamgate_events_accepted_total{transport=\"tcp\"}"

/* ---- the mock cluster process ---- */

struct mock {
    pid_t pid;
    FILE *in;  /* its stdin: commands */
    FILE *out; /* its stdout: bootstrap line, then answers */
    char bootstrap[600];
};

static bool read_line_timeout(FILE *f, char *buf, size_t len, int timeout_ms)
{
    struct pollfd pfd = {.fd = fileno(f), .events = POLLIN};
    int r = poll(&pfd, 1, timeout_ms);
    if (r <= 0)
        return false;
    if (!fgets(buf, (int)len, f))
        return false;
    buf[strcspn(buf, "\r\n")] = '\0';
    return true;
}

static void mock_start(struct mock *m)
{
    const char *bin = getenv("SG_MOCK_KAFKA");
    cr_assert(bin && *bin, "SG_MOCK_KAFKA is not set");
    int to_child[2], from_child[2];
    cr_assert(pipe(to_child) == 0 && pipe(from_child) == 0, "pipe: %s", strerror(errno));
    m->pid = fork();
    cr_assert(m->pid >= 0, "fork: %s", strerror(errno));
    if (m->pid == 0) {
        /* A failed assertion exits the test without reaching mock_stop: the cluster must not
         * outlive it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(to_child[0], 0);
        dup2(from_child[1], 1);
        close(to_child[0]);
        close(to_child[1]);
        close(from_child[0]);
        close(from_child[1]);
        execl(bin, bin, "--brokers", "3", "--partitions", PARTITIONS, "--topics",
              "events,aggregates", (char *)NULL);
        _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    m->in = fdopen(to_child[1], "w");
    m->out = fdopen(from_child[0], "r");
    cr_assert(m->in && m->out);
    /* Unbuffered, so poll() on the descriptor sees every line not yet read. */
    setvbuf(m->out, NULL, _IONBF, 0);
    char line[600];
    cr_assert(read_line_timeout(m->out, line, sizeof(line), 10000),
              "mock_kafka printed no bootstrap line");
    cr_assert(strncmp(line, "bootstrap=", 10) == 0, "unexpected first line: %s", line);
    cr_assert(strlen(line + 10) < sizeof(m->bootstrap), "bootstrap too long: %s", line);
    memcpy(m->bootstrap, line + 10, strlen(line + 10) + 1);
    cr_assert(strchr(m->bootstrap, ':'), "bootstrap: %s", m->bootstrap);
}

/* Sends one command and asserts the answer is `ok`. */
static void mock_cmd(struct mock *m, const char *cmd)
{
    fprintf(m->in, "%s\n", cmd);
    fflush(m->in);
    char line[600];
    cr_assert(read_line_timeout(m->out, line, sizeof(line), 10000), "no answer to %s", cmd);
    cr_assert_str_eq(line, "ok", "mock_kafka answered %s to %s", line, cmd);
}

static void mock_stop(struct mock *m)
{
    if (m->pid <= 0)
        return;
    kill(m->pid, SIGKILL);
    waitpid(m->pid, NULL, 0);
    m->pid = 0;
    if (m->in)
        fclose(m->in);
    if (m->out)
        fclose(m->out);
    m->in = m->out = NULL;
}

/* ---- reading a topic back with kcat ---- */

struct rec {
    char *key;
    int partition;
    char *headers; /* "n=v,n=v" */
    char *value;
};

struct recs {
    struct rec *v;
    size_t n;
    char *text; /* kcat's output; the fields point into it */
};

static void recs_free(struct recs *r)
{
    free(r->v);
    free(r->text);
    memset(r, 0, sizeof(*r));
}

/* One pass of kcat over the whole topic: returns its stdout (malloc'd). */
static char *kcat_once(const char *bootstrap, const char *topic)
{
    cr_assert(access(KCAT, X_OK) == 0, "kcat is required (Debian package kcat)");
    char tmpl[] = "/tmp/sgt-kcat-XXXXXX";
    int fd = mkstemp(tmpl);
    cr_assert(fd >= 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(30); /* an unreachable cluster must not hang the test */
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(fd, 1);
        execl(KCAT, KCAT, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f",
              "%k\\t%p\\t%h\\t%s\\n", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    close(fd);
    char *text = sgt_read_file(tmpl, NULL);
    unlink(tmpl);
    cr_assert(text);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        cr_log_warn("kcat exited with status %d", status);
    return text;
}

static void parse_recs(char *text, struct recs *out)
{
    size_t lines = 0;
    for (const char *c = text; *c; c++)
        lines += *c == '\n';
    out->text = text;
    out->v = calloc(lines + 1, sizeof(*out->v));
    out->n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *f[4];
        int nf = 0;
        char *p = line;
        while (nf < 3) {
            char *tab = strchr(p, '\t');
            cr_assert(tab, "kcat line without 4 fields: %s", line);
            *tab = '\0';
            f[nf++] = p;
            p = tab + 1;
        }
        f[3] = p;
        struct rec *r = &out->v[out->n++];
        r->key = f[0];
        r->partition = atoi(f[1]);
        r->headers = f[2];
        r->value = f[3];
    }
}

/* Reads the topic until it holds at least `want` records or timeout_ms passes. */
static void kcat_read(const char *bootstrap, const char *topic, size_t want, int timeout_ms,
                      struct recs *out)
{
    int64_t deadline = sgt_mono_ms() + timeout_ms;
    for (;;) {
        char *text = kcat_once(bootstrap, topic);
        memset(out, 0, sizeof(*out));
        parse_recs(text, out);
        if (out->n >= want || sgt_mono_ms() >= deadline)
            return;
        recs_free(out);
        sgt_sleep_ms(200);
    }
}

/* The value of header `name` in kcat's "n=v,n=v" rendering, copied into buf; false if absent. */
static bool header(const char *headers, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    const char *p = headers;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t fl = end ? (size_t)(end - p) : strlen(p);
        if (fl > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t vl = fl - nl - 1;
            if (vl >= len)
                return false;
            memcpy(buf, p + nl + 1, vl);
            buf[vl] = '\0';
            return true;
        }
        p = end ? end + 1 : NULL;
    }
    return false;
}

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int find_value(const struct recs *r, const char *value)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->v[i].value, value) == 0)
            return (int)i;
    return -1;
}

/* Asserts the records with key `key`, in topic order, carry seq 0..n-1 in that order and all
 * sit on one partition; returns that partition. */
static int check_key_order(const struct recs *r, const char *key, int n)
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
    struct mock m = {0};
    mock_start(&m);
    struct sgt_proc p;
    start_gateway(&p, m.bootstrap, NULL);

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

    struct recs rs;
    kcat_read(m.bootstrap, "events", 40, 10000, &rs);
    cr_assert_eq(rs.n, 40, "kcat read %zu records, 40 expected", rs.n);

    for (int i = 0; i < 40; i++) {
        int at = find_value(&rs, sent[i]);
        cr_assert(at >= 0, "event not found byte for byte in the topic: %s", sent[i]);
        const struct rec *rec = &rs.v[at];
        char want_key[8];
        snprintf(want_key, sizeof(want_key), "%c%d", i < 20 ? 'h' : 't', i % 5);
        cr_assert_str_eq(rec->key, want_key, "key of %s", sent[i]);

        char v[64];
        cr_assert(header(rec->headers, "content-type", v, sizeof(v)), "headers: %s", rec->headers);
        cr_assert_str_eq(v, "application/json");
        cr_assert(header(rec->headers, "transport", v, sizeof(v)), "headers: %s", rec->headers);
        cr_assert_str_eq(v, i < 20 ? "http" : "tcp", "transport of %s", sent[i]);
        cr_assert(header(rec->headers, "received-at", v, sizeof(v)), "headers: %s", rec->headers);
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

    recs_free(&rs);
    close(fd);
    sgt_stop_ok(&p);
    mock_stop(&m);
}

Test(kafka, window_results_reach_the_aggregates_topic)
{
    struct mock m = {0};
    mock_start(&m);
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
    struct recs rs;
    kcat_read(m.bootstrap, "aggregates", 3, WAIT_MS, &rs);
    cr_assert_eq(rs.n, 3, "kcat read %zu results, 3 expected", rs.n);
    bool seen[3] = {false, false, false};
    for (size_t i = 0; i < rs.n; i++) {
        const struct rec *rec = &rs.v[i];
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
    recs_free(&rs);
    close(fd);
    sgt_stop_ok(&p);
    mock_stop(&m);
}

Test(kafka, broker_outage_queues_records_and_delivers_them_after)
{
    struct mock m = {0};
    mock_start(&m);
    struct sgt_proc p;
    start_gateway(&p, m.bootstrap, NULL);
    cr_assert_eq(sgt_metric(p.http, RAW_DELIVERED), 0);

    mock_cmd(&m, "down-all");
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

    mock_cmd(&m, "up-all");
    double delivered = sgt_wait_metric(p.http, RAW_DELIVERED, 50, WAIT_MS);
    cr_assert_eq(delivered, 50, "delivered %g of 50 after the outage", delivered);

    struct recs rs;
    kcat_read(m.bootstrap, "events", 50, 10000, &rs);
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
    recs_free(&rs);
    close(fd);
    sgt_stop_ok(&p);
    mock_stop(&m);
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

    struct recs rs;
    kcat_read(bootstrap, "events", 3, 10000, &rs);
    cr_assert_eq(rs.n, 3, "kcat read %zu records from %s, 3 expected", rs.n, bootstrap);
    for (int i = 0; i < 3; i++) {
        int at = find_value(&rs, events[i]);
        cr_assert(at >= 0, "%s not in the topic", events[i]);
        char key[4];
        snprintf(key, sizeof(key), "e%d", i + 1);
        cr_assert_str_eq(rs.v[at].key, key);
    }
    recs_free(&rs);
    close(fd);
    sgt_stop_ok(&p);
}

Test(kafka, sigterm_drains_queued_records_before_exit)
{
    struct mock m = {0};
    mock_start(&m);
    /* Slow brokers, so records are still in flight when the signal comes. */
    for (int b = 1; b <= 3; b++) {
        char cmd[32];
        snprintf(cmd, sizeof(cmd), "rtt %d 300", b);
        mock_cmd(&m, cmd);
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

    struct recs rs;
    kcat_read(m.bootstrap, "events", 100, 10000, &rs);
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
    recs_free(&rs);
    mock_stop(&m);
}

/* With no reachable broker, shutdown waits for delivery only until shutdown.timeout, then gives
 * up, counts and logs what was left, and exits 0. */
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
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
    cr_assert_lt(took, 5000, "the drain took %lld ms despite a 1 s deadline", (long long)took);
    char *log = sgt_read_file(p.log_path, NULL);
    cr_assert_not_null(strstr(log, "kafka records left undelivered at shutdown"), "%s", log);
    free(log);
    p.pid = 0;
    sgt_stop(&p); /* removes the run's directory */
}
