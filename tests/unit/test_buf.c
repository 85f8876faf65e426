#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "streamgate/buf.h"

Test(buf, append_grows_and_keeps_bytes)
{
    struct sg_buf b;
    sg_buf_init(&b, 0);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(sg_buf_append(&b, "abc", 3), 0);
    cr_assert_eq(b.len, 3000);
    cr_assert(memcmp(b.data + 2997, "abc", 3) == 0);
    sg_buf_free(&b);
    cr_assert_null(b.data);
}

Test(buf, cap_is_hard_and_failure_leaves_buffer_unchanged)
{
    struct sg_buf b;
    sg_buf_init(&b, 10);
    cr_assert_eq(sg_buf_append(&b, "0123456789", 10), 0);
    cr_assert_eq(sg_buf_append(&b, "x", 1), -E2BIG);
    cr_assert_eq(b.len, 10);
    sg_buf_consume(&b, 4);
    cr_assert_eq(b.len, 6);
    cr_assert(memcmp(b.data, "456789", 6) == 0);
    cr_assert_eq(sg_buf_append(&b, "abcd", 4), 0);
    cr_assert_eq(sg_buf_append(&b, "e", 1), -E2BIG);
    sg_buf_free(&b);
}

Test(buf, printf_short_and_long)
{
    struct sg_buf b;
    sg_buf_init(&b, 0);
    cr_assert_eq(sg_buf_printf(&b, "%d-%s", 42, "x"), 0);
    char big[2000];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(sg_buf_printf(&b, "[%s]", big), 0);
    cr_assert_eq(b.len, 4 + 2 + 1999);
    cr_assert(memcmp(b.data, "42-x[qqq", 8) == 0);
    cr_assert_eq(b.data[b.len - 1], ']');
    sg_buf_free(&b);
}

Test(buf, printf_respects_cap)
{
    struct sg_buf b;
    sg_buf_init(&b, 8);
    cr_assert_eq(sg_buf_printf(&b, "%s", "0123456789"), -E2BIG);
    cr_assert_eq(b.len, 0);
    sg_buf_free(&b);
}

Test(buf, json_string_escapes)
{
    struct sg_buf b;
    sg_buf_init(&b, 0);
    const char in[] = "a\"b\\c\nd\x01\te\0f";
    cr_assert_eq(sg_buf_append_json_string(&b, in, sizeof(in) - 1), 0);
    const char want[] = "\"a\\\"b\\\\c\\nd\\u0001\\te\\u0000f\"";
    cr_assert_eq(b.len, strlen(want));
    cr_assert(memcmp(b.data, want, b.len) == 0, "got %.*s", (int)b.len, b.data);
    sg_buf_free(&b);
}

Test(buf, json_string_all_or_nothing_at_cap)
{
    struct sg_buf b;
    sg_buf_init(&b, 6);
    cr_assert_eq(sg_buf_append(&b, "ab", 2), 0);
    cr_assert_eq(sg_buf_append_json_string(&b, "\n\n", 2), -E2BIG);
    cr_assert_eq(b.len, 2);
    sg_buf_free(&b);
}

Test(buf, uint_matches_printf)
{
    static const unsigned long long values[] = {
        0, 1, 9, 10, 99, 100, 202, 4096, 1234567890123ULL, 18446744073709551615ULL};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        struct sg_buf b;
        char want[32];
        sg_buf_init(&b, 0);
        cr_assert_eq(sg_buf_append_uint(&b, values[i]), 0);
        int n = snprintf(want, sizeof(want), "%llu", values[i]);
        cr_assert_eq(b.len, (size_t)n);
        cr_assert(memcmp(b.data, want, b.len) == 0, "%llu", values[i]);
        sg_buf_free(&b);
    }
    /* All or nothing at the cap, like every append. */
    struct sg_buf c;
    sg_buf_init(&c, 4);
    cr_assert_eq(sg_buf_append_str(&c, "ab"), 0);
    cr_assert_eq(sg_buf_append_uint(&c, 123), -E2BIG);
    cr_assert_eq(c.len, 2);
    cr_assert_eq(sg_buf_append_uint(&c, 12), 0);
    cr_assert_eq(c.len, 4);
    sg_buf_free(&c);
}

Test(buf, int_matches_printf)
{
    static const long long values[] = {
        0, 1, -1, 9, -10, 4096, -1234567890123LL, LLONG_MAX, LLONG_MIN, LLONG_MIN + 1};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        struct sg_buf b;
        char want[32];
        sg_buf_init(&b, 0);
        cr_assert_eq(sg_buf_append_int(&b, values[i]), 0);
        int n = snprintf(want, sizeof(want), "%lld", values[i]);
        cr_assert_eq(b.len, (size_t)n);
        cr_assert(memcmp(b.data, want, b.len) == 0, "%lld", values[i]);
        sg_buf_free(&b);
    }
    /* The sign and the digits land together or not at all. */
    struct sg_buf c;
    sg_buf_init(&c, 4);
    cr_assert_eq(sg_buf_append_str(&c, "ab"), 0);
    cr_assert_eq(sg_buf_append_int(&c, -12), -E2BIG);
    cr_assert_eq(c.len, 2);
    cr_assert_eq(sg_buf_append_int(&c, -1), 0);
    cr_assert_eq(c.len, 4);
    sg_buf_free(&c);
}

Test(buf, varints_round_trip_and_refuse_bad_input)
{
    struct sg_buf b;
    sg_buf_init(&b, 0);
    const unsigned long long values[] = {0, 1, 127, 128, 16383, 16384, 1ull << 35, ~0ull};
    const size_t lens[] = {1, 1, 1, 2, 2, 3, 6, 10};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        size_t before = b.len;
        cr_assert_eq(sg_buf_append_varint(&b, values[i]), 0);
        cr_assert_eq(b.len - before, lens[i], "%llu", values[i]);
    }
    const unsigned char *p = (const unsigned char *)b.data, *end = p + b.len;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        unsigned long long v;
        cr_assert_eq(sg_varint_read(&p, end, &v), 0);
        cr_assert_eq(v, values[i]);
    }
    cr_assert_eq(p, end);
    unsigned long long v;
    const unsigned char cut[] = {0x80, 0x80};
    p = cut;
    cr_assert_eq(sg_varint_read(&p, cut + 2, &v), -EINVAL);
    cr_assert_eq(p, cut); /* unmoved on failure */
    const unsigned char wide[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    p = wide;
    cr_assert_eq(sg_varint_read(&p, wide + 10, &v), -EINVAL); /* 65 bits */
    sg_buf_free(&b);
}
