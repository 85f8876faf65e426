/* The file writer. Accepted events are appended to a pending buffer; one uv_fs_write is in
 * flight at a time and everything accepted meanwhile is written by the next one, so a burst
 * costs one system call, not one per event. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "streamgate/budget.h"
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
    uv_loop_t *loop;
    struct sg_log *log;
    uv_file fd;
    bool owns_fd;
    bool healthy;
    struct sg_buf pending;  /* accepted, not yet handed to a write */
    struct sg_buf inflight; /* being written */
    size_t pending_records, inflight_records, inflight_done;
    bool writing;
    uv_fs_t req;
    sg_sink_drained_cb drained_cb;
    void *drained_arg;
    struct sg_counter *written, *failed;
    struct sg_gauge *queue_bytes;
    struct sg_budget *budget; /* NULL: no accounting */
    size_t budget_held;
};

static void start_write(struct file_sink *fs);

static void update_gauge(struct file_sink *fs)
{
    sg_gauge_set(fs->queue_bytes, (double)(fs->pending.len + fs->inflight.len - fs->inflight_done));
    if (fs->budget)
        sg_budget_set(fs->budget, SG_BUDGET_QUEUES, &fs->budget_held,
                      fs->pending.len + fs->inflight.len);
}

static void maybe_drained(struct file_sink *fs)
{
    if (fs->drained_cb && !fs->writing && fs->pending.len == 0) {
        sg_sink_drained_cb cb = fs->drained_cb;
        fs->drained_cb = NULL;
        cb(&fs->sink, fs->drained_arg);
    }
}

static void on_write(uv_fs_t *req)
{
    struct file_sink *fs = sg_container_of(req, struct file_sink, req);
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    if (n >= 0) {
        fs->inflight_done += (size_t)n;
        if (fs->inflight_done < fs->inflight.len) { /* short write: send the rest */
            uv_buf_t b = uv_buf_init(fs->inflight.data + fs->inflight_done,
                                     (unsigned)(fs->inflight.len - fs->inflight_done));
            int rc = uv_fs_write(fs->loop, &fs->req, fs->fd, &b, 1, -1, on_write);
            if (rc == 0)
                return;
            n = rc;
        }
    }
    if (n < 0) {
        fs->healthy = false;
        sg_counter_add(fs->failed, fs->inflight_records);
        sg_error(fs->log, "file write failed", SG_F_STR("error", uv_strerror((int)n)),
                 SG_F_UINT("records_lost", fs->inflight_records));
    } else {
        sg_counter_add(fs->written, fs->inflight_records);
    }
    fs->writing = false;
    sg_buf_reset(&fs->inflight);
    fs->inflight_records = 0;
    fs->inflight_done = 0;
    if (fs->pending.len)
        start_write(fs);
    update_gauge(fs);
    maybe_drained(fs);
}

static void start_write(struct file_sink *fs)
{
    /* Swap buffers: what was pending becomes the write in flight. */
    struct sg_buf t = fs->inflight;
    fs->inflight = fs->pending;
    fs->pending = t;
    sg_buf_reset(&fs->pending);
    fs->inflight_records = fs->pending_records;
    fs->pending_records = 0;
    fs->inflight_done = 0;
    uv_buf_t b = uv_buf_init(fs->inflight.data, (unsigned)fs->inflight.len);
    int rc = uv_fs_write(fs->loop, &fs->req, fs->fd, &b, 1, -1, on_write);
    if (rc != 0) {
        fs->healthy = false;
        sg_counter_add(fs->failed, fs->inflight_records);
        sg_error(fs->log, "file write failed", SG_F_STR("error", uv_strerror(rc)),
                 SG_F_UINT("records_lost", fs->inflight_records));
        sg_buf_reset(&fs->inflight);
        fs->inflight_records = 0;
        return;
    }
    fs->writing = true;
}

/* Appends one record and a newline. A pretty-printed event spans lines; JSON allows any
 * whitespace between tokens and no raw line break inside strings, so folding line breaks into
 * spaces keeps the record whole and the file NDJSON. */
static int append_line(struct file_sink *fs, const char *data, size_t len)
{
    if (sg_buf_reserve(&fs->pending, len + 1) != 0) {
        sg_counter_inc(fs->failed);
        return -ENOBUFS;
    }
    char *dst = fs->pending.data + fs->pending.len;
    memcpy(dst, data, len);
    if (memchr(dst, '\n', len) || memchr(dst, '\r', len)) {
        for (size_t i = 0; i < len; i++)
            if (dst[i] == '\n' || dst[i] == '\r')
                dst[i] = ' ';
    }
    dst[len] = '\n';
    fs->pending.len += len + 1;
    fs->pending_records++;
    if (!fs->writing)
        start_write(fs);
    update_gauge(fs);
    return 0;
}

static int file_write_raw(struct sg_sink *sink, const struct sg_event *ev,
                          enum sg_transport transport, int64_t received_ms)
{
    return append_line(sg_container_of(sink, struct file_sink, sink), ev->raw, ev->raw_len);
}

static int file_write_late(struct sg_sink *sink, const struct sg_event *ev, int64_t window_end)
{
    return append_line(sg_container_of(sink, struct file_sink, sink), ev->raw, ev->raw_len);
}

static int file_write_result(struct sg_sink *sink, const struct sg_window_result *res)
{
    return append_line(sg_container_of(sink, struct file_sink, sink), res->json, res->json_len);
}

static bool file_healthy(struct sg_sink *sink)
{
    return sg_container_of(sink, struct file_sink, sink)->healthy;
}

static void file_drain(struct sg_sink *sink, sg_sink_drained_cb cb, void *arg)
{
    struct file_sink *fs = sg_container_of(sink, struct file_sink, sink);
    fs->drained_cb = cb;
    fs->drained_arg = arg;
    if (!fs->writing && fs->pending.len)
        start_write(fs);
    maybe_drained(fs);
}

static void file_destroy(struct sg_sink *sink)
{
    if (!sink)
        return;
    struct file_sink *fs = sg_container_of(sink, struct file_sink, sink);
    if (fs->budget)
        sg_budget_set(fs->budget, SG_BUDGET_QUEUES, &fs->budget_held, 0);
    if (fs->owns_fd && fs->fd >= 0)
        close(fs->fd);
    sg_buf_free(&fs->pending);
    sg_buf_free(&fs->inflight);
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
    fs->sink.ops = kind == SG_FILE_RESULTS ? &file_results_ops
                   : kind == SG_FILE_LATE  ? &file_late_ops
                                           : &file_raw_ops;
    fs->loop = loop;
    fs->log = log;
    fs->budget = budget;
    fs->healthy = true;
    fs->fd = -1;
    sg_buf_init(&fs->pending, FILE_SINK_MAX_PENDING);
    sg_buf_init(&fs->inflight, FILE_SINK_MAX_PENDING);
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
    *out = &fs->sink;
    return 0;
}
