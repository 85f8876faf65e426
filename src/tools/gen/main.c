/* streamgate-gen: makes keyed JSON events and sends them to streamgate over HTTP or TCP, or
 * writes them to a file, on one libuv loop; counts what was sent and acknowledged and can write
 * the exact window aggregates the server should produce from it, or (--check-results) compares
 * the results a server wrote with such an expectation. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gen.h"

#define GEN_EVENT_BUDGET        256 /* bytes reserved per queued event when sizing HTTP queues */
#define GEN_HTTP_QUEUED_BATCHES 8   /* batches an HTTP connection can hold waiting */
#define GEN_HTTP_QUEUE_TOTAL    (256u << 20) /* bytes all of them may hold, past two batches */
#define GEN_FLUSH_MS            100

int gen_resolve(uv_loop_t *loop, const char *host, const char *port, struct sockaddr_storage *ss,
                char *errstr, size_t errstr_size)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    uv_getaddrinfo_t req;
    int rc = uv_getaddrinfo(loop, &req, NULL, host, port, &hints);
    if (rc < 0) {
        snprintf(errstr, errstr_size, "cannot resolve %s:%s: %s", host, port, uv_strerror(rc));
        return rc;
    }
    memcpy(ss, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
    uv_freeaddrinfo(req.addrinfo);
    return 0;
}

static void gen_main__tick(uv_timer_t *t)
{
    struct gen_app *app = container_of(t, struct gen_app, tick);
    uint64_t now = uv_hrtime();
    if (app->progress && now - app->last_progress_ns >= 1000000000ULL)
        gen_progress(app, false);
    gen_step(app);
    /* With a rate limit a batch may fill slowly: every so often, send what is waiting. */
    if (app->opts.rate > 0 && app->opts.target == GEN_TARGET_HTTP && !app->finished &&
        now - app->last_flush_ns >= GEN_FLUSH_MS * 1000000ULL) {
        app->last_flush_ns = now;
        for (unsigned i = 0; i < app->nlanes; i++)
            gen_http_kick(&app->lanes[i], true);
    }
}

static void gen_main__signal(struct gen_app *app)
{
    if (app->done) {
        gen_fail(app, -EINTR, "interrupted twice");
        return;
    }
    app->done = true; /* stop making events; what is queued is still sent */
    gen_step(app);
}

static void gen_main__sigint(uv_signal_t *s, int signum)
{
    (void)signum;
    gen_main__signal(container_of(s, struct gen_app, sigint));
}

static void gen_main__sigterm(uv_signal_t *s, int signum)
{
    (void)signum;
    gen_main__signal(container_of(s, struct gen_app, sigterm));
}

static void gen_app_destroy(struct gen_app *app)
{
    if (app->lanes) {
        for (unsigned i = 0; i < app->nlanes; i++) {
            gen_queue_destroy(&app->lanes[i].fill);
            gen_queue_destroy(&app->lanes[i].flight);
            free(app->lanes[i].req);
            free(app->lanes[i].refused);
        }
        free(app->lanes);
        app->lanes = NULL;
    }
    gen_expect_destroy(&app->expect);
    gen_source_destroy(&app->src);
    if (app->loop) {
        uv_loop_close(app->loop);
        free(app->loop);
        app->loop = NULL;
    }
}

/* Builds everything but the target's connections. */
static int gen_app_create(struct gen_app *app, char *errstr, size_t errstr_size)
{
    struct gen_opts *o = &app->opts;
    int rc;
    app->file_fd = -1;
    app->loop = malloc(sizeof(*app->loop));
    if (!app->loop || uv_loop_init(app->loop) != 0) {
        free(app->loop);
        app->loop = NULL;
        snprintf(errstr, errstr_size, "cannot create the event loop");
        return -ENOMEM;
    }
    if ((rc = gen_source_init(&app->src, o, errstr, errstr_size)) != 0)
        return rc;
    app->keep_expect = o->expect_path != NULL;
    if (app->keep_expect && gen_expect_init(&app->expect, o->window_size_ms, app->src.nfields,
                                            (size_t)o->expect_values) != 0) {
        snprintf(errstr, errstr_size, "out of memory");
        return -ENOMEM;
    }
    app->expect.signal = app->src.signal;
    app->expect.noise = o->noise;
    app->target_count = o->count;
    app->nlanes = (unsigned)o->connections;

    size_t cap, flight_cap, flight_rcap;
    if (o->target == GEN_TARGET_FILE) {
        cap = flight_cap = 4u << 20;
    } else if (o->target == GEN_TARGET_TCP) {
        cap = (64u << 20) / app->nlanes;
        cap = cap > (1u << 20) ? (1u << 20) : cap < (64u << 10) ? (64u << 10) : cap;
        flight_cap = cap;
    } else {
        /* Room for several batches: keys are drawn in one sequence for all connections, so
         * when the next key's connection has no room the whole generator waits for it, and
         * the other connections starve. A few batches of slack keep them all busy; with many
         * connections and large batches, fewer (at least two), to bound the memory. */
        size_t batches = GEN_HTTP_QUEUED_BATCHES;
        while (batches > 2 &&
               app->nlanes * batches * o->batch * GEN_EVENT_BUDGET > GEN_HTTP_QUEUE_TOTAL)
            batches--;
        cap = (batches * o->batch + 16) * GEN_EVENT_BUDGET + GEN_EVENT_MAX;
        flight_cap = 64;
    }
    size_t rcap = app->keep_expect ? cap / 64 + 1 : 0;
    flight_rcap = app->keep_expect ? (o->target == GEN_TARGET_HTTP ? o->batch : rcap) : 0;
    app->lanes = calloc(app->nlanes, sizeof(*app->lanes));
    if (!app->lanes) {
        snprintf(errstr, errstr_size, "out of memory");
        return -ENOMEM;
    }
    for (unsigned i = 0; i < app->nlanes; i++) {
        struct gen_lane *lane = &app->lanes[i];
        lane->app = app;
        lane->idx = i;
        lane->max_ts = GEN_NO_TS;
        if (gen_queue_init(&lane->fill, cap, rcap) != 0 ||
            gen_queue_init(&lane->flight, flight_cap, flight_rcap) != 0) {
            snprintf(errstr, errstr_size, "out of memory for %u connection buffers", app->nlanes);
            return -ENOMEM;
        }
    }
    uv_timer_init(app->loop, &app->tick);
    uv_idle_init(app->loop, &app->pump_idle);
    uv_signal_init(app->loop, &app->sigint);
    uv_signal_init(app->loop, &app->sigterm);
    return 0;
}

int main(int argc, char **argv)
{
    char errstr[512] = "";
    struct gen_app *app = calloc(1, sizeof(*app));
    if (!app) {
        fprintf(stderr, "streamgate-gen: out of memory\n");
        return 2;
    }
    int rc = gen_opts_parse(&app->opts, argc, argv, errstr, sizeof(errstr));
    if (rc != 0) {
        gen_opts_free(&app->opts);
        free(app);
        if (rc > 0)
            return 0;
        fprintf(stderr, "streamgate-gen: %s\n", errstr);
        return 2;
    }
    if (app->opts.check_history || app->opts.check_results) {
        rc =
            app->opts.check_history ? gen_check_history(&app->opts) : gen_check_results(&app->opts);
        gen_opts_free(&app->opts);
        free(app);
        return rc;
    }
    signal(SIGPIPE, SIG_IGN);
    rc = gen_app_create(app, errstr, sizeof(errstr));
    if (rc != 0) {
        fprintf(stderr, "streamgate-gen: %s\n", errstr);
        /* Handles are made last, after everything that can fail: none to close here. */
        gen_app_destroy(app);
        gen_opts_free(&app->opts);
        free(app);
        return 2;
    }

    app->start_ns = uv_hrtime();
    app->last_progress_ns = app->start_ns;
    app->progress = !app->opts.quiet && isatty(2);
    app->last_flush_ns = app->start_ns;
    uv_signal_start(&app->sigint, gen_main__sigint, SIGINT);
    uv_signal_start(&app->sigterm, gen_main__sigterm, SIGTERM);
    uv_timer_start(&app->tick, gen_main__tick, 1, app->opts.rate > 0 ? 1 : 20);

    switch (app->opts.target) {
    case GEN_TARGET_HTTP:
        rc = gen_http_init(app, errstr, sizeof(errstr));
        break;
    case GEN_TARGET_TCP:
        rc = gen_tcp_init(app, errstr, sizeof(errstr));
        break;
    default:
        rc = gen_file_init(app, errstr, sizeof(errstr));
        break;
    }
    if (rc != 0) {
        /* A bad address: say so like any option error, once the handles are closed. */
        gen_fail(app, rc, errstr);
        uv_run(app->loop, UV_RUN_DEFAULT);
        fprintf(stderr, "streamgate-gen: %s\n", errstr);
        gen_app_destroy(app);
        gen_opts_free(&app->opts);
        free(app);
        return 2;
    }
    gen_step(app);
    uv_run(app->loop, UV_RUN_DEFAULT);

    double elapsed = (double)(uv_hrtime() - app->start_ns) / 1e9;
    if (app->progress)
        gen_progress(app, true);
    gen_summary(app, elapsed);
    int code = (!app->fatal && app->stats.acked == app->stats.generated) ? 0 : 1;
    if (app->opts.expect_path) {
        const char *names[GEN_MAX_FIELDS];
        for (int i = 0; i < app->src.nfields; i++)
            names[i] = gen_source_field_name(app->opts.source, app->src.field_idx[i]);
        if (gen_expect_write(&app->expect, app->opts.source, app->opts.expect_path, names, errstr,
                             sizeof(errstr)) != 0) {
            fprintf(stderr, "streamgate-gen: %s\n", errstr);
            code = 1;
        } else if (app->expect_partial && !app->opts.quiet) {
            fprintf(stderr, "streamgate-gen: the expectation leaves out batches that were not "
                            "wholly acknowledged\n");
        }
        /* Beside it, the values of every event, for --check-history's quantiles. */
        char vpath[4096];
        snprintf(vpath, sizeof(vpath), "%s.values", app->opts.expect_path);
        int vrc = gen_expect_write_values(&app->expect, app->opts.source, vpath, names, errstr,
                                          sizeof(errstr));
        if (vrc < 0) {
            fprintf(stderr, "streamgate-gen: %s\n", errstr);
            code = 1;
        } else if (vrc == 1 && !app->opts.quiet) {
            fprintf(stderr,
                    "streamgate-gen: more than --expect-values %" PRIu64
                    " events: %s not written (--check-history cannot check quantiles, and "
                    "fails on roll-ups that have them)\n",
                    app->opts.expect_values, vpath);
        }
    }
    gen_app_destroy(app);
    gen_opts_free(&app->opts);
    free(app);
    return code;
}
