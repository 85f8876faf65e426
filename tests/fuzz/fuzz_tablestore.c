/* The Tablestore protocol decoders: PlainBuffer rows, BatchWriteRow responses and requests, and
 * error bodies.
 *
 * Byte 0 picks the decoder (modulo 5), byte 1 the error buffers' sizes (mode 3 only); the rest
 * is the decoder's input, copied to a heap buffer of exactly its size so a read past the end is
 * an ASan report.
 *   0  sg_ts_pb_decode, one row (SG_TS_DECODE_SINGLE)
 *   1  sg_ts_pb_decode, any number of rows (SG_TS_DECODE_MULTI)
 *   2  sg_ts_bwr_parse (a BatchWriteRowResponse body); a returned row is decoded too
 *   3  sg_ts_error_parse into buffers whose sizes byte 1 picks; the rest is the body
 *   4  a BatchWriteRowRequest, as the emulator receives it: protobuf-c unpacks it, every
 *      row_change goes through sg_ts_pb_decode
 *
 * Checks (abort on violation):
 * - a PlainBuffer failure is -EINVAL or -ENOMEM with a message and an offset within the input;
 * - a decoded row that is valid for some kind re-encodes (sg_ts_pb_encode, or header plus
 *   sg_ts_pb_append_row for several rows) to exactly sg_ts_pb_row_size bytes a row, and those
 *   bytes decode to the same row: names, types, values (doubles bit for bit), ops, timestamps
 *   and the delete marker;
 * - a parsed BatchWriteRow response's per-table rows add up to its rows, failed_rows counts the
 *   rows that are not ok, and a failed row has an error code and message;
 * - a parsed error body leaves NUL-terminated strings within their buffers, and an error body
 *   built from them parses back to the same strings when they were not cut short;
 * - a request row whose decoded row is valid for its write type is rebuilt by sg_ts_bwr_build
 *   into a request that unpacks to the same tables, types and rows, and the same rows encoded
 *   one by one (sg_ts_pb_encode) and assembled by sg_ts_bwr_build_encoded give the same bytes. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ots.pb-c.h"
#include "streamgate/buf.h"
#include "streamgate/tablestore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_tablestore: %s\n", what);
    abort();
}

static void check_failure(int rc, const struct sg_ts_rows *rows, size_t len, const char *err)
{
    if (rc != -EINVAL && rc != -ENOMEM)
        fail("a decode failed with an unexpected code");
    if (rows->error_offset > len)
        fail("a decode failure reports an offset past the input");
    if (err[0] == '\0')
        fail("a decode failure without a message");
    if (rows->rows || rows->cells)
        fail("a failed decode left memory behind");
}

static bool bytes_eq(const void *a, size_t alen, const void *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static bool value_eq(const struct sg_ts_value *a, const struct sg_ts_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case SG_TS_INTEGER:
        return a->i == b->i;
    case SG_TS_DOUBLE:
        return memcmp(&a->d, &b->d, sizeof(a->d)) == 0;
    case SG_TS_BOOLEAN:
        return a->b == b->b;
    case SG_TS_STRING:
    case SG_TS_BLOB:
        return bytes_eq(a->bytes.ptr, a->bytes.len, b->bytes.ptr, b->bytes.len);
    default:
        return true;
    }
}

static bool cells_eq(const struct sg_ts_column *a, const struct sg_ts_column *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!bytes_eq(a[i].name, a[i].name_len, b[i].name, b[i].name_len) ||
            a[i].has_value != b[i].has_value || a[i].op != b[i].op || a[i].has_ts != b[i].has_ts ||
            (a[i].has_ts && a[i].ts != b[i].ts) ||
            (a[i].has_value && !value_eq(&a[i].value, &b[i].value)))
            return false;
    }
    return true;
}

static bool row_eq(const struct sg_ts_row *a, const struct sg_ts_row *b)
{
    return a->pk_count == b->pk_count && a->attr_count == b->attr_count &&
           a->delete_marker == b->delete_marker && cells_eq(a->pk, b->pk, a->pk_count) &&
           cells_eq(a->attrs, b->attrs, a->attr_count);
}

/* The first kind the row is valid for, or -1. */
static int row_kind(const struct sg_ts_row *row)
{
    static const enum sg_ts_row_kind kinds[] = {SG_TS_ROW_PUT, SG_TS_ROW_UPDATE, SG_TS_ROW_DELETE,
                                                SG_TS_ROW_PK};
    char err[256];

    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (sg_ts_row_validate(kinds[i], row, err, sizeof(err)) == 0)
            return (int)kinds[i];
    return -1;
}

/* Re-encodes the valid rows of `rows` and checks that they decode to the same rows. */
static void check_round_trip(const struct sg_ts_rows *rows, int mode)
{
    struct sg_ts_rows again = {0};
    struct sg_buf out;
    size_t expect = 4; /* the header */
    size_t *picked;
    size_t npicked = 0;
    char err[256];
    int rc;

    picked = calloc(rows->row_count ? rows->row_count : 1, sizeof(*picked));
    if (!picked)
        abort();
    sg_buf_init(&out, 0);
    if (sg_ts_pb_append_header(&out) != 0)
        fail("cannot append a header");
    for (size_t r = 0; r < rows->row_count; r++) {
        int kind = row_kind(&rows->rows[r]);

        if (kind < 0 || (mode == SG_TS_DECODE_SINGLE && npicked == 1))
            continue;
        expect += sg_ts_pb_row_size((enum sg_ts_row_kind)kind, &rows->rows[r]);
        rc = sg_ts_pb_append_row(&out, (enum sg_ts_row_kind)kind, &rows->rows[r], err, sizeof(err));
        if (rc != 0) {
            fprintf(stderr, "fuzz_tablestore: %s\n", err);
            fail("a row valid for its kind does not encode");
        }
        if (out.len != expect)
            fail("sg_ts_pb_row_size differs from what sg_ts_pb_append_row wrote");
        picked[npicked++] = r;
    }
    if (npicked > 0 && mode == SG_TS_DECODE_SINGLE) {
        struct sg_buf single;
        int kind = row_kind(&rows->rows[picked[0]]);

        sg_buf_init(&single, 0);
        if (sg_ts_pb_encode(&single, (enum sg_ts_row_kind)kind, &rows->rows[picked[0]], err,
                            sizeof(err)) != 0 ||
            !bytes_eq(single.data, single.len, out.data, out.len))
            fail("sg_ts_pb_encode differs from header + sg_ts_pb_append_row");
        sg_buf_free(&single);
    }
    if (npicked > 0) {
        rc = sg_ts_pb_decode(out.data, out.len, mode, &again, err, sizeof(err));
        if (rc != 0) {
            fprintf(stderr, "fuzz_tablestore: %s at %zu\n", err, again.error_offset);
            fail("re-encoded rows do not decode");
        }
        if (again.row_count != npicked || again.consumed != out.len)
            fail("re-encoded rows decode to another number of rows");
        for (size_t i = 0; i < npicked; i++)
            if (!row_eq(&rows->rows[picked[i]], &again.rows[i]))
                fail("a re-encoded row decodes to another row");
        sg_ts_rows_free(&again);
    }
    sg_buf_free(&out);
    free(picked);
}

static void fuzz_plainbuffer(const uint8_t *buf, size_t len, int mode)
{
    struct sg_ts_rows rows;
    char err[256] = "";
    int rc;

    memset(&rows, 0xa5, sizeof(rows)); /* the decoder must set every field it reports */
    rc = sg_ts_pb_decode(buf, len, mode, &rows, err, sizeof(err));
    if (rc != 0) {
        check_failure(rc, &rows, len, err);
        return;
    }
    if (rows.consumed > len)
        fail("consumed past the input");
    for (size_t i = rows.consumed; i < len; i++)
        if (buf[i] != 0)
            fail("a non-zero byte after the last row was accepted");
    if (mode == SG_TS_DECODE_SINGLE && rows.row_count != 1)
        fail("a single-row decode returned another number of rows");
    for (size_t r = 0; r < rows.row_count; r++) {
        const struct sg_ts_row *row = &rows.rows[r];
        const struct sg_ts_column *cols[2] = {row->pk, row->attrs};
        size_t counts[2] = {row->pk_count, row->attr_count};

        for (int k = 0; k < 2; k++) {
            for (size_t c = 0; c < counts[k]; c++) {
                const struct sg_ts_column *col = &cols[k][c];
                const uint8_t *name = (const uint8_t *)col->name;

                if (col->name_len > 0 && (name < buf || name + col->name_len > buf + len))
                    fail("a column name outside the input");
                if (col->has_value &&
                    (col->value.type == SG_TS_STRING || col->value.type == SG_TS_BLOB) &&
                    col->value.bytes.len > 0) {
                    const uint8_t *p = col->value.bytes.ptr;
                    if (p < buf || p + col->value.bytes.len > buf + len)
                        fail("a value outside the input");
                }
            }
        }
    }
    check_round_trip(&rows, mode);
    sg_ts_rows_free(&rows);
    sg_ts_rows_free(&rows); /* documented safe twice */
}

static void fuzz_bwr_response(const uint8_t *buf, size_t len)
{
    struct sg_ts_bwr_result res;
    char err[256] = "";
    size_t total = 0, failed = 0;

    if (sg_ts_bwr_parse(buf, len, &res, err, sizeof(err)) != 0) {
        if (err[0] == '\0')
            fail("a failed parse without a message");
        if (res.tables || res.rows || res.msg)
            fail("a failed parse left memory behind");
        return;
    }
    for (size_t t = 0; t < res.table_count; t++) {
        if (res.tables[t].rows != res.rows + total)
            fail("a table's rows are not where the row list says");
        total += res.tables[t].row_count;
    }
    if (total != res.row_count)
        fail("tables' rows do not add up to the rows");
    for (size_t r = 0; r < res.row_count; r++) {
        const struct sg_ts_row_result *row = &res.rows[r];

        if (!row->ok) {
            failed++;
            if (!row->error_code || !row->error_message)
                fail("a failed row without an error code or message");
        }
        if (row->row) {
            struct sg_ts_rows rows = {0};
            char perr[256] = "";
            int rc = sg_ts_pb_decode(row->row, row->row_len, SG_TS_DECODE_SINGLE, &rows, perr,
                                     sizeof(perr));
            if (rc != 0)
                check_failure(rc, &rows, row->row_len, perr);
            sg_ts_rows_free(&rows);
        }
    }
    if (failed != res.failed_rows)
        fail("failed_rows differs from the rows that are not ok");
    sg_ts_bwr_result_free(&res);
    sg_ts_bwr_result_free(&res);
}

static void fuzz_error(const uint8_t *buf, size_t len, uint8_t sizes)
{
    size_t code_size = 1 + (sizes & 0x0f) * 4, message_size = 1 + (sizes >> 4) * 16;
    char *code = malloc(code_size), *message = malloc(message_size);
    char code2[128], message2[512];
    struct sg_buf out;

    if (!code || !message)
        abort();
    if (sg_ts_error_parse(buf, len, code, code_size, message, message_size) == 0) {
        size_t clen = strnlen(code, code_size), mlen = strnlen(message, message_size);

        if (clen == code_size || mlen == message_size)
            fail("an error string is not NUL-terminated within its buffer");
        /* Round trip, unless a string filled its buffer (it may have been cut). */
        if (clen + 1 < code_size && mlen + 1 < message_size) {
            sg_buf_init(&out, 0);
            if (sg_ts_error_build(&out, code, message) != 0)
                fail("cannot build an error body");
            if (sg_ts_error_parse(out.data, out.len, code2, sizeof(code2), message2,
                                  sizeof(message2)) != 0 ||
                strcmp(code, code2) != 0 || strcmp(message, message2) != 0)
                fail("a built error body parses to other strings");
            sg_buf_free(&out);
        }
    }
    free(code);
    free(message);
}

static enum sg_ts_row_kind kind_of_write(Ots__OperationType type)
{
    switch (type) {
    case OTS__OPERATION_TYPE__PUT:
        return SG_TS_ROW_PUT;
    case OTS__OPERATION_TYPE__UPDATE:
        return SG_TS_ROW_UPDATE;
    default:
        return SG_TS_ROW_DELETE;
    }
}

/* OperationType and enum sg_ts_write_type share their numbers; anything else unpacks as
 * protobuf-c's default for the enum and is treated as DELETE, like kind_of_write. */
static int kind_of_write_type(Ots__OperationType type)
{
    return type == OTS__OPERATION_TYPE__PUT || type == OTS__OPERATION_TYPE__UPDATE
               ? (int)type
               : SG_TS_WRITE_DELETE;
}

/* The request of `tables` assembled from its rows encoded one by one must be `want`. */
static void check_encoded_build(const struct sg_ts_table_writes *tables, size_t ntables,
                                size_t nwrites, const struct sg_buf *want)
{
    struct sg_ts_encoded_table_writes *et = calloc(ntables, sizeof(*et));
    struct sg_ts_encoded_write *ew = calloc(nwrites, sizeof(*ew));
    size_t *end = calloc(nwrites, sizeof(*end));
    struct sg_buf rows, out;
    size_t w = 0;

    if (!et || !ew || !end)
        abort();
    sg_buf_init(&rows, 0);
    sg_buf_init(&out, 0);
    for (size_t t = 0; t < ntables; t++) {
        for (size_t r = 0; r < tables[t].write_count; r++, w++) {
            const struct sg_ts_write *wr = &tables[t].writes[r];
            struct sg_ts_row row = *wr->row;
            if (wr->type == SG_TS_WRITE_DELETE) {
                row.attrs = NULL;
                row.attr_count = 0;
            }
            if (sg_ts_pb_encode(&rows, kind_of_write((Ots__OperationType)wr->type), &row, NULL,
                                0) != 0)
                fail("a row sg_ts_bwr_build encoded does not encode alone");
            end[w] = rows.len;
        }
    }
    w = 0;
    for (size_t t = 0; t < ntables; t++) {
        et[t].table = tables[t].table;
        et[t].writes = &ew[w];
        et[t].write_count = tables[t].write_count;
        for (size_t r = 0; r < tables[t].write_count; r++, w++) {
            size_t start = w ? end[w - 1] : 0;
            ew[w].type = tables[t].writes[r].type;
            ew[w].row = rows.data + start;
            ew[w].row_len = end[w] - start;
            ew[w].expect = tables[t].writes[r].expect;
            ew[w].return_type = tables[t].writes[r].return_type;
        }
    }
    if (sg_ts_bwr_build_encoded(&out, et, ntables, NULL, 0) != 0 || out.len != want->len ||
        memcmp(out.data, want->data, out.len) != 0)
        fail("a request assembled from encoded rows differs from the one built from the rows");
    sg_buf_free(&out);
    sg_buf_free(&rows);
    free(end);
    free(ew);
    free(et);
}

/* A BatchWriteRowRequest: decode every row; rebuild the valid ones and compare. */
static void fuzz_bwr_request(const uint8_t *buf, size_t len)
{
    Ots__BatchWriteRowRequest *req = ots__batch_write_row_request__unpack(NULL, len, buf);
    struct sg_ts_table_writes *tables;
    struct sg_ts_write *writes;
    struct sg_ts_rows *decoded;
    size_t total = 0, nwrites = 0, ntables = 0;
    char err[256];

    if (!req)
        return;
    for (size_t t = 0; t < req->n_tables; t++)
        total += req->tables[t]->n_rows;
    tables = calloc(req->n_tables + 1, sizeof(*tables));
    writes = calloc(total + 1, sizeof(*writes));
    decoded = calloc(total + 1, sizeof(*decoded));
    if (!tables || !writes || !decoded)
        abort();
    for (size_t t = 0; t < req->n_tables; t++) {
        const Ots__TableInBatchWriteRowRequest *tm = req->tables[t];
        size_t first = nwrites;

        for (size_t r = 0; r < tm->n_rows; r++) {
            const Ots__RowInBatchWriteRowRequest *rm = tm->rows[r];
            struct sg_ts_rows *rows = &decoded[nwrites];
            enum sg_ts_row_kind kind = kind_of_write(rm->type);
            int rc = sg_ts_pb_decode(rm->row_change.data, rm->row_change.len, SG_TS_DECODE_SINGLE,
                                     rows, err, sizeof(err));

            if (rc != 0) {
                check_failure(rc, rows, rm->row_change.len, err);
                continue;
            }
            if (sg_ts_row_validate(kind, &rows->rows[0], err, sizeof(err)) != 0) {
                sg_ts_rows_free(rows);
                continue;
            }
            writes[nwrites].type = (enum sg_ts_write_type)kind_of_write_type(rm->type);
            writes[nwrites].row = &rows->rows[0];
            nwrites++;
        }
        if (nwrites > first && tm->table_name) {
            tables[ntables].table = tm->table_name;
            tables[ntables].writes = &writes[first];
            tables[ntables].write_count = nwrites - first;
            ntables++;
        }
    }
    if (ntables > 0) {
        struct sg_buf out;
        int rc;

        sg_buf_init(&out, 0);
        rc = sg_ts_bwr_build(&out, tables, ntables, err, sizeof(err));
        if (rc == 0) {
            Ots__BatchWriteRowRequest *again =
                ots__batch_write_row_request__unpack(NULL, out.len, (const uint8_t *)out.data);
            if (!again || again->n_tables != ntables)
                fail("a built BatchWriteRowRequest does not unpack to its tables");
            for (size_t t = 0; t < ntables; t++) {
                const Ots__TableInBatchWriteRowRequest *tm = again->tables[t];

                if (strcmp(tm->table_name, tables[t].table) != 0 ||
                    tm->n_rows != tables[t].write_count)
                    fail("a rebuilt table differs");
                for (size_t r = 0; r < tm->n_rows; r++) {
                    struct sg_ts_rows rows = {0};
                    if (sg_ts_pb_decode(tm->rows[r]->row_change.data, tm->rows[r]->row_change.len,
                                        SG_TS_DECODE_SINGLE, &rows, err, sizeof(err)) != 0 ||
                        !row_eq(&rows.rows[0], tables[t].writes[r].row))
                        fail("a rebuilt row differs");
                    /* OperationType and enum sg_ts_write_type share their numbers. */
                    if (kind_of_write_type(tm->rows[r]->type) != (int)tables[t].writes[r].type)
                        fail("a rebuilt row has another write type");
                    sg_ts_rows_free(&rows);
                }
            }
            ots__batch_write_row_request__free_unpacked(again, NULL);
            check_encoded_build(tables, ntables, nwrites, &out);
        } else if (rc != -EINVAL && rc != -E2BIG) {
            fail("sg_ts_bwr_build failed with an unexpected code");
        }
        sg_buf_free(&out);
    }
    for (size_t i = 0; i < total; i++)
        sg_ts_rows_free(&decoded[i]);
    free(decoded);
    free(writes);
    free(tables);
    ots__batch_write_row_request__free_unpacked(req, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf;
    size_t len;

    if (size < 2)
        return 0;
    len = size - 2;
    buf = malloc(len ? len : 1);
    if (!buf)
        abort();
    memcpy(buf, data + 2, len);
    switch (data[0] % 5) {
    case 0:
        fuzz_plainbuffer(buf, len, SG_TS_DECODE_SINGLE);
        break;
    case 1:
        fuzz_plainbuffer(buf, len, SG_TS_DECODE_MULTI);
        break;
    case 2:
        fuzz_bwr_response(buf, len);
        break;
    case 3:
        fuzz_error(buf, len, data[1]);
        break;
    case 4:
        fuzz_bwr_request(buf, len);
        break;
    }
    free(buf);
    return 0;
}
