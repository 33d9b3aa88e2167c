/* outq.c -- bounded output queues of shared buffers (see outq.h).
 *
 * Nodes come from a process-wide freelist: a busy server queues and flushes millions of
 * messages a second, and malloc/free per message would be the hottest thing in the profile. */
#include "outq.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "err.h"
#include "freelist.h"

struct uc_outq_node {
    struct uc_outq_node *next;
    struct uc_buf *buf;
    size_t off; /* bytes of buf already written */
};

/* Enough iovecs to drain a typical backlog in one system call; IOV_MAX is 1024 on Linux. */
#define OUTQ_MAX_IOV 64
/* Small frames queued back to back are copied into one scratch buffer and written as one
 * iovec: the kernel's cost per iovec (~0.1 us) is more than copying a few hundred bytes, and a
 * burst of chat messages or broadcasts is many small frames. Larger frames, often shared
 * between thousands of queues, go as they are. */
#define OUTQ_COALESCE_MAX 512
#define OUTQ_SCRATCH 16384
/* Freed nodes kept for reuse; beyond this they go back to malloc. */
#define OUTQ_POOL_MAX 65536

static struct uc_freelist pool;

static struct uc_outq_node *node_get(void)
{
    struct uc_outq_node *n = uc_freelist_pop(&pool);
    return n ? n : malloc(sizeof *n);
}

int uc_outq_push(struct uc_outq *q, struct uc_buf *buf)
{
    struct uc_outq_node *n = node_get();
    if (!n)
        return UC_ERR_NOMEM;
    n->next = NULL;
    n->buf = uc_buf_ref(buf);
    n->off = 0;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    q->bytes += buf->len;
    q->cost += buf->len + UC_OUTQ_ENTRY_COST;
    return 0;
}

static void pop_head(struct uc_outq *q)
{
    struct uc_outq_node *n = q->head;
    q->head = n->next;
    if (!q->head)
        q->tail = NULL;
    q->cost -= n->buf->len + UC_OUTQ_ENTRY_COST;
    uc_buf_unref(n->buf);
    uc_freelist_push(&pool, n, OUTQ_POOL_MAX);
}

static int small(const struct uc_outq_node *n)
{
    return n && n->buf->len - n->off <= OUTQ_COALESCE_MAX;
}

/* The iovecs for the queue's head: the bytes in queue order, so a write of any length maps
 * back onto the nodes as it would without the copies. Returns the count; *asked the bytes. */
static int gather(const struct uc_outq *q, struct iovec *iov, size_t *asked)
{
    static uint8_t scratch[OUTQ_SCRATCH]; /* written out before gather runs again */
    size_t used = 0;
    int cnt = 0, merging = 0;
    *asked = 0;
    for (const struct uc_outq_node *n = q->head; n; n = n->next) {
        uint8_t *p = n->buf->data + n->off;
        size_t len = n->buf->len - n->off;
        int copy = small(n) && used + len <= OUTQ_SCRATCH && (merging || small(n->next));
        if (copy && merging) {
            memcpy(scratch + used, p, len);
            iov[cnt - 1].iov_len += len;
        } else {
            if (cnt == OUTQ_MAX_IOV)
                break;
            if (copy) {
                memcpy(scratch + used, p, len);
                p = scratch + used;
            }
            iov[cnt++] = (struct iovec){.iov_base = p, .iov_len = len};
        }
        if (copy)
            used += len;
        merging = copy;
        *asked += len;
    }
    return cnt;
}

int uc_outq_flush_with(struct uc_outq *q, uc_outq_writer writer, void *ctx)
{
    while (q->head) {
        struct iovec iov[OUTQ_MAX_IOV];
        size_t asked;
        int cnt = gather(q, iov, &asked);
        ssize_t w = writer(ctx, iov, cnt);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return UC_AGAIN;
            if (errno == EINTR)
                continue;
            return UC_ERR_SYS;
        }
        size_t left = (size_t)w;
        q->bytes -= left;
        while (left) {
            size_t rest = q->head->buf->len - q->head->off;
            if (left < rest) {
                q->head->off += left;
                break;
            }
            left -= rest;
            pop_head(q);
        }
        /* A short write means the socket buffer is full; asking again would only get EAGAIN. */
        if ((size_t)w < asked)
            return UC_AGAIN;
    }
    return 0;
}

/* send/sendmsg, not writev: a socket's write through the file layer pays for what files need
 * (position, write notifications) on every call; and MSG_NOSIGNAL, so a peer gone is an
 * error, never a SIGPIPE. */
static ssize_t fd_writer(void *ctx, const struct iovec *iov, int iovcnt)
{
    int fd = *(int *)ctx;
    if (iovcnt == 1)
        return send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    return sendmsg(fd, &msg, MSG_NOSIGNAL);
}

int uc_outq_flush(struct uc_outq *q, int fd) { return uc_outq_flush_with(q, fd_writer, &fd); }

void uc_outq_clear(struct uc_outq *q)
{
    while (q->head)
        pop_head(q);
    q->bytes = 0;
    q->cost = 0;
}

void uc_outq_release_pool(void) { uc_freelist_drain(&pool); }
