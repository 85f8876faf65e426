/* Splitting a JSON body into events without parsing it twice: a body is one object or an
 * array of values; for an array this finds each element's byte range by tracking strings,
 * escapes and nesting, so each element keeps its raw bytes and is decoded (and rejected)
 * on its own. */
#ifndef STREAMGATE_JSON_SPLIT_H
#define STREAMGATE_JSON_SPLIT_H

#include <stdbool.h>
#include <stddef.h>

/* Called per element with its byte range inside the body. Return 0 to go on; a non-zero value
 * stops the split and is returned by sg_json_split (use a negative errno code, so it cannot be
 * taken for an element count). */
typedef int (*sg_json_element_cb)(void *arg, size_t index, const char *elem, size_t len,
                                  size_t offset);

/* If the body (after leading whitespace) is an array, calls `cb` for each element and returns
 * the number of elements (>= 0). If it is not an array, calls `cb` once with the whole body
 * trimmed and returns 1. Returns -EINVAL when the body is empty or all whitespace, or when
 * the array's framing is broken (unterminated string, unbalanced brackets, missing comma,
 * empty element, trailing bytes, nesting deeper than 512); `*err_offset` is then the byte
 * offset of the problem and `*err_msg` a static description; no element has been handed out
 * in that case (the framing is checked before the first callback). Either error pointer may
 * be NULL. */
int sg_json_split(const char *body, size_t len, sg_json_element_cb cb, void *arg,
                  size_t *err_offset, const char **err_msg);

/* True when the body (after leading whitespace) is a complete JSON object written on one line,
 * then a newline, then another object's '{': NDJSON, most likely sent as application/json. Only
 * the framing is looked at (strings, escapes, nesting), as sg_json_split does; a body that
 * starts with an array, or a pretty-printed object spread over lines, is not NDJSON. */
bool sg_json_looks_like_ndjson(const char *body, size_t len);

#endif
