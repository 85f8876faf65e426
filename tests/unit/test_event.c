/* Event decoding: key, time, numeric fields, raw bytes, and every reason to reject. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_configs.h"
#include "streamgate/config.h"
#include "streamgate/event.h"

#define NOW_MS INT64_C(1700000000123)

static char key_field[] = "key";
static char key_fallback[] = "id";
static char time_field[] = "ts";
static char no_fallback[] = "";

static struct sg_config cfg;
static struct sg_event_decoder dec;
static struct sg_event ev;
static enum sg_reject why;
static char *input; /* the last input, in a buffer of exactly its length */
/* The reference decoder (cJSON's tree only), run on every input beside the decoder under
 * test; the two must give the same answer. */
static struct sg_event_decoder ref_dec;
static struct sg_event ref_ev;
static const char *context = ""; /* prefixed to a difference between the two */

/* The event options set by hand, so the tests do not depend on the defaults' values. */
static void config_event(struct sg_config *c)
{
    memset(c, 0, sizeof(*c));
    c->event_key_field = key_field;
    c->event_key_fallback = key_fallback;
    c->event_time_field = time_field;
    c->event_max_fields = 16;
    c->event_max_key_size = 256;
}

static void setup(void)
{
    config_event(&cfg);
    sg_event_decoder_init(&dec, &cfg);
    sg_event_decoder_init(&ref_dec, &cfg);
    memset(&ev, 0, sizeof(ev));
    why = SG_REJECT_COUNT;
}

static void teardown(void)
{
    sg_event_decoder_free(&dec);
    sg_event_decoder_free(&ref_dec);
    free(input);
    input = NULL;
}

#define assert_field_name(i, want)                                                                 \
    cr_assert(ev.fields[i].name_len == strlen(want) &&                                             \
                  memcmp(ev.fields[i].name, want, ev.fields[i].name_len) == 0,                     \
              "field %d is %.*s, want %s", (int)(i), (int)ev.fields[i].name_len,                   \
              ev.fields[i].name, want)

static bool same_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* The decoder under test and the reference agree on `input`: the same answer and reason, and
 * for an accepted event the same bytes, key, time, fields (bit for bit) and distinct value. */
static void assert_same_as_reference(int rc, size_t len)
{
    enum sg_reject ref_why = SG_REJECT_COUNT;
    int ref_rc = sg_event_decode_tree(&ref_dec, input, len, NOW_MS, &ref_ev, &ref_why);
    const char *what = "answer";

    if (ref_rc != rc || (rc != 0 && ref_why != why))
        goto differ;
    if (rc != 0)
        return;
    what = "view";
    if (ref_ev.raw != ev.raw || ref_ev.raw_len != ev.raw_len ||
        !same_bytes(ref_ev.key, ref_ev.key_len, ev.key, ev.key_len) || ref_ev.ts_ms != ev.ts_ms ||
        ref_ev.ts_from_event != ev.ts_from_event || ref_ev.nfields != ev.nfields ||
        (ref_ev.distinct == NULL) != (ev.distinct == NULL) ||
        (ev.distinct &&
         !same_bytes(ref_ev.distinct, ref_ev.distinct_len, ev.distinct, ev.distinct_len)))
        goto differ;
    what = "fields";
    for (size_t i = 0; i < ev.nfields; i++)
        if (!same_bytes(ref_ev.fields[i].name, ref_ev.fields[i].name_len, ev.fields[i].name,
                        ev.fields[i].name_len) ||
            memcmp(&ref_ev.fields[i].value, &ev.fields[i].value, sizeof(double)) != 0)
            goto differ;
    return;
differ:
    cr_assert_fail("%s%.*s: the decoders differ in their %s (rc %d/%d, %s/%s)", context, (int)len,
                   input, what, rc, ref_rc, sg_reject_label(why), sg_reject_label(ref_why));
}

TestSuite(event, .init = setup, .fini = teardown);

/* Decodes `len` bytes copied into a heap buffer of exactly that size, so a read past the end
 * is caught by the address sanitizer. */
static int decode_n(const char *s, size_t len)
{
    free(input);
    input = malloc(len ? len : 1);
    cr_assert_not_null(input);
    memcpy(input, s, len);
    why = SG_REJECT_COUNT;
    int rc = sg_event_decode(&dec, input, len, NOW_MS, &ev, &why);
    assert_same_as_reference(rc, len);
    return rc;
}

static int decode(const char *s)
{
    return decode_n(s, strlen(s));
}

static void init_decoders(const struct sg_config *c)
{
    sg_event_decoder_free(&dec);
    sg_event_decoder_init(&dec, c);
    sg_event_decoder_free(&ref_dec);
    sg_event_decoder_init(&ref_dec, c);
}

static void reinit(void)
{
    init_decoders(&cfg);
}

#define assert_rejected(json, reason)                                                              \
    do {                                                                                           \
        int rc_ = decode(json);                                                                    \
        cr_assert_eq(rc_, -EINVAL, "%s: expected rejection, got %d", json, rc_);                   \
        cr_assert_eq(why, reason, "%s: expected %s, got %s", json, sg_reject_label(reason),        \
                     sg_reject_label(why));                                                        \
    } while (0)

#define assert_key(json, want)                                                                     \
    do {                                                                                           \
        int rc_ = decode(json);                                                                    \
        cr_assert_eq(rc_, 0, "%s: rejected as %s", json, sg_reject_label(why));                    \
        cr_assert_eq(ev.key_len, strlen(want), "%s: key %.*s", json, (int)ev.key_len, ev.key);     \
        cr_assert(memcmp(ev.key, want, ev.key_len) == 0, "%s: key %.*s", json, (int)ev.key_len,    \
                  ev.key);                                                                         \
    } while (0)

#define assert_ts(json, want)                                                                      \
    do {                                                                                           \
        int rc_ = decode(json);                                                                    \
        cr_assert_eq(rc_, 0, "%s: rejected as %s", json, sg_reject_label(why));                    \
        cr_assert(ev.ts_from_event, "%s", json);                                                   \
        cr_assert_eq(ev.ts_ms, (int64_t)(want), "%s: ts %lld, want %lld", json,                    \
                     (long long)ev.ts_ms, (long long)(want));                                      \
    } while (0)

static int64_t rfc(const char *s)
{
    int64_t ms = -1;
    size_t len = strlen(s);
    char *copy = malloc(len ? len : 1);
    int rc;
    cr_assert_not_null(copy);
    memcpy(copy, s, len);
    rc = sg_parse_rfc3339_ms(copy, len, &ms);
    free(copy);
    return rc == 0 ? ms : -1;
}

/* ---- reasons ---- */

Test(event, reject_labels_and_messages)
{
    cr_assert_str_eq(sg_reject_label(SG_REJECT_INVALID_JSON), "invalid_json");
    cr_assert_str_eq(sg_reject_label(SG_REJECT_NOT_OBJECT), "not_object");
    cr_assert_str_eq(sg_reject_label(SG_REJECT_MISSING_KEY), "missing_key");
    cr_assert_str_eq(sg_reject_label(SG_REJECT_KEY_TOO_LONG), "key_too_long");
    cr_assert_str_eq(sg_reject_label(SG_REJECT_BAD_TIMESTAMP), "bad_timestamp");
    cr_assert_str_eq(sg_reject_label(SG_REJECT_LINE_TOO_LONG), "line_too_long");
    cr_assert_str_eq(sg_reject_label(SG_REJECT_INVALID_UTF8), "invalid_utf8");
    cr_assert_str_eq(sg_reject_label(SG_REJECT_SINK_FAILED), "sink_failed");
    cr_assert_str_eq(sg_reject_message(SG_REJECT_NOT_OBJECT), "an event must be a JSON object");
    cr_assert_str_eq(sg_reject_message(SG_REJECT_LINE_TOO_LONG),
                     "the line is longer than tcp.max_line_size");
    cr_assert_str_eq(sg_reject_label(SG_REJECT_COUNT), "unknown");
    cr_assert_str_eq(sg_reject_label((enum sg_reject) - 1), "unknown");
    cr_assert_not_null(sg_reject_message(SG_REJECT_COUNT));
}

/* ---- init ---- */

Test(event, init_borrows_config)
{
    static char a[] = "a", b[] = "b";
    char *names[] = {a, b};
    cfg.event_value_fields.items = names;
    cfg.event_value_fields.count = 2;
    cfg.event_max_fields = 1000;
    cfg.event_max_key_size = 7;
    reinit();
    cr_assert_eq(dec.key_field, cfg.event_key_field);
    cr_assert_eq(dec.key_fallback, cfg.event_key_fallback);
    cr_assert_eq(dec.time_field, cfg.event_time_field);
    cr_assert_eq((const void *)dec.value_fields, (const void *)names);
    cr_assert_eq(dec.nvalue_fields, 2);
    cr_assert_eq(dec.max_fields, SG_EVENT_MAX_FIELDS, "max_fields is clamped");
    cr_assert_eq(dec.max_key_size, 7);
    cr_assert_null(dec.tree);

    cfg.event_value_fields.count = 0;
    cfg.event_max_fields = -5;
    reinit();
    cr_assert_null(dec.value_fields);
    cr_assert_eq(dec.nvalue_fields, 0);
    cr_assert_eq(dec.max_fields, 0);
}

/* ---- keys ---- */

Test(event, string_key)
{
    assert_key("{\"key\":\"sensor-1\",\"v\":1}", "sensor-1");
    cr_assert_eq(ev.nfields, 1);
    assert_key("{\"key\":\"caf\\u00e9\"}", "caf\xc3\xa9");
    assert_key("{\"key\":\"a\\\"b\"}", "a\"b");
}

Test(event, numeric_keys)
{
    assert_key("{\"key\":1234}", "1234");
    assert_key("{\"key\":12.5}", "12.5");
    assert_key("{\"key\":-3}", "-3");
    assert_key("{\"key\":1e300}", "1.0000000000000001e+300");
    assert_key("{\"key\":0}", "0");
    assert_key("{\"key\":-0.0}", "0");
    assert_key("{\"key\":1.5e3}", "1500");
    assert_key("{\"key\":9007199254740991}", "9007199254740991");
    /* 2^53 and above: not every integer is exact any more, so the full precision form. */
    assert_key("{\"key\":9007199254740992}", "9007199254740992");
    assert_key("{\"key\":1e20}", "1e+20");
    assert_key("{\"key\":-1.7976931348623157e308}", "-1.7976931348623157e+308");
    assert_key("{\"key\":0.1}", "0.10000000000000001");
    cr_assert_eq(ev.key, ev.keybuf);
}

Test(event, numeric_key_not_a_field)
{
    cr_assert_eq(decode("{\"key\":42,\"v\":1.5,\"w\":2}"), 0);
    cr_assert_eq(ev.nfields, 2);
    assert_field_name(0, "v");
    assert_field_name(1, "w");
}

Test(event, fallback_key)
{
    assert_key("{\"id\":\"abc\",\"v\":1}", "abc");
    cr_assert_eq(ev.nfields, 1);
    assert_field_name(0, "v");

    /* A numeric fallback key is the key, not a field. */
    assert_key("{\"id\":77,\"v\":1}", "77");
    cr_assert_eq(ev.nfields, 1);
    assert_field_name(0, "v");

    /* When the key field is there, `id` is an ordinary member. */
    assert_key("{\"key\":\"k\",\"id\":77,\"v\":1}", "k");
    cr_assert_eq(ev.nfields, 2);
    assert_field_name(0, "id");
    cr_assert_eq(ev.fields[0].value, 77.0);

    /* The fallback only stands in for an absent key field, not for a bad one. */
    assert_rejected("{\"key\":true,\"id\":\"abc\"}", SG_REJECT_MISSING_KEY);
    assert_rejected("{\"key\":null,\"id\":\"abc\"}", SG_REJECT_MISSING_KEY);
    assert_rejected("{\"id\":\"\"}", SG_REJECT_MISSING_KEY);
    assert_rejected("{\"id\":false}", SG_REJECT_MISSING_KEY);
}

Test(event, fallback_disabled)
{
    cfg.event_key_fallback = no_fallback;
    reinit();
    assert_rejected("{\"id\":\"abc\"}", SG_REJECT_MISSING_KEY);
    cfg.event_key_fallback = NULL;
    reinit();
    assert_rejected("{\"id\":\"abc\"}", SG_REJECT_MISSING_KEY);
    assert_key("{\"key\":\"x\",\"id\":\"abc\"}", "x");
}

Test(event, missing_key)
{
    assert_rejected("{}", SG_REJECT_MISSING_KEY);
    assert_rejected("{\"v\":1}", SG_REJECT_MISSING_KEY);
    assert_rejected("{\"key\":\"\"}", SG_REJECT_MISSING_KEY);
    assert_rejected("{\"key\":true}", SG_REJECT_MISSING_KEY);
    assert_rejected("{\"key\":false}", SG_REJECT_MISSING_KEY);
    assert_rejected("{\"key\":{\"a\":1}}", SG_REJECT_MISSING_KEY);
    assert_rejected("{\"key\":[1]}", SG_REJECT_MISSING_KEY);
    assert_rejected("{\"key\":null}", SG_REJECT_MISSING_KEY);
    /* Lookups are case-sensitive. */
    assert_rejected("{\"Key\":\"a\"}", SG_REJECT_MISSING_KEY);
    assert_rejected("{\"KEY\":\"a\",\"ID\":\"b\"}", SG_REJECT_MISSING_KEY);
    cr_assert_null(dec.tree, "a rejected event's tree is freed");
}

Test(event, key_infinite_number)
{
    /* cJSON turns an overflowing literal into infinity; that is no key. */
    assert_rejected("{\"key\":1e999}", SG_REJECT_MISSING_KEY);
    assert_rejected("{\"key\":-1e999}", SG_REJECT_MISSING_KEY);
}

Test(event, duplicate_key_first_wins)
{
    assert_key("{\"key\":\"first\",\"key\":\"second\"}", "first");
    assert_rejected("{\"key\":true,\"key\":\"second\"}", SG_REJECT_MISSING_KEY);
}

Test(event, key_too_long)
{
    cfg.event_max_key_size = 8;
    reinit();
    assert_key("{\"key\":\"12345678\"}", "12345678");
    assert_rejected("{\"key\":\"123456789\"}", SG_REJECT_KEY_TOO_LONG);
    /* The limit counts the decoded bytes: \u00e9 is two bytes. */
    assert_key("{\"key\":\"123456\\u00e9\"}", "123456\xc3\xa9");
    assert_rejected("{\"key\":\"1234567\\u00e9\"}", SG_REJECT_KEY_TOO_LONG);
    /* A numeric key's text counts too. */
    assert_key("{\"key\":12345678}", "12345678");
    assert_rejected("{\"key\":123456789}", SG_REJECT_KEY_TOO_LONG);
    assert_rejected("{\"key\":0.1}", SG_REJECT_KEY_TOO_LONG);
    assert_rejected("{\"id\":\"123456789\"}", SG_REJECT_KEY_TOO_LONG);
}

/* ---- time ---- */

Test(event, ts_missing_uses_now)
{
    cr_assert_eq(decode("{\"key\":\"a\"}"), 0);
    cr_assert_eq(ev.ts_ms, NOW_MS);
    cr_assert_not(ev.ts_from_event);
}

Test(event, ts_null_uses_now)
{
    cr_assert_eq(decode("{\"key\":\"a\",\"ts\":null}"), 0);
    cr_assert_eq(ev.ts_ms, NOW_MS);
    cr_assert_not(ev.ts_from_event);
}

Test(event, ts_number)
{
    assert_ts("{\"key\":\"a\",\"ts\":1700000000000}", INT64_C(1700000000000));
    assert_ts("{\"key\":\"a\",\"ts\":0}", 0);
    assert_ts("{\"key\":\"a\",\"ts\":1.7e12}", INT64_C(1700000000000));
    /* Fractions of a millisecond are truncated. */
    assert_ts("{\"key\":\"a\",\"ts\":1700000000000.9}", INT64_C(1700000000000));
    assert_ts("{\"key\":\"a\",\"ts\":12.999}", 12);
    /* The integral part of -0.5 is 0, which is in range. */
    assert_ts("{\"key\":\"a\",\"ts\":-0.5}", 0);
    /* The last millisecond of year 9999. */
    assert_ts("{\"key\":\"a\",\"ts\":253402300799999}", INT64_C(253402300799999));
    assert_ts("{\"key\":\"a\",\"ts\":253402300799999.5}", INT64_C(253402300799999));
}

Test(event, ts_number_out_of_range)
{
    assert_rejected("{\"key\":\"a\",\"ts\":-1}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":-1700000000000}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":253402300800000}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":1e300}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":9223372036854775807}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":1e999}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":-1e999}", SG_REJECT_BAD_TIMESTAMP);
}

Test(event, ts_other_types)
{
    assert_rejected("{\"key\":\"a\",\"ts\":true}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":false}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":{}}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":[1]}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":\"\"}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":\"1700000000000\"}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":\"yesterday\"}", SG_REJECT_BAD_TIMESTAMP);
}

Test(event, ts_rfc3339_strings)
{
    assert_ts("{\"key\":\"a\",\"ts\":\"2023-11-14T22:13:20Z\"}", INT64_C(1700000000000));
    assert_ts("{\"key\":\"a\",\"ts\":\"2023-11-14T22:13:20.123Z\"}", INT64_C(1700000000123));
    assert_ts("{\"key\":\"a\",\"ts\":\"2023-11-15T00:13:20+02:00\"}", INT64_C(1700000000000));
    assert_ts("{\"key\":\"a\",\"ts\":\"2023-11-14T16:43:20-05:30\"}", INT64_C(1700000000000));
    assert_ts("{\"key\":\"a\",\"ts\":\"2023-11-14t22:13:20z\"}", INT64_C(1700000000000));
    assert_ts("{\"key\":\"a\",\"ts\":\"2023-11-14 22:13:20Z\"}", INT64_C(1700000000000));
    assert_rejected("{\"key\":\"a\",\"ts\":\"2023-13-14T22:13:20Z\"}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":\"2023-11-14T22:13:20Z \"}", SG_REJECT_BAD_TIMESTAMP);
    /* A NUL written as an escape would end the decoded string early: refused outright. */
    assert_rejected("{\"key\":\"a\",\"ts\":\"2023-11-14T22:13:20Z\\u0000junk\"}",
                    SG_REJECT_INVALID_JSON);
}

Test(event, escapes_json_does_not_have_are_refused)
{
    /* cJSON would read these: "\uZZZZ" as U+0000, and U+0000 as the end of the string. */
    assert_rejected("{\"key\":\"ab\\uZZZZcd\"}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"ab\\u12\"}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"ab\\x41\"}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"ab\\u0000cd\"}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\\u0000x\":\"a\",\"key\":\"b\"}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\",\"msg\":\"tail\\\"}", SG_REJECT_INVALID_JSON);
    /* Every escape JSON has is fine, and an escaped backslash before "u0000" is just text. */
    assert_key("{\"key\":\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\"}", "a\"\\/\b\f\n\r\t");
    assert_key("{\"key\":\"\\u00e9\\uD83D\\uDE00\"}", "\xc3\xa9\xf0\x9f\x98\x80");
    assert_key("{\"key\":\"a\\\\u0000\"}", "a\\u0000");
}

Test(event, ts_case_sensitive_and_first)
{
    /* "TS" is not the time field: it is an ordinary numeric member. */
    cr_assert_eq(decode("{\"key\":\"a\",\"TS\":5}"), 0);
    cr_assert_not(ev.ts_from_event);
    cr_assert_eq(ev.nfields, 1);
    assert_field_name(0, "TS");
    assert_ts("{\"key\":\"a\",\"ts\":5,\"ts\":\"bad\"}", 5);
    assert_rejected("{\"key\":\"a\",\"ts\":\"bad\",\"ts\":5}", SG_REJECT_BAD_TIMESTAMP);
}

Test(event, ts_field_configurable)
{
    static char t[] = "time";
    cfg.event_time_field = t;
    reinit();
    assert_ts("{\"key\":\"a\",\"time\":42,\"ts\":7}", 42);
    cr_assert_eq(ev.nfields, 1);
    assert_field_name(0, "ts");
}

/* ---- event.time_unit ---- */

static void set_time_unit(int unit)
{
    cfg.event_time_unit = unit;
    reinit();
}

Test(event, ts_unit_defaults_to_milliseconds)
{
    cr_assert_eq(cfg.event_time_unit, SG_TIME_UNIT_MS);
    /* Epoch seconds read as milliseconds land in January 1970: what the option is for. */
    assert_ts("{\"key\":\"a\",\"ts\":1732460000}", INT64_C(1732460000));
}

Test(event, ts_unit_seconds)
{
    set_time_unit(SG_TIME_UNIT_S);
    assert_ts("{\"key\":\"a\",\"ts\":1732460000}", INT64_C(1732460000000));
    cr_assert(ev.flat, "a flat event in seconds takes the scanner");
    assert_ts("{\"key\":\"a\",\"ts\":0}", 0);
    assert_ts("{\"key\":\"a\",\"ts\":1}", 1000);
    assert_ts("{\"key\":\"a\",\"ts\":1.7e9}", INT64_C(1700000000000));
    assert_ts("{\"key\":\"a\",\"ts\":1732460000.5}", INT64_C(1732460000500));
    assert_ts("{\"key\":\"a\",\"ts\":1732460000.25}", INT64_C(1732460000250));
    /* Below a millisecond, fractions are dropped. */
    assert_ts("{\"key\":\"a\",\"ts\":1732460000.1239}", INT64_C(1732460000123));
    assert_ts("{\"key\":\"a\",\"ts\":0.0009}", 0);
    assert_ts("{\"key\":\"a\",\"ts\":0.001}", 1);
    /* The last millisecond of year 9999, and a fraction below the first of 1970. */
    assert_ts("{\"key\":\"a\",\"ts\":253402300799.999}", INT64_C(253402300799999));
    assert_ts("{\"key\":\"a\",\"ts\":253402300799}", INT64_C(253402300799000));
    assert_ts("{\"key\":\"a\",\"ts\":-0.0005}", 0);
    /* Numbers that are not times are untouched: fields keep their value, numeric keys their
     * text. */
    cr_assert_eq(decode("{\"key\":12,\"ts\":3,\"v\":1.5}"), 0);
    cr_assert_eq(ev.ts_ms, 3000);
    cr_assert_eq(ev.key_len, 2);
    cr_assert_eq(memcmp(ev.key, "12", 2), 0);
    cr_assert_eq(ev.nfields, 1);
    cr_assert_eq(ev.fields[0].value, 1.5);
}

Test(event, ts_unit_seconds_keeps_every_millisecond_of_a_decimal_fraction)
{
    /* Decimal fractions are seldom exact in binary (1732460000.123 is a hair below it as a
     * double), yet each must land on its own millisecond, over the whole range of years. */
    static const long long seconds[] = {0,
                                        1,
                                        946684799,
                                        1732460000,
                                        2147483647,
                                        4294967296,
                                        32503680000LL,
                                        99999999999LL,
                                        253402300799LL};
    set_time_unit(SG_TIME_UNIT_S);
    for (size_t i = 0; i < sizeof(seconds) / sizeof(seconds[0]); i++) {
        for (int ms = 0; ms < 1000; ms++) {
            char json[96];
            snprintf(json, sizeof(json), "{\"key\":\"a\",\"ts\":%lld.%03d}", seconds[i], ms);
            assert_ts(json, seconds[i] * 1000 + ms);
        }
    }
}

Test(event, ts_unit_seconds_out_of_range)
{
    set_time_unit(SG_TIME_UNIT_S);
    assert_rejected("{\"key\":\"a\",\"ts\":253402300800}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":-0.001}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":-1}", SG_REJECT_BAD_TIMESTAMP);
    /* Milliseconds sent while seconds are configured are past year 9999: refused, not
     * misplaced. */
    assert_rejected("{\"key\":\"a\",\"ts\":1732460000000}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":9223372036854775807}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":1e300}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":-1e300}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":1.7976931348623157e308}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":1e999}", SG_REJECT_BAD_TIMESTAMP);
}

Test(event, ts_unit_microseconds)
{
    set_time_unit(SG_TIME_UNIT_US);
    assert_ts("{\"key\":\"a\",\"ts\":1732460000123456}", INT64_C(1732460000123));
    cr_assert(ev.flat);
    assert_ts("{\"key\":\"a\",\"ts\":1732460000123999.75}", INT64_C(1732460000123));
    assert_ts("{\"key\":\"a\",\"ts\":1.732460000123e15}", INT64_C(1732460000123));
    assert_ts("{\"key\":\"a\",\"ts\":999}", 0);
    assert_ts("{\"key\":\"a\",\"ts\":1000}", 1);
    assert_ts("{\"key\":\"a\",\"ts\":-999}", 0);
    /* The last millisecond of year 9999 (a double this large is a multiple of 32 us). */
    assert_ts("{\"key\":\"a\",\"ts\":253402300799999520}", INT64_C(253402300799999));
    assert_rejected("{\"key\":\"a\",\"ts\":253402300800000000}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":-1000}", SG_REJECT_BAD_TIMESTAMP);
    /* Around and past the edge of int64. */
    assert_rejected("{\"key\":\"a\",\"ts\":8999999999999999000}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":9223372036854775807}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":-9223372036854775809}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":1e300}", SG_REJECT_BAD_TIMESTAMP);
}

Test(event, ts_unit_nanoseconds)
{
    set_time_unit(SG_TIME_UNIT_NS);
    /* The double nearest to this is ...123456768 ns: still millisecond 123. */
    assert_ts("{\"key\":\"a\",\"ts\":1732460000123456789}", INT64_C(1732460000123));
    cr_assert(ev.flat);
    assert_ts("{\"key\":\"a\",\"ts\":999999}", 0);
    assert_ts("{\"key\":\"a\",\"ts\":1000000}", 1);
    assert_ts("{\"key\":\"a\",\"ts\":-999999}", 0);
    assert_rejected("{\"key\":\"a\",\"ts\":-1000000}", SG_REJECT_BAD_TIMESTAMP);
    /* Past int64 (year 2262 and later) nanoseconds are still times, up to year 9999. */
    assert_ts("{\"key\":\"a\",\"ts\":8999999999999999999}", INT64_C(9000000000000));
    assert_ts("{\"key\":\"a\",\"ts\":9223372036854775807}", INT64_C(9223372036854));
    assert_ts("{\"key\":\"a\",\"ts\":1e19}", INT64_C(10000000000000));
    assert_ts("{\"key\":\"a\",\"ts\":253402300799999500000}", INT64_C(253402300799999));
    assert_rejected("{\"key\":\"a\",\"ts\":253402300800000000000}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":-1e19}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":1e300}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":-1e999}", SG_REJECT_BAD_TIMESTAMP);
}

Test(event, ts_unit_leaves_rfc3339_strings_alone)
{
    static const int units[] = {SG_TIME_UNIT_MS, SG_TIME_UNIT_S, SG_TIME_UNIT_US, SG_TIME_UNIT_NS};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        set_time_unit(units[i]);
        assert_ts("{\"key\":\"a\",\"ts\":\"2024-11-24T15:33:20.123Z\"}", INT64_C(1732462400123));
        assert_rejected("{\"key\":\"a\",\"ts\":\"1732460000\"}", SG_REJECT_BAD_TIMESTAMP);
        cr_assert_eq(decode("{\"key\":\"a\"}"), 0);
        cr_assert_eq(ev.ts_ms, NOW_MS, "arrival time is never converted");
    }
}

Test(event, ts_unit_from_the_configuration)
{
    struct sg_config c;
    char err[256];
    sg_config_defaults(&c);
    cr_assert_eq(sg_config_set(&c, "event.time_unit", "s", err, sizeof(err)), 0, "%s", err);
    init_decoders(&c);
    assert_ts("{\"key\":\"a\",\"ts\":1732460000}", INT64_C(1732460000000));
    reinit();
    sg_config_free(&c);
}

/* ---- RFC 3339 parser ---- */

Test(event, rfc3339_basic)
{
    cr_assert_eq(rfc("1970-01-01T00:00:00Z"), 0);
    cr_assert_eq(rfc("1970-01-01T00:00:00.001Z"), 1);
    cr_assert_eq(rfc("2023-11-14T22:13:20Z"), INT64_C(1700000000000));
    cr_assert_eq(rfc("2000-01-01T00:00:00Z"), INT64_C(946684800000));
    cr_assert_eq(rfc("2024-11-24T15:33:20.5Z"), INT64_C(1732462400500));
    cr_assert_eq(rfc("9999-12-31T23:59:59.999Z"), INT64_C(253402300799999));
    cr_assert_eq(rfc("2038-01-19T03:14:08Z"), INT64_C(2147483648000));
}

Test(event, rfc3339_offsets)
{
    cr_assert_eq(rfc("2023-11-15T00:13:20+02:00"), INT64_C(1700000000000));
    cr_assert_eq(rfc("2023-11-14T16:43:20-05:30"), INT64_C(1700000000000));
    cr_assert_eq(rfc("2023-11-14T22:13:20+00:00"), INT64_C(1700000000000));
    cr_assert_eq(rfc("2023-11-14T22:13:20-00:00"), INT64_C(1700000000000));
    cr_assert_eq(rfc("2023-11-15T22:12:20+23:59"), INT64_C(1700000000000));
    /* The offset moves across a day and a year boundary. */
    cr_assert_eq(rfc("1969-12-31T23:00:00-01:00"), 0);
    cr_assert_eq(rfc("1970-01-01T01:00:00+01:00"), 0);
    cr_assert_eq(rfc("2023-11-14T22:13:20+24:00"), -1);
    cr_assert_eq(rfc("2023-11-14T22:13:20+02:60"), -1);
    cr_assert_eq(rfc("2023-11-14T22:13:20+0200"), -1);
    cr_assert_eq(rfc("2023-11-14T22:13:20+2:00"), -1);
    cr_assert_eq(rfc("2023-11-14T22:13:20+02"), -1);
    cr_assert_eq(rfc("2023-11-14T22:13:20"), -1, "an offset is required");
}

Test(event, rfc3339_fractions)
{
    cr_assert_eq(rfc("1970-01-01T00:00:00.5Z"), 500);
    cr_assert_eq(rfc("1970-01-01T00:00:00.05Z"), 50);
    cr_assert_eq(rfc("1970-01-01T00:00:00.123Z"), 123);
    cr_assert_eq(rfc("1970-01-01T00:00:00.123456789Z"), 123);
    cr_assert_eq(rfc("1970-01-01T00:00:00.999999999999999999999999Z"), 999);
    cr_assert_eq(rfc("1970-01-01T00:00:00.000Z"), 0);
    cr_assert_eq(rfc("2023-11-14T22:13:20.123456789+02:00"), INT64_C(1699992800123));
    cr_assert_eq(rfc("1970-01-01T00:00:00.Z"), -1);
    cr_assert_eq(rfc("1970-01-01T00:00:00."), -1);
    cr_assert_eq(rfc("1970-01-01T00:00:00,5Z"), -1);
    cr_assert_eq(rfc("1970-01-01T00:00:00.5.5Z"), -1);
}

Test(event, rfc3339_separators_and_case)
{
    cr_assert_eq(rfc("2023-11-14t22:13:20z"), INT64_C(1700000000000));
    cr_assert_eq(rfc("2023-11-14 22:13:20Z"), INT64_C(1700000000000));
    cr_assert_eq(rfc("2023-11-14T22:13:20z"), INT64_C(1700000000000));
    cr_assert_eq(rfc("2023-11-14_22:13:20Z"), -1);
    cr_assert_eq(rfc("2023-11-1422:13:20Z"), -1);
    cr_assert_eq(rfc("2023/11/14T22:13:20Z"), -1);
    cr_assert_eq(rfc("2023-11-14T22.13.20Z"), -1);
}

Test(event, rfc3339_calendar)
{
    cr_assert_eq(rfc("2024-02-29T00:00:00Z"), INT64_C(1709164800000), "2024 is a leap year");
    cr_assert_eq(rfc("2000-02-29T00:00:00Z"), INT64_C(951782400000), "2000 is a leap year");
    cr_assert_eq(rfc("2023-02-29T00:00:00Z"), -1, "2023 is not");
    cr_assert_eq(rfc("2100-02-29T00:00:00Z"), -1, "2100 is not");
    cr_assert_eq(rfc("2023-02-28T00:00:00Z"), INT64_C(1677542400000));
    cr_assert_eq(rfc("2023-03-01T00:00:00Z"), INT64_C(1677628800000));
    cr_assert_eq(rfc("2023-04-31T00:00:00Z"), -1);
    cr_assert_eq(rfc("2023-04-30T00:00:00Z"), INT64_C(1682812800000));
    cr_assert_eq(rfc("2023-12-31T23:59:59Z"), INT64_C(1704067199000));
    cr_assert_eq(rfc("2023-13-01T00:00:00Z"), -1);
    cr_assert_eq(rfc("2023-00-01T00:00:00Z"), -1);
    cr_assert_eq(rfc("2023-01-00T00:00:00Z"), -1);
    cr_assert_eq(rfc("2023-01-32T00:00:00Z"), -1);
    cr_assert_eq(rfc("2023-01-01T24:00:00Z"), -1);
    cr_assert_eq(rfc("2023-01-01T23:60:00Z"), -1);
    cr_assert_eq(rfc("2023-01-01T23:59:61Z"), -1);
}

Test(event, rfc3339_every_day_matches_a_running_count)
{
    /* Walks every day from 1970 to 2400 and checks each against a day counter, which catches
     * any slip in the days-from-civil arithmetic around month, year and century ends. */
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t days = 0;
    char s[32];
    for (int y = 1970; y < 2400; y++) {
        bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for (int m = 1; m <= 12; m++) {
            int n = mdays[m - 1] + (m == 2 && leap);
            for (int d = 1; d <= n; d++) {
                snprintf(s, sizeof(s), "%04d-%02d-%02dT00:00:00Z", y, m, d);
                cr_assert_eq(rfc(s), days * 86400000, "%s", s);
                days++;
            }
            snprintf(s, sizeof(s), "%04d-%02d-%02dT00:00:00Z", y, m, n + 1);
            cr_assert_eq(rfc(s), -1, "%s", s);
        }
    }
}

Test(event, rfc3339_leap_second)
{
    /* 60 is accepted and folded into the second before it. */
    cr_assert_eq(rfc("2016-12-31T23:59:60Z"), rfc("2016-12-31T23:59:59Z"));
    cr_assert_eq(rfc("2016-12-31T23:59:60.5Z"), rfc("2016-12-31T23:59:59Z") + 500);
}

Test(event, rfc3339_range)
{
    cr_assert_eq(rfc("1969-12-31T23:59:59.999Z"), -1, "before the epoch");
    cr_assert_eq(rfc("0000-01-01T00:00:00Z"), -1);
    cr_assert_eq(rfc("1970-01-01T00:00:00+00:01"), -1);
    cr_assert_eq(rfc("9999-12-31T23:59:59.999-00:01"), -1, "past year 9999 in UTC");
    cr_assert_eq(rfc("10000-01-01T00:00:00Z"), -1);
    cr_assert_eq(rfc("-001-01-01T00:00:00Z"), -1);
    cr_assert_eq(rfc("+2023-01-01T00:00:00Z"), -1);
}

Test(event, rfc3339_bad_input)
{
    int64_t ms = 7;
    cr_assert_eq(rfc(""), -1);
    cr_assert_eq(rfc("Z"), -1);
    cr_assert_eq(rfc("2023-11-14"), -1);
    cr_assert_eq(rfc("2023-11-14T"), -1);
    cr_assert_eq(rfc("2023-11-14T22:13Z"), -1);
    cr_assert_eq(rfc("2023-11-14T22:13:2Z"), -1);
    cr_assert_eq(rfc("2023-1-14T22:13:20Z"), -1);
    cr_assert_eq(rfc("20a3-11-14T22:13:20Z"), -1);
    cr_assert_eq(rfc("2023-11-14T22:13:20ZZ"), -1);
    cr_assert_eq(rfc("2023-11-14T22:13:20Z\n"), -1);
    cr_assert_eq(rfc(" 2023-11-14T22:13:20Z"), -1);
    cr_assert_eq(rfc("2023-11-14T22:13:20UTC"), -1);
    cr_assert_eq(rfc("2023-11-14T-2:13:20Z"), -1);
    cr_assert_eq(rfc("\xff\xfe\xfd\xfc-11-14T22:13:20Z"), -1);
    cr_assert_eq(sg_parse_rfc3339_ms(NULL, 0, &ms), -EINVAL);
    cr_assert_eq(ms, 7, "untouched on failure");
    /* A NUL byte inside the given length is just a bad byte. */
    cr_assert_eq(sg_parse_rfc3339_ms("2023-11-14T22:13:20\0Z", 21, &ms), -EINVAL);
}

Test(event, rfc3339_every_prefix)
{
    /* Every truncation of a valid timestamp is refused, from a buffer of exactly that size. */
    const char *full[] = {"2023-11-14T22:13:20.123456Z", "2023-11-14T22:13:20-05:30"};
    for (size_t k = 0; k < 2; k++) {
        size_t n = strlen(full[k]);
        for (size_t len = 0; len < n; len++) {
            char *p = malloc(len ? len : 1);
            int64_t ms;
            memcpy(p, full[k], len);
            cr_assert_eq(sg_parse_rfc3339_ms(p, len, &ms), -EINVAL, "%s cut at %zu", full[k], len);
            free(p);
        }
        cr_assert_neq(rfc(full[k]), -1);
    }
}

/* ---- fields ---- */

Test(event, numeric_fields_collected)
{
    cr_assert_eq(decode("{\"key\":\"a\",\"ts\":1,\"x\":1,\"y\":2.5,\"s\":\"str\",\"b\":true,"
                        "\"n\":null,\"o\":{\"z\":1},\"arr\":[1,2],\"neg\":-4e-3}"),
                 0);
    cr_assert_eq(ev.nfields, 3);
    assert_field_name(0, "x");
    cr_assert_eq(ev.fields[0].value, 1.0);
    assert_field_name(1, "y");
    cr_assert_eq(ev.fields[1].value, 2.5);
    assert_field_name(2, "neg");
    cr_assert_eq(ev.fields[2].value, -4e-3);
}

Test(event, no_fields)
{
    cr_assert_eq(decode("{\"key\":\"a\",\"s\":\"1\"}"), 0);
    cr_assert_eq(ev.nfields, 0);
}

Test(event, nested_values_ignored)
{
    cr_assert_eq(decode("{\"key\":\"a\",\"o\":{\"v\":1,\"w\":{\"x\":2}},\"a\":[1,[2,3]],"
                        "\"v\":3}"),
                 0);
    cr_assert_eq(ev.nfields, 1);
    assert_field_name(0, "v");
    cr_assert_eq(ev.fields[0].value, 3.0);
}

Test(event, value_fields_filter)
{
    static char y[] = "y", x[] = "x", missing[] = "missing", ts[] = "ts";
    char *names[] = {y, missing, x, ts};
    cfg.event_value_fields.items = names;
    cfg.event_value_fields.count = 4;
    reinit();
    cr_assert_eq(decode("{\"key\":\"a\",\"ts\":5,\"z\":9,\"x\":1,\"w\":0,\"y\":2}"), 0);
    cr_assert_eq(ev.nfields, 2, "only listed names, and never the time field");
    assert_field_name(0, "x");
    cr_assert_eq(ev.fields[0].value, 1.0);
    assert_field_name(1, "y");
    cr_assert_eq(ev.fields[1].value, 2.0);

    /* A listed name that is not numeric is not a field. */
    cr_assert_eq(decode("{\"key\":\"a\",\"x\":\"1\",\"y\":[2]}"), 0);
    cr_assert_eq(ev.nfields, 0);
}

Test(event, max_fields_cut)
{
    cfg.event_max_fields = 3;
    reinit();
    cr_assert_eq(decode("{\"key\":\"a\",\"a\":1,\"b\":2,\"s\":\"x\",\"c\":3,\"d\":4,\"e\":5}"), 0);
    cr_assert_eq(ev.nfields, 3, "extra fields are ignored, the event is kept");
    assert_field_name(0, "a");
    assert_field_name(1, "b");
    assert_field_name(2, "c");

    cfg.event_max_fields = 0;
    reinit();
    cr_assert_eq(decode("{\"key\":\"a\",\"a\":1}"), 0);
    cr_assert_eq(ev.nfields, 0);
}

Test(event, max_fields_ceiling)
{
    char json[4096];
    size_t n = 0;
    cfg.event_max_fields = 1000;
    reinit();
    n += (size_t)snprintf(json + n, sizeof(json) - n, "{\"key\":\"a\"");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n, ",\"f%d\":%d", i, i);
    snprintf(json + n, sizeof(json) - n, "}");
    cr_assert_eq(decode(json), 0);
    cr_assert_eq(ev.nfields, SG_EVENT_MAX_FIELDS);
    assert_field_name(SG_EVENT_MAX_FIELDS - 1, "f63");
    cr_assert_eq(ev.fields[SG_EVENT_MAX_FIELDS - 1].value, 63.0);
}

Test(event, duplicate_field_first_wins)
{
    cr_assert_eq(decode("{\"key\":\"a\",\"v\":1,\"w\":2,\"v\":3}"), 0);
    cr_assert_eq(ev.nfields, 2);
    assert_field_name(0, "v");
    cr_assert_eq(ev.fields[0].value, 1.0);
    assert_field_name(1, "w");
}

Test(event, key_and_time_excluded_by_name)
{
    /* Every member named like the key or time field is left out, duplicates included. */
    cr_assert_eq(decode("{\"key\":\"a\",\"key\":5,\"ts\":1,\"ts\":2,\"v\":3}"), 0);
    cr_assert_eq(ev.nfields, 1);
    assert_field_name(0, "v");
}

Test(event, nan_like_inputs)
{
    assert_rejected("{\"key\":\"a\",\"v\":NaN}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\",\"v\":nan}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\",\"v\":Infinity}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\",\"v\":-Infinity}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\",\"v\":-inf}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":NaN}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\",\"ts\":NaN}", SG_REJECT_INVALID_JSON);
    /* An overflowing literal parses to infinity; it is not kept as a field. */
    cr_assert_eq(decode("{\"key\":\"a\",\"big\":1e999,\"v\":1,\"small\":-1e999}"), 0);
    cr_assert_eq(ev.nfields, 1);
    assert_field_name(0, "v");
    /* The string "NaN" is a string, not a number. */
    cr_assert_eq(decode("{\"key\":\"a\",\"v\":\"NaN\"}"), 0);
    cr_assert_eq(ev.nfields, 0);
}

/* ---- framing of one event ---- */

Test(event, invalid_json)
{
    assert_rejected("", SG_REJECT_INVALID_JSON);
    assert_rejected("   \r\n\t", SG_REJECT_INVALID_JSON);
    assert_rejected("{", SG_REJECT_INVALID_JSON);
    assert_rejected("}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\",}", SG_REJECT_INVALID_JSON);
    assert_rejected("{key:\"a\"}", SG_REJECT_INVALID_JSON);
    assert_rejected("{'key':'a'}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\" \"a\"}", SG_REJECT_INVALID_JSON);
    assert_rejected("hello", SG_REJECT_INVALID_JSON);
    assert_rejected("\xff\xfe{}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\\q\"}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"\\ud800\"}", SG_REJECT_INVALID_JSON);
}

Test(event, trailing_garbage)
{
    assert_rejected("{\"key\":\"a\"} x", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\"}x", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\"}{}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\"},", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\"}}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\"}\n{\"key\":\"b\"}", SG_REJECT_INVALID_JSON);
    /* Trailing whitespace is fine. */
    assert_key("{\"key\":\"a\"} \t\r\n", "a");
}

Test(event, every_truncation_is_invalid)
{
    const char *full = "{\"key\":\"k\",\"ts\":\"2023-11-14T22:13:20Z\",\"v\":[1,{\"a\":2.5e3}]}";
    size_t n = strlen(full);
    for (size_t len = 0; len < n; len++) {
        cr_assert_eq(decode_n(full, len), -EINVAL, "cut at %zu", len);
        cr_assert_eq(why, SG_REJECT_INVALID_JSON, "cut at %zu: %s", len, sg_reject_label(why));
    }
    cr_assert_eq(decode_n(full, n), 0);
}

Test(event, nul_and_control_bytes)
{
    const char a[] = "{\"key\":\"a\0b\"}";
    const char b[] = "{\"key\":\"a\",\0\"v\":1}";
    const char c[] = "{\"key\":\"a\"}\0";
    const char d[] = "\0{\"key\":\"a\"}";
    cr_assert_eq(decode_n(a, sizeof(a) - 1), -EINVAL);
    cr_assert_eq(why, SG_REJECT_INVALID_JSON);
    cr_assert_eq(decode_n(b, sizeof(b) - 1), -EINVAL);
    cr_assert_eq(why, SG_REJECT_INVALID_JSON);
    cr_assert_eq(decode_n(c, sizeof(c) - 1), -EINVAL);
    cr_assert_eq(why, SG_REJECT_INVALID_JSON);
    cr_assert_eq(decode_n(d, sizeof(d) - 1), -EINVAL);
    cr_assert_eq(why, SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\x01\"}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\x1f\"key\":\"a\"}", SG_REJECT_INVALID_JSON);
    assert_rejected("\x0b{\"key\":\"a\"}", SG_REJECT_INVALID_JSON);
    assert_rejected("\x0c{\"key\":\"a\"}", SG_REJECT_INVALID_JSON);
    /* A UTF-8 byte order mark is not JSON whitespace either. */
    assert_rejected("\xef\xbb\xbf{\"key\":\"a\"}", SG_REJECT_INVALID_JSON);
}

/* `{"key":"a","o":` + depth '[' + depth ']' + `}` */
static size_t nested_event(char *json, size_t depth)
{
    static const char head[] = "{\"key\":\"a\",\"o\":";
    size_t n = sizeof(head) - 1;
    memcpy(json, head, n);
    memset(json + n, '[', depth);
    memset(json + n + depth, ']', depth);
    json[n + 2 * depth] = '}';
    return n + 2 * depth + 1;
}

Test(event, deep_nesting)
{
    char *json = malloc(2 * 5000 + 32);
    cr_assert_not_null(json);
    cr_assert_eq(decode_n(json, nested_event(json, 5000)), -EINVAL,
                 "deeper than the parser's nesting limit");
    cr_assert_eq(why, SG_REJECT_INVALID_JSON);
    cr_assert_eq(decode_n(json, nested_event(json, 100)), 0);
    free(json);
}

Test(event, not_an_object)
{
    assert_rejected("[]", SG_REJECT_NOT_OBJECT);
    assert_rejected("[{\"key\":\"a\"}]", SG_REJECT_NOT_OBJECT);
    assert_rejected("\"key\"", SG_REJECT_NOT_OBJECT);
    assert_rejected("12", SG_REJECT_NOT_OBJECT);
    assert_rejected("-1.5", SG_REJECT_NOT_OBJECT);
    assert_rejected("true", SG_REJECT_NOT_OBJECT);
    assert_rejected("false", SG_REJECT_NOT_OBJECT);
    assert_rejected("null", SG_REJECT_NOT_OBJECT);
    assert_rejected(" [1, 2] ", SG_REJECT_NOT_OBJECT);
    cr_assert_null(dec.tree);
}

Test(event, raw_is_trimmed)
{
    const char *body = " \t\r\n{\"key\":\"a\", \"v\" : 1 }\r\n \t";
    cr_assert_eq(decode(body), 0);
    cr_assert_eq(ev.raw, input + 4);
    cr_assert_eq(ev.raw_len, strlen("{\"key\":\"a\", \"v\" : 1 }"));
    cr_assert(memcmp(ev.raw, "{\"key\":\"a\", \"v\" : 1 }", ev.raw_len) == 0);

    cr_assert_eq(decode("{\"key\":\"b\"}"), 0);
    cr_assert_eq(ev.raw, input);
    cr_assert_eq(ev.raw_len, strlen("{\"key\":\"b\"}"));
}

Test(event, rejected_view_is_empty)
{
    cr_assert_eq(decode("{\"key\":\"a\",\"v\":1}"), 0);
    assert_rejected("{\"v\":1}", SG_REJECT_MISSING_KEY);
    cr_assert_null(ev.raw);
    cr_assert_null(ev.key);
    cr_assert_eq(ev.nfields, 0);
}

Test(event, decoder_reused)
{
    /* Each decode frees the previous tree; the leak checker of the sanitizer build sees any
     * tree left behind. Flat events hold none; an escape sequence sends one to the tree. */
    for (int i = 0; i < 100; i++) {
        char json[64], key[16];
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(json, sizeof(json), "{\"key\":\"%s\",\"v\":%d%s}", key, i,
                 i % 2 ? ",\"s\":\"\\n\"" : "");
        assert_key(json, key);
        cr_assert_eq(ev.fields[0].value, (double)i);
        if (i % 2) {
            cr_assert_not(ev.flat);
            cr_assert_not_null(dec.tree);
        } else {
            cr_assert(ev.flat);
            cr_assert_null(dec.tree);
        }
    }
    cr_assert_eq(decode("{\"key\":\"first\",\"v\":1}"), 0);
    cr_assert_eq(decode("{\"key\":\"second\",\"w\":2}"), 0);
    cr_assert_eq(ev.key_len, 6);
    cr_assert(memcmp(ev.key, "second", 6) == 0);
    assert_field_name(0, "w");
    assert_rejected("nope", SG_REJECT_INVALID_JSON);
    cr_assert_null(dec.tree);
    sg_event_decoder_free(&dec);
    sg_event_decoder_free(&dec);
    cr_assert_null(dec.tree);
}

Test(event, other_key_field_names)
{
    static char k[] = "device.id", f[] = "serial";
    cfg.event_key_field = k;
    cfg.event_key_fallback = f;
    reinit();
    assert_key("{\"device.id\":\"d1\"}", "d1");
    assert_key("{\"serial\":\"s1\",\"key\":\"x\"}", "s1");
    assert_rejected("{\"key\":\"x\"}", SG_REJECT_MISSING_KEY);
}

Test(event, with_the_configuration_defaults)
{
    /* The decoder set up from the real defaults: key `key`, fallback `id`, time `ts`. */
    struct sg_config dcfg;
    struct sg_event_decoder ddec;
    struct sg_event dev;
    enum sg_reject dwhy;
    const char *json = "{\"id\":\"dev-1\",\"ts\":\"2023-11-14T22:13:20Z\",\"temp\":21.5}";
    sg_config_defaults(&dcfg);
    sg_event_decoder_init(&ddec, &dcfg);
    cr_assert_eq(ddec.max_fields, (size_t)dcfg.event_max_fields);
    cr_assert_eq(sg_event_decode(&ddec, json, strlen(json), NOW_MS, &dev, &dwhy), 0);
    cr_assert_eq(dev.key_len, 5);
    cr_assert(memcmp(dev.key, "dev-1", 5) == 0);
    cr_assert_eq(dev.ts_ms, INT64_C(1700000000000));
    cr_assert_eq(dev.nfields, 1);
    cr_assert_eq(dev.fields[0].name_len, 4);
    cr_assert(memcmp(dev.fields[0].name, "temp", 4) == 0);
    cr_assert(dev.flat);
    sg_event_decoder_free(&ddec);
    sg_config_free(&dcfg);
}

Test(event, distinct_field_is_taken_when_configured)
{
    static char user[] = "user";
    cr_assert_eq(decode("{\"key\":\"a\",\"user\":\"u-1\"}"), 0);
    cr_assert_null(ev.distinct, "off by default");

    cfg.window_distinct_field = user;
    reinit();
    cr_assert_eq(decode("{\"key\":\"a\",\"user\":\"u-1\",\"v\":2}"), 0);
    cr_assert_not_null(ev.distinct);
    cr_assert_eq(ev.distinct_len, 3);
    cr_assert(memcmp(ev.distinct, "u-1", 3) == 0);
    cr_assert_eq(ev.nfields, 1, "the distinct field is not a value field");

    cr_assert_eq(decode("{\"key\":\"a\",\"user\":17}"), 0);
    cr_assert_null(ev.distinct, "a number is not a distinct value");
    cr_assert_eq(decode("{\"key\":\"a\"}"), 0);
    cr_assert_null(ev.distinct);
    assert_rejected("{\"user\":\"u-2\"}", SG_REJECT_MISSING_KEY);
    cr_assert_null(ev.distinct, "cleared on rejection");
}

Test(event, utf8_valid_multibyte_accepted)
{
    /* 2-, 3- and 4-byte sequences, at the edges of their ranges, in the key and a value. */
    assert_key("{\"key\":\"caf\xc3\xa9\",\"v\":1}", "caf\xc3\xa9");
    assert_key("{\"key\":\"\xe2\x82\xac\",\"s\":\"\xef\xbf\xbf\"}", "\xe2\x82\xac");
    assert_key("{\"key\":\"\xf0\x9f\x98\x80\",\"s\":\"\xf4\x8f\xbf\xbf\"}", "\xf0\x9f\x98\x80");
    assert_key("{\"key\":\"k\",\"s\":\"\xc2\x80\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\"}", "k");
}

Test(event, utf8_invalid_rejected)
{
    static const char *const bad[] = {
        "{\"key\":\"\xff\",\"v\":1}",                 /* never valid */
        "{\"key\":\"k\",\"s\":\"\xc0\xaf\"}",         /* overlong '/' */
        "{\"key\":\"k\",\"s\":\"\xe0\x80\xaf\"}",     /* overlong, 3 bytes */
        "{\"key\":\"k\",\"s\":\"\xf0\x80\x80\xaf\"}", /* overlong, 4 bytes */
        "{\"key\":\"k\",\"s\":\"\xed\xa0\x80\"}",     /* a UTF-16 surrogate */
        "{\"key\":\"k\",\"s\":\"\xf4\x90\x80\x80\"}", /* above U+10FFFF */
        "{\"key\":\"k\",\"s\":\"\xe2\x82\"}",         /* cut short before the quote */
        "{\"key\":\"k\",\"s\":\"\x80\"}",             /* a lone continuation byte */
        "{\"key\":\"k\",\"s\":\"\xc3\x28\"}",         /* a lead byte without continuation */
        "{\"key\":\"k\",\"\xfe\":1}",                 /* in a member name */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_rejected(bad[i], SG_REJECT_INVALID_UTF8);
    /* A sequence cut by the end of the input. */
    cr_assert_eq(decode_n("{\"key\":\"k\"}\xe2\x82", 13), -EINVAL);
}

/* ---- the flat-event scanner ---- */

/* Each decode is also checked against the reference decoder (decode_n); these tests add which
 * of the two decoders answered. */
static void assert_path(const char *json, bool flat)
{
    int rc = decode(json);
    cr_assert_eq(rc, 0, "%s: rejected as %s", json, sg_reject_label(why));
    cr_assert_eq(ev.flat, flat, "%s: decoded by the %s decoder", json, ev.flat ? "flat" : "tree");
}

Test(event, flat_events_take_the_scanner)
{
    static const char *const flat[] = {
        "{\"key\":\"a\"}",
        "{\"key\":\"a\",\"ts\":1732460000000,\"value\":21.5,\"temp\":-3e2,\"ok\":true}",
        " {\"key\" : \"a\" ,\t\"v\" :\r\n1 } ",
        "{\"id\":\"dev-1\",\"ts\":\"2024-11-24T15:33:20.123+02:00\",\"v\":0}",
        "{\"key\":17,\"v\":null,\"w\":false}",
        "{\"key\":\"a\",\"ts\":null}",
        "{\"key\":\"a\",\"tags\":{\"site\":\"x\",\"rack\":[1,2,{\"u\":[]}]},\"v\":2}",
        "{\"key\":\"a\",\"list\":[],\"obj\":{},\"n\":[-0.5e-3,1E+2,0]}",
        "{\"key\":\"\xc3\xa9t\xc3\xa9\",\"\xe2\x82\xac\":1}",
        "{\"key\":\"a\",\"key\":\"b\",\"v\":1,\"v\":2}",
        "{\"key\":\"a\",\"big\":1e400,\"tiny\":-1e-400,\"v\":1}",
    };
    for (size_t i = 0; i < sizeof(flat) / sizeof(flat[0]); i++)
        assert_path(flat[i], true);
}

Test(event, everything_else_goes_to_the_tree)
{
    static const char *const tree[] = {
        "{\"key\":\"a\\\"b\"}",              /* an escape in the key */
        "{\"key\":\"a\",\"msg\":\"x\\ny\"}", /* an escape anywhere */
        "{\"k\\u0065y\":\"a\"}",             /* an escape in a name */
        "{\"key\":\"a\",\"v\":01}",          /* cJSON reads a leading zero, JSON does not */
        "{\"key\":\"a\",\"v\":1.}",          /* nor a bare point */
        "{\"key\":\"a\",\"v\":-01.5}",
        "{\"key\":\"a\",\"deep\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
        "]]]}",
        "{\"key\":\"a\",\"v\":1.00000000000000000000000000000000000000000000000000000000000000001}",
    };
    for (size_t i = 0; i < sizeof(tree) / sizeof(tree[0]); i++)
        assert_path(tree[i], false);
}

Test(event, rejections_are_the_tree_decoders)
{
    /* The scanner never rejects: each of these is handed on, and the reason is the tree's. */
    assert_rejected("{}", SG_REJECT_MISSING_KEY);
    assert_rejected("{\"v\":1}", SG_REJECT_MISSING_KEY);
    assert_rejected("{\"key\":true}", SG_REJECT_MISSING_KEY);
    assert_rejected("{\"key\":\"\"}", SG_REJECT_MISSING_KEY);
    assert_rejected("{\"key\":\"a\",\"ts\":-1}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":\"yesterday\"}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",\"ts\":{}}", SG_REJECT_BAD_TIMESTAMP);
    assert_rejected("{\"key\":\"a\",}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\"}}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\",\"v\":[1,]}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\",\"v\":1e}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\",\"v\":-}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\",\"v\":tru}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\" \"v\":1}", SG_REJECT_INVALID_JSON);
    assert_rejected("{\"key\":\"a\",\"v\":1", SG_REJECT_INVALID_JSON);
}

Test(event, numbers_read_as_strtod_reads_them)
{
    /* Exact shortcuts, round-to-even halfway cases, the edges of the double range and more
     * digits than the shortcut takes: each value must be strtod's, bit for bit (decode_n
     * compares with the reference, which reads numbers with strtod). */
    static const char *const numbers[] = {
        "0",
        "-0",
        "0.1",
        "0.3",
        "1e22",
        "1e23",
        "-1e-22",
        "9007199254740992",
        "9007199254740993",
        "18446744073709551615",
        "123456789012345678901234567890",
        "2.2250738585072014e-308",
        "2.2250738585072011e-308",
        "4.9e-324",
        "2.4e-324",
        "1.7976931348623157e308",
        "1.7976931348623159e308",
        "0.000000000000000000000000000000000000001",
        "3.14159265358979323846264338327950288",
        "1234567890123456789e-10",
        "45.77",
        "1796414058559",
        "1E2",
        "1e+2",
        "1e-2",
        "5e-1",
    };
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
        char json[128];
        snprintf(json, sizeof(json), "{\"key\":\"a\",\"v\":%s}", numbers[i]);
        int rc = decode(json);
        cr_assert_eq(rc, 0, "%s", json);
        double want = strtod(numbers[i], NULL);
        if (isfinite(want)) {
            cr_assert_eq(ev.nfields, 1, "%s", json);
            cr_assert(memcmp(&ev.fields[0].value, &want, sizeof(want)) == 0,
                      "%s: %.17g, want %.17g", json, ev.fields[0].value, want);
        } else {
            cr_assert_eq(ev.nfields, 0, "%s: not finite, not a field", json);
        }
        cr_assert(ev.flat, "%s", json);
    }
}

Test(event, flat_fields_follow_the_same_rules)
{
    /* The fallback's name is left out only when the fallback is the key, and the cap counts
     * what is left. */
    cfg.event_max_fields = 1;
    reinit();
    cr_assert_eq(decode("{\"id\":5,\"id\":6,\"v\":1}"), 0);
    cr_assert(ev.flat);
    cr_assert_eq(ev.nfields, 1);
    assert_field_name(0, "v");
    cr_assert_eq(decode("{\"key\":\"a\",\"id\":5,\"v\":1}"), 0);
    cr_assert_eq(ev.nfields, 1);
    assert_field_name(0, "id");
    /* Names of the key and the time are never fields, whatever their type. */
    cfg.event_max_fields = 8;
    reinit();
    cr_assert_eq(decode("{\"key\":\"a\",\"key\":2,\"ts\":3,\"ts\":4,\"v\":5}"), 0);
    cr_assert_eq(ev.nfields, 1);
    assert_field_name(0, "v");
    cr_assert_eq(ev.ts_ms, 3);
}

/* ---- the differential fuzzer's seeds ---- */

/* The whole of a file, in a heap buffer; NULL when it cannot be read. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    long size;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (data = malloc((size_t)size + 1)) != NULL) {
        *len = fread(data, 1, (size_t)size, f);
        if (*len != (size_t)size) {
            free(data);
            data = NULL;
        }
    }
    fclose(f);
    return data;
}

Test(event, fuzz_diff_corpus_under_every_configuration)
{
    /* Every seed of tests/fuzz/corpus/fuzz_event_diff, under each configuration the fuzzer
     * uses (event_configs.h), through decode_n: the two decoders must agree. The scanner must
     * also answer for some seeds under each configuration, or the comparison proves little. */
    struct dirent **names;
    int n = scandir(SG_EVENT_DIFF_CORPUS, &names, NULL, alphasort);
    char err[256], where[512];

    cr_assert(n > 2, "%s: no seeds (%s)", SG_EVENT_DIFF_CORPUS, strerror(errno));
    for (size_t c = 0; c < EVENT_CONFIG_COUNT; c++) {
        struct sg_config ccfg;
        size_t nflat = 0;
        cr_assert_eq(event_config_build(c, &ccfg, err, sizeof(err)), 0, "%s", err);
        init_decoders(&ccfg);
        for (int i = 0; i < n; i++) {
            char path[1024];
            size_t len = 0;
            char *data;
            if (names[i]->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/%s", SG_EVENT_DIFF_CORPUS, names[i]->d_name);
            data = read_file(path, &len);
            cr_assert_not_null(data, "%s: cannot read", path);
            snprintf(where, sizeof(where), "configuration %s, seed %s: ", event_configs[c].name,
                     names[i]->d_name);
            context = where;
            if (decode_n(data, len) == 0 && ev.flat)
                nflat++;
            context = "";
            free(data);
        }
        cr_assert_gt(nflat, 0, "configuration %s: the scanner answered for no seed",
                     event_configs[c].name);
        reinit();
        sg_config_free(&ccfg);
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}
