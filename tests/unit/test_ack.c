/* The per-request group of ingest.ack delivered (src/ingest/ack.c): counting each event's
 * confirmations in any order, refused events, a waiter that lets go before the end, and the
 * budget charge going back to zero once the group is gone. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "../../src/ingest/ack.h"
#include "streamgate/budget.h"
#include "streamgate/log.h"
#include "streamgate/metrics.h"
#include "streamgate/sink.h"

static struct sg_metrics *metrics;
static struct sg_log log_;
static struct sg_budget *budget;
static int settled;
static struct sg_ack *settled_ack;

static void setup(void)
{
    metrics = sg_metrics_create();
    sg_log_init(&log_, SG_LOG_ERROR, stderr);
    budget = sg_budget_create(1 << 20, 70, 50, metrics, &log_);
    cr_assert_not_null(budget);
    settled = 0;
    settled_ack = NULL;
}

static void teardown(void)
{
    cr_assert_eq(sg_budget_used(budget), 0, "the budget still holds %zu bytes",
                 sg_budget_used(budget));
    sg_budget_destroy(budget);
    sg_metrics_destroy(metrics);
}

static void on_settled(void *arg, struct sg_ack *ack)
{
    (void)arg;
    settled++;
    settled_ack = ack;
}

TestSuite(ack, .init = setup, .fini = teardown);

Test(ack, settles_when_every_writer_confirmed_every_event)
{
    struct sg_ack *ack = sg_ack_create(budget);
    cr_assert_not_null(ack);
    struct sg_sink_done *d[3];
    for (int i = 0; i < 3; i++) {
        d[i] = sg_ack_event_begin(ack);
        cr_assert_not_null(d[i]);
        sg_ack_event_end(ack, d[i], 2, false); /* two writers took each */
    }
    cr_assert_gt(sg_budget_used_by(budget, SG_BUDGET_BODIES), 0);
    cr_assert(!sg_ack_seal(ack, on_settled, NULL));
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < 3; i++) {
            cr_assert_eq(settled, 0);
            d[i]->cb(d[i], !(w == 1 && i == 1)); /* the second writer fails event 1 */
        }
    cr_assert_eq(settled, 1);
    cr_assert_eq(settled_ack, ack);
    cr_assert_eq(sg_ack_accepted(ack), 3);
    cr_assert_eq(sg_ack_delivered(ack), 2);
    cr_assert_eq(sg_ack_failed(ack), 1);
    cr_assert_eq(sg_ack_pending(ack), 0);
    sg_ack_detach(ack);
}

Test(ack, confirmations_before_the_count_and_refused_events)
{
    struct sg_ack *ack = sg_ack_create(budget);
    /* A writer confirms inside the write, before the group knows how many took it. */
    struct sg_sink_done *a = sg_ack_event_begin(ack);
    a->cb(a, true);
    sg_ack_event_end(ack, a, 1, false);
    /* Refused by one writer, taken by another that confirms later: not accepted, but waited
     * for, since the writer still holds it. */
    struct sg_sink_done *b = sg_ack_event_begin(ack);
    sg_ack_event_end(ack, b, 1, true);
    /* Taken by nobody: nothing to wait for. */
    struct sg_sink_done *c = sg_ack_event_begin(ack);
    sg_ack_event_end(ack, c, 0, false);
    cr_assert(!sg_ack_seal(ack, on_settled, NULL));
    cr_assert_eq(sg_ack_pending(ack), 1);
    b->cb(b, true);
    cr_assert_eq(settled, 1);
    cr_assert_eq(sg_ack_accepted(ack), 2);
    cr_assert_eq(sg_ack_delivered(ack), 2);
    cr_assert_eq(sg_ack_failed(ack), 0);
    sg_ack_detach(ack);
}

Test(ack, sealed_settled_at_once_calls_nobody)
{
    struct sg_ack *ack = sg_ack_create(budget);
    struct sg_sink_done *a = sg_ack_event_begin(ack);
    a->cb(a, false);
    sg_ack_event_end(ack, a, 1, false);
    cr_assert(sg_ack_seal(ack, on_settled, NULL));
    cr_assert_eq(settled, 0);
    cr_assert_eq(sg_ack_failed(ack), 1);
    sg_ack_detach(ack);
}

Test(ack, a_detached_group_lives_until_its_last_confirmation)
{
    struct sg_ack *ack = sg_ack_create(budget);
    enum { N = 200 }; /* several blocks of entries */
    struct sg_sink_done *d[N];
    for (int i = 0; i < N; i++) {
        d[i] = sg_ack_event_begin(ack);
        sg_ack_event_end(ack, d[i], 1, false);
    }
    cr_assert(!sg_ack_seal(ack, on_settled, NULL));
    sg_ack_detach(ack); /* the waiter goes (an answer timed out, a connection closed) */
    cr_assert_gt(sg_budget_used(budget), 0);
    for (int i = 0; i < N; i++)
        d[i]->cb(d[i], true); /* the sanitizer build catches a write to freed memory */
    cr_assert_eq(settled, 0);
    /* teardown: the last confirmation freed the group and its charge */
}

Test(ack, detached_before_sealing)
{
    struct sg_ack *ack = sg_ack_create(budget);
    struct sg_sink_done *a = sg_ack_event_begin(ack);
    sg_ack_event_end(ack, a, 1, false);
    sg_ack_detach(ack);
    a->cb(a, true);
    cr_assert_eq(settled, 0);
    sg_ack_detach(NULL);
}
