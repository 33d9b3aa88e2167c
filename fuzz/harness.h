/* harness.h -- an in-process uidcast for the end-to-end fuzz targets: a real server and loop,
 * a small C policy that exercises binding, sending and closing, and a socketpair per input
 * so the bytes take the same path as bytes from the network. */
#ifndef UC_FUZZ_HARNESS_H
#define UC_FUZZ_HARNESS_H

#include <ev.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../core/log.h"
#include "../core/push.h"
#include "../core/server.h"

static int fuzz_on_open(struct uc_conn *c, const struct uc_open_request *req,
                        struct uc_refusal *refusal, void *ud)
{
    (void)ud;
    if (req->http->path_len >= 5 && memcmp(req->http->path, "/deny", 5) == 0) {
        refusal->status = 401;
        return -1;
    }
    if (req->http->query)
        uc_conn_bind(c, req->http->query, req->http->query_len > 64 ? 64 : req->http->query_len);
    return 0;
}

static void fuzz_on_message(struct uc_conn *c, const uint8_t *data, size_t len, int binary,
                            void *ud)
{
    (void)ud;
    size_t uid_len;
    struct uc_server *srv = uc_conn_server(c);
    if (len >= 5 && memcmp(data, "close", 5) == 0) {
        uc_conn_close(c, 1000, "bye", 3);
        return;
    }
    if (!uc_conn_uid(c, &uid_len) || !uc_conn_is_open(c)) {
        if (len >= 1 && len <= 64) {
            uc_conn_bind(c, (const char *)data, len);
            uc_conn_join(c, (const char *)data, 1);
        }
        uc_conn_send(c, data, len, binary);
        return;
    }
    uc_broadcast(srv, data, len, binary, NULL);
    uc_send_uid(srv, (const char *)data, len > 8 ? 8 : len, data, len, binary, c);
    if (len)
        uc_send_group(srv, (const char *)data, 1, data, len, binary, NULL);
}

/* The push API of the fuzzing server (push_request feeds it). */
static struct uc_push *fuzz_push;

static struct uc_server *fuzz_server(void)
{
    static struct uc_server *srv;
    if (srv)
        return srv;
    uc_log_threshold = UC_LOG_ERROR;
    struct uc_options opt = {
        .listen = "127.0.0.1:0",
        .max_message = 65536,
        .max_send_buffer = 1 << 20,
        .handshake_timeout = 10,
        .close_timeout = 2,
        .drain_timeout = 2,
        .ping_interval = 25,
        .idle_timeout = 60,
        .message_timeout = 30,
        .max_fragments = 64,
        .max_groups_per_connection = 16,
        .push = "127.0.0.1:0",
        .push_timeout = 30,
    };
    struct uc_handlers h = {.on_open = fuzz_on_open, .on_message = fuzz_on_message};
    char err[256];
    srv = uc_server_new(&opt, &h, err, sizeof err);
    if (!srv || !(fuzz_push = uc_push_new(srv, opt.push, NULL, err, sizeof err)))
        abort();
    struct uc_service svc = uc_push_service(fuzz_push);
    uc_server_attach(srv, &svc);
    return srv;
}

static void drain(int fd)
{
    char buf[65536];
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

/* Writes data into peer in pieces that end at each of the ncuts offsets (ascending) and at
 * len, letting the loop read after each piece, so that the server sees the stream split into
 * several reads where the caller chose; then hangs up and runs the loop until the server has
 * let go of every connection. */
static void fuzz_drive_split(struct uc_server *srv, int peer, const uint8_t *data, size_t len,
                             const size_t *cuts, int ncuts)
{
    fcntl(peer, F_SETFL, O_NONBLOCK);
    size_t off = 0;
    for (int piece = 0; piece <= ncuts; piece++) {
        size_t end = piece < ncuts && cuts[piece] < len ? cuts[piece] : len;
        for (int i = 0; i < 1000 && off < end; i++) {
            ssize_t w = write(peer, data + off, end - off);
            if (w > 0)
                off += (size_t)w;
            ev_run(uc_server_loop(srv), EVRUN_NOWAIT);
            drain(peer);
        }
    }
    for (int i = 0; i < 4; i++) {
        ev_run(uc_server_loop(srv), EVRUN_NOWAIT);
        drain(peer);
    }
    close(peer);
    for (int i = 0; i < 100 && (uc_server_sockets(srv) || uc_push_connections(fuzz_push)); i++)
        ev_run(uc_server_loop(srv), EVRUN_NOWAIT);
}

/* fuzz_drive_split() with the whole stream written as it comes. */
static inline void fuzz_drive(struct uc_server *srv, int peer, const uint8_t *data, size_t len)
{
    fuzz_drive_split(srv, peer, data, len, NULL, 0);
}

#endif
