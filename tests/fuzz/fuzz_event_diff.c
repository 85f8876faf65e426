/* The flat-event scanner against the tree decoder.
 *
 * The input is one event. Under every configuration of event_configs.h it is decoded by
 * sg_event_decode (the scanner first, the tree when the scanner gives up) and by
 * sg_event_decode_tree (cJSON's tree only, the reference), each with its own decoder, from one
 * heap copy of exactly the input's length, so a read past the end is an AddressSanitizer
 * report and the raw pointers of the two views can be compared as they are.
 *
 * Checked (abort, naming the configuration, what differs, both answers and the input as a C
 * string): the two return the same code and, on rejection, the same reason; an accepted event
 * has the same raw pointer and length, the same key bytes, ts_ms and ts_from_event, the same
 * fields in the same order (name bytes, and values bit for bit) and the same distinct value
 * (none, or the same bytes). When the scanner answered, the decode allocated nothing and left
 * no tree behind.
 *
 * At exit the target prints, per configuration, how many decodes sg_event_decode accepted
 * through the scanner and through the tree, and how many it rejected, so a run shows the
 * scanner is exercised. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_configs.h"
#include "streamgate/config.h"
#include "streamgate/event.h"

#define NOW_MS INT64_C(1700000000123)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* From the sanitizer runtime (sanitizer/allocator_interface.h). Weak, so the target still
 * links without one; allocations are then not counted. */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *))
    __attribute__((weak));

/* What sg_event_decode answered under one configuration, over the run. */
struct diff_counts {
    unsigned long long flat; /* accepted through the scanner */
    unsigned long long tree; /* accepted through the tree */
    unsigned long long rejected;
};

/* The configurations are built once and only read afterwards (the decoders borrow their
 * strings). */
struct diff_state {
    struct sg_config cfg[EVENT_CONFIG_COUNT];
    struct diff_counts counts[EVENT_CONFIG_COUNT];
    struct sg_event ev, ref_ev; /* large; reused */
};

static struct diff_state state;
/* Allocations made by this thread (libFuzzer's own threads allocate too). */
static _Thread_local unsigned long long mallocs;

static void count_malloc(const volatile void *p, size_t size)
{
    (void)p;
    (void)size;
    mallocs++;
}

static void count_free(const volatile void *p)
{
    (void)p;
}

static void report_and_free_configs(void)
{
    for (size_t i = 0; i < EVENT_CONFIG_COUNT; i++) {
        const struct diff_counts *c = &state.counts[i];
        fprintf(stderr,
                "fuzz_event_diff: %-16s accepted %llu through the scanner, %llu through the "
                "tree; rejected %llu\n",
                event_configs[i].name, c->flat, c->tree, c->rejected);
    }
    event_configs_free(state.cfg, EVENT_CONFIG_COUNT);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    event_configs_build_or_abort(state.cfg, EVENT_CONFIG_COUNT, "fuzz_event_diff");
    if (__sanitizer_install_malloc_and_free_hooks)
        __sanitizer_install_malloc_and_free_hooks(count_malloc, count_free);
    atexit(report_and_free_configs);
    return 0;
}

/* A bounded piece of text for a report; what does not fit is cut. */
struct text {
    char buf[4096];
    size_t len;
};

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_printf(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->len >= sizeof(t->buf) - 1)
        return;
    va_start(ap, fmt);
    n = vsnprintf(t->buf + t->len, sizeof(t->buf) - t->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n < sizeof(t->buf) - t->len ? (size_t)n : sizeof(t->buf) - 1 - t->len;
}

/* Byte `c` as it stands in a C string literal. Octal escapes, unlike \x, end after three
 * digits, so a following digit cannot join them. */
static const char *c_escape(unsigned char c, char out[8])
{
    if (c == '"' || c == '\\' || c == '?')
        snprintf(out, 8, "\\%c", c);
    else if (c >= 0x20 && c < 0x7f)
        snprintf(out, 8, "%c", c);
    else
        snprintf(out, 8, "\\%03o", c);
    return out;
}

static void text_quoted(struct text *t, const char *s, size_t n)
{
    char esc[8];

    if (!s) {
        text_printf(t, "NULL");
        return;
    }
    text_printf(t, "\"");
    for (size_t i = 0; i < n; i++)
        text_printf(t, "%s", c_escape((unsigned char)s[i], esc));
    text_printf(t, "\"");
}

/* One decoder's answer, for a report. */
static void text_answer(struct text *t, int rc, enum sg_reject why, const struct sg_event *ev,
                        const char *buf)
{
    if (rc != 0) {
        text_printf(t, "rc %d, rejected as %s", rc, sg_reject_label(why));
        return;
    }
    text_printf(t, "accepted through the %s: raw ", ev->flat ? "scanner" : "tree");
    if (ev->raw)
        text_printf(t, "at +%td, %zu bytes; key ", ev->raw - buf, ev->raw_len);
    else
        text_printf(t, "NULL; key ");
    text_quoted(t, ev->key, ev->key_len);
    text_printf(t, "; ts_ms %lld (%s); %zu fields {", (long long)ev->ts_ms,
                ev->ts_from_event ? "from the event" : "arrival", ev->nfields);
    for (size_t i = 0; i < ev->nfields; i++) {
        text_printf(t, "%s", i ? ", " : "");
        text_quoted(t, ev->fields[i].name, ev->fields[i].name_len);
        text_printf(t, ": %.17g (%a)", ev->fields[i].value, ev->fields[i].value);
    }
    text_printf(t, "}; distinct ");
    text_quoted(t, ev->distinct, ev->distinct_len);
}

/* One input under one configuration, with both answers. */
struct diff_case {
    size_t config;
    const char *buf;
    size_t len;
    int rc, ref_rc;
    enum sg_reject why, ref_why;
};

static void differ(const struct diff_case *dc, const char *what)
{
    struct text got = {.len = 0}, want = {.len = 0};
    char esc[8];

    text_answer(&got, dc->rc, dc->why, &state.ev, dc->buf);
    text_answer(&want, dc->ref_rc, dc->ref_why, &state.ref_ev, dc->buf);
    fprintf(stderr,
            "fuzz_event_diff: configuration %s: %s\n"
            "  sg_event_decode:      %s\n"
            "  sg_event_decode_tree: %s\n"
            "  input (%zu bytes): \"",
            event_configs[dc->config].name, what, got.buf, want.buf, dc->len);
    for (size_t i = 0; i < dc->len; i++)
        fputs(c_escape((unsigned char)dc->buf[i], esc), stderr);
    fputs("\"\n", stderr);
    abort();
}

static bool same_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* The part of two accepted views that differs, or NULL when they are the same. */
static const char *view_difference(const struct sg_event *ev, const struct sg_event *ref)
{
    if (ev->raw != ref->raw || ev->raw_len != ref->raw_len)
        return "the raw bytes differ";
    if (!same_bytes(ev->key, ev->key_len, ref->key, ref->key_len))
        return "the keys differ";
    if (ev->ts_ms != ref->ts_ms || ev->ts_from_event != ref->ts_from_event)
        return "the times differ";
    if (ev->nfields != ref->nfields)
        return "the numbers of fields differ";
    for (size_t i = 0; i < ev->nfields; i++) {
        if (!same_bytes(ev->fields[i].name, ev->fields[i].name_len, ref->fields[i].name,
                        ref->fields[i].name_len))
            return "a field's name differs";
        if (memcmp(&ev->fields[i].value, &ref->fields[i].value, sizeof(double)) != 0)
            return "a field's value differs";
    }
    if ((ev->distinct == NULL) != (ref->distinct == NULL) ||
        (ev->distinct &&
         !same_bytes(ev->distinct, ev->distinct_len, ref->distinct, ref->distinct_len)))
        return "the distinct values differ";
    return NULL;
}

static void check_config(size_t i, const char *buf, size_t len)
{
    struct sg_event_decoder dec, ref_dec;
    struct diff_case dc = {.config = i, .buf = buf, .len = len};
    struct sg_event *ev = &state.ev;
    unsigned long long before;
    bool allocated;
    const char *what;

    sg_event_decoder_init(&dec, &state.cfg[i]);
    sg_event_decoder_init(&ref_dec, &state.cfg[i]);
    dc.why = dc.ref_why = SG_REJECT_COUNT;
    before = mallocs;
    dc.rc = sg_event_decode(&dec, buf, len, NOW_MS, ev, &dc.why);
    allocated = mallocs != before || dec.tree != NULL;
    dc.ref_rc = sg_event_decode_tree(&ref_dec, buf, len, NOW_MS, &state.ref_ev, &dc.ref_why);

    if (dc.rc != dc.ref_rc)
        differ(&dc, "the answers differ");
    if (dc.rc != 0) {
        if (dc.why != dc.ref_why)
            differ(&dc, "the reasons differ");
        state.counts[i].rejected++;
    } else {
        what = view_difference(ev, &state.ref_ev);
        if (what)
            differ(&dc, what);
        if (ev->flat && allocated)
            differ(&dc, "the scanner allocated memory or left a tree");
        if (ev->flat)
            state.counts[i].flat++;
        else
            state.counts[i].tree++;
    }
    sg_event_decoder_free(&dec);
    sg_event_decoder_free(&ref_dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);

    if (!buf)
        abort();
    memcpy(buf, data, size);
    for (size_t i = 0; i < EVENT_CONFIG_COUNT; i++)
        check_config(i, buf, size);
    free(buf);
    return 0;
}
