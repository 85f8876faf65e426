/* Splitting a JSON array body into its elements' byte ranges.
 *
 * The scan knows only what framing needs: strings (so brackets and commas inside them are not
 * structure), escapes (so \" does not end a string), the nesting of {} and [], and at the
 * array's own level the commas between elements. It does not look inside elements: whether
 * an element is valid JSON is for the event decoder to judge, one element at a time.
 *
 * The same scan runs twice. The first pass only checks the framing, so a body whose framing
 * is broken hands out no element at all; the second hands the elements out. Neither pass
 * allocates: the nesting stack is a fixed array on the C stack. */
#include "streamgate/json_split.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

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

/* `open` is the offset of a string's opening quote. Returns the offset just past the closing
 * quote, or SIZE_MAX when the string does not end. A quote ends the string unless an odd
 * number of backslashes precedes it; looking for quotes with memchr and counting backslashes
 * backwards keeps the common case (few escapes) at memchr speed, and each backslash is
 * counted at most once because the runs between quotes do not overlap. */
static size_t sg_json__string_end(const char *body, size_t len, size_t open)
{
    size_t i = open + 1;
    while (i < len) {
        const char *q = memchr(body + i, '"', len - i);
        size_t at, bs = 0;
        if (q == NULL)
            return SIZE_MAX;
        at = (size_t)(q - body);
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

/* Scans the array whose '[' is at `open`. With `cb` NULL it only checks the framing and
 * returns the element count or -EINVAL; with `cb` it hands the elements out (the framing
 * being known good) and returns the count or the callback's non-zero value. */
static int sg_json__scan_array(struct sg_json__scan *sc, size_t open, sg_json_element_cb cb,
                               void *arg)
{
    const char *body = sc->body;
    size_t len = sc->len;
    size_t i = open + 1, count = 0;
    bool first = true;

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

    rc = sg_json__scan_array(&sc, start, NULL, NULL);
    if (rc > 0)
        rc = sg_json__scan_array(&sc, start, cb, arg);

out:
    if (rc == -EINVAL && sc.err_msg) {
        if (err_offset)
            *err_offset = sc.err_offset;
        if (err_msg)
            *err_msg = sc.err_msg;
    }
    return rc;
}
