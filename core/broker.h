/* broker.h -- the cluster engine (--redis): deliveries cross processes and hosts through Redis
 * pub/sub, over one Redis or several (shards, each a server or a master behind Sentinel). Each
 * node subscribes one channel per uid and per group it holds locally, on that key's shard, plus
 * one for broadcasts; a delivery is made locally at once and published for the others, and a
 * node ignores the echo of its own publications, so every connection gets a message exactly
 * once.
 *
 * The broker reaches the server through its public API (deliveries from other nodes,
 * confirmed subscriptions) and the server reaches the broker only through the relay it is
 * given (uc_broker_relay): main composes the two. */
#ifndef UC_BROKER_H
#define UC_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "redis_url.h"
#include "server.h"

struct uc_broker;

/* Parses the n values of --redis (each one or more URLs separated by white space, see
 * redis_url.h; each URL a shard, in order) and starts connecting; reconnects with back-off on
 * its own. Returns NULL with a message in err for a bad URL. */
struct uc_broker *uc_broker_new(struct uc_server *srv, const char *const *urls, size_t n, char *err,
                                size_t err_size);
/* How many shards, and which one holds a uid's keys (its channel, presence, kept messages). */
size_t uc_broker_shards(const struct uc_broker *b);
size_t uc_broker_shard_of(const struct uc_broker *b, const char *uid, size_t len);

/* What to give uc_server_set_relay: publications, the keys this node holds (it subscribes a
 * key's channel with its first local member, unsubscribes after its last, and keeps this
 * node's presence in Redis), subscriptions awaiting confirmation, presence questions. */
struct uc_relay uc_broker_relay(struct uc_broker *b);

/* What to give uc_server_attach: the server frees the broker with itself. */
struct uc_service uc_broker_service(struct uc_broker *b);

/* For the cluster's store of kept messages (streams.c): runs a command on a shard's publishing
 * connection, fn(ac, reply, privdata) answering it (reply NULL when the connection went down
 * with it, or at teardown). Returns 0, or -1 when that Redis is not reachable now (fn not
 * called). */
struct redisAsyncContext;
int uc_broker_command(struct uc_broker *b, size_t shard,
                      void (*fn)(struct redisAsyncContext *, void *, void *), void *privdata,
                      int argc, const char **argv, const size_t *argvlen);
/* How many times this node's presence was written to a shard whole (each connect, and when
 * Redis had lost it): what depends on it (online/offline bookkeeping) is resynchronised then. */
uint64_t uc_broker_presence_epoch(const struct uc_broker *b, size_t shard);
/* Lua scripts a user of the broker runs by their SHA1 (EVALSHA <sha> ...), loaded once per
 * connection to Redis (SCRIPT LOAD, pipelined ahead of the first use): Redis forgets them
 * when it restarts, and a NOSCRIPT answer (SCRIPT FLUSH) makes the next run load them again. */
#define UC_BROKER_MAX_SCRIPTS 8
struct uc_broker_scripts {
    size_t n;
    const char *const *texts;
    char sha[UC_BROKER_MAX_SCRIPTS][41];  /* each script's SHA1, hex: argv[1] of an EVALSHA */
    uint64_t loaded[UC_REDIS_MAX_SHARDS]; /* per shard, the connection they were loaded on */
};
void uc_broker_scripts_init(struct uc_broker_scripts *s, const char *const *texts, size_t n);
/* uc_broker_command, loading the scripts first on a connection they are not loaded on. */
int uc_broker_run(struct uc_broker *b, size_t shard, struct uc_broker_scripts *s,
                  void (*fn)(struct redisAsyncContext *, void *, void *), void *privdata, int argc,
                  const char **argv, const size_t *argvlen);
/* Looks at a script's reply: NOSCRIPT means loading them again before the next run. */
struct redisReply;
void uc_broker_scripts_check(struct uc_broker_scripts *s, const struct redisReply *reply);
/* Which connection to a shard's Redis commands go on now: a number that changes with each
 * reconnect, 0 while there is none (what Redis holds per connection, loaded scripts, must be
 * redone). */
uint64_t uc_broker_connection(const struct uc_broker *b, size_t shard);
/* This node's id (16 hex digits), as it heads each publication. */
const char *uc_broker_node_id(const struct uc_broker *b);

/* A publication of a kept message is "<node id><k|K><seq>:<payload>" (K: binary), made by
 * the store's script with the number Redis gave it; every node, the sender included, delivers
 * it from its subscription, so each node delivers a uid's kept messages in number order. */
#define UC_BROKER_KEPT_TEXT 'k'
#define UC_BROKER_KEPT_BINARY 'K'

/* Leaves the cluster (its presence withdrawn at once) and frees everything. */
void uc_broker_free(struct uc_broker *b);

#endif
