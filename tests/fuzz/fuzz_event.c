/* Event decoding and JSON body splitting.
 *
 * The input is one body. It is decoded as a single event by two decoders (the default
 * configuration, and one with a value-field list, a distinct field and small limits), split
 * with sg_json_split, and each element the split hands out is decoded on its own, as ingest
 * does. Its bytes are also given to the RFC 3339 parser. Every buffer given to the code under
 * test is a heap copy of exactly its length, so reads past the end are caught.
 *
 * Invariants checked (abort on violation): an accepted event's raw bytes lie inside the input
 * and hold no surrounding whitespace; its key is non-empty and within max_key_size; its time is
 * in [0, 9999-12-31]; it has at most max_fields finite fields with distinct names; a rejection
 * names a known reason. The split hands out non-empty elements in order, each inside the body
 * at the offset it reports, and returns how many it handed out; on a framing error it hands
 * out nothing and reports an offset within the body. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_configs.h"
#include "streamgate/config.h"
#include "streamgate/event.h"
#include "json_split.h"

#define NOW_MS    INT64_C(1700000000123)
#define MAX_TS_MS INT64_C(253402300799999)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The first two configurations of event_configs.h (the defaults and "custom"), built once
 * and only read afterwards: the decoders borrow their strings. */
struct fuzz_state {
    struct sg_config cfg[EVENT_CONFIG_CUSTOM + 1];
    struct sg_event ev; /* large; one instance reused */
};

static struct fuzz_state *state;

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_event: %s\n", what);
    abort();
}

static void free_state(void)
{
    if (!state)
        return;
    event_configs_free(state->cfg, EVENT_CONFIG_CUSTOM + 1);
    free(state);
    state = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    state = calloc(1, sizeof(*state));
    if (!state)
        abort();
    event_configs_build_or_abort(state->cfg, EVENT_CONFIG_CUSTOM + 1, "fuzz_event");
    atexit(free_state);
    return 0;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void check_decode(struct sg_event_decoder *dec, const char *buf, size_t len)
{
    struct sg_event *ev = &state->ev;
    enum sg_reject why = SG_REJECT_COUNT;
    int rc = sg_event_decode(dec, buf, len, NOW_MS, ev, &why);

    if (rc == -EINVAL) {
        if ((unsigned)why >= SG_REJECT_COUNT)
            fail("rejection without a known reason");
        if (ev->raw != NULL || ev->key != NULL || ev->nfields != 0)
            fail("a rejected event left a view behind");
        return;
    }
    if (rc != 0)
        fail("decode returned neither 0 nor -EINVAL");

    if (ev->raw < buf || ev->raw_len == 0 || ev->raw_len > len ||
        (size_t)(ev->raw - buf) > len - ev->raw_len)
        fail("raw bytes outside the input");
    if (is_ws(ev->raw[0]) || is_ws(ev->raw[ev->raw_len - 1]))
        fail("raw bytes keep surrounding whitespace");
    if (ev->raw[0] != '{' || ev->raw[ev->raw_len - 1] != '}')
        fail("an accepted event is not an object's bytes");
    if (!ev->key || ev->key_len == 0 || ev->key_len > dec->max_key_size)
        fail("key empty or too long");
    if (memchr(ev->key, '\0', ev->key_len) != NULL)
        fail("key holds a NUL within its length");
    if (ev->ts_ms < 0 || ev->ts_ms > MAX_TS_MS)
        fail("time out of range");
    if (!ev->ts_from_event && ev->ts_ms != NOW_MS)
        fail("arrival time not used for an event without time");
    if (ev->nfields > dec->max_fields || ev->nfields > SG_EVENT_MAX_FIELDS)
        fail("too many fields");
    for (size_t i = 0; i < ev->nfields; i++) {
        if (!ev->fields[i].name || !isfinite(ev->fields[i].value))
            fail("field without a name or with a non-finite value");
        for (size_t j = 0; j < i; j++) {
            if (ev->fields[i].name_len == ev->fields[j].name_len &&
                memcmp(ev->fields[i].name, ev->fields[j].name, ev->fields[i].name_len) == 0)
                fail("a field name taken twice");
        }
    }
    if (ev->distinct && memchr(ev->distinct, '\0', ev->distinct_len) != NULL)
        fail("distinct value holds a NUL within its length");
}

struct split_check {
    const char *body;
    size_t len;
    size_t count;
    size_t next_min; /* the next element must start at or after this offset */
    struct sg_event_decoder *dec;
};

static int on_element(void *arg, size_t index, const char *elem, size_t len, size_t offset)
{
    struct split_check *sc = arg;
    char *copy;

    if (index != sc->count)
        fail("element index out of order");
    if (len == 0)
        fail("empty element");
    if (elem < sc->body || (size_t)(elem - sc->body) != offset || offset > sc->len ||
        len > sc->len - offset)
        fail("element outside the body or at a wrong offset");
    if (offset < sc->next_min)
        fail("elements overlap or go backwards");
    if (is_ws(elem[0]) || is_ws(elem[len - 1]))
        fail("element keeps surrounding whitespace");
    sc->next_min = offset + len;
    sc->count++;

    /* Each element on its own, in a buffer of exactly its length. */
    copy = malloc(len);
    if (!copy)
        abort();
    memcpy(copy, elem, len);
    check_decode(sc->dec, copy, len);
    free(copy);
    return 0;
}

static void check_split(struct sg_event_decoder *dec, const char *body, size_t len)
{
    struct split_check sc = {.body = body, .len = len, .dec = dec};
    size_t err_offset = SIZE_MAX;
    const char *err_msg = NULL;
    int rc = sg_json_split(body, len, on_element, &sc, &err_offset, &err_msg);

    if (rc < 0) {
        if (rc != -EINVAL)
            fail("split returned an error other than -EINVAL");
        if (sc.count != 0)
            fail("elements handed out before a framing error");
        if (!err_msg || err_offset > len)
            fail("framing error without a message or with an offset past the body");
        return;
    }
    if ((size_t)rc != sc.count)
        fail("split's count differs from the elements handed out");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sg_event_decoder dec_default, dec_custom;
    char *buf = malloc(size ? size : 1);
    int64_t ms;

    if (!buf)
        abort();
    memcpy(buf, data, size);

    sg_event_decoder_init(&dec_default, &state->cfg[EVENT_CONFIG_DEFAULT]);
    sg_event_decoder_init(&dec_custom, &state->cfg[EVENT_CONFIG_CUSTOM]);

    check_decode(&dec_default, buf, size);
    check_decode(&dec_custom, buf, size);
    check_split(&dec_default, buf, size);

    if (sg_parse_rfc3339_ms(buf, size, &ms) == 0 && (ms < 0 || ms > MAX_TS_MS))
        fail("RFC 3339 time out of range");

    sg_event_decoder_free(&dec_default);
    sg_event_decoder_free(&dec_custom);
    free(buf);
    return 0;
}
