/* kafka.brokers = "embedded": librdkafka's mock cluster in-process (3 brokers speaking the
 * Kafka protocol on loopback), with the configured topics created, so the gateway runs with no
 * external Kafka and any Kafka client (kcat) can read what it wrote. Its brokers run on
 * librdkafka's own threads. */
#ifndef STREAMGATE_KAFKA_EMBEDDED_H
#define STREAMGATE_KAFKA_EMBEDDED_H

#include <stddef.h>

struct sg_config;
struct sg_kafka_embedded;

/* Starts the cluster and creates cfg's non-empty topics with cfg->kafka_partitions partitions.
 * Returns 0 or a negative code with a message in errstr. */
int sg_kafka_embedded_start(const struct sg_config *cfg, struct sg_kafka_embedded **out,
                            char *errstr, size_t errstr_size);
/* The bootstrap servers, "127.0.0.1:port,...". */
const char *sg_kafka_embedded_bootstrap(const struct sg_kafka_embedded *emb);
/* Stops the cluster. Safe on NULL. Call after the producer is destroyed. */
void sg_kafka_embedded_stop(struct sg_kafka_embedded *emb);

#endif
