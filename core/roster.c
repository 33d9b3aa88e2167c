/* roster.c -- the online uids, or a group's members, a page at a time, over every node.
 *
 * Every uid has a position: the 64-bit FNV-1a hash of its bytes, the same on every node. A
 * page is every uid whose position is above the cursor and at most a boundary, chosen so
 * that there are about limit of them: the boundary is the limit-th smallest position, and
 * uids that share it all come on the same page (a second walk finds the ones the first left
 * out), so no uid straddles two pages. Since a page never depends on what came before, uids
 * that come and go meanwhile do not shift the others: one present for the whole walk is
 * listed exactly once. Each page costs a walk over this node's uids (or the group's members)
 * with a heap of limit entries, and nothing is kept between pages.
 *
 * In cluster mode the question goes to every node (relay->gather: one publication, whose
 * receiver count says how many pages to wait for; this node's own echo counts as an empty
 * page, its uids being collected directly). Each node answers its own page with its
 * boundary and whether it had more; the asking node sums the connections of uids listed by
 * several nodes, keeps what lies at or below the lowest boundary of a node that had more (the
 * others' uids beyond it are not all known yet), and cuts that to limit again. A node that
 * does not answer within the timeout is left out and the page is said to be partial.
 *
 * Each question is owned by the list until answered; the server answers every one with a NULL
 * page when it is freed, so no caller waits forever or leaks. */
#include "roster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "container.h"
#include "err.h"
#include "hashkey.h"
#include "umap.h"

/* One uid on a page in the making: its position, its connections, its bytes. */
struct item {
    UT_hash_handle hh; /* by uid */
    uint64_t pos;
    uint64_t connections;
    size_t heap_at; /* its index in the heap while it is in one */
    int settled;    /* on the page after the first walk: the second one must not count it again */
    size_t len;
    char uid[];
};

/* A page in the making: the items (by uid), and a max-heap of them by position when the
 * page has a limit. */
struct collect {
    struct item *items;
    struct item **heap;
    size_t n, limit;
    struct uc_roster_cursor after;
    int dropped;          /* some uid above the cursor was left out: there is more */
    uint64_t dropped_min; /* the lowest position left out */
    uint64_t boundary;    /* with dropped: the last position on the page */
    int second_walk;      /* only uids at the boundary, not settled */
    int failed;           /* out of memory */
};

struct uc_roster_query {
    struct uc_roster *r;
    uint64_t id;
    uc_roster_fn *done;
    void *arg;
    size_t limit;
    struct collect merged; /* every page so far, no limit */
    int any_full;          /* some node had more than its page */
    uint64_t lowest_full;  /* the lowest boundary of such a node */
    long long expected;    /* pages to come (this node's echo included), -1 until known */
    long long received;    /* pages come (they may come before the count) */
    int asked;             /* the relay took the question */
    int partial;
    ev_timer timer;
    struct uc_roster_query *prev, *next;
};

static uint64_t position(const char *uid, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)uid[i]) * 0x100000001b3ull;
    return h;
}

/* ---- collecting one node's page ---- */

static void heap_swap(struct collect *c, size_t a, size_t b)
{
    struct item *t = c->heap[a];
    c->heap[a] = c->heap[b];
    c->heap[b] = t;
    c->heap[a]->heap_at = a;
    c->heap[b]->heap_at = b;
}

static void heap_up(struct collect *c, size_t i)
{
    while (i > 0 && c->heap[(i - 1) / 2]->pos < c->heap[i]->pos) {
        heap_swap(c, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(struct collect *c, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, top = i;
        if (l < c->n && c->heap[l]->pos > c->heap[top]->pos)
            top = l;
        if (r < c->n && c->heap[r]->pos > c->heap[top]->pos)
            top = r;
        if (top == i)
            return;
        heap_swap(c, i, top);
        i = top;
    }
}

static void drop(struct collect *c, uint64_t pos)
{
    if (!c->dropped || pos < c->dropped_min)
        c->dropped_min = pos;
    c->dropped = 1;
}

static struct item *add_item(struct collect *c, const char *uid, size_t len, uint64_t pos)
{
    struct item *it = malloc(sizeof *it + len);
    if (!it) {
        c->failed = 1;
        return NULL;
    }
    *it = (struct item){.pos = pos, .len = len};
    memcpy(it->uid, uid, len);
    HASH_ADD_KEYPTR(hh, c->items, it->uid, len, it);
    return it;
}

static void remove_item(struct collect *c, struct item *it)
{
    HASH_DEL(c->items, it);
    free(it);
}

/* One uid (one connection of it, for a group) from the walk. */
static void collect_uid(const char *uid, size_t len, size_t connections, void *ctx)
{
    struct collect *c = ctx;
    uint64_t pos = position(uid, len);
    if (c->failed || (c->after.started && pos <= c->after.after))
        return;
    if (c->second_walk && pos != c->boundary)
        return;
    struct item *it;
    HASH_FIND(hh, c->items, uid, len, it);
    if (it) {
        if (!it->settled)
            it->connections += connections;
        return;
    }
    if (c->second_walk) { /* no heap: every uid at the boundary */
        if ((it = add_item(c, uid, len, pos)) != NULL)
            it->connections = connections;
        return;
    }
    if (c->n == c->limit) {
        if (pos >= c->heap[0]->pos) {
            drop(c, pos);
            return;
        }
        struct item *out = c->heap[0];
        drop(c, out->pos);
        c->heap[0] = c->heap[--c->n];
        c->heap[0]->heap_at = 0;
        heap_down(c, 0);
        remove_item(c, out);
    }
    if ((it = add_item(c, uid, len, pos)) == NULL)
        return;
    it->connections = connections;
    it->heap_at = c->n;
    c->heap[c->n++] = it;
    heap_up(c, it->heap_at);
}

static void collect_free(struct collect *c)
{
    struct item *it, *tmp;
    HASH_ITER(hh, c->items, it, tmp)
    {
        HASH_DEL(c->items, it);
        free(it);
    }
    free(c->heap);
    c->heap = NULL;
}

/* This node's page: every uid above after and at most the boundary (c->dropped: there are
 * more beyond it). Returns 0 or UC_ERR_NOMEM (c freed). */
static int collect_local(struct uc_roster *r, int kind, const char *group, size_t group_len,
                         const struct uc_roster_cursor *after, size_t limit, struct collect *c)
{
    *c = (struct collect){.limit = limit, .after = *after};
    if (!(c->heap = malloc(limit * sizeof *c->heap)))
        return UC_ERR_NOMEM;
    r->walk(r->ctx, kind, group, group_len, collect_uid, c);
    if (c->dropped && c->n) {
        c->boundary = c->heap[0]->pos;
        if (c->dropped_min == c->boundary) { /* some uids at the boundary were left out */
            struct item *it, *tmp;
            HASH_ITER(hh, c->items, it, tmp) it->settled = 1;
            c->second_walk = 1;
            r->walk(r->ctx, kind, group, group_len, collect_uid, c);
        }
    }
    free(c->heap);
    c->heap = NULL;
    if (c->failed) {
        collect_free(c);
        return UC_ERR_NOMEM;
    }
    return 0;
}

/* ---- the wire: what goes between nodes, in the relay's publications ----
 * request: <id: 16 hex><kind: u|g><started: 0|1><after: 16 hex><limit: 4 hex><group bytes>
 * page:    <id: 16 hex><more: 0|1><boundary: 16 hex>, then per uid <connections hex>,<len
 * hex>:<uid>
 */
#define REQUEST_HEAD 38
#define PAGE_HEAD 33

static void put_hex(char *out, uint64_t v, int digits)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
}

/* Reads digits hex digits (all of them must be), or up to a stop byte when stop >= 0. Returns
 * the bytes read (the stop byte included), or 0 when malformed. */
static size_t get_hex(const char *in, size_t avail, int digits, int stop, uint64_t *v)
{
    *v = 0;
    for (size_t i = 0; i < avail; i++) {
        if (stop >= 0 && in[i] == stop)
            return i > 0 ? i + 1 : 0;
        if (stop < 0 && i == (size_t)digits)
            return i;
        int d = in[i] >= '0' && in[i] <= '9'   ? in[i] - '0'
                : in[i] >= 'a' && in[i] <= 'f' ? in[i] - 'a' + 10
                                               : -1;
        if (d < 0 || i >= 16)
            return 0;
        *v = *v << 4 | (uint64_t)d;
    }
    return stop < 0 && avail == (size_t)digits ? avail : 0;
}

/* ---- answering ---- */

static int by_position(const struct item *a, const struct item *b)
{
    if (a->pos != b->pos)
        return a->pos < b->pos ? -1 : 1;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->uid, b->uid, n);
    return c ? c : a->len < b->len ? -1 : a->len > b->len;
}

static int by_position_qsort(const void *a, const void *b)
{
    return by_position(*(struct item *const *)a, *(struct item *const *)b);
}

static void finish(struct uc_roster_query *q)
{
    struct uc_roster *r = q->r;
    DL_DELETE(r->queries, q);
    ev_timer_stop(r->loop, &q->timer);
    /* What lies at or below the lowest boundary of a node with more is complete. */
    size_t count = HASH_COUNT(q->merged.items), n = 0;
    struct item **sorted = malloc((count ? count : 1) * sizeof *sorted);
    struct uc_roster_entry *entries = malloc((count ? count : 1) * sizeof *entries);
    if (!sorted || !entries) {
        free(sorted);
        free(entries);
        collect_free(&q->merged);
        q->done(q->arg, NULL);
        free(q);
        return;
    }
    struct item *it, *tmp;
    HASH_ITER(hh, q->merged.items, it, tmp)
    {
        if (!q->any_full || it->pos <= q->lowest_full)
            sorted[n++] = it;
    }
    qsort(sorted, n, sizeof *sorted, by_position_qsort);
    struct uc_roster_page page = {.entries = entries, .partial = q->partial};
    if (q->any_full) {
        page.more = 1;
        page.next = (struct uc_roster_cursor){.started = 1, .after = q->lowest_full};
    }
    if (n > q->limit) { /* cut at the limit-th position, keeping the uids that share it */
        uint64_t last = sorted[q->limit - 1]->pos;
        while (n > q->limit && sorted[n - 1]->pos > last)
            n--;
        page.more = 1;
        page.next = (struct uc_roster_cursor){.started = 1, .after = last};
    }
    for (size_t i = 0; i < n; i++)
        entries[i] = (struct uc_roster_entry){
            .uid = sorted[i]->uid, .len = sorted[i]->len, .connections = sorted[i]->connections};
    page.n = n;
    q->done(q->arg, &page);
    free(sorted);
    free(entries);
    collect_free(&q->merged);
    free(q);
}

/* Adds a node's page (its uids in c) to the question's. */
static void merge(struct uc_roster_query *q, struct collect *c)
{
    if (c->dropped && (!q->any_full || c->boundary < q->lowest_full)) {
        q->any_full = 1;
        q->lowest_full = c->boundary;
    }
    struct item *it, *tmp, *have;
    HASH_ITER(hh, c->items, it, tmp)
    {
        HASH_FIND(hh, q->merged.items, it->uid, it->len, have);
        if (have) {
            have->connections += it->connections;
        } else {
            HASH_DEL(c->items, it);
            HASH_ADD_KEYPTR(hh, q->merged.items, it->uid, it->len, it);
        }
    }
    collect_free(c);
}

static struct uc_roster_query *find(struct uc_roster *r, uint64_t id)
{
    for (struct uc_roster_query *q = r->queries; q; q = q->next)
        if (q->id == id)
            return q;
    return NULL;
}

static void receivers(void *arg, uint64_t id, long long n)
{
    struct uc_roster_query *q = find(arg, id);
    if (!q)
        return;
    if (n < 0) /* nobody took it: ours alone, partial */
        q->partial = 1;
    q->expected = n < 0 ? 0 : n;
    if (q->received >= q->expected)
        finish(q);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct uc_roster_query *q = container_of(w, struct uc_roster_query, timer);
    q->partial = 1;
    finish(q);
}

/* Local questions, answered from the loop; one added by a callback waits for the next. */
static void due_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct uc_roster *r = container_of(w, struct uc_roster, due);
    struct uc_roster_query *q = r->queries, *next;
    for (; q; q = next) {
        next = q->next;
        if (!q->asked)
            finish(q);
    }
}

void uc_roster_init(struct uc_roster *r, struct ev_loop *loop, const struct uc_relay *relay,
                    double timeout, uc_roster_walk_fn *walk, void *ctx)
{
    *r = (struct uc_roster){
        .loop = loop, .relay = relay, .timeout = timeout, .walk = walk, .ctx = ctx};
    ev_init(&r->due, due_cb);
}

int uc_roster_query(struct uc_roster *r, int kind, const char *group, size_t group_len,
                    const struct uc_roster_cursor *cursor, size_t limit, uc_roster_fn *done,
                    void *arg)
{
    if (limit < 1 || limit > UC_ROSTER_LIMIT_MAX || (kind != 'u' && kind != 'g') ||
        (kind == 'g' && (group_len < 1 || group_len > UC_UID_MAX)))
        return UC_ERR_INVALID;
    struct uc_roster_query *q = calloc(1, sizeof *q);
    if (!q)
        return UC_ERR_NOMEM;
    struct collect local;
    if (collect_local(r, kind, group, group_len, cursor, limit, &local) != 0) {
        free(q);
        return UC_ERR_NOMEM;
    }
    *q = (struct uc_roster_query){
        .r = r, .id = ++r->last_id, .done = done, .arg = arg, .limit = limit, .expected = -1};
    merge(q, &local);
    ev_init(&q->timer, timeout_cb);
    DL_APPEND(r->queries, q);
    if (r->relay->gather) {
        char req[REQUEST_HEAD + UC_UID_MAX];
        put_hex(req, q->id, 16);
        req[16] = (char)kind;
        req[17] = cursor->started ? '1' : '0';
        put_hex(req + 18, cursor->after, 16);
        put_hex(req + 34, limit, 4);
        size_t len = REQUEST_HEAD;
        if (kind == 'g') {
            memcpy(req + len, group, group_len);
            len += group_len;
        }
        uint64_t id = q->id;
        int asked = r->relay->gather(r->relay->ctx, req, len, receivers, r, id) == 0;
        if (!(q = find(r, id)))
            return 0; /* every page came inside the call (a relay that answers at once) */
        q->asked = asked;
        if (!asked)
            q->partial = 1; /* the cluster cannot be asked now: ours alone */
    }
    if (q->asked) {
        ev_timer_set(&q->timer, r->timeout, 0.);
        ev_timer_start(r->loop, &q->timer);
    } else {
        ev_feed_event(r->loop, &r->due, EV_CUSTOM);
    }
    return 0;
}

void uc_roster_request(struct uc_roster *r, const char *node, size_t node_len, const void *data,
                       size_t len)
{
    const char *req = data;
    uint64_t id, after, limit;
    if (len < REQUEST_HEAD || !get_hex(req, 16, 16, -1, &id) ||
        (req[16] != 'u' && req[16] != 'g') || (req[17] != '0' && req[17] != '1') ||
        !get_hex(req + 18, 16, 16, -1, &after) || !get_hex(req + 34, 4, 4, -1, &limit) ||
        limit < 1 || limit > UC_ROSTER_LIMIT_MAX || !r->relay->answer)
        return;
    int kind = req[16];
    size_t group_len = len - REQUEST_HEAD;
    if (kind == 'g' ? group_len < 1 || group_len > UC_UID_MAX : group_len != 0)
        return;
    struct uc_roster_cursor cursor = {.started = req[17] == '1', .after = after};
    struct collect c;
    if (collect_local(r, kind, req + REQUEST_HEAD, group_len, &cursor, limit, &c) != 0)
        return; /* the asker times out and says partial */
    size_t size = PAGE_HEAD;
    struct item *it, *tmp;
    HASH_ITER(hh, c.items, it, tmp) size += 34 + it->len;
    char *page = malloc(size);
    if (page) {
        put_hex(page, id, 16);
        page[16] = c.dropped ? '1' : '0';
        put_hex(page + 17, c.dropped ? c.boundary : 0, 16);
        size_t o = PAGE_HEAD;
        HASH_ITER(hh, c.items, it, tmp)
        {
            o += (size_t)snprintf(page + o, size - o,
                                  "%llx,%zx:", (unsigned long long)it->connections, it->len);
            memcpy(page + o, it->uid, it->len);
            o += it->len;
        }
        r->relay->answer(r->relay->ctx, node, node_len, page, o);
        free(page);
    }
    collect_free(&c);
}

void uc_roster_answer(struct uc_roster *r, const void *data, size_t len)
{
    const char *p = data, *end = p + len;
    uint64_t id, boundary;
    if (len < PAGE_HEAD || !get_hex(p, 16, 16, -1, &id) || (p[16] != '0' && p[16] != '1') ||
        !get_hex(p + 17, 16, 16, -1, &boundary))
        return;
    struct uc_roster_query *q = find(r, id);
    if (!q)
        return;
    struct collect c = {.dropped = p[16] == '1', .boundary = boundary};
    for (p += PAGE_HEAD; p < end;) {
        uint64_t connections, uid_len;
        size_t a = get_hex(p, (size_t)(end - p), 0, ',', &connections);
        size_t b = a ? get_hex(p + a, (size_t)(end - p) - a, 0, ':', &uid_len) : 0;
        if (!b || uid_len < 1 || uid_len > UC_UID_MAX || uid_len > (uint64_t)(end - p) - a - b)
            break; /* malformed: what came before it still counts */
        p += a + b;
        struct item *it;
        HASH_FIND(hh, c.items, p, (size_t)uid_len, it);
        if (it)
            it->connections += connections;
        else if ((it = add_item(&c, p, (size_t)uid_len, position(p, (size_t)uid_len))) != NULL)
            it->connections = connections;
        p += uid_len;
    }
    merge(q, &c);
    if (++q->received >= q->expected && q->expected >= 0)
        finish(q);
}

void uc_roster_cancel(struct uc_roster *r)
{
    while (r->queries) {
        struct uc_roster_query *q = r->queries;
        DL_DELETE(r->queries, q);
        ev_timer_stop(r->loop, &q->timer);
        collect_free(&q->merged);
        q->done(q->arg, NULL);
        free(q);
    }
}
