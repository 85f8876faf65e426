/* A registry of counters, gauges and histograms and its Prometheus text exposition (format
 * 0.0.4). Series are registered once at start-up and updated through the returned pointers,
 * so the hot path is a plain increment. Label sets come from small fixed sets; never register
 * a series per key or per client. Single-threaded: only the loop thread touches it. */
#ifndef STREAMGATE_METRICS_H
#define STREAMGATE_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct sg_buf;
struct sg_metrics;

struct sg_counter {
    uint64_t value;
};

struct sg_gauge {
    double value;
};

struct sg_histogram {
    size_t nbounds;
    const double *bounds; /* upper bounds, ascending; +Inf is implicit */
    uint64_t *buckets;    /* nbounds + 1 cumulative-on-render counts */
    uint64_t count;
    double sum;
};

/* The catalogue: every metric family streamgate exposes, with its name, type, the names of
 * the labels its series may carry (comma-separated, empty for none) and its one help text.
 * Registration names a family by its id (SG_METRIC_ and the name without "streamgate_", in
 * capitals), so a name or a help text is written once, here. README.md's metric table is the
 * output of `streamgate --metrics-markdown`, made from this list. */
#define SG_METRIC_MAP(X)                                                                           \
    X(EVENTS_RECEIVED_TOTAL, "streamgate_events_received_total", COUNTER, "transport",             \
      "Events seen, accepted or rejected.")                                                        \
    X(EVENTS_ACCEPTED_TOTAL, "streamgate_events_accepted_total", COUNTER, "transport",             \
      "Events decoded and handed to every writer.")                                                \
    X(EVENTS_REJECTED_TOTAL, "streamgate_events_rejected_total", COUNTER, "transport,reason",      \
      "Events rejected, by reason.")                                                               \
    X(EVENTS_DECODED_TOTAL, "streamgate_events_decoded_total", COUNTER, "decoder",                 \
      "Accepted events by decoder: flat (the one-pass scanner) or tree (cJSON, for escapes, "      \
      "deep nesting and lenient numbers).")                                                        \
    X(HTTP_REQUESTS_TOTAL, "streamgate_http_requests_total", COUNTER, "code",                      \
      "HTTP responses sent, by status code.")                                                      \
    X(ACK_SECONDS, "streamgate_ack_seconds", HISTOGRAM, "",                                        \
      "With ingest.ack delivered: time from accepting an HTTP ingest request's events to "         \
      "answering it (every writer confirmed them, one failed for good, or http.ack_timeout).")     \
    X(CONNECTIONS, "streamgate_connections", GAUGE, "transport", "Open client connections.")       \
    X(CONNECTIONS_ACCEPTED_TOTAL, "streamgate_connections_accepted_total", COUNTER, "transport",   \
      "Client connections accepted and served.")                                                   \
    X(CONNECTIONS_REJECTED_TOTAL, "streamgate_connections_rejected_total", COUNTER, "transport",   \
      "Connections refused because the transport was at its connection limit.")                    \
    X(BYTES_RECEIVED_TOTAL, "streamgate_bytes_received_total", COUNTER, "transport",               \
      "Bytes read from client connections.")                                                       \
    X(LIMIT_HITS_TOTAL, "streamgate_limit_hits_total", COUNTER, "limit",                           \
      "Requests, connections or events cut off by a limit.")                                       \
    X(TLS_HANDSHAKES_TOTAL, "streamgate_tls_handshakes_total", COUNTER, "transport,result",        \
      "TLS handshakes by outcome: ok (a full handshake), resumed (a session resumed), failed "     \
      "(a protocol error or a refused client certificate) or timeout.")                            \
    X(TLS_ERRORS_TOTAL, "streamgate_tls_errors_total", COUNTER, "transport",                       \
      "TLS connections closed on an error (bad records, failed handshakes, refused client "        \
      "certificates), and TLS files a reload could not read (the certificate in use stays).")      \
    X(LOOP_LAG_SECONDS, "streamgate_loop_lag_seconds", HISTOGRAM, "",                              \
      "How late the event loop ran a 100 ms timer.")                                               \
    X(SINK_RECORDS_TOTAL, "streamgate_sink_records_total", COUNTER, "sink,stream,result",          \
      "Records handed to a writer, by outcome.")                                                   \
    X(SINK_QUEUE_BYTES, "streamgate_sink_queue_bytes", GAUGE, "sink,stream",                       \
      "Bytes accepted by a writer and not yet written.")                                           \
    X(SINK_QUEUE_MESSAGES, "streamgate_sink_queue_messages", GAUGE, "sink",                        \
      "Records accepted by a writer and not yet acknowledged.")                                    \
    X(SINK_DELIVERY_SECONDS, "streamgate_sink_delivery_seconds", HISTOGRAM, "sink",                \
      "Time from handing a record to the writer to its delivery report (Kafka: read from the "     \
      "loop's clock, to the millisecond).")                                                        \
    X(SINK_BACKPRESSURE_TOTAL, "streamgate_sink_backpressure_total", COUNTER, "sink",              \
      "Records a writer held back in its own backlog because its queue was full.")                 \
    X(KEYS_ACTIVE, "streamgate_keys_active", GAUGE, "", "Keys with a stream (open or idle).")      \
    X(WINDOWS_OPEN, "streamgate_windows_open", GAUGE, "", "Windows open, not yet fired.")          \
    X(WINDOWS_FIRED_TOTAL, "streamgate_windows_fired_total", COUNTER, "",                          \
      "Final window results emitted.")                                                             \
    X(WINDOW_UPDATES_TOTAL, "streamgate_window_updates_total", COUNTER, "",                        \
      "Early (non-final) window results emitted.")                                                 \
    X(LATE_EVENTS_TOTAL, "streamgate_late_events_total", COUNTER, "",                              \
      "Events that arrived after a window they belong to had fired.")                              \
    X(WINDOWS_WAITING, "streamgate_windows_waiting", GAUGE, "",                                    \
      "Windows due to fire and held back while the writers' queues are over limits.results_share " \
      "of the memory budget.")                                                                     \
    X(WINDOWS_WAITING_AGE_SECONDS, "streamgate_windows_waiting_age_seconds", GAUGE, "",            \
      "Wall-clock seconds since the oldest window waiting to fire became due (0 when none "        \
      "waits).")                                                                                   \
    X(WINDOW_FIRING_STALLS_TOTAL, "streamgate_window_firing_stalls_total", COUNTER, "",            \
      "Times firing stopped with windows due because the writers' queues were over "               \
      "limits.results_share of the memory budget.")                                                \
    X(WATERMARK_LAG_SECONDS, "streamgate_watermark_lag_seconds", GAUGE, "",                        \
      "Wall clock minus the event-time watermark (0 before the first event).")                     \
    X(KEYS_EVICTED_TOTAL, "streamgate_keys_evicted_total", COUNTER, "",                            \
      "Idle keys whose stream was dropped.")                                                       \
    X(FIELD_NAMES_DROPPED_TOTAL, "streamgate_field_names_dropped_total", COUNTER, "",              \
      "Event fields ignored because the field-name table was full or the name too long.")          \
    X(ANOMALIES_TOTAL, "streamgate_anomalies_total", COUNTER, "",                                  \
      "Fields of final window results whose anomaly score was past predict.anomaly_threshold.")    \
    X(PREDICT_RESTORES_TOTAL, "streamgate_predict_restores_total", COUNTER, "outcome",             \
      "New keys' forecast models read back from their latest stored result, by outcome: "          \
      "restored, none (no stored model), failed (the read failed), skipped (too many reads "       \
      "waiting), late (the key's first window fired first: its models started afresh).")           \
    X(CONFIG_RELOADS_TOTAL, "streamgate_config_reloads_total", COUNTER, "result",                  \
      "Configuration reloads on SIGHUP, by result: applied, refused (an option that needs a "      \
      "restart changed), invalid (the file did not load or validate).")                            \
    X(BUDGET_BYTES, "streamgate_budget_bytes", GAUGE, "",                                          \
      "Bytes held against the memory budget, in total.")                                           \
    X(BUDGET_USE_BYTES, "streamgate_budget_use_bytes", GAUGE, "use",                               \
      "Bytes held against the memory budget, by use: connections (read buffers), bodies (HTTP "    \
      "bodies being read, and requests whose answer waits for delivery), streams (keys and open "  \
      "windows), queues (writers' records).")                                                      \
    X(BUDGET_LIMIT_BYTES, "streamgate_budget_limit_bytes", GAUGE, "",                              \
      "The memory budget (limits.memory).")                                                        \
    X(INGEST_PAUSED, "streamgate_ingest_paused", GAUGE, "",                                        \
      "1 while ingest is paused over the budget's high watermark.")                                \
    X(INGEST_PAUSES_TOTAL, "streamgate_ingest_pauses_total", COUNTER, "",                          \
      "Times ingest paused over the budget's high watermark.")                                     \
    X(MEMORY_TRIMS_TOTAL, "streamgate_memory_trims_total", COUNTER, "",                            \
      "Times the heap's free pages were handed back to the system, each after the budget fell by " \
      "a 32nd of limits.memory (at most one a second, and 2% of the time).")                       \
    X(PUSHBACK_TOTAL, "streamgate_pushback_total", COUNTER, "transport",                           \
      "Requests answered 503 and connections whose reads were paused because of the memory "       \
      "budget.")                                                                                   \
    X(TABLESTORE_ROWS_RETRIED_TOTAL, "streamgate_tablestore_rows_retried_total", COUNTER,          \
      "table_kind", "Rows sent again after a retriable error.")                                    \
    X(TABLESTORE_ROW_ERRORS_TOTAL, "streamgate_tablestore_row_errors_total", COUNTER, "code",      \
      "Rows that came back with an error, by code.")                                               \
    X(TABLESTORE_REQUESTS_TOTAL, "streamgate_tablestore_requests_total", COUNTER, "status",        \
      "BatchWriteRow requests by outcome (error: no HTTP answer).")                                \
    X(TABLESTORE_REQUEST_SECONDS, "streamgate_tablestore_request_seconds", HISTOGRAM, "",          \
      "BatchWriteRow request latency.")                                                            \
    X(TABLESTORE_ROWS_PENDING, "streamgate_tablestore_rows_pending", GAUGE, "",                    \
      "Rows held and not in flight (batching or backing off).")                                    \
    X(TABLESTORE_REQUESTS_IN_FLIGHT, "streamgate_tablestore_requests_in_flight", GAUGE, "",        \
      "BatchWriteRow requests in flight.")                                                         \
    X(TABLESTORE_ROWS_SUPERSEDED_TOTAL, "streamgate_tablestore_rows_superseded_total", COUNTER,    \
      "", "Row versions replaced by a newer version of the same row before being written.")        \
    X(TABLESTORE_READ_REQUESTS_TOTAL, "streamgate_tablestore_read_requests_total", COUNTER,        \
      "outcome",                                                                                   \
      "Reads of stored results (GetRange, BatchGetRow) by outcome: ok, unavailable (busy or "      \
      "down until query.timeout), refused, cancelled.")                                            \
    X(QUERY_SECONDS, "streamgate_query_seconds", HISTOGRAM, "",                                    \
      "Latency of GET /v1/history queries, from the request to the answer.")                       \
    X(TABLESTORE_READY, "streamgate_tablestore_ready", GAUGE, "",                                  \
      "1 once the start-up checks of the tables (DescribeTable, CreateTable) have passed; 0 "      \
      "while they are retried, or after one failed for good.")                                     \
    X(DEAD_LETTER_RECORDS_TOTAL, "streamgate_dead_letter_records_total", COUNTER, "result",        \
      "Records written to (or lost by) the dead-letter output.")                                   \
    X(KAFKA_CONSUMER_LAG, "streamgate_kafka_consumer_lag", GAUGE, "partition",                     \
      "Aggregator: records of an assigned partition of kafka.raw_topic not read yet (its high "    \
      "watermark minus the next offset).")                                                         \
    X(KAFKA_RECORDS_CONSUMED_TOTAL, "streamgate_kafka_records_consumed_total", COUNTER, "",        \
      "Aggregator: records read from kafka.raw_topic.")                                            \
    X(KAFKA_RECORDS_SKIPPED_TOTAL, "streamgate_kafka_records_skipped_total", COUNTER, "reason",    \
      "Aggregator: records read and not folded into a window: replayed (their window was "         \
      "written before a crash or rebalance), invalid (not an event), key_limit.")                  \
    X(KAFKA_RECORDS_MISSED_TOTAL, "streamgate_kafka_records_missed_total", COUNTER, "",            \
      "Aggregator: offsets of kafka.raw_topic passed over without a record: the log dropped "      \
      "them (retention) before they were read, so the consumer's offset was reset past them, or "  \
      "they were transaction markers or compacted away. Each gap is also logged.")                 \
    X(KAFKA_REBALANCES_TOTAL, "streamgate_kafka_rebalances_total", COUNTER, "",                    \
      "Aggregator: partitions assigned or revoked by the consumer group.")                         \
    X(KAFKA_COMMITS_TOTAL, "streamgate_kafka_commits_total", COUNTER, "result",                    \
      "Aggregator: offset commits of kafka.raw_topic, ok or failed.")                              \
    X(BUILD_INFO, "streamgate_build_info", GAUGE, "version",                                       \
      "Build information; the value is always 1.")

enum sg_metric {
#define SG_X(id, name, type, labels, help) SG_METRIC_##id,
    SG_METRIC_MAP(SG_X)
#undef SG_X
        SG_METRIC_COUNT
};

enum sg_metric_type { SG_METRIC_TYPE_COUNTER, SG_METRIC_TYPE_GAUGE, SG_METRIC_TYPE_HISTOGRAM };

/* A family's name, help text, type and label names as the catalogue gives them. `id` must be
 * below SG_METRIC_COUNT. */
const char *sg_metrics_name(enum sg_metric id);
const char *sg_metrics_help(enum sg_metric id);
enum sg_metric_type sg_metrics_type(enum sg_metric id);
const char *sg_metrics_labels(enum sg_metric id);

/* Prints the catalogue as the Markdown table README.md holds: one row per family, its series
 * with label names, its type and its help text. */
void sg_metrics_print_markdown(FILE *out);

struct sg_metrics *sg_metrics_create(void);
void sg_metrics_destroy(struct sg_metrics *m);

/* Registers (or finds) a series of family `id`. `labels` is the inside of the braces, e.g.
 * `transport="http",reason="invalid_json"`, or NULL/"" for none; every label name in it must be
 * one the catalogue lists for the family. Returns NULL when out of memory, when the family is
 * of another type than the function's, or when `labels` is malformed or names a label the
 * family does not have. */
struct sg_counter *sg_metrics_counter(struct sg_metrics *m, enum sg_metric id, const char *labels);
struct sg_gauge *sg_metrics_gauge(struct sg_metrics *m, enum sg_metric id, const char *labels);
/* `bounds` must outlive the registry (a static array). */
struct sg_histogram *sg_metrics_histogram(struct sg_metrics *m, enum sg_metric id,
                                          const char *labels, const double *bounds, size_t nbounds);

static inline void sg_counter_inc(struct sg_counter *c)
{
    c->value++;
}
static inline void sg_counter_add(struct sg_counter *c, uint64_t n)
{
    c->value += n;
}
static inline void sg_gauge_set(struct sg_gauge *g, double v)
{
    g->value = v;
}
static inline void sg_gauge_add(struct sg_gauge *g, double v)
{
    g->value += v;
}
void sg_histogram_observe(struct sg_histogram *h, double v);

/* The value of a registered counter series; 0 when it is absent. For tests. */
uint64_t sg_metrics_counter_value(struct sg_metrics *m, enum sg_metric id, const char *labels);

/* Appends the whole registry in Prometheus text format 0.0.4. Returns 0 or a negative code. */
int sg_metrics_render(struct sg_metrics *m, struct sg_buf *out);

#endif
