/* Internals shared by the two event decoders: event.c (the cJSON tree decoder, which is the
 * reference, and the entry point) and event_flat.c (the flat-event scanner). Both apply the
 * same rules through these helpers, so a key, a time or a field means the same in either.
 * Nothing outside src/ingest/ includes this. */
#ifndef STREAMGATE_EVENT_INTERNAL_H
#define STREAMGATE_EVENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "streamgate/event.h"

/* Formats a numeric key the way every decoder does: an integral value below 2^53 as an
 * integer, anything else with 17 significant digits. Fills ev->key from ev->keybuf. Returns 0,
 * or -EINVAL when the value is not finite. */
int sg_event__key_from_number(double v, struct sg_event *ev);

/* Epoch milliseconds from a numeric time member `v` in `unit` (enum sg_time_unit): fractions of
 * a millisecond are dropped (toward zero), and the result must lie in
 * [0, 9999-12-31T23:59:59.999Z]. In seconds, a value within the double's own precision of a
 * whole millisecond is that millisecond, so a decimal fraction the double cannot hold exactly
 * (1732460000.123) stays on its millisecond. Both decoders call this with the same double, so
 * they agree on every unit. Returns 0 or -EINVAL. */
int sg_event__time_from_number(int unit, double v, int64_t *ts_ms);

/* True when a numeric member of this name is kept as a field (event.value_fields). */
bool sg_event__wanted(const struct sg_event_decoder *dec, const char *name, size_t len);

/* Decodes `buf[0..len)`, already trimmed of surrounding whitespace and checked for control
 * bytes and UTF-8, when it is a flat event this scanner handles: an object whose strings hold
 * no escape sequence and whose nesting stays shallow. Returns 1 with `ev` filled exactly as the
 * tree decoder would fill it, or 0 when the event is not for this path: anything it does not
 * handle, and every event the tree decoder would reject, whose reason the tree decoder then
 * gives. It never rejects on its own and allocates nothing. */
int sg_event__decode_flat(const struct sg_event_decoder *dec, const char *buf, size_t len,
                          int64_t now_ms, struct sg_event *ev);

#endif
