/* Decoding one JSON event into a view: key, event time, numeric fields and the raw bytes.
 * The view borrows from the input buffer and from the decoder's last parse tree; it is valid
 * until the next sg_event_decode on the same decoder or sg_event_decoder_free.
 *
 * Two decoders give the same view. Most events are flat objects (no escape sequence in any
 * string, little nesting): a scanner reads those in one pass without building anything. Every
 * other event, and every event to reject, goes through cJSON's tree, which is the reference
 * the scanner is checked against (tests/fuzz/fuzz_event_diff.c: same answer, same reason, same
 * key, time, fields and bytes on every input). */
#ifndef STREAMGATE_EVENT_H
#define STREAMGATE_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "streamgate/config.h"

struct sg_config;

/* Why an event was rejected: enum name, metric label, human message. */
#define SG_REJECT_MAP(X)                                                                           \
    X(INVALID_JSON, "invalid_json", "not valid JSON")                                              \
    X(INVALID_UTF8, "invalid_utf8", "not valid UTF-8")                                             \
    X(NOT_OBJECT, "not_object", "an event must be a JSON object")                                  \
    X(MISSING_KEY, "missing_key", "the key field is missing or not a string or number")            \
    X(KEY_TOO_LONG, "key_too_long", "the key is longer than event.max_key_size")                   \
    X(BAD_TIMESTAMP, "bad_timestamp",                                                              \
      "the time field is not an epoch number in event.time_unit or an RFC 3339 string")            \
    X(LINE_TOO_LONG, "line_too_long", "the line is longer than tcp.max_line_size")                 \
    X(SINK_FAILED, "sink_failed", "the event could not be handed to a writer")                     \
    X(KEY_LIMIT, "key_limit",                                                                      \
      "events for new keys are refused: stream.max_keys keys are active, or stream state holds "   \
      "limits.streams_share of limits.memory")

enum sg_reject {
#define SG_X(name, label, msg) SG_REJECT_##name,
    SG_REJECT_MAP(SG_X)
#undef SG_X
        SG_REJECT_COUNT
};

const char *sg_reject_label(enum sg_reject r);
const char *sg_reject_message(enum sg_reject r);

struct sg_event_field {
    const char *name; /* borrowed; not NUL-terminated */
    size_t name_len;
    double value;
};

struct sg_event {
    const char *raw; /* the event's bytes as received */
    size_t raw_len;
    const char *key; /* not NUL-terminated */
    size_t key_len;
    int64_t ts_ms;      /* event time, epoch ms */
    bool ts_from_event; /* false: arrival time was used */
    size_t nfields;
    struct sg_event_field fields[SG_EVENT_MAX_FIELDS];
    bool flat;             /* decoded by the flat-event scanner, not the tree */
    int transport;         /* enum sg_transport; set by ingest, not by the decoder */
    int64_t received_ms;   /* arrival time; set by ingest */
    const char *client_id; /* the TLS client certificate's identity; NULL: none; set by ingest */
    const char *distinct;  /* the distinct field's string value (not NUL-terminated), or NULL */
    size_t distinct_len;
    char keybuf[32]; /* storage for a numeric key's text */
};

struct sg_event_decoder {
    const char *key_field;
    const char *key_fallback; /* NULL or "": none */
    const char *time_field;
    int time_unit;                   /* enum sg_time_unit of numeric times */
    const char *const *value_fields; /* NULL: all numeric fields */
    size_t nvalue_fields;
    size_t max_fields;
    size_t max_key_size;
    const char *distinct_field; /* NULL or "": none */
    /* Lengths of the names above; SIZE_MAX for a name that is unset. */
    size_t key_field_len, key_fallback_len, time_field_len, distinct_field_len;
    /* For each first byte of those names (0 for the empty name), a bit per length (modulo 64):
     * a member whose name has no bit set is none of them, without a compare. */
    uint64_t name_filter[256];
    /* Try the flat-event scanner first (on unless the locale's decimal point is not '.'). */
    bool flat;
    void *tree; /* the last parse tree (cJSON *), owned */
};

/* Sets the decoder up from the configuration; it borrows the config's strings. */
void sg_event_decoder_init(struct sg_event_decoder *dec, const struct sg_config *cfg);
void sg_event_decoder_free(struct sg_event_decoder *dec);

/* Decodes one event from `buf[0..len)`. `now_ms` is used when the event has no time field.
 * Returns 0 and fills `ev`, or -EINVAL and sets `*why`. */
int sg_event_decode(struct sg_event_decoder *dec, const char *buf, size_t len, int64_t now_ms,
                    struct sg_event *ev, enum sg_reject *why);
/* A quick look at an event before it is decoded, for cache hints: its key when the key field
 * is the object's first member and a string without escapes. Returns false otherwise, which
 * only means no hint. */
bool sg_event_peek_key(const struct sg_event_decoder *dec, const char *buf, size_t len,
                       const char **key, size_t *key_len);
/* The same through cJSON's tree only: the reference decoder. */
int sg_event_decode_tree(struct sg_event_decoder *dec, const char *buf, size_t len, int64_t now_ms,
                         struct sg_event *ev, enum sg_reject *why);

/* Parses an RFC 3339 timestamp ("2024-11-24T15:33:20.5Z", "...+02:00"; 'T' may be 't' or a
 * space). Returns 0 and epoch milliseconds, or -EINVAL. */
int sg_parse_rfc3339_ms(const char *s, size_t len, int64_t *out_ms);

#endif
