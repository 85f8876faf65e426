/* The file writer. Accepted events are appended to a pending buffer; one uv_fs_write is in
 * flight at a time and everything accepted meanwhile is written by the next one, so a burst
 * costs one system call, not one per event. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "streamgate/buf.h"
#include "streamgate/event.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "streamgate/sink.h"
#include "streamgate/sink_file.h"

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
};

static void start_write(struct file_sink *fs);

static void update_gauge(struct file_sink *fs)
{
    sg_gauge_set(fs->queue_bytes, (double)(fs->pending.len + fs->inflight.len - fs->inflight_done));
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

static int file_write_raw(struct sg_sink *sink, const struct sg_event *ev,
                          enum sg_transport transport, int64_t received_ms)
{
    struct file_sink *fs = sg_container_of(sink, struct file_sink, sink);
    if (sg_buf_reserve(&fs->pending, ev->raw_len + 1) != 0)
        return -ENOBUFS;
    char *dst = fs->pending.data + fs->pending.len;
    memcpy(dst, ev->raw, ev->raw_len);
    /* A pretty-printed event spans lines; JSON allows any whitespace between tokens and no raw
     * line break inside strings, so folding them to spaces keeps the event and the NDJSON. */
    if (memchr(dst, '\n', ev->raw_len) || memchr(dst, '\r', ev->raw_len)) {
        for (size_t i = 0; i < ev->raw_len; i++)
            if (dst[i] == '\n' || dst[i] == '\r')
                dst[i] = ' ';
    }
    dst[ev->raw_len] = '\n';
    fs->pending.len += ev->raw_len + 1;
    fs->pending_records++;
    if (!fs->writing)
        start_write(fs);
    update_gauge(fs);
    return 0;
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
    if (fs->owns_fd && fs->fd >= 0)
        close(fs->fd);
    sg_buf_free(&fs->pending);
    sg_buf_free(&fs->inflight);
    free(fs);
}

static const struct sg_sink_ops file_sink_ops = {
    .name = "file",
    .write_raw = file_write_raw,
    .healthy = file_healthy,
    .drain = file_drain,
    .destroy = file_destroy,
};

int sg_sink_file_create(uv_loop_t *loop, const char *path, struct sg_metrics *metrics,
                        struct sg_log *log, struct sg_sink **out, char *errstr, size_t errstr_size)
{
    struct file_sink *fs = calloc(1, sizeof(*fs));
    if (!fs) {
        snprintf(errstr, errstr_size, "output.file: out of memory");
        return -ENOMEM;
    }
    fs->sink.ops = &file_sink_ops;
    fs->loop = loop;
    fs->log = log;
    fs->healthy = true;
    fs->fd = -1;
    sg_buf_init(&fs->pending, FILE_SINK_MAX_PENDING);
    sg_buf_init(&fs->inflight, FILE_SINK_MAX_PENDING);
    fs->written = sg_metrics_counter(metrics, "streamgate_sink_records_total",
                                     "Records handed to a writer, by outcome.",
                                     "sink=\"file\",stream=\"raw\",result=\"written\"");
    fs->failed = sg_metrics_counter(metrics, "streamgate_sink_records_total",
                                    "Records handed to a writer, by outcome.",
                                    "sink=\"file\",stream=\"raw\",result=\"failed\"");
    fs->queue_bytes =
        sg_metrics_gauge(metrics, "streamgate_sink_queue_bytes",
                         "Bytes accepted by a writer and not yet written.", "sink=\"file\"");
    if (!fs->written || !fs->failed || !fs->queue_bytes) {
        snprintf(errstr, errstr_size, "output.file: out of memory");
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
            snprintf(errstr, errstr_size, "output.file: cannot open %s: %s", path, strerror(errno));
            file_destroy(&fs->sink);
            return err;
        }
        fs->owns_fd = true;
    }
    *out = &fs->sink;
    return 0;
}
