/* buf.c -- refcounted byte buffers (see buf.h). */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

struct uc_buf *uc_buf_new(size_t len)
{
    struct uc_buf *b = malloc(sizeof *b + len);
    if (!b)
        return NULL;
    b->refs = 1;
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
    if (b && --b->refs == 0)
        free(b);
}
