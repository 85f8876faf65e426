/* The file writer: NDJSON, one raw event per line as received (line breaks inside a pretty
 * printed event are folded into spaces so each event stays one line). Writes go through
 * uv_fs_write, one in flight at a time, with everything accepted meanwhile batched behind it. */
#ifndef STREAMGATE_SINK_FILE_H
#define STREAMGATE_SINK_FILE_H

#include <stddef.h>
#include <uv.h>

struct sg_sink;
struct sg_metrics;
struct sg_log;

/* Opens `path` for appending ("-" writes to stdout). Returns 0 and the sink, or a negative code
 * with a message in errstr. */
int sg_sink_file_create(uv_loop_t *loop, const char *path, struct sg_metrics *metrics,
                        struct sg_log *log, struct sg_sink **out, char *errstr, size_t errstr_size);

#endif
