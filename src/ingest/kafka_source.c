/* The aggregator's Kafka consumer on the loop (see include/streamgate/kafka_source.h).
 *
 * Per assigned partition it keeps the next offset to read, the written mark it was given (the
 * end of the last window whose results were confirmed written: records of windows ending at
 * or before it are skipped as replayed), and the window results of the partition that went to
 * the writers and are not confirmed yet. A commit for the partition goes to the lowest of: the
 * first record of an open window (the engine's holds), the first record of an unconfirmed
 * result, or the next offset; its metadata carries the written mark and the partition's time
 * just before that record ("sg1 mark=<ms> wm=<ms> max=<ms>"). */
#include "streamgate/kafka_source.h"

#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/budget.h"
#include "streamgate/buf.h"
#include "streamgate/common.h"
#include "streamgate/config.h"
#include "streamgate/event.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "streamgate/sink.h"
#include "streamgate/sink_kafka.h"
#include "streamgate/streams.h"

/* Records taken per loop turn at most; the rest wait for the next turn. */
#define KAFKA_SOURCE_BATCH 1000
/* How often offsets are committed (and the lag gauges updated). */
#define KAFKA_SOURCE_COMMIT_MS    1000
#define KAFKA_SOURCE_COMMIT_SHARE 50 /* at most 2% of the loop's time in periodic commits */
/* Safety-net poll, in case a wake-up is ever missed; faster while closing. */
#define KAFKA_SOURCE_POLL_MS 100
/* The consumer's queue and one fetch, as fractions of limits.memory (see build_conf). */
#define KAFKA_SOURCE_QUEUED_FRACTION 32
#define KAFKA_SOURCE_FETCH_FRACTION  64
#define KAFKA_SOURCE_CLOSE_POLL_MS   10
/* How long the thread pool waits for the committed offsets of an assignment, and how long
 * after a failure it asks again. */
#define KAFKA_SOURCE_COMMITTED_TIMEOUT_MS 10000
#define KAFKA_SOURCE_COMMITTED_RETRY_MS   1000
/* Partition ids the consumer accepts (the engine's bound). */
#define KAFKA_SOURCE_MAX_PARTITIONS 65536
/* The metadata's format, version 1. */
#define KAFKA_SOURCE_META_FMT "sg1 mark=%" PRId64 " wm=%" PRId64 " max=%" PRId64

enum skip_reason { SKIP_REPLAYED = 0, SKIP_INVALID, SKIP_KEY_LIMIT, SKIP_COUNT };
static const char *const skip_names[SKIP_COUNT] = {"replayed", "invalid", "key_limit"};

/* A window result handed to the writers. It stays on its partition's list, holding the
 * commit back to its first record, until every writer confirmed it and then until the written
 * mark passes its end: a replay from an earlier offset skips only the windows ending at or
 * before the mark, and would otherwise rebuild this one from part of its records.
 *
 * A partition can hold hundreds of thousands of them while the writers are behind (every key's
 * window of a slow period), so a commit reads what it needs off three heaps instead of walking
 * them: the earliest end of all (the next to be done with), the earliest end of the
 * unconfirmed (what holds the mark back) and the lowest first offset (where the commit goes). */
enum { BY_END, BY_UNCONFIRMED_END, BY_OFFSET, HEAPS };
#define NOT_IN_HEAP UINT32_MAX

struct pending {
    struct sg_sink_done done; /* first: the writers call done.cb */
    struct sg_kafka_source *src;
    struct pending *prev, *next; /* the orphans' list (a partition's are in its heaps) */
    int32_t partition;           /* -1: its partition was revoked (an orphan) */
    struct sg_streams_origin origin;
    int64_t end;
    uint32_t at[HEAPS]; /* its slot in each of its partition's heaps, or NOT_IN_HEAP */
    int calls, taken;
    bool taken_known;
    bool confirmed; /* every writer confirmed it */
    bool lost;      /* a writer gave it up while stopping: it holds the commit back for good */
};

struct pending_heap {
    struct pending **v;
    uint32_t len, cap;
};

struct part {
    bool assigned;
    int64_t next_offset;              /* after the last record taken; -1 before the first */
    int64_t expect_offset;            /* the next record's offset when none is missed; -1: any */
    int64_t mark;                     /* written mark; INT64_MIN: none */
    struct pending_heap heaps[HEAPS]; /* its pending results */
    char committed[128];              /* the last commit's "offset metadata", to skip repeats */
    struct sg_gauge *lag;
};

struct sg_kafka_source {
    uv_loop_t *loop;
    struct sg_log *log;
    struct sg_streams *streams;
    struct sg_budget *budget;
    struct sg_metrics *metrics;
    char *topic, *group;

    rd_kafka_t *rk;
    rd_kafka_queue_t *queue; /* the consumer queue, with the IO event; main and logs forwarded */
    struct sg_kafka_wake wake;
    uv_timer_t timer, more_timer, commit_timer, retry_timer;
    uint64_t commit_after_ns; /* uv_hrtime() before which no periodic commit runs */
    int handles_open;
    bool handles_init;

    struct sg_event_decoder dec;
    bool dec_ready;
    struct sg_event ev;

    struct part *parts;
    uint32_t nparts;
    struct pending *orphans;
    struct sg_streams_hold *holds;
    uint32_t nholds;

    /* An assignment's committed offsets, looked up on the thread pool: `assigning` waits for
     * a lookup, `lookup` is in one (owned by it). Every rebalance bumps `generation`, so the
     * answer for an assignment that is no longer current is dropped. */
    uv_work_t committed_work;
    rd_kafka_topic_partition_list_t *assigning, *lookup;
    uint64_t assigning_gen, lookup_gen;
    rd_kafka_resp_err_t committed_err;
    bool committed_busy;
    uint64_t generation;
    bool ready;
    bool paused;
    bool stopping;
    bool closing, closed;
    void (*closed_cb)(void *arg);
    void *closed_arg;

    size_t prefetch_bytes; /* charged to the budget for what the consumer fetches ahead */
    uint64_t consumed, skipped, commits;
    struct sg_log_limiter error_limiter, skip_limiter;
    struct sg_counter *m_consumed, *m_skipped[SKIP_COUNT], *m_rebalances, *m_missed;
    struct sg_counter *m_commits_ok, *m_commits_failed;
};

static void serve(struct sg_kafka_source *src);

/* ---- partitions ------------------------------------------------------------------------ */

static struct part *part_get(struct sg_kafka_source *src, int32_t p)
{
    if (p < 0 || p >= KAFKA_SOURCE_MAX_PARTITIONS)
        return NULL;
    if ((uint32_t)p >= src->nparts) {
        uint32_t n = src->nparts ? src->nparts : 16;
        while (n <= (uint32_t)p)
            n *= 2;
        struct part *parts = realloc(src->parts, n * sizeof(*parts));
        if (!parts)
            return NULL;
        memset(parts + src->nparts, 0, (n - src->nparts) * sizeof(*parts));
        src->parts = parts;
        src->nparts = n;
    }
    return &src->parts[p];
}

/* ---- a partition's pending heaps ------------------------------------------------------ */

static int64_t heap_key(const struct pending *pd, int h)
{
    return h == BY_OFFSET ? pd->origin.offset : pd->end;
}

static void heap_put(struct pending_heap *hp, int h, uint32_t i, struct pending *pd)
{
    hp->v[i] = pd;
    pd->at[h] = i;
}

static void heap_sift(struct pending_heap *hp, int h, uint32_t i)
{
    struct pending *pd = hp->v[i];
    int64_t k = heap_key(pd, h);
    while (i > 0 && k < heap_key(hp->v[(i - 1) / 2], h)) {
        heap_put(hp, h, i, hp->v[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= hp->len)
            break;
        if (c + 1 < hp->len && heap_key(hp->v[c + 1], h) < heap_key(hp->v[c], h))
            c++;
        if (heap_key(hp->v[c], h) >= k)
            break;
        heap_put(hp, h, i, hp->v[c]);
        i = c;
    }
    heap_put(hp, h, i, pd);
}

/* Room for one more in every heap, so that adding a result cannot half-fail. */
static int heaps_reserve(struct part *pt)
{
    for (int h = 0; h < HEAPS; h++) {
        struct pending_heap *hp = &pt->heaps[h];
        if (hp->len < hp->cap)
            continue;
        uint32_t cap = hp->cap ? hp->cap * 2 : 64;
        struct pending **v = realloc(hp->v, (size_t)cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        hp->v = v;
        hp->cap = cap;
    }
    return 0;
}

static void heap_add(struct part *pt, int h, struct pending *pd)
{
    struct pending_heap *hp = &pt->heaps[h];
    heap_put(hp, h, hp->len++, pd);
    heap_sift(hp, h, pd->at[h]);
}

static void heap_remove(struct part *pt, int h, struct pending *pd)
{
    struct pending_heap *hp = &pt->heaps[h];
    uint32_t i = pd->at[h];
    if (i == NOT_IN_HEAP)
        return;
    pd->at[h] = NOT_IN_HEAP;
    struct pending *last = hp->v[--hp->len];
    if (last != pd) {
        heap_put(hp, h, i, last);
        heap_sift(hp, h, i);
    }
}

static struct pending *heap_top(const struct part *pt, int h)
{
    return pt->heaps[h].len ? pt->heaps[h].v[0] : NULL;
}

static void pending_unlink(struct sg_kafka_source *src, struct pending *pd)
{
    if (pd->partition >= 0) {
        for (int h = 0; h < HEAPS; h++)
            heap_remove(&src->parts[pd->partition], h, pd);
        return;
    }
    if (pd->prev)
        pd->prev->next = pd->next;
    else
        src->orphans = pd->next;
    if (pd->next)
        pd->next->prev = pd->prev;
    pd->prev = pd->next = NULL;
}

static void pending_push(struct pending **head, struct pending *pd)
{
    pd->prev = NULL;
    pd->next = *head;
    if (*head)
        (*head)->prev = pd;
    *head = pd;
}

/* Every writer answered: the result is confirmed (or, while stopping, given up: then it stays
 * unconfirmed, holding its partition's commit back). An orphan (its partition revoked) goes. */
static void pending_settle(struct pending *pd)
{
    if (!pd->taken_known || pd->calls < pd->taken || pd->lost)
        return;
    if (pd->partition >= 0) {
        pd->confirmed = true;
        heap_remove(&pd->src->parts[pd->partition], BY_UNCONFIRMED_END, pd);
        return;
    }
    pending_unlink(pd->src, pd);
    free(pd);
}

static void on_result_done(struct sg_sink_done *done, bool written)
{
    struct pending *pd = (struct pending *)(void *)done;
    pd->calls++;
    if (!written && pd->src->stopping)
        pd->lost = true;
    pending_settle(pd);
}

struct sg_sink_done *sg_kafka_source_result(struct sg_kafka_source *src,
                                            const struct sg_window_result *res)
{
    struct part *pt =
        res->origin.offset >= 0 && res->partition >= 0 && (uint32_t)res->partition < src->nparts
            ? &src->parts[res->partition]
            : NULL;
    if (!pt || !pt->assigned)
        return NULL;
    if (heaps_reserve(pt) != 0)
        return NULL;
    struct pending *pd = calloc(1, sizeof(*pd));
    if (!pd)
        return NULL;
    pd->done.cb = on_result_done;
    pd->src = src;
    pd->partition = res->partition;
    pd->origin = res->origin;
    pd->end = res->window_end;
    for (int h = 0; h < HEAPS; h++)
        heap_add(pt, h, pd);
    return &pd->done;
}

void sg_kafka_source_result_taken(struct sg_kafka_source *src, struct sg_sink_done *done, int taken)
{
    (void)src;
    if (!done)
        return;
    struct pending *pd = (struct pending *)(void *)done;
    pd->taken = taken > 0 ? taken : 0;
    pd->taken_known = true;
    pending_settle(pd);
}

/* ---- commits --------------------------------------------------------------------------- */

/* Where partition p's commit goes now and what it says; false when there is nothing to commit
 * (no record taken since the assignment). */
static bool commit_point(struct sg_kafka_source *src, int32_t p, const struct sg_streams_hold *h,
                         int64_t *offset, char *meta, size_t meta_size)
{
    struct part *pt = &src->parts[p];
    struct sg_streams_origin now;
    if (!pt->assigned || pt->next_offset < 0 || !sg_streams_partition_time(src->streams, p, &now))
        return false;
    int64_t min_end = h->min_end;
    const struct pending *unconfirmed = heap_top(pt, BY_UNCONFIRMED_END);
    if (unconfirmed && unconfirmed->end < min_end)
        min_end = unconfirmed->end;
    /* Every window of the partition ending at or before the mark is written: the ones the
     * partition's watermark passed fired (or never opened: their records were late), except
     * those still open or unconfirmed. */
    int64_t mark = pt->mark;
    if (now.watermark != INT64_MIN) {
        int64_t m = now.watermark;
        if (min_end != INT64_MAX && min_end - 1 < m)
            m = min_end - 1;
        if (m > mark)
            mark = m;
    }
    /* The commit goes to the first record of a window a replay would rebuild: open, not
     * confirmed, or confirmed and ending past the mark. Confirmed results the mark passed are
     * done with. */
    struct sg_streams_origin at = h->origin;
    for (struct pending *pd; (pd = heap_top(pt, BY_END)) != NULL && pd->end <= mark;) {
        /* None unconfirmed ends at or before the mark, unless the mark came from an earlier
         * owner's commit: such a result stays, and so do the ones behind it, until it is
         * confirmed (its offset only holds the commit back further). */
        if (!pd->confirmed)
            break;
        pending_unlink(src, pd);
        free(pd);
    }
    const struct pending *first = heap_top(pt, BY_OFFSET);
    if (first && (at.offset < 0 || first->origin.offset < at.offset))
        at = first->origin;
    if (at.offset < 0) {
        at = now;
        at.offset = pt->next_offset;
    }
    *offset = at.offset;
    snprintf(meta, meta_size, KAFKA_SOURCE_META_FMT, mark, at.watermark, at.max_event_time);
    return true;
}

static struct sg_streams_hold *holds_get(struct sg_kafka_source *src)
{
    if (src->nholds < src->nparts) {
        struct sg_streams_hold *h = realloc(src->holds, src->nparts * sizeof(*h));
        if (!h)
            return NULL;
        src->holds = h;
        src->nholds = src->nparts;
    }
    sg_streams_partition_holds(src->streams, src->holds, src->nholds);
    return src->holds;
}

/* Commits, asynchronously, partitions `only` (NULL: every assigned one) where their point
 * moved. */
static void commit(struct sg_kafka_source *src, const rd_kafka_topic_partition_list_t *only)
{
    if (!src->rk || src->closed)
        return;
    struct sg_streams_hold *holds = holds_get(src);
    if (!holds)
        return;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
    if (!list)
        return;
    for (uint32_t p = 0; p < src->nparts; p++) {
        if (only && !rd_kafka_topic_partition_list_find(only, src->topic, (int32_t)p))
            continue;
        int64_t offset;
        char meta[96], both[128];
        if (!commit_point(src, (int32_t)p, &holds[p], &offset, meta, sizeof(meta)))
            continue;
        snprintf(both, sizeof(both), "%" PRId64 " %s", offset, meta);
        if (strcmp(both, src->parts[p].committed) == 0)
            continue;
        memcpy(src->parts[p].committed, both, sizeof(both));
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_add(list, src->topic, (int32_t)p);
        tp->offset = offset;
        tp->metadata = strdup(meta);
        tp->metadata_size = tp->metadata ? strlen(meta) : 0;
    }
    if (list->cnt > 0) {
        rd_kafka_resp_err_t err = rd_kafka_commit(src->rk, list, 1);
        if (err) {
            sg_counter_inc(src->m_commits_failed);
            sg_warn(src->log, "kafka commit failed", SG_F_STR("error", rd_kafka_err2str(err)));
            for (int i = 0; i < list->cnt; i++) /* try again at the next commit */
                src->parts[list->elems[i].partition].committed[0] = '\0';
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
}

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    struct sg_kafka_source *src = opaque;
    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return;
    if (err) {
        sg_counter_inc(src->m_commits_failed);
        int64_t suppressed = sg_log_limiter_take(&src->error_limiter, sg_now_ms());
        if (suppressed >= 0)
            sg_warn(src->log, "kafka commit failed", SG_F_STR("error", rd_kafka_err2str(err)),
                    SG_F_INT("suppressed", suppressed));
        /* Commit these again at the next round. */
        for (int i = 0; offsets && i < offsets->cnt; i++) {
            int32_t p = offsets->elems[i].partition;
            if (p >= 0 && (uint32_t)p < src->nparts)
                src->parts[p].committed[0] = '\0';
        }
        return;
    }
    sg_counter_inc(src->m_commits_ok);
    src->commits++;
}

static void update_lag(struct sg_kafka_source *src)
{
    for (uint32_t p = 0; p < src->nparts; p++) {
        struct part *pt = &src->parts[p];
        if (!pt->assigned || !pt->lag)
            continue;
        int64_t lo = -1, hi = -1;
        if (rd_kafka_get_watermark_offsets(src->rk, src->topic, (int32_t)p, &lo, &hi) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi < 0)
            continue;
        int64_t at = pt->next_offset >= 0 ? pt->next_offset : lo;
        sg_gauge_set(pt->lag, hi > at && at >= 0 ? (double)(hi - at) : 0.0);
    }
}

/* The periodic commit: each one walks every open window for its partition's hold, which with
 * hundreds of thousands of keys takes milliseconds. Spaced out so that it takes at most
 * 1/KAFKA_SOURCE_COMMIT_SHARE of the loop's time; revocations and shutdown commit at once. */
static void on_commit_timer(uv_timer_t *t)
{
    struct sg_kafka_source *src = sg_container_of(t, struct sg_kafka_source, commit_timer);
    uint64_t start = uv_hrtime();
    if (start < src->commit_after_ns)
        return;
    commit(src, NULL);
    update_lag(src);
    src->commit_after_ns = start + (uv_hrtime() - start) * KAFKA_SOURCE_COMMIT_SHARE;
}

/* ---- rebalances ------------------------------------------------------------------------ */

static struct sg_gauge *lag_gauge(struct sg_kafka_source *src, int32_t p)
{
    char labels[48];
    snprintf(labels, sizeof(labels), "partition=\"%d\"", (int)p);
    return sg_metrics_gauge(src->metrics, SG_METRIC_KAFKA_CONSUMER_LAG, labels);
}

/* Reads the metadata a commit stored; leaves `mark` and `from` alone when it is not ours. */
static void parse_meta(const rd_kafka_topic_partition_t *tp, int64_t *mark,
                       struct sg_streams_origin *from)
{
    char meta[128];
    int64_t m, wm, max;
    if (!tp->metadata || tp->metadata_size == 0 || tp->metadata_size >= sizeof(meta))
        return;
    memcpy(meta, tp->metadata, tp->metadata_size);
    meta[tp->metadata_size] = '\0';
    if (sscanf(meta, "sg1 mark=%" SCNd64 " wm=%" SCNd64 " max=%" SCNd64, &m, &wm, &max) != 3)
        return;
    *mark = m;
    from->watermark = wm;
    from->max_event_time = max;
}

static void committed_work(uv_work_t *w)
{
    struct sg_kafka_source *src = sg_container_of(w, struct sg_kafka_source, committed_work);
    src->committed_err =
        rd_kafka_committed(src->rk, src->lookup, KAFKA_SOURCE_COMMITTED_TIMEOUT_MS);
}

static void start_committed(struct sg_kafka_source *src);

static void on_committed_retry(uv_timer_t *t)
{
    struct sg_kafka_source *src = sg_container_of(t, struct sg_kafka_source, retry_timer);
    start_committed(src);
}

/* The committed offsets of the assignment are known: the engine takes the partitions with the
 * time their last owner stored, and the consumer starts at the committed offsets (earliest
 * where there is none). */
static void committed_done(uv_work_t *w, int status)
{
    struct sg_kafka_source *src = sg_container_of(w, struct sg_kafka_source, committed_work);
    rd_kafka_topic_partition_list_t *list = src->lookup;
    src->lookup = NULL;
    src->committed_busy = false;
    if (status != 0 || src->closed || src->closing || src->lookup_gen != src->generation) {
        rd_kafka_topic_partition_list_destroy(list);
        start_committed(src); /* a newer assignment may be waiting */
        return;
    }
    if (src->committed_err) {
        sg_warn(src->log, "kafka: committed offsets not known yet, asking again",
                SG_F_STR("error", rd_kafka_err2str(src->committed_err)));
        if (!src->assigning) {
            src->assigning = list;
            src->assigning_gen = src->lookup_gen;
        } else {
            rd_kafka_topic_partition_list_destroy(list);
        }
        uv_timer_start(&src->retry_timer, on_committed_retry, KAFKA_SOURCE_COMMITTED_RETRY_MS, 0);
        return;
    }
    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        struct part *pt = part_get(src, tp->partition);
        struct sg_streams_origin from = {
            .offset = -1, .watermark = INT64_MIN, .max_event_time = INT64_MIN};
        int64_t mark = INT64_MIN;
        if (!pt) {
            sg_error(src->log, "kafka: partition id out of range or out of memory",
                     SG_F_INT("partition", tp->partition));
            continue;
        }
        parse_meta(tp, &mark, &from);
        /* Windows ending at or before the mark were written: the partition's watermark starts
         * there at least, so none of them opens again (a hopping window's earlier windows
         * included). A record of a later window is late exactly when it was the first time:
         * its window ends past the mark, so the higher start changes nothing for it. */
        if (mark != INT64_MIN && (from.watermark == INT64_MIN || mark > from.watermark)) {
            if (from.watermark == INT64_MIN)
                from.max_event_time = mark;
            from.watermark = mark;
        }
        pt->assigned = true;
        pt->next_offset = -1;
        pt->expect_offset = tp->offset >= 0 ? tp->offset : -1;
        pt->mark = mark;
        pt->committed[0] = '\0';
        if (!pt->lag)
            pt->lag = lag_gauge(src, tp->partition);
        if (sg_streams_partition_assign(src->streams, tp->partition, &from) != 0)
            sg_error(src->log, "kafka: out of memory for a partition",
                     SG_F_INT("partition", tp->partition));
        sg_info(src->log, "kafka partition assigned", SG_F_INT("partition", tp->partition),
                SG_F_INT("offset", tp->offset), SG_F_INT("mark", mark));
        /* Nothing to seek past: the committed offset is where to start. */
        if (tp->offset < 0)
            tp->offset = RD_KAFKA_OFFSET_INVALID;
    }
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (strcmp(rd_kafka_rebalance_protocol(src->rk), "COOPERATIVE") == 0)
        error = rd_kafka_incremental_assign(src->rk, list);
    else
        err = rd_kafka_assign(src->rk, list);
    if (error) {
        sg_error(src->log, "kafka assign failed", SG_F_STR("error", rd_kafka_error_string(error)));
        rd_kafka_error_destroy(error);
    } else if (err) {
        sg_error(src->log, "kafka assign failed", SG_F_STR("error", rd_kafka_err2str(err)));
    } else {
        src->ready = true;
    }
    rd_kafka_topic_partition_list_destroy(list);
    src->paused = false; /* the new assignment is not paused; serve() pauses again if needed */
    serve(src);
}

static void start_committed(struct sg_kafka_source *src)
{
    if (src->committed_busy || !src->assigning || src->closed)
        return;
    src->lookup = src->assigning;
    src->lookup_gen = src->assigning_gen;
    src->assigning = NULL;
    src->committed_busy = true;
    if (uv_queue_work(src->loop, &src->committed_work, committed_work, committed_done) != 0) {
        src->committed_busy = false;
        src->assigning = src->lookup;
        src->lookup = NULL;
        uv_timer_start(&src->retry_timer, on_committed_retry, KAFKA_SOURCE_COMMITTED_RETRY_MS, 0);
    }
}

static void revoke_parts(struct sg_kafka_source *src, const rd_kafka_topic_partition_list_t *list)
{
    /* What the writers confirmed is committed before the partitions go: the next owner starts
     * from there. */
    commit(src, list);
    for (int i = 0; i < list->cnt; i++) {
        int32_t p = list->elems[i].partition;
        if (p < 0 || (uint32_t)p >= src->nparts || !src->parts[p].assigned)
            continue;
        struct part *pt = &src->parts[p];
        size_t dropped = sg_streams_partition_revoke(src->streams, p);
        for (struct pending *pd; (pd = heap_top(pt, BY_END)) != NULL;) {
            pending_unlink(src, pd);
            pd->partition = -1;
            pending_push(&src->orphans, pd);
        }
        pt->assigned = false;
        if (pt->lag)
            sg_gauge_set(pt->lag, 0);
        sg_info(src->log, "kafka partition revoked", SG_F_INT("partition", p),
                SG_F_UINT("windows_dropped", dropped));
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *partitions, void *opaque)
{
    struct sg_kafka_source *src = opaque;
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    sg_counter_inc(src->m_rebalances);
    src->generation++;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (src->closing) { /* leaving: take nothing */
            if (!cooperative)
                rd_kafka_assign(rk, NULL);
            return;
        }
        /* A lookup still running is for an older assignment: it is dropped when it ends. */
        if (src->assigning)
            rd_kafka_topic_partition_list_destroy(src->assigning);
        src->assigning = rd_kafka_topic_partition_list_copy(partitions);
        src->assigning_gen = src->generation;
        start_committed(src);
        return;
    }
    /* Revoked (or lost): the partitions' windows are dropped unfired. */
    if (src->assigning) {
        rd_kafka_topic_partition_list_destroy(src->assigning);
        src->assigning = NULL;
    }
    revoke_parts(src, partitions);
    if (cooperative) {
        rd_kafka_error_t *error = rd_kafka_incremental_unassign(rk, partitions);
        if (error)
            rd_kafka_error_destroy(error);
    } else {
        rd_kafka_assign(rk, NULL);
        src->ready = false;
    }
}

/* ---- records --------------------------------------------------------------------------- */

static void skip(struct sg_kafka_source *src, enum skip_reason why, const rd_kafka_message_t *m)
{
    sg_counter_inc(src->m_skipped[why]);
    src->skipped++;
    if (why == SKIP_REPLAYED)
        return;
    int64_t suppressed = sg_log_limiter_take(&src->skip_limiter, sg_now_ms());
    if (suppressed >= 0)
        sg_warn(src->log, "kafka record skipped", SG_F_STR("reason", skip_names[why]),
                SG_F_INT("partition", m->partition), SG_F_INT("offset", m->offset),
                SG_F_INT("suppressed", suppressed));
}

/* The gateway's headers: arrival time and transport. Without a received-at header (kafka.headers
 * left it out) the arrival time is the record's timestamp, which the gateway sets to it, and
 * `now_ms` when the topic stamps records itself (LogAppendTime). */
static void record_headers(const rd_kafka_message_t *m, int64_t now_ms, int64_t *received_ms,
                           int *transport)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *v;
    size_t len;
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    *received_ms = tstype == RD_KAFKA_TIMESTAMP_CREATE_TIME && ts > 0 ? ts : now_ms;
    *transport = SG_TRANSPORT_HTTP;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR || !hdrs)
        return;
    if (rd_kafka_header_get_last(hdrs, "received-at", &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        v && len > 0 && len < 24) {
        char buf[24];
        memcpy(buf, v, len);
        buf[len] = '\0';
        char *end;
        long long ms = strtoll(buf, &end, 10);
        if (*end == '\0')
            *received_ms = ms;
    }
    if (rd_kafka_header_get_last(hdrs, "transport", &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR && v &&
        len == 3 && memcmp(v, "tcp", 3) == 0)
        *transport = SG_TRANSPORT_TCP;
}

/* Offsets [from, to) of a partition came without records: read past, never folded in. With the
 * gateway's idempotent (not transactional) producer that means the log dropped them before they
 * were read and the consumer's offset was reset past them (auto.offset.reset). */
static void missed(struct sg_kafka_source *src, int32_t partition, int64_t from, int64_t to)
{
    sg_counter_add(src->m_missed, (uint64_t)(to - from));
    int64_t suppressed = sg_log_limiter_take(&src->skip_limiter, sg_now_ms());
    if (suppressed >= 0)
        sg_warn(src->log, "kafka records missed: offsets passed over without being read",
                SG_F_INT("partition", partition), SG_F_INT("from", from), SG_F_INT("to", to),
                SG_F_INT("suppressed", suppressed));
}

static void take(struct sg_kafka_source *src, const rd_kafka_message_t *m, int64_t now_ms)
{
    struct part *pt = m->partition >= 0 && (uint32_t)m->partition < src->nparts
                          ? &src->parts[m->partition]
                          : NULL;
    if (!pt || !pt->assigned)
        return;
    sg_counter_inc(src->m_consumed);
    src->consumed++;
    if (pt->expect_offset >= 0 && m->offset > pt->expect_offset)
        missed(src, m->partition, pt->expect_offset, m->offset);
    pt->next_offset = m->offset + 1;
    pt->expect_offset = pt->next_offset;

    int64_t received_ms;
    int transport;
    enum sg_reject why;
    record_headers(m, now_ms, &received_ms, &transport);
    if (sg_event_decode(&src->dec, m->payload ? m->payload : "", m->len, received_ms, &src->ev,
                        &why) != 0) {
        skip(src, SKIP_INVALID, m);
        return;
    }
    if (m->key && m->key_len > 0) {
        src->ev.key = m->key;
        src->ev.key_len = m->key_len;
    }
    src->ev.transport = transport;
    src->ev.received_ms = received_ms;
    if (pt->mark != INT64_MIN &&
        sg_streams_last_window_end(src->streams, src->ev.ts_ms) <= pt->mark) {
        skip(src, SKIP_REPLAYED, m);
        return;
    }
    if (sg_streams_add_record(src->streams, &src->ev, m->partition, m->offset, now_ms, &why) != 0)
        skip(src, why == SG_REJECT_KEY_LIMIT ? SKIP_KEY_LIMIT : SKIP_INVALID, m);
}

/* Pauses fetching while ingest would push back (the budget is over its high watermark), and
 * resumes under the low one. */
static void follow_budget(struct sg_kafka_source *src)
{
    bool want = src->stopping || (src->budget && sg_budget_paused(src->budget));
    if (want == src->paused || !src->rk)
        return;
    rd_kafka_topic_partition_list_t *assigned = NULL;
    if (rd_kafka_assignment(src->rk, &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR || !assigned)
        return;
    if (want)
        rd_kafka_pause_partitions(src->rk, assigned);
    else
        rd_kafka_resume_partitions(src->rk, assigned);
    rd_kafka_topic_partition_list_destroy(assigned);
    src->paused = want;
}

static void on_more(uv_timer_t *t)
{
    serve(sg_container_of(t, struct sg_kafka_source, more_timer));
}

static void close_handles(struct sg_kafka_source *src);

static void maybe_closed(struct sg_kafka_source *src)
{
    if (!src->closing || src->closed || !rd_kafka_consumer_closed(src->rk))
        return;
    src->closed = true;
    sg_info(src->log, "kafka consumer left the group");
    close_handles(src); /* nothing more for the loop to do here */
    void (*cb)(void *) = src->closed_cb;
    src->closed_cb = NULL;
    if (cb)
        cb(src->closed_arg);
}

/* Serves the consumer queue: rebalances, commit reports, errors and log lines, and at most
 * KAFKA_SOURCE_BATCH records; another loop turn is asked for when more may be waiting. */
static void serve(struct sg_kafka_source *src)
{
    if (!src->rk || src->closed || !src->handles_init)
        return;
    follow_budget(src);
    int64_t now_ms = sg_now_ms(); /* one look at the clock per batch */
    int n = 0;
    for (; n < KAFKA_SOURCE_BATCH; n++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(src->rk, 0);
        if (!m)
            break;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                int64_t suppressed = sg_log_limiter_take(&src->error_limiter, sg_now_ms());
                if (suppressed >= 0)
                    sg_warn(src->log, "kafka consumer error",
                            SG_F_STR("error", rd_kafka_message_errstr(m)),
                            SG_F_INT("suppressed", suppressed));
            }
        } else if (!src->stopping) {
            take(src, m, now_ms);
        }
        rd_kafka_message_destroy(m);
    }
    if (n == KAFKA_SOURCE_BATCH && !uv_is_active((uv_handle_t *)&src->more_timer))
        uv_timer_start(&src->more_timer, on_more, 0, 0);
    maybe_closed(src);
}

static void on_wake(struct sg_kafka_wake *wake)
{
    serve(sg_container_of(wake, struct sg_kafka_source, wake));
}

static void on_timer(uv_timer_t *t)
{
    serve(sg_container_of(t, struct sg_kafka_source, timer));
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct sg_kafka_source *src = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        src->ready = false;
        sg_error(src->log, "kafka consumer failed for good",
                 SG_F_STR("error", rd_kafka_err2name(orig)), SG_F_STR("reason", fatal));
        return;
    }
    int64_t suppressed = sg_log_limiter_take(&src->error_limiter, sg_now_ms());
    if (suppressed >= 0)
        sg_warn(src->log, "kafka consumer error", SG_F_STR("error", rd_kafka_err2name(err)),
                SG_F_STR("reason", reason), SG_F_INT("suppressed", suppressed));
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    struct sg_kafka_source *src = rd_kafka_opaque(rk);
    if (src)
        sg_kafka_log(src->log, level, fac, buf);
}

/* ---- life cycle ------------------------------------------------------------------------ */

/* The consumer's configuration: its defaults, then cfg->kafka_rdkafka (which the producer
 * takes too: each client ignores, with a warning, the other's properties). */
static rd_kafka_conf_t *build_conf(const struct sg_config *cfg, const char *bootstrap, char *errstr,
                                   size_t errstr_size)
{
    static const char *const defaults[][2] = {
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
        {"session.timeout.ms", "6000"},
        {"heartbeat.interval.ms", "2000"},
        {"enable.partition.eof", "false"},
        {"log.queue", "true"},
    };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(errstr, errstr_size, "kafka: out of memory");
        return NULL;
    }
    if (sg_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, errstr_size) != 0 ||
        sg_kafka_conf_set(conf, "group.id", cfg->kafka_group_id, errstr, errstr_size) != 0)
        goto fail;
    for (size_t i = 0; i < SG_ARRAY_SIZE(defaults); i++)
        if (sg_kafka_conf_set(conf, defaults[i][0], defaults[i][1], errstr, errstr_size) != 0)
            goto fail;
    /* What the consumer fetches ahead is memory outside the engine (librdkafka's defaults allow
     * 64 MiB queued plus 50 MB a fetch): scaled to the budget, which is charged for it. */
    char queued_kb[24], fetch_max[24];
    snprintf(queued_kb, sizeof(queued_kb), "%zu",
             SG_MAX(SG_MIN(cfg->limits_memory / KAFKA_SOURCE_QUEUED_FRACTION, (size_t)64 << 20),
                    (size_t)1 << 20) >>
                 10);
    snprintf(fetch_max, sizeof(fetch_max), "%zu",
             SG_MAX(SG_MIN(cfg->limits_memory / KAFKA_SOURCE_FETCH_FRACTION, (size_t)50 << 20),
                    (size_t)1 << 20));
    if (sg_kafka_conf_set(conf, "queued.max.messages.kbytes", queued_kb, errstr, errstr_size) !=
            0 ||
        sg_kafka_conf_set(conf, "fetch.max.bytes", fetch_max, errstr, errstr_size) != 0)
        goto fail;
    if (sg_kafka_conf_apply(conf, &cfg->kafka_rdkafka, errstr, errstr_size) != 0)
        goto fail;
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

int sg_kafka_source_check_config(const struct sg_config *cfg, char *errstr, size_t errstr_size)
{
    char err[512];
    rd_kafka_conf_t *conf = build_conf(cfg, "", errstr, errstr_size);
    if (!conf)
        return -EINVAL;
    /* Whatever kafka.rdkafka named as brokers, the check connects to nothing. */
    if (sg_kafka_conf_set(conf, "bootstrap.servers", "", errstr, errstr_size) != 0) {
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
    }
    rd_kafka_conf_set_log_cb(conf, sg_kafka_log_discard);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "kafka.rdkafka: %s", err);
        return -EINVAL;
    }
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    return 0;
}

static int register_metrics(struct sg_kafka_source *src, struct sg_metrics *m)
{
    char labels[48];
    src->m_consumed = sg_metrics_counter(m, SG_METRIC_KAFKA_RECORDS_CONSUMED_TOTAL, NULL);
    src->m_rebalances = sg_metrics_counter(m, SG_METRIC_KAFKA_REBALANCES_TOTAL, NULL);
    src->m_missed = sg_metrics_counter(m, SG_METRIC_KAFKA_RECORDS_MISSED_TOTAL, NULL);
    src->m_commits_ok = sg_metrics_counter(m, SG_METRIC_KAFKA_COMMITS_TOTAL, "result=\"ok\"");
    src->m_commits_failed =
        sg_metrics_counter(m, SG_METRIC_KAFKA_COMMITS_TOTAL, "result=\"failed\"");
    if (!src->m_consumed || !src->m_rebalances || !src->m_missed || !src->m_commits_ok ||
        !src->m_commits_failed)
        return -ENOMEM;
    for (int i = 0; i < SKIP_COUNT; i++) {
        snprintf(labels, sizeof(labels), "reason=\"%s\"", skip_names[i]);
        src->m_skipped[i] = sg_metrics_counter(m, SG_METRIC_KAFKA_RECORDS_SKIPPED_TOTAL, labels);
        if (!src->m_skipped[i])
            return -ENOMEM;
    }
    return 0;
}

/* The consumer's fetch-ahead ceiling as configured: its queue plus one fetch. */
static size_t prefetch_bytes(const rd_kafka_conf_t *conf)
{
    char v[32];
    size_t n = sizeof(v);
    size_t bytes = 0;
    if (rd_kafka_conf_get(conf, "queued.max.messages.kbytes", v, &n) == RD_KAFKA_CONF_OK)
        bytes += (size_t)strtoull(v, NULL, 10) << 10;
    n = sizeof(v);
    if (rd_kafka_conf_get(conf, "fetch.max.bytes", v, &n) == RD_KAFKA_CONF_OK)
        bytes += (size_t)strtoull(v, NULL, 10);
    return bytes;
}

int sg_kafka_source_create(uv_loop_t *loop, const struct sg_config *cfg, const char *bootstrap,
                           struct sg_streams *streams, struct sg_budget *budget,
                           struct sg_metrics *metrics, struct sg_log *log,
                           struct sg_kafka_source **out, char *errstr, size_t errstr_size)
{
    char err[512];
    int rc;
    struct sg_kafka_source *src = calloc(1, sizeof(*src));
    if (!src) {
        snprintf(errstr, errstr_size, "kafka consumer: out of memory");
        return -ENOMEM;
    }
    sg_kafka_wake_init(&src->wake);
    src->loop = loop;
    src->log = log;
    src->streams = streams;
    src->budget = budget;
    src->metrics = metrics;
    src->error_limiter.interval_ms = (int64_t)cfg->log_bad_input_interval_ms;
    src->skip_limiter.interval_ms = (int64_t)cfg->log_bad_input_interval_ms;
    sg_event_decoder_init(&src->dec, cfg);
    src->dec_ready = true;
    src->topic = strdup(cfg->kafka_raw_topic);
    src->group = strdup(cfg->kafka_group_id);
    if (!src->topic || !src->group || register_metrics(src, metrics) != 0) {
        snprintf(errstr, errstr_size, "kafka consumer: out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    rd_kafka_conf_t *conf = build_conf(cfg, bootstrap, errstr, errstr_size);
    if (!conf) {
        rc = -EINVAL;
        goto fail;
    }
    src->prefetch_bytes = prefetch_bytes(conf);
    if (src->budget)
        sg_budget_charge(src->budget, SG_BUDGET_CONNECTIONS, src->prefetch_bytes);
    rd_kafka_conf_set_opaque(conf, src);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    src->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!src->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "kafka consumer: %s", err);
        rc = -EINVAL;
        goto fail;
    }
    /* Everything comes through the consumer queue: records, rebalances, commit reports, errors
     * and (log.queue) librdkafka's log lines; its IO event wakes the loop. */
    rd_kafka_poll_set_consumer(src->rk);
    rd_kafka_set_log_queue(src->rk, NULL);
    src->queue = rd_kafka_queue_get_consumer(src->rk);
    if ((rc = sg_kafka_wake_open(&src->wake, loop, src->queue, "kafka consumer", errstr,
                                 errstr_size)) != 0)
        goto fail;
    uv_timer_init(loop, &src->timer);
    uv_timer_init(loop, &src->more_timer);
    uv_timer_init(loop, &src->commit_timer);
    uv_timer_init(loop, &src->retry_timer);
    src->handles_init = true;
    if ((rc = sg_kafka_wake_start(&src->wake, on_wake)) != 0 ||
        (rc = uv_timer_start(&src->timer, on_timer, KAFKA_SOURCE_POLL_MS, KAFKA_SOURCE_POLL_MS)) !=
            0 ||
        (rc = uv_timer_start(&src->commit_timer, on_commit_timer, KAFKA_SOURCE_COMMIT_MS,
                             KAFKA_SOURCE_COMMIT_MS)) != 0)
        goto fail_uv;

    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, src->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t serr = rd_kafka_subscribe(src->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (serr) {
        snprintf(errstr, errstr_size, "kafka consumer: subscribe %s: %s", src->topic,
                 rd_kafka_err2str(serr));
        rc = -EINVAL;
        goto fail;
    }
    *out = src;
    return 0;
fail_uv:
    snprintf(errstr, errstr_size, "kafka consumer: %s", uv_strerror(rc));
fail:
    sg_kafka_source_stop(src);
    sg_kafka_source_destroy(src);
    return rc;
}

bool sg_kafka_source_ready(const struct sg_kafka_source *src)
{
    return src->ready && !src->stopping;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct sg_kafka_source *src = h->data;
    src->handles_open--;
}

static void close_handles(struct sg_kafka_source *src)
{
    if (!src->handles_init)
        return;
    src->handles_init = false;
    uv_handle_t *hs[] = {(uv_handle_t *)&src->wake.poll, (uv_handle_t *)&src->timer,
                         (uv_handle_t *)&src->more_timer, (uv_handle_t *)&src->commit_timer,
                         (uv_handle_t *)&src->retry_timer};
    for (size_t i = 0; i < SG_ARRAY_SIZE(hs); i++) {
        hs[i]->data = src;
        src->handles_open++;
        uv_close(hs[i], on_handle_closed);
    }
}

void sg_kafka_source_stop(struct sg_kafka_source *src)
{
    if (!src || src->stopping)
        return;
    src->stopping = true;
    if (src->rk)
        follow_budget(src); /* pauses every partition */
}

void sg_kafka_source_close(struct sg_kafka_source *src, void (*cb)(void *arg), void *arg)
{
    sg_kafka_source_stop(src);
    if (!src->rk || src->closing) {
        if (cb)
            cb(arg);
        return;
    }
    src->closing = true;
    src->closed_cb = cb;
    src->closed_arg = arg;
    uv_timer_stop(&src->commit_timer);
    commit(src, NULL);
    /* Leaving the group without blocking the loop: the revocation and the close itself come
     * through the consumer queue, which the loop keeps serving until the consumer is closed. */
    rd_kafka_error_t *error = rd_kafka_consumer_close_queue(src->rk, src->queue);
    if (error) {
        sg_warn(src->log, "kafka consumer close failed",
                SG_F_STR("error", rd_kafka_error_string(error)));
        rd_kafka_error_destroy(error);
        src->closed = true;
        src->closed_cb = NULL;
        if (cb)
            cb(arg);
        return;
    }
    uv_timer_start(&src->timer, on_timer, KAFKA_SOURCE_CLOSE_POLL_MS, KAFKA_SOURCE_CLOSE_POLL_MS);
    serve(src);
}

void sg_kafka_source_abandon(struct sg_kafka_source *src)
{
    if (!src || src->closed)
        return;
    sg_warn(src->log, "kafka consumer close abandoned: the group notices the member gone within "
                      "session.timeout.ms");
    src->closed_cb = NULL;
    close_handles(src);
}

void sg_kafka_source_destroy(struct sg_kafka_source *src)
{
    if (!src)
        return;
    if (src->handles_init) {
        close_handles(src);
        uv_run(src->loop, UV_RUN_NOWAIT);
    }
    if (src->rk) {
        sg_kafka_wake_release(&src->wake);
        if (src->queue)
            rd_kafka_queue_destroy(src->queue);
        /* A close that finished left the group; otherwise do not block here to leave it: the
         * group notices within session.timeout.ms. */
        rd_kafka_destroy_flags(src->rk, src->closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    }
    if (src->budget)
        sg_budget_release(src->budget, SG_BUDGET_CONNECTIONS, src->prefetch_bytes);
    if (src->assigning)
        rd_kafka_topic_partition_list_destroy(src->assigning);
    if (src->lookup && !src->committed_busy)
        rd_kafka_topic_partition_list_destroy(src->lookup);
    for (uint32_t p = 0; p < src->nparts; p++)
        for (struct pending *pd; (pd = heap_top(&src->parts[p], BY_END)) != NULL;) {
            pending_unlink(src, pd);
            free(pd);
        }
    while (src->orphans) {
        struct pending *pd = src->orphans;
        pending_unlink(src, pd);
        free(pd);
    }
    sg_kafka_wake_release(&src->wake); /* the pipe, when the consumer was never made */
    if (src->dec_ready)
        sg_event_decoder_free(&src->dec);
    for (uint32_t p = 0; p < src->nparts; p++)
        for (int h = 0; h < HEAPS; h++)
            free(src->parts[p].heaps[h].v);
    free(src->parts);
    free(src->holds);
    free(src->topic);
    free(src->group);
    free(src);
}

int sg_kafka_source_info(const struct sg_kafka_source *src, struct sg_buf *out)
{
    int rc = sg_buf_append_str(out, "{\"topic\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(out, src->topic, strlen(src->topic));
    if (rc == 0)
        rc = sg_buf_append_str(out, ",\"group\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(out, src->group, strlen(src->group));
    if (rc == 0)
        rc = sg_buf_printf(out, ",\"ready\":%s,\"partitions\":[",
                           sg_kafka_source_ready(src) ? "true" : "false");
    bool first = true;
    for (uint32_t p = 0; rc == 0 && p < src->nparts; p++) {
        if (!src->parts[p].assigned)
            continue;
        rc = sg_buf_printf(out, "%s%u", first ? "" : ",", p);
        first = false;
    }
    if (rc == 0)
        rc = sg_buf_printf(
            out, "],\"consumed\":%" PRIu64 ",\"skipped\":%" PRIu64 ",\"commits\":%" PRIu64 "}",
            src->consumed, src->skipped, src->commits);
    return rc;
}
