/* The dead-letter output: lines as documented, batched non-blocking writes on a real loop, the
 * budget charged while bytes wait and released after, and clear errors for a bad path. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "streamgate/budget.h"
#include "streamgate/dead_letter.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert(f, "cannot open %s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

Test(dead_letter, writes_one_object_per_record)
{
    uv_loop_t loop;
    struct sg_log log;
    char path[] = "/tmp/sg-dl-XXXXXX", err[256] = "";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    sg_log_init(&log, SG_LOG_OFF, stderr);
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct sg_metrics *m = sg_metrics_create();
    struct sg_budget *b = sg_budget_create(1 << 20, 90, 50, m, &log);
    struct sg_dead_letter *dl = NULL;
    cr_assert_eq(sg_dead_letter_create(&loop, path, b, m, &log, &dl, err, sizeof(err)), 0, "%s",
                 err);

    const char *rec1 = "{\"key\":\"a\",\"count\":3}";
    const char *rec2 = "{\n  \"key\": \"q\\\"x\",\n  \"v\": 1\n}"; /* pretty-printed */
    cr_assert_eq(sg_dead_letter_write(dl, "tablestore", "a", 1, "OTSParameterInvalid", "bad row",
                                      rec1, strlen(rec1)),
                 0);
    cr_assert_eq(
        sg_dead_letter_write(dl, "tablestore", "q\"x", 3, "connection", NULL, rec2, strlen(rec2)),
        0);
    cr_assert_eq(sg_dead_letter_write(dl, "tablestore", NULL, 0, "timeout", "t", NULL, 0), 0);
    cr_expect_gt(sg_budget_used(b), 0, "waiting bytes are charged");
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(sg_budget_used(b), 0, "written bytes are released");
    cr_expect_eq(sg_dead_letter_written(dl), 3);
    cr_expect_eq(sg_dead_letter_lost(dl), 0);
    cr_expect_eq(
        sg_metrics_counter_value(m, SG_METRIC_DEAD_LETTER_RECORDS_TOTAL, "result=\"written\""), 3);
    sg_dead_letter_destroy(dl);
    cr_expect_eq(uv_loop_close(&loop), 0);

    char *text = slurp(path);
    char *lines[4] = {0};
    int n = 0;
    for (char *l = strtok(text, "\n"); l && n < 4; l = strtok(NULL, "\n"))
        lines[n++] = l;
    cr_assert_eq(n, 3, "lines: %d\n%s", n, text);
    cJSON *j = cJSON_Parse(lines[0]);
    cr_assert(j, "%s", lines[0]);
    cr_expect_str_eq(cJSON_GetObjectItem(j, "sink")->valuestring, "tablestore");
    cr_expect_str_eq(cJSON_GetObjectItem(j, "key")->valuestring, "a");
    cr_expect_str_eq(cJSON_GetObjectItem(j, "error")->valuestring, "OTSParameterInvalid");
    cr_expect_str_eq(cJSON_GetObjectItem(j, "message")->valuestring, "bad row");
    cr_expect_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "record"), "count")->valuedouble, 3);
    cJSON_Delete(j);
    j = cJSON_Parse(lines[1]);
    cr_assert(j, "%s", lines[1]);
    cr_expect_str_eq(cJSON_GetObjectItem(j, "key")->valuestring, "q\"x");
    cr_expect_str_eq(cJSON_GetObjectItem(j, "message")->valuestring, "");
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "record"), "key")->valuestring,
                     "q\"x");
    cJSON_Delete(j);
    j = cJSON_Parse(lines[2]);
    cr_assert(j, "%s", lines[2]);
    cr_expect(cJSON_IsNull(cJSON_GetObjectItem(j, "record")));
    cr_expect_str_eq(cJSON_GetObjectItem(j, "key")->valuestring, "");
    cJSON_Delete(j);

    sg_budget_destroy(b);
    sg_metrics_destroy(m);
    unlink(path);
}

Test(dead_letter, bad_path_is_a_clear_error)
{
    uv_loop_t loop;
    struct sg_log log;
    char err[256] = "";
    sg_log_init(&log, SG_LOG_OFF, stderr);
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct sg_metrics *m = sg_metrics_create();
    struct sg_dead_letter *dl = NULL;
    int rc = sg_dead_letter_create(&loop, "/nonexistent-dir/dead.ndjson", NULL, m, &log, &dl, err,
                                   sizeof(err));
    cr_expect_eq(rc, -ENOENT);
    cr_expect_null(dl);
    cr_expect(strstr(err, "output.dead_letter_file") && strstr(err, "/nonexistent-dir"), "%s", err);
    sg_dead_letter_destroy(NULL); /* safe on NULL */
    sg_metrics_destroy(m);
    cr_expect_eq(uv_loop_close(&loop), 0);
}
