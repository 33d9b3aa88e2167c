/* test_liveness.c -- the heard-from list and its sweep, with fake connections and actions. */
#include "../liveness.h"

#include <string.h>

#include "check.h"

struct fake {
    struct uc_live_link link;
    int handshaking, at_rest;
    int expired, pings, idled, released;
};

static struct uc_liveness lv;
static int holding = 1;

#define FAKE(l) ((struct fake *)(l)) /* the link is the first member */

static int f_handshaking(void *ctx, struct uc_live_link *l)
{
    (void)ctx;
    return FAKE(l)->handshaking;
}
static void f_expired(void *ctx, struct uc_live_link *l)
{
    (void)ctx;
    FAKE(l)->expired++;
    uc_liveness_unlink(&lv, l); /* as a closed connection does, from inside the sweep */
}
static int f_rest(void *ctx, struct uc_live_link *l)
{
    (void)ctx;
    if (!FAKE(l)->at_rest)
        return 0;
    FAKE(l)->at_rest = 0;
    FAKE(l)->released++;
    return 1;
}
static int f_holding(void *ctx)
{
    (void)ctx;
    return holding;
}
static void f_ping(void *ctx, struct uc_live_link *l)
{
    (void)ctx;
    FAKE(l)->pings++;
}
static void f_idle(void *ctx, struct uc_live_link *l, double quiet)
{
    (void)ctx;
    (void)quiet;
    FAKE(l)->idled++;
    uc_liveness_unlink(&lv, l);
}

static const struct uc_liveness_actions actions = {f_handshaking, f_expired, f_rest,
                                                   f_holding,     f_ping,    f_idle};

static void setup(struct fake *f, int n)
{
    memset(f, 0, sizeof *f * (size_t)n);
    uc_liveness_init(&lv, 0, 25, 60, 10, &actions, NULL);
    holding = 1;
}

TEST(keeps_the_quietest_first_and_moves_a_touched_one_to_the_end)
{
    struct fake f[3];
    setup(f, 3);
    for (int i = 0; i < 3; i++)
        uc_liveness_touch(&lv, &f[i].link, i);
    uc_liveness_touch(&lv, &f[0].link, 5);
    CHECK(lv.head == &f[1].link && lv.tail == &f[0].link);
    uc_liveness_unlink(&lv, &f[2].link);
    uc_liveness_unlink(&lv, &f[2].link); /* twice: harmless */
    CHECK(lv.head == &f[1].link && f[1].link.next == &f[0].link && !f[0].link.next);
}

TEST(expires_handshakes_pings_once_and_closes_the_idle)
{
    struct fake f[3];
    setup(f, 3);
    f[0].handshaking = 1;
    for (int i = 0; i < 3; i++)
        uc_liveness_touch(&lv, &f[i].link, 0);
    uc_liveness_touch(&lv, &f[2].link, 20);
    uc_liveness_sweep(&lv, 30); /* f0: 30 s upgrading; f1: 30 s quiet; f2: 10 s */
    CHECK_EQ_INT(f[0].expired, 1);
    CHECK_EQ_INT(f[1].pings, 1);
    CHECK_EQ_INT(f[2].pings, 0);
    uc_liveness_sweep(&lv, 40);
    CHECK_EQ_INT(f[1].pings, 1); /* once until heard from */
    uc_liveness_sweep(&lv, 61);
    CHECK_EQ_INT(f[1].idled, 1);
    CHECK_EQ_INT(f[2].pings, 1);
    CHECK(lv.head == &f[2].link);
    uc_liveness_touch(&lv, &f[2].link, 62); /* a pong: no longer pinged */
    uc_liveness_sweep(&lv, 90);
    CHECK_EQ_INT(f[2].pings, 2);
}

TEST(releases_codecs_at_rest_after_the_grace_and_stops_early_without_any)
{
    struct fake f[2];
    setup(f, 2);
    f[0].at_rest = f[1].at_rest = 1;
    uc_liveness_touch(&lv, &f[0].link, 0);
    uc_liveness_touch(&lv, &f[1].link, 0.9);
    CHECK_EQ_INT(uc_liveness_sweep(&lv, 1.0), 1); /* f1 still within the grace */
    CHECK_EQ_INT(f[0].released, 1);
    holding = 0;
    CHECK_EQ_INT(uc_liveness_sweep(&lv, 5.0), 0); /* nobody holds one: no walk */
    CHECK_EQ_INT(f[1].released, 0);
}

TEST(a_touch_within_the_grain_keeps_the_place_unless_pinged)
{
    struct fake f[2];
    setup(f, 2); /* shortest deadline: the codec's rest, 0.5 s; a grain is 62.5 ms */
    uc_liveness_touch(&lv, &f[0].link, 0);
    uc_liveness_touch(&lv, &f[1].link, 0.01);
    uc_liveness_touch(&lv, &f[0].link, 0.05);
    CHECK(lv.head == &f[0].link && f[0].link.last_seen == 0);
    uc_liveness_touch(&lv, &f[0].link, 0.07);
    CHECK(lv.tail == &f[0].link && f[0].link.last_seen > 0.06f);
    f[1].link.pinged = 1;
    uc_liveness_touch(&lv, &f[1].link, 0.08); /* a pong: always counts */
    CHECK(lv.tail == &f[1].link && !f[1].link.pinged);
}

int main(void)
{
    RUN(keeps_the_quietest_first_and_moves_a_touched_one_to_the_end);
    RUN(a_touch_within_the_grain_keeps_the_place_unless_pinged);
    RUN(expires_handshakes_pings_once_and_closes_the_idle);
    RUN(releases_codecs_at_rest_after_the_grace_and_stops_early_without_any);
    return CHECK_SUMMARY("test_liveness");
}
