/* freelist.h -- a bounded list of freed blocks of one size, kept for the next allocation of that
 * size: what the output queue's nodes, small buffers and the Lua state's small blocks each use,
 * where malloc/free per message would show in the profile. A free block's first bytes hold the
 * next one's address, so a block must be at least a pointer wide. Header-only: the core and the
 * Lua layer both use it, and neither may call into the other's files. */
#ifndef UC_FREELIST_H
#define UC_FREELIST_H

#include <stdlib.h>
#include <string.h>

struct uc_freelist {
    void *head;
    unsigned count;
};

/* A kept block, or NULL when the list is empty. */
static inline void *uc_freelist_pop(struct uc_freelist *l)
{
    void *p = l->head;
    if (p) {
        memcpy(&l->head, p, sizeof l->head);
        l->count--;
    }
    return p;
}

/* Keeps p, or frees it when the list already holds keep blocks. */
static inline void uc_freelist_push(struct uc_freelist *l, void *p, unsigned keep)
{
    if (l->count >= keep) {
        free(p);
        return;
    }
    memcpy(p, &l->head, sizeof l->head);
    l->head = p;
    l->count++;
}

/* Frees every kept block. */
static inline void uc_freelist_drain(struct uc_freelist *l)
{
    void *p;
    while ((p = uc_freelist_pop(l)))
        free(p);
}

#endif
