/* buf.c -- refcounted byte buffers (see buf.h).
 *
 * Buffers of up to POOL_STEP * POOL_CLASSES bytes, header included, are made in POOL_STEP
 * steps and kept on a free list per size when freed (up to POOL_KEEP each): a server routing a
 * few hundred thousand messages a second makes and frees as many, and malloc/free were a tenth
 * of the core's work per message. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

#define POOL_STEP 64
#define POOL_CLASSES 4
#define POOL_KEEP 4096

static struct {
    struct uc_buf *head; /* each free buffer's data begins with the next one's address */
    unsigned count;
} pool[POOL_CLASSES];

struct uc_buf *uc_buf_new(size_t len)
{
    size_t size = sizeof(struct uc_buf) + len;
    size_t c = (size + POOL_STEP - 1) / POOL_STEP;
    struct uc_buf *b;
    if (c <= POOL_CLASSES && pool[c - 1].head) {
        b = pool[c - 1].head;
        memcpy(&pool[c - 1].head, b->data, sizeof b);
        pool[c - 1].count--;
    } else {
        b = malloc(c <= POOL_CLASSES ? c * POOL_STEP : size);
        if (!b)
            return NULL;
    }
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
    unsigned c = b->pool_class;
    if (!c || pool[c - 1].count >= POOL_KEEP) {
        free(b);
        return;
    }
    memcpy(b->data, &pool[c - 1].head, sizeof b);
    pool[c - 1].head = b;
    pool[c - 1].count++;
}

void uc_buf_release_pool(void)
{
    for (unsigned c = 0; c < POOL_CLASSES; c++) {
        while (pool[c].head) {
            struct uc_buf *b = pool[c].head;
            memcpy(&pool[c].head, b->data, sizeof b);
            free(b);
        }
        pool[c].count = 0;
    }
}
