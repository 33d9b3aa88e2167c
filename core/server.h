/* server.h -- the core's public interface: what main and the Lua policy layer may call.
 *
 * The core owns sockets, framing, connections and the uid map. Policy (who may connect, what
 * a message means) lives behind struct uc_handlers, which the core calls and never looks into;
 * the policy answers by calling the delivery functions below. Everything here runs on the
 * server's single event-loop thread. */
#ifndef UC_SERVER_H
#define UC_SERVER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "http.h"

struct uc_server;
struct uc_conn;
struct ev_loop;
struct uc_scoreboard;
struct uc_process_stats;

/* Options, filled by the CLI (see cli.h for defaults and parsing). */
struct uc_options {
    char listen[300];         /* HOST:PORT; port 0 picks a free port (logged at start) */
    size_t max_message;       /* bytes; larger messages close with 1009 */
    size_t max_send_buffer;   /* bytes queued per connection before it is cut off */
    unsigned max_connections; /* 0 = no limit beyond the file limit */
    double handshake_timeout; /* seconds to complete the HTTP upgrade */
    double close_timeout;     /* seconds to wait for the peer's close frame / EOF */
    double drain_timeout;     /* seconds a graceful shutdown waits for connections to finish */
    double ping_interval;     /* seconds of silence from a client before the server pings it */
    double idle_timeout;      /* seconds of silence (not even a pong) before closing with 1001 */
    double message_timeout;   /* seconds a message may stay unfinished (then 1008) */
    unsigned max_groups_per_connection; /* groups one connection may be in at once */
    unsigned max_fragments;             /* empty fragments a message may have beyond one per byte */
    const char *allow_origins[16]; /* when any, the Origin header must be one of them (else 403) */
    unsigned n_allow_origins;
    const char *redis[16]; /* cluster mode: each --redis value (URLs of shards), or none */
    unsigned n_redis;
    double presence_ttl;      /* seconds a silent node's presence outlives it in Redis */
    double offline_grace;     /* seconds a uid without connections waits before offline */
    double redis_timeout;     /* seconds Redis may take to answer before it counts as down */
    size_t redis_max_pending; /* bytes of publications waiting for Redis before dropping */
    unsigned workers;         /* processes sharing the listeners (SO_REUSEPORT); 1 = just this */
    struct uc_scoreboard *scoreboard; /* under --workers: every worker's counters, or NULL */
    unsigned worker;                  /* this worker's slot in it */
    char push[300];                   /* HOST:PORT of the HTTP push API, or "off" */
    const char *push_token;           /* Bearer token the push API requires, or NULL */
    double push_timeout; /* seconds a push connection may idle or take to send a request */
    const char *www;     /* directory whose files a plain GET gets (www.h), or NULL */
};

/* What the policy is told when a client asks to upgrade. Every pointer is borrowed until the
 * on_open callback returns. */
struct uc_open_request {
    const struct uc_http_request *http; /* path, query, lower-cased headers */
    const char *remote_addr;            /* "IP:PORT" or "[IPv6]:PORT" */
};

/* How the policy refuses an upgrade: an HTTP status (400..599) and a short text body. */
struct uc_refusal {
    int status;
    char reason[256];
};

/* The policy, called by the core. Each callback is optional (NULL).
 * A callback may call any function of this header, including uc_conn_close() on the very
 * connection it was called for: closes and frees are deferred until the callback returns. */
struct uc_handlers {
    void *user_data;
    /* At the upgrade. Return 0 to accept, or fill *refusal and return -1. */
    int (*on_open)(struct uc_conn *conn, const struct uc_open_request *req,
                   struct uc_refusal *refusal, void *user_data);
    /* One complete message (reassembled from fragments). data is borrowed until return. */
    void (*on_message)(struct uc_conn *conn, const uint8_t *data, size_t len, int binary,
                       void *user_data);
    /* Once, when an accepted connection stops being open. The connection is already out of the
     * uid map; its id, remote address and last uid are still readable. reason is borrowed. */
    void (*on_close)(struct uc_conn *conn, int code, const char *reason, size_t reason_len,
                     void *user_data);
    /* Once, when a graceful shutdown starts, after every connection was told 1001. */
    void (*on_stop)(void *user_data);
    /* SIGHUP arrived: the policy reloads itself (its callbacks stay the same functions). */
    void (*on_reload)(struct uc_server *srv, void *user_data);
    /* Bytes the policy holds (its Lua state), for the counters. */
    size_t (*memory_used)(void *user_data);
    /* A kept message was dropped (reason "expired" or "evicted") before any connection of
     * its uid was handed it: the place for a fallback (an e-mail, a mobile push). */
    void (*on_undelivered)(const char *uid, size_t uid_len, uint64_t seq, const void *data,
                           size_t len, int binary, const char *reason, void *user_data);
    /* Cluster mode: the subscriptions were lost and are now restored; publications of other
     * nodes made in between may never have arrived (counted in cluster_gaps). */
    void (*on_cluster_gap)(void *user_data);
    /* A uid came online or went offline (see uc_presence_event_fn): what main hands the
     * tracker, with the webhook's part. */
    void (*on_presence)(const char *uid, size_t uid_len, int online, uint64_t version,
                        void *user_data);
};

struct uc_stats {
    uint64_t connections;       /* open WebSocket connections */
    uint64_t bound_connections; /* of which bound to a uid */
    uint64_t uids;              /* distinct uids bound */
    uint64_t groups;            /* groups with at least one member */
    uint64_t accepted;          /* TCP connections accepted since start */
    uint64_t handshakes_refused;
    uint64_t messages_in, messages_out;
    uint64_t bytes_in, bytes_out;
    uint64_t slow_readers_closed;
    uint64_t protocol_errors;
    uint64_t idle_closed;   /* closed after --idle-timeout of silence */
    uint64_t policy_errors; /* errors raised by the policy's handlers */
    uint64_t push_requests;
    uint64_t cluster_published;   /* deliveries published for the other nodes */
    uint64_t cluster_received;    /* publications of other nodes delivered here */
    uint64_t cluster_dropped;     /* publications Redis did not take (down, refused, backlog) */
    uint64_t cluster_gaps;        /* times the subscriptions were lost: messages may be missed */
    uint64_t policy_memory;       /* bytes the policy's Lua state holds */
    uint64_t mailbox_kept;        /* messages kept (sent with keep) */
    uint64_t mailbox_messages;    /* kept messages held now */
    uint64_t mailbox_memory;      /* bytes the store holds now */
    uint64_t mailbox_expired;     /* kept messages dropped when their keep ran out */
    uint64_t mailbox_evicted;     /* dropped early by --mailbox-max-* or --mailbox-memory */
    uint64_t mailbox_undelivered; /* of those dropped, the ones no connection was handed */
    uint64_t mailbox_replayed;    /* kept messages replayed to resuming connections */
    uint64_t mailbox_gaps;        /* resumes told that messages they asked for are gone */
    uint64_t mailbox_unkept;      /* kept sends the cluster's store did not take (Redis down) */
    uint64_t webhook_sent;        /* events the webhook's receiver took (2xx) */
    uint64_t webhook_retried;     /* attempts that failed and were tried again */
    uint64_t webhook_failed;      /* events given up after --webhook-retry-for, or dropped */
    double uptime;                /* seconds */
};

/* Something main attaches to the server (the push API, the cluster broker): the server tells
 * it when a graceful stop begins, asks it for its counters and frees it after the connections,
 * and knows nothing else of it. Every callback is optional. */
struct uc_service {
    void *ctx;
    void (*stop)(void *ctx);
    void (*free)(void *ctx);
    /* Adds the service's own counters (push_requests, cluster_*) to out. */
    void (*stats)(void *ctx, struct uc_stats *out);
};

/* Attaches svc (copied); services are freed in reverse order of attaching. Returns 0, or
 * UC_ERR_LIMIT (then the caller still owns what svc refers to). */
int uc_server_attach(struct uc_server *srv, const struct uc_service *svc);

/* The cluster as the core sees it: how deliveries, the keys this node holds and presence
 * questions reach the other nodes. Set by the broker (--redis); without it every member is
 * NULL and the server is alone. kind is 'u' (uid), 'g' (group) or 'a' (broadcast). */
struct uc_relay {
    void *ctx;
    /* A delivery made here, for the other nodes to make theirs. */
    void (*publish)(void *ctx, int kind, const char *key, size_t key_len, const void *data,
                    size_t len, int binary);
    /* A command on uid's connections made here (UC_UID_*), for the other nodes to make on
     * theirs (uc_server_uid_command). */
    void (*command)(void *ctx, int op, const char *uid, size_t uid_len, const void *arg,
                    size_t arg_len);
    /* A uid's or group's local connection count changed (added: one came; 0: the last left). */
    void (*key_count)(void *ctx, int kind, const char *key, size_t len, size_t count, int added);
    /* Nonzero while subscriptions await confirmation: the number of the last one asked. */
    uint64_t (*subscribing)(void *ctx);
    /* Asks the cluster for uid's connections; done(arg, count) later, count < 0 for no answer.
     * Returns -1 without calling done when the cluster cannot be asked now. */
    int (*online)(void *ctx, const char *uid, size_t uid_len,
                  void (*done)(void *arg, long long count), void *arg);
    /* Hands a roster request (the roster's bytes) to every other node; later, receivers(arg,
     * id, n) with how many nodes took it (n < 0: none could). Returns -1 without calling
     * receivers when the cluster cannot be asked now. */
    int (*gather)(void *ctx, const void *req, size_t len,
                  void (*receivers)(void *arg, uint64_t id, long long n), void *arg, uint64_t id);
    /* Sends the roster's page to the node that asked (named as uc_server_roster_request
     * said). */
    void (*answer)(void *ctx, const char *node, size_t node_len, const void *page, size_t len);
};

/* Installs the relay (copied). */
void uc_server_set_relay(struct uc_server *srv, const struct uc_relay *relay);

/* Where replayed kept messages go, one at a time, in order. */
struct uc_replay_sink {
    void *arg;
    /* Kept message seq. Returns 0, or nonzero to stop (the connection is gone). */
    int (*message)(void *arg, uint64_t seq, const void *data, size_t len, int binary);
    /* Messages first..last were asked for and are no longer kept. Returns as message does. */
    int (*gap)(void *arg, uint64_t first, uint64_t last);
    /* Once per replay, last: result UC_REPLAY_DONE or UC_REPLAY_MORE (ask again from the last
     * number handed), or UC_REPLAY_UNAVAILABLE (the store could not be read); last is the
     * uid's last number (0 when unknown). */
    void (*done)(void *arg, int result, uint64_t last);
};

enum { UC_REPLAY_DONE = 0, UC_REPLAY_MORE = 1, UC_REPLAY_UNAVAILABLE = -1 };

/* A kept message dropped (reason "expired" or "evicted") before any connection of its uid was
 * handed it: the shape of uc_handlers.on_undelivered, which the stores call. */
typedef void uc_undelivered_fn(const char *uid, size_t uid_len, uint64_t seq, const void *data,
                               size_t len, int binary, const char *reason, void *arg);

/* A kept message's number, once the store gave it (0: it could not be kept). */
typedef void uc_kept_fn(void *arg, uint64_t seq);

/* The store of kept messages: main sets the embedded one (core/mailbox.c) or, in cluster mode,
 * Redis Streams (core/streams.c). */
struct uc_store {
    void *ctx;
    /* 1: the store delivers what it keeps (to every node, in number order, through
     * uc_server_deliver_kept), answering keep later; 0: keep answers at once, and the server
     * delivers. */
    int delivers;
    /* Keeps a message for uid for seconds under uid's next number; done(arg, seq) runs once,
     * inside the call or later. Returns 0, or UC_ERR_LIMIT without calling done when the
     * message is larger than a mailbox may hold. */
    int (*keep)(void *ctx, const char *uid, size_t uid_len, const void *data, size_t len,
                int binary, double seconds, uc_kept_fn *done, void *arg);
    /* uid's kept message seq was handed to a connection (optional). */
    void (*delivered)(void *ctx, const char *uid, size_t uid_len, uint64_t seq);
    /* Hands sink uid's kept messages numbered above since, oldest first, until max_bytes of
     * payload were handed (at least one message); each run of numbers that is no longer kept,
     * counted from since (when > 0) or from the first message handed, goes to sink as a gap in
     * its place. Then sink->done, exactly once: inside the call or later. */
    void (*replay)(void *ctx, const char *uid, size_t uid_len, uint64_t since, size_t max_bytes,
                   const struct uc_replay_sink *sink);
    /* Fills the mailbox_* counters. */
    void (*stats)(void *ctx, struct uc_stats *out);
};

/* Installs the store (copied). */
void uc_server_set_store(struct uc_server *srv, const struct uc_store *store);

/* A uid came online (its first connection anywhere) or went offline (its last one gone
 * everywhere, for the grace period), as the tracker decides: once per transition in the
 * whole cluster, on one node, with a version that grows with each event of the uid. Called
 * from the loop, never inside a bind or a close. */
typedef void uc_presence_event_fn(const char *uid, size_t uid_len, int online, uint64_t version,
                                  void *arg);

/* Who decides online and offline events: main sets the node's own (core/events.c) or, in
 * cluster mode, the cluster's (core/cluster_events.c). The server tells it each uid whose
 * connections on this node went from none to one (here = 1) or from one to none (here = 0). */
struct uc_tracker {
    void *ctx;
    void (*changed)(void *ctx, const char *uid, size_t uid_len, int here);
};

/* Installs the tracker (copied). */
void uc_server_set_tracker(struct uc_server *srv, const struct uc_tracker *tracker);

/* The subprotocol of numbered messages and resume (README, "Kept messages"). */
#define UC_PROTOCOL_V1 "uidcast.v1"

/* The longest a message may be kept, in seconds (30 days). */
#define UC_KEEP_MAX 2592000.0

/* The cluster confirmed every subscription up to number seq (UINT64_MAX: it has none pending
 * any more): connections whose login waited for it may write. */
void uc_server_subscribed(struct uc_server *srv, uint64_t seq);

/* Another node asks for a page of this node's roster (req: its relay->gather bytes); the
 * answer goes back through relay->answer to node. */
void uc_server_roster_request(struct uc_server *srv, const char *node, size_t node_len,
                              const void *req, size_t len);
/* Another node's page for a roster question of this node (its relay->answer bytes). */
void uc_server_roster_answer(struct uc_server *srv, const void *page, size_t len);

/* Delivers a message another node published, to this node's connections only. kind as in
 * struct uc_relay. */
void uc_server_deliver_local(struct uc_server *srv, int kind, const char *key, size_t key_len,
                             const void *data, size_t len, int binary);

/* Creates a server bound to opts->listen. Returns NULL and writes a message to err on failure.
 * The handlers are copied; user_data is borrowed for the server's lifetime. */
struct uc_server *uc_server_new(const struct uc_options *opts, const struct uc_handlers *handlers,
                                char *err, size_t err_size);

/* Runs the loop until a graceful shutdown (SIGTERM/SIGINT) completes. Returns 0. */
int uc_server_run(struct uc_server *srv);

/* The signals a server handles (SIGHUP, SIGTERM, SIGINT), into *set: the --workers supervisor
 * keeps them blocked in a starting worker until its server's handlers are in place. */
void uc_server_signals(sigset_t *set);

/* Serves fd (a connected stream socket, non-blocking) as if the listener had accepted it from
 * remote_addr: for embedding and tests, which drive the loop (uc_server_loop) themselves. */
void uc_server_adopt(struct uc_server *srv, int fd, const char *remote_addr);

/* Sockets the server holds, in any state (upgrading, open, closing): for tests and the
 * fuzzers, which check that everything was let go. */
size_t uc_server_sockets(const struct uc_server *srv);

/* Frees everything. Only after uc_server_run returned (or instead of it). */
void uc_server_free(struct uc_server *srv);

/* This process's counters. */
void uc_server_stats(const struct uc_server *srv, struct uc_stats *out);

/* The counters of the whole server: under --workers summed over every worker (those replaced
 * included, so counters never go down), else this process's; proc gets the process figures
 * (summed over the workers). Returns how many processes answered. */
unsigned uc_server_stats_all(const struct uc_server *srv, struct uc_stats *out,
                             struct uc_process_stats *proc);

/* The options the server runs with (for the services: timeouts, limits). */
const struct uc_options *uc_server_options(const struct uc_server *srv);

/* Calls fn for each uid (kind 'u') or group ('g') with connections on this node, with their
 * count (fn must not bind, join, leave or close). */
void uc_server_each_key(struct uc_server *srv, int kind,
                        void (*fn)(const char *key, size_t len, size_t count, void *ctx),
                        void *ctx);
/* How many distinct uids ('u') or groups ('g') have connections on this node. */
size_t uc_server_key_count(const struct uc_server *srv, int kind);

/* The cluster's subscriptions were lost and are back: tells the policy (on_cluster_gap). */
void uc_server_cluster_gap(struct uc_server *srv);

/* Counts an error raised by the policy (shown as lua_errors in the counters). */
void uc_server_count_policy_error(struct uc_server *srv);

/* The libev loop, for the policy's timers. Borrowed for the server's lifetime. */
struct ev_loop *uc_server_loop(struct uc_server *srv);

/* ---- delivery: each returns how many connections the message was queued to ----
 * In cluster mode (--redis) the count is of this node's connections; the message is also
 * published, and every other node delivers it to its own connections. */

/* Every connection bound to uid, except `except` (may be NULL). The frame is encoded once. */
size_t uc_send_uid(struct uc_server *srv, const char *uid, size_t uid_len, const void *data,
                   size_t len, int binary, const struct uc_conn *except);

/* What a kept send comes to: this node's connections it was queued to, and its number (0: it
 * could not be kept, and was not sent). */
typedef void uc_sent_fn(void *arg, size_t delivered, uint64_t seq);

/* Like uc_send_uid (without an exception), and keeps the message for seconds (0 < seconds <=
 * UC_KEEP_MAX) in the store under uid's next number: a connection of uid that resumes later
 * is replayed it (uc_conn_bind_since). Returns
 *   0              kept and sent: *delivered and *seq are set;
 *   UC_PENDING     the store answers later (cluster mode): later(arg, delivered, seq) runs once,
 *                  from the loop or at teardown, when later is not NULL (seq 0: Redis did not
 *                  take it, or the server is stopping; it was not sent); *delivered is this
 *                  node's count now;
 *   UC_ERR_UNREACHABLE  the cluster's store is down: sent to this node's connections only
 *                  (*delivered), not kept;
 *   UC_ERR_LIMIT   it cannot be kept (larger than a mailbox may hold): not sent;
 *   UC_ERR_INVALID (no store, seconds out of range) or UC_ERR_NOMEM. */
#define UC_PENDING 1
int uc_send_uid_kept(struct uc_server *srv, const char *uid, size_t uid_len, const void *data,
                     size_t len, int binary, double seconds, size_t *delivered, uint64_t *seq,
                     uc_sent_fn *later, void *arg);

/* Delivers kept message seq of uid to this node's connections: how a store that delivers
 * (struct uc_store) hands each kept message to every node, in number order. */
size_t uc_server_deliver_kept(struct uc_server *srv, const char *uid, size_t uid_len,
                              const void *data, size_t len, int binary, uint64_t seq);

/* ---- the backend's hands on a uid's connections: each acts on this node's connections of
 * uid and, in cluster mode, is published for every other node to act on its own. Each returns
 * how many connections of this node it acted on. ---- */

/* 1 for the close codes an endpoint may send: 1000-1003, 1007-1011, 3000-4999. */
int uc_close_code_valid(int code);

/* Closes them (the close handshake) with code (uc_close_code_valid) and reason (at most 123
 * bytes). */
size_t uc_disconnect_uid(struct uc_server *srv, const char *uid, size_t uid_len, int code,
                         const char *reason, size_t reason_len);
/* They join (leave) group. */
size_t uc_join_uid(struct uc_server *srv, const char *uid, size_t uid_len, const char *group,
                   size_t group_len);
size_t uc_leave_uid(struct uc_server *srv, const char *uid, size_t uid_len, const char *group,
                    size_t group_len);

/* The commands as they cross the cluster (struct uc_relay's command): arg is
 * "<code> <reason>" for a disconnect, the group for a join or a leave. */
#define UC_UID_DISCONNECT 'x'
#define UC_UID_JOIN 'j'
#define UC_UID_LEAVE 'l'
/* Runs a command another node published, on this node's connections only. */
size_t uc_server_uid_command(struct uc_server *srv, int op, const char *uid, size_t uid_len,
                             const char *arg, size_t arg_len);

/* Every connection bound to any uid (unbound connections never get broadcasts). */
size_t uc_broadcast(struct uc_server *srv, const void *data, size_t len, int binary,
                    const struct uc_conn *except);

/* Every connection that joined group, except `except`. The frame is encoded once. */
size_t uc_send_group(struct uc_server *srv, const char *group, size_t group_len, const void *data,
                     size_t len, int binary, const struct uc_conn *except);

/* Number of open connections in group. */
size_t uc_group_count(const struct uc_server *srv, const char *group, size_t group_len);

/* Number of open connections bound to uid. */
size_t uc_uid_count(const struct uc_server *srv, const char *uid, size_t uid_len);

/* How many connections uid has: on every node in cluster mode (asked of Redis, bounded by
 * --redis-timeout; this node's count, with partial set, when Redis cannot answer), else on
 * this one. done(arg, count, partial) runs once, from the loop, never inside this call;
 * count < 0 means no answer (the server is being freed). Returns 0, or UC_ERR_NOMEM without
 * calling done. */
typedef void uc_online_fn(void *arg, long long count, int partial);
int uc_online_query(struct uc_server *srv, const char *uid, size_t uid_len, uc_online_fn *done,
                    void *arg);

/* ---- rosters: the online uids, or a group's members, a page at a time ----
 * Pages follow one order of uids (a 64-bit hash of the uid, the same on every node), so a
 * page starts after the last position of the one before: a uid online (or a member) for the
 * whole walk is listed exactly once, whoever comes and goes meanwhile, and no page costs more
 * than a walk over this node's uids (or the group's members) and UC_ROSTER_LIMIT_MAX entries. */

/* Where a page starts: at the beginning, or after the position a page ended at. As text (in
 * the push API and Lua), 16 lower-case hex digits (uc_roster_cursor_format). */
struct uc_roster_cursor {
    int started;
    uint64_t after;
};
#define UC_ROSTER_CURSOR_LEN 16
#define UC_ROSTER_LIMIT_MAX 1000

struct uc_roster_entry {
    const char *uid;
    size_t len;
    uint64_t connections; /* on every node that answered */
};

struct uc_roster_page {
    const struct uc_roster_entry *entries; /* in roster order */
    size_t n;
    int more;                     /* there may be more: next is where they start */
    struct uc_roster_cursor next; /* valid when more */
    int partial;                  /* some node did not answer in time: its uids are missing */
};

/* A page (borrowed for the call), or NULL: no answer (the server is being freed). */
typedef void uc_roster_fn(void *arg, const struct uc_roster_page *page);

/* Up to limit (1..UC_ROSTER_LIMIT_MAX; a few more when uids share a position) uids online
 * (kind 'u', group ignored) or members of group (kind 'g'), with their connections: over every
 * node in cluster mode (waiting at most --redis-timeout for the others; partial when one did
 * not answer), else on this one. done runs once, from the loop, never inside this call.
 * Returns 0, or UC_ERR_INVALID / UC_ERR_NOMEM without calling done. */
int uc_members_query(struct uc_server *srv, int kind, const char *group, size_t group_len,
                     const struct uc_roster_cursor *cursor, size_t limit, uc_roster_fn *done,
                     void *arg);

/* The cursor as text: 16 hex digits and a NUL into out. */
static inline void uc_roster_cursor_format(const struct uc_roster_cursor *c,
                                           char out[UC_ROSTER_CURSOR_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < UC_ROSTER_CURSOR_LEN; i++)
        out[i] = digits[(c->after >> (60 - 4 * i)) & 15];
    out[UC_ROSTER_CURSOR_LEN] = '\0';
}

/* Text as a cursor: empty for the beginning, else exactly 16 hex digits. Returns 0 or
 * UC_ERR_PARSE. */
static inline int uc_roster_cursor_parse(const char *text, size_t len, struct uc_roster_cursor *c)
{
    *c = (struct uc_roster_cursor){0};
    if (len == 0)
        return 0;
    if (len != UC_ROSTER_CURSOR_LEN)
        return UC_ERR_PARSE;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (v < 0)
            return UC_ERR_PARSE;
        c->after = c->after << 4 | (uint64_t)v;
    }
    c->started = 1;
    return 0;
}

/* Calls fn for each open connection bound to uid (fn must not bind, unbind or close). */
void uc_uid_each(struct uc_server *srv, const char *uid, size_t uid_len,
                 void (*fn)(struct uc_conn *conn, void *ctx), void *ctx);

/* ---- one connection ---- */

/* Queues one message. Returns 0, UC_ERR_CLOSED (not open), UC_ERR_NOMEM, or UC_ERR_OVERFLOW
 * (the send buffer cap was hit: the connection is being cut off as a slow reader). */
int uc_conn_send(struct uc_conn *conn, const void *data, size_t len, int binary);

/* Binds to uid (1..UC_UID_MAX bytes), leaving any previous uid. Returns 0, UC_ERR_CLOSED,
 * UC_ERR_INVALID or UC_ERR_NOMEM. */
int uc_conn_bind(struct uc_conn *conn, const char *uid, size_t uid_len);
void uc_conn_unbind(struct uc_conn *conn);
/* Binds to uid and resumes: uid's kept messages numbered above since are queued first, in
 * order, then live ones (none twice, none skipped; what is no longer kept is announced as a
 * gap when since > 0). Only on a uidcast.v1 connection. Returns as uc_conn_bind, and
 * UC_ERR_INVALID on a connection that does not speak uidcast.v1. */
int uc_conn_bind_since(struct uc_conn *conn, const char *uid, size_t uid_len, uint64_t since);
/* The subprotocol agreed at the handshake ("uidcast.v1"), or NULL. */
const char *uc_conn_protocol(const struct uc_conn *conn);
/* 1 and *since when the client gave the last number it saw at the handshake (?since=N). */
int uc_conn_since(const struct uc_conn *conn, uint64_t *since);

/* Joins group (1..UC_UID_MAX bytes); joining a group twice is a no-op. Returns 0,
 * UC_ERR_CLOSED, UC_ERR_INVALID, UC_ERR_LIMIT (--max-groups-per-connection) or UC_ERR_NOMEM.
 * Memberships end with the connection; in on_close, uc_conn_in_group and uc_conn_each_group
 * still answer with the groups it was in. */
int uc_conn_join(struct uc_conn *conn, const char *group, size_t group_len);
/* Leaves group; returns 1 when it was a member, else 0. */
int uc_conn_leave(struct uc_conn *conn, const char *group, size_t group_len);
/* 1 when the connection is in group; O(1). */
int uc_conn_in_group(struct uc_conn *conn, const char *group, size_t group_len);
/* Calls fn with the name of each group the connection is in (fn must not join or leave). */
void uc_conn_each_group(struct uc_conn *conn, void (*fn)(const char *name, size_t len, void *ctx),
                        void *ctx);

/* Starts the close handshake with code (1000..4999) and a reason of at most 123 bytes.
 * Returns 0, or UC_ERR_CLOSED when the connection is already closing. */
int uc_conn_close(struct uc_conn *conn, int code, const char *reason, size_t reason_len);

int uc_conn_is_open(const struct uc_conn *conn);
/* The server the connection belongs to. */
struct uc_server *uc_conn_server(const struct uc_conn *conn);
uint64_t uc_conn_id(const struct uc_conn *conn);
const char *uc_conn_remote_addr(const struct uc_conn *conn);
/* The uid bound, or the last one bound once closed; NULL when never bound. */
const char *uc_conn_uid(const struct uc_conn *conn, size_t *len);

#endif
