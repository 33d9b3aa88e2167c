/* test_mailbox.c -- the embedded store of kept messages, driven directly on a libev loop. */
#include "../mailbox.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* What a replay handed over, as text: "7:payload" for a message, "gap 3-5" for a gap. */
struct got {
    char items[64][48];
    int n;
    int stop_after; /* the sink says stop after this many items (0: never) */
    int result, dones;
    uint64_t last;
};

static int got_message(void *arg, uint64_t seq, const void *data, size_t len, int binary)
{
    struct got *g = arg;
    snprintf(g->items[g->n++], sizeof g->items[0], "%llu:%.*s%s", (unsigned long long)seq, (int)len,
             (const char *)data, binary ? " (binary)" : "");
    return g->stop_after && g->n >= g->stop_after;
}

static int got_gap(void *arg, uint64_t first, uint64_t last)
{
    struct got *g = arg;
    snprintf(g->items[g->n++], sizeof g->items[0], "gap %llu-%llu", (unsigned long long)first,
             (unsigned long long)last);
    return 0;
}

/* Undelivered reports: "uid seq data reason". */
static char reports[16][64];
static int nreports;

static void undelivered(const char *uid, size_t uid_len, uint64_t seq, const void *data, size_t len,
                        int binary, const char *reason, void *arg)
{
    (void)binary;
    (void)arg;
    snprintf(reports[nreports++], sizeof reports[0], "%.*s %llu %.*s %s", (int)uid_len, uid,
             (unsigned long long)seq, (int)len, (const char *)data, reason);
}

static struct uc_mailbox *mb;
static struct uc_store st;
static struct ev_loop *loop;

static void open_store(size_t max_messages, size_t max_bytes, size_t memory)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    struct uc_mailbox_limits lim = {max_messages, max_bytes, memory};
    mb = uc_mailbox_new(loop, &lim, undelivered, NULL);
    st = uc_mailbox_store(mb);
    nreports = 0;
}

static void close_store(void)
{
    uc_mailbox_free(mb);
    ev_loop_destroy(loop);
}

static void got_seq(void *arg, uint64_t seq) { *(uint64_t *)arg = seq; }

/* The embedded store answers inside the call: the number, or 0 when it refused. */
static uint64_t keep(const char *uid, const char *data, double seconds)
{
    uint64_t seq = UINT64_MAX;
    if (st.keep(st.ctx, uid, strlen(uid), data, strlen(data), 0, seconds, got_seq, &seq) != 0)
        return 0; /* refused, done not called */
    CHECK(seq != UINT64_MAX);
    return seq;
}

static void got_done(void *arg, int result, uint64_t last)
{
    struct got *g = arg;
    g->result = result;
    g->last = last;
    g->dones++;
}

/* Returns the replay's result (UC_REPLAY_DONE or UC_REPLAY_MORE); *last the uid's last number. */
static int replay(const char *uid, uint64_t since, size_t max_bytes, struct got *g, uint64_t *last)
{
    const struct uc_replay_sink sink = {g, got_message, got_gap, got_done};
    int before = g->dones;
    st.replay(st.ctx, uid, strlen(uid), since, max_bytes, &sink);
    CHECK_EQ_INT(g->dones, before + 1); /* answered inside the call, once */
    *last = g->last;
    return g->result;
}

static void stop_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(l, EVBREAK_ONE);
}

static void run_for(double seconds)
{
    ev_timer stop;
    ev_timer_init(&stop, stop_cb, seconds, 0.);
    ev_timer_start(loop, &stop);
    ev_run(loop, 0);
    ev_timer_stop(loop, &stop);
}

static struct uc_stats stats(void)
{
    struct uc_stats s = {0};
    st.stats(st.ctx, &s);
    return s;
}

TEST(numbers_each_uid_on_its_own_from_above_the_clock)
{
    open_store(10, 1024, 1 << 20);
    uint64_t a = keep("a", "1", 60), b = keep("b", "1", 60);
    CHECK(a > 1700000000000000ull); /* microseconds of 2023 and later */
    CHECK_EQ_INT(keep("a", "2", 60), a + 1);
    CHECK_EQ_INT(keep("b", "2", 60), b + 1);
    close_store();
}

TEST(replays_after_since_in_order_and_says_when_more_remain)
{
    open_store(10, 1024, 1 << 20);
    uint64_t first = keep("u", "one", 60);
    keep("u", "two", 60);
    keep("u", "three", 60);
    struct got g = {0};
    uint64_t last;
    /* A budget of 4 bytes: "two" (3 + 1) fills it. */
    CHECK_EQ_INT(replay("u", first, 4, &g, &last), 1);
    CHECK_EQ_INT(g.n, 1);
    CHECK_EQ_INT(last, first + 2);
    CHECK_EQ_INT(replay("u", first + 1, 1000, &g, &last), 0);
    CHECK_EQ_INT(g.n, 2);
    char want[2][48];
    snprintf(want[0], sizeof want[0], "%llu:two", (unsigned long long)first + 1);
    snprintf(want[1], sizeof want[1], "%llu:three", (unsigned long long)first + 2);
    CHECK(strcmp(g.items[0], want[0]) == 0 && strcmp(g.items[1], want[1]) == 0);
    CHECK_EQ_INT(stats().mailbox_replayed, 2);
    close_store();
}

TEST(evicts_the_oldest_past_the_per_uid_caps_and_reports_the_gap)
{
    open_store(2, 1024, 1 << 20);
    uint64_t first = keep("u", "a", 60);
    keep("u", "b", 60);
    keep("u", "c", 60);
    keep("u", "d", 60);
    struct got g = {0};
    uint64_t last;
    CHECK_EQ_INT(replay("u", first, 1000, &g, &last), 0);
    CHECK_EQ_INT(g.n, 3);
    char gap[48];
    snprintf(gap, sizeof gap, "gap %llu-%llu", (unsigned long long)first + 1,
             (unsigned long long)first + 1);
    CHECK(strcmp(g.items[0], gap) == 0);
    CHECK_EQ_INT(stats().mailbox_evicted, 2);
    CHECK_EQ_INT(stats().mailbox_messages, 2);
    /* Bytes too: 10 bytes a uid, so a 6-byte message pushes out a 6-byte one. */
    close_store();
    open_store(100, 10, 1 << 20);
    keep("v", "123456", 60);
    keep("v", "abcdef", 60);
    CHECK_EQ_INT(stats().mailbox_messages, 1);
    CHECK_EQ_INT(keep("v", "this is more than ten", 60), 0); /* never fits: refused */
    close_store();
}

TEST(reports_dropped_messages_nobody_had_from_the_loop)
{
    open_store(1, 1024, 1 << 20);
    uint64_t a = keep("u", "had", 60);
    st.delivered(st.ctx, "u", 1, a);
    uint64_t b = keep("u", "missed", 60); /* evicts "had": delivered, no report */
    keep("u", "last", 60);                /* evicts "missed" */
    CHECK_EQ_INT(nreports, 0);            /* not from inside keep */
    run_for(0.01);
    CHECK_EQ_INT(nreports, 1);
    char want[64];
    snprintf(want, sizeof want, "u %llu missed evicted", (unsigned long long)b);
    CHECK(strcmp(reports[0], want) == 0);
    CHECK_EQ_INT(stats().mailbox_undelivered, 1);
    close_store();
}

TEST(expires_by_keep_and_forgets_the_uid_without_reusing_its_numbers)
{
    open_store(10, 1024, 1 << 20);
    uint64_t first = keep("u", "short", 0.05);
    keep("u", "long", 60);
    uint64_t gone = keep("w", "short", 0.05);
    run_for(1.2); /* the sweep runs every second */
    CHECK_EQ_INT(stats().mailbox_expired, 2);
    CHECK_EQ_INT(nreports, 2);
    struct got g = {0};
    uint64_t last;
    replay("u", first - 1, 1000, &g, &last);
    CHECK_EQ_INT(g.n, 2); /* gap first-first, then "long" */
    /* w's mailbox is gone; its next number is still above the last it had, and a resume
     * from before it is told of the gap. */
    CHECK(keep("w", "again", 60) > gone);
    struct got g2 = {0};
    replay("x", gone - 1, 1000, &g2, &last);
    CHECK_EQ_INT(g2.n, 1);
    CHECK(strncmp(g2.items[0], "gap ", 4) == 0);
    close_store();
}

TEST(stays_under_its_memory_evicting_the_oldest_of_any_uid)
{
    open_store(1000000, 1 << 20, 64 * 1024);
    char uid[16];
    for (int i = 0; i < 20000; i++) {
        snprintf(uid, sizeof uid, "u%d", i % 500);
        CHECK(keep(uid, "some payload of a kept message", 60) != 0);
        CHECK(stats().mailbox_memory <= 64 * 1024);
    }
    struct uc_stats s = stats();
    CHECK(s.mailbox_memory > 32 * 1024);
    CHECK_EQ_INT(s.mailbox_evicted, 20000 - s.mailbox_messages);
    close_store();
}

TEST(a_sink_that_stops_ends_the_replay)
{
    open_store(10, 1024, 1 << 20);
    keep("u", "a", 60);
    keep("u", "b", 60);
    struct got g = {.stop_after = 1};
    uint64_t last;
    CHECK_EQ_INT(replay("u", 0, 1000, &g, &last), 0);
    CHECK_EQ_INT(g.n, 1);
    close_store();
}

int main(void)
{
    RUN(numbers_each_uid_on_its_own_from_above_the_clock);
    RUN(replays_after_since_in_order_and_says_when_more_remain);
    RUN(evicts_the_oldest_past_the_per_uid_caps_and_reports_the_gap);
    RUN(reports_dropped_messages_nobody_had_from_the_loop);
    RUN(expires_by_keep_and_forgets_the_uid_without_reusing_its_numbers);
    RUN(stays_under_its_memory_evicting_the_oldest_of_any_uid);
    RUN(a_sink_that_stops_ends_the_replay);
    return CHECK_SUMMARY("test_mailbox");
}
