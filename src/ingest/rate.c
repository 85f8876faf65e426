/* Token buckets in an open-addressed table: a client hashes to a slot and the next few slots are
 * probed; a client not found takes a free probed slot or, failing that, the one seen longest
 * ago. Keys are stored by hash and a short copy, enough to tell clients apart. */
#include "rate.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/common.h"
#include "streamgate/hash.h"

#define SG_RATE_PROBES  8
#define SG_RATE_KEY_MAX 64 /* longer keys are told apart by hash and their first bytes */

struct sg_rate_slot {
    bool used;
    uint64_t hash;
    uint8_t key_len;
    char key[SG_RATE_KEY_MAX];
    double tokens;
    int64_t last_ms;
};

struct sg_rate_limiter {
    double rate_per_ms, burst;
    size_t mask;
    struct sg_rate_slot *slots;
};

struct sg_rate_limiter *sg_rate_create(double rate, double burst, size_t slots)
{
    size_t n = 1;
    struct sg_rate_limiter *rl;

    if (!(rate > 0) || !(burst >= 1) || slots == 0)
        return NULL;
    while (n < slots)
        n <<= 1;
    rl = calloc(1, sizeof(*rl));
    if (!rl)
        return NULL;
    rl->slots = calloc(n, sizeof(*rl->slots));
    if (!rl->slots) {
        free(rl);
        return NULL;
    }
    rl->rate_per_ms = rate / 1000.0;
    rl->burst = burst;
    rl->mask = n - 1;
    return rl;
}

void sg_rate_destroy(struct sg_rate_limiter *rl)
{
    if (!rl)
        return;
    free(rl->slots);
    free(rl);
}

static bool slot_is(const struct sg_rate_slot *s, uint64_t hash, const char *key, size_t len)
{
    size_t kl = SG_MIN(len, (size_t)SG_RATE_KEY_MAX);
    return s->used && s->hash == hash && s->key_len == kl && memcmp(s->key, key, kl) == 0;
}

int64_t sg_rate_take(struct sg_rate_limiter *rl, const char *key, size_t key_len, int64_t now_ms)
{
    uint64_t hash = sg_hash64(key, key_len, 0);
    struct sg_rate_slot *found = NULL, *victim = NULL;

    for (size_t i = 0; i < SG_RATE_PROBES; i++) {
        struct sg_rate_slot *s = &rl->slots[(hash + i) & rl->mask];
        if (slot_is(s, hash, key, key_len)) {
            found = s;
            break;
        }
        /* Room for a newcomer: the first free slot, else the one seen longest ago. */
        if (!s->used) {
            if (!victim || victim->used)
                victim = s;
        } else if (!victim || (victim->used && s->last_ms < victim->last_ms)) {
            victim = s;
        }
    }
    if (!found) {
        found = victim;
        found->used = true;
        found->hash = hash;
        found->key_len = (uint8_t)SG_MIN(key_len, (size_t)SG_RATE_KEY_MAX);
        memcpy(found->key, key, found->key_len);
        found->tokens = rl->burst;
        found->last_ms = now_ms;
    }
    if (now_ms > found->last_ms) {
        found->tokens += (double)(now_ms - found->last_ms) * rl->rate_per_ms;
        if (found->tokens > rl->burst)
            found->tokens = rl->burst;
        found->last_ms = now_ms;
    }
    if (found->tokens >= 1) {
        found->tokens -= 1;
        return 0;
    }
    int64_t wait = (int64_t)((1 - found->tokens) / rl->rate_per_ms) + 1;
    return wait > 0 ? wait : 1;
}
