/* Request and response signatures and content MD5 against the captured JS SDK traffic
 * (http_batchwriterow.json, http_other_operations.json) and responses.json. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/common.h"
#include "streamgate/tablestore.h"
#include "vectors.h"

#define SECRET "SecretExample/Key+456="
#define AKID   "AKIDEXAMPLE123"

#define MAX_HEADERS 32

/* The captured headers exactly as received, non-x-ots ones included. */
static size_t wire_headers(const cJSON *req, struct sg_ts_header *h)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(req, "headers_in_wire_order");
    size_t n = (size_t)cJSON_GetArraySize(list) / 2;
    cr_assert_leq(n, MAX_HEADERS);
    for (size_t i = 0; i < n; i++) {
        const char *name = cJSON_GetArrayItem(list, (int)(2 * i))->valuestring;
        const char *value = cJSON_GetArrayItem(list, (int)(2 * i + 1))->valuestring;
        h[i] = sg_ts_hdr(name, value);
    }
    return n;
}

static const char *header_value(const struct sg_ts_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(name) == h[i].name_len && strncmp(h[i].name, name, h[i].name_len) == 0)
            return h[i].value;
    cr_assert_fail("no header %s", name);
    return NULL;
}

static int check_requests(const char *file)
{
    cJSON *doc = tv_load(file);
    const cJSON *req;
    int n = 0;
    cJSON_ArrayForEach(req, cJSON_GetObjectItemCaseSensitive(doc, "requests"))
    {
        const char *op = tv_str(req, "operation");
        struct sg_ts_header h[MAX_HEADERS];
        size_t count = wire_headers(req, h);

        struct sg_buf sts;
        sg_buf_init(&sts, 0);
        cr_assert_eq(sg_ts_request_string_to_sign(&sts, op, h, count), 0);
        cr_assert_eq(sts.len, strlen(tv_str(req, "string_to_sign")));
        cr_assert(memcmp(sts.data, tv_str(req, "string_to_sign"), sts.len) == 0,
                  "%s: string to sign differs", tv_str(req, "name"));
        sg_buf_free(&sts);

        char sig[SG_TS_SIGNATURE_SIZE];
        cr_assert_eq(sg_ts_sign_request(SECRET, strlen(SECRET), op, h, count, sig), 0);
        cr_assert_str_eq(sig, tv_str(req, "signature"), "%s", tv_str(req, "name"));
        cr_assert_str_eq(sig, header_value(h, count, "x-ots-signature"));
        cr_assert_eq(sg_ts_verify_request(SECRET, strlen(SECRET), op, h, count), 0);

        /* The signature depends on the secret, the operation and every signed header. */
        cr_assert_eq(sg_ts_verify_request("other", 5, op, h, count), -EACCES);
        cr_assert_eq(sg_ts_verify_request(SECRET, strlen(SECRET), "PutRowX", h, count), -EACCES);
        for (size_t i = 0; i < count; i++) {
            if (strncmp(h[i].name, "x-ots-", 6) != 0 || strcmp(h[i].name, "x-ots-signature") == 0)
                continue;
            struct sg_ts_header saved = h[i];
            h[i].value = "tampered";
            h[i].value_len = 8;
            cr_assert_eq(sg_ts_verify_request(SECRET, strlen(SECRET), op, h, count), -EACCES,
                         "%s not signed", saved.name);
            h[i] = saved;
        }
        /* Unsigned headers (Host, Content-Length, Connection) do not matter. */
        for (size_t i = 0; i < count; i++) {
            if (strncmp(h[i].name, "x-ots-", 6) == 0)
                continue;
            struct sg_ts_header saved = h[i];
            h[i].value = "other";
            h[i].value_len = 5;
            cr_assert_eq(sg_ts_verify_request(SECRET, strlen(SECRET), op, h, count), 0);
            h[i] = saved;
        }

        size_t body_len;
        uint8_t *body = tv_hex(tv_str(req, "body_hex"), &body_len);
        char md5[SG_TS_MD5_SIZE];
        cr_assert_eq(sg_ts_content_md5(body, body_len, md5), 0);
        cr_assert_str_eq(md5, header_value(h, count, "x-ots-contentmd5"), "%s",
                         tv_str(req, "name"));
        free(body);
        n++;
    }
    cJSON_Delete(doc);
    return n;
}

Test(tablestore_sign, batchwriterow_request)
{
    cr_assert_eq(check_requests("http_batchwriterow.json"), 1);
}

Test(tablestore_sign, other_operation_requests)
{
    cr_assert_eq(check_requests("http_other_operations.json"), 11);
}

Test(tablestore_sign, header_case_order_and_whitespace)
{
    /* The PutRow example of PROTOCOL.md 1.3, with names in mixed case, values padded, headers
     * out of order and unsigned headers in between. */
    struct sg_ts_header h[] = {
        sg_ts_hdr("X-OTS-Date", " 2024-05-06T07:08:09.123Z\t"),
        sg_ts_hdr("Host", "example"),
        sg_ts_hdr("x-ots-InstanceName", "myinst"),
        sg_ts_hdr("x-ots-apiversion", SG_TS_API_VERSION),
        sg_ts_hdr("X-Ots-Signature", "ignored"),
        sg_ts_hdr("x-ots-contentmd5", "6QL0nlNYejX+wJTu+7fQnA=="),
        sg_ts_hdr("x-ots-accesskeyid", AKID),
    };
    struct sg_buf sts;
    sg_buf_init(&sts, 0);
    cr_assert_eq(sg_ts_request_string_to_sign(&sts, "PutRow", h, SG_ARRAY_SIZE(h)), 0);
    const char *want = "/PutRow\nPOST\n\nx-ots-accesskeyid:AKIDEXAMPLE123\nx-ots-apiversion:"
                       "2015-12-31\nx-ots-contentmd5:6QL0nlNYejX+wJTu+7fQnA==\nx-ots-date:"
                       "2024-05-06T07:08:09.123Z\nx-ots-instancename:myinst\n";
    cr_assert_eq(sts.len, strlen(want));
    cr_assert(memcmp(sts.data, want, sts.len) == 0, "%.*s", (int)sts.len, sts.data);
    char sig[SG_TS_SIGNATURE_SIZE];
    cr_assert_eq(sg_ts_sign_request(SECRET, strlen(SECRET), "PutRow", h, SG_ARRAY_SIZE(h), sig), 0);
    cr_assert_str_eq(sig, "iGgZpWWxFm7e27nKb7wghJ+fNP4=");

    /* An STS token is signed like any other x-ots header, in sorted position. */
    struct sg_ts_header h2[SG_ARRAY_SIZE(h) + 1];
    memcpy(h2, h, sizeof(h));
    h2[SG_ARRAY_SIZE(h)] = sg_ts_hdr("x-ots-ststoken", "tok");
    sg_buf_reset(&sts);
    cr_assert_eq(sg_ts_request_string_to_sign(&sts, "PutRow", h2, SG_ARRAY_SIZE(h2)), 0);
    cr_assert_eq(sg_buf_append_char(&sts, '\0'), 0); /* the string-to-sign is not terminated */
    cr_assert(strstr(sts.data, "x-ots-instancename:myinst\nx-ots-ststoken:tok\n") != NULL);
    char sig2[SG_TS_SIGNATURE_SIZE];
    cr_assert_eq(sg_ts_sign_request(SECRET, strlen(SECRET), "PutRow", h2, SG_ARRAY_SIZE(h2), sig2),
                 0);
    cr_assert_str_neq(sig, sig2);
    sg_buf_free(&sts);
}

Test(tablestore_sign, bad_arguments)
{
    struct sg_ts_header h = sg_ts_hdr("x-ots-date", "d");
    char sig[SG_TS_SIGNATURE_SIZE];
    cr_assert_eq(sg_ts_sign_request("", 0, "PutRow", &h, 1, sig), -EINVAL);
    cr_assert_eq(sg_ts_sign_request(SECRET, strlen(SECRET), "", &h, 1, sig), -EINVAL);
    cr_assert_eq(sg_ts_verify_request(SECRET, strlen(SECRET), "PutRow", &h, 1), -ENOENT);

    struct sg_ts_header many[SG_TS_MAX_SIGNED_HEADERS + 1];
    for (size_t i = 0; i < SG_ARRAY_SIZE(many); i++)
        many[i] = sg_ts_hdr("x-ots-x", "v");
    struct sg_buf sts;
    sg_buf_init(&sts, 0);
    cr_assert_eq(sg_ts_request_string_to_sign(&sts, "PutRow", many, SG_ARRAY_SIZE(many)), -E2BIG);
    cr_assert_eq(sts.len, 0);
    cr_assert_eq(sg_ts_sign_request(SECRET, 3, "PutRow", many, SG_ARRAY_SIZE(many), sig), -E2BIG);
    cr_assert_eq(sg_ts_request_string_to_sign(&sts, "PutRow", many, SG_TS_MAX_SIGNED_HEADERS), 0);
    sg_buf_free(&sts);

    /* A capped buffer leaves no partial string behind. */
    sg_buf_init(&sts, 20);
    cr_assert_eq(sg_ts_request_string_to_sign(&sts, "PutRow", many, 4), -E2BIG);
    cr_assert_eq(sts.len, 0);
    sg_buf_free(&sts);
}

static size_t response_headers(const cJSON *resp, struct sg_ts_header *h)
{
    const cJSON *item;
    size_t n = 0;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(resp, "headers"))
    {
        cr_assert_lt(n, MAX_HEADERS);
        h[n++] = sg_ts_hdr(item->string, item->valuestring);
    }
    return n;
}

Test(tablestore_sign, responses)
{
    cJSON *doc = tv_load("responses.json");
    const cJSON *resp;
    int n = 0;
    cJSON_ArrayForEach(resp, cJSON_GetObjectItemCaseSensitive(doc, "responses"))
    {
        const char *op = tv_str(resp, "operation");
        const char *name = tv_str(resp, "name");
        struct sg_ts_header h[MAX_HEADERS];
        size_t count = response_headers(resp, h);
        size_t body_len;
        uint8_t *body = tv_hex(tv_str(resp, "body_hex"), &body_len);

        struct sg_buf sts;
        sg_buf_init(&sts, 0);
        cr_assert_eq(sg_ts_response_string_to_sign(&sts, op, h, count), 0);
        const char *want = tv_str(resp, "response_string_to_sign");
        cr_assert_eq(sts.len, strlen(want), "%s", name);
        cr_assert(memcmp(sts.data, want, sts.len) == 0, "%s", name);
        sg_buf_free(&sts);

        char sig[SG_TS_SIGNATURE_SIZE], auth[64];
        cr_assert_eq(sg_ts_sign_response(SECRET, strlen(SECRET), op, h, count, sig), 0);
        snprintf(auth, sizeof(auth), "OTS %s:%s", AKID, sig);
        cr_assert_str_eq(auth, header_value(h, count, "authorization"), "%s", name);
        cr_assert_eq(
            sg_ts_verify_response(SECRET, strlen(SECRET), AKID, op, h, count, body, body_len), 0,
            "%s", name);

        /* What the Python SDK would reject. */
        cr_assert_eq(sg_ts_verify_response(SECRET, strlen(SECRET), "AKIDOTHER", op, h, count, body,
                                           body_len),
                     -EACCES);
        cr_assert_eq(
            sg_ts_verify_response(SECRET, strlen(SECRET), AKID, "Other", h, count, body, body_len),
            -EACCES);
        cr_assert_eq(sg_ts_verify_response(SECRET, strlen(SECRET), AKID, op, h, count, "x", 1),
                     -EACCES, "MD5 of a different body");
        for (size_t i = 0; i < count; i++) {
            struct sg_ts_header saved = h[i];
            if (strcmp(saved.name, "authorization") == 0) {
                h[i].value = "OTS AKIDEXAMPLE123";
                h[i].value_len = strlen(h[i].value);
                cr_assert_eq(sg_ts_verify_response(SECRET, strlen(SECRET), AKID, op, h, count, body,
                                                   body_len),
                             -EINVAL);
                h[i].value = "Bearer x:y";
                h[i].value_len = strlen(h[i].value);
                cr_assert_eq(sg_ts_verify_response(SECRET, strlen(SECRET), AKID, op, h, count, body,
                                                   body_len),
                             -EINVAL);
            } else if (strcmp(saved.name, "x-ots-requestid") == 0) {
                h[i].value = "req-other";
                h[i].value_len = 9;
                cr_assert_eq(sg_ts_verify_response(SECRET, strlen(SECRET), AKID, op, h, count, body,
                                                   body_len),
                             -EACCES);
            }
            h[i] = saved;
        }
        /* A missing authorization or MD5 header. */
        cr_assert_eq(
            sg_ts_verify_response(SECRET, strlen(SECRET), AKID, op, h, count - 1, body, body_len),
            -ENOENT, "headers are in file order: authorization is last");
        cr_assert_eq(sg_ts_verify_response(SECRET, strlen(SECRET), AKID, op, h + 1, count - 1, body,
                                           body_len),
                     -ENOENT, "x-ots-contentmd5 is first");
        free(body);
        n++;
    }
    cr_assert_eq(n, 16);
    cJSON_Delete(doc);
}

Test(tablestore_sign, content_md5_and_date)
{
    char md5[SG_TS_MD5_SIZE];
    cr_assert_eq(sg_ts_content_md5("", 0, md5), 0);
    cr_assert_str_eq(md5, "1B2M2Y8AsgTpgAmY7PhCfg==");
    cr_assert_eq(sg_ts_content_md5(NULL, 0, md5), 0);
    cr_assert_str_eq(md5, "1B2M2Y8AsgTpgAmY7PhCfg==");
    cr_assert_eq(sg_ts_content_md5(NULL, 1, md5), -EINVAL);

    char date[SG_TS_DATE_SIZE];
    cr_assert_eq(sg_ts_format_date(INT64_C(1714979289123), date), 0);
    cr_assert_str_eq(date, "2024-05-06T07:08:09.123Z");
    cr_assert_eq(sg_ts_format_date(0, date), 0);
    cr_assert_str_eq(date, "1970-01-01T00:00:00.000Z");
    cr_assert_eq(sg_ts_format_date(INT64_C(253402300799999), date), 0);
    cr_assert_str_eq(date, "9999-12-31T23:59:59.999Z");
    cr_assert_eq(sg_ts_format_date(INT64_C(253402300800000), date), -ERANGE);
    cr_assert_eq(sg_ts_format_date(-1, date), -ERANGE);
}
