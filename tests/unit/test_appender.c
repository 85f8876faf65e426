/* The double-buffered appender on a real loop writing to a temporary file: record order across
 * buffer swaps, the cap and the budget, failed writes, and the drain at close; and the file
 * writer's confirmations, which its reports drive. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "appender.h"
#include "streamgate/budget.h"
#include "streamgate/buf.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "streamgate/sink.h"
#include "streamgate/sink_file.h"
#include "streamgate/streams.h"

struct fx {
    uv_loop_t loop;
    struct sg_log log;
    struct sg_metrics *metrics;
    struct sg_budget *budget;
    struct sg_gauge *queue_bytes;
    char path[32];
    int fd;
    struct sg_appender *ap;
    /* What the written callback heard. */
    size_t writes, written, lost;
    int last_status;
    /* Records the written callback appends, to exercise appends between writes. */
    int next, last;
    int drained;
};

static void on_written(void *arg, size_t records, int status);

static void fx_open(struct fx *f, size_t max_pending, int flags)
{
    memset(f, 0, sizeof(*f));
    f->last = -1; /* the written callback appends nothing unless a test asks */
    cr_assert_eq(uv_loop_init(&f->loop), 0);
    sg_log_init(&f->log, SG_LOG_OFF, stderr);
    f->metrics = sg_metrics_create();
    f->budget = sg_budget_create(1 << 20, 90, 50, f->metrics, &f->log);
    f->queue_bytes = sg_metrics_gauge(f->metrics, SG_METRIC_SINK_QUEUE_BYTES, "sink=\"file\"");
    cr_assert(f->metrics && f->budget && f->queue_bytes);
    snprintf(f->path, sizeof(f->path), "/tmp/sg-ap-XXXXXX");
    int fd = mkstemp(f->path);
    cr_assert_geq(fd, 0);
    close(fd);
    f->fd = open(f->path, flags);
    cr_assert_geq(f->fd, 0);
    const struct sg_appender_conf conf = {
        .loop = &f->loop,
        .fd = f->fd,
        .max_pending = max_pending,
        .budget = f->budget,
        .queue_bytes = f->queue_bytes,
        .written = on_written,
        .arg = f,
    };
    f->ap = sg_appender_create(&conf);
    cr_assert_not_null(f->ap);
}

/* Destroys in the order a writer does, and checks the loop closes with nothing left. */
static void fx_close(struct fx *f)
{
    sg_appender_destroy(f->ap);
    cr_expect_eq(sg_budget_used(f->budget), 0, "destroy releases the budget");
    close(f->fd);
    cr_expect_eq(uv_loop_close(&f->loop), 0);
    sg_budget_destroy(f->budget);
    sg_metrics_destroy(f->metrics);
    unlink(f->path);
}

static char *slurp(const char *path)
{
    FILE *file = fopen(path, "r");
    cr_assert_not_null(file);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, file);
    fclose(file);
    buf[n] = '\0';
    return buf;
}

static int append(struct fx *f, const char *text)
{
    struct sg_buf *b = sg_appender_begin(f->ap);
    int rc = sg_buf_append_str(b, text);
    if (rc != 0) {
        sg_appender_abandon(f->ap);
        return rc;
    }
    sg_appender_commit(f->ap);
    return 0;
}

static void append_number(struct fx *f, int i)
{
    char line[16];
    snprintf(line, sizeof(line), "%d\n", i);
    cr_assert_eq(append(f, line), 0);
}

static void on_written(void *arg, size_t records, int status)
{
    struct fx *f = arg;
    f->writes++;
    f->last_status = status;
    if (status < 0)
        f->lost += records;
    else
        f->written += records;
    /* More records arrive while the next write is being set up: three per write. */
    for (int k = 0; k < 3 && f->next <= f->last; k++)
        append_number(f, f->next++);
}

static void on_drained(void *arg)
{
    struct fx *f = arg;
    f->drained++;
}

Test(appender, records_keep_their_order_across_swaps)
{
    struct fx f;
    fx_open(&f, 1 << 20, O_WRONLY | O_APPEND);
    f.last = 99;
    /* The first record starts a write; those after it wait in the other buffer. */
    for (f.next = 0; f.next < 5; f.next++)
        append_number(&f, f.next);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    cr_expect_eq(f.written, 100);
    cr_expect_eq(f.lost, 0);
    cr_expect_gt(f.writes, 2, "records were batched behind writes in flight");
    cr_expect_lt(f.writes, 100, "records were batched, not written one by one");
    char want[1024] = "";
    for (int i = 0; i < 100; i++)
        snprintf(want + strlen(want), sizeof(want) - strlen(want), "%d\n", i);
    cr_expect_str_eq(slurp(f.path), want);
    cr_expect_eq(f.queue_bytes->value, 0.0);
    fx_close(&f);
}

Test(appender, cap_refuses_a_record_and_keeps_the_others)
{
    struct fx f;
    fx_open(&f, 16, O_WRONLY | O_APPEND);
    cr_assert_eq(append(&f, "0123456789\n"), 0);  /* 11 bytes, in flight at once */
    cr_assert_eq(append(&f, "abcdefghij\n"), 0);  /* 11 bytes, pending */
    cr_assert_eq(append(&f, "ABCDEF\n"), -E2BIG); /* 18 > 16: refused */
    /* A record cut off part way leaves none of its bytes behind. */
    struct sg_buf *b = sg_appender_begin(f.ap);
    cr_assert_eq(sg_buf_append_str(b, "xyz"), 0);
    cr_assert_eq(sg_appender_append_folded(f.ap, "1\r\n2", 4), -E2BIG);
    sg_appender_abandon(f.ap);
    cr_expect_eq(sg_budget_used(f.budget), 22, "pending and in-flight bytes are charged");
    cr_expect_eq(f.queue_bytes->value, 22.0);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    cr_expect_eq(f.written, 2);
    cr_expect_eq(sg_budget_used(f.budget), 0, "written bytes are released");
    cr_expect_eq(f.queue_bytes->value, 0.0);
    cr_expect_str_eq(slurp(f.path), "0123456789\nabcdefghij\n");
    /* Written out, the buffers take a full record again. */
    cr_assert_eq(append(&f, "0123456789abcde\n"), 0);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    cr_expect_str_eq(slurp(f.path), "0123456789\nabcdefghij\n0123456789abcde\n");
    fx_close(&f);
}

Test(appender, folded_bytes_stay_on_one_line)
{
    struct fx f;
    fx_open(&f, 1 << 20, O_WRONLY | O_APPEND);
    struct sg_buf *b = sg_appender_begin(f.ap);
    cr_assert_eq(sg_buf_append_str(b, "{\"r\":"), 0);
    cr_assert_eq(sg_appender_append_folded(f.ap, "{\r\n \"a\": 1\n}", 12), 0);
    cr_assert_eq(sg_buf_append_str(b, "}\n"), 0);
    sg_appender_commit(f.ap);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    cr_expect_str_eq(slurp(f.path), "{\"r\":{   \"a\": 1 }}\n");
    fx_close(&f);
}

Test(appender, a_failed_write_reports_its_records_lost)
{
    struct fx f;
    fx_open(&f, 1 << 20, O_RDONLY); /* every write fails with EBADF */
    append_number(&f, 1);
    append_number(&f, 2);
    append_number(&f, 3);
    sg_appender_drain(f.ap, on_drained, &f);
    cr_expect_eq(f.drained, 0);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    cr_expect_eq(f.lost, 3);
    cr_expect_eq(f.written, 0);
    cr_expect_eq(f.last_status, UV_EBADF);
    cr_expect_eq(f.drained, 1, "a drain ends even when the writes fail");
    cr_expect_eq(sg_budget_used(f.budget), 0);
    fx_close(&f);
}

Test(appender, drain_at_close_waits_for_every_record)
{
    struct fx f;
    fx_open(&f, 1 << 20, O_WRONLY | O_APPEND);
    sg_appender_drain(f.ap, on_drained, &f);
    cr_expect_eq(f.drained, 1, "nothing held: drained at once");

    f.last = 20;
    for (f.next = 0; f.next < 4; f.next++)
        append_number(&f, f.next);
    sg_appender_drain(f.ap, on_drained, &f);
    cr_expect_eq(f.drained, 1, "not before the records are written");
    uv_run(&f.loop, UV_RUN_DEFAULT);
    cr_expect_eq(f.drained, 2, "drained once, when all were written");
    cr_expect_eq(f.written, 21, "records appended during the drain are waited for too");
    char want[256] = "";
    for (int i = 0; i <= 20; i++)
        snprintf(want + strlen(want), sizeof(want) - strlen(want), "%d\n", i);
    cr_expect_str_eq(slurp(f.path), want);

    /* Once the loop has run to completion, nothing is left for a blocking flush. */
    size_t writes = f.writes;
    sg_appender_flush_sync(f.ap);
    cr_expect_eq(f.writes, writes);
    cr_expect_str_eq(slurp(f.path), want);
    fx_close(&f);
}

/* ---- the file writer's confirmations, which ride on the appender's reports ---- */

struct file_done {
    struct sg_sink_done done;
    int order; /* the record's number */
    int *told; /* where to note it: the next slot of the tell order */
    int *ntold;
    bool written;
};

static void file_done_cb(struct sg_sink_done *done, bool written)
{
    struct file_done *d = sg_container_of(done, struct file_done, done);
    d->written = written;
    d->told[(*d->ntold)++] = d->order;
}

static void file_drained(struct sg_sink *sink, void *arg)
{
    (*(int *)arg)++;
}

/* Records with a confirmation are told once their write ended, in order, written or not;
 * records without one in between do not shift them. */
static void file_confirmations(const char *path, bool expect_written)
{
    uv_loop_t loop;
    struct sg_log log;
    char err[256];
    struct sg_sink *sink;
    cr_assert_eq(uv_loop_init(&loop), 0);
    sg_log_init(&log, SG_LOG_OFF, stderr);
    struct sg_metrics *metrics = sg_metrics_create();
    cr_assert_eq(sg_sink_file_create(&loop, path, SG_FILE_RESULTS, NULL, metrics, &log, &sink, err,
                                     sizeof(err)),
                 0, "%s", err);
    int told[8], ntold = 0, drained = 0;
    struct file_done d[4];
    for (int i = 0; i < 4; i++) {
        d[i] = (struct file_done){{file_done_cb}, i, told, &ntold, !expect_written};
        struct sg_window_result res = {.key = "k", .key_len = 1, .json = "{}", .json_len = 2};
        cr_assert_eq(sink->ops->write_result(sink, &res, &d[i].done), 0);
        cr_assert_eq(sink->ops->write_result(sink, &res, NULL), 0);
    }
    cr_assert_eq(ntold, 0, "told before the write ended");
    sink->ops->drain(sink, file_drained, &drained);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(drained, 1);
    cr_assert_eq(ntold, 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(told[i], i, "told out of order");
        cr_assert_eq(d[i].written, expect_written);
    }
    sink->ops->destroy(sink);
    cr_assert_eq(ntold, 4, "told twice");
    cr_assert_eq(uv_loop_close(&loop), 0);
    sg_metrics_destroy(metrics);
}

Test(file_sink, confirms_records_when_their_write_ends)
{
    char path[32];
    snprintf(path, sizeof(path), "/tmp/sg-fs-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    file_confirmations(path, true);
    cr_assert_str_eq(slurp(path), "{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n");
    unlink(path);
}

Test(file_sink, a_failed_write_tells_its_records_not_written)
{
    file_confirmations("/dev/full", false);
}
