#include "streamgate/buf.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sg_buf_init(struct sg_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : SIZE_MAX;
}

void sg_buf_free(struct sg_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

int sg_buf_reserve(struct sg_buf *b, size_t extra)
{
    size_t max = b->max ? b->max : SIZE_MAX;
    if (extra > max - b->len)
        return -E2BIG;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    /* Grow geometrically, but never past the cap (+1 keeps room for a NUL terminator). */
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > max && max < SIZE_MAX)
        cap = max + 1 > need ? max + 1 : need;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int sg_buf__append_slow(struct sg_buf *b, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    int rc = sg_buf_reserve(b, len);
    if (rc)
        return rc;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

/* Writes the digits of v, and a minus sign when `negative`, to the end of text[21] (2^64 - 1
 * has 20 digits) and returns where they start. */
static size_t sg_buf__digits(char *text, unsigned long long v, bool negative)
{
    size_t i = 21;
    do {
        text[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    if (negative)
        text[--i] = '-';
    return i;
}

int sg_buf_append_uint(struct sg_buf *b, unsigned long long v)
{
    char text[21];
    size_t i = sg_buf__digits(text, v, false);
    return sg_buf_append(b, text + i, sizeof(text) - i);
}

int sg_buf_append_int(struct sg_buf *b, long long v)
{
    char text[21];
    size_t i =
        sg_buf__digits(text, v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v, v < 0);
    return sg_buf_append(b, text + i, sizeof(text) - i);
}

int sg_buf_vprintf(struct sg_buf *b, const char *fmt, va_list ap)
{
    char small[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n < sizeof(small))
        return sg_buf_append(b, small, (size_t)n);
    /* Long output: format straight into the buffer (reserve n + 1 for vsnprintf's NUL). */
    int rc = sg_buf_reserve(b, (size_t)n + 1);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int sg_buf_printf(struct sg_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = sg_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int sg_buf_append_json_string(struct sg_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = b->len;
    int rc = sg_buf_append_char(b, '"');
    size_t run = 0; /* bytes of s[run..i) that need no escaping */
    for (size_t i = 0; rc == 0 && i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        rc = sg_buf_append(b, s + run, i - run);
        run = i + 1;
        if (rc)
            break;
        char esc[6] = {'\\', 0};
        size_t n = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            esc[1] = 'u';
            rc = sg_buf_append(b, esc, 2);
            if (rc == 0) {
                char u[4] = {'0', '0', hex[c >> 4], hex[c & 15]};
                rc = sg_buf_append(b, u, 4);
            }
            n = 0;
        }
        if (rc == 0 && n)
            rc = sg_buf_append(b, esc, n);
    }
    if (rc == 0)
        rc = sg_buf_append(b, s + run, len - run);
    if (rc == 0)
        rc = sg_buf_append_char(b, '"');
    if (rc)
        b->len = start; /* all or nothing */
    return rc;
}

void sg_buf_consume(struct sg_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

int sg_buf_append_varint(struct sg_buf *b, unsigned long long v)
{
    unsigned char tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    return sg_buf_append(b, tmp, n);
}

int sg_varint_read(const unsigned char **p, const unsigned char *end, unsigned long long *v)
{
    unsigned long long out = 0;
    const unsigned char *q = *p;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (q >= end)
            return -EINVAL;
        unsigned char c = *q++;
        if (shift == 63 && (c & 0x7e))
            return -EINVAL; /* past 64 bits */
        out |= (unsigned long long)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *p = q;
            *v = out;
            return 0;
        }
    }
    return -EINVAL;
}

int sg_buf_append_double(struct sg_buf *b, double v)
{
    char num[40];
    if (!isfinite(v))
        return sg_buf_append_str(b, "null");
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(num, sizeof(num), "%.*g", prec, v);
        if (strtod(num, NULL) == v)
            break;
    }
    return sg_buf_append_str(b, num);
}
