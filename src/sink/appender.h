/* A double-buffered appender to a file descriptor, for the writers that append lines to a file
 * (the file writer and the dead-letter output). Records are appended to a pending buffer while
 * the other buffer is being written with uv_fs_write, one write in flight at a time; when that
 * write ends the buffers swap, so everything appended meanwhile goes out in one write and a
 * burst costs one system call, not one per record.
 *
 * The bytes held (pending and in flight) are capped and charged to the memory budget; a record
 * that does not fit under the cap is refused. Only the loop thread may touch an appender. */
#ifndef STREAMGATE_APPENDER_H
#define STREAMGATE_APPENDER_H

#include <stddef.h>
#include <uv.h>

struct sg_budget;
struct sg_buf;
struct sg_gauge;
struct sg_appender;

/* How a write ended: `records` whole records were written (`status` 0) or lost (`status` the
 * negative code of the write that failed). */
typedef void (*sg_appender_written_cb)(void *arg, size_t records, int status);
/* Everything appended before sg_appender_drain was written or lost. */
typedef void (*sg_appender_drained_cb)(void *arg);

struct sg_appender_conf {
    uv_loop_t *loop;
    uv_file fd;                     /* open for writing; the appender does not close it */
    size_t max_pending;             /* cap on each buffer's bytes (pending, in flight) */
    struct sg_budget *budget;       /* charged with the bytes held; NULL: no accounting */
    struct sg_gauge *queue_bytes;   /* set to the bytes not yet written; NULL: none */
    sg_appender_written_cb written; /* required */
    void *arg;                      /* for `written` */
};

/* Returns the appender, or NULL when out of memory. */
struct sg_appender *sg_appender_create(const struct sg_appender_conf *conf);
/* Releases the budget and frees. Safe on NULL. No write may be in flight: call it after the
 * drain callback, or once the loop has run to completion. */
void sg_appender_destroy(struct sg_appender *ap);

/* Starts a record and returns the buffer to append its bytes to, with sg_buf_append and
 * friends or sg_appender_append_folded. End it with sg_appender_commit, or with
 * sg_appender_abandon when an append failed (past the cap), before the loop runs again. */
struct sg_buf *sg_appender_begin(struct sg_appender *ap);
/* Appends `len` bytes to the record begun, each line break (CR or LF) replaced by a space: a
 * pretty-printed JSON value stays one line, since JSON allows any whitespace between tokens
 * and no raw line break inside strings. Returns 0, or -E2BIG past the cap, or -ENOMEM. */
int sg_appender_append_folded(struct sg_appender *ap, const char *data, size_t len);
/* Ends the record begun: it is queued, and written now when no write is in flight. */
void sg_appender_commit(struct sg_appender *ap);
/* Drops the bytes of the record begun. */
void sg_appender_abandon(struct sg_appender *ap);

/* Calls `cb` once every record committed so far has been written or lost: at once when
 * nothing is pending or in flight. One drain at a time. */
void sg_appender_drain(struct sg_appender *ap, sg_appender_drained_cb cb, void *arg);

/* Writes what is still held with blocking writes, reporting through the written callback.
 * Only once the loop has run to completion and no callback can run any more. */
void sg_appender_flush_sync(struct sg_appender *ap);

#endif
