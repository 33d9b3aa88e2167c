/* broker.c -- the cluster engine on Redis pub/sub (see broker.h), on the server's own loop
 * through hiredis's libev adapter.
 *
 * Two connections: one subscribed (a subscribed Redis connection can do nothing else), one
 * for PUBLISH. A publication is "<node id (16 hex)><t|b><payload>" on uidcast:u:<uid>,
 * uidcast:g:<group> or uidcast:a, so payloads stay binary-safe and keep their frame type, and a
 * node recognises (and skips) its own echo: it already delivered locally.
 *
 * Presence: each node keeps a hash uidcast:n:<node> (uid -> its local connection count) and
 * its id in the set uidcast:nodes. The hash expires --presence-ttl seconds after the node's
 * last heartbeat (it beats every third of that), so a node that dies without saying so drops
 * out on its own; a query sums the uid over the live nodes in one server-side script. Writes
 * are absolute (HSET count, HDEL), so a lost or repeated one cannot drift, and a reconnect
 * writes the whole hash again. */
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
#include "str.h"
#include "umap.h"

#define NODE_ID_LEN 16
#define BACKOFF_MIN 0.1
#define BACKOFF_MAX 5.0
#define NODES_KEY "uidcast:nodes"
/* Roster questions go to every node on QUERY_CHANNEL; pages come back on ANSWER_PREFIX<node>. */
#define QUERY_CHANNEL "uidcast:q"
#define ANSWER_PREFIX "uidcast:r:"
#define ROSTER_REQUEST 'Q'
#define ROSTER_PAGE 'R'

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

struct uc_broker {
    struct uc_server *srv;
    struct ev_loop *loop;
    uint64_t published, received, dropped, gaps; /* the cluster_* counters */
    uint64_t connects;        /* publishing connections made, for uc_broker_connection */
    uint64_t presence_writes; /* whole rewrites of this node's presence hash */
    double timeout;           /* --redis-timeout */
    size_t max_pending;       /* --redis-max-pending */
    size_t pending;           /* bytes of publications sent, not yet answered */
    ev_timer watchdog;        /* pings Redis; a missed answer means it is down */
    ev_tstamp ping_sent;      /* when the unanswered PING went out, or 0 */
    /* SUBSCRIBE commands sent and confirmed since the subscriber connected: a login on this
     * node is acknowledged only once its subscription is confirmed (uc_broker_subscribing). */
    uint64_t sub_sent, sub_confirmed;
    ev_tstamp sub_waiting_since; /* when confirmations fell behind, or 0 */
    int gap_open;                /* subscriptions were lost and are not all restored yet */
    ev_tstamp last_refusal_log;
    char host[300];
    int port;
    char *user, *password; /* AUTH [user] password when set */
    long db;               /* SELECT for the presence keys; channels are global anyway */
    redisAsyncContext *pub, *sub;
    int pub_up, sub_up;
    int pub_ready, sub_ready; /* answered PING after AUTH/SELECT */
    int closing;
    ev_timer retry;
    ev_timer heartbeat;
    int ttl; /* seconds, from --presence-ttl */
    double backoff;
    char node_id[NODE_ID_LEN + 1];
    char presence_key[NODE_ID_LEN + 16]; /* uidcast:n:<node id> */
};

static void connect_missing(struct uc_broker *b);

static void schedule_retry(struct uc_broker *b)
{
    if (b->closing || ev_is_active(&b->retry))
        return;
    ev_timer_set(&b->retry, b->backoff, 0.);
    ev_timer_start(b->loop, &b->retry);
    b->backoff = b->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : b->backoff * 2;
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    connect_missing(container_of(w, struct uc_broker, retry));
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

/* ---- receiving ---- */

/* A SUBSCRIBE was confirmed: logins waiting for it may be acknowledged, and once every
 * subscription of a reconnect is back, the application hears of the gap. */
static void subscription_confirmed(struct uc_broker *b)
{
    b->sub_confirmed++;
    b->sub_waiting_since = b->sub_confirmed < b->sub_sent ? ev_now(b->loop) : 0;
    uc_server_subscribed(b->srv, b->sub_confirmed);
    if (b->gap_open && b->sub_confirmed == b->sub_sent) {
        b->gap_open = 0;
        uc_info("cluster: subscriptions restored");
        uc_server_cluster_gap(b->srv);
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
    struct uc_broker *b = privdata;
    redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(reply->element[0]->str, "subscribe") == 0) {
        subscription_confirmed(b);
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

static void subscribe_raw(struct uc_broker *b, const char *chan, size_t len)
{
    if (redisAsyncCommand(b->sub, on_publication, b, "SUBSCRIBE %b", chan, len) != REDIS_OK)
        return;
    if (b->sub_sent++ == b->sub_confirmed)
        b->sub_waiting_since = ev_now(b->loop);
}

static uint64_t subscribing(void *ctx)
{
    struct uc_broker *b = ctx;
    return b->sub_up && b->sub_sent > b->sub_confirmed ? b->sub_sent : 0;
}

static void subscribe(struct uc_broker *b, int kind, const char *key, size_t key_len)
{
    char chan[UC_UID_MAX + 32];
    int n = channel_name(chan, sizeof chan, kind, key, key_len);
    if (n > 0 && b->sub_up)
        subscribe_raw(b, chan, (size_t)n);
    /* when down, the reconnect subscribes everything the maps hold */
}

static void unsubscribe(struct uc_broker *b, int kind, const char *key, size_t key_len)
{
    char chan[UC_UID_MAX + 32];
    int n = channel_name(chan, sizeof chan, kind, key, key_len);
    if (n > 0 && b->sub_up)
        redisAsyncCommand(b->sub, NULL, NULL, "UNSUBSCRIBE %b", chan, (size_t)n);
}

static void subscribe_uid(const char *key, size_t len, size_t count, void *ctx)
{
    (void)count;
    subscribe(ctx, 'u', key, len);
}

static void subscribe_group(const char *key, size_t len, size_t count, void *ctx)
{
    (void)count;
    subscribe(ctx, 'g', key, len);
}

static void subscribe_everything(struct uc_broker *b)
{
    char answers[sizeof ANSWER_PREFIX + NODE_ID_LEN];
    int n = snprintf(answers, sizeof answers, ANSWER_PREFIX "%s", b->node_id);
    subscribe_raw(b, answers, (size_t)n);
    subscribe_raw(b, UC_LIT(QUERY_CHANNEL));
    subscribe_raw(b, UC_LIT("uidcast:a"));
    uc_server_each_key(b->srv, 'u', subscribe_uid, b);
    uc_server_each_key(b->srv, 'g', subscribe_group, b);
}

/* ---- presence ---- */

/* Lists the node and (re)starts its hash's TTL; expire_cb, when given, reads EXPIRE's answer. */
static void register_node(struct uc_broker *b, redisCallbackFn *expire_cb)
{
    redisAsyncCommand(b->pub, NULL, NULL, "SADD " NODES_KEY " %s", b->node_id);
    redisAsyncCommand(b->pub, expire_cb, b, "EXPIRE %s %d", b->presence_key, b->ttl);
}

/* HSET pairs gathered for write_presence: one command per CHUNK uids. */
enum { CHUNK = 256 };
struct presence_batch {
    struct uc_broker *b;
    const char *argv[2 + 2 * CHUNK];
    size_t argl[2 + 2 * CHUNK];
    char counts[CHUNK][24];
    int n;
};

static void batch_send(struct presence_batch *pb)
{
    if (pb->n)
        redisAsyncCommandArgv(pb->b->pub, NULL, NULL, 2 + 2 * pb->n, pb->argv, pb->argl);
    pb->n = 0;
}

static void batch_add(const char *uid, size_t len, size_t count, void *ctx)
{
    struct presence_batch *pb = ctx;
    int n = pb->n;
    pb->argv[2 + 2 * n] = uid;
    pb->argl[2 + 2 * n] = len;
    pb->argl[3 + 2 * n] = (size_t)snprintf(pb->counts[n], sizeof pb->counts[n], "%zu", count);
    pb->argv[3 + 2 * n] = pb->counts[n];
    if (++pb->n == CHUNK)
        batch_send(pb);
}

/* Writes this node's whole presence hash again: after a (re)connect, when Redis may have lost
 * it or missed changes. HSET takes many pairs per command, so this is one command per chunk. */
static void write_presence(struct uc_broker *b)
{
    b->presence_writes++;
    struct presence_batch *pb = malloc(sizeof *pb);
    redisAsyncCommand(b->pub, NULL, NULL, "DEL %s", b->presence_key);
    if (pb) {
        pb->b = b;
        pb->n = 0;
        pb->argv[0] = "HSET";
        pb->argl[0] = 4;
        pb->argv[1] = b->presence_key;
        pb->argl[1] = strlen(b->presence_key);
        uc_server_each_key(b->srv, 'u', batch_add, pb);
        batch_send(pb);
        free(pb);
    }
    register_node(b, NULL);
}

static void presence_write(struct uc_broker *b, const char *uid, size_t len, size_t count,
                           int added)
{
    if (!b->pub_up || b->closing)
        return; /* the reconnect writes everything again */
    if (count == 0) {
        redisAsyncCommand(b->pub, NULL, NULL, "HDEL %s %b", b->presence_key, uid, len);
        return;
    }
    char n[24]; /* hiredis's format knows no %zu */
    snprintf(n, sizeof n, "%zu", count);
    redisAsyncCommand(b->pub, NULL, NULL, "HSET %s %b %s", b->presence_key, uid, len, n);
    /* The first uid creates the hash (the last one's HDEL deleted it, TTL included). */
    if (added && count == 1 && uc_server_key_count(b->srv, 'u') == 1)
        register_node(b, NULL);
}

static void key_count(void *ctx, int kind, const char *key, size_t key_len, size_t count, int added)
{
    struct uc_broker *b = ctx;
    if (added && count == 1)
        subscribe(b, kind, key, key_len);
    else if (count == 0)
        unsubscribe(b, kind, key, key_len);
    if (kind == 'u')
        presence_write(b, key, key_len, count, added);
}

static void on_heartbeat_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct uc_broker *b = privdata;
    redisReply *reply = r;
    /* EXPIRE answers 0 when the hash is gone although this node holds uids: Redis restarted,
     * or this node stalled past the TTL. Write it again. */
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0 && b->pub_up &&
        !b->closing && uc_server_key_count(b->srv, 'u') > 0) {
        uc_warn("cluster: this node's presence had expired in redis; writing it again");
        write_presence(b);
    }
}

static void heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct uc_broker *b = container_of(w, struct uc_broker, heartbeat);
    if (b->pub_up)
        register_node(b, on_heartbeat_reply);
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
    if (!b->pub_up || b->closing)
        return -1;
    struct online_query *q = malloc(sizeof *q);
    if (!q)
        return -1;
    q->done = done;
    q->arg = arg;
    if (redisAsyncCommand(b->pub, on_online_reply, q, "EVAL %s 1 " NODES_KEY " %b", online_script,
                          uid, uid_len) != REDIS_OK) {
        free(q);
        return -1;
    }
    return 0;
}

/* ---- rosters ---- */

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
static int publish_roster(struct uc_broker *b, const char *chan, size_t chan_len, char type,
                          const void *data, size_t len, redisCallbackFn *fn, void *privdata)
{
    char *msg = malloc(NODE_ID_LEN + 1 + len);
    if (!msg)
        return -1;
    memcpy(msg, b->node_id, NODE_ID_LEN);
    msg[NODE_ID_LEN] = type;
    memcpy(msg + NODE_ID_LEN + 1, data, len);
    int r = redisAsyncCommand(b->pub, fn, privdata, "PUBLISH %b %b", chan, chan_len, msg,
                              NODE_ID_LEN + 1 + len);
    free(msg);
    return r == REDIS_OK ? 0 : -1;
}

static int gather(void *ctx, const void *req, size_t len,
                  void (*receivers)(void *arg, uint64_t id, long long n), void *arg, uint64_t id)
{
    struct uc_broker *b = ctx;
    struct gather_wait *g;
    if (!b->pub_up || b->closing || !(g = malloc(sizeof *g)))
        return -1;
    *g = (struct gather_wait){.receivers = receivers, .arg = arg, .id = id};
    if (publish_roster(b, UC_LIT(QUERY_CHANNEL), ROSTER_REQUEST, req, len, on_gathered, g) != 0) {
        free(g);
        return -1;
    }
    return 0;
}

static void answer(void *ctx, const char *node, size_t node_len, const void *page, size_t len)
{
    struct uc_broker *b = ctx;
    char chan[sizeof ANSWER_PREFIX + NODE_ID_LEN];
    if (!b->pub_up || b->closing || node_len != NODE_ID_LEN)
        return; /* the asker times out and says its page is partial */
    memcpy(chan, ANSWER_PREFIX, sizeof ANSWER_PREFIX - 1);
    memcpy(chan + sizeof ANSWER_PREFIX - 1, node, NODE_ID_LEN);
    publish_roster(b, chan, sizeof chan - 1, ROSTER_PAGE, page, len, NULL, NULL);
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
    struct uc_broker *b = ac->data;
    redisReply *reply = r;
    b->pending -= (size_t)(uintptr_t)privdata;
    if (reply && reply->type == REDIS_REPLY_INTEGER) {
        b->published++;
        return;
    }
    b->dropped++;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_refusal(b, "redis refused a publication", reply->str);
}

/* PUBLISHes "<node id><type><data>" on the channel of key. */
static void publish_typed(struct uc_broker *b, int kind, const char *key, size_t key_len, char type,
                          const void *data, size_t len)
{
    char chan[UC_UID_MAX + 32];
    int n = channel_name(chan, sizeof chan, kind, key, key_len);
    if (n < 0)
        return;
    /* What waits for Redis (hiredis's output buffer and the replies owed) is bounded: a frozen
     * or slow Redis costs dropped publications, never this node's memory, and draining a
     * bounded buffer stays cheap (hiredis 0.14 moves what is left after every write). */
    size_t cost = NODE_ID_LEN + 1 + len + (size_t)n + 32;
    if (!b->pub_up || b->pending + cost > b->max_pending) {
        b->dropped++;
        if (b->pub_up)
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
    if (redisAsyncCommand(b->pub, on_published, (void *)(uintptr_t)cost, "PUBLISH %b %b", chan,
                          (size_t)n, msg, NODE_ID_LEN + 1 + len) == REDIS_OK)
        b->pending += cost;
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

/* ---- connections ---- */

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct uc_broker *b = ac->data;
    int is_sub = ac == b->sub;
    if (status != REDIS_OK) {
        uc_warn("redis %s:%d: %s; retrying in %.1f s", b->host, b->port, ac->errstr, b->backoff);
        if (is_sub)
            b->sub = NULL;
        else
            b->pub = NULL;
        schedule_retry(b);
        return;
    }
    if (is_sub) {
        b->sub_up = 1;
        b->sub_sent = b->sub_confirmed = 0;
        subscribe_everything(b);
    } else {
        b->pub_up = 1;
        b->connects++;
        write_presence(b);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct uc_broker *b = ac->data;
    if (ac == b->sub) {
        /* Whatever other nodes publish from now until the subscriptions are back is lost to
         * this node: count the window, and tell the application once it is over. */
        if (b->sub_up && !b->closing) {
            b->gaps++;
            b->gap_open = 1;
            uc_warn("cluster: subscriptions lost; messages from other nodes may be missed "
                    "until they are restored");
        }
        b->sub = NULL;
        b->sub_up = b->sub_ready = 0;
        b->sub_sent = b->sub_confirmed = 0;
        b->sub_waiting_since = 0;
        if (!b->closing)
            uc_server_subscribed(b->srv, UINT64_MAX); /* nothing to wait for any more */
    } else {
        b->pub = NULL;
        b->pub_up = b->pub_ready = 0;
        b->ping_sent = 0;
    }
    if (b->closing)
        return;
    uc_log_event(
        UC_LOG_WARN, "cluster.lost", json_pack("{s:s,s:i}", "host", b->host, "port", b->port),
        "cluster: lost redis %s:%d; local delivery goes on, reconnecting", b->host, b->port);
    schedule_retry(b);
}

/* AUTH and SELECT: a refusal (wrong password, no such db) is an operator error worth a loud
 * line; the connection then fails its commands and the back-off retries. */
static void on_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct uc_broker *b = privdata;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        uc_error("cluster: redis %s:%d refused the set-up: %s", b->host, b->port, reply->str);
        redisAsyncDisconnect(ac);
    }
}

/* Answers once AUTH and SELECT went through: only then is the back-off reset. */
static void on_ready(redisAsyncContext *ac, void *r, void *privdata)
{
    struct uc_broker *b = privdata;
    redisReply *reply = r;
    if (!reply || (ac->c.flags & REDIS_DISCONNECTING))
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        /* NOAUTH: Redis wants a password the URL does not give. Say so, once per retry. */
        uc_error("cluster: redis %s:%d refused this node: %s", b->host, b->port, reply->str);
        redisAsyncDisconnect(ac);
        return;
    }
    if (ac == b->pub)
        b->pub_ready = 1;
    else
        b->sub_ready = 1;
    if (b->pub_ready && b->sub_ready) {
        b->backoff = BACKOFF_MIN;
        uc_log_event(
            UC_LOG_INFO, "cluster.connected",
            json_pack("{s:s,s:i,s:s}", "host", b->host, "port", b->port, "node", b->node_id),
            "cluster: connected to redis %s:%d as node %s", b->host, b->port, b->node_id);
    }
}

/* ---- a Redis that stops answering ---- */

static void on_pong(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)privdata;
    struct uc_broker *b = ac->data;
    if (r)
        b->ping_sent = 0;
}

/* Frees one connection as if Redis had closed it: its waiting callbacks run with no reply
 * (publications count as dropped, presence questions get this node's count), and the
 * disconnect handler schedules the reconnect. */
static void drop(struct uc_broker *b, redisAsyncContext **slot)
{
    redisAsyncContext *ac = *slot;
    if (!ac)
        return;
    redisAsyncFree(ac); /* calls on_disconnect if it had connected */
    if (*slot == ac) {  /* it never had: clear it the same way */
        *slot = NULL;
        schedule_retry(b);
    }
}

/* A paused, frozen or unreachable Redis closes nothing: without this, presence questions and
 * logins would wait on it for as long as it stalls. Every tick pings it; an answer later than
 * --redis-timeout (or a subscription not confirmed in that time) means it is down. */
static void watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct uc_broker *b = container_of(w, struct uc_broker, watchdog);
    ev_tstamp now = ev_now(loop);
    const char *why = NULL;
    /* Before blaming Redis, read what it may have sent while this process was the slow one
     * (a long loop iteration): the answer can be in the socket already. That can close it. */
    if (b->pub_up && b->ping_sent && now - b->ping_sent > b->timeout)
        redisAsyncHandleRead(b->pub);
    if (b->pub_up && b->ping_sent && now - b->ping_sent > b->timeout)
        why = "did not answer a PING";
    else if (b->sub_up && b->sub_waiting_since && now - b->sub_waiting_since > b->timeout)
        why = "did not confirm a subscription";
    if (why) {
        uc_warn("cluster: redis %s:%d %s within %g s; treating it as down (local delivery goes "
                "on)",
                b->host, b->port, why, b->timeout);
        drop(b, &b->pub);
        drop(b, &b->sub);
        return;
    }
    if (b->pub_up && !b->ping_sent && redisAsyncCommand(b->pub, on_pong, NULL, "PING") == REDIS_OK)
        b->ping_sent = now;
}

static redisAsyncContext *open_one(struct uc_broker *b, int is_pub)
{
    redisAsyncContext *ac = redisAsyncConnect(b->host, b->port);
    if (!ac || ac->err) {
        uc_warn("redis %s:%d: %s", b->host, b->port, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return NULL;
    }
    ac->data = b;
    redisLibevAttach(b->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (b->user)
        redisAsyncCommand(ac, on_setup_reply, b, "AUTH %s %s", b->user, b->password);
    else if (b->password)
        redisAsyncCommand(ac, on_setup_reply, b, "AUTH %s", b->password);
    if (b->db && is_pub)
        redisAsyncCommand(ac, on_setup_reply, b, "SELECT %ld", b->db);
    redisAsyncCommand(ac, on_ready, b, "PING");
    return ac;
}

static void connect_missing(struct uc_broker *b)
{
    if (!b->pub)
        b->pub = open_one(b, 1);
    if (!b->sub)
        b->sub = open_one(b, 0);
    if (!b->pub || !b->sub)
        schedule_retry(b);
}

static int url_error(char *err, size_t err_size, const char *url, const char *why)
{
    snprintf(err, err_size, "--redis '%s': %s; expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]",
             url, why);
    return -1;
}

/* redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] into b; -1 with a message in err. */
static int parse_url(struct uc_broker *b, const char *url, char *err, size_t err_size)
{
    static const char scheme[] = "redis://";
    if (strncmp(url, scheme, sizeof scheme - 1) != 0)
        return url_error(err, err_size, url, "not a redis:// URL");
    const char *rest = url + sizeof scheme - 1;
    const char *at = strrchr(rest, '@');
    if (at) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        if (!colon)
            return url_error(err, err_size, url, "credentials need a ':' before the password");
        if (colon > rest)
            b->user = strndup(rest, (size_t)(colon - rest));
        b->password = strndup(colon + 1, (size_t)(at - colon - 1));
        rest = at + 1;
    }
    char hostport[300];
    if ((size_t)snprintf(hostport, sizeof hostport, "%s", rest) >= sizeof hostport)
        return url_error(err, err_size, url, "host too long");
    char *slash = strchr(hostport, '/');
    if (slash) {
        *slash = '\0';
        char *end;
        b->db = slash[1] ? strtol(slash + 1, &end, 10) : 0;
        if (slash[1] && (*end || b->db < 0 || b->db > 1000000))
            return url_error(err, err_size, url, "the database must be a number");
    }
    char *colon = strrchr(hostport, ':');
    long port = 6379;
    if (colon) {
        char *end;
        port = strtol(colon + 1, &end, 10);
        if (!colon[1] || *end || port < 1 || port > 65535)
            return url_error(err, err_size, url, "the port must be 1 to 65535");
        *colon = '\0';
    }
    if (!hostport[0])
        return url_error(err, err_size, url, "no host");
    snprintf(b->host, sizeof b->host, "%s", hostport);
    b->port = (int)port;
    return 0;
}

struct uc_broker *uc_broker_new(struct uc_server *srv, const char *url, char *err, size_t err_size)
{
    struct uc_broker *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    if (parse_url(b, url, err, err_size) != 0) {
        free(b->user);
        free(b->password);
        free(b);
        return NULL;
    }
    b->srv = srv;
    b->loop = uc_server_loop(srv);
    b->backoff = BACKOFF_MIN;
    /* 64 random bits: how a node tells its own echo from another node's publication. */
    uint64_t id;
    if (getrandom(&id, sizeof id, 0) != sizeof id)
        id = (uint64_t)time(NULL) << 32 ^ (uint64_t)getpid() << 16 ^ (uint64_t)(uintptr_t)b;
    snprintf(b->node_id, sizeof b->node_id, "%016llx", (unsigned long long)id);
    snprintf(b->presence_key, sizeof b->presence_key, "uidcast:n:%s", b->node_id);
    ev_init(&b->retry, retry_cb);
    b->timeout =
        uc_server_options(srv)->redis_timeout > 0 ? uc_server_options(srv)->redis_timeout : 1;
    b->max_pending = uc_server_options(srv)->redis_max_pending
                         ? uc_server_options(srv)->redis_max_pending
                         : 4 << 20;
    ev_timer_init(&b->watchdog, watchdog_cb, b->timeout / 4, b->timeout / 4);
    ev_timer_start(b->loop, &b->watchdog);
    b->ttl =
        uc_server_options(srv)->presence_ttl >= 1 ? (int)uc_server_options(srv)->presence_ttl : 1;
    ev_timer_init(&b->heartbeat, heartbeat_cb, b->ttl / 3., b->ttl / 3.);
    ev_timer_start(b->loop, &b->heartbeat);
    connect_missing(b);
    return b;
}

int uc_broker_command(struct uc_broker *b, void (*fn)(struct redisAsyncContext *, void *, void *),
                      void *privdata, int argc, const char **argv, const size_t *argvlen)
{
    if (!b->pub_up || b->closing)
        return -1;
    return redisAsyncCommandArgv(b->pub, fn, privdata, argc, argv, argvlen) == REDIS_OK ? 0 : -1;
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

int uc_broker_run(struct uc_broker *b, struct uc_broker_scripts *s,
                  void (*fn)(struct redisAsyncContext *, void *, void *), void *privdata, int argc,
                  const char **argv, const size_t *argvlen)
{
    uint64_t conn = uc_broker_connection(b);
    if (conn && s->loaded != conn) {
        for (size_t i = 0; i < s->n; i++) {
            const char *load[] = {"SCRIPT", "LOAD", s->texts[i]};
            size_t load_len[] = {6, 4, strlen(s->texts[i])};
            if (uc_broker_command(b, NULL, NULL, 3, load, load_len) != 0)
                return -1;
        }
        s->loaded = conn;
    }
    return uc_broker_command(b, fn, privdata, argc, argv, argvlen);
}

void uc_broker_scripts_check(struct uc_broker_scripts *s, const struct redisReply *reply)
{
    if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0)
        s->loaded = 0;
}

const char *uc_broker_node_id(const struct uc_broker *b) { return b->node_id; }

uint64_t uc_broker_connection(const struct uc_broker *b) { return b->pub_up ? b->connects : 0; }

uint64_t uc_broker_presence_epoch(const struct uc_broker *b) { return b->presence_writes; }

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
    ev_timer_stop(b->loop, &b->retry);
    ev_timer_stop(b->loop, &b->heartbeat);
    ev_timer_stop(b->loop, &b->watchdog);
    if (b->pub_up) {
        /* Leave the cluster's presence at once rather than after the TTL. The loop will not
         * run again, so write what is queued now (non-blocking; best effort). */
        redisAsyncCommand(b->pub, NULL, NULL, "DEL %s", b->presence_key);
        redisAsyncCommand(b->pub, NULL, NULL, "SREM " NODES_KEY " %s", b->node_id);
        redisAsyncHandleWrite(b->pub);
    }
    b->closing = 1;
    if (b->pub)
        redisAsyncFree(b->pub);
    if (b->sub)
        redisAsyncFree(b->sub);
    free(b->user);
    free(b->password);
    free(b);
}
