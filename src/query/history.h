/* GET /v1/history: window results stored in Tablestore, read back through the Tablestore
 * writer's reader on the loop (see README "Querying stored results"). */
#ifndef STREAMGATE_QUERY_HISTORY_H
#define STREAMGATE_QUERY_HISTORY_H

#include <stddef.h>

struct sg_budget;
struct sg_config;
struct sg_history;
struct sg_http_conn;
struct sg_log;
struct sg_metrics;
struct sg_streams;
struct sg_ts_reader;

/* `reader` may be NULL (no Tablestore writer): every query then answers 404 naming
 * tablestore.endpoint. `streams` (may be NULL: a gateway) has the open windows live=true adds.
 * `budget` (may be NULL) is charged with the queries' buffers. Returns 0 or -ENOMEM. */
int sg_history_create(const struct sg_config *cfg, struct sg_ts_reader *reader,
                      struct sg_streams *streams, struct sg_metrics *metrics, struct sg_log *log,
                      struct sg_budget *budget, struct sg_history **out);

/* Ends the queries in progress (their connections get 503) and frees it. Safe on NULL. */
void sg_history_destroy(struct sg_history *h);

/* The HTTP handler (sg_http_handler) of GET /v1/history and /v1/history/{key}. */
void sg_history_handle(void *arg, struct sg_http_conn *conn, const char *url, size_t url_len);

#endif
