/* The dead-letter output. Lines accumulate in a pending buffer; one uv_fs_write is in flight
 * at a time and everything given up on meanwhile goes out with the next one, like the file
 * writer. After the loop has stopped no callback can run, so destroy writes what is left with
 * blocking writes. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "streamgate/budget.h"
#include "streamgate/buf.h"
#include "streamgate/common.h"
#include "streamgate/dead_letter.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"

/* Bound on bytes waiting to be written; past it lines are counted as lost rather than held
 * without limit (the budget normally pushes back long before). */
#define DEAD_LETTER_MAX_PENDING (64u << 20)

struct sg_dead_letter {
    uv_loop_t *loop;
    struct sg_log *log;
    uv_file fd;
    bool owns_fd;
    struct sg_buf pending, inflight;
    size_t pending_lines, inflight_lines, inflight_done;
    bool writing;
    uv_fs_t req;
    struct sg_budget *budget;
    size_t budget_held;
    uint64_t written, lost;
    struct sg_counter *m_written, *m_lost;
    sg_dead_letter_forward_cb forward;
    void *forward_arg;
};

void sg_dead_letter_forward(struct sg_dead_letter *dl, sg_dead_letter_forward_cb cb, void *arg)
{
    dl->forward = cb;
    dl->forward_arg = arg;
}

static void start_write(struct sg_dead_letter *dl);

static void update_budget(struct sg_dead_letter *dl)
{
    if (dl->budget)
        sg_budget_set(dl->budget, SG_BUDGET_QUEUES, &dl->budget_held,
                      dl->pending.len + dl->inflight.len);
}

static void count_lost(struct sg_dead_letter *dl, size_t lines, int err)
{
    dl->lost += lines;
    sg_counter_add(dl->m_lost, lines);
    sg_error(dl->log, "dead-letter write failed", SG_F_STR("error", uv_strerror(err)),
             SG_F_UINT("records_lost", lines));
}

static void on_write(uv_fs_t *req)
{
    struct sg_dead_letter *dl = sg_container_of(req, struct sg_dead_letter, req);
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    if (n >= 0) {
        dl->inflight_done += (size_t)n;
        if (dl->inflight_done < dl->inflight.len) { /* short write: send the rest */
            uv_buf_t b = uv_buf_init(dl->inflight.data + dl->inflight_done,
                                     (unsigned)(dl->inflight.len - dl->inflight_done));
            int rc = uv_fs_write(dl->loop, &dl->req, dl->fd, &b, 1, -1, on_write);
            if (rc == 0)
                return;
            n = rc;
        }
    }
    if (n < 0) {
        count_lost(dl, dl->inflight_lines, (int)n);
    } else {
        dl->written += dl->inflight_lines;
        sg_counter_add(dl->m_written, dl->inflight_lines);
    }
    dl->writing = false;
    sg_buf_reset(&dl->inflight);
    dl->inflight_lines = 0;
    dl->inflight_done = 0;
    if (dl->pending.len)
        start_write(dl);
    update_budget(dl);
}

static void start_write(struct sg_dead_letter *dl)
{
    struct sg_buf t = dl->inflight;
    dl->inflight = dl->pending;
    dl->pending = t;
    sg_buf_reset(&dl->pending);
    dl->inflight_lines = dl->pending_lines;
    dl->pending_lines = 0;
    dl->inflight_done = 0;
    uv_buf_t b = uv_buf_init(dl->inflight.data, (unsigned)dl->inflight.len);
    int rc = uv_fs_write(dl->loop, &dl->req, dl->fd, &b, 1, -1, on_write);
    if (rc != 0) {
        count_lost(dl, dl->inflight_lines, rc);
        sg_buf_reset(&dl->inflight);
        dl->inflight_lines = 0;
        return;
    }
    dl->writing = true;
}

int sg_dead_letter_write(struct sg_dead_letter *dl, const char *sink, const char *key,
                         size_t key_len, const char *code, const char *message, const char *record,
                         size_t record_len)
{
    if (dl->forward)
        dl->forward(dl->forward_arg, sink, key, key_len, code, message, record, record_len);
    if (dl->fd < 0)
        return 0; /* forwarding only */
    size_t mark = dl->pending.len;
    int rc = sg_buf_append_str(&dl->pending, "{\"sink\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(&dl->pending, sink, strlen(sink));
    if (rc == 0)
        rc = sg_buf_append_str(&dl->pending, ",\"key\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(&dl->pending, key ? key : "", key ? key_len : 0);
    if (rc == 0)
        rc = sg_buf_append_str(&dl->pending, ",\"error\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(&dl->pending, code ? code : "", code ? strlen(code) : 0);
    if (rc == 0)
        rc = sg_buf_append_str(&dl->pending, ",\"message\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(&dl->pending, message ? message : "",
                                       message ? strlen(message) : 0);
    if (rc == 0)
        rc = sg_buf_append_str(&dl->pending, ",\"record\":");
    if (rc == 0) {
        size_t start = dl->pending.len;
        rc = record_len ? sg_buf_append(&dl->pending, record, record_len)
                        : sg_buf_append_str(&dl->pending, "null");
        /* A record spanning lines (a pretty-printed event) is folded onto one: JSON allows
         * any whitespace between tokens and no raw line break inside strings. */
        for (size_t i = start; rc == 0 && i < dl->pending.len; i++)
            if (dl->pending.data[i] == '\n' || dl->pending.data[i] == '\r')
                dl->pending.data[i] = ' ';
    }
    if (rc == 0)
        rc = sg_buf_append_str(&dl->pending, "}\n");
    if (rc != 0) {
        dl->pending.len = mark;
        dl->lost++;
        sg_counter_inc(dl->m_lost);
        return -ENOBUFS;
    }
    dl->pending_lines++;
    if (!dl->writing)
        start_write(dl);
    update_budget(dl);
    return 0;
}

uint64_t sg_dead_letter_written(const struct sg_dead_letter *dl)
{
    return dl->written;
}

uint64_t sg_dead_letter_lost(const struct sg_dead_letter *dl)
{
    return dl->lost;
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

void sg_dead_letter_destroy(struct sg_dead_letter *dl)
{
    if (!dl)
        return;
    if (dl->fd >= 0) {
        /* The loop has run to completion (an active write keeps it alive), so nothing is in
         * flight; what a write failed to start for is still here. */
        struct sg_buf *bufs[2] = {&dl->inflight, &dl->pending};
        size_t lines[2] = {dl->inflight_lines, dl->pending_lines};
        size_t skip[2] = {dl->inflight_done, 0};
        for (int i = 0; i < 2; i++) {
            if (bufs[i]->len <= skip[i])
                continue;
            int rc = write_all(dl->fd, bufs[i]->data + skip[i], bufs[i]->len - skip[i]);
            if (rc != 0) {
                count_lost(dl, lines[i], rc);
            } else {
                dl->written += lines[i];
                sg_counter_add(dl->m_written, lines[i]);
            }
        }
    }
    if (dl->budget)
        sg_budget_set(dl->budget, SG_BUDGET_QUEUES, &dl->budget_held, 0);
    if (dl->owns_fd && dl->fd >= 0)
        close(dl->fd);
    sg_buf_free(&dl->pending);
    sg_buf_free(&dl->inflight);
    free(dl);
}

int sg_dead_letter_create(uv_loop_t *loop, const char *path, struct sg_budget *budget,
                          struct sg_metrics *metrics, struct sg_log *log,
                          struct sg_dead_letter **out, char *errstr, size_t errstr_size)
{
    struct sg_dead_letter *dl = calloc(1, sizeof(*dl));
    if (!dl) {
        snprintf(errstr, errstr_size, "output.dead_letter_file: out of memory");
        return -ENOMEM;
    }
    dl->loop = loop;
    dl->log = log;
    dl->budget = budget;
    dl->fd = -1;
    sg_buf_init(&dl->pending, DEAD_LETTER_MAX_PENDING);
    sg_buf_init(&dl->inflight, DEAD_LETTER_MAX_PENDING);
    dl->m_written =
        sg_metrics_counter(metrics, SG_METRIC_DEAD_LETTER_RECORDS_TOTAL, "result=\"written\"");
    dl->m_lost =
        sg_metrics_counter(metrics, SG_METRIC_DEAD_LETTER_RECORDS_TOTAL, "result=\"lost\"");
    if (!dl->m_written || !dl->m_lost) {
        snprintf(errstr, errstr_size, "output.dead_letter_file: out of memory");
        sg_dead_letter_destroy(dl);
        return -ENOMEM;
    }
    if (!path || !path[0]) {
        /* No file: the output only forwards. */
    } else if (strcmp(path, "-") == 0) {
        dl->fd = STDOUT_FILENO;
    } else {
        /* Opened before the loop runs, so a plain open(2) blocks nothing. */
        dl->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (dl->fd < 0) {
            int err = -errno;
            snprintf(errstr, errstr_size, "output.dead_letter_file: cannot open %s: %s", path,
                     strerror(errno));
            sg_dead_letter_destroy(dl);
            return err;
        }
        dl->owns_fd = true;
    }
    *out = dl;
    return 0;
}
