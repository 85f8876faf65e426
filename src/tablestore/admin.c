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
    return 0;
}

static int pack_into(struct sg_buf *out, const ProtobufCMessage *msg)
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
    return pack_into(out, &req.base);
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
    Ots__TableMeta meta = OTS__TABLE_META__INIT;
    meta.table_name = (char *)ct->table;
    meta.n_primary_key = ct->schema.pk_count;
    meta.primary_key = colp;
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
    return pack_into(out, &req.base);
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
    ots__describe_table_response__free_unpacked(d, NULL);
    if (same)
        return 0;
    char expected[SG_TS_PK_MAX_COLUMNS * (SG_TS_NAME_MAX_BYTES + 2) + 1] = "";
    size_t at = 0;
    for (size_t i = 0; i < schema->pk_count && at < sizeof(expected); i++)
        at += (size_t)snprintf(expected + at, sizeof(expected) - at, "%s%s", i ? ", " : "",
                               schema->pk[i].name);
    return sg_ts__fail(errstr, errstr_size, -EINVAL,
                       "table %s exists with another primary key; expected (%s)", table, expected);
}
