/* Integration-test harness: starts the real streamgate binary on ephemeral loopback ports,
 * talks to it over real sockets, reads its metrics, and stops it, checking its exit status.
 * The binary comes from $SG_BINARY (set by meson). Everything is blocking with timeouts: the
 * tests are clients, not servers. */
#ifndef STREAMGATE_TEST_HARNESS_H
#define STREAMGATE_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct sgt_proc {
    pid_t pid;
    char http[64];      /* "127.0.0.1:PORT" of the HTTP listener, "" when off */
    char tcp[64];       /* "127.0.0.1:PORT" of the TCP listener, "" when off */
    char dir[256];      /* a fresh temporary directory for this run (removed by sgt_stop) */
    char log_path[300]; /* the server's stderr */
    char out_path[300]; /* dir/out.ndjson, passed as --output-file unless args set it */
};

/* Starts the binary with `--http-listen 127.0.0.1:0 --tcp-listen 127.0.0.1:0 --output-file
 * <dir>/out.ndjson --log-level debug` followed by `args` (NULL-terminated, may be NULL; later
 * flags win), with the environment `env` added (NULL-terminated "K=V", may be NULL). Waits up to
 * 10 s for the "listening" log line and fills `p`. Fails the test (cr_assert) on error. */
void sgt_start(struct sgt_proc *p, const char *const *args, const char *const *env);

/* What sgt_start_with changes about a start. */
struct sgt_start_opts {
    bool no_log_level; /* leave out `--log-level debug`: the configuration's log.level holds */
    long nofile;       /* > 0: the open-files limit, soft and hard, the binary starts under */
};
/* As sgt_start, with `opts` (may be NULL: as sgt_start). */
void sgt_start_with(struct sgt_proc *p, const char *const *args, const char *const *env,
                    const struct sgt_start_opts *opts);
/* Sends SIGTERM, waits up to 20 s, returns the exit status (128+signal if killed by one), and
 * removes the run's directory. A test that reaped the process itself sets p->pid = 0 first;
 * then this only removes the directory and returns -1. */
int sgt_stop(struct sgt_proc *p);
/* Sends SIGTERM and asserts a clean exit (status 0). */
void sgt_stop_ok(struct sgt_proc *p);

/* Starts `argv` (NULL-terminated, argv[0] a path) in a process of its own that dies with the
 * test, its stderr appended to the file `log`, and waits up to 10 s for the first line it
 * writes to stdout, copied into `line` (len bytes, with its newline). Returns its pid. For
 * helper servers that print where they listen, such as the Tablestore emulator. */
pid_t sgt_spawn_first_line(const char *const *argv, const char *log, char *line, size_t len);

/* Runs the binary to completion with `args` (no default flags) and returns its exit status;
 * stdout and stderr are captured into the malloc'd strings (may be NULL to discard). */
int sgt_run(const char *const *args, const char *const *env, char **out, char **err);

/* A process's resident set size in kB (VmRSS from /proc), or -1. */
long sgt_rss_kb(pid_t pid);

/* Monotonic milliseconds, and a sleep, for polling loops in tests. */
int64_t sgt_mono_ms(void);
void sgt_sleep_ms(int ms);

/* A blocking TCP connection to "host:port" with 10 s send/receive timeouts. */
int sgt_connect(const char *hostport);
/* Sends everything or fails the test. */
void sgt_send_all(int fd, const void *buf, size_t len);
/* Sends a NUL-terminated string or fails the test. */
void sgt_send_str(int fd, const char *s);
/* Reads until EOF or timeout; returns a malloc'd NUL-terminated buffer. */
char *sgt_recv_all(int fd, size_t *len);
/* Returns true when the peer has closed the connection within timeout_ms (reads and drops any
 * bytes first). */
bool sgt_wait_closed(int fd, int timeout_ms);

struct sgt_response {
    int status;
    char *headers; /* the header block, NUL-terminated, lower-case names kept as sent */
    char *body;    /* NUL-terminated */
    size_t body_len;
};
void sgt_response_free(struct sgt_response *r);
/* Returns the value of header `name` (case-insensitive) in a malloc'd string, or NULL. */
char *sgt_header(const struct sgt_response *r, const char *name);

/* Reads one HTTP/1.1 response (Content-Length or chunked) from a keep-alive connection.
 * Returns 0, or -1 on EOF/timeout before a whole response. */
int sgt_read_response(int fd, struct sgt_response *r);
/* The same through `recv_fn` (like recv(2): bytes read, 0 at EOF, < 0 on error or timeout),
 * e.g. a TLS client's; `fd` is the socket under it, which keeps bytes past the response. */
typedef ssize_t (*sgt_recv_fn)(void *ctx, void *buf, size_t cap);
int sgt_read_response_with(int fd, sgt_recv_fn recv_fn, void *ctx, struct sgt_response *r);
/* One request on a new connection: `extra_headers` is "Name: value\r\n..." or NULL; a
 * Content-Length is added when body != NULL. Returns the response; fails the test on error. */
void sgt_http(const char *hostport, const char *method, const char *path, const char *extra_headers,
              const void *body, size_t body_len, struct sgt_response *r);
/* POST /v1/events with the given content type. */
void sgt_post(const char *hostport, const char *content_type, const char *body,
              struct sgt_response *r);

/* Scrapes /metrics and returns the value of the exact series, e.g.
 * `streamgate_events_accepted_total{transport="tcp"}`; -1 when absent. */
double sgt_metric(const char *hostport, const char *series);
/* The value of the exact series in a /metrics text already fetched; -1 when absent. */
double sgt_metric_in(const char *text, const char *series);
/* Polls /metrics until the series equals `want` or timeout_ms passes; returns the last value. */
double sgt_wait_metric(const char *hostport, const char *series, double want, int timeout_ms);

/* Reads a whole file into a malloc'd NUL-terminated buffer (NULL if missing). */
char *sgt_read_file(const char *path, size_t *len);
/* Polls until the file has `lines` newline characters or timeout_ms passes; returns the count. */
size_t sgt_wait_lines(const char *path, size_t lines, int timeout_ms);
/* gzip-compresses `in` into a malloc'd buffer. */
void *sgt_gzip(const void *in, size_t len, size_t *out_len);

#endif
