/* Decoding gzip request bodies with zlib, with a cap on the decoded size. */
#ifndef STREAMGATE_GZIP_H
#define STREAMGATE_GZIP_H

#include <stddef.h>

#include "streamgate/buf.h"

/* Appends the gzip-decoded form of `in` to `out` (whose own cap also applies). Returns 0,
 * -E2BIG when the decoded size would pass `max_decoded`, -EINVAL for corrupt or truncated
 * input (or trailing garbage), or -ENOMEM. Concatenated gzip members are decoded in turn. */
int sg_gunzip(const char *in, size_t len, size_t max_decoded, struct sg_buf *out);

#endif
