/* The dead-letter output. Lines go through the double-buffered appender, like the file
 * writer's: one uv_fs_write in flight at a time, and everything given up on meanwhile goes out
 * with the next one. After the loop has stopped no callback can run, so destroy writes what is
 * left with blocking writes. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "appender.h"
#include "streamgate/buf.h"
#include "streamgate/common.h"
#include "streamgate/dead_letter.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"

/* Bound on bytes waiting to be written; past it lines are counted as lost rather than held
 * without limit (the budget normally pushes back long before). */
#define DEAD_LETTER_MAX_PENDING (64u << 20)

struct sg_dead_letter {
    struct sg_log *log;
    uv_file fd;
    bool owns_fd;
    struct sg_appender *ap; /* NULL: no file, forwarding only */
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

static void on_written(void *arg, size_t lines, int status)
{
    struct sg_dead_letter *dl = arg;
    if (status < 0) {
        dl->lost += lines;
        sg_counter_add(dl->m_lost, lines);
        sg_error(dl->log, "dead-letter write failed", SG_F_STR("error", uv_strerror(status)),
                 SG_F_UINT("records_lost", lines));
    } else {
        dl->written += lines;
        sg_counter_add(dl->m_written, lines);
    }
}

int sg_dead_letter_write(struct sg_dead_letter *dl, const char *sink, const char *key,
                         size_t key_len, const char *code, const char *message, const char *record,
                         size_t record_len)
{
    if (dl->forward)
        dl->forward(dl->forward_arg, sink, key, key_len, code, message, record, record_len);
    return sg_dead_letter_write_unforwarded(dl, sink, key, key_len, code, message, record,
                                            record_len);
}

int sg_dead_letter_write_unforwarded(struct sg_dead_letter *dl, const char *sink, const char *key,
                                     size_t key_len, const char *code, const char *message,
                                     const char *record, size_t record_len)
{
    if (!dl->ap)
        return 0; /* forwarding only */
    struct sg_buf *line = sg_appender_begin(dl->ap);
    int rc = sg_buf_append_str(line, "{\"sink\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(line, sink, strlen(sink));
    if (rc == 0)
        rc = sg_buf_append_str(line, ",\"key\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(line, key ? key : "", key ? key_len : 0);
    if (rc == 0)
        rc = sg_buf_append_str(line, ",\"error\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(line, code ? code : "", code ? strlen(code) : 0);
    if (rc == 0)
        rc = sg_buf_append_str(line, ",\"message\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(line, message ? message : "", message ? strlen(message) : 0);
    if (rc == 0)
        rc = sg_buf_append_str(line, ",\"record\":");
    /* A record spanning lines (a pretty-printed event) is folded onto one. */
    if (rc == 0)
        rc = record_len ? sg_appender_append_folded(dl->ap, record, record_len)
                        : sg_buf_append_str(line, "null");
    if (rc == 0)
        rc = sg_buf_append_str(line, "}\n");
    if (rc != 0) {
        sg_appender_abandon(dl->ap);
        dl->lost++;
        sg_counter_inc(dl->m_lost);
        return -ENOBUFS;
    }
    sg_appender_commit(dl->ap);
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

void sg_dead_letter_destroy(struct sg_dead_letter *dl)
{
    if (!dl)
        return;
    if (dl->ap) {
        sg_appender_flush_sync(dl->ap);
        sg_appender_destroy(dl->ap);
    }
    if (dl->owns_fd && dl->fd >= 0)
        close(dl->fd);
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
    dl->log = log;
    dl->fd = -1;
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
    if (dl->fd >= 0) {
        const struct sg_appender_conf conf = {
            .loop = loop,
            .fd = dl->fd,
            .max_pending = DEAD_LETTER_MAX_PENDING,
            .budget = budget,
            .written = on_written,
            .arg = dl,
        };
        dl->ap = sg_appender_create(&conf);
        if (!dl->ap) {
            snprintf(errstr, errstr_size, "output.dead_letter_file: out of memory");
            sg_dead_letter_destroy(dl);
            return -ENOMEM;
        }
    }
    *out = dl;
    return 0;
}
