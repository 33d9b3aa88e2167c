/* broker.c -- the cluster engine on Redis pub/sub (see broker.h), on the server's own loop
 * through hiredis's libev adapter.
 *
 * Shards: each --redis URL is one shard, a Redis server (or a master that Redis Sentinel
 * names). A uid's channel, presence share, kept messages and online state, and a group's
 * channel, live on the shard of that uid or group (uc_redis_shard_of: the same on every node);
 * broadcasts and roster questions go through the first shard. Every guarantee below holds per
 * shard; a shard that is down costs only the keys that live on it.
 *
 * Two connections per shard: one subscribed (a subscribed Redis connection can do nothing
 * else), one for PUBLISH. A publication is "<node id (16 hex)><t|b><payload>" on
 * uidcast:u:<uid>, uidcast:g:<group> or uidcast:a, so payloads stay binary-safe and keep their
 * frame type, and a node recognises (and skips) its own echo: it already delivered locally.
 *
 * Presence: on each shard, each node keeps a hash uidcast:n:<node> (uid -> its local
 * connection count, for the uids of that shard) and its id in the set uidcast:nodes. The hash
 * expires --presence-ttl seconds after the node's last heartbeat (it beats every third of
 * that), so a node that dies without saying so drops out on its own; a query sums the uid over
 * the live nodes in one server-side script. Writes are absolute (HSET count, HDEL), so a lost
 * or repeated one cannot drift, and a reconnect writes the whole hash again.
 *
 * After a lost connection a shard takes publications again only once every live node has
 * subscribed again ("settled"): the last channel a node subscribes on a shard is its own
 * uidcast:r:<node>, so PUBSUB NUMSUB of it says its subscriptions are back. Which nodes are
 * live is what this node saw before the loss (the "peers": nodes whose channel was subscribed,
 * looked up at every heartbeat) together with what the Redis it reconnected to says: after a
 * failover the promoted replica may lack the last writes (replication is asynchronous), the
 * other nodes' registrations included. Until settled, publications are dropped and counted,
 * so a failover or a restart loses nothing uncounted to a node that reconnected later than
 * the publisher. */
#include "broker.h"

#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "container.h"
#include "log.h"
#include "redis_url.h"
#include "str.h"
#include "umap.h"

#define NODE_ID_LEN 16
#define BACKOFF_MIN 0.1
#define BACKOFF_MAX 5.0
/* Behind Sentinel a lost master is usually a failover: look for the new one sooner. */
#define BACKOFF_MAX_SENTINEL 1.0
#define SETTLE_EVERY 0.02
#define NODES_KEY "uidcast:nodes"
/* Roster questions go to every node on QUERY_CHANNEL; pages come back on ANSWER_PREFIX<node>. */
#define QUERY_CHANNEL "uidcast:q"
#define ANSWER_PREFIX "uidcast:r:"
#define ROSTER_REQUEST 'Q'
#define ROSTER_PAGE 'R'
/* A node that connected to a shard says so on HELLO_CHANNEL there: the others look up their
 * peers at once rather than at their next heartbeat. */
#define HELLO_CHANNEL "uidcast:h"
#define HELLO 'H'
/* Runs of unconfirmed SUBSCRIBEs a shard tells apart (more are merged: a login may wait a
 * little longer, never too little). */
#define RUNS 64

/* Sums ARGV[1]'s connections over the nodes in KEYS[1] whose presence hash still exists, and
 * forgets the nodes whose hash has expired (they died, or hold nobody and re-register). */
static const char online_script[] =
    "local total = 0\n"
    "for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  local key = 'uidcast:n:' .. node\n"
    "  local n = redis.call('HGET', key, ARGV[1])\n"
    "  if n then total = total + tonumber(n)\n"
    "  elseif redis.call('EXISTS', key) == 0 then redis.call('SREM', KEYS[1], node) end\n"
    "end\n"
    "return total\n";

/* Whether a node's channel ANSWER_PREFIX<node>, the one each subscribes last on a shard, is
 * subscribed: its subscriptions there are all in place. Shared by the two scripts below. */
#define SUBSCRIBED_FN                                                                              \
    "local function subscribed(node)\n"                                                            \
    "  return redis.call('PUBSUB', 'NUMSUB', '" ANSWER_PREFIX "' .. node)[2] > 0\n"                \
    "end\n"

/* The nodes in KEYS[1] that are subscribed: the peers to wait for after a lost connection. */
static const char peers_script[] =
    SUBSCRIBED_FN "local live = {}\n"
                  "for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
                  "  if subscribed(node) then live[#live + 1] = node end\n"
                  "end\n"
                  "return live\n";

/* 1 when every node of ARGV (the peers) and every node of KEYS[1] holding uids here (its
 * presence hash exists) is subscribed again; else 0. */
static const char settled_script[] = SUBSCRIBED_FN
    "for _, node in ipairs(ARGV) do\n"
    "  if not subscribed(node) then return 0 end\n"
    "end\n"
    "for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  if redis.call('EXISTS', 'uidcast:n:' .. node) == 1 and not subscribed(node) then\n"
    "    return 0\n"
    "  end\n"
    "end\n"
    "return 1\n";

struct shard {
    struct uc_broker *b;
    size_t index;
    struct uc_redis_url url;
    char label[420]; /* how logs name it: HOST:PORT, and the master's name behind Sentinel */
    redisAsyncContext *pub, *sub;
    redisAsyncContext *ask; /* the Sentinel asked where the master is, while asking */
    size_t next_sentinel;   /* the one to ask next */
    int pub_up, sub_up;
    int pub_ready, sub_ready; /* answered PING (ROLE behind Sentinel) after AUTH/SELECT */
    int lost;                 /* the publishing connection was up once: settle after it */
    int settled;              /* publications are taken (see the top of this file) */
    ev_tstamp settle_since;
    ev_timer settle;
    char *peers;              /* npeers node ids of NODE_ID_LEN, from peers_script; owned, freed */
    size_t npeers;            /* with the shard or replaced by the next answer */
    uint64_t conn_id;         /* this publishing connection's number, for uc_broker_connection */
    uint64_t presence_writes; /* whole rewrites of this node's presence hash here */
    size_t uids;              /* uids of this shard this node holds */
    size_t pending;           /* bytes of publications sent, not yet answered */
    ev_tstamp ping_sent;      /* when the unanswered PING went out, or 0 */
    /* The unconfirmed SUBSCRIBEs, in runs of consecutive numbers (see uc_broker's sub_asked):
     * Redis confirms them in order. */
    struct {
        uint64_t first, count;
    } runs[RUNS];
    size_t run_head, nruns;
    ev_tstamp sub_waiting_since; /* when confirmations fell behind, or 0 */
    int gap_open;                /* subscriptions were lost and are not all restored yet */
    ev_timer retry;
    double backoff;
};

struct uc_broker {
    struct uc_server *srv;
    struct ev_loop *loop;
    uint64_t published, received, dropped, gaps; /* the cluster_* counters */
    uint64_t connects;                           /* publishing connections made, numbering them */
    uint64_t sub_asked; /* SUBSCRIBEs sent on any shard, numbering them for held logins */
    double timeout;     /* --redis-timeout */
    size_t max_pending; /* --redis-max-pending, per shard */
    ev_timer watchdog;  /* pings each Redis; a missed answer means it is down */
    ev_timer heartbeat;
    int ttl; /* seconds, from --presence-ttl */
    int closing;
    ev_tstamp last_refusal_log;
    char node_id[NODE_ID_LEN + 1];
    char presence_key[NODE_ID_LEN + 16]; /* uidcast:n:<node id> */
    size_t nshards;
    struct shard shards[];
};

static void connect_missing(struct shard *s);
static void open_missing(struct shard *s);
static void ask_peers(struct shard *s);

static struct shard *shard_for(struct uc_broker *b, int kind, const char *key, size_t len)
{
    return &b->shards[kind == 'a' ? 0 : uc_redis_shard_of(key, len, b->nshards)];
}

static int sentinel_backed(const struct shard *s) { return s->url.nsentinels > 0; }

static void schedule_retry(struct shard *s)
{
    if (s->b->closing || ev_is_active(&s->retry))
        return;
    double max = sentinel_backed(s) ? BACKOFF_MAX_SENTINEL : BACKOFF_MAX;
    ev_timer_set(&s->retry, s->backoff, 0.);
    ev_timer_start(s->b->loop, &s->retry);
    s->backoff = s->backoff * 2 > max ? max : s->backoff * 2;
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    connect_missing(container_of(w, struct shard, retry));
}

static int channel_name(char *out, size_t cap, int kind, const char *key, size_t key_len)
{
    if (kind == 'a')
        return snprintf(out, cap, "uidcast:a");
    if (key_len + 16 > cap)
        return -1;
    int n = snprintf(out, cap, "uidcast:%c:", (char)kind);
    memcpy(out + n, key, key_len);
    return n + (int)key_len;
}

/* ---- subscriptions awaiting confirmation ---- */

/* Every SUBSCRIBE has a number, across shards; logins wait for the one their bind made. This
 * node has every subscription numbered up to the answer confirmed. */
static uint64_t confirmed(const struct uc_broker *b)
{
    uint64_t low = b->sub_asked;
    for (size_t i = 0; i < b->nshards; i++) {
        const struct shard *s = &b->shards[i];
        if (s->nruns && s->runs[s->run_head].first - 1 < low)
            low = s->runs[s->run_head].first - 1;
    }
    return low;
}

static void asked(struct shard *s)
{
    uint64_t n = ++s->b->sub_asked;
    if (s->nruns) {
        size_t last = (s->run_head + s->nruns - 1) % RUNS;
        if (s->runs[last].first + s->runs[last].count == n || s->nruns == RUNS) {
            s->runs[last].count++;
            return;
        }
    } else {
        s->sub_waiting_since = ev_now(s->b->loop);
    }
    size_t at = (s->run_head + s->nruns++) % RUNS;
    s->runs[at].first = n;
    s->runs[at].count = 1;
}

static uint64_t subscribing(void *ctx)
{
    struct uc_broker *b = ctx;
    for (size_t i = 0; i < b->nshards; i++)
        if (b->shards[i].sub_up && b->shards[i].nruns)
            return b->sub_asked;
    return 0;
}

/* ---- receiving ---- */

/* A SUBSCRIBE was confirmed: logins waiting for it may be acknowledged, and once every
 * subscription of a reconnect is back, the application hears of the gap. */
static void subscription_confirmed(struct shard *s)
{
    if (!s->nruns)
        return;
    if (--s->runs[s->run_head].count == 0) {
        s->run_head = (s->run_head + 1) % RUNS;
        s->nruns--;
    }
    s->sub_waiting_since = s->nruns ? ev_now(s->b->loop) : 0;
    uc_server_subscribed(s->b->srv, confirmed(s->b));
    if (s->gap_open && !s->nruns) {
        s->gap_open = 0;
        uc_info("cluster: subscriptions on redis %s restored", s->label);
        uc_server_cluster_gap(s->b->srv);
    }
}

/* A kept message: delivered from here on every node, this one too (see broker.h). */
static void deliver_kept(struct uc_broker *b, const redisReply *chan, const redisReply *msg,
                         int binary)
{
    const char *p = msg->str + NODE_ID_LEN + 1, *end = msg->str + msg->len;
    uint64_t seq = 0;
    while (p < end && *p >= '0' && *p <= '9')
        seq = seq * 10 + (uint64_t)(*p++ - '0');
    if (p == end || *p != ':' || !seq || chan->len <= 10 || chan->str[8] != 'u')
        return;
    p++;
    if (memcmp(msg->str, b->node_id, NODE_ID_LEN) != 0)
        b->received++;
    uc_server_deliver_kept(b->srv, chan->str + 10, chan->len - 10, p, (size_t)(end - p), binary,
                           seq);
}

/* A roster question (every node answers it, the asker with an empty page: it collected its
 * own uids directly, and the publication's receiver count included it), or a page for ours. */
static void roster_message(struct uc_broker *b, const redisReply *chan, const redisReply *msg,
                           char type)
{
    const char *payload = msg->str + NODE_ID_LEN + 1;
    size_t len = msg->len - NODE_ID_LEN - 1;
    int ours = memcmp(msg->str, b->node_id, NODE_ID_LEN) == 0;
    if (type == ROSTER_PAGE) {
        uc_server_roster_answer(b->srv, payload, len);
    } else if (!uc_str_eq(chan->str, chan->len, UC_LIT(QUERY_CHANNEL))) {
        return;
    } else if (!ours) {
        uc_server_roster_request(b->srv, msg->str, NODE_ID_LEN, payload, len);
    } else if (len >= 16) { /* the page of a question id, not more, and no uid */
        char empty[33];
        memcpy(empty, payload, 16);
        memset(empty + 16, '0', sizeof empty - 16);
        uc_server_roster_answer(b->srv, empty, sizeof empty);
    }
}

static void on_publication(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct shard *s = privdata;
    struct uc_broker *b = s->b;
    redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(reply->element[0]->str, "subscribe") == 0) {
        subscription_confirmed(s);
        return;
    }
    if (strcmp(reply->element[0]->str, "message") != 0)
        return; /* unsubscribe confirmations */
    const redisReply *chan = reply->element[1], *msg = reply->element[2];
    if (msg->len < NODE_ID_LEN + 1 || chan->len < 9)
        return;
    char type = msg->str[NODE_ID_LEN];
    if (type == UC_BROKER_KEPT_TEXT || type == UC_BROKER_KEPT_BINARY) {
        deliver_kept(b, chan, msg, type == UC_BROKER_KEPT_BINARY);
        return;
    }
    if (type == ROSTER_REQUEST || type == ROSTER_PAGE) {
        roster_message(b, chan, msg, type);
        return;
    }
    if (memcmp(msg->str, b->node_id, NODE_ID_LEN) == 0)
        return; /* our own publication: delivered locally already */
    if (type == HELLO) {
        ask_peers(s);
        return;
    }
    if (type == UC_UID_DISCONNECT || type == UC_UID_JOIN || type == UC_UID_LEAVE) {
        if (chan->len > 10 && chan->str[8] == 'u')
            uc_server_uid_command(b->srv, type, chan->str + 10, chan->len - 10,
                                  msg->str + NODE_ID_LEN + 1, msg->len - NODE_ID_LEN - 1);
        return;
    }
    int binary = type == 'b';
    const char *data = msg->str + NODE_ID_LEN + 1;
    size_t len = msg->len - NODE_ID_LEN - 1;
    char kind = chan->str[8];
    const char *key = chan->str + 10;
    size_t key_len = chan->len > 10 ? chan->len - 10 : 0;
    b->received++;
    uc_server_deliver_local(b->srv, kind, key, key_len, data, len, binary);
}

static void subscribe_raw(struct shard *s, const char *chan, size_t len)
{
    if (redisAsyncCommand(s->sub, on_publication, s, "SUBSCRIBE %b", chan, len) == REDIS_OK)
        asked(s);
}

static void subscribe(struct shard *s, int kind, const char *key, size_t key_len)
{
    char chan[UC_UID_MAX + 32];
    int n = channel_name(chan, sizeof chan, kind, key, key_len);
    if (n > 0 && s->sub_up)
        subscribe_raw(s, chan, (size_t)n);
    /* when down, the reconnect subscribes everything the maps hold */
}

static void unsubscribe(struct shard *s, int kind, const char *key, size_t key_len)
{
    char chan[UC_UID_MAX + 32];
    int n = channel_name(chan, sizeof chan, kind, key, key_len);
    if (n > 0 && s->sub_up)
        redisAsyncCommand(s->sub, NULL, NULL, "UNSUBSCRIBE %b", chan, (size_t)n);
}

static int ours(const struct shard *s, const char *key, size_t len)
{
    return uc_redis_shard_of(key, len, s->b->nshards) == s->index;
}

static void subscribe_uid(const char *key, size_t len, size_t count, void *ctx)
{
    (void)count;
    if (ours(ctx, key, len))
        subscribe(ctx, 'u', key, len);
}

static void subscribe_group(const char *key, size_t len, size_t count, void *ctx)
{
    (void)count;
    if (ours(ctx, key, len))
        subscribe(ctx, 'g', key, len);
}

/* Everything this node holds on the shard, and last its own channel, which other nodes look
 * at to know that all of this is subscribed (settled_script). */
static void subscribe_everything(struct shard *s)
{
    if (s->index == 0) {
        subscribe_raw(s, UC_LIT(QUERY_CHANNEL));
        subscribe_raw(s, UC_LIT("uidcast:a"));
    }
    subscribe_raw(s, UC_LIT(HELLO_CHANNEL));
    uc_server_each_key(s->b->srv, 'u', subscribe_uid, s);
    uc_server_each_key(s->b->srv, 'g', subscribe_group, s);
    char answers[sizeof ANSWER_PREFIX + NODE_ID_LEN];
    int n = snprintf(answers, sizeof answers, ANSWER_PREFIX "%s", s->b->node_id);
    subscribe_raw(s, answers, (size_t)n);
}

/* ---- presence ---- */

/* Lists the node and (re)starts its hash's TTL; expire_cb, when given, reads EXPIRE's answer. */
static void register_node(struct shard *s, redisCallbackFn *expire_cb)
{
    redisAsyncCommand(s->pub, NULL, NULL, "SADD " NODES_KEY " %s", s->b->node_id);
    redisAsyncCommand(s->pub, expire_cb, s, "EXPIRE %s %d", s->b->presence_key, s->b->ttl);
}

/* HSET pairs gathered for write_presence: one command per CHUNK uids. */
enum { CHUNK = 256 };
struct presence_batch {
    struct shard *s;
    const char *argv[2 + 2 * CHUNK];
    size_t argl[2 + 2 * CHUNK];
    char counts[CHUNK][24];
    int n;
};

static void batch_send(struct presence_batch *pb)
{
    if (pb->n)
        redisAsyncCommandArgv(pb->s->pub, NULL, NULL, 2 + 2 * pb->n, pb->argv, pb->argl);
    pb->n = 0;
}

static void batch_add(const char *uid, size_t len, size_t count, void *ctx)
{
    struct presence_batch *pb = ctx;
    if (!ours(pb->s, uid, len))
        return;
    int n = pb->n;
    pb->argv[2 + 2 * n] = uid;
    pb->argl[2 + 2 * n] = len;
    pb->argl[3 + 2 * n] = (size_t)snprintf(pb->counts[n], sizeof pb->counts[n], "%zu", count);
    pb->argv[3 + 2 * n] = pb->counts[n];
    if (++pb->n == CHUNK)
        batch_send(pb);
}

/* Writes this node's whole presence hash on the shard again: after a (re)connect, when Redis
 * may have lost it or missed changes. HSET takes many pairs per command. Written aside and
 * renamed over the old one, so that no other node sees the hash missing in between
 * (settled_script would not wait for this node). */
static void write_presence(struct shard *s)
{
    s->presence_writes++;
    const char *key = s->b->presence_key;
    struct presence_batch *pb = s->uids ? malloc(sizeof *pb) : NULL;
    if (!pb) {
        redisAsyncCommand(s->pub, NULL, NULL, "DEL %s", key);
    } else {
        char aside[sizeof s->b->presence_key + 2];
        snprintf(aside, sizeof aside, "%s:w", key);
        redisAsyncCommand(s->pub, NULL, NULL, "DEL %s", aside);
        pb->s = s;
        pb->n = 0;
        pb->argv[0] = "HSET";
        pb->argl[0] = 4;
        pb->argv[1] = aside;
        pb->argl[1] = strlen(aside);
        uc_server_each_key(s->b->srv, 'u', batch_add, pb);
        batch_send(pb);
        free(pb);
        redisAsyncCommand(s->pub, NULL, NULL, "RENAME %s %s", aside, key);
    }
    register_node(s, NULL);
}

static void presence_write(struct shard *s, const char *uid, size_t len, size_t count, int added)
{
    if (!s->pub_up || s->b->closing)
        return; /* the reconnect writes everything again */
    if (count == 0) {
        redisAsyncCommand(s->pub, NULL, NULL, "HDEL %s %b", s->b->presence_key, uid, len);
        return;
    }
    char n[24]; /* hiredis's format knows no %zu */
    snprintf(n, sizeof n, "%zu", count);
    redisAsyncCommand(s->pub, NULL, NULL, "HSET %s %b %s", s->b->presence_key, uid, len, n);
    /* The first uid creates the hash (the last one's HDEL deleted it, TTL included). */
    if (added && count == 1 && s->uids == 1)
        register_node(s, NULL);
}

static void key_count(void *ctx, int kind, const char *key, size_t key_len, size_t count, int added)
{
    struct shard *s = shard_for(ctx, kind, key, key_len);
    if (added && count == 1) {
        s->uids += kind == 'u';
        subscribe(s, kind, key, key_len);
    } else if (count == 0) {
        s->uids -= kind == 'u';
        unsubscribe(s, kind, key, key_len);
    }
    if (kind == 'u')
        presence_write(s, key, key_len, count, added);
}

static void on_heartbeat_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct shard *s = privdata;
    redisReply *reply = r;
    /* EXPIRE answers 0 when the hash is gone although this node holds uids here: Redis
     * restarted, or this node stalled past the TTL. Write it again. */
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0 && s->pub_up &&
        !s->b->closing && s->uids > 0) {
        uc_warn("cluster: this node's presence had expired in redis %s; writing it again",
                s->label);
        write_presence(s);
    }
}

static void heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct uc_broker *b = container_of(w, struct uc_broker, heartbeat);
    for (size_t i = 0; i < b->nshards; i++) {
        if (b->shards[i].pub_up)
            register_node(&b->shards[i], on_heartbeat_reply);
        ask_peers(&b->shards[i]);
    }
}

struct online_query {
    void (*done)(void *arg, long long count);
    void *arg;
};

static void on_online_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct online_query *q = privdata;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        uc_warn("cluster: presence query failed: %s", reply->str);
    q->done(q->arg, reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1);
    free(q);
}

static int online(void *ctx, const char *uid, size_t uid_len,
                  void (*done)(void *arg, long long count), void *arg)
{
    struct uc_broker *b = ctx;
    struct shard *s = shard_for(b, 'u', uid, uid_len);
    if (!s->pub_up || b->closing)
        return -1;
    struct online_query *q = malloc(sizeof *q);
    if (!q)
        return -1;
    q->done = done;
    q->arg = arg;
    if (redisAsyncCommand(s->pub, on_online_reply, q, "EVAL %s 1 " NODES_KEY " %b", online_script,
                          uid, uid_len) != REDIS_OK) {
        free(q);
        return -1;
    }
    return 0;
}

/* ---- rosters (through the first shard) ---- */

struct gather_wait {
    void (*receivers)(void *arg, uint64_t id, long long n);
    void *arg;
    uint64_t id;
};

static void on_gathered(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct gather_wait *g = privdata;
    redisReply *reply = r;
    g->receivers(g->arg, g->id, reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1);
    free(g);
}

/* PUBLISHes "<node id><type><data>" on chan, answering fn(privdata) when given. */
static int publish_raw(struct shard *s, const char *chan, size_t chan_len, char type,
                       const void *data, size_t len, redisCallbackFn *fn, void *privdata)
{
    char *msg = malloc(NODE_ID_LEN + 1 + len);
    if (!msg)
        return -1;
    memcpy(msg, s->b->node_id, NODE_ID_LEN);
    msg[NODE_ID_LEN] = type;
    memcpy(msg + NODE_ID_LEN + 1, data, len);
    int r = redisAsyncCommand(s->pub, fn, privdata, "PUBLISH %b %b", chan, chan_len, msg,
                              NODE_ID_LEN + 1 + len);
    free(msg);
    return r == REDIS_OK ? 0 : -1;
}

static int gather(void *ctx, const void *req, size_t len,
                  void (*receivers)(void *arg, uint64_t id, long long n), void *arg, uint64_t id)
{
    struct uc_broker *b = ctx;
    struct gather_wait *g;
    if (!b->shards[0].pub_up || b->closing || !(g = malloc(sizeof *g)))
        return -1;
    *g = (struct gather_wait){.receivers = receivers, .arg = arg, .id = id};
    if (publish_raw(&b->shards[0], UC_LIT(QUERY_CHANNEL), ROSTER_REQUEST, req, len, on_gathered,
                    g) != 0) {
        free(g);
        return -1;
    }
    return 0;
}

static void answer(void *ctx, const char *node, size_t node_len, const void *page, size_t len)
{
    struct uc_broker *b = ctx;
    char chan[sizeof ANSWER_PREFIX + NODE_ID_LEN];
    if (!b->shards[0].pub_up || b->closing || node_len != NODE_ID_LEN)
        return; /* the asker times out and says its page is partial */
    memcpy(chan, ANSWER_PREFIX, sizeof ANSWER_PREFIX - 1);
    memcpy(chan + sizeof ANSWER_PREFIX - 1, node, NODE_ID_LEN);
    publish_raw(&b->shards[0], chan, sizeof chan - 1, ROSTER_PAGE, page, len, NULL, NULL);
}

/* ---- publishing ---- */

/* Logs a refusal or a backlog at most once per BACKOFF_MAX: loud enough to be seen, never a
 * line per message. */
static void log_refusal(struct uc_broker *b, const char *what, const char *why)
{
    ev_tstamp now = ev_now(b->loop);
    if (b->last_refusal_log && now - b->last_refusal_log < BACKOFF_MAX)
        return;
    b->last_refusal_log = now;
    uc_error("cluster: %s: %s (counted in cluster_dropped)", what, why);
}

/* A publication counts as published only once Redis took it: an error (NOAUTH, OOM) or no
 * answer at all (the connection went down with it in flight) counts it as dropped. */
static void on_published(redisAsyncContext *ac, void *r, void *privdata)
{
    struct shard *s = ac->data;
    redisReply *reply = r;
    s->pending -= (size_t)(uintptr_t)privdata;
    if (reply && reply->type == REDIS_REPLY_INTEGER) {
        s->b->published++;
        return;
    }
    s->b->dropped++;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_refusal(s->b, "redis refused a publication", reply->str);
}

/* PUBLISHes "<node id><type><data>" on the channel of key, on its shard. */
static void publish_typed(struct uc_broker *b, int kind, const char *key, size_t key_len, char type,
                          const void *data, size_t len)
{
    char chan[UC_UID_MAX + 32];
    int n = channel_name(chan, sizeof chan, kind, key, key_len);
    if (n < 0)
        return;
    struct shard *s = shard_for(b, kind, key, key_len);
    /* What waits for Redis (hiredis's output buffer and the replies owed) is bounded: a frozen
     * or slow Redis costs dropped publications, never this node's memory, and draining a
     * bounded buffer stays cheap (hiredis 0.14 moves what is left after every write). */
    size_t cost = NODE_ID_LEN + 1 + len + (size_t)n + 32;
    if (!s->pub_up || !s->settled || s->pending + cost > b->max_pending) {
        b->dropped++;
        if (s->pub_up && s->settled)
            log_refusal(b, "publications waiting for redis passed --redis-max-pending",
                        "dropping until it catches up");
        return;
    }
    char *msg = malloc(NODE_ID_LEN + 1 + len);
    if (!msg) {
        b->dropped++;
        return;
    }
    memcpy(msg, b->node_id, NODE_ID_LEN);
    msg[NODE_ID_LEN] = type;
    if (len)
        memcpy(msg + NODE_ID_LEN + 1, data, len);
    if (redisAsyncCommand(s->pub, on_published, (void *)(uintptr_t)cost, "PUBLISH %b %b", chan,
                          (size_t)n, msg, NODE_ID_LEN + 1 + len) == REDIS_OK)
        s->pending += cost;
    else
        b->dropped++;
    free(msg);
}

static void publish(void *ctx, int kind, const char *key, size_t key_len, const void *data,
                    size_t len, int binary)
{
    publish_typed(ctx, kind, key, key_len, binary ? 'b' : 't', data, len);
}

/* A command on a uid's connections, for the other nodes to run on theirs (see broker.h). */
static void command(void *ctx, int op, const char *uid, size_t uid_len, const void *arg,
                    size_t arg_len)
{
    publish_typed(ctx, 'u', uid, uid_len, (char)op, arg, arg_len);
}

/* ---- settling after a lost connection ---- */

static void on_peers_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct shard *s = privdata;
    redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || s->b->closing)
        return;
    char *peers = malloc(reply->elements * NODE_ID_LEN + 1);
    if (!peers)
        return; /* the last list stays: waiting for a node too many is the safe side */
    size_t n = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type == REDIS_REPLY_STRING && e->len == NODE_ID_LEN)
            memcpy(peers + NODE_ID_LEN * n++, e->str, NODE_ID_LEN);
    }
    free(s->peers);
    s->peers = peers;
    s->npeers = n;
}

/* Looks up the peers again, on a settled connection (an unsettled one is what they are for). */
static void ask_peers(struct shard *s)
{
    if (s->pub_up && s->settled)
        redisAsyncCommand(s->pub, on_peers_reply, s, "EVAL %s 1 " NODES_KEY, peers_script);
}

static void ask_settled(struct shard *s);

static void on_settled_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct shard *s = privdata;
    redisReply *reply = r;
    if (!reply || s->b->closing || s->settled)
        return; /* the connection went: its next one settles again */
    int done = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
    double waited = ev_now(s->b->loop) - s->settle_since;
    if (!done && reply->type != REDIS_REPLY_ERROR && waited < s->b->ttl) {
        ev_timer_set(&s->settle, SETTLE_EVERY, 0.);
        ev_timer_start(s->b->loop, &s->settle);
        return;
    }
    s->settled = 1;
    ask_peers(s);
    if (done)
        uc_info("cluster: every node is subscribed again on redis %s after %.3f s; publishing",
                s->label, waited);
    else
        uc_warn("cluster: publishing on redis %s without waiting for every node (%s)", s->label,
                reply->type == REDIS_REPLY_ERROR ? reply->str : "one did not come back in time");
}

static void ask_settled(struct shard *s)
{
    if (!s->pub_up || s->settled)
        return;
    size_t argc = 4 + s->npeers;
    const char **argv = malloc(argc * sizeof *argv);
    size_t *argl = malloc(argc * sizeof *argl);
    int sent = 0;
    if (argv && argl) {
        argv[0] = "EVAL";
        argv[1] = settled_script;
        argv[2] = "1";
        argv[3] = NODES_KEY;
        for (size_t i = 0; i < 4; i++)
            argl[i] = strlen(argv[i]);
        for (size_t i = 0; i < s->npeers; i++) {
            argv[4 + i] = s->peers + i * NODE_ID_LEN;
            argl[4 + i] = NODE_ID_LEN;
        }
        sent =
            redisAsyncCommandArgv(s->pub, on_settled_reply, s, (int)argc, argv, argl) == REDIS_OK;
    }
    free(argv);
    free(argl);
    if (sent)
        return;
    ev_timer_set(&s->settle, SETTLE_EVERY, 0.); /* not sent: ask again */
    ev_timer_start(s->b->loop, &s->settle);
}

static void settle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ask_settled(container_of(w, struct shard, settle));
}

/* ---- connections ---- */

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct shard *s = ac->data;
    int is_sub = ac == s->sub;
    if (status != REDIS_OK) {
        uc_warn("redis %s: %s; retrying in %.1f s", s->label, ac->errstr, s->backoff);
        if (is_sub)
            s->sub = NULL;
        else
            s->pub = NULL;
        schedule_retry(s);
        return;
    }
    if (is_sub) {
        s->sub_up = 1;
        s->nruns = 0;
        subscribe_everything(s);
    } else {
        s->pub_up = 1;
        s->settled = !s->lost; /* a first connection publishes at once (queued behind AUTH) */
        s->conn_id = ++s->b->connects;
        write_presence(s);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct shard *s = ac->data;
    struct uc_broker *b = s->b;
    if (ac == s->sub) {
        /* Whatever other nodes publish from now until the subscriptions are back is lost to
         * this node: count the window, and tell the application once it is over. */
        if (s->sub_up && !b->closing) {
            b->gaps++;
            s->gap_open = 1;
            uc_warn("cluster: subscriptions on redis %s lost; messages from other nodes may be "
                    "missed until they are restored",
                    s->label);
        }
        s->sub = NULL;
        s->sub_up = s->sub_ready = 0;
        s->nruns = 0;
        s->sub_waiting_since = 0;
        if (!b->closing)
            uc_server_subscribed(b->srv, confirmed(b)); /* nothing to wait for here any more */
    } else {
        s->lost |= s->pub_up;
        s->pub = NULL;
        s->pub_up = s->pub_ready = s->settled = 0;
        s->ping_sent = 0;
        ev_timer_stop(b->loop, &s->settle);
    }
    if (b->closing)
        return;
    uc_log_event(UC_LOG_WARN, "cluster.lost", json_pack("{s:s}", "redis", s->label),
                 "cluster: lost redis %s; local delivery goes on, reconnecting", s->label);
    schedule_retry(s);
}

/* AUTH and SELECT: a refusal (wrong password, no such db) is an operator error worth a loud
 * line; the connection then fails its commands and the back-off retries. */
static void on_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct shard *s = privdata;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        uc_error("cluster: redis %s refused the set-up: %s", s->label, reply->str);
        redisAsyncDisconnect(ac);
    }
}

/* Behind Sentinel, whatever answers must still be the master: after a failover the old one
 * may come back as a replica, whose pub/sub reaches nobody else. */
static int not_master(const struct shard *s, const redisReply *reply)
{
    return sentinel_backed(s) && (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
                                  reply->element[0]->type != REDIS_REPLY_STRING ||
                                  strcmp(reply->element[0]->str, "master") != 0);
}

/* Answers once AUTH and SELECT went through: only then is the back-off reset. */
static void on_ready(redisAsyncContext *ac, void *r, void *privdata)
{
    struct shard *s = privdata;
    redisReply *reply = r;
    if (!reply || (ac->c.flags & REDIS_DISCONNECTING))
        return;
    if (reply->type == REDIS_REPLY_ERROR || not_master(s, reply)) {
        /* NOAUTH: Redis wants a password the URL does not give. Say so, once per retry. */
        uc_error("cluster: redis %s refused this node: %s", s->label,
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "it is not the master (yet)");
        redisAsyncDisconnect(ac);
        return;
    }
    if (ac == s->pub) {
        s->pub_ready = 1;
        if (!s->settled) {
            s->settle_since = ev_now(s->b->loop);
            ask_settled(s);
        }
    } else {
        s->sub_ready = 1;
    }
    if (s->pub_ready && s->sub_ready) {
        s->backoff = BACKOFF_MIN;
        /* Our channels are all subscribed now (this answer follows their confirmations) and
         * so is HELLO_CHANNEL: a node connecting at the same time is either in our look-up
         * or says hello after we listen. */
        ask_peers(s);
        publish_raw(s, UC_LIT(HELLO_CHANNEL), HELLO, "", 0, NULL, NULL);
        uc_log_event(UC_LOG_INFO, "cluster.connected",
                     json_pack("{s:s,s:s}", "redis", s->label, "node", s->b->node_id),
                     "cluster: connected to redis %s as node %s", s->label, s->b->node_id);
    }
}

/* ---- a Redis that stops answering ---- */

/* Frees one connection as if Redis had closed it: its waiting callbacks run with no reply
 * (publications count as dropped, presence questions get this node's count), and the
 * disconnect handler schedules the reconnect. Never from a callback of the connection. */
static void drop(struct shard *s, redisAsyncContext **slot)
{
    redisAsyncContext *ac = *slot;
    if (!ac)
        return;
    redisAsyncFree(ac); /* calls on_disconnect if it had connected */
    if (*slot == ac) {  /* it never had: clear it the same way */
        *slot = NULL;
        schedule_retry(s);
    }
}

static void on_pong(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)privdata;
    struct shard *s = ac->data;
    redisReply *reply = r;
    if (!reply)
        return;
    s->ping_sent = 0;
    if (not_master(s, reply) && !(ac->c.flags & REDIS_DISCONNECTING)) {
        uc_warn("cluster: redis %s is no longer the master; asking sentinel again", s->label);
        drop(s, &s->sub);
        redisAsyncDisconnect(ac);
    }
}

/* A paused, frozen or unreachable Redis closes nothing: without this, presence questions and
 * logins would wait on it for as long as it stalls. Every tick pings it; an answer later than
 * --redis-timeout (or a subscription not confirmed in that time) means it is down. */
static void watch_shard(struct shard *s, ev_tstamp now)
{
    double timeout = s->b->timeout;
    const char *why = NULL;
    /* Before blaming Redis, read what it may have sent while this process was the slow one
     * (a long loop iteration): the answer can be in the socket already. That can close it. */
    if (s->pub_up && s->ping_sent && now - s->ping_sent > timeout)
        redisAsyncHandleRead(s->pub);
    if (s->pub_up && s->ping_sent && now - s->ping_sent > timeout)
        why = "did not answer a PING";
    else if (s->sub_up && s->sub_waiting_since && now - s->sub_waiting_since > timeout)
        why = "did not confirm a subscription";
    if (why) {
        uc_warn("cluster: redis %s %s within %g s; treating it as down (local delivery goes on)",
                s->label, why, timeout);
        drop(s, &s->pub);
        drop(s, &s->sub);
        return;
    }
    if (s->pub_up && !s->ping_sent &&
        redisAsyncCommand(s->pub, on_pong, NULL, sentinel_backed(s) ? "ROLE" : "PING") == REDIS_OK)
        s->ping_sent = now;
}

static void watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct uc_broker *b = container_of(w, struct uc_broker, watchdog);
    for (size_t i = 0; i < b->nshards; i++)
        watch_shard(&b->shards[i], ev_now(loop));
}

static redisAsyncContext *open_one(struct shard *s, int is_pub)
{
    const struct uc_redis_url *u = &s->url;
    redisAsyncContext *ac = redisAsyncConnect(u->server.host, u->server.port);
    if (!ac || ac->err) {
        uc_warn("redis %s: %s", s->label, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return NULL;
    }
    ac->data = s;
    redisLibevAttach(s->b->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (u->user)
        redisAsyncCommand(ac, on_setup_reply, s, "AUTH %s %s", u->user, u->password);
    else if (u->password)
        redisAsyncCommand(ac, on_setup_reply, s, "AUTH %s", u->password);
    if (u->db && is_pub)
        redisAsyncCommand(ac, on_setup_reply, s, "SELECT %ld", u->db);
    redisAsyncCommand(ac, on_ready, s, sentinel_backed(s) ? "ROLE" : "PING");
    return ac;
}

static void set_label(struct shard *s)
{
    const struct uc_redis_url *u = &s->url;
    const char *v6 = strchr(u->server.host, ':') ? "[" : "";
    if (sentinel_backed(s))
        snprintf(s->label, sizeof s->label, "%s%s%s:%d (master %s)", v6, u->server.host,
                 *v6 ? "]" : "", u->server.port, u->master);
    else
        snprintf(s->label, sizeof s->label, "%s%s%s:%d", v6, u->server.host, *v6 ? "]" : "",
                 u->server.port);
}

/* ---- where the master is, behind Sentinel ---- */

static void on_master(redisAsyncContext *ac, void *r, void *privdata)
{
    struct shard *s = privdata;
    redisReply *reply = r;
    if (!reply || s->b->closing)
        return; /* not connected, or gone before answering: on_sentinel_* retry */
    const struct uc_redis_addr *asked_at = &s->url.sentinels[s->next_sentinel % s->url.nsentinels];
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_STRING &&
        reply->element[0]->len < sizeof s->url.server.host) {
        struct uc_redis_addr *m = &s->url.server;
        int port = atoi(reply->element[1]->str);
        if (strcmp(m->host, reply->element[0]->str) != 0 || m->port != port) {
            snprintf(m->host, sizeof m->host, "%s", reply->element[0]->str);
            m->port = port;
            set_label(s);
            uc_info("cluster: sentinel %s:%d says master %s is %s", asked_at->host, asked_at->port,
                    s->url.master, s->label);
        }
        redisAsyncDisconnect(ac);
        open_missing(s);
        return;
    }
    uc_warn("cluster: sentinel %s:%d does not know master %s (%s); retrying in %.1f s",
            asked_at->host, asked_at->port, s->url.master,
            reply->type == REDIS_REPLY_ERROR ? reply->str : "no such master", s->backoff);
    s->next_sentinel++;
    redisAsyncDisconnect(ac);
    schedule_retry(s);
}

static void on_sentinel_connect(const redisAsyncContext *ac, int status)
{
    struct shard *s = ac->data;
    if (status == REDIS_OK)
        return;
    const struct uc_redis_addr *a = &s->url.sentinels[s->next_sentinel % s->url.nsentinels];
    uc_warn("cluster: sentinel %s:%d: %s; retrying in %.1f s", a->host, a->port, ac->errstr,
            s->backoff);
    s->ask = NULL;
    s->next_sentinel++;
    schedule_retry(s);
}

static void on_sentinel_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct shard *s = ac->data;
    s->ask = NULL;
    if (!s->b->closing && !s->pub && !s->sub)
        schedule_retry(s); /* it closed before answering */
}

/* Asks a Sentinel (each in turn, one per attempt) where the master is now; the answer opens
 * the connections to it. */
static void ask_sentinel(struct shard *s)
{
    if (s->ask)
        return;
    const struct uc_redis_addr *a = &s->url.sentinels[s->next_sentinel % s->url.nsentinels];
    redisAsyncContext *ac = redisAsyncConnect(a->host, a->port);
    if (!ac || ac->err) {
        uc_warn("cluster: sentinel %s:%d: %s", a->host, a->port, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        s->next_sentinel++;
        schedule_retry(s);
        return;
    }
    ac->data = s;
    redisLibevAttach(s->b->loop, ac);
    redisAsyncSetConnectCallback(ac, on_sentinel_connect);
    redisAsyncSetDisconnectCallback(ac, on_sentinel_disconnect);
    redisAsyncCommand(ac, on_master, s, "SENTINEL get-master-addr-by-name %s", s->url.master);
    s->ask = ac;
}

static void open_missing(struct shard *s)
{
    if (!s->pub)
        s->pub = open_one(s, 1);
    if (!s->sub)
        s->sub = open_one(s, 0);
    if (!s->pub || !s->sub)
        schedule_retry(s);
}

static void connect_missing(struct shard *s)
{
    if (s->b->closing)
        return;
    if (sentinel_backed(s) && !s->pub && !s->sub)
        ask_sentinel(s); /* both connections gone: the master may have moved */
    else
        open_missing(s);
}

/* ---- the broker ---- */

/* Calls fn(url, len, arg) for each white-space separated URL of values, in order, until it
 * returns nonzero; returns how many it was called for. */
static size_t each_url(const char *const *values, size_t n, int (*fn)(const char *, size_t, void *),
                       void *arg)
{
    size_t count = 0, len;
    for (size_t v = 0; v < n; v++) {
        for (const char *p = values[v], *url; (url = uc_redis_url_next(&p, &len));) {
            count++;
            if (fn && fn(url, len, arg))
                return count;
        }
    }
    return count;
}

struct parsing {
    struct uc_broker *b;
    char *err;
    size_t err_size;
    int failed;
};

static int parse_shard(const char *url, size_t len, void *arg)
{
    struct parsing *ps = arg;
    struct shard *s = &ps->b->shards[ps->b->nshards];
    if (uc_redis_url_parse(url, len, &s->url, ps->err, ps->err_size) != 0)
        return ps->failed = 1;
    ps->b->nshards++;
    return 0;
}

static void free_shards(struct uc_broker *b)
{
    for (size_t i = 0; i < b->nshards; i++) {
        uc_redis_url_free(&b->shards[i].url);
        free(b->shards[i].peers);
    }
    free(b);
}

struct uc_broker *uc_broker_new(struct uc_server *srv, const char *const *urls, size_t n, char *err,
                                size_t err_size)
{
    size_t shards = each_url(urls, n, NULL, NULL);
    if (!shards || shards > UC_REDIS_MAX_SHARDS) {
        snprintf(err, err_size, shards ? "--redis: at most %d shards" : "--redis: no URL given",
                 UC_REDIS_MAX_SHARDS);
        return NULL;
    }
    struct uc_broker *b = calloc(1, sizeof *b + shards * sizeof(struct shard));
    if (!b) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    struct parsing ps = {b, err, err_size, 0};
    each_url(urls, n, parse_shard, &ps);
    if (ps.failed) {
        free_shards(b);
        return NULL;
    }
    b->srv = srv;
    b->loop = uc_server_loop(srv);
    /* 64 random bits: how a node tells its own echo from another node's publication. */
    uint64_t id;
    if (getrandom(&id, sizeof id, 0) != sizeof id)
        id = (uint64_t)time(NULL) << 32 ^ (uint64_t)getpid() << 16 ^ (uint64_t)(uintptr_t)b;
    snprintf(b->node_id, sizeof b->node_id, "%016llx", (unsigned long long)id);
    snprintf(b->presence_key, sizeof b->presence_key, "uidcast:n:%s", b->node_id);
    const struct uc_options *opt = uc_server_options(srv);
    b->timeout = opt->redis_timeout > 0 ? opt->redis_timeout : 1;
    b->max_pending = opt->redis_max_pending ? opt->redis_max_pending : 4 << 20;
    b->ttl = opt->presence_ttl >= 1 ? (int)opt->presence_ttl : 1;
    ev_timer_init(&b->watchdog, watchdog_cb, b->timeout / 4, b->timeout / 4);
    ev_timer_start(b->loop, &b->watchdog);
    ev_timer_init(&b->heartbeat, heartbeat_cb, b->ttl / 3., b->ttl / 3.);
    ev_timer_start(b->loop, &b->heartbeat);
    for (size_t i = 0; i < b->nshards; i++) {
        struct shard *s = &b->shards[i];
        s->b = b;
        s->index = i;
        s->backoff = BACKOFF_MIN;
        ev_init(&s->retry, retry_cb);
        ev_init(&s->settle, settle_cb);
        set_label(s);
        connect_missing(s);
    }
    return b;
}

size_t uc_broker_shards(const struct uc_broker *b) { return b->nshards; }

size_t uc_broker_shard_of(const struct uc_broker *b, const char *uid, size_t len)
{
    return uc_redis_shard_of(uid, len, b->nshards);
}

int uc_broker_command(struct uc_broker *b, size_t shard,
                      void (*fn)(struct redisAsyncContext *, void *, void *), void *privdata,
                      int argc, const char **argv, const size_t *argvlen)
{
    struct shard *s = &b->shards[shard];
    if (!s->pub_up || b->closing)
        return -1;
    return redisAsyncCommandArgv(s->pub, fn, privdata, argc, argv, argvlen) == REDIS_OK ? 0 : -1;
}

void uc_broker_scripts_init(struct uc_broker_scripts *s, const char *const *texts, size_t n)
{
    *s = (struct uc_broker_scripts){.n = n < UC_BROKER_MAX_SCRIPTS ? n : UC_BROKER_MAX_SCRIPTS,
                                    .texts = texts};
    for (size_t i = 0; i < s->n; i++) {
        unsigned char md[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)texts[i], strlen(texts[i]), md);
        for (int j = 0; j < SHA_DIGEST_LENGTH; j++)
            snprintf(s->sha[i] + 2 * j, 3, "%02x", md[j]);
    }
}

int uc_broker_run(struct uc_broker *b, size_t shard, struct uc_broker_scripts *s,
                  void (*fn)(struct redisAsyncContext *, void *, void *), void *privdata, int argc,
                  const char **argv, const size_t *argvlen)
{
    uint64_t conn = uc_broker_connection(b, shard);
    if (conn && s->loaded[shard] != conn) {
        for (size_t i = 0; i < s->n; i++) {
            const char *load[] = {"SCRIPT", "LOAD", s->texts[i]};
            size_t load_len[] = {6, 4, strlen(s->texts[i])};
            if (uc_broker_command(b, shard, NULL, NULL, 3, load, load_len) != 0)
                return -1;
        }
        s->loaded[shard] = conn;
    }
    return uc_broker_command(b, shard, fn, privdata, argc, argv, argvlen);
}

void uc_broker_scripts_check(struct uc_broker_scripts *s, const struct redisReply *reply)
{
    if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0)
        memset(s->loaded, 0, sizeof s->loaded);
}

const char *uc_broker_node_id(const struct uc_broker *b) { return b->node_id; }

uint64_t uc_broker_connection(const struct uc_broker *b, size_t shard)
{
    return b->shards[shard].pub_up ? b->shards[shard].conn_id : 0;
}

uint64_t uc_broker_presence_epoch(const struct uc_broker *b, size_t shard)
{
    return b->shards[shard].presence_writes;
}

struct uc_relay uc_broker_relay(struct uc_broker *b)
{
    return (struct uc_relay){.ctx = b,
                             .publish = publish,
                             .command = command,
                             .key_count = key_count,
                             .subscribing = subscribing,
                             .online = online,
                             .gather = gather,
                             .answer = answer};
}

static void free_service(void *ctx) { uc_broker_free(ctx); }

static void service_stats(void *ctx, struct uc_stats *out)
{
    const struct uc_broker *b = ctx;
    out->cluster_published += b->published;
    out->cluster_received += b->received;
    out->cluster_dropped += b->dropped;
    out->cluster_gaps += b->gaps;
}

struct uc_service uc_broker_service(struct uc_broker *b)
{
    return (struct uc_service){.ctx = b, .free = free_service, .stats = service_stats};
}

void uc_broker_free(struct uc_broker *b)
{
    if (!b)
        return;
    ev_timer_stop(b->loop, &b->heartbeat);
    ev_timer_stop(b->loop, &b->watchdog);
    for (size_t i = 0; i < b->nshards; i++) {
        struct shard *s = &b->shards[i];
        ev_timer_stop(b->loop, &s->retry);
        ev_timer_stop(b->loop, &s->settle);
        if (s->pub_up) {
            /* Leave the cluster's presence at once rather than after the TTL. The loop will
             * not run again, so write what is queued now (non-blocking; best effort). */
            redisAsyncCommand(s->pub, NULL, NULL, "DEL %s", b->presence_key);
            redisAsyncCommand(s->pub, NULL, NULL, "SREM " NODES_KEY " %s", b->node_id);
            redisAsyncHandleWrite(s->pub);
        }
    }
    b->closing = 1;
    for (size_t i = 0; i < b->nshards; i++) {
        struct shard *s = &b->shards[i];
        if (s->pub)
            redisAsyncFree(s->pub);
        if (s->sub)
            redisAsyncFree(s->sub);
        if (s->ask)
            redisAsyncFree(s->ask);
    }
    free_shards(b);
}
