/* Structured logging: one JSON object per line on stderr, with `ts`, `level`, `msg` and any
 * fields. A logger is an object passed to each module; there is no global logger. */
#ifndef STREAMGATE_LOG_H
#define STREAMGATE_LOG_H

#include <stdint.h>
#include <stdio.h>

enum sg_log_level { SG_LOG_DEBUG = 0, SG_LOG_INFO, SG_LOG_WARN, SG_LOG_ERROR, SG_LOG_OFF };

enum sg_log_field_type { SG_LF_STR, SG_LF_STRN, SG_LF_INT, SG_LF_UINT, SG_LF_DOUBLE, SG_LF_BOOL };

struct sg_log_field {
    const char *key; /* NULL ends the list */
    enum sg_log_field_type type;
    union {
        const char *s;
        int64_t i;
        uint64_t u;
        double d;
    } v;
    size_t len; /* SG_LF_STRN only */
};

#define SG_F_STR(k, x)                                                                             \
    {                                                                                              \
        .key = (k), .type = SG_LF_STR, .v.s = (x)                                                  \
    }
#define SG_F_STRN(k, x, n)                                                                         \
    {                                                                                              \
        .key = (k), .type = SG_LF_STRN, .v.s = (x), .len = (n)                                     \
    }
#define SG_F_INT(k, x)                                                                             \
    {                                                                                              \
        .key = (k), .type = SG_LF_INT, .v.i = (int64_t)(x)                                         \
    }
#define SG_F_UINT(k, x)                                                                            \
    {                                                                                              \
        .key = (k), .type = SG_LF_UINT, .v.u = (uint64_t)(x)                                       \
    }
#define SG_F_DBL(k, x)                                                                             \
    {                                                                                              \
        .key = (k), .type = SG_LF_DOUBLE, .v.d = (double)(x)                                       \
    }
#define SG_F_BOOL(k, x)                                                                            \
    {                                                                                              \
        .key = (k), .type = SG_LF_BOOL, .v.i = !!(x)                                               \
    }

struct sg_log {
    enum sg_log_level level;
    FILE *out;
};

/* Parses "debug", "info", "warn" or "error". Returns 0 or -EINVAL. */
int sg_log_level_parse(const char *name, enum sg_log_level *level);
const char *sg_log_level_name(enum sg_log_level level);

void sg_log_init(struct sg_log *log, enum sg_log_level level, FILE *out);
/* Writes one line; `fields` ends with an entry whose key is NULL. Use the sg_log() macro. */
void sg_log_emit(struct sg_log *log, enum sg_log_level level, const char *msg,
                 const struct sg_log_field *fields);

#define sg_log(log, lvl, msg, ...)                                                                 \
    do {                                                                                           \
        if ((lvl) >= (log)->level)                                                                 \
            sg_log_emit((log), (lvl), (msg),                                                       \
                        (const struct sg_log_field[]){__VA_ARGS__ __VA_OPT__(, ){.key = NULL}});   \
    } while (0)

#define sg_debug(log, msg, ...) sg_log(log, SG_LOG_DEBUG, msg __VA_OPT__(, ) __VA_ARGS__)
#define sg_info(log, msg, ...)  sg_log(log, SG_LOG_INFO, msg __VA_OPT__(, ) __VA_ARGS__)
#define sg_warn(log, msg, ...)  sg_log(log, SG_LOG_WARN, msg __VA_OPT__(, ) __VA_ARGS__)
#define sg_error(log, msg, ...) sg_log(log, SG_LOG_ERROR, msg __VA_OPT__(, ) __VA_ARGS__)

/* A limiter for noisy messages (bad input): at most one line per interval per limiter; the
 * number of lines held back is reported with the next one as `suppressed`. */
struct sg_log_limiter {
    int64_t interval_ms;
    int64_t next_ms;
    uint64_t suppressed;
};

/* Returns the number of suppressed messages to report (>= 0) when a line may be written now,
 * or -1 when it must be held back (and counts it). */
int64_t sg_log_limiter_take(struct sg_log_limiter *lim, int64_t now_ms);

#endif
