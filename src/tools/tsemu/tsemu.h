/* streamgate-tablestore-emu: a local Tablestore-compatible HTTP server. Private declarations
 * shared by its files:
 *   store.c     tables and rows in memory, in primary-key order, with cell versions;
 *   ops.c       the operations: protobuf request in, protobuf response (or Error) out;
 *   snapshot.c  the store to and from a JSON-lines file;
 *   server.c    listener, connections (llhttp), request checks, fault injection, signing;
 *   main.c      the command line, signals and the loop.
 * Nothing here is global: the server owns one store and passes it along. */
#ifndef STREAMGATE_TSEMU_H
#define STREAMGATE_TSEMU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "streamgate/buf.h"
#include "streamgate/tablestore.h"

#define TSEMU_MAX_TABLES       64   /* tables per instance (PROTOCOL.md section 5) */
#define TSEMU_MAX_DEFINED_COLS 32   /* predefined columns per table */
#define TSEMU_RANGE_MAX_ROWS   5000 /* GetRange rows per page */
#define TSEMU_RANGE_MAX_BYTES  (4 * 1024 * 1024)
#define TSEMU_DEFAULT_TTL      (-1)
#define TSEMU_MAX_VERSIONS_CAP 1000 /* refuse absurd max_versions in CreateTable */

/* ---- Store ----------------------------------------------------------------------------- */

/* A stored value. STRING and BLOB bytes are owned (malloc'd) by the value, except in a row's cells,
 * where they live in the row's blocks (struct tsemu_row). */
struct tsemu_value {
    enum sg_ts_type type;
    int64_t i;
    double d;
    bool b;
    uint8_t *bytes;
    size_t len;
};

struct tsemu_version {
    int64_t ts;
    struct tsemu_value value;
};

/* One attribute column: its versions, newest first. */
struct tsemu_cell {
    char *name;
    size_t name_len;
    struct tsemu_version *versions; /* newest first */
    size_t count, cap;
};

/* A row as operations work on it: the primary key values in schema order, then the columns
 * sorted by name. Everything is owned by the row (tsemu_row_free_contents). Tables do not keep
 * rows in this form but packed (struct tsemu_packed); tsemu_row_unpack makes one from it. */
struct tsemu_row {
    struct tsemu_value pk[SG_TS_PK_MAX_COLUMNS];
    struct tsemu_cell *cells;
    size_t cell_count;
    size_t cell_cap;
    struct tsemu_row_block *mem; /* the cells' names, versions and values (store.c) */
};

/* A stored row: one allocation holding the encoded key and every column version (layout in
 * store.c). */
struct tsemu_packed {
    uint32_t size; /* bytes of data[] */
    uint8_t data[];
};

/* Rows are kept in key order in blocks of at most TSEMU_BLOCK_ROWS, and the blocks in an array:
 * a lookup is two binary searches, an insert moves at most one block's pointers (plus, on a
 * split, the block array). */
#define TSEMU_BLOCK_ROWS 256

struct tsemu_block {
    size_t count;
    struct tsemu_packed *rows[TSEMU_BLOCK_ROWS];
};

/* A position in a table: block b, row i. At the end, b == block_count and i == 0. */
struct tsemu_cursor {
    size_t b, i;
};

struct tsemu_pk_schema {
    char *name;
    enum sg_ts_type type; /* SG_TS_INTEGER, SG_TS_STRING or SG_TS_BLOB */
    bool auto_increment;
};

struct tsemu_defined_col {
    char *name;
    int type; /* DefinedColumnType as sent */
};

/* Secondary indexes (PROTOCOL.md section 7). */
#define TSEMU_MAX_INDEXES      5  /* per main table */
#define TSEMU_MAX_INDEX_COLS   4  /* IndexMeta.primary_key */
#define TSEMU_MAX_INDEX_ATTRS  32 /* IndexMeta.defined_column */
#define TSEMU_INDEX_TYPE_LOCAL 1  /* IndexType IT_LOCAL_INDEX; 0 is IT_GLOBAL_INDEX */

struct tsemu_table;

struct tsemu_index {
    char *name;
    char *cols[TSEMU_MAX_INDEX_COLS]; /* the index columns as created */
    size_t col_count;
    char *attrs[TSEMU_MAX_INDEX_ATTRS]; /* attribute (predefined) columns */
    size_t attr_count;
    int index_type, update_mode; /* as sent */
    uint64_t id;                 /* unique in the store, so a queued change finds its index */
    struct tsemu_table *table;   /* the index table, kept in the store beside the others */
    /* Per index-table PK column: the main-table PK column it comes from, or -1 for the
     * predefined column of the same name. */
    int src[SG_TS_PK_MAX_COLUMNS];
};

struct tsemu_table {
    char *name;
    struct tsemu_pk_schema pk[SG_TS_PK_MAX_COLUMNS];
    size_t pk_count;
    struct tsemu_defined_col defined[TSEMU_MAX_DEFINED_COLS];
    size_t defined_count;
    int32_t max_versions;
    int32_t ttl; /* seconds; -1 = never expire */
    int32_t read_cu, write_cu;
    int64_t created_ms;
    int64_t next_auto; /* the last AUTO_INCREMENT value handed out */
    struct tsemu_block **blocks;
    size_t block_count, block_cap;
    size_t row_count;
    struct tsemu_index *indexes[TSEMU_MAX_INDEXES]; /* of this main table */
    size_t index_count;
    struct tsemu_table *main; /* set on an index table: the table it indexes (read-only) */
};

/* A change to an index table waiting for --index-lag to pass. */
struct tsemu_pending {
    struct tsemu_pending *next;
    uint64_t index_id;
    int64_t due_ms;
    bool remove;          /* remove the row with row.pk, else store row */
    struct tsemu_row row; /* owned */
};

struct tsemu_store {
    struct tsemu_table *tables[TSEMU_MAX_TABLES]; /* sorted by name; index tables too */
    size_t table_count;
    uint64_t next_index_id;
    int64_t index_lag_ms; /* global indexes follow their main table this much later */
    struct tsemu_pending *pending, *pending_tail; /* in due order */
};

void tsemu_store_init(struct tsemu_store *store);
/* Frees every table. Safe on an initialized store and twice. */
void tsemu_store_destroy(struct tsemu_store *store);

/* Creates an empty table from `tpl` (name, pk schema, options; rows ignored), copying the
 * strings. -EEXIST, -ENOSPC (too many tables) or -ENOMEM. */
int tsemu_store_table_create(struct tsemu_store *store, const struct tsemu_table *tpl,
                             struct tsemu_table **out);
struct tsemu_table *tsemu_store_table_find(struct tsemu_store *store, const char *name,
                                           size_t name_len);
/* Removes and frees a table. -ENOENT when it does not exist. */
int tsemu_store_table_delete(struct tsemu_store *store, const char *name, size_t name_len);

/* Orders two primary keys of `table` column by column: INTEGER numerically, STRING and BLOB
 * bytewise (a shorter prefix first); INF_MIN sorts before and INF_MAX after everything. */
int tsemu_pk_cmp(const struct tsemu_table *table, const struct tsemu_value *a,
                 const struct tsemu_value *b);

/* Sets *cur to the first row whose key is >= pk (or the end); true when that row's key is pk. */
bool tsemu_table_seek(const struct tsemu_table *table, const struct tsemu_value *pk,
                      struct tsemu_cursor *cur);
/* The row at *cur, or NULL at the end. */
const struct tsemu_packed *tsemu_cursor_row(const struct tsemu_table *table,
                                            const struct tsemu_cursor *cur);
/* Moves one row forward (possibly to the end) or backward; false when there is no row before. */
void tsemu_cursor_next(const struct tsemu_table *table, struct tsemu_cursor *cur);
bool tsemu_cursor_prev(const struct tsemu_table *table, struct tsemu_cursor *cur);
/* Compares the key of a packed row with `pk` (as tsemu_pk_cmp). */
int tsemu_packed_cmp(const struct tsemu_table *table, const struct tsemu_packed *row,
                     const struct tsemu_value *pk);

/* Stores `row` at *cur as positioned by tsemu_table_seek: replaces the row there when
 * `replace`, else inserts it. *cur stays valid and points at the stored row. */
int tsemu_table_store(struct tsemu_table *table, struct tsemu_cursor *cur,
                      const struct tsemu_row *row, bool replace);
/* Removes and frees the row at *cur; *cur then points at the row after it. */
void tsemu_table_erase(struct tsemu_table *table, struct tsemu_cursor *cur);

/* Fills `out` (zeroed first) with an owned copy of a packed row. -ENOMEM. */
int tsemu_row_unpack(const struct tsemu_table *table, const struct tsemu_packed *p,
                     struct tsemu_row *out);
/* Frees what a row owns and zeroes it. */
void tsemu_row_free_contents(struct tsemu_row *row);
/* Sets the key of an empty row to a copy of `pk`. -ENOMEM. */
int tsemu_row_set_key(const struct tsemu_table *table, struct tsemu_row *row,
                      const struct tsemu_value *pk);

/* Adds a version of column `name` (creating the column), replacing a version with the same
 * timestamp and keeping the newest `max_versions`. The value is copied. */
int tsemu_row_put(struct tsemu_row *row, const char *name, size_t name_len, int64_t ts,
                  const struct sg_ts_value *value, int32_t max_versions);
/* Removes the version at `ts` of a column; nothing when there is none. */
void tsemu_row_delete_version(struct tsemu_row *row, const char *name, size_t name_len, int64_t ts);
/* Removes a column with all its versions. */
void tsemu_row_delete_column(struct tsemu_row *row, const char *name, size_t name_len);
/* Removes every column. */
void tsemu_row_clear(struct tsemu_row *row);
struct tsemu_cell *tsemu_row_cell(struct tsemu_row *row, const char *name, size_t name_len);

/* ---- Secondary indexes (index.c) ------------------------------------------------------- */

/* Creates index `tpl` (name, cols, attrs, index_type, update_mode) of `main`, whose checks the
 * caller has made, with its index table; with `backfill`, indexes the rows already there.
 * -EEXIST (name taken), -ENOSPC (too many tables) or -ENOMEM. */
int tsemu_index_add(struct tsemu_store *store, struct tsemu_table *main,
                    const struct tsemu_index *tpl, bool backfill, int64_t now_ms);
/* Drops one index of `main` with its index table. -ENOENT when it has none of that name. */
int tsemu_index_drop(struct tsemu_store *store, struct tsemu_table *main, const char *name);
/* Follows a change of one main-table row: `old` is the row before (NULL: it did not exist),
 * `now` the row after (NULL: deleted). Index rows move, appear or go; for a global index with
 * an index lag the change is queued instead (unless `immediate`). */
int tsemu_index_row_changed(struct tsemu_store *store, struct tsemu_table *main,
                            const struct tsemu_row *old, const struct tsemu_row *now,
                            int64_t now_ms, bool immediate);
/* Applies the queued changes due at `now_ms` (all of them when now_ms is INT64_MAX). */
int tsemu_index_apply_due(struct tsemu_store *store, int64_t now_ms);
/* When the next queued change is due, or -1 when none is queued. */
int64_t tsemu_index_next_due(const struct tsemu_store *store);
/* Frees the index descriptions of `main` (not their tables). */
void tsemu_index_free_all(struct tsemu_table *main);
/* The value type a predefined column type (DefinedColumnType) holds, or -1. */
int tsemu_defined_value_type(int dct);
/* True when some index of `main` uses predefined column `name` (as index column or
 * attribute). */
bool tsemu_index_uses(const struct tsemu_table *main, const char *name, size_t len);

/* Copies a decoded value into an owned one (bytes duplicated). */
int tsemu_value_copy(struct tsemu_value *dst, const struct sg_ts_value *src);
void tsemu_value_free(struct tsemu_value *v);
/* A view of a stored value for the encoder (no copy). */
struct sg_ts_value tsemu_value_view(const struct tsemu_value *v);

/* ---- Operations ------------------------------------------------------------------------ */

/* What to answer: an HTTP status and a body (a response message, or an Error message for any
 * status other than 200). */
struct tsemu_reply {
    int status;
    const char *code; /* error code for non-200 answers, for the log */
    struct sg_buf body;
};

/* Runs operation `op` (e.g. "PutRow") on `store` with the protobuf request (body, len), at
 * wall-clock time `now_ms`; `busy_rows` (0 to 1) and `rng` make BatchWriteRow fail that
 * fraction of rows with OTSServerBusy. Fills `reply` (its body is reset first). Returns 0, or
 * -ENOMEM when not even an error answer could be built. Safe on any input bytes. */
int tsemu_ops_handle(struct tsemu_store *store, const char *op, size_t op_len, const void *body,
                     size_t len, int64_t now_ms, double busy_rows, uint64_t *rng,
                     struct tsemu_reply *reply);

/* True when `op` is one of the operations this emulator implements. */
bool tsemu_ops_known(const char *op, size_t op_len);

/* Fills reply with an Error body and status. Returns 0 or -ENOMEM. */
int tsemu_reply_error(struct tsemu_reply *reply, int status, const char *code, const char *msg);

/* ---- Snapshot -------------------------------------------------------------------------- */

/* Loads `path` into an empty store. A missing file is not an error (returns 0, nothing loaded).
 * -EINVAL with a message (file and line) on bad content, or a negative errno. */
int tsemu_snapshot_load(struct tsemu_store *store, const char *path, char *errstr,
                        size_t errstr_size);
/* Writes the store to `path` through a temporary file that is renamed over it. */
int tsemu_snapshot_save(const struct tsemu_store *store, const char *path, char *errstr,
                        size_t errstr_size);

/* ---- Server ---------------------------------------------------------------------------- */

/* The command line, parsed once (main.c's option table fills it). */
struct tsemu_config {
    char *listen; /* "host:port"; port 0 picks a free one */
    char *instance;
    char *access_key_id;
    char *access_key_secret;
    char *snapshot;             /* NULL: nothing is loaded or saved */
    double busy;                /* fraction of requests answered 503 OTSServerBusy */
    double busy_rows;           /* fraction of BatchWriteRow rows failed with OTSServerBusy */
    double drop;                /* fraction of requests whose connection is closed unanswered */
    uint64_t latency;           /* ms added before every answer */
    uint64_t max_request_bytes; /* bodies above it (read in full) get 413; 0: the 4 MB limit */
    uint64_t seed;              /* for the fault draws */
    uint64_t index_lag;         /* ms a global index lags behind its main table */
    bool verbose;               /* one line per request on stderr */
};

#define TSEMU_MAX_CONNECTIONS  1024
#define TSEMU_READ_BUF_SIZE    (64 * 1024)
#define TSEMU_MAX_HEADERS      64
#define TSEMU_MAX_HEADER_BYTES (32 * 1024)
#define TSEMU_MAX_URL_BYTES    1024
#define TSEMU_IDLE_TIMEOUT_MS  120000
#define TSEMU_DATE_SKEW_MS     (15 * 60 * 1000)

struct tsemu_server;
struct uv_loop_s;

/* Creates the server on `loop`: loads the snapshot (if set), binds and listens. `cfg` must
 * outlive the server. On failure returns a negative errno with a message; *out is still set
 * (unless -ENOMEM) and is ended like a running server: close, run the loop, destroy. */
int tsemu_server_create(struct tsemu_server **out, struct uv_loop_s *loop,
                        const struct tsemu_config *cfg, char *errstr, size_t errstr_size);
/* The bound "host:port". */
const char *tsemu_server_address(const struct tsemu_server *srv);
/* Stops listening and closes every connection; the loop ends once the handles are closed. */
void tsemu_server_close(struct tsemu_server *srv);
/* Writes the snapshot (if configured). Call after the loop has stopped. */
int tsemu_server_save(struct tsemu_server *srv, char *errstr, size_t errstr_size);
/* Frees the server after tsemu_server_close and the loop have finished. Safe on NULL. */
void tsemu_server_destroy(struct tsemu_server *srv);

/* ---- Randomness ------------------------------------------------------------------------ */

/* A uniform double in [0, 1) from a splitmix64 state (reproducible from --seed). */
double tsemu_rand(uint64_t *state);

#endif
