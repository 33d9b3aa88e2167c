/* umap.h -- a map from a key (a uid or a group name) to the links bound to it.
 *
 * The core keeps two: uid -> the connections bound to that uid, and group -> the memberships
 * of that group. A link is embedded in what owns it (a connection's uid link, a group
 * membership) and points back at its owner, so binding allocates nothing per link, only one
 * entry per distinct key (freed when its last link leaves). The map never owns links or their
 * owners.
 *
 * Keys are hashed with SipHash under the process's random key (hashkey.h), so clients that
 * choose their own uids cannot choose colliding ones. The table is open-addressed (see
 * umap.c): a lookup reads one slot's cache line and then the entry it finds. */
#ifndef UC_UMAP_H
#define UC_UMAP_H

#include <stddef.h>
#include <stdint.h>

/* Longest key the core accepts (uids and group names); the default script is stricter (128). */
#define UC_UID_MAX 1024

struct uc_umap_entry {
    /* Every entry, in the order its key was first bound (a utlist DL list): walks go that way
     * (see umap.c). */
    struct uc_umap_entry *older, *newer;
    struct uc_umap_link *head; /* the bound links, oldest first */
    struct uc_umap_link *tail;
    uint32_t count; /* links bound */
    uint32_t len;
    char name[]; /* len bytes, plus a NUL for logging */
};

struct uc_umap_link {
    struct uc_umap_entry *entry; /* NULL while unbound */
    struct uc_umap_link *prev, *next;
    void *owner; /* what the link belongs to (a connection), set by the owner */
};

struct uc_umap_slot; /* umap.c */

/* All zero is an empty map; it allocates on its first bind and frees its table again when its
 * last key leaves. */
struct uc_umap {
    struct uc_umap_slot *slots;
    size_t mask;                  /* slots - 1; a power of two minus one */
    size_t keys;                  /* distinct keys bound */
    struct uc_umap_entry *oldest; /* the entries' list; its older is the newest */
    size_t bound;                 /* links bound, over every key */
    unsigned walking;             /* inside uc_umap_each: emptied entries stay until it returns */
    size_t emptied;               /* entries emptied during the walk, still in their slots */
    /* Optional: told the key's new link count after every change (added: a link came, else
     * one left), so count 1 with added is its first link and 0 is after its last. The cluster
     * broker subscribes and unsubscribes there, and keeps the node's presence in Redis. */
    void (*on_count)(const char *key, size_t len, size_t count, int added, void *ctx);
    void *ctx;
};

/* Binds link to key (any bytes, 1..UC_UID_MAX), leaving the key it had. Binding to the key it
 * already has is a no-op. Returns 0, UC_ERR_INVALID (length) or UC_ERR_NOMEM (link unchanged). */
int uc_umap_bind(struct uc_umap *m, struct uc_umap_link *link, const char *key, size_t len);

/* Unlinks link from its key; the key disappears with its last link. No-op when unbound. */
void uc_umap_unbind(struct uc_umap *m, struct uc_umap_link *link);

/* The entry of key, or NULL when nothing is bound to it. Borrowed until the next bind/unbind. */
struct uc_umap_entry *uc_umap_find(const struct uc_umap *m, const char *key, size_t len);

/* Calls fn with every entry that has links, oldest key first. fn may unbind links (an entry
 * left empty is removed once the walk is over) but must not bind any. */
void uc_umap_each(struct uc_umap *m, void (*fn)(struct uc_umap_entry *e, void *ctx), void *ctx);

/* Number of distinct keys bound. */
static inline size_t uc_umap_keys(const struct uc_umap *m) { return m->keys; }

/* Frees every entry, leaving all links dangling: only for tearing the whole server down. */
void uc_umap_destroy(struct uc_umap *m);

#endif
