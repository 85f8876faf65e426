/* Kafka helpers for the integration tests: a mock cluster (tests/tools/mock_kafka, from
 * $SG_MOCK_KAFKA) in its own process, and topics read back with kcat. */
#ifndef STREAMGATE_TEST_KAFKA_UTIL_H
#define STREAMGATE_TEST_KAFKA_UTIL_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

struct sgt_mock {
    pid_t pid;
    FILE *in;  /* its stdin: commands */
    FILE *out; /* its stdout: bootstrap line, then answers */
    char bootstrap[600];
};

/* Starts a 3-broker mock cluster with `topics` ("a,b") of `partitions` partitions each; fills
 * m->bootstrap. Fails the test on error. The cluster dies with the test process. */
void sgt_mock_start(struct sgt_mock *m, const char *partitions, const char *topics);
/* Sends one command (see tests/tools/mock_kafka.c) and asserts the answer is `ok`. */
void sgt_mock_cmd(struct sgt_mock *m, const char *cmd);
void sgt_mock_stop(struct sgt_mock *m);

struct sgt_rec {
    char *key;
    int partition;
    char *headers; /* "n=v,n=v" */
    char *value;
};

struct sgt_recs {
    struct sgt_rec *v;
    size_t n;
    char *text; /* kcat's output; the fields point into it */
};

/* One pass of kcat over the whole topic, each record printed with kcat's -f `format`, killed
 * after `alarm_s` seconds: returns its stdout (malloc'd); *ok is false when kcat did not exit
 * 0 (it did not get to the end). */
char *sgt_kcat_dump(const char *bootstrap, const char *topic, const char *format, unsigned alarm_s,
                    bool *ok);
/* Reads the whole topic with kcat until it holds at least `want` records or timeout_ms
 * passes. Free with sgt_recs_free. */
void sgt_kcat_read(const char *bootstrap, const char *topic, size_t want, int timeout_ms,
                   struct sgt_recs *out);
void sgt_recs_free(struct sgt_recs *r);
/* The value of header `name` in kcat's "n=v,n=v" rendering, copied into buf; false if absent. */
bool sgt_kafka_header(const char *headers, const char *name, char *buf, size_t len);

#endif
