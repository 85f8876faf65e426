/* What the files of the Tablestore writer (and its reader) share; not part of any contract.
 *
 * tablestore_call.c: one signed call to the service on a reused easy handle.
 * tablestore_rows.c: the row store: rows held until written, their index by primary key, the
 * pending list and the retry heap ordered by due time. */
#ifndef STREAMGATE_SINK_TABLESTORE_INTERNAL_H
#define STREAMGATE_SINK_TABLESTORE_INTERNAL_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "curl_uv.h"
#include "streamgate/buf.h"

/* ---- Calls ------------------------------------------------------------------------------- */

/* Where and as whom to call. The strings are owned by the caller and outlive the calls. */
struct sg_ts_creds {
    const char *endpoint; /* http(s)://host[:port], no trailing slash */
    const char *instance;
    const char *akid;
    const char *secret;
    const char *sts_token; /* "" when none */
};

/* One call slot: its easy handle is reused, call after call. The body is filled by the caller,
 * then sg_ts_call_prepare signs it and sets the handle up; the answer lands in resp and
 * resp_hdrs. */
struct sg_ts_call {
    struct sg_curl_xfer xfer;
    CURL *easy;
    struct curl_slist *hdrs;
    struct sg_buf body, resp, resp_hdrs;
    uint64_t start_ns;
    char errbuf[CURL_ERROR_SIZE];
};

/* Most response header bytes kept for the signature check, and most body bytes. */
#define SG_TS_CALL_MAX_RESPONSE_HEADERS (64 * 1024)
#define SG_TS_CALL_MAX_RESPONSE_BODY    (16 * 1024 * 1024)

/* Sets up a call slot whose body holds at most `max_body` bytes. Returns 0 or -ENOMEM; on
 * failure the slot holds nothing to free (sg_ts_call_free is safe on it). */
int sg_ts_call_init(struct sg_ts_call *call, size_t max_body);

/* Releases what the slot holds. Safe on a zeroed or half-initialised slot. */
void sg_ts_call_free(struct sg_ts_call *call);

/* Empties the body, the answer and the headers for the next call. */
void sg_ts_call_reset(struct sg_ts_call *call);

/* Signs the body for `operation` and sets up the easy handle: POST to endpoint/operation,
 * timeouts (0: none of that kind). Returns 0 or -ENOMEM. */
int sg_ts_call_prepare(struct sg_ts_call *call, const struct sg_ts_creds *creds,
                       const char *operation, long connect_timeout_ms, long timeout_ms);

/* Checks the answer's signature and MD5 for `operation`: 0 or a negative code. */
int sg_ts_call_verify(const struct sg_ts_call *call, const struct sg_ts_creds *creds,
                      const char *operation);

/* The answer's HTTP status (0 when there was none). */
long sg_ts_call_status(const struct sg_ts_call *call);

/* A transfer's failure in words: libcurl's error buffer, or the result's description; for a
 * request that timed out without a connection, a sentence saying so. */
const char *sg_ts_call_error(const struct sg_ts_call *call, CURLcode result);

/* ---- The row store ----------------------------------------------------------------------- */

enum sg_ts_kind { SG_TS_KIND_RAW = 0, SG_TS_KIND_AGG = 1, SG_TS_NKINDS };

/* Where a held row is: the pending list (waiting for a batch), the retry heap (failed, waiting
 * out a backoff), a request in flight, or behind an in-flight row of the same primary key. */
enum sg_ts_row_state { SG_TS_ROW_PENDING, SG_TS_ROW_WAITING, SG_TS_ROW_IN_FLIGHT, SG_TS_ROW_NEWER };

struct sg_ts_done;

/* A row held until it is written: what it weighs on the wire, and little else. One
 * allocation: this header, then the row's identity (the index key: its table kind, then each
 * primary key value as a 32-bit length and its bytes, integers as 8 bytes), then the row
 * encoded exactly as it is sent (PlainBuffer, header included), then for a raw event the event
 * as received (its dead-letter record; a result's is decoded from the encoding when needed).
 * The key for logs is the first primary key value, inside the identity. */
struct sg_ts_held {
    union {
        struct sg_ts_held *prev; /* pending list */
        size_t heap_at;          /* waiting: its place in the retry heap */
    };
    struct sg_ts_held *next;  /* pending list */
    struct sg_ts_held *hnext; /* hash chain */
    struct sg_ts_held *newer; /* a newer version waiting for this in-flight row */
    /* Confirmations to tell when the row is written (or given up): its own record's, and
     * those of the older versions of the same key it replaced. NULL: nobody waits. */
    struct sg_ts_done *dones;
    uint64_t hash;
    int64_t due_ms;    /* waiting: when to send again */
    size_t bytes;      /* charged to the budget */
    size_t record_len; /* raw rows: the event's bytes */
    uint32_t wire;     /* encoded size, for batching */
    uint32_t ident_len;
    uint32_t enc_len;
    int32_t attempts; /* retries so far */
    uint16_t key_len;
    uint8_t kind;  /* enum sg_ts_kind */
    uint8_t state; /* enum sg_ts_row_state */
    char data[];
};

#define SG_TS_IDENT_KEY_OFF                                                                        \
    5 /* the first primary key value in the identity: after kind, length                           \
       */

static inline const char *sg_ts_held_ident(const struct sg_ts_held *r)
{
    return r->data;
}

static inline const char *sg_ts_held_key(const struct sg_ts_held *r)
{
    return r->data + SG_TS_IDENT_KEY_OFF;
}

static inline const void *sg_ts_held_encoded(const struct sg_ts_held *r)
{
    return r->data + r->ident_len;
}

static inline const char *sg_ts_held_record(const struct sg_ts_held *r)
{
    return r->data + r->ident_len + r->enc_len;
}

struct sg_ts_list {
    struct sg_ts_held *head, *tail;
    size_t count;
};

void sg_ts_list_append(struct sg_ts_list *l, struct sg_ts_held *r);
void sg_ts_list_prepend(struct sg_ts_list *l, struct sg_ts_held *r);
void sg_ts_list_remove(struct sg_ts_list *l, struct sg_ts_held *r);
/* Puts `r` where `old` stands in the list. */
void sg_ts_list_replace(struct sg_ts_list *l, struct sg_ts_held *old, struct sg_ts_held *r);

/* The rows held: an index with one entry per primary key held (pending, waiting or in flight),
 * the pending list, and the retry heap, a binary min-heap of the waiting rows by due time. */
struct sg_ts_store {
    struct sg_ts_held **buckets;
    size_t nbuckets, nindexed;
    struct sg_ts_list pending;
    size_t pending_wire;
    struct sg_ts_held **heap;
    size_t nheap, heap_cap;
};

/* Frees the index's and the heap's arrays (not the rows). */
void sg_ts_store_free(struct sg_ts_store *st);

/* Makes room to index one more row and to put every indexed row on the retry heap, so that
 * neither sg_ts_store_index nor sg_ts_heap_push can fail afterwards. 0 or -ENOMEM. */
int sg_ts_store_reserve(struct sg_ts_store *st);

/* The row indexed under r's primary key, or NULL. */
struct sg_ts_held *sg_ts_store_find(struct sg_ts_store *st, const struct sg_ts_held *r);

/* Indexes `r`, whose key must not be indexed yet, after sg_ts_store_reserve. */
void sg_ts_store_index(struct sg_ts_store *st, struct sg_ts_held *r);

/* Takes `r` out of the index if it is the row indexed under its key. */
void sg_ts_store_unindex(struct sg_ts_store *st, struct sg_ts_held *r);

/* The retry heap: push a row whose due_ms is set, look at or take the earliest, remove any. */
void sg_ts_heap_push(struct sg_ts_store *st, struct sg_ts_held *r);
struct sg_ts_held *sg_ts_heap_first(const struct sg_ts_store *st);
void sg_ts_heap_remove(struct sg_ts_store *st, struct sg_ts_held *r);

struct sg_sink_done;

struct sg_ts_done {
    struct sg_ts_done *next;
    struct sg_sink_done *done;
};

/* Tells the row's confirmations how it ended and lets them go. */
void sg_ts_held_tell(struct sg_ts_held *r, bool written);

/* A newer version of the same key takes the place of `old`: writing it confirms the older
 * records too, since the row then holds their window's latest state. */
void sg_ts_held_pass_dones(struct sg_ts_held *old, struct sg_ts_held *r);

/* ---- The reader (tablestore_read.c) ------------------------------------------------------ */

#define SG_TS_READ_NOUTCOMES 4

struct sg_ts_read;
struct sg_counter;
struct sg_metrics;
struct sg_budget;

struct sg_ts_reader_conf {
    uv_loop_t *loop;
    struct sg_curl_uv *curl;  /* the writer's */
    struct sg_budget *budget; /* a read's request and answer are charged as bodies; may be NULL */
    const struct sg_ts_creds *creds;
    const char *results_table;
    const char *time_index; /* NULL: off */
    int32_t index_shards;
    uint64_t backoff_ms, backoff_max_ms;
};

/* The writer embeds its reader. */
struct sg_ts_reader {
    struct sg_ts_reader_conf conf;
    struct sg_ts_read *reads; /* in progress */
    bool closing;
    struct sg_counter *m_reads[SG_TS_READ_NOUTCOMES];
};

/* Sets a reader up; 0 or -ENOMEM (its metrics). */
int sg_ts_reader_init(struct sg_ts_reader *r, const struct sg_ts_reader_conf *conf,
                      struct sg_metrics *m);

/* Cancels every read in progress (their callbacks run) and refuses new ones: before the
 * writer closes its multi handle. */
void sg_ts_reader_close(struct sg_ts_reader *r);

#endif
