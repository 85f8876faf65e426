/* Newline-delimited framing across arbitrary read splits. Complete lines inside one input
 * chunk are handed out in place (no copy); only a line that straddles chunks is copied into
 * the framer's buffer, which never grows past max_line. A longer line is skipped up to its
 * newline and reported once as too long. A trailing "\r" is dropped; blank lines are skipped. */
#ifndef STREAMGATE_NDJSON_H
#define STREAMGATE_NDJSON_H

#include <stdbool.h>
#include <stddef.h>

#include "streamgate/buf.h"

/* Called for each line (without its newline). `too_long` is true for a line over the limit;
 * then `line` holds its first bytes only. Return 0 to go on, non-zero to stop feeding. */
typedef int (*sg_ndjson_line_cb)(void *arg, const char *line, size_t len, bool too_long);

struct sg_ndjson {
    struct sg_buf partial; /* the start of a line that straddles chunks */
    size_t max_line;
    bool discarding; /* inside a too-long line, skipping to its newline */
};

void sg_ndjson_init(struct sg_ndjson *fr, size_t max_line);
void sg_ndjson_free(struct sg_ndjson *fr);
/* Feeds a chunk. Returns 0, the callback's non-zero value, or -ENOMEM. After a non-zero
 * return the rest of the chunk has not been consumed and the framer must not be fed again,
 * only freed: a caller that stops treats it as the end of the stream. The line limit counts
 * every byte before the '\n', a trailing '\r' included. */
int sg_ndjson_feed(struct sg_ndjson *fr, const char *buf, size_t len, sg_ndjson_line_cb cb,
                   void *arg);
/* End of input: hands out a final line that had no newline. */
int sg_ndjson_finish(struct sg_ndjson *fr, sg_ndjson_line_cb cb, void *arg);

#endif
