/* Tablestore helpers for the integration tests: the emulator (streamgate-tablestore-emu, from
 * $SG_TSEMU_BINARY) in its own process, streamgate's flags to write to it, and the requests and
 * checks the Tablestore tests share. */
#define _GNU_SOURCE
#include "tablestore_util.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* Makes the test's scratch directory, once. */
void emu_dir(struct emu *e)
{
    if (!e->dir[0]) {
        snprintf(e->dir, sizeof(e->dir), "/tmp/sg-tsit-XXXXXX");
        cr_assert(mkdtemp(e->dir), "mkdtemp: %s", strerror(errno));
        snprintf(e->log, sizeof(e->log), "%s/emu.log", e->dir);
        snprintf(e->snapshot, sizeof(e->snapshot), "%s/snapshot.jsonl", e->dir);
    }
}

void emu_start(struct emu *e, const char *const *extra)
{
    const char *bin = getenv("SG_TSEMU_BINARY");
    cr_assert(bin && *bin, "SG_TSEMU_BINARY is not set (run the tests through meson test)");
    const char *argv[32] = {bin,
                            "--listen",
                            e->listen[0] ? e->listen : "127.0.0.1:0",
                            "--instance",
                            INSTANCE,
                            "--access-key-id",
                            AKID,
                            "--access-key-secret",
                            SECRET};
    size_t argc = 9;
    char line[256];

    emu_dir(e);
    argv[argc++] = "--snapshot";
    argv[argc++] = e->snapshot;
    for (; extra && *extra; extra++)
        argv[argc++] = *extra;
    argv[argc] = NULL;
    e->pid = sgt_spawn_first_line(argv, e->log, line, sizeof(line));
    char addr[64];
    cr_assert(sscanf(line, "listening http://%63s instance=", addr) == 1, "line: %s", line);
    snprintf(e->endpoint, sizeof(e->endpoint), "http://%s", addr);
}

/* Stops the emulator (it saves its tables to the snapshot). */
void emu_halt(struct emu *e)
{
    int status = 0;
    if (e->pid > 0) {
        kill(e->pid, SIGTERM);
        waitpid(e->pid, &status, 0);
        e->pid = 0;
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "emulator exit status %d", status);
    }
}

void emu_stop(struct emu *e)
{
    emu_halt(e);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
    cr_assert_eq(system(cmd), 0);
}

int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The bytes of a BINARY cell as readback.js shows it ({"hex": ...}), into `out`. */
/* Stops streamgate like sgt_stop, but keeps its directory (and log) until remove_run_dir. */
int sgt_stop_keep(struct sgt_proc *p)
{
    int status = 0;
    cr_assert_eq(kill(p->pid, SIGTERM), 0);
    for (int i = 0; i < 3000; i++) {
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        sgt_sleep_ms(10);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    p->pid = 0;
    cr_assert_fail("streamgate did not exit within 30 s of SIGTERM");
    return -1;
}

void remove_run_dir(struct sgt_proc *p)
{
    p->pid = 0;
    sgt_stop(p); /* with pid 0: only removes the directory */
}

static const char *const common_args[] = {"--tablestore-instance",
                                          INSTANCE,
                                          "--tablestore-access-key-id",
                                          AKID,
                                          "--tablestore-create-tables",
                                          "true",
                                          "--window-size",
                                          "1s",
                                          "--window-allowed-lateness",
                                          "1h",
                                          "--window-idle-timeout",
                                          "1h",
                                          "--tablestore-retry-backoff",
                                          "10ms",
                                          "--tablestore-retry-backoff-max",
                                          "200ms",
                                          "--tablestore-max-retries",
                                          "30"};

/* Builds argv: the common flags, endpoint, secret file, results file, then `extra`. */
void build_args(const char **argv, const struct emu *e, char *secret_path, char *results_path,
                const char *const *extra)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof(common_args) / sizeof(common_args[0]); i++)
        argv[n++] = common_args[i];
    argv[n++] = "--tablestore-endpoint";
    argv[n++] = e->endpoint;
    snprintf(secret_path, 320, "%s/secret", e->dir);
    FILE *f = fopen(secret_path, "w");
    cr_assert(f);
    fputs(SECRET "\n", f);
    fclose(f);
    argv[n++] = "--tablestore-access-key-secret-file";
    argv[n++] = secret_path;
    snprintf(results_path, 320, "%s/results.ndjson", e->dir);
    argv[n++] = "--output-results-file";
    argv[n++] = results_path;
    for (; extra && *extra; extra++)
        argv[n++] = *extra;
    argv[n] = NULL;
}

/* True when the server's stderr holds `needle`. */
bool log_has(const struct sgt_proc *p, const char *needle)
{
    char *log = sgt_read_file(p->log_path, NULL);
    bool found = log && strstr(log, needle);
    free(log);
    return found;
}

/* Stops streamgate (any exit status) and checks that it reported no sanitizer error. */
void stop_no_sanitizer(struct sgt_proc *p)
{
    int rc = sgt_stop_keep(p);
    cr_expect(!log_has(p, "Sanitizer") && !log_has(p, "runtime error:"),
              "streamgate (exit %d) reported a sanitizer error", rc);
    remove_run_dir(p);
}

/* GET `path`; returns the parsed JSON body (the test fails when it is not JSON) and the status. */
cJSON *get_json(const char *http, const char *path, const char *headers, int *status)
{
    struct sgt_response r;
    sgt_http(http, "GET", path, headers, NULL, 0, &r);
    *status = r.status;
    cJSON *doc = cJSON_Parse(r.body);
    cr_assert(doc, "GET %s: not JSON: %s", path, r.body);
    sgt_response_free(&r);
    return doc;
}

/* Runs streamgate-gen with `args` (a shell word list); returns its exit status and its stdout
 * and stderr in the files given. */
int gen_run(const char *args, const char *out, const char *err)
{
    const char *bin = getenv("SG_GEN_BINARY");
    cr_assert(bin && *bin, "SG_GEN_BINARY is not set (run the tests through meson test)");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "'%s' %s >'%s' 2>'%s'", bin, args, out, err);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void next_page_token(const cJSON *doc, char *token, size_t size)
{
    const cJSON *next = cJSON_GetObjectItemCaseSensitive(doc, "next_page");
    token[0] = '\0';
    if (cJSON_IsString(next))
        snprintf(token, size, "%s", next->valuestring);
    else
        cr_assert(cJSON_IsNull(next), "next_page is neither a token nor null");
}

void gen_store_run(struct sgt_proc *p, const char **argv, const struct emu *e, struct gen_files *g)
{
    char args[2048];
    snprintf(g->expect, sizeof(g->expect), "%s/expect.ndjson", e->dir);
    snprintf(g->out, sizeof(g->out), "%s/gen.out", e->dir);
    snprintf(g->err, sizeof(g->err), "%s/gen.err", e->dir);
    snprintf(args, sizeof(args),
             "--http http://%s --count 3000 --keys 12 --start-ts %" PRId64
             " --ts-step 7 --window-size 1000 --lateness 3600000 --expect '%s' --quiet",
             p->http, BASE_TS, g->expect);
    cr_assert_eq(gen_run(args, g->out, g->err), 0, "gen: %s", sgt_read_file(g->err, NULL));
    cr_assert_eq(sgt_stop(p), 0); /* the windows fire and are written */
    sgt_start(p, argv, NULL);
}
