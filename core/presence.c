/* presence.c -- "is this uid online, and on how many connections?" for the push API and the
 * policy. Alone, the node answers from its own uid map; in cluster mode it asks Redis, where
 * every node keeps its share (see broker.c), and falls back to its own count when Redis
 * cannot answer. Either way the answer comes later, from the loop, never inside the call:
 * callers are written once for both modes.
 *
 * Each pending query is owned by the server's list until answered; the server answers every
 * one with -1 ("no answer") when it is freed, so no caller waits forever or leaks. */
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "core.h"

struct uc_online_query {
    struct uc_server *srv;
    uc_online_fn *done;
    void *arg;
    int asked_redis;
    struct uc_online_query *prev, *next;
    size_t uid_len;
    char uid[];
};

/* This node's connections of uid (each bound connection is one link of its entry). */
static long long local_count(const struct uc_server *srv, const char *uid, size_t len)
{
    const struct uc_umap_entry *u = uc_umap_find(&srv->hub.uids, uid, len);
    return u ? (long long)u->count : 0;
}

static void answer(struct uc_online_query *q, long long count, int partial)
{
    DL_DELETE(q->srv->online_queries, q);
    q->done(q->arg, count, partial);
    free(q);
}

static void on_redis_answer(void *arg, long long count)
{
    struct uc_online_query *q = arg;
    struct uc_server *srv = q->srv;
    if (count >= 0 || srv->tearing_down)
        answer(q, count, 0);
    else /* Redis is down or did not answer in time: ours, said to be partial */
        answer(q, local_count(srv, q->uid, q->uid_len), 1);
}

int uc_online_query(struct uc_server *srv, const char *uid, size_t uid_len, uc_online_fn *done,
                    void *arg)
{
    struct uc_online_query *q = malloc(sizeof *q + uid_len);
    if (!q)
        return UC_ERR_NOMEM;
    *q = (struct uc_online_query){.srv = srv, .done = done, .arg = arg, .uid_len = uid_len};
    memcpy(q->uid, uid, uid_len);
    DL_PREPEND(srv->online_queries, q);
    q->asked_redis = srv->relay.online &&
                     srv->relay.online(srv->relay.ctx, uid, uid_len, on_redis_answer, q) == 0;
    if (!q->asked_redis)
        ev_feed_event(srv->loop, &srv->online_due, EV_CUSTOM);
    return 0;
}

void uc_presence_answer_local(struct uc_server *srv)
{
    /* Answers queued since the last iteration; one added by a callback waits for the next. */
    struct uc_online_query *q = srv->online_queries, *next;
    for (; q; q = next) {
        next = q->next;
        if (!q->asked_redis)
            answer(q, local_count(srv, q->uid, q->uid_len), srv->relay.online != NULL);
    }
}

void uc_presence_cancel_local(struct uc_server *srv)
{
    struct uc_online_query *q = srv->online_queries, *next;
    for (; q; q = next) {
        next = q->next;
        if (!q->asked_redis)
            answer(q, -1, 0);
    }
    /* The rest are answered (with -1) by the broker's teardown. */
}
