/* test_conn_close.c -- a connection's close counted once, whatever happens inside it, and a
 * fan-out written a slice of connections per loop iteration: a real server loop with
 * socketpair clients (no network), driven step by step. */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../cli.h"
#include "../log.h"
#include "../outq.h"
#include "../server.h"
#include "check.h"

static struct uc_conn *opened;

static int bind_on_open(struct uc_conn *c, const struct uc_open_request *req,
                        struct uc_refusal *refusal, void *ud)
{
    (void)req, (void)refusal, (void)ud;
    opened = c;
    return uc_conn_bind(c, "slow", 4);
}

/* With fan_out set, any message makes the server send "x" to each of these, in order. */
enum { CLIENTS = 2500, SLICE = 2048 };
static struct uc_conn *conns[CLIENTS];
static int fan_out;

static void send_to_all_on_message(struct uc_conn *c, const uint8_t *data, size_t len, int binary,
                                   void *ud)
{
    (void)c, (void)data, (void)len, (void)binary, (void)ud;
    for (int i = 0; fan_out && i < CLIENTS; i++)
        uc_conn_send(conns[i], "x", 1, 0);
}

static const char handshake[] = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                "Sec-WebSocket-Version: 13\r\n\r\n";

/* A server with the command line's defaults, but for the arguments given. */
static struct uc_server *new_server(const char *max_send_buffer)
{
    uc_log_threshold = UC_LOG_ERROR;
    char *argv[] = {"uidcast", "--listen",          "127.0.0.1:0",          "--push",
                    "off",     "--max-send-buffer", (char *)max_send_buffer};
    struct uc_cli cli;
    char err[256];
    if (uc_cli_parse(sizeof argv / sizeof argv[0], argv, &cli, err, sizeof err) != UC_CLI_RUN) {
        fprintf(stderr, "uc_cli_parse: %s\n", err);
        exit(1);
    }
    struct uc_handlers h = {.on_open = bind_on_open, .on_message = send_to_all_on_message};
    struct uc_server *srv = uc_server_new(&cli.opt, &h, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "uc_server_new: %s\n", err);
        exit(1);
    }
    return srv;
}

/* Accepts one client over a socketpair and completes its upgrade; returns the client's end. */
static int connect_client(struct uc_server *srv)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
        abort();
    opened = NULL;
    uc_server_adopt(srv, sv[0], "test:0");
    if (write(sv[1], handshake, sizeof handshake - 1) != (ssize_t)(sizeof handshake - 1))
        abort();
    for (int i = 0; i < 10 && !opened; i++)
        ev_run(uc_server_loop(srv), EVRUN_NOWAIT);
    return sv[1];
}

static size_t open_count(const struct uc_server *srv)
{
    struct uc_stats st;
    uc_server_stats(srv, &st);
    return st.connections;
}

/* A reader near its cap is owed a broadcast when the policy closes it: catching it up on the
 * broadcast overflows and aborts it from inside the close. It must be counted closed once. */
TEST(close_that_overflows_while_catching_up_counts_once)
{
    struct uc_server *srv = new_server("64k");
    int peer = connect_client(srv);
    CHECK(opened != NULL);
    CHECK_EQ_INT(open_count(srv), 1);
    char *payload = calloc(1, 60 * 1024);
    CHECK_EQ_INT(uc_conn_send(opened, payload, 60 * 1024, 1), 0);    /* near the cap, unflushed */
    CHECK_EQ_INT(uc_broadcast(srv, payload, 10 * 1024, 1, NULL), 1); /* owed, not queued yet */
    uc_conn_close(opened, 1000, "bye", 3);
    CHECK_EQ_INT(open_count(srv), 0);
    for (int i = 0; i < 10; i++)
        ev_run(uc_server_loop(srv), EVRUN_NOWAIT);
    CHECK_EQ_INT(open_count(srv), 0);
    CHECK_EQ_INT(uc_server_sockets(srv), 0);
    struct uc_stats stats;
    uc_server_stats(srv, &stats);
    CHECK_EQ_INT(stats.slow_readers_closed, 1);
    /* --max-connections still admits: a wrapped count would refuse everyone from here on. */
    int peer2 = connect_client(srv);
    CHECK(opened != NULL);
    CHECK_EQ_INT(open_count(srv), 1);
    free(payload);
    close(peer);
    close(peer2);
    uc_server_free(srv);
}

/* Bytes waiting on a client's end (without reading them). */
static ssize_t waiting(int fd)
{
    char buf[64];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && errno == EAGAIN ? 0 : n;
}

/* A broadcast to more connections than one slice (2,048) is written over several loop
 * iterations, the loop reading in between; a broadcast logged meanwhile reaches every member
 * once, after the first, whichever slice it was in. */
TEST(writes_a_large_fan_out_a_slice_per_iteration_in_order)
{
    struct uc_server *srv = new_server("4m");
    static int peers[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        peers[i] = connect_client(srv);
    for (int i = 0; i < 10; i++)
        ev_run(uc_server_loop(srv), EVRUN_NOWAIT); /* the upgrades' answers are out */
    char buf[256];
    for (int i = 0; i < CLIENTS; i++)
        while (waiting(peers[i]) > 0)
            if (recv(peers[i], buf, sizeof buf, 0) <= 0)
                break;
    CHECK_EQ_INT(uc_broadcast(srv, "one", 3, 0, NULL), CLIENTS);
    ev_run(uc_server_loop(srv), EVRUN_NOWAIT);
    int written = 0;
    for (int i = 0; i < CLIENTS; i++)
        written += waiting(peers[i]) > 0;
    CHECK_EQ_INT(written, SLICE);
    CHECK_EQ_INT(uc_broadcast(srv, "two", 3, 0, NULL), CLIENTS);
    for (int i = 0; i < 10; i++)
        ev_run(uc_server_loop(srv), EVRUN_NOWAIT);
    static const unsigned char both[] = {0x81, 3, 'o', 'n', 'e', 0x81, 3, 't', 'w', 'o'};
    int in_order = 0;
    for (int i = 0; i < CLIENTS; i++) {
        ssize_t n = recv(peers[i], buf, sizeof buf, MSG_DONTWAIT);
        in_order += n == (ssize_t)sizeof both && memcmp(buf, both, sizeof both) == 0;
        close(peers[i]);
    }
    CHECK_EQ_INT(in_order, CLIENTS);
    uc_server_free(srv);
}

/* A connection that dies in the round that put it on the flush list, behind more than a slice
 * of others, is freed only after the list has passed it (valgrind sees a use after free
 * otherwise): the last of 2,500 is written to, then its peer hangs up. */
TEST(a_connection_closed_far_down_the_flush_list_is_freed_after_it)
{
    struct uc_server *srv = new_server("4m");
    static int peers[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        peers[i] = connect_client(srv);
        conns[i] = opened;
    }
    for (int i = 0; i < 10; i++)
        ev_run(uc_server_loop(srv), EVRUN_NOWAIT);
    char buf[256];
    for (int i = 0; i < CLIENTS; i++)
        while (waiting(peers[i]) > 0)
            if (recv(peers[i], buf, sizeof buf, 0) <= 0)
                break;
    for (int i = 0; i < 10; i++)
        ev_run(uc_server_loop(srv), EVRUN_NOWAIT); /* the room those reads made is reported */
    fan_out = 1;
    static const unsigned char go[] = {0x81, 0x82, 0, 0, 0, 0, 'g', 'o'}; /* masked with 0 */
    CHECK(write(peers[0], go, sizeof go) == (ssize_t)sizeof go);
    close(peers[CLIENTS - 1]); /* read in the same round, after the message */
    for (int i = 0; i < 10; i++)
        ev_run(uc_server_loop(srv), EVRUN_NOWAIT);
    fan_out = 0;
    CHECK_EQ_INT(uc_server_sockets(srv), CLIENTS - 1);
    static const unsigned char x[] = {0x81, 1, 'x'};
    int got = 0;
    for (int i = 0; i < CLIENTS - 1; i++) {
        ssize_t n = recv(peers[i], buf, sizeof buf, MSG_DONTWAIT);
        got += n == (ssize_t)sizeof x && memcmp(buf, x, sizeof x) == 0;
        close(peers[i]);
    }
    CHECK_EQ_INT(got, CLIENTS - 1);
    uc_server_free(srv);
}

int main(void)
{
    RUN(close_that_overflows_while_catching_up_counts_once);
    RUN(writes_a_large_fan_out_a_slice_per_iteration_in_order);
    RUN(a_connection_closed_far_down_the_flush_list_is_freed_after_it);
    uc_outq_release_pool();
    return CHECK_SUMMARY("conn_close");
}
