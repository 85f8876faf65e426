/* Error classification: PROTOCOL.md section 4 (status per code, the SDKs' retry policies). */
#include <criterion/criterion.h>

#include "streamgate/common.h"
#include "streamgate/tablestore.h"

static const struct {
    const char *code;
    int status;
    enum sg_ts_retry retry;
} expected[] = {
    {"OTSAuthFailed", 403, SG_TS_RETRY_NEVER},
    {"OTSRequestBodyTooLarge", 413, SG_TS_RETRY_NEVER},
    {"OTSRequestTimeout", 408, SG_TS_RETRY_NEVER},
    {"OTSMethodNotAllowed", 405, SG_TS_RETRY_NEVER},
    {"OTSParameterInvalid", 400, SG_TS_RETRY_NEVER},
    {"OTSServerBusy", 503, SG_TS_RETRY_ALWAYS},
    {"OTSPartitionUnavailable", 503, SG_TS_RETRY_ALWAYS},
    {"OTSTimeout", 503, SG_TS_RETRY_IDEMPOTENT},
    {"OTSServerUnavailable", 503, SG_TS_RETRY_IDEMPOTENT},
    {"OTSInternalServerError", 500, SG_TS_RETRY_IDEMPOTENT},
    {"OTSRowOperationConflict", 409, SG_TS_RETRY_ALWAYS},
    {"OTSObjectAlreadyExist", 409, SG_TS_RETRY_NEVER},
    {"OTSObjectNotExist", 404, SG_TS_RETRY_NEVER},
    {"OTSTableNotReady", 404, SG_TS_RETRY_ALWAYS},
    {"OTSNotEnoughCapacityUnit", 403, SG_TS_RETRY_ALWAYS},
    {"OTSTooFrequentReservedThroughputAdjustment", 403, SG_TS_RETRY_NEVER},
    {"OTSConditionCheckFail", 403, SG_TS_RETRY_NEVER},
    {"OTSOutOfColumnCountLimit", 400, SG_TS_RETRY_NEVER},
    {"OTSOutOfRowSizeLimit", 400, SG_TS_RETRY_NEVER},
    {"OTSInvalidPK", 400, SG_TS_RETRY_NEVER},
    {"OTSOperationThrottled", 0, SG_TS_RETRY_ALWAYS},
    {"OTSStorageServerBusy", 0, SG_TS_RETRY_ALWAYS},
};

Test(tablestore_errors, table)
{
    for (size_t i = 0; i < SG_ARRAY_SIZE(expected); i++) {
        cr_assert_eq(sg_ts_error_http_status(expected[i].code), expected[i].status, "%s",
                     expected[i].code);
        /* The code decides, whatever the status (per-row errors have none). */
        cr_assert_eq(sg_ts_error_classify(expected[i].status, expected[i].code, "m"),
                     expected[i].retry, "%s", expected[i].code);
        cr_assert_eq(sg_ts_error_classify(0, expected[i].code, NULL), expected[i].retry, "%s",
                     expected[i].code);
    }
}

Test(tablestore_errors, quota_exhausted_depends_on_message)
{
    cr_assert_eq(sg_ts_error_http_status("OTSQuotaExhausted"), 403);
    cr_assert_eq(sg_ts_error_classify(403, "OTSQuotaExhausted", "Too frequent table operations."),
                 SG_TS_RETRY_ALWAYS);
    cr_assert_eq(
        sg_ts_error_classify(403, "OTSQuotaExhausted", "Number of tables exceeded the quota."),
        SG_TS_RETRY_NEVER);
    cr_assert_eq(sg_ts_error_classify(403, "OTSQuotaExhausted", "Too frequent table operations"),
                 SG_TS_RETRY_NEVER, "the SDKs match the message exactly");
    cr_assert_eq(sg_ts_error_classify(403, "OTSQuotaExhausted", NULL), SG_TS_RETRY_NEVER);
}

Test(tablestore_errors, unknown_codes_follow_http_status)
{
    cr_assert_eq(sg_ts_error_http_status("OTSSomethingNew"), 0);
    cr_assert_eq(sg_ts_error_http_status(NULL), 0);
    cr_assert_eq(sg_ts_error_classify(500, "OTSSomethingNew", NULL), SG_TS_RETRY_IDEMPOTENT);
    cr_assert_eq(sg_ts_error_classify(502, NULL, NULL), SG_TS_RETRY_IDEMPOTENT);
    cr_assert_eq(sg_ts_error_classify(503, "", NULL), SG_TS_RETRY_IDEMPOTENT);
    cr_assert_eq(sg_ts_error_classify(599, NULL, NULL), SG_TS_RETRY_IDEMPOTENT);
    cr_assert_eq(sg_ts_error_classify(400, "OTSSomethingNew", NULL), SG_TS_RETRY_NEVER);
    cr_assert_eq(sg_ts_error_classify(403, NULL, NULL), SG_TS_RETRY_NEVER);
    cr_assert_eq(sg_ts_error_classify(0, NULL, NULL), SG_TS_RETRY_NEVER);
    cr_assert_eq(sg_ts_error_classify(600, NULL, NULL), SG_TS_RETRY_NEVER);
    /* Codes are case-sensitive, as the service sends them. */
    cr_assert_eq(sg_ts_error_classify(0, "otsserverbusy", NULL), SG_TS_RETRY_NEVER);
}

Test(tablestore_errors, should_retry_by_operation)
{
    const char *read_only[] = {"ListTable", "DescribeTable", "GetRow", "BatchGetRow", "GetRange"};
    const char *writes[] = {"PutRow",        "UpdateRow",   "DeleteRow",
                            "BatchWriteRow", "CreateTable", "DeleteTable"};
    for (size_t i = 0; i < SG_ARRAY_SIZE(read_only); i++) {
        cr_assert(sg_ts_operation_is_read_only(read_only[i]));
        cr_assert(sg_ts_error_should_retry(read_only[i], false, 503, "OTSTimeout", NULL));
        cr_assert(sg_ts_error_should_retry(read_only[i], false, 502, NULL, NULL));
        cr_assert_not(sg_ts_error_should_retry(read_only[i], false, 403, "OTSAuthFailed", NULL));
    }
    for (size_t i = 0; i < SG_ARRAY_SIZE(writes); i++) {
        cr_assert_not(sg_ts_operation_is_read_only(writes[i]));
        /* The write may have happened: not retried unless the caller says it is idempotent. */
        cr_assert_not(sg_ts_error_should_retry(writes[i], false, 503, "OTSTimeout", NULL));
        cr_assert_not(
            sg_ts_error_should_retry(writes[i], false, 500, "OTSInternalServerError", NULL));
        cr_assert(sg_ts_error_should_retry(writes[i], true, 500, "OTSInternalServerError", NULL));
        /* Throttling is retried for every operation. */
        cr_assert(sg_ts_error_should_retry(writes[i], false, 503, "OTSServerBusy", NULL));
        cr_assert(sg_ts_error_should_retry(writes[i], false, 0, "OTSRowOperationConflict", NULL));
        /* A wrong request is never retried, idempotent or not. */
        cr_assert_not(sg_ts_error_should_retry(writes[i], true, 400, "OTSParameterInvalid", NULL));
        cr_assert_not(sg_ts_error_should_retry(writes[i], true, 0, "OTSConditionCheckFail", NULL));
    }
    cr_assert_not(sg_ts_operation_is_read_only(NULL));
    cr_assert_not(sg_ts_operation_is_read_only("getrow"));
}
