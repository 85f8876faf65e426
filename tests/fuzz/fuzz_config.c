/* Configuration parsing from untrusted bytes.
 *
 * Byte 0 picks the mode, the rest is the payload:
 *   0: the payload is a config document: sg_config_apply_json over the defaults, then
 *      sg_config_validate.
 *   1: the payload is "name=value" (or "name\0value"): sg_config_set, then validate.
 *   2: the payload, NUL-terminated, goes to the value parsers (size, duration, quantile,
 *      host:port, log level).
 *   3: the whole load path: the payload up to its first NUL is written to a file named with
 *      --config; after the NUL come lines, those starting with STREAMGATE_ taken as the
 *      environment and the others as command-line arguments (a --config among them is dropped,
 *      so only the fuzzer's own file is ever read).
 *
 * Checks (abort on violation): every call returns 0 or a negative code; a failure leaves a
 * non-empty, NUL-terminated message; a failed sg_config_load leaves no string or
 * list behind; the value
 * parsers' results stay in their documented ranges. Every configuration is freed, so
 * LeakSanitizer sees any string an error path forgets. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "streamgate/config.h"
#include "streamgate/log.h"

#define MAX_ARGS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The file mode 3 rewrites on every run; its name never changes. */
static char config_path[64];

static void fail(const char *what, const char *errstr)
{
    fprintf(stderr, "fuzz_config: %s%s%s\n", what, errstr ? ": " : "", errstr ? errstr : "");
    abort();
}

static void remove_config_file(void)
{
    if (config_path[0] != '\0')
        unlink(config_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int fd;

    snprintf(config_path, sizeof(config_path), "/tmp/sg-fuzz-config-XXXXXX");
    fd = mkstemp(config_path);
    if (fd < 0) {
        perror("fuzz_config: mkstemp");
        abort();
    }
    close(fd);
    atexit(remove_config_file);
    return 0;
}

/* A message buffer starts poisoned so that "no message written" is told apart from one. */
static void err_init(char *err, size_t len)
{
    memset(err, 'X', len);
}

static void check_rc(int rc, const char *err, size_t err_len)
{
    if (rc > 0)
        fail("positive return code", NULL);
    if (rc == 0)
        return;
    if (memchr(err, '\0', err_len) == NULL)
        fail("error message not NUL-terminated", NULL);
    if (err[0] == '\0' || err[0] == 'X')
        fail("error without a message", NULL);
}

static void check_validate(const struct sg_config *cfg)
{
    char err[256];
    int rc;

    err_init(err, sizeof(err));
    rc = sg_config_validate(cfg, err, sizeof(err));
    check_rc(rc, err, sizeof(err));
}

static void mode_json(const char *payload, size_t len)
{
    struct sg_config cfg;
    char err[256];
    int rc;

    sg_config_defaults(&cfg);
    err_init(err, sizeof(err));
    rc = sg_config_apply_json(&cfg, payload, len, err, sizeof(err));
    check_rc(rc, err, sizeof(err));
    /* Options applied before a failing one stay set; validating them must still be safe. */
    check_validate(&cfg);
    sg_config_free(&cfg);
}

static void mode_set(char *text, size_t len)
{
    struct sg_config cfg;
    char err[256];
    char *sep = memchr(text, '=', len);
    const char *value;
    int rc;

    if (!sep)
        sep = memchr(text, '\0', len);
    if (sep) {
        *sep = '\0';
        value = sep + 1;
    } else {
        value = ""; /* text[len] is the terminator */
    }
    sg_config_defaults(&cfg);
    err_init(err, sizeof(err));
    rc = sg_config_set(&cfg, text, value, err, sizeof(err));
    check_rc(rc, err, sizeof(err));
    check_validate(&cfg);
    sg_config_free(&cfg);
}

static void mode_values(const char *s)
{
    uint64_t u;
    double q;
    char host[64];
    int port = -1;
    enum sg_log_level level;

    if (sg_parse_quantile(s, &q) == 0 && !(q > 0.0 && q <= 1.0))
        fail("quantile outside (0, 1]", s);
    (void)sg_parse_size(s, &u);
    (void)sg_parse_duration_ms(s, &u);
    memset(host, 'X', sizeof(host));
    if (sg_parse_hostport(s, host, sizeof(host), &port) == 0) {
        if (port < 0 || port > 65535)
            fail("port outside 0..65535", s);
        if (memchr(host, '\0', sizeof(host)) == NULL)
            fail("host not NUL-terminated", s);
    }
    if (sg_log_level_parse(s, &level) == 0 && (unsigned)level > SG_LOG_OFF)
        fail("log level out of range", s);
}

/* What sg_config_load's "left freed" means for the owned members: every string and list is
 * gone. (Its integer members keep their values; see README.md.) */
static bool is_freed(const struct sg_config *cfg)
{
    const char *const strings[] = {
        cfg->http_listen,      cfg->http_metrics_token,    cfg->tcp_listen,
        cfg->event_key_field,  cfg->event_key_fallback,    cfg->event_time_field,
        cfg->output_file,      cfg->output_results_file,   cfg->output_late_file,
        cfg->kafka_brokers,    cfg->kafka_raw_topic,       cfg->kafka_agg_topic,
        cfg->kafka_late_topic, cfg->window_distinct_field,
    };
    const struct sg_strlist *const lists[] = {
        &cfg->http_auth_tokens, &cfg->event_value_fields, &cfg->kafka_rdkafka,
        &cfg->window_quantiles, &cfg->unknown_env,
    };

    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        if (strings[i] != NULL)
            return false;
    }
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        if (lists[i]->items != NULL || lists[i]->count != 0)
            return false;
    }
    return true;
}

static void mode_load(char *text, size_t len)
{
    char *argv[MAX_ARGS + 1];
    char *envp[MAX_ARGS + 1];
    int argc = 0, envc = 0;
    char *nul = memchr(text, '\0', len);
    size_t doc_len = nul ? (size_t)(nul - text) : len;
    struct sg_config cfg;
    struct sg_cli cli;
    char err[256];
    FILE *f;
    int rc;

    f = fopen(config_path, "wb");
    if (!f || fwrite(text, 1, doc_len, f) != doc_len || fclose(f) != 0)
        abort();

    argv[argc++] = "streamgate";
    argv[argc++] = "--config";
    argv[argc++] = config_path;
    if (nul) {
        char *p = nul + 1, *end = text + len;
        while (p < end && argc < MAX_ARGS && envc < MAX_ARGS) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            if (nl)
                *nl = '\0';
            if (strncmp(p, "STREAMGATE_", 11) == 0)
                envp[envc++] = p;
            else if (strncmp(p, "--config", 8) != 0)
                argv[argc++] = p;
            if (!nl)
                break;
            p = nl + 1;
        }
    }
    argv[argc] = NULL;
    envp[envc] = NULL;

    err_init(err, sizeof(err));
    rc = sg_config_load(&cfg, &cli, argc, argv, envp, err, sizeof(err));
    check_rc(rc, err, sizeof(err));
    if (rc != 0 && !is_freed(&cfg))
        fail("a failed load left strings or lists behind", err);
    sg_config_free(&cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text;
    size_t len;

    if (size < 1)
        return 0;
    len = size - 1;
    /* One byte more for a terminator; the parsers that take (buf, len) never see it. */
    text = malloc(len + 1);
    if (!text)
        abort();
    memcpy(text, data + 1, len);
    text[len] = '\0';

    switch (data[0] % 4) {
    case 0: {
        /* An exact-size copy, so a read past the document is caught. */
        char *doc = malloc(len ? len : 1);
        if (!doc)
            abort();
        memcpy(doc, text, len);
        mode_json(doc, len);
        free(doc);
        break;
    }
    case 1:
        mode_set(text, len);
        break;
    case 2:
        mode_values(text);
        break;
    default:
        mode_load(text, len);
        break;
    }
    free(text);
    return 0;
}
