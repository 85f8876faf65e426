/* A new key's forecast models, read back from its latest stored result in Tablestore, so that a
 * restart or a rebalance goes on forecasting where it was (README "Forecasts and anomalies").
 * The reads go through the Tablestore writer's reader on the loop and never block. */
#ifndef STREAMGATE_QUERY_MODELS_H
#define STREAMGATE_QUERY_MODELS_H

#include <stdbool.h>
#include <stddef.h>

struct sg_budget;
struct sg_config;
struct sg_log;
struct sg_metrics;
struct sg_models;
struct sg_streams;
struct sg_ts_reader;

/* Reads with `reader` (not NULL) from its results table, at most predict.restore_reads at once,
 * with at most predict.restore_queue keys waiting; `budget` (may be NULL) is charged with the
 * waiting keys and the requests. Returns 0 or -ENOMEM. */
int sg_models_create(const struct sg_config *cfg, struct sg_ts_reader *reader,
                     struct sg_budget *budget, struct sg_metrics *metrics, struct sg_log *log,
                     struct sg_models **out);

/* The engine the models go to (sg_streams_restore). Set before the first key arrives. */
void sg_models_set_streams(struct sg_models *mr, struct sg_streams *st);

/* For the engine's key_new callback: queues a read of the key's models. Returns false when none
 * will come (the queue is full: counted as skipped). */
bool sg_models_key_new(struct sg_models *mr, const char *key, size_t key_len);

/* Cancels the reads in progress and frees it; their keys' models start afresh. Safe on NULL. */
void sg_models_destroy(struct sg_models *mr);

#endif
