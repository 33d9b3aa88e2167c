/* hub.h -- who receives what: the uid map, the group map and memberships, the broadcast log
 * with each member's catch-up, and delivery (a message framed once, its bytes shared by every
 * receiver's queue). It reaches a connection only through the sink it is given, and knows
 * nothing of sockets, the cluster or the policy.
 *
 * A member is a connection's part in the hub, embedded in the connection. Only open
 * connections are members of anything: a connection leaving OPEN leaves the hub at once, so a
 * delivery running now skips it.
 *
 * Broadcasts are logged, not delivered one by one: a broadcast is framed once and appended to
 * the log (of this loop iteration, or of every iteration a long fan-out takes: see conn.c); every
 * bound member queues what it is owed in one visit (uc_hub_flush_broadcasts, from the loop's
 * prepare watcher), or before anything else is queued to it (uc_hub_catch_up), so a member's
 * messages keep their order and N broadcasts cost one pass over the members instead of N.
 *
 * A numbered member (its connection speaks the uidcast.v1 subprotocol) gets every message
 * with a header in front of the payload: "<seq> " for a kept message, "- " for any other. A
 * kept message reaches it at most once: not when its number is at or below the last one it
 * got (last_seq), nor while it is resuming (its connection replays kept messages in order,
 * this one among them). */
#ifndef UC_HUB_H
#define UC_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "umap.h"

struct uc_membership;

struct uc_hub_sink {
    void *ctx;
    /* Queues frame (taking a reference) to the connection owner. Returns 0, or nonzero when
     * the owner was cut off instead; then it has left the hub from inside this call. */
    int (*queue)(void *ctx, void *owner, struct uc_buf *frame);
};

struct uc_hub_member {
    struct uc_umap_link uid_link; /* uid_link.owner is the connection */
    uint64_t bcast_seen;          /* the last broadcast queued to it, or not owed to it */
    struct uc_membership *groups; /* the groups it is in */
    unsigned ngroups;
    /* Set and cleared on every catch-up: a whole byte, not a bit to mask in and out. */
    uint8_t catching_up; /* queueing what it is owed: an overflow must not recurse */
    /* One-bit flags, so that they share ngroups' word (one member per connection). */
    uint8_t left : 1;          /* it left the hub: groups are answered from left_groups */
    uint8_t numbered : 1;      /* uidcast.v1: messages carry a header, kept ones a number */
    uint8_t resuming : 1;      /* replaying kept messages: live kept ones come that way */
    uint8_t resume_missed : 1; /* a live kept message was skipped while resuming: again */
    uint64_t last_seq;         /* the highest kept number queued to it (or that it said it saw) */
    /* The names of the groups it was in when it left, each a 2-byte length and the bytes, so
     * on_close can still say which rooms it left. Owned; NULL when it was in none. */
    uint8_t *left_groups;
    size_t left_groups_len;
};

struct uc_hub {
    struct uc_umap uids;               /* uid -> members */
    struct uc_umap groups;             /* group -> memberships */
    struct uc_membership *memberships; /* (owner, group) -> membership, for O(1) asks */
    struct uc_hub_sink sink;
    unsigned max_groups; /* groups one member may be in */
    /* This iteration's broadcasts, oldest first. Broadcast number n (counting from 1 since
     * start) is log[n - 1 - log_base]. */
    struct uc_buf **log;
    struct uc_buf **log_numbered; /* the same with the "- " header, made on first use */
    size_t log_n, log_cap;
    uint64_t log_base;
};

/* Sets up an empty hub delivering through sink (copied). */
void uc_hub_init(struct uc_hub *h, const struct uc_hub_sink *sink, unsigned max_groups);
/* Drops the log and the maps, leaving members dangling: only when tearing everything down. */
void uc_hub_free(struct uc_hub *h);

/* A fresh member for owner. */
void uc_hub_member_init(struct uc_hub_member *m, void *owner);
/* Frees what the member kept after leaving (the names of its groups). */
void uc_hub_member_free(struct uc_hub_member *m);

/* Binds m to uid (1..UC_UID_MAX bytes), leaving the uid it had: broadcasts logged before are
 * not its own. Returns 0, UC_ERR_INVALID or UC_ERR_NOMEM. */
int uc_hub_bind(struct uc_hub *h, struct uc_hub_member *m, const char *uid, size_t len);
/* Unbinds m, first queueing the broadcasts it was owed while bound. */
void uc_hub_unbind(struct uc_hub *h, struct uc_hub_member *m);
/* The uid m is bound to (or was, once it left), or NULL. */
const char *uc_hub_uid(const struct uc_hub_member *m, size_t *len);

/* Joins group (1..UC_UID_MAX bytes; a second join is a no-op). Returns 0, UC_ERR_INVALID,
 * UC_ERR_LIMIT (max_groups) or UC_ERR_NOMEM. */
int uc_hub_join(struct uc_hub *h, struct uc_hub_member *m, const char *group, size_t len);
/* Returns 1 when m was in group, else 0. */
int uc_hub_leave(struct uc_hub *h, struct uc_hub_member *m, const char *group, size_t len);
/* O(1) while m is a member; from the remembered names once it left. */
int uc_hub_in_group(const struct uc_hub *h, const struct uc_hub_member *m, const char *group,
                    size_t len);
void uc_hub_each_group(const struct uc_hub_member *m,
                       void (*fn)(const char *name, size_t len, void *ctx), void *ctx);

/* m leaves its uid and every group at once (its connection leaves OPEN), keeping the names of
 * its groups and its uid readable. Queue what it is owed first (uc_hub_catch_up). */
void uc_hub_leave_all(struct uc_hub *h, struct uc_hub_member *m);

/* Delivers data to every member bound to key (kind 'u': a uid, 'g': a group) but the one
 * whose owner is except (may be NULL). Returns how many it was queued to. */
size_t uc_hub_send(struct uc_hub *h, int kind, const char *key, size_t key_len, const void *data,
                   size_t len, int binary, const void *except);
/* Delivers kept message number seq to every member bound to uid: as is, or with its number
 * to numbered members that have not had it and are not resuming. Returns the count. */
size_t uc_hub_send_kept(struct uc_hub *h, const char *uid, size_t uid_len, const void *data,
                        size_t len, int binary, uint64_t seq);
/* A message framed for a member: as is, or for a numbered one behind its header (seq > 0:
 * kept, with that number). NULL when out of memory. */
struct uc_buf *uc_hub_frame(int numbered, uint64_t seq, const void *data, size_t len, int binary);
/* Logs a broadcast to every bound member but except (may be NULL). Returns how many it is for. */
size_t uc_hub_broadcast(struct uc_hub *h, const void *data, size_t len, int binary,
                        struct uc_hub_member *except);
/* Queues to m the logged broadcasts it has not had yet. */
void uc_hub_catch_up(struct uc_hub *h, struct uc_hub_member *m);
/* Every bound member queues what it is owed; then the log starts afresh. Returns 1 when there
 * was anything logged. */
int uc_hub_flush_broadcasts(struct uc_hub *h);
/* Whether broadcasts are logged and not yet handed to every member. */
int uc_hub_broadcasts_pending(const struct uc_hub *h);

/* Members bound to key (kind 'u' or 'g'). */
size_t uc_hub_count(const struct uc_hub *h, int kind, const char *key, size_t key_len);
/* Calls fn with the uid of each member of group that is bound to one: a uid once per
 * connection of it in the group (fn must not bind, join, leave or close). */
void uc_hub_each_group_uid(const struct uc_hub *h, const char *group, size_t len,
                           void (*fn)(const char *uid, size_t len, size_t one, void *ctx),
                           void *ctx);
/* Calls fn with the owner of each member bound to uid (fn must not bind, unbind or close). */
void uc_hub_each(const struct uc_hub *h, const char *uid, size_t len,
                 void (*fn)(void *owner, void *ctx), void *ctx);

#endif
