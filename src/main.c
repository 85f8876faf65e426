/* The wiring: builds the pipeline from the configuration and runs the loop. This is the only
 * file that knows every stage. */
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "streamgate/budget.h"
#include "streamgate/buf.h"
#include "streamgate/config.h"
#include "streamgate/dead_letter.h"
#include "streamgate/http_server.h"
#include "streamgate/ingest.h"
#include "streamgate/kafka_source.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "streamgate/sink.h"
#include "streamgate/sinks.h"
#include "streamgate/kafka_embedded.h"
#include "streamgate/sink_file.h"
#include "streamgate/sink_kafka.h"
#include "streamgate/sink_tablestore.h"
#include "streamgate/tablestore_reader.h"
#include "query/history.h"
#include "query/models.h"
#include "streamgate/streams.h"
#include "streamgate/tcp_server.h"

extern char **environ;

#define LAG_INTERVAL_MS 100

/* The process's exit statuses, as the README's "Operating it" lists them. */
enum sg_exit_status {
    SG_EXIT_OK = 0,      /* stopped cleanly: the writers finished within shutdown.timeout */
    SG_EXIT_FAILURE = 1, /* could not start (or a second signal cut the shutdown short) */
    /* Stopped, but shutdown.timeout passed while a writer still held records: Kafka records
     * not delivered, Tablestore rows not written. They are counted as failed and logged. */
    SG_EXIT_RECORDS_LEFT = 3,
};

static const double lag_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                    0.05,   0.1,   0.25,   0.5,   1.0,  2.5};

/* Told after a reload applied live options, on the loop, with the configuration now running
 * (e.g. for TLS to re-read its certificates for new connections). */
struct reload_hook {
    void (*fn)(void *arg, const struct sg_config *cfg);
    void *arg;
};
#define SG_RELOAD_HOOKS 4

enum { RELOAD_APPLIED, RELOAD_REFUSED, RELOAD_INVALID };

/* A reload's loading and validation, done on the thread pool (it reads a file). */
struct reload_job {
    uv_work_t work;
    struct sg_app *app;
    struct sg_config next;
    struct sg_cli cli;
    int rc;
    char err[512];
};

struct sg_app {
    uv_loop_t loop;
    struct sg_config cfg;
    struct sg_log log;
    struct sg_metrics *metrics;
    struct sg_budget *budget;
    struct sg_ingest *ingest;
    struct sg_sinks *sinks; /* every writer; owns them */
    struct sg_streams *streams;
    uv_timer_t tick_timer;
    struct sg_kafka_embedded *kafka_embedded; /* kafka.brokers = "embedded" */
    struct sg_sink *kafka;                    /* also in sinks; NULL: no Kafka writer */
    struct sg_dead_letter *dead_letter;       /* output.dead_letter_file; NULL: off */
    struct sg_kafka_source *source;           /* role aggregator: the raw topic's consumer */
    struct sg_http_server *http;
    struct sg_sink *tablestore; /* also in sinks; NULL: no Tablestore writer */
    struct sg_history *history; /* GET /v1/history */
    struct sg_models *models;   /* new keys' forecast models read back; NULL: none */
    struct sg_tcp_server *tcp;
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t lag_timer;
    uint64_t lag_expected_ns;
    struct sg_histogram *lag;
    uv_timer_t drain_timer;
    int servers_open;
    bool stopping;
    bool drained;
    bool records_left; /* the drain deadline passed with writers still holding records */

    /* SIGHUP reloads the configuration from what it was loaded from at start. */
    int argc;
    char **argv;
    char **envp;
    uint64_t config_hash;            /* sg_config_hash of the running configuration */
    char config_loaded_at[32];       /* when it was loaded (UTC, RFC 3339) */
    struct reload_job *reload;       /* the reload being read on the thread pool; NULL: none */
    bool reload_again;               /* another SIGHUP came meanwhile */
    const char *config_file;         /* --config, or NULL */
    struct sg_counter *m_reloads[3]; /* applied, refused, invalid */
    struct reload_hook reload_hooks[SG_RELOAD_HOOKS];
    size_t nreload_hooks;
};

static void on_lag_timer(uv_timer_t *t)
{
    struct sg_app *app = sg_container_of(t, struct sg_app, lag_timer);
    uint64_t now = uv_hrtime();
    uint64_t late = now > app->lag_expected_ns ? now - app->lag_expected_ns : 0;
    sg_histogram_observe(app->lag, (double)late / 1e9);
    app->lag_expected_ns = now + (uint64_t)LAG_INTERVAL_MS * 1000000u;
    (void)sg_budget_trim(app->budget, (int64_t)(now / 1000000u));
}

/* Window results go to every writer that takes them. An aggregator follows each one until
 * every writer confirmed it: only then may its records' offsets be committed. */
static bool on_key_new(void *arg, const char *key, size_t key_len)
{
    struct sg_app *app = arg;
    return sg_models_key_new(app->models, key, key_len);
}

static void on_result(void *arg, const struct sg_window_result *res)
{
    struct sg_app *app = arg;
    struct sg_sink_done *done = app->source ? sg_kafka_source_result(app->source, res) : NULL;
    struct sg_sinks_outcome outcome = {0};
    sg_sinks_write_result(app->sinks, res, done, &outcome);
    if (done)
        sg_kafka_source_result_taken(app->source, done, (int)outcome.took);
}

static void on_late(void *arg, const struct sg_event *ev, int64_t window_end)
{
    struct sg_app *app = arg;
    sg_sinks_write_late(app->sinks, ev, window_end);
}

/* Time moves windows even without events: idle watermark advance, processing time, early
 * firing and key eviction. The engine says when it next needs a look. */
static void on_tick(uv_timer_t *t)
{
    struct sg_app *app = sg_container_of(t, struct sg_app, tick_timer);
    int64_t next = sg_streams_tick(app->streams, sg_now_ms());
    uv_timer_start(&app->tick_timer, on_tick, (uint64_t)next, 0);
}

static void close_loop_handles(struct sg_app *app)
{
    uv_close((uv_handle_t *)&app->tick_timer, NULL);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sighup, NULL);
    uv_close((uv_handle_t *)&app->lag_timer, NULL);
    uv_close((uv_handle_t *)&app->drain_timer, NULL);
}

static void on_stopped(void *arg)
{
    struct sg_app *app = arg;
    sg_info(&app->log, "stopped");
    close_loop_handles(app);
}

static void on_drained(void *arg)
{
    struct sg_app *app = arg;
    if (app->drained)
        return;
    app->drained = true;
    /* An aggregator commits what the writers confirmed, then leaves its group. */
    if (app->source && !app->records_left) {
        sg_kafka_source_close(app->source, on_stopped, app);
        return;
    }
    on_stopped(app);
}

static void on_drain_timeout(uv_timer_t *t)
{
    struct sg_app *app = sg_container_of(t, struct sg_app, drain_timer);
    sg_error(&app->log, "drain deadline passed; writers still held data",
             SG_F_UINT("shutdown_timeout_ms", app->cfg.shutdown_timeout_ms));
    app->records_left = true;
    sg_sinks_abandon(app->sinks);
    if (app->drained) { /* the writers are done; the consumer's close is what is late */
        sg_kafka_source_abandon(app->source);
        on_stopped(app);
        return;
    }
    /* The sinks' close paths still run below; what they could not write is counted as failed
     * by them. */
    on_drained(app);
}

static void on_server_closed(void *arg)
{
    struct sg_app *app = arg;
    if (--app->servers_open > 0)
        return;
    /* Every request in flight has been answered; now let the writers finish. */
    if (!app->sinks) { /* start-up failed before the pipeline existed */
        on_drained(app);
        return;
    }
    /* No event can arrive any more: open windows fire as final before the writers drain.
     * Not in an aggregator: they stay unfired and uncommitted, and their partitions' next
     * owner rebuilds them from the raw topic. */
    uv_timer_stop(&app->tick_timer);
    if (app->source)
        sg_kafka_source_stop(app->source);
    else if (app->streams)
        sg_streams_flush(app->streams);
    uv_timer_start(&app->drain_timer, on_drain_timeout, app->cfg.shutdown_timeout_ms, 0);
    sg_sinks_drain(app->sinks, on_drained, app);
}

static void begin_shutdown(struct sg_app *app, const char *why)
{
    sg_info(&app->log, "shutting down", SG_F_STR("signal", why));
    app->stopping = true;
    uv_timer_stop(&app->lag_timer);
    app->servers_open = 1; /* held until both shutdowns are started */
    if (app->http) {
        app->servers_open++;
        sg_http_server_shutdown(app->http, on_server_closed, app);
    }
    if (app->tcp) {
        app->servers_open++;
        sg_tcp_server_shutdown(app->tcp, on_server_closed, app);
    }
    on_server_closed(app);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    struct sg_app *app = sig->data;
    if (app->stopping) {
        /* A second signal means the operator does not want to wait for the drain. */
        sg_warn(&app->log, "second signal, exiting now", SG_F_INT("signal", signum));
        _exit(SG_EXIT_FAILURE);
    }
    begin_shutdown(app, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* ---- SIGHUP: reload ---- */

/* Registers a reload hook; returns 0 or -ENOSPC. */
static int app_on_reload(struct sg_app *app, void (*fn)(void *arg, const struct sg_config *cfg),
                         void *arg)
{
    if (app->nreload_hooks == SG_RELOAD_HOOKS)
        return -ENOSPC;
    app->reload_hooks[app->nreload_hooks++] = (struct reload_hook){.fn = fn, .arg = arg};
    return 0;
}

/* A reload hook: the listeners re-read their TLS certificate, key and client CA for new
 * connections. A failure keeps the files in use; sg_tls_server_reload logs and counts it. */
static void reload_tls(void *arg, const struct sg_config *cfg)
{
    struct sg_app *app = arg;
    char err[256];
    (void)cfg;

    if (app->http)
        (void)sg_http_server_reload_tls(app->http, err, sizeof(err));
    if (app->tcp)
        (void)sg_tcp_server_reload_tls(app->tcp, err, sizeof(err));
}

/* A reload hook: the streams engine's shares of the budget, from the new shares and the new
 * limits.memory. */
static void reload_streams(void *arg, const struct sg_config *cfg)
{
    sg_streams_set_shares(arg, cfg);
}

static void config_loaded(struct sg_app *app)
{
    time_t now = time(NULL);
    struct tm tm;
    app->config_hash = sg_config_hash(&app->cfg);
    gmtime_r(&now, &tm);
    strftime(app->config_loaded_at, sizeof(app->config_loaded_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void reload_work(uv_work_t *work)
{
    struct reload_job *job = sg_container_of(work, struct reload_job, work);
    struct sg_app *app = job->app;
    job->rc = sg_config_load(&job->next, &job->cli, app->argc, app->argv, app->envp, job->err,
                             sizeof(job->err));
}

static void start_reload(struct sg_app *app);

/* Back on the loop: applies what may change live, or keeps the running configuration. */
static void reload_done(uv_work_t *work, int status)
{
    struct reload_job *job = sg_container_of(work, struct reload_job, work);
    struct sg_app *app = job->app;
    char changed[512] = "", err[512] = "";
    const char *file = app->config_file ? app->config_file : "";

    app->reload = NULL;
    if (status != 0 || app->stopping) {
        if (job->rc == 0)
            sg_config_free(&job->next);
        free(job);
        return;
    }
    if (job->rc != 0) {
        sg_counter_inc(app->m_reloads[RELOAD_INVALID]);
        sg_error(&app->log, "configuration reload failed: the running configuration is kept",
                 SG_F_STR("file", file), SG_F_STR("error", job->err));
    } else if (sg_config_reload_check(&app->cfg, &job->next, changed, sizeof(changed), err,
                                      sizeof(err)) != 0) {
        sg_counter_inc(app->m_reloads[RELOAD_REFUSED]);
        sg_error(&app->log, "configuration reload refused", SG_F_STR("file", file),
                 SG_F_STR("error", err));
    } else {
        sg_config_take_live(&app->cfg, &job->next);
        app->log.level = app->cfg.log_level;
        sg_budget_set_limits(app->budget, app->cfg.limits_memory,
                             (unsigned)app->cfg.limits_high_watermark,
                             (unsigned)app->cfg.limits_low_watermark);
        if (app->http && sg_http_server_reload(app->http) != 0)
            sg_warn(&app->log, "http.rate_limit not changed: out of memory");
        for (size_t i = 0; i < app->nreload_hooks; i++)
            app->reload_hooks[i].fn(app->reload_hooks[i].arg, &app->cfg);
        config_loaded(app);
        sg_counter_inc(app->m_reloads[RELOAD_APPLIED]);
        char hash[20];
        snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)app->config_hash);
        sg_info(&app->log, "configuration reloaded", SG_F_STR("file", file),
                SG_F_STR("changed", changed), SG_F_STR("hash", hash));
    }
    if (job->rc == 0)
        sg_config_free(&job->next);
    free(job);
    if (app->reload_again) {
        app->reload_again = false;
        start_reload(app);
    }
}

static void start_reload(struct sg_app *app)
{
    if (app->reload) {
        app->reload_again = true; /* once this one is done, read the file again */
        return;
    }
    struct reload_job *job = calloc(1, sizeof(*job));
    if (!job) {
        sg_counter_inc(app->m_reloads[RELOAD_INVALID]);
        sg_error(&app->log, "configuration reload failed: out of memory");
        return;
    }
    job->app = app;
    int rc = uv_queue_work(&app->loop, &job->work, reload_work, reload_done);
    if (rc != 0) {
        free(job);
        sg_counter_inc(app->m_reloads[RELOAD_INVALID]);
        sg_error(&app->log, "configuration reload failed", SG_F_STR("error", uv_strerror(rc)));
        return;
    }
    app->reload = job;
}

static void on_sighup(uv_signal_t *sig, int signum)
{
    struct sg_app *app = sig->data;
    if (app->stopping)
        return;
    sg_info(&app->log, "SIGHUP: reloading the configuration",
            SG_F_STR("file", app->config_file ? app->config_file : ""));
    start_reload(app);
}

static void app_free(struct sg_app *app)
{
    sg_http_server_destroy(app->http);
    sg_tcp_server_destroy(app->tcp);
    sg_history_destroy(app->history); /* after the connections, before the reader's writer */
    sg_models_destroy(app->models);
    sg_ingest_destroy(app->ingest);
    sg_streams_destroy(app->streams);
    sg_sinks_destroy(app->sinks);
    /* After the writers: what they give up at destroy is still told to the consumer. */
    sg_kafka_source_destroy(app->source);
    /* The producer is gone (with the sinks); now its in-process cluster may go. */
    sg_kafka_embedded_stop(app->kafka_embedded);
    sg_dead_letter_destroy(app->dead_letter); /* after the writers that write to it */
    sg_budget_destroy(app->budget);           /* after everything that charges it */
    sg_metrics_destroy(app->metrics);
    sg_config_free(&app->cfg);
}

/* /readyz: an aggregator is ready once its consumer has its assignment. */
static bool source_ready(void *arg)
{
    struct sg_app *app = arg;
    return !app->source || sg_kafka_source_ready(app->source);
}

/* GET /v1/info: what is running and where. */
static int render_info(void *arg, struct sg_buf *out)
{
    static const char *const roles[] = {"all", "gateway", "aggregator"};
    struct sg_app *app = arg;
    int rc = sg_buf_printf(out, "{\"version\":\"%s\",\"role\":\"%s\",\"listeners\":{\"http\":",
                           SG_VERSION, roles[app->cfg.role]);
    const char *http = app->http ? sg_http_server_address(app->http) : "";
    const char *tcp = app->tcp ? sg_tcp_server_address(app->tcp) : "";
    if (rc == 0)
        rc = sg_buf_append_json_string(out, http, strlen(http));
    if (rc == 0)
        rc = sg_buf_append_str(out, ",\"tcp\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(out, tcp, strlen(tcp));
    if (rc == 0)
        rc = sg_buf_append_str(out, "},\"kafka\":");
    if (rc == 0)
        rc = sg_sinks_render_info(app->sinks, "kafka", out);
    if (rc == 0)
        rc = sg_buf_append_str(out, ",\"kafka_consumer\":");
    if (rc == 0)
        rc = app->source ? sg_kafka_source_info(app->source, out) : sg_buf_append_str(out, "null");
    if (rc == 0)
        rc = sg_buf_append_str(out, ",\"tablestore\":");
    if (rc == 0)
        rc = sg_sinks_render_info(app->sinks, "tablestore", out);
    if (rc == 0)
        rc = sg_buf_append_str(out, ",\"budget\":");
    if (rc == 0)
        rc = sg_budget_render(app->budget, out);
    if (rc == 0)
        rc = sg_buf_printf(out, ",\"config\":{\"hash\":\"%016llx\",\"loaded_at\":\"%s\"}",
                           (unsigned long long)app->config_hash, app->config_loaded_at);
    if (rc == 0)
        rc = sg_buf_printf(out, ",\"ready\":%s}",
                           sg_ingest_ready(app->ingest) && !sg_budget_paused(app->budget) &&
                                   source_ready(app)
                               ? "true"
                               : "false");
    return rc;
}

/* The set takes the writer, or it is destroyed here. */
static int add_sink(struct sg_app *app, struct sg_sink *sink, char *err, size_t errlen)
{
    if (sg_sinks_add(app->sinks, sink) == 0)
        return 0;
    snprintf(err, errlen, "too many writers (at most %d)", SG_SINKS_MAX);
    sink->ops->destroy(sink);
    return -ENOSPC;
}

static int start_kafka(struct sg_app *app, const char **bootstrap_out, char *err, size_t errlen)
{
    const char *bootstrap = app->cfg.kafka_brokers;
    *bootstrap_out = bootstrap;
    if (!bootstrap[0])
        return 0;
    if (strcmp(bootstrap, "embedded") == 0) {
        int rc = sg_kafka_embedded_start(&app->cfg, &app->kafka_embedded, err, errlen);
        if (rc)
            return rc;
        bootstrap = sg_kafka_embedded_bootstrap(app->kafka_embedded);
        sg_info(&app->log, "kafka embedded cluster started", SG_F_STR("bootstrap", bootstrap),
                SG_F_INT("partitions", app->cfg.kafka_partitions));
    }
    *bootstrap_out = bootstrap;
    int rc = sg_sink_kafka_create(&app->loop, &app->cfg, bootstrap, app->budget, app->dead_letter,
                                  app->metrics, &app->log, &app->kafka, err, errlen);
    return rc ? rc : add_sink(app, app->kafka, err, errlen);
}

/* Records a writer gave up on also go to the Kafka late topic. */
static void dead_letter_to_kafka(void *arg, const char *sink, const char *key, size_t key_len,
                                 const char *code, const char *message, const char *record,
                                 size_t record_len)
{
    struct sg_app *app = arg;
    sg_sink_kafka_dead_letter(app->kafka, sink, key, key_len, code, message, record, record_len);
}

static int start_tablestore(struct sg_app *app, char *err, size_t errlen)
{
    if (!app->cfg.tablestore_endpoint[0])
        return 0;
    struct sg_sink *tablestore;
    int rc = sg_sink_tablestore_create(&app->loop, &app->cfg, app->budget, app->dead_letter,
                                       app->metrics, &app->log, &tablestore, err, errlen);
    if (rc == 0)
        app->tablestore = tablestore;
    return rc ? rc : add_sink(app, tablestore, err, errlen);
}

static int register_static_metrics(struct sg_app *app)
{
    struct sg_gauge *build =
        sg_metrics_gauge(app->metrics, SG_METRIC_BUILD_INFO, "version=\"" SG_VERSION "\"");
    app->lag = sg_metrics_histogram(app->metrics, SG_METRIC_LOOP_LAG_SECONDS, NULL, lag_bounds,
                                    SG_ARRAY_SIZE(lag_bounds));
    static const char *const results[] = {"result=\"applied\"", "result=\"refused\"",
                                          "result=\"invalid\""};
    for (size_t i = 0; i < SG_ARRAY_SIZE(results); i++) {
        app->m_reloads[i] =
            sg_metrics_counter(app->metrics, SG_METRIC_CONFIG_RELOADS_TOTAL, results[i]);
        if (!app->m_reloads[i])
            return -ENOMEM;
    }
    if (!build || !app->lag)
        return -ENOMEM;
    sg_gauge_set(build, 1);
    return 0;
}

static int app_start(struct sg_app *app, char *err, size_t errlen)
{
    int rc = 0;
    app->metrics = sg_metrics_create();
    if (!app->metrics || register_static_metrics(app) != 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    app->budget =
        sg_budget_create(app->cfg.limits_memory, (unsigned)app->cfg.limits_high_watermark,
                         (unsigned)app->cfg.limits_low_watermark, app->metrics, &app->log);
    if (!app->budget) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    app->sinks = sg_sinks_create();
    app->ingest = sg_ingest_create(&app->cfg, app->metrics, &app->log);
    if (!app->sinks || !app->ingest) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    sg_ingest_set_sinks(app->ingest, app->sinks);
    static const struct {
        size_t offset;
        enum sg_file_kind kind;
    } files[] = {
        {offsetof(struct sg_config, output_file), SG_FILE_RAW},
        {offsetof(struct sg_config, output_results_file), SG_FILE_RESULTS},
        {offsetof(struct sg_config, output_late_file), SG_FILE_LATE},
        {offsetof(struct sg_config, output_anomaly_file), SG_FILE_ANOMALIES},
    };
    for (size_t i = 0; i < SG_ARRAY_SIZE(files); i++) {
        const char *path = *(char *const *)((const char *)&app->cfg + files[i].offset);
        if (!path[0])
            continue;
        struct sg_sink *file;
        rc = sg_sink_file_create(&app->loop, path, files[i].kind, app->budget, app->metrics,
                                 &app->log, &file, err, errlen);
        rc = rc ? rc : add_sink(app, file, err, errlen);
        if (rc)
            return rc;
    }
    /* The dead-letter output exists when it has somewhere to write: a file, or the Kafka late
     * topic (wired once the Kafka writer exists). */
    if (app->cfg.output_dead_letter_file[0] ||
        (app->cfg.kafka_brokers[0] && app->cfg.kafka_late_topic[0])) {
        rc = sg_dead_letter_create(&app->loop, app->cfg.output_dead_letter_file, app->budget,
                                   app->metrics, &app->log, &app->dead_letter, err, errlen);
        if (rc)
            return rc;
    }
    const char *bootstrap = "";
    rc = start_kafka(app, &bootstrap, err, errlen);
    if (rc)
        return rc;
    if (app->dead_letter && app->kafka)
        sg_dead_letter_forward(app->dead_letter, dead_letter_to_kafka, app);
    rc = start_tablestore(app, err, errlen);
    if (rc)
        return rc;
    if (sg_sinks_count(app->sinks) == 0)
        sg_warn(&app->log, "no writer configured: accepted events are counted, then discarded",
                SG_F_STR("hint", "set kafka.brokers, tablestore.endpoint, output.file or "
                                 "output.results_file"));

    /* Only when some writer takes them: the engine then does not render results (or hand over
     * late events) for nobody, which is most of the cost of firing windows. */
    struct sg_streams_callbacks cbs = {.result =
                                           sg_sinks_take_results(app->sinks) ? on_result : NULL,
                                       .numbers_only = sg_sinks_results_numbers_only(app->sinks),
                                       .late = sg_sinks_take_late(app->sinks) ? on_late : NULL,
                                       .arg = app};
    /* New keys' models come back from the results table, where the last run stored them. */
    struct sg_ts_reader *reader = sg_sink_tablestore_reader(app->tablestore);
    if (app->cfg.role != SG_ROLE_GATEWAY && app->cfg.predict_enabled && app->cfg.predict_restore &&
        reader) {
        rc =
            sg_models_create(&app->cfg, reader, app->budget, app->metrics, &app->log, &app->models);
        if (rc) {
            snprintf(err, errlen, "out of memory");
            return rc;
        }
        cbs.key_new = on_key_new;
    }
    /* A gateway keeps no windows: its events go to the raw topic, for the aggregators. */
    if (app->cfg.role != SG_ROLE_GATEWAY) {
        app->streams = sg_streams_create(&app->cfg, app->metrics, &app->log, app->budget, &cbs);
        if (!app->streams) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        sg_ingest_set_streams(app->ingest, app->streams);
        sg_models_set_streams(app->models, app->streams);
        if (app_on_reload(app, reload_streams, app->streams) != 0) {
            snprintf(err, errlen, "reload hooks: %s", sg_strerror(-ENOSPC));
            return -ENOSPC;
        }
    }
    if (app->cfg.role == SG_ROLE_AGGREGATOR) {
        rc = sg_kafka_source_create(&app->loop, &app->cfg, bootstrap, app->streams, app->budget,
                                    app->metrics, &app->log, &app->source, err, errlen);
        if (rc)
            return rc;
    }

    rc = sg_history_create(&app->cfg, sg_sink_tablestore_reader(app->tablestore), app->streams,
                           app->metrics, &app->log, app->budget, &app->history);
    if (rc) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    struct sg_server_env env = {.loop = &app->loop,
                                .cfg = &app->cfg,
                                .ingest = app->ingest,
                                .streams = app->streams,
                                .budget = app->budget,
                                .info = render_info,
                                .ready = source_ready,
                                .info_arg = app,
                                .history = sg_history_handle,
                                .history_arg = app->history,
                                .metrics = app->metrics,
                                .log = &app->log};
    if (app->cfg.http_listen[0]) {
        rc = sg_http_server_create(&env, &app->http, err, errlen);
        if (rc)
            return rc;
    }
    /* An aggregator takes no events: its HTTP listener serves the operator only. */
    if (app->cfg.tcp_listen[0] && app->cfg.role != SG_ROLE_AGGREGATOR) {
        rc = sg_tcp_server_create(&env, &app->tcp, err, errlen);
        if (rc)
            return rc;
    }
    /* The listeners' TLS files are read again on every reload that applies (their paths may
     * be the same, their contents rotated). */
    if (app_on_reload(app, reload_tls, app) != 0) {
        snprintf(err, errlen, "reload hooks: %s", sg_strerror(-ENOSPC));
        return -ENOSPC;
    }
    return 0;
}

/* Open files beyond the connections: listeners, the writers' sockets and files, the loop's own
 * descriptors, the logs. */
#define SG_NOFILE_HEADROOM 1024

/* Raises the soft open-files limit to what the connection limits need. Past the hard limit it
 * goes as high as that allows and says so: the gateway runs, and connections past it are
 * refused at accept (EMFILE) instead of reaching their configured limit. */
static void raise_nofile(struct sg_app *app)
{
    const struct sg_config *cfg = &app->cfg;
    uint64_t need = SG_NOFILE_HEADROOM;
    struct rlimit rl;

    if (cfg->http_listen[0])
        need += (uint64_t)cfg->http_max_connections;
    if (cfg->tcp_listen[0] && cfg->role != SG_ROLE_AGGREGATOR)
        need += (uint64_t)cfg->tcp_max_connections;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        sg_warn(&app->log, "cannot read the open-files limit (RLIMIT_NOFILE)",
                SG_F_STR("error", sg_strerror(-errno)));
        return;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return;
    rlim_t target =
        rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? (rlim_t)need : rl.rlim_max;
    if (target > rl.rlim_cur) {
        struct rlimit want = {.rlim_cur = target, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl.rlim_cur = target;
    }
    if (rl.rlim_cur >= need) {
        sg_debug(&app->log, "open-files limit raised", SG_F_UINT("nofile", (uint64_t)need));
        return;
    }
    sg_warn(&app->log,
            "open-files hard limit (RLIMIT_NOFILE) is too low for the connection limits: the "
            "gateway keeps running, and connections past it are refused when accepted",
            SG_F_UINT("hard_limit", (uint64_t)rl.rlim_max),
            SG_F_UINT("soft_limit", (uint64_t)rl.rlim_cur), SG_F_UINT("needed", need),
            SG_F_STR("hint", "raise the hard limit (ulimit -Hn, systemd LimitNOFILE=, "
                             "docker --ulimit nofile=) or lower tcp.max_connections and "
                             "http.max_connections"));
}

static int run(struct sg_app *app)
{
    char err[512] = "";
    int rc = uv_loop_init(&app->loop);
    if (rc) {
        snprintf(err, sizeof(err), "cannot start the event loop: %s", uv_strerror(rc));
        sg_error(&app->log, "start-up failed", SG_F_STR("error", err));
        sg_config_free(&app->cfg);
        return SG_EXIT_FAILURE;
    }
    uv_signal_init(&app->loop, &app->sigint);
    uv_signal_init(&app->loop, &app->sigterm);
    uv_signal_init(&app->loop, &app->sighup);
    uv_timer_init(&app->loop, &app->lag_timer);
    uv_timer_init(&app->loop, &app->drain_timer);
    uv_timer_init(&app->loop, &app->tick_timer);
    app->sigint.data = app->sigterm.data = app->sighup.data = app;
    config_loaded(app);

    int exit_code = SG_EXIT_OK;
    raise_nofile(app);
    rc = app_start(app, err, sizeof(err));
    if (rc) {
        sg_error(&app->log, "start-up failed", SG_F_STR("error", err));
        exit_code = SG_EXIT_FAILURE;
        /* Close whatever was built; servers that exist have listeners to close. */
        begin_shutdown(app, "start-up failure");
    } else {
        uv_signal_start(&app->sigint, on_signal, SIGINT);
        uv_signal_start(&app->sigterm, on_signal, SIGTERM);
        uv_signal_start(&app->sighup, on_sighup, SIGHUP);
        app->lag_expected_ns = uv_hrtime() + (uint64_t)LAG_INTERVAL_MS * 1000000u;
        uv_timer_start(&app->lag_timer, on_lag_timer, LAG_INTERVAL_MS, LAG_INTERVAL_MS);
        if (app->streams)
            uv_timer_start(&app->tick_timer, on_tick, 1, 0);
        sg_info(&app->log, "listening",
                SG_F_STR("http", app->http ? sg_http_server_address(app->http) : ""),
                SG_F_STR("tcp", app->tcp ? sg_tcp_server_address(app->tcp) : ""),
                SG_F_STR("version", SG_VERSION));
    }

    uv_run(&app->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&app->loop);
    if (rc)
        sg_error(&app->log, "handles left open at exit", SG_F_STR("error", uv_strerror(rc)));
    /* The writers' destroy counts and logs what they still held. */
    app_free(app);
    if (exit_code == SG_EXIT_OK && app->records_left)
        exit_code = SG_EXIT_RECORDS_LEFT;
    return exit_code;
}

/* STREAMGATE_* variables no option has (see struct sg_config): one warning each. */
static void warn_unknown_env(struct sg_app *app, bool plain)
{
    for (size_t i = 0; i < app->cfg.unknown_env.count; i++) {
        const char *name = app->cfg.unknown_env.items[i];
        if (plain)
            fprintf(stderr,
                    "streamgate: warning: ignoring environment variable %s (no option "
                    "has that name)\n",
                    name);
        else
            sg_warn(&app->log, "ignoring environment variable", SG_F_STR("variable", name),
                    SG_F_STR("reason", "no option has that name"));
    }
}

int main(int argc, char **argv)
{
    static struct sg_app app; /* static only for its size; reached through pointers */
    struct sg_cli cli = {0};
    char err[512] = "";

    signal(SIGPIPE, SIG_IGN);
    sg_log_init(&app.log, SG_LOG_INFO, stderr);
    int rc = sg_config_load(&app.cfg, &cli, argc, argv, environ, err, sizeof(err));
    /* librdkafka's properties are options too: checked by librdkafka, whether or not Kafka is
     * on, so --check-config answers as the start would. */
    if (rc == 0 && !cli.help && !cli.version && !cli.options_markdown)
        rc = sg_sink_kafka_check_config(&app.cfg, err, sizeof(err));
    if (rc == 0 && !cli.help && !cli.version && !cli.options_markdown)
        rc = sg_kafka_source_check_config(&app.cfg, err, sizeof(err));
    if (rc != 0) {
        /* A command line that does not parse, and --check-config's verdict, are for the person
         * who typed them; a gateway that cannot start says so in its log, as JSON. */
        if (cli.bad_usage || cli.check_config)
            fprintf(stderr, "streamgate: %s\n", err);
        else
            sg_error(&app.log, "start-up failed", SG_F_STR("error", err));
        sg_config_free(&app.cfg);
        return SG_EXIT_FAILURE;
    }
    if (cli.help) {
        sg_config_print_help(stdout, argv[0]);
        sg_config_free(&app.cfg);
        return 0;
    }
    if (cli.version) {
        printf("streamgate %s\n", SG_VERSION);
        sg_config_free(&app.cfg);
        return 0;
    }
    if (cli.options_markdown) {
        sg_config_print_markdown(stdout);
        sg_config_free(&app.cfg);
        return 0;
    }
    if (cli.metrics_markdown) {
        sg_metrics_print_markdown(stdout);
        sg_config_free(&app.cfg);
        return 0;
    }
    if (cli.check_config) {
        warn_unknown_env(&app, true);
        printf("configuration ok\n");
        sg_config_free(&app.cfg);
        return 0;
    }
    app.log.level = app.cfg.log_level;
    app.argc = argc;
    app.argv = argv;
    app.envp = environ;
    app.config_file = cli.config_file;
    warn_unknown_env(&app, false);
    return run(&app);
}
