/* cluster_events.c -- online and offline events over a cluster, decided in Redis so that
 * each transition makes one event on one node (see cluster_events.h).
 *
 * Each uid's bookkeeping lives on its shard (broker.h); every step below runs per shard.
 * Redis holds, per uid, its state uidcast:s:<uid> (on: 1 or 0; v: the last version); per
 * node, the uids it has (uidcast:m:<node>, a set without expiry, so that the uids of a node
 * that dies can still be found); and the uids waiting out their grace, in the sorted set
 * uidcast:off by when it ends. Every step is one script, so two nodes never both decide:
 *   arrive  a node's first connection of a uid (after the broker's HSET of its presence):
 *           a wait in uidcast:off is cancelled, no event; else an offline uid goes online
 *           and the script answers its version, which this node hands on.
 *   leave   its last one (after the HDEL): when no live node holds the uid (its presence
 *           hash, which expires with a silent node, names it), the uid waits out the grace.
 *   sweep   every node, every tick: the uids of nodes whose presence expired (they died, or
 *           stopped) leave as above, so a client that reconnects elsewhere within the grace
 *           makes no pair of events; waits that ended and whose uid is still
 *           held by nobody make the uid offline, each claimed by the one node whose script
 *           removed it, which hands the event on.
 * Versions are max(last + 1, Redis's clock in microseconds): growing per uid, across nodes,
 * and after a state that expired (an offline uid's is kept a day).
 *
 * A transition made while Redis is unreachable is lost; when this node's presence is written
 * whole again (a reconnect, a lapsed hash) it resynchronises: every uid it holds arrives
 * again (harmless when online), and the uids it had in Redis but no longer holds leave. */
#include "cluster_events.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "broker.h"
#include "log.h"

#define TICK 0.25
#define RESYNC_BATCH "500"

/* Lua shared by the scripts: the clock, and whether a live node holds a uid. */
#define COMMON                                                                                     \
    "local function now_us()\n"                                                                    \
    "  local t = redis.call('TIME')\n"                                                             \
    "  return tonumber(t[1]) * 1000000 + tonumber(t[2])\n"                                         \
    "end\n"                                                                                        \
    "local function held(uid)\n"                                                                   \
    "  for _, n in ipairs(redis.call('SMEMBERS', 'uidcast:nodes')) do\n"                           \
    "    if redis.call('HEXISTS', 'uidcast:n:' .. n, uid) == 1 then return true end\n"             \
    "  end\n"                                                                                      \
    "  return false\n"                                                                             \
    "end\n"                                                                                        \
    "local function leave(uid, grace_ms)\n"                                                        \
    "  if redis.call('HGET', 'uidcast:s:' .. uid, 'on') ~= '1' or held(uid) then return end\n"     \
    "  redis.call('ZADD', 'uidcast:off', 'NX', math.floor(now_us() / 1000) + grace_ms, uid)\n"     \
    "end\n"

/* ARGV: node, uid. Returns the online event's version, or 0 for no event. */
static const char arrive_script[] =
    COMMON "local node, uid = ARGV[1], ARGV[2]\n"
           "redis.call('SADD', 'uidcast:m:' .. node, uid)\n"
           "redis.call('SADD', 'uidcast:mnodes', node)\n"
           "if redis.call('ZREM', 'uidcast:off', uid) == 1 then return 0 end\n"
           "local s = 'uidcast:s:' .. uid\n"
           "if redis.call('HGET', s, 'on') == '1' then return 0 end\n"
           "local v = math.max(tonumber(redis.call('HGET', s, 'v') or '0') + 1, now_us())\n"
           "redis.call('HSET', s, 'on', '1', 'v', string.format('%d', v))\n"
           "redis.call('PERSIST', s)\n"
           "return v\n";

/* ARGV: node, uid, grace in ms. */
static const char leave_script[] = COMMON "redis.call('SREM', 'uidcast:m:' .. ARGV[1], ARGV[2])\n"
                                          "leave(ARGV[2], tonumber(ARGV[3]))\n"
                                          "return 0\n";

/* ARGV: node, SSCAN cursor, grace in ms. The uids Redis says this node has and it does not:
 * they leave. Returns the next cursor ("0": done). */
static const char resync_script[] =
    COMMON "local m = 'uidcast:m:' .. ARGV[1]\n"
           "local r = redis.call('SSCAN', m, ARGV[2], 'COUNT', " RESYNC_BATCH ")\n"
           "for _, uid in ipairs(r[2]) do\n"
           "  if redis.call('HEXISTS', 'uidcast:n:' .. ARGV[1], uid) == 0 then\n"
           "    redis.call('SREM', m, uid)\n"
           "    leave(uid, tonumber(ARGV[3]))\n"
           "  end\n"
           "end\n"
           "return r[1]\n";

/* ARGV: grace in ms. Returns { uid, version, uid, version, ... }: the offline events this
 * node claimed. */
static const char sweep_script[] = COMMON
    "for _, node in ipairs(redis.call('SMEMBERS', 'uidcast:mnodes')) do\n"
    "  if redis.call('EXISTS', 'uidcast:n:' .. node) == 0 then\n"
    "    local m = 'uidcast:m:' .. node\n"
    "    for _, uid in ipairs(redis.call('SPOP', m, 200)) do leave(uid, tonumber(ARGV[1])) end\n"
    "    if redis.call('SCARD', m) == 0 then redis.call('SREM', 'uidcast:mnodes', node) end\n"
    "  end\n"
    "end\n"
    "local out = {}\n"
    "local due = redis.call('ZRANGEBYSCORE', 'uidcast:off', '-inf', math.floor(now_us() / 1000),\n"
    "  'LIMIT', 0, 200)\n"
    "for _, uid in ipairs(due) do\n"
    "  redis.call('ZREM', 'uidcast:off', uid)\n"
    "  local s = 'uidcast:s:' .. uid\n"
    "  if not held(uid) and redis.call('HGET', s, 'on') == '1' then\n"
    "    local v = math.max(tonumber(redis.call('HGET', s, 'v') or '0') + 1, now_us())\n"
    "    redis.call('HSET', s, 'on', '0', 'v', string.format('%d', v))\n"
    "    redis.call('EXPIRE', s, 86400)\n"
    "    out[#out + 1] = uid\n"
    "    out[#out + 1] = string.format('%d', v)\n"
    "  end\n"
    "end\n"
    "return out\n";

enum { ARRIVE, LEAVE, RESYNC, SWEEP, NSCRIPTS };
static const char *const scripts[NSCRIPTS] = {arrive_script, leave_script, resync_script,
                                              sweep_script};

/* What each shard's Redis has been asked: a uid's bookkeeping lives on its shard. */
struct ce_shard {
    struct uc_cluster_events *ce;
    size_t index;
    uint64_t synced; /* the presence epoch resynchronised for */
    int resyncing;   /* a RESYNC pass is under way */
    int sweeping;    /* a SWEEP is in flight: one at a time */
};

struct uc_cluster_events {
    struct ev_loop *loop;
    struct uc_server *srv;
    struct uc_broker *broker;
    char grace_ms[24];
    uc_presence_event_fn *emit;
    void *arg;
    struct uc_broker_scripts scripts;
    ev_timer tick;
    struct ce_shard shards[UC_REDIS_MAX_SHARDS];
};

/* An arrive's uid, for handing its event on. */
struct arrival {
    struct uc_cluster_events *ce;
    size_t len;
    char uid[];
};

static int run(struct uc_cluster_events *ce, size_t shard, int script, redisCallbackFn *fn,
               void *privdata, int argc, const char **argv, size_t *argl)
{
    argv[0] = "EVALSHA";
    argl[0] = 7;
    argv[1] = ce->scripts.sha[script];
    argl[1] = 40;
    argv[2] = "0";
    argl[2] = 1;
    for (int i = 3; i < argc; i++)
        if (!argl[i])
            argl[i] = strlen(argv[i]);
    return uc_broker_run(ce->broker, shard, &ce->scripts, fn, privdata, argc, argv, argl);
}

static void on_arrived(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct arrival *a = privdata;
    const redisReply *reply = r;
    uc_broker_scripts_check(&a->ce->scripts, reply);
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        a->ce->emit(a->uid, a->len, 1, (uint64_t)reply->integer, a->ce->arg);
    else if (reply && reply->type == REDIS_REPLY_ERROR)
        uc_warn("cluster: online bookkeeping failed: %s", reply->str);
    free(a);
}

static void arrive(struct uc_cluster_events *ce, const char *uid, size_t len)
{
    struct arrival *a = malloc(sizeof *a + len);
    if (!a)
        return;
    *a = (struct arrival){.ce = ce, .len = len};
    memcpy(a->uid, uid, len);
    const char *argv[5] = {[3] = uc_broker_node_id(ce->broker), [4] = a->uid};
    size_t argl[5] = {[4] = len};
    if (run(ce, uc_broker_shard_of(ce->broker, uid, len), ARRIVE, on_arrived, a, 5, argv, argl) !=
        0)
        free(a); /* Redis is away: the resync after it returns makes the uid arrive */
}

static void changed(void *ctx, const char *uid, size_t len, int here)
{
    struct uc_cluster_events *ce = ctx;
    if (here) {
        arrive(ce, uid, len);
        return;
    }
    const char *argv[6] = {[3] = uc_broker_node_id(ce->broker), [4] = uid, [5] = ce->grace_ms};
    size_t argl[6] = {[4] = len};
    /* lost when Redis is away: the resync leaves */
    run(ce, uc_broker_shard_of(ce->broker, uid, len), LEAVE, NULL, NULL, 6, argv, argl);
}

static void arrive_each(const char *uid, size_t len, size_t count, void *ctx)
{
    (void)count;
    struct ce_shard *cs = ctx;
    if (uc_broker_shard_of(cs->ce->broker, uid, len) == cs->index)
        arrive(cs->ce, uid, len);
}

static void resync_step(struct ce_shard *cs, const char *cursor, size_t cursor_len);

static void on_resynced(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct ce_shard *cs = privdata;
    const redisReply *reply = r;
    uc_broker_scripts_check(&cs->ce->scripts, reply);
    if (!reply || reply->type != REDIS_REPLY_STRING || (reply->len == 1 && reply->str[0] == '0')) {
        cs->resyncing = 0; /* done, or failed: the next rewrite of the presence starts over */
        return;
    }
    resync_step(cs, reply->str, reply->len);
}

static void resync_step(struct ce_shard *cs, const char *cursor, size_t cursor_len)
{
    struct uc_cluster_events *ce = cs->ce;
    const char *argv[6] = {[3] = uc_broker_node_id(ce->broker), [4] = cursor, [5] = ce->grace_ms};
    size_t argl[6] = {[4] = cursor_len};
    if (run(ce, cs->index, RESYNC, on_resynced, cs, 6, argv, argl) != 0)
        cs->resyncing = 0;
}

static void on_swept(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct ce_shard *cs = privdata;
    struct uc_cluster_events *ce = cs->ce;
    const redisReply *reply = r;
    cs->sweeping = 0;
    uc_broker_scripts_check(&ce->scripts, reply);
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *uid = reply->element[i], *v = reply->element[i + 1];
        if (uid->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING)
            ce->emit(uid->str, uid->len, 0, strtoull(v->str, NULL, 10), ce->arg);
    }
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct uc_cluster_events *ce = w->data;
    for (size_t i = 0; i < uc_broker_shards(ce->broker); i++) {
        struct ce_shard *cs = &ce->shards[i];
        uint64_t epoch = uc_broker_presence_epoch(ce->broker, i);
        if (epoch != cs->synced && !cs->resyncing && uc_broker_connection(ce->broker, i)) {
            cs->synced = epoch;
            cs->resyncing = 1;
            uc_server_each_key(ce->srv, 'u', arrive_each, cs);
            resync_step(cs, "0", 1);
        }
        if (!cs->sweeping) {
            const char *argv[4] = {[3] = ce->grace_ms};
            size_t argl[4] = {0};
            cs->sweeping = run(ce, i, SWEEP, on_swept, cs, 4, argv, argl) == 0;
        }
    }
}

struct uc_cluster_events *uc_cluster_events_new(struct uc_server *srv, struct uc_broker *broker,
                                                double grace, uc_presence_event_fn *emit, void *arg)
{
    struct uc_cluster_events *ce = calloc(1, sizeof *ce);
    if (!ce)
        return NULL;
    *ce = (struct uc_cluster_events){
        .loop = uc_server_loop(srv), .srv = srv, .broker = broker, .emit = emit, .arg = arg};
    snprintf(ce->grace_ms, sizeof ce->grace_ms, "%lld", (long long)(grace * 1000 + 0.5));
    for (size_t i = 0; i < UC_REDIS_MAX_SHARDS; i++)
        ce->shards[i] = (struct ce_shard){.ce = ce, .index = i};
    uc_broker_scripts_init(&ce->scripts, scripts, NSCRIPTS);
    ev_timer_init(&ce->tick, tick_cb, TICK, TICK);
    ce->tick.data = ce;
    ev_timer_start(ce->loop, &ce->tick);
    return ce;
}

struct uc_tracker uc_cluster_events_tracker(struct uc_cluster_events *ce)
{
    return (struct uc_tracker){.ctx = ce, .changed = changed};
}

static void free_service(void *ctx) { uc_cluster_events_free(ctx); }

struct uc_service uc_cluster_events_service(struct uc_cluster_events *ce)
{
    return (struct uc_service){.ctx = ce, .free = free_service};
}

void uc_cluster_events_free(struct uc_cluster_events *ce)
{
    if (!ce)
        return;
    ev_timer_stop(ce->loop, &ce->tick);
    free(ce);
}
