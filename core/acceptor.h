/* acceptor.h -- a listening socket's accept loop (see acceptor.c), shared by the WebSocket
 * listener and the push API's: bounded batches and one answer to running out of files. */
#ifndef UC_ACCEPTOR_H
#define UC_ACCEPTOR_H

#include <ev.h>
#include <sys/socket.h>

/* A connection accepted: fd non-blocking, close-on-exec and TCP_NODELAY, now the callee's. */
typedef void uc_accept_fn(void *ctx, int fd, const struct sockaddr *addr);

struct uc_acceptor {
    struct ev_loop *loop;
    int fd; /* the listening socket: the caller's, which closes it */
    unsigned batch;
    uc_accept_fn *accepted;
    void *ctx;
    const char *name; /* for the log: "WebSocket", "push API" */
    ev_io io;
    ev_timer retry;     /* resumes accepting after running out of files without a spare */
    int spare;          /* a descriptor to give up when out of files, or -1 */
    ev_tstamp last_log; /* of running out of files: once a second at most */
};

/* Sets up (not started) an acceptor of fd taking at most batch connections per wake-up. */
void uc_acceptor_init(struct uc_acceptor *a, struct ev_loop *loop, int fd, unsigned batch,
                      const char *name, uc_accept_fn *accepted, void *ctx);
void uc_acceptor_start(struct uc_acceptor *a);
/* Stops accepting (a graceful stop), for good. */
void uc_acceptor_stop(struct uc_acceptor *a);
/* Stops and lets the spare descriptor go; fd stays the caller's. */
void uc_acceptor_free(struct uc_acceptor *a);

#endif
