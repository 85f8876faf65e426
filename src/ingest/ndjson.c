/* Newline-delimited framing. Lines that lie wholly inside one chunk are handed out in place;
 * only the start of a line that straddles chunks is copied into fr->partial, which holds at
 * most max_line bytes.
 *
 * The length limit counts every byte before the '\n', a trailing '\r' included. A line over
 * the limit is reported once (too_long = true, with its first max_line bytes) and the rest of
 * it, up to its newline, is skipped however many chunks it spans. Whether a line is blank is
 * decided only for lines within the limit, so the outcome never depends on where the reads
 * split the stream.
 *
 * When the callback returns non-zero, feeding stops at once and the value is returned; the
 * rest of that chunk is not consumed and the framer's state is unspecified. Callers treat it
 * as the end of the stream (they close the connection) and do not feed again. */
#include "ndjson.h"

#include <errno.h>
#include <string.h>

void sg_ndjson_init(struct sg_ndjson *fr, size_t max_line)
{
    sg_buf_init(&fr->partial, max_line);
    fr->max_line = max_line;
    fr->discarding = false;
}

void sg_ndjson_free(struct sg_ndjson *fr)
{
    sg_buf_free(&fr->partial);
    fr->discarding = false;
}

/* Hands out one complete line within the limit: drops one trailing '\r', skips blank lines. */
static int sg_ndjson__emit(const char *line, size_t len, sg_ndjson_line_cb cb, void *arg)
{
    size_t i;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    for (i = 0; i < len; i++) {
        char c = line[i];
        if (c != ' ' && c != '\t' && c != '\r')
            return cb(arg, line, len, false);
    }
    return 0;
}

/* Reports a too-long line whose start is fr->partial followed by `more` bytes (of which at
 * least enough to pass the limit are given). The report carries the first max_line bytes. */
static int sg_ndjson__too_long(struct sg_ndjson *fr, const char *more, sg_ndjson_line_cb cb,
                               void *arg)
{
    int rc;
    if (fr->partial.len == 0)
        return cb(arg, more, fr->max_line, true);
    rc = sg_buf_append(&fr->partial, more, fr->max_line - fr->partial.len);
    if (rc != 0)
        return rc;
    return cb(arg, fr->partial.data, fr->partial.len, true);
}

int sg_ndjson_feed(struct sg_ndjson *fr, const char *buf, size_t len, sg_ndjson_line_cb cb,
                   void *arg)
{
    size_t pos = 0;
    int rc;

    while (pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t n; /* bytes of the line inside this chunk, newline excluded */

        if (fr->discarding) {
            if (nl == NULL)
                return 0;
            fr->discarding = false;
            pos = (size_t)(nl - buf) + 1;
            continue;
        }

        n = nl ? (size_t)(nl - (buf + pos)) : len - pos;
        if (n > fr->max_line - fr->partial.len) {
            /* Over the limit, whether or not its newline is in this chunk. */
            rc = sg_ndjson__too_long(fr, buf + pos, cb, arg);
            sg_buf_reset(&fr->partial);
            if (nl == NULL)
                fr->discarding = true;
            if (rc != 0)
                return rc;
            if (nl == NULL)
                return 0;
            pos = (size_t)(nl - buf) + 1;
            continue;
        }

        if (nl == NULL) {
            /* The line goes on in the next chunk. */
            return sg_buf_append(&fr->partial, buf + pos, n);
        }

        if (fr->partial.len > 0) {
            rc = sg_buf_append(&fr->partial, buf + pos, n);
            if (rc != 0)
                return rc;
            rc = sg_ndjson__emit(fr->partial.data, fr->partial.len, cb, arg);
            sg_buf_reset(&fr->partial);
        } else {
            rc = sg_ndjson__emit(buf + pos, n, cb, arg);
        }
        if (rc != 0)
            return rc;
        pos = (size_t)(nl - buf) + 1;
    }
    return 0;
}

int sg_ndjson_finish(struct sg_ndjson *fr, sg_ndjson_line_cb cb, void *arg)
{
    int rc = 0;
    if (!fr->discarding && fr->partial.len > 0)
        rc = sg_ndjson__emit(fr->partial.data, fr->partial.len, cb, arg);
    sg_buf_reset(&fr->partial);
    fr->discarding = false;
    return rc;
}
