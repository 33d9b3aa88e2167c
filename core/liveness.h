/* liveness.h -- who was heard from when, and what silence costs: the list of live connections
 * ordered by when bytes last arrived (moving one to the end is O(1), so every read can afford
 * it), and the one sweep per tick that walks it from the quietest: handshakes past their
 * deadline, connections to ping, connections silent past --idle-timeout, codecs at rest to
 * release. It decides; the owner (conn.c) acts, through the actions it gives. */
#ifndef UC_LIVENESS_H
#define UC_LIVENESS_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

/* A connection's place in the list, embedded in the connection. */
struct uc_live_link {
    struct uc_live_link *prev, *next;
    /* When bytes last arrived, in seconds since the list began: a float keeps the link at 24
     * bytes (one per connection), and its precision (a millisecond after a day, a tenth of a
     * second after a year) is far below a sweep's tick. */
    float last_seen;
    uint8_t pinged; /* pinged since it was last heard from */
    uint8_t listed;
};

struct uc_liveness_actions {
    /* 1 while the connection is still upgrading (its deadline is --handshake-timeout). */
    int (*handshaking)(void *ctx, struct uc_live_link *l);
    void (*handshake_expired)(void *ctx, struct uc_live_link *l);
    /* Releases the connection's codec when it holds nothing; returns 1 when it did. */
    int (*rest)(void *ctx, struct uc_live_link *l);
    /* 1 while any connection holds a codec (then the sweep looks for ones at rest). */
    int (*holding)(void *ctx);
    void (*ping)(void *ctx, struct uc_live_link *l);
    void (*idle)(void *ctx, struct uc_live_link *l, double quiet);
};

struct uc_liveness {
    struct uc_live_link *head, *tail; /* quietest first */
    ev_tstamp epoch;                  /* last_seen counts from here */
    double ping_interval, idle_timeout, handshake_timeout;
    float grain; /* see uc_liveness_touch */
    const struct uc_liveness_actions *act;
    void *ctx;
};

void uc_liveness_init(struct uc_liveness *lv, ev_tstamp now, double ping_interval,
                      double idle_timeout, double handshake_timeout,
                      const struct uc_liveness_actions *act, void *ctx);
/* How often to sweep: a quarter of the shortest timeout, within 50 ms..0.5 s. The period bounds
 * how late a ping, an idle close or a handshake timeout may come. */
double uc_liveness_tick(const struct uc_liveness *lv);
/* Heard from now: to the end of the list (listing it the first time), no longer pinged.
 * Heard from again within a grain of its last move (an eighth of the shortest deadline, the
 * codec's rest included: at most 62 ms), unpinged, it keeps its place and its time. A busy
 * connection then does not write its list neighbours' cache lines on every message, and every
 * deadline stays within a grain of exact. */
void uc_liveness_touch(struct uc_liveness *lv, struct uc_live_link *l, ev_tstamp now);
/* Off the list (it closed); harmless when it was not on it. */
void uc_liveness_unlink(struct uc_liveness *lv, struct uc_live_link *l);
/* The sweep. An action may unlink the connection it is given, and only that one. Returns how
 * many codecs were released. */
size_t uc_liveness_sweep(struct uc_liveness *lv, ev_tstamp now);

#endif
