/* buf.c -- refcounted byte buffers (see buf.h).
 *
 * Buffers of up to POOL_STEP * POOL_CLASSES bytes, header included, are made in POOL_STEP
 * steps and kept on a free list per size when freed (up to POOL_KEEP each): a server routing a
 * few hundred thousand messages a second makes and frees as many, and malloc/free were a tenth
 * of the core's work per message. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

#include "freelist.h"

#define POOL_STEP 64
#define POOL_CLASSES 4
#define POOL_KEEP 4096

static struct uc_freelist pool[POOL_CLASSES];

struct uc_buf *uc_buf_new(size_t len)
{
    size_t size = sizeof(struct uc_buf) + len;
    size_t c = (size + POOL_STEP - 1) / POOL_STEP;
    struct uc_buf *b = c <= POOL_CLASSES ? uc_freelist_pop(&pool[c - 1]) : NULL;
    if (!b && !(b = malloc(c <= POOL_CLASSES ? c * POOL_STEP : size)))
        return NULL;
    b->refs = 1;
    b->pool_class = (uint8_t)(c <= POOL_CLASSES ? c : 0);
    b->len = len;
    return b;
}

struct uc_buf *uc_buf_new_copy(const void *data, size_t len)
{
    struct uc_buf *b = uc_buf_new(len);
    if (b && len)
        memcpy(b->data, data, len);
    return b;
}

void uc_buf_unref(struct uc_buf *b)
{
    if (!b || --b->refs != 0)
        return;
    if (b->pool_class)
        uc_freelist_push(&pool[b->pool_class - 1], b, POOL_KEEP);
    else
        free(b);
}

void uc_buf_release_pool(void)
{
    for (unsigned c = 0; c < POOL_CLASSES; c++)
        uc_freelist_drain(&pool[c]);
}
