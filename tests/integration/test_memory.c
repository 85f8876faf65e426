/* Memory with many keys: stream state counts in the budget, so it can pause ingest, and the
 * watermark's idle advance must end that pause; new keys are refused at limits.streams_share
 * while known keys go on; and windows fire at the writers' pace, the budget's account never
 * past limits.memory, every result exact (streamgate-gen's expectation) in the file and the
 * topic. Thousands of idle connections hold (almost) nothing. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "kafka_util.h"

/* streamgate-gen ($SG_GEN_BINARY) as a child process, its stdout and stderr in files. */
struct gen_proc {
    pid_t pid;
    char out_path[320], err_path[320];
};

static void gen_spawn(struct gen_proc *g, const char *dir, const char *const *args)
{
    const char *bin = getenv("SG_GEN_BINARY");
    cr_assert(bin && *bin, "SG_GEN_BINARY is not set (run the tests through meson test)");
    static int seq;
    snprintf(g->out_path, sizeof(g->out_path), "%s/gen-%d.out", dir, seq);
    snprintf(g->err_path, sizeof(g->err_path), "%s/gen-%d.err", dir, seq++);
    const char *argv[64];
    size_t n = 0;
    argv[n++] = bin;
    for (; *args; args++) {
        cr_assert_lt(n, 63);
        argv[n++] = *args;
    }
    argv[n] = NULL;
    g->pid = fork();
    cr_assert(g->pid >= 0);
    if (g->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int out = open(g->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(g->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(out, 1);
        dup2(err, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
}

/* True once the generator has exited; *status is then its exit status. */
static bool gen_exited(struct gen_proc *g, int *status)
{
    int st;
    if (waitpid(g->pid, &st, WNOHANG) != g->pid)
        return false;
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return true;
}

/* Runs the generator to completion; returns its exit status, logging its stderr when not 0. */
static int gen_run(const char *dir, const char *const *args)
{
    struct gen_proc g;
    int status;
    gen_spawn(&g, dir, args);
    while (!gen_exited(&g, &status))
        sgt_sleep_ms(10);
    if (status != 0) {
        char *err = sgt_read_file(g.err_path, NULL);
        cr_log_error("streamgate-gen exited %d: %s", status, err ? err : "");
        free(err);
    }
    return status;
}

static char *make_dir(void)
{
    char *d = strdup("/tmp/sgt-pace-XXXXXX");
    cr_assert(d && mkdtemp(d));
    return d;
}

static void remove_dir(char *d)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
    cr_assert_eq(system(cmd), 0);
    free(d);
}

/* One look at /metrics. */
static char *scrape(const char *hostport)
{
    struct sgt_response r;
    sgt_http(hostport, "GET", "/metrics", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    char *body = r.body;
    r.body = NULL;
    sgt_response_free(&r);
    return body;
}

static double metric_of(const char *text, const char *series)
{
    double v = sgt_metric_in(text, series);
    cr_assert_geq(v, 0, "no series %s", series);
    return v;
}

#define STREAMS_USE "streamgate_budget_use_bytes{use=\"streams\"}"
#define QUEUES_USE  "streamgate_budget_use_bytes{use=\"queues\"}"

/* Paced firing, end to end. 16,000 keys over four 60 s windows (event time) in a 16 MiB budget,
 * results to a slow Kafka cluster and to a file: every window boundary makes about 15,600
 * results, some 18 MB of writer queues, more than the whole budget, while the keys' state fits
 * well within limits.streams_share. The windows must wait and fire as the writers drain: the
 * budget's account never passes limits.memory, and every result reaches the file and the topic
 * exactly once, as streamgate-gen computed it. */
#define PACE_BUDGET_MIB 16
#define PACE_KEYS       "16000"
#define PACE_WINDOW_MS  60000
#define PACE_WINDOWS    4
#define PACE_START_TS   INT64_C(1700000040000) /* a multiple of the window */
#define PACE_TAIL       2000                   /* events of a fifth window, fired at shutdown */

/* Lines of a results or expectation file whose window starts before `end`, and all lines. */
static size_t count_windows(const char *path, int64_t end, size_t *all)
{
    char *text = sgt_read_file(path, NULL);
    cr_assert(text, "no file %s", path);
    size_t n = 0;
    *all = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        cr_assert(j, "not JSON: %.80s", line);
        (*all)++;
        n += cJSON_GetObjectItem(j, "window_start")->valuedouble < (double)end;
        cJSON_Delete(j);
    }
    free(text);
    return n;
}

/* How long to wait for a run that takes a fraction of `ms` in a plain build: the sanitizers slow
 * the gateway and the generator several times over. */
static int64_t patience_ms(int64_t ms)
{
    return getenv("SG_SANITIZED") ? 4 * ms : ms;
}

Test(memory, many_keys_fire_at_the_writers_pace_within_the_budget, .timeout = 600)
{
    char *dir = make_dir();
    char results[320], expect[320], topic_dump[320], count[32], start_ts[32], budget[32];
    snprintf(results, sizeof(results), "%s/results.ndjson", dir);
    snprintf(expect, sizeof(expect), "%s/expect.ndjson", dir);
    snprintf(topic_dump, sizeof(topic_dump), "%s/topic.ndjson", dir);
    snprintf(count, sizeof(count), "%d", PACE_WINDOWS * PACE_WINDOW_MS + PACE_TAIL);
    snprintf(start_ts, sizeof(start_ts), "%" PRId64, PACE_START_TS);
    snprintf(budget, sizeof(budget), "%dMiB", PACE_BUDGET_MIB);

    struct sgt_mock m = {0};
    sgt_mock_start(&m, "4", "aggregates");
    static const char *const slow[] = {"rtt 1 300", "rtt 2 300", "rtt 3 300", NULL};
    for (const char *const *cmd = slow; *cmd; cmd++)
        sgt_mock_cmd(&m, *cmd);
    const char *args[] = {"--kafka-brokers",
                          m.bootstrap,
                          "--kafka-raw-topic",
                          "",
                          "--kafka-rdkafka",
                          "batch.num.messages=500",
                          "--output-file",
                          "",
                          "--output-results-file",
                          results,
                          "--limits-memory",
                          budget,
                          "--limits-streams-share",
                          "100",
                          "--window-size",
                          "60s",
                          "--window-idle-timeout",
                          "1h",
                          "--window-quantiles",
                          "",
                          "--event-value-fields",
                          "value",
                          "--log-level",
                          "info",
                          NULL};
    struct sgt_proc p;
    sgt_start(&p, args, NULL);
    sgt_sleep_ms(300);
    long idle_kb = sgt_rss_kb(p.pid);

    const char *gen_args[] = {
        "--tcp",  p.tcp,        "--keys",  PACE_KEYS,       "--count", count,      "--ts-step",
        "1",      "--start-ts", start_ts,  "--window-size", "60000",   "--expect", expect,
        "--seed", "5",          "--quiet", "--json",        NULL};
    struct gen_proc g;
    gen_spawn(&g, dir, gen_args);

    /* Until the generator is done and the four full windows have fired. */
    const int64_t full_end = PACE_START_TS + (int64_t)PACE_WINDOWS * PACE_WINDOW_MS;
    size_t want_fired = SIZE_MAX, want_all = 0;
    int gen_status = -1;
    double max_budget = 0, max_streams = 0, max_waiting = 0, max_age = 0, fired = 0;
    long max_kb = idle_kb;
    int64_t limit_ms = patience_ms(90000);
    int64_t deadline = sgt_mono_ms() + limit_ms;
    while (fired < (double)want_fired) {
        cr_assert_lt(sgt_mono_ms(), deadline, "%g of %zu windows fired after %" PRId64 " ms", fired,
                     want_fired, limit_ms);
        if (want_fired == SIZE_MAX && gen_exited(&g, &gen_status)) {
            cr_assert_eq(gen_status, 0, "streamgate-gen failed");
            want_fired = count_windows(expect, full_end, &want_all);
        }
        char *text = scrape(p.http);
        max_budget = fmax(max_budget, metric_of(text, "streamgate_budget_bytes"));
        max_streams = fmax(max_streams, metric_of(text, STREAMS_USE));
        max_waiting = fmax(max_waiting, metric_of(text, "streamgate_windows_waiting"));
        max_age = fmax(max_age, metric_of(text, "streamgate_windows_waiting_age_seconds"));
        fired = metric_of(text, "streamgate_windows_fired_total");
        free(text);
        long kb = sgt_rss_kb(p.pid);
        if (kb > max_kb)
            max_kb = kb;
        sgt_sleep_ms(20);
    }
    char *text = scrape(p.http);
    double stalls = metric_of(text, "streamgate_window_firing_stalls_total");
    double refused = sgt_metric_in(
        text, "streamgate_events_rejected_total{transport=\"tcp\",reason=\"key_limit\"}");
    free(text);
    cr_log_info("paced: %zu windows, budget peak %.0f bytes (streams %.0f), up to %.0f windows "
                "waiting for up to %.2f s, %.0f stalls, RSS idle %ld kB peak %ld kB",
                want_all, max_budget, max_streams, max_waiting, max_age, stalls, idle_kb, max_kb);

    cr_assert_leq(max_budget, PACE_BUDGET_MIB * 1048576.0, "the budget's account reached %.0f",
                  max_budget);
    cr_assert_gt(max_streams, 1048576.0, "stream state is in the budget");
    cr_assert_gt(stalls, 0, "firing never waited for the writers");
    cr_assert_gt(max_waiting, 1000, "windows waiting: at most %.0f seen", max_waiting);
    cr_assert_leq(refused, 0,
                  "keys refused: the state should fit in limits.streams_share, with "
                  "room for each key's next window");
    if (!getenv("SG_SANITIZED"))
        cr_assert_leq(max_kb, idle_kb + PACE_BUDGET_MIB * 1024L * 11 / 10,
                      "peak RSS %ld kB over idle %ld kB + budget + 10%%", max_kb, idle_kb);

    /* The fifth window fires at shutdown; then every window is in the file and the topic once. */
    sgt_stop_ok(&p);
    const char *check_file[] = {"--check-results", results, "--expect", expect, NULL};
    cr_assert_eq(gen_run(dir, check_file), 0, "the results file differs from the expectation");
    struct sgt_recs rs;
    sgt_kcat_read(m.bootstrap, "aggregates", want_all, 60000, &rs);
    cr_assert_eq(rs.n, want_all, "kcat read %zu results, %zu windows expected", rs.n, want_all);
    FILE *f = fopen(topic_dump, "w");
    cr_assert(f);
    for (size_t i = 0; i < rs.n; i++)
        fprintf(f, "%s\n", rs.v[i].value);
    fclose(f);
    sgt_recs_free(&rs);
    const char *check_topic[] = {"--check-results", topic_dump, "--expect", expect, NULL};
    cr_assert_eq(gen_run(dir, check_topic), 0, "the aggregates topic differs from the expectation");
    sgt_mock_stop(&m);
    remove_dir(dir);
}

/* Stream state alone fills the budget: 3,000 keys with three quantile sketches on four fields
 * (about 1 KB per key and window) in a 16 MiB budget, events in wall-clock time over one TCP
 * connection, 1 s windows kept open 3 s more for late events. The keys fit with room for the
 * windows they will hold, so hardly any is refused, but the high watermark is set at 40%, below
 * what they hold: ingest pauses on stream state; no
 * event can arrive then, so only the watermark's idle advance (window.idle_timeout) makes the
 * windows due. They must fire, give their memory back, and let ingest resume, again and again
 * until the generator is done: no deadlock. Every event accepted is in a window result or
 * counted late. */
#define STATE_BUDGET_MIB 16
#define STATE_HIGH_PCT   40 /* limits.high_watermark */

Test(memory, stream_state_pauses_ingest_and_the_idle_watermark_resumes_it, .timeout = 600)
{
    char *dir = make_dir();
    char results[320], budget[32];
    snprintf(results, sizeof(results), "%s/results.ndjson", dir);
    snprintf(budget, sizeof(budget), "%dMiB", STATE_BUDGET_MIB);
    char high[8];
    snprintf(high, sizeof(high), "%d", STATE_HIGH_PCT);
    const char *args[] = {"--output-file", "", "--output-results-file", results, "--limits-memory",
                          budget, "--limits-streams-share", "100", "--limits-high-watermark", high,
                          "--limits-low-watermark", "25", "--window-size", "1s",
                          "--window-allowed-lateness", "3s", "--window-idle-timeout", "300ms",
                          "--log-level", "info",
                          /* A key's forecast models (48 bytes a field) stay with the key for
                           * stream.key_idle_timeout, past any window: with them 20,000 keys
                           * would hold the budget above its low watermark for good. This test
                           * is about windows' state. */
                          "--predict-enabled", "false", NULL};
    struct sgt_proc p;
    sgt_start(&p, args, NULL);
    const int events = 150000;
    char count[16];
    snprintf(count, sizeof(count), "%d", events);
    /* Paced, so that event times follow the wall clock and several windows fill up. */
    const char *gen_args[] = {"--tcp",     p.tcp,    "--keys",  "3000",   "--count",
                              count,       "--rate", "15000",   "--seed", "9",
                              "--ts-step", "0",      "--quiet", NULL};
    struct gen_proc g;
    gen_spawn(&g, dir, gen_args);

    const double limit = STATE_BUDGET_MIB * 1048576.0;
    bool paused_on_state = false;
    double max_budget = 0;
    int gen_status = -1;
    int64_t deadline = sgt_mono_ms() + patience_ms(120000);
    while (!gen_exited(&g, &gen_status)) {
        cr_assert_lt(sgt_mono_ms(), deadline, "the generator is stuck: ingest never resumed?");
        char *text = scrape(p.http);
        double used = metric_of(text, "streamgate_budget_bytes");
        max_budget = fmax(max_budget, used);
        /* Paused with stream state holding most of what the high watermark allows. */
        if (metric_of(text, "streamgate_ingest_paused") == 1 &&
            metric_of(text, STREAMS_USE) >= 0.8 * STATE_HIGH_PCT / 100.0 * limit)
            paused_on_state = true;
        free(text);
        sgt_sleep_ms(20);
    }
    cr_assert_eq(gen_status, 0, "streamgate-gen did not write every event");
    /* Every event is taken in, once ingest resumes: accepted, or refused as a new key while
     * stream state was at its height (key_limit). */
    double accepted = 0, refused = 0;
    for (int64_t until = sgt_mono_ms() + patience_ms(30000);; sgt_sleep_ms(50)) {
        char *t = scrape(p.http);
        accepted = metric_of(t, "streamgate_events_accepted_total{transport=\"tcp\"}");
        refused = sgt_metric_in(
            t, "streamgate_events_rejected_total{transport=\"tcp\",reason=\"key_limit\"}");
        free(t);
        if (accepted + refused >= events || sgt_mono_ms() > until)
            break;
    }
    cr_assert_eq(accepted + refused, events, "%.0f accepted + %.0f refused of %d", accepted,
                 refused, events);
    cr_assert_lt(refused, events / 100, "%.0f refused for key_limit", refused);
    char *text = scrape(p.http);
    double pauses = metric_of(text, "streamgate_ingest_pauses_total");
    double pushback = metric_of(text, "streamgate_pushback_total{transport=\"tcp\"}");
    double late = metric_of(text, "streamgate_late_events_total");
    free(text);
    cr_log_info("stream state: %.0f pauses, budget peak %.0f of %.0f bytes, %.0f late", pauses,
                max_budget, limit, late);
    cr_assert(paused_on_state, "ingest never paused with stream state at the high watermark");
    cr_assert_geq(pauses, 3, "ingest paused %.0f times: never resumed and paused again", pauses);
    cr_assert_gt(pushback, 0);
    cr_assert_leq(max_budget, limit, "the budget's account reached %.0f", max_budget);

    sgt_stop_ok(&p);
    /* Nothing lost: every accepted event is counted in exactly one final result, or late. */
    char *res = sgt_read_file(results, NULL);
    cr_assert(res);
    double counted = 0;
    for (char *line = strtok(res, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        cr_assert(j);
        cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(j, "final")));
        counted += cJSON_GetObjectItem(j, "count")->valuedouble;
        cJSON_Delete(j);
    }
    free(res);
    cr_assert_eq(counted + late, accepted, "%.0f in results + %.0f late != %.0f accepted", counted,
                 late, accepted);
    remove_dir(dir);
}

/* New keys are refused once stream state, with room for one more window per key, holds
 * limits.streams_share of the budget, before memory runs out, while the keys already known go
 * on. With one window open per key, that is about half the share. */
Test(memory, new_keys_are_refused_at_the_streams_share, .timeout = 120)
{
    const char *args[] = {"--output-file",
                          "",
                          "--limits-memory",
                          "4MiB",
                          "--limits-streams-share",
                          "50",
                          "--window-size",
                          "1h",
                          "--window-idle-timeout",
                          "1h",
                          "--log-bad-input-interval",
                          "1h",
                          NULL};
    struct sgt_proc p;
    sgt_start(&p, args, NULL);
    char *body = malloc(200 * 128);
    cr_assert(body);
    int next = 0, refused_at = -1;
    while (refused_at < 0) {
        cr_assert_lt(next, 40000, "no key was refused");
        size_t len = 0;
        for (int i = 0; i < 200; i++, next++)
            len += (size_t)snprintf(body + len, 128,
                                    "{\"key\":\"device-%06d\",\"ts\":1700000000000,\"a\":%d,"
                                    "\"b\":%d,\"c\":%d}\n",
                                    next, next, next * 3, next % 7);
        struct sgt_response r;
        sgt_post(p.http, "application/x-ndjson", body, &r);
        if (r.status == 400) {
            cr_assert(strstr(r.body, "key_limit: events for new keys are refused"), "%s", r.body);
            refused_at = next;
        } else {
            cr_assert_eq(r.status, 202, "status %d: %s", r.status, r.body);
        }
        sgt_response_free(&r);
    }
    free(body);
    char *text = scrape(p.http);
    double streams = metric_of(text, STREAMS_USE);
    cr_assert_geq(streams, 0.24 * 4 * 1048576.0, "refused with stream state at %.0f bytes",
                  streams);
    cr_assert_lt(streams, 0.28 * 4 * 1048576.0, "refused with stream state at %.0f bytes", streams);
    cr_assert_gt(metric_of(text, "streamgate_limit_hits_total{limit=\"streams_memory\"}"), 0);
    cr_assert_gt(
        metric_of(text,
                  "streamgate_events_rejected_total{transport=\"http\",reason=\"key_limit\"}"),
        0);
    cr_assert_eq(metric_of(text, "streamgate_ingest_paused"), 0, "under the high watermark");
    free(text);

    /* A known key goes on; a new one is refused. */
    struct sgt_response r;
    sgt_post(p.http, "application/json", "{\"key\":\"device-000000\",\"ts\":1700000000001,\"a\":1}",
             &r);
    cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
    sgt_response_free(&r);
    sgt_post(p.http, "application/json", "{\"key\":\"newcomer\",\"ts\":1700000000001,\"a\":1}", &r);
    cr_assert_eq(r.status, 400, "%d %s", r.status, r.body);
    sgt_response_free(&r);

    /* /v1/info's budget shows the streams use. */
    sgt_http(p.http, "GET", "/v1/info", NULL, NULL, 0, &r);
    cJSON *info = cJSON_Parse(r.body);
    cr_assert(info);
    const cJSON *b = cJSON_GetObjectItem(info, "budget");
    cr_assert_geq(cJSON_GetObjectItem(b, "streams")->valuedouble, 0.24 * 4 * 1048576.0);
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(b, "queues")));
    cJSON_Delete(info);
    sgt_response_free(&r);

    char *log = sgt_read_file(p.log_path, NULL);
    cr_assert(log && strstr(log, "new keys refused: stream state holds limits.streams_share"),
              "no log line about refused keys");
    free(log);
    sgt_stop_ok(&p);
}

/* Raises this process's open-files soft limit to its hard limit, for tests holding thousands of
 * sockets; returns the limit now in effect. */
static rlim_t raise_own_nofile(void)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    return rl.rlim_cur;
}

/* One event POSTed on the keep-alive connection `fd`; fails the test unless it is accepted. */
static void post_on(int fd, int seq)
{
    char body[96], head[256];
    int n = snprintf(body, sizeof(body), "{\"key\":\"idle-http\",\"seq\":%d}", seq);
    int m = snprintf(head, sizeof(head),
                     "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\n\r\n",
                     n);
    sgt_send_all(fd, head, (size_t)m);
    sgt_send_all(fd, body, (size_t)n);
    struct sgt_response r;
    cr_assert_eq(sgt_read_response(fd, &r), 0, "no response");
    cr_assert_eq(r.status, 202, "event %d: %d %s", seq, r.status, r.body);
    sgt_response_free(&r);
}

#define MIB         (1024 * 1024)
#define CONN_BUDGET "streamgate_budget_use_bytes{use=\"connections\"}"

/* Thousands of idle connections, each of which has sent something and then gone quiet, hold
 * (almost) nothing: reads go into one buffer the server shares, so the budget's account stays
 * under 1% of a small limits.memory and a normal client is served. When each connection kept a
 * 64 KiB read buffer, these alone were 250 MiB, far over the limit: ingest would be paused. */
Test(memory, idle_connections_hold_almost_nothing, .timeout = 240)
{
    enum { TCP_IDLE = 3000, HTTP_IDLE = 1000 };
    const double limit = 16.0 * MIB;
    cr_assert_geq(raise_own_nofile(), TCP_IDLE + HTTP_IDLE + 64, "this test needs %d open files",
                  TCP_IDLE + HTTP_IDLE + 64);
    const char *args[] = {"--limits-memory", "16MiB", "--log-level", "info", NULL};
    struct sgt_proc p;
    sgt_start(&p, args, NULL);

    static int tcp[TCP_IDLE], http[HTTP_IDLE];
    char line[96];
    for (int i = 0; i < TCP_IDLE; i++) {
        tcp[i] = sgt_connect(p.tcp);
        int n = snprintf(line, sizeof(line), "{\"key\":\"idle-tcp\",\"seq\":%d}\n", i);
        sgt_send_all(tcp[i], line, (size_t)n);
    }
    for (int i = 0; i < HTTP_IDLE; i++) {
        http[i] = sgt_connect(p.http);
        post_on(http[i], i); /* 202, and the connection stays open */
    }
    cr_assert_eq(sgt_wait_lines(p.out_path, TCP_IDLE + HTTP_IDLE, 60000), TCP_IDLE + HTTP_IDLE,
                 "events from the idle connections lost");
    cr_assert_eq(
        sgt_wait_metric(p.http, "streamgate_connections{transport=\"tcp\"}", TCP_IDLE, 20000),
        TCP_IDLE);
    /* The scrape's own connection is one more. */
    cr_assert_geq(sgt_metric(p.http, "streamgate_connections{transport=\"http\"}"), HTTP_IDLE);

    /* A keep-alive connection gives its last request's storage back within a second of going
     * quiet (the ones that just answered may still hold theirs). */
    int64_t until = sgt_mono_ms() + 10000;
    while ((sgt_metric(p.http, CONN_BUDGET) > 0 ||
            sgt_metric(p.http, "streamgate_budget_bytes") >= 0.01 * limit) &&
           sgt_mono_ms() < until)
        sgt_sleep_ms(50);
    char *text = NULL;
    {
        struct sgt_response r;
        sgt_http(p.http, "GET", "/metrics", NULL, NULL, 0, &r);
        text = strdup(r.body);
        sgt_response_free(&r);
    }
    double held = sgt_metric_in(text, CONN_BUDGET),
           total = sgt_metric_in(text, "streamgate_budget_bytes");
    free(text);
    cr_log_info("%d idle TCP + %d idle HTTP connections: connections hold %.0f bytes of the "
                "budget, all uses %.0f of %.0f",
                TCP_IDLE, HTTP_IDLE, held, total, limit);
    cr_assert(held >= 0 && held < 0.01 * limit, "connections hold %.0f bytes", held);
    cr_assert(total >= 0 && total < 0.01 * limit, "the budget holds %.0f bytes", total);
    cr_assert_eq(sgt_metric(p.http, "streamgate_ingest_paused"), 0);

    /* A normal client among them is served. */
    struct sgt_response r;
    sgt_post(p.http, "application/json", "{\"key\":\"normal\",\"seq\":1}", &r);
    cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
    sgt_response_free(&r);

    /* The idle ones still work afterwards, on both transports. */
    sgt_send_str(tcp[TCP_IDLE - 1], "{\"key\":\"idle-tcp\",\"seq\":-1}\n");
    post_on(http[0], -1);
    cr_assert_eq(sgt_wait_lines(p.out_path, TCP_IDLE + HTTP_IDLE + 3, 20000),
                 TCP_IDLE + HTTP_IDLE + 3);
    for (int i = 0; i < TCP_IDLE; i++)
        close(tcp[i]);
    for (int i = 0; i < HTTP_IDLE; i++)
        close(http[i]);
    sgt_stop_ok(&p);
}

/* Under a hard open-files limit lower than the connection limits need, the gateway starts,
 * says which limit is too low and which options to lower, and serves. */
Test(memory, a_low_open_files_limit_is_named_and_the_gateway_runs, .timeout = 60)
{
    const char *args[] = {"--tcp-max-connections", "5000", "--http-max-connections", "1000", NULL};
    struct sgt_start_opts opts = {.nofile = 256};
    struct sgt_proc p;
    sgt_start_with(&p, args, NULL, &opts);

    char *log = sgt_read_file(p.log_path, NULL);
    const char *line = log ? strstr(log, "open-files hard limit (RLIMIT_NOFILE) is too low") : NULL;
    cr_assert(line, "no warning about the open-files limit:\n%s", log ? log : "");
    const char *end = strchr(line, '\n');
    cr_assert(end);
    char warning[1024];
    snprintf(warning, sizeof(warning), "%.*s", (int)(end - line), line);
    cr_assert(strstr(warning, "\"hard_limit\":256"), "%s", warning);
    cr_assert(strstr(warning, "\"needed\":7024"), "%s", warning); /* 5000 + 1000 + 1024 */
    cr_assert(strstr(warning, "tcp.max_connections") && strstr(warning, "http.max_connections"),
              "%s", warning);
    free(log);

    /* Still serving, on both listeners. */
    struct sgt_response r;
    sgt_post(p.http, "application/json", "{\"key\":\"nofile\",\"seq\":1}", &r);
    cr_assert_eq(r.status, 202, "%d %s", r.status, r.body);
    sgt_response_free(&r);
    int fd = sgt_connect(p.tcp);
    sgt_send_str(fd, "{\"key\":\"nofile\",\"seq\":2}\n");
    close(fd);
    cr_assert_eq(sgt_wait_lines(p.out_path, 2, 10000), 2);
    sgt_stop_ok(&p);
}
