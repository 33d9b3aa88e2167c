/* events.c -- online and offline events of a node that is alone.
 *
 * A uid whose last connection closed waits out the grace period in a list, oldest first
 * (every wait is as long, so that is also the order they end in) and in a map by uid; one
 * that comes back meanwhile leaves both without an event, so a page reload or a network
 * switch makes no offline/online pair. Events are queued and handed on from a zero-delay
 * timer, never inside the bind or close that caused them: the policy is not re-entered.
 *
 * Versions come from one counter for the node (next_version), so each uid's events carry
 * growing versions without a record per uid. */
#include "events.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <utlist.h>

#include <ev.h>

#include "container.h"
#include "hashkey.h"
#include "log.h"

/* A uid waiting out its grace (queue = 0), or an event waiting to be handed on (queue = 1). */
struct pending {
    UT_hash_handle hh; /* waiting: by uid */
    struct pending *prev, *next;
    ev_tstamp due;
    int online;
    uint64_t version;
    size_t len;
    char uid[];
};

struct uc_events {
    struct ev_loop *loop;
    double grace;
    uc_presence_event_fn *emit;
    void *arg;
    uint64_t version;         /* the last one given */
    struct pending *waiting;  /* by uid */
    struct pending *in_grace; /* oldest first */
    struct pending *queue;    /* events to hand on, in order */
    ev_timer grace_timer;     /* at the oldest wait's end */
    ev_timer hand_on;         /* zero-delay: empties the queue */
    int stopping;             /* a graceful stop began: no more waiting */
};

/* The next version after last: above it, and at least the clock in microseconds, so that
 * versions keep growing across restarts without being stored. */
static uint64_t next_version(uint64_t last)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t now = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    return now > last ? now : last + 1;
}

static void queue_event(struct uc_events *ev, const char *uid, size_t len, int online)
{
    struct pending *p = malloc(sizeof *p + len);
    if (!p) {
        uc_error("out of memory: the %s event of a uid is lost", online ? "online" : "offline");
        return;
    }
    *p = (struct pending){.online = online, .len = len};
    memcpy(p->uid, uid, len);
    p->version = ev->version = next_version(ev->version);
    DL_APPEND(ev->queue, p);
    if (!ev_is_active(&ev->hand_on)) {
        ev_timer_set(&ev->hand_on, 0., 0.);
        ev_timer_start(ev->loop, &ev->hand_on);
    }
}

static void hand_on_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct uc_events *ev = container_of(w, struct uc_events, hand_on);
    /* Events queued by a handler called here wait for the next round. */
    struct pending *batch = ev->queue, *p, *tmp;
    ev->queue = NULL;
    DL_FOREACH_SAFE(batch, p, tmp)
    {
        DL_DELETE(batch, p);
        ev->emit(p->uid, p->len, p->online, p->version, ev->arg);
        free(p);
    }
}

static void arm_grace(struct uc_events *ev)
{
    ev_timer_stop(ev->loop, &ev->grace_timer);
    if (!ev->in_grace)
        return;
    double wait = ev->in_grace->due - ev_now(ev->loop);
    ev_timer_set(&ev->grace_timer, wait > 0 ? wait : 0., 0.);
    ev_timer_start(ev->loop, &ev->grace_timer);
}

/* A wait ended (or is cut short): the uid is offline. */
static void end_wait(struct uc_events *ev, struct pending *p)
{
    HASH_DEL(ev->waiting, p);
    DL_DELETE(ev->in_grace, p);
    queue_event(ev, p->uid, p->len, 0);
    free(p);
}

static void grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct uc_events *ev = container_of(w, struct uc_events, grace_timer);
    while (ev->in_grace && ev->in_grace->due <= ev_now(loop))
        end_wait(ev, ev->in_grace);
    arm_grace(ev);
}

static void changed(void *ctx, const char *uid, size_t len, int here)
{
    struct uc_events *ev = ctx;
    struct pending *p;
    HASH_FIND(hh, ev->waiting, uid, len, p);
    if (here) {
        if (!p) {
            queue_event(ev, uid, len, 1);
            return;
        }
        /* Back within its grace: no event either way. */
        int was_first = p == ev->in_grace;
        HASH_DEL(ev->waiting, p);
        DL_DELETE(ev->in_grace, p);
        free(p);
        if (was_first)
            arm_grace(ev);
        return;
    }
    if (p) /* cannot be: it had no connection to lose */
        return;
    if (ev->stopping || !(p = malloc(sizeof *p + len))) {
        queue_event(ev, uid, len, 0); /* stopping, or no room to wait: offline at once */
        return;
    }
    *p = (struct pending){.due = ev_now(ev->loop) + ev->grace, .len = len};
    memcpy(p->uid, uid, len);
    HASH_ADD_KEYPTR(hh, ev->waiting, p->uid, len, p);
    DL_APPEND(ev->in_grace, p);
    if (p == ev->in_grace)
        arm_grace(ev);
}

struct uc_events *uc_events_new(struct ev_loop *loop, double grace, uc_presence_event_fn *emit,
                                void *arg)
{
    struct uc_events *ev = calloc(1, sizeof *ev);
    if (!ev)
        return NULL;
    *ev = (struct uc_events){.loop = loop, .grace = grace, .emit = emit, .arg = arg};
    ev_init(&ev->grace_timer, grace_cb);
    ev_init(&ev->hand_on, hand_on_cb);
    return ev;
}

struct uc_tracker uc_events_tracker(struct uc_events *ev)
{
    return (struct uc_tracker){.ctx = ev, .changed = changed};
}

/* A graceful stop: nobody will come back to this node, so the waits end now. */
static void stop(void *ctx)
{
    struct uc_events *ev = ctx;
    ev->stopping = 1;
    while (ev->in_grace)
        end_wait(ev, ev->in_grace);
    ev_timer_stop(ev->loop, &ev->grace_timer);
}

static void free_service(void *ctx) { uc_events_free(ctx); }

struct uc_service uc_events_service(struct uc_events *ev)
{
    return (struct uc_service){.ctx = ev, .stop = stop, .free = free_service};
}

void uc_events_free(struct uc_events *ev)
{
    if (!ev)
        return;
    ev_timer_stop(ev->loop, &ev->grace_timer);
    ev_timer_stop(ev->loop, &ev->hand_on);
    struct pending *p, *tmp;
    HASH_ITER(hh, ev->waiting, p, tmp)
    {
        HASH_DEL(ev->waiting, p);
        free(p);
    }
    DL_FOREACH_SAFE(ev->queue, p, tmp)
    {
        DL_DELETE(ev->queue, p);
        free(p);
    }
    free(ev);
}
