/* conn.c -- connection lifecycle: accept, HTTP upgrade, reading, flushing, closing, freeing.
 *
 * A connection is never freed inside one of its own callbacks. Anything that ends it (an I/O
 * error, a protocol error, overflow, the policy's close) changes its state and puts it on the
 * reap list; uc_conn_run_deferred(), called from the loop's prepare watcher, calls on_close
 * and frees it once nothing up the stack can still be holding it. */
#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <utlist.h>

#include "conn.h"
#include "liveness.h"
#include "log.h"
#include "poller.h"
#include "server_impl.h"
#include "str.h"
#include "www.h"

/* Lifetime of a connection:
 *   HANDSHAKE -> OPEN -> CLOSING -> LINGER -> DEAD -> freed
 * with shortcuts to DEAD on any I/O error or overflow. Leaving OPEN unlinks the connection
 * from the uid map at once (so a broadcast running now skips it) and queues it on the reap
 * list; the policy's on_close and the free both happen from the loop's prepare watcher,
 * never inside a callback that is still using the connection. */
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
    CONN_WRITE_WAIT = 1 << 4, /* a flush hit EAGAIN: flush again once the socket is writable */
    CONN_CLOSE_RECV = 1 << 5, /* the peer's close frame arrived */
    CONN_FINISHING = 1 << 6,  /* nothing more to send: shut down once the queue is flushed */
    CONN_UPGRADED = 1 << 8,   /* the 101 was queued: bytes from now on are frames */
    CONN_HELD = 1 << 12,      /* output waits until the cluster confirms its uid's subscription */
    CONN_SINCE = 1 << 13,     /* the handshake said the last kept number the client saw */
    CONN_REPLAY_ASKED = 1 << 14, /* a part of its replay was asked of the store, not answered */
};

struct uc_handshake {
    size_t len;
    char bytes[UC_HTTP_MAX_HEAD];
};

/* What few connections need at a time, made on first need and kept until the connection is
 * freed: an idle open connection does without it. */
struct uc_conn_extra {
    struct uc_conn *conn;
    ev_timer timer; /* closing and lingering deadlines; a fragmented message's deadline */
    uint64_t since; /* with CONN_SINCE: the handshake's ?since=N */
    char *last_uid; /* copy of the uid at close, for on_close; owned */
    size_t last_uid_len;
    char *close_reason; /* owned; reported to on_close */
    char *long_addr;    /* the peer's address when it does not fit in addr; owned */
};

/* Ordered by when fields are touched: the first 64 bytes are what queueing to a connection and
 * flushing it read and write, the member (uid link, broadcast position) follows, then what
 * reading from it touches; what only opening, closing and the sweep use comes last. A routed
 * message then misses two or three of the target's cache lines instead of five. */
struct uc_conn {
    struct uc_server *srv;
    int fd;
    uint8_t state;
    uint16_t flags;
    struct uc_outq outq;
    struct uc_ws ws;             /* the RFC 6455 codec's state */
    struct uc_conn *dirty_next;  /* flush list */
    struct uc_hub_member member; /* its uid and groups (hub.c) */
    uint64_t id;
    struct uc_live_link live;    /* its place by last heard-from (liveness.c) */
    uint32_t last_feed_ms;       /* when frames last arrived (ms on the server's clock), 0: never */
    uint16_t close_code;         /* reported to on_close */
    struct uc_conn *prev, *next; /* every live connection, for shutdown (a utlist DL list) */
    struct uc_conn *reap_next;   /* reap list */
    struct uc_handshake *hs;     /* only during CONN_HANDSHAKE */
    struct uc_conn_extra *extra; /* NULL until needed */
    char addr[24];               /* the peer's address ("" when it is in extra->long_addr) */
};

static int ws_at_rest(const struct uc_conn *c);
static void ws_free(struct uc_conn *c);
/* A replay asked of the store, answered now or later; listed in the server (srv->resumes) so
 * that a connection freed in between can leave it with conn NULL, and the answer is dropped.
 * Kept out of struct uc_conn: few connections replay at any moment, every one would pay. */
struct uc_resume {
    struct uc_server *srv;
    struct uc_conn *conn;
    struct uc_resume *prev, *next;
};

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* The connection's extra part, made on first need; NULL when out of memory. */
static struct uc_conn_extra *extra_of(struct uc_conn *c)
{
    if (!c->extra) {
        c->extra = calloc(1, sizeof *c->extra);
        if (!c->extra)
            return NULL;
        c->extra->conn = c;
        ev_init(&c->extra->timer, timer_cb);
    }
    return c->extra;
}

/* The peer's address, for logs and the policy. */
static const char *remote(const struct uc_conn *c)
{
    return c->addr[0] || !c->extra ? c->addr : c->extra->long_addr;
}

static void stop_deadline(struct uc_conn *c)
{
    if (c->extra)
        ev_timer_stop(c->srv->loop, &c->extra->timer);
}

static int deadline_set(const struct uc_conn *c)
{
    return c->extra && ev_is_active(&c->extra->timer);
}

/* Sets the connection's one deadline (replacing any). Returns 0, or -1 when out of memory. */
static int set_deadline(struct uc_conn *c, double seconds)
{
    stop_deadline(c);
    if (seconds <= 0)
        return 0;
    struct uc_conn_extra *x = extra_of(c);
    if (!x)
        return -1;
    ev_timer_set(&x->timer, seconds, 0.);
    ev_timer_start(c->srv->loop, &x->timer);
    return 0;
}

static void retire(struct uc_conn *c)
{
    if (c->flags & CONN_IN_REAP)
        return;
    struct uc_server *srv = c->srv;
    c->flags |= CONN_IN_REAP;
    c->reap_next = NULL;
    if (srv->reap_tail)
        srv->reap_tail->reap_next = c;
    else
        srv->reap = c;
    srv->reap_tail = c;
}

/* Off the liveness list: it no longer needs pings or deadlines. */
static void unlist_live(struct uc_conn *c) { uc_liveness_unlink(&c->srv->live, &c->live); }

/* Marks the connection as just heard from (liveness.c keeps the order for its sweep). */
static void touch(struct uc_conn *c)
{
    uc_liveness_touch(&c->srv->live, &c->live, ev_now(c->srv->loop));
}

/* ---- what the liveness sweep does to a connection ---- */

static struct uc_conn *live_conn(struct uc_live_link *l)
{
    return container_of(l, struct uc_conn, live);
}

static int live_handshaking(void *ctx, struct uc_live_link *l)
{
    (void)ctx;
    return live_conn(l)->state == CONN_HANDSHAKE;
}

static void live_handshake_expired(void *ctx, struct uc_live_link *l)
{
    (void)ctx;
    struct uc_conn *c = live_conn(l);
    uc_info("conn %llu (%s): handshake timed out", (unsigned long long)c->id, remote(c));
    uc_conn_abort(c, 1006, "handshake timed out");
}

static int live_rest(void *ctx, struct uc_live_link *l)
{
    (void)ctx;
    struct uc_conn *c = live_conn(l);
    if (!ws_at_rest(c))
        return 0;
    ws_free(c);
    return 1;
}

static int live_holding(void *ctx) { return ((struct uc_server *)ctx)->ws_contexts != 0; }

static void live_ping(void *ctx, struct uc_live_link *l)
{
    uc_conn_queue(live_conn(l), ((struct uc_server *)ctx)->ping_frame);
}

static void live_idle(void *ctx, struct uc_live_link *l, double quiet)
{
    struct uc_conn *c = live_conn(l);
    ((struct uc_server *)ctx)->stats.idle_closed++;
    uc_info("conn %llu (%s): nothing heard for %.0f s, closing", (unsigned long long)c->id,
            remote(c), quiet);
    uc_conn_close(c, 1001, UC_LIT("idle timeout"));
}

const struct uc_liveness_actions uc_conn_liveness_actions = {
    .handshaking = live_handshaking,
    .handshake_expired = live_handshake_expired,
    .rest = live_rest,
    .holding = live_holding,
    .ping = live_ping,
    .idle = live_idle,
};

void uc_conn_check_liveness(struct uc_server *srv)
{
    /* Contexts freed in a burst (many clients went quiet together) leave page-sized holes
     * between live connections that malloc keeps; hand those pages back to the kernel. */
    if (uc_liveness_sweep(&srv->live, ev_now(srv->loop)) >= 64)
        malloc_trim(0);
}

void uc_conn_mark_dirty(struct uc_conn *c)
{
    if (c->flags & (CONN_IN_DIRTY | CONN_WRITE_WAIT) || c->state == CONN_DEAD)
        return;
    struct uc_server *srv = c->srv;
    c->flags |= CONN_IN_DIRTY;
    c->dirty_next = NULL;
    if (srv->dirty_tail)
        srv->dirty_tail->dirty_next = c;
    else
        srv->dirty = c;
    srv->dirty_tail = c;
}

void uc_conn_accept(struct uc_server *srv, int fd, const char *remote_addr)
{
    struct uc_conn *c = calloc(1, sizeof *c);
    if (!c) {
        uc_error("out of memory accepting %s", remote_addr);
        close(fd);
        return;
    }
    if (uc_poller_add(&srv->poller, fd, c) < 0) {
        uc_error("cannot watch the connection from %s: %s", remote_addr, strerror(errno));
        free(c);
        close(fd);
        return;
    }
    c->srv = srv;
    c->fd = fd;
    c->id = ++srv->next_id;
    c->state = CONN_HANDSHAKE;
    uc_hub_member_init(&c->member, c);
    size_t addr_len = strlen(remote_addr);
    if (addr_len >= sizeof c->addr && extra_of(c) && (c->extra->long_addr = strdup(remote_addr)))
        c->addr[0] = '\0';
    else
        snprintf(c->addr, sizeof c->addr, "%s", remote_addr);
    /* The handshake deadline is kept by the liveness list (accept order is deadline order),
     * not by a timer per connection; reads during the handshake do not extend it. */
    touch(c);

    DL_PREPEND(srv->conns, c);
    srv->nconns++;
    srv->stats.accepted++;
    uc_debug("conn %llu accepted from %s", (unsigned long long)c->id, remote_addr);
}

/* The socket is finished: stop watching it and close it. The struct stays until reaped. */
static void kill_conn(struct uc_conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    struct uc_server *srv = c->srv;
    uc_poller_remove(&srv->poller, c->fd);
    stop_deadline(c);
    close(c->fd);
    c->fd = -1;
    c->state = CONN_DEAD;
    unlist_live(c);
    c->flags &= (uint16_t)~CONN_WRITE_WAIT;
    srv->nconns--;
    uc_outq_clear(&c->outq);
    retire(c);
}

/* A closing connection waits --close-timeout for its peer at most; without memory for the
 * timer it does not wait at all. */
static void closing_deadline(struct uc_conn *c)
{
    if (c->state != CONN_DEAD && set_deadline(c, c->srv->opt.close_timeout) != 0)
        kill_conn(c);
}

static int copy_text(char **dst, const char *src, size_t len)
{
    free(*dst);
    *dst = malloc(len + 1);
    if (!*dst)
        return UC_ERR_NOMEM;
    memcpy(*dst, src, len);
    (*dst)[len] = '\0';
    return 0;
}

void uc_conn_leave_open(struct uc_conn *c, int code, const char *reason, size_t reason_len)
{
    if (c->state != CONN_OPEN)
        return;
    struct uc_server *srv = c->srv;
    /* It was bound when they were sent: they go before its close. */
    uc_hub_catch_up(&srv->hub, &c->member);
    /* Catching up can overflow the send buffer, and the overflow aborts the connection from
     * inside: it has left OPEN (and been counted closed) already. */
    if (c->state != CONN_OPEN)
        return;
    c->state = CONN_CLOSING;
    srv->nopen--;
    /* What on_close reports; without memory for it, on_close gets no uid and no reason. */
    struct uc_conn_extra *x = extra_of(c);
    size_t uid_len;
    const char *uid = uc_hub_uid(&c->member, &uid_len);
    if (x && uid && copy_text(&x->last_uid, uid, uid_len) == 0)
        x->last_uid_len = uid_len;
    /* Out of every map now, so that a delivery running right now skips it. */
    uc_hub_leave_all(&srv->hub, &c->member);
    unlist_live(c);
    c->close_code = (uint16_t)code;
    if (x)
        copy_text(&x->close_reason, reason ? reason : "", reason ? reason_len : 0);
    if (c->flags & CONN_ACCEPTED)
        c->flags |= CONN_NOTIFY;
    retire(c);
    closing_deadline(c);
}

void uc_conn_abort(struct uc_conn *c, int code, const char *reason)
{
    uc_conn_leave_open(c, code, reason, reason ? strlen(reason) : 0);
    kill_conn(c);
}

static int queue_now(struct uc_conn *c, struct uc_buf *buf);

int uc_conn_queue(struct uc_conn *c, struct uc_buf *buf)
{
    uc_hub_catch_up(&c->srv->hub, &c->member);
    return queue_now(c, buf);
}

static int queue_now(struct uc_conn *c, struct uc_buf *buf)
{
    if (c->state == CONN_DEAD || c->state == CONN_LINGER)
        return UC_ERR_CLOSED;
    struct uc_server *srv = c->srv;
    /* An empty queue takes any one message (its size is already capped by --max-message);
     * beyond that, a reader this far behind is cut off rather than buffered without bound.
     * The cap is on memory, not wire bytes: a flood of pings would otherwise queue a
     * thousand 2-byte pongs per 64 KiB of heap before the cap saw a kilobyte. */
    if (!uc_outq_empty(&c->outq) &&
        uc_outq_cost(&c->outq) + buf->len + UC_OUTQ_ENTRY_COST > srv->opt.max_send_buffer) {
        srv->stats.slow_readers_closed++;
        uc_log_event(UC_LOG_WARN, "conn.slow_reader",
                     json_pack("{s:I,s:s,s:I}", "conn", (json_int_t)c->id, "remote", remote(c),
                               "max_send_buffer", (json_int_t)srv->opt.max_send_buffer),
                     "conn %llu (%s): send buffer over %zu bytes, closing slow reader",
                     (unsigned long long)c->id, remote(c), srv->opt.max_send_buffer);
        uc_conn_abort(c, 1008, "send buffer overflow");
        return UC_ERR_OVERFLOW;
    }
    if (uc_outq_push(&c->outq, buf) != 0) {
        uc_conn_abort(c, 1011, "out of memory");
        return UC_ERR_NOMEM;
    }
    uc_conn_mark_dirty(c);
    return 0;
}

/* ---- driving the RFC 6455 codec (ws.c): its events in, its verdicts acted on ---- */

static void ws_message(void *owner, const uint8_t *data, size_t len, int binary)
{
    struct uc_conn *c = owner;
    struct uc_server *srv = c->srv;
    /* Messages after we started closing are read (to find the peer's close) but dropped. */
    if (c->state != CONN_OPEN)
        return;
    srv->stats.messages_in++;
    if (srv->handlers.on_message)
        srv->handlers.on_message(c, data, len, binary, srv->handlers.user_data);
}

static void ws_peer_close(void *owner, int code, const char *reason, size_t reason_len)
{
    struct uc_conn *c = owner;
    c->flags |= CONN_CLOSE_RECV;
    uc_conn_leave_open(c, code, reason, reason_len);
}

/* wslay's own frames (pong, close) join the output queue whole, under its cap. */
static int ws_write(void *owner, const uint8_t *data, size_t len)
{
    struct uc_buf *b = uc_buf_new_copy(data, len);
    int r = b ? uc_conn_queue(owner, b) : UC_ERR_NOMEM;
    uc_buf_unref(b);
    return r;
}

static const struct uc_ws_events ws_events = {
    .on_message = ws_message,
    .on_peer_close = ws_peer_close,
    .on_write = ws_write,
};

static void ws_free(struct uc_conn *c)
{
    if (uc_ws_release(&c->ws))
        c->srv->ws_contexts--;
}

/* True when the codec holds nothing half-read or unsent of an open connection, so its context
 * can go: an idle connection then costs a few hundred bytes instead of wslay's ~9 KB. */
static int ws_at_rest(const struct uc_conn *c)
{
    return c->state == CONN_OPEN && !(c->flags & CONN_FINISHING) && uc_ws_at_rest(&c->ws);
}

/* Closes for a violation (the codec's, or a message left unfinished): sends our own close
 * frame with code and reads no more frames. */
static void ws_fail(struct uc_conn *c, int code, const char *why)
{
    c->flags |= CONN_FINISHING;
    uc_ws_stop_reading(&c->ws);
    if (c->state != CONN_OPEN) {
        uc_conn_mark_dirty(c);
        return;
    }
    c->srv->stats.protocol_errors++;
    uc_info("conn %llu (%s): closing with %d (%s)", (unsigned long long)c->id, remote(c), code,
            why);
    uc_conn_leave_open(c, code, why, strlen(why));
    struct uc_buf *frame = uc_ws_close_frame(code);
    if (!frame) {
        uc_conn_abort(c, code, why);
        return;
    }
    uc_conn_queue(c, frame);
    uc_buf_unref(frame);
}

/* Moves the frames wslay generated (pong, close) into the output queue and follows the close
 * handshake: a close sent leaves OPEN; sent and received (or a violation) finishes. */
static void ws_pump(struct uc_conn *c)
{
    if (!uc_ws_active(&c->ws) || c->state == CONN_DEAD || (c->flags & CONN_FINISHING))
        return;
    if (uc_ws_pump(&c->ws, &ws_events, c) != 0) {
        if (c->state != CONN_DEAD)
            uc_conn_abort(c, 1011, "internal error sending a control frame");
        return;
    }
    int sent = uc_ws_close_sent(&c->ws);
    if (c->state == CONN_DEAD || !sent)
        return;
    /* wslay queued a close on its own: a protocol error (1002), bad UTF-8 (1007), a message
     * over the limit (1009), or the echo of the peer's close. */
    if (c->state == CONN_OPEN) {
        c->srv->stats.protocol_errors++;
        uc_info("conn %llu (%s): closing with %d (protocol violation)", (unsigned long long)c->id,
                remote(c), sent);
        uc_conn_leave_open(c, sent, UC_LIT("protocol error"));
    }
    if (!uc_ws_reading(&c->ws)) {
        c->flags |= CONN_FINISHING;
        uc_conn_mark_dirty(c);
    }
}

/* Bytes from the peer through the codec. Then: any message left unfinished (a fragmented one,
 * or one frame trickling in) must end within --message-timeout, since a partial message holds
 * memory; and a connection that was quiet before these bytes gives its wslay context back at
 * once (a busy one keeps it until the liveness sweep finds it quiet). */
static void ws_feed(struct uc_conn *c, uint8_t *data, size_t len)
{
    struct uc_server *srv = c->srv;
    const char *why = NULL;
    int created = 0;
    int verdict = uc_ws_feed(&c->ws, &srv->ws_limits, &ws_events, c, data, len, &why, &created);
    srv->ws_contexts += (size_t)created;
    if (verdict < 0) {
        uc_conn_abort(c, 1011, "out of memory");
        return;
    }
    if (c->state == CONN_DEAD)
        return; /* cut off inside (a slow reader's queue overflowed, say) */
    if (verdict > 0) {
        ws_fail(c, verdict, why);
        return;
    }
    ws_pump(c);
    if (c->state == CONN_OPEN) {
        int unfinished = uc_ws_unfinished(&c->ws);
        if (unfinished && !deadline_set(c)) {
            if (set_deadline(c, srv->opt.message_timeout) != 0) {
                uc_conn_abort(c, 1011, "out of memory");
                return;
            }
        } else if (!unfinished && deadline_set(c)) {
            stop_deadline(c);
        }
    }
    uint32_t now_ms = (uint32_t)((ev_now(srv->loop) - srv->started) * 1000) | 1;
    int busy = c->last_feed_ms && now_ms - c->last_feed_ms < 500;
    c->last_feed_ms = now_ms;
    if (!busy && ws_at_rest(c))
        ws_free(c);
}

/* Answers the upgrade request with an HTTP error and ends the connection once it is sent. */
static void refuse(struct uc_conn *c, int status, const char *extra_headers, const char *body)
{
    struct uc_server *srv = c->srv;
    srv->stats.handshakes_refused++;
    uc_info("conn %llu (%s): upgrade refused with %d %s", (unsigned long long)c->id, remote(c),
            status, body);
    uc_outq_clear(&c->outq);
    unlist_live(c);
    ws_free(c); /* a refused upgrade never gets a frame, not even a close queued by on_open */
    struct uc_buf *b = uc_http_response(status, extra_headers, "text/plain", body, strlen(body), 0);
    c->state = CONN_CLOSING;
    c->flags |= CONN_FINISHING;
    if (!b || uc_conn_queue(c, b) != 0)
        kill_conn(c);
    uc_buf_unref(b);
    closing_deadline(c);
}

/* A plain GET with --www: the file, then the connection closes as after a refusal. */
static void serve_file(struct uc_conn *c, const struct uc_http_request *req)
{
    int status = 0;
    struct uc_buf *b = uc_www_respond(c->srv->www, req, &status);
    uc_debug("conn %llu (%s): %d for %.*s", (unsigned long long)c->id, remote(c), status,
             (int)req->path_len, req->path);
    unlist_live(c);
    c->state = CONN_CLOSING;
    c->flags |= CONN_FINISHING;
    if (!b || uc_conn_queue(c, b) != 0)
        kill_conn(c);
    uc_buf_unref(b);
    closing_deadline(c);
}

/* Cross-site WebSocket hijacking defence: browsers always send Origin, and a page on another
 * site must not ride on its visitor's cookies into this server. */
static int origin_allowed(const struct uc_server *srv, const struct uc_http_request *req)
{
    size_t len;
    const char *origin = uc_http_header_get(req, "origin", &len);
    if (!origin)
        return 0;
    for (unsigned i = 0; i < srv->opt.n_allow_origins; i++) {
        const char *allowed = srv->opt.allow_origins[i];
        if (strlen(allowed) == len && strncasecmp(allowed, origin, len) == 0)
            return 1;
    }
    return 0;
}

/* 1 when a Sec-WebSocket-Protocol header offers uidcast.v1. */
static int wants_v1(const struct uc_http_request *req)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct uc_http_header *h = &req->headers[i];
        if (uc_str_eq(h->name, h->name_len, UC_LIT("sec-websocket-protocol")) &&
            uc_http_has_token(h->value, h->value_len, UC_PROTOCOL_V1))
            return 1;
    }
    return 0;
}

/* A kept message's number: decimal, 0..2^53-1 (what JavaScript holds exactly). */
static int parse_seq(const char *s, long len, uint64_t *out)
{
    if (len < 1 || len > 16)
        return -1;
    uint64_t v = 0;
    for (long i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v >= (UINT64_C(1) << 53))
        return -1;
    *out = v;
    return 0;
}

/* Answers a complete upgrade request. Returns the bytes of head it took (the request), 0 when
 * the request is still incomplete, or -1 when it was refused. It feeds nothing: the bytes a
 * client pipelined behind its request are the caller's to feed, from wherever they lie. */
static long upgrade(struct uc_conn *c, char *head, size_t avail)
{
    struct uc_server *srv = c->srv;
    struct uc_http_request req;
    long n = uc_http_parse_head(head, avail, &req);
    if (n == 0)
        return 0; /* caller keeps the bytes and waits for more */
    if (n < 0) {
        refuse(c, (int)-n, NULL, (int)-n == 431 ? "request head too large" : "malformed request");
        return -1;
    }
    size_t len;
    if (srv->www && !uc_http_header_get(&req, "upgrade", &len)) {
        serve_file(c, &req);
        return -1;
    }
    char accept[29];
    int status = uc_http_check_upgrade(&req, accept);
    if (status) {
        const char *extra =
            status == 426 ? "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" : NULL;
        refuse(c, status, extra,
               status == 426 ? "this endpoint speaks WebSocket (RFC 6455, version 13) only"
                             : "bad WebSocket upgrade request");
        return -1;
    }
    if (srv->opt.n_allow_origins && !origin_allowed(srv, &req)) {
        refuse(c, 403, NULL, "origin not allowed");
        return -1;
    }
    /* uidcast.v1 (README, "Kept messages"): numbered messages, and a resume point. */
    int numbered = wants_v1(&req);
    if (numbered) {
        char digits[24];
        size_t len = 0;
        int has =
            uc_http_query_param(req.query, req.query_len, "since", digits, sizeof digits, &len);
        uint64_t since = 0;
        if (has && (has < 0 || parse_seq(digits, (long)len, &since) != 0)) {
            refuse(c, 400, NULL, "since must be a number, the last one the client saw");
            return -1;
        }
        if (has) {
            if (!extra_of(c)) {
                refuse(c, 503, NULL, "out of memory");
                return -1;
            }
            c->extra->since = since;
            c->flags |= CONN_SINCE;
        }
    }
    struct uc_buf *resp = uc_http_response_101(accept, numbered ? UC_PROTOCOL_V1 : NULL);
    if (!resp) {
        uc_buf_unref(resp);
        refuse(c, 503, NULL, "out of memory");
        return -1;
    }
    /* Queue the 101 first and open the connection before asking the policy, so that on_open
     * may already send, bind or close; a refusal throws all of that away unsent. */
    uc_conn_queue(c, resp);
    uc_buf_unref(resp);
    c->state = CONN_OPEN;
    c->flags |= CONN_ACCEPTED | CONN_UPGRADED;
    c->member.numbered = (uint8_t)numbered;
    srv->nopen++;
    stop_deadline(c);

    struct uc_refusal refusal = {.status = 403, .reason = "forbidden"};
    struct uc_open_request open_req = {.http = &req, .remote_addr = remote(c)};
    if (srv->handlers.on_open &&
        srv->handlers.on_open(c, &open_req, &refusal, srv->handlers.user_data) != 0) {
        if (c->state == CONN_OPEN) {
            uc_hub_leave_all(&srv->hub, &c->member);
            srv->nopen--;
        }
        c->flags &= (uint16_t) ~(CONN_ACCEPTED | CONN_NOTIFY);
        if (c->state == CONN_DEAD)
            return -1;
        if (refusal.status < 400 || refusal.status > 599)
            refusal.status = 403;
        refusal.reason[sizeof refusal.reason - 1] = '\0';
        refuse(c, refusal.status, NULL, refusal.reason);
        return -1;
    }
    if (c->state == CONN_OPEN)
        touch(c); /* from now on, last_seen is when the client was last heard from */
    uc_debug("conn %llu (%s): upgraded, path %.*s", (unsigned long long)c->id, remote(c),
             (int)req.path_len, req.path);
    return n;
}

/* Feeds bytes that follow the upgrade (frames, also those pipelined behind the request) to the
 * codec, while the connection may still read any. */
static void feed_frames(struct uc_conn *c, uint8_t *data, size_t len)
{
    if (len && (c->flags & CONN_UPGRADED) && !(c->flags & CONN_FINISHING) && c->state != CONN_DEAD)
        ws_feed(c, data, len);
}

static void handshake_input(struct uc_conn *c, uint8_t *data, size_t len)
{
    if (!c->hs) {
        /* Fast path: the whole request arrived in one read; parse it where it lies. */
        long n = upgrade(c, (char *)data, len);
        if (n > 0)
            feed_frames(c, data + n, len - (size_t)n);
        if (n != 0 || c->state != CONN_HANDSHAKE)
            return;
        c->hs = malloc(sizeof *c->hs);
        if (!c->hs) {
            kill_conn(c);
            return;
        }
        c->hs->len = 0;
    }
    /* Only the head needs the buffer; whatever follows it in this read is fed from here. */
    size_t before = c->hs->len, room = sizeof c->hs->bytes - before;
    size_t take = len < room ? len : room; /* a full buffer makes the parser answer 431 */
    memcpy(c->hs->bytes + before, data, take);
    c->hs->len += take;
    long n = upgrade(c, c->hs->bytes, c->hs->len);
    if (n == 0)
        return;
    free(c->hs);
    c->hs = NULL;
    /* The head was incomplete within the first `before` bytes, so it ends inside this read:
     * everything after it is still in data, contiguous, whatever the buffer could hold. */
    if (n > 0 && (size_t)n >= before)
        feed_frames(c, data + ((size_t)n - before), len - ((size_t)n - before));
}

/* One read; returns 1 when it filled the buffer, so that there may be more. */
static int read_input(struct uc_conn *c)
{
    struct uc_server *srv = c->srv;
    ssize_t n = recv(c->fd, srv->rbuf, sizeof srv->rbuf, 0); /* not read: see outq.c */
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        uc_debug("conn %llu: read: %s", (unsigned long long)c->id, strerror(errno));
        uc_conn_abort(c, 1006, "connection reset");
        return 0;
    }
    if (n == 0) {
        uc_conn_abort(c, 1006, "connection closed without a close frame");
        return 0;
    }
    srv->stats.bytes_in += (uint64_t)n;
    switch (c->state) {
    case CONN_HANDSHAKE: handshake_input(c, srv->rbuf, (size_t)n); break;
    case CONN_OPEN:
        touch(c);
        /* fall through */
    case CONN_CLOSING: feed_frames(c, srv->rbuf, (size_t)n); break;
    default: break; /* LINGER: the peer's leftovers are read and dropped until its EOF */
    }
    return (size_t)n == sizeof srv->rbuf;
}

static void finish_output(struct uc_conn *c)
{
    /* After a complete close handshake the peer sends nothing more, and RFC 6455 (7.1.1) has
     * the server close the TCP connection first. */
    if (c->flags & CONN_CLOSE_RECV) {
        kill_conn(c);
        return;
    }
    /* Otherwise half-close and drain instead of close(): closing with unread input makes the
     * kernel send RST, which can destroy our last bytes (a close frame, an HTTP error). */
    shutdown(c->fd, SHUT_WR);
    c->state = CONN_LINGER;
    closing_deadline(c);
}

static void flush(struct uc_conn *c)
{
    if (c->state == CONN_DEAD || (c->flags & CONN_HELD))
        return;
    struct uc_server *srv = c->srv;
    size_t before = uc_outq_bytes(&c->outq);
    int r = uc_outq_flush(&c->outq, c->fd);
    srv->stats.bytes_out += before - uc_outq_bytes(&c->outq);
    if (r < 0) {
        uc_debug("conn %llu: write: %s", (unsigned long long)c->id, strerror(errno));
        uc_conn_abort(c, 1006, "write failed");
        return;
    }
    if (r == UC_AGAIN) {
        c->flags |= CONN_WRITE_WAIT; /* the poller says when there is room */
        return;
    }
    c->flags &= (uint16_t)~CONN_WRITE_WAIT;
    if (c->member.resuming && !(c->flags & CONN_REPLAY_ASKED) && c->state == CONN_OPEN)
        uc_conn_mark_dirty(c); /* drained: the replay's next part (unless one is on its way) */
    if ((c->flags & CONN_FINISHING) && c->state != CONN_LINGER)
        finish_output(c);
}

/* Reads a turn's worth: up to READ_TURN buffers, then the socket waits for the next round, so
 * that one fast sender does not hold up every other connection. */
#define READ_TURN 4

void uc_conn_ready(void *owner, unsigned events)
{
    struct uc_conn *c = owner;
    struct uc_server *srv = c->srv;
    if (c->state == CONN_DEAD)
        return; /* closed earlier in this round */
    if (events & UC_READABLE) {
        int more = 1;
        for (int turn = 0; more && turn < READ_TURN && c->state != CONN_DEAD; turn++)
            more = read_input(c);
        if (more && c->state != CONN_DEAD)
            uc_poller_recheck(&srv->poller, c->fd, c);
    }
    if ((events & UC_WRITABLE) && (c->flags & CONN_WRITE_WAIT) && c->state != CONN_DEAD)
        flush(c);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct uc_conn *c = container_of(w, struct uc_conn_extra, timer)->conn;
    if (c->state == CONN_OPEN) {
        ws_fail(c, 1008, "message left unfinished");
        return;
    }
    uc_conn_abort(c, 1006, "timed out");
}

static void unhold(struct uc_conn *c)
{
    struct uc_server *srv = c->srv;
    c->flags &= (uint16_t)~CONN_HELD;
    for (size_t i = 0; i < srv->nheld; i++) {
        if (srv->held[i].conn == c) {
            srv->held[i] = srv->held[--srv->nheld];
            return;
        }
    }
}

/* Holds c's output until the cluster confirms SUBSCRIBE number seq (see uc_conn_bind). */
static void hold(struct uc_conn *c, uint64_t seq)
{
    struct uc_server *srv = c->srv;
    if (c->flags & CONN_HELD) {
        for (size_t i = 0; i < srv->nheld; i++)
            if (srv->held[i].conn == c)
                srv->held[i].seq = seq;
        return;
    }
    if (srv->nheld == srv->held_cap) {
        size_t cap = srv->held_cap ? srv->held_cap * 2 : 16;
        struct uc_held *grown = realloc(srv->held, cap * sizeof *grown);
        if (!grown)
            return; /* no memory to hold it: it writes at once, as before this existed */
        srv->held = grown;
        srv->held_cap = cap;
    }
    srv->held[srv->nheld++] = (struct uc_held){.conn = c, .seq = seq};
    c->flags |= CONN_HELD;
}

void uc_conn_release_held(struct uc_server *srv, uint64_t seq)
{
    for (size_t i = 0; i < srv->nheld;) {
        struct uc_conn *c = srv->held[i].conn;
        if (srv->held[i].seq > seq) {
            i++;
            continue;
        }
        srv->held[i] = srv->held[--srv->nheld];
        c->flags &= (uint16_t)~CONN_HELD;
        uc_conn_mark_dirty(c);
    }
}

static void destroy(struct uc_conn *c)
{
    if (c->flags & CONN_REPLAY_ASKED) {
        struct uc_resume *r;
        DL_FOREACH(c->srv->resumes, r)
        if (r->conn == c)
            r->conn = NULL; /* the store's answer, when it comes, finds nobody */
    }
    if (c->flags & CONN_HELD)
        unhold(c);
    DL_DELETE(c->srv->conns, c);
    unlist_live(c);
    ws_free(c);
    uc_outq_clear(&c->outq);
    uc_hub_leave_all(&c->srv->hub, &c->member);
    uc_hub_member_free(&c->member);
    free(c->hs);
    stop_deadline(c);
    if (c->extra) {
        free(c->extra->last_uid);
        free(c->extra->close_reason);
        free(c->extra->long_addr);
        free(c->extra);
    }
    free(c);
}

/* ---- resuming: replaying kept messages, a queue's worth at a time ---- */

static struct uc_conn *resuming_conn(void *arg)
{
    struct uc_conn *c = ((struct uc_resume *)arg)->conn;
    return c && c->state == CONN_OPEN ? c : NULL;
}

static int queue_text(struct uc_conn *c, const char *text, size_t len)
{
    struct uc_buf *frame = uc_ws_frame(WSLAY_TEXT_FRAME, text, len);
    if (!frame)
        return UC_ERR_NOMEM;
    int r = uc_conn_queue(c, frame);
    uc_buf_unref(frame);
    return r;
}

static int replay_message(void *arg, uint64_t seq, const void *data, size_t len, int binary)
{
    struct uc_conn *c = resuming_conn(arg);
    if (!c)
        return 1;
    if (seq <= c->member.last_seq)
        return 0; /* had it (a live one, between two parts of the replay) */
    struct uc_buf *frame = uc_hub_frame(1, seq, data, len, binary);
    if (!frame)
        return 1;
    int r = uc_conn_queue(c, frame);
    uc_buf_unref(frame);
    if (r != 0)
        return 1;
    c->member.last_seq = seq;
    c->srv->stats.messages_out++;
    return 0;
}

static int replay_gap(void *arg, uint64_t first, uint64_t last)
{
    struct uc_conn *c = resuming_conn(arg);
    if (!c)
        return 1;
    if (last <= c->member.last_seq)
        return 0;
    if (first <= c->member.last_seq)
        first = c->member.last_seq + 1;
    char text[64];
    int n = snprintf(text, sizeof text, "!gap %llu %llu", (unsigned long long)first,
                     (unsigned long long)last);
    if (queue_text(c, text, (size_t)n) != 0)
        return 1;
    c->member.last_seq = last;
    return 0;
}

static void replay_done(void *arg, int result, uint64_t last)
{
    struct uc_resume *r = arg;
    struct uc_conn *c = r->conn;
    DL_DELETE(r->srv->resumes, r);
    free(r);
    if (!c)
        return;
    c->flags &= (uint16_t)~CONN_REPLAY_ASKED;
    if (c->state != CONN_OPEN)
        return;
    if (result == UC_REPLAY_UNAVAILABLE) {
        /* The store cannot be read (its Redis is down): say so rather than resume silently
         * incomplete. Live messages go on; the client resumes again later. */
        c->member.resuming = 0;
        queue_text(c, UC_LIT("!unavailable"));
        return;
    }
    if (result == UC_REPLAY_MORE || c->member.resume_missed) {
        uc_conn_mark_dirty(c); /* the next part: from the flush list, as the queue drains */
        return;
    }
    c->member.resuming = 0;
    /* A number beyond the uid's last (from a client confused about the server it talks to)
     * must not hold back the numbers to come. */
    if (last && c->member.last_seq > last)
        c->member.last_seq = last;
}

/* Asks the store for the next part of the replay: about half the send buffer, so that a long
 * one is paced by the reader instead of cutting it off. Runs again from the flush list when the
 * part is in (and the queue has drained). */
static void resume_step(struct uc_conn *c)
{
    struct uc_server *srv = c->srv;
    size_t uid_len;
    const char *uid = uc_hub_uid(&c->member, &uid_len);
    if (c->state != CONN_OPEN || !uid) {
        c->member.resuming = 0;
        return;
    }
    size_t budget = srv->opt.max_send_buffer / 2;
    if ((c->flags & CONN_REPLAY_ASKED) || uc_outq_cost(&c->outq) >= budget)
        return; /* a part is on its way, or still being sent */
    struct uc_resume *r = malloc(sizeof *r);
    if (!r)
        return; /* tried again at the next flush */
    *r = (struct uc_resume){.srv = srv, .conn = c};
    DL_APPEND(srv->resumes, r);
    c->flags |= CONN_REPLAY_ASKED;
    /* From now on a live kept message skipped for this connection may be newer than what the
     * store reads: if one is, another part follows. */
    c->member.resume_missed = 0;
    const struct uc_replay_sink sink = {r, replay_message, replay_gap, replay_done};
    srv->store.replay(srv->store.ctx, uid, uid_len, c->member.last_seq, budget, &sink);
}

static int hub_queue(void *ctx, void *owner, struct uc_buf *frame)
{
    (void)ctx;
    return queue_now(owner, frame);
}

const struct uc_hub_sink uc_conn_hub_sink = {.queue = hub_queue};

/* Connections flushed per loop iteration at most. A broadcast to many makes as many writes;
 * between two slices the loop reads what came meanwhile. A connection is caught up with the
 * broadcast log as it is flushed, and the other members (one pass over them all) only once
 * the flush list is empty: broadcasts that arrive during a long fan-out join the writes still
 * to come and go out several frames a write (under load only: when quiet, nothing waits),
 * without a pass over every member per slice, and other traffic is not held up behind it. */
#define FLUSH_SLICE 2048

void uc_conn_run_deferred(struct uc_server *srv)
{
    unsigned budget = FLUSH_SLICE;
    for (;;) {
        struct uc_conn *c;
        if (budget && (c = srv->dirty)) {
            budget--;
            srv->dirty = c->dirty_next;
            if (!srv->dirty)
                srv->dirty_tail = NULL;
            /* While still flagged dirty, so that what these queue does not re-list it. */
            uc_hub_catch_up(&srv->hub, &c->member); /* an overflow closes it: each below checks */
            if (c->member.resuming && !(c->flags & CONN_HELD))
                resume_step(c);
            ws_pump(c);
            c->flags &= (uint16_t)~CONN_IN_DIRTY;
            flush(c);
            continue;
        }
        /* Only once the flush list is through: a connection that died after being listed is
         * still on it, maybe behind the budget. */
        if (!srv->dirty && (c = srv->reap)) {
            srv->reap = c->reap_next;
            if (!srv->reap)
                srv->reap_tail = NULL;
            c->flags &= (uint16_t)~CONN_IN_REAP;
            if (c->flags & CONN_NOTIFY) {
                c->flags &= (uint16_t)~CONN_NOTIFY;
                const char *reason = c->extra ? c->extra->close_reason : NULL;
                if (srv->handlers.on_close)
                    srv->handlers.on_close(c, c->close_code, reason, reason ? strlen(reason) : 0,
                                           srv->handlers.user_data);
            }
            /* A dead connection is never put back on the flush list, and the list is empty:
             * this is the last reference anywhere. */
            if (c->state == CONN_DEAD)
                destroy(c);
            continue;
        }
        /* The members owed broadcasts, listed after the reaping so that a stream of large
         * fan-outs, each longer than the budget, does not keep the dead from being freed. */
        if (!srv->dirty && budget && uc_hub_flush_broadcasts(&srv->hub))
            continue;
        break;
    }
    if (srv->dirty || uc_hub_broadcasts_pending(&srv->hub))
        ev_idle_start(srv->loop, &srv->more);
}

void uc_conn_destroy_all(struct uc_server *srv)
{
    srv->dirty = srv->dirty_tail = srv->reap = srv->reap_tail = NULL;
    while (srv->conns) {
        struct uc_conn *c = srv->conns;
        /* Flagged as already listed, so kill_conn does not append it to the reap list we
         * are abandoning (whose tail may be freed by now). */
        c->flags = (uint16_t)((c->flags | CONN_IN_REAP) & ~CONN_NOTIFY);
        unlist_live(c);
        kill_conn(c);
        destroy(c);
    }
}

/* ---- the public per-connection interface (server.h) ---- */

int uc_conn_send(struct uc_conn *c, const void *data, size_t len, int binary)
{
    if (c->state != CONN_OPEN)
        return UC_ERR_CLOSED;
    struct uc_buf *frame = uc_hub_frame(c->member.numbered, 0, data, len, binary);
    if (!frame)
        return UC_ERR_NOMEM;
    int r = uc_conn_queue(c, frame);
    uc_buf_unref(frame);
    if (r == 0)
        c->srv->stats.messages_out++;
    return r;
}

int uc_conn_bind(struct uc_conn *c, const char *uid, size_t uid_len)
{
    if (c->state != CONN_OPEN)
        return UC_ERR_CLOSED;
    int r = uc_hub_bind(&c->srv->hub, &c->member, uid, uid_len);
    /* In cluster mode the bind may have just asked Redis to subscribe the uid's channel. Until
     * Redis confirms, another node's message to this uid would not arrive: what the client is
     * told from now on (its "login success") waits, so that it cannot act on a login before
     * the login works cluster-wide. Usually a millisecond; at most --redis-timeout. */
    uint64_t seq;
    if (r == 0 && c->srv->relay.subscribing && (seq = c->srv->relay.subscribing(c->srv->relay.ctx)))
        hold(c, seq);
    return r;
}

void uc_conn_unbind(struct uc_conn *c) { uc_hub_unbind(&c->srv->hub, &c->member); }

int uc_conn_bind_since(struct uc_conn *c, const char *uid, size_t uid_len, uint64_t since)
{
    if (c->state != CONN_OPEN)
        return UC_ERR_CLOSED;
    if (!c->member.numbered || !c->srv->store.replay)
        return UC_ERR_INVALID;
    int r = uc_conn_bind(c, uid, uid_len);
    if (r != 0)
        return r;
    /* The replay starts from the flush list, after what the caller queues now (its "login
     * success"); until it is done, live kept messages wait in the store for it. */
    c->member.last_seq = since;
    c->member.resuming = 1;
    uc_conn_mark_dirty(c);
    return 0;
}

void uc_conn_close_all(struct uc_server *srv)
{
    for (struct uc_conn *c = srv->conns; c; c = c->next) {
        if (c->state == CONN_OPEN)
            uc_conn_close(c, 1001, UC_LIT("server shutting down"));
        else if (c->state == CONN_HANDSHAKE)
            uc_conn_abort(c, 1001, "server shutting down");
    }
}

struct uc_hub_member *uc_conn_member(struct uc_conn *c) { return &c->member; }

struct uc_server *uc_conn_server(const struct uc_conn *c) { return c->srv; }

const char *uc_conn_protocol(const struct uc_conn *c)
{
    return c->member.numbered ? UC_PROTOCOL_V1 : NULL;
}

int uc_conn_since(const struct uc_conn *c, uint64_t *since)
{
    *since = c->extra ? c->extra->since : 0;
    return (c->flags & CONN_SINCE) != 0;
}

int uc_conn_join(struct uc_conn *c, const char *group, size_t group_len)
{
    if (c->state != CONN_OPEN)
        return UC_ERR_CLOSED;
    return uc_hub_join(&c->srv->hub, &c->member, group, group_len);
}

int uc_conn_in_group(struct uc_conn *c, const char *group, size_t group_len)
{
    return uc_hub_in_group(&c->srv->hub, &c->member, group, group_len);
}

void uc_conn_each_group(struct uc_conn *c, void (*fn)(const char *name, size_t len, void *ctx),
                        void *ctx)
{
    uc_hub_each_group(&c->member, fn, ctx);
}

int uc_conn_leave(struct uc_conn *c, const char *group, size_t group_len)
{
    return uc_hub_leave(&c->srv->hub, &c->member, group, group_len);
}

int uc_conn_close(struct uc_conn *c, int code, const char *reason, size_t reason_len)
{
    if (c->state != CONN_OPEN)
        return UC_ERR_CLOSED;
    if (reason_len > 123)
        reason_len = 123; /* a close frame's payload is at most 125 bytes */
    int created;
    int r = uc_ws_close(&c->ws, &c->srv->ws_limits, code, reason, reason_len, &created);
    c->srv->ws_contexts += (size_t)created;
    if (r != 0) {
        uc_conn_abort(c, code, "close failed");
        return 0;
    }
    uc_conn_leave_open(c, code, reason, reason_len);
    uc_conn_mark_dirty(c);
    return 0;
}

int uc_conn_is_open(const struct uc_conn *c) { return c->state == CONN_OPEN; }
uint64_t uc_conn_id(const struct uc_conn *c) { return c->id; }
const char *uc_conn_remote_addr(const struct uc_conn *c) { return remote(c); }

const char *uc_conn_uid(const struct uc_conn *c, size_t *len)
{
    const char *uid = uc_hub_uid(&c->member, len);
    if (uid)
        return uid;
    *len = c->extra ? c->extra->last_uid_len : 0;
    return c->extra ? c->extra->last_uid : NULL;
}
