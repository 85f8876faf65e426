/* The embedded Kafka cluster: librdkafka's mock cluster, owned by a client instance that does
 * nothing else. The brokers and their listeners run on librdkafka's threads. */
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/config.h"
#include "streamgate/kafka_embedded.h"

#define EMBEDDED_BROKERS     3
#define EMBEDDED_REPLICATION 3

struct sg_kafka_embedded {
    rd_kafka_t *rk; /* the cluster's owner */
    rd_kafka_mock_cluster_t *mcluster;
    char *bootstrap;
};

/* The owner has no brokers configured and says so; its log lines are of no use to anyone, and
 * librdkafka's default would print them on stderr as plain text among our JSON lines. */
static void discard_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

int sg_kafka_embedded_start(const struct sg_config *cfg, struct sg_kafka_embedded **out,
                            char *errstr, size_t errstr_size)
{
    const char *topics[] = {cfg->kafka_raw_topic, cfg->kafka_agg_topic, cfg->kafka_late_topic,
                            cfg->kafka_anomaly_topic};
    int partitions = cfg->kafka_partitions < 1        ? 1
                     : cfg->kafka_partitions > 100000 ? 100000
                                                      : (int)cfg->kafka_partitions;
    char err[512];
    int rc;
    struct sg_kafka_embedded *emb = calloc(1, sizeof(*emb));
    if (!emb) {
        snprintf(errstr, errstr_size, "kafka embedded: out of memory");
        return -ENOMEM;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        rc = -ENOMEM;
        snprintf(errstr, errstr_size, "kafka embedded: out of memory");
        goto fail;
    }
    rd_kafka_conf_set_log_cb(conf, discard_log);
    emb->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!emb->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "kafka embedded: %s", err);
        rc = -EINVAL;
        goto fail;
    }
    emb->mcluster = rd_kafka_mock_cluster_new(emb->rk, EMBEDDED_BROKERS);
    if (!emb->mcluster) {
        snprintf(errstr, errstr_size, "kafka embedded: cannot start the mock cluster");
        rc = -EIO;
        goto fail;
    }
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        if (!topics[i] || !*topics[i])
            continue;
        rd_kafka_resp_err_t kerr =
            rd_kafka_mock_topic_create(emb->mcluster, topics[i], partitions, EMBEDDED_REPLICATION);
        if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
            kerr = rd_kafka_mock_topic_create(emb->mcluster, topics[i], partitions, 1);
        if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(errstr, errstr_size, "kafka embedded: topic %s: %s", topics[i],
                     rd_kafka_err2str(kerr));
            rc = -EIO;
            goto fail;
        }
    }
    emb->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(emb->mcluster));
    if (!emb->bootstrap) {
        snprintf(errstr, errstr_size, "kafka embedded: out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    *out = emb;
    return 0;
fail:
    sg_kafka_embedded_stop(emb);
    return rc;
}

const char *sg_kafka_embedded_bootstrap(const struct sg_kafka_embedded *emb)
{
    return emb->bootstrap;
}

void sg_kafka_embedded_stop(struct sg_kafka_embedded *emb)
{
    if (!emb)
        return;
    if (emb->mcluster)
        rd_kafka_mock_cluster_destroy(emb->mcluster);
    if (emb->rk)
        rd_kafka_destroy(emb->rk);
    free(emb->bootstrap);
    free(emb);
}
