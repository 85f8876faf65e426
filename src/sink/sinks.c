/* The sink set: fan-out, readiness, drain and /v1/info for the writers of one process. */
#include "streamgate/sinks.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/buf.h"
#include "streamgate/sink.h"

struct sg_sinks {
    struct sg_sink *sink[SG_SINKS_MAX];
    size_t n;
    /* A drain in progress: writers still to call back (plus one while they are asked), and
     * whom to tell then. */
    size_t drain_pending;
    void (*drain_cb)(void *arg);
    void *drain_arg;
};

struct sg_sinks *sg_sinks_create(void)
{
    return calloc(1, sizeof(struct sg_sinks));
}

void sg_sinks_destroy(struct sg_sinks *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        s->sink[i]->ops->destroy(s->sink[i]);
    free(s);
}

int sg_sinks_add(struct sg_sinks *s, struct sg_sink *sink)
{
    if (s->n == SG_SINKS_MAX)
        return -ENOSPC;
    s->sink[s->n++] = sink;
    return 0;
}

size_t sg_sinks_count(const struct sg_sinks *s)
{
    return s->n;
}

bool sg_sinks_take_raw(const struct sg_sinks *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->sink[i]->ops->write_raw)
            return true;
    return false;
}

bool sg_sinks_take_results(const struct sg_sinks *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->sink[i]->ops->write_result)
            return true;
    return false;
}

bool sg_sinks_take_late(const struct sg_sinks *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->sink[i]->ops->write_late)
            return true;
    return false;
}

bool sg_sinks_results_numbers_only(const struct sg_sinks *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->sink[i]->ops->write_result && !s->sink[i]->ops->result_numbers_only)
            return false;
    return true;
}

/* Counts one writer's answer into the outcome; returns the set's code so far. */
static int sg_sinks__note(struct sg_sinks_outcome *o, const struct sg_sink *sink, int rc,
                          bool with_done)
{
    if (rc == 0) {
        o->took += with_done;
        return 0;
    }
    if (!o->failed) {
        o->failed = sink;
        o->err = rc;
    }
    return o->err;
}

int sg_sinks_write_raw(struct sg_sinks *s, const struct sg_event *ev, enum sg_transport transport,
                       int64_t received_ms, struct sg_sink_done *done, struct sg_sinks_outcome *out)
{
    struct sg_sinks_outcome o = {0};
    int rc = 0;
    for (size_t i = 0; i < s->n; i++) {
        struct sg_sink *sink = s->sink[i];
        if (sink->ops->write_raw) {
            int r = sink->ops->write_raw(sink, ev, transport, received_ms, done);
            rc = sg_sinks__note(&o, sink, r, done != NULL);
        }
    }
    if (out)
        *out = o;
    return rc;
}

int sg_sinks_write_result(struct sg_sinks *s, const struct sg_window_result *res,
                          struct sg_sink_done *done, struct sg_sinks_outcome *out)
{
    struct sg_sinks_outcome o = {0};
    int rc = 0;
    for (size_t i = 0; i < s->n; i++) {
        struct sg_sink *sink = s->sink[i];
        if (sink->ops->write_result) {
            int r = sink->ops->write_result(sink, res, done);
            rc = sg_sinks__note(&o, sink, r, done != NULL);
        }
    }
    if (out)
        *out = o;
    return rc;
}

void sg_sinks_write_late(struct sg_sinks *s, const struct sg_event *ev, int64_t window_end)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->sink[i]->ops->write_late)
            s->sink[i]->ops->write_late(s->sink[i], ev, window_end);
}

bool sg_sinks_ready(const struct sg_sinks *s)
{
    for (size_t i = 0; i < s->n; i++) {
        struct sg_sink *sink = s->sink[i];
        if (sink->ops->healthy && !sink->ops->healthy(sink))
            return false;
    }
    return true;
}

bool sg_sinks_accepting(const struct sg_sinks *s)
{
    for (size_t i = 0; i < s->n; i++) {
        struct sg_sink *sink = s->sink[i];
        if (sink->ops->write_raw && sink->ops->accepting && !sink->ops->accepting(sink))
            return false;
    }
    return true;
}

static void sg_sinks__drain_step(struct sg_sinks *s)
{
    if (--s->drain_pending > 0)
        return;
    void (*cb)(void *arg) = s->drain_cb;
    s->drain_cb = NULL;
    if (cb)
        cb(s->drain_arg);
}

static void sg_sinks__drained(struct sg_sink *sink, void *arg)
{
    (void)sink;
    sg_sinks__drain_step(arg);
}

void sg_sinks_drain(struct sg_sinks *s, void (*cb)(void *arg), void *arg)
{
    s->drain_cb = cb;
    s->drain_arg = arg;
    /* One extra count held while the loop below runs, so a writer that calls back from inside
     * drain() cannot finish the drain before every writer has been asked. */
    s->drain_pending = s->n + 1;
    for (size_t i = 0; i < s->n; i++) {
        struct sg_sink *sink = s->sink[i];
        if (sink->ops->drain)
            sink->ops->drain(sink, sg_sinks__drained, s);
        else
            s->drain_pending--;
    }
    sg_sinks__drain_step(s);
}

void sg_sinks_abandon(struct sg_sinks *s)
{
    s->drain_cb = NULL;
    for (size_t i = 0; i < s->n; i++)
        if (s->sink[i]->ops->abandon)
            s->sink[i]->ops->abandon(s->sink[i]);
}

int sg_sinks_render_info(const struct sg_sinks *s, const char *name, struct sg_buf *out)
{
    for (size_t i = 0; i < s->n; i++) {
        struct sg_sink *sink = s->sink[i];
        if (sink->ops->info && strcmp(sink->ops->name, name) == 0)
            return sink->ops->info(sink, out);
    }
    return sg_buf_append_str(out, "null");
}
