/* The per-request group of ingest.ack delivered (see ack.h). Entries come in blocks, so a
 * request of many events costs one allocation per SG_ACK_BLOCK events, and each entry's
 * address stays put while writers hold it. */
#include "ack.h"

#include <stdlib.h>
#include <uv.h>

#include "streamgate/budget.h"
#include "streamgate/common.h"
#include "streamgate/sink.h"

#define SG_ACK_BLOCK 64

struct ack_entry {
    struct sg_sink_done done; /* what the writers hold */
    struct sg_ack *ack;
    int32_t calls;    /* confirmations so far */
    int32_t expected; /* writers that took it; -1 until sg_ack_event_end */
    bool failed;      /* a writer failed it */
    bool refused;     /* not accepted: counts neither way */
};

struct ack_block {
    struct ack_block *next;
    unsigned used;
    struct ack_entry e[SG_ACK_BLOCK];
};

struct sg_ack {
    struct sg_budget *budget;
    size_t charged;
    struct ack_block *blocks; /* newest first */
    size_t accepted, delivered, failed;
    size_t pending; /* entries begun and not settled */
    bool sealed;
    bool detached;
    sg_ack_settled_cb cb;
    void *arg;
    uint64_t sealed_ns;
};

static void ack_charge(struct sg_ack *ack, size_t bytes)
{
    if (ack->budget)
        sg_budget_set(ack->budget, SG_BUDGET_BODIES, &ack->charged, bytes);
}

static void ack_free(struct sg_ack *ack)
{
    for (struct ack_block *b = ack->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    ack_charge(ack, 0);
    free(ack);
}

struct sg_ack *sg_ack_create(struct sg_budget *budget)
{
    struct sg_ack *ack = calloc(1, sizeof(*ack));

    if (!ack)
        return NULL;
    ack->budget = budget;
    ack_charge(ack, sizeof(*ack));
    return ack;
}

/* Every event is settled and no more will come: tell the waiter, or go. */
static void ack_maybe_settled(struct sg_ack *ack)
{
    if (!ack->sealed || ack->pending > 0)
        return;
    if (ack->detached) {
        ack_free(ack);
        return;
    }
    sg_ack_settled_cb cb = ack->cb;
    ack->cb = NULL;
    if (cb)
        cb(ack->arg, ack); /* typically detaches, which frees */
}

static void entry_maybe_settled(struct ack_entry *e)
{
    struct sg_ack *ack = e->ack;

    if (e->expected < 0 || e->calls < e->expected)
        return;
    ack->pending--;
    if (!e->refused) {
        if (e->failed)
            ack->failed++;
        else
            ack->delivered++;
    }
    ack_maybe_settled(ack);
}

static void entry_done(struct sg_sink_done *done, bool written)
{
    struct ack_entry *e = sg_container_of(done, struct ack_entry, done);

    e->calls++;
    if (!written)
        e->failed = true;
    entry_maybe_settled(e);
}

struct sg_sink_done *sg_ack_event_begin(struct sg_ack *ack)
{
    struct ack_block *b = ack->blocks;

    if (!b || b->used == SG_ACK_BLOCK) {
        b = malloc(sizeof(*b));
        if (!b)
            return NULL;
        b->used = 0;
        b->next = ack->blocks;
        ack->blocks = b;
        ack_charge(ack, ack->charged + sizeof(*b));
    }
    struct ack_entry *e = &b->e[b->used++];
    *e = (struct ack_entry){.done.cb = entry_done, .ack = ack, .expected = -1};
    ack->pending++;
    return &e->done;
}

void sg_ack_event_end(struct sg_ack *ack, struct sg_sink_done *done, unsigned took, bool refused)
{
    if (!refused)
        ack->accepted++;
    if (!done) {
        /* No entry could be made: the writers took the event without a way to confirm it. */
        if (!refused)
            ack->failed++;
        return;
    }
    struct ack_entry *e = sg_container_of(done, struct ack_entry, done);

    e->refused = refused;
    e->expected = (int32_t)took;
    entry_maybe_settled(e);
}

bool sg_ack_seal(struct sg_ack *ack, sg_ack_settled_cb cb, void *arg)
{
    ack->sealed = true;
    ack->sealed_ns = uv_hrtime();
    if (ack->pending == 0)
        return true;
    ack->cb = cb;
    ack->arg = arg;
    return false;
}

void sg_ack_detach(struct sg_ack *ack)
{
    if (!ack)
        return;
    ack->detached = true;
    ack->sealed = true;
    ack->cb = NULL;
    ack_maybe_settled(ack);
}

size_t sg_ack_accepted(const struct sg_ack *ack)
{
    return ack->accepted;
}

size_t sg_ack_delivered(const struct sg_ack *ack)
{
    return ack->delivered;
}

size_t sg_ack_failed(const struct sg_ack *ack)
{
    return ack->failed;
}

size_t sg_ack_pending(const struct sg_ack *ack)
{
    return ack->pending;
}

uint64_t sg_ack_sealed_ns(const struct sg_ack *ack)
{
    return ack->sealed_ns;
}
