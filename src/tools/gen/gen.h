/* streamgate-gen: a load and data generator for streamgate. Private declarations shared by the
 * generator's files: options, the event source, per-connection lanes, the expectation table and
 * the run statistics. Everything hangs off one `struct gen_app`; there is no global state. */
#ifndef STREAMGATE_GEN_H
#define STREAMGATE_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "llhttp.h"

#define GEN_MAX_FIELDS   4 /* numeric fields an expectation can cover */
#define GEN_MAX_LANES    1024
#define GEN_NO_TS        INT64_MIN
#define GEN_HIST_BUCKETS (64 * 16)
#define GEN_SIN_SIZE     4096
#define GEN_EXP_SIZE     1024

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

enum gen_source_kind { GEN_SOURCE_SENSORS, GEN_SOURCE_LOGS };
enum gen_dist { GEN_DIST_UNIFORM, GEN_DIST_ZIPF, GEN_DIST_ROUND_ROBIN };
enum gen_target { GEN_TARGET_NONE, GEN_TARGET_HTTP, GEN_TARGET_TCP, GEN_TARGET_FILE };

/* ---- options (opts.c) ---------------------------------------------------------------- */

struct gen_opts {
    enum gen_target target;
    char *http_url;
    char *tcp_addr;
    char *file_path;
    char *token;
    uint64_t batch;
    bool ndjson;
    uint64_t connections;
    double rate;
    uint64_t count;
    double duration_s;
    uint64_t keys;
    enum gen_dist dist;
    double zipf_s;
    enum gen_source_kind source;
    double disorder;
    int64_t max_delay_ms;
    double late;
    int64_t lateness_ms;
    int64_t start_ts;
    bool start_ts_set;
    int64_t ts_step;
    uint64_t seed;
    char *expect_path;
    uint64_t expect_values; /* events whose values --expect keeps in <expect>.values */
    char *check_results;    /* compare this results file with expect_path instead of generating */
    char *check_history;    /* ask this server's GET /v1/history for each key's roll-up instead */
    uint64_t distinct_precision; /* --check-history: the gateway's window.distinct_precision */
    int64_t window_size_ms;
    char *expect_fields;
    bool retry;
    uint64_t max_retries;
    bool quiet;
    bool json;
    /* A planted signal in the sensors' value field, per key and window (source.c). */
    double trend;             /* largest drift per window; each key drifts by 0.5..1.5 of it */
    double season;            /* amplitude of a per-key sine */
    uint64_t period;          /* its period, in windows */
    double noise;             /* standard deviation of each event's noise */
    double anomaly_rate;      /* fraction of (key, window) pairs shifted */
    double anomaly_size;      /* by this many standard deviations of a window mean's noise */
    double anomaly_threshold; /* --check-results: |anomaly| past it flags a window */
};

/* Parses argv into `o` (defaults first). Returns 0, 1 when --help was printed (exit 0), or a
 * negative errno code with a message in errstr. */
int gen_opts_parse(struct gen_opts *o, int argc, char **argv, char *errstr, size_t errstr_size);
void gen_opts_free(struct gen_opts *o);

/* ---- the event source (source.c) ------------------------------------------------------- */

/* What the expectation needs to know about one event. */
struct gen_rec {
    uint32_t key;
    bool late;    /* dropped by the server as late, per the generation-order watermark */
    bool planted; /* its (key, window) was chosen for an anomaly */
    int64_t ts;
    double v[GEN_MAX_FIELDS];
    double signal; /* the value field's noise-free signal in its window (with a signal) */
};

struct gen_source {
    enum gen_source_kind kind;
    enum gen_dist dist;
    uint64_t keys;
    uint64_t rng[4];
    uint64_t id_salt;
    uint64_t *seq;      /* per key */
    double *alias_prob; /* zipf alias table */
    uint32_t *alias_idx;
    int64_t next_ts; /* event time of the next on-time event */
    int64_t ts_step; /* 0: the wall clock */
    uint64_t n;      /* events made so far */
    uint64_t turn;   /* keys taken, round-robin */
    double disorder, late;
    int64_t max_delay_ms, lateness_ms, window_ms;
    bool has_max; /* the generation-order watermark */
    int64_t max_ts;
    int nfields; /* fields copied into records */
    int field_idx[GEN_MAX_FIELDS];
    int16_t sin_table[GEN_SIN_SIZE];
    uint16_t exp_table[GEN_EXP_SIZE];
    /* The planted signal (--trend, --season, --noise, --anomaly-rate); `signal` when any is
     * set. */
    bool signal;
    double trend, season, noise, anomaly_rate, shift;
    uint64_t period;
    int64_t first_window; /* window index of the first event time: the signal's origin */
};

/* Numeric field names of each source, in the order the source writes them. */
int gen_source_field_index(enum gen_source_kind kind, const char *name);
const char *gen_source_field_name(enum gen_source_kind kind, int idx);
/* Fills `keybuf` with the name of key `k`; returns its length. */
size_t gen_source_key_name(enum gen_source_kind kind, uint64_t k, char *keybuf);

int gen_source_init(struct gen_source *src, const struct gen_opts *o, char *errstr,
                    size_t errstr_size);
void gen_source_destroy(struct gen_source *src);
/* Draws the key of the next event (the first random draw of each event). */
uint32_t gen_source_next_key(struct gen_source *src);
/* Writes the event for key `key` as one NDJSON line into `out` (at least GEN_EVENT_MAX bytes)
 * and returns its length. `lane_max` is the highest event time already sent on the event's
 * connection (GEN_NO_TS when none), the bound that lets a late event be late for certain.
 * `now_ms` is the wall clock, used when ts_step is 0. `rec` receives what the expectation
 * needs. */
#define GEN_EVENT_MAX 512
size_t gen_source_make(struct gen_source *src, uint32_t key, int64_t lane_max, int64_t now_ms,
                       char *out, struct gen_rec *rec);

/* ---- the expectation (expect.c) ------------------------------------------------------- */

struct gen_fagg {
    uint64_t count;
    double sum, min, max;
};

struct gen_ewin {
    uint32_t key;
    bool used;
    bool planted;
    double signal;
    int64_t start;
    uint64_t count;
    struct gen_fagg f[GEN_MAX_FIELDS];
};

/* One event's values, kept for the exact order statistics. */
struct gen_evals {
    uint32_t key;
    double v[GEN_MAX_FIELDS];
};

struct gen_expect {
    int64_t window_ms;
    int nfields;
    bool signal;  /* write each window's planted flag and signal */
    double noise; /* and the events' noise */
    struct gen_ewin *slots;
    size_t cap, len;
    /* Every event's values, up to vals_max events (past that, none are written). */
    struct gen_evals *vals;
    size_t nvals, vals_cap, vals_max;
    bool vals_over;
};

/* `values_max`: events whose values are kept for gen_expect_write_values (0: none). */
int gen_expect_init(struct gen_expect *ex, int64_t window_ms, int nfields, size_t values_max);
void gen_expect_destroy(struct gen_expect *ex);
/* Folds an event that reached the server (late ones are skipped). Returns 0 or -ENOMEM. */
int gen_expect_add(struct gen_expect *ex, const struct gen_rec *rec);
/* Writes the sorted expectation to `path`. */
int gen_expect_write(const struct gen_expect *ex, enum gen_source_kind kind, const char *path,
                     const char *const *names, char *errstr, size_t errstr_size);
/* Writes every key's values of each field, sorted, to `path` (<expect>.values): one line a key
 * and field, {"key":..,"field":..,"count":N,"values":[..]}, keys in the order of the
 * expectation. When more than the kept number of events came, writes nothing, removes any older
 * `path`, and returns 1. Returns 0, 1, or a negative errno code with a message in errstr. */
int gen_expect_write_values(const struct gen_expect *ex, enum gen_source_kind kind,
                            const char *path, const char *const *names, char *errstr,
                            size_t errstr_size);
/* Appends the shortest text that reads back as `v` (integers without a fraction), as the server
 * writes its results. Returns the length written to `buf` (at least 40 bytes). */
size_t gen_format_double(double v, char *buf);

/* ---- checking results (check.c) ------------------------------------------------------ */

/* Compares the window results in o->check_results with the expectation in o->expect_path.
 * Returns the exit status: 0 equal, 1 different (the first differences on stderr), 2 an
 * unreadable file or a broken expectation. */
int gen_check_results(const struct gen_opts *o);
/* --check-history URL --expect EXPECT: for each key of the expectation, asks the server for the
 * roll-up of the key's stored windows over the expectation's time range and compares count, sum,
 * min and max of every expected field with the expected windows folded in time order (exact:
 * the server adds the stored window sums in that order), and, with <expect>.values beside it,
 * each quantile of the roll-up with the exact order statistic of the key's values (within 1%).
 * Exit status as gen_check_results. */
int gen_check_history(const struct gen_opts *o);

/* ---- statistics (stats.c) ------------------------------------------------------------- */

struct gen_hist {
    uint64_t buckets[GEN_HIST_BUCKETS];
    uint64_t count;
    uint64_t max_us;
};

void gen_hist_add(struct gen_hist *h, uint64_t us);
/* The q-quantile in microseconds (an upper bucket bound, within 1/16 of the value). */
uint64_t gen_hist_quantile(const struct gen_hist *h, double q);

struct gen_stats {
    uint64_t generated; /* events made */
    uint64_t late;      /* of which late for the server, by the generation-order watermark */
    uint64_t sent;      /* events written to the target */
    uint64_t acked;     /* accepted by the server (or written, for file and TCP) */
    uint64_t rejected;  /* refused by the server (400, or the rejected count of a 202) */
    uint64_t failed;    /* lost to errors: neither acknowledged nor rejected */
    uint64_t requests;  /* HTTP requests answered */
    uint64_t retried;   /* requests sent again after 503/429 */
    uint64_t pushback;  /* 503/429 answers */
    uint64_t errors;    /* connection errors and unexpected answers */
    uint64_t bytes;     /* bytes written */
    struct gen_hist lat;
};

/* ---- lanes: one per connection (lane.c and the target files) -------------------------- */

/* A FIFO of formatted NDJSON events and, when an expectation is kept, their records. */
struct gen_queue {
    char *data;
    size_t rd, wr, cap;
    uint64_t nevents;
    struct gen_rec *recs;
    size_t rrd, rwr, rcap;
};

int gen_queue_init(struct gen_queue *q, size_t cap, size_t rcap);
void gen_queue_destroy(struct gen_queue *q);
void gen_queue_reset(struct gen_queue *q);
/* Moves unread bytes and records to the front. */
void gen_queue_compact(struct gen_queue *q);

struct gen_app;

enum gen_conn_state { GEN_CONN_IDLE, GEN_CONN_CONNECTING, GEN_CONN_OPEN, GEN_CONN_CLOSING };

struct gen_lane {
    struct gen_app *app;
    unsigned idx;
    struct gen_queue fill;   /* events waiting */
    struct gen_queue flight; /* events being written (TCP, file) or in the request (HTTP) */
    bool busy;               /* a write or a request is in flight */
    int64_t max_ts;          /* highest event time queued on this lane */

    /* TCP and HTTP */
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    enum gen_conn_state state;
    bool closed_for_good;
    unsigned connect_failures;

    /* HTTP */
    char *req;
    size_t req_len, req_cap;
    uint64_t req_events;
    unsigned attempts;
    uint64_t sent_at_ns;
    bool got_response;
    bool keep_alive; /* the last answer allows another request on this connection */
    llhttp_t parser;
    int status;
    char hdr_field[32];
    size_t hdr_field_len;
    bool hdr_is_retry_after;
    char retry_after[32];
    size_t retry_after_len;
    /* The answer's body: room for the counts and for an error list as long as the server's
     * default http.max_errors (100) makes it, so the indexes of refused events can be read. */
    char body[32768];
    size_t body_len;
    uint32_t *refused; /* indexes of the events an answer listed as refused, ascending */
    size_t nrefused, refused_cap;
    uv_timer_t retry_timer;
    bool waiting_retry;

    /* file */
    uv_fs_t fs_req;
};

struct gen_app {
    uv_loop_t *loop;
    struct gen_opts opts;
    struct gen_source src;
    struct gen_expect expect;
    bool keep_expect;
    struct gen_stats stats;

    unsigned nlanes;
    struct gen_lane *lanes;
    size_t lane_cap;

    struct sockaddr_storage addr;
    char host_header[300];
    char path[1024];
    uv_file file_fd;
    bool file_is_stdout;
    llhttp_settings_t http_settings;

    uv_timer_t tick; /* the rate limiter, the duration and the progress line */
    uv_signal_t sigint, sigterm;
    uv_check_t pump_check;
    uv_idle_t pump_idle;

    uint64_t start_ns;
    uint64_t target_count; /* 0 = no count bound */
    bool done;             /* no more events will be made */
    bool aborted;          /* a second signal or an unrecoverable error */
    bool finished;         /* handles are closing */
    bool has_pending_key;
    uint32_t pending_key;
    unsigned pushback_waiting; /* lanes waiting to retry after 503/429 */
    bool progress;
    uint64_t last_progress_ns;
    uint64_t last_progress_acked;
    uint64_t last_flush_ns;
    int fatal;
    char fatal_msg[256];
    bool expect_partial; /* some batch was partly refused: the expectation misses it */
    char rbuf[65536];    /* read buffer for every connection; reads are consumed at once */
};

/* lane.c */
unsigned gen_lane_of_key(const struct gen_app *app, uint32_t key);
/* Makes events while the rate, the count and the lanes' room allow. */
void gen_pump(struct gen_app *app);
/* Starts sending on every lane that has something to send. */
void gen_kick_all(struct gen_app *app);
/* Called by targets when a lane finished a write or request; moves the run along. */
void gen_lane_settled(struct gen_lane *lane);
/* Pumps, kicks every lane, and ends the run when it is over. */
void gen_step(struct gen_app *app);
/* Records that the events of lane->flight were accepted (and folds them into the
 * expectation), or lost. */
/* Settles the batch in flight: `acked` events accepted, `rejected` refused. `refused` lists the
 * indexes (ascending) of the refused ones when the answer named every one of them, so that the
 * accepted ones still go into the expectation; NULL when it did not. */
void gen_lane_ack(struct gen_lane *lane, uint64_t acked, uint64_t rejected, const uint32_t *refused,
                  size_t nrefused);
void gen_lane_lost(struct gen_lane *lane);
/* Ends the run with an error message; the loop winds down. */
void gen_fail(struct gen_app *app, int rc, const char *msg);
uint64_t gen_now_ms(void);

/* tcp.c: NDJSON streams. */
int gen_tcp_init(struct gen_app *app, char *errstr, size_t errstr_size);
void gen_tcp_kick(struct gen_lane *lane);
void gen_tcp_close(struct gen_lane *lane);

/* http.c: POST /v1/events. */
int gen_http_init(struct gen_app *app, char *errstr, size_t errstr_size);
void gen_http_kick(struct gen_lane *lane, bool flush);
void gen_http_close(struct gen_lane *lane);

/* file.c: NDJSON to a file or stdout. */
int gen_file_init(struct gen_app *app, char *errstr, size_t errstr_size);
void gen_file_kick(struct gen_lane *lane);
void gen_file_close(struct gen_app *app);

/* Resolves "host:port" or "[v6]:port" (synchronously, at start-up) into `ss`. */
int gen_resolve(uv_loop_t *loop, const char *host, const char *port, struct sockaddr_storage *ss,
                char *errstr, size_t errstr_size);

/* stats.c */
void gen_progress(struct gen_app *app, bool final_line);
void gen_summary(struct gen_app *app, double elapsed_s);

#endif
