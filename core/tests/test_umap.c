/* test_umap.c -- the uid map: many connections per uid, rebinding, removal of one only. */
#include "../umap.h"

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

int main(void)
{
    RUN(binds_many_links_to_one_uid);
    RUN(removing_one_link_keeps_the_others);
    RUN(rebinding_moves_the_link);
    RUN(uids_are_binary_safe_and_bounded);
    RUN(holds_a_hundred_thousand_uids);
    RUN(tells_every_count_change_first_and_last_included);
    return CHECK_SUMMARY("test_umap");
}
