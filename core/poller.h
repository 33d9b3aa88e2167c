/* poller.h -- edge-triggered readiness for the WebSocket connections' sockets (see poller.c):
 * one epoll set, watched by the libev loop as a single descriptor. */
#ifndef UC_POLLER_H
#define UC_POLLER_H

#include <ev.h>
#include <stddef.h>
#include <sys/epoll.h>

enum { UC_READABLE = 1, UC_WRITABLE = 2 };

/* A socket became readable and/or writable (an error or hang-up reports both). Edge-triggered:
 * it is said once per change, so the owner reads until a read comes back short, or asks for a
 * recheck. The owner must stay allocated until the loop's next prepare watcher, even if it
 * closes the socket meanwhile: the rest of the round may still name it. */
typedef void uc_ready_fn(void *owner, unsigned events);

#define UC_POLLER_BATCH 512

struct uc_poller {
    struct ev_loop *loop;
    int epfd;
    uc_ready_fn *ready;
    ev_io io; /* on epfd: readable while some socket in the set has news */
    struct epoll_event events[UC_POLLER_BATCH];
};

/* Returns 0, or -1 with err filled. */
int uc_poller_init(struct uc_poller *p, struct ev_loop *loop, uc_ready_fn *ready, char *err,
                   size_t err_size);
void uc_poller_free(struct uc_poller *p);
/* Watches fd for both directions on behalf of owner. Returns 0, or -1 with errno set. */
int uc_poller_add(struct uc_poller *p, int fd, void *owner);
/* Stops watching fd; called before closing it, so that no copy of the descriptor (a forked
 * child's) keeps it in the set. */
void uc_poller_remove(struct uc_poller *p, int fd);
/* The owner stopped reading with input left (a bounded turn): report fd again next round. */
void uc_poller_recheck(struct uc_poller *p, int fd, void *owner);

#endif
