/* The memory budget: totals, watermarks with hysteresis, watchers, admission, metrics. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "streamgate/budget.h"
#include "streamgate/buf.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"

struct fixture {
    struct sg_metrics *metrics;
    struct sg_log log;
    struct sg_budget *b;
};

struct watch_log {
    int pauses, resumes;
    bool last;
};

static void on_watch(void *arg, bool paused)
{
    struct watch_log *w = arg;
    if (paused)
        w->pauses++;
    else
        w->resumes++;
    w->last = paused;
}

static void setup(struct fixture *f, size_t limit, unsigned high, unsigned low)
{
    f->metrics = sg_metrics_create();
    cr_assert_not_null(f->metrics);
    sg_log_init(&f->log, SG_LOG_ERROR, stderr);
    f->b = sg_budget_create(limit, high, low, f->metrics, &f->log);
    cr_assert_not_null(f->b);
}

static void teardown(struct fixture *f)
{
    sg_budget_destroy(f->b);
    sg_metrics_destroy(f->metrics);
}

static double gauge(struct fixture *f, const char *series)
{
    struct sg_buf out;
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_metrics_render(f->metrics, &out), 0);
    cr_assert_eq(sg_buf_append_char(&out, '\0'), 0);
    char needle[128];
    snprintf(needle, sizeof(needle), "\n%s ", series);
    const char *p = strstr(out.data, needle);
    double v = p ? strtod(p + strlen(needle), NULL) : -1;
    sg_buf_free(&out);
    return v;
}

Test(budget, pauses_at_high_and_resumes_only_under_low)
{
    struct fixture f;
    struct watch_log w = {0};
    setup(&f, 1000, 80, 50);
    cr_assert_eq(sg_budget_watch(f.b, on_watch, &w), 0);

    sg_budget_charge(f.b, SG_BUDGET_QUEUES, 799);
    cr_assert(!sg_budget_paused(f.b));
    cr_assert_eq(w.pauses, 0);
    sg_budget_charge(f.b, SG_BUDGET_BODIES, 1); /* 800: the high watermark */
    cr_assert(sg_budget_paused(f.b));
    cr_assert_eq(w.pauses, 1);
    cr_assert(w.last);
    sg_budget_charge(f.b, SG_BUDGET_QUEUES, 100); /* no second pause call */
    cr_assert_eq(w.pauses, 1);

    /* Between the watermarks it stays paused. */
    sg_budget_release(f.b, SG_BUDGET_QUEUES, 300); /* 600 */
    cr_assert(sg_budget_paused(f.b));
    cr_assert_eq(w.resumes, 0);
    sg_budget_release(f.b, SG_BUDGET_QUEUES, 100); /* 500: the low watermark */
    cr_assert(!sg_budget_paused(f.b));
    cr_assert_eq(w.resumes, 1);
    cr_assert_eq(sg_budget_used(f.b), 500);
    teardown(&f);
}

Test(budget, admits_only_what_fits_and_nothing_while_paused)
{
    struct fixture f;
    setup(&f, 1000, 90, 50);
    cr_assert(sg_budget_admits(f.b, 1000));
    cr_assert(!sg_budget_admits(f.b, 1001));
    sg_budget_charge(f.b, SG_BUDGET_CONNECTIONS, 400);
    cr_assert(sg_budget_admits(f.b, 600));
    cr_assert(!sg_budget_admits(f.b, 601));
    sg_budget_charge(f.b, SG_BUDGET_QUEUES, 500); /* 900: paused */
    cr_assert(!sg_budget_admits(f.b, 0));
    /* Over the limit (a chunk already read is still ingested): nothing fits, no wrap. */
    sg_budget_charge(f.b, SG_BUDGET_QUEUES, 300);
    cr_assert_eq(sg_budget_used(f.b), 1200);
    cr_assert(!sg_budget_admits(f.b, 1));
    teardown(&f);
}

Test(budget, set_moves_a_holders_account_and_release_never_wraps)
{
    struct fixture f;
    setup(&f, 1 << 20, 80, 50);
    size_t held = 0;
    sg_budget_set(f.b, SG_BUDGET_BODIES, &held, 4096);
    cr_assert_eq(held, 4096);
    cr_assert_eq(sg_budget_used(f.b), 4096);
    sg_budget_set(f.b, SG_BUDGET_BODIES, &held, 1024);
    cr_assert_eq(sg_budget_used(f.b), 1024);
    sg_budget_set(f.b, SG_BUDGET_BODIES, &held, 0);
    cr_assert_eq(sg_budget_used(f.b), 0);
    /* Releasing more than a use holds is clamped to what it holds. */
    sg_budget_charge(f.b, SG_BUDGET_CONNECTIONS, 10);
    sg_budget_release(f.b, SG_BUDGET_QUEUES, 5);
    cr_assert_eq(sg_budget_used(f.b), 10);
    teardown(&f);
}

Test(budget, metrics_and_render_show_the_state)
{
    struct fixture f;
    setup(&f, 1000, 80, 50);
    cr_assert_eq(gauge(&f, "streamgate_budget_limit_bytes"), 1000);
    cr_assert_eq(gauge(&f, "streamgate_budget_bytes"), 0);
    cr_assert_eq(gauge(&f, "streamgate_ingest_paused"), 0);
    sg_budget_charge(f.b, SG_BUDGET_QUEUES, 850);
    sg_budget_charge(f.b, SG_BUDGET_CONNECTIONS, 50);
    cr_assert_eq(gauge(&f, "streamgate_budget_bytes"), 900);
    cr_assert_eq(gauge(&f, "streamgate_ingest_paused"), 1);
    cr_assert_eq(gauge(&f, "streamgate_ingest_pauses_total"), 1);
    sg_budget_count_pushback(f.b, SG_TRANSPORT_TCP);
    sg_budget_count_pushback(f.b, SG_TRANSPORT_TCP);
    cr_assert_eq(gauge(&f, "streamgate_pushback_total{transport=\"tcp\"}"), 2);
    cr_assert_eq(gauge(&f, "streamgate_pushback_total{transport=\"http\"}"), 0);

    struct sg_buf out;
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_budget_render(f.b, &out), 0);
    cr_assert_eq(sg_buf_append_char(&out, '\0'), 0);
    cr_assert_str_eq(out.data, "{\"limit\":1000,\"used\":900,\"paused\":true,\"connections\":50,"
                               "\"bodies\":0,\"streams\":0,\"queues\":850}");
    sg_buf_free(&out);
    teardown(&f);
}

/* Each use has its own account and gauge; stream state counts toward the watermarks like
 * any other use. */
Test(budget, uses_are_shown_apart_and_all_count_toward_the_total)
{
    struct fixture f;
    setup(&f, 1000, 80, 50);
    for (int u = 0; u < SG_BUDGET_USE_COUNT; u++)
        cr_assert_eq(sg_budget_used_by(f.b, (enum sg_budget_use)u), 0);
    cr_assert_eq(gauge(&f, "streamgate_budget_use_bytes{use=\"streams\"}"), 0);
    size_t streams = 0;
    sg_budget_set(f.b, SG_BUDGET_STREAMS, &streams, 600);
    sg_budget_charge(f.b, SG_BUDGET_QUEUES, 150);
    sg_budget_charge(f.b, SG_BUDGET_CONNECTIONS, 20);
    sg_budget_charge(f.b, SG_BUDGET_BODIES, 10);
    cr_assert_eq(sg_budget_used_by(f.b, SG_BUDGET_STREAMS), 600);
    cr_assert_eq(sg_budget_used_by(f.b, SG_BUDGET_QUEUES), 150);
    cr_assert_eq(sg_budget_used(f.b), 780);
    cr_assert(!sg_budget_paused(f.b));
    cr_assert_eq(gauge(&f, "streamgate_budget_use_bytes{use=\"connections\"}"), 20);
    cr_assert_eq(gauge(&f, "streamgate_budget_use_bytes{use=\"bodies\"}"), 10);
    cr_assert_eq(gauge(&f, "streamgate_budget_use_bytes{use=\"streams\"}"), 600);
    cr_assert_eq(gauge(&f, "streamgate_budget_use_bytes{use=\"queues\"}"), 150);
    cr_assert_eq(gauge(&f, "streamgate_budget_bytes"), 780);

    sg_budget_set(f.b, SG_BUDGET_STREAMS, &streams, 650); /* 830: over the high watermark */
    cr_assert(sg_budget_paused(f.b));
    sg_budget_set(f.b, SG_BUDGET_STREAMS, &streams, 300); /* 480: under the low one */
    cr_assert(!sg_budget_paused(f.b));
    cr_assert_eq(gauge(&f, "streamgate_budget_use_bytes{use=\"streams\"}"), 300);
    cr_assert_eq(sg_budget_used_by(f.b, SG_BUDGET_QUEUES), 150);
    teardown(&f);
}

Test(budget, watchers_can_be_removed_and_are_bounded)
{
    struct fixture f;
    struct watch_log w[SG_BUDGET_MAX_WATCHERS + 1] = {0};
    setup(&f, 100, 50, 10);
    for (int i = 0; i < SG_BUDGET_MAX_WATCHERS; i++)
        cr_assert_eq(sg_budget_watch(f.b, on_watch, &w[i]), 0);
    cr_assert_eq(sg_budget_watch(f.b, on_watch, &w[SG_BUDGET_MAX_WATCHERS]), -ENOSPC);
    sg_budget_unwatch(f.b, on_watch, &w[1]);
    sg_budget_charge(f.b, SG_BUDGET_QUEUES, 60);
    cr_assert_eq(w[0].pauses, 1);
    cr_assert_eq(w[1].pauses, 0, "a removed watcher was called");
    cr_assert_eq(w[2].pauses, 1);
    teardown(&f);
}

/* The heap is trimmed once the budget has fallen by a 32nd of its limit from its highest point
 * since the last trim, and at most once an interval. */
Test(budget, trims_the_heap_after_the_budget_falls)
{
    struct fixture f;
    setup(&f, 32u << 20, 70, 50); /* a 32nd: 1 MiB */
    int64_t now = 1000000;
    sg_budget_charge(f.b, SG_BUDGET_STREAMS, 4u << 20);
    cr_assert_not(sg_budget_trim(f.b, now), "nothing released");
    sg_budget_release(f.b, SG_BUDGET_STREAMS, (1u << 20) - 1);
    cr_assert_not(sg_budget_trim(f.b, now), "less than a 32nd released");
    sg_budget_release(f.b, SG_BUDGET_STREAMS, 1);
    cr_assert(sg_budget_trim(f.b, now), "a 32nd released");
    sg_budget_charge(f.b, SG_BUDGET_QUEUES, 2u << 20);
    sg_budget_release(f.b, SG_BUDGET_QUEUES, 2u << 20);
    cr_assert_not(sg_budget_trim(f.b, now + SG_BUDGET_TRIM_INTERVAL_MS - 1), "within the interval");
    cr_assert(sg_budget_trim(f.b, now + SG_BUDGET_TRIM_INTERVAL_MS), "after it");
    cr_assert_not(sg_budget_trim(f.b, now + 10 * SG_BUDGET_TRIM_INTERVAL_MS), "nothing since");
    cr_assert_eq(gauge(&f, "streamgate_memory_trims_total"), 2.0);
    teardown(&f);
}
