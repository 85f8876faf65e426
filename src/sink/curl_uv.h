/* libcurl's multi interface on a libuv loop, shared by the Tablestore writer and reader.
 *
 * CURLMOPT_SOCKETFUNCTION tells which sockets to watch (one uv_poll_t each),
 * CURLMOPT_TIMERFUNCTION when to call back (one uv_timer_t), and curl_multi_socket_action is
 * called from those handles' callbacks only, so no call ever blocks the loop. Connections stay
 * open between transfers (the multi handle's connection cache). */
#ifndef STREAMGATE_SINK_CURL_UV_H
#define STREAMGATE_SINK_CURL_UV_H

#include <curl/curl.h>
#include <uv.h>

struct sg_curl_uv;

/* A transfer's owner embeds this and sets `done`; it is the transfer's CURLOPT_PRIVATE. `done`
 * runs on the loop once the transfer has finished and been taken off the multi handle. */
struct sg_curl_xfer {
    void (*done)(struct sg_curl_xfer *xfer, CURL *easy, CURLcode result);
};

/* Called once after the transfers that finished together have all been told (may be NULL). */
typedef void (*sg_curl_uv_idle_cb)(void *arg);

/* Creates the multi handle and its timer on `loop`. At most `max_host_connections` connections
 * to one host. Returns 0 or -ENOMEM. */
int sg_curl_uv_create(uv_loop_t *loop, long max_host_connections, struct sg_curl_uv **out);

/* Registers one more callback run after each round of finished transfers (up to 4). */
int sg_curl_uv_on_idle(struct sg_curl_uv *cu, sg_curl_uv_idle_cb cb, void *arg);

/* Starts `easy`, whose options are set; `xfer` is told when it ends. Returns 0 or -EIO. */
int sg_curl_uv_add(struct sg_curl_uv *cu, CURL *easy, struct sg_curl_xfer *xfer);

/* Takes an unfinished transfer off the multi handle; its `done` is not called. */
void sg_curl_uv_remove(struct sg_curl_uv *cu, CURL *easy);

/* Closes the cached connections and the loop handles; no callback runs after this. The object
 * is freed once the loop has closed its handles (or at once if it never started any). Safe on
 * NULL and from within a `done` or idle callback. */
void sg_curl_uv_close(struct sg_curl_uv *cu);

#endif
