/* The Kafka writer: one librdkafka producer driven from the loop. Delivery reports come back
 * through the main queue's IO event (rd_kafka_queue_io_event_enable) on a non-blocking pipe
 * watched by a uv_poll_t, drained with rd_kafka_poll(rk, 0), plus a slow timer as a safety net.
 * Produce never blocks and never drops: when librdkafka's local queue is full
 * (RD_KAFKA_RESP_ERR__QUEUE_FULL) the record waits, in order, in the writer's own backlog and
 * is produced as delivery reports make room. Every byte held (librdkafka's queue and the
 * backlog) is charged to the memory budget, whose high watermark is what pushes back on
 * clients. A record counts as delivered only when its delivery report says so. */
#ifndef STREAMGATE_SINK_KAFKA_H
#define STREAMGATE_SINK_KAFKA_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct sg_budget;
struct sg_config;
struct sg_dead_letter;
struct sg_log;
struct sg_metrics;
struct sg_sink;

/* Creates the producer for `bootstrap` (a broker list) with the topics and properties of
 * cfg->kafka_*. Producer defaults: enable.idempotence=true, acks=all, compression.type=lz4,
 * linger.ms=5, partitioner=murmur2_random, and queue.buffering.max.kbytes/.messages derived
 * from the budget's limit; cfg->kafka_rdkafka overrides any of them. `budget` may be NULL (no
 * accounting). Records whose delivery fails for good go to `dead_letter` (NULL: counted and
 * logged only). Returns 0 or a negative code with a message (naming the bad property, if any)
 * in errstr. Its `info` op renders {"bootstrap":..,"queue_messages":N,"queue_bytes":N,
 * "backlog":N,"delivered":N,"failed":N,"healthy":bool}. */
int sg_sink_kafka_create(uv_loop_t *loop, const struct sg_config *cfg, const char *bootstrap,
                         struct sg_budget *budget, struct sg_dead_letter *dead_letter,
                         struct sg_metrics *metrics, struct sg_log *log, struct sg_sink **out,
                         char *errstr, size_t errstr_size);

/* Checks the producer's configuration as sg_sink_kafka_create would build it (defaults, the
 * queue caps derived from limits.memory, cfg->kafka_rdkafka) with librdkafka itself: each
 * property is set with rd_kafka_conf_set, then a producer without brokers is created and
 * destroyed, which checks them against each other and connects to nothing. For --check-config
 * and start-up, whether or not Kafka is on. Returns 0, or -EINVAL with librdkafka's message,
 * naming the property, in errstr. */
int sg_sink_kafka_check_config(const struct sg_config *cfg, char *errstr, size_t errstr_size);

/* Produces a record another writer gave up on to the late topic, with headers `reason`
 * (`code`), `sink` (`source`), `message` and `content-type`. Returns 0, -ENOENT when the late
 * topic is off, or the produce error. */
int sg_sink_kafka_dead_letter(struct sg_sink *sink, const char *source, const char *key,
                              size_t key_len, const char *code, const char *message,
                              const char *record, size_t record_len);

/* Shared with the aggregator's consumer (src/ingest/kafka_source.c), one librdkafka client's
 * configuration and log like the other's. */
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_s rd_kafka_t;
struct sg_strlist;
/* rd_kafka_conf_set with librdkafka's message, prefixed "kafka.rdkafka: ", in errstr. Returns 0
 * or -EINVAL. */
int sg_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                      size_t errstr_size);
/* Sets every "name=value" of `props` (kafka.rdkafka). Returns 0 or -EINVAL. */
int sg_kafka_conf_apply(rd_kafka_conf_t *conf, const struct sg_strlist *props, char *errstr,
                        size_t errstr_size);
/* A librdkafka log line (syslog level) as one of ours. */
void sg_kafka_log(struct sg_log *log, int level, const char *fac, const char *buf);
typedef struct rd_kafka_queue_s rd_kafka_queue_t;
/* A librdkafka queue waking the loop: the queue writes a byte into a non-blocking pipe when it
 * becomes non-empty (rd_kafka_queue_io_event_enable), and a uv_poll_t on the read end empties
 * the pipe and calls `cb`. The owner embeds it and finds itself with sg_container_of. */
struct sg_kafka_wake {
    int pipefd[2];
    rd_kafka_queue_t *queue;
    uv_poll_t poll;
    bool poll_init; /* the poll handle needs uv_close */
    void (*cb)(struct sg_kafka_wake *wake);
};
/* No pipe, no queue: release is a no-op until open. */
void sg_kafka_wake_init(struct sg_kafka_wake *wake);
/* The pipe, the queue's IO event and the poll handle (not started). Returns 0, or a negative
 * errno / libuv code with the reason, prefixed by `who`, in errstr. */
int sg_kafka_wake_open(struct sg_kafka_wake *wake, uv_loop_t *loop, rd_kafka_queue_t *queue,
                       const char *who, char *errstr, size_t errstr_size);
/* Starts watching the pipe; `cb` runs on the loop whenever the queue has something. */
int sg_kafka_wake_start(struct sg_kafka_wake *wake, void (*cb)(struct sg_kafka_wake *wake));
/* After the poll handle is closed (or never opened): turns the IO event off and closes the
 * pipe. The queue stays the caller's. */
void sg_kafka_wake_release(struct sg_kafka_wake *wake);
/* A log callback that drops everything, for the configuration checks' clients. */
void sg_kafka_log_discard(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

#endif
