/* Configuration: one table of options (name, type, default, help, offset into struct
 * sg_config) drives defaults, the JSON config file, STREAMGATE_* environment variables,
 * command-line flags, validation, --help and the README's option list.
 *
 * Every option has one dotted name, e.g. `http.listen`. It is set as nested objects in the
 * JSON file ({"http":{"listen":"..."}}), as env STREAMGATE_HTTP_LISTEN, and as flag
 * --http-listen VALUE (or --http-listen=VALUE). Precedence: flag > env > file > default. */
#ifndef STREAMGATE_CONFIG_H
#define STREAMGATE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "streamgate/log.h"

/* The hard ceiling of event.max_fields: how many numeric fields one event can carry. */
#define SG_EVENT_MAX_FIELDS 64

/* What one process does (role): everything, ingest to Kafka only, or windows from Kafka. */
enum sg_role { SG_ROLE_ALL = 0, SG_ROLE_GATEWAY = 1, SG_ROLE_AGGREGATOR = 2 };

enum sg_window_type { SG_WINDOW_TUMBLING = 0, SG_WINDOW_HOPPING = 1, SG_WINDOW_SESSION = 2 };
enum sg_time_mode { SG_TIME_EVENT = 0, SG_TIME_PROCESSING = 1 };
/* The unit of an event's numeric time (event.time_unit). */
enum sg_time_unit {
    SG_TIME_UNIT_MS = 0,
    SG_TIME_UNIT_S = 1,
    SG_TIME_UNIT_US = 2,
    SG_TIME_UNIT_NS = 3
};
/* When an HTTP ingest request is answered (ingest.ack). */
enum sg_ack_mode {
    SG_ACK_ACCEPTED = 0,  /* once its events are decoded and handed to the writers */
    SG_ACK_DELIVERED = 1, /* once every raw writer confirmed every event it accepted */
};

/* A list of strings (from a JSON array, or a comma-separated string in env and flags). */
struct sg_strlist {
    char **items;
    size_t count;
};

struct sg_config {
    int role; /* enum sg_role */

    /* http.* */
    char *http_listen;              /* "host:port"; empty disables the HTTP listener */
    uint64_t http_max_body_size;    /* bytes, as received (compressed) */
    uint64_t http_max_decoded_size; /* bytes, after gzip decoding */
    uint64_t http_max_header_size;  /* bytes of request line + headers */
    int64_t http_max_connections;
    uint64_t http_header_timeout_ms;    /* first byte of a request to end of headers */
    uint64_t http_body_timeout_ms;      /* end of headers to end of body */
    uint64_t http_idle_timeout_ms;      /* keep-alive wait for the next request */
    int64_t http_max_errors;            /* per-event errors listed in one response */
    int64_t http_rate_limit;            /* ingest requests per second per client; 0: off */
    int64_t http_rate_burst;            /* bucket size; 0: http_rate_limit */
    struct sg_strlist http_auth_tokens; /* empty: ingest needs no token */
    char *http_metrics_token;           /* empty: /metrics, /healthz, /readyz are open */
    uint64_t http_ack_timeout_ms;       /* longest hold of an answer (ingest.ack delivered) */
    bool http_reuse_port;               /* SO_REUSEPORT on the listener */
    char *http_tls_cert;                /* empty: plain HTTP */
    char *http_tls_key;
    char *http_tls_client_ca; /* empty: no client certificate asked for */
    uint64_t http_tls_handshake_timeout_ms;

    /* tcp.* */
    char *tcp_listen;           /* "host:port"; empty disables the TCP listener */
    uint64_t tcp_max_line_size; /* bytes */
    int64_t tcp_max_connections;
    uint64_t tcp_idle_timeout_ms;
    bool tcp_reuse_port; /* SO_REUSEPORT on the listener */
    char *tcp_tls_cert;  /* empty: plain TCP, unauthenticated */
    char *tcp_tls_key;
    char *tcp_tls_client_ca;
    uint64_t tcp_tls_handshake_timeout_ms;

    /* ingest.* */
    int ingest_ack; /* enum sg_ack_mode */

    /* event.* */
    char *event_key_field;
    char *event_key_fallback; /* empty: no fallback */
    char *event_time_field;
    int event_time_unit;                  /* enum sg_time_unit of numeric times */
    struct sg_strlist event_value_fields; /* empty: every numeric top-level field */
    int64_t event_max_fields;             /* numeric fields kept per event */
    uint64_t event_max_key_size;          /* bytes */

    /* output.* */
    char *output_file; /* path, "-" for stdout, empty: off */

    char *output_results_file;     /* window results; path, "-" for stdout, empty: off */
    char *output_late_file;        /* late events as received; path, empty: off */
    char *output_dead_letter_file; /* records a writer gave up on; path, empty: off */
    char *output_anomaly_file;     /* results with an anomalous field; path, empty: off */

    /* kafka.* */
    char *kafka_brokers;             /* bootstrap list, "embedded", or empty: off */
    char *kafka_raw_topic;           /* empty: raw stream off */
    char *kafka_agg_topic;           /* empty: results off */
    char *kafka_late_topic;          /* empty: off */
    char *kafka_anomaly_topic;       /* results with an anomalous field; empty: off */
    int64_t kafka_partitions;        /* embedded cluster's topics */
    bool kafka_client_id_header;     /* raw records carry the TLS client's identity */
    struct sg_strlist kafka_headers; /* the event headers records carry; empty: none */
    struct sg_strlist kafka_rdkafka; /* "name=value" librdkafka properties */
    char *kafka_group_id;            /* the aggregators' consumer group */

    /* tablestore.* */
    char *tablestore_endpoint; /* empty: off */
    char *tablestore_instance;
    char *tablestore_access_key_id;
    char *tablestore_access_key_secret; /* never logged */
    char *tablestore_access_key_secret_file;
    char *tablestore_sts_token;
    char *tablestore_results_table; /* empty: results off */
    char *tablestore_raw_table;     /* empty: raw off */
    bool tablestore_create_tables;
    int64_t tablestore_max_in_flight;
    uint64_t tablestore_linger_ms;
    uint64_t tablestore_request_timeout_ms;
    int64_t tablestore_max_retries;
    uint64_t tablestore_retry_backoff_ms;
    uint64_t tablestore_retry_backoff_max_ms;
    char *tablestore_time_index; /* "auto": <results_table>_by_time; empty: off */
    int64_t tablestore_index_shards;
    uint64_t query_timeout_ms;
    int64_t query_max_rows;

    /* window.* */
    int window_type; /* enum sg_window_type */
    uint64_t window_size_ms;
    uint64_t window_slide_ms; /* hopping */
    uint64_t window_gap_ms;   /* session */
    uint64_t window_allowed_lateness_ms;
    uint64_t window_idle_timeout_ms;    /* watermark advances with the wall clock after this */
    uint64_t window_emit_interval_ms;   /* early firing; 0: off */
    int window_time;                    /* enum sg_time_mode */
    struct sg_strlist window_quantiles; /* "p50", "p99.9", ... */
    char *window_distinct_field;        /* empty: off */
    int64_t window_distinct_precision;

    /* predict.* */
    bool predict_enabled;
    struct sg_strlist predict_fields; /* empty: every numeric field */
    /* Decimal numbers, checked by sg_config_validate (read them with sg_parse_real). */
    char *predict_alpha, *predict_beta, *predict_anomaly_threshold, *predict_gamma;
    int64_t predict_season; /* windows per season; 0: none */
    int64_t predict_warmup;
    bool predict_restore;          /* read new keys' models back from Tablestore */
    int64_t predict_restore_reads; /* in flight at once */
    int64_t predict_restore_queue; /* keys waiting */

    /* stream.* */
    int64_t stream_max_keys;
    uint64_t stream_key_idle_timeout_ms;
    int64_t stream_partitions;

    /* limits.* */
    uint64_t limits_memory;         /* bytes: the memory budget */
    int64_t limits_high_watermark;  /* percent of limits_memory: ingest pauses at it */
    int64_t limits_low_watermark;   /* percent of limits_memory: ingest resumes under it */
    int64_t limits_streams_share;   /* percent of limits_memory: new keys refused past it */
    int64_t limits_results_share;   /* percent of limits_memory: windows wait past it (queues) */
    uint64_t limits_retry_after_ms; /* Retry-After sent with a pushback 503 */

    /* log.* */
    int log_level;                      /* enum sg_log_level */
    uint64_t log_bad_input_interval_ms; /* at most one bad-input line per interval and reason */

    /* shutdown.* */
    uint64_t shutdown_timeout_ms; /* drain deadline after SIGTERM */

    /* Not an option: filled by sg_config_load. The names of the STREAMGATE_* environment
     * variables that no option has, in environment order. They are not errors (Kubernetes sets
     * STREAMGATE_SERVICE_HOST, STREAMGATE_PORT_8080_TCP, ... in every pod of a Service named
     * streamgate); the caller warns about each once its log is set up. Only names are kept: a
     * value might be a misspelt option's secret. */
    struct sg_strlist unknown_env;
};

/* What the command line asked for besides options. */
struct sg_cli {
    const char *config_file; /* --config FILE, or NULL */
    bool check_config;       /* --check-config */
    bool version;            /* --version */
    bool help;               /* --help */
    bool options_markdown;   /* --options-markdown: print the README's option table */
    bool metrics_markdown;   /* --metrics-markdown: print the README's metric table */
    /* Set by a failed sg_config_load when argv itself did not parse (an unknown flag, a flag
     * without its value, a stray argument): a mistake of whoever typed the command line. */
    bool bad_usage;
};

/* Sets every option to its default, overwriting `cfg` without freeing what it held (call
 * sg_config_free first to reuse one). The struct owns its strings; free with sg_config_free,
 * which is safe on a zeroed struct and leaves the struct zeroed. */
void sg_config_defaults(struct sg_config *cfg);
void sg_config_free(struct sg_config *cfg);

/* Builds the configuration from defaults, the file named by --config, `envp` (NULL-terminated
 * "NAME=value" strings) and `argv`, then validates it. `cfg` and `cli` are outputs (their old
 * contents are not freed). When --help, --version, --options-markdown or --metrics-markdown is
 * given, returns 0 right after reading argv (defaults only; no file, env or validation). A
 * STREAMGATE_* variable that no option has is not an error: its name goes to cfg->unknown_env.
 * Returns 0, -ENOMEM, or -EINVAL with a message naming the bad option, its source and why in
 * `errstr` (cli->bad_usage tells when argv itself did not parse); on failure `cfg` is left freed
 * and zeroed. */
int sg_config_load(struct sg_config *cfg, struct sg_cli *cli, int argc, char **argv, char **envp,
                   char *errstr, size_t errstr_size);

/* SIGHUP: `next` is the configuration loaded (and validated) again, from the same file,
 * environment and flags. Returns 0 when every option that differs from `running` may change
 * live, with their names, comma-separated, in `changed` ("" when none differs); otherwise
 * -EINVAL, naming the first option that needs a restart in errstr. */
int sg_config_reload_check(const struct sg_config *running, const struct sg_config *next,
                           char *changed, size_t changed_size, char *errstr, size_t errstr_size);
/* Moves the live options' values from `next` into `running` (the replaced ones go to `next`,
 * which the caller frees). */
void sg_config_take_live(struct sg_config *running, struct sg_config *next);
/* A hash of every option's value, shown in /v1/info to tell configurations apart. */
uint64_t sg_config_hash(const struct sg_config *cfg);

/* Applies a JSON document (the config file's contents) to `cfg`. Unknown options are errors. */
int sg_config_apply_json(struct sg_config *cfg, const char *json, size_t len, char *errstr,
                         size_t errstr_size);
/* Sets one option from its textual form, by dotted name. */
int sg_config_set(struct sg_config *cfg, const char *name, const char *value, char *errstr,
                  size_t errstr_size);
/* Checks cross-option constraints (addresses parse, limits positive, ...). */
int sg_config_validate(const struct sg_config *cfg, char *errstr, size_t errstr_size);

/* The headers kafka.headers can put on a record, as bits of a mask. */
enum sg_kafka_header {
    SG_KAFKA_HDR_CONTENT_TYPE = 1u << 0, /* content-type: application/json */
    SG_KAFKA_HDR_TRANSPORT = 1u << 1,    /* transport: http|tcp */
    SG_KAFKA_HDR_RECEIVED_AT = 1u << 2,  /* received-at: <epoch ms> */
    SG_KAFKA_HDR_CLIENT_ID = 1u << 3,    /* client-id: the TLS client's identity */
};

/* Turns kafka.headers (and kafka.client_id_header, which adds client-id) into a mask of
 * enum sg_kafka_header bits. Returns 0, or -EINVAL with the unknown name in `errstr`. */
int sg_config_kafka_headers(const struct sg_config *cfg, unsigned *mask, char *errstr,
                            size_t errstr_size);

/* "p50", "p99.9" -> 0.5, 0.999. Accepts pX with 0 < X <= 100. Returns 0 or -EINVAL. */
int sg_parse_quantile(const char *s, double *q);
/* A decimal number v with lo < v <= hi. Returns 0 or -EINVAL. */
int sg_parse_real(const char *s, double lo, double hi, double *out);
/* "250ms", "5s", "2m", "1h" or plain milliseconds. Returns 0 or -EINVAL. */
int sg_parse_duration_ms(const char *s, uint64_t *out);
/* "64KiB", "16MiB", "1GiB", "512B", "10KB" or plain bytes. Returns 0 or -EINVAL. */
int sg_parse_size(const char *s, uint64_t *out);
/* Splits "host:port" or "[v6]:port". Returns 0 or -EINVAL. `host` gets at most hostlen-1 chars. */
int sg_parse_hostport(const char *s, char *host, size_t hostlen, int *port);

void sg_config_print_help(FILE *out, const char *argv0);
/* The option table as a Markdown table, exactly as README.md carries it. */
void sg_config_print_markdown(FILE *out);

#endif
