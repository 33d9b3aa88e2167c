/* umap.h -- the uid map: uid -> every connection bound to it, and connection -> its uid.
 *
 * A connection embeds one struct uc_umap_link; the map links it into its uid's list, so
 * binding allocates nothing per connection, only one entry per distinct uid (freed when its
 * last connection leaves). Lookups are O(1) on average (uthash). The map never owns
 * connections: callers get back from a link to their connection with container_of. */
#ifndef UC_UMAP_H
#define UC_UMAP_H

#include <stddef.h>

#include "uthash.h"

/* Longest uid the core accepts; the default script is stricter (128). */
#define UC_UID_MAX 1024

struct uc_uid {
    UT_hash_handle hh;
    struct uc_umap_link *head; /* the bound links, newest last */
    struct uc_umap_link *tail;
    size_t count;
    size_t len;
    char name[]; /* len bytes, plus a NUL for logging */
};

struct uc_umap_link {
    struct uc_uid *uid; /* NULL while unbound */
    struct uc_umap_link *prev, *next;
};

struct uc_umap {
    struct uc_uid *table;
    size_t bound; /* links bound, over every uid */
};

/* Binds link to uid (any bytes, 1..UC_UID_MAX), leaving the uid it had. Binding to the uid it
 * already has is a no-op. Returns 0, UC_ERR_INVALID (length) or UC_ERR_NOMEM (link unchanged). */
int uc_umap_bind(struct uc_umap *m, struct uc_umap_link *link, const char *uid, size_t len);

/* Unlinks link from its uid; the uid disappears with its last link. No-op when unbound. */
void uc_umap_unbind(struct uc_umap *m, struct uc_umap_link *link);

/* The entry of uid, or NULL when nobody is bound to it. Borrowed until the next bind/unbind. */
struct uc_uid *uc_umap_find(const struct uc_umap *m, const char *uid, size_t len);

static inline size_t uc_umap_uids(const struct uc_umap *m) { return HASH_COUNT(m->table); }

/* Frees every entry, leaving all links dangling: only for tearing the whole server down. */
void uc_umap_destroy(struct uc_umap *m);

#endif
