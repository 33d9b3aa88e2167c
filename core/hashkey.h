/* hashkey.h -- the keyed hash under every uthash table in the core. Include this instead of
 * <uthash.h>: uthash's own hash (Jenkins) has no key, so whoever picks the keys -- clients pick
 * their uids, and a kept message can name any uid -- could pick ones that all land in one chain
 * and turn each lookup into a walk over all of them. SipHash under a key drawn once per
 * process (libsodium) makes that impossible. The uid and group maps (umap.c) use it too. */
#ifndef UC_HASHKEY_H
#define UC_HASHKEY_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-2-4 of the bytes under the process's key. */
uint64_t uc_hash_keyed(const void *key, size_t len);

#define HASH_FUNCTION(keyptr, keylen, hashv)                                                       \
    do {                                                                                           \
        uint64_t h64_ = uc_hash_keyed((keyptr), (keylen));                                         \
        (hashv) = (unsigned)(h64_ ^ (h64_ >> 32));                                                 \
    } while (0)
#include <uthash.h>

#endif
