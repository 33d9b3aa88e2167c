/* conn.h -- what server.c asks of connections (accept, deferred work, liveness, a graceful
 * stop, teardown), private to the core. struct uc_conn is conn.c's own. */
#ifndef UC_CONN_H
#define UC_CONN_H

#include <ev.h>
#include <stdint.h>

#include "http.h"
#include "hub.h"
#include "liveness.h"
#include "outq.h"
#include "server.h"
#include "ws.h"

/* Closes every connection for a graceful stop: open ones with 1001, handshaking ones at once. */
void uc_conn_close_all(struct uc_server *srv);
/* The connection's part in the hub (for a delivery that spares it). */
struct uc_hub_member *uc_conn_member(struct uc_conn *c);
void uc_conn_accept(struct uc_server *srv, int fd, const char *remote_addr);
/* Drops the connection now (no close frame): I/O error, EOF, overflow. code/reason go to
 * on_close if it was open. The memory is freed later, from the reap list. */
void uc_conn_abort(struct uc_conn *c, int code, const char *reason);
/* OPEN -> CLOSING: unbinds, records code/reason for on_close, queues the notification. */
void uc_conn_leave_open(struct uc_conn *c, int code, const char *reason, size_t reason_len);
/* Puts the connection on the flush list (once). */
void uc_conn_mark_dirty(struct uc_conn *c);
/* What the liveness sweep does to a connection (its ctx is the server). */
extern const struct uc_liveness_actions uc_conn_liveness_actions;
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
/* The poller's word on a connection's socket (uc_ready_fn; owner is the connection). */
void uc_conn_ready(void *owner, unsigned events);
/* Called from the prepare watcher: flush dirty connections, notify and free retired ones. */
void uc_conn_run_deferred(struct uc_server *srv);
void uc_conn_destroy_all(struct uc_server *srv);

#endif
