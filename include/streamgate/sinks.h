/* The sink set: the one owner of the writers a process runs. Ingest hands it raw events, the
 * streams engine its results and late events, and it fans each out to every writer that takes
 * that kind. It answers for the set whether ingest may go on (ready, accepting), drains it at
 * shutdown (or abandons the drain at its deadline), renders each writer's part of /v1/info, and
 * destroys the writers. Single-threaded: the loop thread only. */
#ifndef STREAMGATE_SINKS_H
#define STREAMGATE_SINKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "streamgate/common.h"

struct sg_buf;
struct sg_event;
struct sg_sink;
struct sg_sink_done;
struct sg_window_result;

#define SG_SINKS_MAX 8

struct sg_sinks;

/* What a write did across the set. */
struct sg_sinks_outcome {
    /* Writers that took the record with its `done`: each calls done->cb exactly once. */
    unsigned took;
    /* The first writer that refused the record (NULL: none) and its negative code. Every
     * writer gets its chance even when an earlier one refused: one broken writer must not
     * starve the others. */
    const struct sg_sink *failed;
    int err;
};

/* NULL when out of memory. */
struct sg_sinks *sg_sinks_create(void);
/* Destroys every writer in the set, then the set. Only once a drain called back or was
 * abandoned, or when none was started. Safe on NULL. */
void sg_sinks_destroy(struct sg_sinks *s);

/* Adds a writer; the set owns it from here on. Returns 0 or -ENOSPC (past SG_SINKS_MAX; the
 * writer is not taken). */
int sg_sinks_add(struct sg_sinks *s, struct sg_sink *sink);
size_t sg_sinks_count(const struct sg_sinks *s);
/* Whether some writer takes raw events, results, late events. */
bool sg_sinks_take_raw(const struct sg_sinks *s);
bool sg_sinks_take_results(const struct sg_sinks *s);
bool sg_sinks_take_late(const struct sg_sinks *s);
/* Whether every writer that takes results reads their numbers only (no JSON needed). */
bool sg_sinks_results_numbers_only(const struct sg_sinks *s);

/* Fans a record out. `done` may be NULL; otherwise each writer that returns 0 and supports
 * confirmations tells it once (see struct sg_sink_done in sink.h). Returns 0, or the first
 * writer's negative code when one refused; `out` (may be NULL) says who took `done` and who
 * refused. */
int sg_sinks_write_raw(struct sg_sinks *s, const struct sg_event *ev, enum sg_transport transport,
                       int64_t received_ms, struct sg_sink_done *done,
                       struct sg_sinks_outcome *out);
int sg_sinks_write_result(struct sg_sinks *s, const struct sg_window_result *res,
                          struct sg_sink_done *done, struct sg_sinks_outcome *out);
/* Late events: no confirmation; a writer that refuses one counts it itself. */
void sg_sinks_write_late(struct sg_sinks *s, const struct sg_event *ev, int64_t window_end);

/* True while every writer can make progress (for /readyz). */
bool sg_sinks_ready(const struct sg_sinks *s);
/* False once a writer that takes raw events can never write again: ingest then refuses input
 * instead of accepting events that could only fail. */
bool sg_sinks_accepting(const struct sg_sinks *s);

/* Drains every writer, then calls `cb` once, on the loop (at once when no writer holds
 * anything). No writes after this. */
void sg_sinks_drain(struct sg_sinks *s, void (*cb)(void *arg), void *arg);
/* The drain's deadline passed: every writer stops waiting and releases its loop handles; the
 * drain's callback is not called. What is still held is counted as failed at destroy. */
void sg_sinks_abandon(struct sg_sinks *s);

/* Appends the state of the writer named `name` (its `info` op) as a JSON value, or `null`
 * when the set has no such writer. */
int sg_sinks_render_info(const struct sg_sinks *s, const char *name, struct sg_buf *out);

#endif
