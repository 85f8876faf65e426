/* Error bodies and retry classes (PROTOCOL.md section 4). */
#include "streamgate/tablestore.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ots.pb-c.h"
#include "tablestore_internal.h"

/* code, HTTP status (0: not documented), retry class. Statuses come from the "Error codes" and
 * "Why 5xx errors occur" documentation pages; the classes from the SDKs' default retry policies,
 * which retry timeouts and internal errors only for read-only operations. OTSQuotaExhausted is
 * retriable only with one message; see sg_ts_error_classify. */
#define SG_TS_ERROR_MAP(X)                                                                         \
    X("OTSAuthFailed", 403, SG_TS_RETRY_NEVER)                                                     \
    X("OTSRequestBodyTooLarge", 413, SG_TS_RETRY_NEVER)                                            \
    X("OTSRequestTimeout", 408, SG_TS_RETRY_NEVER)                                                 \
    X("OTSMethodNotAllowed", 405, SG_TS_RETRY_NEVER)                                               \
    X("OTSParameterInvalid", 400, SG_TS_RETRY_NEVER)                                               \
    X("OTSServerBusy", 503, SG_TS_RETRY_ALWAYS)                                                    \
    X("OTSPartitionUnavailable", 503, SG_TS_RETRY_ALWAYS)                                          \
    X("OTSTimeout", 503, SG_TS_RETRY_IDEMPOTENT)                                                   \
    X("OTSServerUnavailable", 503, SG_TS_RETRY_IDEMPOTENT)                                         \
    X("OTSInternalServerError", 500, SG_TS_RETRY_IDEMPOTENT)                                       \
    X("OTSRowOperationConflict", 409, SG_TS_RETRY_ALWAYS)                                          \
    X("OTSObjectAlreadyExist", 409, SG_TS_RETRY_NEVER)                                             \
    X("OTSObjectNotExist", 404, SG_TS_RETRY_NEVER)                                                 \
    X("OTSTableNotReady", 404, SG_TS_RETRY_ALWAYS)                                                 \
    X("OTSNotEnoughCapacityUnit", 403, SG_TS_RETRY_ALWAYS)                                         \
    X("OTSQuotaExhausted", 403, SG_TS_RETRY_NEVER)                                                 \
    X("OTSTooFrequentReservedThroughputAdjustment", 403, SG_TS_RETRY_NEVER)                        \
    X("OTSConditionCheckFail", 403, SG_TS_RETRY_NEVER)                                             \
    X("OTSOutOfColumnCountLimit", 400, SG_TS_RETRY_NEVER)                                          \
    X("OTSOutOfRowSizeLimit", 400, SG_TS_RETRY_NEVER)                                              \
    X("OTSInvalidPK", 400, SG_TS_RETRY_NEVER)                                                      \
    X("OTSOperationThrottled", 0, SG_TS_RETRY_ALWAYS)                                              \
    X("OTSStorageServerBusy", 0, SG_TS_RETRY_ALWAYS)

struct error_entry {
    const char *code;
    int http_status;
    enum sg_ts_retry retry;
};

static const struct error_entry error_table[] = {
#define SG_TS_ERROR_ENTRY(code, status, retry) {code, status, retry},
    SG_TS_ERROR_MAP(SG_TS_ERROR_ENTRY)
#undef SG_TS_ERROR_ENTRY
};

static const struct error_entry *lookup(const char *code)
{
    if (code == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(error_table) / sizeof(error_table[0]); i++)
        if (strcmp(error_table[i].code, code) == 0)
            return &error_table[i];
    return NULL;
}

enum sg_ts_retry sg_ts_error_classify(int http_status, const char *code, const char *message)
{
    const struct error_entry *e = lookup(code);
    if (e != NULL) {
        /* The same code means "table quota reached" (permanent) or "too many table operations"
         * (throttling); the SDKs tell them apart by this exact message. */
        if (strcmp(e->code, "OTSQuotaExhausted") == 0)
            return message != NULL && strcmp(message, "Too frequent table operations.") == 0
                       ? SG_TS_RETRY_ALWAYS
                       : SG_TS_RETRY_NEVER;
        return e->retry;
    }
    return http_status >= 500 && http_status <= 599 ? SG_TS_RETRY_IDEMPOTENT : SG_TS_RETRY_NEVER;
}

int sg_ts_error_http_status(const char *code)
{
    const struct error_entry *e = lookup(code);
    return e != NULL ? e->http_status : 0;
}

bool sg_ts_operation_is_read_only(const char *operation)
{
    static const char *const read_only[] = {
        "ListTable", "DescribeTable", "GetRow",       "BatchGetRow",
        "GetRange",  "Search",        "ParallelScan", "ComputeSplits",
    };
    if (operation == NULL)
        return false;
    for (size_t i = 0; i < sizeof(read_only) / sizeof(read_only[0]); i++)
        if (strcmp(read_only[i], operation) == 0)
            return true;
    return false;
}

bool sg_ts_error_should_retry(const char *operation, bool idempotent_write, int http_status,
                              const char *code, const char *message)
{
    switch (sg_ts_error_classify(http_status, code, message)) {
    case SG_TS_RETRY_ALWAYS:
        return true;
    case SG_TS_RETRY_IDEMPOTENT:
        return idempotent_write || sg_ts_operation_is_read_only(operation);
    case SG_TS_RETRY_NEVER:
        break;
    }
    return false;
}

int sg_ts_error_parse(const void *body, size_t len, char *code, size_t code_size, char *message,
                      size_t message_size)
{
    if (code != NULL && code_size > 0)
        code[0] = '\0';
    if (message != NULL && message_size > 0)
        message[0] = '\0';
    if (body == NULL && len > 0)
        return -EINVAL;
    Ots__Error *err = ots__error__unpack(NULL, len, body);
    if (err == NULL)
        return -EINVAL;
    if (code != NULL && code_size > 0)
        snprintf(code, code_size, "%s", err->code);
    if (message != NULL && message_size > 0 && err->message != NULL)
        snprintf(message, message_size, "%s", err->message);
    ots__error__free_unpacked(err, NULL);
    return 0;
}

int sg_ts_error_build(struct sg_buf *out, const char *code, const char *message)
{
    if (code == NULL)
        return -EINVAL;
    Ots__Error err = OTS__ERROR__INIT;
    err.code = (char *)code;
    err.message = (char *)message;
    size_t size = ots__error__get_packed_size(&err);
    int rc = sg_buf_reserve(out, size);
    if (rc)
        return rc;
    out->len += ots__error__pack(&err, (uint8_t *)out->data + out->len);
    return 0;
}
