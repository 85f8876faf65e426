/* A mock Kafka cluster for the Kafka integration tests: librdkafka's in-process mock brokers,
 * reachable over the real Kafka protocol (so the gateway and kcat can both talk to it), with a
 * line-based control channel on stdin for fault injection.
 *
 *   mock_kafka [--brokers N] [--partitions P] [--topics a,b,c]
 *
 * Prints `bootstrap=<servers>` on stdout, then reads one command per line and answers `ok` or
 * `error <msg>`: down <id>, up <id>, down-all, up-all, rtt <id> <ms>, errors <api-key> <count>
 * <code> (the next <count> requests of that Kafka API fail with error <code>, e.g. `errors 0 5
 * 29`: five Produce requests fail with TOPIC_AUTHORIZATION_FAILED), quit. EOF also quits. */
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE 512

struct mock {
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    int brokers;
};

static void mock_destroy(struct mock *m)
{
    if (m->mc)
        rd_kafka_mock_cluster_destroy(m->mc);
    if (m->rk)
        rd_kafka_destroy(m->rk);
    m->mc = NULL;
    m->rk = NULL;
}

/* Parses a positive int in [lo, hi]; returns -1 when malformed or out of range. */
static long parse_int(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    return v;
}

static int mock_create(struct mock *m, int brokers, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* The owning handle only hosts the mock cluster's thread; it never produces. Silence its
     * logging so stdout stays a clean control channel (logs go to stderr anyway). */
    if (rd_kafka_conf_set(conf, "log_level", "3", errstr, errstr_size) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
    }
    m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!m->rk) {
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
    }
    m->mc = rd_kafka_mock_cluster_new(m->rk, brokers);
    if (!m->mc) {
        snprintf(errstr, errstr_size, "rd_kafka_mock_cluster_new failed");
        return -EIO;
    }
    m->brokers = brokers;
    return 0;
}

static int set_all(struct mock *m, int up)
{
    for (int id = 1; id <= m->brokers; id++) {
        rd_kafka_resp_err_t err =
            up ? rd_kafka_mock_broker_set_up(m->mc, id) : rd_kafka_mock_broker_set_down(m->mc, id);
        if (err)
            return (int)err;
    }
    return 0;
}

static void reply(rd_kafka_resp_err_t err)
{
    if (err)
        printf("error %s\n", rd_kafka_err2str(err));
    else
        printf("ok\n");
    fflush(stdout);
}

/* Runs one command; returns 1 to quit, 0 to go on. */
static int command(struct mock *m, char *line)
{
    char *save = NULL;
    char *cmd = strtok_r(line, " \t\r\n", &save);
    char *a1 = cmd ? strtok_r(NULL, " \t\r\n", &save) : NULL;
    char *a2 = a1 ? strtok_r(NULL, " \t\r\n", &save) : NULL;
    char *a3 = a2 ? strtok_r(NULL, " \t\r\n", &save) : NULL;
    if (!cmd) {
        printf("error empty command\n");
        fflush(stdout);
        return 0;
    }
    if (strcmp(cmd, "quit") == 0) {
        printf("ok\n");
        fflush(stdout);
        return 1;
    }
    if (strcmp(cmd, "down-all") == 0 || strcmp(cmd, "up-all") == 0) {
        reply((rd_kafka_resp_err_t)set_all(m, cmd[0] == 'u'));
        return 0;
    }
    if (strcmp(cmd, "errors") == 0) {
        long api = a1 ? parse_int(a1, 0, 100) : -1;
        long count = a2 ? parse_int(a2, 1, 100000) : -1;
        long code = a3 ? parse_int(a3, 1, 1000) : -1;
        if (api < 0 || count < 0 || code < 0) {
            printf("error usage: errors <api-key> <count> <code>\n");
            fflush(stdout);
            return 0;
        }
        rd_kafka_resp_err_t *errs = malloc((size_t)count * sizeof(*errs));
        if (!errs) {
            printf("error out of memory\n");
            fflush(stdout);
            return 0;
        }
        for (long i = 0; i < count; i++)
            errs[i] = (rd_kafka_resp_err_t)code;
        rd_kafka_mock_push_request_errors_array(m->mc, (int16_t)api, (size_t)count, errs);
        free(errs);
        reply(RD_KAFKA_RESP_ERR_NO_ERROR);
        return 0;
    }
    if (strcmp(cmd, "down") == 0 || strcmp(cmd, "up") == 0 || strcmp(cmd, "rtt") == 0) {
        long id = a1 ? parse_int(a1, 1, m->brokers) : -1;
        if (id < 0) {
            printf("error broker id must be 1..%d\n", m->brokers);
            fflush(stdout);
            return 0;
        }
        if (strcmp(cmd, "rtt") == 0) {
            long ms = a2 ? parse_int(a2, 0, 3600000) : -1;
            if (ms < 0) {
                printf("error rtt needs milliseconds\n");
                fflush(stdout);
                return 0;
            }
            reply(rd_kafka_mock_broker_set_rtt(m->mc, (int32_t)id, (int)ms));
        } else if (cmd[0] == 'u') {
            reply(rd_kafka_mock_broker_set_up(m->mc, (int32_t)id));
        } else {
            reply(rd_kafka_mock_broker_set_down(m->mc, (int32_t)id));
        }
        return 0;
    }
    printf("error unknown command %s\n", cmd);
    fflush(stdout);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: mock_kafka [--brokers N] [--partitions P] [--topics a,b,c]\n");
    return 2;
}

int main(int argc, char **argv)
{
    long brokers = 3, partitions = 12;
    char topics[MAX_LINE] = "events,aggregates";
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return usage();
        if (strcmp(argv[i], "--brokers") == 0) {
            if ((brokers = parse_int(argv[++i], 1, 64)) < 0)
                return usage();
        } else if (strcmp(argv[i], "--partitions") == 0) {
            if ((partitions = parse_int(argv[++i], 1, 10000)) < 0)
                return usage();
        } else if (strcmp(argv[i], "--topics") == 0) {
            if (snprintf(topics, sizeof(topics), "%s", argv[++i]) >= (int)sizeof(topics))
                return usage();
        } else {
            return usage();
        }
    }

    struct mock m = {0};
    char errstr[512];
    if (mock_create(&m, (int)brokers, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "mock_kafka: %s\n", errstr);
        mock_destroy(&m);
        return 1;
    }
    /* Replication factor: every broker, capped at 3, so one broker down still leaves replicas. */
    int replication = brokers < 3 ? (int)brokers : 3;
    char *save = NULL;
    for (char *t = strtok_r(topics, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!*t)
            continue;
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(m.mc, t, (int)partitions, replication);
        if (err) {
            fprintf(stderr, "mock_kafka: topic %s: %s\n", t, rd_kafka_err2str(err));
            mock_destroy(&m);
            return 1;
        }
    }
    printf("bootstrap=%s\n", rd_kafka_mock_cluster_bootstraps(m.mc));
    fflush(stdout);

    char line[MAX_LINE];
    while (fgets(line, sizeof(line), stdin)) {
        if (command(&m, line))
            break;
    }
    mock_destroy(&m);
    return 0;
}
