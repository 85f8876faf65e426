/* A TLS server engine that never touches a socket: the caller feeds it the ciphertext it read
 * and sends the ciphertext it produces, so it works on the event loop without blocking and can
 * be driven from memory in tests. One sg_tls_ctx per listener (certificate, key, client CA,
 * ALPN, session cache and tickets); one sg_tls per connection. tls_link.c puts a connection's
 * engine on a libuv socket. */
#ifndef SG_INGEST_TLS_H
#define SG_INGEST_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "streamgate/buf.h"

/* What one connection's TLS state holds on the heap besides its BIOs' storage, counted against
 * the memory budget with that storage. OpenSSL gives its record buffers back whenever they are
 * empty (SSL_MODE_RELEASE_BUFFERS), so the figure depends on the phase. Measured with
 * mallinfo2 over 200 connections (OpenSSL 3.0, P-256 certificates; tests/unit/test_tls.c checks
 * them): while the handshake runs (after the client's hello, the server's flight produced)
 * 43-47 KiB; after it, idle, 14-16 KiB, and about 8 KiB more with a client certificate (kept,
 * parsed, with its verified chain); while OpenSSL holds part of a record, its read buffer. */
#define SG_TLS_HANDSHAKE_HELD   (48 * 1024)
#define SG_TLS_IDLE_HELD        (16 * 1024)
#define SG_TLS_CLIENT_CERT_HELD (8 * 1024)
#define SG_TLS_RECORD_HELD      (18 * 1024)
/* Bytes of a client's certificate subject kept as its identity. */
#define SG_TLS_ID_MAX 256

struct sg_tls_ctx;
struct sg_tls;

/* A listener's TLS settings: paths as given in the configuration. */
struct sg_tls_ctx_opts {
    const char *cert;      /* PEM certificate chain, the server's own first */
    const char *key;       /* PEM private key matching cert */
    const char *client_ca; /* PEM CA bundle; NULL or "": clients are not asked for a certificate */
    const char *alpn;      /* protocol selected when the client offers it, e.g. "http/1.1"; NULL:
                            * no ALPN */
};

/* Loads the certificate and key (and client CA) and builds a server context: TLS 1.2 at least,
 * a server-side session cache and session tickets for resumption, and with a client CA, a
 * client certificate required and verified. The options' strings are copied. Returns 0, or a
 * negative code with a message in errstr naming the file and what is wrong with it. */
int sg_tls_ctx_create(const struct sg_tls_ctx_opts *opts, struct sg_tls_ctx **out, char *errstr,
                      size_t errstr_size);
/* Reads the certificate, key and client CA again from the same paths; connections accepted
 * afterwards use them, connections already open keep theirs. On failure (a file unreadable, a
 * key that does not match) nothing changes and errstr says why. Returns 0 or a negative code.
 * Sessions established before a reload are not resumed after it. */
int sg_tls_ctx_reload(struct sg_tls_ctx *ctx, char *errstr, size_t errstr_size);
/* As sg_tls_ctx_reload, from the paths in `opts` (its alpn is ignored): the context uses them
 * from now on when they load, and keeps its old paths and certificate when they do not. */
int sg_tls_ctx_reload_from(struct sg_tls_ctx *ctx, const struct sg_tls_ctx_opts *opts, char *errstr,
                           size_t errstr_size);
void sg_tls_ctx_destroy(struct sg_tls_ctx *ctx);

/* A server-side connection. Returns 0 or -ENOMEM. */
int sg_tls_create(struct sg_tls_ctx *ctx, struct sg_tls **out);
void sg_tls_destroy(struct sg_tls *tls);

/* Takes `len` bytes of ciphertext read from the peer. Returns 0 or -ENOMEM. */
int sg_tls_feed(struct sg_tls *tls, const char *data, size_t len);
/* Advances the handshake and decrypts: up to `cap` bytes of plaintext into `buf`. Returns the
 * number of bytes (> 0), 0 when nothing more can be done until more ciphertext is fed (the
 * handshake may have progressed: look at sg_tls_out), -EPIPE when the peer ended the session
 * (close_notify), or -EPROTO when the peer broke the protocol or failed verification:
 * sg_tls_reason says why, and sg_tls_out may hold an alert to send before closing. */
ssize_t sg_tls_read(struct sg_tls *tls, char *buf, size_t cap);
/* Encrypts `len` bytes of plaintext to send. Before the handshake is done they wait inside the
 * engine and go out when it completes. Returns 0, -ENOMEM, or -EPROTO after a failure. */
int sg_tls_write(struct sg_tls *tls, const char *data, size_t len);
/* Queues a close_notify alert. */
void sg_tls_close_notify(struct sg_tls *tls);
/* Moves the ciphertext waiting to be sent to the end of `out`. Returns 0 or a negative code
 * (sg_buf_append's: -ENOMEM, or its cap). */
int sg_tls_out(struct sg_tls *tls, struct sg_buf *out);
/* Whether ciphertext waits to be sent, or input waits to be decrypted. */
bool sg_tls_has_out(const struct sg_tls *tls);
bool sg_tls_has_in(const struct sg_tls *tls);

bool sg_tls_handshake_done(const struct sg_tls *tls);
/* Why the session failed: OpenSSL's reason, or the certificate verification error. */
const char *sg_tls_reason(const struct sg_tls *tls);
/* After the handshake: the client certificate's subject common name, or when it has none, its
 * first DNS (or e-mail, URI) subject alternative name; "" without a client certificate. */
const char *sg_tls_client_id(const struct sg_tls *tls);
bool sg_tls_resumed(const struct sg_tls *tls);
/* The negotiated protocol version ("TLSv1.3") and ALPN protocol ("" when none). */
const char *sg_tls_version(const struct sg_tls *tls);
const char *sg_tls_alpn(const struct sg_tls *tls);
/* After the handshake, gives back the storage of the memory BIOs when they are empty: they grew
 * to the largest flight or read they held and would keep that size for the connection's life.
 * Costs an allocation when they are used again. */
void sg_tls_trim(struct sg_tls *tls);
/* Bytes this connection's TLS state holds: its BIOs' storage, plaintext waiting for the
 * handshake, and OpenSSL's state for the phase it is in (SG_TLS_*_HELD). */
size_t sg_tls_held(const struct sg_tls *tls);

#endif
