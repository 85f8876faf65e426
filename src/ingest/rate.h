/* Per-client rate limiting: one token bucket per client (a bearer token, or an address), kept in
 * a fixed-size table so a flood of distinct clients cannot grow memory. When the table is full
 * the least recently seen client in the probed slots makes room; it starts again with a full
 * bucket, which errs on the side of letting a request through. */
#ifndef STREAMGATE_RATE_H
#define STREAMGATE_RATE_H

#include <stddef.h>
#include <stdint.h>

struct sg_rate_limiter;

/* `rate` requests per second per client, bursts of up to `burst`; `slots` clients tracked at
 * once (rounded up to a power of two). NULL when out of memory or rate/burst/slots is 0. */
struct sg_rate_limiter *sg_rate_create(double rate, double burst, size_t slots);
void sg_rate_destroy(struct sg_rate_limiter *rl);

/* Takes one token for client `key` at `now_ms`. Returns 0 when allowed, otherwise the
 * milliseconds until a token is available (at least 1). */
int64_t sg_rate_take(struct sg_rate_limiter *rl, const char *key, size_t key_len, int64_t now_ms);

#endif
