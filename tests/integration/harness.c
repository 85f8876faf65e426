#include "harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define SG_ARRAY_SIZE_H(a) (sizeof(a) / sizeof((a)[0]))

static const char *binary(void)
{
    const char *b = getenv("SG_BINARY");
    cr_assert(b && *b, "SG_BINARY is not set (run the tests through meson test)");
    return b;
}

int64_t sgt_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sgt_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

char *sgt_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    cr_assert(buf);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
            cr_assert(buf);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Extracts the value of "name":"..." from a JSON log line (no escapes expected in addresses). */
static bool log_field(const char *line, const char *name, char *out, size_t outlen)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":\"", name);
    const char *p = strstr(line, pat);
    if (!p)
        return false;
    p += strlen(pat);
    const char *q = strchr(p, '"');
    if (!q || (size_t)(q - p) >= outlen)
        return false;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = '\0';
    return true;
}

/* Starts argv[0] with `env` added, stdin from /dev/null and stdout and stderr on the given
 * descriptors (-1: inherited); `nofile` > 0 sets its open-files limit, soft and hard. */
static pid_t spawn(const char *const *argv, const char *const *env, int out_fd, int err_fd,
                   long nofile)
{
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* A test that fails an assertion exits without reaching sgt_stop; the server must not
         * outlive it (and hold its output open). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (const char *const *e = env; e && *e; e++)
            putenv((char *)*e);
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        if (out_fd >= 0)
            dup2(out_fd, 1);
        if (err_fd >= 0)
            dup2(err_fd, 2);
        if (nofile > 0) {
            struct rlimit rl = {.rlim_cur = (rlim_t)nofile, .rlim_max = (rlim_t)nofile};
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                _exit(126);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

void sgt_start(struct sgt_proc *p, const char *const *args, const char *const *env)
{
    sgt_start_with(p, args, env, NULL);
}

void sgt_start_with(struct sgt_proc *p, const char *const *args, const char *const *env,
                    const struct sgt_start_opts *opts)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->dir, sizeof(p->dir), "/tmp/sgt-XXXXXX");
    cr_assert(mkdtemp(p->dir), "mkdtemp: %s", strerror(errno));
    snprintf(p->log_path, sizeof(p->log_path), "%s/stderr.log", p->dir);
    snprintf(p->out_path, sizeof(p->out_path), "%s/out.ndjson", p->dir);

    const char *argv[128];
    size_t n = 0;
    argv[n++] = binary();
    argv[n++] = "--http-listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--tcp-listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--output-file";
    argv[n++] = p->out_path;
    if (!opts || !opts->no_log_level) {
        argv[n++] = "--log-level";
        argv[n++] = "debug";
    }
    for (const char *const *a = args; a && *a && n < SG_ARRAY_SIZE_H(argv) - 1; a++)
        argv[n++] = *a;
    argv[n] = NULL;

    int err_fd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert(err_fd >= 0);
    p->pid = spawn(argv, env, err_fd, err_fd, opts ? opts->nofile : 0);
    close(err_fd);

    int64_t deadline = sgt_mono_ms() + 10000;
    while (sgt_mono_ms() < deadline) {
        char *log = sgt_read_file(p->log_path, NULL);
        const char *line = log ? strstr(log, "\"msg\":\"listening\"") : NULL;
        if (line) {
            const char *start = line;
            while (start > log && start[-1] != '\n')
                start--;
            log_field(start, "http", p->http, sizeof(p->http));
            log_field(start, "tcp", p->tcp, sizeof(p->tcp));
            free(log);
            return;
        }
        free(log);
        int status;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            char *l = sgt_read_file(p->log_path, NULL);
            p->pid = 0;
            cr_assert_fail("streamgate exited during start-up (status %d):\n%s", status,
                           l ? l : "(no output)");
        }
        sgt_sleep_ms(10);
    }
    char *l = sgt_read_file(p->log_path, NULL);
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
    cr_assert_fail("streamgate did not report listening within 10 s:\n%s", l ? l : "(no output)");
}

static void remove_dir(const char *dir)
{
    char cmd[600];
    if (strncmp(dir, "/tmp/sgt-", 9) != 0)
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", dir);
}

int sgt_stop(struct sgt_proc *p)
{
    if (p->pid <= 0) { /* already reaped by the test: only clean up */
        remove_dir(p->dir);
        return -1;
    }
    kill(p->pid, SIGTERM);
    int status = 0;
    int64_t deadline = sgt_mono_ms() + 20000;
    pid_t r = 0;
    while ((r = waitpid(p->pid, &status, WNOHANG)) == 0 && sgt_mono_ms() < deadline)
        sgt_sleep_ms(10);
    if (r == 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &status, 0);
    }
    p->pid = 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0) {
        char *l = sgt_read_file(p->log_path, NULL);
        cr_log_error("streamgate exited with %d; its log:\n%s", code, l ? l : "(none)");
        free(l);
    }
    remove_dir(p->dir);
    return code;
}

void sgt_stop_ok(struct sgt_proc *p)
{
    int code = sgt_stop(p);
    cr_assert_eq(code, 0, "streamgate exited with status %d, expected 0", code);
}

static char *slurp_fd(int fd)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    cr_assert(buf);
    ssize_t r;
    while ((r = read(fd, buf + n, cap - n - 1)) > 0) {
        n += (size_t)r;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
            cr_assert(buf);
        }
    }
    buf[n] = '\0';
    return buf;
}

pid_t sgt_spawn_first_line(const char *const *argv, const char *log, char *line, size_t len)
{
    int out[2];
    size_t n = 0;
    cr_assert_eq(pipe(out), 0);
    int errfd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    cr_assert(errfd >= 0, "%s: %s", log, strerror(errno));
    pid_t pid = spawn(argv, NULL, out[1], errfd, 0);
    close(out[1]);
    close(errfd);
    line[0] = '\0';
    while (n < len - 1 && !strchr(line, '\n')) {
        struct pollfd p = {out[0], POLLIN, 0};
        cr_assert_gt(poll(&p, 1, 10000), 0, "%s wrote no line within 10 s", argv[0]);
        ssize_t r = read(out[0], line + n, len - 1 - n);
        cr_assert_gt(r, 0, "%s exited before its first line (see %s)", argv[0], log);
        n += (size_t)r;
        line[n] = '\0';
    }
    close(out[0]);
    return pid;
}

int sgt_run(const char *const *args, const char *const *env, char **out, char **err)
{
    char tmpl_out[] = "/tmp/sgt-out-XXXXXX", tmpl_err[] = "/tmp/sgt-err-XXXXXX";
    int out_fd = mkstemp(tmpl_out), err_fd = mkstemp(tmpl_err);
    cr_assert(out_fd >= 0 && err_fd >= 0);
    const char *argv[128];
    size_t n = 0;
    argv[n++] = binary();
    for (const char *const *a = args; a && *a && n < SG_ARRAY_SIZE_H(argv) - 1; a++)
        argv[n++] = *a;
    argv[n] = NULL;
    pid_t pid = spawn(argv, env, out_fd, err_fd, 0);
    int status = 0;
    waitpid(pid, &status, 0);
    lseek(out_fd, 0, SEEK_SET);
    lseek(err_fd, 0, SEEK_SET);
    char *o = slurp_fd(out_fd), *e = slurp_fd(err_fd);
    close(out_fd);
    close(err_fd);
    unlink(tmpl_out);
    unlink(tmpl_err);
    if (out)
        *out = o;
    else
        free(o);
    if (err)
        *err = e;
    else
        free(e);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int sgt_connect(const char *hostport)
{
    char host[64];
    const char *colon = strrchr(hostport, ':');
    cr_assert(colon, "bad address %s", hostport);
    size_t hl = (size_t)(colon - hostport);
    cr_assert(hl < sizeof(host));
    memcpy(host, hostport, hl);
    host[hl] = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    cr_assert(inet_pton(AF_INET, host, &sa.sin_addr) == 1, "bad host %s", host);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    cr_assert(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s: %s", hostport,
              strerror(errno));
    return fd;
}

void sgt_send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        cr_assert(n > 0, "send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

void sgt_send_str(int fd, const char *s)
{
    sgt_send_all(fd, s, strlen(s));
}

char *sgt_recv_all(int fd, size_t *len)
{
    char *buf = slurp_fd(fd);
    if (len)
        *len = strlen(buf);
    return buf;
}

bool sgt_wait_closed(int fd, int timeout_ms)
{
    int64_t deadline = sgt_mono_ms() + timeout_ms;
    char junk[4096];
    while (sgt_mono_ms() < deadline) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)(deadline - sgt_mono_ms()));
        if (r <= 0)
            return false;
        ssize_t n = recv(fd, junk, sizeof(junk), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            return true;
    }
    return false;
}

void sgt_response_free(struct sgt_response *r)
{
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

char *sgt_header(const struct sgt_response *r, const char *name)
{
    size_t nl = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *eol = strstr(line, "\r\n");
        size_t ll = eol ? (size_t)(eol - line) : strlen(line);
        if (ll > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t vl = ll - (size_t)(v - line);
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            return strndup(v, vl);
        }
        if (!eol)
            break;
        line = eol + 2;
    }
    return NULL;
}

/* A read buffer per socket would be cleaner, but tests read responses in order on one
 * connection at a time, so bytes past one response are kept here for the next call. */
struct pending {
    int fd;
    char *data;
    size_t len;
};
static struct pending pending_bytes = {-1, NULL, 0};

struct reader {
    sgt_recv_fn recv;
    void *ctx;
};

static int fill_from(const struct reader *rd, char **buf, size_t *len, size_t *cap)
{
    if (*cap - *len < 4096) {
        *cap = *cap * 2 + 4096;
        *buf = realloc(*buf, *cap);
        cr_assert(*buf);
    }
    ssize_t n = rd->recv(rd->ctx, *buf + *len, *cap - *len - 1);
    if (n <= 0)
        return -1;
    *len += (size_t)n;
    (*buf)[*len] = '\0';
    return 0;
}

static ssize_t recv_fd(void *ctx, void *buf, size_t cap)
{
    ssize_t n;
    do
        n = recv(*(int *)ctx, buf, cap, 0);
    while (n < 0 && errno == EINTR);
    return n;
}

int sgt_read_response(int fd, struct sgt_response *r)
{
    return sgt_read_response_with(fd, recv_fd, &fd, r);
}

int sgt_read_response_with(int fd, sgt_recv_fn recv_fn, void *ctx, struct sgt_response *r)
{
    const struct reader rd = {recv_fn, ctx};
    memset(r, 0, sizeof(*r));
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    cr_assert(buf);
    if (pending_bytes.fd == fd && pending_bytes.len) {
        if (pending_bytes.len + 1 > cap) {
            cap = pending_bytes.len + 4097;
            buf = realloc(buf, cap);
        }
        memcpy(buf, pending_bytes.data, pending_bytes.len);
        len = pending_bytes.len;
    }
    free(pending_bytes.data);
    pending_bytes = (struct pending){-1, NULL, 0};
    buf[len] = '\0';

    char *hend;
    for (;;) {
        /* Skip interim 1xx responses. */
        while ((hend = strstr(buf, "\r\n\r\n")) && strncmp(buf, "HTTP/1.1 1", 10) == 0) {
            size_t skip = (size_t)(hend + 4 - buf);
            memmove(buf, buf + skip, len - skip + 1);
            len -= skip;
        }
        if (hend)
            break;
        if (fill_from(&rd, &buf, &len, &cap) != 0) {
            free(buf);
            return -1;
        }
    }
    size_t hlen = (size_t)(hend - buf);
    if (sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
        free(buf);
        return -1;
    }
    const char *first_eol = strstr(buf, "\r\n");
    r->headers = strndup(first_eol + 2, hlen - (size_t)(first_eol + 2 - buf) + 2);
    size_t body_start = hlen + 4;
    char *te = sgt_header(r, "transfer-encoding");
    char *cl = sgt_header(r, "content-length");
    size_t consumed;
    if (te && strcasecmp(te, "chunked") == 0) {
        struct {
            char *d;
            size_t n;
        } body = {malloc(1), 0};
        size_t pos = body_start;
        for (;;) {
            char *eol;
            while (!(eol = strstr(buf + pos, "\r\n")))
                if (fill_from(&rd, &buf, &len, &cap) != 0)
                    goto fail;
            size_t sz = strtoul(buf + pos, NULL, 16);
            pos = (size_t)(eol + 2 - buf);
            while (len < pos + sz + 2)
                if (fill_from(&rd, &buf, &len, &cap) != 0)
                    goto fail;
            body.d = realloc(body.d, body.n + sz + 1);
            memcpy(body.d + body.n, buf + pos, sz);
            body.n += sz;
            pos += sz + 2;
            if (sz == 0)
                break;
        }
        body.d[body.n] = '\0';
        r->body = body.d;
        r->body_len = body.n;
        consumed = pos;
    } else {
        size_t want = cl ? strtoul(cl, NULL, 10) : 0;
        while (len < body_start + want)
            if (fill_from(&rd, &buf, &len, &cap) != 0)
                goto fail;
        r->body = strndup(buf + body_start, want);
        r->body_len = want;
        consumed = body_start + want;
    }
    if (len > consumed) {
        pending_bytes.fd = fd;
        pending_bytes.len = len - consumed;
        pending_bytes.data = malloc(pending_bytes.len);
        memcpy(pending_bytes.data, buf + consumed, pending_bytes.len);
    }
    free(te);
    free(cl);
    free(buf);
    return 0;
fail:
    free(te);
    free(cl);
    free(buf);
    sgt_response_free(r);
    return -1;
}

void sgt_http(const char *hostport, const char *method, const char *path, const char *extra_headers,
              const void *body, size_t body_len, struct sgt_response *r)
{
    int fd = sgt_connect(hostport);
    char head[8192];
    int n = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s",
                     method, path, hostport, extra_headers ? extra_headers : "");
    if (body)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
    cr_assert((size_t)n < sizeof(head));
    sgt_send_all(fd, head, (size_t)n);
    if (body && body_len)
        sgt_send_all(fd, body, body_len);
    cr_assert_eq(sgt_read_response(fd, r), 0, "no complete response to %s %s", method, path);
    if (pending_bytes.fd == fd) { /* the descriptor number will be reused */
        free(pending_bytes.data);
        pending_bytes = (struct pending){-1, NULL, 0};
    }
    close(fd);
}

void sgt_post(const char *hostport, const char *content_type, const char *body,
              struct sgt_response *r)
{
    char hdr[256];
    snprintf(hdr, sizeof(hdr), "Content-Type: %s\r\n", content_type);
    sgt_http(hostport, "POST", "/v1/events", hdr, body, strlen(body), r);
}

double sgt_metric_in(const char *text, const char *series)
{
    size_t sl = strlen(series);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, series, sl) == 0 && line[sl] == ' ')
            return strtod(line + sl + 1, NULL);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -1;
}

long sgt_rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

double sgt_metric(const char *hostport, const char *series)
{
    struct sgt_response r;
    sgt_http(hostport, "GET", "/metrics", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "/metrics answered %d", r.status);
    double v = sgt_metric_in(r.body, series);
    sgt_response_free(&r);
    return v;
}

double sgt_wait_metric(const char *hostport, const char *series, double want, int timeout_ms)
{
    int64_t deadline = sgt_mono_ms() + timeout_ms;
    double v;
    while ((v = sgt_metric(hostport, series)) != want && sgt_mono_ms() < deadline)
        sgt_sleep_ms(20);
    return v;
}

size_t sgt_wait_lines(const char *path, size_t lines, int timeout_ms)
{
    int64_t deadline = sgt_mono_ms() + timeout_ms;
    size_t count = 0;
    for (;;) {
        char *data = sgt_read_file(path, NULL);
        count = 0;
        for (const char *p = data; p && (p = strchr(p, '\n')); p++)
            count++;
        free(data);
        if (count >= lines || sgt_mono_ms() >= deadline)
            return count;
        sgt_sleep_ms(20);
    }
}

void *sgt_gzip(const void *in, size_t len, size_t *out_len)
{
    z_stream zs = {0};
    cr_assert_eq(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, len) + 64;
    unsigned char *out = malloc(cap);
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    cr_assert_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return out;
}
