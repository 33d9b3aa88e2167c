/* presence.c -- "is this uid online, and on how many connections?" for the push API and the
 * policy. Alone, the node answers from its own uid map; in cluster mode it asks Redis, where
 * every node keeps its share (see broker.c), and falls back to its own count when Redis
 * cannot answer. Either way the answer comes later, from the loop, never inside the call:
 * callers are written once for both modes.
 *
 * Each pending query is owned by the list until answered; the server answers every one with
 * -1 ("no answer") when it is freed, so no caller waits forever or leaks. */
#include "presence.h"

#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "container.h"
#include "err.h"

struct uc_online_query {
    struct uc_presence *p;
    uc_online_fn *done;
    void *arg;
    int asked_redis;
    struct uc_online_query *prev, *next;
    size_t uid_len;
    char uid[];
};

static void answer(struct uc_online_query *q, long long count, int partial)
{
    DL_DELETE(q->p->queries, q);
    q->done(q->arg, count, partial);
    free(q);
}

static long long local(const struct uc_online_query *q)
{
    return (long long)q->p->local_count(q->p->ctx, q->uid, q->uid_len);
}

static void on_redis_answer(void *arg, long long count)
{
    struct uc_online_query *q = arg;
    if (count >= 0 || q->p->stopping)
        answer(q, count, 0);
    else /* Redis is down or did not answer in time: ours, said to be partial */
        answer(q, local(q), 1);
}

/* Answers queued since the last iteration; one added by a callback waits for the next. */
static void due_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct uc_presence *p = container_of(w, struct uc_presence, due);
    struct uc_online_query *q = p->queries, *next;
    for (; q; q = next) {
        next = q->next;
        if (!q->asked_redis)
            answer(q, local(q), p->relay->online != NULL);
    }
}

void uc_presence_init(struct uc_presence *p, struct ev_loop *loop, const struct uc_relay *relay,
                      size_t (*local_count)(void *ctx, const char *uid, size_t len), void *ctx)
{
    *p = (struct uc_presence){.loop = loop, .relay = relay, .local_count = local_count, .ctx = ctx};
    ev_init(&p->due, due_cb);
}

int uc_presence_query(struct uc_presence *p, const char *uid, size_t uid_len, uc_online_fn *done,
                      void *arg)
{
    struct uc_online_query *q = malloc(sizeof *q + uid_len);
    if (!q)
        return UC_ERR_NOMEM;
    *q = (struct uc_online_query){.p = p, .done = done, .arg = arg, .uid_len = uid_len};
    memcpy(q->uid, uid, uid_len);
    DL_PREPEND(p->queries, q);
    q->asked_redis =
        p->relay->online && p->relay->online(p->relay->ctx, uid, uid_len, on_redis_answer, q) == 0;
    if (!q->asked_redis)
        ev_feed_event(p->loop, &p->due, EV_CUSTOM);
    return 0;
}

void uc_presence_cancel(struct uc_presence *p)
{
    p->stopping = 1;
    struct uc_online_query *q = p->queries, *next;
    for (; q; q = next) {
        next = q->next;
        if (!q->asked_redis)
            answer(q, -1, 0);
    }
    /* The rest are answered (with -1) by the broker's teardown. */
}
