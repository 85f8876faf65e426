/* The binary's command-line contract: --version, --help, --options-markdown, --check-config,
 * configuration errors (exit 1, the option and its source named on stderr), and the README's
 * option and metric tables matching --options-markdown and --metrics-markdown. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define assert_contains(hay, needle)                                                               \
    cr_assert(strstr((hay), (needle)) != NULL, "expected \"%s\" in \"%s\"", (needle), (hay))

struct run {
    int status;
    char *out;
    char *err;
};

static struct run run(const char *const *args, const char *const *env)
{
    struct run r = {0};
    r.status = sgt_run(args, env, &r.out, &r.err);
    cr_assert_not_null(r.out);
    cr_assert_not_null(r.err);
    return r;
}

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
}

/* A configuration error: exit 1, nothing on stdout, one "streamgate: ..." line on stderr that
 * contains every string in `want`. */
static void expect_config_error(const char *const *args, const char *const *env,
                                const char *const *want)
{
    struct run r = run(args, env);
    cr_assert_eq(r.status, 1, "exit %d, stderr: %s", r.status, r.err);
    cr_assert_str_eq(r.out, "");
    cr_assert(strncmp(r.err, "streamgate: ", 12) == 0, "stderr: %s", r.err);
    for (size_t i = 0; want[i] != NULL; i++)
        assert_contains(r.err, want[i]);
    run_free(&r);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(fputs(text, f) >= 0, 1);
    cr_assert_eq(fclose(f), 0);
}

Test(cli, version)
{
    const char *args[] = {"--version", NULL};
    struct run r = run(args, NULL);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_str_eq(r.out, "streamgate " SG_VERSION "\n");
    run_free(&r);
}

Test(cli, help)
{
    const char *args[] = {"--help", NULL};
    struct run r = run(args, NULL);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    static const char *const want[] = {
        "Usage: ",      "--config FILE",      "--check-config",
        "--version",    "--options-markdown", "--metrics-markdown",
        "STREAMGATE_",  "--http-listen",      "--http-max-body-size",
        "--tcp-listen", "--event-key-field",  "--output-file",
        "--log-level",  "--shutdown-timeout", "(default: 4MiB)",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_contains(r.out, want[i]);
    run_free(&r);
}

Test(cli, help_ignores_broken_config)
{
    /* --help must work even when the configuration would not load. */
    const char *args[] = {"--config", "/nonexistent/streamgate.json", "--help", NULL};
    const char *env[] = {"STREAMGATE_NO_SUCH_OPTION=1", NULL};
    struct run r = run(args, env);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    assert_contains(r.out, "--http-listen");
    run_free(&r);
}

Test(cli, options_markdown)
{
    const char *args[] = {"--options-markdown", NULL};
    struct run r = run(args, NULL);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    static const char head[] = "| option | type | default | env | live | description |\n";
    cr_assert(strncmp(r.out, head, sizeof(head) - 1) == 0, "%s", r.out);
    assert_contains(r.out,
                    "| `http.listen` | string | `127.0.0.1:8080` | `STREAMGATE_HTTP_LISTEN` |");
    assert_contains(r.out, "| `shutdown.timeout` | duration | `10s` |");
    size_t len = strlen(r.out);
    cr_assert_eq(r.out[len - 1], '\n');
    run_free(&r);
}

Test(cli, check_config_ok)
{
    const char *args[] = {"--check-config", NULL};
    struct run r = run(args, NULL);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_str_eq(r.out, "configuration ok\n");
    run_free(&r);

    /* Every source at once, all valid. */
    char dir[] = "/tmp/sg_cli_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/streamgate.json", dir);
    write_file(path, "{\"http\": {\"listen\": \"127.0.0.1:0\", \"auth_tokens\": [\"t\"]},\n"
                     " \"tcp\": {\"listen\": \"\"}, \"log\": {\"level\": \"warn\"}}\n");
    const char *args2[] = {"--config", path, "--http-max-body-size=8MiB", "--check-config", NULL};
    const char *env[] = {"STREAMGATE_EVENT_MAX_FIELDS=64", NULL};
    r = run(args2, env);
    unlink(path);
    rmdir(dir);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_str_eq(r.out, "configuration ok\n");
    run_free(&r);
}

Test(cli, bad_size_flag)
{
    const char *args[] = {"--check-config", "--http-max-body-size", "12 parsecs", NULL};
    const char *want[] = {"http.max_body_size", "invalid size \"12 parsecs\"",
                          "(from --http-max-body-size)", NULL};
    expect_config_error(args, NULL, want);
}

Test(cli, bad_size_env)
{
    const char *args[] = {"--check-config", NULL};
    const char *env[] = {"STREAMGATE_HTTP_MAX_BODY_SIZE=12 parsecs", NULL};
    const char *want[] = {"http.max_body_size", "invalid size \"12 parsecs\"",
                          "(from env STREAMGATE_HTTP_MAX_BODY_SIZE)", NULL};
    expect_config_error(args, env, want);
}

/* Acknowledging on delivery waits for the raw topic's delivery reports: without Kafka there are
 * none, and --check-config says so. */
Test(cli, ack_delivered_needs_kafka)
{
    const char *args[] = {"--check-config", "--ingest-ack", "delivered", NULL};
    const char *want[] = {"ingest.ack", "delivered needs kafka.brokers", NULL};
    expect_config_error(args, NULL, want);
    const char *no_topic[] = {"--check-config", "--ingest-ack",      "delivered", "--kafka-brokers",
                              "127.0.0.1:9092", "--kafka-raw-topic", "",          NULL};
    const char *want_topic[] = {"ingest.ack", "delivered needs kafka.raw_topic", NULL};
    expect_config_error(no_topic, NULL, want_topic);
    const char *env[] = {"STREAMGATE_INGEST_ACK=delivered",
                         "STREAMGATE_KAFKA_BROKERS=127.0.0.1:9092", NULL};
    const char *ok[] = {"--check-config", NULL};
    char *out = NULL, *err = NULL;
    int code = sgt_run(ok, env, &out, &err);
    cr_assert_eq(code, 0, "exit %d: %s", code, err);
    cr_assert(strstr(out, "configuration ok"), "%s", out);
    free(out);
    free(err);
}

Test(cli, unknown_option)
{
    const char *args[] = {"--check-config", "--http-lisen", "127.0.0.1:1", NULL};
    const char *want[] = {"unknown option --http-lisen", NULL};
    expect_config_error(args, NULL, want);
}

Test(cli, missing_value)
{
    const char *args[] = {"--check-config", "--http-listen", NULL};
    const char *want[] = {"--http-listen", "needs a value", NULL};
    expect_config_error(args, NULL, want);
}

/* A STREAMGATE_* variable no option has is a warning, not an error: --check-config passes and
 * names it, so a typo is still seen. */
Test(cli, unknown_env_is_a_warning)
{
    const char *args[] = {"--check-config", NULL};
    const char *env[] = {"STREAMGATE_HTTP_LISEN=127.0.0.1:1", NULL};
    struct run r = run(args, env);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_str_eq(r.out, "configuration ok\n");
    cr_assert_str_eq(r.err, "streamgate: warning: ignoring environment variable "
                            "STREAMGATE_HTTP_LISEN (no option has that name)\n");
    run_free(&r);
}

/* Kubernetes gives every pod of a Service named streamgate variables such as these: the
 * gateway serves, and logs one JSON warning per variable, naming it and not its value. */
Test(cli, kubernetes_service_variables_do_not_stop_it)
{
    const char *env[] = {"STREAMGATE_SERVICE_HOST=10.0.0.1",
                         "STREAMGATE_PORT_8080_TCP=tcp://10.0.0.1:8080", NULL};
    struct sgt_proc p;
    sgt_start(&p, NULL, env);
    struct sgt_response r;
    sgt_post(p.http, "application/json", "{\"key\":\"a\",\"v\":1}", &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    sgt_response_free(&r);

    char *log = sgt_read_file(p.log_path, NULL);
    cr_assert_not_null(log);
    static const char *const names[] = {"STREAMGATE_SERVICE_HOST", "STREAMGATE_PORT_8080_TCP"};
    int seen[2] = {0, 0}, warnings = 0;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        cr_assert(cJSON_IsObject(j), "not a JSON object: %s", line);
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "msg");
        if (cJSON_IsString(msg) && strcmp(msg->valuestring, "ignoring environment variable") == 0) {
            warnings++;
            cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "level")->valuestring, "warn");
            const cJSON *var = cJSON_GetObjectItemCaseSensitive(j, "variable");
            cr_assert(cJSON_IsString(var), "%s", line);
            for (int i = 0; i < 2; i++)
                seen[i] += strcmp(var->valuestring, names[i]) == 0;
        }
        cr_assert_null(strstr(line, "10.0.0.1"), "a value was logged: %s", line);
        cJSON_Delete(j);
    }
    free(log);
    cr_assert_eq(warnings, 2, "one warning per variable");
    cr_assert(seen[0] == 1 && seen[1] == 1, "each variable named once");
    sgt_stop_ok(&p);
}

Test(cli, validation_error)
{
    const char *args[] = {"--check-config", "--http-listen=", "--tcp-listen", "", NULL};
    const char *want[] = {"http.listen", "tcp.listen", "at least one listener", NULL};
    expect_config_error(args, NULL, want);

    const char *args2[] = {"--check-config", "--event-max-fields=65", NULL};
    const char *want2[] = {"event.max_fields", "65", NULL};
    expect_config_error(args2, NULL, want2);
}

Test(cli, bad_config_files)
{
    char dir[] = "/tmp/sg_cli_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/streamgate.json", dir);
    const char *args[] = {"--check-config", "--config", path, NULL};

    write_file(path, "{\"http\": {\"listen\": }}");
    const char *want_json[] = {"invalid JSON at byte 20", path, NULL};
    expect_config_error(args, NULL, want_json);

    write_file(path, "{\"http\": {\"lisen\": \"127.0.0.1:1\"}}");
    const char *want_key[] = {"unknown option http.lisen", path, NULL};
    expect_config_error(args, NULL, want_key);

    write_file(path, "{\"http\": {\"max_body_size\": \"12 parsecs\"}}");
    const char *want_val[] = {"http.max_body_size", "12 parsecs", path, NULL};
    expect_config_error(args, NULL, want_val);

    write_file(path, "{\"tcp\": {\"max_connections\": \"many\"}}");
    const char *want_int[] = {"tcp.max_connections", "invalid integer", path, NULL};
    expect_config_error(args, NULL, want_int);

    unlink(path);
    const char *want_missing[] = {"cannot open config file", path, NULL};
    expect_config_error(args, NULL, want_missing);
    rmdir(dir);
}

/* Counts the occurrences of `needle` in `hay`. */
static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* A gateway that cannot start: exit 1, nothing on stdout, and stderr made of JSON objects, one
 * per line, of which exactly one is the error ("start-up failed"), whose text contains every
 * string in `want`, each of which appears nowhere else. */
static void expect_startup_failure(const char *const *args, const char *const *env,
                                   const char *const *want)
{
    struct run r = run(args, env);
    cr_assert_eq(r.status, 1, "exit %d, stderr: %s", r.status, r.err);
    cr_assert_str_eq(r.out, "");
    size_t len = strlen(r.err);
    cr_assert(len > 0 && r.err[len - 1] == '\n', "stderr does not end a line: %s", r.err);
    char *copy = strdup(r.err), *error = NULL;
    int failures = 0;
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        cr_assert(cJSON_IsObject(j), "a stderr line is not a JSON object: %s\nstderr:\n%s", line,
                  r.err);
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "msg");
        cr_assert(cJSON_IsString(msg), "%s", line);
        if (strcmp(msg->valuestring, "start-up failed") == 0) {
            failures++;
            cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "level")->valuestring, "error");
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
            cr_assert(cJSON_IsString(e), "%s", line);
            free(error);
            error = strdup(e->valuestring);
        }
        cJSON_Delete(j);
    }
    free(copy);
    cr_assert_eq(failures, 1, "the failure is logged %d times:\n%s", failures, r.err);
    /* Each part of the message is in the error, and nowhere else: not repeated in another
     * form. */
    for (size_t i = 0; want[i] != NULL; i++) {
        assert_contains(error, want[i]);
        cr_assert_eq(count_of(r.err, want[i]), 1, "\"%s\" appears more than once:\n%s", want[i],
                     r.err);
    }
    free(error);
    run_free(&r);
}

Test(cli, config_error_at_normal_start)
{
    /* Without --check-config the same error stops the server before it listens, and says so
     * in its log. */
    const char *args[] = {"--http-listen", "127.0.0.1:0", "--log-level", "loud", NULL};
    const char *want[] = {"log.level", "loud", "(from --log-level)", NULL};
    expect_startup_failure(args, NULL, want);

    const char *env[] = {"STREAMGATE_HTTP_MAX_BODY_SIZE=12 parsecs", NULL};
    const char *want_env[] = {"http.max_body_size", "(from env STREAMGATE_HTTP_MAX_BODY_SIZE)",
                              NULL};
    const char *no_args[] = {NULL};
    expect_startup_failure(no_args, env, want_env);
}

Test(cli, bad_config_file_at_normal_start)
{
    char dir[] = "/tmp/sg_cli_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/streamgate.json", dir);
    write_file(path, "{\"http\": {\"listen\": \"127.0.0.1:0\", \"max_body_size\": \"huge\"}}");
    const char *args[] = {"--config", path, NULL};
    const char *want[] = {"http.max_body_size", "huge", path, NULL};
    expect_startup_failure(args, NULL, want);
    unlink(path);
    rmdir(dir);
}

/* A failure once the configuration is read (the port is taken) comes once, as JSON, among the
 * other JSON lines of a stopping gateway. */
Test(cli, port_in_use_at_start)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof(sa);
    cr_assert(fd >= 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(fd, 1), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    const char *args[] = {"--http-listen", addr, "--tcp-listen", "", NULL};
    const char *want[] = {"cannot listen on", addr, NULL};
    expect_startup_failure(args, NULL, want);
    close(fd);
}

/* kafka.rdkafka is checked by librdkafka itself, as the real start would: a property it does
 * not know, or one that contradicts another, fails --check-config and names it. */
Test(cli, check_config_checks_kafka_properties)
{
    const char *typo[] = {"--check-config", "--kafka-rdkafka", "linger.mss=20", NULL};
    const char *want_typo[] = {"kafka.rdkafka", "linger.mss", NULL};
    expect_config_error(typo, NULL, want_typo);

    const char *value[] = {"--check-config", "--kafka-rdkafka", "compression.type=zip", NULL};
    const char *want_value[] = {"kafka.rdkafka", "\"zip\"", NULL};
    expect_config_error(value, NULL, want_value);

    /* Each is valid alone; together with the default enable.idempotence=true they are not. */
    const char *conflict[] = {"--check-config", "--kafka-rdkafka", "acks=1", NULL};
    const char *want_conflict[] = {"kafka.rdkafka", "acks", "enable.idempotence", NULL};
    expect_config_error(conflict, NULL, want_conflict);

    /* The same at a real start, as a JSON log line. */
    const char *start[] = {"--http-listen", "127.0.0.1:0", "--kafka-rdkafka", "linger.mss=20",
                           NULL};
    expect_startup_failure(start, NULL, want_typo);

    /* Valid ones pass, as a flag and as an object in the file. */
    const char *good[] = {"--check-config", "--kafka-rdkafka", "linger.ms=20", NULL};
    struct run r = run(good, NULL);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_str_eq(r.out, "configuration ok\n");
    cr_assert_str_eq(r.err, "");
    run_free(&r);
    char dir[] = "/tmp/sg_cli_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/streamgate.json", dir);
    write_file(path, "{\"kafka\": {\"rdkafka\": {\"linger.ms\": 20, \"compression.type\": "
                     "\"zstd\"}}}");
    const char *file[] = {"--check-config", "--config", path, NULL};
    r = run(file, NULL);
    unlink(path);
    rmdir(dir);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_str_eq(r.out, "configuration ok\n");
    run_free(&r);
}

/* The check connects to nothing, not even to brokers it is told about. */
Test(cli, check_config_does_not_connect_to_kafka)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof(sa);
    cr_assert(fd >= 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(fd, 8), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
    char broker[64], props[128];
    snprintf(broker, sizeof(broker), "127.0.0.1:%d", ntohs(sa.sin_port));
    snprintf(props, sizeof(props), "bootstrap.servers=%s,linger.ms=20", broker);
    const char *args[] = {
        "--check-config", "--kafka-brokers", broker, "--kafka-rdkafka", props, NULL};
    struct run r = run(args, NULL);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_str_eq(r.out, "configuration ok\n");
    run_free(&r);
    /* The process has exited: a connection it made would be queued on the listener by now. */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&pfd, 1, 0), 0, "--check-config connected to the broker");
    close(fd);
}

/* A command line that does not parse is for the person who typed it: one plain line. */
Test(cli, bad_usage_at_normal_start_is_plain_text)
{
    const char *args[] = {"--http-lisen", "127.0.0.1:0", NULL};
    struct run r = run(args, NULL);
    cr_assert_eq(r.status, 1, "stderr: %s", r.err);
    cr_assert_str_eq(r.err, "streamgate: unknown option --http-lisen (see --help)\n");
    run_free(&r);
}

/* Compares the README's table between `<!-- what:begin -->` and `<!-- what:end -->` with the
 * output of `flag`; returns NULL when they match, or writes what is wrong into `why`. Frees
 * nothing it did not allocate. */
static const char *readme_mismatch(char *readme, const char *what, const char *flag,
                                   const char *table, char *why, size_t why_len)
{
    char begin_mark[64], end_mark[64];
    snprintf(begin_mark, sizeof(begin_mark), "<!-- %s:begin -->", what);
    snprintf(end_mark, sizeof(end_mark), "<!-- %s:end -->", what);
    char *begin = strstr(readme, begin_mark);
    if (begin == NULL) {
        snprintf(why, why_len, "README.md has no %s marker", begin_mark);
        return why;
    }
    begin += strlen(begin_mark);
    char *end = strstr(begin, end_mark);
    if (end == NULL) {
        snprintf(why, why_len, "README.md has no %s marker after %s", end_mark, begin_mark);
        return why;
    }
    /* The table sits on its own lines between the markers, possibly set off by blank lines:
     * drop those; what is left must be exactly the program's output. */
    while (*begin == '\n')
        begin++;
    while (end > begin + 1 && end[-1] == '\n' && end[-2] == '\n')
        end--;
    *end = '\0';
    if (strcmp(begin, table) == 0)
        return NULL;

    /* Name the first line that differs so the failure is actionable. */
    size_t line = 1, i = 0;
    for (; begin[i] != '\0' && begin[i] == table[i]; i++)
        line += begin[i] == '\n';
    const char *bl = begin + i, *tl = table + i;
    while (bl > begin && bl[-1] != '\n')
        bl--;
    while (tl > table && tl[-1] != '\n')
        tl--;
    snprintf(why, why_len,
             "README.md's %s table is stale (regenerate it with `streamgate %s` between the "
             "markers); first difference in table line %zu:\n"
             "README:  %.*s\nprogram: %.*s",
             what, flag, line, (int)strcspn(bl, "\n"), bl, (int)strcspn(tl, "\n"), tl);
    return why;
}

/* Fails when README.md's table `what` is not the output of `flag`. */
static void check_readme_table(const char *what, const char *flag)
{
    const char *root = getenv("SG_SOURCE_ROOT");
    cr_assert_not_null(root, "SG_SOURCE_ROOT is not set");
    char path[1024];
    snprintf(path, sizeof(path), "%s/README.md", root);

    const char *args[] = {flag, NULL};
    struct run r = run(args, NULL);
    int status = r.status;
    size_t readme_len = 0;
    char *readme = sgt_read_file(path, &readme_len);
    char why[1024];
    const char *problem = readme == NULL ? "cannot read README.md"
                          : status != 0
                              ? "the flag failed"
                              : readme_mismatch(readme, what, flag, r.out, why, sizeof(why));
    /* Free before asserting: a failed assertion does not return. */
    free(readme);
    run_free(&r);
    cr_assert_null(problem, "%s: %s", flag, problem);
}

Test(cli, readme_matches_options_markdown)
{
    check_readme_table("options", "--options-markdown");
}

Test(cli, readme_matches_metrics_markdown)
{
    check_readme_table("metrics", "--metrics-markdown");
}

/* The example configurations shipped in deploy/ (one process, a gateway, an aggregator) must
 * stay valid as options change. */
Test(cli, deploy_example_configs_are_valid)
{
    const char *root = getenv("SG_SOURCE_ROOT");
    cr_assert_not_null(root, "SG_SOURCE_ROOT is not set");
    static const char *const files[] = {"streamgate.json", "streamgate-gateway.json",
                                        "streamgate-aggregator.json"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/deploy/%s", root, files[i]);
        const char *args[] = {"--config", path, "--check-config", NULL};
        char *out = NULL, *err = NULL;
        int code = sgt_run(args, NULL, &out, &err);
        cr_assert_eq(code, 0, "deploy/%s is invalid: %s", files[i], err);
        cr_assert_str_eq(out, "configuration ok\n");
        free(out);
        free(err);
    }
}

/* Waits up to timeout_ms for the child; returns its exit status, or -1 if still running. */
static int wait_exit(pid_t pid, int timeout_ms)
{
    int status;
    for (int64_t end = sgt_mono_ms() + timeout_ms; sgt_mono_ms() < end; sgt_sleep_ms(10))
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return -1;
}

Test(cli, sigint_stops_cleanly_and_keeps_what_was_sent)
{
    struct sgt_proc p;
    sgt_start(&p, NULL, NULL);
    int fd = sgt_connect(p.tcp);
    const char *sent = "{\"key\":\"a\",\"v\":1}\n{\"key\":\"b\",\"v\":2}";
    sgt_send_str(fd, sent);
    double want = (double)strlen(sent);
    cr_assert_eq(
        sgt_wait_metric(p.http, "streamgate_bytes_received_total{transport=\"tcp\"}", want, 5000),
        want);
    kill(p.pid, SIGINT);
    cr_assert_eq(wait_exit(p.pid, 10000), 0, "SIGINT exits 0 after draining");
    char *out = sgt_read_file(p.out_path, NULL);
    cr_assert_str_eq(out, "{\"key\":\"a\",\"v\":1}\n{\"key\":\"b\",\"v\":2}\n",
                     "the last line without a newline counted too");
    free(out);
    close(fd);
    p.pid = 0;
    sgt_stop(&p); /* removes the run's directory */
}

Test(cli, second_signal_exits_at_once)
{
    const char *args[] = {"--http-body-timeout", "1m", "--shutdown-timeout", "1m", NULL};
    struct sgt_proc p;
    sgt_start(&p, args, NULL);
    /* A request whose body never comes holds the first shutdown for a minute. */
    int fd = sgt_connect(p.http);
    sgt_send_str(fd, "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 100\r\n\r\n{\"key\":");
    sgt_sleep_ms(100);
    kill(p.pid, SIGTERM);
    cr_assert_eq(wait_exit(p.pid, 500), -1, "the first signal waits for the request in flight");
    kill(p.pid, SIGTERM);
    cr_assert_eq(wait_exit(p.pid, 5000), 1, "the second signal exits at once, with status 1");
    close(fd);
    p.pid = 0;
    sgt_stop(&p);
}

/* A gateway or an aggregator without brokers is refused, and kafka.rdkafka reaches the
 * consumer as well as the producer: each accepts the other's properties, and a bad value of a
 * consumer property is caught like a producer one. */
Test(cli, check_config_roles)
{
    const char *gateway[] = {"--check-config", "--role", "gateway", NULL};
    const char *want_gateway[] = {"role: gateway needs kafka.brokers", NULL};
    expect_config_error(gateway, NULL, want_gateway);

    const char *env[] = {"STREAMGATE_ROLE=aggregator", NULL};
    const char *aggregator[] = {"--check-config", NULL};
    const char *want_aggregator[] = {"role: aggregator needs kafka.brokers", NULL};
    expect_config_error(aggregator, env, want_aggregator);

    const char *mixed[] = {"--check-config",
                           "--role",
                           "aggregator",
                           "--kafka-brokers",
                           "127.0.0.1:9",
                           "--kafka-rdkafka",
                           "linger.ms=20,session.timeout.ms=10000,fetch.wait.max.ms=50",
                           NULL};
    struct run r = run(mixed, NULL);
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    cr_assert_str_eq(r.out, "configuration ok\n");
    run_free(&r);

    const char *bad[] = {"--check-config", "--kafka-rdkafka", "session.timeout.ms=soon", NULL};
    const char *want_bad[] = {"kafka.rdkafka", "session.timeout.ms", NULL};
    expect_config_error(bad, NULL, want_bad);
}
