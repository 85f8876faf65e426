/* Splitting a JSON array body into its elements' byte ranges.
 *
 * The scan knows only what framing needs: strings (so brackets and commas inside them are not
 * structure), escapes (so \" does not end a string), the nesting of {} and [], and at the
 * array's own level the commas between elements. It does not look inside elements: whether
 * an element is valid JSON is for the event decoder to judge, one element at a time.
 *
 * The framing is checked before anything is handed out, so a body whose framing is broken
 * hands out no element at all: a first pass checks it and remembers where the first
 * SG_JSON_SPLIT_REMEMBER elements lie, and a second hands those out and scans only past them.
 * Neither pass allocates: the nesting stack and the marks are fixed arrays on the C stack. */
#include "json_split.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "word.h"

/* Depth of {} and [] nesting, the outer array included. Deeper bodies are refused rather
 * than scanned, which also keeps the decoder's recursion bounded later. */
#define SG_JSON_SPLIT_MAX_DEPTH 512

static bool sg_json__is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* 1 for the bytes that matter inside a nested value: quote and brackets. Everything else is
 * skipped in a tight loop. */
static const unsigned char sg_json__structural[256] = {
    ['"'] = 1, ['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1,
};

/* 1 for the bytes that end a bare (unquoted) element such as a number or `true`. */
static const unsigned char sg_json__bare_end[256] = {
    [' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1, [','] = 1,
    ['"'] = 1, ['{'] = 1,  ['}'] = 1,  ['['] = 1,  [']'] = 1,
};

struct sg_json__scan {
    const char *body;
    size_t len;
    size_t err_offset;
    const char *err_msg;
};

static int sg_json__fail(struct sg_json__scan *sc, size_t offset, const char *msg)
{
    sc->err_offset = offset;
    sc->err_msg = msg;
    return -EINVAL;
}

/* The offset of the first '"' at or after `i`, or SIZE_MAX. Most strings in events are a few
 * bytes long, where a call to memchr costs more than the search: eight bytes at a time here
 * (a word's lowest mark of a zero byte after the xor is exact), then memchr for long ones. */
static inline size_t sg_json__find_quote(const char *body, size_t len, size_t i)
{
    for (size_t stop = len - i > 64 ? i + 64 : len; i + 8 <= stop; i += 8) {
        uint64_t hit = sg_word_match(sg_word_load(body + i), '"');
        if (hit)
            return i + (size_t)__builtin_ctzll(hit) / 8;
    }
    const char *q = memchr(body + i, '"', len - i);
    return q ? (size_t)(q - body) : SIZE_MAX;
}

/* `open` is the offset of a string's opening quote. Returns the offset just past the closing
 * quote, or SIZE_MAX when the string does not end. A quote ends the string unless an odd
 * number of backslashes precedes it; looking for quotes and counting backslashes backwards
 * keeps the common case (few escapes) fast, and each backslash is counted at most once
 * because the runs between quotes do not overlap. */
static size_t sg_json__string_end(const char *body, size_t len, size_t open)
{
    size_t i = open + 1;
    while (i < len) {
        size_t at = sg_json__find_quote(body, len, i), bs = 0;
        if (at == SIZE_MAX)
            return SIZE_MAX;
        while (at - bs > open + 1 && body[at - bs - 1] == '\\')
            bs++;
        if ((bs & 1) == 0)
            return at + 1;
        i = at + 1;
    }
    return SIZE_MAX;
}

/* `i` is the offset of a '{' or '[' opening an element. Sets `*out` to the offset just past
 * its matching closer and returns 0, or returns -EINVAL. */
static int sg_json__nested_end(struct sg_json__scan *sc, size_t i, size_t *out)
{
    unsigned char stack[SG_JSON_SPLIT_MAX_DEPTH];
    size_t depth = 1; /* the outer array */
    const char *body = sc->body;
    size_t len = sc->len;

    for (;;) {
        unsigned char c;
        while (i < len && !sg_json__structural[(unsigned char)body[i]])
            i++;
        if (i >= len)
            return sg_json__fail(sc, len, "unbalanced brackets");
        c = (unsigned char)body[i];
        switch (c) {
        case '"': {
            size_t e = sg_json__string_end(body, len, i);
            if (e == SIZE_MAX)
                return sg_json__fail(sc, i, "unterminated string");
            i = e;
            continue;
        }
        case '{':
        case '[':
            if (depth >= SG_JSON_SPLIT_MAX_DEPTH)
                return sg_json__fail(sc, i, "nesting too deep");
            stack[depth++] = c;
            break;
        default: /* '}' or ']' */
            if (depth <= 1 || stack[depth - 1] != (c == '}' ? '{' : '['))
                return sg_json__fail(sc, i, "unbalanced brackets");
            if (--depth == 1) {
                *out = i + 1;
                return 0;
            }
            break;
        }
        i++;
    }
}

/* Elements the first pass remembers, so the second hands them out without scanning again;
 * the second pass scans only past them. */
#define SG_JSON_SPLIT_REMEMBER 256

struct sg_json__marks {
    size_t n;                             /* elements remembered */
    size_t start[SG_JSON_SPLIT_REMEMBER]; /* their offsets */
    size_t end[SG_JSON_SPLIT_REMEMBER];   /* just past each */
    size_t resume;                        /* where the element after the last one starts */
    bool done;                            /* the array ends with the last one */
};

/* Scans the array whose '[' is at `open`. With `cb` NULL it only checks the framing,
 * remembers the first elements in `m` and returns the element count or -EINVAL; with `cb` it
 * hands the elements out (the framing being known good): those `m` remembers, then the rest
 * as it scans them. Returns the count or the callback's non-zero value. */
static int sg_json__scan_array(struct sg_json__scan *sc, size_t open, sg_json_element_cb cb,
                               void *arg, struct sg_json__marks *m)
{
    const char *body = sc->body;
    size_t len = sc->len;
    size_t i = open + 1, count = 0;
    bool first = true;

    if (cb) {
        for (; count < m->n; count++) {
            int rc = cb(arg, count, body + m->start[count], m->end[count] - m->start[count],
                        m->start[count]);
            if (rc != 0)
                return rc;
        }
        if (m->n < SG_JSON_SPLIT_REMEMBER || m->done)
            return (int)count; /* every element was remembered */
        i = m->resume;
        first = false;
    }

    for (;;) {
        size_t start, end;
        unsigned char c;

        /* Before an element: whitespace, then the element, or ']' right after '['. */
        while (i < len && sg_json__is_ws((unsigned char)body[i]))
            i++;
        if (i >= len)
            return sg_json__fail(sc, len, "unbalanced brackets");
        c = (unsigned char)body[i];
        if (c == ']' && first) {
            i++;
            break;
        }
        if (c == ',' || c == ']')
            return sg_json__fail(sc, i, "empty element");
        if (c == '}')
            return sg_json__fail(sc, i, "unbalanced brackets");
        first = false;

        /* The element: a string, a bracketed value, or a run of bare bytes. */
        start = i;
        if (c == '"') {
            end = sg_json__string_end(body, len, i);
            if (end == SIZE_MAX)
                return sg_json__fail(sc, i, "unterminated string");
        } else if (c == '{' || c == '[') {
            int rc = sg_json__nested_end(sc, i, &end);
            if (rc != 0)
                return rc;
        } else {
            end = i;
            while (end < len && !sg_json__bare_end[(unsigned char)body[end]])
                end++;
        }
        i = end;

        /* After an element: whitespace, then ',' or ']'. */
        while (i < len && sg_json__is_ws((unsigned char)body[i]))
            i++;
        if (i >= len)
            return sg_json__fail(sc, len, "unbalanced brackets");
        c = (unsigned char)body[i];
        if (c == '}')
            return sg_json__fail(sc, i, "unbalanced brackets");
        if (c != ',' && c != ']')
            return sg_json__fail(sc, i, "expected ',' or ']'");
        if (count == INT_MAX)
            return sg_json__fail(sc, start, "too many elements");
        if (cb) {
            int rc = cb(arg, count, body + start, end - start, start);
            if (rc != 0)
                return rc;
        } else if (m->n < SG_JSON_SPLIT_REMEMBER) {
            m->start[m->n] = start;
            m->end[m->n++] = end;
            m->resume = i + 1;
            m->done = c == ']';
        }
        count++;
        i++;
        if (c == ']')
            break;
    }

    while (i < len && sg_json__is_ws((unsigned char)body[i]))
        i++;
    if (i < len)
        return sg_json__fail(sc, i, "trailing data after the array");
    return (int)count;
}

int sg_json_split(const char *body, size_t len, sg_json_element_cb cb, void *arg,
                  size_t *err_offset, const char **err_msg)
{
    struct sg_json__scan sc = {.body = body, .len = len, .err_offset = 0, .err_msg = NULL};
    size_t start = 0, end = len;
    int rc;

    if (body == NULL)
        end = 0;
    while (start < end && sg_json__is_ws((unsigned char)body[start]))
        start++;
    if (start == end) {
        rc = sg_json__fail(&sc, start, "empty body");
        goto out;
    }

    if (body[start] != '[') {
        /* One event: the decoder judges it. */
        while (end > start && sg_json__is_ws((unsigned char)body[end - 1]))
            end--;
        rc = cb(arg, 0, body + start, end - start, start);
        if (rc == 0)
            rc = 1;
        goto out;
    }

    struct sg_json__marks marks;
    marks.n = 0;
    marks.done = false;
    rc = sg_json__scan_array(&sc, start, NULL, NULL, &marks);
    if (rc > 0)
        rc = sg_json__scan_array(&sc, start, cb, arg, &marks);

out:
    if (rc == -EINVAL && sc.err_msg) {
        if (err_offset)
            *err_offset = sc.err_offset;
        if (err_msg)
            *err_msg = sc.err_msg;
    }
    return rc;
}

bool sg_json_looks_like_ndjson(const char *body, size_t len)
{
    struct sg_json__scan sc = {.body = body, .len = len, .err_offset = 0, .err_msg = NULL};
    size_t start = 0, end, i;
    bool newline = false;

    if (body == NULL)
        return false;
    while (start < len && sg_json__is_ws((unsigned char)body[start]))
        start++;
    if (start == len || body[start] != '{' || sg_json__nested_end(&sc, start, &end) != 0 ||
        memchr(body + start, '\n', end - start) != NULL)
        return false;
    for (i = end; i < len && sg_json__is_ws((unsigned char)body[i]); i++)
        newline |= body[i] == '\n';
    return newline && i < len && body[i] == '{';
}
