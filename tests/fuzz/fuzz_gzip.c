/* The gzip body decoder, checked against zlib.
 *
 * Input layout: byte 0 picks the mode, bytes 1-2 the decoded-size cap (0 to 4095 bytes, small so
 * the cap is hit often), the rest is the payload.
 *   mode 0: the payload is the gzip body as received.
 *   mode 1: the payload is plain text; it is gzip-compressed here and the result decoded.
 *   mode 2: as mode 1, then the compressed body is cut short (byte 3 picks where) or has a
 *           byte flipped (byte 4 picks which).
 *
 * The reference is zlib's own inflate run in one go over the whole body into a buffer of
 * cap + 1 bytes, member after member. sg_gunzip must agree with it: on success its output
 * equals the reference's and is at most the cap; when the reference decodes the body within
 * the cap, sg_gunzip must succeed; when the reference passes the cap, sg_gunzip must return
 * -E2BIG; when the reference finds the body corrupt or truncated before the cap, sg_gunzip must
 * return -EINVAL. On failure the output buffer is left as it was (a prefix written before the
 * call stays). Mode 1 also checks the round trip: the output equals the plain text. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "streamgate/buf.h"
#include "gzip.h"

#define PREFIX     "prefix:"
#define PREFIX_LEN (sizeof(PREFIX) - 1)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum ref_result { REF_OK, REF_OVER_CAP, REF_CORRUPT };

static void fail(const char *what, int rc)
{
    fprintf(stderr, "fuzz_gzip: %s (sg_gunzip returned %d)\n", what, rc);
    abort();
}

/* zlib in one go: every member in turn, into out[0..cap], stopping once more than `cap`
 * bytes come out. */
static enum ref_result ref_gunzip(const unsigned char *in, size_t len, unsigned char *out,
                                  size_t cap, size_t *out_len)
{
    z_stream zs = {0};
    enum ref_result res;
    int zret;

    *out_len = 0;
    if (len == 0)
        return REF_CORRUPT;
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        abort();
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)(cap + 1);
    for (;;) {
        zret = inflate(&zs, Z_FINISH);
        *out_len = cap + 1 - zs.avail_out;
        if (*out_len > cap) {
            res = REF_OVER_CAP;
            break;
        }
        if (zret != Z_STREAM_END) {
            /* Z_BUF_ERROR with output room left: the input ran out (truncated); anything
             * else is corrupt. */
            res = REF_CORRUPT;
            break;
        }
        if (zs.avail_in == 0) {
            res = REF_OK;
            break;
        }
        /* Another member, or trailing bytes that the next inflate refuses. */
        if (inflateReset(&zs) != Z_OK)
            abort();
    }
    inflateEnd(&zs);
    return res;
}

/* Compresses `len` bytes into a gzip member. Returns a malloc'd buffer and its size. */
static unsigned char *gzip_compress(const unsigned char *in, size_t len, int level, size_t *out_len)
{
    z_stream zs = {0};
    unsigned char *out;
    uLong bound;

    if (deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    bound = deflateBound(&zs, (uLong)len) + 32;
    out = malloc(bound);
    if (!out)
        abort();
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)bound;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
        abort();
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sg_buf out;
    unsigned char *body, *ref;
    size_t body_len, ref_len, cap;
    const unsigned char *plain = NULL;
    size_t plain_len = 0;
    enum ref_result want;
    int mode, rc;

    if (size < 3)
        return 0;
    mode = data[0] % 3;
    cap = ((size_t)data[1] | (size_t)data[2] << 8) % 4096;
    data += 3;
    size -= 3;

    if (mode == 0) {
        body_len = size;
        body = malloc(body_len ? body_len : 1);
        if (!body)
            abort();
        memcpy(body, data, body_len);
    } else {
        size_t cut = SIZE_MAX, flip = SIZE_MAX;
        if (mode == 2) {
            if (size < 2)
                return 0;
            if (data[0] & 1)
                cut = data[0] >> 1;
            else
                flip = data[1];
            data += 2;
            size -= 2;
        }
        plain = data;
        plain_len = size;
        body = gzip_compress(plain, plain_len, (int)(plain_len % 10), &body_len);
        if (cut != SIZE_MAX && body_len > 0)
            body_len = cut % body_len;
        if (flip != SIZE_MAX && body_len > 0)
            body[flip % body_len] ^= 0x5a;
    }

    ref = malloc(cap + 1);
    if (!ref)
        abort();
    want = ref_gunzip(body, body_len, ref, cap, &ref_len);

    sg_buf_init(&out, 0);
    if (sg_buf_append(&out, PREFIX, PREFIX_LEN) != 0)
        abort();
    rc = sg_gunzip((const char *)body, body_len, cap, &out);

    if (out.len < PREFIX_LEN || memcmp(out.data, PREFIX, PREFIX_LEN) != 0)
        fail("the bytes already in the output were changed", rc);
    if (rc != 0 && out.len != PREFIX_LEN)
        fail("a failed decode left output behind", rc);
    switch (want) {
    case REF_OK:
        if (rc != 0)
            fail("zlib decodes the body within the cap but sg_gunzip refused it", rc);
        if (out.len - PREFIX_LEN != ref_len ||
            (ref_len > 0 && memcmp(out.data + PREFIX_LEN, ref, ref_len) != 0))
            fail("output differs from zlib's", rc);
        break;
    case REF_OVER_CAP:
        if (rc != -E2BIG)
            fail("the decoded size passes the cap but sg_gunzip did not return -E2BIG", rc);
        break;
    case REF_CORRUPT:
        if (rc != -EINVAL)
            fail("zlib finds the body corrupt but sg_gunzip did not return -EINVAL", rc);
        break;
    }
    if (mode == 1) {
        /* An untouched round trip: fits the cap or not, nothing else. */
        if (plain_len <= cap) {
            if (rc != 0 || out.len - PREFIX_LEN != plain_len ||
                (plain_len > 0 && memcmp(out.data + PREFIX_LEN, plain, plain_len) != 0))
                fail("round trip lost the plain text", rc);
        } else if (rc != -E2BIG) {
            fail("round trip over the cap did not return -E2BIG", rc);
        }
    }

    sg_buf_free(&out);
    free(ref);
    free(body);
    return 0;
}
