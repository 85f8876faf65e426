/* The double-buffered appender: `pending` takes records while `inflight` is being written.
 * A write that comes back short is continued from where it stopped; when it ends, the owner
 * hears how many records went out, the buffers swap, and what was pending is written next. */
#include "appender.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "streamgate/budget.h"
#include "streamgate/buf.h"
#include "streamgate/common.h"
#include "streamgate/metrics.h"

struct sg_appender {
    uv_loop_t *loop;
    uv_file fd;
    struct sg_buf pending;  /* committed records, not yet handed to a write */
    struct sg_buf inflight; /* being written */
    size_t mark;            /* pending.len where the record being appended began */
    size_t pending_records, inflight_records, inflight_done;
    bool writing;
    uv_fs_t req;
    struct sg_budget *budget;
    size_t budget_held;
    struct sg_gauge *queue_bytes;
    sg_appender_written_cb written;
    void *arg;
    sg_appender_drained_cb drained;
    void *drained_arg;
};

static void start_write(struct sg_appender *ap);

static void update_held(struct sg_appender *ap)
{
    if (ap->queue_bytes)
        sg_gauge_set(ap->queue_bytes,
                     (double)(ap->pending.len + ap->inflight.len - ap->inflight_done));
    if (ap->budget)
        sg_budget_set(ap->budget, SG_BUDGET_QUEUES, &ap->budget_held,
                      ap->pending.len + ap->inflight.len);
}

static void maybe_drained(struct sg_appender *ap)
{
    if (ap->drained && !ap->writing && ap->pending.len == 0) {
        sg_appender_drained_cb cb = ap->drained;
        ap->drained = NULL;
        cb(ap->drained_arg);
    }
}

static void on_write(uv_fs_t *req)
{
    struct sg_appender *ap = sg_container_of(req, struct sg_appender, req);
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    if (n >= 0) {
        ap->inflight_done += (size_t)n;
        if (ap->inflight_done < ap->inflight.len) { /* short write: send the rest */
            uv_buf_t b = uv_buf_init(ap->inflight.data + ap->inflight_done,
                                     (unsigned)(ap->inflight.len - ap->inflight_done));
            int rc = uv_fs_write(ap->loop, &ap->req, ap->fd, &b, 1, -1, on_write);
            if (rc == 0)
                return;
            n = rc;
        }
    }
    ap->written(ap->arg, ap->inflight_records, n < 0 ? (int)n : 0);
    ap->writing = false;
    sg_buf_reset(&ap->inflight);
    ap->inflight_records = 0;
    ap->inflight_done = 0;
    if (ap->pending.len)
        start_write(ap);
    update_held(ap);
    maybe_drained(ap);
}

static void start_write(struct sg_appender *ap)
{
    /* Swap buffers: what was pending becomes the write in flight. */
    struct sg_buf t = ap->inflight;
    ap->inflight = ap->pending;
    ap->pending = t;
    sg_buf_reset(&ap->pending);
    ap->mark = 0;
    ap->inflight_records = ap->pending_records;
    ap->pending_records = 0;
    ap->inflight_done = 0;
    uv_buf_t b = uv_buf_init(ap->inflight.data, (unsigned)ap->inflight.len);
    int rc = uv_fs_write(ap->loop, &ap->req, ap->fd, &b, 1, -1, on_write);
    if (rc != 0) {
        ap->written(ap->arg, ap->inflight_records, rc);
        sg_buf_reset(&ap->inflight);
        ap->inflight_records = 0;
        return;
    }
    ap->writing = true;
}

struct sg_buf *sg_appender_begin(struct sg_appender *ap)
{
    ap->mark = ap->pending.len;
    return &ap->pending;
}

int sg_appender_append_folded(struct sg_appender *ap, const char *data, size_t len)
{
    int rc = sg_buf_reserve(&ap->pending, len);
    if (rc != 0)
        return rc;
    char *dst = ap->pending.data + ap->pending.len;
    memcpy(dst, data, len);
    if (memchr(dst, '\n', len) || memchr(dst, '\r', len)) {
        for (size_t i = 0; i < len; i++)
            if (dst[i] == '\n' || dst[i] == '\r')
                dst[i] = ' ';
    }
    ap->pending.len += len;
    return 0;
}

void sg_appender_commit(struct sg_appender *ap)
{
    ap->pending_records++;
    ap->mark = ap->pending.len;
    if (!ap->writing)
        start_write(ap);
    update_held(ap);
}

void sg_appender_abandon(struct sg_appender *ap)
{
    ap->pending.len = ap->mark;
}

void sg_appender_drain(struct sg_appender *ap, sg_appender_drained_cb cb, void *arg)
{
    ap->drained = cb;
    ap->drained_arg = arg;
    if (!ap->writing && ap->pending.len) {
        start_write(ap);
        update_held(ap);
    }
    maybe_drained(ap);
}

/* Blocking write of the whole buffer: only used once the loop has stopped. */
static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void sg_appender_flush_sync(struct sg_appender *ap)
{
    /* The loop has run to completion (an active write keeps it alive), so no callback is
     * coming; what is in the buffers has not been reported yet. */
    struct sg_buf *bufs[2] = {&ap->inflight, &ap->pending};
    size_t records[2] = {ap->inflight_records, ap->pending_records};
    size_t skip[2] = {ap->inflight_done, 0};
    for (int i = 0; i < 2; i++) {
        if (bufs[i]->len <= skip[i])
            continue;
        int rc = write_all(ap->fd, bufs[i]->data + skip[i], bufs[i]->len - skip[i]);
        ap->written(ap->arg, records[i], rc);
    }
    sg_buf_reset(&ap->inflight);
    sg_buf_reset(&ap->pending);
    ap->mark = 0;
    ap->inflight_records = ap->pending_records = ap->inflight_done = 0;
    ap->writing = false;
    update_held(ap);
}

struct sg_appender *sg_appender_create(const struct sg_appender_conf *conf)
{
    struct sg_appender *ap = calloc(1, sizeof(*ap));
    if (!ap)
        return NULL;
    ap->loop = conf->loop;
    ap->fd = conf->fd;
    ap->budget = conf->budget;
    ap->queue_bytes = conf->queue_bytes;
    ap->written = conf->written;
    ap->arg = conf->arg;
    sg_buf_init(&ap->pending, conf->max_pending);
    sg_buf_init(&ap->inflight, conf->max_pending);
    return ap;
}

void sg_appender_destroy(struct sg_appender *ap)
{
    if (!ap)
        return;
    if (ap->budget)
        sg_budget_set(ap->budget, SG_BUDGET_QUEUES, &ap->budget_held, 0);
    sg_buf_free(&ap->pending);
    sg_buf_free(&ap->inflight);
    free(ap);
}
