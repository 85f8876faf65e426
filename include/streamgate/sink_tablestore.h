/* The Tablestore writer: window results (and optionally raw events) written as rows with
 * BatchWriteRow over libcurl's multi interface, driven by the loop (one uv_poll_t per socket
 * libcurl opens, one uv_timer_t for its timeouts). Rows are batched (200 rows or 4 MB, or
 * tablestore.linger), at most tablestore.max_in_flight requests run at once, and failed rows
 * are retried with exponential backoff and full jitter; rows that fail for good are counted,
 * logged and handed to the dead-letter output. Every row held is charged to the memory budget,
 * whose watermark pushes back on clients.
 *
 * Results rows: PK (key STRING, window_start INTEGER), columns window_end, count, shard, per
 * field <field>_count/_sum/_min/_max/_mean/_stddev/_first/_last, _<quantile> and _sketch (its
 * DDSketch's stored form), distinct and distinct_hll (the registers), final. With
 * tablestore.time_index the results table has a global index by (shard, window_start, key).
 * The writer's reader (streamgate/tablestore_reader.h) reads them back on the same connections.
 * Raw rows: PK (key STRING, ts INTEGER, id STRING), one column per top-level scalar field. */
#ifndef STREAMGATE_SINK_TABLESTORE_H
#define STREAMGATE_SINK_TABLESTORE_H

#include <stddef.h>
#include <uv.h>

struct sg_budget;
struct sg_buf;
struct sg_config;
struct sg_dead_letter;
struct sg_log;
struct sg_metrics;
struct sg_sink;

/* Reads the secret (tablestore.access_key_secret_file wins over access_key_secret), builds the
 * writer and checks the tables with DescribeTable (creating missing ones with CreateTable when
 * tablestore.create_tables is set). The first round of checks is blocking HTTP calls (at most
 * 10 s): call this before the loop runs. When Tablestore cannot be reached or is busy, the
 * writer is created anyway, unhealthy: it holds rows and repeats the checks on the loop with
 * backoff until they pass. Only a definite configuration error (a missing table, another
 * primary key, a refused AccessKey) fails here; found later, it fails the writer for good (not
 * accepting, every row failed). `budget` and `dead_letter` may be NULL. Returns 0 or a negative
 * code with a message in errstr (never containing the secret). Its `info` op renders
 * {"endpoint":..,"instance":..,"rows_pending":N,"rows_waiting":N,"rows_in_flight":N,
 *  "requests_in_flight":N,"written":N,"failed":N,"retried":N,
 *  "state":"checking|ready|failed","healthy":bool} */
int sg_sink_tablestore_create(uv_loop_t *loop, const struct sg_config *cfg,
                              struct sg_budget *budget, struct sg_dead_letter *dead_letter,
                              struct sg_metrics *metrics, struct sg_log *log, struct sg_sink **out,
                              char *errstr, size_t errstr_size);

#endif
