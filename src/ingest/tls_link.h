/* A TLS engine (tls.h) on an accepted libuv TCP socket: reads ciphertext from the socket and
 * hands the plaintext to its owner, encrypts the owner's writes, sends the handshake, enforces
 * the handshake timeout and counts handshakes and errors. Both listeners wrap their
 * connections in one when TLS is configured; the owner's parsing paths stay the same. */
#ifndef SG_INGEST_TLS_LINK_H
#define SG_INGEST_TLS_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "streamgate/budget.h"
#include "streamgate/config.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "tls.h"

/* What sg_tls_link_write returns when every byte went out before it returned. */
#define SG_TLS_LINK_WRITTEN 1
/* Ciphertext read from a socket at a time. */
#define SG_TLS_LINK_CBUF (16 * 1024)

/* A listener's TLS: its context and what every one of its connections shares. */
struct sg_tls_server {
    struct sg_tls_ctx *ctx;
    const char *transport; /* "http" or "tcp", for metrics and logs */
    uint64_t handshake_timeout_ms;
    struct sg_log *log;
    struct sg_budget *budget; /* NULL: not counted */
    struct sg_log_limiter limiter;
    struct sg_counter *handshake_ok;
    struct sg_counter *handshake_failed;
    struct sg_counter *handshake_timeout;
    struct sg_counter *resumed;
    struct sg_counter *errors;
    struct sg_counter *limit_timeout;
    /* Reads are fed to a connection's engine at once and its plaintext handed over before the
     * next read, so every connection of the listener shares these: an idle connection holds
     * only what its engine keeps of a partial record. */
    char *plain; /* the owner's shared read buffer: plaintext is decrypted into it */
    size_t plain_size;
    char cbuf[SG_TLS_LINK_CBUF]; /* ciphertext, read from the socket */
};

/* Builds a listener's TLS from `<prefix>.tls_*` options (prefix "http" or "tcp"); with no
 * certificate configured, *out is NULL and 0 is returned. `alpn` as in sg_tls_ctx_opts. `plain`
 * (`plain_size` bytes) is the owner's read buffer, shared by its connections: plaintext lands
 * there and is valid only during on_plain. Returns 0 or a negative code with errstr set. */
int sg_tls_server_create(const struct sg_config *cfg, const char *transport, const char *alpn,
                         struct sg_log *log, struct sg_metrics *metrics, struct sg_budget *budget,
                         char *plain, size_t plain_size, struct sg_tls_server **out, char *errstr,
                         size_t errstr_size);
/* Reads the certificate, key and client CA again, from the paths `cfg` now names, for new
 * connections (see sg_tls_ctx_reload_from), and takes its handshake timeout; logs the outcome.
 * A failure keeps the certificate in use and counts in streamgate_tls_errors_total. Returns 0
 * or a negative code with errstr set. */
int sg_tls_server_reload(struct sg_tls_server *ts, const struct sg_config *cfg, char *errstr,
                         size_t errstr_size);
void sg_tls_server_destroy(struct sg_tls_server *ts);

/* What a link reports to its owner. None is called from inside an sg_tls_link_* call. */
struct sg_tls_link_cbs {
    /* Plaintext arrived (only while reading), in the listener's shared buffer: valid during
     * the call only. */
    void (*on_plain)(void *arg, const char *data, size_t len);
    /* The handshake completed: sg_tls_client_id(link->tls) is known. May be NULL. */
    void (*on_handshake)(void *arg);
    /* Input ended: UV_EOF (the peer closed, with or without close_notify), UV_EPROTO (a TLS
     * error, already counted and logged), UV_ETIMEDOUT (the handshake timeout, counted), or a
     * read error. Reading has stopped. */
    void (*on_end)(void *arg, int status);
    /* A write that returned 0 is out (0) or failed (a negative code). */
    void (*on_written)(void *arg, int status);
    void (*on_shutdown)(void *arg, int status);
    /* The socket is closed; the link is freed right after this returns. */
    void (*on_closed)(void *arg);
};

struct sg_tls_link;

/* Wraps `tcp` (accepted, owned by the caller until sg_tls_link_close, which closes it) and
 * starts the handshake timeout. `peer` (copied) names the client in logs. Returns 0 or -ENOMEM;
 * on failure nothing was started and the caller still owns `tcp`. */
int sg_tls_link_create(struct sg_tls_server *ts, uv_tcp_t *tcp, const char *peer,
                       const struct sg_tls_link_cbs *cbs, void *arg, struct sg_tls_link **out);
int sg_tls_link_read_start(struct sg_tls_link *link);
void sg_tls_link_read_stop(struct sg_tls_link *link);
/* Encrypts and sends `len` bytes: SG_TLS_LINK_WRITTEN when all ciphertext went out at once, 0
 * when it is in flight (on_written follows; at most one such write at a time), or a negative
 * code. With `defer`, never SG_TLS_LINK_WRITTEN: on_written follows even then, in a later loop
 * iteration. `data` need not stay valid. */
int sg_tls_link_write(struct sg_tls_link *link, const char *data, size_t len, bool defer);
/* Sends close_notify, then ends the write side once everything is out (on_shutdown). */
int sg_tls_link_shutdown(struct sg_tls_link *link);
/* Closes the socket and the link's timers; on_closed follows. After a handshake, a
 * close_notify goes first when the socket takes it at once (none was sent yet, nothing is in
 * flight). */
void sg_tls_link_close(struct sg_tls_link *link);
/* The client certificate's identity ("" before the handshake or without one). */
const char *sg_tls_link_client_id(const struct sg_tls_link *link);

#endif
