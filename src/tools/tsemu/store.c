/* The emulator's data: tables sorted by name; in each table the rows in primary-key order, in
 * blocks of at most TSEMU_BLOCK_ROWS row pointers (a lookup is a binary search over the blocks'
 * last keys, then one inside a block; an insert moves at most one block). Each row is one
 * allocation (struct tsemu_packed), laid out as
 *   per PK column, in schema order: INTEGER as 8 bytes; STRING and BINARY as u32 length + bytes
 *   u16 column count, then per column (sorted by name): u8 name length, name, u16 version
 *   count, then per version (newest first): i64 timestamp, u8 type, and the value: INTEGER
 *   and DOUBLE 8 bytes, BOOLEAN 1 byte, STRING and BINARY u32 length + bytes
 * (host byte order; the bytes never leave the process). Operations unpack a row into a struct
 * tsemu_row, change it, and store it packed again. */
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

/* Sets `dst` to `src`; STRING and BLOB bytes go to `bytes`, which has room for len + 1 (one spare
 * byte so an empty value still has storage). */
static void value_set(struct tsemu_value *dst, const struct sg_ts_value *src, uint8_t *bytes)
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
        dst->bytes = bytes;
        if (src->bytes.len)
            memcpy(dst->bytes, src->bytes.ptr, src->bytes.len);
        dst->len = src->bytes.len;
        break;
    default:
        break;
    }
}

static bool value_has_bytes(const struct sg_ts_value *v)
{
    return v->type == SG_TS_STRING || v->type == SG_TS_BLOB;
}

int tsemu_value_copy(struct tsemu_value *dst, const struct sg_ts_value *src)
{
    uint8_t *bytes = NULL;

    if (value_has_bytes(src) && !(bytes = malloc(src->bytes.len + 1))) {
        memset(dst, 0, sizeof(*dst));
        return -ENOMEM;
    }
    value_set(dst, src, bytes);
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

/* A row's cells (names, version arrays and values) live in the row's own blocks, freed together
 * with the row: an operation unpacks a row, changes it and packs it again, so nothing in a
 * working row outlives it, and building one costs a malloc per 8 KiB rather than three per
 * cell. A replaced or removed value stays in its block until the row is freed. */
struct tsemu_row_block {
    struct tsemu_row_block *next;
    size_t used, cap;
    max_align_t data[];
};

#define ROW_BLOCK_MIN 8192

static void *row_alloc(struct tsemu_row *row, size_t n)
{
    struct tsemu_row_block *b = row->mem;
    void *p;

    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ROW_BLOCK_MIN ? n : ROW_BLOCK_MIN;

        b = malloc(sizeof(*b) + cap);
        if (!b)
            return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = row->mem;
        row->mem = b;
    }
    p = (uint8_t *)b->data + b->used;
    b->used += n;
    return p;
}

/* Copies `src` into `dst` with its bytes in the row's blocks. -ENOMEM. */
static int row_value(struct tsemu_row *row, struct tsemu_value *dst, const struct sg_ts_value *src)
{
    uint8_t *bytes = NULL;

    if (value_has_bytes(src) && !(bytes = row_alloc(row, src->bytes.len + 1)))
        return -ENOMEM;
    value_set(dst, src, bytes);
    return 0;
}

void tsemu_row_clear(struct tsemu_row *row)
{
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
    memmove(&row->cells[idx], &row->cells[idx + 1],
            (row->cell_count - idx - 1) * sizeof(row->cells[0]));
    row->cell_count--;
}

int tsemu_row_put(struct tsemu_row *row, const char *name, size_t name_len, int64_t ts,
                  const struct sg_ts_value *value, int32_t max_versions)
{
    struct tsemu_cell *cell;
    size_t pos = 0, at;
    long idx;

    if (max_versions < 1)
        max_versions = 1;
    idx = cell_index(row, name, name_len, &pos);
    cell = idx < 0 ? NULL : &row->cells[idx];
    /* Newest first; a version with the same timestamp is overwritten. */
    for (at = 0; cell && at < cell->count && cell->versions[at].ts > ts; at++)
        ;
    if (cell && at < cell->count && cell->versions[at].ts == ts)
        return row_value(row, &cell->versions[at].value, value);
    if ((size_t)max_versions <= at)
        return 0; /* older than every version kept */
    if (!cell) {
        struct tsemu_cell fresh = {0};

        if (row->cell_count == row->cell_cap) {
            size_t cap = row->cell_cap ? row->cell_cap * 2 : 16;
            struct tsemu_cell *cells = realloc(row->cells, cap * sizeof(*cells));
            if (!cells)
                return -ENOMEM;
            row->cells = cells;
            row->cell_cap = cap;
        }
        fresh.name = row_alloc(row, name_len + 1);
        if (!fresh.name)
            return -ENOMEM;
        memcpy(fresh.name, name, name_len);
        fresh.name[name_len] = '\0';
        fresh.name_len = name_len;
        memmove(&row->cells[pos + 1], &row->cells[pos],
                (row->cell_count - pos) * sizeof(row->cells[0]));
        row->cells[pos] = fresh;
        row->cell_count++;
        cell = &row->cells[pos];
    }
    {
        struct tsemu_version *v = cell->versions;
        struct tsemu_value copy;

        if (row_value(row, &copy, value) < 0)
            goto nomem;
        if (cell->count + 1 > (size_t)max_versions) {
            cell->count--; /* the oldest version falls out */
        } else if (cell->count + 1 > cell->cap) {
            size_t cap = cell->cap ? cell->cap * 2 : 1;

            if (cap > (size_t)max_versions)
                cap = (size_t)max_versions;
            v = row_alloc(row, cap * sizeof(*v));
            if (!v)
                goto nomem;
            if (cell->count)
                memcpy(v, cell->versions, cell->count * sizeof(*v));
            cell->versions = v;
            cell->cap = cap;
        }
        memmove(&v[at + 1], &v[at], (cell->count - at) * sizeof(*v));
        v[at].ts = ts;
        v[at].value = copy;
        cell->count++;
    }
    return 0;
nomem:
    if (cell->count == 0)
        cell_remove(row, (size_t)(cell - row->cells));
    return -ENOMEM;
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

/* ---- Packed rows ----------------------------------------------------------------------- */

struct reader {
    const uint8_t *p, *end;
};

static uint64_t rd_u64(struct reader *r)
{
    uint64_t v;

    memcpy(&v, r->p, 8);
    r->p += 8;
    return v;
}

static uint32_t rd_u32(struct reader *r)
{
    uint32_t v;

    memcpy(&v, r->p, 4);
    r->p += 4;
    return v;
}

static uint16_t rd_u16(struct reader *r)
{
    uint16_t v;

    memcpy(&v, r->p, 2);
    r->p += 2;
    return v;
}

/* Reads a value of a known type as a view into the packed bytes. */
static void rd_value(struct reader *r, enum sg_ts_type type, struct tsemu_value *v)
{
    uint64_t u;

    memset(v, 0, sizeof(*v));
    v->type = type;
    switch (type) {
    case SG_TS_INTEGER:
        v->i = (int64_t)rd_u64(r);
        break;
    case SG_TS_DOUBLE:
        u = rd_u64(r);
        memcpy(&v->d, &u, 8);
        break;
    case SG_TS_BOOLEAN:
        v->b = *r->p++ != 0;
        break;
    case SG_TS_STRING:
    case SG_TS_BLOB:
        v->len = rd_u32(r);
        v->bytes = (uint8_t *)(uintptr_t)r->p;
        r->p += v->len;
        break;
    default:
        break;
    }
}

static size_t value_size(const struct tsemu_value *v)
{
    switch (v->type) {
    case SG_TS_INTEGER:
    case SG_TS_DOUBLE:
        return 8;
    case SG_TS_BOOLEAN:
        return 1;
    case SG_TS_STRING:
    case SG_TS_BLOB:
        return 4 + v->len;
    default:
        return 0;
    }
}

static uint8_t *wr(uint8_t *p, const void *src, size_t n)
{
    if (n)
        memcpy(p, src, n);
    return p + n;
}

static uint8_t *wr_value(uint8_t *p, const struct tsemu_value *v)
{
    uint32_t len = (uint32_t)v->len;
    uint8_t b = v->b ? 1 : 0;

    switch (v->type) {
    case SG_TS_INTEGER:
        return wr(p, &v->i, 8);
    case SG_TS_DOUBLE:
        return wr(p, &v->d, 8);
    case SG_TS_BOOLEAN:
        return wr(p, &b, 1);
    case SG_TS_STRING:
    case SG_TS_BLOB:
        p = wr(p, &len, 4);
        return wr(p, v->bytes, v->len);
    default:
        return p;
    }
}

static struct tsemu_packed *row_pack(const struct tsemu_table *table, const struct tsemu_row *row)
{
    size_t size = 2;
    struct tsemu_packed *out;
    uint16_t n16;
    uint8_t *p;

    /* The counts are stored in 16 bits: a row of more columns (each write adds at most 1024)
     * or a column of more versions cannot be stored. */
    if (row->cell_count > UINT16_MAX)
        return NULL;
    for (size_t i = 0; i < table->pk_count; i++)
        size += value_size(&row->pk[i]);
    for (size_t i = 0; i < row->cell_count; i++) {
        const struct tsemu_cell *c = &row->cells[i];

        if (c->count > UINT16_MAX || c->name_len > UINT8_MAX)
            return NULL;
        size += 1 + c->name_len + 2;
        for (size_t v = 0; v < c->count; v++)
            size += 8 + 1 + value_size(&c->versions[v].value);
    }
    if (size > UINT32_MAX)
        return NULL;
    out = malloc(sizeof(*out) + size);
    if (!out)
        return NULL;
    out->size = (uint32_t)size;
    p = out->data;
    for (size_t i = 0; i < table->pk_count; i++)
        p = wr_value(p, &row->pk[i]);
    n16 = (uint16_t)row->cell_count;
    p = wr(p, &n16, 2);
    for (size_t i = 0; i < row->cell_count; i++) {
        const struct tsemu_cell *c = &row->cells[i];
        uint8_t nl = (uint8_t)c->name_len;

        p = wr(p, &nl, 1);
        p = wr(p, c->name, c->name_len);
        n16 = (uint16_t)c->count;
        p = wr(p, &n16, 2);
        for (size_t v = 0; v < c->count; v++) {
            const struct tsemu_version *ver = &c->versions[v];
            uint8_t t = (uint8_t)ver->value.type;

            p = wr(p, &ver->ts, 8);
            p = wr(p, &t, 1);
            p = wr_value(p, &ver->value);
        }
    }
    return out;
}

int tsemu_packed_cmp(const struct tsemu_table *table, const struct tsemu_packed *row,
                     const struct tsemu_value *pk)
{
    struct reader r = {row->data, row->data + row->size};

    for (size_t i = 0; i < table->pk_count; i++) {
        struct tsemu_value v;
        int c;

        rd_value(&r, table->pk[i].type, &v);
        c = value_cmp(&v, &pk[i]);
        if (c)
            return c;
    }
    return 0;
}

void tsemu_row_free_contents(struct tsemu_row *row)
{
    while (row->mem) {
        struct tsemu_row_block *next = row->mem->next;

        free(row->mem);
        row->mem = next;
    }
    free(row->cells);
    for (size_t i = 0; i < SG_TS_PK_MAX_COLUMNS; i++)
        tsemu_value_free(&row->pk[i]);
    memset(row, 0, sizeof(*row));
}

int tsemu_row_set_key(const struct tsemu_table *table, struct tsemu_row *row,
                      const struct tsemu_value *pk)
{
    for (size_t i = 0; i < table->pk_count; i++) {
        struct sg_ts_value view = tsemu_value_view(&pk[i]);

        tsemu_value_free(&row->pk[i]);
        if (tsemu_value_copy(&row->pk[i], &view) < 0)
            return -ENOMEM;
    }
    return 0;
}

int tsemu_row_unpack(const struct tsemu_table *table, const struct tsemu_packed *p,
                     struct tsemu_row *out)
{
    struct reader r = {p->data, p->data + p->size};
    size_t ncells;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < table->pk_count; i++) {
        struct tsemu_value v;
        struct sg_ts_value view;

        rd_value(&r, table->pk[i].type, &v);
        view = tsemu_value_view(&v);
        if (tsemu_value_copy(&out->pk[i], &view) < 0)
            goto nomem;
    }
    ncells = rd_u16(&r);
    if (ncells) {
        out->cells = calloc(ncells, sizeof(*out->cells));
        if (!out->cells)
            goto nomem;
        out->cell_cap = ncells;
    }
    for (size_t i = 0; i < ncells; i++) {
        struct tsemu_cell *c = &out->cells[i];
        size_t nl = *r.p++;

        out->cell_count++;
        c->name = row_alloc(out, nl + 1);
        if (!c->name)
            goto nomem;
        memcpy(c->name, r.p, nl);
        c->name[nl] = '\0';
        c->name_len = nl;
        r.p += nl;
        c->count = rd_u16(&r);
        c->cap = c->count ? c->count : 1;
        c->versions = row_alloc(out, c->cap * sizeof(*c->versions));
        if (!c->versions) {
            c->count = 0;
            goto nomem;
        }
        for (size_t v = 0; v < c->count; v++) {
            struct tsemu_value val;
            struct sg_ts_value view;
            int64_t ts = (int64_t)rd_u64(&r);
            enum sg_ts_type type = (enum sg_ts_type) * r.p++;

            rd_value(&r, type, &val);
            view = tsemu_value_view(&val);
            c->versions[v].ts = ts;
            if (row_value(out, &c->versions[v].value, &view) < 0) {
                c->count = v;
                goto nomem;
            }
        }
    }
    return 0;
nomem:
    tsemu_row_free_contents(out);
    return -ENOMEM;
}

/* ---- Tables ---------------------------------------------------------------------------- */

static const struct tsemu_packed *block_last(const struct tsemu_block *blk)
{
    return blk->rows[blk->count - 1];
}

bool tsemu_table_seek(const struct tsemu_table *table, const struct tsemu_value *pk,
                      struct tsemu_cursor *cur)
{
    size_t lo = 0, hi = table->block_count;
    const struct tsemu_block *blk;

    /* The first block whose last key is >= pk. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tsemu_packed_cmp(table, block_last(table->blocks[mid]), pk) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    cur->b = lo;
    cur->i = 0;
    if (lo == table->block_count)
        return false;
    blk = table->blocks[lo];
    lo = 0;
    hi = blk->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = tsemu_packed_cmp(table, blk->rows[mid], pk);
        if (r == 0) {
            cur->i = mid;
            return true;
        }
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    cur->i = lo; /* < count: the block's last key is >= pk */
    return false;
}

const struct tsemu_packed *tsemu_cursor_row(const struct tsemu_table *table,
                                            const struct tsemu_cursor *cur)
{
    if (cur->b >= table->block_count)
        return NULL;
    return table->blocks[cur->b]->rows[cur->i];
}

void tsemu_cursor_next(const struct tsemu_table *table, struct tsemu_cursor *cur)
{
    if (cur->b >= table->block_count)
        return;
    if (++cur->i >= table->blocks[cur->b]->count) {
        cur->b++;
        cur->i = 0;
    }
}

bool tsemu_cursor_prev(const struct tsemu_table *table, struct tsemu_cursor *cur)
{
    if (cur->i > 0 && cur->b < table->block_count) {
        cur->i--;
        return true;
    }
    if (cur->b == 0)
        return false;
    cur->b--;
    cur->i = table->blocks[cur->b]->count - 1;
    return true;
}

/* Opens a slot for a new block at index `at`. */
static int blocks_insert(struct tsemu_table *table, size_t at, struct tsemu_block *blk)
{
    if (table->block_count == table->block_cap) {
        size_t cap = table->block_cap ? table->block_cap * 2 : 4;
        struct tsemu_block **b = realloc(table->blocks, cap * sizeof(*b));
        if (!b)
            return -ENOMEM;
        table->blocks = b;
        table->block_cap = cap;
    }
    memmove(&table->blocks[at + 1], &table->blocks[at],
            (table->block_count - at) * sizeof(table->blocks[0]));
    table->blocks[at] = blk;
    table->block_count++;
    return 0;
}

int tsemu_table_store(struct tsemu_table *table, struct tsemu_cursor *cur,
                      const struct tsemu_row *row, bool replace)
{
    struct tsemu_packed *p = row_pack(table, row);
    struct tsemu_block *blk;

    if (!p)
        return -ENOMEM;
    if (replace) {
        struct tsemu_packed **slot = &table->blocks[cur->b]->rows[cur->i];

        free(*slot);
        *slot = p;
        return 0;
    }
    if (table->block_count == 0) {
        blk = malloc(sizeof(*blk));
        if (!blk || blocks_insert(table, 0, blk) < 0) {
            free(blk);
            free(p);
            return -ENOMEM;
        }
        blk->count = 0;
        *cur = (struct tsemu_cursor){0, 0};
    } else if (cur->b == table->block_count) {
        /* Past the last key: append to the last block. */
        cur->b = table->block_count - 1;
        cur->i = table->blocks[cur->b]->count;
    }
    blk = table->blocks[cur->b];
    if (blk->count == TSEMU_BLOCK_ROWS) {
        /* Split: the upper half moves to a new block after this one. */
        struct tsemu_block *upper = malloc(sizeof(*upper));
        size_t half = TSEMU_BLOCK_ROWS / 2;

        if (!upper || blocks_insert(table, cur->b + 1, upper) < 0) {
            free(upper);
            free(p);
            return -ENOMEM;
        }
        upper->count = blk->count - half;
        memcpy(upper->rows, &blk->rows[half], upper->count * sizeof(blk->rows[0]));
        blk->count = half;
        if (cur->i > half) {
            cur->b++;
            cur->i -= half;
            blk = upper;
        }
    }
    memmove(&blk->rows[cur->i + 1], &blk->rows[cur->i], (blk->count - cur->i) * sizeof(p));
    blk->rows[cur->i] = p;
    blk->count++;
    table->row_count++;
    return 0;
}

void tsemu_table_erase(struct tsemu_table *table, struct tsemu_cursor *cur)
{
    struct tsemu_block *blk = table->blocks[cur->b];

    free(blk->rows[cur->i]);
    memmove(&blk->rows[cur->i], &blk->rows[cur->i + 1],
            (blk->count - cur->i - 1) * sizeof(blk->rows[0]));
    blk->count--;
    table->row_count--;
    if (blk->count == 0) {
        free(blk);
        memmove(&table->blocks[cur->b], &table->blocks[cur->b + 1],
                (table->block_count - cur->b - 1) * sizeof(table->blocks[0]));
        table->block_count--;
        cur->i = 0;
    } else if (cur->i >= blk->count) {
        cur->b++;
        cur->i = 0;
    }
}

static void table_free(struct tsemu_table *table)
{
    if (!table)
        return;
    for (size_t b = 0; b < table->block_count; b++) {
        for (size_t i = 0; i < table->blocks[b]->count; i++)
            free(table->blocks[b]->rows[i]);
        free(table->blocks[b]);
    }
    free(table->blocks);
    tsemu_index_free_all(table);
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
    while (store->pending) {
        struct tsemu_pending *p = store->pending;

        store->pending = p->next;
        tsemu_row_free_contents(&p->row);
        free(p);
    }
    store->pending_tail = NULL;
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
    if (store->tables[idx]->index_count > 0) {
        /* A main table's indexes go with it. */
        struct tsemu_table *main = store->tables[idx];

        while (main->index_count > 0)
            tsemu_index_drop(store, main, main->indexes[0]->name);
        idx = table_index(store, name, name_len, &pos);
    }
    table_free(store->tables[idx]);
    memmove(&store->tables[idx], &store->tables[idx + 1],
            (store->table_count - (size_t)idx - 1) * sizeof(store->tables[0]));
    store->table_count--;
    return 0;
}
