/* server_impl.h -- struct uc_server, shared by server.c (the loop, the listener, delivery,
 * services) and conn.c (the connections it runs): one concern in two files. Nothing else in
 * the core sees it; services use server.h. */
#ifndef UC_SERVER_IMPL_H
#define UC_SERVER_IMPL_H

#include <ev.h>
#include <stdint.h>

#include "acceptor.h"
#include "conn.h"
#include "container.h"
#include "hub.h"
#include "liveness.h"
#include "poller.h"
#include "presence.h"
#include "roster.h"
#include "server.h"
#include "ws.h"

struct uc_resume;
struct uc_www;

struct uc_server {
    struct ev_loop *loop;
    struct uc_options opt;
    struct uc_handlers handlers;
    int listen_fd;
    struct uc_acceptor acceptor;
    struct uc_poller poller; /* the connections' sockets */
    ev_prepare prepare;
    ev_idle more; /* active while flushes wait for the next iteration: the loop polls, not waits */
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
    struct uc_liveness live;       /* handshaking and open connections by last heard-from */
    ev_timer liveness;             /* sweeps it: deadlines, pings, idle timeouts */
    struct uc_buf *ping_frame;     /* one empty ping, shared by every queue */
    size_t ws_contexts;            /* connections holding a wslay context */
    struct uc_ws_limits ws_limits; /* --max-message, --max-fragments, for the codec */
    struct uc_hub hub;             /* uids, groups, the broadcast log, delivery */
    struct uc_relay relay;         /* the cluster (--redis); all NULL when alone */
    struct uc_store store;         /* kept messages; all NULL when none was set */
    struct uc_tracker tracker;     /* online/offline events; all NULL when none was set */
    struct uc_resume *resumes;     /* replays asked of the store, not answered yet (conn.c) */
    struct uc_www *www;            /* --www: static files for plain GETs, or NULL */
    struct uc_service services[8]; /* attached by main: the store, the broker, the push API */
    unsigned nservices;
    struct uc_presence presence; /* presence questions not answered yet */
    struct uc_roster roster;     /* roster pages not answered yet */
    /* Connections whose output waits for a subscription (cluster mode: a login is not
     * acknowledged before this node can receive its uid's messages), with the number of the
     * SUBSCRIBE each waits for. Short: only logins of the last few milliseconds. */
    struct uc_held {
        struct uc_conn *conn;
        uint64_t seq;
    } * held;
    size_t nheld, held_cap;
    int tearing_down;
    struct uc_stats stats;
    ev_tstamp started;
    uint8_t rbuf[65536]; /* one read buffer for every connection: idle ones hold none */
};

/* ---- server.c ---- */

#endif
