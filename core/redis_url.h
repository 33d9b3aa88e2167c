/* redis_url.h -- what a --redis value names: one Redis server (redis://) or a master that
 * Redis Sentinels know by name (sentinel://), and which of several such shards a key lives on.
 * A leaf: parsing and hashing only, no connection. */
#ifndef UC_REDIS_URL_H
#define UC_REDIS_URL_H

#include <stddef.h>
#include <stdint.h>

#define UC_REDIS_MAX_SENTINELS 8
/* Shards one node may have: each costs two connections to its Redis. */
#define UC_REDIS_MAX_SHARDS 16

struct uc_redis_addr {
    char host[256];
    int port;
};

struct uc_redis_url {
    char *user, *password;       /* AUTH [user] password, owned; NULL when not given */
    long db;                     /* SELECT for the keys; 0 when not given */
    struct uc_redis_addr server; /* redis://: the server; sentinel://: the master found last */
    char master[128];            /* sentinel://: the master's name; empty for redis:// */
    struct uc_redis_addr sentinels[UC_REDIS_MAX_SENTINELS];
    size_t nsentinels;
};

/* The next of the white-space separated URLs of a --redis value, from *p on: its start, its
 * length in *len, and *p moved past it; NULL when none is left. */
const char *uc_redis_url_next(const char **p, size_t *len);

/* Parses one URL of len bytes: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or
 * sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB] (the credentials and
 * the database are the master's; Sentinel's port is 26379 by default). Returns 0, or -1 with a
 * message naming the URL in err (and nothing to free). */
int uc_redis_url_parse(const char *url, size_t len, struct uc_redis_url *out, char *err,
                       size_t err_size);
void uc_redis_url_free(struct uc_redis_url *u);

/* The shard, of n, that key lives on: jump consistent hash (Lamping and Veach, 2014) of the
 * key's 64-bit FNV-1a. The same on every node and every platform; adding a shard at the end
 * moves only about 1/n of the keys. */
size_t uc_redis_shard_of(const char *key, size_t len, size_t n);

#endif
