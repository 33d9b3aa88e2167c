/* umap.c -- keyed lists of links: the uid map and the group map (see umap.h).
 *
 * Open addressing with linear probing rather than uthash's chains: every routed message looks
 * its target up here, and a chained lookup walks two to three entries on average (uthash
 * grows its buckets only when one chain passes ten), each a cache miss, then reads the key
 * from the entry's second line. Here the slots are an array of (hash, entry) pairs, four to a
 * cache line, and the full 64-bit hash is compared before the entry is touched: one line of
 * slots, then the entry itself. The slot (16 bytes at a load of at most 3/4) and the entry's
 * two list pointers replace uthash's 56-byte handle in every entry.
 *
 * Removal shifts the rest of the probe run back (no tombstones), so a lookup never reads
 * further than the run its key hashes into.
 *
 * Walks follow the entries' list, in the order keys were first bound, not the slots: clients
 * that logged in together sit together in memory, and so do their sockets in the kernel, and a
 * broadcast's catch-up over thousands of them (which also orders their writes) then reads
 * memory in order. In hash order it cost 7% more CPU per delivery, in user mode and kernel. */
#include "umap.h"

#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "err.h"
#include "hashkey.h"

struct uc_umap_slot {
    uint64_t hash;
    struct uc_umap_entry *entry; /* NULL: free */
};

#define MIN_SLOTS 16

/* The slot holding key, or the free slot ending its probe run. */
static struct uc_umap_slot *probe(const struct uc_umap *m, uint64_t hash, const char *key,
                                  size_t len)
{
    for (size_t i = hash & m->mask;; i = (i + 1) & m->mask) {
        struct uc_umap_slot *s = &m->slots[i];
        if (!s->entry ||
            (s->hash == hash && s->entry->len == len && memcmp(s->entry->name, key, len) == 0))
            return s;
    }
}

/* Moves every entry into a table of n slots; -1 (nothing changed) when out of memory. */
static int resize(struct uc_umap *m, size_t n)
{
    struct uc_umap_slot *slots = calloc(n, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; m->slots && i <= m->mask; i++) {
        if (!m->slots[i].entry)
            continue;
        size_t j = m->slots[i].hash & (n - 1);
        while (slots[j].entry)
            j = (j + 1) & (n - 1);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->mask = n - 1;
    return 0;
}

/* Frees slot's entry and closes the gap: each later entry of the run that may live earlier
 * (its home slot is not cyclically between the gap and itself) moves into the gap. */
static void remove_slot(struct uc_umap *m, struct uc_umap_slot *slot)
{
    DL_DELETE2(m->oldest, slot->entry, older, newer);
    free(slot->entry);
    size_t gap = (size_t)(slot - m->slots);
    for (size_t i = (gap + 1) & m->mask; m->slots[i].entry; i = (i + 1) & m->mask) {
        size_t home = m->slots[i].hash & m->mask;
        if (((i - home) & m->mask) >= ((i - gap) & m->mask)) {
            m->slots[gap] = m->slots[i];
            gap = i;
        }
    }
    m->slots[gap].entry = NULL;
}

/* After the last key leaves, the table goes too; a table far larger than its keys shrinks (a
 * burst of logins should not hold its memory forever). */
static void settle(struct uc_umap *m)
{
    if (m->keys == 0) {
        free(m->slots);
        m->slots = NULL;
        m->mask = 0;
    } else if (m->mask + 1 > MIN_SLOTS && m->keys < (m->mask + 1) / 8) {
        resize(m, (m->mask + 1) / 2); /* out of memory: stays as large as it is */
    }
}

struct uc_umap_entry *uc_umap_find(const struct uc_umap *m, const char *key, size_t len)
{
    if (len == 0 || len > UC_UID_MAX || !m->slots)
        return NULL; /* never bound; and an empty key may come as a NULL pointer */
    struct uc_umap_entry *e = probe(m, uc_hash_keyed(key, len), key, len)->entry;
    return e && e->count ? e : NULL; /* emptied during a walk: already gone */
}

int uc_umap_bind(struct uc_umap *m, struct uc_umap_link *link, const char *key, size_t len)
{
    if (len == 0 || len > UC_UID_MAX)
        return UC_ERR_INVALID;
    if (link->entry && link->entry->len == len && memcmp(link->entry->name, key, len) == 0)
        return 0;

    /* Room first, so that the slot found below stays where it is. */
    if ((!m->slots || (m->keys + 1) * 4 > (m->mask + 1) * 3) &&
        resize(m, m->slots ? 2 * (m->mask + 1) : MIN_SLOTS) != 0)
        return UC_ERR_NOMEM;
    uint64_t hash = uc_hash_keyed(key, len);
    struct uc_umap_slot *slot = probe(m, hash, key, len);
    struct uc_umap_entry *entry = slot->entry;
    if (!entry) {
        entry = malloc(sizeof *entry + len + 1);
        if (!entry) {
            settle(m);
            return UC_ERR_NOMEM;
        }
        entry->head = entry->tail = NULL;
        entry->count = 0;
        entry->len = (uint32_t)len;
        memcpy(entry->name, key, len);
        entry->name[len] = '\0';
        slot->hash = hash;
        slot->entry = entry;
        DL_APPEND2(m->oldest, entry, older, newer);
    }
    if (entry->count == 0)
        m->keys++; /* new (or, against the rule, emptied in a walk still going) */
    /* Leave the old key only once the new entry exists, so a failed bind changes nothing. */
    uc_umap_unbind(m, link);

    link->entry = entry;
    link->next = NULL;
    link->prev = entry->tail;
    if (entry->tail)
        entry->tail->next = link;
    else
        entry->head = link;
    entry->tail = link;
    entry->count++;
    m->bound++;
    if (m->on_count)
        m->on_count(entry->name, len, entry->count, 1, m->ctx);
    return 0;
}

void uc_umap_unbind(struct uc_umap *m, struct uc_umap_link *link)
{
    struct uc_umap_entry *entry = link->entry;
    if (!entry)
        return;
    if (link->prev)
        link->prev->next = link->next;
    else
        entry->head = link->next;
    if (link->next)
        link->next->prev = link->prev;
    else
        entry->tail = link->prev;
    link->entry = NULL;
    link->prev = link->next = NULL;
    m->bound--;
    entry->count--;
    if (m->on_count)
        m->on_count(entry->name, entry->len, entry->count, 0, m->ctx);
    if (entry->count == 0) {
        m->keys--;
        if (m->walking) {
            m->emptied++;
        } else {
            remove_slot(m,
                        probe(m, uc_hash_keyed(entry->name, entry->len), entry->name, entry->len));
            settle(m);
        }
    }
}

void uc_umap_each(struct uc_umap *m, void (*fn)(struct uc_umap_entry *e, void *ctx), void *ctx)
{
    m->walking++;
    for (struct uc_umap_entry *e = m->oldest; e; e = e->newer)
        if (e->count)
            fn(e, ctx);
    if (--m->walking || !m->emptied)
        return; /* a broadcast's catch-up seldom empties any: no pass over the slots then */
    /* Entries emptied meanwhile. A removal only moves entries to earlier slots, or from the
     * run's start around to the table's end, past what was already kept: each slot is checked
     * until it holds a kept entry or none. */
    for (size_t i = 0; m->slots && i <= m->mask; i++)
        while (m->slots[i].entry && !m->slots[i].entry->count)
            remove_slot(m, &m->slots[i]);
    m->emptied = 0;
    settle(m);
}

void uc_umap_destroy(struct uc_umap *m)
{
    for (size_t i = 0; m->slots && i <= m->mask; i++)
        free(m->slots[i].entry);
    free(m->slots);
    m->slots = NULL;
    m->oldest = NULL;
    m->mask = 0;
    m->keys = 0;
    m->bound = 0;
}
