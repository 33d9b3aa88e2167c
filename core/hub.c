/* hub.c -- the maps, the memberships, the broadcast log and delivery (see hub.h). */
#include "hub.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "container.h"
#include "err.h"
#include "hashkey.h"
#include "ws.h"

/* One member's place in one group: linked into the group's list (link), into the member's own
 * list (prev/next), and into the hub's table by (owner, group entry), so that joining, leaving
 * and asking cost the same however many groups a member is in. */
struct uc_membership {
    struct uc_umap_link link; /* link.owner is the connection */
    struct uc_hub_member *member;
    struct uc_membership *prev, *next;
    UT_hash_handle hh;
    struct uc_membership_key {
        const void *owner;
        const struct uc_umap_entry *group;
    } key;
};

static uint64_t log_seq(const struct uc_hub *h) { return h->log_base + h->log_n; }

void uc_hub_init(struct uc_hub *h, const struct uc_hub_sink *sink, unsigned max_groups)
{
    memset(h, 0, sizeof *h);
    h->sink = *sink;
    h->max_groups = max_groups;
}

static void clear_log(struct uc_hub *h)
{
    for (size_t i = 0; i < h->log_n; i++) {
        uc_buf_unref(h->log[i]);
        if (h->log_numbered[i])
            uc_buf_unref(h->log_numbered[i]);
    }
    h->log_base += h->log_n;
    h->log_n = 0;
}

void uc_hub_free(struct uc_hub *h)
{
    clear_log(h);
    free(h->log);
    free(h->log_numbered);
    h->log = h->log_numbered = NULL;
    uc_umap_destroy(&h->uids);
    uc_umap_destroy(&h->groups);
}

void uc_hub_member_init(struct uc_hub_member *m, void *owner)
{
    memset(m, 0, sizeof *m);
    m->uid_link.owner = owner;
}

void uc_hub_member_free(struct uc_hub_member *m)
{
    free(m->left_groups);
    m->left_groups = NULL;
    m->left_groups_len = 0;
}

/* ---- uids ---- */

int uc_hub_bind(struct uc_hub *h, struct uc_hub_member *m, const char *uid, size_t len)
{
    if (!m->uid_link.entry)
        m->bcast_seen = log_seq(h); /* logged while it was unbound: not its own */
    int r = uc_umap_bind(&h->uids, &m->uid_link, uid, len);
    if (r == 0) {
        m->last_seq = 0; /* numbers are per uid */
        m->resuming = 0;
    }
    return r;
}

void uc_hub_unbind(struct uc_hub *h, struct uc_hub_member *m)
{
    uc_hub_catch_up(h, m);
    uc_umap_unbind(&h->uids, &m->uid_link);
    m->last_seq = 0;
    m->resuming = 0;
}

const char *uc_hub_uid(const struct uc_hub_member *m, size_t *len)
{
    if (!m->uid_link.entry)
        return NULL;
    *len = m->uid_link.entry->len;
    return m->uid_link.entry->name;
}

/* ---- groups ---- */

static struct uc_membership *find_membership(const struct uc_hub *h, const struct uc_hub_member *m,
                                             const char *group, size_t len)
{
    struct uc_membership_key key = {.owner = m->uid_link.owner,
                                    .group = uc_umap_find(&h->groups, group, len)};
    struct uc_membership *ms = NULL;
    if (key.group)
        HASH_FIND(hh, h->memberships, &key, sizeof key, ms);
    return ms;
}

int uc_hub_join(struct uc_hub *h, struct uc_hub_member *m, const char *group, size_t len)
{
    if (len == 0 || len > UC_UID_MAX)
        return UC_ERR_INVALID;
    if (find_membership(h, m, group, len))
        return 0;
    if (m->ngroups >= h->max_groups)
        return UC_ERR_LIMIT;
    struct uc_membership *ms = calloc(1, sizeof *ms);
    if (!ms)
        return UC_ERR_NOMEM;
    ms->link.owner = m->uid_link.owner;
    ms->member = m;
    int r = uc_umap_bind(&h->groups, &ms->link, group, len);
    if (r != 0) {
        free(ms);
        return r;
    }
    ms->key = (struct uc_membership_key){.owner = ms->link.owner, .group = ms->link.entry};
    HASH_ADD(hh, h->memberships, key, sizeof ms->key, ms);
    DL_APPEND(m->groups, ms);
    m->ngroups++;
    return 0;
}

static void drop_membership(struct uc_hub *h, struct uc_hub_member *m, struct uc_membership *ms)
{
    HASH_DEL(h->memberships, ms);
    DL_DELETE(m->groups, ms);
    m->ngroups--;
    uc_umap_unbind(&h->groups, &ms->link);
    free(ms);
}

int uc_hub_leave(struct uc_hub *h, struct uc_hub_member *m, const char *group, size_t len)
{
    struct uc_membership *ms = find_membership(h, m, group, len);
    if (!ms)
        return 0;
    drop_membership(h, m, ms);
    return 1;
}

/* The names remembered when the member left, one by one, until fn returns nonzero. */
static void each_left_group(const struct uc_hub_member *m,
                            int (*fn)(const char *name, size_t len, void *ctx), void *ctx)
{
    const uint8_t *p = m->left_groups, *end = p + m->left_groups_len;
    while (p < end) {
        size_t n = (size_t)p[0] << 8 | p[1];
        if (fn((const char *)p + 2, n, ctx))
            return;
        p += 2 + n;
    }
}

struct group_name {
    const char *name;
    size_t len;
    int found;
};

static int match_name(const char *name, size_t len, void *ctx)
{
    struct group_name *g = ctx;
    g->found = len == g->len && memcmp(name, g->name, len) == 0;
    return g->found;
}

int uc_hub_in_group(const struct uc_hub *h, const struct uc_hub_member *m, const char *group,
                    size_t len)
{
    if (!m->left)
        return find_membership(h, m, group, len) != NULL;
    struct group_name g = {.name = group, .len = len};
    each_left_group(m, match_name, &g);
    return g.found;
}

struct each_ctx {
    void (*fn)(const char *name, size_t len, void *ctx);
    void *ctx;
};

static int call_each(const char *name, size_t len, void *ctx)
{
    struct each_ctx *e = ctx;
    e->fn(name, len, e->ctx);
    return 0;
}

void uc_hub_each_group(const struct uc_hub_member *m,
                       void (*fn)(const char *name, size_t len, void *ctx), void *ctx)
{
    if (m->left) {
        struct each_ctx e = {fn, ctx};
        each_left_group(m, call_each, &e);
        return;
    }
    for (const struct uc_membership *ms = m->groups; ms; ms = ms->next)
        fn(ms->link.entry->name, ms->link.entry->len, ctx);
}

/* Keeps the names of the groups a member leaves with, as its uid stays readable too. */
static void remember_groups(struct uc_hub_member *m)
{
    size_t len = 0;
    for (struct uc_membership *ms = m->groups; ms; ms = ms->next)
        len += 2 + ms->link.entry->len;
    if (!len || !(m->left_groups = malloc(len)))
        return;
    uint8_t *p = m->left_groups;
    for (struct uc_membership *ms = m->groups; ms; ms = ms->next) {
        size_t n = ms->link.entry->len; /* <= UC_UID_MAX, so two bytes hold it */
        *p++ = (uint8_t)(n >> 8);
        *p++ = (uint8_t)n;
        memcpy(p, ms->link.entry->name, n);
        p += n;
    }
    m->left_groups_len = len;
}

void uc_hub_leave_all(struct uc_hub *h, struct uc_hub_member *m)
{
    if (m->left)
        return;
    m->left = 1;
    /* Unlinked now, so that a delivery running right now skips it. */
    uc_umap_unbind(&h->uids, &m->uid_link);
    remember_groups(m);
    while (m->groups)
        drop_membership(h, m, m->groups);
}

/* ---- delivery ---- */

struct uc_buf *uc_hub_frame(int numbered, uint64_t seq, const void *data, size_t len, int binary)
{
    int opcode = binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME;
    if (!numbered)
        return uc_ws_frame(opcode, data, len);
    char head[24];
    int n =
        seq ? snprintf(head, sizeof head, "%" PRIu64 " ", seq) : snprintf(head, sizeof head, "- ");
    return uc_ws_frame_prefixed(opcode, head, (size_t)n, data, len);
}

/* Broadcast i of the log for a numbered member: made from the plain frame the first time a
 * numbered member needs it. */
static struct uc_buf *numbered_log_frame(struct uc_hub *h, size_t i)
{
    if (!h->log_numbered[i]) {
        int opcode;
        size_t len;
        const uint8_t *payload = uc_ws_frame_payload(h->log[i], &opcode, &len);
        h->log_numbered[i] = uc_hub_frame(1, 0, payload, len, opcode == WSLAY_BINARY_FRAME);
    }
    return h->log_numbered[i];
}

void uc_hub_catch_up(struct uc_hub *h, struct uc_hub_member *m)
{
    uint64_t seq = log_seq(h);
    if (m->bcast_seen >= seq || !m->uid_link.entry || m->catching_up)
        return;
    /* The flag stops the recursion an overflow would start (queue -> cut off -> leave). */
    m->catching_up = 1;
    if (!m->numbered) {
        /* The common case, kept to the plain loop: this runs once per member per broadcast. */
        while (m->bcast_seen < seq) {
            struct uc_buf *b = h->log[m->bcast_seen - h->log_base];
            m->bcast_seen++;
            if (h->sink.queue(h->sink.ctx, m->uid_link.owner, b) != 0) {
                m->bcast_seen = seq; /* cut off: owed nothing more */
                break;
            }
        }
    } else {
        while (m->bcast_seen < seq) {
            /* NULL: no memory for its header; that broadcast is lost to this member. */
            struct uc_buf *b = numbered_log_frame(h, m->bcast_seen - h->log_base);
            m->bcast_seen++;
            if (b && h->sink.queue(h->sink.ctx, m->uid_link.owner, b) != 0) {
                m->bcast_seen = seq; /* cut off: owed nothing more */
                break;
            }
        }
    }
    m->catching_up = 0;
}

/* One delivery: a message, kept under seq (or 0), framed on first use for plain members
 * (frames[0]) and numbered ones (frames[1]). */
struct delivery {
    const void *data;
    size_t len;
    int binary;
    uint64_t seq;
    struct uc_buf *frames[2];
};

static struct uc_buf *frame_for(struct delivery *d, int numbered)
{
    if (!d->frames[numbered])
        d->frames[numbered] = uc_hub_frame(numbered, d->seq, d->data, d->len, d->binary);
    return d->frames[numbered];
}

/* Queues the message to every link of entry but except's, each member caught up first so its
 * messages keep their order. The next link is read before queueing: a member cut off by its
 * queue unlinks its own links, and only those. */
static size_t deliver_to_entry(struct uc_hub *h, struct uc_umap_entry *e, int kind,
                               struct delivery *d, const void *except)
{
    size_t count = 0;
    struct uc_umap_link *link = e->head;
    while (link) {
        struct uc_umap_link *next = link->next;
        struct uc_hub_member *m = kind == 'u'
                                      ? container_of(link, struct uc_hub_member, uid_link)
                                      : container_of(link, struct uc_membership, link)->member;
        if (link->owner == except ||
            (d->seq && m->numbered && (m->resuming || m->last_seq >= d->seq))) {
            if (d->seq && m->resuming)
                m->resume_missed = 1; /* the replay comes by it: it may have started before */
            link = next;
            continue;
        }
        struct uc_buf *frame = frame_for(d, m->numbered);
        if (!frame)
            return count;
        uc_hub_catch_up(h, m);
        /* Catching up may have cut it off, and unlinked it (the next link is still ours). */
        if (m->left || (kind == 'u' && !m->uid_link.entry)) {
            link = next;
            continue;
        }
        if (h->sink.queue(h->sink.ctx, link->owner, frame) == 0) {
            count++;
            if (d->seq && m->numbered)
                m->last_seq = d->seq;
        }
        link = next;
    }
    return count;
}

static size_t deliver(struct uc_hub *h, int kind, const char *key, size_t key_len,
                      struct delivery *d, const void *except)
{
    struct uc_umap_entry *e = uc_umap_find(kind == 'u' ? &h->uids : &h->groups, key, key_len);
    if (!e)
        return 0;
    size_t count = deliver_to_entry(h, e, kind, d, except);
    for (int i = 0; i < 2; i++)
        if (d->frames[i])
            uc_buf_unref(d->frames[i]);
    return count;
}

size_t uc_hub_send(struct uc_hub *h, int kind, const char *key, size_t key_len, const void *data,
                   size_t len, int binary, const void *except)
{
    struct delivery d = {.data = data, .len = len, .binary = binary};
    return deliver(h, kind, key, key_len, &d, except);
}

size_t uc_hub_send_kept(struct uc_hub *h, const char *uid, size_t uid_len, const void *data,
                        size_t len, int binary, uint64_t seq)
{
    struct delivery d = {.data = data, .len = len, .binary = binary, .seq = seq};
    return deliver(h, 'u', uid, uid_len, &d, NULL);
}

size_t uc_hub_broadcast(struct uc_hub *h, const void *data, size_t len, int binary,
                        struct uc_hub_member *except)
{
    struct uc_hub_member *skip = except && except->uid_link.entry ? except : NULL;
    size_t count = h->uids.bound - (skip ? 1 : 0);
    if (count == 0)
        return 0;
    if (h->log_n == h->log_cap) {
        size_t cap = h->log_cap ? h->log_cap * 2 : 64;
        struct uc_buf **grown = realloc(h->log, cap * sizeof *grown);
        if (!grown)
            return 0;
        h->log = grown;
        grown = realloc(h->log_numbered, cap * sizeof *grown);
        if (!grown)
            return 0;
        h->log_numbered = grown;
        h->log_cap = cap;
    }
    struct uc_buf *frame = uc_ws_frame(binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME, data, len);
    if (!frame)
        return 0;
    /* The one skipped is owed the earlier broadcasts, and is marked past this one. */
    if (skip)
        uc_hub_catch_up(h, skip);
    h->log_numbered[h->log_n] = NULL;
    h->log[h->log_n++] = frame;
    if (skip)
        skip->bcast_seen = log_seq(h);
    return count;
}

int uc_hub_broadcasts_pending(const struct uc_hub *h) { return h->log_n > 0; }

static void catch_up_entry(struct uc_umap_entry *e, void *hub)
{
    struct uc_umap_link *link = e->head, *next;
    for (; link; link = next) {
        next = link->next; /* an overflow unlinks this member, and only it */
        uc_hub_catch_up(hub, container_of(link, struct uc_hub_member, uid_link));
    }
}

int uc_hub_flush_broadcasts(struct uc_hub *h)
{
    if (!h->log_n)
        return 0;
    uc_umap_each(&h->uids, catch_up_entry, h);
    clear_log(h);
    return 1;
}

size_t uc_hub_count(const struct uc_hub *h, int kind, const char *key, size_t key_len)
{
    struct uc_umap_entry *e = uc_umap_find(kind == 'u' ? &h->uids : &h->groups, key, key_len);
    return e ? e->count : 0;
}

void uc_hub_each(const struct uc_hub *h, const char *uid, size_t len,
                 void (*fn)(void *owner, void *ctx), void *ctx)
{
    struct uc_umap_entry *e = uc_umap_find(&h->uids, uid, len);
    for (struct uc_umap_link *l = e ? e->head : NULL; l; l = l->next)
        fn(l->owner, ctx);
}

void uc_hub_each_group_uid(const struct uc_hub *h, const char *group, size_t len,
                           void (*fn)(const char *uid, size_t len, size_t one, void *ctx),
                           void *ctx)
{
    struct uc_umap_entry *e = uc_umap_find(&h->groups, group, len);
    for (struct uc_umap_link *l = e ? e->head : NULL; l; l = l->next) {
        const struct uc_umap_entry *uid =
            container_of(l, struct uc_membership, link)->member->uid_link.entry;
        if (uid)
            fn(uid->name, uid->len, 1, ctx);
    }
}
