/* Command-line options: one table gives each option's name, type, default, place in struct
 * gen_opts and description; parsing, defaults and --help all come from it. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

enum gen_opt_type {
    GEN_OPT_STR,
    GEN_OPT_U64,
    GEN_OPT_I64,
    GEN_OPT_DBL,
    GEN_OPT_FLAG,
    GEN_OPT_DIST,
    GEN_OPT_SOURCE,
};

struct gen_opt {
    const char *name;
    enum gen_opt_type type;
    size_t off;
    const char *def; /* NULL: no default (unset) */
    const char *arg;
    const char *help;
};

#define O(f) offsetof(struct gen_opts, f)

static const struct gen_opt gen_opt_table[] = {
    {"http", GEN_OPT_STR, O(http_url), NULL, "URL",
     "Send events with POST to this URL, e.g. http://127.0.0.1:8080/v1/events."},
    {"tcp", GEN_OPT_STR, O(tcp_addr), NULL, "HOST:PORT", "Stream NDJSON to this TCP address."},
    {"file", GEN_OPT_STR, O(file_path), NULL, "PATH", "Write NDJSON to this file; - is stdout."},
    {"source", GEN_OPT_SOURCE, O(source), "sensors", "sensors|logs",
     "sensors: keys sensor-N, fields value, temp, humidity; logs: keys svc-N, fields level, "
     "latency_ms, bytes."},
    {"count", GEN_OPT_U64, O(count), "0", "N", "Events to send; 0 = until --duration or a signal."},
    {"duration", GEN_OPT_DBL, O(duration_s), "0", "SECONDS",
     "Stop making events after this long; 0 = no limit."},
    {"rate", GEN_OPT_DBL, O(rate), "0", "EVENTS/S", "Total event rate; 0 = as fast as possible."},
    {"keys", GEN_OPT_U64, O(keys), "100", "K", "Number of distinct keys."},
    {"dist", GEN_OPT_DIST, O(dist), "uniform", "uniform|zipf|round-robin",
     "How keys are drawn; round-robin takes them in turn, so every key has the same number of "
     "events in each window."},
    {"zipf-s", GEN_OPT_DBL, O(zipf_s), "1.1", "S", "Zipf exponent: key k is drawn ~ 1/(k+1)^S."},
    {"batch", GEN_OPT_U64, O(batch), "1", "B",
     "HTTP: events per request; 1 = a JSON object, more = a JSON array (or NDJSON)."},
    {"ndjson", GEN_OPT_FLAG, O(ndjson), NULL, NULL,
     "HTTP: send batches as application/x-ndjson instead of a JSON array."},
    {"connections", GEN_OPT_U64, O(connections), "1", "C",
     "Concurrent connections (HTTP: one request in flight each); a key always uses the same one."},
    {"token", GEN_OPT_STR, O(token), NULL, "TOKEN", "HTTP: send Authorization: Bearer TOKEN."},
    {"start-ts", GEN_OPT_I64, O(start_ts), NULL, "MS",
     "Event time of the first event, epoch ms; default now."},
    {"ts-step", GEN_OPT_I64, O(ts_step), "1", "MS",
     "Event-time advance per event; 0 = use the wall clock instead."},
    {"disorder", GEN_OPT_DBL, O(disorder), "0", "F",
     "Fraction of events whose event time moves back by 1..--max-delay ms."},
    {"max-delay", GEN_OPT_I64, O(max_delay_ms), "1000", "MS", "Largest disorder delay."},
    {"late", GEN_OPT_DBL, O(late), "0", "F",
     "Fraction of events made late: moved back beyond --lateness plus a window, behind what their "
     "connection already sent."},
    {"lateness", GEN_OPT_I64, O(lateness_ms), "0", "MS",
     "The server's window.allowed_lateness, for --late and --expect."},
    {"window-size", GEN_OPT_I64, O(window_size_ms), "10000", "MS",
     "The server's tumbling window.size, for --late and --expect."},
    {"expect", GEN_OPT_STR, O(expect_path), NULL, "PATH",
     "Write the exact per-key, per-window aggregates of what was acknowledged to PATH (with "
     "--check-results: read them from PATH)."},
    {"expect-values", GEN_OPT_U64, O(expect_values), "1000000", "N",
     "Also write every event's values of the --expect fields, sorted per key, to PATH.values "
     "(for --check-history's quantiles), for runs of up to N events (40 bytes each in memory); "
     "0 = never."},
    {"expect-fields", GEN_OPT_STR, O(expect_fields), NULL, "F1,F2",
     "Numeric fields in --expect (up to 4); default value (sensors) or latency_ms (logs)."},
    {"check-results", GEN_OPT_STR, O(check_results), NULL, "PATH",
     "Compare instead of generating: the window results in PATH (the server's "
     "--output-results-file) against --expect PATH, exactly (count, sum, min, max of each "
     "expected field); exit 0 when equal, 1 with the first differences on stderr."},
    {"check-history", GEN_OPT_STR, O(check_history), NULL, "URL",
     "Compare instead of generating: for each key of --expect PATH, the server at URL's roll-up "
     "of the key's stored windows over the run (GET /v1/history/{key}?rollup=true) against the "
     "expected windows folded together, exactly (count, sum, min, max of each expected "
     "field), and each quantile within 1% of the exact order statistic in PATH.values (quantiles "
     "without PATH.values are a difference); exit 0 when equal, 1 with the first differences on "
     "stderr."},
    {"distinct-precision", GEN_OPT_U64, O(distinct_precision), "12", "P",
     "--check-history: the gateway's window.distinct_precision; a roll-up's distinct (with "
     "window.distinct_field id, every event's id being unique) must be within three standard "
     "errors (3 x 1.04 / sqrt(2^P)) of the key's event count."},
    {"trend", GEN_OPT_DBL, O(trend), "0", "T",
     "sensors: replace value by a planted signal; each key drifts by 0.5 to 1.5 times T per "
     "window, up or down."},
    {"season", GEN_OPT_DBL, O(season), "0", "A",
     "sensors: add a per-key sine of amplitude A to the planted signal (period --period)."},
    {"period", GEN_OPT_U64, O(period), "24", "W", "The --season sine's period, in windows."},
    {"noise", GEN_OPT_DBL, O(noise), "0", "S",
     "sensors: add Gaussian noise of standard deviation S to every value of the signal."},
    {"anomaly-rate", GEN_OPT_DBL, O(anomaly_rate), "0", "P",
     "sensors: shift the values of this fraction of (key, window) pairs, recorded in --expect."},
    {"anomaly-size", GEN_OPT_DBL, O(anomaly_size), "6", "K",
     "The shift, in standard deviations of a window mean's noise (S / sqrt(events per key and "
     "window)), up or down."},
    {"anomaly-threshold", GEN_OPT_DBL, O(anomaly_threshold), "3.5", "T",
     "--check-results: the server's predict.anomaly_threshold, for precision and recall."},
    {"seed", GEN_OPT_U64, O(seed), "1", "N", "Seed: the same seed makes the same events."},
    {"retry", GEN_OPT_FLAG, O(retry), NULL, NULL,
     "HTTP: send a request answered 503/429 again after its Retry-After."},
    {"max-retries", GEN_OPT_U64, O(max_retries), "10", "N", "Most retries of one request."},
    {"quiet", GEN_OPT_FLAG, O(quiet), NULL, NULL, "No progress line and no summary on stderr."},
    {"json", GEN_OPT_FLAG, O(json), NULL, NULL, "Print a JSON summary on stdout at the end."},
};

#define GEN_NOPTS (sizeof(gen_opt_table) / sizeof(gen_opt_table[0]))

static void gen_opts__help(void)
{
    printf("Usage: streamgate-gen (--http URL | --tcp HOST:PORT | --file PATH) [OPTION]...\n"
           "       streamgate-gen --check-results RESULTS --expect EXPECT [--quiet] [--json]\n"
           "       streamgate-gen --check-history URL --expect EXPECT [--token T] [--quiet]\n\n"
           "Generates keyed JSON events (key, ts, seq, id, fields) and sends them to streamgate;\n"
           "counts what was sent and acknowledged; exits 0 only when every event was.\n"
           "With --check-results, compares a server's window results with an expectation\n"
           "instead: exits 0 when they match, 1 when they differ, 2 on a usage or read error.\n\n"
           "Options:\n");
    for (size_t i = 0; i < GEN_NOPTS; i++) {
        const struct gen_opt *op = &gen_opt_table[i];
        char lhs[64];
        snprintf(lhs, sizeof(lhs), "--%s%s%s", op->name, op->arg ? " " : "",
                 op->arg ? op->arg : "");
        printf("  %-28s %s", lhs, op->help);
        if (op->def && op->type != GEN_OPT_FLAG)
            printf(" (default: %s)", op->def);
        printf("\n");
    }
    printf("  %-28s %s\n", "--help, -h", "Print this help and exit.");
}

static int gen_opts__set(struct gen_opts *o, const struct gen_opt *op, const char *val,
                         char *errstr, size_t errstr_size)
{
    char *p = (char *)o + op->off;
    char *end = NULL;
    errno = 0;
    switch (op->type) {
    case GEN_OPT_STR: {
        char *s = strdup(val);
        if (!s)
            return -ENOMEM;
        free(*(char **)p);
        *(char **)p = s;
        return 0;
    }
    case GEN_OPT_U64: {
        if (*val == '-')
            break;
        uint64_t v = strtoull(val, &end, 10);
        if (errno || end == val || *end)
            break;
        *(uint64_t *)p = v;
        return 0;
    }
    case GEN_OPT_I64: {
        int64_t v = strtoll(val, &end, 10);
        if (errno || end == val || *end)
            break;
        *(int64_t *)p = v;
        return 0;
    }
    case GEN_OPT_DBL: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v) || v < 0)
            break;
        *(double *)p = v;
        return 0;
    }
    case GEN_OPT_FLAG:
        *(bool *)p = true;
        return 0;
    case GEN_OPT_DIST:
        if (strcmp(val, "uniform") == 0)
            *(enum gen_dist *)p = GEN_DIST_UNIFORM;
        else if (strcmp(val, "zipf") == 0)
            *(enum gen_dist *)p = GEN_DIST_ZIPF;
        else if (strcmp(val, "round-robin") == 0)
            *(enum gen_dist *)p = GEN_DIST_ROUND_ROBIN;
        else
            break;
        return 0;
    case GEN_OPT_SOURCE:
        if (strcmp(val, "sensors") == 0)
            *(enum gen_source_kind *)p = GEN_SOURCE_SENSORS;
        else if (strcmp(val, "logs") == 0)
            *(enum gen_source_kind *)p = GEN_SOURCE_LOGS;
        else
            break;
        return 0;
    }
    snprintf(errstr, errstr_size, "--%s: invalid value \"%s\" (expected %s)", op->name, val,
             op->arg ? op->arg : "no value");
    return -EINVAL;
}

static int gen_opts__check(struct gen_opts *o, char *errstr, size_t errstr_size)
{
    int targets = (o->http_url != NULL) + (o->tcp_addr != NULL) + (o->file_path != NULL);
    if (o->check_results || o->check_history) {
        if (targets != 0 || !o->expect_path || (o->check_results && o->check_history)) {
            snprintf(errstr, errstr_size,
                     "--check-results and --check-history compare: one of them, with --expect "
                     "and no --http, --tcp or --file");
            return -EINVAL;
        }
        return 0;
    }
    if (targets != 1) {
        snprintf(errstr, errstr_size, "exactly one of --http, --tcp or --file is required");
        return -EINVAL;
    }
    o->target = o->http_url ? GEN_TARGET_HTTP : o->tcp_addr ? GEN_TARGET_TCP : GEN_TARGET_FILE;
    if (o->keys < 1 || o->keys > UINT32_MAX - 1) {
        snprintf(errstr, errstr_size, "--keys must be between 1 and %u", UINT32_MAX - 1);
        return -EINVAL;
    }
    if (o->batch < 1 || o->batch > 100000) {
        snprintf(errstr, errstr_size, "--batch must be between 1 and 100000");
        return -EINVAL;
    }
    if (o->connections < 1 || o->connections > GEN_MAX_LANES) {
        snprintf(errstr, errstr_size, "--connections must be between 1 and %d", GEN_MAX_LANES);
        return -EINVAL;
    }
    if (o->disorder > 1 || o->late > 1 || o->disorder + o->late > 1) {
        snprintf(errstr, errstr_size,
                 "--disorder and --late are fractions that add up to at most 1");
        return -EINVAL;
    }
    if (o->max_delay_ms < 1 || o->lateness_ms < 0 || o->ts_step < 0) {
        snprintf(errstr, errstr_size,
                 "--max-delay must be at least 1, --lateness and --ts-step at least 0");
        return -EINVAL;
    }
    if (o->window_size_ms < 1) {
        snprintf(errstr, errstr_size, "--window-size must be at least 1 ms");
        return -EINVAL;
    }
    if (o->zipf_s <= 0) {
        snprintf(errstr, errstr_size, "--zipf-s must be above 0");
        return -EINVAL;
    }
    if (o->anomaly_rate > 1 || o->period < 1) {
        snprintf(errstr, errstr_size, "--anomaly-rate is a fraction; --period at least 1");
        return -EINVAL;
    }
    if ((o->trend > 0 || o->season > 0 || o->noise > 0 || o->anomaly_rate > 0) &&
        o->source != GEN_SOURCE_SENSORS) {
        snprintf(errstr, errstr_size,
                 "--trend, --season, --noise and --anomaly-rate plant a signal in the sensors' "
                 "value field: use --source sensors");
        return -EINVAL;
    }
    if (o->target == GEN_TARGET_FILE && o->connections != 1) {
        snprintf(errstr, errstr_size, "--file writes over one stream; --connections must be 1");
        return -EINVAL;
    }
    return 0;
}

int gen_opts_parse(struct gen_opts *o, int argc, char **argv, char *errstr, size_t errstr_size)
{
    int rc;
    memset(o, 0, sizeof(*o));
    for (size_t i = 0; i < GEN_NOPTS; i++) {
        const struct gen_opt *op = &gen_opt_table[i];
        if (op->def && op->type != GEN_OPT_FLAG &&
            (rc = gen_opts__set(o, op, op->def, errstr, errstr_size)) != 0)
            return rc;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            gen_opts__help();
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            snprintf(errstr, errstr_size, "unexpected argument \"%s\" (see --help)", a);
            return -EINVAL;
        }
        a += 2;
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        const struct gen_opt *op = NULL;
        for (size_t j = 0; j < GEN_NOPTS; j++)
            if (strlen(gen_opt_table[j].name) == nlen &&
                strncmp(gen_opt_table[j].name, a, nlen) == 0)
                op = &gen_opt_table[j];
        if (!op) {
            snprintf(errstr, errstr_size, "unknown option --%.*s (see --help)", (int)nlen, a);
            return -EINVAL;
        }
        const char *val;
        if (op->type == GEN_OPT_FLAG) {
            if (eq) {
                snprintf(errstr, errstr_size, "--%s takes no value", op->name);
                return -EINVAL;
            }
            val = "";
        } else if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            snprintf(errstr, errstr_size, "--%s needs a value (%s)", op->name, op->arg);
            return -EINVAL;
        }
        if ((rc = gen_opts__set(o, op, val, errstr, errstr_size)) != 0)
            return rc;
        if (op->off == offsetof(struct gen_opts, start_ts))
            o->start_ts_set = true;
    }
    return gen_opts__check(o, errstr, errstr_size);
}

void gen_opts_free(struct gen_opts *o)
{
    for (size_t i = 0; i < GEN_NOPTS; i++)
        if (gen_opt_table[i].type == GEN_OPT_STR) {
            char **p = (char **)((char *)o + gen_opt_table[i].off);
            free(*p);
            *p = NULL;
        }
}
