/* The aggregator's input: one librdkafka consumer of kafka.raw_topic in group kafka.group_id,
 * driven from the loop like the producer. The consumer queue's IO event
 * (rd_kafka_queue_io_event_enable) writes to a non-blocking pipe watched by a uv_poll_t; each
 * wake-up consumes with timeout 0, at most KAFKA_SOURCE_BATCH records per loop turn, and asks
 * for another turn while records remain. Nothing on the loop blocks: the committed offsets and
 * their metadata are fetched on the loop's thread pool when partitions are assigned.
 *
 * Each record is decoded by the event decoder ingest uses (its key is the record key; without a
 * time field, the gateway's received-at header stands for the arrival time) and handed to the
 * streams engine as a record of its partition. Offsets are committed by hand
 * (enable.auto.commit=false), asynchronously, every KAFKA_SOURCE_COMMIT_MS and on revocation:
 * per partition up to the first record still held in an open window or in a result not yet
 * confirmed by every results writer, with the partition's written mark and time in the
 * commit's metadata, so that the next owner rebuilds exactly the windows that were not written
 * and skips the records of those that were. */
#ifndef STREAMGATE_KAFKA_SOURCE_H
#define STREAMGATE_KAFKA_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct sg_budget;
struct sg_buf;
struct sg_config;
struct sg_log;
struct sg_metrics;
struct sg_sink_done;
struct sg_streams;
struct sg_window_result;
struct sg_kafka_source;

/* Creates the consumer for `bootstrap` and subscribes to cfg->kafka_raw_topic. Consumer
 * defaults: group.id=cfg->kafka_group_id, enable.auto.commit=false, auto.offset.reset=earliest,
 * session.timeout.ms=6000, heartbeat.interval.ms=2000; cfg->kafka_rdkafka overrides any of
 * them. Records go to `streams` (which must outlive the source). Returns 0 or a negative code
 * with a message in errstr. */
int sg_kafka_source_create(uv_loop_t *loop, const struct sg_config *cfg, const char *bootstrap,
                           struct sg_streams *streams, struct sg_budget *budget,
                           struct sg_metrics *metrics, struct sg_log *log,
                           struct sg_kafka_source **out, char *errstr, size_t errstr_size);

/* Checks the consumer's configuration as sg_kafka_source_create would build it, with
 * librdkafka itself (a consumer without brokers is created and destroyed). Returns 0 or
 * -EINVAL with librdkafka's message in errstr. */
int sg_kafka_source_check_config(const struct sg_config *cfg, char *errstr, size_t errstr_size);

/* True once the member has its assignment (and has not failed for good). */
bool sg_kafka_source_ready(const struct sg_kafka_source *src);

/* A window result of the engine is about to go to the writers: returns the notice to hand them
 * (NULL when it is not the source's to follow, or out of memory: then it is not waited for).
 * Once the writers took it, sg_kafka_source_result_taken says how many (each calls it back
 * exactly once; a negative count is taken as none). */
struct sg_sink_done *sg_kafka_source_result(struct sg_kafka_source *src,
                                            const struct sg_window_result *res);
void sg_kafka_source_result_taken(struct sg_kafka_source *src, struct sg_sink_done *done,
                                  int taken);

/* Shutdown, first step: stops taking records (they stay uncommitted for the next owner). */
void sg_kafka_source_stop(struct sg_kafka_source *src);
/* Second step, once the writers drained: commits what they confirmed and leaves the group
 * (rd_kafka_consumer_close_queue, served from the loop), then calls `cb` on the loop. */
void sg_kafka_source_close(struct sg_kafka_source *src, void (*cb)(void *arg), void *arg);
/* The shutdown deadline passed during the close: stops waiting for it and releases the loop's
 * handles; `cb` is not called. */
void sg_kafka_source_abandon(struct sg_kafka_source *src);
/* Frees the consumer (without leaving the group when the close did not finish). */
void sg_kafka_source_destroy(struct sg_kafka_source *src);

/* Appends {"topic":..,"group":..,"ready":bool,"partitions":[N,...],"consumed":N,
 * "skipped":N,"commits":N} for /v1/info. */
int sg_kafka_source_info(const struct sg_kafka_source *src, struct sg_buf *out);

#endif
