/* The decoder configurations the event fuzzers run under, shared by fuzz_event.c,
 * fuzz_event_diff.c and the unit test that replays fuzz_event_diff's seeds
 * (tests/unit/test_event.c). Each is the defaults plus a few options set by name, as an
 * operator would set them. */
#ifndef SG_TESTS_EVENT_CONFIGS_H
#define SG_TESTS_EVENT_CONFIGS_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "streamgate/config.h"

struct event_config {
    const char *name;
    const char *const *set; /* option, value, option, value, ..., NULL */
};

/* Indexes into event_configs[] for the targets that use only the first ones. */
enum { EVENT_CONFIG_DEFAULT, EVENT_CONFIG_CUSTOM };

static const char *const event_config_default[] = {NULL};
/* Another key field with the default key as its fallback, a value-field list, small limits
 * and a distinct field. */
static const char *const event_config_custom[] = {"event.key_field",
                                                  "user",
                                                  "event.key_fallback",
                                                  "key",
                                                  "event.time_field",
                                                  "time",
                                                  "event.value_fields",
                                                  "v,w,x,value",
                                                  "event.max_fields",
                                                  "2",
                                                  "event.max_key_size",
                                                  "8",
                                                  "window.distinct_field",
                                                  "uid",
                                                  NULL};
/* One field only, with the default key and fallback: a numeric fallback that becomes the key
 * must not take the only slot. */
static const char *const event_config_one_field[] = {"event.max_fields", "1", NULL};
/* The key and the time are one member, which is also the distinct field. */
static const char *const event_config_key_is_time[] = {"event.key_field",
                                                       "t",
                                                       "event.time_field",
                                                       "t",
                                                       "event.max_fields",
                                                       "3",
                                                       "window.distinct_field",
                                                       "t",
                                                       "event.max_key_size",
                                                       "32",
                                                       NULL};
/* The fallback is the time member, the distinct field is the key, and the value-field list
 * names the key, the fallback and the time. */
static const char *const event_config_fallback_is_time[] = {"event.key_fallback",
                                                            "ts",
                                                            "event.value_fields",
                                                            "ts,key,id,v,value",
                                                            "event.max_fields",
                                                            "2",
                                                            "event.max_key_size",
                                                            "16",
                                                            "window.distinct_field",
                                                            "key",
                                                            NULL};
/* No key fallback: `id` is an ordinary member, and the distinct field. */
static const char *const event_config_no_fallback[] = {
    "event.key_fallback", "", "event.max_fields", "3", "window.distinct_field", "id", NULL};
/* The most fields an event can keep, with a numeric fallback that realistic events carry. */
static const char *const event_config_wide[] = {
    "event.max_fields", "64", "event.key_fallback", "seq", "event.max_key_size", "20", NULL};

/* Numeric times in seconds: decimal fractions that binary cannot hold, converted to the
 * millisecond the same way by both decoders. */
static const char *const event_config_seconds[] = {"event.time_unit", "s", NULL};
/* Numeric times in microseconds, with a value-field list and a distinct field. */
static const char *const event_config_micros[] = {"event.time_unit",
                                                  "us",
                                                  "event.value_fields",
                                                  "v,value,ts",
                                                  "window.distinct_field",
                                                  "uid",
                                                  NULL};
/* Numeric times in nanoseconds (past int64 from year 2262), where the key is the time member:
 * the key keeps the number as written while the time is converted. */
static const char *const event_config_nanos_is_key[] = {"event.time_unit",
                                                        "ns",
                                                        "event.key_field",
                                                        "t",
                                                        "event.time_field",
                                                        "t",
                                                        "event.max_key_size",
                                                        "32",
                                                        NULL};

static const struct event_config event_configs[] = {
    {"default", event_config_default},
    {"custom", event_config_custom},
    {"one_field", event_config_one_field},
    {"key_is_time", event_config_key_is_time},
    {"fallback_is_time", event_config_fallback_is_time},
    {"no_fallback", event_config_no_fallback},
    {"wide", event_config_wide},
    {"seconds", event_config_seconds},
    {"micros", event_config_micros},
    {"nanos_is_key", event_config_nanos_is_key},
};
#define EVENT_CONFIG_COUNT (sizeof(event_configs) / sizeof(event_configs[0]))

/* Builds configuration `i` into `cfg` (the defaults, then each option). Returns 0, or a
 * negative code with `cfg` freed and sg_config_set's message in `errstr`. */
static inline int event_config_build(size_t i, struct sg_config *cfg, char *errstr,
                                     size_t errstr_size)
{
    sg_config_defaults(cfg);
    for (const char *const *set = event_configs[i].set; set[0]; set += 2) {
        int rc = sg_config_set(cfg, set[0], set[1], errstr, errstr_size);
        if (rc != 0) {
            sg_config_free(cfg);
            return rc;
        }
    }
    return 0;
}

/* For a fuzz target's LLVMFuzzerInitialize: builds configurations 0 to n - 1 into cfg[], or
 * says which one failed and why (after `who`) and aborts. */
static inline void event_configs_build_or_abort(struct sg_config *cfg, size_t n, const char *who)
{
    char err[256];

    for (size_t i = 0; i < n; i++) {
        if (event_config_build(i, &cfg[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "%s: configuration %s: %s\n", who, event_configs[i].name, err);
            abort();
        }
    }
}

static inline void event_configs_free(struct sg_config *cfg, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sg_config_free(&cfg[i]);
}

#endif
