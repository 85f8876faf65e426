/* Splitting a JSON body into elements: ranges, offsets, framing errors, and the guarantee
 * that a badly framed body hands out nothing. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/ingest/json_split.h"

#define MAX_ELEMS 1024

struct collected {
    const char *body;
    size_t n;
    size_t index[MAX_ELEMS];
    size_t offset[MAX_ELEMS];
    char *text[MAX_ELEMS];
    int stop_after; /* return -ECANCELED from this callback (1-based); 0: never */
};

static int collect(void *arg, size_t index, const char *elem, size_t len, size_t offset)
{
    struct collected *c = arg;
    cr_assert_lt(c->n, MAX_ELEMS);
    /* The element is a slice of the body at the stated offset. */
    cr_assert_eq(elem, c->body + offset);
    c->index[c->n] = index;
    c->offset[c->n] = offset;
    /* A copy, not strndup: the slice is not NUL-terminated and strndup may read past it. */
    c->text[c->n] = malloc(len + 1);
    cr_assert_not_null(c->text[c->n]);
    memcpy(c->text[c->n], elem, len);
    c->text[c->n][len] = '\0';
    c->n++;
    if (c->stop_after && (int)c->n == c->stop_after)
        return -ECANCELED;
    return 0;
}

static void collected_free(struct collected *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->text[i]);
    c->n = 0;
}

static char *heap_copy;

static void teardown(void)
{
    free(heap_copy);
    heap_copy = NULL;
}

TestSuite(json_split, .fini = teardown);

/* Splits `len` bytes of `s`, copied to a heap buffer of exactly that size so that a read past
 * the end is caught by the address sanitizer. */
static int split_n(const char *s, size_t len, struct collected *c, size_t *err_off,
                   const char **err_msg)
{
    free(heap_copy);
    heap_copy = malloc(len ? len : 1);
    cr_assert_not_null(heap_copy);
    memcpy(heap_copy, s, len);
    c->body = heap_copy;
    *err_off = (size_t)-1;
    *err_msg = NULL;
    return sg_json_split(heap_copy, len, collect, c, err_off, err_msg);
}

static int split(const char *s, struct collected *c, size_t *err_off, const char **err_msg)
{
    return split_n(s, strlen(s), c, err_off, err_msg);
}

#define assert_framing_error(body, want_off, want_msg)                                             \
    do {                                                                                           \
        struct collected c_ = {0};                                                                 \
        size_t off_;                                                                               \
        const char *msg_;                                                                          \
        int rc_ = split(body, &c_, &off_, &msg_);                                                  \
        cr_assert_eq(rc_, -EINVAL, "%s: rc %d", body, rc_);                                        \
        cr_assert_eq(c_.n, 0, "%s: %zu callbacks before the error", body, c_.n);                   \
        cr_assert_not_null(msg_, "%s", body);                                                      \
        cr_assert_str_eq(msg_, want_msg, "%s", body);                                              \
        cr_assert_eq(off_, (size_t)(want_off), "%s: offset %zu, want %zu", body, off_,             \
                     (size_t)(want_off));                                                          \
    } while (0)

Test(json_split, single_object)
{
    struct collected c = {0};
    size_t off;
    const char *msg;
    cr_assert_eq(split("{\"key\":\"a\"}", &c, &off, &msg), 1);
    cr_assert_eq(c.n, 1);
    cr_assert_eq(c.index[0], 0);
    cr_assert_eq(c.offset[0], 0);
    cr_assert_str_eq(c.text[0], "{\"key\":\"a\"}");
    cr_assert_null(msg, "no error on success");
    collected_free(&c);
}

Test(json_split, single_value_trimmed_not_judged)
{
    struct collected c = {0};
    size_t off;
    const char *msg;
    /* Anything that is not an array goes to the decoder as is, trimmed. */
    cr_assert_eq(split(" \r\n\t{\"a\": } junk \n", &c, &off, &msg), 1);
    cr_assert_eq(c.n, 1);
    cr_assert_eq(c.offset[0], 4);
    cr_assert_str_eq(c.text[0], "{\"a\": } junk");
    collected_free(&c);

    cr_assert_eq(split("42", &c, &off, &msg), 1);
    cr_assert_str_eq(c.text[0], "42");
    collected_free(&c);

    cr_assert_eq(split("\"unterminated", &c, &off, &msg), 1);
    cr_assert_str_eq(c.text[0], "\"unterminated");
    collected_free(&c);
}

Test(json_split, empty_body)
{
    struct collected c = {0};
    size_t off;
    const char *msg;
    cr_assert_eq(split("", &c, &off, &msg), -EINVAL);
    cr_assert_str_eq(msg, "empty body");
    cr_assert_eq(off, 0);
    cr_assert_eq(split(" \t\r\n ", &c, &off, &msg), -EINVAL);
    cr_assert_str_eq(msg, "empty body");
    cr_assert_eq(off, 5);
    cr_assert_eq(c.n, 0);
    cr_assert_eq(sg_json_split(NULL, 0, collect, &c, &off, &msg), -EINVAL);
    /* The error outputs are optional. */
    cr_assert_eq(sg_json_split("  ", 2, collect, &c, NULL, NULL), -EINVAL);
    cr_assert_eq(sg_json_split("[", 1, collect, &c, NULL, NULL), -EINVAL);
}

Test(json_split, array_of_three)
{
    struct collected c = {0};
    size_t off;
    const char *msg;
    const char *body = "[{\"key\":\"a\"},{\"key\":\"b\",\"v\":1},{\"key\":\"c\"}]";
    cr_assert_eq(split(body, &c, &off, &msg), 3);
    cr_assert_eq(c.n, 3);
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(c.index[i], i);
    cr_assert_eq(c.offset[0], 1);
    cr_assert_str_eq(c.text[0], "{\"key\":\"a\"}");
    cr_assert_eq(c.offset[1], 13);
    cr_assert_str_eq(c.text[1], "{\"key\":\"b\",\"v\":1}");
    cr_assert_eq(c.offset[2], 31);
    cr_assert_str_eq(c.text[2], "{\"key\":\"c\"}");
    cr_assert_null(msg);
    collected_free(&c);
}

Test(json_split, whitespace_everywhere)
{
    struct collected c = {0};
    size_t off;
    const char *msg;
    const char *body = " \n\t[ \r\n{ \"a\" : 1 } \t,\n\n  [ 1 , 2 ]\r\n,  3  ,\"s\"\t] \n\r\t";
    cr_assert_eq(split(body, &c, &off, &msg), 4);
    cr_assert_str_eq(c.text[0], "{ \"a\" : 1 }");
    cr_assert_eq(c.offset[0], 7);
    cr_assert_str_eq(c.text[1], "[ 1 , 2 ]");
    cr_assert_eq(c.offset[1], (size_t)(strstr(body, "[ 1") - body));
    cr_assert_str_eq(c.text[2], "3");
    cr_assert_eq(c.offset[2], (size_t)(strstr(body, "3") - body));
    cr_assert_str_eq(c.text[3], "\"s\"");
    collected_free(&c);
}

Test(json_split, empty_array)
{
    struct collected c = {0};
    size_t off;
    const char *msg;
    cr_assert_eq(split("[]", &c, &off, &msg), 0);
    cr_assert_eq(split("  [ \n ]  ", &c, &off, &msg), 0);
    cr_assert_eq(c.n, 0);
    cr_assert_null(msg);
}

Test(json_split, nesting_and_tricky_strings)
{
    struct collected c = {0};
    size_t off;
    const char *msg;
    const char *e0 = "{\"a\":[1,[2,{\"b\":\"]\"}]],\"c\":\"x,y\"}";
    const char *e1 = "[[],{},[{}],\"[\"]";
    const char *e2 = "\"quote \\\" inside, ] and } and \\\\\"";
    const char *e3 = "{\"k\":\"back\\\\\",\"v\":\"\\\\\\\"]\"}";
    const char *e4 = "\"\\\\\\\\\"";
    char body[512];
    snprintf(body, sizeof(body), "[%s,%s,%s,%s,%s]", e0, e1, e2, e3, e4);
    cr_assert_eq(split(body, &c, &off, &msg), 5, "%s: %s at %zu", body, msg ? msg : "-", off);
    cr_assert_str_eq(c.text[0], e0);
    cr_assert_str_eq(c.text[1], e1);
    cr_assert_str_eq(c.text[2], e2);
    cr_assert_str_eq(c.text[3], e3);
    cr_assert_str_eq(c.text[4], e4);
    cr_assert_eq(c.offset[1], 1 + strlen(e0) + 1);
    collected_free(&c);
}

Test(json_split, contents_not_validated)
{
    struct collected c = {0};
    size_t off;
    const char *msg;
    cr_assert_eq(split("[{\"a\":}, {\"b\":1}]", &c, &off, &msg), 2);
    cr_assert_str_eq(c.text[0], "{\"a\":}");
    cr_assert_str_eq(c.text[1], "{\"b\":1}");
    cr_assert_eq(c.offset[1], 9);
    collected_free(&c);

    /* Inside a nested value only strings and brackets matter. */
    cr_assert_eq(split("[{,,: ::}, [1 2 3]]", &c, &off, &msg), 2);
    cr_assert_str_eq(c.text[0], "{,,: ::}");
    cr_assert_str_eq(c.text[1], "[1 2 3]");
    collected_free(&c);

    /* Bytes that are not JSON at all still frame. */
    cr_assert_eq(split_n("[nul\0l,\xff\xfe]", 10, &c, &off, &msg), 2);
    cr_assert_eq(c.offset[1], 7);
    cr_assert_str_eq(c.text[1], "\xff\xfe");
    collected_free(&c);
}

Test(json_split, scalars_handed_out)
{
    struct collected c = {0};
    size_t off;
    const char *msg;
    cr_assert_eq(split("[1,\"x\",true,null,-2.5e3,{}]", &c, &off, &msg), 6);
    cr_assert_str_eq(c.text[0], "1");
    cr_assert_str_eq(c.text[1], "\"x\"");
    cr_assert_str_eq(c.text[2], "true");
    cr_assert_str_eq(c.text[3], "null");
    cr_assert_str_eq(c.text[4], "-2.5e3");
    cr_assert_str_eq(c.text[5], "{}");
    cr_assert_eq(c.offset[5], 24);
    collected_free(&c);
}

Test(json_split, unterminated_string)
{
    assert_framing_error("[\"abc", 1, "unterminated string");
    assert_framing_error("[{\"a\":1},{\"b\":\"x]}]", 14, "unterminated string");
    assert_framing_error("[\"abc\\\"]", 1, "unterminated string");
    assert_framing_error("[{\"a\":\"\\\\\\\"}]", 6, "unterminated string");
    assert_framing_error("[1,\"", 3, "unterminated string");
}

Test(json_split, unbalanced_brackets)
{
    assert_framing_error("[", 1, "unbalanced brackets");
    assert_framing_error("[{\"a\":1}", 8, "unbalanced brackets");
    assert_framing_error("[{\"a\":1", 7, "unbalanced brackets");
    assert_framing_error("[1,2", 4, "unbalanced brackets");
    assert_framing_error("[1, ", 4, "unbalanced brackets");
    assert_framing_error("[{\"a\":1]]", 7, "unbalanced brackets");
    assert_framing_error("[[1}]", 3, "unbalanced brackets");
    assert_framing_error("[}]", 1, "unbalanced brackets");
    assert_framing_error("[1,}]", 3, "unbalanced brackets");
    assert_framing_error("[1}", 2, "unbalanced brackets");
    assert_framing_error("[{\"a\":1}}]", 8, "unbalanced brackets");
}

Test(json_split, missing_comma)
{
    assert_framing_error("[{\"a\":1} {\"b\":2}]", 9, "expected ',' or ']'");
    assert_framing_error("[{}{}]", 3, "expected ',' or ']'");
    assert_framing_error("[1 2]", 3, "expected ',' or ']'");
    assert_framing_error("[\"a\" \"b\"]", 5, "expected ',' or ']'");
    assert_framing_error("[\"a\":1]", 4, "expected ',' or ']'");
    assert_framing_error("[1\"a\"]", 2, "expected ',' or ']'");
    assert_framing_error("[true[1]]", 5, "expected ',' or ']'");
}

Test(json_split, empty_elements)
{
    assert_framing_error("[,]", 1, "empty element");
    assert_framing_error("[,1]", 1, "empty element");
    assert_framing_error("[1,,2]", 3, "empty element");
    assert_framing_error("[1,]", 3, "empty element");
    assert_framing_error("[1, \n ]", 6, "empty element");
    assert_framing_error("[{}, ]", 5, "empty element");
}

Test(json_split, trailing_data)
{
    assert_framing_error("[1] x", 4, "trailing data after the array");
    assert_framing_error("[1][2]", 3, "trailing data after the array");
    assert_framing_error("[]]", 2, "trailing data after the array");
    assert_framing_error("[{}],", 4, "trailing data after the array");
    assert_framing_error("[] \n {}", 5, "trailing data after the array");
    {
        struct collected c = {0};
        size_t off;
        const char *msg;
        cr_assert_eq(split_n("[1]\0", 4, &c, &off, &msg), -EINVAL);
        cr_assert_eq(off, 3);
        cr_assert_eq(c.n, 0);
    }
}

Test(json_split, nesting_limit)
{
    /* 512 levels, the outer array included, frame; 513 do not. */
    size_t depth = 512;
    char *body = malloc(2 * (depth + 1) + 1);
    struct collected c = {0};
    size_t off;
    const char *msg;
    memset(body, '[', depth);
    memset(body + depth, ']', depth);
    cr_assert_eq(split_n(body, 2 * depth, &c, &off, &msg), 1);
    cr_assert_eq(c.offset[0], 1);
    collected_free(&c);

    memset(body, '[', depth + 1);
    memset(body + depth + 1, ']', depth + 1);
    cr_assert_eq(split_n(body, 2 * (depth + 1), &c, &off, &msg), -EINVAL);
    cr_assert_str_eq(msg, "nesting too deep");
    cr_assert_eq(off, depth);
    cr_assert_eq(c.n, 0);

    /* Mixed brackets count the same. */
    for (size_t i = 0; i <= depth; i++)
        body[i] = i % 2 ? '{' : '[';
    cr_assert_eq(split_n(body, depth + 1, &c, &off, &msg), -EINVAL);
    cr_assert_str_eq(msg, "nesting too deep");
    cr_assert_eq(off, depth);
    free(body);
}

Test(json_split, deep_unclosed_body_is_bounded)
{
    /* A megabyte of '[' fails on depth, without recursion or a read past the end. */
    size_t n = 1 << 20;
    char *body = malloc(n);
    struct collected c = {0};
    size_t off;
    const char *msg;
    memset(body, '[', n);
    cr_assert_eq(split_n(body, n, &c, &off, &msg), -EINVAL);
    cr_assert_str_eq(msg, "nesting too deep");
    free(body);
}

Test(json_split, framing_checked_before_any_callback)
{
    /* Many good elements, then a break at the very end: nothing may be handed out. */
    char body[4096];
    size_t n = 0;
    n += (size_t)snprintf(body + n, sizeof(body) - n, "[");
    for (int i = 0; i < 50; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n, "{\"key\":\"k%d\",\"v\":%d},", i, i);
    n += (size_t)snprintf(body + n, sizeof(body) - n, "{\"key\":\"last\"}");
    {
        struct collected c = {0};
        size_t off;
        const char *msg;
        cr_assert_eq(split_n(body, n, &c, &off, &msg), -EINVAL);
        cr_assert_eq(c.n, 0);
        cr_assert_str_eq(msg, "unbalanced brackets");
        cr_assert_eq(off, n);
    }
    body[n] = ']';
    body[n + 1] = '!';
    body[n + 2] = '\0';
    assert_framing_error(body, n + 1, "trailing data after the array");
    body[n + 1] = '\0';
    {
        struct collected c = {0};
        size_t off;
        const char *msg;
        cr_assert_eq(split_n(body, n + 1, &c, &off, &msg), 51);
        cr_assert_eq(c.n, 51);
        cr_assert_str_eq(c.text[50], "{\"key\":\"last\"}");
        cr_assert_eq(c.index[50], 50);
        collected_free(&c);
    }
}

Test(json_split, callback_stops_the_split)
{
    struct collected c = {.stop_after = 2};
    size_t off;
    const char *msg;
    cr_assert_eq(split("[1,2,3,4]", &c, &off, &msg), -ECANCELED);
    cr_assert_eq(c.n, 2);
    cr_assert_null(msg, "a stop is not a framing error");
    collected_free(&c);

    c.stop_after = 1;
    cr_assert_eq(split("{\"a\":1}", &c, &off, &msg), -ECANCELED);
    cr_assert_eq(c.n, 1);
    collected_free(&c);
}

Test(json_split, every_truncation_is_safe)
{
    /* Every prefix of a valid array body is either a framing error (no callbacks) or, for
     * the whole body, the full list; each from a buffer of exactly its length. */
    const char *body = " [ {\"a\":\"x\\\"]\"}, [1,[2]] , \"s\\\\\" ,true ] ";
    size_t n = strlen(body);
    for (size_t len = 0; len <= n; len++) {
        struct collected c = {0};
        size_t off;
        const char *msg;
        int rc = split_n(body, len, &c, &off, &msg);
        if (len < n - 1) {
            cr_assert_eq(rc, -EINVAL, "cut at %zu: rc %d", len, rc);
            cr_assert_eq(c.n, 0, "cut at %zu", len);
            cr_assert_leq(off, len, "cut at %zu", len);
        } else {
            cr_assert_eq(rc, 4, "cut at %zu: rc %d", len, rc);
            cr_assert_str_eq(c.text[0], "{\"a\":\"x\\\"]\"}");
            cr_assert_str_eq(c.text[1], "[1,[2]]");
            cr_assert_str_eq(c.text[2], "\"s\\\\\"");
            cr_assert_str_eq(c.text[3], "true");
        }
        collected_free(&c);
    }
}

Test(json_split, counts_around_the_remembered_elements)
{
    /* The first pass remembers where the first elements lie and the second hands them out,
     * then scans on: bodies with about that many elements, and many more, come out whole and
     * in order, with a break after them still found before anything is handed out. */
    static const int counts[] = {1, 255, 256, 257, 511, 512, 1000};
    for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
        int n = counts[k];
        size_t cap = (size_t)n * 32 + 16, len = 0;
        char *body = malloc(cap);
        cr_assert_not_null(body);
        len += (size_t)snprintf(body + len, cap - len, "[");
        for (int i = 0; i < n; i++)
            len += (size_t)snprintf(body + len, cap - len, "%s {\"key\":\"k%d\",\"s\":\"]\"}",
                                    i ? "," : "", i);
        len += (size_t)snprintf(body + len, cap - len, " ]");
        struct collected c = {0};
        size_t off;
        const char *msg;
        cr_assert_eq(split_n(body, len, &c, &off, &msg), n, "%d elements", n);
        cr_assert_eq(c.n, (size_t)n);
        for (int i = 0; i < n; i++) {
            char want[32];
            snprintf(want, sizeof(want), "{\"key\":\"k%d\",\"s\":\"]\"}", i);
            cr_assert_eq(c.index[i], (size_t)i);
            cr_assert_str_eq(c.text[i], want, "%d elements, element %d", n, i);
        }
        collected_free(&c);
        body[len - 1] = ','; /* no closing bracket: broken framing, nothing handed out */
        cr_assert_eq(split_n(body, len, &c, &off, &msg), -EINVAL, "%d elements", n);
        cr_assert_eq(c.n, 0);
        free(body);
    }
}

/* sg_json_looks_like_ndjson on a heap copy of exactly the text's length. */
static bool looks_like_ndjson(const char *s)
{
    size_t len = strlen(s);
    free(heap_copy);
    heap_copy = malloc(len ? len : 1);
    cr_assert_not_null(heap_copy);
    memcpy(heap_copy, s, len);
    return sg_json_looks_like_ndjson(heap_copy, len);
}

Test(json_split, ndjson_is_one_object_per_line)
{
    static const char *const yes[] = {
        "{\"key\":\"a\",\"v\":1}\n{\"key\":\"b\",\"v\":2}\n",
        "{\"key\":\"a\"}\r\n{\"key\":\"b\"}\r\n",
        "  \n{\"key\":\"a\"}\n\n\n{\"key\":\"b\"}",
        "{\"key\":\"a\"} \t\n {\"key\":\"b\"}",
        /* Only the start of the second object is looked at. */
        "{\"key\":\"a\"}\n{\"key\":",
        /* Framing only: what is inside the first object is for the decoder to judge. */
        "{\"key\":\"a\",}\n{\"key\":\"b\"}",
        /* Brackets, quotes and escaped newlines inside strings are not structure. */
        "{\"key\":\"}\\n{\\\"\",\"n\":{\"a\":[1,{}]}}\n{\"key\":\"b\"}",
    };
    static const char *const no[] = {
        "",
        "   \n ",
        "{\"key\":\"a\"}",
        "{\"key\":\"a\"}\n",
        "{\"key\":\"a\"} {\"key\":\"b\"}",
        "{\"key\":\"a\"}{\"key\":\"b\"}",
        "{\"key\":\"a\"}\nxyz",
        "{\"key\":\"a\"}\n[1]",
        "[{\"key\":\"a\"}]\n[{\"key\":\"b\"}]",
        "[{\"key\":\"a\"},\n{\"key\":\"b\"}]",
        "\"text\"\n{\"key\":\"b\"}",
        "12\n{\"key\":\"b\"}",
        /* Pretty-printed objects one after another are not NDJSON. */
        "{\n  \"key\": \"a\"\n}\n{\n  \"key\": \"b\"\n}",
        /* The first object never ends, or ends too early. */
        "{\"key\":\"a\"\n{\"key\":\"b\"}",
        "{\"key\":\"a}\n{\"key\":\"b\"}",
        "{\"key\":[\"a\"}\n{\"key\":\"b\"}",
        "}\n{\"key\":\"b\"}",
    };
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        cr_assert(looks_like_ndjson(yes[i]), "not taken for NDJSON: %s", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        cr_assert_not(looks_like_ndjson(no[i]), "taken for NDJSON: %s", no[i]);
    cr_assert_not(sg_json_looks_like_ndjson(NULL, 0));
}

Test(json_split, ndjson_check_stays_inside_the_body)
{
    /* Every prefix of an NDJSON body, each in a buffer of exactly its length. */
    const char *body = "{\"key\":\"a\",\"s\":\"x\\\"}\"}\n{\"key\":\"b\"}";
    size_t len = strlen(body);
    for (size_t n = 0; n <= len; n++) {
        free(heap_copy);
        heap_copy = malloc(n ? n : 1);
        cr_assert_not_null(heap_copy);
        memcpy(heap_copy, body, n);
        bool want = n > strlen("{\"key\":\"a\",\"s\":\"x\\\"}\"}\n");
        cr_assert_eq(sg_json_looks_like_ndjson(heap_copy, n), want, "prefix of %zu bytes", n);
    }
}
