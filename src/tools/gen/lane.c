/* Lanes and the pump. A lane is one connection (or the output file) with a queue of formatted
 * events; every key maps to one lane, so a key's events reach the server in the order they were
 * made. The pump makes events while the rate, the count and the lanes' room allow; a lane that
 * is full stops it (the event's key is kept, so the random stream does not depend on timing)
 * until the lane's write or request completes and calls gen_lane_settled. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gen.h"

#define GEN_PUMP_BUDGET 65536 /* events per pump call, so timers and I/O still get their turn */

uint64_t gen_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int gen_queue_init(struct gen_queue *q, size_t cap, size_t rcap)
{
    memset(q, 0, sizeof(*q));
    q->data = malloc(cap);
    if (!q->data)
        return -ENOMEM;
    q->cap = cap;
    if (rcap) {
        q->recs = malloc(rcap * sizeof(*q->recs));
        if (!q->recs)
            return -ENOMEM;
        q->rcap = rcap;
    }
    return 0;
}

void gen_queue_destroy(struct gen_queue *q)
{
    free(q->data);
    free(q->recs);
    memset(q, 0, sizeof(*q));
}

void gen_queue_reset(struct gen_queue *q)
{
    q->rd = q->wr = 0;
    q->rrd = q->rwr = 0;
    q->nevents = 0;
}

void gen_queue_compact(struct gen_queue *q)
{
    if (q->rd > 0) {
        memmove(q->data, q->data + q->rd, q->wr - q->rd);
        q->wr -= q->rd;
        q->rd = 0;
    }
    if (q->rrd > 0) {
        memmove(q->recs, q->recs + q->rrd, (q->rwr - q->rrd) * sizeof(*q->recs));
        q->rwr -= q->rrd;
        q->rrd = 0;
    }
}

/* Whether one more event fits; compacts the queue when that makes room. */
static bool gen_lane__room(struct gen_app *app, struct gen_lane *lane)
{
    struct gen_queue *q = &lane->fill;
    bool recs_ok = !app->keep_expect || q->rwr < q->rcap;
    if (q->cap - q->wr >= GEN_EVENT_MAX && recs_ok)
        return true;
    if (q->rd == 0 && q->rrd == 0)
        return false;
    gen_queue_compact(q);
    recs_ok = !app->keep_expect || q->rwr < q->rcap;
    return q->cap - q->wr >= GEN_EVENT_MAX && recs_ok;
}

unsigned gen_lane_of_key(const struct gen_app *app, uint32_t key)
{
    uint64_t h = (uint64_t)key * 0x9e3779b97f4a7c15ULL;
    return (unsigned)(((h >> 32) * app->nlanes) >> 32);
}

void gen_fail(struct gen_app *app, int rc, const char *msg)
{
    if (!app->fatal) {
        app->fatal = rc ? rc : -EIO;
        snprintf(app->fatal_msg, sizeof(app->fatal_msg), "%s", msg);
    }
    app->done = true;
    app->aborted = true;
    gen_step(app);
}

static bool gen_app__time_up(struct gen_app *app)
{
    return app->opts.duration_s > 0 &&
           (double)(uv_hrtime() - app->start_ns) / 1e9 >= app->opts.duration_s;
}

static void gen_lane__idle(uv_idle_t *h)
{
    gen_step(container_of(h, struct gen_app, pump_idle));
}

void gen_pump(struct gen_app *app)
{
    if (app->done)
        return;
    if (gen_app__time_up(app)) {
        app->done = true;
        return;
    }
    uint64_t allowed = app->target_count ? app->target_count : UINT64_MAX;
    if (app->opts.rate > 0) {
        double elapsed = (double)(uv_hrtime() - app->start_ns) / 1e9;
        double by_rate = app->opts.rate * elapsed + 1.0;
        if (by_rate < (double)allowed)
            allowed = (uint64_t)by_rate;
    }
    int64_t now_ms = app->opts.ts_step == 0 ? (int64_t)gen_now_ms() : 0;
    struct gen_rec rec;
    unsigned budget = GEN_PUMP_BUDGET;
    bool more = false;
    while (app->stats.generated < allowed) {
        if (budget-- == 0) {
            more = true;
            break;
        }
        uint32_t key = app->has_pending_key ? app->pending_key : gen_source_next_key(&app->src);
        struct gen_lane *lane = &app->lanes[gen_lane_of_key(app, key)];
        if (!gen_lane__room(app, lane)) {
            app->pending_key = key;
            app->has_pending_key = true;
            break;
        }
        app->has_pending_key = false;
        struct gen_queue *q = &lane->fill;
        q->wr += gen_source_make(&app->src, key, lane->max_ts, now_ms, q->data + q->wr, &rec);
        q->nevents++;
        if (app->keep_expect)
            q->recs[q->rwr++] = rec;
        if (lane->max_ts == GEN_NO_TS || rec.ts > lane->max_ts)
            lane->max_ts = rec.ts;
        app->stats.generated++;
        app->stats.late += rec.late;
    }
    if (app->target_count && app->stats.generated >= app->target_count)
        app->done = true;
    if (more)
        uv_idle_start(&app->pump_idle, gen_lane__idle);
    else
        uv_idle_stop(&app->pump_idle);
}

static void gen_lane__kick(struct gen_lane *lane, bool flush)
{
    switch (lane->app->opts.target) {
    case GEN_TARGET_HTTP:
        gen_http_kick(lane, flush);
        break;
    case GEN_TARGET_TCP:
        gen_tcp_kick(lane);
        break;
    case GEN_TARGET_FILE:
        gen_file_kick(lane);
        break;
    default:
        break;
    }
}

void gen_kick_all(struct gen_app *app)
{
    for (unsigned i = 0; i < app->nlanes; i++)
        gen_lane__kick(&app->lanes[i], app->done);
}

static bool gen_app__drained(const struct gen_app *app)
{
    for (unsigned i = 0; i < app->nlanes; i++) {
        const struct gen_lane *lane = &app->lanes[i];
        if (lane->busy || lane->fill.nevents > 0 || lane->waiting_retry)
            return false;
    }
    return true;
}

static void gen_app__close_cb(uv_handle_t *h)
{
    (void)h;
}

/* Ends the run: what is still queued or in flight is lost when the run was aborted; handles
 * close and the loop runs out. */
static void gen_app__finish(struct gen_app *app)
{
    app->finished = true;
    for (unsigned i = 0; i < app->nlanes; i++) {
        struct gen_lane *lane = &app->lanes[i];
        app->stats.failed += lane->fill.nevents;
        gen_queue_reset(&lane->fill);
        if (lane->busy && app->opts.target == GEN_TARGET_HTTP) {
            app->stats.failed += lane->req_events;
            lane->busy = false;
        }
        if (lane->waiting_retry) {
            lane->waiting_retry = false;
            app->pushback_waiting--;
        }
        if (app->opts.target == GEN_TARGET_HTTP) {
            uv_timer_stop(&lane->retry_timer);
            uv_close((uv_handle_t *)&lane->retry_timer, gen_app__close_cb);
            gen_http_close(lane);
        } else if (app->opts.target == GEN_TARGET_TCP) {
            gen_tcp_close(lane);
        }
    }
    if (app->opts.target == GEN_TARGET_FILE)
        gen_file_close(app);
    uv_close((uv_handle_t *)&app->tick, gen_app__close_cb);
    uv_close((uv_handle_t *)&app->sigint, gen_app__close_cb);
    uv_close((uv_handle_t *)&app->sigterm, gen_app__close_cb);
    uv_close((uv_handle_t *)&app->pump_idle, gen_app__close_cb);
}

void gen_lane_settled(struct gen_lane *lane)
{
    gen_step(lane->app);
}

void gen_step(struct gen_app *app)
{
    if (app->finished)
        return;
    if (!app->aborted) {
        gen_pump(app);
        gen_kick_all(app);
    }
    if (app->aborted || (app->done && gen_app__drained(app)))
        gen_app__finish(app);
}

void gen_lane_ack(struct gen_lane *lane, uint64_t acked, uint64_t rejected, const uint32_t *refused,
                  size_t nrefused)
{
    struct gen_app *app = lane->app;
    struct gen_queue *f = &lane->flight;
    uint64_t n = f->nevents;
    if (acked > n)
        acked = n;
    if (rejected > n - acked)
        rejected = n - acked;
    app->stats.acked += acked;
    app->stats.rejected += rejected;
    app->stats.failed += n - acked - rejected;
    /* Records are folded when all of the batch went in, or when the answer named every event
     * it refused (by index, which it does up to http.max_errors of them). */
    bool named = refused && nrefused == rejected && acked + rejected == n;
    if (app->keep_expect && (acked == n || named)) {
        size_t next = 0; /* the next refused index */
        for (size_t i = f->rrd; i < f->rwr; i++) {
            if (next < nrefused && refused[next] == i - f->rrd) {
                next++;
                continue;
            }
            if (gen_expect_add(&app->expect, &f->recs[i]) != 0) {
                gen_fail(app, -ENOMEM, "out of memory for the expectation");
                break;
            }
        }
    } else if (app->keep_expect) {
        app->expect_partial = true;
    }
    gen_queue_reset(f);
}

void gen_lane_lost(struct gen_lane *lane)
{
    lane->app->stats.failed += lane->flight.nevents;
    if (lane->app->keep_expect && lane->flight.nevents)
        lane->app->expect_partial = true;
    gen_queue_reset(&lane->flight);
}
