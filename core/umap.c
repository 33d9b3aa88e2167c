/* umap.c -- keyed lists of links: the uid map and the group map (see umap.h). */
#include "umap.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

struct uc_umap_entry *uc_umap_find(const struct uc_umap *m, const char *key, size_t len)
{
    struct uc_umap_entry *entry = NULL;
    if (len == 0 || len > UC_UID_MAX)
        return NULL; /* never bound; and an empty key may come as a NULL pointer */
    HASH_FIND(hh, m->table, key, len, entry);
    return entry;
}

int uc_umap_bind(struct uc_umap *m, struct uc_umap_link *link, const char *key, size_t len)
{
    if (len == 0 || len > UC_UID_MAX)
        return UC_ERR_INVALID;
    if (link->entry && link->entry->len == len && memcmp(link->entry->name, key, len) == 0)
        return 0;

    struct uc_umap_entry *entry = uc_umap_find(m, key, len);
    if (!entry) {
        entry = malloc(sizeof *entry + len + 1);
        if (!entry)
            return UC_ERR_NOMEM;
        entry->head = entry->tail = NULL;
        entry->count = 0;
        entry->len = len;
        memcpy(entry->name, key, len);
        entry->name[len] = '\0';
        HASH_ADD_KEYPTR(hh, m->table, entry->name, len, entry);
    }
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
        HASH_DEL(m->table, entry);
        free(entry);
    }
}

void uc_umap_destroy(struct uc_umap *m)
{
    struct uc_umap_entry *entry, *tmp;
    HASH_ITER(hh, m->table, entry, tmp)
    {
        HASH_DEL(m->table, entry);
        free(entry);
    }
    m->bound = 0;
}
