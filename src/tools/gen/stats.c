/* Run statistics: a log-bucketed latency histogram (16 sub-buckets per power of two, so a
 * quantile is within about 6% of the true value), the progress line and the summaries. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <unistd.h>

#include "gen.h"

static unsigned gen_hist__bucket(uint64_t v)
{
    if (v < 16)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 4 */
    return (e - 3) * 16 + (unsigned)((v >> (e - 4)) & 15);
}

static uint64_t gen_hist__upper(unsigned b)
{
    if (b < 16)
        return b;
    unsigned e = b / 16 + 3, sub = b % 16;
    return ((16ULL + sub + 1) << (e - 4)) - 1;
}

void gen_hist_add(struct gen_hist *h, uint64_t us)
{
    h->buckets[gen_hist__bucket(us)]++;
    h->count++;
    if (us > h->max_us)
        h->max_us = us;
}

uint64_t gen_hist_quantile(const struct gen_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < GEN_HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            uint64_t up = gen_hist__upper(b);
            return up < h->max_us ? up : h->max_us;
        }
    }
    return h->max_us;
}

void gen_progress(struct gen_app *app, bool final_line)
{
    uint64_t now = uv_hrtime();
    const struct gen_stats *s = &app->stats;
    double dt = (double)(now - app->last_progress_ns) / 1e9;
    double rate = dt > 0 ? (double)(s->acked - app->last_progress_acked) / dt : 0;
    app->last_progress_ns = now;
    app->last_progress_acked = s->acked;
    fprintf(stderr,
            "\r%10.0f ev/s  sent %" PRIu64 "  acked %" PRIu64 "  rejected %" PRIu64
            "  pushback %" PRIu64 "  errors %" PRIu64,
            rate, s->sent, s->acked, s->rejected, s->pushback, s->errors);
    if (app->opts.target == GEN_TARGET_HTTP)
        fprintf(stderr, "  p50 %.2f ms  p99 %.2f ms",
                (double)gen_hist_quantile(&s->lat, 0.5) / 1000,
                (double)gen_hist_quantile(&s->lat, 0.99) / 1000);
    fprintf(stderr, "\033[K%s", final_line ? "\n" : "");
    fflush(stderr);
}

void gen_summary(struct gen_app *app, double elapsed_s)
{
    const struct gen_stats *s = &app->stats;
    double rate = elapsed_s > 0 ? (double)s->acked / elapsed_s : 0;
    double p50 = (double)gen_hist_quantile(&s->lat, 0.5) / 1000;
    double p99 = (double)gen_hist_quantile(&s->lat, 0.99) / 1000;
    double mx = (double)s->lat.max_us / 1000;
    if (!app->opts.quiet) {
        fprintf(stderr,
                "streamgate-gen: %" PRIu64 " events made, %" PRIu64 " sent, %" PRIu64
                " acknowledged, %" PRIu64 " rejected, %" PRIu64 " lost\n"
                "  %.3f s, %.0f events/s, %.1f MB written\n",
                s->generated, s->sent, s->acked, s->rejected, s->failed, elapsed_s, rate,
                (double)s->bytes / 1e6);
        if (app->opts.target == GEN_TARGET_HTTP)
            fprintf(stderr,
                    "  %" PRIu64 " requests, %" PRIu64 " pushback (503/429), %" PRIu64
                    " retried, %" PRIu64 " errors; latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                    s->requests, s->pushback, s->retried, s->errors, p50, p99, mx);
        else if (s->errors)
            fprintf(stderr, "  %" PRIu64 " errors\n", s->errors);
        if (app->fatal)
            fprintf(stderr, "  stopped: %s\n", app->fatal_msg);
    }
    if (app->opts.json) {
        printf("{\"sent\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"rejected\":%" PRIu64
               ",\"retried\":%" PRIu64 ",\"pushback\":%" PRIu64 ",\"errors\":%" PRIu64
               ",\"lost\":%" PRIu64 ",\"generated\":%" PRIu64 ",\"late\":%" PRIu64
               ",\"requests\":%" PRIu64 ",\"bytes\":%" PRIu64
               ",\"elapsed_s\":%.6f,\"rate\":%.1f,\"p50_ms\":%.3f,"
               "\"p99_ms\":%.3f,\"max_ms\":%.3f}\n",
               s->sent, s->acked, s->rejected, s->retried, s->pushback, s->errors, s->failed,
               s->generated, s->late, s->requests, s->bytes, elapsed_s, rate, p50, p99, mx);
        fflush(stdout);
    }
}
