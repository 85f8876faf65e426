/* The configuration module's option table and helpers, exposed for its unit tests. Nothing
 * outside src/core/config.c and tests/unit/test_config.c should need this header. */
#ifndef STREAMGATE_CONFIG_INTERNAL_H
#define STREAMGATE_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sg_config_type {
    SG_CONFIG_STRING,   /* char * */
    SG_CONFIG_INT,      /* int64_t */
    SG_CONFIG_BOOL,     /* bool: true/false, yes/no, 1/0 */
    SG_CONFIG_DURATION, /* uint64_t milliseconds */
    SG_CONFIG_SIZE,     /* uint64_t bytes */
    SG_CONFIG_STRLIST,  /* struct sg_strlist */
    SG_CONFIG_ENUM,     /* int, spelled as one of `allowed` */
};

/* Checked by sg_config_validate: listen addresses must parse with sg_parse_hostport. */
#define SG_CONFIG_F_ADDRESS 0x1u
/* A list of "name=value" properties: a JSON object in the file, "a=1,b=2" elsewhere. */
#define SG_CONFIG_F_PROPS 0x2u
/* A string holding a decimal number: the config file may give it as a JSON number too. */
#define SG_CONFIG_F_NUMBER 0x4u
/* A SIGHUP reload may change it in a running process (sg_config_reload_check). */
#define SG_CONFIG_F_LIVE 0x8u

/* One row of the option table. */
struct sg_config_option {
    const char *name; /* dotted, e.g. "http.max_body_size" */
    enum sg_config_type type;
    const char *def;  /* the default in the textual form sg_config_set accepts */
    const char *help; /* one sentence; no '|' or backticks (it lands in a Markdown table) */
    size_t offset;    /* offsetof(struct sg_config, field) */
    const char *const *allowed; /* SG_CONFIG_ENUM: NULL-terminated; the index is the value */
    /* Bounds checked by sg_config_validate. Numbers: value in [min, max] (max 0: unbounded).
     * Strings: min 1 means the value must not be empty. */
    uint64_t min;
    uint64_t max;
    unsigned flags; /* SG_CONFIG_F_* */
};

/* The whole table, in the order --help and the README list it. */
const struct sg_config_option *sg_config__options(size_t *count);
/* The option with dotted name `name`, or NULL. */
const struct sg_config_option *sg_config__find(const char *name);
/* "STREAMGATE_HTTP_MAX_BODY_SIZE" for "http.max_body_size". */
void sg_config__env_name(const struct sg_config_option *opt, char *buf, size_t len);
/* "--http-max-body-size" for "http.max_body_size". */
void sg_config__flag_name(const struct sg_config_option *opt, char *buf, size_t len);
/* "string", "int", "bool", "duration", "size", "list" or "enum". */
const char *sg_config__type_name(enum sg_config_type type);
/* true/false, yes/no, 1/0 (lower case). Returns 0 or -EINVAL. */
int sg_config__parse_bool(const char *s, bool *out);

#endif
