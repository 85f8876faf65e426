#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/log.h"

static char *capture(enum sg_log_level min, void (*fn)(struct sg_log *))
{
    char *data = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&data, &len);
    cr_assert(f);
    struct sg_log log;
    sg_log_init(&log, min, f);
    fn(&log);
    fclose(f);
    return data;
}

static void write_fields(struct sg_log *log)
{
    sg_info(log, "hello \"world\"", SG_F_STR("s", "a\nb"), SG_F_INT("i", -5), SG_F_UINT("u", 7),
            SG_F_DBL("d", 0.5), SG_F_BOOL("b", 1), SG_F_STRN("n", "abcdef", 3));
}

Test(log, one_json_object_per_line_with_fields)
{
    char *out = capture(SG_LOG_DEBUG, write_fields);
    cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1, "exactly one line: %s", out);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "not JSON: %s", out);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "level")->valuestring, "info");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "msg")->valuestring, "hello \"world\"");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "s")->valuestring, "a\nb");
    cr_assert_eq(cJSON_GetObjectItem(j, "i")->valuedouble, -5);
    cr_assert_eq(cJSON_GetObjectItem(j, "u")->valuedouble, 7);
    cr_assert_eq(cJSON_GetObjectItem(j, "d")->valuedouble, 0.5);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(j, "b")));
    cr_assert_str_eq(cJSON_GetObjectItem(j, "n")->valuestring, "abc");
    const char *ts = cJSON_GetObjectItem(j, "ts")->valuestring;
    cr_assert_eq(strlen(ts), 24, "ts like 2024-11-24T15:33:20.123Z: %s", ts);
    cr_assert_eq(ts[23], 'Z');
    cJSON_Delete(j);
    free(out);
}

static void write_levels(struct sg_log *log)
{
    sg_debug(log, "d");
    sg_info(log, "i");
    sg_warn(log, "w");
    sg_error(log, "e");
}

Test(log, level_filters)
{
    char *out = capture(SG_LOG_WARN, write_levels);
    cr_assert_null(strstr(out, "\"msg\":\"d\""));
    cr_assert_null(strstr(out, "\"msg\":\"i\""));
    cr_assert_not_null(strstr(out, "\"msg\":\"w\""));
    cr_assert_not_null(strstr(out, "\"msg\":\"e\""));
    free(out);
}

Test(log, level_names_parse)
{
    enum sg_log_level l;
    cr_assert_eq(sg_log_level_parse("debug", &l), 0);
    cr_assert_eq(l, SG_LOG_DEBUG);
    cr_assert_eq(sg_log_level_parse("error", &l), 0);
    cr_assert_eq(l, SG_LOG_ERROR);
    cr_assert_neq(sg_log_level_parse("loud", &l), 0);
}

Test(log, limiter_holds_back_and_reports_suppressed)
{
    struct sg_log_limiter lim = {.interval_ms = 1000};
    cr_assert_eq(sg_log_limiter_take(&lim, 5000), 0);
    cr_assert_eq(sg_log_limiter_take(&lim, 5001), -1);
    cr_assert_eq(sg_log_limiter_take(&lim, 5999), -1);
    cr_assert_eq(sg_log_limiter_take(&lim, 6000), 2);
    cr_assert_eq(sg_log_limiter_take(&lim, 6001), -1);
    cr_assert_eq(sg_log_limiter_take(&lim, 9000), 1);
}
