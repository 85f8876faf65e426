/* Integration tests for the raw TCP listener: the real binary, real sockets, and the output file
 * and /metrics read back as a client would. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define WAIT_MS 10000

/* A growable text buffer for building inputs and expected outputs. */
struct text {
    char *data;
    size_t len, cap;
};

static void text_add(struct text *t, const void *p, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->data = realloc(t->data, t->cap);
        cr_assert_not_null(t->data);
    }
    memcpy(t->data + t->len, p, n);
    t->len += n;
    t->data[t->len] = '\0';
}

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(struct text *t, const char *fmt, ...)
{
    char tmp[4096];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    cr_assert(n >= 0 && (size_t)n < sizeof(tmp));
    text_add(t, tmp, (size_t)n);
}

static double tcp_metric(struct sgt_proc *p, const char *name)
{
    char series[256];

    snprintf(series, sizeof(series), "%s{transport=\"tcp\"}", name);
    return sgt_metric(p->http, series);
}

static double wait_tcp_metric(struct sgt_proc *p, const char *name, double want)
{
    char series[256];

    snprintf(series, sizeof(series), "%s{transport=\"tcp\"}", name);
    return sgt_wait_metric(p->http, series, want, WAIT_MS);
}

static double rejected(struct sgt_proc *p, const char *reason)
{
    char series[256];

    snprintf(series, sizeof(series),
             "streamgate_events_rejected_total{transport=\"tcp\",reason=\"%s\"}", reason);
    return sgt_metric(p->http, series);
}

static double wait_rejected(struct sgt_proc *p, const char *reason, double want)
{
    char series[256];

    snprintf(series, sizeof(series),
             "streamgate_events_rejected_total{transport=\"tcp\",reason=\"%s\"}", reason);
    return sgt_wait_metric(p->http, series, want, WAIT_MS);
}

static double limit_hits(struct sgt_proc *p, const char *limit)
{
    char series[256];

    snprintf(series, sizeof(series), "streamgate_limit_hits_total{limit=\"%s\"}", limit);
    return sgt_metric(p->http, series);
}

static double wait_limit_hits(struct sgt_proc *p, const char *limit, double want)
{
    char series[256];

    snprintf(series, sizeof(series), "streamgate_limit_hits_total{limit=\"%s\"}", limit);
    return sgt_wait_metric(p->http, series, want, WAIT_MS);
}

/* Waits for `lines` lines in the output file and checks the file is exactly `want`. */
static void expect_output(struct sgt_proc *p, const char *want)
{
    size_t lines = 0;
    char *got;

    for (const char *c = want; (c = strchr(c, '\n')); c++)
        lines++;
    cr_assert_eq(sgt_wait_lines(p->out_path, lines, WAIT_MS), lines);
    got = sgt_read_file(p->out_path, NULL);
    cr_assert_not_null(got);
    cr_assert_str_eq(got, want);
    free(got);
}

Test(tcp, many_lines_in_one_send)
{
    struct sgt_proc p;
    struct text in = {0};
    int fd;

    sgt_start(&p, NULL, NULL);
    cr_assert_eq(tcp_metric(&p, "streamgate_events_received_total"), 0);
    for (int i = 0; i < 200; i++)
        text_printf(&in, "{\"key\":\"dev%d\",\"seq\":%d,\"v\":%d.5}\n", i % 7, i, i);
    fd = sgt_connect(p.tcp);
    sgt_send_all(fd, in.data, in.len);
    expect_output(&p, in.data);
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_events_accepted_total", 200), 200);
    cr_assert_eq(tcp_metric(&p, "streamgate_events_received_total"), 200);
    cr_assert_eq(tcp_metric(&p, "streamgate_bytes_received_total"), (double)in.len);
    cr_assert_eq(sgt_metric(p.http, "streamgate_events_received_total{transport=\"http\"}"), 0);
    close(fd);
    free(in.data);
    sgt_stop_ok(&p);
}

Test(tcp, lines_split_at_odd_positions)
{
    static const size_t steps[] = {1, 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31};
    struct sgt_proc p;
    struct text in = {0};
    size_t pos = 0, k = 0;
    int fd;

    sgt_start(&p, NULL, NULL);
    for (int i = 0; i < 60; i++)
        text_printf(&in, "{\"key\":\"split\",\"seq\":%d,\"pad\":\"%.*s\"}%s\n", i, i % 40,
                    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", i % 3 ? "" : " ");
    fd = sgt_connect(p.tcp);
    while (pos < in.len) {
        size_t n = steps[k++ % (sizeof(steps) / sizeof(steps[0]))];

        if (n > in.len - pos)
            n = in.len - pos;
        sgt_send_all(fd, in.data + pos, n);
        pos += n;
        sgt_sleep_ms(2);
    }
    /* The file sink writes each event's raw bytes, so trailing spaces are trimmed. */
    struct text want = {0};
    for (int i = 0; i < 60; i++)
        text_printf(&want, "{\"key\":\"split\",\"seq\":%d,\"pad\":\"%.*s\"}\n", i, i % 40,
                    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
    expect_output(&p, want.data);
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_events_accepted_total", 60), 60);
    close(fd);
    free(in.data);
    free(want.data);
    sgt_stop_ok(&p);
}

Test(tcp, ten_thousand_lines_arrive_in_order, .timeout = 120)
{
    struct sgt_proc p;
    struct text in = {0};
    int fd;

    sgt_start(&p, NULL, NULL);
    for (int i = 0; i < 10000; i++)
        text_printf(&in, "{\"key\":\"ordered\",\"seq\":%d}\n", i);
    fd = sgt_connect(p.tcp);
    sgt_send_all(fd, in.data, in.len);
    close(fd);
    expect_output(&p, in.data);
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_events_accepted_total", 10000), 10000);
    cr_assert_eq(tcp_metric(&p, "streamgate_events_received_total"), 10000);
    free(in.data);
    sgt_stop_ok(&p);
}

Test(tcp, concurrent_connections_keep_their_own_order)
{
    enum { NCONN = 8, NLINES = 250 };
    struct sgt_proc p;
    int fds[NCONN];
    int next_seq[NCONN] = {0};
    char *got;
    size_t total = 0;

    sgt_start(&p, NULL, NULL);
    for (int c = 0; c < NCONN; c++)
        fds[c] = sgt_connect(p.tcp);
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_connections", NCONN), NCONN);
    /* Every connection gets the first half of its batch before any gets the second, so the
     * server holds a partial line for several peers at once. */
    for (int i = 0; i < NLINES; i += 10) {
        struct text t[NCONN];

        memset(t, 0, sizeof(t));
        for (int c = 0; c < NCONN; c++) {
            for (int j = i; j < i + 10; j++)
                text_printf(&t[c], "{\"key\":\"conn%d\",\"seq\":%d}\n", c, j);
            sgt_send_all(fds[c], t[c].data, t[c].len / 2);
        }
        sgt_sleep_ms(1);
        for (int c = 0; c < NCONN; c++) {
            sgt_send_all(fds[c], t[c].data + t[c].len / 2, t[c].len - t[c].len / 2);
            free(t[c].data);
        }
    }
    for (int c = 0; c < NCONN; c++)
        close(fds[c]);
    cr_assert_eq(sgt_wait_lines(p.out_path, NCONN * NLINES, WAIT_MS), NCONN * NLINES);
    got = sgt_read_file(p.out_path, NULL);
    cr_assert_not_null(got);
    for (char *line = got; *line;) {
        char *nl = strchr(line, '\n');
        int c, seq;

        cr_assert_not_null(nl);
        cr_assert_eq(sscanf(line, "{\"key\":\"conn%d\",\"seq\":%d}", &c, &seq), 2, "line: %.*s",
                     (int)(nl - line), line);
        cr_assert(c >= 0 && c < NCONN);
        cr_assert_eq(seq, next_seq[c], "connection %d: seq %d after %d", c, seq, next_seq[c]);
        next_seq[c]++;
        total++;
        line = nl + 1;
    }
    cr_assert_eq(total, NCONN * NLINES);
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_connections", 0), 0);
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_connections_accepted_total", NCONN), NCONN);
    free(got);
    sgt_stop_ok(&p);
}

Test(tcp, invalid_json_line_does_not_end_the_connection)
{
    struct sgt_proc p;
    int fd;

    sgt_start(&p, NULL, NULL);
    fd = sgt_connect(p.tcp);
    sgt_send_str(fd, "{\"key\":\"a\",\"n\":1}\n{\"key\": oops\n{\"key\":\"b\",\"n\":2}\n");
    cr_assert_eq(wait_rejected(&p, "invalid_json", 1), 1);
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_events_accepted_total", 2), 2);
    /* Same connection, later: still read. */
    sgt_send_str(fd, "{\"key\":\"c\",\"n\":3}\n");
    expect_output(&p,
                  "{\"key\":\"a\",\"n\":1}\n{\"key\":\"b\",\"n\":2}\n{\"key\":\"c\",\"n\":3}\n");
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_events_accepted_total", 3), 3);
    cr_assert_eq(tcp_metric(&p, "streamgate_events_received_total"), 4);
    cr_assert_eq(tcp_metric(&p, "streamgate_connections"), 1);
    close(fd);
    sgt_stop_ok(&p);
}

Test(tcp, binary_junk_is_rejected_and_the_stream_goes_on)
{
    static const char junk1[] = "\x00\x01\x02\xff\xfe garbage \x00\x00\n";
    static const char nul_in_string[] = "{\"key\":\"a\x00z\"}\n";
    struct sgt_proc p;
    unsigned char noise[3000];
    unsigned x = 12345;
    int fd;

    sgt_start(&p, NULL, NULL);
    fd = sgt_connect(p.tcp);
    sgt_send_str(fd, "{\"key\":\"first\"}\n");
    sgt_send_all(fd, junk1, sizeof(junk1) - 1);
    sgt_send_all(fd, nul_in_string, sizeof(nul_in_string) - 1);
    /* Pseudo-random bytes without a newline, then one to end the line. */
    for (size_t i = 0; i < sizeof(noise); i++) {
        x = x * 1103515245u + 12345u;
        noise[i] = (unsigned char)(x >> 16);
        if (noise[i] == '\n')
            noise[i] = 0;
    }
    sgt_send_all(fd, noise, sizeof(noise));
    sgt_send_str(fd, "\n{\"key\":\"last\"}\n");
    expect_output(&p, "{\"key\":\"first\"}\n{\"key\":\"last\"}\n");
    cr_assert_eq(wait_rejected(&p, "invalid_json", 3), 3);
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_events_received_total", 5), 5);
    cr_assert_eq(tcp_metric(&p, "streamgate_events_accepted_total"), 2);
    close(fd);
    sgt_stop_ok(&p);
}

Test(tcp, line_over_the_limit_is_skipped)
{
    static const char *const args[] = {"--tcp-max-line-size", "1024", NULL};
    struct sgt_proc p;
    struct text big = {0};
    int fd;

    sgt_start(&p, args, NULL);
    text_add(&big, "{\"key\":\"big\",\"pad\":\"", 20);
    for (int i = 0; i < 5000; i++)
        text_add(&big, "x", 1);
    text_add(&big, "\"}\n", 3);

    fd = sgt_connect(p.tcp);
    sgt_send_str(fd, "{\"key\":\"before\"}\n");
    sgt_send_all(fd, big.data, big.len);
    sgt_send_str(fd, "{\"key\":\"after\"}\n");
    /* A long line arriving in pieces is skipped just the same. */
    for (size_t off = 0; off < big.len; off += 700) {
        size_t n = big.len - off < 700 ? big.len - off : 700;

        sgt_send_all(fd, big.data + off, n);
        sgt_sleep_ms(2);
    }
    sgt_send_str(fd, "{\"key\":\"end\"}\n");
    expect_output(&p, "{\"key\":\"before\"}\n{\"key\":\"after\"}\n{\"key\":\"end\"}\n");
    cr_assert_eq(wait_rejected(&p, "line_too_long", 2), 2);
    cr_assert_eq(wait_limit_hits(&p, "tcp_line_size", 2), 2);
    cr_assert_eq(tcp_metric(&p, "streamgate_events_accepted_total"), 3);
    cr_assert_eq(tcp_metric(&p, "streamgate_events_received_total"), 5);
    close(fd);
    free(big.data);
    sgt_stop_ok(&p);
}

Test(tcp, final_line_without_newline_is_ingested_at_eof)
{
    struct sgt_proc p;
    int fd;

    sgt_start(&p, NULL, NULL);
    fd = sgt_connect(p.tcp);
    sgt_send_str(fd, "{\"key\":\"a\"}\n{\"key\":\"no-newline\"}");
    shutdown(fd, SHUT_WR);
    expect_output(&p, "{\"key\":\"a\"}\n{\"key\":\"no-newline\"}\n");
    cr_assert(sgt_wait_closed(fd, WAIT_MS), "the server closes after EOF");
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_connections", 0), 0);
    close(fd);
    sgt_stop_ok(&p);
}

Test(tcp, crlf_lines)
{
    struct sgt_proc p;
    int fd;

    sgt_start(&p, NULL, NULL);
    fd = sgt_connect(p.tcp);
    sgt_send_str(fd, "{\"key\":\"a\"}\r\n\r\n{\"key\":\"b\"}\r");
    sgt_sleep_ms(20);
    sgt_send_str(fd, "\n{\"key\":\"c\"}\r\n");
    expect_output(&p, "{\"key\":\"a\"}\n{\"key\":\"b\"}\n{\"key\":\"c\"}\n");
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_events_accepted_total", 3), 3);
    cr_assert_eq(tcp_metric(&p, "streamgate_events_received_total"), 3,
                 "blank lines are no events");
    close(fd);
    sgt_stop_ok(&p);
}

Test(tcp, idle_connection_is_closed)
{
    static const char *const args[] = {"--tcp-idle-timeout", "300ms", NULL};
    struct sgt_proc p;
    int64_t start, elapsed;
    int fd;

    sgt_start(&p, args, NULL);
    cr_assert_eq(limit_hits(&p, "tcp_idle_timeout"), 0);
    fd = sgt_connect(p.tcp);
    /* Activity pushes the deadline back. */
    for (int i = 0; i < 6; i++) {
        sgt_sleep_ms(100);
        sgt_send_str(fd, "{\"key\":\"alive\"}\n");
    }
    /* A line the peer left unfinished still counts when the server closes the connection. */
    sgt_send_str(fd, "{\"key\":\"unfinished\"}");
    start = sgt_mono_ms();
    cr_assert(sgt_wait_closed(fd, 5000), "an idle connection is closed");
    elapsed = sgt_mono_ms() - start;
    cr_assert_geq(elapsed, 200, "closed after %lld ms, before the timeout", (long long)elapsed);
    cr_assert_eq(wait_limit_hits(&p, "tcp_idle_timeout", 1), 1);
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_connections", 0), 0);
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_events_accepted_total", 7), 7);
    cr_assert_eq(sgt_wait_lines(p.out_path, 7, WAIT_MS), 7);
    char *got = sgt_read_file(p.out_path, NULL);
    cr_assert_not_null(got);
    cr_assert_not_null(strstr(got, "{\"key\":\"unfinished\"}\n"), "output: %s", got);
    free(got);
    close(fd);
    sgt_stop_ok(&p);
}

Test(tcp, connections_over_the_limit_are_closed)
{
    static const char *const args[] = {"--tcp-max-connections", "1", NULL};
    struct sgt_proc p;
    int fd1, fd2, fd3;

    sgt_start(&p, args, NULL);
    fd1 = sgt_connect(p.tcp);
    sgt_send_str(fd1, "{\"key\":\"one\"}\n");
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_events_accepted_total", 1), 1);

    fd2 = sgt_connect(p.tcp); /* the kernel completes the handshake; the server then closes */
    cr_assert(sgt_wait_closed(fd2, 5000), "the second connection is closed at once");
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_connections_rejected_total", 1), 1);
    cr_assert_eq(limit_hits(&p, "tcp_connections"), 1);
    cr_assert_eq(tcp_metric(&p, "streamgate_connections"), 1);

    /* The first connection is unaffected. */
    sgt_send_str(fd1, "{\"key\":\"two\"}\n");
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_events_accepted_total", 2), 2);
    close(fd1);
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_connections", 0), 0);

    /* Once it is gone there is room again. */
    fd3 = sgt_connect(p.tcp);
    sgt_send_str(fd3, "{\"key\":\"three\"}\n");
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_events_accepted_total", 3), 3);
    expect_output(&p, "{\"key\":\"one\"}\n{\"key\":\"two\"}\n{\"key\":\"three\"}\n");
    cr_assert_eq(tcp_metric(&p, "streamgate_connections_rejected_total"), 1);
    close(fd2);
    close(fd3);
    sgt_stop_ok(&p);
}

Test(tcp, sigterm_keeps_data_from_open_connections)
{
    char out[] = "/tmp/sgt-tcp-out-XXXXXX";
    const char *args[] = {"--output-file", out, NULL};
    struct sgt_proc p;
    int fd, tmp;
    char *got;

    /* The output lives outside the run's directory, which sgt_stop removes. */
    tmp = mkstemp(out);
    cr_assert_geq(tmp, 0);
    close(tmp);
    sgt_start(&p, args, NULL);
    fd = sgt_connect(p.tcp);
    sgt_send_str(fd, "{\"key\":\"a\"}\n{\"key\":\"b\"}\n{\"key\":\"pending\"}");
    /* Both complete lines were read, so the pending one sits in the connection's framer. */
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_events_received_total", 2), 2);
    sgt_stop_ok(&p);
    got = sgt_read_file(out, NULL);
    unlink(out);
    cr_assert_not_null(got);
    cr_assert_str_eq(got, "{\"key\":\"a\"}\n{\"key\":\"b\"}\n{\"key\":\"pending\"}\n");
    free(got);
    close(fd);
}

Test(tcp, metric_values_by_reason)
{
    static const char *const args[] = {"--tcp-max-line-size", "200", "--event-max-key-size", "8",
                                       NULL};
    struct sgt_proc p;
    struct text in = {0};
    int fd;

    sgt_start(&p, args, NULL);
    text_printf(&in, "{\"key\":\"ok1\",\"ts\":1700000000000}\n");
    text_printf(&in, "not json at all\n");
    text_printf(&in, "{\"key\":\"ok2\",\"ts\":\"2024-11-24T15:33:20Z\"}\n");
    text_printf(&in, "[1,2,3]\n");
    text_printf(&in, "{\"key\":\"a\"}{\"key\":\"b\"}\n");
    text_printf(&in, "{\"value\":1}\n");
    text_printf(&in, "{\"key\":\"123456789\"}\n");
    text_printf(&in, "{\"key\":\"x\",\"ts\":\"tomorrow\"}\n");
    text_printf(&in, "{\"key\":\"%0300d\"}\n", 0);
    text_printf(&in, "{\"id\":42}\n");

    fd = sgt_connect(p.tcp);
    sgt_send_all(fd, in.data, in.len);
    cr_assert_eq(wait_tcp_metric(&p, "streamgate_events_received_total", 10), 10);
    cr_assert_eq(tcp_metric(&p, "streamgate_events_accepted_total"), 3);
    cr_assert_eq(rejected(&p, "invalid_json"), 2);
    cr_assert_eq(rejected(&p, "not_object"), 1);
    cr_assert_eq(rejected(&p, "missing_key"), 1);
    cr_assert_eq(rejected(&p, "key_too_long"), 1);
    cr_assert_eq(rejected(&p, "bad_timestamp"), 1);
    cr_assert_eq(rejected(&p, "line_too_long"), 1);
    cr_assert_eq(rejected(&p, "sink_failed"), 0);
    cr_assert_eq(limit_hits(&p, "tcp_line_size"), 1);
    cr_assert_eq(tcp_metric(&p, "streamgate_bytes_received_total"), (double)in.len);
    expect_output(&p, "{\"key\":\"ok1\",\"ts\":1700000000000}\n"
                      "{\"key\":\"ok2\",\"ts\":\"2024-11-24T15:33:20Z\"}\n"
                      "{\"id\":42}\n");
    close(fd);
    free(in.data);
    sgt_stop_ok(&p);
}

Test(tcp, rejections_are_logged_with_the_reason)
{
    struct sgt_proc p;
    int fd;
    char *log;

    sgt_start(&p, NULL, NULL);
    fd = sgt_connect(p.tcp);
    sgt_send_str(fd, "this is not json\n");
    cr_assert_eq(wait_rejected(&p, "invalid_json", 1), 1);
    log = sgt_read_file(p.log_path, NULL);
    cr_assert_not_null(log);
    cr_assert_not_null(strstr(log, "\"msg\":\"event rejected\""), "log: %s", log);
    cr_assert_not_null(strstr(log, "\"reason\":\"invalid_json\""), "log: %s", log);
    cr_assert_not_null(strstr(log, "\"input\":\"this is not json\""), "log: %s", log);
    free(log);
    close(fd);
    sgt_stop_ok(&p);
}
