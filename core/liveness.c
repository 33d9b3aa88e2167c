/* liveness.c -- the list by last heard-from and its sweep (see liveness.h). */
#include "liveness.h"

/* Seconds after its last bytes that a connection at rest gives back its codec. */
#define REST_GRACE 0.5

static double min2(double a, double b) { return a < b ? a : b; }

static double shortest_timeout(const struct uc_liveness *lv)
{
    return min2(min2(lv->ping_interval, lv->idle_timeout), lv->handshake_timeout);
}

void uc_liveness_init(struct uc_liveness *lv, ev_tstamp now, double ping_interval,
                      double idle_timeout, double handshake_timeout,
                      const struct uc_liveness_actions *act, void *ctx)
{
    *lv = (struct uc_liveness){.epoch = now,
                               .ping_interval = ping_interval,
                               .idle_timeout = idle_timeout,
                               .handshake_timeout = handshake_timeout,
                               .act = act,
                               .ctx = ctx};
    lv->grain = (float)(min2(shortest_timeout(lv), REST_GRACE) / 8);
}

double uc_liveness_tick(const struct uc_liveness *lv)
{
    double tick = shortest_timeout(lv) / 4;
    return tick < 0.05 ? 0.05 : tick > 0.5 ? 0.5 : tick;
}

void uc_liveness_unlink(struct uc_liveness *lv, struct uc_live_link *l)
{
    if (!l->listed)
        return;
    if (l->prev)
        l->prev->next = l->next;
    else
        lv->head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    else
        lv->tail = l->prev;
    l->prev = l->next = NULL;
    l->listed = 0;
}

void uc_liveness_touch(struct uc_liveness *lv, struct uc_live_link *l, ev_tstamp now)
{
    float seen = (float)(now - lv->epoch);
    if (l->listed && !l->pinged && seen - l->last_seen < lv->grain)
        return;
    l->last_seen = seen;
    l->pinged = 0;
    if (lv->tail == l)
        return;
    uc_liveness_unlink(lv, l);
    l->prev = lv->tail;
    if (lv->tail)
        lv->tail->next = l;
    else
        lv->head = l;
    lv->tail = l;
    l->listed = 1;
}

size_t uc_liveness_sweep(struct uc_liveness *lv, ev_tstamp now)
{
    const struct uc_liveness_actions *act = lv->act;
    size_t released = 0;
    /* Quietest first: stop where nothing is old enough for any job. */
    double first_deadline =
        lv->ping_interval < lv->handshake_timeout ? lv->ping_interval : lv->handshake_timeout;
    for (struct uc_live_link *l = lv->head, *next; l; l = next) {
        double quiet = (now - lv->epoch) - (double)l->last_seen;
        if (quiet < first_deadline && (quiet < REST_GRACE || !act->holding(lv->ctx)))
            break;
        next = l->next; /* an action may unlink l, and only l */
        if (act->handshaking(lv->ctx, l)) {
            if (quiet >= lv->handshake_timeout)
                act->handshake_expired(lv->ctx, l);
            continue;
        }
        released += (size_t)act->rest(lv->ctx, l);
        if (quiet < lv->ping_interval)
            continue;
        if (quiet >= lv->idle_timeout) {
            act->idle(lv->ctx, l, quiet);
        } else if (!l->pinged) {
            l->pinged = 1;
            act->ping(lv->ctx, l);
        }
    }
    return released;
}
