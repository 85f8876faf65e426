/* BatchWriteRow request bodies and responses (PROTOCOL.md sections 2.5 and 4.3). */
#include "streamgate/tablestore.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ots.pb-c.h"
#include "tablestore_internal.h"

static enum sg_ts_row_kind kind_of(enum sg_ts_write_type type)
{
    return type == SG_TS_WRITE_PUT      ? SG_TS_ROW_PUT
           : type == SG_TS_WRITE_UPDATE ? SG_TS_ROW_UPDATE
                                        : SG_TS_ROW_DELETE;
}

/* The PlainBuffer header every encoded row starts with: 0x75 as a little-endian u32. */
static const uint8_t pb_header[4] = {SG_TS__PB_HEADER, 0, 0, 0};

/* Checks a table's name and row count. */
static int check_table(const char *table, size_t write_count, bool has_writes, size_t t,
                       char *errstr, size_t errstr_size)
{
    if (table == NULL || !sg_ts__name_ok(table, strlen(table)))
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "table %zu: invalid name", t);
    if (write_count == 0 || !has_writes)
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "table %s: no rows", table);
    return 0;
}

/* Checks one write's type, condition and return type, and that it has its row. */
static int check_write(const char *table, size_t r, enum sg_ts_write_type type, bool has_row,
                       enum sg_ts_expect expect, enum sg_ts_return return_type, char *errstr,
                       size_t errstr_size)
{
    if (type < SG_TS_WRITE_PUT || type > SG_TS_WRITE_DELETE || !has_row)
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "table %s row %zu: bad type or no row",
                           table, r);
    if (expect < SG_TS_EXPECT_IGNORE || expect > SG_TS_EXPECT_NOT_EXIST ||
        return_type < SG_TS_RETURN_NONE || return_type > SG_TS_RETURN_AFTER_MODIFY)
        return sg_ts__fail(errstr, errstr_size, -EINVAL,
                           "table %s row %zu: bad condition or return type", table, r);
    return 0;
}

static int check_total(size_t total, char *errstr, size_t errstr_size)
{
    if (total > SG_TS_BATCH_MAX_ROWS)
        return sg_ts__fail(errstr, errstr_size, -E2BIG, "%zu rows exceed the limit of %d per batch",
                           total, SG_TS_BATCH_MAX_ROWS);
    return 0;
}

/* Checks the shape of the batch and counts its rows. */
static int check_batch(const struct sg_ts_table_writes *tables, size_t table_count,
                       size_t *row_count, char *errstr, size_t errstr_size)
{
    size_t total = 0;
    if (table_count == 0 || tables == NULL)
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "a batch needs at least one table");
    for (size_t t = 0; t < table_count; t++) {
        const struct sg_ts_table_writes *tw = &tables[t];
        int rc =
            check_table(tw->table, tw->write_count, tw->writes != NULL, t, errstr, errstr_size);
        for (size_t r = 0; rc == 0 && r < tw->write_count; r++) {
            const struct sg_ts_write *w = &tw->writes[r];
            rc = check_write(tw->table, r, w->type, w->row != NULL, w->expect, w->return_type,
                             errstr, errstr_size);
        }
        if (rc)
            return rc;
        total += tw->write_count;
    }
    *row_count = total;
    return check_total(total, errstr, errstr_size);
}

/* The same for a batch of encoded rows, each of which must start with the header. */
static int check_encoded_batch(const struct sg_ts_encoded_table_writes *tables, size_t table_count,
                               size_t *row_count, char *errstr, size_t errstr_size)
{
    size_t total = 0;
    if (table_count == 0 || tables == NULL)
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "a batch needs at least one table");
    for (size_t t = 0; t < table_count; t++) {
        const struct sg_ts_encoded_table_writes *tw = &tables[t];
        int rc =
            check_table(tw->table, tw->write_count, tw->writes != NULL, t, errstr, errstr_size);
        for (size_t r = 0; rc == 0 && r < tw->write_count; r++) {
            const struct sg_ts_encoded_write *w = &tw->writes[r];
            rc = check_write(tw->table, r, w->type, w->row != NULL, w->expect, w->return_type,
                             errstr, errstr_size);
            if (rc == 0 &&
                (w->row_len < sizeof(pb_header) || memcmp(w->row, pb_header, sizeof(pb_header))))
                rc = sg_ts__fail(errstr, errstr_size, -EINVAL,
                                 "table %s row %zu: not an encoded row (no PlainBuffer header)",
                                 tw->table, r);
        }
        if (rc)
            return rc;
        total += tw->write_count;
    }
    *row_count = total;
    return check_total(total, errstr, errstr_size);
}

/* Appends the BatchWriteRowRequest of a checked batch of encoded rows (`row_count` in all). The
 * messages point at the rows' bytes, which protobuf-c copies once, into `out`. */
static int pack_batch(struct sg_buf *out, const struct sg_ts_encoded_table_writes *tables,
                      size_t table_count, size_t row_count, char *errstr, size_t errstr_size)
{
    int rc;
    Ots__TableInBatchWriteRowRequest *tmsg = calloc(table_count, sizeof(*tmsg));
    Ots__TableInBatchWriteRowRequest **tptr = calloc(table_count, sizeof(*tptr));
    Ots__RowInBatchWriteRowRequest *rmsg = calloc(row_count, sizeof(*rmsg));
    Ots__RowInBatchWriteRowRequest **rptr = calloc(row_count, sizeof(*rptr));
    Ots__Condition *cond = calloc(row_count, sizeof(*cond));
    Ots__ReturnContent *ret = calloc(row_count, sizeof(*ret));
    if (!tmsg || !tptr || !rmsg || !rptr || !cond || !ret) {
        rc = sg_ts__fail(errstr, errstr_size, -ENOMEM, "out of memory");
        goto out;
    }

    size_t i = 0;
    for (size_t t = 0; t < table_count; t++) {
        const struct sg_ts_encoded_table_writes *tw = &tables[t];
        ots__table_in_batch_write_row_request__init(&tmsg[t]);
        tmsg[t].table_name = (char *)tw->table;
        tmsg[t].n_rows = tw->write_count;
        tmsg[t].rows = &rptr[i];
        tptr[t] = &tmsg[t];
        for (size_t r = 0; r < tw->write_count; r++, i++) {
            const struct sg_ts_encoded_write *w = &tw->writes[r];
            ots__row_in_batch_write_row_request__init(&rmsg[i]);
            rmsg[i].type = (Ots__OperationType)w->type;
            rmsg[i].row_change.data = (uint8_t *)w->row;
            rmsg[i].row_change.len = w->row_len;
            /* Always sent, although the JS SDK omits it when the caller gives none. */
            ots__condition__init(&cond[i]);
            cond[i].row_existence = (Ots__RowExistenceExpectation)w->expect;
            rmsg[i].condition = &cond[i];
            if (w->return_type != SG_TS_RETURN_NONE) {
                ots__return_content__init(&ret[i]);
                ret[i].has_return_type = 1;
                ret[i].return_type = (Ots__ReturnType)w->return_type;
                rmsg[i].return_content = &ret[i];
            }
            rptr[i] = &rmsg[i];
        }
    }
    Ots__BatchWriteRowRequest req = OTS__BATCH_WRITE_ROW_REQUEST__INIT;
    req.n_tables = table_count;
    req.tables = tptr;

    size_t size = ots__batch_write_row_request__get_packed_size(&req);
    if (size > SG_TS_REQUEST_MAX_BYTES) {
        rc = sg_ts__fail(errstr, errstr_size, -E2BIG, "batch of %zu bytes exceeds %d", size,
                         SG_TS_REQUEST_MAX_BYTES);
        goto out;
    }
    if ((rc = sg_buf_reserve(out, size))) {
        rc = sg_ts__fail(errstr, errstr_size, rc, "batch of %zu bytes does not fit the buffer",
                         size);
        goto out;
    }
    out->len += ots__batch_write_row_request__pack(&req, (uint8_t *)out->data + out->len);
    rc = 0;
out:
    free(ret);
    free(cond);
    free(rptr);
    free(rmsg);
    free(tptr);
    free(tmsg);
    return rc;
}

int sg_ts_bwr_build_encoded(struct sg_buf *out, const struct sg_ts_encoded_table_writes *tables,
                            size_t table_count, char *errstr, size_t errstr_size)
{
    size_t row_count = 0;
    int rc = check_encoded_batch(tables, table_count, &row_count, errstr, errstr_size);
    return rc ? rc : pack_batch(out, tables, table_count, row_count, errstr, errstr_size);
}

int sg_ts_bwr_build(struct sg_buf *out, const struct sg_ts_table_writes *tables, size_t table_count,
                    char *errstr, size_t errstr_size)
{
    size_t row_count = 0;
    int rc = check_batch(tables, table_count, &row_count, errstr, errstr_size);
    if (rc)
        return rc;

    /* Rows are encoded into one scratch buffer first, then packed as encoded rows pointing into
     * it once it has stopped moving. */
    struct sg_buf rows;
    sg_buf_init(&rows, SG_TS_REQUEST_MAX_BYTES);
    size_t *row_end = calloc(row_count, sizeof(*row_end));
    struct sg_ts_encoded_write *ew = calloc(row_count, sizeof(*ew));
    struct sg_ts_encoded_table_writes *et = calloc(table_count, sizeof(*et));
    if (!row_end || !ew || !et) {
        rc = sg_ts__fail(errstr, errstr_size, -ENOMEM, "out of memory");
        goto out;
    }

    size_t i = 0;
    for (size_t t = 0; t < table_count; t++) {
        const struct sg_ts_table_writes *tw = &tables[t];
        for (size_t r = 0; r < tw->write_count; r++, i++) {
            const struct sg_ts_write *w = &tw->writes[r];
            struct sg_ts_row row = *w->row;
            if (w->type == SG_TS_WRITE_DELETE) {
                row.attrs = NULL;
                row.attr_count = 0;
                row.delete_marker = false;
            }
            char why[160] = "";
            rc = sg_ts_pb_encode(&rows, kind_of(w->type), &row, why, sizeof(why));
            if (rc == -E2BIG) {
                rc = sg_ts__fail(errstr, errstr_size, rc, "batch exceeds %d bytes",
                                 SG_TS_REQUEST_MAX_BYTES);
                goto out;
            }
            if (rc) {
                rc =
                    sg_ts__fail(errstr, errstr_size, rc, "table %s row %zu: %s", tw->table, r, why);
                goto out;
            }
            row_end[i] = rows.len;
        }
    }

    i = 0;
    for (size_t t = 0; t < table_count; t++) {
        const struct sg_ts_table_writes *tw = &tables[t];
        et[t] = (struct sg_ts_encoded_table_writes){
            .table = tw->table, .writes = &ew[i], .write_count = tw->write_count};
        for (size_t r = 0; r < tw->write_count; r++, i++) {
            const struct sg_ts_write *w = &tw->writes[r];
            size_t start = i == 0 ? 0 : row_end[i - 1];
            ew[i] = (struct sg_ts_encoded_write){.type = w->type,
                                                 .row = rows.data + start,
                                                 .row_len = row_end[i] - start,
                                                 .expect = w->expect,
                                                 .return_type = w->return_type};
        }
    }
    rc = pack_batch(out, et, table_count, row_count, errstr, errstr_size);
out:
    free(et);
    free(ew);
    free(row_end);
    sg_buf_free(&rows);
    return rc;
}

int sg_ts_bwr_parse(const void *body, size_t len, struct sg_ts_bwr_result *out, char *errstr,
                    size_t errstr_size)
{
    memset(out, 0, sizeof(*out));
    if (body == NULL && len > 0)
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "NULL body");
    Ots__BatchWriteRowResponse *msg = ots__batch_write_row_response__unpack(NULL, len, body);
    if (msg == NULL)
        return sg_ts__fail(errstr, errstr_size, -EINVAL,
                           "body is not a BatchWriteRowResponse (malformed or missing fields)");
    out->msg = msg;
    size_t total = 0;
    for (size_t t = 0; t < msg->n_tables; t++)
        total += msg->tables[t]->n_rows;
    out->tables = calloc(msg->n_tables ? msg->n_tables : 1, sizeof(*out->tables));
    out->rows = calloc(total ? total : 1, sizeof(*out->rows));
    if (out->tables == NULL || out->rows == NULL) {
        sg_ts_bwr_result_free(out);
        return sg_ts__fail(errstr, errstr_size, -ENOMEM, "out of memory");
    }
    out->table_count = msg->n_tables;
    out->row_count = total;
    struct sg_ts_row_result *rows = out->rows;
    for (size_t t = 0; t < msg->n_tables; t++) {
        const Ots__TableInBatchWriteRowResponse *tm = msg->tables[t];
        struct sg_ts_table_result *tr = &out->tables[t];
        tr->table = tm->table_name;
        tr->rows = rows;
        tr->row_count = tm->n_rows;
        for (size_t r = 0; r < tm->n_rows; r++) {
            const Ots__RowInBatchWriteRowResponse *rm = tm->rows[r];
            struct sg_ts_row_result *res = &rows[r];
            res->ok = rm->is_ok;
            if (!res->ok) {
                /* A failed row without an error is malformed (the JS SDK throws on it); report
                 * it as failed with an empty code rather than lose the row. */
                res->error_code = rm->error && rm->error->code ? rm->error->code : "";
                res->error_message = rm->error && rm->error->message ? rm->error->message : "";
                out->failed_rows++;
            }
            if (rm->consumed != NULL && rm->consumed->capacity_unit != NULL) {
                res->read_cu = rm->consumed->capacity_unit->read;
                res->write_cu = rm->consumed->capacity_unit->write;
            }
            if (rm->has_row) {
                res->row = rm->row.data;
                res->row_len = rm->row.len;
            }
        }
        rows += tm->n_rows;
    }
    return 0;
}

void sg_ts_bwr_result_free(struct sg_ts_bwr_result *res)
{
    free(res->rows);
    free(res->tables);
    if (res->msg != NULL)
        ots__batch_write_row_response__free_unpacked(res->msg, NULL);
    memset(res, 0, sizeof(*res));
}
