/* The Tablestore writer's row store: the retry heap gives rows back by due time, whatever was
 * taken out of it meanwhile, and the index finds a row by its primary key. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/hash.h"
#include "tablestore_internal.h"

static struct sg_ts_held *held(const char *key, int64_t due)
{
    size_t len = strlen(key);
    struct sg_ts_held *r = calloc(1, sizeof(*r) + 1 + 4 + len);
    cr_assert_not_null(r);
    r->data[0] = SG_TS_KIND_AGG;
    uint32_t n = (uint32_t)len;
    memcpy(r->data + 1, &n, 4);
    memcpy(r->data + SG_TS_IDENT_KEY_OFF, key, len);
    r->ident_len = (uint32_t)(SG_TS_IDENT_KEY_OFF + len);
    r->hash = sg_hash64(r->data, r->ident_len, 7);
    r->due_ms = due;
    return r;
}

Test(tablestore_rows, heap_orders_by_due_time)
{
    struct sg_ts_store st = {0};
    enum { N = 3000 };
    static struct sg_ts_held *rows[N];
    srand(42);
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k%d", i);
        rows[i] = held(key, rand() % 500);
        cr_assert_eq(sg_ts_store_reserve(&st), 0);
        sg_ts_store_index(&st, rows[i]);
        sg_ts_heap_push(&st, rows[i]);
    }
    /* Take every third row out from wherever it stands. */
    for (int i = 0; i < N; i += 3)
        sg_ts_heap_remove(&st, rows[i]);
    cr_assert_eq(st.nheap, N - N / 3);
    int64_t last = -1;
    size_t taken = 0;
    for (struct sg_ts_held *r; (r = sg_ts_heap_first(&st)); taken++) {
        cr_assert_geq(r->due_ms, last);
        last = r->due_ms;
        sg_ts_heap_remove(&st, r);
    }
    cr_assert_eq(taken, N - N / 3);
    struct sg_ts_held *probe = held("k17", 0);
    cr_assert_eq(sg_ts_store_find(&st, probe), rows[17]);
    sg_ts_store_unindex(&st, rows[17]);
    cr_assert_null(sg_ts_store_find(&st, probe));
    free(probe);
    for (int i = 0; i < N; i++)
        free(rows[i]);
    sg_ts_store_free(&st);
}
