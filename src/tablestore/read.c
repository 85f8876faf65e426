/* GetRange and BatchGetRow bodies and answers (PROTOCOL.md section 2.4, BatchGetRow as the
 * official SDKs' protos have it): what a reader needs to read rows back. */
#include "streamgate/tablestore.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ots.pb-c.h"
#include "tablestore_internal.h"

static bool columns_ok(const char *const *columns, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!columns[i] || !sg_ts__name_ok(columns[i], strlen(columns[i])))
            return false;
    return true;
}

int sg_ts_get_range_build(struct sg_buf *out, const struct sg_ts_get_range *gr, char *errstr,
                          size_t errstr_size)
{
    if (!gr->table || !sg_ts__name_ok(gr->table, strlen(gr->table)))
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "invalid table name");
    if (gr->direction != SG_TS_FORWARD && gr->direction != SG_TS_BACKWARD)
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "bad direction");
    if (!gr->start || gr->start_len < 4 || !gr->end || gr->end_len < 4 || gr->limit < 0 ||
        !columns_ok(gr->columns, gr->column_count))
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "table %s: bad range, limit or columns",
                           gr->table);
    Ots__GetRangeRequest req = OTS__GET_RANGE_REQUEST__INIT;
    req.table_name = (char *)gr->table;
    req.direction =
        gr->direction == SG_TS_FORWARD ? OTS__DIRECTION__FORWARD : OTS__DIRECTION__BACKWARD;
    req.n_columns_to_get = gr->column_count;
    req.columns_to_get = (char **)gr->columns;
    req.has_max_versions = true;
    req.max_versions = 1;
    req.has_limit = gr->limit > 0;
    req.limit = gr->limit;
    req.inclusive_start_primary_key.data = (uint8_t *)gr->start;
    req.inclusive_start_primary_key.len = gr->start_len;
    req.exclusive_end_primary_key.data = (uint8_t *)gr->end;
    req.exclusive_end_primary_key.len = gr->end_len;
    return sg_ts__pack(out, &req.base);
}

int sg_ts_get_range_parse(const void *body, size_t len, struct sg_ts_range_result *out,
                          char *errstr, size_t errstr_size)
{
    memset(out, 0, sizeof(*out));
    Ots__GetRangeResponse *resp = ots__get_range_response__unpack(NULL, len, body);
    if (!resp)
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "not a GetRangeResponse");
    int rc = sg_ts_pb_decode(resp->rows.data, resp->rows.len, SG_TS_DECODE_MULTI, &out->rows,
                             errstr, errstr_size);
    if (rc != 0) {
        ots__get_range_response__free_unpacked(resp, NULL);
        return rc;
    }
    if (resp->has_next_start_primary_key && resp->next_start_primary_key.len > 0) {
        out->next_start = resp->next_start_primary_key.data;
        out->next_start_len = resp->next_start_primary_key.len;
    }
    out->msg = resp;
    return 0;
}

void sg_ts_range_result_free(struct sg_ts_range_result *res)
{
    if (!res)
        return;
    sg_ts_rows_free(&res->rows);
    if (res->msg)
        ots__get_range_response__free_unpacked(res->msg, NULL);
    memset(res, 0, sizeof(*res));
}

int sg_ts_batch_get_build(struct sg_buf *out, const char *table, const void *const *keys,
                          const size_t *key_lens, size_t count, const char *const *columns,
                          size_t column_count, char *errstr, size_t errstr_size)
{
    if (!table || !sg_ts__name_ok(table, strlen(table)))
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "invalid table name");
    if (count == 0 || count > SG_TS_BATCH_GET_MAX_ROWS || !columns_ok(columns, column_count))
        return sg_ts__fail(errstr, errstr_size, count ? -E2BIG : -EINVAL,
                           "table %s: 1 to %d rows a request, valid columns", table,
                           SG_TS_BATCH_GET_MAX_ROWS);
    ProtobufCBinaryData *pks = calloc(count, sizeof(*pks));
    if (!pks)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        pks[i].data = (uint8_t *)keys[i];
        pks[i].len = key_lens[i];
    }
    Ots__TableInBatchGetRowRequest t = OTS__TABLE_IN_BATCH_GET_ROW_REQUEST__INIT, *tp = &t;
    t.table_name = (char *)table;
    t.n_primary_key = count;
    t.primary_key = pks;
    t.n_columns_to_get = column_count;
    t.columns_to_get = (char **)columns;
    t.has_max_versions = true;
    t.max_versions = 1;
    Ots__BatchGetRowRequest req = OTS__BATCH_GET_ROW_REQUEST__INIT;
    req.n_tables = 1;
    req.tables = &tp;
    int rc = sg_ts__pack(out, &req.base);
    free(pks);
    return rc;
}

int sg_ts_batch_get_parse(const void *body, size_t len, struct sg_ts_batch_get_result *out,
                          char *errstr, size_t errstr_size)
{
    memset(out, 0, sizeof(*out));
    Ots__BatchGetRowResponse *resp = ots__batch_get_row_response__unpack(NULL, len, body);
    if (!resp || resp->n_tables != 1) {
        if (resp)
            ots__batch_get_row_response__free_unpacked(resp, NULL);
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "not a one-table BatchGetRowResponse");
    }
    const Ots__TableInBatchGetRowResponse *t = resp->tables[0];
    out->rows = calloc(t->n_rows ? t->n_rows : 1, sizeof(*out->rows));
    if (!out->rows) {
        ots__batch_get_row_response__free_unpacked(resp, NULL);
        return -ENOMEM;
    }
    out->msg = resp;
    out->row_count = t->n_rows;
    for (size_t i = 0; i < t->n_rows; i++) {
        const Ots__RowInBatchGetRowResponse *r = t->rows[i];
        struct sg_ts_batch_get_row *o = &out->rows[i];
        o->ok = r->is_ok;
        if (!r->is_ok) {
            o->error_code = r->error && r->error->code ? r->error->code : "";
            o->error_message = r->error && r->error->message ? r->error->message : "";
            continue;
        }
        if (!r->has_row || r->row.len == 0)
            continue; /* no such row */
        int rc = sg_ts_pb_decode(r->row.data, r->row.len, SG_TS_DECODE_SINGLE, &o->decoded, errstr,
                                 errstr_size);
        if (rc != 0) {
            sg_ts_batch_get_result_free(out);
            return rc;
        }
        o->found = true;
    }
    return 0;
}

void sg_ts_batch_get_result_free(struct sg_ts_batch_get_result *res)
{
    if (!res)
        return;
    for (size_t i = 0; res->rows && i < res->row_count; i++)
        sg_ts_rows_free(&res->rows[i].decoded);
    free(res->rows);
    if (res->msg)
        ots__batch_get_row_response__free_unpacked(res->msg, NULL);
    memset(res, 0, sizeof(*res));
}
