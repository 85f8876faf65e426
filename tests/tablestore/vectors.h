/* Loading the Tablestore conformance vectors (tests/tablestore/vectors) for the unit tests.
 * Every helper fails the running test on bad input, so tests stay short. */
#ifndef SG_TEST_TS_VECTORS_H
#define SG_TEST_TS_VECTORS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "streamgate/tablestore.h"

#define TV_MAX_COLUMNS 32

/* A logical row from the vectors, in the library's row model. Strings point into the cJSON
 * document, which must outlive it; BLOB bytes live in `store`. */
struct tv_row {
    struct sg_ts_column pk[TV_MAX_COLUMNS];
    struct sg_ts_column attrs[TV_MAX_COLUMNS];
    struct sg_ts_row row;
    uint8_t store[1024];
    size_t store_used;
};

/* Parses $SG_TS_VECTORS/<name>. */
cJSON *tv_load(const char *name);
/* Decodes a hex string into a malloc'd buffer of exactly the decoded length (so the sanitizers
 * catch any read past it); *len gets the length. Returns a non-NULL pointer even for "". */
uint8_t *tv_hex(const char *hex, size_t *len);
/* Fills `out` from a logical row object ({"pk":[...], "attrs":[...], "updates":[...]}). */
void tv_row_from_json(const cJSON *logical, struct tv_row *out);
/* The row kind named by a plainbuffer_rows.json "kind". */
enum sg_ts_row_kind tv_kind(const char *kind);
/* The plainbuffer_rows.json entry with this id. */
const cJSON *tv_find_row(const cJSON *rows_doc, const char *id);
/* Asserts that two rows hold the same columns, values, ops, timestamps and marker. */
void tv_assert_rows_equal(const struct sg_ts_row *got, const struct sg_ts_row *want);
/* A string member, failing the test if absent. */
const char *tv_str(const cJSON *obj, const char *name);

#endif
