#include "vectors.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/common.h"

cJSON *tv_load(const char *name)
{
    const char *dir = getenv("SG_TS_VECTORS");
    cr_assert_not_null(dir, "SG_TS_VECTORS is not set");
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    cr_assert_gt(size, 0);
    char *text = malloc((size_t)size + 1);
    cr_assert_not_null(text);
    cr_assert_eq(fread(text, 1, (size_t)size, f), (size_t)size);
    text[size] = '\0';
    fclose(f);
    cJSON *doc = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(doc, "%s is not JSON", path);
    return doc;
}

uint8_t *tv_hex(const char *hex, size_t *len)
{
    size_t n = strlen(hex);
    cr_assert_eq(n % 2, 0, "odd hex length");
    uint8_t *out = malloc(n / 2 ? n / 2 : 1);
    cr_assert_not_null(out);
    for (size_t i = 0; i < n / 2; i++) {
        int hi = sg_hex_digit(hex[2 * i]), lo = sg_hex_digit(hex[2 * i + 1]);
        cr_assert(hi >= 0 && lo >= 0, "bad hex digit");
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    *len = n / 2;
    return out;
}

const char *tv_str(const cJSON *obj, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    cr_assert(cJSON_IsString(item), "missing string member %s", name);
    return item->valuestring;
}

static int64_t int_value(const cJSON *v)
{
    cr_assert(cJSON_IsString(v), "int64 values are decimal strings");
    char *end;
    errno = 0;
    long long x = strtoll(v->valuestring, &end, 10);
    cr_assert(errno == 0 && *end == '\0', "bad int64 %s", v->valuestring);
    return x;
}

static enum sg_ts_type type_of(const char *name)
{
    static const struct {
        const char *name;
        enum sg_ts_type type;
    } types[] = {
        {"INTEGER", SG_TS_INTEGER}, {"DOUBLE", SG_TS_DOUBLE},
        {"BOOLEAN", SG_TS_BOOLEAN}, {"STRING", SG_TS_STRING},
        {"BLOB", SG_TS_BLOB},       {"INF_MIN", SG_TS_INF_MIN},
        {"INF_MAX", SG_TS_INF_MAX}, {"AUTO_INCREMENT", SG_TS_AUTO_INCREMENT},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(types[i].name, name) == 0)
            return types[i].type;
    cr_assert_fail("unknown type %s", name);
    return SG_TS_NULL;
}

static enum sg_ts_op op_of(const char *name)
{
    if (strcmp(name, "PUT") == 0)
        return SG_TS_OP_PUT;
    if (strcmp(name, "DELETE") == 0)
        return SG_TS_OP_DELETE;
    if (strcmp(name, "DELETE_ALL") == 0)
        return SG_TS_OP_DELETE_ALL;
    if (strcmp(name, "INCREMENT") == 0)
        return SG_TS_OP_INCREMENT;
    cr_assert_fail("unknown op %s", name);
    return SG_TS_OP_PUT;
}

static void column_from_json(const cJSON *j, struct sg_ts_column *c, struct tv_row *out)
{
    memset(c, 0, sizeof(*c));
    c->name = tv_str(j, "name");
    c->name_len = strlen(c->name);
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(j, "op");
    if (op != NULL)
        c->op = op_of(op->valuestring);
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "ts");
    if (ts != NULL) {
        c->has_ts = true;
        c->ts = int_value(ts);
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (type == NULL)
        return; /* DELETE / DELETE_ALL: no value */
    c->has_value = true;
    c->value.type = type_of(type->valuestring);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "value");
    switch (c->value.type) {
    case SG_TS_INTEGER:
        c->value.i = int_value(v);
        break;
    case SG_TS_DOUBLE:
        cr_assert(cJSON_IsNumber(v));
        c->value.d = v->valuedouble;
        break;
    case SG_TS_BOOLEAN:
        cr_assert(cJSON_IsBool(v));
        c->value.b = cJSON_IsTrue(v);
        break;
    case SG_TS_STRING:
        c->value.bytes.ptr = v->valuestring;
        c->value.bytes.len = strlen(v->valuestring);
        break;
    case SG_TS_BLOB: {
        size_t n;
        uint8_t *bytes = tv_hex(v->valuestring, &n);
        cr_assert_leq(n, sizeof(out->store) - out->store_used);
        memcpy(out->store + out->store_used, bytes, n);
        free(bytes);
        c->value.bytes.ptr = out->store + out->store_used;
        c->value.bytes.len = n;
        out->store_used += n;
        break;
    }
    default:
        break;
    }
}

void tv_row_from_json(const cJSON *logical, struct tv_row *out)
{
    memset(out, 0, sizeof(*out));
    const cJSON *pk = cJSON_GetObjectItemCaseSensitive(logical, "pk");
    const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(logical, "attrs");
    if (attrs == NULL)
        attrs = cJSON_GetObjectItemCaseSensitive(logical, "updates");
    const cJSON *item;
    size_t n = 0;
    cJSON_ArrayForEach(item, pk)
    {
        cr_assert_lt(n, TV_MAX_COLUMNS);
        column_from_json(item, &out->pk[n++], out);
    }
    out->row.pk = out->pk;
    out->row.pk_count = n;
    n = 0;
    cJSON_ArrayForEach(item, attrs)
    {
        cr_assert_lt(n, TV_MAX_COLUMNS);
        column_from_json(item, &out->attrs[n++], out);
    }
    out->row.attrs = n ? out->attrs : NULL;
    out->row.attr_count = n;
    out->row.delete_marker =
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(logical, "delete_marker"));
}

enum sg_ts_row_kind tv_kind(const char *kind)
{
    if (strcmp(kind, "pk") == 0)
        return SG_TS_ROW_PK;
    if (strcmp(kind, "put") == 0)
        return SG_TS_ROW_PUT;
    if (strcmp(kind, "update") == 0)
        return SG_TS_ROW_UPDATE;
    cr_assert_str_eq(kind, "delete");
    return SG_TS_ROW_DELETE;
}

const cJSON *tv_find_row(const cJSON *rows_doc, const char *id)
{
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(rows_doc, "rows"))
    {
        if (strcmp(tv_str(row, "id"), id) == 0)
            return row;
    }
    cr_assert_fail("no row %s", id);
    return NULL;
}

static void assert_column(const struct sg_ts_column *got, const struct sg_ts_column *want)
{
    cr_assert_eq(got->name_len, want->name_len);
    cr_assert(memcmp(got->name, want->name, want->name_len) == 0, "name %.*s", (int)want->name_len,
              want->name);
    cr_assert_eq(got->has_value, want->has_value, "has_value of %s", want->name);
    cr_assert_eq(got->op, want->op, "op of %s", want->name);
    cr_assert_eq(got->has_ts, want->has_ts, "has_ts of %s", want->name);
    if (want->has_ts)
        cr_assert_eq(got->ts, want->ts);
    if (!want->has_value)
        return;
    cr_assert_eq(got->value.type, want->value.type, "type of %s", want->name);
    switch (want->value.type) {
    case SG_TS_INTEGER:
        cr_assert_eq(got->value.i, want->value.i, "value of %s", want->name);
        break;
    case SG_TS_DOUBLE:
        cr_assert(memcmp(&got->value.d, &want->value.d, sizeof(double)) == 0, "value of %s",
                  want->name);
        break;
    case SG_TS_BOOLEAN:
        cr_assert_eq(got->value.b, want->value.b);
        break;
    case SG_TS_STRING:
    case SG_TS_BLOB:
        cr_assert_eq(got->value.bytes.len, want->value.bytes.len, "length of %s", want->name);
        if (want->value.bytes.len > 0)
            cr_assert(memcmp(got->value.bytes.ptr, want->value.bytes.ptr, want->value.bytes.len) ==
                      0);
        break;
    default:
        break;
    }
}

void tv_assert_rows_equal(const struct sg_ts_row *got, const struct sg_ts_row *want)
{
    cr_assert_eq(got->pk_count, want->pk_count);
    cr_assert_eq(got->attr_count, want->attr_count);
    cr_assert_eq(got->delete_marker, want->delete_marker);
    for (size_t i = 0; i < want->pk_count; i++)
        assert_column(&got->pk[i], &want->pk[i]);
    for (size_t i = 0; i < want->attr_count; i++)
        assert_column(&got->attrs[i], &want->attrs[i]);
}
