/* Reads from Tablestore on the writer's connections: signed calls on the Tablestore writer's
 * libcurl multi handle on the loop (never blocking), retried with backoff while the service is
 * busy or unreachable, within a deadline. The query API (GET /v1/history) builds GetRange and
 * BatchGetRow bodies with the protocol library and reads the answers it gets here. */
#ifndef STREAMGATE_TABLESTORE_READER_H
#define STREAMGATE_TABLESTORE_READER_H

#include <stddef.h>
#include <stdint.h>

struct sg_sink;
struct sg_ts_reader;
struct sg_ts_read;

/* How a read ended. */
enum sg_ts_read_outcome {
    SG_TS_READ_OK,          /* HTTP 200, signature checked: the body is the answer */
    SG_TS_READ_UNAVAILABLE, /* busy, throttled or unreachable until the deadline passed */
    SG_TS_READ_REFUSED,     /* a definite error (code and message say which) */
    SG_TS_READ_CANCELLED,   /* sg_ts_read_cancel, or the writer shut down */
};

/* `body` (len bytes) is valid during the call only; code and message are "" unless REFUSED or
 * UNAVAILABLE. The read is over when this runs: it is freed right after. */
typedef void (*sg_ts_read_cb)(void *arg, enum sg_ts_read_outcome outcome, const char *code,
                              const char *message, const void *body, size_t len);

/* The reader of a Tablestore writer, or NULL for another sink. */
struct sg_ts_reader *sg_sink_tablestore_reader(struct sg_sink *sink);

/* The results table and its time index ("" when off). */
const char *sg_ts_reader_results_table(const struct sg_ts_reader *r);
const char *sg_ts_reader_time_index(const struct sg_ts_reader *r);
/* tablestore.index_shards. */
int32_t sg_ts_reader_index_shards(const struct sg_ts_reader *r);

/* Starts a read-only call (`operation`, e.g. "GetRange") with `body` (copied); `cb` runs on
 * the loop when it ends, never from inside this function. Retriable failures are tried again
 * with the writer's backoff until `timeout_ms` from now. Returns 0 with *out set (for
 * sg_ts_read_cancel), or -ENOMEM / -ESHUTDOWN. */
int sg_ts_reader_call(struct sg_ts_reader *r, const char *operation, const void *body, size_t len,
                      uint64_t timeout_ms, sg_ts_read_cb cb, void *arg, struct sg_ts_read **out);

/* Ends a read early: its callback runs at once with SG_TS_READ_CANCELLED. */
void sg_ts_read_cancel(struct sg_ts_read *rd);

#endif
