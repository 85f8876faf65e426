/* Event decoding alone: every line of an NDJSON file decoded by the gateway's decoder (the
 * flat-event scanner, with the tree decoder behind it) or by the tree decoder only. Prints one
 * JSON line: events, how many the scanner took, CPU seconds and events per CPU-second.
 *
 *   decode_bench FILE [--tree] [--passes N]
 *
 * The file is read into memory first; the clock covers only the decoding. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "streamgate/config.h"
#include "streamgate/event.h"

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t cap = 0, n = 0;

    if (!f)
        return NULL;
    for (;;) {
        if (n == cap) {
            char *grown = realloc(data, cap ? cap * 2 : 1 << 20);
            if (!grown) {
                free(data);
                fclose(f);
                return NULL;
            }
            data = grown;
            cap = cap ? cap * 2 : 1 << 20;
        }
        size_t got = fread(data + n, 1, cap - n, f);
        if (got == 0)
            break;
        n += got;
    }
    fclose(f);
    *len = n;
    return data;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    bool tree = false;
    long passes = 1;
    char err[256];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tree") == 0)
            tree = true;
        else if (strcmp(argv[i], "--passes") == 0 && i + 1 < argc)
            passes = strtol(argv[++i], NULL, 10);
        else if (!path && argv[i][0] != '-')
            path = argv[i];
        else {
            fprintf(stderr, "usage: decode_bench FILE [--tree] [--passes N]\n");
            return 2;
        }
    }
    if (!path || passes < 1) {
        fprintf(stderr, "usage: decode_bench FILE [--tree] [--passes N]\n");
        return 2;
    }
    size_t len = 0;
    char *data = read_all(path, &len);
    if (!data) {
        fprintf(stderr, "decode_bench: %s: %s\n", path, strerror(errno));
        return 1;
    }

    struct sg_config cfg;
    sg_config_defaults(&cfg);
    if (sg_config_validate(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "decode_bench: %s\n", err);
        return 1;
    }
    struct sg_event_decoder dec;
    sg_event_decoder_init(&dec, &cfg);
    static struct sg_event ev;
    enum sg_reject why;
    unsigned long long events = 0, flat = 0, rejected = 0;

    double t0 = cpu_seconds();
    for (long p = 0; p < passes; p++) {
        const char *line = data, *stop = data + len;
        while (line < stop) {
            const char *nl = memchr(line, '\n', (size_t)(stop - line));
            size_t n = nl ? (size_t)(nl - line) : (size_t)(stop - line);
            int rc = tree ? sg_event_decode_tree(&dec, line, n, 0, &ev, &why)
                          : sg_event_decode(&dec, line, n, 0, &ev, &why);
            events++;
            if (rc != 0)
                rejected++;
            else if (ev.flat)
                flat++;
            line += n + 1;
        }
    }
    double cpu = cpu_seconds() - t0;

    printf("{\"events\":%llu,\"flat\":%llu,\"rejected\":%llu,\"decoder\":\"%s\","
           "\"cpu_seconds\":%.3f,\"events_per_second\":%.0f,\"ns_per_event\":%.1f}\n",
           events, flat, rejected, tree ? "tree" : "flat", cpu, (double)events / cpu,
           cpu * 1e9 / (double)events);
    sg_event_decoder_free(&dec);
    sg_config_free(&cfg);
    free(data);
    return 0;
}
