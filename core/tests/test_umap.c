/* test_umap.c -- the uid map: many connections per uid, rebinding, removal of one only, the
 * open-addressed table under churn, walks that unbind and their order, shrinking. */
#include "../umap.h"

#include <stdlib.h>

#include "../err.h"
#include "check.h"

static size_t list_len(const struct uc_umap_entry *u)
{
    size_t n = 0;
    for (const struct uc_umap_link *l = u ? u->head : NULL; l; l = l->next)
        n++;
    return n;
}

TEST(binds_many_links_to_one_uid)
{
    struct uc_umap m = {0};
    struct uc_umap_link a = {0}, b = {0};
    CHECK_EQ_INT(uc_umap_bind(&m, &a, "alice", 5), 0);
    CHECK_EQ_INT(uc_umap_bind(&m, &b, "alice", 5), 0);
    struct uc_umap_entry *u = uc_umap_find(&m, "alice", 5);
    CHECK(u && u->count == 2 && list_len(u) == 2);
    CHECK_EQ_INT(uc_umap_keys(&m), 1);
    CHECK_EQ_INT(m.bound, 2);
    uc_umap_unbind(&m, &a);
    uc_umap_unbind(&m, &b);
}

TEST(removing_one_link_keeps_the_others)
{
    struct uc_umap m = {0};
    struct uc_umap_link a = {0}, b = {0}, c = {0};
    uc_umap_bind(&m, &a, "bob", 3);
    uc_umap_bind(&m, &b, "bob", 3);
    uc_umap_bind(&m, &c, "bob", 3);
    uc_umap_unbind(&m, &b);
    struct uc_umap_entry *u = uc_umap_find(&m, "bob", 3);
    CHECK(u && u->count == 2 && u->head == &a && u->tail == &c && a.next == &c);
    uc_umap_unbind(&m, &a);
    uc_umap_unbind(&m, &c);
    CHECK(uc_umap_find(&m, "bob", 3) == NULL);
    CHECK_EQ_INT(uc_umap_keys(&m), 0);
}

TEST(rebinding_moves_the_link)
{
    struct uc_umap m = {0};
    struct uc_umap_link a = {0};
    uc_umap_bind(&m, &a, "old", 3);
    CHECK_EQ_INT(uc_umap_bind(&m, &a, "new", 3), 0);
    CHECK(uc_umap_find(&m, "old", 3) == NULL);
    CHECK(uc_umap_find(&m, "new", 3)->count == 1);
    CHECK_EQ_INT(uc_umap_bind(&m, &a, "new", 3), 0); /* same uid: no-op */
    CHECK_EQ_INT(m.bound, 1);
    uc_umap_unbind(&m, &a);
    uc_umap_unbind(&m, &a); /* unbound: no-op */
    CHECK_EQ_INT(m.bound, 0);
}

TEST(uids_are_binary_safe_and_bounded)
{
    struct uc_umap m = {0};
    struct uc_umap_link a = {0}, b = {0};
    CHECK_EQ_INT(uc_umap_bind(&m, &a, "a\0b", 3), 0);
    CHECK(uc_umap_find(&m, "a", 1) == NULL);
    CHECK(uc_umap_find(&m, "a\0b", 3) != NULL);
    CHECK_EQ_INT(uc_umap_bind(&m, &b, "", 0), UC_ERR_INVALID);
    CHECK(uc_umap_find(&m, NULL, 0) == NULL); /* an empty message's key may be NULL */
    char big[UC_UID_MAX + 1] = {0};
    CHECK_EQ_INT(uc_umap_bind(&m, &b, big, sizeof big), UC_ERR_INVALID);
    CHECK(b.entry == NULL);
    uc_umap_unbind(&m, &a);
}

TEST(holds_a_hundred_thousand_uids)
{
    enum { N = 100000 };
    struct uc_umap m = {0};
    static struct uc_umap_link links[N];
    char name[16];
    for (int i = 0; i < N; i++) {
        int n = snprintf(name, sizeof name, "user%d", i);
        uc_umap_bind(&m, &links[i], name, (size_t)n);
    }
    CHECK_EQ_INT(uc_umap_keys(&m), N);
    CHECK(uc_umap_find(&m, "user77777", 9) == links[77777].entry);
    for (int i = 0; i < N; i++)
        uc_umap_unbind(&m, &links[i]);
    CHECK_EQ_INT(uc_umap_keys(&m), 0);
}

struct count_log {
    char calls[8][16];
    int n;
};

static void log_count(const char *key, size_t len, size_t count, int added, void *ctx)
{
    struct count_log *log = ctx;
    if (log->n < 8)
        snprintf(log->calls[log->n++], sizeof log->calls[0], "%c%.*s=%zu", added ? '+' : '-',
                 (int)len, key, count);
}

TEST(tells_every_count_change_first_and_last_included)
{
    struct count_log log = {0};
    struct uc_umap m = {.on_count = log_count, .ctx = &log};
    struct uc_umap_link a = {0}, b = {0};
    uc_umap_bind(&m, &a, "x", 1);
    uc_umap_bind(&m, &b, "x", 1);
    uc_umap_bind(&m, &b, "y", 1); /* a move: x loses one, y gets its first */
    uc_umap_unbind(&m, &a);
    uc_umap_unbind(&m, &b);
    CHECK_EQ_INT(log.n, 6);
    const char *want[] = {"+x=1", "+x=2", "-x=1", "+y=1", "-x=0", "-y=0"};
    for (int i = 0; i < 6; i++)
        CHECK_MEM(log.calls[i], strlen(log.calls[i]), want[i]);
}

/* Binds and unbinds at random against a plain array of who holds what; after every step each
 * key is found exactly when something holds it. Small keys in a table that grows and shrinks
 * through it: removals in the middle of probe runs, and runs that wrap around the table. */
TEST(stays_consistent_through_random_binds_and_unbinds)
{
    enum { LINKS = 300, KEYS = 64, STEPS = 20000 };
    struct uc_umap m = {0};
    static struct uc_umap_link links[LINKS];
    int holds[LINKS];
    unsigned seed = 12345;
    for (int i = 0; i < LINKS; i++)
        holds[i] = -1;
    for (int step = 0; step < STEPS; step++) {
        seed = seed * 1103515245u + 12345u;
        int l = (int)((seed >> 8) % LINKS), k = (int)((seed >> 20) % KEYS);
        char name[8];
        if ((seed >> 4) % 3 == 0) {
            uc_umap_unbind(&m, &links[l]);
            holds[l] = -1;
        } else {
            CHECK_EQ_INT(uc_umap_bind(&m, &links[l], name, (size_t)snprintf(name, 8, "k%d", k)), 0);
            holds[l] = k;
        }
        if (step % 97)
            continue;
        size_t keys = 0, bound = 0;
        for (int key = 0; key < KEYS; key++) {
            size_t held = 0;
            for (int i = 0; i < LINKS; i++)
                held += holds[i] == key;
            struct uc_umap_entry *e = uc_umap_find(&m, name, (size_t)snprintf(name, 8, "k%d", key));
            CHECK(held ? e && e->count == held : e == NULL);
            keys += held > 0;
            bound += held;
        }
        CHECK_EQ_INT(uc_umap_keys(&m), keys);
        CHECK_EQ_INT(m.bound, bound);
    }
    for (int i = 0; i < LINKS; i++)
        uc_umap_unbind(&m, &links[i]);
    CHECK(m.slots == NULL); /* the table leaves with the last key */
}

struct walk {
    struct uc_umap *m;
    int visits[1000];
};

static void unbind_odd(struct uc_umap_entry *e, void *ctx)
{
    struct walk *w = ctx;
    int i = atoi(e->name + 1);
    w->visits[i]++;
    if (i % 2)
        uc_umap_unbind(w->m, e->head);
}

TEST(a_walk_visits_each_key_once_while_its_callback_unbinds)
{
    enum { N = 1000 };
    static struct uc_umap_link links[N];
    static struct walk w;
    struct uc_umap m = {0};
    w.m = &m;
    char name[8];
    for (int i = 0; i < N; i++)
        uc_umap_bind(&m, &links[i], name, (size_t)snprintf(name, 8, "u%d", i));
    uc_umap_each(&m, unbind_odd, &w);
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(w.visits[i], 1);
        struct uc_umap_entry *e = uc_umap_find(&m, name, (size_t)snprintf(name, 8, "u%d", i));
        CHECK(i % 2 ? e == NULL : e == links[i].entry);
    }
    CHECK_EQ_INT(uc_umap_keys(&m), N / 2);
    for (int i = 0; i < N; i++)
        uc_umap_unbind(&m, &links[i]);
    CHECK(m.slots == NULL);
}

static void append_name(struct uc_umap_entry *e, void *ctx) { strcat(ctx, e->name); }

TEST(a_walk_goes_from_the_oldest_key_to_the_newest)
{
    struct uc_umap m = {0};
    struct uc_umap_link a = {0}, b = {0}, c = {0}, d = {0}, b2 = {0};
    uc_umap_bind(&m, &a, "a", 1);
    uc_umap_bind(&m, &b, "b", 1);
    uc_umap_bind(&m, &c, "c", 1);
    uc_umap_bind(&m, &b2, "b", 1); /* a second link: b stays where it was */
    char order[8] = "";
    uc_umap_each(&m, append_name, order);
    CHECK_MEM(order, strlen(order), "abc");
    uc_umap_unbind(&m, &b);
    uc_umap_unbind(&m, &b2);
    uc_umap_bind(&m, &d, "d", 1);
    uc_umap_bind(&m, &b, "b", 1); /* gone and back: the newest */
    order[0] = 0;
    uc_umap_each(&m, append_name, order);
    CHECK_MEM(order, strlen(order), "acdb");
    uc_umap_unbind(&m, &a);
    uc_umap_unbind(&m, &b);
    uc_umap_unbind(&m, &c);
    uc_umap_unbind(&m, &d);
}

TEST(shrinks_when_most_keys_have_left)
{
    enum { N = 10000 };
    static struct uc_umap_link links[N];
    struct uc_umap m = {0};
    char name[16];
    for (int i = 0; i < N; i++)
        uc_umap_bind(&m, &links[i], name, (size_t)snprintf(name, 16, "user%d", i));
    size_t big = m.mask + 1;
    CHECK(big >= N * 4 / 3);
    for (int i = 10; i < N; i++)
        uc_umap_unbind(&m, &links[i]);
    CHECK(m.mask + 1 <= 128);
    CHECK(uc_umap_find(&m, "user7", 5) == links[7].entry);
    for (int i = 0; i < 10; i++)
        uc_umap_unbind(&m, &links[i]);
}

int main(void)
{
    RUN(binds_many_links_to_one_uid);
    RUN(removing_one_link_keeps_the_others);
    RUN(rebinding_moves_the_link);
    RUN(uids_are_binary_safe_and_bounded);
    RUN(holds_a_hundred_thousand_uids);
    RUN(tells_every_count_change_first_and_last_included);
    RUN(stays_consistent_through_random_binds_and_unbinds);
    RUN(a_walk_visits_each_key_once_while_its_callback_unbinds);
    RUN(a_walk_goes_from_the_oldest_key_to_the_newest);
    RUN(shrinks_when_most_keys_have_left);
    return CHECK_SUMMARY("test_umap");
}
