/* Helpers shared by the files of the Tablestore protocol library; not part of its contract. */
#ifndef STREAMGATE_TABLESTORE_INTERNAL_H
#define STREAMGATE_TABLESTORE_INTERNAL_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

#include "streamgate/buf.h"

/* PlainBuffer tags and constants (PROTOCOL.md section 3.1). */
#define SG_TS__PB_HEADER       0x75u
#define SG_TS__TAG_ROW_PK      0x01
#define SG_TS__TAG_ROW_DATA    0x02
#define SG_TS__TAG_CELL        0x03
#define SG_TS__TAG_CELL_NAME   0x04
#define SG_TS__TAG_CELL_VALUE  0x05
#define SG_TS__TAG_CELL_TYPE   0x06
#define SG_TS__TAG_CELL_TS     0x07
#define SG_TS__TAG_DELETE_MARK 0x08
#define SG_TS__TAG_ROW_CRC     0x09
#define SG_TS__TAG_CELL_CRC    0x0a

/* Writes a printf-style message into errstr (if any) and returns `err`. */
__attribute__((format(printf, 4, 5))) int sg_ts__fail(char *errstr, size_t errstr_size, int err,
                                                      const char *fmt, ...);

/* True for a valid table or column name: 1 to 255 bytes of ASCII letters, digits and '_', not
 * starting with a digit. Non-ASCII is refused because the JS SDK mis-encodes it (quirk 2). */
bool sg_ts__name_ok(const char *name, size_t len);

/* Appends the serialized `msg` to `out`. Returns 0, -ENOMEM or -E2BIG (out unchanged). */
int sg_ts__pack(struct sg_buf *out, const ProtobufCMessage *msg);

#endif
