/* File target: NDJSON to a file or stdout through uv_fs_write, so the write runs on libuv's
 * thread pool while the loop makes the next buffer (two queues, swapped on completion). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "gen.h"

static void gen_file__close_fd(struct gen_app *app)
{
    if (app->file_fd >= 0 && !app->file_is_stdout) {
        uv_fs_t req;
        uv_fs_close(NULL, &req, app->file_fd, NULL);
        uv_fs_req_cleanup(&req);
    }
    app->file_fd = -1;
}

static void gen_file__write(struct gen_lane *lane);

static void gen_file__written(uv_fs_t *req)
{
    struct gen_lane *lane = container_of(req, struct gen_lane, fs_req);
    struct gen_app *app = lane->app;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    if (r >= 0) {
        app->stats.bytes += (uint64_t)r;
        lane->flight.rd += (size_t)r;
        if (lane->flight.rd < lane->flight.wr && r > 0 && !app->finished) {
            gen_file__write(lane); /* a short write: the rest */
            return;
        }
    }
    lane->busy = false;
    if (r < 0 || lane->flight.rd < lane->flight.wr) {
        app->stats.errors++;
        gen_lane_lost(lane);
        if (!app->finished) {
            char msg[300];
            snprintf(msg, sizeof(msg), "cannot write %s: %s", app->opts.file_path,
                     r < 0 ? uv_strerror((int)r) : "short write");
            gen_fail(app, r < 0 ? (int)r : -EIO, msg);
        }
    } else {
        app->stats.sent += lane->flight.nevents;
        gen_lane_ack(lane, lane->flight.nevents, 0, NULL, 0);
        gen_lane_settled(lane);
    }
    if (app->finished && lane->closed_for_good)
        gen_file__close_fd(app);
}

static void gen_file__write(struct gen_lane *lane)
{
    struct gen_app *app = lane->app;
    uv_buf_t buf = uv_buf_init(lane->flight.data + lane->flight.rd,
                               (unsigned)(lane->flight.wr - lane->flight.rd));
    int rc = uv_fs_write(app->loop, &lane->fs_req, app->file_fd, &buf, 1, -1, gen_file__written);
    if (rc < 0) {
        app->stats.errors++;
        gen_lane_lost(lane);
        gen_fail(app, rc, "cannot write the output file");
        return;
    }
    lane->busy = true;
}

void gen_file_kick(struct gen_lane *lane)
{
    if (lane->busy || lane->fill.nevents == 0 || lane->app->file_fd < 0)
        return;
    struct gen_queue tmp = lane->flight;
    lane->flight = lane->fill;
    lane->fill = tmp;
    gen_queue_reset(&lane->fill);
    gen_file__write(lane);
}

void gen_file_close(struct gen_app *app)
{
    struct gen_lane *lane = &app->lanes[0];
    if (lane->busy) /* the write in flight closes it */
        lane->closed_for_good = true;
    else
        gen_file__close_fd(app);
}

int gen_file_init(struct gen_app *app, char *errstr, size_t errstr_size)
{
    const char *path = app->opts.file_path;
    if (strcmp(path, "-") == 0) {
        app->file_fd = 1;
        app->file_is_stdout = true;
        return 0;
    }
    uv_fs_t req;
    int fd = uv_fs_open(NULL, &req, path, O_WRONLY | O_CREAT | O_TRUNC, 0644, NULL);
    uv_fs_req_cleanup(&req);
    if (fd < 0) {
        snprintf(errstr, errstr_size, "cannot open %s: %s", path, uv_strerror(fd));
        return fd;
    }
    app->file_fd = fd;
    return 0;
}
