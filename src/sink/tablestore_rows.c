/* The Tablestore writer's row store: the pending list, the index by primary key and the retry
 * heap (see tablestore_internal.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/sink.h"
#include "tablestore_internal.h"

void sg_ts_list_append(struct sg_ts_list *l, struct sg_ts_held *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->count++;
}

void sg_ts_list_prepend(struct sg_ts_list *l, struct sg_ts_held *r)
{
    r->prev = NULL;
    r->next = l->head;
    if (l->head)
        l->head->prev = r;
    else
        l->tail = r;
    l->head = r;
    l->count++;
}

void sg_ts_list_remove(struct sg_ts_list *l, struct sg_ts_held *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
    l->count--;
}

void sg_ts_list_replace(struct sg_ts_list *l, struct sg_ts_held *old, struct sg_ts_held *r)
{
    r->prev = old->prev;
    r->next = old->next;
    if (r->prev)
        r->prev->next = r;
    else
        l->head = r;
    if (r->next)
        r->next->prev = r;
    else
        l->tail = r;
    old->prev = old->next = NULL;
}

/* ---- Index ------------------------------------------------------------------------------- */

static struct sg_ts_held **index_slot(struct sg_ts_store *st, const struct sg_ts_held *r)
{
    struct sg_ts_held **slot = &st->buckets[r->hash & (st->nbuckets - 1)];
    while (*slot && !((*slot)->hash == r->hash && (*slot)->ident_len == r->ident_len &&
                      memcmp(sg_ts_held_ident(*slot), sg_ts_held_ident(r), r->ident_len) == 0))
        slot = &(*slot)->hnext;
    return slot;
}

static int index_grow(struct sg_ts_store *st)
{
    size_t n = st->nbuckets ? st->nbuckets * 2 : 1024;
    struct sg_ts_held **b = calloc(n, sizeof(*b));
    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i < st->nbuckets; i++) {
        for (struct sg_ts_held *r = st->buckets[i], *next; r; r = next) {
            next = r->hnext;
            r->hnext = b[r->hash & (n - 1)];
            b[r->hash & (n - 1)] = r;
        }
    }
    free(st->buckets);
    st->buckets = b;
    st->nbuckets = n;
    return 0;
}

int sg_ts_store_reserve(struct sg_ts_store *st)
{
    if (st->nindexed + 1 > st->nbuckets && index_grow(st) != 0)
        return -ENOMEM;
    if (st->nindexed + 1 > st->heap_cap) {
        size_t cap = st->heap_cap ? st->heap_cap * 2 : 1024;
        struct sg_ts_held **heap = realloc(st->heap, cap * sizeof(*heap));
        if (!heap)
            return -ENOMEM;
        st->heap = heap;
        st->heap_cap = cap;
    }
    return 0;
}

struct sg_ts_held *sg_ts_store_find(struct sg_ts_store *st, const struct sg_ts_held *r)
{
    return st->nbuckets ? *index_slot(st, r) : NULL;
}

void sg_ts_store_index(struct sg_ts_store *st, struct sg_ts_held *r)
{
    struct sg_ts_held **slot = &st->buckets[r->hash & (st->nbuckets - 1)];
    r->hnext = *slot;
    *slot = r;
    st->nindexed++;
}

void sg_ts_store_unindex(struct sg_ts_store *st, struct sg_ts_held *r)
{
    struct sg_ts_held **slot = index_slot(st, r);
    if (*slot == r) {
        *slot = r->hnext;
        st->nindexed--;
    }
    r->hnext = NULL;
}

void sg_ts_store_free(struct sg_ts_store *st)
{
    free(st->buckets);
    free(st->heap);
    st->buckets = st->heap = NULL;
    st->nbuckets = st->heap_cap = st->nheap = st->nindexed = 0;
}

/* ---- Retry heap -------------------------------------------------------------------------- */

static void heap_set(struct sg_ts_store *st, size_t i, struct sg_ts_held *r)
{
    st->heap[i] = r;
    r->heap_at = i;
}

static void heap_up(struct sg_ts_store *st, size_t i)
{
    struct sg_ts_held *r = st->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (st->heap[parent]->due_ms <= r->due_ms)
            break;
        heap_set(st, i, st->heap[parent]);
        i = parent;
    }
    heap_set(st, i, r);
}

static void heap_down(struct sg_ts_store *st, size_t i)
{
    struct sg_ts_held *r = st->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= st->nheap)
            break;
        if (child + 1 < st->nheap && st->heap[child + 1]->due_ms < st->heap[child]->due_ms)
            child++;
        if (r->due_ms <= st->heap[child]->due_ms)
            break;
        heap_set(st, i, st->heap[child]);
        i = child;
    }
    heap_set(st, i, r);
}

void sg_ts_heap_push(struct sg_ts_store *st, struct sg_ts_held *r)
{
    st->heap[st->nheap] = r;
    heap_up(st, st->nheap++);
}

struct sg_ts_held *sg_ts_heap_first(const struct sg_ts_store *st)
{
    return st->nheap ? st->heap[0] : NULL;
}

void sg_ts_heap_remove(struct sg_ts_store *st, struct sg_ts_held *r)
{
    size_t i = r->heap_at;
    struct sg_ts_held *last = st->heap[--st->nheap];
    if (i == st->nheap)
        return;
    heap_set(st, i, last);
    if (i > 0 && st->heap[(i - 1) / 2]->due_ms > last->due_ms)
        heap_up(st, i);
    else
        heap_down(st, i);
}

/* ---- Confirmations ----------------------------------------------------------------------- */

void sg_ts_held_tell(struct sg_ts_held *r, bool written)
{
    while (r->dones) {
        struct sg_ts_done *d = r->dones;
        r->dones = d->next;
        struct sg_sink_done *done = d->done;
        free(d);
        done->cb(done, written);
    }
}

void sg_ts_held_pass_dones(struct sg_ts_held *old, struct sg_ts_held *r)
{
    struct sg_ts_done **tail = &r->dones;
    while (*tail)
        tail = &(*tail)->next;
    *tail = old->dones;
    old->dones = NULL;
}
