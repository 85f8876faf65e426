/* Kafka helpers for the integration tests: a mock cluster in its own process (so a test can
 * take brokers down while the gateway runs) and topics read back with kcat, an independent
 * consumer speaking the real Kafka protocol. */
#include "kafka_util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define KCAT "/usr/bin/kcat"

static bool read_line_timeout(FILE *f, char *buf, size_t len, int timeout_ms)
{
    struct pollfd pfd = {.fd = fileno(f), .events = POLLIN};
    int r = poll(&pfd, 1, timeout_ms);
    if (r <= 0)
        return false;
    if (!fgets(buf, (int)len, f))
        return false;
    buf[strcspn(buf, "\r\n")] = '\0';
    return true;
}

void sgt_mock_start(struct sgt_mock *m, const char *partitions, const char *topics)
{
    const char *bin = getenv("SG_MOCK_KAFKA");
    cr_assert(bin && *bin, "SG_MOCK_KAFKA is not set");
    int to_child[2], from_child[2];
    cr_assert(pipe(to_child) == 0 && pipe(from_child) == 0, "pipe: %s", strerror(errno));
    m->pid = fork();
    cr_assert(m->pid >= 0, "fork: %s", strerror(errno));
    if (m->pid == 0) {
        /* A failed assertion exits the test without reaching mock_stop: the cluster must not
         * outlive it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(to_child[0], 0);
        dup2(from_child[1], 1);
        close(to_child[0]);
        close(to_child[1]);
        close(from_child[0]);
        close(from_child[1]);
        execl(bin, bin, "--brokers", "3", "--partitions", partitions, "--topics", topics,
              (char *)NULL);
        _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    m->in = fdopen(to_child[1], "w");
    m->out = fdopen(from_child[0], "r");
    cr_assert(m->in && m->out);
    /* Unbuffered, so poll() on the descriptor sees every line not yet read. */
    setvbuf(m->out, NULL, _IONBF, 0);
    char line[600];
    cr_assert(read_line_timeout(m->out, line, sizeof(line), 10000),
              "mock_kafka printed no bootstrap line");
    cr_assert(strncmp(line, "bootstrap=", 10) == 0, "unexpected first line: %s", line);
    cr_assert(strlen(line + 10) < sizeof(m->bootstrap), "bootstrap too long: %s", line);
    memcpy(m->bootstrap, line + 10, strlen(line + 10) + 1);
    cr_assert(strchr(m->bootstrap, ':'), "bootstrap: %s", m->bootstrap);
}

void sgt_mock_cmd(struct sgt_mock *m, const char *cmd)
{
    fprintf(m->in, "%s\n", cmd);
    fflush(m->in);
    char line[600];
    cr_assert(read_line_timeout(m->out, line, sizeof(line), 10000), "no answer to %s", cmd);
    cr_assert_str_eq(line, "ok", "mock_kafka answered %s to %s", line, cmd);
}

void sgt_mock_stop(struct sgt_mock *m)
{
    if (m->pid <= 0)
        return;
    kill(m->pid, SIGKILL);
    waitpid(m->pid, NULL, 0);
    m->pid = 0;
    if (m->in)
        fclose(m->in);
    if (m->out)
        fclose(m->out);
    m->in = m->out = NULL;
}

void sgt_recs_free(struct sgt_recs *r)
{
    free(r->v);
    free(r->text);
    memset(r, 0, sizeof(*r));
}

char *sgt_kcat_dump(const char *bootstrap, const char *topic, const char *format, unsigned alarm_s,
                    bool *ok)
{
    cr_assert(access(KCAT, X_OK) == 0, "kcat is required (Debian package kcat)");
    char tmpl[] = "/tmp/sgt-kcat-XXXXXX";
    int fd = mkstemp(tmpl);
    cr_assert(fd >= 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(alarm_s); /* an unreachable cluster must not hang the test */
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(fd, 1);
        execl(KCAT, KCAT, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f",
              format, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    close(fd);
    char *text = sgt_read_file(tmpl, NULL);
    unlink(tmpl);
    cr_assert(text);
    *ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    return text;
}

/* One pass of kcat over the whole topic: returns its stdout (malloc'd). */
static char *kcat_once(const char *bootstrap, const char *topic)
{
    bool ok;
    char *text = sgt_kcat_dump(bootstrap, topic, "%k\t%p\t%h\t%s\n", 30, &ok);
    if (!ok)
        cr_log_warn("kcat did not read to the end of %s", topic);
    return text;
}

static void parse_recs(char *text, struct sgt_recs *out)
{
    size_t lines = 0;
    for (const char *c = text; *c; c++)
        lines += *c == '\n';
    out->text = text;
    out->v = calloc(lines + 1, sizeof(*out->v));
    out->n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *f[4];
        int nf = 0;
        char *p = line;
        while (nf < 3) {
            char *tab = strchr(p, '\t');
            cr_assert(tab, "kcat line without 4 fields: %s", line);
            *tab = '\0';
            f[nf++] = p;
            p = tab + 1;
        }
        f[3] = p;
        struct sgt_rec *r = &out->v[out->n++];
        r->key = f[0];
        r->partition = atoi(f[1]);
        r->headers = f[2];
        r->value = f[3];
    }
}

void sgt_kcat_read(const char *bootstrap, const char *topic, size_t want, int timeout_ms,
                   struct sgt_recs *out)
{
    int64_t deadline = sgt_mono_ms() + timeout_ms;
    for (;;) {
        char *text = kcat_once(bootstrap, topic);
        memset(out, 0, sizeof(*out));
        parse_recs(text, out);
        if (out->n >= want || sgt_mono_ms() >= deadline)
            return;
        sgt_recs_free(out);
        sgt_sleep_ms(200);
    }
}

bool sgt_kafka_header(const char *headers, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    const char *p = headers;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t fl = end ? (size_t)(end - p) : strlen(p);
        if (fl > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t vl = fl - nl - 1;
            if (vl >= len)
                return false;
            memcpy(buf, p + nl + 1, vl);
            buf[vl] = '\0';
            return true;
        }
        p = end ? end + 1 : NULL;
    }
    return false;
}
