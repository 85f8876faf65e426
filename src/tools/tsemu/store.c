/* The emulator's data: tables sorted by name, rows sorted by primary key in a pointer array
 * (binary search, memmove on insert), columns sorted by name, versions newest first. Plain
 * arrays are enough: the emulator serves tests and demos, not millions of rows. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tsemu.h"

double tsemu_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- Values ---------------------------------------------------------------------------- */

int tsemu_value_copy(struct tsemu_value *dst, const struct sg_ts_value *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->type = src->type;
    switch (src->type) {
    case SG_TS_INTEGER:
        dst->i = src->i;
        break;
    case SG_TS_DOUBLE:
        dst->d = src->d;
        break;
    case SG_TS_BOOLEAN:
        dst->b = src->b;
        break;
    case SG_TS_STRING:
    case SG_TS_BLOB:
        /* One spare byte so an empty value still has storage. */
        dst->bytes = malloc(src->bytes.len + 1);
        if (!dst->bytes)
            return -ENOMEM;
        if (src->bytes.len)
            memcpy(dst->bytes, src->bytes.ptr, src->bytes.len);
        dst->len = src->bytes.len;
        break;
    default:
        break;
    }
    return 0;
}

void tsemu_value_free(struct tsemu_value *v)
{
    free(v->bytes);
    v->bytes = NULL;
    v->len = 0;
}

struct sg_ts_value tsemu_value_view(const struct tsemu_value *v)
{
    struct sg_ts_value out = {.type = v->type};

    switch (v->type) {
    case SG_TS_INTEGER:
        out.i = v->i;
        break;
    case SG_TS_DOUBLE:
        out.d = v->d;
        break;
    case SG_TS_BOOLEAN:
        out.b = v->b;
        break;
    case SG_TS_STRING:
    case SG_TS_BLOB:
        out.bytes.ptr = v->bytes;
        out.bytes.len = v->len;
        break;
    default:
        break;
    }
    return out;
}

static int bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;

    if (c)
        return c < 0 ? -1 : 1;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int value_cmp(const struct tsemu_value *a, const struct tsemu_value *b)
{
    if (a->type == SG_TS_INF_MIN || b->type == SG_TS_INF_MAX)
        return (a->type == b->type) ? 0 : -1;
    if (a->type == SG_TS_INF_MAX || b->type == SG_TS_INF_MIN)
        return 1;
    if (a->type == SG_TS_INTEGER && b->type == SG_TS_INTEGER)
        return a->i < b->i ? -1 : a->i > b->i ? 1 : 0;
    if ((a->type == SG_TS_STRING || a->type == SG_TS_BLOB) &&
        (b->type == SG_TS_STRING || b->type == SG_TS_BLOB))
        return bytes_cmp(a->bytes, a->len, b->bytes, b->len);
    /* Mixed types never happen for checked keys; order by type so the order stays total. */
    return a->type < b->type ? -1 : a->type > b->type ? 1 : 0;
}

int tsemu_pk_cmp(const struct tsemu_table *table, const struct tsemu_value *a,
                 const struct tsemu_value *b)
{
    for (size_t i = 0; i < table->pk_count; i++) {
        int c = value_cmp(&a[i], &b[i]);
        if (c)
            return c;
    }
    return 0;
}

/* ---- Rows ------------------------------------------------------------------------------ */

static void cell_free(struct tsemu_cell *cell)
{
    for (size_t i = 0; i < cell->count; i++)
        tsemu_value_free(&cell->versions[i].value);
    free(cell->versions);
    free(cell->name);
}

static void row_free(struct tsemu_row *row)
{
    if (!row)
        return;
    tsemu_row_clear(row);
    free(row->cells);
    for (size_t i = 0; i < SG_TS_PK_MAX_COLUMNS; i++)
        tsemu_value_free(&row->pk[i]);
    free(row);
}

void tsemu_row_clear(struct tsemu_row *row)
{
    for (size_t i = 0; i < row->cell_count; i++)
        cell_free(&row->cells[i]);
    row->cell_count = 0;
}

static long cell_index(const struct tsemu_row *row, const char *name, size_t name_len, size_t *pos)
{
    size_t lo = 0, hi = row->cell_count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct tsemu_cell *c = &row->cells[mid];
        int r = bytes_cmp((const uint8_t *)c->name, c->name_len, (const uint8_t *)name, name_len);
        if (r == 0)
            return (long)mid;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return -1;
}

struct tsemu_cell *tsemu_row_cell(struct tsemu_row *row, const char *name, size_t name_len)
{
    size_t pos;
    long idx = cell_index(row, name, name_len, &pos);

    return idx < 0 ? NULL : &row->cells[idx];
}

static void cell_remove(struct tsemu_row *row, size_t idx)
{
    cell_free(&row->cells[idx]);
    memmove(&row->cells[idx], &row->cells[idx + 1],
            (row->cell_count - idx - 1) * sizeof(row->cells[0]));
    row->cell_count--;
}

int tsemu_row_put(struct tsemu_row *row, const char *name, size_t name_len, int64_t ts,
                  const struct tsemu_value *value, int32_t max_versions)
{
    struct sg_ts_value view = tsemu_value_view(value);
    struct tsemu_value copy;
    struct tsemu_cell *cell;
    size_t pos = 0, at;
    long idx;

    if (max_versions < 1)
        max_versions = 1;
    idx = cell_index(row, name, name_len, &pos);
    if (idx < 0) {
        struct tsemu_cell fresh = {0};

        if (row->cell_count == row->cell_cap) {
            size_t cap = row->cell_cap ? row->cell_cap * 2 : 4;
            struct tsemu_cell *cells = realloc(row->cells, cap * sizeof(*cells));
            if (!cells)
                return -ENOMEM;
            row->cells = cells;
            row->cell_cap = cap;
        }
        fresh.name = malloc(name_len + 1);
        if (!fresh.name)
            return -ENOMEM;
        memcpy(fresh.name, name, name_len);
        fresh.name[name_len] = '\0';
        fresh.name_len = name_len;
        memmove(&row->cells[pos + 1], &row->cells[pos],
                (row->cell_count - pos) * sizeof(row->cells[0]));
        row->cells[pos] = fresh;
        row->cell_count++;
        idx = (long)pos;
    }
    cell = &row->cells[idx];
    if (tsemu_value_copy(&copy, &view) < 0) {
        if (cell->count == 0)
            cell_remove(row, (size_t)idx);
        return -ENOMEM;
    }
    /* Newest first; a version with the same timestamp is overwritten. */
    for (at = 0; at < cell->count && cell->versions[at].ts > ts; at++)
        ;
    if (at < cell->count && cell->versions[at].ts == ts) {
        tsemu_value_free(&cell->versions[at].value);
        cell->versions[at].value = copy;
        return 0;
    }
    if ((size_t)max_versions <= at) {
        tsemu_value_free(&copy); /* older than every version kept */
        if (cell->count == 0)
            cell_remove(row, (size_t)idx);
        return 0;
    }
    {
        size_t keep = cell->count < (size_t)max_versions ? cell->count + 1 : (size_t)max_versions;
        struct tsemu_version *v = cell->versions;

        if (cell->count + 1 > keep) {
            /* The oldest version falls out. */
            tsemu_value_free(&v[cell->count - 1].value);
            cell->count--;
        } else {
            v = realloc(cell->versions, keep * sizeof(*v));
            if (!v) {
                tsemu_value_free(&copy);
                if (cell->count == 0)
                    cell_remove(row, (size_t)idx);
                return -ENOMEM;
            }
            cell->versions = v;
        }
        memmove(&v[at + 1], &v[at], (cell->count - at) * sizeof(*v));
        v[at].ts = ts;
        v[at].value = copy;
        cell->count++;
    }
    return 0;
}

void tsemu_row_delete_version(struct tsemu_row *row, const char *name, size_t name_len, int64_t ts)
{
    size_t pos;
    long idx = cell_index(row, name, name_len, &pos);
    struct tsemu_cell *cell;

    if (idx < 0)
        return;
    cell = &row->cells[idx];
    for (size_t i = 0; i < cell->count; i++) {
        if (cell->versions[i].ts != ts)
            continue;
        tsemu_value_free(&cell->versions[i].value);
        memmove(&cell->versions[i], &cell->versions[i + 1],
                (cell->count - i - 1) * sizeof(cell->versions[0]));
        cell->count--;
        break;
    }
    if (cell->count == 0)
        cell_remove(row, (size_t)idx);
}

void tsemu_row_delete_column(struct tsemu_row *row, const char *name, size_t name_len)
{
    size_t pos;
    long idx = cell_index(row, name, name_len, &pos);

    if (idx >= 0)
        cell_remove(row, (size_t)idx);
}

/* ---- Tables ---------------------------------------------------------------------------- */

long tsemu_table_find(const struct tsemu_table *table, const struct tsemu_value *pk, size_t *pos)
{
    size_t lo = 0, hi = table->row_count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = tsemu_pk_cmp(table, table->rows[mid]->pk, pk);
        if (r == 0) {
            *pos = mid;
            return (long)mid;
        }
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return -1;
}

size_t tsemu_table_lower_bound(const struct tsemu_table *table, const struct tsemu_value *pk)
{
    size_t pos;

    tsemu_table_find(table, pk, &pos);
    return pos;
}

int tsemu_table_insert(struct tsemu_table *table, size_t pos, const struct tsemu_value *pk,
                       struct tsemu_row **out)
{
    struct tsemu_row *row;

    if (table->row_count == table->row_cap) {
        size_t cap = table->row_cap ? table->row_cap * 2 : 16;
        struct tsemu_row **rows = realloc(table->rows, cap * sizeof(*rows));
        if (!rows)
            return -ENOMEM;
        table->rows = rows;
        table->row_cap = cap;
    }
    row = calloc(1, sizeof(*row));
    if (!row)
        return -ENOMEM;
    for (size_t i = 0; i < table->pk_count; i++) {
        struct sg_ts_value view = tsemu_value_view(&pk[i]);
        if (tsemu_value_copy(&row->pk[i], &view) < 0) {
            row_free(row);
            return -ENOMEM;
        }
    }
    memmove(&table->rows[pos + 1], &table->rows[pos],
            (table->row_count - pos) * sizeof(table->rows[0]));
    table->rows[pos] = row;
    table->row_count++;
    *out = row;
    return 0;
}

void tsemu_table_remove(struct tsemu_table *table, size_t idx)
{
    row_free(table->rows[idx]);
    memmove(&table->rows[idx], &table->rows[idx + 1],
            (table->row_count - idx - 1) * sizeof(table->rows[0]));
    table->row_count--;
}

static void table_free(struct tsemu_table *table)
{
    if (!table)
        return;
    for (size_t i = 0; i < table->row_count; i++)
        row_free(table->rows[i]);
    free(table->rows);
    for (size_t i = 0; i < SG_TS_PK_MAX_COLUMNS; i++)
        free(table->pk[i].name);
    for (size_t i = 0; i < TSEMU_MAX_DEFINED_COLS; i++)
        free(table->defined[i].name);
    free(table->name);
    free(table);
}

void tsemu_store_init(struct tsemu_store *store)
{
    memset(store, 0, sizeof(*store));
}

void tsemu_store_destroy(struct tsemu_store *store)
{
    for (size_t i = 0; i < store->table_count; i++)
        table_free(store->tables[i]);
    store->table_count = 0;
}

static long table_index(const struct tsemu_store *store, const char *name, size_t name_len,
                        size_t *pos)
{
    size_t lo = 0, hi = store->table_count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *n = store->tables[mid]->name;
        int r = bytes_cmp((const uint8_t *)n, strlen(n), (const uint8_t *)name, name_len);
        if (r == 0)
            return (long)mid;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return -1;
}

struct tsemu_table *tsemu_store_table_find(struct tsemu_store *store, const char *name,
                                           size_t name_len)
{
    size_t pos;
    long idx = table_index(store, name, name_len, &pos);

    return idx < 0 ? NULL : store->tables[idx];
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);

    if (d)
        memcpy(d, s, n + 1);
    return d;
}

int tsemu_store_table_create(struct tsemu_store *store, const struct tsemu_table *tpl,
                             struct tsemu_table **out)
{
    struct tsemu_table *table;
    size_t pos = 0; /* set by table_index; for compilers that cannot see it */

    if (table_index(store, tpl->name, strlen(tpl->name), &pos) >= 0)
        return -EEXIST;
    if (store->table_count >= TSEMU_MAX_TABLES)
        return -ENOSPC;
    table = calloc(1, sizeof(*table));
    if (!table)
        return -ENOMEM;
    table->name = dup_str(tpl->name);
    if (!table->name)
        goto nomem;
    table->pk_count = tpl->pk_count;
    for (size_t i = 0; i < tpl->pk_count; i++) {
        table->pk[i] = tpl->pk[i];
        table->pk[i].name = dup_str(tpl->pk[i].name);
        if (!table->pk[i].name)
            goto nomem;
    }
    table->defined_count = tpl->defined_count;
    for (size_t i = 0; i < tpl->defined_count; i++) {
        table->defined[i].type = tpl->defined[i].type;
        table->defined[i].name = dup_str(tpl->defined[i].name);
        if (!table->defined[i].name)
            goto nomem;
    }
    table->max_versions = tpl->max_versions;
    table->ttl = tpl->ttl;
    table->read_cu = tpl->read_cu;
    table->write_cu = tpl->write_cu;
    table->created_ms = tpl->created_ms;
    table->next_auto = tpl->next_auto;
    memmove(&store->tables[pos + 1], &store->tables[pos],
            (store->table_count - pos) * sizeof(store->tables[0]));
    store->tables[pos] = table;
    store->table_count++;
    if (out)
        *out = table;
    return 0;
nomem:
    table_free(table);
    return -ENOMEM;
}

int tsemu_store_table_delete(struct tsemu_store *store, const char *name, size_t name_len)
{
    size_t pos;
    long idx = table_index(store, name, name_len, &pos);

    if (idx < 0)
        return -ENOENT;
    table_free(store->tables[idx]);
    memmove(&store->tables[idx], &store->tables[idx + 1],
            (store->table_count - (size_t)idx - 1) * sizeof(store->tables[0]));
    store->table_count--;
    return 0;
}
