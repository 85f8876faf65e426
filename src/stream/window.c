/* Windows: which windows an event belongs to (tumbling, hopping, session), the watermark, the
 * deadline heap that decides what fires when, early updates, and the windows' memory.
 *
 * A window is one allocation (header, distinct sketch, field array) that grows in place as new
 * fields appear; fired windows go to a free list so a steady stream of keys does not churn
 * malloc. The heap holds every open window ordered by (end, key, start), so firing pops from the
 * top while the top has passed the watermark and never looks at keys with nothing due.
 *
 * Pacing: with a memory budget, firing also stops while the writers' queues hold their share of
 * it, and the due windows wait in the heap, unchanged, until the queues drain. Nothing else
 * moves: the watermark goes on, and an event for a window that is due but waiting is late
 * exactly as if that window had fired (a due window never takes an event, a due session is
 * never extended or merged). Only the moment of emission moves; the order stays the heap's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "stream_internal.h"
#include "streamgate/config.h"
#include "streamgate/ddsketch.h"
#include "streamgate/event.h"

/* 2001-01-01T00:00:00Z in epoch ms: a late event before it, against a watermark after it, was
 * likely sent in a larger unit than event.time_unit (seconds read as milliseconds). */
#define SG_WINDOW_RECENT_MS INT64_C(978307200000)
/* A watermark this far ahead of the wall clock (a year) likely came from a time sent in a
 * smaller unit than event.time_unit (microseconds read as milliseconds). */
#define SG_WINDOW_FAR_AHEAD_MS (INT64_C(366) * 24 * 3600 * 1000)

/* floor(a / b) for b > 0, also for negative a. */
static int64_t sg_window__floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* ---- time ---------------------------------------------------------------------------- */

/* True while ingest is held back by pushback and something other than the watermark will free
 * memory (see sg_window__advance). */
static bool sg_window__held_back(const struct sg_streams *st)
{
    return st->budget && sg_budget_paused(st->budget) &&
           (st->held || sg_budget_used_by(st->budget, SG_BUDGET_QUEUES) > 0);
}

void sg_window__part_watermark(struct sg_streams *st)
{
    bool blocked = false, any = false;
    int64_t wm = INT64_MAX;
    for (uint32_t i = 0; i < st->nparts; i++) {
        const struct sg_streams_part *p = &st->parts[i];
        if (!p->assigned)
            continue;
        if (!p->known) {
            /* No time yet: it holds firing back until it has been idle for idle_timeout. */
            if (st->now_ms - p->last_wall < st->idle_timeout_ms)
                blocked = true;
            continue;
        }
        any = true;
        if (p->watermark < wm)
            wm = p->watermark;
    }
    st->has_watermark = any && !blocked;
    if (st->has_watermark)
        st->watermark = wm;
}

/* The per-partition form of the idle advance below: each assigned partition's watermark
 * follows the wall clock after idle_timeout without records of its own, so an idle partition
 * stops holding the others back. Looked at once per millisecond at most. */
static void sg_window__advance_parts(struct sg_streams *st, int64_t now_ms)
{
    if (now_ms == st->parts_checked_ms)
        return;
    st->parts_checked_ms = now_ms;
    bool held_back = sg_window__held_back(st);
    for (uint32_t i = 0; i < st->nparts; i++) {
        struct sg_streams_part *p = &st->parts[i];
        if (!p->assigned)
            continue;
        if ((held_back || st->held_back) && now_ms > p->last_wall)
            p->last_wall = now_ms;
        int64_t idle = now_ms - p->last_wall;
        if (p->known && idle >= st->idle_timeout_ms) {
            int64_t wm = p->max_event_time - st->lateness_ms + (idle - st->idle_timeout_ms);
            if (wm > p->watermark)
                p->watermark = wm;
        }
    }
    st->held_back = held_back;
    sg_window__part_watermark(st);
}

void sg_window__advance(struct sg_streams *st, int64_t now_ms)
{
    st->now_ms = now_ms;
    if (st->time_mode == SG_TIME_PROCESSING) {
        if (!st->has_watermark || now_ms > st->watermark)
            st->watermark = now_ms;
        st->has_watermark = true;
        return;
    }
    if (st->partitioned) {
        sg_window__advance_parts(st, now_ms);
        return;
    }
    if (!st->has_watermark)
        return;
    /* Sources that pushback holds back are not idle: their events wait with the times they
     * were made, and a watermark that went on with the wall clock meanwhile would make them late
     * when they come. While ingest is paused and something else than the watermark will free
     * memory (the writers' queues drain, due windows wait for them), and at the first look after
     * such a pause, the idle clock starts again. A pause with nothing to drain but open windows
     * that are not due lets it run: only the watermark can free those. */
    bool held_back = sg_window__held_back(st);
    if ((held_back || st->held_back) && now_ms > st->last_event_wall)
        st->last_event_wall = now_ms;
    st->held_back = held_back;
    /* No event for idle_timeout: let the watermark follow the wall clock from there, so the
     * last windows fire even when traffic stops. */
    int64_t idle = now_ms - st->last_event_wall;
    if (idle >= st->idle_timeout_ms) {
        int64_t wm = st->max_event_time - st->lateness_ms + (idle - st->idle_timeout_ms);
        if (wm > st->watermark)
            st->watermark = wm;
    }
}

void sg_window__observe(struct sg_streams *st, int64_t t, int64_t now_ms)
{
    if (st->time_mode == SG_TIME_PROCESSING)
        return;
    if (!st->has_watermark) {
        st->has_watermark = true;
        st->max_event_time = t;
        st->watermark = t - st->lateness_ms;
    } else if (t > st->max_event_time) {
        st->max_event_time = t;
        if (t - st->lateness_ms > st->watermark)
            st->watermark = t - st->lateness_ms;
    }
    st->last_event_wall = now_ms;
}

bool sg_window__all_late(const struct sg_streams *st, int64_t t, int64_t *end)
{
    if (st->type == SG_WINDOW_SESSION)
        *end = t + st->gap_ms;
    else /* the latest window holding t; tumbling windows have slide == size */
        *end = sg_window__floor_div(t, st->slide_ms) * st->slide_ms + st->size_ms;
    return st->has_watermark && *end <= st->watermark;
}

/* Why a late event's time may be in the wrong unit, or NULL. Epoch seconds read as
 * milliseconds land in January 1970, and so do milliseconds read as microseconds; microseconds
 * read as milliseconds lie tens of thousands of years ahead and drag the watermark there, after
 * which every correct event is late. */
static const char *sg_window__unit_hint(const struct sg_streams *st, const struct sg_event *ev)
{
    if (ev->ts_from_event && ev->ts_ms < SG_WINDOW_RECENT_MS &&
        st->watermark >= SG_WINDOW_RECENT_MS)
        return "the event time is before 2001 while the watermark is recent: is event.time_unit "
               "right?";
    if (st->watermark > st->now_ms && st->watermark - st->now_ms > SG_WINDOW_FAR_AHEAD_MS)
        return "the watermark is more than a year ahead of the clock, pushed there by an event "
               "time: is event.time_unit right?";
    return NULL;
}

void sg_window__late(struct sg_streams *st, const struct sg_event *ev, int64_t window_end)
{
    struct sg_log_field fields[7];
    size_t n = 0;
    int64_t suppressed;
    const char *hint;

    sg_counter_inc(st->late_events);
    if (st->cbs.late)
        st->cbs.late(st->cbs.arg, ev, window_end);

    if (!st->log || SG_LOG_WARN < st->log->level)
        return;
    suppressed = sg_log_limiter_take(&st->late_limiter, st->now_ms);
    if (suppressed < 0)
        return;
    fields[n++] = (struct sg_log_field)SG_F_STRN("key", ev->key, ev->key_len);
    fields[n++] = (struct sg_log_field)SG_F_INT("event_time", ev->ts_ms);
    fields[n++] = (struct sg_log_field)SG_F_INT("window_end", window_end);
    fields[n++] = (struct sg_log_field)SG_F_INT("watermark", st->watermark);
    if (suppressed > 0)
        fields[n++] = (struct sg_log_field)SG_F_INT("suppressed", suppressed);
    if ((hint = sg_window__unit_hint(st, ev)) != NULL)
        fields[n++] = (struct sg_log_field)SG_F_STR("hint", hint);
    fields[n].key = NULL;
    sg_log_emit(st->log, SG_LOG_WARN, "late event", fields);
}

/* ---- the deadline heap ------------------------------------------------------------- */

/* Fire order: by end, then key, then start, so output is deterministic. The end and the key's
 * first bytes sit in the heap's own slots, so ordering the heap reads no window and no key
 * unless two keys share those bytes: with hundreds of thousands of windows sharing an end,
 * comparing keys in place cost a cache miss or three per level. The prefix is zero-padded,
 * which orders a key before the longer keys it begins, as the full comparison does. */
static bool sg_window__before(const struct sg_heap_slot *a, const struct sg_heap_slot *b)
{
    if (a->end != b->end)
        return a->end < b->end;
    int p = memcmp(a->prefix, b->prefix, sizeof(a->prefix));
    if (p != 0)
        return p < 0;
    const struct sg_stream *sa = a->w->stream, *sb = b->w->stream;
    if (sa != sb) {
        size_t n = sa->key_len < sb->key_len ? sa->key_len : sb->key_len;
        int c = memcmp(sa->key, sb->key, n);
        if (c != 0)
            return c < 0;
        if (sa->key_len != sb->key_len)
            return sa->key_len < sb->key_len;
    }
    return a->w->start < b->w->start;
}

static void sg_window__heap_set(struct sg_streams *st, uint32_t i, struct sg_heap_slot slot)
{
    st->heap[i] = slot;
    slot.w->heap_idx = i;
}

static void sg_window__sift_up(struct sg_streams *st, uint32_t i)
{
    struct sg_heap_slot slot = st->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!sg_window__before(&slot, &st->heap[parent]))
            break;
        sg_window__heap_set(st, i, st->heap[parent]);
        i = parent;
    }
    sg_window__heap_set(st, i, slot);
}

static void sg_window__sift_down(struct sg_streams *st, uint32_t i)
{
    struct sg_heap_slot slot = st->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= st->heap_len)
            break;
        if (c + 1 < st->heap_len && sg_window__before(&st->heap[c + 1], &st->heap[c]))
            c++;
        if (!sg_window__before(&st->heap[c], &slot))
            break;
        sg_window__heap_set(st, i, st->heap[c]);
        i = c;
    }
    sg_window__heap_set(st, i, slot);
}

static int sg_window__heap_push(struct sg_streams *st, struct sg_window *w)
{
    if (st->heap_len == st->heap_cap) {
        uint32_t cap = st->heap_cap ? st->heap_cap * 2 : 64;
        if (cap <= st->heap_cap)
            return -ENOMEM;
        struct sg_heap_slot *heap = realloc(st->heap, (size_t)cap * sizeof(*heap));
        if (!heap)
            return -ENOMEM;
        st->mem_bytes += (size_t)(cap - st->heap_cap) * sizeof(*heap);
        st->heap = heap;
        st->heap_cap = cap;
    }
    const struct sg_stream *s = w->stream;
    struct sg_heap_slot *slot = &st->heap[st->heap_len];
    slot->end = w->end;
    slot->w = w;
    memset(slot->prefix, 0, sizeof(slot->prefix));
    memcpy(slot->prefix, s->key, SG_MIN(sizeof(slot->prefix), (size_t)s->key_len));
    w->heap_idx = st->heap_len++;
    sg_window__sift_up(st, w->heap_idx);
    return 0;
}

/* The window's end moved later (a session grew): its slot goes down to its new place. */
static void sg_window__heap_later(struct sg_streams *st, struct sg_window *w)
{
    st->heap[w->heap_idx].end = w->end;
    sg_window__sift_down(st, w->heap_idx);
}

static void sg_window__heap_remove(struct sg_streams *st, struct sg_window *w)
{
    uint32_t i = w->heap_idx;
    struct sg_heap_slot last = st->heap[--st->heap_len];
    w->heap_idx = SG_STREAMS_NO_INDEX;
    if (last.w == w)
        return;
    sg_window__heap_set(st, i, last);
    /* The moved entry may belong above or below its new place. */
    sg_window__sift_up(st, i);
    sg_window__sift_down(st, last.w->heap_idx);
}

/* ---- allocation -------------------------------------------------------------------- */

static size_t sg_window__size(const struct sg_streams *st, unsigned cap)
{
    return st->field_off + (size_t)cap * st->field_stride;
}

/* What a window costs the heap, as charged. */
static size_t sg_window__bytes(const struct sg_streams *st, unsigned cap)
{
    return sg_heap_bytes(sg_window__size(st, cap));
}

/* Ends a field's aggregate: its sketch, if it has one, is freed and taken off the engine's
 * bytes. */
static void sg_window__field_free(struct sg_streams *st, struct sg_wfield *f)
{
    if (f->agg.sketch) {
        size_t bytes = sg_ddsketch_memory(f->agg.sketch);
        st->mem_bytes -= bytes;
        st->win_bytes -= bytes;
    }
    sg_agg_free(&f->agg);
}

int sg_window__sketch_fill(struct sg_ddsketch *sk, const struct sg_agg *a)
{
    int rc = a->count >= 1 ? sg_ddsketch_add(sk, a->min) : 0;
    if (rc == 0 && a->count == 2)
        rc = sg_ddsketch_add(sk, a->max);
    return rc;
}

struct sg_ddsketch *sg_window__sketch(struct sg_streams *st, struct sg_wfield *f)
{
    if (st->nquantiles == 0 || f->sketch_lost)
        return NULL;
    if (f->agg.sketch)
        return f->agg.sketch;
    struct sg_ddsketch *sk =
        sg_ddsketch_create(SG_DDSKETCH_DEFAULT_ALPHA, SG_DDSKETCH_DEFAULT_MAX_BINS);
    if (sk && sg_window__sketch_fill(sk, &f->agg) != 0) {
        sg_ddsketch_destroy(sk);
        sk = NULL;
    }
    if (!sk) {
        f->sketch_lost = true;
        sg_streams__oom(st, "quantile sketch");
        return NULL;
    }
    st->mem_bytes += sg_ddsketch_memory(sk);
    st->win_bytes += sg_ddsketch_memory(sk);
    f->agg.sketch = sk;
    return sk;
}

/* Bytes of a window's distinct registers (allocated apart from it). */
static size_t sg_window__hll_bytes(const struct sg_streams *st)
{
    return st->distinct ? sg_heap_bytes((size_t)1 << st->distinct_precision) : 0;
}

/* Opens a window [start, end) for `s` with room for `cap` fields and links it in at `link`
 * (the stream's list is kept ordered by start). Returns NULL when out of memory. */
static struct sg_window *sg_window__open(struct sg_streams *st, struct sg_stream *s,
                                         struct sg_window **link, int64_t start, int64_t end,
                                         unsigned cap)
{
    if (cap < 1)
        cap = 1;
    struct sg_window *w = st->free_windows;
    if (w) {
        st->free_windows = w->next;
        st->nfree--;
        if (w->cap < cap) {
            size_t old = sg_window__bytes(st, w->cap);
            struct sg_window *nw = realloc(w, sg_window__size(st, cap));
            if (!nw) {
                if (st->distinct)
                    sg_hll_free(sg_window__hll(w));
                free(w);
                st->mem_bytes -= old + sg_window__hll_bytes(st);
                return NULL;
            }
            st->mem_bytes += sg_window__bytes(st, cap) - old;
            w = nw;
            w->cap = (uint8_t)cap;
        }
        if (st->distinct) /* a reused window keeps its registers; they start empty again */
            memset(sg_window__hll(w)->registers, 0, (size_t)1 << st->distinct_precision);
    } else {
        w = malloc(sg_window__size(st, cap));
        if (!w)
            return NULL;
        w->cap = (uint8_t)cap;
        if (st->distinct && sg_hll_init(sg_window__hll(w), st->distinct_precision) != 0) {
            free(w);
            return NULL;
        }
        st->mem_bytes += sg_window__bytes(st, cap) + sg_window__hll_bytes(st);
    }
    st->win_bytes += sg_window__bytes(st, w->cap) + sg_window__hll_bytes(st);
    w->stream = s;
    w->start = start;
    w->end = end;
    w->count = 0;
    if (st->origin_off)
        *sg_window__origin(st, w) = st->origin;
    w->nfields = 0;
    w->dirty_idx = SG_STREAMS_NO_INDEX;
    if (sg_window__heap_push(st, w) != 0) {
        st->win_bytes -= sg_window__bytes(st, w->cap) + sg_window__hll_bytes(st);
        w->next = st->free_windows;
        st->free_windows = w;
        st->nfree++;
        return NULL;
    }
    w->next = *link;
    *link = w;
    if (!w->next)
        s->u.last = w;
    st->windows_open++;
    return w;
}

/* Returns a window that is off the heap, the dirty list and its stream's list. */
static void sg_window__release(struct sg_streams *st, struct sg_window *w)
{
    size_t held = st->win_bytes;
    for (unsigned i = 0; i < w->nfields; i++)
        sg_window__field_free(st, sg_window__field_at(st, w, i));
    w->nfields = 0;
    st->windows_open--;
    st->win_bytes -= sg_window__bytes(st, w->cap) + sg_window__hll_bytes(st);
    held -= st->win_bytes;
    st->ended_win_bytes = st->ended_win_bytes > 0
                              ? st->ended_win_bytes + ((double)held - st->ended_win_bytes) / 256.0
                              : (double)held;
    if (st->nfree < st->free_max) {
        w->next = st->free_windows;
        st->free_windows = w;
        st->nfree++;
        return;
    }
    if (st->distinct)
        sg_hll_free(sg_window__hll(w));
    st->mem_bytes -= sg_window__bytes(st, w->cap) + sg_window__hll_bytes(st);
    free(w);
}

/* Makes room for at least `need` fields in *link's window; it may move, and every pointer to
 * it is updated: *link, its stream's list (link may be a copy of the pointer), the heap and the
 * dirty list. Returns the window, or NULL (the window unchanged) when out of memory. */
static struct sg_window *sg_window__grow(struct sg_streams *st, struct sg_window **link,
                                         unsigned need)
{
    struct sg_window *w = *link;
    struct sg_stream *s = w->stream;
    unsigned cap = w->cap * 2u;
    if (cap < need)
        cap = need;
    if (cap > st->max_fields)
        cap = st->max_fields;
    if (cap <= w->cap)
        return NULL;
    size_t old = sg_window__bytes(st, w->cap);
    struct sg_window **in_list = &s->u.windows;
    while (*in_list != w)
        in_list = &(*in_list)->next;
    bool last = s->u.last == w;
    struct sg_window *nw = realloc(w, sg_window__size(st, cap));
    if (!nw)
        return NULL;
    *in_list = nw;
    if (last)
        s->u.last = nw;
    st->mem_bytes += sg_window__bytes(st, cap) - old;
    st->win_bytes += sg_window__bytes(st, cap) - old;
    nw->cap = (uint8_t)cap;
    *link = nw;
    st->heap[nw->heap_idx].w = nw;
    if (nw->dirty_idx != SG_STREAMS_NO_INDEX)
        st->dirty[nw->dirty_idx] = nw;
    return nw;
}

static void sg_window__mark_dirty(struct sg_streams *st, struct sg_window *w)
{
    if (st->emit_interval_ms <= 0 || w->dirty_idx != SG_STREAMS_NO_INDEX)
        return;
    if (st->ndirty == st->dirty_cap) {
        uint32_t cap = st->dirty_cap ? st->dirty_cap * 2 : 64;
        struct sg_window **d = cap > st->dirty_cap ? realloc(st->dirty, cap * sizeof(*d)) : NULL;
        if (!d) { /* this window's next update waits for a later change or its final result */
            sg_streams__oom(st, "dirty list");
            return;
        }
        st->mem_bytes += (size_t)(cap - st->dirty_cap) * sizeof(*d);
        st->dirty = d;
        st->dirty_cap = cap;
    }
    st->dirty[st->ndirty] = w;
    w->dirty_idx = st->ndirty++;
}

/* The new aggregate of field slot i, first seen in the window; its sketch comes later (see
 * SG_WFIELD_SKETCH_AFTER). */
static struct sg_wfield *sg_window__field_init(struct sg_streams *st, struct sg_window *w,
                                               unsigned i, uint32_t id)
{
    struct sg_wfield *f = sg_window__field_at(st, w, i);
    f->id = id;
    f->sketch_lost = false;
    sg_agg_init(&f->agg, NULL);
    return f;
}

/* The field `id` of *link's window, added when new and room is left (the window may move).
 * `hint` is where the field usually sits: events tend to list fields in the same order. */
static struct sg_wfield *sg_window__field(struct sg_streams *st, struct sg_window **link,
                                          uint32_t id, size_t hint)
{
    struct sg_window *w = *link;
    struct sg_wfield *f;
    if (hint < w->nfields && (f = sg_window__field_at(st, w, hint))->id == id)
        return f;
    for (unsigned i = 0; i < w->nfields; i++)
        if ((f = sg_window__field_at(st, w, i))->id == id)
            return f;
    if (w->nfields >= st->max_fields)
        return NULL;
    if (w->nfields == w->cap) {
        w = sg_window__grow(st, link, w->nfields + 1u);
        if (!w) {
            sg_streams__oom(st, "window fields");
            return NULL;
        }
    }
    return sg_window__field_init(st, w, w->nfields++, id);
}

static void sg_window__fold(struct sg_streams *st, struct sg_window **link,
                            const struct sg_event *ev, int64_t t, const uint32_t *ids,
                            const uint64_t *distinct_hash)
{
    for (size_t i = 0; i < ev->nfields; i++) {
        if (ids[i] == UINT32_MAX)
            continue;
        struct sg_wfield *f = sg_window__field(st, link, ids[i], i);
        if (!f)
            continue;
        /* The value past SG_WFIELD_SKETCH_AFTER needs the sketch (a value sg_agg ignores,
         * NaN or infinite, makes it a little early, which is harmless). */
        if (!f->agg.sketch && f->agg.count >= SG_WFIELD_SKETCH_AFTER)
            (void)sg_window__sketch(st, f);
        size_t before = st->mem_bytes;
        sg_agg_add_counted(&f->agg, ev->fields[i].value, t, &st->mem_bytes);
        st->win_bytes += st->mem_bytes - before; /* the sketch's growth, or none */
    }
    struct sg_window *w = *link;
    w->count++;
    if (distinct_hash)
        sg_hll_add_hash(sg_window__hll(w), *distinct_hash);
    sg_window__mark_dirty(st, w);
}

/* Fields a new window needs room for: those of its first event. */
static unsigned sg_window__first_cap(const struct sg_streams *st, const struct sg_event *ev,
                                     const uint32_t *ids)
{
    unsigned n = 0;
    for (size_t i = 0; i < ev->nfields; i++)
        n += ids[i] != UINT32_MAX;
    return n < st->max_fields ? n : st->max_fields;
}

/* ---- assignment -------------------------------------------------------------------- */

/* Tumbling (slide == size) and hopping: every window [s, s + size) with s a multiple of slide
 * and s <= t < s + size, walked in start order alongside the stream's list. */
static int sg_window__add_fixed(struct sg_streams *st, struct sg_stream *s,
                                const struct sg_event *ev, int64_t t, const uint32_t *ids,
                                const uint64_t *distinct_hash)
{
    /* Tumbling windows: an event almost always falls in a window its key has open, which is
     * the whole answer, without the divisions below (tens of cycles each). The window must not
     * be due: one waiting to fire (pacing) takes no more events, and the path below finds the
     * event late as if it had fired. */
    if (st->slide_ms == st->size_ms && !s->is_idle) {
        struct sg_window *last = s->u.last;
        if (last && t >= last->start) {
            /* The last window is the only one that can hold t. */
            if (t < last->end && last->end > st->watermark) {
                sg_window__fold(st, &last, ev, t, ids, distinct_hash);
                return 0;
            }
        } else {
            for (struct sg_window **link = &s->u.windows; *link; link = &(*link)->next) {
                if (t < (*link)->start)
                    break; /* the list is by start */
                if (t < (*link)->end) {
                    if ((*link)->end <= st->watermark)
                        break;
                    sg_window__fold(st, link, ev, t, ids, distinct_hash);
                    return 0;
                }
            }
        }
    }
    int64_t hi = sg_window__floor_div(t, st->slide_ms) * st->slide_ms;
    int64_t lo = sg_window__floor_div(t - st->size_ms, st->slide_ms) * st->slide_ms + st->slide_ms;
    int64_t missed = INT64_MIN;
    bool folded = false, failed = false;

    if (st->has_watermark && hi + st->size_ms <= st->watermark) {
        /* Even the latest window holding t has fired: the stream stays as it is. */
        sg_window__late(st, ev, hi + st->size_ms);
        return 0;
    }
    if (s->is_idle)
        sg_streams__make_active(st, s);
    struct sg_window **link = &s->u.windows;
    for (int64_t start = lo; start <= hi; start += st->slide_ms) {
        int64_t end = start + st->size_ms;
        if (st->has_watermark && end <= st->watermark) {
            missed = end; /* ascending: the last one is the latest */
            continue;
        }
        while (*link && (*link)->start < start)
            link = &(*link)->next;
        if ((!*link || (*link)->start != start) &&
            !sg_window__open(st, s, link, start, end, sg_window__first_cap(st, ev, ids))) {
            sg_streams__oom(st, "window");
            failed = true;
            continue;
        }
        sg_window__fold(st, link, ev, t, ids, distinct_hash);
        folded = true;
    }
    if (!s->u.windows) /* nothing could be opened */
        sg_streams__make_idle(st, s);
    if (missed != INT64_MIN)
        sg_window__late(st, ev, missed);
    return failed && !folded ? -ENOMEM : 0;
}

/* Removes the window after *link (`b`) from the stream and folds it into *link's window. */
static void sg_window__absorb_next(struct sg_streams *st, struct sg_window **link)
{
    struct sg_window *b = (*link)->next;

    (*link)->next = b->next;
    if (b->stream->u.last == b)
        b->stream->u.last = *link;
    sg_window__heap_remove(st, b);
    if (b->dirty_idx != SG_STREAMS_NO_INDEX)
        st->dirty[b->dirty_idx] = NULL;

    for (unsigned i = 0; i < b->nfields; i++) {
        struct sg_wfield *bf = sg_window__field_at(st, b, i);
        struct sg_wfield *f = sg_window__field(st, link, bf->id, i);
        if (!f)
            continue;
        struct sg_agg *dst = &f->agg, *src = &bf->agg;
        /* Together past what min and max can stand for: both need their sketches. A side
         * whose sketch was lost leaves the merged field without quantiles. */
        f->sketch_lost |= bf->sketch_lost;
        if (!f->sketch_lost && st->nquantiles > 0 &&
            (dst->sketch || src->sketch || dst->count + src->count > SG_WFIELD_SKETCH_AFTER)) {
            sg_window__sketch(st, f);
            sg_window__sketch(st, bf);
            f->sketch_lost |= bf->sketch_lost;
        }
        if (f->sketch_lost && dst->sketch) {
            st->mem_bytes -= sg_ddsketch_memory(dst->sketch);
            st->win_bytes -= sg_ddsketch_memory(dst->sketch);
            sg_ddsketch_destroy(dst->sketch);
            dst->sketch = NULL;
        }
        /* Sketches merge only when both exist; src's stays in its window, freed with it. */
        struct sg_ddsketch *other = src->sketch;
        if (!dst->sketch)
            src->sketch = NULL;
        /* The merged sketch may need wider bucket arrays: counted as the engine's. */
        size_t before = dst->sketch ? sg_ddsketch_memory(dst->sketch) : 0;
        int merged = sg_agg_merge(dst, src);
        if (dst->sketch) {
            st->mem_bytes += sg_ddsketch_memory(dst->sketch) - before;
            st->win_bytes += sg_ddsketch_memory(dst->sketch) - before;
        }
        if (merged != 0) {
            /* The sketch could not grow: merge the rest without it. */
            struct sg_ddsketch *keep = dst->sketch;
            dst->sketch = src->sketch = NULL;
            sg_agg_merge(dst, src);
            dst->sketch = keep;
            sg_streams__oom(st, "quantile sketch merge");
        }
        src->sketch = other;
    }
    struct sg_window *a = *link;
    a->count += b->count;
    if (st->distinct)
        sg_hll_merge(sg_window__hll(a), sg_window__hll(b));
    if (st->origin_off) {
        struct sg_streams_origin *ao = sg_window__origin(st, a), *bo = sg_window__origin(st, b);
        if (bo->offset >= 0 && (ao->offset < 0 || bo->offset < ao->offset))
            *ao = *bo;
    }
    if (b->start < a->start)
        a->start = b->start;
    if (b->end > a->end)
        a->end = b->end;
    sg_window__release(st, b);
}

/* Sessions: [first event, last event + gap). An event joins every session its own [t, t + gap)
 * overlaps (at most two, since sessions are disjoint and at least gap long), merging them.
 * Sessions that are due (waiting to fire) are passed over as if they had fired: the stream's
 * list is by end, the due ones first, and a new session may then start before one of them. */
static int sg_window__add_session(struct sg_streams *st, struct sg_stream *s,
                                  const struct sg_event *ev, int64_t t, const uint32_t *ids,
                                  const uint64_t *distinct_hash)
{
    int64_t end = t + st->gap_ms;
    struct sg_window **link = NULL;

    if (!s->is_idle) {
        /* A session ending at or before t is out of reach, and so is a due one. */
        int64_t past = t > st->watermark ? t : st->watermark;
        link = &s->u.windows;
        while (*link && (*link)->end <= past)
            link = &(*link)->next;
    }
    if (!link || !*link || (*link)->start >= end) {
        /* No session within gap of t: a new one, unless it would have fired already. */
        if (st->has_watermark && end <= st->watermark) {
            sg_window__late(st, ev, end);
            return 0;
        }
        if (s->is_idle) {
            sg_streams__make_active(st, s);
            link = &s->u.windows;
        }
        if (!sg_window__open(st, s, link, t, end, sg_window__first_cap(st, ev, ids))) {
            sg_streams__oom(st, "window");
            if (!s->u.windows)
                sg_streams__make_idle(st, s);
            return -ENOMEM;
        }
    } else {
        int64_t old_end = (*link)->end;
        if ((*link)->next && (*link)->next->start < end) /* the event bridges two sessions */
            sg_window__absorb_next(st, link);
        struct sg_window *a = *link;
        if (t < a->start)
            a->start = t;
        if (end > a->end)
            a->end = end;
        if (a->end != old_end)
            sg_window__heap_later(st, a); /* the deadline only moves later */
    }
    sg_window__fold(st, link, ev, t, ids, distinct_hash);
    return 0;
}

int sg_window__add(struct sg_streams *st, struct sg_stream *s, const struct sg_event *ev, int64_t t,
                   const uint32_t *ids, const uint64_t *distinct_hash)
{
    if (st->type == SG_WINDOW_SESSION)
        return sg_window__add_session(st, s, ev, t, ids, distinct_hash);
    return sg_window__add_fixed(st, s, ev, t, ids, distinct_hash);
}

size_t sg_window__drop_stream(struct sg_streams *st, struct sg_stream *s)
{
    size_t n = 0;
    if (s->is_idle)
        return 0;
    while (s->u.windows) {
        struct sg_window *w = s->u.windows;
        s->u.windows = w->next;
        sg_window__heap_remove(st, w);
        if (w->dirty_idx != SG_STREAMS_NO_INDEX)
            st->dirty[w->dirty_idx] = NULL;
        sg_window__release(st, w);
        n++;
    }
    s->u.last = NULL;
    return n;
}

/* ---- firing ------------------------------------------------------------------------ */

/* Emits a window (already off the heap) as final and frees it. */
static void sg_window__fire(struct sg_streams *st, struct sg_window *w)
{
    struct sg_stream *s = w->stream;

    sg_result__emit(st, w, true);
    sg_counter_inc(st->windows_fired);
    if (w->dirty_idx != SG_STREAMS_NO_INDEX)
        st->dirty[w->dirty_idx] = NULL;
    struct sg_window **link = &s->u.windows;
    while (*link != w)
        link = &(*link)->next;
    *link = w->next;
    if (s->u.last == w)
        s->u.last = link == &s->u.windows ? NULL : sg_container_of(link, struct sg_window, next);
    sg_window__release(st, w);
    if (!s->u.windows)
        sg_streams__make_idle(st, s);
}

/* Takes the top window off the heap. The hole left at the top goes down to a leaf along the
 * smaller children and the last entry fills it from there (Floyd): about half the comparisons
 * of a plain sift-down, which matters because ties (many keys' windows share an end) compare
 * keys. */
static struct sg_window *sg_window__pop(struct sg_streams *st)
{
    struct sg_window *top = st->heap[0].w;
    struct sg_heap_slot last = st->heap[--st->heap_len];
    top->heap_idx = SG_STREAMS_NO_INDEX;
    if (last.w == top)
        return top;
    uint32_t hole = 0;
    for (;;) {
        uint32_t c = 2 * hole + 1;
        if (c >= st->heap_len)
            break;
        if (c + 1 < st->heap_len && sg_window__before(&st->heap[c + 1], &st->heap[c]))
            c++;
        sg_window__heap_set(st, hole, st->heap[c]);
        hole = c;
    }
    sg_window__heap_set(st, hole, last);
    sg_window__sift_up(st, hole);
    return top;
}

/* ---- pacing ------------------------------------------------------------------------ */

/* True when a result may go to the writers now: always without pacing, and with it while
 * their queues hold less than their share of the budget. */
static bool sg_window__may_emit(const struct sg_streams *st)
{
    return !st->paced || sg_budget_used_by(st->budget, SG_BUDGET_QUEUES) < st->results_limit;
}

static struct sg_streams_due_mark *sg_window__due_mark(struct sg_streams *st, uint32_t i)
{
    return &st->due_marks[(st->due_first + i) % SG_STREAMS_DUE_MARKS];
}

void sg_window__mark_due(struct sg_streams *st)
{
    if (st->due_count > 0) {
        struct sg_streams_due_mark *last = sg_window__due_mark(st, st->due_count - 1);
        if (st->watermark <= last->watermark)
            return;
        /* Close to the last mark, or no room: the last mark stands for this watermark too,
         * which dates the newest waiting windows a little early, never the oldest. */
        if (st->now_ms - last->wall_ms < SG_STREAMS_DUE_MARK_MS ||
            st->due_count == SG_STREAMS_DUE_MARKS) {
            last->watermark = st->watermark;
            return;
        }
    }
    *sg_window__due_mark(st, st->due_count++) =
        (struct sg_streams_due_mark){.watermark = st->watermark, .wall_ms = st->now_ms};
}

/* Firing stopped with the heap's top due. */
static void sg_window__hold(struct sg_streams *st)
{
    if (!st->held) {
        st->held = true;
        sg_counter_inc(st->firing_stalls);
    }
    sg_window__mark_due(st);
}

/* Nothing due waits any more. */
static void sg_window__unhold(struct sg_streams *st)
{
    st->held = false;
    st->due_count = 0;
    sg_gauge_set(st->windows_waiting, 0);
    sg_gauge_set(st->waiting_age, 0);
}

/* Due windows in the heap: a walk from the top, in pre-order, that descends only into due
 * entries (an entry ends no later than its children), without a stack. */
static size_t sg_window__count_due(const struct sg_streams *st)
{
    size_t n = 0, i = 0;
    for (;;) {
        if (i < st->heap_len && st->heap[i].end <= st->watermark) {
            n++;
            i = 2 * i + 1; /* its left child, which may not exist */
            continue;
        }
        /* Past a subtree: up while this is a right child, then over to the right sibling. */
        while (i > 0 && i % 2 == 0)
            i = (i - 1) / 2;
        if (i == 0)
            return n;
        i++;
    }
}

void sg_window__update_waiting(struct sg_streams *st, bool count_now)
{
    if (!st->held)
        return;
    /* The oldest waiting window is the top; the first mark past its end dates it. */
    int64_t top_end = st->heap_len > 0 ? st->heap[0].end : INT64_MAX;
    while (st->due_count > 1 && sg_window__due_mark(st, 0)->watermark < top_end) {
        st->due_first = (st->due_first + 1) % SG_STREAMS_DUE_MARKS;
        st->due_count--;
    }
    double age = 0.0;
    if (st->due_count > 0 && sg_window__due_mark(st, 0)->wall_ms < st->now_ms)
        age = (double)(st->now_ms - sg_window__due_mark(st, 0)->wall_ms) / 1000.0;
    sg_gauge_set(st->waiting_age, age);
    if (count_now || st->now_ms - st->waiting_counted_ms >= SG_STREAMS_WAITING_COUNT_MS) {
        st->waiting_counted_ms = st->now_ms;
        sg_gauge_set(st->windows_waiting, (double)sg_window__count_due(st));
    }
}

bool sg_window__fire_some(struct sg_streams *st)
{
    while (st->heap_len > 0 && st->heap[0].end <= st->watermark) {
        if (!sg_window__may_emit(st)) {
            sg_window__hold(st);
            return true;
        }
        sg_window__fire(st, sg_window__pop(st));
    }
    if (st->held)
        sg_window__unhold(st);
    return false;
}

void sg_window__fire_all(struct sg_streams *st)
{
    while (st->heap_len > 0)
        sg_window__fire(st, sg_window__pop(st));
    st->ndirty = 0;
    if (st->held)
        sg_window__unhold(st);
}

void sg_window__emit_dirty(struct sg_streams *st)
{
    /* Due windows fired (or wait, with no room for this either) before this is called: every
     * window here is open. */
    uint32_t i = 0, kept = 0;
    for (; i < st->ndirty; i++) {
        struct sg_window *w = st->dirty[i];
        if (!w)
            continue;
        if (!sg_window__may_emit(st))
            break;
        w->dirty_idx = SG_STREAMS_NO_INDEX;
        sg_result__emit(st, w, false);
        sg_counter_inc(st->window_updates);
    }
    /* What the writers had no room for waits for the next interval, in the same order. */
    for (; i < st->ndirty; i++) {
        struct sg_window *w = st->dirty[i];
        if (!w)
            continue;
        w->dirty_idx = kept;
        st->dirty[kept++] = w;
    }
    st->ndirty = kept;
}

int64_t sg_window__next_due(const struct sg_streams *st)
{
    if (st->heap_len == 0 || !st->has_watermark)
        return INT64_MAX;
    int64_t end = st->heap[0].end;
    if (end <= st->watermark)
        return 0;
    if (st->time_mode == SG_TIME_PROCESSING)
        return end - st->now_ms;
    /* Event time without new events: the watermark starts following the wall clock at
     * last_event_wall + idle_timeout, from max_event_time - lateness. */
    int64_t idle_from = st->last_event_wall + st->idle_timeout_ms;
    int64_t at = end - (st->max_event_time - st->lateness_ms) + idle_from;
    if (at < idle_from)
        at = idle_from;
    return at > st->now_ms ? at - st->now_ms : 0;
}

void sg_window__free_all(struct sg_streams *st)
{
    for (uint32_t i = 0; i < st->heap_len; i++) {
        struct sg_window *w = st->heap[i].w;
        for (unsigned j = 0; j < w->nfields; j++)
            sg_window__field_free(st, sg_window__field_at(st, w, j));
        if (st->distinct)
            sg_hll_free(sg_window__hll(w));
        free(w);
    }
    st->heap_len = 0;
    while (st->free_windows) {
        struct sg_window *w = st->free_windows;
        st->free_windows = w->next;
        if (st->distinct)
            sg_hll_free(sg_window__hll(w));
        free(w);
    }
    st->nfree = 0;
    free(st->heap);
    free(st->dirty);
    st->heap = NULL;
    st->dirty = NULL;
    st->heap_cap = st->dirty_cap = 0;
    st->ndirty = 0;
    st->windows_open = 0;
}
