/* acceptor.c -- accepting connections on a listening socket, for every listener of the server.
 *
 * A wake-up accepts at most a batch, so that a busy listener does not starve established
 * connections. Running out of descriptors (EMFILE) is the trap of a level-triggered listener:
 * the pending connection wakes it forever. The answer, as libev's documentation recommends:
 * give up a spare descriptor kept for the purpose, accept the pending connection and close it
 * at once, take the spare back; without a spare, pause accepting for 100 ms. Either way it is
 * logged once a second at most. */
#include "acceptor.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#include "container.h"
#include "log.h"

static void take_spare(struct uc_acceptor *a)
{
    if (a->spare < 0)
        a->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void shed_one(struct uc_acceptor *a)
{
    ev_tstamp now = ev_now(a->loop);
    if (now - a->last_log >= 1.0) {
        uc_warn("%s: out of file descriptors: refusing new connections", a->name);
        a->last_log = now;
    }
    if (a->spare >= 0) {
        close(a->spare);
        a->spare = -1;
        int fd = accept(a->fd, NULL, NULL);
        if (fd >= 0)
            close(fd);
        take_spare(a);
    }
    if (a->spare < 0) {
        ev_io_stop(a->loop, &a->io);
        ev_timer_start(a->loop, &a->retry);
    }
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct uc_acceptor *a = container_of(w, struct uc_acceptor, io);
    for (unsigned i = 0; i < a->batch; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(a->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                shed_one(a);
            else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                     errno != ECONNABORTED)
                uc_warn("%s: accept: %s", a->name, strerror(errno));
            return;
        }
        /* Every listener here answers small messages at once: no Nagle delay. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        a->accepted(a->ctx, fd, (struct sockaddr *)&ss);
    }
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct uc_acceptor *a = container_of(w, struct uc_acceptor, retry);
    take_spare(a);
    ev_io_start(loop, &a->io);
}

void uc_acceptor_init(struct uc_acceptor *a, struct ev_loop *loop, int fd, unsigned batch,
                      const char *name, uc_accept_fn *accepted, void *ctx)
{
    *a = (struct uc_acceptor){.loop = loop,
                              .fd = fd,
                              .batch = batch,
                              .accepted = accepted,
                              .ctx = ctx,
                              .name = name,
                              .spare = -1};
    ev_io_init(&a->io, accept_cb, fd, EV_READ);
    ev_timer_init(&a->retry, retry_cb, 0.1, 0.);
}

void uc_acceptor_start(struct uc_acceptor *a)
{
    take_spare(a);
    ev_io_start(a->loop, &a->io);
}

void uc_acceptor_stop(struct uc_acceptor *a)
{
    ev_io_stop(a->loop, &a->io);
    ev_timer_stop(a->loop, &a->retry);
}

void uc_acceptor_free(struct uc_acceptor *a)
{
    uc_acceptor_stop(a);
    if (a->spare >= 0)
        close(a->spare);
    a->spare = -1;
}
