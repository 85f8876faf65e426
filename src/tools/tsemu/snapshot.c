/* The store as JSON lines, one object per line:
 *   {"table":"t","pk":[{"name":"id","type":"INTEGER","auto_increment":false}],
 *    "defined":[{"name":"c","type":4}],"max_versions":1,"ttl":-1,"read_cu":0,"write_cu":0,
 *    "created_ms":1700000000000,"next_auto":0}
 *   {"row":"t","pk":[V...],"cells":[{"name":"c","versions":[{"ts":1700000000000,"v":V}]}]}
 *   {"index":"t_by_c","main":"t","pk":["c"],"attrs":["d"],"type":0,"mode":0}
 * where a value V is {"t":TYPE,"v":...}: INTEGER as a decimal string (int64 does not fit a
 * JSON number exactly), DOUBLE as a C99 hex-float string (exact, and NaN/Inf survive),
 * BOOLEAN as true/false, STRING and BINARY as hex (any bytes survive). A table line comes
 * before its rows; rows may come in any order (they are inserted in key order). Index
 * tables are not written: an index line (after its main table's rows) creates the index and
 * fills it from the rows loaded so far, and rows loaded after it update it. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "streamgate/common.h"
#include "tsemu.h"

#define SNAPSHOT_MAX_LINE (16 * 1024 * 1024)

__attribute__((format(printf, 3, 4))) static int snap_fail(char *errstr, size_t errstr_size,
                                                           const char *fmt, ...)
{
    va_list ap;

    if (errstr && errstr_size) {
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static int vtype_parse(const char *s, enum sg_ts_type *out)
{
    static const enum sg_ts_type all[] = {SG_TS_INTEGER, SG_TS_DOUBLE, SG_TS_BOOLEAN, SG_TS_STRING,
                                          SG_TS_BLOB};

    for (size_t i = 0; s && i < sizeof(all) / sizeof(all[0]); i++) {
        if (strcmp(s, sg_ts_type_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -EINVAL;
}

/* ---- Writing --------------------------------------------------------------------------- */

static int write_hex(struct sg_buf *b, const uint8_t *p, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    int rc = sg_buf_reserve(b, len * 2 + 2);

    if (rc < 0)
        return rc;
    b->data[b->len++] = '"';
    for (size_t i = 0; i < len; i++) {
        b->data[b->len++] = digits[p[i] >> 4];
        b->data[b->len++] = digits[p[i] & 15];
    }
    b->data[b->len++] = '"';
    return 0;
}

static int write_value(struct sg_buf *b, const struct tsemu_value *v)
{
    int rc = sg_buf_printf(b, "{\"t\":\"%s\",\"v\":", sg_ts_type_name(v->type));

    if (rc < 0)
        return rc;
    switch (v->type) {
    case SG_TS_INTEGER:
        rc = sg_buf_printf(b, "\"%" PRId64 "\"", v->i);
        break;
    case SG_TS_DOUBLE:
        rc = sg_buf_printf(b, "\"%a\"", v->d);
        break;
    case SG_TS_BOOLEAN:
        rc = sg_buf_append_str(b, v->b ? "true" : "false");
        break;
    default:
        rc = write_hex(b, v->bytes, v->len);
        break;
    }
    return rc < 0 ? rc : sg_buf_append_char(b, '}');
}

static int write_table(struct sg_buf *b, const struct tsemu_table *t)
{
    int rc = sg_buf_append_str(b, "{\"table\":");

    if (rc == 0)
        rc = sg_buf_append_json_string(b, t->name, strlen(t->name));
    if (rc == 0)
        rc = sg_buf_append_str(b, ",\"pk\":[");
    for (size_t i = 0; rc == 0 && i < t->pk_count; i++) {
        rc = sg_buf_append_str(b, i ? ",{\"name\":" : "{\"name\":");
        if (rc == 0)
            rc = sg_buf_append_json_string(b, t->pk[i].name, strlen(t->pk[i].name));
        if (rc == 0)
            rc = sg_buf_printf(b, ",\"type\":\"%s\",\"auto_increment\":%s}",
                               sg_ts_type_name(t->pk[i].type),
                               t->pk[i].auto_increment ? "true" : "false");
    }
    if (rc == 0)
        rc = sg_buf_append_str(b, "],\"defined\":[");
    for (size_t i = 0; rc == 0 && i < t->defined_count; i++) {
        rc = sg_buf_append_str(b, i ? ",{\"name\":" : "{\"name\":");
        if (rc == 0)
            rc = sg_buf_append_json_string(b, t->defined[i].name, strlen(t->defined[i].name));
        if (rc == 0)
            rc = sg_buf_printf(b, ",\"type\":%d}", t->defined[i].type);
    }
    if (rc == 0)
        rc = sg_buf_printf(b,
                           "],\"max_versions\":%" PRId32 ",\"ttl\":%" PRId32 ",\"read_cu\":%" PRId32
                           ",\"write_cu\":%" PRId32 ",\"created_ms\":\"%" PRId64
                           "\",\"next_auto\":\"%" PRId64 "\"}\n",
                           t->max_versions, t->ttl, t->read_cu, t->write_cu, t->created_ms,
                           t->next_auto);
    return rc;
}

static int write_row(struct sg_buf *b, const struct tsemu_table *t, const struct tsemu_row *row)
{
    int rc = sg_buf_append_str(b, "{\"row\":");

    if (rc == 0)
        rc = sg_buf_append_json_string(b, t->name, strlen(t->name));
    if (rc == 0)
        rc = sg_buf_append_str(b, ",\"pk\":[");
    for (size_t i = 0; rc == 0 && i < t->pk_count; i++) {
        if (i)
            rc = sg_buf_append_char(b, ',');
        if (rc == 0)
            rc = write_value(b, &row->pk[i]);
    }
    if (rc == 0)
        rc = sg_buf_append_str(b, "],\"cells\":[");
    for (size_t i = 0; rc == 0 && i < row->cell_count; i++) {
        const struct tsemu_cell *cell = &row->cells[i];

        rc = sg_buf_append_str(b, i ? ",{\"name\":" : "{\"name\":");
        if (rc == 0)
            rc = sg_buf_append_json_string(b, cell->name, cell->name_len);
        if (rc == 0)
            rc = sg_buf_append_str(b, ",\"versions\":[");
        for (size_t v = 0; rc == 0 && v < cell->count; v++) {
            rc = sg_buf_printf(b, "%s{\"ts\":\"%" PRId64 "\",\"v\":", v ? "," : "",
                               cell->versions[v].ts);
            if (rc == 0)
                rc = write_value(b, &cell->versions[v].value);
            if (rc == 0)
                rc = sg_buf_append_char(b, '}');
        }
        if (rc == 0)
            rc = sg_buf_append_str(b, "]}");
    }
    if (rc == 0)
        rc = sg_buf_append_str(b, "]}\n");
    return rc;
}

static int write_names(struct sg_buf *b, char *const *names, size_t n)
{
    int rc = sg_buf_append_char(b, '[');

    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (i)
            rc = sg_buf_append_char(b, ',');
        if (rc == 0)
            rc = sg_buf_append_json_string(b, names[i], strlen(names[i]));
    }
    return rc == 0 ? sg_buf_append_char(b, ']') : rc;
}

static int write_index(struct sg_buf *b, const struct tsemu_table *t, const struct tsemu_index *ix)
{
    int rc = sg_buf_append_str(b, "{\"index\":");

    if (rc == 0)
        rc = sg_buf_append_json_string(b, ix->name, strlen(ix->name));
    if (rc == 0)
        rc = sg_buf_append_str(b, ",\"main\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(b, t->name, strlen(t->name));
    if (rc == 0)
        rc = sg_buf_append_str(b, ",\"pk\":");
    if (rc == 0)
        rc = write_names(b, ix->cols, ix->col_count);
    if (rc == 0)
        rc = sg_buf_append_str(b, ",\"attrs\":");
    if (rc == 0)
        rc = write_names(b, ix->attrs, ix->attr_count);
    if (rc == 0)
        rc = sg_buf_printf(b, ",\"type\":%d,\"mode\":%d}\n", ix->index_type, ix->update_mode);
    return rc;
}

int tsemu_snapshot_save(const struct tsemu_store *store, const char *path, char *errstr,
                        size_t errstr_size)
{
    struct sg_buf b;
    char tmp[4096];
    FILE *f = NULL;
    int rc = 0;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
        return snap_fail(errstr, errstr_size, "snapshot path too long");
    sg_buf_init(&b, 0);
    f = fopen(tmp, "w");
    if (!f) {
        rc = -errno;
        snap_fail(errstr, errstr_size, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    for (size_t ti = 0; ti < store->table_count; ti++) {
        const struct tsemu_table *t = store->tables[ti];

        if (t->main)
            continue; /* rebuilt from the main table at load */
        sg_buf_reset(&b);
        rc = write_table(&b, t);
        if (rc == 0 && fwrite(b.data, 1, b.len, f) != b.len)
            rc = -EIO;
        for (struct tsemu_cursor cur = {0, 0}; rc == 0 && tsemu_cursor_row(t, &cur);
             tsemu_cursor_next(t, &cur)) {
            struct tsemu_row row;

            sg_buf_reset(&b);
            rc = tsemu_row_unpack(t, tsemu_cursor_row(t, &cur), &row);
            if (rc == 0)
                rc = write_row(&b, t, &row);
            tsemu_row_free_contents(&row);
            if (rc == 0 && fwrite(b.data, 1, b.len, f) != b.len)
                rc = -EIO;
        }
        for (size_t i = 0; rc == 0 && i < t->index_count; i++) {
            sg_buf_reset(&b);
            rc = write_index(&b, t, t->indexes[i]);
            if (rc == 0 && fwrite(b.data, 1, b.len, f) != b.len)
                rc = -EIO;
        }
        if (rc < 0) {
            snap_fail(errstr, errstr_size, "%s: %s", tmp, strerror(-rc));
            goto out;
        }
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        rc = -errno;
        snap_fail(errstr, errstr_size, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    if (fclose(f) != 0) {
        f = NULL;
        rc = -errno;
        snap_fail(errstr, errstr_size, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    f = NULL;
    if (rename(tmp, path) != 0) {
        rc = -errno;
        snap_fail(errstr, errstr_size, "rename to %s: %s", path, strerror(errno));
    }
out:
    if (f)
        fclose(f);
    if (rc < 0)
        unlink(tmp);
    sg_buf_free(&b);
    return rc;
}

/* ---- Reading --------------------------------------------------------------------------- */

static int parse_i64(const cJSON *j, int64_t *out)
{
    char *end;

    if (!cJSON_IsString(j) || !j->valuestring[0])
        return -EINVAL;
    errno = 0;
    *out = strtoll(j->valuestring, &end, 10);
    return (errno || *end) ? -EINVAL : 0;
}

static int parse_i32(const cJSON *j, int32_t *out)
{
    if (!cJSON_IsNumber(j) || j->valuedouble < INT32_MIN || j->valuedouble > INT32_MAX ||
        j->valuedouble != (double)(int32_t)j->valuedouble)
        return -EINVAL;
    *out = (int32_t)j->valuedouble;
    return 0;
}

/* Parses a value; STRING and BINARY bytes are malloc'd into *v. */
static int parse_value(const cJSON *j, struct tsemu_value *v)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "t");
    const cJSON *val = cJSON_GetObjectItemCaseSensitive(j, "v");
    char *end;

    memset(v, 0, sizeof(*v));
    if (!cJSON_IsString(t) || vtype_parse(t->valuestring, &v->type) < 0 || !val)
        return -EINVAL;
    switch (v->type) {
    case SG_TS_INTEGER:
        return parse_i64(val, &v->i);
    case SG_TS_DOUBLE:
        if (!cJSON_IsString(val))
            return -EINVAL;
        v->d = strtod(val->valuestring, &end);
        return *end || end == val->valuestring ? -EINVAL : 0;
    case SG_TS_BOOLEAN:
        if (!cJSON_IsBool(val))
            return -EINVAL;
        v->b = cJSON_IsTrue(val);
        return 0;
    default: {
        size_t n;

        if (!cJSON_IsString(val) || (strlen(val->valuestring) & 1))
            return -EINVAL;
        n = strlen(val->valuestring) / 2;
        v->bytes = malloc(n + 1);
        if (!v->bytes)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            int hi = sg_hex_digit(val->valuestring[2 * i]),
                lo = sg_hex_digit(val->valuestring[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                tsemu_value_free(v);
                return -EINVAL;
            }
            v->bytes[i] = (uint8_t)(hi << 4 | lo);
        }
        v->len = n;
        return 0;
    }
    }
}

/* Names follow the service's rule (PROTOCOL.md section 5), so every loaded row can be encoded
 * again. */
static bool snap_name_ok(const cJSON *j)
{
    const char *s;
    size_t n;

    if (!cJSON_IsString(j))
        return false;
    s = j->valuestring;
    n = strlen(s);
    if (n < 1 || n > SG_TS_NAME_MAX_BYTES || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

static int load_table(struct tsemu_store *store, const cJSON *j)
{
    const cJSON *pk = cJSON_GetObjectItemCaseSensitive(j, "pk");
    const cJSON *defined = cJSON_GetObjectItemCaseSensitive(j, "defined");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "table");
    struct tsemu_table tpl = {0};
    const cJSON *it;
    int rc;

    if (!snap_name_ok(name) || !cJSON_IsArray(pk) || !cJSON_IsArray(defined))
        return -EINVAL;
    tpl.name = name->valuestring;
    cJSON_ArrayForEach(it, pk)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "name");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "type");
        struct tsemu_pk_schema *s = &tpl.pk[tpl.pk_count];

        if (tpl.pk_count >= SG_TS_PK_MAX_COLUMNS || !snap_name_ok(n) || !cJSON_IsString(t) ||
            vtype_parse(t->valuestring, &s->type) < 0 ||
            !(s->type == SG_TS_INTEGER || s->type == SG_TS_STRING || s->type == SG_TS_BLOB))
            return -EINVAL;
        s->name = n->valuestring;
        s->auto_increment = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "auto_increment"));
        tpl.pk_count++;
    }
    if (tpl.pk_count == 0)
        return -EINVAL;
    cJSON_ArrayForEach(it, defined)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "name");
        int32_t type;

        if (tpl.defined_count >= TSEMU_MAX_DEFINED_COLS || !snap_name_ok(n) ||
            parse_i32(cJSON_GetObjectItemCaseSensitive(it, "type"), &type) < 0)
            return -EINVAL;
        tpl.defined[tpl.defined_count].name = n->valuestring;
        tpl.defined[tpl.defined_count].type = type;
        tpl.defined_count++;
    }
    if (parse_i32(cJSON_GetObjectItemCaseSensitive(j, "max_versions"), &tpl.max_versions) < 0 ||
        tpl.max_versions < 1 || tpl.max_versions > TSEMU_MAX_VERSIONS_CAP ||
        parse_i32(cJSON_GetObjectItemCaseSensitive(j, "ttl"), &tpl.ttl) < 0 ||
        parse_i32(cJSON_GetObjectItemCaseSensitive(j, "read_cu"), &tpl.read_cu) < 0 ||
        parse_i32(cJSON_GetObjectItemCaseSensitive(j, "write_cu"), &tpl.write_cu) < 0 ||
        parse_i64(cJSON_GetObjectItemCaseSensitive(j, "created_ms"), &tpl.created_ms) < 0 ||
        parse_i64(cJSON_GetObjectItemCaseSensitive(j, "next_auto"), &tpl.next_auto) < 0)
        return -EINVAL;
    rc = tsemu_store_table_create(store, &tpl, NULL);
    return rc == -EEXIST || rc == -ENOSPC ? -EINVAL : rc;
}

/* Reads a JSON array of column names into `names` (views into the JSON), at most `max`. */
static int load_names(const cJSON *arr, char **names, size_t max, size_t *n)
{
    const cJSON *it;

    *n = 0;
    if (!cJSON_IsArray(arr))
        return -EINVAL;
    cJSON_ArrayForEach(it, arr)
    {
        if (*n >= max || !snap_name_ok(it))
            return -EINVAL;
        names[(*n)++] = it->valuestring;
    }
    return 0;
}

/* Checks an index line against its main table as CreateIndex would, so a hand-edited
 * snapshot cannot make an index the index code does not expect. */
static bool index_line_ok(const struct tsemu_table *t, const struct tsemu_index *ix)
{
    size_t pk_total = t->pk_count;

    if (ix->col_count < 1 || t->main || t->index_count >= TSEMU_MAX_INDEXES ||
        !((ix->index_type == 0 && ix->update_mode == 0) ||
          (ix->index_type == 1 && ix->update_mode == 1)))
        return false;
    for (size_t i = 0; i < ix->col_count; i++) {
        bool ok = false;

        for (size_t k = 0; k < t->pk_count; k++) {
            if (strcmp(t->pk[k].name, ix->cols[i]) == 0) {
                ok = true;
                pk_total--;
            }
        }
        for (size_t d = 0; !ok && d < t->defined_count; d++) {
            int vt = tsemu_defined_value_type(t->defined[d].type);
            ok = strcmp(t->defined[d].name, ix->cols[i]) == 0 &&
                 (vt == SG_TS_INTEGER || vt == SG_TS_STRING || vt == SG_TS_BLOB);
        }
        for (size_t j = 0; ok && j < i; j++)
            ok = strcmp(ix->cols[j], ix->cols[i]) != 0;
        if (!ok)
            return false;
    }
    for (size_t i = 0; i < ix->attr_count; i++) {
        bool ok = false;

        for (size_t d = 0; !ok && d < t->defined_count; d++)
            ok = strcmp(t->defined[d].name, ix->attrs[i]) == 0;
        if (!ok)
            return false;
    }
    return pk_total + ix->col_count <= SG_TS_PK_MAX_COLUMNS;
}

static int load_index(struct tsemu_store *store, const cJSON *j)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "index");
    const cJSON *main = cJSON_GetObjectItemCaseSensitive(j, "main");
    struct tsemu_index ix = {0};
    struct tsemu_table *t;
    int32_t type, mode;
    int rc;

    if (!snap_name_ok(name) || !cJSON_IsString(main) ||
        load_names(cJSON_GetObjectItemCaseSensitive(j, "pk"), ix.cols, TSEMU_MAX_INDEX_COLS,
                   &ix.col_count) < 0 ||
        load_names(cJSON_GetObjectItemCaseSensitive(j, "attrs"), ix.attrs, TSEMU_MAX_INDEX_ATTRS,
                   &ix.attr_count) < 0 ||
        parse_i32(cJSON_GetObjectItemCaseSensitive(j, "type"), &type) < 0 ||
        parse_i32(cJSON_GetObjectItemCaseSensitive(j, "mode"), &mode) < 0)
        return -EINVAL;
    t = tsemu_store_table_find(store, main->valuestring, strlen(main->valuestring));
    ix.name = name->valuestring;
    ix.index_type = type;
    ix.update_mode = mode;
    if (!t || !index_line_ok(t, &ix))
        return -EINVAL;
    rc = tsemu_index_add(store, t, &ix, true, t->created_ms);
    return rc == -EEXIST || rc == -ENOSPC ? -EINVAL : rc;
}

static int load_row(struct tsemu_store *store, const cJSON *j)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "row");
    const cJSON *pk = cJSON_GetObjectItemCaseSensitive(j, "pk");
    const cJSON *cells = cJSON_GetObjectItemCaseSensitive(j, "cells");
    struct tsemu_value key[SG_TS_PK_MAX_COLUMNS] = {0};
    struct tsemu_row row = {0};
    struct tsemu_cursor cur;
    struct tsemu_table *t;
    size_t n = 0;
    const cJSON *it;
    int rc = 0;

    if (!cJSON_IsString(name) || !cJSON_IsArray(pk) || !cJSON_IsArray(cells))
        return -EINVAL;
    t = tsemu_store_table_find(store, name->valuestring, strlen(name->valuestring));
    if (!t || t->main)
        return -EINVAL;
    cJSON_ArrayForEach(it, pk)
    {
        if (n >= t->pk_count) {
            rc = -EINVAL;
            goto out;
        }
        rc = parse_value(it, &key[n]);
        if (rc < 0)
            goto out;
        if (key[n].type != t->pk[n].type) {
            n++;
            rc = -EINVAL;
            goto out;
        }
        n++;
    }
    if (n != t->pk_count || tsemu_table_seek(t, key, &cur)) {
        rc = -EINVAL;
        goto out;
    }
    rc = tsemu_row_set_key(t, &row, key);
    if (rc < 0)
        goto out;
    cJSON_ArrayForEach(it, cells)
    {
        const cJSON *cn = cJSON_GetObjectItemCaseSensitive(it, "name");
        const cJSON *versions = cJSON_GetObjectItemCaseSensitive(it, "versions");
        const cJSON *ver;

        if (!snap_name_ok(cn) || !cJSON_IsArray(versions)) {
            rc = -EINVAL;
            goto out;
        }
        cJSON_ArrayForEach(ver, versions)
        {
            struct tsemu_value v;
            struct sg_ts_value view;
            int64_t ts;

            rc = parse_i64(cJSON_GetObjectItemCaseSensitive(ver, "ts"), &ts);
            if (rc == 0)
                rc = parse_value(cJSON_GetObjectItemCaseSensitive(ver, "v"), &v);
            if (rc < 0)
                goto out;
            view = tsemu_value_view(&v);
            rc = tsemu_row_put(&row, cn->valuestring, strlen(cn->valuestring), ts, &view,
                               t->max_versions);
            tsemu_value_free(&v);
            if (rc < 0)
                goto out;
        }
    }
    rc = tsemu_table_store(t, &cur, &row, false);
    if (rc == 0 && t->index_count > 0)
        rc = tsemu_index_row_changed(store, t, NULL, &row, 0, true);
out:
    tsemu_row_free_contents(&row);
    for (size_t i = 0; i < n; i++)
        tsemu_value_free(&key[i]);
    return rc;
}

int tsemu_snapshot_load(struct tsemu_store *store, const char *path, char *errstr,
                        size_t errstr_size)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    int rc = 0;

    if (!f) {
        if (errno == ENOENT)
            return 0;
        rc = -errno;
        snap_fail(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return rc;
    }
    while ((n = getline(&line, &cap, f)) > 0) {
        cJSON *j;

        lineno++;
        if (n > SNAPSHOT_MAX_LINE) {
            rc = snap_fail(errstr, errstr_size, "%s:%zu: line too long", path, lineno);
            break;
        }
        if (n == 1 && line[0] == '\n')
            continue;
        j = cJSON_ParseWithLength(line, (size_t)n);
        if (!cJSON_IsObject(j))
            rc = -EINVAL;
        else if (cJSON_HasObjectItem(j, "index"))
            rc = load_index(store, j);
        else if (cJSON_HasObjectItem(j, "table"))
            rc = load_table(store, j);
        else if (cJSON_HasObjectItem(j, "row"))
            rc = load_row(store, j);
        else
            rc = -EINVAL;
        cJSON_Delete(j);
        if (rc < 0) {
            if (rc == -EINVAL)
                snap_fail(errstr, errstr_size, "%s:%zu: not a valid table or row line", path,
                          lineno);
            else
                snap_fail(errstr, errstr_size, "%s:%zu: %s", path, lineno, strerror(-rc));
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        rc = -EIO;
        snap_fail(errstr, errstr_size, "%s: read error", path);
    }
    free(line);
    fclose(f);
    return rc;
}
