/* The flat-event scanner: one pass over an event object, with no tree and no allocation. It
 * reads the top-level members in order, notes the first member of each configured name (key,
 * key fallback, time, distinct field) and the numeric members that become fields, skips nested
 * objects and arrays after checking their syntax, and then applies the same rules as the tree
 * decoder (event.c) through the helpers both share.
 *
 * It answers only what it is sure of. It gives up (returns 0, and the tree decoder decides) on
 * any escape sequence in a string, on nesting deeper than SG_FLAT_MAX_DEPTH, on any number or
 * token outside strict JSON (cJSON accepts a few more, such as "01" or "1."), and on every
 * event the tree decoder rejects, so the reason given is always the tree decoder's. Within
 * those bounds its syntax is strict JSON, which cJSON accepts as such, and its numbers are
 * exactly the doubles strtod gives, which is how cJSON reads them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "event_internal.h"
#include "streamgate/common.h"
#include "word.h"

/* Deepest nesting of member values the scanner skips; deeper events go to the tree. */
#define SG_FLAT_MAX_DEPTH 32
/* Longest number read with strtod from a copy (when the exact shortcut does not apply);
 * longer ones go to the tree. */
#define SG_FLAT_NUMBER_MAX 63
/* Integers up to 2^53 convert to a double exactly. */
#define SG_FLAT_EXACT_MANTISSA (UINT64_C(1) << 53)

enum sg_flat_type { SG_FLAT_NONE, SG_FLAT_STRING, SG_FLAT_NUMBER, SG_FLAT_NULL, SG_FLAT_OTHER };

/* One member value: a string's bytes (between the quotes), a number's value, or only its
 * type. SG_FLAT_NONE: no member of that name was seen. */
struct sg_flat_value {
    enum sg_flat_type type;
    const char *str;
    size_t len;
    double num;
};

static inline bool sg_flat__is_digit(char c)
{
    return (unsigned char)(c - '0') < 10;
}

/* The bytes were checked before the scanner runs: no control byte but tab, LF and CR is
 * left, so every byte up to the space is whitespace. */
static inline const char *sg_flat__skip_ws(const char *p, const char *end)
{
    if (__builtin_expect(p < end && (unsigned char)*p > ' ', 1))
        return p; /* compact JSON: nothing to skip */
    while (p < end && (unsigned char)*p <= ' ')
        p++;
    return p;
}

static inline bool sg_flat__name_is(const char *name, size_t len, const char *want, size_t want_len)
{
    return len == want_len && sg_bytes_equal(name, want, len);
}

/* A string at *pp (its opening quote) with no escape sequence. Sets its bytes and moves *pp
 * past the closing quote. Eight bytes at a time, looking for a quote or a backslash. */
static inline bool sg_flat__string(const char **pp, const char *end, const char **s, size_t *n)
{
    const char *start = *pp + 1, *q = start;

    for (; end - q >= 8; q += 8) {
        uint64_t w = sg_word_load(q);
        uint64_t hit = sg_word_match(w, '"') | sg_word_match(w, '\\');
        if (hit) {
            q += (size_t)__builtin_ctzll(hit) / 8; /* the first quote or backslash */
            goto found;
        }
    }
    for (; q < end; q++)
        if (*q == '"' || *q == '\\')
            goto found;
    return false;
found:
    if (*q == '\\')
        return false;
    *s = start;
    *n = (size_t)(q - start);
    *pp = q + 1;
    return true;
}

static const uint64_t sg_flat_pow10_int[] = {1,      10,      100,      1000,     10000,
                                             100000, 1000000, 10000000, 100000000};

/* Folds the digits at the start of the eight bytes at p (at most eight) into *m and returns
 * how many there were. Each byte is xored with '0', so a digit becomes 0 to 9; a byte is no
 * digit when adding 0x76 to its low seven bits reaches the high bit, or the high bit is set
 * already (no carry crosses bytes). The digits are then moved to the top of the word, behind
 * zeros, and summed by pairs: two-digit lanes, four-digit lanes, the whole. */
static inline unsigned sg_flat__digits8(const char *p, uint64_t *m)
{
    uint64_t t = sg_word_load(p) ^ UINT64_C(0x3030303030303030);
    uint64_t other =
        (((t & UINT64_C(0x7F7F7F7F7F7F7F7F)) + UINT64_C(0x7676767676767676)) | t) & SG_WORD_HIGHS;
    unsigned n = other ? (unsigned)__builtin_ctzll(other) / 8 : 8;

    if (n == 0)
        return 0;
    t <<= 8 * (8 - n);
    t = (t * 10 + (t >> 8)) & UINT64_C(0x00FF00FF00FF00FF);
    t = (t * 100 + (t >> 16)) & UINT64_C(0x0000FFFF0000FFFF);
    t = (t * 10000 + (t >> 32)) & UINT64_C(0xFFFFFFFF);
    *m = *m * sg_flat_pow10_int[n] + t;
    return n;
}

/* Folds the run of digits at p into *mant (which wraps past 19 digits; the caller counts
 * them) and returns where the run ends: eight bytes at a time while eight are left, then one
 * by one. */
static inline const char *sg_flat__digits(const char *p, const char *end, uint64_t *mant)
{
    while (end - p >= 8) {
        unsigned n = sg_flat__digits8(p, mant);
        p += n;
        if (n < 8)
            return p;
    }
    for (; p < end && sg_flat__is_digit(*p); p++)
        *mant = *mant * 10 + (uint64_t)(*p - '0');
    return p;
}

/* A number at *pp in strict JSON syntax. With `out`, also its value: exact for up to 19
 * significant digits and a decimal exponent within +-22 (Clinger's fast path), from strtod on
 * a copy otherwise. Moves *pp past it; what follows is for the caller to check. */
static inline bool sg_flat__number(const char **pp, const char *end, double *out)
{
    const char *p = *pp, *start = p, *digits;
    bool neg = false;
    uint64_t mant = 0; /* every digit folded in; only used when there are at most 19 */
    size_t nint, nfrac = 0;
    int64_t exp10 = 0;

    if (*p == '-') {
        neg = true;
        if (++p == end)
            return false;
    }
    digits = p;
    p = sg_flat__digits(p, end, &mant);
    nint = (size_t)(p - digits);
    if (nint == 0 || (nint > 1 && *digits == '0'))
        return false; /* no digit, or a leading zero */
    if (p < end && *p == '.') {
        const char *frac = ++p;
        p = sg_flat__digits(p, end, &mant);
        nfrac = (size_t)(p - frac);
        if (nfrac == 0)
            return false;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        bool eneg = false;
        int64_t e = 0;
        if (++p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p == end || !sg_flat__is_digit(*p))
            return false;
        for (; p < end && sg_flat__is_digit(*p); p++)
            if (e < 100000)
                e = e * 10 + (*p - '0');
        exp10 = eneg ? -e : e;
    }
    *pp = p;
    if (!out)
        return true;

    exp10 -= (int64_t)nfrac;
    if (nint + nfrac <= 19 && mant <= SG_FLAT_EXACT_MANTISSA && exp10 >= -SG_EXACT_POW10_MAX &&
        exp10 <= SG_EXACT_POW10_MAX) {
        double d = (double)mant;
        d = exp10 < 0 ? d / sg_exact_pow10[-exp10] : d * sg_exact_pow10[exp10];
        *out = neg ? -d : d;
        return true;
    }
    size_t len = (size_t)(p - start);
    char copy[SG_FLAT_NUMBER_MAX + 1];
    char *stop;
    if (len > SG_FLAT_NUMBER_MAX)
        return false;
    memcpy(copy, start, len);
    copy[len] = '\0';
    *out = strtod(copy, &stop);
    return stop == copy + len;
}

static inline bool sg_flat__literal(const char **pp, const char *end, const char *word, size_t len)
{
    if ((size_t)(end - *pp) < len || memcmp(*pp, word, len) != 0)
        return false;
    *pp += len;
    return true;
}

/* Checks and skips one value at *pp (not at the end), nested `depth` levels deep. */
static bool sg_flat__skip_value(const char **pp, const char *end, int depth)
{
    const char *p = *pp, *s;
    size_t n;

    switch (*p) {
    case '"':
        if (!sg_flat__string(&p, end, &s, &n))
            return false;
        break;
    case 't':
        if (!sg_flat__literal(&p, end, "true", 4))
            return false;
        break;
    case 'f':
        if (!sg_flat__literal(&p, end, "false", 5))
            return false;
        break;
    case 'n':
        if (!sg_flat__literal(&p, end, "null", 4))
            return false;
        break;
    case '{':
    case '[': {
        bool object = *p == '{';
        char close = object ? '}' : ']';
        if (depth >= SG_FLAT_MAX_DEPTH)
            return false;
        p = sg_flat__skip_ws(p + 1, end);
        if (p < end && *p == close) {
            p++;
            break;
        }
        for (;;) {
            if (object) {
                if (p == end || *p != '"' || !sg_flat__string(&p, end, &s, &n))
                    return false;
                p = sg_flat__skip_ws(p, end);
                if (p == end || *p != ':')
                    return false;
                p = sg_flat__skip_ws(p + 1, end);
            }
            if (p == end || !sg_flat__skip_value(&p, end, depth + 1))
                return false;
            p = sg_flat__skip_ws(p, end);
            if (p == end)
                return false;
            if (*p == ',') {
                p = sg_flat__skip_ws(p + 1, end);
                continue;
            }
            if (*p != close)
                return false;
            p++;
            break;
        }
        break;
    }
    default:
        if (*p != '-' && !sg_flat__is_digit(*p))
            return false;
        if (!sg_flat__number(&p, end, NULL))
            return false;
        break;
    }
    *pp = p;
    return true;
}

/* Reads one top-level member value at *pp (not at the end). */
static inline bool sg_flat__member_value(const char **pp, const char *end, struct sg_flat_value *v)
{
    const char *p = *pp;

    switch (*p) {
    case '"':
        v->type = SG_FLAT_STRING;
        return sg_flat__string(pp, end, &v->str, &v->len);
    case 'n':
        v->type = SG_FLAT_NULL;
        return sg_flat__literal(pp, end, "null", 4);
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        v->type = SG_FLAT_NUMBER;
        return sg_flat__number(pp, end, &v->num);
    default:
        v->type = SG_FLAT_OTHER;
        return sg_flat__skip_value(pp, end, 1);
    }
}

/* True when `name` is already among the candidate fields. */
static bool sg_flat__seen(const struct sg_event_field *cand, size_t ncand, const char *name,
                          size_t len)
{
    for (size_t i = 0; i < ncand; i++)
        if (sg_flat__name_is(cand[i].name, cand[i].name_len, name, len))
            return true;
    return false;
}

int sg_event__decode_flat(const struct sg_event_decoder *dec, const char *buf, size_t len,
                          int64_t now_ms, struct sg_event *ev)
{
    const char *p = buf + 1, *end = buf + len;
    struct sg_flat_value key = {0}, fallback = {0}, time = {0}, distinct = {0}, v;
    /* Numeric members that may become fields, first of each name, in order. The fallback's
     * name is only left out at the end, once it is known whether the fallback is the key, so
     * one more than max_fields is collected. */
    struct sg_event_field cand[SG_EVENT_MAX_FIELDS + 1];
    size_t ncand = 0, cap = dec->max_fields > 0 ? dec->max_fields + 1 : 0;
    const struct sg_flat_value *k;
    bool fallback_used = false;

    p = sg_flat__skip_ws(p, end);
    if (p < end && *p == '}')
        return 0; /* an empty object has no key */
    for (;;) {
        const char *name;
        size_t nlen;

        if (p == end || *p != '"' || !sg_flat__string(&p, end, &name, &nlen))
            return 0;
        p = sg_flat__skip_ws(p, end);
        if (p == end || *p != ':')
            return 0;
        p = sg_flat__skip_ws(p + 1, end);
        if (p == end || !sg_flat__member_value(&p, end, &v))
            return 0;

        /* Most members are none of the configured names, which one lookup tells. */
        bool named = (dec->name_filter[nlen ? (unsigned char)name[0] : 0] >> (nlen & 63)) & 1;
        bool is_key = false, is_time = false;
        if (named) {
            is_key = sg_flat__name_is(name, nlen, dec->key_field, dec->key_field_len);
            is_time = sg_flat__name_is(name, nlen, dec->time_field, dec->time_field_len);
            if (key.type == SG_FLAT_NONE && is_key)
                key = v;
            if (time.type == SG_FLAT_NONE && is_time)
                time = v;
            if (fallback.type == SG_FLAT_NONE &&
                sg_flat__name_is(name, nlen, dec->key_fallback, dec->key_fallback_len))
                fallback = v;
            if (distinct.type == SG_FLAT_NONE &&
                sg_flat__name_is(name, nlen, dec->distinct_field, dec->distinct_field_len))
                distinct = v;
        }
        if (v.type == SG_FLAT_NUMBER && ncand < cap && !is_key && !is_time && isfinite(v.num) &&
            (dec->nvalue_fields == 0 || sg_event__wanted(dec, name, nlen)) &&
            !sg_flat__seen(cand, ncand, name, nlen)) {
            cand[ncand].name = name;
            cand[ncand].name_len = nlen;
            cand[ncand].value = v.num;
            ncand++;
        }

        p = sg_flat__skip_ws(p, end);
        if (p == end)
            return 0;
        if (*p == ',') {
            p = sg_flat__skip_ws(p + 1, end);
            continue;
        }
        if (*p != '}' || p + 1 != end)
            return 0;
        break;
    }

    k = &key;
    if (key.type == SG_FLAT_NONE && dec->key_fallback_len != SIZE_MAX) {
        k = &fallback;
        fallback_used = true;
    }
    if (k->type == SG_FLAT_STRING) {
        ev->key = k->str;
        ev->key_len = k->len;
    } else if (k->type != SG_FLAT_NUMBER || sg_event__key_from_number(k->num, ev) != 0) {
        return 0;
    }
    if (ev->key_len == 0 || ev->key_len > dec->max_key_size)
        return 0;

    if (time.type == SG_FLAT_NONE || time.type == SG_FLAT_NULL) {
        ev->ts_ms = now_ms;
        ev->ts_from_event = false;
    } else if (time.type == SG_FLAT_NUMBER) {
        if (sg_event__time_from_number(dec->time_unit, time.num, &ev->ts_ms) != 0)
            return 0;
        ev->ts_from_event = true;
    } else if (time.type == SG_FLAT_STRING) {
        if (sg_parse_rfc3339_ms(time.str, time.len, &ev->ts_ms) != 0)
            return 0;
        ev->ts_from_event = true;
    } else {
        return 0;
    }

    ev->nfields = 0;
    for (size_t i = 0; i < ncand && ev->nfields < dec->max_fields; i++) {
        if (fallback_used && sg_flat__name_is(cand[i].name, cand[i].name_len, dec->key_fallback,
                                              dec->key_fallback_len))
            continue;
        ev->fields[ev->nfields++] = cand[i];
    }
    if (distinct.type == SG_FLAT_STRING) {
        ev->distinct = distinct.str;
        ev->distinct_len = distinct.len;
    }
    ev->raw = buf;
    ev->raw_len = len;
    return 1;
}
