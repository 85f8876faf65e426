/* PlainBuffer encoder, decoder and CRC-8 against crc8.json and plainbuffer_rows.json. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/tablestore.h"
#include "vectors.h"

static uint8_t crc8_bitwise(uint8_t crc, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++)
            crc = crc & 0x80 ? (uint8_t)((crc << 1) ^ 0x07) : (uint8_t)(crc << 1);
    }
    return crc;
}

Test(tablestore_crc8, vectors)
{
    cJSON *doc = tv_load("crc8.json");
    const cJSON *v;
    int n = 0;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(doc, "vectors"))
    {
        size_t len;
        uint8_t *in = tv_hex(tv_str(v, "input_hex"), &len);
        int init = cJSON_GetObjectItemCaseSensitive(v, "init")->valueint;
        int want = cJSON_GetObjectItemCaseSensitive(v, "crc")->valueint;
        cr_assert_eq(sg_ts_crc8((uint8_t)init, in, len), want, "input %s", tv_str(v, "input_hex"));
        free(in);
        n++;
    }
    cr_assert_eq(n, 9);
    cr_assert_eq(sg_ts_crc8(0, "123456789", 9), 0xf4);
    cJSON_Delete(doc);
}

Test(tablestore_crc8, incremental_walkthrough)
{
    cJSON *doc = tv_load("crc8.json");
    const cJSON *ex =
        cJSON_GetObjectItemCaseSensitive(doc, "incremental_example_row_put_int_string");
    const char *lists[] = {"cell_steps", "row_steps"};
    for (size_t l = 0; l < 2; l++) {
        const cJSON *step;
        cJSON_ArrayForEach(step, cJSON_GetObjectItemCaseSensitive(ex, lists[l]))
        {
            size_t len;
            uint8_t *in = tv_hex(tv_str(step, "input_hex"), &len);
            int before = cJSON_GetObjectItemCaseSensitive(step, "crc_before")->valueint;
            int after = cJSON_GetObjectItemCaseSensitive(step, "crc_after")->valueint;
            cr_assert_eq(sg_ts_crc8((uint8_t)before, in, len), after, "%s", tv_str(step, "what"));
            free(in);
        }
    }
    cJSON_Delete(doc);
}

Test(tablestore_crc8, table_matches_bitwise_definition)
{
    uint8_t data[512];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 151 + 7);
    for (int init = 0; init < 256; init++) {
        uint8_t b = (uint8_t)init;
        cr_assert_eq(sg_ts_crc8(0, &b, 1), crc8_bitwise(0, &b, 1));
        cr_assert_eq(sg_ts_crc8((uint8_t)init, data, sizeof(data)),
                     crc8_bitwise((uint8_t)init, data, sizeof(data)));
    }
}

/* Runs `fn` on every row vector. */
typedef void (*row_fn)(const cJSON *vec, const struct tv_row *logical, enum sg_ts_row_kind kind);

static int for_each_row(row_fn fn)
{
    cJSON *doc = tv_load("plainbuffer_rows.json");
    const cJSON *vec;
    int n = 0;
    cJSON_ArrayForEach(vec, cJSON_GetObjectItemCaseSensitive(doc, "rows"))
    {
        struct tv_row logical;
        tv_row_from_json(cJSON_GetObjectItemCaseSensitive(vec, "row"), &logical);
        fn(vec, &logical, tv_kind(tv_str(vec, "kind")));
        n++;
    }
    cJSON_Delete(doc);
    return n;
}

static void check_encode(const cJSON *vec, const struct tv_row *logical, enum sg_ts_row_kind kind)
{
    size_t want_len;
    uint8_t *want = tv_hex(tv_str(vec, "canonical_hex"), &want_len);
    struct sg_buf out;
    sg_buf_init(&out, 0);
    char err[256] = "";
    int rc = sg_ts_pb_encode(&out, kind, &logical->row, err, sizeof(err));
    cr_assert_eq(rc, 0, "%s: %s", tv_str(vec, "id"), err);
    cr_assert_eq(out.len, want_len, "%s: length %zu, want %zu", tv_str(vec, "id"), out.len,
                 want_len);
    cr_assert_eq(out.len, (size_t)cJSON_GetObjectItemCaseSensitive(vec, "canonical_len")->valueint);
    cr_assert(memcmp(out.data, want, want_len) == 0, "%s: bytes differ", tv_str(vec, "id"));
    cr_assert_eq(sg_ts_pb_row_size(kind, &logical->row) + 4, want_len);
    cr_assert_eq((uint8_t)out.data[out.len - 1],
                 cJSON_GetObjectItemCaseSensitive(vec, "row_checksum")->valueint);
    sg_buf_free(&out);
    free(want);
}

Test(tablestore_plainbuffer, encode_matches_canonical_hex)
{
    cr_assert_eq(for_each_row(check_encode), 11);
}

/* Every cell checksum listed in the vector appears right after a 0x0a tag, in order. */
static void check_cell_checksums(const cJSON *vec, const struct tv_row *logical,
                                 enum sg_ts_row_kind kind)
{
    size_t len;
    uint8_t *buf = tv_hex(tv_str(vec, "canonical_hex"), &len);
    struct sg_ts_rows rows;
    cr_assert_eq(sg_ts_pb_decode(buf, len, SG_TS_DECODE_SINGLE, &rows, NULL, 0), 0);
    const cJSON *crc;
    size_t i = 0;
    cJSON_ArrayForEach(crc, cJSON_GetObjectItemCaseSensitive(vec, "cell_checksums"))
    {
        const struct sg_ts_row *row = &rows.rows[0];
        const struct sg_ts_column *c =
            i < row->pk_count ? &row->pk[i] : &row->attrs[i - row->pk_count];
        /* Recompute the checksum from the decoded cell, as the encoder would. */
        struct sg_ts_row one = {.pk = c, .pk_count = 1};
        struct sg_ts_column pk = *c;
        struct sg_buf b;
        sg_buf_init(&b, 0);
        if (i < row->pk_count) {
            cr_assert_eq(sg_ts_pb_encode(&b, kind == SG_TS_ROW_PK ? SG_TS_ROW_PK : SG_TS_ROW_PUT,
                                         &one, NULL, 0),
                         0);
        } else {
            struct sg_ts_column key = sg_ts_col("k", sg_ts_int(0));
            struct sg_ts_row r = {.pk = &key, .pk_count = 1, .attrs = &pk, .attr_count = 1};
            cr_assert_eq(sg_ts_pb_encode(&b, SG_TS_ROW_UPDATE, &r, NULL, 0), 0);
        }
        /* The cell checksum is the byte before the row checksum tag. */
        cr_assert_eq((uint8_t)b.data[b.len - 3], crc->valueint, "%s cell %zu", tv_str(vec, "id"),
                     i);
        sg_buf_free(&b);
        i++;
    }
    cr_assert_eq(i, rows.cell_count);
    sg_ts_rows_free(&rows);
    free(buf);
    (void)logical;
}

Test(tablestore_plainbuffer, cell_checksums_match)
{
    for_each_row(check_cell_checksums);
}

static void check_decode(const cJSON *vec, const struct tv_row *logical, enum sg_ts_row_kind kind)
{
    const char *fields[] = {"canonical_hex", "sdk_hex"};
    size_t canonical_len = (size_t)cJSON_GetObjectItemCaseSensitive(vec, "canonical_len")->valueint;
    for (size_t f = 0; f < 2; f++) {
        const cJSON *hex = cJSON_GetObjectItemCaseSensitive(vec, fields[f]);
        if (hex == NULL)
            continue;
        size_t len;
        uint8_t *buf = tv_hex(hex->valuestring, &len);
        struct sg_ts_rows rows;
        char err[256] = "";
        int rc = sg_ts_pb_decode(buf, len, SG_TS_DECODE_SINGLE, &rows, err, sizeof(err));
        cr_assert_eq(rc, 0, "%s %s: %s", tv_str(vec, "id"), fields[f], err);
        cr_assert_eq(rows.row_count, 1);
        /* The JS SDK's zero padding is skipped, as the service does. */
        cr_assert_eq(rows.consumed, canonical_len, "%s %s", tv_str(vec, "id"), fields[f]);
        tv_assert_rows_equal(&rows.rows[0], &logical->row);
        cr_assert_eq(sg_ts_row_validate(kind, &rows.rows[0], err, sizeof(err)), 0, "%s", err);
        sg_ts_rows_free(&rows);
        free(buf);
    }
}

Test(tablestore_plainbuffer, decode_gives_logical_row_back)
{
    for_each_row(check_decode);
}

Test(tablestore_plainbuffer, sdk_padding_is_present_in_vectors)
{
    cJSON *doc = tv_load("plainbuffer_rows.json");
    const cJSON *vec = tv_find_row(doc, "update_put_delete_deleteall");
    size_t len;
    uint8_t *buf = tv_hex(tv_str(vec, "sdk_hex"), &len);
    cr_assert_eq(len, 115 + 27);
    struct sg_ts_rows rows;
    cr_assert_eq(sg_ts_pb_decode(buf, len, SG_TS_DECODE_SINGLE, &rows, NULL, 0), 0);
    cr_assert_eq(rows.consumed, 115);
    sg_ts_rows_free(&rows);
    /* A non-zero byte in the padding is not padding. */
    buf[len - 5] = 0x01;
    char err[256] = "";
    cr_assert_eq(sg_ts_pb_decode(buf, len, SG_TS_DECODE_SINGLE, &rows, err, sizeof(err)), -EINVAL);
    cr_assert_eq(rows.error_offset, len - 5, "%s", err);
    cr_assert_null(rows.rows);
    free(buf);
    cJSON_Delete(doc);
}

static void check_corruption(const cJSON *vec, const struct tv_row *logical,
                             enum sg_ts_row_kind kind)
{
    size_t len;
    uint8_t *buf = tv_hex(tv_str(vec, "canonical_hex"), &len);
    struct sg_ts_rows rows;
    /* Every single-bit flip anywhere (header, tags, lengths, payload, checksums) is caught:
     * the checksums cover names and values, the layout rules cover the rest. */
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            int rc = sg_ts_pb_decode(buf, len, SG_TS_DECODE_SINGLE, &rows, NULL, 0);
            cr_assert_eq(rc, -EINVAL, "%s: flip of bit %d at %zu accepted", tv_str(vec, "id"), bit,
                         i);
            cr_assert_leq(rows.error_offset, len);
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* Every cell checksum byte and the row checksum byte, set to every other value. */
    for (size_t i = 5; i < len; i++) {
        if (buf[i - 1] != 0x0a && buf[i - 1] != 0x09)
            continue;
        uint8_t orig = buf[i];
        for (int v = 0; v < 256; v++) {
            if (v == orig)
                continue;
            buf[i] = (uint8_t)v;
            cr_assert_eq(sg_ts_pb_decode(buf, len, SG_TS_DECODE_SINGLE, &rows, NULL, 0), -EINVAL);
        }
        buf[i] = orig;
    }
    free(buf);
    (void)logical;
    (void)kind;
}

Test(tablestore_plainbuffer, corruption_is_rejected)
{
    for_each_row(check_corruption);
}

static void check_truncation(const cJSON *vec, const struct tv_row *logical,
                             enum sg_ts_row_kind kind)
{
    size_t len;
    uint8_t *full = tv_hex(tv_str(vec, "canonical_hex"), &len);
    for (size_t n = 0; n < len; n++) {
        /* An exact-size copy so any read past the end is a sanitizer error. */
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, full, n);
        struct sg_ts_rows rows;
        char err[256] = "";
        cr_assert_eq(sg_ts_pb_decode(cut, n, SG_TS_DECODE_SINGLE, &rows, err, sizeof(err)), -EINVAL,
                     "%s: truncation to %zu accepted", tv_str(vec, "id"), n);
        cr_assert_neq(err[0], '\0');
        /* In a multi-row field, no bytes and a bare header are an empty page. */
        if (n > 0 && n != 4)
            cr_assert_eq(sg_ts_pb_decode(cut, n, SG_TS_DECODE_MULTI, &rows, NULL, 0), -EINVAL);
        free(cut);
    }
    free(full);
    (void)logical;
    (void)kind;
}

Test(tablestore_plainbuffer, truncation_is_rejected)
{
    for_each_row(check_truncation);
}

Test(tablestore_plainbuffer, multi_row_buffers)
{
    cJSON *doc = tv_load("plainbuffer_rows.json");
    struct tv_row a, b;
    tv_row_from_json(cJSON_GetObjectItemCaseSensitive(tv_find_row(doc, "put_int_string"), "row"),
                     &a);
    tv_row_from_json(
        cJSON_GetObjectItemCaseSensitive(tv_find_row(doc, "put_with_timestamps"), "row"), &b);
    struct sg_buf out;
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_ts_pb_append_header(&out), 0);
    cr_assert_eq(sg_ts_pb_append_row(&out, SG_TS_ROW_PUT, &a.row, NULL, 0), 0);
    cr_assert_eq(sg_ts_pb_append_row(&out, SG_TS_ROW_PUT, &b.row, NULL, 0), 0);
    cr_assert_eq(out.len, 4 + sg_ts_pb_row_size(SG_TS_ROW_PUT, &a.row) +
                              sg_ts_pb_row_size(SG_TS_ROW_PUT, &b.row));

    struct sg_ts_rows rows;
    cr_assert_eq(sg_ts_pb_decode(out.data, out.len, SG_TS_DECODE_MULTI, &rows, NULL, 0), 0);
    cr_assert_eq(rows.row_count, 2);
    cr_assert_eq(rows.cell_count, 5);
    tv_assert_rows_equal(&rows.rows[0], &a.row);
    tv_assert_rows_equal(&rows.rows[1], &b.row);
    sg_ts_rows_free(&rows);
    sg_ts_rows_free(&rows); /* twice is safe */

    /* A single-row field must not carry two rows. */
    char err[256] = "";
    cr_assert_eq(sg_ts_pb_decode(out.data, out.len, SG_TS_DECODE_SINGLE, &rows, err, sizeof(err)),
                 -EINVAL);
    cr_assert_eq(rows.error_offset, 4 + sg_ts_pb_row_size(SG_TS_ROW_PUT, &a.row));
    cr_assert(strstr(err, "trailing") != NULL, "%s", err);

    /* An empty GetRange page is zero bytes (no header), or a header without rows. */
    cr_assert_eq(sg_ts_pb_decode("", 0, SG_TS_DECODE_MULTI, &rows, NULL, 0), 0);
    cr_assert_eq(rows.row_count, 0);
    cr_assert_eq(sg_ts_pb_decode(out.data, 4, SG_TS_DECODE_MULTI, &rows, NULL, 0), 0);
    cr_assert_eq(rows.row_count, 0);
    cr_assert_eq(sg_ts_pb_decode("", 0, SG_TS_DECODE_SINGLE, &rows, NULL, 0), -EINVAL);
    cr_assert_eq(sg_ts_pb_decode(out.data, 4, SG_TS_DECODE_SINGLE, &rows, NULL, 0), -EINVAL);
    sg_buf_free(&out);
    cJSON_Delete(doc);
}

static void expect_decode_error(const char *hex, size_t offset, const char *words)
{
    size_t len;
    uint8_t *buf = tv_hex(hex, &len);
    struct sg_ts_rows rows;
    char err[256] = "";
    cr_assert_eq(sg_ts_pb_decode(buf, len, SG_TS_DECODE_SINGLE, &rows, err, sizeof(err)), -EINVAL,
                 "%s accepted", hex);
    cr_assert_eq(rows.error_offset, offset, "%s: offset %zu (%s)", hex, rows.error_offset, err);
    cr_assert(strstr(err, words) != NULL, "%s: message '%s'", hex, err);
    free(buf);
}

Test(tablestore_plainbuffer, malformed_input_reports_offset)
{
    expect_decode_error("76000000", 0, "bad header");
    expect_decode_error("750000", 0, "truncated header");
    expect_decode_error("7500000002", 4, "expected row");
    expect_decode_error("750000000109", 5, "without primary key");
    /* pk "id" with an unknown value type 0x04 */
    expect_decode_error("750000000103040200000069640509000000040100000000000000", 18,
                        "unknown value type");
    /* pk name length past the end */
    expect_decode_error("750000000103040a000000696405", 7, "runs past");
    /* pk cell without a value */
    expect_decode_error("7500000001030402000000696400", 13, "without a value");
    /* pk DOUBLE is not a key type */
    expect_decode_error("750000000103040200000069640509000000010000000000000000", 18,
                        "not allowed");
    /* BOOLEAN attribute with byte 2: the value check comes before the checksum */
    expect_decode_error("7500000001030402000000696405090000000001000000000000000a0a020304010000006"
                        "205020000000202",
                        43, "boolean");
    /* op type 0x02 does not exist */
    expect_decode_error(
        "7500000001030402000000696405090000000001000000000000000a0a02030401000000630602", 38,
        "unknown op");
    /* INTEGER with vlen 8 */
    expect_decode_error("75000000010304020000006964050800000000010000000000000000", 14,
                        "does not match");
    /* STRING whose inner length disagrees with vlen */
    expect_decode_error("750000000103040200000069640506000000030200000061", 14, "does not match");
    /* garbage after a good row */
    expect_decode_error("7500000001030402000000696405090000000001000000000000000a0a098200ff", 32,
                        "non-zero");
}

Test(tablestore_plainbuffer, errors_need_no_errstr)
{
    struct sg_ts_rows rows;
    cr_assert_eq(sg_ts_pb_decode("\x75\0\0\0\x01", 5, SG_TS_DECODE_SINGLE, &rows, NULL, 0),
                 -EINVAL);
    cr_assert_eq(sg_ts_pb_decode(NULL, 3, SG_TS_DECODE_SINGLE, &rows, NULL, 0), -EINVAL);
    cr_assert_eq(sg_ts_pb_decode("", 0, 7, &rows, NULL, 0), -EINVAL);
}

/* xorshift64*: a fixed-seed generator so failures reproduce. */
static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

Test(tablestore_plainbuffer, arbitrary_bytes_are_safe)
{
    cJSON *doc = tv_load("plainbuffer_rows.json");
    uint64_t seed = 0x9e3779b97f4a7c15u;
    const cJSON *vec;
    size_t accepted = 0, total = 0;
    cJSON_ArrayForEach(vec, cJSON_GetObjectItemCaseSensitive(doc, "rows"))
    {
        size_t len;
        uint8_t *orig = tv_hex(tv_str(vec, "canonical_hex"), &len);
        for (int round = 0; round < 2000; round++) {
            size_t n = len + (next_rand(&seed) % 8) - 4;
            if (n > len)
                n = len;
            uint8_t *buf = malloc(n ? n : 1);
            memcpy(buf, orig, n);
            int edits = 1 + (int)(next_rand(&seed) % 4);
            for (int e = 0; e < edits && n > 0; e++)
                buf[next_rand(&seed) % n] = (uint8_t)next_rand(&seed);
            struct sg_ts_rows rows;
            int rc = sg_ts_pb_decode(buf, n, (int)(round & 1), &rows, NULL, 0);
            cr_assert(rc == 0 || rc == -EINVAL);
            if (rc == 0) {
                /* Whatever is accepted must be self-consistent. */
                cr_assert_leq(rows.consumed, n);
                for (size_t r = 0; r < rows.row_count; r++)
                    cr_assert_geq(rows.rows[r].pk_count, 1);
                accepted++;
            }
            sg_ts_rows_free(&rows);
            free(buf);
            total++;
        }
        free(orig);
    }
    /* Pure noise with a valid header. */
    for (int round = 0; round < 20000; round++) {
        size_t n = 4 + next_rand(&seed) % 60;
        uint8_t *buf = malloc(n);
        buf[0] = 0x75;
        buf[1] = buf[2] = buf[3] = 0;
        for (size_t i = 4; i < n; i++) {
            /* Mostly tag-like bytes so the parser gets deep into rows. */
            uint64_t r = next_rand(&seed);
            buf[i] = (uint8_t)(r % 3 == 0 ? r >> 8 : (r >> 8) % 12);
        }
        struct sg_ts_rows rows;
        int rc = sg_ts_pb_decode(buf, n, (int)(round & 1), &rows, NULL, 0);
        cr_assert(rc == 0 || rc == -EINVAL);
        sg_ts_rows_free(&rows);
        free(buf);
    }
    cr_assert_lt(accepted, total / 10, "too many corrupted rows accepted: %zu of %zu", accepted,
                 total);
    cJSON_Delete(doc);
}

/* ---- Validation ---------------------------------------------------------------------------- */

static int encode_err(enum sg_ts_row_kind kind, const struct sg_ts_row *row, char *err, size_t n)
{
    struct sg_buf out;
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_buf_append(&out, "xyz", 3), 0);
    int rc = sg_ts_pb_encode(&out, kind, row, err, n);
    if (rc)
        cr_assert_eq(out.len, 3, "buffer changed on failure");
    sg_buf_free(&out);
    return rc;
}

Test(tablestore_plainbuffer, encoder_rejects_invalid_rows)
{
    char err[256];
    struct sg_ts_column pk[5] = {
        sg_ts_col("a", sg_ts_int(1)), sg_ts_col("b", sg_ts_int(2)), sg_ts_col("c", sg_ts_int(3)),
        sg_ts_col("d", sg_ts_int(4)), sg_ts_col("e", sg_ts_int(5)),
    };
    struct sg_ts_row row = {.pk = pk, .pk_count = 4};
    cr_assert_eq(encode_err(SG_TS_ROW_PUT, &row, err, sizeof(err)), 0);
    row.pk_count = 5;
    cr_assert_eq(encode_err(SG_TS_ROW_PUT, &row, err, sizeof(err)), -EINVAL);
    row.pk_count = 0;
    cr_assert_eq(encode_err(SG_TS_ROW_PUT, &row, err, sizeof(err)), -EINVAL);
    row.pk_count = 1;

    /* Names: non-ASCII (the JS SDK mis-encodes it), empty, leading digit, too long, symbols. */
    const char *bad_names[] = {"h\xc3\xa9", "", "1abc", "a-b", "a b"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        struct sg_ts_column c = sg_ts_col(bad_names[i], sg_ts_int(1));
        struct sg_ts_row r = {.pk = &c, .pk_count = 1};
        cr_assert_eq(encode_err(SG_TS_ROW_PUT, &r, err, sizeof(err)), -EINVAL, "%s", bad_names[i]);
        cr_assert(strstr(err, "name") != NULL);
    }
    char longname[300];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    struct sg_ts_column lc = sg_ts_col(longname, sg_ts_int(1));
    struct sg_ts_row lr = {.pk = &lc, .pk_count = 1};
    cr_assert_eq(encode_err(SG_TS_ROW_PUT, &lr, err, sizeof(err)), -EINVAL);
    lc.name_len = 255;
    cr_assert_eq(encode_err(SG_TS_ROW_PUT, &lr, err, sizeof(err)), 0);

    /* PK value types and sizes per kind. */
    static char big[SG_TS_PK_VALUE_MAX_BYTES + 1];
    struct sg_ts_column k = sg_ts_col("k", sg_ts_string(big, sizeof(big)));
    struct sg_ts_row kr = {.pk = &k, .pk_count = 1};
    cr_assert_eq(encode_err(SG_TS_ROW_PUT, &kr, err, sizeof(err)), -EINVAL);
    k.value.bytes.len = SG_TS_PK_VALUE_MAX_BYTES;
    cr_assert_eq(encode_err(SG_TS_ROW_PUT, &kr, err, sizeof(err)), 0);
    k.value = sg_ts_special(SG_TS_INF_MIN);
    cr_assert_eq(encode_err(SG_TS_ROW_PUT, &kr, err, sizeof(err)), -EINVAL);
    cr_assert_eq(encode_err(SG_TS_ROW_PK, &kr, err, sizeof(err)), 0);
    k.value = sg_ts_special(SG_TS_AUTO_INCREMENT);
    cr_assert_eq(encode_err(SG_TS_ROW_PK, &kr, err, sizeof(err)), -EINVAL);
    cr_assert_eq(encode_err(SG_TS_ROW_PUT, &kr, err, sizeof(err)), 0);
    k.value = sg_ts_double(1.0);
    cr_assert_eq(encode_err(SG_TS_ROW_PUT, &kr, err, sizeof(err)), -EINVAL);
    k.value = sg_ts_int(1);
    k.has_ts = true;
    cr_assert_eq(encode_err(SG_TS_ROW_PUT, &kr, err, sizeof(err)), -EINVAL);
    k.has_ts = false;

    /* Attribute cells. */
    struct sg_ts_column attr = sg_ts_col("v", sg_ts_double(2.5));
    struct sg_ts_row ar = {.pk = &k, .pk_count = 1, .attrs = &attr, .attr_count = 1};
    cr_assert_eq(encode_err(SG_TS_ROW_PUT, &ar, err, sizeof(err)), 0);
    cr_assert_eq(encode_err(SG_TS_ROW_PK, &ar, err, sizeof(err)), -EINVAL);
    cr_assert_eq(encode_err(SG_TS_ROW_DELETE, &ar, err, sizeof(err)), -EINVAL);
    attr.value = sg_ts_special(SG_TS_NULL);
    cr_assert_eq(encode_err(SG_TS_ROW_PUT, &ar, err, sizeof(err)), -EINVAL);
    attr.value = sg_ts_special(SG_TS_INF_MAX);
    cr_assert_eq(encode_err(SG_TS_ROW_PUT, &ar, err, sizeof(err)), -EINVAL);
    attr.value = sg_ts_double(1.0);
    attr.op = SG_TS_OP_INCREMENT;
    cr_assert_eq(encode_err(SG_TS_ROW_PUT, &ar, err, sizeof(err)), -EINVAL, "op in a put row");
    cr_assert_eq(encode_err(SG_TS_ROW_UPDATE, &ar, err, sizeof(err)), -EINVAL, "DOUBLE increment");
    attr.value = sg_ts_int(1);
    cr_assert_eq(encode_err(SG_TS_ROW_UPDATE, &ar, err, sizeof(err)), 0);
    attr.op = SG_TS_OP_DELETE;
    attr.has_value = false;
    cr_assert_eq(encode_err(SG_TS_ROW_UPDATE, &ar, err, sizeof(err)), -EINVAL, "DELETE needs ts");
    attr.has_ts = true;
    cr_assert_eq(encode_err(SG_TS_ROW_UPDATE, &ar, err, sizeof(err)), 0);
    attr.op = SG_TS_OP_DELETE_ALL;
    cr_assert_eq(encode_err(SG_TS_ROW_UPDATE, &ar, err, sizeof(err)), -EINVAL, "DELETE_ALL + ts");
    attr.has_ts = false;
    cr_assert_eq(encode_err(SG_TS_ROW_UPDATE, &ar, err, sizeof(err)), 0);
    attr.op = (enum sg_ts_op)2;
    cr_assert_eq(encode_err(SG_TS_ROW_UPDATE, &ar, err, sizeof(err)), -EINVAL);
    attr.op = SG_TS_OP_PUT;
    cr_assert_eq(encode_err(SG_TS_ROW_UPDATE, &ar, err, sizeof(err)), -EINVAL, "PUT needs value");

    /* A delete marker only on delete rows. */
    struct sg_ts_row dr = {.pk = &k, .pk_count = 1, .delete_marker = true};
    cr_assert_eq(encode_err(SG_TS_ROW_PUT, &dr, err, sizeof(err)), -EINVAL);
    cr_assert_eq(encode_err(SG_TS_ROW_DELETE, &dr, err, sizeof(err)), 0);
    cr_assert_eq(encode_err((enum sg_ts_row_kind)9, &dr, err, sizeof(err)), -EINVAL);
}

Test(tablestore_plainbuffer, encoder_respects_buffer_cap)
{
    struct sg_ts_column k = sg_ts_col("id", sg_ts_int(1));
    struct sg_ts_row row = {.pk = &k, .pk_count = 1};
    struct sg_buf out;
    sg_buf_init(&out, 30); /* the row needs 31 bytes */
    char err[128] = "";
    cr_assert_eq(sg_ts_pb_encode(&out, SG_TS_ROW_PK, &row, err, sizeof(err)), -E2BIG);
    cr_assert_eq(out.len, 0);
    sg_buf_free(&out);
    sg_buf_init(&out, 31);
    cr_assert_eq(sg_ts_pb_encode(&out, SG_TS_ROW_PK, &row, err, sizeof(err)), 0);
    cr_assert_eq(out.len, 31);
    sg_buf_free(&out);
}

Test(tablestore_plainbuffer, large_attribute_values_round_trip)
{
    size_t n = SG_TS_ATTR_VALUE_MAX_BYTES;
    uint8_t *blob = malloc(n);
    for (size_t i = 0; i < n; i++)
        blob[i] = (uint8_t)(i * 31);
    struct sg_ts_column k = sg_ts_col("id", sg_ts_int(-1));
    struct sg_ts_column a = sg_ts_col("b", sg_ts_blob(blob, n));
    struct sg_ts_row row = {.pk = &k, .pk_count = 1, .attrs = &a, .attr_count = 1};
    struct sg_buf out;
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_ts_pb_encode(&out, SG_TS_ROW_PUT, &row, NULL, 0), 0);
    struct sg_ts_rows rows;
    cr_assert_eq(sg_ts_pb_decode(out.data, out.len, SG_TS_DECODE_SINGLE, &rows, NULL, 0), 0);
    tv_assert_rows_equal(&rows.rows[0], &row);
    sg_ts_rows_free(&rows);
    a.value.bytes.len = n + 1;
    cr_assert_eq(sg_ts_pb_encode(&out, SG_TS_ROW_PUT, &row, NULL, 0), -EINVAL);
    sg_buf_free(&out);
    free(blob);
}
