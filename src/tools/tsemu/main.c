/* streamgate-tablestore-emu: the command line, signals and the loop. The options are one
 * table (name, kind, offset, help); parsing, --help and the required-option checks all come
 * from it. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "streamgate/common.h"
#include "tsemu.h"

enum opt_kind { OPT_STRING, OPT_FRACTION, OPT_U64, OPT_FLAG };

struct opt {
    const char *name;
    enum opt_kind kind;
    size_t offset;
    bool required;
    const char *arg;
    const char *help;
};

static const struct opt opts[] = {
    {"listen", OPT_STRING, offsetof(struct tsemu_config, listen), true, "HOST:PORT",
     "address to listen on; port 0 picks a free port"},
    {"instance", OPT_STRING, offsetof(struct tsemu_config, instance), true, "NAME",
     "instance name requests must carry (x-ots-instancename)"},
    {"access-key-id", OPT_STRING, offsetof(struct tsemu_config, access_key_id), true, "ID",
     "the one AccessKey ID accepted"},
    {"access-key-secret", OPT_STRING, offsetof(struct tsemu_config, access_key_secret), true,
     "SECRET", "its secret: requests must be signed with it; responses are signed with it"},
    {"snapshot", OPT_STRING, offsetof(struct tsemu_config, snapshot), false, "FILE",
     "load tables and rows from FILE at start (if it exists), write them at SIGTERM/SIGINT"},
    {"busy", OPT_FRACTION, offsetof(struct tsemu_config, busy), false, "F",
     "answer this fraction (0..1) of valid requests with 503 OTSServerBusy"},
    {"busy-rows", OPT_FRACTION, offsetof(struct tsemu_config, busy_rows), false, "F",
     "fail this fraction of BatchWriteRow rows with a per-row OTSServerBusy"},
    {"drop", OPT_FRACTION, offsetof(struct tsemu_config, drop), false, "F",
     "close the connection without answering for this fraction of requests"},
    {"latency", OPT_U64, offsetof(struct tsemu_config, latency), false, "MS",
     "delay every answer by MS milliseconds"},
    {"max-request-bytes", OPT_U64, offsetof(struct tsemu_config, max_request_bytes), false, "N",
     "answer a body larger than N bytes (read in full) with 413 OTSRequestBodyTooLarge, as "
     "the service does above 4 MB; for testing how a client splits its batches"},
    {"seed", OPT_U64, offsetof(struct tsemu_config, seed), false, "N",
     "seed for the fault draws (default 1): same seed, same faults"},
    {"index-lag", OPT_U64, offsetof(struct tsemu_config, index_lag), false, "MS",
     "apply main-table changes to global secondary indexes MS milliseconds later, as the "
     "service does asynchronously (default 0: at once; local indexes are always at once)"},
    {"verbose", OPT_FLAG, offsetof(struct tsemu_config, verbose), false, NULL,
     "log one line per request to stderr"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: streamgate-tablestore-emu --listen HOST:PORT --instance NAME "
               "--access-key-id ID --access-key-secret SECRET [options]\n\n"
               "A local Tablestore-compatible server for tests and demos.\n\n");
    for (size_t i = 0; i < SG_ARRAY_SIZE(opts); i++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s%s%s", opts[i].name, opts[i].arg ? " " : "",
                 opts[i].arg ? opts[i].arg : "");
        fprintf(f, "  %-28s %s%s\n", left, opts[i].help, opts[i].required ? " (required)" : "");
    }
    fprintf(f, "  %-28s %s\n  %-28s %s\n", "--help", "show this help", "--version",
            "show the version");
}

static int set_opt(struct tsemu_config *cfg, const struct opt *o, const char *value)
{
    void *field = (char *)cfg + o->offset;
    char *end;

    errno = 0;
    switch (o->kind) {
    case OPT_STRING:
        if (!*value)
            return -EINVAL;
        *(char **)field = (char *)value;
        return 0;
    case OPT_FRACTION: {
        double d = strtod(value, &end);
        if (errno || *end || end == value || !(d >= 0 && d <= 1))
            return -EINVAL;
        *(double *)field = d;
        return 0;
    }
    case OPT_U64: {
        unsigned long long u;
        if (value[0] == '-')
            return -EINVAL;
        u = strtoull(value, &end, 10);
        if (errno || *end || end == value)
            return -EINVAL;
        *(uint64_t *)field = u;
        return 0;
    }
    case OPT_FLAG:
        *(bool *)field = true;
        return 0;
    }
    return -EINVAL;
}

/* Returns 0 to run, 1 when --help/--version was answered, -EINVAL on a bad command line. */
static int parse_args(int argc, char **argv, struct tsemu_config *cfg)
{
    bool seen[SG_ARRAY_SIZE(opts)] = {false};

    memset(cfg, 0, sizeof(*cfg));
    cfg->seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *value = NULL, *eq;
        const struct opt *o = NULL;
        size_t nlen;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(a, "--version") == 0) {
            printf("streamgate-tablestore-emu %s\n", SG_VERSION);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "streamgate-tablestore-emu: unexpected argument '%s'\n", a);
            return -EINVAL;
        }
        a += 2;
        eq = strchr(a, '=');
        nlen = eq ? (size_t)(eq - a) : strlen(a);
        for (size_t k = 0; k < SG_ARRAY_SIZE(opts); k++) {
            if (strlen(opts[k].name) == nlen && strncmp(opts[k].name, a, nlen) == 0) {
                o = &opts[k];
                seen[k] = true;
            }
        }
        if (!o) {
            fprintf(stderr, "streamgate-tablestore-emu: unknown option '--%.*s'\n", (int)nlen, a);
            return -EINVAL;
        }
        if (o->kind == OPT_FLAG) {
            if (eq) {
                fprintf(stderr, "streamgate-tablestore-emu: --%s takes no value\n", o->name);
                return -EINVAL;
            }
        } else if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "streamgate-tablestore-emu: --%s needs %s\n", o->name, o->arg);
            return -EINVAL;
        }
        if (set_opt(cfg, o, value ? value : "") < 0) {
            fprintf(stderr, "streamgate-tablestore-emu: --%s: invalid value '%s'\n", o->name,
                    value ? value : "");
            return -EINVAL;
        }
    }
    for (size_t k = 0; k < SG_ARRAY_SIZE(opts); k++) {
        if (opts[k].required && !seen[k]) {
            fprintf(stderr, "streamgate-tablestore-emu: --%s is required (see --help)\n",
                    opts[k].name);
            return -EINVAL;
        }
    }
    if (strlen(cfg->instance) < SG_TS_INSTANCE_MIN_BYTES ||
        strlen(cfg->instance) > SG_TS_INSTANCE_MAX_BYTES) {
        fprintf(stderr, "streamgate-tablestore-emu: --instance must be %d to %d bytes\n",
                SG_TS_INSTANCE_MIN_BYTES, SG_TS_INSTANCE_MAX_BYTES);
        return -EINVAL;
    }
    return 0;
}

struct app {
    struct tsemu_server *srv;
    uv_signal_t sigterm;
    uv_signal_t sigint;
};

static void on_signal(uv_signal_t *sig, int signum)
{
    struct app *app = sig->data;

    tsemu_server_close(app->srv);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sigint, NULL);
}

int main(int argc, char **argv)
{
    struct tsemu_config cfg;
    struct app app = {0};
    char err[512] = "";
    uv_loop_t loop;
    int rc;

    rc = parse_args(argc, argv, &cfg);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    /* A peer that closes mid-write must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&loop) < 0) {
        fprintf(stderr, "streamgate-tablestore-emu: cannot start the event loop\n");
        return 1;
    }
    rc = tsemu_server_create(&app.srv, &loop, &cfg, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "streamgate-tablestore-emu: %s\n", err[0] ? err : uv_strerror(rc));
        tsemu_server_close(app.srv);
        uv_run(&loop, UV_RUN_DEFAULT);
        tsemu_server_destroy(app.srv);
        uv_loop_close(&loop);
        return 1;
    }
    uv_signal_init(&loop, &app.sigterm);
    uv_signal_init(&loop, &app.sigint);
    app.sigterm.data = app.sigint.data = &app;
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    uv_signal_start(&app.sigint, on_signal, SIGINT);

    printf("listening http://%s instance=%s\n", tsemu_server_address(app.srv), cfg.instance);
    fflush(stdout);

    uv_run(&loop, UV_RUN_DEFAULT);

    rc = tsemu_server_save(app.srv, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "streamgate-tablestore-emu: snapshot: %s\n", err);
    tsemu_server_destroy(app.srv);
    uv_loop_close(&loop);
    return rc < 0 ? 1 : 0;
}
