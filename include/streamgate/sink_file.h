/* The file writer: NDJSON, one record per line (raw events as received, window results, or late
 * events; line breaks inside a pretty-printed event are folded into spaces so each record stays
 * one line). Writes go through
 * uv_fs_write, one in flight at a time, with everything accepted meanwhile batched behind it. */
#ifndef STREAMGATE_SINK_FILE_H
#define STREAMGATE_SINK_FILE_H

#include <stddef.h>
#include <uv.h>

struct sg_budget;
struct sg_sink;
struct sg_metrics;
struct sg_log;

/* What a file writer receives: raw events (output.file), window results (output.results_file),
 * late events (output.late_file) or the window results with a field flagged anomalous
 * (output.anomaly_file). Also the metric label stream="raw"|"agg"|"late"|"anomaly". */
enum sg_file_kind { SG_FILE_RAW, SG_FILE_RESULTS, SG_FILE_LATE, SG_FILE_ANOMALIES };

/* Opens `path` for appending ("-" writes to stdout). Bytes not yet written are charged to
 * `budget` (may be NULL). Returns 0 and the sink, or a negative code with a message in
 * errstr. */
int sg_sink_file_create(uv_loop_t *loop, const char *path, enum sg_file_kind kind,
                        struct sg_budget *budget, struct sg_metrics *metrics, struct sg_log *log,
                        struct sg_sink **out, char *errstr, size_t errstr_size);

#endif
