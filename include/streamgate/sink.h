/* The writer interface. Ingest hands every accepted event to each sink; the wiring in main.c
 * decides which sinks exist. A sink never calls back into ingest. */
#ifndef STREAMGATE_SINK_H
#define STREAMGATE_SINK_H

#include <stdbool.h>
#include <stdint.h>

#include "streamgate/common.h"

struct sg_event;
struct sg_sink;

typedef void (*sg_sink_drained_cb)(struct sg_sink *sink, void *arg);

struct sg_sink_ops {
    const char *name;
    /* Takes a copy of what it needs from `ev` (the view is short-lived). Returns 0 or a
     * negative code; a failure is counted as a rejection with reason sink_failed. */
    int (*write_raw)(struct sg_sink *sink, const struct sg_event *ev, enum sg_transport transport,
                     int64_t received_ms);
    /* True while the sink can make progress (for /readyz). */
    bool (*healthy)(struct sg_sink *sink);
    /* Writes out everything held, then calls `cb` once, on the loop. No writes after this. */
    void (*drain)(struct sg_sink *sink, sg_sink_drained_cb cb, void *arg);
    /* Frees the sink; only after drain has called back (or if it was never started). */
    void (*destroy)(struct sg_sink *sink);
};

struct sg_sink {
    const struct sg_sink_ops *ops;
};

#endif
