/* Tablestore (OTS) wire protocol: PlainBuffer rows with their CRC-8 checksums, request and
 * response signing, BatchWriteRow bodies and responses, error bodies and retry classes.
 *
 * The Tablestore writer and the Tablestore emulator share this library, so it holds no loop, no
 * socket and no global mutable state; every function works on the caller's memory. Encoders
 * append to a `struct sg_buf` (the caller's cap applies) and leave it unchanged on failure.
 * Functions return 0 or a negative errno-style code; those that can fail with detail take
 * `char *errstr, size_t errstr_size` (either may be NULL/0).
 *
 * The facts behind this code (byte layouts, signing rules, error codes) are in
 * src/tablestore/PROTOCOL.md; the conformance vectors the official SDKs made are in
 * tests/tablestore/vectors. */
#ifndef STREAMGATE_TABLESTORE_H
#define STREAMGATE_TABLESTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "streamgate/buf.h"

/* ---- Limits (PROTOCOL.md section 5) ------------------------------------------------------ */

#define SG_TS_API_VERSION           "2015-12-31"
#define SG_TS_BATCH_MAX_ROWS        200               /* rows per BatchWriteRow */
#define SG_TS_REQUEST_MAX_BYTES     (4 * 1024 * 1024) /* body of a Put/Update/BatchWriteRow */
#define SG_TS_PK_MAX_COLUMNS        4
#define SG_TS_PK_VALUE_MAX_BYTES    1024              /* PK STRING (UTF-8) and BINARY values */
#define SG_TS_NAME_MAX_BYTES        255               /* table and column names */
#define SG_TS_ATTR_VALUE_MAX_BYTES  (2 * 1024 * 1024) /* attribute STRING and BLOB values */
#define SG_TS_COLUMNS_PER_WRITE_MAX 1024
#define SG_TS_INSTANCE_MIN_BYTES    3
#define SG_TS_INSTANCE_MAX_BYTES    16

/* ---- Row model --------------------------------------------------------------------------- */

/* Value types. The numbers are the PlainBuffer type bytes. INF_MIN and INF_MAX appear only in
 * GetRange keys, AUTO_INCREMENT only in a PutRow primary key (the server fills it in). A primary
 * key BINARY column holds an SG_TS_BLOB value. */
enum sg_ts_type {
    SG_TS_INTEGER = 0x00,
    SG_TS_DOUBLE = 0x01,
    SG_TS_BOOLEAN = 0x02,
    SG_TS_STRING = 0x03,
    SG_TS_NULL = 0x06, /* decoded only: no SDK writes it, so the encoder refuses it */
    SG_TS_BLOB = 0x07,
    SG_TS_INF_MIN = 0x09,
    SG_TS_INF_MAX = 0x0a,
    SG_TS_AUTO_INCREMENT = 0x0b,
};

/* What an UpdateRow cell does. The numbers are the PlainBuffer op bytes; PUT writes none. */
enum sg_ts_op {
    SG_TS_OP_PUT = 0x00,        /* write the value (timestamp optional) */
    SG_TS_OP_DELETE_ALL = 0x01, /* delete every version of the column; no value, no timestamp */
    SG_TS_OP_DELETE = 0x03,     /* delete the version at `ts`; no value, timestamp required */
    SG_TS_OP_INCREMENT = 0x04,  /* add an INTEGER value; no timestamp */
};

/* A value. STRING and BLOB point at bytes owned elsewhere (STRING is UTF-8, not NUL-terminated
 * on decode). */
struct sg_ts_value {
    enum sg_ts_type type;
    union {
        int64_t i;
        double d;
        bool b;
        struct {
            const void *ptr;
            size_t len;
        } bytes;
    };
};

/* One cell: a primary key column or an attribute column. */
struct sg_ts_column {
    const char *name; /* ASCII letters, digits, '_'; not NUL-terminated on decode */
    size_t name_len;
    bool has_value; /* false only for DELETE / DELETE_ALL cells */
    struct sg_ts_value value;
    enum sg_ts_op op;
    bool has_ts;
    int64_t ts; /* milliseconds since the epoch */
};

/* A row: 1 to 4 primary key columns in schema order, then attribute columns. */
struct sg_ts_row {
    const struct sg_ts_column *pk;
    size_t pk_count;
    const struct sg_ts_column *attrs;
    size_t attr_count;
    bool delete_marker; /* set by the decoder; the encoder writes it for SG_TS_ROW_DELETE */
};

static inline struct sg_ts_value sg_ts_int(int64_t i)
{
    struct sg_ts_value v = {.type = SG_TS_INTEGER, .i = i};
    return v;
}

static inline struct sg_ts_value sg_ts_double(double d)
{
    struct sg_ts_value v = {.type = SG_TS_DOUBLE, .d = d};
    return v;
}

static inline struct sg_ts_value sg_ts_bool(bool b)
{
    struct sg_ts_value v = {.type = SG_TS_BOOLEAN, .b = b};
    return v;
}

static inline struct sg_ts_value sg_ts_string(const char *s, size_t len)
{
    struct sg_ts_value v = {.type = SG_TS_STRING, .bytes = {s, len}};
    return v;
}

static inline struct sg_ts_value sg_ts_blob(const void *p, size_t len)
{
    struct sg_ts_value v = {.type = SG_TS_BLOB, .bytes = {p, len}};
    return v;
}

/* INF_MIN, INF_MAX or AUTO_INCREMENT: values without a payload. */
static inline struct sg_ts_value sg_ts_special(enum sg_ts_type type)
{
    struct sg_ts_value v = {.type = type};
    return v;
}

/* A PUT cell (or a primary key column) named by a NUL-terminated string. */
static inline struct sg_ts_column sg_ts_col(const char *name, struct sg_ts_value value)
{
    struct sg_ts_column c = {
        .name = name, .name_len = strlen(name), .has_value = true, .value = value};
    return c;
}

/* ---- PlainBuffer ------------------------------------------------------------------------- */

/* What a row is for; it decides which cells are allowed (PROTOCOL.md section 3.2). */
enum sg_ts_row_kind {
    SG_TS_ROW_PK,     /* GetRow / GetRange key: PK only; INF_MIN and INF_MAX allowed */
    SG_TS_ROW_PUT,    /* PutRow, BatchWriteRow PUT, and rows a server returns: PUT cells */
    SG_TS_ROW_UPDATE, /* UpdateRow, BatchWriteRow UPDATE: cells with any op */
    SG_TS_ROW_DELETE, /* DeleteRow, BatchWriteRow DELETE: PK, then the delete marker */
};

/* The service's name of a type ("INTEGER", "BINARY" for SG_TS_BLOB, "INF_MIN", ...), for
 * messages and text formats; "unknown" for a value outside the enum. */
const char *sg_ts_type_name(enum sg_ts_type t);

/* CRC-8, polynomial 0x07, MSB first, no final XOR, continuing from `crc`. */
uint8_t sg_ts_crc8(uint8_t crc, const void *buf, size_t len);

/* Checks that `row` may be written as `kind`: names (1 to 255 ASCII letters, digits or '_', not
 * starting with a digit), 1 to 4 PK columns with key types, value sizes, op/value/timestamp
 * combinations. Returns 0 or -EINVAL with a message naming the column. */
int sg_ts_row_validate(enum sg_ts_row_kind kind, const struct sg_ts_row *row, char *errstr,
                       size_t errstr_size);

/* The exact number of bytes sg_ts_pb_append_row writes for `row` (no header). The row must be
 * valid for `kind`. */
size_t sg_ts_pb_row_size(enum sg_ts_row_kind kind, const struct sg_ts_row *row);

/* Appends the 4-byte PlainBuffer header. */
int sg_ts_pb_append_header(struct sg_buf *out);

/* Appends one row, checksums included, without a header (GetRange results put several rows
 * after one header). Validates first: -EINVAL with a message; -E2BIG / -ENOMEM from the buffer. */
int sg_ts_pb_append_row(struct sg_buf *out, enum sg_ts_row_kind kind, const struct sg_ts_row *row,
                        char *errstr, size_t errstr_size);

/* Appends a complete single-row buffer (header + row): the bytes of PutRowRequest.row,
 * UpdateRowRequest.row_change, DeleteRowRequest.primary_key, GetRowRequest.primary_key and of
 * BatchWriteRow's row_change. */
int sg_ts_pb_encode(struct sg_buf *out, enum sg_ts_row_kind kind, const struct sg_ts_row *row,
                    char *errstr, size_t errstr_size);

/* Rows decoded from one buffer. Names, strings and blobs point into the decoded input, which
 * must outlive this; the column arrays are owned here. */
struct sg_ts_rows {
    struct sg_ts_row *rows;
    size_t row_count;
    struct sg_ts_column *cells; /* storage behind every row's pk and attrs */
    size_t cell_count;
    size_t consumed;     /* bytes up to the last row checksum; the rest was zero padding */
    size_t error_offset; /* on failure: where in the input the problem was found */
};

/* Decoding modes. */
#define SG_TS_DECODE_SINGLE 0 /* exactly one row (every single-row field) */
#define SG_TS_DECODE_MULTI  1 /* zero or more rows (GetRange `rows`; empty input = no rows) */

/* Parses PlainBuffer from (buf, len), verifying every cell and row checksum and the layout of
 * every cell. Zero bytes after the last row are accepted and ignored, as the service does (the
 * JS SDK pads some rows with them); any other trailing byte is an error. Safe on arbitrary
 * input: it reads nothing past `len` and does not recurse. Returns 0, -EINVAL (malformed; the
 * message and out->error_offset say where) or -ENOMEM. On failure `out` holds nothing to free;
 * on success release it with sg_ts_rows_free. Structural checks only: use sg_ts_row_validate
 * for the rules of a given operation. */
int sg_ts_pb_decode(const void *buf, size_t len, int mode, struct sg_ts_rows *out, char *errstr,
                    size_t errstr_size);

/* Frees what sg_ts_pb_decode allocated. Safe on a zeroed struct and twice. */
void sg_ts_rows_free(struct sg_ts_rows *rows);

/* ---- Signing (PROTOCOL.md sections 1.3 and 1.4) ----------------------------------------- */

/* An HTTP header as a parser hands it over: not NUL-terminated. */
struct sg_ts_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

static inline struct sg_ts_header sg_ts_hdr(const char *name, const char *value)
{
    struct sg_ts_header h = {name, strlen(name), value, strlen(value)};
    return h;
}

#define SG_TS_SIGNATURE_SIZE     29 /* base64 of a 20-byte HMAC-SHA1, plus NUL */
#define SG_TS_MD5_SIZE           25 /* base64 of a 16-byte MD5, plus NUL */
#define SG_TS_DATE_SIZE          25 /* "2024-05-06T07:08:09.123Z" plus NUL */
#define SG_TS_MAX_SIGNED_HEADERS 64

/* base64(MD5(body)): the value of x-ots-contentmd5, for requests and responses. */
int sg_ts_content_md5(const void *body, size_t len, char out[SG_TS_MD5_SIZE]);

/* The x-ots-date value for `ms` since the epoch, UTC with milliseconds. */
int sg_ts_format_date(int64_t ms, char out[SG_TS_DATE_SIZE]);

/* The canonical x-ots-* header block both signatures use: every header whose name starts with
 * "x-ots-" (any case) except x-ots-signature, sorted by lower-case name, each as
 * "name:trimmed-value\n". At most SG_TS_MAX_SIGNED_HEADERS such headers (-E2BIG). */

/* Appends the request string-to-sign: "/" op "\nPOST\n\n" + canonical headers. */
int sg_ts_request_string_to_sign(struct sg_buf *out, const char *operation,
                                 const struct sg_ts_header *headers, size_t count);

/* The x-ots-signature value for a request: base64(HMAC-SHA1(secret, request string-to-sign)).
 * `headers` holds the x-ots-* headers to send (others are ignored). */
int sg_ts_sign_request(const char *secret, size_t secret_len, const char *operation,
                       const struct sg_ts_header *headers, size_t count,
                       char out[SG_TS_SIGNATURE_SIZE]);

/* Checks a received request's x-ots-signature (found among `headers`) against `secret`.
 * Returns 0, -EACCES on a mismatch, -ENOENT if there is no x-ots-signature. */
int sg_ts_verify_request(const char *secret, size_t secret_len, const char *operation,
                         const struct sg_ts_header *headers, size_t count);

/* Appends the response string-to-sign: canonical headers + "/" op (no method, no final LF). */
int sg_ts_response_string_to_sign(struct sg_buf *out, const char *operation,
                                  const struct sg_ts_header *headers, size_t count);

/* The signature part of a response's `Authorization: OTS <access key id>:<signature>`. */
int sg_ts_sign_response(const char *secret, size_t secret_len, const char *operation,
                        const struct sg_ts_header *headers, size_t count,
                        char out[SG_TS_SIGNATURE_SIZE]);

/* Checks a response as the Python SDK does: `authorization` (found among `headers`, any case)
 * must read "OTS <access_key_id>:<signature>" with our id and the right signature, and
 * x-ots-contentmd5 must be present and match `body`. Returns 0, -EACCES (bad signature, wrong
 * id or MD5 mismatch), -ENOENT (a header is missing) or -EINVAL (malformed authorization). */
int sg_ts_verify_response(const char *secret, size_t secret_len, const char *access_key_id,
                          const char *operation, const struct sg_ts_header *headers, size_t count,
                          const void *body, size_t body_len);

/* ---- BatchWriteRow ----------------------------------------------------------------------- */

enum sg_ts_write_type { SG_TS_WRITE_PUT = 1, SG_TS_WRITE_UPDATE = 2, SG_TS_WRITE_DELETE = 3 };

enum sg_ts_expect {
    SG_TS_EXPECT_IGNORE = 0,
    SG_TS_EXPECT_EXIST = 1,
    SG_TS_EXPECT_NOT_EXIST = 2,
};

enum sg_ts_return {
    SG_TS_RETURN_NONE = 0, /* no return_content is sent */
    SG_TS_RETURN_PK = 1,
    SG_TS_RETURN_AFTER_MODIFY = 2,
};

/* One row of a BatchWriteRow. PUT rows are encoded as SG_TS_ROW_PUT, UPDATE as SG_TS_ROW_UPDATE,
 * DELETE as SG_TS_ROW_DELETE (only the row's primary key is used). */
struct sg_ts_write {
    enum sg_ts_write_type type;
    const struct sg_ts_row *row;
    enum sg_ts_expect expect;
    enum sg_ts_return return_type;
};

struct sg_ts_table_writes {
    const char *table; /* NUL-terminated */
    const struct sg_ts_write *writes;
    size_t write_count;
};

/* Appends a serialized BatchWriteRowRequest: the tables in order, each with its rows in order, a
 * condition on every row. Rejects more than SG_TS_BATCH_MAX_ROWS rows or a body over
 * SG_TS_REQUEST_MAX_BYTES with -E2BIG, invalid rows or names with -EINVAL. */
int sg_ts_bwr_build(struct sg_buf *out, const struct sg_ts_table_writes *tables, size_t table_count,
                    char *errstr, size_t errstr_size);

/* One row of a BatchWriteRow already encoded: `row` holds the row_change bytes exactly as
 * sg_ts_pb_encode wrote them for the write's kind (SG_TS_ROW_PUT for PUT, SG_TS_ROW_UPDATE for
 * UPDATE, SG_TS_ROW_DELETE with the primary key alone for DELETE), header included. A writer
 * that holds rows for a while keeps them so: the encoding is a fraction of the size of the
 * row's columns, and nothing is encoded twice when a row is sent again. */
struct sg_ts_encoded_write {
    enum sg_ts_write_type type;
    const void *row;
    size_t row_len;
    enum sg_ts_expect expect;
    enum sg_ts_return return_type;
};

struct sg_ts_encoded_table_writes {
    const char *table; /* NUL-terminated */
    const struct sg_ts_encoded_write *writes;
    size_t write_count;
};

/* Appends the serialized BatchWriteRowRequest of rows given encoded: the same bytes
 * sg_ts_bwr_build gives for the rows they encode. The rows are taken as they are: only their
 * header is checked (-EINVAL), so they must come from sg_ts_pb_encode. Limits and errors are
 * otherwise those of sg_ts_bwr_build. */
int sg_ts_bwr_build_encoded(struct sg_buf *out, const struct sg_ts_encoded_table_writes *tables,
                            size_t table_count, char *errstr, size_t errstr_size);

/* The outcome of one row, in request order. Strings are NUL-terminated and owned by the result. */
struct sg_ts_row_result {
    bool ok;
    const char *error_code;    /* failed rows: never NULL ("" if the server sent no error) */
    const char *error_message; /* failed rows: never NULL */
    int32_t read_cu, write_cu; /* consumed capacity units, 0 if absent */
    const uint8_t *row;        /* PlainBuffer returned for RT_PK / RT_AFTER_MODIFY, or NULL */
    size_t row_len;
};

struct sg_ts_table_result {
    const char *table;
    struct sg_ts_row_result *rows;
    size_t row_count;
};

struct sg_ts_bwr_result {
    struct sg_ts_table_result *tables;
    size_t table_count;
    struct sg_ts_row_result *rows; /* every row, in request order; tables[i].rows point here */
    size_t row_count;
    size_t failed_rows;
    void *msg; /* the parsed message that owns the strings */
};

/* Parses a BatchWriteRowResponse body (HTTP 200). Returns 0, -EINVAL or -ENOMEM. On success
 * release with sg_ts_bwr_result_free; on failure nothing needs freeing. */
int sg_ts_bwr_parse(const void *body, size_t len, struct sg_ts_bwr_result *out, char *errstr,
                    size_t errstr_size);

/* Safe on a zeroed struct and twice. */
void sg_ts_bwr_result_free(struct sg_ts_bwr_result *res);

/* ---- Table administration (PROTOCOL.md sections 2.2 and 2.3) --------------------------- */

/* A primary key column: SG_TS_INTEGER, SG_TS_STRING or SG_TS_BLOB (BINARY). */
struct sg_ts_pk_column {
    const char *name;
    enum sg_ts_type type;
};

/* A predefined (defined) column: SG_TS_INTEGER, SG_TS_DOUBLE, SG_TS_BOOLEAN, SG_TS_STRING or
 * SG_TS_BLOB. A writer must send such a column with exactly this type. */
struct sg_ts_defined_column {
    const char *name;
    enum sg_ts_type type;
};

/* A global secondary index, updated asynchronously (PROTOCOL.md section 7): its own primary key
 * columns (main-table primary key columns or predefined columns; the service appends the
 * main-table primary key columns not among them), and the predefined columns it carries. */
struct sg_ts_index {
    const char *name;
    const char *const *pk;
    size_t pk_count;
    const char *const *columns;
    size_t column_count;
};

/* What a table must have: its primary key, and optionally predefined columns and indexes. */
struct sg_ts_table_schema {
    const struct sg_ts_pk_column *pk;
    size_t pk_count;
    const struct sg_ts_defined_column *defined;
    size_t defined_count;
    const struct sg_ts_index *indexes;
    size_t index_count;
};

/* What a CreateTable asks for: the schema's primary key, predefined columns and indexes (made
 * with the table). Zero max_versions means 1, zero time_to_live means -1 (rows never expire);
 * reserved throughput is always 0/0 (on demand). */
struct sg_ts_create_table {
    const char *table;
    struct sg_ts_table_schema schema;
    int32_t max_versions;
    int32_t time_to_live;
};

/* Appends a serialized DescribeTableRequest for `table`. -EINVAL for a bad name. */
int sg_ts_describe_table_build(struct sg_buf *out, const char *table, char *errstr,
                               size_t errstr_size);

/* Appends a serialized CreateTableRequest. -EINVAL for a bad name, type or column count. */
int sg_ts_create_table_build(struct sg_buf *out, const struct sg_ts_create_table *ct, char *errstr,
                             size_t errstr_size);

/* Appends a serialized CreateIndexRequest adding `index` to `table`; with include_base_data
 * the rows already in the table are indexed too. -EINVAL for a bad name or an empty index. */
int sg_ts_create_index_build(struct sg_buf *out, const char *table, const struct sg_ts_index *index,
                             bool include_base_data, char *errstr, size_t errstr_size);

/* Reads a DescribeTableResponse body (HTTP 200) and compares the table with `schema`: the
 * primary key, names and types in order, then each index. Returns 0 when everything matches;
 * -ENOENT when only indexes are missing and the table has the predefined columns to create
 * them (the message names the first); -EINVAL when the table cannot serve (another primary key,
 * an index of that name with other columns, a predefined column missing or of another type;
 * the message says what: a configuration error); -EBADMSG for an unreadable body. */
int sg_ts_describe_table_check(const void *body, size_t len, const char *table,
                               const struct sg_ts_table_schema *schema, char *errstr,
                               size_t errstr_size);

/* ---- Reading: GetRange and BatchGetRow -------------------------------------------------- */

#define SG_TS_BATCH_GET_MAX_ROWS 100 /* rows per BatchGetRow (PROTOCOL.md section 5) */

enum sg_ts_direction { SG_TS_FORWARD = 0, SG_TS_BACKWARD = 1 };

/* A GetRange of one version per column. The bounds are single-row primary key buffers as
 * sg_ts_pb_encode writes them for SG_TS_ROW_PK (INF_MIN / INF_MAX allowed); going BACKWARD the
 * start is the higher bound. limit 0: none (the service still pages). No columns: all. */
struct sg_ts_get_range {
    const char *table; /* a table or an index */
    enum sg_ts_direction direction;
    const void *start;
    size_t start_len;
    const void *end;
    size_t end_len;
    int32_t limit;
    const char *const *columns;
    size_t column_count;
};

/* Appends a serialized GetRangeRequest. -EINVAL for a bad name, bound or limit. */
int sg_ts_get_range_build(struct sg_buf *out, const struct sg_ts_get_range *gr, char *errstr,
                          size_t errstr_size);

/* A GetRange answer: its rows, and where the next page starts (NULL: the range is done). The
 * rows and next_start point into the parsed message, owned here. */
struct sg_ts_range_result {
    struct sg_ts_rows rows;
    const uint8_t *next_start;
    size_t next_start_len;
    void *msg;
};

/* Parses a GetRangeResponse body (HTTP 200), checking every row's checksums. Returns 0,
 * -EINVAL or -ENOMEM; on failure nothing needs freeing. */
int sg_ts_get_range_parse(const void *body, size_t len, struct sg_ts_range_result *out,
                          char *errstr, size_t errstr_size);

/* Safe on a zeroed struct and twice. */
void sg_ts_range_result_free(struct sg_ts_range_result *res);

/* Appends a serialized BatchGetRowRequest for `count` rows of one table (1 to
 * SG_TS_BATCH_GET_MAX_ROWS; -E2BIG past it), each key a single-row primary key buffer. */
int sg_ts_batch_get_build(struct sg_buf *out, const char *table, const void *const *keys,
                          const size_t *key_lens, size_t count, const char *const *columns,
                          size_t column_count, char *errstr, size_t errstr_size);

/* One row of a BatchGetRow answer, in request order: failed (ok false, with the service's
 * error), missing (ok, not found), or found and decoded. */
struct sg_ts_batch_get_row {
    bool ok, found;
    const char *error_code, *error_message;
    struct sg_ts_rows decoded; /* found: one row */
};

struct sg_ts_batch_get_result {
    struct sg_ts_batch_get_row *rows;
    size_t row_count;
    void *msg;
};

/* Parses a one-table BatchGetRowResponse body (HTTP 200). Returns 0, -EINVAL or -ENOMEM; on
 * failure nothing needs freeing. */
int sg_ts_batch_get_parse(const void *body, size_t len, struct sg_ts_batch_get_result *out,
                          char *errstr, size_t errstr_size);

/* Safe on a zeroed struct and twice. */
void sg_ts_batch_get_result_free(struct sg_ts_batch_get_result *res);

/* ---- Errors and retries (PROTOCOL.md section 4) ----------------------------------------- */

/* Parses the Error body of a non-2xx response into the caller's buffers (truncated to fit,
 * always NUL-terminated). Returns 0 or -EINVAL for a body that is not an Error message. */
int sg_ts_error_parse(const void *body, size_t len, char *code, size_t code_size, char *message,
                      size_t message_size);

/* Appends a serialized Error message (what an emulator sends with a non-2xx status). */
int sg_ts_error_build(struct sg_buf *out, const char *code, const char *message);

/* When an error may be retried, following the official SDKs' default policies. */
enum sg_ts_retry {
    SG_TS_RETRY_NEVER = 0,      /* the request is wrong or forbidden; resending fails again */
    SG_TS_RETRY_ALWAYS = 1,     /* throttling or contention: retry any operation with backoff */
    SG_TS_RETRY_IDEMPOTENT = 2, /* timeouts and server errors: the write may have happened;
                                   retry only what can be safely repeated */
};

/* Classifies an error by code (with the message where it matters: OTSQuotaExhausted) and, for
 * codes outside the table, by HTTP status: 5xx is SG_TS_RETRY_IDEMPOTENT, anything else NEVER.
 * `http_status` is 0 for per-row BatchWriteRow errors; `code` and `message` may be NULL. */
enum sg_ts_retry sg_ts_error_classify(int http_status, const char *code, const char *message);

/* The HTTP status the service answers with for `code`, or 0 if the code is not in the table. */
int sg_ts_error_http_status(const char *code);

/* True for the operations the SDKs treat as read-only (ListTable, DescribeTable, GetRow,
 * BatchGetRow, GetRange): the ones they retry on SG_TS_RETRY_IDEMPOTENT errors. */
bool sg_ts_operation_is_read_only(const char *operation);

/* Whether to retry `operation` after this error: ALWAYS errors, and IDEMPOTENT ones when the
 * operation is read-only or the caller knows the write is an idempotent upsert. */
bool sg_ts_error_should_retry(const char *operation, bool idempotent_write, int http_status,
                              const char *code, const char *message);

#endif
