/* GetRange and BatchGetRow: request bodies as the official SDK sends them
 * (http_other_operations.json, http_index_operations.json), and answers read back. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ots.pb-c.h"
#include "streamgate/common.h"
#include "streamgate/tablestore.h"
#include "vectors.h"

static const cJSON *find_request(const cJSON *doc, const char *name)
{
    const cJSON *req;
    cJSON_ArrayForEach(req, cJSON_GetObjectItemCaseSensitive(doc, "requests"))
    {
        if (strcmp(tv_str(req, "name"), name) == 0)
            return req;
    }
    cr_assert_fail("no request %s", name);
    return NULL;
}

/* Encodes a primary key bound of up to two columns. */
static void encode_pk(struct sg_buf *b, const struct sg_ts_column *cols, size_t n)
{
    struct sg_ts_row row = {.pk = cols, .pk_count = n};
    sg_buf_reset(b);
    cr_assert_eq(sg_ts_pb_encode(b, SG_TS_ROW_PK, &row, NULL, 0), 0);
}

/* The same request as the SDK's: every field equal, the key bounds byte for byte but for the
 * zero padding the JS SDK appends to them (PROTOCOL.md section 6; the service ignores it). */
static void assert_same_get_range(const struct sg_buf *got, const char *hex)
{
    size_t len;
    uint8_t *want = tv_hex(hex, &len);
    Ots__GetRangeRequest *g =
        ots__get_range_request__unpack(NULL, got->len, (const uint8_t *)got->data);
    Ots__GetRangeRequest *w = ots__get_range_request__unpack(NULL, len, want);
    cr_assert(g && w);
    cr_assert_str_eq(g->table_name, w->table_name);
    cr_assert_eq(g->direction, w->direction);
    cr_assert_eq(g->has_max_versions, w->has_max_versions);
    cr_assert_eq(g->max_versions, w->max_versions);
    cr_assert_eq(g->has_limit, w->has_limit);
    cr_assert_eq(g->limit, w->limit);
    cr_assert_eq(g->n_columns_to_get, w->n_columns_to_get);
    const ProtobufCBinaryData *pairs[2][2] = {
        {&g->inclusive_start_primary_key, &w->inclusive_start_primary_key},
        {&g->exclusive_end_primary_key, &w->exclusive_end_primary_key}};
    for (int i = 0; i < 2; i++) {
        const ProtobufCBinaryData *mine = pairs[i][0], *sdk = pairs[i][1];
        cr_assert_leq(mine->len, sdk->len);
        cr_assert_eq(memcmp(mine->data, sdk->data, mine->len), 0, "key bound %d differs", i);
        for (size_t k = mine->len; k < sdk->len; k++)
            cr_assert_eq(sdk->data[k], 0, "key bound %d: more than padding", i);
    }
    ots__get_range_request__free_unpacked(g, NULL);
    ots__get_range_request__free_unpacked(w, NULL);
    free(want);
}

Test(tablestore_read, get_range_as_the_sdk_sends_it)
{
    cJSON *doc = tv_load("http_other_operations.json");
    struct sg_buf start, end, body;
    sg_buf_init(&start, 0);
    sg_buf_init(&end, 0);
    sg_buf_init(&body, 0);
    struct sg_ts_column lo = sg_ts_col("id", sg_ts_special(SG_TS_INF_MIN));
    struct sg_ts_column hi = sg_ts_col("id", sg_ts_special(SG_TS_INF_MAX));
    encode_pk(&start, &lo, 1);
    encode_pk(&end, &hi, 1);
    struct sg_ts_get_range gr = {.table = "t1",
                                 .direction = SG_TS_FORWARD,
                                 .start = start.data,
                                 .start_len = start.len,
                                 .end = end.data,
                                 .end_len = end.len,
                                 .limit = 2};
    cr_assert_eq(sg_ts_get_range_build(&body, &gr, NULL, 0), 0);
    assert_same_get_range(&body, tv_str(find_request(doc, "GetRange"), "body_hex"));
    cJSON_Delete(doc);

    /* A time slice of an index: (ws, key) from (100, INF_MIN) to (300, INF_MIN). */
    doc = tv_load("http_index_operations.json");
    struct sg_ts_column lo2[] = {sg_ts_col("ws", sg_ts_int(100)),
                                 sg_ts_col("key", sg_ts_special(SG_TS_INF_MIN))};
    struct sg_ts_column hi2[] = {sg_ts_col("ws", sg_ts_int(300)),
                                 sg_ts_col("key", sg_ts_special(SG_TS_INF_MIN))};
    encode_pk(&start, lo2, 2);
    encode_pk(&end, hi2, 2);
    gr = (struct sg_ts_get_range){.table = "ev_by_ws",
                                  .direction = SG_TS_FORWARD,
                                  .start = start.data,
                                  .start_len = start.len,
                                  .end = end.data,
                                  .end_len = end.len,
                                  .limit = 2};
    sg_buf_reset(&body);
    cr_assert_eq(sg_ts_get_range_build(&body, &gr, NULL, 0), 0);
    const cJSON *req = find_request(doc, "GetRange_index_time_window");
    assert_same_get_range(&body, tv_str(req, "body_hex"));

    /* Its answer: two rows, and the next page's start (ws 200, key "e"). */
    const cJSON *resp = cJSON_GetObjectItemCaseSensitive(req, "response");
    size_t len;
    uint8_t *bytes = tv_hex(tv_str(resp, "body_hex"), &len);
    struct sg_ts_range_result res;
    char err[256] = "";
    cr_assert_eq(sg_ts_get_range_parse(bytes, len, &res, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(res.rows.row_count, 2);
    cr_assert_eq(res.rows.rows[0].pk[0].value.i, 100);
    cr_assert_eq(res.rows.rows[1].pk[1].value.bytes.len, 1);
    cr_assert_eq(memcmp(res.rows.rows[1].pk[1].value.bytes.ptr, "c", 1), 0);
    cr_assert_not_null(res.next_start);
    struct sg_ts_rows next;
    cr_assert_eq(
        sg_ts_pb_decode(res.next_start, res.next_start_len, SG_TS_DECODE_SINGLE, &next, NULL, 0),
        0);
    cr_assert_eq(next.rows[0].pk[0].value.i, 200);
    cr_assert_eq(memcmp(next.rows[0].pk[1].value.bytes.ptr, "e", 1), 0);
    sg_ts_rows_free(&next);
    sg_ts_range_result_free(&res);
    sg_ts_range_result_free(&res); /* twice is safe */
    cr_assert_eq(sg_ts_get_range_parse("\x0a\x02", 2, &res, NULL, 0), -EINVAL);
    free(bytes);

    gr.table = "bad-name";
    cr_assert_eq(sg_ts_get_range_build(&body, &gr, NULL, 0), -EINVAL);
    gr.table = "t";
    gr.limit = -1;
    cr_assert_eq(sg_ts_get_range_build(&body, &gr, NULL, 0), -EINVAL);
    sg_buf_free(&start);
    sg_buf_free(&end);
    sg_buf_free(&body);
    cJSON_Delete(doc);
}

Test(tablestore_read, batch_get_row)
{
    struct sg_buf k1, k2, body;
    sg_buf_init(&k1, 0);
    sg_buf_init(&k2, 0);
    sg_buf_init(&body, 0);
    struct sg_ts_column a[] = {sg_ts_col("key", sg_ts_string("a", 1)),
                               sg_ts_col("window_start", sg_ts_int(10))};
    struct sg_ts_column b[] = {sg_ts_col("key", sg_ts_string("b", 1)),
                               sg_ts_col("window_start", sg_ts_int(20))};
    encode_pk(&k1, a, 2);
    encode_pk(&k2, b, 2);
    const void *keys[] = {k1.data, k2.data};
    size_t lens[] = {k1.len, k2.len};
    const char *cols[] = {"count"};
    cr_assert_eq(sg_ts_batch_get_build(&body, "results", keys, lens, 2, cols, 1, NULL, 0), 0);
    Ots__BatchGetRowRequest *req =
        ots__batch_get_row_request__unpack(NULL, body.len, (const uint8_t *)body.data);
    cr_assert_not_null(req);
    cr_assert_eq(req->n_tables, 1);
    cr_assert_str_eq(req->tables[0]->table_name, "results");
    cr_assert_eq(req->tables[0]->n_primary_key, 2);
    cr_assert_eq(req->tables[0]->primary_key[1].len, k2.len);
    cr_assert_eq(memcmp(req->tables[0]->primary_key[1].data, k2.data, k2.len), 0);
    cr_assert_str_eq(req->tables[0]->columns_to_get[0], "count");
    cr_assert_eq(req->tables[0]->max_versions, 1);
    ots__batch_get_row_request__free_unpacked(req, NULL);

    /* An answer: the first row found, the second missing, a third failed. */
    struct sg_buf row;
    sg_buf_init(&row, 0);
    struct sg_ts_column attrs[] = {sg_ts_col("count", sg_ts_int(7))};
    struct sg_ts_row full = {.pk = a, .pk_count = 2, .attrs = attrs, .attr_count = 1};
    cr_assert_eq(sg_ts_pb_encode(&row, SG_TS_ROW_PUT, &full, NULL, 0), 0);
    Ots__RowInBatchGetRowResponse r[3], *rp[3];
    Ots__Error e = OTS__ERROR__INIT;
    e.code = "OTSServerBusy";
    e.message = "busy";
    for (int i = 0; i < 3; i++) {
        ots__row_in_batch_get_row_response__init(&r[i]);
        rp[i] = &r[i];
        r[i].is_ok = i < 2;
    }
    r[0].has_row = true;
    r[0].row.data = (uint8_t *)row.data;
    r[0].row.len = row.len;
    r[1].has_row = true; /* zero-length: no such row */
    r[2].error = &e;
    Ots__TableInBatchGetRowResponse t = OTS__TABLE_IN_BATCH_GET_ROW_RESPONSE__INIT, *tp = &t;
    t.table_name = "results";
    t.n_rows = 3;
    t.rows = rp;
    Ots__BatchGetRowResponse resp = OTS__BATCH_GET_ROW_RESPONSE__INIT;
    resp.n_tables = 1;
    resp.tables = &tp;
    uint8_t packed[512];
    size_t plen = ots__batch_get_row_response__pack(&resp, packed);
    struct sg_ts_batch_get_result res;
    cr_assert_eq(sg_ts_batch_get_parse(packed, plen, &res, NULL, 0), 0);
    cr_assert_eq(res.row_count, 3);
    cr_assert(res.rows[0].ok && res.rows[0].found);
    cr_assert_eq(res.rows[0].decoded.rows[0].attrs[0].value.i, 7);
    cr_assert(res.rows[1].ok && !res.rows[1].found);
    cr_assert(!res.rows[2].ok);
    cr_assert_str_eq(res.rows[2].error_code, "OTSServerBusy");
    sg_ts_batch_get_result_free(&res);

    /* More than 100 rows a request is refused. */
    const void *many[101];
    size_t many_lens[101];
    for (int i = 0; i < 101; i++) {
        many[i] = k1.data;
        many_lens[i] = k1.len;
    }
    cr_assert_eq(sg_ts_batch_get_build(&body, "results", many, many_lens, 101, NULL, 0, NULL, 0),
                 -E2BIG);
    sg_buf_free(&row);
    sg_buf_free(&k1);
    sg_buf_free(&k2);
    sg_buf_free(&body);
}
