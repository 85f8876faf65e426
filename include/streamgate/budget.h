/* The memory budget: one account of the bytes the gateway holds on behalf of clients and
 * writers (connection buffers, request bodies being read, the streams engine's keys and open
 * windows, writer queues), with a high and a low watermark. Crossing the high watermark pauses
 * ingest: HTTP answers 503 before reading a body, TCP connections stop reading. Falling under the
 * low watermark resumes it. The gap between the two keeps ingest from flapping on every delivery
 * report.
 *
 * Single-threaded: only the loop thread charges and releases. Watchers are called on every
 * transition, from inside the charge or release that caused it, so they must only start or
 * stop reads and never charge or release themselves. */
#ifndef STREAMGATE_BUDGET_H
#define STREAMGATE_BUDGET_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "streamgate/common.h"

struct sg_metrics;
struct sg_log;
struct sg_buf;

/* What the bytes are held for; shown apart in /v1/info. */
enum sg_budget_use {
    SG_BUDGET_CONNECTIONS, /* per-connection read buffers and partial lines */
    SG_BUDGET_BODIES,      /* HTTP request bodies being read */
    SG_BUDGET_STREAMS,     /* the streams engine: keys, open windows with their sketches, tables */
    SG_BUDGET_QUEUES,      /* records accepted by a writer and not yet written */
    SG_BUDGET_USE_COUNT
};

#define SG_BUDGET_MAX_WATCHERS 4

typedef void (*sg_budget_watch_cb)(void *arg, bool paused);

struct sg_budget;

/* `limit` in bytes (> 0); `high_pct` and `low_pct` are the watermarks in percent of it, with
 * 0 < low_pct < high_pct <= 100. NULL when out of memory. */
struct sg_budget *sg_budget_create(size_t limit, unsigned high_pct, unsigned low_pct,
                                   struct sg_metrics *metrics, struct sg_log *log);
void sg_budget_destroy(struct sg_budget *b);
/* A reload changed limits.*: new limit and watermarks (as for create). Pauses or resumes at once
 * when what is held is past the new marks. */
void sg_budget_set_limits(struct sg_budget *b, size_t limit, unsigned high_pct, unsigned low_pct);

/* Registers a watcher, told of every pause and resume. Returns 0 or -ENOSPC. */
int sg_budget_watch(struct sg_budget *b, sg_budget_watch_cb cb, void *arg);
/* Removes a watcher (matched by cb and arg); a no-op when it is not registered. */
void sg_budget_unwatch(struct sg_budget *b, sg_budget_watch_cb cb, void *arg);

void sg_budget_charge(struct sg_budget *b, enum sg_budget_use use, size_t bytes);
void sg_budget_release(struct sg_budget *b, enum sg_budget_use use, size_t bytes);

/* Moves a holder's account from `*held` to `now` bytes (charge or release the difference). */
void sg_budget_set(struct sg_budget *b, enum sg_budget_use use, size_t *held, size_t now);

/* glibc keeps what is freed in its heap, and a heap churned by windows opening and firing
 * fragments: left alone, the process's RSS stays near the budget's highest point plus the holes
 * between the chunks in use. When the budget has fallen by a 32nd of its limit since its highest
 * point, this hands the heap's whole free pages back to the system (malloc_trim; the chunks
 * stay free for reuse), at most once every SG_BUDGET_TRIM_INTERVAL_MS and never more than 2% of
 * the time. Returns whether it trimmed. Called from a timer on the loop. */
#define SG_BUDGET_TRIM_FRACTION    32
#define SG_BUDGET_TRIM_INTERVAL_MS 1000
bool sg_budget_trim(struct sg_budget *b, int64_t now_ms);

/* True from crossing the high watermark until falling under the low one. */
bool sg_budget_paused(const struct sg_budget *b);
/* True when `bytes` more can be taken now: not paused and still within the limit. */
bool sg_budget_admits(const struct sg_budget *b, size_t bytes);

size_t sg_budget_used(const struct sg_budget *b);
/* What one use holds now. */
size_t sg_budget_used_by(const struct sg_budget *b, enum sg_budget_use use);
size_t sg_budget_limit(const struct sg_budget *b);

/* Counts one pushback (a 503 answered, a connection's reads paused). */
void sg_budget_count_pushback(struct sg_budget *b, enum sg_transport transport);

/* Appends {"limit":..,"used":..,"paused":..,"connections":..,"bodies":..,"streams":..,
 * "queues":..}. */
int sg_budget_render(const struct sg_budget *b, struct sg_buf *out);

#endif
