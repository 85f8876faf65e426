/* Internals shared by the files of the streams engine: streams.c (engine, key table, field
 * names, idle keys, live query), window.c (assignment, watermark, deadline heap, firing) and
 * result.c (result JSON). Nothing outside src/stream/ includes this. */
#ifndef STREAMGATE_STREAM_INTERNAL_H
#define STREAMGATE_STREAM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agg.h"
#include "streamgate/budget.h"
#include "streamgate/buf.h"
#include "streamgate/hll.h"
#include "predict.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "streamgate/streams.h"

/* Field names known to the engine; names past this are ignored (and counted). */
#define SG_STREAMS_MAX_NAMES 4096
/* Slots of the name table: a power of two, at least twice SG_STREAMS_MAX_NAMES. */
#define SG_STREAMS_NAME_SLOTS 8192
/* Longer field names are ignored (and counted): they would bloat every result. */
#define SG_STREAMS_MAX_NAME_LEN 256
/* Bytes of freed windows (distinct registers included) kept for reuse; past this they go back
 * to malloc. */
#define SG_STREAMS_FREE_BYTES (4u << 20)
/* Cap of the buffer one result is rendered into. */
#define SG_STREAMS_RESULT_MAX (4u << 20)
/* Smallest key table (slots, a power of two). */
#define SG_STREAMS_MIN_SLOTS 64
/* "Not in the heap" / "not on the dirty list". */
#define SG_STREAMS_NO_INDEX UINT32_MAX
/* Event times are clamped to +-2^61 ms so window arithmetic cannot overflow (decoded events
 * stay far inside: year 9999 is 2.5e14 ms). */
#define SG_STREAMS_MAX_TIME (INT64_C(1) << 61)
/* While due windows wait for the writers, how often the engine looks again (a timer's
 * delay): often enough to follow a draining queue, not so often that it spins. */
#define SG_STREAMS_PACE_POLL_MS 20
/* How often a partitioned engine (role aggregator) looks at its partitions' idle clocks. */
#define SG_STREAMS_PART_POLL_MS 100
/* Wall-clock marks of the watermark kept while windows wait, for the age of the oldest one;
 * marks closer together than SG_STREAMS_DUE_MARK_MS are merged. */
#define SG_STREAMS_DUE_MARKS   64
#define SG_STREAMS_DUE_MARK_MS 100
/* How often the waiting windows are counted (a walk over the due part of the heap). */
#define SG_STREAMS_WAITING_COUNT_MS 1000

/* Values a field holds before it needs a quantile sketch: up to this many, its minimum and
 * maximum are the whole multiset, and the sketch is made from them when a result or another
 * value needs it. Most windows of a key that reports every few seconds hold one or two
 * values, and then cost no sketch at all. */
#define SG_WFIELD_SKETCH_AFTER 2

/* One field's aggregate in one window. With quantiles, agg.sketch is a separate allocation
 * made at the field's third value (or when a merge needs it); until then it is NULL and the
 * quantiles are made from min and max. */
struct sg_wfield {
    uint32_t id;      /* index into sg_streams.names */
    bool sketch_lost; /* its sketch could not be allocated: the quantiles are left out */
    struct sg_agg agg;
};

/* One open window. It is one allocation: this header, then the distinct sketch when
 * window.distinct_field is set, then its origin in an aggregator (st->origin_off), then room
 * for `cap` fields of st->field_stride bytes each (st->field_off gives the offset of the
 * first). Growing it may move it; every place that points at it (the stream's list, the heap,
 * the dirty list) is fixed up by sg_window__grow. */
struct sg_window {
    struct sg_stream *stream;
    struct sg_window *next; /* the stream's list (by start), or the free list */
    int64_t start;          /* inclusive */
    int64_t end;            /* exclusive; the deadline */
    uint64_t count;         /* events folded in */
    uint32_t heap_idx;      /* position in the deadline heap */
    uint32_t dirty_idx;     /* position on the dirty list, or SG_STREAMS_NO_INDEX */
    uint8_t nfields;
    uint8_t cap; /* fields there is room for (at most SG_EVENT_MAX_FIELDS) */
};

/* One key. One allocation: this header, then the key bytes. While the key has open windows
 * `u.windows` lists them; once the last one fired it waits in the idle FIFO (`u.idle`) until
 * a new window opens or it is evicted. */
struct sg_stream {
    uint64_t hash;
    union {
        struct {
            struct sg_window *windows;
            /* The list's last window (the latest start, where a key's next event nearly
             * always goes): a key holds several windows while they wait out the allowed
             * lateness, and walking to the last one is a cache miss a window. */
            struct sg_window *last;
        };
        struct {
            struct sg_stream *prev, *next; /* next: idle for less long */
            int64_t since;
        } idle;
    } u;
    /* predict.*: one model per forecast field seen (nmodels of them, at most event.max_fields),
     * a separate allocation; NULL before the first. */
    struct sg_predict_model *models;
    int32_t partition;
    uint32_t key_len;
    bool is_idle;
    /* Made with the key_new callback, and no window with a forecast field has fired since:
     * sg_streams_restore may still set its models. */
    bool restore_pending;
    uint8_t nmodels;
    char key[];
};

/* A slot of the deadline heap: the window's end and the first bytes of its key (zero-padded),
 * kept beside the pointer so that ordering the heap reads no window. */
struct sg_heap_slot {
    int64_t end;
    struct sg_window *w;
    unsigned char prefix[16];
};

/* Most partitions an aggregator can be assigned (ids 0 .. this - 1). */
#define SG_STREAMS_MAX_PARTITIONS 65536

/* A Kafka partition the engine owns (role aggregator): its own time. */
struct sg_streams_part {
    bool assigned;
    bool known;        /* has a watermark: a record, or the previous owner's time */
    int64_t watermark; /* windows of its keys ending at or before it are late */
    int64_t max_event_time;
    int64_t last_wall; /* wall clock of its last record, or of its assignment */
};

/* "At wall clock `wall_ms` the watermark had reached `watermark`": every window whose end is at
 * or before it was due by then. */
struct sg_streams_due_mark {
    int64_t watermark;
    int64_t wall_ms;
};

struct sg_streams {
    /* Settings, copied from the configuration. */
    int type; /* enum sg_window_type */
    int time_mode;
    int64_t size_ms, slide_ms, gap_ms;
    int64_t lateness_ms, idle_timeout_ms, emit_interval_ms;
    int64_t max_keys, key_idle_timeout_ms;
    int32_t partitions;
    uint8_t max_fields;
    bool distinct;
    uint8_t distinct_precision;

    struct sg_log *log;
    struct sg_log_limiter oom_limiter;
    struct sg_log_limiter late_limiter;      /* log.bad_input_interval */
    struct sg_log_limiter key_limit_limiter; /* log.bad_input_interval */
    struct sg_streams_callbacks cbs;

    /* The memory budget, or NULL. mem_bytes is charged to it as SG_BUDGET_STREAMS whenever it
     * changed (budget_held is what was charged last). New keys are refused while mem_bytes,
     * plus room for one more window per key, is at streams_limit or more (SIZE_MAX without a
     * budget: never); with `paced`, due windows wait
     * while the writers' queues hold results_limit or more. */
    struct sg_budget *budget;
    size_t budget_held;
    size_t streams_limit, results_limit;
    bool paced;

    /* Key table: open addressing, linear probing, backward-shift deletion. */
    struct sg_stream **slots;
    uint16_t *tags; /* per slot, the top bits of its stream's hash (same allocation as slots) */
    size_t mask;    /* slots - 1 */
    size_t nkeys;
    uint64_t seed;

    /* Streams without windows, oldest first. */
    struct sg_stream *idle_head, *idle_tail;

    /* Field names: id -> name (NUL-terminated copies) and length, and a hash table of ids + 1
     * (0: empty). */
    char **names;
    uint32_t *name_hashes;
    uint16_t *name_lens;
    uint16_t *name_slots;
    uint32_t nnames;
    /* The id each field position had in the last event: events of one source repeat their
     * names in the same order, so most lookups are one compare with no hashing. */
    uint32_t last_ids[SG_EVENT_MAX_FIELDS];

    /* predict.*: on or off, the model's settings, and per field name id whether it is forecast
     * (set when the name is interned). */
    bool predict;
    struct sg_predict_conf predict_conf;
    uint8_t *name_predicted;
    char **predict_fields; /* predict.fields, copied; none: every field */
    size_t npredict_fields;

    /* Quantiles reported per field. */
    double *quantiles;
    char **quantile_names; /* "p50", as configured */
    size_t nquantiles;

    /* Offsets inside a window allocation: of the origin (role aggregator; 0: not kept), of
     * the first field, and from one field to the next (the field, then its sketch when
     * quantiles are computed). */
    size_t origin_off, field_off, field_stride;

    /* Deadline heap: open windows, smallest (end, key, start) on top. */
    struct sg_heap_slot *heap;
    uint32_t heap_len, heap_cap;
    /* Windows changed since their last emission (entries of fired windows are NULL). */
    struct sg_window **dirty;
    uint32_t ndirty, dirty_cap;
    /* Freed windows kept for reuse, linked through `next`. */
    struct sg_window *free_windows;
    size_t nfree, free_max;
    size_t windows_open;

    /* Due windows held back by pacing: from the moment firing stopped with the heap's top due
     * until nothing due is left. */
    bool held;

    /* Time. */
    int64_t now_ms;         /* the latest wall clock seen */
    bool has_watermark;     /* false until the first event (event time) or tick */
    int64_t watermark;      /* windows with end <= watermark have fired */
    int64_t max_event_time; /* event time */
    /* Wall clock of the last event (event time), or of the last look at the time while ingest
     * was held back by pushback: the idle clock of window.idle_timeout starts from it. */
    int64_t last_event_wall;
    bool held_back; /* ingest was held back at the last look (sg_window__advance) */
    bool emit_armed;
    int64_t next_emit_ms;

    /* Partitions owned through Kafka (role aggregator): on once one is assigned. The engine's
     * watermark is then the minimum of the assigned partitions' (recomputed, so it may go back
     * when a partition is assigned), and has_watermark is false while a partition without a
     * time holds firing back. `origin` is the record being added, for the windows it opens. */
    bool partitioned;
    struct sg_streams_part *parts;
    uint32_t nparts; /* entries of parts[] */
    int64_t parts_checked_ms;
    struct sg_streams_origin origin;

    /* Rendering: the JSON, and the view of the same numbers (result.c; one allocation, fields
     * then their quantiles, made at the first result and reused). */
    struct sg_buf out;
    struct sg_result_field *view_fields;
    struct sg_result_quantile *view_quantiles;
    size_t view_cap;
    /* Sketches made for the fields of a value or two, which have none of their own, so that a
     * result shows every field's sketch: view_cap rooms of SG_RESULT_ROOM bytes, the first
     * view_rooms_used of them holding a sketch until the next result. */
    unsigned char *view_rooms;
    size_t view_rooms_used;
    uint8_t *view_models; /* per field, view_model_size bytes: its stored model */
    size_t view_model_size;

    /* Bytes requested from malloc for the engine itself, keys, windows (their distinct
     * registers and the bucket arrays their sketches allocate included, and the freed windows
     * kept for reuse), field names and tables; not counting malloc's own overhead. What the
     * budget is charged with. */
    size_t mem_bytes;
    size_t win_bytes; /* of mem_bytes, what the open windows hold (with their sketches) */
    /* What a window held when it ended (its sketches grown with every value it took), as a
     * moving average; 0 before the first one. */
    double ended_win_bytes;

    /* Metrics, or the fallback series below when no registry was given. */
    struct sg_gauge *keys_active, *windows_open_gauge, *watermark_lag;
    struct sg_gauge *windows_waiting, *waiting_age;
    struct sg_counter *windows_fired, *window_updates, *late_events, *keys_evicted, *names_dropped;
    struct sg_counter *firing_stalls, *streams_memory_hits;
    struct sg_counter *anomalies, *predict_fields_hits;
    struct sg_counter *restores_late; /* first windows fired before their models were read */
    struct sg_gauge own_gauges[5];
    struct sg_counter own_counters[10];

    /* While windows wait: marks (a ring, oldest first) that date when the watermark passed
     * their ends, and when they were last counted. Cold, so last. */
    struct sg_streams_due_mark due_marks[SG_STREAMS_DUE_MARKS];
    uint32_t due_first, due_count;
    int64_t waiting_counted_ms;
};

/* streams.c */
/* Marks a stream as having no window any more: it joins the idle FIFO's tail. */
void sg_streams__make_idle(struct sg_streams *st, struct sg_stream *s);
/* Takes a stream off the idle FIFO before it gets a window. */
void sg_streams__make_active(struct sg_streams *st, struct sg_stream *s);
/* Logs an allocation failure (rate-limited). */
void sg_streams__oom(struct sg_streams *st, const char *what);
/* The model of field `id` in stream s, made (empty) when it has none; NULL when the stream
 * holds event.max_fields models already (counted) or out of memory. */
struct sg_predict_model *sg_streams__model(struct sg_streams *st, struct sg_stream *s, uint32_t id);

/* window.c */
/* Where the distinct sketch and the field array sit in a window. */
static inline struct sg_hll *sg_window__hll(const struct sg_window *w)
{
    return (struct sg_hll *)(void *)((char *)w + sizeof(*w));
}
/* Where a window's origin is kept, or NULL outside an aggregator. */
static inline struct sg_streams_origin *sg_window__origin(const struct sg_streams *st,
                                                          const struct sg_window *w)
{
    return st->origin_off ? (struct sg_streams_origin *)(void *)((char *)w + st->origin_off) : NULL;
}
static inline struct sg_wfield *sg_window__field_at(const struct sg_streams *st,
                                                    const struct sg_window *w, size_t i)
{
    return (struct sg_wfield *)(void *)((char *)w + st->field_off + i * st->field_stride);
}
/* The field's quantile sketch, made now from the values it holds (its min and max) when it has
 * none yet; its bytes are counted in st->mem_bytes. NULL when quantiles are not computed or the
 * sketch could not be allocated (then sketch_lost is set and logged). */
struct sg_ddsketch *sg_window__sketch(struct sg_streams *st, struct sg_wfield *f);
/* Adds the values an aggregate without a sketch stands for (at most SG_WFIELD_SKETCH_AFTER:
 * its min, and its max when it holds two) to `sk`. Returns 0 or -ENOMEM. */
int sg_window__sketch_fill(struct sg_ddsketch *sk, const struct sg_agg *a);
/* Recomputes the engine's watermark from the assigned partitions' (partitioned engines). */
void sg_window__part_watermark(struct sg_streams *st);
/* Drops every window of a stream without emitting it; the stream is left with none. Returns
 * how many. */
size_t sg_window__drop_stream(struct sg_streams *st, struct sg_stream *s);
/* Moves time forward to the wall clock `now_ms`: processing time, idle advance. */
void sg_window__advance(struct sg_streams *st, int64_t now_ms);
/* Takes an event time into the watermark. */
void sg_window__observe(struct sg_streams *st, int64_t t, int64_t now_ms);
/* True when every window an event at `t` belongs to has already passed the watermark, for a
 * key with no open window; *end is the end of the latest one. */
bool sg_window__all_late(const struct sg_streams *st, int64_t t, int64_t *end);
/* Counts a late event, logs it (rate-limited) and hands it to the late callback. */
void sg_window__late(struct sg_streams *st, const struct sg_event *ev, int64_t window_end);
/* Folds an event at time `t` into the stream's windows, opening windows as needed; counts a
 * late event and hands it to the late callback. `ids` are the interned ids of ev->fields
 * (UINT32_MAX: ignored); `distinct_hash` is the hash of the distinct value, or NULL. Returns 0,
 * or -ENOMEM when no window could take the event. */
int sg_window__add(struct sg_streams *st, struct sg_stream *s, const struct sg_event *ev, int64_t t,
                   const uint32_t *ids, const uint64_t *distinct_hash);
/* sg_window__fire_due's work once the heap's top is due. */
bool sg_window__fire_some(struct sg_streams *st);
/* Fires every window whose end the watermark has reached, in heap order, as long as the
 * writers' queues leave room (pacing); returns true when due windows were left waiting. Called
 * twice per event: the common case, nothing due, is this one test, inline. (Windows left
 * waiting keep the top due, so nothing is waiting when the top is not.) */
static inline bool sg_window__fire_due(struct sg_streams *st)
{
    if (st->heap_len == 0 || st->heap[0].end > st->watermark || !st->has_watermark)
        return false;
    return sg_window__fire_some(st);
}
/* Notes the watermark's wall-clock time while windows wait (for the age of the oldest). */
void sg_window__mark_due(struct sg_streams *st);
/* Updates the waiting windows' gauges: their age always, their count at most once per
 * SG_STREAMS_WAITING_COUNT_MS unless `count_now`. */
void sg_window__update_waiting(struct sg_streams *st, bool count_now);
/* Fires every open window, in end order. */
void sg_window__fire_all(struct sg_streams *st);
/* Emits the windows on the dirty list as updates, as long as the writers' queues leave room
 * (pacing), and takes them off it; the rest stay for the next interval. Called after
 * sg_window__fire_due. */
void sg_window__emit_dirty(struct sg_streams *st);
/* Frees every window of the engine (open and free-listed) without emitting. */
void sg_window__free_all(struct sg_streams *st);
/* Milliseconds until the earliest window may fire, or INT64_MAX when none can. */
int64_t sg_window__next_due(const struct sg_streams *st);

/* result.c */
/* Appends the JSON object of one window. `final` < 0 leaves the "final" member out. Uses the
 * engine's view, so it may not run while a result callback holds one. */
int sg_result__render(struct sg_streams *st, const struct sg_window *w, int final,
                      struct sg_buf *out);
/* Fills the view of a window and renders its JSON into the engine's buffer, then hands both to
 * the result callback. */
void sg_result__emit(struct sg_streams *st, const struct sg_window *w, bool final);
/* Fills `res` with the numbers of open window w, as an early emission's (no JSON, no model
 * moved), in the engine's view: valid until the next result. */
int sg_result__open_numbers(struct sg_streams *st, const struct sg_window *w,
                            struct sg_window_result *res);
/* Frees the sketches the last result made for its fields of a value or two. */
void sg_result__release_rooms(struct sg_streams *st);
/* Appends the shortest decimal text that reads back as exactly `v`; null when not finite. */
int sg_result__append_double(struct sg_buf *out, double v);

#endif
