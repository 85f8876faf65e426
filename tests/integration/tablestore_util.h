/* Tablestore helpers for the integration tests: the emulator (streamgate-tablestore-emu, from
 * $SG_TSEMU_BINARY) in its own process, streamgate's flags to write to it, and the requests and
 * checks the Tablestore tests share. Each fails the test (cr_assert) on error. */
#ifndef STREAMGATE_TEST_TABLESTORE_UTIL_H
#define STREAMGATE_TEST_TABLESTORE_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "harness.h"

/* The emulator's instance and credentials, and the time the tests' events start at. */
#define INSTANCE "itinst"
#define AKID     "AKIDIT"
#define SECRET   "SecretIT/123+="
#define BASE_TS  INT64_C(1700000000000)
#define WINDOW   1000

struct emu {
    pid_t pid;
    char listen[64];   /* the address to listen on; empty: 127.0.0.1:0 */
    char endpoint[96]; /* http://127.0.0.1:PORT */
    char dir[256];     /* this test's scratch directory (also holds streamgate's files) */
    char log[300];
    char snapshot[300];
};

/* Makes the test's scratch directory (e->dir), once. */
void emu_dir(struct emu *e);
/* Starts the emulator with `extra` flags (NULL-terminated, may be NULL), its tables kept in
 * e->snapshot; fills e->endpoint. */
void emu_start(struct emu *e, const char *const *extra);
/* Stops the emulator (it saves its tables to the snapshot). */
void emu_halt(struct emu *e);
/* Stops the emulator and removes the scratch directory. */
void emu_stop(struct emu *e);

/* qsort's order of doubles, ascending. */
int cmp_double(const void *a, const void *b);

/* Stops streamgate like sgt_stop, but keeps its directory (and log) until remove_run_dir;
 * returns the exit status. */
int sgt_stop_keep(struct sgt_proc *p);
void remove_run_dir(struct sgt_proc *p);
/* Stops streamgate (any exit status) and checks that it reported no sanitizer error. */
void stop_no_sanitizer(struct sgt_proc *p);
/* True when the server's stderr holds `needle`. */
bool log_has(const struct sgt_proc *p, const char *needle);

/* Builds streamgate's argv to write to emulator e: the common flags (1 s windows, an hour of
 * lateness, quick retries), the endpoint, a secret file and a results file (paths written to
 * secret_path and results_path, 320 bytes each), then `extra`. */
void build_args(const char **argv, const struct emu *e, char *secret_path, char *results_path,
                const char *const *extra);

/* GET `path`; returns the parsed JSON body (the test fails when it is not JSON) and the status. */
cJSON *get_json(const char *http, const char *path, const char *headers, int *status);

/* Copies a history answer's next_page into `token` (empty when it is null, the last page). */
void next_page_token(const cJSON *doc, char *token, size_t size);

/* Runs streamgate-gen with `args` (a shell word list); returns its exit status and its stdout
 * and stderr in the files given. */
int gen_run(const char *args, const char *out, const char *err);

/* Paths in e->dir for a generator's run: expect.ndjson, gen.out and gen.err (400 bytes each). */
struct gen_files {
    char expect[400], out[400], err[400];
};

/* Sends 3000 events over 12 sensor keys (from BASE_TS, 7 ms apart, 1 s windows) through
 * streamgate-gen to gateway p with --expect, stops the gateway (its windows fire and are
 * written), and starts a fresh one with `argv` to read them back. */
void gen_store_run(struct sgt_proc *p, const char **argv, const struct emu *e, struct gen_files *g);

#endif
