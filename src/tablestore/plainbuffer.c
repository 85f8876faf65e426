/* PlainBuffer: the row encoding inside every row-carrying protobuf field (PROTOCOL.md section 3).
 * The encoder writes the canonical form (the bytes the Python SDK produces, without the JS SDK's
 * zero padding); the decoder accepts that padding, as the service does. */
#include "streamgate/tablestore.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tablestore_internal.h"

/* ---- CRC-8 ------------------------------------------------------------------------------- */

/* Table for polynomial 0x07, MSB first: entry i is the CRC of the single byte i. Generated from
 * the bitwise definition; the unit tests check it against that definition. */
static const uint8_t crc8_table[256] = {
    0x00, 0x07, 0x0e, 0x09, 0x1c, 0x1b, 0x12, 0x15, 0x38, 0x3f, 0x36, 0x31, 0x24, 0x23, 0x2a, 0x2d,
    0x70, 0x77, 0x7e, 0x79, 0x6c, 0x6b, 0x62, 0x65, 0x48, 0x4f, 0x46, 0x41, 0x54, 0x53, 0x5a, 0x5d,
    0xe0, 0xe7, 0xee, 0xe9, 0xfc, 0xfb, 0xf2, 0xf5, 0xd8, 0xdf, 0xd6, 0xd1, 0xc4, 0xc3, 0xca, 0xcd,
    0x90, 0x97, 0x9e, 0x99, 0x8c, 0x8b, 0x82, 0x85, 0xa8, 0xaf, 0xa6, 0xa1, 0xb4, 0xb3, 0xba, 0xbd,
    0xc7, 0xc0, 0xc9, 0xce, 0xdb, 0xdc, 0xd5, 0xd2, 0xff, 0xf8, 0xf1, 0xf6, 0xe3, 0xe4, 0xed, 0xea,
    0xb7, 0xb0, 0xb9, 0xbe, 0xab, 0xac, 0xa5, 0xa2, 0x8f, 0x88, 0x81, 0x86, 0x93, 0x94, 0x9d, 0x9a,
    0x27, 0x20, 0x29, 0x2e, 0x3b, 0x3c, 0x35, 0x32, 0x1f, 0x18, 0x11, 0x16, 0x03, 0x04, 0x0d, 0x0a,
    0x57, 0x50, 0x59, 0x5e, 0x4b, 0x4c, 0x45, 0x42, 0x6f, 0x68, 0x61, 0x66, 0x73, 0x74, 0x7d, 0x7a,
    0x89, 0x8e, 0x87, 0x80, 0x95, 0x92, 0x9b, 0x9c, 0xb1, 0xb6, 0xbf, 0xb8, 0xad, 0xaa, 0xa3, 0xa4,
    0xf9, 0xfe, 0xf7, 0xf0, 0xe5, 0xe2, 0xeb, 0xec, 0xc1, 0xc6, 0xcf, 0xc8, 0xdd, 0xda, 0xd3, 0xd4,
    0x69, 0x6e, 0x67, 0x60, 0x75, 0x72, 0x7b, 0x7c, 0x51, 0x56, 0x5f, 0x58, 0x4d, 0x4a, 0x43, 0x44,
    0x19, 0x1e, 0x17, 0x10, 0x05, 0x02, 0x0b, 0x0c, 0x21, 0x26, 0x2f, 0x28, 0x3d, 0x3a, 0x33, 0x34,
    0x4e, 0x49, 0x40, 0x47, 0x52, 0x55, 0x5c, 0x5b, 0x76, 0x71, 0x78, 0x7f, 0x6a, 0x6d, 0x64, 0x63,
    0x3e, 0x39, 0x30, 0x37, 0x22, 0x25, 0x2c, 0x2b, 0x06, 0x01, 0x08, 0x0f, 0x1a, 0x1d, 0x14, 0x13,
    0xae, 0xa9, 0xa0, 0xa7, 0xb2, 0xb5, 0xbc, 0xbb, 0x96, 0x91, 0x98, 0x9f, 0x8a, 0x8d, 0x84, 0x83,
    0xde, 0xd9, 0xd0, 0xd7, 0xc2, 0xc5, 0xcc, 0xcb, 0xe6, 0xe1, 0xe8, 0xef, 0xfa, 0xfd, 0xf4, 0xf3,
};

uint8_t sg_ts_crc8(uint8_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        crc = crc8_table[crc ^ p[i]];
    return crc;
}

static uint8_t crc8_byte(uint8_t crc, uint8_t b)
{
    return crc8_table[crc ^ b];
}

/* ---- Shared helpers ---------------------------------------------------------------------- */

int sg_ts__fail(char *errstr, size_t errstr_size, int err, const char *fmt, ...)
{
    if (errstr != NULL && errstr_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return err;
}

bool sg_ts__name_ok(const char *name, size_t len)
{
    if (name == NULL || len == 0 || len > SG_TS_NAME_MAX_BYTES)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        bool digit = c >= '0' && c <= '9';
        if (!alpha && !(digit && i > 0))
            return false;
    }
    return true;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* ---- Validation -------------------------------------------------------------------------- */

const char *sg_ts_type_name(enum sg_ts_type t)
{
    switch (t) {
    case SG_TS_INTEGER:
        return "INTEGER";
    case SG_TS_DOUBLE:
        return "DOUBLE";
    case SG_TS_BOOLEAN:
        return "BOOLEAN";
    case SG_TS_STRING:
        return "STRING";
    case SG_TS_NULL:
        return "NULL";
    case SG_TS_BLOB:
        return "BINARY";
    case SG_TS_INF_MIN:
        return "INF_MIN";
    case SG_TS_INF_MAX:
        return "INF_MAX";
    case SG_TS_AUTO_INCREMENT:
        return "AUTO_INCREMENT";
    }
    return "unknown";
}

/* A column name for messages: at most 64 bytes, since it may be arbitrary decoded input. */
#define NAME_FMT         "'%.*s'"
#define NAME_ARG(column) (int)((column)->name_len > 64 ? 64 : (column)->name_len), (column)->name

static int check_bytes(const struct sg_ts_column *c, size_t max, char *errstr, size_t errstr_size)
{
    if (c->value.bytes.len > max)
        return sg_ts__fail(errstr, errstr_size, -EINVAL,
                           "column " NAME_FMT ": %s value of %zu bytes exceeds %zu", NAME_ARG(c),
                           sg_ts_type_name(c->value.type), c->value.bytes.len, max);
    if (c->value.bytes.len > 0 && c->value.bytes.ptr == NULL)
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "column " NAME_FMT ": NULL value pointer",
                           NAME_ARG(c));
    return 0;
}

static int check_pk_column(enum sg_ts_row_kind kind, const struct sg_ts_column *c, char *errstr,
                           size_t errstr_size)
{
    if (!c->has_value || c->op != SG_TS_OP_PUT || c->has_ts)
        return sg_ts__fail(errstr, errstr_size, -EINVAL,
                           "primary key column " NAME_FMT
                           " needs a value and takes no op or timestamp",
                           NAME_ARG(c));
    switch (c->value.type) {
    case SG_TS_INTEGER:
        return 0;
    case SG_TS_STRING:
    case SG_TS_BLOB:
        return check_bytes(c, SG_TS_PK_VALUE_MAX_BYTES, errstr, errstr_size);
    case SG_TS_INF_MIN:
    case SG_TS_INF_MAX:
        if (kind == SG_TS_ROW_PK)
            return 0;
        break;
    case SG_TS_AUTO_INCREMENT:
        if (kind == SG_TS_ROW_PUT)
            return 0;
        break;
    default:
        break;
    }
    return sg_ts__fail(errstr, errstr_size, -EINVAL,
                       "primary key column " NAME_FMT ": type %s not allowed here", NAME_ARG(c),
                       sg_ts_type_name(c->value.type));
}

static int check_attr_value(const struct sg_ts_column *c, char *errstr, size_t errstr_size)
{
    switch (c->value.type) {
    case SG_TS_INTEGER:
    case SG_TS_DOUBLE:
    case SG_TS_BOOLEAN:
        return 0;
    case SG_TS_STRING:
    case SG_TS_BLOB:
        return check_bytes(c, SG_TS_ATTR_VALUE_MAX_BYTES, errstr, errstr_size);
    default:
        return sg_ts__fail(errstr, errstr_size, -EINVAL,
                           "column " NAME_FMT ": type %s not allowed for an attribute", NAME_ARG(c),
                           sg_ts_type_name(c->value.type));
    }
}

static int check_attr(enum sg_ts_row_kind kind, const struct sg_ts_column *c, char *errstr,
                      size_t errstr_size)
{
    if (kind == SG_TS_ROW_PUT && c->op != SG_TS_OP_PUT)
        return sg_ts__fail(errstr, errstr_size, -EINVAL,
                           "column " NAME_FMT ": only PUT cells in a put row", NAME_ARG(c));
    switch (c->op) {
    case SG_TS_OP_PUT:
        if (!c->has_value)
            return sg_ts__fail(errstr, errstr_size, -EINVAL,
                               "column " NAME_FMT ": PUT needs a value", NAME_ARG(c));
        return check_attr_value(c, errstr, errstr_size);
    case SG_TS_OP_DELETE:
        if (c->has_value || !c->has_ts)
            return sg_ts__fail(errstr, errstr_size, -EINVAL,
                               "column " NAME_FMT ": DELETE takes a timestamp and no value",
                               NAME_ARG(c));
        return 0;
    case SG_TS_OP_DELETE_ALL:
        if (c->has_value || c->has_ts)
            return sg_ts__fail(errstr, errstr_size, -EINVAL,
                               "column " NAME_FMT ": DELETE_ALL takes no value and no timestamp",
                               NAME_ARG(c));
        return 0;
    case SG_TS_OP_INCREMENT:
        if (!c->has_value || c->value.type != SG_TS_INTEGER || c->has_ts)
            return sg_ts__fail(errstr, errstr_size, -EINVAL,
                               "column " NAME_FMT
                               ": INCREMENT takes an INTEGER value and no timestamp",
                               NAME_ARG(c));
        return 0;
    }
    return sg_ts__fail(errstr, errstr_size, -EINVAL, "column " NAME_FMT ": unknown op %d",
                       NAME_ARG(c), (int)c->op);
}

int sg_ts_row_validate(enum sg_ts_row_kind kind, const struct sg_ts_row *row, char *errstr,
                       size_t errstr_size)
{
    if (kind < SG_TS_ROW_PK || kind > SG_TS_ROW_DELETE)
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "unknown row kind %d", (int)kind);
    if (row->pk_count < 1 || row->pk_count > SG_TS_PK_MAX_COLUMNS || row->pk == NULL)
        return sg_ts__fail(errstr, errstr_size, -EINVAL,
                           "a row needs 1 to %d primary key columns, not %zu", SG_TS_PK_MAX_COLUMNS,
                           row->pk_count);
    if ((kind == SG_TS_ROW_PK || kind == SG_TS_ROW_DELETE) && row->attr_count > 0)
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "this row takes primary key columns only");
    if (row->attr_count > 0 && row->attrs == NULL)
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "attribute columns missing");
    if (row->delete_marker && kind != SG_TS_ROW_DELETE)
        return sg_ts__fail(errstr, errstr_size, -EINVAL,
                           "delete marker on a row that is not a delete");
    for (size_t i = 0; i < row->pk_count + row->attr_count; i++) {
        bool is_pk = i < row->pk_count;
        const struct sg_ts_column *c = is_pk ? &row->pk[i] : &row->attrs[i - row->pk_count];
        if (!sg_ts__name_ok(c->name, c->name_len))
            return sg_ts__fail(errstr, errstr_size, -EINVAL,
                               "column %zu: invalid name (1-255 ASCII letters, digits, '_')", i);
        int rc = is_pk ? check_pk_column(kind, c, errstr, errstr_size)
                       : check_attr(kind, c, errstr, errstr_size);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- Encoder ----------------------------------------------------------------------------- */

static size_t payload_size(const struct sg_ts_value *v)
{
    switch (v->type) {
    case SG_TS_INTEGER:
    case SG_TS_DOUBLE:
        return 8;
    case SG_TS_BOOLEAN:
        return 1;
    case SG_TS_STRING:
    case SG_TS_BLOB:
        return 4 + v->bytes.len;
    default:
        return 0;
    }
}

static size_t cell_size(const struct sg_ts_column *c)
{
    size_t n = 1 + 1 + 4 + c->name_len + 2; /* cell tag, name tag + len + name, crc tag + crc */
    if (c->has_value)
        n += 1 + 4 + 1 + payload_size(&c->value);
    if (c->op != SG_TS_OP_PUT)
        n += 2;
    if (c->has_ts)
        n += 9;
    return n;
}

size_t sg_ts_pb_row_size(enum sg_ts_row_kind kind, const struct sg_ts_row *row)
{
    size_t n = 1 + 2; /* row pk tag, row crc tag + crc */
    for (size_t i = 0; i < row->pk_count; i++)
        n += cell_size(&row->pk[i]);
    if (kind != SG_TS_ROW_PK && kind != SG_TS_ROW_DELETE && row->attr_count > 0) {
        n += 1;
        for (size_t i = 0; i < row->attr_count; i++)
            n += cell_size(&row->attrs[i]);
    }
    if (kind == SG_TS_ROW_DELETE)
        n += 1;
    return n;
}

/* Writes one cell at `p` (room checked by the caller) and returns the end; *crc_out gets the
 * cell checksum. The CRC covers name, type + payload, timestamp, then op: the op comes after the
 * timestamp in the checksum although it comes before it on the wire. */
static uint8_t *write_cell(uint8_t *p, const struct sg_ts_column *c, uint8_t *crc_out)
{
    uint8_t crc = 0;
    *p++ = SG_TS__TAG_CELL;
    *p++ = SG_TS__TAG_CELL_NAME;
    put_u32(p, (uint32_t)c->name_len);
    p += 4;
    memcpy(p, c->name, c->name_len);
    crc = sg_ts_crc8(crc, p, c->name_len);
    p += c->name_len;
    if (c->has_value) {
        size_t plen = payload_size(&c->value);
        *p++ = SG_TS__TAG_CELL_VALUE;
        put_u32(p, (uint32_t)(1 + plen));
        p += 4;
        uint8_t *start = p;
        *p++ = (uint8_t)c->value.type;
        switch (c->value.type) {
        case SG_TS_INTEGER:
            put_u64(p, (uint64_t)c->value.i);
            break;
        case SG_TS_DOUBLE: {
            uint64_t bits;
            memcpy(&bits, &c->value.d, sizeof(bits));
            put_u64(p, bits);
            break;
        }
        case SG_TS_BOOLEAN:
            *p = c->value.b ? 1 : 0;
            break;
        case SG_TS_STRING:
        case SG_TS_BLOB:
            put_u32(p, (uint32_t)c->value.bytes.len);
            if (c->value.bytes.len > 0)
                memcpy(p + 4, c->value.bytes.ptr, c->value.bytes.len);
            break;
        default:
            break;
        }
        p += plen;
        crc = sg_ts_crc8(crc, start, (size_t)(p - start));
    }
    if (c->op != SG_TS_OP_PUT) {
        *p++ = SG_TS__TAG_CELL_TYPE;
        *p++ = (uint8_t)c->op;
    }
    if (c->has_ts) {
        *p++ = SG_TS__TAG_CELL_TS;
        put_u64(p, (uint64_t)c->ts);
        crc = sg_ts_crc8(crc, p, 8);
        p += 8;
    }
    if (c->op != SG_TS_OP_PUT)
        crc = crc8_byte(crc, (uint8_t)c->op);
    *p++ = SG_TS__TAG_CELL_CRC;
    *p++ = crc;
    *crc_out = crc;
    return p;
}

int sg_ts_pb_append_header(struct sg_buf *out)
{
    uint8_t hdr[4];
    put_u32(hdr, SG_TS__PB_HEADER);
    return sg_buf_append(out, hdr, sizeof(hdr));
}

/* Writes a validated row into room already reserved. */
static void write_row(struct sg_buf *out, enum sg_ts_row_kind kind, const struct sg_ts_row *row)
{
    uint8_t *start = (uint8_t *)out->data + out->len;
    uint8_t *p = start;
    uint8_t row_crc = 0, cell_crc;
    *p++ = SG_TS__TAG_ROW_PK;
    for (size_t i = 0; i < row->pk_count; i++) {
        p = write_cell(p, &row->pk[i], &cell_crc);
        row_crc = crc8_byte(row_crc, cell_crc);
    }
    if (kind != SG_TS_ROW_PK && kind != SG_TS_ROW_DELETE && row->attr_count > 0) {
        *p++ = SG_TS__TAG_ROW_DATA;
        for (size_t i = 0; i < row->attr_count; i++) {
            p = write_cell(p, &row->attrs[i], &cell_crc);
            row_crc = crc8_byte(row_crc, cell_crc);
        }
    }
    if (kind == SG_TS_ROW_DELETE)
        *p++ = SG_TS__TAG_DELETE_MARK;
    row_crc = crc8_byte(row_crc, kind == SG_TS_ROW_DELETE ? 1 : 0);
    *p++ = SG_TS__TAG_ROW_CRC;
    *p++ = row_crc;
    out->len += (size_t)(p - start);
}

/* Validates, then reserves room for the row (and the header if asked) so that nothing is
 * written unless everything fits: the buffer is unchanged on failure. */
static int encode(struct sg_buf *out, bool header, enum sg_ts_row_kind kind,
                  const struct sg_ts_row *row, char *errstr, size_t errstr_size)
{
    int rc = sg_ts_row_validate(kind, row, errstr, errstr_size);
    if (rc)
        return rc;
    size_t size = (header ? 4 : 0) + sg_ts_pb_row_size(kind, row);
    rc = sg_buf_reserve(out, size);
    if (rc)
        return sg_ts__fail(errstr, errstr_size, rc, "row of %zu bytes does not fit the buffer",
                           size);
    if (header) {
        put_u32((uint8_t *)out->data + out->len, SG_TS__PB_HEADER);
        out->len += 4;
    }
    write_row(out, kind, row);
    return 0;
}

int sg_ts_pb_append_row(struct sg_buf *out, enum sg_ts_row_kind kind, const struct sg_ts_row *row,
                        char *errstr, size_t errstr_size)
{
    return encode(out, false, kind, row, errstr, errstr_size);
}

int sg_ts_pb_encode(struct sg_buf *out, enum sg_ts_row_kind kind, const struct sg_ts_row *row,
                    char *errstr, size_t errstr_size)
{
    return encode(out, true, kind, row, errstr, errstr_size);
}

/* ---- Decoder ----------------------------------------------------------------------------- */

/* The decoder makes two passes over the input: the first checks everything and counts rows and
 * cells, the second (which cannot fail) fills arrays allocated to the exact size. It keeps no
 * state between rows but a counter, so deep or long input cannot exhaust the stack. */
struct pb_reader {
    const uint8_t *p;
    size_t len;
    size_t off;
    struct sg_ts_rows *fill; /* NULL on the checking pass */
    size_t rows, cells;
    char *errstr;
    size_t errstr_size;
};

__attribute__((format(printf, 3, 4))) static int bad(struct pb_reader *r, size_t at,
                                                     const char *fmt, ...)
{
    if (r->fill == NULL) {
        char msg[160];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        sg_ts__fail(r->errstr, r->errstr_size, -EINVAL, "offset %zu: %s", at, msg);
    }
    r->off = at;
    return -EINVAL;
}

static bool has(const struct pb_reader *r, size_t n)
{
    return r->len - r->off >= n;
}

static int peek(const struct pb_reader *r)
{
    return r->off < r->len ? r->p[r->off] : -1;
}

static int expect_tag(struct pb_reader *r, uint8_t tag, const char *what)
{
    if (peek(r) != tag)
        return r->off < r->len
                   ? bad(r, r->off, "expected %s (0x%02x), found 0x%02x", what, tag, r->p[r->off])
                   : bad(r, r->off, "truncated: expected %s (0x%02x)", what, tag);
    r->off++;
    return 0;
}

static int read_u32(struct pb_reader *r, uint32_t *v, const char *what)
{
    if (!has(r, 4))
        return bad(r, r->off, "truncated %s length", what);
    *v = get_u32(r->p + r->off);
    r->off += 4;
    return 0;
}

static int read_value(struct pb_reader *r, bool is_pk, struct sg_ts_value *v, uint8_t *crc)
{
    size_t at = r->off;
    uint32_t vlen = 0; /* set by read_u32; for compilers that cannot see it */
    int rc = read_u32(r, &vlen, "value");
    if (rc)
        return rc;
    if (vlen < 1)
        return bad(r, at, "empty cell value");
    if (!has(r, vlen))
        return bad(r, at, "value length %u runs past the end", vlen);
    const uint8_t *vp = r->p + r->off;
    uint8_t type = vp[0];
    size_t want;
    switch (type) {
    case SG_TS_INTEGER:
    case SG_TS_DOUBLE:
        want = 9;
        break;
    case SG_TS_BOOLEAN:
        want = 2;
        break;
    case SG_TS_STRING:
    case SG_TS_BLOB:
        if (vlen < 5)
            return bad(r, at, "value length %u too short for %s", vlen,
                       sg_ts_type_name((enum sg_ts_type)type));
        /* Compared this way round so a huge inner length cannot overflow. */
        want = get_u32(vp + 1) == vlen - 5 ? vlen : 0;
        break;
    case SG_TS_NULL:
    case SG_TS_INF_MIN:
    case SG_TS_INF_MAX:
    case SG_TS_AUTO_INCREMENT:
        want = 1;
        break;
    default:
        return bad(r, r->off, "unknown value type 0x%02x", type);
    }
    if (vlen != want)
        return bad(r, at, "value length %u does not match its %s payload", vlen,
                   sg_ts_type_name((enum sg_ts_type)type));
    bool pk_type = type == SG_TS_INTEGER || type == SG_TS_STRING || type == SG_TS_BLOB ||
                   type == SG_TS_INF_MIN || type == SG_TS_INF_MAX || type == SG_TS_AUTO_INCREMENT;
    bool attr_type = type == SG_TS_INTEGER || type == SG_TS_DOUBLE || type == SG_TS_BOOLEAN ||
                     type == SG_TS_STRING || type == SG_TS_BLOB || type == SG_TS_NULL;
    if (is_pk ? !pk_type : !attr_type)
        return bad(r, r->off, "type %s not allowed in a%s cell",
                   sg_ts_type_name((enum sg_ts_type)type), is_pk ? " primary key" : "n attribute");
    if (type == SG_TS_BOOLEAN && vp[1] > 1)
        return bad(r, r->off + 1, "boolean byte 0x%02x is not 0 or 1", vp[1]);

    v->type = (enum sg_ts_type)type;
    switch (type) {
    case SG_TS_INTEGER:
        v->i = (int64_t)get_u64(vp + 1);
        break;
    case SG_TS_DOUBLE: {
        uint64_t bits = get_u64(vp + 1);
        memcpy(&v->d, &bits, sizeof(bits));
        break;
    }
    case SG_TS_BOOLEAN:
        v->b = vp[1] != 0;
        break;
    case SG_TS_STRING:
    case SG_TS_BLOB:
        v->bytes.ptr = vp + 5;
        v->bytes.len = vlen - 5;
        break;
    default:
        break;
    }
    *crc = sg_ts_crc8(*crc, vp, vlen);
    r->off += vlen;
    return 0;
}

static int read_cell(struct pb_reader *r, bool is_pk, uint8_t *cell_crc)
{
    struct sg_ts_column c = {0};
    uint8_t crc = 0;
    int rc = expect_tag(r, SG_TS__TAG_CELL, "cell");
    if (rc == 0)
        rc = expect_tag(r, SG_TS__TAG_CELL_NAME, "cell name");
    if (rc)
        return rc;
    size_t at = r->off;
    uint32_t name_len = 0; /* likewise */
    if ((rc = read_u32(r, &name_len, "name")))
        return rc;
    if (!has(r, name_len))
        return bad(r, at, "name length %u runs past the end", name_len);
    c.name = (const char *)r->p + r->off;
    c.name_len = name_len;
    crc = sg_ts_crc8(crc, r->p + r->off, name_len);
    r->off += name_len;

    if (peek(r) == SG_TS__TAG_CELL_VALUE) {
        r->off++;
        if ((rc = read_value(r, is_pk, &c.value, &crc)))
            return rc;
        c.has_value = true;
    } else if (is_pk) {
        return bad(r, r->off, "primary key cell without a value");
    }
    if (peek(r) == SG_TS__TAG_CELL_TYPE) {
        if (is_pk)
            return bad(r, r->off, "op type in a primary key cell");
        if (!has(r, 2))
            return bad(r, r->off, "truncated op type");
        uint8_t op = r->p[r->off + 1];
        if (op != SG_TS_OP_DELETE_ALL && op != SG_TS_OP_DELETE && op != SG_TS_OP_INCREMENT)
            return bad(r, r->off + 1, "unknown op type 0x%02x", op);
        c.op = (enum sg_ts_op)op;
        r->off += 2;
    }
    if (peek(r) == SG_TS__TAG_CELL_TS) {
        if (is_pk)
            return bad(r, r->off, "timestamp in a primary key cell");
        if (!has(r, 9))
            return bad(r, r->off, "truncated timestamp");
        c.has_ts = true;
        c.ts = (int64_t)get_u64(r->p + r->off + 1);
        crc = sg_ts_crc8(crc, r->p + r->off + 1, 8);
        r->off += 9;
    }
    if (c.op != SG_TS_OP_PUT)
        crc = crc8_byte(crc, (uint8_t)c.op);
    if ((rc = expect_tag(r, SG_TS__TAG_CELL_CRC, "cell checksum")))
        return rc;
    if (!has(r, 1))
        return bad(r, r->off, "truncated cell checksum");
    if (r->p[r->off] != crc)
        return bad(r, r->off, "cell checksum mismatch for " NAME_FMT ": 0x%02x, computed 0x%02x",
                   NAME_ARG(&c), r->p[r->off], crc);
    r->off++;
    *cell_crc = crc;
    if (r->fill != NULL)
        r->fill->cells[r->cells] = c;
    r->cells++;
    return 0;
}

static int read_row(struct pb_reader *r)
{
    size_t first_cell = r->cells;
    uint8_t row_crc = 0, cell_crc;
    size_t pk_count = 0, attr_count = 0;
    int rc = expect_tag(r, SG_TS__TAG_ROW_PK, "row");
    if (rc)
        return rc;
    while (peek(r) == SG_TS__TAG_CELL) {
        if ((rc = read_cell(r, true, &cell_crc)))
            return rc;
        row_crc = crc8_byte(row_crc, cell_crc);
        pk_count++;
    }
    if (pk_count == 0)
        return bad(r, r->off, "row without primary key cells");
    if (peek(r) == SG_TS__TAG_ROW_DATA) {
        r->off++;
        while (peek(r) == SG_TS__TAG_CELL) {
            if ((rc = read_cell(r, false, &cell_crc)))
                return rc;
            row_crc = crc8_byte(row_crc, cell_crc);
            attr_count++;
        }
    }
    bool marker = false;
    if (peek(r) == SG_TS__TAG_DELETE_MARK) {
        marker = true;
        r->off++;
    }
    row_crc = crc8_byte(row_crc, marker ? 1 : 0);
    if ((rc = expect_tag(r, SG_TS__TAG_ROW_CRC, "row checksum")))
        return rc;
    if (!has(r, 1))
        return bad(r, r->off, "truncated row checksum");
    if (r->p[r->off] != row_crc)
        return bad(r, r->off, "row checksum mismatch: 0x%02x, computed 0x%02x", r->p[r->off],
                   row_crc);
    r->off++;
    if (r->fill != NULL) {
        struct sg_ts_row *row = &r->fill->rows[r->rows];
        row->pk = &r->fill->cells[first_cell];
        row->pk_count = pk_count;
        row->attrs = attr_count > 0 ? &r->fill->cells[first_cell + pk_count] : NULL;
        row->attr_count = attr_count;
        row->delete_marker = marker;
    }
    r->rows++;
    return 0;
}

static int read_buffer(struct pb_reader *r, int mode)
{
    if (r->len == 0 && mode == SG_TS_DECODE_MULTI)
        return 0;
    if (!has(r, 4))
        return bad(r, 0, "truncated header");
    if (get_u32(r->p) != SG_TS__PB_HEADER)
        return bad(r, 0, "bad header 0x%08x (expected 0x%08x)", get_u32(r->p), SG_TS__PB_HEADER);
    r->off = 4;
    while (r->off < r->len && r->p[r->off] != 0) {
        if (mode == SG_TS_DECODE_SINGLE && r->rows == 1)
            return bad(r, r->off, "trailing bytes after the row");
        int rc = read_row(r);
        if (rc)
            return rc;
    }
    if (mode == SG_TS_DECODE_SINGLE && r->rows == 0)
        return bad(r, r->off, "no row");
    size_t end = r->off;
    for (size_t i = end; i < r->len; i++)
        if (r->p[i] != 0)
            return bad(r, i, "non-zero byte 0x%02x in the padding after the last row", r->p[i]);
    r->off = end;
    return 0;
}

int sg_ts_pb_decode(const void *buf, size_t len, int mode, struct sg_ts_rows *out, char *errstr,
                    size_t errstr_size)
{
    memset(out, 0, sizeof(*out));
    if (mode != SG_TS_DECODE_SINGLE && mode != SG_TS_DECODE_MULTI)
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "unknown decode mode %d", mode);
    if (buf == NULL && len > 0)
        return sg_ts__fail(errstr, errstr_size, -EINVAL, "NULL buffer");
    struct pb_reader r = {.p = buf, .len = len, .errstr = errstr, .errstr_size = errstr_size};
    int rc = read_buffer(&r, mode);
    if (rc) {
        out->error_offset = r.off;
        return rc;
    }
    size_t consumed = r.off;
    if (r.rows > 0) {
        out->rows = calloc(r.rows, sizeof(*out->rows));
        out->cells = calloc(r.cells, sizeof(*out->cells));
        if (out->rows == NULL || out->cells == NULL) {
            sg_ts_rows_free(out);
            return sg_ts__fail(errstr, errstr_size, -ENOMEM, "out of memory");
        }
        struct pb_reader fill = {.p = buf, .len = len, .fill = out};
        rc = read_buffer(&fill, mode);
        if (rc) { /* cannot happen: the same bytes passed the checking pass */
            sg_ts_rows_free(out);
            return sg_ts__fail(errstr, errstr_size, -EINVAL, "internal decode error");
        }
    }
    out->row_count = r.rows;
    out->cell_count = r.cells;
    out->consumed = consumed;
    return 0;
}

void sg_ts_rows_free(struct sg_ts_rows *rows)
{
    free(rows->rows);
    free(rows->cells);
    rows->rows = NULL;
    rows->cells = NULL;
    rows->row_count = 0;
    rows->cell_count = 0;
}
