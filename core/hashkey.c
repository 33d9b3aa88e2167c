/* hashkey.c -- the process's hash key and the hash under it, for uthash tables and the uid map
 * (see hashkey.h). */
#include "hashkey.h"

#include <sodium.h>

static unsigned char key[crypto_shorthash_KEYBYTES];
static int keyed;

uint64_t uc_hash_keyed(const void *data, size_t len)
{
    /* Drawn on first use; worker processes forked later share it, which is harmless: what
     * matters is that no client can know it. sodium_init fails only without a random source,
     * and then the zero key still hashes correctly, just without the protection. */
    if (!keyed) {
        if (sodium_init() >= 0)
            crypto_shorthash_keygen(key);
        keyed = 1;
    }
    uint64_t h;
    crypto_shorthash((unsigned char *)&h, data, len, key);
    return h;
}
