/* The dead-letter output (output.dead_letter_file): records a writer gave up on for good are
 * appended as NDJSON, one object per record:
 *   {"sink":"tablestore","key":..,"error":"<code>","message":..,"record":<the record JSON>}
 * Lines are batched and written with uv_fs_write, one write in flight at a time, so a burst of
 * failures costs one system call; the bytes waiting are charged to the memory budget.
 *
 * It is not a sink: writers hold a pointer to it and call sg_dead_letter_write. Its pending
 * write keeps the loop alive, so lines written during the writers' drain reach the file before
 * the loop ends; it is destroyed after every writer. */
#ifndef STREAMGATE_DEAD_LETTER_H
#define STREAMGATE_DEAD_LETTER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct sg_budget;
struct sg_log;
struct sg_metrics;
struct sg_dead_letter;

/* Opens `path` for appending ("-" is stdout; NULL or "" writes no file, for a dead-letter
 * output that only forwards, see sg_dead_letter_forward). `budget` may be NULL. Returns 0 or a
 * negative code with a message in errstr. */
int sg_dead_letter_create(uv_loop_t *loop, const char *path, struct sg_budget *budget,
                          struct sg_metrics *metrics, struct sg_log *log,
                          struct sg_dead_letter **out, char *errstr, size_t errstr_size);

/* Appends one line. `record` must be one JSON value (it is embedded as is); `message` may be
 * NULL. Returns 0, or -ENOBUFS when the pending buffer is full (the record is counted as lost).
 * Call it on the loop thread while the loop runs. */
int sg_dead_letter_write(struct sg_dead_letter *dl, const char *sink, const char *key,
                         size_t key_len, const char *code, const char *message, const char *record,
                         size_t record_len);

/* The same, to the file only: for a record the forward itself could not deliver. */
int sg_dead_letter_write_unforwarded(struct sg_dead_letter *dl, const char *sink, const char *key,
                                     size_t key_len, const char *code, const char *message,
                                     const char *record, size_t record_len);

/* Also hands every record to `cb` (the Kafka writer's late topic, when it is on), before the
 * file. One forward at most; `cb` must take its own copy. */
typedef void (*sg_dead_letter_forward_cb)(void *arg, const char *sink, const char *key,
                                          size_t key_len, const char *code, const char *message,
                                          const char *record, size_t record_len);
void sg_dead_letter_forward(struct sg_dead_letter *dl, sg_dead_letter_forward_cb cb, void *arg);

/* Lines written so far, and lines lost (write errors, full buffer). */
uint64_t sg_dead_letter_written(const struct sg_dead_letter *dl);
uint64_t sg_dead_letter_lost(const struct sg_dead_letter *dl);

/* Writes out what is still pending (blocking; only once the loop has stopped), closes the
 * file and frees. Safe on NULL. */
void sg_dead_letter_destroy(struct sg_dead_letter *dl);

#endif
