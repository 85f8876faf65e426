/* Small helpers every module uses. Errors follow one convention: a function returns 0 on
 * success or a negative errno-style code (the same values libuv uses on Unix), and functions
 * that can fail with detail also take `char *errstr, size_t errstr_size`. */
#ifndef STREAMGATE_COMMON_H
#define STREAMGATE_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SG_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Recovers the owning struct from a pointer to one of its members (a loop handle embedded in
 * its connection, for instance). */
#define sg_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define SG_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SG_MAX(a, b) ((a) > (b) ? (a) : (b))

/* What the heap spends on an allocation of n bytes (n > 0): glibc's chunk, n plus its 8-byte
 * header rounded up to 16, at least 32. Memory accounting charges this, not n: with many small
 * allocations (a window, its sketches, a key) the difference is a tenth or more. */
static inline size_t sg_heap_bytes(size_t n)
{
    size_t chunk = (n + 8 + 15) & ~(size_t)15;
    return chunk < 32 ? 32 : chunk;
}

/* Whether n bytes are the same. Keys and member names are a few bytes long, where a call to
 * memcmp costs more than the comparison; longer ones still go to memcmp. */
static inline bool sg_bytes_equal(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    if (n > 16)
        return memcmp(a, b, n) == 0;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return false;
    return true;
}

/* The value of a hexadecimal digit (either case), or -1 for any other character. */
static inline int sg_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The powers of ten a double holds exactly, 10^0 to 10^SG_EXACT_POW10_MAX: a mantissa of at
 * most 2^53 multiplied or divided by one of them is rounded once, as strtod rounds. */
#define SG_EXACT_POW10_MAX 22
extern const double sg_exact_pow10[SG_EXACT_POW10_MAX + 1];

/* The transports events arrive on; also a metric label. */
enum sg_transport { SG_TRANSPORT_HTTP = 0, SG_TRANSPORT_TCP = 1, SG_TRANSPORT_COUNT };

static inline const char *sg_transport_name(enum sg_transport t)
{
    return t == SG_TRANSPORT_HTTP ? "http" : "tcp";
}

/* Returns a static message for a negative errno-style code. */
const char *sg_strerror(int err);

/* The reason phrase of an HTTP status code, as RFC 9110 (and RFC 6585 for 428, 429, 431 and
 * 511) names it, for a status line; "Unknown" for a code neither lists. */
const char *sg_http_reason(int status);

/* Wall-clock time in milliseconds since the Unix epoch. */
int64_t sg_now_ms(void);

#endif
