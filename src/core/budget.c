/* The memory budget. Holders charge and release bytes as they grow and shrink; the budget
 * keeps the total, the paused state with its hysteresis, and the gauges. */
#include "streamgate/budget.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "streamgate/buf.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"

struct sg_budget_watcher {
    sg_budget_watch_cb cb;
    void *arg;
};

struct sg_budget {
    size_t limit, high, low;
    size_t used;
    size_t by_use[SG_BUDGET_USE_COUNT];
    size_t peak;           /* the highest `used` since the last trim */
    int64_t trim_after_ms; /* no trim before */
    bool paused;
    struct sg_budget_watcher watchers[SG_BUDGET_MAX_WATCHERS];
    size_t nwatchers;
    struct sg_log *log;

    struct sg_gauge *m_used, *m_limit, *m_paused;
    struct sg_gauge *m_by_use[SG_BUDGET_USE_COUNT];
    struct sg_counter *m_pauses, *m_trims;
    struct sg_counter *m_pushback[SG_TRANSPORT_COUNT];
};

static const char *const use_names[SG_BUDGET_USE_COUNT] = {"connections", "bodies", "streams",
                                                           "queues"};

static void budget_marks(struct sg_budget *b, size_t limit, unsigned high_pct, unsigned low_pct)
{
    if (high_pct > 100)
        high_pct = 100;
    if (low_pct >= high_pct)
        low_pct = high_pct > 0 ? high_pct - 1 : 0;
    b->limit = limit;
    b->high = (size_t)((double)limit * high_pct / 100.0);
    b->low = (size_t)((double)limit * low_pct / 100.0);
}

struct sg_budget *sg_budget_create(size_t limit, unsigned high_pct, unsigned low_pct,
                                   struct sg_metrics *metrics, struct sg_log *log)
{
    struct sg_budget *b = calloc(1, sizeof(*b));
    char labels[64];

    if (!b)
        return NULL;
    budget_marks(b, limit, high_pct, low_pct);
    b->log = log;
    b->m_used = sg_metrics_gauge(metrics, SG_METRIC_BUDGET_BYTES, NULL);
    b->m_limit = sg_metrics_gauge(metrics, SG_METRIC_BUDGET_LIMIT_BYTES, NULL);
    b->m_paused = sg_metrics_gauge(metrics, SG_METRIC_INGEST_PAUSED, NULL);
    b->m_pauses = sg_metrics_counter(metrics, SG_METRIC_INGEST_PAUSES_TOTAL, NULL);
    b->m_trims = sg_metrics_counter(metrics, SG_METRIC_MEMORY_TRIMS_TOTAL, NULL);
    for (int t = 0; t < SG_TRANSPORT_COUNT; t++) {
        snprintf(labels, sizeof(labels), "transport=\"%s\"",
                 sg_transport_name((enum sg_transport)t));
        b->m_pushback[t] = sg_metrics_counter(metrics, SG_METRIC_PUSHBACK_TOTAL, labels);
        if (!b->m_pushback[t]) {
            free(b);
            return NULL;
        }
    }
    for (int u = 0; u < SG_BUDGET_USE_COUNT; u++) {
        snprintf(labels, sizeof(labels), "use=\"%s\"", use_names[u]);
        b->m_by_use[u] = sg_metrics_gauge(metrics, SG_METRIC_BUDGET_USE_BYTES, labels);
        if (!b->m_by_use[u]) {
            free(b);
            return NULL;
        }
    }
    if (!b->m_used || !b->m_limit || !b->m_paused || !b->m_pauses || !b->m_trims) {
        free(b);
        return NULL;
    }
    sg_gauge_set(b->m_limit, (double)limit);
    return b;
}

void sg_budget_destroy(struct sg_budget *b)
{
    free(b);
}

int sg_budget_watch(struct sg_budget *b, sg_budget_watch_cb cb, void *arg)
{
    if (b->nwatchers == SG_BUDGET_MAX_WATCHERS)
        return -ENOSPC;
    b->watchers[b->nwatchers++] = (struct sg_budget_watcher){.cb = cb, .arg = arg};
    return 0;
}

void sg_budget_unwatch(struct sg_budget *b, sg_budget_watch_cb cb, void *arg)
{
    for (size_t i = 0; i < b->nwatchers; i++) {
        if (b->watchers[i].cb == cb && b->watchers[i].arg == arg) {
            b->watchers[i] = b->watchers[--b->nwatchers];
            return;
        }
    }
}

static void budget_transition(struct sg_budget *b, bool paused);

void sg_budget_set_limits(struct sg_budget *b, size_t limit, unsigned high_pct, unsigned low_pct)
{
    budget_marks(b, limit, high_pct, low_pct);
    sg_gauge_set(b->m_limit, (double)limit);
    if (!b->paused && b->used >= b->high)
        budget_transition(b, true);
    else if (b->paused && b->used < b->low)
        budget_transition(b, false);
}

static void budget_transition(struct sg_budget *b, bool paused)
{
    b->paused = paused;
    sg_gauge_set(b->m_paused, paused ? 1 : 0);
    if (paused) {
        sg_counter_inc(b->m_pauses);
        sg_warn(b->log, "ingest paused: memory budget high watermark reached",
                SG_F_UINT("used", b->used), SG_F_UINT("limit", b->limit),
                SG_F_UINT("streams", b->by_use[SG_BUDGET_STREAMS]),
                SG_F_UINT("queues", b->by_use[SG_BUDGET_QUEUES]));
    } else {
        sg_info(b->log, "ingest resumed: under the memory budget's low watermark",
                SG_F_UINT("used", b->used), SG_F_UINT("limit", b->limit));
    }
    for (size_t i = 0; i < b->nwatchers; i++)
        b->watchers[i].cb(b->watchers[i].arg, paused);
}

void sg_budget_charge(struct sg_budget *b, enum sg_budget_use use, size_t bytes)
{
    b->used += bytes;
    b->by_use[use] += bytes;
    if (b->used > b->peak)
        b->peak = b->used;
    sg_gauge_set(b->m_used, (double)b->used);
    sg_gauge_set(b->m_by_use[use], (double)b->by_use[use]);
    if (!b->paused && b->used >= b->high)
        budget_transition(b, true);
}

void sg_budget_release(struct sg_budget *b, enum sg_budget_use use, size_t bytes)
{
    /* A release never exceeds what was charged; clamp anyway so a bookkeeping slip shows as a
     * wrong gauge, not as a wrapped total that pauses ingest for good. */
    bytes = SG_MIN(bytes, b->by_use[use]);
    b->used -= bytes;
    b->by_use[use] -= bytes;
    sg_gauge_set(b->m_used, (double)b->used);
    sg_gauge_set(b->m_by_use[use], (double)b->by_use[use]);
    if (b->paused && b->used <= b->low)
        budget_transition(b, false);
}

void sg_budget_set(struct sg_budget *b, enum sg_budget_use use, size_t *held, size_t now)
{
    if (now > *held)
        sg_budget_charge(b, use, now - *held);
    else if (now < *held)
        sg_budget_release(b, use, *held - now);
    *held = now;
}

bool sg_budget_trim(struct sg_budget *b, int64_t now_ms)
{
    /* Reading the heap's free bytes (mallinfo2) walks every free chunk, as malloc_trim does:
     * tens of milliseconds in a heap of a few hundred MB. So the trigger is the budget's own
     * fall, which costs nothing to read, and the next trim waits 50 times as long as the last
     * one took (at least SG_BUDGET_TRIM_INTERVAL_MS): trimming takes at most 2% of the loop. */
    if (b->peak < b->used + b->limit / SG_BUDGET_TRIM_FRACTION || now_ms < b->trim_after_ms)
        return false;
#if defined(__GLIBC__)
    int64_t t0 = sg_now_ms();
    malloc_trim(0);
    int64_t took = sg_now_ms() - t0;
#else
    int64_t took = 0;
#endif
    b->peak = b->used;
    b->trim_after_ms = now_ms + SG_MAX(SG_BUDGET_TRIM_INTERVAL_MS, 50 * took);
    sg_counter_inc(b->m_trims);
    return true;
}

bool sg_budget_paused(const struct sg_budget *b)
{
    return b->paused;
}

bool sg_budget_admits(const struct sg_budget *b, size_t bytes)
{
    return !b->paused && bytes <= b->limit - SG_MIN(b->used, b->limit);
}

size_t sg_budget_used(const struct sg_budget *b)
{
    return b->used;
}

size_t sg_budget_used_by(const struct sg_budget *b, enum sg_budget_use use)
{
    return b->by_use[use];
}

size_t sg_budget_limit(const struct sg_budget *b)
{
    return b->limit;
}

void sg_budget_count_pushback(struct sg_budget *b, enum sg_transport transport)
{
    sg_counter_inc(b->m_pushback[transport]);
}

int sg_budget_render(const struct sg_budget *b, struct sg_buf *out)
{
    int rc = sg_buf_printf(out, "{\"limit\":%zu,\"used\":%zu,\"paused\":%s", b->limit, b->used,
                           b->paused ? "true" : "false");
    for (int u = 0; rc == 0 && u < SG_BUDGET_USE_COUNT; u++)
        rc = sg_buf_printf(out, ",\"%s\":%zu", use_names[u], b->by_use[u]);
    return rc ? rc : sg_buf_append_char(out, '}');
}
