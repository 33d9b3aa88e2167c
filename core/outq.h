/* outq.h -- a connection's bounded output queue of shared buffers, flushed with writev.
 *
 * The queue holds references to uc_buf (never copies) plus the offset already written of the
 * first one. It does not enforce the byte cap itself: the caller compares uc_outq_bytes() with
 * its limit before pushing, because what to do on overflow (close the slow reader) is policy of
 * the connection, not of the queue. */
#ifndef UC_OUTQ_H
#define UC_OUTQ_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "buf.h"
#include "err.h"

struct uc_outq_node;

/* What one queued buffer costs in memory beyond its bytes: the queue node and the buffer's
 * header, each rounded up by malloc. A queue of tiny frames (pongs, empty messages) is
 * mostly this. */
#define UC_OUTQ_ENTRY_COST 64

struct uc_outq {
    struct uc_outq_node *head, *tail;
    size_t bytes; /* bytes still to write, across every node */
    size_t cost;  /* memory held: each node's bytes plus UC_OUTQ_ENTRY_COST */
};

/* Appends buf to the queue, taking a new reference (the caller keeps its own).
 * Returns 0, or UC_ERR_NOMEM (nothing queued). */
int uc_outq_push(struct uc_outq *q, struct uc_buf *buf);

static inline size_t uc_outq_bytes(const struct uc_outq *q) { return q->bytes; }
/* What the queue holds in memory (a buffer shared with other queues counts in each): the
 * measure a cap on a connection's output must use, since wire bytes undercount small frames. */
static inline size_t uc_outq_cost(const struct uc_outq *q) { return q->cost; }
static inline int uc_outq_empty(const struct uc_outq *q) { return q->head == NULL; }

/* Writes as much as the writer accepts. writer has writev's contract.
 * Returns 0 when the queue is now empty, UC_AGAIN when the writer would block with bytes left,
 * or UC_ERR_SYS on a write error (errno set; the queue keeps what was not written). */
typedef ssize_t (*uc_outq_writer)(void *ctx, const struct iovec *iov, int iovcnt);
int uc_outq_flush_with(struct uc_outq *q, uc_outq_writer writer, void *ctx);

/* uc_outq_flush_with() on a file descriptor with writev(2). */
int uc_outq_flush(struct uc_outq *q, int fd);

/* Drops every queued buffer (releasing the references). The queue is empty and reusable. */
void uc_outq_clear(struct uc_outq *q);

/* Releases the node freelist kept for reuse; for leak checks at exit. */
void uc_outq_release_pool(void);

#endif
