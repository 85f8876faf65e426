/* NDJSON framing: lines in place, lines across chunks, CRLF, blank lines, too-long lines, the
 * final line without a newline, and stopping from the callback. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/ingest/ndjson.h"

/* Every callback is written down as "L<len>:<bytes>|" or "T<len>:<bytes>|" (too long). */
struct seen {
    char log[16384];
    size_t loglen;
    size_t nlines;
    size_t ntoo_long;
    size_t stop_at; /* return 99 from the callback for this line (1-based); 0: never */
    const char *chunk;
    size_t chunk_len;
    size_t in_place; /* lines whose bytes lie inside the chunk being fed */
};

static int record(void *arg, const char *line, size_t len, bool too_long)
{
    struct seen *s = arg;
    int n = snprintf(s->log + s->loglen, sizeof(s->log) - s->loglen, "%c%zu:", too_long ? 'T' : 'L',
                     len);
    cr_assert(n > 0 && (size_t)n < sizeof(s->log) - s->loglen);
    s->loglen += (size_t)n;
    cr_assert_lt(s->loglen + len + 1, sizeof(s->log));
    memcpy(s->log + s->loglen, line, len);
    s->loglen += len;
    s->log[s->loglen++] = '|';
    s->log[s->loglen] = '\0';
    if (too_long)
        s->ntoo_long++;
    else
        s->nlines++;
    if (s->chunk && line >= s->chunk && line + len <= s->chunk + s->chunk_len)
        s->in_place++;
    if (s->stop_at && s->nlines + s->ntoo_long == s->stop_at)
        return 99;
    return 0;
}

/* Feeds one chunk from a heap buffer of exactly its size, then scribbles over it so that a
 * line kept by reference instead of copied would show up as garbage. */
static int feed(struct sg_ndjson *fr, struct seen *s, const char *data, size_t len)
{
    char *chunk = malloc(len ? len : 1);
    int rc;
    cr_assert_not_null(chunk);
    memcpy(chunk, data, len);
    s->chunk = chunk;
    s->chunk_len = len;
    rc = sg_ndjson_feed(fr, chunk, len, record, s);
    memset(chunk, '#', len);
    free(chunk);
    s->chunk = NULL;
    return rc;
}

static void feed_str(struct sg_ndjson *fr, struct seen *s, const char *data)
{
    cr_assert_eq(feed(fr, s, data, strlen(data)), 0);
}

static void finish(struct sg_ndjson *fr, struct seen *s)
{
    cr_assert_eq(sg_ndjson_finish(fr, record, s), 0);
}

/* Frames `data` as one chunk and returns the log. */
static void frame_whole(const char *data, size_t len, size_t max_line, struct seen *out)
{
    struct sg_ndjson fr;
    memset(out, 0, sizeof(*out));
    sg_ndjson_init(&fr, max_line);
    cr_assert_eq(feed(&fr, out, data, len), 0);
    cr_assert_eq(sg_ndjson_finish(&fr, record, out), 0);
    sg_ndjson_free(&fr);
}

Test(ndjson, lines_in_one_chunk_are_in_place)
{
    struct sg_ndjson fr;
    struct seen s = {0};
    sg_ndjson_init(&fr, 64);
    feed_str(&fr, &s, "{\"a\":1}\n{\"b\":2}\nx\n");
    cr_assert_str_eq(s.log, "L7:{\"a\":1}|L7:{\"b\":2}|L1:x|");
    cr_assert_eq(s.in_place, 3, "complete lines are not copied");
    cr_assert_eq(fr.partial.len, 0);
    finish(&fr, &s);
    cr_assert_eq(s.nlines, 3);
    sg_ndjson_free(&fr);
}

Test(ndjson, line_across_chunks_is_copied)
{
    struct sg_ndjson fr;
    struct seen s = {0};
    sg_ndjson_init(&fr, 64);
    feed_str(&fr, &s, "first\nsec");
    cr_assert_str_eq(s.log, "L5:first|");
    cr_assert_eq(fr.partial.len, 3);
    feed_str(&fr, &s, "o");
    feed_str(&fr, &s, "nd\nthird\n");
    cr_assert_str_eq(s.log, "L5:first|L6:second|L5:third|");
    cr_assert_eq(s.in_place, 2, "only the straddling line was copied");
    cr_assert_eq(fr.partial.len, 0);
    sg_ndjson_free(&fr);
}

Test(ndjson, crlf)
{
    struct sg_ndjson fr;
    struct seen s = {0};
    sg_ndjson_init(&fr, 64);
    feed_str(&fr, &s, "a\r\nbb\r\nc\r\r\n");
    cr_assert_str_eq(s.log, "L1:a|L2:bb|L2:c\r|", "one trailing CR is dropped");
    feed_str(&fr, &s, "d\r");
    feed_str(&fr, &s, "\ne\r");
    finish(&fr, &s);
    cr_assert_str_eq(s.log, "L1:a|L2:bb|L2:c\r|L1:d|L1:e|");
    sg_ndjson_free(&fr);
}

Test(ndjson, cr_inside_a_line_is_kept)
{
    struct seen s;
    frame_whole("a\rb\n", 4, 64, &s);
    cr_assert_str_eq(s.log, "L3:a\rb|");
}

Test(ndjson, blank_lines_skipped)
{
    struct seen s;
    const char *data = "\n\n  \n\t\r\n \t \r\nx\n\r\n \n";
    frame_whole(data, strlen(data), 64, &s);
    cr_assert_str_eq(s.log, "L1:x|");
    frame_whole("\n", 1, 64, &s);
    cr_assert_eq(s.loglen, 0);
    frame_whole("   ", 3, 64, &s);
    cr_assert_eq(s.loglen, 0, "a blank final line is skipped too");
    /* Other whitespace is content: the decoder judges it. */
    frame_whole("\v\n", 2, 64, &s);
    cr_assert_str_eq(s.log, "L1:\v|");
    frame_whole(" x \n", 4, 64, &s);
    cr_assert_str_eq(s.log, "L3: x |");
}

Test(ndjson, final_line_via_finish)
{
    struct sg_ndjson fr;
    struct seen s = {0};
    sg_ndjson_init(&fr, 64);
    feed_str(&fr, &s, "a\nlast");
    cr_assert_str_eq(s.log, "L1:a|");
    finish(&fr, &s);
    cr_assert_str_eq(s.log, "L1:a|L4:last|");
    /* finish resets: a second one hands out nothing, and the framer can be fed again. */
    finish(&fr, &s);
    cr_assert_str_eq(s.log, "L1:a|L4:last|");
    feed_str(&fr, &s, "more");
    finish(&fr, &s);
    cr_assert_str_eq(s.log, "L1:a|L4:last|L4:more|");
    sg_ndjson_free(&fr);
}

Test(ndjson, finish_on_nothing)
{
    struct sg_ndjson fr;
    struct seen s = {0};
    sg_ndjson_init(&fr, 64);
    finish(&fr, &s);
    feed_str(&fr, &s, "");
    feed_str(&fr, &s, "a\n");
    finish(&fr, &s);
    cr_assert_str_eq(s.log, "L1:a|");
    sg_ndjson_free(&fr);
    sg_ndjson_free(&fr);
}

Test(ndjson, exactly_max_line)
{
    struct sg_ndjson fr;
    struct seen s = {0};
    sg_ndjson_init(&fr, 8);
    feed_str(&fr, &s, "12345678\n");
    feed_str(&fr, &s, "1234");
    feed_str(&fr, &s, "5678");
    cr_assert_eq(fr.partial.len, 8);
    feed_str(&fr, &s, "\nabcdefgh");
    finish(&fr, &s);
    cr_assert_str_eq(s.log, "L8:12345678|L8:12345678|L8:abcdefgh|");
    cr_assert_eq(s.ntoo_long, 0);
    sg_ndjson_free(&fr);
}

Test(ndjson, limit_counts_a_trailing_cr)
{
    /* The limit counts every byte before the newline; a CR is one of them. */
    struct seen s;
    frame_whole("1234567\r\n12345678\r\n", 19, 8, &s);
    cr_assert_str_eq(s.log, "L7:1234567|T8:12345678|");
}

Test(ndjson, too_long_in_one_chunk)
{
    struct sg_ndjson fr;
    struct seen s = {0};
    sg_ndjson_init(&fr, 8);
    feed_str(&fr, &s, "ok\n123456789\nfine\n");
    cr_assert_str_eq(s.log, "L2:ok|T8:12345678|L4:fine|");
    cr_assert_eq(s.ntoo_long, 1);
    cr_assert_eq(fr.partial.len, 0);
    cr_assert_not(fr.discarding);
    sg_ndjson_free(&fr);
}

Test(ndjson, too_long_spanning_chunks)
{
    struct sg_ndjson fr;
    struct seen s = {0};
    sg_ndjson_init(&fr, 8);
    feed_str(&fr, &s, "a\n1234");
    feed_str(&fr, &s, "56789abc");
    cr_assert_str_eq(s.log, "L1:a|T8:12345678|", "reported as soon as it passes the limit");
    cr_assert(fr.discarding);
    feed_str(&fr, &s, "defghijklmnopqrstuvwxyz");
    feed_str(&fr, &s, "0123456789");
    feed_str(&fr, &s, "tail\nnext\n");
    feed_str(&fr, &s, "end");
    finish(&fr, &s);
    cr_assert_str_eq(s.log, "L1:a|T8:12345678|L4:next|L3:end|");
    cr_assert_eq(s.ntoo_long, 1, "reported once");
    cr_assert_leq(fr.partial.cap, 9, "the buffer never grows past the limit");
    sg_ndjson_free(&fr);
}

Test(ndjson, too_long_at_end_of_input)
{
    struct sg_ndjson fr;
    struct seen s = {0};
    sg_ndjson_init(&fr, 4);
    feed_str(&fr, &s, "ab\nabcdefgh");
    finish(&fr, &s);
    cr_assert_str_eq(s.log, "L2:ab|T4:abcd|", "nothing more for a line being discarded");
    cr_assert_not(fr.discarding, "finish resets");
    feed_str(&fr, &s, "x\n");
    cr_assert_str_eq(s.log, "L2:ab|T4:abcd|L1:x|");
    sg_ndjson_free(&fr);
}

Test(ndjson, too_long_from_partial)
{
    /* The start of the line is buffered, then a chunk pushes it over the limit while its
     * newline is in that same chunk. */
    struct sg_ndjson fr;
    struct seen s = {0};
    sg_ndjson_init(&fr, 8);
    feed_str(&fr, &s, "123456");
    feed_str(&fr, &s, "789\nok\n");
    cr_assert_str_eq(s.log, "T8:12345678|L2:ok|");
    cr_assert_not(fr.discarding);
    sg_ndjson_free(&fr);
}

Test(ndjson, blank_but_too_long)
{
    /* Blankness is only judged within the limit, so the outcome does not depend on splits. */
    struct seen s;
    frame_whole("          \nx\n", 13, 8, &s);
    cr_assert_str_eq(s.log, "T8:        |L1:x|");
}

Test(ndjson, zero_limit)
{
    struct seen s;
    frame_whole("a\n\n\nbc", 6, 0, &s);
    cr_assert_str_eq(s.log, "T0:|T0:|");
}

Test(ndjson, callback_stop)
{
    struct sg_ndjson fr;
    struct seen s = {.stop_at = 2};
    sg_ndjson_init(&fr, 64);
    cr_assert_eq(feed(&fr, &s, "a\nb\nc\n", 6), 99);
    cr_assert_str_eq(s.log, "L1:a|L1:b|", "the rest of the chunk is not consumed");
    sg_ndjson_free(&fr);

    memset(&s, 0, sizeof(s));
    s.stop_at = 1;
    sg_ndjson_init(&fr, 4);
    cr_assert_eq(feed(&fr, &s, "abcdef\nx\n", 9), 99, "a too-long report can stop too");
    cr_assert_str_eq(s.log, "T4:abcd|");
    sg_ndjson_free(&fr);

    memset(&s, 0, sizeof(s));
    s.stop_at = 1;
    sg_ndjson_init(&fr, 64);
    cr_assert_eq(feed(&fr, &s, "part", 4), 0);
    cr_assert_eq(sg_ndjson_finish(&fr, record, &s), 99, "finish returns the stop");
    cr_assert_str_eq(s.log, "L4:part|");
    sg_ndjson_free(&fr);
}

/* A sample with every case: short and empty lines, CRLF, a line of exactly the limit, lines
 * over it by one and by many, blank lines, a final line without a newline. */
static const char sample[] = "{\"k\":1}\n"
                             "\n"
                             "abc\r\n"
                             "0123456789abcdef\n"                          /* exactly 16 */
                             "0123456789abcdefg\n"                         /* 17: too long */
                             "   \t \r\n"                                  /* blank */
                             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n" /* too long */
                             "\r\n"
                             "y\n"
                             "0123456789abcde\r\n" /* 16 with the CR */
                             "last";
#define SAMPLE_MAX 16

Test(ndjson, every_split_point_matches_one_chunk)
{
    size_t n = sizeof(sample) - 1;
    struct seen whole, s;
    frame_whole(sample, n, SAMPLE_MAX, &whole);
    cr_assert_str_eq(whole.log, "L7:{\"k\":1}|L3:abc|L16:0123456789abcdef|T16:0123456789abcdef|"
                                "T16:xxxxxxxxxxxxxxxx|L1:y|L15:0123456789abcde|L4:last|");

    for (size_t i = 0; i <= n; i++) {
        struct sg_ndjson fr;
        memset(&s, 0, sizeof(s));
        sg_ndjson_init(&fr, SAMPLE_MAX);
        cr_assert_eq(feed(&fr, &s, sample, i), 0);
        cr_assert_eq(feed(&fr, &s, sample + i, n - i), 0);
        finish(&fr, &s);
        cr_assert_str_eq(s.log, whole.log, "split at %zu", i);
        sg_ndjson_free(&fr);
    }
}

Test(ndjson, every_pair_of_split_points_matches_one_chunk)
{
    size_t n = sizeof(sample) - 1;
    struct seen whole, s;
    frame_whole(sample, n, SAMPLE_MAX, &whole);
    for (size_t i = 0; i <= n; i++) {
        for (size_t j = i; j <= n; j++) {
            struct sg_ndjson fr;
            memset(&s, 0, sizeof(s));
            sg_ndjson_init(&fr, SAMPLE_MAX);
            cr_assert_eq(feed(&fr, &s, sample, i), 0);
            cr_assert_eq(feed(&fr, &s, sample + i, j - i), 0);
            cr_assert_eq(feed(&fr, &s, sample + j, n - j), 0);
            finish(&fr, &s);
            cr_assert_str_eq(s.log, whole.log, "split at %zu and %zu", i, j);
            sg_ndjson_free(&fr);
        }
    }
}

Test(ndjson, one_byte_chunks)
{
    size_t n = sizeof(sample) - 1;
    struct seen whole, s = {0};
    struct sg_ndjson fr;
    frame_whole(sample, n, SAMPLE_MAX, &whole);
    sg_ndjson_init(&fr, SAMPLE_MAX);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(feed(&fr, &s, sample + i, 1), 0);
    finish(&fr, &s);
    cr_assert_str_eq(s.log, whole.log);
    cr_assert_leq(fr.partial.len, SAMPLE_MAX);
    sg_ndjson_free(&fr);
}

struct numbered {
    int next;
    int bad;
};

static int check_numbered(void *arg, const char *line, size_t len, bool too_long)
{
    struct numbered *nb = arg;
    char want[32];
    int n = snprintf(want, sizeof(want), "{\"i\":%d}", nb->next);
    if (too_long || len != (size_t)n || memcmp(line, want, len) != 0)
        nb->bad++;
    nb->next++;
    return 0;
}

Test(ndjson, many_lines_tiny_chunks)
{
    /* A thousand lines fed in chunks of 1 to 7 bytes arrive whole and in order. */
    char *data = malloc(1000 * 16);
    size_t n = 0;
    struct sg_ndjson fr;
    struct numbered nb = {0};
    for (int i = 0; i < 1000; i++)
        n += (size_t)sprintf(data + n, "{\"i\":%d}\n", i);
    sg_ndjson_init(&fr, 32);
    for (size_t pos = 0, step = 1; pos < n; pos += step, step = step % 7 + 1) {
        size_t len = step < n - pos ? step : n - pos;
        cr_assert_eq(sg_ndjson_feed(&fr, data + pos, len, check_numbered, &nb), 0);
    }
    cr_assert_eq(sg_ndjson_finish(&fr, check_numbered, &nb), 0);
    cr_assert_eq(nb.next, 1000);
    cr_assert_eq(nb.bad, 0);
    cr_assert_leq(fr.partial.cap, 33);
    sg_ndjson_free(&fr);
    free(data);
}
