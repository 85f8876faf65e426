/* One HTTP request's accepted events on their way to the writers (ingest.ack delivered): a
 * group that counts, per event, the confirmations of the writers that took it, and says once
 * every event is settled how many were written by every writer and how many failed in one.
 *
 * The group belongs to no connection: the request hands it to ingest, which gives each event's
 * `done` to the writers, then seals it and waits. Whoever waits may stop waiting (an answer
 * given on timeout, a connection gone) with sg_ack_detach; the group then lives on until its
 * last confirmation, so a writer never calls into freed memory, and frees itself. What it holds
 * (itself and its per-event entries) is charged to the memory budget as request state
 * (SG_BUDGET_BODIES). Loop thread only. */
#ifndef SG_INGEST_ACK_H
#define SG_INGEST_ACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sg_ack;
struct sg_budget;
struct sg_sink_done;

/* Told once, when the group is sealed and every event it took is settled. */
typedef void (*sg_ack_settled_cb)(void *arg, struct sg_ack *ack);

/* NULL when out of memory. `budget` may be NULL. */
struct sg_ack *sg_ack_create(struct sg_budget *budget);

/* The confirmation point of the next event: pass it to the writers, then tell the group how
 * many took it with sg_ack_event_end. NULL when out of memory (the event is then handed to the
 * writers unconfirmed and counted as failed). */
struct sg_sink_done *sg_ack_event_begin(struct sg_ack *ack);
/* `took` writers took `done` and each confirms it once (0: nothing to wait for, the event
 * counts as written); they may have confirmed already, before this is called. `refused`: a
 * writer refused the event, which is then rejected and not one of the request's accepted events
 * (those that took it still confirm it, and the group waits for them all the same). */
void sg_ack_event_end(struct sg_ack *ack, struct sg_sink_done *done, unsigned took, bool refused);

/* No more events. Returns true when every event is settled already (`cb` is then not called);
 * otherwise `cb(arg, ack)` comes once, from a writer's confirmation. */
bool sg_ack_seal(struct sg_ack *ack, sg_ack_settled_cb cb, void *arg);
/* The waiter lets go: no callback will come, and the group frees itself once settled (at once
 * when it is). Safe on NULL. */
void sg_ack_detach(struct sg_ack *ack);

/* Events handed to the writers (not refused), written by every writer that took them, failed in
 * at least one, and not settled yet. */
size_t sg_ack_accepted(const struct sg_ack *ack);
size_t sg_ack_delivered(const struct sg_ack *ack);
size_t sg_ack_failed(const struct sg_ack *ack);
size_t sg_ack_pending(const struct sg_ack *ack);
/* uv_hrtime() when the group was sealed. */
uint64_t sg_ack_sealed_ns(const struct sg_ack *ack);

#endif
