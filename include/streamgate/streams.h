/* Per-key streams and incremental windowed aggregation.
 *
 * Every accepted event is routed by its key to a stream (a key table with open addressing;
 * nothing is allocated per event once the key and its window exist) and folded into the
 * aggregates of each window it belongs to (tumbling, hopping or session). No event is stored.
 *
 * Time: in event-time mode the watermark is the highest event time seen minus
 * window.allowed_lateness; after window.idle_timeout without events it also advances at the
 * wall clock's pace, so the last windows fire even when traffic stops. In processing-time mode
 * an event's time is its arrival time and the watermark is the wall clock. A window fires (is
 * emitted with "final":true and freed) once the watermark reaches its end; windows wait in a
 * min-heap ordered by end, so firing never scans keys. An event whose window has already fired
 * is late: it is counted, handed to the late callback, logged (at most once per
 * log.bad_input_interval, with a hint when its time looks like it is in the wrong unit), and
 * changes no result.
 *
 * With window.emit_interval set, windows that changed since their last emission are emitted
 * every interval with "final":false (a list of changed windows; no scan). Results carry the key
 * and window start, so a later emission of the same window is an upsert downstream.
 *
 * Keys whose windows have all fired are evicted after stream.key_idle_timeout (a FIFO of idle
 * streams; no scan). Past stream.max_keys, events for new keys are rejected (key_limit).
 *
 * Memory: with a budget, the engine's bytes (keys, open windows with their sketches, its
 * tables) are charged to it as SG_BUDGET_STREAMS. While they reach limits.streams_share of it,
 * events for new keys are rejected (key_limit) and known keys go on. Firing is paced by the
 * writers: while their queues (SG_BUDGET_QUEUES) hold limits.results_share of the budget or
 * more, due windows wait in the engine, unrendered, and fire in their usual order as the
 * queues drain. A waiting window takes no more events: an event for it is late, as if it had
 * fired. sg_streams_flush emits everything regardless. */
#ifndef STREAMGATE_STREAMS_H
#define STREAMGATE_STREAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "streamgate/event.h"

struct sg_buf;
struct sg_budget;
struct sg_ddsketch;
struct sg_config;
struct sg_hll;
struct sg_log;
struct sg_metrics;
struct sg_streams;

/* A statistic of a result. `has_value` is false where the JSON has null: the value is not
 * finite (a sum that overflowed, say); `value` is then what was computed. */
struct sg_result_stat {
    double value;
    bool has_value;
};

/* A quantile of a field, under its name as configured in window.quantiles ("p50", "p99.9"). */
struct sg_result_quantile {
    const char *name; /* NUL-terminated */
    struct sg_result_stat value;
};

/* One field's statistics, the numbers its JSON member holds. */
struct sg_result_field {
    const char *name; /* as the events spell it, NUL-terminated */
    size_t name_len;
    uint64_t count; /* finite values folded in; at least 1 */
    struct sg_result_stat sum, min, max, mean, stddev, first, last;
    /* window.quantiles in their order; none when the field's sketch could not be allocated
     * (the JSON leaves them out too). */
    const struct sg_result_quantile *quantiles;
    size_t nquantiles;
    /* The sketch the quantiles come from (NULL exactly when there are none), to store or merge:
     * a field of a value or two gets one made of its min and max. */
    const struct sg_ddsketch *sketch;
    /* predict.*: whether the field is forecast, and then what the model says of this window:
     * forecast (none for a model's first window), anomaly (none during warm-up), next, and
     * whether |anomaly| is past predict.anomaly_threshold. */
    bool predicted;
    bool anomalous;
    struct sg_result_stat forecast, anomaly, next;
    /* A final result's model after this window, in its stored form (model_len bytes: 37, more
     * with predict.season; encoding in README "Forecasts and anomalies"); has_model is false
     * otherwise. */
    bool has_model;
    const uint8_t *model;
    size_t model_len;
};

/* Where a window began in its Kafka partition (role aggregator): the offset of the first
 * record folded into it, and the partition's time just before that record. An aggregator that
 * commits `offset` and stores the time with it lets the next owner of the partition rebuild the
 * window from that record with the same lateness decisions, hence the same result.
 * `watermark` and `max_event_time` are INT64_MIN while the partition has no time yet; `offset`
 * is -1 outside an aggregator. */
struct sg_streams_origin {
    int64_t offset;
    int64_t watermark;
    int64_t max_event_time;
};

/* One window result: its numbers, and the same rendered as JSON. Everything it points to is
 * borrowed from the engine and valid only during the callback. */
struct sg_window_result {
    const char *key;
    size_t key_len;
    int32_t partition;
    int64_t window_start; /* epoch ms, inclusive */
    int64_t window_end;   /* epoch ms, exclusive */
    bool final;
    uint64_t count;           /* events in the window */
    bool has_distinct;        /* window.distinct_field is set */
    uint64_t distinct;        /* the distinct estimate, rounded as the JSON writes it */
    const struct sg_hll *hll; /* the registers behind it (has_distinct), to store or merge */
    /* The fields in the JSON's order; a field that saw no finite value is left out of both. */
    const struct sg_result_field *fields;
    size_t nfields;
    size_t nanomalous; /* fields flagged anomalous; 0 in an early update */
    /* The result as one JSON object, no trailing newline:
     * {"key":..,"window_start":..,"window_end":..,"count":..,"fields":{"<name>":{"count":..,
     *  "sum":..,"min":..,"max":..,"mean":..,"stddev":..,"first":..,"last":..,"p50":..,
     *  "forecast":..,"anomaly":..,"next":..}},
     *  "distinct":..,"final":..} ("distinct" only when window.distinct_field is set). The
     * numbers above are the ones written here, so a writer never needs to parse it back.
     * NULL (json_len 0) when the callbacks asked for the numbers only. */
    const char *json;
    size_t json_len;
    struct sg_streams_origin origin; /* offset -1 outside an aggregator */
};

typedef void (*sg_streams_result_cb)(void *arg, const struct sg_window_result *res);
/* A late event (its bytes are ev->raw); `window_end` is the end of the fired window it missed. */
typedef void (*sg_streams_late_cb)(void *arg, const struct sg_event *ev, int64_t window_end);
/* A stream was made for a key that had none (forecasts on). Returns true when the key's stored
 * models will be handed over (sg_streams_restore): the engine then waits for them until the
 * key's first window fires. */
typedef bool (*sg_streams_key_cb)(void *arg, const char *key, size_t key_len);

/* The callbacks run inside sg_streams_add, _tick and _flush; they must not call back into the
 * engine. */
struct sg_streams_callbacks {
    sg_streams_result_cb result;
    /* No result's JSON is read (every writer takes the numbers): it is not rendered, which is
     * most of what firing a window costs. */
    bool numbers_only;
    sg_streams_late_cb late; /* may be NULL */
    /* May be NULL: every new key's models start afresh. Called only with predict.enabled. */
    sg_streams_key_cb key_new;
    void *arg;
};

/* Builds the engine from the configuration (window.*, stream.*, predict.*, limits.streams_share,
 * limits.results_share, log.bad_input_interval). `log` (may be NULL) receives allocation
 * failures, late events and refused keys. `budget` (may be NULL: no accounting, no memory
 * limit on keys, no pacing) must outlive the engine. Returns NULL when out of memory. */
struct sg_streams *sg_streams_create(const struct sg_config *cfg, struct sg_metrics *metrics,
                                     struct sg_log *log, struct sg_budget *budget,
                                     const struct sg_streams_callbacks *cbs);
/* Frees everything without emitting anything. Safe on NULL. */
void sg_streams_destroy(struct sg_streams *st);
/* Takes limits.streams_share and limits.results_share from `cfg` as shares of the budget's
 * limit now: at create, and again on a reload (after the budget took a new limits.memory).
 * A lower streams share refuses new keys from the next one on (the keys known go on); a higher
 * results share lets waiting windows fire from the next tick on. Nothing without a budget. */
void sg_streams_set_shares(struct sg_streams *st, const struct sg_config *cfg);

/* Folds one accepted event in; `now_ms` is the wall clock. Returns 0 (including for a late
 * event, which is counted and handed to the late callback), or -EINVAL with *why =
 * SG_REJECT_KEY_LIMIT when the key is new and stream.max_keys keys are active or the engine
 * holds limits.streams_share of the budget (nothing changes then), or -ENOMEM with *why =
 * SG_REJECT_SINK_FAILED when no window could be allocated for it. Windows whose end the
 * watermark has now passed fire before this returns, unless pacing holds them. */
int sg_streams_add(struct sg_streams *st, const struct sg_event *ev, int64_t now_ms,
                   enum sg_reject *why);

/* Cache hints for an event sg_streams_add will see soon, for callers that know the next
 * events' keys (a batch of lines): with many keys, the key's slot, its stream record and its
 * window are cache misses, each found through the one before. Each step asks for one of them,
 * the next step reading what the step before brought in, so the steps go an event or so apart:
 * sg_streams_prefetch_slot (returns the key's hash), then _stream, then _window, then _sketches
 * (the quantile sketches of the window's first fields, separate allocations its fields point
 * to). None changes anything. */
uint64_t sg_streams_prefetch_slot(const struct sg_streams *st, const char *key, size_t key_len);
void sg_streams_prefetch_stream(const struct sg_streams *st, uint64_t hash);
void sg_streams_prefetch_window(const struct sg_streams *st, const char *key, size_t key_len,
                                uint64_t hash);
void sg_streams_prefetch_sketches(const struct sg_streams *st, const char *key, size_t key_len,
                                  uint64_t hash);

/* Advances time without an event: recomputes the watermark (idle advance, processing time),
 * fires due windows (as far as pacing lets it), emits early updates when due, evicts idle
 * keys. Returns the number of milliseconds until something may next be due (at least 1, at
 * most 1000), for a timer; while due windows wait for the writers, a short poll delay. */
int64_t sg_streams_tick(struct sg_streams *st, int64_t now_ms);

/* Shutdown: emits every open window as final, in order of window end, and frees them; pacing
 * does not hold anything back (ingest has stopped). */
void sg_streams_flush(struct sg_streams *st);

/* One field's stored model, as the Tablestore writer stores it: the column's name without its
 * "_model" suffix (the field's name with characters other than ASCII letters and digits as
 * `_`, and `_` before a leading digit) and the column's value. */
struct sg_streams_stored_model {
    const char *column;
    size_t column_len;
    const uint8_t *model;
    size_t len;
};

/* The models the key_new callback went to read for `key` (`n` of them; none when the key has
 * no stored model or the read failed). They are applied when the key's stream waits for them:
 * it exists and has fired no window with a forecast field since it was made; a model that
 * does not decode, or of a field predict.fields leaves out, is skipped. Returns the number of
 * models applied, or -ENOENT when the stream does not wait (gone, or its first window fired
 * first: counted then as streamgate_predict_restores_total{outcome="late"}). */
int sg_streams_restore(struct sg_streams *st, const char *key, size_t key_len,
                       const struct sg_streams_stored_model *models, size_t n);

/* Live query. Appends {"key":..,"partition":..,"windows":[<result objects without "final">],
 * "forecast":{"<field>":..}} for one key ("forecast": what each field's model expects of the
 * window after the last one it folded in; null before its first; no member without models);
 * -ENOENT when the key has no stream. */
int sg_streams_render_key(struct sg_streams *st, const char *key, size_t key_len,
                          struct sg_buf *out);
/* Called with each open window's numbers (json NULL, final false); a nonzero return stops the
 * walk and is returned by sg_streams_open_windows. */
typedef int (*sg_streams_open_cb)(void *arg, const struct sg_window_result *res);
/* Live query, numbers only: hands cb the result of each open window of `key` (of every key when
 * `key` is NULL), built as an early emission's is, forecasts looked at but no model moved.
 * The results are valid during the call only, and cb must not call back into the engine.
 * Returns 0 (also for a key without a stream), cb's nonzero return, or -ENOMEM. */
int sg_streams_open_windows(struct sg_streams *st, const char *key, size_t key_len,
                            sg_streams_open_cb cb, void *arg);
/* Appends {"active_keys":N,"keys":[{"key":..,"partition":..,"open_windows":..,"count":..}],
 * "truncated":bool} listing at most `limit` keys (count = events in open windows). */
int sg_streams_render_list(struct sg_streams *st, size_t limit, struct sg_buf *out);

/* ---- Partitions owned through Kafka (role aggregator) ------------------------------------
 *
 * An aggregator owns the keys of the raw topic's partitions assigned to it. The engine then
 * keeps time per partition: each assigned partition has its own watermark (its highest event
 * time minus window.allowed_lateness, following the wall clock after window.idle_timeout
 * without records, as the engine's does otherwise), and an event is late when its window ended
 * at or before its own partition's watermark. Windows fire once the minimum over the assigned
 * partitions passes their end; a partition assigned without a time yet holds firing back until
 * its first record or window.idle_timeout. Lateness thus depends on the partition's records
 * alone, in their order, which is what makes a window rebuilt by another owner from the same
 * records come out the same. */

/* Takes partition `partition` (0 <= partition < 65536). `from` is the partition's time as the
 * previous owner committed it (the origin of its first held record), or NULL for none. Returns
 * 0 or -ENOMEM. */
int sg_streams_partition_assign(struct sg_streams *st, int32_t partition,
                                const struct sg_streams_origin *from);
/* Gives partition `partition` up: its keys and their open windows are dropped without firing
 * (the next owner rebuilds them from the committed offset) and their memory goes back to the
 * budget. Returns the number of windows dropped. */
size_t sg_streams_partition_revoke(struct sg_streams *st, int32_t partition);
/* sg_streams_add for a record of `partition` at `offset`: its key belongs to that partition,
 * and lateness is judged against that partition's watermark. */
int sg_streams_add_record(struct sg_streams *st, const struct sg_event *ev, int32_t partition,
                          int64_t offset, int64_t now_ms, enum sg_reject *why);
/* What a partition's open windows hold: the origin with the lowest offset (offset -1 when no
 * window is open) and the lowest window end (INT64_MAX when none). */
struct sg_streams_hold {
    struct sg_streams_origin origin;
    int64_t min_end;
};
/* Fills holds[p] for every partition p < n (one walk over the open windows). */
void sg_streams_partition_holds(const struct sg_streams *st, struct sg_streams_hold *holds,
                                size_t n);
/* The partition's time now (offset left -1); false when it is not assigned. */
bool sg_streams_partition_time(const struct sg_streams *st, int32_t partition,
                               struct sg_streams_origin *out);
/* The latest end of a window holding an event at `t` (tumbling and hopping; the session an
 * event alone would make). */
int64_t sg_streams_last_window_end(const struct sg_streams *st, int64_t t);

/* The partition of a key (Kafka murmur2 over stream.partitions). */
int32_t sg_streams_partition(const struct sg_streams *st, const char *key, size_t key_len);

#endif
