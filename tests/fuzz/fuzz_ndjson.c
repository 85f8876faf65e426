/* NDJSON framing across arbitrary read splits.
 *
 * Input layout: byte 0 picks the line limit, byte 1 picks after how many lines the callback
 * asks to stop (0: never), byte 2 is the number of split points and the next bytes their chunk
 * sizes; the rest is the stream. The stream is fed in those chunks, each copied into a heap
 * buffer of exactly its size so a read past a chunk is caught by the address sanitizer.
 *
 * What the framer hands out is compared with a model computed from the whole stream at once:
 * the stream's lines (split on '\n'), where a line longer than the limit comes out once as
 * too long with its first `limit` bytes, and any other line loses one trailing '\r' and is
 * skipped when blank. The outcome must not depend on the split points. Any difference
 * aborts. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ndjson.h"

#define STOP_RC 7 /* what the callback returns to stop; any non-zero value */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct expect_line {
    const char *data; /* into the whole stream */
    size_t len;
    bool too_long;
};

struct check {
    const struct expect_line *want;
    size_t nwant;
    size_t ngot;
    size_t stop_after; /* 0: never stop */
};

static void fail(const char *what, size_t index)
{
    fprintf(stderr, "fuzz_ndjson: %s (line %zu)\n", what, index);
    abort();
}

static int on_line(void *arg, const char *line, size_t len, bool too_long)
{
    struct check *ck = arg;
    const struct expect_line *w;

    if (ck->ngot >= ck->nwant)
        fail("more lines than the stream holds", ck->ngot);
    w = &ck->want[ck->ngot];
    if (w->too_long != too_long)
        fail(too_long ? "too_long for a line within the limit" : "a too-long line not flagged",
             ck->ngot);
    if (w->len != len)
        fail("line length differs", ck->ngot);
    if (len > 0 && memcmp(w->data, line, len) != 0)
        fail("line bytes differ", ck->ngot);
    ck->ngot++;
    if (ck->stop_after != 0 && ck->ngot == ck->stop_after)
        return STOP_RC;
    return 0;
}

static bool is_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return false;
    }
    return true;
}

/* The model: the lines of `s`, as the header of ndjson.h describes them. */
static size_t model_lines(const char *s, size_t len, size_t max_line, struct expect_line *out)
{
    size_t n = 0, pos = 0;

    while (pos < len) {
        const char *nl = memchr(s + pos, '\n', len - pos);
        size_t seg = nl ? (size_t)(nl - (s + pos)) : len - pos;
        const char *line = s + pos;

        if (seg > max_line) {
            out[n++] = (struct expect_line){line, max_line, true};
        } else {
            size_t l = seg;
            if (l > 0 && line[l - 1] == '\r')
                l--;
            if (!is_blank(line, l))
                out[n++] = (struct expect_line){line, l, false};
        }
        pos += seg + (nl ? 1 : 0);
    }
    return n;
}

static size_t pick_limit(uint8_t b)
{
    /* Mostly small limits so lines cross them often; now and then one no line reaches. */
    if (b == 0xff)
        return (size_t)1 << 20;
    return (size_t)(b % 64) + 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sg_ndjson fr;
    struct expect_line *want;
    struct check ck = {0};
    size_t max_line, nsplits, pos, stream_len;
    size_t chunks[16];
    size_t nchunks = 0;
    const char *stream;
    int rc = 0;

    if (size < 3)
        return 0;
    max_line = pick_limit(data[0]);
    ck.stop_after = data[1] % 8;
    nsplits = data[2] % 16;
    pos = 3;
    if (size - pos < nsplits)
        return 0;
    for (size_t i = 0; i < nsplits; i++)
        chunks[nchunks++] = data[pos++];
    stream = (const char *)data + pos;
    stream_len = size - pos;

    /* At most one line per byte, plus one. */
    want = malloc((stream_len + 1) * sizeof(*want));
    if (!want)
        return 0;
    ck.want = want;
    ck.nwant = model_lines(stream, stream_len, max_line, want);

    sg_ndjson_init(&fr, max_line);
    pos = 0;
    for (size_t c = 0; rc == 0 && pos < stream_len; c++) {
        /* The chunk sizes repeat; a zero size feeds an empty chunk, which must be harmless. */
        size_t n = c < nchunks * 4 && nchunks > 0 ? chunks[c % nchunks] : stream_len - pos;
        char *copy;

        if (n > stream_len - pos)
            n = stream_len - pos;
        copy = malloc(n ? n : 1);
        if (!copy)
            abort();
        memcpy(copy, stream + pos, n);
        rc = sg_ndjson_feed(&fr, copy, n, on_line, &ck);
        free(copy);
        pos += n;
    }
    if (rc == 0)
        rc = sg_ndjson_finish(&fr, on_line, &ck);
    sg_ndjson_free(&fr);

    if (ck.stop_after != 0 && ck.nwant >= ck.stop_after) {
        if (rc != STOP_RC)
            fail("the callback's stop value was not returned", ck.ngot);
        if (ck.ngot != ck.stop_after)
            fail("lines handed out after the callback asked to stop", ck.ngot);
    } else {
        if (rc != 0)
            fail("feed or finish failed", ck.ngot);
        if (ck.ngot != ck.nwant)
            fail("fewer lines than the stream holds", ck.ngot);
    }
    free(want);
    return 0;
}
