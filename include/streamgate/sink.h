/* The writer interface. The sink set (sinks.h) hands every accepted event, window result and
 * late event to each sink that takes that kind; the wiring in main.c decides which sinks exist.
 * A sink never calls back into ingest; it only tells a record's `done`, when given one. */
#ifndef STREAMGATE_SINK_H
#define STREAMGATE_SINK_H

#include <stdbool.h>
#include <stdint.h>

#include "streamgate/common.h"

struct sg_buf;
struct sg_event;
struct sg_sink;
struct sg_window_result;

/* A record's confirmation. Told once per record a sink took with it (the write returned 0):
 * `written` is true when the record is confirmed (Kafka: a successful delivery report;
 * Tablestore: the row answered OK; file: appended), false when it failed for good or was given
 * up at shutdown (also from inside destroy). Called on the loop thread, possibly before the
 * write that took it returns; its owner must outlive the sink's destroy or the call. */
struct sg_sink_done {
    void (*cb)(struct sg_sink_done *done, bool written);
};

typedef void (*sg_sink_drained_cb)(struct sg_sink *sink, void *arg);

struct sg_sink_ops {
    const char *name;
    /* Takes a copy of what it needs from `ev` (the view is short-lived). Returns 0 or a
     * negative code; a failure is counted as a rejection with reason sink_failed. `done` (may
     * be NULL) is told once when 0 is returned, never otherwise. NULL for a sink that takes no
     * raw events. */
    int (*write_raw)(struct sg_sink *sink, const struct sg_event *ev, enum sg_transport transport,
                     int64_t received_ms, struct sg_sink_done *done);
    /* Takes a copy of a window result. Returns 0 or a negative code (the sink counts the
     * failure); `done` as for write_raw. NULL for a sink that takes no results. */
    int (*write_result)(struct sg_sink *sink, const struct sg_window_result *res,
                        struct sg_sink_done *done);
    /* write_result reads the result's numbers only, never its JSON. */
    bool result_numbers_only;
    /* Takes a copy of a late event: later than window.allowed_lateness for a window that has
     * already fired (`window_end` is that window's end). NULL for a sink that takes none. */
    int (*write_late)(struct sg_sink *sink, const struct sg_event *ev, int64_t window_end);
    /* True while the sink can make progress (for /readyz). */
    bool (*healthy)(struct sg_sink *sink);
    /* False once the sink can never write again (a producer that failed for good): ingest
     * then refuses input (HTTP 503, TCP reads paused) instead of accepting events that could
     * only fail. NULL: always accepting. */
    bool (*accepting)(struct sg_sink *sink);
    /* Writes out everything held, then calls `cb` once, on the loop. No writes after this. */
    void (*drain)(struct sg_sink *sink, sg_sink_drained_cb cb, void *arg);
    /* The drain's deadline passed: stop waiting and release every loop handle now, without
     * calling the drain callback; what is still held is given up at destroy and counted as
     * failed there. NULL for a sink whose drain holds no loop handle. */
    void (*abandon)(struct sg_sink *sink);
    /* Appends the sink's state as one JSON object for /v1/info. NULL: the sink shows none. */
    int (*info)(struct sg_sink *sink, struct sg_buf *out);
    /* Frees the sink; only after drain has called back (or if it was never started). */
    void (*destroy)(struct sg_sink *sink);
};

struct sg_sink {
    const struct sg_sink_ops *ops;
};

#endif
