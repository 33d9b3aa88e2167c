/* test_poller.c -- the connections' edge-triggered readiness: each change said once, a recheck
 * for what was left unread, removal before close, and a round of at most UC_POLLER_BATCH. */
#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../poller.h"
#include "check.h"

#define NSOCK 600

static struct uc_poller poller;
static struct ev_loop *loop;
static int pairs[NSOCK][2];
static unsigned reported[NSOCK]; /* events in the last round, per socket */
static int times[NSOCK];         /* calls per socket, until reset */
static int calls;

static void ready(void *owner, unsigned events)
{
    int i = (int)(intptr_t)owner;
    reported[i] |= events;
    times[i]++;
    calls++;
}

static void setup(int n)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    char err[128];
    if (uc_poller_init(&poller, loop, ready, err, sizeof err) != 0)
        abort();
    for (int i = 0; i < n; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pairs[i]) != 0)
            abort();
        if (uc_poller_add(&poller, pairs[i][0], (void *)(intptr_t)i) != 0)
            abort();
    }
}

static void teardown(int n)
{
    uc_poller_free(&poller);
    for (int i = 0; i < n; i++) {
        close(pairs[i][0]);
        close(pairs[i][1]);
    }
    ev_loop_destroy(loop);
}

/* One loop round; returns how many times the owners were called. */
static int round_trip(void)
{
    memset(reported, 0, sizeof reported);
    calls = 0;
    ev_run(loop, EVRUN_NOWAIT);
    return calls;
}

TEST(reports_each_change_once)
{
    setup(1);
    round_trip(); /* a new socket is reported writable */
    CHECK(write(pairs[0][1], "x", 1) == 1);
    CHECK_EQ_INT(round_trip(), 1);
    CHECK(reported[0] & UC_READABLE);
    /* Not read, nothing new: edge-triggered, so not said again. */
    CHECK_EQ_INT(round_trip(), 0);
    CHECK(write(pairs[0][1], "y", 1) == 1);
    CHECK_EQ_INT(round_trip(), 1);
    CHECK(reported[0] & UC_READABLE);
    teardown(1);
}

TEST(recheck_reports_what_is_left_unread)
{
    setup(1);
    round_trip();
    CHECK(write(pairs[0][1], "xy", 2) == 2);
    CHECK_EQ_INT(round_trip(), 1);
    char b;
    CHECK(read(pairs[0][0], &b, 1) == 1); /* a bounded turn: one byte left */
    uc_poller_recheck(&poller, pairs[0][0], (void *)(intptr_t)0);
    CHECK_EQ_INT(round_trip(), 1);
    CHECK(reported[0] & UC_READABLE);
    CHECK(read(pairs[0][0], &b, 1) == 1);
    uc_poller_recheck(&poller, pairs[0][0], (void *)(intptr_t)0); /* drained: still writable */
    CHECK_EQ_INT(round_trip(), 1);
    CHECK(!(reported[0] & UC_READABLE));
    teardown(1);
}

TEST(a_removed_socket_is_not_reported)
{
    setup(1);
    round_trip();
    uc_poller_remove(&poller, pairs[0][0]);
    CHECK(write(pairs[0][1], "x", 1) == 1);
    CHECK_EQ_INT(round_trip(), 0);
    teardown(1);
}

TEST(a_hang_up_is_reported_readable)
{
    setup(1);
    round_trip();
    close(pairs[0][1]);
    pairs[0][1] = socket(AF_UNIX, SOCK_STREAM, 0); /* for teardown */
    CHECK_EQ_INT(round_trip(), 1);
    CHECK(reported[0] & UC_READABLE);
    char b;
    CHECK(read(pairs[0][0], &b, 1) == 0);
    teardown(1);
}

TEST(room_to_write_is_reported_after_a_full_buffer)
{
    setup(1);
    round_trip();
    static char block[65536];
    while (write(pairs[0][0], block, sizeof block) > 0)
        ;
    CHECK_EQ_INT(round_trip(), 0);
    while (read(pairs[0][1], block, sizeof block) > 0)
        ;
    CHECK_EQ_INT(round_trip(), 1);
    CHECK(reported[0] & UC_WRITABLE);
    teardown(1);
}

TEST(a_round_reports_at_most_a_batch)
{
    setup(NSOCK);
    round_trip(); /* every new socket: writable, over two rounds */
    round_trip();
    for (int i = 0; i < NSOCK; i++)
        CHECK(write(pairs[i][1], "x", 1) == 1);
    memset(times, 0, sizeof times);
    CHECK_EQ_INT(round_trip(), UC_POLLER_BATCH);
    CHECK_EQ_INT(round_trip(), NSOCK - UC_POLLER_BATCH); /* the rest, in the next round */
    int once = 0;
    for (int i = 0; i < NSOCK; i++)
        once += times[i] == 1;
    CHECK_EQ_INT(once, NSOCK);
    CHECK_EQ_INT(round_trip(), 0);
    teardown(NSOCK);
}

int main(void)
{
    RUN(reports_each_change_once);
    RUN(recheck_reports_what_is_left_unread);
    RUN(a_removed_socket_is_not_reported);
    RUN(a_hang_up_is_reported_readable);
    RUN(room_to_write_is_reported_after_a_full_buffer);
    RUN(a_round_reports_at_most_a_batch);
    return CHECK_SUMMARY("poller");
}
