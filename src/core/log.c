#include "streamgate/log.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "streamgate/buf.h"

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int sg_log_level_parse(const char *name, enum sg_log_level *level)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *level = (enum sg_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *sg_log_level_name(enum sg_log_level level)
{
    return (unsigned)level <= SG_LOG_OFF ? level_names[level] : "unknown";
}

void sg_log_init(struct sg_log *log, enum sg_log_level level, FILE *out)
{
    log->level = level;
    log->out = out;
}

static void append_field(struct sg_buf *b, const struct sg_log_field *f)
{
    sg_buf_append_char(b, ',');
    sg_buf_append_json_string(b, f->key, strlen(f->key));
    sg_buf_append_char(b, ':');
    switch (f->type) {
    case SG_LF_STR:
        if (f->v.s)
            sg_buf_append_json_string(b, f->v.s, strlen(f->v.s));
        else
            sg_buf_append_str(b, "null");
        break;
    case SG_LF_STRN:
        sg_buf_append_json_string(b, f->v.s ? f->v.s : "", f->v.s ? f->len : 0);
        break;
    case SG_LF_INT:
        sg_buf_printf(b, "%" PRId64, f->v.i);
        break;
    case SG_LF_UINT:
        sg_buf_printf(b, "%" PRIu64, f->v.u);
        break;
    case SG_LF_DOUBLE:
        if (isfinite(f->v.d))
            sg_buf_printf(b, "%.17g", f->v.d);
        else
            sg_buf_append_str(b, "null");
        break;
    case SG_LF_BOOL:
        sg_buf_append_str(b, f->v.i ? "true" : "false");
        break;
    }
}

void sg_log_emit(struct sg_log *log, enum sg_log_level level, const char *msg,
                 const struct sg_log_field *fields)
{
    if (level < log->level || !log->out)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);

    /* Log lines are rare (bad input is rate limited), so a heap buffer per line is fine. */
    struct sg_buf line;
    sg_buf_init(&line, 64 * 1024);
    struct sg_buf *out = &line;

    sg_buf_printf(out, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"msg\":",
                  tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  ts.tv_nsec / 1000000L, sg_log_level_name(level));
    sg_buf_append_json_string(out, msg, strlen(msg));
    for (const struct sg_log_field *f = fields; f && f->key; f++)
        append_field(out, f);
    sg_buf_append_str(out, "}\n");
    if (out->data) {
        /* One fwrite per line keeps lines whole when several processes share the stream. */
        fwrite(out->data, 1, out->len, log->out);
        fflush(log->out);
    }
    sg_buf_free(&line);
}

int64_t sg_log_limiter_take(struct sg_log_limiter *lim, int64_t now_ms)
{
    if (now_ms < lim->next_ms) {
        lim->suppressed++;
        return -1;
    }
    lim->next_ms = now_ms + lim->interval_ms;
    int64_t n = (int64_t)lim->suppressed;
    lim->suppressed = 0;
    return n;
}
