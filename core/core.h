/* core.h -- the structs that conn.c, ws.c and server.c share; private to core/.
 *
 * Lifetime of a connection:
 *   HANDSHAKE -> OPEN -> CLOSING -> LINGER -> DEAD -> freed
 * with shortcuts to DEAD on any I/O error or overflow. Leaving OPEN unlinks the connection
 * from the uid map at once (so a broadcast running now skips it) and queues it on the reap
 * list; the policy's on_close and the free both happen from the loop's prepare watcher,
 * never inside a callback that is still using the connection. */
#ifndef UC_CORE_H
#define UC_CORE_H

#include <ev.h>
#include <stdint.h>
#include <wslay/wslay.h>

#include "hub.h"
#include "outq.h"
#include "server.h"
#include "umap.h"
#include "ws.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

enum conn_state {
    CONN_HANDSHAKE, /* reading the HTTP upgrade request */
    CONN_OPEN,      /* WebSocket messages flow both ways */
    CONN_CLOSING,   /* close frame queued; waiting for it to flush and for the peer's close */
    CONN_LINGER,    /* our side is done (shutdown SHUT_WR); draining until EOF or timeout */
    CONN_DEAD,      /* socket finished; waiting in the reap list to be freed */
};

enum conn_flag {
    CONN_ACCEPTED = 1 << 0,   /* on_open accepted it: on_close is owed */
    CONN_NOTIFY = 1 << 1,     /* on_close still to be called */
    CONN_IN_REAP = 1 << 2,    /* on the reap list */
    CONN_IN_DIRTY = 1 << 3,   /* on the flush list */
    CONN_WRITE_WAIT = 1 << 4, /* write watcher started after EAGAIN */
    CONN_CLOSE_RECV = 1 << 5, /* the peer's close frame arrived */
    CONN_FINISHING = 1 << 6,  /* nothing more to send: shut down once the queue is flushed */
    CONN_PINGED = 1 << 7,     /* pinged since it was last heard from */
    CONN_UPGRADED = 1 << 8,   /* the 101 was queued: bytes from now on are frames */
    CONN_HELD = 1 << 12,      /* output waits until the cluster confirms its uid's subscription */
    CONN_SINCE = 1 << 13,     /* the handshake said the last kept number the client saw */
};

struct uc_handshake {
    size_t len;
    char bytes[UC_HTTP_MAX_HEAD];
};

struct uc_conn {
    struct uc_server *srv;
    ev_io rio;      /* always on while the socket is open */
    ev_io wio;      /* only while a flush hit EAGAIN */
    ev_timer timer; /* closing and lingering deadlines; a fragmented message's deadline */
    int fd;
    uint8_t state;
    uint16_t flags;
    uint16_t close_code; /* reported to on_close */
    uint64_t id;
    struct uc_outq outq;
    struct uc_hub_member member; /* its uid and groups (hub.c) */
    struct uc_conn *prev, *next; /* every live connection, for shutdown (a utlist DL list) */
    struct uc_conn *dirty_next;  /* flush list */
    struct uc_conn *reap_next;   /* reap list */
    struct uc_conn *idle_prev, *idle_next; /* live connections, least recently heard first */
    ev_tstamp last_seen;                   /* when bytes last arrived */
    uint32_t last_feed_ms;    /* when frames last arrived (ms on the server's clock), 0: never */
    uint64_t since;           /* with CONN_SINCE: the handshake's ?since=N */
    struct uc_resume *resume; /* the replay asked of the store and not answered yet, or NULL */
    struct uc_handshake *hs;  /* only during CONN_HANDSHAKE */
    struct uc_ws ws;          /* the RFC 6455 codec's state */
    char *last_uid;           /* copy of the uid at close, for on_close; owned */
    size_t last_uid_len;
    char *close_reason; /* owned; reported to on_close */
    char remote_addr[56];
};

struct uc_server {
    struct ev_loop *loop;
    struct uc_options opt;
    struct uc_handlers handlers;
    int listen_fd;
    int reserve_fd; /* spare descriptor, released to shed a connection when out of files */
    ev_io listen_io;
    ev_timer accept_retry;
    ev_prepare prepare;
    ev_signal sigterm, sigint, sighup;
    ev_timer drain_timer;
    int stopping;
    char listen_addr[300];
    uint64_t next_id;
    struct uc_conn *conns; /* every live connection */
    size_t nconns;         /* live sockets, any state */
    size_t nopen;          /* in CONN_OPEN */
    struct uc_conn *dirty, *dirty_tail;
    struct uc_conn *reap, *reap_tail;
    struct uc_conn *idle, *idle_tail; /* handshaking and open connections by last_seen */
    ev_timer liveness;                /* walks the idle list: pings, idle timeouts */
    struct uc_buf *ping_frame;        /* one empty ping, shared by every queue */
    size_t ws_contexts;               /* connections holding a wslay context */
    struct uc_ws_limits ws_limits;    /* --max-message, --max-fragments, for the codec */
    struct uc_hub hub;                /* uids, groups, the broadcast log, delivery */
    struct uc_relay relay;            /* the cluster (--redis); all NULL when alone */
    struct uc_store store;            /* kept messages; all NULL when none was set */
    struct uc_www *www;               /* --www: static files for plain GETs, or NULL */
    struct uc_service services[8];    /* attached by main: the store, the broker, the push API */
    unsigned nservices;
    struct uc_online_query *online_queries; /* presence questions not answered yet */
    /* Connections whose output waits for a subscription (cluster mode: a login is not
     * acknowledged before this node can receive its uid's messages), with the number of the
     * SUBSCRIBE each waits for. Short: only logins of the last few milliseconds. */
    struct uc_held {
        struct uc_conn *conn;
        uint64_t seq;
    } * held;
    size_t nheld, held_cap;
    ev_timer online_due; /* never started: fed to answer local presence questions */
    int tearing_down;
    struct uc_stats stats;
    ev_tstamp started;
    uint8_t rbuf[65536]; /* one read buffer for every connection: idle ones hold none */
};

/* ---- server.c ---- */

/* ---- presence.c ---- */
/* Answers the presence questions this node answers alone (fed through srv->online_due). */
void uc_presence_answer_local(struct uc_server *srv);
/* At teardown: answers those with -1; the broker's teardown answers the ones asked of Redis. */
void uc_presence_cancel_local(struct uc_server *srv);

/* ---- conn.c ---- */
void uc_conn_accept(struct uc_server *srv, int fd, const char *remote_addr);
/* Drops the connection now (no close frame): I/O error, EOF, overflow. code/reason go to
 * on_close if it was open. The memory is freed later, from the reap list. */
void uc_conn_abort(struct uc_conn *c, int code, const char *reason);
/* OPEN -> CLOSING: unbinds, records code/reason for on_close, queues the notification. */
void uc_conn_leave_open(struct uc_conn *c, int code, const char *reason, size_t reason_len);
/* Puts the connection on the flush list (once). */
void uc_conn_mark_dirty(struct uc_conn *c);
/* Called by the liveness timer: pings the silent, closes the dead. */
void uc_conn_check_liveness(struct uc_server *srv);
/* Queues buf on the connection's output, enforcing the send buffer cap; the broadcasts the
 * connection is owed go first, so its messages keep their order. */
int uc_conn_queue(struct uc_conn *c, struct uc_buf *buf);
/* How the hub queues to a connection (the catch-up already done). */
extern const struct uc_hub_sink uc_conn_hub_sink;
/* The cluster confirmed every SUBSCRIBE up to number seq: connections held for those write
 * (uc_server_subscribed). */
void uc_conn_release_held(struct uc_server *srv, uint64_t seq);
/* Called from the prepare watcher: flush dirty connections, notify and free retired ones. */
void uc_conn_run_deferred(struct uc_server *srv);
void uc_conn_destroy_all(struct uc_server *srv);

#endif
