/* Per-client token buckets: burst, refill, separate clients, bounded table. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../src/ingest/rate.h"

static int64_t take(struct sg_rate_limiter *rl, const char *key, int64_t now)
{
    return sg_rate_take(rl, key, strlen(key), now);
}

Test(rate, burst_then_refill_at_the_rate)
{
    struct sg_rate_limiter *rl = sg_rate_create(10, 5, 64);
    cr_assert_not_null(rl);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(take(rl, "a", 1000), 0, "request %d of the burst refused", i);
    int64_t wait = take(rl, "a", 1000);
    cr_assert(wait >= 1 && wait <= 101, "wait %lld ms at 10/s", (long long)wait);
    /* 100 ms later one token is back, not two. */
    cr_assert_eq(take(rl, "a", 1100), 0);
    cr_assert(take(rl, "a", 1100) > 0);
    /* A long pause refills to the burst, never beyond. */
    for (int i = 0; i < 5; i++)
        cr_assert_eq(take(rl, "a", 60000), 0);
    cr_assert(take(rl, "a", 60000) > 0);
    sg_rate_destroy(rl);
}

Test(rate, clients_have_their_own_buckets)
{
    struct sg_rate_limiter *rl = sg_rate_create(1, 1, 64);
    cr_assert_eq(take(rl, "a", 0), 0);
    cr_assert(take(rl, "a", 0) > 0);
    cr_assert_eq(take(rl, "b", 0), 0);
    cr_assert(take(rl, "b", 0) > 0);
    cr_assert(take(rl, "a", 500) > 0);
    cr_assert_eq(take(rl, "a", 1001), 0);
    sg_rate_destroy(rl);
}

Test(rate, a_flood_of_clients_stays_in_the_table)
{
    struct sg_rate_limiter *rl = sg_rate_create(1, 1, 16);
    char key[32];
    /* Thousands of clients through 16 slots: each newcomer gets a fresh bucket, nothing
     * grows, and a client seen recently keeps its state while older ones make room. */
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "client-%d", i);
        cr_assert_eq(take(rl, key, i), 0);
    }
    cr_assert(take(rl, "client-4999", 4999) > 0, "the newest client lost its bucket");
    sg_rate_destroy(rl);
}

Test(rate, bad_parameters)
{
    cr_assert_null(sg_rate_create(0, 1, 16));
    cr_assert_null(sg_rate_create(1, 0, 16));
    cr_assert_null(sg_rate_create(1, 1, 0));
    sg_rate_destroy(NULL);
}
