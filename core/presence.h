/* presence.h -- "is this uid online, and on how many connections?" (see presence.c): the
 * questions waiting for their answer, owned by the server, which hands this the relay and a
 * way to count its own connections. */
#ifndef UC_PRESENCE_H
#define UC_PRESENCE_H

#include <ev.h>
#include <stddef.h>

#include "server.h"

struct uc_online_query;

struct uc_presence {
    struct ev_loop *loop;
    const struct uc_relay *relay; /* the server's; relay->online NULL when alone */
    /* This node's connections of uid. */
    size_t (*local_count)(void *ctx, const char *uid, size_t len);
    void *ctx;
    ev_timer due; /* never started: fed to answer local questions from the loop */
    struct uc_online_query *queries;
    int stopping;
};

void uc_presence_init(struct uc_presence *p, struct ev_loop *loop, const struct uc_relay *relay,
                      size_t (*local_count)(void *ctx, const char *uid, size_t len), void *ctx);
/* uc_online_query's work (server.h). Returns 0 or UC_ERR_NOMEM. */
int uc_presence_query(struct uc_presence *p, const char *uid, size_t uid_len, uc_online_fn *done,
                      void *arg);
/* At teardown: answers what this node would answer alone with -1; the broker's teardown
 * answers the questions asked of Redis. */
void uc_presence_cancel(struct uc_presence *p);

#endif
