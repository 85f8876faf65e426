/* Decoding one JSON event into a borrowed view. The input is never assumed to be
 * NUL-terminated: cJSON is given (buf, len), and every check on the raw bytes stays inside
 * [0, len). */
#include "streamgate/event.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "event_internal.h"
#include "streamgate/common.h"
#include "streamgate/config.h"
#include "word.h"

/* 9999-12-31T23:59:59.999Z: the last millisecond RFC 3339 can spell. Numeric and textual
 * timestamps share this range so both forms mean the same thing. */
#define SG_EVENT_MAX_TS_MS INT64_C(253402300799999)

/* Below this magnitude a numeric time converts to int64 exactly (its fraction dropped); in
 * microseconds, anything above it is past year 9999. */
#define SG_EVENT_TIME_LIMIT_INT 9e18

/* 2^53: above it a double no longer holds every integer, so printing it as one would invent
 * digits the producer never sent. */
#define SG_EVENT_EXACT_INT_LIMIT 9007199254740992.0

static const char *const sg_reject_labels[] = {
#define SG_X(name, label, msg) label,
    SG_REJECT_MAP(SG_X)
#undef SG_X
};

static const char *const sg_reject_messages[] = {
#define SG_X(name, label, msg) msg,
    SG_REJECT_MAP(SG_X)
#undef SG_X
};

const char *sg_reject_label(enum sg_reject r)
{
    if ((unsigned)r >= SG_REJECT_COUNT)
        return "unknown";
    return sg_reject_labels[r];
}

const char *sg_reject_message(enum sg_reject r)
{
    if ((unsigned)r >= SG_REJECT_COUNT)
        return "unknown reason";
    return sg_reject_messages[r];
}

/* The length of a configured member name; SIZE_MAX when it is unset, which no member
 * matches. `empty_is_unset`: an empty key fallback or distinct field means none, while an
 * empty key or time field names the member "" (the tree decoder looks that up too). */
static size_t sg_event__name_len(const char *name, bool empty_is_unset)
{
    if (!name || (empty_is_unset && name[0] == '\0'))
        return SIZE_MAX;
    return strlen(name);
}

static void sg_event__filter_name(struct sg_event_decoder *dec, const char *name, size_t len)
{
    if (len == SIZE_MAX)
        return;
    dec->name_filter[len ? (unsigned char)name[0] : 0] |= UINT64_C(1) << (len & 63);
}

void sg_event_decoder_init(struct sg_event_decoder *dec, const struct sg_config *cfg)
{
    memset(dec, 0, sizeof(*dec));
    dec->key_field = cfg->event_key_field;
    dec->key_fallback = cfg->event_key_fallback;
    dec->time_field = cfg->event_time_field;
    dec->time_unit = cfg->event_time_unit;
    if (cfg->event_value_fields.count > 0) {
        dec->value_fields = (const char *const *)cfg->event_value_fields.items;
        dec->nvalue_fields = cfg->event_value_fields.count;
    }
    if (cfg->event_max_fields <= 0)
        dec->max_fields = 0;
    else if (cfg->event_max_fields > SG_EVENT_MAX_FIELDS)
        dec->max_fields = SG_EVENT_MAX_FIELDS;
    else
        dec->max_fields = (size_t)cfg->event_max_fields;
    dec->max_key_size = (size_t)cfg->event_max_key_size;
    dec->distinct_field = cfg->window_distinct_field;
    dec->key_field_len = sg_event__name_len(dec->key_field, false);
    dec->key_fallback_len = sg_event__name_len(dec->key_fallback, true);
    dec->time_field_len = sg_event__name_len(dec->time_field, false);
    dec->distinct_field_len = sg_event__name_len(dec->distinct_field, true);
    sg_event__filter_name(dec, dec->key_field, dec->key_field_len);
    sg_event__filter_name(dec, dec->key_fallback, dec->key_fallback_len);
    sg_event__filter_name(dec, dec->time_field, dec->time_field_len);
    sg_event__filter_name(dec, dec->distinct_field, dec->distinct_field_len);
    /* cJSON hands numbers to strtod with '.' replaced by the locale's decimal point, and so
     * does the scanner; it only assumes the point is '.', as it is in the C locale the gateway
     * runs in. */
    const struct lconv *lc = localeconv();
    dec->flat = lc && lc->decimal_point && strcmp(lc->decimal_point, ".") == 0;
}

void sg_event_decoder_free(struct sg_event_decoder *dec)
{
    if (dec->tree) {
        cJSON_Delete(dec->tree);
        dec->tree = NULL;
    }
}

static bool sg_event__is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The bytes a JSON value can start with. cJSON skips any byte <= 0x20 and a UTF-8 BOM before
 * the value; checking the first byte ourselves keeps such bytes out of the raw slice that is
 * forwarded as the event. */
static bool sg_event__can_start_value(char c)
{
    return c == '{' || c == '[' || c == '"' || c == '-' || (c >= '0' && c <= '9') || c == 't' ||
           c == 'f' || c == 'n';
}

/* JSON allows no raw control byte other than tab, LF and CR, in strings or between tokens.
 * cJSON is lenient here: it skips any byte <= 0x20 as whitespace and copies control bytes into
 * strings, where a NUL would silently cut a key, a member name or a timestamp short. Such
 * input is refused before parsing so the raw bytes forwarded for an accepted event are never
 * worse than what the decoder understood. */
static inline bool sg_event__bad_control(unsigned char c)
{
    return c < 0x20 && c != '\t' && c != '\n' && c != '\r';
}

/* One pass over every byte of every event, eight at a time: sets *control when a control
 * byte other than tab, LF or CR occurs, and *high when a byte has its high bit set (only then
 * is the UTF-8 check needed). A word with any byte below 0x20 (marked exactly by the
 * subtraction: a borrow only starts at such a byte) is looked at byte by byte, which only
 * happens for the whitespace of pretty-printed JSON. */
static void sg_event__scan_bytes(const char *p, size_t n, bool *control, bool *high)
{
    uint64_t acc = 0, w;
    bool bad = false;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        w = sg_word_load(p + i);
        acc |= w;
        if ((w - 0x20 * SG_WORD_ONES) & ~w & SG_WORD_HIGHS)
            for (size_t k = 0; k < 8; k++)
                bad |= sg_event__bad_control((unsigned char)p[i + k]);
    }
    for (; i < n; i++) {
        acc |= (unsigned char)p[i];
        bad |= sg_event__bad_control((unsigned char)p[i]);
    }
    *control = bad;
    *high = (acc & SG_WORD_HIGHS) != 0;
}

/* cJSON is lenient with escapes, as with control bytes: it reads "\uZZZZ" (not hex) as U+0000, and
 * U+0000, escaped or not, ends its copy of a string, so a key, a member name or a timestamp would
 * be cut short there without a word ("key\u0000x" would even be read as the key field). Events with
 * an escape JSON does not have, or an escaped NUL, are refused like raw control bytes. Escapes are
 * read in pairs, so "\\u0000" (an escaped backslash, then text) is fine. */
static bool sg_event__valid_escapes(const char *p, size_t n)
{
    const char *end = p + n;

    while ((p = memchr(p, '\\', (size_t)(end - p))) != NULL) {
        if (++p == end)
            return false;
        switch (*p++) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            break;
        case 'u': {
            unsigned v = 0;
            if (end - p < 4)
                return false;
            for (int k = 0; k < 4; k++) {
                int h = sg_hex_digit(p[k]);
                if (h < 0)
                    return false;
                v = v * 16 + (unsigned)h;
            }
            if (v == 0)
                return false;
            p += 4;
            break;
        }
        default:
            return false;
        }
    }
    return true;
}

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. JSON text
 * must be UTF-8, and downstream consumers (Kafka clients, Tablestore's STRING columns) reject
 * or mangle anything else, so it is refused here rather than forwarded. */
static bool sg_event__valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            return false;
        }
        if (n - i - 1 < need)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        i += need + 1;
    }
    return true;
}

static bool sg_event__name_is(const cJSON *item, const char *name)
{
    return name && item->string && strcmp(item->string, name) == 0;
}

int sg_event__key_from_number(double v, struct sg_event *ev)
{
    int n;
    if (!isfinite(v))
        return -EINVAL;
    if (fabs(v) < SG_EVENT_EXACT_INT_LIMIT && v == trunc(v))
        n = snprintf(ev->keybuf, sizeof(ev->keybuf), "%lld", (long long)v);
    else
        n = snprintf(ev->keybuf, sizeof(ev->keybuf), "%.17g", v);
    if (n < 0 || (size_t)n >= sizeof(ev->keybuf))
        return -EINVAL;
    ev->key = ev->keybuf;
    ev->key_len = (size_t)n;
    return 0;
}

int sg_event__time_from_number(int unit, double v, int64_t *ts_ms)
{
    double whole, p, r;

    if (!isfinite(v))
        return -EINVAL;
    switch (unit) {
    case SG_TIME_UNIT_S:
        /* A decimal fraction of a second is seldom exact in binary: 1732460000.123 is
         * 1732460000.1229999065... as a double, and times 1000 falls short of its millisecond.
         * A product within two units in its last place of a whole millisecond is read as that
         * millisecond; any other fraction is dropped. */
        p = v * 1000.0;
        r = round(p);
        whole = fabs(p - r) <= 2.0 * (nextafter(fabs(p), INFINITY) - fabs(p)) ? r : trunc(p);
        break;
    case SG_TIME_UNIT_US:
        /* As an integer, exactly; past the limit (year 287,000) the time is out of range
         * anyway. */
        if (!(fabs(v) < SG_EVENT_TIME_LIMIT_INT))
            return -EINVAL;
        whole = (double)((int64_t)v / 1000);
        break;
    case SG_TIME_UNIT_NS:
        /* Nanoseconds up to year 9999 go past int64: integers where they fit, a division of
         * doubles beyond (from year 2255, where a double is no finer than 1 us anyway). */
        if (fabs(v) < SG_EVENT_TIME_LIMIT_INT)
            whole = (double)((int64_t)v / 1000000);
        else
            whole = trunc(v / 1e6);
        break;
    default:
        whole = trunc(v);
        break;
    }
    /* Fractions of a millisecond are dropped toward zero, so (-1 ms, 0] is 0. */
    if (!(whole >= 0.0 && whole <= (double)SG_EVENT_MAX_TS_MS))
        return -EINVAL;
    *ts_ms = (int64_t)whole;
    return 0;
}

/* Fills ev->key from a key member. Returns 0, or -EINVAL with *why set. */
static int sg_event__take_key(const struct sg_event_decoder *dec, const cJSON *item,
                              struct sg_event *ev, enum sg_reject *why)
{
    if (cJSON_IsString(item) && item->valuestring) {
        /* cJSON does not keep a string's length; a "\u0000" inside the key ends it here. */
        ev->key = item->valuestring;
        ev->key_len = strlen(item->valuestring);
    } else if (cJSON_IsNumber(item)) {
        if (sg_event__key_from_number(item->valuedouble, ev) != 0) {
            *why = SG_REJECT_MISSING_KEY;
            return -EINVAL;
        }
    } else {
        *why = SG_REJECT_MISSING_KEY;
        return -EINVAL;
    }
    if (ev->key_len == 0) {
        *why = SG_REJECT_MISSING_KEY;
        return -EINVAL;
    }
    if (ev->key_len > dec->max_key_size) {
        *why = SG_REJECT_KEY_TOO_LONG;
        return -EINVAL;
    }
    return 0;
}

/* Fills ev->ts_ms from the time member (NULL when absent). Returns 0 or -EINVAL. */
static int sg_event__take_time(const cJSON *item, int unit, int64_t now_ms, struct sg_event *ev,
                               enum sg_reject *why)
{
    if (item == NULL || cJSON_IsNull(item)) {
        ev->ts_ms = now_ms;
        ev->ts_from_event = false;
        return 0;
    }
    if (cJSON_IsNumber(item)) {
        if (sg_event__time_from_number(unit, item->valuedouble, &ev->ts_ms) != 0)
            goto bad;
        ev->ts_from_event = true;
        return 0;
    }
    if (cJSON_IsString(item) && item->valuestring) {
        const char *s = item->valuestring;
        if (sg_parse_rfc3339_ms(s, strlen(s), &ev->ts_ms) != 0)
            goto bad;
        ev->ts_from_event = true;
        return 0;
    }
bad:
    *why = SG_REJECT_BAD_TIMESTAMP;
    return -EINVAL;
}

bool sg_event__wanted(const struct sg_event_decoder *dec, const char *name, size_t len)
{
    size_t i;
    if (dec->nvalue_fields == 0)
        return true;
    for (i = 0; i < dec->nvalue_fields; i++) {
        const char *f = dec->value_fields[i];
        if (f && strncmp(f, name, len) == 0 && f[len] == '\0')
            return true;
    }
    return false;
}

/* Collects numeric top-level members in the event's order. A name already collected is not
 * taken twice: like the key and time lookups, the first occurrence of a duplicated member
 * wins. The check only looks at collected fields, so it costs at most max_fields compares per
 * member however large the object is. */
static void sg_event__take_fields(const struct sg_event_decoder *dec, const cJSON *root,
                                  const char *fallback_used, struct sg_event *ev)
{
    const cJSON *item;
    ev->nfields = 0;
    if (dec->max_fields == 0)
        return;
    for (item = root->child; item; item = item->next) {
        size_t i;
        bool dup = false;
        if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->string == NULL)
            continue;
        if (sg_event__name_is(item, dec->key_field) || sg_event__name_is(item, fallback_used) ||
            sg_event__name_is(item, dec->time_field))
            continue;
        size_t len = strlen(item->string);
        if (!sg_event__wanted(dec, item->string, len))
            continue;
        for (i = 0; i < ev->nfields; i++) {
            if (ev->fields[i].name_len == len &&
                memcmp(ev->fields[i].name, item->string, len) == 0) {
                dup = true;
                break;
            }
        }
        if (dup)
            continue;
        ev->fields[ev->nfields].name = item->string;
        ev->fields[ev->nfields].name_len = len;
        ev->fields[ev->nfields].value = item->valuedouble;
        if (++ev->nfields == dec->max_fields)
            break; /* extra fields are ignored, not a reason to reject */
    }
}

/* Empties the decoder's part of the view (ingest's transport and arrival time stay). */
static void event_clear(struct sg_event *ev)
{
    ev->raw = NULL;
    ev->raw_len = 0;
    ev->key = NULL;
    ev->key_len = 0;
    ev->ts_ms = 0;
    ev->ts_from_event = false;
    ev->nfields = 0;
    ev->distinct = NULL;
    ev->distinct_len = 0;
    ev->flat = false;
}

/* What both decoders require of the bytes before parsing. Trims the whitespace around the
 * event into [*start, *end). Returns 0, or -EINVAL with *why set. */
static int sg_event__check_bytes(const char *buf, size_t len, const char **startp,
                                 const char **endp, enum sg_reject *why)
{
    const char *start, *end;
    bool control, high;

    if (buf == NULL) {
        *why = SG_REJECT_INVALID_JSON;
        return -EINVAL;
    }
    start = buf;
    end = buf + len;
    while (start < end && sg_event__is_ws(*start))
        start++;
    while (end > start && sg_event__is_ws(end[-1]))
        end--;
    if (start == end || !sg_event__can_start_value(*start)) {
        *why = SG_REJECT_INVALID_JSON;
        return -EINVAL;
    }
    sg_event__scan_bytes(start, (size_t)(end - start), &control, &high);
    if (control) {
        *why = SG_REJECT_INVALID_JSON;
        return -EINVAL;
    }
    if (high && !sg_event__valid_utf8((const unsigned char *)start, (size_t)(end - start))) {
        *why = SG_REJECT_INVALID_UTF8;
        return -EINVAL;
    }
    *startp = start;
    *endp = end;
    return 0;
}

/* The tree decoder on checked, trimmed bytes. */
static int sg_event__decode_tree(struct sg_event_decoder *dec, const char *start, const char *end,
                                 int64_t now_ms, struct sg_event *ev, enum sg_reject *why)
{
    const char *parse_end = NULL;
    const char *fallback_used = NULL;
    const cJSON *item;
    cJSON *root;

    /* Only this decoder sees escapes: the scanner hands on every event with a backslash. */
    if (!sg_event__valid_escapes(start, (size_t)(end - start))) {
        *why = SG_REJECT_INVALID_JSON;
        return -EINVAL;
    }
    root = cJSON_ParseWithLengthOpts(start, (size_t)(end - start), &parse_end, 0);
    if (root == NULL || parse_end != end) {
        /* parse_end != end: something other than whitespace follows the value. */
        cJSON_Delete(root);
        *why = SG_REJECT_INVALID_JSON;
        return -EINVAL;
    }
    dec->tree = root;
    if (!cJSON_IsObject(root)) {
        *why = SG_REJECT_NOT_OBJECT;
        goto reject;
    }
    ev->raw = start;
    ev->raw_len = (size_t)(end - start);

    item = dec->key_field ? cJSON_GetObjectItemCaseSensitive(root, dec->key_field) : NULL;
    if (item == NULL && dec->key_fallback && dec->key_fallback[0] != '\0') {
        item = cJSON_GetObjectItemCaseSensitive(root, dec->key_fallback);
        fallback_used = dec->key_fallback;
    }
    if (item == NULL) {
        *why = SG_REJECT_MISSING_KEY;
        goto reject;
    }
    if (sg_event__take_key(dec, item, ev, why) != 0)
        goto reject;

    item = dec->time_field ? cJSON_GetObjectItemCaseSensitive(root, dec->time_field) : NULL;
    if (sg_event__take_time(item, dec->time_unit, now_ms, ev, why) != 0)
        goto reject;

    sg_event__take_fields(dec, root, fallback_used, ev);
    if (dec->distinct_field && dec->distinct_field[0] != '\0') {
        item = cJSON_GetObjectItemCaseSensitive(root, dec->distinct_field);
        if (cJSON_IsString(item) && item->valuestring) {
            ev->distinct = item->valuestring;
            ev->distinct_len = strlen(item->valuestring);
        }
    }
    return 0;

reject:
    /* Nothing of a rejected event is used afterwards; free the tree now rather than hold it
     * until the next call. */
    sg_event_decoder_free(dec);
    event_clear(ev);
    return -EINVAL;
}

bool sg_event_peek_key(const struct sg_event_decoder *dec, const char *buf, size_t len,
                       const char **key, size_t *key_len)
{
    const char *p = buf, *end = buf + len;
    size_t n = dec->key_field_len;

    while (p < end && sg_event__is_ws(*p))
        p++;
    if (n == SIZE_MAX || (size_t)(end - p) < n + 6 || p[0] != '{' || p[1] != '"' ||
        memcmp(p + 2, dec->key_field, n) != 0 || p[2 + n] != '"' || p[3 + n] != ':' ||
        p[4 + n] != '"')
        return false; /* compact JSON only: this is a hint, not a parse */
    const char *k = p + 5 + n, *q = memchr(k, '"', (size_t)(end - k));
    if (!q || memchr(k, '\\', (size_t)(q - k)))
        return false;
    *key = k;
    *key_len = (size_t)(q - k);
    return true;
}

/* Both entry points: the checks on the bytes, then the scanner when `flat`, then the tree. */
static int sg_event__decode(struct sg_event_decoder *dec, const char *buf, size_t len,
                            int64_t now_ms, struct sg_event *ev, enum sg_reject *why, bool flat)
{
    const char *start, *end;

    sg_event_decoder_free(dec);
    event_clear(ev);
    if (sg_event__check_bytes(buf, len, &start, &end, why) != 0)
        return -EINVAL;
    if (flat && *start == '{') {
        if (sg_event__decode_flat(dec, start, (size_t)(end - start), now_ms, ev) == 1) {
            ev->flat = true;
            return 0;
        }
        event_clear(ev); /* whatever the scanner filled before it gave up */
    }
    return sg_event__decode_tree(dec, start, end, now_ms, ev, why);
}

int sg_event_decode(struct sg_event_decoder *dec, const char *buf, size_t len, int64_t now_ms,
                    struct sg_event *ev, enum sg_reject *why)
{
    return sg_event__decode(dec, buf, len, now_ms, ev, why, dec->flat);
}

int sg_event_decode_tree(struct sg_event_decoder *dec, const char *buf, size_t len, int64_t now_ms,
                         struct sg_event *ev, enum sg_reject *why)
{
    return sg_event__decode(dec, buf, len, now_ms, ev, why, false);
}

/* Reads exactly `n` ASCII digits at s[*pos]. Returns -1 if one is not a digit. */
static int sg_event__digits(const char *s, size_t len, size_t *pos, size_t n)
{
    int v = 0;
    size_t i;
    if (len - *pos < n)
        return -1;
    for (i = 0; i < n; i++) {
        char c = s[*pos + i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *pos += n;
    return v;
}

static bool sg_event__expect(const char *s, size_t len, size_t *pos, char c)
{
    if (*pos >= len || s[*pos] != c)
        return false;
    (*pos)++;
    return true;
}

static bool sg_event__is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int sg_event__days_in_month(int y, int m)
{
    static const unsigned char days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && sg_event__is_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date: the era-based days-from-civil
 * algorithm (400-year eras of 146097 days, years starting in March so the leap day falls at
 * the end). Exact for every date, no libc time functions, no time zone or locale. */
static int64_t sg_event__days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;                                   /* [0, 399] */
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

int sg_parse_rfc3339_ms(const char *s, size_t len, int64_t *out_ms)
{
    size_t pos = 0;
    int year, mon, day, hour, min, sec, ms = 0, off_min = 0;
    int64_t t;

    if (s == NULL)
        return -EINVAL;
    if ((year = sg_event__digits(s, len, &pos, 4)) < 0 || !sg_event__expect(s, len, &pos, '-') ||
        (mon = sg_event__digits(s, len, &pos, 2)) < 0 || !sg_event__expect(s, len, &pos, '-') ||
        (day = sg_event__digits(s, len, &pos, 2)) < 0)
        return -EINVAL;
    if (pos >= len || (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' '))
        return -EINVAL;
    pos++;
    if ((hour = sg_event__digits(s, len, &pos, 2)) < 0 || !sg_event__expect(s, len, &pos, ':') ||
        (min = sg_event__digits(s, len, &pos, 2)) < 0 || !sg_event__expect(s, len, &pos, ':') ||
        (sec = sg_event__digits(s, len, &pos, 2)) < 0)
        return -EINVAL;
    if (pos < len && s[pos] == '.') {
        size_t first = ++pos;
        /* Any number of digits; the first three are the milliseconds, the rest truncated. */
        while (pos < len && s[pos] >= '0' && s[pos] <= '9') {
            if (pos - first < 3)
                ms = ms * 10 + (s[pos] - '0');
            pos++;
        }
        if (pos == first)
            return -EINVAL;
        if (pos - first == 1)
            ms *= 100;
        else if (pos - first == 2)
            ms *= 10;
    }
    if (pos >= len)
        return -EINVAL;
    if (s[pos] == 'Z' || s[pos] == 'z') {
        pos++;
    } else if (s[pos] == '+' || s[pos] == '-') {
        int sign = s[pos] == '-' ? -1 : 1, oh, om;
        pos++;
        if ((oh = sg_event__digits(s, len, &pos, 2)) < 0 || !sg_event__expect(s, len, &pos, ':') ||
            (om = sg_event__digits(s, len, &pos, 2)) < 0)
            return -EINVAL;
        if (oh > 23 || om > 59)
            return -EINVAL;
        off_min = sign * (oh * 60 + om);
    } else {
        return -EINVAL;
    }
    if (pos != len)
        return -EINVAL;

    if (mon < 1 || mon > 12 || day < 1 || day > sg_event__days_in_month(year, mon) || hour > 23 ||
        min > 59 || sec > 60)
        return -EINVAL;
    if (sec == 60)
        sec = 59; /* a leap second; epoch time has no slot for it, so it joins the one before */

    t = sg_event__days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec;
    t -= (int64_t)off_min * 60;
    t = t * 1000 + ms;
    if (t < 0 || t > SG_EVENT_MAX_TS_MS)
        return -EINVAL;
    *out_ms = t;
    return 0;
}
