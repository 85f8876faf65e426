/* Request and response signatures (signature version 2, HMAC-SHA1) and content MD5
 * (PROTOCOL.md sections 1.3 and 1.4). The string to sign is fed to HMAC piece by piece, so
 * signing allocates nothing; the same emitter also writes it into a buffer for tests and logs. */
#include "streamgate/tablestore.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "tablestore_internal.h"

#define OTS_PREFIX     "x-ots-"
#define OTS_PREFIX_LEN 6

typedef int (*emit_fn)(void *ctx, const void *data, size_t len);

static int emit_buf(void *ctx, const void *data, size_t len)
{
    return sg_buf_append(ctx, data, len);
}

static int emit_mac(void *ctx, const void *data, size_t len)
{
    return EVP_MAC_update(ctx, data, len) == 1 ? 0 : -EIO;
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

static bool name_is(const struct sg_ts_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

static bool is_signed_header(const struct sg_ts_header *h)
{
    return h->name_len >= OTS_PREFIX_LEN && strncasecmp(h->name, OTS_PREFIX, OTS_PREFIX_LEN) == 0 &&
           !name_is(h, "x-ots-signature");
}

/* Orders header names as lower-case bytes; a name sorts before any longer name it prefixes. */
static int name_cmp(const struct sg_ts_header *a, const struct sg_ts_header *b)
{
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    for (size_t i = 0; i < n; i++) {
        unsigned char ca = lower((unsigned char)a->name[i]);
        unsigned char cb = lower((unsigned char)b->name[i]);
        if (ca != cb)
            return ca < cb ? -1 : 1;
    }
    return a->name_len < b->name_len ? -1 : a->name_len > b->name_len;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Emits "name:value\n" for every signed header, sorted (a stable insertion sort: there are at
 * most a handful, bounded by SG_TS_MAX_SIGNED_HEADERS). */
static int emit_canonical_headers(const struct sg_ts_header *headers, size_t count, emit_fn emit,
                                  void *ctx)
{
    const struct sg_ts_header *sorted[SG_TS_MAX_SIGNED_HEADERS];
    size_t n = 0;
    if (count > 0 && headers == NULL)
        return -EINVAL;
    for (size_t i = 0; i < count; i++) {
        const struct sg_ts_header *h = &headers[i];
        if (!is_signed_header(h))
            continue;
        if (n == SG_TS_MAX_SIGNED_HEADERS)
            return -E2BIG;
        size_t j = n++;
        while (j > 0 && name_cmp(sorted[j - 1], h) > 0) {
            sorted[j] = sorted[j - 1];
            j--;
        }
        sorted[j] = h;
    }
    for (size_t i = 0; i < n; i++) {
        const struct sg_ts_header *h = sorted[i];
        char name[64];
        int rc;
        for (size_t off = 0; off < h->name_len; off += sizeof(name)) {
            size_t k = h->name_len - off < sizeof(name) ? h->name_len - off : sizeof(name);
            for (size_t c = 0; c < k; c++)
                name[c] = (char)lower((unsigned char)h->name[off + c]);
            if ((rc = emit(ctx, name, k)))
                return rc;
        }
        const char *v = h->value;
        size_t vlen = h->value_len;
        while (vlen > 0 && is_space(v[0])) {
            v++;
            vlen--;
        }
        while (vlen > 0 && is_space(v[vlen - 1]))
            vlen--;
        if ((rc = emit(ctx, ":", 1)) || (vlen > 0 && (rc = emit(ctx, v, vlen))) ||
            (rc = emit(ctx, "\n", 1)))
            return rc;
    }
    return 0;
}

static int emit_request(const char *operation, const struct sg_ts_header *headers, size_t count,
                        emit_fn emit, void *ctx)
{
    int rc;
    if ((rc = emit(ctx, "/", 1)) || (rc = emit(ctx, operation, strlen(operation))) ||
        (rc = emit(ctx, "\nPOST\n\n", 7)))
        return rc;
    return emit_canonical_headers(headers, count, emit, ctx);
}

static int emit_response(const char *operation, const struct sg_ts_header *headers, size_t count,
                         emit_fn emit, void *ctx)
{
    int rc = emit_canonical_headers(headers, count, emit, ctx);
    if (rc == 0)
        rc = emit(ctx, "/", 1);
    if (rc == 0)
        rc = emit(ctx, operation, strlen(operation));
    return rc;
}

typedef int (*build_fn)(const char *operation, const struct sg_ts_header *headers, size_t count,
                        emit_fn emit, void *ctx);

static int to_buf(build_fn build, struct sg_buf *out, const char *operation,
                  const struct sg_ts_header *headers, size_t count)
{
    if (operation == NULL || operation[0] == '\0')
        return -EINVAL;
    size_t mark = out->len;
    int rc = build(operation, headers, count, emit_buf, out);
    if (rc)
        out->len = mark;
    return rc;
}

int sg_ts_request_string_to_sign(struct sg_buf *out, const char *operation,
                                 const struct sg_ts_header *headers, size_t count)
{
    return to_buf(emit_request, out, operation, headers, count);
}

int sg_ts_response_string_to_sign(struct sg_buf *out, const char *operation,
                                  const struct sg_ts_header *headers, size_t count)
{
    return to_buf(emit_response, out, operation, headers, count);
}

/* base64(HMAC-SHA1(secret, string built by `build`)). */
static int sign(build_fn build, const char *secret, size_t secret_len, const char *operation,
                const struct sg_ts_header *headers, size_t count, char out[SG_TS_SIGNATURE_SIZE])
{
    if (secret == NULL || secret_len == 0 || operation == NULL || operation[0] == '\0')
        return -EINVAL;
    int rc = -EIO;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *mctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    char digest[] = "SHA1";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t md_len = 0;
    if (mctx == NULL || EVP_MAC_init(mctx, (const unsigned char *)secret, secret_len, params) != 1)
        goto out;
    if ((rc = build(operation, headers, count, emit_mac, mctx)))
        goto out;
    rc = -EIO;
    if (EVP_MAC_final(mctx, md, &md_len, sizeof(md)) != 1 || md_len != 20)
        goto out;
    EVP_EncodeBlock((unsigned char *)out, md, (int)md_len);
    rc = 0;
out:
    EVP_MAC_CTX_free(mctx);
    EVP_MAC_free(mac);
    return rc;
}

int sg_ts_sign_request(const char *secret, size_t secret_len, const char *operation,
                       const struct sg_ts_header *headers, size_t count,
                       char out[SG_TS_SIGNATURE_SIZE])
{
    return sign(emit_request, secret, secret_len, operation, headers, count, out);
}

int sg_ts_sign_response(const char *secret, size_t secret_len, const char *operation,
                        const struct sg_ts_header *headers, size_t count,
                        char out[SG_TS_SIGNATURE_SIZE])
{
    return sign(emit_response, secret, secret_len, operation, headers, count, out);
}

/* Compares a received base64 value with a computed one in constant time. */
static bool same(const char *got, size_t got_len, const char *want)
{
    size_t n = strlen(want);
    return got_len == n && CRYPTO_memcmp(got, want, n) == 0;
}

static const struct sg_ts_header *find(const struct sg_ts_header *headers, size_t count,
                                       const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (name_is(&headers[i], name))
            return &headers[i];
    return NULL;
}

int sg_ts_verify_request(const char *secret, size_t secret_len, const char *operation,
                         const struct sg_ts_header *headers, size_t count)
{
    const struct sg_ts_header *h = find(headers, count, "x-ots-signature");
    if (h == NULL)
        return -ENOENT;
    char sig[SG_TS_SIGNATURE_SIZE];
    int rc = sg_ts_sign_request(secret, secret_len, operation, headers, count, sig);
    if (rc)
        return rc;
    return same(h->value, h->value_len, sig) ? 0 : -EACCES;
}

int sg_ts_verify_response(const char *secret, size_t secret_len, const char *access_key_id,
                          const char *operation, const struct sg_ts_header *headers, size_t count,
                          const void *body, size_t body_len)
{
    const struct sg_ts_header *auth = find(headers, count, "authorization");
    const struct sg_ts_header *md5 = find(headers, count, "x-ots-contentmd5");
    if (auth == NULL || md5 == NULL)
        return -ENOENT;
    char want_md5[SG_TS_MD5_SIZE];
    int rc = sg_ts_content_md5(body, body_len, want_md5);
    if (rc)
        return rc;
    if (!same(md5->value, md5->value_len, want_md5))
        return -EACCES;

    /* "OTS <id>:<signature>"; the signature is what follows the last ':' (base64 has none). */
    const char *v = auth->value;
    size_t vlen = auth->value_len;
    if (vlen < 4 || memcmp(v, "OTS ", 4) != 0)
        return -EINVAL;
    const char *colon = NULL;
    for (size_t i = 4; i < vlen; i++)
        if (v[i] == ':')
            colon = v + i;
    if (colon == NULL)
        return -EINVAL;
    size_t id_len = (size_t)(colon - (v + 4));
    if (access_key_id == NULL || id_len != strlen(access_key_id) ||
        memcmp(v + 4, access_key_id, id_len) != 0)
        return -EACCES;
    char sig[SG_TS_SIGNATURE_SIZE];
    if ((rc = sg_ts_sign_response(secret, secret_len, operation, headers, count, sig)))
        return rc;
    return same(colon + 1, vlen - id_len - 5, sig) ? 0 : -EACCES;
}

int sg_ts_content_md5(const void *body, size_t len, char out[SG_TS_MD5_SIZE])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    static const unsigned char empty[1];
    if (body == NULL && len > 0)
        return -EINVAL;
    if (EVP_Digest(body ? body : empty, len, md, &md_len, EVP_md5(), NULL) != 1 || md_len != 16)
        return -EIO;
    EVP_EncodeBlock((unsigned char *)out, md, (int)md_len);
    return 0;
}

int sg_ts_format_date(int64_t ms, char out[SG_TS_DATE_SIZE])
{
    /* 253402300800000 ms is 10000-01-01: the format has room for four-digit years only. */
    if (ms < 0 || ms >= INT64_C(253402300800000))
        return -ERANGE;
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL)
        return -ERANGE;
    int n = snprintf(out, SG_TS_DATE_SIZE, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return n == SG_TS_DATE_SIZE - 1 ? 0 : -ERANGE;
}
