/* The Tablestore reader's failures say what happened. Against a server that takes connections
 * and never answers, with one connection allowed, the first read times out waiting for its
 * answer, and the second, which never got the connection, says so, instead of libcurl's
 * "Connection timed out after 0 milliseconds". */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "curl_uv.h"
#include "streamgate/metrics.h"
#include "streamgate/tablestore_reader.h"
#include "tablestore_internal.h"

struct outcome {
    bool done;
    enum sg_ts_read_outcome outcome;
    char message[512];
};

static void on_read(void *arg, enum sg_ts_read_outcome outcome, const char *code,
                    const char *message, const void *body, size_t len)
{
    struct outcome *o = arg;
    (void)code, (void)body, (void)len;
    o->done = true;
    o->outcome = outcome;
    snprintf(o->message, sizeof(o->message), "%s", message);
}

Test(tablestore_reader, a_read_that_waited_for_a_connection_says_so)
{
    /* Listening, never accepting: the kernel completes the connection, nobody answers. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(fd, 8), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    char endpoint[64];
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", ntohs(sa.sin_port));

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sg_curl_uv *curl;
    cr_assert_eq(sg_curl_uv_create(&loop, 1, &curl), 0);
    struct sg_metrics *m = sg_metrics_create();
    cr_assert_not_null(m);
    struct sg_ts_creds creds = {
        .endpoint = endpoint, .instance = "i", .akid = "id", .secret = "secret", .sts_token = ""};
    struct sg_ts_reader_conf conf = {.loop = &loop,
                                     .curl = curl,
                                     .creds = &creds,
                                     .results_table = "results",
                                     .index_shards = 1,
                                     .backoff_ms = 50,
                                     .backoff_max_ms = 100};
    struct sg_ts_reader r;
    cr_assert_eq(sg_ts_reader_init(&r, &conf, m), 0);
    struct outcome first = {0}, second = {0};
    struct sg_ts_read *rd;
    cr_assert_eq(sg_ts_reader_call(&r, "GetRange", "x", 1, 1000, on_read, &first, &rd), 0);
    cr_assert_eq(sg_ts_reader_call(&r, "GetRange", "y", 1, 1000, on_read, &second, &rd), 0);
    while (!(first.done && second.done))
        uv_run(&loop, UV_RUN_ONCE);

    cr_assert_eq(first.outcome, SG_TS_READ_UNAVAILABLE);
    cr_assert_eq(second.outcome, SG_TS_READ_UNAVAILABLE);
    /* Which of the two got the connection is libcurl's choice: one of each. */
    bool first_waited = strstr(first.message, "no connection before its deadline") != NULL;
    bool second_waited = strstr(second.message, "no connection before its deadline") != NULL;
    cr_assert(first_waited != second_waited, "first: %s; second: %s", first.message,
              second.message);
    const char *sent = first_waited ? second.message : first.message;
    cr_assert(strstr(sent, "after 0 milliseconds") == NULL && strstr(sent, "timed out") != NULL,
              "the read that was sent: %s", sent);
    cr_assert_not_null(
        strstr(first_waited ? first.message : second.message, "tablestore.max_in_flight"));

    sg_ts_reader_close(&r);
    sg_curl_uv_close(curl);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
    sg_metrics_destroy(m);
    close(fd);
}
