/* Hashes: Kafka's murmur2 (so a key lands on the partition a Java producer's default
 * partitioner would pick), and a fast 64-bit hash for in-memory tables and sketches. */
#ifndef STREAMGATE_HASH_H
#define STREAMGATE_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), seed 0x9747b28c, as a signed
 * 32-bit value like Java's int. */
int32_t sg_kafka_murmur2(const void *key, size_t len);
/* The partition Kafka's default partitioner picks for a keyed record:
 * toPositive(murmur2(key)) % partitions. `partitions` must be > 0. */
int32_t sg_kafka_partition(const void *key, size_t len, int32_t partitions);
/* A well-mixed 64-bit hash of arbitrary bytes (not for security). */
uint64_t sg_hash64(const void *data, size_t len, uint64_t seed);

#endif
