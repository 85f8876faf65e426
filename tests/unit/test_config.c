/* Unit tests for the configuration module: value parsers, the option table, the JSON file,
 * environment variables, flags, precedence, validation, --help and the Markdown table. */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/core/config_internal.h"
#include "streamgate/common.h"
#include "streamgate/config.h"
#include "streamgate/event.h"

#define assert_contains(hay, needle)                                                               \
    cr_assert(strstr((hay), (needle)) != NULL, "expected \"%s\" in \"%s\"", (needle), (hay))

static char errbuf[512];

/* ---- helpers ---- */

static void cfg_init(struct sg_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    sg_config_defaults(cfg);
}

static int set(struct sg_config *cfg, const char *name, const char *value)
{
    errbuf[0] = '\0';
    return sg_config_set(cfg, name, value, errbuf, sizeof(errbuf));
}

static int apply(struct sg_config *cfg, const char *json)
{
    errbuf[0] = '\0';
    return sg_config_apply_json(cfg, json, strlen(json), errbuf, sizeof(errbuf));
}

/* Runs sg_config_load with argv = {"streamgate", args...} and the given environment. */
static int load(struct sg_config *cfg, struct sg_cli *cli, const char *const *args,
                const char *const *env)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"streamgate";
    for (size_t i = 0; args != NULL && args[i] != NULL; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    char *envp[64];
    size_t n = 0;
    for (size_t i = 0; env != NULL && env[i] != NULL; i++)
        envp[n++] = (char *)env[i];
    envp[n] = NULL;
    errbuf[0] = '\0';
    return sg_config_load(cfg, cli, argc, argv, envp, errbuf, sizeof(errbuf));
}

/* Writes `text` to a fresh temporary file; the caller unlinks it. */
static void write_temp(char *path, size_t len, const char *text)
{
    snprintf(path, len, "/tmp/sg_test_config_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    size_t n = strlen(text);
    cr_assert_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
}

static char *capture(void (*fn)(FILE *, const char *), const char *arg, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    cr_assert_not_null(f);
    fn(f, arg);
    fclose(f);
    return buf;
}

static void print_md(FILE *out, const char *unused)
{
    (void)unused;
    sg_config_print_markdown(out);
}

/* ---- durations ---- */

Test(duration, valid)
{
    static const struct {
        const char *in;
        uint64_t want;
    } cases[] = {
        {"0", 0},
        {"250", 250},
        {"250ms", 250},
        {"5s", 5000},
        {"2m", 120000},
        {"1h", 3600000},
        {"0s", 0},
        {"18446744073709551615", UINT64_MAX},
        {"18446744073709551615ms", UINT64_MAX},
        {"5124095576030h", 5124095576030ull * 3600000},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 12345;
        cr_assert_eq(sg_parse_duration_ms(cases[i].in, &v), 0, "%s", cases[i].in);
        cr_assert_eq(v, cases[i].want, "%s: got %llu", cases[i].in, (unsigned long long)v);
    }
}

Test(duration, invalid)
{
    static const char *const cases[] = {
        "",   "-1",   "-5s", "+5s", "5x", "5 s",  " 5s",  "5s ",   "1.5s", "s",
        "ms", "5sec", "5S",  "5MS", "5d", "0x10", "5ms5", "1h30m", "5,0s",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 777;
        cr_assert_eq(sg_parse_duration_ms(cases[i], &v), -EINVAL, "\"%s\" accepted", cases[i]);
        cr_assert_eq(v, 777, "output written for \"%s\"", cases[i]);
    }
    uint64_t v;
    cr_assert_eq(sg_parse_duration_ms(NULL, &v), -EINVAL);
}

Test(duration, overflow)
{
    static const char *const cases[] = {
        "18446744073709551616", "18446744073709551616ms", "99999999999999999999999s",
        "18446744073709552s",   "307445734561826m",       "5124095576031h",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v;
        cr_assert_eq(sg_parse_duration_ms(cases[i], &v), -EINVAL, "\"%s\" accepted", cases[i]);
    }
}

/* ---- sizes ---- */

Test(size, valid)
{
    static const struct {
        const char *in;
        uint64_t want;
    } cases[] = {
        {"0", 0},
        {"512", 512},
        {"512B", 512},
        {"64KiB", 64 * 1024},
        {"16MiB", 16 * 1024 * 1024},
        {"1GiB", 1024ull * 1024 * 1024},
        {"2TiB", 2ull << 40},
        {"10KB", 10000},
        {"3MB", 3000000},
        {"1GB", 1000000000},
        {"1TB", 1000000000000ull},
        {"17179869183GiB", 17179869183ull << 30},
        {"18446744073709551615", UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 12345;
        cr_assert_eq(sg_parse_size(cases[i].in, &v), 0, "%s", cases[i].in);
        cr_assert_eq(v, cases[i].want, "%s: got %llu", cases[i].in, (unsigned long long)v);
    }
}

Test(size, invalid)
{
    static const char *const cases[] = {
        "",      "12 parsecs", "1K",    "1M",    "1G",     "1k",   "1kib", "1KIB",
        "1 KiB", "-1",         "-1KiB", "+1",    "1.5MiB", "KiB",  "B",    "0x10",
        " 1",    "1 ",         "1b",    "1KiBB", "1iB",    "1Kib", "1e3",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 777;
        cr_assert_eq(sg_parse_size(cases[i], &v), -EINVAL, "\"%s\" accepted", cases[i]);
        cr_assert_eq(v, 777, "output written for \"%s\"", cases[i]);
    }
    uint64_t v;
    cr_assert_eq(sg_parse_size(NULL, &v), -EINVAL);
}

Test(size, overflow)
{
    static const char *const cases[] = {
        "18446744073709551616", "18446744073709551616B", "17179869184GiB",
        "16777216TiB",          "18446744073709552KB",   "100000000000000000000",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v;
        cr_assert_eq(sg_parse_size(cases[i], &v), -EINVAL, "\"%s\" accepted", cases[i]);
    }
}

/* ---- bool ---- */

Test(bool, values)
{
    static const char *const yes[] = {"true", "yes", "1"};
    static const char *const no[] = {"false", "no", "0"};
    static const char *const bad[] = {"", "TRUE", "True", "on", "off", "2", "y", " true", "-1"};
    for (size_t i = 0; i < 3; i++) {
        bool b = false;
        cr_assert_eq(sg_config__parse_bool(yes[i], &b), 0);
        cr_assert(b, "%s", yes[i]);
        b = true;
        cr_assert_eq(sg_config__parse_bool(no[i], &b), 0);
        cr_assert(!b, "%s", no[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bool b;
        cr_assert_eq(sg_config__parse_bool(bad[i], &b), -EINVAL, "\"%s\" accepted", bad[i]);
    }
}

/* ---- host:port ---- */

Test(hostport, valid)
{
    static const struct {
        const char *in, *host;
        int port;
    } cases[] = {
        {"127.0.0.1:8080", "127.0.0.1", 8080},
        {"localhost:80", "localhost", 80},
        {"[::1]:9000", "::1", 9000},
        {"0.0.0.0:0", "0.0.0.0", 0},
        {"[fe80::1%eth0]:1", "fe80::1%eth0", 1},
        {"example.com:65535", "example.com", 65535},
        {"h:00080", "h", 80},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char host[64] = "";
        int port = -1;
        cr_assert_eq(sg_parse_hostport(cases[i].in, host, sizeof(host), &port), 0, "%s",
                     cases[i].in);
        cr_assert_str_eq(host, cases[i].host);
        cr_assert_eq(port, cases[i].port, "%s: port %d", cases[i].in, port);
    }
}

Test(hostport, invalid)
{
    static const char *const cases[] = {
        "",          ":8080",    "127.0.0.1", "127.0.0.1:",  "127.0.0.1:65536", "host:-1",
        "host:+80",  "host:80x", "host:8 0",  "host:123456", "::1:9000",        "[::1]9000",
        "[::1]",     "[]:80",    "[::1:80",   "ho st:80",    "host :80",        "a[b]:80",
        "host:0x50", "[::1]:",   "host:80\n", "host/x:80",   "host:99999",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char host[64];
        int port;
        cr_assert_eq(sg_parse_hostport(cases[i], host, sizeof(host), &port), -EINVAL,
                     "\"%s\" accepted", cases[i]);
    }
    cr_assert_eq(sg_parse_hostport(NULL, NULL, 0, NULL), -EINVAL);
}

Test(hostport, host_buffer)
{
    char host[10];
    int port;
    /* The host fits exactly (9 chars + NUL). */
    cr_assert_eq(sg_parse_hostport("123456789:1", host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "123456789");
    /* One more character would be truncated: refused rather than bound to the wrong host. */
    cr_assert_eq(sg_parse_hostport("1234567890:1", host, sizeof(host), &port), -EINVAL);
    /* NULL outputs only validate. */
    cr_assert_eq(sg_parse_hostport("localhost:1", NULL, 0, NULL), 0);
}

/* ---- defaults and freeing ---- */

Test(defaults, every_field)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    cr_assert_str_eq(cfg.http_listen, "127.0.0.1:8080");
    cr_assert_eq(cfg.http_max_body_size, 4u << 20);
    cr_assert_eq(cfg.http_max_decoded_size, 16u << 20);
    cr_assert_eq(cfg.http_max_header_size, 16u << 10);
    cr_assert_eq(cfg.http_max_connections, 10000);
    cr_assert_eq(cfg.http_header_timeout_ms, 10000);
    cr_assert_eq(cfg.http_body_timeout_ms, 30000);
    cr_assert_eq(cfg.http_idle_timeout_ms, 60000);
    cr_assert_eq(cfg.http_max_errors, 100);
    cr_assert_eq(cfg.http_auth_tokens.count, 0);
    cr_assert_null(cfg.http_auth_tokens.items);
    cr_assert_str_eq(cfg.http_metrics_token, "");
    cr_assert_str_eq(cfg.tcp_listen, "127.0.0.1:9000");
    cr_assert_eq(cfg.tcp_max_line_size, 1u << 20);
    cr_assert_eq(cfg.tcp_max_connections, 100000);
    cr_assert_eq(cfg.tcp_idle_timeout_ms, 300000);
    cr_assert_eq(cfg.http_ack_timeout_ms, 30000);
    cr_assert(!cfg.http_reuse_port);
    cr_assert(!cfg.tcp_reuse_port);
    cr_assert_eq(cfg.ingest_ack, SG_ACK_ACCEPTED);
    cr_assert_str_eq(cfg.event_key_field, "key");
    cr_assert_str_eq(cfg.event_key_fallback, "id");
    cr_assert_str_eq(cfg.event_time_field, "ts");
    cr_assert_eq(cfg.event_time_unit, SG_TIME_UNIT_MS);
    cr_assert_eq(cfg.event_value_fields.count, 0);
    cr_assert_eq(cfg.event_max_fields, 32);
    cr_assert_eq(cfg.event_max_key_size, 256);
    cr_assert_str_eq(cfg.output_file, "");
    cr_assert_eq(cfg.log_level, SG_LOG_INFO);
    cr_assert_eq(cfg.log_bad_input_interval_ms, 1000);
    cr_assert_eq(cfg.shutdown_timeout_ms, 10000);
    cr_assert_eq(cfg.limits_memory, 256u << 20);
    cr_assert_eq(cfg.limits_high_watermark, 70);
    cr_assert_eq(cfg.limits_low_watermark, 50);
    cr_assert_eq(cfg.limits_streams_share, 40);
    cr_assert_eq(cfg.limits_results_share, 25);
    cr_assert_eq(cfg.limits_retry_after_ms, 1000);
    cr_assert_str_eq(cfg.output_results_file, "");
    cr_assert_str_eq(cfg.output_late_file, "");
    cr_assert_eq(cfg.window_type, SG_WINDOW_TUMBLING);
    cr_assert_eq(cfg.window_size_ms, 10000);
    cr_assert_eq(cfg.window_slide_ms, 0);
    cr_assert_eq(cfg.window_gap_ms, 0);
    cr_assert_eq(cfg.window_allowed_lateness_ms, 0);
    cr_assert_eq(cfg.window_idle_timeout_ms, 10000);
    cr_assert_eq(cfg.window_emit_interval_ms, 0);
    cr_assert_eq(cfg.window_time, SG_TIME_EVENT);
    cr_assert_eq(cfg.window_quantiles.count, 3);
    cr_assert_str_eq(cfg.window_quantiles.items[2], "p99");
    cr_assert_str_eq(cfg.window_distinct_field, "");
    cr_assert_eq(cfg.window_distinct_precision, 12);
    cr_assert_eq(cfg.stream_max_keys, 1000000);
    cr_assert_eq(cfg.stream_key_idle_timeout_ms, 60000);
    cr_assert_eq(cfg.stream_partitions, 12);
    cr_assert_str_eq(cfg.kafka_brokers, "");
    cr_assert_str_eq(cfg.kafka_raw_topic, "events");
    cr_assert_str_eq(cfg.kafka_agg_topic, "aggregates");
    cr_assert_str_eq(cfg.kafka_late_topic, "");
    cr_assert_eq(cfg.kafka_partitions, 12);
    cr_assert_eq(cfg.kafka_rdkafka.count, 0);
    unsigned hdrs;
    cr_assert_eq(sg_config_kafka_headers(&cfg, &hdrs, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
    cr_assert_eq(hdrs, 0u);
    cr_assert_eq(sg_config_validate(&cfg, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
    sg_config_free(&cfg);
}

Test(defaults, every_default_parses)
{
    size_t n;
    const struct sg_config_option *opts = sg_config__options(&n);
    cr_assert_eq(n, 105);
    for (size_t i = 0; i < n; i++) {
        struct sg_config cfg;
        cfg_init(&cfg);
        cr_assert_eq(set(&cfg, opts[i].name, opts[i].def), 0, "%s: %s", opts[i].name, errbuf);
        sg_config_free(&cfg);
    }
}

Test(defaults, free_is_safe_and_complete)
{
    struct sg_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    sg_config_free(&cfg); /* zeroed */
    sg_config_free(NULL);
    sg_config_defaults(&cfg);
    cr_assert_eq(set(&cfg, "http.auth_tokens", "a,b,c"), 0);
    cr_assert_eq(set(&cfg, "output.file", "/tmp/x"), 0);
    sg_config_free(&cfg);
    cr_assert_null(cfg.http_listen);
    cr_assert_null(cfg.output_file);
    cr_assert_null(cfg.http_auth_tokens.items);
    cr_assert_eq(cfg.http_auth_tokens.count, 0);
    sg_config_free(&cfg); /* twice */
    /* free then defaults again: LeakSanitizer checks nothing is lost. */
    sg_config_defaults(&cfg);
    cr_assert_str_eq(cfg.http_listen, "127.0.0.1:8080");
    sg_config_free(&cfg);
}

/* ---- the table and its names ---- */

Test(table, names)
{
    struct sg_config_option opt = {.name = "http.max_body_size"};
    char buf[128];
    sg_config__env_name(&opt, buf, sizeof(buf));
    cr_assert_str_eq(buf, "STREAMGATE_HTTP_MAX_BODY_SIZE");
    sg_config__flag_name(&opt, buf, sizeof(buf));
    cr_assert_str_eq(buf, "--http-max-body-size");
    cr_assert_not_null(sg_config__find("log.bad_input_interval"));
    cr_assert_null(sg_config__find("log"));
    cr_assert_null(sg_config__find("http.lisen"));
}

Test(table, unique_names_and_clean_help)
{
    size_t n;
    const struct sg_config_option *opts = sg_config__options(&n);
    for (size_t i = 0; i < n; i++) {
        char ei[128], fi[128];
        sg_config__env_name(&opts[i], ei, sizeof(ei));
        sg_config__flag_name(&opts[i], fi, sizeof(fi));
        cr_assert(strchr(opts[i].help, '|') == NULL && strchr(opts[i].help, '`') == NULL,
                  "%s: help text breaks the Markdown table", opts[i].name);
        cr_assert(strchr(opts[i].help, '\n') == NULL, "%s: help is one line", opts[i].name);
        cr_assert_neq(opts[i].help[0], '\0');
        for (size_t j = i + 1; j < n; j++) {
            char ej[128], fj[128];
            sg_config__env_name(&opts[j], ej, sizeof(ej));
            sg_config__flag_name(&opts[j], fj, sizeof(fj));
            cr_assert_str_neq(ei, ej);
            cr_assert_str_neq(fi, fj);
        }
    }
}

/* ---- sg_config_set, one type at a time ---- */

Test(set, string)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    cr_assert_eq(set(&cfg, "http.listen", "0.0.0.0:1"), 0);
    cr_assert_str_eq(cfg.http_listen, "0.0.0.0:1");
    cr_assert_eq(set(&cfg, "output.file", ""), 0);
    cr_assert_str_eq(cfg.output_file, "");
    cr_assert_eq(set(&cfg, "event.key_field", "device id"), 0);
    cr_assert_str_eq(cfg.event_key_field, "device id");
    sg_config_free(&cfg);
}

Test(set, int)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    cr_assert_eq(set(&cfg, "http.max_connections", "7"), 0);
    cr_assert_eq(cfg.http_max_connections, 7);
    cr_assert_eq(set(&cfg, "http.max_connections", "-3"), 0); /* range is validation's job */
    cr_assert_eq(cfg.http_max_connections, -3);
    cr_assert_eq(set(&cfg, "http.max_errors", "9223372036854775807"), 0);
    cr_assert_eq(cfg.http_max_errors, INT64_MAX);
    cr_assert_eq(set(&cfg, "http.max_errors", "-9223372036854775808"), 0);
    cr_assert_eq(cfg.http_max_errors, INT64_MIN);

    static const char *const bad[] = {"",    "x",  "1.0", "1e3", "+1",
                                      "- 1", "1 ", "0x1", "--1", "12abc"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(set(&cfg, "event.max_fields", bad[i]), -EINVAL, "\"%s\" accepted", bad[i]);
        assert_contains(errbuf, "event.max_fields: invalid integer");
    }
    cr_assert_eq(set(&cfg, "http.max_errors", "9223372036854775808"), -EINVAL);
    assert_contains(errbuf, "out of range");
    cr_assert_eq(set(&cfg, "http.max_errors", "-9223372036854775809"), -EINVAL);
    assert_contains(errbuf, "out of range");
    cr_assert_eq(cfg.event_max_fields, 32, "a failed set leaves the value alone");
    sg_config_free(&cfg);
}

Test(set, duration)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    cr_assert_eq(set(&cfg, "http.idle_timeout", "2m"), 0);
    cr_assert_eq(cfg.http_idle_timeout_ms, 120000);
    cr_assert_eq(set(&cfg, "shutdown.timeout", "1500"), 0);
    cr_assert_eq(cfg.shutdown_timeout_ms, 1500);
    cr_assert_eq(set(&cfg, "shutdown.timeout", "-1s"), -EINVAL);
    cr_assert_str_eq(errbuf, "shutdown.timeout: invalid duration \"-1s\" (expected e.g. 250ms, "
                             "5s, 2m, 1h or plain milliseconds)");
    cr_assert_eq(set(&cfg, "shutdown.timeout", "99999999999999999999"), -EINVAL);
    cr_assert_str_eq(errbuf,
                     "shutdown.timeout: invalid duration \"99999999999999999999\" (out of range)");
    cr_assert_eq(cfg.shutdown_timeout_ms, 1500);
    sg_config_free(&cfg);
}

Test(set, size)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    cr_assert_eq(set(&cfg, "http.max_body_size", "8MiB"), 0);
    cr_assert_eq(cfg.http_max_body_size, 8u << 20);
    cr_assert_eq(set(&cfg, "tcp.max_line_size", "10KB"), 0);
    cr_assert_eq(cfg.tcp_max_line_size, 10000);
    cr_assert_eq(set(&cfg, "http.max_body_size", "12 parsecs"), -EINVAL);
    cr_assert_str_eq(errbuf, "http.max_body_size: invalid size \"12 parsecs\" (expected e.g. 512, "
                             "512B, 64KiB, 16MiB, 1GiB or 10MB)");
    cr_assert_eq(set(&cfg, "http.max_body_size", "17179869184GiB"), -EINVAL);
    assert_contains(errbuf, "out of range");
    cr_assert_eq(cfg.http_max_body_size, 8u << 20);
    sg_config_free(&cfg);
}

Test(set, list)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    cr_assert_eq(set(&cfg, "http.auth_tokens", " a , b,c ,\td "), 0);
    cr_assert_eq(cfg.http_auth_tokens.count, 4);
    cr_assert_str_eq(cfg.http_auth_tokens.items[0], "a");
    cr_assert_str_eq(cfg.http_auth_tokens.items[1], "b");
    cr_assert_str_eq(cfg.http_auth_tokens.items[2], "c");
    cr_assert_str_eq(cfg.http_auth_tokens.items[3], "d");
    cr_assert_eq(set(&cfg, "http.auth_tokens", "one token"), 0);
    cr_assert_eq(cfg.http_auth_tokens.count, 1);
    cr_assert_str_eq(cfg.http_auth_tokens.items[0], "one token");
    cr_assert_eq(set(&cfg, "http.auth_tokens", ""), 0);
    cr_assert_eq(cfg.http_auth_tokens.count, 0);
    cr_assert_eq(set(&cfg, "event.value_fields", "  "), 0);
    cr_assert_eq(cfg.event_value_fields.count, 0);
    cr_assert_eq(set(&cfg, "event.value_fields", "temp,hum"), 0);

    static const char *const bad[] = {"a,,b", "a,", ",a", ",", "a, ,b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(set(&cfg, "event.value_fields", bad[i]), -EINVAL, "\"%s\" accepted", bad[i]);
        assert_contains(errbuf, "event.value_fields: invalid list");
    }
    cr_assert_eq(cfg.event_value_fields.count, 2, "a failed set leaves the list alone");
    cr_assert_str_eq(cfg.event_value_fields.items[1], "hum");
    sg_config_free(&cfg);
}

Test(set, level)
{
    static const struct {
        const char *in;
        enum sg_log_level want;
    } cases[] = {{"debug", SG_LOG_DEBUG},
                 {"info", SG_LOG_INFO},
                 {"warn", SG_LOG_WARN},
                 {"error", SG_LOG_ERROR}};
    struct sg_config cfg;
    cfg_init(&cfg);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(set(&cfg, "log.level", cases[i].in), 0);
        cr_assert_eq(cfg.log_level, cases[i].want);
    }
    static const char *const bad[] = {"", "INFO", "warning", "off", "trace", "0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(set(&cfg, "log.level", bad[i]), -EINVAL, "\"%s\" accepted", bad[i]);
        assert_contains(errbuf, "log.level: invalid value");
        assert_contains(errbuf, "debug, info, warn or error");
    }
    cr_assert_eq(cfg.log_level, SG_LOG_ERROR);
    sg_config_free(&cfg);
}

Test(set, time_unit)
{
    static const struct {
        const char *in;
        enum sg_time_unit want;
    } cases[] = {{"ms", SG_TIME_UNIT_MS},
                 {"s", SG_TIME_UNIT_S},
                 {"us", SG_TIME_UNIT_US},
                 {"ns", SG_TIME_UNIT_NS}};
    struct sg_config cfg;
    cfg_init(&cfg);
    for (size_t i = 0; i < SG_ARRAY_SIZE(cases); i++) {
        cr_assert_eq(set(&cfg, "event.time_unit", cases[i].in), 0, "%s", errbuf);
        cr_assert_eq(cfg.event_time_unit, cases[i].want);
    }
    static const char *const bad[] = {"", "MS", "sec", "seconds", "µs", "1000"};
    for (size_t i = 0; i < SG_ARRAY_SIZE(bad); i++) {
        cr_assert_eq(set(&cfg, "event.time_unit", bad[i]), -EINVAL, "\"%s\" accepted", bad[i]);
        assert_contains(errbuf, "event.time_unit: invalid value");
        assert_contains(errbuf, "ms, s, us or ns");
    }
    cr_assert_eq(cfg.event_time_unit, SG_TIME_UNIT_NS, "a failed set leaves the unit alone");
    sg_config_free(&cfg);
}

Test(set, unknown_and_null)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    cr_assert_eq(set(&cfg, "http.lisen", "x"), -EINVAL);
    cr_assert_str_eq(errbuf, "unknown option http.lisen");
    cr_assert_eq(set(&cfg, "http", "x"), -EINVAL);
    cr_assert_str_eq(errbuf, "unknown option http");
    cr_assert_eq(set(&cfg, "http.listen", NULL), -EINVAL);
    assert_contains(errbuf, "http.listen");
    cr_assert_eq(set(&cfg, NULL, "x"), -EINVAL);
    sg_config_free(&cfg);
}

Test(set, message_quotes_safely)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    cr_assert_eq(set(&cfg, "http.max_body_size", "1\n2"), -EINVAL);
    cr_assert(strchr(errbuf, '\n') == NULL, "%s", errbuf);
    assert_contains(errbuf, "\"1?2\"");
    char big[300];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(set(&cfg, "http.max_body_size", big), -EINVAL);
    assert_contains(errbuf, "xxx...\"");
    cr_assert_lt(strlen(errbuf), 200);
    sg_config_free(&cfg);
}

/* ---- the JSON file ---- */

Test(json, predict_numbers_as_numbers_or_strings)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    cr_assert_eq(apply(&cfg, "{\"predict\": {\"alpha\": 0.3, \"beta\": \"0.01\", "
                             "\"anomaly_threshold\": 5, \"fields\": [\"temp\"]}}"),
                 0, "%s", errbuf);
    cr_assert_str_eq(cfg.predict_alpha, "0.29999999999999999");
    cr_assert_str_eq(cfg.predict_beta, "0.01");
    cr_assert_str_eq(cfg.predict_anomaly_threshold, "5");
    cr_assert_eq(sg_config_validate(&cfg, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
    sg_config_free(&cfg);
    cfg_init(&cfg);
    cr_assert_neq(apply(&cfg, "{\"predict\": {\"alpha\": true}}"), 0);
    assert_contains(errbuf, "predict.alpha");
    assert_contains(errbuf, "a number or a string");
    sg_config_free(&cfg);
}

Test(json, nested_objects)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    int rc = apply(&cfg, "{\n"
                         "  \"http\": {\"listen\": \"0.0.0.0:80\", \"max_body_size\": \"8MiB\",\n"
                         "           \"max_decoded_size\": 1000, \"max_connections\": 5,\n"
                         "           \"idle_timeout\": \"2m\", \"body_timeout\": 1500,\n"
                         "           \"auth_tokens\": [\"t1\", \"t 2\"]},\n"
                         "  \"tcp\": {\"listen\": \"\", \"max_connections\": \"6\"},\n"
                         "  \"event\": {\"value_fields\": [\"temp\"], \"max_fields\": 1e1},\n"
                         "  \"log\": {\"level\": \"debug\"},\n"
                         "  \"output\": {\"file\": \"-\"},\n"
                         "  \"shutdown\": {}\n"
                         "}");
    cr_assert_eq(rc, 0, "%s", errbuf);
    cr_assert_str_eq(cfg.http_listen, "0.0.0.0:80");
    cr_assert_eq(cfg.http_max_body_size, 8u << 20);
    cr_assert_eq(cfg.http_max_decoded_size, 1000);
    cr_assert_eq(cfg.http_max_connections, 5);
    cr_assert_eq(cfg.http_idle_timeout_ms, 120000);
    cr_assert_eq(cfg.http_body_timeout_ms, 1500);
    cr_assert_eq(cfg.http_auth_tokens.count, 2);
    cr_assert_str_eq(cfg.http_auth_tokens.items[0], "t1");
    cr_assert_str_eq(cfg.http_auth_tokens.items[1], "t 2");
    cr_assert_str_eq(cfg.tcp_listen, "");
    cr_assert_eq(cfg.tcp_max_connections, 6);
    cr_assert_eq(cfg.event_value_fields.count, 1);
    cr_assert_str_eq(cfg.event_value_fields.items[0], "temp");
    cr_assert_eq(cfg.event_max_fields, 10);
    cr_assert_eq(cfg.log_level, SG_LOG_DEBUG);
    cr_assert_str_eq(cfg.output_file, "-");
    /* Untouched options keep their defaults. */
    cr_assert_eq(cfg.shutdown_timeout_ms, 10000);
    cr_assert_str_eq(cfg.event_key_field, "key");
    /* An empty array empties a list. */
    cr_assert_eq(apply(&cfg, "{\"http\":{\"auth_tokens\":[]}}"), 0, "%s", errbuf);
    cr_assert_eq(cfg.http_auth_tokens.count, 0);
    cr_assert_eq(apply(&cfg, "{}"), 0);
    sg_config_free(&cfg);
}

Test(json, unknown_keys)
{
    static const struct {
        const char *doc, *msg;
    } cases[] = {
        {"{\"htp\": {\"listen\": \"a:1\"}}", "unknown option htp (from config file)"},
        {"{\"verbose\": true}", "unknown option verbose (from config file)"},
        {"{\"http\": {\"lisen\": \"a:1\"}}", "unknown option http.lisen (from config file)"},
        {"{\"http\": {\"listen\": \"a:1\", \"max_body\": 1}}",
         "unknown option http.max_body (from config file)"},
        {"{\"http\": {\"listen\": {\"host\": \"a\"}}}",
         "http.listen: expected a string, got an object (from config file)"},
        {"{\"log\": {\"level\": \"info\", \"format\": \"json\"}}",
         "unknown option log.format (from config file)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sg_config cfg;
        cfg_init(&cfg);
        cr_assert_eq(apply(&cfg, cases[i].doc), -EINVAL, "%s", cases[i].doc);
        cr_assert_str_eq(errbuf, cases[i].msg);
        sg_config_free(&cfg);
    }
}

Test(json, wrong_types)
{
    static const struct {
        const char *doc, *msg;
    } cases[] = {
        {"{\"http\": 5}", "http: expected an object, got a number"},
        {"{\"http\": {\"listen\": 8080}}", "http.listen: expected a string, got a number"},
        {"{\"http\": {\"listen\": null}}", "http.listen: expected a string, got null"},
        {"{\"http\": {\"max_body_size\": true}}",
         "http.max_body_size: expected a number or a string, got a boolean"},
        {"{\"http\": {\"max_body_size\": [1]}}",
         "http.max_body_size: expected a number or a string, got an array"},
        {"{\"http\": {\"max_body_size\": 1.5}}", "http.max_body_size: invalid number 1.5"},
        {"{\"http\": {\"max_body_size\": -1}}", "http.max_body_size: invalid number -1"},
        {"{\"http\": {\"idle_timeout\": 1e300}}", "http.idle_timeout: invalid number"},
        {"{\"http\": {\"max_errors\": 9007199254740994}}", "http.max_errors: invalid number"},
        {"{\"http\": {\"max_body_size\": \"12 parsecs\"}}",
         "http.max_body_size: invalid size \"12 parsecs\""},
        {"{\"http\": {\"auth_tokens\": \"a,b\"}}",
         "http.auth_tokens: expected an array of strings, got a string"},
        {"{\"http\": {\"auth_tokens\": [\"a\", 2]}}",
         "http.auth_tokens[1]: expected a string, got a number"},
        {"{\"http\": {\"auth_tokens\": [\"a\", \"\"]}}", "http.auth_tokens[1]: empty string"},
        {"{\"log\": {\"level\": 1}}", "log.level: expected a string, got a number"},
        {"{\"log\": {\"level\": \"loud\"}}", "log.level: invalid value \"loud\""},
        {"{\"event\": {\"max_fields\": \"many\"}}", "event.max_fields: invalid integer \"many\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sg_config cfg;
        cfg_init(&cfg);
        cr_assert_eq(apply(&cfg, cases[i].doc), -EINVAL, "%s", cases[i].doc);
        cr_assert(strncmp(errbuf, cases[i].msg, strlen(cases[i].msg)) == 0,
                  "%s: got \"%s\", want \"%s...\"", cases[i].doc, errbuf, cases[i].msg);
        assert_contains(errbuf, "(from config file)");
        sg_config_free(&cfg);
    }
    /* A negative number is fine for an int option (validation judges it later). */
    struct sg_config cfg;
    cfg_init(&cfg);
    cr_assert_eq(apply(&cfg, "{\"http\": {\"max_errors\": -4}}"), 0, "%s", errbuf);
    cr_assert_eq(cfg.http_max_errors, -4);
    cr_assert_eq(apply(&cfg, "{\"http\": {\"max_errors\": 9007199254740992}}"), 0, "%s", errbuf);
    cr_assert_eq(cfg.http_max_errors, 9007199254740992);
    sg_config_free(&cfg);
}

Test(json, invalid_json_offset)
{
    static const struct {
        const char *doc, *msg;
    } cases[] = {
        {"{\"http\": {\"listen\": }}", "invalid JSON at byte 20 (line 1, column 21)"},
        {"{\n  \"a\": 1,\n  \"b\" 2\n}", "invalid JSON at byte 18 (line 3, column 7)"},
        {"{\"http\": {}", "invalid JSON at byte 10"},
        {"{} x", "invalid JSON at byte 3 (unexpected data after the top-level value)"},
        {"{}{}", "invalid JSON at byte 2 (unexpected data after the top-level value)"},
        {"", "empty document (expected a JSON object)"},
        {" \n ", "empty document (expected a JSON object)"},
        {"[1, 2]", "expected a JSON object at the top level, got an array"},
        {"\"http\"", "expected a JSON object at the top level, got a string"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sg_config cfg;
        cfg_init(&cfg);
        cr_assert_eq(apply(&cfg, cases[i].doc), -EINVAL, "%s", cases[i].doc);
        cr_assert(strncmp(errbuf, cases[i].msg, strlen(cases[i].msg)) == 0,
                  "%s: got \"%s\", want \"%s...\"", cases[i].doc, errbuf, cases[i].msg);
        sg_config_free(&cfg);
    }
}

Test(json, length_bounds_the_parse)
{
    /* Only the first len bytes count: the parser must not read past them. */
    struct sg_config cfg;
    cfg_init(&cfg);
    const char doc[] = "{\"log\":{\"level\":\"warn\"}}GARBAGE";
    cr_assert_eq(sg_config_apply_json(&cfg, doc, strlen(doc) - 7, errbuf, sizeof(errbuf)), 0, "%s",
                 errbuf);
    cr_assert_eq(cfg.log_level, SG_LOG_WARN);
    char *heap = malloc(2);
    memcpy(heap, "{}", 2); /* not NUL-terminated */
    cr_assert_eq(sg_config_apply_json(&cfg, heap, 2, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
    free(heap);
    sg_config_free(&cfg);
}

/* ---- sg_config_load: flags, environment, file, precedence ---- */

Test(load, defaults_only)
{
    struct sg_config cfg;
    struct sg_cli cli;
    cr_assert_eq(load(&cfg, &cli, NULL, NULL), 0, "%s", errbuf);
    cr_assert_str_eq(cfg.http_listen, "127.0.0.1:8080");
    cr_assert_null(cli.config_file);
    cr_assert(!cli.check_config && !cli.help && !cli.version && !cli.options_markdown &&
              !cli.metrics_markdown);
    sg_config_free(&cfg);
}

Test(load, flag_forms)
{
    struct sg_config cfg;
    struct sg_cli cli;
    const char *args[] = {"--http-max-body-size",
                          "8MiB",
                          "--tcp-idle-timeout=30s",
                          "--http-auth-tokens",
                          "a, b",
                          "--event-value-fields=",
                          "--output-file=-",
                          "--event-key-field=a=b",
                          "--log-level",
                          "warn",
                          "--http-max-errors",
                          "7",
                          NULL};
    cr_assert_eq(load(&cfg, &cli, args, NULL), 0, "%s", errbuf);
    cr_assert_eq(cfg.http_max_body_size, 8u << 20);
    cr_assert_eq(cfg.tcp_idle_timeout_ms, 30000);
    cr_assert_eq(cfg.http_auth_tokens.count, 2);
    cr_assert_str_eq(cfg.http_auth_tokens.items[1], "b");
    cr_assert_eq(cfg.event_value_fields.count, 0);
    cr_assert_str_eq(cfg.output_file, "-");
    cr_assert_str_eq(cfg.event_key_field, "a=b");
    cr_assert_eq(cfg.log_level, SG_LOG_WARN);
    cr_assert_eq(cfg.http_max_errors, 7);
    sg_config_free(&cfg);
}

Test(load, later_flag_wins)
{
    struct sg_config cfg;
    struct sg_cli cli;
    const char *args[] = {"--http-listen", "127.0.0.1:1", "--http-listen=127.0.0.1:2", NULL};
    cr_assert_eq(load(&cfg, &cli, args, NULL), 0, "%s", errbuf);
    cr_assert_str_eq(cfg.http_listen, "127.0.0.1:2");
    sg_config_free(&cfg);
}

Test(load, special_flags)
{
    struct sg_config cfg;
    struct sg_cli cli;
    const char *args[] = {"--check-config", "--config=/nonexistent/x.json", NULL};
    cr_assert_eq(load(&cfg, &cli, args, NULL), -EINVAL);
    cr_assert(cli.check_config);
    cr_assert_str_eq(cli.config_file, "/nonexistent/x.json");
    cr_assert_str_eq(errbuf,
                     "cannot open config file /nonexistent/x.json: No such file or directory");
    cr_assert(!cli.bad_usage, "argv itself parsed");
    cr_assert_null(cfg.http_listen, "a failed load leaves nothing allocated");
    sg_config_free(&cfg);

    /* --help, --version and the Markdown tables skip the file, env and validation. */
    const char *help[] = {"--config", "/nonexistent/x.json", "--help", NULL};
    const char *bad_env[] = {"STREAMGATE_NOPE=1", NULL};
    cr_assert_eq(load(&cfg, &cli, help, bad_env), 0, "%s", errbuf);
    cr_assert(cli.help && !cli.version);
    sg_config_free(&cfg);
    const char *version[] = {"--version", "--http-listen=", "--tcp-listen=", NULL};
    cr_assert_eq(load(&cfg, &cli, version, NULL), 0, "%s", errbuf);
    cr_assert(cli.version && !cli.help);
    sg_config_free(&cfg);
    const char *md[] = {"--options-markdown", NULL};
    cr_assert_eq(load(&cfg, &cli, md, bad_env), 0, "%s", errbuf);
    cr_assert(cli.options_markdown && !cli.metrics_markdown);
    sg_config_free(&cfg);
    const char *metrics_md[] = {"--config", "/nonexistent/x.json", "--metrics-markdown", NULL};
    cr_assert_eq(load(&cfg, &cli, metrics_md, bad_env), 0, "%s", errbuf);
    cr_assert(cli.metrics_markdown && !cli.options_markdown);
    sg_config_free(&cfg);
    const char *h[] = {"-h", NULL};
    cr_assert_eq(load(&cfg, &cli, h, NULL), 0, "%s", errbuf);
    cr_assert(cli.help);
    sg_config_free(&cfg);
    /* But argv itself must still be well-formed. */
    const char *help_bad[] = {"--help", "--bogus", NULL};
    cr_assert_eq(load(&cfg, &cli, help_bad, NULL), -EINVAL);
    cr_assert_str_eq(errbuf, "unknown option --bogus (see --help)");
    sg_config_free(&cfg);
}

Test(load, argv_errors)
{
    /* All but the last two are a command line that does not parse (bad_usage). */
    static const struct {
        const char *args[4];
        const char *msg;
    } cases[] = {
        {{"--foo", NULL}, "unknown option --foo (see --help)"},
        {{"--foo=1", NULL}, "unknown option --foo (see --help)"},
        {{"--http_listen", "a:1", NULL}, "unknown option --http_listen (see --help)"},
        {{"--http.listen", "a:1", NULL}, "unknown option --http.listen (see --help)"},
        {{"--http-listen", NULL}, "option --http-listen needs a value"},
        {{"--http-listen", "--tcp-listen", "a:1", NULL}, "option --http-listen needs a value"},
        {{"--config", NULL}, "option --config needs a value"},
        {{"--help=yes", NULL}, "option --help takes no value"},
        {{"--check-config=1", NULL}, "option --check-config takes no value"},
        {{"serve", NULL}, "unexpected argument \"serve\" (options start with --; see --help)"},
        {{"-v", NULL}, "unexpected argument \"-v\" (options start with --; see --help)"},
        {{"--", NULL}, "unexpected argument \"--\" (options start with --; see --help)"},
        {{"--=x", NULL}, "unexpected argument \"--=x\" (options start with --; see --help)"},
        {{"--http-max-body-size", "12 parsecs", NULL},
         "http.max_body_size: invalid size \"12 parsecs\" (expected e.g. 512, 512B, 64KiB, "
         "16MiB, 1GiB or 10MB) (from --http-max-body-size)"},
        {{"--log-level=loud", NULL},
         "log.level: invalid value \"loud\" (expected debug, info, warn or error) (from "
         "--log-level)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sg_config cfg;
        struct sg_cli cli;
        cr_assert_eq(load(&cfg, &cli, cases[i].args, NULL), -EINVAL, "%s", cases[i].msg);
        cr_assert_str_eq(errbuf, cases[i].msg);
        cr_assert_eq(cli.bad_usage, i + 2 < sizeof(cases) / sizeof(cases[0]), "%s", cases[i].msg);
        cr_assert_null(cfg.http_listen);
        sg_config_free(&cfg);
    }
}

Test(load, env)
{
    struct sg_config cfg;
    struct sg_cli cli;
    const char *env[] = {"PATH=/usr/bin",
                         "STREAMGATE_HTTP_MAX_BODY_SIZE=8MiB",
                         "STREAMGATE_LOG_LEVEL=debug",
                         "STREAMGATE_HTTP_AUTH_TOKENS=x,y",
                         "STREAMGATE_OUTPUT_FILE=",
                         "streamgate_http_listen=ignored:1",
                         "NOEQUALS",
                         NULL};
    cr_assert_eq(load(&cfg, &cli, NULL, env), 0, "%s", errbuf);
    cr_assert_eq(cfg.http_max_body_size, 8u << 20);
    cr_assert_eq(cfg.log_level, SG_LOG_DEBUG);
    cr_assert_eq(cfg.http_auth_tokens.count, 2);
    cr_assert_str_eq(cfg.http_listen, "127.0.0.1:8080");
    sg_config_free(&cfg);

    const char *bad[] = {"STREAMGATE_HTTP_MAX_BODY_SIZE=12 parsecs", NULL};
    cr_assert_eq(load(&cfg, &cli, NULL, bad), -EINVAL);
    cr_assert_str_eq(errbuf, "http.max_body_size: invalid size \"12 parsecs\" (expected e.g. 512, "
                             "512B, 64KiB, 16MiB, 1GiB or 10MB) (from env "
                             "STREAMGATE_HTTP_MAX_BODY_SIZE)");
    sg_config_free(&cfg);
}

/* Variables with the prefix that no option has are noted by name for a warning, never fatal:
 * Kubernetes sets STREAMGATE_SERVICE_HOST, STREAMGATE_PORT_8080_TCP, ... for a Service named
 * streamgate. */
Test(load, unknown_env_is_noted_not_fatal)
{
    struct sg_config cfg;
    struct sg_cli cli;
    const char *env[] = {"STREAMGATE_SERVICE_HOST=10.0.0.1",
                         "STREAMGATE_HTTP_MAX_BODY_SIZE=8MiB",
                         "STREAMGATE_PORT_8080_TCP=tcp://10.0.0.1:8080",
                         "STREAMGATE_TABLESTORE_ACCES_KEY_SECRET=s3cret",
                         "STREAMGATE_=1",
                         "STREAMGATE_LOG_LEVEL=warn",
                         NULL};
    cr_assert_eq(load(&cfg, &cli, NULL, env), 0, "%s", errbuf);
    cr_assert_eq(cfg.http_max_body_size, 8u << 20, "the known ones still apply");
    cr_assert_eq(cfg.log_level, SG_LOG_WARN);
    static const char *const want[] = {"STREAMGATE_SERVICE_HOST", "STREAMGATE_PORT_8080_TCP",
                                       "STREAMGATE_TABLESTORE_ACCES_KEY_SECRET", "STREAMGATE_"};
    cr_assert_eq(cfg.unknown_env.count, SG_ARRAY_SIZE(want));
    for (size_t i = 0; i < SG_ARRAY_SIZE(want); i++)
        cr_assert_str_eq(cfg.unknown_env.items[i], want[i], "only the name is kept");
    sg_config_free(&cfg);
    cr_assert_null(cfg.unknown_env.items, "freed with the configuration");
    cr_assert_eq(cfg.unknown_env.count, 0);

    /* None: an empty list. A bad value of a known variable is still an error. */
    cr_assert_eq(load(&cfg, &cli, NULL, NULL), 0, "%s", errbuf);
    cr_assert_eq(cfg.unknown_env.count, 0);
    sg_config_free(&cfg);
    const char *bad[] = {"STREAMGATE_SERVICE_HOST=10.0.0.1", "STREAMGATE_LOG_LEVEL=loud", NULL};
    cr_assert_eq(load(&cfg, &cli, NULL, bad), -EINVAL);
    assert_contains(errbuf, "(from env STREAMGATE_LOG_LEVEL)");
    cr_assert_null(cfg.unknown_env.items, "a failed load leaves nothing allocated");
    sg_config_free(&cfg);

    /* Unknown keys in the file and unknown flags stay errors. */
    const char *flag[] = {"--service-host", "10.0.0.1", NULL};
    cr_assert_eq(load(&cfg, &cli, flag, env), -EINVAL);
    cr_assert_str_eq(errbuf, "unknown option --service-host (see --help)");
    sg_config_free(&cfg);
}

Test(load, precedence)
{
    char path[64];
    write_temp(path, sizeof(path),
               "{\"http\": {\"max_errors\": 1, \"max_connections\": 2, \"max_body_size\": 3},\n"
               " \"tcp\": {\"max_connections\": 4}}");
    const char *env[] = {"STREAMGATE_HTTP_MAX_CONNECTIONS=20", "STREAMGATE_HTTP_MAX_BODY_SIZE=30",
                         "STREAMGATE_EVENT_MAX_FIELDS=40", NULL};
    /* Flags come before --config on purpose: position does not change precedence. */
    const char *args[] = {
        "--http-max-body-size", "300", "--event-max-fields=50", "--config", path, NULL};
    struct sg_config cfg;
    struct sg_cli cli;
    int rc = load(&cfg, &cli, args, env);
    unlink(path);
    cr_assert_eq(rc, 0, "%s", errbuf);
    cr_assert_str_eq(cli.config_file, path);
    cr_assert_eq(cfg.http_max_errors, 1);       /* file */
    cr_assert_eq(cfg.tcp_max_connections, 4);   /* file */
    cr_assert_eq(cfg.http_max_connections, 20); /* env beats file */
    cr_assert_eq(cfg.http_max_body_size, 300);  /* flag beats env and file */
    cr_assert_eq(cfg.event_max_fields, 50);     /* flag beats env */
    cr_assert_eq(cfg.event_max_key_size, 256);  /* default */
    sg_config_free(&cfg);
}

Test(load, file_errors_name_the_file)
{
    char path[64], from[128];
    struct sg_config cfg;
    struct sg_cli cli;

    write_temp(path, sizeof(path), "{\"http\": {\"lisen\": \"a:1\"}}");
    const char *args[] = {"--config", path, NULL};
    int rc = load(&cfg, &cli, args, NULL);
    unlink(path);
    cr_assert_eq(rc, -EINVAL);
    snprintf(from, sizeof(from), "unknown option http.lisen (from config file %s)", path);
    cr_assert_str_eq(errbuf, from);
    sg_config_free(&cfg);

    write_temp(path, sizeof(path), "{\"http\": {\"listen\": }}");
    rc = load(&cfg, &cli, args, NULL);
    unlink(path);
    cr_assert_eq(rc, -EINVAL);
    snprintf(from, sizeof(from),
             "invalid JSON at byte 20 (line 1, column 21) (from config file %s)", path);
    cr_assert_str_eq(errbuf, from);
    sg_config_free(&cfg);

    write_temp(path, sizeof(path), "{\"http\": {\"max_body_size\": \"12 parsecs\"}}");
    rc = load(&cfg, &cli, args, NULL);
    unlink(path);
    cr_assert_eq(rc, -EINVAL);
    assert_contains(errbuf, "http.max_body_size: invalid size \"12 parsecs\"");
    snprintf(from, sizeof(from), "(from config file %s)", path);
    assert_contains(errbuf, from);
    sg_config_free(&cfg);

    /* A directory opens but cannot be read. */
    const char *dir[] = {"--config", "/tmp", NULL};
    cr_assert_eq(load(&cfg, &cli, dir, NULL), -EINVAL);
    assert_contains(errbuf, "config file /tmp");
    sg_config_free(&cfg);
}

Test(load, validation_runs)
{
    struct sg_config cfg;
    struct sg_cli cli;
    const char *args[] = {"--event-max-fields", "65", NULL};
    cr_assert_eq(load(&cfg, &cli, args, NULL), -EINVAL);
    cr_assert_str_eq(errbuf, "event.max_fields: must be from 1 to 64 (got 65)");
    cr_assert_null(cfg.http_listen);
    sg_config_free(&cfg);
}

/* ---- validation ---- */

struct bad_case {
    const char *name, *value, *msg;
};

Test(validate, failures)
{
    static const struct bad_case cases[] = {
        {"http.listen", "nope",
         "http.listen: invalid address \"nope\" (expected host:port or [v6]:port with a port "
         "from 0 to 65535)"},
        {"http.listen", "127.0.0.1:65536", "http.listen: invalid address \"127.0.0.1:65536\""},
        {"http.listen", ":8080", "http.listen: invalid address \":8080\""},
        {"tcp.listen", "::1:9000", "tcp.listen: invalid address \"::1:9000\""},
        {"http.max_body_size", "0", "http.max_body_size: must be at least 1 bytes (got 0 bytes)"},
        {"http.max_decoded_size", "0", "http.max_decoded_size: must be at least 1 bytes"},
        {"http.max_header_size", "1023",
         "http.max_header_size: must be at least 1024 bytes (got 1023 bytes)"},
        {"http.max_connections", "0", "http.max_connections: must be at least 1 (got 0)"},
        {"http.max_connections", "-5", "http.max_connections: must be at least 1 (got -5)"},
        {"http.max_errors", "0", "http.max_errors: must be at least 1 (got 0)"},
        {"http.header_timeout", "0", "http.header_timeout: must be at least 1ms (got 0ms)"},
        {"http.body_timeout", "0", "http.body_timeout: must be at least 1ms"},
        {"http.idle_timeout", "0", "http.idle_timeout: must be at least 1ms"},
        {"http.idle_timeout", "8761h",
         "http.idle_timeout: must be at most 31536000000ms (got 31539600000ms)"},
        {"tcp.max_line_size", "0", "tcp.max_line_size: must be at least 1 bytes"},
        {"tcp.max_connections", "0", "tcp.max_connections: must be at least 1"},
        {"tcp.idle_timeout", "0", "tcp.idle_timeout: must be at least 1ms"},
        {"event.key_field", "", "event.key_field: must not be empty"},
        {"event.time_field", "", "event.time_field: must not be empty"},
        {"event.max_fields", "0", "event.max_fields: must be from 1 to 64 (got 0)"},
        {"event.max_fields", "65", "event.max_fields: must be from 1 to 64 (got 65)"},
        {"event.max_key_size", "0", "event.max_key_size: must be at least 1 bytes"},
        {"shutdown.timeout", "0", "shutdown.timeout: must be at least 1ms"},
        {"log.bad_input_interval", "8761h", "log.bad_input_interval: must be at most"},
        {"limits.memory", "1KiB", "limits.memory: must be at least 1048576 bytes"},
        {"limits.high_watermark", "101", "limits.high_watermark: must be from 2 to 100"},
        {"limits.low_watermark", "70",
         "limits.low_watermark: must be below limits.high_watermark (70 >= 70)"},
        {"limits.retry_after", "500ms", "limits.retry_after: must be at least 1000ms"},
        {"limits.streams_share", "0", "limits.streams_share: must be from 1 to 100 (got 0)"},
        {"limits.streams_share", "101", "limits.streams_share: must be from 1 to 100 (got 101)"},
        {"limits.results_share", "0", "limits.results_share: must be from 1 to 100 (got 0)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sg_config cfg;
        cfg_init(&cfg);
        cr_assert_eq(set(&cfg, cases[i].name, cases[i].value), 0, "%s", errbuf);
        cr_assert_eq(sg_config_validate(&cfg, errbuf, sizeof(errbuf)), -EINVAL, "%s=%s",
                     cases[i].name, cases[i].value);
        cr_assert(strncmp(errbuf, cases[i].msg, strlen(cases[i].msg)) == 0,
                  "got \"%s\", want \"%s...\"", errbuf, cases[i].msg);
        sg_config_free(&cfg);
    }
}

Test(validate, boundaries_that_pass)
{
    static const struct {
        const char *name, *value;
    } cases[] = {
        {"http.max_header_size", "1KiB"},
        {"event.max_fields", "1"},
        {"event.max_fields", "64"},
        {"http.listen", ""},
        {"tcp.listen", ""},
        {"http.listen", "[::1]:0"},
        {"http.listen", "0.0.0.0:65535"},
        {"log.bad_input_interval", "0"},
        {"shutdown.timeout", "1"},
        {"http.idle_timeout", "8760h"},
        {"event.key_fallback", ""},
        {"output.file", ""},
        {"limits.streams_share", "100"},
        {"limits.results_share", "1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sg_config cfg;
        cfg_init(&cfg);
        cr_assert_eq(set(&cfg, cases[i].name, cases[i].value), 0, "%s", errbuf);
        cr_assert_eq(sg_config_validate(&cfg, errbuf, sizeof(errbuf)), 0, "%s=%s: %s",
                     cases[i].name, cases[i].value, errbuf);
        sg_config_free(&cfg);
    }
}

Test(validate, one_listener_needed)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    cr_assert_eq(set(&cfg, "http.listen", ""), 0);
    cr_assert_eq(set(&cfg, "tcp.listen", ""), 0);
    cr_assert_eq(sg_config_validate(&cfg, errbuf, sizeof(errbuf)), -EINVAL);
    cr_assert_str_eq(errbuf,
                     "http.listen and tcp.listen are both empty: at least one listener is needed");
    sg_config_free(&cfg);
}

Test(validate, max_decoded_may_be_below_body)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    cr_assert_eq(set(&cfg, "http.max_body_size", "1MiB"), 0);
    cr_assert_eq(set(&cfg, "http.max_decoded_size", "1KiB"), 0);
    cr_assert_eq(sg_config_validate(&cfg, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
    sg_config_free(&cfg);
}

Test(validate, unset_strings)
{
    struct sg_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cr_assert_eq(sg_config_validate(&cfg, errbuf, sizeof(errbuf)), -EINVAL);
    cr_assert_str_eq(errbuf, "http.listen: not set (out of memory)");
}

Test(validate, tiny_errstr)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    cr_assert_eq(set(&cfg, "event.max_fields", "0"), 0);
    char small[8];
    cr_assert_eq(sg_config_validate(&cfg, small, sizeof(small)), -EINVAL);
    cr_assert_str_eq(small, "event.m");
    cr_assert_eq(sg_config_validate(&cfg, NULL, 0), -EINVAL);
    sg_config_free(&cfg);
}

/* ---- --help and the Markdown table ---- */

Test(help, lists_every_option)
{
    size_t len;
    char *text = capture(sg_config_print_help, "/usr/bin/streamgate", &len);
    assert_contains(text, "Usage: /usr/bin/streamgate ");
    assert_contains(text, "--config FILE");
    assert_contains(text, "--check-config");
    assert_contains(text, "--version");
    assert_contains(text, "--options-markdown");
    assert_contains(text, "--metrics-markdown");
    assert_contains(text, "STREAMGATE_");
    assert_contains(text, "KiB");
    assert_contains(text, "powers of 1000");
    size_t n;
    const struct sg_config_option *opts = sg_config__options(&n);
    for (size_t i = 0; i < n; i++) {
        char flag[128], line[256];
        sg_config__flag_name(&opts[i], flag, sizeof(flag));
        snprintf(line, sizeof(line), "  %s <%s>  (default: %s%s)\n      %s", flag,
                 sg_config__type_name(opts[i].type),
                 opts[i].def[0] != '\0'              ? opts[i].def
                 : opts[i].type == SG_CONFIG_STRLIST ? "[]"
                                                     : "\"\"",
                 (opts[i].flags & SG_CONFIG_F_LIVE) ? "; SIGHUP reloads it" : "", opts[i].help);
        assert_contains(text, line);
    }
    assert_contains(text, "--log-level <enum>  (default: info; SIGHUP reloads it)\n      Least "
                          "severe log level "
                          "written to stderr. One of: debug, info, warn, error.\n");
    cr_assert_eq(text[len - 1], '\n');
    free(text);
}

Test(markdown, one_row_per_option)
{
    size_t len, len2;
    char *text = capture(print_md, NULL, &len);
    char *again = capture(print_md, NULL, &len2);
    cr_assert_str_eq(text, again, "deterministic");
    free(again);
    cr_assert_eq(text[len - 1], '\n');

    size_t n;
    const struct sg_config_option *opts = sg_config__options(&n);
    const char *line = text;
    size_t row = 0;
    while (*line != '\0') {
        const char *nl = strchr(line, '\n');
        cr_assert_not_null(nl);
        size_t pipes = 0;
        for (const char *c = line; c < nl; c++)
            pipes += *c == '|';
        cr_assert_eq(pipes, 7, "row %zu: %.*s", row, (int)(nl - line), line);
        if (row == 0) {
            cr_assert(strncmp(line, "| option | type | default | env | live | description |\n",
                              (size_t)(nl - line) + 1) == 0);
        } else if (row == 1) {
            cr_assert(strncmp(line, "| --- | --- | --- | --- | --- | --- |\n",
                              (size_t)(nl - line) + 1) == 0);
        } else {
            /* Rows follow the table's order. */
            cr_assert_lt(row - 2, n);
            char env[128], prefix[256];
            sg_config__env_name(&opts[row - 2], env, sizeof(env));
            snprintf(prefix, sizeof(prefix), "| `%s` | %s | `", opts[row - 2].name,
                     sg_config__type_name(opts[row - 2].type));
            cr_assert(strncmp(line, prefix, strlen(prefix)) == 0, "%.*s", (int)(nl - line), line);
            char envcol[160];
            snprintf(envcol, sizeof(envcol), "` | `%s` | %s | %s", env,
                     (opts[row - 2].flags & SG_CONFIG_F_LIVE) ? "yes" : "", opts[row - 2].help);
            cr_assert(memmem(line, (size_t)(nl - line), envcol, strlen(envcol)) != NULL, "%.*s",
                      (int)(nl - line), line);
        }
        row++;
        line = nl + 1;
    }
    cr_assert_eq(row, n + 2);
    assert_contains(text,
                    "| `http.max_body_size` | size | `4MiB` | `STREAMGATE_HTTP_MAX_BODY_SIZE` |");
    assert_contains(text, "| `http.auth_tokens` | list | `[]` |");
    assert_contains(text, "| `output.file` | string | `\"\"` |");
    assert_contains(text, "One of: `debug`, `info`, `warn`, `error`. |\n");
    free(text);
}

Test(validate, window_rules)
{
    static const struct {
        const char *name, *value, *error; /* error: NULL when valid */
    } cases[] = {
        {"window.type", "hopping", "window.slide: must be set for hopping windows"},
        {"window.type", "session", "window.gap: must be set for session windows"},
        {"window.type", "sliding", "expected tumbling, hopping or session"},
        {"window.time", "ingest", "expected event or processing"},
        {"window.quantiles", "p50,p100", NULL},
        {"window.quantiles", "p0", "window.quantiles: invalid quantile \"p0\""},
        {"window.quantiles", "50", "window.quantiles: invalid quantile \"50\""},
        {"window.quantiles", "p101", "window.quantiles: invalid quantile \"p101\""},
        {"window.quantiles", "p99.9x", "window.quantiles: invalid quantile"},
        {"window.distinct_precision", "17", "window.distinct_precision"},
        {"predict.alpha", "1", NULL},
        {"predict.alpha", "0.05", NULL},
        {"predict.alpha", "0", "predict.alpha: \"0\" is not a number in (0, 1]"},
        {"predict.alpha", "1.5", "predict.alpha: \"1.5\" is not a number in (0, 1]"},
        {"predict.beta", "a", "predict.beta: \"a\" is not a number in (0, 1]"},
        {"predict.beta", "0.1x", "predict.beta: \"0.1x\" is not a number"},
        {"predict.anomaly_threshold", "3.5", NULL},
        {"predict.anomaly_threshold", "-1",
         "predict.anomaly_threshold: \"-1\" is not a number "
         "above 0"},
        {"predict.warmup", "2", "predict.warmup"},
        {"predict.season", "24", NULL},
        {"predict.season", "1", "predict.season: a season of 1 window is no season"},
        {"predict.season", "1025", "predict.season"},
        {"predict.gamma", "0", "predict.gamma: \"0\" is not a number in (0, 1]"},
        {"kafka.headers", "", NULL},
        {"kafka.headers", "client-id,received-at", NULL},
        {"kafka.headers", "transport,Content-Type",
         "kafka.headers: unknown header \"Content-Type\" (expected content-type, transport, "
         "received-at or client-id)"},
    };
    for (size_t i = 0; i < SG_ARRAY_SIZE(cases); i++) {
        struct sg_config cfg;
        cfg_init(&cfg);
        int rc = set(&cfg, cases[i].name, cases[i].value);
        if (rc == 0)
            rc = sg_config_validate(&cfg, errbuf, sizeof(errbuf));
        if (cases[i].error) {
            cr_assert_neq(rc, 0, "%s=%s should fail", cases[i].name, cases[i].value);
            assert_contains(errbuf, cases[i].error);
        } else {
            cr_assert_eq(rc, 0, "%s=%s: %s", cases[i].name, cases[i].value, errbuf);
        }
        sg_config_free(&cfg);
    }
}

Test(validate, kafka_headers_mask)
{
    struct sg_config cfg;
    unsigned hdrs;
    cfg_init(&cfg);
    cr_assert_eq(set(&cfg, "kafka.headers", ""), 0);
    cr_assert_eq(sg_config_kafka_headers(&cfg, &hdrs, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
    cr_assert_eq(hdrs, 0u);
    cr_assert_eq(set(&cfg, "kafka.client_id_header", "true"), 0);
    cr_assert_eq(sg_config_kafka_headers(&cfg, &hdrs, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
    cr_assert_eq(hdrs, SG_KAFKA_HDR_CLIENT_ID, "kafka.client_id_header adds client-id");
    cr_assert_eq(set(&cfg, "kafka.client_id_header", "false"), 0);
    cr_assert_eq(set(&cfg, "kafka.headers", "received-at,transport"), 0);
    cr_assert_eq(sg_config_kafka_headers(&cfg, &hdrs, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
    cr_assert_eq(hdrs, SG_KAFKA_HDR_TRANSPORT | SG_KAFKA_HDR_RECEIVED_AT);
    sg_config_free(&cfg);
}

Test(validate, hopping_slide_bounds)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    cr_assert_eq(set(&cfg, "window.type", "hopping"), 0);
    cr_assert_eq(set(&cfg, "window.size", "10s"), 0);
    cr_assert_eq(set(&cfg, "window.slide", "20s"), 0);
    cr_assert_neq(sg_config_validate(&cfg, errbuf, sizeof(errbuf)), 0);
    assert_contains(errbuf, "window.slide: must be at most window.size");
    cr_assert_eq(set(&cfg, "window.slide", "50ms"), 0);
    cr_assert_neq(sg_config_validate(&cfg, errbuf, sizeof(errbuf)), 0);
    assert_contains(errbuf, "at most 100");
    cr_assert_eq(set(&cfg, "window.slide", "2500ms"), 0);
    cr_assert_eq(sg_config_validate(&cfg, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
    sg_config_free(&cfg);
}

Test(parse, quantiles)
{
    double q;
    cr_assert_eq(sg_parse_quantile("p50", &q), 0);
    cr_assert_float_eq(q, 0.5, 1e-12);
    cr_assert_eq(sg_parse_quantile("p99.9", &q), 0);
    cr_assert_float_eq(q, 0.999, 1e-12);
    cr_assert_eq(sg_parse_quantile("p100", &q), 0);
    cr_assert_float_eq(q, 1.0, 1e-12);
    cr_assert_neq(sg_parse_quantile("", &q), 0);
    cr_assert_neq(sg_parse_quantile("p", &q), 0);
    cr_assert_neq(sg_parse_quantile("p-1", &q), 0);
    cr_assert_neq(sg_parse_quantile("P50", &q), 0);
}

Test(set, kafka_properties_from_text)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    cr_assert_eq(set(&cfg, "kafka.rdkafka", "linger.ms=20, compression.type=zstd"), 0, "%s",
                 errbuf);
    cr_assert_eq(cfg.kafka_rdkafka.count, 2);
    cr_assert_str_eq(cfg.kafka_rdkafka.items[0], "linger.ms=20");
    cr_assert_str_eq(cfg.kafka_rdkafka.items[1], "compression.type=zstd");
    cr_assert_neq(set(&cfg, "kafka.rdkafka", "linger.ms"), 0);
    assert_contains(errbuf, "kafka.rdkafka: invalid property");
    cr_assert_neq(set(&cfg, "kafka.rdkafka", "=5"), 0);
    sg_config_free(&cfg);
}

Test(json, kafka_properties_from_an_object)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    const char *doc = "{\"kafka\":{\"brokers\":\"b:9092\",\"rdkafka\":{\"linger.ms\":20,"
                      "\"acks\":\"all\",\"enable.idempotence\":true,\"x\":0.5}}}";
    cr_assert_eq(sg_config_apply_json(&cfg, doc, strlen(doc), errbuf, sizeof(errbuf)), 0, "%s",
                 errbuf);
    cr_assert_str_eq(cfg.kafka_brokers, "b:9092");
    cr_assert_eq(cfg.kafka_rdkafka.count, 4);
    cr_assert_str_eq(cfg.kafka_rdkafka.items[0], "linger.ms=20");
    cr_assert_str_eq(cfg.kafka_rdkafka.items[1], "acks=all");
    cr_assert_str_eq(cfg.kafka_rdkafka.items[2], "enable.idempotence=true");
    cr_assert_str_eq(cfg.kafka_rdkafka.items[3], "x=0.5");
    /* A number too large for a whole number is written as a double, not converted. */
    const char *huge = "{\"kafka\":{\"rdkafka\":{\"big\":1e300,\"neg\":-1e300}}}";
    cr_assert_eq(sg_config_apply_json(&cfg, huge, strlen(huge), errbuf, sizeof(errbuf)), 0, "%s",
                 errbuf);
    cr_assert_str_eq(cfg.kafka_rdkafka.items[0], "big=1.0000000000000001e+300");
    cr_assert_str_eq(cfg.kafka_rdkafka.items[1], "neg=-1.0000000000000001e+300");
    const char *bad = "{\"kafka\":{\"rdkafka\":{\"a\":[1]}}}";
    cr_assert_neq(sg_config_apply_json(&cfg, bad, strlen(bad), errbuf, sizeof(errbuf)), 0);
    assert_contains(errbuf, "kafka.rdkafka.a: expected a string, number or boolean");
    const char *arr = "{\"kafka\":{\"rdkafka\":[\"a=1\"]}}";
    cr_assert_neq(sg_config_apply_json(&cfg, arr, strlen(arr), errbuf, sizeof(errbuf)), 0);
    assert_contains(errbuf, "kafka.rdkafka: expected an object");
    sg_config_free(&cfg);
}

/* A gateway and an aggregator need Kafka; `all` does not. */
Test(validate, role_needs_kafka)
{
    struct sg_config cfg;
    cfg_init(&cfg);
    cr_assert_eq(cfg.role, SG_ROLE_ALL);
    cr_assert_str_eq(cfg.kafka_group_id, "streamgate-aggregators");
    cr_assert_eq(sg_config_validate(&cfg, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
    cr_assert_eq(set(&cfg, "role", "gateway"), 0);
    cr_assert_eq(sg_config_validate(&cfg, errbuf, sizeof(errbuf)), -EINVAL);
    cr_assert_str_eq(errbuf, "role: gateway needs kafka.brokers");
    cr_assert_eq(set(&cfg, "role", "aggregator"), 0);
    cr_assert_eq(sg_config_validate(&cfg, errbuf, sizeof(errbuf)), -EINVAL);
    cr_assert_str_eq(errbuf, "role: aggregator needs kafka.brokers");
    cr_assert_eq(set(&cfg, "kafka.brokers", "127.0.0.1:9092"), 0);
    cr_assert_eq(sg_config_validate(&cfg, errbuf, sizeof(errbuf)), 0, "%s", errbuf);
    cr_assert_eq(set(&cfg, "kafka.raw_topic", ""), 0);
    cr_assert_eq(sg_config_validate(&cfg, errbuf, sizeof(errbuf)), -EINVAL);
    cr_assert_str_eq(errbuf, "role: aggregator needs kafka.raw_topic");
    cr_assert_neq(set(&cfg, "role", "router"), 0);
    sg_config_free(&cfg);
}

/* ---- reload ---- */

Test(reload, live_options_are_the_documented_ones)
{
    static const char *const live[] = {
        "http.rate_limit",
        "http.rate_burst",
        "http.auth_tokens",
        "http.metrics_token",
        "limits.memory",
        "limits.high_watermark",
        "limits.low_watermark",
        "limits.retry_after",
        "limits.streams_share",
        "limits.results_share",
        "log.level",
        "http.tls_cert",
        "http.tls_key",
        "http.tls_client_ca",
        "http.tls_handshake_timeout",
        "tcp.tls_cert",
        "tcp.tls_key",
        "tcp.tls_client_ca",
        "tcp.tls_handshake_timeout",
    };
    size_t n, count = 0;
    const struct sg_config_option *opts = sg_config__options(&n);
    for (size_t i = 0; i < n; i++) {
        if (!(opts[i].flags & SG_CONFIG_F_LIVE))
            continue;
        count++;
        bool listed = false;
        for (size_t j = 0; j < sizeof(live) / sizeof(live[0]); j++)
            listed = listed || strcmp(opts[i].name, live[j]) == 0;
        cr_assert(listed, "%s is live but not documented as such", opts[i].name);
    }
    cr_assert_eq(count, sizeof(live) / sizeof(live[0]));
}

Test(reload, a_live_change_is_taken_and_swapped)
{
    struct sg_config run, next;
    char changed[256];
    cfg_init(&run);
    cfg_init(&next);
    cr_assert_eq(set(&run, "http.auth_tokens", "old"), 0);
    cr_assert_eq(set(&next, "http.auth_tokens", "new,newer"), 0);
    cr_assert_eq(set(&next, "limits.memory", "64MiB"), 0);
    cr_assert_eq(set(&next, "limits.streams_share", "30"), 0);
    cr_assert_eq(set(&next, "limits.results_share", "10"), 0);
    uint64_t before = sg_config_hash(&run);
    cr_assert_eq(
        sg_config_reload_check(&run, &next, changed, sizeof(changed), errbuf, sizeof(errbuf)), 0,
        "%s", errbuf);
    cr_assert_str_eq(changed,
                     "http.auth_tokens,limits.memory,limits.streams_share,limits.results_share");
    sg_config_take_live(&run, &next);
    cr_assert_eq(run.http_auth_tokens.count, 2);
    cr_assert_str_eq(run.http_auth_tokens.items[1], "newer");
    cr_assert_eq(run.limits_memory, 64u << 20);
    cr_assert_eq(run.limits_streams_share, 30);
    cr_assert_eq(run.limits_results_share, 10);
    cr_assert_eq(next.http_auth_tokens.count, 1); /* the old value, freed with next */
    cr_assert_neq(sg_config_hash(&run), before);
    /* Nothing differs any more. */
    cr_assert_eq(
        sg_config_reload_check(&run, &run, changed, sizeof(changed), errbuf, sizeof(errbuf)), 0);
    cr_assert_str_eq(changed, "");
    sg_config_free(&next);
    sg_config_free(&run);
}

/* The TLS files' paths change live; TLS itself cannot be turned on or off. */
Test(reload, tls_paths_are_live_but_tls_on_or_off_is_not)
{
    struct sg_config run, next;
    char changed[256];
    cfg_init(&run);
    cfg_init(&next);
    cr_assert_eq(set(&run, "tcp.tls_cert", "/etc/a.pem"), 0);
    cr_assert_eq(set(&run, "tcp.tls_key", "/etc/a.key"), 0);
    cr_assert_eq(set(&next, "tcp.tls_cert", "/etc/b.pem"), 0);
    cr_assert_eq(set(&next, "tcp.tls_key", "/etc/b.key"), 0);
    cr_assert_eq(set(&next, "tcp.tls_handshake_timeout", "3s"), 0);
    cr_assert_eq(
        sg_config_reload_check(&run, &next, changed, sizeof(changed), errbuf, sizeof(errbuf)), 0,
        "%s", errbuf);
    cr_assert_str_eq(changed, "tcp.tls_cert,tcp.tls_key,tcp.tls_handshake_timeout");
    cr_assert_eq(set(&next, "http.tls_cert", "/etc/b.pem"), 0);
    cr_assert_eq(
        sg_config_reload_check(&run, &next, changed, sizeof(changed), errbuf, sizeof(errbuf)),
        -EINVAL);
    cr_assert(strstr(errbuf, "http.tls_cert: turning TLS on or off needs a restart"), "%s", errbuf);
    cr_assert_eq(set(&next, "http.tls_cert", ""), 0);
    cr_assert_eq(set(&next, "tcp.tls_cert", ""), 0);
    cr_assert_eq(
        sg_config_reload_check(&run, &next, changed, sizeof(changed), errbuf, sizeof(errbuf)),
        -EINVAL);
    cr_assert(strstr(errbuf, "tcp.tls_cert: turning TLS on or off needs a restart"), "%s", errbuf);
    sg_config_free(&next);
    sg_config_free(&run);
}

Test(reload, a_restart_only_change_is_refused_by_name)
{
    struct sg_config run, next;
    char changed[256];
    cfg_init(&run);
    cfg_init(&next);
    cr_assert_eq(set(&next, "http.auth_tokens", "t"), 0);
    cr_assert_eq(set(&next, "tcp.listen", "127.0.0.1:9999"), 0);
    cr_assert_eq(sg_config_hash(&run), sg_config_hash(&run));
    cr_assert_neq(sg_config_hash(&run), sg_config_hash(&next));
    cr_assert_eq(
        sg_config_reload_check(&run, &next, changed, sizeof(changed), errbuf, sizeof(errbuf)),
        -EINVAL);
    assert_contains(errbuf, "tcp.listen changed, and a change to it needs a restart");
    sg_config_free(&next);
    sg_config_free(&run);
}
