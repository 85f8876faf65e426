/* Table administration bodies: CreateTable and DescribeTable as the service reads them, and the
 * check of a DescribeTable answer against the expected primary key. */
#include <criterion/criterion.h>
#include <errno.h>

#include "ots.pb-c.h"
#include "streamgate/common.h"
#include "streamgate/tablestore.h"

static const struct sg_ts_pk_column results_pk[] = {{"key", SG_TS_STRING},
                                                    {"window_start", SG_TS_INTEGER}};
static const struct sg_ts_table_schema results = {.pk = results_pk, .pk_count = 2};

Test(tablestore_admin, create_table_reads_back)
{
    struct sg_buf b;
    sg_buf_init(&b, 0);
    struct sg_ts_create_table ct = {.table = "results", .schema = results};
    cr_assert_eq(sg_ts_create_table_build(&b, &ct, NULL, 0), 0);
    Ots__CreateTableRequest *req =
        ots__create_table_request__unpack(NULL, b.len, (const uint8_t *)b.data);
    cr_assert_not_null(req);
    cr_assert_str_eq(req->table_meta->table_name, "results");
    cr_assert_eq(req->table_meta->n_primary_key, 2);
    cr_assert_str_eq(req->table_meta->primary_key[0]->name, "key");
    cr_assert_eq(req->table_meta->primary_key[0]->type, OTS__PRIMARY_KEY_TYPE__STRING);
    cr_assert_str_eq(req->table_meta->primary_key[1]->name, "window_start");
    cr_assert_eq(req->table_meta->primary_key[1]->type, OTS__PRIMARY_KEY_TYPE__INTEGER);
    cr_assert(req->table_options->has_max_versions);
    cr_assert_eq(req->table_options->max_versions, 1);
    cr_assert_eq(req->table_options->time_to_live, -1);
    cr_assert_not_null(req->reserved_throughput->capacity_unit);
    cr_assert(req->reserved_throughput->capacity_unit->has_read);
    ots__create_table_request__free_unpacked(req, NULL);
    sg_buf_free(&b);
}

Test(tablestore_admin, create_table_refuses_bad_schemas)
{
    struct sg_buf b;
    char err[256];
    sg_buf_init(&b, 0);
    static const struct sg_ts_pk_column bad_type[] = {{"k", SG_TS_DOUBLE}};
    static const struct sg_ts_pk_column bad_name[] = {{"1k", SG_TS_STRING}};
    struct sg_ts_create_table ct = {.table = "t", .schema = {.pk = bad_type, .pk_count = 1}};
    cr_assert_eq(sg_ts_create_table_build(&b, &ct, err, sizeof(err)), -EINVAL);
    ct.schema = (struct sg_ts_table_schema){.pk = bad_name, .pk_count = 1};
    cr_assert_eq(sg_ts_create_table_build(&b, &ct, err, sizeof(err)), -EINVAL);
    ct.schema = (struct sg_ts_table_schema){.pk = results_pk, .pk_count = 0};
    cr_assert_eq(sg_ts_create_table_build(&b, &ct, err, sizeof(err)), -EINVAL);
    ct = (struct sg_ts_create_table){.table = "bad-name", .schema = results};
    cr_assert_eq(sg_ts_create_table_build(&b, &ct, err, sizeof(err)), -EINVAL);
    cr_assert_eq(sg_ts_describe_table_build(&b, "", err, sizeof(err)), -EINVAL);
    cr_assert_eq(b.len, 0);
    sg_buf_free(&b);
}

Test(tablestore_admin, describe_table_request)
{
    struct sg_buf b;
    sg_buf_init(&b, 0);
    cr_assert_eq(sg_ts_describe_table_build(&b, "results", NULL, 0), 0);
    Ots__DescribeTableRequest *req =
        ots__describe_table_request__unpack(NULL, b.len, (const uint8_t *)b.data);
    cr_assert_not_null(req);
    cr_assert_str_eq(req->table_name, "results");
    ots__describe_table_request__free_unpacked(req, NULL);
    sg_buf_free(&b);
}

/* A DescribeTableResponse as the service sends it, with the given primary key. */
static void describe_answer_full(struct sg_buf *b, const char *const *names,
                                 const Ots__PrimaryKeyType *types, size_t n,
                                 Ots__DefinedColumnSchema **defs, size_t ndefs,
                                 Ots__IndexMeta **idx, size_t nidx)
{
    Ots__PrimaryKeySchema cols[4], *colp[4];
    for (size_t i = 0; i < n; i++) {
        ots__primary_key_schema__init(&cols[i]);
        cols[i].name = (char *)names[i];
        cols[i].type = types[i];
        colp[i] = &cols[i];
    }
    Ots__TableMeta meta = OTS__TABLE_META__INIT;
    meta.table_name = "results";
    meta.n_primary_key = n;
    meta.primary_key = colp;
    meta.n_defined_column = ndefs;
    meta.defined_column = defs;
    Ots__CapacityUnit cu = OTS__CAPACITY_UNIT__INIT;
    Ots__ReservedThroughputDetails rtd = OTS__RESERVED_THROUGHPUT_DETAILS__INIT;
    rtd.capacity_unit = &cu;
    Ots__TableOptions opts = OTS__TABLE_OPTIONS__INIT;
    Ots__DescribeTableResponse d = OTS__DESCRIBE_TABLE_RESPONSE__INIT;
    d.table_meta = &meta;
    d.reserved_throughput_details = &rtd;
    d.table_options = &opts;
    d.n_index_metas = nidx;
    d.index_metas = idx;
    sg_buf_reset(b);
    cr_assert_eq(sg_buf_reserve(b, ots__describe_table_response__get_packed_size(&d)), 0);
    b->len = ots__describe_table_response__pack(&d, (uint8_t *)b->data);
}

static void describe_answer(struct sg_buf *b, const char *const *names,
                            const Ots__PrimaryKeyType *types, size_t n)
{
    describe_answer_full(b, names, types, n, NULL, 0, NULL, 0);
}

Test(tablestore_admin, describe_table_check)
{
    struct sg_buf b;
    char err[512];
    sg_buf_init(&b, 0);
    const char *same[] = {"key", "window_start"};
    const Ots__PrimaryKeyType same_t[] = {OTS__PRIMARY_KEY_TYPE__STRING,
                                          OTS__PRIMARY_KEY_TYPE__INTEGER};
    describe_answer(&b, same, same_t, 2);
    cr_assert_eq(sg_ts_describe_table_check(b.data, b.len, "results", &results, NULL, 0), 0);

    const Ots__PrimaryKeyType other_t[] = {OTS__PRIMARY_KEY_TYPE__STRING,
                                           OTS__PRIMARY_KEY_TYPE__STRING};
    describe_answer(&b, same, other_t, 2);
    cr_assert_eq(sg_ts_describe_table_check(b.data, b.len, "results", &results, err, sizeof(err)),
                 -EINVAL);
    cr_assert_str_eq(err,
                     "table results exists with another primary key; expected (key, window_start)");

    describe_answer(&b, same, same_t, 1);
    cr_assert_eq(sg_ts_describe_table_check(b.data, b.len, "results", &results, err, sizeof(err)),
                 -EINVAL);

    cr_assert_eq(sg_ts_describe_table_check("\xff\xff", 2, "results", &results, err, sizeof(err)),
                 -EBADMSG);
    sg_buf_free(&b);
}

/* The results table with its time index, as the writer asks for it. */
static const struct sg_ts_defined_column time_defined[] = {
    {"shard", SG_TS_INTEGER}, {"count", SG_TS_INTEGER}, {"window_end", SG_TS_INTEGER}};
static const char *const time_pk[] = {"shard", "window_start", "key"};
static const char *const time_cols[] = {"count", "window_end"};
static const struct sg_ts_index time_index = {"results_by_time", time_pk, 3, time_cols, 2};
static const struct sg_ts_table_schema indexed = {.pk = results_pk,
                                                  .pk_count = 2,
                                                  .defined = time_defined,
                                                  .defined_count = 3,
                                                  .indexes = &time_index,
                                                  .index_count = 1};

Test(tablestore_admin, create_table_with_an_index)
{
    struct sg_buf b;
    sg_buf_init(&b, 0);
    struct sg_ts_create_table ct = {.table = "results", .schema = indexed};
    cr_assert_eq(sg_ts_create_table_build(&b, &ct, NULL, 0), 0);
    Ots__CreateTableRequest *req =
        ots__create_table_request__unpack(NULL, b.len, (const uint8_t *)b.data);
    cr_assert_not_null(req);
    cr_assert_eq(req->table_meta->n_defined_column, 3);
    cr_assert_str_eq(req->table_meta->defined_column[0]->name, "shard");
    cr_assert_eq(req->table_meta->defined_column[0]->type, OTS__DEFINED_COLUMN_TYPE__DCT_INTEGER);
    cr_assert_eq(req->n_index_metas, 1);
    const Ots__IndexMeta *m = req->index_metas[0];
    cr_assert_str_eq(m->name, "results_by_time");
    cr_assert_eq(m->n_primary_key, 3);
    cr_assert_str_eq(m->primary_key[0], "shard");
    cr_assert_str_eq(m->primary_key[1], "window_start");
    cr_assert_str_eq(m->primary_key[2], "key");
    cr_assert_eq(m->n_defined_column, 2);
    cr_assert_str_eq(m->defined_column[1], "window_end");
    cr_assert_eq(m->index_type, OTS__INDEX_TYPE__IT_GLOBAL_INDEX);
    cr_assert_eq(m->index_update_mode, OTS__INDEX_UPDATE_MODE__IUM_ASYNC_INDEX);
    ots__create_table_request__free_unpacked(req, NULL);

    sg_buf_reset(&b);
    cr_assert_eq(sg_ts_create_index_build(&b, "results", &time_index, true, NULL, 0), 0);
    Ots__CreateIndexRequest *ci =
        ots__create_index_request__unpack(NULL, b.len, (const uint8_t *)b.data);
    cr_assert_not_null(ci);
    cr_assert_str_eq(ci->main_table_name, "results");
    cr_assert(ci->has_include_base_data && ci->include_base_data);
    cr_assert_str_eq(ci->index_meta->name, "results_by_time");
    cr_assert_eq(ci->index_meta->n_primary_key, 3);
    ots__create_index_request__free_unpacked(ci, NULL);
    sg_buf_free(&b);
}

Test(tablestore_admin, describe_table_check_with_an_index)
{
    struct sg_buf b;
    char err[512];
    sg_buf_init(&b, 0);
    const char *pk[] = {"key", "window_start"};
    const Ots__PrimaryKeyType pk_t[] = {OTS__PRIMARY_KEY_TYPE__STRING,
                                        OTS__PRIMARY_KEY_TYPE__INTEGER};
    Ots__DefinedColumnSchema defs[3], *defp[3];
    for (int i = 0; i < 3; i++) {
        ots__defined_column_schema__init(&defs[i]);
        defs[i].name = (char *)time_defined[i].name;
        defs[i].type = OTS__DEFINED_COLUMN_TYPE__DCT_INTEGER;
        defp[i] = &defs[i];
    }
    Ots__IndexMeta m = OTS__INDEX_META__INIT, *mp = &m;
    m.name = "results_by_time";
    m.n_primary_key = 3;
    m.primary_key = (char **)time_pk;
    m.n_defined_column = 2;
    m.defined_column = (char **)time_cols;

    describe_answer_full(&b, pk, pk_t, 2, defp, 3, &mp, 1);
    cr_assert_eq(sg_ts_describe_table_check(b.data, b.len, "results", &indexed, err, sizeof(err)),
                 0, "%s", err);

    /* No index yet, but the columns it needs: it can be created. */
    describe_answer_full(&b, pk, pk_t, 2, defp, 3, NULL, 0);
    cr_assert_eq(sg_ts_describe_table_check(b.data, b.len, "results", &indexed, err, sizeof(err)),
                 -ENOENT);
    cr_assert_str_eq(err, "index results_by_time of table results does not exist");

    /* Neither: a table made without them cannot get the index. */
    describe_answer_full(&b, pk, pk_t, 2, defp, 1, NULL, 0);
    cr_assert_eq(sg_ts_describe_table_check(b.data, b.len, "results", &indexed, err, sizeof(err)),
                 -EINVAL);
    cr_assert_str_eq(err, "table results has no predefined column count of type INTEGER, which "
                          "index results_by_time needs");
    defs[1].type = OTS__DEFINED_COLUMN_TYPE__DCT_DOUBLE;
    describe_answer_full(&b, pk, pk_t, 2, defp, 3, NULL, 0);
    cr_assert_eq(sg_ts_describe_table_check(b.data, b.len, "results", &indexed, err, sizeof(err)),
                 -EINVAL);

    /* An index of that name over other columns. */
    m.n_primary_key = 2;
    describe_answer_full(&b, pk, pk_t, 2, defp, 3, &mp, 1);
    cr_assert_eq(sg_ts_describe_table_check(b.data, b.len, "results", &indexed, err, sizeof(err)),
                 -EINVAL);
    cr_assert_str_eq(err, "index results_by_time of table results exists with other columns; "
                          "expected a global index on (shard, window_start, key)");
    sg_buf_free(&b);
}
