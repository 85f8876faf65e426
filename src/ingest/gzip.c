/* gzip request bodies: zlib inflate with a hard cap on the decoded size, so a small compressed
 * body can never expand into unbounded memory (a "zip bomb" fails as soon as it passes the
 * cap, having used at most the cap plus one inflate window). */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <zlib.h>

#include "streamgate/common.h"
#include "gzip.h"

/* How much output room is reserved per inflate call. Large enough to keep the number of calls
 * low, small enough that the buffer never overshoots the cap by much. */
#define SG_GUNZIP_CHUNK (64 * 1024)

static int sg_gunzip_zerr(int zret)
{
    switch (zret) {
    case Z_MEM_ERROR:
        return -ENOMEM;
    default:
        return -EINVAL;
    }
}

int sg_gunzip(const char *in, size_t len, size_t max_decoded, struct sg_buf *out)
{
    z_stream zs = {0};
    size_t start_len = out->len;
    size_t produced = 0;
    size_t in_left = len;
    int rc = 0;
    int zret;

    if (len == 0)
        return -EINVAL; /* not even a gzip header */

    /* 16 + MAX_WBITS: expect the gzip wrapper (header and CRC-32/ISIZE trailer). */
    zret = inflateInit2(&zs, 16 + MAX_WBITS);
    if (zret != Z_OK)
        return zret == Z_MEM_ERROR ? -ENOMEM : -EINVAL;

    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = 0;

    for (;;) {
        unsigned char probe;
        size_t room;
        size_t before_in, before_out, got;

        /* zlib counts in uInt; feed very large inputs in slices. */
        if (zs.avail_in == 0 && in_left > 0) {
            zs.avail_in = (uInt)SG_MIN(in_left, (size_t)UINT_MAX);
            in_left -= zs.avail_in;
        }

        if (produced < max_decoded) {
            rc = sg_buf_reserve(out, SG_MIN((size_t)SG_GUNZIP_CHUNK, max_decoded - produced));
            if (rc < 0)
                goto out;
            room = SG_MIN(out->cap - out->len, max_decoded - produced);
            room = SG_MIN(room, (size_t)UINT_MAX);
            zs.next_out = (Bytef *)out->data + out->len;
            zs.avail_out = (uInt)room;
        } else {
            /* At the cap: one byte of room tells whether the stream has more to give. */
            zs.next_out = &probe;
            zs.avail_out = 1;
        }

        before_in = zs.avail_in;
        before_out = zs.avail_out;
        zret = inflate(&zs, Z_NO_FLUSH);
        got = before_out - zs.avail_out;

        if (produced >= max_decoded && got > 0) {
            rc = -E2BIG;
            goto out;
        }
        if (produced < max_decoded) {
            out->len += got;
            produced += got;
        }

        if (zret == Z_STREAM_END) {
            if (zs.avail_in == 0 && in_left == 0)
                break; /* clean end of the last member */
            /* Another member follows (or garbage, which the next inflate rejects). */
            zret = inflateReset(&zs);
            if (zret != Z_OK) {
                rc = sg_gunzip_zerr(zret);
                goto out;
            }
            continue;
        }
        if (zret == Z_BUF_ERROR) {
            /* No progress possible: either the input ran out mid-stream (truncated) or the
             * output had no room, which only happens at the cap and is handled above. */
            if (zs.avail_in == 0 && in_left == 0) {
                rc = -EINVAL;
                goto out;
            }
            if (before_in == zs.avail_in && got == 0) {
                rc = -EINVAL;
                goto out;
            }
            continue;
        }
        if (zret != Z_OK) {
            rc = sg_gunzip_zerr(zret);
            goto out;
        }
        if (zs.avail_in == 0 && in_left == 0 && zs.avail_out > 0) {
            /* Everything consumed, output room left, and still no stream end: truncated. */
            rc = -EINVAL;
            goto out;
        }
    }

out:
    inflateEnd(&zs);
    if (rc < 0)
        out->len = start_len;
    return rc;
}
