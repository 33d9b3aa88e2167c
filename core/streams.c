/* streams.c -- the cluster's store of kept messages (--redis): one Redis Stream per uid, on the
 * uid's shard, so a client resumes on any node, after its node restarted, with nothing lost
 * (see streams.h).
 *
 * Keeping is one server-side script, atomic in Redis: the uid's next number (INCR of
 * uidcast:seq:<uid>), the entry "<seq>-1" in the stream uidcast:k:<uid> (fields d: the
 * payload, b: 1 when binary, e: when it expires, in ms; the oldest dropped past
 * --mailbox-max-messages or --mailbox-max-bytes, whose count is uidcast:kb:<uid>; the keys
 * outlive their longest keep by a minute, for the sweep below), the expiry in the sorted set
 * uidcast:expiring, and the PUBLISH of "<node id><k|K><seq>:<payload>" on the uid's channel. Redis
 * runs scripts one at a time, so publications of a uid's kept messages leave in number order, and
 * every node (the sender too) delivers them from its subscription in that order.
 *
 * Delivery receipts: each node writes, for a uid, the highest number it handed to a connection
 * (uidcast:d:<uid>, batched every 50 ms); every node sweeps uidcast:expiring each second, and
 * the script gives each expired message to one node only, which reports it to on_undelivered
 * when no connection had it.
 *
 * Numbers never go back: a counter that Redis lost (restarted without persistence, expired
 * after 30 idle days) starts again above the clock in microseconds, higher than any number it
 * gave before. A message kept while Redis is unreachable is sent to this node's connections
 * only and costs its uid a number once Redis is back (the counter is advanced past it), so a
 * client that resumes across it is told of the gap. */
#include "streams.h"

#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "err.h"
#include "hashkey.h"
#include "umap.h"

static const char keep_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local seq\n"
    "if redis.call('EXISTS', KEYS[1]) == 1 then seq = redis.call('INCR', KEYS[1])\n"
    "else\n"
    "  seq = tonumber(t[1]) * 1000000 + tonumber(t[2]) + 1\n"
    "  redis.call('SET', KEYS[1], string.format('%d', seq))\n"
    "end\n"
    "local keep = tonumber(ARGV[4])\n"
    "redis.call('PEXPIRE', KEYS[1], math.max(keep, 2592000000))\n"
    "local id = string.format('%d-1', seq)\n"
    "redis.call('XADD', KEYS[2], id, 'd', ARGV[3], 'b', ARGV[6], 'e',\n"
    "           string.format('%d', now + keep))\n"
    "local bytes = redis.call('INCRBY', KEYS[3], #ARGV[3])\n"
    "local n, maxlen, maxbytes = redis.call('XLEN', KEYS[2]), tonumber(ARGV[5]), "
    "tonumber(ARGV[8])\n"
    "while n > 1 and (n > maxlen or bytes > maxbytes) do\n"
    "  local old = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]\n"
    "  redis.call('XDEL', KEYS[2], old[1])\n"
    "  bytes = redis.call('DECRBY', KEYS[3], #old[2][2])\n"
    "  n = n - 1\n"
    "end\n"
    "if redis.call('PTTL', KEYS[2]) < keep + 60000 then\n"
    "  redis.call('PEXPIRE', KEYS[2], keep + 60000)\n"
    "  redis.call('PEXPIRE', KEYS[3], keep + 60000)\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[1], ARGV[2] .. string.format('%d', seq) .. ':' .. ARGV[3])\n"
    "redis.call('ZADD', 'uidcast:expiring', now + keep, string.format('%d', seq) .. ':' .. "
    "ARGV[7])\n"
    "return seq\n";

/* Raises uidcast:d:<uid>, the highest number of the uid's that a connection was handed. */
static const char mark_script[] =
    "if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then\n"
    "  redis.call('SET', KEYS[1], ARGV[1], 'PX', 2592000000)\n"
    "end\n";

/* Claims up to 100 kept messages whose keep ran out (each is claimed by one node) and returns
 * those no connection was handed: {uid, seq, payload, binary, reason, ...}; a message the
 * stream no longer holds (MAXLEN dropped it) comes as "evicted", without its payload. */
static const char sweep_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local due = redis.call('ZRANGEBYSCORE', 'uidcast:expiring', '-inf', now, 'LIMIT', 0, 100)\n"
    "local out = {}\n"
    "for _, m in ipairs(due) do\n"
    "  redis.call('ZREM', 'uidcast:expiring', m)\n"
    "  local sep = string.find(m, ':', 1, true)\n"
    "  local seq, uid = string.sub(m, 1, sep - 1), string.sub(m, sep + 1)\n"
    "  if tonumber(redis.call('GET', 'uidcast:d:' .. uid) or '0') < tonumber(seq) then\n"
    "    local e = redis.call('XRANGE', 'uidcast:k:' .. uid, seq .. '-1', seq .. '-1')\n"
    "    out[#out + 1] = uid; out[#out + 1] = seq\n"
    "    if e[1] then\n"
    "      out[#out + 1] = e[1][2][2]; out[#out + 1] = e[1][2][4]; out[#out + 1] = 'expired'\n"
    "    else\n"
    "      out[#out + 1] = ''; out[#out + 1] = '0'; out[#out + 1] = 'evicted'\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n";

/* Returns {last number, more (0|1), id, binary, payload, id, binary, payload, ...}: the entries
 * after ARGV[1] (an inclusive start id) that have not expired, until ARGV[2] payload bytes. */
static const char replay_script[] =
    "local last = redis.call('GET', KEYS[1]) or '0'\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local budget, start, bytes = tonumber(ARGV[2]), ARGV[1], 0\n"
    "local out = {last, '0'}\n"
    "while true do\n"
    "  local r = redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', 128)\n"
    "  for _, e in ipairs(r) do\n"
    "    local f = e[2]\n"
    "    if tonumber(f[6]) > now then\n"
    "      if bytes >= budget then out[2] = '1'; return out end\n"
    "      out[#out + 1] = e[1]; out[#out + 1] = f[4]; out[#out + 1] = f[2]\n"
    "      bytes = bytes + #f[2] + 1\n"
    "    end\n"
    "    start = '(' .. e[1]\n"
    "  end\n"
    "  if #r < 128 then return out end\n"
    "end\n";

/* Advances a uid's counter past numbers that were never stored. */
static const char burn_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], ARGV[1])\n"
    "else\n"
    "  local t = redis.call('TIME')\n"
    "  redis.call('SET', KEYS[1], string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2])))\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], 2592000000)\n";

/* The scripts, run by their SHA1 (uc_broker_run), not sent with every message. */
enum { SCRIPT_KEEP, SCRIPT_REPLAY, SCRIPT_BURN, SCRIPT_MARK, SCRIPT_SWEEP, NSCRIPTS };
static const char *const scripts[NSCRIPTS] = {keep_script, replay_script, burn_script, mark_script,
                                              sweep_script};

/* A uid that lost numbers while Redis was away. */
struct burn {
    UT_hash_handle hh;
    uint64_t count;
    size_t uid_len;
    char uid[];
};

enum { MAX_BURNS = 100000 }; /* uids remembered; beyond, a loss is only counted */

/* The highest number of a uid handed to a connection here, not yet written to Redis. */
struct mark {
    UT_hash_handle hh;
    uint64_t seq;
    size_t uid_len;
    char uid[];
};

struct uc_streams {
    struct ev_loop *loop;
    struct uc_broker *broker;
    size_t max_messages, max_bytes;
    struct burn *burns[UC_REDIS_MAX_SHARDS]; /* by shard */
    size_t nburns;
    struct mark *marks; /* written every MARK_EVERY: one command per uid, not per message */
    ev_timer mark_timer;
    ev_timer sweep_timer; /* claims expired messages, for on_undelivered */
    uc_undelivered_fn *undelivered;
    void *arg;
    struct uc_broker_scripts scripts;
    struct uc_stats stats; /* the mailbox_* fields only */
};

#define MARK_EVERY 0.05
#define SWEEP_EVERY 1.0

static int key_name(char *out, size_t cap, const char *prefix, const char *uid, size_t len)
{
    size_t n = strlen(prefix);
    if (n + len > cap)
        return -1;
    memcpy(out, prefix, n);
    memcpy(out + n, uid, len);
    return (int)(n + len);
}

/* Sends what was lost while a shard was away, before anything else of its uids. */
static void flush_burns(struct uc_streams *st, size_t shard)
{
    struct burn *bn, *tmp;
    HASH_ITER(hh, st->burns[shard], bn, tmp)
    {
        char key[UC_UID_MAX + 16], count[24];
        int n = key_name(key, sizeof key, "uidcast:seq:", bn->uid, bn->uid_len);
        const char *argv[] = {"EVALSHA", st->scripts.sha[SCRIPT_BURN], "1", key, count};
        size_t argl[] = {
            7, 40, 1, (size_t)n,
            (size_t)snprintf(count, sizeof count, "%llu", (unsigned long long)bn->count)};
        if (uc_broker_run(st->broker, shard, &st->scripts, NULL, NULL, 5, argv, argl) != 0)
            return; /* down again: kept for the next time */
        HASH_DEL(st->burns[shard], bn);
        st->nburns--;
        free(bn);
    }
}

static void burn(struct uc_streams *st, size_t shard, const char *uid, size_t uid_len)
{
    struct burn *bn;
    HASH_FIND(hh, st->burns[shard], uid, uid_len, bn);
    if (!bn && st->nburns < MAX_BURNS && (bn = calloc(1, sizeof *bn + uid_len))) {
        bn->uid_len = uid_len;
        memcpy(bn->uid, uid, uid_len);
        HASH_ADD(hh, st->burns[shard], uid, bn->uid_len, bn);
        st->nburns++;
    }
    if (bn)
        bn->count++;
}

/* ---- keeping ---- */

struct keeping {
    struct uc_streams *st;
    uc_kept_fn *done;
    void *arg;
};

static void on_kept(struct redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct keeping *k = privdata;
    redisReply *reply = r;
    uc_broker_scripts_check(&k->st->scripts, reply);
    uint64_t seq = 0;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        seq = (uint64_t)reply->integer;
    if (seq)
        k->st->stats.mailbox_kept++;
    else
        k->st->stats.mailbox_unkept++;
    k->done(k->arg, seq);
    free(k);
}

static int keep(void *ctx, const char *uid, size_t uid_len, const void *data, size_t len,
                int binary, double seconds, uc_kept_fn *done, void *arg)
{
    struct uc_streams *st = ctx;
    if (len > st->max_bytes)
        return UC_ERR_LIMIT;
    char seq_key[UC_UID_MAX + 16], stream[UC_UID_MAX + 16], chan[UC_UID_MAX + 16];
    char bytes_key[UC_UID_MAX + 16], head[24], keep_ms[24], maxlen[24], maxbytes[24];
    int nseq = key_name(seq_key, sizeof seq_key, "uidcast:seq:", uid, uid_len);
    int nstream = key_name(stream, sizeof stream, "uidcast:k:", uid, uid_len);
    int nchan = key_name(chan, sizeof chan, "uidcast:u:", uid, uid_len);
    int nbytes = key_name(bytes_key, sizeof bytes_key, "uidcast:kb:", uid, uid_len);
    int nhead = snprintf(head, sizeof head, "%s%c", uc_broker_node_id(st->broker),
                         binary ? UC_BROKER_KEPT_BINARY : UC_BROKER_KEPT_TEXT);
    size_t shard = uc_broker_shard_of(st->broker, uid, uid_len);
    struct keeping *k = malloc(sizeof *k);
    if (k && nseq > 0 && nstream > 0 && nchan > 0 && nbytes > 0) {
        flush_burns(st, shard);
        *k = (struct keeping){st, done, arg};
        const char *argv[] = {"EVALSHA", st->scripts.sha[SCRIPT_KEEP],
                              "3",       seq_key,
                              stream,    bytes_key,
                              chan,      head,
                              data,      keep_ms,
                              maxlen,    binary ? "1" : "0",
                              uid,       maxbytes};
        size_t argl[] = {7,
                         40,
                         1,
                         (size_t)nseq,
                         (size_t)nstream,
                         (size_t)nbytes,
                         (size_t)nchan,
                         (size_t)nhead,
                         len,
                         (size_t)snprintf(keep_ms, sizeof keep_ms, "%.0f", seconds * 1000),
                         (size_t)snprintf(maxlen, sizeof maxlen, "%zu", st->max_messages),
                         1,
                         uid_len,
                         (size_t)snprintf(maxbytes, sizeof maxbytes, "%zu", st->max_bytes)};
        if (uc_broker_run(st->broker, shard, &st->scripts, on_kept, k, 14, argv, argl) == 0)
            return 0;
    }
    free(k);
    /* Unreachable: the server sends it here only; its number is spent once Redis is back. */
    st->stats.mailbox_unkept++;
    burn(st, shard, uid, uid_len);
    done(arg, 0);
    return 0;
}

static uint64_t parse_u64(const char *s, size_t len)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    return v;
}

/* ---- what was handed to a connection, and what expired unhanded ---- */

static void delivered(void *ctx, const char *uid, size_t uid_len, uint64_t seq)
{
    struct uc_streams *st = ctx;
    struct mark *m;
    HASH_FIND(hh, st->marks, uid, uid_len, m);
    if (!m) {
        if (!(m = calloc(1, sizeof *m + uid_len)))
            return; /* at worst reported undelivered: a fallback sent once too often */
        m->uid_len = uid_len;
        memcpy(m->uid, uid, uid_len);
        HASH_ADD(hh, st->marks, uid, m->uid_len, m);
        if (!ev_is_active(&st->mark_timer))
            ev_timer_start(st->loop, &st->mark_timer);
    }
    if (seq > m->seq)
        m->seq = seq;
}

static void mark_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct uc_streams *st = w->data;
    struct mark *m, *tmp;
    HASH_ITER(hh, st->marks, m, tmp)
    {
        char key[UC_UID_MAX + 16], seq[24];
        int n = key_name(key, sizeof key, "uidcast:d:", m->uid, m->uid_len);
        const char *argv[] = {"EVALSHA", st->scripts.sha[SCRIPT_MARK], "1", key, seq};
        size_t argl[] = {7, 40, 1, (size_t)n,
                         (size_t)snprintf(seq, sizeof seq, "%llu", (unsigned long long)m->seq)};
        if (n > 0 && uc_broker_run(st->broker, uc_broker_shard_of(st->broker, m->uid, m->uid_len),
                                   &st->scripts, NULL, NULL, 5, argv, argl) != 0) {
            ev_timer_start(st->loop, w); /* its shard is away: again later */
            continue;
        }
        HASH_DEL(st->marks, m);
        free(m);
    }
}

static void on_swept(struct redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct uc_streams *st = privdata;
    redisReply *reply = r;
    uc_broker_scripts_check(&st->scripts, reply);
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 4 < reply->elements; i += 5) {
        redisReply **e = reply->element + i;
        if (e[0]->type != REDIS_REPLY_STRING || e[2]->type != REDIS_REPLY_STRING ||
            e[4]->type != REDIS_REPLY_STRING)
            continue;
        st->stats.mailbox_undelivered++;
        if (st->undelivered)
            st->undelivered(e[0]->str, e[0]->len,
                            e[1]->type == REDIS_REPLY_STRING ? parse_u64(e[1]->str, e[1]->len) : 0,
                            e[2]->str, e[2]->len, e[3]->len == 1 && e[3]->str[0] == '1', e[4]->str,
                            st->arg);
    }
}

static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct uc_streams *st = w->data;
    const char *argv[] = {"EVALSHA", st->scripts.sha[SCRIPT_SWEEP], "0"};
    size_t argl[] = {7, 40, 1};
    for (size_t i = 0; i < uc_broker_shards(st->broker); i++) /* one down: next tick */
        uc_broker_run(st->broker, i, &st->scripts, on_swept, st, 3, argv, argl);
}

/* ---- replaying ---- */

struct replaying {
    struct uc_replay_sink sink;
    struct uc_streams *st;
    uint64_t since;
    size_t uid_len;
    char uid[]; /* for the delivered marks */
};

/* Hands the entries over as the embedded store does (mailbox.c): gaps counted from since, or
 * from the first message handed. Returns the result for sink.done. */
static int hand_over(struct replaying *rp, const redisReply *reply, uint64_t last)
{
    const struct uc_replay_sink *sink = &rp->sink;
    uint64_t expected = rp->since + 1;
    int reference = rp->since > 0;
    for (size_t i = 2; i + 2 < reply->elements; i += 3) {
        const redisReply *id = reply->element[i], *bin = reply->element[i + 1],
                         *data = reply->element[i + 2];
        if (id->type != REDIS_REPLY_STRING || data->type != REDIS_REPLY_STRING)
            return UC_REPLAY_UNAVAILABLE;
        uint64_t seq = parse_u64(id->str, id->len);
        if (seq <= rp->since)
            continue;
        if (reference && seq > expected) {
            rp->st->stats.mailbox_gaps++;
            if (sink->gap(sink->arg, expected, seq - 1))
                return UC_REPLAY_DONE;
        }
        rp->st->stats.mailbox_replayed++;
        delivered(rp->st, rp->uid, rp->uid_len, seq);
        expected = seq + 1;
        reference = 1;
        int binary = bin->type == REDIS_REPLY_STRING && bin->len == 1 && bin->str[0] == '1';
        if (sink->message(sink->arg, seq, data->str, data->len, binary))
            return UC_REPLAY_DONE;
    }
    const redisReply *more = reply->element[1];
    if (more->type == REDIS_REPLY_STRING && more->len == 1 && more->str[0] == '1')
        return UC_REPLAY_MORE;
    if (reference && expected <= last) {
        rp->st->stats.mailbox_gaps++;
        sink->gap(sink->arg, expected, last);
    }
    return UC_REPLAY_DONE;
}

static void on_replay(struct redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct replaying *rp = privdata;
    redisReply *reply = r;
    uc_broker_scripts_check(&rp->st->scripts, reply);
    int result = UC_REPLAY_UNAVAILABLE;
    uint64_t last = 0;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_STRING) {
        last = parse_u64(reply->element[0]->str, reply->element[0]->len);
        result = hand_over(rp, reply, last);
    }
    rp->sink.done(rp->sink.arg, result, last);
    free(rp);
}

static void replay(void *ctx, const char *uid, size_t uid_len, uint64_t since, size_t max_bytes,
                   const struct uc_replay_sink *sink)
{
    struct uc_streams *st = ctx;
    char seq_key[UC_UID_MAX + 16], stream[UC_UID_MAX + 16], start[32], budget[24];
    int nseq = key_name(seq_key, sizeof seq_key, "uidcast:seq:", uid, uid_len);
    int nstream = key_name(stream, sizeof stream, "uidcast:k:", uid, uid_len);
    size_t shard = uc_broker_shard_of(st->broker, uid, uid_len);
    struct replaying *rp = malloc(sizeof *rp + uid_len);
    if (rp && nseq > 0 && nstream > 0) {
        flush_burns(st, shard); /* a gap this node knows of is in Redis before the question */
        *rp = (struct replaying){*sink, st, since, uid_len};
        memcpy(rp->uid, uid, uid_len);
        const char *argv[] = {
            "EVALSHA", st->scripts.sha[SCRIPT_REPLAY], "2", seq_key, stream, start, budget};
        size_t argl[] = {
            7,
            40,
            1,
            (size_t)nseq,
            (size_t)nstream,
            (size_t)snprintf(start, sizeof start, "%llu-0", (unsigned long long)since + 1),
            (size_t)snprintf(budget, sizeof budget, "%zu", max_bytes)};
        if (uc_broker_run(st->broker, shard, &st->scripts, on_replay, rp, 7, argv, argl) == 0)
            return;
    }
    free(rp);
    sink->done(sink->arg, UC_REPLAY_UNAVAILABLE, 0);
}

static void stats(void *ctx, struct uc_stats *out)
{
    struct uc_streams *st = ctx;
    out->mailbox_kept = st->stats.mailbox_kept;
    out->mailbox_unkept = st->stats.mailbox_unkept;
    out->mailbox_replayed = st->stats.mailbox_replayed;
    out->mailbox_gaps = st->stats.mailbox_gaps;
    out->mailbox_undelivered = st->stats.mailbox_undelivered;
}

struct uc_streams *uc_streams_new(struct ev_loop *loop, struct uc_broker *broker,
                                  size_t max_messages, size_t max_bytes,
                                  uc_undelivered_fn *undelivered, void *arg)
{
    struct uc_streams *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->loop = loop;
    st->broker = broker;
    st->max_messages = max_messages;
    st->max_bytes = max_bytes;
    st->undelivered = undelivered;
    st->arg = arg;
    uc_broker_scripts_init(&st->scripts, scripts, NSCRIPTS);
    ev_timer_init(&st->mark_timer, mark_cb, MARK_EVERY, 0.);
    st->mark_timer.data = st;
    ev_timer_init(&st->sweep_timer, sweep_cb, SWEEP_EVERY, SWEEP_EVERY);
    st->sweep_timer.data = st;
    ev_timer_start(loop, &st->sweep_timer);
    return st;
}

struct uc_store uc_streams_store(struct uc_streams *st)
{
    return (struct uc_store){.ctx = st,
                             .delivers = 1,
                             .keep = keep,
                             .delivered = delivered,
                             .replay = replay,
                             .stats = stats};
}

void uc_streams_free(struct uc_streams *st)
{
    if (!st)
        return;
    ev_timer_stop(st->loop, &st->mark_timer);
    ev_timer_stop(st->loop, &st->sweep_timer);
    struct mark *m, *mtmp;
    HASH_ITER(hh, st->marks, m, mtmp)
    {
        HASH_DEL(st->marks, m);
        free(m);
    }
    for (size_t i = 0; i < UC_REDIS_MAX_SHARDS; i++) {
        struct burn *bn, *tmp;
        HASH_ITER(hh, st->burns[i], bn, tmp)
        {
            HASH_DEL(st->burns[i], bn);
            free(bn);
        }
    }
    free(st);
}

static void service_free(void *ctx) { uc_streams_free(ctx); }

struct uc_service uc_streams_service(struct uc_streams *st)
{
    return (struct uc_service){.ctx = st, .free = service_free};
}
