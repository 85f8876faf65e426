/* SIGHUP reloads the configuration file in the running process: live options (auth tokens,
 * rate limits, the log level, limits.*) change without a restart and without dropping a
 * connection or an event; a file that does not validate, or that changes an option needing a
 * restart, is refused with a log line and the running configuration stays. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define APPLIED "streamgate_config_reloads_total{result=\"applied\"}"
#define REFUSED "streamgate_config_reloads_total{result=\"refused\"}"
#define INVALID "streamgate_config_reloads_total{result=\"invalid\"}"

static void write_file(const char *path, const char *text)
{
    /* Written beside, then renamed: the reload never reads a half-written file. */
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f, "cannot create %s", tmp);
    cr_assert_eq(fputs(text, f) >= 0, 1);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(rename(tmp, path), 0);
}

struct cfgdir {
    char dir[64];
    char path[128];
};

static void cfg_init(struct cfgdir *c, const char *text)
{
    snprintf(c->dir, sizeof(c->dir), "/tmp/sg-reload-XXXXXX");
    cr_assert_not_null(mkdtemp(c->dir));
    snprintf(c->path, sizeof(c->path), "%s/streamgate.json", c->dir);
    write_file(c->path, text);
}

static void cfg_remove(struct cfgdir *c)
{
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", c->path);
    unlink(tmp);
    unlink(c->path);
    rmdir(c->dir);
}

/* Sends SIGHUP and waits until the counter `series` reaches `want`. */
static void hup(struct sgt_proc *p, const char *series, double want)
{
    cr_assert_eq(kill(p->pid, SIGHUP), 0);
    cr_assert_eq(sgt_wait_metric(p->http, series, want, 10000), want, "%s did not reach %g", series,
                 want);
}

static int post_with_token(const char *hostport, const char *token)
{
    char hdr[128];
    snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\nContent-Type: application/json\r\n",
             token);
    static const char body[] = "{\"key\":\"k\",\"seq\":1}";
    struct sgt_response r;
    sgt_http(hostport, "POST", "/v1/events", hdr, body, sizeof(body) - 1, &r);
    int status = r.status;
    sgt_response_free(&r);
    return status;
}

static char *info(const char *hostport)
{
    struct sgt_response r;
    sgt_http(hostport, "GET", "/v1/info", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    char *body = strdup(r.body);
    sgt_response_free(&r);
    return body;
}

/* The "hash" value in /v1/info's "config" object, copied into out[17]. */
static void info_hash(const char *hostport, char *out)
{
    char *body = info(hostport);
    const char *h = strstr(body, "\"config\":{\"hash\":\"");
    cr_assert_not_null(h, "%s", body);
    h += strlen("\"config\":{\"hash\":\"");
    memcpy(out, h, 16);
    out[16] = '\0';
    cr_assert_not_null(strstr(body, "\"loaded_at\":\""), "%s", body);
    free(body);
}

/* Starts the binary with --config holding `text`, with `--log-level more` after it unless
 * `more` is NULL, and the harness's `opts` (may be NULL). */
static void start_with(struct cfgdir *c, struct sgt_proc *p, const char *text, const char *more,
                       const struct sgt_start_opts *opts)
{
    cfg_init(c, text);
    const char *args[] = {"--config", c->path, more ? "--log-level" : NULL, more, NULL};
    sgt_start_with(p, args, NULL, opts);
}

Test(reload, a_rotated_token_takes_effect_in_the_same_process, .timeout = 60)
{
    struct cfgdir c;
    struct sgt_proc p;
    start_with(&c, &p, "{\"http\": {\"auth_tokens\": [\"old-token\"]}}", NULL, NULL);
    pid_t pid = p.pid;
    char before[17], after[17];
    info_hash(p.http, before);

    /* A keep-alive connection opened before the reload lives through it. */
    int keep = sgt_connect(p.http);
    cr_assert_eq(post_with_token(p.http, "old-token"), 202);
    cr_assert_eq(post_with_token(p.http, "new-token"), 401);

    write_file(c.path, "{\"http\": {\"auth_tokens\": [\"new-token\"], \"rate_limit\": 1000}}");
    hup(&p, APPLIED, 1);
    cr_assert_eq(post_with_token(p.http, "old-token"), 401);
    cr_assert_eq(post_with_token(p.http, "new-token"), 202);
    info_hash(p.http, after);
    cr_assert_str_neq(before, after, "the configuration hash did not change");
    cr_assert_eq(p.pid, pid);
    cr_assert_eq(kill(pid, 0), 0, "the process is gone");

    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    sgt_send_all(keep, req, sizeof(req) - 1);
    struct sgt_response r;
    cr_assert_eq(sgt_read_response(keep, &r), 0, "the connection opened before did not survive");
    cr_assert_eq(r.status, 200);
    sgt_response_free(&r);
    close(keep);

    char *log = sgt_read_file(p.log_path, NULL);
    cr_assert(log && strstr(log, "\"msg\":\"configuration reloaded\"") &&
                  strstr(log, "\"changed\":\"http.rate_limit,http.auth_tokens\""),
              "%s", log ? log : "");
    free(log);
    sgt_stop_ok(&p);
    cfg_remove(&c);
}

Test(reload, a_bad_file_and_a_restart_only_change_are_refused, .timeout = 60)
{
    struct cfgdir c;
    struct sgt_proc p;
    start_with(&c, &p, "{\"http\": {\"auth_tokens\": [\"t1\"]}}", NULL, NULL);
    char before[17], now[17];
    info_hash(p.http, before);

    /* Not JSON. */
    write_file(c.path, "{\"http\": {\"auth_tokens\": [\"t2\"");
    hup(&p, INVALID, 1);
    cr_assert_eq(post_with_token(p.http, "t1"), 202);
    cr_assert_eq(post_with_token(p.http, "t2"), 401);

    /* JSON, but a value that does not validate. */
    write_file(c.path, "{\"http\": {\"auth_tokens\": [\"t2\"]}, \"limits\": {\"low_watermark\": "
                       "90, \"high_watermark\": 80}}");
    hup(&p, INVALID, 2);
    cr_assert_eq(post_with_token(p.http, "t2"), 401);

    /* Valid, but http.max_body_size needs a restart: nothing of it applies, the token neither. */
    write_file(c.path, "{\"http\": {\"auth_tokens\": [\"t2\"], \"max_body_size\": \"1MiB\"}}");
    hup(&p, REFUSED, 1);
    cr_assert_eq(post_with_token(p.http, "t1"), 202);
    cr_assert_eq(post_with_token(p.http, "t2"), 401);
    info_hash(p.http, now);
    cr_assert_str_eq(before, now);
    cr_assert_eq(sgt_metric(p.http, APPLIED), 0);

    char *log = sgt_read_file(p.log_path, NULL);
    cr_assert(log && strstr(log, "\"msg\":\"configuration reload failed: the running "
                                 "configuration is kept\""),
              "%s", log ? log : "");
    cr_assert(strstr(log, "limits.low_watermark"), "%s", log);
    cr_assert(strstr(log, "\"msg\":\"configuration reload refused\"") &&
                  strstr(log, "http.max_body_size changed, and a change to it needs a restart"),
              "%s", log);
    free(log);
    sgt_stop_ok(&p);
    cfg_remove(&c);
}

struct sender {
    const char *http, *tcp;
    atomic_bool stop;
    long sent; /* events acknowledged (HTTP 202) or written into the socket (TCP) */
    int bad;   /* HTTP answers other than 202 */
};

/* One keep-alive HTTP connection and one TCP connection, an event on each in turn, until told
 * to stop. */
static void *send_loop(void *arg)
{
    struct sender *s = arg;
    int h = sgt_connect(s->http), t = sgt_connect(s->tcp);
    char body[96], head[256];
    for (long i = 0; !atomic_load(&s->stop); i++) {
        int n = snprintf(body, sizeof(body), "{\"key\":\"reload\",\"seq\":%ld}", i);
        int m = snprintf(head, sizeof(head),
                         "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: "
                         "application/json\r\nContent-Length: %d\r\n\r\n",
                         n);
        sgt_send_all(h, head, (size_t)m);
        sgt_send_all(h, body, (size_t)n);
        struct sgt_response r;
        if (sgt_read_response(h, &r) != 0) {
            s->bad++;
            break;
        }
        if (r.status == 202)
            s->sent++;
        else
            s->bad++;
        sgt_response_free(&r);
        n = snprintf(body, sizeof(body), "{\"key\":\"reload-tcp\",\"seq\":%ld}\n", i);
        sgt_send_all(t, body, (size_t)n);
        s->sent++;
    }
    close(h);
    close(t);
    return NULL;
}

Test(reload, events_sent_through_reloads_all_arrive, .timeout = 120)
{
    struct cfgdir c;
    struct sgt_proc p;
    start_with(&c, &p, "{\"log\": {\"level\": \"info\"}}", "info", NULL);

    struct sender s = {.http = p.http, .tcp = p.tcp};
    atomic_init(&s.stop, false);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, send_loop, &s), 0);

    /* Ten reloads while events flow, each changing live options. */
    for (int i = 1; i <= 10; i++) {
        char text[256];
        snprintf(text, sizeof(text),
                 "{\"http\": {\"rate_limit\": %d}, \"limits\": {\"memory\": \"%dMiB\", "
                 "\"retry_after\": \"%ds\"}}",
                 100000 + i, 256 + i, 1 + i % 3);
        write_file(c.path, text);
        hup(&p, APPLIED, i);
    }
    atomic_store(&s.stop, true);
    pthread_join(th, NULL);
    cr_assert_eq(s.bad, 0, "%d requests not accepted", s.bad);
    cr_assert_gt(s.sent, 20, "only %ld events sent", s.sent);
    cr_log_info("%ld events sent through 10 reloads", s.sent);
    /* Exactly those lines: none lost, none twice. */
    cr_assert_eq(sgt_wait_lines(p.out_path, (size_t)s.sent, 20000), (size_t)s.sent,
                 "events lost across reloads");
    cr_assert_eq(sgt_metric(p.http, "streamgate_budget_limit_bytes"), 266.0 * 1024 * 1024);
    cr_assert_eq(sgt_metric(p.http, REFUSED), 0);
    cr_assert_eq(sgt_metric(p.http, INVALID), 0);
    sgt_stop_ok(&p);
    cfg_remove(&c);
}

/* One event for `key` as NDJSON; returns the HTTP status. */
static int post_key(const char *hostport, const char *key)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"key\":\"%s\",\"ts\":1700000000000,\"a\":1}\n", key);
    struct sgt_response r;
    sgt_post(hostport, "application/x-ndjson", body, &r);
    int status = r.status;
    if (status == 400)
        cr_assert(strstr(r.body, "key_limit"), "%s", r.body);
    sgt_response_free(&r);
    return status;
}

/* limits.streams_share is a share of the budget the streams engine takes anew on a reload: a
 * share below what the keys hold refuses new keys while known ones go on, and raising it again
 * takes them, in the same process. */
Test(reload, the_streams_share_changes_live, .timeout = 60)
{
    static const char base[] = "{\"window\": {\"size\": \"1h\", \"idle_timeout\": \"1h\"}, "
                               "\"limits\": {\"memory\": \"4MiB\", \"streams_share\": %d, "
                               "\"results_share\": %d}}";
    char text[256];
    struct cfgdir c;
    struct sgt_proc p;
    snprintf(text, sizeof(text), base, 40, 25);
    start_with(&c, &p, text, NULL, NULL);
    pid_t pid = p.pid;
    char key[32];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "device-%03d", i);
        cr_assert_eq(post_key(p.http, key), 202);
    }

    snprintf(text, sizeof(text), base, 1, 10);
    write_file(c.path, text);
    hup(&p, APPLIED, 1);
    cr_assert_eq(post_key(p.http, "newcomer"), 400, "a new key past the lowered share");
    cr_assert_eq(post_key(p.http, "device-000"), 202, "a known key refused");

    snprintf(text, sizeof(text), base, 40, 25);
    write_file(c.path, text);
    hup(&p, APPLIED, 2);
    cr_assert_eq(post_key(p.http, "newcomer"), 202, "a new key refused past the raised share");
    cr_assert_eq(p.pid, pid);
    cr_assert_eq(sgt_metric(p.http, REFUSED), 0);

    char *log = sgt_read_file(p.log_path, NULL);
    cr_assert(log && strstr(log, "\"changed\":\"limits.streams_share,limits.results_share\""), "%s",
              log ? log : "");
    free(log);
    sgt_stop_ok(&p);
    cfg_remove(&c);
}

/* Sends a request that does not parse and reads the answer to its end: a debug line is logged
 * for it (before the answer) while log.level is debug. */
static void bad_request(const char *hostport)
{
    int fd = sgt_connect(hostport);
    sgt_send_str(fd, "NOT HTTP AT ALL\r\n\r\n");
    char *answer = sgt_recv_all(fd, NULL);
    cr_assert(strstr(answer, " 400 "), "%s", answer);
    free(answer);
    close(fd);
}

/* How many times `needle` is in the log. */
static int log_count(const struct sgt_proc *p, const char *needle)
{
    char *log = sgt_read_file(p->log_path, NULL);
    int n = 0;
    for (const char *s = log; s && (s = strstr(s, needle)) != NULL; s += strlen(needle))
        n++;
    free(log);
    return n;
}

/* log.level set in the file (no --log-level flag, which would win) follows the file on a
 * reload: debug lines appear once it says debug, and stop once it says info again. */
Test(reload, the_log_level_in_the_file_changes_live, .timeout = 60)
{
    static const char *const debug_line = "\"msg\":\"http parse error\"";
    static const char base[] = "{\"log\": {\"level\": \"%s\", \"bad_input_interval\": 0}}";
    char text[128];
    struct cfgdir c;
    struct sgt_proc p;
    struct sgt_start_opts opts = {.no_log_level = true};
    snprintf(text, sizeof(text), base, "info");
    start_with(&c, &p, text, NULL, &opts);
    pid_t pid = p.pid;
    bad_request(p.http);
    cr_assert_eq(log_count(&p, debug_line), 0, "a debug line at level info");

    snprintf(text, sizeof(text), base, "debug");
    write_file(c.path, text);
    hup(&p, APPLIED, 1);
    bad_request(p.http);
    cr_assert_eq(log_count(&p, debug_line), 1, "no debug line at level debug");

    snprintf(text, sizeof(text), base, "info");
    write_file(c.path, text);
    hup(&p, APPLIED, 2);
    bad_request(p.http);
    cr_assert_eq(log_count(&p, debug_line), 1, "a debug line after going back to info");
    cr_assert_eq(p.pid, pid);
    cr_assert_eq(kill(pid, 0), 0, "the process is gone");
    cr_assert_eq(log_count(&p, "\"changed\":\"log.level\""), 2);
    sgt_stop_ok(&p);
    cfg_remove(&c);
}

/* Posts `n` events in a row, each on its own connection; returns how many got 429. */
static int posts_limited(const char *hostport, int n)
{
    int limited = 0;
    for (int i = 0; i < n; i++) {
        int status = post_key(hostport, "rate");
        cr_assert(status == 202 || status == 429, "status %d", status);
        limited += status == 429;
    }
    return limited;
}

/* http.rate_limit follows the file: lowered, a client's burst past it gets 429; raised again,
 * the same burst goes through. */
Test(reload, the_rate_limit_changes_live, .timeout = 60)
{
    struct cfgdir c;
    struct sgt_proc p;
    start_with(&c, &p, "{\"http\": {\"rate_limit\": 0}}", NULL, NULL);
    pid_t pid = p.pid;
    cr_assert_eq(posts_limited(p.http, 10), 0, "429 without a rate limit");

    /* One request a second, no burst above it: ten in a row cannot all pass. */
    write_file(c.path, "{\"http\": {\"rate_limit\": 1, \"rate_burst\": 1}}");
    hup(&p, APPLIED, 1);
    cr_assert_geq(posts_limited(p.http, 10), 5, "too few 429 at 1 request a second");
    cr_assert_geq(sgt_metric(p.http, "streamgate_limit_hits_total{limit=\"http_rate\"}"), 5);

    write_file(c.path, "{\"http\": {\"rate_limit\": 100000}}");
    hup(&p, APPLIED, 2);
    cr_assert_eq(posts_limited(p.http, 10), 0, "429 after the rate limit was raised");
    cr_assert_eq(p.pid, pid);
    sgt_stop_ok(&p);
    cfg_remove(&c);
}
