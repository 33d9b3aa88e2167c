/* mailbox.c -- the embedded store of kept messages (see mailbox.h).
 *
 * Each kept message is one entry, linked three ways: into its uid's box (oldest first, for
 * replay and the per-uid caps), into the list of every entry (oldest first, for the memory
 * cap) and into a min-heap by expiry (for the sweep). Dropping an entry unlinks all three in
 * O(log n). A message dropped before any connection was handed it is reported undelivered
 * from a zero-delay timer, so that the policy is never re-entered from inside a send. */
#include "mailbox.h"

#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <utlist.h>

#include "err.h"
#include "hashkey.h"

struct box;

struct entry {
    struct entry *prev, *next;         /* its box, oldest first (utlist: head->prev is tail) */
    struct entry *all_prev, *all_next; /* every entry, oldest first */
    struct box *box;
    uint64_t seq;
    ev_tstamp expires;
    size_t heap_i;
    size_t len;
    uint8_t binary;
    uint8_t delivered; /* a connection was handed it */
    uint8_t data[];
};

struct box {
    UT_hash_handle hh;
    struct entry *entries;
    uint64_t last_seq;
    size_t n, bytes;
    size_t uid_len;
    char uid[];
};

/* An undelivered message waiting to be reported: the entry, and its uid (its box may be gone
 * by then). Owns the entry. */
struct note {
    struct note *next;
    struct entry *e;
    const char *reason;
    size_t uid_len;
    char uid[];
};

struct uc_mailbox {
    struct ev_loop *loop;
    struct uc_mailbox_limits lim;
    struct box *boxes;
    struct entry *all;
    struct entry **heap;
    size_t heap_n, heap_cap;
    uint64_t floor; /* numbers at or below it may have been used: a new box starts above */
    size_t memory;  /* bytes held: entries, boxes, heap slots */
    ev_timer sweep; /* every second while anything is kept */
    ev_timer notify;
    /* Dropped messages waiting to be reported: not counted in memory (they would make the cap
     * evict more), bounded by it on their own; beyond, a drop is counted, not reported. */
    struct note *notes, *notes_tail;
    size_t notes_memory;
    uc_undelivered_fn *undelivered;
    void *arg;
    struct uc_stats stats; /* the mailbox_* fields only */
};

/* What an entry and a box cost: the struct, the bytes, malloc's overhead, a heap slot; the
 * uthash handle's share of its table. */
enum { MALLOC_OVERHEAD = 16, HASH_SHARE = 16 };

static size_t entry_cost(size_t len)
{
    return sizeof(struct entry) + len + MALLOC_OVERHEAD + sizeof(struct entry *);
}

static size_t box_cost(size_t uid_len)
{
    return sizeof(struct box) + uid_len + MALLOC_OVERHEAD + HASH_SHARE;
}

/* ---- the expiry heap ---- */

static void heap_set(struct uc_mailbox *mb, size_t i, struct entry *e)
{
    mb->heap[i] = e;
    e->heap_i = i;
}

static void heap_up(struct uc_mailbox *mb, size_t i)
{
    struct entry *e = mb->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (mb->heap[parent]->expires <= e->expires)
            break;
        heap_set(mb, i, mb->heap[parent]);
        i = parent;
    }
    heap_set(mb, i, e);
}

static void heap_down(struct uc_mailbox *mb, size_t i)
{
    struct entry *e = mb->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= mb->heap_n)
            break;
        if (child + 1 < mb->heap_n && mb->heap[child + 1]->expires < mb->heap[child]->expires)
            child++;
        if (e->expires <= mb->heap[child]->expires)
            break;
        heap_set(mb, i, mb->heap[child]);
        i = child;
    }
    heap_set(mb, i, e);
}

static int heap_push(struct uc_mailbox *mb, struct entry *e)
{
    if (mb->heap_n == mb->heap_cap) {
        size_t cap = mb->heap_cap ? mb->heap_cap * 2 : 256;
        struct entry **grown = realloc(mb->heap, cap * sizeof *grown);
        if (!grown)
            return UC_ERR_NOMEM;
        mb->heap = grown;
        mb->heap_cap = cap;
    }
    mb->heap[mb->heap_n++] = e;
    heap_up(mb, mb->heap_n - 1);
    return 0;
}

static void heap_remove(struct uc_mailbox *mb, struct entry *e)
{
    size_t i = e->heap_i;
    struct entry *last = mb->heap[--mb->heap_n];
    if (i == mb->heap_n)
        return;
    heap_set(mb, i, last);
    heap_up(mb, i);
    heap_down(mb, last->heap_i);
}

/* ---- dropping ---- */

static void notify_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct uc_mailbox *mb = w->data;
    /* Taken whole first: the callback may keep messages, and their drops note anew. */
    struct note *n = mb->notes;
    mb->notes = mb->notes_tail = NULL;
    while (n) {
        struct note *next = n->next;
        struct entry *e = n->e;
        if (mb->undelivered)
            mb->undelivered(n->uid, n->uid_len, e->seq, e->data, e->len, e->binary, n->reason,
                            mb->arg);
        mb->notes_memory -= entry_cost(e->len);
        free(e);
        free(n);
        n = next;
    }
}

/* Takes e out of its box, the list and the heap; frees it, or hands it to a note when it was
 * never delivered; frees the box when it is empty, raising the floor to its last number. */
static void drop(struct uc_mailbox *mb, struct entry *e, int expired)
{
    const char *reason = expired ? "expired" : "evicted";
    struct box *b = e->box;
    DL_DELETE(b->entries, e);
    DL_DELETE2(mb->all, e, all_prev, all_next);
    heap_remove(mb, e);
    b->n--;
    b->bytes -= e->len;
    mb->stats.mailbox_messages--;
    if (expired)
        mb->stats.mailbox_expired++;
    else
        mb->stats.mailbox_evicted++;
    struct note *n = NULL;
    if (!e->delivered) {
        mb->stats.mailbox_undelivered++;
        if (mb->undelivered && mb->notes_memory + entry_cost(e->len) <= mb->lim.memory &&
            (n = malloc(sizeof *n + b->uid_len))) {
            n->next = NULL;
            n->e = e;
            n->reason = reason;
            n->uid_len = b->uid_len;
            memcpy(n->uid, b->uid, b->uid_len);
            if (mb->notes_tail)
                mb->notes_tail->next = n;
            else
                mb->notes = n;
            mb->notes_tail = n;
            mb->notes_memory += entry_cost(e->len);
            if (!ev_is_active(&mb->notify))
                ev_timer_start(mb->loop, &mb->notify);
        }
    }
    mb->memory -= entry_cost(e->len);
    if (!n)
        free(e);
    if (!b->entries) {
        if (b->last_seq > mb->floor)
            mb->floor = b->last_seq;
        HASH_DEL(mb->boxes, b);
        mb->memory -= box_cost(b->uid_len);
        free(b);
    }
}

static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct uc_mailbox *mb = w->data;
    ev_tstamp now = ev_now(loop);
    while (mb->heap_n && mb->heap[0]->expires <= now)
        drop(mb, mb->heap[0], 1);
    if (!mb->heap_n)
        ev_timer_stop(loop, w);
}

/* ---- the store ---- */

static uint64_t keep_now(struct uc_mailbox *mb, const char *uid, size_t uid_len, const void *data,
                         size_t len, int binary, double seconds)
{
    if (len > mb->lim.max_bytes || entry_cost(len) + box_cost(uid_len) > mb->lim.memory)
        return 0;
    struct box *b;
    HASH_FIND(hh, mb->boxes, uid, uid_len, b);
    int fresh = !b;
    if (fresh) {
        if (!(b = calloc(1, sizeof *b + uid_len)))
            return 0;
        b->uid_len = uid_len;
        memcpy(b->uid, uid, uid_len);
        b->last_seq = mb->floor;
    }
    struct entry *e = malloc(sizeof *e + len);
    if (e) {
        *e = (struct entry){.box = b,
                            .seq = b->last_seq + 1,
                            .expires = ev_now(mb->loop) + seconds,
                            .len = len,
                            .binary = (uint8_t) !!binary};
        memcpy(e->data, data, len);
    }
    if (!e || heap_push(mb, e) != 0) {
        free(e);
        if (fresh)
            free(b);
        return 0;
    }
    if (fresh) {
        HASH_ADD(hh, mb->boxes, uid, b->uid_len, b);
        mb->memory += box_cost(uid_len);
    }
    b->last_seq = e->seq;
    DL_APPEND(b->entries, e);
    DL_APPEND2(mb->all, e, all_prev, all_next);
    b->n++;
    b->bytes += len;
    mb->memory += entry_cost(len);
    mb->stats.mailbox_kept++;
    mb->stats.mailbox_messages++;
    uint64_t seq = e->seq;
    /* The caps, oldest first. The new entry alone fits both, so it is never the one dropped,
     * and its box stays. */
    while (b->n > mb->lim.max_messages || b->bytes > mb->lim.max_bytes)
        drop(mb, b->entries, 0);
    while (mb->memory > mb->lim.memory && mb->all != e)
        drop(mb, mb->all, 0);
    if (!ev_is_active(&mb->sweep))
        ev_timer_again(mb->loop, &mb->sweep);
    return seq;
}

static int keep(void *ctx, const char *uid, size_t uid_len, const void *data, size_t len,
                int binary, double seconds, uc_kept_fn *done, void *arg)
{
    uint64_t seq = keep_now(ctx, uid, uid_len, data, len, binary, seconds);
    if (!seq)
        return UC_ERR_LIMIT;
    done(arg, seq);
    return 0;
}

static void delivered(void *ctx, const char *uid, size_t uid_len, uint64_t seq)
{
    struct uc_mailbox *mb = ctx;
    struct box *b;
    HASH_FIND(hh, mb->boxes, uid, uid_len, b);
    /* Called right after keep: it is the newest, unless already dropped. */
    if (b && b->entries && b->entries->prev->seq == seq)
        b->entries->prev->delivered = 1;
}

/* The replay, up to where it ends: UC_REPLAY_DONE or UC_REPLAY_MORE, or -2 when the sink
 * asked to stop. */
static int replay_part(struct uc_mailbox *mb, const char *uid, size_t uid_len, uint64_t since,
                       size_t max_bytes, const struct uc_replay_sink *sink, uint64_t *last)
{
    struct box *b;
    HASH_FIND(hh, mb->boxes, uid, uid_len, b);
    *last = b ? b->last_seq : mb->floor;
    uint64_t expected = since + 1;
    size_t handed = 0;
    /* Holes count from a number the client holds: since, or the first message handed now. */
    int reference = since > 0;
    ev_tstamp now = ev_now(mb->loop);
    for (struct entry *e = b ? b->entries : NULL; e; e = e->next) {
        if (e->seq <= since || e->expires <= now)
            continue; /* had, or gone (the sweep has not come by yet) */
        if (handed >= max_bytes)
            return UC_REPLAY_MORE;
        if (reference && e->seq > expected) {
            mb->stats.mailbox_gaps++;
            if (sink->gap(sink->arg, expected, e->seq - 1))
                return -2;
        }
        e->delivered = 1;
        mb->stats.mailbox_replayed++;
        handed += e->len + 1;
        expected = e->seq + 1;
        reference = 1;
        if (sink->message(sink->arg, e->seq, e->data, e->len, e->binary))
            return -2;
    }
    if (reference && expected <= *last) {
        mb->stats.mailbox_gaps++;
        if (sink->gap(sink->arg, expected, *last))
            return -2;
    }
    return UC_REPLAY_DONE;
}

static void replay(void *ctx, const char *uid, size_t uid_len, uint64_t since, size_t max_bytes,
                   const struct uc_replay_sink *sink)
{
    uint64_t last;
    int r = replay_part(ctx, uid, uid_len, since, max_bytes, sink, &last);
    sink->done(sink->arg, r == -2 ? UC_REPLAY_DONE : r, last);
}

static void stats(void *ctx, struct uc_stats *out)
{
    struct uc_mailbox *mb = ctx;
    out->mailbox_kept = mb->stats.mailbox_kept;
    out->mailbox_messages = mb->stats.mailbox_messages;
    out->mailbox_memory = mb->memory;
    out->mailbox_expired = mb->stats.mailbox_expired;
    out->mailbox_evicted = mb->stats.mailbox_evicted;
    out->mailbox_undelivered = mb->stats.mailbox_undelivered;
    out->mailbox_replayed = mb->stats.mailbox_replayed;
    out->mailbox_gaps = mb->stats.mailbox_gaps;
}

struct uc_mailbox *uc_mailbox_new(struct ev_loop *loop, const struct uc_mailbox_limits *limits,
                                  uc_undelivered_fn *undelivered, void *arg)
{
    struct uc_mailbox *mb = calloc(1, sizeof *mb);
    if (!mb)
        return NULL;
    mb->loop = loop;
    mb->lim = *limits;
    mb->undelivered = undelivered;
    mb->arg = arg;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    mb->floor = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    ev_timer_init(&mb->sweep, sweep_cb, 0., 1.);
    mb->sweep.data = mb;
    ev_timer_init(&mb->notify, notify_cb, 0., 0.);
    mb->notify.data = mb;
    return mb;
}

struct uc_store uc_mailbox_store(struct uc_mailbox *mb)
{
    return (struct uc_store){
        .ctx = mb, .keep = keep, .delivered = delivered, .replay = replay, .stats = stats};
}

void uc_mailbox_free(struct uc_mailbox *mb)
{
    if (!mb)
        return;
    ev_timer_stop(mb->loop, &mb->sweep);
    ev_timer_stop(mb->loop, &mb->notify);
    while (mb->notes) {
        struct note *n = mb->notes;
        mb->notes = n->next;
        free(n->e);
        free(n);
    }
    while (mb->all) {
        struct entry *e = mb->all;
        mb->all = e->all_next;
        free(e);
    }
    struct box *b, *btmp;
    HASH_ITER(hh, mb->boxes, b, btmp)
    {
        HASH_DEL(mb->boxes, b);
        free(b);
    }
    free(mb->heap);
    free(mb);
}

static void service_free(void *ctx) { uc_mailbox_free(ctx); }

struct uc_service uc_mailbox_service(struct uc_mailbox *mb)
{
    return (struct uc_service){.ctx = mb, .free = service_free};
}
