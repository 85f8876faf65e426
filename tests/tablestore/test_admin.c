/* Table administration bodies: CreateTable and DescribeTable as the service reads them, and the
 * check of a DescribeTable answer against the expected primary key. */
#include <criterion/criterion.h>
#include <errno.h>

#include "ots.pb-c.h"
#include "streamgate/common.h"
#include "streamgate/tablestore.h"

static const struct sg_ts_pk_column results_pk[] = {{"key", SG_TS_STRING},
                                                    {"window_start", SG_TS_INTEGER}};
static const struct sg_ts_table_schema results = {results_pk, 2};

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
    struct sg_ts_create_table ct = {.table = "t", .schema = {bad_type, 1}};
    cr_assert_eq(sg_ts_create_table_build(&b, &ct, err, sizeof(err)), -EINVAL);
    ct.schema = (struct sg_ts_table_schema){bad_name, 1};
    cr_assert_eq(sg_ts_create_table_build(&b, &ct, err, sizeof(err)), -EINVAL);
    ct.schema = (struct sg_ts_table_schema){results_pk, 0};
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
static void describe_answer(struct sg_buf *b, const char *const *names,
                            const Ots__PrimaryKeyType *types, size_t n)
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
    Ots__CapacityUnit cu = OTS__CAPACITY_UNIT__INIT;
    Ots__ReservedThroughputDetails rtd = OTS__RESERVED_THROUGHPUT_DETAILS__INIT;
    rtd.capacity_unit = &cu;
    Ots__TableOptions opts = OTS__TABLE_OPTIONS__INIT;
    Ots__DescribeTableResponse d = OTS__DESCRIBE_TABLE_RESPONSE__INIT;
    d.table_meta = &meta;
    d.reserved_throughput_details = &rtd;
    d.table_options = &opts;
    sg_buf_reset(b);
    cr_assert_eq(sg_buf_reserve(b, ots__describe_table_response__get_packed_size(&d)), 0);
    b->len = ots__describe_table_response__pack(&d, (uint8_t *)b->data);
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
