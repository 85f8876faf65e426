/* Configuration: one option table drives defaults, the JSON file, STREAMGATE_* variables,
 * flags, validation, --help and the README's option list. Everything here runs once at
 * startup, before the loop exists, so it reads the file with plain stdio and allocates freely. */
#include "streamgate/config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "config_internal.h"
#include "streamgate/common.h"

#define SG_CONFIG_STR_(x) #x
#define SG_CONFIG_STR(x)  SG_CONFIG_STR_(x)

/* No timeout or interval needs more than a year, and the bound keeps `now + duration`
 * arithmetic in int64 milliseconds far from overflow. */
#define SG_CONFIG_MAX_DURATION_MS (365ull * 24 * 3600 * 1000)
/* Config files are small; the cap only stops a wrong path (a device, a huge log) early. */
#define SG_CONFIG_MAX_FILE_SIZE (16u * 1024 * 1024)
/* JSON numbers are doubles: integers beyond 2^53 are not exact, so they must be strings. */
#define SG_CONFIG_MAX_JSON_INT 9007199254740992.0

/* offsetof(struct sg_config, field), refusing to compile when the field's C type is not the
 * one the option's type stores. */
#define SG_CFG_FIELD(field, ctype)                                                                 \
    (offsetof(struct sg_config, field) +                                                           \
     0 * sizeof(                                                                                   \
             char[__builtin_types_compatible_p(__typeof__(((struct sg_config *)0)->field), ctype)  \
                      ? 1                                                                          \
                      : -1]))

#define SG_OPT(n, t, ctype, field, d, lo, hi, fl, h)                                               \
    {                                                                                              \
        .name = (n), .type = (t), .def = (d), .help = (h), .offset = SG_CFG_FIELD(field, ctype),   \
        .min = (lo), .max = (hi), .flags = (fl)                                                    \
    }
#define SG_OPT_STR(n, field, d, nonempty, h)                                                       \
    SG_OPT(n, SG_CONFIG_STRING, char *, field, d, nonempty, 0, 0, h)
#define SG_OPT_ADDR(n, field, d, h)                                                                \
    SG_OPT(n, SG_CONFIG_STRING, char *, field, d, 0, 0, SG_CONFIG_F_ADDRESS, h)
#define SG_OPT_INT(n, field, d, lo, hi, h) SG_OPT(n, SG_CONFIG_INT, int64_t, field, d, lo, hi, 0, h)
#define SG_OPT_SIZE(n, field, d, lo, h)    SG_OPT(n, SG_CONFIG_SIZE, uint64_t, field, d, lo, 0, 0, h)
#define SG_OPT_DUR(n, field, d, lo, h)                                                             \
    SG_OPT(n, SG_CONFIG_DURATION, uint64_t, field, d, lo, SG_CONFIG_MAX_DURATION_MS, 0, h)
#define SG_OPT_REAL(n, field, d, h)                                                                \
    SG_OPT(n, SG_CONFIG_STRING, char *, field, d, 1, 0, SG_CONFIG_F_NUMBER, h)
#define SG_OPT_LIST(n, field, d, h)                                                                \
    SG_OPT(n, SG_CONFIG_STRLIST, struct sg_strlist, field, d, 0, 0, 0, h)
/* Options a SIGHUP can change in a running process (SG_CONFIG_F_LIVE). */
#define SG_OPT_INT_LIVE(n, field, d, lo, hi, h)                                                    \
    SG_OPT(n, SG_CONFIG_INT, int64_t, field, d, lo, hi, SG_CONFIG_F_LIVE, h)
#define SG_OPT_SIZE_LIVE(n, field, d, lo, h)                                                       \
    SG_OPT(n, SG_CONFIG_SIZE, uint64_t, field, d, lo, 0, SG_CONFIG_F_LIVE, h)
#define SG_OPT_DUR_LIVE(n, field, d, lo, h)                                                        \
    SG_OPT(n, SG_CONFIG_DURATION, uint64_t, field, d, lo, SG_CONFIG_MAX_DURATION_MS,               \
           SG_CONFIG_F_LIVE, h)

/* Spelled as sg_log_level's values, in order: the index is the enum value. */
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
_Static_assert(SG_LOG_DEBUG == 0 && SG_LOG_INFO == 1 && SG_LOG_WARN == 2 && SG_LOG_ERROR == 3,
               "log_levels[] must follow enum sg_log_level");

static const char *const roles[] = {"all", "gateway", "aggregator", NULL};
_Static_assert(SG_ROLE_ALL == 0 && SG_ROLE_GATEWAY == 1 && SG_ROLE_AGGREGATOR == 2,
               "roles[] must follow enum sg_role");
static const char *const window_types[] = {"tumbling", "hopping", "session", NULL};
_Static_assert(SG_WINDOW_TUMBLING == 0 && SG_WINDOW_HOPPING == 1 && SG_WINDOW_SESSION == 2,
               "window_types[] must follow enum sg_window_type");
static const char *const window_times[] = {"event", "processing", NULL};
_Static_assert(SG_TIME_EVENT == 0 && SG_TIME_PROCESSING == 1,
               "window_times[] must follow enum sg_time_mode");
static const char *const time_units[] = {"ms", "s", "us", "ns", NULL};
static const char *const ack_modes[] = {"accepted", "delivered", NULL};
_Static_assert(SG_ACK_ACCEPTED == 0 && SG_ACK_DELIVERED == 1,
               "ack_modes[] must follow enum sg_ack_mode");
_Static_assert(SG_TIME_UNIT_MS == 0 && SG_TIME_UNIT_S == 1 && SG_TIME_UNIT_US == 2 &&
                   SG_TIME_UNIT_NS == 3,
               "time_units[] must follow enum sg_time_unit");

#define SG_OPT_ENUM(n, field, d, values, h)                                                        \
    {                                                                                              \
        .name = (n), .type = SG_CONFIG_ENUM, .def = (d), .help = (h),                              \
        .offset = SG_CFG_FIELD(field, int), .allowed = (values)                                    \
    }

static const struct sg_config_option options[] = {
    SG_OPT_ENUM("role", role, "all", roles,
                "What this process does: all (ingest, windows and writers in one process), "
                "gateway (ingest and the raw topic only; needs kafka.brokers) or aggregator "
                "(no ingest listeners: consumes kafka.raw_topic in group kafka.group_id and runs "
                "the windows; needs kafka.brokers)."),
    SG_OPT_ADDR("http.listen", http_listen, "127.0.0.1:8080",
                "Address of the HTTP listener, host:port or [v6]:port (port 0 picks a free "
                "port); empty disables HTTP."),
    SG_OPT_SIZE("http.max_body_size", http_max_body_size, "4MiB", 1,
                "Largest request body accepted, in bytes as received (before gzip decoding)."),
    SG_OPT_SIZE("http.max_decoded_size", http_max_decoded_size, "16MiB", 1,
                "Largest request body after gzip decoding, in bytes; a body that inflates "
                "beyond it is refused."),
    SG_OPT_SIZE("http.max_header_size", http_max_header_size, "16KiB", 1024,
                "Largest request line plus headers, in bytes; at least 1KiB."),
    SG_OPT_INT("http.max_connections", http_max_connections, "10000", 1, 0,
               "Most HTTP connections open at once; further connections are refused. The "
               "open-files limit is raised at start to fit it and tcp.max_connections."),
    SG_OPT_DUR("http.header_timeout", http_header_timeout_ms, "10s", 1,
               "Longest wait from the first byte of a request to the end of its headers."),
    SG_OPT_DUR("http.body_timeout", http_body_timeout_ms, "30s", 1,
               "Longest wait from the end of a request's headers to the end of its body."),
    SG_OPT_DUR("http.idle_timeout", http_idle_timeout_ms, "60s", 1,
               "How long a keep-alive connection may wait for its next request before it is "
               "closed."),
    SG_OPT_INT("http.max_errors", http_max_errors, "100", 1, 0,
               "Most per-event errors listed in one ingest response; the rest are only "
               "counted."),
    SG_OPT_INT_LIVE("http.rate_limit", http_rate_limit, "0", 0, 1000000000,
                    "Ingest requests per second allowed per client (its bearer token when "
                    "http.auth_tokens is set, else its address); over it: 429 with Retry-After. 0 "
                    "turns it off."),
    SG_OPT_INT_LIVE(
        "http.rate_burst", http_rate_burst, "0", 0, 1000000000,
        "Requests a client may send at once above http.rate_limit; 0 means one second's "
        "worth (http.rate_limit)."),
    SG_OPT("http.auth_tokens", SG_CONFIG_STRLIST, struct sg_strlist, http_auth_tokens, "", 0, 0,
           SG_CONFIG_F_LIVE,
           "Bearer tokens accepted on POST /v1/events; empty means ingest needs no "
           "token."),
    SG_OPT("http.metrics_token", SG_CONFIG_STRING, char *, http_metrics_token, "", 0, 0,
           SG_CONFIG_F_LIVE,
           "Bearer token required on /metrics, /healthz and /readyz; empty leaves them "
           "open."),
    SG_OPT_DUR("http.ack_timeout", http_ack_timeout_ms, "30s", 1,
               "With ingest.ack delivered: longest wait for an ingest request's events to be "
               "confirmed by the writers; past it the answer is 503 with Retry-After and the "
               "counts confirmed so far."),
    SG_OPT("http.reuse_port", SG_CONFIG_BOOL, bool, http_reuse_port, "false", 0, 0, 0,
           "Set SO_REUSEPORT on the HTTP listener, so several gateways can listen on one port "
           "and the kernel spreads connections over them."),
    SG_OPT("http.tls_cert", SG_CONFIG_STRING, char *, http_tls_cert, "", 0, 0, SG_CONFIG_F_LIVE,
           "PEM certificate (chain) of the HTTP listener; set with http.tls_key to serve "
           "TLS (1.2 or later) instead of plain text."),
    SG_OPT("http.tls_key", SG_CONFIG_STRING, char *, http_tls_key, "", 0, 0, SG_CONFIG_F_LIVE,
           "PEM private key matching http.tls_cert."),
    SG_OPT("http.tls_client_ca", SG_CONFIG_STRING, char *, http_tls_client_ca, "", 0, 0,
           SG_CONFIG_F_LIVE,
           "PEM CA bundle: with it, HTTP clients must present a certificate it signed, "
           "and connections without a valid one are refused in the handshake."),
    SG_OPT_DUR_LIVE("http.tls_handshake_timeout", http_tls_handshake_timeout_ms, "10s", 1,
                    "Longest wait for an HTTP client to complete the TLS handshake."),
    SG_OPT_ADDR("tcp.listen", tcp_listen, "127.0.0.1:9000",
                "Address of the NDJSON TCP listener, host:port or [v6]:port (port 0 picks a "
                "free port); empty disables TCP."),
    SG_OPT_SIZE("tcp.max_line_size", tcp_max_line_size, "1MiB", 1,
                "Longest NDJSON line (one event) in bytes; a longer line is rejected."),
    SG_OPT_INT("tcp.max_connections", tcp_max_connections, "100000", 1, 0,
               "Most TCP connections open at once; further connections are refused. The "
               "open-files limit is raised at start to fit it and http.max_connections."),
    SG_OPT_DUR("tcp.idle_timeout", tcp_idle_timeout_ms, "5m", 1,
               "How long a TCP connection may stay silent before it is closed."),
    SG_OPT("tcp.reuse_port", SG_CONFIG_BOOL, bool, tcp_reuse_port, "false", 0, 0, 0,
           "Set SO_REUSEPORT on the TCP listener, so several gateways can listen on one port "
           "and the kernel spreads connections over them."),
    SG_OPT("tcp.tls_cert", SG_CONFIG_STRING, char *, tcp_tls_cert, "", 0, 0, SG_CONFIG_F_LIVE,
           "PEM certificate (chain) of the TCP listener; set with tcp.tls_key to serve "
           "TLS (1.2 or later) instead of plain text."),
    SG_OPT("tcp.tls_key", SG_CONFIG_STRING, char *, tcp_tls_key, "", 0, 0, SG_CONFIG_F_LIVE,
           "PEM private key matching tcp.tls_cert."),
    SG_OPT("tcp.tls_client_ca", SG_CONFIG_STRING, char *, tcp_tls_client_ca, "", 0, 0,
           SG_CONFIG_F_LIVE,
           "PEM CA bundle: with it, TCP clients must present a certificate it signed, "
           "and connections without a valid one are refused in the handshake."),
    SG_OPT_DUR_LIVE("tcp.tls_handshake_timeout", tcp_tls_handshake_timeout_ms, "10s", 1,
                    "Longest wait for a TCP client to complete the TLS handshake."),
    SG_OPT_ENUM("ingest.ack", ingest_ack, "accepted", ack_modes,
                "When an HTTP ingest request is answered 202: once its events are accepted "
                "(handed to the writers), or once every raw writer confirmed them (Kafka: the "
                "raw topic's delivery report); delivered needs kafka.brokers. TCP is not "
                "affected."),
    SG_OPT_STR("event.key_field", event_key_field, "key", 1,
               "Top-level field holding an event's key (a string or a number)."),
    SG_OPT_STR("event.key_fallback", event_key_fallback, "id", 0,
               "Field used as the key when the key field is missing; empty means no "
               "fallback."),
    SG_OPT_STR("event.time_field", event_time_field, "ts", 1,
               "Top-level field holding the event time (an epoch number in event.time_unit, or "
               "RFC 3339); events without it get their arrival time."),
    SG_OPT_ENUM("event.time_unit", event_time_unit, "ms", time_units,
                "Unit of epoch numbers in the time field: milliseconds, seconds, microseconds "
                "or nanoseconds (fractions below a millisecond are dropped); RFC 3339 strings "
                "are not affected."),
    SG_OPT_LIST("event.value_fields", event_value_fields, "",
                "Numeric top-level fields kept per event; empty keeps every numeric top-level "
                "field."),
    SG_OPT_INT(
        "event.max_fields", event_max_fields, "32", 1, SG_EVENT_MAX_FIELDS,
        "Most numeric fields kept per event, from 1 to " SG_CONFIG_STR(SG_EVENT_MAX_FIELDS) "."),
    SG_OPT_SIZE("event.max_key_size", event_max_key_size, "256", 1,
                "Longest event key in bytes; events with a longer key are rejected."),
    SG_OPT_STR("output.file", output_file, "", 0,
               "File accepted events are appended to, one per line; \"-\" writes to stdout, "
               "empty turns the file writer off."),
    SG_OPT_STR("output.results_file", output_results_file, "", 0,
               "File window results are appended to, one JSON object per line, as windows "
               "fire; \"-\" writes to stdout, empty turns it off."),
    SG_OPT_STR("output.late_file", output_late_file, "", 0,
               "File late events (later than window.allowed_lateness for a window that already "
               "fired) are appended to as received; empty turns it off."),
    SG_OPT_STR("output.anomaly_file", output_anomaly_file, "", 0,
               "File the window results with a field over predict.anomaly_threshold are "
               "appended to, one JSON object per line; empty turns it off."),
    SG_OPT_STR("output.dead_letter_file", output_dead_letter_file, "", 0,
               "File records a writer could not write for good are appended to, one JSON object "
               "per line with sink, key, error, message and the record; empty turns it off."),
    SG_OPT_STR("kafka.brokers", kafka_brokers, "", 0,
               "Kafka bootstrap servers (host:port,...); \"embedded\" starts an in-process "
               "Kafka-protocol cluster; empty turns the Kafka writer off."),
    SG_OPT_STR("kafka.raw_topic", kafka_raw_topic, "events", 0,
               "Topic for raw events (key = event key, value = the event as received); empty "
               "turns that stream off."),
    SG_OPT_STR("kafka.agg_topic", kafka_agg_topic, "aggregates", 0,
               "Topic for window results (key = event key); empty turns that stream off."),
    SG_OPT_STR("kafka.late_topic", kafka_late_topic, "", 0,
               "Topic for late events and records that could not be delivered (dead letters); "
               "empty turns it off."),
    SG_OPT_STR("kafka.anomaly_topic", kafka_anomaly_topic, "", 0,
               "Topic for the window results with a field over predict.anomaly_threshold (key = "
               "event key); empty turns it off."),
    SG_OPT_INT("kafka.partitions", kafka_partitions, "12", 1, 1000,
               "Partitions of each topic the embedded cluster creates."),
    SG_OPT("kafka.client_id_header", SG_CONFIG_BOOL, bool, kafka_client_id_header, "false", 0, 0, 0,
           "Attach a client-id header to every raw record that came over TLS with a client "
           "certificate: the certificate's subject CN, or its first subject alternative name."),
    SG_OPT_LIST("kafka.headers", kafka_headers, "",
                "Headers on each Kafka record, from content-type, transport, received-at "
                "(the arrival time, which the record's timestamp carries anyway) and client-id "
                "(as kafka.client_id_header); empty, the default: none, the cheapest."),
    SG_OPT("kafka.rdkafka", SG_CONFIG_STRLIST, struct sg_strlist, kafka_rdkafka, "", 0, 0,
           SG_CONFIG_F_PROPS,
           "librdkafka properties passed through to the producer and, in an aggregator, the "
           "consumer: an object in the file, name=value,name=value elsewhere (e.g. "
           "linger.ms=20,compression.type=zstd)."),
    SG_OPT_STR("kafka.group_id", kafka_group_id, "streamgate-aggregators", 1,
               "Consumer group the aggregators of kafka.raw_topic join (role aggregator)."),
    SG_OPT_STR("tablestore.endpoint", tablestore_endpoint, "", 0,
               "Tablestore endpoint (http[s]://host[:port]); empty turns the Tablestore writer "
               "off."),
    SG_OPT_STR("tablestore.instance", tablestore_instance, "", 0,
               "Tablestore instance name (sent in x-ots-instancename)."),
    SG_OPT_STR("tablestore.access_key_id", tablestore_access_key_id, "", 0,
               "AccessKey ID the requests are signed with."),
    SG_OPT_STR("tablestore.access_key_secret", tablestore_access_key_secret, "", 0,
               "AccessKey secret; never logged or shown. Prefer tablestore.access_key_secret_file "
               "or the environment to a flag."),
    SG_OPT_STR("tablestore.access_key_secret_file", tablestore_access_key_secret_file, "", 0,
               "File holding the AccessKey secret (one line); read at start, overrides "
               "tablestore.access_key_secret."),
    SG_OPT_STR("tablestore.sts_token", tablestore_sts_token, "", 0,
               "STS security token sent with every request (x-ots-ststoken); empty: none."),
    SG_OPT_STR("tablestore.results_table", tablestore_results_table, "streamgate_results", 0,
               "Table window results are written to (primary key: key STRING, window_start "
               "INTEGER); empty turns results off."),
    SG_OPT_STR("tablestore.raw_table", tablestore_raw_table, "", 0,
               "Table raw events are written to (primary key: key STRING, ts INTEGER, id "
               "STRING); empty turns it off."),
    SG_OPT("tablestore.create_tables", SG_CONFIG_BOOL, bool, tablestore_create_tables, "false", 0,
           0, 0,
           "Create missing tables with the schema at start; otherwise check them with "
           "DescribeTable and fail clearly on a mismatch."),
    SG_OPT_INT("tablestore.max_in_flight", tablestore_max_in_flight, "4", 1, 64,
               "BatchWriteRow requests in flight at once."),
    SG_OPT_DUR("tablestore.linger", tablestore_linger_ms, "20ms", 0,
               "Longest time a row waits for its batch to fill (200 rows or 4 MB) before it is "
               "sent."),
    SG_OPT_DUR("tablestore.request_timeout", tablestore_request_timeout_ms, "30s", 1,
               "Longest wait for one Tablestore request; past it the request is retried."),
    SG_OPT_INT("tablestore.max_retries", tablestore_max_retries, "10", 0, 1000,
               "Retries of a row that failed with a retriable error before it goes to the "
               "dead-letter output."),
    SG_OPT_DUR("tablestore.retry_backoff", tablestore_retry_backoff_ms, "100ms", 1,
               "First retry delay; it doubles per attempt, with jitter, up to "
               "tablestore.retry_backoff_max."),
    SG_OPT_DUR("tablestore.retry_backoff_max", tablestore_retry_backoff_max_ms, "10s", 1,
               "Longest retry delay."),
    SG_OPT_STR("tablestore.time_index", tablestore_time_index, "auto", 0,
               "Global index of the results table by time (primary key: shard, window_start, "
               "key; columns count, window_end), which cross-key history queries read; auto "
               "names it <results_table>_by_time, empty turns it off."),
    SG_OPT_DUR("query.timeout", query_timeout_ms, "5s", 1,
               "Longest time a GET /v1/history query waits for Tablestore, retries included; "
               "past it the query answers 503 with Retry-After."),
    SG_OPT_INT("query.max_rows", query_max_rows, "100000", 1, 100000000,
               "Most stored windows a GET /v1/history roll-up scans, and most time index rows "
               "a page across keys reads; past it the query answers 422 naming this option "
               "rather than a partial result."),
    SG_OPT_INT("tablestore.index_shards", tablestore_index_shards, "16", 1, 1024,
               "Shards of the time index: each result row's shard column is murmur2(key) mod "
               "this (Kafka's partitioner), so the index spreads over as many ranges; a "
               "cross-key query reads them all."),
    SG_OPT_ENUM("window.type", window_type, "tumbling", window_types,
                "Window kind: fixed non-overlapping windows, overlapping windows every "
                "window.slide, or per-key sessions closed by window.gap of silence."),
    SG_OPT_DUR("window.size", window_size_ms, "10s", 1, "Length of tumbling and hopping windows."),
    SG_OPT_DUR("window.slide", window_slide_ms, "0", 0,
               "Hopping windows: distance between window starts, at most window.size; "
               "required for hopping windows."),
    SG_OPT_DUR("window.gap", window_gap_ms, "0", 0,
               "Session windows: silence after which a key's session closes; required for "
               "session windows."),
    SG_OPT_DUR("window.allowed_lateness", window_allowed_lateness_ms, "0s", 0,
               "How far behind the highest event time seen an event may be and still count; "
               "the watermark trails the highest event time by this much."),
    SG_OPT_DUR("window.idle_timeout", window_idle_timeout_ms, "10s", 1,
               "After this long without events, the watermark advances with the wall clock so "
               "the last windows fire."),
    SG_OPT_DUR("window.emit_interval", window_emit_interval_ms, "0", 0,
               "Every interval, emit open windows that changed as updates (\"final\":false); "
               "0 turns early firing off."),
    SG_OPT_ENUM("window.time", window_time, "event", window_times,
                "Which time places events in windows: the event's own time field, or its "
                "arrival time."),
    SG_OPT_LIST("window.quantiles", window_quantiles, "p50,p90,p99",
                "Quantiles computed per field, as pNN or pNN.N (p99.9); empty turns the quantile "
                "sketch off. Estimates are within 1% relative error."),
    SG_OPT_STR("window.distinct_field", window_distinct_field, "", 0,
               "Top-level string field whose distinct values are counted per window "
               "(HyperLogLog); empty turns it off."),
    SG_OPT_INT("window.distinct_precision", window_distinct_precision, "12", 4, 16,
               "HyperLogLog precision p (2^p registers of one byte; standard error about "
               "1.04/sqrt(2^p))."),
    SG_OPT("predict.enabled", SG_CONFIG_BOOL, bool, predict_enabled, "true", 0, 0, 0,
           "Forecast each key's window mean per field (Holt's linear smoothing) and score every "
           "window against it: forecast, anomaly and next in each result."),
    SG_OPT_LIST("predict.fields", predict_fields, "",
                "Fields forecast; empty means every numeric field."),
    SG_OPT_REAL("predict.alpha", predict_alpha, "0.1",
                "Smoothing of the level, a number in (0, 1]: higher follows the latest windows "
                "faster, lower averages more of them."),
    SG_OPT_REAL("predict.beta", predict_beta, "0.02",
                "Smoothing of the trend, a number in (0, 1]: higher lets the trend turn faster."),
    SG_OPT_INT("predict.warmup", predict_warmup, "5", 3, 1000000,
               "Windows of a key and field folded in before its windows get an anomaly score "
               "(null until then); at least 3."),
    SG_OPT("predict.restore", SG_CONFIG_BOOL, bool, predict_restore, "true", 0, 0, 0,
           "With the Tablestore writer on, read a new key's models back from its latest stored "
           "result (one GetRange, newest first), so a restart or a rebalance goes on "
           "forecasting; a key whose first window fires before the read ends starts afresh."),
    SG_OPT_INT("predict.restore_reads", predict_restore_reads, "64", 1, 4096,
               "Most reads of new keys' stored models in flight at once; further keys wait."),
    SG_OPT_INT("predict.restore_queue", predict_restore_queue, "100000", 0, 100000000,
               "Most new keys waiting for a read of their stored models; a key past it starts "
               "afresh (counted in streamgate_predict_restores_total{outcome=\"skipped\"})."),
    SG_OPT_INT("predict.season", predict_season, "0", 0, 1024,
               "Windows in a season, 2 to 1024 (an hourly cycle of 10 s windows is 360): the "
               "model adds a seasonal term per step of it (Holt-Winters) and starts after two "
               "seasons; 0 turns seasons off. Each forecast field of a key keeps (season + 3) "
               "doubles."),
    SG_OPT_REAL("predict.gamma", predict_gamma, "0.1",
                "Smoothing of the seasonal terms (predict.season), a number in (0, 1]: higher "
                "follows a changing cycle faster."),
    SG_OPT_REAL("predict.anomaly_threshold", predict_anomaly_threshold, "3.5",
                "Anomaly score (window mean minus forecast, in residual standard deviations) "
                "past which a window is flagged; also where the model clips a residual."),
    SG_OPT_INT("stream.max_keys", stream_max_keys, "1000000", 1, 0,
               "Most keys with a live stream at once; events for further keys are rejected "
               "(key_limit)."),
    SG_OPT_DUR("stream.key_idle_timeout", stream_key_idle_timeout_ms, "60s", 0,
               "How long a key stays after its last window fired before its stream is "
               "evicted."),
    SG_OPT_INT("stream.partitions", stream_partitions, "12", 1, 100000,
               "Number of partitions keys are spread over with Kafka's murmur2 (match the "
               "Kafka topics' partition count)."),
    SG_OPT_SIZE_LIVE(
        "limits.memory", limits_memory, "256MiB", 1 << 20,
        "Memory budget for connection buffers, request bodies being read, stream state "
        "(keys and open windows) and writer queues; over its high watermark ingest "
        "pushes back (HTTP 503, TCP reads paused)."),
    SG_OPT_INT_LIVE("limits.high_watermark", limits_high_watermark, "70", 2, 100,
                    "Percent of limits.memory at which ingest pauses."),
    SG_OPT_INT_LIVE("limits.low_watermark", limits_low_watermark, "50", 1, 99,
                    "Percent of limits.memory under which paused ingest resumes; below "
                    "limits.high_watermark."),
    SG_OPT_INT_LIVE(
        "limits.streams_share", limits_streams_share, "40", 1, 100,
        "Percent of limits.memory the streams engine may hold; below limits.low_watermark, so "
        "that a pause the writers' queues caused ends as they drain. Events for new keys are "
        "rejected (key_limit) once stream state, plus room for the windows each key will hold, "
        "reaches it; known keys go on."),
    SG_OPT_INT_LIVE("limits.results_share", limits_results_share, "25", 1, 100,
                    "Percent of limits.memory the writers' queues may hold while windows fire; "
                    "due windows past it wait, complete, until the writers drain."),
    SG_OPT_DUR_LIVE("limits.retry_after", limits_retry_after_ms, "1s", 1000,
                    "Retry-After sent with a 503 while ingest is paused (whole seconds, rounded "
                    "up)."),
    {
        .name = "log.level",
        .type = SG_CONFIG_ENUM,
        .def = "info",
        .help = "Least severe log level written to stderr.",
        .offset = SG_CFG_FIELD(log_level, int),
        .allowed = log_levels,
        .flags = SG_CONFIG_F_LIVE,
    },
    SG_OPT_DUR("log.bad_input_interval", log_bad_input_interval_ms, "1s", 0,
               "At most one log line per interval for each kind of bad input and for late "
               "events, with a count of those held back; 0 logs every one."),
    SG_OPT_DUR("shutdown.timeout", shutdown_timeout_ms, "10s", 1,
               "After SIGTERM or SIGINT, how long requests in flight and writers get to finish "
               "before the process exits."),
};

const struct sg_config_option *sg_config__options(size_t *count)
{
    *count = SG_ARRAY_SIZE(options);
    return options;
}

const struct sg_config_option *sg_config__find(const char *name)
{
    for (size_t i = 0; i < SG_ARRAY_SIZE(options); i++) {
        if (strcmp(options[i].name, name) == 0)
            return &options[i];
    }
    return NULL;
}

void sg_config__env_name(const struct sg_config_option *opt, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "STREAMGATE_%s", opt->name);
    for (size_t i = 0; i < n && i < len; i++) {
        if (buf[i] == '.')
            buf[i] = '_';
        else if (buf[i] >= 'a' && buf[i] <= 'z')
            buf[i] = (char)(buf[i] - 'a' + 'A');
    }
}

void sg_config__flag_name(const struct sg_config_option *opt, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "--%s", opt->name);
    for (size_t i = 0; i < n && i < len; i++) {
        if (buf[i] == '.' || buf[i] == '_')
            buf[i] = '-';
    }
}

const char *sg_config__type_name(enum sg_config_type type)
{
    switch (type) {
    case SG_CONFIG_STRING:
        return "string";
    case SG_CONFIG_INT:
        return "int";
    case SG_CONFIG_BOOL:
        return "bool";
    case SG_CONFIG_DURATION:
        return "duration";
    case SG_CONFIG_SIZE:
        return "size";
    case SG_CONFIG_STRLIST:
        return "list";
    case SG_CONFIG_ENUM:
        return "enum";
    }
    return "?";
}

/* "a, b or c" from an enum option's allowed values, for error messages. */
static const char *enum_choices(const struct sg_config_option *opt, char *text, size_t size)
{
    size_t n = 0, len = 0;
    while (opt->allowed[n] != NULL)
        n++;
    text[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        int w = snprintf(text + len, size - len, "%s%s", sep, opt->allowed[i]);
        if (w < 0 || (size_t)w >= size - len)
            break;
        len += (size_t)w;
    }
    return text;
}

static void *opt_ptr(struct sg_config *cfg, const struct sg_config_option *opt)
{
    return (char *)cfg + opt->offset;
}

static const void *opt_cptr(const struct sg_config *cfg, const struct sg_config_option *opt)
{
    return (const char *)cfg + opt->offset;
}

/* ---- error messages ---- */

__attribute__((format(printf, 4, 5))) static int fail(char *errstr, size_t errstr_size,
                                                      const char *from, const char *fmt, ...)
{
    if (errstr == NULL || errstr_size == 0)
        return -EINVAL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
    if (from != NULL) {
        size_t used = strlen(errstr);
        if (used < errstr_size)
            snprintf(errstr + used, errstr_size - used, " (from %s)", from);
    }
    return -EINVAL;
}

/* Copies `s` for quoting in a message: at most 64 characters, control characters shown as
 * '?', so a hostile or binary value cannot break the one-line message. */
static const char *quote(const char *s, char *buf, size_t len)
{
    size_t i = 0, o = 0;
    for (; s[i] != '\0' && o + 4 < len && i < 64; i++)
        buf[o++] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    if (s[i] != '\0' && o + 4 < len) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

/* ---- value parsers ---- */

/* Reads the leading decimal digits of `s` (at least one). Sets *rest to what follows. Returns 0,
 * -EINVAL without digits, -ERANGE when the number does not fit in 64 bits. */
static int parse_digits(const char *s, uint64_t *out, const char **rest)
{
    uint64_t v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    *rest = p;
    return 0;
}

struct unit {
    const char *suffix;
    uint64_t mult;
};

static int parse_with_units(const char *s, const struct unit *units, size_t nunits, uint64_t *out)
{
    uint64_t v;
    const char *rest;
    if (s == NULL)
        return -EINVAL;
    int rc = parse_digits(s, &v, &rest);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < nunits; i++) {
        if (strcmp(rest, units[i].suffix) != 0)
            continue;
        if (v > UINT64_MAX / units[i].mult)
            return -ERANGE;
        *out = v * units[i].mult;
        return 0;
    }
    return -EINVAL;
}

static const struct unit duration_units[] = {
    {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000},
};

/* KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB powers of 1000. A bare K/M/G is refused:
 * it is ambiguous between the two. */
static const struct unit size_units[] = {
    {"", 1},
    {"B", 1},
    {"KiB", 1ull << 10},
    {"MiB", 1ull << 20},
    {"GiB", 1ull << 30},
    {"TiB", 1ull << 40},
    {"KB", 1000ull},
    {"MB", 1000ull * 1000},
    {"GB", 1000ull * 1000 * 1000},
    {"TB", 1000ull * 1000 * 1000 * 1000},
};

static int parse_duration(const char *s, uint64_t *out)
{
    return parse_with_units(s, duration_units, SG_ARRAY_SIZE(duration_units), out);
}

static int parse_size(const char *s, uint64_t *out)
{
    return parse_with_units(s, size_units, SG_ARRAY_SIZE(size_units), out);
}

int sg_parse_duration_ms(const char *s, uint64_t *out)
{
    return parse_duration(s, out) == 0 ? 0 : -EINVAL;
}

int sg_parse_size(const char *s, uint64_t *out)
{
    return parse_size(s, out) == 0 ? 0 : -EINVAL;
}

/* An optional '-' and decimal digits, nothing else. Returns 0, -EINVAL or -ERANGE. */
static int parse_int64(const char *s, int64_t *out)
{
    bool neg = s[0] == '-';
    uint64_t v;
    const char *rest;
    int rc = parse_digits(s + neg, &v, &rest);
    if (rc != 0)
        return rc;
    if (*rest != '\0')
        return -EINVAL;
    if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX)
        return -ERANGE;
    /* -(INT64_MIN) is not representable; build the negative value from v - 1. */
    *out = neg ? -(int64_t)(v - 1) - 1 : (int64_t)v;
    return 0;
}

int sg_config__parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "1"};
    static const char *const no[] = {"false", "no", "0"};
    for (size_t i = 0; i < SG_ARRAY_SIZE(yes); i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

int sg_parse_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *h, *hend, *p;
    if (s == NULL)
        return -EINVAL;
    if (s[0] == '[') {
        h = s + 1;
        hend = strchr(h, ']');
        if (hend == NULL || hend[1] != ':')
            return -EINVAL;
        p = hend + 2;
    } else {
        h = s;
        hend = strrchr(s, ':');
        if (hend == NULL)
            return -EINVAL;
        /* An unbracketed IPv6 address cannot be told apart from its port. */
        if (memchr(h, ':', (size_t)(hend - h)) != NULL)
            return -EINVAL;
        p = hend + 1;
    }
    /* An empty host would mean "every interface"; binding that wide must be spelled out. */
    if (hend == h)
        return -EINVAL;
    for (const char *c = h; c < hend; c++) {
        if ((unsigned char)*c <= ' ' || *c == 0x7f || *c == '[' || *c == ']' || *c == '/')
            return -EINVAL;
    }
    int v = 0;
    size_t ndigits = 0;
    for (; p[ndigits] != '\0'; ndigits++) {
        if (p[ndigits] < '0' || p[ndigits] > '9' || ndigits >= 5)
            return -EINVAL;
        v = v * 10 + (p[ndigits] - '0');
    }
    if (ndigits == 0 || v > 65535)
        return -EINVAL;
    if (host != NULL) {
        size_t n = (size_t)(hend - h);
        if (n >= hostlen)
            return -EINVAL;
        memcpy(host, h, n);
        host[n] = '\0';
    }
    if (port != NULL)
        *port = v;
    return 0;
}

/* ---- string lists ---- */

static void strlist_free(struct sg_strlist *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

static int strlist_push(struct sg_strlist *list, const char *s, size_t len)
{
    char **items = realloc(list->items, (list->count + 1) * sizeof(*items));
    if (items == NULL)
        return -ENOMEM;
    list->items = items;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return -ENOMEM;
    memcpy(copy, s, len);
    copy[len] = '\0';
    list->items[list->count++] = copy;
    return 0;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* "a, b,c" -> [a, b, c]; "" (or only blanks) -> []. An empty item ("a,,b", "a,") is an error:
 * it is almost always a typo, and an empty token or field name is never meaningful. */
static int strlist_parse(const char *s, struct sg_strlist *out)
{
    const char *end = s + strlen(s);
    while (s < end && is_blank(*s))
        s++;
    while (end > s && is_blank(end[-1]))
        end--;
    if (s == end)
        return 0;
    for (;;) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *item_end = comma != NULL ? comma : end;
        const char *a = s, *b = item_end;
        while (a < b && is_blank(*a))
            a++;
        while (b > a && is_blank(b[-1]))
            b--;
        if (a == b)
            return -EINVAL;
        int rc = strlist_push(out, a, (size_t)(b - a));
        if (rc != 0)
            return rc;
        if (comma == NULL)
            return 0;
        s = comma + 1;
    }
}

/* ---- setting one option ---- */

static int set_string(char **dst, const char *value, char *errstr, size_t errstr_size)
{
    char *copy = strdup(value);
    if (copy == NULL) {
        fail(errstr, errstr_size, NULL, "out of memory");
        return -ENOMEM;
    }
    free(*dst);
    *dst = copy;
    return 0;
}

static int set_list(struct sg_strlist *dst, struct sg_strlist *list)
{
    strlist_free(dst);
    *dst = *list;
    list->items = NULL;
    list->count = 0;
    return 0;
}

/* Sets `opt` from its textual form (env, flags, sg_config_set, JSON strings). `from` names the
 * source for messages, or NULL. */
static int opt_set_text(struct sg_config *cfg, const struct sg_config_option *opt,
                        const char *value, const char *from, char *errstr, size_t errstr_size)
{
    void *dst = opt_ptr(cfg, opt);
    char q[80], choices[256];
    int rc;

    if (value == NULL)
        return fail(errstr, errstr_size, from, "%s: missing value", opt->name);

    switch (opt->type) {
    case SG_CONFIG_STRING:
        return set_string(dst, value, errstr, errstr_size);

    case SG_CONFIG_INT: {
        int64_t v;
        rc = parse_int64(value, &v);
        if (rc != 0)
            return fail(errstr, errstr_size, from, "%s: invalid integer \"%s\"%s", opt->name,
                        quote(value, q, sizeof(q)), rc == -ERANGE ? " (out of range)" : "");
        *(int64_t *)dst = v;
        return 0;
    }

    case SG_CONFIG_BOOL: {
        bool v;
        if (sg_config__parse_bool(value, &v) != 0)
            return fail(errstr, errstr_size, from,
                        "%s: invalid boolean \"%s\" (expected true/false, yes/no or 1/0)",
                        opt->name, quote(value, q, sizeof(q)));
        *(bool *)dst = v;
        return 0;
    }

    case SG_CONFIG_DURATION: {
        uint64_t v;
        rc = parse_duration(value, &v);
        if (rc != 0)
            return fail(errstr, errstr_size, from, "%s: invalid duration \"%s\" (%s)", opt->name,
                        quote(value, q, sizeof(q)),
                        rc == -ERANGE ? "out of range"
                                      : "expected e.g. 250ms, 5s, 2m, 1h or plain milliseconds");
        *(uint64_t *)dst = v;
        return 0;
    }

    case SG_CONFIG_SIZE: {
        uint64_t v;
        rc = parse_size(value, &v);
        if (rc != 0)
            return fail(errstr, errstr_size, from, "%s: invalid size \"%s\" (%s)", opt->name,
                        quote(value, q, sizeof(q)),
                        rc == -ERANGE ? "out of range"
                                      : "expected e.g. 512, 512B, 64KiB, 16MiB, 1GiB or 10MB");
        *(uint64_t *)dst = v;
        return 0;
    }

    case SG_CONFIG_STRLIST: {
        struct sg_strlist list = {0};
        rc = strlist_parse(value, &list);
        if (rc != 0) {
            strlist_free(&list);
            if (rc == -ENOMEM) {
                fail(errstr, errstr_size, from, "%s: out of memory", opt->name);
                return rc;
            }
            return fail(errstr, errstr_size, from,
                        "%s: invalid list \"%s\" (empty item; expected comma-separated values)",
                        opt->name, quote(value, q, sizeof(q)));
        }
        if (opt->flags & SG_CONFIG_F_PROPS) {
            for (size_t i = 0; i < list.count; i++) {
                const char *eq = strchr(list.items[i], '=');
                if (eq == NULL || eq == list.items[i]) {
                    strlist_free(&list);
                    return fail(errstr, errstr_size, from,
                                "%s: invalid property \"%s\" (expected name=value pairs, "
                                "comma-separated)",
                                opt->name, quote(value, q, sizeof(q)));
                }
            }
        }
        return set_list(dst, &list);
    }

    case SG_CONFIG_ENUM:
        for (size_t i = 0; opt->allowed[i] != NULL; i++) {
            if (strcmp(value, opt->allowed[i]) == 0) {
                *(int *)dst = (int)i;
                return 0;
            }
        }
        return fail(errstr, errstr_size, from, "%s: invalid value \"%s\" (expected %s)", opt->name,
                    quote(value, q, sizeof(q)), enum_choices(opt, choices, sizeof(choices)));
    }
    return fail(errstr, errstr_size, from, "%s: unsupported option type", opt->name);
}

int sg_config_set(struct sg_config *cfg, const char *name, const char *value, char *errstr,
                  size_t errstr_size)
{
    const struct sg_config_option *opt = name != NULL ? sg_config__find(name) : NULL;
    if (opt == NULL)
        return fail(errstr, errstr_size, NULL, "unknown option %s", name ? name : "(null)");
    return opt_set_text(cfg, opt, value, NULL, errstr, errstr_size);
}

/* ---- defaults and freeing ---- */

static int config_defaults(struct sg_config *cfg)
{
    int rc = 0;
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < SG_ARRAY_SIZE(options); i++) {
        char err[160];
        /* Defaults are constants that the unit tests parse; only allocation can fail. */
        int r = opt_set_text(cfg, &options[i], options[i].def, NULL, err, sizeof(err));
        if (r != 0 && rc == 0)
            rc = r;
    }
    return rc;
}

void sg_config_defaults(struct sg_config *cfg)
{
    /* Out of memory leaves some strings NULL, which sg_config_validate then reports. */
    (void)config_defaults(cfg);
}

void sg_config_free(struct sg_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < SG_ARRAY_SIZE(options); i++) {
        void *p = opt_ptr(cfg, &options[i]);
        if (options[i].type == SG_CONFIG_STRING) {
            free(*(char **)p);
            *(char **)p = NULL;
        } else if (options[i].type == SG_CONFIG_STRLIST) {
            strlist_free(p);
        }
    }
    strlist_free(&cfg->unknown_env);
    /* The header promises a zeroed struct, numbers included. */
    memset(cfg, 0, sizeof(*cfg));
}

/* ---- the JSON file ---- */

static const char *json_type_name(const cJSON *item)
{
    if (cJSON_IsString(item))
        return "a string";
    if (cJSON_IsNumber(item))
        return "a number";
    if (cJSON_IsBool(item))
        return "a boolean";
    if (cJSON_IsNull(item))
        return "null";
    if (cJSON_IsArray(item))
        return "an array";
    if (cJSON_IsObject(item))
        return "an object";
    return "an invalid value";
}

/* A property map from a JSON object: {"linger.ms": 5, "acks": "all"} -> "linger.ms=5",
 * "acks=all". Values are strings, numbers or booleans. */
static int props_from_json(const struct sg_config_option *opt, const cJSON *item, void *dst,
                           const char *from, char *errstr, size_t errstr_size)
{
    if (!cJSON_IsObject(item))
        return fail(errstr, errstr_size, from, "%s: expected an object, got %s", opt->name,
                    json_type_name(item));
    struct sg_strlist list = {0};
    for (const cJSON *el = item->child; el != NULL; el = el->next) {
        char text[1024];
        int n;
        if (cJSON_IsString(el))
            n = snprintf(text, sizeof(text), "%s=%s", el->string, el->valuestring);
        else if (cJSON_IsBool(el))
            n = snprintf(text, sizeof(text), "%s=%s", el->string,
                         cJSON_IsTrue(el) ? "true" : "false");
        else if (cJSON_IsNumber(el) && fabs(el->valuedouble) <= SG_CONFIG_MAX_JSON_INT &&
                 el->valuedouble == (double)(int64_t)el->valuedouble)
            n = snprintf(text, sizeof(text), "%s=%" PRId64, el->string, (int64_t)el->valuedouble);
        else if (cJSON_IsNumber(el))
            n = snprintf(text, sizeof(text), "%s=%.17g", el->string, el->valuedouble);
        else {
            strlist_free(&list);
            return fail(errstr, errstr_size, from,
                        "%s.%s: expected a string, number or boolean, got %s", opt->name,
                        el->string, json_type_name(el));
        }
        if (el->string[0] == '\0' || n < 0 || (size_t)n >= sizeof(text)) {
            strlist_free(&list);
            return fail(errstr, errstr_size, from, "%s: invalid property", opt->name);
        }
        int rc = strlist_push(&list, text, (size_t)n);
        if (rc != 0) {
            strlist_free(&list);
            fail(errstr, errstr_size, from, "%s: out of memory", opt->name);
            return rc;
        }
    }
    return set_list(dst, &list);
}

/* A JSON number for an int, duration or size option: a whole number that a double holds
 * exactly. */
static int json_whole_number(const struct sg_config_option *opt, const cJSON *item,
                             const char *from, char *errstr, size_t errstr_size)
{
    double d = item->valuedouble;
    bool is_signed = opt->type == SG_CONFIG_INT;
    if (!(d >= (is_signed ? -SG_CONFIG_MAX_JSON_INT : 0.0) && d <= SG_CONFIG_MAX_JSON_INT) ||
        d != (double)(int64_t)d)
        return fail(errstr, errstr_size, from,
                    "%s: invalid number %.17g (expected a whole number%s; write large values as "
                    "a string)",
                    opt->name, d, is_signed ? "" : " >= 0");
    return 0;
}

static int opt_set_json(struct sg_config *cfg, const struct sg_config_option *opt,
                        const cJSON *item, const char *from, char *errstr, size_t errstr_size)
{
    void *dst = opt_ptr(cfg, opt);
    const char *want = "a string";
    int rc;

    switch (opt->type) {
    case SG_CONFIG_STRING:
    case SG_CONFIG_ENUM:
        if (cJSON_IsString(item))
            return opt_set_text(cfg, opt, item->valuestring, from, errstr, errstr_size);
        if ((opt->flags & SG_CONFIG_F_NUMBER) && cJSON_IsNumber(item)) {
            char num[32];
            snprintf(num, sizeof(num), "%.17g", item->valuedouble);
            return opt_set_text(cfg, opt, num, from, errstr, errstr_size);
        }
        if (opt->flags & SG_CONFIG_F_NUMBER)
            want = "a number or a string";
        break;

    case SG_CONFIG_BOOL:
        want = "a boolean or a string";
        if (cJSON_IsBool(item)) {
            *(bool *)dst = cJSON_IsTrue(item);
            return 0;
        }
        if (cJSON_IsString(item))
            return opt_set_text(cfg, opt, item->valuestring, from, errstr, errstr_size);
        break;

    case SG_CONFIG_INT:
    case SG_CONFIG_DURATION:
    case SG_CONFIG_SIZE:
        want = "a number or a string";
        if (cJSON_IsString(item))
            return opt_set_text(cfg, opt, item->valuestring, from, errstr, errstr_size);
        if (cJSON_IsNumber(item)) {
            rc = json_whole_number(opt, item, from, errstr, errstr_size);
            if (rc != 0)
                return rc;
            if (opt->type == SG_CONFIG_INT)
                *(int64_t *)dst = (int64_t)item->valuedouble;
            else
                *(uint64_t *)dst = (uint64_t)item->valuedouble;
            return 0;
        }
        break;

    case SG_CONFIG_STRLIST: {
        if (opt->flags & SG_CONFIG_F_PROPS)
            return props_from_json(opt, item, dst, from, errstr, errstr_size);
        want = "an array of strings";
        if (!cJSON_IsArray(item))
            break;
        struct sg_strlist list = {0};
        size_t index = 0;
        for (const cJSON *el = item->child; el != NULL; el = el->next, index++) {
            if (!cJSON_IsString(el)) {
                strlist_free(&list);
                return fail(errstr, errstr_size, from, "%s[%zu]: expected a string, got %s",
                            opt->name, index, json_type_name(el));
            }
            if (el->valuestring[0] == '\0') {
                strlist_free(&list);
                return fail(errstr, errstr_size, from, "%s[%zu]: empty string", opt->name, index);
            }
            rc = strlist_push(&list, el->valuestring, strlen(el->valuestring));
            if (rc != 0) {
                strlist_free(&list);
                fail(errstr, errstr_size, from, "%s: out of memory", opt->name);
                return rc;
            }
        }
        return set_list(dst, &list);
    }
    }
    return fail(errstr, errstr_size, from, "%s: expected %s, got %s", opt->name, want,
                json_type_name(item));
}

/* True when `path` names a group of options ("http" for "http.listen"). */
static bool is_section(const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < SG_ARRAY_SIZE(options); i++) {
        if (strncmp(options[i].name, path, n) == 0 && options[i].name[n] == '.')
            return true;
    }
    return false;
}

static int apply_json_object(struct sg_config *cfg, const cJSON *obj, const char *prefix,
                             const char *from, char *errstr, size_t errstr_size)
{
    for (const cJSON *it = obj->child; it != NULL; it = it->next) {
        char path[256];
        int n = prefix != NULL ? snprintf(path, sizeof(path), "%s.%s", prefix, it->string)
                               : snprintf(path, sizeof(path), "%s", it->string);
        if (n < 0 || (size_t)n >= sizeof(path))
            return fail(errstr, errstr_size, from, "unknown option %s...", path);

        const struct sg_config_option *opt = sg_config__find(path);
        if (opt != NULL) {
            int rc = opt_set_json(cfg, opt, it, from, errstr, errstr_size);
            if (rc != 0)
                return rc;
            continue;
        }
        if (!is_section(path))
            return fail(errstr, errstr_size, from, "unknown option %s", path);
        if (!cJSON_IsObject(it))
            return fail(errstr, errstr_size, from, "%s: expected an object, got %s", path,
                        json_type_name(it));
        int rc = apply_json_object(cfg, it, path, from, errstr, errstr_size);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int apply_json(struct sg_config *cfg, const char *json, size_t len, const char *from,
                      char *errstr, size_t errstr_size)
{
    size_t start = 0;
    while (start < len && is_blank(json[start]))
        start++;
    if (start == len)
        return fail(errstr, errstr_size, from, "empty document (expected a JSON object)");

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    size_t off = end != NULL && end >= json ? (size_t)(end - json) : 0;
    if (root == NULL) {
        size_t line = 1, col = 1;
        for (size_t i = 0; i < off && i < len; i++) {
            if (json[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        return fail(errstr, errstr_size, from, "invalid JSON at byte %zu (line %zu, column %zu)",
                    off, line, col);
    }

    int rc;
    while (off < len && is_blank(json[off]))
        off++;
    if (off < len)
        rc = fail(errstr, errstr_size, from,
                  "invalid JSON at byte %zu (unexpected data after the top-level value)", off);
    else if (!cJSON_IsObject(root))
        rc = fail(errstr, errstr_size, from, "expected a JSON object at the top level, got %s",
                  json_type_name(root));
    else
        rc = apply_json_object(cfg, root, NULL, from, errstr, errstr_size);
    cJSON_Delete(root);
    return rc;
}

int sg_config_apply_json(struct sg_config *cfg, const char *json, size_t len, char *errstr,
                         size_t errstr_size)
{
    return apply_json(cfg, json, len, "config file", errstr, errstr_size);
}

static int read_file(const char *path, char **out, size_t *out_len, char *errstr,
                     size_t errstr_size)
{
    char *data = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return fail(errstr, errstr_size, NULL, "cannot open config file %s: %s", path,
                    strerror(errno));
    for (;;) {
        if (len == cap) {
            if (cap >= SG_CONFIG_MAX_FILE_SIZE) {
                rc = fail(errstr, errstr_size, NULL, "config file %s is larger than %u bytes", path,
                          SG_CONFIG_MAX_FILE_SIZE);
                goto out;
            }
            cap = cap == 0 ? 4096 : cap * 2;
            char *grown = realloc(data, cap);
            if (grown == NULL) {
                rc = -ENOMEM;
                fail(errstr, errstr_size, NULL, "out of memory reading config file %s", path);
                goto out;
            }
            data = grown;
        }
        size_t n = fread(data + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f))
                rc = fail(errstr, errstr_size, NULL, "cannot read config file %s: %s", path,
                          strerror(errno));
            break;
        }
    }
out:
    fclose(f);
    if (rc != 0) {
        free(data);
        return rc;
    }
    *out = data;
    *out_len = len;
    return 0;
}

/* ---- environment and command line ---- */

static int apply_env(struct sg_config *cfg, char **envp, char *errstr, size_t errstr_size)
{
    static const char prefix[] = "STREAMGATE_";
    for (char **e = envp; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, prefix, sizeof(prefix) - 1) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (eq == NULL)
            continue;
        size_t namelen = (size_t)(eq - *e);
        const struct sg_config_option *opt = NULL;
        char env[128];
        for (size_t i = 0; i < SG_ARRAY_SIZE(options); i++) {
            sg_config__env_name(&options[i], env, sizeof(env));
            if (strlen(env) == namelen && memcmp(env, *e, namelen) == 0) {
                opt = &options[i];
                break;
            }
        }
        if (opt == NULL) {
            /* Others set variables with this prefix too (Kubernetes, for a Service named
             * streamgate): noted for a warning, never fatal. */
            if (strlist_push(&cfg->unknown_env, *e, namelen) != 0) {
                fail(errstr, errstr_size, NULL, "out of memory");
                return -ENOMEM;
            }
            continue;
        }
        char from[160];
        snprintf(from, sizeof(from), "env %s", env);
        int rc = opt_set_text(cfg, opt, eq + 1, from, errstr, errstr_size);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static const struct sg_config_option *find_by_flag(const char *flag, size_t len)
{
    char name[128];
    for (size_t i = 0; i < SG_ARRAY_SIZE(options); i++) {
        sg_config__flag_name(&options[i], name, sizeof(name));
        if (strlen(name) == len && memcmp(name, flag, len) == 0)
            return &options[i];
    }
    return NULL;
}

static bool flag_is(const char *arg, size_t len, const char *flag)
{
    return strlen(flag) == len && memcmp(arg, flag, len) == 0;
}

/* Walks argv. The first pass (apply false) checks it and fills `cli`; the second applies the
 * option flags in order, after the file and the environment, so that flags win and a later
 * flag overrides an earlier one. */
static int parse_argv(struct sg_config *cfg, struct sg_cli *cli, int argc, char **argv, bool apply,
                      char *errstr, size_t errstr_size)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        char q[80];

        if (strcmp(arg, "-h") == 0) {
            cli->help = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0' || arg[2] == '=')
            return fail(errstr, errstr_size, NULL,
                        "unexpected argument \"%s\" (options start with --; see --help)",
                        quote(arg, q, sizeof(q)));

        const char *eq = strchr(arg, '=');
        size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        int shown = (int)SG_MIN(len, 64);

        bool *sw = NULL;
        if (flag_is(arg, len, "--check-config"))
            sw = &cli->check_config;
        else if (flag_is(arg, len, "--version"))
            sw = &cli->version;
        else if (flag_is(arg, len, "--help"))
            sw = &cli->help;
        else if (flag_is(arg, len, "--options-markdown"))
            sw = &cli->options_markdown;
        else if (flag_is(arg, len, "--metrics-markdown"))
            sw = &cli->metrics_markdown;
        if (sw != NULL) {
            if (eq != NULL)
                return fail(errstr, errstr_size, NULL, "option %.*s takes no value", shown, arg);
            *sw = true;
            continue;
        }

        bool is_config = flag_is(arg, len, "--config");
        const struct sg_config_option *opt = is_config ? NULL : find_by_flag(arg, len);
        if (!is_config && opt == NULL)
            return fail(errstr, errstr_size, NULL, "unknown option %.*s (see --help)", shown, arg);

        const char *value;
        if (eq != NULL) {
            value = eq + 1;
        } else {
            /* A following flag is taken as a forgotten value, not as the value itself;
             * --name=VALUE spells a value that starts with "--". */
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                return fail(errstr, errstr_size, NULL, "option %.*s needs a value", shown, arg);
            value = argv[++i];
        }

        if (is_config) {
            cli->config_file = value;
        } else if (apply) {
            char from[128];
            sg_config__flag_name(opt, from, sizeof(from));
            int rc = opt_set_text(cfg, opt, value, from, errstr, errstr_size);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

int sg_config_load(struct sg_config *cfg, struct sg_cli *cli, int argc, char **argv, char **envp,
                   char *errstr, size_t errstr_size)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    memset(cli, 0, sizeof(*cli));
    rc = config_defaults(cfg);
    if (rc != 0)
        goto out;
    rc = parse_argv(cfg, cli, argc, argv, false, errstr, errstr_size);
    if (rc != 0) {
        cli->bad_usage = true; /* this pass only checks the shape of argv */
        goto out;
    }
    /* These print fixed text and exit; a broken config file must not stand in their way. */
    if (cli->help || cli->version || cli->options_markdown || cli->metrics_markdown)
        goto out;

    if (cli->config_file != NULL) {
        rc = read_file(cli->config_file, &text, &len, errstr, errstr_size);
        if (rc != 0)
            goto out;
        char from[300];
        snprintf(from, sizeof(from), "config file %s", cli->config_file);
        rc = apply_json(cfg, text, len, from, errstr, errstr_size);
        if (rc != 0)
            goto out;
    }
    rc = apply_env(cfg, envp, errstr, errstr_size);
    if (rc != 0)
        goto out;
    rc = parse_argv(cfg, cli, argc, argv, true, errstr, errstr_size);
    if (rc != 0)
        goto out;
    rc = sg_config_validate(cfg, errstr, errstr_size);
out:
    free(text);
    if (rc != 0)
        sg_config_free(cfg);
    return rc;
}

/* ---- validation ---- */

static int validate_option(const struct sg_config *cfg, const struct sg_config_option *opt,
                           char *errstr, size_t errstr_size)
{
    const void *p = opt_cptr(cfg, opt);
    const char *unit = opt->type == SG_CONFIG_DURATION ? "ms"
                       : opt->type == SG_CONFIG_SIZE   ? " bytes"
                                                       : "";
    char q[80];

    switch (opt->type) {
    case SG_CONFIG_STRING: {
        const char *s = *(char *const *)p;
        if (s == NULL)
            return fail(errstr, errstr_size, NULL, "%s: not set (out of memory)", opt->name);
        if (opt->min > 0 && s[0] == '\0')
            return fail(errstr, errstr_size, NULL, "%s: must not be empty", opt->name);
        char host[256];
        if ((opt->flags & SG_CONFIG_F_ADDRESS) && s[0] != '\0' &&
            sg_parse_hostport(s, host, sizeof(host), NULL) != 0)
            return fail(errstr, errstr_size, NULL,
                        "%s: invalid address \"%s\" (expected host:port or [v6]:port with a "
                        "port from 0 to 65535)",
                        opt->name, quote(s, q, sizeof(q)));
        return 0;
    }
    case SG_CONFIG_INT: {
        int64_t v = *(const int64_t *)p;
        if (v < (int64_t)opt->min || (opt->max != 0 && v > (int64_t)opt->max)) {
            if (opt->max != 0)
                return fail(errstr, errstr_size, NULL,
                            "%s: must be from %" PRIu64 " to %" PRIu64 " (got %" PRId64 ")",
                            opt->name, opt->min, opt->max, v);
            return fail(errstr, errstr_size, NULL,
                        "%s: must be at least %" PRIu64 " (got %" PRId64 ")", opt->name, opt->min,
                        v);
        }
        return 0;
    }
    case SG_CONFIG_DURATION:
    case SG_CONFIG_SIZE: {
        uint64_t v = *(const uint64_t *)p;
        if (v < opt->min)
            return fail(errstr, errstr_size, NULL,
                        "%s: must be at least %" PRIu64 "%s (got %" PRIu64 "%s)", opt->name,
                        opt->min, unit, v, unit);
        if (opt->max != 0 && v > opt->max)
            return fail(errstr, errstr_size, NULL,
                        "%s: must be at most %" PRIu64 "%s (got %" PRIu64 "%s)", opt->name,
                        opt->max, unit, v, unit);
        return 0;
    }
    case SG_CONFIG_ENUM: {
        unsigned v = (unsigned)*(const int *)p;
        size_t n = 0;
        while (opt->allowed[n] != NULL)
            n++;
        if (v >= n)
            return fail(errstr, errstr_size, NULL, "%s: invalid value %u", opt->name, v);
        return 0;
    }
    case SG_CONFIG_BOOL:
    case SG_CONFIG_STRLIST:
        return 0;
    }
    return 0;
}

int sg_parse_quantile(const char *s, double *q)
{
    if (s[0] != 'p' || s[1] < '0' || s[1] > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    double pct = strtod(s + 1, &end);
    if (errno != 0 || *end != '\0' || !(pct > 0 && pct <= 100))
        return -EINVAL;
    *q = pct / 100;
    return 0;
}

int sg_parse_real(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v > lo && v <= hi))
        return -EINVAL;
    *out = v;
    return 0;
}

/* The numbers of predict.*: each above its lower bound, at most its upper one. */
static int validate_predict(const struct sg_config *cfg, char *errstr, size_t errstr_size)
{
    static const struct {
        const char *name;
        size_t offset;
        double lo, hi;
        const char *range;
    } reals[] = {
        {"predict.alpha", offsetof(struct sg_config, predict_alpha), 0, 1, "in (0, 1]"},
        {"predict.beta", offsetof(struct sg_config, predict_beta), 0, 1, "in (0, 1]"},
        {"predict.gamma", offsetof(struct sg_config, predict_gamma), 0, 1, "in (0, 1]"},
        {"predict.anomaly_threshold", offsetof(struct sg_config, predict_anomaly_threshold), 0, 1e6,
         "above 0 and at most 1000000"},
    };
    for (size_t i = 0; i < SG_ARRAY_SIZE(reals); i++) {
        const char *text = *(char *const *)(const void *)((const char *)cfg + reals[i].offset);
        double v;
        char qbuf[80];
        if (sg_parse_real(text, reals[i].lo, reals[i].hi, &v) != 0)
            return fail(errstr, errstr_size, NULL, "%s: \"%s\" is not a number %s", reals[i].name,
                        quote(text, qbuf, sizeof(qbuf)), reals[i].range);
    }
    if (cfg->predict_season == 1)
        return fail(errstr, errstr_size, NULL,
                    "predict.season: a season of 1 window is no season (0 turns it off, or 2 to "
                    "1024)");
    return 0;
}

/* Most windows one event may fall into (hopping: size / slide). */
#define SG_CONFIG_MAX_HOPS 100
/* Most quantiles per field. */
#define SG_CONFIG_MAX_QUANTILES 16

/* Rules that tie window options together. */
static int validate_windows(const struct sg_config *cfg, char *errstr, size_t errstr_size)
{
    if (cfg->window_type == SG_WINDOW_HOPPING) {
        if (cfg->window_slide_ms == 0)
            return fail(errstr, errstr_size, NULL,
                        "window.slide: must be set for hopping windows (window.type hopping)");
        if (cfg->window_slide_ms > cfg->window_size_ms)
            return fail(errstr, errstr_size, NULL,
                        "window.slide: must be at most window.size (%" PRIu64 " > %" PRIu64 " ms)",
                        cfg->window_slide_ms, cfg->window_size_ms);
        if ((cfg->window_size_ms + cfg->window_slide_ms - 1) / cfg->window_slide_ms >
            SG_CONFIG_MAX_HOPS)
            return fail(errstr, errstr_size, NULL,
                        "window.slide: window.size / window.slide must be at most %d, the "
                        "number of windows one event may fall into",
                        SG_CONFIG_MAX_HOPS);
    }
    if (cfg->window_type == SG_WINDOW_SESSION && cfg->window_gap_ms == 0)
        return fail(errstr, errstr_size, NULL,
                    "window.gap: must be set for session windows (window.type session)");
    if (cfg->window_quantiles.count > SG_CONFIG_MAX_QUANTILES)
        return fail(errstr, errstr_size, NULL, "window.quantiles: at most %d quantiles",
                    SG_CONFIG_MAX_QUANTILES);
    for (size_t i = 0; i < cfg->window_quantiles.count; i++) {
        double q;
        char qbuf[80];
        if (sg_parse_quantile(cfg->window_quantiles.items[i], &q) != 0)
            return fail(errstr, errstr_size, NULL,
                        "window.quantiles: invalid quantile \"%s\" (expected pNN, e.g. p50 or "
                        "p99.9)",
                        quote(cfg->window_quantiles.items[i], qbuf, sizeof(qbuf)));
    }
    return 0;
}

int sg_config_kafka_headers(const struct sg_config *cfg, unsigned *mask, char *errstr,
                            size_t errstr_size)
{
    static const struct {
        const char *name;
        unsigned bit;
    } known[] = {
        {"content-type", SG_KAFKA_HDR_CONTENT_TYPE},
        {"transport", SG_KAFKA_HDR_TRANSPORT},
        {"received-at", SG_KAFKA_HDR_RECEIVED_AT},
        {"client-id", SG_KAFKA_HDR_CLIENT_ID},
    };
    *mask = cfg->kafka_client_id_header ? SG_KAFKA_HDR_CLIENT_ID : 0;
    for (size_t i = 0; i < cfg->kafka_headers.count; i++) {
        const char *name = cfg->kafka_headers.items[i];
        size_t k = 0;
        while (k < SG_ARRAY_SIZE(known) && strcmp(known[k].name, name) != 0)
            k++;
        if (k == SG_ARRAY_SIZE(known)) {
            char qbuf[80];
            return fail(errstr, errstr_size, NULL,
                        "kafka.headers: unknown header \"%s\" (expected content-type, "
                        "transport, received-at or client-id)",
                        quote(name, qbuf, sizeof(qbuf)));
        }
        *mask |= known[k].bit;
    }
    return 0;
}

/* The budget's watermarks must leave a gap, or ingest would flap on every release. */
static int validate_limits(const struct sg_config *cfg, char *errstr, size_t errstr_size)
{
    if (cfg->limits_low_watermark >= cfg->limits_high_watermark)
        return fail(errstr, errstr_size, NULL,
                    "limits.low_watermark: must be below limits.high_watermark (%" PRId64
                    " >= %" PRId64 ")",
                    cfg->limits_low_watermark, cfg->limits_high_watermark);
    return 0;
}

/* A gateway writes to Kafka and an aggregator reads from it: neither works without brokers. */
static int validate_role(const struct sg_config *cfg, char *errstr, size_t errstr_size)
{
    if (cfg->role == SG_ROLE_ALL)
        return 0;
    const char *role = roles[cfg->role];
    if (cfg->kafka_brokers[0] == '\0')
        return fail(errstr, errstr_size, NULL, "role: %s needs kafka.brokers", role);
    if (cfg->kafka_raw_topic[0] == '\0')
        return fail(errstr, errstr_size, NULL, "role: %s needs kafka.raw_topic", role);
    return 0;
}

/* A Tablestore writer needs where and as whom; its backoff must make sense. */
static int validate_tablestore(const struct sg_config *cfg, char *errstr, size_t errstr_size)
{
    if (cfg->tablestore_endpoint[0] == '\0')
        return 0;
    if (strncmp(cfg->tablestore_endpoint, "http://", 7) != 0 &&
        strncmp(cfg->tablestore_endpoint, "https://", 8) != 0)
        return fail(errstr, errstr_size, NULL,
                    "tablestore.endpoint: must start with http:// or https://");
    if (cfg->tablestore_instance[0] == '\0')
        return fail(errstr, errstr_size, NULL,
                    "tablestore.instance: must be set when tablestore.endpoint is");
    if (cfg->tablestore_access_key_id[0] == '\0')
        return fail(errstr, errstr_size, NULL,
                    "tablestore.access_key_id: must be set when tablestore.endpoint is");
    if (cfg->tablestore_access_key_secret[0] == '\0' &&
        cfg->tablestore_access_key_secret_file[0] == '\0')
        return fail(errstr, errstr_size, NULL,
                    "tablestore.access_key_secret: must be set (or "
                    "tablestore.access_key_secret_file) when tablestore.endpoint is");
    if (cfg->tablestore_retry_backoff_ms > cfg->tablestore_retry_backoff_max_ms)
        return fail(errstr, errstr_size, NULL,
                    "tablestore.retry_backoff: must be at most tablestore.retry_backoff_max");
    return 0;
}

/* A listener's TLS files: both certificate and key or neither, each readable and in PEM, the
 * key the certificate's, a client CA only with them. Read once at load, before the loop runs. */
static int validate_tls(const char *pre, const char *cert, const char *key, const char *ca,
                        char *errstr, size_t errstr_size)
{
    X509 *x509 = NULL;
    EVP_PKEY *pkey = NULL;
    FILE *f = NULL;
    int rc = -EINVAL;

    if (cert[0] == '\0' && key[0] == '\0') {
        if (ca[0] == '\0')
            return 0;
        snprintf(errstr, errstr_size, "%s.tls_client_ca: needs %s.tls_cert and %s.tls_key", pre,
                 pre, pre);
        return -EINVAL;
    }
    if (cert[0] == '\0' || key[0] == '\0') {
        snprintf(errstr, errstr_size, "%s.tls_cert and %s.tls_key: set both or neither", pre, pre);
        return -EINVAL;
    }
    if (!(f = fopen(cert, "r"))) {
        snprintf(errstr, errstr_size, "%s.tls_cert: cannot read %s: %s", pre, cert,
                 strerror(errno));
        goto out;
    }
    x509 = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x509) {
        snprintf(errstr, errstr_size, "%s.tls_cert: %s holds no PEM certificate", pre, cert);
        goto out;
    }
    if (!(f = fopen(key, "r"))) {
        snprintf(errstr, errstr_size, "%s.tls_key: cannot read %s: %s", pre, key, strerror(errno));
        goto out;
    }
    pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!pkey) {
        snprintf(errstr, errstr_size, "%s.tls_key: %s holds no PEM private key", pre, key);
        goto out;
    }
    if (X509_check_private_key(x509, pkey) != 1) {
        snprintf(errstr, errstr_size, "%s.tls_key: %s does not match the certificate in %s", pre,
                 key, cert);
        goto out;
    }
    if (ca[0] != '\0') {
        X509 *cax = NULL;
        if ((f = fopen(ca, "r"))) {
            cax = PEM_read_X509(f, NULL, NULL, NULL);
            fclose(f);
        }
        if (!cax) {
            snprintf(errstr, errstr_size, "%s.tls_client_ca: %s: %s", pre, ca,
                     f ? "holds no PEM certificate" : strerror(errno));
            goto out;
        }
        X509_free(cax);
    }
    rc = 0;
out:
    ERR_clear_error();
    X509_free(x509);
    EVP_PKEY_free(pkey);
    return rc;
}

/* Acknowledging on delivery waits for the raw topic's delivery reports: it needs one. */
static int validate_ack(const struct sg_config *cfg, char *errstr, size_t errstr_size)
{
    if (cfg->ingest_ack != SG_ACK_DELIVERED)
        return 0;
    if (cfg->kafka_brokers[0] == '\0')
        return fail(errstr, errstr_size, NULL,
                    "ingest.ack: delivered needs kafka.brokers (it waits for the raw topic's "
                    "delivery reports)");
    if (cfg->kafka_raw_topic[0] == '\0')
        return fail(errstr, errstr_size, NULL,
                    "ingest.ack: delivered needs kafka.raw_topic (it waits for that topic's "
                    "delivery reports)");
    return 0;
}

int sg_config_validate(const struct sg_config *cfg, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < SG_ARRAY_SIZE(options); i++) {
        int rc = validate_option(cfg, &options[i], errstr, errstr_size);
        if (rc != 0)
            return rc;
    }
    if (cfg->http_listen[0] == '\0' && cfg->tcp_listen[0] == '\0')
        return fail(errstr, errstr_size, NULL,
                    "http.listen and tcp.listen are both empty: at least one listener is needed");
    unsigned kafka_headers;
    int rc = validate_limits(cfg, errstr, errstr_size);
    if (rc == 0)
        rc = sg_config_kafka_headers(cfg, &kafka_headers, errstr, errstr_size);
    if (rc == 0)
        rc = validate_role(cfg, errstr, errstr_size);
    if (rc == 0)
        rc = validate_tablestore(cfg, errstr, errstr_size);
    if (rc == 0)
        rc = validate_tls("http", cfg->http_tls_cert, cfg->http_tls_key, cfg->http_tls_client_ca,
                          errstr, errstr_size);
    if (rc == 0)
        rc = validate_tls("tcp", cfg->tcp_tls_cert, cfg->tcp_tls_key, cfg->tcp_tls_client_ca,
                          errstr, errstr_size);
    if (rc == 0)
        rc = validate_ack(cfg, errstr, errstr_size);
    if (rc == 0)
        rc = validate_predict(cfg, errstr, errstr_size);
    return rc ? rc : validate_windows(cfg, errstr, errstr_size);
}

/* ---- --help and the README table ---- */

/* The default as shown to people: `""` for an empty string, `[]` for an empty list. */
static const char *shown_default(const struct sg_config_option *opt)
{
    if (opt->def[0] != '\0')
        return opt->def;
    return opt->type == SG_CONFIG_STRLIST ? "[]" : "\"\"";
}

static void print_allowed(FILE *out, const struct sg_config_option *opt, const char *quote_mark)
{
    if (opt->allowed == NULL)
        return;
    fputs(" One of: ", out);
    for (size_t i = 0; opt->allowed[i] != NULL; i++)
        fprintf(out, "%s%s%s%s", i > 0 ? ", " : "", quote_mark, opt->allowed[i], quote_mark);
    fputc('.', out);
}

void sg_config_print_help(FILE *out, const char *argv0)
{
    const char *prog = argv0 != NULL && argv0[0] != '\0' ? argv0 : "streamgate";
    fprintf(out,
            "Usage: %s [--config FILE] [--check-config] [--OPTION VALUE]...\n"
            "\n"
            "Accepts JSON events over HTTP (POST /v1/events) and TCP (NDJSON) and hands them to\n"
            "the configured writers.\n"
            "\n"
            "Every option below can be set three ways; a flag beats the environment, which\n"
            "beats the config file, which beats the default:\n"
            "  flag         --http-max-body-size 8MiB  or  --http-max-body-size=8MiB\n"
            "  environment  STREAMGATE_HTTP_MAX_BODY_SIZE=8MiB\n"
            "  config file  {\"http\": {\"max_body_size\": \"8MiB\"}}\n"
            "\n"
            "Value forms:\n"
            "  size      bytes: 512, 512B; 64KiB, 16MiB, 1GiB, 1TiB (powers of 1024);\n"
            "            64KB, 16MB, 1GB, 1TB (powers of 1000); a number in the file is bytes\n"
            "  duration  250ms, 5s, 2m, 1h, or plain milliseconds (also a number in the file)\n"
            "  bool      true/false, yes/no, 1/0\n"
            "  list      comma-separated in flags and the environment (\"\" is empty), a JSON\n"
            "            array of strings in the file\n"
            "\n"
            "Commands:\n"
            "  --config FILE        read options from a JSON file\n"
            "  --check-config       load and validate the configuration, print \"configuration "
            "ok\", exit\n"
            "  --version            print the version and exit\n"
            "  --help, -h           print this help and exit\n"
            "  --options-markdown   print the option table in Markdown and exit\n"
            "  --metrics-markdown   print the metric table in Markdown and exit\n"
            "\n"
            "Options:\n",
            prog);
    for (size_t i = 0; i < SG_ARRAY_SIZE(options); i++) {
        const struct sg_config_option *opt = &options[i];
        char flag[128];
        sg_config__flag_name(opt, flag, sizeof(flag));
        fprintf(out, "  %s <%s>  (default: %s%s)\n      %s", flag, sg_config__type_name(opt->type),
                shown_default(opt), (opt->flags & SG_CONFIG_F_LIVE) ? "; SIGHUP reloads it" : "",
                opt->help);
        print_allowed(out, opt, "");
        fputc('\n', out);
    }
}

void sg_config_print_markdown(FILE *out)
{
    fputs("| option | type | default | env | live | description |\n", out);
    fputs("| --- | --- | --- | --- | --- | --- |\n", out);
    for (size_t i = 0; i < SG_ARRAY_SIZE(options); i++) {
        const struct sg_config_option *opt = &options[i];
        char env[128];
        sg_config__env_name(opt, env, sizeof(env));
        fprintf(out, "| `%s` | %s | `%s` | `%s` | %s | %s", opt->name,
                sg_config__type_name(opt->type), shown_default(opt), env,
                (opt->flags & SG_CONFIG_F_LIVE) ? "yes" : "", opt->help);
        print_allowed(out, opt, "`");
        fputs(" |\n", out);
    }
}

/* ---- reload (SIGHUP) ---- */

static bool opt_equal(const struct sg_config *a, const struct sg_config *b,
                      const struct sg_config_option *opt)
{
    const void *pa = opt_cptr(a, opt), *pb = opt_cptr(b, opt);

    switch (opt->type) {
    case SG_CONFIG_STRING: {
        const char *sa = *(char *const *)pa, *sb = *(char *const *)pb;
        return strcmp(sa ? sa : "", sb ? sb : "") == 0;
    }
    case SG_CONFIG_STRLIST: {
        const struct sg_strlist *la = pa, *lb = pb;
        if (la->count != lb->count)
            return false;
        for (size_t i = 0; i < la->count; i++)
            if (strcmp(la->items[i], lb->items[i]) != 0)
                return false;
        return true;
    }
    case SG_CONFIG_INT:
        return *(const int64_t *)pa == *(const int64_t *)pb;
    case SG_CONFIG_BOOL:
        return *(const bool *)pa == *(const bool *)pb;
    case SG_CONFIG_DURATION:
    case SG_CONFIG_SIZE:
        return *(const uint64_t *)pa == *(const uint64_t *)pb;
    case SG_CONFIG_ENUM:
        return *(const int *)pa == *(const int *)pb;
    }
    return false;
}

static bool tls_on(const char *cert)
{
    return cert && cert[0];
}

int sg_config_reload_check(const struct sg_config *running, const struct sg_config *next,
                           char *changed, size_t changed_size, char *errstr, size_t errstr_size)
{
    size_t used = 0;

    if (changed_size > 0)
        changed[0] = '\0';
    /* The TLS files are re-read live, but a listener cannot start or stop speaking TLS. */
    if (tls_on(running->http_tls_cert) != tls_on(next->http_tls_cert))
        return fail(errstr, errstr_size, NULL,
                    "http.tls_cert: turning TLS on or off needs a restart; the running "
                    "configuration is kept");
    if (tls_on(running->tcp_tls_cert) != tls_on(next->tcp_tls_cert))
        return fail(errstr, errstr_size, NULL,
                    "tcp.tls_cert: turning TLS on or off needs a restart; the running "
                    "configuration is kept");
    for (size_t i = 0; i < SG_ARRAY_SIZE(options); i++) {
        const struct sg_config_option *opt = &options[i];
        if (opt_equal(running, next, opt))
            continue;
        if (!(opt->flags & SG_CONFIG_F_LIVE))
            return fail(errstr, errstr_size, NULL,
                        "%s changed, and a change to it needs a restart; the running "
                        "configuration is kept",
                        opt->name);
        if (used < changed_size) {
            int w =
                snprintf(changed + used, changed_size - used, "%s%s", used ? "," : "", opt->name);
            used += w > 0 ? (size_t)w : 0;
        }
    }
    return 0;
}

/* Bytes of an option's field in struct sg_config. */
static size_t opt_size(const struct sg_config_option *opt)
{
    switch (opt->type) {
    case SG_CONFIG_STRING:
        return sizeof(char *);
    case SG_CONFIG_STRLIST:
        return sizeof(struct sg_strlist);
    case SG_CONFIG_INT:
        return sizeof(int64_t);
    case SG_CONFIG_BOOL:
        return sizeof(bool);
    case SG_CONFIG_ENUM:
        return sizeof(int);
    case SG_CONFIG_DURATION:
    case SG_CONFIG_SIZE:
        return sizeof(uint64_t);
    }
    return 0;
}

void sg_config_take_live(struct sg_config *running, struct sg_config *next)
{
    for (size_t i = 0; i < SG_ARRAY_SIZE(options); i++) {
        const struct sg_config_option *opt = &options[i];
        if (!(opt->flags & SG_CONFIG_F_LIVE))
            continue;
        /* Swapped, not copied: freeing `next` frees the values replaced. */
        char *a = opt_ptr(running, opt), *b = opt_ptr(next, opt), tmp[sizeof(struct sg_strlist)];
        size_t size = opt_size(opt);
        memcpy(tmp, a, size);
        memcpy(a, b, size);
        memcpy(b, tmp, size);
    }
}

/* FNV-1a, over each option's name and value in table order. */
static uint64_t hash_bytes(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

uint64_t sg_config_hash(const struct sg_config *cfg)
{
    uint64_t h = 14695981039346656037ull;

    for (size_t i = 0; i < SG_ARRAY_SIZE(options); i++) {
        const struct sg_config_option *opt = &options[i];
        const void *p = opt_cptr(cfg, opt);
        h = hash_bytes(h, opt->name, strlen(opt->name) + 1);
        switch (opt->type) {
        case SG_CONFIG_STRING: {
            const char *v = *(char *const *)p;
            h = hash_bytes(h, v ? v : "", v ? strlen(v) + 1 : 1);
            break;
        }
        case SG_CONFIG_STRLIST: {
            const struct sg_strlist *l = p;
            h = hash_bytes(h, &l->count, sizeof(l->count));
            for (size_t j = 0; j < l->count; j++)
                h = hash_bytes(h, l->items[j], strlen(l->items[j]) + 1);
            break;
        }
        default: /* numbers, bools, enums: their bytes */
            h = hash_bytes(h, p, opt_size(opt));
            break;
        }
    }
    return h;
}
