/* BatchWriteRow bodies, responses and the protobuf messages against batchwriterow_body.json,
 * the captured request bodies and responses.json. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ots.pb-c.h"
#include "streamgate/common.h"
#include "streamgate/tablestore.h"
#include "vectors.h"

#define MAX_WRITES 8

/* A batch built from a "logical" object whose rows name plainbuffer_rows.json entries. */
struct batch {
    struct tv_row rows[MAX_WRITES];
    struct sg_ts_write writes[MAX_WRITES];
    struct sg_ts_table_writes tables[MAX_WRITES];
    size_t table_count;
};

static enum sg_ts_write_type write_type(const char *s)
{
    if (strcmp(s, "PUT") == 0)
        return SG_TS_WRITE_PUT;
    if (strcmp(s, "UPDATE") == 0)
        return SG_TS_WRITE_UPDATE;
    cr_assert_str_eq(s, "DELETE");
    return SG_TS_WRITE_DELETE;
}

static enum sg_ts_expect expect_of(const char *s)
{
    if (strcmp(s, "IGNORE") == 0)
        return SG_TS_EXPECT_IGNORE;
    if (strcmp(s, "EXPECT_EXIST") == 0)
        return SG_TS_EXPECT_EXIST;
    cr_assert_str_eq(s, "EXPECT_NOT_EXIST");
    return SG_TS_EXPECT_NOT_EXIST;
}

static void batch_from_json(const cJSON *logical, const cJSON *rows_doc, struct batch *b)
{
    memset(b, 0, sizeof(*b));
    const cJSON *table;
    size_t w = 0;
    cJSON_ArrayForEach(table, cJSON_GetObjectItemCaseSensitive(logical, "tables"))
    {
        struct sg_ts_table_writes *tw = &b->tables[b->table_count++];
        tw->table = tv_str(table, "table");
        tw->writes = &b->writes[w];
        const cJSON *row;
        cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(table, "rows"))
        {
            cr_assert_lt(w, MAX_WRITES);
            const cJSON *vec = tv_find_row(rows_doc, tv_str(row, "row"));
            tv_row_from_json(cJSON_GetObjectItemCaseSensitive(vec, "row"), &b->rows[w]);
            struct sg_ts_write *wr = &b->writes[w];
            wr->type = write_type(tv_str(row, "type"));
            wr->row = &b->rows[w].row;
            wr->expect = expect_of(tv_str(row, "condition"));
            const cJSON *rt = cJSON_GetObjectItemCaseSensitive(row, "returnType");
            if (rt != NULL) {
                cr_assert_str_eq(rt->valuestring, "RT_PK");
                wr->return_type = SG_TS_RETURN_PK;
            }
            tw->write_count++;
            w++;
        }
    }
}

static void assert_bytes(const struct sg_buf *got, const char *hex, const char *what)
{
    size_t len;
    uint8_t *want = tv_hex(hex, &len);
    cr_assert_eq(got->len, len, "%s: length %zu, want %zu", what, got->len, len);
    cr_assert(memcmp(got->data, want, len) == 0, "%s: bytes differ", what);
    free(want);
}

Test(tablestore_bwr, bodies_match_canonical_hex)
{
    cJSON *rows_doc = tv_load("plainbuffer_rows.json");
    cJSON *doc = tv_load("batchwriterow_body.json");
    const cJSON *body;
    int n = 0;
    cJSON_ArrayForEach(body, cJSON_GetObjectItemCaseSensitive(doc, "bodies"))
    {
        struct batch b;
        batch_from_json(cJSON_GetObjectItemCaseSensitive(body, "logical"), rows_doc, &b);
        struct sg_buf out;
        sg_buf_init(&out, 0);
        char err[256] = "";
        cr_assert_eq(sg_ts_bwr_build(&out, b.tables, b.table_count, err, sizeof(err)), 0, "%s",
                     err);
        assert_bytes(&out, tv_str(body, "canonical_hex"), tv_str(body, "id"));
        char md5[SG_TS_MD5_SIZE];
        cr_assert_eq(sg_ts_content_md5(out.data, out.len, md5), 0);
        cr_assert_str_eq(md5, tv_str(body, "canonical_md5_base64"));
        sg_buf_free(&out);
        n++;
    }
    cr_assert_eq(n, 3);
    cJSON_Delete(doc);
    cJSON_Delete(rows_doc);
}

Test(tablestore_bwr, captured_request_body)
{
    cJSON *rows_doc = tv_load("plainbuffer_rows.json");
    cJSON *doc = tv_load("http_batchwriterow.json");
    const cJSON *req = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "requests"), 0);
    struct batch b;
    batch_from_json(cJSON_GetObjectItemCaseSensitive(req, "logical"), rows_doc, &b);
    struct sg_buf out;
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_buf_append(&out, "prefix", 6), 0);
    cr_assert_eq(sg_ts_bwr_build(&out, b.tables, b.table_count, NULL, 0), 0);
    /* Appends after what the buffer held. */
    cr_assert(memcmp(out.data, "prefix", 6) == 0);
    sg_buf_consume(&out, 6);
    assert_bytes(&out, tv_str(req, "body_hex"), "BatchWriteRow");
    sg_buf_free(&out);
    cJSON_Delete(doc);
    cJSON_Delete(rows_doc);
}

/* Each row of a batch encoded on its own, as a writer that holds rows encoded keeps it (one
 * allocation of exactly its size, so a read past it is a sanitizer report). */
struct encoded_batch {
    struct sg_ts_encoded_write writes[MAX_WRITES];
    struct sg_ts_encoded_table_writes tables[MAX_WRITES];
    uint8_t *rows[MAX_WRITES];
};

static void encode_batch(const struct batch *b, struct encoded_batch *e)
{
    memset(e, 0, sizeof(*e));
    size_t w = 0;
    for (size_t t = 0; t < b->table_count; t++) {
        const struct sg_ts_table_writes *tw = &b->tables[t];
        e->tables[t] = (struct sg_ts_encoded_table_writes){
            .table = tw->table, .writes = &e->writes[w], .write_count = tw->write_count};
        for (size_t r = 0; r < tw->write_count; r++, w++) {
            const struct sg_ts_write *wr = &tw->writes[r];
            struct sg_ts_row row = *wr->row;
            enum sg_ts_row_kind kind = SG_TS_ROW_PUT;
            if (wr->type == SG_TS_WRITE_UPDATE)
                kind = SG_TS_ROW_UPDATE;
            if (wr->type == SG_TS_WRITE_DELETE) {
                kind = SG_TS_ROW_DELETE;
                row.attrs = NULL;
                row.attr_count = 0;
            }
            struct sg_buf enc;
            sg_buf_init(&enc, 0);
            char err[256] = "";
            cr_assert_eq(sg_ts_pb_encode(&enc, kind, &row, err, sizeof(err)), 0, "%s", err);
            e->rows[w] = malloc(enc.len);
            cr_assert_not_null(e->rows[w]);
            memcpy(e->rows[w], enc.data, enc.len);
            e->writes[w] = (struct sg_ts_encoded_write){.type = wr->type,
                                                        .row = e->rows[w],
                                                        .row_len = enc.len,
                                                        .expect = wr->expect,
                                                        .return_type = wr->return_type};
            sg_buf_free(&enc);
        }
    }
}

static void encoded_batch_free(struct encoded_batch *e)
{
    for (size_t i = 0; i < MAX_WRITES; i++)
        free(e->rows[i]);
}

/* Rows encoded first, then assembled into a request, give the very bytes the SDKs sent and that
 * sg_ts_bwr_build gives from the rows: PUT, UPDATE and DELETE rows, several tables, conditions
 * and a return type. */
Test(tablestore_bwr, encoded_rows_give_the_same_bodies)
{
    cJSON *rows_doc = tv_load("plainbuffer_rows.json");
    cJSON *bodies = tv_load("batchwriterow_body.json");
    cJSON *http = tv_load("http_batchwriterow.json");
    const cJSON *lists[2] = {cJSON_GetObjectItemCaseSensitive(bodies, "bodies"),
                             cJSON_GetObjectItemCaseSensitive(http, "requests")};
    const char *hex_names[2] = {"canonical_hex", "body_hex"};
    int n = 0;
    for (int l = 0; l < 2; l++) {
        const cJSON *body;
        cJSON_ArrayForEach(body, lists[l])
        {
            struct batch b;
            struct encoded_batch e;
            batch_from_json(cJSON_GetObjectItemCaseSensitive(body, "logical"), rows_doc, &b);
            encode_batch(&b, &e);
            struct sg_buf from_rows, from_encoded;
            sg_buf_init(&from_rows, 0);
            sg_buf_init(&from_encoded, 0);
            char err[256] = "";
            cr_assert_eq(sg_ts_bwr_build(&from_rows, b.tables, b.table_count, err, sizeof(err)), 0,
                         "%s", err);
            cr_assert_eq(sg_buf_append(&from_encoded, "prefix", 6), 0);
            cr_assert_eq(
                sg_ts_bwr_build_encoded(&from_encoded, e.tables, b.table_count, err, sizeof(err)),
                0, "%s", err);
            cr_assert(memcmp(from_encoded.data, "prefix", 6) == 0, "appends after what it held");
            sg_buf_consume(&from_encoded, 6);
            const char *id = cJSON_GetObjectItemCaseSensitive(body, "id") ? tv_str(body, "id")
                                                                          : "captured request";
            assert_bytes(&from_encoded, tv_str(body, hex_names[l]), id);
            cr_assert_eq(from_rows.len, from_encoded.len, "%s", id);
            cr_assert(memcmp(from_rows.data, from_encoded.data, from_rows.len) == 0, "%s", id);
            sg_buf_free(&from_rows);
            sg_buf_free(&from_encoded);
            encoded_batch_free(&e);
            n++;
        }
    }
    cr_assert_eq(n, 4);
    cJSON_Delete(http);
    cJSON_Delete(bodies);
    cJSON_Delete(rows_doc);
}

Test(tablestore_bwr, build_encoded_rejects_bad_batches)
{
    struct sg_ts_column pk = sg_ts_col("id", sg_ts_int(1));
    struct sg_ts_column attr = sg_ts_col("v", sg_ts_int(2));
    struct sg_ts_row row = {.pk = &pk, .pk_count = 1, .attrs = &attr, .attr_count = 1};
    struct sg_buf enc, out;
    sg_buf_init(&enc, 0);
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_ts_pb_encode(&enc, SG_TS_ROW_PUT, &row, NULL, 0), 0);
    static struct sg_ts_encoded_write writes[SG_TS_BATCH_MAX_ROWS + 1];
    for (size_t i = 0; i < SG_ARRAY_SIZE(writes); i++)
        writes[i] = (struct sg_ts_encoded_write){
            .type = SG_TS_WRITE_PUT, .row = enc.data, .row_len = enc.len};
    struct sg_ts_encoded_table_writes t = {.table = "t1", .writes = writes, .write_count = 201};
    char err[256] = "";

    cr_assert_eq(sg_ts_bwr_build_encoded(&out, &t, 1, err, sizeof(err)), -E2BIG);
    cr_assert(strstr(err, "200") != NULL, "%s", err);
    t.write_count = 200;
    cr_assert_eq(sg_ts_bwr_build_encoded(&out, &t, 1, err, sizeof(err)), 0, "%s", err);
    cr_assert_gt(out.len, 200 * enc.len);
    sg_buf_reset(&out);

    cr_assert_eq(sg_ts_bwr_build_encoded(&out, &t, 0, err, sizeof(err)), -EINVAL);
    t.table = "bad-name";
    cr_assert_eq(sg_ts_bwr_build_encoded(&out, &t, 1, err, sizeof(err)), -EINVAL);
    t.table = "t1";
    t.write_count = 1;
    writes[0].row = NULL;
    cr_assert_eq(sg_ts_bwr_build_encoded(&out, &t, 1, err, sizeof(err)), -EINVAL);
    /* A row without its header (as sg_ts_pb_append_row writes it) is not taken. */
    writes[0].row = enc.data + 4;
    writes[0].row_len = enc.len - 4;
    cr_assert_eq(sg_ts_bwr_build_encoded(&out, &t, 1, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "table t1 row 0") != NULL, "%s", err);
    writes[0].row = enc.data;
    writes[0].row_len = 3;
    cr_assert_eq(sg_ts_bwr_build_encoded(&out, &t, 1, err, sizeof(err)), -EINVAL);
    writes[0].row_len = enc.len;
    writes[0].expect = (enum sg_ts_expect)3;
    cr_assert_eq(sg_ts_bwr_build_encoded(&out, &t, 1, err, sizeof(err)), -EINVAL);
    writes[0].expect = SG_TS_EXPECT_IGNORE;
    cr_assert_eq(out.len, 0, "nothing appended on failure");
    sg_buf_free(&out);

    /* The caller's cap is honoured. */
    sg_buf_init(&out, 10);
    cr_assert_eq(sg_ts_bwr_build_encoded(&out, &t, 1, err, sizeof(err)), -E2BIG);
    cr_assert_eq(out.len, 0);
    sg_buf_free(&out);
    sg_buf_free(&enc);
}

/* The JS SDK's body (with zero-padded row_change) parses, and every row decodes to its row. */
Test(tablestore_bwr, sdk_body_with_padding_parses)
{
    cJSON *rows_doc = tv_load("plainbuffer_rows.json");
    cJSON *doc = tv_load("batchwriterow_body.json");
    const cJSON *body;
    cJSON_ArrayForEach(body, cJSON_GetObjectItemCaseSensitive(doc, "bodies"))
    {
        const cJSON *hex = cJSON_GetObjectItemCaseSensitive(body, "sdk_hex");
        if (hex == NULL)
            hex = cJSON_GetObjectItemCaseSensitive(body, "canonical_hex");
        struct batch b;
        batch_from_json(cJSON_GetObjectItemCaseSensitive(body, "logical"), rows_doc, &b);
        size_t len;
        uint8_t *bytes = tv_hex(hex->valuestring, &len);
        Ots__BatchWriteRowRequest *req = ots__batch_write_row_request__unpack(NULL, len, bytes);
        cr_assert_not_null(req);
        cr_assert_eq(req->n_tables, b.table_count);
        for (size_t t = 0; t < req->n_tables; t++) {
            cr_assert_str_eq(req->tables[t]->table_name, b.tables[t].table);
            cr_assert_eq(req->tables[t]->n_rows, b.tables[t].write_count);
            for (size_t r = 0; r < req->tables[t]->n_rows; r++) {
                const Ots__RowInBatchWriteRowRequest *rm = req->tables[t]->rows[r];
                const struct sg_ts_write *w = &b.tables[t].writes[r];
                cr_assert_eq((int)rm->type, (int)w->type);
                cr_assert_not_null(rm->condition);
                cr_assert_eq((int)rm->condition->row_existence, (int)w->expect);
                cr_assert_eq(rm->return_content != NULL, w->return_type != SG_TS_RETURN_NONE);
                struct sg_ts_rows rows;
                char err[256] = "";
                cr_assert_eq(sg_ts_pb_decode(rm->row_change.data, rm->row_change.len,
                                             SG_TS_DECODE_SINGLE, &rows, err, sizeof(err)),
                             0, "%s", err);
                tv_assert_rows_equal(&rows.rows[0], w->row);
                sg_ts_rows_free(&rows);
            }
        }
        ots__batch_write_row_request__free_unpacked(req, NULL);
        free(bytes);
    }
    cJSON_Delete(doc);
    cJSON_Delete(rows_doc);
}

Test(tablestore_bwr, build_rejects_bad_batches)
{
    struct sg_ts_column pk = sg_ts_col("id", sg_ts_int(1));
    struct sg_ts_column attr = sg_ts_col("v", sg_ts_int(2));
    struct sg_ts_row row = {.pk = &pk, .pk_count = 1, .attrs = &attr, .attr_count = 1};
    static struct sg_ts_write writes[SG_TS_BATCH_MAX_ROWS + 1];
    for (size_t i = 0; i < SG_ARRAY_SIZE(writes); i++)
        writes[i] = (struct sg_ts_write){.type = SG_TS_WRITE_PUT, .row = &row};
    struct sg_ts_table_writes t = {.table = "t1", .writes = writes, .write_count = 201};
    struct sg_buf out;
    sg_buf_init(&out, 0);
    char err[256] = "";

    cr_assert_eq(sg_ts_bwr_build(&out, &t, 1, err, sizeof(err)), -E2BIG);
    cr_assert(strstr(err, "200") != NULL, "%s", err);
    t.write_count = 200;
    cr_assert_eq(sg_ts_bwr_build(&out, &t, 1, err, sizeof(err)), 0, "%s", err);
    cr_assert_gt(out.len, 200 * 40);
    sg_buf_reset(&out);

    cr_assert_eq(sg_ts_bwr_build(&out, &t, 0, err, sizeof(err)), -EINVAL);
    t.write_count = 0;
    cr_assert_eq(sg_ts_bwr_build(&out, &t, 1, err, sizeof(err)), -EINVAL);
    t.write_count = 1;
    t.table = "bad-name";
    cr_assert_eq(sg_ts_bwr_build(&out, &t, 1, err, sizeof(err)), -EINVAL);
    t.table = "t1";
    writes[0].type = (enum sg_ts_write_type)4;
    cr_assert_eq(sg_ts_bwr_build(&out, &t, 1, err, sizeof(err)), -EINVAL);
    writes[0].type = SG_TS_WRITE_PUT;
    writes[0].expect = (enum sg_ts_expect)3;
    cr_assert_eq(sg_ts_bwr_build(&out, &t, 1, err, sizeof(err)), -EINVAL);
    writes[0].expect = SG_TS_EXPECT_IGNORE;
    /* An invalid row names its table and position. */
    attr.value = sg_ts_special(SG_TS_INF_MIN);
    cr_assert_eq(sg_ts_bwr_build(&out, &t, 1, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "table t1 row 0") != NULL, "%s", err);
    attr.value = sg_ts_int(2);
    cr_assert_eq(out.len, 0, "nothing appended on failure");

    /* Over 4 MB in total. */
    size_t big = SG_TS_ATTR_VALUE_MAX_BYTES;
    char *blob = calloc(1, big);
    struct sg_ts_column battr = sg_ts_col("b", sg_ts_blob(blob, big));
    struct sg_ts_row brow = {.pk = &pk, .pk_count = 1, .attrs = &battr, .attr_count = 1};
    struct sg_ts_write bw[2] = {{.type = SG_TS_WRITE_PUT, .row = &brow},
                                {.type = SG_TS_WRITE_PUT, .row = &brow}};
    struct sg_ts_table_writes bt = {.table = "t1", .writes = bw, .write_count = 2};
    cr_assert_eq(sg_ts_bwr_build(&out, &bt, 1, err, sizeof(err)), -E2BIG);
    bt.write_count = 1;
    cr_assert_eq(sg_ts_bwr_build(&out, &bt, 1, err, sizeof(err)), 0);
    free(blob);
    sg_buf_free(&out);

    /* The caller's cap is honoured. */
    sg_buf_init(&out, 10);
    t.write_count = 1;
    cr_assert_eq(sg_ts_bwr_build(&out, &t, 1, err, sizeof(err)), -E2BIG);
    cr_assert_eq(out.len, 0);
    sg_buf_free(&out);
}

Test(tablestore_bwr, delete_uses_primary_key_only)
{
    struct sg_ts_column pk = sg_ts_col("id", sg_ts_int(7));
    struct sg_ts_column attr = sg_ts_col("v", sg_ts_int(2));
    struct sg_ts_row row = {.pk = &pk, .pk_count = 1, .attrs = &attr, .attr_count = 1};
    struct sg_ts_write w = {.type = SG_TS_WRITE_DELETE, .row = &row};
    struct sg_ts_table_writes t = {.table = "t", .writes = &w, .write_count = 1};
    struct sg_buf out;
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_ts_bwr_build(&out, &t, 1, NULL, 0), 0);
    Ots__BatchWriteRowRequest *req =
        ots__batch_write_row_request__unpack(NULL, out.len, (uint8_t *)out.data);
    cr_assert_not_null(req);
    const Ots__RowInBatchWriteRowRequest *rm = req->tables[0]->rows[0];
    cr_assert_eq(rm->type, OTS__OPERATION_TYPE__DELETE);
    cr_assert_eq(rm->condition->row_existence, OTS__ROW_EXISTENCE_EXPECTATION__IGNORE);
    cr_assert_null(rm->return_content);
    struct sg_ts_rows rows;
    cr_assert_eq(sg_ts_pb_decode(rm->row_change.data, rm->row_change.len, SG_TS_DECODE_SINGLE,
                                 &rows, NULL, 0),
                 0);
    cr_assert(rows.rows[0].delete_marker);
    cr_assert_eq(rows.rows[0].attr_count, 0);
    cr_assert_eq(rows.rows[0].pk[0].value.i, 7);
    sg_ts_rows_free(&rows);
    ots__batch_write_row_request__free_unpacked(req, NULL);
    sg_buf_free(&out);
}

/* ---- Responses ----------------------------------------------------------------------------- */

static const cJSON *find_response(const cJSON *doc, const char *name)
{
    const cJSON *resp;
    cJSON_ArrayForEach(resp, cJSON_GetObjectItemCaseSensitive(doc, "responses"))
    {
        if (strcmp(tv_str(resp, "name"), name) == 0)
            return resp;
    }
    cr_assert_fail("no response %s", name);
    return NULL;
}

Test(tablestore_bwr, response_with_failed_row)
{
    cJSON *doc = tv_load("responses.json");
    const cJSON *resp = find_response(doc, "BatchWriteRow");
    size_t len;
    uint8_t *body = tv_hex(tv_str(resp, "body_hex"), &len);
    struct sg_ts_bwr_result res;
    char err[256] = "";
    cr_assert_eq(sg_ts_bwr_parse(body, len, &res, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(res.table_count, 2);
    cr_assert_eq(res.row_count, 3);
    cr_assert_eq(res.failed_rows, 1);

    cr_assert_str_eq(res.tables[0].table, "t1");
    cr_assert_eq(res.tables[0].row_count, 2);
    const struct sg_ts_row_result *r0 = &res.tables[0].rows[0];
    cr_assert(r0->ok);
    cr_assert_null(r0->error_code);
    cr_assert_eq(r0->read_cu, 0);
    cr_assert_eq(r0->write_cu, 1);
    /* RT_PK: the row's primary key comes back as PlainBuffer (id = "k"). */
    cr_assert_not_null(r0->row);
    struct sg_ts_rows rows;
    cr_assert_eq(sg_ts_pb_decode(r0->row, r0->row_len, SG_TS_DECODE_SINGLE, &rows, NULL, 0), 0);
    cr_assert_eq(rows.rows[0].pk_count, 1);
    cr_assert_eq(rows.rows[0].pk[0].value.type, SG_TS_STRING);
    cr_assert_eq(rows.rows[0].pk[0].value.bytes.len, 1);
    cr_assert_eq(*(const char *)rows.rows[0].pk[0].value.bytes.ptr, 'k');
    sg_ts_rows_free(&rows);

    const struct sg_ts_row_result *r1 = &res.tables[0].rows[1];
    cr_assert_not(r1->ok);
    cr_assert_str_eq(r1->error_code, "OTSConditionCheckFail");
    cr_assert_str_eq(r1->error_message, "Condition check failed.");
    cr_assert_null(r1->row);
    cr_assert_eq(sg_ts_error_classify(0, r1->error_code, r1->error_message), SG_TS_RETRY_NEVER);

    cr_assert_str_eq(res.tables[1].table, "t2");
    cr_assert_eq(res.tables[1].row_count, 1);
    cr_assert(res.tables[1].rows[0].ok);
    cr_assert_eq(res.tables[1].rows[0].write_cu, 1);
    cr_assert_null(res.tables[1].rows[0].row);
    /* The flat list is in request order. */
    cr_assert_eq(&res.rows[2], &res.tables[1].rows[0]);
    sg_ts_bwr_result_free(&res);
    sg_ts_bwr_result_free(&res);
    free(body);
    cJSON_Delete(doc);
}

Test(tablestore_bwr, response_edge_cases)
{
    struct sg_ts_bwr_result res;
    char err[256] = "";
    /* An empty body is a response with no tables. */
    cr_assert_eq(sg_ts_bwr_parse("", 0, &res, err, sizeof(err)), 0);
    cr_assert_eq(res.table_count, 0);
    cr_assert_eq(res.row_count, 0);
    sg_ts_bwr_result_free(&res);

    /* A failed row without an error is still reported as failed. */
    Ots__RowInBatchWriteRowResponse row = OTS__ROW_IN_BATCH_WRITE_ROW_RESPONSE__INIT;
    Ots__RowInBatchWriteRowResponse *rowp = &row;
    Ots__TableInBatchWriteRowResponse table = OTS__TABLE_IN_BATCH_WRITE_ROW_RESPONSE__INIT;
    table.table_name = "t";
    table.n_rows = 1;
    table.rows = &rowp;
    Ots__TableInBatchWriteRowResponse *tablep = &table;
    Ots__BatchWriteRowResponse msg = OTS__BATCH_WRITE_ROW_RESPONSE__INIT;
    msg.n_tables = 1;
    msg.tables = &tablep;
    uint8_t buf[64];
    size_t len = ots__batch_write_row_response__pack(&msg, buf);
    cr_assert_eq(sg_ts_bwr_parse(buf, len, &res, err, sizeof(err)), 0, "%s", err);
    cr_assert_not(res.rows[0].ok);
    cr_assert_str_eq(res.rows[0].error_code, "");
    cr_assert_str_eq(res.rows[0].error_message, "");
    cr_assert_eq(res.failed_rows, 1);
    sg_ts_bwr_result_free(&res);

    /* Malformed bodies: garbage, truncation, a row missing the required is_ok. */
    cr_assert_eq(sg_ts_bwr_parse("\xff\xff\xff", 3, &res, err, sizeof(err)), -EINVAL);
    cr_assert_neq(err[0], '\0');
    cr_assert_eq(sg_ts_bwr_parse(buf, len - 1, &res, NULL, 0), -EINVAL);
    const uint8_t no_is_ok[] = {0x0a, 0x05, 0x0a, 0x01, 't', 0x12, 0x00};
    cr_assert_eq(sg_ts_bwr_parse(no_is_ok, sizeof(no_is_ok), &res, NULL, 0), -EINVAL);
    cr_assert_null(res.tables);
    cr_assert_eq(sg_ts_bwr_parse(NULL, 1, &res, NULL, 0), -EINVAL);
}

Test(tablestore_errors, error_bodies)
{
    cJSON *doc = tv_load("responses.json");
    const cJSON *resp;
    int n = 0;
    cJSON_ArrayForEach(resp, cJSON_GetObjectItemCaseSensitive(doc, "responses"))
    {
        if (strcmp(tv_str(resp, "message_type"), "Error") != 0)
            continue;
        size_t len;
        uint8_t *body = tv_hex(tv_str(resp, "body_hex"), &len);
        const cJSON *logical = cJSON_GetObjectItemCaseSensitive(resp, "body_logical");
        char code[64], message[128];
        cr_assert_eq(sg_ts_error_parse(body, len, code, sizeof(code), message, sizeof(message)), 0);
        cr_assert_str_eq(code, tv_str(logical, "code"));
        cr_assert_str_eq(message, tv_str(logical, "message"));
        int status = cJSON_GetObjectItemCaseSensitive(resp, "http_status")->valueint;
        cr_assert_eq(sg_ts_error_http_status(code), status, "%s", code);

        /* The emulator's encoder gives the same bytes back. */
        struct sg_buf out;
        sg_buf_init(&out, 0);
        cr_assert_eq(sg_ts_error_build(&out, code, message), 0);
        cr_assert_eq(out.len, len);
        cr_assert(memcmp(out.data, body, len) == 0);
        sg_buf_free(&out);

        /* Truncated to fit small buffers, always terminated. */
        char small[6];
        cr_assert_eq(sg_ts_error_parse(body, len, small, sizeof(small), NULL, 0), 0);
        cr_assert_eq(strlen(small), 5);
        cr_assert(strncmp(small, code, 5) == 0);
        free(body);
        n++;
    }
    cr_assert_eq(n, 4);

    char code[64] = "x", message[64] = "y";
    cr_assert_eq(sg_ts_error_parse("", 0, code, sizeof(code), message, sizeof(message)), -EINVAL,
                 "an Error needs a code");
    cr_assert_str_eq(code, "");
    cr_assert_str_eq(message, "");
    cr_assert_eq(sg_ts_error_parse("\x0a\x10", 2, code, sizeof(code), NULL, 0), -EINVAL);
    /* A message is optional. */
    struct sg_buf out;
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_ts_error_build(&out, "OTSServerBusy", NULL), 0);
    cr_assert_eq(sg_ts_error_parse(out.data, out.len, code, sizeof(code), message, sizeof(message)),
                 0);
    cr_assert_str_eq(code, "OTSServerBusy");
    cr_assert_str_eq(message, "");
    cr_assert_eq(sg_ts_error_build(&out, NULL, "m"), -EINVAL);
    sg_buf_free(&out);
    cJSON_Delete(doc);
}

/* ---- Every captured message against ots.proto ---------------------------------------------- */

static const ProtobufCMessageDescriptor *descriptor(const char *type)
{
    static const struct {
        const char *name;
        const ProtobufCMessageDescriptor *desc;
    } table[] = {
        {"PutRowRequest", &ots__put_row_request__descriptor},
        {"PutRowResponse", &ots__put_row_response__descriptor},
        {"UpdateRowRequest", &ots__update_row_request__descriptor},
        {"UpdateRowResponse", &ots__update_row_response__descriptor},
        {"DeleteRowRequest", &ots__delete_row_request__descriptor},
        {"DeleteRowResponse", &ots__delete_row_response__descriptor},
        {"GetRowRequest", &ots__get_row_request__descriptor},
        {"GetRowResponse", &ots__get_row_response__descriptor},
        {"GetRangeRequest", &ots__get_range_request__descriptor},
        {"GetRangeResponse", &ots__get_range_response__descriptor},
        {"CreateTableRequest", &ots__create_table_request__descriptor},
        {"CreateTableResponse", &ots__create_table_response__descriptor},
        {"DeleteTableRequest", &ots__delete_table_request__descriptor},
        {"DeleteTableResponse", &ots__delete_table_response__descriptor},
        {"ListTableRequest", &ots__list_table_request__descriptor},
        {"ListTableResponse", &ots__list_table_response__descriptor},
        {"DescribeTableRequest", &ots__describe_table_request__descriptor},
        {"DescribeTableResponse", &ots__describe_table_response__descriptor},
        {"BatchWriteRowRequest", &ots__batch_write_row_request__descriptor},
        {"BatchWriteRowResponse", &ots__batch_write_row_response__descriptor},
        {"Error", &ots__error__descriptor},
    };
    for (size_t i = 0; i < SG_ARRAY_SIZE(table); i++)
        if (strcmp(table[i].name, type) == 0)
            return table[i].desc;
    cr_assert_fail("no message %s", type);
    return NULL;
}

/* Parses with the generated code and checks that packing gives the same bytes back, which
 * holds only if every field number and type in ots.proto matches the SDKs'. */
static void check_round_trip(const char *type, const char *hex, const char *what)
{
    size_t len;
    uint8_t *bytes = tv_hex(hex, &len);
    const ProtobufCMessageDescriptor *desc = descriptor(type);
    ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, len, bytes);
    cr_assert_not_null(msg, "%s does not parse as %s", what, type);
    size_t size = protobuf_c_message_get_packed_size(msg);
    cr_assert_eq(size, len, "%s: repacked %zu bytes, want %zu", what, size, len);
    uint8_t *again = malloc(size ? size : 1);
    protobuf_c_message_pack(msg, again);
    cr_assert(memcmp(again, bytes, len) == 0, "%s: repacked bytes differ", what);
    free(again);
    protobuf_c_message_free_unpacked(msg, NULL);
    free(bytes);
}

Test(tablestore_proto, captured_requests_round_trip)
{
    cJSON *doc = tv_load("http_other_operations.json");
    const cJSON *req;
    int n = 0;
    cJSON_ArrayForEach(req, cJSON_GetObjectItemCaseSensitive(doc, "requests"))
    {
        char type[64];
        snprintf(type, sizeof(type), "%sRequest", tv_str(req, "operation"));
        check_round_trip(type, tv_str(req, "body_hex"), tv_str(req, "name"));
        n++;
    }
    cr_assert_eq(n, 11);
    cJSON_Delete(doc);
    doc = tv_load("http_batchwriterow.json");
    req = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "requests"), 0);
    check_round_trip("BatchWriteRowRequest", tv_str(req, "body_hex"), "BatchWriteRow");
    cJSON_Delete(doc);
}

Test(tablestore_proto, responses_round_trip)
{
    cJSON *doc = tv_load("responses.json");
    const cJSON *resp;
    int n = 0;
    cJSON_ArrayForEach(resp, cJSON_GetObjectItemCaseSensitive(doc, "responses"))
    {
        check_round_trip(tv_str(resp, "message_type"), tv_str(resp, "body_hex"),
                         tv_str(resp, "name"));
        n++;
    }
    cr_assert_eq(n, 16);
    cJSON_Delete(doc);
}

Test(tablestore_proto, get_range_pages_decode)
{
    cJSON *doc = tv_load("responses.json");
    size_t len;
    uint8_t *body = tv_hex(tv_str(find_response(doc, "GetRange"), "body_hex"), &len);
    Ots__GetRangeResponse *resp = ots__get_range_response__unpack(NULL, len, body);
    cr_assert_not_null(resp);
    struct sg_ts_rows rows;
    char err[256] = "";
    cr_assert_eq(sg_ts_pb_decode(resp->rows.data, resp->rows.len, SG_TS_DECODE_MULTI, &rows, err,
                                 sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(rows.row_count, 2);
    cr_assert_eq(rows.rows[0].pk[0].value.i, 1);
    cr_assert_eq(rows.rows[0].attr_count, 2);
    cr_assert(rows.rows[0].attrs[0].has_ts);
    cr_assert_eq(rows.rows[0].attrs[0].ts, INT64_C(1714979289123));
    cr_assert_eq(rows.rows[0].attrs[1].value.type, SG_TS_DOUBLE);
    cr_assert(rows.rows[0].attrs[1].value.d == 9.5);
    cr_assert_eq(rows.rows[1].pk[0].value.i, 2);
    cr_assert_eq(rows.rows[1].attrs[0].value.bytes.len, 3);
    cr_assert(memcmp(rows.rows[1].attrs[0].value.bytes.ptr, "def", 3) == 0);
    cr_assert_eq(sg_ts_row_validate(SG_TS_ROW_PUT, &rows.rows[1], NULL, 0), 0);
    sg_ts_rows_free(&rows);
    cr_assert(resp->has_next_start_primary_key);
    cr_assert_eq(sg_ts_pb_decode(resp->next_start_primary_key.data,
                                 resp->next_start_primary_key.len, SG_TS_DECODE_SINGLE, &rows, NULL,
                                 0),
                 0);
    cr_assert_eq(rows.rows[0].pk[0].value.i, 3);
    sg_ts_rows_free(&rows);
    ots__get_range_response__free_unpacked(resp, NULL);
    free(body);

    /* The last page: zero-length rows, no next key. */
    body = tv_hex(tv_str(find_response(doc, "GetRange_last_page"), "body_hex"), &len);
    resp = ots__get_range_response__unpack(NULL, len, body);
    cr_assert_not_null(resp);
    cr_assert_eq(resp->rows.len, 0);
    cr_assert_not(resp->has_next_start_primary_key);
    cr_assert_eq(
        sg_ts_pb_decode(resp->rows.data, resp->rows.len, SG_TS_DECODE_MULTI, &rows, NULL, 0), 0);
    cr_assert_eq(rows.row_count, 0);
    ots__get_range_response__free_unpacked(resp, NULL);
    free(body);
    cJSON_Delete(doc);
}

Test(tablestore_proto, describe_table_status)
{
    cJSON *doc = tv_load("responses.json");
    size_t len;
    uint8_t *body = tv_hex(tv_str(find_response(doc, "DescribeTable"), "body_hex"), &len);
    Ots__DescribeTableResponse *resp = ots__describe_table_response__unpack(NULL, len, body);
    cr_assert_not_null(resp);
    cr_assert_str_eq(resp->table_meta->table_name, "t1");
    cr_assert_eq(resp->table_meta->n_primary_key, 2);
    cr_assert_eq(resp->table_meta->primary_key[1]->type, OTS__PRIMARY_KEY_TYPE__STRING);
    cr_assert(resp->has_table_status);
    cr_assert_eq(resp->table_status, OTS__TABLE_STATUS__ACTIVE);
    cr_assert_eq(resp->table_options->time_to_live, -1);
    cr_assert_eq(resp->reserved_throughput_details->last_increase_time, 1714979289);
    ots__describe_table_response__free_unpacked(resp, NULL);
    free(body);
    cJSON_Delete(doc);
}
