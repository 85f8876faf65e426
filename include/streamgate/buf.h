/* A growable byte buffer with a hard cap. Every growable buffer in streamgate is one of these,
 * so no buffer can grow past the limit its owner configured. */
#ifndef STREAMGATE_BUF_H
#define STREAMGATE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

struct sg_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* hard cap on len; 0 means SIZE_MAX */
};

/* Initializes an empty buffer that will never hold more than `max` bytes (0: no cap). */
void sg_buf_init(struct sg_buf *b, size_t max);
/* Frees the storage; the buffer may be reused after sg_buf_init. Safe on a zeroed buffer. */
void sg_buf_free(struct sg_buf *b);
/* Makes room for `extra` more bytes. Returns 0, -ENOMEM, or -E2BIG past the cap. */
int sg_buf_reserve(struct sg_buf *b, size_t extra);
int sg_buf__append_slow(struct sg_buf *b, const void *data, size_t len);
/* Appends bytes. Returns 0, -ENOMEM or -E2BIG (the buffer is unchanged on failure). Inline for
 * the common case of room already there: responses and results are many small appends. */
static inline int sg_buf_append(struct sg_buf *b, const void *data, size_t len)
{
    if (len <= b->cap - b->len && len <= b->max - b->len) {
        if (len > 0)
            memcpy(b->data + b->len, data, len);
        b->len += len;
        return 0;
    }
    return sg_buf__append_slow(b, data, len);
}
static inline int sg_buf_append_str(struct sg_buf *b, const char *s)
{
    return sg_buf_append(b, s, strlen(s));
}
static inline int sg_buf_append_char(struct sg_buf *b, char c)
{
    return sg_buf_append(b, &c, 1);
}
/* Appends the decimal digits of `v`, as printf's %llu would, without printf. */
int sg_buf_append_uint(struct sg_buf *b, unsigned long long v);
/* Appends `v` as printf's %lld would, without printf. */
int sg_buf_append_int(struct sg_buf *b, long long v);
int sg_buf_printf(struct sg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sg_buf_vprintf(struct sg_buf *b, const char *fmt, va_list ap);
/* Appends `s` as a JSON string literal, quotes included, escaping as RFC 8259 requires. */
int sg_buf_append_json_string(struct sg_buf *b, const char *s, size_t len);
/* Drops the first `n` bytes, keeping the rest. */
void sg_buf_consume(struct sg_buf *b, size_t n);

/* Appends `v` as the shortest decimal text that reads back as the same double, or null when
 * it is not finite (JSON has no infinity). */
int sg_buf_append_double(struct sg_buf *b, double v);

/* Appends `v` as an unsigned LEB128 varint (7 bits a byte, low first, high bit = more): 1 to 10
 * bytes. Returns 0, -ENOMEM or -E2BIG. */
int sg_buf_append_varint(struct sg_buf *b, unsigned long long v);

/* Reads an unsigned LEB128 varint at *p (not past `end`) and moves *p past it. Returns 0, or
 * -EINVAL when it is cut short or longer than 10 bytes or over 64 bits. */
int sg_varint_read(const unsigned char **p, const unsigned char *end, unsigned long long *v);
static inline void sg_buf_reset(struct sg_buf *b)
{
    b->len = 0;
}

#endif
