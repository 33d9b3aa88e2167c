/* roster.h -- "who is online?" and "who is in this group?", a page at a time (see roster.c):
 * the questions waiting for their answer, owned by the server, which hands this the relay and
 * a way to walk its own uids and group members. */
#ifndef UC_ROSTER_H
#define UC_ROSTER_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "server.h"

struct uc_roster_query;

/* Walks this node's uids (kind 'u', key ignored) or the uids of group key's members (kind 'g';
 * a uid once per connection in the group), calling fn(uid, len, connections, fn_ctx). */
typedef void uc_roster_walk_fn(void *ctx, int kind, const char *key, size_t key_len,
                               void (*fn)(const char *uid, size_t len, size_t connections,
                                          void *fn_ctx),
                               void *fn_ctx);

struct uc_roster {
    struct ev_loop *loop;
    const struct uc_relay *relay; /* the server's; relay->gather NULL when alone */
    uc_roster_walk_fn *walk;
    void *ctx;
    double timeout; /* how long other nodes' pages are waited for (--redis-timeout) */
    ev_timer due;   /* never started: fed to answer local questions from the loop */
    struct uc_roster_query *queries;
    uint64_t last_id;
};

void uc_roster_init(struct uc_roster *r, struct ev_loop *loop, const struct uc_relay *relay,
                    double timeout, uc_roster_walk_fn *walk, void *ctx);
/* uc_roster_query's work (server.h). Returns 0, UC_ERR_INVALID (limit) or UC_ERR_NOMEM. */
int uc_roster_query(struct uc_roster *r, int kind, const char *group, size_t group_len,
                    const struct uc_roster_cursor *cursor, size_t limit, uc_roster_fn *done,
                    void *arg);
/* Another node's request (uc_server_roster_request): answers it through relay->answer. */
void uc_roster_request(struct uc_roster *r, const char *node, size_t node_len, const void *req,
                       size_t len);
/* Another node's page for one of ours (uc_server_roster_answer). */
void uc_roster_answer(struct uc_roster *r, const void *data, size_t len);
/* At teardown: answers every question still waiting with a NULL page. */
void uc_roster_cancel(struct uc_roster *r);

#endif
