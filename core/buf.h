/* buf.h -- refcounted immutable byte buffers, shared by every output queue that sends them.
 *
 * A broadcast is framed once into one uc_buf; each receiving connection's queue takes a
 * reference instead of a copy. The last uc_buf_unref frees it (a small one goes back to a free
 * list: a routed chat message is one small buffer made and freed). */
#ifndef UC_BUF_H
#define UC_BUF_H

#include <stddef.h>
#include <stdint.h>

struct uc_buf {
    uint32_t refs;
    uint8_t pool_class; /* buf.c's: which free list it goes back to, 0 for none */
    size_t len;
    uint8_t data[];
};

/* Allocates a buffer of len bytes with one reference held by the caller; NULL when out of memory.
 */
struct uc_buf *uc_buf_new(size_t len);
/* Same, filled with a copy of data. */
struct uc_buf *uc_buf_new_copy(const void *data, size_t len);

static inline struct uc_buf *uc_buf_ref(struct uc_buf *b)
{
    b->refs++;
    return b;
}

void uc_buf_unref(struct uc_buf *b);

/* Frees the small buffers kept for reuse; for leak checks at exit. */
void uc_buf_release_pool(void);

#endif
