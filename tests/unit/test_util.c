/* The small helpers of src/core/util.c. */
#include <criterion/criterion.h>
#include <string.h>

#include "streamgate/common.h"

Test(http_reason, the_phrases_both_servers_send)
{
    static const struct {
        int status;
        const char *reason;
    } want[] = {
        {100, "Continue"},
        {200, "OK"},
        {202, "Accepted"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {413, "Content Too Large"},
        {415, "Unsupported Media Type"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {503, "Service Unavailable"},
    };
    for (size_t i = 0; i < SG_ARRAY_SIZE(want); i++)
        cr_expect_str_eq(sg_http_reason(want[i].status), want[i].reason, "status %d",
                         want[i].status);
}

Test(http_reason, unknown_codes)
{
    static const int codes[] = {-1, 0, 99, 199, 299, 418, 599, 600, 1000};
    for (size_t i = 0; i < SG_ARRAY_SIZE(codes); i++)
        cr_expect_str_eq(sg_http_reason(codes[i]), "Unknown", "status %d", codes[i]);
}

Test(http_reason, every_phrase_fits_a_status_line)
{
    /* reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ); no CR or LF may end the line early. */
    for (int status = 100; status <= 599; status++) {
        const char *reason = sg_http_reason(status);
        cr_assert(reason[0] != '\0', "status %d", status);
        for (const char *p = reason; *p; p++)
            cr_assert(*p == ' ' || *p == '\t' || (*p > 0x20 && *p < 0x7f), "status %d: %s", status,
                      reason);
    }
}
