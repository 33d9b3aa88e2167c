/* test_hub.c -- delivery through the hub with a fake sink: no sockets, no connections. */
#include "../hub.h"

#include <stdlib.h>
#include <string.h>

#include "../err.h"
#include "check.h"

/* A fake connection: what it was sent, in order, and a cap that cuts it off. */
struct fake {
    struct uc_hub_member member;
    struct uc_hub *hub;
    char got[64][32];
    int n;
    int cap; /* frames it takes before it is cut off (0: no limit) */
    int cut;
};

static int fake_queue(void *ctx, void *owner, struct uc_buf *frame)
{
    (void)ctx;
    struct fake *f = owner;
    if (f->cut)
        return UC_ERR_CLOSED;
    if (f->cap && f->n == f->cap) {
        /* Cut off from inside, as a connection over its send buffer is: it leaves the hub. */
        f->cut = 1;
        uc_hub_leave_all(f->hub, &f->member);
        return UC_ERR_OVERFLOW;
    }
    size_t len = frame->len - 2; /* frames here are short: a 2-byte header */
    memcpy(f->got[f->n], frame->data + 2, len);
    f->got[f->n++][len] = '\0';
    return 0;
}

static const struct uc_hub_sink sink = {.queue = fake_queue};

static void setup(struct uc_hub *h, struct fake *fakes, int n)
{
    uc_hub_init(h, &sink, 8);
    memset(fakes, 0, sizeof *fakes * (size_t)n);
    for (int i = 0; i < n; i++) {
        uc_hub_member_init(&fakes[i].member, &fakes[i]);
        fakes[i].hub = h;
    }
}

static void teardown(struct uc_hub *h, struct fake *fakes, int n)
{
    for (int i = 0; i < n; i++) {
        uc_hub_leave_all(h, &fakes[i].member);
        uc_hub_member_free(&fakes[i].member);
    }
    uc_hub_free(h);
}

#define SEND(h, kind, key, text, except)                                                           \
    uc_hub_send(h, kind, key, strlen(key), text, strlen(text), 0, except)
#define BROADCAST(h, text, except) uc_hub_broadcast(h, text, strlen(text), 0, except)

TEST(sends_to_every_member_of_a_uid_exactly_once)
{
    struct uc_hub h;
    struct fake f[3];
    setup(&h, f, 3);
    uc_hub_bind(&h, &f[0].member, "bob", 3);
    uc_hub_bind(&h, &f[1].member, "bob", 3);
    uc_hub_bind(&h, &f[2].member, "ann", 3);
    CHECK_EQ_INT(SEND(&h, 'u', "bob", "hi", NULL), 2);
    CHECK_EQ_INT(SEND(&h, 'u', "bob", "skip", &f[0]), 1);
    CHECK_EQ_INT(SEND(&h, 'u', "nobody", "x", NULL), 0);
    CHECK_EQ_INT(f[0].n, 1);
    CHECK_EQ_INT(f[1].n, 2);
    CHECK_EQ_INT(f[2].n, 0);
    CHECK(strcmp(f[1].got[1], "skip") == 0);
    teardown(&h, f, 3);
}

TEST(queues_owed_broadcasts_before_anything_else_in_order)
{
    struct uc_hub h;
    struct fake f[2];
    setup(&h, f, 2);
    uc_hub_bind(&h, &f[0].member, "a", 1);
    uc_hub_bind(&h, &f[1].member, "b", 1);
    CHECK_EQ_INT(BROADCAST(&h, "b1", NULL), 2);
    CHECK_EQ_INT(BROADCAST(&h, "b2", NULL), 2);
    CHECK_EQ_INT(f[0].n, 0); /* logged, not yet delivered */
    SEND(&h, 'u', "a", "direct", NULL);
    CHECK_EQ_INT(f[0].n, 3);
    CHECK(strcmp(f[0].got[0], "b1") == 0 && strcmp(f[0].got[1], "b2") == 0 &&
          strcmp(f[0].got[2], "direct") == 0);
    CHECK_EQ_INT(uc_hub_flush_broadcasts(&h), 1);
    CHECK_EQ_INT(f[0].n, 3); /* nothing twice */
    CHECK_EQ_INT(f[1].n, 2);
    CHECK_EQ_INT(uc_hub_flush_broadcasts(&h), 0);
    teardown(&h, f, 2);
}

TEST(spares_the_excepted_member_and_a_member_bound_later)
{
    struct uc_hub h;
    struct fake f[3];
    setup(&h, f, 3);
    uc_hub_bind(&h, &f[0].member, "a", 1);
    uc_hub_bind(&h, &f[1].member, "b", 1);
    BROADCAST(&h, "one", NULL);
    CHECK_EQ_INT(BROADCAST(&h, "two", &f[0].member), 1);
    uc_hub_bind(&h, &f[2].member, "c", 1); /* after both: owed neither */
    uc_hub_flush_broadcasts(&h);
    CHECK_EQ_INT(f[0].n, 1);
    CHECK(strcmp(f[0].got[0], "one") == 0);
    CHECK_EQ_INT(f[1].n, 2);
    CHECK_EQ_INT(f[2].n, 0);
    teardown(&h, f, 3);
}

TEST(a_member_cut_off_while_catching_up_gets_nothing_more_and_the_rest_go_on)
{
    struct uc_hub h;
    struct fake f[3];
    setup(&h, f, 3);
    for (int i = 0; i < 3; i++)
        uc_hub_bind(&h, &f[i].member, "room", 4);
    f[1].cap = 2;
    for (int i = 0; i < 4; i++)
        BROADCAST(&h, "b", NULL);
    /* f[1] is cut off at its third frame, during the catch-up this send starts */
    CHECK_EQ_INT(SEND(&h, 'u', "room", "after", NULL), 2);
    CHECK_EQ_INT(f[0].n, 5);
    CHECK_EQ_INT(f[1].n, 2);
    CHECK(f[1].cut);
    CHECK_EQ_INT(f[2].n, 5);
    CHECK(uc_hub_uid(&f[1].member, &(size_t){0}) == NULL);
    CHECK_EQ_INT(uc_hub_count(&h, 'u', "room", 4), 2);
    uc_hub_flush_broadcasts(&h);
    CHECK_EQ_INT(f[1].n, 2);
    teardown(&h, f, 3);
}

TEST(groups_join_leave_and_answer_after_the_member_left)
{
    struct uc_hub h;
    struct fake f[2];
    setup(&h, f, 2);
    CHECK_EQ_INT(uc_hub_join(&h, &f[0].member, "g1", 2), 0);
    CHECK_EQ_INT(uc_hub_join(&h, &f[0].member, "g1", 2), 0);
    CHECK_EQ_INT(uc_hub_join(&h, &f[1].member, "g1", 2), 0);
    CHECK_EQ_INT(uc_hub_join(&h, &f[0].member, "g2", 2), 0);
    CHECK_EQ_INT(uc_hub_count(&h, 'g', "g1", 2), 2);
    CHECK_EQ_INT(SEND(&h, 'g', "g1", "hello", &f[1]), 1);
    CHECK_EQ_INT(f[0].n, 1);
    CHECK_EQ_INT(uc_hub_leave(&h, &f[1].member, "g1", 2), 1);
    CHECK_EQ_INT(uc_hub_leave(&h, &f[1].member, "g1", 2), 0);
    uc_hub_leave_all(&h, &f[0].member);
    CHECK_EQ_INT(uc_hub_count(&h, 'g', "g1", 2), 0);
    CHECK(uc_hub_in_group(&h, &f[0].member, "g2", 2)); /* remembered for on_close */
    CHECK(!uc_hub_in_group(&h, &f[0].member, "g3", 2));
    CHECK_EQ_INT(uc_hub_join(&h, &f[1].member, "", 0), UC_ERR_INVALID);
    teardown(&h, f, 2);
}

TEST(refuses_a_join_past_the_group_limit)
{
    struct uc_hub h;
    struct fake f[1];
    setup(&h, f, 1);
    char name[8];
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof name, "g%d", i);
        CHECK_EQ_INT(uc_hub_join(&h, &f[0].member, name, strlen(name)), 0);
    }
    CHECK_EQ_INT(uc_hub_join(&h, &f[0].member, "one more", 8), UC_ERR_LIMIT);
    teardown(&h, f, 1);
}

TEST(a_numbered_member_gets_headers_and_each_kept_number_once)
{
    struct uc_hub h;
    struct fake f[2];
    setup(&h, f, 2);
    f[1].member.numbered = 1;
    uc_hub_bind(&h, &f[0].member, "u", 1);
    uc_hub_bind(&h, &f[1].member, "u", 1);
    CHECK_EQ_INT(SEND(&h, 'u', "u", "plain", NULL), 2);
    CHECK_EQ_INT(uc_hub_send_kept(&h, "u", 1, "kept", 4, 0, 7), 2);
    /* Already had (a replay handed it): not again. */
    CHECK_EQ_INT(uc_hub_send_kept(&h, "u", 1, "again", 5, 0, 7), 1);
    uc_hub_broadcast(&h, "all", 3, 0, NULL);
    uc_hub_flush_broadcasts(&h);
    CHECK_EQ_INT(f[0].n, 4);
    CHECK(strcmp(f[0].got[0], "plain") == 0 && strcmp(f[0].got[1], "kept") == 0);
    CHECK(strcmp(f[0].got[2], "again") == 0 && strcmp(f[0].got[3], "all") == 0);
    CHECK_EQ_INT(f[1].n, 3);
    CHECK(strcmp(f[1].got[0], "- plain") == 0 && strcmp(f[1].got[1], "7 kept") == 0);
    CHECK(strcmp(f[1].got[2], "- all") == 0);
    CHECK_EQ_INT(f[1].member.last_seq, 7);
    teardown(&h, f, 2);
}

TEST(a_resuming_member_is_skipped_by_kept_messages_only)
{
    struct uc_hub h;
    struct fake f[1];
    setup(&h, f, 1);
    f[0].member.numbered = 1;
    uc_hub_bind(&h, &f[0].member, "u", 1);
    f[0].member.resuming = 1;
    CHECK_EQ_INT(uc_hub_send_kept(&h, "u", 1, "kept", 4, 0, 3), 0);
    CHECK_EQ_INT(SEND(&h, 'u', "u", "live", NULL), 1);
    CHECK_EQ_INT(f[0].n, 1);
    CHECK(strcmp(f[0].got[0], "- live") == 0);
    /* Binding again starts afresh: numbers are per uid. */
    uc_hub_bind(&h, &f[0].member, "v", 1);
    CHECK_EQ_INT(f[0].member.resuming, 0);
    CHECK_EQ_INT(f[0].member.last_seq, 0);
    teardown(&h, f, 1);
}

int main(void)
{
    RUN(sends_to_every_member_of_a_uid_exactly_once);
    RUN(queues_owed_broadcasts_before_anything_else_in_order);
    RUN(spares_the_excepted_member_and_a_member_bound_later);
    RUN(a_member_cut_off_while_catching_up_gets_nothing_more_and_the_rest_go_on);
    RUN(groups_join_leave_and_answer_after_the_member_left);
    RUN(refuses_a_join_past_the_group_limit);
    RUN(a_numbered_member_gets_headers_and_each_kept_number_once);
    RUN(a_resuming_member_is_skipped_by_kept_messages_only);
    return CHECK_SUMMARY("test_hub");
}
