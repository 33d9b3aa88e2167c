/* broker.h -- the cluster engine (--redis): deliveries cross processes and hosts through Redis
 * pub/sub. Each node subscribes one channel per uid and per group it holds locally, plus one
 * for broadcasts; a delivery is made locally at once and published for the others, and a node
 * ignores the echo of its own publications, so every connection gets a message exactly once. */
#ifndef UC_BROKER_H
#define UC_BROKER_H

#include <stddef.h>
#include <stdint.h>

struct uc_server;
struct uc_broker;

enum uc_broker_kind { UC_BROKER_UID = 'u', UC_BROKER_GROUP = 'g', UC_BROKER_ALL = 'a' };

/* Parses url (redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]) and starts connecting; reconnects
 * with back-off on its own. Returns NULL with a message in err for a bad URL. */
struct uc_broker *uc_broker_new(struct uc_server *srv, const char *url, char *err, size_t err_size);
void uc_broker_free(struct uc_broker *b);

/* Publishes a delivery made locally so that the other nodes make theirs. key is the uid or
 * group (ignored for UC_BROKER_ALL). Counted as dropped while Redis is unreachable. */
void uc_broker_publish(struct uc_broker *b, enum uc_broker_kind kind, const char *key,
                       size_t key_len, const void *data, size_t len, int binary);

/* Told every change of a local uid's or group's connection count by the maps: subscribes a
 * key's channel with its first local member and unsubscribes after its last, and keeps this
 * node's presence (uid -> local connections) in Redis for uc_broker_online. */
void uc_broker_key_count(struct uc_broker *b, enum uc_broker_kind kind, const char *key,
                         size_t key_len, size_t count, int added);

/* Asks Redis how many connections uid has on every live node. done(arg, count) runs once,
 * later, with count < 0 when Redis could not answer (down, or the broker is being freed).
 * Returns -1 without calling done when Redis is not connected now. */
int uc_broker_online(struct uc_broker *b, const char *uid, size_t uid_len,
                     void (*done)(void *arg, long long count), void *arg);

/* Nonzero while SUBSCRIBE commands await Redis's confirmation: the number the last one sent
 * has; uc_conn_release_held(srv, n) is called as confirmations arrive (n = UINT64_MAX when the
 * subscriber connection is gone and there is nothing to wait for). */
uint64_t uc_broker_subscribing(const struct uc_broker *b);

#endif
