/* The Tablestore operations: each takes a serialized protobuf request (any bytes: a malformed
 * one gets OTSParameterInvalid), acts on the store and builds the serialized response, or an
 * Error body with the status the service uses (PROTOCOL.md section 4.1). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ots.pb-c.h"
#include "streamgate/common.h"
#include "tsemu.h"

#define MSG_TABLE_NOT_EXIST "Requested table does not exist."
#define MSG_TABLE_EXIST     "Requested table already exists."
#define MSG_CONDITION_FAIL  "Condition check failed."
#define MSG_INDEX_READ_ONLY "Index table '%.64s' is read-only: write to its main table '%.64s'."
#define BATCH_GET_MAX_ROWS  100 /* rows per BatchGetRow (PROTOCOL.md section 5) */

struct op_ctx {
    struct tsemu_store *store;
    int64_t now_ms;
    double busy_rows;
    uint64_t *rng;
    struct tsemu_reply *reply;
};

/* An error found while checking or applying one write: the code and message to answer. */
struct write_err {
    const char *code;
    char msg[256];
};

__attribute__((format(printf, 3, 4))) static int werr(struct write_err *e, const char *code,
                                                      const char *fmt, ...)
{
    va_list ap;

    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

int tsemu_reply_error(struct tsemu_reply *reply, int status, const char *code, const char *msg)
{
    reply->status = status;
    reply->code = code;
    sg_buf_reset(&reply->body);
    return sg_ts_error_build(&reply->body, code, msg) < 0 ? -ENOMEM : 0;
}

/* Answers a write_err with the status the service uses for its code. */
static int reply_werr(struct tsemu_reply *reply, const struct write_err *e)
{
    int status = sg_ts_error_http_status(e->code);

    return tsemu_reply_error(reply, status ? status : 400, e->code, e->msg);
}

__attribute__((format(printf, 3, 4))) static int reply_fail(struct tsemu_reply *reply,
                                                            const char *code, const char *fmt, ...)
{
    struct write_err e;
    va_list ap;

    e.code = code;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
    va_end(ap);
    return reply_werr(reply, &e);
}

static int reply_pack(struct tsemu_reply *reply, const ProtobufCMessage *msg)
{
    size_t size = protobuf_c_message_get_packed_size(msg);

    reply->status = 200;
    reply->code = NULL;
    sg_buf_reset(&reply->body);
    if (sg_buf_reserve(&reply->body, size + 1) < 0)
        return -ENOMEM;
    reply->body.len = protobuf_c_message_pack(msg, (uint8_t *)reply->body.data);
    return 0;
}

static bool name_ok(const char *s, size_t len)
{
    if (len < 1 || len > SG_TS_NAME_MAX_BYTES || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

static int32_t capacity_units(size_t bytes)
{
    size_t cu = (bytes + 4095) / 4096;

    return cu < 1 ? 1 : (int32_t)SG_MIN(cu, (size_t)INT32_MAX);
}

static struct tsemu_table *table_or_fail(struct op_ctx *ctx, const char *name)
{
    struct tsemu_table *t = name ? tsemu_store_table_find(ctx->store, name, strlen(name)) : NULL;

    if (!t)
        reply_fail(ctx->reply, "OTSObjectNotExist", MSG_TABLE_NOT_EXIST);
    return t;
}

/* ---- Keys ------------------------------------------------------------------------------ */

/* Checks a decoded key against the table's schema and fills `key` with views of its values
 * (no copies). INF_MIN/INF_MAX are allowed in range keys; AUTO_INCREMENT in put keys, where it
 * must be declared and is replaced by the next value (only once the write is known to go
 * ahead: *auto_col says which column, or -1). */
static int key_from_row(const struct tsemu_table *t, const struct sg_ts_row *row, bool range,
                        bool put, struct tsemu_value key[SG_TS_PK_MAX_COLUMNS], int *auto_col,
                        struct write_err *e)
{
    if (auto_col)
        *auto_col = -1;
    if (row->pk_count != t->pk_count)
        return werr(e, "OTSParameterInvalid", "Validate PK size fail. Input: %zu, Meta: %zu.",
                    row->pk_count, t->pk_count);
    for (size_t i = 0; i < t->pk_count; i++) {
        const struct sg_ts_column *c = &row->pk[i];
        const struct tsemu_pk_schema *s = &t->pk[i];
        enum sg_ts_type vt = c->value.type;

        memset(&key[i], 0, sizeof(key[i]));
        if (c->name_len != strlen(s->name) || memcmp(c->name, s->name, c->name_len) != 0)
            return werr(e, "OTSParameterInvalid", "Validate PK name fail. Input: %.*s, Meta: %s.",
                        (int)SG_MIN(c->name_len, (size_t)64), c->name, s->name);
        if ((vt == SG_TS_INF_MIN || vt == SG_TS_INF_MAX) && range) {
            key[i].type = vt;
            continue;
        }
        if (vt == SG_TS_AUTO_INCREMENT && put && s->auto_increment && auto_col) {
            key[i].type = SG_TS_INTEGER;
            key[i].i = t->next_auto + 1;
            *auto_col = (int)i;
            continue;
        }
        if (vt != s->type)
            return werr(e, "OTSParameterInvalid", "Validate PK type fail. Input: %s, Meta: %s.",
                        sg_ts_type_name(vt), sg_ts_type_name(s->type));
        key[i].type = vt;
        key[i].i = c->value.i;
        if (vt == SG_TS_STRING || vt == SG_TS_BLOB) {
            key[i].bytes = (uint8_t *)(uintptr_t)c->value.bytes.ptr;
            key[i].len = c->value.bytes.len;
        }
    }
    return 0;
}

/* Decodes one PlainBuffer row of the given kind (checksums, layout and the operation's rules). */
static int decode_row(const ProtobufCBinaryData *pb, enum sg_ts_row_kind kind,
                      struct sg_ts_rows *rows, struct write_err *e)
{
    char detail[160] = "";
    int rc;

    rc = sg_ts_pb_decode(pb->data, pb->len, SG_TS_DECODE_SINGLE, rows, detail, sizeof(detail));
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0)
        return werr(e, "OTSParameterInvalid", "Invalid PlainBuffer: %s", detail);
    rc = sg_ts_row_validate(kind, &rows->rows[0], detail, sizeof(detail));
    if (rc < 0) {
        sg_ts_rows_free(rows);
        return werr(e, "OTSParameterInvalid", "Invalid row: %s", detail);
    }
    if (rows->rows[0].attr_count > SG_TS_COLUMNS_PER_WRITE_MAX) {
        sg_ts_rows_free(rows);
        return werr(e, "OTSOutOfColumnCountLimit", "The number of columns exceeds the limit: %d.",
                    SG_TS_COLUMNS_PER_WRITE_MAX);
    }
    return 0;
}

/* ---- Reading rows back ----------------------------------------------------------------- */

/* Which cell versions a read returns. */
struct read_filter {
    char **columns;
    size_t n_columns;
    int32_t max_versions;
    bool has_range;
    int64_t start, end; /* [start, end) */
    int64_t expire_before;
};

static bool filter_wants(const struct read_filter *f, const char *name, size_t len)
{
    if (f->n_columns == 0)
        return true;
    for (size_t i = 0; i < f->n_columns; i++)
        if (strlen(f->columns[i]) == len && memcmp(f->columns[i], name, len) == 0)
            return true;
    return false;
}

static int filter_from_request(struct read_filter *f, const struct tsemu_table *t, char **columns,
                               size_t n_columns, const Ots__TimeRange *tr, bool has_max,
                               int32_t max_versions, int64_t now_ms, struct write_err *e)
{
    memset(f, 0, sizeof(*f));
    f->columns = columns;
    f->n_columns = n_columns;
    f->expire_before = t->ttl > 0 ? now_ms - (int64_t)t->ttl * 1000 : INT64_MIN;
    if (!has_max && !tr)
        return werr(e, "OTSParameterInvalid", "Neither max_versions nor time_range is set.");
    if (has_max && max_versions <= 0)
        return werr(e, "OTSParameterInvalid", "max_versions must be greater than 0.");
    f->max_versions = has_max ? max_versions : INT32_MAX;
    if (tr) {
        f->has_range = true;
        if (tr->has_specific_time) {
            f->start = tr->specific_time;
            f->end = tr->specific_time == INT64_MAX ? INT64_MAX : tr->specific_time + 1;
        } else if (tr->has_start_time && tr->has_end_time && tr->start_time < tr->end_time &&
                   tr->start_time >= 0) {
            f->start = tr->start_time;
            f->end = tr->end_time;
        } else {
            return werr(e, "OTSParameterInvalid", "Invalid time range.");
        }
    }
    return 0;
}

/* Appends `row` (PK, then the versions `f` selects, newest first per column) as a PUT row.
 * With a filter naming columns none of which the row has, nothing is appended and *written is
 * false. */
static int append_stored_row(struct sg_buf *out, const struct tsemu_table *t,
                             const struct tsemu_row *row, const struct read_filter *f,
                             bool *written)
{
    struct sg_ts_column *cols;
    struct sg_ts_row r = {0};
    size_t total = t->pk_count, n = 0;
    bool pk_named = false;
    int rc;

    *written = false;
    for (size_t i = 0; i < row->cell_count; i++)
        total += row->cells[i].count;
    cols = calloc(total ? total : 1, sizeof(*cols));
    if (!cols)
        return -ENOMEM;
    for (size_t i = 0; i < t->pk_count; i++) {
        cols[n] = sg_ts_col(t->pk[i].name, tsemu_value_view(&row->pk[i]));
        if (f && f->n_columns && filter_wants(f, t->pk[i].name, strlen(t->pk[i].name)))
            pk_named = true;
        n++;
    }
    for (size_t i = 0; f && i < row->cell_count; i++) {
        const struct tsemu_cell *cell = &row->cells[i];
        int32_t taken = 0;

        if (!filter_wants(f, cell->name, cell->name_len))
            continue;
        for (size_t v = 0; v < cell->count && taken < f->max_versions; v++) {
            const struct tsemu_version *ver = &cell->versions[v];
            if (ver->ts < f->expire_before)
                break; /* versions are newest first: the rest expired too */
            if (f->has_range && (ver->ts < f->start || ver->ts >= f->end))
                continue;
            cols[n].name = cell->name;
            cols[n].name_len = cell->name_len;
            cols[n].has_value = true;
            cols[n].value = tsemu_value_view(&ver->value);
            cols[n].op = SG_TS_OP_PUT;
            cols[n].has_ts = true;
            cols[n].ts = ver->ts;
            n++;
            taken++;
        }
    }
    if (f && f->n_columns && !pk_named && n == t->pk_count) {
        free(cols);
        return 0;
    }
    r.pk = cols;
    r.pk_count = t->pk_count;
    r.attrs = cols + t->pk_count;
    r.attr_count = n - t->pk_count;
    rc = sg_ts_pb_append_row(out, SG_TS_ROW_PUT, &r, NULL, 0);
    free(cols);
    if (rc == 0)
        *written = true;
    return rc == -EINVAL ? -ENOMEM : rc;
}

/* A PK-only row (return content RT_PK, GetRange's next start key). */
static int append_key(struct sg_buf *out, const struct tsemu_table *t,
                      const struct tsemu_value *key, enum sg_ts_row_kind kind)
{
    struct sg_ts_column cols[SG_TS_PK_MAX_COLUMNS];
    struct sg_ts_row r = {.pk = cols, .pk_count = t->pk_count};

    for (size_t i = 0; i < t->pk_count; i++)
        cols[i] = sg_ts_col(t->pk[i].name, tsemu_value_view(&key[i]));
    return sg_ts_pb_encode(out, kind, &r, NULL, 0) < 0 ? -ENOMEM : 0;
}

/* append_stored_row for a packed row. */
static int append_packed_row(struct sg_buf *out, const struct tsemu_table *t,
                             const struct tsemu_packed *p, const struct read_filter *f,
                             bool *written)
{
    struct tsemu_row row;
    int rc = tsemu_row_unpack(t, p, &row);

    *written = false;
    if (rc == 0)
        rc = append_stored_row(out, t, &row, f, written);
    tsemu_row_free_contents(&row);
    return rc;
}

/* The key of a packed row as a PK-only row. */
static int append_packed_key(struct sg_buf *out, const struct tsemu_table *t,
                             const struct tsemu_packed *p)
{
    struct tsemu_row row;
    int rc = tsemu_row_unpack(t, p, &row);

    if (rc == 0)
        rc = append_key(out, t, row.pk, SG_TS_ROW_PK);
    tsemu_row_free_contents(&row);
    return rc;
}

/* ---- Writes ---------------------------------------------------------------------------- */

/* A predefined column that an index uses must be written with its declared type. */
static int check_indexed_types(const struct tsemu_table *t, const struct sg_ts_row *in,
                               struct write_err *e)
{
    for (size_t i = 0; t->index_count > 0 && i < in->attr_count; i++) {
        const struct sg_ts_column *c = &in->attrs[i];

        if (!c->has_value || !tsemu_index_uses(t, c->name, c->name_len))
            continue;
        for (size_t d = 0; d < t->defined_count; d++) {
            const struct tsemu_defined_col *dc = &t->defined[d];
            int want = tsemu_defined_value_type(dc->type);

            if (strlen(dc->name) != c->name_len || memcmp(dc->name, c->name, c->name_len) != 0)
                continue;
            if ((int)c->value.type != want)
                return werr(e, "OTSParameterInvalid",
                            "Column %s is a predefined column of type %s: got %s.", dc->name,
                            sg_ts_type_name((enum sg_ts_type)want), sg_ts_type_name(c->value.type));
        }
    }
    return 0;
}

/* Applies one PUT, UPDATE or DELETE with its condition. Returns 0, -EINVAL with `e` filled
 * (nothing changed), or -ENOMEM. `ret` gets the return content, if asked for. */
static int apply_write(struct op_ctx *ctx, struct tsemu_table *t, enum sg_ts_write_type type,
                       const ProtobufCBinaryData *pb, const Ots__Condition *cond,
                       const Ots__ReturnContent *rcontent, struct sg_buf *ret, bool *has_ret,
                       struct write_err *e)
{
    static const enum sg_ts_row_kind kinds[] = {
        [SG_TS_WRITE_PUT] = SG_TS_ROW_PUT,
        [SG_TS_WRITE_UPDATE] = SG_TS_ROW_UPDATE,
        [SG_TS_WRITE_DELETE] = SG_TS_ROW_DELETE,
    };
    struct tsemu_value key[SG_TS_PK_MAX_COLUMNS];
    struct sg_ts_rows rows = {0};
    const struct sg_ts_row *in;
    struct tsemu_row work = {0}, old = {0}, *row = NULL;
    struct tsemu_cursor cur;
    int expect = cond ? (int)cond->row_existence : 0;
    int rtype = rcontent && rcontent->has_return_type ? (int)rcontent->return_type : 0;
    int auto_col = -1;
    bool creates = false, found;
    int rc;

    *has_ret = false;
    if (t->main)
        return werr(e, "OTSParameterInvalid", MSG_INDEX_READ_ONLY, t->name, t->main->name);
    if (expect < 0 || expect > 2)
        return werr(e, "OTSParameterInvalid", "Invalid row existence expectation: %d.", expect);
    if (cond && cond->has_column_condition && cond->column_condition.len > 0)
        return werr(e, "OTSParameterInvalid",
                    "Column conditions are not supported by the emulator.");
    if (rtype < 0 || rtype > 2)
        return werr(e, "OTSParameterInvalid", "Invalid return type: %d.", rtype);
    rc = decode_row(pb, kinds[type], &rows, e);
    if (rc < 0)
        return rc;
    in = &rows.rows[0];
    rc = key_from_row(t, in, false, type == SG_TS_WRITE_PUT, key, &auto_col, e);
    if (rc < 0)
        goto out;
    rc = check_indexed_types(t, in, e);
    if (rc < 0)
        goto out;
    if (auto_col >= 0 && expect != 0) {
        rc = werr(e, "OTSParameterInvalid",
                  "The row existence expectation must be IGNORE with an auto-increment column.");
        goto out;
    }

    found = tsemu_table_seek(t, key, &cur);
    if ((expect == 1 && !found) || (expect == 2 && found)) {
        rc = werr(e, "OTSConditionCheckFail", MSG_CONDITION_FAIL);
        goto out;
    }
    if (found) {
        rc = tsemu_row_unpack(t, tsemu_cursor_row(t, &cur), &work);
        if (rc == 0 && t->index_count > 0)
            rc = tsemu_row_unpack(t, tsemu_cursor_row(t, &cur), &old);
        if (rc < 0)
            goto out;
        row = &work;
    }

    if (type == SG_TS_WRITE_UPDATE) {
        /* Check every INCREMENT before changing anything, so a failed update changes nothing. */
        for (size_t i = 0; i < in->attr_count; i++) {
            const struct sg_ts_column *c = &in->attrs[i];
            struct tsemu_cell *cell;

            if (c->op == SG_TS_OP_PUT || c->op == SG_TS_OP_INCREMENT)
                creates = true;
            if (c->op != SG_TS_OP_INCREMENT || !row)
                continue;
            cell = tsemu_row_cell(row, c->name, c->name_len);
            if (cell && cell->count > 0 && cell->versions[0].value.type != SG_TS_INTEGER) {
                rc = werr(e, "OTSParameterInvalid",
                          "Column %.*s: INCREMENT needs an INTEGER column, not %s.",
                          (int)SG_MIN(c->name_len, (size_t)64), c->name,
                          sg_ts_type_name(cell->versions[0].value.type));
                goto out;
            }
        }
    }

    switch (type) {
    case SG_TS_WRITE_PUT:
        if (auto_col >= 0)
            t->next_auto++;
        if (!row) {
            row = &work;
            rc = tsemu_row_set_key(t, row, key);
            if (rc < 0)
                goto out;
        } else {
            tsemu_row_clear(row);
        }
        for (size_t i = 0; i < in->attr_count; i++) {
            const struct sg_ts_column *c = &in->attrs[i];

            rc = tsemu_row_put(row, c->name, c->name_len, c->has_ts ? c->ts : ctx->now_ms,
                               &c->value, t->max_versions);
            if (rc < 0)
                goto out;
        }
        break;
    case SG_TS_WRITE_UPDATE:
        if (!row && !creates)
            break; /* only deletions on a row that does not exist: nothing to do */
        if (!row) {
            row = &work;
            rc = tsemu_row_set_key(t, row, key);
            if (rc < 0)
                goto out;
        }
        for (size_t i = 0; i < in->attr_count; i++) {
            const struct sg_ts_column *c = &in->attrs[i];
            struct tsemu_cell *cell;
            struct sg_ts_value v;

            switch (c->op) {
            case SG_TS_OP_PUT:
                rc = tsemu_row_put(row, c->name, c->name_len, c->has_ts ? c->ts : ctx->now_ms,
                                   &c->value, t->max_versions);
                break;
            case SG_TS_OP_DELETE:
                tsemu_row_delete_version(row, c->name, c->name_len, c->ts);
                break;
            case SG_TS_OP_DELETE_ALL:
                tsemu_row_delete_column(row, c->name, c->name_len);
                break;
            case SG_TS_OP_INCREMENT:
                cell = tsemu_row_cell(row, c->name, c->name_len);
                memset(&v, 0, sizeof(v));
                v.type = SG_TS_INTEGER;
                /* Two's complement wrap-around rather than undefined overflow. */
                v.i = (int64_t)((uint64_t)c->value.i +
                                (uint64_t)(cell && cell->count ? cell->versions[0].value.i : 0));
                rc = tsemu_row_put(row, c->name, c->name_len, ctx->now_ms, &v, t->max_versions);
                break;
            }
            if (rc < 0)
                goto out;
        }
        break;
    case SG_TS_WRITE_DELETE:
        if (found)
            tsemu_table_erase(t, &cur);
        row = NULL;
        break;
    }
    if (row) {
        rc = tsemu_table_store(t, &cur, row, found);
        if (rc < 0)
            goto out;
    }
    if (t->index_count > 0 && (found || row)) {
        rc = tsemu_index_row_changed(ctx->store, t, found ? &old : NULL, row, ctx->now_ms, false);
        if (rc < 0)
            goto out;
    }

    if (rtype != 0 && ret) {
        if (rtype == 2 && row && rcontent->n_return_column_names > 0) {
            struct read_filter f = {.columns = rcontent->return_column_names,
                                    .n_columns = rcontent->n_return_column_names,
                                    .max_versions = 1,
                                    .expire_before = INT64_MIN};
            size_t mark = ret->len;
            bool written = false;

            rc = sg_ts_pb_append_header(ret);
            if (rc == 0)
                rc = append_stored_row(ret, t, row, &f, &written);
            if (rc == 0 && !written) {
                ret->len = mark; /* none of the named columns: the key alone */
                rc = append_key(ret, t, row->pk, SG_TS_ROW_PUT);
            }
        } else {
            rc = append_key(ret, t, key, SG_TS_ROW_PUT);
        }
        if (rc < 0) {
            rc = -ENOMEM;
            goto out;
        }
        *has_ret = true;
    }
    rc = 0;
out:
    tsemu_row_free_contents(&work);
    tsemu_row_free_contents(&old);
    sg_ts_rows_free(&rows);
    return rc;
}

/* ---- Table operations ------------------------------------------------------------------ */

static bool in_list(char **names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

/* Checks IndexMeta `m` of main table `t` (which may not be in the store yet) and fills `out`
 * with views of its names. `existing` indexes are already there (or in the same request). */
static int index_from_meta(const struct tsemu_table *t, const Ots__IndexMeta *m, size_t existing,
                           struct tsemu_index *out, struct write_err *e)
{
    size_t pk_total = m->n_primary_key;

    memset(out, 0, sizeof(*out));
    if (existing >= TSEMU_MAX_INDEXES)
        return werr(e, "OTSParameterInvalid", "Number of index per table exceeds the quota:%d.",
                    TSEMU_MAX_INDEXES);
    if (!name_ok(m->name, strlen(m->name)))
        return werr(e, "OTSParameterInvalid", "Invalid index name: '%.64s'.", m->name);
    if (m->n_primary_key < 1 || m->n_primary_key > TSEMU_MAX_INDEX_COLS)
        return werr(e, "OTSParameterInvalid",
                    "The number of primary key columns must be in range: [1, %d] in index.",
                    TSEMU_MAX_INDEX_COLS);
    if (m->n_defined_column > TSEMU_MAX_INDEX_ATTRS)
        return werr(e, "OTSParameterInvalid",
                    "The number of attribute columns must be in range: [0, %d] in index.",
                    TSEMU_MAX_INDEX_ATTRS);
    if (!((m->index_type == OTS__INDEX_TYPE__IT_GLOBAL_INDEX &&
           m->index_update_mode == OTS__INDEX_UPDATE_MODE__IUM_ASYNC_INDEX) ||
          (m->index_type == OTS__INDEX_TYPE__IT_LOCAL_INDEX &&
           m->index_update_mode == OTS__INDEX_UPDATE_MODE__IUM_SYNC_INDEX)))
        return werr(e, "OTSParameterInvalid",
                    "Index '%.64s': a global index is updated asynchronously and a local one "
                    "synchronously (index_type %d, index_update_mode %d).",
                    m->name, (int)m->index_type, (int)m->index_update_mode);
    if (t->max_versions != 1)
        return werr(e, "OTSParameterInvalid",
                    "The max versions of a table with index must be 1, not %d.",
                    (int)t->max_versions);
    if (t->ttl != -1)
        return werr(e, "OTSParameterInvalid",
                    "Don't support allow update operation on table with index and ttl");
    for (size_t i = 0; i < m->n_primary_key; i++) {
        const char *c = m->primary_key[i];
        bool is_pk = false;

        for (size_t k = 0; k < t->pk_count; k++) {
            if (strcmp(t->pk[k].name, c) != 0)
                continue;
            is_pk = true;
            pk_total--; /* not appended again */
            if (i == 0 && t->pk[k].auto_increment)
                return werr(e, "OTSParameterInvalid",
                            "The first column of index '%.64s' cannot be an auto-increment "
                            "column.",
                            m->name);
        }
        if (in_list(m->primary_key, i, c))
            return werr(e, "OTSParameterInvalid", "Duplicated column '%.64s' in index.", c);
        if (!is_pk) {
            int vt = -1;

            for (size_t d = 0; d < t->defined_count; d++)
                if (strcmp(t->defined[d].name, c) == 0)
                    vt = tsemu_defined_value_type(t->defined[d].type);
            if (vt < 0)
                return werr(e, "OTSParameterInvalid",
                            "Column '%.64s' of index '%.64s' is neither a primary key column "
                            "nor a predefined column.",
                            c, m->name);
            if (vt != SG_TS_INTEGER && vt != SG_TS_STRING && vt != SG_TS_BLOB)
                return werr(e, "OTSParameterInvalid",
                            "Column '%.64s' of index '%.64s' must be INTEGER, STRING or BINARY.", c,
                            m->name);
        }
        out->cols[i] = (char *)c;
    }
    pk_total += t->pk_count;
    if (pk_total > SG_TS_PK_MAX_COLUMNS)
        return werr(e, "OTSParameterInvalid",
                    "Index '%.64s' would have %zu primary key columns: the emulator supports at "
                    "most %d.",
                    m->name, pk_total, SG_TS_PK_MAX_COLUMNS);
    if (m->index_type == OTS__INDEX_TYPE__IT_LOCAL_INDEX &&
        strcmp(m->primary_key[0], t->pk[0].name) != 0)
        return werr(e, "OTSParameterInvalid",
                    "The first primary key column of local index '%.64s' must be '%.64s'.", m->name,
                    t->pk[0].name);
    for (size_t i = 0; i < m->n_defined_column; i++) {
        const char *c = m->defined_column[i];
        bool defined = false;

        for (size_t d = 0; d < t->defined_count; d++)
            defined = defined || strcmp(t->defined[d].name, c) == 0;
        if (!defined)
            return werr(e, "OTSParameterInvalid",
                        "Attribute column '%.64s' of index '%.64s' is not a predefined column.", c,
                        m->name);
        if (in_list(m->defined_column, i, c))
            return werr(e, "OTSParameterInvalid", "Duplicated column '%.64s' in index.", c);
        out->attrs[i] = (char *)c;
    }
    out->name = m->name;
    out->col_count = m->n_primary_key;
    out->attr_count = m->n_defined_column;
    out->index_type = (int)m->index_type;
    out->update_mode = (int)m->index_update_mode;
    return 0;
}

/* Answers what tsemu_index_add or tsemu_store_table_create returned. */
static int reply_create_rc(struct op_ctx *ctx, int rc, const ProtobufCMessage *resp)
{
    if (rc == -EEXIST)
        return reply_fail(ctx->reply, "OTSObjectAlreadyExist", MSG_TABLE_EXIST);
    if (rc == -ENOSPC)
        return reply_fail(ctx->reply, "OTSQuotaExhausted", "Number of tables exceeded the quota.");
    if (rc < 0)
        return -ENOMEM;
    return reply_pack(ctx->reply, resp);
}

static int op_create_table(struct op_ctx *ctx, const void *body, size_t len)
{
    Ots__CreateTableRequest *req = ots__create_table_request__unpack(NULL, len, body);
    Ots__CreateTableResponse resp = OTS__CREATE_TABLE_RESPONSE__INIT;
    struct tsemu_index ixs[TSEMU_MAX_INDEXES];
    struct tsemu_table tpl = {0}, *t = NULL;
    const Ots__TableMeta *meta;
    int rc;

    if (!req)
        return reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid CreateTableRequest.");
    if (req->n_index_metas > TSEMU_MAX_INDEXES) {
        ots__create_table_request__free_unpacked(req, NULL);
        return reply_fail(ctx->reply, "OTSParameterInvalid",
                          "Number of index per table exceeds the quota:%d.", TSEMU_MAX_INDEXES);
    }
    meta = req->table_meta;
    tpl.name = meta->table_name;
    tpl.max_versions = 1;
    tpl.ttl = TSEMU_DEFAULT_TTL;
    tpl.created_ms = ctx->now_ms;
    if (!name_ok(meta->table_name, strlen(meta->table_name))) {
        rc = reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid table name: '%.64s'.",
                        meta->table_name);
        goto out;
    }
    if (meta->n_primary_key < 1 || meta->n_primary_key > SG_TS_PK_MAX_COLUMNS) {
        rc = reply_fail(ctx->reply, "OTSParameterInvalid",
                        "The number of primary key columns must be in range: [1, 4].");
        goto out;
    }
    tpl.pk_count = meta->n_primary_key;
    for (size_t i = 0; i < meta->n_primary_key; i++) {
        const Ots__PrimaryKeySchema *s = meta->primary_key[i];
        static const enum sg_ts_type types[] = {0, SG_TS_INTEGER, SG_TS_STRING, SG_TS_BLOB};

        if (!name_ok(s->name, strlen(s->name))) {
            rc = reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid column name: '%.64s'.",
                            s->name);
            goto out;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(s->name, meta->primary_key[j]->name) == 0) {
                rc = reply_fail(ctx->reply, "OTSParameterInvalid",
                                "Duplicated primary key name: '%.64s'.", s->name);
                goto out;
            }
        }
        if (s->type < 1 || s->type > 3) {
            rc = reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid primary key type: %d.",
                            (int)s->type);
            goto out;
        }
        if (s->has_option && (s->option != OTS__PRIMARY_KEY_OPTION__AUTO_INCREMENT ||
                              s->type != OTS__PRIMARY_KEY_TYPE__INTEGER || i == 0)) {
            rc = reply_fail(ctx->reply, "OTSParameterInvalid",
                            "AUTO_INCREMENT needs an INTEGER primary key column that is not the "
                            "partition key.");
            goto out;
        }
        tpl.pk[i].name = s->name;
        tpl.pk[i].type = types[s->type];
        tpl.pk[i].auto_increment = s->has_option;
    }
    if (meta->n_defined_column > TSEMU_MAX_DEFINED_COLS) {
        rc = reply_fail(ctx->reply, "OTSParameterInvalid",
                        "The number of defined columns must be in range: [0, %d].",
                        TSEMU_MAX_DEFINED_COLS);
        goto out;
    }
    tpl.defined_count = meta->n_defined_column;
    for (size_t i = 0; i < meta->n_defined_column; i++) {
        const Ots__DefinedColumnSchema *d = meta->defined_column[i];
        int type = (int)d->type;

        if (!name_ok(d->name, strlen(d->name)) ||
            !(type == 1 || type == 2 || type == 3 || type == 4 || type == 7)) {
            rc = reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid defined column: '%.64s'.",
                            d->name);
            goto out;
        }
        tpl.defined[i].name = d->name;
        tpl.defined[i].type = type;
    }
    if (req->reserved_throughput->capacity_unit) {
        const Ots__CapacityUnit *cu = req->reserved_throughput->capacity_unit;
        if ((cu->has_read && (cu->read < 0 || cu->read > 100000)) ||
            (cu->has_write && (cu->write < 0 || cu->write > 100000))) {
            rc = reply_fail(ctx->reply, "OTSParameterInvalid",
                            "Reserved capacity units must be in range: [0, 100000].");
            goto out;
        }
        tpl.read_cu = cu->read;
        tpl.write_cu = cu->write;
    }
    if (req->table_options) {
        const Ots__TableOptions *o = req->table_options;
        if (o->has_max_versions) {
            if (o->max_versions < 1 || o->max_versions > TSEMU_MAX_VERSIONS_CAP) {
                rc = reply_fail(ctx->reply, "OTSParameterInvalid",
                                "max_versions must be in range: [1, %d].", TSEMU_MAX_VERSIONS_CAP);
                goto out;
            }
            tpl.max_versions = o->max_versions;
        }
        if (o->has_time_to_live) {
            if (o->time_to_live != -1 && o->time_to_live < 86400) {
                rc = reply_fail(ctx->reply, "OTSParameterInvalid",
                                "time_to_live must be -1 or at least 86400 seconds.");
                goto out;
            }
            tpl.ttl = o->time_to_live;
        }
    }
    for (size_t i = 0; i < req->n_index_metas; i++) {
        struct write_err e;
        const char *n = req->index_metas[i]->name;

        if (index_from_meta(&tpl, req->index_metas[i], i, &ixs[i], &e) < 0) {
            rc = reply_werr(ctx->reply, &e);
            goto out;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(n, ixs[j].name) == 0) {
                rc = reply_fail(ctx->reply, "OTSObjectAlreadyExist", MSG_TABLE_EXIST);
                goto out;
            }
        }
        if (strcmp(n, tpl.name) == 0 || tsemu_store_table_find(ctx->store, n, strlen(n))) {
            rc = reply_fail(ctx->reply, "OTSObjectAlreadyExist", MSG_TABLE_EXIST);
            goto out;
        }
    }
    if (!tsemu_store_table_find(ctx->store, tpl.name, strlen(tpl.name)) &&
        ctx->store->table_count + 1 + req->n_index_metas > TSEMU_MAX_TABLES) {
        rc = reply_fail(ctx->reply, "OTSQuotaExhausted", "Number of tables exceeded the quota.");
        goto out;
    }
    rc = tsemu_store_table_create(ctx->store, &tpl, &t);
    for (size_t i = 0; rc == 0 && i < req->n_index_metas; i++)
        rc = tsemu_index_add(ctx->store, t, &ixs[i], false, ctx->now_ms);
    rc = reply_create_rc(ctx, rc, &resp.base);
out:
    ots__create_table_request__free_unpacked(req, NULL);
    return rc;
}

static int op_delete_table(struct op_ctx *ctx, const void *body, size_t len)
{
    Ots__DeleteTableRequest *req = ots__delete_table_request__unpack(NULL, len, body);
    Ots__DeleteTableResponse resp = OTS__DELETE_TABLE_RESPONSE__INIT;
    struct tsemu_table *t;
    int rc;

    if (!req)
        return reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid DeleteTableRequest.");
    t = tsemu_store_table_find(ctx->store, req->table_name, strlen(req->table_name));
    if (t && t->main)
        rc = reply_fail(ctx->reply, "OTSParameterInvalid",
                        "'%.64s' is an index of table '%.64s': drop it with DropIndex.", t->name,
                        t->main->name);
    else if (tsemu_store_table_delete(ctx->store, req->table_name, strlen(req->table_name)) < 0)
        rc = reply_fail(ctx->reply, "OTSObjectNotExist", MSG_TABLE_NOT_EXIST);
    else
        rc = reply_pack(ctx->reply, &resp.base);
    ots__delete_table_request__free_unpacked(req, NULL);
    return rc;
}

static int op_list_table(struct op_ctx *ctx, const void *body, size_t len)
{
    Ots__ListTableRequest *req = ots__list_table_request__unpack(NULL, len, body);
    Ots__ListTableResponse resp = OTS__LIST_TABLE_RESPONSE__INIT;
    char *names[TSEMU_MAX_TABLES];
    size_t n = 0;

    if (!req)
        return reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid ListTableRequest.");
    ots__list_table_request__free_unpacked(req, NULL);
    for (size_t i = 0; i < ctx->store->table_count; i++)
        if (!ctx->store->tables[i]->main) /* data tables only, not indexes */
            names[n++] = ctx->store->tables[i]->name;
    resp.n_table_names = n;
    resp.table_names = names;
    return reply_pack(ctx->reply, &resp.base);
}

static int op_describe_table(struct op_ctx *ctx, const void *body, size_t len)
{
    Ots__DescribeTableRequest *req = ots__describe_table_request__unpack(NULL, len, body);
    Ots__DescribeTableResponse resp = OTS__DESCRIBE_TABLE_RESPONSE__INIT;
    Ots__TableMeta meta = OTS__TABLE_META__INIT;
    Ots__PrimaryKeySchema pks[SG_TS_PK_MAX_COLUMNS], *pkp[SG_TS_PK_MAX_COLUMNS];
    Ots__DefinedColumnSchema dcs[TSEMU_MAX_DEFINED_COLS], *dcp[TSEMU_MAX_DEFINED_COLS];
    Ots__ReservedThroughputDetails rtd = OTS__RESERVED_THROUGHPUT_DETAILS__INIT;
    Ots__CapacityUnit cu = OTS__CAPACITY_UNIT__INIT;
    Ots__TableOptions opts = OTS__TABLE_OPTIONS__INIT;
    Ots__IndexMeta ims[TSEMU_MAX_INDEXES], *imp[TSEMU_MAX_INDEXES];
    struct tsemu_table *t;
    int rc;

    if (!req)
        return reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid DescribeTableRequest.");
    t = table_or_fail(ctx, req->table_name);
    ots__describe_table_request__free_unpacked(req, NULL);
    if (!t)
        return ctx->reply->body.len ? 0 : -ENOMEM;
    meta.table_name = t->name;
    for (size_t i = 0; i < t->pk_count; i++) {
        static const Ots__PrimaryKeyType types[] = {
            [SG_TS_INTEGER] = OTS__PRIMARY_KEY_TYPE__INTEGER,
            [SG_TS_STRING] = OTS__PRIMARY_KEY_TYPE__STRING,
            [SG_TS_BLOB] = OTS__PRIMARY_KEY_TYPE__BINARY,
        };
        ots__primary_key_schema__init(&pks[i]);
        pks[i].name = t->pk[i].name;
        pks[i].type = types[t->pk[i].type];
        if (t->pk[i].auto_increment) {
            pks[i].has_option = true;
            pks[i].option = OTS__PRIMARY_KEY_OPTION__AUTO_INCREMENT;
        }
        pkp[i] = &pks[i];
    }
    meta.n_primary_key = t->pk_count;
    meta.primary_key = pkp;
    for (size_t i = 0; i < t->defined_count; i++) {
        ots__defined_column_schema__init(&dcs[i]);
        dcs[i].name = t->defined[i].name;
        dcs[i].type = (Ots__DefinedColumnType)t->defined[i].type;
        dcp[i] = &dcs[i];
    }
    meta.n_defined_column = t->defined_count;
    meta.defined_column = dcp;
    cu.has_read = cu.has_write = true;
    cu.read = t->read_cu;
    cu.write = t->write_cu;
    rtd.capacity_unit = &cu;
    rtd.last_increase_time = t->created_ms / 1000;
    opts.has_time_to_live = opts.has_max_versions = true;
    opts.time_to_live = t->ttl;
    opts.max_versions = t->max_versions;
    opts.has_deviation_cell_version_in_sec = true;
    opts.deviation_cell_version_in_sec = 86400;
    opts.has_allow_update = true;
    opts.allow_update = true;
    resp.table_meta = &meta;
    resp.reserved_throughput_details = &rtd;
    resp.table_options = &opts;
    resp.has_table_status = true;
    resp.table_status = OTS__TABLE_STATUS__ACTIVE;
    for (size_t i = 0; i < t->index_count; i++) {
        const struct tsemu_index *ix = t->indexes[i];

        ots__index_meta__init(&ims[i]);
        ims[i].name = ix->name;
        ims[i].n_primary_key = ix->col_count;
        ims[i].primary_key = (char **)ix->cols;
        ims[i].n_defined_column = ix->attr_count;
        ims[i].defined_column = (char **)ix->attrs;
        ims[i].index_update_mode = (Ots__IndexUpdateMode)ix->update_mode;
        ims[i].index_type = (Ots__IndexType)ix->index_type;
        ims[i].has_index_sync_phase = true;
        ims[i].index_sync_phase = OTS__INDEX_SYNC_PHASE__ISP_INCR;
        imp[i] = &ims[i];
    }
    resp.n_index_metas = t->index_count;
    resp.index_metas = imp;
    rc = reply_pack(ctx->reply, &resp.base);
    return rc;
}

static int op_create_index(struct op_ctx *ctx, const void *body, size_t len)
{
    Ots__CreateIndexRequest *req = ots__create_index_request__unpack(NULL, len, body);
    Ots__CreateIndexResponse resp = OTS__CREATE_INDEX_RESPONSE__INIT;
    struct tsemu_index ix;
    struct tsemu_table *t;
    struct write_err e;
    int rc;

    if (!req)
        return reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid CreateIndexRequest.");
    t = table_or_fail(ctx, req->main_table_name);
    if (!t) {
        rc = ctx->reply->body.len ? 0 : -ENOMEM;
    } else if (t->main) {
        rc = reply_fail(ctx->reply, "OTSParameterInvalid", "'%.64s' is an index table.", t->name);
    } else if (index_from_meta(t, req->index_meta, t->index_count, &ix, &e) < 0) {
        rc = reply_werr(ctx->reply, &e);
    } else {
        rc = tsemu_index_add(ctx->store, t, &ix,
                             req->has_include_base_data && req->include_base_data, ctx->now_ms);
        rc = reply_create_rc(ctx, rc, &resp.base);
    }
    ots__create_index_request__free_unpacked(req, NULL);
    return rc;
}

static int op_drop_index(struct op_ctx *ctx, const void *body, size_t len)
{
    Ots__DropIndexRequest *req = ots__drop_index_request__unpack(NULL, len, body);
    Ots__DropIndexResponse resp = OTS__DROP_INDEX_RESPONSE__INIT;
    struct tsemu_table *t;
    int rc;

    if (!req)
        return reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid DropIndexRequest.");
    t = table_or_fail(ctx, req->main_table_name);
    if (!t)
        rc = ctx->reply->body.len ? 0 : -ENOMEM;
    else if (tsemu_index_drop(ctx->store, t, req->index_name) < 0)
        rc = reply_fail(ctx->reply, "OTSObjectNotExist",
                        "Index '%.64s' of table '%.64s' does not exist.", req->index_name, t->name);
    else
        rc = reply_pack(ctx->reply, &resp.base);
    ots__drop_index_request__free_unpacked(req, NULL);
    return rc;
}

/* ---- Row operations -------------------------------------------------------------------- */

/* PutRow, UpdateRow and DeleteRow share everything but the message types. */
static int single_write(struct op_ctx *ctx, enum sg_ts_write_type type, const char *table_name,
                        const ProtobufCBinaryData *pb, const Ots__Condition *cond,
                        const Ots__ReturnContent *rcontent, ProtobufCMessage *resp,
                        Ots__ConsumedCapacity *consumed, ProtobufCBinaryData *row_field,
                        protobuf_c_boolean *has_row)
{
    Ots__CapacityUnit cu = OTS__CAPACITY_UNIT__INIT;
    struct tsemu_table *t = table_or_fail(ctx, table_name);
    struct sg_buf ret;
    struct write_err e;
    bool has_ret = false;
    int rc;

    if (!t)
        return ctx->reply->body.len ? 0 : -ENOMEM;
    sg_buf_init(&ret, SG_TS_REQUEST_MAX_BYTES * 2);
    rc = apply_write(ctx, t, type, pb, cond, rcontent, &ret, &has_ret, &e);
    if (rc == -EINVAL) {
        rc = reply_werr(ctx->reply, &e);
        goto out;
    }
    if (rc < 0)
        goto out;
    cu.has_read = cu.has_write = true;
    cu.read = 0;
    cu.write = capacity_units(pb->len);
    consumed->capacity_unit = &cu;
    if (has_ret) {
        *has_row = true;
        row_field->data = (uint8_t *)ret.data;
        row_field->len = ret.len;
    }
    rc = reply_pack(ctx->reply, resp);
out:
    sg_buf_free(&ret);
    return rc;
}

static int op_put_row(struct op_ctx *ctx, const void *body, size_t len)
{
    Ots__PutRowRequest *req = ots__put_row_request__unpack(NULL, len, body);
    Ots__PutRowResponse resp = OTS__PUT_ROW_RESPONSE__INIT;
    Ots__ConsumedCapacity consumed = OTS__CONSUMED_CAPACITY__INIT;
    int rc;

    if (!req)
        return reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid PutRowRequest.");
    resp.consumed = &consumed;
    rc = single_write(ctx, SG_TS_WRITE_PUT, req->table_name, &req->row, req->condition,
                      req->return_content, &resp.base, &consumed, &resp.row, &resp.has_row);
    ots__put_row_request__free_unpacked(req, NULL);
    return rc;
}

static int op_update_row(struct op_ctx *ctx, const void *body, size_t len)
{
    Ots__UpdateRowRequest *req = ots__update_row_request__unpack(NULL, len, body);
    Ots__UpdateRowResponse resp = OTS__UPDATE_ROW_RESPONSE__INIT;
    Ots__ConsumedCapacity consumed = OTS__CONSUMED_CAPACITY__INIT;
    int rc;

    if (!req)
        return reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid UpdateRowRequest.");
    resp.consumed = &consumed;
    rc = single_write(ctx, SG_TS_WRITE_UPDATE, req->table_name, &req->row_change, req->condition,
                      req->return_content, &resp.base, &consumed, &resp.row, &resp.has_row);
    ots__update_row_request__free_unpacked(req, NULL);
    return rc;
}

static int op_delete_row(struct op_ctx *ctx, const void *body, size_t len)
{
    Ots__DeleteRowRequest *req = ots__delete_row_request__unpack(NULL, len, body);
    Ots__DeleteRowResponse resp = OTS__DELETE_ROW_RESPONSE__INIT;
    Ots__ConsumedCapacity consumed = OTS__CONSUMED_CAPACITY__INIT;
    int rc;

    if (!req)
        return reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid DeleteRowRequest.");
    resp.consumed = &consumed;
    rc = single_write(ctx, SG_TS_WRITE_DELETE, req->table_name, &req->primary_key, req->condition,
                      req->return_content, &resp.base, &consumed, &resp.row, &resp.has_row);
    ots__delete_row_request__free_unpacked(req, NULL);
    return rc;
}

/* Decodes a GetRow/GetRange key (PK only) and checks it against the schema. */
static int read_key(const struct tsemu_table *t, const ProtobufCBinaryData *pb, bool range,
                    struct sg_ts_rows *rows, struct tsemu_value key[SG_TS_PK_MAX_COLUMNS],
                    struct write_err *e)
{
    int rc = decode_row(pb, SG_TS_ROW_PK, rows, e);

    if (rc < 0)
        return rc;
    rc = key_from_row(t, &rows->rows[0], range, false, key, NULL, e);
    if (rc < 0)
        sg_ts_rows_free(rows);
    return rc;
}

static int op_get_row(struct op_ctx *ctx, const void *body, size_t len)
{
    Ots__GetRowRequest *req = ots__get_row_request__unpack(NULL, len, body);
    Ots__GetRowResponse resp = OTS__GET_ROW_RESPONSE__INIT;
    Ots__ConsumedCapacity consumed = OTS__CONSUMED_CAPACITY__INIT;
    Ots__CapacityUnit cu = OTS__CAPACITY_UNIT__INIT;
    struct tsemu_value key[SG_TS_PK_MAX_COLUMNS];
    struct sg_ts_rows rows = {0};
    struct read_filter f;
    struct tsemu_table *t;
    struct tsemu_cursor cur;
    struct write_err e;
    struct sg_buf out;
    int rc;

    if (!req)
        return reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid GetRowRequest.");
    sg_buf_init(&out, 0);
    t = table_or_fail(ctx, req->table_name);
    if (!t) {
        rc = ctx->reply->body.len ? 0 : -ENOMEM;
        goto out;
    }
    rc = read_key(t, &req->primary_key, false, &rows, key, &e);
    if (rc == 0)
        rc = filter_from_request(&f, t, req->columns_to_get, req->n_columns_to_get, req->time_range,
                                 req->has_max_versions, req->max_versions, ctx->now_ms, &e);
    if (rc == -EINVAL) {
        rc = reply_werr(ctx->reply, &e);
        goto out;
    }
    if (rc < 0)
        goto out;
    if (tsemu_table_seek(t, key, &cur)) {
        bool written;

        rc = sg_ts_pb_append_header(&out);
        if (rc == 0)
            rc = append_packed_row(&out, t, tsemu_cursor_row(t, &cur), &f, &written);
        if (rc < 0)
            goto out;
        if (!written)
            out.len = 0;
    }
    cu.has_read = cu.has_write = true;
    cu.read = capacity_units(out.len);
    consumed.capacity_unit = &cu;
    resp.consumed = &consumed;
    resp.row.data = (uint8_t *)out.data;
    resp.row.len = out.len;
    rc = reply_pack(ctx->reply, &resp.base);
out:
    sg_ts_rows_free(&rows);
    sg_buf_free(&out);
    ots__get_row_request__free_unpacked(req, NULL);
    return rc;
}

static int op_get_range(struct op_ctx *ctx, const void *body, size_t len)
{
    Ots__GetRangeRequest *req = ots__get_range_request__unpack(NULL, len, body);
    Ots__GetRangeResponse resp = OTS__GET_RANGE_RESPONSE__INIT;
    Ots__ConsumedCapacity consumed = OTS__CONSUMED_CAPACITY__INIT;
    Ots__CapacityUnit cu = OTS__CAPACITY_UNIT__INIT;
    struct tsemu_value start[SG_TS_PK_MAX_COLUMNS], end[SG_TS_PK_MAX_COLUMNS];
    struct sg_ts_rows start_rows = {0}, end_rows = {0};
    struct sg_buf out, next;
    struct read_filter f;
    struct tsemu_table *t;
    struct write_err e;
    bool backward, more = false, valid;
    size_t returned = 0, limit = TSEMU_RANGE_MAX_ROWS;
    struct tsemu_cursor cur;
    int rc;

    if (!req)
        return reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid GetRangeRequest.");
    sg_buf_init(&out, 0);
    sg_buf_init(&next, 0);
    t = table_or_fail(ctx, req->table_name);
    if (!t) {
        rc = ctx->reply->body.len ? 0 : -ENOMEM;
        goto out;
    }
    backward = req->direction == OTS__DIRECTION__BACKWARD;
    rc = 0;
    if (req->direction != OTS__DIRECTION__FORWARD && !backward)
        rc = werr(&e, "OTSParameterInvalid", "Invalid direction: %d.", (int)req->direction);
    if (rc == 0 && req->has_limit && req->limit <= 0)
        rc = werr(&e, "OTSParameterInvalid", "The limit must be greater than 0.");
    if (rc == 0)
        rc = read_key(t, &req->inclusive_start_primary_key, true, &start_rows, start, &e);
    if (rc == 0)
        rc = read_key(t, &req->exclusive_end_primary_key, true, &end_rows, end, &e);
    if (rc == 0)
        rc = filter_from_request(&f, t, req->columns_to_get, req->n_columns_to_get, req->time_range,
                                 req->has_max_versions, req->max_versions, ctx->now_ms, &e);
    if (rc == 0) {
        int c = tsemu_pk_cmp(t, start, end);
        if (!backward && c >= 0)
            rc = werr(&e, "OTSParameterInvalid", "Begin key must be less than end key in FORWARD.");
        else if (backward && c <= 0)
            rc = werr(&e, "OTSParameterInvalid",
                      "Begin key must be greater than end key in BACKWARD.");
    }
    if (rc == -EINVAL) {
        rc = reply_werr(ctx->reply, &e);
        goto out;
    }
    if (rc < 0)
        goto out;
    if (req->has_limit && (size_t)req->limit < limit)
        limit = (size_t)req->limit;

    /* Backward, the start key is inclusive too: from it if it exists, else the row before. */
    valid = tsemu_table_seek(t, start, &cur) || !backward || tsemu_cursor_prev(t, &cur);
    rc = sg_ts_pb_append_header(&out);
    while (rc == 0 && valid && tsemu_cursor_row(t, &cur)) {
        const struct tsemu_packed *row = tsemu_cursor_row(t, &cur);
        int c = tsemu_packed_cmp(t, row, end);
        bool written;

        if ((!backward && c >= 0) || (backward && c <= 0))
            break;
        if (returned >= limit || out.len >= TSEMU_RANGE_MAX_BYTES) {
            more = true;
            rc = append_packed_key(&next, t, row);
            break;
        }
        rc = append_packed_row(&out, t, row, &f, &written);
        if (written)
            returned++;
        if (backward)
            valid = tsemu_cursor_prev(t, &cur);
        else
            tsemu_cursor_next(t, &cur);
    }
    if (rc < 0)
        goto out;
    if (returned == 0)
        out.len = 0; /* no rows: an empty field, not a lone header */
    cu.has_read = cu.has_write = true;
    cu.read = capacity_units(out.len);
    consumed.capacity_unit = &cu;
    resp.consumed = &consumed;
    resp.rows.data = (uint8_t *)out.data;
    resp.rows.len = out.len;
    if (more) {
        resp.has_next_start_primary_key = true;
        resp.next_start_primary_key.data = (uint8_t *)next.data;
        resp.next_start_primary_key.len = next.len;
    }
    rc = reply_pack(ctx->reply, &resp.base);
out:
    sg_ts_rows_free(&start_rows);
    sg_ts_rows_free(&end_rows);
    sg_buf_free(&out);
    sg_buf_free(&next);
    ots__get_range_request__free_unpacked(req, NULL);
    return rc;
}

/* ---- BatchWriteRow --------------------------------------------------------------------- */

/* The whole-request checks of BatchWriteRow and BatchGetRow: at least one row, at most `max`,
 * no table named twice (`name(req, i)` is the name of table i). True when the request was
 * refused; *rc is then what answering it returned. */
static bool batch_refused(struct op_ctx *ctx, const void *req, size_t n_tables,
                          const char *(*name)(const void *req, size_t i), size_t total, int max,
                          int *rc)
{
    if (total == 0) {
        *rc = reply_fail(ctx->reply, "OTSParameterInvalid", "No row in the request.");
        return true;
    }
    if (total > (size_t)max) {
        *rc = reply_fail(ctx->reply, "OTSParameterInvalid",
                         "Rows count exceeds the upper limit: %d.", max);
        return true;
    }
    for (size_t ti = 0; ti < n_tables; ti++) {
        for (size_t tj = 0; tj < ti; tj++) {
            if (strcmp(name(req, ti), name(req, tj)) == 0) {
                *rc = reply_fail(ctx->reply, "OTSParameterInvalid",
                                 "Duplicated table name: '%.64s'.", name(req, ti));
                return true;
            }
        }
    }
    return false;
}

/* A per-row error of a batch answer. */
static void batch_row_error(Ots__Error *error, const struct write_err *e)
{
    ots__error__init(error);
    error->code = (char *)e->code;
    error->message = (char *)e->msg;
}

static const char *bwr_table_name(const void *req, size_t i)
{
    return ((const Ots__BatchWriteRowRequest *)req)->tables[i]->table_name;
}

static const char *bgr_table_name(const void *req, size_t i)
{
    return ((const Ots__BatchGetRowRequest *)req)->tables[i]->table_name;
}

/* Per-row results, kept apart from the response messages that point into them. */
struct bwr_row {
    Ots__RowInBatchWriteRowResponse msg;
    Ots__Error error;
    Ots__ConsumedCapacity consumed;
    Ots__CapacityUnit cu;
    struct write_err e;
    size_t ret_off, ret_len;
    bool has_ret;
};

static int op_batch_write_row(struct op_ctx *ctx, const void *body, size_t len)
{
    Ots__BatchWriteRowRequest *req = ots__batch_write_row_request__unpack(NULL, len, body);
    Ots__BatchWriteRowResponse resp = OTS__BATCH_WRITE_ROW_RESPONSE__INIT;
    Ots__TableInBatchWriteRowResponse *tables = NULL, **table_ptrs = NULL;
    Ots__RowInBatchWriteRowResponse **row_ptrs = NULL;
    struct bwr_row *results = NULL;
    struct sg_buf ret;
    size_t total = 0, k = 0;
    int rc = 0;

    if (!req)
        return reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid BatchWriteRowRequest.");
    sg_buf_init(&ret, 0);
    for (size_t ti = 0; ti < req->n_tables; ti++)
        total += req->tables[ti]->n_rows;
    if (batch_refused(ctx, req, req->n_tables, bwr_table_name, total, SG_TS_BATCH_MAX_ROWS, &rc))
        goto out;
    tables = calloc(req->n_tables, sizeof(*tables));
    table_ptrs = calloc(req->n_tables, sizeof(*table_ptrs));
    row_ptrs = calloc(total, sizeof(*row_ptrs));
    results = calloc(total, sizeof(*results));
    if (!tables || !table_ptrs || !row_ptrs || !results) {
        rc = -ENOMEM;
        goto out;
    }

    for (size_t ti = 0; ti < req->n_tables; ti++) {
        const Ots__TableInBatchWriteRowRequest *treq = req->tables[ti];
        struct tsemu_table *t =
            tsemu_store_table_find(ctx->store, treq->table_name, strlen(treq->table_name));

        ots__table_in_batch_write_row_response__init(&tables[ti]);
        tables[ti].table_name = treq->table_name;
        tables[ti].n_rows = treq->n_rows;
        tables[ti].rows = row_ptrs + k;
        table_ptrs[ti] = &tables[ti];
        for (size_t ri = 0; ri < treq->n_rows; ri++, k++) {
            const Ots__RowInBatchWriteRowRequest *rreq = treq->rows[ri];
            struct bwr_row *res = &results[k];
            size_t before = ret.len;
            int type = (int)rreq->type;
            int wrc;

            ots__row_in_batch_write_row_response__init(&res->msg);
            row_ptrs[k] = &res->msg;
            if (!t) {
                wrc = werr(&res->e, "OTSObjectNotExist", MSG_TABLE_NOT_EXIST);
            } else if (type < SG_TS_WRITE_PUT || type > SG_TS_WRITE_DELETE) {
                wrc = werr(&res->e, "OTSParameterInvalid", "Invalid operation type: %d.", type);
            } else if (ctx->busy_rows > 0 && tsemu_rand(ctx->rng) < ctx->busy_rows) {
                wrc = werr(&res->e, "OTSServerBusy", "Server is busy.");
            } else {
                wrc = apply_write(ctx, t, (enum sg_ts_write_type)type, &rreq->row_change,
                                  rreq->condition, rreq->return_content, &ret, &res->has_ret,
                                  &res->e);
            }
            if (wrc == -ENOMEM) {
                rc = wrc;
                goto out;
            }
            if (wrc < 0) {
                batch_row_error(&res->error, &res->e);
                res->msg.is_ok = false;
                res->msg.error = &res->error;
                continue;
            }
            res->msg.is_ok = true;
            ots__consumed_capacity__init(&res->consumed);
            ots__capacity_unit__init(&res->cu);
            res->cu.has_read = res->cu.has_write = true;
            res->cu.write = capacity_units(rreq->row_change.len);
            res->consumed.capacity_unit = &res->cu;
            res->msg.consumed = &res->consumed;
            res->ret_off = before;
            res->ret_len = ret.len - before;
        }
    }
    /* The return-content buffer has stopped moving: point the messages into it. */
    for (size_t i = 0; i < total; i++) {
        if (!results[i].has_ret)
            continue;
        results[i].msg.has_row = true;
        results[i].msg.row.data = (uint8_t *)ret.data + results[i].ret_off;
        results[i].msg.row.len = results[i].ret_len;
    }
    resp.n_tables = req->n_tables;
    resp.tables = table_ptrs;
    rc = reply_pack(ctx->reply, &resp.base);
out:
    free(results);
    free(row_ptrs);
    free(table_ptrs);
    free(tables);
    sg_buf_free(&ret);
    ots__batch_write_row_request__free_unpacked(req, NULL);
    return rc;
}

/* ---- BatchGetRow ----------------------------------------------------------------------- */

struct bgr_row {
    Ots__RowInBatchGetRowResponse msg;
    Ots__Error error;
    Ots__ConsumedCapacity consumed;
    Ots__CapacityUnit cu;
    struct write_err e;
    size_t off, len;
};

/* Reads one row of a BatchGetRow table into `out` (nothing when it does not exist). */
static int batch_get_one(const struct tsemu_table *t, const ProtobufCBinaryData *pk,
                         const struct read_filter *f, struct sg_buf *out, struct write_err *e)
{
    struct tsemu_value key[SG_TS_PK_MAX_COLUMNS];
    struct sg_ts_rows rows = {0};
    struct tsemu_cursor cur;
    size_t mark = out->len;
    bool written = false;
    int rc = read_key(t, pk, false, &rows, key, e);

    if (rc < 0)
        return rc;
    if (tsemu_table_seek(t, key, &cur)) {
        rc = sg_ts_pb_append_header(out);
        if (rc == 0)
            rc = append_packed_row(out, t, tsemu_cursor_row(t, &cur), f, &written);
        if (rc == 0 && !written)
            out->len = mark;
    }
    sg_ts_rows_free(&rows);
    return rc < 0 ? -ENOMEM : 0;
}

static int op_batch_get_row(struct op_ctx *ctx, const void *body, size_t len)
{
    Ots__BatchGetRowRequest *req = ots__batch_get_row_request__unpack(NULL, len, body);
    Ots__BatchGetRowResponse resp = OTS__BATCH_GET_ROW_RESPONSE__INIT;
    Ots__TableInBatchGetRowResponse *tables = NULL, **table_ptrs = NULL;
    Ots__RowInBatchGetRowResponse **row_ptrs = NULL;
    struct bgr_row *results = NULL;
    struct sg_buf out;
    size_t total = 0, k = 0;
    int rc = 0;

    if (!req)
        return reply_fail(ctx->reply, "OTSParameterInvalid", "Invalid BatchGetRowRequest.");
    sg_buf_init(&out, 0);
    for (size_t ti = 0; ti < req->n_tables; ti++)
        total += req->tables[ti]->n_primary_key;
    if (batch_refused(ctx, req, req->n_tables, bgr_table_name, total, BATCH_GET_MAX_ROWS, &rc))
        goto out;
    tables = calloc(req->n_tables, sizeof(*tables));
    table_ptrs = calloc(req->n_tables, sizeof(*table_ptrs));
    row_ptrs = calloc(total, sizeof(*row_ptrs));
    results = calloc(total, sizeof(*results));
    if (!tables || !table_ptrs || !row_ptrs || !results) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t ti = 0; ti < req->n_tables; ti++) {
        const Ots__TableInBatchGetRowRequest *treq = req->tables[ti];
        struct tsemu_table *t =
            tsemu_store_table_find(ctx->store, treq->table_name, strlen(treq->table_name));
        struct write_err fe;
        struct read_filter f;
        int frc = -EINVAL;

        if (!t)
            werr(&fe, "OTSObjectNotExist", MSG_TABLE_NOT_EXIST);
        else
            frc = filter_from_request(&f, t, treq->columns_to_get, treq->n_columns_to_get,
                                      treq->time_range, treq->has_max_versions, treq->max_versions,
                                      ctx->now_ms, &fe);
        if (t && frc < 0) {
            rc = reply_werr(ctx->reply, &fe); /* a bad read filter fails the whole request */
            goto out;
        }
        ots__table_in_batch_get_row_response__init(&tables[ti]);
        tables[ti].table_name = treq->table_name;
        tables[ti].n_rows = treq->n_primary_key;
        tables[ti].rows = row_ptrs + k;
        table_ptrs[ti] = &tables[ti];
        for (size_t ri = 0; ri < treq->n_primary_key; ri++, k++) {
            struct bgr_row *res = &results[k];
            size_t before = out.len;
            int grc;

            ots__row_in_batch_get_row_response__init(&res->msg);
            row_ptrs[k] = &res->msg;
            if (!t) {
                res->e = fe;
                grc = -EINVAL;
            } else {
                grc = batch_get_one(t, &treq->primary_key[ri], &f, &out, &res->e);
            }
            if (grc == -ENOMEM) {
                rc = grc;
                goto out;
            }
            if (grc < 0) {
                batch_row_error(&res->error, &res->e);
                res->msg.is_ok = false;
                res->msg.error = &res->error;
                continue;
            }
            res->msg.is_ok = true;
            ots__consumed_capacity__init(&res->consumed);
            ots__capacity_unit__init(&res->cu);
            res->cu.has_read = res->cu.has_write = true;
            res->cu.read = capacity_units(out.len - before);
            res->consumed.capacity_unit = &res->cu;
            res->msg.consumed = &res->consumed;
            res->off = before;
            res->len = out.len - before;
        }
    }
    /* The row buffer has stopped moving: point the messages into it. */
    for (size_t i = 0; i < total; i++) {
        if (!results[i].msg.is_ok)
            continue;
        results[i].msg.has_row = true;
        results[i].msg.row.data = (uint8_t *)out.data + results[i].off;
        results[i].msg.row.len = results[i].len;
    }
    resp.n_tables = req->n_tables;
    resp.tables = table_ptrs;
    rc = reply_pack(ctx->reply, &resp.base);
out:
    free(results);
    free(row_ptrs);
    free(table_ptrs);
    free(tables);
    sg_buf_free(&out);
    ots__batch_get_row_request__free_unpacked(req, NULL);
    return rc;
}

/* ---- Dispatch -------------------------------------------------------------------------- */

typedef int (*op_fn)(struct op_ctx *ctx, const void *body, size_t len);

static const struct {
    const char *name;
    op_fn fn;
} ops[] = {
    {"CreateTable", op_create_table},
    {"DeleteTable", op_delete_table},
    {"ListTable", op_list_table},
    {"DescribeTable", op_describe_table},
    {"PutRow", op_put_row},
    {"UpdateRow", op_update_row},
    {"DeleteRow", op_delete_row},
    {"GetRow", op_get_row},
    {"GetRange", op_get_range},
    {"BatchWriteRow", op_batch_write_row},
    {"CreateIndex", op_create_index},
    {"DropIndex", op_drop_index},
    {"BatchGetRow", op_batch_get_row},
};

static op_fn op_lookup(const char *op, size_t op_len)
{
    for (size_t i = 0; i < SG_ARRAY_SIZE(ops); i++)
        if (strlen(ops[i].name) == op_len && memcmp(ops[i].name, op, op_len) == 0)
            return ops[i].fn;
    return NULL;
}

bool tsemu_ops_known(const char *op, size_t op_len)
{
    return op_lookup(op, op_len) != NULL;
}

int tsemu_ops_handle(struct tsemu_store *store, const char *op, size_t op_len, const void *body,
                     size_t len, int64_t now_ms, double busy_rows, uint64_t *rng,
                     struct tsemu_reply *reply)
{
    struct op_ctx ctx = {store, now_ms, busy_rows, rng, reply};
    op_fn fn = op_lookup(op, op_len);
    static const uint8_t empty[1];
    int rc;

    sg_buf_reset(&reply->body);
    reply->code = NULL;
    if (!fn)
        return reply_fail(reply, "OTSParameterInvalid", "Unsupported operation: '%.*s'.",
                          (int)SG_MIN(op_len, (size_t)64), op);
    rc = fn(&ctx, len ? body : empty, len);
    if (rc == -ENOMEM)
        rc = tsemu_reply_error(reply, 500, "OTSInternalServerError", "Internal server error.");
    return rc;
}
