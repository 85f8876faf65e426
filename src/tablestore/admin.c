/* Table administration: CreateTable and DescribeTable bodies and answers (PROTOCOL.md sections
 * 2.2 and 2.3), so that a writer checks or creates its tables without building protobuf
 * messages itself. */
#include "streamgate/tablestore.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ots.pb-c.h"
#include "tablestore_internal.h"

static bool pk_type_of(enum sg_ts_type type, Ots__PrimaryKeyType *out)
{
    switch (type) {
    case SG_TS_INTEGER:
        *out = OTS__PRIMARY_KEY_TYPE__INTEGER;
        return true;
    case SG_TS_STRING:
        *out = OTS__PRIMARY_KEY_TYPE__STRING;
        return true;
    case SG_TS_BLOB:
        *out = OTS__PRIMARY_KEY_TYPE__BINARY;
        return true;
    default:
        return false;
    }
}

static bool dct_of(enum sg_ts_type type, Ots__DefinedColumnType *out)
{
    switch (type) {
    case SG_TS_INTEGER:
        *out = OTS__DEFINED_COLUMN_TYPE__DCT_INTEGER;
        return true;
    case SG_TS_DOUBLE:
        *out = OTS__DEFINED_COLUMN_TYPE__DCT_DOUBLE;
        return true;
    case SG_TS_BOOLEAN:
        *out = OTS__DEFINED_COLUMN_TYPE__DCT_BOOLEAN;
        return true;
    case SG_TS_STRING:
        *out = OTS__DEFINED_COLUMN_TYPE__DCT_STRING;
        return true;
    case SG_TS_BLOB:
        *out = OTS__DEFINED_COLUMN_TYPE__DCT_BLOB;
        return true;
    default:
        return false;
    }
}

static bool names_ok(const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!names[i] || !sg_ts__name_ok(names[i], strlen(names[i])))
            return false;
    return true;
}

static int check_index(const char *table, const struct sg_ts_index *idx, char *errstr,
                       size_t errstr_size)
{
    if (!idx->name || !sg_ts__name_ok(idx->name, strlen(idx->name)) || idx->pk_count == 0 ||
        !names_ok(idx->pk, idx->pk_count) || !names_ok(idx->columns, idx->column_count))
        return sg_ts__fail(errstr, errstr_size, -EINVAL,
                           "table %s: an index needs a valid name and valid columns", table);
    return 0;
}

/* The index message of `idx` (global, asynchronous), pointing at its strings. */
static void index_meta(const struct sg_ts_index *idx, Ots__IndexMeta *m)
{
    ots__index_meta__init(m);
    m->name = (char *)idx->name;
    m->n_primary_key = idx->pk_count;
    m->primary_key = (char **)idx->pk;
    m->n_defined_column = idx->column_count;
    m->defined_column = (char **)idx->columns;
    m->index_update_mode = OTS__INDEX_UPDATE_MODE__IUM_ASYNC_INDEX;
    m->index_type = OTS__INDEX_TYPE__IT_GLOBAL_INDEX;
}

static int check_schema(const char *table, const struct sg_ts_table_schema *schema, char *errstr,
                        size_t errstr_size)
{
    if (!table || !sg_ts__name_ok(table, strlen(table)))
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "invalid table name");
    if (!schema || schema->pk_count == 0 || schema->pk_count > SG_TS_PK_MAX_COLUMNS)
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "table %s: 1 to %d primary key columns",
                           table, SG_TS_PK_MAX_COLUMNS);
    for (size_t i = 0; i < schema->pk_count; i++) {
        Ots__PrimaryKeyType t;
        const char *name = schema->pk[i].name;
        if (!name || !sg_ts__name_ok(name, strlen(name)) || !pk_type_of(schema->pk[i].type, &t))
            return sg_ts__fail(errstr, errstr_size, -EINVAL,
                               "table %s: primary key column %zu: bad name or type", table, i);
    }
    for (size_t i = 0; i < schema->defined_count; i++) {
        Ots__DefinedColumnType t;
        const char *name = schema->defined[i].name;
        if (!name || !sg_ts__name_ok(name, strlen(name)) || !dct_of(schema->defined[i].type, &t))
            return sg_ts__fail(errstr, errstr_size, -EINVAL,
                               "table %s: predefined column %zu: bad name or type", table, i);
    }
    for (size_t i = 0; i < schema->index_count; i++) {
        int rc = check_index(table, &schema->indexes[i], errstr, errstr_size);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* At most this many predefined columns and indexes in one CreateTable. */
#define MAX_DEFINED 32
#define MAX_INDEXES 8

int sg_ts__pack(struct sg_buf *out, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    int rc = sg_buf_reserve(out, len + 1);
    if (rc != 0)
        return rc;
    out->len += protobuf_c_message_pack(msg, (uint8_t *)out->data + out->len);
    return 0;
}

int sg_ts_describe_table_build(struct sg_buf *out, const char *table, char *errstr,
                               size_t errstr_size)
{
    if (!table || !sg_ts__name_ok(table, strlen(table)))
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "invalid table name");
    Ots__DescribeTableRequest req = OTS__DESCRIBE_TABLE_REQUEST__INIT;
    req.table_name = (char *)table;
    return sg_ts__pack(out, &req.base);
}

int sg_ts_create_table_build(struct sg_buf *out, const struct sg_ts_create_table *ct, char *errstr,
                             size_t errstr_size)
{
    int rc = check_schema(ct->table, &ct->schema, errstr, errstr_size);
    if (rc != 0)
        return rc;
    Ots__PrimaryKeySchema cols[SG_TS_PK_MAX_COLUMNS], *colp[SG_TS_PK_MAX_COLUMNS];
    for (size_t i = 0; i < ct->schema.pk_count; i++) {
        ots__primary_key_schema__init(&cols[i]);
        cols[i].name = (char *)ct->schema.pk[i].name;
        pk_type_of(ct->schema.pk[i].type, &cols[i].type);
        colp[i] = &cols[i];
    }
    const struct sg_ts_table_schema *sc = &ct->schema;
    if (sc->defined_count > MAX_DEFINED || sc->index_count > MAX_INDEXES)
        return sg_ts__fail(errstr, errstr_size, -EINVAL,
                           "table %s: at most %d predefined columns and %d indexes", ct->table,
                           MAX_DEFINED, MAX_INDEXES);
    Ots__DefinedColumnSchema defs[MAX_DEFINED], *defp[MAX_DEFINED];
    for (size_t i = 0; i < sc->defined_count; i++) {
        ots__defined_column_schema__init(&defs[i]);
        defs[i].name = (char *)sc->defined[i].name;
        dct_of(sc->defined[i].type, &defs[i].type);
        defp[i] = &defs[i];
    }
    Ots__IndexMeta idx[MAX_INDEXES], *idxp[MAX_INDEXES];
    for (size_t i = 0; i < sc->index_count; i++) {
        index_meta(&sc->indexes[i], &idx[i]);
        idxp[i] = &idx[i];
    }
    Ots__TableMeta meta = OTS__TABLE_META__INIT;
    meta.table_name = (char *)ct->table;
    meta.n_primary_key = ct->schema.pk_count;
    meta.primary_key = colp;
    meta.n_defined_column = sc->defined_count;
    meta.defined_column = defp;
    Ots__CapacityUnit cu = OTS__CAPACITY_UNIT__INIT;
    cu.has_read = cu.has_write = true;
    Ots__ReservedThroughput rt = OTS__RESERVED_THROUGHPUT__INIT;
    rt.capacity_unit = &cu;
    Ots__TableOptions opts = OTS__TABLE_OPTIONS__INIT;
    opts.has_time_to_live = opts.has_max_versions = true;
    opts.time_to_live = ct->time_to_live ? ct->time_to_live : -1;
    opts.max_versions = ct->max_versions ? ct->max_versions : 1;
    Ots__CreateTableRequest req = OTS__CREATE_TABLE_REQUEST__INIT;
    req.table_meta = &meta;
    req.reserved_throughput = &rt;
    req.table_options = &opts;
    req.n_index_metas = sc->index_count;
    req.index_metas = idxp;
    return sg_ts__pack(out, &req.base);
}

int sg_ts_create_index_build(struct sg_buf *out, const char *table, const struct sg_ts_index *index,
                             bool include_base_data, char *errstr, size_t errstr_size)
{
    if (!table || !sg_ts__name_ok(table, strlen(table)))
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "invalid table name");
    int rc = check_index(table, index, errstr, errstr_size);
    if (rc != 0)
        return rc;
    Ots__IndexMeta m;
    index_meta(index, &m);
    Ots__CreateIndexRequest req = OTS__CREATE_INDEX_REQUEST__INIT;
    req.main_table_name = (char *)table;
    req.index_meta = &m;
    req.has_include_base_data = true;
    req.include_base_data = include_base_data;
    return sg_ts__pack(out, &req.base);
}

static bool same_names(char *const *got, size_t ngot, const char *const *want, size_t nwant)
{
    if (ngot != nwant)
        return false;
    for (size_t i = 0; i < nwant; i++)
        if (strcmp(got[i], want[i]) != 0)
            return false;
    return true;
}

/* Appends "a, b, c" of `names` to `buf` (truncated to fit). */
static void join(char *buf, size_t size, const char *const *names, size_t n)
{
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%s", i ? ", " : "", names[i]);
}

/* Checks the indexes and predefined columns of a described table against the schema. */
static int check_indexes(const Ots__DescribeTableResponse *d, const char *table,
                         const struct sg_ts_table_schema *schema, char *errstr, size_t errstr_size)
{
    const char *missing = NULL;
    char want[512];
    for (size_t i = 0; i < schema->index_count; i++) {
        const struct sg_ts_index *idx = &schema->indexes[i];
        const Ots__IndexMeta *found = NULL;
        for (size_t j = 0; j < d->n_index_metas && !found; j++)
            if (strcmp(d->index_metas[j]->name, idx->name) == 0)
                found = d->index_metas[j];
        if (!found) {
            missing = missing ? missing : idx->name;
            continue;
        }
        if (!same_names(found->primary_key, found->n_primary_key, idx->pk, idx->pk_count) ||
            !same_names(found->defined_column, found->n_defined_column, idx->columns,
                        idx->column_count) ||
            found->index_type != OTS__INDEX_TYPE__IT_GLOBAL_INDEX) {
            join(want, sizeof(want), idx->pk, idx->pk_count);
            return sg_ts__fail(errstr, errstr_size, -EINVAL,
                               "index %s of table %s exists with other columns; expected a "
                               "global index on (%s)",
                               idx->name, table, want);
        }
    }
    if (!missing)
        return 0;
    /* An index can be added to the table only over columns it has. */
    const Ots__TableMeta *meta = d->table_meta;
    for (size_t i = 0; i < schema->defined_count; i++) {
        const struct sg_ts_defined_column *c = &schema->defined[i];
        Ots__DefinedColumnType t = 0;
        bool ok = false;
        dct_of(c->type, &t);
        for (size_t j = 0; j < meta->n_defined_column && !ok; j++)
            ok = strcmp(meta->defined_column[j]->name, c->name) == 0 &&
                 meta->defined_column[j]->type == t;
        if (!ok)
            return sg_ts__fail(errstr, errstr_size, -EINVAL,
                               "table %s has no predefined column %s of type %s, which index %s "
                               "needs",
                               table, c->name, sg_ts_type_name(c->type), missing);
    }
    return sg_ts__fail(errstr, errstr_size, -ENOENT, "index %s of table %s does not exist", missing,
                       table);
}

int sg_ts_describe_table_check(const void *body, size_t len, const char *table,
                               const struct sg_ts_table_schema *schema, char *errstr,
                               size_t errstr_size)
{
    Ots__DescribeTableResponse *d =
        ots__describe_table_response__unpack(NULL, len, (const uint8_t *)body);
    if (!d || !d->table_meta) {
        if (d)
            ots__describe_table_response__free_unpacked(d, NULL);
        return sg_ts__fail(errstr, errstr_size, -EBADMSG, "DescribeTable %s: unreadable answer",
                           table);
    }
    const Ots__TableMeta *meta = d->table_meta;
    bool same = meta->n_primary_key == schema->pk_count;
    for (size_t i = 0; same && i < schema->pk_count; i++) {
        Ots__PrimaryKeyType t = 0;
        same = pk_type_of(schema->pk[i].type, &t) &&
               strcmp(meta->primary_key[i]->name, schema->pk[i].name) == 0 &&
               meta->primary_key[i]->type == t;
    }
    if (same) {
        int rc = check_indexes(d, table, schema, errstr, errstr_size);
        ots__describe_table_response__free_unpacked(d, NULL);
        return rc;
    }
    ots__describe_table_response__free_unpacked(d, NULL);
    char expected[SG_TS_PK_MAX_COLUMNS * (SG_TS_NAME_MAX_BYTES + 2) + 1] = "";
    size_t at = 0;
    for (size_t i = 0; i < schema->pk_count && at < sizeof(expected); i++)
        at += (size_t)snprintf(expected + at, sizeof(expected) - at, "%s%s", i ? ", " : "",
                               schema->pk[i].name);
    return sg_ts__fail(errstr, errstr_size, -EINVAL,
                       "table %s exists with another primary key; expected (%s)", table, expected);
}
