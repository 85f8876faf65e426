/* Eight bytes at a time: the word helpers of the ingest scanners (the JSON splitter, the byte
 * check and the flat-event scanner), which look at every byte of every event. Nothing outside
 * src/ingest/ includes this. */
#ifndef STREAMGATE_WORD_H
#define STREAMGATE_WORD_H

#include <stdint.h>
#include <string.h>

#define SG_WORD_ONES  UINT64_C(0x0101010101010101)
#define SG_WORD_HIGHS UINT64_C(0x8080808080808080)

/* Loads eight bytes with the first one lowest, whatever the machine's byte order, so that the
 * lowest mark of sg_word_match() is the first match in memory. */
static inline uint64_t sg_word_load(const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* Marks (the high bit of the byte) where the word holds the byte c. Only the lowest mark is
 * exact (a borrow may set marks above it), which is the one callers use, through ctz. */
static inline uint64_t sg_word_match(uint64_t w, unsigned char c)
{
    uint64_t x = w ^ (c * SG_WORD_ONES);
    return (x - SG_WORD_ONES) & ~x & SG_WORD_HIGHS;
}

#endif
