/* sg_gunzip: round trips, members, the decoded-size cap, and every way the input can be bad. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "streamgate/buf.h"
#include "../../src/ingest/gzip.h"

/* Compresses `len` bytes of `in` (or `len` zero bytes when `in` is NULL, fed in slices so no
 * large input buffer is needed) as one gzip member appended to `out`. */
static void gz_member(struct sg_buf *out, const void *in, size_t len)
{
    static const unsigned char zeros[64 * 1024];
    z_stream zs = {0};
    unsigned char chunk[16 * 1024];
    size_t left = len;
    const unsigned char *p = in;
    int flush;

    cr_assert_eq(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
    do {
        size_t n = left;
        if (in == NULL && n > sizeof(zeros))
            n = sizeof(zeros);
        zs.next_in = (Bytef *)(in == NULL ? zeros : p);
        zs.avail_in = (uInt)n;
        left -= n;
        if (p != NULL)
            p += n;
        flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
        do {
            zs.next_out = chunk;
            zs.avail_out = sizeof(chunk);
            int zret = deflate(&zs, flush);
            cr_assert(zret != Z_STREAM_ERROR);
            cr_assert_eq(sg_buf_append(out, chunk, sizeof(chunk) - zs.avail_out), 0);
        } while (zs.avail_out == 0);
    } while (flush != Z_FINISH);
    deflateEnd(&zs);
}

static const char text[] = "{\"key\":\"a\",\"value\":1}\n{\"key\":\"b\",\"value\":2}\n";

Test(gzip, round_trip)
{
    struct sg_buf gz, out;
    sg_buf_init(&gz, 0);
    sg_buf_init(&out, 0);
    gz_member(&gz, text, strlen(text));

    cr_assert_eq(sg_gunzip(gz.data, gz.len, 1 << 20, &out), 0);
    cr_assert_eq(out.len, strlen(text));
    cr_assert_eq(memcmp(out.data, text, out.len), 0);
    sg_buf_free(&gz);
    sg_buf_free(&out);
}

Test(gzip, appends_to_existing_content)
{
    struct sg_buf gz, out;
    sg_buf_init(&gz, 0);
    sg_buf_init(&out, 0);
    gz_member(&gz, "world", 5);
    cr_assert_eq(sg_buf_append_str(&out, "hello "), 0);

    cr_assert_eq(sg_gunzip(gz.data, gz.len, 100, &out), 0);
    cr_assert_eq(out.len, 11);
    cr_assert_eq(memcmp(out.data, "hello world", 11), 0);
    sg_buf_free(&gz);
    sg_buf_free(&out);
}

Test(gzip, large_round_trip_crosses_chunks)
{
    size_t n = 1000 * 1000;
    char *big = malloc(n);
    struct sg_buf gz, out;
    cr_assert_not_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + (i * 7 + i / 13) % 26);
    sg_buf_init(&gz, 0);
    sg_buf_init(&out, 0);
    gz_member(&gz, big, n);

    cr_assert_eq(sg_gunzip(gz.data, gz.len, n, &out), 0, "exactly at the cap is allowed");
    cr_assert_eq(out.len, n);
    cr_assert_eq(memcmp(out.data, big, n), 0);
    free(big);
    sg_buf_free(&gz);
    sg_buf_free(&out);
}

Test(gzip, empty_input_is_invalid)
{
    struct sg_buf out;
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_gunzip("", 0, 1024, &out), -EINVAL);
    cr_assert_eq(out.len, 0);
    sg_buf_free(&out);
}

Test(gzip, empty_member_decodes_to_nothing)
{
    struct sg_buf gz, out;
    sg_buf_init(&gz, 0);
    sg_buf_init(&out, 0);
    gz_member(&gz, "", 0);
    cr_assert_gt(gz.len, 0);

    cr_assert_eq(sg_gunzip(gz.data, gz.len, 1024, &out), 0);
    cr_assert_eq(out.len, 0);
    sg_buf_free(&gz);
    sg_buf_free(&out);
}

Test(gzip, truncated_at_every_length)
{
    struct sg_buf gz, out;
    sg_buf_init(&gz, 0);
    sg_buf_init(&out, 0);
    gz_member(&gz, text, strlen(text));

    /* Every proper prefix (header cut, deflate data cut, trailer cut) must be rejected. */
    for (size_t cut = 1; cut < gz.len; cut++) {
        int rc = sg_gunzip(gz.data, cut, 1 << 20, &out);
        cr_assert_eq(rc, -EINVAL, "prefix of %zu/%zu bytes gave %d", cut, gz.len, rc);
        cr_assert_eq(out.len, 0, "nothing is kept from a failed decode");
    }
    sg_buf_free(&gz);
    sg_buf_free(&out);
}

Test(gzip, corrupt_inputs)
{
    struct sg_buf gz, out;
    sg_buf_init(&gz, 0);
    sg_buf_init(&out, 0);
    gz_member(&gz, text, strlen(text));

    /* Not gzip at all. */
    cr_assert_eq(sg_gunzip(text, strlen(text), 1 << 20, &out), -EINVAL);
    /* Plain zlib (deflate with a zlib wrapper) is not gzip either. */
    {
        unsigned char z[256];
        uLongf zlen = sizeof(z);
        cr_assert_eq(compress(z, &zlen, (const Bytef *)text, strlen(text)), Z_OK);
        cr_assert_eq(sg_gunzip((const char *)z, zlen, 1 << 20, &out), -EINVAL);
    }
    /* Bad magic. */
    gz.data[0] ^= 0xff;
    cr_assert_eq(sg_gunzip(gz.data, gz.len, 1 << 20, &out), -EINVAL);
    gz.data[0] ^= 0xff;
    /* CRC-32 in the trailer (8 bytes from the end) does not match. */
    gz.data[gz.len - 8] ^= 0x01;
    cr_assert_eq(sg_gunzip(gz.data, gz.len, 1 << 20, &out), -EINVAL);
    gz.data[gz.len - 8] ^= 0x01;
    /* ISIZE in the trailer does not match. */
    gz.data[gz.len - 1] ^= 0x01;
    cr_assert_eq(sg_gunzip(gz.data, gz.len, 1 << 20, &out), -EINVAL);
    gz.data[gz.len - 1] ^= 0x01;
    /* Garbage after a complete member. */
    cr_assert_eq(sg_buf_append_str(&gz, "garbage"), 0);
    cr_assert_eq(sg_gunzip(gz.data, gz.len, 1 << 20, &out), -EINVAL);
    /* Zero padding after a member is trailing garbage too. */
    gz.len -= strlen("garbage");
    cr_assert_eq(sg_buf_append(&gz, "\0\0\0\0", 4), 0);
    cr_assert_eq(sg_gunzip(gz.data, gz.len, 1 << 20, &out), -EINVAL);
    gz.len -= 4;
    /* Intact again: decodes. */
    cr_assert_eq(sg_gunzip(gz.data, gz.len, 1 << 20, &out), 0);
    cr_assert_eq(out.len, strlen(text));

    /* Random bytes after a valid gzip header. */
    {
        unsigned char junk[512];
        unsigned int seed = 12345;
        memcpy(junk, gz.data, 10);
        for (size_t i = 10; i < sizeof(junk); i++) {
            seed = seed * 1103515245u + 12345u;
            junk[i] = (unsigned char)(seed >> 16);
        }
        sg_buf_reset(&out);
        cr_assert_eq(sg_gunzip((const char *)junk, sizeof(junk), 1 << 20, &out), -EINVAL);
        cr_assert_eq(out.len, 0);
    }
    sg_buf_free(&gz);
    sg_buf_free(&out);
}

Test(gzip, two_members_concatenate)
{
    struct sg_buf gz, out;
    sg_buf_init(&gz, 0);
    sg_buf_init(&out, 0);
    gz_member(&gz, "first,", 6);
    gz_member(&gz, "", 0);
    gz_member(&gz, "second", 6);

    cr_assert_eq(sg_gunzip(gz.data, gz.len, 1024, &out), 0);
    cr_assert_eq(out.len, 12);
    cr_assert_eq(memcmp(out.data, "first,second", 12), 0);

    /* The second member truncated. */
    sg_buf_reset(&out);
    cr_assert_eq(sg_gunzip(gz.data, gz.len - 3, 1024, &out), -EINVAL);
    cr_assert_eq(out.len, 0);

    /* The cap covers all members together. */
    cr_assert_eq(sg_gunzip(gz.data, gz.len, 11, &out), -E2BIG);
    cr_assert_eq(out.len, 0);
    cr_assert_eq(sg_gunzip(gz.data, gz.len, 12, &out), 0);
    sg_buf_free(&gz);
    sg_buf_free(&out);
}

Test(gzip, one_byte_over_the_cap)
{
    struct sg_buf gz, out;
    sg_buf_init(&gz, 0);
    sg_buf_init(&out, 0);
    gz_member(&gz, text, strlen(text));

    cr_assert_eq(sg_gunzip(gz.data, gz.len, strlen(text) - 1, &out), -E2BIG);
    cr_assert_eq(out.len, 0);
    cr_assert_eq(sg_gunzip(gz.data, gz.len, 0, &out), -E2BIG);
    cr_assert_eq(sg_gunzip(gz.data, gz.len, strlen(text), &out), 0);
    cr_assert_eq(out.len, strlen(text));
    sg_buf_free(&gz);
    sg_buf_free(&out);
}

Test(gzip, output_buffer_cap_applies)
{
    struct sg_buf gz, out;
    sg_buf_init(&gz, 0);
    sg_buf_init(&out, 10);
    gz_member(&gz, text, strlen(text));

    cr_assert_eq(sg_gunzip(gz.data, gz.len, 1 << 20, &out), -E2BIG);
    cr_assert_eq(out.len, 0);
    sg_buf_free(&gz);
    sg_buf_free(&out);
}

Test(gzip, zero_bomb_fails_fast_in_small_memory)
{
    const size_t bomb = 100u * 1000 * 1000;
    const size_t cap = 1 << 20;
    struct sg_buf gz, out;
    struct timespec t0, t1;
    sg_buf_init(&gz, 0);
    sg_buf_init(&out, 0);
    gz_member(&gz, NULL, bomb);
    cr_assert_lt(gz.len, 200 * 1000, "100 MB of zeros compresses to %zu bytes", gz.len);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(sg_gunzip(gz.data, gz.len, cap, &out), -E2BIG);
    clock_gettime(CLOCK_MONOTONIC, &t1);

    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    cr_assert_lt(secs, 1.0, "stopped at the cap, not after inflating the bomb (%.3fs)", secs);
    cr_assert_eq(out.len, 0);
    /* The output buffer stayed on the order of the cap (growth may round up), far from 100 MB. */
    cr_assert_leq(out.cap, 2 * cap, "output grew to %zu bytes", out.cap);
    sg_buf_free(&gz);
    sg_buf_free(&out);
}
