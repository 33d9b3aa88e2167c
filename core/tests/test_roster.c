/* test_roster.c -- roster pages over fake nodes: each node's uids and group members are
 * arrays, the relay between them is a direct call, as the broker's publications would be.
 *
 * `test_roster --measure N` lists N online uids over three nodes a page at a time and prints
 * the time per page and the peak memory of a question: the figures the README reports. */
#include "../roster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

#define NODES 3

struct fake_uid {
    char uid[24];
    size_t connections; /* for 'u' */
    int gone;
};

struct node {
    struct uc_roster roster;
    struct uc_relay relay;
    struct fake_uid *uids;
    size_t nuids;
    /* group "g": one entry per connection in it (an index into uids) */
    size_t *members;
    size_t nmembers;
    int silent; /* answers no request */
};

static struct ev_loop *loop;
static struct node nodes[NODES];
static int cluster; /* the nodes ask each other */

static void walk(void *ctx, int kind, const char *key, size_t key_len,
                 void (*fn)(const char *uid, size_t len, size_t connections, void *fn_ctx),
                 void *fn_ctx)
{
    struct node *n = ctx;
    if (kind == 'g') {
        if (key_len != 1 || key[0] != 'g')
            return;
        for (size_t i = 0; i < n->nmembers; i++) {
            struct fake_uid *u = &n->uids[n->members[i]];
            if (!u->gone)
                fn(u->uid, strlen(u->uid), 1, fn_ctx);
        }
        return;
    }
    for (size_t i = 0; i < n->nuids; i++)
        if (!n->uids[i].gone)
            fn(n->uids[i].uid, strlen(n->uids[i].uid), n->uids[i].connections, fn_ctx);
}

/* The broker's part: the request goes to every node subscribed (this one's echo an empty
 * page), each answer straight back. */
static int gather(void *ctx, const void *req, size_t len,
                  void (*receivers)(void *arg, uint64_t id, long long n), void *arg, uint64_t id)
{
    struct node *self = ctx;
    receivers(arg, id, NODES);
    for (int i = 0; i < NODES; i++) {
        if (&nodes[i] == self) {
            char empty[33];
            memcpy(empty, req, 16);
            memcpy(empty + 16, "00000000000000000", 17);
            uc_roster_answer(&self->roster, empty, sizeof empty);
        } else if (!nodes[i].silent) {
            char name[2] = {(char)('0' + (self - nodes))};
            uc_roster_request(&nodes[i].roster, name, 1, req, len);
        }
    }
    return 0;
}

static void answer(void *ctx, const char *node, size_t node_len, const void *page, size_t len)
{
    (void)ctx;
    CHECK_EQ_INT(node_len, 1);
    uc_roster_answer(&nodes[node[0] - '0'].roster, page, len);
}

static void setup(size_t nuids, int in_cluster)
{
    cluster = in_cluster;
    for (int i = 0; i < NODES; i++) {
        struct node *n = &nodes[i];
        *n = (struct node){.nuids = nuids};
        n->uids = calloc(nuids ? nuids : 1, sizeof *n->uids);
        n->members = calloc(nuids ? 2 * nuids : 1, sizeof *n->members);
        if (cluster)
            n->relay = (struct uc_relay){.ctx = n, .gather = gather, .answer = answer};
        uc_roster_init(&n->roster, loop, &n->relay, 0.05, walk, n);
    }
}

static void teardown(void)
{
    for (int i = 0; i < NODES; i++) {
        uc_roster_cancel(&nodes[i].roster);
        free(nodes[i].uids);
        free(nodes[i].members);
    }
}

/* ---- asking, and checking what came ---- */

struct seen {
    size_t *times; /* per uid number: how many pages listed it */
    size_t *conns; /* per uid number: the connections the page said */
    size_t max_page, pages;
    int partial, answered, more;
    struct uc_roster_cursor next;
};

static void got_page(void *arg, const struct uc_roster_page *page)
{
    struct seen *s = arg;
    s->answered = 1;
    if (!page)
        return;
    s->pages++;
    if (page->n > s->max_page)
        s->max_page = page->n;
    s->partial |= page->partial;
    s->more = page->more;
    s->next = page->next;
    for (size_t i = 0; i < page->n; i++) {
        char uid[32];
        snprintf(uid, sizeof uid, "%.*s", (int)page->entries[i].len, page->entries[i].uid);
        unsigned long k = strtoul(uid + 1, NULL, 10);
        s->times[k]++;
        s->conns[k] = page->entries[i].connections;
        if (i > 0)
            CHECK(page->entries[i - 1].uid != page->entries[i].uid);
    }
}

static void ask(struct node *n, int kind, struct seen *s, size_t limit)
{
    s->answered = 0;
    struct uc_roster_cursor start = {0};
    const struct uc_roster_cursor *c = s->pages ? &s->next : &start;
    CHECK_EQ_INT(uc_roster_query(&n->roster, kind, "g", 1, c, limit, got_page, s), 0);
    CHECK(!s->answered || cluster); /* never inside the call when alone */
    while (!s->answered)
        ev_run(loop, EVRUN_ONCE);
}

/* Node i holds uids u<k> for k in [from, to), each with c connections. */
static void give(int i, size_t from, size_t to, size_t c)
{
    struct node *n = &nodes[i];
    n->nuids = 0;
    for (size_t k = from; k < to; k++) {
        snprintf(n->uids[n->nuids].uid, sizeof n->uids[0].uid, "u%zu", k);
        n->uids[n->nuids++].connections = c;
    }
}

static struct seen new_seen(size_t total)
{
    return (struct seen){.times = calloc(total, sizeof(size_t)),
                         .conns = calloc(total, sizeof(size_t))};
}

static void free_seen(struct seen *s)
{
    free(s->times);
    free(s->conns);
}

TEST(lists_every_online_uid_once_a_page_at_a_time_alone)
{
    setup(2500, 0);
    give(0, 0, 2500, 2);
    struct seen s = new_seen(2500);
    do
        ask(&nodes[0], 'u', &s, 1000);
    while (s.more);
    CHECK_EQ_INT(s.pages, 3);
    CHECK(s.max_page <= 1000);
    for (size_t k = 0; k < 2500; k++) {
        CHECK_EQ_INT(s.times[k], 1);
        CHECK_EQ_INT(s.conns[k], 2);
    }
    CHECK(!s.partial);
    free_seen(&s);
    teardown();
}

TEST(a_uid_present_for_the_whole_walk_is_listed_once_whoever_comes_and_goes)
{
    setup(3000, 0);
    give(0, 0, 2000, 1);
    struct seen s = new_seen(3000);
    size_t arriving = 2000;
    do {
        ask(&nodes[0], 'u', &s, 150);
        /* Between pages: a tenth of the first thousand leave, newcomers arrive. */
        for (size_t k = s.pages * 10; k < s.pages * 10 + 10 && k < 1000; k++)
            nodes[0].uids[k].gone = 1;
        for (int j = 0; j < 50 && arriving < 3000; j++, arriving++) {
            snprintf(nodes[0].uids[nodes[0].nuids].uid, 24, "u%zu", arriving);
            nodes[0].uids[nodes[0].nuids++].connections = 1;
        }
    } while (s.more);
    for (size_t k = 1000; k < 2000; k++)
        CHECK_EQ_INT(s.times[k], 1); /* there all along */
    for (size_t k = 0; k < 3000; k++)
        CHECK(s.times[k] <= 1);
    free_seen(&s);
    teardown();
}

TEST(lists_a_groups_members_once_with_their_connections_in_it)
{
    setup(100, 0);
    give(0, 0, 100, 1);
    struct node *n = &nodes[0];
    for (size_t k = 0; k < 100; k += 2) { /* even uids are in g, k % 3 == 0 twice */
        n->members[n->nmembers++] = k;
        if (k % 3 == 0)
            n->members[n->nmembers++] = k;
    }
    struct seen s = new_seen(100);
    do
        ask(n, 'g', &s, 7);
    while (s.more);
    for (size_t k = 0; k < 100; k++) {
        CHECK_EQ_INT(s.times[k], k % 2 == 0);
        CHECK_EQ_INT(s.conns[k], k % 2 ? 0 : k % 3 == 0 ? 2 : 1);
    }
    free_seen(&s);
    teardown();
}

TEST(sums_a_uid_over_the_nodes_and_lists_it_once_in_cluster_mode)
{
    setup(1000, 1);
    give(0, 0, 1000, 1);   /* u0..u999 */
    give(1, 500, 1400, 2); /* overlaps u500..u999 */
    give(2, 1400, 1500, 1);
    struct seen s = new_seen(1500);
    do
        ask(&nodes[1], 'u', &s, 100);
    while (s.more);
    for (size_t k = 0; k < 1500; k++) {
        CHECK_EQ_INT(s.times[k], 1);
        CHECK_EQ_INT(s.conns[k], k < 500 ? 1 : k < 1000 ? 3 : k < 1400 ? 2 : 1);
    }
    CHECK(s.max_page <= 100);
    CHECK(!s.partial);
    free_seen(&s);
    teardown();
}

TEST(a_node_that_does_not_answer_in_time_makes_the_page_partial)
{
    setup(10, 1);
    give(0, 0, 5, 1);
    give(2, 5, 10, 1);
    nodes[2].silent = 1;
    struct seen s = new_seen(10);
    ask(&nodes[0], 'u', &s, 100);
    CHECK(s.partial);
    CHECK_EQ_INT(s.times[0], 1);
    CHECK_EQ_INT(s.times[5], 0);
    free_seen(&s);
    teardown();
}

TEST(refuses_bad_limits_and_ignores_malformed_requests_and_pages)
{
    setup(10, 1);
    give(0, 0, 10, 1);
    struct uc_roster_cursor c = {0};
    struct seen s = new_seen(10);
    CHECK_EQ_INT(uc_roster_query(&nodes[0].roster, 'u', NULL, 0, &c, 0, got_page, &s),
                 UC_ERR_INVALID);
    CHECK_EQ_INT(uc_roster_query(&nodes[0].roster, 'u', NULL, 0, &c, 1001, got_page, &s),
                 UC_ERR_INVALID);
    CHECK_EQ_INT(uc_roster_query(&nodes[0].roster, 'g', "", 0, &c, 10, got_page, &s),
                 UC_ERR_INVALID);
    CHECK(!s.answered);
    static const char *const bad[] = {"",
                                      "0000000000000001u0",
                                      "zzzzzzzzzzzzzzzzu00000000000000000003e8",
                                      "0000000000000001x000000000000000003e8",
                                      "0000000000000001u000000000000000000000",
                                      "0000000000000001u00000000000000000ffff",
                                      "0000000000000001g000000000000000003e8"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uc_roster_request(&nodes[0].roster, "1", 1, bad[i], strlen(bad[i]));
        uc_roster_answer(&nodes[0].roster, bad[i], strlen(bad[i]));
    }
    /* A page whose entries run past its end: what came before still counts, nothing reads
     * beyond. */
    struct uc_roster_cursor start = {0};
    nodes[1].silent = nodes[2].silent = 1;
    CHECK_EQ_INT(uc_roster_query(&nodes[0].roster, 'u', NULL, 0, &start, 10, got_page, &s), 0);
    char page[] = "0000000000000001"
                  "0"
                  "0000000000000000"
                  "1,2:u7"
                  "5,ff:u8";
    page[15] = '0' + (char)nodes[0].roster.last_id;
    uc_roster_answer(&nodes[0].roster, page, sizeof page - 1);
    while (!s.answered)
        ev_run(loop, EVRUN_ONCE);
    CHECK_EQ_INT(s.times[7], 1);
    CHECK_EQ_INT(s.conns[7], 2); /* node 0's one and the page's one */
    free_seen(&s);
    teardown();
}

TEST(answers_every_waiting_question_with_no_page_when_cancelled)
{
    setup(10, 0);
    struct uc_roster_cursor c = {0};
    struct seen s = new_seen(10);
    CHECK_EQ_INT(uc_roster_query(&nodes[0].roster, 'u', NULL, 0, &c, 10, got_page, &s), 0);
    uc_roster_cancel(&nodes[0].roster);
    CHECK(s.answered);
    CHECK_EQ_INT(s.pages, 0);
    free_seen(&s);
    teardown();
}

/* A 100,000-member group over three nodes, paginated to the end. */
TEST(a_hundred_thousand_member_group_paginates_to_the_end_each_uid_once)
{
    size_t total = 100000, per = total / NODES + 1;
    setup(per, 1);
    for (int i = 0; i < NODES; i++) {
        size_t from = (size_t)i * per, to = from + per < total ? from + per : total;
        give(i, from, to, 1);
        for (size_t k = 0; k < nodes[i].nuids; k++)
            nodes[i].members[nodes[i].nmembers++] = k;
    }
    struct seen s = new_seen(total);
    do
        ask(&nodes[0], 'g', &s, 1000);
    while (s.more);
    size_t once = 0;
    for (size_t k = 0; k < total; k++)
        once += s.times[k] == 1;
    CHECK_EQ_INT(once, total);
    CHECK(s.max_page <= 1000);
    free_seen(&s);
    teardown();
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int measure(size_t total)
{
    size_t per = total / NODES + 1;
    setup(per, 1);
    for (int i = 0; i < NODES; i++) {
        size_t from = (size_t)i * per, to = from + per < total ? from + per : total;
        give(i, from, to, 1);
    }
    struct seen s = new_seen(total);
    double t0 = now();
    do
        ask(&nodes[0], 'u', &s, UC_ROSTER_LIMIT_MAX);
    while (s.more);
    double t = now() - t0;
    size_t once = 0;
    for (size_t k = 0; k < total; k++)
        once += s.times[k] == 1;
    printf("%zu uids over %d nodes: %zu pages of <= %d, each uid once: %s; %.2f ms per page "
           "(every node's walk, one CPU), %.1f s for the whole list\n",
           total, NODES, s.pages, UC_ROSTER_LIMIT_MAX, once == total ? "yes" : "NO",
           1000 * t / (double)s.pages, t);
    free_seen(&s);
    teardown();
    return once != total;
}

int main(int argc, char **argv)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    if (argc == 3 && strcmp(argv[1], "--measure") == 0)
        return measure(strtoul(argv[2], NULL, 10));
    RUN(lists_every_online_uid_once_a_page_at_a_time_alone);
    RUN(a_uid_present_for_the_whole_walk_is_listed_once_whoever_comes_and_goes);
    RUN(lists_a_groups_members_once_with_their_connections_in_it);
    RUN(sums_a_uid_over_the_nodes_and_lists_it_once_in_cluster_mode);
    RUN(a_node_that_does_not_answer_in_time_makes_the_page_partial);
    RUN(refuses_bad_limits_and_ignores_malformed_requests_and_pages);
    RUN(answers_every_waiting_question_with_no_page_when_cancelled);
    RUN(a_hundred_thousand_member_group_paginates_to_the_end_each_uid_once);
    ev_loop_destroy(loop);
    return CHECK_SUMMARY("test_roster");
}
