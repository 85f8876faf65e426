/* The file writer: each record is one line appended through the double-buffered appender, so
 * a burst of events costs one write, not one per event. A record given with a `done` is
 * confirmed when the write that holds it ends: the appender reports whole records in the order
 * they were committed, so the writer numbers its records and keeps, in order, only those that
 * wait for a confirmation. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "appender.h"
#include "streamgate/buf.h"
#include "streamgate/event.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "streamgate/sink.h"
#include "streamgate/sink_file.h"
#include "streamgate/streams.h"

/* Bound on bytes held but not yet written; past it events are refused rather than buffered
 * without limit. */
#define FILE_SINK_MAX_PENDING (256u << 20)

struct file_sink {
    struct sg_sink sink;
    struct sg_log *log;
    uv_file fd;
    bool owns_fd;
    bool healthy;
    struct sg_appender *ap;
    sg_sink_drained_cb drained_cb;
    void *drained_arg;
    struct sg_counter *written, *failed;
    struct sg_gauge *queue_bytes;

    /* Records committed and reported (written or lost) so far, and the confirmations waiting:
     * a ring of `cap` slots from `head`, `n` in use, oldest first. */
    uint64_t committed, reported;
    struct file_done {
        uint64_t seq; /* the record's number among those committed */
        struct sg_sink_done *done;
    } * dones;
    size_t head, n, cap;
};

/* Keeps the confirmation of the record just committed. Returns 0 or -ENOMEM. */
static int dones_push(struct file_sink *fs, struct sg_sink_done *done)
{
    if (fs->n == fs->cap) {
        size_t cap = fs->cap ? fs->cap * 2 : 64;
        struct file_done *d = malloc(cap * sizeof(*d));
        if (!d)
            return -ENOMEM;
        for (size_t i = 0; i < fs->n; i++)
            d[i] = fs->dones[(fs->head + i) % fs->cap];
        free(fs->dones);
        fs->dones = d;
        fs->head = 0;
        fs->cap = cap;
    }
    fs->dones[(fs->head + fs->n) % fs->cap] = (struct file_done){fs->committed, done};
    fs->n++;
    return 0;
}

/* Tells every waiting record numbered below `upto`. */
static void dones_tell(struct file_sink *fs, uint64_t upto, bool written)
{
    while (fs->n > 0 && fs->dones[fs->head].seq < upto) {
        struct sg_sink_done *done = fs->dones[fs->head].done;
        fs->head = (fs->head + 1) % fs->cap;
        fs->n--;
        done->cb(done, written);
    }
}

static void on_written(void *arg, size_t records, int status)
{
    struct file_sink *fs = arg;
    if (status < 0) {
        fs->healthy = false;
        sg_counter_add(fs->failed, records);
        sg_error(fs->log, "file write failed", SG_F_STR("error", uv_strerror(status)),
                 SG_F_UINT("records_lost", records));
    } else {
        sg_counter_add(fs->written, records);
    }
    fs->reported += records;
    dones_tell(fs, fs->reported, status == 0);
}

/* Appends one record and a newline, line breaks inside it folded into spaces (a pretty-printed
 * event spans lines) so the file stays NDJSON. */
static int append_line(struct file_sink *fs, const char *data, size_t len,
                       struct sg_sink_done *done)
{
    struct sg_buf *line = sg_appender_begin(fs->ap);
    int rc = sg_appender_append_folded(fs->ap, data, len);
    if (rc == 0)
        rc = sg_buf_append_char(line, '\n');
    if (rc == 0 && done)
        rc = dones_push(fs, done);
    if (rc != 0) {
        sg_appender_abandon(fs->ap);
        sg_counter_inc(fs->failed);
        return -ENOBUFS;
    }
    fs->committed++;
    sg_appender_commit(fs->ap);
    return 0;
}

static int file_write_raw(struct sg_sink *sink, const struct sg_event *ev,
                          enum sg_transport transport, int64_t received_ms,
                          struct sg_sink_done *done)
{
    return append_line(sg_container_of(sink, struct file_sink, sink), ev->raw, ev->raw_len, done);
}

static int file_write_late(struct sg_sink *sink, const struct sg_event *ev, int64_t window_end)
{
    return append_line(sg_container_of(sink, struct file_sink, sink), ev->raw, ev->raw_len, NULL);
}

static int file_write_result(struct sg_sink *sink, const struct sg_window_result *res,
                             struct sg_sink_done *done)
{
    return append_line(sg_container_of(sink, struct file_sink, sink), res->json, res->json_len,
                       done);
}

/* Only the results with a field flagged anomalous; the others are done at once. */
static int file_write_anomaly(struct sg_sink *sink, const struct sg_window_result *res,
                              struct sg_sink_done *done)
{
    if (res->nanomalous == 0) {
        if (done)
            done->cb(done, true);
        return 0;
    }
    return file_write_result(sink, res, done);
}

static bool file_healthy(struct sg_sink *sink)
{
    return sg_container_of(sink, struct file_sink, sink)->healthy;
}

static void on_drained(void *arg)
{
    struct file_sink *fs = arg;
    fs->drained_cb(&fs->sink, fs->drained_arg);
}

static void file_drain(struct sg_sink *sink, sg_sink_drained_cb cb, void *arg)
{
    struct file_sink *fs = sg_container_of(sink, struct file_sink, sink);
    fs->drained_cb = cb;
    fs->drained_arg = arg;
    sg_appender_drain(fs->ap, on_drained, fs);
}

static void file_destroy(struct sg_sink *sink)
{
    if (!sink)
        return;
    struct file_sink *fs = sg_container_of(sink, struct file_sink, sink);
    sg_appender_destroy(fs->ap);
    dones_tell(fs, UINT64_MAX, false); /* never written: the drain was abandoned */
    free(fs->dones);
    if (fs->owns_fd && fs->fd >= 0)
        close(fs->fd);
    free(fs);
}

static const struct sg_sink_ops file_raw_ops = {
    .name = "file",
    .write_raw = file_write_raw,
    .healthy = file_healthy,
    .drain = file_drain,
    .destroy = file_destroy,
};

static const struct sg_sink_ops file_results_ops = {
    .name = "file",
    .write_result = file_write_result,
    .healthy = file_healthy,
    .drain = file_drain,
    .destroy = file_destroy,
};

static const struct sg_sink_ops file_anomaly_ops = {
    .name = "file",
    .write_result = file_write_anomaly,
    .healthy = file_healthy,
    .drain = file_drain,
    .destroy = file_destroy,
};

static const struct sg_sink_ops file_late_ops = {
    .name = "file",
    .write_late = file_write_late,
    .healthy = file_healthy,
    .drain = file_drain,
    .destroy = file_destroy,
};

/* Per kind: the option that names the file (for messages) and the metrics' stream label. */
static const struct {
    const char *option, *stream;
} file_kinds[] = {
    [SG_FILE_RAW] = {"output.file", "raw"},
    [SG_FILE_RESULTS] = {"output.results_file", "agg"},
    [SG_FILE_LATE] = {"output.late_file", "late"},
    [SG_FILE_ANOMALIES] = {"output.anomaly_file", "anomaly"},
};

int sg_sink_file_create(uv_loop_t *loop, const char *path, enum sg_file_kind kind,
                        struct sg_budget *budget, struct sg_metrics *metrics, struct sg_log *log,
                        struct sg_sink **out, char *errstr, size_t errstr_size)
{
    const char *option = file_kinds[kind].option, *stream = file_kinds[kind].stream;
    char labels[128];
    struct file_sink *fs = calloc(1, sizeof(*fs));
    if (!fs) {
        snprintf(errstr, errstr_size, "%s: out of memory", option);
        return -ENOMEM;
    }
    fs->sink.ops = kind == SG_FILE_RESULTS     ? &file_results_ops
                   : kind == SG_FILE_LATE      ? &file_late_ops
                   : kind == SG_FILE_ANOMALIES ? &file_anomaly_ops
                                               : &file_raw_ops;
    fs->log = log;
    fs->healthy = true;
    fs->fd = -1;
    snprintf(labels, sizeof(labels), "sink=\"file\",stream=\"%s\",result=\"written\"", stream);
    fs->written = sg_metrics_counter(metrics, SG_METRIC_SINK_RECORDS_TOTAL, labels);
    snprintf(labels, sizeof(labels), "sink=\"file\",stream=\"%s\",result=\"failed\"", stream);
    fs->failed = sg_metrics_counter(metrics, SG_METRIC_SINK_RECORDS_TOTAL, labels);
    snprintf(labels, sizeof(labels), "sink=\"file\",stream=\"%s\"", stream);
    fs->queue_bytes = sg_metrics_gauge(metrics, SG_METRIC_SINK_QUEUE_BYTES, labels);
    if (!fs->written || !fs->failed || !fs->queue_bytes) {
        snprintf(errstr, errstr_size, "%s: out of memory", option);
        file_destroy(&fs->sink);
        return -ENOMEM;
    }
    if (strcmp(path, "-") == 0) {
        fs->fd = STDOUT_FILENO;
    } else {
        /* Opened before the loop runs, so a plain open(2) blocks nothing. */
        fs->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fs->fd < 0) {
            int err = -errno;
            snprintf(errstr, errstr_size, "%s: cannot open %s: %s", option, path, strerror(errno));
            file_destroy(&fs->sink);
            return err;
        }
        fs->owns_fd = true;
    }
    const struct sg_appender_conf conf = {
        .loop = loop,
        .fd = fs->fd,
        .max_pending = FILE_SINK_MAX_PENDING,
        .budget = budget,
        .queue_bytes = fs->queue_bytes,
        .written = on_written,
        .arg = fs,
    };
    fs->ap = sg_appender_create(&conf);
    if (!fs->ap) {
        snprintf(errstr, errstr_size, "%s: out of memory", option);
        file_destroy(&fs->sink);
        return -ENOMEM;
    }
    *out = &fs->sink;
    return 0;
}
