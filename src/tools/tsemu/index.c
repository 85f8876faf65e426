/* Secondary indexes as the service keeps them (PROTOCOL.md section 7): an index is a table of
 * its own in the store, readable by its name and written only from here. Its primary key is
 * the index columns, then the main table's PK columns not among them; a main-table row lacking
 * an index column has no index row; the attribute columns are copied with their newest version.
 * Every change of a main-table row removes the index row under the old key (when the key
 * changed or the row went away) and stores the one under the new key. A global index with an
 * index lag gets those changes later, in order, from a queue the server drains on a timer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tsemu.h"

int tsemu_defined_value_type(int dct)
{
    switch (dct) {
    case 1:
        return SG_TS_INTEGER;
    case 2:
        return SG_TS_DOUBLE;
    case 3:
        return SG_TS_BOOLEAN;
    case 4:
        return SG_TS_STRING;
    case 7:
        return SG_TS_BLOB;
    default:
        return -1;
    }
}

bool tsemu_index_uses(const struct tsemu_table *main, const char *name, size_t len)
{
    for (size_t i = 0; i < main->index_count; i++) {
        const struct tsemu_index *ix = main->indexes[i];

        for (size_t c = 0; c < ix->col_count; c++)
            if (strlen(ix->cols[c]) == len && memcmp(ix->cols[c], name, len) == 0)
                return true;
        for (size_t c = 0; c < ix->attr_count; c++)
            if (strlen(ix->attrs[c]) == len && memcmp(ix->attrs[c], name, len) == 0)
                return true;
    }
    return false;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);

    if (d)
        memcpy(d, s, n);
    return d;
}

static void index_free(struct tsemu_index *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->col_count; i++)
        free(ix->cols[i]);
    for (size_t i = 0; i < ix->attr_count; i++)
        free(ix->attrs[i]);
    free(ix->name);
    free(ix);
}

static const struct tsemu_defined_col *defined_col(const struct tsemu_table *t, const char *name)
{
    for (size_t i = 0; i < t->defined_count; i++)
        if (strcmp(t->defined[i].name, name) == 0)
            return &t->defined[i];
    return NULL;
}

static int main_pk_col(const struct tsemu_table *t, const char *name)
{
    for (size_t i = 0; i < t->pk_count; i++)
        if (strcmp(t->pk[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* The index row for main-table row `r`, or *indexed false when it lacks an index column. */
static int index_row_of(const struct tsemu_index *ix, const struct tsemu_row *r,
                        struct tsemu_row *out, bool *indexed)
{
    const struct tsemu_table *it = ix->table;
    struct tsemu_value key[SG_TS_PK_MAX_COLUMNS];
    int rc;

    *indexed = false;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < it->pk_count; i++) {
        struct tsemu_cell *cell;

        if (ix->src[i] >= 0) {
            key[i] = r->pk[ix->src[i]];
            continue;
        }
        cell = tsemu_row_cell((struct tsemu_row *)r, it->pk[i].name, strlen(it->pk[i].name));
        if (!cell || cell->count == 0 || cell->versions[0].value.type != it->pk[i].type)
            return 0;
        key[i] = cell->versions[0].value;
    }
    rc = tsemu_row_set_key(it, out, key);
    for (size_t i = 0; rc == 0 && i < ix->attr_count; i++) {
        struct tsemu_cell *cell =
            tsemu_row_cell((struct tsemu_row *)r, ix->attrs[i], strlen(ix->attrs[i]));

        if (cell && cell->count > 0) {
            struct sg_ts_value view = tsemu_value_view(&cell->versions[0].value);

            rc = tsemu_row_put(out, ix->attrs[i], strlen(ix->attrs[i]), cell->versions[0].ts,
                               &view, 1);
        }
    }
    if (rc < 0) {
        tsemu_row_free_contents(out);
        return rc;
    }
    *indexed = true;
    return 0;
}

static int index_table_apply(struct tsemu_table *it, bool remove, const struct tsemu_row *row)
{
    struct tsemu_cursor cur;
    bool found = tsemu_table_seek(it, row->pk, &cur);

    if (remove) {
        if (found)
            tsemu_table_erase(it, &cur);
        return 0;
    }
    return tsemu_table_store(it, &cur, row, found);
}

static struct tsemu_index *index_by_id(const struct tsemu_store *store, uint64_t id)
{
    for (size_t t = 0; t < store->table_count; t++) {
        const struct tsemu_table *main = store->tables[t];

        for (size_t i = 0; i < main->index_count; i++)
            if (main->indexes[i]->id == id)
                return main->indexes[i];
    }
    return NULL;
}

/* Applies a change now, or queues it (taking over `row`). */
static int index_change(struct tsemu_store *store, const struct tsemu_index *ix, bool remove,
                        struct tsemu_row *row, int64_t now_ms, bool immediate)
{
    struct tsemu_pending *p;

    if (immediate || store->index_lag_ms <= 0 || ix->index_type == TSEMU_INDEX_TYPE_LOCAL) {
        int rc = index_table_apply(ix->table, remove, row);
        tsemu_row_free_contents(row);
        return rc;
    }
    p = calloc(1, sizeof(*p));
    if (!p) {
        tsemu_row_free_contents(row);
        return -ENOMEM;
    }
    p->index_id = ix->id;
    p->due_ms = now_ms + store->index_lag_ms;
    p->remove = remove;
    p->row = *row;
    memset(row, 0, sizeof(*row));
    if (store->pending_tail)
        store->pending_tail->next = p;
    else
        store->pending = p;
    store->pending_tail = p;
    return 0;
}

int tsemu_index_row_changed(struct tsemu_store *store, struct tsemu_table *main,
                            const struct tsemu_row *old, const struct tsemu_row *now,
                            int64_t now_ms, bool immediate)
{
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < main->index_count; i++) {
        const struct tsemu_index *ix = main->indexes[i];
        struct tsemu_row before = {0}, after = {0};
        bool had = false, has = false;

        if (old)
            rc = index_row_of(ix, old, &before, &had);
        if (rc == 0 && now)
            rc = index_row_of(ix, now, &after, &has);
        if (rc == 0 && had && (!has || tsemu_pk_cmp(ix->table, before.pk, after.pk) != 0))
            rc = index_change(store, ix, true, &before, now_ms, immediate);
        if (rc == 0 && has)
            rc = index_change(store, ix, false, &after, now_ms, immediate);
        tsemu_row_free_contents(&before);
        tsemu_row_free_contents(&after);
    }
    return rc;
}

int tsemu_index_apply_due(struct tsemu_store *store, int64_t now_ms)
{
    int rc = 0;

    while (rc == 0 && store->pending && store->pending->due_ms <= now_ms) {
        struct tsemu_pending *p = store->pending;
        const struct tsemu_index *ix = index_by_id(store, p->index_id);

        if (ix) /* else the index was dropped meanwhile */
            rc = index_table_apply(ix->table, p->remove, &p->row);
        store->pending = p->next;
        if (!store->pending)
            store->pending_tail = NULL;
        tsemu_row_free_contents(&p->row);
        free(p);
    }
    return rc;
}

int64_t tsemu_index_next_due(const struct tsemu_store *store)
{
    return store->pending ? store->pending->due_ms : -1;
}

int tsemu_index_add(struct tsemu_store *store, struct tsemu_table *main,
                    const struct tsemu_index *tpl, bool backfill, int64_t now_ms)
{
    struct tsemu_table itpl = {0};
    struct tsemu_index *ix;
    int rc;

    if (main->index_count >= TSEMU_MAX_INDEXES)
        return -ENOSPC;
    ix = calloc(1, sizeof(*ix));
    if (!ix)
        return -ENOMEM;
    ix->name = dup_str(tpl->name);
    if (!ix->name)
        goto nomem;
    for (; ix->col_count < tpl->col_count; ix->col_count++)
        if (!(ix->cols[ix->col_count] = dup_str(tpl->cols[ix->col_count])))
            goto nomem;
    for (; ix->attr_count < tpl->attr_count; ix->attr_count++)
        if (!(ix->attrs[ix->attr_count] = dup_str(tpl->attrs[ix->attr_count])))
            goto nomem;
    ix->index_type = tpl->index_type;
    ix->update_mode = tpl->update_mode;
    ix->id = ++store->next_index_id;

    /* The index table: the index columns, then the main PK columns not among them. */
    itpl.name = ix->name;
    for (size_t i = 0; i < ix->col_count; i++) {
        int src = main_pk_col(main, ix->cols[i]);

        itpl.pk[i].name = ix->cols[i];
        if (src >= 0)
            itpl.pk[i].type = main->pk[src].type;
        else
            itpl.pk[i].type =
                (enum sg_ts_type)tsemu_defined_value_type(defined_col(main, ix->cols[i])->type);
        ix->src[i] = src;
    }
    itpl.pk_count = ix->col_count;
    for (size_t i = 0; i < main->pk_count; i++) {
        bool listed = false;

        for (size_t c = 0; c < ix->col_count; c++)
            listed = listed || strcmp(ix->cols[c], main->pk[i].name) == 0;
        if (listed)
            continue;
        if (itpl.pk_count >= SG_TS_PK_MAX_COLUMNS) {
            index_free(ix);
            return -E2BIG;
        }
        itpl.pk[itpl.pk_count].name = main->pk[i].name;
        itpl.pk[itpl.pk_count].type = main->pk[i].type;
        ix->src[itpl.pk_count] = (int)i;
        itpl.pk_count++;
    }
    for (size_t i = 0; i < ix->attr_count; i++) {
        itpl.defined[i].name = ix->attrs[i];
        itpl.defined[i].type = defined_col(main, ix->attrs[i])->type;
    }
    itpl.defined_count = ix->attr_count;
    itpl.max_versions = 1;
    itpl.ttl = main->ttl;
    itpl.read_cu = main->read_cu;
    itpl.write_cu = main->write_cu;
    itpl.created_ms = now_ms;
    rc = tsemu_store_table_create(store, &itpl, &ix->table);
    if (rc < 0) {
        index_free(ix);
        return rc;
    }
    ix->table->main = main;
    main->indexes[main->index_count++] = ix;
    if (!backfill)
        return 0;
    for (struct tsemu_cursor cur = {0, 0}; tsemu_cursor_row(main, &cur);
         tsemu_cursor_next(main, &cur)) {
        struct tsemu_row r, irow;
        bool indexed;

        rc = tsemu_row_unpack(main, tsemu_cursor_row(main, &cur), &r);
        if (rc < 0)
            return rc;
        rc = index_row_of(ix, &r, &irow, &indexed);
        if (rc == 0 && indexed)
            rc = index_table_apply(ix->table, false, &irow);
        if (indexed)
            tsemu_row_free_contents(&irow);
        tsemu_row_free_contents(&r);
        if (rc < 0)
            return rc;
    }
    return 0;
nomem:
    index_free(ix);
    return -ENOMEM;
}

int tsemu_index_drop(struct tsemu_store *store, struct tsemu_table *main, const char *name)
{
    for (size_t i = 0; i < main->index_count; i++) {
        struct tsemu_index *ix = main->indexes[i];

        if (strcmp(ix->name, name) != 0)
            continue;
        ix->table->main = NULL;
        tsemu_store_table_delete(store, ix->name, strlen(ix->name));
        memmove(&main->indexes[i], &main->indexes[i + 1],
                (main->index_count - i - 1) * sizeof(main->indexes[0]));
        main->index_count--;
        index_free(ix);
        return 0;
    }
    return -ENOENT;
}

void tsemu_index_free_all(struct tsemu_table *main)
{
    for (size_t i = 0; i < main->index_count; i++)
        index_free(main->indexes[i]);
    main->index_count = 0;
}
