/* The TLS engine over memory BIOs: see tls.h. OpenSSL reads the ciphertext the caller fed from
 * one memory BIO and writes what it produces to another; nothing here does I/O or blocks. */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Sessions the server-side cache keeps per listener (each a few hundred bytes); the oldest go
 * first. Tickets resume sessions past it. */
#define SG_TLS_SESSION_CACHE 4096
/* Plaintext written before the handshake completes is held up to this much (only a refusal's
 * short answer ever is). */
#define SG_TLS_EARLY_MAX (64 * 1024)

static const unsigned char sg_tls_sid_ctx[] = "streamgate";

struct sg_tls_ctx {
    SSL_CTX *ssl_ctx; /* replaced on reload; connections hold a reference to theirs */
    char *cert, *key, *client_ca, *alpn;
    unsigned char alpn_wire[64]; /* alpn as a length-prefixed protocol list */
    size_t alpn_wire_len;
};

struct sg_tls {
    SSL *ssl;
    BIO *rbio; /* ciphertext fed, for OpenSSL to read */
    BIO *wbio; /* ciphertext OpenSSL produced, to send */
    bool done; /* handshake completed */
    bool failed;
    bool peer_cert;      /* the client sent a certificate, which the session keeps */
    struct sg_buf early; /* plaintext written before the handshake completed */
    char reason[160];
    char client_id[SG_TLS_ID_MAX];
    char alpn[32];
};

/* The most recent OpenSSL error as text, emptying the error queue. */
static void ssl_reason(char *buf, size_t size, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();

    if (e != 0) {
        const char *r = ERR_reason_error_string(e);
        if (r)
            snprintf(buf, size, "%s", r);
        else
            ERR_error_string_n(e, buf, size);
    } else {
        snprintf(buf, size, "%s", fallback);
    }
    ERR_clear_error();
}

static int ctx_fail(char *errstr, size_t errstr_size, const char *what, const char *path)
{
    char why[160];

    ssl_reason(why, sizeof(why), "unknown error");
    snprintf(errstr, errstr_size, "%s %s: %s", what, path, why);
    return -EINVAL;
}

/* The ALPN callback: the configured protocol when the client offers it; otherwise the
 * handshake goes on without ALPN (a client that offers none is served too). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    struct sg_tls_ctx *ctx = arg;
    unsigned char *sel = NULL;
    (void)ssl;

    if (SSL_select_next_proto(&sel, outlen, ctx->alpn_wire, (unsigned int)ctx->alpn_wire_len, in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Builds an SSL_CTX from the files `ctx` names. Returns NULL with errstr set. */
static SSL_CTX *ctx_build(struct sg_tls_ctx *ctx, char *errstr, size_t errstr_size)
{
    SSL_CTX *sc = SSL_CTX_new(TLS_server_method());

    ERR_clear_error();
    if (!sc) {
        snprintf(errstr, errstr_size, "cannot create a TLS context: out of memory");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION);
    /* A client asking to renegotiate makes the server redo the expensive part at will. */
    SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION);
    /* The record buffers (about 17 KiB each way) go back whenever they are empty: an idle
     * connection does not keep 34 KiB for the next record. */
    SSL_CTX_set_mode(sc, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(sc, SG_TLS_SESSION_CACHE);
    SSL_CTX_set_session_id_context(sc, sg_tls_sid_ctx, sizeof(sg_tls_sid_ctx) - 1);
    if (SSL_CTX_use_certificate_chain_file(sc, ctx->cert) != 1) {
        ctx_fail(errstr, errstr_size, "cannot load the certificate", ctx->cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(sc, ctx->key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
            ctx_fail(errstr, errstr_size, "cannot load the private key", ctx->key);
            goto fail;
        }
    }
    if (ERR_peek_last_error() != 0 || SSL_CTX_check_private_key(sc) != 1) {
        ERR_clear_error();
        snprintf(errstr, errstr_size, "the private key %s does not match the certificate %s",
                 ctx->key, ctx->cert);
        goto fail;
    }
    if (ctx->client_ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ctx->client_ca);
        if (!names || SSL_CTX_load_verify_locations(sc, ctx->client_ca, NULL) != 1) {
            if (names)
                sk_X509_NAME_pop_free(names, X509_NAME_free);
            ctx_fail(errstr, errstr_size, "cannot load the client CA", ctx->client_ca);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(sc, names);
        SSL_CTX_set_verify(sc, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    if (ctx->alpn_wire_len > 0)
        SSL_CTX_set_alpn_select_cb(sc, alpn_select, ctx);
    return sc;

fail:
    SSL_CTX_free(sc);
    return NULL;
}

void sg_tls_ctx_destroy(struct sg_tls_ctx *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx->cert);
    free(ctx->key);
    free(ctx->client_ca);
    free(ctx->alpn);
    free(ctx);
}

static char *dup_opt(const char *s)
{
    return s && s[0] ? strdup(s) : NULL;
}

int sg_tls_ctx_create(const struct sg_tls_ctx_opts *opts, struct sg_tls_ctx **out, char *errstr,
                      size_t errstr_size)
{
    struct sg_tls_ctx *ctx = calloc(1, sizeof(*ctx));
    int rc = -ENOMEM;

    *out = NULL;
    if (!ctx)
        goto oom;
    ctx->cert = dup_opt(opts->cert);
    ctx->key = dup_opt(opts->key);
    ctx->client_ca = dup_opt(opts->client_ca);
    ctx->alpn = dup_opt(opts->alpn);
    if (!ctx->cert || !ctx->key || (opts->client_ca && opts->client_ca[0] && !ctx->client_ca) ||
        (opts->alpn && opts->alpn[0] && !ctx->alpn))
        goto oom;
    if (ctx->alpn) {
        size_t n = strlen(ctx->alpn);
        if (n > 255 || n + 1 > sizeof(ctx->alpn_wire)) {
            snprintf(errstr, errstr_size, "ALPN protocol name too long: %s", ctx->alpn);
            rc = -EINVAL;
            goto fail;
        }
        ctx->alpn_wire[0] = (unsigned char)n;
        memcpy(ctx->alpn_wire + 1, ctx->alpn, n);
        ctx->alpn_wire_len = n + 1;
    }
    ctx->ssl_ctx = ctx_build(ctx, errstr, errstr_size);
    if (!ctx->ssl_ctx) {
        rc = -EINVAL;
        goto fail;
    }
    *out = ctx;
    return 0;

oom:
    snprintf(errstr, errstr_size, "TLS context: out of memory");
fail:
    sg_tls_ctx_destroy(ctx);
    return rc;
}

int sg_tls_ctx_reload(struct sg_tls_ctx *ctx, char *errstr, size_t errstr_size)
{
    SSL_CTX *sc = ctx_build(ctx, errstr, errstr_size);

    if (!sc)
        return -EINVAL;
    SSL_CTX_free(ctx->ssl_ctx); /* open connections keep their own reference */
    ctx->ssl_ctx = sc;
    return 0;
}

int sg_tls_ctx_reload_from(struct sg_tls_ctx *ctx, const struct sg_tls_ctx_opts *opts, char *errstr,
                           size_t errstr_size)
{
    char *cert = dup_opt(opts->cert), *key = dup_opt(opts->key);
    char *client_ca = dup_opt(opts->client_ca);
    int rc;

    if (!cert || !key || (opts->client_ca && opts->client_ca[0] && !client_ca)) {
        snprintf(errstr, errstr_size, "TLS context: out of memory");
        rc = -ENOMEM;
    } else {
        /* Built from the new paths; on failure the old ones (and the context) stay. */
        char *old[3] = {ctx->cert, ctx->key, ctx->client_ca};
        ctx->cert = cert;
        ctx->key = key;
        ctx->client_ca = client_ca;
        rc = sg_tls_ctx_reload(ctx, errstr, errstr_size);
        if (rc < 0) {
            ctx->cert = old[0];
            ctx->key = old[1];
            ctx->client_ca = old[2];
        } else {
            cert = old[0];
            key = old[1];
            client_ca = old[2];
        }
    }
    free(cert);
    free(key);
    free(client_ca);
    return rc;
}

/* --- connections ------------------------------------------------------------------------- */

void sg_tls_destroy(struct sg_tls *tls)
{
    if (!tls)
        return;
    /* OpenSSL drops the session of a connection freed without a shutdown from the cache;
     * clients often just close, and a healthy session should still resume. */
    if (tls->ssl && tls->done && !tls->failed)
        SSL_set_shutdown(tls->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(tls->ssl); /* frees both BIOs */
    sg_buf_free(&tls->early);
    free(tls);
}

int sg_tls_create(struct sg_tls_ctx *ctx, struct sg_tls **out)
{
    struct sg_tls *tls = calloc(1, sizeof(*tls));

    *out = NULL;
    if (!tls)
        return -ENOMEM;
    sg_buf_init(&tls->early, SG_TLS_EARLY_MAX);
    tls->ssl = SSL_new(ctx->ssl_ctx);
    tls->rbio = BIO_new(BIO_s_mem());
    tls->wbio = BIO_new(BIO_s_mem());
    if (!tls->ssl || !tls->rbio || !tls->wbio) {
        BIO_free(tls->rbio);
        BIO_free(tls->wbio);
        tls->rbio = tls->wbio = NULL;
        sg_tls_destroy(tls);
        ERR_clear_error();
        return -ENOMEM;
    }
    /* An empty memory BIO reads as "try again", not as end of file. */
    BIO_set_mem_eof_return(tls->rbio, -1);
    BIO_set_mem_eof_return(tls->wbio, -1);
    SSL_set_bio(tls->ssl, tls->rbio, tls->wbio);
    SSL_set_accept_state(tls->ssl);
    *out = tls;
    return 0;
}

int sg_tls_feed(struct sg_tls *tls, const char *data, size_t len)
{
    while (len > 0) {
        int chunk = len > INT32_MAX ? INT32_MAX : (int)len;
        int n = BIO_write(tls->rbio, data, chunk);
        if (n <= 0) {
            ERR_clear_error();
            return -ENOMEM;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Records why the session failed; returns -EPROTO. */
static int tls_failed(struct sg_tls *tls, int err)
{
    long verify = SSL_get_verify_result(tls->ssl);

    tls->failed = true;
    if (!tls->done && verify != X509_V_OK) {
        snprintf(tls->reason, sizeof(tls->reason), "client certificate: %s",
                 X509_verify_cert_error_string(verify));
        ERR_clear_error();
    } else if (err == SSL_ERROR_SYSCALL) {
        ssl_reason(tls->reason, sizeof(tls->reason), "unexpected end of the TLS stream");
    } else {
        ssl_reason(tls->reason, sizeof(tls->reason), "TLS protocol error");
    }
    return -EPROTO;
}

/* The client certificate's identity: subject CN, else the first SAN of a usable kind. */
static void tls_read_identity(struct sg_tls *tls)
{
    X509 *peer = SSL_get1_peer_certificate(tls->ssl);

    tls->client_id[0] = '\0';
    if (!peer)
        return;
    tls->peer_cert = true;
    X509_NAME *subject = X509_get_subject_name(peer);
    if (subject && X509_NAME_get_text_by_NID(subject, NID_commonName, tls->client_id,
                                             (int)sizeof(tls->client_id)) > 0) {
        X509_free(peer);
        return;
    }
    tls->client_id[0] = '\0';
    GENERAL_NAMES *sans = X509_get_ext_d2i(peer, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        const ASN1_IA5STRING *s = NULL;
        if (gn->type == GEN_DNS)
            s = gn->d.dNSName;
        else if (gn->type == GEN_EMAIL)
            s = gn->d.rfc822Name;
        else if (gn->type == GEN_URI)
            s = gn->d.uniformResourceIdentifier;
        if (s) {
            int n = ASN1_STRING_length(s);
            if (n >= (int)sizeof(tls->client_id))
                n = (int)sizeof(tls->client_id) - 1;
            memcpy(tls->client_id, ASN1_STRING_get0_data(s), (size_t)n);
            tls->client_id[n] = '\0';
            break;
        }
    }
    GENERAL_NAMES_free(sans);
    X509_free(peer);
}

/* Writes plaintext through OpenSSL; the memory BIO takes any amount, so it all goes. */
static int tls_encrypt(struct sg_tls *tls, const char *data, size_t len)
{
    while (len > 0) {
        size_t n = 0;
        if (SSL_write_ex(tls->ssl, data, len, &n) != 1) {
            int err = SSL_get_error(tls->ssl, 0);
            return tls_failed(tls, err);
        }
        data += n;
        len -= n;
    }
    return 0;
}

static int tls_handshake(struct sg_tls *tls)
{
    int r = SSL_do_handshake(tls->ssl);

    if (r == 1) {
        const unsigned char *p = NULL;
        unsigned int len = 0;

        tls->done = true;
        tls_read_identity(tls);
        SSL_get0_alpn_selected(tls->ssl, &p, &len);
        if (p && len < sizeof(tls->alpn)) {
            memcpy(tls->alpn, p, len);
            tls->alpn[len] = '\0';
        }
        if (tls->early.len > 0) {
            int rc = tls_encrypt(tls, tls->early.data, tls->early.len);
            sg_buf_free(&tls->early);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    int err = SSL_get_error(tls->ssl, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
        return 0;
    return tls_failed(tls, err);
}

ssize_t sg_tls_read(struct sg_tls *tls, char *buf, size_t cap)
{
    size_t n = 0;

    if (tls->failed)
        return -EPROTO;
    if (!tls->done) {
        int rc = tls_handshake(tls);
        if (rc < 0 || !tls->done)
            return rc;
    }
    if (SSL_read_ex(tls->ssl, buf, cap, &n) == 1)
        return (ssize_t)n;
    int err = SSL_get_error(tls->ssl, 0);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
        return 0;
    if (err == SSL_ERROR_ZERO_RETURN)
        return -EPIPE;
    return tls_failed(tls, err);
}

int sg_tls_write(struct sg_tls *tls, const char *data, size_t len)
{
    if (tls->failed)
        return -EPROTO;
    if (!tls->done)
        return sg_buf_append(&tls->early, data, len) == 0 ? 0 : -ENOMEM;
    return tls_encrypt(tls, data, len);
}

void sg_tls_close_notify(struct sg_tls *tls)
{
    if (tls->done && !tls->failed)
        SSL_shutdown(tls->ssl);
    ERR_clear_error();
}

int sg_tls_out(struct sg_tls *tls, struct sg_buf *out)
{
    char *data;
    long n = BIO_get_mem_data(tls->wbio, &data);
    int rc;

    if (n <= 0)
        return 0;
    rc = sg_buf_append(out, data, (size_t)n);
    if (rc == 0)
        (void)BIO_reset(tls->wbio);
    return rc;
}

bool sg_tls_has_out(const struct sg_tls *tls)
{
    return BIO_ctrl_pending(tls->wbio) > 0;
}

bool sg_tls_has_in(const struct sg_tls *tls)
{
    return BIO_ctrl_pending(tls->rbio) > 0 || SSL_pending(tls->ssl) > 0;
}

bool sg_tls_handshake_done(const struct sg_tls *tls)
{
    return tls->done;
}

const char *sg_tls_reason(const struct sg_tls *tls)
{
    return tls->reason[0] ? tls->reason : "no error";
}

const char *sg_tls_client_id(const struct sg_tls *tls)
{
    return tls->client_id;
}

bool sg_tls_resumed(const struct sg_tls *tls)
{
    return SSL_session_reused(tls->ssl) == 1;
}

const char *sg_tls_version(const struct sg_tls *tls)
{
    return SSL_get_version(tls->ssl);
}

const char *sg_tls_alpn(const struct sg_tls *tls)
{
    return tls->alpn;
}

static size_t bio_storage(BIO *bio)
{
    BUF_MEM *bm = NULL;

    BIO_get_mem_ptr(bio, &bm);
    return bm ? bm->max : 0;
}

/* A fresh, empty memory BIO in place of an empty one holding storage, or NULL to keep it. */
static BIO *bio_fresh(BIO *bio)
{
    BIO *b;

    if (BIO_ctrl_pending(bio) > 0 || bio_storage(bio) == 0)
        return NULL;
    b = BIO_new(BIO_s_mem());
    if (b)
        BIO_set_mem_eof_return(b, -1);
    ERR_clear_error();
    return b;
}

void sg_tls_trim(struct sg_tls *tls)
{
    BIO *b;

    if (!tls->done || tls->failed)
        return;
    b = bio_fresh(tls->rbio);
    if (b) {
        SSL_set0_rbio(tls->ssl, b); /* frees the old one */
        tls->rbio = b;
    }
    b = bio_fresh(tls->wbio);
    if (b) {
        SSL_set0_wbio(tls->ssl, b);
        tls->wbio = b;
    }
}

size_t sg_tls_held(const struct sg_tls *tls)
{
    size_t state = SG_TLS_HANDSHAKE_HELD;

    if (tls->done)
        state = SG_TLS_IDLE_HELD + (tls->peer_cert ? SG_TLS_CLIENT_CERT_HELD : 0);
    if (SSL_has_pending(tls->ssl))
        state += SG_TLS_RECORD_HELD;
    return state + bio_storage(tls->rbio) + bio_storage(tls->wbio) + tls->early.cap;
}
