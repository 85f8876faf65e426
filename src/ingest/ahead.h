/* The look-ahead queue the TCP reader and the HTTP body share (implemented in ingest.c). */
#ifndef SG_INGEST_AHEAD_H
#define SG_INGEST_AHEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "streamgate/ingest.h"

/* Events held back a few at a time before they are ingested. With many keys, what an event
 * updates is several cache misses, each found through the one before; a caller holding a batch
 * of events (the lines of one read, the elements of one body) pushes each one into a queue
 * instead of ingesting it at once. The queue peeks at the key of the newest and takes the cache
 * hint of each event held back one step further, so the misses overlap the work in between,
 * and hands the oldest back once SG_INGEST_AHEAD are held. Hints change nothing: events come
 * out in the order they went in, and their bytes must stay valid while they are held. */
#define SG_INGEST_AHEAD 4

/* The queue's own: how far the cache hint of an event held has got. */
struct sg_ingest_hint {
    const char *key;
    size_t key_len;
    uint64_t hash;
    unsigned step; /* 0: no hint (the key could not be peeked at) */
};

struct sg_ingest_held {
    const char *buf;
    size_t len;
    size_t index, line, offset; /* where it lies in the caller's input, for error reports */
    struct sg_ingest_hint hint;
};

/* Zeroed, a queue is empty. */
struct sg_ingest_ahead {
    struct sg_ingest_held q[SG_INGEST_AHEAD];
    unsigned head, n; /* the oldest held, and how many */
};

/* Holds `ev` back. Returns true when the queue was full: its oldest event is then moved to
 * *due, for the caller to ingest now. */
bool sg_ingest_ahead_push(struct sg_ingest *ing, struct sg_ingest_ahead *a,
                          const struct sg_ingest_held *ev, struct sg_ingest_held *due);
/* Moves the oldest event held to *ev, or returns false when none is. A caller empties the
 * queue before it ingests anything else and before the events' bytes are reused. */
bool sg_ingest_ahead_pop(struct sg_ingest_ahead *a, struct sg_ingest_held *ev);

#endif
