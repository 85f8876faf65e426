/* The corpus of bad input (README, "Bad input"), in one place for the plain-text tests
 * (test_hostile.c) and the TLS ones (test_tls.c): both run exactly these cases through the same
 * driver, so a case added here is run over both. The driver talks through a struct sgt_link_ops
 * and does not know whether there is TLS under it. */
#ifndef STREAMGATE_TEST_BAD_INPUT_H
#define STREAMGATE_TEST_BAD_INPUT_H

#include <stdbool.h>
#include <stddef.h>

#include "harness.h"

struct sgt_link_ops {
    const char *name; /* "plain", "tls", ...: named in failure messages */
    const void *arg;  /* for open(): e.g. the client certificate to present */
    /* Connects (and completes the TLS handshake); fails the test when it cannot. Returns the
     * connection, which the other operations take. */
    void *(*open)(const struct sgt_link_ops *ops, const char *hostport);
    /* Sends everything or fails the test. */
    void (*send)(void *l, const void *buf, size_t len);
    /* Reads one HTTP response; 0, or -1 at EOF or after the socket's timeout. */
    int (*response)(void *l, struct sgt_response *r);
    /* True when the server closed the connection within timeout_ms. */
    bool (*closed)(void *l, int timeout_ms);
    void (*close)(void *l);
};

/* Plain TCP, through the harness's socket helpers. */
extern const struct sgt_link_ops sgt_plain_link;

/* Scrapes the gateway's /metrics (plain or HTTPS) for one series; -1 when absent. */
typedef double (*sgt_metric_fn)(const struct sgt_proc *p, const char *series);
/* sgt_metric on p->http: plain HTTP. */
double sgt_plain_metric(const struct sgt_proc *p, const char *series);

/* Options the gateway must be started with for the drivers: every rejected event is logged. */
#define SGT_BAD_INPUT_ARGS "--log-bad-input-interval", "0"

/* Every HTTP case against p->http through `link`: the cases that keep the connection all on one
 * connection, each followed by a good event on it; the others each on a connection of their
 * own, which must be closed after the answer. Then checks that every good event and every
 * accepted event of the corpus arrived in p->out_path and nothing else, and the rejection
 * counters through `metric`. Expects a fresh gateway (its output empty) with the default
 * http.max_body_size, http.max_decoded_size and http.max_header_size. */
void sgt_bad_http_run(const struct sgt_proc *p, const struct sgt_link_ops *link,
                      sgt_metric_fn metric);

/* Every bad NDJSON line against p->tcp on one connection through `link`, a good line between
 * each two: all good lines arrive, each bad one is counted (the same series as plain text) and
 * logged, and the connection is still read afterwards. Expects a fresh gateway started with
 * SGT_BAD_INPUT_ARGS and tcp.max_line_size 1MiB (the default). */
void sgt_bad_tcp_run(const struct sgt_proc *p, const struct sgt_link_ops *link,
                     sgt_metric_fn metric);

#endif
