/* server.c -- the loop: the listener and accept, signals, the prepare-time flush, delivery to
 * uids and to everyone, and the counters. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "net.h"
#include "notify.h"
#include "procstat.h"
#include "scoreboard.h"
#include "server_impl.h"
#include "str.h"
#include "www.h"

static void refuse_busy(int fd)
{
    static const char body[] = "too many connections";
    struct uc_buf *b = uc_http_response(503, NULL, "text/plain", body, sizeof body - 1, 0);
    /* Best effort on a fresh socket whose buffer is empty: one write, never a wait. */
    if (b) {
        ssize_t ignored = write(fd, b->data, b->len);
        (void)ignored;
        uc_buf_unref(b);
    }
    close(fd);
}

/* A connection the acceptor took: refused when --max-connections are open, else served. */
static void accepted(void *ctx, int fd, const struct sockaddr *addr)
{
    struct uc_server *srv = ctx;
    if (srv->opt.max_connections && srv->nconns >= srv->opt.max_connections) {
        srv->stats.handshakes_refused++;
        refuse_busy(fd);
        return;
    }
    char text[64];
    uc_net_format_addr(addr, text, sizeof text);
    uc_conn_accept(srv, fd, text);
}

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    struct uc_server *srv = container_of(w, struct uc_server, prepare);
    uc_conn_run_deferred(srv);
    if (srv->stopping && !srv->conns)
        ev_break(loop, EVBREAK_ALL);
}

/* Only there to keep the loop from waiting while flushes remain (uc_conn_run_deferred): the
 * next prepare goes on with them. */
static void more_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    ev_idle_stop(loop, w);
}

static size_t local_count(void *ctx, const char *uid, size_t len)
{
    return uc_hub_count(&((struct uc_server *)ctx)->hub, 'u', uid, len);
}

/* The roster's walk: this node's uids with their connections, or a group's members' uids. */
static void roster_walk(void *ctx, int kind, const char *key, size_t key_len,
                        void (*fn)(const char *uid, size_t len, size_t connections, void *fn_ctx),
                        void *fn_ctx)
{
    struct uc_server *srv = ctx;
    if (kind == 'g') {
        uc_hub_each_group_uid(&srv->hub, key, key_len, fn, fn_ctx);
        return;
    }
    uc_server_each_key(srv, 'u', fn, fn_ctx);
}

static void liveness_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct uc_server *srv = container_of(w, struct uc_server, liveness);
    uc_conn_check_liveness(srv);
    if (srv->opt.scoreboard) {
        struct uc_stats s;
        uc_server_stats(srv, &s);
        uc_scoreboard_publish(srv->opt.scoreboard, srv->opt.worker, getpid(), &s);
    }
}

static void drain_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct uc_server *srv = container_of(w, struct uc_server, drain_timer);
    uc_warn("drain timeout: dropping %zu connections still open", srv->nconns);
    ev_break(loop, EVBREAK_ALL);
}

static void begin_shutdown(struct uc_server *srv, const char *why)
{
    if (srv->stopping) {
        uc_warn("%s again: stopping now", why);
        ev_break(srv->loop, EVBREAK_ALL);
        return;
    }
    srv->stopping = 1;
    uc_notify("STOPPING=1");
    uc_log_event(UC_LOG_INFO, "server.stopping",
                 json_pack("{s:s,s:I}", "signal", why, "connections", (json_int_t)srv->nopen),
                 "%s: closing %zu connections with 1001 and stopping", why, srv->nopen);
    uc_acceptor_stop(&srv->acceptor);
    for (unsigned i = 0; i < srv->nservices; i++)
        if (srv->services[i].stop)
            srv->services[i].stop(srv->services[i].ctx);
    uc_conn_close_all(srv);
    if (srv->handlers.on_stop)
        srv->handlers.on_stop(srv->handlers.user_data);
    ev_timer_set(&srv->drain_timer, srv->opt.drain_timeout, 0.);
    ev_timer_start(srv->loop, &srv->drain_timer);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    if (w->signum == SIGHUP) {
        struct uc_server *srv = container_of(w, struct uc_server, sighup);
        uc_log_event(UC_LOG_INFO, "server.reloading", NULL, "SIGHUP: reloading");
        /* systemd (Type=notify) waits for READY=1 before it calls the reload done. */
        uc_notify("RELOADING=1");
        if (srv->handlers.on_reload)
            srv->handlers.on_reload(srv, srv->handlers.user_data);
        uc_notify("READY=1");
        return;
    }
    struct uc_server *srv = w->signum == SIGTERM ? container_of(w, struct uc_server, sigterm)
                                                 : container_of(w, struct uc_server, sigint);
    begin_shutdown(srv, w->signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* The maps tell the cluster which channels this node needs and what it holds, and the
 * tracker which uids arrived and left. */
static void uid_count_changed(const char *key, size_t len, size_t count, int added, void *ctx)
{
    struct uc_server *srv = ctx;
    if (srv->relay.key_count)
        srv->relay.key_count(srv->relay.ctx, 'u', key, len, count, added);
    if (srv->tracker.changed && (count == 0 || (count == 1 && added)))
        srv->tracker.changed(srv->tracker.ctx, key, len, count > 0);
}
static void group_count_changed(const char *key, size_t len, size_t count, int added, void *ctx)
{
    struct uc_server *srv = ctx;
    srv->relay.key_count(srv->relay.ctx, 'g', key, len, count, added);
}

void uc_server_set_store(struct uc_server *srv, const struct uc_store *store)
{
    srv->store = *store;
}

static void watch_counts(struct uc_server *srv)
{
    srv->hub.uids.on_count =
        srv->relay.key_count || srv->tracker.changed ? uid_count_changed : NULL;
    srv->hub.groups.on_count = srv->relay.key_count ? group_count_changed : NULL;
    srv->hub.uids.ctx = srv->hub.groups.ctx = srv;
}

void uc_server_set_relay(struct uc_server *srv, const struct uc_relay *relay)
{
    srv->relay = *relay;
    watch_counts(srv);
}

void uc_server_set_tracker(struct uc_server *srv, const struct uc_tracker *tracker)
{
    srv->tracker = *tracker;
    watch_counts(srv);
}

int uc_server_attach(struct uc_server *srv, const struct uc_service *svc)
{
    if (srv->nservices == sizeof srv->services / sizeof srv->services[0])
        return UC_ERR_LIMIT;
    srv->services[srv->nservices++] = *svc;
    return 0;
}

void uc_server_subscribed(struct uc_server *srv, uint64_t seq) { uc_conn_release_held(srv, seq); }

struct uc_server *uc_server_new(const struct uc_options *opts, const struct uc_handlers *handlers,
                                char *err, size_t err_size)
{
    struct uc_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    srv->opt = *opts;
    srv->handlers = *handlers;
    if (opts->www && !(srv->www = uc_www_open(opts->www, err, err_size))) {
        free(srv);
        return NULL;
    }
    srv->listen_fd = uc_net_listen(opts->listen, opts->workers > 1, err, err_size);
    if (srv->listen_fd < 0) {
        uc_www_free(srv->www);
        free(srv);
        return NULL;
    }
    srv->loop = ev_default_loop(EVFLAG_AUTO);
    if (uc_poller_init(&srv->poller, srv->loop, uc_conn_ready, err, err_size) < 0) {
        close(srv->listen_fd);
        uc_www_free(srv->www);
        free(srv);
        return NULL;
    }
    uc_net_local_addr(srv->listen_fd, srv->listen_addr, sizeof srv->listen_addr);
    signal(SIGPIPE, SIG_IGN);

    /* A bounded batch per wake-up keeps one busy listener from starving established clients. */
    uc_acceptor_init(&srv->acceptor, srv->loop, srv->listen_fd, 64, "WebSocket", accepted, srv);
    uc_acceptor_start(&srv->acceptor);
    ev_prepare_init(&srv->prepare, prepare_cb);
    ev_prepare_start(srv->loop, &srv->prepare);
    ev_idle_init(&srv->more, more_cb);
    ev_timer_init(&srv->drain_timer, drain_cb, 0., 0.);
    uc_presence_init(&srv->presence, srv->loop, &srv->relay, local_count, srv);
    uc_roster_init(&srv->roster, srv->loop, &srv->relay, opts->redis_timeout, roster_walk, srv);
    /* One timer walks the connections oldest-heard first, instead of one per connection: it
     * pings, closes the idle, times out handshakes and releases parser state. */
    uc_liveness_init(&srv->live, ev_now(srv->loop), opts->ping_interval, opts->idle_timeout,
                     opts->handshake_timeout, &uc_conn_liveness_actions, srv);
    double tick = uc_liveness_tick(&srv->live);
    ev_timer_init(&srv->liveness, liveness_cb, tick, tick);
    ev_timer_start(srv->loop, &srv->liveness);
    ev_unref(srv->loop);
    srv->ping_frame = uc_ws_frame(WSLAY_PING, NULL, 0);
    uc_hub_init(&srv->hub, &uc_conn_hub_sink, opts->max_groups_per_connection);
    srv->ws_limits = (struct uc_ws_limits){.max_message = opts->max_message,
                                           .max_fragments = opts->max_fragments};
    ev_signal_init(&srv->sigterm, signal_cb, SIGTERM);
    ev_signal_init(&srv->sigint, signal_cb, SIGINT);
    ev_signal_init(&srv->sighup, signal_cb, SIGHUP);
    ev_signal_start(srv->loop, &srv->sigterm);
    ev_signal_start(srv->loop, &srv->sigint);
    ev_signal_start(srv->loop, &srv->sighup);
    /* A --workers supervisor forks with these blocked (see supervisor.c): handled from now on. */
    sigset_t handled;
    uc_server_signals(&handled);
    sigprocmask(SIG_UNBLOCK, &handled, NULL);
    /* Signal watchers must not keep the loop alive on their own once we are draining. */
    ev_unref(srv->loop);
    ev_unref(srv->loop);
    ev_unref(srv->loop);
    srv->started = ev_time();
    return srv;
}

void uc_server_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
}

void uc_server_adopt(struct uc_server *srv, int fd, const char *remote_addr)
{
    uc_conn_accept(srv, fd, remote_addr);
}

int uc_server_run(struct uc_server *srv)
{
    /* The WebSocket line last: tools (and the specs) take it to mean "ready". */
    uc_log_event(UC_LOG_INFO, "server.listening",
                 json_pack("{s:s++}", "url", "ws://", srv->listen_addr, "/"),
                 "listening on ws://%s/", srv->listen_addr);
    uc_notify("READY=1"); /* Type=notify: systemd starts what depends on us only now */
    ev_run(srv->loop, 0);
    return 0;
}

void uc_server_free(struct uc_server *srv)
{
    if (!srv)
        return;
    srv->tearing_down = 1;
    uc_conn_destroy_all(srv);
    /* Nothing more to tell the cluster about keys while tearing down. */
    srv->hub.uids.on_count = srv->hub.groups.on_count = NULL;
    while (srv->nservices) {
        struct uc_service *svc = &srv->services[--srv->nservices];
        if (svc->free)
            svc->free(svc->ctx);
    }
    uc_presence_cancel(&srv->presence);
    uc_roster_cancel(&srv->roster);
    free(srv->held);
    uc_www_free(srv->www);
    uc_hub_free(&srv->hub);
    ev_ref(srv->loop);
    ev_ref(srv->loop);
    ev_ref(srv->loop);
    ev_signal_stop(srv->loop, &srv->sigterm);
    ev_signal_stop(srv->loop, &srv->sigint);
    ev_signal_stop(srv->loop, &srv->sighup);
    uc_acceptor_free(&srv->acceptor);
    uc_poller_free(&srv->poller);
    ev_timer_stop(srv->loop, &srv->drain_timer);
    ev_prepare_stop(srv->loop, &srv->prepare);
    ev_idle_stop(srv->loop, &srv->more);
    ev_ref(srv->loop);
    ev_timer_stop(srv->loop, &srv->liveness);
    uc_buf_unref(srv->ping_frame);
    close(srv->listen_fd);
    ev_loop_destroy(srv->loop);
    uc_outq_release_pool();
    uc_buf_release_pool();
    free(srv);
}

struct ev_loop *uc_server_loop(struct uc_server *srv) { return srv->loop; }

void uc_server_count_policy_error(struct uc_server *srv) { srv->stats.policy_errors++; }

void uc_server_stats(const struct uc_server *srv, struct uc_stats *out)
{
    *out = srv->stats;
    out->connections = srv->nopen;
    out->bound_connections = srv->hub.uids.bound;
    out->uids = uc_umap_keys(&srv->hub.uids);
    out->groups = uc_umap_keys(&srv->hub.groups);
    out->uptime = ev_time() - srv->started;
    if (srv->handlers.memory_used)
        out->policy_memory = srv->handlers.memory_used(srv->handlers.user_data);
    if (srv->store.stats)
        srv->store.stats(srv->store.ctx, out);
    for (unsigned i = 0; i < srv->nservices; i++)
        if (srv->services[i].stats)
            srv->services[i].stats(srv->services[i].ctx, out);
}

const struct uc_options *uc_server_options(const struct uc_server *srv) { return &srv->opt; }

size_t uc_server_sockets(const struct uc_server *srv) { return srv->nconns; }

int uc_online_query(struct uc_server *srv, const char *uid, size_t uid_len, uc_online_fn *done,
                    void *arg)
{
    return uc_presence_query(&srv->presence, uid, uid_len, done, arg);
}

int uc_members_query(struct uc_server *srv, int kind, const char *group, size_t group_len,
                     const struct uc_roster_cursor *cursor, size_t limit, uc_roster_fn *done,
                     void *arg)
{
    return uc_roster_query(&srv->roster, kind, group, group_len, cursor, limit, done, arg);
}

void uc_server_roster_request(struct uc_server *srv, const char *node, size_t node_len,
                              const void *req, size_t len)
{
    uc_roster_request(&srv->roster, node, node_len, req, len);
}

void uc_server_roster_answer(struct uc_server *srv, const void *page, size_t len)
{
    uc_roster_answer(&srv->roster, page, len);
}

struct each_key {
    void (*fn)(const char *key, size_t len, size_t count, void *ctx);
    void *ctx;
};

static void each_key(struct uc_umap_entry *e, void *ctx)
{
    struct each_key *k = ctx;
    k->fn(e->name, e->len, e->count, k->ctx);
}

void uc_server_each_key(struct uc_server *srv, int kind,
                        void (*fn)(const char *key, size_t len, size_t count, void *ctx), void *ctx)
{
    struct each_key k = {fn, ctx};
    uc_umap_each(kind == 'u' ? &srv->hub.uids : &srv->hub.groups, each_key, &k);
}

size_t uc_server_key_count(const struct uc_server *srv, int kind)
{
    return uc_umap_keys(kind == 'u' ? &srv->hub.uids : &srv->hub.groups);
}

void uc_server_cluster_gap(struct uc_server *srv)
{
    if (srv->handlers.on_cluster_gap)
        srv->handlers.on_cluster_gap(srv->handlers.user_data);
}

unsigned uc_server_stats_all(const struct uc_server *srv, struct uc_stats *out,
                             struct uc_process_stats *proc)
{
    uc_server_stats(srv, out);
    *proc = (struct uc_process_stats){0};
    if (!srv->opt.scoreboard)
        return uc_procstat_read(getpid(), proc) == 0;
    uc_scoreboard_publish(srv->opt.scoreboard, srv->opt.worker, getpid(), out);
    return uc_scoreboard_sum(srv->opt.scoreboard, out, proc);
}

/* Queues frame (built on first use) to the owner of every link of entry but except; returns
 * the count. The next link is read before queueing: a slow reader cut off by the queue unlinks
 * its own links, and only those. */
/* Every delivery below is made here first, through the hub; in cluster mode it is also handed
 * to the relay for the other nodes to make theirs. */

size_t uc_send_uid(struct uc_server *srv, const char *uid, size_t uid_len, const void *data,
                   size_t len, int binary, const struct uc_conn *except)
{
    if (srv->relay.publish && uid_len)
        srv->relay.publish(srv->relay.ctx, 'u', uid, uid_len, data, len, binary);
    size_t n = uc_hub_send(&srv->hub, 'u', uid, uid_len, data, len, binary, except);
    srv->stats.messages_out += n;
    return n;
}

size_t uc_server_deliver_kept(struct uc_server *srv, const char *uid, size_t uid_len,
                              const void *data, size_t len, int binary, uint64_t seq)
{
    size_t n = uc_hub_send_kept(&srv->hub, uid, uid_len, data, len, binary, seq);
    srv->stats.messages_out += n;
    if (n && srv->store.delivered)
        srv->store.delivered(srv->store.ctx, uid, uid_len, seq);
    return n;
}

/* A kept send the store answers: at once (the server delivers here, with the caller's bytes
 * still valid), or later (the store delivered through the cluster; the caller hears back).
 * On the stack for the embedded store, which answers inside the call; on the heap, with a copy
 * of the uid, for one that may answer later. */
struct kept_send {
    struct uc_server *srv;
    const char *uid, *data; /* valid only while the send is in progress */
    size_t uid_len, len;
    int binary, in_call;
    size_t delivered;
    uint64_t seq;
    uc_sent_fn *later;
    void *arg;
    char uid_copy[]; /* for the later answer */
};

static void kept(void *arg, uint64_t seq)
{
    struct kept_send *k = arg;
    if (k->in_call) {
        k->seq = seq;
        k->in_call = 2; /* answered inside the call */
        if (!seq && k->srv->store.delivers) {
            /* The cluster's store is unreachable: live delivery goes on here, unkept (the
             * store counts it, and burns a number so that a resume is told of it). */
            k->delivered =
                uc_send_uid(k->srv, k->uid, k->uid_len, k->data, k->len, k->binary, NULL);
            return;
        }
        if (seq && !k->srv->store.delivers) {
            if (k->srv->relay.publish)
                k->srv->relay.publish(k->srv->relay.ctx, 'u', k->uid, k->uid_len, k->data, k->len,
                                      k->binary);
            k->delivered =
                uc_server_deliver_kept(k->srv, k->uid, k->uid_len, k->data, k->len, k->binary, seq);
        }
        return;
    }
    /* At teardown the store answers what is in flight with 0: whoever asked frees what waits
     * for the answer (and knows whether it is still there to hear it). */
    if (k->later)
        k->later(k->arg, seq ? uc_uid_count(k->srv, k->uid_copy, k->uid_len) : 0, seq);
    free(k);
}

int uc_send_uid_kept(struct uc_server *srv, const char *uid, size_t uid_len, const void *data,
                     size_t len, int binary, double seconds, size_t *delivered, uint64_t *seq,
                     uc_sent_fn *later, void *arg)
{
    *delivered = 0;
    *seq = 0;
    if (!srv->store.keep || !(seconds > 0 && seconds <= UC_KEEP_MAX) || !uid_len ||
        uid_len > UC_UID_MAX)
        return UC_ERR_INVALID;
    struct kept_send now, *k = &now;
    if (srv->store.delivers && !(k = malloc(sizeof *k + uid_len)))
        return UC_ERR_NOMEM; /* not kept, not sent */
    *k = (struct kept_send){.srv = srv,
                            .uid = uid,
                            .data = data,
                            .uid_len = uid_len,
                            .len = len,
                            .binary = binary,
                            .in_call = 1,
                            .later = later,
                            .arg = arg};
    if (k != &now)
        memcpy(k->uid_copy, uid, uid_len);
    if (srv->store.keep(srv->store.ctx, uid, uid_len, data, len, binary, seconds, kept, k) != 0) {
        if (k != &now)
            free(k);
        return UC_ERR_LIMIT; /* not kept, not sent */
    }
    if (k->in_call == 2) {
        int r = k->seq ? 0 : UC_ERR_UNREACHABLE;
        *delivered = k->delivered;
        *seq = k->seq;
        if (k != &now)
            free(k);
        return r;
    }
    /* The answer comes later, to kept(): only a store that delivers does that (k is on the heap;
     * the embedded one answers inside the call, as struct uc_store requires). */
    k->in_call = 0;
    *delivered = uc_uid_count(srv, uid, uid_len);
    /* k is the store's now, until its answer: kept() frees it. */
    // cppcheck-suppress memleak
    return UC_PENDING;
}

static size_t broadcast_local(struct uc_server *srv, const void *data, size_t len, int binary,
                              const struct uc_conn *except)
{
    /* The core's own pointer, const only in the public signature: the hub marks it past the
     * broadcast it is spared. */
    struct uc_hub_member *skip = except ? uc_conn_member((struct uc_conn *)except) : NULL;
    size_t n = uc_hub_broadcast(&srv->hub, data, len, binary, skip);
    srv->stats.messages_out += n;
    return n;
}

size_t uc_broadcast(struct uc_server *srv, const void *data, size_t len, int binary,
                    const struct uc_conn *except)
{
    if (srv->relay.publish)
        srv->relay.publish(srv->relay.ctx, 'a', NULL, 0, data, len, binary);
    return broadcast_local(srv, data, len, binary, except);
}

size_t uc_send_group(struct uc_server *srv, const char *group, size_t group_len, const void *data,
                     size_t len, int binary, const struct uc_conn *except)
{
    if (srv->relay.publish && group_len)
        srv->relay.publish(srv->relay.ctx, 'g', group, group_len, data, len, binary);
    size_t n = uc_hub_send(&srv->hub, 'g', group, group_len, data, len, binary, except);
    srv->stats.messages_out += n;
    return n;
}

void uc_server_deliver_local(struct uc_server *srv, int kind, const char *key, size_t key_len,
                             const void *data, size_t len, int binary)
{
    size_t n = 0;
    if (kind == 'u' || kind == 'g')
        n = uc_hub_send(&srv->hub, kind, key, key_len, data, len, binary, NULL);
    else if (kind == 'a')
        n = uc_hub_broadcast(&srv->hub, data, len, binary, NULL);
    srv->stats.messages_out += n;
}

size_t uc_group_count(const struct uc_server *srv, const char *group, size_t group_len)
{
    return uc_hub_count(&srv->hub, 'g', group, group_len);
}

size_t uc_uid_count(const struct uc_server *srv, const char *uid, size_t uid_len)
{
    return uc_hub_count(&srv->hub, 'u', uid, uid_len);
}

/* The connections of a uid, copied out before a command runs on them. */
struct gather {
    struct uc_conn **conns;
    size_t *i;
};

static void gather_conn(void *owner, void *ctx)
{
    struct gather *g = ctx;
    g->conns[(*g->i)++] = owner;
}

struct each_conn {
    void (*fn)(struct uc_conn *conn, void *ctx);
    void *ctx;
};

static void each_conn(void *owner, void *ctx)
{
    struct each_conn *e = ctx;
    e->fn(owner, e->ctx);
}

void uc_uid_each(struct uc_server *srv, const char *uid, size_t uid_len,
                 void (*fn)(struct uc_conn *conn, void *ctx), void *ctx)
{
    struct each_conn e = {fn, ctx};
    uc_hub_each(&srv->hub, uid, uid_len, each_conn, &e);
}

/* ---- commands on a uid's connections ---- */

int uc_close_code_valid(int code)
{
    /* 1004-1006 and 1015 are reserved for reports; 3000-4999 are the applications'. */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

struct uid_command {
    int op;
    const char *arg; /* the reason, or the group */
    size_t arg_len;
    int code;
    size_t count;
};

static void run_on_conn(struct uc_conn *conn, void *ctx)
{
    struct uid_command *cmd = ctx;
    int r = cmd->op == UC_UID_DISCONNECT ? uc_conn_close(conn, cmd->code, cmd->arg, cmd->arg_len)
            : cmd->op == UC_UID_JOIN     ? uc_conn_join(conn, cmd->arg, cmd->arg_len)
                                         : !uc_conn_leave(conn, cmd->arg, cmd->arg_len);
    cmd->count += r == 0;
}

/* Runs cmd on each connection of uid here. A close unlinks the connection it closes (and only
 * it) from the uid, so the connections are gathered first. */
static size_t run_local(struct uc_server *srv, const char *uid, size_t uid_len,
                        struct uid_command *cmd)
{
    size_t n = uc_hub_count(&srv->hub, 'u', uid, uid_len), i = 0;
    if (!n)
        return 0;
    struct uc_conn **conns = malloc(n * sizeof *conns);
    if (!conns)
        return 0;
    struct gather g = {conns, &i};
    uc_hub_each(&srv->hub, uid, uid_len, gather_conn, &g);
    for (size_t k = 0; k < i; k++)
        run_on_conn(conns[k], cmd);
    free(conns);
    return cmd->count;
}

static size_t uid_command(struct uc_server *srv, int op, const char *uid, size_t uid_len,
                          const char *arg, size_t arg_len, int code, int publish)
{
    struct uid_command cmd = {.op = op, .arg = arg, .arg_len = arg_len, .code = code};
    if (publish && srv->relay.command && uid_len) {
        char wire[160];
        const char *what = arg;
        size_t what_len = arg_len;
        if (op == UC_UID_DISCONNECT) {
            int n = snprintf(wire, sizeof wire, "%d %.*s", code,
                             (int)(arg_len > 123 ? 123 : arg_len), arg);
            what = wire;
            what_len = (size_t)n;
        }
        srv->relay.command(srv->relay.ctx, op, uid, uid_len, what, what_len);
    }
    return run_local(srv, uid, uid_len, &cmd);
}

size_t uc_disconnect_uid(struct uc_server *srv, const char *uid, size_t uid_len, int code,
                         const char *reason, size_t reason_len)
{
    return uid_command(srv, UC_UID_DISCONNECT, uid, uid_len, reason, reason_len, code, 1);
}

size_t uc_join_uid(struct uc_server *srv, const char *uid, size_t uid_len, const char *group,
                   size_t group_len)
{
    return uid_command(srv, UC_UID_JOIN, uid, uid_len, group, group_len, 0, 1);
}

size_t uc_leave_uid(struct uc_server *srv, const char *uid, size_t uid_len, const char *group,
                    size_t group_len)
{
    return uid_command(srv, UC_UID_LEAVE, uid, uid_len, group, group_len, 0, 1);
}

size_t uc_server_uid_command(struct uc_server *srv, int op, const char *uid, size_t uid_len,
                             const char *arg, size_t arg_len)
{
    int code = 1000;
    if (op == UC_UID_DISCONNECT) {
        /* "<code> <reason>" */
        const char *sp = memchr(arg, ' ', arg_len);
        code = atoi(arg);
        if (!sp || !uc_close_code_valid(code))
            return 0;
        arg_len -= (size_t)(sp + 1 - arg);
        arg = sp + 1;
    }
    return uid_command(srv, op, uid, uid_len, arg, arg_len, code, 0);
}

const char *uc_strerror(int err)
{
    switch (err) {
    case UC_OK: return "ok";
    case UC_ERR_NOMEM: return "out of memory";
    case UC_ERR_CLOSED: return "closed";
    case UC_ERR_INVALID: return "invalid argument";
    case UC_ERR_OVERFLOW: return "send buffer full";
    case UC_ERR_SYS: return "system error";
    case UC_ERR_LIMIT: return "limit reached";
    case UC_ERR_UNREACHABLE: return "unreachable";
    case UC_ERR_PARSE: return "malformed";
    case UC_AGAIN: return "would block";
    default: return "unknown error";
    }
}
